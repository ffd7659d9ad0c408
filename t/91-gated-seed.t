# The seed (review of portal-gated): a daemon that has just started and
# needs the last good versions of flags it cannot push as the store has
# them asks the edges for their snapshots. An edge that restarted empty
# must not be taken for what the edges hold when another holds more, and
# a snapshot that this daemon's core refuses (an edge serving a flag with
# a key it does not know) must not stop every push, a kill included.
# Real redis-server, real nginx edges, a loopback proxy that answers late
# and a fake edge.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);
use PortalGate::Gated qw(clean_exit wait_until two_edges);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my @CHILDREN;
END { for (@CHILDREN) { kill 'KILL', $_; waitpid $_, 0 } }

sub listener {
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 64, ReuseAddr => 1)
        or die "listen: $!";
    return $l;
}

# A TCP proxy on loopback to $port that waits $delay s before it forwards
# each connection: an edge that answers later than the others. Its port.
sub late_proxy {
    my ($port, $delay) = @_;
    my $l = listener();
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{CHLD} = 'IGNORE';
        while (1) {
            my $c = $l->accept or next;
            my $k = fork;
            if (defined $k && $k == 0) {
                sleep $delay;
                my $u = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                              PeerPort => $port)
                    or POSIX::_exit(0);
                my $sel = IO::Select->new($c, $u);
                LOOP: while (1) {
                    for my $s ($sel->can_read(30)) {
                        my $n = sysread $s, my $buf, 65536;
                        last LOOP unless $n;
                        syswrite($s == $c ? $u : $c, $buf);
                    }
                }
                POSIX::_exit(0);
            }
            close $c;
        }
    }
    push @CHILDREN, $pid;
    return $l->sockport;
}

# An HTTP endpoint that answers GET snapshot with $snapshot, GET status
# with revision 1, and a PUT with 200 and the PUT's revision: an edge
# whose snapshot this core may refuse. Its port.
sub fake_edge {
    my ($snapshot) = @_;
    my $l = listener();
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        while (my $c = $l->accept) {
            my $req = '';
            while ($req !~ /\r\n\r\n/) {
                sysread($c, $req, 65536, length $req) or last;
            }
            my ($len) = $req =~ /Content-Length:\s*(\d+)/i;
            my (undef, $body) = split /\r\n\r\n/, $req, 2;
            $body //= '';
            while (length $body < ($len // 0)) {
                sysread($c, $body, 65536, length $body) or last;
            }
            my $out = $req =~ /^GET \S*snapshot/ ? $snapshot
                    : $req =~ /^GET / ? '{"revision":1,"overrides":[]}'
                    : '{"revision":' . (($body =~ /"revision":(\d+)/)[0] // 0)
                      . '}';
            print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                . 'Content-Length: ' . length($out)
                . "\r\nConnection: close\r\n\r\n$out";
            close $c;
        }
        POSIX::_exit(0);
    }
    push @CHILDREN, $pid;
    return $l->sockport;
}

my $P = 'portal-gate:';

sub answer {
    my ($ng, $flag) = @_;
    my $a = $ng->evaluate(flag => $flag // 'customer_portal',
                          company => '1001');
    return ($a->{decision} // '?') . '/' . ($a->{reason} // '?');
}

subtest 'an edge that restarted empty is not taken for what the edges hold' => sub {
    my $rs = PortalGate::Redis->new;
    my $e = two_edges();
    my ($A, $B) = @$e{qw(tcp unix)};        # B: no state file
    my $late = late_proxy($A->port, 0.3);   # A answers after B
    my $gd = PortalGate::Gated->new(redis => $rs->url,
        edges => ["http://127.0.0.1:$late/portal-gate/", $e->{unix_url}]);
    my $ctl = sub { $rs->ctl(@_) };

    exits($ctl->('init'), 0, 'init');
    exits($ctl->('create', 'customer_portal'), 0, 'create');
    exits($ctl->('allow', 'customer_portal', '1001'), 0, 'allow 1001');
    $gd->start;
    ok(wait_until(sub { !grep { answer($_) ne 'on/allowed' } $A, $B }),
       'on at both edges');

    # a typo by hand: the edges keep the last good version
    $rs->cli('HSET', "${P}flags:production", 'customer_portal',
             '{"allow":["1001"],"rolout":5}');
    my $rev = $rs->cli('INCR', "${P}revision");
    $rs->cli('PUBLISH', "${P}changes", $rev);
    ok(wait_until(sub { $A->status->{revision} == $rev }),
       "A at revision $rev");
    is(answer($A), 'on/allowed', 'A keeps the good version');

    # the daemon restarts while B restarted empty
    clean_exit($gd->stop, $gd, 'stopped');
    $B->stop;
    $B->start;
    is($B->status->{revision}, 0, 'B restarted empty');
    my $mark = $gd->mark;
    $gd->start;
    ok(wait_until(sub { answer($B) eq 'on/allowed' }, 10),
       'B gets the portal back: the last good version came from A')
        or diag($gd->log($mark));
    is(answer($A), 'on/allowed', 'A still has the portal on for 1001');
    like($gd->log($mark), qr/edge http:\S+ holds revision $rev: its flags are the last good versions/,
         "the log names the edge at revision $rev as the seed")
        or diag($gd->log($mark));

    exits($ctl->('-e', 'staging', 'create', 'other'), 0,
          'another write (staging)');
    my $now = $rs->cli('GET', "${P}revision");
    ok(wait_until(sub { $B->status->{revision} == $now }), 'it reaches B');
    is(answer($_), 'on/allowed', 'edge ' . $_->port . ': still on')
        for $A, $B;
    clean_exit($gd->stop, $gd, 'SIGTERM at the end');
};

subtest 'a seed this core refuses stops nothing: the kill goes out' => sub {
    my $rs = PortalGate::Redis->new;
    my $e = two_edges();
    my $A = $e->{tcp};
    my $fake = fake_edge('{"revision":1,"environments":{"production":'
                         . '{"billing":{"enabled":true,"newkey":1}}}}');
    my $late = late_proxy($A->port, 0.3);
    my $gd = PortalGate::Gated->new(redis => $rs->url,
        edges => ["http://127.0.0.1:$fake/portal-gate/",
                  "http://127.0.0.1:$late/portal-gate/"]);
    my $ctl = sub { $rs->ctl(@_) };

    exits($ctl->('init'), 0, 'init');
    exits($ctl->('create', 'customer_portal'), 0, 'create');
    exits($ctl->('allow', 'customer_portal', '1001'), 0, 'allow 1001');
    $rs->cli('HSET', "${P}flags:production", 'billing', '{"rolout":1}');
    my $mark = $gd->mark;
    $gd->start;
    ok(wait_until(sub { answer($A) eq 'on/allowed' }, 10),
       'the edge gets the store') or diag($gd->log($mark));
    exits($ctl->('kill', 'customer_portal'), 0, 'kill');
    ok(wait_until(sub { answer($A) eq 'off/killed' }, 5),
       'the kill reaches the edge') or diag($gd->log($mark));
    is(answer($A, 'billing'), 'off/unknown',
       'the flag whose only good version is refused is left out');
    unlike($gd->log($mark), qr/nothing is pushed/,
           'the log never says that nothing is pushed');
    clean_exit($gd->stop, $gd, 'SIGTERM at the end');
};

done_testing;
