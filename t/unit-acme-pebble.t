#!/usr/bin/perl
# The ACME client (controller/pg_acme.c) against a real pebble, through a
# small driver (t/unit/acme_issue.c, build/test-acme-issue, with ASan and
# UBSan) whose http-01 challenges are files that a plain nginx serves
# (`root DIR;`), as certbot --webroot does. pebble refuses 5% of good
# nonces: every run goes through badNonce retries.
#
# Bookworm's pebble 2.4 has neither profiles nor renewalInfo: a recorded
# directory served by the same nginx over HTTPS (Let's Encrypt's shape,
# its newNonce/newAccount/newOrder pointing at pebble) lists profiles and
# renewalInfo, for what the client does when a CA offers them.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use FindBin;
use IPC::Open3 qw(open3);
use POSIX qw(WNOHANG);
use Symbol qw(gensym);
use Test::More;
use Time::HiRes qw(sleep time);

use lib "$FindBin::Bin/lib";
use PortalGate::Pebble qw(free_port);

my $ROOT = abs_path("$FindBin::Bin/..");
my $DRIVER = "$ROOT/build/test-acme-issue";
my $NGINX = $ENV{PORTAL_GATE_NGINX} || '/usr/sbin/nginx';

plan skip_all => "$DRIVER is missing: run make unit" unless -x $DRIVER;
plan skip_all => "$NGINX not found" unless -x $NGINX;

$ENV{ASAN_OPTIONS} = 'detect_leaks=1:exitcode=23';
$ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1:exitcode=24';

# RFC 9773's example certificate id and window
my $ARI_ID = 'aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE';

my $http_port = free_port();
my $https_port = free_port();
my $pb = PortalGate::Pebble->new(http_port => $http_port);

my $d = tempdir('portal-gate-acme-XXXXXX', TMPDIR => 1,
                CLEANUP => !$ENV{PG_TEST_KEEP});
chmod 0755, $d;
make_path("$d/www", "$d/ca/renewal-info", "$d/tmp", "$d/out");
diag("scratch folder: $d") if $ENV{PG_TEST_KEEP};

sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "cannot write $path: $!";
    print {$fh} $text;
    close $fh or die "cannot write $path: $!";
}

sub read_file {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return <$fh> // '';
}

# Let's Encrypt's directory shape, its endpoints pebble's
my $pebble = "https://127.0.0.1:" . $pb->port;
write_file("$d/ca/dir-profiles", <<"JSON");
{"keyChange": "$pebble/rollover-account-key",
 "meta": {"profiles": {"classic": "https://letsencrypt.org/docs/profiles#classic",
                       "shortlived": "https://letsencrypt.org/docs/profiles#shortlived",
                       "tlsserver": "https://letsencrypt.org/docs/profiles#tlsserver"},
          "termsOfService": "data:text/plain,Do%20what%20thou%20wilt"},
 "newAccount": "$pebble/sign-me-up",
 "newNonce": "$pebble/nonce-plz",
 "newOrder": "$pebble/order-plz",
 "renewalInfo": "https://127.0.0.1:$https_port/renewal-info",
 "revokeCert": "$pebble/revoke-cert"}
JSON
write_file("$d/ca/renewal-info/$ARI_ID", <<'JSON');
{"suggestedWindow": {"start": "2025-01-02T04:00:00Z",
                     "end": "2025-01-03T04:00:00Z"},
 "explanationURL": "https://acme.example.com/docs/ari"}
JSON

my $tls_cert = $pb->tls_cert;
my $tls_key = $pb->tls_key;
write_file("$d/nginx.conf", <<"CONF");
daemon off;
master_process on;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log info;
events { worker_connections 64; }
http {
    access_log $d/access.log;
    client_body_temp_path $d/tmp;
    proxy_temp_path $d/tmp;
    fastcgi_temp_path $d/tmp;
    uwsgi_temp_path $d/tmp;
    scgi_temp_path $d/tmp;

    # the http-01 answers: files the driver writes
    server {
        listen 127.0.0.1:$http_port;
        root $d/www;
    }

    # a recorded directory with profiles and renewalInfo
    server {
        listen 127.0.0.1:$https_port ssl;
        ssl_certificate $tls_cert;
        ssl_certificate_key $tls_key;
        root $d/ca;
        default_type application/json;
        location /renewal-info/ {
            add_header Retry-After 21600 always;
        }
    }
}
CONF

my $nginx_pid;

sub nginx_start {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$d/nginx.out";
        open STDERR, '>&', \*STDOUT;
        { exec $NGINX, '-p', "$d/", '-c', "$d/nginx.conf" }
        POSIX::_exit(127);
    }
    $nginx_pid = $pid;
    my $deadline = time + 10;
    until (IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                 PeerPort => $https_port, Timeout => 1)) {
        die "nginx did not start:\n" . read_file("$d/nginx.out")
                                     . read_file("$d/error.log")
            if time > $deadline || waitpid($pid, WNOHANG) == $pid;
        sleep 0.05;
    }
}

sub nginx_stop {
    my $pid = $nginx_pid or return;
    undef $nginx_pid;
    local $?;
    kill 'QUIT', $pid;
    my $deadline = time + 10;
    while (waitpid($pid, WNOHANG) == 0) {
        kill 'KILL', $pid if time > $deadline;
        sleep 0.02;
    }
}

END { nginx_stop() }

nginx_start();

# The driver: issue(names => [...], key => 'name', directory, ca_file,
# profile, replaces, contact, serve_nothing, cancel_at_publish, ari) returns
# {exit, out, err, error, retry_after, account, chain (path)}
my $run = 0;
sub issue {
    my (%o) = @_;
    my $chain = "$d/out/chain-" . ++$run . '.pem';
    my @args = ('-d', $o{directory} // $pb->directory,
                '-c', $o{ca_file} // $pb->ca_file,
                '-k', "$d/" . ($o{key} // 'account') . '.key',
                '-w', "$d/www", '-o', $chain);
    push @args, '-p', $o{profile} if defined $o{profile};
    push @args, '-r', $o{replaces} if defined $o{replaces};
    push @args, '-m', $o{contact} if defined $o{contact};
    push @args, '-n' if $o{serve_nothing};
    push @args, '-x' if $o{cancel_at_publish};
    push @args, '-a', $o{ari} if defined $o{ari};
    push @args, @{ $o{names} // [] };

    my $err = gensym;
    my $pid = open3(my $in, my $out, $err, $DRIVER, @args);
    close $in;
    my $o = do { local $/; <$out> } // '';
    my $e = do { local $/; <$err> } // '';
    waitpid $pid, 0;

    my %r = (exit => $? >> 8, out => $o, err => $e, chain => $chain);
    ($r{error}) = $o =~ /^error: (.*)$/m;
    ($r{retry_after}) = $o =~ /^retry_after: (\d+)$/m;
    ($r{account}, $r{account_kind}) = $e =~ /acme: account (\S+) \((\w+)\)/;
    ($r{elapsed}) = $e =~ /^elapsed_ms: (\d+)$/m;
    return \%r;
}

sub clean {
    my ($r, $name) = @_;
    unlike($r->{err}, qr/AddressSanitizer|LeakSanitizer|runtime error/,
           "$name: no sanitizer report")
        or diag($r->{err});
}

sub verify_chain {
    my ($chain) = @_;
    my $root = $pb->root;
    my $out = qx{openssl verify -CAfile $root -untrusted $chain $chain 2>&1};
    return ($? == 0, $out);
}


# ---- issuance

my $r = issue(names => ['a.test', 'www.a.test'], contact => 'mailto:ops@a.test');
is($r->{exit}, 0, 'first issuance succeeds')
    or diag("$r->{out}\n$r->{err}");
like($r->{out}, qr/^issued \d+ bytes$/m, 'the driver got a chain');
clean($r, 'first issuance');
diag("one issuance against pebble (ASan build, 2 names): $r->{elapsed} ms")
    if defined $r->{elapsed};

my ($ok, $why) = verify_chain($r->{chain});
ok($ok, "the chain verifies against pebble's root (openssl verify)")
    or diag($why);

my $pem = read_file($r->{chain});
my @certs = $pem =~ /-----BEGIN CERTIFICATE-----/g;
ok(@certs >= 2, 'the chain holds the leaf and its intermediate (' . @certs . ')');
my $sans = qx{openssl x509 -noout -ext subjectAltName -in $r->{chain} 2>&1};
like($sans, qr/DNS:a\.test/, 'the leaf names a.test');
like($sans, qr/DNS:www\.a\.test/, 'the leaf names www.a.test');

is($r->{account_kind}, 'new', 'the first issuance made an account')
    or diag($r->{err});
ok(-f "$d/account.key", 'the account key was written');
is((stat "$d/account.key")[2] & 0777, 0600, 'the account key is 0600');

my @published = $r->{err} =~ /^challenge: publish (\S+) /mg;
my @withdrawn = $r->{err} =~ /^challenge: withdraw (\S+) /mg;
is(scalar @published, 2, 'one challenge published per name');
is_deeply([sort @withdrawn], [sort @published],
          'every challenge published was withdrawn');
my $access = read_file("$d/access.log");
is(scalar(grep { $access =~ m{"GET /\.well-known/acme-challenge/\Q$_\E HTTP/1\.1" 200 } }
           @published),
   scalar @published, "pebble fetched each token from the web root (200)");

my $account = $r->{account};
my $key_text = read_file("$d/account.key");

$r = issue(names => ['b.test']);
is($r->{exit}, 0, 'a second issuance succeeds') or diag("$r->{out}\n$r->{err}");
is($r->{account_kind}, 'existing', 'it found the existing account');
is($r->{account}, $account, 'the same account URL');
is(read_file("$d/account.key"), $key_text, 'the account key was reused, unchanged');
($ok, $why) = verify_chain($r->{chain});
ok($ok, 'its chain verifies too') or diag($why);
clean($r, 'second issuance');


# ---- failures

$r = issue(names => ['c.test'], serve_nothing => 1);
is($r->{exit}, 1, 'a challenge not served fails the issuance');
like($r->{error} // '',
     qr{^urn:ietf:params:acme:error:unauthorized: .*/\.well-known/acme-challenge/\S+ .*404},
     'the error is the ACME problem with its detail (404 at the token URL)')
    or diag($r->{out});
like($r->{err}, qr/^challenge: withdraw /m,
     'the challenge was withdrawn after the failure');
ok(!-s $r->{chain}, 'no chain written');
clean($r, 'challenge failure');

$r = issue(names => ['c2.test'], cancel_at_publish => 1);
is($r->{exit}, 1, 'an issuance cancelled once its challenge is out stops');
is($r->{error}, 'cancelled', 'it says cancelled');
my ($token) = $r->{err} =~ /^challenge: publish (\S+) /m;
like($r->{err}, qr/^challenge: withdraw \Q$token\E /m,
     'the published challenge was withdrawn');
clean($r, 'cancel');


# ---- profiles and renewalInfo, with the recorded directory

my $recorded = "https://127.0.0.1:$https_port/dir-profiles";

$r = issue(directory => $recorded, names => ['d.test'], profile => 'nosuch');
is($r->{exit}, 1, 'a profile the CA does not list is refused');
is($r->{error}, 'the ACME server offers no profile "nosuch"; it offers: '
              . 'classic, shortlived, tlsserver',
   'the error names the profiles the CA offers');
unlike($r->{err}, qr/acme: (?:account|order) /,
       'refused before any account or order');
clean($r, 'unknown profile');

$r = issue(directory => $recorded, names => ['e.test'], profile => 'tlsserver',
           replaces => $ARI_ID);
is($r->{exit}, 0, 'a listed profile: issued (pebble 2.4 ignores the field)')
    or diag("$r->{out}\n$r->{err}");
like($r->{err}, qr/acme: order \S+ for e\.test, profile tlsserver, replacing/,
     'the order carried the profile and replaces');

$r = issue(names => ['f.test'], profile => 'tlsserver', replaces => $ARI_ID);
is($r->{exit}, 0, 'pebble lists no profiles: issued without one')
    or diag("$r->{out}\n$r->{err}");
like($r->{err}, qr/lists no profiles: profile tlsserver not sent/,
     'the log says the profile was not sent');
unlike($r->{err}, qr/replacing/, 'no replaces without renewalInfo');

$r = issue(directory => $recorded, ari => $ARI_ID);
is($r->{exit}, 0, 'renewalInfo: a window') or diag("$r->{out}\n$r->{err}");
like($r->{out}, qr/^window: 1735790400 1735876800$/m,
     "the window is RFC 9773's example");
like($r->{out}, qr/^retry_after: 21600$/m, 'with its Retry-After');
clean($r, 'renewalInfo');

$r = issue(ari => $ARI_ID);
is($r->{exit}, 3, 'pebble 2.4 has no renewalInfo: declined')
    or diag("$r->{out}\n$r->{err}");


# ---- a CA that refuses every nonce

{
    my $strict = PortalGate::Pebble->new(http_port => $http_port,
                                         env => {PEBBLE_WFE_NONCEREJECT => 100});
    $r = issue(directory => $strict->directory, ca_file => $strict->ca_file,
               names => ['n.test'], key => 'strict');
    is($r->{exit}, 1, 'every nonce refused: the issuance gives up');
    like($r->{error} // '', qr/^urn:ietf:params:acme:error:badNonce: /,
         'with the badNonce problem') or diag($r->{out});
    my @retries = $r->{err} =~ /badNonce at \S+, again/g;
    is(scalar @retries, 9, 'after 10 tries with a fresh nonce each');
    clean($r, 'every nonce refused');
    $strict->stop;
}


# ---- nothing answers on the http-01 port, then the CA is down

nginx_stop();
$r = issue(names => ['g.test']);
is($r->{exit}, 1, 'no web server: the issuance fails');
like($r->{error} // '',
     qr/^urn:ietf:params:acme:error:connection: .*connection refused/,
     "the error is pebble's connection detail") or diag($r->{out});
nginx_start();

$pb->stop;
$r = issue(names => ['h.test']);
is($r->{exit}, 1, 'pebble stopped: the issuance fails');
is($r->{error}, 'cannot reach the ACME server: GET ' . $pb->directory
              . ": Couldn't connect to server",
   'the error says the ACME server cannot be reached, and where');
is($r->{retry_after}, 0, 'no Retry-After');
clean($r, 'pebble stopped');

$pb->start;
$r = issue(names => ['i.test']);
is($r->{exit}, 0, 'pebble back (a new root, no accounts): issued again')
    or diag("$r->{out}\n$r->{err}");
is($r->{account_kind}, 'new', 'with the same key, the new pebble made an account');
($ok, $why) = verify_chain($r->{chain});
ok($ok, "the chain verifies against the new root") or diag($why);

done_testing();
