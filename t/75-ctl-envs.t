# portal-gatectl and the store's environments (P"environments",
# include/pg_store.h): init records them, env list and env add, a write to
# an environment the store does not have is refused with the closest name,
# and a store made before the key keeps the environments it had. Real
# redis-server; one real nginx edge for init --from-edge.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $rs = PortalGate::Redis->new;

sub ctl { $rs->ctl(@_) }

sub revision { $rs->cli('GET', ($_[0] // 'portal-gate:') . 'revision') }

sub envs_of {
    my ($p) = @_;
    my %h = split /\n/, $rs->cli('HGETALL', ($p // 'portal-gate:')
                                             . 'environments');
    return \%h;
}

subtest 'init records production and staging' => sub {
    my $r = ctl('init');
    exits($r, 0, 'init');
    like($r->{out}, qr/with the environments production, staging$/m,
         'says which');
    my $envs = envs_of();
    is_deeply([sort keys %$envs], [qw(production staging)], 'in the store');
    my $v = decode_json($envs->{production});
    is($v->{created_by}, 'tester', 'who');
    like($v->{created_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'when');

    $r = ctl('env', 'list');
    exits($r, 0, 'env list');
    like($r->{out}, qr/^production\s+0\s+\S+Z\s+tester$/m, 'production');
    like($r->{out}, qr/^staging\s+0\s+\S+Z\s+tester$/m, 'staging');
    my $j = decode_json(ctl('env', 'list', '--json')->{out});
    is_deeply([sort keys %$j], [qw(production staging)], '--json');
};

subtest "init records the environments of -c's config" => sub {
    my $dir = $rs->{dir};
    open my $fh, '>', "$dir/gated.conf" or die $!;
    print {$fh} "environments production eu_prod qa;\nedge http://127.0.0.1:1/x/;\n";
    close $fh;
    my $r = ctl('-c', "$dir/gated.conf", '-p', 'conf:', 'init');
    exits($r, 0, 'init -c');
    like($r->{out}, qr/with the environments production, eu_prod, qa \(from -c's config\)/,
         'says which, and whence');
    is_deeply([sort keys %{ envs_of('conf:') }], [qw(eu_prod production qa)],
              'those, and not staging');
    $r = ctl('-p', 'conf:', '-e', 'staging', 'create', 'x');
    exits($r, 1, 'staging is not one of them');
};

exits(ctl('create', 'customer_portal'), 0, 'create');

subtest 'a write to an environment the store does not have is refused, with the closest name' => sub {
    my $rev = revision();
    for my $args (['create', 'customer_portal'], ['on', 'customer_portal'],
                  ['kill', 'customer_portal'],
                  ['allow', 'customer_portal', '1001'],
                  ['set', 'customer_portal', 'description=x'],
                  ['delete', 'customer_portal']) {
        my $r = ctl('-e', 'prodution', @$args);
        exits($r, 1, "-e prodution @$args");
        is($r->{err}, "portal-gatectl: no environment \"prodution\" in the store; did you mean \"production\"? (portal-gatectl env list)\n",
           "@$args: says so, in one line, with the closest name");
    }
    my $r = ctl('-e', 'zzz', 'create', 'x');
    exits($r, 1, 'a name close to none');
    like($r->{err}, qr/no environment "zzz" in the store \(portal-gatectl env list; `portal-gatectl env add zzz` adds it\)/,
         'says how to add it');
    is(revision(), $rev, 'nothing was written');
    is($rs->cli('EXISTS', 'portal-gate:flags:prodution'), '0', 'no such hash');
};

subtest 'a read of an environment the store does not have warns' => sub {
    my $r = ctl('-e', 'stagin', 'list');
    exits($r, 0, 'list');
    like($r->{err}, qr/warning: no environment "stagin" in the store; did you mean "staging"\?/,
         'says so on stderr');
};

subtest 'env add: validated, audited, published, and a no-op the second time' => sub {
    exits(ctl('env', 'add', 'Bad-Name'), 2, 'an invalid name');
    exits(ctl('env', 'add'), 2, 'no name');
    exits(ctl('env', 'remove', 'qa'), 2, 'an unknown subcommand');

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $rs->port) or die $!;
    print {$sock} "SUBSCRIBE portal-gate:changes\r\n";
    my $buf = '';
    sysread($sock, $buf, 4096) until $buf =~ /subscribe.*:1\r\n/s;

    my $rev = revision();
    my $r = ctl('--reason', 'the EU region', 'env', 'add', 'eu_prod');
    exits($r, 0, 'env add eu_prod');
    like($r->{out}, qr/added environment eu_prod \(revision @{[$rev + 1]}\)/,
         'says so, with the revision');
    is(revision(), $rev + 1, 'the revision is raised');

    my $msg = '';
    my $deadline = time + 10;
    while ($msg !~ /message\r\n.*\r\n\$\d+\r\n(\d+)\r\n/s && time < $deadline) {
        my $n = sysread($sock, my $chunk, 4096);
        last unless $n;
        $msg .= $chunk;
    }
    my ($published) = $msg =~ /message\r\n.*\r\n\$\d+\r\n(\d+)\r\n/s;
    is($published, $rev + 1, 'the change is published');

    my $a = decode_json(ctl('audit', '--json', '--count', '1')->{out})->[0];
    is_deeply([@$a{qw(action env flag reason actor)}],
              ['env', 'eu_prod', '', 'the EU region', 'tester'],
              'the audit entry');
    like(ctl('audit', '--count', '1')->{out}, qr/env +environment added/,
         'audit shows it');

    exits(ctl('-e', 'eu_prod', 'create', 'customer_portal'), 0,
          'a write to it now goes through');

    $r = ctl('env', 'add', 'eu_prod');
    exits($r, 0, 'env add again');
    like($r->{out}, qr/environment eu_prod is in the store already: nothing changed/,
         'says nothing changed');
    is(revision(), $rev + 2, 'and wrote nothing');
};

subtest 'a store made before the environments key keeps the environments it had' => sub {
    my $p = 'old:';
    exits(ctl('-p', $p, 'init'), 0, 'init');
    $rs->cli('DEL', "${p}environments");        # as a store of issue 7
    $rs->cli('HSET', "${p}flags:legacy", 'f', '{"enabled":true}');

    my $r = ctl('-p', $p, 'env', 'list');
    exits($r, 0, 'env list');
    like($r->{out}, qr/^legacy\s+1\s/m, 'the environment of its flags');
    like($r->{out}, qr/^production\s/m, 'production');
    like($r->{out}, qr/^staging\s/m, 'staging');
    like($r->{out}, qr/made before environments were recorded/, 'says why');

    exits(ctl('-p', $p, '-e', 'legacy', 'kill', 'f'), 0,
          'a write to one of its flags hashes');
    exits(ctl('-p', $p, '-e', 'staging', 'create', 'f'), 0,
          'to staging');
    $r = ctl('-p', $p, '-e', 'legacyy', 'create', 'f');
    exits($r, 1, 'to another');
    like($r->{err}, qr/did you mean "legacy"\?/, 'with the closest name');

    $r = ctl('-p', $p, 'env', 'add', 'dev');
    exits($r, 0, 'env add');
    is_deeply([sort keys %{ envs_of($p) }],
              [qw(dev legacy production staging)],
              'records the environments it had, and the new one');
    my $marker = $rs->cli('HGET', "${p}store", 'created_at');
    is(decode_json(envs_of($p)->{legacy})->{created_at}, $marker,
       'those as old as the store');
};

subtest 'init --from-edge records the environments of the snapshot' => sub {
    my $ng = PortalGate::Test->new;
    $ng->start;
    is($ng->put_snapshot({revision => 7, environments => {
        production => {customer_portal => {rollout => 5}},
        eu_prod => {customer_portal => {rollout => 5}}}})->{status}, 200,
       'an edge with production and eu_prod');
    my $r = ctl('-p', 'rebuilt:', 'init', '--from-edge',
                'http://127.0.0.1:' . $ng->port . '/portal-gate/');
    exits($r, 0, 'init --from-edge');
    is_deeply([sort keys %{ envs_of('rebuilt:') }],
              [qw(eu_prod production staging)],
              "the snapshot's environments, and production and staging");
    $ng->stop;
};

done_testing;
