# A certificate installed without a reload: `nginx ... reload=off` for an
# nginx whose ssl_certificate holds a variable, so that it reads the pair
# at each handshake. The install still checks the pair with nginx -t; no
# SIGHUP, so no worker is replaced and a keep-alive connection open across
# the renewal goes on. Real redis-server, nginx with the module, the
# controller with the local CA, openssl as the client.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use IPC::Open3 qw(open3);
use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep);
use PortalGate::Gated qw(clean_exit wait_until);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $dir = tempdir('pg-noreload-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;     # nginx's workers (nobody) read the pair themselves
my $NAME = 'staging.test';
my $certs = "$dir/certs";

system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
       . " -days 30 -subj '/CN=portal-gate test CA' -keyout $dir/ca.key"
       . " -out $dir/ca.pem -addext basicConstraints=critical,CA:TRUE"
       . " -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null") == 0
    or BAIL_OUT('openssl cannot make a CA');

my $rs = PortalGate::Redis->new;
exits($rs->ctl('init'), 0, 'init');

# the pair's paths through a variable: nginx reads them at each handshake
my $ng = PortalGate::Test->new(ports => 1, http => <<"CONF");
    map \$ssl_server_name \$staging_chain { default $certs/fullchain.pem; }
    map \$ssl_server_name \$staging_key   { default $certs/privkey.pem; }

    server {
        listen 127.0.0.1:%%PORT1%% ssl;
        server_name $NAME;
        ssl_certificate \$staging_chain;
        ssl_certificate_key \$staging_key;
        keepalive_timeout 60s;
        location / { return 200 "staging\\n"; }
    }
CONF
my $edge = 'http://127.0.0.1:' . $ng->port . '/portal-gate/';

mkdir "$dir/state";
my $gd = PortalGate::Gated->new(redis => $rs->url, edges => [$edge],
                                reconcile => '500ms', extra => <<"CONF");
state_dir $dir/state;
nginx conf=@{[ $ng->dir ]}/nginx.conf reload=off;
certificate $NAME {
    issuer    local $dir/ca.pem $dir/ca.key;
    fullchain $certs/fullchain.pem;
    privkey   $certs/privkey.pem;
}
CONF

sub served {
    my $port = $ng->extra_port(1);
    my $pid = open3(my $in, my $out, undef, 'sh', '-c',
        "openssl s_client -connect 127.0.0.1:$port -servername $NAME"
        . " -CAfile $dir/ca.pem -verify_return_error </dev/null 2>/dev/null"
        . " | openssl x509 -noout -serial 2>/dev/null");
    close $in;
    my $o = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    my ($serial) = $o =~ /serial=([0-9A-F]+)/;
    return lc($serial // '');
}

sub workers {
    my $master = $ng->pid;
    return join ',', sort map { (split ' ')[0] }
        grep { /^\s*\d+\s+$master\s*$/ } `ps -eo pid=,ppid=`;
}

subtest 'issued and served without a reload' => sub {
    $ng->_write_conf;         # for the install's nginx -t, before nginx runs
    $gd->start;
    ok(wait_until(sub { -s "$certs/privkey.pem" }), 'the placeholder is written');
    ok($gd->wait_log(qr/certificate $NAME: issued by/, 20), 'the local CA issues at once');
    # what an operator does once: the key readable by nginx's workers
    # (here nobody; www-data with Debian's user line); installs keep it
    my ($uid, $gid) = (getpwnam('nobody'))[2, 3];
    chown $uid, $gid, "$certs/privkey.pem";
    $ng->start;
    ok(wait_until(sub { my $s = served(); $s ne '' }, 20),
       'HTTPS verifies against the local CA') or diag($gd->log);
    like($gd->log, qr/certificate $NAME: issued by portal-gate test CA, serial \S+, valid until \S+, installed and checked by nginx -t \(reload=off: nginx reads it at the next handshake\)/,
         'the log says nginx -t checked it and nothing was reloaded');
};

subtest 'a renewal: a new serial at the next handshake, the same workers, a keep-alive connection goes on' => sub {
    my $before = served();
    my $workers = workers();
    ok($workers ne '', "nginx's workers: $workers");
    my $port = $ng->extra_port(1);

    # one TLS connection, a request, the renewal, then a second request on it
    my $pid = open3(my $in, my $out, undef, 'sh', '-c',
        "(printf 'GET / HTTP/1.1\\r\\nHost: $NAME\\r\\n\\r\\n'; sleep 3;"
        . " printf 'GET / HTTP/1.1\\r\\nHost: $NAME\\r\\nConnection: close\\r\\n\\r\\n')"
        . " | openssl s_client -quiet -connect 127.0.0.1:$port -servername $NAME 2>/dev/null");
    close $in;
    sleep 1;
    my $r = $rs->ctl('cert', 'renew', $NAME, '--wait', '20');
    is($r->{exit}, 0, 'cert renew --wait exits 0') or diag(explain($r));
    my $got = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    my $answers = () = $got =~ m{^HTTP/1\.1 200 }mg;
    is($answers, 2, 'both requests of the keep-alive connection were answered');
    my $after = served();
    ok($after ne '' && $after ne $before, "a new handshake gets the new serial ($before -> $after)");
    is(workers(), $workers, 'the same nginx workers: no reload');
    my @st = stat "$certs/privkey.pem";
    is($st[4], (getpwnam('nobody'))[2], 'the new key kept the owner the operator gave');
    is($st[2] & 07777, 0600, 'and its mode 0600');
    unlike($ng->error_log, qr/reconfiguring|signal 1 \(SIGHUP\)/, 'nginx logged no reload');
    $ng->no_bad_log_lines('nginx: no [crit], [alert] or [emerg]');
};

subtest 'a config that fails nginx -t is still refused, and the pair put back' => sub {
    my $fc = do { local (@ARGV, $/) = "$certs/fullchain.pem"; <> };
    my $conf = $ng->dir . '/nginx.conf';
    my $good = do { local (@ARGV, $/) = $conf; <> };
    open my $fh, '>>', $conf or die; print {$fh} "bogus_directive on;\n"; close $fh;
    my $r = $rs->ctl('cert', 'renew', $NAME, '--wait', '20');
    is($r->{exit}, 1, 'cert renew --wait exits 1');
    like($r->{err}, qr/bogus_directive/, "it quotes nginx -t");
    my $now = do { local (@ARGV, $/) = "$certs/fullchain.pem"; <> };
    is($now, $fc, 'the fullchain is the one before');
    open $fh, '>', $conf or die; print {$fh} $good; close $fh;
};

clean_exit($gd->stop, $gd, 'SIGTERM at the end');

done_testing;
