# portal-gated with edges that misbehave (issue 7, items 2 and 3): three
# edges that accept TCP and never answer, next to two healthy ones and a
# broken value in Redis, do not keep a kill from the healthy edges, a
# restarted daemon included; an edge pinned at the highest revision (a
# hostile PUT) is pushed with ?force=1 and takes the kill, and the store's
# revision is not raised to where it could take no more writes. Real
# redis-server, two real nginx edges, three listeners that hang.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;
use PortalGate::Gated qw(clean_exit wait_until two_edges wait_ticks
                         hung_edges);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $PG_REVISION_MAX = 9007199254740991;     # 2^53 - 1

my $rs = PortalGate::Redis->new;
my $e = two_edges();
my ($A, $B) = @$e{qw(tcp unix)};
my @edges = ($A, $B);
my $P = 'portal-gate:';
my $hung_log = tempdir('portal-gate-hung-XXXXXX', TMPDIR => 1, CLEANUP => 1)
               . '/requests.log';
my @hung = hung_edges(3, $hung_log);

# the hung edges first: they are asked first
my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [@hung, $e->{tcp_url},
                                          $e->{unix_url}]);

sub ctl { $rs->ctl(@_) }

sub store_revision { $rs->cli('GET', "${P}revision") + 0 }

sub answer {
    my ($ng, $company) = @_;
    my $a = $ng->evaluate(flag => 'customer_portal', company => $company);
    return ($a->{decision} // '?') . '/' . ($a->{reason} // '?');
}

sub both_answer {
    my ($company, $want, $name) = @_;
    my $ok = wait_until(sub { !grep { answer($_, $company) ne $want } @edges });
    ok($ok, $name) or diag(join ', ', map {
        'edge ' . $_->port . ': ' . answer($_, $company)
    } @edges);
}

sub both_at_store {
    my ($name) = @_;
    # the store's revision at each try: after a value written by hand, the
    # daemon's digest check may make it a revision of its own at any tick
    my $want;
    my $ok = wait_until(sub {
        $want = store_revision();
        !grep { $_->status->{revision} != $want } @edges
    });
    ok($ok, "$name: both edges at the store's revision $want")
        or diag(join ', ', map { $_->status->{revision} } @edges);
}

# the request lines the hung edges got
sub hung_requests {
    my ($re) = @_;
    open my $fh, '<', $hung_log or return 0;
    return scalar grep { /$re/ } <$fh>;
}

sub edges_log_clean {
    $_->no_bad_log_lines('edge ' . $_->port . ': no [crit], [alert] or '
                         . '[emerg] in its error log') for @edges;
}


subtest 'three hung edges and a broken value: a kill reaches the healthy edges' => sub {
    exits(ctl('init'), 0, 'init');
    exits(ctl('create', 'customer_portal'), 0, 'create');
    exits(ctl('allow', 'customer_portal', '1001'), 0, 'allow 1001');
    $gd->start;
    both_answer('1001', 'on/allowed', 'the healthy edges get the store');

    my $mark = $gd->mark;
    $rs->cli('HSET', "${P}flags:production", 'x', '{broken');
    my $r = ctl('--reason', 'INC-5', 'kill', 'customer_portal');
    exits($r, 0, 'kill customer_portal');
    both_answer('1001', 'off/killed', 'the kill reaches both healthy edges');
    both_at_store('after the kill');
    ok($gd->wait_log(qr/flag "x" in production is not JSON/, 2, $mark),
       'the broken value is said');

    exits(ctl('on', 'customer_portal'), 0, 'on again');
    both_answer('1001', 'on/allowed', 'and so does the next change');

    # what stalled the old daemon: it asked every edge for its snapshot,
    # one after the other, on every read of the store
    ok(wait_until(sub { hung_requests(qr{ PUT /portal-gate/snapshot }) >= 3 }),
       'the hung edges got their PUTs');
    is(hung_requests(qr{ GET /portal-gate/snapshot }), 0,
       'a daemon with a snapshot of its own never asks an edge for its '
       . 'snapshot');

    # a hung edge is said once its PUT times out (10 s), never every tick
    ok(wait_ticks($B, 3), 'three reconcile ticks');
    cmp_ok($gd->count_log(qr/\Q$_\E/), '<=', 1, "$_ said once at most")
        for @hung;
    edges_log_clean();
};

subtest 'a daemon that starts with hung edges and a broken value pushes at once' => sub {
    clean_exit($gd->stop, $gd, 'stopped');
    my $mark = $gd->mark;
    $gd->start;
    ok($gd->wait_log(qr/connected to redis/, 5, $mark), 'started again');
    my $r = ctl('--reason', 'INC-6', 'kill', 'customer_portal');
    exits($r, 0, 'kill customer_portal');
    both_answer('1001', 'off/killed', 'the kill reaches both healthy edges');
    both_at_store('after the kill');
    like($gd->log($mark), qr/flag "x" in production is not JSON.*left out/,
         'the broken value, never valid, is left out');
    like($gd->log($mark), qr/edge \Q$e->{tcp_url}\E holds revision \d+: its flags are the last good versions|edge \Q$e->{unix_url}\E holds revision \d+: its flags are the last good versions/,
         'what a healthy edge holds was asked first, for the broken value');
    my %asked;
    open my $fh, '<', $hung_log;
    $asked{(split ' ', $_)[0]}++ for grep { m{ GET /portal-gate/snapshot } } <$fh>;
    ok(!grep({ $_ > 1 } values %asked), 'each hung edge was asked at most once');
    edges_log_clean();
};

subtest 'an edge pinned at the highest revision is forced back to the store' => sub {
    clean_exit($gd->stop, $gd, 'stopped');
    $gd->rewrite(edges => [$e->{tcp_url}, $e->{unix_url}]);
    $rs->cli('HDEL', "${P}flags:production", 'x');
    exits(ctl('on', 'customer_portal'), 0, 'on');
    my $mark = $gd->mark;
    $gd->start;
    both_at_store('before');

    # a hostile PUT: the highest revision an edge takes, the portal on
    my $pin = {revision => $PG_REVISION_MAX, environments => {production => {
        customer_portal => {enabled => JSON::PP::true(), rollout => 100}}}};
    is($A->put_snapshot($pin)->{status}, 200,
       "edge A takes revision $PG_REVISION_MAX");

    my $r = ctl('--reason', 'INC-7', 'kill', 'customer_portal');
    exits($r, 0, 'kill customer_portal');
    both_answer('1001', 'off/killed', 'the kill reaches both edges, the '
                . 'pinned one too');
    both_at_store('after the kill');
    cmp_ok(store_revision(), '<', 1000, 'the store\'s revision was not '
           . 'raised to where it could take no more writes');

    my $url = $e->{tcp_url};
    ok($gd->wait_log(qr/\[warn\] .*edge \Q$url\E is at revision $PG_REVISION_MAX, which the store's revision \d+ cannot be raised above .*with \?force=1/,
                     2, $mark), 'the daemon warns, naming the edge and both '
       . 'revisions') or diag($gd->log($mark));
    ok($gd->wait_log(qr/edge \Q$url\E: revision \d+ applied in [\d.]+ ms \(forced\)/,
                     2, $mark), 'and says the forced push was applied');
    ok($A->log_lines(qr/\[warn\].*forced over revision $PG_REVISION_MAX/),
       'the edge logs the forced swap');

    # the next change goes the ordinary way
    $mark = $gd->mark;
    exits(ctl('on', 'customer_portal'), 0, 'on again');
    both_answer('1001', 'on/allowed', 'the next change reaches both edges');
    is($gd->count_log(qr/forced/, $mark), 0, 'without forcing');
    edges_log_clean();
};

clean_exit($gd->stop, $gd, 'SIGTERM at the end');
edges_log_clean();

done_testing;
