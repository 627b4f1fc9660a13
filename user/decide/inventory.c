/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* inventory.c - see inventory.h. All SQL is prepared once. */
#include "inventory.h"
#include "inventory_schema.h"
#include "log.h"
#include "policy.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fnmatch.h>
#include <pcre2.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
	/* readers (workers too) */
	Q_GET_DEVICE,
	Q_GET_VERSION,
	Q_RULES,
	Q_ALL_DEVICES,
	Q_ALL_VERSIONS,
	Q_COUNT,
	Q_LISTS,
	Q_NODES,
	Q_META_GET,
	Q_AUDIT_LIST,
	Q_DEVICE_PAGE,
	Q_BY_DEVICE_ID,
	Q__READERS,
	/* the writer (master) */
	Q_UPSERT_SEEN = Q__READERS,
	Q_EXISTS,
	Q_DEVINFO_NEWS,
	Q_SET_DEVINFO,
	Q_SET_RESULT,
	Q_SET_DECISION,
	Q_VERSION_VERIFIED,
	Q_SET_ADMIN,
	Q_REMOVE,
	Q_APPROVE,
	Q_RULE_ADD,
	Q_RULE_DEL,
	Q_SET_LOOP,
	Q_LOOP_CLEAR,
	Q_MERGE_DEVICE,
	Q_DEVICE_FACTS,
	Q_MERGE_VERSION,
	Q_VERSION_FACTS,
	Q_RULE_PUT,
	Q_RULES_CLEAR,
	Q_LIST_ADD,
	Q_LIST_DEL,
	Q_LISTS_CLEAR,
	Q_NODE_PUT,
	Q_META_SET,
	Q_AUDIT_ADD,
	Q_AUDIT_PUT,
	Q__N
};

#define DEVICE_COLS                                                                                \
	"user, device_id, device_type, device_model, device_os, user_agent, friendly_name, imei,"  \
	" mobile_operator, phone_number, os_language, xmswl, protocol, last_cmd, os_key,"          \
	" first_sync, last_attempt, last_success, last_status, access_state, state_reason, rule,"  \
	" admin_state, os_family, admin_at, last_node, devinfo_at, decided_at, result_at,"         \
	" loop_until, loop_cmd, loop_at"

/* The newer group wins; a tie takes the incoming row (inv_merge_device). */
#define LWW(col, clock)                                                                            \
	col " = CASE WHEN excluded." clock " >= " clock " THEN excluded." col " ELSE " col " END"

static const char *const sql[Q__N] = {
    [Q_GET_DEVICE] = "SELECT " DEVICE_COLS " FROM devices WHERE user = ?1 AND device_id = ?2",
    [Q_GET_VERSION] = "SELECT os_key, family, first_seen, approved, approved_at,"
		      " (SELECT count(*) FROM devices d WHERE d.os_key = v.os_key)"
		      " FROM os_versions v WHERE os_key = ?1",
    [Q_RULES] = "SELECT id, text FROM rules ORDER BY id",
    [Q_ALL_DEVICES] = "SELECT " DEVICE_COLS " FROM devices ORDER BY user, device_id",
    [Q_ALL_VERSIONS] = "SELECT os_key, family, first_seen, approved, approved_at,"
		       " (SELECT count(*) FROM devices d WHERE d.os_key = v.os_key)"
		       " FROM os_versions v ORDER BY family, first_seen",
    [Q_COUNT] = "SELECT os_family, access_state, count(*) FROM devices"
		" GROUP BY os_family, access_state",
    [Q_LISTS] = "SELECT list, entry FROM device_lists ORDER BY list, entry",
    [Q_NODES] = "SELECT name, version, store, config_gen, policy_gen, started_at, heartbeat_at,"
		" requests_total, requests_per_s, journal FROM nodes ORDER BY name",
    [Q_META_GET] = "SELECT v FROM meta WHERE k = ?1",
    /* newest first, below an id (keyset paging) */
    [Q_AUDIT_LIST] = "SELECT id, at, who, source, what, before, after, node FROM audit"
		     " WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    [Q_DEVICE_PAGE] = "SELECT " DEVICE_COLS " FROM devices WHERE (user, device_id) > (?1, ?2)"
		      " ORDER BY user, device_id LIMIT ?3",
    [Q_BY_DEVICE_ID] = "SELECT " DEVICE_COLS " FROM devices WHERE device_id = ?1"
		       " ORDER BY user LIMIT ?2",
    [Q_UPSERT_SEEN] =
	"INSERT INTO devices (user, device_id, device_type, user_agent, xmswl, protocol,"
	" last_cmd, first_sync, last_attempt, os_key, os_family, last_node)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11)"
	" ON CONFLICT (user, device_id) DO UPDATE SET device_type = CASE WHEN"
	" excluded.device_type != '' THEN excluded.device_type ELSE device_type END,"
	" user_agent = CASE WHEN excluded.user_agent != '' THEN excluded.user_agent"
	" ELSE user_agent END, xmswl = CASE WHEN excluded.xmswl != '' THEN excluded.xmswl"
	" ELSE xmswl END, protocol = CASE WHEN excluded.protocol != '' THEN"
	" excluded.protocol ELSE protocol END, last_cmd = excluded.last_cmd,"
	" last_node = excluded.last_node,"
	" last_attempt = max(last_attempt, excluded.last_attempt),"
	" os_key = CASE WHEN excluded.os_key != '' THEN excluded.os_key ELSE os_key END,"
	" os_family = CASE WHEN excluded.os_family != '' THEN excluded.os_family ELSE"
	" os_family END",
    [Q_EXISTS] = "SELECT 1 FROM devices WHERE user = ?1 AND device_id = ?2",
    /* Would this DeviceInformation change what decisions see (model, OS)? */
    [Q_DEVINFO_NEWS] = "SELECT 1 FROM devices WHERE user = ?1 AND device_id = ?2 AND"
		       " ((?3 != '' AND device_model != ?3) OR (?4 != '' AND device_os != ?4))",
    [Q_SET_DEVINFO] =
	"UPDATE devices SET device_model = CASE WHEN ?3 != '' THEN ?3 ELSE device_model END,"
	" device_os = CASE WHEN ?4 != '' THEN ?4 ELSE device_os END,"
	" friendly_name = CASE WHEN ?5 != '' THEN ?5 ELSE friendly_name END,"
	" imei = CASE WHEN ?6 != '' THEN ?6 ELSE imei END,"
	" mobile_operator = CASE WHEN ?7 != '' THEN ?7 ELSE mobile_operator END,"
	" phone_number = CASE WHEN ?8 != '' THEN ?8 ELSE phone_number END,"
	" os_language = CASE WHEN ?9 != '' THEN ?9 ELSE os_language END,"
	" user_agent = CASE WHEN ?10 != '' AND user_agent = '' THEN ?10 ELSE user_agent END,"
	" devinfo_at = max(devinfo_at, ?11)"
	" WHERE user = ?1 AND device_id = ?2",
    [Q_SET_RESULT] = "UPDATE devices SET last_status = ?3,"
		     " last_success = CASE WHEN ?3 BETWEEN 200 AND 299 AND ?5"
		     " THEN max(last_success, ?4) ELSE last_success END,"
		     " result_at = max(result_at, ?4)"
		     " WHERE user = ?1 AND device_id = ?2",
    [Q_SET_DECISION] = "UPDATE devices SET access_state = ?3, state_reason = ?4, rule = ?5,"
		       " decided_at = max(decided_at, ?6)"
		       " WHERE user = ?1 AND device_id = ?2",
    /* The first authenticated request on a version starts its clock (rows
     * from older versions of the daemon may hold first_seen 0: listed, not
     * yet verified). */
    [Q_VERSION_VERIFIED] = "INSERT INTO os_versions (os_key, family, first_seen)"
			   " VALUES (?1, ?2, ?3) ON CONFLICT (os_key) DO UPDATE SET"
			   " first_seen = ?3 WHERE first_seen = 0",
    /* Admin clocks only move forward, whatever this host's clock says, so
     * a change always wins over the state it replaced (inv_merge_device). */
    [Q_SET_ADMIN] = "UPDATE devices SET admin_state = ?3, admin_at = max(admin_at + 1, ?4)"
		    " WHERE user = ?1 AND device_id = ?2",
    [Q_REMOVE] = "DELETE FROM devices WHERE user = ?1 AND device_id = ?2",
    [Q_APPROVE] = "INSERT INTO os_versions (os_key, family, first_seen, approved, approved_at)"
		  " VALUES (?1, '', ?3, ?2, ?3) ON CONFLICT (os_key) DO UPDATE SET"
		  " approved = ?2, approved_at = max(approved_at + 1, ?3)",
    [Q_RULE_ADD] = "INSERT INTO rules (text, created) VALUES (?1, ?2)",
    [Q_RULE_DEL] = "DELETE FROM rules WHERE id = ?1",
    [Q_SET_LOOP] = "UPDATE devices SET loop_until = ?3, loop_cmd = ?4, loop_at = max(loop_at, ?5)"
		   " WHERE user = ?1 AND device_id = ?2",
    [Q_LOOP_CLEAR] = "UPDATE devices SET loop_until = 0, loop_cmd = -1,"
		     " loop_at = max(loop_at + 1, ?3)"
		     " WHERE user = ?1 AND device_id = ?2 AND loop_until != 0",
    // clang-format off
    [Q_MERGE_DEVICE] =
	"INSERT INTO devices (" DEVICE_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
	" ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27,"
	" ?28, ?29, ?30, ?31, ?32)"
	" ON CONFLICT (user, device_id) DO UPDATE SET "
	LWW("device_type", "last_attempt") ", " LWW("user_agent", "last_attempt") ", "
	LWW("xmswl", "last_attempt") ", " LWW("protocol", "last_attempt") ", "
	LWW("last_cmd", "last_attempt") ", " LWW("last_node", "last_attempt") ","
	" first_sync = CASE WHEN first_sync = 0 OR (excluded.first_sync != 0 AND"
	" excluded.first_sync < first_sync) THEN excluded.first_sync ELSE first_sync END,"
	" last_attempt = max(last_attempt, excluded.last_attempt),"
	" last_success = max(last_success, excluded.last_success), "
	LWW("device_model", "devinfo_at") ", " LWW("device_os", "devinfo_at") ", "
	LWW("friendly_name", "devinfo_at") ", " LWW("imei", "devinfo_at") ", "
	LWW("mobile_operator", "devinfo_at") ", " LWW("phone_number", "devinfo_at") ", "
	LWW("os_language", "devinfo_at") ", devinfo_at = max(devinfo_at, excluded.devinfo_at), "
	LWW("access_state", "decided_at") ", " LWW("state_reason", "decided_at") ", "
	LWW("rule", "decided_at") ", " LWW("os_key", "decided_at") ", "
	LWW("os_family", "decided_at") ", decided_at = max(decided_at, excluded.decided_at), "
	LWW("last_status", "result_at") ", result_at = max(result_at, excluded.result_at), "
	LWW("admin_state", "admin_at") ", admin_at = max(admin_at, excluded.admin_at), "
	LWW("loop_until", "loop_at") ", " LWW("loop_cmd", "loop_at") ","
	" loop_at = max(loop_at, excluded.loop_at)",
    // clang-format on
    /* What decisions read of a device (inv_merge_device tells a change). */
    [Q_DEVICE_FACTS] = "SELECT admin_state, device_model, device_os, loop_until, loop_cmd"
		       " FROM devices WHERE user = ?1 AND device_id = ?2",
    // clang-format off
    [Q_MERGE_VERSION] =
	"INSERT INTO os_versions (os_key, family, first_seen, approved, approved_at)"
	" VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (os_key) DO UPDATE SET"
	" family = CASE WHEN family = '' THEN excluded.family ELSE family END,"
	" first_seen = CASE WHEN first_seen = 0 OR (excluded.first_seen != 0 AND"
	" excluded.first_seen < first_seen) THEN excluded.first_seen ELSE first_seen END, "
	LWW("approved", "approved_at") ", approved_at = max(approved_at, excluded.approved_at)",
    // clang-format on
    [Q_VERSION_FACTS] = "SELECT first_seen, approved FROM os_versions WHERE os_key = ?1",
    [Q_RULE_PUT] = "INSERT OR REPLACE INTO rules (id, text, created) VALUES (?1, ?2, ?3)",
    [Q_RULES_CLEAR] = "DELETE FROM rules",
    [Q_LIST_ADD] = "INSERT OR IGNORE INTO device_lists (list, entry, created) VALUES (?1, ?2, ?3)",
    [Q_LIST_DEL] = "DELETE FROM device_lists WHERE list = ?1 AND entry = ?2",
    [Q_LISTS_CLEAR] = "DELETE FROM device_lists",
    [Q_NODE_PUT] = "INSERT INTO nodes (name, version, store, config_gen, policy_gen, started_at,"
		   " heartbeat_at, requests_total, requests_per_s, journal)"
		   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
		   " ON CONFLICT (name) DO UPDATE SET version = excluded.version,"
		   " store = excluded.store, config_gen = excluded.config_gen,"
		   " policy_gen = excluded.policy_gen, started_at = excluded.started_at,"
		   " heartbeat_at = excluded.heartbeat_at,"
		   " requests_total = excluded.requests_total,"
		   " requests_per_s = excluded.requests_per_s, journal = excluded.journal"
		   " WHERE excluded.heartbeat_at >= heartbeat_at",
    [Q_META_SET] = "INSERT OR REPLACE INTO meta (k, v) VALUES (?1, ?2)",
    [Q_AUDIT_ADD] = "INSERT INTO audit (at, who, source, what, before, after, node, farm_id)"
		    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    /* A farm row pulled again: already there (farm_id is unique). */
    [Q_AUDIT_PUT] = "INSERT OR IGNORE INTO audit (at, who, source, what, before, after, node,"
		    " farm_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
};

struct inventory {
	sqlite3 *db;
	sqlite3_stmt *st[Q__N];
	int readonly;
	int in_batch;
	int version; /* schema version of the file */
	char node[64];
};

static void col_text(sqlite3_stmt *s, int i, char *out, size_t n)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	snprintf(out, n, "%s", t ? (const char *)t : "");
}

static int db_err(struct inventory *inv, const char *what)
{
	log_err("event=inventory_error op=%s error=\"%s\"", what, sqlite3_errmsg(inv->db));
	return -1;
}

struct inventory *inv_open(const char *path, int readonly, char *err, size_t errsz)
{
	struct inventory *inv = calloc(1, sizeof(*inv));
	if (!inv) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	inv->readonly = readonly;
	int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	if (sqlite3_open_v2(path, &inv->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, errsz, "%s: %s", path, sqlite3_errmsg(inv->db));
		goto fail;
	}
	sqlite3_busy_timeout(inv->db, readonly ? 20 : 2000);
	if (!readonly) {
		char *e = NULL;
		if (sqlite3_exec(inv->db,
				 "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
				 "PRAGMA foreign_keys=ON;",
				 NULL, NULL, &e) != SQLITE_OK) {
			snprintf(err, errsz, "%s: %s", path, e ? e : sqlite3_errmsg(inv->db));
			sqlite3_free(e);
			goto fail;
		}
		char merr[256];
		int from = inv_schema_version(inv->db);
		int v = inv_schema_migrate(inv->db, 0, merr, sizeof(merr));
		if (v < 0) {
			snprintf(err, errsz, "%s: %s", path, merr);
			goto fail;
		}
		if (from != v)
			log_info("event=inventory_migrated path=%s from=%d to=%d", path, from, v);
	}
	inv->version = inv_schema_version(inv->db);
	for (int i = 0; i < Q__N; i++) {
		if (readonly && i >= Q__READERS)
			continue;
		if (sqlite3_prepare_v3(inv->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &inv->st[i],
				       NULL) != SQLITE_OK) {
			snprintf(err, errsz, "prepare %d: %s", i, sqlite3_errmsg(inv->db));
			goto fail;
		}
	}
	return inv;
fail:
	inv_close(inv);
	return NULL;
}

void inv_set_node(struct inventory *inv, const char *node)
{
	snprintf(inv->node, sizeof(inv->node), "%s", node ? node : "");
}

sqlite3 *inv_sqlite(struct inventory *inv)
{
	return inv->db;
}

int inv_version_of(struct inventory *inv)
{
	return inv->version;
}

void inv_close(struct inventory *inv)
{
	if (!inv)
		return;
	if (inv->in_batch)
		inv_batch_commit(inv);
	for (int i = 0; i < Q__N; i++)
		sqlite3_finalize(inv->st[i]);
	sqlite3_close(inv->db);
	free(inv);
}

static sqlite3_stmt *q(struct inventory *inv, int i)
{
	sqlite3_stmt *s = inv->st[i];
	if (s) {
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
	}
	return s;
}

static void bind_s(sqlite3_stmt *s, int i, const char *v)
{
	sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_TRANSIENT);
}

static void read_device(sqlite3_stmt *s, struct inv_device *d)
{
	memset(d, 0, sizeof(*d));
	col_text(s, 0, d->user, sizeof(d->user));
	col_text(s, 1, d->device_id, sizeof(d->device_id));
	col_text(s, 2, d->device_type, sizeof(d->device_type));
	col_text(s, 3, d->device_model, sizeof(d->device_model));
	col_text(s, 4, d->device_os, sizeof(d->device_os));
	col_text(s, 5, d->user_agent, sizeof(d->user_agent));
	col_text(s, 6, d->friendly_name, sizeof(d->friendly_name));
	col_text(s, 7, d->imei, sizeof(d->imei));
	col_text(s, 8, d->mobile_operator, sizeof(d->mobile_operator));
	col_text(s, 9, d->phone_number, sizeof(d->phone_number));
	col_text(s, 10, d->os_language, sizeof(d->os_language));
	col_text(s, 11, d->xmswl, sizeof(d->xmswl));
	col_text(s, 12, d->protocol, sizeof(d->protocol));
	col_text(s, 13, d->last_cmd, sizeof(d->last_cmd));
	col_text(s, 14, d->os_key, sizeof(d->os_key));
	d->first_sync = sqlite3_column_int64(s, 15);
	d->last_attempt = sqlite3_column_int64(s, 16);
	d->last_success = sqlite3_column_int64(s, 17);
	d->last_status = sqlite3_column_int(s, 18);
	col_text(s, 19, d->access_state, sizeof(d->access_state));
	col_text(s, 20, d->state_reason, sizeof(d->state_reason));
	col_text(s, 21, d->rule, sizeof(d->rule));
	d->admin_state = sqlite3_column_int(s, 22);
	col_text(s, 23, d->os_family, sizeof(d->os_family));
	d->admin_at = sqlite3_column_int64(s, 24);
	col_text(s, 25, d->last_node, sizeof(d->last_node));
	d->devinfo_at = sqlite3_column_int64(s, 26);
	d->decided_at = sqlite3_column_int64(s, 27);
	d->result_at = sqlite3_column_int64(s, 28);
	d->loop_until = sqlite3_column_int64(s, 29);
	d->loop_cmd = sqlite3_column_int(s, 30);
	d->loop_at = sqlite3_column_int64(s, 31);
}

int inv_get_device(struct inventory *inv, const char *user, const char *device_id,
		   struct inv_device *out)
{
	sqlite3_stmt *s = q(inv, Q_GET_DEVICE);
	bind_s(s, 1, user);
	bind_s(s, 2, device_id);
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW) {
		read_device(s, out);
		sqlite3_reset(s);
		return 1;
	}
	sqlite3_reset(s);
	if (r == SQLITE_DONE)
		return 0;
	/* A reader that finds no table yet (fresh install) simply knows nothing. */
	return 0;
}

static void read_version(sqlite3_stmt *s, struct inv_version *v)
{
	memset(v, 0, sizeof(*v));
	col_text(s, 0, v->os_key, sizeof(v->os_key));
	col_text(s, 1, v->family, sizeof(v->family));
	v->first_seen = sqlite3_column_int64(s, 2);
	v->approved = sqlite3_column_int(s, 3);
	v->approved_at = sqlite3_column_int64(s, 4);
	v->devices = sqlite3_column_int(s, 5);
}

int inv_get_version(struct inventory *inv, const char *os_key, struct inv_version *out)
{
	sqlite3_stmt *s = q(inv, Q_GET_VERSION);
	bind_s(s, 1, os_key);
	int r = sqlite3_step(s);
	if (r == SQLITE_ROW)
		read_version(s, out);
	sqlite3_reset(s);
	return r == SQLITE_ROW ? 1 : 0;
}

int inv_foreach_rule(struct inventory *inv, void (*cb)(void *arg, int64_t id, const char *text),
		     void *arg)
{
	sqlite3_stmt *s = q(inv, Q_RULES);
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW)
		cb(arg, sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1));
	sqlite3_reset(s);
	return r == SQLITE_DONE ? 0 : -1;
}

int inv_batch_begin(struct inventory *inv)
{
	if (inv->in_batch)
		return 0;
	if (sqlite3_exec(inv->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(inv, "begin");
	inv->in_batch = 1;
	return 0;
}

int inv_batch_commit(struct inventory *inv)
{
	if (!inv->in_batch)
		return 0;
	inv->in_batch = 0;
	if (sqlite3_exec(inv->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(inv, "commit");
	return 0;
}

static int step_done(struct inventory *inv, sqlite3_stmt *s, const char *what)
{
	int r = sqlite3_step(s);
	sqlite3_reset(s);
	if (r != SQLITE_DONE)
		return db_err(inv, what);
	return 0;
}

/* step_done for a change an admin asked for: 1 if a row changed, 0 if none
 * matched, -1 on a database error. */
static int step_changed(struct inventory *inv, sqlite3_stmt *s, const char *what)
{
	if (step_done(inv, s, what) < 0)
		return -1;
	return sqlite3_changes(inv->db) > 0;
}

const char *inv_access_state_name(int access)
{
	switch (access) {
	case POLICY_BLOCK:
		return "Blocked";
	case POLICY_QUARANTINE:
		return "Quarantined";
	default:
		return "Allowed";
	}
}

/* Is (user, device_id) in the inventory? */
static int device_exists(struct inventory *inv, const char *user, const char *device_id)
{
	sqlite3_stmt *s = q(inv, Q_EXISTS);
	bind_s(s, 1, user);
	bind_s(s, 2, device_id);
	int r = sqlite3_step(s) == SQLITE_ROW;
	sqlite3_reset(s);
	return r;
}

/*
 * Returns 1 when the event told something that can change a decision in every
 * worker (a new DeviceModel or DeviceOS: the caller must commit and publish a
 * new policy generation, or workers that cached the device before keep judging
 * it without), 0 when applied, -1 on error.
 *
 * Only an event flagged INV_EV_AUTHED (a backend accepted the device's
 * credentials) creates a device row; any other event updates the row if
 * there is one and is dropped otherwise. os_versions rows too are created by
 * authenticated events only. So nothing a client sends without valid
 * credentials grows the database (gate.h, "Authenticated sightings").
 */
int inv_apply(struct inventory *inv, const struct inv_event *ev)
{
	int news = 0;
	char proto[8];
	snprintf(proto, sizeof(proto), "%s", ev->protocol);
	sqlite3_stmt *s;
	if (!(ev->flags & (INV_EV_DECISION | INV_EV_DEVINFO)))
		goto result; /* the device row was written by its decision event */
	if (!(ev->flags & INV_EV_AUTHED) && !device_exists(inv, ev->user, ev->device_id))
		goto result; /* a claim: not a device (yet) */
	s = q(inv, Q_UPSERT_SEEN);
	bind_s(s, 1, ev->user);
	bind_s(s, 2, ev->device_id);
	bind_s(s, 3, ev->device_type);
	bind_s(s, 4, ev->user_agent);
	bind_s(s, 5, ev->xmswl);
	bind_s(s, 6, proto);
	bind_s(s, 7, eas_cmd_name(ev->cmd));
	sqlite3_bind_int64(s, 8, ev->now);
	bind_s(s, 9, ev->os_key);
	bind_s(s, 10, ev->os_family);
	bind_s(s, 11, inv->node);
	if (step_done(inv, s, "upsert") < 0)
		return -1;
	if (ev->flags & INV_EV_DEVINFO) {
		const struct eas_devinfo *d = &ev->di;
		s = q(inv, Q_DEVINFO_NEWS);
		bind_s(s, 1, ev->user);
		bind_s(s, 2, ev->device_id);
		bind_s(s, 3, d->model);
		bind_s(s, 4, d->os);
		news = sqlite3_step(s) == SQLITE_ROW;
		sqlite3_reset(s);
		s = q(inv, Q_SET_DEVINFO);
		bind_s(s, 1, ev->user);
		bind_s(s, 2, ev->device_id);
		bind_s(s, 3, d->model);
		bind_s(s, 4, d->os);
		bind_s(s, 5, d->friendly_name);
		bind_s(s, 6, d->imei);
		bind_s(s, 7, d->mobile_operator);
		bind_s(s, 8, d->phone_number);
		bind_s(s, 9, d->os_language);
		bind_s(s, 10, d->user_agent);
		sqlite3_bind_int64(s, 11, ev->now);
		if (step_done(inv, s, "devinfo") < 0)
			return -1;
	}
	if (ev->flags & INV_EV_DECISION) {
		s = q(inv, Q_SET_DECISION);
		bind_s(s, 1, ev->user);
		bind_s(s, 2, ev->device_id);
		bind_s(s, 3, inv_access_state_name(ev->access));
		bind_s(s, 4, policy_reason_name(ev->reason));
		bind_s(s, 5, ev->rule);
		sqlite3_bind_int64(s, 6, ev->now);
		if (step_done(inv, s, "decision") < 0)
			return -1;
	}
result:
	if (ev->flags & INV_EV_RESULT) {
		s = q(inv, Q_SET_RESULT);
		bind_s(s, 1, ev->user);
		bind_s(s, 2, ev->device_id);
		sqlite3_bind_int(s, 3, ev->status);
		sqlite3_bind_int64(s, 4, ev->now);
		/* A result event's access is the one the answer was given under
		 * (gate_done): a 2xx is a successful sync only for an allowed
		 * device; a blocked phone's status-129 envelope is HTTP 200 too. */
		sqlite3_bind_int(s, 5, ev->access == POLICY_ALLOW);
		if (step_done(inv, s, "result") < 0)
			return -1;
	}
	if ((ev->flags & INV_EV_LOOP) && ev->loop_s > 0) {
		s = q(inv, Q_SET_LOOP);
		bind_s(s, 1, ev->user);
		bind_s(s, 2, ev->device_id);
		sqlite3_bind_int64(s, 3, ev->now + ev->loop_s);
		sqlite3_bind_int(s, 4, ev->loop_cmd);
		sqlite3_bind_int64(s, 5, ev->now);
		if (step_done(inv, s, "loop") < 0)
			return -1;
		news |= sqlite3_changes(inv->db) > 0;
	}
	if ((ev->flags & INV_EV_AUTHED) && ev->os_key[0]) {
		s = q(inv, Q_VERSION_VERIFIED);
		bind_s(s, 1, ev->os_key);
		bind_s(s, 2, ev->os_family);
		sqlite3_bind_int64(s, 3, ev->now);
		if (step_done(inv, s, "version_verified") < 0)
			return -1;
	}
	return news;
}

int inv_set_admin_state(struct inventory *inv, const char *user, const char *device_id, int state,
			int64_t now)
{
	sqlite3_stmt *s = q(inv, Q_SET_ADMIN);
	bind_s(s, 1, user);
	bind_s(s, 2, device_id);
	sqlite3_bind_int(s, 3, state);
	sqlite3_bind_int64(s, 4, now);
	return step_changed(inv, s, "set_admin");
}

int inv_remove_device(struct inventory *inv, const char *user, const char *device_id)
{
	sqlite3_stmt *s = q(inv, Q_REMOVE);
	bind_s(s, 1, user);
	bind_s(s, 2, device_id);
	return step_changed(inv, s, "remove");
}

int inv_version_approve(struct inventory *inv, const char *os_key, int approved, int64_t now)
{
	sqlite3_stmt *s = q(inv, Q_APPROVE);
	bind_s(s, 1, os_key);
	sqlite3_bind_int(s, 2, approved);
	sqlite3_bind_int64(s, 3, now);
	return step_done(inv, s, "approve");
}

int64_t inv_rule_add(struct inventory *inv, const char *text, int64_t now)
{
	sqlite3_stmt *s = q(inv, Q_RULE_ADD);
	bind_s(s, 1, text);
	sqlite3_bind_int64(s, 2, now);
	if (step_done(inv, s, "rule_add") < 0)
		return -1;
	return sqlite3_last_insert_rowid(inv->db);
}

int inv_rule_remove(struct inventory *inv, int64_t id)
{
	sqlite3_stmt *s = q(inv, Q_RULE_DEL);
	sqlite3_bind_int64(s, 1, id);
	return step_changed(inv, s, "rule_remove");
}

int inv_loop_clear(struct inventory *inv, const char *user, const char *device_id, int64_t now)
{
	sqlite3_stmt *s = q(inv, Q_LOOP_CLEAR);
	bind_s(s, 1, user);
	bind_s(s, 2, device_id);
	sqlite3_bind_int64(s, 3, now);
	return step_changed(inv, s, "loop_clear");
}

/* --- personal lists ---------------------------------------------------------- */

int inv_list_add(struct inventory *inv, const char *list, const char *entry, int64_t now)
{
	sqlite3_stmt *s = q(inv, Q_LIST_ADD);
	bind_s(s, 1, list);
	bind_s(s, 2, entry);
	sqlite3_bind_int64(s, 3, now);
	return step_changed(inv, s, "list_add");
}

int inv_list_remove(struct inventory *inv, const char *list, const char *entry)
{
	sqlite3_stmt *s = q(inv, Q_LIST_DEL);
	bind_s(s, 1, list);
	bind_s(s, 2, entry);
	return step_changed(inv, s, "list_remove");
}

int inv_foreach_list(struct inventory *inv,
		     void (*cb)(void *arg, const char *list, const char *entry), void *arg)
{
	sqlite3_stmt *s = q(inv, Q_LISTS);
	if (!s)
		return -1;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW)
		cb(arg, (const char *)sqlite3_column_text(s, 0),
		   (const char *)sqlite3_column_text(s, 1));
	sqlite3_reset(s);
	return r == SQLITE_DONE ? 0 : -1;
}

/* --- rows from the farm database ---------------------------------------------- */

struct dev_facts {
	int found, admin_state, loop_cmd;
	int64_t loop_until;
	char model[256], os[256];
};

static void device_facts(struct inventory *inv, const char *user, const char *device_id,
			 struct dev_facts *f)
{
	memset(f, 0, sizeof(*f));
	sqlite3_stmt *s = q(inv, Q_DEVICE_FACTS);
	bind_s(s, 1, user);
	bind_s(s, 2, device_id);
	if (sqlite3_step(s) == SQLITE_ROW) {
		f->found = 1;
		f->admin_state = sqlite3_column_int(s, 0);
		col_text(s, 1, f->model, sizeof(f->model));
		col_text(s, 2, f->os, sizeof(f->os));
		f->loop_until = sqlite3_column_int64(s, 3);
		f->loop_cmd = sqlite3_column_int(s, 4);
	}
	sqlite3_reset(s);
}

int inv_merge_device(struct inventory *inv, const struct inv_device *d)
{
	struct dev_facts before, after;
	device_facts(inv, d->user, d->device_id, &before);
	sqlite3_stmt *s = q(inv, Q_MERGE_DEVICE);
	const char *t[] = {
	    d->user,	    d->device_id,     d->device_type, d->device_model,	  d->device_os,
	    d->user_agent,  d->friendly_name, d->imei,	      d->mobile_operator, d->phone_number,
	    d->os_language, d->xmswl,	      d->protocol,    d->last_cmd,	  d->os_key};
	for (int i = 0; i < 15; i++)
		bind_s(s, i + 1, t[i]);
	sqlite3_bind_int64(s, 16, d->first_sync);
	sqlite3_bind_int64(s, 17, d->last_attempt);
	sqlite3_bind_int64(s, 18, d->last_success);
	sqlite3_bind_int(s, 19, d->last_status);
	bind_s(s, 20, d->access_state);
	bind_s(s, 21, d->state_reason);
	bind_s(s, 22, d->rule);
	sqlite3_bind_int(s, 23, d->admin_state);
	bind_s(s, 24, d->os_family);
	sqlite3_bind_int64(s, 25, d->admin_at);
	bind_s(s, 26, d->last_node);
	sqlite3_bind_int64(s, 27, d->devinfo_at);
	sqlite3_bind_int64(s, 28, d->decided_at);
	sqlite3_bind_int64(s, 29, d->result_at);
	sqlite3_bind_int64(s, 30, d->loop_until);
	sqlite3_bind_int(s, 31, d->loop_cmd);
	sqlite3_bind_int64(s, 32, d->loop_at);
	if (step_done(inv, s, "merge_device") < 0)
		return -1;
	device_facts(inv, d->user, d->device_id, &after);
	return before.found != after.found || before.admin_state != after.admin_state ||
	       before.loop_until != after.loop_until || before.loop_cmd != after.loop_cmd ||
	       strcmp(before.model, after.model) || strcmp(before.os, after.os);
}

static int version_facts(struct inventory *inv, const char *os_key, int64_t *first, int *approved)
{
	sqlite3_stmt *s = q(inv, Q_VERSION_FACTS);
	bind_s(s, 1, os_key);
	int found = sqlite3_step(s) == SQLITE_ROW;
	*first = found ? sqlite3_column_int64(s, 0) : -1;
	*approved = found ? sqlite3_column_int(s, 1) : -1;
	sqlite3_reset(s);
	return found;
}

int inv_merge_version(struct inventory *inv, const struct inv_version *v)
{
	int64_t f0, f1;
	int a0, a1;
	version_facts(inv, v->os_key, &f0, &a0);
	sqlite3_stmt *s = q(inv, Q_MERGE_VERSION);
	bind_s(s, 1, v->os_key);
	bind_s(s, 2, v->family);
	sqlite3_bind_int64(s, 3, v->first_seen);
	sqlite3_bind_int(s, 4, v->approved);
	sqlite3_bind_int64(s, 5, v->approved_at);
	if (step_done(inv, s, "merge_version") < 0)
		return -1;
	version_facts(inv, v->os_key, &f1, &a1);
	return f0 != f1 || a0 != a1;
}

/* FNV-1a of what a replace would change, to tell whether it did. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 0x100000001b3ull;
	return h;
}

static void fp_rule_row(void *arg, int64_t id, const char *text)
{
	uint64_t *h = arg;
	*h = fnv(*h, &id, sizeof(id));
	*h = fnv(*h, text ? text : "", strlen(text ? text : "") + 1);
}

static void fp_list_row(void *arg, const char *list, const char *entry)
{
	uint64_t *h = arg;
	*h = fnv(*h, list, strlen(list) + 1);
	*h = fnv(*h, entry, strlen(entry) + 1);
}

int inv_rules_replace(struct inventory *inv, const struct inv_rule_row *rows, size_t n)
{
	uint64_t before = 0xcbf29ce484222325ull, after = before;
	if (inv_foreach_rule(inv, fp_rule_row, &before) < 0)
		return -1;
	if (step_done(inv, q(inv, Q_RULES_CLEAR), "rules_clear") < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *s = q(inv, Q_RULE_PUT);
		sqlite3_bind_int64(s, 1, rows[i].id);
		bind_s(s, 2, rows[i].text);
		sqlite3_bind_int64(s, 3, rows[i].created);
		if (step_done(inv, s, "rule_put") < 0)
			return -1;
	}
	if (inv_foreach_rule(inv, fp_rule_row, &after) < 0)
		return -1;
	return before != after;
}

int inv_lists_replace(struct inventory *inv, const struct inv_list_row *rows, size_t n)
{
	uint64_t before = 0xcbf29ce484222325ull, after = before;
	if (inv_foreach_list(inv, fp_list_row, &before) < 0)
		return -1;
	if (step_done(inv, q(inv, Q_LISTS_CLEAR), "lists_clear") < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (inv_list_add(inv, rows[i].list, rows[i].entry, rows[i].created) < 0)
			return -1;
	if (inv_foreach_list(inv, fp_list_row, &after) < 0)
		return -1;
	return before != after;
}

/* --- nodes, meta ------------------------------------------------------------------ */

int inv_node_put(struct inventory *inv, const struct inv_node *n)
{
	sqlite3_stmt *s = q(inv, Q_NODE_PUT);
	bind_s(s, 1, n->name);
	bind_s(s, 2, n->version);
	bind_s(s, 3, n->store);
	sqlite3_bind_int64(s, 4, n->config_gen);
	sqlite3_bind_int64(s, 5, n->policy_gen);
	sqlite3_bind_int64(s, 6, n->started_at);
	sqlite3_bind_int64(s, 7, n->heartbeat_at);
	sqlite3_bind_int64(s, 8, n->requests_total);
	sqlite3_bind_double(s, 9, n->requests_per_s);
	sqlite3_bind_int64(s, 10, n->journal);
	return step_done(inv, s, "node_put");
}

int inv_foreach_node(struct inventory *inv, void (*cb)(void *arg, const struct inv_node *n),
		     void *arg)
{
	sqlite3_stmt *s = q(inv, Q_NODES);
	if (!s)
		return -1;
	struct inv_node n;
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&n, 0, sizeof(n));
		col_text(s, 0, n.name, sizeof(n.name));
		col_text(s, 1, n.version, sizeof(n.version));
		col_text(s, 2, n.store, sizeof(n.store));
		n.config_gen = sqlite3_column_int64(s, 3);
		n.policy_gen = sqlite3_column_int64(s, 4);
		n.started_at = sqlite3_column_int64(s, 5);
		n.heartbeat_at = sqlite3_column_int64(s, 6);
		n.requests_total = sqlite3_column_int64(s, 7);
		n.requests_per_s = sqlite3_column_double(s, 8);
		n.journal = sqlite3_column_int64(s, 9);
		cb(arg, &n);
	}
	sqlite3_reset(s);
	return r == SQLITE_DONE ? 0 : -1;
}

int inv_meta_get(struct inventory *inv, const char *k, char *v, size_t vsz)
{
	sqlite3_stmt *s = q(inv, Q_META_GET);
	if (!s)
		return -1;
	bind_s(s, 1, k);
	int found = sqlite3_step(s) == SQLITE_ROW;
	if (found)
		col_text(s, 0, v, vsz);
	sqlite3_reset(s);
	return found;
}

int inv_meta_set(struct inventory *inv, const char *k, const char *v)
{
	sqlite3_stmt *s = q(inv, Q_META_SET);
	bind_s(s, 1, k);
	bind_s(s, 2, v);
	return step_done(inv, s, "meta_set");
}

struct inv_match {
	struct inv_filter f; /* borrowed strings */
	pcre2_code *re;
	pcre2_match_data *md;
};

struct inv_match *inv_match_new(const struct inv_filter *f, int *bad_regex)
{
	*bad_regex = 0;
	struct inv_match *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	if (f)
		m->f = *f;
	if (f && f->os_regex && f->os_regex[0]) {
		int ec;
		PCRE2_SIZE eo;
		m->re = pcre2_compile((PCRE2_SPTR)f->os_regex, PCRE2_ZERO_TERMINATED,
				      PCRE2_CASELESS, &ec, &eo, NULL);
		m->md = m->re ? pcre2_match_data_create_from_pattern(m->re, NULL) : NULL;
		if (!m->md) {
			*bad_regex = !m->re;
			inv_match_free(m);
			return NULL;
		}
	}
	return m;
}

void inv_match_free(struct inv_match *m)
{
	if (!m)
		return;
	pcre2_match_data_free(m->md);
	pcre2_code_free(m->re);
	free(m);
}

int inv_match(const struct inv_match *m, const struct inv_device *d)
{
	const struct inv_filter *f = &m->f;
	if (f->user && f->user[0] && strcasecmp(f->user, d->user))
		return 0;
	if (f->device_id && f->device_id[0] && strcasecmp(f->device_id, d->device_id))
		return 0;
	if (f->state && f->state[0] && strcasecmp(f->state, d->access_state))
		return 0;
	const char *os = d->device_os[0] ? d->device_os : d->os_key;
	if (f->os_glob && f->os_glob[0] && fnmatch(f->os_glob, os, FNM_CASEFOLD) != 0)
		return 0;
	if (m->re &&
	    pcre2_match(m->re, (PCRE2_SPTR)os, PCRE2_ZERO_TERMINATED, 0, 0, m->md, NULL) < 0)
		return 0;
	return 1;
}

int inv_foreach_device(struct inventory *inv, const struct inv_filter *f,
		       int (*cb)(void *arg, const struct inv_device *d), void *arg)
{
	int bad;
	struct inv_match *m = inv_match_new(f, &bad);
	if (!m)
		return bad ? -2 : -1;
	sqlite3_stmt *s = q(inv, Q_ALL_DEVICES);
	struct inv_device *d = malloc(sizeof(*d));
	int r, n = 0;
	while (d && (r = sqlite3_step(s)) == SQLITE_ROW) {
		read_device(s, d);
		if (inv_match(m, d)) {
			n++;
			if (cb(arg, d))
				break;
		}
	}
	sqlite3_reset(s);
	free(d);
	inv_match_free(m);
	return n;
}

int inv_foreach_version(struct inventory *inv, int (*cb)(void *arg, const struct inv_version *v),
			void *arg)
{
	sqlite3_stmt *s = q(inv, Q_ALL_VERSIONS);
	struct inv_version v;
	int r, n = 0;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		read_version(s, &v);
		n++;
		if (cb(arg, &v))
			break;
	}
	sqlite3_reset(s);
	return n;
}

int inv_count_by_family_state(struct inventory *inv,
			      void (*cb)(void *arg, const char *family, const char *state, long n),
			      void *arg)
{
	sqlite3_stmt *s = q(inv, Q_COUNT);
	int r;
	while ((r = sqlite3_step(s)) == SQLITE_ROW)
		cb(arg, (const char *)sqlite3_column_text(s, 0),
		   (const char *)sqlite3_column_text(s, 1), (long)sqlite3_column_int64(s, 2));
	sqlite3_reset(s);
	return r == SQLITE_DONE ? 0 : -1;
}

/* --- audit ---------------------------------------------------------------------- */

static void bind_audit(sqlite3_stmt *s, const struct inv_audit *a)
{
	sqlite3_bind_int64(s, 1, a->at);
	bind_s(s, 2, a->who);
	bind_s(s, 3, a->source);
	bind_s(s, 4, a->what);
	bind_s(s, 5, a->before);
	bind_s(s, 6, a->after);
	bind_s(s, 7, a->node);
	if (a->farm_id > 0)
		sqlite3_bind_int64(s, 8, a->farm_id);
	else
		sqlite3_bind_null(s, 8);
}

int64_t inv_audit_add(struct inventory *inv, const struct inv_audit *a)
{
	sqlite3_stmt *s = q(inv, Q_AUDIT_ADD);
	bind_audit(s, a);
	if (step_done(inv, s, "audit_add") < 0)
		return -1;
	return sqlite3_last_insert_rowid(inv->db);
}

int inv_audit_put(struct inventory *inv, const struct inv_audit *a)
{
	sqlite3_stmt *s = q(inv, Q_AUDIT_PUT);
	bind_audit(s, a);
	return step_changed(inv, s, "audit_put");
}

int inv_foreach_audit(struct inventory *inv, int64_t below_id, int limit,
		      int (*cb)(void *arg, const struct inv_audit *a), void *arg)
{
	sqlite3_stmt *s = q(inv, Q_AUDIT_LIST);
	sqlite3_bind_int64(s, 1, below_id > 0 ? below_id : INT64_MAX);
	sqlite3_bind_int(s, 2, limit);
	struct inv_audit *a = malloc(sizeof(*a));
	int r, n = 0;
	while (a && (r = sqlite3_step(s)) == SQLITE_ROW) {
		memset(a, 0, sizeof(*a));
		a->id = sqlite3_column_int64(s, 0);
		a->at = sqlite3_column_int64(s, 1);
		col_text(s, 2, a->who, sizeof(a->who));
		col_text(s, 3, a->source, sizeof(a->source));
		col_text(s, 4, a->what, sizeof(a->what));
		col_text(s, 5, a->before, sizeof(a->before));
		col_text(s, 6, a->after, sizeof(a->after));
		col_text(s, 7, a->node, sizeof(a->node));
		n++;
		if (cb(arg, a))
			break;
	}
	sqlite3_reset(s);
	free(a);
	return n;
}

/* --- paged device scans ------------------------------------------------------------ */

int inv_devices_page(struct inventory *inv, struct inv_cursor *cur, int limit,
		     const struct inv_filter *f, int (*cb)(void *arg, const struct inv_device *d),
		     void *arg)
{
	if (cur->done)
		return 0;
	int bad;
	struct inv_match *m = inv_match_new(f, &bad);
	if (!m)
		return bad ? -2 : -1;
	sqlite3_stmt *s = q(inv, Q_DEVICE_PAGE);
	bind_s(s, 1, cur->user);
	bind_s(s, 2, cur->device_id);
	sqlite3_bind_int(s, 3, limit);
	struct inv_device *d = malloc(sizeof(*d));
	int r = SQLITE_DONE, rows = 0, stop = 0;
	while (d && !stop && (r = sqlite3_step(s)) == SQLITE_ROW) {
		read_device(s, d);
		rows++;
		snprintf(cur->user, sizeof(cur->user), "%s", d->user);
		snprintf(cur->device_id, sizeof(cur->device_id), "%s", d->device_id);
		if (inv_match(m, d))
			stop = cb(arg, d) != 0;
	}
	sqlite3_reset(s);
	free(d);
	inv_match_free(m);
	if (stop || rows < limit)
		cur->done = 1;
	return rows;
}

int inv_find_device_id(struct inventory *inv, const char *device_id, int limit,
		       int (*cb)(void *arg, const struct inv_device *d), void *arg)
{
	sqlite3_stmt *s = q(inv, Q_BY_DEVICE_ID);
	bind_s(s, 1, device_id);
	sqlite3_bind_int(s, 2, limit);
	struct inv_device *d = malloc(sizeof(*d));
	int n = 0;
	while (d && sqlite3_step(s) == SQLITE_ROW) {
		read_device(s, d);
		n++;
		if (cb(arg, d))
			break;
	}
	sqlite3_reset(s);
	free(d);
	return n;
}
