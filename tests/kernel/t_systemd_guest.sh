#!/usr/bin/env bash
# t_systemd_guest.sh [BUILD_DIR] - easgate under a real systemd (issue #15).
# Builds the package (tools/mkdeb.sh), boots Debian 12's stock kernel under
# QEMU with the host's systemd as PID 1 over the host's root
# (tests/kernel/vm.sh run -s), and there (tests/kernel/systemd_checks.sh):
# `apt-get install ./easgate_*.deb` offline; the unit configured with a test
# PKI and a demo backend (a transient unit); `systemctl start` reaches
# active (running) through Type=notify; `systemctl reload` x3 under 100
# phones (eas-fleet, 60 s: each reload starts with at least 10 s of the
# fleet left, client timeouts 60 s for the emulated CPU) fails no request,
# each reload is in force when it returns, the unit's own WatchdogSec (30 s)
# sees no restart, and a broken file fails the reload; then WatchdogSec is
# lowered to 10 s by a drop-in (daemon-reload, restart) for the SIGSTOP
# check only: a SIGSTOPped worker trips the watchdog and the unit restarts;
# `systemctl stop` drains a held Ping; master and workers run as easgate with
# exactly the unit's capabilities (/proc/PID/status); the journal holds the
# daemon's key=value lines; an upgrade (apt-get install of the next version)
# restarts the enabled unit and keeps the inventory the phones filled, the
# steering secret and the config, and apt-get purge removes them.
#
# Run by `make test` as its own stage (tests/run-all.sh), not by
# run-integration.sh: it runs once, not again under ASan (the package is
# built by dpkg-buildpackage, whatever BUILD_DIR is), and EG_KERNELS=""
# leaves it out with the kernel matrix (no QEMU). BUILD_DIR provides the
# demo backend and the fleet. EG_SDGUEST_KERNEL picks the kernel (deb12).
# Exit 77 with the reason when the guest cannot boot (run-all.sh fails a
# stage that skips as root or in CI).
source "$(dirname "$0")/../integration/lib.sh"
need_root
need dpkg-buildpackage dh qemu-system-x86_64 xxd
[ -x "$O/eas-fleet" ] && [ -x "$BACKEND" ] || { fail "build $O first (eas-fleet, eas-demo-backend)"; finish; }
make_pki localhost
K=${EG_SDGUEST_KERNEL:-deb12}

t0=$SECONDS
out=$("$EG_ROOT/tools/mkdeb.sh" "$T/deb" 2>&1)
rc=$?
check "tools/mkdeb.sh builds the package (exit $rc, $((SECONDS - t0)) s)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || { echo "$out" | tail -30; finish; }
mkdir "$T/guest" && cp "$(tail -1 <<<"$out")" "$T/guest/" || { fail "copy the .deb"; finish; }
# The next version to upgrade to: the same files, a higher version (as t_deb).
deb=$(tail -1 <<<"$out")
ver=$(dpkg-deb -f "$deb" Version)
dpkg-deb -R "$deb" "$T/v2root" &&
	sed -i "s/^Version: .*/Version: $ver+t2/" "$T/v2root/DEBIAN/control" &&
	mkdir "$T/guest/v2" &&
	dpkg-deb -b -Zxz "$T/v2root" "$T/guest/v2/easgate_${ver}+t2_$(dpkg --print-architecture).deb" >/dev/null ||
	fail "repack the next version"

t1=$SECONDS
"$EG_ROOT/tests/kernel/vm.sh" run -s -t "${EG_SDGUEST_TIMEOUT:-600}" "$K" \
	bash "$EG_ROOT/tests/kernel/systemd_checks.sh" "$T/guest" "$PKI" "$O" >"$T/guest.log" 2>"$T/vm.err"
rc=$?
dt=$((SECONDS - t1))
if [ "$rc" -eq 77 ]; then
	cat "$T/vm.err"
	skip "the $K guest did not boot: $(tail -1 "$T/vm.err")"
fi
grep -E '^  (PASS|FAIL|INFO)' "$T/guest.log" | sed 's/^  \(PASS\|FAIL\|INFO\)/  \1  guest:/'
EG_PASSES=$((EG_PASSES + $(grep -c '^  PASS' "$T/guest.log")))
check "the checks in the $K guest under systemd passed (exit $rc, ${dt} s with boot and power-off)" test "$rc" -eq 0
if [ "$rc" -ne 0 ]; then
	grep -vE '^  (PASS|FAIL|INFO)' "$T/guest.log" | tail -40
	cat "$T/vm.err"
fi
echo "  INFO  the whole test: $((SECONDS - t0)) s (package $((t1 - t0)) s, guest ${dt} s)"
finish
