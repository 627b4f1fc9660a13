# easgate - top-level build.
#
#   make              build everything into build/ (daemon, easctl, BPF, tools)
#   make deps         install the Debian packages the build and tests need (root)
#   make run          deps + build + demo certificates + demo backend + gateway (root)
#   make test         deps + build + unit, BPF, integration tests, then again under ASan+UBSan
#   make unit         unit tests only (no root needed)
#   make fuzz         build libFuzzer targets and run each for FUZZ_SECONDS
#   make bench        benchmarks vs HAProxy and nginx (tools/bench)
#   make install      install into $(DESTDIR)$(PREFIX), with the systemd unit and man pages
#   make deb          the Debian package, into build/deb/ (tools/mkdeb.sh)
#   make SAN=1 ...    build into build/asan with AddressSanitizer + UBSan
#   make V=1 ...      show the commands
#
# snprintf truncation is deliberate (bounded messages), so -Wformat-truncation is off.
# Sources are picked up by wildcard: user/*/*.c (except the mains) form
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
# user/ is laid out by the stage a request passes (HACKING.md); every folder
# is on the include path, so a header is named by its file name alone.
USER_DIRS := base proto decide steer datapath kernel daemon admin store
USER_INC := $(addprefix -Iuser/,$(USER_DIRS)) -Iuser
CFLAGS := -std=gnu11 -g $(OPT) $(WARN) $(SANFLAGS) -D_GNU_SOURCE \
	-Iinclude $(USER_INC) -I$(O)/bpf $(PKG_CFLAGS) $(EXTRA_CFLAGS)
# Every symbol bound at start-up (as the Debian package's hardening=+all does):
# a lazy binding at run time saves all vector registers, which hold request
# bytes, on a worker's stack (t_secrets, part 5). Full RELRO comes with it.
LDFLAGS := -Wl,-z,relro,-z,now $(SANFLAGS) $(EXTRA_LDFLAGS)
LDLIBS := $(PKG_LIBS) -lm -lpthread

MAINS := user/daemon/main.c
LIB_SRCS := $(filter-out $(MAINS),$(wildcard user/*/*.c user/*.c))
LIB_OBJS := $(patsubst user/%.c,$(O)/user/%.o,$(LIB_SRCS))
BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,$(O)/bpf/%.bpf.o,$(BPF_SRCS))
SKELS := $(patsubst bpf/%.bpf.c,$(O)/bpf/%.skel.h,$(BPF_SRCS))
# BPF programs only the benchmarks (and test_bpf_netns's peer) load.
BENCH_BPF_SRCS := $(wildcard tools/bench/*.bpf.c)
BENCH_SKELS := $(patsubst tools/bench/%.bpf.c,$(O)/bench/%.skel.h,$(BENCH_BPF_SRCS))
TOOL_SRCS := $(wildcard tools/*.c)
TOOLS := $(patsubst tools/%.c,$(O)/%,$(TOOL_SRCS))
# Every benchmark program is built by `make`, so none can rot unseen.
BENCH_SRCS := $(filter-out %.bpf.c,$(wildcard tools/bench/*.c))
BENCHES := $(patsubst tools/bench/%.c,$(O)/bench/%,$(BENCH_SRCS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNITS := $(patsubst tests/unit/%.c,$(O)/tests/%,$(UNIT_SRCS))
BPFTEST_SRCS := $(wildcard tests/bpf/test_*.c)
BPFTESTS := $(patsubst tests/bpf/%.c,$(O)/tests/%,$(BPFTEST_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZERS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))

# The manual pages and the sample configuration are made from the tables the
# programs run on (tools/eg-doc.c; docs/man/ holds the pages' prose).
MANS := $(O)/man/easgated.8 $(O)/man/easctl.8 $(O)/man/easgate.conf.5
DOCS := $(MANS) $(O)/easgate.conf
# The pages' date: the package's (dpkg-buildpackage sets SOURCE_DATE_EPOCH),
# else the commit's, so that a rebuild of the same tree makes the same pages.
MAN_DATE ?= $(shell d=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null)}; \
	date -u -d "@$${d:-$$(date +%s)}" +%F)

all: $(O)/easgated $(TOOLS) $(BENCHES) $(UNITS) $(BPFTESTS) $(DOCS)

# Header dependencies come from the compiler (-MMD -MP, one .d per output).
# Generated headers must exist before the first compile finds them.
DEPFLAGS = -MMD -MP -MF $@.d
GEN_HDRS := $(SKELS) $(BENCH_SKELS) $(O)/gen/ios_builds.inc $(O)/gen/version.h

# --- BPF: vmlinux.h from the running kernel's BTF, objects, skeletons -------
$(O)/bpf/vmlinux.h:
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(O)/bpf/%.bpf.o: bpf/%.bpf.c $(O)/bpf/vmlinux.h
	$(call msg,BPF,$@)
	$(Q)$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror $(DEPFLAGS) \
		-Iinclude -I$(O)/bpf -c $< -o $@

$(O)/bpf/%.skel.h: $(O)/bpf/%.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

$(O)/bench/%.bpf.o: tools/bench/%.bpf.c $(O)/bpf/vmlinux.h
	$(call msg,BPF,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror $(DEPFLAGS) \
		-Iinclude -Ibpf -I$(O)/bpf -c $< -o $@

$(O)/bench/%.skel.h: $(O)/bench/%.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

# --- userspace ---------------------------------------------------------------
$(O)/user/%.o: user/%.c | $(GEN_HDRS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

# The iOS build table is data (easy to extend) compiled into the daemon, so
# UA-derived OS rules work with no file installed.
$(O)/gen/ios_builds.inc: data/ios-builds.tsv
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)xxd -i $< > $@

$(O)/user/proto/osver.o: CFLAGS += -DEG_HAVE_IOS_BUILDS_INC -I$(O)/gen

# Rewritten only when the version changes, so a commit relinks without
# recompiling everything, and a stale --version cannot survive one.
$(O)/gen/version.h: FORCE
	$(Q)mkdir -p $(@D)
	$(Q)v='#define EASGATE_VERSION "$(VERSION)"'; \
		[ "$$(cat $@ 2>/dev/null)" = "$$v" ] || echo "$$v" >$@

$(O)/user/daemon/main.o: CFLAGS += -I$(O)/gen

# The include rules between user/ folders (proto/ and base/ include only
# what is below them): checked before the library is archived.
$(O)/layers.ok: tools/check-layers.sh $(wildcard user/*/*.[ch])
	$(call msg,CHECK,layers)
	$(Q)mkdir -p $(@D)
	$(Q)tools/check-layers.sh && touch $@

$(O)/libeasgate.a: $(LIB_OBJS) $(O)/layers.ok
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $(LIB_OBJS)

$(O)/easgated: $(O)/user/daemon/main.o $(O)/libeasgate.a
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(O)/%: tools/%.c $(O)/libeasgate.a | $(GEN_HDRS)
	$(call msg,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(DEPFLAGS) $(LDFLAGS) $< $(O)/libeasgate.a $(LDLIBS) -o $@

$(O)/bench/%: tools/bench/%.c $(O)/libeasgate.a | $(GEN_HDRS)
	$(call msg,LINK,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -I$(O)/bench $(DEPFLAGS) $(LDFLAGS) $< $(O)/libeasgate.a $(LDLIBS) -o $@

$(O)/man/%: docs/man/%.in $(O)/eg-doc $(O)/gen/version.h
	$(call msg,MAN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(O)/eg-doc man $< "$(VERSION)" "$(MAN_DATE)" >$@

$(O)/easgate.conf: docs/man/easgate.conf.head $(O)/eg-doc
	$(call msg,GEN,$@)
	$(Q)$(O)/eg-doc sample $< >$@

# --- tests ---------------------------------------------------------------------
$(O)/tests/%: tests/unit/%.c $(O)/libeasgate.a | $(GEN_HDRS)
	$(call msg,TEST,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -Itests/unit $(DEPFLAGS) $(LDFLAGS) $< $(O)/libeasgate.a $(LDLIBS) -lcmocka -o $@

$(O)/tests/%: tests/bpf/%.c $(O)/libeasgate.a | $(GEN_HDRS)
	$(call msg,TEST,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -Itests/unit -I$(O)/bench $(DEPFLAGS) $(LDFLAGS) $< $(O)/libeasgate.a $(LDLIBS) -lcmocka -o $@

# libFuzzer targets: clang, ASan+UBSan. Each links the whole library, built
# once more with clang and fuzzer instrumentation (build/fuzz/libeasgate.a):
# the linker takes the objects a target needs, so no target lists sources.
# Always under build/ (the skeletons of build/bpf): not with SAN=1.
FUZZ_O := build/fuzz
FUZZ_SAN := -fsanitize=address,undefined
FUZZ_CFLAGS := -std=gnu11 -g -O1 $(FUZZ_SAN) -D_GNU_SOURCE -DEG_FUZZING \
	-Iinclude $(USER_INC) -Ibuild/bpf $(PKG_CFLAGS)
FUZZ_OBJS := $(patsubst user/%.c,$(FUZZ_O)/user/%.o,$(LIB_SRCS))

$(FUZZ_O)/user/%.o: user/%.c | $(patsubst $(O)/%,build/%,$(GEN_HDRS))
	$(call msg,FUZZCC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(DEPFLAGS) -c $< -o $@

$(FUZZ_O)/user/proto/osver.o: FUZZ_CFLAGS += -DEG_HAVE_IOS_BUILDS_INC -Ibuild/gen

$(FUZZ_O)/libeasgate.a: $(FUZZ_OBJS) build/layers.ok
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $(FUZZ_OBJS)

$(FUZZ_O)/%: tests/fuzz/%.c $(FUZZ_O)/libeasgate.a
	$(call msg,FUZZ,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(DEPFLAGS) $< $(FUZZ_O)/libeasgate.a \
		$(PKG_LIBS) -lm -lpthread -o $@

-include $(wildcard $(O)/bpf/*.d $(O)/bench/*.d $(O)/user/*.d $(O)/user/*/*.d $(O)/*.d \
	$(O)/tests/*.d $(FUZZ_O)/*.d $(FUZZ_O)/user/*/*.d)

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
	$(Q)clang-format -i user/*/*.c user/*/*.h tools/*.c include/*.h bpf/*.c bpf/*.h tests/unit/*.c tests/bpf/*.c tests/fuzz/*.c

clean:
	$(Q)rm -rf build
