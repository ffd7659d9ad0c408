# A reload owed since an install (`nginx conf=X` without pid=: the reload
# is `BINARY -s reload`, the package's root helper) is tried again by the
# certificates' worker, not by the loop: while a retry's `-s reload` hangs,
# /healthz still answers and SIGTERM still stops the daemon (issue 12's
# review). The binary is a fake: `-t` passes, the install's reload fails
# at once, every later one hangs. The ASan controller, the local CA; no
# Redis, no nginx.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use Test::More;
use Time::HiRes qw(time);
use PortalGate::Gated qw(clean_exit wait_until);
use PortalGate::Scrape qw(free_port http_get);

my $dir = tempdir('pg-reloadhang-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $NAME = 'hang.test';
my $certs = "$dir/certs";

system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
       . " -days 30 -subj '/CN=portal-gate test CA' -keyout $dir/ca.key"
       . " -out $dir/ca.pem -addext basicConstraints=critical,CA:TRUE"
       . " -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null") == 0
    or BAIL_OUT('openssl cannot make a CA');

# the fake nginx: each `-s reload` leaves reload.N; the first fails, the
# others hang (longer than portal-gated's 30 s for a run of nginx)
my $fake = "$dir/fake-nginx";
open my $fh, '>', $fake or die "cannot write $fake: $!";
print {$fh} <<"PERL";
#!/usr/bin/perl
exit 0 unless grep { \$_ eq '-s' } \@ARGV;
my \$n = 1;
\$n++ while -e "$dir/reload.\$n";
open my \$fh, '>', "$dir/reload.\$n"; print {\$fh} "\$\$\\n"; close \$fh;
exit 1 if \$n == 1;
sleep 120;
exit 1;
PERL
close $fh;
chmod 0755, $fake;

# a fake a daemon left hanging (one that ignored SIGTERM) ends with the test
END {
    for my $marker (glob "$dir/reload.*") {
        open my $m, '<', $marker or next;
        my $pid = <$m> // '';
        next unless $pid =~ /^(\d+)$/;
        $pid = $1;
        # still the fake (a pid is reused once it ended)
        open my $c, '<', "/proc/$pid/cmdline" or next;
        my $cmd = do { local $/; <$c> } // '';
        kill 'KILL', $pid if index($cmd, $fake) >= 0;
    }
}

open $fh, '>', "$dir/nginx.conf" or die; print {$fh} "# not read\n"; close $fh;

my $port = free_port();
mkdir "$dir/state";
my $gd = PortalGate::Gated->new(reconcile => '300ms', extra => <<"CONF");
listen 127.0.0.1:$port;
state_dir $dir/state;
nginx conf=$dir/nginx.conf binary=$fake;
certificate $NAME {
    issuer    local $dir/ca.pem $dir/ca.key;
    fullchain $certs/fullchain.pem;
    privkey   $certs/privkey.pem;
}
CONF

$gd->start;

subtest 'the install: nginx not reloaded, tried again' => sub {
    ok($gd->wait_log(qr/certificate $NAME: .*nginx NOT reloaded/, 20),
       'the local CA issues, the reload fails') or diag($gd->log);
    ok($gd->wait_log(qr/certificate $NAME: new pair installed, but nginx \S+ was not reloaded: .*-s reload failed.*; tried again every 30 s/, 5),
       'the log says it is tried again') or diag($gd->log);
};

subtest 'while the retry hangs, /healthz answers' => sub {
    ok(wait_until(sub { -e "$dir/reload.2" }, 60), 'the retry runs -s reload')
        or diag($gd->log);
    my $r = http_get("http://127.0.0.1:$port/healthz");
    isnt($r->{status}, 599, '/healthz answers (HTTP::Tiny waits 5 s)')
        or diag($r->{content});
    ok(-e "$dir/reload.2" && !-e "$dir/reload.3",
       'and it answered during that one retry');
};

subtest 'SIGTERM during the retry stops the daemon' => sub {
    my $status = $gd->kill('TERM', 10);
    ok(defined $status, 'it ended within 10 s (the reload waits 30)')
        or $gd->kill('KILL');
    clean_exit($status, $gd, 'SIGTERM');
    is(scalar(() = glob("$dir/reload.*")), 2, 'no third reload was started');
};

done_testing;
