# PATCH snapshot where only gdb can take it: a worker held at a chosen
# point or made to fail (t/38-api-patch.t has the rest). Two patches made
# on one base never both apply, whatever the timing; a patch that fails
# for the edge's own reason (out of memory, a damaged zone) is a 500 said
# at alert, not the patch's 400, and changes nothing.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep time);
use PortalGate::Test qw(require_module);
use PortalGate::Gdb;

require_module();

plan skip_all => PortalGate::Gdb::unavailable()
    if PortalGate::Gdb::unavailable();

my $SLOW = $PortalGate::Test::SLOW;
my $JSON = JSON::PP->new->canonical->utf8;

my $portal = <<'CONF';
        location /portal/ { portal_gate customer_portal;
                            return 200 "portal v2\n"; }
CONF

sub patch_body {
    my ($base, $revision, $envs) = @_;
    return $JSON->encode({base_revision => $base, revision => $revision,
                          environments => $envs});
}

# gdb on the (one) worker: at the next call of $func, the first $alloc
# (calloc, malloc) in it returns NULL; returns once the breakpoint is set
sub fail_allocation {
    my ($ng, $func, $alloc, $log) = @_;
    my ($w) = $ng->workers;
    my $armed = $ng->dir . '/armed';
    unlink $armed;
    my $gdb = PortalGate::Gdb::run($w, $log,
        "break $func", "shell touch $armed",
        'continue', "tbreak $alloc", 'continue', 'finish',
        'set var $rax = 0', 'detach');
    my $deadline = time + 30 * $SLOW;
    sleep 0.05 until -e $armed || time > $deadline;
    return $gdb;
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar <$fh>;
}

# The zone's shared context, as gdb reads it in a worker (the module's
# debug information names the types).
my $SH = '((ngx_http_portal_gate_zone_ctx_t *) ((ngx_http_portal_gate_main_conf_t *) '
       . '((ngx_http_conf_ctx_t *) ngx_cycle->conf_ctx[ngx_http_module.index])'
       . '->main_conf[ngx_http_portal_gate_module.ctx_index])->shm_zone->data)->sh';


subtest 'two patches on one base: the one held before its swap gets 409, whatever the timing' => sub {
    # no reuseport: a connection goes to a worker that is not held
    my $ng = PortalGate::Test->new(server => $portal, workers => 2);
    $ng->start;
    is($ng->put_snapshot({revision => 200, environments => {production => {
        customer_portal => { rollout => 0 }, other => { rollout => 0 }}}})
       ->{status}, 200, 'revision 200');

    # A is built on 200 and held on the way into the swap
    my $g = PortalGate::Gdb::hold($ng, 'ngx_http_portal_gate_apply',
                                  $ng->workers);
    my $a = PortalGate::Gdb::api_bg($ng, 'A', 'PATCH', 'snapshot',
        patch_body(200, 202, {production => {
            customer_portal => { rollout => 100 }}}));
    my ($wa) = PortalGate::Gdb::wait_held($g, 1);
    ok($wa, 'patch A (200 -> 202) is held in its worker, built, before '
            . 'its swap')
        or return PortalGate::Gdb::kill_all($g);

    # B, on the same base, goes through the other worker
    my ($wb) = grep { $_ != $wa } $ng->workers;
    PortalGate::Gdb::release($g, $wb);
    my $b = PortalGate::Gdb::api_bg($ng, 'B', 'PATCH', 'snapshot',
        patch_body(200, 201, {production => {
            other => { rollout => 100 }}}));
    waitpid($b, 0);
    like(PortalGate::Gdb::answer($ng, 'B'), qr/^200 \{"revision":201\}/,
         'patch B (200 -> 201) applies meanwhile');
    is(PortalGate::Gdb::answer($ng, 'A'), '',
       'while A, held, is not answered yet');

    PortalGate::Gdb::release($g, $wa);
    waitpid($a, 0);
    my $answer = PortalGate::Gdb::answer($ng, 'A');
    like($answer, qr/^409 /, 'then A, built on 200, is refused with 409')
        or diag($answer);
    like($answer, qr/"revision":201/, "with the edge's revision, 201");
    like($answer, qr/base_revision 200 is not the edge's revision 201/,
         'saying why');

    my $snap = $ng->snapshot;
    is($snap->{revision}, 201, 'the edge is at 201');
    is($snap->{environments}{production}{other}{rollout}, 100,
       "with B's flag");
    is($snap->{environments}{production}{customer_portal}{rollout}, 0,
       "and not A's");
    PortalGate::Gdb::kill_all($g);
    $ng->no_bad_log_lines;
    $ng->stop;
};


subtest 'out of memory while a patch is built: 500 said at alert, nothing changes' => sub {
    my $ng = PortalGate::Test->new(server => $portal);
    $ng->start;
    is($ng->put_snapshot({revision => 5, environments => {production => {
        customer_portal => { rollout => 0, allow => ['12'] }}}})->{status},
       200, 'revision 5');
    my $before = $ng->api('GET', 'snapshot')->{content};

    # the first allocation inside pg_snap_build_patch() fails
    my $log = $ng->dir . '/gdb.log';
    my $gdb = fail_allocation($ng, 'pg_snap_build_patch', 'calloc', $log);

    my $body = patch_body(5, 6, {production => {
        customer_portal => { rollout => 0, allow => ['12', '57'] }}});
    my $res = $ng->api('PATCH', 'snapshot', $body, timeout => 60);
    PortalGate::Gdb::finish($gdb);
    like(slurp($log), qr/Value returned is/, 'gdb made an allocation fail')
        or diag(slurp($log));
    is($res->{status}, 500, 'the patch is answered 500: the edge failed')
        or diag($res->{content});
    like($res->{json}{error} // '',
         qr/^the edge failed, not the patch: .*out of memory.*; the snapshot is unchanged$/,
         'in JSON, saying so');
    is(scalar $ng->log_lines(
           qr/\[alert\].*zone "portal_gate": a patch could not be applied: .*out of memory/),
       1, 'said once in the error log, at alert');
    is(scalar $ng->log_lines(qr/patch refused/), 0,
       'and not as a refused patch');
    is($ng->api('GET', 'snapshot')->{content}, $before,
       'GET snapshot is unchanged');

    $res = $ng->api('PATCH', 'snapshot', $body);
    is($res->{status}, 200, 'the same patch sent again applies');
    is($ng->get('/portal/', company => '57')->{status}, 200,
       'company 57 gets the portal');
    $ng->stop;
};

subtest 'out of memory while a PUT is built: 500 said at alert, nothing changes' => sub {
    my $ng = PortalGate::Test->new(server => $portal);
    $ng->start;
    is($ng->put_snapshot({revision => 5, environments => {production => {
        customer_portal => { rollout => 0, allow => ['12'] }}}})->{status},
       200, 'revision 5');
    my $before = $ng->api('GET', 'snapshot')->{content};

    # the first allocation inside pg_snap_build_json() fails
    my $log = $ng->dir . '/gdb.log';
    my $gdb = fail_allocation($ng, 'pg_snap_build_json', 'calloc', $log);

    my $snap = {revision => 6, environments => {production => {
        customer_portal => { rollout => 0, allow => ['12', '57'] }}}};
    my $res = $ng->put_snapshot($snap, timeout => 60);
    PortalGate::Gdb::finish($gdb);
    like(slurp($log), qr/Value returned is/, 'gdb made an allocation fail')
        or diag(slurp($log));
    is($res->{status}, 500, 'the PUT is answered 500: the edge failed')
        or diag($res->{content});
    like($res->{json}{error} // '',
         qr/^the edge failed, not the snapshot: .*out of memory.*; the snapshot is unchanged$/,
         'in JSON, saying so');
    is(scalar $ng->log_lines(
           qr/\[alert\].*zone "portal_gate": a snapshot could not be applied: .*out of memory/),
       1, 'said once in the error log, at alert');
    is(scalar $ng->log_lines(qr/snapshot refused/), 0,
       'and not as a refused snapshot');
    is($ng->api('GET', 'snapshot')->{content}, $before,
       'GET snapshot is unchanged');
    is($ng->put_snapshot($snap)->{status}, 200, 'the same PUT sent again applies');
    $ng->stop;
};

subtest 'out of memory while the JSON is parsed: 500, for a PUT and a PATCH' => sub {
    my $ng = PortalGate::Test->new(server => $portal);
    $ng->start;
    is($ng->put_snapshot({revision => 5, environments => {production => {
        customer_portal => { rollout => 0, allow => ['12'] }}}})->{status},
       200, 'revision 5');

    # the first allocation inside json_loadb() fails (jansson then says
    # nothing in its error text)
    for my $method ('PUT', 'PATCH') {
        my $log = $ng->dir . "/gdb.$method.log";
        my $gdb = fail_allocation($ng, 'json_loadb', 'malloc', $log);
        my $res = $method eq 'PUT'
            ? $ng->put_snapshot({revision => 6, environments => {}},
                                timeout => 60)
            : $ng->api('PATCH', 'snapshot', patch_body(5, 6, {production => {
                  customer_portal => { rollout => 0 }}}), timeout => 60);
        PortalGate::Gdb::finish($gdb);
        like(slurp($log), qr/Value returned is/,
             "$method: gdb made an allocation fail") or diag(slurp($log));
        is($res->{status}, 500, "$method: answered 500, not 400")
            or diag($res->{content});
        like($res->{json}{error} // '', qr/^the edge failed, not the \S+: out of memory/,
             "$method: saying so");
    }
    is($ng->status->{revision}, 5, 'the edge is still at revision 5');
    $ng->stop;
};

subtest "a zone whose index does not check: a patch is 500 said at alert, a PUT heals" => sub {
    # one worker: it copied the snapshot before the damage, and serves on
    my $ng = PortalGate::Test->new(server => $portal);
    $ng->start;
    is($ng->put_snapshot({revision => 5, environments => {production => {
        customer_portal => { rollout => 0, allow => ['12'] }}}})->{status},
       200, 'revision 5');
    is($ng->get('/portal/', company => '12')->{status}, 200,
       'company 12 gets the portal');

    # gdb writes over the index's magic number, in the shared zone
    my ($w) = $ng->workers;
    my $log = $ng->dir . '/gdb.log';
    PortalGate::Gdb::finish(PortalGate::Gdb::run($w, $log,
        "print *(unsigned int *) $SH->index",
        "set var *(unsigned int *) $SH->index = 0",
        "print *(unsigned int *) $SH->index"));
    like(slurp($log), qr/^\$1 = 1314080592\n(?:.*\n)*\$2 = 0$/m,
         'gdb overwrote the magic number "PGSN" of the zone\'s index')
        or diag(slurp($log));

    my $res = $ng->api('PATCH', 'snapshot', patch_body(5, 6, {production => {
        other => { rollout => 100 }}}));
    is($res->{status}, 500, 'a good patch is answered 500: the edge failed')
        or diag($res->{content});
    like($res->{json}{error} // '',
         qr/^the edge failed, not the patch: snapshot blob has a bad magic 0x00000000; the snapshot is unchanged$/,
         'in JSON, saying why');
    is(scalar $ng->log_lines(
           qr/\[alert\].*zone "portal_gate": a patch could not be applied: snapshot blob has a bad magic/),
       1, 'said in the error log at alert');
    is(scalar $ng->log_lines(qr/patch refused/), 0,
       'and not as a refused patch');
    is($ng->status->{revision}, 5, 'the edge is still at revision 5');
    is($ng->get('/portal/', company => '12')->{status}, 200,
       "the worker's copy serves on");

    is($ng->put_snapshot({revision => 7, environments => {production => {
        customer_portal => { rollout => 0, allow => ['57'] }}}})->{status},
       200, 'a PUT of the whole snapshot replaces the index');
    is($ng->api('PATCH', 'snapshot', patch_body(7, 8, {production => {
        other => { rollout => 100 }}}))->{status}, 200,
       'and a patch on it applies');
    is($ng->get('/portal/', company => '57')->{status}, 200,
       'company 57 gets the portal');
    $ng->stop;
};

done_testing;
