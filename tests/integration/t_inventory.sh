#!/usr/bin/env bash
# Device inventory (issue #3).
#  1. After replaying the 129 real captures (tests/data/eas-captures) through
#     the gateway, every device appears in `easctl devices` with the model,
#     OS, IMEI, friendly name, operator and language its Provision/Settings
#     DeviceInformation carried. The expected values come from decoding the
#     capture bodies with libwbxml's wbxml2xml, not from our decoder.
#  2. kill -9 of the master and its workers in the middle of a replay of
#     many phones: every row `easctl devices` listed just before the kill
#     (listing commits: what it shows is committed) is still in the database
#     with the same fields: in the crashed files themselves (sqlite3
#     -readonly, PRAGMA integrity_check) and through the restarted daemon,
#     which keeps recording.
source "$(dirname "$0")/lib.sh"
need curl python3 wbxml2xml sqlite3 ps
make_pki
CAP=$EG_ROOT/tests/data/eas-captures
REPLAY=$EG_ROOT/tests/integration/tlsreplay.py
mapfile -t files < <(ls "$CAP"/*.http | sort)
start_backend cas1 || finish
start_gateway --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || { fail "backend cas1 not up"; finish; }
ctl() { "$EASCTL" -s "$CTL" "$@"; }

# The fields each device's DeviceInformation said last, per libwbxml, keyed
# "user device_id" (user: the Basic credentials' name, lower-cased, as the
# gateway identifies users).
python3 - "$T/expected.json" "${files[@]}" <<'PY'
import base64, json, os, re, subprocess, sys, tempfile
import xml.etree.ElementTree as ET
out, files = sys.argv[1], sys.argv[2:]
fields = {"Model": "device_model", "OS": "device_os", "IMEI": "imei",
          "FriendlyName": "friendly_name", "MobileOperator": "mobile_operator"}
exp = {}
tmp = tempfile.NamedTemporaryFile(suffix=".wbxml", delete=False).name
for f in files:
    head, _, body = open(f, "rb").read().partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    dev = re.search(r"[?&]DeviceId=([^&\s]+)", lines[0])
    auth = [l for l in lines if l.lower().startswith("authorization: basic ")]
    if not dev or not auth or not body:
        continue
    user = base64.b64decode(auth[0].split()[-1]).decode().split(":")[0].lower()
    open(tmp, "wb").write(body)
    xml = subprocess.run(["wbxml2xml", "-l", "ACTIVESYNC", "-m", "0", "-o", "-", tmp],
                         capture_output=True).stdout.decode()
    xml = xml[:xml.rfind(">") + 1]  # the tool appends its verdict to stdout
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        continue
    for di in root.iter("{Settings:}DeviceInformation"):
        d = exp.setdefault(user + " " + dev.group(1), {})
        for el in di.iter():
            name = el.tag.split("}")[-1]
            if name in fields and el.text:
                d[fields[name]] = el.text
os.unlink(tmp)
json.dump(exp, open(out, "w"), indent=1, sort_keys=True)
PY
rc=$?
check "libwbxml's reading of the captures ran (exit $rc)" test "$rc" -eq 0
check "libwbxml found DeviceInformation for 3 (user, device) pairs in the captures" \
	test "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$T/expected.json")" -eq 3

echo "# 1. replay the real captures, then look at the inventory"
python3 "$REPLAY" --port "$GW_PORT" --cafile "$PKI/root.pem" --mode keepalive "${files[@]}" \
	>"$T/replay1.jsonl" 2>"$T/replay1.err"
check "all ${#files[@]} captures answered" test "$(wc -l <"$T/replay1.jsonl")" -eq "${#files[@]}"
ctl devices --format json >"$T/devices1.json"
python3 - "$T/expected.json" "$T/devices1.json" >"$T/cmp1.out" <<'PY'
import json, sys
exp = json.load(open(sys.argv[1]))
got = {r["user"] + " " + r["device_id"]: r for r in json.load(open(sys.argv[2]))}
bad = 0
for k, fields in sorted(exp.items()):
    r = got.get(k)
    if r is None:
        print("MISSING", k); bad += 1; continue
    for f, v in sorted(fields.items()):
        if r[f] != v:
            print("DIFF", k, f, repr(r[f]), "want", repr(v)); bad += 1
    for f, v in (("device_type", "Android"), ("protocol", "16.1"), ("access_state", "Allowed")):
        if r[f] != v:
            print("DIFF", k, f, repr(r[f]), "want", repr(v)); bad += 1
    print("OK", k, r["device_model"], "|", r["device_os"])
extra = sorted(set(got) - set(exp))
print("EXTRA", " ".join(extra) if extra else "-")
sys.exit(1 if bad else 0)
PY
rc=$?
sed 's/^/    /' "$T/cmp1.out"
check "each device shows the model, OS, IMEI, name and operator from its DeviceInformation" test "$rc" -eq 0
check "one other device: Nine's debug build (DeviceId with '-', no DeviceInformation sent)" \
	grep -q '^EXTRA debug@mail.fd Dbg-Nine526977DA8D36$' "$T/cmp1.out"
out=$(ctl devices --user t1@mail.fd --format csv | tail -n +2 | cut -d, -f1,2,4,5)
check "devices --user t1@mail.fd: its phone ($out)" \
	test "$out" = "t1@mail.fd,Nine8EBAF6FB2B19,Android SDK built for x86_64,Android 12.8151367"
out=$(ctl device show Nine45069EA34A52 --user t2@dev.fd)
check "device show: first sync, last success and the last command are recorded" \
	bash -c 'grep -q "^FirstSync: *20" <<<"$0" && grep -q "^LastSuccessSync: *20" <<<"$0" &&
		grep -q "^LastCommand: *[A-Za-z]" <<<"$0" && grep -q "^X-MS-WL: *Nine/" <<<"$0"' "$out"
ctl device show Nine45069EA34A52 >/dev/null 2>"$T/err"
check "device show of a DeviceId two users share: exit 1, asks for --user" \
	bash -c '[ $0 -eq 1 ] && grep -q -- "--user" "$1"' $? "$T/err"

echo "# 2. kill -9 mid-replay: no committed row is lost"
# 300 more phones: the Provision capture (with DeviceInformation) and a Sync,
# each phone with its own DeviceId and a FriendlyName of the same length
# (the WBXML string changes, its framing does not).
N=300
mkdir -p "$T/many"
python3 - "$CAP/754-R12-Provision.http" "$CAP/754-R90-Sync.http" "$T/many" "$N" <<'PY'
import sys
prov, sync, out, n = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read(), sys.argv[3], int(sys.argv[4])
head, _, body = prov.partition(b"\r\n\r\n")
assert body.count(b"sdk_phone64_x86_64") == 1
for i in range(n):
    dev = b"NineCrash%07d" % i
    name = b"killphone-%08d" % i
    open("%s/%04d-a.http" % (out, i), "wb").write(
        head.replace(b"Nine45069EA34A52", dev) + b"\r\n\r\n" +
        body.replace(b"sdk_phone64_x86_64", name))
    open("%s/%04d-b.http" % (out, i), "wb").write(sync.replace(b"Nine45069EA34A52", dev))
PY
rc=$?
check "$N phones' requests generated (exit $rc)" test "$rc" -eq 0
mapfile -t many < <(ls "$T/many"/*.http | sort)
# One TLS connection per request: slow enough to be interrupted midway.
python3 "$REPLAY" --port "$GW_PORT" --cafile "$PKI/root.pem" --mode each "${many[@]}" \
	>"$T/replay2.jsonl" 2>"$T/replay2.err" &
RP=$!
EG_PIDS+=("$RP")
crashrows() { ctl devices --format csv 2>/dev/null | grep -c ',NineCrash'; }
for _ in $(seq 300); do
	[ "$(crashrows)" -ge 40 ] && break
	sleep 0.05
done
# The checkpoint: what the daemon says is in the inventory (listing commits).
ctl devices --format json >"$T/checkpoint.json"
read -ra workers <<<"$(ps -o pid= --ppid "$GW_PID" | tr '\n' ' ')"
kill -KILL "$GW_PID"
for w in "${workers[@]}"; do kill -KILL "$w"; done
wait "$GW_PID" "$RP" 2>/dev/null
sent=$(wc -l <"$T/replay2.jsonl")
ncp=$(python3 -c 'import json,sys; print(sum(1 for r in json.load(open(sys.argv[1])) if r["device_id"].startswith("NineCrash")))' "$T/checkpoint.json")
check "the kill hit mid-replay: $ncp new phones listed at the checkpoint, $sent of ${#many[@]} requests answered" \
	bash -c '[ $0 -ge 40 ] && [ $1 -lt $2 ]' "$ncp" "$sent" "${#many[@]}"
for p in "$GW_PID" "${workers[@]}"; do
	for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done
check "master and ${#workers[@]} workers are gone" \
	bash -c 'for p; do ! kill -0 "$p" 2>/dev/null || exit 1; done' _ "$GW_PID" "${workers[@]}"

# What kill -9 left on disk, read by sqlite3 alone (on a copy, so that no
# root-owned -shm is left for the daemon).
mkdir -p "$T/crash"
cp "$T/state/inventory.db" "$T/crash/"
for s in -wal -shm; do [ -f "$T/state/inventory.db$s" ] && cp "$T/state/inventory.db$s" "$T/crash/"; done
ic=$(sqlite3 -readonly "$T/crash/inventory.db" 'PRAGMA integrity_check;' 2>&1)
check "PRAGMA integrity_check on the crashed database: $ic" test "$ic" = ok
sqlite3 -readonly -json "$T/crash/inventory.db" \
	"SELECT user, device_id, device_type, device_model, device_os, friendly_name, imei,
	        mobile_operator, protocol, first_sync FROM devices" >"$T/crash.json" 2>&1

# The same through the restarted daemon (same state directory).
unset GW_PORT
start_gateway --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
ctl devices --format json >"$T/after.json"

# Every checkpoint row must be in both, with the same fields.
cmp_rows() { # $1 = rows file (easctl JSON or sqlite3 -json) -> "missing differing"
	python3 - "$T/checkpoint.json" "$1" <<'PY'
import json, sys, time, calendar
cp = json.load(open(sys.argv[1]))
rows = json.load(open(sys.argv[2]))
def iso(v):  # sqlite3 gives unix seconds, easctl ISO 8601
    if isinstance(v, int):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(v)) if v else "-"
    return v
got = {(r["user"], r["device_id"]): r for r in rows}
keep = ("device_type", "device_model", "device_os", "friendly_name", "imei",
        "mobile_operator", "protocol", "first_sync")
missing = differ = 0
for r in cp:
    g = got.get((r["user"], r["device_id"]))
    if g is None:
        missing += 1
        print("missing", r["user"], r["device_id"], file=sys.stderr)
        continue
    for k in keep:
        v = g.get(k)
        if k == "device_model" and v == "":  # easctl shows DeviceType until a model is known
            v = g["device_type"]
        if k in g and str(iso(v)) != str(r[k]):
            differ += 1
            print("differs", r["device_id"], k, g[k], r[k], file=sys.stderr)
print(missing, differ, len(cp))
PY
}
read -r miss diff ncp2 < <(cmp_rows "$T/crash.json")
check "crashed database: all $ncp2 checkpoint rows there ($miss missing), fields equal ($diff differ)" \
	bash -c '[ $0 -eq 0 ] && [ $1 -eq 0 ] && [ $2 -gt 40 ]' "$miss" "$diff" "$ncp2"
read -r miss diff ncp2 < <(cmp_rows "$T/after.json")
check "restarted daemon: all $ncp2 checkpoint rows listed ($miss missing), fields equal ($diff differ)" \
	bash -c '[ $0 -eq 0 ] && [ $1 -eq 0 ]' "$miss" "$diff"
check "the checkpoint rows carry their own DeviceInformation (FriendlyName killphone-<n> of NineCrash<n>)" \
	python3 -c '
import json, sys
rows = [r for r in json.load(open(sys.argv[1])) if r["device_id"].startswith("NineCrash")]
ok = all(r["friendly_name"] == "killphone-%08d" % int(r["device_id"][9:]) and
         r["device_model"] == "Android SDK built for x86_64" for r in rows)
sys.exit(not (ok and rows))' "$T/after.json"

# The restarted daemon keeps recording into the same file.
python3 "$REPLAY" --port "$GW_PORT" --cafile "$PKI/root.pem" --mode keepalive \
	"$T/many/0299-a.http" "$T/many/0299-b.http" >"$T/replay3.jsonl" 2>&1
out=$(ctl device show NineCrash0000299 --user t2@dev.fd 2>&1)
check "after the restart a new phone is recorded (NineCrash0000299 with its name)" \
	grep -q "^FriendlyName: *killphone-00000299$" <<<"$out"
kill "$GW_PID"
wait "$GW_PID" 2>/dev/null
ic=$(sqlite3 -readonly "$T/state/inventory.db" 'PRAGMA integrity_check;' 2>&1)
check "integrity_check after a clean stop: $ic" test "$ic" = ok
finish
