# kill --direct and release count only the module's own answers: a wrong
# --edge path that answers 200 {"ok":true} is no kill, a 404 with some JSON
# is not "held none"; an override the edge could not write to its state
# file is said NOT PERSISTED, exit 1; a kill of a flag no edge knows takes
# its overrides back; against a flushed Redis the store step names
# `init --from-edge`; release says when the audit entry is written but the
# flag cannot be read. Real redis-server, a real nginx edge with a state
# file (and, beside its API, locations that answer like a wrong path), the
# real portal-gated.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use PortalGate::Gated qw(wait_until);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $A = PortalGate::Test->new(workers => 2, server => <<'CONF');
        location /portal/ { portal_gate customer_portal;
                            add_header X-Reason $portal_gate_reason always;
                            return 200 "portal v2\n"; }
        location /wrong/ { default_type application/json;
                           return 200 '{"ok":true}'; }
        location /gone/ { default_type application/json;
                          return 404 '{"error":"not here"}'; }
CONF
$A->start;
my $a_url = 'http://127.0.0.1:' . $A->port . '/portal-gate/';
my $wrong = 'http://127.0.0.1:' . $A->port . '/wrong/';
my $gone = 'http://127.0.0.1:' . $A->port . '/gone/';

my $rs = PortalGate::Redis->new;
my $gd = PortalGate::Gated->new(redis => $rs->url, edges => [$a_url],
                                environments => [qw(production staging)]);
my @c = ('-c', $gd->conf_path);

sub ctl { $rs->ctl(@_) }

sub served { $A->get('/portal/', company => '42')->{status} }

exits(ctl('init'), 0, 'init');
exits(ctl('create', 'customer_portal'), 0, 'create');
exits(ctl('rollout', 'customer_portal', '100'), 0, 'rollout 100');
$gd->start;
ok(wait_until(sub { $A->status->{revision} == $rs->cli('GET', 'portal-gate:revision') }, 10),
   'portal-gated has pushed the store') or diag($gd->log);
is(served(), 200, 'the portal is on');

subtest 'a 200 that is not the module\'s answer is no kill' => sub {
    my $r = ctl('--edge', $wrong, 'kill', 'customer_portal', '--direct');
    exits($r, 1, 'kill --direct to a wrong path');
    unlike($r->{out}, qr/^KILLED/m, 'does not say KILLED');
    like($r->{out}, qr/\Q$wrong\E\s+NOT CONFIRMED: not a portal_gate API answer/,
         'says the answer is not the API\'s');
    like($r->{err}, qr/not every edge confirmed the kill: \Q$wrong\E/,
         'names the edge on stderr');
    is_deeply($A->status->{overrides}, [], 'the edge holds no override indeed');

    $r = ctl('--edge', $wrong, '--edge', $gone, 'release', 'customer_portal');
    exits($r, 1, 'release to wrong paths');
    like($r->{out}, qr/\Q$wrong\E\s+NOT RELEASED: not a portal_gate API answer \(DELETE overrides answered 200\)/,
         'a 200 is not "released"');
    like($r->{out}, qr/\Q$gone\E\s+NOT RELEASED: not a portal_gate API answer \(DELETE overrides answered 404\)/,
         'a 404 with some JSON is not "held none"');
    like($r->{out}, qr/on 0 of 2 edges \(0 held none\)/, 'counts neither');
    exits(ctl('on', 'customer_portal'), 0, 'on (the store had the kill)');
};

subtest 'an override the edge could not persist is said so, exit 1' => sub {
    my $state = $A->dir . '/state';
    chmod 0555, $state or die "chmod: $!";     # the workers cannot write
    my $r = ctl('--edge', $a_url, 'kill', 'customer_portal', '--direct');
    exits($r, 1, 'kill --direct');
    like($r->{out}, qr/\Q$a_url\E\s+off: override set, NOT PERSISTED: lost when the edge restarts/,
         'says the override is not persisted');
    like($r->{err}, qr/1 edge could not write the override to its state file: customer_portal off until it restarts/,
         'and why that matters');
    is(scalar @{ $A->status->{overrides} }, 1, 'the edge holds the override');

    my $s = ctl('--edge', $a_url, 'status');
    exits($s, 1, 'status: a problem');
    like($s->{out}, qr/\Q$a_url\E cannot write its state file/,
         'names the state file');

    $r = ctl('--edge', $a_url, 'release', 'customer_portal');
    exits($r, 1, 'release');
    like($r->{out}, qr/\Q$a_url\E\s+released, NOT PERSISTED: the override is back when the edge restarts/,
         'says the release is not persisted');
    is_deeply($A->status->{overrides}, [], 'the edge holds no override');

    chmod 0755, $state or die "chmod: $!";
    $r = ctl('--edge', $a_url, 'kill', 'customer_portal', '--direct');
    exits($r, 0, 'with the state file writable again: exit 0');
    unlike($r->{out}, qr/NOT PERSISTED/, 'persisted');
    exits(ctl('--edge', $a_url, 'release', 'customer_portal'), 0, 'release');
    exits(ctl('on', 'customer_portal'), 0, 'on');
};

subtest 'a kill of a flag no edge knows takes its overrides back' => sub {
    my $r = ctl(@c, 'kill', 'customer_portal_typo', '--direct');
    exits($r, 1, 'a flag no edge knows');
    like($r->{err}, qr/no edge knows flag "customer_portal_typo" in production: .*the overrides it set were taken back/,
         'says the overrides were taken back');
    is_deeply($A->status->{overrides}, [], 'the edge holds none');
};

subtest 'release: in the audit log, the flag unreadable, said apart' => sub {
    $rs->cli('HSET', 'portal-gate:flags:production', 'broken', '{broken');
    my $r = ctl(@c, 'release', 'broken');
    exits($r, 0, 'release');
    like($r->{err}, qr/warning: in the audit log, but what the store says of broken is unknown/,
         'says the entry is in the audit log');
    unlike($r->{err}, qr/not in the audit log/, 'does not say it is not');
    # portal-gated may add its own entry after it: the value written by
    # hand becomes a revision of its own (action "revision", t/113)
    my @a = grep { $_->{action} eq 'release' }
            @{ decode_json(ctl('audit', '--json', '--count', '5')->{out}) };
    is($a[0]{flag} // '', 'broken', 'it is there: the latest release');
    $rs->cli('HDEL', 'portal-gate:flags:production', 'broken');
};

subtest 'kill --direct against a flushed Redis names init --from-edge' => sub {
    $rs->cli('FLUSHDB');
    my $r = ctl(@c, 'kill', 'customer_portal', '--direct');
    like($r->{out}, qr/^KILLED customer_portal in production on every edge/m,
         'the edge holds the kill');
    like($r->{err}, qr/the store was not changed: the store at \S+ \(prefix "portal-gate:"\) is not initialised: .*portal-gatectl init --from-edge URL/,
         'the store step names init --from-edge');
    unlike($r->{err}, qr/create makes it/, 'not create');
    exits($r, 0, 'exit 0: every edge confirmed');
    exits(ctl(@c, 'release', 'customer_portal'), 0, 'release');
};

done_testing;
