#!/usr/bin/env bash
# DeviceInformation is read from a Settings body however the client encoded
# it: Content-Encoding identity, deflate (zlib, and raw deflate as some clients
# send it), gzip, and chunked transfer framing, alone and with gzip. A blocked
# OS is refused in every form (it used to pass when deflated or chunked). What
# cannot be decoded within limits.inspect_body is refused with a status that
# says why, never let through uninspected: an unknown coding (415), two
# Content-Encoding fields (415), a corrupt stream (400), a body or an inflated
# body over the limit (413), WBXML the decoder refuses (400). An allowed OS in
# every encoding is relayed byte for byte.
source "$(dirname "$0")/lib.sh"
need python3 curl xml2wbxml
make_pki
RAW=$EG_ROOT/tests/integration/relay/rawtls.py
EAS=/Microsoft-Server-ActiveSync
start_backend cas1 --record "$T/rec" || finish
cat >"$T/gw.conf" <<'CONF'
limits = { inspect_body = 4096; };
policy = { rules = ( "block DeviceOS like \"BlockedOS*\"" ); };
CONF
start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || fail "backend never came up"

dtd='<!DOCTYPE ActiveSync PUBLIC "-//MICROSOFT//DTD ActiveSync//EN" "http://www.microsoft.com/">'
settings() { # OS FRIENDLY-NAME-LENGTH OUT
	cat >"$T/s.xml" <<EOF
<?xml version="1.0" encoding="utf-8"?>
$dtd
<Settings xmlns="Settings:"><DeviceInformation><Set><Model>Phone1</Model><OS>$1</OS><FriendlyName>$(printf 'f%.0s' $(seq "$2"))</FriendlyName></Set></DeviceInformation></Settings>
EOF
	wbxml_from_xml "$T/s.xml" "$3"
}
settings "BlockedOS 1.0" 8 "$T/blocked.wbxml" || fail "xml2wbxml could not encode the blocked Settings"
settings "GoodOS 2.0" 8 "$T/good.wbxml" || fail "xml2wbxml could not encode the allowed Settings"
settings "GoodOS 2.0" 5000 "$T/big.wbxml" || fail "xml2wbxml could not encode the big Settings"
[ -s "$T/blocked.wbxml" ] && [ -s "$T/good.wbxml" ] || finish

# mkreq OUT WBXML DEVICE FORM : a Settings request for DEVICE in FORM.
mkreq() {
	python3 - "$@" "$EAS" <<'PY'
import gzip, sys, zlib
out, src, dev, form, eas = sys.argv[1:6]
wb = open(src, "rb").read()
hdrs = ["POST %s?Cmd=Settings&User=iu&DeviceId=%s&DeviceType=Phone HTTP/1.1" % (eas, dev),
        "Host: localhost", "MS-ASProtocolVersion: 12.1", "Content-Type: application/vnd.ms-sync.wbxml",
        "Connection: close"]
def raw_deflate(b):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(b) + c.flush()
def chunks(b):
    return b"".join(b"%x\r\n%s\r\n" % (len(b[i:i + 40]), b[i:i + 40]) for i in range(0, len(b), 40)) + b"0\r\n\r\n"
body, ce, te = wb, None, False
if form == "identity":
    pass
elif form == "ce_identity":
    ce = "identity"
elif form == "deflate_zlib":
    body, ce = zlib.compress(wb), "deflate"
elif form == "deflate_raw":
    body, ce = raw_deflate(wb), "deflate"
elif form == "gzip":
    body, ce = gzip.compress(wb), "gzip"
elif form == "chunked":
    te = True
elif form == "chunked_gzip":
    body, ce, te = gzip.compress(wb), "gzip", True
elif form == "br":
    ce = "br"
elif form == "two_ce":
    body, ce = gzip.compress(wb), "gzip"
    hdrs.append("Content-Encoding: identity")
elif form == "corrupt_gzip":
    g = bytearray(gzip.compress(wb))
    g[12] ^= 0xff
    body, ce = bytes(g), "gzip"
elif form == "bomb":
    body, ce = gzip.compress(wb + b"\0" * 1000000), "gzip"
elif form == "bad_wbxml":
    body = b"\x03\x01\x6a\x00\x45\x56\x99"
else:
    sys.exit("unknown form " + form)
if ce:
    hdrs.append("Content-Encoding: " + ce)
payload = body
if te:
    hdrs.append("Transfer-Encoding: chunked")
    body = chunks(body)
else:
    hdrs.append("Content-Length: %d" % len(body))
open(out, "wb").write(("\r\n".join(hdrs) + "\r\n\r\n").encode() + body)
open(out + ".payload", "wb").write(payload)
PY
}
# send FILE : "STATUS FROM" (FROM is backend or gateway).
send() {
	python3 "$RAW" --port "$GW_PORT" --cafile "$PKI/root.pem" --wait 10 "$1" |
		python3 -c 'import json,sys; r = json.loads(sys.stdin.read())
print(",".join(map(str, r["statuses"])) or "none", "backend" if "\nx-backend:" in r["head"].lower() else "gateway")'
}
reached() { grep -l "DeviceId=$1&" "$T/rec"/*.meta 2>/dev/null | wc -l; }

n=0
for form in identity ce_identity deflate_zlib deflate_raw gzip chunked chunked_gzip; do
	n=$((n + 1))
	mkreq "$T/b$n.req" "$T/blocked.wbxml" "Blk$n" "$form" || { fail "could not build $form"; continue; }
	read -r st by < <(send "$T/b$n.req")
	check "blocked OS in a $form Settings body: refused 403 by the gateway (got $st from the $by), never relayed ($(reached "Blk$n"))" \
		test "$st" = 403 -a "$by" = gateway -a "$(reached "Blk$n")" = 0
	mkreq "$T/g$n.req" "$T/good.wbxml" "Good$n" "$form" || { fail "could not build $form"; continue; }
	read -r st by < <(send "$T/g$n.req")
	seq=$(grep -l "DeviceId=Good$n&" "$T/rec"/*.meta 2>/dev/null | head -1)
	sha=$(awk -F= '$1=="body_sha256" {print $2}' "${seq:-/dev/null}")
	check "allowed OS in a $form Settings body: relayed ($st from the $by), the backend got the body byte for byte" \
		test "$st" = 200 -a "$by" = backend -a "$sha" = "$(sha256sum <"$T/g$n.req.payload" | cut -d' ' -f1)"
done

# refused FORM STATUS WBXML WHY : undecodable within the limit, refused, not relayed.
refused() {
	n=$((n + 1))
	mkreq "$T/r$n.req" "$3" "Ref$n" "$1" || { fail "could not build $1"; return; }
	read -r st by < <(send "$T/r$n.req")
	check "$4 ($1): refused $2 by the gateway (got $st from the $by), never relayed ($(reached "Ref$n"))" \
		test "$st" = "$2" -a "$by" = gateway -a "$(reached "Ref$n")" = 0
}
refused br 415 "$T/good.wbxml" "a coding the gateway cannot decode"
refused two_ce 415 "$T/good.wbxml" "two Content-Encoding fields"
refused corrupt_gzip 400 "$T/good.wbxml" "a corrupt gzip stream"
refused bomb 413 "$T/good.wbxml" "a body that inflates past inspect_body"
refused identity 413 "$T/big.wbxml" "a body larger than inspect_body"
refused chunked 413 "$T/big.wbxml" "a chunked body larger than inspect_body"
refused bad_wbxml 400 "$T/good.wbxml" "WBXML the decoder refuses"
hdr=$(eas -o /dev/null -D - -u ref:pw -H "MS-ASProtocolVersion: 14.1" -H "Content-Encoding: br" \
	-H "Content-Type: application/vnd.ms-sync.wbxml" --data-binary "@$T/good.wbxml" \
	"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=Settings&User=ref&DeviceId=RefPhrase&DeviceType=iPhone")")
check "the 415's status line names it: $(head -1 <<<"$hdr" | tr -d '\r')" \
	grep -q $'^HTTP/1.1 415 Unsupported Media Type\r$' <<<"$hdr"
check "the refusals are logged with their reason" grep -q 'event=access.*cmd=Settings.*status=415.*reason=' "$T/gw.log"
finish
