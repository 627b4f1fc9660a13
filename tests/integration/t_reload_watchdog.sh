#!/usr/bin/env bash
# The systemd watchdog through a reload that takes longer than WatchdogSec.
# A reload holds the master's loop while it reads the file, compiles the
# policy and builds the TLS contexts; on a slow machine (a loaded host, an
# emulated CPU: 17.7 s in the systemd guest at host load 16, a container's
# CPU limit) or with a big config that is longer than WatchdogSec, and
# systemd killed the unit in the middle of a reload an admin asked for.
# Here the master reloads a config of 4,000 regex rules (the most rules a
# file may hold is 4,096; once parsing was linear that is ~150 ms of CPU)
# on a fraction of a CPU: a cgroup CPU quota (cpu_cage.sh), sized from the
# CPU time --check-config of the same file takes, so that the reload holds
# the loop ~2.5 s by wall clock whatever the machine's speed.
# Asserted, against a test NOTIFY_SOCKET (tests/notify_listen.py) with
# WATCHDOG_USEC:
#  - the reload really held the master longer than WATCHDOG_USEC (its own
#    event=reloaded hold_ms=);
#  - no gap between two WATCHDOG=1 (READY=1 to STOPPING=1) reaches
#    WATCHDOG_USEC, and pings come during the reload, from the master;
#  - the reload took effect (a rule of the new file decides), the workers it
#    started are not taken for hung (their start is when they were forked),
#    and a stopped worker still withholds the pings during a slow reload
#    (what the watchdog is for is kept).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cpu_cage.sh"
source "$(dirname "$0")/big_policy.sh"
need python3 curl
need_root
trap 'cage_drop; cleanup' EXIT
make_pki
NOTIFY_PY=$EG_ROOT/tests/notify_listen.py
WD_MS=1000
SLOW_MS=2500 # the wall-clock time a caged reload is sized to take

# probe DEVICE: the EAS status of a Sync from that DeviceId ("129" = blocked).
probe() {
	eas -o "$T/probe.b" -w '%{http_code}' -u user1:pw -X POST -H 'MS-ASProtocolVersion: 14.1' \
		"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=Sync&User=user1&DeviceId=$1&DeviceType=iPhone")" \
		>/dev/null && grep -q 129 "$T/probe.b" && echo blocked || echo relayed
}
# pings FILE: "t_ms KIND" for READY, WATCHDOG and STOPPING datagrams.
pings() {
	python3 - "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    for k in ("READY", "WATCHDOG", "STOPPING"):
        if r["fields"].get(k) == "1":
            print(r["mono_us"] // 1000, k, r["pid"])
PY
}
# max_gap PINGS FROM TO: the largest gap in ms between READY/WATCHDOG lines
# in [FROM, TO] (ms), FROM and TO included as ends.
max_gap() {
	awk -v a="$2" -v b="$3" '$2 != "STOPPING" && $1 >= a && $1 <= b { if (p) { g = $1 - p; if (g > m) m = g } p = $1 }
		END { if (b - p > m) m = b - p; print m + 0 }' <<<"$1"
}
# end_watch PID: the cage watcher's status, once it is done (it is, if it saw
# the keeper thread end, by the time the reload has answered); killed after
# a second otherwise.
end_watch() {
	for _ in $(seq 20); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
	kill "$1" 2>/dev/null
	wait "$1"
}
mono_ms() { python3 -c 'import time; print(int(time.monotonic() * 1000))'; }

start_backend cas1 || finish
big_conf "$T/gw.conf" Probe1 || { fail "write the big config"; finish; }
python3 "$NOTIFY_PY" "$T/wd.sock" "$T/wd.jsonl" &
EG_PIDS+=($!)
for _ in $(seq 50); do [ -e "$T/wd.jsonl" ] && break; sleep 0.1; done
NOTIFY_SOCKET=$T/wd.sock WATCHDOG_USEC=$((WD_MS * 1000)) start_gateway -c "$T/gw.conf" \
	--backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || fail "backend cas1 not up"
# The CPU that checking the same file takes (what a reload holds the loop
# for: parse, policy compile, certificate checks) sizes the quota:
# QUOTA/100 ms = cpu/SLOW_MS, so the caged reload takes ~SLOW_MS.
cpu=$(check_config_cpu_ms "$T/gw.conf")
check "--check-config of the big file passes (cpu_ms=${cpu:-none})" test -n "$cpu"
quota=$((${cpu:-0} * 100000 / SLOW_MS))
[ "$quota" -lt 1000 ] && quota=1000
echo "  INFO  checking the big file: cpu_ms=$cpu; cage: $quota us per 100 ms"
if ! cage_make "$quota" 2>"$T/cage.err"; then
	skip_part "$TNAME" "cannot make a CPU cage: $(cat "$T/cage.err")"
	finish
fi
big_conf "$T/gw.conf" Probe2
sleep 1.5
cage_put "$GW_PID" || fail "cannot put the master into the cage"
cage_until_thread_ends "$GW_PID" "$(threads "$GW_PID")" >"$T/cage1.txt" &
watcher=$!
t0=$(mono_ms)
out=$("$EASCTL" -s "$CTL" reload 2>&1)
rc=$?
t1=$(mono_ms)
end_watch "$watcher" || fail "the keeper thread of the reload was not seen"
echo "  INFO  reload from $t0 to $t1 ms, cage $(cat "$T/cage1.txt")"
cage_release || fail "cannot take the gateway out of the cage"
check "easctl reload of the big config succeeds (exit $rc, $((t1 - t0)) ms: $out)" test "$rc" -eq 0
hold=$(sed -n 's/.* event=reloaded gen=2 .*hold_ms=\([0-9]*\).*/\1/p' "$T/gw.log" | tail -1)
echo "  INFO  $(grep ' event=reloaded gen=2 ' "$T/gw.log")"
check "the reload held the master longer than WATCHDOG_USEC (hold_ms=${hold:-none} > $WD_MS)" \
	test "${hold:-0}" -gt "$WD_MS"
check "...and took effect: Probe2 blocked, Probe1 relayed" test "$(probe Probe2) $(probe Probe1)" = "blocked relayed"
sleep 1.5
t2=$(mono_ms)
ev=$(pings "$T/wd.jsonl")
check "the notify datagrams were read (exit $?)" test -n "$ev"
gap=$(max_gap "$ev" "$(awk '$2 == "READY" { print $1; exit }' <<<"$ev")" "$t2")
during=$(awk -v a="$t0" -v b="$t1" '$2 == "WATCHDOG" && $1 > a && $1 < b' <<<"$ev" | wc -l)
echo "  INFO  watchdog: largest gap $gap ms, $during pings during the $((t1 - t0)) ms reload"
check "WATCHDOG=1 kept coming during the reload ($during pings)" test "$during" -ge 1
check "no gap between watchdog pings reaches WATCHDOG_USEC, slow reload included (max $gap ms < $WD_MS)" \
	test "$gap" -lt "$WD_MS"
check "every ping comes from the master (pid $GW_PID)" \
	bash -c '[ -n "$0" ] && [ -z "$(awk -v p="$1" '"'"'$3 != p'"'"' <<<"$0")" ]' "$ev" "$GW_PID"
# The new workers are not hung: their start is when they were forked, not
# the loop's clock from before the reload (which made every slow reload
# report a new worker silent for hold_ms and withhold the pings).
stalls=$(grep -c 'event=worker_stalled' "$T/gw.log")
check "no worker reported stalled after the slow reload ($stalls: $(grep -o 'event=worker_stalled.*silent_ms=[0-9]*' "$T/gw.log" | head -1))" \
	test "$stalls" -eq 0

# A worker stopped during a slow reload: the pings stop (within
# WATCHDOG_USEC/2 + 1.5 s of the stop, as without a reload), the reload
# still finishes, and systemd would restart the unit.
hung=$(pgrep -P "$GW_PID" | head -1)
kill -STOP "$hung"
stopped=$(mono_ms)
big_conf "$T/gw.conf" Probe3
cage_put "$GW_PID" || fail "cannot put the master into the cage"
cage_until_thread_ends "$GW_PID" "$(threads "$GW_PID")" >"$T/cage2.txt" &
watcher=$!
"$EASCTL" -s "$CTL" reload >/dev/null 2>&1
rc=$?
end_watch "$watcher" || fail "the keeper thread of the second reload was not seen"
echo "  INFO  cage $(cat "$T/cage2.txt")"
cage_release || fail "cannot take the gateway out of the cage"
echo "  INFO  $(grep ' event=reloaded gen=3 ' "$T/gw.log")"
sleep 2
ev=$(pings "$T/wd.jsonl")
after=$(awk -v s=$((stopped + WD_MS / 2 + 1500)) '$2 == "WATCHDOG" && $1 > s' <<<"$ev" | wc -l)
check "a worker stopped before a slow reload: the reload succeeds (exit $rc)" test "$rc" -eq 0
check "...and no WATCHDOG=1 from WATCHDOG_USEC/2 + 1.5 s after the stop on ($after after)" \
	test -n "$ev" -a "$after" -eq 0
others=$(grep 'event=worker_stalled' "$T/gw.log" | grep -vc " pid=$hung ")
check "...reported stalled: the stopped worker $hung, no other ($others other)" \
	bash -c 'grep -q "event=worker_stalled slot=[0-9]* pid=$0 " "$1" && [ "$2" -eq 0 ]' "$hung" "$T/gw.log" "$others"
kill -CONT "$hung"
kill -TERM "$GW_PID"
wait "$GW_PID"
check "easgated exits 0 on SIGTERM (exit $?)" test $? -eq 0
finish
