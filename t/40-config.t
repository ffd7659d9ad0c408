# nginx -t refuses every bad portal_gate directive with a clear message,
# and accepts the good ones.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Test qw(nginx_t require_module);

require_module();

my $zone = 'portal_gate_zone zone=pg:1m;';

# a server whose location holds $directives
sub in_location {
    my ($directives, $head) = @_;
    return ($head // $zone) . "\nserver { listen 127.0.0.1:1; location / { $directives } }";
}

subtest 'a complete configuration passes nginx -t' => sub {
    my ($rc, $out) = nginx_t(<<'CONF');
    portal_gate_zone zone=pg:1m state=%%DIR%%/state/state.json;
    portal_gate_env production;
    portal_gate_api_max_body_size 1m;
    map $portal_flag_customer_portal $backend { 1 v2; default legacy; }
    server {
        listen 127.0.0.1:1;
        server_name staging.example.com;
        portal_gate_env staging;
        portal_gate_company $http_x_company_id;
        location /a/ { portal_gate customer_portal; return 200; }
        location /b/ { portal_gate customer_portal off=451; return 200; }
        location /b2/ { portal_gate customer_portal off=444;
                        portal_gate_env $http_x_env; return 200; }
        location /c/ { portal_gate customer_portal off=@legacy; return 200; }
        location /d/ { portal_gate customer_portal off=https://x.example/$uri; }
        location /e/ { portal_gate customer_portal off=http://x.example/; }
        location /f/ { portal_gate customer_portal off=/legacy/;
                       location /f/g/ { portal_gate off; } }
        location /g/ { portal_gate_company $cookie_company;
                       return 200 "$backend $portal_flag_x\n"; }
        location @legacy { return 200; }
        location /portal-gate/ { portal_gate_api; portal_gate off;
                                 portal_gate_api_max_body_size 64m; }
    }
CONF
    is($rc, 0, 'exit 0') or diag($out);
    like($out, qr/test is successful/, 'test is successful');
};

my @bad = (
    # portal_gate_zone
    ['portal_gate_zone without zone=',
     'portal_gate_zone state=/tmp/x.json;',
     qr/\[emerg\].*"portal_gate_zone" must have "zone" parameter/],
    ['portal_gate_zone with a bad size',
     'portal_gate_zone zone=pg:lots;',
     qr/\[emerg\].*invalid zone size "zone=pg:lots"/],
    ['portal_gate_zone without a size',
     'portal_gate_zone zone=pg;',
     qr/\[emerg\].*invalid zone "zone=pg": expected zone=NAME:SIZE/],
    ['portal_gate_zone below 64k',
     'portal_gate_zone zone=pg:32k;',
     qr/\[emerg\].*zone ".*" is too small: at least 64k/],
    ['portal_gate_zone with an unknown parameter',
     'portal_gate_zone zone=pg:1m size=2m;',
     qr/\[emerg\].*invalid parameter "size=2m"/],
    ['portal_gate_zone twice',
     "$zone\nportal_gate_zone zone=other:1m;",
     qr/\[emerg\].*"portal_gate_zone" directive is duplicate/],
    ['portal_gate_zone with an empty state=',
     'portal_gate_zone zone=pg:1m state=;',
     qr/\[emerg\].*empty state file path in "state="/],
    ['portal_gate_zone inside a server',
     'server { listen 127.0.0.1:1; portal_gate_zone zone=pg:1m; }',
     qr/\[emerg\].*"portal_gate_zone" directive is not allowed here/],

    # portal_gate
    ['portal_gate with an invalid flag name',
     in_location('portal_gate Bad-Name;'),
     qr/\[emerg\].*invalid flag name "Bad-Name": expected \[a-z0-9_\]\{1,64\}/],
    ['portal_gate with a 65-character flag name',
     in_location('portal_gate ' . ('a' x 65) . ';'),
     qr/\[emerg\].*invalid flag name "a{65}"/],
    ['portal_gate with a parameter that is not off=',
     in_location('portal_gate customer_portal x;'),
     qr/\[emerg\].*invalid parameter "x": expected off=CODE, off=\@named or off=URL/],
    ['portal_gate off=302',
     in_location('portal_gate customer_portal off=302;'),
     qr/\[emerg\].*invalid status "off=302": off=CODE takes 400 to 599 but 408 and 494 to 499; use off=URL to redirect/],
    ['portal_gate off=600',
     in_location('portal_gate customer_portal off=600;'),
     qr/\[emerg\].*invalid status "off=600"/],
    ['portal_gate off=ftp://',
     in_location('portal_gate customer_portal off=ftp://x;'),
     qr/\[emerg\].*invalid action "off=ftp:\/\/x": expected a status, \@named location or URL \(http:\/\/, https:\/\/ or \/\)/],
    ['portal_gate off=@',
     in_location('portal_gate customer_portal off=@;'),
     qr/\[emerg\].*empty location name in "off=@"/],
    ['portal_gate off=408 (nginx closes without an answer)',
     in_location('portal_gate customer_portal off=408;'),
     qr/\[emerg\].*invalid status "off=408": off=CODE takes 400 to 599 but 408 and 494 to 499/],
    ['portal_gate off=499 (an nginx-internal code)',
     in_location('portal_gate customer_portal off=499;'),
     qr/\[emerg\].*invalid status "off=499"/],
    ['portal_gate in the API location',
     in_location('portal_gate_api; portal_gate customer_portal;'),
     qr/\[emerg\].*"portal_gate" directive cannot gate a portal_gate_api location/],
    ['portal_gate_api in a gated location',
     in_location('portal_gate customer_portal; portal_gate_api;'),
     qr/\[emerg\].*"portal_gate_api" directive cannot be used in a location with portal_gate/],
    ['portal_gate off with a parameter',
     in_location('portal_gate off off=404;'),
     qr/\[emerg\].*"portal_gate off" takes no parameters/],
    ['portal_gate twice in a location',
     in_location('portal_gate a; portal_gate b;'),
     qr/\[emerg\].*"portal_gate" directive is duplicate/],
    ['portal_gate with three parameters',
     in_location('portal_gate a off=404 off=403;'),
     qr/\[emerg\].*invalid number of arguments in "portal_gate"/],
    ['portal_gate without a zone',
     in_location('portal_gate customer_portal;', ''),
     qr/\[emerg\].*"portal_gate" is used, but no "portal_gate_zone" is defined in the http block/],

    # portal_gate_api
    ['portal_gate_api without a zone',
     in_location('portal_gate_api;', ''),
     qr/\[emerg\].*"portal_gate_api" is used, but no "portal_gate_zone" is defined in the http block/],
    ['portal_gate_api twice',
     in_location('portal_gate_api; portal_gate_api;'),
     qr/\[emerg\].*"portal_gate_api" directive is duplicate/],
    ['portal_gate_api with a parameter',
     in_location('portal_gate_api on;'),
     qr/\[emerg\].*invalid number of arguments in "portal_gate_api"/],
    ['portal_gate_api in a server',
     "$zone\nserver { listen 127.0.0.1:1; portal_gate_api; }",
     qr/\[emerg\].*"portal_gate_api" directive is not allowed here/],
    ['portal_gate_api_max_body_size with a bad size',
     in_location('portal_gate_api; portal_gate_api_max_body_size lots;'),
     qr/\[emerg\].*"portal_gate_api_max_body_size" directive invalid value/],

    # portal_gate_env / portal_gate_company
    ['portal_gate_env without a value',
     in_location('portal_gate_env;'),
     qr/\[emerg\].*invalid number of arguments in "portal_gate_env"/],
    ['portal_gate_env with an invalid literal name',
     in_location('portal_gate_env Staging;'),
     qr/\[emerg\].*invalid environment name "Staging": expected \[a-z0-9_\]\{1,64\}/],
    ['portal_gate_company with an unknown variable',
     in_location('portal_gate_company $no_such_variable;'),
     qr/\[emerg\].*unknown "no_such_variable" variable/],
);

for my $case (@bad) {
    my ($name, $conf, $re) = @$case;
    subtest "nginx -t refuses $name" => sub {
        my ($rc, $out) = nginx_t($conf);
        isnt($rc, 0, 'nginx -t fails');
        like($out, $re, 'with the expected message');
    };
}

done_testing;
