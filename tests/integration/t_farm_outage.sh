#!/usr/bin/env bash
# A farm when things die (issue #13): three nodes, one PostgreSQL cluster.
#  1. 200 phones (allowed) across the nodes; kill -9 of PostgreSQL (postmaster
#     and backends) in the middle, restarted a few seconds later; then kill -9
#     of node B. Requests to A and C: 0 failed; to B: failures only after its
#     kill. While the database is away: easctl status and metrics say so and
#     since when, admin changes are refused (easctl, and the web console shows
#     the helpdesk why) and leave no audit line, changes
#     are journaled. After it
#     returns: every phone has its row in the database exactly once (those
#     first seen during the outage too), the journals drain.
#     Node A's journal holds 16 entries (postgresql.journal_max): it
#     overflows during the outage (counted), and still nothing is lost.
#  2. A node restarting while the database is down serves from its snapshot:
#     the runtime rule and the approval it knew, the farm's steering secret;
#     new phones on it during the outage reach the database afterwards.
#  3. A conninfo with two hosts, the first down (refusing; then not answering
#     at all): the node connects to the second. target_session_attrs=read-write
#     with a read-only first server: the node connects to the writable one.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/farm/lib_farm.sh"
need curl python3 ps runuser
need_pg
make_pki
start_pg main || finish
start_backend cas1 || finish
PHONES=$EG_ROOT/tests/integration/farm/phones.py

FARM_JOURNAL_MAX=16 start_node A 'policy = { rules = ( "quarantine DeviceType is \"QPhone\"" ); };' || finish
start_node B 'policy = { rules = ( "quarantine DeviceType is \"QPhone\"" ); };' || finish
start_node C 'policy = { rules = ( "quarantine DeviceType is \"QPhone\"" ); };' "$(farm_console C)" || finish

# What the farm decides before the outage (node C must keep it in phase 2).
out=$(nctl B rules add 'block DeviceId is "SNAPBLOCK"')
check "a runtime rule added on B before the outage: $out" grep -q '^added db' <<<"$out"
r=$(phone A quser QSNAP FolderSync QPhone)
wait_for 5 bash -c "\"$EASCTL\" -s \"$T/node-B/run/ctl.sock\" devices --device-id QSNAP | grep -q QSNAP"
out=$(nctl B device approve QSNAP --user quser)
check "QSNAP (quarantined by type) approved on B: $out" grep -q "is now allow" <<<"$out"

echo "# 1. 200 phones across A, B, C; kill -9 of PostgreSQL, then of node B"
PORTS="$(node_port A),$(node_port B),$(node_port C)"
python3 "$PHONES" --ports "$PORTS" --cafile "$PKI/root.pem" --phones 200 --prefix FARM \
	--spread 12 --duration 24 --gap-ms 500,900 >"$T/load.json" 2>"$T/load.err" &
LOAD=$!
EG_PIDS+=("$LOAD")
# Times are wall-clock (unix s); the load reports its own relative to its
# t0_wall, converted below.
since() { date +%s.%N; }
sleep 4
kill_pg main
T_PG_KILL=$(since)
echo "    PostgreSQL killed at $T_PG_KILL"
down() { nctl "$1" status | grep -qE '^store postgresql node=[A-F] state=(down|connecting) since='; }
check "A's easctl status says the store is down, and since when" wait_for 5 down A
nctl A status | grep '^store' | sed 's/^/    /'
check "...so do its metrics (easgate_store_up 0)" \
	grep -q '^easgate_store_up{store="postgresql"} 0$' <<<"$(nctl A metrics)"
out=$(nctl C rules add 'block DeviceId is "NEVER"' 2>&1)
rc=$?
check "an admin change while the database is away is refused (exit $rc): ${out:0:90}..." \
	bash -c '[ $0 -eq 3 ] && grep -q "unreachable since" <<<"$1"' "$rc" "$out"
out=$(console_run C device block QSNAP --user quser)
check "...in C's web console too: the helpdesk sees why: ${out:0:100}..." \
	grep -q '^500 the farm database is unreachable since .*nothing was changed' <<<"$out"
sleep 4
jA=$(nctl A metrics | awk '/^easgate_store_journal_entries /{print $2}')
jC=$(nctl C metrics | awk '/^easgate_store_journal_entries /{print $2}')
dropA=$(nctl A metrics | awk '/^easgate_store_journal_dropped_total /{print $2}')
check "changes are journaled meanwhile (A: $jA entries, its bound 16, $dropA dropped; C: $jC)" \
	bash -c '[ "$0" -eq 16 ] && [ "$1" -gt 0 ] && [ "$2" -gt 16 ]' "$jA" "$dropA" "$jC"
restart_pg main || finish
T_PG_BACK=$(since)
echo "    PostgreSQL back at $T_PG_BACK"
sleep 3
T_B_KILL=$(since)
kill_node B
echo "    node B killed at $T_B_KILL"
wait "$LOAD"
rc=$?
forget_pid "$LOAD"
check "the load ran (exit $rc)" test "$rc" -eq 0
read -r okA failA okB failB firstB okC failC started phones_ok < <(python3 - "$T/load.json" "$PORTS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
a, b, c = sys.argv[2].split(",")
n = r["nodes"]
print(n[a]["ok"], n[a]["fail"], n[b]["ok"], n[b]["fail"],
      r["t0_wall"] + n[b]["first_fail"] if n[b]["first_fail"] is not None else -1,
      n[c]["ok"], n[c]["fail"], r["started"], r["phones_ok"])
PY
)
echo "    A: $okA ok, $failA failed; B: $okB ok, $failB failed (first at $firstB); C: $okC ok, $failC failed"
check "A and C: 0 failed requests of $((okA + okC)) during and after the outage" \
	bash -c '[ "$0" -eq 0 ] && [ "$1" -eq 0 ] && [ "$2" -gt 1000 ]' "$failA" "$failC" "$((okA + okC))"
check "B: no failure before its kill at $T_B_KILL (first at $firstB), $okB answered before" \
	python3 -c 'import sys; f, k, ok = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]); sys.exit(not ((f < 0 or f >= k) and ok > 300))' \
	"$firstB" "$T_B_KILL" "$okB"
check "all 200 phones started and were answered" bash -c '[ "$0" -eq 200 ] && [ "$1" -eq 200 ]' "$started" "$phones_ok"
grep -q '"failures": \[\]' "$T/load.json" || python3 -c 'import json,sys; [print("    ", f) for f in json.load(open(sys.argv[1]))["failures"][:5]]' "$T/load.json"

check "A's journal drains (overflow refilled) and its store is up" wait_for 30 drained A
check "C's journal drains" wait_for 30 drained C
rows=$(psql_farm main -c "SELECT count(*), count(DISTINCT (lower(\"user\"), lower(device_id))) FROM devices WHERE device_id LIKE 'FARM%'")
check "the database has every phone once: $rows (of 200)" test "$rows" = "200|200"
during=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
t0 = r["t0_wall"]
print(sum(1 for t in r["first_ok"].values() if float(sys.argv[2]) <= t0 + t < float(sys.argv[3])))' \
	"$T/load.json" "$T_PG_KILL" "$T_PG_BACK")
check "...$during of them first answered while PostgreSQL was down" test "$during" -ge 40
out=$(nctl A db status)
check "A: its journal overflowed and was refilled: $(grep '^journal' <<<"$out")" \
	bash -c 'grep -q "^journal: *0 waiting" <<<"$0" && ! grep -q " 0 dropped" <<<"$0"' "$out"
check "no node logged a database error other than the outage" \
	lacks -E 'store_push_refused|store_migrate_failed' "$T/node-A.log" "$T/node-C.log"
listed=$(nctl C devices --format csv | grep -c ',FARM')
check "easctl devices on C lists the 200 phones" wait_for 10 bash -c "[ \$(\"$EASCTL\" -s \"$T/node-C/run/ctl.sock\" devices --format csv | grep -c ',FARM') -eq 200 ]"
# B restarts with its journal (what it changed before its kill) and catches up.
unset NODE_PORT_B
start_node B 'policy = { rules = ( "quarantine DeviceType is \"QPhone\"" ); };' || finish
check "B, restarted after its kill -9, drains its journal" wait_for 30 drained B

echo "# 2. restart while the database is down: from the snapshot"
kill_pg main
secret_before=$(cat "$T/node-C/state/steering.key")
stop_node C
unset NODE_PORT_C
start_node C 'policy = { rules = ( "quarantine DeviceType is \"QPhone\"" ); };' || finish
check "C serves again with the database down: $(nctl C status | grep '^store' | cut -c1-60)..." down C
r=$(phone C snap SNAPBLOCK FolderSync)
check "C enforces the runtime rule from its snapshot (SNAPBLOCK): $r" test "$r" = "403 gateway"
r=$(phone C quser QSNAP Sync QPhone)
check "C keeps the approval of QSNAP from its snapshot: $r" test "$r" = "200 backend"
check "C steers with the farm's secret still" test "$(cat "$T/node-C/state/steering.key")" = "$secret_before"
for i in $(seq 1 30); do phone C "snapuser$i" "SNAPNEW$i" FolderSync >/dev/null; done
journaled() { [ "$(nctl C metrics | awk '/^easgate_store_journal_entries /{print $2}')" -ge 30 ]; }
check "C journals the 30 phones first seen meanwhile" wait_for 5 journaled
# Phones that only A sees while its 16-entry journal is full: they come
# back from its snapshot once the journal drains (journal_refill).
drops0=$(nctl A metrics | awk '/^easgate_store_journal_dropped_total /{print $2}')
for i in $(seq 1 40); do phone A "ovuser$i" "OVERFLOW$i" FolderSync >/dev/null; done
drops1=$(nctl A metrics | awk '/^easgate_store_journal_dropped_total /{print $2}')
check "A's journal is full: 40 phones only A saw, $((drops1 - drops0)) changes dropped" \
	test "$((drops1 - drops0))" -gt 0
restart_pg main || finish
check "C reconnects and drains" wait_for 30 drained C
n=$(psql_farm main -c "SELECT count(*) FROM audit WHERE what LIKE '%NEVER%'")
check "the change refused while the database was away has no line in the farm's audit: $n" \
	test "$n" = 0
check "...nor in easctl audit on C" lacks -q NEVER <(nctl C audit)
check "...nor the console's refused block" lacks -q 'device block QSNAP' <(nctl C audit)
check "the approval before the outage is (node B, by easctl)" \
	grep -q ' B  *easctl:uid=[0-9]*  *device approve QSNAP ' <(nctl C audit)
rows=$(psql_farm main -c "SELECT count(*) FROM devices WHERE device_id LIKE 'SNAPNEW%'")
check "the 30 phones C saw are in the database: $rows" test "$rows" = 30
check "A drains too" wait_for 30 drained A
rows=$(psql_farm main -c "SELECT count(*), count(DISTINCT device_id) FROM devices WHERE device_id LIKE 'OVERFLOW%'")
check "the 40 phones only A saw, past its journal's bound, are all in the database once: $rows" \
	test "$rows" = "40|40"

echo "# 3. several hosts in the conninfo"
DEAD=$(free_port)
FARM_CONNINFO="host=127.0.0.1,127.0.0.1 port=$DEAD,$(pg_port main) user=easgate dbname=easgate" \
	start_node D || finish
up_on() { nctl "$1" db status | grep -q "^server: *127.0.0.1:$2 "; }
check "first host refusing: D connects to the second (port $(pg_port main))" wait_for 10 up_on D "$(pg_port main)"
# A host that accepts nothing and refuses nothing: a listener whose accept
# queue is full (its SYNs go unanswered).
python3 - "$T/hang.port" <<'PY' &
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
held = []
for _ in range(4):  # fill the queue so that later SYNs are dropped
    c = socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1", s.getsockname()[1]))
    except BlockingIOError: pass
    held.append(c)
time.sleep(120)
PY
HANG=$!
EG_PIDS+=("$HANG")
wait_for 5 test -s "$T/hang.port"
FARM_TIMEOUT=1 FARM_CONNINFO="host=127.0.0.1,127.0.0.1 port=$(cat "$T/hang.port"),$(pg_port main) user=easgate dbname=easgate" \
	start_node E || finish
check "first host silent: E gives up on it after postgresql.timeout and connects to the second" \
	wait_for 15 up_on E "$(pg_port main)"
grep -o 'error="no answer from [^"]*"' "$T/node-E.log" | head -1 | sed 's/^/    /'
start_pg ro default_transaction_read_only=on || finish
FARM_CONNINFO="host=127.0.0.1,127.0.0.1 port=$(pg_port ro),$(pg_port main) user=easgate dbname=easgate target_session_attrs=read-write" \
	start_node F || finish
check "target_session_attrs=read-write, first server read-only: F uses the writable one" \
	wait_for 10 up_on F "$(pg_port main)"

node_logs_on_failure
finish
