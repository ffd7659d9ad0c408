# portal-gated's reconcile tick under SIGHUPs in a row (issue 7, item 4):
# a change written into Redis without a change message reaches the edges
# by the tick, while a HUP comes every 0.5 s, shorter than the reconcile
# interval (2 s). The old daemon put the tick off at each HUP, so the
# change never came while the HUPs went on. Real redis-server, two real
# nginx edges.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);
use PortalGate::Gated qw(clean_exit wait_until two_edges);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $rs = PortalGate::Redis->new;
my $e = two_edges();
my @edges = @$e{qw(tcp unix)};
my $P = 'portal-gate:';

my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [$e->{tcp_url}, $e->{unix_url}],
                                reconcile => '2s');

sub ctl { $rs->ctl(@_) }

sub answer {
    my ($ng) = @_;
    my $a = $ng->evaluate(flag => 'customer_portal', company => '1001');
    return ($a->{decision} // '?') . '/' . ($a->{reason} // '?');
}

subtest 'a change without a message reaches the edges while HUPs keep coming' => sub {
    exits(ctl('init'), 0, 'init');
    exits(ctl('create', 'customer_portal'), 0, 'create');
    exits(ctl('allow', 'customer_portal', '1001'), 0, 'allow 1001');
    $gd->start;
    ok(wait_until(sub { !grep { answer($_) ne 'on/allowed' } @edges }),
       'both edges have the flag on for 1001');

    # a kill written straight into Redis: no PUBLISH, only the tick sees it
    my $mark = $gd->mark;
    $rs->cli('HSET', "${P}flags:production", 'customer_portal',
             '{"enabled":false,"allow":["1001"]}');
    my $rev = $rs->cli('INCR', "${P}revision");

    my ($hups, $reached) = (0, 0);
    for (1 .. 30 * $PortalGate::Gated::SLOW) {
        $gd->hup;
        $hups++;
        # taken before the next is sent: a HUP that comes while the last
        # is pending (its flag not yet read by the loop) is the same one
        wait_until(sub {
            $gd->count_log(qr/configuration reloaded/, $mark) >= $hups
        });
        sleep 0.5;
        if (!grep { answer($_) ne 'off/killed' } @edges) {
            $reached = 1;
            last;
        }
    }
    ok($reached, 'the kill reached both edges while a HUP came every 0.5 s')
        or diag($gd->log($mark));
    note("$hups HUPs were sent before it did");
    ok(wait_until(sub {
        $gd->count_log(qr/configuration reloaded/, $mark) >= $hups
    }), 'every HUP reloaded the configuration meanwhile');
    is($_->status->{revision}, $rev, 'edge ' . $_->port . ": revision $rev")
        for @edges;
    ok($gd->running, 'the daemon is still running');
    $_->no_bad_log_lines('edge ' . $_->port . ': no [crit], [alert] or '
                         . '[emerg] in its error log') for @edges;
};

clean_exit($gd->stop, $gd, 'SIGTERM at the end');

done_testing;
