package PortalGate::Token;

# Keys and company tokens for the tests, good and deliberately broken,
# made by build/test-token-mint (t/unit/token_mint.c: the core's own
# signer; bookworm's perl has no ES256).
#
#   my $keys = PortalGate::Token->new;
#   $keys->add(hs256 => 'hs1');                 # a new key, kept here
#   $keys->add(es256 => 'es1');
#   $keys->write_jwks("$dir/keys.json", qw(hs1 es1));  # the edge's: no "d"
#   my $tok = $keys->mint(es1 => {cid => '1001', exp => time + 600});
#
# mint(KID, PAYLOAD, %o): PAYLOAD is a hash (encoded here) or JSON text
# used as it is; %o: header => TEXT (the header's text as it is), der => 1
# (ES256 in DER), none => 1 (no signature), hmac => SECRET (HS256 keyed
# with SECRET, whatever KID is). Functions: b64url, b64url_decode,
# tamper_payload(TOKEN, HASH) (another payload under the same signature).

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use JSON::PP;
use MIME::Base64 qw(encode_base64url decode_base64url);

use Exporter qw(import);
our @EXPORT_OK = qw(b64url b64url_decode tamper_payload);

my $ROOT = abs_path(dirname(__FILE__) . '/../../..');
my $MINT = "$ROOT/build/test-token-mint";
my $JSON = JSON::PP->new->canonical->utf8;

sub b64url        { encode_base64url($_[0]) }
sub b64url_decode { decode_base64url($_[0]) }

sub new {
    my ($class) = @_;
    die "$MINT is missing: run make unit\n" unless -x $MINT;
    return bless {
        keys => {},
        order => [],
        dir => tempdir('portal-gate-keys-XXXXXX', TMPDIR => 1,
                       CLEANUP => 1),
    }, $class;
}

sub _run {
    my (@args) = @_;
    open my $fh, '-|', $MINT, @args or die "cannot run $MINT: $!\n";
    local $/;
    my $out = <$fh>;
    close $fh or die "test-token-mint @args[0 .. 1] failed\n";
    $out =~ s/\n\z//;
    return $out;
}

# A new key of kind hs256 or es256 named kid; returns its JWK (a hash).
sub add {
    my ($self, $kind, $kid) = @_;
    my $jwk = $JSON->decode(_run('keygen', $kind, $kid));
    push @{ $self->{order} }, $kid unless $self->{keys}{$kid};
    $self->{keys}{$kid} = $jwk;
    return $jwk;
}

sub jwk { $_[0]{keys}{$_[1]} // die "no key $_[1]\n" }

# The JWKS of the kids given (all when none), without "d" unless
# private => 1, as text.
sub jwks {
    my ($self, @kids) = @_;
    my $private = @kids && $kids[0] eq 'private' ? shift @kids : 0;
    @kids = @{ $self->{order} } unless @kids;
    my @keys = map {
        my %k = %{ $self->jwk($_) };
        delete $k{d} unless $private;
        \%k;
    } @kids;
    return $JSON->encode({keys => \@keys});
}

sub write_jwks {
    my ($self, $path, @kids) = @_;
    my $text = $self->jwks(@kids);
    open my $fh, '>', "$path.tmp" or die "cannot write $path: $!\n";
    print {$fh} $text;
    close $fh or die "cannot write $path: $!\n";
    rename "$path.tmp", $path or die "cannot rename to $path: $!\n";
    return $text;
}

sub mint {
    my ($self, $kid, $payload, %o) = @_;
    my $signer = "$self->{dir}/signer.json";
    $self->write_jwks($signer, 'private');

    my @opts;
    push @opts, '--header', $o{header} if defined $o{header};
    push @opts, '--der' if $o{der};
    push @opts, '--none' if $o{none};
    push @opts, '--hmac', $o{hmac} if defined $o{hmac};

    my $text = ref $payload ? $JSON->encode($payload) : $payload;
    return _run('sign', @opts, $signer, $kid, $text);
}

# The token's payload replaced by another, its header and signature kept.
sub tamper_payload {
    my ($token, $payload) = @_;
    my ($h, undef, $s) = split /\./, $token, -1;
    return join '.', $h, b64url($JSON->encode($payload)), $s;
}

1;
