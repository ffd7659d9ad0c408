# portal-gated's status page (issue 11) in a real browser: headless
# Chromium (Debian's) opens http://LISTEN/ and keeps it open over the
# DevTools protocol; the test reads the rendered DOM: every environment's
# flags with their state, rollout and lists, the edges in step, the audit.
# A kill made while the page stays open shows there by itself (the page
# polls status.json). Operator text (a description, a reason) with markup
# in it shows as text and runs nothing. A screenshot is kept: its path is
# printed, and a copy goes to /tmp/portal-gate-status.png.
# Real redis-server, two real nginx edges, the ASan controller.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Copy qw(copy);
use File::Temp qw(tempdir);
use JSON::PP;
use Time::HiRes qw(time);
use Test::More;
use PortalGate::Chromium;
use PortalGate::Gated qw(clean_exit wait_until two_edges);
use PortalGate::Redis qw(exits);
use PortalGate::Scrape qw(free_port http_get);
use PortalGate::Test qw(require_module);

require_module();
plan skip_all => 'chromium is not installed (make test installs it)'
    unless PortalGate::Chromium::binary();

my $dir = tempdir('pg-status-page-XXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{PG_TEST_KEEP});
my $rs = PortalGate::Redis->new;
my $e = two_edges();
my $port = free_port();
my $url = "http://127.0.0.1:$port/";

my $XSS = q{<img src=x onerror="document.title='pwned'">};
my $REASON = q{<script>document.title='pwned'</script> incident 42};

sub ctl { exits($rs->ctl(@_), 0, join(' ', @_)) }

ctl('init');
ctl('create', 'customer_portal');
ctl('rollout', 'customer_portal', '12.5');
ctl('set', 'customer_portal', "description=$XSS");
ctl('create', 'customer_portal_calls');
ctl('set', 'customer_portal_calls', 'requires=customer_portal');
ctl('allow', 'customer_portal_calls', '1001', '1002');
ctl('deny', 'customer_portal_calls', '99');
ctl('-e', 'staging', 'create', 'customer_portal');
ctl('-e', 'staging', 'rollout', 'customer_portal', '100');

my $gd = PortalGate::Gated->new(redis => $rs->url,
                                edges => [@$e{qw(tcp_url unix_url)}],
                                environments => [qw(production staging)],
                                reconcile => '500ms',
                                extra => "listen 127.0.0.1:$port;\n");
$gd->start;
ok(wait_until(sub { (http_get("${url}healthz")->{content} // '')
                    =~ /"status":"ok"/ }, 10),
   'the controller is ok: both edges in step') or diag($gd->log);

my $br = PortalGate::Chromium->new(dir => $dir, size => '1280,1100');
my $tab = $br->open_tab($url);

# what the page shows of a flag: {state, rollout, allow, deny, requires,
# killed, desc, width} or null
sub row {
    my ($env, $flag) = @_;
    return $br->eval($tab, <<"JS");
(function () {
  var r = document.querySelector('tr.flag[data-env="$env"][data-flag="$flag"]');
  if (!r) { return null; }
  var d = r.querySelector('.desc');
  return { state: r.querySelector('td.state').textContent,
           rollout: r.querySelector('td.rollout .pct').textContent,
           width: r.querySelector('td.rollout .fill').style.width,
           allow: r.querySelector('td.allow').textContent,
           deny: r.querySelector('td.deny').textContent,
           requires: r.querySelector('td.requires').textContent,
           killed: r.classList.contains('killed'),
           desc: d ? d.textContent : null };
})()
JS
}

subtest 'the page shows every environment\'s flags' => sub {
    ok($br->wait_for($tab, q{document.querySelector('tr.flag[data-env="staging"]')}, 20),
       'the page rendered the flags') or diag($gd->log);

    my $r = row('production', 'customer_portal');
    is($r->{state}, 'ON', 'customer_portal: ON');
    is($r->{rollout}, '12.5%', 'customer_portal: rollout 12.5%');
    is($r->{width}, '12.5%', 'customer_portal: its bar is 12.5% wide');
    ok(!$r->{killed}, 'customer_portal: not killed');

    $r = row('production', 'customer_portal_calls');
    is($r->{allow}, '2', 'customer_portal_calls: 2 allowed');
    is($r->{deny}, '1', 'customer_portal_calls: 1 denied');
    is($r->{requires}, 'customer_portal', '... requires customer_portal');
    is($r->{rollout}, '0%', '... rollout 0%');

    $r = row('staging', 'customer_portal');
    is($r->{rollout}, '100%', 'staging customer_portal: 100%');

    is($br->eval($tab, q{document.querySelectorAll('tr.edge').length}), 2,
       'two edges listed');
    is($br->eval($tab, q{Array.from(document.querySelectorAll('tr.edge td.lag'))
                            .filter(function (t) { return t.textContent === 'in step'; })
                            .length}), 2,
       'both in step');
    ok($br->wait_for($tab, q{document.querySelectorAll('tr.audit').length >= 8}),
       'the audit lists the changes');
    is($br->eval($tab, q{document.getElementById('health').textContent}), 'OK',
       'health: OK');
};

subtest 'operator text is shown as text, never run' => sub {
    my $r = row('production', 'customer_portal');
    is($r->{desc}, $XSS, 'the description with markup shows as its text');
    is($br->eval($tab, q{document.querySelectorAll('main img, main script').length}),
       0, 'no element was made of it');
    is($br->eval($tab, 'document.title'), 'portal-gated', 'nothing ran');
};

subtest 'a kill shows on the open page by itself' => sub {
    my $t0 = time;
    ctl('kill', 'customer_portal', '--reason', $REASON);
    my $shown = $br->wait_for($tab, q{(function () {
        var r = document.querySelector('tr.flag[data-env="production"][data-flag="customer_portal"]');
        return r && r.classList.contains('killed'); })()}, 10);
    my $took = time - $t0;
    ok($shown, 'the row turns killed without a reload');
    diag(sprintf('the kill showed on the open page %.2f s after '
                 . 'portal-gatectl kill started (the page polls every 1 s)',
                 $took));
    my $r = row('production', 'customer_portal');
    is($r->{state}, 'KILLED', 'its state reads KILLED');
    is($r->{rollout}, '12.5%', 'its rollout is still shown');
    # the reason itself: the entry before has a reason too ("-")
    ok($br->wait_for($tab, q{(function () {
        var a = document.querySelector('tr.audit td.reason');
        return a && a.textContent.indexOf('incident 42') >= 0; })()}),
       'the kill is at the top of the audit');
    is($br->eval($tab, q{document.querySelector('tr.audit td.reason').textContent}),
       $REASON, 'its reason shows as text');
    is($br->eval($tab, 'document.title'), 'portal-gated', 'the reason ran nothing');
    like($br->eval($tab, q{document.querySelector('#envs h3').textContent}),
         qr/1 killed/, 'the environment says 1 killed');
};

subtest 'a controller that hangs: the open page says so, then recovers' => sub {
    ok($br->wait_for($tab, q{document.getElementById('banner').className === ''}),
       'no banner while it answers');
    kill 'STOP', $gd->pid;
    my $said = $br->wait_for($tab, q{document.getElementById('banner')
        .className === 'on' && document.body.classList.contains('stale')}, 15);
    my $text = $br->eval($tab, q{document.getElementById('banner').textContent});
    my $bg = $br->eval($tab, q{getComputedStyle(document.getElementById('health'))
                               .backgroundColor});
    kill 'CONT', $gd->pid;
    ok($said, 'stopped (SIGSTOP): a banner shows and the page greys');
    like($text, qr/^portal-gated does not answer.*: what is shown is from .*s ago$/,
         'the banner says since when what is shown is old') or diag($text);
    is($bg, 'rgb(238, 240, 243)', 'the health badge is grey, no live OK');
    ok($br->wait_for($tab, q{document.getElementById('banner').className === ''
        && !document.body.classList.contains('stale')}, 15),
       'answering again: the banner goes');
};

subtest 'a screenshot is kept' => sub {
    my $png = $br->screenshot($tab, "$dir/status.png");
    ok(-s $png > 10_000, 'a screenshot of the page');
    copy($png, '/tmp/portal-gate-status.png');
    diag("status page screenshot: $png (copied to /tmp/portal-gate-status.png)");
};

$br->stop;
clean_exit($gd->stop, $gd, 'SIGTERM');

done_testing;
