#!/usr/bin/perl
# The C unit tests of portal-gated's configuration file
# (controller/pg_conf.c), which write their files into a scratch folder.
# Built by `make unit` with ASan and UBSan; they print TAP.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use PortalGate::Unit;

PortalGate::Unit::run('test-conf');
