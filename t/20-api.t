# The JSON API: status, snapshot, eval, and every error answer of PUT
# snapshot, with the previous snapshot still in force after each error.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use PortalGate::Test qw(require_module);

require_module();

my $ng = PortalGate::Test->new(server => <<'CONF');
        location /portal/ { portal_gate customer_portal;
                            add_header X-Reason $portal_gate_reason always;
                            return 200 "portal v2\n"; }
        location /pg                 { portal_gate_api; }
        location = /edge/status      { portal_gate_api; }
        location ~ ^/rx/(status|eval)$ { portal_gate_api; }
CONF
$ng->start;

my $meta = {
    version     => 7,
    description => 'New customer portal (pilot)',
    updated_at  => '2024-05-01T10:00:00Z',
    updated_by  => 'alice@example.com',
};

my $baseline = {
    revision     => 5,
    environments => {
        production => {
            customer_portal => {
                enabled => JSON::PP::true, rollout => 12.5,
                allow => ['12', '57'], deny => ['99'], %$meta,
            },
            customer_portal_calls => {
                enabled => JSON::PP::true, rollout => 0, allow => ['12'],
                deny => [], requires => 'customer_portal',
            },
            billing_v2 => {
                enabled => JSON::PP::false, rollout => 100, allow => [],
                deny => [], salt => 'shared_salt',
            },
        },
        staging => {
            customer_portal => {
                enabled => JSON::PP::true, rollout => 100, allow => [],
                deny => [],
            },
        },
    },
};

# numbers as numbers and lists in order, to compare snapshots
sub normal {
    my ($s) = @_;
    my $copy = decode_json(encode_json($s));
    for my $env (values %{ $copy->{environments} }) {
        for my $f (values %$env) {
            $f->{rollout} += 0 if defined $f->{rollout};
            $f->{$_} = [sort @{ $f->{$_} }] for grep { $f->{$_} } qw(allow deny);
        }
    }
    return $copy;
}

sub is_json_answer {
    my ($res, $status, $name) = @_;
    is($res->{status}, $status, "$name: status $status");
    like($res->{headers}{'content-type'} // '', qr{^application/json},
         "$name: Content-Type application/json");
    ok(ref $res->{json} eq 'HASH', "$name: the body is a JSON object")
        or diag($res->{content});
}

# After an error: the baseline snapshot serves as before.
sub baseline_in_force {
    my ($name) = @_;
    subtest "$name: the previous snapshot stays in force" => sub {
        is($ng->status->{revision}, 5, 'status: revision 5');
        is_deeply(normal($ng->snapshot), normal($baseline),
                  'GET snapshot: unchanged');
        my $r = $ng->get('/portal/', company => '12');
        is($r->{status}, 200, 'company 12 still gets the portal');
        is($r->{headers}{'x-reason'}, 'allowed', 'company 12 still allowed');
        is($ng->get('/portal/', company => '99')->{status}, 404,
           'company 99 still denied');
    };
}

subtest 'a fresh edge reports revision 0 and an empty snapshot' => sub {
    my $res = $ng->api('GET', 'status');
    is_json_answer($res, 200, 'GET status');
    my $s = $res->{json};
    is($s->{revision}, 0, 'revision 0');
    is($s->{applied_at}, undef, 'applied_at null');
    ok(!$s->{restored_from_state}, 'not restored from a state file');
    is_deeply($s->{flags}, {}, 'no flags');
    is($s->{zone}{name}, 'portal_gate', 'zone name');
    is($s->{zone}{size}, 4 * 1024 * 1024, 'zone size 4m');
    ok($s->{zone}{used} > 0 && $s->{zone}{used} <= $s->{zone}{size},
       'zone used is within its size');
    is($s->{state_file}{path}, $ng->state_file, 'state file path');

    my $snap = $ng->snapshot;
    is($snap->{revision}, 0, 'GET snapshot: revision 0');
    is_deeply($snap->{environments}, {}, 'GET snapshot: no environments');
};

subtest 'PUT snapshot with revision 0 on a fresh edge answers 409' => sub {
    my $res = $ng->put_snapshot({revision => 0, environments => {}});
    is_json_answer($res, 409, 'PUT revision 0');
    is($res->{json}{revision}, 0, 'the answer gives the current revision 0');
    like($res->{json}{error} // '', qr/revision/, 'the error names the revision');
};

subtest 'PUT snapshot applies it and answers its revision' => sub {
    my $res = $ng->put_snapshot($baseline);
    is_json_answer($res, 200, 'PUT snapshot');
    is_deeply($res->{json}, {revision => 5}, 'the answer is {"revision":5}');
};

subtest 'GET status reports the revision, flags per environment and state file' => sub {
    my $s = $ng->status;
    is($s->{revision}, 5, 'revision 5');
    like($s->{applied_at} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
         'applied_at is an ISO 8601 UTC time');
    ok(abs(iso_epoch($s->{applied_at}) - time) < 60, 'applied_at is now');
    ok($s->{generation} >= 1, 'generation at least 1');
    is_deeply($s->{flags}, {production => 3, staging => 1}, 'flag counts');
    ok($s->{zone}{snapshot_bytes} > 0, 'snapshot bytes counted');
    ok($s->{state_file}{ok}, 'state file ok');
    is($s->{state_file}{error}, undef, 'no state file error');
    like($s->{state_file}{written_at} // '',
         qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'state file written_at');
};

subtest 'GET snapshot returns the snapshot as it was PUT' => sub {
    my $res = $ng->api('GET', 'snapshot');
    is_json_answer($res, 200, 'GET snapshot');
    is_deeply(normal($res->{json}), normal($baseline), 'same snapshot');
};

subtest 'flag metadata is accepted, kept and returned' => sub {
    my $f = $ng->snapshot->{environments}{production}{customer_portal};
    is($f->{$_}, $meta->{$_}, "$_ returned") for sort keys %$meta;
    my $g = $ng->snapshot->{environments}{production}{billing_v2};
    is($g->{salt}, 'shared_salt', 'salt returned');
    is($ng->snapshot->{environments}{production}{customer_portal_calls}{requires},
       'customer_portal', 'requires returned');
};

subtest 'the state file holds the applied snapshot' => sub {
    open my $fh, '<', $ng->state_file or return fail('state file: ' . $!);
    my $text = do { local $/; <$fh> };
    my $state = eval { decode_json($text) };
    ok($state, 'the state file is JSON') or diag($@);
    is($state->{revision}, 5, 'with revision 5');
    like(delete $state->{journal} // '', qr/^[0-9a-f]{16}$/,
         'naming the journal of patches that follows it');
    is_deeply(normal($state), normal($baseline), 'holding the snapshot');
    my @tmp = grep { !/state\.json$/ } glob($ng->dir . '/state/*');
    is_deeply(\@tmp, [], 'no temp file left beside it (and no journal: no '
                        . 'patch came yet)');
};

# ---- eval

subtest 'GET eval answers decision, reason, bucket and revision' => sub {
    my $e = $ng->evaluate(flag => 'customer_portal', company => '42');
    is($e->{_status}, 200, 'status 200');
    is_deeply($e, {_status => 200, decision => 'off', reason => 'rollout',
                   bucket => 7541, revision => 5, env => 'production',
                   flag => 'customer_portal', company => '42'},
              'company 42: off by rollout, bucket 7541, env defaults to production');

    is($ng->evaluate(flag => 'customer_portal', company => '12')->{reason},
       'allowed', 'company 12: allowed');
    is($ng->evaluate(flag => 'customer_portal', company => '99')->{reason},
       'denied', 'company 99: denied');
    is($ng->evaluate(flag => 'billing_v2', company => '12')->{reason},
       'killed', 'billing_v2: killed');
    is($ng->evaluate(flag => 'customer_portal_calls', company => '42')->{reason},
       'requires', 'customer_portal_calls for 42: requires');
};

subtest 'GET eval reads the environment given' => sub {
    my $e = $ng->evaluate(env => 'staging', flag => 'customer_portal',
                          company => '42');
    is($e->{decision}, 'on', 'staging: on');
    is($e->{reason}, 'rollout', 'staging: rollout');
    is($e->{env}, 'staging', 'env staging');
};

subtest 'GET eval of an unknown flag is off/unknown with 200' => sub {
    my $e = $ng->evaluate(flag => 'no_such_flag', company => '42');
    is($e->{_status}, 200, 'status 200');
    is($e->{decision}, 'off', 'off');
    is($e->{reason}, 'unknown', 'unknown');
};

subtest 'GET eval without company means no company' => sub {
    my $e = $ng->evaluate(flag => 'customer_portal');
    is($e->{_status}, 200, 'status 200');
    is($e->{reason}, 'no_company', 'reason no_company');
    is($e->{company}, undef, 'company null');
    is($e->{bucket}, undef, 'bucket null');

    $e = $ng->evaluate(flag => 'customer_portal', company => 'a b');
    is($e->{reason}, 'no_company', 'an ill-formed company is no company');

    $e = $ng->evaluate(flag => 'customer_portal', company => '');
    is($e->{reason}, 'no_company', 'an empty company is no company');
};

subtest 'GET eval refuses a missing or invalid flag or env with 400' => sub {
    for my $q ('eval', 'eval?company=42', 'eval?flag=Customer-Portal',
               'eval?flag=customer_portal&env=Bad-Env',
               'eval?flag=' . ('a' x 65)) {
        my $res = $ng->api('GET', $q);
        is_json_answer($res, 400, "GET $q");
        like($res->{json}{error} // '', qr/flag|env/, "GET $q: names the problem");
    }
};

# ---- PUT errors

my $rev = 6;    # a newer revision for each refused PUT

sub put_refused {
    my ($name, $body, $status, $error_re) = @_;
    subtest "PUT snapshot refuses $name with $status" => sub {
        my $res = $ng->put_snapshot($body);
        is_json_answer($res, $status, $name);
        like($res->{json}{error} // '', $error_re, "$name: the error says why")
            or diag($res->{content});
    };
    baseline_in_force($name);
}

sub flag_snapshot {
    my ($flags) = @_;
    return {revision => $rev++, environments => { production => $flags }};
}

put_refused('the typo "rolout"',
    flag_snapshot({ customer_portal => { rolout => 50 } }), 400,
    qr/environments\.production\.customer_portal: unknown key "rolout"/);

put_refused('an unknown top-level key',
    {revision => $rev++, environments => {}, extra => 1}, 400,
    qr/unknown top-level key "extra"/);

put_refused('an invalid company id',
    flag_snapshot({ customer_portal => { allow => ['12', 'a b'] } }), 400,
    qr/environments\.production\.customer_portal\.allow\[1\]: invalid company id "a b"/);

put_refused('an over-long company id',
    flag_snapshot({ customer_portal => { deny => ['x' x 65] } }), 400,
    qr/customer_portal\.deny\[0\]: invalid company id/);

put_refused('a requires of a missing flag',
    flag_snapshot({ customer_portal => { requires => 'nope' } }), 400,
    qr/environments\.production\.customer_portal: requires unknown flag "nope"/);

put_refused('a requires cycle',
    flag_snapshot({ a => { requires => 'b' }, b => { requires => 'c' },
                    c => { requires => 'a' } }), 400,
    qr/environments\.production: requires cycle: .*a.*b.*c/);

put_refused('invalid JSON, naming line and column',
    "{\n  \"revision\": 50,\n  oops\n}", 400,
    qr/invalid JSON at line 3 column \d+/);

put_refused('duplicate keys',
    '{"revision": 50, "revision": 51, "environments": {}}', 400,
    qr/duplicate|revision/);

put_refused('an empty body', '', 400, qr/empty body/);

put_refused('a rollout that is not a multiple of 0.01',
    flag_snapshot({ customer_portal => { rollout => 12.345 } }), 400,
    qr/customer_portal: rollout must be a multiple of/);

put_refused('a rollout above 100',
    flag_snapshot({ customer_portal => { rollout => 100.01 } }), 400,
    qr/customer_portal: rollout/);

put_refused('a rollout below 0',
    flag_snapshot({ customer_portal => { rollout => -1 } }), 400,
    qr/customer_portal: rollout/);

put_refused('enabled that is not a boolean',
    flag_snapshot({ customer_portal => { enabled => 'yes' } }), 400,
    qr/customer_portal: enabled must be true or false/);

put_refused('a rollout given as a string',
    flag_snapshot({ customer_portal => { rollout => '50' } }), 400,
    qr/customer_portal: rollout must be a number/);

put_refused('an invalid flag name',
    flag_snapshot({ 'Customer-Portal' => { rollout => 1 } }), 400,
    qr/Customer-Portal/);

put_refused('an invalid environment name',
    {revision => $rev++, environments => { 'Prod' => {} }}, 400,
    qr/invalid environment name "Prod"/);

put_refused('a missing revision', {environments => {}}, 400,
    qr/revision is required/);

put_refused('a non-integer version',
    flag_snapshot({ customer_portal => { version => 'v1' } }), 400,
    qr/customer_portal: version must be an integer/);

put_refused('a JSON array', '[1, 2]', 400, qr/must be a JSON object/);

put_refused('the current revision',
    {%$baseline, revision => 5}, 409, qr/revision/);

put_refused('an older revision',
    {%$baseline, revision => 4}, 409, qr/revision/);

subtest '409 gives the edge current revision' => sub {
    my $res = $ng->put_snapshot({%$baseline, revision => 3});
    is($res->{json}{revision}, 5, 'revision 5 in the answer');
};

# ---- paths and methods

subtest 'an unknown API path answers 404 in JSON' => sub {
    for my $path ('nope', 'status/x', '') {
        my $res = $ng->api('GET', $path);
        is_json_answer($res, 404, "GET /portal-gate/$path");
        ok($res->{json}{error}, "GET /portal-gate/$path: an error message");
    }
};

subtest 'a wrong method answers 405 in JSON with Allow' => sub {
    for my $case (['POST', 'snapshot', 'GET, HEAD, PUT, PATCH'],
                  ['DELETE', 'snapshot', 'GET, HEAD, PUT, PATCH'],
                  ['PUT', 'status', 'GET, HEAD'],
                  ['POST', 'eval', 'GET, HEAD']) {
        my ($method, $path, $allow) = @$case;
        my $res = $ng->api($method, $path, $method eq 'GET' ? undef : '{}');
        is_json_answer($res, 405, "$method $path");
        is($res->{headers}{allow}, $allow, "$method $path: Allow $allow");
    }
};
baseline_in_force('the 404 and 405 answers');

subtest 'the API answers under prefix, exact and regex locations' => sub {
    for my $path ('/pg/status', '/pg//status', '/edge/status', '/rx/status') {
        my $res = $ng->request('GET', $path);
        is($res->{status}, 200, "GET $path: 200");
        my $json = eval { decode_json($res->{content}) } // {};
        is($json->{revision}, 5, "GET $path: the status JSON");
    }
    my $res = $ng->request('GET', '/rx/eval?flag=customer_portal&company=12');
    my $json = eval { decode_json($res->{content}) } // {};
    is($json->{reason}, 'allowed', 'GET /rx/eval: the eval JSON');
};

subtest 'under "location /pg", /pgstatus is not the status path' => sub {
    my $res = $ng->request('GET', '/pgstatus');
    is($res->{status}, 404, 'GET /pgstatus: 404');
    like((eval { decode_json($res->{content}) } // {})->{error} // '',
         qr/unknown API path/, 'GET /pgstatus: a JSON error');
};

subtest 'bytes that are not UTF-8 get a JSON error, not a 500' => sub {
    my $res = $ng->api('GET', '%ff%fe');
    is($res->{status}, 404, 'an unknown path of raw bytes: 404');
    like(($res->{json} // {})->{error} // '', qr/not valid UTF-8/,
         'the error says why it cannot quote the path');

    $res = $ng->api('GET', 'eval?flag=%ff');
    is($res->{status}, 400, 'eval with a flag of raw bytes: 400');
    like(($res->{json} // {})->{error} // '', qr/not valid UTF-8/,
         'a JSON error');

    $res = $ng->api('GET', 'eval?flag=customer_portal&company=%ff');
    is($res->{status}, 200, 'eval with a company of raw bytes: 200');
    is(($res->{json} // {})->{reason}, 'no_company', 'which is no company');
};

subtest 'HEAD status answers 200 without a body' => sub {
    my $res = $ng->api('HEAD', 'status');
    is($res->{status}, 200, 'status 200');
    is($res->{content}, '', 'no body');
};

subtest 'a newer revision still applies after all the errors' => sub {
    my $res = $ng->put_snapshot({%$baseline, revision => 1000});
    is($res->{status}, 200, 'revision 1000 applied');
    is($ng->status->{revision}, 1000, 'status says 1000');
};

subtest 'a company id given as a JSON number is its decimal string' => sub {
    my $res = $ng->put_snapshot('{"revision": 1002, "environments": {"production":'
        . ' {"customer_portal": {"allow": [12, 57], "deny": [99]}}}}');
    is($res->{status}, 200, 'numbers in allow and deny accepted')
        or diag($res->{content});
    is($ng->evaluate(flag => 'customer_portal', company => '12')->{reason},
       'allowed', 'company "12" is allowed');
    is($ng->evaluate(flag => 'customer_portal', company => '99')->{reason},
       'denied', 'company "99" is denied');
    my $f = $ng->snapshot->{environments}{production}{customer_portal};
    is_deeply([sort @{ $f->{allow} }], ['12', '57'], 'GET snapshot gives them back');
    ok(!ref $f->{allow}[0] && JSON::PP->new->encode($f->{allow}) =~ /^\["/,
       'as strings');
};

subtest 'a killed flag is killed before its requires is looked at' => sub {
    my $res = $ng->put_snapshot({revision => 1003, environments => {
        production => { base => { rollout => 0 },
                        child => { enabled => JSON::PP::false,
                                   requires => 'base', rollout => 100 } } }});
    is($res->{status}, 200, 'applied');
    is($ng->evaluate(flag => 'child', company => '42')->{reason}, 'killed',
       'reason killed, not requires');
};

subtest 'flags that share a salt roll out to the same companies' => sub {
    my $res = $ng->put_snapshot({revision => 1010, environments => {
        production => { portal_a => { rollout => 50, salt => 'wave1' },
                        portal_b => { rollout => 50, salt => 'wave1' } } }});
    is($res->{status}, 200, 'two flags with salt "wave1" applied');
    for my $c (map { "s$_" } 1 .. 20) {
        my $a = $ng->evaluate(flag => 'portal_a', company => $c);
        my $b = $ng->evaluate(flag => 'portal_b', company => $c);
        my $bucket = PortalGate::Test::bucket('wave1', $c);
        is_deeply([@$a{qw(bucket decision)}],
                  [$bucket, $bucket < 5000 ? 'on' : 'off'],
                  "company $c: portal_a bucket from wave1:$c");
        is($b->{decision}, $a->{decision}, "company $c: portal_b agrees");
    }
};

$ng->no_bad_log_lines;

done_testing;

# "2026-11-25T01:02:03Z" in epoch seconds (0 when it does not parse).
sub iso_epoch {
    my ($t) = @_;
    return 0 unless defined $t
        && $t =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$/;
    require Time::Local;
    return Time::Local::timegm($6, $5, $4, $3, $2 - 1, $1);
}
