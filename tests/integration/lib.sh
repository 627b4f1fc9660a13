# shellcheck shell=bash
# lib.sh - shared helpers for integration tests (sourced).
#
# Every test gets its own temp dir ($T), its own PKI, free loopback ports and
# a cleanup trap that stops ONLY the processes the test started, by PID.
# Conventions: pass/fail lines, exit 0 = pass, 1 = fail, 77 = skipped.

set -uo pipefail
EG_ROOT=${EG_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# jqe: jq -e that fails on empty input (jq 1.6's -e passes on it).
source "$EG_ROOT/tests/jqe.sh"
O=${EG_BUILD:-${1:-build}}
case $O in /*) ;; *) O=$EG_ROOT/$O ;; esac
EASGATED=$O/easgated
EASCTL=$O/easctl
BACKEND=$O/eas-demo-backend
T=$(mktemp -d /tmp/egtest.XXXXXX)
chmod 755 "$T"
EG_PIDS=()
EG_FAILS=0
EG_PASSES=0
TNAME=$(basename "$0" .sh)

cleanup() {
	local p
	for p in "${EG_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${EG_PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	if [ -n "${EG_KEEP:-}" ] || [ "$EG_FAILS" -gt 0 ]; then
		echo "  (logs kept in $T)"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT

pass() { EG_PASSES=$((EG_PASSES + 1)); printf '  PASS  %s\n' "$*"; }
fail() { EG_FAILS=$((EG_FAILS + 1)); printf '  FAIL  %s\n' "$*"; }
skip() { printf '  SKIP  %s: %s\n' "$TNAME" "$*"; exit 77; }
finish() {
	# Under ASan/UBSan builds, any sanitizer report in a daemon log fails the test.
	local f
	for f in "$T"/*.log; do
		[ -f "$f" ] || continue
		if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$f"; then
			fail "sanitizer report in $(basename "$f")"
			grep -m3 -A12 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$f"
		fi
	done
	if [ "$EG_FAILS" -gt 0 ] && [ -f "$T/gw.log" ]; then
		echo "  -- last lines of the gateway log:"
		tail -n 25 "$T/gw.log" | sed 's/^/  | /'
	fi
	echo "$TNAME: $EG_PASSES passed, $EG_FAILS failed"
	[ "$EG_FAILS" -eq 0 ]
	exit $?
}
# check "description" command...   (pass if the command succeeds)
check() {
	local d=$1; shift
	if "$@"; then pass "$d"; else fail "$d"; fi
}
# lacks GREP-ARGS...: succeeds only if grep ran and found nothing (exit 1).
# For "X never appears" checks: a missing or unreadable file (grep exit 2)
# fails, so the check cannot pass for want of anything to look at.
lacks() {
	grep "$@" >/dev/null
	[ $? -eq 1 ]
}
# As root or in CI (CI=...) every test must run: `make deps` installs every
# tool the tests need, so a missing one is a failure there, a skip elsewhere.
must_run() { [ "$(id -u)" -eq 0 ] || [ -n "${CI:-}" ]; }
need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null && continue
		must_run || skip "needs $c"
		fail "needs $c (make deps installs it); as root or in CI this test must run"
		finish
	done
}
need_root() { [ "$(id -u)" -eq 0 ] || skip "needs root (CI runs as root)"; }
# skip_part WHAT WHY: part of a test cannot run here: a SKIP line for a user,
# a failure as root or in CI (see must_run).
skip_part() {
	if must_run; then
		fail "$1 did not run: $2 (as root or in CI it must)"
	else
		printf '  SKIP  %s: %s\n' "$1" "$2"
	fi
}

# A free TCP port on loopback (the kernel picks; tiny race, fine for tests).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}

# Demo PKI: root -> intermediate -> leaf for localhost/127.0.0.1/::1.
make_pki() {
	"$EG_ROOT/tools/mkcerts.sh" "$T/pki" "${@:-localhost}" 127.0.0.1 ::1 >/dev/null
	PKI=$T/pki
}

# start_backend NAME [demo-backend options...]; sets BE_PORT_<NAME>.
start_backend() {
	local name=$1; shift
	local pf=$T/be-$name.port
	"$BACKEND" --listen 127.0.0.1:0 --port-file "$pf" --name "$name" --quiet "$@" \
		>"$T/be-$name.log" 2>&1 &
	EG_PIDS+=($!)
	eval "BE_PID_$name=$!"
	for _ in $(seq 100); do [ -s "$pf" ] && break; sleep 0.05; done
	[ -s "$pf" ] || { fail "backend $name did not start"; cat "$T/be-$name.log"; return 1; }
	eval "BE_PORT_$name=$(cat "$pf")"
}

# start_gateway [easgated options...]; sets GW_PORT, GW_PID, CTL.
# Waits until the control socket answers and a TLS handshake succeeds.
start_gateway() {
	GW_PORT=${GW_PORT:-$(free_port)}
	CTL=$T/ctl.sock
	mkdir -p "$T/state"
	local tlsopts=(--tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" --trust-file "$PKI/root.pem")
	[ -n "${GW_CONFIG_TLS:-}" ] && tlsopts=() # certificates come from the config file
	local listenopt=(--listen "127.0.0.1:$GW_PORT")
	[ -n "${GW_CONFIG_LISTEN:-}" ] && listenopt=() # the config lists 127.0.0.1:$GW_PORT itself
	"$EASGATED" "${listenopt[@]}" "${tlsopts[@]}" --state-dir "$T/state" \
		--control-socket "$CTL" -w "${GW_WORKERS:-2}" "$@" >>"$T/gw.log" 2>&1 &
	GW_PID=$!
	EG_PIDS+=($GW_PID)
	for _ in $(seq 100); do
		if "$EASCTL" -s "$CTL" status >/dev/null 2>&1 &&
			curl -s -o /dev/null --max-time 2 --cacert "$PKI/root.pem" \
				"https://127.0.0.1:$GW_PORT/" 2>/dev/null; then
			return 0
		fi
		kill -0 "$GW_PID" 2>/dev/null || break
		sleep 0.1
	done
	fail "gateway did not start"
	tail -20 "$T/gw.log"
	return 1
}

# Wait until `easctl backends` shows every listed backend up.
wait_backends_up() {
	local n
	for _ in $(seq 100); do
		n=0
		for b in "$@"; do
			"$EASCTL" -s "$CTL" backends 2>/dev/null | awk -v b="$b" '$1==b && $3=="up"' | grep -q . && n=$((n + 1))
		done
		[ "$n" -eq $# ] && return 0
		sleep 0.1
	done
	return 1
}

GWURL() { echo "https://127.0.0.1:$GW_PORT$1"; }

# eas CURL-ARGS... : curl against the gateway with the test root CA.
eas() { curl -sS --cacert "$PKI/root.pem" --max-time "${EAS_TIMEOUT:-20}" "$@"; }

# A WBXML body from ActiveSync XML via the independent encoder (libwbxml).
wbxml_from_xml() { # $1 = xml file, $2 = output
	xml2wbxml -a -n -o "$2" "$1" >/dev/null 2>&1
}
