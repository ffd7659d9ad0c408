# Staging certificates from an ACME server, end to end against Debian's
# pebble (with its default 5% of refused nonces): the http-01 token goes
# from portal-gated through Redis to the edge, which answers pebble from its
# zone (portal_gate_acme_challenge); the pair is installed and nginx
# reloaded; HTTPS to the staging vhost verifies against pebble's root. Then
# a forced renewal under HTTPS load (no failed request, a new serial),
# pebble down during a renewal (the old certificate stays, the error and
# the retry in cert status), and a challenge the edge does not answer (the
# ACME problem's detail reported). Real redis-server, nginx with the module,
# portal-gated, pebble and pebble-challtestsrv, curl and openssl.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use IPC::Open3 qw(open3);
use JSON::PP;
use POSIX qw(_exit);
use Test::More;
use Time::HiRes qw(sleep);
use PortalGate::Gated qw(clean_exit wait_until);
use PortalGate::Pebble;
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $dir = tempdir('pg-acme-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $NAME = 'staging.test';
my $certs = "$dir/certs/$NAME";

my $rs = PortalGate::Redis->new;
exits($rs->ctl('init'), 0, 'init');

# the edge: its HTTP port answers the challenges (pebble's httpPort), its
# extra port is the staging vhost on HTTPS
my $ng = PortalGate::Test->new(ports => 1, http => <<"CONF");
    portal_gate_acme_challenge on;

    server {
        listen 127.0.0.1:%%PORT1%% ssl;
        server_name $NAME;
        ssl_certificate $certs/fullchain.pem;
        ssl_certificate_key $certs/privkey.pem;
        location / { return 200 "staging\\n"; }
    }
CONF
my $edge = 'http://127.0.0.1:' . $ng->port . '/portal-gate/';
# no authorization reuse: every order asks the edge again
my $pb = PortalGate::Pebble->new(http_port => $ng->port,
                                 env => {PEBBLE_AUTHZREUSE => 0});

mkdir "$dir/state";
my $gd = PortalGate::Gated->new(redis => $rs->url, edges => [$edge],
                                reconcile => '500ms', extra => <<"CONF");
state_dir $dir/state;
nginx conf=@{[ $ng->dir ]}/nginx.conf pid=@{[ $ng->dir ]}/nginx.pid;
certificate $NAME {
    issuer    acme @{[ $pb->directory ]};
    acme_ca   @{[ $pb->ca_file ]};
    contact   mailto:ops\@example.com;
    fullchain $certs/fullchain.pem;
    privkey   $certs/privkey.pem;
}
CONF

# The served certificate's serial. A worker of the cycle before a reload
# (portal-gated's, after an install) may still take a handshake with the
# pair before: ask once only the current workers are left, as t/100 does.
sub served_serial {
    my $port = $ng->extra_port(1);
    wait_until(sub { scalar($ng->workers) == 1 }, 10)
        or diag('nginx: workers of an old cycle still run after 10 s');
    my $pid = open3(my $in, my $out, undef, 'sh', '-c',
        "openssl s_client -connect 127.0.0.1:$port -servername $NAME"
        . " </dev/null 2>/dev/null | openssl x509 -noout -serial"
        . " 2>/dev/null");
    close $in;
    my $o = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    my ($serial) = $o =~ /serial=([0-9A-F]+)/;
    return lc($serial // '');
}

sub https_ok {
    my $port = $ng->extra_port(1);
    my $root = $pb->root;
    my $o = `curl -s -o /dev/null -w '%{http_code}' --cacert $root --resolve $NAME:$port:127.0.0.1 https://$NAME:$port/ 2>&1`;
    return $o eq '200';
}

sub status_of {
    my $r = $rs->ctl('cert', 'status', '--json');
    my $list = eval { decode_json($r->{out}) } // [];
    my ($c) = grep { $_->{name} eq $NAME } @$list;
    return ($r, $c // {});
}

sub challenge_gets {
    open my $fh, '<', $ng->dir . '/access.log' or return 0;
    return scalar grep { m{"GET /\.well-known/acme-challenge/[A-Za-z0-9_-]+ HTTP/1\.1" 200 } } <$fh>;
}

subtest 'first issuance: the edge answers the challenge, HTTPS verifies against pebble' => sub {
    $gd->start;
    ok(wait_until(sub { -s "$certs/privkey.pem" }), 'the placeholder is written');
    $ng->start;
    ok(wait_until(sub { https_ok() }, 60),
       "HTTPS to $NAME verifies against pebble's root")
        or diag($gd->log);
    ok(challenge_gets() >= 1,
       'pebble fetched the token from the edge, which answered 200');
    like($gd->log, qr/certificate $NAME: issued by Pebble Intermediate CA \S+, serial [0-9a-f]+, valid until \S+, installed and nginx reloaded/,
         'the log says it was issued, installed and nginx reloaded');
    my ($r, $c) = status_of();
    is($r->{exit}, 0, 'cert status exits 0') or diag(explain($r));
    is($c->{serial}, served_serial(), 'status: the serial nginx serves');
    like($c->{issuer}, qr{^acme https://127\.0\.0\.1:\d+/dir$}, 'status: the issuer');
    ok(wait_until(sub { ($ng->api('GET', 'challenges')->{json}{challenges} // {x => 1})
                        && !%{ $ng->api('GET', 'challenges')->{json}{challenges} } }, 10),
       'the token is gone from the edge after the order');
    is($rs->cli('HLEN', 'portal-gate:acme:challenges'), '0',
       'and from Redis');
    ok(-e "$dir/state/acme", 'the account key is kept under state_dir');
    my ($key) = glob("$dir/state/acme/*/account.key");
    is((stat $key)[2] & 07777, 0600, 'the account key is 0600');
    $ng->no_bad_log_lines('nginx: no [crit], [alert] or [emerg]');
};

subtest 'a forced renewal under HTTPS load: a new serial, no failed request' => sub {
    my $before = served_serial();
    my $stop = "$dir/load.stop";
    my $pid = fork // die;
    if (!$pid) {
        my ($ok, $bad) = (0, 0);
        while (!-e $stop) {
            https_ok() ? $ok++ : $bad++;
        }
        open my $fh, '>', "$dir/load.out"; print {$fh} "$ok $bad\n"; close $fh;
        _exit(0);
    }
    sleep 0.5;
    my $r = $rs->ctl('cert', 'renew', $NAME, '--wait', '60');
    is($r->{exit}, 0, 'cert renew --wait exits 0') or diag(explain($r), $gd->log);
    ok(wait_until(sub { my $s = served_serial(); $s && $s ne $before }, 10),
       'nginx serves a new serial');
    sleep 0.5;
    open my $fh, '>', $stop; close $fh;
    waitpid $pid, 0;
    my ($ok, $bad) = split ' ', do { local (@ARGV, $/) = "$dir/load.out"; <> } // '0 1';
    ok($ok > 0, "$ok HTTPS requests during the renewal");
    is($bad, 0, 'none of them failed');
};

subtest 'pebble down during a renewal: the old certificate stays, the error and the retry are shown' => sub {
    my $before = served_serial();
    $pb->stop;
    my $r = $rs->ctl('cert', 'renew', $NAME, '--wait', '60');
    is($r->{exit}, 1, 'cert renew --wait exits 1');
    like($r->{err}, qr/renewal of \Q$NAME\E on \S+ failed, the current certificate stays: /,
         'it says the renewal failed') or diag(explain($r));
    is(served_serial(), $before, 'nginx serves the same certificate');
    my ($st, $c) = status_of();
    is($st->{exit}, 1, 'cert status exits 1');
    ok(defined $c->{last_error}, "status: last_error ($c->{last_error})");
    is($c->{next_why}, 'retry', 'status: the next attempt is a retry');
    like($gd->log, qr/certificate $NAME: failed \(1 in a row\), the current certificate stays; next attempt at /,
         'the log says when it tries again');

    $pb->start;
    $r = $rs->ctl('cert', 'renew', $NAME, '--wait', '60');
    is($r->{exit}, 0, 'with pebble back, the renewal succeeds')
        or diag(explain($r));
    ok(wait_until(sub { https_ok() }, 10), "HTTPS verifies against pebble's new root");
    ($st, $c) = status_of();
    ok(!defined $c->{last_error} && $c->{next_why} eq 'renewal',
       'status: no error, a renewal planned');
};

subtest 'a challenge the edge does not answer: the ACME detail is reported' => sub {
    my $before = served_serial();
    my $conf = $ng->dir . '/nginx.conf';
    my $text = do { local (@ARGV, $/) = $conf; <> };
    (my $off = $text) =~ s/portal_gate_acme_challenge on;/portal_gate_acme_challenge off;/;
    open my $fh, '>', $conf or die; print {$fh} $off; close $fh;
    # until the old workers are gone: one of them would answer pebble's
    # challenge, and the renewal succeed
    $ng->hup;
    my $r = $rs->ctl('cert', 'renew', $NAME, '--wait', '60');
    is($r->{exit}, 1, 'cert renew --wait exits 1');
    like($r->{err}, qr/urn:ietf:params:acme:error:\w+.*404/,
         "the error is the ACME problem, with pebble's detail")
        or diag(explain($r));
note("the error: $r->{err}");
    is(served_serial(), $before, 'nginx serves the same certificate');
    # put the config back for the rest
    open $fh, '>', $conf or die; print {$fh} $text; close $fh;
    $ng->hup;
};

subtest 'a CA that hangs mid-order never holds up a kill' => sub {
    exits($rs->ctl('create', 'customer_portal'), 0, 'create');
    exits($rs->ctl('rollout', 'customer_portal', '100'), 0, 'rollout 100');
    ok(wait_until(sub { ($ng->evaluate(flag => 'customer_portal')->{decision} // '') eq 'on' }),
       'the edge has the flag on');
    my (undef, $was) = status_of();
    kill 'STOP', $pb->{pid};
    my $mark = $gd->mark;
    my $r = $rs->ctl('cert', 'renew', $NAME);
    is($r->{exit}, 0, 'a renewal is asked, and pebble does not answer');
    ok($gd->wait_log(qr/certificate $NAME: renewal asked by portal-gatectl from \S+ starts/, 10, $mark),
       'the order is in flight') or diag($gd->log($mark));
    exits($rs->ctl('kill', 'customer_portal'), 0, 'kill');
    ok(wait_until(sub { ($ng->evaluate(flag => 'customer_portal')->{reason} // '') eq 'killed' }, 5),
       'the kill reached the edge while the order hangs');
    kill 'CONT', $pb->{pid};
    ok(wait_until(sub { my (undef, $c) = status_of();
                        ($c->{attempts} // 0) > $was->{attempts} }, 60),
       'the order ends once pebble answers again');
    ok(wait_until(sub { https_ok() }, 10), 'and HTTPS verifies after it');
};

subtest 'a corrupt account key: a clear error naming it, the certificate stays' => sub {
    my $before = served_serial();
    my ($key) = glob("$dir/state/acme/*/account.key");
    my $good = do { local (@ARGV, $/) = $key; <> };
    open my $fh, '>', $key or die; print {$fh} "not a key\n"; close $fh;
    my $r = $rs->ctl('cert', 'renew', $NAME, '--wait', '60');
    is($r->{exit}, 1, 'cert renew --wait exits 1');
    like($r->{err}, qr/\Q$key\E/, 'the error names the account key file')
        or diag(explain($r));
    is(served_serial(), $before, 'nginx serves the same certificate');
    open $fh, '>', $key or die; print {$fh} $good; close $fh;
    chmod 0600, $key;
};

clean_exit($gd->stop, $gd, 'SIGTERM at the end');
$ng->no_bad_log_lines('nginx: no [crit], [alert] or [emerg] at the end');

done_testing;
