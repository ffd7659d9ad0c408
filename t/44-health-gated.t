# portal_gate_health stale= with portal-gated: its reconcile (GET
# status?in_step=REV) keeps an edge in step "ok"; a controller-less edge goes
# "stale", however often an operator reads GET status. Real redis-server,
# one real nginx edge, the real daemon.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep);
use PortalGate::Gated qw(wait_until);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $rs = PortalGate::Redis->new;
my $ng = PortalGate::Test->new(server => <<'CONF');
        location = /health { portal_gate_health stale=1s; }
CONF
$ng->start;

my $gd = PortalGate::Gated->new(redis => $rs->url,
    edges => ['http://127.0.0.1:' . $ng->port . '/portal-gate/']);

sub health {
    my $r = $ng->get('/health');
    my $doc = eval { decode_json($r->{content}) } // {};
    return "$r->{status} " . ($doc->{status} // '?');
}

exits($rs->ctl('init'), 0, 'init');
exits($rs->ctl('create', 'customer_portal'), 0, 'create');
$gd->start;

ok(wait_until(sub { $ng->status->{revision} > 0 }), 'the edge gets the store');

# past stale=1s: a limit the test needs, not a timing it asserts
sleep 1.5;
ok(wait_until(sub { health() eq '200 ok' }),
   "portal-gated's reconcile keeps the edge ok") or diag(health());

$gd->stop;
sleep 1.5;
ok(wait_until(sub { $ng->status; health() eq '503 stale' }),
   'without portal-gated, stale, an operator reading GET status or not')
    or diag(health());

$ng->no_bad_log_lines;

done_testing();
