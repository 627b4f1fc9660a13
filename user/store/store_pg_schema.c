/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * store_pg_schema.c - the farm database's schema, versioned like the SQLite
 * one (inventory_schema.c: same versions, same logical tables), and the
 * server-side pieces the nodes rely on:
 *
 *  - every device row carries the id of the transaction that wrote it last
 *    (xid, set by a trigger, so rows changed by hand count too), and a node
 *    pulls the rows not visible in the snapshot of its previous pull: exact,
 *    whatever order concurrent transactions commit in (store_pg_sync.c);
 *  - a deleted device leaves a tombstone (pulled the same way);
 *  - every change to a shared table notifies channel "easgate" with the
 *    table's name (one NOTIFY per statement and table): LISTEN/NOTIFY is
 *    the fan-out, the pull is the truth, so a lost notification costs at
 *    most the next one's delay;
 *  - easgate_push() applies a batch of rows from one node's journal
 *    (journal.h) in one statement: each (node, journal id, seq) at most once
 *    (node_progress), rows merged field group by field group, the newer
 *    group winning (the same rule as inv_merge_device), a removed device not
 *    brought back by a row older than its removal.
 *
 * Version 1 is the logical schema of the releases before the farm (the
 * SQLite file of those releases has it); version 2 adds the farm, version 3
 * the farm-wide audit trail. All
 * pending migrations run in one transaction under an advisory lock, after
 * checking that the version is still the one they start from, so nodes
 * starting together cannot apply one twice.
 */
#include "store_pg_schema.h"

#include <stdio.h>
#include <string.h>

// clang-format off
#define KEY(t) "lower(" t "\"user\" COLLATE \"C\"), lower(" t "device_id COLLATE \"C\")"

#define LWW(col, clock) \
	col " = CASE WHEN excluded." clock " >= t." clock " THEN excluded." col " ELSE t." col " END"

#define PUSH_DEVICE_COLS \
	"\"user\", device_id, device_type, device_model, device_os, user_agent, friendly_name," \
	" imei, mobile_operator, phone_number, os_language, xmswl, protocol, last_cmd, os_key," \
	" first_sync, last_attempt, last_success, last_status, access_state, state_reason, rule," \
	" admin_state, os_family, admin_at, last_node, devinfo_at, decided_at, result_at," \
	" loop_until, loop_cmd, loop_at"

/* A pushed row's values; a key it lacks takes the column's default. */
#define T(c) "coalesce(x." c ", ''), "
#define Z(c) "coalesce(x." c ", 0), "
#define PUSH_DEVICE_VALUES \
	"x.\"user\", x.device_id, " T("device_type") T("device_model") T("device_os") \
	T("user_agent") T("friendly_name") T("imei") T("mobile_operator") \
	T("phone_number") T("os_language") T("xmswl") T("protocol") T("last_cmd") \
	T("os_key") Z("first_sync") Z("last_attempt") Z("last_success") \
	Z("last_status") T("access_state") T("state_reason") T("rule") Z("admin_state") \
	T("os_family") Z("admin_at") T("last_node") Z("devinfo_at") Z("decided_at") \
	Z("result_at") Z("loop_until") "coalesce(x.loop_cmd, -1), coalesce(x.loop_at, 0)"

#define NOTIFY_ON(table, events) \
	"CREATE TRIGGER " table "_notify AFTER " events " ON " table \
	" FOR EACH STATEMENT EXECUTE FUNCTION easgate_notify();\n"

static const struct pg_migration {
	int version;
	const char *what;
	const char *sql;
} migrations[] = {
	{1, "devices, os_versions, rules, meta",
		"CREATE TABLE devices ("
		" \"user\" text NOT NULL, device_id text NOT NULL,"
		" device_type text NOT NULL DEFAULT '', device_model text NOT NULL DEFAULT '',"
		" device_os text NOT NULL DEFAULT '', os_key text NOT NULL DEFAULT '',"
		" os_family text NOT NULL DEFAULT '', user_agent text NOT NULL DEFAULT '',"
		" friendly_name text NOT NULL DEFAULT '', imei text NOT NULL DEFAULT '',"
		" mobile_operator text NOT NULL DEFAULT '', phone_number text NOT NULL DEFAULT '',"
		" os_language text NOT NULL DEFAULT '', xmswl text NOT NULL DEFAULT '',"
		" protocol text NOT NULL DEFAULT '', last_cmd text NOT NULL DEFAULT '',"
		" first_sync bigint NOT NULL DEFAULT 0, last_attempt bigint NOT NULL DEFAULT 0,"
		" last_success bigint NOT NULL DEFAULT 0, last_status integer NOT NULL DEFAULT 0,"
		" access_state text NOT NULL DEFAULT '', state_reason text NOT NULL DEFAULT '',"
		" rule text NOT NULL DEFAULT '', admin_state integer NOT NULL DEFAULT 0,"
		" admin_at bigint NOT NULL DEFAULT 0);\n"
		"CREATE UNIQUE INDEX devices_key ON devices (" KEY("") ");\n"
		"CREATE TABLE os_versions (os_key text NOT NULL, family text NOT NULL DEFAULT '',"
		" first_seen bigint NOT NULL, approved integer NOT NULL DEFAULT 0,"
		" approved_at bigint NOT NULL DEFAULT 0);\n"
		"CREATE UNIQUE INDEX os_versions_key ON os_versions (lower(os_key COLLATE \"C\"));\n"
		"CREATE TABLE rules (id bigserial PRIMARY KEY, text text NOT NULL,"
		" created bigint NOT NULL DEFAULT 0);\n"
		"CREATE TABLE meta (k text PRIMARY KEY, v text);\n"},
	{2, "farm: last node, field clocks, loop quarantines, tombstones, personal lists, nodes, push",
		"ALTER TABLE devices ADD COLUMN last_node text NOT NULL DEFAULT '',"
		" ADD COLUMN devinfo_at bigint NOT NULL DEFAULT 0,"
		" ADD COLUMN decided_at bigint NOT NULL DEFAULT 0,"
		" ADD COLUMN result_at bigint NOT NULL DEFAULT 0,"
		" ADD COLUMN loop_until bigint NOT NULL DEFAULT 0,"
		" ADD COLUMN loop_cmd integer NOT NULL DEFAULT -1,"
		" ADD COLUMN loop_at bigint NOT NULL DEFAULT 0,"
		" ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();\n"
		"UPDATE devices SET"
		" devinfo_at = CASE WHEN device_model <> '' OR device_os <> '' THEN last_attempt ELSE 0 END,"
		" decided_at = CASE WHEN access_state <> '' THEN last_attempt ELSE 0 END,"
		" result_at = CASE WHEN last_status <> 0 THEN last_attempt ELSE 0 END;\n"
		"CREATE INDEX devices_xid ON devices (xid);\n"
		"ALTER TABLE rules ADD COLUMN node text NOT NULL DEFAULT '';\n"
		"CREATE TABLE device_tombstones (\"user\" text NOT NULL, device_id text NOT NULL,"
		" removed_at bigint NOT NULL, xid xid8 NOT NULL DEFAULT pg_current_xact_id());\n"
		"CREATE UNIQUE INDEX device_tombstones_key ON device_tombstones (" KEY("") ");\n"
		"CREATE INDEX device_tombstones_xid ON device_tombstones (xid);\n"
		"CREATE TABLE device_lists (list text NOT NULL CHECK (list IN ('blocked', 'allowed')),"
		" entry text NOT NULL, created bigint NOT NULL DEFAULT 0, node text NOT NULL DEFAULT '');\n"
		"CREATE UNIQUE INDEX device_lists_key ON device_lists (list, lower(entry COLLATE \"C\"));\n"
		"CREATE TABLE nodes (name text PRIMARY KEY, version text NOT NULL DEFAULT '',"
		" store text NOT NULL DEFAULT '', config_gen bigint NOT NULL DEFAULT 0,"
		" policy_gen bigint NOT NULL DEFAULT 0, started_at bigint NOT NULL DEFAULT 0,"
		" heartbeat_at bigint NOT NULL DEFAULT 0, requests_total bigint NOT NULL DEFAULT 0,"
		" requests_per_s double precision NOT NULL DEFAULT 0, journal bigint NOT NULL DEFAULT 0);\n"
		"CREATE TABLE node_progress (node text NOT NULL, journal_id text NOT NULL,"
		" last_seq bigint NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now(),"
		" PRIMARY KEY (node, journal_id));\n"
		"INSERT INTO meta (k, v) VALUES ('farm_id', md5(random()::text ||"
		" clock_timestamp()::text)) ON CONFLICT (k) DO NOTHING;\n"
		"CREATE FUNCTION easgate_touch() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
		" NEW.xid := pg_current_xact_id(); RETURN NEW; END $f$;\n"
		"CREATE TRIGGER devices_touch BEFORE INSERT OR UPDATE ON devices"
		" FOR EACH ROW EXECUTE FUNCTION easgate_touch();\n"
		"CREATE TRIGGER device_tombstones_touch BEFORE INSERT OR UPDATE ON device_tombstones"
		" FOR EACH ROW EXECUTE FUNCTION easgate_touch();\n"
		"CREATE FUNCTION easgate_tombstone() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
		" INSERT INTO device_tombstones (\"user\", device_id, removed_at)"
		" VALUES (OLD.\"user\", OLD.device_id, extract(epoch FROM now())::bigint)"
		" ON CONFLICT ((lower(\"user\" COLLATE \"C\")), (lower(device_id COLLATE \"C\")))"
		" DO UPDATE SET removed_at = excluded.removed_at; RETURN OLD; END $f$;\n"
		"CREATE TRIGGER devices_tombstone AFTER DELETE ON devices"
		" FOR EACH ROW EXECUTE FUNCTION easgate_tombstone();\n"
		"CREATE FUNCTION easgate_notify() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
		" PERFORM pg_notify('easgate', TG_TABLE_NAME); RETURN NULL; END $f$;\n"
		NOTIFY_ON("devices", "INSERT OR UPDATE OR DELETE")
		NOTIFY_ON("os_versions", "INSERT OR UPDATE OR DELETE")
		NOTIFY_ON("rules", "INSERT OR UPDATE OR DELETE OR TRUNCATE")
		NOTIFY_ON("device_lists", "INSERT OR UPDATE OR DELETE OR TRUNCATE")
		NOTIFY_ON("nodes", "INSERT OR UPDATE OR DELETE")
		NOTIFY_ON("meta", "INSERT OR UPDATE OR DELETE")
		"CREATE TYPE easgate_row AS (kind text, seq bigint, \"user\" text, device_id text,"
		" device_type text, device_model text, device_os text, user_agent text,"
		" friendly_name text, imei text, mobile_operator text, phone_number text,"
		" os_language text, xmswl text, protocol text, last_cmd text, os_key text,"
		" first_sync bigint, last_attempt bigint, last_success bigint, last_status integer,"
		" access_state text, state_reason text, rule text, admin_state integer,"
		" os_family text, admin_at bigint, last_node text, devinfo_at bigint,"
		" decided_at bigint, result_at bigint, loop_until bigint, loop_cmd integer,"
		" loop_at bigint, family text, first_seen bigint);\n"
		"CREATE FUNCTION easgate_push(p_node text, p_journal text, p_rows jsonb)"
		" RETURNS TABLE (applied bigint, duplicates bigint) LANGUAGE plpgsql AS $f$\n"
		"DECLARE v_last bigint; v_max bigint; v_dup bigint; v_dev bigint; v_ver bigint;\n"
		"BEGIN\n"
		" INSERT INTO node_progress (node, journal_id) VALUES (p_node, p_journal)"
		" ON CONFLICT DO NOTHING;\n"
		" SELECT np.last_seq INTO v_last FROM node_progress np"
		" WHERE np.node = p_node AND np.journal_id = p_journal FOR UPDATE;\n"
		" SELECT max(r.seq), count(*) FILTER (WHERE r.seq <= v_last) INTO v_max, v_dup"
		" FROM jsonb_populate_recordset(NULL::easgate_row, p_rows) r;\n"
		" INSERT INTO devices AS t (" PUSH_DEVICE_COLS ")"
		" SELECT DISTINCT ON (" KEY("x.") ") " PUSH_DEVICE_VALUES
		" FROM jsonb_populate_recordset(NULL::easgate_row, p_rows) x"
		" WHERE x.kind = 'd' AND x.seq > v_last AND NOT EXISTS (SELECT 1 FROM device_tombstones b"
		" WHERE lower(b.\"user\" COLLATE \"C\") = lower(x.\"user\" COLLATE \"C\")"
		" AND lower(b.device_id COLLATE \"C\") = lower(x.device_id COLLATE \"C\")"
		" AND b.removed_at > greatest(x.last_attempt, x.admin_at))"
		" ORDER BY " KEY("x.") ", x.seq DESC"
		" ON CONFLICT ((lower(\"user\" COLLATE \"C\")), (lower(device_id COLLATE \"C\")))"
		" DO UPDATE SET "
		LWW("device_type", "last_attempt") ", " LWW("user_agent", "last_attempt") ", "
		LWW("xmswl", "last_attempt") ", " LWW("protocol", "last_attempt") ", "
		LWW("last_cmd", "last_attempt") ", " LWW("last_node", "last_attempt") ","
		" first_sync = CASE WHEN t.first_sync = 0 OR (excluded.first_sync <> 0 AND"
		" excluded.first_sync < t.first_sync) THEN excluded.first_sync ELSE t.first_sync END,"
		" last_attempt = greatest(t.last_attempt, excluded.last_attempt),"
		" last_success = greatest(t.last_success, excluded.last_success), "
		LWW("device_model", "devinfo_at") ", " LWW("device_os", "devinfo_at") ", "
		LWW("friendly_name", "devinfo_at") ", " LWW("imei", "devinfo_at") ", "
		LWW("mobile_operator", "devinfo_at") ", " LWW("phone_number", "devinfo_at") ", "
		LWW("os_language", "devinfo_at") ","
		" devinfo_at = greatest(t.devinfo_at, excluded.devinfo_at), "
		LWW("access_state", "decided_at") ", " LWW("state_reason", "decided_at") ", "
		LWW("rule", "decided_at") ", " LWW("os_key", "decided_at") ", "
		LWW("os_family", "decided_at") ","
		" decided_at = greatest(t.decided_at, excluded.decided_at), "
		LWW("last_status", "result_at") ", result_at = greatest(t.result_at, excluded.result_at), "
		LWW("admin_state", "admin_at") ", admin_at = greatest(t.admin_at, excluded.admin_at), "
		LWW("loop_until", "loop_at") ", " LWW("loop_cmd", "loop_at") ","
		" loop_at = greatest(t.loop_at, excluded.loop_at);\n"
		" GET DIAGNOSTICS v_dev = ROW_COUNT;\n"
		" INSERT INTO os_versions AS t (os_key, family, first_seen)"
		" SELECT DISTINCT ON (lower(x.os_key COLLATE \"C\")) x.os_key, coalesce(x.family, ''),"
		" x.first_seen FROM jsonb_populate_recordset(NULL::easgate_row, p_rows) x"
		" WHERE x.kind = 'v' AND x.seq > v_last AND x.first_seen > 0"
		" ORDER BY lower(x.os_key COLLATE \"C\"), x.first_seen"
		" ON CONFLICT ((lower(os_key COLLATE \"C\"))) DO UPDATE SET"
		" family = CASE WHEN t.family = '' THEN excluded.family ELSE t.family END,"
		" first_seen = CASE WHEN t.first_seen = 0 OR excluded.first_seen < t.first_seen"
		" THEN excluded.first_seen ELSE t.first_seen END"
		" WHERE t.first_seen = 0 OR excluded.first_seen < t.first_seen"
		" OR (t.family = '' AND excluded.family <> '');\n"
		" GET DIAGNOSTICS v_ver = ROW_COUNT;\n"
		" UPDATE node_progress SET last_seq = greatest(last_seq, coalesce(v_max, 0)),"
		" updated_at = now() WHERE node = p_node AND journal_id = p_journal;\n"
		" RETURN QUERY SELECT v_dev + v_ver, v_dup;\n"
		"END $f$;\n"},
	/* The farm's audit trail: one append-only table for every node (who,
	 * which node, when, what, before, after), written in the same
	 * statement as the change it describes (store_pg_sync.c), pulled by
	 * xid like the devices. */
	{3, "audit trail",
		"CREATE TABLE audit (id bigserial PRIMARY KEY, at bigint NOT NULL,"
		" node text NOT NULL DEFAULT '', who text NOT NULL, source text NOT NULL DEFAULT '',"
		" what text NOT NULL, before text NOT NULL DEFAULT '', after text NOT NULL DEFAULT '',"
		" xid xid8 NOT NULL DEFAULT pg_current_xact_id());\n"
		"CREATE INDEX audit_xid ON audit (xid);\n"
		"CREATE FUNCTION easgate_append_only() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
		" RAISE EXCEPTION 'the % table is append-only', TG_TABLE_NAME; END $f$;\n"
		"CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit"
		" FOR EACH ROW EXECUTE FUNCTION easgate_append_only();\n"
		"CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit"
		" FOR EACH STATEMENT EXECUTE FUNCTION easgate_append_only();\n"
		NOTIFY_ON("audit", "INSERT")},
};
// clang-format on

#define NMIG ((int)(sizeof(migrations) / sizeof(migrations[0])))

int store_pg_schema_latest(void)
{
	return migrations[NMIG - 1].version;
}

const char *store_pg_schema_what(int version)
{
	for (int i = 0; i < NMIG; i++)
		if (migrations[i].version == version)
			return migrations[i].what;
	return "";
}

/* The advisory lock every migration takes: nodes and tools agree on it. */
#define MIGRATE_LOCK 0x45475347 /* "EGSG" */

int store_pg_migration_script(int from, int to, struct sbuf *out)
{
	if (to <= 0 || to > store_pg_schema_latest())
		to = store_pg_schema_latest();
	if (from >= to)
		return 0;
	/* One simple-query message: one implicit transaction. */
	sbuf_printf(out,
		    "SELECT pg_advisory_xact_lock(%d);\n"
		    "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
		    " applied_at timestamptz NOT NULL DEFAULT now(), what text NOT NULL DEFAULT "
		    "'');\n"
		    "DO $c$ BEGIN IF (SELECT coalesce(max(version), 0) FROM schema_version) <> %d"
		    " THEN RAISE EXCEPTION 'easgate: the schema moved on meanwhile (another node "
		    "migrated it)'; END IF; END $c$;\n",
		    MIGRATE_LOCK, from);
	for (int i = 0; i < NMIG; i++) {
		const struct pg_migration *m = &migrations[i];
		if (m->version <= from || m->version > to)
			continue;
		sbuf_printf(out, "%s", m->sql);
		sbuf_printf(out, "INSERT INTO schema_version (version, what) VALUES (%d, '%s');\n",
			    m->version, m->what);
	}
	return to - from;
}

const char *store_pg_version_query(void)
{
	return "SELECT coalesce(max(version), 0) FROM schema_version";
}
