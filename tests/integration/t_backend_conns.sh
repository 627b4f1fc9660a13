#!/usr/bin/env bash
# Backend connections belong to one (client connection, identity), and only
# the bytes a response's framing declares ever reach a phone:
#  - on a plain listener (a TLS-offloading load balancer in front carries many
#    phones on one connection), alice, bob, carol and dave on one client
#    connection each get their own backend connection, and find it again on
#    their next request; a backend that authenticates connections (NTLM, as
#    IIS does) never serves one user's request on another's connection;
#  - the set per client connection is bounded (8, least recently used out);
#  - a backend that sends more than its response's framing declares (after a
#    Content-Length body, a 204, a 304, a HEAD answer, an interim 100, or
#    later on the idle connection) never gets the extra bytes to a phone and
#    its connection is not reused;
#  - a user name over 95 bytes is one identity at decision and at result (one
#    inventory row, with its result).
source "$(dirname "$0")/lib.sh"
need python3 curl
make_pki
REL=$EG_ROOT/tests/integration/relay
EAS=/Microsoft-Server-ActiveSync
PP=$(free_port)

python3 "$REL/iisbackend.py" --port-file "$T/iis.port" --log "$T/iis.log" >"$T/iis.out" 2>&1 &
EG_PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/iis.port" ] && break; sleep 0.05; done
[ -s "$T/iis.port" ] || { fail "iisbackend did not start"; finish; }
GW_PORT=$(free_port)
cat >"$T/gw.conf" <<CONF
listen = [ "127.0.0.1:$GW_PORT", "http://127.0.0.1:$PP" ];
CONF
GW_CONFIG_LISTEN=1 start_gateway -c "$T/gw.conf" --backend "iis=127.0.0.1:$(cat "$T/iis.port"),health=/health" || finish
wait_backends_up iis || fail "backend never came up"

# req USER [mode] [extra JSON members] : one kaclient script line, Basic auth.
req() {
	local u=$1 mode=${2:-} extra=${3:-}
	local cred
	cred=$(printf '%s:pw' "$u" | base64 -w0)
	printf '{"t": "%s?Cmd=Sync&User=%s&DeviceId=Dev%s&DeviceType=iPhone%s", "h": {"Authorization": "Basic %s"}%s}\n' \
		"$EAS" "$u" "${u:0:8}" "${mode:+&mode=$mode}" "$cred" "$extra"
}
# noauth USER [AUTH] [extra] : a request with no or an NTLM Authorization header.
noauth() {
	local h=""
	[ -n "${2:-}" ] && h=", \"h\": {\"Authorization\": \"$2\"}"
	printf '{"t": "%s?Cmd=Sync&User=%s&DeviceId=Dev%s&DeviceType=WP"%s%s}\n' "$EAS" "$1" "$1" "$h" "${3:-}"
}
run() { python3 "$REL/kaclient.py" --port "$PP" "$1" >"$2"; }
# field FILE I NAME : response I's header NAME ("" if absent); status/body by name.
field() {
	python3 -c 'import json,sys
rs = [json.loads(l) for l in open(sys.argv[1]) if "\"i\"" in l]
r = next((r for r in rs if r["i"] == int(sys.argv[2])), {})
k = sys.argv[3]
print(r.get(k, "") if k in ("status", "body") else r.get("headers", {}).get(k, ""))' "$1" "$2" "$3"
}
planted() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["planted"])' "$1"; }
mismatches() { cat "$T/iis.log" 2>/dev/null | grep -c '^mismatch'; }

# --- four users on one client connection ------------------------------------------
m0=$(mismatches)
{ for u in alice bob carol dave alice bob carol dave; do req $u; done; } >"$T/four.script"
run "$T/four.script" "$T/four.out"
st=$(for i in $(seq 0 7); do field "$T/four.out" $i status; done | xargs)
check "alice, bob, carol, dave twice on one client connection: all 200 ($st)" test "$st" = "200 200 200 200 200 200 200 200"
served=$(for i in $(seq 0 7); do field "$T/four.out" $i x-served-as; done | xargs)
check "...each served as itself ($served)" test "$served" = "alice bob carol dave alice bob carol dave"
check "...the backend saw no connection carry two users ($(($(mismatches) - m0)) mismatches)" test "$(mismatches)" -eq "$m0"
conns=$(for i in $(seq 0 7); do field "$T/four.out" $i x-conn; done | xargs)
read -r c0 c1 c2 c3 c4 c5 c6 c7 <<<"$conns"
check "...four backend connections, and each user found its own again ($conns)" \
	test "$(printf '%s\n' $c0 $c1 $c2 $c3 | sort -u | wc -l)" -eq 4 -a "$c0 $c1 $c2 $c3" = "$c4 $c5 $c6 $c7"

# --- NTLM: the connection is the credential ----------------------------------------
m0=$(mismatches)
{
	noauth erin "NTLM type1"
	noauth erin "NTLM type3"
	req frank
	noauth erin
	noauth grace
	req frank
	noauth erin
} >"$T/ntlm.script"
run "$T/ntlm.script" "$T/ntlm.out"
got=$(for i in $(seq 0 6); do echo "$(field "$T/ntlm.out" $i status):$(field "$T/ntlm.out" $i x-served-as)"; done | xargs)
check "NTLM handshake, then frank, erin (no credentials: the connection's), grace (none), frank, erin: $got" \
	test "$got" = "401:- 200:erin 200:frank 200:erin 401:- 200:frank 200:erin"
e1=$(field "$T/ntlm.out" 1 x-conn)
check "...erin's requests all on her authenticated connection ($(field "$T/ntlm.out" 0 x-conn) $e1 $(field "$T/ntlm.out" 3 x-conn) $(field "$T/ntlm.out" 6 x-conn))" \
	test "$(field "$T/ntlm.out" 0 x-conn) $(field "$T/ntlm.out" 3 x-conn) $(field "$T/ntlm.out" 6 x-conn)" = "$e1 $e1 $e1"
check "...grace never reached erin's connection ($(field "$T/ntlm.out" 4 x-conn)), no mismatch ($(($(mismatches) - m0)))" \
	test "$(field "$T/ntlm.out" 4 x-conn)" != "$e1" -a "$(mismatches)" -eq "$m0"

# --- the set is bounded: ten users, eight connections kept ------------------------------
bconns() { "$EASCTL" -s "$CTL" metrics | awk -F'} ' '/^easgate_backend_connections\{backend="iis"\}/ {print $2}'; }
for _ in $(seq 50); do [ "$(bconns)" = 0 ] && break; sleep 0.1; done
{
	for _ in 1 2; do for u in u1 u2 u3 u4 u5 u6 u7 u8 u9 u10; do req $u; done; done
	req u10 "" ', "pause": 1.5'
} >"$T/ten.script"
run "$T/ten.script" "$T/ten.out" &
ten=$!
# The client pauses 1.5 s after its 20th answer: count then.
for _ in $(seq 200); do
	[ "$(wc -l <"$T/ten.out")" -ge 20 ] && break
	sleep 0.05
done
held=$(bconns)
wait "$ten"
st=$(for i in $(seq 0 20); do field "$T/ten.out" $i status; done | sort | uniq -c | xargs)
check "ten users round-robin on one client connection: all 200 ($st)" test "$st" = "21 200"
check "...the gateway kept 8 backend connections for it, no more ($held)" test "$held" = 8

# --- bytes beyond a response's framing --------------------------------------------
# desync SHAPE MODE [first-request JSON] : the first answer carries extra bytes;
# the next request on the same client connection must get its own answer.
desync() {
	local label=$1 mode=$2 first=${3:-}
	[ -n "$first" ] || first=$(req alice "$mode")
	{ echo "$first"; req alice "" ', "pause": 0.3'; } >"$T/ds-$mode.script"
	run "$T/ds-$mode.script" "$T/ds-$mode.out"
	local s0 s1 c0 c1 p
	s0=$(field "$T/ds-$mode.out" 0 status)
	s1="$(field "$T/ds-$mode.out" 1 status) $(field "$T/ds-$mode.out" 1 body) planted=$(field "$T/ds-$mode.out" 1 x-planted)"
	c0=$(field "$T/ds-$mode.out" 0 x-conn)
	c1=$(field "$T/ds-$mode.out" 1 x-conn)
	p=$(planted "$T/ds-$mode.out")
	check "$label: first answered $s0, the next request got the backend's own answer ($s1) on a new backend connection ($c0 -> $c1)" \
		test "$s1" = "200 ok planted=" -a -n "$c1" -a "$c0" != "$c1"
	check "$label: no byte of the extra response reached the phone (planted=$p)" test "$p" = False
}
desync "Content-Length 5, planted response in the same write" desync
desync "204 followed by a planted response" 204_body
desync "304 followed by a planted response" 304_body
desync "100 Continue, the answer, a planted response" 100_then
cred=$(printf 'alice:pw' | base64 -w0)
desync "HEAD answered with 4 body bytes" head_body \
	"{\"m\": \"HEAD\", \"t\": \"/autodiscover/autodiscover.xml?User=alice&mode=head_body\", \"h\": {\"Authorization\": \"Basic $cred\"}}"
# Extra bytes that come later, on the idle connection, before the next request.
{ req alice late; req alice "" ', "pause": 0.4'; } >"$T/ds-late.script"
run "$T/ds-late.script" "$T/ds-late.out"
check "a planted response sent 100 ms after the answer, on the idle connection: the next request got the backend's own answer ($(field "$T/ds-late.out" 1 status) $(field "$T/ds-late.out" 1 body)), nothing planted ($(planted "$T/ds-late.out"))" \
	test "$(field "$T/ds-late.out" 1 status) $(field "$T/ds-late.out" 1 body) $(planted "$T/ds-late.out")" = "200 ok False"
check "...on a new backend connection ($(field "$T/ds-late.out" 0 x-conn) -> $(field "$T/ds-late.out" 1 x-conn))" \
	test "$(field "$T/ds-late.out" 0 x-conn)" != "$(field "$T/ds-late.out" 1 x-conn)"
check "the gateway logged the backend's extra bytes" grep -q 'event=backend_error.*after' "$T/gw.log"

# --- a user name over 95 bytes: one identity ---------------------------------------
long=$(printf 'u%.0s' $(seq 120))
code=$(curl -sS -o /dev/null -w '%{http_code}' -u "$long:pw" -X POST -d '' --max-time 10 \
	"http://127.0.0.1:$PP$EAS?Cmd=Sync&User=$long&DeviceId=LongUser1&DeviceType=iPhone")
check "a 120-byte user name is relayed ($code)" test "$code" = 200
rows=""
for _ in $(seq 50); do
	rows=$("$EASCTL" -s "$CTL" devices --device-id LongUser1 --format json 2>/dev/null)
	python3 -c 'import json,sys; d = json.loads(sys.argv[1]); sys.exit(0 if d and all(r.get("last_success", "-") != "-" for r in d) else 1)' "$rows" 2>/dev/null && break
	sleep 0.1
done
read -r nrows users status < <(python3 -c 'import json,sys
d = json.loads(sys.argv[1] or "[]")
print(len(d), ",".join(str(len(r.get("user", ""))) for r in d) or "-", ",".join("yes" if r.get("last_success", "-") != "-" else "no" for r in d) or "-")' "$rows")
check "...one inventory row for it ($nrows), with the whole user name (lengths $users) and its successful result (last_success: $status)" \
	test "$nrows" = 1 -a "$users" = 120 -a "$status" = yes
finish
