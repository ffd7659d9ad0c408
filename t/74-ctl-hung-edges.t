# portal-gatectl status and --wait with edges that hang: three listeners
# that accept a connection and never answer, beside a real nginx edge.
# Every edge is asked at once, so the hung ones cost one timeout, not one
# each, and never hold back what the healthy edge says.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use PortalGate::Gated qw(wait_until);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

# Three edges that accept TCP and never answer, served by one child that
# holds every connection open until the test ends.
my @listeners = map {
    IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                          Proto => 'tcp', Listen => 64, ReuseAddr => 1)
        or die "listen: $!"
} 1 .. 3;
my @hung = map { 'http://127.0.0.1:' . $_->sockport . '/portal-gate/' }
           @listeners;

# The holder logs each connection it accepts and each the client closes
# ("accept PORT", "close PORT"), in the order they came: asked at once,
# every hung edge is accepted before the first is given up; one after
# another, each is given up before the next is asked.
my $events = tempdir(CLEANUP => 1) . '/events';
my $parent = $$;
my $holder = fork // die "fork: $!";
if ($holder == 0) {
    my $select = IO::Select->new(@listeners);
    my %listener = map { ($_ => 1) } @listeners;
    my %port = map { ($_ => $_->sockport) } @listeners;
    my $deadline = time + 300;
    my $say = sub {
        open my $fh, '>>', $events or return;
        print {$fh} "@_\n";
        close $fh;
    };
    while (time < $deadline && getppid() == $parent) {
        for my $s ($select->can_read(0.2)) {
            if ($listener{$s}) {
                my $c = $s->accept or next;
                $port{$c} = $port{$s};
                $select->add($c);
                $say->('accept', $port{$c});
                next;
            }
            next if sysread($s, my $buf, 65536);    # never answered
            $select->remove($s);
            $say->('close', $port{$s});
            close $s;
        }
    }
    POSIX::_exit(0);
}
close $_ for @listeners;

# the events since $n of them: [accept|close, port]
sub events_since {
    my ($n) = @_;
    open my $fh, '<', $events or return ();
    my @e = map { [split] } <$fh>;
    return @e[$n .. $#e];
}

# Were the hung edges asked at once: each accepted before any was given
# up? Waits until each was given up (the client closed); false otherwise.
sub asked_at_once {
    my ($n, $name) = @_;
    my $all = wait_until(sub {
        (grep { $_->[0] eq 'close' } events_since($n)) >= @hung
    });
    my @e = events_since($n);
    my ($first_close) = grep { $e[$_][0] eq 'close' } 0 .. $#e;
    my %before = defined $first_close
                 ? map { ($_->[1] => 1) } grep { $_->[0] eq 'accept' }
                                          @e[0 .. $first_close - 1]
                 : ();
    ok($all && keys %before == @hung, $name)
        or diag(join ', ', map { "@$_" } @e);
}

# how many events there are, once every connection accepted was closed:
# the closes of an earlier portal-gatectl may come after it exited
sub event_count {
    my @e;
    wait_until(sub {
        @e = events_since(0);
        my %n;
        $n{$_->[0]}++ for @e;
        ($n{accept} // 0) == ($n{close} // 0)
    });
    return scalar @e;
}
END { if ($holder && $$ == $parent) { kill 'KILL', $holder; waitpid $holder, 0 } }

my $rs = PortalGate::Redis->new(db => 5);
my $ng = PortalGate::Test->new;
$ng->start;
my $edge = 'http://127.0.0.1:' . $ng->port . '/portal-gate/';

sub ctl { $rs->ctl(@_) }

sub store_revision { $rs->cli('GET', 'portal-gate:revision') + 0 }

# what portal-gated will do: the store's flags, as a snapshot, to the edge
sub push_store {
    my $flags = decode_json(ctl('list', '--json')->{out});
    return $ng->put_snapshot({revision => store_revision(),
                              environments => {production => $flags}})
        ->{status};
}

exits(ctl('init'), 0, 'init');
exits(ctl('create', 'portal'), 0, 'create');
is(push_store(), 200, 'the edge has the store');

my @edges = map { ('--edge', $_) } $edge, @hung;

subtest 'status with three hung edges answers within one timeout' => sub {
    my $n = event_count();
    my $r = ctl('status', @edges);
    exits($r, 1, 'status');
    like($r->{out}, qr/\Q$edge\E\s+revision \d+\s+in step/,
         'the healthy edge is in step');
    for my $h (@hung) {
        like($r->{out}, qr/\Q$h\E\s+unreachable: no answer within 2000 ms/,
             "$h: no answer in time");
    }
    # one per-edge timeout is 2 s; one after another took 6 s
    asked_at_once($n, 'the hung edges were asked at once: each accepted '
                  . 'before any was given up');

    my $j = decode_json(ctl('status', '--json', @edges)->{out});
    is_deeply([map { defined $_->{revision} ? 1 : 0 } @{ $j->{edges} }],
              [1, 0, 0, 0], '--json: a revision only for the healthy edge');
};

subtest 'kill --wait with three hung edges names them, and only them' => sub {
    my $wait = 2 * $PortalGate::Test::SLOW;
    my $target = store_revision() + 1;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        # a stand-in for portal-gated, a little late: --wait must ask the
        # healthy edge again while the hung ones are still in flight
        my $deadline = time + 10;
        sleep 0.01 while store_revision() < $target && time < $deadline;
        sleep 0.3;
        push_store();
        POSIX::_exit(0);
    }
    my $n = event_count();
    my $r = ctl('--reason', 'INC-2', 'kill', 'portal', "--wait=$wait",
                @edges);
    waitpid $pid, 0;

    exits($r, 1, 'kill --wait');
    like($r->{out}, qr/KILLED portal/, 'the kill was made');
    like($r->{err},
         qr/revision $target is not on every edge after $wait s; lagging: \Q$hung[0]\E \(no answer\), \Q$hung[1]\E \(no answer\), \Q$hung[2]\E \(no answer\)$/m,
         'names each hung edge, and not the healthy one');
    is($ng->get('/portal/', company => '1')->{status}, 404,
       'the healthy edge has the kill');
    asked_at_once($n, 'the hung edges were asked at once (one after '
                  . 'another took 3 times the limit)');
};

subtest 'kill --wait with hung edges and one that refuses' => sub {
    my $r = ctl('on', 'portal', '--wait=0.5', '--edge', $hung[0],
                '--edge', 'http://127.0.0.1:1/portal-gate/');
    exits($r, 1, 'on --wait');
    like($r->{err}, qr/lagging: \Q$hung[0]\E \(no answer\), http:\/\/127\.0\.0\.1:1\/portal-gate\/ \(unreachable: .*connect/i,
         'says which hangs and which refuses');
};

$ng->no_bad_log_lines;

done_testing;
