#!/usr/bin/env bash
# Slow clients are bounded in time (slowpeer.py, real TLS, the demo backend):
#  - a request body trickling one byte every 0.5 s is cut off at the end of
#    its first rate window (timeouts.request_body = 2 s here, at least
#    limits.min_body_rate = 6000 bytes/s over each window), and the backend
#    connection it held is released;
#  - a response read at 4 KiB/s through a 4 KiB receive buffer is cut off by
#    the silence timer (timeouts.request_body) once the socket buffers are
#    full: the kernel reports the socket writable only after a third of its
#    send buffer drained, so a slow reader is silent for whole windows;
#  - a connection that completes its TLS handshake and sends nothing is
#    closed after timeouts.request_head (3 s), not after timeouts.idle (30 s):
#    the wait for a first request is a head's wait;
#  - a head trickling one byte every 0.5 s gets 408 after request_head;
#  - a slow but honest upload (64 KiB at 16 KiB/s, two windows) is answered 200.
source "$(dirname "$0")/lib.sh"
need python3 curl jq
make_pki
PEER=$EG_ROOT/tests/integration/slow/slowpeer.py

start_backend cas1 || finish
cat >"$T/gw.conf" <<'EOF'
timeouts = { request_body = 2; request_head = 3; idle = 30; };
limits = { min_body_rate = 6000; };
EOF
start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || fail "backend cas1 up"

peer() { python3 "$PEER" --port "$GW_PORT" --tls --cafile "$PKI/root.pem" "$@"; }
be_conns() { "$EASCTL" -s "$CTL" backends | awk '$1 == "cas1" {print $4}'; }
# jq test on a JSON line; prints the line when it fails
jqt() {
	local in=$1; shift
	jqe "$@" >/dev/null <<<"$in" || { echo "    got: $in"; return 1; }
}
wait_be_conns() { # N: up to 5 s for the backend connection gauge to reach N
	for _ in $(seq 50); do [ "$(be_conns)" = "$1" ] && return 0; sleep 0.1; done
	return 1
}

# All five at once (each on its own connection), so the test takes ~10 s.
peer --mode body --clen 100000 --interval 0.5 --hold 8 >"$T/body.json" &
p_body=$!
peer --mode read --clen 268435456 --chunk 1024 --interval 0.25 --hold 8 >"$T/read.json" &
p_read=$!
peer --mode idle --hold 8 >"$T/idle.json" &
p_idle=$!
peer --mode head --interval 0.5 --hold 8 >"$T/head.json" &
p_head=$!
peer --mode upload --clen 65536 --rate 16384 --hold 12 >"$T/upload.json" &
p_up=$!
n=0
for _ in $(seq 30); do n=$(be_conns) && [ "${n:-0}" -ge 3 ] && break; sleep 0.1; done
check "while they run: the trickling body, the slow reader and the upload hold backend connections ($n)" \
	test "${n:-0}" -ge 3
wait "$p_body" "$p_read" "$p_idle" "$p_head" "$p_up"

b=$(cat "$T/body.json")
check "trickling body: cut off by the rate window (closed after $(jq -c .closed_after_s <<<"$b") s)" \
	jqt "$b" '.opened == 1 and .closed == 1 and .closed_after_s.max <= 5'
# The slow reader cannot see the close before it has read what the kernel
# buffered: the gateway's side tells (log, access line, backend gauge).
r=$(cat "$T/read.json")
check "slow reader: got its 200 and was reading" jqt "$r" '.opened == 1 and .statuses["200"] == 1'
dur=$(grep 'event=access .*egtest_size\|event=access .*bytes_out=[0-9]\{7,\}' "$T/gw.log" | sed -n 's/.* dur_ms=\([0-9]*\).*/\1/p' | head -1)
check "slow reader: its request ended by the gateway within 7 s (${dur:-none} ms)" test "${dur:-99999}" -le 7000
i=$(cat "$T/idle.json")
check "silent after the handshake: closed after request_head ($(jq -c .closed_after_s <<<"$i") s), not idle" \
	jqt "$i" '.opened == 1 and .closed == 1 and .closed_after_s.max >= 2 and .closed_after_s.max <= 4.5'
h=$(cat "$T/head.json")
check "trickling head: 408 and closed after request_head ($(jq -c .closed_after_s <<<"$h") s)" \
	jqt "$h" '.opened == 1 and .closed == 1 and .closed_after_s.max <= 4.5 and .statuses["408"] == 1'
u=$(cat "$T/upload.json")
check "slow honest upload (64 KiB at 16 KiB/s) answered 200" \
	jqt "$u" '.opened == 1 and .statuses["200"] == 1 and .closed == 0'
check "every backend connection released (gauge back to 0)" wait_be_conns 0
check "log: the cut-offs say why" \
	grep -q 'event=timeout phase=request_body reason=min_rate' "$T/gw.log"
finish
