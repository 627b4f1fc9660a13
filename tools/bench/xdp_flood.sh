#!/usr/bin/env bash
# xdp_flood.sh - issue #4's flood benchmark: a blocked phone's flow floods the
# gateway through the veth while legitimate phones keep syncing. Reports the
# legitimate requests/s (wrk, keep-alive TLS, EAS Sync) and the gateway's CPU
# for three cases, SECS seconds each:
#   no flood        the baseline
#   flood, verdict  the daemon blocked the phone; XDP drops its flow (FLOW_DROP)
#   flood, stack    the same flood with the verdict deleted: the frames reach
#                   the TCP stack of the gateway (what the XDP drop saves)
# Setup: tests/integration/xdp/netns.sh (phone netns <-veth-> gateway netns,
# native XDP on veth-gw, demo backend on the gateway's loopback). The flood is
# tools/bench/flood.c (AF_PACKET, one TCP segment of the blocked
# 5-tuple replayed, 118-byte frames), built here with cc.
# "gw CPU" = easgated (master + workers) user+sys; "softirq" = the machine's
# softirq time, where XDP and the stack's receive path run; both in % of one
# CPU. wrk, the flood generator and the backend share the same CPUs.
#
# Usage: tools/bench/xdp_flood.sh [BUILD_DIR]   (root; exit 77 otherwise)
# Env: SECS=10 (per case), WRK_CONNS=16, FLOOD_PPS=0 (0 = as fast as it goes),
#      FLOOD_PAYLOAD=64, GW_WORKERS=2.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/tests/integration/lib.sh" "${1:-build}"
TNAME=xdp_flood
need_root
need wrk jq bpftool nsenter ip python3 bc
source "$EG_ROOT/tests/integration/xdp/netns.sh"
trap 'cleanup; xn_down' EXIT
SECS=${SECS:-10}
WRK_CONNS=${WRK_CONNS:-16}
FLOOD_PPS=${FLOOD_PPS:-0}
FLOOD_PAYLOAD=${FLOOD_PAYLOAD:-64}
HZ=$(getconf CLK_TCK)
NCPU=$(nproc)
die() { echo "xdp_flood: $*" >&2; EG_FAILS=1; exit 1; }

FLOOD=$O/bench/flood # built by make
[ -x "$FLOOD" ] || die "$FLOOD missing: make"
make_pki gw.xdp.test "$XN_GW_IP"
xn_up || die "network namespaces"
xn_backend cas1 || die "backend"
# No access log: 20k lines a second would measure the logger.
XN_CONF_EXTRA='access_log = false;' xn_gateway_conf "$BE_PORT_cas1" ''
xn_gateway || die "gateway"
wait_backends_up cas1 || die "backend not up"
mode=$(grep -o 'event=xdp_attached iface=veth-gw mode=[a-z]*' "$T/gw.log" | sed 's/.*mode=//')

# The blocked phone: one request, answered 129; the daemon writes its verdict.
in_phone python3 "$EG_ROOT/tests/integration/xdp/phone.py" --host "$XN_GW_IP" --cafile "$PKI/root.pem" \
	--device BLOCKEDPHONE1 --requests 1 >"$T/blocked.jsonl" || die "blocked phone"
sport=$(jq -r 'select(.event == "connected") | .sport' "$T/blocked.jsonl")
xn_flow "$XN_PHONE_IP" "$sport" "$XN_GW_IP" 443 >/dev/null || die "no verdict for the blocked phone"
# Its key as bpftool's hex bytes, to delete it for the last case.
key_hex=$(xn_dump flow_verdict | jq -r --argjson sp "$(((sport % 256) * 256 + sport / 256))" \
	'.[] | select(.formatted.key.sport == $sp) | .key | map(ltrimstr("0x")) | join(" ")')
gw_mac=$(in_gw ip -j link show "$XN_GW_IF" | jq -r '.[0].address')

cat >"$T/sync.lua" <<'EOF'
wrk.method = "POST"
wrk.body = ""
wrk.headers["Authorization"] = "Basic Ym9iOnNlY3JldA=="
wrk.headers["MS-ASProtocolVersion"] = "14.1"
wrk.headers["Content-Type"] = "application/vnd.ms-sync.wbxml"
wrk.headers["User-Agent"] = "Apple-iPhone9C1/1402.100"
EOF
URL="https://$XN_GW_IP/Microsoft-Server-ActiveSync?Cmd=Sync&User=bob&DeviceId=GOODPHONE2&DeviceType=iPhone"

gw_ticks() { # user+sys clock ticks of the master and its workers
	local p t=0
	for p in "$GW_PID" $(ps -o pid= --ppid "$GW_PID"); do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
softirq_ticks() { awk '$1 == "cpu" {print $8}' /proc/stat; }
drops() { xn_stat FLOW_DROP; }

# run_case LABEL FLOOD(0|1): one row of the table.
run_case() {
	local label=$1 flood=$2 fpid='' g0 g1 s0 s1 d0 d1 t0 t1 rps p99 fpps=0 dps errs
	if [ "$flood" = 1 ]; then
		nsenter --net="/var/run/netns/$XN_PHONE" "$FLOOD" "$XN_PHONE_IF" "$gw_mac" "$XN_PHONE_IP" "$sport" \
			"$XN_GW_IP" 443 $((SECS + 2)) "$FLOOD_PPS" "$FLOOD_PAYLOAD" >"$T/flood.out" 2>&1 &
		fpid=$!
		sleep 1 # the flood is at full rate before the measurement starts
	fi
	g0=$(gw_ticks) s0=$(softirq_ticks) d0=$(drops) t0=$(date +%s.%N)
	in_phone wrk -t1 -c"$WRK_CONNS" -d"${SECS}s" --latency -s "$T/sync.lua" "$URL" >"$T/wrk.out" 2>&1
	g1=$(gw_ticks) s1=$(softirq_ticks) d1=$(drops) t1=$(date +%s.%N)
	[ -n "$fpid" ] && wait "$fpid"
	rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$T/wrk.out")
	p99=$(awk '$1 == "99%" {v = $2; u = v; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u);
		printf "%.2f", u == "us" ? v / 1000 : u == "s" ? v * 1000 : v}' "$T/wrk.out")
	errs=$(awk '/Non-2xx|Socket errors/ {print}' "$T/wrk.out" | tr '\n' ' ')
	[ "$flood" = 1 ] && fpps=$(sed -n 's/.*pps=\([0-9]*\).*/\1/p' "$T/flood.out")
	dps=$(echo "($d1 - $d0) / ($t1 - $t0)" | bc -l)
	printf '%-30s %11s %8s %9.0f %10.0f %11s %12.0f %s\n' "$label" "${rps:-?}" "${p99:-?}" \
		"$(echo "($g1 - $g0) * 100 / $HZ / ($t1 - $t0)" | bc -l)" \
		"$(echo "($s1 - $s0) * 100 / $HZ / ($t1 - $t0)" | bc -l)" "${fpps:-?}" "$dps" "$errs"
}

echo "xdp_flood: $NCPU CPUs, kernel $(uname -r), XDP $mode on $XN_GW_IF, ${GW_WORKERS:-2} workers;" \
	"wrk -c$WRK_CONNS keep-alive TLS Syncs, ${SECS} s per case;" \
	"flood: $((54 + FLOOD_PAYLOAD))-byte frames of the blocked 5-tuple, pps ${FLOOD_PPS/#0/max}"
printf '%-30s %11s %8s %9s %10s %11s %12s\n' case "legit req/s" "p99 ms" "gw CPU%" "softirq%" \
	"flood pps" "XDP drops/s"
run_case "no flood" 0
run_case "flood, verdict (XDP drop)" 1
bpftool map delete pinned "$XN_PIN/flow_verdict" key hex $key_hex || die "cannot delete the verdict"
run_case "flood, no verdict (stack)" 1
xn_stop_gateway
