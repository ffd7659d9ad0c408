# portal-gated pushes the environments the store records (P"environments",
# `portal-gatectl env add`) besides those of its config: an environment
# added with portal-gatectl reaches the edges without a change of the
# config, so `--wait` never confirms a write the edges cannot serve. A
# store made before that key has the config's environments alone; a name
# written there by hand that no edge takes is left out and said once.
# Real redis-server, two real nginx edges.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Gated qw(clean_exit wait_until two_edges wait_ticks);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $rs = PortalGate::Redis->new;
my $e = two_edges();
my ($A, $B) = @$e{qw(tcp unix)};
my @edges = ($A, $B);
my $P = 'portal-gate:';

my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [$e->{tcp_url}, $e->{unix_url}],
                                environments => [qw(production staging)]);

sub ctl { $rs->ctl(@_) }

sub store_revision { $rs->cli('GET', "${P}revision") + 0 }

sub answer {
    my ($ng, $env) = @_;
    my $a = $ng->evaluate(env => $env, flag => 'customer_portal',
                          company => '1001');
    return ($a->{decision} // '?') . '/' . ($a->{reason} // '?');
}

sub envs_of { [sort keys %{ $_[0]->snapshot->{environments} }] }

sub both_at_store {
    my ($name) = @_;
    my $want = store_revision();
    ok(wait_until(sub { !grep { $_->status->{revision} != $want } @edges }),
       "$name: both edges at the store's revision $want");
}

exits(ctl('init', '-c', $gd->conf_path), 0, 'init with the config\'s '
      . 'environments');
$gd->start;
ok($gd->wait_log(qr/connected to redis/, 5), 'running');

subtest 'an environment added with env add reaches the edges' => sub {
    my $mark = $gd->mark;
    exits(ctl('env', 'add', 'eu'), 0, 'env add eu');
    my $r = ctl('-e', 'eu', 'create', 'customer_portal', '--wait=5',
                '-c', $gd->conf_path);
    exits($r, 0, 'create customer_portal in eu --wait');
    exits(ctl('-e', 'eu', 'rollout', 'customer_portal', '100', '--wait=5',
              '-c', $gd->conf_path), 0, 'rollout 100 in eu --wait');
    is_deeply(envs_of($_), [qw(eu production staging)],
              'edge ' . $_->port . ': has eu') for @edges;
    is(answer($_, 'eu'), 'on/rollout', 'edge ' . $_->port
       . ': customer_portal is on in eu, right after --wait') for @edges;
    like($gd->log($mark), qr/\[notice\].*pushing the environments production staging eu: those of the config, then those recorded in the store/,
         'the log says which environments are pushed');

    exits(ctl('-e', 'eu', 'kill', 'customer_portal'), 0, 'kill in eu');
    ok(wait_until(sub { !grep { answer($_, 'eu') ne 'off/killed' } @edges }),
       'the kill in eu reaches both edges');
    ok(wait_ticks($B, 3), 'three more reconcile ticks');
    is($gd->count_log(qr/pushing the environments/, $mark), 1, 'said once');
};

subtest 'a name no edge takes, written by hand, is left out and said once' => sub {
    my $mark = $gd->mark;
    $rs->cli('HSET', "${P}environments", 'Bad Env', '{}');
    $rs->cli('INCR', "${P}revision");
    $rs->cli('PUBLISH', "${P}changes", store_revision());
    both_at_store('after');
    is_deeply(envs_of($_), [qw(eu production staging)],
              'edge ' . $_->port . ': the same environments') for @edges;
    ok($gd->wait_log(qr/\[warn\].*environments of the store left out: "Bad Env" \(not a name an edge takes\); the others are pushed/,
                     5, $mark), 'said at warn, naming it')
        or diag($gd->log($mark));
    ok(wait_ticks($B, 3), 'three more reconcile ticks');
    exits(ctl('-e', 'eu', 'on', 'customer_portal'), 0, 'a change in eu');
    ok(wait_until(sub { !grep { answer($_, 'eu') ne 'on/rollout' } @edges }),
       'reaches both edges');
    is($gd->count_log(qr/left out: "Bad Env"/, $mark), 1, 'said once');
    $rs->cli('HDEL', "${P}environments", 'Bad Env');
};

subtest 'a store made before the environments key: the config\'s alone' => sub {
    $rs->cli('DEL', "${P}environments");
    $rs->cli('INCR', "${P}revision");
    $rs->cli('PUBLISH', "${P}changes", store_revision());
    both_at_store('after');
    is_deeply(envs_of($_), [qw(production staging)],
              'edge ' . $_->port . ': production and staging, as the config '
              . 'says') for @edges;
    clean_exit($gd->stop, $gd, 'SIGTERM');
};

$_->no_bad_log_lines('edge ' . $_->port . ': no [crit], [alert] or [emerg] '
                     . 'in its error log') for @edges;

done_testing;
