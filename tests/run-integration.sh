#!/usr/bin/env bash
# Integration tests: tests/integration/t_*.sh against the build in $1.
# Each test prints PASS/FAIL lines; exit 77 means skipped (with the reason).
# EG_ONLY="t_foo t_bar" runs a subset.
set -u
O=${1:-build}
cd "$(dirname "$0")/.."
pass=0; skipped=0; failed=()
for t in tests/integration/t_*.sh; do
	name=$(basename "$t" .sh)
	if [ -n "${EG_ONLY:-}" ] && [[ " $EG_ONLY " != *" $name "* ]]; then continue; fi
	start=$(date +%s)
	out=$(timeout "${EG_TEST_TIMEOUT:-600}" bash "$t" "$O" 2>&1)
	rc=$?
	dur=$(($(date +%s) - start))
	case $rc in
	0) pass=$((pass + 1)); printf '  ok    %-28s %4ss\n' "$name" "$dur"
	   [ -n "${EG_VERBOSE:-}" ] && echo "$out" ;;
	77) skipped=$((skipped + 1)); printf '  skip  %-28s %s\n' "$name" "$(echo "$out" | tail -1)" ;;
	*) failed+=("$name"); printf '  FAIL  %-28s %4ss (rc=%d)\n' "$name" "$dur" "$rc"
	   # The failed checks first: a CI log viewer may show only the start.
	   echo "$out" | grep -E '^ *FAIL' | sed 's/^/  >> /'
	   echo "$out" ;;
	esac
done
echo "integration ($O): ${pass} passed, ${#failed[@]} failed, ${skipped} skipped"
[ ${#failed[@]} -eq 0 ]
