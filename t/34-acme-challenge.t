# ACME http-01 challenges at the edge: the API's challenges resource sets
# them, and a server with portal_gate_acme_challenge on answers
# /.well-known/acme-challenge/TOKEN from the zone, before its server-level
# return and rewrite, a location's return and the gate; a token it does not
# have is its own 404, which the server's error_page does not turn into
# the server's redirect or page.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep time);
use PortalGate::Test qw(nginx_t require_module);

require_module();

my $SLOW = $ENV{PG_TEST_SLOW} // 1;

my $ACME = '/.well-known/acme-challenge';

# one server per way a server could answer a challenge request itself
my $servers = <<'CONF';
    server {
        listen 127.0.0.1:%%PORT1%%;
        portal_gate_acme_challenge on;
        return 301 https://staging.example.com$request_uri;
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
        location / { return 200 "site\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT3%%;
        portal_gate_acme_challenge on;
        rewrite ^ /rewritten/ last;
        location /rewritten/ { return 200 "rewritten\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT4%%;
        portal_gate_acme_challenge on;
        location / { return 200 "site\n"; }
        location /.well-known/ { return 403; }
    }
    server {
        listen 127.0.0.1:%%PORT5%%;
        portal_gate_acme_challenge on;
        portal_gate customer_portal off=https://legacy.example.com/;
        location / { return 200 "portal\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT6%%;
        portal_gate_acme_challenge on;
        error_page 404 /404.html;
        return 301 https://staging.example.com$request_uri;
    }
    server {
        listen 127.0.0.1:%%PORT7%%;
        portal_gate_acme_challenge on;
        error_page 404 /404.html;
        rewrite ^ /rewritten/ last;
        location /rewritten/ { return 200 "rewritten\n"; }
    }
CONF

my %port = (redirect => 1, off => 2, rewrite => 3, location => 4, gate => 5,
            error_page_return => 6, error_page_rewrite => 7);

my $ng = PortalGate::Test->new(http => $servers, ports => 7);
$ng->start;

my %set = ('tok_A-1' => 'tok_A-1.thumb_print-1',
           'tok_B-2' => 'tok_B-2.thumb_print-2');

sub put_challenges {
    my ($body) = @_;
    return $ng->api('PUT', 'challenges',
                    ref $body ? encode_json($body) : $body);
}

sub get_challenges {
    my $res = $ng->api('GET', 'challenges');
    die "GET challenges: $res->{status} $res->{content}\n"
        unless $res->{status} == 200 && $res->{json};
    return $res->{json}{challenges};
}

sub challenge {
    my ($server, $token, %o) = @_;
    my $method = delete $o{method} // 'GET';
    return $ng->request($method, "$ACME/$token",
                        port => $ng->extra_port($port{$server}), %o);
}

subtest 'no challenges at first' => sub {
    is_deeply(get_challenges(), {}, 'GET challenges: {}');
    is($ng->status->{challenges}, 0, 'GET status: challenges 0');
    is(challenge(redirect => 'tok_A-1')->{status}, 404, 'a token is 404');
};

subtest 'PUT challenges sets them; GET and status show them' => sub {
    my $res = put_challenges(\%set);
    is($res->{status}, 200, 'PUT challenges: 200');
    is_deeply($res->{json}, {challenges => 2}, '{"challenges": 2}');
    is_deeply(get_challenges(), \%set, 'GET challenges gives them back');
    is($ng->status->{challenges}, 2, 'GET status: challenges 2');
    ok(scalar $ng->log_lines(qr/\[notice\].*acme challenges replaced, 2 now/),
       'logged at notice') or diag($ng->error_log);
};

subtest 'a server with the directive answers the key authorization' => sub {
    my $res = challenge(redirect => 'tok_A-1');
    is($res->{status}, 200, 'despite its server-level return 301: 200');
    is($res->{content}, 'tok_A-1.thumb_print-1', 'the key authorization');
    is($res->{headers}{'content-type'}, 'application/octet-stream',
       'as application/octet-stream');
    is($res->{headers}{'content-length'}, length 'tok_A-1.thumb_print-1',
       'with its length');
    is(challenge(redirect => 'tok_B-2')->{content}, 'tok_B-2.thumb_print-2',
       'the other token its own');
    is(challenge(redirect => 'tok_A-1?x=1')->{content},
       'tok_A-1.thumb_print-1', 'a query string is no matter');
    is($ng->get('/other', port => $ng->extra_port($port{redirect}))->{status},
       301, 'another path still gets the 301');
};

subtest 'it wins over rewrite, a location return and the gate' => sub {
    for my $server (qw(rewrite location gate)) {
        my $res = challenge($server => 'tok_B-2');
        is("$res->{status} $res->{content}", '200 tok_B-2.thumb_print-2',
           "$server: the key authorization");
    }
    my $p = sub { $ng->get($_[0], port => $ng->extra_port($port{$_[1]})) };
    is($p->('/x', 'rewrite')->{content}, "rewritten\n",
       'rewrite: other paths are rewritten');
    is($p->("$ACME/", 'location')->{status}, 403,
       'location: the prefix alone is the location\'s');
    is($p->('/x', 'gate')->{status}, 302, 'gate: other paths are gated');
};

subtest 'a server without the directive is untouched' => sub {
    my $res = challenge(off => 'tok_A-1');
    is("$res->{status} $res->{content}", "200 site\n", 'its own location answers');
    $res = $ng->get("$ACME/tok_A-1");
    is($res->{status}, 404, 'the main server (no directive) too: its 404');
};

subtest 'an unknown or malformed token is 404' => sub {
    for my $token ('tok_C-3', 'tok_A', 'tok_A-1x', 'tok.A-1', 'tok_A-1/x',
                   'a%2Fb', 'x' x 129) {
        is(challenge(redirect => $token)->{status}, 404,
           '"' . (length $token > 20 ? 'x' x 20 . '...' : $token) . '": 404');
    }
    is(challenge(redirect => '')->{status}, 301,
       'the prefix alone is not a challenge: 301');
};

subtest 'the server\'s error_page does not take the 404 of a token' => sub {
    for my $server (qw(error_page_return error_page_rewrite)) {
        my $res = challenge($server => 'tok_A-1');
        is("$res->{status} $res->{content}", '200 tok_A-1.thumb_print-1',
           "$server: a known token is answered");
        for my $token ('tok_C-3', 'tok.A-1') {
            $res = challenge($server => $token);
            is($res->{status}, 404, "$server: \"$token\" is 404, "
                                    . 'not the error_page\'s redirect');
            is($res->{headers}{location}, undef, '  with no Location');
            # with error_page 404 (no =code) nginx keeps the 404 status
            # of a redirected request whatever answers it: the body tells
            like($res->{content}, qr{<title>404 Not Found</title>},
                 '  and nginx\'s own 404 page, not what the redirect found')
                or diag($res->{content});
        }
        $res = challenge($server => 'tok_C-3', method => 'HEAD');
        is($res->{status}, 404, "$server: HEAD of an unknown token: 404");
    }
    my $res = $ng->get('/other',
                       port => $ng->extra_port($port{error_page_return}));
    is($res->{status}, 301, 'error_page_return: another path gets the 301');
    $res = $ng->get('/other',
                    port => $ng->extra_port($port{error_page_rewrite}));
    is("$res->{status} $res->{content}", "200 rewritten\n",
       'error_page_rewrite: another path is rewritten');
};

subtest 'HEAD: the headers only' => sub {
    my $res = challenge(redirect => 'tok_A-1', method => 'HEAD');
    is($res->{status}, 200, 'HEAD: 200');
    is($res->{headers}{'content-length'}, length 'tok_A-1.thumb_print-1',
       'Content-Length of the key authorization');
    is($res->{content}, '', 'no body');
};

subtest 'other methods are the server\'s' => sub {
    is(challenge(redirect => 'tok_A-1', method => 'POST', body => 'x')->{status},
       301, 'POST: the 301');
    is(challenge(location => 'tok_A-1', method => 'DELETE')->{status}, 403,
       'DELETE: the location\'s 403');
};

subtest 'the challenges survive a reload and a resize' => sub {
    $ng->reload;
    is(challenge(redirect => 'tok_A-1')->{content}, 'tok_A-1.thumb_print-1',
       'after nginx -s reload');
    $ng->reload(zone => '8m');
    is_deeply(get_challenges(), \%set, 'after a resizing reload');
    is(challenge(gate => 'tok_B-2')->{content}, 'tok_B-2.thumb_print-2',
       'and served');
};

subtest 'PUT replaces the whole set' => sub {
    my $res = put_challenges({'tok_C-3' => 'tok_C-3.t'});
    is_deeply($res->{json}, {challenges => 1}, '{"challenges": 1}');
    is(challenge(redirect => 'tok_A-1')->{status}, 404, 'an old token: 404');
    is(challenge(redirect => 'tok_C-3')->{content}, 'tok_C-3.t',
       'the new one is served');
    is_deeply(get_challenges(), {'tok_C-3' => 'tok_C-3.t'}, 'GET: the new set');
};

subtest 'the same set again changes nothing and logs nothing' => sub {
    my $before = () = $ng->log_lines(qr/acme challenges replaced/);
    is(put_challenges({'tok_C-3' => 'tok_C-3.t'})->{status}, 200, 'PUT: 200');
    my $after = () = $ng->log_lines(qr/acme challenges replaced/);
    is($after, $before, 'no new log line');
};

my @bad = (
    ['', qr/empty body/],
    ['{"a": "b"', qr/invalid JSON: .*line 1/],
    ['{"a": "a.b", "a": "a.c"}', qr/invalid JSON: duplicate object key/],
    ['["tok"]', qr/must be a JSON object of tokens to key authorizations/],
    ['"tok"', qr/invalid JSON/],
    [{'bad.token' => 'k'}, qr/invalid token "bad\.token" \(9 bytes\): expected \[A-Za-z0-9_-\]\{1,128\}/],
    [{'' => 'k'}, qr/invalid token "" \(0 bytes\)/],
    [{'x' x 129 => 'k'}, qr/invalid token "x{64}\.\.\." \(129 bytes\)/],
    ["{\"t\\u00e9\": \"k\"}", qr/invalid token "t\?\?" \(3 bytes\)/],
    [{tok => 5}, qr/the key authorization of token "tok" is not a string/],
    ['{"tok": null}', qr/of token "tok" is not a string/],
    [{tok => 'has space'}, qr/invalid key authorization of token "tok" \(9 bytes\): expected \[A-Za-z0-9_.-\]\{1,256\}/],
    [{tok => ''}, qr/invalid key authorization of token "tok" \(0 bytes\)/],
    [{tok => 'k' x 257}, qr/invalid key authorization of token "tok" \(257 bytes\)/],
    [{map { ("t$_" => "t$_.k") } 1 .. 129}, qr/129 challenges: at most 128 at once/],
);

subtest 'a bad body is a 400 that says why, and the old set stays' => sub {
    for my $b (@bad) {
        my ($body, $re) = @$b;
        my $text = ref $body ? encode_json($body) : $body;
        my $name = length $text > 40 ? substr($text, 0, 40) . '...' : $text;
        my $res = put_challenges($body);
        is($res->{status}, 400, "PUT $name: 400");
        like($res->{json}{error} // '', $re, '  and says why')
            or diag($res->{content});
    }
    is_deeply(get_challenges(), {'tok_C-3' => 'tok_C-3.t'}, 'the set is as it was');
    is(challenge(redirect => 'tok_C-3')->{content}, 'tok_C-3.t', 'and served');
};

subtest 'the limits themselves are accepted' => sub {
    my %max = map { sprintf('t%03d', $_) => 'k' x 256 } 1 .. 128;
    $max{'T' x 128} = delete $max{t001};
    my $res = put_challenges(\%max);
    is($res->{status}, 200, '128 challenges, a 128-byte token, 256-byte key authorizations: 200');
    is_deeply($res->{json}, {challenges => 128}, '{"challenges": 128}');
    is(challenge(redirect => 'T' x 128)->{content}, 'k' x 256,
       'the 128-byte token is served');
    is(challenge(redirect => 't128')->{content}, 'k' x 256, 'and the last one');
    is_deeply(get_challenges(), \%max, 'GET gives all 128 back');
};

subtest 'other methods: 405 in JSON with Allow' => sub {
    for my $m (qw(POST DELETE)) {
        my $res = $ng->api($m, 'challenges', '{}');
        is($res->{status}, 405, "$m challenges: 405");
        is($res->{headers}{allow}, 'GET, HEAD, PUT', 'Allow: GET, HEAD, PUT');
        like($res->{json}{error} // '', qr/method $m is not allowed on "challenges"/,
             'a JSON error');
    }
};

subtest 'an empty object clears the set' => sub {
    my $res = put_challenges('{}');
    is($res->{status}, 200, 'PUT {}: 200');
    is_deeply($res->{json}, {challenges => 0}, '{"challenges": 0}');
    is_deeply(get_challenges(), {}, 'GET: {}');
    is($ng->status->{challenges}, 0, 'status: 0');
    is(challenge(redirect => 't128')->{status}, 404, 'a token of it: 404');
};

subtest 'a restart starts with none (they are not in the state file)' => sub {
    is(put_challenges(\%set)->{status}, 200, 'set again');
    $ng->restart;
    is_deeply(get_challenges(), {}, 'after a restart: none');
    is(challenge(redirect => 'tok_A-1')->{status}, 404, 'a token: 404');
};

$ng->no_bad_log_lines;
$ng->stop;

subtest 'on at the http level: every server inherits it, off lifts it' => sub {
    my $inst = PortalGate::Test->new(ports => 1, http => <<'CONF');
    portal_gate_acme_challenge on;
    server {
        listen 127.0.0.1:%%PORT1%%;
        portal_gate_acme_challenge off;
        location / { return 200 "site\n"; }
    }
CONF
    $inst->start;
    is($inst->api('PUT', 'challenges', encode_json(\%set))->{status}, 200,
       'PUT challenges');
    my $res = $inst->get("$ACME/tok_A-1");
    is("$res->{status} $res->{content}", '200 tok_A-1.thumb_print-1',
       'the main server inherits it from http');
    $res = $inst->get("$ACME/tok_A-1", port => $inst->extra_port(1));
    is("$res->{status} $res->{content}", "200 site\n", 'the server with off does not');
    $inst->no_bad_log_lines;
    $inst->stop;
};

subtest 'in a full zone: a set that fits alone replaces the old one, a larger one is a 507' => sub {
    my $inst = PortalGate::Test->new(zone => '64k',
                                     server => 'portal_gate_acme_challenge on;');
    $inst->start;
    my $snap = {revision => 1, environments => {production => {
        f => {allow => [map { sprintf 'company%05d', $_ } 1 .. 100]}}}};
    # (100 ids: an index and a one-page piece, as many pages as the single
    # blob of 300 ids took before the snapshot was cut into pieces)
    is($inst->put_snapshot($snap)->{status}, 200, 'a snapshot takes part of the 64k zone');
    my %a = map { sprintf('a%03d', $_) => 'k' x 256 } 1 .. 80;
    my %b = map { sprintf('b%03d', $_) => 'k' x 256 } 1 .. 80;
    is($inst->api('PUT', 'challenges', encode_json(\%a))->{status}, 200,
       '80 long challenges fill it');
    is($inst->api('PUT', 'challenges', encode_json(\%b))->{status}, 200,
       '80 others replace them, though both do not fit side by side');
    is_deeply($inst->api('GET', 'challenges')->{json}{challenges}, \%b,
              'the new set is in');
    my %max = map { sprintf('t%03d', $_) => 'k' x 256 } 1 .. 128;
    for my $try (1, 2) {
        my $res = $inst->api('PUT', 'challenges', encode_json(\%max));
        is($res->{status}, 507, "128 long ones: 507 (try $try)");
        like($res->{json}{error} // '',
             qr/the zone has no room for 128 challenges; enlarge portal_gate_zone/,
             '  saying so');
    }
    is(scalar(() = $inst->log_lines(qr/\[error\].*has no room for 128 acme challenges/)),
       1, 'logged once, not at every try') or diag($inst->error_log);
    is_deeply($inst->api('GET', 'challenges')->{json}{challenges}, \%b,
              'the old set stays');
    is($inst->get("$ACME/b080")->{content}, 'k' x 256, 'and served');
    is($inst->snapshot->{revision}, 1, 'and the snapshot');
    $inst->no_bad_log_lines;
    $inst->stop;
};

subtest 'a PUT an old worker finishes after a resizing reload gets 503' => sub {
    my $inst = PortalGate::Test->new(server => 'portal_gate_acme_challenge on;');
    $inst->start;
    is($inst->api('PUT', 'challenges', encode_json(\%set))->{status}, 200,
       'a set is in');

    # an old worker takes the request; its body arrives after the reload
    my $body = encode_json({'tok_D-4' => 'tok_D-4.t'});
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $inst->port, Proto => 'tcp',
                                  Timeout => 5 * $SLOW) or die "connect: $!";
    binmode $s;
    print {$s} "PUT /portal-gate/challenges HTTP/1.1\r\nHost: localhost\r\n"
             . "Connection: close\r\nContent-Length: " . length($body)
             . "\r\n\r\n" . substr($body, 0, 5);
    $s->flush;
    # until a worker has accepted it: one still in the listen queue at the
    # reload would go to a new worker, and answer 200
    my $wait = time + 10 * $SLOW;
    sleep 0.02 until $inst->holder($s) || time > $wait;
    ok($inst->holder($s), 'a worker of the old cycle took the request');

    my %old = map { $_ => 1 } $inst->workers;
    $inst->reload(zone => '8m', old_busy => 1);
    print {$s} substr($body, 5);
    $s->flush;
    my ($raw, $sel) = ('', IO::Select->new($s));
    while ($sel->can_read(10 * $SLOW)) {
        last unless sysread($s, $raw, 65536, length $raw);
    }
    close $s;
    like($raw, qr{^HTTP/1\.1 503 }, 'the old worker answers 503, not 200');
    like($raw, qr/send the challenges again/, 'saying to send them again');

    my $deadline = time + 10 * $SLOW;
    while (grep({ $old{$_} } $inst->workers) && time < $deadline) { sleep 0.05 }
    is_deeply($inst->api('GET', 'challenges')->{json}{challenges}, \%set,
              'the new zone has the set from before the reload');
    is($inst->api('PUT', 'challenges', $body)->{status}, 200,
       'sent again, it applies');
    is($inst->get("$ACME/tok_D-4")->{content}, 'tok_D-4.t', 'and is served');
    $inst->no_bad_log_lines;
    $inst->stop;
};

subtest 'nginx -t refuses a bad portal_gate_acme_challenge' => sub {
    my $zone = 'portal_gate_zone zone=pg:1m;';
    my @cases = (
        ["$zone server { listen 127.0.0.1:1; portal_gate_acme_challenge yes; }",
         qr/invalid value "yes" in "portal_gate_acme_challenge" directive, it must be "on" or "off"/],
        ["$zone server { listen 127.0.0.1:1; portal_gate_acme_challenge; }",
         qr/invalid number of arguments in "portal_gate_acme_challenge" directive/],
        ["$zone server { listen 127.0.0.1:1; portal_gate_acme_challenge on off; }",
         qr/invalid number of arguments in "portal_gate_acme_challenge" directive/],
        ["$zone server { listen 127.0.0.1:1; location / { portal_gate_acme_challenge on; } }",
         qr/"portal_gate_acme_challenge" directive is not allowed here/],
        ["$zone server { listen 127.0.0.1:1; portal_gate_acme_challenge on; portal_gate_acme_challenge off; }",
         qr/"portal_gate_acme_challenge" directive is duplicate/],
        ["server { listen 127.0.0.1:1; portal_gate_acme_challenge on; }",
         qr/"portal_gate_acme_challenge" is used, but no "portal_gate_zone" is defined in the http block/],
    );
    for my $c (@cases) {
        my ($conf, $re) = @$c;
        my ($rc, $out) = nginx_t($conf);
        isnt($rc, 0, 'refused: ' . substr($conf, 0, 70));
        like($out, $re, '  with the expected message') or diag($out);
    }
    my ($rc, $out) = nginx_t("server { listen 127.0.0.1:1; portal_gate_acme_challenge off; }");
    is($rc, 0, 'off needs no zone') or diag($out);
    ($rc, $out) = nginx_t("$zone portal_gate_acme_challenge on; server { listen 127.0.0.1:1; }");
    is($rc, 0, 'on at the http level passes') or diag($out);
};

done_testing;
