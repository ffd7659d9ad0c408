# The zone and the state file: what survives a reload, a restart and a zone
# size change, and how a missing, corrupt or unwritable state file is met.

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

my $ng = PortalGate::Test->new(server => $portal, zone => '4m');

sub snapshot_rev {
    my ($revision, @allow) = @_;
    return {revision => $revision, environments => {
        production => { customer_portal => { rollout => 0, allow => \@allow } } }};
}

sub portal_status {
    my ($inst, $company) = @_;
    return $inst->get('/portal/', company => $company)->{status};
}

sub read_state {
    my ($inst) = @_;
    open my $fh, '<', $inst->state_file or return undef;
    local $/;
    return eval { decode_json(scalar <$fh>) };
}

subtest 'a first start without a state file logs a notice and starts empty' => sub {
    ok(!-e $ng->state_file, 'no state file yet');
    $ng->start;
    my @notice = $ng->log_lines(qr/\[notice\].*does not exist yet/);
    is(scalar @notice, 1, '[notice] "does not exist yet" logged once')
        or diag($ng->error_log);
    like($notice[0] // '', qr/\Q${\ $ng->state_file }\E/, 'naming the file');
    my $s = $ng->status;
    is($s->{revision}, 0, 'revision 0');
    ok(!$s->{restored_from_state}, 'not restored');
};

subtest 'an accepted PUT writes the state file' => sub {
    is($ng->put_snapshot(snapshot_rev(3, '12'))->{status}, 200, 'revision 3 applied');
    my $state = read_state($ng);
    ok($state, 'the state file is JSON');
    is($state->{revision}, 3, 'holding revision 3');
    is_deeply($state->{environments}{production}{customer_portal}{allow},
              ['12'], 'holding the allow list');
    is(portal_status($ng, '12'), 200, 'company 12 gets the portal');
};

subtest 'the zone survives a reload (HUP) without reading the state file' => sub {
    my $gen = $ng->status->{generation};
    # hide the state file: whatever serves after the reload is the zone's
    rename $ng->state_file, $ng->state_file . '.hidden' or die $!;
    my @old = $ng->workers;
    $ng->reload;
    my @new = $ng->workers;
    ok(!grep({ my $o = $_; grep { $_ == $o } @new } @old), 'new workers run');
    my $s = $ng->status;
    is($s->{revision}, 3, 'revision 3 kept');
    is($s->{generation}, $gen, 'generation kept');
    ok(!$s->{restored_from_state}, 'not restored from the state file');
    is(portal_status($ng, '12'), 200, 'company 12 still gets the portal');
    rename $ng->state_file . '.hidden', $ng->state_file or die $!;
};

subtest 'a restart restores the snapshot from the state file' => sub {
    $ng->restart;
    my $s = $ng->status;
    is($s->{revision}, 3, 'revision 3 restored');
    ok($s->{restored_from_state}, 'restored_from_state is true');
    is(portal_status($ng, '12'), 200, 'company 12 gets the portal');
    is(portal_status($ng, '13'), 404, 'company 13 does not');
    ok(scalar $ng->log_lines(qr/restored revision 3/),
       'the restore is logged');
};

subtest 'a reload that changes the zone size carries the snapshot over' => sub {
    is($ng->put_snapshot(snapshot_rev(4, '12', '13'))->{status}, 200,
       'revision 4 applied');
    # hide the state file: the fresh zone must be filled from the old one
    rename $ng->state_file, $ng->state_file . '.hidden' or die $!;
    $ng->reload(zone => '8m');
    rename $ng->state_file . '.hidden', $ng->state_file or die $!;
    my $s = $ng->status;
    is($s->{zone}{size}, 8 * 1024 * 1024, 'the zone is now 8m');
    is($s->{revision}, 4, 'revision 4 kept');
    is(portal_status($ng, '13'), 200, 'company 13 gets the portal');
    ok(scalar $ng->log_lines(
           qr/\[notice\].*zone "\w+" resized to 8388608 bytes, revision 4 carried over/),
       'the resize is logged at notice');
};

subtest 'a zone resized without a state file keeps its snapshot' => sub {
    my $plain = PortalGate::Test->new(state => 0, server => <<'CONF');
        location /portal/ { portal_gate customer_portal;
                            return 200 "portal v2\n"; }
CONF
    $plain->start;
    is($plain->put_snapshot(snapshot_rev(3, '12'))->{status}, 200,
       'revision 3 applied');
    $plain->reload(zone => '8m');
    is($plain->status->{revision}, 3, 'revision 3 kept after 4m -> 8m');
    is(portal_status($plain, '12'), 200, 'company 12 still gets the portal');
    $plain->no_bad_log_lines;
    $plain->stop;
};

subtest 'after the resize, a restart restores from the state file' => sub {
    $ng->restart;
    my $s = $ng->status;
    is($s->{revision}, 4, 'revision 4 after a restart');
    ok($s->{restored_from_state}, 'restored_from_state is true');
};

subtest 'a PUT after the zone change applies as usual' => sub {
    is($ng->put_snapshot(snapshot_rev(5, '14'))->{status}, 200, 'revision 5 applied');
    is(portal_status($ng, '14'), 200, 'company 14 gets the portal');
    is(portal_status($ng, '13'), 404, 'company 13 no longer does');
    is(read_state($ng)->{revision}, 5, 'the state file holds revision 5');
};

$ng->no_bad_log_lines('reload, restart and resize log no [crit], [alert] or [emerg]');

subtest 'a corrupt state file: nginx starts empty with a warning' => sub {
    $ng->stop;
    open my $fh, '>', $ng->state_file or die $!;
    print {$fh} '{"revision": 9, "environments": {"production": ';
    close $fh;

    $ng->start;
    my @warn = $ng->log_lines(qr/\[warn\].*is corrupt/);
    is(scalar @warn, 1, '[warn] "is corrupt" logged') or diag($ng->error_log);
    my $s = $ng->status;
    is($s->{revision}, 0, 'revision 0');
    ok(!$s->{restored_from_state}, 'not restored');
    my $r = $ng->get('/portal/', company => '14');
    is($r->{status}, 404, 'company 14 is off');
    is($r->{headers}{'x-reason'}, 'unknown', 'the flag is unknown');
};

subtest 'after a corrupt state file a PUT applies and rewrites it' => sub {
    is($ng->put_snapshot(snapshot_rev(1, '15'))->{status}, 200,
       'revision 1 applied');
    is(portal_status($ng, '15'), 200, 'company 15 gets the portal');
    is(read_state($ng)->{revision}, 1, 'the state file is valid again');

    # nothing lost on bad input: the unreadable file is kept for a look
    my $kept = -e $ng->state_file . '.corrupt'
        && do { open my $k, '<', $ng->state_file . '.corrupt'; local $/; <$k> };
    is($kept, '{"revision": 9, "environments": {"production": ',
       'the corrupt file is kept as state.json.corrupt, byte for byte');
    ok(scalar $ng->log_lines(qr/\[notice\].*corrupt state file is kept as/),
       'and the log says where');
};

subtest 'a corrupt state file is still kept after a zone resize' => sub {
    $ng->stop;
    unlink $ng->state_file . '.corrupt';
    open my $fh, '>', $ng->state_file or die $!;
    print {$fh} 'not json at all';
    close $fh;

    $ng->start;
    $ng->reload(zone => '6m');
    is($ng->status->{zone}{size}, 6 * 1024 * 1024, 'the zone is now 6m');
    is($ng->put_snapshot(snapshot_rev(2, '16'))->{status}, 200,
       'revision 2 applied');
    my $kept = -e $ng->state_file . '.corrupt'
        && do { open my $k, '<', $ng->state_file . '.corrupt'; local $/; <$k> };
    is($kept, 'not json at all', 'the corrupt file was kept, not overwritten');
};

subtest 'a state file that is valid JSON but not a snapshot is corrupt' => sub {
    $ng->stop;
    open my $fh, '>', $ng->state_file or die $!;
    print {$fh} '{"revision": 7, "environments": {"production": {"f": {"rolout": 1}}}}';
    close $fh;
    my $warnings = () = $ng->log_lines(qr/\[warn\].*is corrupt/);
    $ng->start;
    my $now = () = $ng->log_lines(qr/\[warn\].*is corrupt/);
    is($now, $warnings + 1, '[warn] "is corrupt" logged');
    is($ng->status->{revision}, 0, 'revision 0');
};
$ng->stop;

subtest 'an unwritable state folder: PUT applies, status reports the failure' => sub {
    plan skip_all => 'needs root (workers then run as nobody)' if $> != 0;
    my $inst = PortalGate::Test->new(server => $portal);
    my $dir = $inst->dir . '/state';
    chown 0, 0, $dir or die $!;
    chmod 0755, $dir or die $!;
    $inst->start;

    my $res = $inst->put_snapshot(snapshot_rev(2, '12'));
    is($res->{status}, 200, 'the PUT is applied');
    is(portal_status($inst, '12'), 200, 'company 12 gets the portal');
    my $s = $inst->status;
    ok(!$s->{state_file}{ok}, 'state_file.ok is false');
    like($s->{state_file}{error} // '', qr/\Q$dir\E/, 'the error names the file');
    ok(!-e $inst->state_file, 'no state file');
    ok(scalar $inst->log_lines(qr/\[error\].*state file not written/),
       'logged at [error]') or diag($inst->error_log);
    $inst->stop;
};

subtest 'without state= nothing survives a restart' => sub {
    my $inst = PortalGate::Test->new(server => $portal, state => 0);
    $inst->start;
    my $s = $inst->status;
    is($s->{state_file}{path}, undef, 'state_file.path is null');
    is($inst->put_snapshot(snapshot_rev(2, '12'))->{status}, 200, 'PUT applied');
    $inst->restart;
    is($inst->status->{revision}, 0, 'revision 0 after the restart');
    $inst->no_bad_log_lines;
    $inst->stop;
};

subtest 'nginx -t does not write the state file' => sub {
    my ($rc, $out, $dir) = PortalGate::Test::nginx_t(
        'portal_gate_zone zone=pg:1m state=%%DIR%%/state/state.json;');
    is($rc, 0, 'nginx -t passes') or diag($out);
    ok(!-e "$dir/state/state.json", 'no state file written');
    my @files = glob "$dir/state/*";
    is_deeply(\@files, [], 'nothing written in the state folder');
};

done_testing;
