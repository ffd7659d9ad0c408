# portal-gated's HTTP endpoint (`listen`) and the Host of a request: the
# status page and /status.json answer only localhost, an IP literal (any
# port: a tunnel changes it) or a `server_name` of the config, and 421 with
# a one-line reason to any other name, which is what a DNS-rebinding page in
# an operator's browser sends; /metrics and /healthz answer any Host
# (Prometheus and probes use whatever name). Bad server_name lines stop
# `-t` with the file and line. Real redis-server, a real nginx edge, the
# ASan controller; raw requests, each Host as written.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP qw(decode_json);
use Test::More;
use PortalGate::Gated qw(clean_exit wait_until two_edges);
use PortalGate::Redis qw(exits);
use PortalGate::Scrape qw(free_port http_get http_raw);
use PortalGate::Test qw(require_module);

require_module();

my $rs = PortalGate::Redis->new;
exits($rs->ctl('init'), 0, 'init');
exits($rs->ctl('create', 'customer_portal'), 0, 'create');
exits($rs->ctl('allow', 'customer_portal', 'acme-corp'), 0, 'allow');

my $e = two_edges();
my $port = free_port();
my $gd = PortalGate::Gated->new(
    redis => $rs->url, edges => [$e->{tcp_url}],
    extra => "listen 127.0.0.1:$port;\n"
           . "server_name Status.Example.COM *.ops.example.com;\n");
$gd->start;
ok(wait_until(sub { http_get("http://127.0.0.1:$port/healthz")->{status}
                    == 200 }, 10), 'the endpoint answers')
    or diag($gd->log);

# GET (or HEAD) $path with the Host header $host (undef: none, HTTP/1.0)
sub ask {
    my ($path, $host, $method) = @_;
    my $req = ($method // 'GET') . " $path HTTP/"
            . (defined $host ? "1.1\r\nHost: $host" : '1.0')
            . "\r\nConnection: close\r\n\r\n";
    return http_raw($port, $req);
}

subtest 'the page and /status.json answer the names of the endpoint' => sub {
    for my $host ("127.0.0.1:$port", '127.0.0.1', "localhost:$port",
                  'LocalHost', '[::1]:9145', '[::1]', '10.1.2.3:8080',
                  'status.example.com', 'STATUS.example.com:443',
                  'status.example.com.', 'grafana.ops.example.com',
                  'a.b.ops.example.com:8443', undef) {
        my $name = $host // 'no Host (HTTP/1.0)';
        is(ask('/', $host)->{status}, 200, "/ with Host $name: 200");
        my $r = ask('/status.json', $host);
        is($r->{status}, 200, "/status.json with Host $name: 200");
        like($r->{content}, qr/"customer_portal"/, '... the flags');
    }
};

subtest 'any other name gets 421 with a one-line reason' => sub {
    for my $host ('evil.example', "evil.example:$port", 'ops.example.com',
                  'example.com', 'status.example.com.evil.example',
                  '127.0.0.1.nip.io', 'localhost.evil.example', '[zz]:80',
                  ':9145', '') {
        for my $path ('/', '/status.json', '/nope') {
            my $r = ask($path, $host);
            is($r->{status}, 421, "$path with Host \"$host\": 421");
            unlike($r->{content}, qr/customer_portal|acme/,
                   '... nothing of the store');
        }
    }
    my $r = ask('/status.json', 'evil.example:8080');
    my $doc = eval { decode_json($r->{content}) } // {};
    like($doc->{error} // '', qr/^Host "evil\.example:8080" is not a name of this endpoint: localhost, an IP literal, or a server_name of portal-gated\.conf/,
         'the reason names the Host and what would do');
    unlike($doc->{error} // '', qr/\n/, '... in one line');
    is(ask('/', 'evil.example', 'HEAD')->{status}, 421, 'HEAD / too');
    ok($gd->wait_log(qr/\[notice\] .*http: \/ refused: Host "evil\.example" is not localhost, an IP literal or a server_name/),
       'the log says it (the first ones: a client picks their rate)');
};

subtest '/metrics and /healthz answer any Host' => sub {
    for my $host ('evil.example', 'prometheus-target.internal:9145') {
        my $r = ask('/metrics', $host);
        is($r->{status}, 200, "/metrics with Host $host: 200");
        like($r->{content}, qr/^portal_gated_redis_up 1$/m, '... the metrics');
        is(ask('/healthz', $host)->{status}, 200,
           "/healthz with Host $host: 200");
    }
};

clean_exit($gd->stop, $gd, 'SIGTERM');

subtest 'without server_name: localhost and IP literals alone' => sub {
    my $p = free_port();
    my $g = PortalGate::Gated->new(redis => $rs->url, edges => [$e->{tcp_url}],
                                   extra => "listen 127.0.0.1:$p;\n");
    $g->start;
    ok(wait_until(sub { http_get("http://127.0.0.1:$p/healthz")->{status}
                        == 200 }, 10), 'it answers');
    my $req = "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n";
    is(http_raw($p, sprintf($req, 'status.example.com'))->{status}, 421,
       'status.example.com: 421');
    (my $json = $req) =~ s{^GET / }{GET /status.json };
    is(http_raw($p, sprintf($json, "rebound.evil.example:$p"))->{status},
       421, '/status.json through a rebinding name: 421');
    is(http_raw($p, sprintf($req, "localhost:$p"))->{status}, 200,
       'localhost: 200');
    clean_exit($g->stop, $g, 'SIGTERM');
};

subtest 'bad server_name lines stop -t, naming the line' => sub {
    my $g = PortalGate::Gated->new(redis => $rs->url, edges => [$e->{tcp_url}]);
    for my $case (['status.example.com/x', qr/expected a name/],
                  ['*.', qr/expected a name/],
                  ['.example.com', qr/expected a name/],
                  ['a..b', qr/expected a name/],
                  ['*example.com', qr/expected a name/],
                  ['x' x 254, qr/a name of 1 to 253 bytes/]) {
        my ($value, $why) = @$case;
        $g->rewrite(extra => "\nserver_name ok.example.com $value;\n");
        my $line = () = $g->_conf_text =~ /\n/g;
        my $r = $g->run('-t', '-c', $g->conf_path);
        is($r->{exit}, 1, "server_name $value: -t exits 1");
        like($r->{err}, qr/portal-gated\.conf:$line: invalid value "[^"]*" in "server_name": .*$why/,
             "server_name " . substr($value, 0, 20) . ": FILE:LINE and why");
    }
    $g->rewrite(extra => "server_name a.example.com *.b.example.com "
                       . "c.example.com.;\n");
    is($g->run('-t', '-c', $g->conf_path)->{exit}, 0, 'good names pass -t');
};

$e->{tcp}->no_bad_log_lines('the edge: no [crit], [alert] or [emerg]');

done_testing;
