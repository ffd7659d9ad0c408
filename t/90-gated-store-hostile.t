# What one environment's key or one hash field can do to the whole read of
# the store (review of portal-gated): a key of the wrong type in staging
# must not hold back a kill in production, and a field whose name only
# starts like a real flag's (it holds a NUL byte) must not stand in for
# it. Real redis-server, two real nginx edges.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Test::More;
use PortalGate::Gated qw(clean_exit wait_until two_edges wait_ticks);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $rs = PortalGate::Redis->new;
my $e = two_edges();
my ($A, $B) = @$e{qw(tcp unix)};
my @edges = ($A, $B);
my $P = 'portal-gate:';

my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [$e->{tcp_url}, $e->{unix_url}],
                                environments => [qw(production staging)]);

sub ctl { $rs->ctl(@_) }

sub store_revision { $rs->cli('GET', "${P}revision") + 0 }

sub answer {
    my ($ng, $env, $flag) = @_;
    my $a = $ng->evaluate(env => $env, flag => $flag // 'customer_portal',
                          company => '1001');
    return ($a->{decision} // '?') . '/' . ($a->{reason} // '?');
}

sub all_answer {
    my ($env, $want, $name, $flag) = @_;
    my $ok = wait_until(sub {
        !grep { answer($_, $env, $flag) ne $want } @edges });
    ok($ok, $name) or diag(join ', ', map {
        'edge ' . $_->port . ': ' . answer($_, $env, $flag) } @edges);
    return $ok;
}

sub both_at_store {
    my ($name) = @_;
    my $want = store_revision();
    ok(wait_until(sub { !grep { $_->status->{revision} != $want } @edges }),
       "$name: both edges at the store's revision $want");
}

# A Redis command as given, byte for byte (redis-cli cannot send a NUL in
# an argument): the raw reply.
sub resp {
    my @args = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $rs->port)
        or die "connect to redis: $!";
    print $s '*' . @args . "\r\n"
        . join('', map { '$' . length($_) . "\r\n$_\r\n" } @args);
    my $reply = '';
    $s->recv($reply, 65536);
    close $s;
    return $reply;
}

exits(ctl('init', '-c', $gd->conf_path), 0, 'init');
exits(ctl('create', 'customer_portal'), 0, 'create customer_portal');
exits(ctl('allow', 'customer_portal', '1001'), 0, 'allow 1001');
exits(ctl('-e', 'staging', 'create', 'customer_portal'), 0,
      'create customer_portal in staging');
exits(ctl('-e', 'staging', 'allow', 'customer_portal', '1001'), 0,
      'allow 1001 in staging');
$gd->start;
all_answer('production', 'on/allowed', 'on in production');
all_answer('staging', 'on/allowed', 'on in staging');

subtest 'a staging key of the wrong type does not hold back a kill in production' => sub {
    my $mark = $gd->mark;
    $rs->cli('DEL', "${P}flags:staging");
    $rs->cli('SET', "${P}flags:staging", 'oops');
    exits(ctl('kill', 'customer_portal'), 0, 'kill in production');
    all_answer('production', 'off/killed', 'the kill reaches both edges')
        or diag($gd->log($mark));
    both_at_store('after the kill');
    all_answer('staging', 'on/allowed',
               'staging keeps what the edges had of it');
    my $line = $gd->wait_log(qr/environment staging cannot/, 5, $mark);
    like($line // '', qr/\[error\].*environment staging.*WRONGTYPE.*the edges keep/,
         'the log names the environment, the error, and what the edges keep')
        or diag($gd->log($mark));
    unlike($gd->log($mark), qr/nothing is pushed/,
           'the log does not say that nothing is pushed');

    exits(ctl('on', 'customer_portal'), 0, 'on in production');
    all_answer('production', 'on/allowed', 'on again in production');
    ok(wait_ticks($B, 2), 'two more reconcile ticks');
    is($gd->count_log(qr/environment staging cannot/, $mark), 1,
       'said once');

    $mark = $gd->mark;
    $rs->cli('DEL', "${P}flags:staging");
    exits(ctl('-e', 'staging', 'create', 'customer_portal'), 0,
          'create customer_portal in staging again');
    exits(ctl('-e', 'staging', 'kill', 'customer_portal'), 0,
          'kill it in staging');
    all_answer('staging', 'off/killed', 'staging follows the store again');
    ok($gd->wait_log(qr/\[notice\].*environment staging can be read again/, 5,
                     $mark),
       'the log says staging is read again') or diag($gd->log($mark));
};

subtest 'a field "customer_portal\0x" does not stand in for customer_portal' => sub {
    all_answer('production', 'on/allowed', 'on in production before');
    my $mark = $gd->mark;
    like(resp('HSET', "${P}flags:production", "customer_portal\0x",
              '{"enabled":true,"allow":["1001"]}'), qr/^:1/,
         'HSET of a field with a NUL byte');
    exits(ctl('kill', 'customer_portal'), 0, 'kill customer_portal');
    all_answer('production', 'off/killed', 'the kill reaches both edges')
        or diag($gd->log($mark));
    both_at_store('after the kill');
    my $line = $gd->wait_log(qr/customer_portal\\0x|customer_portal.x"/, 5,
                             $mark);
    like($line // '', qr/\[error\].*not a name/,
         'the odd field is said to be no flag name') or diag($gd->log($mark));
    resp('HDEL', "${P}flags:production", "customer_portal\0x");
};

subtest 'portal-gatectl says a key written twice is one, not "not a JSON object"' => sub {
    $rs->cli('HSET', "${P}flags:production", 'dup',
             '{"enabled":true,"allow":["1"],"allow":["1"]}');
    for my $cmd (['show', 'dup'], ['on', 'dup']) {
        my $r = ctl(@$cmd);
        is($r->{exit}, 1, "$cmd->[0] dup: exit 1");
        like($r->{err}, qr/not valid JSON: duplicate object key/,
             "$cmd->[0] dup: names the duplicate key");
    }
    $rs->cli('HDEL', "${P}flags:production", 'dup');
};

clean_exit($gd->stop, $gd, 'SIGTERM at the end');
$_->no_bad_log_lines('edge ' . $_->port . ': no [crit], [alert] or [emerg] '
                     . 'in the error log') for @edges;

done_testing;
