#!/usr/bin/env bash
# Connections per source address (limits.max_connections_per_source), counted
# across the worker processes. Loopback: 127.0.0.1 is the greedy source,
# 127.0.0.2 a phone elsewhere, 127.0.0.3 an exempt prefix
# (limits.per_source_exempt); every client is real TLS (slowpeer.py, curl).
#  1. cap 20: of 30 connections from one address 20 are held, 10 closed at
#     accept (before any TLS), and the 20 sit on both workers;
#  2. meanwhile a phone from another address syncs, the exempt address holds
#     30, and the plain listener (its peer is a load balancer carrying many
#     phones) takes 30 from the capped address;
#  3. the capped address gets its room back as its connections close;
#  4. a worker killed with SIGKILL takes its connections' counts with it:
#     the source may open that many again at once;
#  5. metrics and log say what was refused.
source "$(dirname "$0")/lib.sh"
need python3 curl jq ss
make_pki
PEER=$EG_ROOT/tests/integration/slow/slowpeer.py
EAS=/Microsoft-Server-ActiveSync

start_backend cas1 || finish
GW_PORT=$(free_port)
PP=$(free_port)
cat >"$T/gw.conf" <<EOF
listen = [ "127.0.0.1:$GW_PORT", "http://127.0.0.1:$PP" ];
timeouts = { request_head = 60; };
limits = { max_connections_per_source = 20; per_source_exempt = [ "127.0.0.3/32", "2001:db8::/32" ]; };
EOF
GW_CONFIG_LISTEN=1 start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || fail "backend cas1 up"

# hold NAME SOURCE COUNT [slowpeer args]: COUNT idle connections held in the
# background until `release NAME`; waits until they are set up.
declare -A HOLDER
hold() {
	local name=$1 src=$2 n=$3; shift 3
	rm -f "$T/$name.ready"
	python3 "$PEER" --port "$GW_PORT" --tls --cafile "$PKI/root.pem" --mode idle --source "$src" \
		--count "$n" --parallel 5 --hold 120 --ready-file "$T/$name.ready" "$@" >"$T/$name.json" &
	HOLDER[$name]=$!
	EG_PIDS+=($!)
	for _ in $(seq 200); do [ -s "$T/$name.ready" ] && return 0; sleep 0.1; done
	return 1
}
release() {
	kill -USR1 "${HOLDER[$1]}" 2>/dev/null
	wait "${HOLDER[$1]}"
}
# Established connections on the TLS port from SOURCE, per easgated pid.
held_by_pid() {
	ss -Htnp state established "( sport = :$GW_PORT )" dst "$1" |
		grep -o 'pid=[0-9]*' | sort | uniq -c | awk '{print $2 "=" $1}' | xargs
}
held() { ss -Htn state established "( sport = :$GW_PORT )" dst "$1" | wc -l; }
sync_from() {
	curl -sS --cacert "$PKI/root.pem" --max-time 10 --interface "$1" -u bob:secret \
		-H 'MS-ASProtocolVersion: 14.1' -X POST --data-binary '' -o /dev/null -w '%{http_code}' \
		"https://127.0.0.1:$GW_PORT$EAS?Cmd=Sync&User=bob&DeviceId=GOODPHONE2&DeviceType=iPhone"
}

# ---- 1. the cap --------------------------------------------------------------------
hold greedy 127.0.0.1 30 || fail "greedy holder set up"
n=$(cat "$T/greedy.ready")
check "cap 20: 20 of 30 connections from 127.0.0.1 held ($n)" test "$n" = 20
check "...20 established on the gateway's side ($(held 127.0.0.1))" test "$(held 127.0.0.1)" = 20
pids=$(held_by_pid 127.0.0.1)
check "...spread over both workers, counted together ($pids)" test "$(wc -w <<<"$pids")" = 2

# ---- 2. others are not punished ------------------------------------------------------
code=$(sync_from 127.0.0.2)
check "a phone from 127.0.0.2 syncs meanwhile (HTTP $code)" test "$code" = 200
hold exempt 127.0.0.3 30 || fail "exempt holder set up"
check "the exempt 127.0.0.3/32 holds all 30 ($(cat "$T/exempt.ready"))" test "$(cat "$T/exempt.ready")" = 30
release exempt
python3 "$PEER" --port "$PP" --mode idle --source 127.0.0.1 --count 30 --hold 2 >"$T/plain.json"
check "the plain listener (a load balancer's connections) takes 30 more from 127.0.0.1" \
	jqe '.opened == 30 and .closed == 0' <"$T/plain.json"

# ---- 3. room comes back ----------------------------------------------------------------
release greedy
for _ in $(seq 50); do [ "$(held 127.0.0.1)" = 0 ] && break; sleep 0.1; done
hold greedy2 127.0.0.1 25 || fail "second holder set up"
check "after they closed, 127.0.0.1 holds 20 again ($(cat "$T/greedy2.ready") of 25)" \
	test "$(cat "$T/greedy2.ready")" = 20

# ---- 4. a worker dies: its connections stop counting ---------------------------------------
victim=$(held_by_pid 127.0.0.1 | tr ' ' '\n' | head -1)
vpid=${victim#pid=}
vpid=${vpid%%=*}
lost=${victim##*=}
kill -KILL "$vpid"
for _ in $(seq 50); do [ "$(held 127.0.0.1)" = $((20 - lost)) ] && break; sleep 0.1; done
left=$(held 127.0.0.1)
check "SIGKILL of worker $vpid closed its $lost connections ($left left)" test "$left" = $((20 - lost))
# The master respawns the worker; new connections may take the dead ones' room.
for _ in $(seq 100); do "$EASCTL" -s "$CTL" status | grep -q '^workers 2' && [ "$(sync_from 127.0.0.2)" = 200 ] && break; sleep 0.1; done
hold greedy3 127.0.0.1 25 || fail "third holder set up"
check "...and 127.0.0.1 may open $lost again at once ($(cat "$T/greedy3.ready") of 25)" \
	test "$(cat "$T/greedy3.ready")" = "$lost"
release greedy3
release greedy2

# ---- 5. what an operator sees --------------------------------------------------------------
r=$("$EASCTL" -s "$CTL" metrics | awk '/^easgate_source_cap_refused_total/ {print $2}')
check "metric easgate_source_cap_refused_total counts the refusals ($r >= 10 + 5 + $((25 - lost)))" \
	test "${r:-0}" -ge $((10 + 5 + 25 - lost))
check "log: event=source_cap_refused names the address and the cap" \
	grep -q 'event=source_cap_refused client=127.0.0.1 conns=20 cap=20' "$T/gw.log"
finish
