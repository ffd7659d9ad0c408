# portal-gated when the store holds what no edge accepts (issue 7, item 1):
# more flags in an environment than an edge takes, a requires of a missing
# flag, a requires cycle, a deleted flag that others require, a broken
# value that is then deleted. Whatever the store holds, a change to a flag
# that compiles on its own still reaches the edges, a kill above all; what
# the edges get instead of the store's version is said once, naming the
# flag and why. Real redis-server, two real nginx edges; the excess and
# the breakage are written straight into Redis, as a buggy or hostile
# writer would.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Gated qw(clean_exit wait_until two_edges wait_ticks);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $rs = PortalGate::Redis->new;
my $e = two_edges();
my ($A, $B) = @$e{qw(tcp unix)};
my @edges = ($A, $B);
my $P = 'portal-gate:';

my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [$e->{tcp_url}, $e->{unix_url}],
                                environments => [qw(production staging)]);

sub ctl { $rs->ctl(@_) }

sub store_revision { $rs->cli('GET', "${P}revision") + 0 }

# A change without portal-gatectl: the revision raised and published, as a
# write that changes nothing the edges see
sub bump {
    my $rev = $rs->cli('INCR', "${P}revision");
    $rs->cli('PUBLISH', "${P}changes", $rev);
    return $rev;
}

sub answer {
    my ($ng, $flag, $company, $env) = @_;
    my $a = $ng->evaluate(flag => $flag, company => $company,
                          env => $env // 'production');
    return ($a->{decision} // '?') . '/' . ($a->{reason} // '?');
}

sub both_answer {
    my ($flag, $company, $want, $name, $env) = @_;
    my $ok = wait_until(sub {
        !grep { answer($_, $flag, $company, $env) ne $want } @edges
    });
    ok($ok, $name) or diag(join ', ', map {
        'edge ' . $_->port . ': ' . answer($_, $flag, $company, $env)
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

sub edge_flags {
    my ($ng, $env) = @_;
    return $ng->snapshot->{environments}{$env // 'production'} // {};
}

sub edges_log_clean {
    $_->no_bad_log_lines('edge ' . $_->port . ': no [crit], [alert] or '
                         . '[emerg] in its error log') for @edges;
}

$gd->start;
exits(ctl('init'), 0, 'init');
ok($gd->wait_log(qr/connected to redis/, 5), 'portal-gated is running');


subtest 'more flags than an environment holds: a kill still reaches the edges' => sub {
    exits(ctl('create', 'customer_portal'), 0, 'create customer_portal');
    exits(ctl('allow', 'customer_portal', '1001'), 0, 'allow 1001');

    # 4,094 flags in production, as 16 concurrent creates found them
    my @fill = map { (sprintf('filler_%04d', $_), '{"rollout":0}') } 1 .. 4093;
    is($rs->cli('HSET', "${P}flags:production", @fill), 4093,
       '4,093 more flags written into Redis');
    bump();
    ok(wait_until(sub {
        !grep { $_->status->{flags}{production} != 4094 } @edges
    }, 10), 'both edges hold the 4,094 flags') or diag($gd->log);
    both_at_store('4,094 flags');

    # the 16 creates that passed the CLI's check, outside its script
    my @race = map { sprintf 'race%02d', $_ } 0 .. 15;
    is($rs->cli('HSET', "${P}flags:production",
                map { ($_, '{"rollout":0}') } @race), 16,
       '16 more written straight into Redis: 4,110 flags');
    is($rs->cli('HLEN', "${P}flags:production"), 4110, 'HLEN 4110');
    # as writes, they came with revisions and messages: the daemon reads
    # the whole store for a bare revision (a write without any is seen at
    # the next tick: t/103)
    bump();

    my $mark = $gd->mark;
    my $r = ctl('--reason', 'INC-1', 'kill', 'customer_portal');
    exits($r, 0, 'portal-gatectl kill customer_portal');
    both_answer('customer_portal', '1001', 'off/killed',
                'the kill reaches both edges');
    both_at_store('after the kill');

    for my $ng (@edges) {
        my $f = edge_flags($ng);
        is(scalar keys %$f, 4096, 'edge ' . $ng->port
           . ': 4,096 flags, the most an environment holds');
        ok($f->{race00} && $f->{race01} && !$f->{race02} && !$f->{race15},
           'edge ' . $ng->port . ': the first two new flags in name order '
           . 'fill it, the rest are held back');
        ok($f->{filler_0001} && $f->{filler_4093},
           'edge ' . $ng->port . ': every flag it had is kept');
    }

    my $held = qr/environment production holds 4110 flags, at most 4096: 14 new flags are held back \(race02, race03, .*, race13 and 2 more\)/;
    ok($gd->wait_log($held, 2, $mark), 'the log names the flags held back, '
       . 'and why') or diag($gd->log($mark));

    # more changes and ticks: not said again
    exits(ctl('on', 'customer_portal'), 0, 'on customer_portal');
    both_answer('customer_portal', '1001', 'on/allowed', 'on again');
    ok(wait_ticks($B, 3), 'three reconcile ticks');
    is($gd->count_log($held, $mark), 1, 'said once')
        or diag($gd->log($mark));

    # a daemon that starts over this store: the edges' flags come first
    clean_exit($gd->stop, $gd, 'stopped');
    $mark = $gd->mark;
    $gd->start;
    ok($gd->wait_log(qr/connected to redis/, 5, $mark), 'started again');
    $r = ctl('--reason', 'INC-2', 'kill', 'customer_portal');
    exits($r, 0, 'kill after the restart');
    both_answer('customer_portal', '1001', 'off/killed',
                'the kill reaches both edges');
    both_at_store('after the restart');
    ok($gd->wait_log($held, 2, $mark), 'the same flags are held back')
        or diag($gd->log($mark));
    ok(edge_flags($A)->{race01} && !edge_flags($A)->{race02},
       'and the edges keep the same 4,096');

    # back under the limit: the rest go out
    $rs->cli('HDEL', "${P}flags:production",
             map { sprintf 'filler_%04d', $_ } 1 .. 4093);
    bump();
    ok(wait_until(sub { edge_flags($A)->{race15} }),
       'deleted down to 17 flags: the held-back ones reach the edges');
    ok($gd->wait_log(qr/environment production: no flags are held back any more/,
                     2, $mark), 'and the log says so');
    edges_log_clean();
};


subtest 'requires that cannot be resolved: a kill still goes out' => sub {
    my @s = ('-e', 'staging');
    exits(ctl(@s, 'create', 'customer_portal'), 0, 'create customer_portal');
    for my $f (qw(calls chat)) {
        exits(ctl(@s, 'create', $f, '--requires', 'customer_portal'), 0,
              "create $f, which requires customer_portal");
    }
    exits(ctl(@s, 'create', 'dep'), 0, 'create dep');
    exits(ctl(@s, 'create', 'user', '--requires', 'dep'), 0,
          'create user, which requires dep');
    exits(ctl(@s, 'allow', $_, '1001'), 0, "allow 1001 $_")
        for qw(customer_portal calls chat dep user);
    both_at_store('staging set up');
    both_answer($_, '1001', 'on/allowed', "$_ on for 1001", 'staging')
        for qw(customer_portal calls chat user);
    my $calls = edge_flags($A, 'staging')->{calls};

    my $mark = $gd->mark;
    my $key = "${P}flags:staging";
    # a new cycle, a requires of a missing flag, a killed flag that
    # requires a missing one, and a required flag deleted
    $rs->cli('HSET', $key, 'cyc_a', '{"requires":"cyc_b","rollout":100}',
             'cyc_b', '{"requires":"cyc_a","rollout":100}',
             'calls', '{"requires":"ghost","allow":["1001"]}',
             'chat', '{"enabled":false,"requires":"ghost2"}');
    $rs->cli('HDEL', $key, 'dep');

    my $r = ctl(@s, '--reason', 'INC-3', 'kill', 'customer_portal');
    exits($r, 0, 'portal-gatectl kill customer_portal');
    both_answer('customer_portal', '1001', 'off/killed',
                'the kill reaches both edges', 'staging');
    both_at_store('after the kill');

    both_answer('chat', '1001', 'off/killed', 'the killed chat, whose '
                . 'requires names a missing flag, is killed at the edges',
                'staging');
    both_answer('user', '1001', 'on/allowed', 'user still on: dep, deleted '
                . 'while user requires it, keeps its last good version',
                'staging');
    both_answer('cyc_a', '1001', 'off/unknown', 'the new cycle is left out',
                'staging');
    for my $ng (@edges) {
        my $f = edge_flags($ng, 'staging');
        is_deeply($f->{calls}, $calls, 'edge ' . $ng->port
                  . ': calls keeps its last good version');
        ok(!exists $f->{chat}{requires} && $f->{chat}{enabled} == 0,
           'edge ' . $ng->port . ': chat killed, without its requires');
        ok($f->{dep}, 'edge ' . $ng->port . ': dep is kept');
    }

    my @said = (
        qr/\[error\] .*flag "calls" in staging requires unknown flag "ghost"; the edges keep its last good version/,
        qr/\[warn\] .*flag "chat" in staging is killed and requires unknown flag "ghost2": it goes out killed, without its requires/,
        qr/\[error\] .*flag "cyc_a" in staging is in a requires cycle \(cyc_a -> cyc_b -> cyc_a\); it is left out/,
        qr/\[error\] .*flag "cyc_b" in staging is in a requires cycle \(cyc_a -> cyc_b -> cyc_a\); it is left out/,
        qr/\[error\] .*flag "dep" in staging is no longer in the store, but "user" requires it: the edges keep its last good version/,
    );
    ok($gd->wait_log($_, 2, $mark), "the log says $_")
        or diag($gd->log($mark)) for @said;

    bump();
    both_at_store('after another change');
    ok(wait_ticks($B, 3), 'three reconcile ticks');
    is($gd->count_log($_, $mark), 1, "said once: $_") for @said;

    # the kill of a flag whose requires is unresolvable goes out too
    $r = ctl(@s, '--reason', 'INC-4', 'kill', 'calls');
    exits($r, 0, 'kill calls, which requires the missing "ghost"');
    both_answer('calls', '1001', 'off/killed', 'calls is killed at the '
                . 'edges (not merely off by its requires)', 'staging');
    ok($gd->wait_log(qr/\[warn\] .*flag "calls" in staging is killed and requires unknown flag "ghost"/,
                     2, $mark), 'and the log says how it went out');
    edges_log_clean();
};


subtest 'a broken value that is deleted is said deleted, not valid again' => sub {
    my $key = "${P}flags:staging";
    my $mark = $gd->mark;
    $rs->cli('HSET', $key, 'broken', '{"rolout":1}');
    bump();
    ok($gd->wait_log(qr/flag "broken" in staging is invalid: .*rolout.*it is left out: no good version of it is known/,
                     5, $mark), 'the broken value is said') or diag($gd->log($mark));

    $rs->cli('HDEL', $key, 'broken');
    bump();
    ok($gd->wait_log(qr/flag staging\/broken was deleted from the store/, 5,
                     $mark), 'its deletion is said') or diag($gd->log($mark));
    both_at_store('after the deletion');
    is($gd->count_log(qr/broken is valid again/, $mark), 0,
       'it is not said to be valid again');
};

clean_exit($gd->stop, $gd, 'SIGTERM at the end');
edges_log_clean();

done_testing;
