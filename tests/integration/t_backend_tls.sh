#!/usr/bin/env bash
# Backends over HTTPS, verified against a configured CA: requests reach an
# HTTPS backend (its name checked by SNI); a backend whose certificate the
# configured CA did not sign is never trusted (502 to the phone, and the
# health check marks it down); verify = false is an explicit opt-out.
# Without sni, the certificate must name the backend's address (IP SAN): a
# certificate from the same CA for another name or address is refused, by
# the relay and by the health check alike (issue #9).
source "$(dirname "$0")/lib.sh"
need python3 curl openssl
make_pki
"$EG_ROOT/tools/mkcerts.sh" "$T/bepki" backend.example.test 127.0.0.1 >/dev/null
"$EG_ROOT/tools/mkcerts.sh" "$T/rogue" backend.example.test 127.0.0.1 >/dev/null

# A small HTTPS EAS backend: answers 200 with X-Backend and the request's
# path, 403 on the health path without credentials (alive for the checker).
cat >"$T/tlsbe.py" <<'PY'
import http.server, socket, ssl, sys
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
    def log_message(self, fmt, *a): # one line per request: "POST /path"
        sys.stderr.write("%s %s\n" % (self.command, self.path)); sys.stderr.flush()
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in sys.argv[4] else socket.AF_INET
srv = S((sys.argv[4], 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1] + "/server.pem", sys.argv[1] + "/server.key")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(sys.argv[3], "w").write(str(srv.server_address[1]))
srv.serve_forever()
PY
# start_tls_backend PKI NAME [ADDRESS]: sets the variable NAME to its port.
# (Not in a $(...): the pid must reach EG_PIDS, or cleanup misses it.)
start_tls_backend() {
	python3 "$T/tlsbe.py" "$1" "$2" "$T/$2.port" "${3:-127.0.0.1}" >"$T/be-$2.log" 2>&1 &
	EG_PIDS+=($!)
	for _ in $(seq 50); do [ -s "$T/$2.port" ] && break; sleep 0.1; done
	printf -v "$2" '%s' "$(cat "$T/$2.port")"
}
start_tls_backend "$T/bepki" good
start_tls_backend "$T/rogue" rogue
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
kill "$GW_PID"; wait "$GW_PID" 2>/dev/null

# --- verify = true and no sni: the backend's address is what is verified ---------
# Leaves from the SAME CA as the good backend's, for other names/addresses.
MKCERTS_CA=$T/bepki "$EG_ROOT/tools/mkcerts.sh" "$T/other" other.example.test 127.0.0.2 >/dev/null
MKCERTS_CA=$T/bepki "$EG_ROOT/tools/mkcerts.sh" "$T/dnsonly" backend.example.test >/dev/null
MKCERTS_CA=$T/bepki "$EG_ROOT/tools/mkcerts.sh" "$T/wrongname" other.example.test 127.0.0.1 >/dev/null
MKCERTS_CA=$T/bepki "$EG_ROOT/tools/mkcerts.sh" "$T/v6" backend.example.test ::1 >/dev/null
start_tls_backend "$T/other" other
start_tls_backend "$T/dnsonly" dnsonly
start_tls_backend "$T/wrongname" wrongname
start_tls_backend "$T/v6" v6 ::1
# one_backend NAME ADDRESS EXTRA: (re)start the gateway with that backend only.
one_backend() {
	kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
	unset GW_PORT
	cat >"$T/gw-$1.conf" <<EOF2
backends = ( { name = "$1"; address = "$2"; tls = true; ca = "$T/bepki/root.pem"; $3 } );
EOF2
	LOGMARK=$(($(wc -l <"$T/gw.log") + 1))
	start_gateway -c "$T/gw-$1.conf"
}
HEALTH='health = { path = "/health"; interval = 0.3; rise = 1; fall = 1; };'
state_of() { "$EASCTL" -s "$CTL" backends | awk -v b="$1" '$1==b {print $3}'; }
# wait_down NAME: the health check marks it down (at most 5 s), then stays down.
wait_down() {
	for _ in $(seq 50); do [ "$(state_of "$1")" = down ] && break; sleep 0.1; done
	sleep 0.7 # two more check intervals: a down that flaps up would show
	[ "$(state_of "$1")" = down ]
}
code_of() { eas -o /dev/null -w '%{http_code}' -u alice:secret --data-binary x "$(url)"; }
log_since() { tail -n +"$LOGMARK" "$T/gw.log"; }

one_backend good "127.0.0.1:$good" "$HEALTH" || finish
wait_backends_up good || fail "no sni, certificate names 127.0.0.1: health check up"
out=$(eas -i -u alice:secret --data-binary x "$(url)")
check "no sni, the certificate names the address (IP SAN 127.0.0.1): relayed" \
	grep -q "^X-Backend: good" <<<"$out"
one_backend v6 "[::1]:$v6" "$HEALTH" || finish
wait_backends_up v6 || fail "no sni, certificate names ::1: health check up"
out=$(eas -i -u alice:secret --data-binary x "$(url)")
check "no sni, IPv6 backend [::1] with IP SAN ::1: relayed" grep -q "^X-Backend: v6" <<<"$out"

one_backend other "127.0.0.1:$other" "health = false;" || finish
code=$(code_of)
check "no sni, same CA, certificate for other.example.test/127.0.0.2: the relay refuses it ($code)" \
	test "$code" = 502
check "...and the log says why (certificate verify failed)" \
	bash -c 'grep -qi "certificate verify failed" <<<"$0"' "$(log_since)"
check "...the backend never saw the request" lacks -q "^POST " "$T/be-other.log"
one_backend other "127.0.0.1:$other" "$HEALTH" || finish
check "...and the health check marks it down" wait_down other
code=$(code_of)
check "...so a phone's request is not sent to it ($code)" bash -c '[ $0 = 502 ] || [ $0 = 503 ]' "$code"

one_backend dnsonly "127.0.0.1:$dnsonly" "health = false;" || finish
code=$(code_of)
check "no sni, same CA, certificate with the right DNS name but no IP SAN: the relay refuses it ($code)" \
	test "$code" = 502
one_backend dnsonly "127.0.0.1:$dnsonly" "$HEALTH" || finish
check "...and the health check marks it down" wait_down dnsonly

one_backend wrongname "127.0.0.1:$wrongname" 'sni = "backend.example.test"; health = false;' || finish
code=$(code_of)
check "sni = backend.example.test, same CA, certificate for other.example.test + 127.0.0.1: the name decides, refused ($code)" \
	test "$code" = 502
one_backend wrongname "127.0.0.1:$wrongname" "sni = \"backend.example.test\"; $HEALTH" || finish
check "...and the health check marks it down" wait_down wrongname
finish
