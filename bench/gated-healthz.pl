#!/usr/bin/perl
# bench/gated-healthz.pl: how long portal-gated's /healthz takes to answer
# while Redis is down, which is what a probe's timeout must allow (README,
# "Metrics and health"). The endpoint answers from the daemon's one loop,
# and the loop blocks on Redis: a command, a connect and each reconnect
# attempt wait up to PGD_REDIS_TIMEOUT_MS (1 s).
#
#   perl bench/gated-healthz.pl          (after make module ctl gated)
#
# Setup (the test harness, t/lib): one redis-server, one nginx edge, the
# optimised build/portal-gated with `listen` and reconcile_interval 2s (the
# example's). A client asks GET /healthz back to back (a new connection
# each, 10 s limit) for SECONDS s in each state of Redis:
#
#   up        Redis answers
#   paused    SIGSTOP: the kernel accepts connections, Redis answers
#             nothing, so every command and reconnect waits for its timeout
#             (a hung Redis, or one behind a dropped route)
#   stopped   killed: connections refused at once
#
# and says, per state: answers, their statuses, p50, p99 and the slowest.
#
#   SECONDS=30

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

BEGIN {
    $ENV{PORTAL_GATED} //= "$FindBin::Bin/../build/portal-gated";
    $ENV{PORTAL_GATECTL} //= "$FindBin::Bin/../build/portal-gatectl";
}

use HTTP::Tiny;
use Time::HiRes qw(time sleep);
use PortalGate::Gated qw(wait_until two_edges);
use PortalGate::Redis;
use PortalGate::Scrape qw(free_port http_get);

my $SECONDS = $ENV{SECONDS} // 30;

my $rs = PortalGate::Redis->new;
sub ctl { my $r = $rs->ctl(@_); die "ctl @_: $r->{err}" if $r->{exit}; $r }

ctl('init');
ctl('create', 'customer_portal');

my $e = two_edges();
my $port = free_port();
my $base = "http://127.0.0.1:$port";
my $gd = PortalGate::Gated->new(redis => $rs->url, edges => [$e->{tcp_url}],
                                reconcile => '2s', log_level => 'notice',
                                extra => "listen 127.0.0.1:$port;\n");
$gd->start;
wait_until(sub { (http_get("$base/healthz")->{content} // '') =~ /"ok"/ }, 20)
    or die "not in step:\n" . $gd->log;

sub pct {
    my ($p, @v) = @_;
    @v = sort { $a <=> $b } @v;
    return $v[int($p / 100 * $#v + 0.5)];
}

my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 0);

sub probe {
    my ($state) = @_;
    my (@ms, %codes);
    my $end = time + $SECONDS;
    while (time < $end) {
        my $t0 = time;
        my $r = $http->get("$base/healthz");
        push @ms, (time - $t0) * 1000;
        $codes{$r->{status}}++;
    }
    printf "%-8s %7d  %-16s %8.2f %8.2f %8.1f\n", $state, scalar @ms,
           join(' ', map { "$_:$codes{$_}" } sort keys %codes),
           pct(50, @ms), pct(99, @ms), pct(100, @ms);
}

printf "portal-gated /healthz while Redis is down (%s), %d s each, "
       . "reconcile 2s\n\n", $ENV{PORTAL_GATED}, $SECONDS;
printf "%-8s %7s  %-16s %8s %8s %8s\n", 'redis', 'answers', 'statuses',
       'p50 ms', 'p99 ms', 'max ms';

probe('up');

$rs->pause;
probe('paused');
$rs->resume;
wait_until(sub { http_get("$base/healthz")->{status} == 200 }, 20)
    or die "no 200 after Redis came back:\n" . $gd->log;

$rs->stop;
probe('stopped');
$rs->start;

$gd->stop;
