# Kill overrides (the break-glass kill): PUT overrides turns a flag off on
# the edge whatever the snapshots say, across pushes, reloads, resizes and
# restarts, until DELETE overrides releases it.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use PortalGate::Test qw(require_module);

require_module();

my $portal = <<'CONF';
        location /portal/ { portal_gate customer_portal;
                            add_header X-Reason $portal_gate_reason always;
                            return 200 "portal v2\n"; }
        location /calls/  { portal_gate customer_portal_calls;
                            add_header X-Reason $portal_gate_reason always;
                            return 200 "calls\n"; }
CONF

sub snapshot_rev {
    my ($revision, %o) = @_;
    return {revision => $revision, environments => {
        production => {
            customer_portal => { rollout => 0, allow => ['12'] },
            customer_portal_calls => { requires => 'customer_portal',
                                       allow => ['12'] },
            %{ $o{extra} // {} },
        },
        staging => { customer_portal => { rollout => 100 } } }};
}

my $ng = PortalGate::Test->new(server => $portal, workers => 2);
$ng->start;

sub kill_override {
    my (%o) = @_;
    my $q = join '&', map { "$_=$o{$_}" } grep { $_ ne 'body' } sort keys %o;
    return $ng->api('PUT', "overrides?$q", $o{body});
}

sub release {
    my ($env, $flag) = @_;
    return $ng->api('DELETE', "overrides?env=$env&flag=$flag");
}

# every worker answers the same: ask more times than there are workers
sub portal_all {
    my ($path, $company) = @_;
    my %seen = map { my $r = $ng->get($path, company => $company);
                     ("$r->{status} " . ($r->{headers}{'x-reason'} // '')) => 1 } 1 .. 8;
    return join ',', sort keys %seen;
}

is($ng->put_snapshot(snapshot_rev(5))->{status}, 200, 'revision 5 applied');
is(portal_all('/portal/', '12'), '200 allowed', 'company 12 gets the portal');

subtest 'an override kills the flag for an allowed company, in every worker' => sub {
    my $res = kill_override(env => 'production', flag => 'customer_portal',
                            body => '{"by": "alice", "reason": "INC-42"}');
    is($res->{status}, 200, 'PUT overrides: 200');
    is_deeply($res->{json}, {env => 'production', flag => 'customer_portal',
                             created => JSON::PP::true,
                             persisted => JSON::PP::true},
              'created, and persisted in the state file');
    is(portal_all('/portal/', '12'), '404 killed', 'company 12: 404, killed');
    is(portal_all('/calls/', '12'), '404 requires',
       'a flag that requires it is off: requires');
    my $e = $ng->evaluate(env => 'production', flag => 'customer_portal',
                          company => '12');
    is($e->{reason}, 'killed', 'GET eval says killed');
    my $s = $ng->evaluate(env => 'staging', flag => 'customer_portal',
                          company => '12');
    is($s->{decision}, 'on', 'staging is untouched');
    ok(scalar $ng->log_lines(qr/\[warn\].*flag "customer_portal" killed in "production" by override \(by "alice": "INC-42"\)/),
       'logged at warn, with who and why') or diag($ng->error_log);
};

subtest 'GET snapshot is the pushed snapshot, not the overridden one' => sub {
    my $snap = $ng->snapshot;
    is($snap->{revision}, 5, 'revision 5');
    ok($snap->{environments}{production}{customer_portal}{enabled},
       'customer_portal is enabled in it, as it was pushed');
};

subtest 'GET overrides and GET status list it' => sub {
    my $list = $ng->api('GET', 'overrides');
    is($list->{status}, 200, 'GET overrides: 200');
    my $o = $list->{json}{overrides};
    is(scalar @$o, 1, 'one override');
    is($o->[0]{env}, 'production', 'env');
    is($o->[0]{flag}, 'customer_portal', 'flag');
    is($o->[0]{by}, 'alice', 'by');
    is($o->[0]{reason}, 'INC-42', 'reason');
    ok(abs($o->[0]{since} - time) < 60, 'since: now, in epoch seconds');
    is_deeply($ng->status->{overrides}, $o, 'GET status lists the same');
};

subtest 'killing again changes nothing and keeps who and why' => sub {
    my $res = kill_override(env => 'production', flag => 'customer_portal',
                            body => '{"by": "bob"}');
    is($res->{status}, 200, 'answered 200');
    ok(!$res->{json}{created}, 'created: false');
    is($ng->api('GET', 'overrides')->{json}{overrides}[0]{by}, 'alice',
       'the first kill is kept');
};

subtest 'snapshot pushes do not undo it' => sub {
    is($ng->put_snapshot(snapshot_rev(6))->{status}, 200, 'revision 6 applied');
    is(portal_all('/portal/', '12'), '404 killed', 'still killed');
    my $snap = snapshot_rev(7);
    $snap->{environments}{production}{customer_portal}{rollout} = 100;
    is($ng->put_snapshot($snap)->{status}, 200, 'revision 7: rollout 100');
    is(portal_all('/portal/', '42'), '404 killed', 'company 42 too: killed');
};

subtest 'a reload, a resize and a restart do not undo it' => sub {
    $ng->reload;
    is(portal_all('/portal/', '12'), '404 killed', 'after a reload');
    $ng->reload(zone => '8m');
    is(portal_all('/portal/', '12'), '404 killed', 'after a resize');
    $ng->restart;
    is(portal_all('/portal/', '12'), '404 killed', 'after a restart');
    ok(scalar $ng->log_lines(qr/\[notice\].*restored 1 kill override from/),
       'the restore says so') or diag($ng->error_log);
    is($ng->api('GET', 'overrides')->{json}{overrides}[0]{reason}, 'INC-42',
       'with its reason');
};

subtest 'release: the flag is as the snapshot says again' => sub {
    my $res = release('production', 'customer_portal');
    is($res->{status}, 200, 'DELETE overrides: 200');
    ok($res->{json}{released}, 'released');
    is(portal_all('/portal/', '42'), '200 rollout', 'company 42 is on again (rollout 100)');
    is(portal_all('/calls/', '12'), '200 allowed', 'and the calls flag');
    is_deeply($ng->status->{overrides}, [], 'no override left');
    $ng->restart;
    is(portal_all('/portal/', '42'), '200 rollout', 'a restart keeps it released');

    $res = release('production', 'customer_portal');
    is($res->{status}, 404, 'releasing again: 404');
    like($res->{json}{error} // '', qr/no override for flag "customer_portal" in "production"/,
         'saying there is none');
};

subtest 'an override of a flag the edge does not know yet holds when it comes' => sub {
    is(kill_override(env => 'production', flag => 'customer_portal_crm')->{status},
       200, 'killed before it exists, with no body');
    my $snap = snapshot_rev(8, extra => { customer_portal_crm => { rollout => 100 } });
    is($ng->put_snapshot($snap)->{status}, 200, 'revision 8 adds the flag');
    my $e = $ng->evaluate(env => 'production', flag => 'customer_portal_crm',
                          company => '12');
    is("$e->{decision} $e->{reason}", 'off killed', 'off, killed');
    is(release('production', 'customer_portal_crm')->{status}, 200, 'released');
};

subtest 'bad requests are refused with a JSON error' => sub {
    my @bad = (
        ['overrides?flag=customer_portal', undef, qr/needs "env" and "flag"/],
        ['overrides?env=production', undef, qr/needs "env" and "flag"/],
        ['overrides?env=Production&flag=customer_portal', undef,
         qr/invalid environment name "Production"/],
        ['overrides?env=production&flag=customer-portal', undef,
         qr/invalid flag name "customer-portal"/],
        ['overrides?env=production&flag=f', '{"by": "alice"', qr/JSON object/],
        ['overrides?env=production&flag=f', '[1]', qr/JSON object/],
        ['overrides?env=production&flag=f', '{"who": "alice"}', qr/takes "by" and "reason"/],
        ['overrides?env=production&flag=f', '{"by": 7}', qr/takes "by" and "reason"/],
        ['overrides?env=production&flag=f', '{"reason": "a\nb"}', qr/control characters/],
        ['overrides?env=production&flag=f', encode_json({by => 'x' x 65}),
         qr/by must be .* at most 64 bytes/],
        ['overrides?env=production&flag=f', encode_json({reason => 'x' x 257}),
         qr/reason must be .* at most 256 bytes/],
    );
    for my $b (@bad) {
        my ($path, $body, $re) = @$b;
        my $res = $ng->api('PUT', $path, $body);
        is($res->{status}, 400, "PUT $path: 400");
        like($res->{json}{error} // '', $re, '  and says why');
    }
    is($ng->api('POST', 'overrides?env=production&flag=f', '{}')->{status}, 405,
       'POST: 405');
    is_deeply($ng->status->{overrides}, [], 'no override was made');
};

subtest 'at most 32 overrides; the 33rd is a 507 that says so' => sub {
    for my $i (1 .. 32) {
        is(kill_override(env => 'production', flag => "f$i")->{status}, 200,
           "override $i") or last;
    }
    my $res = kill_override(env => 'production', flag => 'f33');
    is($res->{status}, 507, 'the 33rd: 507');
    like($res->{json}{error} // '', qr/holds 32 overrides, the most it can/,
         'saying why');
    is(release('production', "f$_")->{status}, 200, "released f$_") for 1 .. 32;
};

$ng->no_bad_log_lines;
$ng->stop;

subtest 'a kill the state file cannot keep says so, and a retry heals it' => sub {
    plan skip_all => 'needs root (workers then run as nobody)' if $> != 0;
    my $inst = PortalGate::Test->new(server => $portal);
    my $dir = $inst->dir . '/state';
    $inst->start;
    is($inst->put_snapshot(snapshot_rev(5))->{status}, 200, 'revision 5');
    chown 0, 0, $dir or die $!;
    chmod 0755, $dir or die $!;

    my $q = 'overrides?env=production&flag=customer_portal';
    my $res = $inst->api('PUT', $q, '{"reason": "INC-7"}');
    is($res->{status}, 200, 'the kill applies');
    ok($res->{json}{created}, 'created');
    ok(!$res->{json}{persisted}, 'but persisted: false');
    is($inst->get('/portal/', company => '12')->{status}, 404, 'company 12 is off');

    chown((getpwnam('nobody'))[2], (getgrnam('nogroup'))[2], $dir) or die $!;
    $res = $inst->api('PUT', $q, '{"reason": "INC-7 again"}');
    ok(!$res->{json}{created}, 'the retry: created false');
    ok($res->{json}{persisted}, 'and persisted: true');
    ok($inst->status->{state_file}{ok}, 'status: state_file.ok');

    $inst->restart;
    my $o = $inst->status->{overrides};
    is(scalar @$o, 1, 'the kill survives a restart');
    is($o->[0]{reason}, 'INC-7', 'with the first reason');

    $res = $inst->api('DELETE', $q);
    ok($res->{json}{persisted}, 'a release says persisted too');
    $inst->stop;
};

subtest 'without state= a kill says it is not persisted' => sub {
    my $inst = PortalGate::Test->new(server => $portal, state => 0);
    $inst->start;
    my $res = $inst->api('PUT', 'overrides?env=production&flag=customer_portal');
    is($res->{status}, 200, 'the kill applies');
    ok(!$res->{json}{persisted}, 'persisted: false');
    $inst->stop;
};

subtest 'a state file with a refused snapshot still restores its overrides' => sub {
    my $inst = PortalGate::Test->new(server => $portal);
    open my $fh, '>', $inst->state_file or die $!;
    print {$fh} '{"revision":9,"environments":{"production":{"f":{"rolout":1}}},'
              . '"overrides":[{"env":"production","flag":"customer_portal",'
              . '"since":1,"by":"alice","reason":"INC-9"}]}';
    close $fh;
    $inst->start;
    ok(scalar $inst->log_lines(qr/\[warn\].*is corrupt/), 'the snapshot is corrupt');
    my $o = $inst->status->{overrides};
    is(scalar @$o, 1, 'the kill override is restored all the same');
    is($inst->put_snapshot(snapshot_rev(10))->{status}, 200, 'a snapshot arrives');
    is($inst->get('/portal/', company => '12')->{status}, 404,
       'and company 12 stays off');
    $inst->stop;
};

done_testing;
