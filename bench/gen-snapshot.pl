#!/usr/bin/perl
# Writes a benchmark snapshot (compact JSON) to stdout:
#   gen-snapshot.pl REVISION ALLOWED [FLAGS] [ROLLOUT]
# production holds FLAGS flags (default 20); customer_portal allows ALLOWED
# companies (ids "1000000", "1000001", ...) with ROLLOUT percent (default 25)
# and each other flag requires customer_portal and allows the two pilots.
# staging holds the same flags at rollout 100 with empty lists.

use strict;
use warnings;
use JSON::PP;

my ($revision, $allowed, $nflags, $rollout) = @ARGV;
die "usage: $0 REVISION ALLOWED [FLAGS] [ROLLOUT]\n"
    unless defined $allowed && $revision =~ /^\d+$/ && $allowed =~ /^\d+$/;
$nflags  //= 20;
$rollout //= 25;

# the first allowed company is 1000000: the benchmark's X-Company-Id
my @allow = map { "" . (1000000 + $_) } 0 .. $allowed - 1;

my (%prod, %staging);
$prod{customer_portal} = {
    enabled => JSON::PP::true, rollout => $rollout + 0,
    allow => \@allow, deny => ["999999"],
    description => "new customer portal", version => 1,
};
$staging{customer_portal} = {
    enabled => JSON::PP::true, rollout => 100, allow => [], deny => [],
};

for my $i (1 .. $nflags - 1) {
    my $name = sprintf "customer_portal_feature_%02d", $i;
    $prod{$name} = {
        enabled => JSON::PP::true, requires => "customer_portal",
        rollout => ($i % 5) * 5, allow => ["1001", "1002"], deny => [],
        version => 1,
    };
    $staging{$name} = {
        enabled => JSON::PP::true, requires => "customer_portal",
        rollout => 100, allow => [], deny => [],
    };
}

print JSON::PP->new->canonical->encode({
    revision     => $revision + 0,
    environments => { production => \%prod, staging => \%staging },
}), "\n";
