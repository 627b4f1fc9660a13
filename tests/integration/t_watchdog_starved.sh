#!/usr/bin/env bash
# A worker kept off the CPU is not hung. A worker that had started, put in a
# cgroup cage with a tiny quota (1 ms of CPU per second) spent by three CPU hogs,
# cannot tick for seconds: the master judged its silence by wall clock
# (a watchdog period plus a tick, 1.5 s for WATCHDOG_USEC=1 s), reported it
# stalled and withheld WATCHDOG=1, so systemd would have restarted a gateway
# that was only starved (a container's CPU limit, a loaded host). Asserted,
# against a test NOTIFY_SOCKET (tests/notify_listen.py):
#  - the cage really starves the worker: runnable but not run to the end of
#    its loop's turn for > 1.5 s at a stretch (/proc/PID/stat), waiting for
#    a CPU for seconds (/proc/PID/schedstat);
#  - meanwhile no worker is reported stalled and WATCHDOG=1 keeps coming
#    (no gap of WATCHDOG_USEC);
#  - a hang is still one: the worker stopped (SIGSTOP), and the other one
#    made to spin without ticking (tests/spin_worker.py, x86-64), are each
#    reported stalled and the pings stop;
#  - a worker spinning inside such a cage (runnable, waiting, for ever) is
#    reported too, at the 10 s cap.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cpu_cage.sh"
need python3 curl
need_root
HOGS=()
SPUN=()
stop_hogs() {
	local p
	for p in "${HOGS[@]}"; do kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	HOGS=()
}
# A spinning worker ignores SIGTERM (its loop never reads it): killed here.
stop_spun() { local p; for p in "${SPUN[@]}"; do kill -KILL "$p" 2>/dev/null; done; }
trap 'stop_hogs; stop_spun; cage_drop; cleanup' EXIT
mono_ms() { python3 -c 'import time; print(int(time.monotonic() * 1000))'; }
# hogs N: N busy loops in the cage, spending its quota.
hogs() {
	for _ in $(seq "$1"); do
		python3 -c 'while True: pass' &
		HOGS+=($!)
		cage_put "$!" || return 1
	done
}
# pings FROM_MS TO_MS: "count largest_gap_ms" of WATCHDOG=1 received in
# [FROM_MS, TO_MS] (CLOCK_MONOTONIC), the window's edges counted as pings.
pings() {
	python3 - "$T/wd.jsonl" "$1" "$2" <<'PY'
import json, sys
lo, hi = int(sys.argv[2]), int(sys.argv[3])
ts = [json.loads(l)["mono_us"] // 1000 for l in open(sys.argv[1])
      if json.loads(l)["fields"].get("WATCHDOG") == "1"]
ts = [t for t in ts if lo <= t <= hi]
edges = [lo] + ts + [hi]
print(len(ts), max(b - a for a, b in zip(edges, edges[1:])))
PY
}
# stalled PID TIMEOUT_S: wait for the worker's worker_stalled line after the
# log's line $MARK (mark sets it); prints it.
mark() { MARK=$(wc -l <"$T/gw.log"); }
stalled() {
	for _ in $(seq $(($2 * 10))); do
		tail -n +$((MARK + 1)) "$T/gw.log" | grep -m1 "event=worker_stalled slot=[0-9]* pid=$1 " && return 0
		sleep 0.1
	done
	return 1
}
# field LINE KEY: KEY's value in a key=value log line.
field() { sed -n "s/.* $2=\([0-9]*\).*/\1/p" <<<"$1"; }
# pings_resume AFTER_MS: wait up to 10 s for a WATCHDOG=1 after AFTER_MS.
pings_resume() {
	for _ in $(seq 100); do
		[ "$(pings "$1" 99999999999 | cut -d' ' -f1)" -gt 0 ] && return 0
		sleep 0.1
	done
	return 1
}

make_pki
WD_MS=1000
start_backend cas1 || finish
python3 "$EG_ROOT/tests/notify_listen.py" "$T/wd.sock" "$T/wd.jsonl" --timeout 300 &
EG_PIDS+=($!)
for _ in $(seq 50); do [ -e "$T/wd.jsonl" ] && break; sleep 0.1; done
GW_WORKERS=2 NOTIFY_SOCKET=$T/wd.sock WATCHDOG_USEC=$((WD_MS * 1000)) start_gateway \
	--backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || fail "backend cas1 not up"
# Both workers' loops have ticked (every second): a start has a grace of its own.
sleep 2.5
read -ra workers <<<"$(pgrep -P "$GW_PID" | head -2 | tr '\n' ' ')"
check "two workers (${workers[*]})" test "${#workers[@]}" -eq 2
[ "${#workers[@]}" -eq 2 ] || finish
starved=${workers[0]}
if ! cage_make 1000 1000000 2>"$T/cage.err"; then
	skip_part "$TNAME" "cannot make a CPU cage: $(cat "$T/cage.err")"
	finish
fi

# 1. Starved: the worker with three hogs in a cage of 1 ms per second, 8 s
# (less than the 10 s cap on a starved worker's excuse).
hogs 3 || fail "cannot put the hogs into the cage"
cage_put "$starved" || fail "cannot put worker $starved into the cage"
t0=$(mono_ms)
# How it starved, sampled every 20 ms: the longest stretch in state R
# (runnable: it wants the CPU; it sleeps in epoll_wait, state S, once a
# loop's turn is done, so it cannot have ticked in between), and its
# run_delay (/proc/PID/schedstat: time waiting for a CPU) over the window.
starve=$(python3 - "$starved" 8 <<'PY'
import sys, time
pid, end = sys.argv[1], time.monotonic() + float(sys.argv[2])
def state():
    with open("/proc/%s/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]
def run_delay():
    with open("/proc/%s/schedstat" % pid) as f:
        return int(f.read().split()[1])
rd0, since, longest = run_delay(), None, 0.0
while time.monotonic() < end:
    now = time.monotonic()
    if state() == "R":
        since = now if since is None else since
        longest = max(longest, now - since)
    else:
        since = None
    time.sleep(0.02)
print(int(longest * 1000), (run_delay() - rd0) // 1000000)
PY
)
t1=$(mono_ms)
# The worker out first: the hogs, throttled, take up to a period each to die.
echo "$starved" >"$(dirname "$CAGE")/cgroup.procs" || fail "cannot take worker $starved out of the cage"
stop_hogs
read -r runnable waited <<<"$starve"
check "the cage starved worker $starved: runnable ${runnable:-?} ms at a stretch (> 1,500: the judgement), ${waited:-?} ms waiting for a CPU" \
	test "${runnable:-0}" -gt 1500
stalls=$(grep 'event=worker_stalled' "$T/gw.log")
check "no starved worker reported stalled (${stalls:-none})" test -z "$stalls"
read -r n gap <<<"$(pings "$t0" "$t1")"
check "WATCHDOG=1 kept coming while it starved ($n pings in $((t1 - t0)) ms, largest gap $gap ms < $WD_MS)" \
	test "$gap" -lt "$WD_MS"
code=$(eas -o /dev/null -w '%{http_code}' -u user1:pw -X OPTIONS \
	"$(GWURL "/Microsoft-Server-ActiveSync?User=user1&DeviceId=Starved1&DeviceType=iPhone")")
check "the gateway answers after the starvation (HTTP $code)" test "$code" = 200

# 2. Stopped: the same worker, out of the cage, with SIGSTOP.
mark
kill -STOP "$starved"
stopped=$(mono_ms)
line=$(stalled "$starved" 5)
check "a stopped worker is reported stalled (${line#*event=})" test -n "$line"
sleep 1
read -r n gap <<<"$(pings "$((stopped + WD_MS / 2 + 1500))" "$(mono_ms)")"
check "...and no WATCHDOG=1 from WATCHDOG_USEC/2 + 1.5 s after the stop on ($n)" test "$n" = 0
kill -CONT "$starved"
resumed=$(mono_ms)
pings_resume "$resumed" || fail "no WATCHDOG=1 after the stopped worker went on"

# 3. Spinning: the other worker loops without ticking (state R, on a CPU).
spun=${workers[1]}
if [ "$(uname -m)" != x86_64 ]; then
	skip_part "$TNAME" "spinning worker: tests/spin_worker.py is x86-64 only"
	finish
fi
SPUN+=("$spun")
mark
python3 "$EG_ROOT/tests/spin_worker.py" "$spun" >"$T/spin.out" 2>&1 ||
	fail "cannot make worker $spun spin: $(cat "$T/spin.out")"
spin_at=$(mono_ms)
line=$(stalled "$spun" 8)
check "a spinning worker is reported stalled (${line#*event=})" test -n "$line"
state=$(sed 's/^.*) //' "/proc/$spun/stat" | cut -d' ' -f1)
check "...it was spinning (state $state)" test "$state" = R
sleep 1
read -r n gap <<<"$(pings "$((spin_at + 2500 + WD_MS / 2 + 1500))" "$(mono_ms)")"
check "...and the pings stop ($n after)" test "$n" = 0
# The master forks a new worker in its place.
kill -KILL "$spun"
killed=$(mono_ms)
pings_resume "$killed" || fail "no WATCHDOG=1 after the spinning worker was replaced"
sleep 2.5 # the new worker's loop ticks: its start's grace is over

# 4. Spinning in a cage: runnable and waiting for ever, judged at the cap.
spun=$(pgrep -P "$GW_PID" | grep -vx "$starved" | head -1)
SPUN+=("$spun")
hogs 3 || fail "cannot put the hogs into the cage"
mark
python3 "$EG_ROOT/tests/spin_worker.py" "$spun" >"$T/spin.out" 2>&1 ||
	fail "cannot make worker $spun spin: $(cat "$T/spin.out")"
cage_put "$spun" || fail "cannot put worker $spun into the cage"
line=$(stalled "$spun" 16)
check "a worker spinning in the cage is reported stalled (${line#*event=})" test -n "$line"
silent=$(field "$line" silent_ms)
check "...at the cap: silent_ms=${silent:-?} > 10,000" test "${silent:-0}" -gt 10000
stop_hogs
kill -KILL "$spun"
finish
