# portal-gated's log file (issue 12, item 4): `error_log FILE;` in
# portal-gated.conf sends the log to FILE once the daemon has started, and
# SIGUSR1 reopens it, as nginx does, so that logrotate can move it away
# (postrotate: kill -USR1). Under systemd there is no error_log: stderr
# goes to the journal. What a user sees: the lines in the file, the
# renamed file left alone after USR1, a reload that moves the log or is
# refused, a start that cannot open the file said on the terminal.
# Real portal-gated (ASan build); Redis and the edge unreachable on
# purpose: the daemon runs on and logs that, which gives it lines to write.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);
use PortalGate::Gated qw(clean_exit wait_until);

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return <$fh> // '';
}

sub gated {
    my ($extra) = @_;
    return PortalGate::Gated->new(redis => 'redis://127.0.0.1:1/0',
                                  edges => ['http://127.0.0.1:1/portal-gate/'],
                                  extra => $extra);
}

# a line matching $re in $path within the limit
sub file_has {
    my ($path, $re) = @_;
    return wait_until(sub { slurp($path) =~ $re }, 10);
}

sub no_sanitizer {
    my ($path) = @_;
    unlike(slurp($path), qr/AddressSanitizer|LeakSanitizer|runtime error/,
           "no sanitizer report in $path");
}

subtest 'error_log FILE: the log goes to the file, nothing to stderr' => sub {
    my $gd = gated('');
    my $log = $gd->dir . '/pg.log';
    $gd->rewrite(extra => "error_log $log;\n");
    $gd->start;
    ok(file_has($log, qr/\[notice\] \d+: portal-gated started/), 'the file says it started');
    ok(file_has($log, qr/\[error\] \d+: redis unreachable/), 'and what follows');
    is(sprintf('%o', (stat $log)[2] & 07777), '640', 'the file is made 0640');
    is($gd->stop, 0, 'TERM: exit status 0');
    like(slurp($log), qr/exiting on SIGTERM/, 'the exit is in the file');
    is($gd->log, '', 'stderr got nothing');
    no_sanitizer($log);
};

subtest 'SIGUSR1 reopens the file after logrotate moved it' => sub {
    my $gd = gated('');
    my $log = $gd->dir . '/pg.log';
    $gd->rewrite(extra => "error_log $log;\n");
    $gd->start;
    ok(file_has($log, qr/portal-gated started/), 'started');

    rename $log, "$log.1" or die $!;
    kill 'USR1', $gd->pid;
    ok(file_has($log, qr/\[notice\] \d+: error_log \Q$log\E reopened \(SIGUSR1\)/),
       'a new file, which says it was reopened');
    my $old = slurp("$log.1");

    # an event after the reopen: a reload
    my $n = () = slurp($log) =~ /configuration reloaded/g;
    kill 'HUP', $gd->pid;
    ok(file_has($log, qr/configuration reloaded/), 'the next lines go to the new file');
    is(slurp("$log.1"), $old, 'the moved file gets nothing more');
    ok($gd->running, 'it runs on');
    clean_exit($gd->stop, $gd, 'SIGTERM');
    no_sanitizer($log);
};

subtest 'SIGUSR1 when the file cannot be opened: the log stays in the old one' => sub {
    my $gd = gated('');
    my $dir = $gd->dir . '/logs';
    mkdir $dir;
    my $log = "$dir/pg.log";
    $gd->rewrite(extra => "error_log $log;\n");
    $gd->start;
    ok(file_has($log, qr/portal-gated started/), 'started');
    rename $dir, "$dir.old" or die $!;
    kill 'USR1', $gd->pid;
    ok(file_has("$dir.old/pg.log",
                qr/\[error\] \d+: SIGUSR1: cannot open error_log \Q$log\E: No such file or directory; the log stays in the file open before/),
       'the old file says why');
    ok($gd->running, 'it runs on');
    clean_exit($gd->stop, $gd, 'SIGTERM');
};

subtest 'SIGUSR1 without error_log: said, and nothing else' => sub {
    my $gd = gated('');
    $gd->start;
    ok($gd->wait_log(qr/portal-gated started/, 10), 'started');
    kill 'USR1', $gd->pid;
    ok($gd->wait_log(qr/\[notice\] \d+: SIGUSR1: there is no error_log file to reopen \(the log goes to stderr\)/, 10),
       'stderr says there is no file');
    ok($gd->running, 'it runs on');
    clean_exit($gd->stop, $gd, 'SIGTERM');
};

subtest 'HUP moves the log; a file it cannot open refuses the reload' => sub {
    my $gd = gated('');
    my ($a, $b) = ($gd->dir . '/a.log', $gd->dir . '/b.log');
    $gd->rewrite(extra => "error_log $a;\n");
    $gd->start;
    ok(file_has($a, qr/portal-gated started/), 'started, in a.log');

    $gd->rewrite(extra => "error_log $b;\n");
    kill 'HUP', $gd->pid;
    ok(file_has($a, qr/\[notice\] \d+: the log goes to \Q$b\E from now on/),
       'a.log says where the log goes');
    ok(file_has($b, qr/configuration reloaded/), 'b.log has the reload');

    my $bad = $gd->dir . '/missing/c.log';
    $gd->rewrite(reconcile => '1s', extra => "error_log $bad;\n");
    kill 'HUP', $gd->pid;
    ok(file_has($b, qr{configuration not reloaded, the old one stays: cannot open error_log \Q$bad\E: No such file or directory}),
       'b.log says the reload is refused, and why');
    unlike(slurp($b), qr/reconcile every 1000 ms/, 'nothing of the file applied');

    $gd->rewrite(reconcile => '1s', extra => "error_log stderr;\n");
    kill 'HUP', $gd->pid;
    ok(file_has($b, qr/the log goes to stderr from now on/), '"error_log stderr" takes it back');
    ok($gd->wait_log(qr/configuration reloaded from .*reconcile every 1000 ms/, 10),
       'to the first stderr');
    clean_exit($gd->stop, $gd, 'SIGTERM');
};

subtest 'an error_log that cannot be opened stops the start, said on stderr' => sub {
    my $gd = gated('');
    my $bad = $gd->dir . '/missing/pg.log';
    $gd->rewrite(extra => "error_log $bad;\n");

    my $t = $gd->run('-t', '-c', $gd->conf_path);
    is($t->{exit}, 1, '-t fails');
    like($t->{err}, qr{error_log \Q$bad\E cannot be written: its folder: No such file or directory},
         '-t says why');

    my $r = $gd->run('-c', $gd->conf_path);
    is($r->{exit}, 1, 'the start exits 1');
    like($r->{err}, qr{^portal-gated: cannot start: cannot open error_log \Q$bad\E: No such file or directory$}m,
         'saying why');

    $r = $gd->run('-d', '-c', $gd->conf_path);
    is($r->{exit}, 1, 'with -d too, before it forks');
    like($r->{err}, qr{cannot open error_log}, 'on the terminal');
};

subtest 'a relative error_log path is refused with the file and the line' => sub {
    my $gd = gated("error_log logs/pg.log;\n");
    my $r = $gd->run('-t', '-c', $gd->conf_path);
    is($r->{exit}, 1, '-t exits 1');
    like($r->{err}, qr{portal-gated\.conf:\d+: invalid value "logs/pg\.log" in "error_log": an absolute path},
         'naming the value');
};

done_testing;
