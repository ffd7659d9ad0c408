# audit prints each entry on one line that cannot be forged: control
# characters (from an old entry or another tool's) and the Unicode marks
# that reorder or break a line are shown escaped; --json keeps the text
# as stored. Real redis-server.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";

use Encode qw(encode_utf8);
use JSON::PP;
use Test::More;
use PortalGate::Redis qw(exits);

my $rs = PortalGate::Redis->new;

sub ctl { $rs->ctl(@_) }

exits(ctl('init'), 0, 'init');
exits(ctl('create', 'f'), 0, 'create');

# an entry as another tool might have written it
$rs->cli('XADD', 'portal-gate:audit', '*', 'ts', '2026-01-01T00:00:00Z',
         'actor', encode_utf8("mallory\x{202E}nimda"), 'env', 'production',
         'flag', 'f', 'action', 'off', 'before', '', 'after', '',
         'reason', encode_utf8("ok\n2026-01-01T00:00:01Z  rev 9 root \e[8m"
                               . "x\x{2028}y\x{2066}z\x{85}"),
         'revision', '9');

my $r = ctl('audit', 'f');
exits($r, 0, 'audit');
my @lines = split /\n/, $r->{out};
is(scalar @lines, 2, 'one line per entry: the newline in a reason is shown');
my $line = $lines[0];
unlike($line, qr/[\x00-\x1f\x7f]/, 'no control character printed raw');
unlike($line, qr/\xe2\x80\xae|\xe2\x80\xa8|\xe2\x81\xa6|\xc2\x85/,
       'no direction override, isolate, separator or C1 printed raw');
like($line, qr/mallory\\u202enimda/, 'the override shown as \\u202e');
like($line, qr/ok\\x0a2026.*\\x1b\[8mx\\u2028y\\u2066z\\u0085/,
     'each shown escaped, in place');

my $j = decode_json($rs->ctl('audit', '--json', 'f')->{out});
is($j->[0]{reason}, "ok\n2026-01-01T00:00:01Z  rev 9 root \e[8m"
                    . "x\x{2028}y\x{2066}z\x{85}", '--json keeps the text');

done_testing;
