# Staging certificates from the local CA (`issuer local CERT KEY`), end to
# end: portal-gated writes the placeholder so that nginx can start, issues
# at once, installs the pair (key 0600), reloads nginx after nginx -t, and
# the staging vhost answers HTTPS with a certificate that verifies against
# the CA. Then the failures: a config that fails nginx -t (rollback, no
# reload), a corrupt CA key, an output folder that cannot be written, a bad
# certificate block. Real redis-server, real nginx with the module, the
# real controller, curl as the client.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use IPC::Open3 qw(open3);
use JSON::PP;
use Time::Local qw(timegm);
use Test::More;
use PortalGate::Gated qw(clean_exit wait_until);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $dir = tempdir('pg-certs-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $NAME = 'staging.test';

# the CA: a real one, made with openssl
system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
       . " -days 30 -subj '/CN=portal-gate test CA' -keyout $dir/ca.key"
       . " -out $dir/ca.pem -addext basicConstraints=critical,CA:TRUE"
       . " -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null") == 0
    or BAIL_OUT('openssl cannot make a CA');
system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
       . " -days 30 -subj /CN=other -keyout $dir/other.key -out"
       . " $dir/other.pem 2>/dev/null") == 0 or BAIL_OUT('openssl');

my $rs = PortalGate::Redis->new;
exits($rs->ctl('init'), 0, 'init');

my $certs = "$dir/certs/$NAME";
my $ng = PortalGate::Test->new(ports => 1, http => <<"CONF");
    server {
        listen 127.0.0.1:%%PORT1%% ssl;
        server_name $NAME;
        ssl_certificate $certs/fullchain.pem;
        ssl_certificate_key $certs/privkey.pem;
        location / { return 200 "staging\\n"; }
    }
CONF
my $edge = 'http://127.0.0.1:' . $ng->port . '/portal-gate/';

sub block {
    my (%o) = @_;
    my $issuer = $o{issuer} // "local $dir/ca.pem $dir/ca.key";
    my $out = $o{out} // $certs;
    return <<"CONF";
state_dir $dir/state;
nginx conf=@{[ $ng->dir ]}/nginx.conf pid=@{[ $ng->dir ]}/nginx.pid;
certificate $NAME {
    names     $NAME www.$NAME;
    issuer    $issuer;
    fullchain $out/fullchain.pem;
    privkey   $out/privkey.pem;
}
CONF
}

mkdir "$dir/state";
my $gd = PortalGate::Gated->new(redis => $rs->url, edges => [$edge],
                                reconcile => '500ms', extra => block());

# The served certificate's serial, verified by openssl s_client. A worker
# of the cycle before a reload may still take a handshake with the pair
# before: ask once only the current workers are left.
sub served {
    my ($ca) = @_;
    my $port = $ng->extra_port(1);
    wait_until(sub { scalar($ng->workers) == 1 }, 10)
        or diag('nginx: workers of an old cycle still run after 10 s');
    my $pid = open3(my $in, my $out, undef, 'sh', '-c',
        "openssl s_client -connect 127.0.0.1:$port -servername $NAME"
        . " -CAfile $ca -verify_return_error </dev/null 2>/dev/null"
        . " | openssl x509 -noout -serial 2>/dev/null");
    close $in;
    my $o = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    my ($serial) = $o =~ /serial=([0-9A-F]+)/;
    return lc($serial // '');
}

sub https_ok {
    my ($ca, $host) = @_;
    my $port = $ng->extra_port(1);
    $host //= $NAME;
    my $o = `curl -s -o /dev/null -w '%{http_code}' --cacert $ca --resolve $host:$port:127.0.0.1 https://$host:$port/ 2>&1`;
    return $o eq '200';
}

sub iso {
    my ($t) = @_;
    my ($y, $mo, $d, $h, $mi, $s) = ($t // '') =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)Z$/
        or return 0;
    return timegm($s, $mi, $h, $d, $mo - 1, $y);
}

sub status_json {
    my $r = $rs->ctl('cert', 'status', '--json');
    my $list = eval { decode_json($r->{out}) } // [];
    return ($r, { map { $_->{name} => $_ } @$list });
}

subtest 'first start: the placeholder lets nginx start, the CA issues at once' => sub {
    $gd->start;
    ok(wait_until(sub { -s "$certs/fullchain.pem" }),
       'a pair is written before nginx starts');
    is((stat "$certs/privkey.pem")[2] & 07777, 0600, 'the key is 0600');
    $ng->start;
    # a worker of the old cycle, with the placeholder, may still take a
    # handshake or two while nginx reloads: wait for the new pair on both
    ok(wait_until(sub { https_ok("$dir/ca.pem") }, 20),
       "HTTPS to $NAME verifies against the local CA")
        or diag($gd->log);
    ok(wait_until(sub { https_ok("$dir/ca.pem", "www.$NAME") }, 5),
       "and for www.$NAME");
    like($gd->log, qr/certificate $NAME: no pair yet, wrote a self-signed placeholder/,
         'the log says the placeholder was written');
    like($gd->log, qr/certificate $NAME: issued by portal-gate test CA, serial [0-9a-f]+, valid until \S+, installed and nginx reloaded/,
         'one line says it was issued and installed');
    like($gd->log, qr/certificate $NAME: next renewal at \d{4}-/,
         'one line says when it renews');
    is((stat "$certs/privkey.pem")[2] & 07777, 0600, 'the new key is 0600');

    my ($r, $st) = status_json();
    is($r->{exit}, 0, 'cert status exits 0') or diag(explain($r));
    my $c = $st->{$NAME};
    is_deeply($c->{names}, [$NAME, "www.$NAME"], 'status: the names');
    is($c->{serial}, served("$dir/ca.pem"), 'status: the serial served');
    ok($c->{days_left} >= 29 && $c->{days_left} <= 90,
       "status: days_left ($c->{days_left})");
    ok(defined $c->{next_renewal} && !defined $c->{last_error},
       'status: a next renewal, no error');
    # at 2/3 of the lifetime (the CA's end cuts it to ~30 days), +-2%
    my ($nb, $na, $next) = map { iso($c->{$_}) } qw(not_before not_after next_renewal);
    my $life = $na - $nb;
    ok($next >= $nb + $life * 2 / 3 - $life * 0.02 - 1
       && $next <= $nb + $life * 2 / 3 + $life * 0.02 + 1,
       "status: the next renewal is at 2/3 of the lifetime, +-2% ($c->{next_renewal})");
    is($c->{next_why}, 'renewal', 'status: a renewal is what comes next');
    my $text = $rs->ctl('cert', 'status');
    like($text->{out}, qr/^\Q$NAME\E\n  names         \Q$NAME www.$NAME\E\n/m,
         'cert status prints the certificate and its names');
    $ng->no_bad_log_lines('nginx: no [crit], [alert] or [emerg]');
};

subtest 'cert renew --wait: a new serial is served' => sub {
    my $before = served("$dir/ca.pem");
    my $r = $rs->ctl('cert', 'renew', $NAME, '--wait', '20');
    is($r->{exit}, 0, 'cert renew --wait exits 0') or diag(explain($r));
    like($r->{out}, qr/^renewed on \S+: serial [0-9a-f]+, valid until /m,
         'it says renewed, with the serial');
    ok(wait_until(sub { my $s = served("$dir/ca.pem"); $s && $s ne $before },
                  10), 'nginx serves the new certificate');
    ok(-s "$certs/fullchain.pem.prev", 'the previous pair is kept');
    like($gd->log, qr/certificate $NAME: renewal asked \(portal-gatectl cert renew\)/,
         'the log says the renewal was asked');
};

subtest 'a config that fails nginx -t: files put back, no reload, the error in status' => sub {
    my $before = served("$dir/ca.pem");
    my $fc = do { local (@ARGV, $/) = "$certs/fullchain.pem"; <> };
    my $conf = $ng->dir . '/nginx.conf';
    my $good = do { local (@ARGV, $/) = $conf; <> };
    open my $fh, '>>', $conf or die; print {$fh} "bogus_directive on;\n"; close $fh;

    my $r = $rs->ctl('cert', 'renew', $NAME, '--wait', '20');
    is($r->{exit}, 1, 'cert renew --wait exits 1');
    like($r->{err}, qr/renewal of \Q$NAME\E on \S+ failed, the current certificate stays: .*bogus_directive/,
         'it quotes nginx -t') or diag(explain($r));
    my $now = do { local (@ARGV, $/) = "$certs/fullchain.pem"; <> };
    is($now, $fc, 'the fullchain file is the one before, byte for byte');
    is(served("$dir/ca.pem"), $before, 'nginx still serves the same certificate')
        or diag($gd->log, $ng->error_log);
    my ($st_r, $st) = status_json();
    is($st_r->{exit}, 1, 'cert status exits 1');
    like($st->{$NAME}{last_error}, qr/bogus_directive/, 'status: last_error');
    is($st->{$NAME}{failures}, 1, 'status: one failure') or diag(explain($st));
    like($gd->log, qr/certificate $NAME: failed \(1 in a row\), the current certificate stays; next attempt at \S+: /,
         'the log says it failed and when it tries again');

    open $fh, '>', $conf or die; print {$fh} $good; close $fh;
    $r = $rs->ctl('cert', 'renew', $NAME, '--wait', '20');
    is($r->{exit}, 0, 'with the config mended, renew succeeds')
        or diag(explain($r));
    ($st_r, $st) = status_json();
    is($st_r->{exit}, 0, 'cert status exits 0 again');
};

subtest 'a corrupt CA key: a clear error, the certificate stays' => sub {
    my $before = served("$dir/ca.pem");
    open my $fh, '>', "$dir/bad.key" or die; print {$fh} "not a key\n"; close $fh;
    $gd->rewrite(extra => block(issuer => "local $dir/ca.pem $dir/bad.key"));
    $gd->hup;
    my $r = $rs->ctl('cert', 'renew', $NAME, '--wait', '20');
    is($r->{exit}, 1, 'renew exits 1');
    like($r->{err}, qr/\Q$dir\E\/bad\.key/, 'the error names the key file')
        or diag(explain($r));
    is(served("$dir/ca.pem"), $before, 'the certificate served is the same');
    $gd->rewrite(extra => block());
    $gd->hup;
};

subtest 'an output folder that cannot be written: said, and nginx keeps serving' => sub {
    open my $fh, '>', "$dir/file" or die; close $fh;
    my $mark = $gd->mark;
    $gd->rewrite(extra => block(out => "$dir/file/sub"));
    $gd->hup;
    ok($gd->wait_log(qr/certificate $NAME: .*\Q$dir\E\/file\/sub/, 10, $mark),
       'the log names the path that cannot be written') or diag($gd->log($mark));
    ok(https_ok("$dir/ca.pem"), 'the staging vhost still answers HTTPS');
    ok($gd->running, 'the daemon runs on');
    $gd->rewrite(extra => block());
    $gd->hup;
};

subtest 'a corrupt key file in place: the previous pair comes back at the next start' => sub {
    clean_exit($gd->stop, $gd, 'portal-gated stopped');
    ok(-s "$certs/privkey.pem.prev", 'a previous pair is there');
    open my $fh, '>', "$certs/privkey.pem" or die; print {$fh} "garbage\n"; close $fh;
    my $mark = $gd->mark;
    $gd->start;
    ok($gd->wait_log(qr/certificate $NAME: \S+fullchain\.pem and \S+privkey\.pem do not match \(the key is not a PEM private key\): the previous pair \(\.prev\), which does, is back/, 10, $mark),
       'the log says the key in place is unusable and the previous pair is back')
        or diag($gd->log($mark));
    system("openssl pkey -in $certs/privkey.pem -noout 2>/dev/null");
    is($?, 0, 'the key in place is a key again');
    # the restarted daemon's status replaces the one before (an error)
    ok(wait_until(sub { (status_json())[0]{exit} == 0 }, 10),
       'cert status exits 0');
};

subtest 'a corrupt key file and no previous pair: a new pair is issued at the next start' => sub {
    my $before = served("$dir/ca.pem");
    clean_exit($gd->stop, $gd, 'portal-gated stopped');
    unlink "$certs/privkey.pem.prev", "$certs/fullchain.pem.prev";
    open my $fh, '>', "$certs/privkey.pem" or die; print {$fh} "garbage\n"; close $fh;
    my $mark = $gd->mark;
    $gd->start;
    ok($gd->wait_log(qr/certificate $NAME: the pair in place \(\S+fullchain\.pem, \S+privkey\.pem\) cannot serve, a new one is issued now: the key is not a PEM private key/, 10, $mark),
       'the log says the key in place is unusable, naming it')
        or diag($gd->log($mark));
    ok(wait_until(sub { my $s = served("$dir/ca.pem"); $s && $s ne $before }, 20),
       'a new pair is issued and served');
    is((stat "$certs/privkey.pem")[2] & 07777, 0600, 'the new key is 0600');
    my ($r) = status_json();
    is($r->{exit}, 0, 'cert status exits 0');
};

subtest 'SIGHUP: a certificate added is issued, one changed is reissued, one removed leaves cert status' => sub {
    my $two = "$dir/certs/two.test";
    my $more = <<"CONF";
certificate two.test {
    issuer    local $dir/ca.pem $dir/ca.key;
    fullchain $two/fullchain.pem;
    privkey   $two/privkey.pem;
}
CONF
    my $mark = $gd->mark;
    $gd->rewrite(extra => block() . $more);
    $gd->hup;
    ok(wait_until(sub { my (undef, $st) = status_json();
                        my $c = $st->{'two.test'} // {};
                        ($c->{serial} // '') ne '' && !$c->{placeholder} }, 20),
       'the added certificate is issued') or diag($gd->log($mark));
    like($gd->log($mark), qr/certificate two\.test: no pair yet, wrote a self-signed placeholder/,
         'after its placeholder');
    my (undef, $st) = status_json();
    my $serial = $st->{'two.test'}{serial};

    (my $changed = $more) =~ s/issuer /names two.test www.two.test;\n    issuer /;
    $gd->rewrite(extra => block() . $changed);
    $gd->hup;
    ok(wait_until(sub {
           `openssl x509 -in $two/fullchain.pem -noout -ext subjectAltName 2>&1`
               =~ /DNS:www\.two\.test/ }, 20),
       'a certificate whose names changed is issued again for them')
        or diag($gd->log($mark));
    ok(wait_until(sub { my (undef, $st) = status_json();
                        my $c = $st->{'two.test'} // {};
                        ($c->{serial} // $serial) ne $serial
                        && "@{ $c->{names} }" eq 'two.test www.two.test' }, 20),
       'cert status shows its new serial and names');

    $gd->rewrite(extra => block());
    $gd->hup;
    ok(wait_until(sub { my (undef, $st) = status_json(); !$st->{'two.test'} }, 10),
       'a certificate removed is gone from cert status');
    like($gd->log($mark), qr/certificate two\.test: no longer in the configuration: not renewed any more, its files stay/,
         'the log says it is no longer renewed');
    ok(-s "$two/fullchain.pem", 'its files stay');
    my (undef, $left) = status_json();
    ok($left->{$NAME}, "$NAME is still in cert status");
};

subtest 'a status no controller keeps fresh is stale: cert status exits 1, renew refuses it' => sub {
    $rs->cli('HSET', 'portal-gate:certs', 'gone.test@oldhost',
             '{"name":"gone.test","host":"oldhost","names":["gone.test"],'
             . '"issuer":"local /ca.pem","serial":"01","not_after":"2099-01-01T00:00:00Z",'
             . '"updated_at":"2020-01-01T00:00:00Z","attempts":0,"placeholder":false}');
    my $r = $rs->ctl('cert', 'status');
    is($r->{exit}, 1, 'cert status exits 1');
    like($r->{out}, qr/controller    oldhost: STALE, no word from it for \d+ min/,
         'and says which controller went quiet');
    $r = $rs->ctl('cert', 'renew', 'gone.test');
    is($r->{exit}, 1, 'cert renew of it exits 1');
    like($r->{err}, qr/no live portal-gated manages a certificate "gone\.test"/,
         'saying no live controller manages it');
    $rs->cli('HDEL', 'portal-gate:certs', 'gone.test@oldhost');
    ($r) = status_json();
    is($r->{exit}, 0, 'without it, cert status exits 0 again');
};

subtest 'an ACME certificate that cannot start yet does not flood Redis' => sub {
    my $idle = PortalGate::Gated->new(redis => $rs->url, prefix => 'idle:',
                                      edges => ['http://127.0.0.1:1/portal-gate/'],
                                      reconcile => '500ms', extra => <<"CONF");
state_dir $dir/state;
certificate idle.test {
    issuer    acme https://127.0.0.1:1/dir;
    fullchain $dir/idle/fullchain.pem;
    privkey   $dir/idle/privkey.pem;
}
CONF
    $rs->ctl_env({PORTAL_GATE_PREFIX => 'idle:'}, 'init');
    $rs->cli('CONFIG', 'RESETSTAT');
    $idle->start;
    sleep 3;
    my ($calls) = $rs->cli('INFO', 'stats') =~ /total_commands_processed:(\d+)/;
    $calls //= 0;
    # a tick every 500 ms reads the store and beats: some tens of commands
    ok($calls < 300, "$calls Redis commands in 3 s, with the certificate due and no edge to answer the CA")
        or diag($idle->log);
    like($idle->log, qr/certificate idle\.test: no pair yet, wrote a self-signed placeholder/,
         'its placeholder is written');
    unlike($idle->log, qr/certificate idle\.test: .* starts/, 'and no order starts without an edge');
    clean_exit($idle->stop, $idle, 'it stops cleanly');
};

subtest 'a bad certificate block stops portal-gated -t with FILE:LINE' => sub {
    my $bad = PortalGate::Gated->new(redis => $rs->url, extra => <<"CONF");
certificate $NAME {
    issuer local $dir/ca.pem;
    fullchain /x/f.pem;
    privkey /x/k.pem;
}
CONF
    my $r = $bad->run('-t', '-c', $bad->conf_path);
    is($r->{exit}, 1, 'portal-gated -t exits 1');
    like($r->{err}, qr/portal-gated\.conf:\d+: invalid number of arguments in "issuer": local takes the CA's certificate and key files/,
         'with the file, the line and the reason');
};

clean_exit($gd->stop, $gd, 'SIGTERM at the end');
$ng->no_bad_log_lines('nginx: no [crit], [alert] or [emerg] at the end');

done_testing;
