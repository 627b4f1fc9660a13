#!/usr/bin/env bash
# A plain-HTTP listener ("http://addr:port" in listen) for deployments where a
# load balancer in front already ended TLS (SSL offload):
#  - the same classification and policy as on the TLS listener (a blocked
#    phone gets its status-129 envelope, an allowed one is relayed);
#  - X-Forwarded-Proto says http; the TLS listener next to it still works;
#  - large bodies both ways byte-exact, with the relay path the daemon chose
#    for plaintext legs (relay_method auto: splice where it was measured
#    cheaper and the kernel does it), and again with each method forced; the
#    request after a spliced upload is parsed in user space again.
source "$(dirname "$0")/lib.sh"
need python3 curl sha256sum
make_pki
EAS=/Microsoft-Server-ActiveSync
Q="$EAS?Cmd=Sync&User=alice&DeviceId=PlainDev1&DeviceType=iPhone"
PP=$(free_port)
sha() { sha256sum "$1" | cut -d' ' -f1; }
hdr() { tr -d '\r' <"$1" | awk -F': ' -v n="$2" 'tolower($1)==n {print $2; exit}'; }
plain() { curl -sS --max-time 60 "$@"; }

start_backend cas1 --record "$T/rec" || finish
GW_PORT=$(free_port)
cat >"$T/gw.conf" <<CONF
listen = [ "127.0.0.1:$GW_PORT", "http://127.0.0.1:$PP" ];
policy = { rules = ( "block DeviceId is \"PlainBlocked\"" ); };
CONF
GW_CONFIG_LISTEN=1 start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
wait_backends_up cas1

code=$(plain -o /dev/null -w '%{http_code}' -u alice:pw -X POST -d '' "http://127.0.0.1:$PP$Q")
check "plain listener: an allowed phone's Sync is relayed (HTTP $code)" test "$code" = 200
req=$(grep -l 'PlainDev1' "$T/rec"/*.req | head -1)
check "...the backend sees X-Forwarded-Proto: http" grep -qx $'X-Forwarded-Proto: http\r' "$req"
code=$(plain -o "$T/blk.body" -w '%{http_code}' -u alice:pw -X POST -d '' -H 'MS-ASProtocolVersion: 14.1' \
	"http://127.0.0.1:$PP$EAS?Cmd=Sync&User=alice&DeviceId=PlainBlocked&DeviceType=iPhone")
check "...a blocked phone gets the WBXML status envelope (HTTP $code, $(head -c 4 "$T/blk.body" | od -An -tx1 | tr -d ' '))" \
	bash -c '[ "$0" = 200 ] && [ "$(head -c 4 "$1" | od -An -tx1 | tr -d " \n")" = 03016a00 ]' "$code" "$T/blk.body"
check "...and the backend never saw it" lacks -l PlainBlocked "$T/rec"/*.req
code=$(eas -o /dev/null -w '%{http_code}' -u alice:pw -X POST -d '' "$(GWURL "$Q")")
check "the TLS listener next to it still answers (HTTP $code)" test "$code" = 200
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$GW_PORT$Q" 2>/dev/null)
check "...and does not take plain HTTP (got '$code')" test "$code" != 200

# --- large bodies between two plaintext legs -------------------------------------
spliced() { "$EASCTL" -s "$CTL" metrics | awk '/^easgate_relay_spliced_bytes_total/ {print $2}'; }
head -c 50000000 /dev/urandom >"$T/up-50m"
want=$(curl -sS -X POST -d '' "http://127.0.0.1:$BE_PORT_cas1$Q&egtest_size=100000000" | sha256sum | cut -d' ' -f1)
# bodies LABEL: a 100 MB answer (Content-Length), a 100 MB chunked answer and a
# 50 MB upload followed on the same connection by a small request.
bodies() {
	local label=$1 s0 got
	s0=$(spliced)
	got=$(plain -X POST -d '' "http://127.0.0.1:$PP$Q&egtest_size=100000000" | sha256sum | cut -d' ' -f1)
	check "$label: 100 MB answer (Content-Length) byte-exact" test "$got" = "$want"
	got=$(plain -X POST -d '' "http://127.0.0.1:$PP$Q&egtest_size=100000000&egtest_chunked=1" | sha256sum | cut -d' ' -f1)
	check "$label: 100 MB answer (chunked) byte-exact" test "$got" = "$want"
	plain -X POST -u alice:pw -H 'Content-Type: message/rfc822' --data-binary "@$T/up-50m" -o /dev/null -D "$T/h-up-$label" \
		-w '%{http_code} %{num_connects}\n' \
		"http://127.0.0.1:$PP$EAS?Cmd=SendMail&User=alice&DeviceId=PlainDev1&DeviceType=iPhone&SaveInSent=T" \
		--next -X POST -d 'next' -o /dev/null -D "$T/h-next-$label" -w '%{http_code} %{num_connects}\n' \
		"http://127.0.0.1:$PP$Q&after=upload" >"$T/next-$label"
	check "$label: 50 MB upload arrives whole (backend SHA-256 matches)" \
		test "$(hdr "$T/h-up-$label" x-echo-body-sha256)" = "$(sha "$T/up-50m")"
	check "$label: ...and the next request on the same connection is parsed and answered ($(xargs <"$T/next-$label"))" \
		test "$(xargs <"$T/next-$label")" = "200 1 200 0" -a "$(hdr "$T/h-next-$label" x-echo-body-sha256)" = "$(printf next | sha256sum | cut -d' ' -f1)"
	SPLICED=$(($(spliced) - s0))
}
status_relay=$("$EASCTL" -s "$CTL" status | sed -n 's/^relay //p')
bodies "relay_method auto ($(grep -o 'plaintext_legs=[a-z]*' <<<"$status_relay"))"
if [[ "$status_relay" == *plaintext_legs=splice* ]]; then
	check "...the kernel moved them: $SPLICED bytes spliced of the 150 MB with a Content-Length (>= 140 MB: the first bytes come with the head)" test "$SPLICED" -ge 140000000
else
	check "...user space moved them (no splice here): $SPLICED bytes spliced" test "$SPLICED" -eq 0
fi
# Forced each way (a reload re-chooses, the probe stays).
for m in user splice; do
	sed -i '/^relay_method/d' "$T/gw.conf"
	echo "relay_method = \"$m\";" >>"$T/gw.conf"
	before=$("$EASCTL" -s "$CTL" status | awk '$1=="reloads" {print $2}')
	kill -HUP "$GW_PID"
	for _ in $(seq 100); do
		[ "$("$EASCTL" -s "$CTL" status | awk '$1=="reloads" {print $2}')" -gt "$before" ] && break
		sleep 0.1
	done
	sleep 0.5 # the previous generation finishes
	check "relay_method $m: easctl status says so" bash -c '"$0" -s "$1" status | grep -q "plaintext_legs=$2 configured=$2"' "$EASCTL" "$CTL" "$m"
	bodies "relay_method $m"
	if [ "$m" = user ]; then
		check "...nothing spliced ($SPLICED)" test "$SPLICED" -eq 0
	else
		check "...the kernel moved them: $SPLICED bytes spliced of the 150 MB with a Content-Length (>= 140 MB: the first bytes come with the head)" test "$SPLICED" -ge 140000000
	fi
done

# A backend that dies mid-body while the kernel moves it: the phone's connection
# is closed (curl: exit 18, partial file), not left hanging.
python3 "$EG_ROOT/tests/integration/relay/cutbackend.py" --port-file "$T/cut.port" >"$T/cut.log" 2>&1 &
EG_PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/cut.port" ] && break; sleep 0.05; done
kill "$GW_PID"
wait "$GW_PID" 2>/dev/null
GW_CONFIG_LISTEN=1 start_gateway -c "$T/gw.conf" --backend "cut=127.0.0.1:$(cat "$T/cut.port"),health=/health" || finish
wait_backends_up cut
s0=$(spliced)
t0=$(date +%s%N)
plain -X POST -d '' -o "$T/cut.body" "http://127.0.0.1:$PP$Q&cut=clen" 2>/dev/null
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
check "backend cut mid-body (1,000,000 announced, 100,000 sent, spliced $(($(spliced) - s0)) bytes): curl exit $rc after $ms ms with $(stat -c %s "$T/cut.body") bytes" \
	test "$rc" = 18 -a "$ms" -lt 3000 -a "$(stat -c %s "$T/cut.body")" = 100000
finish
