#!/usr/bin/perl
# The C unit tests of the shared core (include/).
# Built by `make unit` with ASan and UBSan; they print TAP.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use PortalGate::Unit;

PortalGate::Unit::run('test-core');
