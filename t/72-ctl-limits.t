# portal-gatectl at the store's limits, against a real redis-server: long
# allow and deny lists, and the limits of the core (flags per environment,
# environments, the revision), which concurrent writers must not pass.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp ();
use JSON::PP;
use POSIX ();
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

my $FLAG = '{"enabled":true,"rollout":0,"allow":[],"deny":[]}';

# $n flags named f1..f$n in the hash $key, in one round trip
sub fill {
    my ($key, $n) = @_;
    $rs->cli('EVAL', "for i = 1, $n do redis.call('HSET', KEYS[1], 'f' .. i,"
             . " ARGV[1]) end", 1, $key, $FLAG);
}

subtest 'concurrent creates never pass the flags limit of an environment' => sub {
    $rs->cli('DEL', 'portal-gate:flags:production');
    fill('portal-gate:flags:production', 4094);
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    my @pids;
    for my $i (1 .. 16) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my $r = $rs->ctl('create', "race$i");
            open my $fh, '>', "$dir/$i" or POSIX::_exit(1);
            print {$fh} "$r->{exit}\n$r->{err}";
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    waitpid $_, 0 for @pids;

    my (%exit, @refusals);
    for my $i (1 .. 16) {
        open my $fh, '<', "$dir/$i" or die "$dir/$i: $!";
        my ($code, $err) = split /\n/, do { local $/; <$fh> }, 2;
        $exit{$code}++;
        push @refusals, $err if $code == 1;
    }
    is($rs->cli('HLEN', 'portal-gate:flags:production'), 4096,
       'the environment holds 4096 flags, the most it may');
    is_deeply(\%exit, {0 => 2, 1 => 14}, 'two creates succeed, 14 exit 1');
    is(scalar(grep { /cannot create flag "race\d+" in production: it holds 4096 flags, the most an environment may hold/ }
              @refusals), 14, 'each refusal says why')
        or diag(join '', @refusals);
    unlike(join('', @refusals), qr/AddressSanitizer|runtime error/,
           'no sanitizer report');

    my $r = ctl('create', 'one_more');
    exits($r, 1, 'a create at the limit');
    like($r->{err}, qr/cannot create flag "one_more" in production: it holds 4096 flags/,
         'says why');
    my $rev = $rs->cli('GET', 'portal-gate:revision');
    exits(ctl('kill', 'f1'), 0, 'a kill at the limit still goes through');
    is($rs->cli('GET', 'portal-gate:revision'), $rev + 1, 'and is written');
    $rs->cli('DEL', 'portal-gate:flags:production');
};

subtest 'a create never passes the environments limit of the store' => sub {
    # the prefix has glob characters: the script counts this store's
    # environments only, not those of a prefix that the glob would match
    my $p = 'p*[1]?:';
    exits(ctl('-p', $p, 'init'), 0, 'init under a prefix with glob characters');
    # a store made before environments were recorded: its environments
    # are its flags: hashes, and production and staging
    $rs->cli('DEL', "${p}environments");
    fill("${p}flags:e$_", 1) for 1 .. 63;
    fill("pxx1y:flags:other$_", 1) for 1 .. 5;
    $rs->cli('SET', "${p}flags:not_a_hash", 'x');

    my $r = ctl('-p', $p, 'create', 'x');
    exits($r, 0, 'the 64th environment (production)');
    $r = ctl('-p', $p, '-e', 'staging', 'create', 'x');
    exits($r, 1, 'a 65th environment (staging)');
    like($r->{err}, qr/cannot create flag "x" in staging: the store holds 64 environments, the most it may hold/,
         'says why');
    is($rs->cli('EXISTS', "${p}flags:staging"), 0, 'and wrote nothing');
    exits(ctl('-p', $p, '-e', 'e63', 'create', 'y'), 0,
          'a new flag in an environment that exists');
    $r = ctl('-p', $p, 'env', 'add', 'e65');
    exits($r, 1, 'env add past the limit');
    like($r->{err}, qr/cannot add environment "e65": the store holds 65 environments, the most it may hold/,
         'says why (production, staging and 63 others)');
    is($rs->cli('EXISTS', "${p}environments"), 0, 'and wrote nothing');
};

subtest 'env add never passes the environments limit of the store' => sub {
    my $p = 'envs:';
    exits(ctl('-p', $p, 'init'), 0, 'init: production and staging');
    exits(ctl('-p', $p, 'env', 'add', "e$_"), 0, "env add e$_") for 3 .. 64;
    my $r = ctl('-p', $p, 'env', 'add', 'e65');
    exits($r, 1, 'a 65th');
    like($r->{err}, qr/cannot add environment "e65": the store holds 64 environments, the most it may hold/,
         'says why');
    is($rs->cli('HLEN', "${p}environments"), 64, '64 environments');
};

subtest 'no write takes the revision past the highest an edge accepts' => sub {
    exits(ctl('create', 'rev'), 0, 'create');
    $rs->cli('SET', 'portal-gate:revision', '9007199254740990');
    exits(ctl('kill', 'rev'), 0, 'a write to 2^53 - 1');
    is($rs->cli('GET', 'portal-gate:revision'), '9007199254740991',
       'the revision is 2^53 - 1');
    my $r = ctl('on', 'rev');
    exits($r, 1, 'a write past it');
    like($r->{err}, qr/cannot change flag "rev" in production: the store's revision is 9007199254740991, the highest an edge accepts/,
         'says why');
    is($rs->cli('GET', 'portal-gate:revision'), '9007199254740991',
       'the revision stays');
    is(flag_json('rev')->{enabled}, JSON::PP::false, 'and the flag too');
};

done_testing;
