#!/usr/bin/env bash
# A slow start is not a hang. Started on a few % of a CPU (a cgroup quota, as a
# container's CPU limit or a sanitizer build on a loaded host gives), a
# worker needs seconds before its loop first ticks; the master judged it
# from its fork with a watchdog period plus a tick (1.5 s for
# WATCHDOG_USEC=1 s), reported it stalled and withheld WATCHDOG=1, so
# systemd would have killed a gateway that was only starting. Asserted,
# against a test NOTIFY_SOCKET (tests/notify_listen.py):
#  - no worker is reported stalled while the gateway starts in the cage;
#  - once out of the cage, WATCHDOG=1 comes again and the gateway answers;
#  - a worker stopped (SIGSTOP) after its start is still reported stalled
#    and the pings stop: the start's grace does not hide a hang.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cpu_cage.sh"
need python3 curl
need_root
trap 'cage_drop; cleanup' EXIT
make_pki
WD_MS=1000
start_backend cas1 || finish
python3 "$EG_ROOT/tests/notify_listen.py" "$T/wd.sock" "$T/wd.jsonl" &
EG_PIDS+=($!)
for _ in $(seq 50); do [ -e "$T/wd.jsonl" ] && break; sleep 0.1; done
# The cage is sized from what this build's start costs: a start measured
# outside it (master and workers, CPU time once serving), then a quota that
# stretches that cost to START_MS of wall clock: past the old
# judgement (1.5 s), inside the start's grace (10 s), whether the build is
# plain or a sanitizer's (which costs several times more; a fixed 3% made an
# ASan start on a slower host last past 11 s).
# 2.5 s: a start stretched further (4 s, 2% of a CPU) left a worker that had
# started starved by the cage for 1.5 s once in a run: a started worker's
# judgement, not the start's (now net of its waits for a CPU:
# t_watchdog_starved).
START_MS=2500
NOTIFY_SOCKET= WATCHDOG_USEC= start_gateway --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
sleep 1
cpu=$(cpu_ms "$GW_PID")
for w in $(pgrep -P "$GW_PID"); do cpu=$((cpu + $(cpu_ms "$w"))); done
kill "$GW_PID"
wait "$GW_PID" 2>/dev/null
mv "$T/gw.log" "$T/gw-measure.log"
quota=$((cpu * 100000 / START_MS))
[ "$quota" -lt 1000 ] && quota=1000
echo "  INFO  a start costs cpu_ms=$cpu; cage: $quota us per 100 ms"
if ! cage_make "$quota" 2>"$T/cage.err"; then
	skip_part "$TNAME" "cannot make a CPU cage: $(cat "$T/cage.err")"
	finish
fi
# This shell into the cage, so the gateway and its workers start there.
cage_put "$BASHPID" || { fail "cannot put the test shell into the cage"; finish; }
NOTIFY_SOCKET=$T/wd.sock WATCHDOG_USEC=$((WD_MS * 1000)) start_gateway \
	--backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health"
started=$?
echo "$BASHPID" >"$(dirname "$CAGE")/cgroup.procs" || fail "cannot take the test shell out of the cage"
check "the gateway started on $((quota / 1000)).$((quota / 100 % 10))% of a CPU" test "$started" -eq 0
[ "$started" -eq 0 ] || finish
sleep $((START_MS / 1000 + 2)) # the workers finish starting in the cage
cage_release || fail "cannot take the gateway out of the cage"
stalls=$(grep 'event=worker_stalled' "$T/gw.log")
check "no starting worker reported stalled (${stalls:-none})" test -z "$stalls"
sleep $((WD_MS * 2 / 1000))
n=$(grep -c '"WATCHDOG": "1"' "$T/wd.jsonl")
check "WATCHDOG=1 comes ($n pings)" test "$n" -ge 1
wait_backends_up cas1 || fail "backend cas1 not up"
code=$(eas -o /dev/null -w '%{http_code}' -u user1:pw -X OPTIONS \
	"$(GWURL "/Microsoft-Server-ActiveSync?User=user1&DeviceId=Start1&DeviceType=iPhone")")
check "the gateway answers after its slow start (HTTP $code)" test "$code" = 200
# The grace is for a start only: a worker that has ticked and then stops is hung.
hung=$(pgrep -P "$GW_PID" | head -1)
kill -STOP "$hung"
stopped=$(python3 -c 'import time; print(int(time.monotonic() * 1000))')
for _ in $(seq 50); do grep -q "event=worker_stalled slot=[0-9]* pid=$hung " "$T/gw.log" && break; sleep 0.1; done
check "a worker stopped after its start is reported stalled" \
	grep -q "event=worker_stalled slot=[0-9]* pid=$hung " "$T/gw.log"
sleep 1
after=$(python3 - "$T/wd.jsonl" "$((stopped + WD_MS / 2 + 1500))" <<'PY'
import json, sys
print(sum(1 for l in open(sys.argv[1]) if json.loads(l)["fields"].get("WATCHDOG") == "1"
          and json.loads(l)["mono_us"] // 1000 > int(sys.argv[2])))
PY
)
check "...and no WATCHDOG=1 from WATCHDOG_USEC/2 + 1.5 s after the stop on ($after)" test "$after" = 0
kill -CONT "$hung"
finish
