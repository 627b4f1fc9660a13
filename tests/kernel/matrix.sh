#!/usr/bin/env bash
# matrix.sh [BUILD_DIR] - the kernel matrix of `make test`: the BPF tests
# and the integration tests that attach XDP, use BPF in network namespaces
# or kernel TLS
# (tests/kernel/suite.sh), each inside a QEMU guest running a distribution's
# stock kernel (tests/kernel/vm.sh), one result per kernel.
#
#   EG_KERNELS          kernels to run (default "deb12 deb13": Debian 12's 6.1
#                       and Debian 13's 6.12; see `tests/kernel/vm.sh list`).
#                       The host's kernel is the rest of the suite's.
#   EG_KERNEL_TESTS     the integration tests run in each guest (suite.sh)
#   EG_KERNEL_TIMEOUT   seconds per guest, boot included (default 1800: a guest runs its suite in 8–12 min on a quiet 2-core machine, emulated)
#
# A kernel that cannot be fetched or does not boot is skipped with the
# reason; a failure in any guest fails the stage. Each guest's console goes
# to a log of this run (mktemp), printed here as it arrives. Timings are of
# an emulated CPU (TCG): compare them within one run only.
set -u
O=${1:-build}
cd "$(dirname "$0")/../.."
KERNELS=${EG_KERNELS:-deb12 deb13}
LOGS=$(mktemp -d /tmp/eg-kmatrix.XXXXXX) || exit 1
pass=0 skipped=0 failed=() lines=()
echo "host kernel $(uname -r): the other stages; its verifier numbers:"
"$O/bpf-verify" "$O"/bpf/*.bpf.o 2>&1 | sed 's/^bpf-verify /  /'
for k in $KERNELS; do
	echo "== kernel $k"
	t0=$SECONDS
	tests/kernel/vm.sh run -t "${EG_KERNEL_TIMEOUT:-1800}" "$k" tests/kernel/suite.sh "$O" \
		2>"$LOGS/$k.err" | tee "$LOGS/$k.log" | sed -u 's/^/  | /'
	rc=${PIPESTATUS[0]}
	dt=$((SECONDS - t0))
	rel=$(sed -n 's/^== kernel //p' "$LOGS/$k.log" | head -1)
	case $rc in
	0) pass=$((pass + 1)); lines+=("ok    $k ${rel:-?} (${dt}s)") ;;
	77) skipped=$((skipped + 1)); lines+=("skip  $k: $(tail -1 "$LOGS/$k.err")") ;;
	*) failed+=("$k"); lines+=("FAIL  $k ${rel:-?} (${dt}s, status $rc)")
	   sed 's/^/  ! /' "$LOGS/$k.err" ;;
	esac
done
echo "== kernel matrix"
printf '  %s\n' "${lines[@]}"
echo "kernel matrix: ${pass} passed, ${#failed[@]} failed, ${skipped} skipped"
if [ ${#failed[@]} -eq 0 ]; then
	rm -rf "$LOGS"
else
	echo "kernel matrix: logs in $LOGS"
	exit 1
fi
