#!/usr/bin/perl
# The state-file reader (include/pg_state.c) against FIFOs, directories,
# links, huge sparse files and corrupt snapshots at the state file's path.
# Built by `make unit` with ASan and UBSan; it prints TAP.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use PortalGate::Unit;

PortalGate::Unit::run('test-state');
