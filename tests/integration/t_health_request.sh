#!/usr/bin/env bash
# The health check's request, as the backend receives it, byte for byte, when
# every field it is built from is as long as the config allows (prefix 127,
# health path 255, sni 255 characters): "GET <prefix><path> HTTP/1.1" with
# Host: <sni>, nothing cut, nothing after the blank line; the backend is up.
# (The request used to be built in a 512-byte buffer and sent past its end.)
source "$(dirname "$0")/lib.sh"
need python3 curl openssl
make_pki

# A plain backend that records each request's bytes (until the blank line,
# or what came within 1 s) as one hex line, and answers 200.
cat >"$T/recbe.py" <<'PY'
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
out = open(sys.argv[2], "a")
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
finish
