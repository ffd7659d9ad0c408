# portal-gated's command line and config: -t, -h, --version, bad options
# (one line, exit 2), -c's default ($PORTAL_GATE_CONF, then
# /etc/portal-gate), bad configs (exit codes, FILE:LINE and the reason;
# edge URLs with a space, a query or a fragment), and SIGHUP: a new edge
# gets the snapshot, a broken config changes nothing, another Redis is
# read again. Here the reconcile interval is 1h and the store has its own
# prefix and db: every change must come through the prefixed pub/sub
# channel.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Gated qw(clean_exit wait_until two_edges);
use PortalGate::Redis qw(exits);
use PortalGate::Test qw(require_module);

require_module();

my $gd0 = PortalGate::Gated->new(edges => ['http://127.0.0.1:1/portal-gate/']);

sub conf_file {
    my ($name, $text) = @_;
    my $path = $gd0->dir . "/$name";
    open my $fh, '>', $path or die "cannot write $path: $!";
    print {$fh} $text;
    close $fh;
    return $path;
}

subtest '-t says a good config is ok' => sub {
    my $r = $gd0->run('-t', '-c', $gd0->conf_path);
    exits($r, 0, '-t');
    my $c = $gd0->conf_path;
    like($r->{err}, qr/the configuration file \Q$c\E syntax is ok/,
         'syntax is ok');
    like($r->{err}, qr/configuration file \Q$c\E test is successful/,
         'test is successful');
    ok(!-e $gd0->log_path, 'and it did not start');

    $r = $gd0->run('-t', '-c', "$FindBin::Bin/../conf-examples/portal-gated.conf");
    exits($r, 0, '-t on conf-examples/portal-gated.conf');
};

subtest 'a bad config exits 1 naming the file, the line and why' => sub {
    my $edge = "edge http://127.0.0.1:1/portal-gate/;\n";
    for my $case (
        ['unknown.conf', "# portal-gated\n${edge}edges http://x/;\n",
         qr/unknown\.conf:3: unknown directive "edges"/],
        ['redis.conf', "redis http://127.0.0.1:6379;\n$edge",
         qr/redis\.conf:1: invalid redis url "http:\/\/127\.0\.0\.1:6379": .*redis:\/\//],
        ['interval.conf', "${edge}reconcile_interval\n    10ms;\n",
         qr/interval\.conf:3: invalid value "10ms" in "reconcile_interval"/],
        ['semicolon.conf', "edge http://127.0.0.1:1/portal-gate/\n",
         qr/semicolon\.conf:1: .*expecting ";"/],
        ['edge.conf', "edge ftp://127.0.0.1/x/;\n",
         qr/edge\.conf:1: .*invalid edge "ftp:\/\/127\.0\.0\.1\/x\/"/],
        ['space.conf', "$edge\nedge \"http://127.0.0.1:2/portal gate/\";\n",
         qr/space\.conf:3: invalid value "http:\/\/127\.0\.0\.1:2\/portal gate\/" in "edge": an edge's URL has no spaces/],
        ['query.conf', "edge http://127.0.0.1:2/portal-gate/?a=1;\n",
         qr/query\.conf:1: invalid value "[^"]*\?a=1" in "edge": an edge's URL has no query/],
        ['fragment.conf', "edge http://127.0.0.1:2/portal-gate/#x;\n",
         qr/fragment\.conf:1: invalid value "[^"]*#x" in "edge": an edge's URL has no fragment/],
    ) {
        my ($name, $text, $re) = @$case;
        my $path = conf_file($name, $text);
        my $r = $gd0->run('-t', '-c', $path);
        exits($r, 1, "-t $name");
        like($r->{err}, $re, "$name: names the line and why");
        like($r->{err}, qr/configuration file \Q$path\E test failed/,
             "$name: test failed");
        $r = $gd0->run('-c', $path);
        exits($r, 1, "start with $name");
        like($r->{err}, $re, "start with $name: says why");
    }

    my $path = conf_file('noedge.conf', "redis redis://127.0.0.1:6379/0;\n");
    my $r = $gd0->run('-t', '-c', $path);
    exits($r, 1, '-t without an edge');
    like($r->{err}, qr/portal-gated: \Q$path\E: no "edge" and no "certificate": there is nothing to do/,
         'names the file (no line: nothing is there to point at)');

    # a controller of certificates alone (the local CA) needs no edge
    $path = conf_file('certsonly.conf', "redis redis://127.0.0.1:6379/0;\n"
                      . "certificate s.test { issuer local /ca.pem /ca.key;\n"
                      . "fullchain /c/f.pem; privkey /c/k.pem; }\n");
    $r = $gd0->run('-t', '-c', $path);
    exits($r, 0, '-t with a certificate and no edge');

    $r = $gd0->run('-t', '-c', $gd0->dir . '/missing.conf');
    exits($r, 1, '-t on a missing file');
    like($r->{err}, qr/cannot open .*missing\.conf: No such file/, 'says so');
};

subtest '-h prints the usage; a bad option is one line and exits 2' => sub {
    my $r = $gd0->run('-h');
    exits($r, 0, '-h');
    like($r->{out}, qr/usage: portal-gated \[-t\] \[-d\] \[-c FILE\]/,
         'the usage on stdout');
    like($r->{out}, qr/HUP re-reads/, 'with the signals');
    like($r->{out}, qr/PORTAL_GATE_CONF/, 'and where -c defaults from');

    for my $case (['--frobnicate', qr/unknown option "--frobnicate"/],
                  ['-x', qr/unknown option "-x"/],
                  ['extra', qr/unexpected argument "extra"/],
                  ['-c', qr/no FILE after "-c"/]) {
        my ($arg, $re) = @$case;
        $r = $gd0->run($arg);
        exits($r, 2, "\"$arg\"");
        like($r->{err}, $re, "\"$arg\": says what is wrong");
        like($r->{err}, qr/see 'portal-gated -h'/, "\"$arg\": and where to "
             . 'read more');
        is(scalar(() = $r->{err} =~ /\n/g), 1, "\"$arg\": in one line")
            or diag($r->{err});
        is($r->{out}, '', "\"$arg\": nothing on stdout");
    }
};

subtest '--version prints the version' => sub {
    my $r = $gd0->run('--version');
    exits($r, 0, '--version');
    like($r->{out}, qr/^portal-gated \d+\.\d+\S*\n\z/,
         '"portal-gated VERSION", one line');
    is($r->{err}, '', 'nothing on stderr');
};

subtest '-c defaults to $PORTAL_GATE_CONF, then /etc/portal-gate' => sub {
    my $c = $gd0->conf_path;
    my $r = do {
        local $ENV{PORTAL_GATE_CONF} = $c;
        $gd0->run('-t');
    };
    exits($r, 0, '-t with $PORTAL_GATE_CONF');
    like($r->{err}, qr/configuration file \Q$c\E test is successful/,
         'reads the file it names');

    my $bad = conf_file('env-bad.conf', "edges x;\n");
    $r = do {
        local $ENV{PORTAL_GATE_CONF} = $bad;
        $gd0->run('-t', '-c', $c);
    };
    exits($r, 0, '-c wins over $PORTAL_GATE_CONF');

    SKIP: {
        skip '/etc/portal-gate/portal-gated.conf exists here', 3
            if -e '/etc/portal-gate/portal-gated.conf';
        $r = do {
            local $ENV{PORTAL_GATE_CONF};
            delete $ENV{PORTAL_GATE_CONF};
            $gd0->run('-t');
        };
        exits($r, 1, 'neither: the default file, missing here');
        like($r->{err}, qr{cannot open /etc/portal-gate/portal-gated\.conf},
             'names the default');
        like($r->{err}, qr/give -c FILE, or set PORTAL_GATE_CONF/,
             'and how to name another');
    }
};


# ---- a running daemon: its own prefix and db, no reconcile to help

my $rs = PortalGate::Redis->new(db => 2);
my $e = two_edges();
my ($A, $B) = @$e{qw(tcp unix)};
my $P = 'acme:';

sub ctl { $rs->ctl('-p', $P, @_) }

sub store_revision {
    my $v = $rs->cli('GET', "${P}revision");
    return $v =~ /^\d+$/ ? $v : -1;
}

sub decision {
    my ($ng, $company) = @_;
    return $ng->evaluate(flag => 'customer_portal',
                         company => $company)->{decision} // '?';
}

sub at_store {
    my ($ng, $name) = @_;
    my $want = store_revision();
    ok(wait_until(sub { $ng->status->{revision} == $want }),
       "$name: at the store's revision $want")
        or diag('the edge is at ' . $ng->status->{revision});
}

my $gd = PortalGate::Gated->new(redis => $rs->url, prefix => $P,
                                edges => [$e->{tcp_url}],
                                reconcile => '1h', log_level => 'info');

subtest 'changes come through the prefixed channel, in the right db' => sub {
    exits(ctl('init'), 0, 'init under acme: in db 2');
    $gd->start;
    ok($gd->wait_log(qr/following acme:changes/, 5), 'follows acme:changes');
    exits(ctl('create', 'customer_portal'), 0, 'create');
    exits(ctl('allow', 'customer_portal', '1001'), 0, 'allow 1001');
    ok(wait_until(sub { decision($A, '1001') eq 'on' }),
       'the change reaches the edge with no reconcile tick')
        or diag($gd->log);
    at_store($A, 'the edge');
    is($B->status->{revision}, 0, 'the edge not in the config has nothing');
};

subtest 'SIGHUP with a second edge: that edge gets the snapshot' => sub {
    my $mark = $gd->mark;
    $gd->rewrite(edges => [$e->{tcp_url}, $e->{unix_url}]);
    $gd->hup;
    ok($gd->wait_log(qr/configuration reloaded from .*: 2 edges/, 5, $mark),
       'the log says the config was reloaded, with 2 edges');
    at_store($B, 'the new edge');
    is(decision($B, '1001'), 'on', 'the new edge answers on for 1001');
    is($B->get('/portal/', company => '1001')->{status}, 200,
       'and serves its gated location');
};

subtest 'SIGHUP with a broken config: not reloaded, still pushing' => sub {
    my $mark = $gd->mark;
    my $path = $gd->write_conf("redis " . $rs->url . ";\nprefix $P;\n"
                               . "edge $e->{tcp_url};\nedge $e->{unix_url}\n"
                               . "reconcile_interval 1h;\n");
    $gd->hup;
    ok($gd->wait_log(qr/configuration not reloaded, the old one stays: \Q$path\E:\d+: /,
                     5, $mark), 'the log says not reloaded, and where')
        or diag($gd->log($mark));
    ok($gd->running, 'the daemon keeps running');

    exits(ctl('rollout', 'customer_portal', '100'), 0, 'rollout 100');
    ok(wait_until(sub { decision($A, 'c9') eq 'on' && decision($B, 'c9') eq 'on' }),
       'the change reaches both edges (the old config\'s)');
    at_store($A, 'edge 1');
    at_store($B, 'edge 2');
};

subtest 'SIGHUP onto an empty db: NOT INITIALISED, the edges keep theirs' => sub {
    my $rev = store_revision();
    my $mark = $gd->mark;
    (my $empty = $rs->url) =~ s{/2$}{/3};
    $gd->rewrite(redis => $empty, edges => [$e->{tcp_url}, $e->{unix_url}]);
    $gd->hup;
    ok($gd->wait_log(qr/reading the store again/, 5, $mark),
       'the log says it reads the store again');
    ok($gd->wait_log(qr/\Q$empty\E.*NOT INITIALISED/, 5, $mark),
       'and that this one is not initialised');
    is($_->status->{revision}, $rev, 'edge ' . $_->port . ": keeps $rev")
        for $A, $B;

    $mark = $gd->mark;
    $gd->rewrite(redis => $rs->url);
    $gd->hup;
    ok($gd->wait_log(qr/connected to redis \Q${\ $rs->url }\E/, 5, $mark),
       'back on db 2') or diag($gd->log($mark));
    exits(ctl('rollout', 'customer_portal', '0'), 0, 'rollout 0');
    ok(wait_until(sub { decision($A, 'c9') eq 'off' && decision($B, 'c9') eq 'off' }),
       'the change reaches both edges');
};

subtest 'SIGINT stops it cleanly' => sub {
    clean_exit($gd->kill('INT'), $gd, 'SIGINT');
    like($gd->log, qr/exiting on SIGINT/, 'says why');
    $_->no_bad_log_lines('edge ' . $_->port . ': no [crit], [alert] or '
                         . '[emerg]') for $A, $B;
};

done_testing;
