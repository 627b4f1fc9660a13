#!/usr/bin/env bash
# The moment between a phone's authentication and its inventory row, made to
# last: the master (the inventory's only writer) is stopped with SIGSTOP, and
# each request is put on the worker wanted (eas_session.py --worker: new
# connections until `ss -p` shows that worker holding one). 2 workers, A and B.
#  1. A relays the phone's first Provision (no DeviceInformation); the
#     backend's 200 authenticates it: A hides its sighting and sends the
#     master the event that creates its row, which cannot be written yet.
#  2. B gets the phone's Provision with DeviceInformation "iOS 6.1 10B142"
#     (a blocked OS): no row, no live sighting. B blocks it (129), and the
#     DeviceInformation must still reach the master: it used to be offered
#     only to the sightings table, which refuses an authenticated device, and
#     was lost; the phone's next Sync on A (which never saw the OS) was then
#     relayed (t_policy failed about 1 run in 7 that way).
#  3. Master resumed: the inventory has the OS and says Blocked, and the
#     phone's bodiless Syncs are refused on both workers; the backend saw
#     only the first request.
source "$(dirname "$0")/lib.sh"
need curl python3 xml2wbxml wbxml2xml ss
P=$EG_ROOT/tests/integration/policy
PY=$P/eas_session.py
make_pki
start_backend cas1 --record "$T/rec" || finish
for x in provision-nodevinfo provision-ios61 sync; do
	wbxml_from_xml "$P/$x.xml" "$T/$x.wbxml" || { fail "xml2wbxml $x"; finish; }
done
cat >"$T/gw.conf" <<'EOF'
policy = {
  default = "allow";
  rules = ( "block DeviceOS is \"iOS 6.1 10B142\"" );
};
EOF
GW_WORKERS=2 start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || { fail "backend cas1 not up"; finish; }
ctl() { "$EASCTL" -s "$CTL" "$@"; }
# A stopped master must not outlive the test stopped (cleanup's SIGTERM).
trap 'kill -CONT "$GW_PID" 2>/dev/null; cleanup' EXIT

USR=rita DEV=RITAPHONE
# mkreq OUT CMD BODY: a raw request of the phone (a neutral User-Agent: only
# DeviceInformation can tell its OS).
mkreq() {
	{
		printf 'POST /Microsoft-Server-ActiveSync?Cmd=%s&User=%s&DeviceId=%s&DeviceType=iPhone HTTP/1.1\r\n' \
			"$2" "$USR" "$DEV"
		printf 'Host: localhost\r\nUser-Agent: iPhoneMail/1.0\r\nMS-ASProtocolVersion: 14.1\r\n'
		printf 'Authorization: Basic %s\r\n' "$(printf '%s:secret' "$USR" | base64)"
		printf 'Content-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: %d\r\n\r\n' \
			"$(stat -c %s "$T/$3.wbxml")"
		cat "$T/$3.wbxml"
	} >"$1"
}
mkreq "$T/r-prov" Provision provision-nodevinfo
mkreq "$T/r-prov61" Provision provision-ios61
mkreq "$T/r-sync" Sync sync

# one NAME WORKER-OPTION REQUEST: the request on one connection placed by the
# option (--worker PID|any, --not-worker PID); prints
# "<what the phone saw> <worker pid>", the former as in t_policy:
# relayed:<backend>, eas:<Root>:<Status> (from the gateway) or http:<N>.
one() {
	local out=$T/$1 opt=() rc
	read -ra opt <<<"$2"
	python3 "$PY" session --port "$GW_PORT" --cafile "$PKI/root.pem" "${opt[@]}" "$3" >"$out"
	rc=$?
	[ $rc -eq 0 ] || { echo "session-exit:$rc -"; return; }
	python3 - "$out" <<'EOF'
import json, re, subprocess, sys
r = json.loads(open(sys.argv[1]).readline())
be = r.get("headers", {}).get("x-backend")
if be:
    w = "relayed:" + be.split()[0]
elif r["status"] == 200 and r.get("body_hex"):
    open(sys.argv[1] + ".body", "wb").write(bytes.fromhex(r["body_hex"]))
    xml = subprocess.run(["wbxml2xml", "-l", "ACTIVESYNC", "-m", "0", "-o", "-",
                          sys.argv[1] + ".body"], capture_output=True, text=True).stdout
    m = re.search(r'<(\w+) xmlns="[^"]*"><Status>(\d+)</Status></\1>', xml)
    w = "eas:%s:%s" % m.groups() if m else "undecodable"
else:
    w = "http:%d" % r["status"]
print(w, r.get("worker", 0))
EOF
}
# expect_one WANT DESCRIPTION NAME WORKER-OPTION REQUEST; sets GOT_WORKER.
expect_one() {
	local want=$1 d=$2 got
	got=$(one "$3" "$4" "$5")
	GOT_WORKER=${got#* }
	if [ "${got% *}" = "$want" ]; then pass "$d: $want (worker $GOT_WORKER)"; else
		fail "$d: got '${got% *}', want '$want' (worker $GOT_WORKER)"; fi
}
rows() { # inventory rows of the phone, read directly (the master may be stopped)
	python3 -c '
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
print(db.execute("select count(*) from devices where device_id = ?", (sys.argv[2],)).fetchone()[0])' \
		"$T/state/inventory.db" "$DEV"
}
backend_saw() { grep -l "DeviceId=$DEV" "$T/rec"/*.req 2>/dev/null | wc -l; }

echo "# 1. master stopped; A relays the first Provision: authenticated, row not written"
kill -STOP "$GW_PID" || { fail "SIGSTOP the master"; finish; }
expect_one "relayed:cas1" "Provision without DeviceInformation" s1 "--worker any" "$T/r-prov"
A=$GOT_WORKER
check "...the backend saw it" test "$(backend_saw)" -eq 1
check "...and the stopped master has not written the phone's row" test "$(rows)" = 0

echo "# 2. B: Provision with DeviceInformation 'iOS 6.1 10B142', row still not written"
expect_one "eas:Provision:129" "Provision with the blocked OS on the other worker" s2 "--not-worker $A" "$T/r-prov61"
B=$GOT_WORKER
check "...two workers served the phone (A=$A, B=$B)" bash -c '[ "$0" -gt 0 ] && [ "$1" -gt 0 ] && [ "$0" != "$1" ]' "$A" "$B"
check "...still no row: B decided inside the window" test "$(rows)" = 0
expect_one "eas:Sync:129" "B, bodiless Sync, master still stopped" s3 "--worker $B" "$T/r-sync"

echo "# 3. master resumed: what B read is in the inventory and holds on A"
kill -CONT "$GW_PID" || fail "SIGCONT the master"
out=$(ctl device show "$DEV")
check "device show: authenticated, DeviceOS from B's DeviceInformation, Blocked by the rule" \
	bash -c 'grep -q "^Authenticated: *yes" <<<"$0" && grep -q "^DeviceOS: *iOS 6.1 10B142$" <<<"$0" &&
		grep -q "^AccessState: *Blocked$" <<<"$0"' "$out"
grep -E '^(Authenticated|DeviceOS|AccessState):' <<<"$out" | sed 's/^/    | /'
expect_one "eas:Sync:129" "A, bodiless Sync (A never read the OS)" s4 "--worker $A" "$T/r-sync"
expect_one "eas:Sync:129" "B, bodiless Sync" s5 "--worker $B" "$T/r-sync"
check "the backend saw only the first request of the phone" test "$(backend_saw)" -eq 1
finish
