# --wait of a change that lets a flag on (on, rollout, allow, undeny) does
# not confirm it while an edge holds a kill override of it: the edge has
# the revision, and serves the flag off all the same; exit 1 naming the
# edge and `release`. And an explicit empty -e or -r is a usage error
# (exit 2), never production or the default Redis. A --wait that timed
# out reads the likely cause from a Redis that hangs within a second, not
# the 5 s command timeout. Real redis-server, a real nginx edge with a
# state file, the real portal-gated.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IPC::Open3 qw(open3);
use Symbol qw(gensym);
use Test::More;
use PortalGate::Gated qw(wait_until);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $A = PortalGate::Test->new(workers => 2, server => <<'CONF');
        location /portal/ { portal_gate customer_portal;
                            return 200 "portal v2\n"; }
CONF
$A->start;
my $a_url = 'http://127.0.0.1:' . $A->port . '/portal-gate/';

my $rs = PortalGate::Redis->new;
my $gd = PortalGate::Gated->new(redis => $rs->url, edges => [$a_url],
                                environments => [qw(production staging)]);
my @c = ('-c', $gd->conf_path);

sub ctl { $rs->ctl(@_) }

exits(ctl('init'), 0, 'init');
exits(ctl('create', 'customer_portal'), 0, 'create');
exits(ctl('rollout', 'customer_portal', '100'), 0, 'rollout 100');
$gd->start;
ok(wait_until(sub { $A->status->{revision} == $rs->cli('GET', 'portal-gate:revision') }, 10),
   'portal-gated has pushed the store') or diag($gd->log);

subtest 'on --wait while the edge holds a kill override: exit 1, says so' => sub {
    exits(ctl(@c, 'kill', 'customer_portal', '--direct'), 0, 'kill --direct');
    my $r = ctl(@c, 'on', 'customer_portal', '--wait=10');
    exits($r, 1, 'on --wait');
    like($r->{out}, qr/^every edge \(1\) has revision \d+/m,
         'the edge has the revision');
    like($r->{err}, qr/but customer_portal is still OFF on 1 of 1 edges: \Q$a_url\E holds a kill override of it in production \(kill --direct\).*`portal-gatectl -e production release customer_portal` lifts it/,
         'says the override keeps it off, and what lifts it');
    is($A->get('/portal/', company => '42')->{status}, 404, 'off indeed');

    $r = ctl(@c, 'rollout', 'customer_portal', '50', '--wait=10');
    exits($r, 1, 'rollout --wait: the same');

    exits(ctl(@c, 'release', 'customer_portal'), 0, 'release');
    $r = ctl(@c, 'rollout', 'customer_portal', '100', '--wait=10');
    exits($r, 0, 'rollout --wait once released: exit 0');
    unlike($r->{err}, qr/still OFF/, 'nothing said');
    is($A->get('/portal/', company => '42')->{status}, 200, 'on');
};

subtest 'an explicit empty -e or -r is exit 2, and nothing is written' => sub {
    my $before = $rs->cli('GET', 'portal-gate:revision');
    for my $args (['-e', ''], ['--env='], ['-r', ''], ['--redis', '']) {
        my $r = ctl(@$args, 'create', 'empty_env');
        exits($r, 2, "@$args create");
        like($r->{err}, qr/option -[er]\/--(env|redis) is empty/,
             "@$args: says the option is empty");
    }
    is($rs->cli('GET', 'portal-gate:revision'), $before, 'nothing written');
    is($rs->cli('HEXISTS', 'portal-gate:flags:production', 'empty_env'), '0',
       'no flag in production');
};

subtest '--wait timed out: the likely cause gives a hung Redis one second' => sub {
    my $dead = 'http://127.0.0.1:1/portal-gate/';
    my $before = $rs->cli('GET', 'portal-gate:revision');
    local $ENV{PORTAL_GATE_REDIS} = $rs->url;
    local $ENV{PORTAL_GATE_CONF} = '';
    local $ENV{USER} = 'tester';
    my $err = gensym;
    my $pid = open3(my $in, my $out, $err, $PortalGate::Redis::CTL,
                    '--edge', $dead, 'rollout', 'customer_portal', '20',
                    '--wait=2');
    close $in;
    # once the change is written, Redis hangs: the likely cause meets it
    ok(wait_until(sub { $rs->cli('GET', 'portal-gate:revision') ne $before }, 10),
       'the change is written');
    $rs->pause;
    my $e = do { local $/; <$err> } // '';
    my $o = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    $rs->resume;
    is($? >> 8, 1, 'exit 1');
    like($e, qr/revision \d+ is not on every edge after 2 s; lagging: \Q$dead\E/,
         'names the lagging edge');
    like($e, qr/likely cause: unknown; the controllers' beats cannot be read: .*no answer within 1000 ms/,
         'the beats are given 1000 ms, not the command timeout') or diag($e);
};

done_testing;
