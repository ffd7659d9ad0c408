# portal-gatectl and the edges: status (the store's revision next to each
# edge's), --wait, init --from-edge (rebuilding a lost store from an edge),
# and -c FILE, against a real redis-server and real nginx edges (TCP and a
# unix socket).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $rs = PortalGate::Redis->new(db => 1);

# one nginx with the API on its TCP port and on a unix socket
my $ng = PortalGate::Test->new(
    server => <<'CONF',
        location /portal/ { portal_gate customer_portal;
                            return 200 "portal v2\n"; }
CONF
    http => <<'CONF');
    server {
        listen unix:%%DIR%%/api.sock;
        location /pg-api/ { portal_gate_api; }
    }
CONF
$ng->start;

my $tcp = 'http://127.0.0.1:' . $ng->port . '/portal-gate/';
my $unix = 'unix:' . $ng->dir . '/api.sock:/pg-api/';
my @edges = ('--edge', $tcp, '--edge', $unix);
my $dead = 'http://127.0.0.1:1/portal-gate/';

sub ctl { $rs->ctl(@_) }


sub store_revision { $rs->cli('GET', 'portal-gate:revision') + 0 }

# what portal-gated will do: the store's flags, as a snapshot, to the edge
sub push_store {
    my $flags = decode_json(ctl('list', '--json')->{out});
    my $res = $ng->put_snapshot({revision => store_revision(),
                                 environments => {production => $flags}});
    return $res->{status};
}

subtest 'status says when the store is not initialised' => sub {
    my $r = ctl('status', @edges);
    exits($r, 1, 'status');
    like($r->{out}, qr/NOT INITIALISED/, 'says so');
};

exits(ctl('init'), 0, 'init');
exits(ctl('create', 'customer_portal'), 0, 'create');
exits(ctl('allow', 'customer_portal', '1001'), 0, 'allow');

subtest 'status shows each edge behind, then in step' => sub {
    my $r = ctl('status', @edges);
    exits($r, 1, 'edges behind');
    like($r->{out}, qr/revision 2\b/, 'the store revision');
    like($r->{out}, qr/\Q$tcp\E\s+revision 0\s+BEHIND/, 'the TCP edge is behind');
    like($r->{out}, qr/\Q$unix\E\s+revision 0\s+BEHIND/, 'the unix edge too');

    is(push_store(), 200, 'the store pushed to the edge');
    $rs->beat;                  # a live portal-gated (t/77 tests the beats)
    $r = ctl('status', @edges);
    exits($r, 0, 'edges in step');
    like($r->{out}, qr/\Q$tcp\E\s+revision 2\s+in step/, 'in step');

    my $j = decode_json(ctl('status', @edges, '--json')->{out});
    is_deeply([map { [$_->{revision}, $_->{lag}] } @{ $j->{edges} }],
              [[2, 0], [2, 0]], '--json: revision and lag per edge');

    $r = ctl('status', @edges, '--edge', $dead);
    exits($r, 1, 'an edge down');
    like($r->{out}, qr/\Q$dead\E\s+unreachable: .*(refused|connect)/i,
         'names the edge and why');
};

subtest '--wait times out naming the edges that lag' => sub {
    my $before = store_revision();
    my $r = ctl('rollout', 'customer_portal', '10', '--wait=0.3', @edges);
    exits($r, 1, 'nobody pushes');
    is(store_revision(), $before + 1, 'the change itself was made');
    like($r->{err}, qr/revision \d+ is not on every edge after 0\.3 s; lagging: \Q$tcp\E \(revision 2\), \Q$unix\E \(revision 2\)/,
         'names each edge and its revision');
    is(push_store(), 200, 'catch the edge up');
};

subtest 'kill --wait returns once every edge has the change' => sub {
    my $target = store_revision() + 1;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        # a stand-in for portal-gated: push as soon as the store moves
        my $deadline = time + 10;
        sleep 0.01 while store_revision() < $target && time < $deadline;
        push_store();
        POSIX::_exit(0);
    }
    my $r = ctl('--reason', 'INC-1', 'kill', 'customer_portal', '--wait',
                @edges);
    waitpid $pid, 0;
    exits($r, 0, 'kill --wait');
    like($r->{out}, qr/KILLED customer_portal/, 'says what changed');
    like($r->{out}, qr/every edge \(2\) has revision $target, after [\d.]+ ms/,
         'and how long the edges took');
    is($ng->get('/portal/', company => '1001')->{status}, 404,
       'the edge answers off');
};

subtest '--wait does not take an edge ahead of the store as confirmed' => sub {
    # the edge has a newer revision than the store, as after Redis was
    # restored from an older backup: it has not got this change
    my $flags = decode_json(ctl('list', '--json')->{out});
    is($ng->put_snapshot({revision => store_revision() + 50,
                          environments => {production => $flags}})->{status},
       200, 'the edge is ahead of the store');
    my $r = ctl('on', 'customer_portal', '--wait=0.3', '--edge', $tcp);
    exits($r, 1, 'on --wait');
    like($r->{err}, qr/\Q$tcp\E \(revision \d+, AHEAD of the store\)/,
         'names the edge as ahead');
    exits(ctl('kill', 'customer_portal'), 0, 'back to off');
};

subtest 'init --from-edge rebuilds a flushed store from an edge' => sub {
    my $edge_rev = $ng->status->{revision};
    $rs->cli('FLUSHDB');
    my $r = ctl('allow', 'customer_portal', '1002');
    exits($r, 1, 'a write after the flush');
    like($r->{err}, qr/not initialised/, 'is refused');
    is($ng->status->{revision}, $edge_rev, 'the edge keeps its state');

    $r = ctl('init', '--from-edge', $tcp);
    exits($r, 0, 'init --from-edge');
    like($r->{out}, qr/rebuilt the store .* from \Q$tcp\E: revision $edge_rev/,
         'says from where and which revision');
    is(store_revision(), $edge_rev, 'the store has the edge revision');
    my $f = decode_json($rs->cli('HGET', 'portal-gate:flags:production',
                                 'customer_portal'));
    is_deeply([@$f{qw(enabled allow)}], [JSON::PP::false, ['1001']],
              'and the flag as the edge had it');
    like(ctl('audit', '--count', '1')->{out},
         qr/init .* reason: rebuilt from the snapshot of \Q$tcp\E/,
         'the audit log says so');

    exits(ctl('on', 'customer_portal'), 0, 'a change after the rebuild');
    is(store_revision(), $edge_rev + 1, 'raises the revision past the edge');
    is(push_store(), 200, 'which the edge accepts');

    $r = ctl('init', '--from-edge', $unix);
    exits($r, 1, 'init --from-edge on a live store');
    like($r->{err}, qr/holds changes already: --from-edge only rebuilds a lost store/,
         'is refused');
    exits(ctl('init', '--from-edge', $dead), 1, 'from an edge that is down');
};

subtest 'init --from-edge still works after a plain init of a lost store' => sub {
    my $edge_rev = $ng->status->{revision};
    cmp_ok($edge_rev, '>', 0, 'the edge holds a snapshot');
    $rs->cli('FLUSHALL');
    exits(ctl('init'), 0, 'the wrong init first: an empty store');
    is(store_revision(), 0, 'revision 0: never written to');

    my $r = ctl('init', '--from-edge', $tcp);
    exits($r, 0, 'init --from-edge over it');
    is(store_revision(), $edge_rev, 'the store has the edge revision');
    like(ctl('list')->{out}, qr/customer_portal/, 'and its flags');
};

subtest '-c FILE gives the edges (and Redis and the prefix)' => sub {
    my $conf = $ng->dir . '/portal-gated.conf';
    open my $fh, '>', $conf or die $!;
    print {$fh} "redis " . $rs->url . ";\nprefix portal-gate:;\n"
              . "edge $tcp;\nedge $unix;   # the socket\n";
    close $fh;
    $rs->beat;
    my $r = ctl('-c', $conf, 'status');
    exits($r, 0, 'status -c FILE');
    like($r->{out}, qr/\Q$tcp\E.*\n.*\Q$unix\E/, 'both edges from the file');

    open $fh, '>', $conf or die $!;
    print {$fh} "edges $tcp;\n";
    close $fh;
    $r = ctl('-c', $conf, 'status');
    exits($r, 2, 'a bad config');
    like($r->{err}, qr/portal-gated\.conf:1: unknown directive "edges"/,
         'names the file, the line and the directive');
};

subtest 'bad edge options exit 2' => sub {
    for my $case (
        [['status', '--edge', 'ftp://x/'], qr/invalid edge "ftp:\/\/x\/"/],
        [['status', '--edge', 'unix:relative.sock'], qr/invalid edge/],
        [['list', '--wait', '--edge', $tcp], qr/--wait goes with a change/],
        [['on', 'customer_portal', '--wait'], qr/--wait needs the edges/],
        [['on', 'customer_portal', '--wait=soon', '--edge', $tcp],
         qr/invalid --wait "soon"/],
        [['on', 'customer_portal', '--wait=nan', '--edge', $tcp],
         qr/invalid --wait "nan"/],
        [['allow', 'customer_portal', '--wait', '5', '--edge', $tcp],
         qr/"--wait 5" is ambiguous: .* write --wait=5/],
        [['create', 'x', '--from-edge', $tcp], qr/--from-edge goes with init/],
        # the rule portal-gated's config applies to its edge lines
        [['status', '--edge', 'http://127.0.0.1:1/portal gate/'],
         qr/^portal-gatectl: invalid edge "http:\/\/127\.0\.0\.1:1\/portal gate\/": an edge's URL has no spaces: write a space as %20$/],
        [['status', '--edge', "http://127.0.0.1:1/portal-gate/\ttab/"],
         qr/^portal-gatectl: invalid edge "http:\/\/127\.0\.0\.1:1\/portal-gate\/\?tab\/": an edge's URL has no spaces/],
        [['status', '--edge', 'http://127.0.0.1:1/portal-gate/?a=1'],
         qr/^portal-gatectl: invalid edge "[^"]*\?a=1": an edge's URL has no query \("\?\.\.\."\): the API's paths are appended to it$/],
        [['kill', 'customer_portal', '--direct', '--edge', "$tcp#x"],
         qr/^portal-gatectl: invalid edge "[^"]*#x": an edge's URL has no fragment/],
        [['release', 'customer_portal', '--edge', 'unix:/tmp/a.sock:/pg api/'],
         qr/invalid edge "unix:\/tmp\/a\.sock:\/pg api\/": an edge's URL has no spaces/],
        [['init', '--from-edge', "$tcp?x=1"], qr/invalid edge .*has no query/],
    ) {
        my ($args, $re) = @$case;
        my $r = ctl(@$args);
        exits($r, 2, "@$args");
        like($r->{err}, $re, "@$args: says what is wrong");
    }

    # a socket is a file name: a space there is its own business
    my $r = ctl('status', '--edge', 'unix:/nonexistent dir/api.sock:/pg-api/');
    exits($r, 1, 'a unix socket path with a space');
    like($r->{out}, qr{unix:/nonexistent dir/api\.sock:/pg-api/\s+unreachable},
         'is taken, and asked');
};

subtest 'without libcurl, what asks no edge works, and what does says so' => sub {
    # a libcurl.so.4 that cannot be loaded, found before the system's:
    # portal-gatectl loads libcurl only to ask an edge (pg_curl.h)
    my $lib = $ng->dir . '/broken-libcurl';
    mkdir $lib or die "$lib: $!";
    open my $fh, '>', "$lib/libcurl.so.4" or die $!;
    print {$fh} "not a shared library\n";
    close $fh;
    my %env = (LD_LIBRARY_PATH => $lib);

    for my $args (['--version'], ['list'], ['show', 'customer_portal'],
                  ['audit'], ['explain', 'customer_portal', '1001'],
                  ['env', 'list'],
                  ['on', 'customer_portal', '--edge', $tcp],
                  ['allow', 'customer_portal', 'nocurl1']) {
        exits($rs->ctl_env(\%env, @$args), 0, "@$args");
    }
    # status without edges: exit 1 (no edges is a problem), not libcurl
    my $s = $rs->ctl_env(\%env, 'status');
    exits($s, 1, 'status without edges');
    unlike($s->{err}, qr/libcurl/, 'status without edges: libcurl not asked');

    my $rev = store_revision();
    for my $args (['status', @edges],
                  ['kill', 'customer_portal', '--direct', @edges],
                  ['release', 'customer_portal', @edges],
                  ['rollout', 'customer_portal', '5', '--wait=1', @edges],
                  ['init', '--from-edge', $tcp]) {
        my $r = $rs->ctl_env(\%env, @$args);
        exits($r, 1, "@$args");
        like($r->{err}, qr/\Aportal-gatectl: cannot load libcurl, which reaches the edges: \S*libcurl\.so\.4: [^\n]+; install libcurl4\n\z/,
             "@$args: one line says why");
    }
    is(store_revision(), $rev, 'and none of them wrote anything');

    my $r = $rs->ctl_env(\%env, 'kill', 'customer_portal', '--wait=1', @edges);
    exits($r, 1, 'kill --wait');
    like($r->{out}, qr/KILLED customer_portal/, 'the kill is made all the same');
    like($r->{err}, qr/\Aportal-gatectl: the change is made \(revision @{[$rev + 1]}\), but --wait cannot ask the edges: cannot load libcurl/,
         'then says it cannot wait, and why');
    exits(ctl('on', 'customer_portal'), 0, 'on again');
};

$ng->no_bad_log_lines;

done_testing;
