#!/usr/bin/perl
# The C unit tests of the controller's Redis URLs and connections
# (controller/pg_redis.c), which start their own redis-servers.
# Built by `make unit` with ASan and UBSan; they print TAP.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use PortalGate::Unit;

PortalGate::Unit::run('test-redis-url');
