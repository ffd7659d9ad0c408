# Two workers share the zone: once a PUT has returned, every worker answers
# with the new snapshot, on every new connection.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use POSIX ();
use Time::HiRes ();
use Test::More;
use PortalGate::Test qw(require_module);

require_module();

my $ng = PortalGate::Test->new(workers => 2, reuseport => 1, server => <<'CONF');
        add_header X-Worker $pid always;
        location /portal/ { portal_gate customer_portal;
                            add_header X-Worker $pid always;
                            add_header X-Reason $portal_gate_reason always;
                            return 200 "portal v2\n"; }
CONF
$ng->start;

my @workers = $ng->workers;
is(scalar @workers, 2, 'two workers run');

# 50 requests, each on a new connection: {status => count}, {worker => count}
sub sweep {
    my ($company) = @_;
    my (%status, %worker, %reason);
    for (1 .. 50) {
        my $r = $ng->get('/portal/', company => $company);
        $status{$r->{status}}++;
        $reason{$r->{headers}{'x-reason'} // ''}++;
        $worker{$r->{headers}{'x-worker'} // '?'}++;
    }
    return (\%status, \%worker, \%reason);
}

my $rev = 1;

sub put_ok {
    my ($flag, $name) = @_;
    my $res = $ng->put_snapshot({revision => $rev++, environments => {
        production => { customer_portal => $flag } }});
    is($res->{status}, 200, $name) or diag($res->{content});
}

put_ok({ rollout => 0 }, 'revision 1: company 12 off');

subtest 'both workers answer, and both see the first snapshot' => sub {
    my ($status, $worker) = sweep('12');
    is_deeply($status, {404 => 50}, 'all 50 requests are off');
    is(scalar keys %$worker, 2, 'answers came from both workers')
        or diag(explain $worker);
    is_deeply([sort keys %$worker], [sort @workers], 'from the two workers');
};

for my $round (1 .. 3) {
    put_ok({ rollout => 0, allow => ['12'] }, "round $round: company 12 allowed");

    subtest "round $round: every worker sees the allow at once" => sub {
        my ($status, $worker, $reason) = sweep('12');
        is_deeply($status, {200 => 50}, 'all 50 requests are on');
        is_deeply($reason, {allowed => 50}, 'all allowed');
        is(scalar keys %$worker, 2, 'answers came from both workers');
    };

    put_ok({ enabled => JSON::PP::false, allow => ['12'] },
           "round $round: kill switch");

    subtest "round $round: every worker sees the kill switch at once" => sub {
        my ($status, $worker, $reason) = sweep('12');
        is_deeply($status, {404 => 50}, 'all 50 requests are off');
        is_deeply($reason, {killed => 50}, 'all killed');
        is(scalar keys %$worker, 2, 'answers came from both workers');
    };
}

subtest 'every worker reports the same status' => sub {
    my %revisions;
    for (1 .. 20) {
        my $res = $ng->api('GET', 'status');
        $revisions{$res->{json}{revision} // 'none'}{$res->{headers}{'x-worker'} // '?'}++;
    }
    is_deeply([keys %revisions], [$rev - 1], 'one revision: the last one');
    is(scalar keys %{ $revisions{$rev - 1} // {} }, 2, 'asked both workers');
};

subtest 'the state file holds the last revision' => sub {
    open my $fh, '<', $ng->state_file or return fail("state file: $!");
    my $state = eval { local $/; decode_json(scalar <$fh>) };
    is($state->{revision}, $rev - 1, 'the last revision');
};

subtest 'a reload keeps two workers in step with the zone' => sub {
    $ng->reload;
    my ($status, $worker, $reason) = sweep('12');
    is_deeply($reason, {killed => 50}, 'still killed everywhere');
    is(scalar keys %$worker, 2, 'answers came from both new workers');
    put_ok({ rollout => 100 }, 'rollout 100 after the reload');
    ($status) = sweep('12');
    is_deeply($status, {200 => 50}, 'all 50 requests are on');
};

subtest 'concurrent PUTs: the newest revision wins in the zone and the state file' => sub {
    my @revisions = map { 1000 + $_ } 1 .. 16;
    my $start = Time::HiRes::time() + 0.3;    # a common start, so they race
    my %child;
    for my $r (reverse @revisions) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            Time::HiRes::sleep(0.001) while Time::HiRes::time() < $start;
            my $res = $ng->put_snapshot({revision => $r, environments => {
                production => { customer_portal => { rollout => 0,
                                                     allow => ["c$r"] } } }});
            POSIX::_exit($res->{status} == 200 ? 0 : $res->{status} == 409 ? 1 : 2);
        }
        $child{$pid} = $r;
    }
    my %answers;
    for my $pid (keys %child) {
        waitpid($pid, 0);
        $answers{ (200, 409, 'other')[$? >> 8] // 'other' }++;
    }
    ok(!$answers{other}, 'every PUT answered 200 or 409') or diag(explain \%answers);
    ok($answers{200}, 'at least one PUT applied');

    my $newest = $revisions[-1];
    is($ng->status->{revision}, $newest, "the zone holds revision $newest");
    my ($status) = sweep("c$newest");
    is_deeply($status, {200 => 50}, "both workers gate by revision $newest");

    open my $fh, '<', $ng->state_file or return fail("state file: $!");
    my $state = eval { local $/; decode_json(scalar <$fh>) };
    is($state->{revision}, $newest, "the state file holds revision $newest");
    my @tmp = grep { !/state\.json$/ } glob($ng->dir . '/state/*');
    is_deeply(\@tmp, [], 'no temp file left in the state folder');
};

$ng->no_bad_log_lines;

done_testing;
