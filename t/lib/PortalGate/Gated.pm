package PortalGate::Gated;

# portal-gated for the integration tests: writes its config in a scratch
# folder of its own, runs it in the foreground with stderr to a log file,
# and stops it at the end even when a test dies.
#
#   my $gd = PortalGate::Gated->new(redis => $rs->url,
#                                   edges => [$tcp, $unix],
#                                   environments => [qw(production staging)],
#                                   reconcile => '300ms', log_level => 'info');
#   $gd->start;
#   $gd->wait_log(qr/revision 3 applied/) or ...;
#   $gd->count_log(qr/redis unreachable/, $mark);
#   $gd->hup; $gd->kill('KILL');
#   $gd->rewrite(edges => [$tcp]);      # then $gd->hup
#   $gd->write_conf("edge x;\n");       # a config of raw text
#   clean_exit($gd->stop, $gd, 'SIGTERM');   # exit 0, no sanitizer report
#
# Options of new() and rewrite(): redis, prefix, environments (array),
# edges (array), reconcile, log_level, extra (raw lines appended).
# A directive whose option is undef is left out (its default applies).
#
# Methods: start, stop (TERM; returns the exit status, 128+N for a
# signal N), kill(SIG) (returns the same once it has ended), hup, running,
# pid, log (the whole log, or from a mark), mark (the log's length now),
# wait_log(qr//, timeout, mark) (the first matching line, or undef),
# count_log(qr//, mark), conf_path, dir, log_path, rewrite(%options),
# write_conf(TEXT), run(@args) ({exit, out, err} of portal-gated @args).
# Functions: clean_exit($status, $gd, $name); wait_until(sub, seconds);
# two_edges() (two nginx edges: one whose API the daemon reaches over TCP,
# one over a unix socket and without a state file); status_gets($ng) (how
# many GET /pg-api/status the "unix" edge has answered: the daemon's, one
# per reconcile tick); wait_ticks($ng, $n) (until $n more of them came);
# hung_edges($n, $log) ($n edge URLs on loopback that accept TCP
# connections and never answer, as an nginx that hangs; they stop at exit;
# the requests they get are logged to $log).
#
# PG_TEST_KEEP=1 keeps the scratch folder for a post-mortem.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use IPC::Open3 qw(open3);
use POSIX qw(WNOHANG);
use Symbol qw(gensym);
use Test::More;
use Time::HiRes qw(sleep time);

use Exporter qw(import);
our @EXPORT_OK = qw(clean_exit wait_until two_edges status_gets wait_ticks
                    hung_edges);

my $ROOT = abs_path(dirname(__FILE__) . '/../../..');
my %LIVE;           # pid => instance: everything still to stop at exit
my @HUNG;           # pids of hung_edges() listeners
my $OWNER = $$;     # a forked child must not stop the daemon when it exits

our $GATED = $ENV{PORTAL_GATED} || "$ROOT/build/asan/portal-gated";

# an ASan or UBSan report changes the exit status, which tests check
$ENV{ASAN_OPTIONS} = 'detect_leaks=1:exitcode=23';
$ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1:exitcode=24';

# Waits are limits, not timings (PG_TEST_SLOW as in PortalGate::Test).
our $SLOW = ($ENV{PG_TEST_SLOW} // '') =~ /^\d+(?:\.\d+)?$/
          && $ENV{PG_TEST_SLOW} > 0 ? $ENV{PG_TEST_SLOW} : 1;

my @OPTIONS = qw(redis prefix environments edges reconcile log_level extra);


# wait_until(sub { ... }, $seconds): polls every 20 ms until the sub
# returns true (returned) or the limit passes (undef).
sub wait_until {
    my ($cond, $timeout) = @_;
    my $deadline = time + ($timeout // 5) * $SLOW;
    while (1) {
        my $v = eval { $cond->() };
        return $v if $v;
        return undef if time > $deadline;
        sleep 0.02;
    }
}


sub new {
    my ($class, %o) = @_;
    my $dir = tempdir('portal-gated-XXXXXX', TMPDIR => 1,
                      CLEANUP => !$ENV{PG_TEST_KEEP});
    diag("portal-gated scratch folder: $dir") if $ENV{PG_TEST_KEEP};

    my $self = bless {
        dir          => $dir,
        redis        => undef,
        prefix       => undef,
        environments => ['production'],
        edges        => [],
        reconcile    => '300ms',
        log_level    => 'info',
        extra        => '',
    }, $class;

    $self->rewrite(%o);
    return $self;
}

sub dir       { $_[0]{dir} }
sub conf_path { "$_[0]{dir}/portal-gated.conf" }
sub log_path  { "$_[0]{dir}/portal-gated.log" }
sub pid       { $_[0]{pid} }

sub _conf_text {
    my ($self) = @_;
    my $t = "# written by PortalGate::Gated\n";
    $t .= "redis $self->{redis};\n" if defined $self->{redis};
    $t .= "prefix $self->{prefix};\n" if defined $self->{prefix};
    $t .= "environments @{ $self->{environments} };\n"
        if $self->{environments} && @{ $self->{environments} };
    $t .= "edge $_;\n" for @{ $self->{edges} // [] };
    $t .= "reconcile_interval $self->{reconcile};\n"
        if defined $self->{reconcile};
    $t .= "log_level $self->{log_level};\n" if defined $self->{log_level};
    $t .= $self->{extra} // '';
    return $t;
}

# Change options and write the config again (a running daemon reads it on
# hup).
sub rewrite {
    my ($self, %o) = @_;
    for my $k (keys %o) {
        die "unknown option $k\n" unless grep { $_ eq $k } @OPTIONS;
        $self->{$k} = $o{$k};
    }
    $self->write_conf($self->_conf_text);
    return $self;
}

# Write the config file as given.
sub write_conf {
    my ($self, $text) = @_;
    my $path = $self->conf_path;
    open my $fh, '>', "$path.tmp" or die "cannot write $path: $!";
    print {$fh} $text;
    close $fh or die "cannot write $path: $!";
    rename "$path.tmp", $path or die "cannot rename to $path: $!";
    return $path;
}


# ---- the process

sub start {
    my ($self) = @_;
    die "portal-gated already running\n" if $self->{pid};

    my $log = $self->log_path;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>>', $log;
        { exec $GATED, '-c', $self->conf_path }
        POSIX::_exit(127);
    }

    $self->{pid} = $pid;
    $LIVE{$pid} = $self;
    return $self;
}

# Is it still running? Reaps it when it has ended (see {status}).
sub running {
    my ($self) = @_;
    my $pid = $self->{pid} or return 0;
    local $?;
    if (waitpid($pid, WNOHANG) == $pid) {
        $self->{status} = _status($?);
        delete $LIVE{$pid};
        delete $self->{pid};
        return 0;
    }
    return 1;
}

sub _status {
    my ($raw) = @_;
    return $raw & 127 ? 128 + ($raw & 127) : $raw >> 8;
}

# Send $sig and wait for the end: returns the exit status (128+N when a
# signal N ended it), or undef when it did not end within $timeout.
sub kill {
    my ($self, $sig, $timeout) = @_;
    my $pid = $self->{pid};
    return $self->{status} unless $pid;
    # a test that died while it held the daemon stopped (SIGSTOP): let it
    # run first. Never CONT afterwards: that would discard the SIGSTOP with
    # which LeakSanitizer's exit-time check stops the process, and hang it.
    CORE::kill('CONT', $pid) if _stopped($pid);
    CORE::kill($sig, $pid);

    my $deadline = time + ($timeout // 10) * $SLOW;
    while (time < $deadline) {
        return $self->{status} unless $self->running;
        sleep 0.02;
    }
    return undef;
}

sub _stopped {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    return $stat =~ /^\d+ \(.*\) T /s ? 1 : 0;
}

# SIGTERM; SIGKILL when it lingers (then the status says so).
sub stop {
    my ($self) = @_;
    return $self->{status} unless $self->{pid};
    my $status = $self->kill('TERM');
    return $status if defined $status;
    warn "portal-gated $self->{pid} ignored SIGTERM\n";
    return $self->kill('KILL');
}

sub hup {
    my ($self) = @_;
    die "portal-gated not running\n" unless $self->running;
    CORE::kill('HUP', $self->{pid});
}

sub DESTROY {
    my ($self) = @_;
    $self->stop if $self->{pid} && $$ == $OWNER;
}

END {
    if ($$ == $OWNER) {
        my $status = $?;
        $_->stop for values %LIVE;
        for my $pid (@HUNG) {
            CORE::kill('KILL', $pid);
            waitpid $pid, 0;
        }
        $? = $status;
    }
}


# ---- the log

sub log {
    my ($self, $mark) = @_;
    open my $fh, '<:raw', $self->log_path or return '';
    local $/;
    my $s = <$fh> // '';
    return $mark ? substr($s, $mark < length $s ? $mark : length $s) : $s;
}

# Where the log ends now: give it to log, wait_log and count_log to look
# only at what comes after.
sub mark { (-s $_[0]->log_path) || 0 }

sub _lines {
    my ($self, $re, $mark) = @_;
    return grep { /$re/ } split /\n/, $self->log($mark);
}

sub count_log {
    my ($self, $re, $mark) = @_;
    my @l = $self->_lines($re, $mark);
    return scalar @l;
}

# The first line (after $mark) matching $re, waiting up to $timeout s;
# undef when none came (or the daemon ended).
sub wait_log {
    my ($self, $re, $timeout, $mark) = @_;
    my $deadline = time + ($timeout // 5) * $SLOW;
    while (1) {
        my ($line) = $self->_lines($re, $mark);
        return $line if defined $line;
        return undef if time > $deadline || !$self->running;
        sleep 0.02;
    }
}


# ---- portal-gated @args, to the end: {exit, out, err}

sub run {
    my ($self, @args) = @_;
    my $err = gensym;
    my $pid = open3(my $in, my $out, $err, $GATED, @args);
    close $in;
    my $o = do { local $/; <$out> } // '';
    my $e = do { local $/; <$err> } // '';
    waitpid $pid, 0;
    return { exit => _status($?), out => $o, err => $e };
}


# ---- the edges

# Two nginx edges with the same gated location,
#   location /portal/ { portal_gate customer_portal; }  (200, else 404)
# "tcp": its API at http://127.0.0.1:PORT/portal-gate/, with a state file;
# "unix": its API on a unix socket at /pg-api/, no state file (a restart
# empties it). Both also answer the API on their TCP port at /portal-gate/
# (eval, status, snapshot for the tests). Returns
# {tcp => $ng, unix => $ng, tcp_url => ..., unix_url => ...}.
sub two_edges {
    require PortalGate::Test;
    my $server = <<'CONF';
        location /portal/ { portal_gate customer_portal;
                            return 200 "portal v2\n"; }
CONF
    my $tcp = PortalGate::Test->new(server => $server);
    my $unix = PortalGate::Test->new(state => 0, server => $server,
                                     http => <<'CONF');
    server {
        listen unix:%%DIR%%/api.sock;
        location /pg-api/ { portal_gate_api; }
    }
CONF
    $tcp->start;
    $unix->start;
    return {tcp => $tcp, unix => $unix,
            tcp_url => 'http://127.0.0.1:' . $tcp->port . '/portal-gate/',
            unix_url => 'unix:' . $unix->dir . '/api.sock:/pg-api/'};
}

# GET /pg-api/status requests that the "unix" edge of two_edges() has
# logged: the daemon asks it once per reconcile tick, and the tests talk to
# its /portal-gate/ on TCP, so these are the daemon's (or portal-gatectl
# --wait -c's).
sub status_gets {
    my ($ng) = @_;
    open my $fh, '<', $ng->dir . '/access.log' or return 0;
    my $n = grep { m{"GET /pg-api/status(?:\?in_step=\d+)? HTTP} } <$fh>;
    return $n;
}

# Until $n more reconcile ticks have reached the "unix" edge; false if
# they did not come within $timeout.
sub wait_ticks {
    my ($ng, $n, $timeout) = @_;
    my $want = status_gets($ng) + $n;
    return wait_until(sub { status_gets($ng) >= $want }, $timeout // 5);
}


# $n listeners on loopback that accept every TCP connection and never
# answer: edges whose nginx hangs. Returns their URLs (as an edge line
# writes them); one child process holds them until the test ends. With
# $log, the request line of every request they get is appended there
# ("PORT GET /portal-gate/status HTTP/1.1").
sub hung_edges {
    my ($n, $log) = @_;
    my @socks = map {
        IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                              Listen => 128, ReuseAddr => 1)
            or die "cannot listen: $!"
    } 1 .. $n;
    my @urls = map { 'http://127.0.0.1:' . $_->sockport . '/portal-gate/' }
                   @socks;

    my $parent = $$;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $sel = IO::Select->new(@socks);
        my %port = map { ($_ => $_->sockport) } @socks;
        my %listener = map { ($_ => 1) } @socks;
        # ends with the test, even one that was killed
        while (getppid() == $parent) {
            for my $s ($sel->can_read(0.5)) {
                if ($listener{$s}) {
                    my $c = $s->accept or next;
                    $port{$c} = $port{$s};
                    $sel->add($c);
                    next;
                }
                my $got = sysread $s, my $buf, 65536;
                if (!$got) {
                    $sel->remove($s);
                    close $s;
                    next;
                }
                next unless $log;
                open my $fh, '>>', $log or next;
                print {$fh} "$port{$s} $1\n"
                    while $buf =~ /^((?:GET|PUT) \S+ HTTP\/1\.[01])\r?$/mg;
                close $fh;
            }
        }
        POSIX::_exit(0);
    }

    close $_ for @socks;
    push @HUNG, $pid;
    return @urls;
}


# The daemon ended with exit status 0 and its log has no sanitizer report
# (ASan's leak check runs at exit).
sub clean_exit {
    my ($status, $gd, $name) = @_;
    is($status, 0, "$name: exit status 0")
        or diag("portal-gated log:\n" . $gd->log);
    my @bad = $gd->_lines(qr/AddressSanitizer|LeakSanitizer|runtime error/);
    ok(!@bad, "$name: no sanitizer report in the log")
        or diag($gd->log);
}

1;
