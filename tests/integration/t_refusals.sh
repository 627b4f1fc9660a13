#!/usr/bin/env bash
# Refusal cases: each ambiguous-framing case (and an over-long head, a
# transfer-coding other than chunked, a dot-segment in the path) is answered
# 400 (or the status RFC 9112 names for it) with a logged reason, the connection is closed after
# the answer, and nothing of the request reaches the backend. Smuggling
# classics (CL.TE, TE.CL, TE.TE obfuscations) carry a second request in what
# the gateway must not treat as a body: exactly one answer comes back.
# EAS-level refusals (bad DeviceId, bad base64 query, unknown path, wrong
# method) get the status Exchange gives and never reach the backend either.
#
# "Never reached" is proved with the demo backend's own bookkeeping: it
# numbers every request whose head it parsed (X-Request-Seq) and records each
# one whose body completed. After all the cases, one good request is sent; if
# every sequence number below its own was recorded and all of those are health
# checks, no refused request got even its head to the backend.
source "$(dirname "$0")/lib.sh"
need python3 curl
make_pki
RAW=$EG_ROOT/tests/integration/relay/rawtls.py
start_backend cas1 --record "$T/rec" || finish
start_gateway --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1 || fail "backend cas1 never came up"

EAS=/Microsoft-Server-ActiveSync
EASQ="$EAS?Cmd=Sync&User=u1&DeviceId=DEV1&DeviceType=iPhone"
POST="POST $EASQ HTTP/1.1\r\nHost: localhost\r\n"

# raw FILE : send FILE over TLS; prints "STATUSES CLOSED BY" (statuses comma-
# joined; BY is "backend" when the answer carries the demo backend's X-Backend).
raw() {
	python3 "$RAW" --port "$GW_PORT" --cafile "$PKI/root.pem" --wait 3 "$1" |
		python3 -c 'import json,sys; r=json.loads(sys.stdin.read())
print(",".join(map(str, r["statuses"])) or "none", "closed" if r["closed"] else "open",
      "backend" if "\nx-backend:" in r["head"].lower() else "gateway")'
}
refused_lines() { grep -c 'event=http_refused' "$T/gw.log"; }

# refuse_file NAME STATUS FILE : exactly one answer STATUS, connection closed,
# and the gateway logged why.
refuse_file() {
	local name=$1 want=$2 f=$3 before st cl by
	before=$(refused_lines)
	read -r st cl by < <(raw "$f")
	check "$name: the gateway answered $want and closed (got $st from the $by, $cl)" \
		test "$st" = "$want" -a "$cl" = closed -a "$by" = gateway
	check "$name: reason logged" test "$(refused_lines)" -gt "$before"
}
# refuse NAME STATUS PRINTF-FORMAT : the same with the bytes given as a printf format
refuse() {
	# shellcheck disable=SC2059 # the case's bytes are written as a printf format
	printf -- "$3" >"$T/case-$1"
	refuse_file "$1" "$2" "$T/case-$1"
}

# --- framing ----------------------------------------------------------------------
refuse cl_and_te 400 "${POST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
refuse duplicate_cl 400 "${POST}Content-Length: 1\r\nContent-Length: 1\r\n\r\nx"
refuse cl_list 400 "${POST}Content-Length: 1,1\r\n\r\nx"
refuse cl_plus_sign 400 "${POST}Content-Length: +1\r\n\r\nx"
refuse obs_fold 400 "${POST}X-Note: a\r\n b\r\nContent-Length: 0\r\n\r\n"
refuse bare_lf 400 "${POST}X-Note: a\nContent-Length: 0\r\n\r\n"
refuse bare_cr 400 "${POST}X-Note: a\rX-Other: b\r\nContent-Length: 0\r\n\r\n"
refuse nul_in_header 400 "${POST}X-Note: a\x00b\r\nContent-Length: 0\r\n\r\n"
refuse space_before_colon 400 "${POST}X-Note : a\r\nContent-Length: 0\r\n\r\n"
refuse invalid_chunk_size 400 "${POST}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
refuse chunk_size_17_digits 400 "${POST}Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"
# 2^63: a backend holding chunk sizes in a signed 64-bit integer reads it as
# negative; Content-Length is capped at INT64_MAX for the same reason.
refuse chunk_size_over_int64 400 "${POST}Transfer-Encoding: chunked\r\n\r\n8000000000000000\r\nhello\r\n0\r\n\r\n"
# RFC 9112 6.3: chunked not final in a request MUST be 400 (gzip is a coding
# the parser knows); a coding it does not know is 501 (RFC 9112 6.1).
refuse te_gzip_alone 400 "${POST}Transfer-Encoding: gzip\r\n\r\nabc"
refuse te_unknown_coding 501 "${POST}Transfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n"
refuse http10_with_te 400 "POST $EASQ HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
refuse missing_host 400 "POST $EASQ HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
refuse two_hosts 400 "${POST}Host: localhost\r\nContent-Length: 0\r\n\r\n"
refuse two_hosts_differing 400 "${POST}Host: backend.internal\r\nContent-Length: 0\r\n\r\n"
refuse connect 405 "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n"
python3 -c 'import sys; sys.stdout.write("POST " + sys.argv[1] + "&Pad=" + "a" * 9000 + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")' "$EASQ" >"$T/case-long-line"
refuse_file request_line_too_long 414 "$T/case-long-line"
python3 -c 'import sys; sys.stdout.write("POST " + sys.argv[1] + " HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + "a" * 9000 + "\r\nContent-Length: 0\r\n\r\n")' "$EASQ" >"$T/case-long-header"
refuse_file header_line_too_long 431 "$T/case-long-header"
python3 -c 'import sys; sys.stdout.write("POST " + sys.argv[1] + " HTTP/1.1\r\nHost: localhost\r\n" + "".join("X-H%d: v\r\n" % i for i in range(100)) + "Content-Length: 0\r\n\r\n")' "$EASQ" >"$T/case-many-headers"
refuse_file too_many_headers 431 "$T/case-many-headers"
# Every line and the count within limits, the whole head over max_head (32 KiB):
# answered at once, not when the 30 s head timer fires.
python3 -c 'import sys; sys.stdout.write("POST " + sys.argv[1] + " HTTP/1.1\r\nHost: localhost\r\n" + "".join("X-H%d: %s\r\n" % (i, "v" * 1000) for i in range(40)) + "Content-Length: 0\r\n\r\n")' "$EASQ" >"$T/case-long-head"
refuse_file head_too_large 431 "$T/case-long-head"
# A transfer-coding the gateway would have to drop to relay the body (RFC 9112
# 6.1: a server that does not implement a coding answers 501).
refuse te_gzip_chunked 501 "${POST}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
refuse te_deflate_chunked 501 "${POST}Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
# Dot-segments would climb out of a backend's path prefix (Exchange paths never
# have them): refused however they are spelt.
refuse dot_segment 400 "POST /../Microsoft-Server-ActiveSync?Cmd=Sync&User=u1&DeviceId=DEV1&DeviceType=iPhone HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
refuse dot_segment_encoded 400 "POST /Microsoft-Server-ActiveSync/%%2E%%2e/Microsoft-Server-ActiveSync?Cmd=Sync&User=u1&DeviceId=DEV1&DeviceType=iPhone HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
refuse dot_segment_single 400 "POST /Microsoft-Server-ActiveSync/./?Cmd=Sync&User=u1&DeviceId=DEV1&DeviceType=iPhone HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
refuse dot_segment_absolute 400 "POST http://localhost/x/.%%2e/Microsoft-Server-ActiveSync?Cmd=Sync&User=u1&DeviceId=DEV1&DeviceType=iPhone HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"

# --- smuggling classics: the second request must never be answered ----------------
# CL.TE: a front end honouring Content-Length forwards "0\r\n\r\n" + GPOST...
refuse smuggle_cl_te 400 "${POST}Content-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGPOST /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
# TE.CL: a back end honouring Content-Length sees the chunk as a new request.
refuse smuggle_te_cl 400 "${POST}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5c\r\nGPOST /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: localhost\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n"
# TE.TE: obfuscated Transfer-Encoding that one side would ignore.
refuse smuggle_te_space_colon 400 "${POST}Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"
refuse smuggle_te_vtab 400 "${POST}Transfer-Encoding:\x0bchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"
refuse smuggle_te_twice 501 "${POST}Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
refuse smuggle_te_chunked_chunked 400 "${POST}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"
refuse smuggle_te_folded 400 "${POST}Transfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"

# --- EAS-level refusals (curl; the connection may stay open) ----------------------
eas_status() { # PATH-AND-QUERY [curl args] -> status code
	local pq=$1; shift
	eas -o /dev/null -w '%{http_code}' "$@" "$(GWURL "$pq")"
}
# eas_refused NAME STATUS REASON PATH-AND-QUERY [curl args] : answered STATUS
# by the gateway, whose access-log line gives REASON.
eas_refused() {
	local name=$1 want=$2 why=$3 pq=$4 st
	shift 4
	local n0 logged=no
	n0=$(grep -c 'event=access' "$T/gw.log")
	st=$(eas_status "$pq" "$@")
	for _ in $(seq 40); do # the worker logs once the answer is written
		if [ "$(grep -c 'event=access' "$T/gw.log")" -gt "$n0" ]; then
			grep 'event=access' "$T/gw.log" | tail -1 | grep -qF "reason=$why" && logged=yes
			break
		fi
		sleep 0.05
	done
	check "$name: $want (got $st), reason \"$why\" logged ($logged)" \
		test "$st" = "$want" -a "$logged" = yes
}
dev33=$(printf 'A%.0s' $(seq 33))
dev32=$(printf 'A%.0s' $(seq 32))
eas_refused "DeviceId of 33 characters" 400 "DeviceId missing or invalid" \
	"$EAS?Cmd=Sync&User=u1&DeviceId=$dev33&DeviceType=iPhone" -X POST -d '' -D "$T/h-dev33"
check "...with X-MS-ASError: 108 (DeviceIdMissingOrInvalid)" grep -qi '^X-MS-ASError: 108' "$T/h-dev33"
st=$(eas_status "$EAS?Cmd=Sync&User=u1&DeviceId=$dev32&DeviceType=iPhone" -X POST -d '')
check "DeviceId of 32 characters is relayed: 200 (got $st)" test "$st" = 200
# Base64 queries (the spec's example is jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l):
# one character too many is neither base64 nor a plain query; a command code
# the table does not have (5); the example with its DeviceType cut short
# (declares 10 bytes, carries 5); a User tag declaring 40 bytes, carrying 5.
eas_refused "query neither base64 nor plain" 400 "DeviceId missing or invalid" \
	"$EAS?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25lB" -X POST -d ''
eas_refused "base64 query with an unknown command code" 400 "base64 query: unknown command code" \
	"$EAS?jQUJBAhBcHBsQjY0UQAGaVBob25l" -X POST -d ''
eas_refused "base64 query truncated in its head" 400 "base64 query truncated" \
	"$EAS?jAAJBAp2MTQwRGV2aWNlAApTbWFydA==" -X POST -d ''
eas_refused "base64 query truncated in a parameter" 400 "base64 query parameter truncated" \
	"$EAS?jQkJBAhBcHBsQjY0UQAGaVBob25lCChhbGljZQ==" -X POST -d ''
st=$(eas_status "$EAS?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l" -X POST -d '')
check "the spec's base64 example itself is relayed: 200 (got $st)" test "$st" = 200
eas_refused "unknown path" 404 "not an ActiveSync or Autodiscover path" "/owa/auth/logon.aspx" -X POST -d ''
eas_refused "GET on the EAS path" 405 "ActiveSync accepts only OPTIONS and POST" "$EASQ"

# --- nothing of the above reached the backend ------------------------------------
st=$(eas_status "$EASQ&Probe=last" -X POST -d 'last' -D "$T/h-last")
check "a good request after all that is relayed: 200 (got $st)" test "$st" = 200
last=$(tr -d '\r' <"$T/h-last" | awk -F': ' 'tolower($1)=="x-request-seq" {print $2}')
sleep 0.3 # let health checks that started before it finish recording
python3 - "$T/rec" "${last:-0}" "$dev32" >"$T/accounting" <<'PY'
import os, sys
rec, last, dev32 = sys.argv[1], int(sys.argv[2], 10), sys.argv[3]
control = ("DeviceId=" + dev32 + "&", "?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l")
metas = {}
for f in os.listdir(rec):
    if f.endswith(".meta") and not f.startswith("."):
        kv = dict(l.split("=", 1) for l in open(os.path.join(rec, f)).read().splitlines() if "=" in l)
        metas[int(f[:-5], 10)] = kv
missing = [s for s in range(1, last) if s not in metas]
eas = [s for s in range(1, last) if s in metas and not metas[s]["target"].startswith("/health")
       and not any(c in metas[s]["target"] for c in control)]
print(last, len(missing), len(eas))
PY
rc=$?
check "the backend's records were read (exit $rc)" test "$rc" -eq 0
read -r lastseq missing easreq <"$T/accounting"
check "backend began $((lastseq - 1)) requests before the last one, all recorded (unfinished: $missing)" \
	test "$lastseq" -gt 1 -a "$missing" -eq 0
check "...all health checks or the two control requests (others: $easreq)" test "$easreq" -eq 0
n=$(grep -lE "target=.*(DeviceId=$dev32&|\?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l|Probe=last)" "$T/rec"/*.meta | wc -l)
check "the three control requests reached it ($n)" test "$n" -eq 3
finish
