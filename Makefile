# movexd build. `make run` and `make test` are the two commands a new user
# needs; both install missing Debian packages first (scripts/install-deps.sh).
#
# Two build variants share the sources: build/release (optimised) and
# build/asan (AddressSanitizer + UBSan). `make test` builds and tests both.

PREFIX ?= /usr/local
DESTDIR ?=
VARIANT ?= release
BUILD := build/$(VARIANT)
# any VARIANT whose name starts with 'asan' is a sanitizer build
SAN := $(if $(filter asan%,$(VARIANT)),1,0)
CC ?= cc
CONF ?= conf/movexd.conf

PKGS := libwebsockets jansson libsodium openssl
# '=' (not ':='): evaluated when used, so pkg-config runs after install-deps.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS)) -lm
CHECK_LIBS = $(shell pkg-config --libs check)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
STD := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
ifeq ($(SAN),1)
OPT := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -DMX_FAULT_INJECTION
LDOPT := -fsanitize=address,undefined
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
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all deps test-deps run test unit integration bench crash-test install uninstall clean check-conf
all: $(BUILD)/movexd

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

run: deps
	@$(MAKE) --no-print-directory VARIANT=release all
	@echo "movexd: starting on $(CONF) (Ctrl-C stops it)"
	exec build/release/movexd -c $(CONF)

test: test-deps
	@$(MAKE) --no-print-directory VARIANT=release all unit-bin bench-bin
	@$(MAKE) --no-print-directory VARIANT=asan all unit-bin
	@scripts/run-tests.sh

unit-bin: $(BUILD)/unit-tests
bench-bin: $(BENCH_BIN)

$(BUILD)/obj/%.o: src/%.c $(wildcard include/movexd/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(BUILD)/test/%.o: test/unit/%.c $(wildcard include/movexd/*.h) $(BUILD)/suites.h | $(BUILD)/test
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

# The unit runner's suite list is generated from test/unit/test_*.c, so a new
# suite file is picked up without editing the runner.
$(BUILD)/suites.h: $(UNIT_SRC) | $(BUILD)/obj
	@for f in $(notdir $(basename $(filter test/unit/test_%,$(UNIT_SRC)))); do \
	  echo "MX_SUITE($${f#test_})"; done > $@.tmp && mv $@.tmp $@

$(BUILD)/movexd: $(MAIN_OBJ) $(CORE_OBJ)
	$(CC) $(LDOPT) -o $@ $^ $(PKG_LIBS) $(LDFLAGS)

$(BUILD)/unit-tests: $(UNIT_OBJ) $(CORE_OBJ)
	$(CC) $(LDOPT) -o $@ $^ $(PKG_LIBS) $(CHECK_LIBS) $(LDFLAGS)

$(BUILD)/bench/%: bench/%.c $(CORE_OBJ) | $(BUILD)/bench
	$(CC) $(CFLAGS_ALL) -o $@ $< $(CORE_OBJ) $(PKG_LIBS) $(LDFLAGS)

$(BUILD)/obj $(BUILD)/test $(BUILD)/bench:
	@mkdir -p $@

unit: test-deps
	@$(MAKE) --no-print-directory VARIANT=$(VARIANT) unit-bin
	$(BUILD)/unit-tests

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

install: all
	install -D -m 0755 $(BUILD)/movexd $(DESTDIR)$(PREFIX)/bin/movexd
	install -D -m 0644 conf/movexd.conf $(DESTDIR)/etc/movexd/movexd.conf

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/movexd

clean:
	rm -rf build
