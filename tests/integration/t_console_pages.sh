#!/usr/bin/env bash
# The console's pages beyond t_console's walk, in a real browser (headless
# Chromium + Selenium, console/pages.py) against the real daemon and the
# demo backend recording what it is sent:
#  1. the quarantine queue filtered by model, then by user, lists exactly
#     the matching phones (two iPads of two users; carol's two phones);
#  2. one device's page: a phone pushed over its budget shows as "throttled
#     (until HH:MM:SS)" (the JSON API still says state "ok"), with its class's budget (burst and rate) and how many of its Syncs were
#     refused; its last requests and answers in order (FolderSync relayed,
#     then Sync held in quarantine), its decisions over time;
#  3. an iOS version in incubation approved from the OS versions page by an
#     admin: the iPhone held for it is relayed on its next Sync (the backend
#     records it); a helpdesk has no Approve button there and its forged
#     POST gets 403; the audit holds the approval with who made it; an
#     admin sees Approve only where a version is held and Revoke only where
#     an approval exists, and a forged POST for either where it would change
#     nothing gets 409 with the reason (easctl: exit 6, same words);
#  4. a phone looping (identical Syncs; the loop detector's threshold made
#     small for its class) is listed on the throttled page as looping and
#     "loop-quarantined (until ...)", with the command it loops on;
#  5. the console's certificate: leaf + intermediate served (s_client with
#     only the root verifies; Chromium trusts the console given the root in
#     its NSS store and nothing else, and does not without it); a leaf
#     whose intermediate is missing is refused for a daemon with the console
#     exactly as for one without (same message), and with
#     allow_incomplete_chain both listeners serve the leaf alone.
# Screenshots in build/test-artifacts/t_console_pages/.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/console/lib_console.sh"
console_need
need certutil
make_pki
start_backend cas1 --record "$T/rec" || finish
ACC=$T/console.passwd
console_accounts || finish
WEB=$(free_port)
# iPhones are allowed by a rule, so a new iOS version holds them in
# incubation; LoopPhones too, so their Syncs are relayed and can loop.
cat >"$T/gw.conf" <<CONF
policy = { default = "quarantine";
  rules = ( "allow DeviceType is \\"iPhone\\" name \\"iphones\\"",
            "allow DeviceType is \\"LoopPhone\\" name \\"loopers\\"" );
  incubation = { enabled = true; days = 14; families = [ "iOS" ]; }; };
throttle = { enabled = true; classes = (
  { name = "default"; burst = 6; rate = 0.2; },
  { name = "loopers"; match = "DeviceType is \\"LoopPhone\\""; hammer = 2;
    loop = { window = 60; threshold = 3; throttle = 2; quarantine = 300; memory = 600; }; } ); };
admin = { web = "127.0.0.1:$WEB"; web_accounts = "$ACC"; web_assets = "$EG_ROOT/web"; };
CONF
start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || { fail "backend cas1 not up"; finish; }
ctl() { "$EASCTL" -s "$CTL" "$@"; }

# --- the phones --------------------------------------------------------------------------------
newphone bob IPH61A iPhone "Apple-iPhone4C1/1002.142"     # incubation (iOS 6.1)
newphone carol IPAD61B iPad "Apple-iPad3C1/1002.146"      # default quarantine
newphone carol CAROLAND Android "Android/4.4.2-EAS-1.3"   # default quarantine
newphone erin ERINPAD iPad "Apple-iPad4C1/1101.465"       # default quarantine (iOS 7.0)
newphone ian IANIPH iPhone "Apple-iPhone6C1/1101.465"     # incubation (iOS 7.0)
newphone dave DAVEDEV Android "Android/4.4.2-EAS-1.3"     # pushed over its budget below
check "ian's iPhone is held in incubation" \
	grep -q 'Quarantined,INCUBATION' <(ctl devices --user ian --format csv)
: >"$T/dave.st"
for _ in $(seq 10); do
	phone dave DAVEDEV Android "Android/4.4.2-EAS-1.3" >>"$T/dave.st"
	echo >>"$T/dave.st"
done
check "dave's phone went over its budget (503 among its answers: $(sort "$T/dave.st" | uniq -c | tr '\n' ' '))" \
	grep -q 503 "$T/dave.st"

# A phone looping: the same Sync again and again, relayed, until the loop
# detector quarantines it (at most 20 requests).
printf 'the-same-sync-every-time' >"$T/loop.body"
st=$(phone lu LOOPDEV LoopPhone "LoopPhone/2.0" FolderSync)
check "the looping phone authenticates (FolderSync relayed: HTTP $st)" test "$st" = 200
loops=""
for _ in $(seq 20); do
	loops="$loops $(phone lu LOOPDEV LoopPhone "LoopPhone/2.0" Sync "$T/loop.body")"
	grep -q 'event=throttle_quarantine .*device="LOOPDEV"' "$T/gw.log" && break
done
check "the looping phone was loop-quarantined (answers:$loops)" \
	grep -q 'event=throttle_quarantine .*device="LOOPDEV"' "$T/gw.log"

# --- 5. the console's certificate chain ------------------------------------------------------
sc() { # s_client with only the root CA: success needs the intermediate from the server
	(sleep 0.3; echo) | timeout 10 openssl s_client -connect "127.0.0.1:$1" -CAfile "$PKI/root.pem" \
		-verify_return_error -showcerts 2>&1
}
out=$(sc "$WEB")
check "the console: s_client verifies the chain with only the root" \
	grep -q "Verify return code: 0 (ok)" <<<"$out"
check "the console sends 2 certificates (leaf + intermediate)" \
	test "$(grep -c 'BEGIN CERTIFICATE' <<<"$out")" -eq 2
pems() { awk '/BEGIN CERTIFICATE/,/END CERTIFICATE/'; }
check "the console sends the main listener's chain, byte for byte" \
	bash -c '[ -n "$0" ] && [ "$0" = "$1" ]' "$(pems <<<"$out")" "$(sc "$GW_PORT" | pems)"
# Chromium's own store (NSS, under $HOME/.pki/nssdb) with the root alone;
# an empty one for the counter-check.
for h in root empty; do
	mkdir -p "$T/home-$h/.pki/nssdb"
	certutil -N -d "sql:$T/home-$h/.pki/nssdb" --empty-password ||
		fail "certutil -N ($h)"
done
certutil -A -d "sql:$T/home-root/.pki/nssdb" -n easgate-test-root -t "C,," -i "$PKI/root.pem" ||
	fail "certutil -A the test root"
check "Chromium's store holds the root alone" \
	bash -c '[ "$(tail -n +4 <<<"$0" | grep -c .)" -eq 1 ] && grep -q "^easgate-test-root  *C,," <<<"$0"' \
	"$(certutil -L -d "sql:$T/home-root/.pki/nssdb")"

SHOTS=${EG_ARTIFACTS:-$O/test-artifacts}/t_console_pages
rm -rf "$SHOTS" && mkdir -p "$SHOTS"
cat >"$T/pages.json" <<JSON
{"url": "https://127.0.0.1:$WEB", "spki": "$(console_spki)", "outdir": "$SHOTS", "profile": "$T/chromium",
 "gw": "127.0.0.1:$GW_PORT", "ca": "$PKI/root.pem", "rec": "$T/rec",
 "accounts": {"helpdesk": ["helen", "pw-helen-0123"], "viewer": ["victor", "pw-victor-0123"],
              "admin": ["ada", "pw-ada-0123"]},
 "model_filter": "iPad", "by_model": ["ERINPAD", "IPAD61B"],
 "user_filter": "carol", "by_user": ["CAROLAND", "IPAD61B"],
 "throttled": {"user": "dave", "device": "DAVEDEV", "type": "Android", "ua": "Android/4.4.2-EAS-1.3",
               "class": "default", "burst": 6, "rate": 0.2},
 "incubating": {"user": "ian", "device": "IANIPH", "type": "iPhone", "ua": "Apple-iPhone6C1/1101.465",
                "os": "iOS 7.0 11A465"},
 "looping": {"user": "lu", "device": "LOOPDEV", "command": "Sync"},
 "root_only": {"home": "$T/home-root", "profile": "$T/chromium-root"},
 "no_root": {"home": "$T/home-empty", "profile": "$T/chromium-empty"}}
JSON
console_browser "$EG_ROOT/tests/integration/console/pages.py" "$T/pages.json" 21
for p in quarantine-model quarantine-user device-throttled versions-helpdesk versions-approved throttle-looping root-only-login; do
	check "screenshot $p.png taken" test -s "$SHOTS/$p.png"
done

# The audit: the version approved from the console, by the admin; the
# helpdesk's forged POST changed nothing and was logged as denied.
ctl audit --format json >"$T/audit.json" || fail "easctl audit"
check "easctl audit: the admin approved iOS 7.0 from the console, and that is the only change" \
	$PY - "$T/audit.json" <<'PYEOF'
import json, sys
rows = json.load(open(sys.argv[1]))
hit = [r for r in rows if r["who"] == "console:ada" and r["what"] == "versions approve iOS 7.0 11A465"
       and "approved=1" in r["after"] and r["at"] != "-"]
print(rows)
sys.exit(0 if len(hit) == 1 and len(rows) == 1 else 1)
PYEOF
check "the helpdesk's forged version approval was logged as denied" \
	grep -q 'event=console_denied user="helen"' "$T/gw.log"
check "easctl versions: iOS 7.0 11A465 approved" \
	grep -q 'approved' <(ctl versions list | grep 'iOS 7.0 11A465')

# easctl runs the same check as the console: approving a version nothing
# holds, or revoking an approval that does not exist, is refused (exit 6,
# the console's 409) with the reason; a version not seen yet of a family
# that incubates may be approved ahead of its release day.
REL=$(ctl versions list --format json | $PY -c '
import json, sys
print(" ".join(v["os"] for v in json.load(sys.stdin)["versions"] if v["state"] == "released"))')
check "easctl versions: Android 4.4.2 is released (no incubation for Android): $REL" \
	test "$REL" = "Android 4.4.2"
out=$(ctl versions approve "$REL" 2>&1)
rc=$?
check "easctl versions approve $REL (released, not held): exit 6 with the reason ($out)" \
	bash -c '[ "$0" = 6 ] && grep -q "not held" <<<"$1"' "$rc" "$out"
out=$(ctl versions revoke "iOS 6.1 10B142" 2>&1)
rc=$?
check "easctl versions revoke of a version never approved: exit 6 with the reason ($out)" \
	bash -c '[ "$0" = 6 ] && grep -q "not approved" <<<"$1"' "$rc" "$out"
out=$(ctl versions approve "iOS 99.0 99A1" 2>&1)
rc=$?
line=$(ctl versions list | grep "^iOS 99.0 99A1 ")
check "easctl versions approve of an iOS version not seen yet: a pre-approval (exit $rc: $out; listed: $line)" \
	bash -c '[ "$0" = 0 ] && grep -q " approved " <<<"$1"' "$rc" "$line"
n=$(ctl audit --format json | $PY -c 'import json, sys; print(len(json.load(sys.stdin)))')
check "the refused ones left no audit line, the pre-approval one ($n lines in all)" test "$n" = 2

# The same chain check for a daemon with the console as without: a leaf
# whose intermediate is missing is refused with the same words...
printf 'admin = { web = "127.0.0.1:%s"; web_accounts = "%s"; web_assets = "%s"; };\n' \
	"$(free_port)" "$ACC" "$EG_ROOT/web" >"$T/web-only.conf"
: >"$T/none.conf"
for c in none web-only; do
	"$EASGATED" --check-config -c "$T/$c.conf" --tls-cert "$PKI/server-leaf.pem" --tls-key "$PKI/server.key" \
		--trust-file "$PKI/root.pem" >"$T/leaf-$c.out" 2>&1
	echo "exit $?" >>"$T/leaf-$c.out"
done
check "--check-config refuses a leaf without its intermediate with the console on ($(grep -m1 'chain' "$T/leaf-web-only.out"))" \
	bash -c 'grep -q "incomplete chain" "$0" && ! grep -qx "exit 0" "$0"' "$T/leaf-web-only.out"
check "...with the same words and exit as without the console" \
	diff <(sed "s#$T/[a-z-]*\.conf##g" "$T/leaf-none.out") <(sed "s#$T/[a-z-]*\.conf##g" "$T/leaf-web-only.out")
WEB2=$(free_port)
timeout 10 "$EASGATED" -c "$T/web-only.conf" --listen "127.0.0.1:$(free_port)" --tls-cert "$PKI/server-leaf.pem" \
	--tls-key "$PKI/server.key" --trust-file "$PKI/root.pem" --state-dir "$T/s2" \
	--control-socket "$T/c2.sock" >"$T/refuse.log" 2>&1
rc=$?
check "easgated with the console refuses to start with an incomplete chain (exit $rc)" \
	bash -c '[ "$0" -ne 0 ] && [ "$0" -ne 124 ] && grep -q "incomplete chain" "$1"' "$rc" "$T/refuse.log"
# ...and allow_incomplete_chain lets both listeners serve the leaf alone,
# with the main listener's warning.
cat >"$T/override.conf" <<CONF
tls = { certificates = ( { cert = "$PKI/server-leaf.pem"; key = "$PKI/server.key"; } );
        allow_incomplete_chain = true; trust_file = "$PKI/root.pem"; };
admin = { web = "127.0.0.1:$WEB2"; web_accounts = "$ACC"; web_assets = "$EG_ROOT/web"; };
CONF
MAIN2=$(free_port)
"$EASGATED" -c "$T/override.conf" --listen "127.0.0.1:$MAIN2" --state-dir "$T/s3" \
	--control-socket "$T/c3.sock" -w 1 >"$T/override.log" 2>&1 &
EG_PIDS+=($!)
for _ in $(seq 100); do
	echo | timeout 5 openssl s_client -connect "127.0.0.1:$WEB2" >/dev/null 2>&1 && break
	sleep 0.1
done
check "with allow_incomplete_chain the daemon warns as t_tls_chain's main listener does" \
	grep -q "override=allow_incomplete_chain" "$T/override.log"
for p in "$MAIN2" "$WEB2"; do
	out=$( (sleep 0.3; echo) | timeout 10 openssl s_client -connect "127.0.0.1:$p" -CAfile "$PKI/root.pem" -showcerts 2>&1)
	check "allow_incomplete_chain: port $p sends the leaf alone ($(grep -c 'BEGIN CERTIFICATE' <<<"$out") certificate)" \
		test "$(grep -c 'BEGIN CERTIFICATE' <<<"$out")" -eq 1
	check "...which a client with only the root cannot verify ($(grep -m1 'Verify return code' <<<"$out"))" \
		bash -c '! grep -q "Verify return code: 0 (ok)" <<<"$0" && grep -q "unable to get local issuer" <<<"$0"' "$out"
done
finish
