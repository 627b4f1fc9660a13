#!/usr/bin/env bash
# BPF tests: BPF_PROG_TEST_RUN units, a netns/veth integration, pins via bpftool.
# Each needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) and exits 77 otherwise.
set -u
O=${1:-build}
cd "$(dirname "$0")/.."
pass=0; skipped=0; failed=()
run() {
	local name=$1; shift
	"$@" >"/tmp/eg-bpf-$name.log" 2>&1
	local rc=$?
	case $rc in
	0) pass=$((pass + 1)); printf '  ok    %s\n' "$name" ;;
	77) skipped=$((skipped + 1)); printf '  skip  %s: %s\n' "$name" "$(tail -1 "/tmp/eg-bpf-$name.log")" ;;
	*) failed+=("$name"); printf '  FAIL  %s\n' "$name"; tail -40 "/tmp/eg-bpf-$name.log" ;;
	esac
}
for src in tests/bpf/test_*.c; do
	name=$(basename "$src" .c)
	run "$name" "$O/tests/$name"
done
run test_bpf_pins tests/bpf/test_bpf_pins.sh "$O"
echo "bpf: ${pass} passed, ${#failed[@]} failed, ${skipped} skipped"
[ ${#failed[@]} -eq 0 ]
