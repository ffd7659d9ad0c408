package PortalGate::Redis;

# A real redis-server for the controller's tests, on a free loopback port
# in a scratch folder of its own, stopped at the end even when a test dies;
# and portal-gatectl runs against it.
#
#   my $rs = PortalGate::Redis->new;          # started
#   my $r = $rs->ctl('create', 'customer_portal');
#   $r->{exit}, $r->{out}, $r->{err}
#   $rs->ctl_env({USER => 'alice'}, 'on', 'customer_portal');
#   $rs->ctl_env({USER => undef}, ...);       # $USER unset
#   $rs->cli('HGETALL', 'portal-gate:flags:production');   # redis-cli
#   $rs->stop; $rs->start;                    # Redis down, Redis back
#   $rs->pause; $rs->resume;                  # Redis held still (SIGSTOP):
#                                             # it accepts, never answers
#   $rs->beat(host => 'web1', age_ms => 0);   # a controller's beat
#   $rs->now_ms;                              # Redis's clock

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use IPC::Open3 qw(open3);
use JSON::PP;
use Symbol qw(gensym);
use Test::More;
use Time::HiRes qw(sleep time);

use Exporter qw(import);
our @EXPORT_OK = qw(exits);

my $ROOT = abs_path(dirname(__FILE__) . '/../../..');
my %LIVE;
my $OWNER = $$;     # a forked writer must not stop Redis when it exits

our $CTL = $ENV{PORTAL_GATECTL} || "$ROOT/build/asan/portal-gatectl";

# an ASan or UBSan report changes the exit status, which tests check
$ENV{ASAN_OPTIONS} = 'detect_leaks=1:exitcode=23';
$ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1:exitcode=24';

# PortalGate::Test's, which gives no port twice in a test
sub _free_port {
    require PortalGate::Test;
    return PortalGate::Test::free_port();
}

sub new {
    my ($class, %o) = @_;
    my $self = bless { dir => tempdir('portal-gate-redis-XXXXXX',
                                      TMPDIR => 1, CLEANUP => 1),
                       port => _free_port(), db => $o{db} // 0 }, $class;
    $self->start;
    return $self;
}

sub port { $_[0]{port} }
sub url  { "redis://127.0.0.1:$_[0]{port}/$_[0]{db}" }

sub start {
    my ($self) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', "$self->{dir}/redis.log";
        open STDERR, '>&', \*STDOUT;
        exec 'redis-server', '--bind', '127.0.0.1', '--port', $self->{port},
             '--dir', $self->{dir}, '--save', '', '--appendonly', 'no'
            or exit 127;
    }
    $self->{pid} = $pid;
    $LIVE{$pid} = $self;

    my $deadline = time + 10;
    while (time < $deadline) {
        return $self if IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                              PeerPort => $self->{port});
        sleep 0.02;
    }
    die "redis-server did not come up on port $self->{port}\n";
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    kill 'CONT', $pid;          # a paused one must wake up to stop
    waitpid $pid, 0;
    delete $LIVE{$pid};
}

# SIGSTOP: the kernel still accepts connections, Redis answers nothing,
# and a client's command times out; resume (SIGCONT) undoes it.
sub pause  { kill 'STOP', $_[0]{pid} }
sub resume { kill 'CONT', $_[0]{pid} }

# portal-gatectl with its Redis pointed here; returns {exit, out, err}
sub ctl {
    my ($self, @args) = @_;
    return $self->ctl_env({}, @args);
}

# the same with more environment variables: ctl_env({USER => 'x'}, 'list');
# a variable given as undef is unset. PORTAL_GATE_CONF is '' (no config)
# unless given: a /etc/portal-gate/portal-gated.conf on the machine must
# not point the tests elsewhere.
sub ctl_env {
    my ($self, $more, @args) = @_;
    my %env = (PORTAL_GATE_REDIS => $self->url, USER => 'tester',
               SUDO_USER => '', PORTAL_GATE_CONF => '', %$more);
    my @unset = grep { !defined $env{$_} } keys %env;
    delete @env{@unset};
    local @ENV{keys %env} = values %env;
    delete local @ENV{@unset};
    delete local $ENV{PORTAL_GATE_PREFIX};
    delete local $ENV{PORTAL_GATE_ENV};

    my $err = gensym;
    my $pid = open3(my $in, my $out, $err, $CTL, @args);
    close $in;
    my $o = do { local $/; <$out> } // '';
    my $e = do { local $/; <$err> } // '';
    waitpid $pid, 0;
    return { exit => $? >> 8, out => $o, err => $e };
}

# redis-cli against this server; returns its output
sub cli {
    my ($self, @args) = @_;
    my $pid = open3(my $in, my $out, undef, 'redis-cli', '-p', $self->{port},
                    '-n', $self->{db}, @args);
    close $in;
    my $o = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    chomp $o;
    return $o;
}

# Redis's clock (TIME) in epoch ms: what beats are measured on
sub now_ms {
    my ($self) = @_;
    my ($s, $us) = split /\n/, $self->cli('TIME');
    return $s * 1000 + int($us / 1000);
}

# A controller's beat as portal-gated writes it (include/pg_store.h), for
# tests that need one without the daemon: $rs->beat(host => 'web1',
# pid => 4711, age_ms => 0, interval_ms => 2000, store_revision => 3,
# edges => {URL => {revision => 3, ok => 1, error => undef}}). Returns the
# field, "HOST:PID".
sub beat {
    my ($self, %o) = @_;
    my $host = $o{host} // 'test-host';
    my $pid = $o{pid} // 4711;
    my $interval = $o{interval_ms} // 2000;
    my $now = $self->now_ms;
    my %edges = map {
        my $e = $o{edges}{$_};
        ($_ => {revision => $e->{revision}, ok => $e->{ok} ? JSON::PP::true
                                                           : JSON::PP::false,
                error => $e->{error}})
    } keys %{ $o{edges} // {} };
    my $beat = {host => $host, pid => $pid + 0,
                version => $o{version} // 'test',
                started_at => '2026-01-01T00:00:00Z',
                beat_at => $now - ($o{age_ms} // 0),
                interval_ms => $interval + 0,
                store_revision => $o{store_revision},
                edges => \%edges};
    $self->cli('HSET', ($o{prefix} // 'portal-gate:') . 'controllers',
               "$host:$pid", JSON::PP->new->canonical->encode($beat));
    return "$host:$pid";
}

# A portal-gatectl run ($r from ctl) ended with $status, and the
# sanitizers reported nothing.
sub exits {
    my ($r, $status, $name) = @_;
    is($r->{exit}, $status, "$name: exit $status")
        or diag("stdout: $r->{out}\nstderr: $r->{err}");
    unlike($r->{err}, qr/AddressSanitizer|LeakSanitizer|runtime error/,
           "$name: no sanitizer report");
}

sub DESTROY { $_[0]->stop if $_[0]{pid} && $$ == $OWNER }

END { if ($$ == $OWNER) { $_->stop for values %LIVE } }

1;
