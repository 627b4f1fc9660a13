#!/usr/bin/env bash
# suite.sh BUILD_DIR - what the kernel matrix runs inside each guest
# (tests/kernel/matrix.sh): the verifier's verdict on every BPF program
# (tools/bpf-verify), the kernel feature probe (easgated --probe-kernel), the
# BPF tests (tests/run-bpf.sh) and the integration tests that attach XDP or
# use network namespaces with BPF, and kernel TLS (t_ktls) ($EG_KERNEL_TESTS). Runs on the host too.
# Exit 0 only if every program loaded and every test passed (skips allowed).
set -u
O=${1:-build}
cd "$(dirname "$0")/../.."
TESTS=${EG_KERNEL_TESTS:-t_xdp t_srccap_xdp t_reuseport t_kfeat t_ktls t_systemd}
bad=0
step() {
	local t0=$SECONDS rc
	echo "== $1"
	shift
	"$@"
	rc=$?
	echo "== ($((SECONDS - t0)) s, status $rc)"
	[ $rc -eq 0 ] || [ $rc -eq 77 ] || bad=1
}
echo "== kernel $(uname -r)"
step "bpf-verify" "$O/bpf-verify" "$O"/bpf/*.bpf.o
step "easgated --probe-kernel" "$O/easgated" --probe-kernel
step "tests/run-bpf.sh" tests/run-bpf.sh "$O"
step "integration: $TESTS" env EG_ONLY="$TESTS" tests/run-integration.sh "$O"
exit $bad
