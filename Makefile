# easgate - top-level build.
#
#   make              build everything into build/ (daemon, easctl, BPF, tools)
#   make deps         install the Debian packages the build and tests need (root)
#   make run          deps + build + demo certificates + demo backend + gateway (root)
#   make test         deps + build + unit, BPF, integration tests, then again under ASan+UBSan
#   make unit         unit tests only (no root needed)
#   make fuzz         build libFuzzer targets and run each for FUZZ_SECONDS
#   make bench        benchmarks vs HAProxy and nginx (tools/bench)
#   make install      install into $(DESTDIR)$(PREFIX), with the systemd unit
#   make deb          the Debian package, into build/deb/ (tools/mkdeb.sh)
#   make SAN=1 ...    build into build/asan with AddressSanitizer + UBSan
#   make V=1 ...      show the commands
#
# snprintf truncation is deliberate (bounded messages), so -Wformat-truncation is off.
# Sources are picked up by wildcard: user/*.c (except the mains) form
# libeasgate.a, which easgated, easctl and every test link against.

.DELETE_ON_ERROR:
# Keep generated BPF objects and skeletons (they are intermediates of the tests).
.SECONDARY:
.SUFFIXES:

V ?= 0
ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

SAN ?= 0
ifeq ($(SAN),1)
O := build/asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1
else
O := build
SANFLAGS :=
OPT := -O2
endif

CC ?= cc
CLANG ?= clang
BPFTOOL ?= bpftool
PREFIX ?= /usr/local
FUZZ_SECONDS ?= 30
# One version for easgated --version and the package (tools/version.sh;
# debian/rules passes the package's own).
VERSION ?= $(shell tools/version.sh)

PKGS := libbpf libelf zlib openssl sqlite3 libpcre2-8 libsystemd libconfig libcurl libcrypt libpq
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wno-unused-parameter -Wformat=2 -Wvla -Wno-format-truncation
CFLAGS := -std=gnu11 -g $(OPT) $(WARN) $(SANFLAGS) -D_GNU_SOURCE \
	-Iinclude -Iuser -I$(O)/bpf $(PKG_CFLAGS) $(EXTRA_CFLAGS)
# Every symbol bound at start-up (as the Debian package's hardening=+all does):
# a lazy binding at run time saves all vector registers, which hold request
# bytes, on a worker's stack (t_secrets, part 5). Full RELRO comes with it.
LDFLAGS := -Wl,-z,relro,-z,now $(SANFLAGS) $(EXTRA_LDFLAGS)
LDLIBS := $(PKG_LIBS) -lm -lpthread

MAINS := user/main.c
LIB_SRCS := $(filter-out $(MAINS),$(wildcard user/*.c))
LIB_OBJS := $(patsubst user/%.c,$(O)/user/%.o,$(LIB_SRCS))
BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,$(O)/bpf/%.bpf.o,$(BPF_SRCS))
SKELS := $(patsubst bpf/%.bpf.c,$(O)/bpf/%.skel.h,$(BPF_SRCS))
TOOL_SRCS := $(wildcard tools/*.c)
TOOLS := $(patsubst tools/%.c,$(O)/%,$(TOOL_SRCS))
# Benchmark tools built with everything else (the rest is built by run.sh).
BENCH_TOOLS := $(O)/bench/store_load
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNITS := $(patsubst tests/unit/%.c,$(O)/tests/%,$(UNIT_SRCS))
BPFTEST_SRCS := $(wildcard tests/bpf/test_*.c)
BPFTESTS := $(patsubst tests/bpf/%.c,$(O)/tests/%,$(BPFTEST_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZERS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))

all: $(O)/easgated $(TOOLS) $(BENCH_TOOLS) $(UNITS) $(BPFTESTS)

# --- BPF: vmlinux.h from the running kernel's BTF, objects, skeletons -------
$(O)/bpf/vmlinux.h:
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(O)/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.h) $(wildcard include/*.h) $(O)/bpf/vmlinux.h
	$(call msg,BPF,$@)
	$(Q)$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
		-Iinclude -I$(O)/bpf -c $< -o $@

$(O)/bpf/%.skel.h: $(O)/bpf/%.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

# --- userspace ---------------------------------------------------------------
$(O)/user/%.o: user/%.c $(wildcard user/*.h) $(wildcard include/*.h) $(SKELS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# The iOS build table is data (easy to extend) compiled into the daemon, so
# UA-derived OS rules work with no file installed.
$(O)/gen/ios_builds.inc: data/ios-builds.tsv
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)xxd -i $< > $@

$(O)/user/osver.o: user/osver.c $(O)/gen/ios_builds.inc $(wildcard user/*.h)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -DEG_HAVE_IOS_BUILDS_INC -I$(O)/gen -c $< -o $@

# Rewritten only when the version changes, so a commit relinks without
# recompiling everything, and a stale --version cannot survive one.
$(O)/gen/version.h: FORCE
	$(Q)mkdir -p $(@D)
	$(Q)v='#define EASGATE_VERSION "$(VERSION)"'; \
		[ "$$(cat $@ 2>/dev/null)" = "$$v" ] || echo "$$v" >$@

$(O)/user/main.o: $(O)/gen/version.h
$(O)/user/main.o: CFLAGS += -I$(O)/gen

$(O)/libeasgate.a: $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(O)/easgated: $(O)/user/main.o $(O)/libeasgate.a
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(O)/%: tools/%.c $(O)/libeasgate.a
	$(call msg,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $< $(O)/libeasgate.a $(LDLIBS) -o $@

# --- tests ---------------------------------------------------------------------
$(O)/tests/%: tests/unit/%.c tests/unit/testlib.h $(O)/libeasgate.a
	$(call msg,TEST,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) $< $(O)/libeasgate.a $(LDLIBS) -lcmocka -o $@

$(O)/tests/%: tests/bpf/%.c $(O)/libeasgate.a $(SKELS)
	$(call msg,TEST,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) $< $(O)/libeasgate.a $(LDLIBS) -lcmocka -o $@

# libFuzzer targets: clang, ASan+UBSan, linked against the library sources.
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
	-DEG_FUZZING -Iinclude -Iuser -Ibuild/bpf $(PKG_CFLAGS)
# Each target names the library sources it needs on a line "// FUZZ_SRCS: user/a.c user/b.c".
build/fuzz/%: tests/fuzz/%.c $(LIB_SRCS)
	$(call msg,FUZZ,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $< $$(sed -n 's|^// FUZZ_SRCS:||p' $<) $(PKG_LIBS) -lm -lpthread -o $@

.PHONY: all deps run test unit bpftest integration fuzz fuzz-build bench install deb clean format FORCE
deps:
	$(Q)tools/deps.sh

unit: $(UNITS)
	$(Q)tests/run-unit.sh $(O)

bpftest: $(BPFTESTS)
	$(Q)tests/run-bpf.sh $(O)

integration: all
	$(Q)tests/run-integration.sh $(O)

fuzz-build: $(FUZZERS)

fuzz: $(FUZZERS)
	$(Q)tests/run-fuzz.sh $(FUZZ_SECONDS)

# The README's test command: everything, then everything again under sanitizers.
test:
	$(Q)tools/deps.sh
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tests/run-all.sh

run:
	$(Q)tools/deps.sh
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tools/run-demo.sh $(O)

bench: all
	$(Q)tools/bench/run.sh

install: all
	$(Q)tools/install.sh "$(DESTDIR)" "$(PREFIX)" $(O)

# dpkg-buildpackage in a copy of the tree under build/deb/, so the package
# build neither cleans nor reuses build/; the .deb files land in build/deb/.
deb:
	$(Q)tools/mkdeb.sh build/deb

format:
	$(Q)clang-format -i user/*.c user/*.h tools/*.c include/*.h bpf/*.c bpf/*.h tests/unit/*.c tests/bpf/*.c tests/fuzz/*.c

clean:
	$(Q)rm -rf build
