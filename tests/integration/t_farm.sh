#!/usr/bin/env bash
# A farm (issue #13): three easgated nodes (own ports, state, control sockets)
# and one PostgreSQL cluster started here (initdb in $T, a loopback port).
#  - the nodes agree on one steering secret and see each other (easctl nodes);
#  - a quarantined device approved on node A: its next request on C is relayed;
#    the approval, made in A's web console by a helpdesk account (the
#    command layer easctl shares), is in `easctl audit` on C and B, naming
#    node A and the account;
#  - a rule added on B: A refuses the device it names;
#  - a loop detected on A (throttle) quarantines the phone on B, and
#    `easctl throttle forgive` on C ends it everywhere; its notice (each
#    node posts its own batches to a signed webhook) comes from A alone,
#    once, though B answered the phone as loop-quarantined too;
#  - an iOS version first seen on A incubates on B (same first-seen); approved
#    on C, B relays it;
#  - a personal list entry added on C blocks on A; a change made directly in
#    the database (UPDATE devices ...) blocks on B;
#  - `easctl devices` on every node lists every device once, with the node
#    that saw it last;
#  - easgate_push applies each (node, journal, seq) once: a batch replayed
#    after a newer admin change changes nothing.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/farm/lib_farm.sh"
need curl python3 ps runuser
need_pg
make_pki
start_pg main || finish
start_backend cas1 || finish
HOOK=$(free_port)
printf 'hook-secret-1\n' >"$T/hook.key"
mkdir -p "$T/hook"
python3 "$EG_ROOT/tests/integration/console/webhook_sink.py" "$HOOK" "$T/hook.key" "$T/hook.jsonl" "$T/hook" >"$T/hook.log" 2>&1 &
EG_PIDS+=($!)
# notices of node N to the receiver's /hook/N, in 3 s batches
notify_of() { echo "notify = { batch = 0.05; webhook = { url = \"http://127.0.0.1:$HOOK/hook/$1\"; secret_file = \"$T/hook.key\"; }; };"; }

NODE_CFG=(
	'policy = { rules = ( "quarantine DeviceType is \"QPhone\"" );
	   incubation = { days = 21; families = [ "iOS" ]; }; };'
	'throttle = { enabled = true; classes = ( { name = "default"; hammer = 2;
	   loop = { window = 60; threshold = 3; throttle = 2; quarantine = 300; memory = 600; }; } ); };'
)
start_node A "${NODE_CFG[@]}" "$(farm_console A)" "$(notify_of A)" || finish
for n in B C; do start_node $n "${NODE_CFG[@]}" "$(notify_of $n)" || finish; done

echo "# the farm: one steering secret, three nodes"
same_secret() {
	local a b c
	a=$(cat "$T/node-A/state/steering.key") b=$(cat "$T/node-B/state/steering.key")
	c=$(cat "$T/node-C/state/steering.key")
	[ -n "$a" ] && [ "$a" = "$b" ] && [ "$b" = "$c" ]
}
check "the three nodes steer with one secret (the first node's, in their steering.key)" \
	wait_for 10 same_secret
three_up() { [ "$(nctl B nodes | awk '$NF=="up"' | wc -l)" -eq 3 ]; }
check "easctl nodes on B: A, B and C, each with a recent heartbeat" wait_for 10 three_up
nctl B nodes | sed 's/^/    /'
out=$(nctl A status)
check "easctl status says where the store is: $(grep '^store' <<<"$out")" \
	grep -q '^store postgresql node=A state=up' <<<"$out"

# Workers are forked by the master while its connection is open (start,
# reload, a new secret): they must not keep a copy of its socket, or a
# connection the master closes stays open on the server.
nctl A reload >/dev/null
holders() { # PIDs holding a TCP connection to the database
	ss -tnpH state established "( dport = :$(pg_port main) )" | grep -o 'pid=[0-9]*' | sort -u | tr '\n' ' '
}
a_holders() {
	local h
	h=$(holders)
	for p in $(ps -o pid= --ppid "$(node_pid A)"); do [[ " $h " == *"pid=$p "* ]] && return 1; done
	[[ " $h " == *"pid=$(node_pid A) "* ]]
}
check "after a reload, A's database connection is its master's alone (no worker holds it)" a_holders

echo "# a quarantined device approved on A is relayed on C"
r=$(phone A quser QDEV1 FolderSync QPhone)
check "QDEV1's FolderSync is relayed on A while quarantined (it authenticates): $r" \
	test "$r" = "200 backend"
r=$(phone C quser QDEV1 Sync QPhone)
check "its Sync on C is answered by the gateway ('no changes'): $r" test "$r" = "200 gateway"
known() { nctl "$1" devices --device-id "$2" --format csv | grep -qi ",$2,"; }
check "A lists QDEV1 (seen on A and C)" wait_for 5 known A QDEV1
# From A's web console, as the helpdesk: the same command layer as easctl,
# waiting (a job) for the database's commit before it answers.
out=$(console_run A device approve QDEV1 --user quser)
check "approved in A's console by helen: $out" grep -q "^200 approve: QDEV1 (quser) is now allow" <<<"$out"
# "Next request": the first after the change reached C (propagation: README
# Farm, p99 ~11 ms here); a request sent in the same millisecond may still
# meet the old state, so this waits, boundedly.
relayed_on() { [ "$(phone "$1" "$2" "$3" Sync "${4:-FarmPhone}")" = "200 backend" ]; }
check "its next request on C is relayed" wait_for 3 relayed_on C quser QDEV1 QPhone
audit_on() { nctl "$1" audit --format csv | tr -d '\r' | grep -q "$2"; }
line=",console:helen,127.0.0.1,device approve QDEV1 (user quser),access=Quarantined reason=RULE rule=[^,]* admin=none,admin=allow,A\$"
check "the console's approval is in easctl audit on C: its node (A), who, before, after" \
	wait_for 5 audit_on C "$line"
check "...and on B" wait_for 5 audit_on B "$line"
nctl C audit | sed -n '1,3p' | sed 's/^/    /'
n=$(psql_farm main -c "SELECT count(*) FROM audit WHERE node = 'A' AND what LIKE 'device approve QDEV1 %'")
check "one line in the farm's audit table: $n" test "$n" = 1

echo "# a rule added on B: A refuses"
r=$(phone A ruser RULEDEV FolderSync)
check "RULEDEV is relayed on A before the rule: $r" test "$r" = "200 backend"
out=$(nctl B rules add 'block DeviceId is "RULEDEV"')
check "B: $out" grep -q '^added db1: block DeviceId is "RULEDEV"' <<<"$out"
refused_on() { [ "$(phone "$1" "$2" "$3" Sync)" = "403 gateway" ]; }
check "A refuses RULEDEV" wait_for 3 refused_on A ruser RULEDEV
check "A's rules list shows it (from the farm)" grep -q 'RULEDEV.*name "db1"' <<<"$(nctl A rules list)"

echo "# a loop on A quarantines the phone on B"
printf 'loop-body-same-every-time' >"$T/loop.body"
r=$(phone A luser LOOPDEV FolderSync)
check "LOOPDEV authenticates on A: $r" test "$r" = "200 backend"
seq_out=""
for _ in 1 2 3 4 5 6; do seq_out="$seq_out $(phone A luser LOOPDEV Sync FarmPhone "$T/loop.body" | cut -d' ' -f1)"; done
check "A: the identical Syncs are relayed, then throttled as a loop, then quarantined:$seq_out" \
	grep -q "^ 200 200 503 " <<<"$seq_out"
check "A's log: the throttle quarantined it" grep -q 'event=throttle_quarantine.*device="LOOPDEV"' "$T/node-A.log"
looped() { nctl B device show LOOPDEV | grep -q '^LoopQuarantine: *until .*(Sync)'; }
check "B's inventory shows LOOPDEV's loop quarantine (Sync)" wait_for 5 looped
r=$(phone B luser LOOPDEV Sync FarmPhone "$T/loop.body")
check "B answers the looping command itself (a quarantined Sync: 'no changes'): $r" \
	test "$r" = "200 gateway"
r=$(phone B luser LOOPDEV FolderSync)
check "B relays what quarantine relays (FolderSync): $r" test "$r" = "200 backend"
out=$(nctl C throttle forgive luser LOOPDEV 2>&1)
check "forgiven on C (not in C's own throttle table): $out" grep -q '^forgiven: LOOPDEV' <<<"$out"
relayed_again() { [ "$(phone B luser LOOPDEV Sync FarmPhone "$T/loop.body")" = "200 backend" ]; }
check "B relays LOOPDEV's Sync again" wait_for 5 relayed_again
# Which node noticed the loop: every node posts its batches (3 s) to its own
# path; after A's, two more windows for anything B or C would send.
loop_notices() { # the nodes whose POSTs list LOOPDEV's loop quarantine, one word per event
	[ -s "$T/hook.jsonl" ] || return 0
	python3 - "$T/hook.jsonl" "$T/hook" <<'PYEOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if not r["valid"] or "body" not in r:
        continue
    for e in json.load(open(sys.argv[2] + "/" + r["body"]))["events"]:
        if e["kind"] == "loop quarantine" and e["device_id"] == "LOOPDEV":
            print(r["path"].rsplit("/", 1)[-1])
PYEOF
}
noticed() { [ -n "$(loop_notices)" ]; }
wait_for 15 noticed
sleep 7
who=$(loop_notices | tr '\n' ' ')
check "the loop quarantine was noticed once, by A, whose throttle decided it ($who)" test "$who" = "A "

echo "# incubation is farm-wide"
OSV="iOS 6.1 10B142"
phone_ua() { # NODE USER DEVICE CMD UA
	local hdr
	hdr=$(curl -sS -o /dev/null -D - --max-time 10 --cacert "$PKI/root.pem" -u "$2:secret" -X POST \
		-H "MS-ASProtocolVersion: 12.1" -H "User-Agent: $5" --data-binary @/dev/null \
		"https://127.0.0.1:$(node_port "$1")/Microsoft-Server-ActiveSync?Cmd=$4&User=$2&DeviceId=$3&DeviceType=iPhone" 2>&1)
	echo "$(awk 'NR==1{print $2}' <<<"$hdr") $(grep -qi '^X-Backend:' <<<"$hdr" && echo backend || echo gateway)"
}
UA="Apple-iPhone4C1/1002.142"
r=$(phone_ua A iuser IOSDEV1 FolderSync "$UA")
check "a phone on a new iOS version authenticates on A (FolderSync relayed while incubating): $r" \
	test "$r" = "200 backend"
incubating() { nctl B versions incubating | grep -q "^$OSV "; }
check "B lists $OSV as incubating" wait_for 5 incubating
fsA=$(nctl A versions | awk -v v="$OSV" 'index($0, v) == 1 {print $(NF-3)}')
fsB=$(nctl B versions | awk -v v="$OSV" 'index($0, v) == 1 {print $(NF-3)}')
check "...with the first-seen time A recorded ($fsA = $fsB)" bash -c '[ -n "$0" ] && [ "$0" = "$1" ]' "$fsA" "$fsB"
r=$(phone_ua B iuser IOSDEV1 Sync "$UA")
check "B quarantines its Sync (incubating everywhere): $r" test "$r" = "200 gateway"
out=$(nctl C versions approve "$OSV")
check "C: $out" grep -q "^approve: $OSV" <<<"$out"
ios_relayed() { [ "$(phone_ua B iuser IOSDEV1 Sync "$UA")" = "200 backend" ]; }
check "B relays it now" wait_for 3 ios_relayed

echo "# personal lists and the database itself"
r=$(phone A luser2 LISTDEV FolderSync)
out=$(nctl C lists add blocked "luser2:LISTDEV")
check "C: $out" grep -q "added to blocked luser2:LISTDEV" <<<"$out"
check "A blocks the list entry C added" wait_for 3 refused_on A luser2 LISTDEV
r=$(phone B puser PLAINDEV FolderSync)
check "PLAINDEV is relayed on B: $r" test "$r" = "200 backend"
wait_for 5 known A PLAINDEV
psql_farm main -c "UPDATE devices SET admin_state = 2, admin_at = admin_at + 1 WHERE device_id = 'PLAINDEV'"
check "UPDATE devices ... in the database (psql, exit $?)" test $? -eq 0
blocked_on() { [ "$(phone "$1" puser PLAINDEV Sync)" = "403 gateway" ]; }
check "B blocks PLAINDEV on its next request after the UPDATE" wait_for 5 blocked_on B

echo "# easctl devices on every node: every device once"
# The farm's columns: user, device_id, type, state, admin state, last node
# (sync times differ by when each node pulled).
listings() {
	local n
	for n in A B C; do
		nctl $n devices --format csv | tr -d '\r' | tail -n +2 | sort >"$T/devices-$n.csv"
		cut -d, -f1,2,3,14,17,18 "$T/devices-$n.csv" >"$T/cols-$n"
	done
	cmp -s "$T/cols-A" "$T/cols-B" && cmp -s "$T/cols-A" "$T/cols-C"
}
check "A, B and C list the same devices, states, admin states and last nodes" wait_for 5 listings
diff "$T/cols-A" "$T/cols-B" | sed 's/^/    /'
expect="IOSDEV1 LISTDEV LOOPDEV PLAINDEV QDEV1 RULEDEV"
got=$(cut -d, -f2 "$T/devices-A.csv" | sort | tr '\n' ' ')
check "A lists the 6 devices seen anywhere: $got" test "$got" = "$expect "
check "...each once (no duplicate user,device_id)" \
	test "$(cut -d, -f1,2 "$T/devices-A.csv" | sort -u | wc -l)" -eq 6
last=$(awk -F, '$2=="PLAINDEV"{print $18}' "$T/devices-A.csv")
check "PLAINDEV was last seen by node B (last_node column): $last" test "$last" = B
rows=$(psql_farm main -c "SELECT count(*), count(DISTINCT (lower(\"user\"), lower(device_id))) FROM devices")
check "the database holds 6 rows for 6 devices: $rows" test "$rows" = "6|6"

echo "# easgate_push: each (node, journal, seq) applied once"
batch='[{"kind":"d","seq":7,"user":"iuser","device_id":"IDEM1","device_type":"FarmPhone","last_attempt":1000,"first_sync":1000,"last_node":"X"}]'
r1=$(psql_farm main -c "SELECT applied, duplicates FROM easgate_push('X', 'j1', '$batch')")
check "a batch from node X is applied: $r1" test "$r1" = "1|0"
wait_for 5 known A IDEM1
out=$(nctl A device block IDEM1 --user iuser)
check "A blocks IDEM1: $out" grep -q "is now block" <<<"$out"
xid1=$(psql_farm main -c "SELECT xid, admin_state FROM devices WHERE device_id = 'IDEM1'")
r2=$(psql_farm main -c "SELECT applied, duplicates FROM easgate_push('X', 'j1', '$batch')")
xid2=$(psql_farm main -c "SELECT xid, admin_state FROM devices WHERE device_id = 'IDEM1'")
check "the same batch again: nothing applied, 1 duplicate ($r2)" test "$r2" = "0|1"
check "...the row was not written (xid and admin state unchanged: $xid2)" \
	bash -c '[ "$0" = "$1" ] && [ "${1#*|}" = 2 ]' "$xid1" "$xid2"
newer='[{"kind":"d","seq":8,"user":"iuser","device_id":"IDEM1","last_attempt":2000,"admin_state":0,"admin_at":0,"last_node":"X"}]'
psql_farm main -c "SELECT easgate_push('X', 'j1', '$newer')" >/dev/null
row=$(psql_farm main -c "SELECT last_attempt, admin_state FROM devices WHERE device_id = 'IDEM1'")
check "a newer row merges field group by group: last attempt moves, the admin block stays ($row)" \
	test "$row" = "2000|2"

node_logs_on_failure
finish
