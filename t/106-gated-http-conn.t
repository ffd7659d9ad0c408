# portal-gated's HTTP endpoint (`listen`) and its connections, over raw
# sockets, as the clients that use it behave: clients that connect and
# send nothing, or a byte a second, never lock on-call out of /healthz and
# the page (the endpoint closes the connections that wait longest when
# its slots run short, and any that has not had its answer within 10 s);
# a Prometheus-like scraper gets consecutive answers on one keep-alive
# connection; `Connection: close` and HTTP/1.0 close after the answer,
# HTTP/1.0 with `Connection: keep-alive` does not; a HEAD is its status
# line and headers, no body. Real redis-server, a real nginx edge, the
# ASan controller.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(sleep time);
use PortalGate::Gated qw(clean_exit wait_until two_edges);
use PortalGate::Redis qw(exits);
use PortalGate::Scrape qw(free_port http_get);
use PortalGate::Test qw(require_module);

require_module();

my $SLOW = $PortalGate::Gated::SLOW;
$SIG{PIPE} = 'IGNORE';     # a write to a connection the daemon closed

my $rs = PortalGate::Redis->new;
exits($rs->ctl('init'), 0, 'init');
exits($rs->ctl('create', 'customer_portal'), 0, 'create');

my $e = two_edges();
my $port = free_port();
my $gd = PortalGate::Gated->new(redis => $rs->url, edges => [$e->{tcp_url}],
                                extra => "listen 127.0.0.1:$port;\n");
$gd->start;
ok(wait_until(sub { http_get("http://127.0.0.1:$port/healthz")->{status}
                    == 200 }, 10), 'the endpoint answers')
    or diag($gd->log);

sub connect_raw {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 5 * $SLOW)
        or die "connect: $!";
    return $s;
}

# One answer from $s: {status, head (the status line and headers), headers
# (lowercased names), body}; undef when none came within the limit. Reads
# exactly the body's Content-Length, nothing past it.
sub read_answer {
    my ($s, $method) = @_;
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + 10 * $SLOW;
    while ($buf !~ /\r\n\r\n/) {
        return undef if time > $deadline || !$sel->can_read(0.5);
        my $n = sysread($s, $buf, 1, length $buf);
        return undef unless $n;
    }
    my ($head) = $buf =~ /\A(.*?)\r\n\r\n/s;
    my ($status) = $head =~ /\AHTTP\/1\.[01] (\d{3}) /;
    my %h;
    for my $line (split /\r\n/, $head) {
        $h{lc $1} = $2 if $line =~ /^([^:]+):\s*(.*)$/;
    }
    my $want = ($method // 'GET') eq 'HEAD' ? 0 : $h{'content-length'} // 0;
    my $body = '';
    while (length $body < $want) {
        return undef if time > $deadline || !$sel->can_read(0.5);
        my $n = sysread($s, $body, $want - length $body, length $body);
        return undef unless $n;
    }
    return { status => $status, head => $head, headers => \%h,
             body => $body };
}

# Whether the peer closed $s within the limit: EOF (or a reset) read.
sub closed_by_peer {
    my ($s, $limit) = @_;
    my $sel = IO::Select->new($s);
    my $deadline = time + $limit * $SLOW;
    while ((my $left = $deadline - time) > 0) {
        next unless $sel->can_read($left < 0.2 ? $left : 0.2);
        my $n = sysread($s, my $junk, 4096);
        return 1 if !defined $n || $n == 0;
    }
    return 0;
}

sub request {
    my ($path, %o) = @_;
    my $version = $o{version} // '1.1';
    my $text = ($o{method} // 'GET') . " $path HTTP/$version\r\n"
             . "Host: 127.0.0.1:$port\r\n";
    $text .= "Connection: $o{connection}\r\n" if $o{connection};
    $text .= "User-Agent: Prometheus/2.42.0\r\n"
           . "Accept: text/plain;version=0.0.4\r\n"
           . "X-Prometheus-Scrape-Timeout-Seconds: 10\r\n" if $o{prometheus};
    return "$text\r\n";
}

subtest 'a Prometheus-like scraper: consecutive answers on one connection' => sub {
    my $s = connect_raw();
    for my $i (1 .. 3) {
        syswrite $s, request('/metrics', prometheus => 1);
        my $r = read_answer($s);
        is($r && $r->{status}, 200, "scrape $i: 200 on the same connection");
        like($r ? $r->{body} : '', qr/^portal_gated_redis_up 1$/m,
             "scrape $i: the metrics");
        isnt(lc($r ? $r->{headers}{connection} // '' : ''), 'close',
             "scrape $i: the connection is kept");
    }
    syswrite $s, request('/healthz') . request('/status.json');
    my ($a, $b) = (read_answer($s), read_answer($s));
    ok($a && $a->{status} == 200 && $a->{body} =~ /"status"/
       && $b && $b->{status} == 200 && $b->{body} =~ /"environments"/,
       'two requests sent at once (pipelined): two answers, in order');
};

subtest 'Connection: close, and HTTP/1.0, close after the answer' => sub {
    for my $case ([connection => 'close', version => '1.1'],
                  [version => '1.0']) {
        my %o = @$case;
        my $name = join ' ', map { "$_=$o{$_}" } sort keys %o;
        my $s = connect_raw();
        syswrite $s, request('/healthz', %o);
        my $r = read_answer($s);
        is($r && $r->{status}, 200, "$name: 200");
        is(lc($r ? $r->{headers}{connection} // '' : ''), 'close',
           "$name: the answer says Connection: close");
        ok(closed_by_peer($s, 5), "$name: and the daemon closes it");
    }
    my $s = connect_raw();
    syswrite $s, request('/healthz', version => '1.0',
                         connection => 'keep-alive');
    my $r = read_answer($s);
    is(lc($r ? $r->{headers}{connection} // '' : ''), 'keep-alive',
       'HTTP/1.0 with Connection: keep-alive: kept, and said so');
    syswrite $s, request('/healthz', version => '1.0',
                         connection => 'keep-alive');
    $r = read_answer($s);
    is($r && $r->{status}, 200, '... a second answer on it');
};

subtest 'HEAD: the status line and the headers, no body' => sub {
    for my $path ('/metrics', '/healthz', '/status.json', '/') {
        my $s = connect_raw();
        syswrite $s, request($path, method => 'HEAD', connection => 'close');
        # everything the daemon sends, up to its close
        my ($all, $sel) = ('', IO::Select->new($s));
        my $deadline = time + 10 * $SLOW;
        while (time < $deadline && $sel->can_read(0.5)) {
            last unless sysread($s, $all, 65536, length $all);
        }
        my ($head, $rest) = $all =~ /\A(.*?\r\n\r\n)(.*)\z/s;
        like($head // '', qr/\AHTTP\/1\.1 200 OK\r\n/, "HEAD $path: 200");
        like($head // '', qr/^Content-Type: \S+/mi, "HEAD $path: its type");
        my ($length) = ($head // '') =~ /^Content-Length: (\d+)\r$/mi;
        ok(($length // 0) > 0, "HEAD $path: the length of the GET's body");
        is($rest, '', "HEAD $path: nothing after the headers");
        next if $path eq '/metrics' || $path eq '/status.json';   # they move
        is($length, length(http_get("http://127.0.0.1:$port$path")
                           ->{content}), "HEAD $path: the GET's body is that "
           . 'long');
    }
};

subtest 'clients that connect and send nothing cannot lock out /healthz' => sub {
    # more than the endpoint has slots (64): every one of them idle
    my @idle = map { connect_raw() } 1 .. 80;
    # and a few that send a byte a second, never finishing their head
    my @slow = map { connect_raw() } 1 .. 5;
    syswrite $_, 'G' for @slow;
    sleep 0.3;
    my $t0 = time;
    my $r = http_get("http://127.0.0.1:$port/healthz");
    is($r->{status}, 200, '/healthz answers with 85 idle and slow clients '
       . 'connected');
    $r = http_get("http://127.0.0.1:$port/");
    is($r->{status}, 200, 'so does the page');
    my $gone = grep { closed_by_peer($_, 0.01) } @idle;
    cmp_ok($gone, '>=', 16, 'the idle connections that waited longest were '
           . 'closed to make room') or diag("$gone closed");
    close $_ for @idle, @slow;

    # with the slots free again: a client that trickles its head, a byte a
    # second, never finishing it, is closed all the same
    my $s = connect_raw();
    my $deadline = time + 20 * $SLOW;
    my $closed = 0;
    while (!$closed && time < $deadline) {
        syswrite($s, 'E') or $closed = 1;
        $closed ||= closed_by_peer($s, 1);
    }
    ok($closed, 'a head sent a byte a second is closed (10 s to send a '
       . 'whole request)');
    ok($gd->running, 'the daemon runs on');
};

subtest 'clients whose answers are under way cannot lock a newcomer out' => sub {
    # 56 connections (fewer than the 64 slots), each asking for more
    # answers than the socket buffers hold and reading none: each is being
    # answered. A new connection must not be the one closed to make room
    # before its request is read (review of 9caaf2b)
    my @busy = map {
        my $s = connect_raw();
        syswrite $s, request('/') x 3000;
        $s } 1 .. 56;
    ok(!grep({ !IO::Select->new($_)->can_read(5 * $SLOW) } @busy),
       '56 clients are being answered');
    for my $i (1 .. 3) {
        is(http_get("http://127.0.0.1:$port/healthz")->{status}, 200,
           "a new client gets /healthz ($i)");
    }
    my $gone = grep { closed_by_peer($_, 0.01) } @busy;
    cmp_ok($gone, '>=', 1, 'the connections that held their slots longest '
           . 'were closed for it') or diag("$gone closed");
    close $_ for @busy;
};

subtest 'a connection is closed after its 100th answer' => sub {
    # a client pipelining without end would otherwise restart its time at
    # every answer and keep its slot for ever
    my $s = connect_raw();
    syswrite $s, request('/healthz') x 150;
    my $n = 0;
    while (my $r = read_answer($s)) {
        last unless $r->{status} == 200;
        $n++;
    }
    is($n, 100, '100 answers, then the connection is closed');
    ok(closed_by_peer($s, 5), 'closed by the daemon');
};

subtest 'an idle keep-alive connection is closed in the end' => sub {
    my $s = connect_raw();
    syswrite $s, request('/healthz');
    my $r = read_answer($s);
    is($r && $r->{status}, 200, 'an answer');
    ok(closed_by_peer($s, 20), '... then, idle, the connection is closed');
};

clean_exit($gd->stop, $gd, 'SIGTERM');

done_testing;
