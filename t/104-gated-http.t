# portal-gated's own HTTP endpoint (issue 11, `listen ADDR:PORT;`):
# /metrics after known actions (edges in step, a kill pushed and counted,
# an edge down, Redis down), each exposition clean for `promtool check
# metrics`; /healthz ok, degraded with an edge down, 503 with every edge
# down and with Redis down; read-only (405), HEAD, 404; label values
# escaped; a certificate's expiry from the local CA; bad listen lines for
# -t and for the daemon; SIGHUP rebinding a changed listen, keeping the old
# one when the new cannot be bound, closing a removed one, and an address
# change on the same port (the old listen closed first, bound again when
# the new one cannot be); companies in allow and deny lists appear in no
# answer, and /metrics has no label but edge, le, result, state, version.
# Real redis-server, two real nginx edges, the ASan controller.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP qw(decode_json);
use Time::Local qw(timegm);
use Test::More;
use PortalGate::Gated qw(clean_exit wait_until two_edges);
use PortalGate::Redis qw(exits);
use PortalGate::Scrape qw(free_port http_get json_get metrics promtool);
use PortalGate::Test qw(require_module);

require_module();

my $rs = PortalGate::Redis->new;
my $e = two_edges();
my ($tcp, $unix) = @$e{qw(tcp_url unix_url)};
my $port = free_port();
my $base = "http://127.0.0.1:$port";

my $gd = PortalGate::Gated->new(redis => $rs->url, edges => [$tcp, $unix],
                                reconcile => '300ms',
                                extra => "listen 127.0.0.1:$port;\n");

sub scrape {
    my $r = http_get("$base/metrics");
    return $r->{status} == 200 ? metrics($r->{content}) : {};
}

sub edge_key {
    my ($name, $edge, $more) = @_;
    return $name . '{edge="' . $edge . '"' . ($more // '') . '}';
}

sub checked {
    my ($name) = @_;
    my $r = http_get("$base/metrics");
    is($r->{status}, 200, "$name: /metrics answers 200");
    like($r->{headers}{'content-type'} // '', qr{^text/plain; version=0\.0\.4},
         "$name: in the text format 0.0.4");
    my ($ok, $said) = promtool($r->{content});
    ok($ok, "$name: promtool check metrics finds nothing to say")
        or diag($said . "\n" . $r->{content});
    return metrics($r->{content});
}

subtest 'the metrics of a controller with both edges in step' => sub {
    exits($rs->ctl('init'), 0, 'init');
    exits($rs->ctl('create', 'customer_portal'), 0, 'create');
    exits($rs->ctl('rollout', 'customer_portal', '12.5'), 0, 'rollout');
    $gd->start;
    ok($gd->wait_log(qr/serving \/metrics, \/healthz and the status page on (\S+)/),
       'the daemon says where it serves');

    ok(wait_until(sub {
        my $m = scrape();
        ($m->{edge_key('portal_gated_edge_in_step', $tcp)} // 0) == 1
            && ($m->{edge_key('portal_gated_edge_in_step', $unix)} // 0) == 1
    }), 'both edges are in step') or diag($gd->log);

    my $m = checked('in step');
    is($m->{portal_gated_redis_up}, 1, 'redis up');
    is($m->{portal_gated_source_revision}, 2, 'source revision 2 (init 0, create, rollout)');
    is($m->{portal_gated_snapshot_revision}, 2, 'snapshot revision 2');
    is($m->{'portal_gated_store_state{state="ok"}'}, 1, 'the store is ok');
    is($m->{'portal_gated_build_info{version="0.8.0"}'}, 1, 'build info');
    ok($m->{portal_gated_start_time_seconds} > time - 600
       && $m->{portal_gated_start_time_seconds} <= time,
       'the start time is now-ish');
    for my $edge ($tcp, $unix) {
        is($m->{edge_key('portal_gated_edge_up', $edge)}, 1, "$edge up");
        is($m->{edge_key('portal_gated_edge_revision', $edge)}, 2,
           "$edge at revision 2");
        is($m->{edge_key('portal_gated_edge_lag_revisions', $edge)}, 0,
           "$edge 0 revisions behind");
        is($m->{edge_key('portal_gated_edge_lag_seconds', $edge)}, '0.000',
           "$edge 0 s behind");
        is($m->{edge_key('portal_gated_pushes_total', $edge,
                         ',result="ok"')}, 1, "$edge: one push, ok");
        is($m->{edge_key('portal_gated_push_duration_seconds_count',
                         $edge)}, 1, "$edge: one push timed");
        is($m->{edge_key('portal_gated_push_duration_seconds_bucket', $edge,
                         ',le="+Inf"')}, 1, "$edge: in the +Inf bucket");
        is($m->{edge_key('portal_gated_push_duration_seconds_bucket', $edge,
                         ',le="10"')}, 1, "$edge: within 10 s");
    }
    ok(!grep({ /company|1001/ } keys %$m), 'no company in any label');

    my $h = json_get("$base/healthz");
    is($h->[0], 200, '/healthz: 200');
    is($h->[1]{status}, 'ok', '/healthz: ok');
    is($h->[1]{edges_ok}, 2, '/healthz: 2 edges ok');
};

subtest 'a kill is pushed and counted once per edge' => sub {
    exits($rs->ctl('kill', 'customer_portal', '--reason', 'test'), 0, 'kill');
    ok(wait_until(sub {
        my $m = scrape();
        ($m->{edge_key('portal_gated_edge_revision', $tcp)} // 0) == 3
            && ($m->{edge_key('portal_gated_edge_revision', $unix)} // 0) == 3
    }), 'both edges reach revision 3');
    my $m = checked('after a kill');
    is($m->{portal_gated_source_revision}, 3, 'source revision 3');
    for my $edge ($tcp, $unix) {
        is($m->{edge_key('portal_gated_pushes_total', $edge,
                         ',result="ok"')}, 2, "$edge: two pushes, ok");
        is($m->{edge_key('portal_gated_pushes_total', $edge,
                         ',result="failed"')}, 0, "$edge: none failed");
        is($m->{edge_key('portal_gated_push_duration_seconds_count',
                         $edge)}, 2, "$edge: two pushes timed");
    }
};

subtest 'an edge down: counted as failed, healthz degraded, then failing' => sub {
    $e->{unix}->stop;
    exits($rs->ctl('rollout', 'customer_portal', '20'), 0, 'rollout 20');
    ok(wait_until(sub {
        my $m = scrape();
        ($m->{edge_key('portal_gated_edge_up', $unix)} // 1) == 0
            && ($m->{edge_key('portal_gated_edge_revision', $tcp)} // 0) == 4
    }), 'the unix edge is down, the tcp one at revision 4');
    my $m = checked('an edge down');
    is($m->{edge_key('portal_gated_edge_in_step', $unix)}, 0,
       'the down edge is not in step');
    ok(!exists $m->{edge_key('portal_gated_edge_revision', $unix)},
       'the down edge has no revision sample');
    ok(!exists $m->{edge_key('portal_gated_edge_lag_revisions', $unix)},
       'nor a lag in revisions');
    ok($m->{edge_key('portal_gated_edge_lag_seconds', $unix)} > 0,
       'its lag in seconds grows');
    ok($m->{edge_key('portal_gated_pushes_total', $unix,
                     ',result="failed"')} >= 1,
       'its push is counted as failed');
    is($m->{edge_key('portal_gated_pushes_total', $tcp, ',result="ok"')}, 3,
       'the tcp edge: three pushes ok');

    my $h = json_get("$base/healthz");
    is($h->[0], 200, '/healthz with one edge of two down: 200');
    is($h->[1]{status}, 'degraded', '... degraded');
    ok((grep { index($_, $unix) >= 0 && /down/ } @{ $h->[1]{problems} }),
       '... naming the edge that is down') or diag explain $h->[1];

    $e->{tcp}->stop;
    ok(wait_until(sub { json_get("$base/healthz")->[0] == 503 }),
       '/healthz with every edge down: 503');
    $h = json_get("$base/healthz");
    is($h->[1]{status}, 'failing', '... failing');
    is($h->[1]{edges_ok}, 0, '... no edge ok');

    $e->{tcp}->start;
    $e->{unix}->start;
    ok(wait_until(sub { json_get("$base/healthz")->[1]{status} eq 'ok' }, 10),
       'both edges back: ok again');
};

subtest 'read-only: GET and HEAD, 405 otherwise, 404 elsewhere' => sub {
    for my $method (qw(POST PUT DELETE PATCH)) {
        my $r = http_get("$base/metrics", $method, 'x=1');
        is($r->{status}, 405, "$method /metrics: 405");
        is($r->{headers}{allow}, 'GET, HEAD', "$method: Allow: GET, HEAD");
    }
    my $r = http_get("$base/metrics", 'HEAD');
    is($r->{status}, 200, 'HEAD /metrics: 200');
    is($r->{content} // '', '', 'HEAD: no body');
    $r = http_get("$base/nope");
    is($r->{status}, 404, 'GET /nope: 404');
    $r = http_get("$base/");
    is($r->{status}, 200, 'GET /: 200');
    like($r->{headers}{'content-type'}, qr{^text/html}, 'the page is HTML');
    like($r->{headers}{'content-security-policy'} // '',
         qr/script-src 'sha256-[A-Za-z0-9+\/=]+'/,
         'the page comes with a CSP that allows its own script alone');
    $r = http_get("$base/status.json");
    is($r->{status}, 200, 'GET /status.json: 200');
    ok($gd->running, 'the daemon still runs');
};

subtest 'Redis down: redis_up 0, healthz 503, metrics still served' => sub {
    my $mark = $gd->mark;
    $rs->pause;                 # SIGSTOP: its commands time out, data stays
    ok($gd->wait_log(qr/redis unreachable/, 10, $mark), 'the daemon sees it');
    my $m = checked('redis down');
    is($m->{portal_gated_redis_up}, 0, 'redis_up 0');
    is($m->{portal_gated_source_revision}, 4, 'the last revision read stays');
    my $h = json_get("$base/healthz");
    is($h->[0], 503, '/healthz: 503');
    is($h->[1]{status}, 'failing', '... failing');
    ok((grep { /redis unreachable/ } @{ $h->[1]{problems} }),
       '... saying redis is unreachable') or diag explain $h->[1];
    $rs->resume;
    ok(wait_until(sub { json_get("$base/healthz")->[0] == 200 }, 15),
       'redis back: 200 again');
};

clean_exit($gd->stop, $gd, 'SIGTERM');

# Redis's own count of the bytes it has sent its clients
sub redis_sent {
    my ($info) = $rs->cli('INFO', 'stats') =~ /^total_net_output_bytes:(\d+)/m;
    return $info;
}

# Each of $n connections asks $path at once (all sent, then all read);
# the answers' bodies.
sub at_once {
    my ($port, $path, $n) = @_;
    my @socks = map {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
            or die "connect: $!"
    } 1 .. $n;
    syswrite $_, "GET $path HTTP/1.1\r\nHost: 127.0.0.1:$port\r\n"
                 . "Connection: close\r\n\r\n" for @socks;
    my @bodies;
    for my $s (@socks) {
        local $/;
        my $r = <$s> // '';
        push @bodies, $r =~ /^HTTP\/1\.1 200 .*?\r\n\r\n(.*)\z/s ? $1 : undef;
    }
    return @bodies;
}

subtest 'the audit on the status page: read when asked, a large flag left in Redis' => sub {
    exits($rs->ctl('create', 'big_list'), 0, 'create big_list');
    for my $k (0 .. 9) {
        exits($rs->ctl('allow', 'big_list',
                       map { sprintf 'c%06d', $k * 10000 + $_ } 0 .. 9999),
              0, "allow 10,000 more companies ($k)");
    }
    exits($rs->ctl('rollout', 'big_list', '5'), 0, 'rollout big_list 5');

    my $p = free_port();
    my $g = PortalGate::Gated->new(redis => $rs->url, edges => [$tcp],
                                   extra => "listen 127.0.0.1:$p;\n");
    $g->start;
    ok(wait_until(sub { my $h = json_get("http://127.0.0.1:$p/healthz")->[1];
                        ($h->{redis} // '') eq 'up'
                            && ($h->{store} // '') eq 'ok' }, 15),
       'the daemon reads the store')
        or diag($g->log);

    my $s = json_get("http://127.0.0.1:$p/status.json")->[1];
    is(ref $s->{audit}, 'ARRAY', 'the first /status.json asked has the audit')
        or diag explain $s->{audit_error};
    my $held = $rs->cli('XLEN', 'portal-gate:audit');
    $held = $held > 20 ? 20 : $held;
    is(scalar @{ $s->{audit} // [] }, $held, "... its newest $held entries");
    my $top = $s->{audit}[0] // {};
    is("$top->{flag}/$top->{action}", 'big_list/rollout',
       '... the newest first');
    like($top->{change} // '', qr/^\(2\.\d MB of flag JSON, too large to sum up/,
         '... a change of a 100k-company flag is not summed up, its size said');

    my $sent = redis_sent();
    exits($rs->ctl('create', 'small_one'), 0, 'create small_one');
    ok(wait_until(sub {
        my $a = json_get("http://127.0.0.1:$p/status.json")->[1]{audit};
        ref $a eq 'ARRAY' && ($a->[0]{flag} // '') eq 'small_one'
    }), 'the page shows the new entry first');
    my $more = redis_sent() - $sent;
    # the daemon's own reads of the store take 1 MB each (big_list); the
    # audit's 17 entries of big_list would be 20 MB
    cmp_ok($more, '<', 3_000_000, 'reading it again did not ship the large '
           . 'flag\'s JSON (2 MB an entry) out of Redis')
        or diag("Redis sent $more bytes");
    $s = json_get("http://127.0.0.1:$p/status.json")->[1];
    $held = $held < 20 ? $held + 1 : 20;
    is(scalar @{ $s->{audit} }, $held, "$held entries now");
    is($s->{audit}[1]{flag}, 'big_list', 'the ones held follow the new one');

    my @bodies = at_once($p, '/status.json', 16);
    is(scalar(grep { defined } @bodies), 16, '16 clients asking at once: '
       . 'each gets /status.json');
    my %now = map { (eval { decode_json($_)->{now} } // 'none') => 1 }
              grep { defined } @bodies;
    cmp_ok(scalar(keys %now), '<=', 2, '... from one rendering (or two, '
           . 'across two turns of the loop), not one each')
        or diag(join ' ', sort keys %now);

    exits($rs->ctl('delete', 'big_list'), 0, 'delete big_list');
    exits($rs->ctl('delete', 'small_one'), 0, 'delete small_one');
    clean_exit($g->stop, $g, 'SIGTERM');
};

subtest 'Redis down while a whole read is owed: the endpoint still answers' => sub {
    my $P = 'portal-gate:';
    $rs->cli('HSET', "${P}flags:production", 'broken_one', '{"rolout":1}');
    my ($hung) = PortalGate::Gated::hung_edges(1);
    my $p = free_port();
    my $g = PortalGate::Gated->new(redis => $rs->url, edges => [$hung],
                                   extra => "listen 127.0.0.1:$p;\n");
    $g->start;
    ok($g->wait_log(qr/asking the edges what they hold/, 10),
       'a flag the store cannot give: the daemon asks the (hung) edge')
        or diag($g->log);
    $rs->pause;
    ok($g->wait_log(qr/redis unreachable/, 10), 'then Redis goes');
    my $mark = $g->mark;
    ok($g->wait_log(qr/no edge gave its snapshot/, 10, $mark),
       'then the edge\'s answer is given up: a whole read is owed')
        or diag($g->log);
    my $h = json_get("http://127.0.0.1:$p/healthz");
    is($h->[0], 503, '/healthz answers, 503');
    is($h->[1]{status}, 'failing', '... failing');
    is(http_get("http://127.0.0.1:$p/metrics")->{status}, 200,
       '/metrics answers');
    $rs->resume;
    $rs->cli('HDEL', "${P}flags:production", 'broken_one');
    clean_exit($g->stop, $g, 'SIGTERM');
};

subtest 'label values are escaped: an edge with a quote and a backslash' => sub {
    my $dir = tempdir('pg-http-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $p = free_port();
    my $weird = "unix:$dir/a\"b\\c.sock:/pg/";
    (my $quoted = $weird) =~ s/(["\\])/\\$1/g;
    my $g = PortalGate::Gated->new(redis => $rs->url,
                                   edges => ["\"$quoted\""],
                                   extra => "listen localhost:$p;\n");
    $g->start;
    my $r;
    ok(wait_until(sub { $r = http_get("http://127.0.0.1:$p/metrics");
                        $r->{status} == 200 }), 'localhost means 127.0.0.1');
    my ($ok, $said) = promtool($r->{content});
    ok($ok, 'promtool finds nothing to say') or diag($said);
    (my $label = $weird) =~ s/(["\\])/\\$1/g;
    like($r->{content}, qr/^portal_gated_edge_up\{edge="\Q$label\E"\} 0$/m,
         'the edge label has its quote and backslash escaped');
    clean_exit($g->stop, $g, 'SIGTERM');
};

subtest 'a certificate from the local CA: its expiry as a metric' => sub {
    my $dir = tempdir('pg-http-cert-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256"
           . " -nodes -days 30 -subj '/CN=portal-gate test CA'"
           . " -keyout $dir/ca.key -out $dir/ca.pem"
           . " -addext basicConstraints=critical,CA:TRUE"
           . " -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null") == 0
        or BAIL_OUT('openssl cannot make a CA');
    mkdir "$dir/state";
    my $p = free_port();
    my $g = PortalGate::Gated->new(redis => $rs->url, extra => <<"CONF");
listen 127.0.0.1:$p;
state_dir $dir/state;
certificate staging.test {
    issuer    local $dir/ca.pem $dir/ca.key;
    fullchain $dir/certs/fullchain.pem;
    privkey   $dir/certs/privkey.pem;
}
CONF
    $g->start;
    ok($g->wait_log(qr/certificate staging\.test: issued by/, 20),
       'the certificate is issued') or diag($g->log);
    my $end = `openssl x509 -noout -enddate -in $dir/certs/fullchain.pem`;
    my %mon = (Jan => 0, Feb => 1, Mar => 2, Apr => 3, May => 4, Jun => 5,
               Jul => 6, Aug => 7, Sep => 8, Oct => 9, Nov => 10, Dec => 11);
    my ($mo, $d, $hr, $mi, $s, $y) =
        $end =~ /notAfter=(\w+)\s+(\d+) (\d+):(\d+):(\d+) (\d+) GMT/
        or BAIL_OUT("openssl said $end");
    my $not_after = timegm($s, $mi, $hr, $d, $mon{$mo}, $y);

    my $m;
    ok(wait_until(sub {
        $m = metrics(http_get("http://127.0.0.1:$p/metrics")->{content});
        ($m->{'portal_gated_certificate_placeholder{certificate="staging.test"}'}
         // 1) == 0
    }), 'the placeholder is gone');
    is($m->{'portal_gated_certificate_expiry_timestamp_seconds{certificate="staging.test"}'},
       $not_after, 'expiry: the installed certificate\'s notAfter');
    is($m->{'portal_gated_certificate_renewal_failures{certificate="staging.test"}'},
       0, 'no failed renewal');
    is($m->{'portal_gated_certificate_last_error_timestamp_seconds{certificate="staging.test"}'},
       0, 'no error stands');
    ok($m->{'portal_gated_certificate_next_renewal_timestamp_seconds{certificate="staging.test"}'}
       > time, 'the next renewal is ahead');
    my ($ok, $said) = promtool(http_get("http://127.0.0.1:$p/metrics")
                               ->{content});
    ok($ok, 'promtool finds nothing to say') or diag($said);
    my $h = json_get("http://127.0.0.1:$p/healthz");
    is($h->[1]{status}, 'ok', 'a controller of certificates alone is ok');
    clean_exit($g->stop, $g, 'SIGTERM');
};

subtest 'a bad listen line stops -t and the daemon, naming the line' => sub {
    my $g = PortalGate::Gated->new(redis => $rs->url, edges => [$tcp]);
    for my $case (['127.0.0.1', qr/expected ADDR:PORT/],
                  ['127.0.0.1:0', qr/the port is 1 to 65535/],
                  ['127.0.0.1:65536', qr/the port is 1 to 65535/],
                  ['127.0.0.1:80x', qr/the port is 1 to 65535/],
                  ['999.1.1.1:80', qr/IPv4 or IPv6 literal, or localhost/],
                  ['example.com:80', qr/IPv4 or IPv6 literal, or localhost/],
                  ['::1:80', qr/in brackets/],
                  ['[::1:80', qr/expected \[IPV6\]:PORT/],
                  ['[zz]:80', qr/not an IPv6 address/],
                  ['127.0.0.1:', qr/expected a port/]) {
        my ($value, $why) = @$case;
        $g->rewrite(extra => "\nlisten $value;\n");
        my $line = () = $g->_conf_text =~ /\n/g;
        my $r = $g->run('-t', '-c', $g->conf_path);
        is($r->{exit}, 1, "listen $value: -t exits 1");
        like($r->{err}, qr/portal-gated\.conf:$line: invalid value "\Q$value\E" in "listen": .*$why/,
             "listen $value: FILE:LINE and why");
    }
    $g->rewrite(extra => "listen 127.0.0.1:1;\nlisten 127.0.0.1:2;\n");
    like($g->run('-t', '-c', $g->conf_path)->{err}, qr/"listen" directive is duplicate/,
         'listen twice: duplicate');

    my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                     Listen => 1, ReuseAddr => 1) or die $!;
    my $bp = $busy->sockport;
    $g->rewrite(extra => "listen 127.0.0.1:$bp;\n");
    $g->start;
    ok(wait_until(sub { !$g->running }), 'a listen already in use: the daemon does not start');
    is($g->{status}, 1, '... exit 1');
    like($g->log, qr/cannot start: listen 127\.0\.0\.1:$bp \(\S+portal-gated\.conf:\d+\): Address already in use/,
         '... saying which listen and why');
    my $r = $g->run('-d', '-c', $g->conf_path);
    is($r->{exit}, 1, 'with -d: exit 1 too, before the fork');
    like($r->{err}, qr/cannot start: listen 127\.0\.0\.1:$bp .*Address already in use/,
         '... said on the terminal');
};

subtest 'SIGHUP: a changed listen is rebound, a busy one keeps the old' => sub {
    my ($p1, $p2) = (free_port(), free_port());
    my $g = PortalGate::Gated->new(redis => $rs->url, edges => [$tcp],
                                   extra => "listen 127.0.0.1:$p1;\n");
    $g->start;
    ok(wait_until(sub { http_get("http://127.0.0.1:$p1/healthz")->{status}
                        != 599 }), "serving on $p1");

    my $mark = $g->mark;
    $g->rewrite(extra => "listen 127.0.0.1:$p2;\n");
    $g->hup;
    ok($g->wait_log(qr/serving .* on http:\/\/127\.0\.0\.1:$p2\//, 5, $mark),
       'HUP: the new listen is bound');
    isnt(http_get("http://127.0.0.1:$p2/healthz")->{status}, 599,
         "it answers on $p2");
    is(http_get("http://127.0.0.1:$p1/healthz")->{status}, 599,
       "and no longer on $p1");

    my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                     Listen => 1, ReuseAddr => 1) or die $!;
    my $bp = $busy->sockport;
    $mark = $g->mark;
    $g->rewrite(extra => "listen 127.0.0.1:$bp;\n");
    $g->hup;
    ok($g->wait_log(qr/listen 127\.0\.0\.1:$bp .*Address already in use; the old listen stays/,
                    5, $mark), 'HUP to a listen in use: said, the old one stays');
    isnt(http_get("http://127.0.0.1:$p2/healthz")->{status}, 599,
         "still answering on $p2");

    $mark = $g->mark;
    $g->rewrite(extra => '');
    $g->hup;
    ok($g->wait_log(qr/listen 127\.0\.0\.1:$p2 closed/, 5, $mark),
       'HUP without a listen line: closed');
    is(http_get("http://127.0.0.1:$p2/healthz")->{status}, 599,
       "no longer answering on $p2");
    ok($g->running, 'the daemon runs on');
    clean_exit($g->stop, $g, 'SIGTERM');
};

subtest 'no company id in /metrics, /healthz or /status.json' => sub {
    my @ids = ('Acme-Corp_4711', 'zz.company-99', 'denied.co_31337');
    exits($rs->ctl('allow', 'customer_portal', @ids[0, 1]), 0, 'allow two');
    exits($rs->ctl('deny', 'customer_portal', $ids[2]), 0, 'deny one');
    exits($rs->ctl('create', 'per_company'), 0, 'create another flag');
    exits($rs->ctl('allow', 'per_company', @ids), 0, 'allow all three there');
    my $p = free_port();
    my $g = PortalGate::Gated->new(redis => $rs->url, edges => [$tcp],
                                   extra => "listen 127.0.0.1:$p;\n");
    $g->start;
    my $text;
    ok(wait_until(sub {
        $text = http_get("http://127.0.0.1:$p/metrics")->{content} // '';
        my $m = metrics($text);
        ($m->{edge_key('portal_gated_edge_in_step', $tcp)} // 0) == 1
    }, 15), 'the edge holds the lists') or diag($g->log);
    my ($ok, $said) = promtool($text);
    ok($ok, 'promtool finds nothing to say') or diag($said);
    my $all = $text . http_get("http://127.0.0.1:$p/healthz")->{content}
            . http_get("http://127.0.0.1:$p/status.json")->{content};
    like($all, qr/"allow":3/, '/status.json has the lists\' counts');
    for my $id (@ids) {
        unlike($all, qr/\Q$id\E/, "company $id appears nowhere");
    }
    my @labels = map { /\{(.*)\}/ ? split(/,/, $1) : () }
                 grep { !/^#/ } split /\n/, $text;
    my %names = map { /^(\w+)=/ ? ($1 => 1) : () } @labels;
    is(join(' ', sort keys %names), 'edge le result state version',
       'the labels are edge, le, result, state and version alone');
    clean_exit($g->stop, $g, 'SIGTERM');
};

subtest 'SIGHUP: an address change on the same port closes the old listen first' => sub {
    my $p = free_port();
    my $g = PortalGate::Gated->new(redis => $rs->url, edges => [$tcp],
                                   extra => "listen 127.0.0.1:$p;\n");
    $g->start;
    ok(wait_until(sub { http_get("http://127.0.0.1:$p/healthz")->{status}
                        != 599 }), "serving on 127.0.0.1:$p");
    is(http_get("http://127.0.0.2:$p/healthz")->{status}, 599,
       "not on 127.0.0.2:$p");

    my $mark = $g->mark;
    $g->rewrite(extra => "listen 0.0.0.0:$p;\n");
    $g->hup;
    ok($g->wait_log(qr/serving .* on http:\/\/0\.0\.0\.0:$p\//, 5, $mark),
       "HUP to listen 0.0.0.0:$p: bound") or diag($g->log($mark));
    like($g->log($mark), qr/0\.0\.0\.0:$p .*Address already in use; the old listen 127\.0\.0\.1:$p may be what holds the port: closing it/,
         '... once the old listen, which held the port, was closed (said)');
    isnt(http_get("http://127.0.0.2:$p/healthz")->{status}, 599,
         "it answers on 127.0.0.2:$p now");

    $mark = $g->mark;
    $g->rewrite(extra => "listen 127.0.0.1:$p;\n");
    $g->hup;
    ok($g->wait_log(qr/serving .* on http:\/\/127\.0\.0\.1:$p\//, 5, $mark),
       'and back to 127.0.0.1: bound') or diag($g->log($mark));
    is(http_get("http://127.0.0.2:$p/healthz")->{status}, 599,
       "no longer on 127.0.0.2:$p");

    # someone else holds the port on another address: the new listen
    # cannot be bound even once the old one is closed
    my $other = IO::Socket::INET->new(LocalAddr => '127.0.0.2',
                                      LocalPort => $p, Listen => 1,
                                      ReuseAddr => 1) or die $!;
    $mark = $g->mark;
    $g->rewrite(extra => "listen 0.0.0.0:$p;\n");
    $g->hup;
    ok($g->wait_log(qr/0\.0\.0\.0:$p .*Address already in use; binding the old listen 127\.0\.0\.1:$p again/,
                    5, $mark), 'a port held by another: said, the old '
       . 'listen bound again') or diag($g->log($mark));
    ok($g->wait_log(qr/serving .* on http:\/\/127\.0\.0\.1:$p\//, 5, $mark),
       '... and serving');
    isnt(http_get("http://127.0.0.1:$p/healthz")->{status}, 599,
         "it answers on 127.0.0.1:$p");

    # the other holds 127.0.0.2:P, which 127.0.0.1:P cannot clash with:
    # the old listen is not closed for it, and its connections live on
    my $kept = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p)
        or die $!;
    syswrite $kept, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    ok(IO::Select->new($kept)->can_read(5) && sysread($kept, my $first, 4096),
       'a keep-alive connection to the old listen has an answer');
    $mark = $g->mark;
    $g->rewrite(extra => "listen 127.0.0.2:$p;\n");
    $g->hup;
    ok($g->wait_log(qr/127\.0\.0\.2:$p .*Address already in use; the old listen stays/,
                    5, $mark), 'a port held by another on the new address: '
       . 'said, the old listen stays') or diag($g->log($mark));
    unlike($g->log($mark), qr/closing it/, 'not closed to try');
    syswrite $kept, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    ok(IO::Select->new($kept)->can_read(5) && sysread($kept, my $second, 4096),
       '... and the connection made before answers again');
    close $kept;
    close $other;
    ok($g->running, 'the daemon runs on');
    clean_exit($g->stop, $g, 'SIGTERM');
};

$_->no_bad_log_lines('edge ' . $_->port . ': no [crit], [alert] or [emerg]')
    for @$e{qw(tcp unix)};

done_testing;
