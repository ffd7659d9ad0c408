package PortalGate::Gdb;

# gdb -batch against nginx's workers, for tests that stop a worker at a
# chosen point (a race made deterministic, a failure that cannot be
# provoked from outside) or write into it.
#
#   plan skip_all => PortalGate::Gdb::unavailable() if PortalGate::Gdb::unavailable();
#
#   # hold each worker at the first call of a function, until released
#   my $g = PortalGate::Gdb::hold($ng, 'ngx_http_portal_gate_apply', @workers);
#   my ($w) = PortalGate::Gdb::wait_held($g, 1);   # the workers held, sorted
#   PortalGate::Gdb::release($g, $w);              # it goes on; gdb detaches
#   PortalGate::Gdb::finish_all($g);               # wait for each gdb to end
#   PortalGate::Gdb::kill_all($g);                 # gdb and its wait, now
#
#   # a request that a held worker answers later
#   my $pid = PortalGate::Gdb::api_bg($ng, 'A', 'PATCH', 'snapshot', $body);
#   waitpid($pid, 0); my $text = PortalGate::Gdb::answer($ng, 'A');
#
#   # any commands, in the background; then wait for gdb to end
#   my $pid = PortalGate::Gdb::run($worker, "$dir/gdb.log", 'print 1+1');
#   PortalGate::Gdb::finish($pid);
#
# Every gdb started here runs in a process group of its own, with the shell
# loops it starts to wait for a release: the END block below kills those
# groups, so a test that dies leaves nothing spinning, and such a loop also
# ends by itself when the test process is gone (a run cut short by a
# signal, which skips END) or its scratch folder is.

use strict;
use warnings;

use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

# loaded first, so that this END, which frees the held workers' gdb, runs
# before the harness's, which stops nginx
use PortalGate::Test ();

my $SLOW = $PortalGate::Test::SLOW;
my $OWNER = $$;
my %LIVE;       # gdb pid (= its process group) => 1, until it is reaped

my @SIGNALS = ('handle SIGQUIT SIGHUP SIGTERM SIGCHLD SIGPIPE SIGIO '
               . 'SIGALRM SIGUSR1 SIGWINCH nostop noprint pass');


# Why gdb tests cannot run here, or '' when they can.
sub unavailable {
    return 'needs gdb and root' unless -x '/usr/bin/gdb' && $> == 0;
    # gdb cannot stop a guest function of valgrind's (the valgrind pass)
    return 'nginx runs under a wrapper' if $ENV{PORTAL_GATE_NGINX};
    return '';
}


# gdb -p $pid -batch with these commands, its output in $log; returns
# gdb's pid. The signals nginx uses pass without stopping it.
sub run {
    my ($pid, $log, @commands) = @_;
    my $gdb = fork // die "fork: $!";
    if ($gdb == 0) {
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $log or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT;
        { exec '/usr/bin/gdb', '-p', $pid, '-batch', '-nx',
               map { ('-ex', $_) } @SIGNALS, @commands }
        POSIX::_exit(127);
    }
    $LIVE{$gdb} = 1;
    return $gdb;
}

# Wait (a limit: 30 s) for gdb to end; then kill what is left of it.
sub finish {
    my ($gdb, $limit) = @_;
    my $deadline = time + ($limit // 30) * $SLOW;
    while (time < $deadline) {
        return _reaped($gdb) if waitpid($gdb, WNOHANG) != 0;
        sleep 0.05;
    }
    _kill($gdb);
    return 0;
}

sub _reaped {
    my ($gdb) = @_;
    delete $LIVE{$gdb};
    kill 'KILL', -$gdb;     # a shell it left behind
    return 1;
}

# gdb first gets SIGTERM, on which it detaches: a breakpoint armed but
# never hit would otherwise stay in the worker's code, and the next call of
# that function would kill the worker with SIGTRAP. Then its group goes.
sub _kill {
    my ($gdb) = @_;
    return unless delete $LIVE{$gdb};
    kill 'TERM', $gdb;
    for (1 .. 40) {
        last if waitpid($gdb, WNOHANG) != 0;
        select(undef, undef, undef, 0.05);
    }
    kill 'KILL', -$gdb;
    waitpid($gdb, 0);
}


# gdb on each worker: stop it at the first call of $func and hold it there
# until release(). Returns once every gdb has set its breakpoint.
sub hold {
    my ($ng, $func, @workers) = @_;
    my $d = $ng->dir;
    my $g = {dir => $d, gdb => {}};
    for my $w (@workers) {
        $g->{gdb}{$w} = run($w, "$d/gdb.$w.log",
            "break $func", "shell touch $d/armed.$w",
            'continue', "shell touch $d/held.$w",
            "shell while [ ! -e $d/go.$w ] && [ -d $d ] "
            . "&& kill -0 $OWNER 2>/dev/null; do sleep 0.05; done",
            'detach');
    }
    my $deadline = time + 30 * $SLOW;
    until ((grep { -e "$d/armed.$_" } @workers) == @workers
           || time > $deadline) { sleep 0.05 }
    return $g;
}

# The workers stopped at the breakpoint so far, sorted.
sub held {
    my ($g) = @_;
    return grep { -e "$g->{dir}/held.$_" } sort keys %{ $g->{gdb} };
}

# Wait (a limit) until $n workers are held; returns them.
sub wait_held {
    my ($g, $n) = @_;
    my $deadline = time + 20 * $SLOW;
    until (held($g) >= $n || time > $deadline) { sleep 0.05 }
    return held($g);
}

# Let the worker go on (now, or at once when it stops); its gdb detaches.
sub release {
    my ($g, $w) = @_;
    open my $go, '>', "$g->{dir}/go.$w" or die "go.$w: $!";
    close $go;
}

# $ng->api(@call) in a child, for a request that a held worker answers
# later: its answer, "STATUS BODY", lands in the file $name of the scratch
# folder (answer() reads it). Returns the child's pid.
sub api_bg {
    my ($ng, $name, @call) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $res = $ng->api(@call, timeout => 60);
        open my $o, '>', $ng->dir . "/$name" or POSIX::_exit(1);
        print $o "$res->{status} $res->{content}";
        close $o;
        POSIX::_exit(0);
    }
    return $pid;
}

# The answer api_bg() saved as $name, '' while there is none.
sub answer {
    my ($ng, $name) = @_;
    open my $fh, '<', $ng->dir . "/$name" or return '';
    local $/;
    return scalar <$fh>;
}

# The worker's gdb log, for a diagnostic.
sub log_of {
    my ($g, $w) = @_;
    open my $fh, '<', "$g->{dir}/gdb.$w.log" or return '';
    local $/;
    return scalar <$fh>;
}

# Wait for every gdb of $g to end (each ends once its worker is released
# and has stopped), killing what is left after the limit.
sub finish_all {
    my ($g) = @_;
    finish($_) for values %{ $g->{gdb} };
}

# Kill every gdb of $g and its wait (a worker it held runs on).
sub kill_all {
    my ($g) = @_;
    _kill($_) for values %{ $g->{gdb} };
}


END {
    if ($$ == $OWNER) {
        local $?;
        _kill($_) for keys %LIVE;
    }
}


1;
