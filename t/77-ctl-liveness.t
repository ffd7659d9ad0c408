# portal-gatectl status and --wait against the controllers' liveness
# (P"controllers", include/pg_store.h): status names every controller with
# the age of its last beat on Redis's clock, alive or not, what it read and
# what it says of each edge, and each edge's revision and kill overrides;
# it exits 1 when no controller is alive, an edge lags or cannot be
# reached, or Redis is down. A --wait that times out names the likely
# cause. Beats written here in the exact format first, then the real
# portal-gated, held still with SIGSTOP. Real redis-server, real nginx.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Sys::Hostname qw(hostname);
use Test::More;
use PortalGate::Gated qw(wait_until two_edges);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $rs = PortalGate::Redis->new;
my $e = two_edges();
my ($A, $B) = @$e{qw(tcp unix)};
my @edges = ('--edge', $e->{tcp_url}, '--edge', $e->{unix_url});
my $dead = 'http://127.0.0.1:1/portal-gate/';

sub ctl { $rs->ctl(@_) }

sub store_revision { $rs->cli('GET', 'portal-gate:revision') + 0 }

# what portal-gated would do: the store's flags to both edges
sub push_store {
    my $flags = decode_json(ctl('list', '--json')->{out});
    my $snap = {revision => store_revision(),
                environments => {production => $flags}};
    $A->put_snapshot($snap);
    $B->put_snapshot($snap, prefix => '/portal-gate/');
}

# a beat of a controller that reaches both edges at the store's revision
sub good_beat {
    my (%o) = @_;
    my $rev = store_revision();
    return $rs->beat(store_revision => $rev,
                     edges => {map { ($_ => {revision => $rev, ok => 1}) }
                               $e->{tcp_url}, $e->{unix_url}}, %o);
}

exits(ctl('init'), 0, 'init');
exits(ctl('create', 'customer_portal'), 0, 'create');
exits(ctl('rollout', 'customer_portal', '100'), 0, 'rollout 100');
push_store();

subtest 'status with no controller that ever beat exits 1 and says so' => sub {
    my $r = ctl('status', @edges);
    exits($r, 1, 'status');
    like($r->{out}, qr/^controllers: none has ever beaten in this store$/m,
         'no controllers');
    like($r->{out}, qr/no portal-gated has ever beaten in this store: is it running, on this Redis and prefix\?/,
         'names the problem');
    like($r->{out}, qr/\Q$e->{tcp_url}\E\s+revision \d+\s+in step/,
         'the edges all the same');
};

subtest 'status with a live controller and every edge in step exits 0' => sub {
    my $id = good_beat(host => 'web1', pid => 4711, interval_ms => 2000,
                       version => '0.8.0');
    my $r = ctl('status', @edges);
    exits($r, 0, 'status');
    like($r->{out}, qr/^  web1:4711\s+portal-gated 0\.8\.0\s+alive, beat \d+\.\d s ago, had read revision @{[store_revision()]}$/m,
         'the controller: who, version, the age of its beat, what it read');
    like($r->{out}, qr/^      \Q$e->{tcp_url}\E\s+revision \d+, in step$/m,
         'what it says of each edge');
    like($r->{out}, qr/^all well: 1 portal-gated alive, 2 edges in step$/m,
         'all well');
    $rs->cli('HDEL', 'portal-gate:controllers', $id);
};

subtest 'a beat older than three intervals is not alive: exit 1' => sub {
    # the ages shown grow while portal-gatectl runs (a second or more on a
    # loaded machine): at least the beat's age, not within a second of it
    good_beat(host => 'web1', pid => 1, interval_ms => 2000, age_ms => 9000);
    my $r = ctl('status', @edges);
    exits($r, 1, 'status');
    like($r->{out}, qr/web1:1 .*NOT ALIVE: last beat \d+\.\d s ago \(alive within 6\.0 s\)/,
         'not alive, with the age and the limit');
    my ($age) = $r->{out} =~ /web1:1 .*NOT ALIVE: last beat (\d+\.\d) s ago/;
    cmp_ok($age // 0, '>=', 9, 'the age is the beat\'s, 9 s or more');
    like($r->{out}, qr/no portal-gated has beaten in Redis for (?:9|[1-9]\d+) s: is it running\?/,
         'names the problem');

    # three intervals of 100 ms are less than the 3 s floor: a beat 500 ms
    # old is alive (each written again just before the status that reads
    # it, which leaves portal-gatectl 2.5 s to read it under 3 s)
    good_beat(host => 'web2', pid => 2, interval_ms => 100, age_ms => 500);
    $r = ctl('status', @edges);
    exits($r, 0, 'one alive is enough');
    like($r->{out}, qr/web2:2 .*alive, beat [0-2]\.\d s ago/,
         'alive: a beat is young for 3 s at least');
    like($r->{out}, qr/web1:1 .*NOT ALIVE/, 'the old one still shown');

    good_beat(host => 'web2', pid => 2, interval_ms => 100, age_ms => 500);
    my $j = decode_json(ctl('status', '--json', @edges)->{out});
    my %c = map { ($_->{id} => $_) } @{ $j->{controllers} };
    is_deeply([@{ $c{'web1:1'} }{qw(limit_ms)}, $c{'web1:1'}{alive} ? 1 : 0],
              [6000, 0], '--json: web1 not alive, limit 6000 ms');
    is_deeply([@{ $c{'web2:2'} }{qw(limit_ms)}, $c{'web2:2'}{alive} ? 1 : 0],
              [3000, 1], '--json: web2 alive, limit 3000 ms');
    cmp_ok($c{'web1:1'}{age_ms}, '>=', 9000, '--json: the age in ms');
    ok($j->{ok}, '--json: ok');
    $rs->cli('DEL', 'portal-gate:controllers');
};

subtest 'a lagging or unreachable edge exits 1 with a live controller' => sub {
    exits(ctl('allow', 'customer_portal', '5'), 0, 'a change nobody pushes');
    good_beat();
    my $r = ctl('status', @edges, '--edge', $dead);
    exits($r, 1, 'status');
    like($r->{out}, qr/\Q$e->{tcp_url}\E is behind the store \(revision \d+, the store's \d+\)/,
         'the lagging edge');
    like($r->{out}, qr/\Q$dead\E is unreachable: .*connect/i,
         'the unreachable one');
    my $j = decode_json(ctl('status', '--json', @edges, '--edge', $dead)->{out});
    ok(!$j->{ok}, '--json: not ok');
    is(scalar @{ $j->{problems} }, 3, '--json: three problems');
    push_store();
};

subtest "status lists each edge's kill overrides" => sub {
    good_beat();
    is($A->api('PUT', 'overrides?env=production&flag=customer_portal',
               '{"by": "alice", "reason": "INC-7"}')->{status}, 200,
       'a kill override on the TCP edge');
    my $r = ctl('status', @edges);
    exits($r, 0, 'an override is no failure of its own');
    like($r->{out}, qr/\Q$e->{tcp_url}\E\s+revision \d+\s+in step\n      KILL OVERRIDE: customer_portal in production, since \S+Z by alice: INC-7 \(portal-gatectl -e production release customer_portal\)/,
         'under the edge that holds it: what, since when, who, why, and the way out');
    my $j = decode_json(ctl('status', '--json', @edges)->{out});
    is_deeply([map { scalar @{ $_->{overrides} } } @{ $j->{edges} }], [1, 0],
              '--json: the overrides of each edge');
    is($j->{edges}[0]{overrides}[0]{by}, 'alice', '--json: who');
    $A->api('DELETE', 'overrides?env=production&flag=customer_portal');
};

subtest 'status with Redis down still shows the edges, and exits 1' => sub {
    $rs->stop;
    my $r = ctl('status', @edges);
    exits($r, 1, 'status');
    like($r->{out}, qr/UNREACHABLE: .*refused/i, 'says Redis is down');
    like($r->{out}, qr/\Q$e->{tcp_url}\E\s+revision \d+\s+\(the store's is unknown\)/,
         "each edge's revision");
    $rs->start;
    exits(ctl('init', '--from-edge', $e->{tcp_url}), 0,
          'the new, empty Redis rebuilt from an edge');
};

subtest '--wait that times out with no live controller says so' => sub {
    good_beat(age_ms => 12000);
    my $r = ctl('rollout', 'customer_portal', '7', '--wait=0.3', @edges);
    exits($r, 1, 'rollout --wait');
    like($r->{err}, qr/is not on every edge after 0\.3 s/, 'times out');
    # 12 s when written, a little more by the time it is read: how much
    # more is the machine's business
    like($r->{err}, qr/likely cause: no portal-gated has beaten in Redis for (\d+) s: is it running\?/,
         'names the likely cause');
    my ($age) = $r->{err} =~ /beaten in Redis for (\d+) s/;
    ok(defined $age && $age >= 12 && $age < 60, 'with the age of its last beat')
        or diag("age: " . ($age // 'none'));
    $rs->cli('DEL', 'portal-gate:controllers');
    $r = ctl('kill', 'customer_portal', '--wait=0.3', @edges);
    like($r->{err}, qr/likely cause: no portal-gated has ever beaten in this store/,
         'and when none ever beat');
};

subtest '--wait that times out names a controller that cannot reach the edge' => sub {
    my $rev = store_revision();
    $rs->beat(host => 'web1', pid => 9, store_revision => $rev + 1,
              edges => {$e->{tcp_url} => {revision => $rev, ok => 1},
                        $e->{unix_url} => {revision => undef, ok => 0,
                            error => "edge $e->{unix_url}: PUT snapshot: Couldn't connect to server"}});
    my $r = ctl('on', 'customer_portal', '--wait=0.3', '--edge', $e->{unix_url});
    exits($r, 1, 'on --wait');
    like($r->{err}, qr/likely cause: portal-gated web1:9 is alive but cannot reach \Q$e->{unix_url}\E: .*Couldn't connect/,
         'names the controller, the edge and why');
};

subtest '--wait that times out names an edge that does not answer from here' => sub {
    my $r = ctl('kill', 'customer_portal', '--wait=0.3', '--edge', $dead);
    exits($r, 1, 'kill --wait');
    like($r->{err}, qr/likely cause: \Q$dead\E does not answer from here \(.*connect/i,
         'names the edge');
    $rs->cli('DEL', 'portal-gate:controllers');
    push_store();
};

subtest 'the real portal-gated: alive, then held still (SIGSTOP), then back' => sub {
    my $gd = PortalGate::Gated->new(redis => $rs->url,
                                    edges => [$e->{tcp_url}, $e->{unix_url}],
                                    reconcile => '300ms');
    $gd->start;
    my $id = hostname() . ':' . $gd->pid;
    my $r = wait_until(sub { my $r = ctl('status', @edges);
                             $r->{exit} == 0 ? $r : undef }, 10);
    ok($r, 'status exits 0 once it beats and pushes')
        or return diag(ctl('status', @edges)->{out}, $gd->log);
    like($r->{out}, qr/^  \Q$id\E\s+portal-gated \S+\s+alive/m,
         'names it, alive');

    kill 'STOP', $gd->pid;
    # alive for 3 intervals of 300 ms, at least 3 s: a bounded wait, no timing
    $r = wait_until(sub { my $r = ctl('status', @edges);
                          $r->{exit} == 1 ? $r : undef }, 15);
    ok($r, 'status exits 1 once its beat is too old') or diag($gd->log);
    like($r->{out} // '', qr/\Q$id\E .*NOT ALIVE: last beat \d+\.\d s ago \(alive within 3\.0 s\)/,
         'says it is not alive');
    like($r->{out} // '', qr/no portal-gated has beaten in Redis for \d+ s: is it running\?/,
         'and asks whether it runs');

    $r = ctl('rollout', 'customer_portal', '50', '--wait=0.5', @edges);
    exits($r, 1, 'a change --wait while it is stopped');
    like($r->{err}, qr/likely cause: no portal-gated has beaten in Redis for \d+ s: is it running\?/,
         'names the hung controller as the likely cause');

    kill 'CONT', $gd->pid;
    ok(wait_until(sub { ctl('status', @edges)->{exit} == 0 }, 10),
       'back: alive, and the edges in step');
    is($gd->stop, 0, 'stops cleanly');
};

done_testing;
