# portal-gatectl against a real redis-server: the store's life (init,
# create, on/off/kill, rollout, allow, deny), the audit log, the checks on
# every input, concurrent writers, and explain agreeing with the edge.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use JSON::PP;
use Test::More;
use PortalGate::Redis qw(exits);
use PortalGate::Test;

my $rs = PortalGate::Redis->new(db => 2);

sub ctl { $rs->ctl(@_) }


sub flag_json {
    my ($flag, $env) = @_;
    my $v = $rs->cli('HGET', 'portal-gate:flags:' . ($env // 'production'),
                     $flag);
    return $v eq '' ? undef : decode_json($v);
}

subtest '-h prints the usage and exits 0; a bad option exits 2' => sub {
    my $r = ctl('-h');
    exits($r, 0, '-h');
    like($r->{out}, qr/usage: portal-gatectl .*kill FLAG/s, 'usage lists kill');
    exits(ctl('--frobnicate'), 2, 'an unknown option');
    my $u = ctl('frobnicate');
    exits($u, 2, 'an unknown command');
    like($u->{err}, qr/unknown command "frobnicate"/, 'named');
    exits(ctl('rollout', 'customer_portal'), 2, 'a missing operand');
};

subtest 'a write to an uninitialised store is refused and names init' => sub {
    my $r = ctl('create', 'customer_portal');
    exits($r, 1, 'create before init');
    like($r->{err}, qr/not initialised.*portal-gatectl init/s,
         'the message names `portal-gatectl init`');
    is($rs->cli('EXISTS', 'portal-gate:flags:production'), '0',
       'nothing was written');
};

subtest 'init creates the store once' => sub {
    my $r = ctl('init');
    exits($r, 0, 'init');
    like($r->{out}, qr/initialised an empty store at redis:\/\/127\.0\.0\.1:\d+\/2/,
         'says where');
    is($rs->cli('HGET', 'portal-gate:store', 'format'), '1', 'the marker');
    is($rs->cli('GET', 'portal-gate:revision'), '0', 'revision 0');
    my $again = ctl('init');
    exits($again, 1, 'a second init');
    like($again->{err}, qr/initialised already/, 'says so');
};

subtest 'create makes an enabled flag with rollout 0; a second create fails' => sub {
    my $r = ctl('--actor', 'alice', '--reason', 'phase 0', 'create',
                'customer_portal');
    exits($r, 0, 'create');
    like($r->{out}, qr/created customer_portal in production: enabled true, rollout 0 \(revision 1\)/,
         'says what it made');
    my $f = flag_json('customer_portal');
    is_deeply([@$f{qw(enabled rollout allow deny version updated_by)}],
              [JSON::PP::true, 0, [], [], 1, 'alice'], 'the flag in Redis');
    like($f->{updated_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'updated_at');

    my $again = ctl('create', 'customer_portal');
    exits($again, 1, 'create of an existing flag');
    like($again->{err}, qr/exists already/, 'says so');
    is($rs->cli('GET', 'portal-gate:revision'), '1', 'revision unchanged');
};

subtest 'rollout, allow and deny change the flag and raise its version' => sub {
    exits(ctl('rollout', 'customer_portal', '12.5'), 0, 'rollout 12.5');
    exits(ctl('rollout', 'customer_portal', '25%'), 0, 'rollout 25%');
    my $r = ctl('allow', 'customer_portal', '12', '57');
    exits($r, 0, 'allow');
    like($r->{out}, qr/allow 0 -> 2 \(revision \d+\)/, 'says what it added');
    exits(ctl('allow', 'customer_portal', '57', 'acme.corp'), 0,
          'allow with one id already there');
    exits(ctl('deny', 'customer_portal', '99'), 0, 'deny');
    my $f = flag_json('customer_portal');
    is($f->{rollout}, 25, 'rollout 25');
    is_deeply($f->{allow}, ['12', '57', 'acme.corp'], 'allow, no duplicate');
    is_deeply($f->{deny}, ['99'], 'deny');
    is($f->{version}, 6, 'version raised by every write');
    is($rs->cli('GET', 'portal-gate:revision'), '6', 'store revision 6');
};

subtest 'invalid input exits 2 and writes nothing' => sub {
    my $before = $rs->cli('GET', 'portal-gate:revision');
    for my $case (
        [['rollout', 'customer_portal', '0.001'], qr/rollout/],
        [['rollout', 'customer_portal', '101'], qr/invalid rollout "101"/],
        [['rollout', 'customer_portal', 'lots'], qr/invalid rollout "lots"/],
        [['rollout', 'customer_portal', 'nan'], qr/invalid rollout "nan"/],
        [['rollout', 'customer_portal', '0x10'], qr/invalid rollout "0x10"/],
        [['rollout', 'customer_portal', ' 5'], qr/invalid rollout " 5"/],
        [['rollout', 'customer_portal', '1e1'], qr/invalid rollout "1e1"/],
        [['rollout', 'customer_portal', '0.005'], qr/the step is 0\.01/],
        [['allow', 'customer_portal', 'a b'], qr/invalid company id "a b"/],
        [['deny', 'customer_portal', 'x' x 65], qr/invalid company id/],
        [['create', 'Customer-Portal'], qr/invalid flag name "Customer-Portal"/],
        [['-e', 'Prod', 'list'], qr/invalid environment "Prod"/],
        [['create', 'calls', '--requires', 'no_such_flag'],
         qr/requires unknown flag "no_such_flag"/],
        [['-r', 'rediss://127.0.0.1:6379', 'list'], qr/TLS|rediss/],
        [['on', 'customer_portal', '--requires', 'x'], qr/go with create/],
    ) {
        my ($args, $re) = @$case;
        my $r = ctl(@$args);
        exits($r, 2, "@$args");
        like($r->{err}, $re, "@$args: the message says what is wrong");
    }
    is($rs->cli('GET', 'portal-gate:revision'), $before, 'no revision moved');
};

subtest 'a missing flag is an operation failure (1)' => sub {
    my $r = ctl('on', 'nope');
    exits($r, 1, 'on of a missing flag');
    like($r->{err}, qr/no flag "nope" in production.*create nope/,
         'says how to make it');
};

subtest 'kill turns the flag off, says what changed, and is idempotent' => sub {
    my $r = ctl('--reason', 'incident 7', 'kill', 'customer_portal');
    exits($r, 0, 'kill');
    like($r->{out}, qr/KILLED customer_portal in production: enabled true -> false \(revision 7\)/,
         'says what changed');
    is(flag_json('customer_portal')->{enabled}, JSON::PP::false, 'off in Redis');
    my $again = ctl('kill', 'customer_portal');
    exits($again, 0, 'a second kill');
    like($again->{out}, qr/off already/, 'says nothing changed');
    is($rs->cli('GET', 'portal-gate:revision'), '7', 'and wrote nothing');
    exits(ctl('on', 'customer_portal'), 0, 'on again');
};

subtest 'a change to what a flag is already writes nothing' => sub {
    my $before = $rs->cli('GET', 'portal-gate:revision');
    my $audit = $rs->cli('XLEN', 'portal-gate:audit');
    my $f = flag_json('customer_portal');
    for my $args (['on', 'customer_portal'],
                  ['rollout', 'customer_portal', $f->{rollout}],
                  ['allow', 'customer_portal', $f->{allow}[0]],
                  ['deny', 'customer_portal', $f->{deny}[0]]) {
        my $r = ctl(@$args);
        exits($r, 0, "@$args");
        like($r->{out}, qr/so already: nothing changed \(store revision $before\)/,
             "@$args: says nothing changed");
    }
    is($rs->cli('GET', 'portal-gate:revision'), $before, 'no revision raised');
    is($rs->cli('XLEN', 'portal-gate:audit'), $audit, 'no audit entry');
    my $j = decode_json(ctl('on', 'customer_portal', '--json')->{out});
    is($j->{changed}, JSON::PP::false, '--json says changed: false');
};

subtest 'sub-features require the portal' => sub {
    exits(ctl('create', 'customer_portal_calls', '--requires',
              'customer_portal', '--description', 'calls'), 0,
          'create with --requires');
    exits(ctl('rollout', 'customer_portal_calls', '100'), 0, 'rollout 100');
    my $f = flag_json('customer_portal_calls');
    is($f->{requires}, 'customer_portal', 'requires stored');
    is($f->{description}, 'calls', 'description stored');
};

subtest 'list shows the flags as a table, and as JSON with --json' => sub {
    my $r = ctl('list');
    exits($r, 0, 'list');
    like($r->{out}, qr/^FLAG\s+STATE\s+ROLLOUT\s+ALLOW\s+DENY\s+REQUIRES/m,
         'a header');
    like($r->{out}, qr/^customer_portal\s+on\s+25\.00%\s+3\s+1\s+-$/m,
         'the portal');
    like($r->{out}, qr/^customer_portal_calls\s+on\s+100\.00%\s+0\s+0\s+customer_portal$/m,
         'the sub-feature');
    my $j = ctl('list', '--json');
    exits($j, 0, 'list --json');
    is(decode_json($j->{out})->{customer_portal}{rollout}, 25, 'JSON');
    my $s = ctl('-e', 'staging', 'list');
    like($s->{out}, qr/\(0 flags in staging/, 'staging has its own flags');
};

subtest 'explain gives the decision, the reason and the bucket' => sub {
    my %want = (99 => 'off (denied)', 12 => 'on (allowed)');
    for my $c (sort keys %want) {
        my $r = ctl('explain', 'customer_portal', $c);
        exits($r, 0, "explain $c");
        like($r->{out}, qr/customer_portal for company $c in production: \Q$want{$c}\E/,
             "company $c: $want{$c}");
    }
    my $r = ctl('explain', 'customer_portal', '42', '--json');
    is_deeply(decode_json($r->{out}),
              {decision => 'off', reason => 'rollout', bucket => 7541,
               revision => $rs->cli('GET', 'portal-gate:revision') + 0,
               env => 'production', flag => 'customer_portal',
               company => '42'}, 'company 42: bucket 7541 is past 25%');
    $r = ctl('explain', 'customer_portal_calls', '99');
    like($r->{out}, qr/off \(requires\)/, 'a sub-feature of a denied company');
};

subtest 'audit shows who, when, what, before -> after and why' => sub {
    my $r = ctl('audit', 'customer_portal', '--count', '3');
    exits($r, 0, 'audit');
    my @lines = split /\n/, $r->{out};
    is(scalar @lines, 3, '--count 3 gives 3 entries');
    like($lines[0], qr/rev 8 +tester +production +customer_portal +on +enabled false -> true/,
         'the newest first: who, where, what, before -> after');
    like($lines[1], qr/kill +enabled true -> false +reason: incident 7/,
         'the kill, before -> after, and its reason');

    my $j = decode_json(ctl('audit', '--json')->{out});
    my ($create) = grep { $_->{action} eq 'create'
                          && $_->{flag} eq 'customer_portal' } @$j;
    is_deeply([@$create{qw(actor reason revision before)}],
              ['alice', 'phase 0', '1', ''], 'the create entry');
    my ($init) = grep { $_->{action} eq 'init' } @$j;
    ok($init, 'init is in the log too');
};

subtest 'every write publishes the new revision and its flag on the change channel' => sub {
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $rs->port) or die $!;
    print {$sock} "SUBSCRIBE portal-gate:changes\r\n";
    my $buf = '';
    sysread($sock, $buf, 4096) until $buf =~ /subscribe.*:1\r\n/s;
    exits(ctl('allow', 'customer_portal', 'pub1'), 0, 'a write');
    my $re = qr/message\r\n.*\r\n\$\d+\r\n([^\r]*)\r\n/s;
    my $msg = '';
    my $sel = IO::Select->new($sock);
    my $deadline = time + 10;
    while ($msg !~ $re && time < $deadline) {
        next unless $sel->can_read(0.2);
        my $n = sysread($sock, my $chunk, 4096);
        last unless $n;
        $msg .= $chunk;
    }
    my ($text) = $msg =~ $re;
    my $rev = $rs->cli('GET', 'portal-gate:revision');
    is($text, "$rev production customer_portal",
       'the message carries the new revision, then the environment and '
       . 'the flag that changed (include/pg_store.h)');
};

subtest 'two concurrent writers lose no update' => sub {
    my @pids;
    for my $w (1, 2) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            for my $i (1 .. 15) {
                my $r = $rs->ctl('allow', 'customer_portal_calls', "w$w-$i");
                exit 1 if $r->{exit} != 0;
            }
            exit 0;
        }
        push @pids, $pid;
    }
    my $ok = 0;
    for (@pids) { waitpid $_, 0; $ok++ if $? == 0 }
    is($ok, 2, 'both writers finished every write');
    my %ids = map { $_ => 1 } @{ flag_json('customer_portal_calls')->{allow} };
    is(scalar(grep { /^w[12]-\d+$/ } keys %ids), 30, 'all 30 ids are there');
};

subtest 'a rollout of 0.07 is stored as 0.07' => sub {
    exits(ctl('create', 'tiny'), 0, 'create');
    exits(ctl('rollout', 'tiny', '0.07'), 0, 'rollout 0.07');
    like($rs->cli('HGET', 'portal-gate:flags:production', 'tiny'),
         qr/"rollout":0\.07[,}]/, 'no 0.070000000000000007');
};

subtest 'a broken sibling flag never blocks a kill' => sub {
    $rs->cli('HSET', 'portal-gate:flags:production', 'broken', '{"rolout":5}');
    my $r = ctl('kill', 'tiny');
    exits($r, 0, 'kill with a broken sibling');
    like($r->{out}, qr/KILLED tiny/, 'killed');
    $rs->cli('HDEL', 'portal-gate:flags:production', 'broken');
};

subtest 'kill turns off a flag whose value in Redis is broken' => sub {
    $rs->cli('HSET', 'portal-gate:flags:production', 'broken',
             '{"enabled":true,"rolout":5,"allow":["1001"],"version":3}');
    my $r = ctl('rollout', 'broken', '10');
    exits($r, 1, 'another change to it');
    like($r->{err}, qr/flag "broken" in production holds an invalid value in Redis .*unknown key "rolout".*kill broken/,
         'says the stored value is bad, and that kill still works');

    $r = ctl('kill', 'broken');
    exits($r, 0, 'kill');
    like($r->{err}, qr/warning: .*"broken".*invalid value.*dropping "rolout"/,
         'says what it dropped');
    my $f = flag_json('broken');
    is($f->{enabled}, JSON::PP::false, 'off in Redis');
    is_deeply($f->{allow}, ['1001'], 'the valid fields kept');
    is($f->{version}, 4, 'its version raised');
    like(ctl('audit', 'broken', '--count', '1')->{out}, qr/kill/,
         'audited');
    $rs->cli('HDEL', 'portal-gate:flags:production', 'broken');

    # a requires of a flag that is gone would make the edges keep the last
    # good, enabled, version: it is dropped
    $rs->cli('HSET', 'portal-gate:flags:production', 'broken',
             '{"enabled":true,"requires":"ghost","rolout":5}');
    $r = ctl('kill', 'broken');
    exits($r, 0, 'kill with a requires of a missing flag');
    like($r->{err}, qr/dropping .*"requires"/, 'drops the requires');
    $f = flag_json('broken');
    ok(!exists $f->{requires} && !$f->{enabled}, 'off, without requires');

    for my $value ('not json at all', '[1,2]',
                   '{"enabled":true,"version":-1}') {
        $rs->cli('HSET', 'portal-gate:flags:production', 'broken', $value);
        $r = ctl('kill', 'broken');
        exits($r, 0, "kill of '$value'");
        $f = flag_json('broken');
        is($f->{enabled}, JSON::PP::false, "'$value': off in Redis");
        is($f->{version}, 1, "'$value': its version starts again");
    }
    $rs->cli('HSET', 'portal-gate:flags:production', 'broken', 'not json');
    $r = ctl('on', 'broken');
    exits($r, 1, 'another change to a value that is not JSON');
    like($r->{err}, qr/holds an invalid value in Redis.*kill broken/,
         'points to kill');
    $rs->cli('HDEL', 'portal-gate:flags:production', 'broken');
};

subtest 'odd values in Redis fail cleanly and change nothing' => sub {
    $rs->cli('HSET', 'portal-gate:flags:production', 'odd', '[]');
    my $r = ctl('on', 'odd');
    exits($r, 1, 'a flag that is not an object');
    like($r->{err}, qr/flag "odd" .* is not a JSON object/, 'says so');
    $rs->cli('HSET', 'portal-gate:flags:production', 'odd',
             '{"enabled":false,"version":9223372036854775807}');
    $r = ctl('on', 'odd');
    exits($r, 0, 'a version that cannot be raised');
    is(decode_json($rs->cli('HGET', 'portal-gate:flags:production', 'odd'))
           ->{version}, 1, 'starts again at 1');
    $rs->cli('HDEL', 'portal-gate:flags:production', 'odd');

    # the audit key of the wrong type: the script fails before any change
    my $rev = $rs->cli('GET', 'portal-gate:revision');
    $rs->cli('RENAME', 'portal-gate:audit', 'portal-gate:audit-saved');
    $rs->cli('SET', 'portal-gate:audit', 'not a stream');
    $r = ctl('on', 'tiny');
    exits($r, 1, 'a write with a broken audit key');
    like($r->{err}, qr/WRONGTYPE/, 'says why');
    is($rs->cli('GET', 'portal-gate:revision'), $rev, 'the revision stayed');
    like($rs->cli('HGET', 'portal-gate:flags:production', 'tiny'),
         qr/"enabled":false/, 'and the flag too');
    $rs->cli('DEL', 'portal-gate:audit');
    $rs->cli('RENAME', 'portal-gate:audit-saved', 'portal-gate:audit');
};

subtest 'a malformed value in Redis is reported with the flag' => sub {
    $rs->cli('HSET', 'portal-gate:flags:production', 'broken', '{"rolout":5}');
    my $r = ctl('list');
    exits($r, 1, 'list');
    like($r->{err}, qr/flag "broken" .* is invalid: .*unknown key "rolout"/,
         'names the flag and what is wrong');
    $rs->cli('HDEL', 'portal-gate:flags:production', 'broken');
};

subtest 'another prefix is another store' => sub {
    my $r = ctl('-p', 'other:', 'create', 'x');
    exits($r, 1, 'create under an uninitialised prefix');
    like($r->{err}, qr/prefix "other:"/, 'names the prefix');
    $r = ctl('-p', 'other:', 'list');
    exits($r, 0, 'a read there');
    like($r->{err}, qr/warning: .* not initialised/, 'warns it is not a store');
};

subtest 'Redis down: exit 1 with the URL, never a crash' => sub {
    $rs->stop;
    my $r = ctl('list');
    exits($r, 1, 'list with Redis down');
    like($r->{err}, qr{redis://127\.0\.0\.1:\d+/2: .*(refused|connect)}i,
         'names Redis and why');
    $rs->start;
};

{
    subtest 'explain gives exactly the edge answer' => sub {
        my $ng = PortalGate::Test->new;
        $ng->start;
        my $flags = decode_json(ctl('list', '--json')->{out});
        my $snap = {revision => 100, environments => {production => $flags}};
        is($ng->put_snapshot($snap)->{status}, 200, 'the same flags on an edge');
        for my $c (map { "c$_" } 1 .. 100) {
            my $mine = decode_json(ctl('explain', 'customer_portal', $c,
                                       '--json')->{out});
            my $edge = $ng->evaluate(flag => 'customer_portal', company => $c);
            is_deeply([@$mine{qw(decision reason bucket)}],
                      [@$edge{qw(decision reason bucket)}],
                      "company $c") or last;
        }
        $ng->stop;
    };
}

done_testing;
