#!/usr/bin/env bash
# OCSP stapling (issue #15) against a local `openssl ocsp` responder named in
# the certificates (AIA, tools/mkcerts.sh OCSP_URL), seen by
# `openssl s_client -status`:
#  - good: the master fetches, checks and staples (TLS 1.3 and 1.2), easctl
#    status says so, a reload keeps it, and it is refetched before nextUpdate
#    (the responder signs for 1 minute: refreshed at ~30 s);
#  - revoked: not stapled, logged;
#  - responder that never answers: handshakes stay fast, nothing stapled,
#    retried after ocsp_retry, then twice that (backoff);
#  - ocsp_response file: stapled from the file (the responder is not asked);
#    a response signed by a stranger's key is refused and not stapled.
source "$(dirname "$0")/lib.sh"
need openssl python3 curl
R=$(free_port)
OCSP_URL=http://127.0.0.1:$R make_pki localhost
check "mkcerts.sh put the responder in the leaf (AIA)" \
	test "$(openssl x509 -in "$PKI/server-leaf.pem" -noout -ocsp_uri)" = "http://127.0.0.1:$R"
# server-rsa is revoked in the responder's database.
rsa_serial=$(openssl x509 -noout -serial -in "$PKI/server-rsa-leaf.pem" | cut -d= -f2)
awk -F'\t' -v OFS='\t' -v s="$rsa_serial" '$4 == s { $1 = "R"; $3 = "260101000000Z,keyCompromise" } 1' \
	"$PKI/index.txt" >"$PKI/index.new" && mv "$PKI/index.new" "$PKI/index.txt"
check "index.txt: server-rsa revoked, server valid" \
	test "$(cut -f1 "$PKI/index.txt" | tr -d '\n')" = "VR"
(cd "$PKI" && exec openssl ocsp -index index.txt -port "$R" -rsigner inter.pem -rkey inter.key \
	-CA inter.pem -nmin 1 -ignore_err) >"$T/responder.log" 2>&1 &
EG_PIDS+=($!)
for _ in $(seq 50); do grep -q "waiting for OCSP client" "$T/responder.log" && break; sleep 0.1; done
start_backend cas1 || finish
BE="cas1=127.0.0.1:$BE_PORT_cas1,health=/health"

# gw NAME CERT KEY TRUST [EXTRA-TLS-SETTINGS]: a gateway; sets PORT_<NAME>, CTL_<NAME>.
gw() {
	local name=$1 port ctl=$T/ctl-$1.sock pid
	port=$(free_port)
	cat >"$T/$name.conf" <<EOF2
tls = {
  certificates = ( { cert = "$2"; key = "$3"; ${6:-} } );
  trust_file = "$4";
  ocsp_fetch_timeout = 1;
  ocsp_retry = 1;
  ${5:-}
};
EOF2
	mkdir -p "$T/state-$name"
	"$EASGATED" -c "$T/$name.conf" --listen "127.0.0.1:$port" --backend "$BE" -w 2 \
		--state-dir "$T/state-$name" --control-socket "$ctl" >"$T/gw-$name.log" 2>&1 &
	pid=$!
	EG_PIDS+=($pid)
	for _ in $(seq 100); do
		"$EASCTL" -s "$ctl" status >/dev/null 2>&1 && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	"$EASCTL" -s "$ctl" status >/dev/null 2>&1 || {
		fail "gateway $name did not start"
		tail -5 "$T/gw-$name.log"
		return 1
	}
	eval "PORT_$name=$port CTL_$name=$ctl"
}
status_of() { "$EASCTL" -s "$1" status | sed -n 's/^ocsp [^ ]* //p'; }
# wait_status CTL PATTERN [SECONDS]
wait_status() {
	for _ in $(seq $((${3:-10} * 10))); do
		status_of "$1" | grep -qE "$2" && return 0
		sleep 0.1
	done
	return 1
}
# staple PORT CAFILE [s_client options]: what the client got
staple() {
	echo | timeout 10 openssl s_client -connect "127.0.0.1:$1" -CAfile "$2" -status "${@:3}" 2>&1
}

gw good "$PKI/server.pem" "$PKI/server.key" "$PKI/root.pem" || finish
gw revoked "$PKI/server-rsa.pem" "$PKI/server-rsa.key" "$PKI/root.pem" || finish

# --- good -------------------------------------------------------------------------------------------
check "good: easctl status says stapled: good (from the responder)" \
	wait_status "$CTL_good" "^stapled: good, .*source=responder:http://127.0.0.1:$R"
first=$(grep -c "event=ocsp_stapled" "$T/gw-good.log")
t_first=$(date +%s)
out=$(staple "$PORT_good" "$PKI/root.pem" -tls1_3)
check "good: TLS 1.3 client gets a stapled response: successful, Cert Status: good" \
	bash -c 'grep -q "OCSP Response Status: successful" <<<"$0" && grep -q "Cert Status: good" <<<"$0" && grep -q "Verify return code: 0" <<<"$0"' "$out"
check "good: ...signed by the issuer (Responder Id: the intermediate)" \
	grep -q "Responder Id: O = easgate demo, CN = easgate demo intermediate CA" <<<"$out"
out=$(staple "$PORT_good" "$PKI/root.pem" -tls1_2)
check "good: TLS 1.2 client too" grep -q "Cert Status: good" <<<"$out"
out=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$PORT_good" -CAfile "$PKI/root.pem" 2>&1)
check "good: a client that does not ask gets no response" bash -c '! grep -q "OCSP Response" <<<"$0"' "$out"
if command -v gnutls-cli >/dev/null; then
	out=$(timeout 10 gnutls-cli --x509cafile "$PKI/root.pem" --ocsp --save-ocsp="$T/gnutls.der" \
		-p "$PORT_good" localhost </dev/null 2>&1)
	check "good: gnutls-cli (--ocsp) gets the staple and trusts the certificate" \
		bash -c 'grep -q "Options: OCSP status request" <<<"$0" && grep -q "The certificate is trusted" <<<"$0" && test -s "$1"' \
		"$out" "$T/gnutls.der"
	check "good: ...and it says good (openssl ocsp -respin)" grep -q ": good" \
		<<<"$(openssl ocsp -respin "$T/gnutls.der" -issuer "$PKI/inter.pem" -cert "$PKI/server-leaf.pem" \
			-CAfile "$PKI/root.pem" 2>&1)"
fi
"$EASCTL" -s "$CTL_good" reload >/dev/null
out=$(staple "$PORT_good" "$PKI/root.pem")
check "good: a reload keeps the staple (stapled at once by the new workers)" grep -q "Cert Status: good" <<<"$out"
check "good: ...without a refetch" test "$(grep -c "event=ocsp_stapled" "$T/gw-good.log")" -eq "$first"

# --- revoked ----------------------------------------------------------------------------------------
check "revoked: easctl status says not stapled: certificate REVOKED" \
	wait_status "$CTL_revoked" "^not stapled: certificate REVOKED"
check "revoked: logged (event=ocsp_refused ... REVOKED (reason keyCompromise ...))" \
	grep -q 'event=ocsp_refused cert=.*server-rsa.pem source=responder:.* reason="certificate REVOKED (reason keyCompromise' \
	"$T/gw-revoked.log"
out=$(staple "$PORT_revoked" "$PKI/root.pem")
check "revoked: the client gets no response (and the handshake works)" \
	bash -c 'grep -q "OCSP response: no response sent" <<<"$0" && grep -q "Verify return code: 0" <<<"$0"' "$out"

# --- a responder that never answers -----------------------------------------------------------------
H=$(free_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
held = []
while True:
    c, _ = s.accept(); held.append(c)   # read nothing, answer nothing
' "$H" >"$T/hang.log" 2>&1 &
EG_PIDS+=($!)
OCSP_URL=http://127.0.0.1:$H "$EG_ROOT/tools/mkcerts.sh" "$T/pki-hang" localhost 127.0.0.1 >/dev/null
gw hang "$T/pki-hang/server.pem" "$T/pki-hang/server.key" "$T/pki-hang/root.pem" || finish
slow=0 max=0
for i in $(seq 10); do
	ms=$(curl -s -o /dev/null -w '%{time_appconnect}' --cacert "$T/pki-hang/root.pem" \
		"https://localhost:$PORT_hang/" --resolve "localhost:$PORT_hang:127.0.0.1" | awk '{printf "%d", $1 * 1000}')
	[ "$ms" -gt "$max" ] && max=$ms
	[ "$ms" -gt 500 ] && slow=$((slow + 1))
	sleep 0.2
done
check "hang: 10 handshakes during the hanging fetches, none over 500 ms (max $max ms)" test "$slow" -eq 0
out=$(staple "$PORT_hang" "$T/pki-hang/root.pem")
check "hang: nothing stapled" grep -q "OCSP response: no response sent" <<<"$out"
for _ in $(seq 150); do
	[ "$(grep -c 'event=ocsp_fetch_failed' "$T/gw-hang.log")" -ge 2 ] && break
	sleep 0.1
done
fails=$(grep 'event=ocsp_fetch_failed' "$T/gw-hang.log" | sed -n 's/.*retry_in=\([0-9.]*\)s.*/\1/p' | head -3 | tr '\n' ' ')
check "hang: the failed fetch is retried after 1 s, then 2 s (backoff: $fails)" \
	bash -c '[[ "$0" == "1.0 2.0"* ]]' "$fails"
check "hang: ...each failure says why (timeout)" grep -q 'event=ocsp_fetch_failed .*reason=".*time' "$T/gw-hang.log"
check "hang: easctl status says not stapled" wait_status "$CTL_hang" "^not stapled: fetch from http://127.0.0.1:$H failed"

# --- a response file --------------------------------------------------------------------------------
(cd "$PKI" && openssl ocsp -issuer inter.pem -cert server-leaf.pem -no_nonce -reqout "$T/req.der" &&
	openssl ocsp -index index.txt -rsigner inter.pem -rkey inter.key -CA inter.pem \
		-reqin "$T/req.der" -respout "$T/good.der" -ndays 1 &&
	openssl ocsp -index index.txt -rsigner "$T/pki-hang/inter.pem" -rkey "$T/pki-hang/inter.key" \
		-CA inter.pem -reqin "$T/req.der" -respout "$T/stranger.der" -ndays 1) >"$T/mkresp.log" 2>&1
check "made a response file (good.der) and one signed by another CA (stranger.der)" \
	test -s "$T/good.der" -a -s "$T/stranger.der"
asked=$(grep -c "Received request" "$T/responder.log")
cp "$T/good.der" "$T/file.der"
gw file "$PKI/server.pem" "$PKI/server.key" "$PKI/root.pem" "" "ocsp_response = \"$T/file.der\";" || finish
check "file: easctl status says stapled from the file" wait_status "$CTL_file" "^stapled: good, .*source=file:$T/file.der"
check "file: s_client gets it" grep -q "Cert Status: good" <<<"$(staple "$PORT_file" "$PKI/root.pem")"
check "file: the responder was not asked" test "$(grep -c "Received request" "$T/responder.log")" -eq "$asked"
cp "$T/stranger.der" "$T/file.der.new" && mv "$T/file.der.new" "$T/file.der"
for _ in $(seq 50); do grep -q "event=ocsp_refused .*source=file:" "$T/gw-file.log" && break; sleep 0.1; done
check "file: a response signed by a stranger is refused when the file changes (signer not trusted)" \
	grep -q 'event=ocsp_refused .*source=file:.* reason="signature or signer not trusted' "$T/gw-file.log"
gw file2 "$PKI/server.pem" "$PKI/server.key" "$PKI/root.pem" "" "ocsp_response = \"$T/stranger.der\";" || finish
check "file: a stranger's response is never stapled" \
	wait_status "$CTL_file2" "^not stapled: signature or signer not trusted"
check "file: ...s_client gets none" grep -q "OCSP response: no response sent" <<<"$(staple "$PORT_file2" "$PKI/root.pem")"

# --- refreshed before nextUpdate ------------------------------------------------------------------
# The responder signs for 1 minute: the master refetches at half of it.
for _ in $(seq 450); do
	[ "$(grep -c "event=ocsp_stapled" "$T/gw-good.log")" -gt "$first" ] && break
	sleep 0.1
done
now=$(($(date +%s) - t_first))
check "good: refetched before nextUpdate ($now s after the first staple; nextUpdate 60 s)" \
	bash -c '[ "$(grep -c "event=ocsp_stapled" "$0")" -gt "$1" ] && [ "$2" -lt 50 ]' "$T/gw-good.log" "$first" "$now"
finish
