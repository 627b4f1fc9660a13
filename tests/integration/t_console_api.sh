#!/usr/bin/env bash
# The console's HTTP surface with curl (issue #14), everything but the browser:
#  1. the accounts file: the daemon refuses to start with a group-readable
#     one (and --check-config says why); easctl admin passwd refuses to write
#     into a world-readable one; made readable at run time, logins are
#     refused (503) until it is private again;
#  2. 20 wrong passwords from one source lock that source out (429 with
#     Retry-After even for the right password; logged), another source still
#     logs in; 20 wrong for one account lock the account from everywhere;
#     both end after admin.web_lockout;
#  3. sessions: cookie flags, CSRF, a foreign Origin, roles;
#     the protective headers on every answer; devices seen without
#     authenticating listed, shown and refused through the same commands
#     and roles;
#  4. exports: CSV with formula-injection protection, JSON with markup
#     escaped; a 50,000-device export runs in steps while easctl keeps
#     answering (the master's loop never waits for it);
#  5. strict HTTP (the h1 parser): smuggling attempts refused; silent
#     clients cost a slot and a deadline, never the loop;
#  6. a reload by SIGHUP is audited as the daemon's; it shortens admin.web_idle
#     to 3 s, and a session idle for longer is over.
# Until 6, admin.web_idle is longer than the test and admin.web_lockout longer
# than 20 logins take on a loaded machine: only the checks of the timeouts
# themselves depend on them, and those wait for them.
source "$(dirname "$0")/lib.sh"
need curl xml2wbxml sqlite3 python3
make_pki
start_backend cas1 || finish
ACC=$T/console.passwd
for a in "helen helpdesk" "victor viewer"; do
	set -- $a
	echo "pw-$1-0123" | "$EASCTL" admin passwd "$1" "$2" --file "$ACC" >/dev/null ||
		{ fail "easctl admin passwd $1"; finish; }
done
check "easctl admin passwd writes the accounts file 0600" test "$(stat -c %a "$ACC")" = 600
check "...with yescrypt hashes" grep -q '^helen:helpdesk:\$y\$' "$ACC"
WEB=$(free_port)
LOCKOUT=30
cat >"$T/gw.conf" <<CONF
policy = { default = "quarantine"; };
admin = { web = "127.0.0.1:$WEB"; web_accounts = "$ACC"; web_assets = "$EG_ROOT/web";
          web_idle = 600; web_lockout = $LOCKOUT; };
CONF
ctl() { "$EASCTL" -s "$CTL" "$@"; }

# --- 1. the accounts file -------------------------------------------------------------
chmod 640 "$ACC"
out=$("$EASGATED" --check-config -c "$T/gw.conf" --tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" \
	--trust-file "$PKI/root.pem" 2>&1)
check "--check-config refuses a group-readable accounts file" \
	grep -q "readable or writable by group or others (mode 0640)" <<<"$out"
timeout 20 "$EASGATED" --listen "127.0.0.1:$(free_port)" --tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" \
	--trust-file "$PKI/root.pem" --state-dir "$T/state0" --control-socket "$T/ctl0.sock" -w 1 \
	-c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1" >"$T/refused.log" 2>&1
rc=$?
check "the daemon refuses to start with it (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check "...and says why" grep -q 'event=console_failed error=.*mode 0640' "$T/refused.log"
cp "$ACC" "$T/world.passwd" && chmod 644 "$T/world.passwd"
echo "pw-other-0123" | "$EASCTL" admin passwd other viewer --file "$T/world.passwd" >"$T/pw.out" 2>&1
rc=$?
check "easctl admin passwd refuses a world-readable file (exit $rc)" test "$rc" -eq 3
check "...saying so" grep -q "mode 0644): refused" "$T/pw.out"
check "...and leaves it untouched" lacks -q '^other:' "$T/world.passwd"
chmod 600 "$ACC"
start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish

U=https://127.0.0.1:$WEB
C=(curl -sS --cacert "$PKI/root.pem" --max-time 10)
# login USER PASSWORD [SOURCE] -> status; the cookie jar $T/jar-USER
login() {
	"${C[@]}" --interface "${3:-127.0.0.1}" -c "$T/jar-$1" -o "$T/login.out" -D "$T/login.h" -w '%{http_code}' \
		--data-urlencode "user=$1" --data-urlencode "password=$2" "$U/api/login"
}
st=$(login helen pw-helen-0123)
check "helen logs in (HTTP $st)" test "$st" = 200
check "the session cookie is HttpOnly; Secure; SameSite=Strict" \
	grep -qi '^Set-Cookie: eg_session=[0-9a-f]\{64\}; Path=/; HttpOnly; Secure; SameSite=Strict' "$T/login.h"
chmod 644 "$ACC"
touch "$ACC"
st=$(login helen pw-helen-0123)
check "a world-readable accounts file at run time: logins refused (HTTP $st)" test "$st" = 503
check "...and logged" grep -q 'event=console_accounts_refused .*mode 0644' "$T/gw.log"
chmod 600 "$ACC"
touch "$ACC"
st=$(login helen pw-helen-0123)
check "private again: helen logs in (HTTP $st)" test "$st" = 200
TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["csrf"])' "$T/login.out")

# --- 2. login limits --------------------------------------------------------------------
# The seconds the last login's answer told to wait (Retry-After = the lockout's
# rest, rounded up: at most admin.web_lockout + 1).
retry_after() { awk 'tolower($1) == "retry-after:" {print $2 + 0}' "$T/login.h"; }
# wrong20 USER SOURCE: 20 wrong passwords, 4 in flight at a time (as a brute
# force would; one after the other they took 19 s at load 17); their statuses
wrong20() {
	seq 20 | xargs -P 4 -I{} "${C[@]}" --interface "$2" -o /dev/null -w ' %{http_code}' \
		--data-urlencode "user=$1" --data-urlencode "password=wrong-{}" "$U/api/login"
}
s=$(date +%s%N)
codes=$(wrong20 mallory 127.0.0.1)
ms=$((($(date +%s%N) - s) / 1000000))
check "20 wrong passwords from 127.0.0.1 get 401 each (in $ms ms; the window is $LOCKOUT s)" \
	test "$codes" = "$(printf ' 401%.0s' $(seq 20))"
st=$(login helen pw-helen-0123)
check "then that source is locked out, even with the right password (HTTP $st)" test "$st" = 429
ra=$(retry_after)
check "...with Retry-After ($ra s, admin.web_lockout is $LOCKOUT s)" \
	test "${ra:-0}" -ge 1 -a "${ra:-0}" -le $((LOCKOUT + 1))
check "the lockout is logged" grep -q 'event=console_lockout source=127.0.0.1 user="mallory" locked=source failures=20' "$T/gw.log"
st=$(login helen pw-helen-0123 127.0.0.2)
check "another source still logs in (HTTP $st)" test "$st" = 200
codes=$(wrong20 victor 127.0.0.3)
check "20 wrong passwords for victor from 127.0.0.3 get 401 each" test "$codes" = "$(printf ' 401%.0s' $(seq 20))"
st=$(login victor pw-victor-0123 127.0.0.4)
check "20 wrong passwords for one account lock it from every source (HTTP $st)" test "$st" = 429
check "...logged" grep -q 'event=console_lockout source=127.0.0.3 user="victor" locked=source,account' "$T/gw.log"
ra=$(retry_after)
check "...for at most admin.web_lockout (Retry-After $ra s)" test "${ra:-0}" -ge 1 -a "${ra:-0}" -le $((LOCKOUT + 1))
sleep "${ra:-0}.2"
st=$(login victor pw-victor-0123 127.0.0.4)
check "when that lockout is over the account logs in again (HTTP $st)" test "$st" = 200
st=$(login helen pw-helen-0123)
check "...and so does the locked source (HTTP $st)" test "$st" = 200
TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["csrf"])' "$T/login.out")

# --- 3. sessions, CSRF, roles, headers --------------------------------------------------------
api() { "${C[@]}" -b "$T/jar-helen" -o "$T/api.out" -D "$T/api.h" -w '%{http_code}' "$@"; }
st=$(api "$U/api/run?a=status")
check "GET /api/run?a=status as helen (HTTP $st)" test "$st" = 200
for h in "Content-Security-Policy: default-src 'none'; script-src 'self';" "X-Content-Type-Options: nosniff" \
	"X-Frame-Options: DENY" "Strict-Transport-Security: max-age=" "Cache-Control: no-store"; do
	check "header: $h" grep -qiF "$h" "$T/api.h"
done
st=$(api "$U/api/run?a=device&a=approve&a=X")
check "a change by GET is refused (HTTP $st)" test "$st" = 405
st=$(api -X POST -d "a=status" "$U/api/run")
check "POST without X-CSRF-Token: 403 (HTTP $st)" test "$st" = 403
# the token with its last digit changed (a token ending in 0 ends in 1)
WRONG=${TOKEN%?}$([ "${TOKEN: -1}" = 0 ] && echo 1 || echo 0)
check "the wrong token differs from the session's" test "$WRONG" != "$TOKEN"
st=$(api -X POST -H "X-CSRF-Token: $WRONG" -d "a=status" "$U/api/run")
check "POST with a wrong token: 403 (HTTP $st)" test "$st" = 403
st=$(api -X POST -H "X-CSRF-Token: $TOKEN" -H "Origin: https://evil.example" -d "a=status" "$U/api/run")
check "POST from a foreign Origin: 403 (HTTP $st)" test "$st" = 403
st=$(api -X POST -H "X-CSRF-Token: $TOKEN" -d "a=rules&a=add&a=block DeviceOS is \"x\"" "$U/api/run")
check "helpdesk may not add rules: 403 (HTTP $st)" test "$st" = 403
check "...told which role it needs" grep -q 'needs the admin role' "$T/api.out"
st=$(api -X POST -H "X-CSRF-Token: $TOKEN" -d "a=reload" "$U/api/run")
check "commands outside the console's list are refused (HTTP $st)" test "$st" = 400
st=$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/api/run?a=status")
check "no session: 401 (HTTP $st)" test "$st" = 401
st=$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/assets/..%2fconsole.passwd")
check "assets: a dot-segment is refused by the HTTP parser (HTTP $st)" test "$st" = 400
# the parser's refusal (400) or the console's own file-name check (404)
for pc in "%2e%2e%5cconsole.passwd 400" "sub%2fconsole.passwd 404" ".console.passwd 404"; do
	set -- $pc
	st=$("${C[@]}" -o /dev/null -w '%{http_code}' "$U/assets/$1")
	check "assets: no path tricks: /assets/$1 (HTTP $st)" test "$st" = "$2"
done

# --- 3b. devices seen without authenticating, through the same commands and roles ----------------
# sam's phone only Syncs: quarantine answers that itself, no backend ever
# accepts its credentials, so it is a sighting, not an inventory device.
eas -u "sam:secret" -A "Android/9-EAS-1.3" -H "MS-ASProtocolVersion: 14.1" -o /dev/null \
	-H "Content-Type: application/vnd.ms-sync.wbxml" --data-binary "" \
	"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=Sync&User=sam&DeviceId=SEENONLY1&DeviceType=Android")"
login victor pw-victor-0123 >/dev/null
VTOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["csrf"])' "$T/login.out")
vapi() { "${C[@]}" -b "$T/jar-victor" -o "$T/api.out" -w '%{http_code}' "$@"; }
st=$(vapi "$U/api/run?a=devices&a=--unauthenticated&a=--format&a=json")
check "a viewer lists the devices seen without authenticating (HTTP $st)" \
	python3 -c 'import json,sys; d=json.loads(json.load(open(sys.argv[1]))["output"]);
sys.exit(0 if [x["device_id"] for x in d if x["user"] == "sam"] == ["SEENONLY1"] else 1)' "$T/api.out"
st=$(vapi "$U/api/run?a=devices&a=--user&a=sam&a=--format&a=json")
check "...which the inventory listing does not hold (HTTP $st)" \
	python3 -c 'import json,sys; sys.exit(0 if json.loads(json.load(open(sys.argv[1]))["output"]) == [] else 1)' "$T/api.out"
st=$(vapi "$U/api/run?a=device&a=show&a=SEENONLY1&a=--format&a=json")
check "its device page data says authenticated: false (HTTP $st)" \
	python3 -c 'import json,sys; d=json.loads(json.load(open(sys.argv[1]))["output"]);
sys.exit(0 if d["authenticated"] is False and d["device_id"] == "SEENONLY1" else 1)' "$T/api.out"
st=$(vapi -X POST -H "X-CSRF-Token: $VTOKEN" -d "a=device&a=approve&a=SEENONLY1" "$U/api/run")
check "a viewer's approve of it is refused by role first (HTTP $st)" test "$st" = 403
st=$(api -X POST -H "X-CSRF-Token: $TOKEN" -d "a=device&a=approve&a=SEENONLY1" "$U/api/run")
check "the helpdesk's approve of it: 404, nothing to approve yet (HTTP $st)" test "$st" = 404
check "...saying why and how to let it in" grep -q 'never authenticated.*allow DeviceId is' "$T/api.out"
st=$(api "$U/export/devices.csv?unauthenticated=1&user=sam")
check "the CSV export of the unauthenticated view holds it (HTTP $st)" grep -q '^sam,SEENONLY1,Android,' "$T/api.out"
check "no audit line for the refused approvals" lacks -q 'SEENONLY1' <(ctl audit)

# --- 4. exports ---------------------------------------------------------------------------------
wbxml_from_xml "$EG_ROOT/tests/integration/console/settings-formula.xml" "$T/f.wbxml" || fail "xml2wbxml"
eas -u "fred:secret" -A "Android/9-EAS-1.3" -H "MS-ASProtocolVersion: 14.1" \
	-H "Content-Type: application/vnd.ms-sync.wbxml" --data-binary "@$T/f.wbxml" -o /dev/null \
	"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=Settings&User=fred&DeviceId=FORMULA1&DeviceType=Android")"
st=$(api "$U/export/devices.csv?user=fred")
check "CSV export (HTTP $st) is an attachment" grep -qi '^Content-Disposition: attachment; filename="devices.csv"' "$T/api.h"
check "a formula DeviceModel is exported as text: \"'=HYPERLINK(...)\"" \
	grep -qF "\"'=HYPERLINK(\"\"http://198.18.0.1/x\"\",\"\"open\"\")\"" "$T/api.out"
st=$(api "$U/api/run?a=devices&a=--user&a=fred&a=--format&a=json")
check "JSON answers escape the quotes a phone sent" grep -qF '=HYPERLINK(\\\"http' "$T/api.out"
# 50,000 devices straight into the inventory (sqlite3, as an admin could), then export them all
python3 - "$T/state/inventory.db" <<'PYEOF' || fail "populating the inventory"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
db.executemany("INSERT INTO devices (user, device_id, device_type, device_model, device_os,"
               " access_state, state_reason) VALUES (?, ?, 'iPhone', 'iPhone6C1', 'iOS 7.0.4 11B554a',"
               " 'Allowed', 'DEFAULT')", (("user%05d" % i, "BULK%05d" % i) for i in range(50000)))
db.commit()
PYEOF
( while :; do
	s=$(date +%s%N)
	ctl status >/dev/null || echo "fail"
	echo $((($(date +%s%N) - s) / 1000000))
done ) >"$T/lat" 2>&1 &
LAT=$!
for _ in $(seq 100); do [ -s "$T/lat" ] && break; sleep 0.05; done
s=$(date +%s%N)
st=$(api "$U/export/devices.csv")
ms=$((($(date +%s%N) - s) / 1000000))
n0=$(wc -l <"$T/lat")
for _ in $(seq 100); do [ "$(wc -l <"$T/lat")" -gt "$n0" ] && break; sleep 0.02; done
kill "$LAT"; wait "$LAT" 2>/dev/null
lines=$(grep -c '^user[0-9]*,BULK' "$T/api.out")
check "the 50,000-device CSV export is complete ($lines rows, $ms ms)" test "$lines" -eq 50000
max=$(grep -v fail "$T/lat" | sort -n | tail -1)
n=$(grep -vc fail "$T/lat")
check "easctl status kept answering meanwhile ($n calls, slowest $max ms)" test "$n" -ge 1 -a "${max:-99999}" -lt 1000
lacks -q fail "$T/lat" && pass "no easctl call failed during the export" || fail "an easctl call failed during the export"
echo "  (export of 50,000 devices: $ms ms; slowest easctl status meanwhile: $max ms over $n calls)"

# --- 5. strict HTTP, silent clients --------------------------------------------------------------
raw() { # raw REQUEST-FILE: the status line of the answer, over TLS
	timeout 10 openssl s_client -quiet -connect "127.0.0.1:$WEB" -CAfile "$PKI/root.pem" <"$1" 2>/dev/null | head -1 | tr -d '\r'
}
printf 'POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' >"$T/smuggle"
check "Content-Length with Transfer-Encoding: 400" test "$(raw "$T/smuggle")" = "HTTP/1.1 400 Bad Request"
printf 'POST /api/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' >"$T/chunked"
check "a chunked body: 411" test "$(raw "$T/chunked")" = "HTTP/1.1 411 Length Required"
python3 -c '
import socket, sys, time
s = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(30)]
time.sleep(4)' "$WEB" &
SIL=$!
sleep 0.5
s=$(date +%s%N)
ctl status >/dev/null
ms=$((($(date +%s%N) - s) / 1000000))
check "30 silent console clients: easctl answers in $ms ms" test "$ms" -lt 1000
st=$(login helen pw-helen-0123)
check "...and a login still works meanwhile (HTTP $st)" test "$st" = 200
wait "$SIL" 2>/dev/null

# --- 6. a reload by SIGHUP (systemctl reload) is audited too, as the daemon ----------------------
kill -HUP "$GW_PID"
for _ in $(seq 50); do ctl audit | grep -q 'reload (SIGHUP)' && break; sleep 0.1; done
check "a SIGHUP reload is in the audit, by the daemon" \
	grep -q '^ *[0-9]* .* daemon  *reload (SIGHUP) | before: generation 1 | after: generation 2' <(ctl audit)
st=$(api "$U/api/run?a=status")
check "...and helen's session outlives it (HTTP $st)" test "$st" = 200
# a reload to admin.web_idle = 3: helen's last request was before it, and
# 3.5 s later she has been idle for longer
sed -i 's/web_idle = 600;/web_idle = 3;/' "$T/gw.conf"
check "admin.web_idle = 3 reloaded" bash -c 'grep -q "web_idle = 3;" "$1" && "$0" -s "$2" reload >/dev/null' \
	"$EASCTL" "$T/gw.conf" "$CTL"
sleep 3.5
st=$(api "$U/api/run?a=status")
check "after admin.web_idle (3 s) without a request the session is over (HTTP $st)" test "$st" = 401
finish
