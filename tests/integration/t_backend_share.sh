#!/usr/bin/env bash
# An identity's idle backend connection serves that identity's next request on
# another client connection of the same worker (load balancers in front open
# several connections, each carrying many phones: without this every request
# of a user whose connection sits idle elsewhere opened a new one), but only
# a connection the backend never authenticated itself:
#  - alice on client connection A, then alice on client connection B while A
#    stays open: B's request goes over the backend connection A's opened;
#  - bob on B never gets alice's connection;
#  - erin's NTLM-authenticated connection (A') is never used by a request on
#    another client connection: erin with no credentials there gets 401, not
#    erin's mailbox.
source "$(dirname "$0")/lib.sh"
need python3
REL=$EG_ROOT/tests/integration/relay
EAS=/Microsoft-Server-ActiveSync

python3 "$REL/iisbackend.py" --port-file "$T/iis.port" --log "$T/iis.log" >"$T/iis.out" 2>&1 &
EG_PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/iis.port" ] && break; sleep 0.05; done
[ -s "$T/iis.port" ] || { fail "iisbackend did not start"; finish; }
make_pki
PP=$(free_port) # taken just before the start: another test may bind it meanwhile
GW_PORT=$(free_port)
cat >"$T/gw.conf" <<CONF
listen = [ "127.0.0.1:$GW_PORT", "http://127.0.0.1:$PP" ];
CONF
# One worker: both client connections must be on the same one.
GW_WORKERS=1 GW_CONFIG_LISTEN=1 start_gateway -c "$T/gw.conf" \
	--backend "iis=127.0.0.1:$(cat "$T/iis.port"),health=/health" || finish
wait_backends_up iis || fail "backend never came up"

req() { # USER [extra JSON members]: a Basic-authenticated Sync
	local cred
	cred=$(printf '%s:pw' "$1" | base64 -w0)
	printf '{"t": "%s?Cmd=Sync&User=%s&DeviceId=Dev%s&DeviceType=iPhone", "h": {"Authorization": "Basic %s"}%s}\n' \
		"$EAS" "$1" "$1" "$cred" "${2:-}"
}
noauth() { # USER [AUTH] [extra]
	local h=""
	[ -n "${2:-}" ] && h=", \"h\": {\"Authorization\": \"$2\"}"
	printf '{"t": "%s?Cmd=Sync&User=%s&DeviceId=Dev%s&DeviceType=WP"%s%s}\n' "$EAS" "$1" "$1" "$h" "${3:-}"
}
field() { # FILE I NAME
	python3 -c 'import json,sys
rs = [json.loads(l) for l in open(sys.argv[1]) if "\"i\"" in l]
r = next((r for r in rs if r["i"] == int(sys.argv[2])), {})
k = sys.argv[3]
print(r.get(k, "") if k in ("status", "body") else r.get("headers", {}).get(k, ""))' "$1" "$2" "$3"
}
mismatches() { cat "$T/iis.log" 2>/dev/null | grep -c '^mismatch'; }
wait_lines() { # FILE N: until FILE has N lines (bounded)
	for _ in $(seq 200); do
		[ "$(wc -l <"$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
		sleep 0.05
	done
	return 1
}

# --- Basic: alice's idle connection serves her on another client connection ----
m0=$(mismatches)
{ req alice; req alice ', "pause": 3'; } >"$T/a.script"
python3 "$REL/kaclient.py" --port "$PP" "$T/a.script" >"$T/a.out" &
ca=$!
wait_lines "$T/a.out" 1 || fail "client A got no first answer"
{ req alice; req bob; } >"$T/b.script"
python3 "$REL/kaclient.py" --port "$PP" "$T/b.script" >"$T/b.out"
check "client B ran" test "$?" = 0
wait "$ca"
check "client A ran" test "$?" = 0
a0=$(field "$T/a.out" 0 x-conn)
b0=$(field "$T/b.out" 0 x-conn)
b1=$(field "$T/b.out" 1 x-conn)
check "alice on A, then alice on B while A is open: all served as alice ($(field "$T/a.out" 0 x-served-as) $(field "$T/b.out" 0 x-served-as) $(field "$T/a.out" 1 x-served-as))" \
	test "$(field "$T/a.out" 0 x-served-as) $(field "$T/b.out" 0 x-served-as) $(field "$T/a.out" 1 x-served-as)" = "alice alice alice"
check "...B's request took the backend connection A's opened for alice ($a0 -> $b0)" test -n "$a0" -a "$a0" = "$b0"
check "...bob on B got his own connection ($b1), served as bob ($(field "$T/b.out" 1 x-served-as))" \
	test -n "$b1" -a "$b1" != "$a0" -a "$(field "$T/b.out" 1 x-served-as)" = bob
check "...the backend saw no connection carry two users ($(($(mismatches) - m0)) mismatches)" test "$(mismatches)" -eq "$m0"

# --- NTLM: an authenticated connection never leaves its client connection -----
{
	noauth erin "NTLM type1"
	noauth erin "NTLM type3"
	noauth erin "" ', "pause": 3'
} >"$T/n.script"
python3 "$REL/kaclient.py" --port "$PP" "$T/n.script" >"$T/n.out" &
cn=$!
wait_lines "$T/n.out" 2 || fail "the NTLM client got no second answer"
{ noauth erin; req erin; } >"$T/d.script"
python3 "$REL/kaclient.py" --port "$PP" "$T/d.script" >"$T/d.out"
check "client D ran" test "$?" = 0
wait "$cn"
e1=$(field "$T/n.out" 1 x-conn)
check "erin's NTLM handshake on one client connection: 401 then 200 as erin ($(field "$T/n.out" 0 status) $(field "$T/n.out" 1 status):$(field "$T/n.out" 1 x-served-as))" \
	test "$(field "$T/n.out" 0 status) $(field "$T/n.out" 1 status):$(field "$T/n.out" 1 x-served-as)" = "401 200:erin"
check "...erin without credentials on another client connection: 401, not her mailbox ($(field "$T/d.out" 0 status):$(field "$T/d.out" 0 x-served-as), connection $(field "$T/d.out" 0 x-conn) vs $e1)" \
	test "$(field "$T/d.out" 0 status)" = 401 -a "$(field "$T/d.out" 0 x-conn)" != "$e1"
check "...erin with Basic there: not on the NTLM connection ($(field "$T/d.out" 1 x-conn) vs $e1)" \
	test "$(field "$T/d.out" 1 status)" = 200 -a "$(field "$T/d.out" 1 x-conn)" != "$e1"
check "...the authenticated connection still serves erin where it was made ($(field "$T/n.out" 2 status):$(field "$T/n.out" 2 x-served-as) on $(field "$T/n.out" 2 x-conn))" \
	test "$(field "$T/n.out" 2 status):$(field "$T/n.out" 2 x-served-as)" = "200:erin" -a "$(field "$T/n.out" 2 x-conn)" = "$e1"
finish
