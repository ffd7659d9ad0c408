# The store's write scripts with values and stores that a hand edit, another
# tool or sheer size make odd: a value with a NUL byte is still killed and
# deleted; delete, unallow/undeny and the first flag of an environment are
# right on large stores (their speed is measured in bench/, not here).
# Real redis-server.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IPC::Open3 qw(open3);
use JSON::PP;
use Test::More;
use PortalGate::Redis qw(exits);

my $rs = PortalGate::Redis->new;

sub ctl { $rs->ctl(@_) }

# redis-cli -x: the last argument from stdin, bytes as they are (NUL too)
sub cli_x {
    my ($input, @args) = @_;
    my $pid = open3(my $in, my $out, undef, 'redis-cli', '-p', $rs->port,
                    '-x', @args);
    print $in $input;
    close $in;
    my $o = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    return $o;
}

# many commands at once through redis-cli's stdin (one line each)
sub cli_pipe {
    my ($text) = @_;
    my $pid = open3(my $in, my $out, undef, 'redis-cli', '-p', $rs->port);
    print $in $text;
    close $in;
    my $o = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    return $o;
}

exits(ctl('init'), 0, 'init');

subtest 'a value with a NUL byte is killed, then deleted' => sub {
    cli_x(qq({"enabled":true,"rollout":100}\0x), 'HSET',
          'portal-gate:flags:production', 'nul');
    like($rs->cli('HSTRLEN', 'portal-gate:flags:production', 'nul'),
         qr/^3\d$/, 'the value holds the NUL and what follows');

    my $r = ctl('--reason', 'INC-1', 'kill', 'nul');
    exits($r, 0, 'kill');
    unlike($r->{err}, qr/kept changing/, 'no CONFLICT loop');
    my $v = eval { decode_json($rs->cli('HGET',
                                        'portal-gate:flags:production',
                                        'nul')) } // {enabled => 1};
    ok(!$v->{enabled}, 'killed in Redis');

    cli_x(qq({"enabled":true}\0y), 'HSET', 'portal-gate:flags:production',
          'nul');
    $r = ctl('--reason', 'cleanup', 'delete', 'nul');
    exits($r, 0, 'delete');
    is($rs->cli('HEXISTS', 'portal-gate:flags:production', 'nul'), '0',
       'gone from Redis');
    my $a = eval { decode_json(ctl('audit', '--json', '--count', '1')
                               ->{out})->[0] } // {};
    is($a->{action}, 'delete', 'audited');
    like($a->{before} // '', qr/\0y|\\x00y/,
         'the audit shows the NUL byte');
};

subtest 'delete: refused exactly while a flag requires the one deleted' => sub {
    exits(ctl('create', 'base'), 0, 'create base');
    exits(ctl('create', 'victim'), 0, 'create victim');
    exits(ctl('create', 'other'), 0, 'create other');

    # large flags that require base, written compact as portal-gatectl does
    my @ids = map { sprintf 'company-%06d', $_ } 1 .. 20000;
    my $big = JSON::PP->new->canonical->encode(
        {enabled => JSON::PP::true, rollout => 0, allow => \@ids,
         deny => [], requires => 'base'});
    cli_pipe(join '', map {
        "HSET portal-gate:flags:production big$_ '$big'\n" } 1 .. 5);
    is($rs->cli('HLEN', 'portal-gate:flags:production'), 8, 'stored');

    # a description that holds the words, escaped as JSON does
    exits(ctl('set', 'other', 'description="requires":"victim"'), 0,
          'a description naming victim');

    my $r = ctl('--reason', 'r', 'delete', 'base');
    exits($r, 1, 'delete base');
    like($r->{err}, qr/flag "big\d" requires it/, 'says who requires it');

    # a value written by hand, with spaces, is read all the same
    $rs->cli('HSET', 'portal-gate:flags:production', 'hand',
             '{"enabled": true, "requires": "victim"}');
    $r = ctl('--reason', 'r', 'delete', 'victim');
    exits($r, 1, 'delete victim, required by a hand-written value');
    like($r->{err}, qr/flag "hand" requires it/, 'says who requires it');

    $rs->cli('HDEL', 'portal-gate:flags:production', 'hand');
    exits(ctl('--reason', 'r', 'delete', 'victim'), 0,
          'delete victim, which nobody requires');
    is($rs->cli('HEXISTS', 'portal-gate:flags:production', 'victim'), '0',
       'gone');
};

subtest 'a requires that makes a cycle, through a hand-written value' => sub {
    exits(ctl('create', 'c1'), 0, 'create c1');
    $rs->cli('HSET', 'portal-gate:flags:production', 'c2',
             '{"enabled": true, "requires": "c1"}');
    my $r = ctl('set', 'c1', 'requires=c2');
    exits($r, 2, 'set c1 requires=c2');
    like($r->{err}, qr/cycle.*c1 -> c2 -> c1/, 'names the cycle');
    $rs->cli('HDEL', 'portal-gate:flags:production', 'c2');
};

subtest 'unallow of 20,000 of 40,000 ids keeps exactly the others, in order' => sub {
    exits(ctl('create', 'wide'), 0, 'create wide');
    my @ids = map { sprintf 'id%06d', $_ } 1 .. 40000;
    # one id held as a JSON integer, one listed twice
    my $list = [@ids, 77, 'id000001'];
    cli_x(encode_json({enabled => JSON::PP::true, rollout => 0,
                       allow => $list, deny => []}),
          'HSET', 'portal-gate:flags:production', 'wide');
    my @gone = (grep({ $_ % 2 } 1 .. 40000));
    my $r = ctl('unallow', 'wide', (map { sprintf 'id%06d', $_ } @gone),
                '77', 'nobody');
    exits($r, 0, 'unallow 20,002 ids');
    like($r->{out}, qr/allow 40002 -> 20000 /, 'says the sizes');
    my $now = decode_json($rs->cli('HGET', 'portal-gate:flags:production',
                                   'wide'))->{allow};
    is_deeply($now, [map { sprintf 'id%06d', $_ } grep { !($_ % 2) }
                     1 .. 40000], 'the even ids stay, in their order');

    $r = ctl('undeny', 'wide', 'id000002');
    exits($r, 0, 'undeny of an id not denied');
    like($r->{out}, qr/has none of those ids in its deny list/,
         'nothing changed');
};

subtest 'the first flag of a recorded environment walks no keys' => sub {
    # other keys on a shared Redis: a SCAN inside the script would walk
    # them all with Redis blocked
    cli_pipe(join '', map { "SET other:key$_ x\n" } 1 .. 2000);
    exits(ctl('env', 'add', 'eu'), 0, 'env add eu');
    $rs->cli('CONFIG', 'RESETSTAT');
    exits(ctl('-e', 'eu', 'create', 'first'), 0, 'the first flag of eu');
    my $stats = $rs->cli('INFO', 'commandstats');
    unlike($stats, qr/cmdstat_scan:/, 'no SCAN');
    like($stats, qr/cmdstat_eval:calls=1,/, 'one script');
    ok(decode_json($rs->cli('HGET', 'portal-gate:flags:eu', 'first')),
       'the flag is there');
};

subtest 'one broken value blocks no create, nor a set requires=, beside it' => sub {
    exits(ctl('-e', 'staging', 'create', 'base2'), 0, 'create base2');
    $rs->cli('HSET', 'portal-gate:flags:staging', 'legacy',
             '{"enabled":true,"rolout":5}');
    my $r = ctl('-e', 'staging', 'create', 'new_feature');
    exits($r, 0, 'create beside a broken value');
    ok(decode_json($rs->cli('HGET', 'portal-gate:flags:staging',
                            'new_feature')), 'created');
    $r = ctl('-e', 'staging', 'set', 'new_feature', 'requires=base2');
    exits($r, 0, 'set requires= beside a broken value');
    is(decode_json($rs->cli('HGET', 'portal-gate:flags:staging',
                            'new_feature'))->{requires}, 'base2', 'set');
    $r = ctl('-e', 'staging', 'set', 'base2', 'requires=new_feature');
    exits($r, 2, 'a cycle is still refused');
    $rs->cli('HDEL', 'portal-gate:flags:staging', 'legacy');
};

subtest 'on and rollout 0 of a flag that holds them by default write nothing' => sub {
    $rs->cli('HSET', 'portal-gate:flags:production', 'bare',
             '{"allow":["1"]}');
    my $rev = $rs->cli('GET', 'portal-gate:revision');
    my $n = $rs->cli('XLEN', 'portal-gate:audit');
    my $r = ctl('on', 'bare');
    exits($r, 0, 'on');
    like($r->{out}, qr/is so already: nothing changed/, 'on: nothing changed');
    $r = ctl('rollout', 'bare', '0');
    exits($r, 0, 'rollout 0');
    like($r->{out}, qr/is so already: nothing changed/,
         'rollout 0: nothing changed');
    is($rs->cli('GET', 'portal-gate:revision'), $rev, 'no new revision');
    is($rs->cli('XLEN', 'portal-gate:audit'), $n, 'no audit entry');
    exits(ctl('rollout', 'bare', '5'), 0, 'rollout 5 writes');
    isnt($rs->cli('GET', 'portal-gate:revision'), $rev, 'a new revision');
    $rs->cli('HDEL', 'portal-gate:flags:production', 'bare');
};

subtest 'a revision past the highest an edge accepts is said as it is' => sub {
    exits(ctl('create', 'revflag'), 0, 'create');
    my $rev = $rs->cli('GET', 'portal-gate:revision');
    $rs->cli('SET', 'portal-gate:revision', '9223372036854775000');
    my $r = ctl('kill', 'revflag');
    exits($r, 1, 'a write');
    like($r->{err}, qr/the store's revision is 9223372036854775000, past 9007199254740991, the highest an edge accepts/,
         'the real revision, then the limit');
    $r = ctl('env', 'add', 'apac');
    exits($r, 1, 'env add');
    like($r->{err}, qr/the store's revision is 9223372036854775000, past 9007199254740991/,
         'env add says the same');
    $rs->cli('SET', 'portal-gate:revision', $rev);
};

done_testing;
