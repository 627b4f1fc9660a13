#!/usr/bin/env bash
# run.sh - "make bench": easgated, HAProxy 2.6 and nginx 1.22 doing the same job on
# this machine in one run, in alternating rounds, then the policy and XDP
# micro-benchmarks. Writes tools/bench/results-YYYY-MM-DD.md (or $BENCH_OUT) and
# keeps the raw values and every tool's output in build/bench/runs/<time>/.
#
# The job, identical for the three proxies: TLS termination with the same ECDSA
# P-256 leaf + intermediate (tools/mkcerts.sh), user affinity by a consistent
# hash of the user (easgated: SipHash+Maglev of the identity; HAProxy/nginx:
# the Authorization header), the same two eas-demo-backend --quiet instances,
# 2 workers (HAProxy: 2 threads), no access log, TLS 1.3 with easgated's
# cipher-suite order, the same User-Agent refused by the proxy. Configs: haproxy.cfg.in, nginx.conf.in, and the
# easgated config written below.
#
# The six tests of issue #11, each round, per proxy (fresh start, 2 s warm-up;
# the proxies' order rotates from round to round):
#   (a) keepalive  wrk -t8 -c64 --latency, eas.lua replaying a real Sync capture,
#                  one user per wrk thread (a connection keeps its user, as a
#                  phone's does): req/s, p50/p99/p99.9, proxy CPU per request
#       paced      the same with 12 ms think time per connection (below every
#                  proxy's saturation): latency where it is comparable
#   (b) rotate     the same, every request the next of 100 users (an offloading
#                  load balancer's connections): also the backends' CPU per request
#   (c) mix        1,000 connections parked in an EAS Ping the backends hold, while
#                  16 connections sync flat out: CPU and latency of the syncs
#   (d) full / resumed TLS handshakes   idle_conns --handshakes: connect, TLS 1.3
#                  handshake, ticket, close; no request: CPU per handshake and
#                  connect-to-handshake latency p50/p99/p99.9
#   (e) refused    (a) with a blocked User-Agent: easgated's WBXML Status 129
#                  answer vs HAProxy's deny and nginx's bare 403
#   (f) idle       memory per parked TLS long-poll (below)
# easgated-nc (in BENCH_PROXIES by default) is easgated with
# tls.cleanse_plaintext = false, run for (a) and (e) only: what the cleansing costs.
# Proxy CPU = utime+stime (+ reaped children) of the proxy's process tree from
# /proc/PID/stat, before and after each run. Client, proxy and backends share
# the cores, so CPU per request, not req/s, is the fair comparison.
# Context switches: voluntary and involuntary, summed over every thread of the
# tree (/proc/PID/task/*/status) across the same window, per 1,000 requests:
# how often the proxy sleeps in its poll and how often the scheduler takes the
# CPU from it mid-work (on shared cores every proxy is preempted every 2-3
# requests: the counts say how often, not where it lands, which the p99 follows).
# Then once per proxy (fresh start): idle_conns opens N1 then N2 TLS connections
# that each send an EAS Ping the backends hold (a real parked long-poll);
# Pss/Rss of the proxy's processes before and after, divided by N; then 1,000
# more connections that only complete the handshake (the TLS part alone).
#
# Usage: tools/bench/run.sh [--quick]     (--quick: ~2 min smoke run)
# Environment: EG_BUILD (build), BENCH_OUT, BENCH_ROUNDS (2), BENCH_SECONDS (8),
#   BENCH_HS_SECONDS (5), BENCH_IDLE ("5000", clipped to the fd limit),
#   BENCH_TESTS ("keepalive paced rotate mix refused handshakes idle"),
#   BENCH_ROTATE (100 users), BENCH_MIX_PARKED (1000), BENCH_MIX_CONNS (16),
#   BENCH_PROXIES ("easgated haproxy nginx easgated-nc"), BENCH_PERF=1 (append
#   perf profiles), BENCH_SCHED=1 (append what the scheduler did to the proxy's
#   threads in (a) and (e): `perf sched` run-queue delays and slice lengths),
#   BENCH_KEEP=1 (keep the work directory).
# Runs as root or not (root: xdp_bench runs, the fd limit may be raised).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
O=${EG_BUILD:-build}
case $O in /*) ;; *) O=$ROOT/$O ;; esac
ROUNDS=${BENCH_ROUNDS:-2}
SECS=${BENCH_SECONDS:-8}
HS_SECS=${BENCH_HS_SECONDS:-5}
HS_PAR=${BENCH_HS_PAR:-32}
CONNS=${BENCH_CONNS:-64}
THREADS=${BENCH_THREADS:-8}
PACED_MS=${BENCH_PACED_MS:-12}
IDLE=${BENCH_IDLE:-"5000"}
PROXIES=${BENCH_PROXIES:-"easgated haproxy nginx easgated-nc"}
TESTS=${BENCH_TESTS:-"keepalive paced rotate mix refused handshakes idle"}
ROTATE=${BENCH_ROTATE:-100}
MIX_PARKED=${BENCH_MIX_PARKED:-1000}
MIX_CONNS=${BENCH_MIX_CONNS:-16}
PERF=${BENCH_PERF:-0}
SCHED=${BENCH_SCHED:-0}
CAPTURE=${BENCH_CAPTURE:-$ROOT/tests/data/eas-captures/754-R90-Sync.http}
PING=${BENCH_PING:-$ROOT/tests/data/eas-captures/754-R121-Ping.http}
BLOCK_UA='Apple-iPhone4C1/1002.142'
BLOCK_RE='^Apple.*1002.*'
if [ "${1:-}" = "--quick" ]; then
	ROUNDS=1 SECS=3 HS_SECS=2 IDLE="1000" MIX_PARKED=300
fi
has() { [[ " $TESTS " == *" $1 "* ]]; }
OUT=${BENCH_OUT:-$ROOT/tools/bench/results-$(date +%F).md}
HERE=$ROOT/tools/bench

say() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

for c in wrk openssl curl cc python3; do
	command -v "$c" >/dev/null || die "needs $c (tools/deps.sh installs it)"
done
[ -x "$O/easgated" ] && [ -x "$O/eas-demo-backend" ] && [ -x "$O/easctl" ] &&
	[ -x "$O/bench/idle_conns" ] ||
	die "build first: make (looked in $O)"
[ -f "$CAPTURE" ] && [ -f "$PING" ] || die "captures missing"
avail=()
for p in $PROXIES; do
	case $p in
	easgated | easgated-nc) avail+=("$p") ;;
	haproxy | nginx) if command -v "$p" >/dev/null; then avail+=("$p"); else say "no $p: skipped"; fi ;;
	*) die "unknown proxy $p" ;;
	esac
done
PROXIES=${avail[*]}

B=$(mktemp -d /tmp/egbench.XXXXXX)
RAW=$O/bench/runs/$(date +%Y%m%d-%H%M%S)
mkdir -p "$RAW" || die "cannot create $RAW"
chmod 755 "$B" # the proxies' workers run as nobody
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	cp "$B"/results.tsv "$B"/*.log "$B"/*.err "$B"/*.out "$B"/perf.md "$B"/sched.md "$B"/sched-*.tsv "$RAW"/ 2>/dev/null
	if [ -n "${BENCH_KEEP:-}" ]; then say "work directory kept: $B"; else rm -rf "$B"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# As many descriptors as we may have: parked connections need 2 each in the
# proxy (client + backend side). Without CAP_SYS_RESOURCE the hard limit stays.
ulimit -Hn 1048576 2>/dev/null
ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)
# The largest idle count every proxy can hold: HAProxy is one process (2 fds
# per parked connection), the idle client is split per 9,000 connections.
IDLE_MAX=$(((NOFILE - 400) / 2 / 1000 * 1000))
idle_counts=()
idle_clipped=""
for n in $IDLE; do
	if [ "$n" -gt "$IDLE_MAX" ]; then
		idle_clipped+=" $n->$IDLE_MAX"
		n=$IDLE_MAX
	fi
	idle_counts+=("$n")
done
HAP_MAXCONN=$(((NOFILE - 300) / 2))
BARE=1000 # handshake-only connections on top (1 descriptor each in the proxy)
[ "$IDLE_MAX" -ge 1000 ] || BARE=100
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
LOADS="" # the 1-minute load average at every proxy start (noise record)

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- helpers (make builds every program of tools/bench into $O/bench) ----------
say "work directory $B"
IC=$O/bench/idle_conns

# --- PKI and backends -----------------------------------------------------------
"$ROOT/tools/mkcerts.sh" "$B/pki" localhost 127.0.0.1 >/dev/null || die "mkcerts failed"
PKI=$B/pki
cat "$PKI/server.pem" "$PKI/server.key" >"$B/haproxy.pem" # HAProxy: chain + key in one file

start_backend() { # NAME -> sets BE_PORT_NAME; held Pings last an hour
	local pf=$B/be-$1.port
	"$O/eas-demo-backend" --listen 127.0.0.1:0 --port-file "$pf" --name "$1" --quiet \
		--hold-ping-ms 3600000 >"$B/be-$1.log" 2>&1 &
	PIDS+=($!)
	BE_PIDS+=($!)
	for _ in $(seq 100); do [ -s "$pf" ] && break; sleep 0.05; done
	[ -s "$pf" ] || die "backend $1 did not start"
	BE_PORT=$(cat "$pf")
}
BE_PIDS=()
start_backend be1
BE1=$BE_PORT
start_backend be2
BE2=$BE_PORT

# --- process accounting -----------------------------------------------------------
tree_pids() { # ROOT -> ROOT and all its descendants
	ps -e -o pid=,ppid= | awk -v r="$1" '
		{ kids[$2] = kids[$2] " " $1 }
		END { q[1] = r; n = 1; for (i = 1; i <= n; i++) { print q[i];
			m = split(kids[q[i]], a, " "); for (j = 1; j <= m; j++) q[++n] = a[j] } }'
}
TCK=$(getconf CLK_TCK)
cpu_ticks() { # ROOT -> "user system" CPU of the tree in clock ticks (reaped children included)
	local p tu=0 ts=0 f
	for p in $(tree_pids "$1"); do
		f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		f=${f##*) } # fields from 3 on; comm may contain spaces
		read -r _ _ _ _ _ _ _ _ _ _ _ u s cu cs _ <<<"$f"
		tu=$((tu + u + cu))
		ts=$((ts + s + cs))
	done
	echo "$tu $ts"
}
backend_ticks() { # user+system CPU of both backends, clock ticks
	local p t=0 u s
	for p in "${BE_PIDS[@]}"; do
		read -r u s < <(cpu_ticks "$p")
		t=$((t + u + s))
	done
	echo "$t"
}
# rec_cpu PROXY ROUND KIND "U0 S0" "U1 S1" N: µs of CPU per unit, total and user part
rec_cpu() {
	local u0 s0 u1 s1
	read -r u0 s0 <<<"$4"
	read -r u1 s1 <<<"$5"
	rec "$1" "$2" "${3}_cpu_us" "$(awk -v c=$((u1 + s1 - u0 - s0)) -v n="$6" -v t="$TCK" 'BEGIN{printf "%.1f", n ? c*1e6/t/n : 0}')"
	rec "$1" "$2" "${3}_user_us" "$(awk -v c=$((u1 - u0)) -v n="$6" -v t="$TCK" 'BEGIN{printf "%.1f", n ? c*1e6/t/n : 0}')"
	CPU_MS=$(((u1 + s1 - u0 - s0) * 1000 / TCK))
}
# ctx_switches ROOT -> "voluntary involuntary" context switches of the tree,
# summed over every thread (/proc/PID/status counts its own thread only).
ctx_switches() {
	local p
	for p in $(tree_pids "$1"); do
		cat /proc/"$p"/task/*/status 2>/dev/null
	done | awk '$1 == "voluntary_ctxt_switches:" {v += $2}
		$1 == "nonvoluntary_ctxt_switches:" {i += $2} END {print v + 0, i + 0}'
}
# rec_ctx PROXY ROUND KIND "V0 I0" "V1 I1" N: context switches per 1,000 units
rec_ctx() {
	local v0 i0 v1 i1
	read -r v0 i0 <<<"$4"
	read -r v1 i1 <<<"$5"
	rec "$1" "$2" "${3}_vcsw_per_1k" "$(awk -v c=$((v1 - v0)) -v n="$6" 'BEGIN{printf "%.1f", n ? c*1000/n : 0}')"
	rec "$1" "$2" "${3}_ivcsw_per_1k" "$(awk -v c=$((i1 - i0)) -v n="$6" 'BEGIN{printf "%.1f", n ? c*1000/n : 0}')"
}
mem_kib() { # ROOT -> "pss_kib rss_kib" summed over the tree
	local p pss=0 rss=0 a b
	for p in $(tree_pids "$1"); do
		read -r a b < <(awk '/^Pss:/ {p=$2} /^Rss:/ {r=$2} END {print p+0, r+0}' \
			"/proc/$p/smaps_rollup" 2>/dev/null || echo "0 0")
		pss=$((pss + a))
		rss=$((rss + b))
	done
	echo "$pss $rss"
}

# --- the three proxies --------------------------------------------------------------
# start_proxy NAME -> PX_PID (root of the process tree), PX_PORT; waits until
# it answers a request through a backend.
NSTART=0
start_proxy() {
	local name=$1 d
	NSTART=$((NSTART + 1))
	d=$B/$name-$NSTART
	mkdir -p "$d"
	chmod 777 "$d"
	PX_PORT=$(free_port)
	case $name in
	easgated | easgated-nc)
		cat >"$d/easgated.conf" <<EOF
workers = 2;
access_log = false;
log_level = "warn";
timeouts = { drain = 2; };
policy = { rules = ( "block UserAgent matches \"$BLOCK_RE\"" ); };
EOF
		[ "$name" = easgated-nc ] && echo 'tls = { cleanse_plaintext = false; };' >>"$d/easgated.conf"
		"$O/easgated" -c "$d/easgated.conf" --listen "127.0.0.1:$PX_PORT" \
			--tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" \
			--trust-file "$PKI/root.pem" --state-dir "$d/state" --control-socket "$d/ctl.sock" \
			--backend "be1=127.0.0.1:$BE1,health=/health" \
			--backend "be2=127.0.0.1:$BE2,health=/health" >"$d/out.log" 2>&1 &
		;;
	haproxy)
		sed -e "s|@DIR@|$d|g" -e "s|@PORT@|$PX_PORT|g" -e "s|@CERT@|$B/haproxy.pem|g" \
			-e "s|@BE1@|$BE1|g" -e "s|@BE2@|$BE2|g" -e "s|@BLOCK_RE@|$BLOCK_RE|g" \
			-e "s|@MAXCONN@|$HAP_MAXCONN|g" "$HERE/haproxy.cfg.in" >"$d/haproxy.cfg"
		haproxy -db -f "$d/haproxy.cfg" >"$d/out.log" 2>&1 &
		;;
	nginx)
		mkdir -p "$d/tmp"
		chmod 777 "$d/tmp"
		sed -e "s|@DIR@|$d|g" -e "s|@PORT@|$PX_PORT|g" -e "s|@CERT@|$PKI/server.pem|g" \
			-e "s|@KEY@|$PKI/server.key|g" -e "s|@BE1@|$BE1|g" -e "s|@BE2@|$BE2|g" \
			-e "s|@BLOCK_RE@|$BLOCK_RE|g" -e "s|@NOFILE@|$NOFILE|g" \
			"$HERE/nginx.conf.in" >"$d/nginx.conf"
		nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >"$d/out.log" 2>&1 &
		;;
	esac
	PX_PID=$!
	PX_DIR=$d
	LOADS+="$name $(cut -d' ' -f1 /proc/loadavg); "
	PIDS+=("$PX_PID")
	for _ in $(seq 150); do
		if curl -s -o /dev/null --max-time 2 --cacert "$PKI/root.pem" \
			"https://127.0.0.1:$PX_PORT/health"; then
			break
		fi
		kill -0 "$PX_PID" 2>/dev/null || break
		sleep 0.1
	done
	if ! kill -0 "$PX_PID" 2>/dev/null; then
		cat "$d/out.log" >&2
		die "$name did not start"
	fi
	if [ "$name" != haproxy ] && [ "$name" != nginx ]; then # both backends marked up
		for _ in $(seq 100); do
			[ "$("$O/easctl" -s "$d/ctl.sock" backends 2>/dev/null | awk '$3 == "up"' | wc -l)" -eq 2 ] &&
				break
			sleep 0.1
		done
	fi
}
stop_proxy() {
	kill -TERM "$PX_PID" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$PX_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$PX_PID" 2>/dev/null
	wait "$PX_PID" 2>/dev/null
}

# --- measurements ------------------------------------------------------------------------
RES=$B/results.tsv # proxy round metric value
rec() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RES"; }
kv() { # KEY LINE -> value of key=value in LINE
	sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"
}

# run_wrk PROXY ROUND KIND [env...]: one wrk run, CPU of the proxy (and of the
# backends) around it. WRK_T / WRK_C override the threads and connections.
run_wrk() {
	local px=$1 r=$2 kind=$3 secs=$SECS c0 c1 b0 b1 x0 x1 out line req
	shift 3
	[ "$kind" = warmup ] && secs=2
	b0=$(backend_ticks)
	c0=$(cpu_ticks "$PX_PID")
	x0=$(ctx_switches "$PX_PID")
	out=$(env BENCH_CAPTURE="$CAPTURE" "$@" wrk -t"${WRK_T:-$THREADS}" -c"${WRK_C:-$CONNS}" \
		-d"${secs}s" --latency -s "$HERE/eas.lua" "https://127.0.0.1:$PX_PORT/" 2>&1)
	x1=$(ctx_switches "$PX_PID")
	c1=$(cpu_ticks "$PX_PID")
	b1=$(backend_ticks)
	{
		echo "### $px round $r $kind $*"
		echo "$out"
	} >>"$B/wrk-$px.log"
	line=$(grep '^BENCH ' <<<"$out")
	[ -n "$line" ] || { echo "$out" >&2; die "$px $kind: wrk gave no result"; }
	[ "$kind" = warmup ] && { WARM_BACKENDS=$(kv backends "$line"); return; }
	req=$(kv requests "$line")
	rec_cpu "$px" "$r" "$kind" "$c0" "$c1" "$req"
	rec_ctx "$px" "$r" "$kind" "$x0" "$x1" "$req"
	rec "$px" "$r" "${kind}_rps" "$(awk -v n="$req" -v d="$(kv duration_us "$line")" 'BEGIN{printf "%.0f", n*1e6/d}')"
	rec "$px" "$r" "${kind}_p50_ms" "$(awk -v v="$(kv p50_us "$line")" 'BEGIN{printf "%.2f", v/1000}')"
	rec "$px" "$r" "${kind}_p99_ms" "$(awk -v v="$(kv p99_us "$line")" 'BEGIN{printf "%.2f", v/1000}')"
	rec "$px" "$r" "${kind}_p999_ms" "$(awk -v v="$(kv p999_us "$line")" 'BEGIN{printf "%.2f", v/1000}')"
	rec "$px" "$r" "${kind}_backend_cpu_us" "$(awk -v c=$((b1 - b0)) -v n="$req" -v t="$TCK" 'BEGIN{printf "%.1f", n ? c*1e6/t/n : 0}')"
	local bad=$(($(kv unexpected "$line") + $(kv connect_err "$line") + $(kv read_err "$line") + \
		$(kv write_err "$line") + $(kv timeouts "$line")))
	[ "$kind" = refused ] || bad=$((bad + $(kv status_err "$line")))
	rec "$px" "$r" "${kind}_bad" "$bad"
	rec "$px" "$r" "${kind}_backends" "$(kv backends "$line")"
	say "$px round $r $kind: $(kv requests "$line") requests, cpu $CPU_MS ms, bad $bad"
}

# run_hs PROXY ROUND full|resume: TLS handshakes only.
run_hs() {
	local px=$1 r=$2 mode=$3 c0 c1 x0 x1 line n
	c0=$(cpu_ticks "$PX_PID")
	x0=$(ctx_switches "$PX_PID")
	line=$("$IC" --handshakes "$mode" -d "$HS_SECS" -P "$HS_PAR" --src-addrs 8 \
		"127.0.0.1:$PX_PORT" 2>>"$B/idle_conns.err")
	x1=$(ctx_switches "$PX_PID")
	c1=$(cpu_ticks "$PX_PID")
	[ -n "$line" ] || die "$px $mode: no handshake result"
	n=$(kv 'done' "$line")
	rec_cpu "$px" "$r" "hs_${mode}" "$c0" "$c1" "$n"
	rec_ctx "$px" "$r" "hs_${mode}" "$x0" "$x1" "$n"
	rec "$px" "$r" "hs_${mode}_rate" "$(kv rate "$line")"
	rec "$px" "$r" "hs_${mode}_resumed_pct" "$(awk -v a="$(kv resumed "$line")" -v n="$n" 'BEGIN{printf "%.1f", n ? 100*a/n : 0}')"
	rec "$px" "$r" "hs_${mode}_failed" "$(kv failed "$line")"
	rec "$px" "$r" "hs_${mode}_new_tickets_on_resumed" "$(kv new_tickets_on_resumed "$line")"
	local q
	for q in p50 p99 p999; do
		rec "$px" "$r" "hs_${mode}_${q}_ms" "$(awk -v v="$(kv ${q}_us "$line")" 'BEGIN{printf "%.2f", v/1000}')"
	done
	say "$px round $r $mode handshakes: $line, cpu $CPU_MS ms"
}

# What a client sees, once per proxy: TLS parameters, refusal status and
# whether the refused connection stays open.
facts() {
	local px=$1 out u
	out=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername localhost \
		-CAfile "$PKI/root.pem" -verify_return_error -brief 2>&1)
	rec "$px" 0 tls "$(sed -n 's/^Protocol version: //p' <<<"$out") $(sed -n 's/^Ciphersuite: //p' <<<"$out") $(sed -n 's/^\(Negotiated\|Server Temp Key\|Peer Temp Key\)[^:]*: //p' <<<"$out" | head -1 | tr -d ',')"
	rec "$px" 0 chain_ok "$(grep -q 'Verification: OK' <<<"$out" && echo yes || echo NO)"
	u="https://127.0.0.1:$PX_PORT/Microsoft-Server-ActiveSync?Cmd=Sync&User=x%40dev.fd&DeviceId=Appl0123456789&DeviceType=iPhone"
	out=$(curl -sv -o /dev/null --cacert "$PKI/root.pem" -A "$BLOCK_UA" -u x@dev.fd:pw \
		-H 'MS-ASProtocolVersion: 16.1' -H 'Content-Type: application/vnd.ms-sync.wbxml' \
		--data-binary x "$u" -o /dev/null "$u" 2>&1)
	rec "$px" 0 refused_status "$(grep -a '^< HTTP/' <<<"$out" | head -1 | awk '{print $3}')"
	rec "$px" 0 refused_keepalive "$(grep -qa 'Re-using existing connection' <<<"$out" && echo yes || echo no)"
	rec "$px" 0 refused_from_backend "$(grep -qia '^< X-Backend' <<<"$out" && echo YES || echo no)"
}

profile() { # PROXY: a perf profile of a keep-alive and a handshake run (not measured)
	local px=$1 pids k
	command -v perf >/dev/null || return 0
	pids=$(tree_pids "$PX_PID" | paste -sd,)
	for k in keepalive full; do
		perf record -e cpu-clock -F 1999 -g -p "$pids" -o "$B/perf-$px-$k.data" -- sleep 5 \
			>/dev/null 2>&1 &
		local pp=$!
		sleep 0.3
		if [ $k = keepalive ]; then
			BENCH_CAPTURE="$CAPTURE" wrk -t"$THREADS" -c"$CONNS" -d4s -s "$HERE/eas.lua" \
				"https://127.0.0.1:$PX_PORT/" >/dev/null 2>&1
		else
			"$IC" --handshakes full -d 4 -P "$HS_PAR" --src-addrs 8 "127.0.0.1:$PX_PORT" >/dev/null 2>&1
		fi
		wait $pp
		{
			echo "### $px, $k: perf report --no-children --sort dso,sym (top 25)"
			echo '```'
			perf report -i "$B/perf-$px-$k.data" --stdio --no-children --sort dso,sym -g none \
				--percent-limit 0.7 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25
			echo '```'
		} >>"$B/perf.md"
	done
}

# sched_profile PROXY: what the scheduler did to the proxy's threads during a
# keep-alive (a) and a refused (e) run (separate, unmeasured runs): `perf sched
# record` of the whole machine, then per slice of a proxy thread from `perf
# sched timehist`: the run-queue delay before it (woken or preempted, until on
# a CPU) and the slice's length. A p99 that one proxy has and another has not,
# with the same client on the same cores, is where its requests waited.
sched_profile() {
	local px=$1 pids k data
	command -v perf >/dev/null || return 0
	pids=" $(tree_pids "$PX_PID" | tr '\n' ' ')"
	for k in keepalive refused; do
		data=$B/sched-$px-$k.data
		perf sched record -a -o "$data" -- sleep 5 >/dev/null 2>&1 &
		local pp=$!
		sleep 0.3
		if [ $k = keepalive ]; then
			BENCH_CAPTURE="$CAPTURE" wrk -t"$THREADS" -c"$CONNS" -d4s -s "$HERE/eas.lua" \
				"https://127.0.0.1:$PX_PORT/" >/dev/null 2>&1
		else # the refusal's status as in the measured runs
			local expect=200
			[ "$px" = haproxy ] || [ "$px" = nginx ] && expect=403
			BENCH_CAPTURE="$CAPTURE" BENCH_UA="$BLOCK_UA" BENCH_REFUSED=1 BENCH_EXPECT=$expect \
				wrk -t"$THREADS" -c"$CONNS" -d4s -s "$HERE/eas.lua" \
				"https://127.0.0.1:$PX_PORT/" >/dev/null 2>&1
		fi
		wait $pp
		# timehist: time cpu task[tid/pid] wait sch_delay run_time (ms). A
		# thread of the proxy is one whose pid (after the '/', or the tid of a
		# single-threaded process) is in the proxy's tree.
		perf sched timehist -i "$data" 2>/dev/null | awk -v pids="$pids" '
			NR > 3 && $3 ~ /\[/ {
				id = $3; sub(/.*\[/, "", id); sub(/\].*/, "", id)
				n = split(id, a, "/"); pid = a[n]
				if (index(pids, " " pid " ")) print $(NF - 1), $NF
			}' >"$B/sched-$px-$k.tsv"
		[ -n "${BENCH_KEEP:-}" ] || rm -f "$data" "$data.old"
		{
			printf '| %s | %s ' "$px" "$k"
			awk '{ print $1 }' "$B/sched-$px-$k.tsv" | sort -g | awk '
				{ v[NR] = $1; if ($1 > 1) over1++; if ($1 > 4) over4++; s += $1 }
				function q(p) { return NR ? v[int((NR - 1) * p) + 1] : 0 }
				END { printf "| %d | %.3f | %.3f | %.3f | %.2f | %d | %d | %.0f ", NR, q(0.5), q(0.99),
					q(0.999), NR ? v[NR] : 0, over1, over4, s }'
			awk '{ print $2 }' "$B/sched-$px-$k.tsv" | sort -g | awk '
				{ v[NR] = $1 }
				function q(p) { return NR ? v[int((NR - 1) * p) + 1] : 0 }
				END { printf "| %.3f | %.3f |\n", q(0.5), q(0.99) }'
		} >>"$B/sched.md"
	done
}

wait_ready() { # FILE PID -> 0 once READY is printed
	for _ in $(seq 1800); do
		grep -qs '^READY' "$1" && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# run_mix PROXY ROUND: (c) MIX_PARKED connections each park an EAS Ping that the
# backends hold, then MIX_CONNS connections sync flat out; CPU and latency of the
# syncs (the parked ones were opened before the measurement starts).
run_mix() {
	local px=$1 r=$2 f=$B/mix-$1-$2.out ip
	"$IC" -n "$MIX_PARKED" -P 64 --src-addrs 8 -r "$PING" "127.0.0.1:$PX_PORT" >"$f" \
		2>>"$B/idle_conns.err" &
	ip=$!
	PIDS+=("$ip")
	wait_ready "$f" "$ip" || say "$px: mix: parked client did not get ready ($(cat "$f"))"
	rec "$px" "$r" mix_parked "$(kv opened "$(grep '^READY' "$f")")"
	rec "$px" "$r" mix_parked_answered "$(kv answered "$(grep '^READY' "$f")")"
	WRK_T=4 WRK_C=$MIX_CONNS run_wrk "$px" "$r" mix
	kill -TERM "$ip" 2>/dev/null
	wait "$ip" 2>/dev/null
}

# --- the rounds: every proxy in each, the order rotating ---------------------------------
read -r -a plist <<<"$PROXIES"
np=${#plist[@]}
for r in $(seq "$ROUNDS"); do
	for i in $(seq 0 $((np - 1))); do
		px=${plist[$(((i + r - 1) % np))]}
		start_proxy "$px"
		[ "$r" = 1 ] && facts "$px"
		run_wrk "$px" "$r" warmup
		rec "$px" "$r" warmup_backends "$WARM_BACKENDS"
		has keepalive && run_wrk "$px" "$r" keepalive
		if has refused; then
			if [ "$px" = haproxy ] || [ "$px" = nginx ]; then
				run_wrk "$px" "$r" refused BENCH_UA="$BLOCK_UA" BENCH_REFUSED=1 BENCH_EXPECT=403
			else # EAS 16.1: Exchange answers a blocked device 200 + Status 129
				run_wrk "$px" "$r" refused BENCH_UA="$BLOCK_UA" BENCH_REFUSED=1 BENCH_EXPECT=200
			fi
		fi
		if [ "$px" != easgated-nc ]; then # the cleansing's cost: (a) and (e) only
			has paced && run_wrk "$px" "$r" paced BENCH_DELAY_MS="$PACED_MS"
			has rotate && run_wrk "$px" "$r" rotate BENCH_ROTATE="$ROTATE"
			has mix && run_mix "$px" "$r"
			if has handshakes; then
				run_hs "$px" "$r" full
				run_hs "$px" "$r" resume
			fi
			[ "$r" = 1 ] && [ "$PERF" = 1 ] && profile "$px"
			[ "$r" = 1 ] && [ "$SCHED" = 1 ] && sched_profile "$px"
		fi
		stop_proxy
	done
done

# --- (f) memory per parked long-poll ------------------------------------------------------
for px in $PROXIES; do
	has idle || break
	[ "$px" = easgated-nc ] && continue
	start_proxy "$px"
	BENCH_CAPTURE="$CAPTURE" wrk -t2 -c8 -d1s -s "$HERE/eas.lua" "https://127.0.0.1:$PX_PORT/" >/dev/null 2>&1
	sleep 1
	read -r pss0 rss0 < <(mem_kib "$PX_PID")
	rec "$px" 0 idle_base_pss_kib "$pss0"
	rec "$px" 0 idle_base_rss_kib "$rss0"
	prev=0
	cpids=()
	for n in "${idle_counts[@]}"; do
		add=$((n - prev))
		[ "$add" -gt 0 ] || continue
		# One client per 9,000 connections: each process has its fd limit too.
		while [ "$add" -gt 0 ]; do
			k=$((add > 9000 ? 9000 : add))
			f=$B/idle-$px-$n-${#cpids[@]}.out
			"$IC" -n "$k" -P 64 --src-addrs 8 -r "$PING" "127.0.0.1:$PX_PORT" >"$f" 2>>"$B/idle_conns.err" &
			cpids+=($!)
			PIDS+=($!)
			wait_ready "$f" "${cpids[-1]}" || say "$px: idle client did not get ready ($(cat "$f"))"
			add=$((add - k))
		done
		sleep 2
		read -r pss rss < <(mem_kib "$PX_PID")
		opened=0 answered=0
		for f in "$B"/idle-"$px"-*.out; do
			opened=$((opened + $(kv opened "$(grep '^READY' "$f")")))
			answered=$((answered + $(kv answered "$(grep '^READY' "$f")")))
		done
		rec "$px" 0 "idle_${n}_opened" "$opened"
		rec "$px" 0 "idle_${n}_answered" "$answered"
		rec "$px" 0 "idle_${n}_pss_kib" "$pss"
		rec "$px" 0 "idle_${n}_rss_kib" "$rss"
		say "$px idle $n: opened $opened, answered early $answered, pss $pss KiB (base $pss0), rss $rss KiB (base $rss0)"
		prev=$n
	done
	# Then BARE more connections that only complete the handshake: the TLS
	# part alone (the heap has grown already, so this is new memory too).
	f=$B/bare-$px.out
	"$IC" -n "$BARE" -P 64 --src-addrs 8 "127.0.0.1:$PX_PORT" >"$f" 2>>"$B/idle_conns.err" &
	cpids+=($!)
	PIDS+=($!)
	wait_ready "$f" "${cpids[-1]}" || say "$px: bare client did not get ready ($(cat "$f"))"
	sleep 2
	read -r pss3 _ < <(mem_kib "$PX_PID")
	rec "$px" 0 bare_opened "$(kv opened "$(grep '^READY' "$f")")"
	rec "$px" 0 bare_bytes "$(((pss3 - pss) * 1024 / BARE))"
	[ "$px" = easgated ] && rec "$px" 0 idle_long_polls \
		"$("$O/easctl" -s "$PX_DIR/ctl.sock" status 2>/dev/null | awk '$1 == "long_polls" {print $2}')"
	for p in "${cpids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${cpids[@]}"; do wait "$p" 2>/dev/null; done
	stop_proxy
done

# --- micro-benchmarks (built by make into $O/bench) -------------------------------------------
PB_OUT="(not run)"
if [ -x "$O/bench/policy_bench" ]; then
	say "policy_bench"
	PB_OUT=$(cd "$ROOT" && timeout 300 "$O/bench/policy_bench" 2>&1)
else
	PB_OUT="$O/bench/policy_bench missing (make)"
fi
TM_OUT="(not run)"
if [ -x "$O/bench/tls_mem" ]; then
	say "tls_mem"
	TM_OUT=$(ulimit -n 20000 2>/dev/null; timeout 120 "$O/bench/tls_mem" -n 2000 "$PKI/server.pem" "$PKI/server.key" 2>&1)
fi
XB_OUT="(not run)"
if [ -x "$O/bench/xdp_bench" ]; then
	say "xdp_bench"
	XB_OUT=$(timeout 300 "$O/bench/xdp_bench" 2>&1)
else
	XB_OUT="$O/bench/xdp_bench missing (make)"
fi

# --- report ------------------------------------------------------------------------------------
say "writing $OUT"
vers() {
	case $1 in
	easgated-nc) ;;
	easgated) echo "easgated $("$O/easgated" --version | awk '{print $2}') ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(basename "$O"))" ;;
	haproxy) haproxy -v 2>/dev/null | head -1 | awk '{print "HAProxy", $3}' ;;
	nginx) nginx -v 2>&1 | sed 's|nginx version: nginx/|nginx |' ;;
	esac
}
VERSIONS=""
for px in $PROXIES; do [ "$px" = easgated-nc ] || VERSIONS+="$(vers "$px"); "; done
VERSIONS+="$(openssl version | awk '{print "OpenSSL", $2}'); $(wrk --version 2>&1 | head -1 | awk '{print "wrk", $2}')"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
MACHINE="$(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"

python3 - "$RES" "$OUT" <<PY
import sys, collections
res, out = sys.argv[1], sys.argv[2]
d = collections.defaultdict(dict)
for line in open(res):
    px, r, k, v = line.rstrip("\n").split("\t")
    d[(px, k)][int(r)] = v
proxies = "$PROXIES".split()
rounds = $ROUNDS
idle = [int(x) for x in "${idle_counts[*]}".split()]

def vals(px, k):
    return [float(v) for r, v in sorted(d[(px, k)].items()) if r > 0]
def mean(px, k):
    v = vals(px, k)
    return sum(v) / len(v) if v else None
def cell(px, k, fmt="{:.1f}"):
    v = vals(px, k)
    if not v:
        return "n/a"
    s = fmt.format(sum(v) / len(v))
    if len(v) > 1:
        s += " (" + "–".join(fmt.format(x) for x in (min(v), max(v))) + ")"
    return s
def one(px, k):
    return d[(px, k)].get(0, "n/a")
def per_conn(px, n):
    try:
        return (float(one(px, f"idle_{n}_pss_kib")) - float(one(px, "idle_base_pss_kib"))) * 1024 / n
    except ValueError:
        return None
def per_conn_rss(px, n):
    try:
        return (float(one(px, f"idle_{n}_rss_kib")) - float(one(px, "idle_base_rss_kib"))) * 1024 / n
    except ValueError:
        return None

L = []
w = L.append
w("# easgate benchmark results, $(date +%F)")
w("")
w("Machine: $MACHINE.  ")
w("Versions: $VERSIONS.  ")
w("Load average (1/5/15 min) at the start: $LOAD_START, at the end: $LOAD_END (other work on the "
  "machine at the same time inflates every figure, the proxies' alike).  ")
w(f"Written by \`tools/bench/run.sh\` ({rounds} round(s); each value is the mean, in brackets the "
  "range over the rounds). Client (wrk, idle_conns), proxy and the two backends share the "
  "same cores, so **proxy CPU per request** is the comparable figure; req/s mostly says how "
  "much CPU was left for the proxy. Proxy CPU = utime+stime of all its processes "
  "(/proc/PID/stat) across the run. Context switches: voluntary (the proxy went to sleep) and "
  "involuntary (the scheduler took the CPU from it while it had work), all its threads "
  "(/proc/PID/task/*/status), same window, per 1,000 requests or handshakes.")
w("")
w(f"Load: wrk -t$THREADS -c$CONNS -d${SECS}s over HTTPS keep-alive (TLS 1.3), the real capture "
  f"\`{'$CAPTURE'.split('/')[-1]}\` (POST Sync, WBXML body); each wrk thread is one user "
  "(User=, Basic credentials, DeviceId), so $THREADS users on $CONNS connections. *paced*: the same with ${PACED_MS} ms think time per "
  "connection (below every proxy's saturation; latency there is comparable). Refused: the "
  f"same request with User-Agent \`$BLOCK_UA\` matching \`$BLOCK_RE\`. Handshakes: "
  f"\`idle_conns --handshakes\` (TCP connect, TLS 1.3 handshake, ticket, close_notify; no "
  f"request) for ${HS_SECS} s with $HS_PAR in flight.")
w("")
w("Load average at each proxy's start (1 min): $LOADS  ")
w("Raw values and every tool's output: \`$RAW\`.")
w("")
w(f"(b) *rotate*: the same, each request the next of $ROTATE users. (c) *mix*: $MIX_PARKED connections "
  f"parked in an EAS Ping (\`754-R121-Ping.http\`) that the backends hold, while wrk -t4 -c$MIX_CONNS syncs "
  "flat out. Latency is wrk's (a request's start to its answer) and, for handshakes, TCP connect "
  "to handshake complete. easgated-nc: easgated with \`tls.cleanse_plaintext = false\`.")
w("")
cols = [p for p in proxies]
def lat(px, k):
    v = [mean(px, f"{k}_{q}_ms") for q in ("p50", "p99", "p999")]
    if any(x is None for x in v):
        return "n/a"
    s = " / ".join(f"{x:.2f}" for x in v)
    p99 = vals(px, f"{k}_p99_ms")
    if len(p99) > 1:
        s += f" (p99 {min(p99):.2f}–{max(p99):.2f})"
    return s
def csw(px, k):
    v, i = mean(px, f"{k}_vcsw_per_1k"), mean(px, f"{k}_ivcsw_per_1k")
    if v is None or i is None:
        return "n/a"
    s = f"{v:.0f} / {i:.0f}"
    iv = vals(px, f"{k}_ivcsw_per_1k")
    if len(iv) > 1:
        s += f" (invol. {min(iv):.0f}–{max(iv):.0f})"
    return s
def row(test, measure, f):
    w("| " + " | ".join([test, measure] + [f(px) for px in cols]) + " |")
w("## The six tests (issue #11)")
w("")
w("| test | measure | " + " | ".join(cols) + " |")
w("|---|---|" + "---|" * len(cols))
for test, k, unit in [
    ("(a) keep-alive, one user per connection", "keepalive", "request"),
    ("(a) paced, 12 ms think time", "paced", "request"),
    ("(b) users taking turns on each connection", "rotate", "request"),
    ("(c) long-poll mix: syncs among parked Pings", "mix", "sync"),
    ("(e) refused (WBXML 129 / deny / 403)", "refused", "request"),
]:
    if not any(vals(px, f"{k}_cpu_us") for px in cols):
        continue
    row(test, "req/s", lambda px: cell(px, f"{k}_rps", "{:.0f}"))
    row("", f"**µs proxy CPU / {unit}** (user space)",
        lambda px: "n/a" if mean(px, f"{k}_cpu_us") is None else
        f"{cell(px, f'{k}_cpu_us')}; user {mean(px, f'{k}_user_us'):.1f}")
    if k == "rotate":
        row("", "µs backend CPU / request", lambda px: cell(px, "rotate_backend_cpu_us"))
    row("", "latency ms p50 / **p99** / p99.9", lambda px: lat(px, k))
    row("", f"context switches / 1,000 {unit}s: voluntary / involuntary", lambda px: csw(px, k))
for mode, label in (("full", "(d) full TLS 1.3 handshake"), ("resume", "(d) resumed handshake")):
    if not any(vals(px, f"hs_{mode}_cpu_us") for px in cols):
        continue
    row(label, "handshakes/s", lambda px: cell(px, f"hs_{mode}_rate", "{:.0f}"))
    row("", "**µs proxy CPU / handshake** (user space)",
        lambda px: "n/a" if mean(px, f"hs_{mode}_cpu_us") is None else
        f"{cell(px, f'hs_{mode}_cpu_us')}; user {mean(px, f'hs_{mode}_user_us'):.1f}")
    row("", "latency ms p50 / **p99** / p99.9", lambda px: lat(px, f"hs_{mode}"))
    row("", "context switches / 1,000 handshakes: voluntary / involuntary",
        lambda px: csw(px, f"hs_{mode}"))
if idle:
    n = idle[-1]
    row(f"(f) idle TLS long-poll ({n:,} parked)", "**bytes Pss / connection**",
        lambda px: "n/a" if per_conn(px, n) is None else f"{per_conn(px, n):,.0f}")
    row("", "bytes Pss / bare TLS connection (handshake only)",
        lambda px: f"{int(one(px, 'bare_bytes')):,}" if one(px, "bare_bytes") != "n/a" else "n/a")
w("")

# Goals (issue #11): easgated against the better peer of the same run.
peers = [p for p in proxies if p in ("haproxy", "nginx")]
if "easgated" in proxies and peers:
    w("## Goals (easgated vs the better peer, same run)")
    w("")
    w("| goal | easgated | better peer | ratio | met |")
    w("|---|---|---|---|---|")
    def goal(label, k, limit, among=None):
        e = mean("easgated", k)
        pv = [(mean(p, k), p) for p in (among or peers) if mean(p, k) is not None]
        if e is None or not pv:
            return
        best, bp = min(pv)
        ratio = e / best if best else float("inf")
        w(f"| {label} | {e:.2f} | {best:.2f} ({bp}) | {ratio:.2f}x | "
          f"{'yes' if ratio <= limit else '**no**'} |")
    for k, label in (("keepalive", "(a) keep-alive"), ("paced", "(a) paced"),
                     ("rotate", "(b) users taking turns"), ("mix", "(c) long-poll mix"),
                     ("hs_full", "(d) full handshake"), ("hs_resume", "(d) resumed handshake"),
                     ("refused", "(e) refused")):
        goal(f"{label}: p99 ms no worse", f"{k}_p99_ms", 1.0)
    goal("(b) µs proxy CPU / request no higher", "rotate_cpu_us", 1.0)
    goal("(b) µs backend CPU / request no higher", "rotate_backend_cpu_us", 1.0)
    goal("(e) µs CPU / refused request <= 1.1x nginx's bare 403", "refused_cpu_us", 1.1,
         ["nginx"] if "nginx" in peers else None)
    if idle:
        n = idle[-1]
        e = per_conn("easgated", n)
        pv = [(per_conn(p, n), p) for p in peers if per_conn(p, n) is not None]
        if e is not None and pv:
            best, bp = min(pv)
            w(f"| (f) bytes / idle TLS long-poll below both peers | {e:,.0f} | {best:,.0f} ({bp}) | "
              f"{e / best:.2f}x | {'yes' if e < best else '**no**'} |")
            w(f"| (f) bytes / idle TLS long-poll <= 8 KiB | {e:,.0f} | | | {'yes' if e <= 8192 else '**no**'} |")
    if "easgated-nc" in proxies:
        for k, label in (("keepalive_cpu_us", "keep-alive"), ("refused_cpu_us", "refused")):
            e, n = mean("easgated", k), mean("easgated-nc", k)
            if e is not None and n is not None:
                w(f"| cost of tls.cleanse_plaintext, µs / {label} request (on vs off) | {e:.1f} | "
                  f"{n:.1f} (off) | {e / n:.2f}x | (kept on) |")
    w("")

w("## Idle connections (Pss of all the proxy's processes, KiB)")
w("")
w("Each connection: full TLS 1.3 handshake, then one EAS Ping (\`754-R121-Ping.http\`, its own "
  "user) that the backend holds for an hour; the proxy holds the client and the backend "
  "connection. Counted once all are parked, 2 s settle.")
w("")
w("| proxy | base | " + " | ".join(f"{n:,} conns" for n in idle) + " | opened | answered early | per conn (last) | 100,000 conns |")
w("|---|---|" + "---|" * len(idle) + "---|---|---|---|")
for px in proxies:
    last = idle[-1] if idle else None
    pc = per_conn(px, last) if last else None
    ext = f"{pc * 100000 / 2**20:,.0f} MiB" if pc is not None else "n/a"
    w(f"| {px} | {one(px, 'idle_base_pss_kib')} | " + " | ".join(one(px, f"idle_{n}_pss_kib") for n in idle)
      + f" | {one(px, f'idle_{last}_opened')} | {one(px, f'idle_{last}_answered')} | "
      + (f"{pc:,.0f} B" if pc is not None else "n/a") + f" | {ext} |")
if "$idle_clipped".strip():
    w("")
    w(f"Idle counts clipped to the open-file limit ($NOFILE per process, no CAP_SYS_RESOURCE to "
      f"raise it; HAProxy is one process needing 2 descriptors per parked connection):$idle_clipped.")
w("")
w("## What each proxy did (checked, not assumed)")
w("")
w("| | " + " | ".join(proxies) + " |")
w("|---|" + "---|" * len(proxies))
facts_rows = [("TLS (s_client -brief)", "tls"), ("chain verifies with only the root", "chain_ok"),
              ("refused: HTTP status", "refused_status"), ("refused: connection kept open", "refused_keepalive"),
              ("refused: reached a backend", "refused_from_backend")]
for label, k in facts_rows:
    w(f"| {label} | " + " | ".join(one(px, k) for px in proxies) + " |")
def allr(px, k):
    return ", ".join(v for r, v in sorted(d[(px, k)].items()) if r > 0) or "n/a"
w("| requests per backend, keep-alive (per round) | " + " | ".join(allr(px, "keepalive_backends") for px in proxies) + " |")
w("| bad answers or errors: keep-alive, paced, refused (per round) | " + " | ".join(
    "; ".join(f"{a}, {b}, {c}" for a, b, c in zip(vals(px, "keepalive_bad"), vals(px, "paced_bad"), vals(px, "refused_bad"))).replace(".0", "")
    for px in proxies) + " |")
w("| handshakes resumed in the resume run, % | " + " | ".join(allr(px, "hs_resume_resumed_pct") for px in proxies) + " |")
w("| new ticket issued on a resumed handshake (count, per round) | " + " | ".join(allr(px, "hs_resume_new_tickets_on_resumed") for px in proxies) + " |")
w("| handshake failures full/resume | " + " | ".join(allr(px, "hs_full_failed") + " / " + allr(px, "hs_resume_failed") for px in proxies) + " |")
if "easgated" in proxies:
    w("| long-polls the proxy reports at the end of the idle test | "
      + " | ".join(one(px, "idle_long_polls") if px == "easgated" else "" for px in proxies) + " |")
w("")
w("## Raw values per round")
w("")
keys = sorted({k for (px, k) in d if any(r > 0 for r in d[(px, k)])})
w("| metric | " + " | ".join(proxies) + " |")
w("|---|" + "---|" * len(proxies))
for k in keys:
    w(f"| {k} | " + " | ".join(allr(px, k) for px in proxies) + " |")
w("")
open(out, "w").write("\n".join(L))
PY
{
	echo "## policy_bench (tools/bench/policy_bench.c)"
	echo
	echo '```'
	echo "$PB_OUT"
	echo '```'
	echo
	echo "## Where an idle TLS connection's bytes go (tools/bench/tls_mem.c)"
	echo
	echo '```'
	echo "$TM_OUT"
	echo '```'
	echo
	echo "## xdp_bench (tools/bench/xdp_bench.c)"
	echo
	echo '```'
	echo "$XB_OUT"
	echo '```'
	if [ -s "$B/perf.md" ]; then
		echo
		echo "## Profiles (BENCH_PERF=1; separate, unmeasured runs)"
		echo
		cat "$B/perf.md"
	fi
	if [ -s "$B/sched.md" ]; then
		echo
		echo "## The scheduler and the proxies' threads (BENCH_SCHED=1; separate, unmeasured 4 s runs)"
		echo
		echo "Per slice of a proxy thread (\`perf sched timehist\`, ms): the run-queue delay before it"
		echo "(woken or preempted, until on a CPU), and the slice's length."
		echo
		echo "| proxy | test | slices | delay p50 | p99 | p99.9 | max | > 1 ms | > 4 ms | total delay ms | slice p50 | slice p99 |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
		cat "$B/sched.md"
	fi
} >>"$OUT"
say "done: $OUT"
