#!/usr/bin/env bash
# The whole suite, as `make test` runs it: unit, WBXML differential, BPF,
# integration, the kernel matrix (BPF and XDP tests under Debian's 6.1 and
# 6.12 in QEMU, tests/kernel/) and fuzzing (bounded) on the normal build,
# then unit, BPF and integration again on an ASan+UBSan build. Prints a
# summary; exits non-zero if anything failed. Tests that need root skip (77)
# with a reason otherwise. EG_KERNELS="" leaves the matrix out.
set -u
cd "$(dirname "$0")/.."
results=()
stage() {
	local name=$1; shift
	echo "== $name"
	local t0=$(date +%s)
	"$@"
	local rc=$?
	local dt=$(($(date +%s) - t0))
	if [ $rc -eq 0 ] || [ $rc -eq 77 ]; then results+=("ok    $name (${dt}s)"); else results+=("FAIL  $name (${dt}s)"); fi
	return 0
}
stage "unit" tests/run-unit.sh build
stage "wbxml differential" tests/wbxml-diff.sh build
stage "bpf" tests/run-bpf.sh build
stage "integration" tests/run-integration.sh build
[ -n "${EG_KERNELS-x}" ] && stage "kernel matrix (${EG_KERNELS:-deb12 deb13})" tests/kernel/matrix.sh build
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
printf '  %s\n' "${results[@]}"
! printf '%s\n' "${results[@]}" | grep -q '^FAIL'
