#!/usr/bin/perl
# The C unit tests of the ACME client's parts that need no CA
# (controller/pg_acme_msg.c, and pg_acme.c before the network): the JWS a
# CA verifies, RFC 7638 thumbprints, problem documents, profiles and
# renewalInfo in recorded directories, Retry-After, the account key made
# at 0600; and whole issuances against a CA inside the test program
# (t/unit/acme_ca.h, libcurl's easy calls answered in C) for what a CA
# does not do on demand: hostile orders, hung or missing answers, odd
# states. Built by `make unit` with ASan and UBSan; they print TAP.
# t/unit-acme-pebble.t issues against a real pebble.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use PortalGate::Unit;

PortalGate::Unit::run('test-acme');
