# No 200 before the change is durable: a change's answer waits until the
# state file (or its journal) holds it, whatever other change's write runs
# beside it, and a change an old worker finishes after a resizing reload is
# a 503, not a 200 whose state file never comes. Each test holds a worker
# with gdb at a chosen point of its write, lets another change race it,
# then crashes the whole edge and restarts it: what was acknowledged must
# be there.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);
use PortalGate::Test qw(require_module);

require_module();

plan skip_all => 'needs gdb and root' unless -x '/usr/bin/gdb' && $> == 0;
# gdb cannot stop a guest function of valgrind's (the valgrind pass)
plan skip_all => 'nginx runs under a wrapper' if $ENV{PORTAL_GATE_NGINX};

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

# gdb on each worker: stop at the first call of $func, wait for the file
# go.PID, then let the worker go on. Returns {pid => gdb pid}.
sub hold_workers {
    my ($ng, $func, @workers) = @_;
    my $d = $ng->dir;
    my %gdb;
    for my $w (@workers) {
        my $pid = fork // die;
        if ($pid == 0) {
            open STDOUT, '>', "$d/gdb.$w.log";
            open STDERR, '>&', \*STDOUT;
            { exec '/usr/bin/gdb', '-p', $w, '-batch', '-nx',
                 '-ex', 'handle SIGQUIT SIGHUP SIGTERM SIGCHLD SIGPIPE SIGIO '
                        . 'SIGALRM SIGUSR1 SIGWINCH nostop noprint pass',
                 '-ex', "break $func", '-ex', "shell touch $d/armed.$w",
                 '-ex', 'continue', '-ex', "shell touch $d/held.$w",
                 # the loop ends with the scratch folder too: crash()
                 # kills gdb with SIGKILL, and its shell would spin on
                 '-ex', "shell while [ ! -e $d/go.$w ] && [ -d $d ]; "
                        . "do sleep 0.05; done",
                 '-ex', 'detach' }
            POSIX::_exit(127);
        }
        $gdb{$w} = $pid;
    }
    my $deadline = time + 30 * $SLOW;
    until ((grep { -e "$d/armed.$_" } @workers) == @workers
           || time > $deadline) { sleep 0.05 }
    return \%gdb;
}

sub held {
    my ($ng, $gdb) = @_;
    return grep { -e $ng->dir . "/held.$_" } sort keys %$gdb;
}

sub wait_held {
    my ($ng, $gdb, $n) = @_;
    my $deadline = time + 20 * $SLOW;
    until (held($ng, $gdb) >= $n || time > $deadline) { sleep 0.05 }
    return held($ng, $gdb);
}

sub release {
    my ($ng, $w) = @_;
    open my $go, '>', $ng->dir . "/go.$w" or die;
    close $go;
}

# an API call in a child: its answer lands in the file $name
sub api_bg {
    my ($ng, $name, @call) = @_;
    my $pid = fork // die;
    if ($pid == 0) {
        my $res = $ng->api(@call, timeout => 60);
        open my $o, '>', $ng->dir . "/$name" or POSIX::_exit(1);
        print $o "$res->{status} $res->{content}";
        close $o;
        POSIX::_exit(0);
    }
    return $pid;
}

sub crash {
    my ($ng, $gdb, @children) = @_;
    my @workers = $ng->workers;
    # the master first: it would start a worker in place of a killed one
    kill 'KILL', $ng->pid;
    waitpid($ng->pid, 0);
    kill 'KILL', @workers;
    kill 'KILL', values %$gdb;
    waitpid($_, 0) for values %$gdb, @children;
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

        my $gdb = hold_workers($ng, $point, $ng->workers);
        my $ovr = api_bg($ng, 'override.answer', 'PUT',
                         'overrides?env=production&flag=customer_portal',
                         '{"by": "oncall", "reason": "INC-9"}');
        my ($wa) = wait_held($ng, $gdb, 1);
        ok($wa, 'the worker taking the kill is held at its write')
            or return crash($ng, $gdb, $ovr);

        my $patch = api_bg($ng, 'patch.answer', 'PATCH', 'snapshot',
            $JSON->encode({base_revision => 10, revision => 11,
                           environments => {production => {
                               other => {rollout => 100}}}}));
        my @held = wait_held($ng, $gdb, 2);
        is(scalar @held, 2, 'the patch is applied and its write held on the other worker')
            or return crash($ng, $gdb, $ovr, $patch);

        release($ng, $wa);
        waitpid($ovr, 0);
        my $answer = slurp($ng->dir . '/override.answer');
        like($answer, qr/^200 /, 'the kill is answered 200');
        like($answer, qr/"persisted"\s*:\s*true/, 'saying it is persisted');

        crash($ng, $gdb, $patch);
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
    my $gdb = hold_workers($ng, 'ngx_http_portal_gate_state_save', $old);
    my $ovr = api_bg($ng, 'override.answer', 'PUT',
                     'overrides?env=production&flag=customer_portal',
                     '{"by": "oncall", "reason": "INC-9"}');
    ok(wait_held($ng, $gdb, 1), 'the worker is held at the write of the kill')
        or return crash($ng, $gdb, $ovr);

    $ng->reload(zone => '8m', old_busy => 1);
    release($ng, $old);
    waitpid($ovr, 0);
    waitpid($_, 0) for values %$gdb;
    my $answer = slurp($ng->dir . '/override.answer');
    like($answer, qr/^503 /, 'the old worker answers 503')
        or diag($answer);
    like($answer, qr/send the request again/, 'saying to send it again');
    like($answer, qr/"revision"\s*:\s*10/, 'with the revision');

    my $deadline = time + 10 * $SLOW;
    while (kill(0, $old) && time < $deadline) { sleep 0.05 }
    my $res = $ng->api('PUT', 'overrides?env=production&flag=customer_portal',
                       '{"by": "oncall", "reason": "INC-9"}');
    is($res->{status}, 200, 'sent again, the kill is answered 200');

    crash($ng, {});
    $ng->start;
    is(scalar @{ $ng->status->{overrides} }, 1,
       'and a crash and a restart keep it');
    $ng->stop;
};

done_testing;
