# What an "off" request gets (off=CODE, off=@named, off=URL), and that the
# gate holds in front of `return` and `rewrite`, in nested locations and
# server-wide, until `portal_gate off;` lifts it.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Test qw(require_module);

require_module();

my ($on, $off) = ('pilot-1', 'other-1');

my $ng = PortalGate::Test->new(
    ports => 1,
    files => { 'html/page.txt' => "static page\n" },
    server => <<'CONF',
        location /forbidden/ { portal_gate customer_portal off=403;
                               return 200 "v2\n"; }
        location /fallback/  { portal_gate customer_portal off=@legacy;
                               return 200 "v2\n"; }
        location @legacy     { return 200 "legacy $portal_gate_reason $portal_gate_flag $portal_gate_decision $portal_gate_company\n"; }
        location /moved/     { portal_gate customer_portal
                                   off=https://legacy.example.com$request_uri;
                               return 200 "v2\n"; }
        location /relative/  { portal_gate customer_portal off=/legacy-home/;
                               return 200 "v2\n"; }

        location /p/         { portal_gate customer_portal;
                               return 302 https://portal.example.com/; }
        location /r200/      { portal_gate customer_portal;
                               return 200 "v2\n"; }
        location /rw/        { portal_gate customer_portal;
                               rewrite ^/rw/(.*)$ /target/$1 last; }
        location /target/    { return 200 "target $uri\n"; }
        location /rb/        { portal_gate customer_portal;
                               root %%DIR%%/html;
                               rewrite ^/rb/(.*)$ /$1 break; }

        location /set/       { set $company "$http_x_company_id";
                               portal_gate_company $company;
                               portal_gate customer_portal;
                               add_header X-Reason $portal_gate_reason always;
                               return 200 "v2\n"; }

        location /again/     { portal_gate customer_portal off=@again;
                               return 200 "v2\n"; }
        location @again      { rewrite ^ /again/from-legacy last; }
        location /tf/        { portal_gate customer_portal off=@tf;
                               return 200 "v2\n"; }
        location @tf         { try_files /nonexistent /tf/from-legacy; }

        location /n/ {
            portal_gate customer_portal;
            location /n/inner/ { return 200 "inner\n"; }
            location /n/open/  { portal_gate off; return 200 "open\n"; }
        }
CONF
    http => <<'CONF',
    # a whole site behind the gate, with a public corner and a fallback
    # that inherits the server-wide gate itself
    server {
        listen 127.0.0.1:%%PORT1%%;
        portal_gate_company $http_x_company_id;
        portal_gate customer_portal off=@legacy;

        location /         { return 200 "site\n"; }
        location /public/  { portal_gate off; return 200 "public\n"; }
        location /api/     { portal_gate_api; }
        location @legacy   { return 200 "legacy site $portal_gate_reason\n"; }
    }
CONF
);
$ng->start;

my $put = $ng->put_snapshot({revision => 1, environments => {
    production => { customer_portal => { rollout => 0, allow => [$on] } } }});
is($put->{status}, 200, 'the test snapshot is accepted') or diag($put->{content});

subtest 'off=403 answers 403 to an off company, the page to an on one' => sub {
    is($ng->get('/forbidden/', company => $off)->{status}, 403, 'off: 403');
    my $r = $ng->get('/forbidden/', company => $on);
    is($r->{status}, 200, 'on: 200');
    is($r->{content}, "v2\n", 'on: the page');
};

subtest 'off=@legacy serves the named location, which sees the gate variables' => sub {
    my $r = $ng->get('/fallback/', company => $off);
    is($r->{status}, 200, 'off: 200 from @legacy');
    is($r->{content}, "legacy rollout customer_portal off $off\n",
       'off: @legacy content, $portal_gate_* kept across the redirect');

    $r = $ng->get('/fallback/');
    is($r->{content}, "legacy no_company customer_portal off \n",
       'no company: @legacy with reason no_company');

    $r = $ng->get('/fallback/', company => $on);
    is($r->{status}, 200, 'on: 200');
    is($r->{content}, "v2\n", 'on: the v2 page');
};

subtest 'off=@legacy finishes the request: nginx closes the connection' => sub {
    # a leaked request reference keeps the connection open forever
    my $r = $ng->get('/fallback/', company => $off, timeout => 3);
    is($r->{status}, 200, 'GET: 200 from @legacy');
    ok($r->{closed}, 'GET: the connection was closed');

    $r = $ng->request('POST', '/fallback/', company => $off, timeout => 3,
                      body => 'x' x 100_000);
    is($r->{content}, "legacy rollout customer_portal off $off\n",
       'POST with a body: @legacy content');
    ok($r->{closed}, 'POST with a body: the connection was closed');
};

subtest 'off=URL redirects with 302 and a Location built from variables' => sub {
    my $r = $ng->get('/moved/a/b?x=1', company => $off);
    is($r->{status}, 302, 'off: 302');
    is($r->{headers}{location}, 'https://legacy.example.com/moved/a/b?x=1',
       'off: Location with $request_uri');

    $r = $ng->get('/moved/a/b?x=1', company => $on);
    is($r->{status}, 200, 'on: 200');
    is($r->{headers}{location}, undef, 'on: no Location');
};

subtest 'off=/path redirects with 302 to that path' => sub {
    my $r = $ng->get('/relative/', company => $off);
    is($r->{status}, 302, 'off: 302');
    like($r->{headers}{location} // '', qr{^(?:http://[^/]+)?/legacy-home/$},
         'off: Location is /legacy-home/');
};

subtest 'the gate holds in front of `return 302` (no silent bypass)' => sub {
    my $r = $ng->get('/p/', company => $off);
    is($r->{status}, 404, 'off: 404, not the redirect');
    is($r->{headers}{location}, undef, 'off: no Location');

    $r = $ng->get('/p/', company => $on);
    is($r->{status}, 302, 'on: the 302');
    is($r->{headers}{location}, 'https://portal.example.com/', 'on: Location');
};

subtest 'the gate holds in front of `return 200`' => sub {
    is($ng->get('/r200/', company => $off)->{status}, 404, 'off: 404');
    is($ng->get('/r200/', company => $on)->{content}, "v2\n", 'on: the page');
};

subtest 'the gate holds in front of `rewrite ... last`' => sub {
    my $r = $ng->get('/rw/x', company => $off);
    is($r->{status}, 404, 'off: 404, the rewrite did not run');
    isnt($r->{content}, "target /target/x\n", 'off: not the rewrite target');

    $r = $ng->get('/rw/x', company => $on);
    is($r->{status}, 200, 'on: 200');
    is($r->{content}, "target /target/x\n", 'on: the rewrite target');
};

subtest 'the gate holds in front of `rewrite ... break`' => sub {
    my $r = $ng->get('/rb/page.txt', company => $off);
    is($r->{status}, 404, 'off: 404');
    isnt($r->{content}, "static page\n", 'off: not the file');

    $r = $ng->get('/rb/page.txt', company => $on);
    is($r->{status}, 200, 'on: 200');
    is($r->{content}, "static page\n", 'on: the rewritten file');
};

subtest 'as documented, the gate runs before `set` in the same location' => sub {
    my $r = $ng->get('/set/', company => $on);
    is($r->{status}, 404, 'the company from `set` is not seen: 404');
    is($r->{headers}{'x-reason'}, 'no_company', 'reason no_company');
};

subtest 'a nested location inherits the gate' => sub {
    is($ng->get('/n/inner/', company => $off)->{status}, 404, 'off: 404');
    is($ng->get('/n/inner/', company => $on)->{content}, "inner\n", 'on: served');
};

subtest '`portal_gate off;` lifts the inherited gate' => sub {
    my $r = $ng->get('/n/open/', company => $off);
    is($r->{status}, 200, 'off company: 200');
    is($r->{content}, "open\n", 'off company: served');
    is($ng->get('/n/open/')->{status}, 200, 'no company: 200');
};

subtest 'the fallback passes once: a redirect from it back under the gate is gated again' => sub {
    # rewrite ... last from the named location back into /again/
    my $r = $ng->get('/again/', company => $off);
    isnt($r->{content}, "v2\n", 'rewrite: an off company never gets the portal');
    is($r->{status}, 500, 'rewrite: nginx ends the redirect cycle with 500');
    ok(scalar $ng->log_lines(qr/rewrite or internal redirection cycle/),
       'rewrite: nginx logs the cycle');

    # try_files in the named location falling back to a gated URI
    $r = $ng->get('/tf/', company => $off);
    isnt($r->{content}, "v2\n", 'try_files: an off company never gets the portal');

    $r = $ng->get('/again/', company => $on);
    is($r->{content}, "v2\n", 'an on company still gets the portal');
};

subtest 'a server-wide gate does not gate the API location' => sub {
    my $r = $ng->api('GET', 'status', undef, prefix => '/api/',
                     port => $ng->extra_port(1), company => $off);
    is($r->{status}, 200, 'an off company still reaches the API');
    is(($r->{json} // {})->{revision}, 1, 'and gets the JSON status');
};

subtest 'a server-wide gate covers every location of the server' => sub {
    my %o = (port => $ng->extra_port(1));
    my $r = $ng->get('/anything', %o, company => $on);
    is($r->{content}, "site\n", 'on: the site');

    $r = $ng->get('/anything', %o, company => $off);
    is($r->{status}, 200, 'off: 200 from @legacy');
    is($r->{content}, "legacy site rollout\n",
       'off: the fallback, which inherits the gate, is served without a loop');

    $r = $ng->get('/public/', %o, company => $off);
    is($r->{content}, "public\n", '`portal_gate off;` opens /public/');
};

$ng->no_bad_log_lines;

done_testing;
