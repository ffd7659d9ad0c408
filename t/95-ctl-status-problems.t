# portal-gatectl status never says "all well" when it is not: no edges is a
# problem; an unreachable edge whose URL holds a byte that is not UTF-8 is
# still counted and shown; an edge whose GET status has no "overrides"
# leaks nothing (ASan); a beat stamped far ahead of Redis's clock is not a
# live controller. Real redis-server and a real nginx edge (beside its API,
# a location that answers GET status as an older module would); the
# controllers' beats written as portal-gated writes them.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $A = PortalGate::Test->new(server => <<'CONF');
        location = /old/status { default_type application/json;
                                 return 200 '{"revision":0}'; }
CONF
$A->start;
my $a_url = 'http://127.0.0.1:' . $A->port . '/portal-gate/';
my $old = 'http://127.0.0.1:' . $A->port . '/old/';

my $rs = PortalGate::Redis->new;
sub ctl { $rs->ctl(@_) }

exits(ctl('init'), 0, 'init');
my $rev = $rs->cli('GET', 'portal-gate:revision') + 0;
$A->put_snapshot({revision => $rev, environments => {production => {flags => {}}}})
    if $rev > 0;
$rs->beat(store_revision => $rev);

subtest 'a live controller, an edge in step: all well (the baseline)' => sub {
    my $r = ctl('--edge', $a_url, 'status');
    exits($r, 0, 'status');
    like($r->{out}, qr/^all well: 1 portal-gated alive, 1 edge in step$/m,
         'all well');
};

subtest 'no edges: not well, exit 1' => sub {
    my $r = ctl('status');
    exits($r, 1, 'status without edges');
    unlike($r->{out}, qr/all well/, 'does not say all well');
    like($r->{out}, qr/^  - no edges to ask: give --edge URL or -c FILE$/m,
         'says there are no edges');
    my $j = decode_json(ctl('status', '--json')->{out});
    ok(!$j->{ok}, '--json: not ok');
};

subtest 'the only edge unreachable, its URL not UTF-8: not well, exit 1' => sub {
    my $bad = "http://127.0.0.1:1/portal-\xff-gate/";
    my $r = ctl('--edge', $bad, 'status');
    exits($r, 1, 'status');
    unlike($r->{out}, qr/all well/, 'does not say all well');
    like($r->{out}, qr{^  - http://127\.0\.0\.1:1/portal-\?-gate/ is unreachable: }m,
         'names the edge, its odd byte as "?"');
    $r = ctl('--edge', $bad, 'status', '--json');
    exits($r, 1, 'status --json');
    my $j = eval { decode_json($r->{out}) };
    ok($j, '--json is JSON') or diag($r->{out});
    ok($j && !$j->{ok}, 'not ok');
    is($j && scalar @{ $j->{problems} }, 1, 'one problem');
};

subtest 'a long edge URL is cut on a character, not in one' => sub {
    my $long = 'http://127.0.0.1:1/' . ("\x{e9}" x 150) . '/';
    utf8::encode($long);
    my $r = ctl('--edge', $long, 'status', '--json');
    exits($r, 1, 'status --json');
    my $j = eval { decode_json($r->{out}) };
    ok($j, 'the problems are JSON: no character cut in two') or diag($r->{out});
};

subtest 'an edge whose status has no overrides: no leak' => sub {
    my $r = ctl('--edge', $old, 'status');
    exits($r, 0, 'status of an older edge');
    like($r->{out}, qr/\Q$old\E\s+revision 0/, 'its revision');
};

subtest 'a beat stamped far ahead of Redis\'s clock is not alive' => sub {
    $rs->cli('DEL', 'portal-gate:controllers');
    $rs->beat(store_revision => $rev, age_ms => -600_000);
    my $r = ctl('--edge', $a_url, 'status');
    exits($r, 1, 'status');
    like($r->{out}, qr/NOT ALIVE: its beat is stamped [\d.]+ s ahead of Redis's clock/,
         'says its beat is ahead');
    unlike($r->{out}, qr/alive, beat 0\.0 s ago/, 'not "alive, beat 0.0 s ago"');
};

done_testing;
