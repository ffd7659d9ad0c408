package PortalGate::Chromium;

# A real browser for the tests: Debian's chromium, headless, driven over the
# DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ended
# by a NUL byte, commands on its fd 3, answers on its fd 4), so that a page
# stays open while the test changes things and reads the DOM again.
#
#   my $br = PortalGate::Chromium->new(dir => $scratch);   # starts it
#   my $tab = $br->open_tab($url);
#   my $v = $br->eval($tab, 'document.title');   # the value, JSON-decoded
#   $br->wait_for($tab, 'expression', $seconds);  # until it is true
#   $br->screenshot($tab, "$scratch/page.png");
#   $br->stop;                                   # also at exit
#
# Runs as root with --no-sandbox (DESIGN: NGINX-NOTES, Chromium 156).
# Every wait has a limit: a browser that hangs fails the test, not the run.

use strict;
use warnings;

use IO::Handle;
use IO::Select;
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my %LIVE;
my $OWNER = $$;

our $SLOW = ($ENV{PG_TEST_SLOW} // '') =~ /^\d+(?:\.\d+)?$/
          && $ENV{PG_TEST_SLOW} > 0 ? $ENV{PG_TEST_SLOW} : 1;

sub binary {
    for my $b (qw(chromium chromium-browser google-chrome)) {
        for my $d (split /:/, $ENV{PATH} // '/usr/bin') {
            return "$d/$b" if -x "$d/$b";
        }
    }
    return undef;
}

sub new {
    my ($class, %o) = @_;
    my $bin = binary() or die "no chromium: apt-get install chromium\n";
    my $dir = $o{dir} // die "dir => a scratch folder\n";

    pipe(my $cmd_r, my $cmd_w) or die "pipe: $!";
    pipe(my $out_r, my $out_w) or die "pipe: $!";

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        setpgrp(0, 0);              # its helpers stop with it (stop())
        close $cmd_w;
        close $out_r;
        # out of the way first (either may be 3 or 4 already), then on 3
        # and 4: dup2 clears close-on-exec, which Perl sets above $^F
        POSIX::dup2(fileno($cmd_r), 20) // POSIX::_exit(126);
        POSIX::dup2(fileno($out_w), 21) // POSIX::_exit(126);
        POSIX::dup2(20, 3) // POSIX::_exit(126);
        POSIX::dup2(21, 4) // POSIX::_exit(126);
        POSIX::close($_) for 20, 21;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$dir/chromium.log";
        open STDERR, '>&', \*STDOUT;
        { exec $bin, '--headless', '--no-sandbox', '--disable-gpu',
               '--remote-debugging-pipe', '--no-first-run',
               '--disable-extensions', '--disable-background-networking',
               '--hide-scrollbars', '--window-size=' . ($o{size} // '1280,1000'),
               "--user-data-dir=$dir/chromium-profile", 'about:blank' }
        POSIX::_exit(127);
    }
    close $cmd_r;
    close $out_w;
    $cmd_w->autoflush(1);

    my $self = bless { pid => $pid, in => $cmd_w, out => $out_r, buf => '',
                       id => 0, dir => $dir }, $class;
    $LIVE{$pid} = $self;
    return $self;
}

# Send a command (to a page's session when $session is given) and return
# its result; dies on an error answer or after $timeout seconds.
sub call {
    my ($self, $method, $params, $session, $timeout) = @_;
    my $id = ++$self->{id};
    my $msg = { id => $id, method => $method, params => $params // {} };
    $msg->{sessionId} = $session if defined $session;
    print { $self->{in} } encode_json($msg) . "\0";

    my $deadline = time + ($timeout // 20) * $SLOW;
    my $sel = IO::Select->new($self->{out});
    while (1) {
        while ($self->{buf} =~ s/^([^\0]*)\0//) {
            my $m = decode_json($1);
            next unless defined $m->{id} && $m->{id} == $id;
            die "chromium: $method: " . encode_json($m->{error}) . "\n"
                if $m->{error};
            return $m->{result};
        }
        my $left = $deadline - time;
        die "chromium: no answer to $method\n" if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread $self->{out}, my $chunk, 1 << 20;
        die "chromium: ended (see $self->{dir}/chromium.log)\n" unless $n;
        $self->{buf} .= $chunk;
    }
}

# A new tab on $url: its session id.
sub open_tab {
    my ($self, $url) = @_;
    my $t = $self->call('Target.createTarget', { url => $url });
    my $a = $self->call('Target.attachToTarget',
                        { targetId => $t->{targetId}, flatten => JSON::PP::true });
    return $a->{sessionId};
}

# The value of a JavaScript expression in the tab, JSON-decoded.
sub eval {
    my ($self, $tab, $expr) = @_;
    my $r = $self->call('Runtime.evaluate',
                        { expression => $expr, returnByValue => JSON::PP::true },
                        $tab);
    die "chromium: $expr threw: " . encode_json($r->{exceptionDetails}) . "\n"
        if $r->{exceptionDetails};
    return $r->{result}{value};
}

# Until $expr is true in the tab: its value, or undef after $timeout s.
sub wait_for {
    my ($self, $tab, $expr, $timeout) = @_;
    my $deadline = time + ($timeout // 10) * $SLOW;
    while (1) {
        my $v = eval { $self->eval($tab, $expr) };
        return $v if $v;
        return undef if time > $deadline;
        sleep 0.05;
    }
}

# The whole page as a PNG in $path.
sub screenshot {
    my ($self, $tab, $path) = @_;
    my $r = $self->call('Page.captureScreenshot',
                        { format => 'png',
                          captureBeyondViewport => JSON::PP::true }, $tab);
    CORE::open(my $fh, ">:raw", $path) or die "cannot write $path: $!";
    print {$fh} decode_base64($r->{data});
    close $fh or die "cannot write $path: $!";
    return $path;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    eval {
        local $SIG{PIPE} = 'IGNORE';
        print { $self->{in} } encode_json({ id => ++$self->{id},
                                            method => 'Browser.close' }) . "\0";
        close $self->{in};
    };
    my $deadline = time + 5;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) != 0) {
            delete $LIVE{$pid};
            return;
        }
        sleep 0.05;
    }
    kill 'TERM', -$pid;             # its process group: the browser's own
    sleep 0.5;
    kill 'KILL', -$pid if waitpid($pid, WNOHANG) == 0;
    waitpid $pid, 0;
    delete $LIVE{$pid};
}

sub DESTROY { $_[0]->stop if $_[0]{pid} && $$ == $OWNER }

END {
    if ($$ == $OWNER) {
        my $status = $?;
        $_->stop for values %LIVE;
        $? = $status;
    }
}

1;
