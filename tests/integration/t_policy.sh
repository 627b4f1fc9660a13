#!/usr/bin/env bash
# Device access policy end to end (issue #3): phone requests with bodies
# encoded by libwbxml's xml2wbxml (not by us), through the real gateway (2
# workers) to the demo backend, in plain and base64 query form; what the
# phone sees is classified by answer, X-Backend and the backend's recording.
#  1. "iOS 6.1 10B142" blocked by an exact config rule, learnt from the
#     DeviceInformation of a Provision: EAS 14.1 gets HTTP 200 + a WBXML
#     envelope with Status 129 (decoded by wbxml2xml), 12.1 a bare 403; the
#     backend never sees them; OPTIONS still passes and does not turn the
#     phone Allowed in the inventory; a phone only ever refused has no
#     successful sync; DeviceInformation read by one worker holds on the
#     phone's next connections to the other worker at once. The OS decoded
#     from an Apple User-Agent applies from the first request.
#  2. `easctl rules add 'block UserAgent matches "^Apple.*1002.*" cmd
#     MeetingResponse'` takes effect on an open connection: MeetingResponse
#     refused, Sync from the same phone relayed, the phone not Blocked.
#  3. "quarantine DeviceOS < iOS 7.0.2" (run time): 7.0.2 and 7.1 in, 7.0.1
#     out (from the User-Agent or from Settings/DeviceInformation).
#  4. quarantine answers as documented in user/decide/gate.c; `easctl device
#     approve` lets the phone in on its next request on the same connection;
#     `device block`/`clear` right after a first request.
#  5. a phone that never sent DeviceInformation is judged by its DeviceType
#     (DeviceModel rule, as Exchange); once it names its model, by the model.
#  Phones refused from their very first request never had their credentials
#  accepted by a backend: they are listed by `devices --unauthenticated`
#  (seen, not authenticated), never in the inventory (issue #9).
#  6. `easctl rules test`, `devices --format csv|json`, --help, exit codes.
#  7. incubation: a new iOS version is quarantined, listed by `easctl
#     versions incubating`, approved, and allowed on the next request of the
#     same connection; other families are not held; revoke holds it again.
source "$(dirname "$0")/lib.sh"
need curl python3 xml2wbxml wbxml2xml
P=$EG_ROOT/tests/integration/policy
PY=$P/eas_session.py
make_pki
start_backend cas1 --record "$T/rec" || finish
for x in "$P"/*.xml; do
	wbxml_from_xml "$x" "$T/$(basename "$x" .xml).wbxml" || { fail "xml2wbxml $x"; finish; }
done

cat >"$T/gw.conf" <<'EOF'
policy = {
  default = "allow";
  rules = (
    "block DeviceOS is \"iOS 6.1 10B142\"",
    "block DeviceModel is \"WP8\" name \"no-wp8\""
  );
};
EOF
GW_WORKERS=2 start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || { fail "backend cas1 not up"; finish; }
ctl() { "$EASCTL" -s "$CTL" "$@"; }

# Requests the backend recorded (health checks aside).
nrec() { grep -l '^target=/Microsoft-Server-ActiveSync' "$T/rec"/*.meta 2>/dev/null | wc -l; }

# What the phone saw, as one word:
#   relayed:<backend>   answered by the backend (X-Backend)
#   eas:<Root>:<N>      HTTP 200 + WBXML <Root><Status>N</Status></Root> from the gateway
#   empty               HTTP 200, empty body, from the gateway ("no changes")
#   http:<N>            any other status from the gateway
# plus " seen=<n>": how many requests the backend recorded meanwhile.
# $1 status, $2 X-Backend value, $3 body file, $4 backend records before.
classify() {
	local st=$1 be=$2 body=$3 before=$4 w
	if [ -n "$be" ]; then
		w="relayed:$be"
	elif [ "$st" = 200 ] && [ ! -s "$body" ]; then
		w=empty
	elif [ "$st" = 200 ]; then
		local xml
		xml=$(wbxml2xml -l ACTIVESYNC -m 0 -o - "$body" 2>/dev/null)
		w=$(python3 -c '
import re, sys
m = re.search(r"<(\w+) xmlns=\"[^\"]*\"><Status>(\d+)</Status></\1>", sys.argv[1])
print("eas:%s:%s" % m.groups() if m else "undecodable")' "$xml")
	else
		w="http:$st"
	fi
	echo "$w seen=$(($(nrec) - before))"
}

# ask FORM CMD DEVID TYPE UA PROTO [BODY]: one request with curl (its own
# connection), FORM plain or b64; prints classify's word.
ask() {
	local form=$1 cmd=$2 dev=$3 type=$4 ua=$5 pv=$6 body=${7:-} q hdr=() before st
	if [ "$form" = b64 ]; then
		q=$(python3 "$PY" b64 --ver "${pv/./}" --cmd "$cmd" --devid "$dev" --type "$type" --user "$USR")
	else
		q="Cmd=$cmd&User=$USR&DeviceId=$dev&DeviceType=$type"
		hdr=(-H "MS-ASProtocolVersion: $pv")
	fi
	if [ -n "$body" ]; then
		hdr+=(--data-binary "@$T/$body.wbxml")
	else
		hdr+=(--data-binary "")
	fi
	before=$(nrec)
	rm -f "$T/ans" "$T/ans.h"
	st=$(eas -u "$USR:secret" -A "$ua" -H "Content-Type: application/vnd.ms-sync.wbxml" \
		"${hdr[@]}" -o "$T/ans" -D "$T/ans.h" -w '%{http_code}' \
		"$(GWURL "/Microsoft-Server-ActiveSync?$q")")
	classify "$st" "$(sed -n 's/^X-Backend: *\([^[:space:]]*\).*/\1/Ip' "$T/ans.h")" "$T/ans" "$before"
}

# expect WORD DESCRIPTION ask-args...: the request must give exactly WORD.
expect() {
	local want=$1 d=$2 got
	shift 2
	got=$(ask "$@")
	if [ "$got" = "$want" ]; then pass "$d: $got"; else fail "$d: got '$got', want '$want'"; fi
}

# A raw request file for eas_session.py: mkreq OUT CMD DEVID TYPE UA PROTO [BODY] [FORM]
mkreq() {
	local out=$1 cmd=$2 dev=$3 type=$4 ua=$5 pv=$6 body=${7:-} form=${8:-plain} q len=0
	if [ "$form" = b64 ]; then
		q=$(python3 "$PY" b64 --ver "${pv/./}" --cmd "$cmd" --devid "$dev" --type "$type" --user "$USR")
	else
		q="Cmd=$cmd&User=$USR&DeviceId=$dev&DeviceType=$type"
	fi
	[ -n "$body" ] && len=$(stat -c %s "$T/$body.wbxml")
	{
		printf 'POST /Microsoft-Server-ActiveSync?%s HTTP/1.1\r\nHost: localhost\r\n' "$q"
		printf 'User-Agent: %s\r\n' "$ua"
		[ "$form" = b64 ] || printf 'MS-ASProtocolVersion: %s\r\n' "$pv"
		printf 'Authorization: Basic %s\r\n' "$(printf '%s:secret' "$USR" | base64)"
		printf 'Content-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: %d\r\n\r\n' "$len"
		[ -n "$body" ] && cat "$T/$body.wbxml"
	} >"$out"
}

# session OUT STEP...: steps on one connection (see eas_session.py); then
# OUT.words holds one classify word per request (seen= is the total over the
# session) and OUT.ports the client ports used.
session() {
	local out=$1 before i=0 st be
	shift
	before=$(nrec)
	python3 "$PY" session --port "$GW_PORT" --cafile "$PKI/root.pem" "$@" >"$out" ||
		fail "eas_session.py ${out##*/} exited $?"
	: >"$out.words"
	while read -r st be hex; do
		[ "$be" = - ] && be=
		printf '%s' "${hex#-}" | xxd -r -p >"$out.$i.body"
		classify "$st" "$be" "$out.$i.body" "$before" | sed 's/ seen=.*//' >>"$out.words"
		i=$((i + 1))
	done < <(python3 -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print(r["status"], r.get("headers", {}).get("x-backend") or "-", r.get("body_hex") or "-")' "$out")
	python3 -c '
import json, sys
print(len({json.loads(l).get("lport") for l in open(sys.argv[1])}))' "$out" >"$out.ports"
	echo "seen=$(($(nrec) - before))" >>"$out.words"
}
words() { tr '\n' ' ' <"$1.words" | sed 's/ $//'; }

UA61='Apple-iPhone4C1/1002.142'
UA612='Apple-iPad2C1/1002.146'
UA701='Apple-iPhone6C1/1101.470'
UA702='Apple-iPhone6C1/1101.501'
UA71='Apple-iPhone6C1/1104.167'

echo "# 1. exact rule: block DeviceOS is \"iOS 6.1 10B142\", decided from the Provision body"
USR=carol
# A neutral User-Agent: only the DeviceInformation in the body can tell the OS.
expect "relayed:cas1 seen=1" "Provision without DeviceInformation, OS unknown: relayed" \
	plain Provision CAROLIPHONE61 iPhone 'iPhoneMail/1.0' 14.1 provision-nodevinfo
expect "eas:Provision:129 seen=0" "Provision with DeviceInformation OS 'iOS 6.1 10B142', EAS 14.1: 200 + Status 129" \
	plain Provision CAROLIPHONE61 iPhone 'iPhoneMail/1.0' 14.1 provision-ios61
check "...with Content-Type application/vnd.ms-sync.wbxml" grep -qi '^Content-Type: application/vnd.ms-sync.wbxml' "$T/ans.h"
expect "http:403 seen=0" "the same at EAS 12.1: bare HTTP 403" \
	plain Provision CAROLIPHONE61 iPhone 'iPhoneMail/1.0' 12.1 provision-ios61
expect "eas:Sync:129 seen=0" "later Sync without a body: still blocked (the inventory knows its OS)" \
	plain Sync CAROLIPHONE61 iPhone 'iPhoneMail/1.0' 14.1 sync
expect "eas:FolderSync:129 seen=0" "FolderSync: status 129 in the FolderSync envelope" \
	plain FolderSync CAROLIPHONE61 iPhone 'iPhoneMail/1.0' 14.1 foldersync
expect "http:403 seen=0" "base64 form, EAS 12.1 (version from the query): 403" \
	b64 Sync CAROLIPHONE61 iPhone 'iPhoneMail/1.0' 12.1 sync
expect "eas:Provision:129 seen=0" "base64 form Provision with the same body: 129" \
	b64 Provision CAROLB64PHONE iPhone 'iPhoneMail/1.0' 14.1 provision-ios61
check "the backend never saw a request of the blocked device after its DeviceInformation" \
	test "$(grep -l 'DeviceId=CAROLIPHONE61' "$T/rec"/*.req | wc -l)" -eq 1
st=$(eas -u carol:secret -X OPTIONS -o /dev/null -D "$T/opt.h" -w '%{http_code}' \
	"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=Options&User=carol&DeviceId=CAROLIPHONE61&DeviceType=iPhone")")
check "OPTIONS is always allowed, even for the blocked phone ($st)" \
	bash -c '[ "$0" = 200 ] && grep -qi "^X-Backend: cas1" "$1"' "$st" "$T/opt.h"
# The OS decoded from an Apple User-Agent applies from the very first request.
expect "eas:Sync:129 seen=0" "a new phone with UA $UA61 (build 10B142 = iOS 6.1), no DeviceInformation: 129" \
	plain Sync CAROLSECOND iPhone "$UA61" 14.1 sync
expect "eas:Sync:129 seen=0" "...in base64 form too" b64 Sync CAROLSECOND iPhone "$UA61" 14.1 sync
out=$(ctl device show CAROLIPHONE61)
check "device show: DeviceOS and model from the Provision body" \
	bash -c 'grep -q "^DeviceOS: *iOS 6.1 10B142$" <<<"$0" && grep -q "^DeviceModel: *iPhone4C1$" <<<"$0" &&
		grep -q "^FriendlyName: *Carol.s iPhone$" <<<"$0" && grep -q "^IMEI: *013412003456789$" <<<"$0"' "$out"
check "device show: blocked by the config rule, line 4" grep -q "^Rule: *.*gw.conf:4$" <<<"$out"
check "device show: still Blocked after its OPTIONS (OPTIONS is let through, it does not allow the phone)" \
	bash -c 'grep -q "^AccessState: *Blocked$" <<<"$0" && grep -q "^StateReason: *RULE$" <<<"$0"' "$out"
out=$(ctl device show CAROLSECOND)
check "device show: a phone only ever answered with status 129 has a sync attempt but no successful sync" \
	bash -c 'grep -q "^LastSyncAttempt: *20" <<<"$0" && grep -q "^LastSuccessSync: *-$" <<<"$0" &&
		grep -q "^LastStatus: *200$" <<<"$0"' "$out"
check "...and, never relayed, it is not authenticated: shown from the sightings, Blocked" \
	bash -c 'grep -q "^Authenticated: *no" <<<"$0" && grep -q "^AccessState: *Blocked$" <<<"$0"' "$out"
check "...while CAROLIPHONE61, relayed once, is" grep -q "^Authenticated: *yes" <<<"$(ctl device show CAROLIPHONE61)"
check "the decision is logged with the rule that made it" \
	grep -q 'event=decision user="carol" device="CAROLIPHONE61" os="iOS 6.1 10B142" access=block reason=RULE rule=".*gw.conf:4"' "$T/gw.log"

# Phones open several connections (Ping, Sync, ...) and each lands on some
# worker. Once both workers know the phone (OS unknown), DeviceInformation
# read by one of them must reach the other at once.
workers_of() { # DEVID [from line]: the workers that logged a request of DEVID
	tail -n +"${2:-1}" "$T/gw.log" | grep "event=access .*device=\"$1\"" |
		sed -n 's/.*proc=\(worker[0-9]*\).*/\1/p' | sort -u | wc -l
}
for _ in $(seq 40); do
	[ "$(workers_of CAROLPARALLEL)" -ge 2 ] && break
	ask plain Sync CAROLPARALLEL iPhone 'iPhoneMail/1.0' 14.1 sync >/dev/null
done
check "before its DeviceInformation, both workers served (and cached) the phone" \
	test "$(workers_of CAROLPARALLEL)" -ge 2
mark=$(($(wc -l <"$T/gw.log") + 1))
expect "eas:Provision:129 seen=0" "its Provision with DeviceInformation 'iOS 6.1 10B142': 129" \
	plain Provision CAROLPARALLEL iPhone 'iPhoneMail/1.0' 14.1 provision-ios61
bad=0 n=0
while [ $n -lt 8 ] || { [ "$(workers_of CAROLPARALLEL "$mark")" -lt 2 ] && [ $n -lt 40 ]; }; do
	w=$(ask plain Sync CAROLPARALLEL iPhone 'iPhoneMail/1.0' 14.1 sync)
	[ "$w" = "eas:Sync:129 seen=0" ] || bad=$((bad + 1))
	n=$((n + 1))
done
check "$n new connections right after it, on both workers: all blocked ($bad let through)" \
	bash -c '[ $0 -eq 0 ] && [ $1 -ge 2 ]' "$bad" "$(workers_of CAROLPARALLEL "$mark")"

echo "# 2. block UserAgent matches \"^Apple.*1002.*\" cmd MeetingResponse, added at run time"
USR=erin
# iOS 6.1.2 (10B146): not caught by the exact 10B142 rule.
mkreq "$T/s2-mr" MeetingResponse ERINIPAD61 iPad "$UA612" 14.1 meetingresponse
mkreq "$T/s2-sync" Sync ERINIPAD61 iPad "$UA612" 14.1 sync
mkreq "$T/s2-mr64" MeetingResponse ERINIPAD61 iPad "$UA612" 14.1 meetingresponse b64
mkreq "$T/s2-sync64" Sync ERINIPAD61 iPad "$UA612" 14.1 sync b64
mkreq "$T/s2-mr121" MeetingResponse ERINIPAD61 iPad "$UA612" 12.1 meetingresponse
session "$T/s2" "$T/s2-mr" "$T/s2-sync" \
	"exec:$EASCTL -s $CTL rules add 'block UserAgent matches \"^Apple.*1002.*\" cmd MeetingResponse name \"ios61-loop\"' >$T/s2-add.out" \
	"$T/s2-mr" "$T/s2-sync" "$T/s2-mr64" "$T/s2-sync64" "$T/s2-mr121" "$T/s2-sync"
w=$(words "$T/s2")
check "one connection: before the rule MeetingResponse and Sync relayed; after it MeetingResponse 129 (plain, base64; 403 at 12.1), Sync relayed ($w)" \
	test "$w" = "relayed:cas1 relayed:cas1 eas:MeetingResponse:129 relayed:cas1 eas:MeetingResponse:129 relayed:cas1 http:403 relayed:cas1 seen=5"
check "...all 8 answers on the same connection" test "$(cat "$T/s2.ports")" = 1
check "rules add names the new rule" grep -q '^added db[0-9]*: block UserAgent matches "^Apple.\*1002.\*" cmd MeetingResponse name "ios61-loop"' "$T/s2-add.out"
expect "relayed:cas1 seen=1" "a new connection (curl): SmartReply from the same phone relayed" \
	plain SmartReply ERINIPAD61 iPad "$UA612" 14.1
expect "eas:MeetingResponse:129 seen=0" "...MeetingResponse refused" \
	plain MeetingResponse ERINIPAD61 iPad "$UA612" 14.1 meetingresponse
check "the decision is logged with the rule" \
	grep -q 'event=decision user="erin" device="ERINIPAD61" .*access=block reason=RULE rule="ios61-loop"' "$T/gw.log"
out=$(ctl devices --device-id ERINIPAD61 --format csv | tail -n +2 | cut -d, -f5,14)
check "the phone is not Blocked in the inventory: only MeetingResponse is ($out)" \
	test "$out" = "iOS 6.1.2 10B146,Allowed"

echo "# 3. minimum version: quarantine DeviceOS < \"iOS 7.0.2\" (added at run time)"
USR=dave
out=$(ctl rules add 'quarantine DeviceOS < "iOS 7.0.2" name "min-ios"')
minid=$(sed -n 's/^added \(db[0-9]*\):.*/\1/p' <<<"$out")
check "rule added ($minid)" test -n "$minid"
expect "relayed:cas1 seen=1" "iOS 7.0.2 ($UA702): Sync relayed" plain Sync DAVEIPHONE702 iPhone "$UA702" 14.1 sync
expect "relayed:cas1 seen=1" "iOS 7.1 ($UA71): Sync relayed" plain Sync DAVEIPHONE71 iPhone "$UA71" 14.1 sync
expect "empty seen=0" "iOS 7.0.1 ($UA701): Sync quarantined (empty 200)" plain Sync DAVEIPHONE701 iPhone "$UA701" 14.1 sync
expect "relayed:cas1 seen=1" "iOS 7.0.2, base64: relayed" b64 Sync DAVEB64702 iPhone "$UA702" 14.1 sync
expect "empty seen=0" "iOS 7.0.1, base64: quarantined" b64 Sync DAVEB64701 iPhone "$UA701" 14.1 sync
# OS from Settings/DeviceInformation (the phone's UA says nothing): Settings
# itself is let through in quarantine, the next Sync is not.
expect "relayed:cas1 seen=1" "Settings with DeviceInformation OS 'iOS 7.0.1 11A470a': relayed (quarantine allows Settings)" \
	plain Settings DAVESETTINGS iPhone 'iPhoneMail/1.0' 12.1 settings-ios701
expect "empty seen=0" "...its next Sync: quarantined" plain Sync DAVESETTINGS iPhone 'iPhoneMail/1.0' 12.1 sync

echo "# 4. quarantine answers (user/decide/gate.c) and easctl device approve"
mkreq "$T/q-sync" Sync DAVEIPHONE701 iPhone "$UA701" 14.1 sync
mkreq "$T/q-gie" GetItemEstimate DAVEIPHONE701 iPhone "$UA701" 14.1 getitemestimate
mkreq "$T/q-fs" FolderSync DAVEIPHONE701 iPhone "$UA701" 14.1 foldersync
mkreq "$T/q-prov" Provision DAVEIPHONE701 iPhone "$UA701" 14.1 provision-nodevinfo
mkreq "$T/q-mr" MeetingResponse DAVEIPHONE701 iPhone "$UA701" 14.1 meetingresponse
mkreq "$T/q-search" Search DAVEIPHONE701 iPhone "$UA701" 14.1 search
mkreq "$T/q-search121" Search DAVEIPHONE701 iPhone "$UA701" 12.1 search
mkreq "$T/q-mr64" MeetingResponse DAVEIPHONE701 iPhone "$UA701" 14.1 meetingresponse b64
session "$T/s4" "$T/q-sync" "$T/q-gie" "$T/q-fs" "$T/q-prov" "$T/q-mr" "$T/q-search" \
	"$T/q-search121" "$T/q-mr64" \
	"exec:$EASCTL -s $CTL device approve DAVEIPHONE701 >$T/s4-approve.out" \
	"$T/q-sync" "$T/q-mr"
w=$(words "$T/s4")
check "quarantined: Sync/GetItemEstimate empty, FolderSync/Provision relayed, others 130 (403 at 12.1); approved: relayed, same connection ($w)" \
	test "$w" = "empty empty relayed:cas1 relayed:cas1 eas:MeetingResponse:130 eas:Search:130 http:403 eas:MeetingResponse:130 relayed:cas1 relayed:cas1 seen=4"
check "...all on one connection" test "$(cat "$T/s4.ports")" = 1
check "device approve says it is effective on the next request" grep -q 'is now allow; effective on its next request' "$T/s4-approve.out"
st=$(eas -u dave:secret -A "$UA701" -H "MS-ASProtocolVersion: 14.1" --data-binary "@$T/ping.wbxml" \
	-o /dev/null -w '%{http_code}' --max-time 2 \
	"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=Ping&User=dave&DeviceId=DAVEB64701&DeviceType=iPhone")" 2>/dev/null)
check "quarantined Ping is held like a heartbeat (no answer within 2 s: '$st')" test "$st" = 000
ctl rules remove "$minid" >/dev/null
expect "relayed:cas1 seen=1" "rules remove $minid: iOS 7.0.1 (another phone) relayed at once" \
	plain Sync DAVEB64701 iPhone "$UA701" 14.1 sync

USR=henry
expect "relayed:cas1 seen=1" "a new phone's first Sync: relayed" \
	plain Sync HENRYPHONE Android 'Android/12-EAS-2.0' 14.1 sync
ctl device block HENRYPHONE >/dev/null
check "easctl device block right after that first request: exit 0" test $? -eq 0
expect "eas:Sync:129 seen=0" "...blocked on its next request" \
	plain Sync HENRYPHONE Android 'Android/12-EAS-2.0' 14.1 sync
ctl device clear HENRYPHONE >/dev/null
expect "relayed:cas1 seen=1" "device clear: the rules decide again (relayed)" \
	plain Sync HENRYPHONE Android 'Android/12-EAS-2.0' 14.1 sync

echo "# 5. judged by DeviceType until DeviceInformation names the model (block DeviceModel is \"WP8\")"
USR=frank
expect "eas:Sync:129 seen=0" "WP8 phone without DeviceInformation: DeviceModel falls back to DeviceType 'WP8': 129" \
	plain Sync FRANKWP8 WP8 'MSFT-WP/8.0.10211' 14.1 sync
expect "eas:Sync:129 seen=0" "...base64 form: 129" b64 Sync FRANKWP8 WP8 'MSFT-WP/8.0.10211' 14.1 sync
out=$(ctl devices --unauthenticated --device-id FRANKWP8 --format csv | tail -n +2 | cut -d, -f3,4,14,16)
check "devices --unauthenticated: model WP8 (the DeviceType stands in), Blocked by no-wp8 ($out)" \
	test "$out" = "WP8,WP8,Blocked,no-wp8"
check "...not in the inventory: never authenticated" \
	test "$(ctl devices --device-id FRANKWP8 --format csv | tail -n +2)" = ""
expect "relayed:cas1 seen=1" "another WP8 phone sends Settings/DeviceInformation Model 'Lumia 920': relayed" \
	plain Settings FRANKLUMIA WP8 'MSFT-WP/8.0.10211' 14.0 settings-lumia
expect "relayed:cas1 seen=1" "...and its Sync is judged by the model now: relayed" \
	plain Sync FRANKLUMIA WP8 'MSFT-WP/8.0.10211' 14.0 sync

echo "# 6. easctl rules test, devices export, exit codes"
out=$(ctl rules test --ua "$UA61" --cmd MeetingResponse)
check "rules test: MeetingResponse from $UA61 is decided by the scoped rule ios61-loop" \
	bash -c 'grep -q "^access: *block$" <<<"$0" && grep -q "^rule: *ios61-loop" <<<"$0" && grep -q "explanation:.*1002" <<<"$0"' "$out"
n=$(sed -n 's/^rule: *ios61-loop #\([0-9]*\)$/\1/p' <<<"$out")
check "...as rule #$n, which is ios61-loop in rules list too" \
	bash -c 'grep -q "^$1 *block UserAgent matches .* name \"ios61-loop\"" <<<"$0"' "$(ctl rules list)" "$n"
out=$(ctl rules test --ua "$UA61" --cmd Sync)
check "rules test: Sync from the same UA is blocked by the exact DeviceOS rule (OS from the UA)" \
	bash -c 'grep -q "^access: *block$" <<<"$0" && grep -q "^rule: *.*gw.conf:4" <<<"$0" && grep -q "^os: *iOS 6.1 10B142$" <<<"$0"' "$out"
out=$(ctl rules test --ua "$UA612" --cmd Sync)
check "rules test: iOS 6.1.2 Sync: no rule, default allow" \
	bash -c 'grep -q "^access: *allow$" <<<"$0" && grep -q "^reason: *DEFAULT$" <<<"$0"' "$out"
out=$(ctl rules test --type WP8)
check "rules test: DeviceType WP8 without a model: no-wp8 via the model fallback" \
	bash -c 'grep -q "^access: *block$" <<<"$0" && grep -q "^rule: *no-wp8" <<<"$0" && grep -q "^model: *WP8$" <<<"$0"' "$out"
ctl devices --os 'iOS 6.1*' --format csv >"$T/ios61.csv"
check "devices --os 'iOS 6.1*' --format csv: exit 0" test $? -eq 0
python3 - "$T/ios61.csv" >"$T/ios61.check" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
print(" ".join(sorted(r["device_id"] for r in rows)))
print(bool(rows) and all(r["device_os"].startswith("iOS 6.1") for r in rows))
PY
rc=$?
check "...the CSV parses (exit $rc)" test "$rc" -eq 0
check "devices --os 'iOS 6.1*' --format csv: exactly the 6.1 phones a backend accepted ($(head -1 "$T/ios61.check"))" \
	test "$(head -1 "$T/ios61.check")" = "CAROLIPHONE61 CAROLPARALLEL ERINIPAD61"
check "...each with its DeviceOS" test "$(sed -n 2p "$T/ios61.check")" = True
check "...CSV has the Get-MobileDevice columns" \
	grep -q '^user,device_id,device_type,device_model,device_os,user_agent,friendly_name,imei,mobile_operator,protocol,first_sync,last_sync_attempt,last_success,access_state,state_reason,rule,admin_state' "$T/ios61.csv"
ctl devices --os 'iOS 6.1*' --format json >"$T/ios61.json"
out=$(python3 -c '
import json, sys
d = {r["device_id"]: r for r in json.load(open(sys.argv[1]))}
c = d["CAROLIPHONE61"]
print(len(d), c["user"], c["device_model"], c["device_os"], c["access_state"], c["friendly_name"])' "$T/ios61.json")
check "devices --format json parses, with model, OS, state ($out)" \
	test "$out" = "3 carol iPhone4C1 iOS 6.1 10B142 Blocked Carol's iPhone"
out=$(ctl devices --unauthenticated --os 'iOS 6.1*' --format csv | tail -n +2 | cut -d, -f2,5,14 | sort | tr '\n' ' ')
check "devices --unauthenticated --os 'iOS 6.1*': the 6.1 phones blocked from their first request ($out)" \
	test "$out" = "CAROLB64PHONE,iOS 6.1 10B142,Blocked CAROLSECOND,iOS 6.1 10B142,Blocked "
out=$(ctl devices --state Quarantined --format csv | tail -n +2 | cut -d, -f2 | tr '\n' ' ')
check "devices --state Quarantined: the iOS 7.0.1 phone not seen since its quarantine ($out)" \
	test "$out" = "DAVESETTINGS "
out=$(ctl devices --state blocked --format csv | tail -n +2 | cut -d, -f2 | sort | tr '\n' ' ')
check "devices --state blocked: the blocked phones ($out)" \
	test "$out" = "CAROLIPHONE61 CAROLPARALLEL "
out=$(ctl devices --unauthenticated --state blocked --format csv | tail -n +2 | cut -d, -f2 | sort | tr '\n' ' ')
check "devices --unauthenticated --state blocked: those never let through ($out)" \
	test "$out" = "CAROLB64PHONE CAROLSECOND FRANKWP8 "
for c in devices device rules versions; do
	check "easctl $c --help explains itself" grep -q "^easctl $c" <<<"$("$EASCTL" "$c" --help 2>&1)"
done
ctl device show NOSUCHDEVICE >/dev/null 2>&1
check "device show of an unknown device: exit 2" test $? -eq 2
ctl device approve NOSUCHDEVICE >/dev/null 2>&1
check "device approve of an unknown device: exit 2" test $? -eq 2
ctl devices --format xml >/dev/null 2>&1
check "devices --format xml: exit 1 (usage)" test $? -eq 1
ctl rules add 'block Colour is "red"' >/dev/null 2>"$T/err"
check "rules add of a bad rule: exit 1 and says why" bash -c '[ $0 -eq 1 ] && grep -qi "characteristic" "$1"' $? "$T/err"
ctl rules remove db9999 >/dev/null 2>&1
check "rules remove of an unknown rule: exit 2" test $? -eq 2
"$EASCTL" -s "$T/nothing.sock" status >/dev/null 2>&1
check "daemon unreachable: exit 5" test $? -eq 5
ctl rules list | grep -q 'ios61-loop'
check "rules list shows the runtime rule" test $? -eq 0

echo "# 7. incubation: a new iOS version is quarantined until approved (days 21, iOS)"
kill "$GW_PID"
wait "$GW_PID" 2>/dev/null
cat >"$T/gw-inc.conf" <<'EOF'
policy = {
  rules = ( "block DeviceOS is \"iOS 6.1 10B142\"" );
  incubation = { enabled = true; days = 21; families = [ "iOS" ]; };
};
EOF
unset GW_PORT
GW_WORKERS=2 start_gateway -c "$T/gw-inc.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || { fail "backend cas1 not up"; finish; }
USR=grace
UA80='Apple-iPhone7C2/1201.365'
KEY80='iOS 8.0 12A365'
mkreq "$T/i-sync" Sync GRACEIPHONE8 iPhone "$UA80" 14.1 sync
mkreq "$T/i-fs" FolderSync GRACEIPHONE8 iPhone "$UA80" 14.1 foldersync
session "$T/s7" "$T/i-sync" "$T/i-fs" \
	"exec:$EASCTL -s $CTL versions incubating >$T/s7-inc.out" \
	"exec:$EASCTL -s $CTL versions approve '$KEY80' >$T/s7-approve.out" \
	"$T/i-sync"
w=$(words "$T/s7")
check "$KEY80 ($UA80) first seen now: Sync quarantined, FolderSync relayed; approved: the next Sync reaches the backend on the same connection ($w)" \
	test "$w" = "empty relayed:cas1 relayed:cas1 seen=2"
check "...one connection" test "$(cat "$T/s7.ports")" = 1
check "the quarantined Sync has no X-Backend, the approved one X-Backend: cas1" \
	python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(not ("x-backend" not in r[0]["headers"] and r[2]["headers"].get("x-backend") == "cas1"))' "$T/s7"
check "versions incubating listed $KEY80 while it was held" \
	bash -c 'grep -q "^$1 *iOS .*incubating" "$0"' "$T/s7-inc.out" "$KEY80"
out=$(ctl versions)
check "versions: $KEY80 approved now" bash -c 'grep -q "^$1 *iOS .*approved" <<<"$0"' "$out" "$KEY80"
inc=$(ctl versions incubating)
rc=$?
check "...and no longer incubating (easctl exit $rc)" bash -c '[ $2 -eq 0 ] && ! grep -q "^$1" <<<"$0"' "$inc" "$KEY80" "$rc"
expect "relayed:cas1 seen=1" "another phone on the approved version: relayed from its first request" \
	plain Sync GRACEIPAD8 iPad 'Apple-iPad4C1/1201.365' 14.1 sync
expect "empty seen=0" "iOS 8.1 (UA build 1202.411 = 12B411), also new: quarantined" \
	plain Sync GRACEIPHONE81 iPhone 'Apple-iPhone7C2/1202.411' 14.1 sync
expect "relayed:cas1 seen=1" "Android is not an incubated family: relayed" \
	plain Sync GRACEANDROID Android 'Android/12-EAS-2.0' 14.1 sync
expect "eas:Sync:129 seen=0" "a block rule still wins over incubation (iOS 6.1 10B142)" \
	plain Sync GRACEIPHONE61 iPhone "$UA61" 14.1 sync
out=$(ctl device show GRACEIPHONE81)
check "device show: the incubating phone is Quarantined by INCUBATION" \
	bash -c 'grep -q "^AccessState: *Quarantined$" <<<"$0" && grep -q "^StateReason: *INCUBATION$" <<<"$0"' "$out"
# The incubation clock starts with the first request the backend accepted
# (2xx): a forged User-Agent that never authenticates cannot start it early.
KEY81='iOS 8.1 12B411'
vline() { ctl versions | awk -v k="$1" 'index($0, k) == 1'; }
# wait_status DEV CODE: until the master has written the device's last answer
# (the inventory is written by the master, after the answer has gone out).
wait_status() {
	local i
	for i in $(seq 50); do
		ctl device show "$1" | grep -q "^LastStatus: *$2$" && return 0
		sleep 0.1
	done
	return 1
}
check "$KEY81, seen only in a quarantined Sync: not listed, no clock (only a backend's 2xx makes a version)" \
	test -z "$(vline "$KEY81")"
ask plain 'FolderSync&egtest_status=401' GRACEIPHONE81 iPhone 'Apple-iPhone7C2/1202.411' 14.1 foldersync >/dev/null
check "...a FolderSync the backend answered 401 (recorded: LastStatus 401)" wait_status GRACEIPHONE81 401
check "...does not start it" test -z "$(vline "$KEY81")"
ask plain FolderSync GRACEIPHONE81 iPhone 'Apple-iPhone7C2/1202.411' 14.1 foldersync >/dev/null
check "...one answered 200 (recorded: LastStatus 200)" wait_status GRACEIPHONE81 200
check "...does: first seen is today ($(vline "$KEY81" | awk '{print $5}'))" \
	bash -c 'read -r _ _ _ fam first rest <<<"$0"; [[ "$first" == "$1"* ]]' "$(vline "$KEY81")" "$(date -u +%Y-%m-%d)"
ctl versions revoke "$KEY80" >/dev/null
expect "empty seen=0" "versions revoke: quarantined again at once" \
	plain Sync GRACEIPAD8 iPad 'Apple-iPad4C1/1201.365' 14.1 sync
finish
