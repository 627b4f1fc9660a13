#!/usr/bin/env bash
# Backends over HTTPS, verified against a configured CA: requests reach an
# HTTPS backend (its name checked by SNI); a backend whose certificate the
# configured CA did not sign is never trusted (502 to the phone, and the
# health check marks it down); verify = false is an explicit opt-out.
source "$(dirname "$0")/lib.sh"
need python3 curl openssl
make_pki
"$EG_ROOT/tools/mkcerts.sh" "$T/bepki" backend.example.test 127.0.0.1 >/dev/null
"$EG_ROOT/tools/mkcerts.sh" "$T/rogue" backend.example.test 127.0.0.1 >/dev/null

# A small HTTPS EAS backend: answers 200 with X-Backend and the request's
# path, 403 on the health path without credentials (alive for the checker).
cat >"$T/tlsbe.py" <<'PY'
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self, code):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        body = b"ok"
        self.send_response(code)
        self.send_header("X-Backend", sys.argv[2])
        self.send_header("X-Seen-Proto", self.headers.get("X-Forwarded-Proto", ""))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self): self.answer(200)
    def do_OPTIONS(self): self.answer(200)
    def do_GET(self): self.answer(403)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1] + "/server.pem", sys.argv[1] + "/server.key")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(sys.argv[3], "w").write(str(srv.server_address[1]))
srv.serve_forever()
PY
start_tls_backend() { # $1 = pki dir, $2 = name
	python3 "$T/tlsbe.py" "$1" "$2" "$T/$2.port" >"$T/be-$2.log" 2>&1 &
	EG_PIDS+=($!)
	for _ in $(seq 50); do [ -s "$T/$2.port" ] && break; sleep 0.1; done
	cat "$T/$2.port"
}
good=$(start_tls_backend "$T/bepki" good)
rogue=$(start_tls_backend "$T/rogue" rogue)
cat >"$T/gw.conf" <<EOF
backends = (
  { name = "good"; address = "127.0.0.1:$good"; tls = true; ca = "$T/bepki/root.pem";
    sni = "backend.example.test"; health = { path = "/health"; interval = 0.5; rise = 1; fall = 1; }; }
);
EOF
start_gateway -c "$T/gw.conf" || finish
wait_backends_up good || fail "HTTPS backend up"
url() { GWURL '/Microsoft-Server-ActiveSync?Cmd=Sync&User=alice&DeviceId=TLSBE1&DeviceType=iPhone'; }
out=$(eas -i -u alice:secret -H 'MS-ASProtocolVersion: 14.1' --data-binary x "$(url)")
check "a request reaches the HTTPS backend (verified with the configured CA)" \
	grep -q "^X-Backend: good" <<<"$out"
check "...and the backend sees X-Forwarded-Proto: https" grep -q "^X-Seen-Proto: https" <<<"$out"
kill "$GW_PID"; wait "$GW_PID" 2>/dev/null

# A backend with a certificate from another CA: refused, never trusted.
cat >"$T/gw2.conf" <<EOF
backends = (
  { name = "rogue"; address = "127.0.0.1:$rogue"; tls = true; ca = "$T/bepki/root.pem";
    sni = "backend.example.test"; health = { path = "/health"; interval = 0.5; rise = 1; fall = 1; }; }
);
EOF
unset GW_PORT
start_gateway -c "$T/gw2.conf" || finish
sleep 1.5
check "the health check marks the untrusted backend down" \
	bash -c "'$EASCTL' -s '$CTL' backends | awk '\$1==\"rogue\" {print \$3}' | grep -qx down"
code=$(eas -o /dev/null -w '%{http_code}' -u alice:secret --data-binary x "$(url)")
check "a phone's request is not sent to it: 502/503 ($code)" bash -c "[ $code = 502 ] || [ $code = 503 ]"
check "the log says why (certificate verify failed)" grep -qi "certificate verify failed" "$T/gw.log"
kill "$GW_PID"; wait "$GW_PID" 2>/dev/null

# verify = false: the explicit opt-out (e.g. a lab backend), still TLS.
sed -e 's/sni = "backend.example.test";/sni = "backend.example.test"; verify = false;/' "$T/gw2.conf" >"$T/gw3.conf"
unset GW_PORT
start_gateway -c "$T/gw3.conf" || finish
wait_backends_up rogue || fail "rogue backend up with verify = false"
out=$(eas -i -u alice:secret --data-binary x "$(url)")
check "verify = false reaches the backend anyway (TLS, unverified)" grep -q "^X-Backend: rogue" <<<"$out"
finish
