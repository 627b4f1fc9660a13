#!/usr/bin/env bash
# Run every libFuzzer target for $1 seconds (default 30) from its seed corpus.
# A crash fails the run and leaves the reproducer in build/fuzz/.
set -u
secs=${1:-30}
cd "$(dirname "$0")/.."
failed=()
ran=0
for f in build/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	ran=$((ran + 1))
	name=$(basename "$f")
	corpus=build/fuzz/corpus-$name
	mkdir -p "$corpus"
	seeds=tests/fuzz/seeds/$name
	[ -d "$seeds" ] || seeds=
	if "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix=build/fuzz/"$name"- "$corpus" $seeds >"build/fuzz/$name.log" 2>&1; then
		printf '  ok    %-22s %s\n' "$name" "$(grep -m1 'stat::number_of_executed_units' "build/fuzz/$name.log" | awk '{print $2 " runs"}')"
	else
		failed+=("$name"); printf '  FAIL  %s\n' "$name"; tail -30 "build/fuzz/$name.log"
	fi
done
echo "fuzz: $((ran - ${#failed[@]})) passed, ${#failed[@]} failed"
n_src=$(ls tests/fuzz/fuzz_*.c 2>/dev/null | wc -l)
if [ "$ran" -ne "$n_src" ]; then
	echo "fuzz: $ran targets built for $n_src in tests/fuzz (make fuzz-build)"
	exit 1
fi
[ ${#failed[@]} -eq 0 ]
