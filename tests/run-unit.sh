#!/usr/bin/env bash
# Run every unit test binary in $1/tests (build/ or build/asan/).
# Prints one line per test program and a summary; exits non-zero on failure.
set -u
O=${1:-build}
cd "$(dirname "$0")/.."
pass=0; failed=()
for src in tests/unit/test_*.c; do
	t=$O/tests/$(basename "$src" .c)
	[ -x "$t" ] || { failed+=("$(basename "$t")"); printf '  FAIL  %s (not built)\n' "$t"; continue; }
	if out=$("$t" 2>&1); then
		pass=$((pass + 1)); printf '  ok    %s\n' "$(basename "$t")"
	else
		failed+=("$(basename "$t")"); printf '  FAIL  %s\n%s\n' "$(basename "$t")" "$out"
	fi
done
echo "unit: ${pass} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
