#!/usr/bin/env bash
# A worker busy starting is not silent. A worker compiles the policy itself
# before its loop first runs (4,000 regex rules: ~0.4 s of CPU under ASan,
# seconds on a fraction of a CPU); its first heartbeat was stamped with its
# loop's clock from before that work, and its first tick came a whole tick
# after that stale stamp. The master saw a worker that had just started as
# silent for its start plus a second, past WATCHDOG_USEC/2 + 1 s, reported
# it stalled and withheld WATCHDOG=1 (t_reload_watchdog under ASan at a host
# load of 3: silent_ms=1516 runnable_wait_ms=0, the worker asleep in
# epoll_wait with a 1,000 ms timeout), and systemd would have restarted a
# gateway that was fine. Here the workers a reload starts compile a big
# policy in a CPU cage (cpu_cage.sh) sized so that their start lasts ~2.5 s
# by wall clock, then no connection wakes them. Asserted, against a test
# NOTIFY_SOCKET (tests/notify_listen.py) with WATCHDOG_USEC:
#  - no worker is reported stalled once the new workers have started;
#  - WATCHDOG=1 keeps coming after their start, no gap reaching WATCHDOG_USEC;
#  - a new worker stopped (SIGSTOP) is still reported stalled.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cpu_cage.sh"
source "$(dirname "$0")/big_policy.sh"
need python3 curl
need_root
trap 'cage_drop; cleanup' EXIT
make_pki
WD_MS=1000
START_MS=2500 # the wall-clock time the caged start of the new workers is sized to take
mono_ms() { python3 -c 'import time; print(int(time.monotonic() * 1000))'; }
# in_loop PID: the worker waits in its loop's epoll_wait (its start is done).
in_loop() { [ "$(cat "/proc/$1/wchan" 2>/dev/null)" = do_epoll_wait ]; }
# pings_since FROM_MS: "count max_gap_ms" of the WATCHDOG=1 from FROM_MS to now.
pings_since() {
	python3 - "$T/wd.jsonl" "$1" <<'PY'
import json, sys, time
a, b = int(sys.argv[2]), int(time.monotonic() * 1000)
ts = [r["mono_us"] // 1000 for r in map(json.loads, open(sys.argv[1]))
      if r["fields"].get("WATCHDOG") == "1" and r["mono_us"] // 1000 >= a]
ends = [a] + ts + [b]
print(len(ts), max(y - x for x, y in zip(ends, ends[1:])))
PY
}

start_backend cas1 || finish
python3 "$EG_ROOT/tests/notify_listen.py" "$T/wd.sock" "$T/wd.jsonl" &
EG_PIDS+=($!)
for _ in $(seq 50); do [ -e "$T/wd.jsonl" ] && break; sleep 0.1; done
echo 'log_level = "info";' >"$T/gw.conf"
NOTIFY_SOCKET=$T/wd.sock WATCHDOG_USEC=$((WD_MS * 1000)) start_gateway -c "$T/gw.conf" \
	--backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
big_conf "$T/gw.conf" Probe1 || { fail "write the big config"; finish; }
# What a new worker's start costs is mostly the policy compile that checking
# the file also does: two workers compile at once in the cage.
cpu=$(check_config_cpu_ms "$T/gw.conf")
check "--check-config of the big file passes (cpu_ms=${cpu:-none})" test -n "$cpu"
quota=$((2 * ${cpu:-0} * 100000 / START_MS))
[ "$quota" -lt 1000 ] && quota=1000
echo "  INFO  checking the big file: cpu_ms=$cpu; cage: $quota us per 100 ms"
if ! cage_make "$quota" 2>"$T/cage.err"; then
	skip_part "$TNAME" "cannot make a CPU cage: $(cat "$T/cage.err")"
	finish
fi
old=" $(pgrep -P "$GW_PID" | tr '\n' ' ')"
cage_put "$GW_PID" || { fail "cannot put the master into the cage"; finish; }
t0=$(mono_ms)
out=$("$EASCTL" -s "$CTL" reload 2>&1)
rc=$?
answered=$(mono_ms)
check "easctl reload of the big config succeeds (exit $rc: $out)" test "$rc" -eq 0
new=()
for w in $(pgrep -P "$GW_PID"); do [[ "$old" == *" $w "* ]] || new+=("$w"); done
check "the reload started 2 workers (${new[*]})" test "${#new[@]}" -eq 2
# Bounded: each new worker's start ends in its loop.
for _ in $(seq 300); do
	n=0
	for w in "${new[@]}"; do in_loop "$w" && n=$((n + 1)); done
	[ "$n" -eq "${#new[@]}" ] && break
	sleep 0.05
done
started=$(mono_ms)
cage_release || fail "cannot take the gateway out of the cage"
check "the new workers started in the cage ($n of ${#new[@]} in their loop, $((started - t0)) ms after the reload began)" \
	test "$n" -eq "${#new[@]}" -a "${#new[@]}" -gt 0
# The stale stamp showed for the worker's first tick (1 s) and the master
# looks every WATCHDOG_USEC/2: watch past both.
sleep 2.5
stalls=$(grep 'event=worker_stalled' "$T/gw.log")
check "no worker reported stalled after its start (${stalls:-none})" test -z "$stalls"
read -r n gap <<<"$(pings_since "$answered")"
check "WATCHDOG=1 keeps coming while the new workers start and after ($n pings, largest gap ${gap:-none} ms < $WD_MS)" \
	test "${n:-0}" -ge 2 -a "${gap:-$WD_MS}" -lt "$WD_MS"
eas -o "$T/probe.b" -u user1:pw -X POST -H 'MS-ASProtocolVersion: 14.1' \
	"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=Sync&User=user1&DeviceId=Probe1&DeviceType=iPhone")" >/dev/null
check "...and the new workers decide by the new policy (Probe1 blocked: status 129)" grep -q 129 "$T/probe.b"
# The start's stamp is not a grace: a new worker that stops is hung.
hung=${new[0]}
kill -STOP "$hung"
for _ in $(seq 60); do grep -q "event=worker_stalled slot=[0-9]* pid=$hung " "$T/gw.log" && break; sleep 0.1; done
check "a new worker stopped after its start is reported stalled" \
	grep -q "event=worker_stalled slot=[0-9]* pid=$hung " "$T/gw.log"
kill -CONT "$hung"
kill -TERM "$GW_PID"
wait "$GW_PID"
check "easgated exits 0 on SIGTERM (exit $?)" test $? -eq 0
finish
