# An edge whose last request failed, or that cannot hold the store's
# snapshot (review of portal-gated): a kill must not wait for the next
# reconcile tick once the edge is back, and an edge whose zone is too
# small for the store still gets every kill. Real redis-server, real nginx
# edges; the reconcile tick is an hour away, so only a change reaches the
# edges.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Gated qw(clean_exit wait_until two_edges);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

sub answer {
    my ($ng, $flag) = @_;
    my $a = $ng->evaluate(flag => $flag // 'customer_portal',
                          company => '1001');
    return ($a->{decision} // '?') . '/' . ($a->{reason} // '?');
}

subtest 'an edge back after a failed push gets the next kill at once' => sub {
    my $rs = PortalGate::Redis->new;
    my $e = two_edges();
    my ($A, $B) = @$e{qw(tcp unix)};    # B: no state file
    my $gd = PortalGate::Gated->new(redis => $rs->url,
                                    edges => [$e->{tcp_url}, $e->{unix_url}],
                                    reconcile => '1h');
    my $ctl = sub { $rs->ctl(@_) };

    exits($ctl->('init'), 0, 'init');
    exits($ctl->('create', 'customer_portal'), 0, 'create');
    exits($ctl->('allow', 'customer_portal', '1001'), 0, 'allow 1001');
    $gd->start;
    ok(wait_until(sub { !grep { answer($_) ne 'on/allowed' } $A, $B }),
       'on at both edges');

    my $mark = $gd->mark;
    $B->stop;
    exits($ctl->('rollout', 'customer_portal', '5'), 0,
          'a change while B is down');
    ok($gd->wait_log(qr/\[warn\].*unix:.*it keeps what it has/, 5, $mark),
       'B is said down') or diag($gd->log($mark));
    $B->start;
    exits($ctl->('kill', 'customer_portal'), 0, 'kill');
    ok(wait_until(sub { answer($A) eq 'off/killed' }), 'A is killed');
    ok(wait_until(sub { answer($B) eq 'off/killed' }),
       'B, up again, is killed without waiting for the tick')
        or diag($gd->log($mark));
    clean_exit($gd->stop, $gd, 'SIGTERM at the end');
};

subtest 'an edge whose zone cannot hold the store still gets a kill' => sub {
    my $rs = PortalGate::Redis->new;
    my $server = <<'CONF';
        location /portal/ { portal_gate customer_portal;
                            return 200 "portal v2\n"; }
CONF
    my $A = PortalGate::Test->new(server => $server);
    my $C = PortalGate::Test->new(server => $server, zone => '128k');
    $A->start;
    $C->start;
    my @edges = ($A, $C);
    my $gd = PortalGate::Gated->new(redis => $rs->url, reconcile => '1h',
        edges => [map { 'http://127.0.0.1:' . $_->port . '/portal-gate/' }
                  @edges]);
    my $ctl = sub { $rs->ctl(@_) };

    exits($ctl->('init'), 0, 'init');
    exits($ctl->('create', 'customer_portal'), 0, 'create');
    exits($ctl->('allow', 'customer_portal', '1001'), 0, 'allow 1001');
    exits($ctl->('create', 'billing'), 0, 'create billing');
    exits($ctl->('allow', 'billing', '1001'), 0, 'allow 1001 billing');
    $gd->start;
    ok(wait_until(sub { !grep { answer($_) ne 'on/allowed' } @edges }),
       'on at both edges');

    my $mark = $gd->mark;
    exits($ctl->('create', 'big'), 0, 'create big');
    exits($ctl->('allow', 'big', map { "c$_" } 1 .. 20000), 0,
          'allow 20000 ids in big: more than the small zone holds');
    ok($gd->wait_log(qr/answered 507/, 5, $mark), 'the small edge: 507')
        or diag($gd->log($mark));
    exits($ctl->('kill', 'customer_portal'), 0, 'kill customer_portal');
    ok(wait_until(sub { answer($A) eq 'off/killed' }), 'A is killed');
    ok(wait_until(sub { answer($C) eq 'off/killed' }),
       'the small edge is killed too') or diag($gd->log($mark));
    is(answer($C, 'billing'), 'on/allowed',
       'the small edge keeps the rest of what it had');
    cmp_ok(scalar @{ $C->snapshot->{environments}{production}{big}{allow}
                     // [] }, '<', 20000,
           'and has not the ids it has no room for');
    like($gd->log($mark), qr/\[error\] .*edge http:\S+: PUT snapshot answered 507: .*it gets only the store's kills/,
         'the log says the edge gets only the kills') or diag($gd->log($mark));
    clean_exit($gd->stop, $gd, 'SIGTERM at the end');
};

done_testing;
