#!/usr/bin/env bash
# The whole suite, as `make test` runs it: unit, WBXML differential, BPF,
# integration, the kernel matrix (BPF and XDP tests under Debian's 6.1 and
# 6.12 in QEMU, tests/kernel/), the package under systemd as PID 1 of a
# Debian 12 guest (tests/kernel/t_systemd_guest.sh) and fuzzing (bounded)
# on the normal build, then unit, BPF and integration again on an
# ASan+UBSan build. Prints a summary; exits non-zero if anything failed.
# Tests that need root skip (77) with a reason otherwise. EG_KERNELS="" leaves the matrix and the systemd
# guest out.
#
# A stage whose every test skipped says "skip", never "ok". As a normal user
# that is expected (BPF needs root) and the summary says how to run it; as
# root or in CI (CI=...), where `make deps` has installed everything, a stage
# that skipped entirely is a failure: it was supposed to run.
# EG_STAGES="bpf integration" runs only the stages whose name contains one
# of those words.
set -u
cd "$(dirname "$0")/.."
results=()
skipped_stages=0
must_run() { [ "$(id -u)" -eq 0 ] || [ -n "${CI:-}" ]; }
wanted() {
	local w
	[ -z "${EG_STAGES:-}" ] && return 0
	for w in $EG_STAGES; do [[ "$1" == *"$w"* ]] && return 0; done
	return 1
}
stage() {
	local name=$1; shift
	wanted "$name" || return 0
	echo "== $name"
	local t0 log rc dt counts
	t0=$(date +%s)
	log=$(mktemp "${TMPDIR:-/tmp}/eg-stage.XXXXXX")
	"$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	dt=$(($(date +%s) - t0))
	# The stage's own count line ("... N passed, M failed, K skipped"), if any.
	counts=$(grep -oE '[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?' "$log" | tail -1)
	case $rc in
	0) results+=("ok    $name (${dt}s${counts:+: $counts})") ;;
	77)
		if must_run; then
			results+=("FAIL  $name (${dt}s): every test skipped, but as root or in CI it must run: $(tail -1 "$log")")
		else
			skipped_stages=$((skipped_stages + 1))
			results+=("skip  $name (${dt}s): $(tail -1 "$log")")
		fi
		;;
	*) results+=("FAIL  $name (${dt}s${counts:+: $counts})") ;;
	esac
	rm -f "$log"
	return 0
}
stage "unit" tests/run-unit.sh build
stage "wbxml differential" tests/wbxml-diff.sh build
stage "bpf" tests/run-bpf.sh build
stage "integration" tests/run-integration.sh build
[ -n "${EG_KERNELS-x}" ] && stage "kernel matrix (${EG_KERNELS:-deb12 deb13})" tests/kernel/matrix.sh build
# The package under a real systemd (PID 1 of a deb12 guest): once, not per
# build (the .deb is dpkg-buildpackage's), and out with the matrix (no QEMU).
[ -n "${EG_KERNELS-x}" ] && stage "systemd guest (${EG_SDGUEST_KERNEL:-deb12})" tests/kernel/t_systemd_guest.sh build
stage "fuzz (${FUZZ_SECONDS:-45}s each)" bash -c "make --no-print-directory fuzz-build >/dev/null && tests/run-fuzz.sh ${FUZZ_SECONDS:-45}"
stage "build ASan+UBSan" make --no-print-directory SAN=1 all
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
stage "unit (ASan+UBSan)" tests/run-unit.sh build/asan
stage "wbxml differential (ASan+UBSan)" tests/wbxml-diff.sh build/asan
stage "bpf (ASan+UBSan)" tests/run-bpf.sh build/asan
stage "integration (ASan+UBSan)" tests/run-integration.sh build/asan
echo
echo "== summary"
if [ ${#results[@]} -eq 0 ]; then
	echo "  no stage matched EG_STAGES=\"${EG_STAGES:-}\""
	exit 1
fi
printf '  %s\n' "${results[@]}"
if [ "$skipped_stages" -gt 0 ]; then
	echo "  $skipped_stages stage(s) did not run at all (why: above). As root, \`sudo make test\`"
	echo "  installs what is missing and runs every stage; there a stage that skips fails."
fi
! printf '%s\n' "${results[@]}" | grep -q '^FAIL'
