# portal-gatectl's edits: unallow, undeny, set F KEY=VALUE (requires,
# description, salt; an empty value removes the key) and delete F, each
# validated, audited, published and no-op-aware; requires and delete are
# checked inside the write script, so that concurrent writers can never
# leave a requires of a missing flag or a cycle. Real redis-server.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use PortalGate::Redis qw(exits);

my $rs = PortalGate::Redis->new;

sub ctl { $rs->ctl(@_) }

sub revision { $rs->cli('GET', 'portal-gate:revision') + 0 }

sub audit_len { $rs->cli('XLEN', 'portal-gate:audit') + 0 }

sub flag_json {
    my ($flag) = @_;
    my $v = $rs->cli('HGET', 'portal-gate:flags:production', $flag);
    return $v eq '' ? undef : decode_json($v);
}

sub last_audit { decode_json(ctl('audit', '--json', '--count', '1')->{out})->[0] }

exits(ctl('init'), 0, 'init');
exits(ctl('create', 'customer_portal'), 0, 'create');
exits(ctl('allow', 'customer_portal', '1001', '1002', '1003'), 0, 'allow');
exits(ctl('deny', 'customer_portal', '1001', '99'), 0, 'deny');

subtest 'unallow takes companies off the allow list' => sub {
    my $rev = revision();
    my $r = ctl('--reason', 'pilot over', 'unallow', 'customer_portal',
                '1002', '1003');
    exits($r, 0, 'unallow');
    like($r->{out}, qr/customer_portal in production: allow 3 -> 1 \(revision @{[$rev + 1]}\)/,
         'says what changed');
    is_deeply(flag_json('customer_portal')->{allow}, ['1001'], 'in Redis');
    my $a = last_audit();
    is_deeply([@$a{qw(action reason)}], ['unallow', 'pilot over'],
              'audited');
};

subtest 'unallow of an id held as a JSON integer' => sub {
    my $f = flag_json('customer_portal');
    $f->{allow} = [1001, '7'];
    $rs->cli('HSET', 'portal-gate:flags:production', 'customer_portal',
             encode_json($f));
    exits(ctl('unallow', 'customer_portal', '1001'), 0, 'unallow 1001');
    is_deeply(flag_json('customer_portal')->{allow}, ['7'],
              'the integer 1001 is the id "1001"');
    exits(ctl('allow', 'customer_portal', '1001'), 0, 'allow it again');
};

subtest 'undeny takes a deny back, which allow could not' => sub {
    my $r = ctl('explain', 'customer_portal', '1001');
    like($r->{out}, qr/off \(denied\)/, 'denied: deny wins over allow');
    $r = ctl('allow', 'customer_portal', '1001');
    like($r->{out}, qr/is so already: nothing changed/,
         'allow says it is allowed already');
    exits(ctl('undeny', 'customer_portal', '1001'), 0, 'undeny');
    like(ctl('explain', 'customer_portal', '1001')->{out}, qr/on \(allowed\)/,
         'allowed now');
    is_deeply(flag_json('customer_portal')->{deny}, ['99'], 'the rest stays');
    is(last_audit()->{action}, 'undeny', 'audited as undeny');
};

subtest 'unallow and undeny of ids that are not listed write nothing' => sub {
    my ($rev, $n) = (revision(), audit_len());
    for my $cmd (qw(unallow undeny)) {
        my $r = ctl($cmd, 'customer_portal', 'nobody', 'nobody2');
        exits($r, 0, $cmd);
        (my $list = $cmd) =~ s/^un//;
        like($r->{out}, qr/customer_portal in production has none of those ids in its $list list: nothing changed \(store revision $rev\)/,
             "$cmd: says so");
    }
    is(revision(), $rev, 'no revision raised');
    is(audit_len(), $n, 'no audit entry');
    exits(ctl('unallow', 'customer_portal', 'a b'), 2, 'an invalid id');
    exits(ctl('undeny', 'nope', '1'), 1, 'a flag that does not exist');
};

exits(ctl('create', 'customer_portal_calls'), 0, 'create calls');

subtest 'set requires, description and salt; an empty value removes one' => sub {
    my $r = ctl('set', 'customer_portal_calls', 'requires=customer_portal',
                'description=Calls, for the pilots', 'salt=calls_v2');
    exits($r, 0, 'set three keys');
    like($r->{out}, qr/customer_portal_calls in production: .*requires - -> "customer_portal"/,
         'says what changed');
    my $f = flag_json('customer_portal_calls');
    is_deeply([@$f{qw(requires description salt)}],
              ['customer_portal', 'Calls, for the pilots', 'calls_v2'],
              'in Redis');
    is(last_audit()->{action}, 'set', 'audited as set');

    exits(ctl('set', 'customer_portal_calls', 'salt=', 'description='), 0,
          'remove two');
    $f = flag_json('customer_portal_calls');
    ok(!exists $f->{salt} && !exists $f->{description}, 'gone');
    is($f->{requires}, 'customer_portal', 'requires stays');

    my $rev = revision();
    $r = ctl('set', 'customer_portal_calls', 'salt=');
    exits($r, 0, 'remove what is not there');
    like($r->{out}, qr/is so already: nothing changed/, 'says so');
    is(revision(), $rev, 'and wrote nothing');
};

subtest 'set refuses what the flag cannot hold, and writes nothing' => sub {
    my $rev = revision();
    for my $case (
        [['rollout=5'], qr/invalid "rollout=5": set takes KEY=VALUE with KEY requires, description or salt/],
        [['requires'], qr/invalid "requires": set takes KEY=VALUE/],
        [['requires=Bad-Name'], qr/invalid flag name "Bad-Name"/],
        [['requires=customer_portal_calls'], qr/flag "customer_portal_calls" cannot require itself/],
        [['requires=ghost'], qr/requires unknown flag "ghost"/],
        [['salt=a b'], qr/salt must be a string of 1 to 64 printable ASCII/],
        [["description=a\nb"], qr/invalid description: a control character/],
        [['salt=a', 'salt=b'], qr/salt given twice/],
    ) {
        my ($args, $re) = @$case;
        my $r = ctl('set', 'customer_portal_calls', @$args);
        exits($r, 2, "set @$args");
        like($r->{err}, $re, "set @$args: says what is wrong");
    }
    exits(ctl('set', 'customer_portal', 'requires=customer_portal_calls'), 2,
          'a cycle');
    is(revision(), $rev, 'nothing was written');
};

subtest 'delete is refused while another flag requires it' => sub {
    my $rev = revision();
    my $r = ctl('delete', 'customer_portal');
    exits($r, 1, 'delete of a required flag');
    like($r->{err}, qr/cannot delete flag "customer_portal" in production: flag "customer_portal_calls" requires it \(delete customer_portal_calls first, or drop its requires: portal-gatectl -e production set customer_portal_calls requires=\)/,
         'names who requires it, and the way out');
    ok(flag_json('customer_portal'), 'the flag stays');
    is(revision(), $rev, 'nothing was written');
};

subtest 'delete removes the flag; its history stays in the audit log' => sub {
    exits(ctl('create', 'old_banner'), 0, 'create');
    my $rev = revision();
    my $r = ctl('--reason', 'retired', 'delete', 'old_banner');
    exits($r, 0, 'delete');
    like($r->{out}, qr/deleted old_banner in production \(revision @{[$rev + 1]}\)/,
         'says so');
    ok(!defined flag_json('old_banner'), 'gone from Redis');
    my $a = last_audit();
    is_deeply([@$a{qw(action flag reason after)}],
              ['delete', 'old_banner', 'retired', ''], 'audited');
    like($a->{before}, qr/"enabled":true/, 'with the flag as it was');
    $r = ctl('audit', 'old_banner');
    exits($r, 0, 'audit of the deleted flag');
    like($r->{out}, qr/delete +deleted +reason: retired/, 'shows the delete');
    like($r->{out}, qr/create/, 'and its history');
    exits(ctl('delete', 'old_banner'), 1, 'delete again: no such flag');
    like(ctl('list')->{out}, qr/\(2 flags in production/, 'list agrees');
};

subtest 'concurrent set requires and delete never leave a dangling requires' => sub {
    my ($both, $bad) = (0, 0);
    for my $i (1 .. 20) {
        exits(ctl('create', "x$i"), 0, "create x$i") or last;
        exits(ctl('create', "g$i"), 0, "create g$i") or last;
        my @pids;
        for my $args (['set', "g$i", "requires=x$i"], ['delete', "x$i"]) {
            my $pid = fork // die "fork: $!";
            if ($pid == 0) {
                my $r = $rs->ctl(@$args);
                exit($r->{exit} == 0 ? 0 : 1);
            }
            push @pids, $pid;
        }
        my $ok = 0;
        for (@pids) { waitpid $_, 0; $ok++ if $? == 0 }
        $both++ if $ok == 2;
        my $g = flag_json("g$i");
        $bad++ if ($g->{requires} // '') eq "x$i" && !flag_json("x$i");
    }
    is($bad, 0, 'no flag requires one that was deleted');
    diag("$both of 20 rounds let both through, one after the other")
        if $both;
    my $r = ctl('list');
    exits($r, 0, 'the store is whole');
};

subtest 'concurrent sets never make a cycle' => sub {
    my $bad = 0;
    for my $i (1 .. 20) {
        exits(ctl('create', "a$i"), 0, "create a$i") or last;
        exits(ctl('create', "b$i"), 0, "create b$i") or last;
        my @pids;
        for my $args (['set', "a$i", "requires=b$i"],
                      ['set', "b$i", "requires=a$i"]) {
            my $pid = fork // die "fork: $!";
            if ($pid == 0) {
                my $r = $rs->ctl(@$args);
                exit($r->{exit} == 0 ? 0 : 1);
            }
            push @pids, $pid;
        }
        waitpid $_, 0 for @pids;
        $bad++ if (flag_json("a$i")->{requires} // '') eq "b$i"
                  && (flag_json("b$i")->{requires} // '') eq "a$i";
    }
    is($bad, 0, 'never both');
    exits(ctl('explain', 'a1', '1'), 0, 'the flags compile');
};

done_testing;
