# PATCH snapshot (issue 14): the controller's deltas. A patch applies only
# on its base revision, is checked as a whole snapshot is, never applies in
# part, survives reload and restart, and leaves the edge exactly where a
# PUT of the same store would.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);
use PortalGate::Test qw(require_module);

require_module();

my $SLOW = $ENV{PG_TEST_SLOW} // 1;
my $JSON = JSON::PP->new->canonical->utf8;

my $portal = <<'CONF';
        add_header X-Worker $pid always;
        location /portal/ { portal_gate customer_portal;
                            add_header X-Worker $pid always;
                            add_header X-Reason $portal_gate_reason always;
                            return 200 "portal v2\n"; }
        location /calls/  { portal_gate customer_portal_calls;
                            add_header X-Reason $portal_gate_reason always;
                            return 200 "calls\n"; }
CONF


# ---- helpers

sub patch_body {
    my ($base, $revision, $envs) = @_;
    return $JSON->encode({base_revision => $base, revision => $revision,
                          environments => $envs});
}

sub patch {
    my ($ng, $base, $revision, $envs, %o) = @_;
    return $ng->api('PATCH', 'snapshot', patch_body($base, $revision, $envs),
                    %o);
}

sub copy { return $JSON->decode($JSON->encode($_[0])) }

# What the edge must hold after a patch: flags replaced whole or deleted,
# every environment named exists, the revision is the patch's.
sub patched {
    my ($model, $revision, $envs) = @_;
    my $m = copy($model);
    $m->{revision} = $revision;
    for my $env (keys %$envs) {
        my $flags = $m->{environments}{$env} //= {};
        for my $name (keys %{ $envs->{$env} }) {
            my $flag = $envs->{$env}{$name};
            if (defined $flag) {
                $flags->{$name} = copy($flag);
            } else {
                delete $flags->{$name};
            }
        }
    }
    return $m;
}

# numbers as numbers and lists in order, to compare snapshots
sub normal {
    my ($s) = @_;
    my $copy = copy($s);
    for my $env (values %{ $copy->{environments} }) {
        for my $f (values %$env) {
            $f->{rollout} += 0 if defined $f->{rollout};
            $f->{$_} = [sort @{ $f->{$_} }] for grep { $f->{$_} } qw(allow deny);
            # what the edge fills in
            $f->{enabled} = JSON::PP::true unless exists $f->{enabled};
            $f->{rollout} //= 0;
            $f->{allow} //= [];
            $f->{deny} //= [];
        }
    }
    return $copy;
}

sub gate {
    my ($ng, $company, $path) = @_;
    my $r = $ng->get($path // '/portal/', company => $company);
    return wantarray ? ($r->{status}, $r->{headers}{'x-reason'} // '')
                     : $r->{status};
}

sub state_file_json {
    my ($ng) = @_;
    open my $fh, '<', $ng->state_file or return undef;
    local $/;
    return eval { decode_json(scalar <$fh>) };
}

# the records of the journal beside the state file (include/pg_state.h)
sub journal_records {
    my ($ng) = @_;
    open my $fh, '<', $ng->state_file . '.journal' or return ();
    local $/;
    my $text = <$fh>;
    my @records;
    $text =~ s/^PGJ1 [0-9a-f]{16}\n// or return ();
    while ($text =~ s/^R (\d{10}) [0-9a-f]{8}\n//) {
        push @records, decode_json(substr($text, 0, $1 + 1, ''));
    }
    return @records;
}

my $baseline = {revision => 10, environments => {production => {
    customer_portal       => { rollout => 0, allow => ['12'], deny => ['99'] },
    customer_portal_calls => { requires => 'customer_portal', rollout => 0,
                               allow => ['12'] },
}}};


# ---- one edge: order, conflicts, errors

my $ng = PortalGate::Test->new(server => $portal . <<'CONF');
        location /small-api/ { portal_gate_api;
                               portal_gate_api_max_body_size 4k; }
CONF
$ng->start;
my $model = copy($baseline);
is($ng->put_snapshot($baseline)->{status}, 200, 'a first PUT: revision 10');

# Each check that nothing changed compares GET snapshot's exact text.
sub unchanged {
    my ($before, $name) = @_;
    my $res = $ng->api('GET', 'snapshot');
    is($res->{content}, $before, "$name: GET snapshot is unchanged");
}

subtest 'patches applied in order change the decisions' => sub {
    is(gate($ng, '57'), 404, 'before: company 57 has no portal');

    my $envs = {production => {customer_portal =>
                    { rollout => 0, allow => ['12', '57'], deny => ['99'] }}};
    my $res = patch($ng, 10, 11, $envs);
    is($res->{status}, 200, 'patch 10 -> 11 applies');
    is_deeply($res->{json}, {revision => 11}, 'answering {"revision":11}');
    $model = patched($model, 11, $envs);
    is(gate($ng, '57'), 200, 'company 57 gets the portal');
    is(gate($ng, '57', '/calls/'), 404,
       'a flag not named stays: calls is not for 57');

    $envs = {production => {customer_portal_calls =>
                 { requires => 'customer_portal', rollout => 0,
                   allow => ['12', '57'] }}};
    is(patch($ng, 11, 12, $envs)->{status}, 200, 'patch 11 -> 12 applies');
    $model = patched($model, 12, $envs);
    is(gate($ng, '57', '/calls/'), 200, 'company 57 gets calls');

    $envs = {production => {customer_portal =>
                 { enabled => JSON::PP::false, rollout => 0,
                   allow => ['12', '57'] }}};
    $res = patch($ng, 12, 15, $envs);
    is($res->{status}, 200, 'patch 12 -> 15 applies: revisions may skip');
    $model = patched($model, 15, $envs);
    is_deeply([gate($ng, '12')], [404, 'killed'], 'company 12: killed');
    is_deeply([gate($ng, '57', '/calls/')], [404, 'requires'],
              'calls for 57: off by requires, through the patched flag');

    is($ng->status->{revision}, 15, 'GET status: revision 15');
    is_deeply(normal($ng->snapshot), normal($model),
              'GET snapshot: the patched snapshot');
    # step 2: a patch is a record of the journal beside the state file,
    # which keeps the last whole snapshot (the PUT of revision 10)
    my $state = state_file_json($ng);
    my @records = journal_records($ng);
    is($state->{revision}, 10, 'the state file keeps the PUT of revision 10');
    is(scalar @records, 3, 'and its journal the three patches, in order');
    my $replayed = {revision => $state->{revision},
                    environments => $state->{environments}};
    $replayed = patched($replayed, $_->{revision}, $_->{environments})
        for @records;
    is_deeply(normal($replayed), normal($model),
              'which replay to the patched snapshot');
    ok(scalar $ng->log_lines(
           qr/\[notice\].*snapshot revision 15 applied, patched from revision 12/),
       'the swap is logged at notice, with the base');
};

subtest 'out of order: 409 with the edge revision, then a PUT heals' => sub {
    my $before = $ng->api('GET', 'snapshot')->{content};
    my $envs = {production => {customer_portal => { rollout => 100 }}};

    for my $case ([12, 16, 'a base behind the edge'],
                  [16, 17, 'a base ahead of the edge'],
                  [12, 13, 'a revision below the edge revision']) {
        my ($base, $rev, $name) = @$case;
        my $res = patch($ng, $base, $rev, $envs);
        is($res->{status}, 409, "$name ($base -> $rev): 409");
        is($res->{json}{revision}, 15, "$name: the answer gives revision 15");
        like($res->{json}{error} // '',
             qr/base_revision $base is not the edge's revision 15/,
             "$name: the error names both revisions");
    }
    unchanged($before, 'after the 409s');
    is(gate($ng, '12'), 404, 'company 12 is still killed');

    # the controller's answer to a 409: the whole store, then patches again
    $model = copy($baseline);
    $model->{revision} = 20;
    is($ng->put_snapshot($model)->{status}, 200, 'a full PUT of revision 20');
    my $res = patch($ng, 20, 21, $envs);
    is($res->{status}, 200, 'a patch on 20 applies');
    $model = patched($model, 21, $envs);
    is(gate($ng, '4242'), 200, 'company 4242 is in the 100% rollout');
    is_deeply(normal($ng->snapshot), normal($model), 'GET snapshot agrees');
};

subtest 'a missing or garbage base, or any bad form, is 400 and changes nothing' => sub {
    my $before = $ng->api('GET', 'snapshot')->{content};
    my $flag = {production => {customer_portal => { rollout => 50 }}};

    for my $case (
        ['no base_revision', $JSON->encode({revision => 22, environments => $flag}),
         qr/^base_revision is required$/],
        ['a base that is a string', '{"base_revision": "21", "revision": 22, "environments": {}}',
         qr/^base_revision must be an integer from 0 to 9007199254740991$/],
        ['a base that is null', '{"base_revision": null, "revision": 22, "environments": {}}',
         qr/^base_revision must be an integer/],
        ['a negative base', '{"base_revision": -1, "revision": 22, "environments": {}}',
         qr/^base_revision must be an integer/],
        ['no revision', '{"base_revision": 21, "environments": {}}',
         qr/^revision is required$/],
        ['a revision equal to the base', patch_body(21, 21, $flag),
         qr/^revision 21 must be above base_revision 21$/],
        ['a revision below the base', patch_body(21, 20, $flag),
         qr/^revision 20 must be above base_revision 21$/],
        ['a revision above 2^53 - 1', patch_body(21, 9007199254740992, $flag),
         qr/^revision must be an integer from 0 to 9007199254740991$/],
        ['an unknown top-level key, whatever the base',
         '{"base_revision": 3, "revision": 22, "environments": {}, "extra": 1}',
         qr/^unknown top-level key "extra"$/],
        ['no environments', '{"base_revision": 21, "revision": 22}',
         qr/^environments is required$/],
        ['invalid JSON', "{\n \"base_revision\": 21,\n oops }",
         qr/^invalid JSON at line 3 column \d+/],
        ['duplicate keys', '{"base_revision": 21, "base_revision": 21, "revision": 22, "environments": {}}',
         qr/^invalid JSON .*duplicate/],
        ['an empty body', '', qr/^empty body: expected a patch$/],
        ['a JSON array', '[1]', qr/^a patch must be a JSON object$/],
        ['an environment given null', patch_body(21, 22, {production => undef}),
         qr/^environments\.production: a patch cannot delete an environment/],
        ['an invalid environment name', patch_body(21, 22, {Prod => {}}),
         qr/^environments: invalid environment name "Prod"$/],
        ['an invalid flag name', patch_body(21, 22, {production => {'Customer-Portal' => undef}}),
         qr/^environments\.production: invalid flag name "Customer-Portal"$/],
        ['a flag given a number', patch_body(21, 22, {production => {customer_portal => 5}}),
         qr/^environments\.production\.customer_portal: a flag must be an object, or null to delete it$/],
        ['a flag with a typo', patch_body(21, 22, {production => {customer_portal => {rolout => 5}}}),
         qr/^environments\.production\.customer_portal: unknown key "rolout"$/],
        ['a flag with a bad company id', patch_body(21, 22, {production => {customer_portal => {allow => ['a b']}}}),
         qr/^environments\.production\.customer_portal\.allow\[0\]: invalid company id "a b"$/],
        ['a flag with a typo, off the base', patch_body(3, 22, {production => {customer_portal => {rolout => 5}}}),
         qr/^environments\.production\.customer_portal: unknown key "rolout"$/],
        ['a flag with a bad company id, off the base', patch_body(30, 31, {production => {customer_portal => {allow => ['a b']}}}),
         qr/^environments\.production\.customer_portal\.allow\[0\]: invalid company id "a b"$/],
        ['force=1, which only PUT takes', patch_body(21, 22, $flag),
         qr/^force is for PUT snapshot: a patch applies only on its base_revision$/, 'force=1'],
        ['force=0 too', patch_body(21, 22, $flag), qr/^force is for PUT snapshot/, 'force=0'],
    ) {
        my ($name, $body, $re, $query) = @$case;
        my $res = $ng->api('PATCH', 'snapshot' . ($query ? "?$query" : ''), $body);
        is($res->{status}, 400, "$name: 400");
        like($res->{headers}{'content-type'} // '', qr{^application/json},
             "$name: in JSON");
        like($res->{json}{error} // '', $re, "$name: the error says why")
            or diag($res->{content});
    }

    unchanged($before, 'after the 400s');
    is($ng->status->{revision}, 21, 'the edge is still at revision 21');
    ok(scalar $ng->log_lines(qr/\[error\].*patch refused: revision 20 must be above/),
       'a refused patch is logged at error, as a refused PUT is');
    is(patch($ng, 21, 22, $flag)->{status}, 200,
       'and the next good patch on 21 applies');
    $model = patched($model, 22, $flag);
};

subtest 'deleting a flag another requires is 400 naming it, and nothing changes' => sub {
    my $before = $ng->api('GET', 'snapshot')->{content};
    my $res = patch($ng, 22, 23, {production => {customer_portal => undef}});
    is($res->{status}, 400, 'the delete is refused with 400');
    like($res->{json}{error} // '',
         qr/^environments\.production\.customer_portal_calls: requires unknown flag "customer_portal"$/,
         'naming the flag that requires it, and the deleted flag');
    unchanged($before, 'after the refused delete');
    isnt((gate($ng, '12', '/calls/'))[1], 'unknown', 'calls is still there');

    # deleting both at once is a valid patch
    my $envs = {production => {customer_portal => undef,
                               customer_portal_calls => undef,
                               other => { rollout => 100 }}};
    is(patch($ng, 22, 23, $envs)->{status}, 200,
       'deleting the flag and the one requiring it together applies');
    $model = patched($model, 23, $envs);
    is_deeply([gate($ng, '12', '/calls/')], [404, 'unknown'],
              'calls is gone: unknown');
};

subtest 'a patch that makes a cycle or a requires of a missing flag is 400' => sub {
    my $before = $ng->api('GET', 'snapshot')->{content};
    my $res = patch($ng, 23, 24, {production => {
        a => { requires => 'b' }, b => { requires => 'other' },
        other => { requires => 'a' }}});
    is($res->{status}, 400, 'a cycle through a flag not in the patch: 400');
    like($res->{json}{error} // '',
         qr/^environments\.production: requires cycle: .*\b(a|b|other) -> /,
         'naming the cycle');
    $res = patch($ng, 23, 24, {production => {a => { requires => 'nope' }}});
    is($res->{status}, 400, 'a requires of a missing flag: 400');
    like($res->{json}{error} // '',
         qr/^environments\.production\.a: requires unknown flag "nope"$/,
         'naming the flag and what it requires');
    unchanged($before, 'after both');
};

subtest 'null deletes; an absent flag and an empty patch only move the revision' => sub {
    my $envs = {production => {customer_portal => { rollout => 0, allow => ['12'] },
                               customer_portal_calls => { requires => 'customer_portal',
                                                          rollout => 100 }}};
    is(patch($ng, 23, 24, $envs)->{status}, 200, 'two flags back');
    $model = patched($model, 24, $envs);
    is(gate($ng, '12', '/calls/'), 200, 'calls on for 12');

    $envs = {production => {customer_portal_calls => undef, never_was => undef}};
    is(patch($ng, 24, 25, $envs)->{status}, 200,
       'null deletes, and null for an absent flag is no error');
    $model = patched($model, 25, $envs);
    is_deeply([gate($ng, '12', '/calls/')], [404, 'unknown'],
              'the deleted flag evaluates unknown');
    ok(!exists $ng->snapshot->{environments}{production}{customer_portal_calls},
       'and is gone from GET snapshot');

    is(patch($ng, 25, 26, {})->{status}, 200, 'environments {} applies');
    $model = patched($model, 26, {});
    is($ng->status->{revision}, 26, 'as a revision bump');
    is_deeply(normal($ng->snapshot), normal($model), 'with no flag changed');
};

subtest 'a patch creates the environment of a flag it adds' => sub {
    my $envs = {staging => {customer_portal => { rollout => 100 }}};
    is(patch($ng, 26, 27, $envs)->{status}, 200, 'a flag in staging');
    $model = patched($model, 27, $envs);
    my $e = $ng->evaluate(env => 'staging', flag => 'customer_portal',
                          company => '42');
    is_deeply([@$e{qw(decision reason revision)}], ['on', 'rollout', 27],
              'staging: on by rollout, revision 27');
    is_deeply($ng->status->{flags}, {production => 2, staging => 1},
              'GET status counts its flags');
    is($ng->evaluate(flag => 'customer_portal', company => '42')->{decision},
       'off', 'production is its own');
};

subtest 'kill overrides apply over a patched snapshot' => sub {
    my $o = $ng->api('PUT', 'overrides?env=production&flag=customer_portal',
                     '{"by": "oncall", "reason": "INC-9"}');
    is($o->{status}, 200, 'an override on customer_portal');
    is_deeply([gate($ng, '12')], [404, 'killed'], 'company 12: killed');

    my $envs = {production => {customer_portal =>
                    { enabled => JSON::PP::true, rollout => 100 }}};
    is(patch($ng, 27, 28, $envs)->{status}, 200,
       'a patch enabling it for everyone applies');
    $model = patched($model, 28, $envs);
    is_deeply([gate($ng, '12')], [404, 'killed'], 'company 12: still killed');
    is_deeply([gate($ng, '4242')], [404, 'killed'], 'company 4242: killed');
    ok($ng->snapshot->{environments}{production}{customer_portal}{enabled},
       'GET snapshot gives the pushed flag, enabled');
    is(scalar @{ $ng->status->{overrides} }, 1, 'the override stays');

    my $d = $ng->api('DELETE', 'overrides?env=production&flag=customer_portal');
    is($d->{status}, 200, 'released');
    is_deeply([gate($ng, '4242')], [200, 'rollout'],
              'company 4242 gets the patched flag: rollout 100');
};

subtest 'a wrong method on snapshot: 405 with Allow naming PATCH' => sub {
    for my $method ('POST', 'DELETE') {
        my $res = $ng->api($method, 'snapshot', '{}');
        is($res->{status}, 405, "$method snapshot: 405");
        is($res->{headers}{allow}, 'GET, HEAD, PUT, PATCH',
           "$method snapshot: Allow: GET, HEAD, PUT, PATCH");
    }
    my $res = $ng->api('PATCH', 'status', '{}');
    is($res->{status}, 405, 'PATCH status: 405');
};

subtest 'a patch body over portal_gate_api_max_body_size gets a JSON 413' => sub {
    my $before = $ng->api('GET', 'snapshot')->{content};
    my $big = patch_body(28, 29, {production => {customer_portal =>
                  { allow => [map { "company-$_" } 1 .. 500] }}});
    my $res = $ng->api('PATCH', 'snapshot', $big, prefix => '/small-api/');
    is($res->{status}, 413, 'the body is refused with 413');
    like($res->{json}{error} // '', qr/portal_gate_api_max_body_size/,
         'in JSON, naming the directive');
    unchanged($before, 'after the 413');
};

subtest 'across a reload and a restart the patched state is served' => sub {
    my $before = $ng->api('GET', 'snapshot')->{content};
    $ng->reload;
    is($ng->api('GET', 'snapshot')->{content}, $before,
       'after nginx -s reload: the same snapshot');
    my $envs = {production => {customer_portal =>
                    { rollout => 0, allow => ['77'] }}};
    is(patch($ng, 28, 29, $envs)->{status}, 200, 'and a patch on 28 applies');
    $model = patched($model, 29, $envs);

    $before = $ng->api('GET', 'snapshot')->{content};
    $ng->restart;
    my $st = $ng->status;
    ok($st->{restored_from_state}, 'after a restart: restored from the state file');
    is($ng->api('GET', 'snapshot')->{content}, $before,
       'the same snapshot, revision 29');
    is(gate($ng, '77'), 200, 'company 77 gets the portal');
    $envs = {production => {customer_portal => { rollout => 0, allow => ['78'] }}};
    is(patch($ng, 29, 30, $envs)->{status}, 200, 'a patch on 29 applies');
    $model = patched($model, 30, $envs);
    is_deeply(normal($ng->snapshot), normal($model), 'GET snapshot agrees');
};

$ng->no_bad_log_lines;
$ng->stop;


subtest 'a patch whose result does not fit the zone: 507, nothing changed' => sub {
    my $z = PortalGate::Test->new(server => $portal, zone => '64k');
    $z->start;
    is($z->put_snapshot({revision => 1, environments => {production => {
        customer_portal => { rollout => 0, allow => ['12'] }}}})->{status},
       200, 'revision 1');
    my $before = $z->api('GET', 'snapshot')->{content};
    my $res = patch($z, 1, 2, {production => {other => { rollout => 0,
                  allow => [map { sprintf 'company-%06d', $_ } 1 .. 20000] }}});
    is($res->{status}, 507, 'the patch is refused with 507');
    like($res->{json}{error} // '', qr/zone is too small .* enlarge portal_gate_zone/,
         'in JSON, with the cure');
    is($z->api('GET', 'snapshot')->{content}, $before, 'GET snapshot is unchanged');
    is(gate($z, '12'), 200, 'company 12 still gets the portal');
    is(patch($z, 1, 2, {production => {other => { rollout => 100 }}})->{status},
       200, 'a patch that fits applies on revision 1');
    $z->no_bad_log_lines;
    $z->stop;
};


# ---- two workers

# A flag with a long list that no patch touches: the workers keep its
# piece through every patch. (Two patches on one base, held where they
# race, are in t/38-api-patch-held.t.)
my @bulk = map { sprintf 'bulk-%05d', $_ } 1 .. 5000;

subtest 'two workers: every worker serves the patched revision' => sub {
    my $w = PortalGate::Test->new(server => $portal, workers => 2,
                                  reuseport => 1);
    $w->start;
    my $snap = {revision => 100, environments => {production => {
        customer_portal => { rollout => 0 },
        bulk => { rollout => 0, allow => \@bulk }}}};
    is($w->put_snapshot($snap)->{status}, 200, 'revision 100');

    my $rev = 100;
    for my $round (1 .. 3) {
        my $envs = {production => {customer_portal =>
                        { rollout => 0, allow => ["c$round"] }}};
        is(patch($w, $rev, $rev + 1, $envs)->{status}, 200,
           "round $round: patch $rev -> " . ($rev + 1));
        $rev++;

        my (%status, %worker, %revision);
        for (1 .. 40) {
            my $r = $w->get('/portal/', company => "c$round");
            $status{$r->{status}}++;
            $worker{$r->{headers}{'x-worker'} // '?'}++;
            my $s = $w->api('GET', 'status');
            $revision{$s->{json}{revision} // 'none'}++;
            $worker{$s->{headers}{'x-worker'} // '?'}++;
        }
        is_deeply(\%status, {200 => 40}, "round $round: c$round gets the portal 40 times");
        is_deeply(\%revision, {$rev => 40}, "round $round: every status says $rev");
        is(scalar keys %worker, 2, "round $round: from both workers")
            or diag(explain \%worker);
    }
    $w->no_bad_log_lines;
    $w->stop;
};

subtest 'a worker killed while patches apply: the edge serves what it acknowledged and goes on' => sub {
    my $w = PortalGate::Test->new(server => $portal, workers => 2);
    $w->start;

    # each revision R holds one flag whose allow list is ["rR"]
    my $flag_of = sub { { rollout => 0, allow => ["r$_[0]"] } };
    my $rev = 300;
    is($w->put_snapshot({revision => $rev, environments => {production => {
        customer_portal => $flag_of->($rev),
        bulk => { rollout => 0, allow => \@bulk }}}})->{status}, 200,
       "revision $rev");

    # a client patching in a loop, as the controller would: on an answer
    # lost with its worker, it asks the edge where it is, and goes on
    my $log = $w->dir . '/patches.log';
    my $stop = $w->dir . '/stop';
    my $client = fork // die "fork: $!";
    if ($client == 0) {
        open my $out, '>', $log or POSIX::_exit(2);
        $out->autoflush(1);
        my $base = $rev;
        for (1 .. 2000) {
            last if -e $stop;
            my $next = $base + 1;
            my $res = patch($w, $base, $next,
                            {production => {customer_portal => $flag_of->($next)}},
                            timeout => 10);
            if ($res->{status} == 200) {
                print {$out} "ack $next\n";
                $base = $next;
            } elsif ($res->{status} == 409) {
                print {$out} "conflict $base $res->{json}{revision}\n";
                $base = $res->{json}{revision};
            } else {
                # status 0: no answer, the connection died with its worker
                print {$out} "lost $next $res->{status}\n";
                my $st = $w->api('GET', 'status');
                $base = $st->{json}{revision} // $base;
            }
        }
        close $out;
        POSIX::_exit(0);
    }

    # each kill after the client has seen a few more patches acknowledged
    my $acks = sub {
        open my $in, '<', $log or return 0;
        return scalar grep { /^ack / } <$in>;
    };
    my $replaced = 0;
    for my $n (1 .. 4) {
        my $want = $acks->() + 3;
        my $deadline = time + 20 * $SLOW;
        sleep 0.02 until $acks->() >= $want || time > $deadline;
        my @before = $w->workers;
        my $victim = $before[$n % @before];
        kill 'KILL', $victim;
        $deadline = time + 10 * $SLOW;
        until ((grep { $_ != $victim } $w->workers) == 2 || time > $deadline) {
            sleep 0.02;
        }
        $replaced++ if (grep { $_ != $victim } $w->workers) == 2;
    }
    is($replaced, 4, 'four workers were killed, each replaced by the master');
    my $want = $acks->() + 3;
    my $deadline = time + 20 * $SLOW;
    sleep 0.02 until $acks->() >= $want || time > $deadline;
    open my $fh, '>', $stop or die "$stop: $!";
    close $fh;
    waitpid($client, 0);
    is($?, 0, 'the patching client ran to the end');

    open $fh, '<', $log or die "$log: $!";
    my @lines = <$fh>;
    close $fh;
    my @acks = map { /^ack (\d+)/ ? $1 : () } @lines;
    my %lost = map { /^lost (\d+)/ ? ($1 => 1) : () } @lines;
    my @conflicts = grep { /^conflict/ } @lines;
    cmp_ok(scalar @acks, '>=', 15,
           'patches were acknowledged between and after the kills');
    diag(scalar(@acks) . ' acknowledged, ' . scalar(keys %lost)
         . ' lost with a killed worker, ' . scalar(@conflicts) . ' conflicts');
    my @refused = grep { /^lost \d+ (?!0$)/ } @lines;
    is_deeply(\@refused, [],
              'a patch not acknowledged got no answer at all (its worker '
              . 'was killed): no live worker refused one');
    # a live worker that closed a patch's connection unanswered would look
    # like a killed one: at most one lost answer per kill
    cmp_ok(scalar keys %lost, '<=', $replaced,
           'each lost answer had its worker killed');

    # after a lost answer the client goes on from the edge's revision: an
    # edge that fell back (lost a swap it acknowledged, or said revision 0
    # after a half-done swap) would make a later acknowledgement lower
    my @fell = grep { $acks[$_] <= $acks[$_ - 1] } 1 .. $#acks;
    is_deeply([map { "$acks[$_ - 1] then $acks[$_]" } @fell], [],
              'acknowledged revisions only ever rise: the edge never fell '
              . 'behind a patch it acknowledged');

    my $st = $w->status;
    my $now = $st->{revision};
    ok($now == $acks[-1] || ($lost{$now} && $now > $acks[-1]),
       "the edge is at revision $now: the last acknowledged, $acks[-1], "
       . 'or one sent after it as its worker was killed');
    my $snap = $w->snapshot;
    is($snap->{revision}, $now, 'GET snapshot: the same revision');
    is_deeply($snap->{environments}{production}{customer_portal}{allow}, ["r$now"],
              "holding the flag of revision $now, not a mix");
    is(scalar @{ $snap->{environments}{production}{bulk}{allow} }, scalar @bulk,
       'and the flag no patch touched, whole');
    is(gate($w, "r$now"), 200, "company r$now gets the portal");

    is(patch($w, $now, $now + 1,
             {production => {customer_portal => $flag_of->($now + 1)}})->{status},
       200, 'a further patch applies');
    $now++;
    $w->restart;
    is($w->status->{revision}, $now,
       "after a restart the state file gives the acknowledged revision $now");
    is(gate($w, "r$now"), 200, "company r$now gets the portal");

    my @bad = grep { !/worker process \d+ exited on signal 9/
                     && !/shared memory zone "portal_gate" was locked by \d+/ }
              $w->log_lines(qr/\[(?:crit|alert|emerg)\]/);
    is_deeply(\@bad, [], 'no [crit], [alert] or [emerg] but the killed workers\'');
    $w->stop;
};


# ---- conformance: a long random series of patches against a PUT of the
# same store

# Whether a snapshot is valid in what a patch can break: every `requires`
# names a flag of its environment, and no cycle.
sub valid {
    my ($snap) = @_;
    for my $flags (values %{ $snap->{environments} }) {
        for my $name (keys %$flags) {
            my (%seen, $at) = ();
            $at = $name;
            while (defined $at) {
                return 0 if $seen{$at}++;
                return 0 unless $flags->{$at};
                $at = $flags->{$at}{requires};
            }
        }
    }
    return 1;
}

# 300 random patches; 60 under valgrind (make test's second pass), where
# each costs some 0.25 s and the memory checks need no more to see every path
my $PATCHES = $SLOW > 1 ? 60 : 300;

subtest "conformance: $PATCHES random patches end where a PUT of the same store does" => sub {
    my $seed = $ENV{PG_TEST_SEED} // int(rand(1 << 30));
    srand($seed);
    diag("PG_TEST_SEED=$seed");

    my $one = PortalGate::Test->new(server => $portal);
    my $two = PortalGate::Test->new(server => $portal);
    $one->start;
    $two->start;

    my @flags = map { "flag_$_" } 'a' .. 'l';
    my @envs = ('production', 'staging', 'qa');
    my @companies = map { "c$_" } 1 .. 25;
    my $pick = sub { my @l = @_; $l[int rand @l] };
    my $some = sub {
        my %s = map { $pick->(@companies) => 1 } 1 .. int(rand 5);
        return [sort keys %s];
    };
    my $random_flag = sub {
        my ($env_flags) = @_;
        my %f;
        $f{enabled} = rand() < 0.8 ? JSON::PP::true : JSON::PP::false if rand() < 0.6;
        $f{rollout} = int(rand 10001) / 100 if rand() < 0.8;
        $f{allow} = $some->() if rand() < 0.6;
        $f{deny} = $some->() if rand() < 0.3;
        $f{salt} = 'wave' . int(rand 3) if rand() < 0.2;
        $f{version} = int(rand 1000) if rand() < 0.3;
        $f{description} = 'changed ' . int(rand 1000) if rand() < 0.2;
        if (rand() < 0.25) {
            my @names = keys %$env_flags;
            $f{requires} = @names && rand() < 0.9 ? $pick->(@names) : 'ghost';
        }
        return \%f;
    };

    my $store = {revision => 0, environments => {}};
    my ($applied, $refused) = (0, 0);
    my @wrong;

    for my $i (1 .. $PATCHES) {
        my %envs;
        for (1 .. 1 + int(rand 3)) {
            my $env = rand() < 0.6 ? 'production' : $pick->(@envs);
            my $have = $store->{environments}{$env} // {};
            my $name = $pick->(@flags);
            $envs{$env}{$name} = rand() < 0.25 ? undef : $random_flag->($have);
        }
        my $rev = $store->{revision} + 1 + (rand() < 0.2 ? int(rand 5) : 0);
        my $next = patched($store, $rev, \%envs);
        my $want = valid($next) ? 200 : 400;
        my $res = patch($one, $store->{revision}, $rev, \%envs);
        if ($res->{status} != $want) {
            push @wrong, "patch $i: $res->{status}, expected $want: $res->{content}";
            last if @wrong > 5;
        }
        if ($res->{status} == 200) {
            $store = $next;
            $applied++;
        } else {
            $refused++;
        }
    }
    is_deeply(\@wrong, [], 'every patch was answered as the store said: 200, or 400 for an invalid result');
    diag("$applied applied, $refused refused as invalid, revision $store->{revision}");
    cmp_ok($applied, '>=', $PATCHES / 2, 'most of them applied');

    is($two->put_snapshot($store)->{status}, 200,
       'the same store PUT whole to a second edge');

    my $s1 = $one->api('GET', 'snapshot')->{content};
    my $s2 = $two->api('GET', 'snapshot')->{content};
    is($s1, $s2, 'GET snapshot: the two edges are identical, byte for byte');
    is($one->status->{revision}, $store->{revision}, 'at the store revision');

    my ($asked, @differ) = (0);
    for my $env (@envs, 'nowhere') {
        for my $flag (@flags) {
            for my $company (@companies[0 .. 11], 'x9', '') {
                my $q = "eval?env=$env&flag=$flag&company=$company";
                my $ea = $one->api('GET', $q)->{content};
                my $eb = $two->api('GET', $q)->{content};
                $asked++;
                push @differ, "$q: $ea vs $eb" if $ea ne $eb;
            }
        }
    }
    is_deeply(\@differ, [], "GET eval: the $asked decisions agree");

    $one->no_bad_log_lines('the patched edge: no [crit], [alert] or [emerg]');
    $two->no_bad_log_lines('the PUT edge: no [crit], [alert] or [emerg]');
    $one->stop;
    $two->stop;
};

done_testing;
