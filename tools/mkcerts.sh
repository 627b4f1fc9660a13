#!/usr/bin/env bash
# Make a demo/test PKI in DIR: root CA -> intermediate CA -> server leaf, for
# the names given (default: localhost, 127.0.0.1, ::1).
#   root.pem            trust anchor (give it to clients: curl --cacert)
#   inter.pem           intermediate CA certificate
#   server.pem          leaf + intermediate: what the gateway serves (full chain)
#   server-leaf.pem     leaf only (an INCOMPLETE chain, for tests)
#   server.key          leaf key (ECDSA P-256)
#   server-rsa.pem/.key the same names with an RSA-2048 leaf
#   index.txt           with OCSP_URL set: the leaves in `openssl ca` database
#                       form (status V), for `openssl ocsp -index index.txt -CA inter.pem`
# Usage: [OCSP_URL=http://127.0.0.1:PORT] [MKCERTS_CA=OTHERDIR] mkcerts.sh DIR [DNS-or-IP ...]
#   OCSP_URL: the leaves name that OCSP responder (Authority Information Access)
#   MKCERTS_CA: reuse OTHERDIR's root and intermediate (a second leaf from the
#               same CA, e.g. a certificate for another name)
set -euo pipefail
dir=$1; shift || true
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(localhost 127.0.0.1 ::1)
mkdir -p "$dir"; cd "$dir"
san=""
for n in "${names[@]}"; do
	if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+="IP:$n,"; else san+="DNS:$n,"; fi
done
san=${san%,}
cat > ca.ext <<X
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid:always
X
cat > leaf.ext <<X
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid:always
X
[ -z "${OCSP_URL:-}" ] || echo "authorityInfoAccess=OCSP;URI:$OCSP_URL" >>leaf.ext
q() { "$@" >/dev/null 2>&1; }
if [ -n "${MKCERTS_CA:-}" ]; then
	for f in root.pem root.key inter.pem inter.key; do cp "$MKCERTS_CA/$f" .; done
else
	q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key -out root.pem \
		-days 3650 -subj "/O=easgate demo/CN=easgate demo root CA" -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign
	q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout inter.key -out inter.csr \
		-subj "/O=easgate demo/CN=easgate demo intermediate CA"
	q openssl x509 -req -in inter.csr -CA root.pem -CAkey root.key -CAcreateserial -out inter.pem \
		-days 1825 -extfile ca.ext
fi
mkleaf() { # $1 = output prefix, rest = key options
	local p=$1; shift
	q openssl req -newkey "$@" -nodes -keyout "$p.key" -out "$p.csr" -subj "/O=easgate demo/CN=${names[0]}"
	q openssl x509 -req -in "$p.csr" -CA inter.pem -CAkey inter.key -CAcreateserial -out "$p-leaf.pem" \
		-days ${LEAF_DAYS:-825} -extfile leaf.ext
	cat "$p-leaf.pem" inter.pem > "$p.pem"
}
mkleaf server ec -pkeyopt ec_paramgen_curve:P-256
mkleaf server-rsa rsa:2048
if [ -n "${OCSP_URL:-}" ]; then
	: >index.txt
	echo "unique_subject = no" >index.txt.attr # server and server-rsa share the subject
	for p in server server-rsa; do
		end=$(date -u -d "$(openssl x509 -noout -enddate -in "$p-leaf.pem" | cut -d= -f2)" +%y%m%d%H%M%SZ)
		serial=$(openssl x509 -noout -serial -in "$p-leaf.pem" | cut -d= -f2)
		subj=$(openssl x509 -noout -subject -nameopt compat -in "$p-leaf.pem" | sed 's/^subject=//')
		printf 'V\t%s\t\t%s\tunknown\t%s\n' "$end" "$serial" "$subj" >>index.txt
	done
fi
rm -f ./*.csr ./*.srl
chmod 600 ./*.key
echo "certificates in $dir: root.pem, server.pem (chain), server.key"
