package PortalGate::Unit;

# Runs one of the C unit test programs that `make unit` builds with
# AddressSanitizer and UndefinedBehaviorSanitizer, in place of the .t
# file: the program prints TAP itself.
#
#   use PortalGate::Unit; PortalGate::Unit::run('test-core');

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);

sub run {
    my ($name) = @_;
    my $bin = abs_path(dirname(__FILE__) . '/../../..') . "/build/$name";

    if (!-x $bin) {
        print "Bail out! $bin is missing: run `make unit` (make test does)\n";
        exit 255;
    }

    # A sanitizer report ends the run with a non-zero status, which prove
    # counts as a failure even when every TAP line said ok.
    $ENV{ASAN_OPTIONS} = 'detect_leaks=1:abort_on_error=0:exitcode=23';
    $ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1:exitcode=24';

    exec $bin or die "cannot run $bin: $!\n";
}

1;
