#!/bin/sh
# bench/failover.sh: following a Redis failover (issue 13's target): from
# the master's SIGKILL to a change visible on an edge, split into the
# sentinels' part (SIGKILL to their +switch-master) and ours (+switch-master
# to the change on the edge: portal-gated reconnecting to the promoted
# master, and portal-gatectl's write getting through).
#
#   sh bench/failover.sh              (after make module ctl gated)
#   ROUNDS=5 sh bench/failover.sh
#
# Setup (the test harness, t/lib): a master, its replica and three
# sentinels (down-after-milliseconds 1000, failover-timeout 3000: the
# harness's), the optimised build/portal-gated with one nginx edge, and
# portal-gatectl, all through the redis-sentinel:// URL. Each round: a kill
# acknowledged (portal-gatectl exit 0, the edge serves it), SIGKILL of the
# master, then in a loop `portal-gatectl on` until one succeeds and
# until the edge serves the flag on again. A redis-cli SUBSCRIBEd to
# +switch-master on a sentinel stamps the failover. The killed server comes
# back as a replica before the next round, which waits out the sentinels'
# 2 x failover-timeout between two failovers of one master.
#
# Per round: SIGKILL -> +switch-master (s), +switch-master -> the edge
# (ms, ours), and the kill's survival; then p50 and max of ours.
exec perl -x "$0" "$@"

#!perl
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

BEGIN {
    $ENV{PORTAL_GATED} //= "$FindBin::Bin/../build/portal-gated";
    $ENV{PORTAL_GATECTL} //= "$FindBin::Bin/../build/portal-gatectl";
}

use Time::HiRes qw(time sleep);
use PortalGate::Gated qw(wait_until two_edges);
use PortalGate::Sentinel;

my $ROUNDS = $ENV{ROUNDS} // 5;

sub loadavg {
    open my $f, '<', '/proc/loadavg' or return '?';
    my $l = <$f>;
    return join ' ', (split ' ', $l)[0 .. 2];
}

my $hs = PortalGate::Sentinel->new;
my @sp = $hs->sentinel_ports;
sub ctl { my $r = $hs->ctl(@_); die "ctl @_: $r->{err}" if $r->{exit}; $r }

ctl('init');
ctl('create', 'customer_portal');
ctl('on', 'customer_portal');
ctl('rollout', 'customer_portal', '100');

my $e = two_edges();
my $edge = $e->{tcp};
my $gd = PortalGate::Gated->new(redis => $hs->url, edges => [$e->{tcp_url}],
                                environments => [qw(production staging)],
                                log_level => 'info');
$gd->start;

sub decision {
    return $edge->evaluate(flag => 'customer_portal', company => '1001')
               ->{decision} // '?';
}

wait_until(sub { decision() eq 'on' }, 20) or die "not on:\n" . $gd->log;

# +switch-master stamped as it comes, from each sentinel (the first one
# to say it is the failover), in one file: "TIME LINE"
my $stamps = $gd->dir . '/switch-master.log';
my @subs;
for my $port (@sp) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open my $out, '>>', $stamps or die "$stamps: $!";
        $out->autoflush(1);
        my $cli = open my $in, '-|', 'redis-cli', '-p', $port, 'SUBSCRIBE',
                        '+switch-master' or die "redis-cli: $!";
        $SIG{TERM} = sub { kill 'TERM', $cli; exit 0 };
        while (my $l = <$in>) {
            printf $out "%.6f %s", time, $l if $l =~ /mymaster/;
        }
        exit 0;
    }
    push @subs, $pid;
}

# the first +switch-master after $after (s since the epoch)
sub switched_at {
    my ($after) = @_;
    my $first;
    open my $f, '<', $stamps or return undef;
    while (<$f>) {
        my ($t) = /^(\S+)/;
        $first = $t if $t > $after && (!defined $first || $t < $first);
    }
    return $first;
}

printf "failover: SIGKILL of the master to a change on the edge, %d rounds "
       . "(%s, loadavg %s)\n\n", $ROUNDS, $ENV{PORTAL_GATED}, loadavg();
printf "%5s %12s %14s %10s %10s\n", 'round', 'sentinels s', 'ours ms',
       'writes', 'kill kept';

my (@ours, $last);
for my $round (1 .. $ROUNDS) {
    # two failovers of one master: 2 x failover-timeout (3 s) apart
    sleep 0.1 while defined $last && time < $last + 6.5;

    ctl('kill', 'customer_portal');
    wait_until(sub { decision() eq 'off' }, 20) or die "no kill on the edge";

    my $old = $hs->kill_master;
    my $t0 = time;
    $last = $t0;

    my ($writes, $written) = (0, 0);
    my $kept = 'yes';
    until ($written && decision() eq 'on') {
        if (!$written) {
            $writes++;
            my $r = $hs->ctl('on', 'customer_portal');
            $written = $r->{exit} == 0;
        }
        # the kill stays served while Redis has no master
        $kept = 'NO' if !$written && decision() ne 'off';
        die "no change within 60 s ($writes writes, written $written, edge "
            . decision() . "):\n" . $gd->log if time > $t0 + 60;
    }
    my $t2 = time;

    my $t1;
    # all three have said it by the time the edge has the change, or soon
    sleep 0.2;
    wait_until(sub { defined($t1 = switched_at($t0)) }, 10);
    my $ours = defined $t1 ? ($t2 - $t1) * 1000 : undef;
    push @ours, $ours if defined $ours;
    printf "%5d %12s %14s %10d %10s\n", $round,
           defined $t1 ? sprintf('%.2f', $t1 - $t0) : '?',
           defined $ours ? sprintf('%.0f', $ours) : '?', $writes, $kept;

    $hs->revive($old);
}

@ours = sort { $a <=> $b } @ours;
printf "\nours (+switch-master to the edge): p50 %.0f ms, max %.0f ms over "
       . "%d rounds; loadavg %s\n", $ours[int($#ours / 2)], $ours[-1],
       scalar @ours, loadavg();
printf "the daemon followed +switch-master %d times (its log)\n",
       $gd->count_log(qr/followed \+switch-master/);

kill 'TERM', @subs;
waitpid $_, 0 for @subs;
$gd->stop;
$hs->stop;
