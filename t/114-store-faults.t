# The store's reads and writes when something other than a flag is wrong
# (issue 14's review): out of memory while reading a flag is the
# controller's failure, never a bad value in Redis (portal-gatectl exits
# 1 saying so and writes nothing; portal-gated neither leaves the flag out
# nor holds back what was written), and out of memory checking a flag is
# no invalid value (kill salvages nothing and drops no key: it fails,
# writing nothing); a revision of 16 digits still goes as
# a delta (the daemon's "revision N read from the change log"); an audit
# key of another type is refused before a script writes anything. gdb makes one allocation fail (it stops the program at a
# chosen function, then has the next malloc of jansson's parse return
# NULL). Real
# redis-server, two nginx edges, portal-gated with a reconcile interval
# of a minute, so that no tick comes within a subtest.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(sleep time);
use PortalGate::Gated qw(clean_exit wait_until two_edges);
use PortalGate::Gdb;
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();
plan skip_all => PortalGate::Gdb::unavailable()
    if PortalGate::Gdb::unavailable();

my $SLOW = $PortalGate::Test::SLOW;
my $TMP = tempdir(CLEANUP => !$ENV{PG_TEST_KEEP});
my $P = 'portal-gate:';
my $rs = PortalGate::Redis->new;
my $e = two_edges();
my @edges = ($e->{tcp}, $e->{unix});

sub ctl { $rs->ctl(@_) }
sub store_revision { $rs->cli('GET', "${P}revision") + 0 }
sub value { $rs->cli('HGET', "${P}flags:production", $_[0]) }

sub answer {
    my ($ng, $flag) = @_;
    my $a = $ng->evaluate(flag => $flag, company => 'c1',
                          env => 'production');
    return ($a->{decision} // '?') . '/' . ($a->{reason} // '?');
}

sub all_answer {
    my ($flag, $want, $name) = @_;
    my $ok = wait_until(sub { !grep { answer($_, $flag) ne $want } @edges },
                        10);
    ok($ok, $name) or diag(join ', ', map { answer($_, $flag) } @edges);
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar <$fh>;
}

# gdb stopped in malloc, which it then leaves at once with `return`
# NULL: not `finish` and a NULL in its place, which would leak what
# malloc gave (the sanitizers' leak check would report it).
my $FAILED = qr/Temporary breakpoint [\d.]+, (?:0x\w+ in )?\w*malloc \(/;

# portal-gatectl @args under gdb: stopped at the first call of $func, the
# first malloc of the json_loadb() after it returns NULL. Returns {exit,
# out} (out: what gdb and the program wrote, both).
sub ctl_oom {
    my ($func, @args) = @_;
    return ctl_oom_at([$func, 'json_loadb'], @args);
}

# portal-gatectl @args under gdb: stopped at the first call of $at->[0],
# then at the next call of each of the others in turn, then the first
# malloc after the last returns NULL.
sub ctl_oom_at {
    my ($at, @args) = @_;
    my ($func, @then) = @$at;
    my $log = "$TMP/gdb-ctl.log";
    my %env = (PORTAL_GATE_REDIS => $rs->url, USER => 'tester',
               SUDO_USER => '', PORTAL_GATE_CONF => '',
               # LeakSanitizer cannot run under ptrace
               ASAN_OPTIONS => 'detect_leaks=0');
    local @ENV{keys %env} = values %env;
    delete local $ENV{PORTAL_GATE_PREFIX};
    delete local $ENV{PORTAL_GATE_ENV};
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $log or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT;
        { exec '/usr/bin/gdb', '-batch', '-nx',
             '-ex', 'set startup-with-shell off',
             '-ex', "break $func", '-ex', 'run',
             (map { ('-ex', "tbreak $_", '-ex', 'continue') } @then),
             '-ex', 'tbreak malloc', '-ex', 'continue',
             '-ex', 'return (void *) 0', '-ex', 'delete', '-ex', 'continue',
             '-ex', 'print $_exitcode',
             '--args', $PortalGate::Redis::CTL, @args }
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    my $out = slurp($log);
    my ($exit) = $out =~ /^\$\d+ = (\d+)$/m;
    return {exit => $exit // -1, out => $out};
}

exits(ctl('init'), 0, 'init');
for my $f (qw(customer_portal calls)) {
    exits(ctl('create', $f), 0, "create $f");
    exits(ctl('rollout', $f, 100), 0, "rollout $f 100");
}

subtest 'portal-gatectl: out of memory reading the flag is no bad value' => sub {
    my $before = value('calls');
    my $r = store_revision();
    my $res = ctl_oom('pg_store_write', 'kill', 'calls');
    like($res->{out}, $FAILED, 'gdb made an allocation fail')
        or diag($res->{out});
    is($res->{exit}, 1, 'kill exits 1: the operation failed')
        or diag($res->{out});
    my @said = grep { /^portal-gatectl: / } split /\n/, $res->{out};
    is(scalar @said, 1, 'one line') or diag($res->{out});
    like($said[0] // '', qr/^portal-gatectl: .*out of memory/,
         'saying out of memory');
    unlike($res->{out}, qr/invalid value|turned off/,
           'not as a bad value in Redis, salvaged');
    is(value('calls'), $before, 'the flag is as it was');
    is(store_revision(), $r, 'nothing written: the revision is as it was');
};

subtest 'portal-gatectl: out of memory checking a good flag is no invalid value' => sub {
    exits(ctl('allow', 'calls', '1001'), 0, 'calls allows 1001');
    my $before = value('calls');
    my $r = store_revision();
    # pg_flag_check_json(): its allow list's first malloc
    my $res = ctl_oom_at(['pg_ctl_edit', 'pg_flag_check_json'],
                         'kill', 'calls');
    like($res->{out}, $FAILED, 'gdb made an allocation fail')
        or diag($res->{out});
    is($res->{exit}, 1, 'kill exits 1: the operation failed')
        or diag($res->{out});
    my @said = grep { /^portal-gatectl: / } split /\n/, $res->{out};
    is(scalar @said, 1, 'one line') or diag($res->{out});
    like($said[0] // '', qr/^portal-gatectl: .*out of memory/,
         'saying out of memory');
    unlike($res->{out}, qr/invalid value|turned off/,
           'not as a bad value in Redis, salvaged');
    is(value('calls'), $before, 'the flag is as it was');
    is(store_revision(), $r, 'nothing written: the revision is as it was');
};

subtest 'portal-gatectl: out of memory salvaging a bad flag drops none of its good keys' => sub {
    my $bad = '{"allow":["1001"],"rollout":"x"}';
    $rs->cli('HSET', "${P}flags:production", 'broken', $bad);
    my $r = store_revision();
    # the check of the value (it fails), then the salvage's of its allow
    # list alone, whose first malloc fails
    my $res = ctl_oom_at(['pg_ctl_edit', 'pg_flag_check_json',
                          'pg_flag_check_json'], 'kill', 'broken');
    like($res->{out}, $FAILED, 'gdb made an allocation fail')
        or diag($res->{out});
    is($res->{exit}, 1, 'kill exits 1: the operation failed')
        or diag($res->{out});
    like($res->{out}, qr/^portal-gatectl: .*out of memory/m,
         'saying out of memory');
    unlike($res->{out}, qr/dropping/, 'no key dropped')
        or diag($res->{out});
    is(value('broken'), $bad, 'the flag is as it was');
    is(store_revision(), $r, 'nothing written: the revision is as it was');
    exits(ctl('kill', 'broken'), 0, 'with memory enough, kill salvages it');
    like(value('broken'), qr/"allow":\["1001"\]/, 'keeping its allow list');
    $rs->cli('HDEL', "${P}flags:production", 'broken');
};

my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [$e->{tcp_url}, $e->{unix_url}],
                                environments => ['production'],
                                reconcile => '60s', log_level => 'info');
$gd->start;
all_answer('calls', 'on/rollout', 'the edges get the store');

subtest 'portal-gated: out of memory reading a changed flag holds nothing back' => sub {
    my $mark = $gd->mark;
    my $log = $gd->dir . '/gdb.log';
    my $armed = $gd->dir . '/armed';
    unlink $armed;
    my $gdb = PortalGate::Gdb::run($gd->pid, $log,
        'break pg_store_parse_value', "shell touch $armed", 'continue',
        'tbreak json_loadb', 'continue', 'tbreak malloc', 'continue',
        'return (void *) 0', 'detach');
    my $deadline = time + 30 * $SLOW;
    sleep 0.05 until -e $armed || time > $deadline;

    exits(ctl('kill', 'calls'), 0, 'kill calls');
    PortalGate::Gdb::finish($gdb);
    like(slurp($log), $FAILED, 'gdb made an allocation fail')
        or diag(slurp($log));

    all_answer('calls', 'off/killed', 'every edge serves the kill');
    ok($gd->wait_log(qr/out of memory/, 2, $mark),
       'the daemon says out of memory') or diag($gd->log($mark));
    is($gd->count_log(qr/not JSON|invalid|bad value|left out/, $mark), 0,
       'and never that the flag is bad') or diag($gd->log($mark));
    exits(ctl('on', 'calls'), 0, 'on calls');
    all_answer('calls', 'on/rollout', 'the next write reaches every edge');
};

subtest 'a store at a revision of 16 digits: a kill still goes as a delta' => sub {
    # 10^15: past 15 digits, far below PG_REVISION_MAX (2^53 - 1), which
    # a Lua number (a double) holds exactly
    my $big = 1000000000000000;
    $rs->cli('SET', "${P}revision", $big);
    exits(ctl('rollout', 'customer_portal', 50), 0,
          'a write: revision ' . ($big + 1));
    my $ok = wait_until(sub { !grep { $_->status->{revision} != $big + 1 }
                                    @edges }, 10);
    ok($ok, 'every edge at it (a whole read: the log does not reach back '
       . 'over the jump)')
        or diag(join ', ', map { $_->status->{revision} } @edges);

    my $mark = $gd->mark;
    exits(ctl('kill', 'calls'), 0, 'kill calls: revision ' . ($big + 2));
    all_answer('calls', 'off/killed', 'every edge serves the kill');
    ok($gd->wait_log(qr/revision ${\($big + 2)} read from the change log/,
                     2, $mark), 'the kill went as a delta')
        or diag($gd->log($mark));
    is($gd->count_log(qr/reading the whole store/, $mark), 0,
       'not as a whole read') or diag($gd->log($mark));
};

subtest 'an audit key of another type: init, restore and a raise refuse before any write' => sub {
    # Redis does not roll a script back: a WRONGTYPE at the XADD, after
    # the writes, left half a change
    my $db1 = 'redis://127.0.0.1:' . $rs->port . '/1';
    my $keys1 = sub { join ',', sort split /\n/, $rs->cli('-n', 1, 'KEYS', '*') };
    my $said = qr/^portal-gatectl: .*WRONGTYPE ${P}audit is a string, not a stream: nothing was written\n\z/;
    $rs->cli('-n', 1, 'FLUSHDB');
    $rs->cli('-n', 1, 'SET', "${P}audit", 'x');
    for my $args (['init'], ['init', '--from-edge', $e->{tcp_url}]) {
        my $r = $rs->ctl_env({PORTAL_GATE_REDIS => $db1}, @$args);
        is($r->{exit}, 1, "@$args: exit 1") or diag($r->{err});
        like($r->{err}, $said, "@$args: one line naming the key and its type");
        is($keys1->(), "${P}audit", "@$args: nothing written, the audit key alone");
    }
    $rs->cli('-n', 1, 'FLUSHDB');

    # the daemon raises the store's revision above an edge's: a store
    # "restored" one revision back
    my $mark = $gd->mark;
    my $r = store_revision();
    $rs->cli('SET', "${P}audit", 'x');
    $rs->cli('SET', "${P}revision", $r - 1);
    $rs->cli('PUBLISH', "${P}changes", $r - 1);
    ok($gd->wait_log(qr/cannot raise the store's revision.*WRONGTYPE ${P}audit is a string, not a stream: nothing was written/,
                     10, $mark), 'the daemon says it cannot raise the revision, and why')
        or diag($gd->log($mark));
    is(store_revision(), $r - 1, 'nothing written: the revision is as it was');
    is($rs->cli('TYPE', "${P}audit"), 'string', 'the audit key as it was');
    $rs->cli('DEL', "${P}audit");
};

clean_exit($gd->stop, $gd, 'portal-gated');

done_testing();
