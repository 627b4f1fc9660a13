#!/usr/bin/env bash
# Schema migrations (issue #13): a database created by the previous schema
# version is migrated and keeps its rows, in both stores.
#  - SQLite: tests/data/store/inventory-v1.sql is the inventory as every
#    release before the farm made it (version 1, verbatim, with rows). The
#    current daemon opens it: schema 3, every row, rule, approval and admin
#    block kept and in force. A version-1 file of the release with the
#    console (#14) also has the append-only audit table: its rows are kept,
#    get the node column, and are still append-only; easgated --db-migrate
#    brings the plain version-1 file to 3 with an empty audit table.
#  - PostgreSQL: `easgated --db-migrate=1` makes a version-1 farm database;
#    rows are inserted by hand; a node migrates it when it connects (auto),
#    and the rows are in the database and in the node's snapshot, in force;
#    the farm's audit table (version 3) is made, and an admin change on the
#    node writes its line there, with the node's name.
#    With auto_migrate = false a node on a version-1 database stays out of the
#    farm and says why, until `easctl db migrate`.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/farm/lib_farm.sh"
need curl python3 sqlite3 runuser
need_pg
make_pki
start_backend cas1 || finish

echo "# SQLite: a version-1 inventory"
mkdir -p "$T/state"
sqlite3 "$T/state/inventory.db" <"$EG_ROOT/tests/data/store/inventory-v1.sql"
check "the fixture makes a version-1 file (sqlite3 exit $?, meta schema 1)" \
	test "$(sqlite3 "$T/state/inventory.db" "SELECT v FROM meta WHERE k = 'schema'")" = 1
# The plain version-1 file, migrated offline (no audit table before).
mkdir -p "$T/plain"
sqlite3 "$T/plain/inventory.db" <"$EG_ROOT/tests/data/store/inventory-v1.sql"
printf 'state_dir = "%s";\n' "$T/plain" >"$T/plain.conf"
out=$("$EASGATED" -c "$T/plain.conf" --db-migrate 2>&1)
check "easgated --db-migrate: the plain version-1 file to 3: $out" grep -q '1 -> 3$' <<<"$out"
check "...its audit table is there, empty, with the node column" \
	test "$(sqlite3 "$T/plain/inventory.db" "SELECT count(*), count(node) FROM audit")" = "0|0"
# What the release with the console (#14) made: version 1 plus its audit
# table (verbatim from its inventory.c), with two lines.
sqlite3 "$T/state/inventory.db" <<'SQL'
CREATE TABLE IF NOT EXISTS audit ( id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, who TEXT NOT NULL, source TEXT DEFAULT '', what TEXT NOT NULL, before TEXT DEFAULT '', after TEXT DEFAULT '');
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE INDEX IF NOT EXISTS devices_by_id ON devices (device_id);
INSERT INTO audit (at, who, source, what, before, after) VALUES
 (1700001000, 'console:helen', '10.0.0.5', 'device block AndrOLD2 (user bob@corp.example)', 'access=Allowed reason=DEFAULT admin=none', 'admin=block'),
 (1700002000, 'easctl:uid=0', 'pid 42', 'versions approve iOS 6.1.4 10B350', 'approved=0', 'approved=1');
SQL
check "the console release's audit lines are in the version-1 file (sqlite3 exit $?)" test $? -eq 0
start_gateway --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
ctl() { "$EASCTL" -s "$CTL" "$@"; }
out=$(ctl db status)
check "easctl db status: schema 3 now" grep -q '^schema: *3 (latest known: 3)' <<<"$out"
check "the gateway logged the migration 1 -> 3" grep -q 'event=inventory_migrated .*from=1 to=3' "$T/gw.log"
ctl devices --format csv | tr -d '\r' | tail -n +2 | sort >"$T/sq.csv"
check "the three devices are listed" test "$(wc -l <"$T/sq.csv")" -eq 3
check "alice's iPhone kept model, OS, friendly name, operator, protocol" \
	grep -q '^alice@corp.example,ApplOLD1,iPhone,iPhone5C2,iOS 6.1.4 10B350,Apple-iPhone5C2/1002.350,Alice phone,013XXXXXXXXXXXX,Carrier A,14.1,' "$T/sq.csv"
check "bob's admin block is kept (admin_state block)" grep -q '^bob@corp.example,AndrOLD2,.*,Blocked,ADMIN,,block,' "$T/sq.csv"
out=$(ctl device show ApplOLD1)
check "first sync and last success are kept (2023-11-14T22:13:20Z, 23:13:20Z)" \
	bash -c 'grep -q "^FirstSync: *2023-11-14T22:13:20Z" <<<"$0" && grep -q "^LastSuccessSync: *2023-11-14T23:13:20Z" <<<"$0"' "$out"
check "the two runtime rules are kept (db1, db2)" \
	bash -c 'grep -q "^db1 .*OLDPHONE" <<<"$0" && grep -q "^db2 .*MSFT-WP" <<<"$0"' "$(ctl rules runtime)"
check "the approved OS version is still approved" grep -q '^iOS 6.1.4 10B350 .* approved' <<<"$(ctl versions)"
st=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$PKI/root.pem" -u bob@corp.example:x -X POST \
	-H "MS-ASProtocolVersion: 12.1" "$(GWURL "/Microsoft-Server-ActiveSync?Cmd=Sync&User=bob@corp.example&DeviceId=AndrOLD2&DeviceType=Android")")
check "bob's phone is still refused (admin block from version 1): $st" test "$st" = 403
sv=$(sqlite3 "$T/state/inventory.db" "SELECT group_concat(version) FROM schema_version")
check "schema_version lists 1 (found), 2 and 3: $sv" test "$sv" = "1,2,3"
ctl audit --format csv | tr -d '\r' >"$T/audit.csv"
check "easctl audit: helen's block from version 1 is kept" \
	grep -q '^1,2023-11-14T22:30:00Z,console:helen,10.0.0.5,device block AndrOLD2 (user bob@corp.example),access=Allowed reason=DEFAULT admin=none,admin=block,$' "$T/audit.csv"
check "easctl audit: the approval from version 1 is kept" grep -q '^2,.*,easctl:uid=0,pid 42,versions approve iOS 6.1.4 10B350,approved=0,approved=1,$' "$T/audit.csv"
ctl device quarantine QuarOLD3 >/dev/null
check "a new change is audited after them, with this node's name" \
	grep -q "^3,.*,easctl:uid=$(id -u),.*,device quarantine QuarOLD3 (user carol@corp.example),.*,admin=quarantine,$(hostname)\$" <(ctl audit --format csv | tr -d '\r')
upd=$(sqlite3 "$T/state/inventory.db" "UPDATE audit SET who = 'nobody' WHERE id = 1" 2>&1)
check "the migrated audit table is still append-only: $upd" grep -q 'append-only' <<<"$upd"
kill "$GW_PID"
wait "$GW_PID" 2>/dev/null
forget_pid "$GW_PID"
unset GW_PORT
start_gateway --backend "cas1=127.0.0.1:$BE_PORT_cas1,health=/health" || finish
check "opened again: nothing migrated twice (one inventory_migrated line)" \
	test "$(grep -c 'event=inventory_migrated' "$T/gw.log")" -eq 1
check "...and still 3 devices" test "$(ctl devices --format csv | tail -n +2 | wc -l)" -eq 3
kill "$GW_PID"
wait "$GW_PID" 2>/dev/null
forget_pid "$GW_PID"

echo "# PostgreSQL: a version-1 farm database"
start_pg main || finish
cat >"$T/v1.conf" <<EOF
store = "postgresql";
postgresql = { conninfo = "$(conninfo_of main)"; };
EOF
out=$("$EASGATED" -c "$T/v1.conf" --db-migrate=1 2>&1)
check "easgated --db-migrate=1 makes a version-1 database: $out" grep -q 'schema 0 -> 1$' <<<"$out"
psql_farm main <<'SQL'
INSERT INTO devices ("user", device_id, device_type, device_model, device_os, user_agent,
  first_sync, last_attempt, last_success, last_status, access_state, state_reason, admin_state,
  admin_at) VALUES
 ('dora@corp.example', 'PgOld1', 'iPhone', 'iPhone6C1', 'iOS 8.1 12B411', 'Apple-iPhone6C1/1202.411',
  1700000000, 1700003600, 1700003600, 200, 'Allowed', 'DEFAULT', 0, 0),
 ('ed@corp.example', 'PgOld2', 'Android', 'Nexus 5', 'Android 5.0', 'Android/5.0',
  1700000100, 1700007200, 1700007000, 200, 'Blocked', 'ADMIN', 2, 1700001000);
INSERT INTO os_versions (os_key, family, first_seen, approved, approved_at)
  VALUES ('iOS 8.1 12B411', 'iOS', 1700000000, 1, 1700000500);
INSERT INTO rules (text, created) VALUES ('block DeviceId is "PGOLDRULE"', 1700000000);
SQL
check "version-1 rows inserted by hand (psql exit $?)" test $? -eq 0
v=$(psql_farm main -c "SELECT max(version) FROM schema_version")
check "the database is at version $v" test "$v" = 1
start_node N || finish
migrated() { [ "$(psql_farm main -c "SELECT max(version) FROM schema_version")" = 3 ]; }
check "the node migrated it to version 3 when it connected" wait_for 10 migrated
rows=$(psql_farm main -c "SELECT device_id, admin_state, last_attempt, device_model,
	devinfo_at = last_attempt, xid IS NOT NULL FROM devices ORDER BY device_id" | tr '\n' ' ')
check "rows kept, clocks set from their last attempt: $rows" \
	test "$rows" = "PgOld1|0|1700003600|iPhone6C1|t|t PgOld2|2|1700007200|Nexus 5|t|t "
listed() { [ "$(nctl N devices --format csv | grep -c ',PgOld')" -eq 2 ]; }
check "the node's snapshot lists both devices" wait_for 10 listed
r=$(phone N ed@corp.example PgOld2 Sync Android)
check "ed's phone is refused (admin block from version 1): $r" test "$r" = "403 gateway"
r=$(phone N x PGOLDRULE FolderSync)
check "the version-1 runtime rule is in force: $r" test "$r" = "403 gateway"
check "...and the approval" grep -q '^iOS 8.1 12B411 .* approved' <<<"$(nctl N versions)"
out=$(nctl N db status)
check "easctl db status: database 3, this binary 3" grep -q '^schema: *database 3, this binary 3' <<<"$out"
out=$(nctl N device approve PgOld2)
check "an approval on N after the migration: $out" grep -q 'is now allow' <<<"$out"
row=$(psql_farm main -c "SELECT node, what, before <> '', after FROM audit ORDER BY id")
check "...its line is in the farm's audit table, node N: $row" \
	test "$row" = "N|device approve PgOld2 (user ed@corp.example)|t|admin=allow"
upd=$(psql_farm main -c "UPDATE audit SET who = 'nobody'" 2>&1)
check "the farm's audit table is append-only: $upd" grep -q 'append-only' <<<"$upd"
out=$(nctl N db migrate)
check "easctl db migrate on a current database: nothing to do" grep -q 'nothing to do' <<<"$out"

echo "# PostgreSQL, auto_migrate = false: the node waits for easctl db migrate"
psql_farm main -c "CREATE DATABASE manual" >/dev/null
cat >"$T/manual.conf" <<EOF
store = "postgresql";
postgresql = { conninfo = "host=127.0.0.1 port=$(pg_port main) user=easgate dbname=manual"; };
EOF
out=$("$EASGATED" -c "$T/manual.conf" --db-migrate=1 2>&1)
check "a second version-1 database: $out" grep -q 'schema 0 -> 1$' <<<"$out"
NODE_NO_PG_GROUP=1 start_node M \
	"postgresql = { conninfo = \"host=127.0.0.1 port=$(pg_port main) user=easgate dbname=manual\"; auto_migrate = false; heartbeat = 1; };" ||
	finish
behind() { nctl M status | grep -q '^store postgresql node=M state=schema-behind .*run easctl db migrate'; }
check "M stays out of the farm and says why" wait_for 10 behind
nctl M status | grep '^store' | sed 's/^/    /'
out=$(nctl M db migrate)
check "easctl db migrate: $out" grep -q 'migrated the database from schema 1 to 3' <<<"$out"
up() { nctl M status | grep -q '^store postgresql node=M state=up'; }
check "M is up in its farm after the migration" wait_for 10 up
finish
