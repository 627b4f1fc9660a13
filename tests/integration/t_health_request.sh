#!/usr/bin/env bash
# The health check's request, as the backend receives it, byte for byte, when
# every field it is built from is as long as the config allows (prefix 127,
# health path 255, sni 255 characters): "GET <prefix><path> HTTP/1.1" with
# Host: <sni>, nothing cut, nothing after the blank line; the backend is up.
# (The request used to be built in a 512-byte buffer and sent past its end.)
# Then a backend given with --backend and the same one in a file (name and
# address only) are checked alike: same request, same interval (--backend
# used to check every 1 s with a 1 s timeout, the file's backend every 2 s).
source "$(dirname "$0")/lib.sh"
need python3 curl openssl bc xxd
make_pki

# A plain backend that records each request's bytes (until the blank line,
# or what came within 1 s) as one hex line, and answers 200.
cat >"$T/recbe.py" <<'PY'
import socket, sys, threading, time
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
out = open(sys.argv[2], "a")
times = open(sys.argv[3], "a") if len(sys.argv) > 3 else None
lock = threading.Lock()
def serve(c):
    c.settimeout(1.0)
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            d = c.recv(65536)
            if not d:
                break
            data += d
    except OSError:
        pass
    with lock:
        out.write(data.hex() + "\n")
        out.flush()
        if times:
            times.write("%.3f\n" % time.monotonic())
            times.flush()
    try:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    except OSError:
        pass
    c.close()
open(sys.argv[1], "w").write(str(srv.getsockname()[1]))
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
python3 "$T/recbe.py" "$T/be.port" "$T/be.requests" >"$T/be.log" 2>&1 &
EG_PIDS+=($!)
for _ in $(seq 50); do [ -s "$T/be.port" ] && break; sleep 0.1; done
[ -s "$T/be.port" ] || { fail "recording backend did not start"; finish; }

long() { python3 -c 'import sys; print(sys.argv[1] + "x" * (int(sys.argv[2]) - len(sys.argv[1])))' "$@"; }
prefix=$(long /p 127)
hpath=$(long /health- 255)
sni=$(long sni. 255)
cat >"$T/gw.conf" <<EOF
backends = ( { name = "long"; address = "127.0.0.1:$(cat "$T/be.port")"; prefix = "$prefix";
  sni = "$sni"; health = { path = "$hpath"; interval = 0.3; rise = 1; fall = 1; }; } );
EOF
start_gateway -c "$T/gw.conf" || finish
for _ in $(seq 50); do [ -s "$T/be.requests" ] && break; sleep 0.1; done
want=$(printf 'GET %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: easgate-health\r\nConnection: close\r\n\r\n' \
	"$prefix" "$hpath" "$sni" | xxd -p | tr -d '\n')
got=$(head -1 "$T/be.requests")
check "the health request arrives whole: $((${#want} / 2)) bytes, exactly (got $((${#got} / 2)))" \
	test "$got" = "$want"
[ "$got" = "$want" ] || { echo "  got:"; xxd -r -p <<<"$got" | cat -v | head -c 1200; echo; }
check "...and so does every later one" bash -c '! grep -vqx "$0" "$1"' "$want" "$T/be.requests"
check "the backend is up" wait_backends_up long

# --- one backend, from --backend and from a file ------------------------------------
stop_gateway() {
	kill -TERM "$GW_PID" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$GW_PID" 2>/dev/null || return 0; sleep 0.1; done
	return 1
}
check "gateway stopped" stop_gateway
# recorder NAME: a recording backend; its port in $T/NAME.port, the requests
# in $T/NAME.requests, the time of each in $T/NAME.times.
recorder() {
	python3 "$T/recbe.py" "$T/$1.port" "$T/$1.requests" "$T/$1.times" >"$T/$1.log" 2>&1 &
	EG_PIDS+=($!)
	for _ in $(seq 50); do [ -s "$T/$1.port" ] && return 0; sleep 0.1; done
	return 1
}
check "recording backends start" bash -c "$(declare -f recorder); T=$T; recorder opt && recorder file"
# 7 s of checks each: three or four at the documented 2 s.
start_gateway --backend "cas1=127.0.0.1:$(cat "$T/opt.port")" || finish
sleep 7
check "gateway (--backend) stopped" stop_gateway
printf 'backends = ( { name = "cas1"; address = "127.0.0.1:%s"; } );\n' "$(cat "$T/file.port")" \
	>"$T/file.conf"
start_gateway -c "$T/file.conf" || finish
sleep 7
check "gateway (file) stopped" stop_gateway
req() { head -1 "$1" | xxd -r -p | head -1 | tr -d '\r'; }
r_opt=$(req "$T/opt.requests")
r_file=$(req "$T/file.requests")
check "the same request: '$r_opt' (--backend), '$r_file' (file)" \
	test -n "$r_opt" -a "$r_opt" = "$r_file"
# The median gap between checks: the interval.
gap() { awk 'NR > 1 {print $1 - p} {p = $1}' "$1" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)] + 0}'; }
g_opt=$(gap "$T/opt.times")
g_file=$(gap "$T/file.times")
check "the same interval: ${g_opt} s (--backend), ${g_file} s (file); 2 s +- 0.3 each" \
	bash -c 'for g; do [ "$(echo "$g >= 1.7 && $g <= 2.3" | bc)" = 1 ] || exit 1; done' _ "$g_opt" "$g_file"
finish
