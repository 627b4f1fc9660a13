#!/usr/bin/env bash
# vm.sh - run a command under another Linux kernel: a distribution's stock
# kernel booted under QEMU, with the host's / shared read-only (9p) under an
# in-memory overlay, so the guest runs this checkout's build and the host's
# tools without installing anything and without touching the host.
#
#   tests/kernel/vm.sh list                  the kernels it knows, one a line
#   tests/kernel/vm.sh fetch KERNEL          download and unpack (once: cached);
#                                            prints the kernel's cache directory
#   tests/kernel/vm.sh run [-s] [-t SEC] [-m MB] [-c CPUS] [-e NAME]... KERNEL CMD [ARG...]
#        boots KERNEL and runs CMD as root in the current directory (same path
#        in the guest), its output on stdout; then powers the guest off.
#        -s  systemd: the host's systemd boots the guest as PID 1 (its own
#            target: basic.target plus CMD as a service; the host's services
#            and timers masked) and CMD can use systemctl, journalctl, apt;
#            without -s CMD runs in a chroot under the initramfs's busybox
#        -t  timeout for the whole run, boot included (default 900 s)
#        -m  guest memory (default 2048 MiB); -c  vCPUs (default 2)
#        -e  pass the host's variable NAME into the guest (repeatable); EG_*,
#            ASAN_OPTIONS and UBSAN_OPTIONS are always passed
#   Exit status of run: CMD's; 77 (skip) when the kernel cannot be fetched or
#   does not boot, with the reason as the last line on stderr; 124 when the
#   timeout hit after the boot; 125 when the guest died before CMD returned
#   (with -s: also when systemd did not start CMD).
#
# Kernels (Debian's linux-image-amd64 of a suite, i.e. what a user of that
# release runs): deb12 (Debian 12: 6.1), deb12-bpo (bookworm-backports: 6.12),
# deb13 (Debian 13: 6.12). The package comes from the host's own Debian
# mirror (apt's configuration; EG_DEBIAN_MIRROR overrides) through
# `apt-get download` with a temporary sources list and lists directory, and is
# unpacked with dpkg-deb into the cache, never installed: the host's /boot and
# apt state stay as they are. Cache: $EG_KERNEL_CACHE (default
# ~/.cache/easgate-kernels), one directory per kernel, filled under a lock
# (checkouts run at once) and reused as is; EG_KERNEL_REFRESH=1 fetches the
# suite's current kernel again.
#
# The guest: QEMU q35, TCG (`-cpu max`; KVM only where kvm_intel/kvm_amd is
# loaded, or EG_VM_ACCEL=kvm|tcg), no network device (loopback and the
# namespaces a test makes are all it has). Its initramfs is static busybox,
# the modules the 9p root needs, and tests/kernel/init (which has the
# details). Guest time is emulated: compare ratios within one run only.
# Needs qemu-system-x86 and busybox-static (tools/deps.sh).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${EG_KERNEL_CACHE:-${XDG_CACHE_HOME:-${HOME:-/var/tmp}/.cache}/easgate-kernels}
BUSYBOX=${EG_BUSYBOX:-/bin/busybox}
# The cache's layout; a kernel unpacked by an older vm.sh is fetched again.
VM_LAYOUT=2
# What the guest's root needs before it can see the host: virtio PCI and 9p
# over it, and overlayfs. Built into some kernels (then not in modules.dep).
ROOT_MODULES="virtio_pci 9pnet_virtio 9p overlay"
# run -s: systemd reads these from the kernel's command line; egvm.target is
# written by the initramfs's /init (boot_systemd).
SYSTEMD_ARGS="eg_systemd=1 systemd.unit=egvm.target systemd.show_status=0 systemd.log_level=warning"

vm_list() { printf '%s\n' deb12 deb12-bpo deb13; }

vm_suite() { # KERNEL -> the Debian suite whose linux-image-amd64 it is
	case $1 in
	deb12) echo bookworm ;;
	deb12-bpo) echo bookworm-backports ;;
	deb13) echo trixie ;;
	*) return 1 ;;
	esac
}

# The host's Debian archive: apt's own configuration says where it is.
vm_mirror() {
	local codename
	if [ -n "${EG_DEBIAN_MIRROR:-}" ]; then
		echo "$EG_DEBIAN_MIRROR"
		return 0
	fi
	codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
	apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 2>/dev/null |
		awk -v c="$codename" '$1 == c { print $2; exit }' | grep .
}

skip() {
	echo "vm: skip: $*" >&2
	exit 77
}

# fetch KERNEL: prints its cache directory (vmlinuz, config, info,
# lib/modules/VERSION with a busybox modules.dep); exits 77 if impossible.
vm_fetch() {
	local k=$1 dir suite mirror tmp pkg ver deb mods
	suite=$(vm_suite "$k") || skip "unknown kernel '$k' (known: $(vm_list | tr '\n' ' '))"
	dir=$CACHE/$k
	if [ -z "${EG_KERNEL_REFRESH:-}" ] && grep -qx "layout=$VM_LAYOUT" "$dir/info" 2>/dev/null; then
		echo "$dir"
		return 0
	fi
	mkdir -p "$CACHE" || skip "cannot create the cache $CACHE"
	exec 9>"$CACHE/.lock-$k"
	flock 9 || skip "cannot lock $CACHE/.lock-$k"
	# Another checkout may have filled it while this one waited.
	if [ -z "${EG_KERNEL_REFRESH:-}" ] && grep -qx "layout=$VM_LAYOUT" "$dir/info" 2>/dev/null; then
		echo "$dir"
		return 0
	fi
	command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || skip "needs apt-get and dpkg-deb"
	[ -x "$BUSYBOX" ] || skip "needs $BUSYBOX (busybox-static) for depmod"
	mirror=$(vm_mirror) || skip "no Debian mirror in apt's configuration (set EG_DEBIAN_MIRROR)"
	tmp=$(mktemp -d "$CACHE/.fetch-$k.XXXXXX") || skip "mktemp in $CACHE"
	mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
	echo "deb $mirror $suite main" >"$tmp/sources.list"
	local apt=(-q -o "Dir::Etc::sourcelist=$tmp/sources.list" -o Dir::Etc::sourceparts=-
		-o "Dir::State::Lists=$tmp/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
		-o "Dir::Cache::archives=$tmp/archives" -o "APT::Sandbox::User=$(id -un)")
	if ! apt-get "${apt[@]}" update >"$tmp/apt.log" 2>&1; then
		tail -3 "$tmp/apt.log" >&2
		rm -rf "$tmp"
		skip "apt-get update of $suite failed"
	fi
	pkg=$(apt-cache "${apt[@]}" show --no-all-versions linux-image-amd64 2>/dev/null |
		sed -n 's/^Depends: \(linux-image-[^ ,]*\).*/\1/p' | head -1)
	[ -n "$pkg" ] || { rm -rf "$tmp"; skip "no linux-image-amd64 in $suite"; }
	if ! (cd "$tmp" && apt-get "${apt[@]}" download "$pkg" >>"$tmp/apt.log" 2>&1); then
		tail -3 "$tmp/apt.log" >&2
		rm -rf "$tmp"
		skip "apt-get download $pkg failed"
	fi
	deb=$(ls "$tmp"/"$pkg"_*.deb 2>/dev/null | head -1)
	mkdir "$tmp/x" && dpkg-deb -x "$deb" "$tmp/x" || { rm -rf "$tmp"; skip "cannot unpack $deb"; }
	mods=$(ls -d "$tmp"/x/lib/modules/*/ "$tmp"/x/usr/lib/modules/*/ 2>/dev/null | head -1)
	ver=$(basename "$mods")
	[ -n "$ver" ] && [ -f "$tmp/x/boot/vmlinuz-$ver" ] || { rm -rf "$tmp"; skip "$deb: no vmlinuz or modules"; }
	# busybox modprobe hands a compressed module to init_module as is (the
	# kernel refuses it: "Invalid ELF header magic"), so the tree is kept
	# decompressed (Debian 13 ships .ko.xz).
	mkdir -p "$tmp/k/lib/modules" &&
		mv "$tmp/x/boot/vmlinuz-$ver" "$tmp/k/vmlinuz" &&
		mv "$tmp/x/boot/config-$ver" "$tmp/k/config" &&
		mv "$mods" "$tmp/k/lib/modules/$ver" &&
		find "$tmp/k/lib/modules/$ver" -name '*.ko.xz' -print0 | xargs -0 -r -P2 -n64 xz -d &&
		find "$tmp/k/lib/modules/$ver" -name '*.ko.zst' -print0 | xargs -0 -r -P2 -n64 zstd -qd --rm &&
		"$BUSYBOX" depmod -b "$tmp/k" "$ver" || { rm -rf "$tmp"; skip "cannot lay out $deb"; }
	printf 'kernel=%s\nsuite=%s\npackage=%s\nrelease=%s\ndeb=%s\nlayout=%s\n' "$k" "$suite" \
		"$pkg" "$ver" "$(basename "$deb")" "$VM_LAYOUT" >"$tmp/k/info"
	rm -rf "$dir.old"
	[ -d "$dir" ] && mv "$dir" "$dir.old"
	mv "$tmp/k" "$dir" || { rm -rf "$tmp"; skip "cannot move the kernel into $dir"; }
	rm -rf "$tmp" "$dir.old"
	echo "$dir"
}

# The initramfs: busybox, /init, the root's modules (dependencies first,
# decompressed: busybox insmod reads plain .ko) and the kernel's config.
vm_initrd() {
	local kdir=$1 out=$2 st=$2/initramfs ver moddir m
	ver=$(sed -n 's/^release=//p' "$kdir/info")
	moddir=$kdir/lib/modules/$ver
	mkdir -p "$st/bin" "$st/mods" || return 1
	cp "$BUSYBOX" "$st/bin/busybox" && cp "$HERE/init" "$st/init" && chmod 755 "$st/init" &&
		cp "$kdir/config" "$st/mods/config" || return 1
	: >"$st/mods/load.list"
	declare -A seen=()
	add() { # module path relative to moddir, its dependencies first
		local rel=$1 d base
		[ -n "${seen[$rel]:-}" ] && return 0
		seen[$rel]=1
		for d in $(awk -v p="$rel:" '$1 == p { $1 = ""; print; exit }' "$moddir/modules.dep"); do
			add "$d" || return 1
		done
		base=$(basename "$rel")
		base=${base%.xz}
		base=${base%.zst}
		case $rel in
		*.xz) xz -dc "$moddir/$rel" >"$st/mods/$base" ;;
		*.zst) zstd -qdc "$moddir/$rel" >"$st/mods/$base" ;;
		*) cp "$moddir/$rel" "$st/mods/$base" ;;
		esac || return 1
		echo "$base" >>"$st/mods/load.list"
	}
	for m in $ROOT_MODULES; do
		local rel
		rel=$(awk -F: -v m="$m" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko.*/, "", n);
			gsub(/-/, "_", n) } n == m { print $1; exit }' "$moddir/modules.dep")
		if [ -n "$rel" ]; then
			add "$rel" || return 1
		elif ! grep -q "/$m.ko" "$moddir/modules.builtin" 2>/dev/null; then
			echo "module $m: neither in modules.dep nor built in" >&2
			return 1
		fi
	done
	(cd "$st" && find . | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$out/initrd.gz"
}

vm_accel() {
	case ${EG_VM_ACCEL:-} in
	kvm) echo "-accel kvm -cpu host" ;;
	tcg) echo "-accel tcg,thread=multi -cpu max" ;;
	*)
		# /dev/kvm alone is not enough: a paravirtual KVM (kvm_pvm) cannot run
		# a stock kernel (it aborts setting MSRs or dies in its emulator).
		if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
			echo "-accel kvm -cpu host"
		else
			echo "-accel tcg,thread=multi -cpu max"
		fi ;;
	esac
}

vm_run() {
	local timeout=900 mem=2048 cpus=2 pass=() opt systemd=
	OPTIND=1
	while getopts st:m:c:e: opt; do
		case $opt in
		s) systemd=1 ;;
		t) timeout=$OPTARG ;;
		m) mem=$OPTARG ;;
		c) cpus=$OPTARG ;;
		e) pass+=("$OPTARG") ;;
		*) echo "usage: vm.sh run [-s] [-t SEC] [-m MB] [-c CPUS] [-e NAME]... KERNEL CMD [ARG...]" >&2; exit 2 ;;
		esac
	done
	shift $((OPTIND - 1))
	[ $# -ge 2 ] || { echo "usage: vm.sh run [options] KERNEL CMD [ARG...]" >&2; exit 2; }
	local k=$1 kdir out rc v
	shift
	command -v qemu-system-x86_64 >/dev/null || skip "needs qemu-system-x86_64 (qemu-system-x86)"
	kdir=$(vm_fetch "$k") || exit $?
	out=$(mktemp -d /tmp/egvm.XXXXXX) || skip "mktemp"
	chmod 755 "$out"
	# shellcheck disable=SC2064
	[ -n "${EG_KEEP:-}" ] || trap "rm -rf '$out'" EXIT
	vm_initrd "$kdir" "$out" || skip "cannot build the initramfs for $k"
	{
		echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
		echo "export HOME=/root LANG=C.UTF-8 TERM=dumb EG_VM_KERNEL=$k"
		for v in $(compgen -e | grep -E '^(EG_|ASAN_OPTIONS$|UBSAN_OPTIONS$)') "${pass[@]}"; do
			[ -n "${!v+x}" ] && printf 'export %s=%q\n' "$v" "${!v}"
		done
		printf 'cd %q || exit 125\n' "$PWD"
		printf '%q ' "$@"
		echo
	} >"$out/cmd.sh"
	# shellcheck disable=SC2046
	timeout -k 5 "$timeout" qemu-system-x86_64 -M q35 $(vm_accel) -m "$mem" -smp "$cpus" \
		-nodefaults -display none -no-reboot -serial stdio \
		-kernel "$kdir/vmlinuz" -initrd "$out/initrd.gz" \
		-append "console=ttyS0 rdinit=/init quiet panic=-1 eg_out=$out eg_mods=$kdir${systemd:+ $SYSTEMD_ARGS}" \
		-virtfs "local,path=/,mount_tag=egroot,security_model=none,readonly=on,multidevs=remap" \
		-virtfs "local,path=$out,mount_tag=egout,security_model=none,multidevs=remap" \
		</dev/null 2>"$out/qemu.err"
	rc=$?
	if [ ! -f "$out/booted" ]; then
		tail -3 "$out/qemu.err" >&2
		skip "kernel $k ($(sed -n 's/^release=//p' "$kdir/info")) did not boot (qemu status $rc)"
	fi
	if [ -f "$out/rc" ]; then
		exit "$(cat "$out/rc")"
	fi
	if [ -n "$systemd" ] && [ ! -f "$out/sdup" ]; then
		tail -3 "$out/qemu.err" >&2
		echo "vm: systemd did not start the command in $k (qemu status $rc; its console is above)" >&2
		exit 125
	fi
	[ $rc -eq 124 ] && { echo "vm: timeout after ${timeout}s in $k" >&2; exit 124; }
	echo "vm: the guest ($k) died before the command returned (qemu status $rc)" >&2
	exit 125
}

case ${1:-} in
list) vm_list ;;
fetch) [ $# -eq 2 ] || { echo "usage: vm.sh fetch KERNEL" >&2; exit 2; }; vm_fetch "$2" ;;
run) shift; vm_run "$@" ;;
*) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
