# The zone per piece (issue 14, step 2): a patch of one flag replaces that
# flag's pieces and the index, never another flag's list; a worker copies
# the new index and the pieces it does not hold yet, not the whole
# snapshot. What a user sees: GET status's zone (pieces, index and
# snapshot bytes) and worker (what the answering worker's last refresh
# copied), and the gate's answers.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use PortalGate::Test qw(require_module);

require_module();

my $JSON = JSON::PP->new->canonical->utf8;

my $portal = <<'CONF';
        location /small/ { portal_gate small;
                           add_header X-Reason $portal_gate_reason always;
                           return 200 "small\n"; }
        location /big/   { portal_gate big;
                           add_header X-Reason $portal_gate_reason always;
                           return 200 "big\n"; }
CONF

# one worker: every status is the one worker's refresh
my $ng = PortalGate::Test->new(server => $portal, zone => '16m', workers => 1,
                               api_extra => 'portal_gate_api_max_body_size 4m;'
                                          . ' client_body_buffer_size 4m;');
$ng->start;

my @big = map { "c$_" } 1 .. 20000;

sub patch {
    my ($base, $revision, $envs) = @_;
    return $ng->api('PATCH', 'snapshot',
                    $JSON->encode({base_revision => $base,
                                   revision => $revision,
                                   environments => $envs}));
}

sub reason {
    my ($path, $company) = @_;
    my $res = $ng->get($path, company => $company);
    return "$res->{status} " . ($res->{headers}{'x-reason'} // '');
}

my ($before, $after);

subtest 'a PUT: every piece new, the worker copies them all' => sub {
    is($ng->put_snapshot({revision => 1, environments => {production => {
        big => {rollout => 0, allow => \@big, deny => ['c7']},
        small => {rollout => 0, allow => ['s1', 's2']},
        plain => {rollout => 50}}}})->{status}, 200, 'PUT revision 1');

    is(reason('/big/', 'c5'), '200 allowed', 'c5 is in big');
    $before = $ng->status;
    is($before->{zone}{pieces}, 3, 'status: 3 pieces (big allow and deny, '
                                 . 'small allow)');
    cmp_ok($before->{zone}{snapshot_bytes}, '>', 300_000,
           'status: the snapshot holds big\'s 20,000 ids');
    cmp_ok($before->{zone}{index_bytes}, '<', 2_000,
           'status: the index holds no list');
    is($before->{worker}{copied_pieces}, 3, 'the worker copied 3 pieces');
    is($before->{worker}{kept_pieces}, 0, 'and kept none');
    cmp_ok($before->{worker}{copied_bytes}, '>=',
           $before->{zone}{snapshot_bytes}, 'it copied the whole snapshot');
};

subtest 'a kill by PATCH: only the killed flag\'s piece is new' => sub {
    is(patch(1, 2, {production => {small => {enabled => JSON::PP::false,
                                             allow => ['s1', 's2']}}})
       ->{status}, 200, 'PATCH kills small');
    is(reason('/small/', 's1'), '404 killed', 's1: small is killed');
    $after = $ng->status;
    is($after->{revision}, 2, 'status: revision 2');
    is($after->{zone}{pieces}, 3, 'status: still 3 pieces');
    is($after->{worker}{copied_pieces}, 1, 'the worker copied 1 piece');
    is($after->{worker}{kept_pieces}, 2, 'and kept big\'s 2');
    cmp_ok($after->{worker}{copied_bytes}, '<', 4_000,
           'it copied a few kilobytes (the index and small\'s piece), not '
           . 'the snapshot');
    cmp_ok(abs($after->{zone}{used} - $before->{zone}{used}), '<', 64 * 1024,
           'the zone\'s use moved by less than 64k: big\'s pieces stayed');
    is(reason('/big/', 'c5'), '200 allowed', 'c5 is still in big');
    is(reason('/big/', 'c7'), '404 denied', 'c7 is still denied');
};

subtest 'a patch that deletes a flag frees its piece, keeps the others' => sub {
    is(patch(2, 3, {production => {small => undef}})->{status}, 200,
       'PATCH deletes small');
    my $st = $ng->status;
    is($st->{zone}{pieces}, 2, 'status: 2 pieces');
    is($st->{worker}{copied_pieces}, 0, 'the worker copied no piece');
    is($st->{worker}{kept_pieces}, 2, 'and kept big\'s 2');
    is(reason('/small/', 's1'), '404 unknown', 'small is unknown');
    is(reason('/big/', 'c20000'), '200 allowed', 'c20000 is in big');
};

subtest 'a patch of big itself makes its pieces new' => sub {
    is(patch(3, 4, {production => {big => {rollout => 0,
                                           allow => ['only']}}})->{status},
       200, 'PATCH replaces big');
    my $st = $ng->status;
    is($st->{zone}{pieces}, 1, 'status: 1 piece');
    is($st->{worker}{copied_pieces}, 1, 'the worker copied big\'s new piece');
    cmp_ok($st->{zone}{snapshot_bytes}, '<', 2_000,
           'the old lists are gone from the snapshot');
    is(reason('/big/', 'c5'), '404 rollout', 'c5 is no longer in big');
    is(reason('/big/', 'only'), '200 allowed', 'only is');
    is_deeply($ng->snapshot->{environments}{production}{big}{allow}, ['only'],
              'GET snapshot gives the patched list');
};

subtest 'after a reload the new workers copy every piece once' => sub {
    $ng->reload;
    my $st = $ng->status;
    is($st->{revision}, 4, 'revision 4 survives the reload');
    is($st->{worker}{copied_pieces}, 1, 'a new worker copies what it lacks');
    is(reason('/big/', 'only'), '200 allowed', 'and gates as before');
};

$ng->no_bad_log_lines;
$ng->stop;

done_testing;
