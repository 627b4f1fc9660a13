/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * inventory_schema.c - the SQLite schema of the inventory and its versioned
 * migrations (see inventory_schema.h). The PostgreSQL schema has the same
 * logical tables and versions (store_pg_schema.c).
 *
 * Migration 1 is the schema every release before the farm created (it is
 * recognised by its meta row 'schema' = '1'); a database made by it keeps
 * its rows and gets the columns and tables of the later migrations added. The
 * pending migrations run in one transaction with their schema_version rows,
 * so a crash leaves the old version or the new one, never half of one.
 */
#include "inventory_schema.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

struct inv_migration {
	int version;
	const char *what;
	const char *sql;
};

static const struct inv_migration migrations[] = {
    {1, "devices, os_versions, rules, meta",
     "CREATE TABLE IF NOT EXISTS devices ("
     " user TEXT NOT NULL COLLATE NOCASE, device_id TEXT NOT NULL COLLATE NOCASE,"
     " device_type TEXT DEFAULT '', device_model TEXT DEFAULT '', device_os TEXT DEFAULT '',"
     " os_key TEXT DEFAULT '', os_family TEXT DEFAULT '',"
     " user_agent TEXT DEFAULT '', friendly_name TEXT DEFAULT '', imei TEXT DEFAULT '',"
     " mobile_operator TEXT DEFAULT '', phone_number TEXT DEFAULT '', os_language TEXT DEFAULT "
     "'',"
     " xmswl TEXT DEFAULT '', protocol TEXT DEFAULT '', last_cmd TEXT DEFAULT '',"
     " first_sync INTEGER DEFAULT 0, last_attempt INTEGER DEFAULT 0, last_success INTEGER "
     "DEFAULT 0,"
     " last_status INTEGER DEFAULT 0, access_state TEXT DEFAULT '', state_reason TEXT DEFAULT "
     "'',"
     " rule TEXT DEFAULT '', admin_state INTEGER DEFAULT 0, admin_at INTEGER DEFAULT 0,"
     " PRIMARY KEY (user, device_id));"
     "CREATE TABLE IF NOT EXISTS os_versions ("
     " os_key TEXT PRIMARY KEY COLLATE NOCASE, family TEXT DEFAULT '', first_seen INTEGER NOT "
     "NULL,"
     " approved INTEGER DEFAULT 0, approved_at INTEGER DEFAULT 0);"
     "CREATE TABLE IF NOT EXISTS rules ("
     " id INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL, created INTEGER DEFAULT 0);"
     "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);"
     "INSERT OR IGNORE INTO meta VALUES ('schema', '1');"},
    /*
     * The farm. Per device: the node that saw it last, and one clock per
     * group of fields (DeviceInformation, decision, result; admin_at and
     * last_attempt existed), so that rows from several nodes merge field
     * group by field group, the newest winning (inv_merge_device); the
     * loop quarantine another node imposed. Personal lists and node
     * heartbeats as tables; the journal of rows this node changed and the
     * database has not confirmed yet (journal.h). Old rows get clocks from
     * their last attempt, so they lose to any newer news.
     */
    {2, "farm: last node, field clocks, loop quarantines, personal lists, nodes, journal",
     "ALTER TABLE devices ADD COLUMN last_node TEXT DEFAULT '';"
     "ALTER TABLE devices ADD COLUMN devinfo_at INTEGER DEFAULT 0;"
     "ALTER TABLE devices ADD COLUMN decided_at INTEGER DEFAULT 0;"
     "ALTER TABLE devices ADD COLUMN result_at INTEGER DEFAULT 0;"
     "ALTER TABLE devices ADD COLUMN loop_until INTEGER DEFAULT 0;"
     "ALTER TABLE devices ADD COLUMN loop_cmd INTEGER DEFAULT -1;"
     "ALTER TABLE devices ADD COLUMN loop_at INTEGER DEFAULT 0;"
     "UPDATE devices SET"
     " devinfo_at = CASE WHEN device_model != '' OR device_os != '' THEN last_attempt ELSE 0 "
     "END,"
     " decided_at = CASE WHEN access_state != '' THEN last_attempt ELSE 0 END,"
     " result_at = CASE WHEN last_status != 0 THEN last_attempt ELSE 0 END;"
     "ALTER TABLE rules ADD COLUMN node TEXT DEFAULT '';"
     "CREATE TABLE device_lists (list TEXT NOT NULL, entry TEXT NOT NULL COLLATE NOCASE,"
     " created INTEGER DEFAULT 0, node TEXT DEFAULT '', PRIMARY KEY (list, entry));"
     "CREATE TABLE nodes (name TEXT PRIMARY KEY, version TEXT DEFAULT '',"
     " store TEXT DEFAULT '', config_gen INTEGER DEFAULT 0, policy_gen INTEGER DEFAULT 0,"
     " started_at INTEGER DEFAULT 0, heartbeat_at INTEGER DEFAULT 0,"
     " requests_total INTEGER DEFAULT 0, requests_per_s REAL DEFAULT 0,"
     " journal INTEGER DEFAULT 0);"
     "CREATE TABLE journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
     " k1 TEXT NOT NULL COLLATE NOCASE, k2 TEXT NOT NULL DEFAULT '' COLLATE NOCASE,"
     " at INTEGER DEFAULT 0, UNIQUE (kind, k1, k2));"
     "UPDATE meta SET v = '2' WHERE k = 'schema';"},
    /*
     * The audit trail (issue #14) and the DeviceId index admin commands
     * use. A file made by a release with the console but before the farm
     * has the table already (its version-1 schema created it): kept with its
     * rows. In a farm the table mirrors the farm's audit (farm_id: the
     * database's id, unique, so a row pulled twice is one row); node names
     * where the change was made. Append-only: triggers refuse UPDATE and
     * DELETE, whoever opens the file.
     */
    {3, "audit trail (farm-wide in a farm), DeviceId index",
     "CREATE TABLE IF NOT EXISTS audit ("
     " id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, who TEXT NOT NULL,"
     " source TEXT DEFAULT '', what TEXT NOT NULL, before TEXT DEFAULT '',"
     " after TEXT DEFAULT '');"
     "ALTER TABLE audit ADD COLUMN node TEXT DEFAULT '';"
     "ALTER TABLE audit ADD COLUMN farm_id INTEGER;"
     "CREATE UNIQUE INDEX audit_farm_id ON audit (farm_id);"
     "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit"
     " BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;"
     "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit"
     " BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;"
     "CREATE INDEX IF NOT EXISTS devices_by_id ON devices (device_id);"
     "UPDATE meta SET v = '3' WHERE k = 'schema';"},
};

#define NMIG ((int)(sizeof(migrations) / sizeof(migrations[0])))

int inv_schema_latest(void)
{
	return migrations[NMIG - 1].version;
}

static int table_exists(sqlite3 *db, const char *name)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
			       -1, &s, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int r = sqlite3_step(s) == SQLITE_ROW;
	sqlite3_finalize(s);
	return r;
}

static int int_query(sqlite3 *db, const char *sql, int *out)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW)
		*out = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return r == SQLITE_ROW ? 0 : -1;
}

int inv_schema_version(sqlite3 *db)
{
	int v = 0;
	if (table_exists(db, "schema_version"))
		return int_query(db, "SELECT coalesce(max(version), 0) FROM schema_version", &v) < 0
			   ? -1
			   : v;
	/* Before schema_version: the meta marker of migration 1. */
	if (table_exists(db, "meta") &&
	    int_query(db, "SELECT CAST(v AS INTEGER) FROM meta WHERE k = 'schema'", &v) == 0)
		return v;
	return table_exists(db, "devices") ? 1 : 0;
}

int inv_schema_describe(int version, const char **what)
{
	for (int i = 0; i < NMIG; i++)
		if (migrations[i].version == version) {
			*what = migrations[i].what;
			return 0;
		}
	return -1;
}

static int exec(sqlite3 *db, const char *sql, char *err, size_t errsz)
{
	char *e = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &e) == SQLITE_OK)
		return 0;
	snprintf(err, errsz, "%s", e ? e : sqlite3_errmsg(db));
	sqlite3_free(e);
	return -1;
}

int inv_schema_migrate(sqlite3 *db, int target, char *err, size_t errsz)
{
	if (target <= 0 || target > inv_schema_latest())
		target = inv_schema_latest();
	/* Under the write lock: two processes opening one file agree. */
	if (exec(db, "BEGIN IMMEDIATE", err, errsz) < 0)
		return -1;
	int from = inv_schema_version(db);
	if (from < 0) {
		snprintf(err, errsz, "cannot read the schema version");
		goto fail;
	}
	if (from > inv_schema_latest()) {
		/* A newer easgate migrated it. Migrations only add, so this
		 * binary can still read and write what it knows. */
		exec(db, "COMMIT", err, errsz);
		return from;
	}
	if (exec(db,
		 "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
		 " applied_at INTEGER DEFAULT 0, what TEXT DEFAULT '')",
		 err, errsz) < 0)
		goto fail;
	/* Versions found already there (made before schema_version existed). */
	for (int i = 0; i < NMIG && migrations[i].version <= from; i++) {
		char sql[256];
		snprintf(sql, sizeof(sql),
			 "INSERT OR IGNORE INTO schema_version VALUES (%d, 0, 'found')",
			 migrations[i].version);
		if (exec(db, sql, err, errsz) < 0)
			goto fail;
	}
	for (int i = 0; i < NMIG; i++) {
		const struct inv_migration *m = &migrations[i];
		if (m->version <= from || m->version > target)
			continue;
		char msg[256];
		if (exec(db, m->sql, msg, sizeof(msg)) < 0) {
			snprintf(err, errsz, "migration %d (%s): %s", m->version, m->what, msg);
			goto fail;
		}
		sqlite3_stmt *s;
		if (sqlite3_prepare_v2(
			db, "INSERT INTO schema_version VALUES (?1, strftime('%s','now'), ?2)", -1,
			&s, NULL) != SQLITE_OK) {
			snprintf(err, errsz, "%s", sqlite3_errmsg(db));
			goto fail;
		}
		sqlite3_bind_int(s, 1, m->version);
		sqlite3_bind_text(s, 2, m->what, -1, SQLITE_STATIC);
		int r = sqlite3_step(s);
		sqlite3_finalize(s);
		if (r != SQLITE_DONE) {
			snprintf(err, errsz, "%s", sqlite3_errmsg(db));
			goto fail;
		}
	}
	if (exec(db, "COMMIT", err, errsz) < 0)
		goto fail;
	return target > from ? target : from;
fail:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}
