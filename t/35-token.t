# Trusted company identity: where portal_gate_company_token applies, the
# company is the claim of a token the application signed, HS256 or ES256,
# and nothing else. Every way a token can be wrong is no company, with its
# word in $portal_gate_token_error and one [info] line that never holds
# the token.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use PortalGate::Test qw(require_module);
use PortalGate::Token qw(b64url tamper_payload);

require_module();

my $keys = PortalGate::Token->new;
$keys->add(hs256 => 'hs1');
$keys->add(es256 => 'es1');
$keys->add(es256 => 'other');      # never in the edge's JWKS

my $headers = join "\n", map { "add_header X-$_->[0] \$$_->[1] always;" }
    ['Company', 'portal_gate_company'], ['Token-Error', 'portal_gate_token_error'],
    ['Reason', 'portal_gate_reason'];

my $ng = PortalGate::Test->new(server => <<"CONF");
        location /portal/ {
            portal_gate_company_token \$cookie_pg_company keys=%%DIR%%/keys.json;
            portal_gate customer_portal;
            $headers
            return 200 "portal\\n";
        }
        location /org/ {
            portal_gate_company_token \$http_x_company_token
                                      keys=%%DIR%%/keys.json claim=org leeway=30s;
            portal_gate customer_portal;
            $headers
            return 200 "org\\n";
        }
        location /route/ {
            portal_gate_company_token \$cookie_pg_company keys=%%DIR%%/keys.json;
            return 200 "\$portal_flag_customer_portal [\$portal_gate_token_error]\\n";
        }
        location /plain/ {
            portal_gate customer_portal;
            $headers
            return 200 "plain\\n";
        }
CONF

$keys->write_jwks($ng->dir . '/keys.json', qw(hs1 es1));
$ng->start;

is($ng->put_snapshot({revision => 1, environments => {production => {
    customer_portal => {rollout => 0, allow => ['1001', 'acme']}}}})->{status},
   200, 'the snapshot allows companies 1001 and acme');

sub claims { return {cid => '1001', iat => time, exp => time + 600, @_} }

# GET with the token as the pg_company cookie: [status, company, error, reason]
sub gate {
    my ($path, $token, %o) = @_;
    my %h = %{ $o{headers} // {} };
    $h{Cookie} = "pg_company=$token" if defined $token;
    my $r = $ng->get($path, headers => \%h);
    return [$r->{status}, map { $_ // '' }
            @{ $r->{headers} }{qw(x-company x-token-error x-reason)}];
}

my @logged;     # the rejections' words, in order, to find in the log

subtest 'a valid HS256 token: the company is its cid' => sub {
    is_deeply(gate('/portal/', $keys->mint(hs1 => claims())),
              [200, '1001', '', 'allowed']);
};

subtest 'a valid ES256 token: the company is its cid' => sub {
    is_deeply(gate('/portal/', $keys->mint(es1 => claims())),
              [200, '1001', '', 'allowed']);
};

subtest 'a cid written as a JSON integer is its decimal string' => sub {
    is_deeply(gate('/portal/', $keys->mint(es1 => claims(cid => 1001))),
              [200, '1001', '', 'allowed']);
};

subtest 'a valid token of a company not allowed: its company, gate off' => sub {
    is_deeply(gate('/portal/', $keys->mint(hs1 => claims(cid => 'globex'))),
              [404, 'globex', '', 'rollout']);
};

subtest 'no token: no company, "missing", not logged' => sub {
    is_deeply(gate('/portal/'), [404, '', 'missing', 'no_company']);
    is_deeply(gate('/portal/', ''), [404, '', 'missing', 'no_company'],
              'an empty cookie too');
};

subtest 'X-Company-Id is ignored where the token applies' => sub {
    is_deeply(gate('/portal/', undef, headers => {'X-Company-Id' => '1001'}),
              [404, '', 'missing', 'no_company'], 'X-Company-Id alone');
    is_deeply(gate('/portal/', $keys->mint(hs1 => claims(cid => 'globex')),
                   headers => {'X-Company-Id' => '1001'}),
              [404, 'globex', '', 'rollout'], 'beside a token of another company');
    is_deeply(gate('/plain/', undef, headers => {'X-Company-Id' => '1001'}),
              [200, '1001', '', 'allowed'],
              'and still used by a location without the directive');
};

# every rejection: [name, token, word]
my $now = time;
my $good = $keys->mint(es1 => claims());
my ($h, $p, $s) = split /\./, $good;
my $x = $keys->jwk('es1')->{x};

my @bad = (
    ['bad base64url in the payload', "$h.$p+.$s", 'malformed'],
    ['base64 padding on the signature', "$good=", 'malformed'],
    ['two parts', "$h.$p", 'malformed'],
    ['a payload that is not JSON, signed',
     $keys->mint(hs1 => '{"cid":"1001","exp":'), 'malformed'],
    ['a payload with a duplicate cid, signed',
     $keys->mint(hs1 => '{"cid":"1002","exp":' . ($now + 600)
                        . ',"cid":"1001"}'), 'malformed'],
    ['a header with a duplicate alg',
     $keys->mint(hs1 => claims(), header => '{"alg":"none","kid":"hs1",'
                                          . '"alg":"HS256"}'), 'malformed'],
    ['a token over 4 KiB',
     $keys->mint(hs1 => claims(pad => 'x' x 3100)), 'malformed'],
    ['alg none, no signature',
     $keys->mint(hs1 => claims(), header => '{"alg":"none","kid":"hs1"}',
                 none => 1), 'alg'],
    ['HS256 keyed with the ES256 key\'s x (switched alg)',
     $keys->mint(es1 => claims(), header => '{"alg":"HS256","kid":"es1"}',
                 hmac => $x), 'alg'],
    ['RS256', $keys->mint(hs1 => claims(), header => '{"alg":"RS256",'
                                                    . '"kid":"hs1"}'), 'alg'],
    ['a kid the JWKS does not list', $keys->mint(other => claims()),
     'unknown_kid'],
    ['no kid', $keys->mint(hs1 => claims(), header => '{"alg":"HS256"}'),
     'unknown_kid'],
    ['the payload changed under the signature',
     tamper_payload($good, claims(cid => 'acme')), 'signature'],
    ['the signature changed',
     "$h.$p." . (substr($s, 0, 10) =~ tr/A-Za-z/B-ZAb-za/r) . substr($s, 10),
     'signature'],
    ['an ES256 signature in DER', $keys->mint(es1 => claims(), der => 1),
     'signature'],
    ['expired a minute ago',
     $keys->mint(hs1 => claims(exp => $now - 60)), 'expired'],
    ['not valid for another minute',
     $keys->mint(hs1 => claims(nbf => $now + 60)), 'not_yet_valid'],
    ['no exp', $keys->mint(hs1 => {cid => '1001'}), 'claim'],
    ['no cid', $keys->mint(hs1 => {exp => $now + 600}), 'claim'],
    ['a cid that is no company id',
     $keys->mint(es1 => claims(cid => 'acme corp')), 'claim'],
    ['a cid of 65 characters',
     $keys->mint(es1 => claims(cid => 'c' x 65)), 'claim'],
);

for my $case (@bad) {
    my ($name, $token, $word) = @$case;
    subtest "$name: no company, \"$word\"" => sub {
        is_deeply(gate('/portal/', $token,
                       headers => {'X-Company-Id' => '1001'}),
                  [404, '', $word, 'no_company']);
    };
    push @logged, [$name, $token, $word];
}

subtest 'the leeway lets a token a little past exp or before nbf in' => sub {
    my $r = $ng->get('/org/', headers => {'X-Company-Token' =>
        $keys->mint(hs1 => {org => 'acme', exp => $now - 10})});
    is_deeply([$r->{status}, $r->{headers}{'x-company'}], [200, 'acme'],
              'exp 10 s ago, leeway 30s: valid');
    $r = $ng->get('/org/', headers => {'X-Company-Token' =>
        $keys->mint(es1 => {org => 'acme', exp => $now + 600,
                            nbf => $now + 10})});
    is_deeply([$r->{status}, $r->{headers}{'x-company'}], [200, 'acme'],
              'nbf 10 s ahead, leeway 30s: valid');
    $r = $ng->get('/org/', headers => {'X-Company-Token' =>
        $keys->mint(hs1 => {org => 'acme', exp => $now - 120})});
    is_deeply([$r->{status}, $r->{headers}{'x-token-error'}], [404, 'expired'],
              'exp 2 min ago, leeway 30s: expired');
    is_deeply(gate('/portal/', $keys->mint(hs1 => claims(exp => $now - 10))),
              [404, '', 'expired', 'no_company'],
              'exp 10 s ago where there is no leeway: expired');
};

subtest 'claim=org: the company is the org claim, cid is not looked at' => sub {
    my $r = $ng->get('/org/', headers => {'X-Company-Token' =>
        $keys->mint(es1 => claims(org => 'acme', cid => 'globex'))});
    is_deeply([$r->{status}, $r->{headers}{'x-company'}], [200, 'acme']);
    $r = $ng->get('/org/', headers => {'X-Company-Token' =>
        $keys->mint(es1 => claims())});
    is_deeply([$r->{status}, $r->{headers}{'x-token-error'}], [404, 'claim'],
              'a token with only cid: "claim"');
};

subtest '$portal_flag_NAME takes the token\'s company too, without a gate' => sub {
    is($ng->get('/route/', headers => {Cookie => 'pg_company='
        . $keys->mint(hs1 => claims())})->{content}, "1 []\n",
       'a valid token: 1');
    is($ng->get('/route/', headers => {'X-Company-Id' => '1001'})->{content},
       "0 [missing]\n", 'X-Company-Id alone: 0');
    is($ng->get('/route/', headers => {Cookie => 'pg_company='
        . $keys->mint(other => claims())})->{content}, "0 [unknown_kid]\n",
       'a token of an unknown key: 0');
};

subtest 'each rejection is logged once at info, with its word' => sub {
    for my $case (@logged) {
        my ($name, $token, $word) = @$case;
        ok(scalar $ng->log_lines(qr/\[info\].*portal gate token rejected: \Q$word\E: /),
           "\"$word\" ($name) is in the log");
    }
    my @missing = $ng->log_lines(qr/token rejected: missing/);
    is(scalar @missing, 0, 'a missing token is not logged');
};

subtest 'the error log never holds a token' => sub {
    my $log = $ng->error_log;
    my @found;
    for my $case (@logged) {
        my (undef, $token) = @$case;
        for my $part (grep { length > 8 } split /\./, $token) {
            push @found, $part if index($log, $part) >= 0;
        }
    }
    is_deeply(\@found, [], 'no header, payload or signature of a token');
    $ng->no_bad_log_lines;
};

done_testing();
