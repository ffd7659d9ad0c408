# Sentinels that require a password (Redis 5.0.1+ sentinel.conf requirepass):
# a master, its replica and three sentinels, all with the same one, the
# URL's. Discovery answers a sentinel's NOAUTH with AUTH of the URL's
# password and asks again; portal-gatectl and portal-gated find the master
# and follow a failover (the daemon's +switch-master watch authenticates
# too); a wrong password is one line naming each sentinel that refused it,
# exit 1 as for a master that refuses it (portal-gated's log names it
# too), and no password is ever shown.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IPC::Open3 qw(open3);
use Test::More;
use PortalGate::Gated qw(clean_exit wait_until two_edges);
use PortalGate::Redis qw(exits);
use PortalGate::Sentinel;
use PortalGate::Test qw(require_module);

require_module();

my $PASS = 'sent1nel-pw';
my $hs = PortalGate::Sentinel->new(pass => $PASS);
my @sp = $hs->sentinel_ports;
my $e = two_edges();
my @edges = @$e{qw(tcp unix)};
my $gd = PortalGate::Gated->new(redis => $hs->url,
                                edges => [$e->{tcp_url}, $e->{unix_url}],
                                environments => [qw(production staging)],
                                log_level => 'debug');

# the URL with another password, or none
sub url_with {
    my ($userinfo) = @_;
    (my $url = $hs->url) =~ s{://[^@]*\@}{://$userinfo};
    return $url;
}

# redis-cli without a password, as a client that has none
sub cli_nopass {
    my ($port, @args) = @_;
    my $pid = open3(my $in, my $out, undef, 'redis-cli', '-p', $port, @args);
    close $in;
    my $o = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    return $o;
}

sub decision {
    my ($ng) = @_;
    return $ng->evaluate(flag => 'customer_portal', company => '1001')
               ->{decision} // '?';
}

sub both_answer {
    my ($want, $name, $timeout) = @_;
    my $ok = wait_until(sub { !grep { decision($_) ne $want } @edges },
                        $timeout);
    ok($ok, $name) or diag(join ', ', map {
        'edge ' . $_->port . ': ' . decision($_) } @edges);
}

subtest 'the sentinels ask for a password' => sub {
    like(cli_nopass($sp[0], 'SENTINEL', 'get-master-addr-by-name',
                    'mymaster'), qr/NOAUTH/, 'a sentinel answers NOAUTH');
};

subtest 'portal-gatectl finds the master through them' => sub {
    my $m = $hs->master_port;
    exits($hs->ctl('init'), 0, 'init');
    exits($hs->ctl('create', 'customer_portal'), 0, 'create');
    is($hs->cli($m, 'HEXISTS', 'portal-gate:flags:production',
                'customer_portal'), '1', 'the flag is on the master');
    my $r = $hs->ctl('list');
    exits($r, 0, 'list');
    like($r->{out}, qr/customer_portal/, 'and read back through the URL');
};

subtest 'portal-gated finds the master and watches +switch-master' => sub {
    $gd->start;
    my $m = $hs->master_port;
    ok($gd->wait_log(qr/redis: master mymaster is at 127\.0\.0\.1:$m /
                     . qr/\(sentinel 127\.0\.0\.1:$sp[0]\)/, 10),
       'it found the master through the first sentinel') or diag($gd->log);
    ok($gd->wait_log(qr/redis: following \+switch-master of master mymaster /
                     . qr/on sentinel 127\.0\.0\.1:$sp[0]/, 10),
       'and follows +switch-master on it') or diag($gd->log);
    exits($hs->ctl('on', 'customer_portal'), 0, 'on');
    exits($hs->ctl('rollout', 'customer_portal', '100'), 0, 'rollout 100');
    both_answer('on', 'both edges gate customer_portal on for 1001', 10);
};

subtest 'a wrong password: one line naming each sentinel, exit 1' => sub {
    my $r = $hs->ctl_url(url_with(':wr0ngpw@'), 'list');
    exits($r, 1, 'list');
    my $first = qr/^portal-gatectl: redis-sentinel master "mymaster" not /
                . qr/found: 127\.0\.0\.1:$sp[0]: AUTH failed: WRONGPASS/;
    like($r->{err}, qr/$first/m,
         'it says the first sentinel refused the password')
        or diag($r->{err});
    for my $p (@sp[1, 2]) {
        like($r->{err}, qr/127\.0\.0\.1:$p: AUTH failed: WRONGPASS/,
             "and sentinel $p") or diag($r->{err});
    }
    is(scalar(() = $r->{err} =~ /\n/g), 1, 'in one line') or diag($r->{err});
    unlike($r->{err}, qr/wr0ngpw|\Q$PASS\E/, 'no password shown');

    # the exit of a master that refuses the password
    my $m = $hs->master_port;
    my $direct = $hs->ctl_url("redis://:wr0ngpw\@127.0.0.1:$m/0", 'list');
    like($direct->{err}, qr/AUTH failed: WRONGPASS/,
         'a master refuses the same password');
    is($r->{exit}, $direct->{exit}, 'with the same exit status');

    # asking again would not change the answer: a write fails at once
    $r = $hs->ctl_url(url_with(':wr0ngpw@'), 'create', 'refused');
    exits($r, 1, 'a write');
    like($r->{err}, qr/127\.0\.0\.1:$sp[0]: AUTH failed: WRONGPASS/,
         'says the sentinel refused the password') or diag($r->{err});
    unlike($r->{err}, qr/no master within/, 'not that time ran out');
};

subtest 'no password in the URL: NOAUTH said, exit 1' => sub {
    (my $url = $hs->url) =~ s{://[^@]*\@}{://};
    my $r = $hs->ctl_url($url, 'list');
    exits($r, 1, 'list');
    my $want = qr/^portal-gatectl: redis-sentinel master "mymaster" not /
               . qr/found: 127\.0\.0\.1:$sp[0]: NOAUTH: it asks for a /
               . qr/password, the URL has none;/;
    like($r->{err}, qr/$want/m,
         'the sentinel asked for a password the URL does not have')
        or diag($r->{err});
};

subtest 'a URL with a user: the sentinels are given the password alone' => sub {
    # the master (and its replica) know the user; requirepass sets the
    # sentinels' default user's password, and no user of theirs
    for my $port ($hs->master_port, $hs->replica_port) {
        is($hs->cli($port, 'ACL', 'SETUSER', 'portal', 'on', ">$PASS", '~*',
                    '&*', '+@all'), 'OK', "user portal on port $port");
    }
    my $r = $hs->ctl_url(url_with("portal:$PASS\@"), 'list');
    exits($r, 0, 'list with redis-sentinel://portal:***@...');
    like($r->{out}, qr/customer_portal/, 'the flags read through the user');
};

# a sentinel that refuses the URL's password (NOAUTH, then WRONGPASS)
my $odd = $hs->stray_sentinel('an0ther-pw');
like(cli_nopass($odd, 'SENTINEL', 'get-master-addr-by-name', 'mymaster'),
     qr/NOAUTH/, 'a sentinel with another password');

subtest 'a failover: portal-gated and portal-gatectl follow it' => sub {
    my $replica = $hs->replica_port;
    $hs->wait_until(sub { $hs->cli($replica, 'HEXISTS',
                                   'portal-gate:flags:production',
                                   'customer_portal') eq '1' }, 10,
                    'the replica has the flag');
    my $mark = $gd->mark;
    my $old = $hs->kill_master;

    # while the sentinels still name the master just killed, one that
    # refuses the password is that sentinel's set-up: the write waits for
    # the new master as it would without it (it failed at once)
    (my $url = $hs->url) =~ s{#}{,127.0.0.1:$odd#};
    my $r = $hs->ctl_url($url, 'create', 'in_failover');
    exits($r, 0, 'a write in the failover, one sentinel refusing the '
          . "password") or diag($r->{err});

    my $new = $hs->wait_failover($old);
    ok($gd->wait_log(qr/redis: followed \+switch-master from sentinel /
                     . qr/127\.0\.0\.1:$sp[0]: master mymaster moved from /
                     . qr/127\.0\.0\.1:$old to 127\.0\.0\.1:$new/, 30, $mark),
       'the daemon heard +switch-master on its sentinel')
        or diag($gd->log($mark));
    exits($hs->ctl('kill', 'customer_portal'), 0, 'kill after the failover');
    like($hs->cli($new, 'HGET', 'portal-gate:flags:production',
                  'customer_portal'), qr/"enabled":false/,
         'the kill is on the new master');
    both_answer('off', 'the kill reaches both edges through the new master',
                30);
    unlike($gd->log, qr/\Q$PASS\E/, 'the daemon\'s log shows no password');
};

subtest 'portal-gated given a wrong password: each refusal said, once'
    => sub {
    my $mark = $gd->mark;
    $gd->rewrite(redis => url_with(':wr0ngpw@'));
    $gd->hup;
    my $want = qr/redis unreachable: redis-sentinel master "mymaster" not /
               . qr/found: 127\.0\.0\.1:$sp[0]: AUTH failed: WRONGPASS/;
    ok($gd->wait_log($want, 10, $mark),
       'its search names the sentinel that refused the password')
        or diag($gd->log($mark));
    $want = qr/redis: sentinel 127\.0\.0\.1:$sp[0]: SUBSCRIBE failed: AUTH /
            . qr/failed: WRONGPASS .*; \+switch-master from the next one/;
    ok($gd->wait_log($want, 10, $mark),
       'and so does its +switch-master watch') or diag($gd->log($mark));
    unlike($gd->log, qr/wr0ngpw|\Q$PASS\E/, 'no password in its log');
    both_answer('off', 'the edges keep serving what they hold', 5);
};

clean_exit($gd->stop, $gd, 'SIGTERM');
$hs->stop;
done_testing;
