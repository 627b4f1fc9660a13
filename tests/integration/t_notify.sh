#!/usr/bin/env bash
# Notices (issue #14): SMTP through a local relay (Debian's python3-aiosmtpd,
# STARTTLS and AUTH required, verified against the test CA) and a webhook
# receiver that checks the HMAC-SHA256 signature.
#  1. 500 phones quarantined within a batch window: one admin message listing
#     the 500 devices, 500 user messages (one per phone, to its UPN, with the
#     configured contact), one webhook POST with a valid signature and the
#     500 events; their next requests add nothing.
#  2. The relay down: 50 more phones are quarantined while it is down; the
#     daemon retries with backoff (easgate_notify_retries_total grows, the
#     wait doubles from retry.min up to retry.max, the messages wait in the
#     queue, nothing is dropped) and, once the relay is back, delivers the
#     admin batch and all 50 user messages. The backend is stopped too:
#     "backend down" joins that batch; the test certificate (825 days) is
#     within expiry_warning = 3650 days: "certificate expiring" is in the
#     first batch.
#  3. The receiver's check can fail: a POST with a wrong signature is
#     counted invalid (so "valid" above means something).
# Scaled in time, not in what is checked: the issue's batch of a minute and
# relay down for 2 minutes become notify.batch = 0.333334 (20 s) and a relay
# down until the backoff has reached notify.retry.max (retry = { min = 1;
# max = 4; } instead of 10 s .. 600 s): the same batching, retry and backoff
# code. The phones are new phones (FolderSync, relayed under quarantine: the
# backend's 200 makes them devices, then Sync), so their quarantines are
# real devices' quarantines. The receiver's check (3) runs first, and the
# checks of phase 1 run while its batch window is open: about 50 s in all.
source "$(dirname "$0")/lib.sh"
need curl python3
source "$(dirname "$0")/console/lib_notify.sh"
notify_need
D=$EG_ROOT/tests/integration/console
BATCH_S=20 # notify.batch below, in seconds
make_pki
start_backend cas1 || finish
notify_sinks_start

# --- 3. the receiver's check can fail (first: it needs no daemon) ------------------------------
curl -s -o /dev/null -H 'X-Easgate-Signature: sha256=00' -d '{"events": []}' "http://127.0.0.1:$HOOK/hook"
wait_for 5 'test -s "$T/hook.jsonl"'
check "a POST with a wrong signature is counted invalid by the receiver" \
	test "$(grep -c '"valid": false' "$T/hook.jsonl")" -eq 1
hook_valid() { grep -c '"valid": true' "$T/hook.jsonl"; }

cat >"$T/gw.conf" <<CONF
policy = { default = "quarantine"; };
tls = { expiry_warning = 3650; }; # the test certificate (825 days) is within it: one notice
notify = {
  batch = 0.333334; # minutes: $BATCH_S s
$(notify_channels)
  retry = { min = 1; max = 4; };
  queue = 20000;
  timeout = 10;
};
CONF
gw_start=$(date +%s.%N) # the certificate's notice opens the first batch window at start
start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || { fail "backend cas1 not up"; finish; }
ctl() { "$EASCTL" -s "$CTL" "$@"; }
metric() { ctl metrics | awk -v m="$1" '$1 == m { print $2 }'; }
nmail() { find "$T/mail" -name '*.eml' | wc -l; }
admin_mails() { grep -l '^X-Rcpt: mdm-admins@example.test$' "$T"/mail/*.eml 2>/dev/null; }
user_mails() { grep -L '^X-Rcpt: mdm-admins@example.test$' "$T"/mail/*.eml 2>/dev/null | wc -l; }

# --- 1. 500 phones within a batch window --------------------------------------------------------
out=$(python3 "$D/phones.py" "$GW_PORT" "$PKI/root.pem" p 0 500)
secs=${out##*seconds=}
first=$(date +%s.%N)
since=$(python3 -c "print('%.1f' % ($first - $gw_start))")
check "500 new phones were answered ($out)" grep -q '^ok=500 ' <<<"$out"
check "...within the first batch window: one batch holds them all (${since} s since start < $BATCH_S s)" \
	python3 -c "import sys; sys.exit(0 if float('$since') < $BATCH_S else 1)"
check "they are the inventory's 500 quarantined devices" \
	test "$(ctl devices --state Quarantined --format csv | grep -c '^pu[0-9]*@example.test,PDEV')" -eq 500
# The same phones again, while the batch is still open: nothing new may come
# of it (neither user messages nor lines in the admin batch, counted below).
python3 "$D/phones.py" "$GW_PORT" "$PKI/root.pem" p 0 20 >/dev/null
wait_for 30 '[ "$(user_mails)" -ge 500 ]'
check "500 user messages arrived ($(user_mails))" test "$(user_mails)" -eq 500
python3 - "$T/mail" >"$T/users.check" <<'PYEOF'
import glob, re, sys
to, bad = set(), []
for f in glob.glob(sys.argv[1] + "/*.eml"):
    t = open(f, errors="replace").read()
    rc = t.split("\n", 1)[0][len("X-Rcpt: "):]
    if rc == "mdm-admins@example.test":
        continue
    to.add(rc)
    if "X-Tls: 1" not in t: bad.append(f + " not over TLS")
    m = re.search(r"^To: (.*)$", t, re.M)
    if not m or m.group(1).strip() != rc: bad.append(f + " To differs")
    if "extension 4711" not in t: bad.append(f + " no contact")
    dev = "PDEV" + rc[2:6]
    if dev not in t: bad.append(f + " does not name " + dev)
want = {"pu%04d@example.test" % i for i in range(500)}
print("recipients %s" % ("ok" if to == want else "differ: %d" % len(to ^ want)))
print("bad %d %s" % (len(bad), bad[:3]))
PYEOF
check "each phone's user got its own message, at its UPN" grep -qx 'recipients ok' "$T/users.check"
check "...over STARTTLS, naming the phone and the contact" grep -q '^bad 0' "$T/users.check"
wait_for $((BATCH_S + 30)) '[ -n "$(admin_mails)" ]'
waited=$(python3 -c "import time; print('%.1f' % (time.time() - $first))")
check "the admin batch came once its window closed (${waited} s after the phones, window $BATCH_S s from start)" \
	python3 -c "import sys; sys.exit(0 if float('$waited') >= $BATCH_S - float('$since') - 1 else 1)"
wait_for 10 '[ "$(hook_valid)" -ge 1 ]'
sleep 2 # a second admin message or POST would have been sent together with the first
check "exactly one admin message ($(admin_mails | wc -l))" test "$(admin_mails | wc -l)" -eq 1
A1=$(admin_mails | head -1)
n=$(grep -Ec 'quarantined by default +pu[0-9]+@example.test  PDEV' "$A1")
check "...listing the 500 quarantined devices ($n)" test "$n" -eq 500
check "...with a subject that counts them" grep -q '^Subject: \[easgate\] 50[0-9] new: 500 quarantined by default' "$A1"
check "...and the certificate within its warning days" \
	grep -Eq 'certificate expiring +\(.*server.pem expires .*warning days: 3650' "$A1"
check "one webhook POST from the daemon ($(hook_valid))" test "$(hook_valid)" -eq 1
check "...its HMAC-SHA256 signature checks out, with the 500 quarantines" \
	grep -q '"valid": true, "events": 50[0-9], "kinds": {.*"quarantined by default": 500' "$T/hook.jsonl"
check "the same phones again sent nothing new ($(user_mails) user messages)" test "$(user_mails)" -eq 500

# --- 2. the relay down ----------------------------------------------------------------------------
kill "$SMTP_PID"; wait "$SMTP_PID" 2>/dev/null
before=$(nmail)
r0=$(metric easgate_notify_retries_total)
out=$(python3 "$D/phones.py" "$GW_PORT" "$PKI/root.pem" q 0 50)
check "50 more phones quarantined while the relay is down ($out)" grep -q '^ok=50 ' <<<"$out"
kill "$BE_PID_cas1" # and the backend: its health check notices, the batch says so
backend_down() { ctl backends | awk '$1 == "cas1" && $3 == "down"' | grep -q .; }
wait_for 20 backend_down
check "the backend is seen down" backend_down
# Down until the backoff has doubled up to retry.max and retried there once more.
retry_waits() { sed -n 's/.*event=notify_retry channel=smtp .*retry_in_ms=\([0-9]*\).*/\1/p' "$T/gw.log"; }
at_max() { [ "$(retry_waits | grep -cx 4000)" -ge 2 ]; }
wait_for 30 at_max
r1=$(metric easgate_notify_retries_total)
q1=$(metric easgate_notify_queued)
check "the daemon retried while the relay was down (retries $r0 -> $r1)" test "$r1" -gt "$r0"
check "...backing off from retry.min up to retry.max and on at that ($(retry_waits | sort -un | tr '\n' ' '))" \
	bash -c '[ "$(sort -un <<<"$0" | head -1)" = 1000 ] && [ "$(sort -un <<<"$0" | tail -1)" = 4000 ] && [ "$(grep -cx 4000 <<<"$0")" -ge 2 ]' "$(retry_waits)"
check "...and keeps the messages queued ($q1)" test "$q1" -ge 50
check "...nothing dropped" test "$(metric easgate_notify_dropped_total)" = 0
check "the gateway kept answering phones meanwhile" \
	grep -q '^ok=5 ' <<<"$(python3 "$D/phones.py" "$GW_PORT" "$PKI/root.pem" p 100 5 --cmds Sync)"
smtp_start
wait_for 30 '[ "$(($(nmail) - before))" -ge 50 ]'
qmails=$(grep -l '^X-Rcpt: qu00[0-4][0-9]@example.test$' "$T"/mail/*.eml | wc -l)
check "relay back: all 50 user messages delivered ($qmails)" test "$qmails" -eq 50
wait_for $((BATCH_S + 30)) '[ "$(admin_mails | wc -l)" -ge 2 ]'
A2=$(admin_mails | xargs ls -t | head -1)
n=$(grep -Ec 'quarantined by default +qu[0-9]+@example.test  QDEV' "$A2")
check "...and the admin batch listing the 50 ($n)" test "$n" -eq 50
check "...and the backend that went down" grep -Eq 'backend down +\(cas1: ' "$A2"
check "nothing was lost or dropped (dropped $(metric easgate_notify_dropped_total), failed $(metric easgate_notify_failed_total))" \
	test "$(metric easgate_notify_dropped_total)" = 0 -a "$(metric easgate_notify_failed_total)" = 0
echo "  (sent: smtp $(metric 'easgate_notify_sent_total{channel="smtp"}'), webhook $(metric 'easgate_notify_sent_total{channel="webhook"}'); retries $(metric easgate_notify_retries_total))"
wait_for 10 '[ "$(hook_valid)" -ge 2 ]'
check "every POST from the daemon was valid ($(hook_valid) of $(($(wc -l <"$T/hook.jsonl") - 1)))" \
	test "$(hook_valid)" -eq "$(($(wc -l <"$T/hook.jsonl") - 1))"
lacks -q 'relay-secret-1\|hook-secret-1' "$T/gw.log" && pass "no secret in the log" || fail "a secret is in the log"
finish
