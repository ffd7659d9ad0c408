# No acknowledged write lost (issue 13, items 3 and 4): a master, its
# replica and three sentinels (real redis-server and redis-sentinel on
# loopback ports). portal-gatectl WAITs until the replica has a write
# before it says it is done; says so, exit 1, when no replica confirmed in
# time (the change stays on the master); a kill acknowledged right before
# the master's SIGKILL is on the promoted replica; and a write in flight
# when the master dies is resent to the new master, says so, and is
# applied once.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(sleep);
use PortalGate::Redis qw(exits);
use PortalGate::Sentinel;

my $FLAGS = 'portal-gate:flags:production';

# the flag as the server on $port has it: 'on', 'off' or 'none' (a kill
# is enabled false)
sub state_on {
    my ($hs, $port, $flag) = @_;
    my $v = $hs->cli($port, 'HGET', $FLAGS, $flag);
    return 'none' if $v eq '';
    return $v =~ /"enabled":true/ ? 'on' : 'off';
}

my $hs = PortalGate::Sentinel->new;

subtest 'a write returns once the replica has it' => sub {
    exits($hs->ctl('init'), 0, 'init');
    exits($hs->ctl('create', 'customer_portal'), 0, 'create');
    exits($hs->ctl('on', 'customer_portal'), 0, 'on');
    my ($m, $r) = ($hs->master_port, $hs->replica_port);

    # the replica held (SIGSTOP): the kill is made on the master, and the
    # CLI waits for the replica's acknowledgement
    $hs->signal_server($r, 'STOP');
    my $h = $hs->ctl_start('--replicas', '1,60s', 'kill', 'customer_portal');
    $hs->wait_until(sub { state_on($hs, $m, 'customer_portal') eq 'off' },
                    10, 'the kill is on the master');
    sleep 0.5;
    ok($hs->ctl_running($h),
       'portal-gatectl has not returned while the replica is held');
    $hs->signal_server($r, 'CONT');
    my $res = $hs->ctl_finish($h, 60);
    exits($res, 0, 'kill, once the replica confirmed');
    is(state_on($hs, $r, 'customer_portal'), 'off',
       'read from the replica right after: the kill is there');
    unlike($res->{err}, qr/replica/, 'and nothing said about replicas');
    like($hs->ctl('status')->{out},
         qr/^  replicas: 1 connected; writes wait for 1 within 1s$/m,
         'status says how many replicas a write waits for');
};

subtest 'no replica confirmed: said, exit 1, the change is on the master'
    => sub {
    my ($m, $r) = ($hs->master_port, $hs->replica_port);
    exits($hs->ctl('on', 'customer_portal'), 0, 'on');
    my $before = $hs->cli($m, 'HGET', $FLAGS, 'customer_portal');
    $hs->signal_server($r, 'STOP');
    my $res = $hs->ctl('rollout', 'customer_portal', '50');
    $hs->signal_server($r, 'CONT');
    exits($res, 1, 'rollout exits 1');
    is($res->{err}, "portal-gatectl: the change is applied on the master, "
       . "but no replica confirmed it within 1s: a failover now could lose "
       . "it\n", 'stderr says what happened, in one line');
    like($res->{out}, qr/50/, 'stdout still shows the change');
    my $after = $hs->cli($m, 'HGET', $FLAGS, 'customer_portal');
    isnt($after, $before, 'the change is on the master');

    $hs->signal_server($r, 'STOP');
    $res = $hs->ctl('--replicas', '0', 'rollout', 'customer_portal', '60');
    $hs->signal_server($r, 'CONT');
    exits($res, 0, '--replicas 0: no wait');
    is($res->{err}, '', 'and nothing said');

    # -c's redis_replicas, and --replicas over it
    my $dir = tempdir(CLEANUP => 1);
    my $conf = "$dir/portal-gated.conf";
    open my $f, '>', $conf or die "$conf: $!";
    print $f "redis_replicas 1 300ms;\n";
    close $f;
    $hs->signal_server($r, 'STOP');
    $res = $hs->ctl('-c', $conf, 'rollout', 'customer_portal', '70');
    my $given = $hs->ctl('-c', $conf, '--replicas', '0', 'rollout',
                         'customer_portal', '80');
    $hs->signal_server($r, 'CONT');
    exits($res, 1, "-c's redis_replicas 1 300ms");
    like($res->{err}, qr/no replica confirmed it within 300ms:/,
         'its timeout is the one said');
    exits($given, 0, '--replicas 0 over -c\'s line');
};

subtest 'an ACL user refused ROLE still waits, and is told what 0 means'
    => sub {
    my ($m, $r) = ($hs->master_port, $hs->replica_port);
    is($hs->cli($m, 'ACL', 'SETUSER', 'pg', 'on', '>pw', '~*', '&*', '+@all',
                '-@dangerous'), 'OK', 'a user without @dangerous (ROLE)');
    (my $url = $hs->url) =~ s{^redis-sentinel://}{redis-sentinel://pg:pw@};
    my $res = $hs->ctl_url($url, 'rollout', 'customer_portal', '52');
    exits($res, 0, 'the replica confirmed: done');
    is($res->{err}, '', 'nothing said');

    $hs->signal_server($r, 'STOP');
    $res = $hs->ctl_url($url, 'rollout', 'customer_portal', '53');
    $hs->signal_server($r, 'CONT');
    exits($res, 1, 'no replica confirmed, and none could be counted: exit 1');
    like($res->{err}, qr/^portal-gatectl: the change is applied on the master, but no replica confirmed it within 1s, and whether the master has replicas could not be told \(ROLE refused: NOPERM[^)]*\): if it has, a failover now could lose it; grant the user \+role, or set redis_replicas 0 for a Redis without replicas\n\z/,
         'it says WAIT got 0, that ROLE was refused, and what to do')
        or diag($res->{err});
    is($hs->cli($m, 'ACL', 'DELUSER', 'pg'), '1', 'the user removed');
};

subtest 'redis_replicas above the replicas connected: waits for those' => sub {
    my $r = $hs->replica_port;
    my $res = $hs->ctl('--replicas', '2,1s', 'rollout', 'customer_portal',
                       '54');
    exits($res, 0, 'the one replica confirmed: done');
    is($res->{err}, "portal-gatectl: 1 of the 2 replicas redis_replicas "
       . "asks for is connected: waited for it\n", 'and it says so, once');
    like($hs->ctl('--replicas', '2,1s', 'status')->{out},
         qr/^  replicas: 1 connected; writes wait for 1 within 1s \(redis_replicas asks for 2\)$/m,
         'status says what a write waits for');

    $hs->signal_server($r, 'STOP');
    $res = $hs->ctl('--replicas', '2,1s', 'rollout', 'customer_portal', '56');
    $hs->signal_server($r, 'CONT');
    exits($res, 1, 'the one connected did not confirm: exit 1');
    like($res->{err}, qr/no replica confirmed it within 1s: a failover now could lose it$/m,
         'said');
};

# Redis's MONITOR line as its arguments (sdscatrepr's escapes undone)
sub monitor_args {
    my ($line) = @_;
    my %esc = (n => "\n", r => "\r", t => "\t", a => "\a", b => "\b");
    my @args;
    while ($line =~ /"((?:[^"\\]|\\.)*)"/g) {
        my $a = $1;
        $a =~ s/\\(x([0-9a-fA-F]{2})|.)/
                defined $2 ? chr(hex $2) : ($esc{$1} \/\/ $1)/ge;
        push @args, $a;
    }
    return @args;
}

# one command in RESP to the server on $port; the reply's text as read
sub resp {
    my ($port, @args) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
        or die "connect $port: $!";
    print $s '*' . scalar(@args) . "\r\n",
             map { '$' . length($_) . "\r\n$_\r\n" } @args;
    $s->shutdown(1);
    my $reply = do { local $/; <$s> } // '';
    return $reply;
}

subtest 'a write sent again after it was applied is not applied twice'
    => sub {
    my $m = $hs->master_port;
    my $log = "$hs->{dir}/monitor.log";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', $log;
        exec 'redis-cli', '-p', $m, 'MONITOR' or exit 127;
    }
    $hs->wait_until(sub { -s $log || $hs->cli($m, 'CLIENT', 'LIST')
                              =~ /cmd=monitor/ }, 10, 'MONITOR runs');
    exits($hs->ctl('--reason', 'twice?', 'rollout', 'customer_portal', '30'),
          0, 'rollout 30');
    my $line;
    $hs->wait_until(sub {
        open my $f, '<', $log or return 0;
        # a whole line: redis-cli writes a long one in more than one write()
        ($line) = grep { /"EVAL"/i && /portal-gate:write:/ && /\n\z/ } <$f>;
        defined $line
    }, 10, 'MONITOR shows the write script');
    kill 'TERM', $pid;
    waitpid $pid, 0;

    my $rev = $hs->cli($m, 'GET', 'portal-gate:revision');
    my $audit = $hs->cli($m, 'XLEN', 'portal-gate:audit');
    my $flag = $hs->cli($m, 'HGET', $FLAGS, 'customer_portal');
    my $reply = resp($m, monitor_args($line));
    like($reply, qr/^\*2\r\n\$7\r\nAPPLIED\r\n\$\d+\r\n\Q$rev\E\r\n\z/,
         'the same script again answers APPLIED with the revision it got')
        or diag($reply);
    is($hs->cli($m, 'GET', 'portal-gate:revision'), $rev,
       'the revision did not move');
    is($hs->cli($m, 'XLEN', 'portal-gate:audit'), $audit,
       'no second audit entry');
    is($hs->cli($m, 'HGET', $FLAGS, 'customer_portal'), $flag,
       'the flag is as the write left it');
};

subtest 'redis:// URL: a dropped connection is retried once, same server'
    => sub {
    my $m = $hs->master_port;
    my $url = "redis://127.0.0.1:$m/0";
    is($hs->cli($m, 'CLIENT', 'PAUSE', '60000', 'WRITE'), 'OK',
       'the master holds writes');
    my $h = $hs->ctl_start_url($url, '--reason', 'plain-1', 'rollout',
                               'customer_portal', '40');
    my $id;
    $hs->wait_until(sub {
        ($id) = $hs->cli($m, 'CLIENT', 'LIST') =~ /^id=(\d+) .*cmd=eval/m;
        defined $id
    }, 10, 'the rollout waits on the master');
    is($hs->cli($m, 'CLIENT', 'KILL', 'ID', $id), '1',
       'its connection is closed under it');
    $hs->wait_until(sub {
        my ($again) = $hs->cli($m, 'CLIENT', 'LIST')
                      =~ /^id=(\d+) .*cmd=eval/m;
        defined $again && $again != $id
    }, 10, 'the rollout is sent again, on a new connection');
    is($hs->cli($m, 'CLIENT', 'UNPAUSE'), 'OK', 'writes go on');
    my $res = $hs->ctl_finish($h, 30);
    exits($res, 0, 'rollout');
    like($res->{err}, qr/^portal-gatectl: the master went away \(.+\): retried on 127\.0\.0\.1:\Q$m\E after \d+\.\d s$/m,
         'it says it retried, on the same server') or diag($res->{err});
    my @once = $hs->ctl('audit', 'customer_portal')->{out} =~ /(plain-1)/g;
    is(scalar @once, 1, 'applied once');
};

# every sentinel's down-after-milliseconds for our master
sub down_after {
    my ($hs, $ms) = @_;
    for my $p ($hs->sentinel_ports) {
        is($hs->cli($p, 'SENTINEL', 'SET', 'mymaster',
                    'down-after-milliseconds', $ms), 'OK',
           "sentinel $p: down-after $ms ms");
    }
}

subtest 'a resend that fails again past the limit is not sent again'
    => sub {
    my $m = $hs->master_port;
    # the master holds writes, and the sentinels do not fail it over for it
    # (their PUBLISH on it is held too): every resend finds it, and waits
    down_after($hs, 120000);
    is($hs->cli($m, 'CLIENT', 'PAUSE', '60000', 'WRITE'), 'OK',
       'the master holds writes for 60 s');
    # the limit is 10 s (no --wait: that needs edges); each try waits
    # the command's 5 s for the held write
    my $h = $hs->ctl_start('--reason', 'held-1', 'rollout',
                           'customer_portal', '45');
    # no timing claim: only that it ends before the pause does
    my $res = $hs->ctl_finish($h, 50);
    is($hs->cli($m, 'CLIENT', 'UNPAUSE'), 'OK', 'writes go on');
    down_after($hs, 1000);
    exits($res, 1, 'the write fails');
    like($res->{err}, qr/^portal-gatectl: the master went away \(.+\) and the write was resent \d+ times? within \d+\.\d s, past the limit of 10 s: the change may or may not be applied: check with `portal-gatectl show customer_portal` or `audit`$/m,
         'it says it gave up, that the change may be applied, and how to check')
        or diag($res->{err});
};

subtest 'SIGKILL of the master right after an acknowledged kill' => sub {
    exits($hs->ctl('create', 'checkout'), 0, 'create checkout');
    exits($hs->ctl('on', 'checkout'), 0, 'on');
    my $r = $hs->ctl('kill', 'checkout');
    exits($r, 0, 'kill acknowledged');
    my $old = $hs->kill_master;
    # at once: the sentinels still name the dead master for a while
    my $c = $hs->ctl('create', 'after_failover');
    my $new = $hs->wait_failover($old);
    is(state_on($hs, $new, 'checkout'), 'off',
       'the kill is on the promoted replica');
    exits($c, 0, 'a create while the sentinels fail over');
    like($c->{err}, qr/^portal-gatectl: no master answered at first \(.+\): found 127\.0\.0\.1:\Q$new\E after \d+\.\d s$/,
         'it says it looked again, and where it found the master');
    isnt(state_on($hs, $new, 'after_failover'), 'none',
         'the flag is on the new master');
    like($hs->ctl('status')->{out},
         qr/^  replicas: none connected; writes do not wait \(they would wait for 1 within 1s\)$/m,
         'status: the new master has no replica, and writes do not wait');
};

$hs->stop;

subtest 'a write in flight when the master dies is resent, once' => sub {
    my $hs = PortalGate::Sentinel->new;
    exits($hs->ctl('init'), 0, 'init');
    exits($hs->ctl('create', 'customer_portal'), 0, 'create');
    exits($hs->ctl('on', 'customer_portal'), 0, 'on');
    my $m = $hs->master_port;

    # writes held on the master: the kill's script waits there
    is($hs->cli($m, 'CLIENT', 'PAUSE', '60000', 'WRITE'), 'OK',
       'the master holds writes');
    my $h = $hs->ctl_start('--reason', 'INC-7', 'kill', 'customer_portal');
    $hs->wait_until(sub { $hs->cli($m, 'CLIENT', 'LIST') =~ /cmd=eval/ },
                    10, 'the kill waits on the master');
    my $old = $hs->kill_master;
    my $res = $hs->ctl_finish($h, 60);
    exits($res, 0, 'kill succeeds after the failover');
    my $new = $hs->wait_failover($old);
    like($res->{err}, qr/^portal-gatectl: the master went away \(.+\): retried on 127\.0\.0\.1:\Q$new\E after \d+\.\d s$/m,
         'stderr says it retried, where, and after how long')
        or diag($res->{err});
    is(state_on($hs, $new, 'customer_portal'), 'off',
       'the kill is on the new master');
    my $a = $hs->ctl('audit', 'customer_portal');
    my @kills = $a->{out} =~ /(INC-7)/g;
    is(scalar @kills, 1, 'the audit log has the kill once') or diag($a->{out});
    like($hs->cli($new, 'KEYS', 'portal-gate:write:*'),
         qr/^portal-gate:write:[0-9a-f]{32}$/m,
         'writes leave their ids (P write:ID) for a resend to find');
    $hs->stop;
};

subtest 'a write in flight, then no sentinel answers: fails at once' => sub {
    my $hs = PortalGate::Sentinel->new;
    exits($hs->ctl('init'), 0, 'init');
    exits($hs->ctl('create', 'customer_portal'), 0, 'create');
    my $m = $hs->master_port;
    is($hs->cli($m, 'CLIENT', 'PAUSE', '60000', 'WRITE'), 'OK',
       'the master holds writes');
    my $h = $hs->ctl_start('--reason', 'INC-8', 'kill', 'customer_portal');
    my $id;
    $hs->wait_until(sub {
        ($id) = $hs->cli($m, 'CLIENT', 'LIST') =~ /^id=(\d+) .*cmd=eval/m;
        defined $id
    }, 10, 'the kill waits on the master');
    $hs->stop_sentinels;
    is($hs->cli($m, 'CLIENT', 'KILL', 'ID', $id), '1',
       'its connection is closed under it, no sentinel to ask');
    my $res = $hs->ctl_finish($h, 30);
    is($hs->cli($m, 'CLIENT', 'UNPAUSE'), 'OK', 'writes go on');
    exits($res, 1, 'the kill fails');
    like($res->{err}, qr/^portal-gatectl: the master went away \(.+\); the change may or may not be applied \(`portal-gatectl show customer_portal` or `audit` tells\): redis-sentinel master "mymaster" not found: 127\.0\.0\.1:\d+: Connection refused/m,
         'it says why at once, not after the limit') or diag($res->{err});
    $hs->stop;
};

done_testing;
