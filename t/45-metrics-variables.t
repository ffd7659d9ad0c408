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

require_module();

my $ng = PortalGate::Test->new(workers => 1, http => <<'HTTP', server => <<'CONF');
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
        location /flags/  { return 200 "$portal_flag_f$portal_flag_g$portal_flag_nope1$portal_flag_nope2"; }
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

sub dec {
    my ($env, $flag, $decision, $reason) = @_;
    return qq(portal_gate_decisions_total{env="$env",flag="$flag",)
         . qq(decision="$decision",reason="$reason"});
}

sub resp {
    my ($env, $flag, $decision, $class) = @_;
    return qq(portal_gate_responses_total{env="$env",flag="$flag",)
         . qq(decision="$decision",class="$class"});
}

sub samples {
    my $m = metrics($ng->get('/metrics')->{content});
    return { map { $_ => $m->{$_} }
             grep { /^portal_gate_(?:decisions|responses)_total\{/ } keys %$m };
}

# what one request (or $n of them) added to the counters
sub counted {
    my ($path, $n, %o) = @_;
    my $before = samples();
    my $r;
    $r = $ng->get($path, company => '12', %o) for 1 .. $n;
    my $after = samples();
    my %d;
    for (keys %$after) {
        my $x = $after->{$_} - ($before->{$_} // 0);
        $d{$_} = $x if $x;
    }
    return ($r, \%d);
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

{
    my ($r, $d) = counted('/header/', 1, company => '99');
    is($r->{headers}{'x-f'}, '0', 'another company gets its own answer');
    is_deeply($d, { dec('production', 'f', 'off', 'denied') => 1 },
              'counted under its own decision') or diag(explain $d);
}

{
    my ($r, $d) = counted('/gated/', 1);
    is($r->{content}, '1', 'a gate and the variable in one location');
    is($r->{headers}{'x-route'}, 'v2', 'and a map over it');
    is_deeply($d, { $on => 1, resp('production', 'f', 'on', '2xx') => 1 },
              'the gate and the variable deciding the same: one decision, '
              . 'one answer') or diag(explain $d);
}

{
    my ($r, $d) = counted('/switch/', 1);
    is($r->{content}, '101',
       'set $c between reads: each read answers for the company it sees');
    is_deeply($d, { $on => 1, dec('production', 'f', 'off', 'denied') => 1 },
              'one decision for each company, the first one not twice')
        or diag(explain $d);
}

{
    my ($r, $d) = counted('/from/', 1);
    is($r->{content}, '11', 'read before and after an internal redirect');
    is_deeply($d, { $on => 1 }, 'the same decision: counted once')
        or diag(explain $d);

    ($r, $d) = counted('/elsewhere/', 1);
    is($r->{content}, '10',
       'a redirect into another environment: the variable answers for it');
    is_deeply($d, { $on => 1, dec('staging', 'f', 'off', 'killed') => 1 },
              'one decision in each environment') or diag(explain $d);
}

{
    my ($r, $d) = counted('/ssi/', 1);
    is($r->{content}, 'A1B', 'read in a request and its SSI subrequest');
    is_deeply($d, { $on => 1 }, 'the client request counts it once')
        or diag(explain $d);
}

{
    my ($r, $d) = counted('/flags/', 1);
    is($r->{content}, '1100', 'four flags in one value');
    is_deeply($d, { $on => 1,
                    dec('production', 'g', 'on', 'rollout') => 1,
                    dec('production', '(unknown)', 'off', 'unknown') => 2 },
              'each flag once; two unknown flags are two decisions in one '
              . 'series') or diag(explain $d);
}

{
    my ($r, $d) = counted('/first/', 1);
    is($r->{content}, 'third 1', 'g read, then gates f and g');
    is_deeply($d, { $on => 1,
                    dec('production', 'g', 'on', 'rollout') => 1,
                    resp('production', 'g', 'on', '2xx') => 1 },
              'g decided twice the same: once; the answer counts for the '
              . 'last gate, g') or diag(explain $d);
}

$ng->no_bad_log_lines;

done_testing();
