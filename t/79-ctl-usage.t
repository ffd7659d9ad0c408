# portal-gatectl's small things (issue 8, item 5): --version; a bad option
# or bad usage is one line of error and a pointer to -h, exit 2; --wait N
# where it is unambiguous, a request for --wait=N where it is not; -c from
# $PORTAL_GATE_CONF; the audit actor from $SUDO_USER, $USER, then the login
# name of the uid; `require_reason` in portal-gated.conf; audit of an
# unknown flag; kill --wait without edges still kills. Real redis-server.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use PortalGate::Gated;
use PortalGate::Redis qw(exits);

my $rs = PortalGate::Redis->new;
my $dir = $rs->{dir};
my $dead = 'http://127.0.0.1:1/portal-gate/';

sub ctl { $rs->ctl(@_) }

sub revision { $rs->cli('GET', 'portal-gate:revision') + 0 }

sub write_conf {
    my ($name, $text) = @_;
    open my $fh, '>', "$dir/$name" or die $!;
    print {$fh} $text;
    close $fh;
    return "$dir/$name";
}

subtest '--version prints the version, the same as portal-gated' => sub {
    my $r = ctl('--version');
    exits($r, 0, '--version');
    like($r->{out}, qr/^portal-gatectl \d+\.\d+\.\d+\n\z/, 'one line');
    my ($mine) = $r->{out} =~ /^portal-gatectl (\S+)/;
    my $gd = PortalGate::Gated->new;
    my ($theirs) = $gd->run('--version')->{out} =~ /^portal-gated (\S+)/m;
    is($mine, $theirs, 'the same version as portal-gated');
    is(ctl('-V')->{out}, $r->{out}, '-V too');
};

subtest 'a bad option or usage is one line and a pointer to -h, exit 2' => sub {
    for my $case (
        [['--frobnicate', 'list'], qq{unknown option "--frobnicate"}],
        [['-q', 'list'], 'unknown option -q'],
        [['--re', 'x', 'list'], 'ambiguous option "--re": --redis, --reason, --requires, --replicas'],
        [['list', '--reason'], 'option --reason needs a value'],
        [['list', '-e'], 'option -e needs a value'],
        [['--json=yes', 'list'], 'option --json takes no value'],
        [[], 'no command given'],
        [['stauts'], 'unknown command "stauts" (did you mean "status"?)'],
        [['rollout', 'customer_portal'], 'usage: portal-gatectl rollout FLAG PCT'],
        [['set', 'customer_portal'], 'usage: portal-gatectl set FLAG KEY=VALUE...'],
    ) {
        my ($args, $msg) = @$case;
        my $r = ctl(@$args);
        exits($r, 2, "@$args");
        is($r->{err}, "portal-gatectl: $msg; see 'portal-gatectl -h'\n",
           "@$args: one line");
        is($r->{out}, '', "@$args: nothing on stdout");
    }
    my $h = ctl('-h');
    exits($h, 0, '-h');
    like($h->{out}, qr/^  release FLAG /m, '-h has the whole usage');
};

exits(ctl('init'), 0, 'init');
exits(ctl('create', 'customer_portal'), 0, 'create');

subtest '--wait N is taken where N cannot be an operand' => sub {
    my $rev = revision();
    my $r = ctl('kill', 'customer_portal', '--wait', '0.3', '--edge', $dead);
    exits($r, 1, 'kill F --wait 0.3: nobody pushes');
    like($r->{out}, qr/KILLED customer_portal/, 'the kill is made');
    like($r->{err}, qr/is not on every edge after 0\.3 s/, '0.3 s were the wait');
    $r = ctl('set', 'customer_portal', '--wait', '0.3', 'description=x',
             '--edge', $dead);
    exits($r, 1, 'set F --wait 0.3 KEY=VALUE');
    like($r->{err}, qr/after 0\.3 s/, 'a number is no KEY=VALUE');
    is(revision(), $rev + 2, 'both changes made');
};

subtest '--wait N where N could be an operand asks for --wait=N' => sub {
    my $rev = revision();
    for my $case (
        [['allow', 'customer_portal', '--wait', '5', '1001'],
         qq{"--wait 5" is ambiguous: allow takes company ids, which may be numbers; write --wait=5 for seconds}],
        [['unallow', 'customer_portal', '1001', '--wait', '5'],
         qq{"--wait 5" is ambiguous: unallow takes company ids, which may be numbers; write --wait=5 for seconds}],
        [['rollout', 'customer_portal', '--wait', '25'],
         qq{"--wait 25" is ambiguous after rollout: write --wait=25 for seconds}],
    ) {
        my ($args, $msg) = @$case;
        my $r = ctl(@$args, '--edge', $dead);
        exits($r, 2, "@$args");
        is($r->{err}, "portal-gatectl: $msg; see 'portal-gatectl -h'\n",
           "@$args: says to write --wait=N");
    }
    is(revision(), $rev, 'nothing was written');
    my $r = ctl('allow', 'customer_portal', '1001', '--wait=0.3', '--edge', $dead);
    exits($r, 1, 'allow F ID --wait=0.3');
    like($r->{err}, qr/after 0\.3 s/, 'works');
};

subtest 'kill --wait without edges still kills, then says it cannot wait' => sub {
    exits(ctl('on', 'customer_portal'), 0, 'on');
    my $rev = revision();
    my $r = ctl('kill', 'customer_portal', '--wait');
    exits($r, 1, 'kill --wait');
    like($r->{out}, qr/KILLED customer_portal/, 'the kill is made');
    like($r->{err}, qr/the change is made \(revision @{[$rev + 1]}\), but --wait has no edges to ask: give --edge URL or -c FILE/,
         'says why it cannot wait');
    $r = ctl('on', 'customer_portal', '--wait');
    exits($r, 2, 'any other change: refused before anything');
    is(revision(), $rev + 1, 'and not written');

    exits(ctl('on', 'customer_portal'), 0, 'on again');
    $r = ctl('off', 'customer_portal', '--wait');
    exits($r, 1, 'off --wait: off is a kill too');
    like($r->{err}, qr/the change is made \(revision @{[$rev + 3]}\), but --wait has no edges to ask/,
         'made, then says it cannot wait');
    is(revision(), $rev + 3, 'written');
};

subtest 'env list is a read: no --reason asked, an uninitialised store is no refusal' => sub {
    my $conf = write_conf('env-reason.conf', "redis " . $rs->url . ";\n"
                          . "require_reason env;\n");
    my $r = ctl('-c', $conf, 'env', 'list');
    exits($r, 0, 'env list under require_reason env');
    like($r->{out}, qr/production/, 'lists');
    exits(ctl('-c', $conf, 'env', 'add', 'qa'), 2,
          'env add still needs --reason');
    $r = ctl('-p', 'fresh', 'env', 'list');
    unlike($r->{err}, qr/Run `portal-gatectl init` to create/,
           'an uninitialised store: not refused as a write');
    like($r->{err}, qr/warning: the store at .* is not initialised/,
         'warned');
};

subtest '-c defaults to $PORTAL_GATE_CONF' => sub {
    my $conf = write_conf('env.conf', "redis " . $rs->url . ";\nedge $dead;\n");
    my $r = $rs->ctl_env({PORTAL_GATE_CONF => $conf, PORTAL_GATE_REDIS => ''},
                         'status');
    exits($r, 1, 'status');
    like($r->{out}, qr/\Q$dead\E\s+unreachable/, 'the edges of that file');
    like($r->{out}, qr/^store \Q@{[$rs->url]}\E/m, 'and its redis');
    $r = $rs->ctl_env({PORTAL_GATE_CONF => "$dir/missing.conf"}, 'list');
    exits($r, 2, 'a $PORTAL_GATE_CONF that does not exist');
    like($r->{err}, qr/cannot open \Q$dir\E\/missing\.conf/, 'says so');
  SKIP: {
        skip '/etc/portal-gate/portal-gated.conf exists here', 1
            if -e '/etc/portal-gate/portal-gated.conf';
        exits($rs->ctl_env({PORTAL_GATE_CONF => undef}, 'list'), 0,
              'unset, and no default file: no config');
    }
};

subtest 'the audit actor: $SUDO_USER, $USER, then the login name of the uid' => sub {
    exits($rs->ctl_env({SUDO_USER => 'alice', USER => 'root'}, 'allow',
                       'customer_portal', 'a1'), 0, 'with $SUDO_USER');
    my $a = decode_json(ctl('audit', '--json', '--count', '1')->{out})->[0];
    is($a->{actor}, 'alice', 'the actor is $SUDO_USER');

    exits($rs->ctl_env({SUDO_USER => undef, USER => undef}, 'allow',
                       'customer_portal', 'a2'), 0, 'with neither');
    $a = decode_json(ctl('audit', '--json', '--count', '1')->{out})->[0];
    is($a->{actor}, scalar getpwuid($<), 'the login name of the uid');
};

subtest 'require_reason in the config makes those commands ask for --reason' => sub {
    my $conf = write_conf('reason.conf', "redis " . $rs->url . ";\n"
                          . "edge $dead;\nrequire_reason kill off;\n");
    my $rev = revision();
    my $r = ctl('-c', $conf, 'kill', 'customer_portal');
    exits($r, 2, 'kill without --reason');
    is($r->{err}, "portal-gatectl: kill needs --reason TEXT: $conf:3 (require_reason) asks for one\n",
       'names the line that asks for it');
    exits(ctl('-c', $conf, 'kill', 'customer_portal', '--direct'), 2,
          'kill --direct too');
    is(revision(), $rev, 'nothing was written');
    exits(ctl('-c', $conf, '--reason', 'INC-5', 'kill', 'customer_portal'), 0,
          'with --reason');
    exits(ctl('-c', $conf, 'on', 'customer_portal'), 0,
          'a command it does not name');

    $conf = write_conf('bad.conf', "require_reason kill frobnicate;\n");
    $r = ctl('-c', $conf, 'list');
    exits($r, 2, 'an unknown command in require_reason');
    like($r->{err}, qr/bad\.conf:1: invalid value "frobnicate" in "require_reason": expected portal-gatectl's writing commands/,
         'says which');
    my $gd = PortalGate::Gated->new(redis => $rs->url, edges => [$dead],
                                    extra => "require_reason kill;\n");
    is($gd->run('-t', '-c', $gd->conf_path)->{exit}, 0,
       'portal-gated takes the line');
};

subtest 'audit of an unknown flag exits 1' => sub {
    my $r = ctl('audit', 'custmer_portal');
    exits($r, 1, 'audit of a typo');
    like($r->{err}, qr/no audit entry names flag "custmer_portal", and there is no flag "custmer_portal" in production; did you mean "customer_portal"\?/,
         'says so, with the closest flag');
    exits(ctl('audit', 'customer_portal'), 0, 'audit of a flag');
};

done_testing;
