#!/usr/bin/env bash
# Real clients through the relay (issue #9): every request shape in
# clients/shapes.tsv (iOS, Android, Samsung, HTC, Gmail, Outlook, Windows Mail,
# Windows Phone, Nine, TouchDown, BlackBerry, evolution; plain and base64
# query forms, with and without User=, with and without DeviceInformation
# encoded by xml2wbxml, AcceptMultiPart, SaveInSent, a policy key, a locale,
# EAS 2.5 through 16.1) goes through the gateway (default config) to a
# recording demo backend, and:
#  1. the backend receives each request byte-exact (plus X-Forwarded-*);
#  2. a rule on its DeviceId (scoped to MoveItems) and one on its DeviceType
#     (scoped to FolderCreate) refuse those commands of that client, as
#     Exchange answers a blocked device (403 up to 12.1, 200 + Status 129
#     from 14.0), while another device's MoveItems is relayed;
#  3. `easctl devices` (JSON and CSV) lists it with the DeviceId, DeviceType
#     and OS the client sent;
#  4. the personal lists block DeviceIds with '+', '/', '=', '.', '_', '~';
#  5. what would break a log line, a CSV export or a list entry is refused
#     with 400 / X-MS-ASError 108 (109 for DeviceType), never relayed;
#  6. the access log carries the DeviceId quoted and whole;
#  7. with strict_device_id = true, the plain-form DeviceId is held to
#     Exchange's rule (letters, digits): Windows Mail's "Dbg-...==" is
#     refused with 108, the same bytes in the base64 form and the 16-byte
#     binary IDs still pass.
source "$(dirname "$0")/lib.sh"
need python3 curl xml2wbxml
C=$EG_ROOT/tests/integration/clients
SHAPES=$C/shapes.tsv
make_pki
mkdir -p "$T/work"
start_backend cas1 --record "$T/rec" || finish

# The rules: per shape one on its DeviceId, per DeviceType one, both scoped.
python3 - "$SHAPES" >"$T/gw.conf" <<'PY' || { fail "gateway config from shapes.tsv"; finish; }
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
head, rows = rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]
rules = ['"block DeviceId is \\"%s\\" cmd MoveItems"' % r["expect"] for r in rows]
for t in sorted({r["devtype"] for r in rows}):
    rules.append('"block DeviceType is \\"%s\\" cmd FolderCreate"' % t)
print('policy = {\n  default = "allow";\n  rules = (\n    %s\n  );' % ",\n    ".join(rules))
print('  blocked_device_ids = ( "Blk+/=._~9", "bob@example.com:Per/son=al" );\n};')
PY
GW_WORKERS=2 start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" ||
	finish
wait_backends_up cas1 || { fail "backend cas1 not up"; finish; }
ctl() { "$EASCTL" -s "$CTL" "$@"; }
nrec() { grep -l '^target=/Microsoft-Server-ActiveSync' "$T/rec"/*.meta 2>/dev/null | wc -l; }
one() { # $1 query [$2 user]: one request, its JSON line
	python3 "$C/clients.py" one --port "$GW_PORT" --cafile "$PKI/root.pem" --rec "$T/rec" \
		--query "$1" --user "${2:-probe@example.com}"
}

# 1-2: every shape, three requests each, on its own connection.
python3 "$C/clients.py" run --port "$GW_PORT" --cafile "$PKI/root.pem" --shapes "$SHAPES" \
	--rec "$T/rec" --work "$T/work" >"$T/run.jsonl"
check "every shape ran to its end (clients.py exit status)" test $? -eq 0
nshapes=$(grep -vc '^#' "$SHAPES")
nshapes=$((nshapes - 1))
check "$nshapes shapes x 3 requests answered" test "$(wc -l <"$T/run.jsonl")" -eq $((nshapes * 3))
python3 - "$SHAPES" "$T/run.jsonl" >"$T/verdicts" <<'PY' || fail "evaluating run.jsonl"
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
shapes = {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
for line in open(sys.argv[2]):
    r = json.loads(line)
    s = shapes[r["shape"]]
    blocked = 200 if float(s["ver"]) >= 14.0 else 403
    if r["step"] == "first":
        ok = r["relayed"] and r["exact"] and r["status"] == 200
        want = "relayed byte-exact"
    else:
        ok = not r["relayed"] and r["status"] == blocked
        want = "refused by the %s rule (%d)" % (r["step"][5:], blocked)
    print("%s\t%s %s %s: %s (status %s relayed %s exact %s)" % (
        "ok" if ok else "no", r["shape"], s["form"], s["ver"], want, r["status"], r["relayed"],
        r["exact"]))
PY
while IFS=$'\t' read -r v d; do
	if [ "$v" = ok ]; then pass "$d"; else fail "$d"; fi
done <"$T/verdicts"
check "verdicts for every request ($(wc -l <"$T/verdicts"))" test "$(wc -l <"$T/verdicts")" -eq $((nshapes * 3))

before=$(nrec)
out=$(one "Cmd=MoveItems&User=ctl%40example.com&DeviceId=ApplCONTROL0001&DeviceType=iPhone" ctl@example.com)
check "another device's MoveItems is relayed ($out)" grep -q '"relayed": true, "exact": true' <<<"$out"
check "... and the backend saw it" test "$(nrec)" -eq $((before + 1))

# 3: the inventory, as JSON and as CSV.
ctl devices --format json >"$T/devices.json"
check "easctl devices --format json: exit 0" test $? -eq 0
ctl devices --format csv >"$T/devices.csv"
check "easctl devices --format csv: exit 0" test $? -eq 0
python3 - "$SHAPES" "$T/devices.json" "$T/devices.csv" >"$T/inv" <<'PY' || fail "evaluating the inventory"
import csv, json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
shapes = [dict(zip(rows[0], r)) for r in rows[1:]]
js = json.load(open(sys.argv[2]))
cs = list(csv.DictReader(open(sys.argv[3], newline="")))
for i, s in enumerate(shapes):
    user = "client%02d@example.com" % i
    for what, table in (("json", js), ("csv", cs)):
        hit = [d for d in table if d["user"] == user and d["device_id"] == s["expect"]]
        d = hit[0] if len(hit) == 1 else None
        ok = d is not None and d["device_type"] == s["devtype"] and \
            (s["os"] == "-" or d["device_os"] == s["os"])
        print("%s\t%s: %s lists %s %s%s (got %s)" % (
            "ok" if ok else "no", s["name"], what, s["expect"], s["devtype"],
            "" if s["os"] == "-" else " " + s["os"],
            [(x["device_id"], x["device_type"], x["device_os"]) for x in table if x["user"] == user]))
PY
while IFS=$'\t' read -r v d; do
	if [ "$v" = ok ]; then pass "$d"; else fail "$d"; fi
done <"$T/inv"
check "inventory verdicts for every shape ($(wc -l <"$T/inv"))" test "$(wc -l <"$T/inv")" -eq $((nshapes * 2))

# The user clients.py gave a shape: client<NN>@example.com, NN its row.
shape_user() { awk -F'\t' -v n="$1" '!/^#/ && $1 != "name" { i++ } $1 == n { printf "client%02d@example.com", i - 1 }' "$SHAPES"; }
wm=$(shape_user windows-mail-issue)
wp=$(shape_user wp81-b64)
out=$(ctl devices --user "$wp")
check "devices table shows the whole 32-character DeviceId ($out)" \
	grep -q "^$wp  *796ACD8C9822BB3C18D373282F6D55EC  *WP8 " <<<"$out"
ctl device block "Dbg-NOByirVoyhBcQHNFB4wsmw==" --user "$wm" >/dev/null
check "easctl device block Dbg-NOByirVoyhBcQHNFB4wsmw== --user $wm: exit 0" test $? -eq 0
check "admin log line quotes user and DeviceId" grep -q \
	"event=admin_device action=block user=\"$wm\" device=\"Dbg-NOByirVoyhBcQHNFB4wsmw==\"" "$T/gw.log"
out=$(one "Cmd=Sync&DeviceId=Dbg-NOByirVoyhBcQHNFB4wsmw==&DeviceType=WindowsMail" "$wm")
check "... that device is refused on its next request ($out)" grep -q '"status": 200, "relayed": false' <<<"$out"
out=$(one "Cmd=Sync&DeviceId=Dbg-NOByirVoyhBcQHNFB4wsmw==&DeviceType=WindowsMail" "$(shape_user windows-mail-issue-pct)")
check "... another user's device of the same DeviceId is relayed ($out)" \
	grep -q '"relayed": true, "exact": true' <<<"$out"
ctl device clear "Dbg-NOByirVoyhBcQHNFB4wsmw==" --user "$wm" >/dev/null
out=$(one "Cmd=Sync&DeviceId=Dbg-NOByirVoyhBcQHNFB4wsmw==&DeviceType=WindowsMail" "$wm")
check "... and relayed again after easctl device clear ($out)" grep -q '"relayed": true, "exact": true' <<<"$out"

# 4: personal lists with the newly accepted characters.
expect_one() { # $1 description $2 want(relayed|refused) $3 query [$4 user]
	local out
	out=$(one "$3" "${4:-}")
	case $2 in
	relayed) check "$1" grep -q '"relayed": true, "exact": true' <<<"$out" ;;
	refused) check "$1" grep -q '"status": 200, "relayed": false' <<<"$out" ;;
	esac
}
expect_one "blocked_device_ids \"Blk+/=._~9\" blocks that device" refused \
	"Cmd=Sync&User=dan%40example.com&DeviceId=Blk%2B%2F%3D._~9&DeviceType=WindowsMail" dan@example.com
expect_one "\"bob@example.com:Per/son=al\" blocks bob's device" refused \
	"Cmd=Sync&DeviceId=Per/son=al&DeviceType=WindowsMail" bob@example.com
expect_one "... and not carol's device of the same DeviceId" relayed \
	"Cmd=Sync&DeviceId=Per/son=al&DeviceType=WindowsMail" carol@example.com

# 5: refused before the backend, with the status Exchange gives.
while IFS='|' read -r q want why; do
	[ -n "$q" ] || continue
	before=$(nrec)
	out=$(one "Cmd=Sync&User=eve%40example.com&$q" eve@example.com)
	if grep -q "\"status\": 400, \"relayed\": false, \"exact\": null, \"eas_error\": \"$want\"" <<<"$out" &&
		[ "$(nrec)" -eq "$before" ]; then
		pass "refused $want, not relayed: $why ($q)"
	else
		fail "refused $want, not relayed: $why ($q): $out"
	fi
done <<'EOF'
DeviceId=ab%20cd&DeviceType=SP|108|a blank (log fields split on it)
DeviceId=ab+cd&DeviceType=SP|108|'+' is a blank once decoded, as the backend decodes it
DeviceId=ab%09cd&DeviceType=SP|108|a tab
DeviceId=ab%00cd&DeviceType=SP|108|NUL
DeviceId=ab%0Acd&DeviceType=SP|108|a line feed (forges a log line)
DeviceId=ab%7Fcd&DeviceType=SP|108|DEL
DeviceId=%C3%A9t%C3%A9&DeviceType=SP|108|bytes >= 0x80 (not 7-bit ASCII)
DeviceId=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456&DeviceType=SP|108|33 characters
DeviceId=ab%22cd&DeviceType=SP|108|a double quote
DeviceId=ab%5Ccd&DeviceType=SP|108|a backslash
DeviceId=ab%2Ccd&DeviceType=SP|108|a comma (MS-ASHTTP; the CSV separator)
DeviceId=bob%3Aab&DeviceType=SP|108|a colon (user:DeviceId in the personal lists)
DeviceId=%3DHYPERLINK(1)&DeviceType=SP|108|a leading '=' (spreadsheet formula)
DeviceId=%2B1&DeviceType=SP|108|a leading '+'
DeviceId=-1&DeviceType=SP|108|a leading '-'
DeviceId=%40SUM(1)&DeviceType=SP|108|a leading '@'
DeviceId=..&DeviceType=SP|108|".." (a path component)
DeviceId=&DeviceType=SP|108|empty
DeviceId=ab&DeviceType=i-Phone|109|'-' in DeviceType (Exchange answers 109)
DeviceId=ab&DeviceType=i%20Phone|109|a blank in DeviceType
DeviceId=ab&DeviceType=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456|109|a 33-character DeviceType
EOF

# 6: the access log line carries the DeviceId quoted and whole.
check "access log: device=\"Dbg-NOByirVoyhBcQHNFB4wsmw==\" type=\"WindowsMail\"" \
	grep -q 'device="Dbg-NOByirVoyhBcQHNFB4wsmw==" type="WindowsMail"' "$T/gw.log"
check "access log: device=\"a+b/c=d.e_f~g\"" grep -q 'device="a+b/c=d.e_f~g"' "$T/gw.log"

# 7: strict_device_id = true on a second gateway.
kill "$GW_PID"
wait "$GW_PID" 2>/dev/null
unset GW_PORT
echo "strict_device_id = true;" >"$T/strict.conf"
start_gateway -c "$T/strict.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || { fail "backend cas1 not up (strict)"; finish; }
python3 "$C/clients.py" run --port "$GW_PORT" --cafile "$PKI/root.pem" --shapes "$SHAPES" \
	--rec "$T/rec" --work "$T/work" \
	--only windows-mail-issue,windows-mail-b64,wp81-b64,b64-16.0-sendmail,ios6-ipad,outlook-desktop \
	>"$T/strict.jsonl"
check "strict: the shapes ran (clients.py exit status)" test $? -eq 0
st() { grep "\"shape\": \"$1\", \"step\": \"first\"" "$T/strict.jsonl"; }
check "strict: Windows Mail's plain \"Dbg-...==\" refused 400 / X-MS-ASError 108" \
	grep -q '"status": 400, "relayed": false, "exact": null, "eas_error": "108"' <<<"$(st windows-mail-issue)"
for s in windows-mail-b64 wp81-b64 b64-16.0-sendmail ios6-ipad outlook-desktop; do
	check "strict: $s relayed byte-exact" grep -q '"relayed": true, "exact": true' <<<"$(st "$s")"
done
finish
