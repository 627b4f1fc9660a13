#!/usr/bin/env bash
# Integration tests: tests/integration/t_*.sh against the build in $1.
# Each test prints PASS/FAIL lines; exit 77 means skipped (with the reason).
# EG_ONLY="t_foo t_bar" runs a subset (a name that matches no test fails).
# Exits 0 if none failed and at least one passed, 77 if every test skipped,
# 1 otherwise.
set -u
O=${1:-build}
cd "$(dirname "$0")/.."
pass=0; skipped=0; failed=()
for n in ${EG_ONLY:-}; do
	[ -f "tests/integration/$n.sh" ] && continue
	failed+=("$n")
	printf '  FAIL  %-28s no such test (EG_ONLY)\n' "$n"
done
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
	77) skipped=$((skipped + 1)); why=${why:-$(echo "$out" | tail -1)}
	    printf '  skip  %-28s %s\n' "$name" "$(echo "$out" | tail -1)" ;;
	*) failed+=("$name"); printf '  FAIL  %-28s %4ss (rc=%d)\n' "$name" "$dur" "$rc"
	   # The failed checks first: a CI log viewer may show only the start.
	   echo "$out" | grep -E '^ *FAIL' | sed 's/^/  >> /'
	   echo "$out" ;;
	esac
done
echo "integration ($O): ${pass} passed, ${#failed[@]} failed, ${skipped} skipped"
[ ${#failed[@]} -eq 0 ] || exit 1
[ "$pass" -gt 0 ] && exit 0
[ "$skipped" -gt 0 ] && { echo "integration ($O): every test skipped (first: ${why:-?})"; exit 77; }
echo "integration ($O): no test ran"
exit 1
