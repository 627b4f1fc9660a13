#!/usr/bin/env bash
# Who may use the control socket, and that nobody can stall it (issue #9):
#  1. a user whose ONLY link to the daemon's group is a supplementary group
#     runs easctl (as the README says); a primary-group member too; a user in
#     no group cannot even connect (socket file 0660), and when the file is
#     opened to everyone (0666) the daemon still refuses it (exit 4, logged);
#  2. clients that connect and send nothing, or half a request, delay
#     neither `easctl status` from another client (< 100 ms) nor the
#     systemd watchdog pings (no gap reaches WATCHDOG_USEC); they are dropped
#     after the request timeout;
#  3. a worker process (same uid as the master) is refused: gdb makes a real
#     worker connect and send `rules add ...`; the answer is error 4, the
#     rule does not exist, the refusal is logged with the worker's pid, and
#     the worker still serves phones afterwards.
source "$(dirname "$0")/lib.sh"
need python3 curl openssl setpriv gdb
need_root
make_pki
start_backend cas1 || finish

# The watchdog: pings every WATCHDOG_USEC/2 = 1 s, recorded with their time.
# systemd kills a service whose pings stop for WATCHDOG_USEC (2 s here): one
# silent client used to hold the master for 2 s, four of them for 8 s.
python3 "$EG_ROOT/tests/notify_listen.py" "$T/wd.sock" "$T/wd.jsonl" &
EG_PIDS+=($!)
for _ in $(seq 50); do [ -e "$T/wd.jsonl" ] && break; sleep 0.1; done
NOTIFY_SOCKET=$T/wd.sock WATCHDOG_USEC=2000000 start_gateway \
	--backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || fail "backend cas1 up"
SUID=$(stat -c %u "$CTL")
SGID=$(stat -c %g "$CTL")
check "the control socket is 0660, owned by the daemon's user and group ($SUID:$SGID)" \
	test "$(stat -c %a "$CTL")" = 660
OTHER=4242 # a uid in no group of the daemon (no account needed)
as_user() { # as_user SETPRIV-GROUP-OPTION... -- easctl args
	local opts=()
	while [ "$1" != -- ]; do opts+=("$1"); shift; done
	shift
	setpriv --reuid="$OTHER" "${opts[@]}" -- "$EASCTL" -s "$CTL" "$@"
}

# --- 1. groups ------------------------------------------------------------------------
out=$(as_user --regid="$OTHER" --groups="$SGID" -- status 2>&1)
rc=$?
check "uid $OTHER, primary group $OTHER, supplementary group $SGID: easctl status works (exit $rc)" \
	bash -c '[ $0 -eq 0 ] && grep -q "^pid " <<<"$1"' "$rc" "$out"
as_user --regid="$SGID" --clear-groups -- status >/dev/null 2>&1
rc=$?
check "uid $OTHER, primary group $SGID: works (exit $rc)" test "$rc" -eq 0
as_user --regid="$OTHER" --clear-groups -- status >/dev/null 2>&1
rc=$?
check "uid $OTHER in no group of the daemon: cannot connect to the 0660 socket (exit $rc = 5)" \
	test "$rc" -eq 5
chmod 0666 "$CTL"
mark=$(($(wc -l <"$T/gw.log") + 1))
out=$(as_user --regid="$OTHER" --clear-groups -- status 2>&1)
rc=$?
chmod 0660 "$CTL"
check "...with the socket file opened to everyone, the daemon refuses it itself (exit $rc = 4: $out)" \
	bash -c '[ $0 -eq 4 ] && grep -qi "permission denied" <<<"$1"' "$rc" "$out"
check "...and logs the refusal with the uid" \
	bash -c 'tail -n +"$0" "$1" | grep -q "event=control_denied .*uid=$2"' "$mark" "$T/gw.log" "$OTHER"

# --- 2. silent clients -------------------------------------------------------------------
# 3 clients that send nothing and one that sends half a request; each
# records how long until the daemon closed it (and what it said).
cat >"$T/silent.py" <<'PY'
import socket, sys, threading, time
path, out, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
res = []
start_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
def client(i, first):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    t0 = time.monotonic()
    if first:
        s.sendall(first)
    s.settimeout(hold)
    data = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
    except socket.timeout:
        data += b"<still open>"
    except OSError as e:
        data += b"<" + str(e).encode() + b">"
    res.append("%d %.0f %s" % (i, (time.monotonic() - t0) * 1000, data.decode(errors="replace").strip().replace("\n", " ")))
ts = [threading.Thread(target=client, args=(i, b"stat" if i == 3 else b"")) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
open(out, "w").write("\n".join(sorted(res)) + "\n")
open(out + ".window", "w").write("%d %d\n" % (start_us, time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000))
PY
python3 "$T/silent.py" "$CTL" "$T/silent.out" 8 &
SILENT=$!
EG_PIDS+=($SILENT)
sleep 0.3
# The daemon's answer time, from a client already running (an easctl
# process's own start-up, slow under ASan, is not the daemon's doing).
cat >"$T/status_ms.py" <<'PY'
import socket, sys, time
worst = 0
for _ in range(5):
    t0 = time.monotonic()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sys.argv[1])
    s.sendall(b"status\0\0")
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    if not data.startswith(b"ok\n") or b"\npid " not in b"\n" + data:
        sys.exit("bad answer: %r" % data[:80])
    worst = max(worst, (time.monotonic() - t0) * 1000)
    time.sleep(0.2)
print("%.0f" % worst)
PY
worst=$(python3 "$T/status_ms.py" "$CTL")
rc=$?
check "with 4 silent clients connected: status is answered at once (worst of 5: ${worst:-?} ms < 100)" \
	bash -c '[ $0 -eq 0 ] && [ "$1" -lt 100 ]' "$rc" "${worst:-999999}"
check "...and easctl status works meanwhile" timeout 10 "$EASCTL" -s "$CTL" status
wait "$SILENT"
rc=$?
check "the silent-client script ran (exit $rc)" test "$rc" -eq 0 -a -s "$T/silent.out"
sed 's/^/        /' "$T/silent.out"
closed=$(awk '$2 >= 1500 && $2 <= 5000 && $0 !~ /still open/' "$T/silent.out" | wc -l)
check "...each silent client was dropped after the request timeout (1.5-5 s): $closed/4" test "$closed" -eq 4
# The largest gap between pings while the silent clients were connected
# (the last ping before them and the first after them included).
cat >"$T/gap.py" <<'PY'
import json, sys
t0, t1 = map(int, open(sys.argv[2]).read().split())
ts = [e["mono_us"] for e in map(json.loads, open(sys.argv[1])) if e["fields"].get("WATCHDOG") == "1"]
before = [t for t in ts if t < t0][-1:]
after = [t for t in ts if t > t1][:1]
ts = before + [t for t in ts if t0 <= t <= t1] + after
print(max(b - a for a, b in zip(ts, ts[1:])) // 1000 if len(ts) >= 2 and after else -1)
PY
for _ in $(seq 100); do # until the first ping after the window has come
	gap=$(python3 "$T/gap.py" "$T/wd.jsonl" "$T/silent.out.window")
	[ "${gap:--1}" -ge 0 ] && break
	sleep 0.1
done
check "watchdog pings kept coming meanwhile (largest gap ${gap:-?} ms < WATCHDOG_USEC 2000 ms)" \
	test "${gap:--1}" -ge 0 -a "${gap:--1}" -lt 2000

# --- 3. a worker is refused ---------------------------------------------------------------
WPID=$(pgrep -P "$GW_PID" | head -1)
check "found a worker of the gateway (pid ${WPID:-none})" test -n "$WPID"
mark=$(($(wc -l <"$T/gw.log") + 1))
# The worker itself opens a UNIX socket, connects and sends
# "rules\0add\0block DeviceId is \"WORKERRULE\"\0\0", then reads the answer.
# The daemon may close before the writes end (EPIPE): the worker ignores
# SIGPIPE, but a traced process still reports it, and gdb must not stop (and
# detach) inside a called function for it.
timeout 60 gdb -q -batch -nx -p "$WPID" -ex 'handle SIGPIPE nostop noprint' -ex 'set unwindonsignal on' \
	-ex 'set $fd = (int) socket(1, 1, 0)' \
	-ex 'set $sa = (char *) calloc(1, 110)' \
	-ex 'set *(short *) $sa = 1' \
	-ex "call (char *) strcpy(\$sa + 2, \"$CTL\")" \
	-ex 'printf "connect=%d\n", ((int (*)(int, void *, unsigned)) connect)($fd, $sa, 110)' \
	-ex 'call (long) write($fd, "rules", sizeof("rules"))' \
	-ex 'call (long) write($fd, "add", sizeof("add"))' \
	-ex 'call (long) write($fd, "block DeviceId is \"WORKERRULE\"", sizeof("block DeviceId is \"WORKERRULE\""))' \
	-ex 'call (long) write($fd, "", 1)' \
	-ex 'set $buf = (char *) calloc(1, 4096)' \
	-ex 'call (long) read($fd, $buf, 4095)' \
	-ex 'printf "reply=%s\n", $buf' \
	-ex 'call (int) close($fd)' >"$T/gdb.out" 2>&1
check "gdb ran the connect inside worker $WPID (connect=0)" grep -q '^connect=0' "$T/gdb.out"
reply=$(sed -n 's/^reply=//p' "$T/gdb.out")
check "the worker's command is refused: '$reply'" bash -c '[[ "$0" == "error 4 "* ]]' "$reply"
check "...the rule it tried to add does not exist" \
	bash -c '! "$0" -s "$1" rules list | grep -q WORKERRULE' "$EASCTL" "$CTL"
check "...the refusal is logged with the worker's pid" \
	bash -c 'tail -n +"$0" "$1" | grep -q "event=control_denied pid=$2 "' "$mark" "$T/gw.log" "$WPID"
code=$(eas -o /dev/null -w '%{http_code}' -u alice:secret -X POST -H 'MS-ASProtocolVersion: 14.1' \
	--data-binary @/dev/null "$(GWURL '/Microsoft-Server-ActiveSync?Cmd=Sync&User=alice&DeviceId=CTLDEV1&DeviceType=iPhone')")
check "the gateway still serves phones ($code)" test "$code" = 200
check "...and the worker is still alive" kill -0 "$WPID"
finish
