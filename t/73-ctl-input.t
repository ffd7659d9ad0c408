# portal-gatectl and what an operator types, against a real redis-server:
# the free text the store keeps (reason, actor, description), rollouts
# refused with the reason why, and a broken value in Redis that list shows
# beside the others.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use PortalGate::Redis qw(exits);

my $rs = PortalGate::Redis->new(db => 4);

sub ctl { $rs->ctl(@_) }

sub revision { $rs->cli('GET', 'portal-gate:revision') }

exits(ctl('init'), 0, 'init');
exits(ctl('create', 'portal'), 0, 'create');

subtest 'text that is not UTF-8 is refused with exit 2 and nothing written' => sub {
    my $before = revision();
    my $audit = $rs->cli('XLEN', 'portal-gate:audit');
    for my $case (
        [['--reason', "caf\xe9", 'kill', 'portal'],
         qr/invalid --reason: not UTF-8 \(byte 4 is 0xe9\)/, 'Latin-1'],
        [['--reason', "\xc3", 'kill', 'portal'],
         qr/invalid --reason: not UTF-8 \(byte 1 is 0xc3\)/, 'cut short'],
        [['--reason', "\xc0\xaf", 'kill', 'portal'],
         qr/invalid --reason: not UTF-8/, 'an overlong form'],
        [['--reason', "\xed\xa0\x80", 'kill', 'portal'],
         qr/invalid --reason: not UTF-8/, 'a surrogate'],
        [['--reason', "INC-1\nfake entry", 'kill', 'portal'],
         qr/invalid --reason: a control character \(U\+000A\) at byte 6/,
         'a newline'],
        [['--reason', 'x' x 1025, 'kill', 'portal'],
         qr/invalid --reason: 1025 bytes, at most 1024/, 'too long'],
        [['--actor', "\e[2J", 'kill', 'portal'],
         qr/invalid --actor: a control character \(U\+001B\)/,
         'an escape sequence'],
        [['create', 'other', '--description', "\xff"],
         qr/invalid --description: not UTF-8 \(byte 1 is 0xff\)/,
         'a description'],
    ) {
        my ($args, $re, $what) = @$case;
        my $r = ctl(@$args);
        exits($r, 2, $what);
        like($r->{err}, $re, "$what: says what is wrong");
    }

    my $r = $rs->ctl_env({USER => "jos\xe9"}, 'kill', 'portal');
    exits($r, 2, 'an actor from $USER that is not UTF-8');
    like($r->{err}, qr/invalid actor in \$USER: not UTF-8 \(byte 4 is 0xe9\); give --actor NAME/,
         'says where it came from and what to do');
    exits($rs->ctl_env({USER => "jos\xe9"}, 'list'), 0,
          'a read does not need the actor');

    is(revision(), $before, 'no revision moved');
    is($rs->cli('XLEN', 'portal-gate:audit'), $audit, 'no audit entry');
    ok(!defined $rs->cli('HGET', 'portal-gate:flags:production', 'other')
       || $rs->cli('HGET', 'portal-gate:flags:production', 'other') eq '',
       'no flag created');
};

subtest 'UTF-8 text is kept and shown as it was given' => sub {
    my $reason = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x92";
    my $r = ctl('--actor', "Jos\xc3\xa9", '--reason', $reason, 'kill',
                'portal');
    exits($r, 0, 'kill with a UTF-8 reason and actor');
    $r = ctl('audit', 'portal', '--count', '1');
    like($r->{out}, qr/Jos\xc3\xa9 .* kill .* reason: \Q$reason\E$/m,
         'audit shows both');
};

subtest 'audit shows an entry whose text is not UTF-8, escaped' => sub {
    # written before portal-gatectl checked its texts, or by another tool
    $rs->cli('XADD', 'portal-gate:audit', '*', 'ts', '2026-01-01T00:00:00Z',
             'actor', "bob\xff", 'env', 'production', 'flag', 'portal',
             'action', 'kill', 'before', '', 'after', '',
             'reason', "caf\xe9", 'revision', '7');
    my $r = ctl('audit', 'portal', '--count', '1');
    exits($r, 0, 'audit');
    like($r->{out}, qr/bob\\xff .* reason: caf\\xe9$/m,
         'the actor and the reason, each byte that is not UTF-8 as \\xNN');
};

subtest 'a refused rollout says what is wrong with it' => sub {
    my $before = revision();
    for my $case (
        ['1e-9', qr/expected a percent from 0 to 100 in digits, with at most two decimal places \(5, 12\.5, 0\.25 or 12\.5%\)/],
        ['-5%', qr/expected a percent from 0 to 100 in digits/],
        ['.5', qr/expected a percent from 0 to 100 in digits/],
        ['5%%', qr/expected a percent from 0 to 100 in digits/],
        ['12.505', qr/more than two decimal places; the step is 0\.01/],
        ['100.0000001', qr/more than two decimal places; the step is 0\.01/],
        ['100.01', qr/more than 100; a rollout is a percent from 0 to 100/],
        ['00001000', qr/more than 100/],
    ) {
        my ($pct, $re) = @$case;
        my $r = ctl('rollout', 'portal', '--', $pct);
        exits($r, 2, "rollout $pct");
        like($r->{err}, qr/invalid rollout "\Q$pct\E": $re/,
             "rollout $pct: says why");
    }
    is(revision(), $before, 'no revision moved');

    for my $case (['12.500', 12.5], ['0100', 100], ['5.', 5], ['0.07', 0.07],
                  ['99.99%', 99.99]) {
        my ($pct, $want) = @$case;
        my $r = ctl('rollout', 'portal', $pct);
        exits($r, 0, "rollout $pct");
        is(decode_json($rs->cli('HGET', 'portal-gate:flags:production',
                                'portal'))->{rollout}, $want,
           "rollout $pct is $want");
    }
    like(ctl('rollout', 'portal', '0.07')->{out}, qr/rollout 99\.99 -> 0\.07 /,
         'the change prints the rollouts as written');
};

subtest 'list shows every flag, and marks the one whose value is broken' => sub {
    exits(ctl('create', 'zeta'), 0, 'another flag');
    $rs->cli('HSET', 'portal-gate:flags:production', 'middle',
             '{"rolout":5}');
    $rs->cli('HSET', 'portal-gate:flags:production', 'nojson', '{broken');
    my $r = ctl('list');
    exits($r, 1, 'list with two broken values');
    like($r->{out}, qr/^middle\s+BROKEN\s+.*unknown key "rolout"/m,
         'the broken flag is marked, with why');
    like($r->{out}, qr/^nojson\s+BROKEN\s+not JSON/m, 'and the one not JSON');
    like($r->{out}, qr/^portal\s+killed\s+0\.07%/m, 'the others are shown');
    like($r->{out}, qr/^zeta\s+on\s+0\.00%/m, 'every one');
    like($r->{out}, qr/^middle.*\n^nojson.*\n^portal.*\n^zeta/m,
         'in name order');
    like($r->{out}, qr/\(4 flags in production, 2 of them broken, store revision \d+\)/,
         'the count says how many are broken');
    like($r->{err}, qr/flag "middle" in production is invalid: .*unknown key "rolout"/,
         'stderr names the broken flag');

    $r = ctl('list', '--json');
    exits($r, 1, 'list --json');
    is_deeply([sort keys %{ decode_json($r->{out}) }], ['portal', 'zeta'],
              'the flags that are valid');
    like($r->{err}, qr/flag "nojson" in production is not JSON/,
         'stderr names the broken ones');

    $r = ctl('show', 'portal');
    exits($r, 0, 'show of a valid flag beside broken ones');
    is(decode_json($r->{out})->{rollout}, 0.07, 'shows it');
    $r = ctl('show', 'middle');
    exits($r, 1, 'show of a broken flag');
    like($r->{out}, qr/"rolout": 5/, 'shows the value as it is');
    like($r->{err}, qr/flag "middle" in production is invalid: .*unknown key "rolout"/,
         'and says what is wrong with it');

    $rs->cli('HDEL', 'portal-gate:flags:production', 'middle', 'nojson');
    exits(ctl('list'), 0, 'list once they are gone');
};

done_testing;
