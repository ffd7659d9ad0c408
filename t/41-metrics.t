# portal_gate_metrics: exact decision and response counters over two
# workers, kept through a reload, in a valid Prometheus exposition.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Test qw(require_module);
use PortalGate::Scrape qw(metrics promtool);
use PortalGate::EdgeMetrics qw(dec resp counter_samples delta);

require_module();

my $ng = PortalGate::Test->new(workers => 2, reuseport => 1,
                               files => { 'www/ix/index.html' => "ix\n" },
                               http => <<'HTTP', server => <<'CONF');
    map $portal_flag_customer_portal_calls $calls_route {
        1        v2;
        default  legacy;
    }
HTTP
        add_header X-Worker $pid always;
        location /portal/ { portal_gate customer_portal;
                            add_header X-Worker $pid always;
                            return 200 "portal v2\n"; }
        location /broken/ { portal_gate customer_portal off=410;
                            add_header X-Worker $pid always;
                            return 503; }
        location /route/  { add_header X-Route $calls_route always;
                            add_header X-Calls $portal_flag_customer_portal_calls always;
                            add_header X-Worker $pid always;
                            return 200 "route\n"; }
        location /nosuch/ { add_header X-Nope $portal_flag_no_such_flag always;
                            return 200; }
        location /gbyenv/ { portal_gate_env $http_x_env;
                            portal_gate customer_portal; return 200; }
        location /byenv/  { portal_gate_env $http_x_env;
                            add_header X-Flag $portal_flag_customer_portal always;
                            return 200; }
        location /ssi/    { portal_gate customer_portal; ssi on;
                            default_type text/html;
                            return 200 'A<!--# include virtual="/inc/" -->B'; }
        location /inc/    { portal_gate customer_portal; return 200 "inc"; }
        location /auth/   { portal_gate customer_portal;
                            auth_request /authz/; empty_gif; }
        location /authz/  { portal_gate customer_portal; return 204; }
        location /ix/     { portal_gate customer_portal; root %%DIR%%/www; }
        location = /metrics { portal_gate_metrics; }
CONF
$ng->start;

my $put = $ng->put_snapshot({revision => 1, environments => {
    production => {
        customer_portal       => { rollout => 0, allow => ['12'],
                                   deny => ['99'] },
        customer_portal_calls => { requires => 'customer_portal',
                                   rollout => 100 },
    },
    staging => { customer_portal => { enabled => JSON::PP::false() } },
}});
is($put->{status}, 200, 'the snapshot is applied') or diag($put->{content});

my %workers;

sub hit {
    my ($path, $n, %o) = @_;
    for (1 .. $n) {
        my $r = $ng->get($path, %o);
        $workers{$r->{headers}{'x-worker'}}++ if $r->{headers}{'x-worker'};
    }
}

sub scrape {
    my $r = $ng->get('/metrics');
    is($r->{status}, 200, 'the scrape answers 200');
    like($r->{headers}{'content-type'} // '', qr{^text/plain; version=0\.0\.4},
         'in the text format 0.0.4');
    return ($r->{content}, metrics($r->{content}));
}

# the known mix; run twice, before and after a reload
sub mix {
    hit('/portal/', 5, company => '12');      # on, allowed: 200
    hit('/portal/', 3, company => '99');      # off, denied: 404
    hit('/portal/', 4, company => '7');       # off, rollout: 404
    hit('/portal/', 2);                       # off, no_company: 404
    hit('/broken/', 3, company => '12');      # on, allowed: 503
    hit('/broken/', 2, company => '7');       # off, rollout: 410
    hit('/route/', 2, company => '12');       # calls on: map + add_header,
    hit('/route/', 1, company => '7');        # once a request (off: requires)
    hit('/nosuch/', 2, company => '12');      # a flag the snapshot lacks
    hit('/byenv/', 1, company => '12', headers => { 'X-Env' => 'staging' });
    hit('/byenv/', 1, company => '12', headers => { 'X-Env' => 'Bogus 1' });
    hit('/byenv/', 1, company => '12', headers => { 'X-Env' => 'qa' });
    # one gate, its environment from a variable: each under its own
    # (a worker keeps the gate's last pair, by environment)
    for my $env (qw(production staging production staging production)) {
        hit('/gbyenv/', 1, company => '12', headers => { 'X-Env' => $env });
    }
}

sub expected {
    my ($k) = @_;                             # how many mixes so far
    return {
        dec('production', 'customer_portal', 'on',  'allowed')    => 11 * $k,
        dec('production', 'customer_portal', 'off', 'denied')     => 3 * $k,
        dec('production', 'customer_portal', 'off', 'rollout')    => 6 * $k,
        dec('production', 'customer_portal', 'off', 'no_company') => 2 * $k,
        dec('production', 'customer_portal_calls', 'on',  'rollout')  => 2 * $k,
        dec('production', 'customer_portal_calls', 'off', 'requires') => 1 * $k,
        dec('production', '(unknown)', 'off', 'unknown')          => 2 * $k,
        dec('staging', 'customer_portal', 'off', 'killed')        => 3 * $k,
        dec('(other)', '(unknown)', 'off', 'unknown')             => 2 * $k,
        resp('production', 'customer_portal', 'on',  '2xx')       => 8 * $k,
        resp('production', 'customer_portal', 'on',  '5xx')       => 3 * $k,
        resp('production', 'customer_portal', 'off', '4xx')       => 11 * $k,
        resp('staging', 'customer_portal', 'off', '4xx')          => 2 * $k,
    };
}

mix();

my ($text, $m) = scrape();
is_deeply(counter_samples($m), expected(1),
          'every decision is counted once per request, every gated answer '
          . 'by class, summed over the workers')
    or diag($text);
is(scalar keys %workers, 2, 'the requests were spread over both workers')
    or diag(explain \%workers);

my ($ok, $said) = promtool($text);
ok($ok, 'promtool check metrics finds nothing to say') or diag($said);

unlike($text, qr/"(?:12|99|7)"/, 'no company id is a label value');

is($m->{portal_gate_snapshot_revision}, 1, 'the revision is a gauge');
cmp_ok($m->{portal_gate_snapshot_applied_timestamp_seconds}, '>', 1e9,
       'so is the time it was applied');
cmp_ok($m->{portal_gate_last_sync_timestamp_seconds}, '>', 1e9,
       'the PUT confirmed the edge in step');
is($m->{portal_gate_zone_size_bytes}, 4 * 1024 * 1024, 'the zone size');
cmp_ok($m->{portal_gate_zone_used_bytes}, '>', 0, 'the zone use');
is($m->{portal_gate_state_file_ok}, 1, 'the state file is fine');

for my $family (qw(decisions_total responses_total snapshot_revision)) {
    my @help = $text =~ /^# HELP portal_gate_\Q$family\E /mg;
    my @type = $text =~ /^# TYPE portal_gate_\Q$family\E /mg;
    is(scalar @help + scalar @type, 2, "HELP and TYPE once for $family");
}

# a reload keeps the zone: the counters go on from where they were

$ng->reload;
($text, $m) = scrape();
is_deeply(counter_samples($m), expected(1), 'a reload keeps every counter')
    or diag($text);

%workers = ();
mix();
($text, $m) = scrape();
is_deeply(counter_samples($m), expected(2),
          'the new workers count on from there, exactly')
    or diag($text);
is(scalar keys %workers, 2, 'over both new workers')
    or diag(explain \%workers);

# environments from a variable make no new series

hit('/byenv/', 1, company => '12', headers => { 'X-Env' => "e$_" }) for 1 .. 20;
($text, $m) = scrape();
is($m->{dec('(other)', '(unknown)', 'off', 'unknown')}, 2 * 2 + 20,
   'twenty unknown environments count under one series');
is(scalar(keys %{ counter_samples($m) }), scalar(keys %{ expected(2) }),
   'and add none');

# a subrequest and an internal redirect back into a gated location decide
# again: the client's request is counted once, and so is its answer

for my $c (['/ssi/', 'an SSI include of a gated location', 'AincB'],
           ['/auth/', 'auth_request into a gated location', undef],
           ['/ix/', 'index: an internal redirect into the same gate', "ix\n"])
{
    my ($path, $what, $body) = @$c;
    my $m0 = counter_samples((scrape())[1]);
    my $r = $ng->get($path, company => '12');
    is($r->{status}, 200, "$what answers 200");
    is($r->{content}, $body, 'with its body') if defined $body;
    my $m1 = counter_samples((scrape())[1]);
    is_deeply(delta($m0, $m1),
              { dec('production', 'customer_portal', 'on', 'allowed') => 1,
                resp('production', 'customer_portal', 'on', '2xx') => 1 },
              "$what: one decision and one answer")
        or diag(explain delta($m0, $m1));
}

my $post = $ng->request('POST', '/metrics', body => 'x');
is($post->{status}, 405, 'the exposition is read-only');

$ng->no_bad_log_lines;

done_testing();
