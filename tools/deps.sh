#!/usr/bin/env bash
# Install the Debian 12 packages easgate needs to build, run and test.
# Idempotent: installs only what is missing. Needs root (or sudo) when
# something is missing.
set -euo pipefail

BUILD="make gcc clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev libssl-dev libsqlite3-dev
  libpcre2-dev libsystemd-dev libconfig-dev libcmocka-dev libclang-rt-14-dev pkg-config xxd
  libcurl4-openssl-dev libcrypt-dev libpq-dev"
RUN="openssl iproute2 ca-certificates sqlite3 libjs-chart.js"
TEST="curl libwbxml2-utils gnutls-bin testssl.sh python3 procps psmisc jq tcpdump ethtool prometheus gdb strace
  debhelper dpkg-dev lintian man-db groff-base
  systemd wrk nghttp2-client haproxy nginx-light bc chromium chromium-driver python3-selenium
  python3-aiosmtpd libnss3-tools
  qemu-system-x86 busybox-static xz-utils zstd
  postgresql"
# qemu..zstd: the kernel matrix (tests/kernel/), which boots Debian's stock
# kernels under QEMU with a busybox initramfs; postgresql: the farm tests;
# man-db, groff-base: t_man renders the man pages (man --warnings); libnss3-tools:
# t_console_pages puts the test root in Chromium's NSS store (certutil).

want=$(echo $BUILD $RUN ${EASGATE_DEPS_TEST:-$TEST})
missing=()
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "deps: run as root: apt-get install ${missing[*]}" >&2; exit 1; }
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Services must not start from package scripts (nginx, haproxy): tests start
# their own instances on their own ports. Only for this run: a policy-rc.d
# left behind would keep every service installed later from starting. One
# that was already there is the admin's and stays. (EG_POLICY_RC_D: tests.)
RCD=${EG_POLICY_RC_D:-/usr/sbin/policy-rc.d}
if [ ! -e "$RCD" ]; then
	trap '$SUDO rm -f "$RCD"' EXIT
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$RCD" >/dev/null
	$SUDO chmod +x "$RCD"
fi
if ! $SUDO apt-get update -qq; then
	echo "deps: apt-get update failed (see above): the package lists may be stale or" \
		"missing; fix the sources or the network, then run again" >&2
	exit 1
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
