# What a newcomer runs first: the examples in conf-examples/ are configs
# that nginx and portal-gated accept, and `make demo` (tools/demo.sh) runs
# the rollout scenario on two edges through Redis and portal-gated, obeys
# the kill switch on both, and leaves nothing behind.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(setsid);
use Test::More;
use PortalGate::Test qw(require_module module_path);

require_module();

my $root = "$FindBin::Bin/..";
my @subs = qw(calls appointments crm services staff analytics);
my @flags = ('customer_portal', map { "customer_portal_$_" } @subs);

# The controller: the ASan builds that `make test` makes (what the other
# controller tests run), else the ones `make` makes.
sub controller {
    my ($name) = @_;
    for my $path ("$root/build/asan/$name", "$root/build/$name") {
        return $path if -x $path;
    }
    return;
}
my $gatectl = controller('portal-gatectl');
my $gated = controller('portal-gated');

# A base port with the next $n - 1 free too: the demo takes nine (four
# without pebble).
sub free_ports {
    my ($n) = @_;
    for (1 .. 50) {
        my $first = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                          LocalPort => 0, Proto => 'tcp',
                                          Listen => 1)
            or die "cannot find a free port: $!";
        my $base = $first->sockport;
        next if $base + $n > 65535;
        my @held = grep { $_ } map {
            IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                  LocalPort => $base + $_, Proto => 'tcp',
                                  Listen => 1, ReuseAddr => 1)
        } 1 .. $n - 1;
        return $base if @held == $n - 1;
    }
    die "cannot find $n free ports in a row\n";
}

# The demo in a session of its own, so that its process group holds
# everything it starts. Returns its exit status, its output (stdout and
# stderr) and the process group.
sub run_demo {
    my (%env) = @_;
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        close $r;
        setsid();
        open STDOUT, '>&', $w or die;
        open STDERR, '>&', $w or die;
        @ENV{keys %env} = values %env;
        # the ASan builds report to the exit status, which the demo checks
        $ENV{ASAN_OPTIONS} = 'detect_leaks=1:exitcode=23';
        $ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1:exitcode=24';
        exec 'timeout', '60', "$root/tools/demo.sh" or exit 127;
    }
    close $w;
    my $out = do { local $/; <$r> } // '';
    waitpid $pid, 0;
    return ($? >> 8, $out, $pid);
}

# The pids still in process group $pgid.
sub group_left {
    my ($pgid) = @_;
    my @left;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $s = <$fh> // next;
        my ($pid) = $stat =~ m{/proc/(\d+)/};
        $s =~ s/^.*\) //s;
        push @left, $pid if (split ' ', $s)[2] == $pgid;
    }
    return @left;
}

# A snapshot without what changes from run to run: the revision, each
# flag's metadata, the order of the lists.
sub shape {
    my ($snap) = @_;
    my %envs;
    for my $env (keys %{ $snap->{environments} }) {
        for my $name (keys %{ $snap->{environments}{$env} }) {
            my %f = %{ $snap->{environments}{$env}{$name} };
            delete @f{qw(version updated_at updated_by)};
            $f{$_} = [sort @{ $f{$_} || [] }] for qw(allow deny);
            $f{enabled} = $f{enabled} ? 1 : 0;
            $envs{$env}{$name} = \%f;
        }
    }
    return \%envs;
}

subtest 'conf-examples/nginx.conf passes nginx -t' => sub {
    my $dir = tempdir(CLEANUP => 1);
    chmod 0755, $dir;

    open my $fh, '<', "$root/conf-examples/nginx.conf" or die $!;
    my $conf = do { local $/; <$fh> };
    close $fh;

    # the shape the demo runs: both vhosts gate the portal and every
    # sub-feature, staging reads its own flags, the API is a unix socket
    for my $flag (@flags) {
        my $n = () = $conf =~ /^\s*portal_gate $flag off=\@legacy;/mg;
        is($n, 2, "$flag is gated in production and in staging");
    }
    like($conf, qr/server_name staging\.portal\.example\.com;[^}]*?\n\s+portal_gate_env staging;/,
         'the staging vhost reads the staging flags');
    like($conf, qr{listen unix:/run/portal-gate/api\.sock;},
         'the API listens on a unix socket');

    # the same file, with its paths moved into a scratch folder
    my $module = module_path();
    $conf =~ s{/usr/lib/nginx/modules/ngx_http_portal_gate_module\.so}
              {$module}g;
    # the state file where the Debian package makes its folder (www-data
    # writes it; /var/lib/portal-gate is portal-gated's, review of the
    # packaging)
    like($conf, qr{^\s*state=/var/lib/nginx/portal-gate/state\.json;}m,
         "the state file in /var/lib/nginx/portal-gate, the package's folder");
    $conf =~ s{/var/lib/nginx/portal-gate/}{$dir/}g;
    $conf =~ s{/run/portal-gate/}{$dir/}g;
    $conf =~ s{/run/nginx\.pid}{$dir/nginx.pid}g;
    $conf =~ s{/var/log/nginx/}{$dir/}g;
    $conf =~ s{^user .*$}{}mg;
    unlike($conf, qr{(?:/var/|/run/|/usr/lib/nginx/modules/)},
           'every path the example writes was moved into the scratch folder');
    # (the certificate's folder is moved below, with its pair)
    # the staging vhost's pair, which portal-gated writes (a placeholder
    # first): nginx -t reads it
    like($conf, qr{portal_gate_acme_challenge on;}, 'staging answers the ACME challenge');
    $conf =~ s{/etc/portal-gate/certs/}{$dir/certs/}g;
    mkdir "$dir/certs";
    mkdir "$dir/certs/staging.portal.example.com";
    my $pair = "$dir/certs/staging.portal.example.com";
    system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256"
           . " -nodes -days 1 -subj /CN=staging.portal.example.com"
           . " -keyout $pair/privkey.pem -out $pair/fullchain.pem"
           . " 2>/dev/null") == 0 or die 'openssl';

    # nginx -t binds: port 80 needs root, and may be taken
    my $port = free_ports(2);
    my $tls = $port + 1;
    $conf =~ s{^(\s*listen) 80\b}{$1 127.0.0.1:$port}mg;
    $conf =~ s{^(\s*listen) 443\b}{$1 127.0.0.1:$tls}mg;
    unlike($conf, qr{^\s*listen (?!127\.0\.0\.1:(?:$port|$tls)\b|unix:)}m,
           'and every port to a free one');

    open $fh, '>', "$dir/nginx.conf" or die $!;
    print $fh $conf;
    close $fh;

    my $out = `/usr/sbin/nginx -t -p $dir -c $dir/nginx.conf -g 'error_log $dir/error.log;' 2>&1`;
    is($? >> 8, 0, 'nginx -t accepts it') or diag($out);
    like($out, qr/test is successful/, 'nginx says the test is successful');
    unlike($out, qr/\[(?:crit|alert|emerg)\]/, 'no crit, alert or emerg');
};

subtest 'conf-examples/portal-gated.conf passes portal-gated -t' => sub {
    plan skip_all => 'portal-gated not built: run make gated' unless $gated;
    my $file = "$root/conf-examples/portal-gated.conf";
    my $out = `$gated -t -c $file 2>&1`;
    is($? >> 8, 0, 'portal-gated -t exits 0') or diag($out);
    like($out, qr/configuration file \Q$file\E test is successful/,
         'and says the test is successful');
};

SKIP: {
skip 'portal-gatectl and portal-gated not built: run make ctl gated', 1
    unless $gatectl && $gated;

my $port = free_ports(9);
my ($redis_port, $port_b, $https_port) = ($port + 2, $port + 1, $port + 3);
# the demo gets its staging certificate from pebble when it is installed
my $pebble = -x '/usr/bin/pebble' && -x '/usr/bin/pebble-challtestsrv';
my ($status, $out, $pgid) = run_demo(DEMO_ONCE => 1, DEMO_PORT => $port,
                                     PORTAL_GATECTL => $gatectl,
                                     PORTAL_GATED => $gated);
my ($scratch) = $out =~ m{scratch folder: (\S+)};
$scratch //= '(none)';
my %pid = (
    'edge-a'       => ($out =~ /^  edge-a\s+nginx \(pid (\d+)\)/m)[0],
    'edge-b'       => ($out =~ /^  edge-b\s+nginx \(pid (\d+)\)/m)[0],
    'redis-server' => ($out =~ /^  redis-server\s+\(pid (\d+)\)/m)[0],
    'portal-gated' => ($out =~ /^  portal-gated\s+\(pid (\d+)\)/m)[0],
);
if ($pebble) {
    $pid{pebble} = ($out =~ /^  pebble\s+\(pid (\d+)\)/m)[0];
    $pid{'pebble-challtestsrv'}
        = ($out =~ /^  pebble-challtestsrv \(pid (\d+)\)/m)[0];
}

# The checks the demo ran: each command line ("$ ...") and its output.
my (@ran, $section);
for my $line (split /\n/, $out) {
    if ($line =~ /^== (.*)/) {
        $section = $1;
    } elsif (($section // '') =~ /^checks/) {
        if ($line =~ /^\$ (.*)/) {
            push @ran, { section => $section, cmd => $1, out => '' };
        } elsif (@ran) {
            $ran[-1]{out} .= "$line\n";
        }
    }
}
my ($gated_log) = $out =~ /^== portal-gated's log\n(.*?)^demo: stopped/ms;
$gated_log //= '';

# The output of the one command of $section that matches $cmd.
sub ran {
    my ($section, $cmd) = @_;
    my @m = grep { $_->{section} eq "checks: $section" && $_->{cmd} =~ $cmd }
            @ran;
    return $m[0]{out} if @m == 1;
    diag(scalar(@m) . " commands match $cmd in \"$section\"");
    return '';
}

# What company $c got at $path of the $env vhost of $edge, in $section.
sub got {
    my ($section, $edge, $env, $c, $path) = @_;
    my $host = $env eq 'staging' ? 'staging.portal.example.test'
                                 : 'portal.example.test';
    my $p = $edge eq 'edge-a' ? $port : $port_b;
    my $a = ran($section, qr/^curl -sS -H 'Host: \Q$host\E' -H 'X-Company-Id: $c' http:\/\/127\.0\.0\.1:$p\Q$path\E$/);
    chomp $a;
    return $a;
}

# The answer of an edge: "edge-a production /portal/ -> portal v2 [...]".
sub answer {
    my ($edge, $env, $path, $app, $c, $flag, $decision, $reason) = @_;
    return "$edge $env $path -> $app [company=$c $flag=$decision $reason]";
}

subtest 'make demo: portal-gated serves its status page, metrics, health' => sub {
    my $http = $port + 8;
    like($out, qr{^\s+status page\s+http://127\.0\.0\.1:$http/ }m,
         'the demo prints the status page on DEMO_PORT+8');
    like($out, qr{^\s+metrics\s+http://127\.0\.0\.1:$http/metrics$}m,
         'and the metrics');
    like(ran('audit and status', qr{^curl -sS http://127\.0\.0\.1:$http/healthz$}),
         qr/"status":"(?:ok|degraded)"/, '/healthz answers after the kill');
    like(ran('audit and status', qr{127\.0\.0\.1:$http/$}),
         qr{^200 text/html}, 'the status page answers');
    like($out, qr{metrics, health: curl --unix-socket \S+/edge-a\.sock http://edge-a/metrics}m,
         "the demo prints edge-a's metrics and health");
    like(ran('audit and status', qr{edge-a\.sock http://edge-a/health$}),
         qr/"status":\s*"ok"/, "edge-a's health is ok after the kill");
    like(ran('audit and status', qr{edge-a\.sock http://edge-a/metrics$}),
         qr/^portal_gate_decisions_total\{env="production",flag="customer_portal",decision="off",reason="killed"\} [1-9]/m,
         "edge-a's metrics count the kill's decisions");
};

subtest 'make demo starts everything and stops' => sub {
    is($status, 0, 'the demo ran its checks and stopped') or diag($out);
    like($out, qr/^  edge-a\s+nginx \(pid \d+\) on 127\.0\.0\.1:$port: portal\.example\.test \(production\),\n\s+staging\.portal\.example\.test \(staging\); API unix:\S+\/edge-a\.sock$/m,
         'edge-a: both vhosts on DEMO_PORT, its API on a unix socket');
    like($out, qr/^  edge-b\s+nginx \(pid \d+\) on 127\.0\.0\.1:$port_b: portal\.example\.test \(production\),\n\s+staging\.portal\.example\.test \(staging\); API unix:\S+\/edge-b\.sock$/m,
         'edge-b: both vhosts on DEMO_PORT+1, its API on a unix socket');
    like($out, qr/^  redis-server\s+\(pid \d+\) on 127\.0\.0\.1:$redis_port: the store$/m,
         'Redis on DEMO_PORT+2');
    like($out, qr/^  portal-gated\s+\(pid \d+\): pushes each change to both edges,\n\s+reconciles every 2s/m,
         'portal-gated');
    unlike($out, qr/exited with status|ignored TERM/,
           'every service stopped cleanly on TERM');
};

subtest 'make demo prints the commands of each phase, ready to paste' => sub {
    my $ctl = qr{\S*portal-gatectl -r redis://127\.0\.0\.1:$redis_port/0 -c \Q$scratch\E/portal-gated\.conf};
    my %printed = (
        'phase 1: more pilots'   => qr/allow customer_portal 1003 1004 --wait/,
        'phase 2: 10 %'          => qr/rollout customer_portal 10 --wait/,
        'phase 2: 25 %'          => qr/rollout customer_portal 25 --wait/,
        'phase 2: 50 %'          => qr/rollout customer_portal 50 --wait/,
        'phase 3: everyone'      => qr/rollout customer_portal 100 --wait/,
        'the kill switch'        => qr/kill customer_portal --wait(?: .*)?/,
        'explain'                => qr/explain customer_portal 42/,
        'audit'                  => qr/audit customer_portal/,
        'status'                 => qr/status/,
    );
    for my $what (sort keys %printed) {
        my ($line) = $out =~ /^  ($ctl $printed{$what})$/m;
        ok($line, "$what, on this demo's Redis and config");
        next if !$line || $what =~ /^(?:audit|status)$/;
        ok((grep { $_->{cmd} eq $line } @ran),
           "$what: the checks ran the printed line as it is");
    }
    for my $p ($port, $port_b) {
        like($out, qr{^  curl -H 'Host: portal\.example\.test' -H 'X-Company-Id: (?:1001|42)' http://127\.0\.0\.1:$p/portal/\S*$}m,
             "a curl line for production on 127.0.0.1:$p");
        like($out, qr{^  curl -H 'Host: staging\.portal\.example\.test' -H 'X-Company-Id: 42' http://127\.0\.0\.1:$p/portal/\S*$}m,
             "a curl line for staging on 127.0.0.1:$p");
    }
};

subtest 'the rollout scenario on both edges, in production and staging' => sub {
    my $s = 'a pilot and another company, on both edges';
    for my $edge (qw(edge-a edge-b)) {
        is(got($s, $edge, 'production', 1001, '/portal/'),
           answer($edge, 'production', '/portal/', 'portal v2', 1001,
                  'customer_portal', 'on', 'allowed'),
           "$edge production: a pilot company gets the portal");
        is(got($s, $edge, 'production', 42, '/portal/'),
           answer($edge, 'production', '/portal/', 'legacy', 42,
                  'customer_portal', 'off', 'rollout'),
           "$edge production: another company gets the legacy pages");
        for my $c (1001, 42) {
            is(got($s, $edge, 'staging', $c, '/portal/'),
               answer($edge, 'staging', '/portal/', 'portal v2', $c,
                      'customer_portal', 'on', 'rollout'),
               "$edge staging: company $c gets the portal");
        }
    }
    is(got($s, 'edge-a', 'production', 1001, '/portal/calls/'),
       answer('edge-a', 'production', '/portal/calls/', 'portal v2', 1001,
              'customer_portal_calls', 'on', 'rollout'),
       'a sub-feature follows customer_portal for a pilot');
    is(got($s, 'edge-b', 'production', 42, '/portal/calls/'),
       answer('edge-b', 'production', '/portal/calls/', 'legacy', 42,
              'customer_portal_calls', 'off', 'requires'),
       'and stays off, through requires, for another company');
    like(ran($s, qr/^curl -sS --unix-socket \S+edge-b\.sock 'http:\/\/edge\/portal-gate\/eval\?/),
         qr/"decision":"off","reason":"rollout","bucket":7541,/,
         "the edge's eval explains it with the bucket");
    like(ran($s, qr/explain customer_portal 42$/),
         qr/^customer_portal for company 42 in production: off \(rollout\)\n\s+bucket 7541 of 10000/,
         'and so does portal-gatectl explain');
};

subtest 'conf-examples/snapshot.json is what the demo seeds' => sub {
    my $json = ran('a pilot and another company, on both edges',
                   qr/portal-gate\/snapshot$/);
    my $seeded = eval { decode_json($json) };
    ok($seeded, "edge-a's snapshot is JSON") or return diag($json);
    open my $fh, '<', "$root/conf-examples/snapshot.json" or die $!;
    my $example = decode_json(do { local $/; <$fh> });
    is_deeply(shape($seeded), shape($example),
              'the same flags, with the same settings, in both environments');
};

subtest 'the phases, each confirmed by both edges' => sub {
    like(ran('phase 1', qr/allow customer_portal 1003 1004 --wait$/),
         qr/^every edge \(2\) has revision \d+/m, 'phase 1: --wait');
    is(got('phase 1', 'edge-b', 'production', 1003, '/portal/'),
       answer('edge-b', 'production', '/portal/', 'portal v2', 1003,
              'customer_portal', 'on', 'allowed'),
       'a new pilot gets the portal');
    for ([10, 10], [25, 13], [50, 14]) {
        my ($pct, $c) = @$_;
        like(ran('phase 2', qr/rollout customer_portal $pct --wait$/),
             qr/^every edge \(2\) has revision \d+/m, "phase 2, $pct %: --wait");
        is(got('phase 2', 'edge-a', 'production', $c, '/portal/'),
           answer('edge-a', 'production', '/portal/', 'portal v2', $c,
                  'customer_portal', 'on', 'rollout'),
           "$pct %: company $c is in");
    }
    is(got('phase 2', 'edge-b', 'production', 42, '/portal/'),
       answer('edge-b', 'production', '/portal/', 'legacy', 42,
              'customer_portal', 'off', 'rollout'),
       '50 %: company 42 (bucket 7541) is not yet');
    for my $edge (qw(edge-a edge-b)) {
        is(got('phase 3', $edge, 'production', 42, '/portal/'),
           answer($edge, 'production', '/portal/', 'portal v2', 42,
                  'customer_portal', 'on', 'rollout'),
           "phase 3: company 42 gets the portal on $edge");
    }
};

subtest 'the kill switch reaches both edges through portal-gated' => sub {
    my $kill = ran('kill switch', qr/kill customer_portal --wait/);
    my ($rev) = $kill =~ /^KILLED customer_portal in production: enabled true -> false \(revision (\d+)\)$/m;
    ok($rev, 'kill says what it changed') or diag($kill);
    $rev //= -1;
    like($kill, qr/^every edge \(2\) has revision $rev, after [\d.]+ ms$/m,
         '--wait: both edges confirm the new revision');
    for my $edge (qw(edge-a edge-b)) {
        like($gated_log, qr/\[info\] \d+: edge unix:\S+\/run\/$edge\.sock:\/portal-gate\/: revision $rev applied in /,
             "portal-gated pushed it to $edge");
        for my $c (1001, 42) {
            is(got('kill switch', $edge, 'production', $c, '/portal/'),
               answer($edge, 'production', '/portal/', 'legacy', $c,
                      'customer_portal', 'off', 'killed'),
               "$edge production: off for company $c");
            is(got('kill switch', $edge, 'staging', $c, '/portal/'),
               answer($edge, 'staging', '/portal/', 'portal v2', $c,
                      'customer_portal', 'on', 'rollout'),
               "$edge staging: unaffected for company $c");
        }
        is(got('kill switch', $edge, 'production', 1001, '/portal/calls/'),
           answer($edge, 'production', '/portal/calls/', 'legacy', 1001,
                  'customer_portal_calls', 'off', 'requires'),
           "$edge production: the sub-features go off with it");
    }
    like(ran('audit and status', qr/audit customer_portal --count 3$/),
         qr/^\S+\s+rev $rev\s.*production\s+customer_portal\s+kill\s+enabled true -> false\s+reason: INC-1: portal v2 errors$/m,
         'audit shows the kill and its reason');
    like(ran('audit and status', qr/ status$/),
         qr/edge-a\.sock:\/portal-gate\/\s+revision $rev\s+in step\n.*edge-b\.sock:\/portal-gate\/\s+revision $rev\s+in step/,
         'status: both edges in step');
};

subtest 'the break-glass kill holds with portal-gated stopped, until released' => sub {
    my $kill = ran('break-glass kill, portal-gated stopped', qr/kill customer_portal --direct/);
    like($kill, qr/^KILLED customer_portal in production on every edge \(2\), by override/m,
         'kill --direct: both edges confirm') or diag($kill);
    for my $edge (qw(edge-a edge-b)) {
        my @got = grep { /^\Q$edge\E production \/portal\/ / }
                  map { $_->{out} } grep { $_->{section} eq 'checks: break-glass kill, portal-gated stopped'
                                           && $_->{cmd} =~ /X-Company-Id: 1001' /
                                           && $_->{cmd} =~ ($edge eq 'edge-a' ? qr/:$port\// : qr/:$port_b\//) } @ran;
        is(scalar @got, 2, "$edge: asked before and after the release");
        like($got[0] // '', qr/-> legacy \[company=1001 customer_portal=off killed\]/,
             "$edge: off (killed) for pilot 1001 while portal-gated is stopped");
        like($got[1] // '', qr/-> portal v2 \[company=1001 customer_portal=on allowed\]/,
             "$edge: on again after release and on");
    }
    like(ran('break-glass kill, portal-gated stopped', qr/ status$/),
         qr/KILL OVERRIDE: customer_portal in production/,
         'status lists the override');
    like(ran('break-glass kill, portal-gated stopped', qr/release customer_portal$/),
         qr/released/, 'release says it released the overrides');
};

subtest 'make demo: the staging certificate, from pebble' => sub {
    if (!$pebble) {
        like($out, qr/^== staging certificates: skipped: \S+ is not installed/m,
             'without pebble, the demo says why it skips the certificate');
        return;
    }
    my $name = 'staging.portal.example.test';
    like($out, qr/^\s+\Q$name\E on HTTPS too: 127\.0\.0\.1:$https_port$/m,
         "edge-a serves $name on HTTPS, on DEMO_PORT+3");
    like($gated_log, qr/certificate \Q$name\E: no pair yet, wrote a self-signed placeholder/,
         'portal-gated wrote the placeholder first');
    like($out, qr/^demo: \Q$name\E: edge-a serves pebble's certificate/m,
         "then edge-a served pebble's certificate");
    my $curl = qr{curl --cacert \Q$scratch\E/pebble/root\.pem --resolve \Q$name\E:$https_port:127\.0\.0\.1 -H 'X-Company-Id: 42' https://\Q$name\E:$https_port/portal/};
    like($out, qr/^  $curl$/m, 'the curl --cacert line to try it is printed');
    my $ctl = qr{\S*portal-gatectl -r redis://127\.0\.0\.1:$redis_port/0 -c \Q$scratch\E/portal-gated\.conf};
    like($out, qr/^  $ctl cert status$/m, 'and cert status');
    like($out, qr/^  $ctl cert renew \Q$name\E --wait 60$/m, 'and cert renew --wait');

    my $s = 'checks: staging certificate';
    my @https = grep { $_->{section} eq $s && $_->{cmd} =~ /^curl -sS --cacert / } @ran;
    is(scalar @https, 2, 'the checks ran the HTTPS request before and after a renewal');
    for my $r (@https) {
        is($r->{out}, answer('edge-a', 'staging', '/portal/', 'portal v2', 42,
                             'customer_portal', 'on', 'rollout') . "\n",
           'HTTPS verified against pebble\'s root: the staging vhost answers');
    }
    like(ran('staging certificate', qr/ cert status$/),
         qr/^  issued by     Pebble Intermediate CA .*\n(?s:.*)^  last error    none$/m,
         'cert status: issued by pebble, no error');
    like(ran('staging certificate', qr/ cert renew \Q$name\E --wait 60$/),
         qr/^renewed\b.*: serial [0-9a-f]+, valid until /m,
         'cert renew --wait: renewed');
    like($gated_log, qr/certificate \Q$name\E: issued by Pebble Intermediate CA \S+, serial [0-9a-f]+, valid until \S+, installed and nginx reloaded/,
         "portal-gated's log: issued, installed, nginx reloaded");
};

subtest 'make demo leaves nothing behind' => sub {
    ok(!-e $scratch, "the scratch folder $scratch is gone");
    for my $name (sort keys %pid) {
        my $p = $pid{$name};
        ok($p && !kill(0, $p), "$name (pid " . ($p // '?') . ') is gone');
        like($out, qr/^demo: stopped .*\b\Q$name\E \(pid $p\)/m,
             "and the demo says it stopped it") if $p;
    }
    is_deeply([group_left($pgid)], [],
              'no process of the demo is left (nginx workers included)');
};
}

subtest 'make demo on a port in use says so and exits 1' => sub {
    my $base = free_ports(9);
    my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                     LocalPort => $base, Proto => 'tcp',
                                     Listen => 1)
        or die "cannot listen: $!";
    my %env = (DEMO_PORT => $base);
    $env{PORTAL_GATECTL} = $gatectl if $gatectl;
    $env{PORTAL_GATED} = $gated if $gated;
    my ($status, $out, $pgid) = run_demo(%env);
    is($status, 1, 'exit status 1');
    like($out, qr/nginx did not start on 127\.0\.0\.1:$base .*port in use/,
         'the demo names the port and the likely cause');
    like($out, qr/Address already in use/, "and shows nginx's own error");
    my ($scratch) = $out =~ m{removed (/tmp/portal-gate-demo\.\S+)};
    ok($scratch && !-e $scratch, 'and removes its scratch folder');
    is_deeply([group_left($pgid)], [], 'no process of it is left');
};

done_testing();
