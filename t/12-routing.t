# Routing by $portal_flag_NAME (map + proxy_pass, no gate in the location),
# and hosts that read different environments.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Test qw(require_module);

require_module();

my $ng = PortalGate::Test->new(
    ports => 2,
    server => <<'CONF',
        location /route/   { add_header X-Backend $backend always;
                             proxy_pass http://$backend; }
        location /flagvar/ { return 200 "$portal_flag_customer_portal $portal_flag_no_such_flag\n"; }
        location /envvar/  { portal_gate_env $arg_env;
                             portal_gate customer_portal;
                             add_header X-Reason $portal_gate_reason always;
                             return 200 "on in $arg_env\n"; }
CONF
    http => <<'CONF',
    map $portal_flag_customer_portal $backend {
        1        v2;
        default  legacy;
    }

    upstream v2     { server 127.0.0.1:%%PORT1%%; }
    upstream legacy { server 127.0.0.1:%%PORT2%%; }

    server { listen 127.0.0.1:%%PORT1%%; location / { return 200 "v2\n"; } }
    server { listen 127.0.0.1:%%PORT2%%; location / { return 200 "legacy\n"; } }

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name staging.example.com;
        portal_gate_env staging;
        portal_gate_company $http_x_company_id;

        location /portal/ { portal_gate customer_portal;
                            add_header X-Reason $portal_gate_reason always;
                            return 200 "staging portal v2\n"; }
        location /flag/   { return 200 "$portal_flag_customer_portal\n"; }
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name example.com;
        portal_gate_company $http_x_company_id;

        location /portal/ { portal_gate customer_portal;
                            add_header X-Reason $portal_gate_reason always;
                            return 200 "portal v2\n"; }
        location /flag/   { return 200 "$portal_flag_customer_portal\n"; }
    }
CONF
);
$ng->start;

my $put = $ng->put_snapshot({revision => 1, environments => {
    production => { customer_portal => { rollout => 0, allow => ['12'] } },
    staging    => { customer_portal => { rollout => 100 } },
}});
is($put->{status}, 200, 'the test snapshot is accepted') or diag($put->{content});

subtest 'map on $portal_flag_* routes an on company to the v2 upstream' => sub {
    my $r = $ng->get('/route/', company => '12');
    is($r->{status}, 200, 'status 200');
    is($r->{content}, "v2\n", 'served by v2');
    is($r->{headers}{'x-backend'}, 'v2', '$backend is v2');
};

subtest 'map on $portal_flag_* routes an off company to the legacy upstream' => sub {
    my $r = $ng->get('/route/', company => '42');
    is($r->{status}, 200, 'status 200');
    is($r->{content}, "legacy\n", 'served by legacy');
    is($ng->get('/route/')->{content}, "legacy\n", 'no company: legacy too');
};

subtest '$portal_flag_NAME is 1 or 0 in a location without a gate' => sub {
    is($ng->get('/flagvar/', company => '12')->{content}, "1 0\n",
       'on company: 1; unknown flag: 0');
    is($ng->get('/flagvar/', company => '42')->{content}, "0 0\n",
       'off company: 0');
};

subtest 'routing follows a new snapshot at once' => sub {
    my $put = $ng->put_snapshot({revision => 2, environments => {
        production => { customer_portal => { rollout => 0, allow => ['12', '42'] } },
        staging    => { customer_portal => { rollout => 100 } },
    }});
    is($put->{status}, 200, 'company 42 allowed');
    is($ng->get('/route/', company => '42')->{content}, "v2\n", '42 now on v2');
};

subtest 'the staging host reads the staging environment' => sub {
    my $r = $ng->get('/portal/', host => 'staging.example.com', company => '77');
    is($r->{status}, 200, 'staging: 200 (rollout 100)');
    is($r->{content}, "staging portal v2\n", 'staging: its own server');
    is($r->{headers}{'x-reason'}, 'rollout', 'staging: reason rollout');
    is($ng->get('/flag/', host => 'staging.example.com', company => '77')
          ->{content}, "1\n", 'staging: $portal_flag_customer_portal is 1');
};

subtest 'the production host reads the production environment' => sub {
    my $r = $ng->get('/portal/', host => 'example.com', company => '77');
    is($r->{status}, 404, 'production: 404 (rollout 0)');
    is($r->{headers}{'x-reason'}, 'rollout', 'production: reason rollout');
    is($ng->get('/flag/', host => 'example.com', company => '77')->{content},
       "0\n", 'production: $portal_flag_customer_portal is 0');
    is($ng->get('/portal/', host => 'example.com', company => '12')->{status},
       200, 'production: the allowed company gets 200');
};

subtest 'portal_gate_env takes a variable' => sub {
    my $r = $ng->get('/envvar/?env=staging', company => '77');
    is($r->{status}, 200, 'env=staging: on');
    is($r->{content}, "on in staging\n");

    $r = $ng->get('/envvar/?env=production', company => '77');
    is($r->{status}, 404, 'env=production: off');
    is($r->{headers}{'x-reason'}, 'rollout', 'env=production: reason rollout');

    $r = $ng->get('/envvar/?env=qa', company => '77');
    is($r->{status}, 404, 'env=qa (not in the snapshot): off');
    is($r->{headers}{'x-reason'}, 'unknown', 'env=qa: reason unknown');
};

$ng->no_bad_log_lines;

done_testing;
