# A value written into Redis by hand that is not valid but says
# "enabled": false (issue 7, a leftover): whoever wrote it meant the flag
# off, so the edges get the flag killed, with each of its fields that is
# valid on its own and without its requires, as `portal-gatectl kill`
# salvages such a value; never its last good, enabled, version. Said once,
# naming the flag, why and what was dropped. Real redis-server, two real
# nginx edges.

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
my $H = "${P}flags:production";

my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [$e->{tcp_url}, $e->{unix_url}]);

sub ctl { $rs->ctl(@_) }

sub store_revision { $rs->cli('GET', "${P}revision") + 0 }

# What a hand-written change does: the value, then the revision raised
# and published
sub hand_write {
    my ($flag, $value) = @_;
    $rs->cli('HSET', $H, $flag, $value);
    my $rev = $rs->cli('INCR', "${P}revision");
    $rs->cli('PUBLISH', "${P}changes", $rev);
    return $rev;
}

sub answer {
    my ($ng, $flag, $company) = @_;
    my $a = $ng->evaluate(flag => $flag, company => $company // '1001');
    return ($a->{decision} // '?') . '/' . ($a->{reason} // '?');
}

sub both_answer {
    my ($flag, $want, $name) = @_;
    my $ok = wait_until(sub { !grep { answer($_, $flag) ne $want } @edges });
    ok($ok, $name) or diag(join ', ', map {
        'edge ' . $_->port . ': ' . answer($_, $flag) } @edges);
}

sub both_at_store {
    my ($name) = @_;
    my $want = store_revision();
    ok(wait_until(sub { !grep { $_->status->{revision} != $want } @edges }),
       "$name: both edges at the store's revision $want");
}

# The flag as the edge holds it, without its metadata and the defaults
# that GET snapshot fills in
sub edge_flag {
    my ($ng, $flag) = @_;
    my $f = $ng->snapshot->{environments}{production}{$flag};
    return $f unless $f;
    delete @$f{qw(version updated_at updated_by)};
    delete $f->{rollout} if ($f->{rollout} // 0) == 0;
    for my $k (qw(allow deny)) {
        delete $f->{$k} if $f->{$k} && !@{ $f->{$k} };
    }
    return $f;
}

exits(ctl('init'), 0, 'init');
exits(ctl('create', 'customer_portal', '--description', 'portal v2'), 0,
      'create customer_portal');
exits(ctl('allow', 'customer_portal', '1001'), 0, 'allow 1001');
exits(ctl('deny', 'customer_portal', '99'), 0, 'deny 99');
exits(ctl('rollout', 'customer_portal', '50'), 0, 'rollout 50');
exits(ctl('create', 'portal_calls', '--requires', 'customer_portal'), 0,
      'create portal_calls, which requires customer_portal');
exits(ctl('allow', 'portal_calls', '1001'), 0, 'allow 1001 the calls');
exits(ctl('create', 'billing_v2'), 0, 'create billing_v2');
exits(ctl('allow', 'billing_v2', '1001'), 0, 'allow 1001 billing');
$gd->start;
both_at_store('started');
both_answer('customer_portal', 'on/allowed', 'customer_portal on for 1001');
both_answer('portal_calls', 'on/allowed', 'portal_calls on for 1001');

subtest 'a kill written by hand beside a typo reaches the edges killed' => sub {
    my $mark = $gd->mark;
    hand_write('customer_portal', '{"enabled":false,"rolout":1,'
               . '"rollout":50,"allow":["1001"],"deny":["99"],'
               . '"description":"portal v2"}');

    both_answer('customer_portal', 'off/killed', 'off, killed, for 1001');
    both_answer('portal_calls', 'off/requires',
                'a flag that requires it is off too');
    both_at_store('after the hand-written kill');
    is(edge_flag($_, 'customer_portal')->{enabled}, JSON::PP::false,
       'edge ' . $_->port . ': "enabled": false') for @edges;
    is_deeply(edge_flag($A, 'customer_portal'),
              {enabled => JSON::PP::false, rollout => 50, allow => ['1001'],
               deny => ['99'], description => 'portal v2'},
              'its valid fields kept, the typo dropped');

    my $line = $gd->wait_log(qr/customer_portal.*rolout/, 5, $mark);
    like($line // '', qr/\[error\].*flag "customer_portal" in production is invalid: .*rolout.*; it says "enabled": false, so it goes out killed, without "rolout"/,
         'the log names the flag, why, and what was dropped')
        or diag($gd->log($mark));
    ok(wait_ticks($B, 3), 'three more reconcile ticks');
    is($gd->count_log(qr/customer_portal.*rolout/, $mark), 1, 'said once');
};

subtest 'its requires is dropped, and a field that is not valid' => sub {
    my $mark = $gd->mark;
    hand_write('portal_calls', '{"enabled":false,"requires":"gone_flag",'
               . '"rollout":"x","allow":["1001"]}');
    both_at_store('after');
    is_deeply(edge_flag($_, 'portal_calls'),
              {enabled => JSON::PP::false, allow => ['1001']},
              'edge ' . $_->port . ': killed, without requires or rollout')
        for @edges;
    both_answer('portal_calls', 'off/killed', 'off, killed');
    like($gd->log($mark), qr/flag "portal_calls" in production is invalid: .*; it says "enabled": false, so it goes out killed, without "requires", "rollout"/,
         'the log says both were dropped');
    unlike($gd->log($mark), qr/gone_flag.*left out|unknown flag "gone_flag"/,
           'and nothing of the flag it required');
};

subtest 'a kill written by hand with a key twice, or text after it, reaches the edges killed' => sub {
    for my $v ('{"enabled":false,"allow":["1001"],"allow":["1001"]}',
               '{"enabled":false,"allow":["1001"]} trailing',
               '{"\u0065nabled":false,"enabled":false,"deny":["1"],'
               . '"deny":["2"]}') {
        hand_write('customer_portal', '{"enabled":true,"allow":["1001"]}');
        both_answer('customer_portal', 'on/allowed', 'on for 1001 before');
        my $mark = $gd->mark;
        hand_write('customer_portal', $v);
        both_answer('customer_portal', 'off/killed', "off, killed: $v")
            or diag($gd->log($mark));
        both_at_store("after $v");
        like($gd->log($mark), qr/flag "customer_portal" in production is .*; it says "enabled": false, so it goes out killed/,
             'the log says it goes out killed');
    }

    # as the first subtest left it, for those that follow
    hand_write('customer_portal', '{"enabled":false,"rolout":1,'
               . '"rollout":50,"allow":["1001"],"deny":["99"],'
               . '"description":"portal v2"}');
    both_answer('customer_portal', 'off/killed', 'killed again');
};

subtest 'broken values that do not say "enabled": false keep their last good version' => sub {
    my $before = edge_flag($A, 'billing_v2');
    for my $v ('{"enabled":true,"rolout":1}', '{"rolout":1}',
               '{"enabled":"false"}', '{broken', '["enabled",false]',
               '{"enabled":false,"enabled":true}',
               '{"enabled":false,"\\u0065nabled":true}',
               '{"enabled":false} {"enabled":true}') {
        hand_write('billing_v2', $v);
        both_at_store("billing_v2 = $v");
        is_deeply(edge_flag($_, 'billing_v2'), $before, 'edge ' . $_->port
                  . ': billing_v2 as it was') for @edges;
    }
    both_answer('billing_v2', 'on/allowed', 'still on for 1001');
};

subtest 'repaired: the store\'s value goes out again' => sub {
    my $mark = $gd->mark;
    hand_write('customer_portal', '{"enabled":true,"allow":["1001"]}');
    both_answer('customer_portal', 'on/allowed', 'on again for 1001');
    ok($gd->wait_log(qr/flag production\/customer_portal is valid again/, 5,
                     $mark), 'the log says it is valid again');
};

subtest 'after a restart, with no good version known, a killed broken value goes out killed' => sub {
    clean_exit($gd->stop, $gd, 'stopped');
    both_answer('billing_v2', 'on/allowed', 'the edges serve billing_v2');
    $rs->cli('HSET', $H, 'billing_v2',
             '{"enabled":false,"allow":["1001"],"typo":true}');
    $rs->cli('INCR', "${P}revision");

    my $mark = $gd->mark;
    $gd->start;
    both_answer('billing_v2', 'off/killed', 'the kill reaches the edges');
    both_at_store('after the restart');
    is_deeply(edge_flag($A, 'billing_v2'),
              {enabled => JSON::PP::false, allow => ['1001']},
              'killed, with its valid fields');
    clean_exit($gd->stop, $gd, 'SIGTERM');
};

$_->no_bad_log_lines('edge ' . $_->port . ': no [crit], [alert] or [emerg] '
                     . 'in its error log') for @edges;

done_testing;
