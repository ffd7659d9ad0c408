# The break-glass kill: portal-gatectl kill F --direct reaches every edge's
# API straight, with Redis stopped and portal-gated held still (SIGSTOP),
# and F is off on every worker of every edge. It holds when Redis comes
# back, when portal-gated runs again and pushes, and across an edge
# restart; status lists the overrides; release F lifts them and F is as
# the store says. With Redis up, kill --direct also records the kill in
# the store and the audit log. Real redis-server, two real nginx edges of
# two workers each (one API over TCP, one over a unix socket, both with a
# state file), the real portal-gated.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use PortalGate::Gated qw(wait_until);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $portal = <<'CONF';
        location /portal/ { portal_gate customer_portal;
                            add_header X-Reason $portal_gate_reason always;
                            return 200 "portal v2\n"; }
CONF

my $A = PortalGate::Test->new(server => $portal, workers => 2);
my $B = PortalGate::Test->new(server => $portal, workers => 2, http => <<'CONF');
    server {
        listen unix:%%DIR%%/api.sock;
        location /pg-api/ { portal_gate_api; }
    }
CONF
$A->start;
$B->start;
my $a_url = 'http://127.0.0.1:' . $A->port . '/portal-gate/';
my $b_url = 'unix:' . $B->dir . '/api.sock:/pg-api/';

my $rs = PortalGate::Redis->new;
my $gd = PortalGate::Gated->new(redis => $rs->url, edges => [$a_url, $b_url],
                                environments => [qw(production staging)],
                                reconcile => '300ms');
my @c = ('-c', $gd->conf_path);

sub ctl { $rs->ctl(@_) }

sub store_revision { $rs->cli('GET', 'portal-gate:revision') + 0 }

# What every worker of both edges answers company $company: "STATUS
# REASON" of each answer, the distinct ones joined (more requests than
# workers, so each worker answers)
sub answers {
    my ($company) = @_;
    my %seen;
    for my $ng ($A, $B) {
        for (1 .. 8) {
            my $r = $ng->get('/portal/', company => $company);
            $seen{"$r->{status} " . ($r->{headers}{'x-reason'} // '')} = 1;
        }
    }
    return join ',', sort keys %seen;
}

sub edges_at {
    my ($rev) = @_;
    return wait_until(sub { $A->status->{revision} == $rev
                            && $B->status->{revision} == $rev }, 10);
}

exits(ctl('init'), 0, 'init');
exits(ctl('create', 'customer_portal'), 0, 'create');
exits(ctl('rollout', 'customer_portal', '100'), 0, 'rollout 100');
$gd->start;
ok(edges_at(store_revision()), 'portal-gated has pushed the store')
    or diag($gd->log);
is(answers('42'), '200 rollout', 'every worker of both edges serves the portal');

subtest 'with Redis stopped and portal-gated held still, kill --direct turns it off everywhere' => sub {
    $rs->cli('SAVE');           # Redis comes back with its data
    $rs->stop;
    kill 'STOP', $gd->pid;

    my $r = ctl(@c, '--reason', 'INC-42', 'kill', 'customer_portal',
                '--direct');
    exits($r, 0, 'kill --direct');
    like($r->{out}, qr/^KILLED customer_portal in production on every edge \(2\), by override, in [\d.]+ ms:$/m,
         'says every edge confirmed');
    like($r->{out}, qr/^  \Q$a_url\E\s+off: override set$/m,
         'the TCP edge');
    like($r->{out}, qr/^  \Q$b_url\E\s+off: override set$/m,
         'the unix-socket edge');
    like($r->{err}, qr/the store was not changed: .*refused.*once Redis is back, record the kill: portal-gatectl -e production --reason 'INC-42' kill customer_portal/s,
         'says the store was not changed, and what to run later');
    is(answers('42'), '404 killed', 'every worker of both edges: 404, killed');
    is(answers('1001'), '404 killed', 'any company');
};

subtest 'it holds when Redis comes back' => sub {
    $rs->start;
    is($rs->cli('HGET', 'portal-gate:store', 'format'), '1',
       'the store is back, with the flag on');
    is(answers('42'), '404 killed', 'still off');
};

subtest 'it holds when portal-gated runs again and pushes' => sub {
    kill 'CONT', $gd->pid;
    exits(ctl('allow', 'customer_portal', '1001'), 0, 'a change to push');
    ok(edges_at(store_revision()), 'portal-gated pushed it to both edges')
        or diag($gd->log);
    like($gd->log, qr/kill override/i, 'portal-gated says the edges hold an override');
    is(answers('42'), '404 killed', 'still off, whatever the snapshot says');
    is(answers('1001'), '404 killed', 'an allowed company too');
};

subtest 'it holds across an edge restart' => sub {
    $A->restart;
    $B->restart;
    is(answers('42'), '404 killed', 'still off after both edges restarted');
};

subtest 'status lists the override of every edge' => sub {
    my $r = wait_until(sub { my $r = ctl(@c, 'status');
                             $r->{exit} == 0 ? $r : undef }, 10);
    ok($r, 'status exits 0: a live controller, the edges in step')
        or return diag(ctl(@c, 'status')->{out});
    my @lines = $r->{out} =~ /^      KILL OVERRIDE: customer_portal in production, since \S+ by tester: INC-42 /mg;
    is(scalar @lines, 2, 'one override under each edge, with who and why');
};

subtest 'release lifts it: the flag is as the store says, on' => sub {
    my $r = ctl(@c, 'release', 'customer_portal');
    exits($r, 0, 'release');
    like($r->{out}, qr/released the kill overrides of customer_portal in production on 2 of 2 edges/,
         'on both edges');
    like($r->{out}, qr/release does not turn customer_portal on: the edges serve it as the store says, and the store has it on/,
         'says what the store has');
    is(answers('42'), '200 rollout', 'served again, as the store says');
    my $a = decode_json(ctl('audit', '--json', '--count', '1')->{out})->[0];
    is_deeply([@$a{qw(action flag env)}],
              ['release', 'customer_portal', 'production'], 'audited');
    like($a->{reason}, qr/released the kill overrides on 2 of 2 edges/,
         'with what it did');

    $r = ctl(@c, 'release', 'customer_portal', '--direct');
    exits($r, 0, 'release again (--direct is accepted)');
    like($r->{out}, qr/no edge held a kill override of customer_portal in production/,
         'says there was none');
};

subtest 'with Redis up, kill --direct also records the kill in the store' => sub {
    my $rev = store_revision();
    my $r = ctl(@c, '--reason', 'INC-43', 'kill', 'customer_portal',
                '--direct');
    exits($r, 0, 'kill --direct');
    like($r->{out}, qr/the store agrees: KILLED customer_portal in production: enabled true -> false \(revision @{[$rev + 1]}\)/,
         'the store has the kill');
    my $a = decode_json(ctl('audit', '--json', '--count', '1')->{out})->[0];
    is($a->{action}, 'kill', 'audited as a kill');
    is($a->{reason}, 'INC-43; break-glass: kill overrides on 2 of 2 edges (kill --direct)',
       'whose reason names the overrides');
    is(answers('42'), '404 killed', 'off');

    $r = ctl(@c, 'kill', 'customer_portal', '--direct');
    exits($r, 0, 'again');
    like($r->{out}, qr/killed already \(the first kill's who and why stay\)/,
         'the edges had it');
    like($r->{out}, qr/the store has customer_portal off in production already/,
         'and the store');
    is(decode_json(ctl('audit', '--json', '--count', '1')->{out})->[0]{action},
       'kill', 'the break-glass is in the audit log all the same');

    ok(edges_at(store_revision()), 'portal-gated pushed the kill');
    $r = ctl(@c, 'release', 'customer_portal');
    exits($r, 0, 'release');
    like($r->{out}, qr/release does not turn customer_portal on: .*the store has it OFF \(killed\); `portal-gatectl -e production on customer_portal` turns it on/,
         'says release does not turn it on, and what does');
    is(answers('42'), '404 killed', 'off still: the store says so');
    exits(ctl('on', 'customer_portal'), 0, 'on');
    ok(edges_at(store_revision()), 'pushed');
    is(answers('42'), '200 rollout', 'on again');
};

subtest 'an edge that does not answer: the others are killed, exit 1 naming it' => sub {
    my $dead = 'http://127.0.0.1:1/portal-gate/';
    my $r = ctl('--edge', $a_url, '--edge', $dead, 'kill', 'customer_portal',
                '--direct');
    exits($r, 1, 'kill --direct');
    like($r->{out}, qr/customer_portal in production: killed on 1 of 2 edges/,
         'says how many');
    like($r->{out}, qr/\Q$dead\E\s+NOT CONFIRMED: .*connect/i, 'and which not, why');
    like($r->{err}, qr/not every edge confirmed the kill: \Q$dead\E;/,
         'names it on stderr');
    is($A->get('/portal/', company => '42')->{status}, 404, 'the live edge is off');
    exits(ctl(@c, 'release', 'customer_portal'), 0, 'release');
    exits(ctl('on', 'customer_portal'), 0, 'on');
};

subtest 'kill --direct of a flag no edge knows exits 1: a typo is no kill' => sub {
    my $r = ctl(@c, '-e', 'prodution', 'kill', 'customer_portal', '--direct');
    exits($r, 1, 'an environment no edge has');
    like($r->{out}, qr/off: override set; this edge has no such flag/,
         'each edge says it has no such flag');
    like($r->{err}, qr/no edge knows flag "customer_portal" in prodution: it was off there already\. Are the flag and the environment right\?/,
         'says so');
    like($r->{err}, qr/the overrides it set were taken back/,
         'and that it took its overrides back');
    is(answers('42'), '200 rollout', 'the real flag is on, as it was');
    is_deeply($A->status->{overrides}, [], 'no stray override left');

    $r = ctl(@c, 'kill', 'customer_portal_typo', '--direct');
    exits($r, 1, 'a flag no edge knows');
    like($r->{err}, qr/no edge knows flag "customer_portal_typo" in production/,
         'says so');
    is_deeply($A->status->{overrides}, [], 'no override left');
};

subtest 'kill --direct refuses what it cannot do, before anything' => sub {
    my $r = ctl('kill', 'customer_portal', '--direct');
    exits($r, 2, 'no edges');
    like($r->{err}, qr/kill --direct needs the edges: give --edge URL or -c FILE/,
         'says so');
    exits(ctl(@c, 'kill', 'customer_portal', '--direct', '--wait'), 2,
          '--wait: the kill confirms itself');
    exits(ctl(@c, 'on', 'customer_portal', '--direct'), 2, 'on --direct');
    is_deeply($A->status->{overrides}, [], 'no override was set');
};

subtest 'kill --direct --json' => sub {
    my $r = ctl(@c, 'kill', 'customer_portal', '--direct', '--json');
    exits($r, 0, 'kill --direct --json');
    my $j = decode_json($r->{out});
    is_deeply([map { $_->{confirmed} ? 1 : 0 } @{ $j->{edges} }], [1, 1],
              'each edge confirmed');
    is_deeply([@$j{qw(confirmed total)}], [2, 2], 'two of two');
    ok($j->{store}{recorded}, 'recorded in the store');
    $r = ctl(@c, 'release', 'customer_portal', '--json');
    exits($r, 0, 'release --json');
    is(decode_json($r->{out})->{released}, 2, 'released on two');
    exits(ctl('on', 'customer_portal'), 0, 'on');
};

subtest 'Redis that does not answer: kill and off say it timed out, and how to kill --direct' => sub {
    my $rev = store_revision();
    my $where = $rs->url;
    my $conf = $gd->conf_path;
    $rs->pause;                 # it accepts connections, answers nothing
    my %r = map { $_ => ctl(@c, $_, 'customer_portal') } qw(kill off on);
    $rs->resume;

    for my $cmd (qw(kill off)) {
        exits($r{$cmd}, 1, $cmd);
        is($r{$cmd}{err},
           "portal-gatectl: $where: timed out: no answer within 5000 ms\n"
           . "portal-gatectl: the store is unreachable; to turn customer_portal off on the edges anyway: portal-gatectl -c $conf -e production kill customer_portal --direct\n",
           "$cmd: a timeout, then the break-glass kill to copy");
    }
    exits($r{on}, 1, 'on');
    is($r{on}{err}, "portal-gatectl: $where: timed out: no answer within 5000 ms\n",
       'on: the timeout alone');
    is(store_revision(), $rev, 'nothing was written');

    # stopped (refused), with --edge, another environment, who and why
    $rs->cli('SAVE');
    $rs->stop;
    my $r = ctl('--edge', $a_url, '--edge', $b_url, '-e', 'staging',
                '--actor', 'on call', '--reason', "INC-44: it's down",
                'kill', 'customer_portal');
    $rs->start;
    exits($r, 1, 'kill with Redis stopped');
    my $q = "'INC-44: it'\\''s down'";
    is($r->{err},
       "portal-gatectl: $where: Connection refused\n"
       . "portal-gatectl: the store is unreachable; to turn customer_portal off on the edges anyway: portal-gatectl --edge $a_url --edge $b_url -e staging --actor 'on call' --reason $q kill customer_portal --direct\n",
       'the command names those edges, and keeps -e, --actor and --reason');
    is(store_revision(), $rev, 'nothing was written');
    is(answers('42'), '200 rollout', 'and the edges still serve the portal');
};

is($gd->stop, 0, 'portal-gated stops cleanly');
$A->no_bad_log_lines;
$B->no_bad_log_lines;

done_testing;
