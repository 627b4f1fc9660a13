#!/usr/bin/env bash
# The loop quarantine's notice (issue #14), end to end: real phones (curl over
# TLS through the gateway) loop, the throttle quarantines them for it, and the
# notice reaches the admins (SMTP relay with STARTTLS+AUTH, signed webhook)
# and the phones' users.
#  1. Two phones each send the same Sync again and again: relayed, throttled
#     as a loop, quarantined for it. The admins get ONE message (the batch)
#     listing both loop quarantines with user, DeviceId, User-Agent and the
#     reason (the looping command); the webhook one signed POST with both;
#     each phone's user one message saying why. Neither the password nor the
#     Authorization header's value is in any notice or in the log.
#  2. Looping on inside the quarantine (past `hammer`) sends nothing more:
#     one notice per quarantine, not one per request or per master tick.
#  3. Forgiven (`easctl throttle forgive`) and looping again while the SMTP
#     relay is down: a new quarantine, so a new notice; the webhook has it at
#     once, the mails are retried with backoff and delivered once the relay
#     is back; nothing dropped.
#  4. The admin notices t_notify does not produce, end to end: a phone
#     quarantined by a rule (named), an iPhone quarantined for incubation
#     and its OS version new, the backend down and up again.
# Also: the console is off by default (no admin.web here: the daemon
# listens on the phones' port alone).
# About 60 s (batch windows of 8 s, the relay down for a few retries, the
# backend's health checks).
source "$(dirname "$0")/lib.sh"
need curl python3 base64
source "$(dirname "$0")/console/lib_notify.sh"
notify_need
BATCH_S=8 # notify.batch below, in seconds
PW='Loop-Pa55-word'
make_pki
start_backend cas1 || finish
notify_sinks_start

cat >"$T/gw.conf" <<CONF
policy = { default = "allow"; rules = ( "quarantine DeviceType is \\"QPhone\\" name \\"qphones\\"" );
           incubation = { enabled = true; days = 14; families = [ "iOS" ]; }; };
throttle = { enabled = true; classes = ( { name = "default"; hammer = 2;
  loop = { window = 60; threshold = 3; throttle = 2; quarantine = 300; memory = 600; }; } ); };
notify = {
  batch = 0.133334; # minutes: $BATCH_S s
$(notify_channels)
  retry = { min = 1; max = 2; };
};
CONF
start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || { fail "backend cas1 not up"; finish; }
listening=$(ss -ltnpH | grep -E "pid=($GW_PID|$(pgrep -d'|' -P "$GW_PID"))," | awk '{print $4}' | sort -u | tr '\n' ' ')
check "the console is off by default: the daemon listens on the phones' port alone ($listening)" \
	test "$listening" = "127.0.0.1:$GW_PORT "
ctl() { "$EASCTL" -s "$CTL" "$@"; }
metric() { ctl metrics | awk -v m="$1" '$1 == m { print $2 }'; }
admin_mails() { grep -l '^X-Rcpt: mdm-admins@example.test$' "$T"/mail/*.eml 2>/dev/null | wc -l; }
user_mails() { grep -l "^X-Rcpt: $1\$" "$T"/mail/*.eml 2>/dev/null | wc -l; }
hook_valid() { grep -c '"valid": true' "$T/hook.jsonl"; }
# phone USER DEVICE CMD [TYPE UA]: one request, its HTTP status (the body is
# the same every time)
printf 'the-same-sync-every-time' >"$T/loop.body"
phone() {
	curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$PKI/root.pem" -u "$1:$PW" \
		-X POST -H "MS-ASProtocolVersion: 14.1" -H "User-Agent: ${5:-LoopPhone/2.0}" \
		-H "Content-Type: application/vnd.ms-sync.wbxml" --data-binary "@$T/loop.body" \
		"https://127.0.0.1:$GW_PORT/Microsoft-Server-ActiveSync?Cmd=$3&User=$1&DeviceId=$2&DeviceType=${4:-LoopPhone}"
}
quarantines() { grep -c "event=throttle_quarantine .*device=\"$1\"" "$T/gw.log"; }
# loop USER DEVICE N: identical Syncs until the throttle has quarantined the
# device for the Nth time (at most 20); prints the statuses.
loop() {
	local s=""
	for _ in $(seq 20); do
		s="$s $(phone "$1" "$2" Sync)"
		[ "$(quarantines "$2")" -ge "$3" ] && break
	done
	echo "$s"
}

# --- 1. two phones loop ------------------------------------------------------------------------
for i in 1 2; do
	r=$(phone "lu$i@example.test" "LOOPDEV$i" FolderSync)
	check "LOOPDEV$i authenticates (FolderSync relayed): $r" test "$r" = 200
done
loop lu1@example.test LOOPDEV1 1 >"$T/loop1.out" &
p1=$!
loop lu2@example.test LOOPDEV2 1 >"$T/loop2.out" &
p2=$!
wait $p1 && wait $p2
check "LOOPDEV1's identical Syncs: relayed, throttled as a loop, quarantined:$(cat "$T/loop1.out")" \
	grep -q '^ 200 200 503 ' "$T/loop1.out"
check "LOOPDEV2's too:$(cat "$T/loop2.out")" grep -q '^ 200 200 503 ' "$T/loop2.out"
check "the throttle quarantined both for their loop (log)" \
	test "$(quarantines LOOPDEV1)" -eq 1 -a "$(quarantines LOOPDEV2)" -eq 1
check "easctl throttle lists LOOPDEV1 as loop-quarantined" \
	grep -q 'LOOPDEV1.*loop_quarantine' <<<"$(ctl throttle)"
# 2. on inside the quarantine: the looping command, past hammer (XDP's flag)
for _ in 1 2 3 4 5; do phone lu1@example.test LOOPDEV1 Sync >/dev/null; done

wait_for $((BATCH_S + 20)) '[ "$(admin_mails)" -ge 1 ]'
check "an admin message came" test "$(admin_mails)" -ge 1
A1=$(grep -l '^X-Rcpt: mdm-admins@example.test$' "$T"/mail/*.eml | head -1)
for i in 1 2; do
	check "...listing LOOPDEV$i's loop quarantine: user, DeviceId, User-Agent, looping command" \
		grep -Eq "loop quarantine +lu$i@example.test  LOOPDEV$i  LoopPhone/2.0 .*\(looping command Sync\)" "$A1"
done
check "...in one message: the batch's subject counts both" \
	grep -q $'^Subject: \\[easgate\\] 2 new: 2 loop quarantine\r$' "$A1"
wait_for 10 '[ "$(hook_valid)" -ge 1 ]'
python3 - "$T/hook/1.json" >"$T/hook1.check" <<'PYEOF'
import json, sys
ev = json.load(open(sys.argv[1]))["events"]
got = sorted((e["kind"], e["user"], e["device_id"], e["model"], e["detail"]) for e in ev)
want = [("loop quarantine", "lu%d@example.test" % i, "LOOPDEV%d" % i, "LoopPhone/2.0",
         "looping command Sync") for i in (1, 2)]
print("events %s" % ("ok" if got == want else "differ: %r" % got))
PYEOF
check "one signed webhook POST with both loop quarantines (kind, user, device, detail)" \
	grep -qx 'events ok' "$T/hook1.check"
for i in 1 2; do
	wait_for 10 '[ "$(user_mails lu$i@example.test)" -ge 1 ]'
	U=$(grep -l "^X-Rcpt: lu$i@example.test\$" "$T"/mail/*.eml | head -1)
	check "lu$i's user got a message naming LOOPDEV$i, the reason and whom to ask" \
		bash -c 'grep -q "LOOPDEV$1" "$0" && grep -q "the same request over and over" "$0" &&
			grep -q "extension 4711" "$0" && grep -q "^X-Tls: 1" "$0"' "$U" "$i"
done
# Another batch window: a repeated notice (each master tick walks the
# throttle table; the phone kept looping) would be sent by then.
sleep $((BATCH_S + 3))
check "2. looping on within the quarantine sent nothing more (admin $(admin_mails), lu1 $(user_mails lu1@example.test), webhook $(hook_valid))" \
	test "$(admin_mails)" -eq 1 -a "$(user_mails lu1@example.test)" -eq 1 -a "$(hook_valid)" -eq 1

# --- 3. forgiven, looping again, the relay down -------------------------------------------------
kill "$SMTP_PID"; wait "$SMTP_PID" 2>/dev/null
out=$(ctl throttle forgive lu1@example.test LOOPDEV1 2>&1)
check "forgiven: $out" grep -q '^forgiven: LOOPDEV1' <<<"$out"
r=$(loop lu1@example.test LOOPDEV1 2)
check "LOOPDEV1 loops again and is quarantined again:$r" test "$(quarantines LOOPDEV1)" -eq 2
wait_for $((BATCH_S + 20)) '[ "$(hook_valid)" -ge 2 ]'
check "the webhook has the new quarantine in the next batch" \
	python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["events"]; sys.exit(0 if [(x["kind"], x["device_id"]) for x in e] == [("loop quarantine", "LOOPDEV1")] else 1)' "$T/hook/2.json"
retries() { grep -c 'event=notify_retry channel=smtp' "$T/gw.log"; }
wait_for 20 '[ "$(retries)" -ge 3 ]'
check "the mails are retried while the relay is down ($(retries) retries)" test "$(retries)" -ge 3
smtp_start
wait_for 20 '[ "$(admin_mails)" -ge 2 ] && [ "$(user_mails lu1@example.test)" -ge 2 ]'
check "relay back: the second admin message and lu1's second message arrived" \
	test "$(admin_mails)" -eq 2 -a "$(user_mails lu1@example.test)" -eq 2
A2=$(grep -l '^X-Rcpt: mdm-admins@example.test$' "$T"/mail/*.eml | xargs ls -t | head -1)
check "...the admin message lists LOOPDEV1's new loop quarantine" \
	grep -Eq "loop quarantine +lu1@example.test  LOOPDEV1  .*\(looping command Sync\)" "$A2"
check "nothing dropped or failed" \
	test "$(metric easgate_notify_dropped_total)" = 0 -a "$(metric easgate_notify_failed_total)" = 0

# --- 4. the other admin notices -----------------------------------------------------------------
n_admin=$(admin_mails)
n_hook=$(hook_valid)
for c in FolderSync Sync; do
	phone ru1@example.test RULEPH1 $c QPhone QPhone/1.0 >/dev/null
	phone iu1@example.test IPH7INC $c iPhone Apple-iPhone6C1/1101.465 >/dev/null
done
kill "$BE_PID_cas1"; wait "$BE_PID_cas1" 2>/dev/null
backend_is() { ctl backends | awk -v s="$1" '$1 == "cas1" && $3 == s' | grep -q .; }
wait_for 20 'backend_is down'
check "the backend is seen down" backend_is down
"$BACKEND" --listen "127.0.0.1:$BE_PORT_cas1" --name cas1 --quiet >>"$T/be-cas1.log" 2>&1 &
EG_PIDS+=($!)
wait_for 20 'backend_is up'
check "...and up again" backend_is up
# the admin messages since phase 4 began, in the order they came
admin4() {
	grep -l '^X-Rcpt: mdm-admins@example.test' "$T"/mail/*.eml | xargs ls -tr | tail -n +$((n_admin + 1)) |
		xargs -r cat >"$T/admin4.txt"
}
wait_for $((BATCH_S + 20)) 'admin4 && grep -q "backend up" "$T/admin4.txt"'
check "the admins are told of the phone quarantined by the rule, naming it" \
	grep -Eq 'quarantined by rule +ru1@example.test  RULEPH1  .*\(RULE: qphones\)' "$T/admin4.txt"
check "...of the iPhone quarantined for incubation" \
	grep -Eq 'quarantined for incubation +iu1@example.test  IPH7INC  .*iOS 7' "$T/admin4.txt"
check "...of its OS version, new" grep -Eq 'new OS version +iOS 7' "$T/admin4.txt"
check "...of the backend down and up again" \
	bash -c 'grep -Eq "backend down +\(cas1: " "$0" && grep -Eq "backend up +\(cas1\)" "$0"' "$T/admin4.txt"
kinds=$(tail -n +$((n_hook + 1)) "$T/hook.jsonl" | grep '"valid": true' | grep -o '"kinds": {[^}]*}' | tr '\n' ' ')
for k in "quarantined by rule" "quarantined for incubation" "new OS version" "backend down" "backend up"; do
	check "the webhook has \"$k\" too" grep -q "\"$k\": 1" <<<"$kinds"
done

# --- no credential anywhere ---------------------------------------------------------------------
creds=("$PW")
for i in 1 2; do creds+=("$(printf 'lu%s@example.test:%s' "$i" "$PW" | base64 -w0)"); done
leaks=0
for c in "${creds[@]}"; do lacks -rqF -- "$c" "$T/mail" "$T/hook" "$T/gw.log" || leaks=$((leaks + 1)); done
check "neither the password nor an Authorization value is in any mail, webhook body or the log" \
	test "$leaks" -eq 0
lacks -q 'relay-secret-1\|hook-secret-1' "$T/gw.log" && pass "no notify secret in the log" ||
	fail "a notify secret is in the log"
finish
