# portal-gated and an edge's kill overrides (the break-glass kill of
# `portal-gatectl kill --direct`, README "The API"): an edge that serves a
# flag off by override while the store has it on is said at warn, once,
# naming the edge, the flag, who and why, and that the store has it on;
# its beat lists the overrides; a release is said too. Real
# redis-server, two real nginx edges.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Sys::Hostname qw(hostname);
use Test::More;
use PortalGate::Gated qw(clean_exit wait_until two_edges wait_ticks);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $rs = PortalGate::Redis->new;
my $e = two_edges();
my ($A, $B) = @$e{qw(tcp unix)};
my ($AU, $BU) = @$e{qw(tcp_url unix_url)};
my $P = 'portal-gate:';

my $gd = PortalGate::Gated->new(redis => $rs->url, edges => [$AU, $BU],
                                environments => [qw(production staging)]);

sub ctl { $rs->ctl(@_) }

sub beat {
    my $v = $rs->cli('HGET', "${P}controllers", hostname() . ':' . $gd->pid);
    return $v eq '' ? undef : decode_json($v);
}

sub overrides_of { (beat() // {})->{edges}{$_[0]}{overrides} }

sub answer {
    my ($ng, $flag) = @_;
    my $a = $ng->evaluate(flag => $flag, company => '1001');
    return ($a->{decision} // '?') . '/' . ($a->{reason} // '?');
}

sub kill_override {
    my ($ng, $env, $flag, $body) = @_;
    return $ng->api('PUT', "overrides?env=$env&flag=$flag", $body);
}

exits(ctl('init'), 0, 'init');
for my $f (qw(customer_portal billing_v2)) {
    exits(ctl('create', $f), 0, "create $f");
    exits(ctl('allow', $f, '1001'), 0, "allow 1001 $f");
}
exits(ctl('kill', 'billing_v2'), 0, 'kill billing_v2 in the store');
$gd->start;
ok(wait_until(sub { answer($A, 'customer_portal') eq 'on/allowed'
                    && answer($B, 'customer_portal') eq 'on/allowed' }),
   'both edges serve customer_portal to 1001');
ok(wait_until(sub { my $o = overrides_of($AU); $o && !@$o }),
   'the beat says the edge holds no overrides');

subtest 'an override on an edge is said at warn, once, with who and why' => sub {
    my $mark = $gd->mark;
    is(kill_override($A, 'production', 'customer_portal',
                     '{"by": "alice", "reason": "INC-42"}')->{status}, 200,
       'PUT overrides on one edge, as kill --direct does');
    is(answer($A, 'customer_portal'), 'off/killed',
       'that edge serves it off');

    my $line = $gd->wait_log(qr/kill override/, 5, $mark);
    like($line // '', qr/\[warn\].*edge \Q$AU\E holds 1 kill override: production\/customer_portal \(on in the store; by alice: "INC-42"\); it serves that flag off whatever the store says, until `portal-gatectl release FLAG`/,
         'names the edge, the flag, that the store has it on, who and why')
        or diag($gd->log($mark));

    ok(wait_until(sub { my $o = overrides_of($AU); $o && @$o }),
       'the beat lists it');
    is_deeply(overrides_of($AU),
              [{env => 'production', flag => 'customer_portal'}],
              'by environment and flag');
    is_deeply(overrides_of($BU), [], 'the other edge holds none');

    ok(wait_ticks($B, 3), 'three more reconcile ticks');
    exits(ctl('rollout', 'customer_portal', '10'), 0, 'a change pushed');
    ok(wait_until(sub { $A->status->{revision} == $rs->cli('GET', "${P}revision") }),
       'pushed to the edge');
    is(answer($A, 'customer_portal'), 'off/killed',
       'the push does not undo the override');
    is($gd->count_log(qr/kill override/, $mark), 1, 'said once');
};

subtest 'a second override, then releases, are said as they come' => sub {
    my $mark = $gd->mark;
    is(kill_override($A, 'production', 'billing_v2', '{"by": "bob"}')
           ->{status}, 200, 'a second override, of a flag killed in the '
                          . 'store too');
    my $line = $gd->wait_log(qr/holds 2 kill overrides/, 5, $mark);
    like($line // '', qr/production\/billing_v2 \(off in the store too; by bob\).*those flags off/,
         'the new list, and that the store has that one off')
        or diag($gd->log($mark));
    ok(wait_until(sub { @{ overrides_of($AU) // [] } == 2 }),
       'the beat lists both');

    $mark = $gd->mark;
    is($A->api('DELETE', 'overrides?env=production&flag=billing_v2')
           ->{status}, 200, 'release one');
    ok($gd->wait_log(qr/\[warn\].*holds 1 kill override: production\/customer_portal/,
                     5, $mark), 'said: one left');
    is($A->api('DELETE', 'overrides?env=production&flag=customer_portal')
           ->{status}, 200, 'release the other');
    ok($gd->wait_log(qr/\[notice\].*edge \Q$AU\E holds no kill overrides any more: it serves what the store says/,
                     5, $mark), 'said at notice: none left');
    ok(wait_until(sub { my $o = overrides_of($AU); $o && !@$o }),
       'the beat lists none');
    ok(wait_until(sub { answer($A, 'customer_portal') eq 'on/rollout'
                        || answer($A, 'customer_portal') eq 'on/allowed' }),
       'the edge serves the store\'s flag again');
};

subtest 'an override held at start is said once the edge is asked' => sub {
    is(kill_override($B, 'staging', 'customer_portal', '{"by": "carol"}')
           ->{status}, 200, 'an override on the other edge');
    clean_exit($gd->stop, $gd, 'stopped');
    my $mark = $gd->mark;
    $gd->start;
    ok($gd->wait_log(qr/\[warn\].*edge \Q$BU\E holds 1 kill override: staging\/customer_portal \(not in the store; by carol\)/,
                     5, $mark), 'said after the start, and that the store '
                              . 'has no such flag')
        or diag($gd->log($mark));
    ok(wait_ticks($B, 3), 'three more reconcile ticks');
    is($gd->count_log(qr/kill override/, $mark), 1, 'said once');
    clean_exit($gd->stop, $gd, 'SIGTERM');
};

$_->no_bad_log_lines('edge ' . $_->port . ': no [crit], [alert] or [emerg] '
                     . 'in its error log') for $A, $B;

done_testing;
