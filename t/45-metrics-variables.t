# portal_gate_metrics and $portal_flag_NAME: a client request counts a
# decision once, however many times and in whatever way nginx reads the
# variable (set, return, a map, add_header, after an internal redirect, in
# a subrequest), and once when a portal_gate decided the same; a read that
# decides differently (another company, another environment) is another
# decision.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Test qw(require_module);
use PortalGate::Scrape qw(metrics);
use PortalGate::EdgeMetrics qw(dec resp counter_samples delta);

require_module();

my $ng = PortalGate::Test->new(workers => 1,
                               http => <<'HTTP', server => <<'CONF');
    map $portal_flag_f $f_route {
        1        v2;
        default  legacy;
    }
HTTP
        location /set/    { set $x $portal_flag_f; return 200 $x; }
        location /return/ { return 200 "$portal_flag_f"; }
        location /map/    { return 200 $f_route; }
        location /header/ { add_header X-F $portal_flag_f always;
                            return 204; }
        location /all/    { set $x $portal_flag_f;
                            if ($portal_flag_f) { set $y 1; }
                            add_header X-F $portal_flag_f always;
                            add_header X-Route $f_route always;
                            return 200 "$x$y$portal_flag_f"; }
        location /gated/  { portal_gate f;
                            add_header X-F $portal_flag_f always;
                            add_header X-Route $f_route always;
                            return 200 "$portal_flag_f"; }
        location /switch/ { portal_gate_company $c;
                            set $c 12; set $x $portal_flag_f;
                            set $c 99; set $y $portal_flag_f;
                            set $c 12; set $z $portal_flag_f;
                            return 200 "$x$y$z"; }
        location /from/   { set $x $portal_flag_f;
                            rewrite ^ /to/ last; }
        location /to/     { return 200 "$x$portal_flag_f"; }
        location /elsewhere/ { set $x $portal_flag_f;
                               rewrite ^ /staging/ last; }
        location /staging/   { portal_gate_env staging;
                               return 200 "$x$portal_flag_f"; }
        location /ssi/    { ssi on; default_type text/html;
                            add_header X-F $portal_flag_f always;
                            return 200 'A<!--# include virtual="/inc/" -->B'; }
        location /inc/    { return 200 "$portal_flag_f"; }
        location /flags/  { set $xy "$portal_flag_x$portal_flag_y";
                            return 200 "$portal_flag_f$portal_flag_g$xy"; }
        location /first/  { set $x $portal_flag_g; rewrite ^ /second/ last; }
        location /second/ { portal_gate f; rewrite ^ /third/ last; }
        location /third/  { portal_gate g; return 200 "third $x"; }
        location = /metrics { portal_gate_metrics; }
CONF
$ng->start;

my $put = $ng->put_snapshot({revision => 1, environments => {
    production => { f => { rollout => 0, allow => ['12'], deny => ['99'] },
                    g => { rollout => 100 } },
    staging    => { f => { enabled => JSON::PP::false() } },
}});
is($put->{status}, 200, 'the snapshot is applied') or diag($put->{content});

sub samples {
    return counter_samples(metrics($ng->get('/metrics')->{content}));
}

# what one request (or $n of them) added to the counters
sub counted {
    my ($path, $n, %o) = @_;
    my $before = samples();
    my $r;
    $r = $ng->get($path, company => '12', %o) for 1 .. $n;
    return ($r, delta($before, samples()));
}

my $on = dec('production', 'f', 'on', 'allowed');

for my $c (['/set/',    'set $x $portal_flag_f; return 200 $x',  200, '1'],
           ['/return/', 'return 200 "$portal_flag_f"',           200, '1'],
           ['/map/',    'a map over it',                         200, 'v2'],
           ['/header/', 'add_header X-F $portal_flag_f',         204, ''],
           ['/all/',    'set, if, add_header, a map and return in one '
                        . 'location',                            200, '111'])
{
    my ($path, $what, $status, $body) = @$c;
    my ($r, $d) = counted($path, 1);
    is($r->{status}, $status, "$what answers $status");
    is($r->{content}, $body, "with $body") if length $body;
    is_deeply($d, { $on => 1 }, "$what: one decision")
        or diag(explain $d);

    ($r, $d) = counted($path, 3);
    is_deeply($d, { $on => 3 }, "$what: three requests, three decisions")
        or diag(explain $d);
}

# [path, company, the answer, what it shows, what it counts, and why]
for my $c (
    ['/return/', '99', '0', 'another company gets its own answer',
     { dec('production', 'f', 'off', 'denied') => 1 },
     'counted under its own decision'],
    ['/gated/', '12', '1', 'a gate, the variable and a map in one location',
     { $on => 1, resp('production', 'f', 'on', '2xx') => 1 },
     'the gate and the variable deciding the same: one decision, one '
     . 'answer'],
    ['/switch/', '12', '101',
     'set $c between reads: each read answers for the company it sees',
     { $on => 1, dec('production', 'f', 'off', 'denied') => 1 },
     'one decision for each company, the first one not twice'],
    ['/from/', '12', '11', 'read before and after an internal redirect',
     { $on => 1 }, 'the same decision: counted once'],
    ['/elsewhere/', '12', '10',
     'a redirect into another environment: the variable answers for it',
     { $on => 1, dec('staging', 'f', 'off', 'killed') => 1 },
     'one decision in each environment'],
    ['/ssi/', '12', 'A1B', 'read in a request and its SSI subrequest',
     { $on => 1 }, 'the client request counts it once'],
    ['/flags/', '12', '1100', 'four flags in one value',
     { $on => 1, dec('production', 'g', 'on', 'rollout') => 1,
       dec('production', '(unknown)', 'off', 'unknown') => 2 },
     'each flag once; two unknown flags are two decisions in one series'],
    ['/first/', '12', 'third 1', 'g read, then gates f and g',
     { $on => 1, dec('production', 'g', 'on', 'rollout') => 1,
       resp('production', 'g', 'on', '2xx') => 1 },
     'g decided twice the same: once; the answer counts for the last '
     . 'gate, g'])
{
    my ($path, $company, $body, $what, $want, $why) = @$c;
    my ($r, $d) = counted($path, 1, company => $company);
    is($r->{content}, $body, $what);
    is_deeply($d, $want, $why) or diag(explain $d);
}

$ng->no_bad_log_lines;

done_testing();
