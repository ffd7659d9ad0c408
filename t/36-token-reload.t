# Company tokens over time: key rotation across nginx -s reload (old and
# new valid while both are listed, the old refused once removed), a reload
# with a broken keys file that leaves the running configuration serving,
# and each worker's cache of verified tokens honouring exp.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use PortalGate::Test qw(require_module);
use PortalGate::Token;

require_module();

my $SLOW = $ENV{PG_TEST_SLOW} // 1;

my $keys = PortalGate::Token->new;
$keys->add(es256 => 'old');
$keys->add(es256 => 'new');
$keys->add(hs256 => 'hs');

my $ng = PortalGate::Test->new(server => <<'CONF');
        location /portal/ {
            portal_gate_company_token $cookie_pg_company keys=%%DIR%%/keys.json;
            portal_gate customer_portal;
            add_header X-Token-Error $portal_gate_token_error always;
            return 200 "portal\n";
        }
CONF

my $jwks = $ng->dir . '/keys.json';
$keys->write_jwks($jwks, qw(old hs));
$ng->start;

is($ng->put_snapshot({revision => 1, environments => {production => {
    customer_portal => {rollout => 0, allow => ['1001']}}}})->{status},
   200, 'the snapshot allows company 1001');

sub claims { return {cid => '1001', exp => int(time) + 600, @_} }

# [status, $portal_gate_token_error] for a token in the cookie
sub gate {
    my ($token) = @_;
    my $r = $ng->get('/portal/', headers => {Cookie => "pg_company=$token"});
    return [$r->{status}, $r->{headers}{'x-token-error'} // ''];
}

# one worker: the token asked twice, the second answer from its cache
sub gate_all {
    my ($token) = @_;
    my %seen;
    $seen{join ' ', @{ gate($token) }}++ for 1 .. 2;
    return [sort keys %seen];
}

my $old = $keys->mint(old => claims());
my $new = $keys->mint(new => claims());

subtest 'before the rotation: the old key only' => sub {
    is_deeply(gate_all($old), ['200 '], 'a token of the old key: valid');
    is_deeply(gate_all($new), ['404 unknown_kid'],
              'a token of the new key: unknown_kid');
};

subtest 'both keys listed, reload: both valid' => sub {
    $keys->write_jwks($jwks, qw(old new hs));
    $ng->reload;
    is_deeply(gate_all($old), ['200 '], 'the old key\'s token');
    is_deeply(gate_all($new), ['200 '], 'the new key\'s token');
};

subtest 'the old key removed, reload: its tokens are refused' => sub {
    $keys->write_jwks($jwks, qw(new hs));
    $ng->reload;
    is_deeply(gate_all($old), ['404 unknown_kid'],
              'the old key\'s token, valid a moment ago (and cached): '
              . 'unknown_kid');
    is_deeply(gate_all($new), ['200 '], 'the new key\'s token');
};

subtest 'a reload with a broken keys file: refused, the old one serves' => sub {
    my $before = () = $ng->log_lines(qr/invalid keys file/);
    open my $fh, '>', $jwks or die "$jwks: $!";
    print {$fh} '{"keys": [{"kty": "RSA", "kid": "r"}]}';
    close $fh;

    my @workers = $ng->workers;
    kill 'HUP', $ng->pid;

    my $deadline = time + 10 * $SLOW;
    my @lines;
    until ((@lines = $ng->log_lines(qr/invalid keys file/)) > $before
           || time > $deadline) {
        sleep 0.05;
    }

    like($lines[-1] // '', qr/\[emerg\].*invalid keys file "\Q$jwks\E": key 1 \("r"\): kty "RSA" is not supported/,
         'the reload is refused, naming the file and the reason');
    is_deeply([$ng->workers], \@workers, 'the same workers serve');
    is_deeply(gate_all($new), ['200 '], 'tokens of the new key still pass');
    is_deeply(gate_all($old), ['404 unknown_kid'],
              'and the old key is still gone');

    $keys->write_jwks($jwks, qw(new hs));
};

subtest 'a cached token stops working when it expires' => sub {
    # exp a few seconds ahead (more under valgrind: the four requests
    # must come before it): verified once, then answered from the
    # worker's cache; the same token (an ES256 signature is random: never
    # minted again) must stop working when exp passes
    my $exp = int(time) + 2 + 2 * $SLOW;
    my %token = map { $_ => $keys->mint($_ => claims(exp => $exp)) }
                qw(new hs);
    for my $kid (qw(new hs)) {
        is_deeply(gate($token{$kid}), [200, ''], "$kid: valid before exp");
        is_deeply(gate($token{$kid}), [200, ''], "$kid: valid again (cached)");
    }

    sleep 0.05 while time < $exp + 0.2;

    for my $kid (qw(new hs)) {
        is_deeply(gate($token{$kid}), [404, 'expired'],
                  "$kid: expired once exp has passed");
        is_deeply(gate($token{$kid}), [404, 'expired'],
                  "$kid: and after that too");
    }
    ok(scalar $ng->log_lines(qr/\[info\].*token rejected: expired: expired at $exp/),
       'the expiry is logged');
};
my @bad = grep { !/invalid keys file/ }
          $ng->log_lines(qr/\[(?:crit|alert|emerg)\]/);
is_deeply(\@bad, [], 'no [crit], [alert] or [emerg] line but the refused '
                     . 'reload\'s');

done_testing();
