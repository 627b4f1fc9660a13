#!/usr/bin/env bash
# farm.sh - the farm's numbers (issue #13), on this machine, in one go:
#  1. propagation: 1,000 admin changes made directly in the database and
#     1,000 made with easctl on node A, each timed until node C's next
#     request decides with it (farm_propagation.py): p50/p99;
#  2. write load: what one PostgreSQL absorbs from 3 nodes x 100,000 devices
#     syncing every 5 minutes (store_load: the demand paced, then flat out);
#  3. per-request CPU of a gateway with store = "sqlite" and of a farm node,
#     run side by side in the same run (alternating, 2 rounds each), the same
#     wrk load: a real Sync capture, every request a different one of 20,000
#     users (so the inventory is written all the time).
# Writes tools/bench/farm-results-YYYY-MM-DD.md (BENCH_OUT to change).
# Uses the test helpers (tests/integration/lib.sh, farm/lib_farm.sh): every
# process lives in a temp dir and is stopped by PID. Needs root (PostgreSQL
# runs as postgres), wrk, curl, python3.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
EG_BUILD=${EG_BUILD:-build}
source "$ROOT/tests/integration/lib.sh" "$EG_BUILD"
source "$ROOT/tests/integration/farm/lib_farm.sh"
need curl python3 wrk runuser
need_pg
OUT=${BENCH_OUT:-$ROOT/tools/bench/farm-results-$(date +%F).md}
PARTS=${BENCH_PARTS:-1 2 3} # which of the three to run
part() { [[ " $PARTS " == *" $1 "* ]]; }
P_DB=- P_CTL=- LOAD=-
declare -A WK MS REQ PGCPU
CHANGES=${BENCH_CHANGES:-1000}
SECS=${BENCH_SECONDS:-10}
make_pki
start_pg main || finish
start_backend cas1 || finish
for n in A B C; do NODE_WORKERS=2 start_node $n 'access_log = false;' || finish; done

if part 1; then
echo "== 1. propagation ($CHANGES changes each way)"
r=$(phone C propuser PROP1 FolderSync)
[ "$r" = "200 backend" ] || { fail "PROP1 not relayed: $r"; finish; }
wait_for 5 bash -c "\"$EASCTL\" -s \"$T/node-A/run/ctl.sock\" devices --device-id PROP1 | grep -q PROP1"
PSQL="$PG_BIN/psql -X -q -At -h 127.0.0.1 -p $(pg_port main) -U easgate -d easgate"
P_DB=$(python3 "$ROOT/tools/bench/farm_propagation.py" --port "$(node_port C)" --cafile "$PKI/root.pem" \
	--changes "$CHANGES" --db "$PSQL")
echo "   database -> C: $P_DB"
P_CTL=$(python3 "$ROOT/tools/bench/farm_propagation.py" --port "$(node_port C)" --cafile "$PKI/root.pem" \
	--changes "$CHANGES" --easctl "$EASCTL -s $T/node-A/run/ctl.sock")
echo "   easctl on A -> C: $P_CTL"
fi

if part 2; then
echo "== 2. write load (3 nodes x 100,000 devices, every 300 s)"
psql_farm main -c "CREATE DATABASE load" >/dev/null
cat >"$T/load.conf" <<EOF
store = "postgresql";
postgresql = { conninfo = "host=127.0.0.1 port=$(pg_port main) user=easgate dbname=load"; };
EOF
"$EASGATED" -c "$T/load.conf" --db-migrate >/dev/null || { fail "migrate load db"; finish; }
LOAD=$("$O/bench/store_load" --conninfo "host=127.0.0.1 port=$(pg_port main) user=easgate dbname=load" \
	--nodes 3 --devices 100000 --interval 300 --seconds 20 --pg-pid "$(pg_pid main)")
echo "$LOAD" | sed 's/^/   /'
fi

if part 3; then
echo "== 3. CPU per request: store = sqlite vs a farm node, side by side"
# The farm nodes A and B stop (C is the farm node measured; the database
# and its pulls stay).
stop_node A
stop_node B
mkdir -p "$T/solo"
echo 'access_log = false;' >"$T/solo/easgate.conf"
SOLO_PORT=$(free_port)
"$EASGATED" -c "$T/solo/easgate.conf" --listen "127.0.0.1:$SOLO_PORT" --tls-cert "$PKI/server.pem" \
	--tls-key "$PKI/server.key" --trust-file "$PKI/root.pem" --state-dir "$T/solo/state" \
	--control-socket "$T/solo/ctl.sock" -w 2 --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" \
	>"$T/solo.log" 2>&1 &
SOLO=$!
EG_PIDS+=("$SOLO")
solo_up() { "$EASCTL" -s "$T/solo/ctl.sock" status >/dev/null 2>&1; }
wait_for 10 solo_up || { fail "solo gateway"; finish; }
# utime+stime: of a master (with its reaped children: workers of earlier
# generations) and of its live workers, apart.
master_ticks() { awk '{print $14+$15+$16+$17}' "/proc/$1/stat"; }
worker_ticks() {
	local c t=0
	for c in $(ps -o pid= --ppid "$1"); do
		t=$((t + $(awk '{print $14+$15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
pg_ticks() {
	local p t=0
	for p in $(pg_pid main) $(ps -o pid= --ppid "$(pg_pid main)"); do
		t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
HZ=$(getconf CLK_TCK)
CAP=$ROOT/tests/data/eas-captures/754-R90-Sync.http
for round in 1 2; do
	for mode in sqlite farm; do
		if [ $mode = sqlite ]; then pid=$SOLO port=$SOLO_PORT; else pid=$(node_pid C) port=$(node_port C); fi
		m0=$(master_ticks "$pid") w0=$(worker_ticks "$pid") g0=$(pg_ticks)
		w=$(BENCH_CAPTURE=$CAP BENCH_ROTATE=20000 wrk -t2 -c32 -d"${SECS}s" -s "$ROOT/tools/bench/eas.lua" \
			"https://127.0.0.1:$port" 2>&1)
		m1=$(master_ticks "$pid") w1=$(worker_ticks "$pid") g1=$(pg_ticks)
		n=$(awk '/requests in/{print $1}' <<<"$w")
		bad=$(grep -o 'unexpected=[0-9]*' <<<"$w" | cut -d= -f2)
		WK[$mode]=$((${WK[$mode]:-0} + w1 - w0))
		MS[$mode]=$((${MS[$mode]:-0} + m1 - m0))
		REQ[$mode]=$((${REQ[$mode]:-0} + n))
		PGCPU[$mode]=$((${PGCPU[$mode]:-0} + g1 - g0))
		echo "   round $round $mode: $n requests (${bad:-0} unexpected), ticks: workers $((w1 - w0)), master $((m1 - m0)), database $((g1 - g0))"
	done
done
us() { python3 -c "print(round($1 * 1e6 / $HZ / $2, 1))"; }
for mode in sqlite farm; do
	eval "W_$mode=\$(us \"\${WK[$mode]}\" \"\${REQ[$mode]}\")"
	eval "M_$mode=\$(us \"\${MS[$mode]}\" \"\${REQ[$mode]}\")"
	eval "G_$mode=\$(us \"\${PGCPU[$mode]}\" \"\${REQ[$mode]}\")"
done
echo "   µs CPU per request: workers sqlite $W_sqlite, farm $W_farm; master sqlite $M_sqlite, farm $M_farm; database (farm) $G_farm"
fi
JOURNAL=$(nctl C db status | grep -E '^(pushes|pulls)' | sed 's/^/    /')

{
	echo "# Farm benchmark, $(date +%F) ($(uname -r), $(nproc) cores; PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), fsync off)"
	echo
	echo "## Propagation (farm_propagation.py, $CHANGES changes each)"
	echo
	echo '```'
	echo "database -> node C: $P_DB"
	echo "easctl on A -> C:   $P_CTL"
	echo '```'
	echo
	echo "## Write load (store_load: 3 nodes x 100,000 devices, one write per device every 300 s)"
	echo
	echo '```'
	echo "$LOAD"
	echo '```'
	echo
	echo "## CPU per request, side by side ($SECS s x 2 rounds each, wrk -t2 -c32, 20,000 users rotating)"
	echo
	echo "| | requests | µs CPU / request: workers (request path) | master (inventory writer, farm sync) | database |"
	echo "|---|---|---|---|---|"
	echo "| store = sqlite | ${REQ[sqlite]:-} | ${W_sqlite:-} | ${M_sqlite:-} | - |"
	echo "| farm node (postgresql) | ${REQ[farm]:-} | ${W_farm:-} | ${M_farm:-} | ${G_farm:-} |"
	echo
	echo "Node C's store after the runs:"
	echo
	echo '```'
	echo "$JOURNAL"
	echo '```'
} >"$OUT"
echo "results: $OUT"
finish
