# portal-gated under systemd (issue 12, item 4): its stderr is the
# journal, which stamps each line with the time and the pid itself and
# reads its priority from a "<N>" prefix. When stderr is the stream that
# $JOURNAL_STREAM names (DEVICE:INODE, systemd.exec(5)), each line is
# "<5>[notice] ...", so that `journalctl -u portal-gated -p warning` shows
# the warnings and errors alone; anywhere else (a file, a pipe, stderr
# moved to an error_log) the lines stay as they were. The journal is
# played by the log file itself: $JOURNAL_STREAM names its inode.
# Real portal-gated (ASan build); Redis and the edge unreachable, which
# gives it an error line to write.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Gated qw(clean_exit wait_until);

sub gated {
    my ($extra) = @_;
    my $gd = PortalGate::Gated->new(redis => 'redis://127.0.0.1:1/0',
                                    edges => ['http://127.0.0.1:1/portal-gate/'],
                                    extra => $extra // '');
    # the harness appends to it: the same inode from now on
    open my $fh, '>>', $gd->log_path or die $!;
    close $fh;
    return $gd;
}

sub stream_of {
    my ($path) = @_;
    my @st = stat $path or die "$path: $!";
    return "$st[0]:$st[1]";
}

subtest 'stderr is the journal: each line carries its priority, no time, no pid' => sub {
    my $gd = gated();
    local $ENV{JOURNAL_STREAM} = stream_of($gd->log_path);
    $gd->start;
    ok($gd->wait_log(qr/^<5>\[notice\] portal-gated started: /, 10),
       'a notice is <5>, its level word kept for the reader');
    ok($gd->wait_log(qr/^<3>\[error\] redis unreachable/, 10), 'an error is <3>');
    ok($gd->wait_log(qr/^<4>\[warn\] edge /, 10), 'a warning is <4>');
    is($gd->count_log(qr/^(?!<[0-7]>\[)/), 0, 'every line has a priority')
        or diag($gd->log);
    clean_exit($gd->stop, $gd, 'SIGTERM');
};

subtest 'another stream in $JOURNAL_STREAM: the lines stay as they were' => sub {
    my $gd = gated();
    my $other = $gd->dir . '/other';
    open my $fh, '>', $other or die $!;
    close $fh;
    local $ENV{JOURNAL_STREAM} = stream_of($other);
    $gd->start;
    ok($gd->wait_log(qr{^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3} \[notice\] \d+: portal-gated started}, 10),
       'time, level, pid');
    is($gd->count_log(qr/^<\d>/), 0, 'no priority prefix');
    clean_exit($gd->stop, $gd, 'SIGTERM');
};

subtest 'an error_log file is not the journal, even with $JOURNAL_STREAM set' => sub {
    my $gd = gated();
    my $log = $gd->dir . '/pg.log';
    $gd->rewrite(extra => "error_log $log;\n");
    local $ENV{JOURNAL_STREAM} = stream_of($gd->log_path);
    $gd->start;
    ok(wait_until(sub {
        open my $fh, '<', $log or return 0;
        local $/;
        (<$fh> // '') =~ m{^\d{4}/\d\d/\d\d \S+ \[notice\] \d+: portal-gated started}m;
    }, 10), 'the file has the usual lines');
    clean_exit($gd->stop, $gd, 'SIGTERM');
};

done_testing;
