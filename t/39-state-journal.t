# The journal of patches beside the state file (issue 14, step 2): a patch
# appends its body to the journal instead of rewriting the state file; a
# restart replays the journal; a torn last record is ignored and said at
# warn; the journal is compacted into a new state file when it grows; a
# resizing reload, then a patch, then a restart gives the patched state.

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
        location /f/ { portal_gate f;
                       add_header X-Reason $portal_gate_reason always;
                       return 200 "f\n"; }
CONF

my $ng = PortalGate::Test->new(server => $portal, zone => '8m', workers => 2);
$ng->start;

my $rev = 1;

sub patch {
    my ($envs) = @_;
    my $res = $ng->api('PATCH', 'snapshot',
                       $JSON->encode({base_revision => $rev,
                                      revision => $rev + 1,
                                      environments => $envs}));
    $rev++ if $res->{status} == 200;
    return $res;
}

sub reason {
    my ($company) = @_;
    my $res = $ng->get('/f/', company => $company);
    return "$res->{status} " . ($res->{headers}{'x-reason'} // '');
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return undef;
    local $/;
    return scalar <$fh>;
}

sub state_json { return eval { decode_json(slurp($ng->state_file)) } }
sub journal    { return slurp($ng->state_file . '.journal') // '' }
sub records    { my @r = journal() =~ /^R \d{10} [0-9a-f]{8}$/mg; return scalar @r }

subtest 'a PUT writes the state file whole, and no journal yet' => sub {
    is($ng->put_snapshot({revision => 1, environments => {production => {
        f => {rollout => 0, allow => ['a1', 'a2']},
        g => {rollout => 100}}}})->{status}, 200, 'PUT revision 1');
    my $state = state_json();
    like($state->{journal} // '', qr/^[0-9a-f]{16}$/,
         'the state file names its journal');
    ok(!-e $ng->state_file . '.journal', 'no journal: no patch came yet');
    my $st = $ng->status->{state_file};
    is($st->{journal_records}, 0, 'status: no record');
    ok($st->{journal_current}, 'status: the journal is current');
};

subtest 'patches are records of the journal, the state file stays' => sub {
    is(patch({production => {f => {rollout => 0, allow => ['a1', 'b1']}}})
       ->{status}, 200, 'patch 1 -> 2');
    is(patch({production => {g => {enabled => JSON::PP::false}}})->{status},
       200, 'patch 2 -> 3');
    is(patch({production => {h => {rollout => 5}}})->{status}, 200,
       'patch 3 -> 4');
    is(state_json()->{revision}, 1, 'the state file still holds revision 1');
    like(journal(), qr/^PGJ1 \Q${\ state_json()->{journal} }\E\n/,
         'the first patch created the journal, naming the state file');
    is(records(), 3, 'the journal holds 3 records');
    is($ng->status->{state_file}{journal_records}, 3, 'status: 3 records');
    ok($ng->status->{state_file}{ok}, 'status: the state file is ok');
};

subtest 'a restart replays the journal' => sub {
    $ng->restart;
    my $st = $ng->status;
    is($st->{revision}, 4, 'revision 4 after the restart');
    ok($st->{restored_from_state}, 'restored from the state file');
    is(reason('b1'), '200 allowed', 'b1 is allowed, as patch 2 said');
    is(reason('a2'), '404 rollout', 'a2 is not, as patch 2 said');
    ok(scalar $ng->log_lines(qr/\[notice\].*replayed 3 journal records/),
       'the replay is logged at notice');
    ok($st->{state_file}{journal_current}, 'the journal is current again');
    is(patch({production => {h => undef}})->{status}, 200, 'patch 4 -> 5');
    is(records(), 4, 'and takes the next record');
};

subtest 'a torn last record is ignored, said at warn, and healed' => sub {
    $ng->stop;
    open my $fh, '>>', $ng->state_file . '.journal' or die "journal: $!";
    print $fh qq(R 0000000100 0000abcd\n{"base_revision":5,"rev);
    close $fh;
    $ng->start;

    my $st = $ng->status;
    is($st->{revision}, 5, 'revision 5: the torn record was never '
                          . 'acknowledged');
    ok(scalar $ng->log_lines(qr/\[warn\].*record 5 at byte \d+ is torn/),
       'the torn record is logged at warn');
    ok(!$st->{state_file}{journal_current},
       'the journal is not current: nothing is appended after a torn '
       . 'record');

    is(patch({production => {f => {rollout => 0, allow => ['c1']}}})
       ->{status}, 200, 'patch 5 -> 6');
    is(state_json()->{revision}, 6, 'which writes the state file whole');
    ok(!-e $ng->state_file . '.journal', 'and removes the journal');
    is(patch({production => {f => {rollout => 0, allow => ['c2']}}})
       ->{status}, 200, 'patch 6 -> 7');
    is(records(), 1, 'which is a record again');
};

subtest 'a growing journal is compacted into a new state file' => sub {
    my $text = 'x' x 1000;
    my $compacted = 0;
    my $patches = 0;

    while (!$compacted && $patches < 200) {
        is(patch({production => {f => {rollout => 0, allow => ['c2'],
                                       description => "$text $rev"}}})
           ->{status}, 200, "patch to $rev") or last;
        $patches++;
        $compacted = state_json()->{revision} == $rev;
    }

    ok($compacted, "compacted after $patches patches of 1 kB");
    cmp_ok($patches, '>', 20, 'not at every patch');
    ok(!-e $ng->state_file . '.journal', 'the journal is gone');
    is(patch({production => {f => {rollout => 0, allow => ['c3']}}})
       ->{status}, 200, "patch to $rev");
    is(records(), 1, 'and takes the next record');

    $ng->restart;
    is($ng->status->{revision}, $rev, "a restart gives revision $rev");
    is(reason('c3'), '200 allowed', 'c3 is allowed');
};

subtest 'a resizing reload, a patch, a restart' => sub {
    $ng->reload(zone => '16m');
    my $st = $ng->status;
    is($st->{revision}, $rev, 'the resized zone carries the snapshot');
    is($st->{zone}{size}, 16 * 1024 * 1024, 'in 16m');

    is(patch({production => {f => {rollout => 0, allow => ['d1']}}})
       ->{status}, 200, "patch to $rev");
    is(records() + (state_json()->{revision} == $rev ? 1 : 0), 1,
       'it is durable: a record, or the state file');

    $ng->restart;
    $st = $ng->status;
    is($st->{revision}, $rev, "a restart gives revision $rev");
    is(reason('d1'), '200 allowed', 'd1 is allowed');
    is(reason('c3'), '404 rollout', 'c3 no longer');
};

$ng->no_bad_log_lines;
$ng->stop;

done_testing;
