#!/usr/bin/env bash
# The SK_REUSEPORT program (bpf/reuseport.bpf.c) wired into the daemon: the
# master attaches it to each listen address's reuseport group and registers
# every worker slot's socket; workers publish accepting/load in the pinned
# `workers` map. Gateway netns as in t_xdp.sh (tests/integration/xdp/netns.sh),
# 2 workers, Ping long-polls held 60 s by the demo backend.
#  1. bpftool: both slots accepting right after start.
#  2. Load follows what the daemon knows: 12 long-polls opened one by one
#     end up 6/6 (ss shows who holds them; the map's loads agree); after 4 of
#     worker A's are closed, the next 4 ALL go to A (a blind hash would do
#     that once in 16, and 6/6 about once in 4).
#  2b. A burst of 64 connections opened at once (before either worker has
#     accepted one) ends split within one over the 2 workers, 3 times.
#  2c. 10 bare SYNs (placed, never accepted): counted, then forgotten.
#  3. Reloads under load (tests/loadgen/eas_load.py: keep-alive Syncs and
#     long-polls): no connection refused, none reset; afterwards both slots
#     accepting again, owned by the new workers. (A request racing the drain's
#     close of an idle keep-alive connection is t_reload.sh's business: here
#     such "eof" failures are printed, not asserted.)
#  4. A crashed worker: its slot is taken over by the respawned worker.
#  5. SIGTERM: every slot announced not accepting while draining.
# Root only; skipped while the daemon does not wire the program yet.
source "$(dirname "$0")/lib.sh"
need_root
need bpftool jq nsenter ip python3 curl ss
grep -q "event=reuseport_attached" "$EASGATED" ||
	skip "this easgated does not attach the SK_REUSEPORT program (master.c wiring pending)"
source "$EG_ROOT/tests/integration/xdp/netns.sh"
trap 'cleanup; xn_down' EXIT
LOAD=$EG_ROOT/tests/loadgen/eas_load.py

make_pki gw.xdp.test "$XN_GW_IP"
xn_up || { fail "network namespaces and veth pair"; finish; }
xn_backend cas1 --hold-ping-ms 60000 || finish
XN_CONF_EXTRA='access_log = false; timeouts = { drain = 20; };' xn_gateway_conf "$BE_PORT_cas1" ''
xn_gateway || finish
wait_backends_up cas1 || fail "backend cas1 up"

slot() { # slot N -> "accepting load" from the pinned map, as bpftool prints it
	bpftool map lookup pinned "$XN_PIN/workers" key "$1" 0 0 0 -j |
		jq -r '.formatted.value | "\(.accepting) \(.load)"'
}
wait_slots() { # wait_slots "A0 L0" "A1 L1" (up to 5 s)
	for _ in $(seq 50); do
		[ "$(slot 0)" = "$1" ] && [ "$(slot 1)" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
queued() { # connections placed on slot N by the program, not accepted yet
	bpftool map lookup pinned "$XN_PIN/workers" key "$1" 0 0 0 -j | jq -r '.formatted.value.queued'
}
total_load() { echo $(($(slot 0 | cut -d' ' -f2) + $(slot 1 | cut -d' ' -f2))); }
# The worker (pid) holding the gateway side of the phone's connection from port $1.
holder() {
	in_gw ss -Htnp state established "( sport = :443 and dport = :$1 )" |
		sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1
}

# ---- 1. wired ----------------------------------------------------------------------------
check "log: the program is attached to the listen address's group" \
	grep -q "event=reuseport_attached addr=$XN_GW_IP:443 group=0" "$T/gw.log"
check "bpftool workers: both slots accepting, idle (${GW_WORKERS:-2} workers)" wait_slots "1 0" "1 0"

# ---- 2. placement by load -------------------------------------------------------------------
declare -A LP_PID
open_lp() { # open_lp PORT: a Ping long-poll from that source port
	nsenter --net="/var/run/netns/$XN_PHONE" curl -sS --cacert "$PKI/root.pem" --max-time 90 \
		--local-port "$1" -u "lp$1:secret" -H 'MS-ASProtocolVersion: 14.1' -X POST --data-binary '' \
		"https://$XN_GW_IP/Microsoft-Server-ActiveSync?Cmd=Ping&User=lp$1&DeviceId=LP$1&DeviceType=iPhone" \
		-o /dev/null -w '%{http_code}\n' >"$T/lp-$1.out" 2>&1 &
	LP_PID[$1]=$!
	EG_PIDS+=("$!")
}
wait_total() { for _ in $(seq 50); do [ "$(total_load)" -eq "$1" ] && return 0; sleep 0.1; done; return 1; }
n=0
for p in $(seq 41001 41012); do
	open_lp "$p"
	n=$((n + 1))
	wait_total "$n" || { fail "long-poll from port $p not counted (loads: $(slot 0) / $(slot 1))"; break; }
done
declare -A BY
for p in $(seq 41001 41012); do
	h=$(holder "$p")
	BY[$h]="${BY[$h]:-} $p"
done
pids=("${!BY[@]}")
counts=""
for h in "${pids[@]}"; do counts+="$(wc -w <<<"${BY[$h]}") "; done
check "12 long-polls opened one by one: 6/6 over the 2 workers (ss: ${counts% })" \
	test "${#pids[@]}" -eq 2 -a "${counts% }" = "6 6"
check "...and the map's loads say the same" wait_slots "1 6" "1 6"
wpid=${pids[0]}
read -r -a close4 <<<"${BY[$wpid]}"
for p in "${close4[@]:0:4}"; do kill "${LP_PID[$p]}"; done
n=$((n - 4))
check "4 of worker $wpid's long-polls closed: loads 2 and 6" wait_total "$n"
for p in $(seq 41013 41016); do
	open_lp "$p"
	n=$((n + 1))
	wait_total "$n" || fail "long-poll from port $p not counted (loads: $(slot 0) / $(slot 1))"
done
got=""
for p in $(seq 41013 41016); do got+="$(holder "$p") "; done
check "the next 4 all went to the less loaded worker $wpid (got: ${got% })" \
	test "${got% }" = "$wpid $wpid $wpid $wpid"
for p in "${!LP_PID[@]}"; do kill "${LP_PID[$p]}" 2>/dev/null; done
wait_total 0 || fail "long-polls not closed"

# ---- 2b. a burst of connections -------------------------------------------------------------
# 64 TCP connections opened at once, no byte sent (what wrk's 64 connects do):
# all are placed before either worker has accepted one, so only the
# program's count of its own placements can split them evenly. Three bursts;
# each must end within one of even (the flow hash alone: 32/32 ~10% of the time).
burst_open() { # burst_open TAG: 64 connects from the phone, held until $T/TAG.stop
	nsenter --net="/var/run/netns/$XN_PHONE" python3 - "$XN_GW_IP" "$T/$1" <<'PY' &
import select, socket, sys, os, time
host, tag = sys.argv[1], sys.argv[2]
socks = []
for _ in range(64):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex((host, 443))
    socks.append(s)
pending = set(socks)
deadline = time.time() + 20
while pending and time.time() < deadline:
    _, w, _ = select.select([], list(pending), [], 1)
    for s in w:
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
            sys.exit("connect failed")
        pending.discard(s)
if pending:
    sys.exit("%d connects pending" % len(pending))
open(tag + ".ready", "w").close()
while not os.path.exists(tag + ".stop") and time.time() < deadline + 30:
    time.sleep(0.05)
PY
	BURST_PID=$!
	EG_PIDS+=("$BURST_PID")
}
held_by_worker() { # per-worker counts of accepted connections to :443, sorted ("31 33")
	in_gw ss -Htnp state established "( sport = :443 )" |
		sed -n 's/.*pid=\([0-9]*\).*/\1/p' | sort | uniq -c | awk '{print $1}' | sort -n | xargs
}
for b in 1 2 3; do
	burst_open "burst$b"
	for _ in $(seq 100); do [ -e "$T/burst$b.ready" ] && break; sleep 0.1; done
	split=""
	for _ in $(seq 100); do
		split=$(held_by_worker)
		[ $(($(tr ' ' '+' <<<"${split:-0}"))) -eq 64 ] && break
		sleep 0.1
	done
	read -r lo hi <<<"$split"
	check "burst $b: 64 connections opened at once, split within one over 2 workers (got: $split)" \
		test -e "$T/burst$b.ready" -a "$((${lo:-0} + ${hi:-0}))" -eq 64 -a "$((${hi:-0} - ${lo:-0}))" -le 1
	touch "$T/burst$b.stop"
	wait "$BURST_PID"
	rc=$?
	check "burst $b: the client opened and held all 64 (exit $rc)" test "$rc" -eq 0
	wait_total 0 || fail "burst $b: connections not closed (loads: $(slot 0) / $(slot 1))"
	check "burst $b: every placement was accepted: nothing left queued ($(queued 0) / $(queued 1))" \
		test "$(queued 0) $(queued 1)" = "0 0"
done

# ---- 2c. placements never accepted ----------------------------------------------------------
# 10 bare SYNs from a raw socket: each is placed (and counted) but the phone's
# kernel answers the SYN-ACK with a RST, so no connection is ever accepted.
# The workers must forget them (within 2 ticks), or each slot would look busier
# for good. Seen rising first, so this cannot pass by counting nothing.
nsenter --net="/var/run/netns/$XN_PHONE" python3 - "$EG_ROOT/tests/integration/xdp" "$XN_PHONE_IP" "$XN_GW_IP" <<'PY'
import socket, sys
sys.path.insert(0, sys.argv[1])
from tcpseg import tcp_header  # noqa: E402
src, dst = sys.argv[2], sys.argv[3]
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for sport in range(42001, 42011):
    r.sendto(tcp_header(src, dst, sport, 443, 1000 + sport, 0, 0x02, 64240), (dst, 0))
PY
rc=$?
check "10 bare SYNs sent (exit $rc)" test "$rc" -eq 0
peak=0 now=""
for _ in $(seq 60); do
	now=$(($(queued 0) + $(queued 1)))
	[ "$now" -gt "$peak" ] && peak=$now
	[ "$peak" -gt 0 ] && [ "$now" -eq 0 ] && break
	sleep 0.1
done
check "the 10 unaccepted placements were counted (peak $peak) and then forgotten (now $now)" \
	test "$peak" -eq 10 -a "$now" -eq 0

# ---- 3. reloads under load ------------------------------------------------------------------
# New connections keep arriving (each client reconnects after a close) while
# 4 reloads swap the workers; the stop file is set before a 5th reload, whose
# drain answers the long-polls still held, so the load ends promptly.
nsenter --net="/var/run/netns/$XN_PHONE" python3 "$LOAD" --host "$XN_GW_IP" --sni gw.xdp.test --port 443 \
	--cafile "$PKI/root.pem" --conns 8 --pollers 6 --gap-ms 0,5 --duration 60 --stop-file "$T/stop" \
	--ready-file "$T/load.ready" >"$T/load.json" 2>"$T/load.err" &
LOAD_PID=$!
EG_PIDS+=("$LOAD_PID")
for _ in $(seq 50); do [ -e "$T/load.ready" ] && break; sleep 0.1; done
sleep 1
# Each SIGHUP waits for its reload: signals sent while one is still running
# would merge (seen on a slow, emulated CPU: 4 reloads for 5 signals).
reloaded() {
	for _ in $(seq 300); do
		[ "$(grep -c 'event=reloaded' "$T/gw.log")" -ge "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
for i in 1 2 3 4; do
	kill -HUP "$GW_PID"
	reloaded "$i" || fail "reload $i not logged within 30 s"
	sleep 0.8
done
touch "$T/stop"
kill -HUP "$GW_PID"
reloaded 5 || fail "reload 5 not logged within 30 s"
wait "$LOAD_PID"
vars=$(python3 - "$T/load.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k in ["failures", "failure_connect", "failure_reset", "failure_tls_error", "failure_eof",
          "failure_timeout", "idle_reset", "ok_Sync", "ok_Ping", "sent_Sync", "sent_Ping",
          "connections"]:
    print("L_%s=%d" % (k, d.get(k, 0)))
print("L_first='%s'" % json.dumps(d.get("first_failures", [])[:2]).replace("'", ""))
PY
)
rc=$?
# Without the summary every check below would read unset variables.
check "the load's summary is readable (exit $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || finish
eval "$vars"
echo "  load: $L_ok_Sync Syncs and $L_ok_Ping long-polls answered over $L_connections connections;" \
	"failures: $L_failures (eof $L_failure_eof, timeout $L_failure_timeout)"
check "5 reloads under load: no connection refused ($L_failure_connect), none reset on connect or in flight ($L_failure_reset)" \
	test "$L_failure_connect" -eq 0 -a "$L_failure_reset" -eq 0
check "...no TLS handshake cut ($L_failure_tls_error), no idle connection reset ($L_idle_reset)" \
	test "$L_failure_tls_error" -eq 0 -a "$L_idle_reset" -eq 0
check "...and the load did run ($L_ok_Sync Syncs, $L_ok_Ping long-polls)" test "$L_ok_Sync" -gt 100 -a "$L_ok_Ping" -gt 0
check "log: 5 reloads" test "$(grep -c 'event=reloaded' "$T/gw.log")" -eq 5
check "after the reloads both slots accept again" wait_slots "1 0" "1 0"

# ---- 4. a crashed worker --------------------------------------------------------------------
victim=$(pgrep -P "$GW_PID" | head -1)
kill -KILL "$victim"
for _ in $(seq 50); do [ "$(pgrep -c -P "$GW_PID")" -eq 2 ] && ! pgrep -P "$GW_PID" | grep -qx "$victim" && break; sleep 0.1; done
check "a killed worker is respawned and its slot accepts again" wait_slots "1 0" "1 0"
ok=0
for _ in $(seq 10); do
	in_phone curl -s -o /dev/null --max-time 5 --cacert "$PKI/root.pem" "https://$XN_GW_IP/" && ok=$((ok + 1))
done
check "new connections are all served after the respawn ($ok/10)" test "$ok" -eq 10

# ---- 5. shutdown ----------------------------------------------------------------------------
check "SIGTERM: the daemon stops" xn_stop_gateway
check "the pinned map says no slot accepts any more" test "$(slot 0 | cut -d' ' -f1) $(slot 1 | cut -d' ' -f1)" = "0 0"
finish
