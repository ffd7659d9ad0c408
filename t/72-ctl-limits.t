# portal-gatectl at the store's limits, against a real redis-server: long
# allow and deny lists, and the limits of the core (flags per environment,
# environments, the revision), which concurrent writers must not pass.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use PortalGate::Redis qw(exits);

my $rs = PortalGate::Redis->new(db => 3);

sub ctl { $rs->ctl(@_) }

sub flag_json {
    my ($flag, $env) = @_;
    my $v = $rs->cli('HGET', 'portal-gate:flags:' . ($env // 'production'),
                     $flag);
    return $v eq '' ? undef : decode_json($v);
}

exits(ctl('init'), 0, 'init');

subtest 'allow and deny take 50,000 ids at once, each kept once, in order' => sub {
    exits(ctl('create', 'big'), 0, 'create');
    my @ids = map { sprintf 'c%06d', $_ } 1 .. 50_000;

    my $r = ctl('allow', 'big', @ids);
    exits($r, 0, 'allow 50,000 ids');
    like($r->{out}, qr/allow 0 -> 50000 \(revision \d+\)/, 'says how many');
    is_deeply(flag_json('big')->{allow}, \@ids, 'the list holds them all');

    $r = ctl('allow', 'big', @ids[0 .. 9], 'c050001', 'c050001', 'c000001');
    exits($r, 0, 'allow of ten listed ids and one new id given twice');
    like($r->{out}, qr/allow 50000 -> 50001/, 'adds the new one once');
    is(flag_json('big')->{allow}[-1], 'c050001', 'at the end');

    $r = ctl('allow', 'big', @ids);
    exits($r, 0, 'allow of 50,000 listed ids');
    like($r->{out}, qr/so already: nothing changed/, 'says nothing changed');

    $r = ctl('deny', 'big', reverse @ids);
    exits($r, 0, 'deny 50,000 ids');
    like($r->{out}, qr/deny 0 -> 50000/, 'says how many');
    is_deeply(flag_json('big')->{deny}, [reverse @ids], 'in the order given');

    $r = ctl('allow', 'big', @ids[0 .. 99], 'not valid');
    exits($r, 2, 'one invalid id among many');
    like($r->{err}, qr/invalid company id "not valid"/, 'names it');
};

subtest 'an id the list holds as a JSON number is listed already' => sub {
    $rs->cli('HSET', 'portal-gate:flags:production', 'numbers',
             '{"allow":[12,"x"]}');
    my $r = ctl('allow', 'numbers', '12', 'x');
    exits($r, 0, 'allow 12 x');
    like($r->{out}, qr/so already: nothing changed/, 'nothing changed');
    $r = ctl('allow', 'numbers', '12', '13');
    exits($r, 0, 'allow 12 13');
    is_deeply(flag_json('numbers')->{allow}, [12, 'x', '13'],
              'only 13 is added');
};

done_testing;
