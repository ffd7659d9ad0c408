# The state file's folder is writable by the worker user, so whatever is
# found at the state file's path or at a temp name may have been put there
# by a broken disk, an operator's mistake or a compromised worker: nginx
# still starts, never hangs, never follows a link, and cleans up after
# workers that were killed mid-write.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use JSON::PP;
use POSIX qw(mkfifo);
use Test::More;
use PortalGate::Test qw(require_module);

require_module();

my $portal = <<'CONF';
        location /portal/ { portal_gate customer_portal;
                            return 200 "portal v2\n"; }
CONF

sub snapshot_rev {
    my ($revision, @allow) = @_;
    return {revision => $revision, environments => {
        production => { customer_portal => { rollout => 0, allow => \@allow } } }};
}

sub read_state {
    my ($inst) = @_;
    open my $fh, '<', $inst->state_file or return undef;
    local $/;
    return eval { decode_json(scalar <$fh>) };
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return undef;
    local $/;
    return scalar <$fh>;
}

# nginx starts at once and empty, with one [warn] that says what is wrong
sub starts_with_warning {
    my ($inst, $re, $name) = @_;
    $inst->start;
    my @warn = $inst->log_lines(qr/\[warn\].*state file.*cannot be used/);
    is(scalar @warn, 1, "$name: one [warn] line") or diag($inst->error_log);
    like($warn[0] // '', $re, "$name: the line says why");
    is($inst->status->{revision}, 0, "$name: the zone starts empty");
    $inst->no_bad_log_lines("$name: no [crit], [alert] or [emerg]");
}

subtest 'a FIFO at the state path: nginx starts, and a PUT replaces it' => sub {
    my $ng = PortalGate::Test->new(server => $portal);
    mkfifo($ng->state_file, 0600) or die "mkfifo: $!";
    starts_with_warning($ng, qr/not a regular file but a FIFO/, 'FIFO');
    is($ng->put_snapshot(snapshot_rev(2, '12'))->{status}, 200, 'a PUT applies');
    ok(-f $ng->state_file, 'the FIFO was replaced by a regular file');
    is(read_state($ng)->{revision}, 2, 'holding revision 2');
    $ng->stop;
};

subtest 'a FIFO at the state path does not hang nginx -t' => sub {
    my $dir = tempdir(CLEANUP => 1);
    mkfifo("$dir/state.json", 0600) or die "mkfifo: $!";
    my ($rc, $out) = PortalGate::Test::nginx_t(
        "portal_gate_zone zone=pg:1m state=$dir/state.json;", timeout => 20);
    isnt($rc, 124, 'nginx -t did not hang (no timeout)');
    is($rc, 0, 'nginx -t passes') or diag($out);
    like($out, qr/not a regular file but a FIFO/, 'and warns about the FIFO');
};

subtest 'a directory at the state path is said to be one' => sub {
    my $ng = PortalGate::Test->new(server => $portal);
    mkdir $ng->state_file or die "mkdir: $!";
    starts_with_warning($ng, qr/not a regular file but a directory/,
                        'directory');
    unlike($ng->error_log, qr/invalid JSON/, 'not reported as invalid JSON');

    # the snapshot still applies; the file cannot be written, and says so
    is($ng->put_snapshot(snapshot_rev(2, '12'))->{status}, 200, 'a PUT applies');
    is($ng->get('/portal/', company => '12')->{status}, 200,
       'company 12 gets the portal');
    my $s = $ng->status;
    ok(!$s->{state_file}{ok}, 'status: state_file.ok is false');
    like($s->{state_file}{error} // '', qr/rename/, 'naming the rename');
    ok(-d $ng->state_file, 'the directory is left alone');
    $ng->stop;
};

subtest 'a 200 GB sparse state file: nginx starts, nothing is allocated' => sub {
    my $ng = PortalGate::Test->new(server => $portal);
    open my $fh, '>', $ng->state_file or die $!;
    truncate $fh, 200 * 1024 * 1024 * 1024 or die "truncate: $!";
    close $fh;
    starts_with_warning($ng, qr/214748364800 bytes, more than the \d+/,
                        'sparse file');
    unlike($ng->error_log, qr/malloc/, 'no malloc failure');
    is($ng->put_snapshot(snapshot_rev(2, '12'))->{status}, 200, 'a PUT applies');
    is(read_state($ng)->{revision}, 2, 'and replaces the file');
    $ng->stop;
};

subtest 'a symbolic link at the state path is not followed at start' => sub {
    my $ng = PortalGate::Test->new(server => $portal);
    my $elsewhere = $ng->dir . '/elsewhere.json';
    open my $fh, '>', $elsewhere or die $!;
    print {$fh} encode_json(snapshot_rev(9, '12'));
    close $fh;
    symlink $elsewhere, $ng->state_file or die "symlink: $!";
    starts_with_warning($ng, qr/symbolic link/, 'symlink');
    $ng->stop;
};

subtest 'a link planted at the temp name does not redirect the write' => sub {
    my $ng = PortalGate::Test->new(server => $portal);
    $ng->start;
    my ($worker) = $ng->workers;
    my $gen = $ng->status->{generation};
    # the next write's temp name ("tmp.PID.GENERATION.WRITE", the worker's
    # first write), and its neighbours, should the name's generation ever
    # count differently
    my @tmp = map { $ng->state_file . ".tmp.$worker." . ($gen + $_) . '.1' } 0 .. 3;

    # a file the worker user could write, as a target of the link
    my $target = $ng->dir . '/state/precious';
    open my $fh, '>', $target or die $!;
    print {$fh} "precious\n";
    close $fh;
    chmod 0666, $target;
    for my $tmp (@tmp) { symlink $target, $tmp or die "symlink: $!" }

    is($ng->put_snapshot(snapshot_rev(2, '12'))->{status}, 200, 'the PUT applies');
    is(slurp($target), "precious\n", "the link's target is untouched");
    ok(!-l $tmp[1], 'the link planted at the write\'s own temp name is gone');
    ok(scalar $ng->log_lines(qr/removed \d+ stale temp file/),
       'the others were removed as stale');
    is(read_state($ng)->{revision}, 2, 'the state file holds revision 2');
    ok(-f $ng->state_file && !-l $ng->state_file, 'as a regular file');
    $ng->no_bad_log_lines;
    $ng->stop;
};

subtest 'temp files left by killed workers are removed by the next write' => sub {
    my $ng = PortalGate::Test->new(server => $portal);
    my @stale = map { $ng->state_file . ".tmp.$_" } '99999.3', '99998.7';
    for my $f (@stale) {
        open my $fh, '>', $f or die $!;
        print {$fh} '{"revision":';
        close $fh;
    }
    my $other = $ng->dir . '/state/other.json.tmp.1.1';
    open my $fh, '>', $other or die $!;
    close $fh;

    $ng->start;
    is($ng->put_snapshot(snapshot_rev(2, '12'))->{status}, 200, 'a PUT applies');
    ok(!-e $_, "stale $_ is removed") for @stale;
    ok(-e $other, "a file that is not the state file's temp is kept");
    ok(scalar $ng->log_lines(qr/\[notice\].*removed 2 stale temp files/),
       'the removal is logged at notice') or diag($ng->error_log);
    my @left = grep { !/precious/ } glob $ng->state_file . '.tmp.*';
    is_deeply(\@left, [], 'no temp file of the state file is left');
    $ng->stop;
};

done_testing;
