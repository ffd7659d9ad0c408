#!/usr/bin/perl
# bench/gated-http.pl: what portal-gated's own HTTP endpoint (`listen`,
# issue 11) costs, and whether it slows the kill path.
#
#   perl bench/gated-http.pl          (after make module ctl gated)
#
# Setup (the test harness, t/lib): one redis-server, two nginx edges
# (PortalGate::Gated::two_edges), the optimised build/portal-gated with
# `listen`, a store of FLAGS flags in each of production and staging, each
# with an allow list of 100 companies.
#
# 1. Answers: N sequential GETs (a new connection each) of /healthz,
#    /metrics and /status.json: client-side p50/p99, and the daemon's CPU
#    time per answer (utime+stime from /proc before and after). The
#    answers are rendered on demand on the loop's thread, so this is also
#    what they take from the loop.
# 2. The kill path: `portal-gatectl kill customer_portal --wait` (its own
#    "after N ms", every edge confirmed) KILLS times with nobody asking,
#    then again while CLIENTS processes fetch /status.json in a tight loop
#    (far more than a page open, which asks once a second).
#
# 3. The same kills with a page open (one client asking /status.json once
#    a second, as the page does): the audit is read then.
#
#   FLAGS=40 N=500 KILLS=30 CLIENTS=4 BIG=0
#
# FLAGS past 100 are written straight into Redis (HSET, one revision),
# each flag a copy of customer_portal. BIG=1 adds big_list, a flag of
# 100,000 allowed companies, edited 20 times: the audit's newest 20
# entries then hold 2 MB of flag JSON each.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

BEGIN {
    $ENV{PORTAL_GATED} //= "$FindBin::Bin/../build/portal-gated";
    $ENV{PORTAL_GATECTL} //= "$FindBin::Bin/../build/portal-gatectl";
}

use JSON::PP ();
use POSIX qw(_exit);
use Time::HiRes qw(time sleep);
use PortalGate::Gated qw(wait_until two_edges);
use PortalGate::Redis;
use PortalGate::Scrape qw(free_port http_get);

my $FLAGS = $ENV{FLAGS} // 40;
my $N = $ENV{N} // 500;
my $KILLS = $ENV{KILLS} // 30;
my $CLIENTS = $ENV{CLIENTS} // 4;
my $BIG = $ENV{BIG} // 0;

my $rs = PortalGate::Redis->new;
sub ctl { my $r = $rs->ctl(@_); die "ctl @_: $r->{err}" if $r->{exit}; $r }

ctl('init');
for my $env (qw(production staging)) {
    for my $i (1 .. ($FLAGS > 100 ? 1 : $FLAGS)) {
        my $f = $i == 1 ? 'customer_portal' : sprintf('feature_%03d', $i);
        ctl('-e', $env, 'create', $f);
        ctl('-e', $env, 'allow', $f, map { 1000 + $_ } 1 .. 100);
    }
}

# RESP for redis-cli --pipe
sub resp { join '', '*' . @_ . "\r\n", map { '$' . length($_) . "\r\n$_\r\n" } @_ }

if ($FLAGS > 100) {
    # without the allow list: 8192 lists of 100 would not fit an edge's zone
    my $flag = JSON::PP::decode_json($rs->cli('HGET',
        'portal-gate:flags:production', 'customer_portal'));
    $flag->{allow} = [];
    my $json = JSON::PP::encode_json($flag);
    my $cmds = '';
    for my $env (qw(production staging)) {
        $cmds .= resp('HSET', "portal-gate:flags:$env",
                      sprintf('feature_%04d', $_), $json) for 2 .. $FLAGS;
    }
    $cmds .= resp('INCR', 'portal-gate:revision');
    open my $p, '|-', 'redis-cli', '-p', $rs->port, '--pipe' or die $!;
    print {$p} $cmds;
    close $p or die "redis-cli --pipe failed";
}

if ($BIG) {
    ctl('create', 'big_list');
    for my $k (0 .. 9) {
        ctl('allow', 'big_list',
            map { sprintf 'c%06d', $k * 10000 + $_ } 0 .. 9999);
    }
    ctl('deny', 'big_list', "d$_") for 1 .. 20;
}

my $e = two_edges();
my $port = free_port();
my $base = "http://127.0.0.1:$port";
my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [@$e{qw(tcp_url unix_url)}],
                                environments => [qw(production staging)],
                                reconcile => '2s', log_level => 'notice',
                                extra => "listen 127.0.0.1:$port;\n");
$gd->start;
wait_until(sub { (http_get("$base/healthz")->{content} // '') =~ /"ok"/ }, 20)
    or die "not in step:\n" . $gd->log;

sub cpu {
    open my $fh, '<', '/proc/' . $gd->pid . '/stat' or die $!;
    my @f = split / /, (<$fh> =~ s/^.*\) //r);
    return ($f[11] + $f[12]) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
}

sub pct {
    my ($p, @v) = @_;
    @v = sort { $a <=> $b } @v;
    return $v[int($p / 100 * $#v + 0.5)];
}

printf "portal-gated listen (%s): %d flags x 2 environments (100 allowed "
       . "each)%s, 2 edges\n\n", $ENV{PORTAL_GATED}, $FLAGS,
       $BIG ? ', big_list of 100k companies edited 20 times' : '';
printf "%-13s %8s %9s %9s %14s\n", 'GET', 'bytes', 'p50 ms', 'p99 ms',
       'daemon CPU/req';
for my $path (qw(/healthz /metrics /status.json)) {
    my ($bytes, @ms) = (0);
    my $c0 = cpu();
    for (1 .. $N) {
        my $t0 = time;
        my $r = http_get("$base$path");
        push @ms, (time - $t0) * 1000;
        $bytes = length $r->{content};
    }
    my $c1 = cpu();
    printf "%-13s %8d %9.2f %9.2f %11.1f us\n", $path, $bytes,
           pct(50, @ms), pct(99, @ms), ($c1 - $c0) / $N * 1e6;
}

sub kills {
    my @ms;
    for (1 .. $KILLS) {
        ctl('-c', $gd->conf_path, 'on', 'customer_portal', '--wait');
        my $r = ctl('-c', $gd->conf_path, 'kill', 'customer_portal', '--wait');
        push @ms, $1 if $r->{out} =~ /after ([\d.]+) ms/;
    }
    return @ms;
}

print "\nportal-gatectl kill --wait, every edge confirmed:\n";
my @idle = kills();
printf "  %-44s p50 %6.1f ms  p99 %6.1f ms  (%d kills)\n",
       'nobody asking the endpoint', pct(50, @idle), pct(99, @idle),
       scalar @idle;

# a page open: one poll a second
my $page = fork // die "fork: $!";
if ($page == 0) {
    while (1) { http_get("$base/status.json"); sleep 1 }
}
sleep 1.5;
my @open;
for my $i (1 .. $KILLS) {
    ctl('-c', $gd->conf_path, 'on', 'customer_portal', '--wait');
    # a change just before the kill: the turn after its push is where the
    # page's audit read would land
    ctl('-c', $gd->conf_path, 'rollout',
        $FLAGS > 100 ? 'feature_0002' : 'feature_002', $i % 100)
        if $FLAGS > 1;
    my $r = ctl('-c', $gd->conf_path, 'kill', 'customer_portal', '--wait');
    push @open, $1 if $r->{out} =~ /after ([\d.]+) ms/;
}
kill 'KILL', $page;
waitpid $page, 0;
printf "  %-44s p50 %6.1f ms  p99 %6.1f ms  (%d kills)\n",
       'a page open, a change just before the kill', pct(50, @open),
       pct(99, @open), scalar @open;

my @kids;
for (1 .. $CLIENTS) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        http_get("$base/status.json") while 1;
        _exit(0);
    }
    push @kids, $pid;
}
my $c0 = cpu();
my $t0 = time;
my @busy = kills();
my $cpu = (cpu() - $c0) / (time - $t0);
kill 'KILL', @kids;
waitpid $_, 0 for @kids;
printf "  %-44s p50 %6.1f ms  p99 %6.1f ms  (%d kills)\n",
       "$CLIENTS clients fetching /status.json nonstop", pct(50, @busy),
       pct(99, @busy), scalar @busy;
printf "  (the daemon used %.0f%% of a core meanwhile)\n", $cpu * 100;

$gd->stop;
