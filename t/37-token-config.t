# nginx -t and portal_gate_company_token: the directive's arguments, and the
# JWKS file it reads, refused with a message that names what is wrong (and
# the file); good ones accepted; a JWKS with private keys accepted with a
# warning.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use POSIX qw(mkfifo);
use Test::More;
use PortalGate::Test qw(nginx_t require_module);
use PortalGate::Token;

require_module();

my $keys = PortalGate::Token->new;
$keys->add(hs256 => 'hs1');
$keys->add(es256 => 'es1');

# the JWKS files every case may name, in a folder of their own
my $kd = tempdir('portal-gate-jwks-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $kd;

sub write_file {
    my ($name, $text) = @_;
    open my $fh, '>', "$kd/$name" or die "$kd/$name: $!";
    print {$fh} $text;
    close $fh;
    return "$kd/$name";
}

my $good = write_file('good.json', $keys->jwks);
my $private = write_file('private.json', $keys->jwks('private'));
mkfifo("$kd/fifo", 0600) or die "mkfifo: $!";

my $zone = 'portal_gate_zone zone=pg:1m;';

sub in_location {
    my ($directives) = @_;
    return "$zone\nserver { listen 127.0.0.1:1; location / { $directives } }";
}

subtest 'a configuration with the directive at every level passes' => sub {
    my ($rc, $out) = nginx_t(<<"CONF");
    $zone
    portal_gate_company_token \$cookie_pg_company keys=$good;
    server {
        listen 127.0.0.1:1;
        portal_gate_company_token \$http_x_token keys=$good claim=org
                                  leeway=90s;
        location /a/ { portal_gate customer_portal; return 200; }
        location /b/ { portal_gate_company_token "\$cookie_a\$cookie_b"
                                                 keys=$good leeway=1h; }
        location /c/ { portal_gate_company_token \$cookie_c keys=$good
                           claim=https://example.com/company leeway=0; }
        location /d/ { return 200 "\$portal_gate_token_error\\n"; }
    }
CONF
    is($rc, 0, 'exit 0') or diag($out);
    unlike($out, qr/\[(?:warn|emerg|alert)\]/, 'not a warning');
};

subtest 'a relative keys= is found beside nginx.conf' => sub {
    my ($rc, $out, $dir) = nginx_t(in_location(
        'portal_gate_company_token $cookie_t keys=keys/edge.json;'));
    like($out, qr/invalid keys file "\Q$dir\E\/keys\/edge\.json": cannot open it: No such file or directory/,
         'the path is the configuration folder\'s') or diag($out);
};

subtest 'private ES256 keys: accepted, with a warning' => sub {
    my ($rc, $out) = nginx_t(in_location(
        "portal_gate_company_token \$cookie_t keys=$private;"));
    is($rc, 0, 'exit 0') or diag($out);
    like($out, qr/\[warn\].*keys file "\Q$private\E" holds 1 ES256 private key \("d"\), which the edge does not use: give it the public JWKS/,
         'the warning says what to do');
};

my %jwks = (
    'not JSON' => ['{"keys": [', qr/not JSON: line 1 column \d+/],
    'an empty file' => ['', qr/not JSON: line 1 column 0/],
    'no keys' => ['{"keys": []}', qr/\bno keys in /],
    'an RSA key' => ['{"keys": [{"kty": "RSA", "kid": "r", "n": "x", '
                     . '"e": "AQAB"}]}',
                     qr/key 1 \("r"\): kty "RSA" is not supported: "oct" \(HS256\) or "EC" \(ES256\)/],
    'a P-384 key' => ['{"keys": [{"kty": "EC", "kid": "e", "crv": "P-384", '
                      . '"x": "AA", "y": "AA"}]}',
                      qr/key 1 \("e"\): crv "P-384" is not supported/],
    'a key without kid' => ['{"keys": [{"kty": "oct", "k": "'
                            . ('A' x 43) . '"}]}',
                            qr/key 1: "kid" is missing or not a string/],
    'the same kid twice' => [
        '{"keys": [' . join(',', ('{"kty": "oct", "kid": "k", "k": "'
                                  . ('A' x 43) . '"}') x 2) . ']}',
        qr/kid "k" is listed twice \(keys 1 and 2\)/],
    'a short secret' => ['{"keys": [{"kty": "oct", "kid": "k", '
                         . '"k": "c2VjcmV0"}]}',
                         qr/key 1 \("k"\): "k" is 6 bytes: an HS256 secret needs at least 32/],
    'alg none on a key' => ['{"keys": [{"kty": "oct", "kid": "k", "alg": '
                            . '"none", "k": "' . ('A' x 43) . '"}]}',
                            qr/alg "none" does not fit kty "oct": HS256/],
    'use enc' => ['{"keys": [{"kty": "oct", "kid": "k", "use": "enc", '
                  . '"k": "' . ('A' x 43) . '"}]}',
                  qr/use "enc": only "sig" keys verify tokens/],
    'a point off the curve' => [
        '{"keys": [{"kty": "EC", "kid": "e", "crv": "P-256", "x": "'
        . $keys->jwk('es1')->{y} . '", "y": "' . $keys->jwk('es1')->{x}
        . '"}]}', qr/key 1 \("e"\): \(x, y\) is not a point on P-256/],
    'a duplicate member' => ['{"keys": [], "keys": []}',
                             qr/not JSON: .*duplicate object key/],
    'a typo' => ['{"keys": [{"kty": "oct", "kid": "k", "kk": "x"}]}',
                 qr/unknown member "kk" for kty "oct"/],
    'over 64 KiB' => ['{"keys": []}' . (' ' x 65536),
                      qr/65548 bytes: a JWKS file is at most 65536/],
);

for my $name (sort keys %jwks) {
    my ($text, $want) = @{ $jwks{$name} };
    (my $file = $name) =~ s/\W+/-/g;
    my $path = write_file("$file.json", $text);
    subtest "a JWKS file with $name is refused" => sub {
        my ($rc, $out) = nginx_t(in_location(
            "portal_gate_company_token \$cookie_t keys=$path;"));
        isnt($rc, 0, 'nginx -t fails');
        like($out, qr/\[emerg\].*invalid keys file "\Q$path\E": .*$want/,
             'the file and the reason') or diag($out);
    };
}

my @bad = (
    ['no keys=', 'portal_gate_company_token $cookie_t;',
     qr/"portal_gate_company_token" must have "keys" parameter/],
    ['no value', 'portal_gate_company_token;',
     qr/invalid number of arguments in "portal_gate_company_token"/],
    ['an empty value', "portal_gate_company_token '' keys=$good;",
     qr/empty token value: expected a variable such as \$cookie_NAME/],
    ['an unknown parameter',
     "portal_gate_company_token \$cookie_t keys=$good alg=ES256;",
     qr/invalid parameter "alg=ES256": expected keys=PATH, claim=NAME or leeway=TIME/],
    ['keys= twice',
     "portal_gate_company_token \$cookie_t keys=$good keys=$good;",
     qr/duplicate parameter "keys=/],
    ['an empty keys=', 'portal_gate_company_token $cookie_t keys=;',
     qr/empty keys file path in "keys="/],
    ['a missing keys file',
     "portal_gate_company_token \$cookie_t keys=$kd/none.json;",
     qr/invalid keys file "\Q$kd\E\/none.json": cannot open it: No such file or directory/],
    ['a folder as the keys file',
     "portal_gate_company_token \$cookie_t keys=$kd;",
     qr/invalid keys file "\Q$kd\E": not a regular file/],
    ['a FIFO as the keys file (refused, never read)',
     "portal_gate_company_token \$cookie_t keys=$kd/fifo;",
     qr/invalid keys file "\Q$kd\E\/fifo": not a regular file/],
    ['claim=exp',
     "portal_gate_company_token \$cookie_t keys=$good claim=exp;",
     qr/invalid claim "claim=exp": expected 1 to 128 printable characters without spaces or quotes, not exp, nbf or iat/],
    ['an empty claim=',
     "portal_gate_company_token \$cookie_t keys=$good claim=;",
     qr/invalid claim "claim="/],
    ['a claim with a space',
     "portal_gate_company_token \$cookie_t keys=$good 'claim=a b';",
     qr/invalid claim "claim=a b"/],
    ['a leeway that is no time',
     "portal_gate_company_token \$cookie_t keys=$good leeway=soon;",
     qr/invalid leeway "leeway=soon": expected a time such as 30s or 2m/],
    ['a leeway over an hour',
     "portal_gate_company_token \$cookie_t keys=$good leeway=2h;",
     qr/leeway "leeway=2h" is too large: at most 3600s; it absorbs clock skew/],
    ['the directive twice in a location',
     "portal_gate_company_token \$cookie_t keys=$good; "
     . "portal_gate_company_token \$cookie_u keys=$good;",
     qr/"portal_gate_company_token" directive is duplicate/],
);

for my $case (@bad) {
    my ($name, $directives, $want) = @$case;
    subtest "$name is refused" => sub {
        my ($rc, $out) = nginx_t(in_location($directives));
        isnt($rc, 0, 'nginx -t fails');
        like($out, qr/\[emerg\].*$want/, 'with the message') or diag($out);
    };
}

subtest 'the directive in the events block is refused' => sub {
    my ($rc, $out) = nginx_t(
        "events { portal_gate_company_token \$cookie_t keys=$good; }\n"
        . "http { }\n", main => 1);
    isnt($rc, 0, 'nginx -t fails');
    like($out, qr/"portal_gate_company_token" directive is not allowed here/);
};

done_testing();
