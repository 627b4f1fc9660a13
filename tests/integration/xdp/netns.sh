# shellcheck shell=bash
# netns.sh - the network namespaces of t_xdp.sh and tools/bench/xdp_flood.sh
# (sourced, after tests/integration/lib.sh).
#
#   phone netns (XN_PHONE)                 gateway netns (XN_GW)
#   veth-phone 198.18.0.2/24  <── veth ──>  veth-gw 198.18.0.1/24   XDP xdp_gate
#                                           lo 127.0.0.1: demo backend
# Both namespaces belong to this run (names carry its PID), so nothing of the
# host or of another run is touched; the veth pair is created directly inside
# them. The gateway side is entered with nsenter --net= (not `ip netns exec`,
# which remounts /sys and would hide the pins under /sys/fs/bpf). Pins go to
# XN_PIN = /sys/fs/bpf/easgate-test-<pid>, never to a real daemon's directory.

XN_GW=egx-gw-$$
XN_PHONE=egx-ph-$$
XN_GW_IF=veth-gw
XN_PHONE_IF=veth-phone
XN_GW_IP=198.18.0.1
XN_PHONE_IP=198.18.0.2
XN_PIN=/sys/fs/bpf/easgate-test-$$
XN_UP=0

in_gw() { nsenter --net="/var/run/netns/$XN_GW" "$@"; }
in_phone() { nsenter --net="/var/run/netns/$XN_PHONE" "$@"; }
# Background processes are started with nsenter itself, never through these
# functions: nsenter execs its command, so $! is the process to signal (a
# backgrounded function would be a subshell whose kill leaves it running).

# xn_up: both namespaces, the veth pair, addresses. The phone retransmits at
# most once a second (tcp_rto_max_ms, where the kernel has it; 1000 is its
# floor) so a dropped flow keeps sending at a steady pace instead of backing
# off exponentially: the drops stay visible in xdp_stats for the whole test.
xn_up() {
	ip netns add "$XN_GW" || return 1
	XN_UP=1
	ip netns add "$XN_PHONE" || return 1
	ip link add "$XN_GW_IF" netns "$XN_GW" type veth peer name "$XN_PHONE_IF" netns "$XN_PHONE" ||
		return 1
	in_gw ip link set lo up &&
		in_gw ip addr add "$XN_GW_IP/24" dev "$XN_GW_IF" &&
		in_gw ip link set "$XN_GW_IF" up &&
		in_phone ip link set lo up &&
		in_phone ip addr add "$XN_PHONE_IP/24" dev "$XN_PHONE_IF" &&
		in_phone ip link set "$XN_PHONE_IF" up || return 1
	[ -e /proc/sys/net/ipv4/tcp_rto_max_ms ] && in_phone sysctl -qw net.ipv4.tcp_rto_max_ms=1000
	# The link needs a moment to come up (carrier on both ends).
	for _ in $(seq 50); do
		in_phone ip -j link show "$XN_PHONE_IF" | jqe '.[0].operstate == "UP"' >/dev/null &&
			in_gw ip -j link show "$XN_GW_IF" | jqe '.[0].operstate == "UP"' >/dev/null &&
			return 0
		sleep 0.1
	done
	return 1
}

# xn_down: unpin whatever this run pinned (easgated --detach with a config
# naming only the pin dir: $T may be gone already), then delete the
# namespaces (that removes the veth pair and any XDP attachment with it).
# Run it from the EXIT trap, after lib.sh's cleanup.
xn_down() {
	local c
	[ "$XN_UP" = 1 ] || return 0
	if [ -d "$XN_PIN" ]; then
		c=$(mktemp /tmp/egx-detach.XXXXXX)
		printf 'xdp = { pin_dir = "%s"; };\n' "$XN_PIN" >"$c"
		"$EASGATED" --detach -c "$c" >/dev/null 2>&1 || rm -rf "$XN_PIN"
		rm -f "$c"
	fi
	ip netns del "$XN_PHONE" 2>/dev/null
	ip netns del "$XN_GW" 2>/dev/null
	XN_UP=0
}

# xn_poke SPORT: one TCP ACK from the phone's address and port SPORT to the
# gateway's port 443, written straight onto veth-phone (AF_PACKET): a packet
# of that flow now, rather than at the phone's next retransmission. Where the
# kernel has no tcp_rto_max_ms (6.1, 6.12) the retransmissions of a dropped
# flow back off to minutes apart.
xn_poke() {
	local gwmac
	gwmac=$(in_gw ip -j link show "$XN_GW_IF" | jq -r '.[0].address') || return 1
	in_phone python3 - "$EG_ROOT/tests/integration/xdp" "$XN_PHONE_IF" "$gwmac" "$XN_PHONE_IP" "$1" "$XN_GW_IP" 443 <<'PY'
import socket, struct, sys

sys.path.insert(0, sys.argv[1])
from tcpseg import csum, tcp_header  # noqa: E402

ifname, dmac, src, sport, dst, dport = sys.argv[2:]
sa, da = socket.inet_aton(src), socket.inet_aton(dst)
tcp = tcp_header(src, dst, sport, dport, 1, 1, 0x10, 1024)
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, sa, da)
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
eth = bytes.fromhex(dmac.replace(":", "")) + s.getsockname()[4] + b"\x08\x00"
sys.exit(0 if s.send(eth + ip + tcp) == len(eth + ip + tcp) else 1)
PY
}

# xn_backend NAME [opts]: a demo backend on the gateway side's loopback; sets
# BE_PORT_<NAME> like lib.sh's start_backend (nsenter execs: $! is its PID).
xn_backend() {
	local name=$1; shift
	local pf=$T/be-$name.port
	nsenter --net="/var/run/netns/$XN_GW" "$BACKEND" --listen 127.0.0.1:0 --port-file "$pf" --name "$name" --quiet "$@" \
		>"$T/be-$name.log" 2>&1 &
	EG_PIDS+=($!)
	for _ in $(seq 100); do [ -s "$pf" ] && break; sleep 0.05; done
	[ -s "$pf" ] || { fail "backend $name did not start"; cat "$T/be-$name.log"; return 1; }
	eval "BE_PORT_$name=$(cat "$pf")"
}

# xn_gateway_conf BACKEND_PORT [extra xdp settings]: writes $T/gw.conf: the
# gateway listens on the veth address, port 443, guards veth-gw with XDP and
# blocks the device BLOCKEDPHONE1. $XN_CONF_EXTRA is added at the top level.
xn_gateway_conf() {
	local be_port=$1 extra=${2:-}
	mkdir -p "$T/state"
	cat >"$T/gw.conf" <<EOF
listen = [ "$XN_GW_IP:443"${XN_LISTEN_EXTRA:+, $XN_LISTEN_EXTRA} ];
workers = ${GW_WORKERS:-2};
${XN_CONF_EXTRA:-}
state_dir = "$T/state";
control_socket = "$T/ctl.sock";
tls = {
  certificates = ( { cert = "$PKI/server.pem"; key = "$PKI/server.key"; } );
  trust_file = "$PKI/root.pem";
};
backends = (
  { name = "cas1"; address = "127.0.0.1:$be_port"; tls = false;
    health = { path = "/health"; interval = 0.5; timeout = 0.5; rise = 1; fall = 2; }; }
);
policy = {
  rules = ( "block DeviceId is \"BLOCKEDPHONE1\" name \"lost-phone\"" );
};
xdp = {
  interfaces = [ "$XN_GW_IF" ];
  pin_dir = "$XN_PIN";
  verdict_ttl = 600;
$extra
};
EOF
}

# xn_gateway: start easgated in the gateway netns with $T/gw.conf; sets
# GW_PID and CTL and waits until the control socket answers and a phone can
# complete a TLS handshake.
xn_gateway() {
	CTL=$T/ctl.sock
	nsenter --net="/var/run/netns/$XN_GW" "$EASGATED" -c "$T/gw.conf" "$@" >>"$T/gw.log" 2>&1 &
	GW_PID=$!
	EG_PIDS+=($GW_PID)
	for _ in $(seq 100); do
		if "$EASCTL" -s "$CTL" status >/dev/null 2>&1 &&
			in_phone curl -s -o /dev/null --max-time 2 --cacert "$PKI/root.pem" \
				"https://$XN_GW_IP/" 2>/dev/null; then
			return 0
		fi
		kill -0 "$GW_PID" 2>/dev/null || break
		sleep 0.1
	done
	fail "gateway did not start"
	tail -20 "$T/gw.log"
	return 1
}

# xn_stop_gateway: SIGTERM, wait for the exit (drain of idle connections).
xn_stop_gateway() {
	kill -TERM "$GW_PID" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "$GW_PID" 2>/dev/null
}

# ---- bpftool views of the pinned maps ------------------------------------------

# xn_dump MAP: the pinned map as bpftool's JSON (BTF-formatted entries).
xn_dump() { bpftool map dump pinned "$XN_PIN/$1" -j; }

# xn_stat NAME: packets counted under enum eg_stat NAME, summed over CPUs.
xn_stat() {
	local idx
	case $1 in
	PASS) idx=0 ;; NOT_TCP) idx=1 ;; MALFORMED) idx=2 ;; FLOW_DROP) idx=3 ;; FLOW_RST) idx=4 ;;
	FLOW_EXPIRED) idx=5 ;; LPM_DROP) idx=6 ;; RATE_DROP) idx=7 ;; OTHER_PORT) idx=8 ;;
	CONN_CAP) idx=9 ;;
	*) return 1 ;;
	esac
	xn_dump xdp_stats | jqe --argjson i "$idx" \
		'[.[] | select(.formatted.key == $i) | .formatted.values[].value.packets] | add'
}

# xn_flow SADDR SPORT DADDR DPORT: the flow_verdict entry (formatted value)
# for that IPv4 5-tuple, matched field by field on the names bpftool prints;
# exit 1 if there is none. Addresses are IPv4-mapped, ports network order
# (bpftool prints them as plain host integers).
xn_flow() {
	xn_dump flow_verdict | jqe -c --arg s "$1" --argjson sp "$2" --arg d "$3" --argjson dp "$4" '
		def mapped(a): [0,0,0,0,0,0,0,0,0,0,255,255] + (a | split(".") | map(tonumber));
		def net16(p): (p % 256) * 256 + ((p / 256) | floor);
		[.[] | .formatted | select(.key.saddr == mapped($s) and .key.daddr == mapped($d)
			and .key.sport == net16($sp) and .key.dport == net16($dp)) | .value] |
		if length == 1 then .[0] else empty end'
}

# xn_fields MAP FIELD...: the JSON dump parses and names every FIELD.
xn_fields() {
	local m=$1 keys f; shift
	keys=$(xn_dump "$m" | jq -r '[.[] | .formatted | .. | objects | keys[]] | unique | .[]') ||
		return 1
	for f in "$@"; do
		grep -qx "$f" <<<"$keys" || { echo "  $m: no field $f in:" $keys; return 1; }
	done
}
