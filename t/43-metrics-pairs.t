# portal_gate_metrics past its 1,024 (environment, flag) pairs: the rest
# count under env="(other)",flag="(other)", the error log says so once, and
# portal_gate_metrics_pairs_full tells the scrape.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use PortalGate::Test qw(require_module);
use PortalGate::Scrape qw(metrics promtool);

require_module();

my $n = 1030;
my @flags = map { sprintf 'f%04d', $_ } 0 .. $n - 1;

# one request evaluates every flag, 100 to a set (a parameter's limit)
my ($sets, $all) = ('', '');
for my $i (0 .. int(($n - 1) / 100)) {
    my $last = $i * 100 + 99 < $n ? $i * 100 + 99 : $n - 1;
    my @part = @flags[$i * 100 .. $last];
    $sets .= "set \$a$i \"" . join('', map { "\$portal_flag_$_" } @part)
           . "\";\n";
    $all .= "\$a$i";
}

my $ng = PortalGate::Test->new(workers => 1, server => <<"CONF");
        location = /all     { $sets return 200 "$all"; }
        location = /metrics { portal_gate_metrics; }
CONF
$ng->start;

my $put = $ng->put_snapshot({revision => 1, environments => {
    production => { map { ($_ => { rollout => 100 }) } @flags } }});
is($put->{status}, 200, "a snapshot of $n flags") or diag($put->{content});

my $m;
for my $round (1, 2) {
    my $r = $ng->get('/all', company => '12');
    is(length $r->{content}, $n, "round $round: every flag evaluated");

    my $text = $ng->get('/metrics')->{content};
    $m = metrics($text);

    my @own = grep { /^portal_gate_decisions_total\{env="production"/ }
              keys %$m;
    is(scalar @own, 1024, '1,024 pairs have series of their own');

    my $other = 0;
    $other += $m->{$_}
        for grep { /^portal_gate_decisions_total\{env="\(other\)",flag="\(other\)"/ }
            keys %$m;
    # each flag decided once a request, under (other) too
    is($m->{$own[0]}, $round, 'a pair of its own counts once a request');
    is($other, $round * ($n - 1024), 'the rest count under (other)');
    is($m->{portal_gate_metrics_pairs_full}, 1, 'the scrape says it is full');

    my ($ok, $said) = promtool($text);
    ok($ok, 'promtool check metrics finds nothing to say') or diag($said);
}

my @warn = $ng->log_lines(qr/\[warn\].*more than 1024 \(environment, flag\) pairs/);
is(scalar @warn, 1, 'the error log says so once') or diag(join "\n", @warn);

$ng->no_bad_log_lines;

done_testing();
