# The change log (issue 14): portal-gated's delta reads what changed from
# P "changelog", written by the same script as each write, not from the
# text of the change messages, which anyone can publish: a stray
# `redis-cli PUBLISH`, or a deployment with the same prefix in another db
# (channels ignore the db). A message is only "something changed, ask".
# Real redis-server, two nginx edges, portal-gated with a reconcile
# interval of a minute, so that no tick (and no whole read after deltas)
# comes within a subtest: what reaches the edges comes from the messages
# and the log alone. Log level info: at debug the daemon reads the whole
# store after every delta to check it, which would hide a wrong delta.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Gated qw(clean_exit wait_until two_edges);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $P = 'portal-gate:';
my $CAP = 1000;             # PG_STORE_CHANGELOG_MAX, include/pg_store.h
my $rs = PortalGate::Redis->new;
my $e = two_edges();
my ($A, $B) = @$e{qw(tcp unix)};
my @edges = ($A, $B);
my %name = ($A => 'A', $B => 'B');
my $db1 = 'redis://127.0.0.1:' . $rs->port . '/1';

sub ctl  { $rs->ctl(@_) }
sub ctl1 { $rs->ctl_env({PORTAL_GATE_REDIS => $db1}, @_) }
sub store_revision { $rs->cli('GET', "${P}revision") + 0 }
sub changelog { [split /\n/, $rs->cli('LRANGE', "${P}changelog", 0, -1)] }

sub answer {
    my ($ng, $flag, $company) = @_;
    my $a = $ng->evaluate(flag => $flag, company => $company // 'c1',
                          env => 'production');
    return ($a->{decision} // '?') . '/' . ($a->{reason} // '?');
}

# every edge answers $want for $flag; a limit far below the reconcile
# interval: only the message path can bring it
sub all_answer {
    my ($flag, $want, $name) = @_;
    my $ok = wait_until(sub { !grep { answer($_, $flag) ne $want } @edges },
                        10);
    ok($ok, $name) or diag(join ', ', map { "$name{$_}: " . answer($_, $flag) }
                                         @edges);
}

sub all_at_store {
    my ($name) = @_;
    my $want = store_revision();
    my $ok = wait_until(sub { !grep { $_->status->{revision} != $want } @edges },
                        10);
    ok($ok, "$name: every edge at the store's revision $want")
        or diag(join ', ', map { "$name{$_}: " . $_->status->{revision} } @edges);
    return $want;
}

# Messages that change no flag, more than hiredis reads at once (16 KB):
# a daemon that trusted the text took the message before them as read
# alone, and read the store before the ones after them came in.
sub padding {
    $rs->cli('EVAL', "for i = 1, 600 do redis.call('PUBLISH', KEYS[1], "
             . "'cert-renew') end", 1, "${P}changes");
}

# a write as a portal-gatectl from before the log makes it: HSET, INCR,
# PUBLISH, no log entry
sub old_write {
    my ($flag, $json, $message) = @_;
    $rs->cli('HSET', "${P}flags:production", $flag, $json);
    my $rev = $rs->cli('INCR', "${P}revision");
    $rs->cli('PUBLISH', "${P}changes", $message // $rev);
    return $rev;
}

exits(ctl('init'), 0, 'init');
for my $f (qw(customer_portal calls)) {
    exits(ctl('create', $f), 0, "create $f");
    exits(ctl('rollout', $f, 100), 0, "rollout $f 100");
}

my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [$e->{tcp_url}, $e->{unix_url}],
                                environments => ['production'],
                                reconcile => '60s', log_level => 'info');
$gd->start;
all_answer('calls', 'on/rollout', 'the edges get the store');
all_at_store('at the start');

subtest 'what each write leaves in the change log' => sub {
    my $r = store_revision();
    like(changelog()->[0], qr/^$r production calls$/,
         'a flag write: "REV ENV FLAG" at the head');
    exits(ctl('env', 'add', 'eu'), 0, 'env add eu');
    is(changelog()->[0], $r + 1, 'env add: the bare revision');
    exits(ctl('-e', 'eu', 'create', 'tmp'), 0, 'create in eu');
    exits(ctl('-e', 'eu', 'delete', 'tmp'), 0, 'delete in eu');
    is_deeply([@{ changelog() }[0 .. 3]],
              [($r + 3) . ' eu tmp', ($r + 2) . ' eu tmp', $r + 1,
               "$r production calls"], 'a create and a delete: one-flag '
              . 'entries, newest first, one per revision');
    all_at_store('after env add');

    # the other db: init, then a rebuild from an edge (init --from-edge)
    exits(ctl1('init'), 0, 'init in db 1');
    is_deeply([split /\n/, $rs->cli('-n', 1, 'LRANGE', "${P}changelog", 0, -1)],
              ['0'], 'init: the bare revision alone');
    $rs->cli('-n', 1, 'FLUSHDB');
    exits(ctl1('init', '--from-edge', $e->{tcp_url}), 0, 'init --from-edge');
    is_deeply([split /\n/, $rs->cli('-n', 1, 'LRANGE', "${P}changelog", 0, -1)],
              [store_revision()], 'a rebuild: the edge\'s revision alone');
    $rs->cli('-n', 1, 'FLUSHDB');
};

subtest 'a foreign message naming the next revision does not hide a kill' => sub {
    my $mark = $gd->mark;
    my $r = store_revision();

    # the daemon held still: the foreign message, then the real kill
    kill 'STOP', $gd->pid;
    $rs->cli('PUBLISH', "${P}changes", ($r + 1) . ' production customer_portal');
    padding();
    exits(ctl('kill', 'calls'), 0, 'kill calls: revision ' . ($r + 1));
    kill 'CONT', $gd->pid;

    all_answer('calls', 'off/killed', 'every edge serves the kill');
    is(all_at_store('after the kill'), $r + 1, 'at the kill\'s revision');
    is(answer($_, 'customer_portal'), 'on/rollout',
       "edge $name{$_}: the flag the message named is unchanged") for @edges;
    ok($gd->wait_log(qr/revision ${\($r + 1)} read from the change log/,
                     2, $mark), 'the kill went as a delta');
};

subtest 'a foreign message far ahead: nothing wrong, nothing lost' => sub {
    my $mark = $gd->mark;
    my $r = store_revision();
    $rs->cli('PUBLISH', "${P}changes", ($r + 1000) . ' production calls');
    $rs->cli('PUBLISH', "${P}changes", 'not a revision at all');
    # what the daemon does with them shows only at debug: nothing
    ok(!wait_until(sub { grep { $_->status->{revision} != $r } @edges }, 1),
       'no edge moves');

    exits(ctl('on', 'calls'), 0, 'on calls');
    all_answer('calls', 'on/rollout', 'the next write reaches every edge');
    all_at_store('after it');
    ok($gd->wait_log(qr/revision ${\($r + 1)} read from the change log/,
                     2, $mark), 'as a delta');
};

subtest 'a write in another db with the same prefix does not hide a kill' => sub {
    my $mark = $gd->mark;
    my $r = store_revision();
    exits(ctl1('init'), 0, 'init in db 1');
    exits(ctl1('create', 'other'), 0, 'create other in db 1');
    # db 1's next revision is db 0's next
    $rs->cli('-n', 1, 'SET', "${P}revision", $r);

    kill 'STOP', $gd->pid;
    exits(ctl1('rollout', 'other', 5), 0, "db 1's write: revision " . ($r + 1));
    padding();
    exits(ctl('kill', 'customer_portal'), 0, "db 0's kill: revision " . ($r + 1));
    kill 'CONT', $gd->pid;

    all_answer('customer_portal', 'off/killed', 'every edge serves the kill');
    all_at_store('after the kill');
    ok(!grep({ exists $_->snapshot->{environments}{production}{other} } @edges),
       'no edge got db 1\'s flag');
    is(answer($_, 'calls'), 'on/rollout', "edge $name{$_}: calls unchanged")
        for @edges;
    $rs->cli('-n', 1, 'FLUSHDB');
    exits(ctl('on', 'customer_portal'), 0, 'on again');
    all_answer('customer_portal', 'on/rollout', 'on again everywhere');
};

subtest 'a write without the log (a portal-gatectl from before it) is read whole' => sub {
    my $mark = $gd->mark;

    # the message of a portal-gatectl from after "REV ENV FLAG", before
    # the log: it names the flag, and the store is above the log
    my $r = store_revision();
    my $rev = old_write('calls', '{"enabled": false}',
                        ($r + 1) . ' production calls');
    all_answer('calls', 'off/killed', 'the old writer\'s kill reaches every edge');
    ok($gd->wait_log(qr/revision $rev read: .* bytes to push/, 2, $mark),
       'read whole');
    ok($gd->wait_log(qr/written without the change log/, 2, $mark),
       'and the daemon says why');

    # an old write, then a new one, both before the daemon reads: the log
    # has a gap where the old one is
    kill 'STOP', $gd->pid;
    $rev = old_write('calls', '{"enabled": true, "rollout": 100, "allow": ["old1"]}');
    exits(ctl('allow', 'customer_portal', 'new1'), 0, 'a new write after it');
    kill 'CONT', $gd->pid;
    my $ok = wait_until(sub {
        !grep { answer($_, 'calls', 'old1') ne 'on/allowed'
                || answer($_, 'customer_portal', 'new1') ne 'on/allowed' } @edges
    }, 10);
    ok($ok, 'both writes reach every edge');
    all_at_store('after both');
    ok($gd->wait_log(qr/revision ${\($rev + 1)} read: .* bytes to push/, 2, $mark),
       'read whole');

    exits(ctl('allow', 'customer_portal', 'new2'), 0, 'the next write');
    all_at_store('after it');
    ok($gd->wait_log(qr/revision ${\($rev + 2)} read from the change log/,
                     2, $mark), 'a delta again');
};

subtest 'a store restored from an older backup: the next kill is not skipped' => sub {
    my $mark = $gd->mark;
    my $r = store_revision();

    # what Redis holds after a restore of a backup taken 3 writes ago, as
    # far as the revision and the log go: no message says it
    $rs->cli('SET', "${P}revision", $r - 3);
    $rs->cli('LTRIM', "${P}changelog", 3, -1);
    exits(ctl('kill', 'customer_portal'), 0, 'a kill: revision ' . ($r - 2)
          . ', which the daemon has read before');
    all_answer('customer_portal', 'off/killed', 'every edge serves the kill');
    ok($gd->wait_log(qr/reading the whole store after revision $r: the store is at revision ${\($r - 2)}, below $r/,
                     2, $mark), 'the daemon read the whole store: it went back');
    ok($gd->wait_log(qr/raised the store's revision to/, 5, $mark),
       'and raised it above the edges');
    all_at_store('after the raise');
    exits(ctl('on', 'customer_portal'), 0, 'on again');
    all_answer('customer_portal', 'on/rollout', 'on again everywhere');
};

subtest 'more writes than the log holds between two reads: read whole' => sub {
    my $mark = $gd->mark;
    my $r = store_revision();

    # $CAP writes while the daemon is held still, logged as portal-gatectl
    # logs them (one script each would take minutes under ASan), then a
    # real kill: the log no longer reaches back to the daemon's revision
    kill 'STOP', $gd->pid;
    $rs->cli('EVAL', <<'LUA', 3, "${P}flags:production", "${P}revision",
local v
for i = 1, tonumber(ARGV[1]) do
  v = '{"enabled": true, "rollout": ' .. ((i - 1) % 100 + 1) .. '}'
  redis.call('HSET', KEYS[1], 'customer_portal', v)
  local rev = redis.call('INCR', KEYS[2])
  redis.call('LPUSH', KEYS[3], string.format('%d production customer_portal', rev))
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[1]) - 1)
end
return 1
LUA
             "${P}changelog", $CAP);
    exits(ctl('kill', 'calls'), 0, 'a kill after them');
    is(scalar @{ changelog() }, $CAP, "the log holds $CAP entries, no more");
    is(store_revision(), $r + $CAP + 1, 'the store moved ' . ($CAP + 1));
    kill 'CONT', $gd->pid;

    all_answer('calls', 'off/killed', 'the kill reaches every edge');
    my $rev = all_at_store('after the writes');
    ok($gd->wait_log(qr/revision $rev read: .* bytes to push/, 2, $mark),
       'read whole');
    ok($gd->wait_log(qr/the change log does not reach back to revision $r/,
                     2, $mark), 'and the daemon says why');
    is(answer($_, 'customer_portal'), 'on/rollout', "edge $name{$_}: the "
       . 'last of the logged writes is served') for @edges;
};

subtest 'after a restart of the daemon, the first change goes as a patch' => sub {
    clean_exit($gd->stop, $gd, 'SIGTERM');
    my $mark = $gd->mark;
    my $r = store_revision();
    $gd->start;
    for my $ng (@edges) {
        my $url = $ng == $A ? $e->{tcp_url} : $e->{unix_url};
        ok($gd->wait_log(qr/edge \Q$url\E holds this daemon's snapshot of revision $r:/,
                         10, $mark), "edge $name{$ng}: found holding the "
           . "snapshot the new daemon made (GET snapshot)");
    }
    exits(ctl('on', 'calls'), 0, 'on calls');
    all_answer('calls', 'on/rollout', 'the change reaches every edge');
    for my $ng (@edges) {
        my $url = $ng == $A ? $e->{tcp_url} : $e->{unix_url};
        like($gd->wait_log(qr/edge \Q$url\E: revision ${\($r + 1)} applied in/,
                           5, $mark) // '', qr/\(patched: 1 flag from revision $r\)/,
             "edge $name{$ng}: as a patch, not a whole PUT");
    }
};

# The store rebuilt while the daemon is held still (SIGSTOP): FLUSHDB and
# init, writes logged as portal-gatectl logs them up to $to - 3 (one
# script: thousands of portal-gatectl runs would take minutes under
# ASan), then customer_portal to rollout 0, calls created and killed: the
# new history reaches $to with the kill at $to, below or at the revision
# the daemon holds. Its log alone cannot tell it from the old history.
sub rebuild_to {
    my ($to, $db) = @_;
    my @n = ('-n', $db // 0);
    my $ctl = $db ? \&ctl1 : \&ctl;
    $rs->cli(@n, 'FLUSHDB');
    exits($ctl->('init'), 0, 'init again: a flushed store');
    $rs->cli(@n, 'EVAL', <<'LUA', 3, "${P}flags:production", "${P}revision",
for i = 1, tonumber(ARGV[1]) do
  redis.call('HSET', KEYS[1], 'customer_portal', '{"enabled": true, "rollout": 100}')
  local rev = redis.call('INCR', KEYS[2])
  redis.call('LPUSH', KEYS[3], string.format('%d production customer_portal', rev))
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[2]) - 1)
end
return 1
LUA
             "${P}changelog", $to - 3, $CAP);
    exits($ctl->('rollout', 'customer_portal', 0), 0, 'rollout customer_portal 0');
    exits($ctl->('create', 'calls'), 0, 'create calls');
    exits($ctl->('kill', 'calls'), 0, 'kill calls');
    is($rs->cli(@n, 'GET', "${P}revision"), $to, "the new store at revision $to");
}

# what every edge must serve of the rebuilt store, and hold of it
sub serve_rebuilt {
    my ($limit) = @_;
    my $ok = wait_until(sub { !grep { answer($_, 'calls') ne 'off/killed'
                                      || answer($_, 'customer_portal')
                                         ne 'off/rollout' } @edges },
                        $limit);
    ok($ok, 'every edge serves the rebuilt store: calls killed, '
       . 'customer_portal at rollout 0')
        or diag(join ', ', map { "$name{$_}: " . answer($_, 'calls') . ' '
                                 . answer($_, 'customer_portal') } @edges);
    all_at_store('after the rebuild');
    for my $ng (@edges) {
        is_deeply([sort keys %{ $ng->snapshot->{environments}{production} }],
                  [sort split /\n/, $rs->cli('HKEYS', "${P}flags:production")],
                  "edge $name{$ng}: holds the store's flags, no others");
    }
}

subtest 'a store rebuilt past the daemon\'s revision is read whole, not as a delta' => sub {
    all_answer('calls', 'on/rollout', 'calls on at the start');
    my $mark = $gd->mark;
    my $r = store_revision();
    my $epoch = $rs->cli('HGET', "${P}store", 'epoch');
    like($epoch, qr/^[0-9a-f]{32}$/, 'the marker has an epoch');

    kill 'STOP', $gd->pid;
    rebuild_to($r);
    isnt($rs->cli('HGET', "${P}store", 'epoch'), $epoch,
         'init gave the new store another epoch');
    exits(ctl('create', 'x'), 0, 'create x: revision ' . ($r + 1)
          . ', one past the daemon\'s');
    kill 'CONT', $gd->pid;

    # reconcile 60s: only the change messages bring it
    serve_rebuilt(10);
    ok($gd->wait_log(qr/reading the whole store after revision $r: the store was rebuilt/,
                     2, $mark), 'the daemon says why it read the whole store');
};

$_->no_bad_log_lines("edge $name{$_}: no [crit], [alert] or [emerg]") for @edges;
clean_exit($gd->stop, $gd, 'SIGTERM at the end');

subtest 'a store rebuilt to the very revision the daemon holds: the tick heals it' => sub {
    # init --from-edge gives a new epoch too
    $rs->cli('-n', 1, 'FLUSHDB');
    exits(ctl1('init', '--from-edge', $e->{tcp_url}), 0, 'init --from-edge');
    like($rs->cli('-n', 1, 'HGET', "${P}store", 'epoch'), qr/^[0-9a-f]{32}$/,
         'a rebuild from an edge has an epoch');
    isnt($rs->cli('-n', 1, 'HGET', "${P}store", 'epoch'),
         $rs->cli('HGET', "${P}store", 'epoch'), 'another than db 0\'s');
    $rs->cli('-n', 1, 'FLUSHDB');

    # the store as it was before: calls and customer_portal on
    exits(ctl('on', 'calls'), 0, 'calls on');
    exits(ctl('rollout', 'calls', 100), 0, 'calls 100');
    exits(ctl('rollout', 'customer_portal', 100), 0, 'customer_portal 100');
    my $gd2 = PortalGate::Gated->new(redis => $rs->url,
                                     edges => [$e->{tcp_url}, $e->{unix_url}],
                                     environments => ['production'],
                                     reconcile => '2s', log_level => 'info');
    $gd2->start;
    all_answer('calls', 'on/rollout', 'calls on');
    all_answer('customer_portal', 'on/rollout', 'customer_portal on');
    my $r = all_at_store('a daemon with a reconcile of 2 s');
    my $mark = $gd2->mark;

    kill 'STOP', $gd2->pid;
    rebuild_to($r);
    kill 'CONT', $gd2->pid;

    # the revision is the same: only the epoch tells, to the change
    # messages' delta or to the tick, within a few reconcile intervals
    serve_rebuilt(10);
    ok($gd2->wait_log(qr/the store was rebuilt .*revision $r/, 2, $mark),
       'the daemon says why it read the whole store');

    # the same without a message (a store swapped in: SWAPDB, a failover):
    # the rebuilt store built in db 1 at the revision db 0 reaches with all
    # flags on again (db 1's messages reach the daemon, whose delta finds
    # nothing new in db 0), then swapped with db 0. The last write in db 0
    # is one without the log, so that the daemon's last read is whole: the
    # whole read that follows deltas (after a quiet interval) would hide
    # the missing epoch check.
    $mark = $gd2->mark;
    $r = store_revision() + 3;
    rebuild_to($r, 1);
    exits(ctl('on', 'calls'), 0, 'calls on in db 0');
    exits(ctl('rollout', 'calls', 100), 0, 'calls 100 in db 0');
    old_write('customer_portal', '{"enabled": true, "rollout": 100}');
    all_answer('calls', 'on/rollout', 'calls on');
    all_answer('customer_portal', 'on/rollout', 'customer_portal on');
    is(all_at_store('db 0'), $r, 'db 0 at the revision of db 1');
    ok($gd2->wait_log(qr/reading the whole store after revision ${\($r - 1)}: revision $r was written without/,
                      2, $mark), 'read whole');
    $mark = $gd2->mark;
    $rs->cli('SWAPDB', 0, 1);
    serve_rebuilt(10);
    ok($gd2->wait_log(qr/reconcile: the store was rebuilt .* since revision $r was read/,
                      2, $mark), 'the tick says why it read the whole store');
    $rs->cli('-n', 1, 'FLUSHDB');
    $_->no_bad_log_lines("edge $name{$_}: no [crit], [alert] or [emerg]")
        for @edges;
    clean_exit($gd2->stop, $gd2, 'SIGTERM');
};

done_testing;
