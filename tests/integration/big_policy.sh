# shellcheck shell=bash
# big_policy.sh - a config whose policy is costly to compile (sourced after
# lib.sh): what a reload of a big rule set, or a worker starting with it,
# spends its CPU on.

# big_conf FILE PROBE: 4,000 regex rules (the most a file may hold is 4,096)
# under 20,000 comment lines, the last one blocking DeviceId PROBE.
big_conf() {
	python3 - "$1" "$2" <<'PY'
import sys
alts = "|".join("Model%dX[0-9]{1,3}" % k for k in range(12))
lines = ['log_level = "info";'] + ["# padding %d" % i for i in range(20000)]
rules = ['"block UserAgent matches \\"^(?:%s)/%d\\\\.[0-9]+$\\" name \\"r%d\\""' % (alts, i, i)
         for i in range(3999)]
rules.append('"block DeviceId is \\"%s\\" name \\"probe\\""' % sys.argv[2])
lines.append("policy = { rules = (\n%s\n); };" % ",\n".join(rules))
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
	# What the tests that use it rely on: all 4,000 rules, the probe last.
	[ "$(grep -c '^"block UserAgent matches' "$1")" = 3999 ] && tail -2 "$1" | grep -q "DeviceId is .*$2" ||
		{ echo "big_conf: $1 does not hold the 4,000 rules with $2 last" >&2; return 1; }
}

# check_config_cpu_ms FILE: the CPU time (ms) `easgated --check-config` of FILE
# with the test PKI takes (parse, policy compile, certificate checks: what a
# reload holds the master's loop for and a new worker's start costs), or
# nothing if the check fails.
check_config_cpu_ms() {
	python3 - "$EASGATED" --check-config -c "$1" --tls-cert "$PKI/server.pem" \
		--tls-key "$PKI/server.key" --trust-file "$PKI/root.pem" <<'PY'
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(int((r.ru_utime + r.ru_stime) * 1000) if rc == 0 else "")
PY
}
