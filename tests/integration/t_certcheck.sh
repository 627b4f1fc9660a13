#!/usr/bin/env bash
# Certificate chain check (issue #5): `easctl certcheck --cert --key --trust
# --host` (local, no daemon) and `easctl certcheck HOST` (the running
# daemon's certificates) report each of these with a clear message and a
# non-zero exit: missing intermediate, wrong key, expired leaf, a leaf that
# expires in 5 days, a name the SANs do not cover; a good chain passes (0).
# The daemon refuses to start on an expired certificate, starts with a
# soon-expiring one (with a warning). testssl (Debian) agrees: the chain the
# gateway serves is complete (cert_chain_of_trust OK) and, served without its
# intermediate (allow_incomplete_chain), is not.
# Expired and soon-expiring leaves come from `openssl ca` with explicit
# -startdate/-enddate (OpenSSL 3.0's x509 cannot set dates), issued by the
# demo intermediate.
source "$(dirname "$0")/lib.sh"
need openssl curl python3
make_pki localhost

# --- certificates: expired and soon-expiring leaves from the intermediate ------
CA=$T/ca
mkdir -p "$CA/new"
: >"$CA/index.txt"
echo 1000 >"$CA/serial"
cat >"$CA/ca.cnf" <<EOF
[ ca ]
default_ca = ca_test
[ ca_test ]
database = $CA/index.txt
new_certs_dir = $CA/new
serial = $CA/serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
[ policy_any ]
commonName = supplied
organizationName = optional
EOF
mkleaf() { # mkleaf NAME CA-DATE-OPTIONS...: NAME.pem (leaf + intermediate), NAME.key
	local name=$1
	shift
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$name.key" \
		-out "$CA/$name.csr" -subj "/O=easgate test/CN=localhost" >/dev/null 2>&1 &&
		openssl ca -batch -notext -config "$CA/ca.cnf" -cert "$PKI/inter.pem" -keyfile "$PKI/inter.key" \
			-in "$CA/$name.csr" -out "$T/$name-leaf.pem" -extfile "$PKI/leaf.ext" "$@" >"$CA/$name.log" 2>&1 &&
		cat "$T/$name-leaf.pem" "$PKI/inter.pem" >"$T/$name.pem" ||
		{ fail "openssl ca could not make $name"; cat "$CA/$name.log"; }
}
mkleaf expired -startdate 20200101000000Z -enddate 20210101000000Z
mkleaf soon -days 5
check "the expired leaf really is expired (openssl x509 -checkend 0 fails)" \
	bash -c '! openssl x509 -in "$0" -noout -checkend 0 >/dev/null' "$T/expired-leaf.pem"
check "the soon leaf expires within 6 days, not within 4" bash -c \
	'! openssl x509 -in "$0" -noout -checkend 518400 >/dev/null && openssl x509 -in "$0" -noout -checkend 345600 >/dev/null' \
	"$T/soon-leaf.pem"

# --- local mode --------------------------------------------------------------------
# cc DESC WANT_EXIT(0|nonzero) PATTERN CHECK-ARGS...
cc() {
	local desc=$1 want=$2 pat=$3 out rc
	shift 3
	out=$("$EASCTL" certcheck "$@" 2>&1)
	rc=$?
	if [ "$want" = 0 ]; then
		check "local: $desc: exit 0 (rc=$rc)" test "$rc" -eq 0
	else
		check "local: $desc: non-zero exit (rc=$rc)" test "$rc" -ne 0
	fi
	check "local: $desc: says \"$pat\"" grep -qE "$pat" <<<"$out"
	[ -n "${EG_VERBOSE:-}" ] && echo "$out" | sed 's/^/        /'
	return 0
}
TRUST=(--trust "$PKI/root.pem")
cc "good chain" 0 "OK.*|chain: +2 certificates, complete" \
	--cert "$PKI/server.pem" --key "$PKI/server.key" "${TRUST[@]}" --host localhost
cc "missing intermediate" 3 "problem: incomplete chain: the issuer of .*append the intermediate" \
	--cert "$PKI/server-leaf.pem" --key "$PKI/server.key" "${TRUST[@]}" --host localhost
cc "wrong key" 3 "problem: the private key in .*server-rsa.key does not match the certificate" \
	--cert "$PKI/server.pem" --key "$PKI/server-rsa.key" "${TRUST[@]}" --host localhost
cc "expired leaf" 3 "problem: certificate expired [0-9]+ days ago \(leaf\)" \
	--cert "$T/expired.pem" --key "$T/expired.key" "${TRUST[@]}" --host localhost
cc "leaf expiring in 5 days" 3 "expires in [45] days" \
	--cert "$T/soon.pem" --key "$T/soon.key" "${TRUST[@]}" --host localhost
cc "SAN mismatch" 3 "problem: certificate names \(localhost\) do not cover mail.other.test" \
	--cert "$PKI/server.pem" --key "$PKI/server.key" "${TRUST[@]}" --host mail.other.test

# --- the daemon: start checks and `easctl certcheck HOST` ---------------------------------
out=$("$EASGATED" --check-config --tls-cert "$T/expired.pem" --tls-key "$T/expired.key" \
	--trust-file "$PKI/root.pem" 2>&1)
rc=$?
check "--check-config refuses the expired certificate (rc=$rc)" \
	bash -c '[ "$1" -ne 0 ] && grep -q "certificate expired" <<<"$0"' "$out" "$rc"
start_backend cas1 || finish
start_gateway --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
out=$("$EASCTL" -s "$CTL" certcheck localhost 2>&1)
rc=$?
check "daemon: certcheck localhost: exit 0, OK, chain complete (rc=$rc)" \
	bash -c '[ "$1" -eq 0 ] && grep -q ": OK" <<<"$0" && grep -q "2 certificates, complete" <<<"$0"' "$out" "$rc"
out=$("$EASCTL" -s "$CTL" certcheck mail.other.test 2>&1)
rc=$?
check "daemon: certcheck mail.other.test: exit 3, names not covered (rc=$rc)" \
	bash -c '[ "$1" -eq 3 ] && grep -q "do not cover mail.other.test" <<<"$0"' "$out" "$rc"
GOOD_PORT=$GW_PORT

# launch NAME EASGATED-ARGS...: one more gateway with its own port, control
# socket and state; sets L_PORT, L_CTL once its control socket answers.
launch() {
	local name=$1
	shift
	L_PORT=$(free_port)
	L_CTL=$T/ctl-$name.sock
	"$EASGATED" --listen "127.0.0.1:$L_PORT" --state-dir "$T/state-$name" --control-socket "$L_CTL" \
		-w 1 --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" "$@" >"$T/gw-$name.log" 2>&1 &
	EG_PIDS+=($!)
	for _ in $(seq 100); do
		"$EASCTL" -s "$L_CTL" status >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "gateway $name did not start"
	tail -5 "$T/gw-$name.log"
	return 1
}

# A soon-expiring certificate: the gateway starts (warning), certcheck flags it.
launch soon --tls-cert "$T/soon.pem" --tls-key "$T/soon.key" --trust-file "$PKI/root.pem"
check "daemon: starts with a soon-expiring certificate, warning in the log" \
	grep -qE 'event=cert_check .*warning="expires in [45] days"' "$T/gw-soon.log"
out=$("$EASCTL" -s "$L_CTL" certcheck localhost 2>&1)
rc=$?
check "daemon: certcheck on the soon-expiring certificate: non-zero exit (rc=$rc)" test "$rc" -ne 0
check "daemon: ...and says it expires in 4-5 days" grep -qE "expires in [45] days" <<<"$out"

# --- testssl agrees ---------------------------------------------------------------------
if ! command -v testssl >/dev/null; then
	skip_part "testssl checks" "testssl not installed (Debian package testssl.sh)"
	finish
fi
chain_of_trust() { # PORT OUT.json -> "severity finding" of cert_chain_of_trust
	timeout 120 testssl --add-ca "$PKI/root.pem" --jsonfile "$2" -S --fast --nodns min --quiet \
		--color 0 --warnings off --openssl-timeout 10 "127.0.0.1:$1" >"$2.log" 2>&1
	python3 - "$2" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("none unreadable:", e)
    sys.exit()
for r in d if isinstance(d, list) else d.get("scanResult", []):
    if r.get("id") == "cert_chain_of_trust":
        print(r.get("severity"), r.get("finding"))
        break
else:
    print("none no cert_chain_of_trust entry")
PY
}
cat >"$T/incomplete.conf" <<EOF
tls = { certificates = ( { cert = "$PKI/server-leaf.pem"; key = "$PKI/server.key"; } );
        allow_incomplete_chain = true; trust_file = "$PKI/root.pem"; };
EOF
launch incomplete -c "$T/incomplete.conf" || finish
# The two scans run side by side (testssl takes ~15 s each).
chain_of_trust "$GOOD_PORT" "$T/testssl-good.json" >"$T/trust-good" &
chain_of_trust "$L_PORT" "$T/testssl-incomplete.json" >"$T/trust-incomplete"
wait $!
res=$(cat "$T/trust-good")
check "testssl: the served chain is complete (cert_chain_of_trust: $res)" grep -q "^OK " <<<"$res"
res=$(cat "$T/trust-incomplete")
check "testssl: a leaf served without its intermediate is flagged (cert_chain_of_trust: $res)" \
	bash -c '[ -n "$0" ] && ! grep -q "^OK " <<<"$0" && ! grep -q "^none " <<<"$0"' "$res"
finish
