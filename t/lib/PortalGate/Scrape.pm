package PortalGate::Scrape;

# Asking portal-gated's own HTTP endpoint (`listen`) in the tests:
#
#   my $port = free_port();
#   my $r = http_get("http://127.0.0.1:$port/metrics");  # {status, headers,
#                                                        #  content}
#   my $m = metrics($r->{content});   # 'name{label="v",...}' => value
#   my ($ok, $out) = promtool($r->{content});   # promtool check metrics
#   my $j = json_get("http://127.0.0.1:$port/healthz");  # [status, doc]
#
# Every request is a new connection with a 5 s limit (HTTP::Tiny), so a
# daemon that does not answer fails the test instead of hanging it.

use strict;
use warnings;

use HTTP::Tiny;
use IO::Socket::INET;
use IPC::Open3 qw(open3);
use JSON::PP;
use Symbol qw(gensym);

use Exporter qw(import);
our @EXPORT_OK = qw(free_port http_get json_get metrics promtool);

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1)
        or die "cannot find a free port: $!";
    return $s->sockport;
}

# {status, headers, content}; status 599 when no answer came.
sub http_get {
    my ($url, $method, $body) = @_;
    my $http = HTTP::Tiny->new(timeout => 5, keep_alive => 0);
    return $http->request($method // 'GET', $url,
                          defined $body ? { content => $body } : {});
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
