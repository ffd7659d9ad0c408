# portal-gated's liveness in Redis (DESIGN.md, On-call; include/pg_store.h,
# P"controllers"): a running daemon beats at every reconcile tick, with
# who it is and what it last saw of the store and of each edge; a daemon
# held still (SIGSTOP) stops beating, so its beat grows old; a clean exit
# removes its beat, SIGKILL leaves it, and a beat a day old is forgotten
# by the next beat of any controller; a reload onto another prefix takes
# the beat along; Redis down means no beat, and the beats come back with
# Redis; Redis refusing the write is said once. Real
# redis-server, two real nginx edges.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Sys::Hostname qw(hostname);
use Test::More;
use Time::HiRes qw(sleep);
use PortalGate::Gated qw(clean_exit wait_until two_edges wait_ticks);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $rs = PortalGate::Redis->new;
my $e = two_edges();
my ($A, $B) = @$e{qw(tcp unix)};
my $P = 'portal-gate:';
my $KEY = "${P}controllers";

my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [$e->{tcp_url}, $e->{unix_url}]);

sub ctl { $rs->ctl(@_) }

sub store_revision { $rs->cli('GET', "${P}revision") + 0 }

# Redis's clock in epoch ms: the clock beats are stamped with
sub redis_ms {
    my ($s, $us) = split /\n/, $rs->cli('TIME');
    return $s * 1000 + int($us / 1000);
}

sub field { hostname() . ':' . $gd->pid }

# The daemon's beat, decoded; undef when there is none
sub beat {
    my ($f) = @_;
    my $v = $rs->cli('HGET', $KEY, $f // field());
    return undef if $v eq '';
    return decode_json($v);
}

sub beat_at { my $b = beat(@_); $b ? $b->{beat_at} : 0 }

# until the beat is newer than $after (a beat_at); returns the new one
sub next_beat {
    my ($after) = @_;
    return wait_until(sub { my $b = beat(); $b && $b->{beat_at} > $after
                                            ? $b : undef });
}

my $before_start = redis_ms();

exits(ctl('init'), 0, 'init');
exits(ctl('create', 'customer_portal'), 0, 'create');
$gd->start;
ok($gd->wait_log(qr/connected to redis/, 5), 'running');

subtest 'a running portal-gated beats with who it is and what it saw' => sub {
    my $rev = store_revision();
    my $b = wait_until(sub {
        my $b = beat();
        ($b && $b->{store_revision} == $rev
         && !grep { !$_->{ok} || !$_->{overrides} } values %{ $b->{edges} })
        ? $b : undef
    });
    ok($b, "a beat under field HOST:PID of $KEY, with both edges in step "
           . 'and their status read')
        or diag($rs->cli('HGETALL', $KEY));
    $b //= beat() // {};

    is($b->{host}, hostname(), 'host');
    is($b->{pid}, $gd->pid, 'pid');
    my ($version) = $gd->run('--version')->{out} =~ /^portal-gated (\S+)$/m;
    is($b->{version}, $version, 'version: what --version prints');
    like($b->{started_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
         'started_at: ISO 8601 UTC');
    my $now = redis_ms();
    ok($b->{beat_at} >= $before_start && $b->{beat_at} <= $now,
       "beat_at: Redis's clock in epoch ms ($b->{beat_at})");
    is($b->{interval_ms}, 300, 'interval_ms: its reconcile interval');
    is($b->{store_revision}, $rev, "store_revision: what it read, $rev");
    is_deeply([sort keys %{ $b->{edges} }],
              [sort $e->{tcp_url}, $e->{unix_url}], 'edges: each edge URL');
    for my $url (sort keys %{ $b->{edges} }) {
        my $eb = $b->{edges}{$url};
        is($eb->{revision}, $rev, "$url: its revision");
        ok($eb->{ok}, "$url: ok");
        is($eb->{error}, undef, "$url: no error");
        is_deeply($eb->{overrides}, [], "$url: no kill overrides");
    }
    is($rs->cli('HLEN', $KEY), 1, 'one controller');
};

subtest 'the beat is refreshed at every reconcile tick' => sub {
    my $at = beat_at();
    for my $n (1 .. 3) {
        my $b = next_beat($at);
        ok($b, "beat $n: newer than the one before")
            or return diag($gd->log);
        $at = $b->{beat_at};
    }

    # a change shows in the next beats
    exits(ctl('rollout', 'customer_portal', '10'), 0, 'a change');
    my $rev = store_revision();
    ok(wait_until(sub {
        my $b = beat();
        $b->{store_revision} == $rev
            && !grep { ($_->{revision} // -1) != $rev } values %{ $b->{edges} }
    }), "the beat shows the store and both edges at revision $rev");
};

subtest 'an edge down shows in the beat, with why' => sub {
    $B->stop;
    my $url = $e->{unix_url};
    my $b = wait_until(sub { my $b = beat();
                             $b && !$b->{edges}{$url}{ok} ? $b : undef });
    ok($b, 'the edge is not ok') or return;
    is($b->{edges}{$url}{revision}, undef, 'its revision is not known');
    like($b->{edges}{$url}{error} // '', qr/\Q$url\E|connect/i,
         'the error says it cannot be reached')
        or diag(explain $b->{edges}{$url});
    ok($b->{edges}{$e->{tcp_url}}{ok}, 'the other edge is ok');

    $B->start;
    ok(wait_until(sub { beat()->{edges}{$url}{ok} }),
       'back: ok again, once the daemon has healed it');
    is(beat()->{edges}{$url}{error}, undef, 'no error');
};

subtest 'a daemon held still (SIGSTOP) stops beating, then beats again' => sub {
    my $at = next_beat(beat_at())->{beat_at};
    kill 'STOP', $gd->pid;
    my $stopped_at = beat_at();
    sleep 1.5;      # five reconcile intervals with the daemon held still
    my $after = beat_at();
    my $age = redis_ms() - $after;
    kill 'CONT', $gd->pid;

    is($after, $stopped_at, 'no beat while it was stopped');
    ok($age >= 1500, "the beat grew old ($age ms, 5 intervals)");
    ok(next_beat($after), 'it beats again once it runs');
};

subtest 'Redis refusing the beat is said once, and its return' => sub {
    my $mark = $gd->mark;
    # the daemon's user may read the store, and no longer HSET
    $rs->cli('ACL', 'SETUSER', 'default', '-hset');
    ok($gd->wait_log(qr/\[warn\].*cannot beat in redis .*(?:NOPERM|can't run this command).*portal-gatectl status/,
                     5, $mark), 'said at warn, with Redis\'s answer')
        or diag($gd->log($mark));
    ok(wait_ticks($B, 3), 'three more ticks');
    is($gd->count_log(qr/cannot beat/, $mark), 1, 'said once');
    unlike($gd->log($mark), qr/redis unreachable/,
           'Redis is not taken for down');

    $rs->cli('ACL', 'SETUSER', 'default', '+@all');
    ok($gd->wait_log(qr/\[notice\].*beating in redis .* again/, 5, $mark),
       'and when it beats again');
    ok(next_beat(beat_at()), 'a fresh beat');
};

subtest 'SIGTERM and SIGINT remove the beat; SIGKILL leaves it' => sub {
    my $f = field();
    ok(beat($f), 'a beat before');
    clean_exit($gd->stop, $gd, 'SIGTERM');
    is($rs->cli('HEXISTS', $KEY, $f), '0', 'SIGTERM: its field is gone');

    my $mark = $gd->mark;
    $gd->start;
    ok($gd->wait_log(qr/connected to redis/, 5, $mark), 'started again');
    $f = field();
    ok(wait_until(sub { beat($f) }), 'beats at once');
    clean_exit($gd->kill('INT'), $gd, 'SIGINT');
    is($rs->cli('HEXISTS', $KEY, $f), '0', 'SIGINT: its field is gone');

    $mark = $gd->mark;
    $gd->start;
    ok($gd->wait_log(qr/connected to redis/, 5, $mark), 'started again');
    $f = field();
    ok(wait_until(sub { beat($f) }), 'beats');
    is($gd->kill('KILL'), 128 + 9, 'killed with SIGKILL');
    ok(beat($f), 'SIGKILL: the beat stays, and only grows old');
};

subtest 'a beat a day old is forgotten by the next beat' => sub {
    my $day = 24 * 3600 * 1000;
    my $now = redis_ms();
    my %planted = (
        'gone-host:11' => { host => 'gone-host', pid => 11,
                            beat_at => $now - $day - 60_000 },
        'old-host:12'  => { host => 'old-host', pid => 12,
                            beat_at => $now - $day + 3_600_000 },
    );
    $rs->cli('HSET', $KEY, $_, encode_json($planted{$_}))
        for sort keys %planted;
    $rs->cli('HSET', $KEY, 'junk:13', 'not a beat');

    my $mark = $gd->mark;
    $gd->start;
    my $f = field();
    ok(wait_until(sub { beat($f) }), 'the new daemon beats');
    is($rs->cli('HEXISTS', $KEY, 'gone-host:11'), '0',
       'a beat a day and a minute old is gone');
    is($rs->cli('HEXISTS', $KEY, 'old-host:12'), '1',
       'a beat 23 hours old stays');
    is($rs->cli('HEXISTS', $KEY, 'junk:13'), '1',
       'a value that is not a beat is left alone');
    ok($gd->wait_log(qr/forgot 1 controllers that had not beaten for a day/,
                     5, $mark), 'the log says so');
};

subtest 'a reload onto another prefix moves the beat there' => sub {
    my $f = field();
    ok(beat($f), 'a beat under the old prefix');
    my $mark = $gd->mark;
    $gd->rewrite(prefix => 'other:');
    $gd->hup;
    ok(wait_until(sub { $rs->cli('HEXISTS', 'other:controllers', $f) }),
       'a beat under the new prefix') or diag($gd->log($mark));
    is($rs->cli('HEXISTS', $KEY, $f), '0', 'none left under the old one');
    $gd->rewrite(prefix => undef);
    $gd->hup;
    ok(wait_until(sub { beat($f) }), 'back under the old prefix');
    is($rs->cli('HEXISTS', 'other:controllers', $f), '0',
       'none left under the other one');
};

subtest 'Redis down: no beat; Redis back: beats again' => sub {
    my $mark = $gd->mark;
    $rs->stop;
    ok($gd->wait_log(qr/redis unreachable/, 5, $mark), 'Redis is down');
    $rs->start;     # empty: --save ''
    my $f = field();
    ok(wait_until(sub { beat($f) }, 10),
       'back: it beats again, an empty store or not')
        or diag($gd->log($mark));
    clean_exit($gd->stop, $gd, 'SIGTERM');
    is($rs->cli('HEXISTS', $KEY, $f), '0', 'and its field goes at the end');
};

done_testing;
