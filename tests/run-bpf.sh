#!/usr/bin/env bash
# BPF tests: BPF_PROG_TEST_RUN units, a netns/veth integration, pins via bpftool.
# Each needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) and exits 77 otherwise.
# Exits 0 if none failed and at least one passed, 77 if every test skipped.
set -u
O=${1:-build}
cd "$(dirname "$0")/.."
pass=0; skipped=0; failed=()
# Logs of this run only: several runs (users, worktrees) may go at once.
logs=$(mktemp -d "${TMPDIR:-/tmp}/eg-bpf.XXXXXX") || exit 1
run() {
	local name=$1; shift
	local log=$logs/$name.log
	"$@" >"$log" 2>&1
	local rc=$?
	case $rc in
	0) pass=$((pass + 1)); printf '  ok    %s\n' "$name" ;;
	77) skipped=$((skipped + 1)); why=${why:-$(tail -1 "$log")}
	    printf '  skip  %s: %s\n' "$name" "$(tail -1 "$log")" ;;
	*) failed+=("$name"); printf '  FAIL  %s (log: %s)\n' "$name" "$log"; tail -40 "$log" ;;
	esac
}
# test_bpf_xdp as a user without root: its pure user-space tests (bucket
# math, CIDR parsing, flow keys) must run and pass, only the BPF part skips.
nonroot_xdp() {
	local bin=$O/tests/test_bpf_xdp out rc
	[ "$(id -u)" -eq 0 ] || { echo "SKIP: already not root (see test_bpf_xdp)"; return 77; }
	command -v setpriv >/dev/null || { echo "SKIP: needs setpriv"; return 77; }
	local as=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
	"${as[@]}" test -x "$bin" || { echo "SKIP: nobody cannot run $bin"; return 77; }
	out=$("${as[@]}" "$bin" 2>&1)
	rc=$?
	echo "$out"
	[ $rc -eq 77 ] || { echo "FAIL: exit status $rc, want 77 (BPF part skipped)"; return 1; }
	for t in test_bucket_math test_parse_cidr test_flow_key_from_addrs; do
		grep -q "OK \] $t\$" <<<"$out" || { echo "FAIL: $t did not run and pass"; return 1; }
	done
}
for src in tests/bpf/test_*.c; do
	name=$(basename "$src" .c)
	run "$name" "$O/tests/$name"
done
run test_bpf_xdp_nonroot nonroot_xdp
run test_bpf_pins tests/bpf/test_bpf_pins.sh "$O"
echo "bpf: ${pass} passed, ${#failed[@]} failed, ${skipped} skipped"
[ ${#failed[@]} -eq 0 ] || exit 1
rm -rf "$logs"
[ "$pass" -gt 0 ] && exit 0
# Nothing ran: for run-all.sh that is "skipped", never "ok".
echo "bpf: every test skipped (first: ${why:-?})"
exit 77
