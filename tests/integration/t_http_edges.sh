#!/usr/bin/env bash
# HTTP edges of the relay, on the TLS and the plain listener:
#  - a refused request that announces a 10 GB body is answered and the
#    connection closed at once while the client is still sending (the answer
#    still arrives: the gateway shuts its side, drains briefly, then closes,
#    so no reset destroys the answer), instead of reading and discarding for
#    as long as the client sends; a local answer to a client that asked for
#    the close says Connection: close and closes;
#  - HTTP/1.0 clients (curl --http1.0, and raw bytes without Host) never get
#    a chunked answer: the body arrives whole and byte-exact; the backend gets
#    a Host header;
#  - a dot-segment ("..", ".", raw or percent-encoded) in the path is refused
#    400: nothing can climb out of the backend's path prefix, and the backend
#    receives only /be/... paths.
source "$(dirname "$0")/lib.sh"
need python3 curl
make_pki
REL=$EG_ROOT/tests/integration/relay
EAS=/Microsoft-Server-ActiveSync
Q="$EAS?Cmd=Sync&User=alice&DeviceId=EdgeDev1&DeviceType=iPhone"
PP=$(free_port)
start_backend cas1 --record "$T/rec" --prefix /be || finish
GW_PORT=$(free_port)
cat >"$T/gw.conf" <<CONF
listen = [ "127.0.0.1:$GW_PORT", "http://127.0.0.1:$PP" ];
CONF
GW_CONFIG_LISTEN=1 start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,prefix=/be,health=/health" || finish
wait_backends_up cas1 || fail "backend never came up"

# --- a refused request with a 10 GB body: answered, then closed at once -----------
printf 'POST /owa/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000000\r\n\r\n' >"$T/big.head"
for leg in tls plain; do
	if [ $leg = tls ]; then
		args=(--port "$GW_PORT" --cafile "$PKI/root.pem")
	else
		args=(--port "$PP")
	fi
	read -r st secs sent reset < <(python3 "$REL/bigpost.py" "${args[@]}" --seconds 8 "$T/big.head" |
		python3 -c 'import json,sys; r = json.loads(sys.stdin.read())
print(",".join(map(str, r["statuses"])) or "none", r["closed_s"], r["sent"], r["reset"])')
	check "$leg: 10 GB announced to a refused path: the client got the 404 ($st) and the gateway ended the connection after ${secs} s (< 3) while the client kept sending ($((sent / 1048576)) MiB taken)" \
		bash -c '[ "$0" = 404 ] && [ "$1" != None ] && [ "$(echo "$1 < 3" | bc)" = 1 ]' "$st" "$secs"
done

# A local answer to a client that asked for the close says so and closes.
printf 'POST /owa/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n' >"$T/close.req"
read -r st cl secs hdr < <(python3 "$REL/rawtls.py" --port "$GW_PORT" --cafile "$PKI/root.pem" --wait 5 "$T/close.req" |
	python3 -c 'import json,sys; r = json.loads(sys.stdin.read())
print(",".join(map(str, r["statuses"])) or "none", r["closed"], r["close_s"], "close" if "\nconnection: close" in r["head"].lower() else "-")')
check "Connection: close on a refused request: 404 with Connection: close ($st, $hdr), closed after ${secs} s ($cl)" \
	bash -c '[ "$0" = 404 ] && [ "$1" = close ] && [ "$2" = True ] && [ "$(echo "$3 < 2" | bc)" = 1 ]' "$st" "$hdr" "$cl" "$secs"

# --- HTTP/1.0 -------------------------------------------------------------------------
want=$(curl -sS -X POST -d '' "http://127.0.0.1:$BE_PORT_cas1/be$Q&egtest_size=70000" | sha256sum | cut -d' ' -f1)
for leg in tls plain; do
	if [ $leg = tls ]; then url=$(GWURL "$Q&egtest_size=70000&egtest_chunked=1&leg=$leg"); else
		url="http://127.0.0.1:$PP$Q&egtest_size=70000&egtest_chunked=1&leg=$leg"; fi
	curl -sS --http1.0 --cacert "$PKI/root.pem" --max-time 10 -X POST -d '' -D "$T/h10-$leg.h" \
		-o "$T/h10-$leg.body" "$url"
	te=$(tr -d '\r' <"$T/h10-$leg.h" | awk -F': ' 'tolower($1)=="transfer-encoding" {print $2}')
	check "$leg: curl --http1.0, backend answers chunked: no chunked to the client (Transfer-Encoding '${te}'), body byte-exact" \
		test -z "$te" -a "$(sha256sum <"$T/h10-$leg.body" | cut -d' ' -f1)" = "$want"
done
# Raw HTTP/1.0 without Host, on the plain listener: what a load balancer's
# health probe or an old client sends.
printf 'POST %s HTTP/1.0\r\nContent-Length: 0\r\n\r\n' "$Q&egtest_size=70000&egtest_chunked=1&leg=raw10" >"$T/raw10.req"
python3 - "$PP" "$T/raw10.req" "$T/raw10.resp" <<'PY' || fail "raw HTTP/1.0 client failed"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(open(sys.argv[2], "rb").read())
got = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    got += d
open(sys.argv[3], "wb").write(got)
PY
read -r status te body_sha < <(python3 -c 'import hashlib,sys
r = open(sys.argv[1], "rb").read()
head, _, body = r.partition(b"\r\n\r\n")
lines = head.decode("latin-1").split("\r\n")
te = [l.split(":", 1)[1].strip() for l in lines[1:] if l.lower().startswith("transfer-encoding:")]
print(lines[0].split(" ")[1] if lines[0] else "none", te[0] if te else "-", hashlib.sha256(body).hexdigest())' "$T/raw10.resp")
check "raw HTTP/1.0 without Host: answered $status, not chunked ($te), the body read to the close is byte-exact" \
	test "$status" = 200 -a "$te" = - -a "$body_sha" = "$want"
rec=$(grep -l 'leg=raw10' "$T/rec"/*.meta | head -1)
check "...and the backend got a Host header ($(tr -d '\r' <"${rec%.meta}.req" 2>/dev/null | grep -i '^Host:' | head -1))" \
	bash -c 'tr -d "\r" <"$0" | sed "/^$/q" | grep -qi "^Host: ."' "${rec%.meta}.req"

# --- dot-segments never leave the gateway -----------------------------------------------
n=0
for p in "/../Microsoft-Server-ActiveSync" "/%2e%2e/Microsoft-Server-ActiveSync" "/.%2E/Microsoft-Server-ActiveSync" \
	"/Microsoft-Server-ActiveSync/../Microsoft-Server-ActiveSync" "/./Microsoft-Server-ActiveSync" \
	"/x/%2E%2e/Microsoft-Server-ActiveSync" "/Microsoft-Server-ActiveSync/."; do
	n=$((n + 1))
	code=$(curl -sS --path-as-is --cacert "$PKI/root.pem" --max-time 10 -o /dev/null -w '%{http_code}' -X POST -d '' \
		"$(GWURL "$p?Cmd=Sync&User=alice&DeviceId=Dot$n&DeviceType=iPhone")")
	check "path $p: refused 400 ($code)" test "$code" = 400
done
code=$(curl -sS --cacert "$PKI/root.pem" --max-time 10 -o /dev/null -w '%{http_code}' -X POST -d '' "$(GWURL "$Q&dots=control")")
check "a plain EAS path is relayed ($code)" test "$code" = 200
targets=$(grep -h '^target=' "$T/rec"/*.meta | grep -v '^target=/be/health$' | sort -u)
check "the backend received only /be/Microsoft-Server-ActiveSync paths, none with a dot-segment ($(wc -l <<<"$targets") targets)" \
	bash -c '! grep -v "^target=/be/Microsoft-Server-ActiveSync?" <<<"$0" | grep -q . && ! grep -qi "Dot[0-9]" <<<"$0"' "$targets"
finish
