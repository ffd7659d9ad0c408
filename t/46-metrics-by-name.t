# $portal_flag_NAME read by name (ngx_http_get_variable(), as Lua's ngx.var
# and njs's r.variables do): the caller's buffer holds the name, and the
# next read overwrites it; each flag must still be counted once a request,
# under its own name. Needs Debian's libnginx-mod-http-lua (make test
# installs it).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Test qw(require_module);
use PortalGate::Scrape qw(metrics);
use PortalGate::EdgeMetrics qw(dec counter_samples delta);

require_module();

my $dir = '/usr/lib/nginx/modules';
plan skip_all => 'libnginx-mod-http-lua is not installed'
    unless -f "$dir/ngx_http_lua_module.so" && -f "$dir/ndk_http_module.so";

my $ng = PortalGate::Test->new(
    modules => ["$dir/ndk_http_module.so", "$dir/ngx_http_lua_module.so"],
    server => <<'CONF');
        location /lua/ { content_by_lua_block {
            ngx.say(ngx.var.portal_flag_f, ngx.var.portal_flag_g,
                    ngx.var.portal_flag_f)
        } }
        location = /metrics { portal_gate_metrics; }
CONF
$ng->start;

is($ng->put_snapshot({revision => 1, environments => { production => {
    f => { rollout => 100 }, g => { rollout => 100 } } }})->{status}, 200,
   'the snapshot is applied');

my $before = counter_samples(metrics($ng->get('/metrics')->{content}));
my $r;
$r = $ng->get('/lua/', company => '12') for 1 .. 3;
is($r->{content}, "111\n", 'f, g and f again: all on');
my $d = delta($before,
              counter_samples(metrics($ng->get('/metrics')->{content})));
is_deeply($d, { dec('production', 'f', 'on', 'rollout') => 3,
                dec('production', 'g', 'on', 'rollout') => 3 },
          'three requests: each flag once a request, under its own name')
    or diag(explain $d);

$ng->no_bad_log_lines;
done_testing();
