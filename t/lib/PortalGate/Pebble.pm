package PortalGate::Pebble;

# A real ACME server for the tests: Debian's pebble, with
# pebble-challtestsrv as its DNS (every name is 127.0.0.1), on free
# loopback ports, in a scratch folder of its own; stopped at the end even
# when a test dies.
#
#   my $pb = PortalGate::Pebble->new(http_port => $port);   # started
#   $pb->directory;     # https://127.0.0.1:N/dir, for the ACME client
#   $pb->ca_file;       # trust for pebble's own TLS listener (acme_ca)
#   $pb->root;          # pebble's root (PEM file), which issued certificates
#                       # chain to: new at each start
#   $pb->stop;          # pebble down (the CA is unreachable)
#   $pb->start;         # up again, with a new root
#
# Options of new(): http_port (required: where pebble's VA connects for
# http-01, that is the server that answers the challenges), env (more
# environment for pebble, e.g. {PEBBLE_AUTHZREUSE => 0}), start (0: do
# not start yet). Pebble runs with PEBBLE_VA_NOSLEEP=1 and its default
# 5% of good nonces refused (badNonce), which the client must survive.
#
# Methods: start, stop, running, directory, ca_file, tls_cert, tls_key (the
# pair of pebble's listener, made here with openssl: reusable for another
# HTTPS server in a test), root, root_pem, dir, port, mgmt_port, log
# (pebble's log). Function: free_port.
#
# PG_TEST_KEEP=1 keeps the scratch folder for a post-mortem.

use strict;
use warnings;

use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);

use Exporter qw(import);
our @EXPORT_OK = qw(free_port);

our $PEBBLE = $ENV{PEBBLE} || '/usr/bin/pebble';
our $CHALLTESTSRV = $ENV{PEBBLE_CHALLTESTSRV}
                 || '/usr/bin/pebble-challtestsrv';

my %LIVE;           # pid => [instance, name]: everything to stop at exit
my $OWNER = $$;     # a forked child must not stop them

# A port free for TCP and UDP (the DNS server takes both).
# From PortalGate::Test's, which gives no port twice in a test.
sub free_port {
    require PortalGate::Test;
    for (1 .. 50) {
        my $port = PortalGate::Test::free_port();
        my $u = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => $port, Proto => 'udp');
        next unless $u;
        close $u;
        return $port;
    }
    die "cannot find a port free for TCP and UDP\n";
}

sub _write {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "cannot write $path: $!";
    print {$fh} $text;
    close $fh or die "cannot write $path: $!";
}

sub _read {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return <$fh> // '';
}

sub new {
    my ($class, %o) = @_;
    die "PortalGate::Pebble->new: http_port is required\n"
        unless $o{http_port};

    for my $bin ($PEBBLE, $CHALLTESTSRV) {
        plan skip_all => "$bin not found (apt-get install pebble)"
            unless -x $bin;
    }

    my $self = bless {
        dir       => tempdir('portal-gate-pebble-XXXXXX', TMPDIR => 1,
                             CLEANUP => !$ENV{PG_TEST_KEEP}),
        http_port => $o{http_port},
        env       => $o{env} // {},
        port      => free_port(),
        mgmt_port => free_port(),
        tls_port  => free_port(),
        dns_port  => free_port(),
        dns_mgmt  => free_port(),
    }, $class;
    diag("pebble scratch folder: $self->{dir}") if $ENV{PG_TEST_KEEP};

    $self->_tls_pair;
    $self->_config;
    $self->_start_dns;
    $self->start unless defined $o{start} && !$o{start};

    return $self;
}

sub dir        { $_[0]{dir} }
sub port       { $_[0]{port} }
sub mgmt_port  { $_[0]{mgmt_port} }
sub directory  { "https://127.0.0.1:$_[0]{port}/dir" }
sub ca_file    { "$_[0]{dir}/tls.pem" }
sub tls_cert   { "$_[0]{dir}/tls.pem" }
sub tls_key    { "$_[0]{dir}/tls.key" }
sub root       { "$_[0]{dir}/root.pem" }
sub root_pem   { _read("$_[0]{dir}/root.pem") }
sub log        { _read("$_[0]{dir}/pebble.log") }
sub running    { defined $_[0]{pid} }

# pebble's listener: self-signed, for 127.0.0.1 and localhost
sub _tls_pair {
    my ($self) = @_;
    my $d = $self->{dir};
    my $out = qx{openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \\
                 -nodes -keyout $d/tls.key -out $d/tls.pem -days 7 \\
                 -subj /CN=localhost \\
                 -addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>&1};
    die "openssl could not make pebble's TLS pair: $out\n" if $?;
}

sub _config {
    my ($self) = @_;
    my $d = $self->{dir};
    _write("$d/pebble.json", <<"JSON");
{
  "pebble": {
    "listenAddress": "127.0.0.1:$self->{port}",
    "managementListenAddress": "127.0.0.1:$self->{mgmt_port}",
    "certificate": "$d/tls.pem",
    "privateKey": "$d/tls.key",
    "httpPort": $self->{http_port},
    "tlsPort": $self->{tls_port},
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
JSON
}

sub _spawn {
    my ($self, $name, $log, $env, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>&', \*STDOUT;
        @ENV{keys %$env} = values %$env;
        { exec @cmd }
        POSIX::_exit(127);
    }
    $LIVE{$pid} = [$self, $name];
    return $pid;
}

sub _accepts {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

sub _wait_up {
    my ($self, $pid, $name, $log, @ports) = @_;
    my $deadline = time + 15;
    while (grep { !_accepts($_) } @ports) {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $LIVE{$pid};
            die "$name exited at start (status $?):\n" . _read($log);
        }
        die "$name did not come up within 15 s:\n" . _read($log)
            if time > $deadline;
        sleep 0.05;
    }
}

# the DNS that sends every name to 127.0.0.1: it outlives stop/start
sub _start_dns {
    my ($self) = @_;
    my $log = "$self->{dir}/challtestsrv.log";
    $self->{dns_pid} = $self->_spawn('pebble-challtestsrv', $log, {},
        $CHALLTESTSRV, '-defaultIPv4', '127.0.0.1', '-defaultIPv6', '',
        '-dns01', "127.0.0.1:$self->{dns_port}", '-http01', '',
        '-https01', '', '-tlsalpn01', '',
        '-management', "127.0.0.1:$self->{dns_mgmt}");
    $self->_wait_up($self->{dns_pid}, 'pebble-challtestsrv', $log,
                    $self->{dns_mgmt}, $self->{dns_port});
}

# Start pebble; returns once it answers, with its new root in root().
sub start {
    my ($self) = @_;
    die "pebble already running\n" if $self->{pid};

    my $log = "$self->{dir}/pebble.log";
    my %env = (PEBBLE_VA_NOSLEEP => 1, %{ $self->{env} });
    $self->{pid} = $self->_spawn('pebble', $log, \%env, $PEBBLE,
        '-config', "$self->{dir}/pebble.json",
        '-dnsserver', "127.0.0.1:$self->{dns_port}");
    $self->_wait_up($self->{pid}, 'pebble', $log, $self->{port},
                    $self->{mgmt_port});

    # the root is made at start: fetch it through the management API
    my $root = $self->root;
    unlink $root;
    my $out = qx{curl -sS --fail --max-time 10 --cacert $self->{dir}/tls.pem \\
                 -o $root https://127.0.0.1:$self->{mgmt_port}/roots/0 2>&1};
    die "cannot fetch pebble's root: $out\n" if $? || !-s $root;

    return $self;
}

sub _stop_pid {
    my ($pid) = @_;
    local $?;
    for my $step (['TERM', 5], ['KILL', 5]) {
        kill $step->[0], $pid;
        my $deadline = time + $step->[1];
        while (time < $deadline) {
            if (waitpid($pid, WNOHANG) != 0) {
                delete $LIVE{$pid};
                return;
            }
            sleep 0.02;
        }
    }
    delete $LIVE{$pid};
}

# Stop pebble (its DNS stays, for a start again).
sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    _stop_pid($pid);
}

sub _stop_all {
    my ($self) = @_;
    $self->stop;
    my $dns = delete $self->{dns_pid};
    _stop_pid($dns) if $dns;
}

sub DESTROY {
    my ($self) = @_;
    $self->_stop_all if $$ == $OWNER;
}

END {
    if ($$ == $OWNER) {
        my $status = $?;
        # a copy: stopping deletes from %LIVE
        my %seen;
        my @all = grep { !$seen{$_}++ } map { $_->[0] } values %LIVE;
        $_->_stop_all for @all;
        $? = $status;
    }
}

1;
