package PortalGate::Scrape;

# Asking portal-gated's own HTTP endpoint (`listen`) in the tests:
#
#   my $port = free_port();                     # PortalGate::Test's
#   my $r = http_get("http://127.0.0.1:$port/metrics");  # {status, headers,
#                                                        #  content}
#   my $r = http_raw($port, "GET / HTTP/1.1\r\nHost: evil.example\r\n"
#                    . "Connection: close\r\n\r\n");    # as written
#   my $m = metrics($r->{content});   # 'name{label="v",...}' => value
#   my ($ok, $out) = promtool($r->{content});   # promtool check metrics
#   my $j = json_get("http://127.0.0.1:$port/healthz");  # [status, doc]
#
# Every request is a new connection with a 5 s limit (HTTP::Tiny; 10 s
# for http_raw), so a daemon that does not answer fails the test instead
# of hanging it.

use strict;
use warnings;

use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use IPC::Open3 qw(open3);
use JSON::PP;
use Symbol qw(gensym);
use Time::HiRes qw(time);
use PortalGate::Test qw(free_port);

use Exporter qw(import);
our @EXPORT_OK = qw(free_port http_get http_raw json_get metrics promtool);

# {status, headers, content}; status 599 when no answer came.
sub http_get {
    my ($url, $method, $body) = @_;
    my $http = HTTP::Tiny->new(timeout => 5, keep_alive => 0);
    return $http->request($method // 'GET', $url,
                          defined $body ? { content => $body } : {});
}

# $request (the whole text: request line, headers, blank line) sent as is
# to 127.0.0.1:$port on a connection of its own, and everything read back
# until the daemon closes it (so send Connection: close), within 10 s:
# {status (undef when none came), head (its text), headers (names
# lowercased), content}.
sub http_raw {
    my ($port, $request) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 5)
        or return { status => undef, head => '', headers => {},
                    content => '' };
    syswrite $s, $request;
    my ($all, $sel) = ('', IO::Select->new($s));
    my $deadline = time + 10;
    while (time < $deadline && $sel->can_read(0.5)) {
        last unless sysread($s, $all, 65536, length $all);
    }
    my ($head, $content) = $all =~ /\A(.*?)\r\n\r\n(.*)\z/s;
    my ($status) = ($head // '') =~ /\AHTTP\/1\.[01] (\d{3}) /;
    my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () }
            split /\r\n/, $head // '';
    return { status => $status, head => $head // '', headers => \%h,
             content => $content // '' };
}

# [status, the JSON answer or undef]
sub json_get {
    my ($url) = @_;
    my $r = http_get($url);
    my $doc = eval { decode_json($r->{content}) };
    return [$r->{status}, $doc];
}

# The samples of a text exposition: 'name{labels}' (as written) => value.
sub metrics {
    my ($text) = @_;
    my %m;
    for my $line (split /\n/, $text // '') {
        next if $line =~ /^#/ || $line !~ /\S/;
        $m{$1} = $2 if $line =~ /^(\w+(?:\{.*\})?)\s+(\S+)$/;
    }
    return \%m;
}

# (1, '') when promtool check metrics finds nothing to say of $text, else
# (0, what it said).
sub promtool {
    my ($text) = @_;
    my $err = gensym;
    my $pid = open3(my $in, my $out, $err, 'promtool', 'check', 'metrics');
    print {$in} $text;
    close $in;
    my $said = do { local $/; <$out> } // '';
    $said .= do { local $/; <$err> } // '';
    waitpid $pid, 0;
    return ($? == 0 && $said !~ /\S/ ? 1 : 0, $said);
}

1;
