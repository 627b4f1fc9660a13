#!/usr/bin/env bash
# The phone-facing TLS knobs (issue #15), as testssl (Debian's testssl.sh)
# sees them from outside:
#  - the default config offers TLS 1.2 and 1.3 only (SSLv2/3, TLS 1.0/1.1 not
#    offered), with exactly the default cipher lists;
#  - configured ciphers/ciphersuites/groups are exactly what is offered;
#  - min_version = "TLSv1.0" offers TLS 1.0 and 1.1 (testssl ids TLS1, TLS1_1),
#    a TLS 1.0 client really connects, and the start log, --check-config and
#    `easctl certcheck` warn about it;
#  - a bad cipher, ciphersuite or group is refused with file:line by
#    --check-config, at start, and at reload (the running config stays).
source "$(dirname "$0")/lib.sh"
need openssl curl python3 testssl
make_pki localhost
start_backend cas1 || finish
BE="cas1=127.0.0.1:$BE_PORT_cas1,health=/health"

# gw NAME CONFIG-TEXT: start a gateway with that tls group; sets PORT_<NAME>.
gw() {
	local name=$1 port
	port=$(free_port)
	cat >"$T/$name.conf" <<EOF2
tls = {
  certificates = ( { cert = "$PKI/server.pem"; key = "$PKI/server.key"; } );
  trust_file = "$PKI/root.pem";
  $2
};
EOF2
	local ctl=$T/ctl-$name.sock pid
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
	eval "PORT_$name=$port"
	eval "CTL_$name=$ctl"
}
# scan PORT OUT: testssl's protocols and ciphers per protocol as "id|finding" lines
scan() {
	timeout 180 testssl -p -E --quiet --color 0 --warnings off --nodns min --openssl-timeout 10 \
		--jsonfile "$2.json" "127.0.0.1:$1" >"$2.log" 2>&1
	python3 - "$2.json" >"$2" <<'PY'
import json, sys
for x in json.load(open(sys.argv[1])):
    print(x["id"] + "|" + x["finding"])
PY
}
# offered OUT PROTO-ID: "yes" / "no"
offered() { awk -F'|' -v id="$2" '$1 == id { print ($2 ~ /^offered/ ? "yes" : "no") }' "$1"; }
# ciphers OUT tls1_2: the OpenSSL names testssl found for that protocol, sorted
ciphers() { awk -F'|' -v p="cipher-$2_" 'index($1, p) == 1 { split($2, f, " +"); print f[4] }' "$1" | sort | tr '\n' ' '; }

gw default "" || finish
gw custom 'ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305";
  ciphersuites = "TLS_CHACHA20_POLY1305_SHA256"; groups = "P-384";' || finish
gw legacy 'min_version = "TLSv1.0";' || finish

scan "$PORT_default" "$T/s-default" &
p1=$!
scan "$PORT_custom" "$T/s-custom" &
p2=$!
scan "$PORT_legacy" "$T/s-legacy"
wait $p1 $p2

# --- default -------------------------------------------------------------------------------------
S=$T/s-default
check "testssl ran against the default config ($(wc -l <"$S") findings)" grep -q '^TLS1_2|' "$S"
for p in SSLv2 SSLv3 TLS1 TLS1_1; do
	check "default: $p not offered" test "$(offered "$S" $p)" = no
done
for p in TLS1_2 TLS1_3; do
	check "default: $p offered" test "$(offered "$S" $p)" = yes
done
check "default: TLS 1.2 ciphers are the default list (ECDSA certificate): $(ciphers "$S" tls1_2)" \
	test "$(ciphers "$S" tls1_2)" = "ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305 "
check "default: TLS 1.3 ciphersuites are the default list: $(ciphers "$S" tls1_3)" \
	test "$(ciphers "$S" tls1_3)" = "TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256 "
check "default: no legacy-protocol warning in the log" bash -c '! grep -q tls_legacy_protocols "$0"' "$T/gw-default.log"

# --- configured lists ----------------------------------------------------------------------------
S=$T/s-custom
check "custom: TLS 1.2 ciphers are exactly the configured two: $(ciphers "$S" tls1_2)" \
	test "$(ciphers "$S" tls1_2)" = "ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305 "
check "custom: TLS 1.3 ciphersuites are exactly the configured one: $(ciphers "$S" tls1_3)" \
	test "$(ciphers "$S" tls1_3)" = "TLS_CHACHA20_POLY1305_SHA256 "
sc() { echo | timeout 10 openssl s_client -connect "127.0.0.1:$1" -CAfile "$PKI/root.pem" "${@:2}" 2>&1; }
check "custom: groups = P-384: a client offering only X25519 is refused" \
	bash -c '! grep -q "^    Protocol" <<<"$0" || grep -q "Cipher is (NONE)" <<<"$0"' "$(sc "$PORT_custom" -groups X25519)"
check "custom: ...and one offering P-384 gets in" grep -q "Verify return code: 0" <<<"$(sc "$PORT_custom" -groups P-384)"

# --- min_version TLSv1.0 ------------------------------------------------------------------------
S=$T/s-legacy
for p in TLS1 TLS1_1 TLS1_2 TLS1_3; do
	check "legacy: $p offered" test "$(offered "$S" $p)" = yes
done
for p in SSLv2 SSLv3; do
	check "legacy: $p not offered" test "$(offered "$S" $p)" = no
done
out=$(sc "$PORT_legacy" -tls1 -cipher 'DEFAULT:@SECLEVEL=0')
check "legacy: an OpenSSL TLS 1.0 client connects (security level 0 on the server)" \
	bash -c 'grep -q "Protocol  *: TLSv1$" <<<"$0" && grep -q "Verify return code: 0" <<<"$0"' "$out"
check "legacy: ...with a CBC suite of the default legacy list" \
	grep -qE "Cipher  *: ECDHE-ECDSA-AES(128|256)-SHA$" <<<"$out"
check "legacy: the start log warns (tls_legacy_protocols, security level 0)" \
	grep -q 'event=tls_legacy_protocols warning=".*TLSv1.0.*security level is lowered to 0' "$T/gw-legacy.log"
out=$("$EASCTL" -s "$CTL_legacy" certcheck 2>&1)
check "legacy: easctl certcheck warns about TLS 1.0/1.1" grep -q "^protocols: warning: tls.min_version = TLSv1.0" <<<"$out"
out=$("$EASCTL" -s "$CTL_default" certcheck 2>&1)
check "default: easctl certcheck has no protocol warning" bash -c '! grep -q "^protocols:" <<<"$0"' "$out"
out=$("$EASGATED" --check-config -c "$T/legacy.conf" 2>&1)
check "legacy: --check-config accepts it and warns" \
	bash -c 'grep -q "configuration OK" <<<"$0" && grep -q tls_legacy_protocols <<<"$0"' "$out"

# --- bad lists: file:line ---------------------------------------------------------------------
bad() { # bad NAME LINE-TEXT PATTERN
	cat >"$T/$1.conf" <<EOF2
tls = {
  certificates = ( { cert = "$PKI/server.pem"; key = "$PKI/server.key"; } );
  trust_file = "$PKI/root.pem";
  $2
};
EOF2
	local out line
	out=$("$EASGATED" --check-config -c "$T/$1.conf" 2>&1)
	line=$(grep -n "${2%% =*}" "$T/$1.conf" | head -1 | cut -d: -f1)
	check "$1: --check-config refuses it at $1.conf:$line ($3)" grep -q "$1.conf:$line: $3" <<<"$out"
}
bad badcipher 'ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA512";' \
	"tls.ciphers: unknown cipher 'ECDHE-ECDSA-AES128-GCM-SHA512'"
bad badsuite 'ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_AES_128_GCM_SHA384";' \
	"tls.ciphersuites: unknown TLS 1.3 ciphersuite 'TLS_AES_128_GCM_SHA384'"
bad badgroup 'groups = "X25519:X448:P-257";' "tls.groups: unknown group 'P-257'"
bad badversion 'min_version = "SSLv3";' "tls.min_version must be"
bad aeadonly 'min_version = "TLSv1.1"; ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";' \
	"tls.ciphers: min_version TLSv1.1, but no cipher in the list works below TLS 1.2"
timeout 10 "$EASGATED" -c "$T/badcipher.conf" --listen "127.0.0.1:$(free_port)" --state-dir "$T/s-bad" \
	--control-socket "$T/c-bad.sock" --backend "$BE" >"$T/bad-start.log" 2>&1
rc=$?
check "a bad cipher list refuses the start (exit $rc)" \
	bash -c '[ "$0" -ne 0 ] && grep -q "unknown cipher" "$1"' "$rc" "$T/bad-start.log"
# Reload with a bad list: refused, the running generation keeps serving.
cp "$T/custom.conf" "$T/custom.conf.good"
sed -i 's/ECDHE-ECDSA-AES256-GCM-SHA384:/ECDHE-ECDSA-AES256-GCM-SHA385:/' "$T/custom.conf"
out=$("$EASCTL" -s "$CTL_custom" reload 2>&1)
check "reload with a bad cipher is refused with file:line" grep -q "custom.conf:4: tls.ciphers: unknown cipher" <<<"$out"
check "...and the gateway still serves the old lists" \
	grep -q "Cipher  *: ECDHE-ECDSA-AES256-GCM-SHA384" <<<"$(sc "$PORT_custom" -tls1_2)"
finish
