# portal-gated when things go wrong: an uninitialised store is never
# pushed, an edge that is down does not hold back the others, the edges
# keep their state while Redis is down, stops answering (said to time
# out) or is flushed (and init --from-edge rebuilds the store), and a store
# restored from an older backup wins over the edges' higher revision. Real redis-server, two real nginx edges.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Copy qw(copy);
use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep time);
use PortalGate::Gated qw(clean_exit wait_until two_edges wait_ticks);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module find_companies);

require_module();

my $rs = PortalGate::Redis->new(db => 3);   # SELECT after every reconnect
my $e = two_edges();
my ($A, $B) = @$e{qw(tcp unix)};
my @edges = ($A, $B);
my $DEAD = 'http://127.0.0.1:1/portal-gate/';

my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [$e->{tcp_url}, $e->{unix_url}],
                                environments => [qw(production staging)]);

# companies inside a 10% and a 30% rollout of customer_portal, and outside
my ($IN10) = find_companies('customer_portal', 1, sub { $_[0] < 1000 });
my ($IN30) = find_companies('customer_portal', 1,
                            sub { $_[0] >= 2000 && $_[0] < 3000 });

sub ctl { $rs->ctl(@_) }

# -1 while Redis cannot say (down, loading)
sub store_revision {
    my $v = $rs->cli('GET', 'portal-gate:revision');
    return $v =~ /^\d+$/ ? $v : -1;
}

sub decision {
    my ($ng, $flag, $company) = @_;
    return $ng->evaluate(flag => $flag, company => $company)->{decision}
        // '?';
}

# what both edges answer for these companies, and their revisions
sub picture {
    my @c = @_;
    return [map {
        my $ng = $_;
        [$ng->status->{revision}, map { decision($ng, 'customer_portal', $_) } @c]
    } @edges];
}

sub both_answer {
    my ($company, $want, $name, $timeout) = @_;
    my $ok = wait_until(sub {
        !grep { decision($_, 'customer_portal', $company) ne $want } @edges
    }, $timeout);
    ok($ok, $name) or diag(join ', ', map {
        'edge ' . $_->port . ': ' . decision($_, 'customer_portal', $company)
    } @edges);
}

sub both_at_store {
    my ($name, $timeout) = @_;
    my $want = store_revision();
    my $ok = wait_until(sub {
        !grep { $_->status->{revision} != $want } @edges
    }, $timeout);
    ok($ok, "$name: both edges at the store's revision $want")
        or diag(join ', ', map { $_->status->{revision} } @edges);
}

sub edges_log_clean {
    $_->no_bad_log_lines('edge ' . $_->port . ': no [crit], [alert] or '
                         . '[emerg] in its error log') for @edges;
}

subtest 'an uninitialised store is never pushed over what the edges hold' => sub {
    my $snap = {revision => 40, environments => {production => {
        customer_portal => {enabled => JSON::PP::true(), rollout => 10,
                            allow => ['1001']}}}};
    is($_->put_snapshot($snap)->{status}, 200,
       'edge ' . $_->port . ': holds revision 40') for @edges;

    $gd->start;
    ok($gd->wait_log(qr/NOT INITIALISED/, 5), 'the daemon says the store '
       . 'is not initialised') or diag($gd->log);
    like($gd->log, qr/NOT INITIALISED.*portal-gatectl init --from-edge URL.*nothing is pushed/,
         'names the way out, and that nothing is pushed');
    ok(wait_ticks($B, 4), 'four reconcile ticks');

    for my $ng (@edges) {
        is($ng->status->{revision}, 40, 'edge ' . $ng->port
           . ': still at revision 40');
        is(decision($ng, 'customer_portal', '1001'), 'on',
           'edge ' . $ng->port . ': still gating by it');
    }
    is($gd->count_log(qr/NOT INITIALISED/), 1, 'said once');
    unlike($gd->log, qr/applied/, 'nothing was pushed');

    my $r = ctl('init', '--from-edge', $e->{tcp_url});
    exits($r, 0, 'init --from-edge');
    is(store_revision(), 40, 'the store has the edge revision');
    ok($gd->wait_log(qr/is good again/, 5), 'the daemon sees the store');
    exits(ctl('rollout', 'customer_portal', '30'), 0, 'rollout 30');
    both_answer($IN30, 'on', "$IN30 in 30%: on");
    both_at_store('after rollout');
    edges_log_clean();
};

subtest 'an edge that is down does not hold back the others' => sub {
    clean_exit($gd->stop, $gd, 'stop');
    $gd->rewrite(edges => [$e->{tcp_url}, $DEAD, $e->{unix_url}]);
    my $mark = $gd->mark;
    $gd->start;
    ok($gd->wait_log(qr/\Q$DEAD\E.*(?:refused|connect)/i, 5, $mark),
       'the log says it cannot reach the dead edge');

    exits(ctl('rollout', 'customer_portal', '10'), 0, 'rollout 10');
    both_answer($IN30, 'off', "$IN30 out of 10%: off on both live edges");
    both_at_store('live edges');
    ok(wait_ticks($B, 4), 'four reconcile ticks');
    is($gd->count_log(qr/\Q$DEAD\E/, $mark), 1,
       'the dead edge is named once, not every tick')
        or diag($gd->log($mark));
    like($gd->log($mark), qr/\Q$DEAD\E.*keeps what it has, and is tried again/,
         'says it is tried again');

    clean_exit($gd->stop, $gd, 'stop');
    $gd->rewrite(edges => [$e->{tcp_url}, $e->{unix_url}]);
    $mark = $gd->mark;
    $gd->start;
    ok($gd->wait_log(qr/connected to redis/, 5, $mark),
       'started again with the live edges only');
    edges_log_clean();
};

subtest 'Redis down: the edges keep gating; Redis back: changes flow again' => sub {
    both_at_store('before');
    my $rev = store_revision();
    my @c = ('1001', $IN10, $IN30);
    my $before = picture(@c);
    is_deeply($before->[0], [$rev, 'on', 'on', 'off'], 'edge answers before');

    is($rs->cli('SAVE'), 'OK', 'Redis saved');
    my $mark = $gd->mark;
    $rs->stop;
    ok($gd->wait_log(qr/redis unreachable/, 5, $mark),
       'the daemon says Redis is unreachable');

    # several seconds of backoff: the edges do not move, and it is said once
    my $changed = 0;
    my $until = time + 2.5;
    while (time < $until) {
        my $now = picture(@c);
        $changed++ unless JSON::PP->new->canonical->encode($now)
                       eq JSON::PP->new->canonical->encode($before);
        sleep 0.25;
    }
    is($changed, 0, 'the edges answered the same all the while');
    is_deeply(picture(@c), $before, 'and still do');
    is($gd->count_log(qr/redis unreachable/, $mark), 1,
       '"redis unreachable" said once') or diag($gd->log($mark));
    like($gd->log($mark), qr/redis unreachable: .*the edges keep what they hold/,
         'with the revision the edges keep');

    # an edge that restarts meanwhile gets the last state from the daemon
    $B->restart;
    ok(wait_until(sub { $B->status->{revision} == $rev }),
       "the restarted edge gets revision $rev with Redis still down");
    is_deeply(picture(@c), $before, 'and answers as before');

    $rs->start;
    ok($gd->wait_log(qr/reachable again/, 7, $mark),
       'the daemon says Redis is reachable again') or diag($gd->log($mark));
    is(store_revision(), $rev, 'Redis came back with its data');

    exits(ctl('rollout', 'customer_portal', '30'), 0, 'a change after');
    both_answer($IN30, 'on', 'reaches both edges');
    both_at_store('after Redis came back');
    edges_log_clean();
};

subtest 'a Redis that stops answering is said to time out, with the timeout' => sub {
    both_at_store('before');
    my $mark = $gd->mark;

    # stopped: the kernel still accepts and holds the connections
    kill 'STOP', $rs->{pid};
    my $line = $gd->wait_log(qr/redis unreachable/, 5, $mark);
    kill 'CONT', $rs->{pid};

    like($line // '', qr/redis unreachable: \Q${\ $rs->url }\E: timed out: no answer within 1000 ms; the edges keep what they hold/,
         'the log says the command timed out, and after how long')
        or diag($gd->log($mark));
    ok($gd->wait_log(qr/reachable again/, 7, $mark),
       'and that Redis is reachable again once it answers');
    unlike($gd->log($mark), qr/Resource temporarily unavailable/,
           'never "Resource temporarily unavailable"');

    exits(ctl('rollout', 'customer_portal', '10'), 0, 'a change after');
    both_at_store('after Redis answered again');
    edges_log_clean();
};

subtest 'FLUSHALL: the edges keep their state; init --from-edge restores it' => sub {
    my @c = ('1001', $IN10, $IN30);
    my $before = picture(@c);
    my $rev = store_revision();
    my $mark = $gd->mark;

    is($rs->cli('FLUSHALL'), 'OK', 'FLUSHALL');
    ok($gd->wait_log(qr/NOT INITIALISED/, 5, $mark), 'the daemon says the '
       . 'store is not initialised');
    ok(wait_ticks($B, 4), 'four reconcile ticks');
    is_deeply(picture(@c), $before, "the edges keep revision $rev and their "
              . 'answers');
    is($gd->count_log(qr/NOT INITIALISED/, $mark), 1, 'said once');
    like($gd->log($mark), qr/NOT INITIALISED.*the edges keep what they hold/,
         'and that the edges keep what they hold');
    unlike($gd->log($mark), qr/applied/, 'nothing was pushed');

    my $r = ctl('rollout', 'customer_portal', '10');
    exits($r, 1, 'a write to the flushed store');

    $r = ctl('init', '--from-edge', $e->{unix_url});
    exits($r, 0, 'init --from-edge the unix edge');
    is(store_revision(), $rev, 'the store is back at the edges\' revision');
    ok($gd->wait_log(qr/is good again/, 5, $mark), 'the daemon sees it');

    exits(ctl('rollout', 'customer_portal', '10'), 0, 'rollout 10');
    both_answer($IN30, 'off', "$IN30 out of 10%: off");
    both_answer('1001', 'on', 'the allowed company kept');
    both_at_store('after the rebuild');
    edges_log_clean();
};

subtest 'FLUSHALL then a plain init: the edges are not emptied' => sub {
    my @c = ('1001', $IN10, $IN30);
    my $before = picture(@c);
    my $rev = store_revision();
    my $mark = $gd->mark;

    is($rs->cli('FLUSHALL'), 'OK', 'FLUSHALL');
    exits(ctl('init'), 0, 'the wrong init: an empty store, revision 0');
    ok($gd->wait_log(qr/initialised empty \(revision 0\)/, 5, $mark),
       'the daemon refuses to empty the edges');
    sleep 1.5;      # five reconcile ticks: each tries the edges again
    is_deeply(picture(@c), $before, 'the edges keep their answers');
    for my $edge ($e->{tcp_url}, $e->{unix_url}) {
        is($gd->count_log(qr/initialised empty.*\Q$edge\E/, $mark), 1,
           "said once for $edge");
    }

    exits(ctl('init', '--from-edge', $e->{tcp_url}), 0,
          'init --from-edge over the empty store');
    is(store_revision(), $rev, 'the store is back at the edges\' revision');
    exits(ctl('allow', 'customer_portal', '3003'), 0, 'a change');
    both_answer('3003', 'on', '3003 allowed');
    both_at_store('after the rebuild');
    edges_log_clean();
};

subtest 'a store restored from an older backup wins over the edges' => sub {
    exits(ctl('allow', 'customer_portal', '2002'), 0, 'allow 2002');
    both_at_store('before the backup');
    my $n = store_revision();
    is($rs->cli('SAVE'), 'OK', "a backup at revision $n");
    my $rdb = "$rs->{dir}/dump.rdb";
    ok(copy($rdb, "$rdb.old"), 'kept aside');

    exits(ctl('deny', 'customer_portal', '1001'), 0, 'deny 1001');
    exits(ctl('rollout', 'customer_portal', '30'), 0, 'rollout 30');
    both_answer('1001', 'off', '1001 denied at the edges');
    both_answer($IN30, 'on', "$IN30 on at the edges");
    both_at_store('after the changes');
    my $high = store_revision();
    is($high, $n + 2, "edges at revision $high");

    my $mark = $gd->mark;
    $rs->cli('SAVE');
    $rs->stop;
    ok(copy("$rdb.old", $rdb), 'the old backup restored');
    $rs->start;
    ok(wait_until(sub { store_revision() == $n || store_revision() > $high }),
       "Redis came back from the backup");

    ok(wait_until(sub {
        !grep { $_->status->{revision} <= $high } @edges
    }, 7), "both edges above revision $high") or diag($gd->log($mark));
    both_at_store('converged');
    cmp_ok(store_revision(), '>', $high, 'the store\'s revision was raised');
    both_answer('1001', 'on', '1001 allowed again: the old content');
    both_answer($IN30, 'off', "$IN30 off again: rollout 10");
    is(decision($_, 'customer_portal', '2002'), 'on',
       'edge ' . $_->port . ': 2002 allowed, as in the backup') for @edges;

    like($gd->log($mark), qr/\[warn\] .*above the store's $n .*raised the store's revision to \d+/,
         'the daemon warns that it raised the revision')
        or diag($gd->log($mark));
    my $r = ctl('audit', '--count', '3');
    exits($r, 0, 'audit');
    like($r->{out}, qr/rev \d+\s+portal-gated\s+-\s+-\s+revision\b.*reason: edge .* was at revision $high, above the store's $n/,
         'the audit log shows the raise, by portal-gated, and why');
    edges_log_clean();
};

clean_exit($gd->stop, $gd, 'SIGTERM at the end');
edges_log_clean();

done_testing;
