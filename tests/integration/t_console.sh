#!/usr/bin/env bash
# The web console in a real browser (issue #14): headless Chromium driven by
# Selenium (tests/integration/console/browser.py) against the real daemon,
# its console on HTTPS with the test PKI, the demo backend recording what
# it is sent. Phones are real EAS requests (curl; DeviceInformation encoded
# by libwbxml's xml2wbxml). Checked as a helpdesk, a viewer and an admin:
#  - the phone that just synced is in the quarantine queue; one click on
#    Approve and its next Sync is relayed (the backend records it);
#  - a POST without the CSRF token gets 403; a viewer sees no Approve button
#    and its forged POST (with its own token) gets 403;
#  - a DeviceModel of <img src=x onerror=alert(1)> shows as text (no alert,
#    no <img> element);
#  - a phone seen but never authenticated (only Syncs the gateway answered)
#    is listed under "seen, not authenticated", not with the inventory, and
#    its page offers nothing to approve;
#  - the dry run of block DeviceOS like "iOS 6.1*" lists exactly the two
#    iOS 6.1 phones;
#  - every page renders (screenshots in build/test-artifacts/t_console/),
#    with no empty status line leaving a gap under the title,
#    the throttled page lists the phone that went over its budget,
#    three chart.js charts are drawn, no CSP violation or script error;
#  - the queue filtered by OS lists the two iOS 6.1 phones alone, with first
#    seen and why; selected at once, one click blocks both;
#  - the audit (easctl audit, and the console's page) holds every change
#    made here, each with who made it: the helpdesk's approval, the admin's
#    rule and two blocks, an easctl version approval; and nothing else.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/console/lib_console.sh"
console_need
make_pki
start_backend cas1 --record "$T/rec" || finish
ACC=$T/console.passwd
console_accounts || finish
WEB=$(free_port)
cat >"$T/gw.conf" <<CONF
policy = { default = "quarantine"; incubation = { enabled = true; days = 14; families = [ "iOS" ]; }; };
throttle = { enabled = true; classes = ( { name = "default"; burst = 6; rate = 0.2; } ); };
admin = { web = "127.0.0.1:$WEB"; web_accounts = "$ACC"; web_assets = "$EG_ROOT/web"; };
CONF
start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || { fail "backend cas1 not up"; finish; }
ctl() { "$EASCTL" -s "$CTL" "$@"; }

wbxml_from_xml "$EG_ROOT/tests/integration/console/settings-xss.xml" "$T/xss.wbxml" ||
	{ fail "xml2wbxml"; finish; }
XSS='<img src=x onerror=alert(1)>'
newphone bob IPH61A iPhone "Apple-iPhone4C1/1002.142"
newphone carol IPAD61B iPad "Apple-iPad3C1/1002.146"
newphone dave IPH7C iPhone "Apple-iPhone6C1/1101.465"
for _ in $(seq 10); do # over its budget: the throttled page lists it
	phone dave IPH7C iPhone "Apple-iPhone6C1/1101.465" >>"$T/dave.st"
	echo >>"$T/dave.st"
done
check "dave's phone went over its budget (503 among its answers)" grep -q 503 "$T/dave.st"
# frank's phone only Syncs (answered by the gateway): seen, never authenticated
st=$(phone frank FRANKSEEN Android "Android/4.4.2-EAS-1.3")
check "a phone that only Syncs is answered by the gateway (HTTP $st)" test "$st" = 200
phone eve XSSDEV Android "Android/4.4.2-EAS-1.3" Settings "$T/xss.wbxml" >/dev/null
st=$(phone alice AndroidP1 Android "Android/4.4.2-EAS-1.3" FolderSync)
check "the phone's FolderSync is relayed under quarantine (HTTP $st)" test "$st" = 200
st=$(phone alice AndroidP1 Android "Android/4.4.2-EAS-1.3")
check "the phone's first Sync is answered by the gateway (quarantine: HTTP $st)" test "$st" = 200
check "the inventory has the hostile DeviceModel as sent" \
	grep -qF "$XSS" <(ctl devices --user eve --format csv)

# A change from easctl too: the audit must name its uid.
ctl versions approve "iOS 7.0 11A465" >/dev/null || fail "easctl versions approve"

SPKI=$(console_spki)
SHOTS=${EG_ARTIFACTS:-$O/test-artifacts}/t_console
rm -rf "$SHOTS" && mkdir -p "$SHOTS"
cat >"$T/browser.json" <<JSON
{"url": "https://127.0.0.1:$WEB", "spki": "$SPKI", "outdir": "$SHOTS", "profile": "$T/chromium",
 "gw": "127.0.0.1:$GW_PORT", "ca": "$PKI/root.pem", "rec": "$T/rec",
 "accounts": {"helpdesk": ["helen", "pw-helen-0123"], "viewer": ["victor", "pw-victor-0123"],
              "admin": ["ada", "pw-ada-0123"]},
 "p1": {"user": "alice", "device": "AndroidP1", "type": "Android", "ua": "Android/4.4.2-EAS-1.3"},
 "ios61": ["IPAD61B", "IPH61A"], "throttled": "IPH7C", "unauth": "FRANKSEEN", "unauth_user": "frank", "xss": {"device": "XSSDEV", "model": "<img src=x onerror=alert(1)>"}}
JSON
console_browser "$EG_ROOT/tests/integration/console/browser.py" "$T/browser.json" 25
for p in login quarantine devices devices-unauthenticated rules device versions throttle backends audit charts viewer-quarantine; do
	check "screenshot $p.png taken" test -s "$SHOTS/$p.png"
done

# The audit holds every change made here, with who, and nothing more.
ctl audit --format json >"$T/audit.json" || fail "easctl audit"
$PY - "$T/audit.json" >"$T/audit.check" <<'PYEOF'
import json, sys
rows = json.load(open(sys.argv[1]))
want = [("console:helen", "device approve AndroidP1", "access=Quarantined", "admin=allow"),
        ("console:ada", "rules add db", "", 'block DeviceModel is "BlackBerry9900"'),
        ("console:ada", "device block IPH61A", "access=Quarantined", "admin=block"),
        ("console:ada", "device block IPAD61B", "access=Quarantined", "admin=block"),
        ("easctl:uid=", "versions approve iOS 7.0 11A465", "", "approved=1")]
for who, what, before, after in want:
    hit = [r for r in rows if r["who"].startswith(who) and what in r["what"]
           and before in r["before"] and after in r["after"] and r["at"] != "-"]
    print("%s %s: %s" % ("ok" if len(hit) == 1 else "missing", who, what))
print("rows %d" % len(rows))
PYEOF
check "easctl audit: the helpdesk's approval, from the console" grep -q '^ok console:helen' "$T/audit.check"
check "easctl audit: the admin's rule and two blocks, from the console" \
	test "$(grep -c '^ok console:ada' "$T/audit.check")" -eq 3
check "easctl audit: the version approval, from easctl by uid" grep -q '^ok easctl:uid=' "$T/audit.check"
check "easctl audit: exactly these 5 changes ($(tail -1 "$T/audit.check"))" grep -qx 'rows 5' "$T/audit.check"
blocked=$(ctl devices --format csv | awk -F, '$17 == "block" { print $2 }' | sort | tr '\n' ' ')
check "the inventory has the two blocked by the admin ($blocked)" test "$blocked" = "IPAD61B IPH61A "
check "the log has an audit line for the console approval" \
	grep -q 'event=audit .*who="console:helen".*what="device approve AndroidP1' "$T/gw.log"
check "the viewer's forged POST was logged as denied" grep -q 'event=console_denied user="victor"' "$T/gw.log"
check "the POST without a token was logged" grep -q 'event=console_csrf_refused user=helen' "$T/gw.log"
finish
