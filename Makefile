# movexd build. `make run` and `make test` are the two commands a new user
# needs; both install missing Debian packages first (scripts/install-deps.sh).
#
# Three build variants share the sources: build/release (optimised),
# build/asan (AddressSanitizer + UBSan) and build/tsan (ThreadSanitizer, for
# what crosses the snapshot writer thread). `make test` builds and tests all
# three (the tsan one only on the suites that touch the thread:
# scripts/run-tests.sh).

PREFIX ?= /usr/local
DESTDIR ?=
VARIANT ?= release
BUILD := build/$(VARIANT)
# any VARIANT whose name starts with 'asan' is a sanitizer build
SAN := $(if $(filter asan%,$(VARIANT)),1,0)
# any VARIANT whose name starts with 'tsan' is a ThreadSanitizer build (TSan
# and ASan cannot share a binary). It has fault injection too, so the
# integration tests that make the writer thread fail run on it.
TSAN := $(if $(filter tsan%,$(VARIANT)),1,0)
CC ?= cc
CONF ?= conf/movexd.conf

PKGS := libwebsockets jansson libsodium openssl lua5.4 hiredis libuv
# '=' (not ':='): evaluated when used, so pkg-config runs after install-deps.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS)) -lm -pthread
CHECK_LIBS = $(shell pkg-config --libs check)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
STD := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
ifeq ($(SAN),1)
OPT := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -DMX_FAULT_INJECTION
LDOPT := -fsanitize=address,undefined
else ifeq ($(TSAN),1)
OPT := -O1 -g -fsanitize=thread -fno-omit-frame-pointer -DMX_FAULT_INJECTION
LDOPT := -fsanitize=thread
else
OPT := -O2 -g -DNDEBUG
LDOPT :=
endif
CFLAGS_ALL = $(STD) $(WARN) $(OPT) -Iinclude -I$(BUILD) $(PKG_CFLAGS) $(CFLAGS)

SRC := $(wildcard src/*.c)
CORE_SRC := $(filter-out src/main.c,$(SRC))
CORE_OBJ := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(CORE_SRC))
MAIN_OBJ := $(BUILD)/obj/main.o
UNIT_SRC := $(wildcard test/unit/*.c)
UNIT_OBJ := $(patsubst test/unit/%.c,$(BUILD)/test/%.o,$(UNIT_SRC))
TOOL_SRC := $(wildcard tools/*.c)
TOOL_OBJ := $(patsubst tools/%.c,$(BUILD)/tools/%.o,$(TOOL_SRC))
BENCH_SRC := $(filter-out bench/allocsites.c,$(wildcard bench/*.c))
# allocsites is an LD_PRELOAD shim (bench/idle_bytes.mjs), not a program
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC)) $(BUILD)/bench/allocsites.so

.PHONY: all deps test-deps run test unit integration bench crash-test install uninstall clean check-conf
all: $(BUILD)/movexd $(BUILD)/movexctl

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

# The build's compiler lines go to build/release/build.log (shown only when
# the build fails); the daemon then logs where to go (event=demo url=...).
run: deps
	@mkdir -p build/release
	@echo "movexd: building (log: build/release/build.log)"
	@$(MAKE) --no-print-directory VARIANT=release all > build/release/build.log 2>&1 || \
	  { cat build/release/build.log; echo "movexd: the build failed (above)" >&2; exit 1; }
	@echo "movexd: starting on $(CONF); open the demo at the url= of the event=demo line below (Ctrl-C stops it)"
	@exec build/release/movexd -c $(CONF)

test: test-deps
	@$(MAKE) --no-print-directory VARIANT=release all unit-bin bench-bin
	@$(MAKE) --no-print-directory VARIANT=asan all unit-bin
	@$(MAKE) --no-print-directory VARIANT=tsan all unit-bin
	@scripts/run-tests.sh

unit-bin: $(BUILD)/unit-tests
bench-bin: $(BENCH_BIN)

$(BUILD)/obj/%.o: src/%.c $(wildcard include/movexd/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

# cluster mode's Redis Function library, built into the binary as a C
# string (src/cluster.c includes it)
build/%/cluster_fn.inc: src/cluster_fn.lua
	@mkdir -p $(@D)
	@awk '{ gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); print "\"" $$0 "\\n\"" }' $< > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/cluster.o: $(BUILD)/cluster_fn.inc

$(BUILD)/test/%.o: test/unit/%.c $(wildcard include/movexd/*.h) $(BUILD)/suites.h | $(BUILD)/test
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

# The unit runner's suite list is generated from test/unit/test_*.c, so a new
# suite file is picked up without editing the runner.
$(BUILD)/suites.h: $(UNIT_SRC) | $(BUILD)/obj
	@for f in $(notdir $(basename $(filter test/unit/test_%,$(UNIT_SRC)))); do \
	  echo "MX_SUITE($${f#test_})"; done > $@.tmp && mv $@.tmp $@

$(BUILD)/movexd: $(MAIN_OBJ) $(CORE_OBJ)
	$(CC) $(LDOPT) -o $@ $^ $(PKG_LIBS) $(LDFLAGS)

# movexctl (tools/): the command-line client; links the daemon's core for
# the key loaders, the conf reader, the WAL reader and the snapshot decoder.
$(BUILD)/tools/%.o: tools/%.c tools/movexctl.h $(wildcard include/movexd/*.h) | $(BUILD)/tools
	$(CC) $(CFLAGS_ALL) -Itools -c -o $@ $<

$(BUILD)/movexctl: $(TOOL_OBJ) $(CORE_OBJ)
	$(CC) $(LDOPT) -o $@ $^ $(PKG_LIBS) $(LDFLAGS)

$(BUILD)/unit-tests: $(UNIT_OBJ) $(CORE_OBJ)
	$(CC) $(LDOPT) -o $@ $^ $(PKG_LIBS) $(CHECK_LIBS) $(LDFLAGS)

$(BUILD)/bench/%: bench/%.c $(CORE_OBJ) | $(BUILD)/bench
	$(CC) $(CFLAGS_ALL) -o $@ $< $(CORE_OBJ) $(PKG_LIBS) $(LDFLAGS)

# without the variant's sanitizers: it is preloaded into a release daemon
$(BUILD)/bench/allocsites.so: bench/allocsites.c | $(BUILD)/bench
	$(CC) $(STD) $(WARN) -O2 -g -fPIC -shared -o $@ $< -ldl -lpthread

# the load generator and the ceiling relay share a header
$(BUILD)/bench/loadgen $(BUILD)/bench/ceiling: bench/wsjson.h

$(BUILD)/obj $(BUILD)/test $(BUILD)/bench $(BUILD)/tools:
	@mkdir -p $@

unit: test-deps
	@$(MAKE) --no-print-directory VARIANT=$(VARIANT) unit-bin
	$(BUILD)/unit-tests

# The allocation-failure test (test/unit/test_alloc_fail.c) at every
# allocation of every engine corpus script; `make test` runs a sample of
# about 40 failure points per script. Needs the asan variant, which is
# built with MX_FAULT_INJECTION.
.PHONY: alloc-fail-full
alloc-fail-full:
	@$(MAKE) --no-print-directory VARIANT=asan all unit-bin
	MX_ALLOC_FAIL_FULL=1 CK_RUN_SUITE=alloc_fail build/asan/unit-tests

integration: test-deps
	@$(MAKE) --no-print-directory VARIANT=$(VARIANT) all
	MOVEXD_BIN=$(BUILD)/movexd node --test test/integration/

bench: deps
	@$(MAKE) --no-print-directory VARIANT=release all bench-bin
	@scripts/run-bench.sh

# Long crash test: N kill -9 / restart cycles under load (make test runs 20).
N ?= 1000
crash-test: test-deps
	@$(MAKE) --no-print-directory VARIANT=release all
	MOVEXD_BIN=build/release/movexd node test/integration/crash.mjs --cycles $(N)

check-conf: all
	$(BUILD)/movexd -t -c $(CONF)

# ---------------------------------------------------------------- install --
# `make install [PREFIX=/usr/local] [DESTDIR=]` (docs/OPERATIONS.md):
#   $(PREFIX)/bin/movexd                     the daemon ($(BUILD)/movexd)
#   $(PREFIX)/bin/movexctl                   the command-line client
#   /etc/movexd/movexd.conf                  conf/movexd.conf with data_dir
#                                            /var/lib/movexd, client_dir
#                                            below, and production-safe:
#                                            serve_demo no, create_on_subscribe
#                                            no; an existing file is kept
#                                            and the new one goes to .conf.new
#   /lib/systemd/system/movexd.service       systemd/movexd.service, movexd
#                                            path adjusted to PREFIX
#   /lib/systemd/system/movexd.socket        systemd/movexd.socket (socket
#                                            activation; not enabled)
#   $(PREFIX)/share/movexd/client/           movex.js, movex.d.ts, demo/
#   $(PREFIX)/share/man/man8/movexd.8, man5/movexd.conf.5, man1/movexctl.1
#   $(PREFIX)/share/doc/movexd/              README.md, docs/*.md
# The adjusted copies are made in $(BUILD)/dist first. `make uninstall`
# removes all of it except /etc/movexd (and never touches /var/lib/movexd).
SYSTEMD_UNIT_DIR ?= /lib/systemd/system
INSTALL_DIST := $(BUILD)/dist
SHARE_DIR = $(DESTDIR)$(PREFIX)/share

install: all
	rm -rf $(INSTALL_DIST) && mkdir -p $(INSTALL_DIST)
	sed -e 's|^data_dir .*|data_dir /var/lib/movexd|' \
	    -e 's|^client_dir .*|client_dir $(PREFIX)/share/movexd/client|' \
	    -e 's|^serve_demo .*|serve_demo no|' \
	    -e 's|^\( *\)create_on_subscribe yes|\1create_on_subscribe no|' \
	    conf/movexd.conf > $(INSTALL_DIST)/movexd.conf
	@grep -qx 'data_dir /var/lib/movexd' $(INSTALL_DIST)/movexd.conf && \
	  grep -qx 'client_dir $(PREFIX)/share/movexd/client' $(INSTALL_DIST)/movexd.conf && \
	  grep -qx 'serve_demo no' $(INSTALL_DIST)/movexd.conf && \
	  ! grep -q 'create_on_subscribe yes' $(INSTALL_DIST)/movexd.conf || \
	  { echo "install: conf/movexd.conf needs top-level data_dir, client_dir and serve_demo lines" >&2; exit 1; }
	sed 's|/usr/local/bin/movexd|$(PREFIX)/bin/movexd|g' systemd/movexd.service > $(INSTALL_DIST)/movexd.service
	sed 's|/usr/local/share/|$(PREFIX)/share/|g' man/movexd.8 > $(INSTALL_DIST)/movexd.8
	sed 's|/usr/local/share/|$(PREFIX)/share/|g' man/movexd.conf.5 > $(INSTALL_DIST)/movexd.conf.5
	sed 's|/usr/local/share/|$(PREFIX)/share/|g' man/movexctl.1 > $(INSTALL_DIST)/movexctl.1
	install -D -m 0755 $(BUILD)/movexd $(DESTDIR)$(PREFIX)/bin/movexd
	install -D -m 0755 $(BUILD)/movexctl $(DESTDIR)$(PREFIX)/bin/movexctl
	install -D -m 0644 $(INSTALL_DIST)/movexd.service $(DESTDIR)$(SYSTEMD_UNIT_DIR)/movexd.service
	install -D -m 0644 systemd/movexd.socket $(DESTDIR)$(SYSTEMD_UNIT_DIR)/movexd.socket
	install -d -m 0755 $(SHARE_DIR)/movexd/client
	install -m 0644 client/movex.js client/movex.d.ts $(SHARE_DIR)/movexd/client/
	@if [ -d client/demo ]; then \
	  echo "install -m 0644 client/demo/* $(SHARE_DIR)/movexd/client/demo/"; \
	  install -d -m 0755 $(SHARE_DIR)/movexd/client/demo && \
	  find client/demo -maxdepth 1 -type f -exec install -m 0644 {} $(SHARE_DIR)/movexd/client/demo/ \; ; \
	fi
	install -d -m 0755 $(SHARE_DIR)/movexd/examples
	install -m 0644 $(wildcard examples/*.lua) $(SHARE_DIR)/movexd/examples/
	install -D -m 0644 $(INSTALL_DIST)/movexd.8 $(SHARE_DIR)/man/man8/movexd.8
	install -D -m 0644 $(INSTALL_DIST)/movexd.conf.5 $(SHARE_DIR)/man/man5/movexd.conf.5
	install -D -m 0644 $(INSTALL_DIST)/movexctl.1 $(SHARE_DIR)/man/man1/movexctl.1
	install -d -m 0755 $(SHARE_DIR)/doc/movexd
	install -m 0644 README.md $(wildcard docs/*.md) $(SHARE_DIR)/doc/movexd/
	install -d -m 0755 $(DESTDIR)/etc/movexd
	@conf=$(DESTDIR)/etc/movexd/movexd.conf; \
	if [ ! -e $$conf ]; then \
	  echo "install -m 0644 $(INSTALL_DIST)/movexd.conf $$conf"; \
	  install -m 0644 $(INSTALL_DIST)/movexd.conf $$conf; \
	elif cmp -s $(INSTALL_DIST)/movexd.conf $$conf; then \
	  echo "install: $$conf is up to date"; \
	else \
	  install -m 0644 $(INSTALL_DIST)/movexd.conf $$conf.new; \
	  echo "install: kept the existing $$conf; the new default is $$conf.new (compare and merge by hand)"; \
	fi
	@echo "install: done. With systemd: systemctl daemon-reload && systemctl enable --now movexd"

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/movexd $(DESTDIR)$(PREFIX)/bin/movexctl
	rm -f $(DESTDIR)$(SYSTEMD_UNIT_DIR)/movexd.service $(DESTDIR)$(SYSTEMD_UNIT_DIR)/movexd.socket
	rm -rf $(SHARE_DIR)/movexd
	rm -f $(SHARE_DIR)/man/man8/movexd.8 $(SHARE_DIR)/man/man5/movexd.conf.5 $(SHARE_DIR)/man/man1/movexctl.1
	rm -rf $(SHARE_DIR)/doc/movexd
	@echo "uninstall: kept $(DESTDIR)/etc/movexd (the conf) and the data in /var/lib/movexd;" \
	  "remove them by hand if they are no longer needed. Run systemctl daemon-reload now" \
	  "(and systemctl disable --now movexd beforehand, if the service was enabled)."

# `make systemd-verify`: `systemd-analyze verify` on the service unit and
# the socket unit (which also checks that the socket finds its service),
# with the movexd path pointing at $(BUILD)/movexd (the unit names
# /usr/local/bin, which may not exist here) and the man pages of
# Documentation= found in man/; any output at all (a warning) fails. Then the unit's exposure score
# (`systemd-analyze security --offline=true`, systemd >= 250), failing
# above SYSTEMD_EXPOSURE_MAX (tenths: 15 = 1.5). Full table:
# $(BUILD)/systemd/security.txt.
SYSTEMD_EXPOSURE_MAX ?= 15
.PHONY: systemd-verify
systemd-verify: all
	@command -v systemd-analyze >/dev/null || { echo "systemd-verify: systemd-analyze not found (Debian: apt-get install systemd)" >&2; exit 1; }
	@rm -rf $(BUILD)/systemd && mkdir -p $(BUILD)/systemd/man/man8 $(BUILD)/systemd/man/man5
	@sed 's|/usr/local/bin/movexd|$(abspath $(BUILD))/movexd|g' systemd/movexd.service > $(BUILD)/systemd/movexd.service
	@cp systemd/movexd.socket $(BUILD)/systemd/movexd.socket
	@cp man/movexd.8 $(BUILD)/systemd/man/man8/ && cp man/movexd.conf.5 $(BUILD)/systemd/man/man5/
	@echo "systemd-analyze verify $(BUILD)/systemd/movexd.service $(BUILD)/systemd/movexd.socket"
	@MANPATH=$(abspath $(BUILD))/systemd/man systemd-analyze verify $(BUILD)/systemd/movexd.service \
	  $(BUILD)/systemd/movexd.socket > $(BUILD)/systemd/verify.txt 2>&1; rc=$$?; cat $(BUILD)/systemd/verify.txt; \
	  if [ $$rc -ne 0 ] || [ -s $(BUILD)/systemd/verify.txt ]; then \
	    echo "systemd-verify: FAILED (exit $$rc, or warnings above)" >&2; exit 1; fi
	@echo "systemd-verify: unit OK (no warnings; movexd.service and movexd.socket)"
	@systemd-analyze security --offline=true --no-pager --threshold=$(SYSTEMD_EXPOSURE_MAX) \
	  $(BUILD)/systemd/movexd.service > $(BUILD)/systemd/security.txt 2>&1; rc=$$?; \
	  grep -E '^✗' $(BUILD)/systemd/security.txt; grep -E 'Overall exposure' $(BUILD)/systemd/security.txt; \
	  if [ $$rc -ne 0 ]; then cat $(BUILD)/systemd/security.txt | tail -n 5 >&2; \
	    echo "systemd-verify: exposure above $(SYSTEMD_EXPOSURE_MAX)/100 (or security failed)" >&2; exit 1; fi

clean:
	rm -rf build

# ---------------------------------------------------------------- fuzzing --
# libFuzzer harnesses (test/fuzz/fuzz_*.c; docs/FUZZING.md). Built with clang
# into build/fuzz/: the daemon's sources (all but main.c) are compiled once
# with coverage instrumentation and the sanitizers into build/fuzz/obj, and
# each harness links them. `make fuzz` runs every harness FUZZ_SECONDS
# (keeping new inputs in build/fuzz/corpus/<target>); `make fuzz-smoke` runs
# each FUZZ_SMOKE_SECONDS on the committed corpus only (part of make test).
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_DIR := build/fuzz
FUZZ_FLAGS = $(STD) -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=all -DMX_FAULT_INJECTION \
	-Iinclude -I$(FUZZ_DIR) $(PKG_CFLAGS)
FUZZ_SRC := $(wildcard test/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst test/fuzz/%.c,$(FUZZ_DIR)/%,$(FUZZ_SRC))
FUZZ_OBJ := $(patsubst src/%.c,$(FUZZ_DIR)/obj/%.o,$(CORE_SRC))

.PHONY: fuzz fuzz-smoke
fuzz: $(FUZZ_BIN)
	scripts/fuzz.sh $(FUZZ_SECONDS) $(notdir $(FUZZ_BIN))

fuzz-smoke: $(FUZZ_BIN)
	scripts/fuzz.sh --fresh $(FUZZ_SMOKE_SECONDS) $(notdir $(FUZZ_BIN))

# -Werror stays off for the daemon's sources here: a clang-only warning in
# someone else's file must not break the fuzz build (the gcc builds enforce it).
$(FUZZ_OBJ): $(FUZZ_DIR)/obj/%.o: src/%.c $(wildcard include/movexd/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(filter-out -Werror,$(WARN)) \
	  -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

$(FUZZ_DIR)/obj/cluster.o: $(FUZZ_DIR)/cluster_fn.inc

$(FUZZ_BIN): $(FUZZ_DIR)/%: test/fuzz/%.c $(FUZZ_OBJ) $(wildcard include/movexd/*.h) $(wildcard test/fuzz/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(WARN) -fsanitize=fuzzer,address,undefined \
	  -o $@ $< $(FUZZ_OBJ) $(PKG_LIBS) $(LDFLAGS)
