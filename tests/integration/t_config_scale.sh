#!/usr/bin/env bash
# A big rule list costs reading the config once, not once per rule. Every
# rule's line number used to be found by re-reading the file from its top:
# 4,000 rules under 20,000 comment lines were ~860,000 read() calls and ~2 s
# of --check-config (the same work holds the master's loop during a reload).
# Measured by what cannot drift with the machine's load: the read() calls
# easgated --check-config makes (strace -c), bounded by a few reads of the
# file per parse (libconfig's, the line index's, the certificates').
# Asserted too: the lines errors name in that big file are still the lines
# of the rules (a rule followed by comment lines, one inside the list), so
# the speed-up did not change what an admin reads.
source "$(dirname "$0")/lib.sh"
need python3 strace
make_pki
TLS=(--tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" --trust-file "$PKI/root.pem")

# big_conf FILE [BAD]: 4,000 UserAgent regex rules under 20,000 comment lines
# (a generated per-model list); with BAD, two bad rules: one mid-list with a
# comment block after it, one last, followed by comment lines before ')'.
big_conf() {
	python3 - "$@" <<'PY'
import sys
bad = len(sys.argv) > 2
alts = "|".join("Model%dX[0-9]{1,3}" % k for k in range(12))
lines = ['log_level = "info";'] + ["# padding %d" % i for i in range(20000)]
rules = ['"block UserAgent matches \\"^(?:%s)/%d\\\\.[0-9]+$\\" name \\"r%d\\""' % (alts, i, i)
         for i in range(4000)]
if bad:
    rules[2000] = '"block DeviceOS iz \\"mid list\\"",\n# the next block\n# of rules'
    rules[3999] = '"block DeviceOS iz \\"last one\\""\n# end of the generated rules\n#'
lines.append("policy = { rules = (\n%s\n); };" % ",\n".join(rules))
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
}

conf=$T/big.conf
big_conf "$conf" || { fail "write the big config"; finish; }
size=$(stat -c %s "$conf")
t0=$(date +%s%N)
"$EASGATED" --check-config -c "$conf" "${TLS[@]}" >"$T/check.log" 2>&1
rc=$?
t1=$(date +%s%N)
check "--check-config accepts 4,000 rules under 20,000 comment lines (exit $rc)" \
	bash -c '[ "$0" -eq 0 ] && grep -q "configuration OK" "$1"' "$rc" "$T/check.log"
# LeakSanitizer cannot run under ptrace: the run above checked for leaks.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
	strace -f -c -e trace=read -o "$T/strace.txt" "$EASGATED" --check-config -c "$conf" "${TLS[@]}" \
	>"$T/check-strace.log" 2>&1
rc=$?
check "...and under strace (exit $rc)" test "$rc" -eq 0
reads=$(awk '$NF == "read" { print $(NF - 1) + 0 }' "$T/strace.txt")
# libconfig reads the file in 4 KiB blocks; the line index once more; the
# rest (certificates, libraries, /proc) is a few hundred calls at most.
max=$((3 * size / 4096 + 1000))
echo "  INFO  $((size / 1024)) KiB config: ${reads:-none} read() calls, $(((t1 - t0) / 1000000)) ms"
check "the file is read a bounded number of times, not once per rule (${reads:-none} read() calls <= $max)" \
	test "${reads:-999999999}" -le "$max"

bad=$T/bad.conf
big_conf "$bad" with-errors || { fail "write the broken config"; finish; }
out=$("$EASGATED" --check-config -c "$bad" "${TLS[@]}" 2>&1)
rc=$?
check "a broken big config is refused (exit $rc)" test "$rc" -ne 0
for what in "mid list" "last one"; do
	line=$(grep -n "iz .*$what" "$bad" | cut -d: -f1)
	check "...naming the rule '$what' at its own line ${line:-none}" \
		grep -q "bad.conf:${line:-none}: rule:" <<<"$out"
done
finish
