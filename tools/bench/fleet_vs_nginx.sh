#!/usr/bin/env bash
# fleet_vs_nginx.sh - issue #6's benchmark: the iOS 6.1 MeetingResponse loop
# of tests/integration/t_fleet.sh (200 well-behaved phones + 5 looping
# "iOS 6.1 10B142" phones, all behind one NAT address in a network namespace)
# through easgated, and the same fleet through nginx 1.22 doing the best it
# can. Same topology as t_fleet (tests/integration/xdp/netns.sh: phone netns
# <-veth-> gateway netns; proxy and demo backend in the gateway netns), same
# certificate chain, same backend, same eas-fleet options and --seed.
#
# Cases (fleet-nginx.conf.in has the nginx side):
#   easgated           t_fleet's config: throttle on, ios61 class (MeetingResponse
#                      loop threshold 8), XDP on veth-gw; no access log
#   nginx ua+limit     403 for "^Apple.*1002.*" on Cmd=MeetingResponse, and
#                      limit_req keyed by the Basic user ($FLEET_NGINX_BEST)
#   nginx ua           only the User-Agent refusal (what F5/TMG admins deployed)
#   nginx limit R/B    only limit_req, rate R burst B: a generic per-user limit
#                      without knowledge of the bad release ($FLEET_SWEEP)
# Per run: requests the looping phones sent and how many reached the backend
# (counted from the demo backend's --record .meta files by DeviceId), the
# loop's backend rate in the last 5 s, the well-behaved phones' rate, backend
# rate, refusals and p50 (eas-fleet JSON), the proxy's CPU (utime+stime of
# its process tree, /proc/PID/stat before/after), the machine's softirq time
# (/proc/stat; where XDP and the receive path run, for every process on the
# machine: compare it between cases, not as the proxy's own) and, for
# easgated, the packets XDP dropped and passed.
#
# Usage: tools/bench/fleet_vs_nginx.sh [BUILD_DIR]   (root; exit 77 otherwise)
# Env: FLEET_SECONDS=30 (per run), FLEET_RUNS=2 (rounds of the main cases),
#   FLEET_NGINX_BEST="30r/m 5" (rate burst of the ua+limit case),
#   FLEET_SWEEP="30r/m 5,20r/m 5,12r/m 6" (limit-only settings, one run each;
#   "" = none), FLEET_BASELINE=1 (adds easgated and nginx runs without loopers:
#   what the loop itself costs each proxy), FLEET_OUT (default
#   tools/bench/fleet-results.md), FLEET_BPF_STATS=1 (turn on
#   kernel.bpf_stats_enabled during easgated runs to time the XDP program;
#   machine-wide, so off by default), EG_KEEP=1 (keep the work directory).
# Defaults take about 5 minutes.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$ROOT/tests/integration/lib.sh" "${1:-build}"
TNAME=fleet_vs_nginx
need_root
need nginx jq bpftool nsenter ip python3 curl awk
source "$EG_ROOT/tests/integration/xdp/netns.sh"

SECS=${FLEET_SECONDS:-30}
RUNS=${FLEET_RUNS:-2}
BEST=${FLEET_NGINX_BEST:-"30r/m 5"}
SWEEP=${FLEET_SWEEP-"30r/m 5,20r/m 5,12r/m 6"}
BASELINE=${FLEET_BASELINE:-0}
HEAVY=${FLEET_HEAVY:-0}
OUT=${FLEET_OUT:-$EG_ROOT/tools/bench/fleet-results.md}
BPF_STATS=${FLEET_BPF_STATS:-0}
SEED=7
DEVICES=200
LOOPERS=5
HZ=$(getconf CLK_TCK)
HERE=$EG_ROOT/tools/bench
PIN_BASE=/sys/fs/bpf/easgate-fleetbench-$$
PINS=()
BPF_STATS_OLD=

say() { printf '[fleet %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; EG_FAILS=$((EG_FAILS + 1)); exit 1; }

# stop_pid PID: SIGTERM, wait, SIGKILL; then forget it, so that the final
# cleanup never signals a PID that may have been reused since.
stop_pid() {
	local p=$1 q keep=()
	kill -TERM "$p" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	for q in "${EG_PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
	EG_PIDS=("${keep[@]}")
}

# detach_pins DIR: remove the XDP link and the maps easgated pinned there.
detach_pins() {
	local c=$T/detach.conf
	[ -d "$1" ] || return 0
	printf 'xdp = { pin_dir = "%s"; };\n' "$1" >"$c"
	"$EASGATED" --detach -c "$c" >>"$T/detach.log" 2>&1 || rm -rf "$1"
}

bench_exit() {
	local p
	for p in "${EG_PIDS[@]}"; do stop_pid "$p"; done
	for p in "${PINS[@]}"; do detach_pins "$p"; done
	[ -n "$BPF_STATS_OLD" ] && sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_OLD"
	xn_down
	cleanup
}
trap bench_exit EXIT
trap 'exit 130' INT TERM

# Private copies of the binaries: another make in the tree must not swap
# them between the runs of one comparison.
mkdir -p "$T/bin"
for b in easgated easctl eas-demo-backend eas-fleet; do
	[ -x "$O/$b" ] || die "build first: make (no $O/$b)"
	cp "$O/$b" "$T/bin/" || die "copy $b"
done
EASGATED=$T/bin/easgated EASCTL=$T/bin/easctl BACKEND=$T/bin/eas-demo-backend FLEET=$T/bin/eas-fleet
REV=$(git -C "$EG_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
[ -n "$(git -C "$EG_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] && REV="$REV+local changes"

make_pki gw.fleet.test "$XN_GW_IP"
xn_up || die "network namespaces"

# --- accounting ---------------------------------------------------------------------------
tree_pids() { # ROOT -> ROOT and its descendants
	ps -e -o pid=,ppid= | awk -v r="$1" '
		{ kids[$2] = kids[$2] " " $1 }
		END { q[1] = r; n = 1; for (i = 1; i <= n; i++) { print q[i];
			m = split(kids[q[i]], a, " "); for (j = 1; j <= m; j++) q[++n] = a[j] } }'
}
cpu_ticks() { # ROOT -> "user system" ticks of the tree, reaped children included
	local p f u=0 s=0 fu fs cu cs
	for p in $(tree_pids "$1"); do
		f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		f=${f##*) } # from field 3 on: comm may hold spaces
		read -r _ _ _ _ _ _ _ _ _ _ _ fu fs cu cs _ <<<"$f"
		u=$((u + fu + cu))
		s=$((s + fs + cs))
	done
	echo "$u $s"
}
# "softirq busy" ticks of the whole machine
stat_ticks() { awk '$1 == "cpu" { print $8, $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
xdp_prog_id() { in_gw ip -j link show "$XN_GW_IF" | jq -r '.[0].xdp.prog.id // empty'; }
bpf_prog_ns() { # ID -> "run_time_ns run_cnt" (0 0 without bpf_stats)
	bpftool prog show id "$1" -j 2>/dev/null | jq -r '"\(.run_time_ns // 0) \(.run_cnt // 0)"'
}

# --- the proxies ----------------------------------------------------------------------------
NCASE=0
# start_easgated: t_fleet's configuration, a fresh state and pin directory.
start_easgated() {
	XN_PIN=$PIN_BASE-$NCASE
	PINS+=("$XN_PIN")
	rm -rf "$T/state"
	# The same class t_fleet uses (KB2814847's advice as a budget, not a UA
	# block); no access log, as nginx (a line per request measures the logger).
	XN_CONF_EXTRA="access_log = false;
$(cat "$EG_ROOT/tests/integration/xdp/fleet-throttle.conf")"
	xn_gateway_conf "$BE_PORT_cas1" ''
	: >"$T/gw.log"
	xn_gateway || die "easgated did not start (log: $T/gw.log)"
	wait_backends_up cas1 || die "easgated: backend not up"
	PX_PID=$GW_PID
	XDP_ID=$(xdp_prog_id)
	[ -n "$XDP_ID" ] || die "easgated: no XDP program on $XN_GW_IF"
}

# start_nginx UA(0|1) RATE BURST: RATE "-" = no limit_req.
start_nginx() {
	local ua=$1 rate=$2 burst=$3 d=$T/nginx-$NCASE lim='' retry
	mkdir -p "$d/tmp"
	chmod 777 "$d/tmp" # workers run as nobody
	if [ "$rate" = - ]; then
		lim='# ' rate=1r/s burst=1
	fi
	# Retry-After: until the user's next request fits the rate (at least 1 s).
	retry=$(awk -v r="$rate" 'BEGIN { t = (r ~ /m$/ ? 60 : 1) / (r + 0); c = int(t);
		if (c < t) c++; printf "%d\n", (c < 1 ? 1 : c) }')
	sed -e "s|@DIR@|$d|g" -e "s|@LISTEN@|$XN_GW_IP:443|g" -e "s|@CERT@|$PKI/server.pem|g" \
		-e "s|@KEY@|$PKI/server.key|g" -e "s|@BACKEND@|127.0.0.1:$BE_PORT_cas1|g" \
		-e "s|@RATE@|$rate|g" -e "s|@BURST@|$burst|g" -e "s|@RETRY@|$retry|g" -e "s|@LIMIT@|$lim|g" \
		-e "s|@UA@|$([ "$ua" = 1 ] || echo '# ')|g" "$HERE/fleet-nginx.conf.in" >"$d/nginx.conf"
	in_gw nginx -t -q -p "$d" -c "$d/nginx.conf" -e "$d/error.log" || die "nginx config ($d/nginx.conf)"
	nsenter --net="/var/run/netns/$XN_GW" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" \
		>"$d/out.log" 2>&1 &
	PX_PID=$!
	EG_PIDS+=("$PX_PID")
	for _ in $(seq 100); do
		[ "$(in_phone curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$PKI/root.pem" \
			"https://$XN_GW_IP/health" 2>/dev/null)" = 200 ] && break
		kill -0 "$PX_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$PX_PID" 2>/dev/null || { cat "$d/out.log" "$d/error.log" >&2; die "nginx did not start"; }
	# A leftover XDP program would tax nginx's packets with easgated's work.
	[ -z "$(xdp_prog_id)" ] || die "an XDP program is still attached to $XN_GW_IF"
}

# --- one run ------------------------------------------------------------------------------------
RES=$T/results.tsv # case run key value
LABELS=()          # case index -> label
rec() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RES"; }

# run_case IDX LABEL RUN KIND UA RATE BURST LOOPERS
run_case() {
	local idx=$1 label=$2 run=$3 kind=$4 ua=$5 rate=$6 burst=$7 loopers=$8
	local recdir=$T/rec-$idx-$run js=$T/fleet-$idx-$run.json c0 c1 s0 s1 x0 x1 p0 p1 b0 b1 be_pid
	local u0 sy0 u1 sy1 si0 bz0 si1 bz1 counts l g
	NCASE=$((NCASE + 1))
	LABELS[idx]=$label
	say "run $run: $label"
	xn_backend cas1 --record "$recdir" --hold-ping-ms 2000 || die "backend"
	be_pid=${EG_PIDS[-1]}
	if [ "$kind" = easgated ]; then
		start_easgated
	else
		start_nginx "$ua" "$rate" "$burst"
	fi
	rec "$idx" "$run" load "$(cut -d' ' -f1 /proc/loadavg)"
	if [ "$kind" = easgated ]; then
		x0=$(xn_stat FLOW_DROP) p0=$(xn_stat PASS) b0=$(bpf_prog_ns "$XDP_ID")
	fi
	c0=$(cpu_ticks "$PX_PID") s0=$(stat_ticks)
	in_phone "$FLEET" --connect "$XN_GW_IP:443" --cafile "$PKI/root.pem" --sni gw.fleet.test \
		--bind "$XN_PHONE_IP" --captures "$EG_ROOT/tests/data/eas-captures" --devices "$DEVICES" \
		--loopers "$loopers" --duration "$SECS" --warmup 5 --timeout-ms 2000 \
		--seed "$SEED" --out "$js" 2>>"$T/fleet.err" || die "eas-fleet failed ($T/fleet.err)"
	c1=$(cpu_ticks "$PX_PID") s1=$(stat_ticks)
	if [ "$kind" = easgated ]; then
		x1=$(xn_stat FLOW_DROP) p1=$(xn_stat PASS) b1=$(bpf_prog_ns "$XDP_ID")
		rec "$idx" "$run" xdp_drops $((${x1:-0} - ${x0:-0}))
		rec "$idx" "$run" xdp_pass $((${p1:-0} - ${p0:-0}))
		if [ "$BPF_STATS" = 1 ]; then
			read -r b0 _ <<<"$b0"
			read -r b1 _ <<<"$b1"
			rec "$idx" "$run" xdp_ms "$(awk -v a="$b0" -v b="$b1" 'BEGIN{printf "%.1f", (b-a)/1e6}')"
		fi
		grep -c 'event=throttle_xdp' "$T/gw.log" >"$T/esc.n"
		rec "$idx" "$run" escalations "$(cat "$T/esc.n")"
		xn_stop_gateway || say "easgated did not stop in 10 s"
		stop_pid "$GW_PID"
		detach_pins "$XN_PIN"
	else
		stop_pid "$PX_PID"
	fi
	stop_pid "$be_pid"

	read -r u0 sy0 <<<"$c0"
	read -r u1 sy1 <<<"$c1"
	read -r si0 bz0 <<<"$s0"
	read -r si1 bz1 <<<"$s1"
	rec "$idx" "$run" cpu_user_s "$(awk -v t=$((u1 - u0)) -v h="$HZ" 'BEGIN{printf "%.2f", t/h}')"
	rec "$idx" "$run" cpu_sys_s "$(awk -v t=$((sy1 - sy0)) -v h="$HZ" 'BEGIN{printf "%.2f", t/h}')"
	rec "$idx" "$run" cpu_s "$(awk -v t=$((u1 + sy1 - u0 - sy0)) -v h="$HZ" 'BEGIN{printf "%.2f", t/h}')"
	rec "$idx" "$run" softirq_s "$(awk -v t=$((si1 - si0)) -v h="$HZ" 'BEGIN{printf "%.2f", t/h}')"
	rec "$idx" "$run" machine_busy_s "$(awk -v t=$((bz1 - bz0)) -v h="$HZ" 'BEGIN{printf "%.2f", t/h}')"

	# What reached the backend, by DeviceId (EAS requests only: easgated's
	# health checks are recorded too).
	counts=$(find "$recdir" -name '*.meta' -print0 2>/dev/null | xargs -0 -r cat |
		awk '/^target=.*Microsoft-Server-ActiveSync.*DeviceId=/ {
			if ($0 ~ /DeviceId=ApplLOOP/) l++; else g++ } END { print l + 0, g + 0 }')
	read -r l g <<<"$counts"
	rec "$idx" "$run" loop_backend "$l"
	rec "$idx" "$run" wb_backend "$g"
	rm -rf "$recdir" # ~4,000 files a run, credentials included

	jq -r '
		def req(e): [.loopers[] | e | select(. != null) | .request];
		"loop_sent\t\(.looping.requests)",
		"loop_backend_last\t\(.looping.backend_rps_last)",
		"loop_answers\t\(.looping.statuses | to_entries | map("\(.key):\(.value)") | join(" "))\(
			if (.looping.gateway_eas_statuses | length) > 0 then
			" (EAS " + (.looping.gateway_eas_statuses | to_entries |
			map("\(.key):\(.value)") | join(" ")) + ")" else "" end)\(
			if .looping.timeouts + .looping.resets + .looping.connect_errors > 0 then
			" no-answer:\(.looping.timeouts + .looping.resets + .looping.connect_errors)"
			else "" end)",
		"loop_first_refusal\t\([.loopers[] | [.first_throttle, .first_quarantine] |
			map(select(. != null) | .request) | min // "never"] |
			if length == 0 then "-" elif any(. == "never") then "never" else max end)",
		"loop_first_drop\t\(req(.first_drop) | if length == 0 then "-" else max end)",
		"wb_rps\t\(.well_behaved.rate_rps)",
		"wb_backend_rps\t\(.well_behaved.backend_rps)",
		"wb_refused\t\(.well_behaved.refused_devices)",
		"wb_bad\t\(.well_behaved as $w | ([$w.statuses | to_entries[] |
			select(.key != "200") | .value] | add // 0) + $w.timeouts + $w.resets +
			$w.connect_errors)",
		"wb_bad_kinds\t\(.well_behaved as $w | [($w.statuses | to_entries[] |
			select(.key != "200") | "\(.key):\(.value)"),
			(["timeouts", "resets", "connect_errors"][] as $k |
			select($w[$k] > 0) | "\($k):\($w[$k])")] |
			if length == 0 then "none" else join(" ") end)",
		"wb_p50_ms\t\(.well_behaved.latency_ms.p50)"' "$js" |
		while IFS=$'\t' read -r k v; do rec "$idx" "$run" "$k" "$v"; done
	say "  loop: sent $(jq .looping.requests "$js"), backend $l; well-behaved $(jq .well_behaved.rate_rps "$js") req/s, refused $(jq .well_behaved.refused_devices "$js"); proxy CPU $(awk -v t=$((u1 + sy1 - u0 - sy0)) -v h="$HZ" 'BEGIN{printf "%.2f", t/h}') s"
}

# --- the cases ------------------------------------------------------------------------------------
if [ "$BPF_STATS" = 1 ]; then
	BPF_STATS_OLD=$(sysctl -n kernel.bpf_stats_enabled)
	sysctl -qw kernel.bpf_stats_enabled=1 || die "cannot enable bpf_stats"
fi
read -r BEST_RATE BEST_BURST <<<"$BEST"
START=$(date +%s)
say "work directory $T; ${SECS} s per run, $RUNS rounds"
for r in $(seq "$RUNS"); do
	run_case 1 "easgated" "$r" easgated 0 - - "$LOOPERS"
	run_case 2 "nginx UA 403 + limit_req $BEST_RATE burst $BEST_BURST" "$r" nginx 1 "$BEST_RATE" \
		"$BEST_BURST" "$LOOPERS"
	run_case 3 "nginx UA 403 only" "$r" nginx 1 - - "$LOOPERS"
done
i=10
IFS=, read -r -a sweep <<<"$SWEEP"
for s in "${sweep[@]}"; do
	read -r rate burst <<<"$s"
	[ -n "$rate" ] || continue
	i=$((i + 1))
	run_case "$i" "nginx limit_req $rate burst $burst only" 1 nginx 0 "$rate" "$burst" "$LOOPERS"
done
if [ "$BASELINE" = 1 ]; then
	run_case 21 "easgated, no loopers" 1 easgated 0 - - 0
	run_case 22 "nginx UA 403 + limit_req $BEST_RATE burst $BEST_BURST, no loopers" 1 nginx 1 \
		"$BEST_RATE" "$BEST_BURST" 0
fi
if [ "$HEAVY" -gt 0 ]; then
	run_case 31 "easgated, $HEAVY loopers" 1 easgated 0 - - "$HEAVY"
	run_case 32 "nginx UA 403 + limit_req $BEST_RATE burst $BEST_BURST, $HEAVY loopers" 1 nginx 1 \
		"$BEST_RATE" "$BEST_BURST" "$HEAVY"
fi
ELAPSED=$(($(date +%s) - START))

# --- the report -----------------------------------------------------------------------------------
# val IDX KEY: "mean (min–max)" over the runs of a case, or the single value.
val() {
	awk -F'\t' -v c="$1" -v k="$2" '
		$1 == c && $3 == k { n++; v[n] = $4; if ($4 !~ /^-?[0-9.]+$/) txt = 1 }
		END {
			if (!n) { print "–"; exit }
			if (txt || n == 1) { s = v[1]; for (i = 2; i <= n; i++) if (v[i] != v[1]) s = s " / " v[i]; print s; exit }
			lo = hi = v[1]; t = 0; ints = 1
			for (i = 1; i <= n; i++) {
				t += v[i]; if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i]
				if (v[i] != int(v[i])) ints = 0
			}
			if (lo == hi) { print v[1]; exit }
			m = t / n
			printf (m == int(m) ? "%d" : ints ? "%.1f" : "%.2f"), m
			printf (ints ? " (%d–%d)\n" : " (%.2f–%.2f)\n"), lo, hi
		}' "$RES"
}
mean() {
	awk -F'\t' -v c="$1" -v k="$2" '$1 == c && $3 == k { t += $4; n++ }
		END { m = sprintf("%.2f", n ? t / n : 0); sub(/0+$/, "", m); sub(/\.$/, "", m); printf "%s", m }' "$RES"
}
cases=$(cut -f1 "$RES" | sort -n -u)
ROWS=(
	"loop_sent|requests the looping phones sent"
	"loop_backend|**looping requests that reached the backend**"
	"loop_backend_last|looping requests/s at the backend, last 5 s"
	"loop_first_refusal|first refusal (503/403/quarantine), request # (worst looper)"
	"loop_first_drop|first unanswered request (kernel drop), request # (worst looper)"
	"loop_answers|looping phones' answers (HTTP status:count)"
	"wb_rps|well-behaved requests/s (after 5 s warm-up)"
	"wb_backend_rps|well-behaved backend requests/s"
	"wb_backend|well-behaved requests at the backend, whole run"
	"wb_refused|well-behaved phones ever refused (of 200)"
	"wb_bad|well-behaved answers other than 200, or none"
	"wb_bad_kinds|  which (status or failure:count)"
	"wb_p50_ms|well-behaved p50 latency, ms (48% are 2 s Pings: ≈ p95 of the others)"
	"cpu_s|**proxy CPU s (user+sys, all processes)**"
	"cpu_user_s|  of which user"
	"softirq_s|machine softirq s (all processes; XDP runs here)"
	"machine_busy_s|machine busy CPU s (everything, other sessions too)"
	"xdp_drops|packets dropped by XDP"
	"xdp_pass|packets passed by XDP"
	"xdp_ms|XDP program run time, ms (bpf_stats)"
	"escalations|devices escalated to an XDP drop"
	"load|load average at start"
)
{
	echo "# Fleet benchmark: easgated vs nginx in the iOS 6.1 loop (issue #6)"
	echo
	echo "Generated by \`tools/bench/fleet_vs_nginx.sh\` on $(date '+%F %H:%M %Z'), ${ELAPSED} s in all."
	echo "Machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)),"
	echo "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r), Debian $(cat /etc/debian_version 2>/dev/null);"
	echo "easgated $("$EASGATED" --version | awk '{print $2}') ($REV), $(nginx -v 2>&1 | sed 's/.*: //'),"
	echo "$(openssl version | awk '{print "OpenSSL", $2}'). Other sessions share the machine (load average per run below)."
	echo
	echo "Fleet: \`eas-fleet --devices $DEVICES --loopers $LOOPERS --duration $SECS --warmup 5"
	echo "--timeout-ms 2000 --seed $SEED\` from one source address in the phone netns; the demo"
	echo "backend holds Pings 2 s (as t_fleet.sh). Main cases: $RUNS runs each, interleaved, mean"
	echo "(range); limit_req-only settings and baselines: one run each. Both proxies: 2 workers, no"
	echo "access log, TLS with the same ECDSA chain, user affinity, kept-alive backend connections."
	echo "Options: FLEET_SECONDS=$SECS FLEET_RUNS=$RUNS FLEET_NGINX_BEST=\"$BEST\" FLEET_SWEEP=\"$SWEEP\""
	echo "FLEET_BASELINE=$BASELINE FLEET_HEAVY=$HEAVY FLEET_BPF_STATS=$BPF_STATS."
	echo
	printf '| |'
	for c in $cases; do printf ' %s |' "${LABELS[c]}"; done
	printf '\n|---|'
	for c in $cases; do printf -- '---|'; done
	echo
	for row in "${ROWS[@]}"; do
		key=${row%%|*}
		grep -q "	$key	" "$RES" || continue
		printf '| %s |' "${row#*|}"
		for c in $cases; do printf ' %s |' "$(val "$c" "$key")"; done
		echo
	done
	echo
	echo "Per run:"
	echo
	echo "| case | run | load | loop sent | loop at backend | well-behaved req/s | refused | proxy CPU s | softirq s |"
	echo "|---|---|---|---|---|---|---|---|---|"
	awk -F'\t' '{ v[$1 "," $2 "," $3] = $4; if (!seen[$1 "," $2]++) order[++n] = $1 "," $2 }
		END { for (i = 1; i <= n; i++) { split(order[i], a, ","); k = order[i]
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", a[1], a[2], v[k ",load"],
				v[k ",loop_sent"], v[k ",loop_backend"], v[k ",wb_rps"], v[k ",wb_refused"],
				v[k ",cpu_s"], v[k ",softirq_s"] } }' "$RES" |
		while IFS= read -r line; do
			c=$(cut -d'|' -f2 <<<"$line" | tr -d ' ')
			echo "${line/| $c |/| ${LABELS[c]} |}"
		done
	echo
	echo "## Reading it"
	echo
	e_lb=$(mean 1 loop_backend) b_lb=$(mean 2 loop_backend)
	echo "- **Backend load from the loop.** easgated let $e_lb looping requests through per ${SECS} s"
	echo "  run, then none (the loop's backend rate over the last 5 s: $(val 1 loop_backend_last)/s):"
	echo "  it has to see a loop before it calls it one (MeetingResponse threshold 8 for the ios61"
	echo "  class), and it needs no rule naming the broken release. nginx with the User-Agent rule let"
	echo "  $b_lb through, because the admin wrote down the release and the command beforehand."
	if [ -n "$SWEEP" ]; then
		echo "  Without that knowledge nginx has limit_req, which lets a loop through at the configured"
		echo "  rate for as long as it lasts:"
		best='' best_lb=''
		for c in $cases; do
			[ "$c" -gt 10 ] && [ "$c" -lt 20 ] || continue
			echo "  ${LABELS[c]}: $(val "$c" loop_backend) looping requests at the backend"
			echo "  ($(val "$c" loop_backend_last)/s at the end), $(val "$c" wb_refused) well-behaved phones refused;"
			if [ "$(val "$c" wb_refused)" = 0 ] &&
				{ [ -z "$best" ] || awk -v a="$(mean "$c" loop_backend)" -v b="$best_lb" 'BEGIN{exit !(a < b)}'; }; then
				best=$c best_lb=$(mean "$c" loop_backend)
			fi
		done
		if [ -n "$best" ]; then
			echo "  the best of these for nginx (no well-behaved phone refused, least loop traffic) is"
			echo "  ${LABELS[best]#nginx }: $best_lb requests, against easgated's $e_lb."
		else
			echo "  every setting tried refused well-behaved phones."
		fi
	fi
	e_cpu=$(mean 1 cpu_s) b_cpu=$(mean 2 cpu_s) u_cpu=$(mean 3 cpu_s)
	echo "- **Proxy CPU.** easgated $e_cpu s, nginx with the UA rule and limit_req $b_cpu s, nginx"
	echo "  with the UA rule only $u_cpu s for the same ${SECS} s fleet; the 200 well-behaved phones"
	echo "  (TLS, relaying) are most of it for both. nginx answers every looping request for the"
	echo "  whole run ($(mean 2 loop_sent) 403s); easgated answers a looping phone until it escalates it"
	echo "  to an XDP drop, after which each reconnect (the phone gives up after --timeout-ms 2000)"
	echo "  costs a resumed TLS handshake and one 503 before the new flow is dropped too: $(mean 1 loop_sent)"
	echo "  looping requests, $(mean 1 xdp_drops) packets dropped by XDP. So easgated's share of the loop"
	echo "  grows with how often the phones reconnect, nginx's with how fast they loop."
	if [ "$BASELINE" = 1 ]; then
		echo "  Without loopers: easgated $(val 21 cpu_s) s, nginx $(val 22 cpu_s) s: the 5 loopers"
		spread=$(awk -F'\t' '$1 <= 3 && $3 == "cpu_s" { k = $1; if (!(k in lo) || $4 < lo[k]) lo[k] = $4
			if (!(k in hi) || $4 > hi[k]) hi[k] = $4 }
			END { for (k in lo) if (hi[k] - lo[k] > m) m = hi[k] - lo[k]; printf "%.2f", m }' "$RES")
		echo "  cost easgated $(awk -v a="$e_cpu" -v b="$(mean 21 cpu_s)" 'BEGIN{printf "%.2f", a - b}') s"
		echo "  and nginx $(awk -v a="$b_cpu" -v b="$(mean 22 cpu_s)" 'BEGIN{printf "%.2f", a - b}') s$(
			[ "$RUNS" -ge 2 ] && echo " (runs of the same case differ by up to $spread s)")."
	fi
	if [ "$HEAVY" -gt 0 ]; then
		echo "  With $HEAVY loopers (the same 200 phones): easgated $(val 31 cpu_s) s, nginx $(val 32 cpu_s) s"
		echo "  of proxy CPU; machine softirq $(val 31 softirq_s) s against $(val 32 softirq_s) s; looping"
		echo "  requests at the backend $(val 31 loop_backend) against $(val 32 loop_backend); well-behaved p50"
		echo "  $(val 31 wb_p50_ms) ms against $(val 32 wb_p50_ms) ms (likely easgated's loopers timing out and"
		echo "  reconnecting in step, every ~2.5 s: bursts of $HEAVY TLS handshakes on both sides)."
		if [ "$BASELINE" = 1 ]; then
			echo "  Per looping phone and second, over the baseline: easgated $(awk -v a="$(mean 31 cpu_s)" \
				-v b="$(mean 21 cpu_s)" -v n="$HEAVY" -v s="$SECS" 'BEGIN{printf "%.0f", (a - b) * 1e6 / n / s}') µs,"
			echo "  nginx $(awk -v a="$(mean 32 cpu_s)" -v b="$(mean 22 cpu_s)" -v n="$HEAVY" -v s="$SECS" \
				'BEGIN{printf "%.0f", (a - b) * 1e6 / n / s}') µs."
		fi
	fi
	echo "- **Softirq.** XDP's drops run in softirq, not in easgated's processes. The softirq row is"
	echo "  the whole machine's (phones, proxy, backend, other sessions; tick-sampled, as this kernel"
	echo "  has no CONFIG_IRQ_TIME_ACCOUNTING), so only differences between cases mean something."
	echo "  The XDP program itself is small by construction: $(mean 1 xdp_pass) packets passed and"
	echo "  $(mean 1 xdp_drops) dropped per run at ~75 ns each (xdp_bench's figure, README) is"
	echo "  $(awk -v a="$(mean 1 xdp_pass)" -v b="$(mean 1 xdp_drops)" 'BEGIN{printf "%.2f", (a + b) * 75e-6}') ms of softirq"
	echo "  (FLEET_BPF_STATS=1 measures it instead)."
	echo "- **Well-behaved phones.** Their rate is set by their think time (2–6 s between cycles,"
	echo "  Pings held 2 s), so it is the same for every proxy that neither refuses nor stalls them;"
	echo "  the refused and non-200 rows are the ones to read."
	echo "- **The nginx configuration** (fleet-nginx.conf.in). limit_req is keyed by \`\$remote_user\`"
	echo "  (the Basic user name without the password: the whole fleet shares one NAT address, so a"
	echo "  per-address key would throttle all 205 phones together), nodelay (a delayed answer still"
	echo "  lets the request through), 503 with Retry-After (the well-behaved phones honour it). A"
	echo "  well-behaved phone sends Sync and Ping every 4–8 s (and a FolderSync every 10th cycle),"
	echo "  0.25–0.5 requests/s, so a per-user limit tight enough to matter for a loop is close to"
	echo "  what normal phones need: 30r/m covers the fastest cycle; 20r/m equals the average one,"
	echo "  so over hours a phone's bucket drifts up to its burst and normal phones get refused"
	echo "  (a ${SECS} s run is too short to show it); 12r/m refuses them within the run."
	echo "  The UA rule refuses only MeetingResponse from \"^Apple.*1002.*\" (the admin notes' rule),"
	echo "  with a map on User-Agent and \`\$arg_Cmd\`; the 403 comes in"
	echo "  nginx's rewrite phase, before limit_req, so in the UA+limit case limit_req never sees the"
	echo "  loopers and is only a safety net."
} >"$OUT"
cat "$OUT"
say "results in $OUT"
finish
