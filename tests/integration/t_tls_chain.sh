#!/usr/bin/env bash
# TLS: the full chain is sent (openssl s_client -verify_return_error against
# only the root), TLS 1.2 and 1.3 work, TLS 1.1 is refused, ECDSA and RSA
# certificates, SNI picks the certificate, session tickets resume (also across
# workers), and the start is refused when the intermediate is missing.
source "$(dirname "$0")/lib.sh"
need openssl curl
make_pki mail.example.test
"$EG_ROOT/tools/mkcerts.sh" "$T/pki2" other.example.test 127.0.0.1 >/dev/null
start_backend cas1 || finish
cat >"$T/gw.conf" <<EOF
tls = {
  certificates = (
    { cert = "$PKI/server.pem"; key = "$PKI/server.key"; },
    { cert = "$T/pki2/server-rsa.pem"; key = "$T/pki2/server-rsa.key"; }
  );
  trust_file = "$T/pki/root.pem";
};
EOF
cat "$T/pki2/root.pem" >>"$T/pki/root.pem" # one trust file for both demo roots
GW_CONFIG_TLS=1 GW_WORKERS=2 start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish

sc() { # s_client with only the root CA: success needs the intermediate from the server
	# (the short pause lets the TLS 1.3 NewSessionTicket arrive before EOF)
	(sleep 0.3; echo) | timeout 10 openssl s_client -connect "127.0.0.1:$GW_PORT" -CAfile "$PKI/root.pem" \
		-verify_return_error "$@" 2>&1
}
out=$(sc -servername mail.example.test -showcerts)
check "s_client verifies the chain with only the root (intermediate sent)" \
	grep -q "Verify return code: 0 (ok)" <<<"$out"
check "server sent 2 certificates (leaf + intermediate)" \
	test "$(grep -c 'BEGIN CERTIFICATE' <<<"$out")" -eq 2
check "TLS 1.3 negotiated" grep -q "TLSv1.3" <<<"$(sc -tls1_3 -servername mail.example.test)"
check "TLS 1.2 negotiated" grep -q "Protocol  *: TLSv1.2" <<<"$(sc -tls1_2 -servername mail.example.test)"
out=$(sc -tls1_1 -servername mail.example.test)
check "TLS 1.1 refused (no cipher negotiated)" grep -qE "Cipher is \(NONE\)|Cipher    : 0000" <<<"$out"
out=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$GW_PORT" -servername other.example.test \
	-CAfile "$T/pki2/root.pem" -verify_return_error 2>&1)
check "SNI other.example.test gets the RSA certificate for that name" \
	bash -c 'grep -q "Verify return code: 0" <<<"$0" && grep -q "CN = other.example.test" <<<"$0" && grep -qi "rsa" <<<"$0"' "$out"
out=$(sc -servername mail.example.test)
check "default certificate is ECDSA" grep -qiE "Peer signature type: ECDSA|Server public key is 256 bit" <<<"$out"

# Resumption with a ticket, several times: with 2 workers the connections
# land on both, so this also proves the ticket keys are shared.
rm -f "$T/sess"
sc -servername mail.example.test -tls1_3 -sess_out "$T/sess" >/dev/null
ok=0
for _ in 1 2 3 4 5 6; do
	sc -servername mail.example.test -tls1_3 -sess_in "$T/sess" | grep -q "^Reused, TLSv1.3" && ok=$((ok + 1))
done
check "TLS 1.3 session resumed from a ticket ($ok/6)" test "$ok" -eq 6
# A resumed TLS 1.3 connection gets a fresh ticket, so a client that uses
# each ticket once (RFC 8446 C.4) keeps resuming.
sc -servername mail.example.test -tls1_3 -sess_in "$T/sess" -sess_out "$T/sess2" >/dev/null
check "a resumed TLS 1.3 session issues a new ticket that resumes again" \
	grep -q "^Reused, TLSv1.3" <<<"$(sc -servername mail.example.test -tls1_3 -sess_in "$T/sess2")"
rm -f "$T/sess12"
sc -servername mail.example.test -tls1_2 -sess_out "$T/sess12" >/dev/null
check "TLS 1.2 session resumed from a ticket" \
	grep -q "^Reused, TLSv1.2" <<<"$(sc -servername mail.example.test -tls1_2 -sess_in "$T/sess12")"
m=$("$EASCTL" -s "$CTL" metrics)
check "metrics count resumed handshakes" grep -qE 'easgate_tls_handshakes_total\{resumed="true"\} [1-9]' <<<"$m"

# gnutls-cli as a second, independent TLS stack.
if command -v gnutls-cli >/dev/null; then
	out=$(echo | timeout 10 gnutls-cli --x509cafile "$PKI/root.pem" -p "$GW_PORT" \
		--sni-hostname mail.example.test --verify-hostname mail.example.test 127.0.0.1 2>&1)
	check "gnutls-cli verifies the chain" grep -q "Handshake was completed" <<<"$out"
fi

# A leaf without its intermediate must not start...
out=$("$EASGATED" --check-config --tls-cert "$PKI/server-leaf.pem" --tls-key "$PKI/server.key" \
	--trust-file "$PKI/root.pem" 2>&1)
rc=$?
check "--check-config refuses an incomplete chain (exit $rc)" test "$rc" -ne 0
check "...and says the intermediate is missing" grep -q "incomplete chain" <<<"$out"
timeout 10 "$EASGATED" --listen "127.0.0.1:$(free_port)" --tls-cert "$PKI/server-leaf.pem" \
	--tls-key "$PKI/server.key" --trust-file "$PKI/root.pem" --state-dir "$T/s2" \
	--control-socket "$T/c2.sock" >"$T/refuse.log" 2>&1
rc=$?
check "easgated refuses to start with an incomplete chain (exit $rc)" test "$rc" -ne 0
# ...unless explicitly overridden.
cat >"$T/override.conf" <<EOF
tls = { certificates = ( { cert = "$PKI/server-leaf.pem"; key = "$PKI/server.key"; } );
        allow_incomplete_chain = true; trust_file = "$PKI/root.pem"; };
EOF
out=$("$EASGATED" --check-config -c "$T/override.conf" 2>&1)
check "allow_incomplete_chain = true overrides (with a warning)" \
	bash -c '[ $1 -eq 0 ] && grep -q "override=allow_incomplete_chain" <<<"$0"' "$out" "$?"
# Wrong key.
out=$("$EASGATED" --check-config --tls-cert "$PKI/server.pem" --tls-key "$PKI/server-rsa.key" \
	--trust-file "$PKI/root.pem" 2>&1)
check "a key that does not match is refused" grep -q "does not match" <<<"$out"
finish
