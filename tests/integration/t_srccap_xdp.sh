#!/usr/bin/env bash
# The per-source connection cap in the kernel (tests/integration/xdp/netns.sh:
# phone netns 198.18.0.2 and .3 <-veth-> gateway netns 198.18.0.1:443, XDP on
# veth-gw, limits.max_connections_per_source = 10):
#  1. 10 TLS connections from 198.18.0.2 are held; the worker that took the
#     10th wrote the source into src_cap (bpftool shows it by field name:
#     action drop, conns 10, cap 10, expiring within SRCADMIT_XDP_TTL_S);
#     past that first expiry the daemon has rewritten it (the source is still
#     at its cap), so what follows does not depend on how fast it runs;
#  2. the source's next 5 connection attempts end in XDP: xdp_stats CONN_CAP
#     rises, no connection reaches the daemon (its user-space refusal count
#     stays 0) and the clients time out;
#  3. a phone from 198.18.0.3 syncs meanwhile, through the same program;
#  4. once the 10 close, the entry is gone and 198.18.0.2 connects again.
# Root only (netns, XDP, bpffs); pins go to /sys/fs/bpf/easgate-test-<pid>.
source "$(dirname "$0")/lib.sh"
need_root
need bpftool jq nsenter ip python3 curl
source "$EG_ROOT/tests/integration/xdp/netns.sh"
trap 'cleanup; xn_down' EXIT
PEER=$EG_ROOT/tests/integration/slow/slowpeer.py
EAS=/Microsoft-Server-ActiveSync
GOOD_IP=198.18.0.3

make_pki gw.xdp.test "$XN_GW_IP"
xn_up || { fail "network namespaces and veth pair"; finish; }
in_phone ip addr add "$GOOD_IP/24" dev "$XN_PHONE_IF" || { fail "second phone address"; finish; }
xn_backend cas1 || finish
XN_CONF_EXTRA='limits = { max_connections_per_source = 10; }; timeouts = { request_head = 600; };' \
	xn_gateway_conf "$BE_PORT_cas1"
xn_gateway || finish
wait_backends_up cas1 || fail "backend cas1 up"

peer() { # NAME COUNT [args]: idle TLS connections from the phone's first address
	local name=$1 n=$2; shift 2
	rm -f "$T/$name.ready"
	nsenter --net="/var/run/netns/$XN_PHONE" python3 "$PEER" --host "$XN_GW_IP" --port 443 --tls \
		--cafile "$PKI/root.pem" --sni gw.xdp.test --source "$XN_PHONE_IP" --mode idle \
		--count "$n" --parallel 1 --ready-file "$T/$name.ready" "$@" >"$T/$name.json" &
	EG_PIDS+=($!)
	eval "PEER_$name=$!"
	for _ in $(seq 300); do [ -s "$T/$name.ready" ] && return 0; sleep 0.1; done
	return 1
}
cap_entry() { # the src_cap value for the phone's address, or nothing
	xn_dump src_cap | jqe -c --argjson a "[0,0,0,0,0,0,0,0,0,0,255,255,198,18,0,2]" \
		'[.[] | .formatted | select(.key.addr == $a) | .value] | if length == 1 then .[0] else empty end'
}
mono_ns() { python3 -c 'import time; print(time.monotonic_ns())'; }
refused_userspace() { "$EASCTL" -s "$CTL" metrics | awk '/^easgate_source_cap_refused_total/ {print $2}'; }

# ---- 1. the cap is reached --------------------------------------------------------
peer held 10 --hold 600 || fail "10 connections set up"
check "10 connections from $XN_PHONE_IP held ($(cat "$T/held.ready"))" test "$(cat "$T/held.ready")" = 10
v=$(cap_entry)
check "src_cap holds $XN_PHONE_IP: action drop, conns 10, cap 10 ($v)" \
	jqe '.action == 1 and .conns == 10 and .cap == 10' <<<"$v"
left=$(($(jq -r .expires_ns <<<"$v") - $(mono_ns)))
check "...expiring within 10 s unless rewritten ($((left / 1000000)) ms left)" \
	test "$left" -gt 0 -a "$left" -le 10000000000
e0=$(jq -r .expires_ns <<<"$v"); e0=${e0:-0}
wait_ms=$(((e0 - $(mono_ns)) / 1000000 + 200))
[ "$wait_ms" -le 0 ] || sleep "$((wait_ms / 1000)).$(printf %03d $((wait_ms % 1000)))"
v=$(cap_entry)
now=$(mono_ns)
e1=$(jq -r .expires_ns <<<"$v")
check "...past that expiry it is still there, rewritten ($(((${e1:-0} - now) / 1000000)) ms left)" \
	jqe --argjson e0 "$e0" --argjson now "$now" \
	'.action == 1 and .conns == 10 and .expires_ns > $e0 and .expires_ns > $now' <<<"$v"

# ---- 2. the next SYNs end in XDP ------------------------------------------------------
c0=$(xn_stat CONN_CAP)
r0=$(refused_userspace)
peer over 5 --hold 1 --connect-timeout 2 --parallel 5
wait "$PEER_over"
o=$(cat "$T/over.json")
check "5 more from $XN_PHONE_IP never connect ($(jq -c '{opened, refused}' <<<"$o"))" \
	jqe '.opened == 0 and .refused == 5' <<<"$o"
c1=$(xn_stat CONN_CAP)
check "xdp_stats CONN_CAP counted their SYNs ($c0 -> $c1, >= 5)" test "$c1" -ge $((c0 + 5))
check "...none reached the daemon (user-space refusals ${r0:-0} -> $(refused_userspace))" \
	test "$(refused_userspace)" = "${r0:-0}"

# ---- 3. another address is not punished ------------------------------------------------
code=$(in_phone curl -sS --cacert "$PKI/root.pem" --max-time 10 --interface "$GOOD_IP" -u bob:secret \
	-H 'MS-ASProtocolVersion: 14.1' -X POST --data-binary '' -o /dev/null -w '%{http_code}' \
	"https://$XN_GW_IP$EAS?Cmd=Sync&User=bob&DeviceId=GOODPHONE2&DeviceType=iPhone")
check "a phone from $GOOD_IP syncs meanwhile (HTTP $code)" test "$code" = 200

# ---- 4. below the cap again ----------------------------------------------------------------
kill -USR1 "$PEER_held"
wait "$PEER_held"
# gone: the dump reads (not empty) and has no entry for the phone (an empty
# dump is [] : a failed bpftool printed nothing, which proves nothing).
cap_absent() {
	xn_dump src_cap | jqe --argjson a "[0,0,0,0,0,0,0,0,0,0,255,255,198,18,0,2]" \
		'[.[] | .formatted | select(.key.addr == $a)] | length == 0' >/dev/null
}
gone() { for _ in $(seq 50); do cap_absent && return 0; sleep 0.1; done; return 1; }
check "the 10 closed: the src_cap entry is deleted" gone
peer again 3 --hold 1 --connect-timeout 5
wait "$PEER_again"
check "...and $XN_PHONE_IP connects again ($(jq -c '{opened, refused}' "$T/again.json"))" \
	jqe '.opened == 3 and .refused == 0' <"$T/again.json"
finish
