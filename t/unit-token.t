#!/usr/bin/perl
# The C unit tests of the company tokens' core (include/pg_token.c: the
# JWKS parser, the verifier, signing and key generation) and of strict
# base64url (include/pg_b64.c). Built by `make unit` with ASan and UBSan;
# they print TAP.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use PortalGate::Unit;

PortalGate::Unit::run('test-token');
