#!/usr/bin/env bash
# Reload under load (issue #5): a bounded load of keep-alive Sync requests
# (8 connections, short idle pauses) and idle Ping long-polls (6, held 3 s by
# the backend) runs while the configuration is reloaded 10 times, by SIGHUP
# (what `systemctl reload` sends) and twice by `easctl reload`:
#  - zero failed requests and zero dropped connections: every request gets a
#    complete 2xx answer (a Ping answered by a draining worker with WBXML
#    Ping Status 1 is a proper answer), no reset, no refused connect, no
#    request left without an answer; completions never stop for a second;
#  - reload 5 uses a broken file: refused (easctl exit 3), `easctl status`
#    shows reload_failures 1 and last_reload_error with file:line, and the
#    rules of the previous config stay in force;
#  - each good reload's rule is in force right after it (a block rule for
#    DeviceId ProbeN: that device gets EAS status 129, the one before is let
#    through again); reload 7 also swaps the certificate, which new
#    handshakes then get;
#  - afterwards only the current workers remain, none hit the drain deadline.
source "$(dirname "$0")/lib.sh"
need python3 curl openssl
make_pki
"$EG_ROOT/tools/mkcerts.sh" "$T/pki2" localhost 127.0.0.1 ::1 >/dev/null
cat "$PKI/root.pem" "$T/pki2/root.pem" >"$T/roots.pem"
LOAD=$EG_ROOT/tests/loadgen/eas_load.py
start_backend cas1 --hold-ping-ms 3000 || finish

# write_conf N [CERT_DIR]: the config of reload N (block rule for ProbeN).
write_conf() {
	local pki=${2:-$PKI}
	cat >"$T/gw.conf" <<EOF
access_log = false;
tls = {
  certificates = ( { cert = "$pki/server.pem"; key = "$pki/server.key"; } );
  trust_file = "$T/roots.pem";
};
timeouts = { drain = 20; };
policy = {
  rules = ( "block DeviceId is \"Probe$1\" name \"probe$1\"" );
};
EOF
}
write_conf 0
GW_CONFIG_TLS=1 start_gateway -c "$T/gw.conf" --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" ||
	finish
wait_backends_up cas1 || fail "backend cas1 not up"

# probe DEVICE -> "blocked" (gateway answered EAS 129), "relayed" or "other:CODE"
probe() {
	local hdr
	hdr=$(curl -sS --cacert "$T/roots.pem" --max-time 10 -D - -o "$T/probe.body" -u probe:secret \
		-X POST -H 'MS-ASProtocolVersion: 14.1' -H 'User-Agent: Apple-iPhone4C1/1002.142' \
		-H 'Content-Type: application/vnd.ms-sync.wbxml' --data-binary @/dev/null \
		"$(GWURL "/Microsoft-Server-ActiveSync?Cmd=Sync&User=probe&DeviceId=$1&DeviceType=iPhone")")
	local code
	code=$(awk 'NR==1 { print $2 }' <<<"$hdr")
	if grep -qi '^X-Backend:' <<<"$hdr"; then
		echo relayed
	elif [ "$code" = 200 ] && grep -q 129 "$T/probe.body"; then
		echo blocked
	else
		echo "other:$code"
	fi
}
status_field() { "$EASCTL" -s "$CTL" status | awk -v k="$1" '$1==k { $1=""; sub(/^ /, ""); print }'; }
wait_reloads() {
	for _ in $(seq 100); do
		[ "$(status_field reloads)" = "$1" ] && return 0
		sleep 0.05
	done
	return 1
}
check "before the reloads: Probe0 is blocked by the config rule" test "$(probe Probe0)" = blocked

python3 "$LOAD" --port "$GW_PORT" --cafile "$T/roots.pem" --conns 8 --pollers 6 --gap-ms 0,5 \
	--duration 90 --stop-file "$T/stop" --ready-file "$T/load.ready" >"$T/load.json" 2>"$T/load.err" &
LOAD_PID=$!
EG_PIDS+=($LOAD_PID)
for _ in $(seq 50); do [ -e "$T/load.ready" ] && break; sleep 0.1; done
sleep 1 # the long-polls are held by the backend now

bad_probes=0
for i in $(seq 10); do
	if [ "$i" -eq 5 ]; then
		# A broken file: everything valid, then one bad line.
		write_conf 5
		echo 'limits = { max_head = ; };' >>"$T/gw.conf"
		badline=$(wc -l <"$T/gw.conf")
	elif [ "$i" -ge 7 ]; then
		write_conf "$i" "$T/pki2"
	else
		write_conf "$i"
	fi
	if [ "$i" -ne 2 ] && [ "$i" -ne 5 ]; then
		kill -HUP "$GW_PID"
		wait_reloads "$i" || fail "reload $i (SIGHUP) not seen by easctl status"
	else
		out=$(timeout 10 "$EASCTL" -s "$CTL" reload 2>&1)
		rc=$?
		if [ "$i" -eq 5 ]; then
			check "broken file: easctl reload exits 3 and names gw.conf:$badline ($out)" \
				bash -c '[ "$1" -eq 3 ] && grep -q "reload refused: .*gw.conf:$2" <<<"$0"' \
				"$out" "$rc" "$badline"
		else
			check "easctl reload (good file) answers and exits 0 (rc=$rc: $out)" test "$rc" -eq 0
		fi
	fi
	if [ "$i" -eq 5 ]; then
		st=$("$EASCTL" -s "$CTL" status)
		check "broken file: easctl status shows reload_failures 1" grep -qx 'reload_failures 1' <<<"$st"
		check "broken file: last_reload_error names gw.conf:$badline" \
			grep -q "^last_reload_error .*gw.conf:$badline" <<<"$st"
		check "broken file: the rules of reload 4 stay in force (Probe4 blocked, Probe5 relayed)" \
			test "$(probe Probe4) $(probe Probe5)" = "blocked relayed"
	else
		got="$(probe "Probe$i") $(probe "Probe$((i - 1))")"
		[ "$i" -eq 6 ] && got="$(probe Probe6) $(probe Probe4)"
		if [ "$got" != "blocked relayed" ]; then
			bad_probes=$((bad_probes + 1))
			echo "  reload $i: probes = $got"
		fi
	fi
	sleep 0.4
done
check "after each good reload its rule is in force at once ($bad_probes misses)" test "$bad_probes" -eq 0
touch "$T/stop"
wait "$LOAD_PID"
echo "  load: $(cut -c1-700 "$T/load.json")"
# The load's summary as shell variables L_<counter> (0 when absent).
vars=$(python3 - "$T/load.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
keys = ["failures", "idle_reset", "hung_clients", "ok_Sync", "sent_Sync", "Sync_by_backend",
        "ok_Ping", "sent_Ping", "Ping_by_gateway", "connections", "close", "idle_close"]
for k in keys:
    print("L_%s=%d" % (k, d.get(k, 0)))
ps = d.get("per_second", [])
print("L_per_second='%s'" % " ".join(map(str, ps)))
print("L_min_second=%d" % (min(ps) if ps else 0))
print("L_first_failures='%s'" % json.dumps(d.get("first_failures", [])[:3]).replace("'", ""))
PY
)
rc=$?
# Without the summary every check below would read unset variables.
check "the load's summary is readable (exit $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || finish
eval "$vars"
check "zero failed requests ($L_failures of $((L_sent_Sync + L_sent_Ping)); first: $L_first_failures)" \
	test "$L_failures" -eq 0
check "zero dropped connections (idle resets: $L_idle_reset)" test "$L_idle_reset" -eq 0
check "every client stopped in time (no request hung)" test "$L_hung_clients" -eq 0
check "keep-alive Syncs all relayed to the backend ($L_Sync_by_backend of $L_ok_Sync, >= 300)" \
	test "$L_ok_Sync" -ge 300 -a "$L_Sync_by_backend" -eq "$L_ok_Sync"
check "long-polls all answered ($L_ok_Ping of $L_sent_Ping; $L_Ping_by_gateway by a draining worker)" \
	test "$L_ok_Ping" -eq "$L_sent_Ping" -a "$L_Ping_by_gateway" -ge 1
check "completions never paused for a second (per second: $L_per_second)" test "$L_min_second" -gt 0

st=$("$EASCTL" -s "$CTL" status)
check "10 reloads counted, the broken one refused" \
	bash -c 'grep -qx "reloads 10" <<<"$0" && grep -qx "reload_failures 1" <<<"$0"' "$st"
check "the last reload's rule is in force (Probe10 blocked, Probe9 relayed)" \
	test "$(probe Probe10) $(probe Probe9)" = "blocked relayed"
out=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$GW_PORT" -servername localhost \
	-CAfile "$T/pki2/root.pem" -verify_return_error 2>&1)
check "new handshakes get the certificate swapped in by reload 7" grep -q "Verify return code: 0" <<<"$out"
for _ in $(seq 50); do [ "$(pgrep -c -P "$GW_PID")" -le 2 ] && break; sleep 0.1; done
check "only the 2 current workers remain ($(pgrep -c -P "$GW_PID"))" test "$(pgrep -c -P "$GW_PID")" -eq 2
check "no worker hit the drain deadline" lacks -q "event=drain_deadline" "$T/gw.log"
check "no worker crashed" lacks -q "event=worker_exit.*signal=[1-9]" "$T/gw.log"
finish
