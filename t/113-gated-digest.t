# portal-gated's check after deltas (issue 14): a value written into Redis
# by hand, without a revision, is in no change log. Once the deltas stop,
# the reconcile compares the store's digest (a SHA-1 per flag, hashed in
# Redis) with what the daemon read, reads only the flags that differ, makes
# each that changed a revision of its own (its change log entry and
# message) and pushes it as a delta: no whole read of the store, which
# blocks the daemon's loop (and a kill) for 160 ms at 100,000 ids. A flag
# rewritten with the same bytes, or the same JSON in another layout,
# changes nothing. Real redis-server, two nginx edges, the daemon at log
# level info (at debug, each delta is checked against a whole read, which
# would find the hand edit first).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use PortalGate::Gated qw(clean_exit wait_until two_edges wait_ticks);
use PortalGate::Gdb;
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $P = 'portal-gate:';
my $rs = PortalGate::Redis->new;
my $e = two_edges();
my @edges = @$e{qw(tcp unix)};
my $json = JSON::PP->new->canonical;

sub ctl { $rs->ctl(@_) }

sub store_revision { $rs->cli('GET', "${P}revision") + 0 }

sub hget { $rs->cli('HGET', "${P}flags:production", $_[0]) }

sub all_at_store {
    my ($name) = @_;
    my $want = store_revision();
    my $ok = wait_until(sub {
        !grep { $_->status->{revision} != $want } @edges
    }, 10);
    ok($ok, "$name: every edge at the store's revision $want")
        or diag(join ', ', map { $_->status->{revision} } @edges);
    return $want;
}

sub on_edges {
    my ($flag) = @_;
    return map { $_->snapshot->{environments}{production}{$flag} } @edges;
}

# a whole read says "revision N read: K flags ..."; a delta "revision N
# read from the change log"
sub whole_reads { $_[0]->count_log(qr/revision \d+ read: /, $_[1]) }

my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [@$e{qw(tcp_url unix_url)}],
                                environments => [qw(production staging)],
                                log_level => 'info');

subtest 'the store at the start' => sub {
    exits(ctl('init'), 0, 'init');
    exits(ctl('create', 'customer_portal'), 0, 'create customer_portal');
    exits(ctl('allow', 'customer_portal', '1001'), 0, 'allow 1001');
    exits(ctl('create', 'chat'), 0, 'create chat');
    exits(ctl('create', 'old_flag'), 0, 'create old_flag');
    $gd->start;
    ok($gd->wait_log(qr/revision \d+ read: /, 5), 'read whole at the start');
    all_at_store('at the start');
};

subtest 'a value rewritten by hand with the same bytes, or the same JSON in another layout, changes nothing' => sub {
    my $mark = $gd->mark;
    my $bytes = hget('customer_portal');
    $rs->cli('HSET', "${P}flags:production", 'customer_portal', $bytes);
    my $spaced = JSON::PP->new->pretty->encode(decode_json(hget('chat')));
    $rs->cli('HSET', "${P}flags:production", 'chat', $spaced);
    exits(ctl('rollout', 'chat', '10'), 0, 'a write after them (a delta)');
    my $rev = all_at_store('after the write');
    ok(wait_ticks($e->{unix}, 4), 'the reconcile came round after it');
    is(store_revision(), $rev, 'the store kept its revision');
    is($_->status->{revision}, $rev, 'an edge kept its revision') for @edges;
    $rs->cli('HSET', "${P}flags:production", 'chat',
             JSON::PP->new->pretty->encode(decode_json(hget('chat'))));
    exits(ctl('rollout', 'customer_portal', '5'), 0, 'another write');
    $rev = all_at_store('after it');
    ok(wait_ticks($e->{unix}, 4), 'the reconcile came round after it');
    is(store_revision(), $rev, 'the store kept its revision: chat in '
       . 'another layout is the same flag');
    is($gd->count_log(qr/without a revision/, $mark), 0,
       'nothing said of a change');
    is(whole_reads($gd, $mark), 0, 'no whole read of the store');
};

subtest 'a flag changed by hand, without a revision, reaches the edges by the digest' => sub {
    my $mark = $gd->mark;
    my $flag = decode_json(hget('customer_portal'));
    push @{$flag->{allow}}, '2002';
    $rs->cli('HSET', "${P}flags:production", 'customer_portal',
             JSON::PP->new->pretty->encode($flag));
    exits(ctl('rollout', 'chat', '20'), 0, 'a write to another flag after it');
    ok($gd->wait_log(qr/\[warn\].*flag production\/customer_portal changed in Redis without a revision/,
                     5, $mark), 'the log names the flag')
        or diag($gd->log($mark));
    my $rev = all_at_store('after the check');
    ok(!grep({ !grep { $_ eq '2002' } @{$_->{allow} // []} }
             on_edges('customer_portal')), 'every edge allows 2002')
        or diag($json->encode([on_edges('customer_portal')]));
    is($rs->cli('LINDEX', "${P}changelog", 0),
       "$rev production customer_portal",
       'the change log has it as a revision of its own');
    my $audit = $rs->cli('XREVRANGE', "${P}audit", '+', '-', 'COUNT', 1);
    like($audit, qr/without a revision/, 'and the audit log, with why');
    is(whole_reads($gd, $mark), 0, 'no whole read of the store');
    is($gd->count_log(qr/\[(error|crit)\]/, $mark), 0, 'no error');
};

subtest 'a flag deleted by hand, and one added by hand, are found' => sub {
    my $mark = $gd->mark;
    my $new = decode_json(hget('chat'));
    $new->{version} = 1;
    $rs->cli('HDEL', "${P}flags:production", 'old_flag');
    $rs->cli('HSET', "${P}flags:production", 'by_hand', encode_json($new));
    exits(ctl('rollout', 'chat', '30'), 0, 'a write after them');
    ok($gd->wait_log(qr/flag production\/old_flag changed in Redis without a revision/,
                     5, $mark), 'the deleted flag is named');
    ok($gd->wait_log(qr/flag production\/by_hand changed in Redis without a revision/,
                     5, $mark), 'the added flag is named');
    all_at_store('after the check');
    ok(!grep({ defined } on_edges('old_flag')), 'no edge holds old_flag');
    ok(!grep({ !defined } on_edges('by_hand')), 'every edge holds by_hand');
    is(whole_reads($gd, $mark), 0, 'no whole read of the store');
};

subtest 'a hand edit of a flag that is not valid is pushed as the whole read would' => sub {
    my $mark = $gd->mark;
    $rs->cli('HSET', "${P}flags:production", 'by_hand', '{"rolout": 5}');
    exits(ctl('rollout', 'chat', '40'), 0, 'a write after it');
    ok($gd->wait_log(qr/flag production\/by_hand changed in Redis without a revision/,
                     5, $mark), 'the flag is named');
    ok($gd->wait_log(qr/flag "by_hand" in production is invalid/, 5, $mark),
       'and said not valid, as a whole read says it');
    all_at_store('after the check');
    ok(!grep({ !defined } on_edges('by_hand')),
       'every edge keeps its last good version');
    $rs->cli('HDEL', "${P}flags:production", 'by_hand');
    exits(ctl('rollout', 'chat', '41'), 0, 'a write after its delete');
    ok($gd->wait_log(qr/flag production\/by_hand was deleted from the store/,
                     5, $mark), 'the delete is found');
    all_at_store('after the delete');
    ok(!grep({ defined } on_edges('by_hand')), 'no edge holds by_hand');
    is(whole_reads($gd, $mark), 0, 'no whole read of the store');
};

subtest 'a field no flag can be named, written by hand, is the whole read\'s' => sub {
    my $mark = $gd->mark;
    $rs->cli('HSET', "${P}flags:production", 'Not-A-Name', '{}');
    exits(ctl('rollout', 'chat', '55'), 0, 'a write after it');
    ok($gd->wait_log(qr/the store's digest cannot say what changed .*: reading the whole store/,
                     5, $mark), 'the check says it cannot say');
    ok($gd->wait_log(qr/Not-A-Name/, 5, $mark), 'the whole read names it');
    all_at_store('after it');
    my $again = $gd->mark;
    exits(ctl('rollout', 'chat', '56'), 0, 'another write');
    all_at_store('after that');
    ok(wait_ticks($e->{unix}, 4), 'the reconcile came round after it');
    is($gd->count_log(qr/reading the whole store/, $again), 0,
       'the field, held as not valid, is not read whole again');
    $rs->cli('HDEL', "${P}flags:production", 'Not-A-Name');
};

subtest 'an environment added by hand is the whole read\'s, as before' => sub {
    my $mark = $gd->mark;
    $rs->cli('HSET', "${P}environments", 'eu',
             '{"created_at": "2026-01-01T00:00:00Z", "created_by": "hand"}');
    exits(ctl('rollout', 'chat', '60'), 0, 'a write after it');
    ok($gd->wait_log(qr/store's environments changed without a revision: reading the whole store/,
                     5, $mark), 'the check says it cannot follow it');
    ok($gd->wait_log(qr/pushing the environments production staging eu/,
                     5, $mark), 'the whole read pushes it');
    ok(wait_until(sub { !grep { !$_->snapshot->{environments}{eu} } @edges },
                  10), 'every edge has the environment');
};

subtest 'an audit key of another type: the digest\'s revisions write nothing, and say why' => sub {
    # Redis does not roll a script back: the revision SET before the
    # XADD's WRONGTYPE moved the store without its audit entry or log
    my $mark = $gd->mark;
    my $flag = decode_json(hget('customer_portal'));
    push @{$flag->{allow}}, '3003';
    $rs->cli('HSET', "${P}flags:production", 'customer_portal',
             encode_json($flag));
    $rs->cli('SET', "${P}audit", 'x');
    # a write of chat as portal-gatectl makes it, but for its audit entry,
    # which cannot be: a delta for the daemon, then the check after it
    # (one script: a tick between the INCR and the LPUSH reads it whole)
    my $rev = $rs->cli('EVAL',
        "local r = redis.call('INCR', KEYS[1]) .. ' production chat'\n"
        . "redis.call('LPUSH', KEYS[2], r)\n"
        . "redis.call('PUBLISH', KEYS[3], r)\n"
        . "return redis.call('GET', KEYS[1])", 3,
        "${P}revision", "${P}changelog", "${P}changes") + 0;
    ok($gd->wait_log(qr/\[error\].*flags changed in Redis without a revision cannot be made revisions \(.*WRONGTYPE ${P}audit is a string, not a stream: nothing was written\)/,
                     10, $mark), 'the daemon says it cannot, and why')
        or diag($gd->log($mark));
    is(store_revision(), $rev, 'nothing written: the revision is as it was');
    is($rs->cli('LINDEX', "${P}changelog", 0), "$rev production chat",
       'nor the change log');
    is($rs->cli('TYPE', "${P}audit"), 'string', 'the audit key as it was');
    $rs->cli('DEL', "${P}audit");
    exits(ctl('rollout', 'chat', '65'), 0, 'a write once it is a stream');
    all_at_store('after it');
    ok(!grep({ !grep { $_ eq '3003' } @{$_->{allow} // []} }
             on_edges('customer_portal')), 'every edge allows 3003')
        or diag($json->encode([on_edges('customer_portal')]));
};

subtest 'a store at a revision of 16 digits: a hand edit reaches the edges by the digest' => sub {
    # 10^15: past 15 digits, far below PG_REVISION_MAX (2^53 - 1), which
    # a Lua number (a double) holds exactly
    my $big = 1000000000000000;
    $rs->cli('SET', "${P}revision", $big);
    exits(ctl('rollout', 'chat', '70'), 0, 'a write: revision ' . ($big + 1));
    all_at_store('after it (a whole read: the log does not reach back)');
    exits(ctl('rollout', 'chat', '71'), 0, 'a write: revision ' . ($big + 2));
    all_at_store('after it (a delta)');
    ok(wait_ticks($e->{unix}, 4), 'the reconcile came round after it');
    my $mark = $gd->mark;
    my $flag = decode_json(hget('customer_portal'));
    push @{$flag->{allow}}, '4004';
    $rs->cli('HSET', "${P}flags:production", 'customer_portal',
             encode_json($flag));
    exits(ctl('rollout', 'chat', '72'), 0, 'a write after the hand edit');
    ok($gd->wait_log(qr/flag production\/customer_portal changed in Redis without a revision/,
                     10, $mark), 'the log names the flag')
        or diag($gd->log($mark));
    my $rev = all_at_store('after the check');
    is($rev, $big + 4, 'a revision of its own, of 16 digits');
    ok(!grep({ !grep { $_ eq '4004' } @{$_->{allow} // []} }
             on_edges('customer_portal')), 'every edge allows 4004')
        or diag($json->encode([on_edges('customer_portal')]));
    is($rs->cli('LINDEX', "${P}changelog", 0),
       "$rev production customer_portal",
       'the change log has it as a revision of its own');
    is(whole_reads($gd, $mark), 0, 'no whole read of the store');
};

subtest 'out of memory sorting what the digest read: the next check finds the hand edit all the same' => sub {
    plan skip_all => PortalGate::Gdb::unavailable()
        if PortalGate::Gdb::unavailable();
    # the check's second json_object() after the read of the flags named
    # (`same`) fails: a NULL there was "all" to the hashes kept, the new
    # bytes' hash kept against the flag held, the edit hidden for good
    my $mark = $gd->mark;
    my $log = $gd->dir . '/gdb-digest.log';
    my $armed = $gd->dir . '/armed-digest';
    unlink $armed;
    my $gdb = PortalGate::Gdb::run($gd->pid, $log,
        'break pg_store_read_named', "shell touch $armed", 'continue',
        'delete', 'finish', 'tbreak json_object', 'continue',
        'tbreak json_object', 'continue', 'tbreak malloc', 'continue',
        'return (void *) 0', 'detach');
    my $deadline = time + 30 * $PortalGate::Gated::SLOW;
    select(undef, undef, undef, 0.05) until -e $armed || time > $deadline;
    my $flag = decode_json(hget('customer_portal'));
    push @{$flag->{allow}}, '5005';
    $rs->cli('HSET', "${P}flags:production", 'customer_portal',
             encode_json($flag));
    exits(ctl('rollout', 'chat', '80'), 0, 'a write after the hand edit');
    PortalGate::Gdb::finish($gdb);
    my $text = do { local (@ARGV, $/) = ($log); <> // '' };
    like($text, qr/Temporary breakpoint [\d.]+, (?:0x\w+ in )?\w*malloc \(/,
         'gdb made an allocation fail') or diag($text);
    ok($gd->wait_log(qr/\[error\].*out of memory comparing 1 flags the store's digest names/,
                     10, $mark), 'the daemon says out of memory')
        or diag($gd->log($mark));
    ok($gd->wait_log(qr/flag production\/customer_portal changed in Redis without a revision/,
                     10, $mark), 'the next check finds the flag')
        or diag($gd->log($mark));
    all_at_store('after it');
    ok(!grep({ !grep { $_ eq '5005' } @{$_->{allow} // []} }
             on_edges('customer_portal')), 'every edge allows 5005')
        or diag($json->encode([on_edges('customer_portal')]));
};

clean_exit($gd->stop, $gd, 'SIGTERM at the end');

subtest 'at log level debug, the check says it found the store as read' => sub {
    # customer_portal is in Redis as the hand edit wrote it (pretty): a
    # daemon that read it whole reads it once more to find it the same
    exits(ctl('rollout', 'customer_portal', '6'), 0,
          'customer_portal written by portal-gatectl');
    my $gb = PortalGate::Gated->new(redis => $rs->url,
                                    edges => [$e->{tcp_url}],
                                    environments => [qw(production staging)],
                                    log_level => 'debug');
    $gb->start;
    ok($gb->wait_log(qr/revision \d+ read: /, 5), 'read whole at the start');
    my $mark = $gb->mark;
    exits(ctl('rollout', 'chat', '50'), 0, 'a write');
    my $rev = store_revision();
    ok($gb->wait_log(qr/delta check: revision $rev is what the whole store gives/,
                     5, $mark), 'the delta check agrees');
    ok($gb->wait_log(qr/reconcile: the store's digest at revision $rev is what was read/,
                     5, $mark), "the digest is what was read") or diag($gb->log($mark));
    is($gb->count_log(qr/delta check FAILED/, $mark), 0, 'no delta check failed');
    is($gb->count_log(qr/another layout/, $mark), 0,
       'every flag as portal-gatectl writes it: nothing read again');
    clean_exit($gb->stop, $gb, 'SIGTERM');
};

subtest 'past PG_REVISION_MAX: the digest cannot make revisions, and the whole read does, once' => sub {
    # 2^53 - 1, the highest revision an edge takes and a Lua number holds
    my $max = 9007199254740991;
    my $gc = PortalGate::Gated->new(redis => $rs->url,
                                    edges => [@$e{qw(tcp_url unix_url)}],
                                    environments => [qw(production staging)],
                                    log_level => 'info');
    $gc->start;
    ok($gc->wait_log(qr/revision \d+ read: /, 5), 'read whole at the start');
    $rs->cli('SET', "${P}revision", $max - 2);
    exits(ctl('rollout', 'chat', '90'), 0, 'a write: revision ' . ($max - 1));
    all_at_store('after it (a whole read)');
    my $mark = $gc->mark;
    my $flag = decode_json(hget('customer_portal'));
    push @{$flag->{allow}}, '6006';
    $rs->cli('HSET', "${P}flags:production", 'customer_portal',
             encode_json($flag));
    exits(ctl('rollout', 'chat', '91'), 0, "a write: revision $max");
    my $said = qr/cannot be made revisions \(.*revision $max and 1 more would pass $max.*\): reading the whole store/;
    ok($gc->wait_log($said, 10, $mark), 'the daemon says it cannot, and why')
        or diag($gc->log($mark));
    ok(wait_ticks($e->{unix}, 4), 'the reconcile came round after it');
    is($gc->count_log($said, $mark), 1, 'once: the whole read ended the check');
    is(store_revision(), $max, "the store at $max still");
    clean_exit($gc->stop, $gc, 'SIGTERM');
};

done_testing;
