# portal-gatectl token: the application's side of trusted identity. keygen
# adds keys to a JWKS (rotation: old keys stay), public gives what nginx's
# keys= reads (no ES256 private part), issue mints a company token, verify
# says what the edge makes of one, with the words of
# $portal_gate_token_error. No Redis, no config: the real portal-gatectl
# (ASan build) in a scratch folder.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use IPC::Open3 qw(open3);
use JSON::PP;
use Symbol qw(gensym);
use Test::More;

my $CTL = $ENV{PORTAL_GATECTL} || "$FindBin::Bin/../build/asan/portal-gatectl";
plan skip_all => "$CTL not built: run make unit" unless -x $CTL;

my $dir = tempdir('pg-token-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chdir $dir or die;

sub ctl {
    my $err = gensym;
    local $ENV{ASAN_OPTIONS} = 'detect_leaks=1:exitcode=23';
    my $pid = open3(my $in, my $out, $err, $CTL, @_);
    close $in;
    my $o = do { local $/; <$out> } // '';
    my $e = do { local $/; <$err> } // '';
    waitpid $pid, 0;
    return { exit => $? >> 8, out => $o, err => $e };
}

sub jwks {
    open my $fh, '<', $_[0] or return {};
    return decode_json(do { local $/; <$fh> });
}

subtest 'keygen makes a JWKS at 0600, adds keys, and refuses a kid twice' => sub {
    my $r = ctl('token', 'keygen', '--keys', 'keys.json', '--kid', 'k1');
    is($r->{exit}, 0, 'keygen exits 0') or diag(explain($r));
    like($r->{out}, qr/^added ES256 key k1 to keys\.json \(1 keys\)$/m, 'it says what it added');
    is((stat 'keys.json')[2] & 07777, 0600, 'the key file is 0600');
    my $k = jwks('keys.json')->{keys}[0];
    is_deeply([sort keys %$k], [qw(alg crv d kid kty use x y)],
              'an ES256 JWK with its private part');
    $r = ctl('token', 'keygen', '--keys', 'keys.json', '--kid', 'h1', '--alg', 'HS256');
    is($r->{exit}, 0, 'an HS256 key is added beside it');
    is(scalar @{ jwks('keys.json')->{keys} }, 2, 'the file holds both');
    $r = ctl('token', 'keygen', '--keys', 'keys.json', '--kid', 'k1');
    is($r->{exit}, 1, 'a kid already there is refused');
    like($r->{err}, qr/kid "k1" is listed twice/, 'saying so');
    is(scalar @{ jwks('keys.json')->{keys} }, 2, 'and the file is as it was');
    $r = ctl('token', 'keygen', '--keys', 'keys.json', '--alg', 'RS256');
    is($r->{exit}, 2, 'an algorithm other than ES256 and HS256 is a usage error');
};

subtest 'public: what nginx reads has no ES256 private part' => sub {
    my $r = ctl('token', 'public', '--keys', 'keys.json', '--out', 'nginx.json');
    is($r->{exit}, 0, 'public exits 0') or diag(explain($r));
    my @keys = @{ jwks('nginx.json')->{keys} };
    my ($es) = grep { $_->{kty} eq 'EC' } @keys;
    ok($es && !exists $es->{d}, 'the ES256 key is there without "d"');
    my ($hs) = grep { $_->{kty} eq 'oct' } @keys;
    ok($hs && exists $hs->{k}, 'the HS256 secret is there (it is shared by nature)');
    is((stat 'nginx.json')[2] & 07777, 0600, 'so the file is 0600 too');
};

subtest 'issue and verify: a token for a company, and what the edge makes of it' => sub {
    my $r = ctl('token', 'issue', '--keys', 'keys.json', '--company', 'acme-12',
                '--ttl', '10m', '--kid', 'k1');
    is($r->{exit}, 0, 'issue exits 0') or diag(explain($r));
    chomp(my $token = $r->{out});
    like($token, qr/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'a compact JWS');
    my ($h, $p) = map { decode_json(_b64url($_)) } (split /\./, $token)[0, 1];
    is_deeply([$h->{alg}, $h->{kid}], ['ES256', 'k1'], 'signed ES256 with k1');
    is($p->{cid}, 'acme-12', 'the company in "cid"');
    ok($p->{exp} - $p->{iat} == 600, 'valid 10 minutes');

    $r = ctl('token', 'verify', '--keys', 'nginx.json', $token);
    is($r->{exit}, 0, 'verify against the public keys exits 0');
    # what is left of its 600 s: a second or more may have passed since
    # the issue on a loaded machine
    my ($left) = $r->{out} =~ /^company acme-12, valid (\d+) s more$/m;
    ok(defined $left && $left <= 600 && $left >= 570,
       'and names the company, and what is left of its 10 minutes')
        or diag($r->{out});

    (my $tampered = $token) =~ s/\.([A-Za-z0-9_-])/'.' . ($1 eq 'A' ? 'B' : 'A')/e;
    $r = ctl('token', 'verify', '--keys', 'nginx.json', $tampered);
    is($r->{exit}, 1, 'a tampered token exits 1');
    like($r->{err}, qr/^portal-gatectl: refused: (signature|malformed|claim) \(/,
         'with the word the edge logs');

    $r = ctl('token', 'issue', '--keys', 'keys.json', '--company', 'acme-12',
             '--claim', 'company_id', '--kid', 'h1');
    chomp(my $hs = $r->{out});
    $r = ctl('token', 'verify', '--keys', 'nginx.json', $hs);
    is($r->{exit}, 1, 'a token with another claim is refused for cid');
    like($r->{err}, qr/refused: claim/, '... as claim');
    $r = ctl('token', 'verify', '--keys', 'nginx.json', '--claim', 'company_id', $hs);
    is($r->{exit}, 0, 'and taken with --claim company_id (HS256)');

    $r = ctl('token', 'issue', '--keys', 'keys.json', '--company', 'no spaces');
    is($r->{exit}, 1, 'a company id that is not one is refused');
    like($r->{err}, qr/invalid company id/, 'saying so');
    $r = ctl('token', 'issue', '--keys', 'nginx.json', '--company', 'x', '--kid', 'k1');
    is($r->{exit}, 1, 'the public file cannot sign with the ES256 key');
};

subtest 'usage: errors are one line and exit 2' => sub {
    for my $args (['token'], ['token', 'keygen'], ['token', 'mint', '--keys', 'k'],
                  ['token', 'issue', '--keys', 'keys.json', '--ttl', 'soon', '--company', 'x'],
                  ['token', 'issue', '--keys', 'keys.json', '--bogus'],
                  ['-r', 'redis://127.0.0.1:1/0', 'token', 'keygen']) {
        my $r = ctl(@$args);
        is($r->{exit}, 2, "@$args: exit 2");
        is(scalar(() = $r->{err} =~ /\n/g), 1, "@$args: one line ($r->{err})");
    }
    my $r = ctl('token', '-h');
    is($r->{exit}, 0, 'token -h exits 0');
    like($r->{out}, qr/^usage: portal-gatectl token COMMAND/, 'and prints the usage');
};

sub _b64url {
    my ($s) = @_;
    $s =~ tr{-_}{+/};
    $s .= '=' x ((4 - length($s) % 4) % 4);
    require MIME::Base64;
    return MIME::Base64::decode_base64($s);
}

done_testing;
