#!/usr/bin/perl
# The C unit tests of portal-gated's configuration file
# (controller/pg_conf.c), built by `make unit` with AddressSanitizer and
# UndefinedBehaviorSanitizer. They write their files into a scratch folder
# and print TAP.

use strict;
use warnings;
use FindBin;

my $bin = "$FindBin::Bin/../build/test-conf";

if (!-x $bin) {
    print "Bail out! $bin is missing: run `make unit` (make test does)\n";
    exit 255;
}

# A sanitizer report ends the run with a non-zero status, which prove
# counts as a failure even when every TAP line said ok.
$ENV{ASAN_OPTIONS} = 'detect_leaks=1:abort_on_error=0:exitcode=23';
$ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1:exitcode=24';

exec $bin or die "cannot run $bin: $!\n";
