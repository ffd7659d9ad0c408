# No 200 before the change is durable: a change's answer waits until the
# state file (or its journal) holds it, whatever other change's write runs
# beside it, and a change an old worker finishes after a resizing reload is
# a 503, not a 200 whose state file never comes. Each test holds a worker
# with gdb at a chosen point of its write, lets another change race it,
# then crashes the whole edge and restarts it: what was acknowledged must
# be there. gdb runs through PortalGate::Gdb, whose guard leaves no gdb
# nor wait loop behind a run cut short (the last test).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Path ();
use JSON::PP;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);
use PortalGate::Test qw(require_module);
use PortalGate::Gdb;

require_module();

plan skip_all => PortalGate::Gdb::unavailable()
    if PortalGate::Gdb::unavailable();

my $SLOW = $ENV{PG_TEST_SLOW} // 1;
my $JSON = JSON::PP->new->canonical->utf8;

my $portal = <<'CONF';
        location /portal/ { portal_gate customer_portal;
                            return 200 "portal\n"; }
CONF

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar <$fh>;
}

sub snapshot_rev {
    my ($revision, @allow) = @_;
    return {revision => $revision, environments => {production => {
        customer_portal => { rollout => 0, allow => \@allow },
        other => { rollout => 0 } }}};
}

sub crash {
    my ($ng, $g, @children) = @_;
    my @workers = $ng->workers;
    # the master first: it would start a worker in place of a killed one
    kill 'KILL', $ng->pid;
    waitpid($ng->pid, 0);
    kill 'KILL', @workers;
    PortalGate::Gdb::kill_all($g) if $g;
    waitpid($_, 0) for @children;
    delete $ng->{pid};
    # the workers are not our children: wait until they are gone, and
    # their listening sockets with them
    my $deadline = time + 10 * $SLOW;
    while (grep({ kill 0, $_ } @workers) && time < $deadline) { sleep 0.05 }
}

# A kill override's write is held; a patch on the other worker moves the
# zone on and starts its own write (held too); the override's write goes
# on and is answered. Then the edge crashes before the patch's write ends.
for my $point (qw(ngx_http_portal_gate_state_save
                  ngx_http_portal_gate_state_prepare)) {
    subtest "a kill answered 200 survives a crash though a patch's write "
          . "raced it (held at $point)" => sub {
        my $ng = PortalGate::Test->new(server => $portal, workers => 2);
        $ng->start;
        is($ng->put_snapshot(snapshot_rev(10, '12'))->{status}, 200, 'revision 10');

        my $g = PortalGate::Gdb::hold($ng, $point, $ng->workers);
        my $ovr = PortalGate::Gdb::api_bg($ng, 'override.answer', 'PUT',
                         'overrides?env=production&flag=customer_portal',
                         '{"by": "oncall", "reason": "INC-9"}');
        my ($wa) = PortalGate::Gdb::wait_held($g, 1);
        ok($wa, 'the worker taking the kill is held at its write')
            or return crash($ng, $g, $ovr);

        my $patch = PortalGate::Gdb::api_bg($ng, 'patch.answer',
            'PATCH', 'snapshot',
            $JSON->encode({base_revision => 10, revision => 11,
                           environments => {production => {
                               other => {rollout => 100}}}}));
        my @held = PortalGate::Gdb::wait_held($g, 2);
        is(scalar @held, 2, 'the patch is applied and its write held on the other worker')
            or return crash($ng, $g, $ovr, $patch);

        PortalGate::Gdb::release($g, $wa);
        waitpid($ovr, 0);
        my $answer = PortalGate::Gdb::answer($ng, 'override.answer');
        like($answer, qr/^200 /, 'the kill is answered 200');
        like($answer, qr/"persisted"\s*:\s*true/, 'saying it is persisted');

        crash($ng, $g, $patch);
        $ng->start;
        is(scalar @{ $ng->status->{overrides} }, 1,
           'after the crash the acknowledged kill is still in force');
        is($ng->get('/portal/', company => '12')->{status}, 404,
           'company 12 is off');
        $ng->stop;
    };
}

# An old worker's write of a kill, held; a reload resizes the zone and
# retires the old one before the write renames. The old worker must not
# answer 200: nothing on disk holds the kill.
subtest 'a kill whose write a resizing reload overtakes is 503, not 200' => sub {
    my $ng = PortalGate::Test->new(server => $portal, workers => 1);
    $ng->start;
    is($ng->put_snapshot(snapshot_rev(10, '12'))->{status}, 200, 'revision 10');

    my ($old) = $ng->workers;
    my $g = PortalGate::Gdb::hold($ng, 'ngx_http_portal_gate_state_save',
                                  $old);
    my $ovr = PortalGate::Gdb::api_bg($ng, 'override.answer', 'PUT',
                     'overrides?env=production&flag=customer_portal',
                     '{"by": "oncall", "reason": "INC-9"}');
    ok(PortalGate::Gdb::wait_held($g, 1),
       'the worker is held at the write of the kill')
        or return crash($ng, $g, $ovr);

    $ng->reload(zone => '8m', old_busy => 1);
    PortalGate::Gdb::release($g, $old);
    waitpid($ovr, 0);
    PortalGate::Gdb::finish_all($g);
    my $answer = PortalGate::Gdb::answer($ng, 'override.answer');
    like($answer, qr/^503 /, 'the old worker answers 503')
        or diag($answer);
    like($answer, qr/send the request again/, 'saying to send it again');
    like($answer, qr/"revision"\s*:\s*10/, 'with the revision');

    my $deadline = time + 10 * $SLOW;
    while (kill(0, $old) && time < $deadline) { sleep 0.05 }
    my $res = $ng->api('PUT', 'overrides?env=production&flag=customer_portal',
                       '{"by": "oncall", "reason": "INC-9"}');
    is($res->{status}, 200, 'sent again, the kill is answered 200');

    crash($ng);
    $ng->start;
    is(scalar @{ $ng->status->{overrides} }, 1,
       'and a crash and a restart keep it');
    $ng->stop;
};

# The harness's guard (PortalGate::Gdb): a test run cut short by a signal
# runs no END block and leaves its scratch folder, and the shell loop
# with which gdb waits for a release used to spin on for ever. A child
# test holds a worker, as above, and is interrupted.
subtest 'a run cut short leaves no gdb and no wait loop behind' => sub {
    my $child = <<'CHILD';
use strict;
use warnings;
use PortalGate::Test;
use PortalGate::Gdb;
$| = 1;
my $ng = PortalGate::Test->new(workers => 1);
$ng->start;
my ($w) = $ng->workers;
print "$w ", $ng->pid, ' ', $ng->dir, "\n";
my $g = PortalGate::Gdb::hold($ng, 'ngx_http_portal_gate_state_save', $w);
# a PUT whose state file write the worker is held at
if (fork == 0) {
    $ng->put_snapshot({revision => 1, environments => {}}, timeout => 60);
    POSIX::_exit(0);
}
print PortalGate::Gdb::wait_held($g, 1) ? "held\n" : "not held\n";
sleep 600;
CHILD
    my $pid = open(my $out, '-|', $^X, "-I$FindBin::Bin/lib", '-e', $child)
        // die "cannot start the child test: $!";
    my ($worker, $master, $dir) = split ' ', scalar(<$out>) // '';
    my $held = <$out> // '';
    is($held, "held\n", 'the child test holds its worker with gdb');
    ok(waiting($dir), 'its gdb waits for a release in a shell loop');
    ok(tracer($worker), 'attached to the worker');

    kill 'INT', $pid;           # ^C: no END block runs
    close $out;

    my $deadline = time + 10 * $SLOW;
    sleep 0.05 while (waiting($dir) || tracer($worker)) && time < $deadline;
    is_deeply([waiting($dir)], [], 'once it is gone, no wait loop runs on');
    is(tracer($worker), 0, 'and no gdb holds its worker')
        or diag(PortalGate::Gdb::log_of({dir => $dir}, $worker));
    ok(-d $dir, 'though its scratch folder is still there');

    # what the child's harness would have stopped
    kill 'KILL', $master, $worker;
    $deadline = time + 10 * $SLOW;
    sleep 0.05 while kill(0, $master, $worker) && time < $deadline;
    File::Path::remove_tree($dir) if $dir =~ m{/portal-gate-\w+$};
};

# pids of the shells that wait for $dir/go.PID (gdb's wait loops)
sub waiting {
    my ($dir) = @_;
    return () unless $dir;
    my @pids;
    for my $cmd (glob '/proc/[0-9]*/cmdline') {
        my $line = slurp($cmd);
        push @pids, $cmd =~ m{/proc/(\d+)/}
            if $line =~ /^\S*sh\0-c\0while / && index($line, "$dir/go.") >= 0;
    }
    return @pids;
}

# the pid of the process tracing $pid, 0 for none
sub tracer {
    my ($pid) = @_;
    return slurp("/proc/$pid/status") =~ /^TracerPid:\s*(\d+)/m ? $1 : 0;
}

done_testing;
