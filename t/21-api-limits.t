# Body and zone limits of PUT snapshot: 413 (Content-Length and chunked),
# 507 for a zone too small, and a large snapshot that spills to a temp file.

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
CONF

my $ng = PortalGate::Test->new(server => $portal . <<'CONF');
        location /small-api/ { portal_gate_api;
                               portal_gate_api_max_body_size 4k; }
        location /denied-api/ { deny all; portal_gate_api; }
        location /ro-api/ { portal_gate_api;
                            limit_except GET HEAD { deny all; } }
        location /lan-api/ { portal_gate_api;
                             limit_except GET HEAD { allow 127.0.0.1;
                                                     deny all; } }
CONF
$ng->start;

my $small = {revision => 1, environments => {
    production => { customer_portal => { rollout => 0, allow => ['12'] } } }};

# a valid snapshot of about $bytes bytes
sub padded_snapshot {
    my ($revision, $bytes) = @_;
    my @ids = map { sprintf 'pad-%06d', $_ } 1 .. int($bytes / 13) + 1;
    return encode_json({revision => $revision, environments => {
        production => { customer_portal => { rollout => 0,
                                             allow => ['12', @ids] } } }});
}

sub is_json_error {
    my ($res, $status, $re, $name) = @_;
    is($res->{status}, $status, "$name: status $status");
    like($res->{headers}{'content-type'} // '', qr{^application/json},
         "$name: Content-Type application/json");
    like(($res->{json} // {})->{error} // '', $re, "$name: a JSON error")
        or diag($res->{content});
}

sub small_in_force {
    my ($name) = @_;
    subtest "$name: the previous snapshot stays in force" => sub {
        is($ng->status->{revision}, 1, 'revision 1');
        is($ng->get('/portal/', company => '12')->{status}, 200,
           'company 12 still gets the portal');
        is($ng->evaluate(flag => 'customer_portal', company => 'pad-000001')
              ->{reason}, 'rollout', 'the padding ids are not allowed');
    };
}

is($ng->put_snapshot($small)->{status}, 200, 'a small snapshot is applied');

my $big = padded_snapshot(2, 8 * 1024);
cmp_ok(length $big, '>', 4096, 'the test body is larger than 4k');

subtest 'a body over portal_gate_api_max_body_size (Content-Length) gets a JSON 413' => sub {
    my $res = $ng->put_snapshot($big, prefix => '/small-api/');
    is_json_error($res, 413, qr/portal_gate_api_max_body_size/, 'Content-Length');
};
small_in_force('413 with Content-Length');

subtest 'a chunked body over portal_gate_api_max_body_size gets a JSON 413' => sub {
    my $res = $ng->put_snapshot($big, prefix => '/small-api/', chunked => 1000);
    is_json_error($res, 413, qr/portal_gate_api_max_body_size/, 'chunked');
    # refused while it was read, not after the whole body was spooled
    ok(scalar $ng->log_lines(qr/client intended to send too large chunked body/),
       'nginx stopped reading the chunked body at the limit');
};
small_in_force('413 with a chunked body');

subtest 'an API location closed by deny answers 403 in JSON, not HTML' => sub {
    my $res = $ng->api('GET', 'status', undef, prefix => '/denied-api/');
    is_json_error($res, 403, qr/forbidden/, 'deny all');
    unlike($res->{content}, qr/<html>/i, 'no HTML page');
};

subtest 'limit_except in the API location: PUT still reaches the API' => sub {
    my $res = $ng->put_snapshot(padded_snapshot(1, 10), prefix => '/lan-api/');
    is($res->{status}, 409, 'an allowed PUT is answered by the API (409: not newer)');
    like($res->{headers}{'content-type'} // '', qr{^application/json},
         'in JSON');

    $res = $ng->put_snapshot(padded_snapshot(1, 10), prefix => '/ro-api/');
    is_json_error($res, 403, qr/forbidden/, 'a PUT denied by limit_except');
    is($ng->api('GET', 'status', undef, prefix => '/ro-api/')->{status}, 200,
       'GET is still open');
};
small_in_force('limit_except');

subtest 'a body of exactly portal_gate_api_max_body_size is read, one byte more is 413' => sub {
    my $json = encode_json({revision => 1, environments => {}});
    my $exact = $json . (' ' x (4096 - length $json));
    is(length $exact, 4096, 'the body is 4096 bytes');
    my $res = $ng->put_snapshot($exact, prefix => '/small-api/');
    is($res->{status}, 409, '4096 bytes: read and judged (409: revision 1 is not newer)')
        or diag($res->{content});
    $res = $ng->put_snapshot("$exact ", prefix => '/small-api/');
    is_json_error($res, 413, qr/portal_gate_api_max_body_size/, '4097 bytes');
};

subtest 'a chunked body under the limit is applied' => sub {
    my $body = padded_snapshot(2, 2 * 1024);
    cmp_ok(length $body, '<', 4096, 'the body is under 4k');
    my $res = $ng->put_snapshot($body, prefix => '/small-api/', chunked => 100);
    is($res->{status}, 200, 'status 200') or diag($res->{content});
    is($ng->evaluate(flag => 'customer_portal', company => 'pad-000001')
          ->{reason}, 'allowed', 'a company from the chunked body is allowed');
};

# ---- a large snapshot: over nginx's default 1m client_max_body_size and
# its 16k client_body_buffer_size, so it is read from a temp file

my @hundred_k = map { sprintf 'company-%06d', $_ } 1 .. 100_000;

sub large_snapshot {
    my ($revision, @extra) = @_;
    return encode_json({revision => $revision, environments => {
        production => { customer_portal => { rollout => 0,
                                             allow => [@hundred_k, @extra] } } }});
}

subtest 'a 100,000-company snapshot (~1.7 MB) is accepted by a 4m zone' => sub {
    my $body = large_snapshot(10);
    cmp_ok(length $body, '>', 1024 * 1024, 'the body is over 1 MB');
    my $res = $ng->put_snapshot($body);
    is($res->{status}, 200, 'status 200') or diag($res->{content});
    is($ng->status->{revision}, 10, 'revision 10 applied');
};

subtest 'the gate sees companies from the large snapshot' => sub {
    for my $c ('company-000001', 'company-054321', 'company-100000') {
        my $r = $ng->get('/portal/', company => $c);
        is($r->{status}, 200, "$c gets the portal");
        is($r->{headers}{'x-reason'}, 'allowed', "$c is allowed");
    }
    is($ng->get('/portal/', company => 'company-100001')->{status}, 404,
       'a company not in the list is off');
};

subtest 'a second large snapshot, sent chunked, replaces the first in the same 4m zone' => sub {
    my $res = $ng->put_snapshot(large_snapshot(11), chunked => 65536);
    is($res->{status}, 200, 'status 200') or diag($res->{content});
    is($ng->status->{revision}, 11, 'revision 11 applied');
};

subtest 'an allow list of 100,001 companies is refused with 400' => sub {
    my $res = $ng->put_snapshot(large_snapshot(12, 'one-too-many'));
    is_json_error($res, 400, qr/at most 100000/, '100,001 ids');
    is($ng->status->{revision}, 11, 'revision 11 stays');
    is($ng->get('/portal/', company => 'company-000002')->{status}, 200,
       'the gate still serves revision 11');
};

$ng->no_bad_log_lines('happy paths and 413/400 log no [crit], [alert] or [emerg]');

# ---- 507: a snapshot larger than the zone

my $tiny = PortalGate::Test->new(zone => '64k', server => $portal);
$tiny->start;

is($tiny->put_snapshot($small)->{status}, 200,
   '64k zone: a small snapshot is applied');

subtest 'a snapshot too large for the zone gets a JSON 507' => sub {
    my @ids = map { sprintf 'big-%05d', $_ } 1 .. 20_000;
    my $res = $tiny->put_snapshot({revision => 2, environments => {
        production => { customer_portal => { allow => \@ids } } }});
    is_json_error($res, 507, qr/zone/, '20,000 ids in 64k');
};

subtest '507: the previous snapshot stays in force' => sub {
    is($tiny->status->{revision}, 1, 'revision 1');
    is($tiny->get('/portal/', company => '12')->{status}, 200,
       'company 12 still gets the portal');
    is($tiny->get('/portal/', company => 'big-00001')->{status}, 404,
       'a company of the refused snapshot is off');
    my $res = $tiny->put_snapshot({revision => 3, environments => {
        production => { customer_portal => { allow => ['12', '13'] } } }});
    is($res->{status}, 200, 'a small snapshot still applies afterwards');
};

subtest '507 is not logged by the slab allocator' => sub {
    my @lines = $tiny->log_lines(qr/ngx_slab_alloc\(\) failed|\[crit\]|\[emerg\]/);
    is_deeply(\@lines, [], 'no slab allocator or [crit] line');
};

subtest 'after 507, a reload with a bigger zone keeps the state and takes the snapshot' => sub {
    $tiny->reload(zone => '4m');
    my $s = $tiny->status;
    is($s->{zone}{size}, 4 * 1024 * 1024, 'the zone is now 4m');
    is($s->{revision}, 3, 'revision 3 restored from the state file');
    is($tiny->get('/portal/', company => '13')->{status}, 200,
       'company 13 gets the portal');

    my @ids = map { sprintf 'big-%05d', $_ } 1 .. 20_000;
    my $res = $tiny->put_snapshot({revision => 4, environments => {
        production => { customer_portal => { allow => \@ids } } }});
    is($res->{status}, 200, 'the 20,000-id snapshot now fits')
        or diag($res->{content});
    is($tiny->get('/portal/', company => 'big-20000')->{status}, 200,
       'a company of it gets the portal');
};

subtest 'a reload to a zone too small for the snapshot is refused' => sub {
    my %old = map { $_ => 1 } $tiny->workers;
    $tiny->{zone} = '64k';
    $tiny->_write_conf;
    kill 'HUP', $tiny->pid;
    my $deadline = time + 10 * ($ENV{PG_TEST_SLOW} // 1);
    until ($tiny->log_lines(qr/cannot hold the current/) || time > $deadline) {
        select undef, undef, undef, 0.05;
    }
    ok(scalar $tiny->log_lines(qr/\[emerg\].*zone "\w+" of 65536 bytes cannot hold the current \d+-byte snapshot/),
       '[emerg] says the new zone cannot hold the snapshot') or diag($tiny->error_log);
    select undef, undef, undef, 0.3;
    is_deeply([sort $tiny->workers], [sort keys %old], 'the old workers serve on');
    is($tiny->status->{revision}, 4, 'revision 4 is still in force');
    is($tiny->get('/portal/', company => 'big-20000')->{status}, 200,
       'big-20000 still gets the portal');
};

subtest 'a restart with a zone too small for the state file starts empty, with a warning' => sub {
    $tiny->restart(zone => '64k');
    my @warn = $tiny->log_lines(qr/\[warn\].*too small for the \d+-byte snapshot/);
    is(scalar @warn, 1, '[warn] names the snapshot that does not fit')
        or diag($tiny->error_log);
    is($tiny->status->{revision}, 0, 'revision 0');
    is($tiny->get('/portal/', company => 'big-20000')->{status}, 404,
       'the gate is off (unknown flag)');
};

done_testing;
