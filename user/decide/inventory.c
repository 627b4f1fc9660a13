/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* inventory.c - see inventory.h. All SQL is prepared once. */
#include "inventory.h"
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
	Q_GET_DEVICE,
	Q_GET_VERSION,
	Q_RULES,
	Q_UPSERT_SEEN,
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
	Q_ALL_DEVICES,
	Q_ALL_VERSIONS,
	Q_COUNT,
	Q_AUDIT_ADD,
	Q_AUDIT_LIST,
	Q_DEVICE_PAGE,
	Q_BY_DEVICE_ID,
	Q__N
};

static const char *const schema =
    "CREATE TABLE IF NOT EXISTS devices ("
    " user TEXT NOT NULL COLLATE NOCASE, device_id TEXT NOT NULL COLLATE NOCASE,"
    " device_type TEXT DEFAULT '', device_model TEXT DEFAULT '', device_os TEXT DEFAULT '',"
    " os_key TEXT DEFAULT '', os_family TEXT DEFAULT '',"
    " user_agent TEXT DEFAULT '', friendly_name TEXT DEFAULT '', imei TEXT DEFAULT '',"
    " mobile_operator TEXT DEFAULT '', phone_number TEXT DEFAULT '', os_language TEXT DEFAULT '',"
    " xmswl TEXT DEFAULT '', protocol TEXT DEFAULT '', last_cmd TEXT DEFAULT '',"
    " first_sync INTEGER DEFAULT 0, last_attempt INTEGER DEFAULT 0, last_success INTEGER DEFAULT 0,"
    " last_status INTEGER DEFAULT 0, access_state TEXT DEFAULT '', state_reason TEXT DEFAULT '',"
    " rule TEXT DEFAULT '', admin_state INTEGER DEFAULT 0, admin_at INTEGER DEFAULT 0,"
    " PRIMARY KEY (user, device_id));"
    "CREATE TABLE IF NOT EXISTS os_versions ("
    " os_key TEXT PRIMARY KEY COLLATE NOCASE, family TEXT DEFAULT '', first_seen INTEGER NOT NULL,"
    " approved INTEGER DEFAULT 0, approved_at INTEGER DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS rules ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL, created INTEGER DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);"
    "INSERT OR IGNORE INTO meta VALUES ('schema', '1');"
    /* Who changed what, from easctl or the console. Append-only: the
     * triggers refuse any UPDATE or DELETE, whoever opens the file. */
    "CREATE TABLE IF NOT EXISTS audit ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, who TEXT NOT NULL,"
    " source TEXT DEFAULT '', what TEXT NOT NULL, before TEXT DEFAULT '',"
    " after TEXT DEFAULT '');"
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;"
    /* Admin commands name a device by DeviceId alone. */
    "CREATE INDEX IF NOT EXISTS devices_by_id ON devices (device_id);";

#define DEVICE_COLS                                                                                \
	"user, device_id, device_type, device_model, device_os, user_agent, friendly_name, imei,"  \
	" mobile_operator, phone_number, os_language, xmswl, protocol, last_cmd, os_key,"          \
	" first_sync, last_attempt, last_success, last_status, access_state, state_reason, rule,"  \
	" admin_state"

static const char *const sql[Q__N] = {
    [Q_GET_DEVICE] = "SELECT " DEVICE_COLS " FROM devices WHERE user = ?1 AND device_id = ?2",
    [Q_GET_VERSION] = "SELECT os_key, family, first_seen, approved, approved_at,"
		      " (SELECT count(*) FROM devices d WHERE d.os_key = v.os_key)"
		      " FROM os_versions v WHERE os_key = ?1",
    [Q_RULES] = "SELECT id, text FROM rules ORDER BY id",
    [Q_UPSERT_SEEN] =
	"INSERT INTO devices (user, device_id, device_type, user_agent, xmswl, protocol,"
	" last_cmd, first_sync, last_attempt, os_key, os_family)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10)"
	" ON CONFLICT (user, device_id) DO UPDATE SET device_type = CASE WHEN"
	" excluded.device_type != '' THEN excluded.device_type ELSE device_type END,"
	" user_agent = CASE WHEN excluded.user_agent != '' THEN excluded.user_agent"
	" ELSE user_agent END, xmswl = CASE WHEN excluded.xmswl != '' THEN excluded.xmswl"
	" ELSE xmswl END, protocol = CASE WHEN excluded.protocol != '' THEN"
	" excluded.protocol ELSE protocol END, last_cmd = excluded.last_cmd,"
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
	" user_agent = CASE WHEN ?10 != '' AND user_agent = '' THEN ?10 ELSE user_agent END"
	" WHERE user = ?1 AND device_id = ?2",
    [Q_SET_RESULT] = "UPDATE devices SET last_status = ?3,"
		     " last_success = CASE WHEN ?3 BETWEEN 200 AND 299 AND ?5"
		     " THEN max(last_success, ?4) ELSE last_success END"
		     " WHERE user = ?1 AND device_id = ?2",
    [Q_SET_DECISION] = "UPDATE devices SET access_state = ?3, state_reason = ?4, rule = ?5"
		       " WHERE user = ?1 AND device_id = ?2",
    /* The first authenticated request on a version starts its clock (rows
     * from older versions of the daemon may hold first_seen 0: listed, not
     * yet verified). */
    [Q_VERSION_VERIFIED] = "INSERT INTO os_versions (os_key, family, first_seen)"
			   " VALUES (?1, ?2, ?3) ON CONFLICT (os_key) DO UPDATE SET"
			   " first_seen = ?3 WHERE first_seen = 0",
    [Q_SET_ADMIN] = "UPDATE devices SET admin_state = ?3, admin_at = ?4"
		    " WHERE user = ?1 AND device_id = ?2",
    [Q_REMOVE] = "DELETE FROM devices WHERE user = ?1 AND device_id = ?2",
    [Q_APPROVE] = "INSERT INTO os_versions (os_key, family, first_seen, approved, approved_at)"
		  " VALUES (?1, '', ?3, ?2, ?3) ON CONFLICT (os_key) DO UPDATE SET"
		  " approved = ?2, approved_at = ?3",
    [Q_RULE_ADD] = "INSERT INTO rules (text, created) VALUES (?1, ?2)",
    [Q_RULE_DEL] = "DELETE FROM rules WHERE id = ?1",
    [Q_ALL_DEVICES] = "SELECT " DEVICE_COLS " FROM devices ORDER BY user, device_id",
    [Q_ALL_VERSIONS] = "SELECT os_key, family, first_seen, approved, approved_at,"
		       " (SELECT count(*) FROM devices d WHERE d.os_key = v.os_key)"
		       " FROM os_versions v ORDER BY family, first_seen",
    [Q_COUNT] = "SELECT os_family, access_state, count(*) FROM devices"
		" GROUP BY os_family, access_state",
    [Q_AUDIT_ADD] = "INSERT INTO audit (at, who, source, what, before, after)"
		    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* newest first, below an id (keyset paging) */
    [Q_AUDIT_LIST] = "SELECT id, at, who, source, what, before, after FROM audit"
		     " WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    [Q_DEVICE_PAGE] = "SELECT " DEVICE_COLS " FROM devices WHERE (user, device_id) > (?1, ?2)"
		      " ORDER BY user, device_id LIMIT ?3",
    [Q_BY_DEVICE_ID] = "SELECT " DEVICE_COLS " FROM devices WHERE device_id = ?1"
		       " ORDER BY user LIMIT ?2",
};

struct inventory {
	sqlite3 *db;
	sqlite3_stmt *st[Q__N];
	int readonly;
	int in_batch;
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
				 NULL, NULL, &e) != SQLITE_OK ||
		    sqlite3_exec(inv->db, schema, NULL, NULL, &e) != SQLITE_OK) {
			snprintf(err, errsz, "%s: %s", path, e ? e : sqlite3_errmsg(inv->db));
			sqlite3_free(e);
			goto fail;
		}
	}
	for (int i = 0; i < Q__N; i++) {
		if (readonly && i >= Q_UPSERT_SEEN && i != Q_ALL_DEVICES && i != Q_ALL_VERSIONS &&
		    i != Q_COUNT && i != Q_AUDIT_LIST && i != Q_DEVICE_PAGE && i != Q_BY_DEVICE_ID)
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
	if (step_done(inv, s, "set_admin") < 0)
		return -1;
	return sqlite3_changes(inv->db) > 0;
}

int inv_remove_device(struct inventory *inv, const char *user, const char *device_id)
{
	sqlite3_stmt *s = q(inv, Q_REMOVE);
	bind_s(s, 1, user);
	bind_s(s, 2, device_id);
	if (step_done(inv, s, "remove") < 0)
		return -1;
	return sqlite3_changes(inv->db) > 0;
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
	if (step_done(inv, s, "rule_remove") < 0)
		return -1;
	return sqlite3_changes(inv->db) > 0;
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

int64_t inv_audit_add(struct inventory *inv, const struct inv_audit *a)
{
	sqlite3_stmt *s = q(inv, Q_AUDIT_ADD);
	sqlite3_bind_int64(s, 1, a->at);
	bind_s(s, 2, a->who);
	bind_s(s, 3, a->source);
	bind_s(s, 4, a->what);
	bind_s(s, 5, a->before);
	bind_s(s, 6, a->after);
	if (step_done(inv, s, "audit_add") < 0)
		return -1;
	return sqlite3_last_insert_rowid(inv->db);
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
