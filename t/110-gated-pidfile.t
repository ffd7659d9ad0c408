# portal-gated's pid file (issue 12, item 4), for init scripts and
# logrotate: `pid FILE;` in portal-gated.conf. With -d the daemon writes
# its own pid there once started, and the parent exits 0 only then; a pid
# file that cannot be written is said on the terminal with exit status 1
# and leaves no daemon behind. A clean exit removes the file when it still
# names this process; a HUP moves it, or is refused and changes nothing.
# Real portal-gated (ASan build); no Redis and no edge are needed for any
# of this (both unreachable: the daemon runs on and says so).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Fcntl qw(:flock);
use Test::More;
use Time::HiRes qw(sleep);
use PortalGate::Gated qw(clean_exit wait_until);

my @DAEMONS;        # daemons of -d: not our children, stopped at the end

END {
    my $status = $?;
    for my $pid (@DAEMONS) {
        kill 'TERM', $pid;
        wait_until(sub { gone($pid) }, 10) or kill 'KILL', $pid;
    }
    $? = $status;
}

# Has pid ended? (A daemon is not our child: init reaps it, or it stays a
# zombie for a while.)
sub gone {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 1;
    my $stat = <$fh> // '';
    return $stat =~ /^\d+ \(.*\) Z /s ? 1 : 0;
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return undef;
    local $/;
    return <$fh>;
}

sub gated {
    my ($extra) = @_;
    return PortalGate::Gated->new(redis => 'redis://127.0.0.1:1/0',
                                  edges => ['http://127.0.0.1:1/portal-gate/'],
                                  extra => $extra);
}

# The running processes whose command line names $conf: the daemons of
# that config, whatever their pid file says.
sub daemons_of {
    my ($conf) = @_;
    return grep { !gone($_) }
           map { m{^/proc/(\d+)$} ? $1 : () }
           grep { (slurp("$_/cmdline") // '') =~ /\Q$conf\E/ }
           glob '/proc/[0-9]*';
}

# The pid in the file, when it is one of a running portal-gated.
sub daemon_in {
    my ($path) = @_;
    my ($pid) = (slurp($path) // '') =~ /^(\d+)\n\z/ or return undef;
    my $cmd = slurp("/proc/$pid/cmdline") // '';
    return $cmd =~ /portal-gated/ ? $pid : undef;
}

subtest 'with -d: the pid file names the daemon, the parent exits 0 once it started, TERM removes the file' => sub {
    my $gd = gated('');
    my ($pid_file, $log) = ($gd->dir . '/run/pg.pid', $gd->dir . '/pg.log');
    mkdir $gd->dir . '/run';
    $gd->rewrite(extra => "pid $pid_file;\nerror_log $log;\n");

    my $r = $gd->run('-d', '-c', $gd->conf_path);
    # stopped at the end whatever happens below
    push @DAEMONS, daemons_of($gd->conf_path);
    is($r->{exit}, 0, 'portal-gated -d exits 0') or diag($r->{err});
    is($r->{err}, '', 'and says nothing');
    my $pid = daemon_in($pid_file);
    ok($pid, "the pid file holds the daemon's pid") or return;
    is_deeply([daemons_of($gd->conf_path)], [$pid], 'the one daemon of that config');
    ok(!-e "$pid_file.new", 'no temp file is left beside it');
    is(sprintf('%o', (stat $pid_file)[2] & 07777), '644', 'the pid file is 0644');
    like(slurp($log), qr/\[notice\] $pid: portal-gated started/,
         'the daemon logs to its error_log');

    kill 'TERM', $pid;
    ok(wait_until(sub { gone($pid) }, 10), 'TERM stops it');
    ok(!-e $pid_file, 'and the pid file is gone');
    my $l = slurp($log);
    like($l, qr/exiting on SIGTERM/, 'the log says why');
    unlike($l, qr/AddressSanitizer|LeakSanitizer|runtime error/, 'no sanitizer report');
};

subtest 'with -d: a pid file that cannot be written stops it, said on the terminal, exit 1' => sub {
    my $gd = gated('');
    my $pid_file = $gd->dir . '/missing/pg.pid';
    my $log = $gd->dir . '/pg.log';
    $gd->rewrite(extra => "pid $pid_file;\nerror_log $log;\n");

    my $t = $gd->run('-t', '-c', $gd->conf_path);
    is($t->{exit}, 1, '-t fails');
    like($t->{err}, qr{pid file \Q$pid_file\E cannot be written: its folder: No such file or directory},
         '-t names the pid file and why');

    my $r = $gd->run('-d', '-c', $gd->conf_path);
    is($r->{exit}, 1, 'portal-gated -d exits 1');
    like($r->{err}, qr{^portal-gated: cannot start: cannot write pid file \Q$pid_file\E: No such file or directory$}m,
         'and says why on its stderr');
    like(slurp($log) // '', qr/\[error\] \d+: cannot start: cannot write pid file/,
         'the log says it too');
    ok(wait_until(sub { !daemons_of($gd->conf_path) }, 10),
       'no daemon is left running');
    push @DAEMONS, daemons_of($gd->conf_path);
};

subtest 'in the foreground too: written at start, removed at a clean exit' => sub {
    my $gd = gated('');
    my $pid_file = $gd->dir . '/pg.pid';
    $gd->rewrite(extra => "pid $pid_file;\n");
    $gd->start;
    ok(wait_until(sub { daemon_in($pid_file) }), 'the pid file appears');
    is(daemon_in($pid_file), $gd->pid, 'with its pid');
    clean_exit($gd->stop, $gd, 'SIGTERM');
    ok(!-e $pid_file, 'the pid file is gone');
};

subtest "a pid file another process has taken over since is not removed" => sub {
    my $gd = gated('');
    my $pid_file = $gd->dir . '/pg.pid';
    $gd->rewrite(extra => "pid $pid_file;\n");
    $gd->start;
    ok(wait_until(sub { daemon_in($pid_file) }), 'the pid file appears');
    open my $fh, '>', $pid_file or die $!;
    print $fh "1\n";
    close $fh;
    clean_exit($gd->stop, $gd, 'SIGTERM');
    is(slurp($pid_file), "1\n", 'the other pid file stays as it is');
};

subtest 'HUP moves the pid file; one it cannot write refuses the reload' => sub {
    my $gd = gated('');
    my ($a, $b) = ($gd->dir . '/a.pid', $gd->dir . '/b.pid');
    $gd->rewrite(extra => "pid $a;\n");
    $gd->start;
    ok(wait_until(sub { daemon_in($a) }), 'a.pid appears');

    $gd->rewrite(extra => "pid $b;\n");
    my $mark = $gd->mark;
    $gd->hup;
    ok($gd->wait_log(qr/configuration reloaded/, 10, $mark), 'the reload is done');
    is(daemon_in($b), $gd->pid, 'b.pid names it');
    ok(!-e $a, 'a.pid is gone');

    my $bad = $gd->dir . '/missing/c.pid';
    $gd->rewrite(reconcile => '1s', extra => "pid $bad;\n");
    $mark = $gd->mark;
    $gd->hup;
    like($gd->wait_log(qr/configuration not reloaded/, 10, $mark) // '',
         qr{the old one stays: cannot write pid file \Q$bad\E: No such file or directory},
         'the reload is refused, saying why');
    is(daemon_in($b), $gd->pid, 'b.pid stays');
    is($gd->count_log(qr/configuration reloaded|reconcile every 1000 ms/, $mark), 0,
       'and nothing else of the file applied');
    clean_exit($gd->stop, $gd, 'SIGTERM');
    ok(!-e $b, 'the exit removes b.pid');
};

# review of the packaging: a second `portal-gated -d` of the same config
# replaced the running one's pid file with its own (the first one then
# could not be found, and its exit left the second's file behind). The
# pid file is now locked for the daemon's life.
subtest 'a second start finds the pid file locked: "already running (pid N)", exit 1, the file untouched' => sub {
    my $gd = gated('');
    my ($pid_file, $log) = ($gd->dir . '/pg.pid', $gd->dir . '/pg.log');
    $gd->rewrite(extra => "pid $pid_file;\nerror_log $log;\n");

    my $r = $gd->run('-d', '-c', $gd->conf_path);
    push @DAEMONS, daemons_of($gd->conf_path);
    is($r->{exit}, 0, 'the first portal-gated -d starts') or diag($r->{err});
    my $pid = daemon_in($pid_file);
    ok($pid, 'its pid file names it') or return;
    my @before = (stat $pid_file)[1, 9];

    # (-d only: a foreground start that wrongly ran would never return)
    my $s = $gd->run('-d', '-c', $gd->conf_path);
    push @DAEMONS, grep { $_ != $pid } daemons_of($gd->conf_path);
    is($s->{exit}, 1, 'a second portal-gated -d exits 1');
    like($s->{err}, qr/^portal-gated: cannot start: already running \(pid $pid\)/m,
         '... saying which one runs') or diag($s->{err});
    is_deeply([(stat $pid_file)[1, 9]], \@before, '... the pid file untouched');
    is(daemon_in($pid_file), $pid, '... and it still names the first');
    ok(wait_until(sub { daemons_of($gd->conf_path) == 1 }, 10),
       '... which is the one daemon left');

    # a stale file (its daemon killed, no lock left) does not stop a start
    kill 'KILL', $pid;
    ok(wait_until(sub { gone($pid) }, 10), 'the first one killed (-9): its file stays, unlocked');
    $r = $gd->run('-d', '-c', $gd->conf_path);
    push @DAEMONS, daemons_of($gd->conf_path);
    is($r->{exit}, 0, 'a start after it works') or diag($r->{err});
    my $new = daemon_in($pid_file);
    ok($new && $new != $pid, 'and the pid file names the new daemon');
    if ($new) {
        kill 'TERM', $new;
        ok(wait_until(sub { gone($new) }, 10), 'TERM stops it');
    }
};

# review of the packaging: two starts at once both failed. Each checked
# the file unlocked, then one removed the other's FILE.new and renamed its
# own over the file the other had locked. The lock now comes first, on the
# file itself: a start that does not get it (here a lock some process
# holds, as the other start's check does for a moment) says so and leaves
# the file as it is.
subtest 'a pid file locked by another process is neither replaced nor written' => sub {
    my $gd = gated('');
    my ($pid_file, $log) = ($gd->dir . '/pg.pid', $gd->dir . '/pg.log');
    $gd->rewrite(extra => "pid $pid_file;\nerror_log $log;\n");
    open my $fh, '>', $pid_file or die $!;
    print $fh "4242\n";
    close $fh;
    open my $lock, '<', $pid_file or die $!;
    flock($lock, LOCK_SH) or die "flock: $!";
    my @before = (stat $pid_file)[1, 9];

    my $r = $gd->run('-d', '-c', $gd->conf_path);
    push @DAEMONS, daemons_of($gd->conf_path);
    is($r->{exit}, 1, 'portal-gated -d exits 1') or diag($r->{err});
    like($r->{err}, qr/^portal-gated: cannot start: already running \(pid 4242\): pid file \Q$pid_file\E is locked by it/m,
         '... "already running", with the pid the file holds') or diag($r->{err});
    is_deeply([(stat $pid_file)[1, 9]], \@before, '... the file not replaced');
    is(slurp($pid_file), "4242\n", '... nor written');
    ok(wait_until(sub { daemons_of($gd->conf_path) == 0 }, 10),
       '... and no daemon runs (the one started ended)');
    close $lock;
};

# review of the packaging: `pid /var/run/x.pid` -> `pid /run/x.pid` (the
# same file: /var/run is a link to /run) was refused by the daemon's own
# lock, and a move would have removed the file it had just kept
subtest 'HUP to the same pid file by another path: reloaded, the file kept' => sub {
    my $gd = gated('');
    my $run = $gd->dir . '/run';
    mkdir $run or die $!;
    symlink($run, $gd->dir . '/var-run') or die $!;
    my ($old, $new) = ($gd->dir . '/var-run/pg.pid', "$run/pg.pid");
    $gd->rewrite(extra => "pid $old;\n");
    $gd->start;
    ok(wait_until(sub { daemon_in($new) }), 'the pid file appears');

    $gd->rewrite(extra => "pid $new;\n");
    my $mark = $gd->mark;
    $gd->hup;
    ok($gd->wait_log(qr/configuration (not )?reloaded/, 10, $mark), 'the reload is done');
    is($gd->count_log(qr/configuration not reloaded/, $mark), 0, 'not refused')
        or diag($gd->log($mark));
    is(daemon_in($new), $gd->pid, 'the pid file is there and names it');
    clean_exit($gd->stop, $gd, 'SIGTERM');
    ok(!-e $new, 'the exit removes it');
};

subtest 'a relative pid path is refused with the file and the line' => sub {
    my $gd = gated("pid run/pg.pid;\n");
    my $r = $gd->run('-t', '-c', $gd->conf_path);
    is($r->{exit}, 1, '-t exits 1');
    like($r->{err}, qr{portal-gated\.conf:\d+: invalid value "run/pg\.pid" in "pid": an absolute path},
         'naming the value');
};

done_testing;
