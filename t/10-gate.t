# The gate's decision for each reason of the evaluation table, as a client
# sees it: the HTTP status of a gated location and the gate's variables.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Test qw(murmur3_32 bucket find_companies require_module);

require_module();

# companies on either side of customer_portal's 50% threshold
my ($in, $in_denied) = find_companies('customer_portal', 2, sub { $_[0] < 5000 });
my ($out, $out_allowed) = find_companies('customer_portal', 2,
                                         sub { $_[0] >= 5000 });
my $both = 'acme-both';
my $long64 = 'L' x 64;

my $snapshot = {
    revision     => 1,
    environments => {
        production => {
            customer_portal => {
                enabled => JSON::PP::true, rollout => 50,
                allow => [$out_allowed, $both, $long64, 'Acme.Corp_1'],
                deny  => [$in_denied, $both],
            },
            customer_portal_calls => {
                requires => 'customer_portal', rollout => 100,
            },
            old_reports => {
                enabled => JSON::PP::false, rollout => 100,
                allow => [$out_allowed],
            },
            everyone => { rollout => 100 },
        },
    },
};

my $headers = join "\n", map { "add_header X-$_->[0] \$$_->[1] always;" }
    ['Decision', 'portal_gate_decision'], ['Reason', 'portal_gate_reason'],
    ['Company', 'portal_gate_company'], ['Flag', 'portal_gate_flag'];

my $ng = PortalGate::Test->new(server => <<"CONF");
        location /portal/  { portal_gate customer_portal;
                             $headers
                             return 200 "portal v2\\n"; }
        location /calls/   { portal_gate customer_portal_calls;
                             $headers
                             return 200 "calls\\n"; }
        location /reports/ { portal_gate old_reports;
                             $headers
                             return 200 "reports\\n"; }
        location /everyone/ { portal_gate everyone;
                             $headers
                             return 200 "everyone\\n"; }
        location /unknown/ { portal_gate not_in_the_snapshot;
                             $headers
                             return 200 "unknown\\n"; }
        location /echo/    { portal_gate customer_portal;
                             return 200 "\$portal_gate_decision \$portal_gate_reason \$portal_gate_company \$portal_gate_flag\\n"; }
CONF
$ng->start;

my $put = $ng->put_snapshot($snapshot);
is($put->{status}, 200, 'the test snapshot is accepted') or diag($put->{content});

# GET a gated path; returns [status, decision, reason, company header]
sub gate {
    my ($path, @company) = @_;
    my $r = $ng->get($path, @company ? (company => $company[0]) : ());
    # add_header leaves out empty values: an absent X-Company is empty
    return [$r->{status},
            map { $_ // '' } @{ $r->{headers} }{qw(x-decision x-reason x-company)}];
}

subtest 'the harness murmur3 matches the known answers' => sub {
    is(sprintf('%08x', murmur3_32('a')), '3c2569b2', 'murmur3("a")');
    is(sprintf('%08x', murmur3_32('abc')), 'b3dd93fa', 'murmur3("abc")');
    is(sprintf('%08x', murmur3_32('customer_portal:42')), 'd4353805',
       'murmur3("customer_portal:42")');
    is(bucket('customer_portal', '42'), 7541, 'bucket of company 42');
};

subtest 'a company inside the rollout gets the portal (rollout, on)' => sub {
    my $r = $ng->get('/portal/', company => $in);
    is($r->{status}, 200, 'status 200');
    is($r->{content}, "portal v2\n", 'the portal answers');
    is($r->{headers}{'x-decision'}, 'on', '$portal_gate_decision is on');
    is($r->{headers}{'x-reason'}, 'rollout', '$portal_gate_reason is rollout');
    is($r->{headers}{'x-company'}, $in, '$portal_gate_company is the company');
    is($r->{headers}{'x-flag'}, 'customer_portal', '$portal_gate_flag is the flag');
};

subtest 'a company outside the rollout gets 404 (rollout, off)' => sub {
    is_deeply(gate('/portal/', $out), [404, 'off', 'rollout', $out]);
};

subtest 'an allowed company gets the portal whatever its bucket' => sub {
    is_deeply(gate('/portal/', $out_allowed), [200, 'on', 'allowed', $out_allowed]);
};

subtest 'a denied company gets 404 even inside the rollout' => sub {
    is_deeply(gate('/portal/', $in_denied), [404, 'off', 'denied', $in_denied]);
};

subtest 'a company in both allow and deny is denied' => sub {
    is_deeply(gate('/portal/', $both), [404, 'off', 'denied', $both]);
};

subtest 'a request without a company gets 404 (no_company)' => sub {
    is_deeply(gate('/portal/'), [404, 'off', 'no_company', '']);
};

subtest 'a flag at 100% lets in requests without a company' => sub {
    is_deeply(gate('/everyone/'), [200, 'on', 'rollout', '']);
};

subtest 'a killed flag is off even for an allowed company' => sub {
    is_deeply(gate('/reports/', $out_allowed), [404, 'off', 'killed', $out_allowed]);
};

subtest 'a flag is off when the flag it requires is off (requires)' => sub {
    is_deeply(gate('/calls/', $out), [404, 'off', 'requires', $out],
              'customer_portal is off for this company');
    is_deeply(gate('/calls/', $in), [200, 'on', 'rollout', $in],
              'customer_portal is on for this company');
    is_deeply(gate('/calls/'), [404, 'off', 'requires', ''],
              'no company: requires comes before no_company');
};

subtest 'a flag missing from the snapshot is off (unknown)' => sub {
    is_deeply(gate('/unknown/', $out_allowed), [404, 'off', 'unknown', $out_allowed]);
};

subtest 'the gate variables can be echoed in the response body' => sub {
    my $r = $ng->get('/echo/', company => $out_allowed);
    is($r->{status}, 200);
    is($r->{content}, "on allowed $out_allowed customer_portal\n");
};

subtest 'an empty, oversized or ill-formed company header means no company' => sub {
    for my $bad ('', 'L' x 65, 'a b', 'x/y', "\xc3\xa9", 'acme!', 'a:b') {
        (my $shown = $bad) =~ s/([^ -~])/sprintf '\\x%02x', ord $1/ge;
        is_deeply(gate('/portal/', $bad), [404, 'off', 'no_company', ''],
                  "company \"$shown\"");
    }
};

subtest 'a 64-character company id is a company' => sub {
    is_deeply(gate('/portal/', $long64), [200, 'on', 'allowed', $long64]);
};

subtest 'company ids are case-sensitive and may hold . _ -' => sub {
    is_deeply(gate('/portal/', 'Acme.Corp_1'), [200, 'on', 'allowed', 'Acme.Corp_1']);
    my $lower = 'acme.corp_1';
    my $r = gate('/portal/', $lower);
    is($r->[2], 'rollout', 'the lowercase id is not the allowed one');
};

subtest 'the rollout threshold is bucket < round(rollout * 100)' => sub {
    # company 42 has bucket 7541 for customer_portal
    my $rev = 10;
    for my $case ([75.42, 200, 'on'], [75.41, 404, 'off']) {
        my ($pct, $status, $decision) = @$case;
        my $put = $ng->put_snapshot({revision => $rev++, environments => {
            production => { customer_portal => { rollout => $pct } } }});
        is($put->{status}, 200, "rollout $pct accepted");
        is_deeply(gate('/portal/', '42'), [$status, $decision, 'rollout', '42'],
                  "company 42 (bucket 7541) at rollout $pct");
    }

    # 0.07 * 100 is 7.000000000000001 in doubles: buckets 0..6 are in
    my ($b6) = find_companies('customer_portal', 1, sub { $_[0] == 6 });
    my ($b7) = find_companies('customer_portal', 1, sub { $_[0] == 7 });
    my $put = $ng->put_snapshot({revision => $rev++, environments => {
        production => { customer_portal => { rollout => 0.07 } } }});
    is($put->{status}, 200, 'rollout 0.07 accepted');
    is(gate('/portal/', $b6)->[0], 200, 'bucket 6 is in at 0.07%');
    is(gate('/portal/', $b7)->[0], 404, 'bucket 7 is out at 0.07%');
};

subtest 'raising the rollout only ever adds companies' => sub {
    my @companies = map { "r$_" } 1 .. 40;
    my $rev = 20;
    my %was_on;
    for my $pct (10, 30, 60, 90) {
        my $put = $ng->put_snapshot({revision => $rev++, environments => {
            production => { customer_portal => { rollout => $pct } } }});
        is($put->{status}, 200, "rollout $pct accepted");
        my %on = map { $_ => 1 } grep { gate('/portal/', $_)->[0] == 200 }
            @companies;
        my @lost = grep { !$on{$_} } keys %was_on;
        is_deeply(\@lost, [], "nobody loses the portal at $pct%");
        my @expected = grep { bucket('customer_portal', $_) < $pct * 100 }
            @companies;
        is_deeply([sort keys %on], [sort @expected],
                  "exactly the companies with bucket < " . $pct * 100);
        %was_on = %on;
    }
};

subtest 'the kill switch turns the portal off on the very next request' => sub {
    my $put = $ng->put_snapshot({revision => 100, environments => {
        production => { customer_portal => { allow => ['12'] } } }});
    is($put->{status}, 200, 'flag on for company 12');
    is_deeply(gate('/portal/', '12'), [200, 'on', 'allowed', '12'], 'on before');

    $put = $ng->put_snapshot({revision => 101, environments => {
        production => { customer_portal => { enabled => JSON::PP::false,
                                             allow => ['12'] } } }});
    is($put->{status}, 200, 'kill switch accepted');
    is_deeply(gate('/portal/', '12'), [404, 'off', 'killed', '12'],
              'the next request is off');
};

$ng->no_bad_log_lines;

done_testing;
