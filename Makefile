# portal-gate
#
#   make          build build/ngx_http_portal_gate_module.so,
#                 build/portal-gated and build/portal-gatectl
#   make test     build everything, run every test (prove -r t), then the
#                 nginx tests again with nginx under valgrind
#   make demo     Redis, two nginx edges and portal-gated on loopback,
#                 seeded with the rollout scenario
#   make bench    benchmarks; figures go to bench/RESULTS.md by hand
#   make deb      Debian packages into build/deb/ (debian/)
#   make test-deb install them here, check them, purge them (as root)
#
# Each target first installs the Debian packages it needs (tools/deps.sh).

SHELL       := /bin/bash

NGX_SRC     ?= /usr/share/nginx/src
BUILD       := build
NGX_BUILD   := $(BUILD)/nginx
MODULE      := $(BUILD)/ngx_http_portal_gate_module.so

# Debian's nginx was built with these compiler and linker options
# (`nginx -V`); the module is built with the same ones.
NGX_CC_OPT  := -g -O2 -fstack-protector-strong -Wformat \
               -Werror=format-security -fPIC -Wdate-time -D_FORTIFY_SOURCE=2
NGX_LD_OPT  := -Wl,-z,relro -Wl,-z,now -fPIC

CORE_SRCS   := $(wildcard include/pg_*.c)
CORE_HDRS   := $(wildcard include/*.h)
MODULE_SRCS := $(wildcard ngx_module/*.c ngx_module/*.h)

# The unit tests and (later) the controller run under ASan and UBSan.
SAN_CFLAGS  := -std=gnu99 -Wall -Wextra -Werror -g -O1 \
               -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=all
# libcrypto: the company tokens (include/pg_token.c) verify and sign
CORE_LIBS   := -ljansson -lm -lcrypto

# portal-gatectl and portal-gated: the core plus the controller's sources.
# make test runs builds under ASan and UBSan (build/asan/); make builds
# optimised ones.
# a Redis URL and a connection to it; a sentinel URL's discovery apart
REDIS_SRCS  := controller/pg_redis.c controller/pg_redis_sentinel.c
LIB_SRCS    := controller/pg_ctl_store.c controller/pg_ctl_store_envs.c \
               controller/pg_ctl_store_log.c controller/pg_ctl_store_digest.c \
               $(REDIS_SRCS) controller/pg_edge.c \
               controller/pg_curl.c controller/pg_conf.c \
               controller/pg_conf_cert.c
CTL_SRCS    := controller/portal-gatectl.c controller/pg_ctl_change.c \
               controller/pg_ctl_read.c controller/pg_ctl_edges.c \
               controller/pg_ctl_direct.c controller/pg_ctl_cert.c \
               controller/pg_ctl_token.c controller/pg_ctl_ha.c \
               controller/pg_cert.c $(LIB_SRCS)
GATED_SRCS  := controller/portal-gated.c controller/pgd_files.c \
               controller/pgd_redis.c controller/pgd_sentinel.c \
               controller/pgd_store.c controller/pgd_delta.c \
               controller/pgd_digest.c \
               controller/pgd_compose.c \
               controller/pgd_edges.c controller/pgd_beat.c \
               controller/pgd_certs.c controller/pgd_certs_job.c \
               controller/pgd_challenges.c \
               controller/pgd_http.c controller/pgd_http_conn.c \
               controller/pgd_http_render.c \
               controller/pg_cert.c controller/pg_cert_renew.c \
               controller/pg_cert_install.c controller/pg_cert_nginx.c \
               controller/pg_acme.c controller/pg_acme_msg.c \
               $(LIB_SRCS)
CTL_HDRS    := $(wildcard controller/*.h)
CTL_CFLAGS  := -std=gnu99 -Wall -Wextra -Wno-unused-parameter -Werror -g \
               -Iinclude -Icontroller
# no -lcurl: libcurl is dlopen()ed when a command first asks an edge
# (controller/pg_curl.h: linked, it cost every run ~20 ms to load); its
# headers (libcurl4-openssl-dev) still give the types. dlopen is in libc.
CTL_LIBS    := -lhiredis $(CORE_LIBS)
# portal-gated also issues certificates: OpenSSL, and a worker thread;
# and serves `listen` (/metrics, /healthz, the status page) with
# libmicrohttpd, in its loop
GATED_LIBS  := $(CTL_LIBS) -lssl -lcrypto -lpthread -lmicrohttpd
# the status page is built into portal-gated as is (.incbin, pgd_http.c),
# named by its absolute path: the assembler would read a relative one from
# the compiler's working directory (another file there, or none)
GATED_PAGE  := controller/pgd_http_page.html
GATED_PAGE_DEF := -DPGD_HTTP_PAGE='"$(abspath $(GATED_PAGE))"'

BUILD_PKGS  := gcc make nginx nginx-dev libjansson-dev libhiredis-dev \
               libcurl4-openssl-dev libssl-dev libmicrohttpd-dev
# prometheus: promtool checks the metrics; chromium: the status page
TEST_PKGS   := $(BUILD_PKGS) perl curl valgrind redis-server gdb openssl pebble \
               redis-sentinel prometheus chromium libnginx-mod-http-lua
BENCH_PKGS  := $(TEST_PKGS) wrk certbot

.PHONY: all deps module ctl gated unit test demo bench bench-token \
        bench-metrics clean

all: module ctl gated

deps:
	@tools/deps.sh $(BUILD_PKGS)

module: deps $(MODULE)

# Configure once: it takes ~20 s. Re-run only when `config` changes.
$(NGX_BUILD)/objs/Makefile: config
	rm -rf $(NGX_BUILD)
	mkdir -p $(BUILD)
	cp -r $(NGX_SRC) $(NGX_BUILD)
	cd $(NGX_BUILD) && source ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --with-cc-opt="$(NGX_CC_OPT)" --with-ld-opt="$(NGX_LD_OPT)" \
	        --add-dynamic-module=$(CURDIR) > configure.log 2>&1 \
	    || { tail -30 configure.log; exit 1; }

$(MODULE): $(NGX_BUILD)/objs/Makefile $(CORE_SRCS) $(CORE_HDRS) \
           $(MODULE_SRCS)
	$(MAKE) -C $(NGX_BUILD) -f objs/Makefile modules
	@# a new file, renamed over the old: overwriting in place would crash
	@# (SIGBUS) an nginx that has the old one loaded
	cp $(NGX_BUILD)/objs/ngx_http_portal_gate_module.so $@.tmp
	mv -f $@.tmp $@

ctl: deps $(BUILD)/portal-gatectl

# CPPFLAGS, CFLAGS and LDFLAGS (none by default) reach these two
# release builds only: debian/rules passes dpkg-buildflags' hardening.
# Each controller binary is linked to a new file, then renamed over the old
# one: a test that runs the old one meanwhile (the working tree is shared)
# never finds it half-written ("Permission denied", a truncated file).
$(BUILD)/portal-gatectl: $(CTL_SRCS) $(CTL_HDRS) $(CORE_SRCS) $(CORE_HDRS)
	@mkdir -p $(BUILD)
	$(CC) $(CTL_CFLAGS) -O2 $(CPPFLAGS) $(CFLAGS) $(CORE_SRCS) $(CTL_SRCS) \
	    $(LDFLAGS) $(CTL_LIBS) -o $@.tmp
	mv -f $@.tmp $@

gated: deps $(BUILD)/portal-gated

# an edit of the page rebuilds the daemon: it is in the binary
$(BUILD)/portal-gated: $(GATED_SRCS) $(GATED_PAGE) $(CTL_HDRS) $(CORE_SRCS) \
                       $(CORE_HDRS)
	@mkdir -p $(BUILD)
	$(CC) $(CTL_CFLAGS) $(GATED_PAGE_DEF) -O2 $(CPPFLAGS) $(CFLAGS) \
	    $(CORE_SRCS) $(GATED_SRCS) $(LDFLAGS) $(GATED_LIBS) -o $@.tmp
	mv -f $@.tmp $@

$(BUILD)/asan/portal-gated: $(GATED_SRCS) $(GATED_PAGE) $(CTL_HDRS) \
                            $(CORE_SRCS) $(CORE_HDRS)
	@mkdir -p $(BUILD)/asan
	$(CC) $(SAN_CFLAGS) -Wno-unused-parameter -Iinclude -Icontroller \
	    $(GATED_PAGE_DEF) $(CORE_SRCS) $(GATED_SRCS) $(GATED_LIBS) -o $@.tmp
	mv -f $@.tmp $@

$(BUILD)/asan/portal-gatectl: $(CTL_SRCS) $(CTL_HDRS) $(CORE_SRCS) \
                              $(CORE_HDRS)
	@mkdir -p $(BUILD)/asan
	$(CC) $(SAN_CFLAGS) -Wno-unused-parameter -Iinclude -Icontroller \
	    $(CORE_SRCS) $(CTL_SRCS) $(CTL_LIBS) -o $@.tmp
	mv -f $@.tmp $@

$(BUILD)/test-redis-url: $(CORE_SRCS) $(CORE_HDRS) $(REDIS_SRCS) \
                         controller/pg_redis.h controller/pg_redis_private.h \
                         t/unit/test_redis_url.c \
                         t/unit/tap.h
	@mkdir -p $(BUILD)
	$(CC) $(SAN_CFLAGS) -Iinclude -Icontroller $(CORE_SRCS) \
	    $(REDIS_SRCS) t/unit/test_redis_url.c $(CTL_LIBS) -o $@

$(BUILD)/test-conf: $(CORE_SRCS) $(CORE_HDRS) $(CTL_HDRS) \
                    controller/pg_conf.c controller/pg_conf_cert.c \
                    controller/pg_edge.c \
                    controller/pg_curl.c $(REDIS_SRCS) \
                    t/unit/test_conf.c t/unit/tap.h
	@mkdir -p $(BUILD)
	$(CC) $(SAN_CFLAGS) -Wno-unused-parameter -Iinclude -Icontroller \
	    $(CORE_SRCS) $(REDIS_SRCS) controller/pg_edge.c \
	    controller/pg_curl.c controller/pg_conf.c controller/pg_conf_cert.c \
	    t/unit/test_conf.c \
	    $(CTL_LIBS) -o $@

# pgd_compose() alone: pure JSON in and out, no Redis, no curl
$(BUILD)/test-compose: $(CORE_SRCS) $(CORE_HDRS) $(CTL_HDRS) \
                       controller/pgd_compose.c t/unit/test_compose.c \
                       t/unit/tap.h
	@mkdir -p $(BUILD)
	$(CC) $(SAN_CFLAGS) -Wno-unused-parameter -Iinclude -Icontroller \
	    $(CORE_SRCS) controller/pgd_compose.c t/unit/test_compose.c \
	    $(CORE_LIBS) -o $@

# the certificates' toolbox and the ACME client (controller/pg_cert*.c,
# pg_acme.c), under the sanitizers; OpenSSL is linked, libcurl dlopen()ed
CERT_SRCS   := controller/pg_cert.c controller/pg_cert_renew.c
ACME_SRCS   := controller/pg_acme.c controller/pg_acme_msg.c \
               controller/pg_curl.c $(CERT_SRCS)
CERT_LIBS   := -lssl -lcrypto $(CORE_LIBS)

$(BUILD)/test-cert: $(CORE_SRCS) $(CORE_HDRS) $(CTL_HDRS) $(CERT_SRCS) \
                    controller/pg_cert_install.c controller/pg_cert_nginx.c \
                    t/unit/test_cert.c t/unit/tap.h
	@mkdir -p $(BUILD)
	$(CC) $(SAN_CFLAGS) -Iinclude -Icontroller $(CORE_SRCS) $(CERT_SRCS) \
	    controller/pg_cert_install.c controller/pg_cert_nginx.c \
	    t/unit/test_cert.c $(CERT_LIBS) -o $@

$(BUILD)/test-acme: $(CORE_SRCS) $(CORE_HDRS) $(CTL_HDRS) $(ACME_SRCS) \
                    t/unit/test_acme.c t/unit/acme_ca.h t/unit/tap.h
	@mkdir -p $(BUILD)
	$(CC) $(SAN_CFLAGS) -Iinclude -Icontroller $(CORE_SRCS) $(ACME_SRCS) \
	    t/unit/test_acme.c $(CERT_LIBS) -o $@

# pg_acme_issue() against a real pebble, for t/unit-acme-pebble.t
$(BUILD)/test-acme-issue: $(CORE_SRCS) $(CORE_HDRS) $(CTL_HDRS) $(ACME_SRCS) \
                          t/unit/acme_issue.c
	@mkdir -p $(BUILD)
	$(CC) $(SAN_CFLAGS) -Iinclude -Icontroller $(CORE_SRCS) $(ACME_SRCS) \
	    t/unit/acme_issue.c $(CERT_LIBS) -o $@

$(BUILD)/test-core: $(CORE_SRCS) $(CORE_HDRS) t/unit/test_core.c \
                    t/unit/tap.h
	@mkdir -p $(BUILD)
	$(CC) $(SAN_CFLAGS) -Iinclude $(CORE_SRCS) t/unit/test_core.c \
	    $(CORE_LIBS) -o $@

$(BUILD)/test-state: $(CORE_SRCS) $(CORE_HDRS) t/unit/test_state.c \
                     t/unit/tap.h
	@mkdir -p $(BUILD)
	$(CC) $(SAN_CFLAGS) -Iinclude $(CORE_SRCS) t/unit/test_state.c \
	    $(CORE_LIBS) -o $@

# the company tokens' core (include/pg_token.c), and the tool that mints
# the integration tests' tokens, broken ones included (t/35-token.t)
$(BUILD)/test-token: $(CORE_SRCS) $(CORE_HDRS) t/unit/test_token.c \
                     t/unit/tap.h
	@mkdir -p $(BUILD)
	$(CC) $(SAN_CFLAGS) -Iinclude $(CORE_SRCS) t/unit/test_token.c \
	    $(CORE_LIBS) -o $@

$(BUILD)/test-token-mint: $(CORE_SRCS) $(CORE_HDRS) t/unit/token_mint.c
	@mkdir -p $(BUILD)
	$(CC) $(SAN_CFLAGS) -Iinclude $(CORE_SRCS) t/unit/token_mint.c \
	    $(CORE_LIBS) -o $@

unit: deps $(BUILD)/test-core $(BUILD)/test-state $(BUILD)/test-redis-url \
      $(BUILD)/test-conf $(BUILD)/test-compose $(BUILD)/test-cert \
      $(BUILD)/test-acme $(BUILD)/test-acme-issue \
      $(BUILD)/test-token $(BUILD)/test-token-mint \
      $(BUILD)/asan/portal-gatectl $(BUILD)/asan/portal-gated

# The builds run two jobs at a time (2 cores: the build of a clean clone
# takes half the time); prove runs every test, two files at a time (most
# of a test's time is waiting on the programs it started, and make test
# must fit CI's budget on 2 cores); then the nginx tests run again with
# nginx under valgrind, which catches the module's memory errors.
test:
	@tools/deps.sh $(TEST_PKGS)
	$(MAKE) -j2 all unit
	$(MAKE) -j2 fuzz-smoke
	prove --timer -j2 -r t
	tools/valgrind-prove.sh

demo:
	@tools/deps.sh $(filter-out pebble,$(TEST_PKGS)) && { tools/deps.sh pebble \
	    || echo "demo: without pebble, it skips the staging certificate" >&2; }
	$(MAKE) module ctl gated
	tools/demo.sh

$(BUILD)/bench-eval: $(CORE_SRCS) $(CORE_HDRS) bench/bench_eval.c
	@mkdir -p $(BUILD)
	$(CC) -O2 -g -Iinclude $(CORE_SRCS) bench/bench_eval.c \
	    $(CORE_LIBS) -o $@

bench:
	@tools/deps.sh $(BENCH_PKGS)
	$(MAKE) module ctl gated $(BUILD)/bench-eval
	bench/run.sh

# what a company token costs: the core's verification and a cache hit, and
# the gate's throughput with HS256 and ES256 tokens beside the plain gate's
$(BUILD)/bench-token: $(CORE_SRCS) $(CORE_HDRS) bench/bench_token.c
	@mkdir -p $(BUILD)
	$(CC) -O2 -g -Iinclude $(CORE_SRCS) bench/bench_token.c \
	    $(CORE_LIBS) -o $@

bench-token:
	@tools/deps.sh $(BENCH_PKGS)
	$(MAKE) module $(BUILD)/bench-token
	bench/token.sh

# what portal_gate_metrics costs the gate (metrics on, off, plain nginx,
# side by side), and a scrape of 20 flags x 2 environments under load
bench-metrics:
	@tools/deps.sh $(BENCH_PKGS)
	$(MAKE) module
	bench/metrics.sh

# --- Debian packages (debian/, README "Install on Debian") ----------------
#
#   make deb       build/deb/*.deb (debug symbols in build/deb/dbgsym/),
#                  from a copy of the tree (build/deb-src/) with
#                  dpkg-buildpackage, then lintian (fails on an error)
#   make test-deb  make deb, then install the packages on this machine,
#                  check them and purge them (tools/test-deb.sh; as root)

DEB_PKGS    := $(BUILD_PKGS) debhelper dpkg-dev lintian
DEB_SRC     := $(BUILD)/deb-src

.PHONY: deb test-deb

deb:
	@tools/deps.sh $(DEB_PKGS)
	rm -rf $(DEB_SRC) $(BUILD)/deb
	mkdir -p $(DEB_SRC)/portal-gate $(BUILD)/deb
	tar -c --exclude=./build --exclude=./.git --exclude='./obj-*' . \
	    | tar -x -C $(DEB_SRC)/portal-gate
	cd $(DEB_SRC)/portal-gate && dpkg-buildpackage -b -us -uc
	@# a tag kept is explained in its debian/*.lintian-overrides
	lintian --fail-on error --info $(DEB_SRC)/*.changes
	@# the debug symbols aside, so that build/deb/*.deb is what to install
	mkdir -p $(BUILD)/deb/dbgsym
	mv $(DEB_SRC)/*-dbgsym_*.deb $(BUILD)/deb/dbgsym/
	mv $(DEB_SRC)/*.deb $(DEB_SRC)/*.buildinfo $(DEB_SRC)/*.changes \
	    $(BUILD)/deb/
	@ls -l $(BUILD)/deb/*.deb

# man-db: the man pages are checked; systemd: systemd-analyze verify and
# systemd-socket-activate (systemd need not run)
TEST_DEB_PKGS := $(DEB_PKGS) redis-server curl openssl man-db systemd

test-deb: deb
	@tools/deps.sh $(TEST_DEB_PKGS)
	tools/test-deb.sh

# --- fuzzing (fuzz/README.md) ---------------------------------------------
#
#   make fuzz                     build every libFuzzer target
#   make fuzz FUZZ_SECONDS=600    ... then run each for that long, in turn
#   make fuzz-smoke               each for FUZZ_SMOKE_SECONDS over its seeds
#   FUZZ_TARGETS="blob conf"      only these targets (either goal)
#
# One target per parser: fuzz/fuzz_NAME.c, seeds in fuzz/corpus/NAME/.

FUZZ_PKGS    := $(BUILD_PKGS) clang libclang-rt-dev
FUZZ_CC      := clang
FUZZ_CFLAGS  := -std=gnu99 -Wall -Wextra -Wno-unused-parameter -Werror -g \
                -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=all -Iinclude -Icontroller -Ifuzz
FUZZ_TARGETS ?= snapshot flag blob conf redis_url state token
FUZZ_SECONDS ?= 0
FUZZ_SMOKE_SECONDS ?= 5
FUZZ_BUILD   := $(BUILD)/fuzz
FUZZ_DEPS    := $(CORE_SRCS) $(CORE_HDRS) fuzz/fuzz.h
FUZZ_WALK    := fuzz/snap_walk.c
FUZZ_CONF    := controller/pg_conf.c controller/pg_conf_cert.c \
                controller/pg_edge.c \
                controller/pg_curl.c $(REDIS_SRCS)

.PHONY: fuzz fuzz-build fuzz-smoke

fuzz: fuzz-build
	@if [ "$(FUZZ_SECONDS)" != 0 ]; then \
	    fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS); fi

fuzz-smoke: fuzz-build
	fuzz/run.sh --smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

fuzz-build:
	@tools/deps.sh $(FUZZ_PKGS)
	$(MAKE) $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%) $(FUZZ_BUILD)/seeds/blob

$(FUZZ_BUILD)/fuzz_snapshot: fuzz/fuzz_snapshot.c $(FUZZ_WALK) $(FUZZ_DEPS)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CORE_SRCS) $(FUZZ_WALK) $< $(CORE_LIBS) -o $@

$(FUZZ_BUILD)/fuzz_blob: fuzz/fuzz_blob.c $(FUZZ_WALK) $(FUZZ_DEPS)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CORE_SRCS) $(FUZZ_WALK) $< $(CORE_LIBS) -o $@

$(FUZZ_BUILD)/fuzz_flag: fuzz/fuzz_flag.c $(FUZZ_DEPS)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CORE_SRCS) $< $(CORE_LIBS) -o $@

$(FUZZ_BUILD)/fuzz_conf: fuzz/fuzz_conf.c $(FUZZ_CONF) $(CTL_HDRS) \
                         $(FUZZ_DEPS)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CORE_SRCS) $(FUZZ_CONF) $< $(CTL_LIBS) -o $@

$(FUZZ_BUILD)/fuzz_redis_url: fuzz/fuzz_redis_url.c $(REDIS_SRCS) \
                              controller/pg_redis.h $(FUZZ_DEPS)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CORE_SRCS) $(REDIS_SRCS) $< \
	    $(CTL_LIBS) -o $@

$(FUZZ_BUILD)/fuzz_state: fuzz/fuzz_state.c $(FUZZ_DEPS)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CORE_SRCS) $< $(CORE_LIBS) -o $@

# the company tokens: the verifier and the JWKS parser (include/pg_token.c)
$(FUZZ_BUILD)/fuzz_token: fuzz/fuzz_token.c $(FUZZ_DEPS)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CORE_SRCS) $< $(CORE_LIBS) -o $@

# fuzz_blob's seeds: the snapshot seeds that compile, as blobs of today's
# layout (the repository keeps only the blobs that once broke something)
$(FUZZ_BUILD)/gen-blobs: fuzz/gen_blobs.c $(CORE_SRCS) $(CORE_HDRS)
	@mkdir -p $(FUZZ_BUILD)
	$(CC) $(SAN_CFLAGS) -Iinclude $(CORE_SRCS) $< $(CORE_LIBS) -o $@

$(FUZZ_BUILD)/seeds/blob: $(FUZZ_BUILD)/gen-blobs \
                          $(wildcard fuzz/corpus/snapshot/*)
	rm -rf $@ && mkdir -p $@
	$(FUZZ_BUILD)/gen-blobs $@ fuzz/corpus/snapshot/*

# what pg_snap_open's whole-blob check costs (bench/RESULTS.md, Fuzzing)
$(BUILD)/bench-open: $(CORE_SRCS) $(CORE_HDRS) bench/bench_open.c
	@mkdir -p $(BUILD)
	$(CC) -O2 -g -Iinclude $(CORE_SRCS) bench/bench_open.c \
	    $(CORE_LIBS) -o $@

clean:
	rm -rf $(BUILD)
