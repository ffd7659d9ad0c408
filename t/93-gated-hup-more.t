# SIGHUP (review of portal-gated): a reload that adds an environment
# pushes it even though the store's revision did not move; a reload that
# changes nothing sends the edges nothing; and HUPs in a row while Redis
# does not answer never freeze the loop. Real redis-server, two real nginx
# edges.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use PortalGate::Gated qw(clean_exit wait_until two_edges wait_ticks);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $P = 'portal-gate:';

sub answer {
    my ($ng, $env) = @_;
    my $a = $ng->evaluate(env => $env // 'production',
                          flag => 'customer_portal', company => '1001');
    return ($a->{decision} // '?') . '/' . ($a->{reason} // '?');
}

# PUT snapshot requests an edge of two_edges() has logged
sub puts {
    my ($ng) = @_;
    open my $fh, '<', $ng->dir . '/access.log' or return 0;
    return scalar grep { m{"PUT /(portal-gate|pg-api)/snapshot} } <$fh>;
}

my $rs = PortalGate::Redis->new;
my $e = two_edges();
my ($A, $B) = @$e{qw(tcp unix)};
my @edges = ($A, $B);
my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [$e->{tcp_url}, $e->{unix_url}],
                                environments => ['production'],
                                reconcile => '300ms');
sub ctl { $rs->ctl(@_) }

exits(ctl('init'), 0, 'init');
$rs->cli('DEL', "${P}environments");     # a store from before that key
exits(ctl('create', 'customer_portal'), 0, 'create');
exits(ctl('-e', 'staging', 'create', 'customer_portal'), 0,
      'create in staging');
exits(ctl('-e', 'staging', 'allow', 'customer_portal', '1001'), 0,
      'allow 1001 in staging');
my $rev = $rs->cli('GET', "${P}revision");
$gd->start;
ok(wait_until(sub { !grep { $_->status->{revision} != $rev } @edges }),
   "both edges at revision $rev");
is(answer($_, 'staging'), 'off/unknown', 'edge ' . $_->port
   . ': staging is not pushed, the config does not name it') for @edges;

subtest 'a reload that adds an environment pushes it, the store unchanged' => sub {
    my $mark = $gd->mark;
    $gd->rewrite(environments => [qw(production staging)]);
    $gd->hup;
    ok($gd->wait_log(qr/configuration reloaded/, 5, $mark), 'reloaded');
    ok(wait_until(sub { !grep { answer($_, 'staging') ne 'on/allowed' }
                        @edges }),
       'staging reaches both edges') or diag($gd->log($mark));
    like($gd->log($mark), qr/\[warn\].*revision $rev .*raised the store's revision/,
         'the log says why the store\'s revision was raised')
        or diag($gd->log($mark));
    is(answer($_), 'off/rollout', 'edge ' . $_->port
       . ': production as it was') for @edges;
};

subtest 'a reload that changes nothing sends the edges nothing' => sub {
    sleep 0.5;
    my $before = puts($A) + puts($B);
    for (1 .. 5) {
        my $mark = $gd->mark;
        $gd->hup;
        ok($gd->wait_log(qr/configuration reloaded/, 5, $mark), "reload $_");
    }
    ok(wait_ticks($B, 3), 'three reconcile ticks: what a reload would '
       . 'have sent is sent by now');
    is(puts($A) + puts($B) - $before, 0, '5 reloads: no PUT snapshot');
};

subtest 'a restart with another environments line pushes it, the store unchanged' => sub {
    clean_exit($gd->stop, $gd, 'stopped');
    my $rev = $rs->cli('GET', "${P}revision");
    ok(!grep({ $_->status->{revision} != $rev } @edges),
       "both edges at the store's revision $rev");
    $gd->rewrite(environments => ['production']);
    my $mark = $gd->mark;
    $gd->start;
    ok(wait_until(sub { !grep { answer($_, 'staging') ne 'off/unknown' }
                        @edges }),
       'staging is gone from both edges') or diag($gd->log($mark));
    like($gd->log($mark), qr/\[warn\].*holds another snapshot for revision $rev .*raised the store's revision/,
         'the log says why the store\'s revision was raised');

    # the same config again: nothing to raise
    clean_exit($gd->stop, $gd, 'stopped again');
    $rev = $rs->cli('GET', "${P}revision");
    $mark = $gd->mark;
    $gd->start;
    ok($gd->wait_log(qr/connected to redis/, 5, $mark), 'started again');
    ok(wait_ticks($B, 3), 'three reconcile ticks');
    is($rs->cli('GET', "${P}revision"), $rev,
       'the same config: the store\'s revision stays');
    unlike($gd->log($mark), qr/raised/, 'and nothing is said raised');
};

subtest 'HUPs in a row while Redis does not answer: Redis is said to time out' => sub {
    my $mark = $gd->mark;
    $rs->pause;
    my $said;
    my $deadline = time + 10;
    while (!$said && time < $deadline) {
        $gd->hup;
        sleep 0.4;
        $said = $gd->log($mark) =~ /redis unreachable.*timed out/;
    }
    $rs->resume;
    ok($said, 'redis is said to time out while the HUPs go on')
        or diag($gd->log($mark));
    unlike($gd->log($mark), qr/Interrupted system call/,
           'no signal is taken for a Redis error');
    ok($gd->wait_log(qr/reachable again/, 10, $mark), 'Redis back');
    exits(ctl('kill', 'customer_portal'), 0, 'kill');
    ok(wait_until(sub { !grep { answer($_) ne 'off/killed' } @edges }),
       'the kill reaches both edges');
};

clean_exit($gd->stop, $gd, 'SIGTERM at the end');
$_->no_bad_log_lines('edge ' . $_->port . ': no [crit], [alert] or [emerg] '
                     . 'in the error log') for @edges;

done_testing;
