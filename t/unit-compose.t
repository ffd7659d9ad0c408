#!/usr/bin/perl
# The C unit tests of pgd_compose() (controller/pgd_compose.c): what the
# edges get from whatever the store holds, fed store reads and last good
# snapshots directly, with no Redis. Built by `make unit` with ASan and
# UBSan; they print TAP.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use PortalGate::Unit;

PortalGate::Unit::run('test-compose');
