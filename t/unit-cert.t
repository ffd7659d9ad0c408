#!/usr/bin/perl
# The C unit tests of the certificates' toolbox (controller/pg_cert.c:
# keys, CSRs, X.509, renewal times, ARI) and of installing a pair for
# nginx (controller/pg_cert_install.c, with a fake nginx and master in a
# scratch folder). Built by `make unit` with ASan and UBSan; they print TAP.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use PortalGate::Unit;

PortalGate::Unit::run('test-cert');
