# portal-gated keeping two real nginx edges (one reached over TCP, one
# over a unix socket) in step with a real redis-server: changes made with
# portal-gatectl reach both edges, kill --wait returns once they have,
# a restarted edge heals on its own, a broken Redis value never blocks a
# kill switch, the edges keep serving when the daemon dies, and it stops
# cleanly on SIGTERM and SIGINT.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use PortalGate::Gated qw(clean_exit wait_until two_edges wait_ticks);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module find_companies);

require_module();

my $rs = PortalGate::Redis->new;
my $e = two_edges();
my ($A, $B) = @$e{qw(tcp unix)};
my @edges = ($A, $B);

my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [$e->{tcp_url}, $e->{unix_url}],
                                environments => [qw(production staging)]);

# a company inside a 10% rollout of customer_portal, and one outside 50%
my ($IN10) = find_companies('customer_portal', 1, sub { $_[0] < 1000 });
my ($OUT50) = find_companies('customer_portal', 1, sub { $_[0] >= 5000 });

sub ctl { $rs->ctl(@_) }

sub store_revision { $rs->cli('GET', 'portal-gate:revision') + 0 }

sub decision {
    my ($ng, $flag, $company, $env) = @_;
    return $ng->evaluate(flag => $flag, company => $company,
                         $env ? (env => $env) : ())->{decision} // '?';
}

# every edge answers $want for $flag and $company, within 5 s
sub both_answer {
    my ($flag, $company, $want, $name, $env) = @_;
    my $ok = wait_until(sub {
        !grep { decision($_, $flag, $company, $env) ne $want } @edges
    });
    ok($ok, $name) or diag(join ', ', map {
        'edge ' . $_->port . ': ' . decision($_, $flag, $company, $env)
    } @edges);
}

# every edge has the store's revision, within 5 s
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

sub edges_log_clean {
    $_->no_bad_log_lines('edge ' . $_->port . ': no [crit], [alert] or '
                         . '[emerg] in its error log') for @edges;
}

$gd->start;

subtest 'a change made with portal-gatectl reaches both edges' => sub {
    exits(ctl('init'), 0, 'init');
    exits(ctl('create', 'customer_portal'), 0, 'create');
    exits(ctl('allow', 'customer_portal', '1001'), 0, 'allow 1001');

    both_answer('customer_portal', '1001', 'on', 'the allowed company: on');
    both_answer('customer_portal', $IN10, 'off', "$IN10 (rollout 0): off");
    both_at_store('after allow');
    is($_->get('/portal/', company => '1001')->{status}, 200,
       'edge ' . $_->port . ': the gated location serves 1001') for @edges;
    is($_->get('/portal/', company => $IN10)->{status}, 404,
       'edge ' . $_->port . ": and not $IN10") for @edges;

    exits(ctl('rollout', 'customer_portal', '10'), 0, 'rollout 10');
    both_answer('customer_portal', $IN10, 'on', "$IN10 in 10%: on");
    both_answer('customer_portal', $OUT50, 'off', "$OUT50: still off");
    both_at_store('after rollout');

    exits(ctl('-e', 'staging', 'create', 'customer_portal'), 0,
          'create in staging');
    exits(ctl('-e', 'staging', 'rollout', 'customer_portal', '100'), 0,
          'staging rollout 100');
    both_answer('customer_portal', $OUT50, 'on', 'staging: on for everyone',
                'staging');
    both_answer('customer_portal', $OUT50, 'off', 'production unchanged');
    both_at_store('after staging');

    ok($gd->wait_log(qr/edge \Q$e->{unix_url}\E: revision \d+ applied/, 0),
       'the log says which revision each edge applied');
    edges_log_clean();
};

subtest 'kill --wait -c FILE returns once both edges answer off' => sub {
    my $target = store_revision() + 1;
    my $r = ctl('--reason', 'INC-7', 'kill', 'customer_portal', '--wait=5',
                '-c', $gd->conf_path);
    exits($r, 0, 'kill --wait=5 -c FILE');
    like($r->{out}, qr/KILLED customer_portal/, 'says what changed');
    like($r->{out}, qr/every edge \(2\) has revision $target, after [\d.]+ ms/,
         'both edges of the config, and how long they took');

    # right after it returned: no polling here
    for my $ng (@edges) {
        my $ans = $ng->evaluate(flag => 'customer_portal', company => '1001');
        is("$ans->{decision}/$ans->{reason}", 'off/killed',
           'edge ' . $ng->port . ': the allowed company is killed');
        is($ng->get('/portal/', company => '1001')->{status}, 404,
           'edge ' . $ng->port . ': the gated location is off');
        is($ng->status->{revision}, $target, 'edge ' . $ng->port
           . ": revision $target");
    }
    edges_log_clean();
};

subtest 'the kill shows in the audit log' => sub {
    my $r = ctl('audit', 'customer_portal', '--count', '1');
    exits($r, 0, 'audit');
    like($r->{out}, qr/rev \d+\s+tester\s+production\s+customer_portal\s+kill\b.*reason: INC-7/,
         'who, where, which flag, kill, and the reason');
};

subtest 'a restarted edge comes back empty and is healed by reconcile' => sub {
    exits(ctl('on', 'customer_portal'), 0, 'on');
    both_answer('customer_portal', '1001', 'on', 'on again');
    my $rev = store_revision();
    my $mark = $gd->mark;

    # hold the daemon still, so that the empty edge can be seen
    kill 'STOP', $gd->pid;
    $B->restart;
    my $st = $B->status;
    my $ans = $B->evaluate(flag => 'customer_portal', company => '1001');
    kill 'CONT', $gd->pid;
    is($st->{revision}, 0, 'the edge without a state file comes back at '
                           . 'revision 0');
    is("$ans->{decision}/$ans->{reason}", 'off/unknown',
       'and knows no flag before the daemon heals it');

    ok(wait_until(sub { $B->status->{revision} == $rev }),
       "healed to revision $rev") or diag($gd->log($mark));
    is(decision($B, 'customer_portal', '1001'), 'on', 'answers right');
    is($B->get('/portal/', company => '1001')->{status}, 200,
       'the gated location serves again');
    is(store_revision(), $rev, 'with no change made in Redis');
    like($gd->log($mark), qr/edge \Q$e->{unix_url}\E: revision $rev applied/,
         'the daemon pushed it again');
    edges_log_clean();
};

subtest 'a broken value in Redis never blocks the kill switch' => sub {
    exits(ctl('create', 'customer_portal_calls'), 0, 'create calls');
    exits(ctl('rollout', 'customer_portal_calls', '5'), 0, 'rollout 5');
    both_at_store('calls at rollout 5');
    my $good = $rs->cli('HGET', 'portal-gate:flags:production',
                        'customer_portal_calls');
    my $calls = $A->snapshot->{environments}{production}
                    {customer_portal_calls};
    is($calls->{rollout}, 5, 'the edge has calls at rollout 5');

    my $mark = $gd->mark;
    is($rs->cli('HSET', 'portal-gate:flags:production',
                'customer_portal_calls', '{"rolout":5}'), '0',
       'a typo written straight into Redis');
    my $r = ctl('--reason', 'INC-8', 'kill', 'customer_portal');
    exits($r, 0, 'kill customer_portal');

    both_answer('customer_portal', '1001', 'off', 'the kill reaches both edges');
    both_at_store('after the kill');
    for my $ng (@edges) {
        is_deeply($ng->snapshot->{environments}{production}
                      {customer_portal_calls}, $calls,
                  'edge ' . $ng->port . ': calls keeps its last good version');
    }
    ok($gd->wait_log(qr/customer_portal_calls.*rolout/, 2, $mark),
       'the log names the flag and the unknown key');

    # more changes and ticks: it is not said again
    exits(ctl('rollout', 'customer_portal', '20'), 0, 'another change');
    both_at_store('after another change');
    ok(wait_ticks($B, 3), 'three reconcile ticks');
    is($gd->count_log(qr/customer_portal_calls.*rolout/, $mark), 1,
       'said once') or diag($gd->log($mark));

    # repaired in Redis: the next change takes it
    $rs->cli('HSET', 'portal-gate:flags:production', 'customer_portal_calls',
             $good);
    exits(ctl('rollout', 'customer_portal', '10'), 0, 'a change after the repair');
    ok($gd->wait_log(qr/customer_portal_calls is valid again/, 5, $mark),
       'the log says the flag is valid again');
    both_at_store('after the repair');
    edges_log_clean();
};

subtest 'the edges keep serving when portal-gated is killed with SIGKILL' => sub {
    exits(ctl('on', 'customer_portal'), 0, 'on');
    both_at_store('before');
    my %before = map {
        my $ng = $_;
        ($ng->port => [map { decision($ng, 'customer_portal', $_) }
                           '1001', $IN10, $OUT50])
    } @edges;
    is_deeply($before{$A->port}, ['on', 'on', 'off'], 'on, on, off before');

    is($gd->kill('KILL'), 128 + 9, 'portal-gated died of SIGKILL');
    my $rev = store_revision();
    sleep 1;    # three reconcile intervals with nobody to push

    for my $ng (@edges) {
        is_deeply([map { decision($ng, 'customer_portal', $_) }
                       '1001', $IN10, $OUT50],
                  $before{$ng->port}, 'edge ' . $ng->port . ': same answers');
        is($ng->get('/portal/', company => '1001')->{status}, 200,
           'edge ' . $ng->port . ': the gated location still serves');
        is($ng->status->{revision}, $rev, 'edge ' . $ng->port
           . ': same revision');
    }
    edges_log_clean();

    my $mark = $gd->mark;
    $gd->start;
    ok($gd->wait_log(qr/connected to redis/, 5, $mark), 'started again');
};

subtest 'broken values when portal-gated restarts: the edges keep those flags, a kill goes through' => sub {
    # the daemon has never seen a good version of them: the edges have
    exits(ctl('create', 'portal_chat', '--requires', 'customer_portal'), 0,
          'create portal_chat, which requires customer_portal');
    exits(ctl('allow', 'portal_chat', '1001'), 0, 'allow 1001 the chat');
    exits(ctl('allow', 'customer_portal_calls', '1001'), 0,
          'allow 1001 the calls');
    exits(ctl('create', 'billing_v2'), 0, 'create billing_v2');
    exits(ctl('allow', 'billing_v2', '1001'), 0, 'allow 1001 billing');
    both_at_store('before');
    my @flags = qw(customer_portal customer_portal_calls portal_chat
                   billing_v2);
    my %before = map { $_ => decision($A, $_, '1001') } @flags;
    is_deeply(\%before, {map { $_ => 'on' } @flags}, 'all on for 1001');

    my %good;
    for my $f (qw(customer_portal customer_portal_calls)) {
        $good{$f} = $rs->cli('HGET', 'portal-gate:flags:production', $f);
        $rs->cli('HSET', 'portal-gate:flags:production', $f, '{"rolout":5}');
    }
    clean_exit($gd->stop, $gd, 'stopped with two broken values in Redis');
    my $mark = $gd->mark;
    $gd->start;
    ok($gd->wait_log(qr/connected to redis/, 5, $mark), 'started again');

    my $r = ctl('--reason', 'INC-9', 'kill', 'billing_v2');
    exits($r, 0, 'kill billing_v2');
    both_answer('billing_v2', '1001', 'off', 'the kill reaches both edges');
    both_at_store('after the kill');
    for my $f (qw(customer_portal customer_portal_calls portal_chat)) {
        is(decision($_, $f, '1001'), 'on', 'edge ' . $_->port
           . ": $f still on for 1001") for @edges;
    }

    $rs->cli('HSET', 'portal-gate:flags:production', $_, $good{$_})
        for sort keys %good;
    exits(ctl('on', 'billing_v2'), 0, 'a change after the repair');
    both_answer('billing_v2', '1001', 'on', 'reaches both edges');
    both_at_store('after the repair');
    is(decision($_, 'portal_chat', '1001'), 'on', 'edge ' . $_->port
       . ': the chat still on') for @edges;
    edges_log_clean();
};

subtest 'SIGTERM and SIGINT stop it cleanly' => sub {
    my $mark = $gd->mark;
    ok($gd->wait_log(qr/connected to redis/, 5), 'running');
    clean_exit($gd->stop, $gd, 'SIGTERM');
    like($gd->log($mark), qr/exiting on SIGTERM/, 'says why it exits');

    $mark = $gd->mark;
    $gd->start;
    ok($gd->wait_log(qr/connected to redis/, 5, $mark), 'started again');
    exits(ctl('rollout', 'customer_portal', '50'), 0, 'a change');
    both_answer('customer_portal', $IN10, 'on', 'pushed');
    both_at_store('pushed');
    clean_exit($gd->kill('INT'), $gd, 'SIGINT');
    like($gd->log($mark), qr/exiting on SIGINT/, 'says why it exits');
};

edges_log_clean();

done_testing;
