# What a newcomer runs first: conf-examples/nginx.conf is a configuration
# that nginx accepts, and `make demo` (tools/demo.sh) serves the rollout
# scenario and obeys the kill switch.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use IO::Socket::INET;
use Test::More;
use PortalGate::Test qw(require_module module_path);

require_module();

my $root = "$FindBin::Bin/..";

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1)
        or die "cannot find a free port: $!";
    return $s->sockport;
}

subtest 'conf-examples/nginx.conf passes nginx -t' => sub {
    my $dir = tempdir(CLEANUP => 1);
    chmod 0755, $dir;

    open my $fh, '<', "$root/conf-examples/nginx.conf" or die $!;
    my $conf = do { local $/; <$fh> };
    close $fh;

    # the same file, with its paths moved into a scratch folder
    my $module = module_path();
    $conf =~ s{/usr/lib/nginx/modules/ngx_http_portal_gate_module\.so}
              {$module}g;
    $conf =~ s{/var/lib/portal-gate/}{$dir/}g;
    $conf =~ s{/run/portal-gate/}{$dir/}g;
    $conf =~ s{/run/nginx\.pid}{$dir/nginx.pid}g;
    $conf =~ s{/var/log/nginx/}{$dir/}g;
    $conf =~ s{^user .*$}{}mg;
    unlike($conf, qr{(?:/var/|/run/|/usr/lib/nginx/modules/)},
           'every path the example writes was moved into the scratch folder');

    open $fh, '>', "$dir/nginx.conf" or die $!;
    print $fh $conf;
    close $fh;

    my $out = `/usr/sbin/nginx -t -p $dir -c $dir/nginx.conf -g 'error_log $dir/error.log;' 2>&1`;
    is($? >> 8, 0, 'nginx -t accepts it') or diag($out);
    like($out, qr/test is successful/, 'nginx says the test is successful');
    unlike($out, qr/\[(?:crit|alert|emerg)\]/, 'no crit, alert or emerg');
};

subtest 'make demo serves the rollout scenario and obeys the kill switch' => sub {
    my $port = free_port();
    my $out = `DEMO_ONCE=1 DEMO_PORT=$port timeout 60 $root/tools/demo.sh 2>&1`;
    is($? >> 8, 0, 'the demo ran and stopped') or diag($out);

    # the answers, in the order the demo's checks ask
    my @answers = grep { !/^\$ / && !/^\{"revision"/ }
                  split /\n/, ($out =~ /== checks\n(.*)\z/s)[0] // '';
    like($answers[0] // '', qr/^portal v2 for company 1001 \(allowed\)/,
         'a pilot company gets the portal');
    like($answers[1] // '', qr/^legacy portal \(customer_portal: rollout\)/,
         'another company gets the legacy pages');
    like($answers[2] // '', qr/^staging portal v2 for company 42/,
         'staging has the portal for everyone');
    like($answers[3] // '', qr/"decision":"off","reason":"rollout","bucket":7541/,
         'eval explains the decision with the bucket');
    like($answers[4] // '', qr/^portal v2 for company 42 \(rollout\)/,
         'phase 3 gives everyone the portal');
    like($answers[5] // '', qr/^legacy portal \(customer_portal: killed\)/,
         'the kill switch turns it off for a pilot company');
    like($out, qr/curl -H 'X-Company-Id: 1001' http:\/\/127\.0\.0\.1:$port\/portal\//,
         'the demo prints curl lines to try');

    my ($scratch) = $out =~ m{scratch folder: (\S+)};
    ok($scratch && !-e $scratch, 'the demo removed its scratch folder');
};

subtest 'make demo on a port in use says so and exits 1' => sub {
    my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                     Proto => 'tcp', Listen => 1)
        or die "cannot listen: $!";
    my $port = $busy->sockport;
    my $out = `DEMO_PORT=$port timeout 60 $root/tools/demo.sh 2>&1`;
    is($? >> 8, 1, 'exit status 1');
    like($out, qr/nginx did not start on 127\.0\.0\.1:$port .*port in use/,
         'the demo names the port and the likely cause');
    like($out, qr/Address already in use/, "and shows nginx's own error");
};

done_testing();
