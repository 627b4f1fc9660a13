/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * store_pg_sync.c - what the farm store says to the database and does with
 * the answers (store_pg.h for the connection).
 *
 *  setup    (each connect) schema version, migrations if allowed, LISTEN,
 *           the farm's id and steering secret, then a pull of everything
 *           changed since this node's last pull; then the node is "up".
 *  pull     devices: the rows not visible in the snapshot of the previous
 *           pull (pg_snapshot: exact, no matter in which order concurrent
 *           writers commit), streamed row by row (single-row mode) into the
 *           node's file by inv_merge_device; then the tombstones the same
 *           way. Small tables (OS versions, rules, lists, nodes) whole. Made
 *           when a NOTIFY names the table, after a gap as long as the last
 *           device pull took (at most 100 ms): a slow database spends at
 *           most half its time on a node's pulls, and gets no queue of them.
 *  push     the oldest journal entries (journal.h), as the rows are now in
 *           the node's file, to easgate_push() (store_pg_schema.c); the
 *           entries are deleted when it answers.
 *  admin    changes are made in the database (never only here): the reply
 *           waits for the commit, then the changed rows are merged here and
 *           a generation published. Without the database, changes are
 *           refused, and the node keeps the policy it has (fail-static).
 */
#include "inventory.h"
#include "journal.h"
#include "log.h"
#include "store_pg.h"
#include "store_pg_schema.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PUSH_BATCH	500  /* journal entries per push */
#define PULL_COMMIT	2000 /* rows merged per local transaction during a pull */
#define PULL_GAP_MAX_MS 100

/* The device columns, in inventory.h's order (inv_merge_device). */
#define PG_DEVICE_COLS                                                                             \
	"d.\"user\", d.device_id, d.device_type, d.device_model, d.device_os, d.user_agent,"       \
	" d.friendly_name, d.imei, d.mobile_operator, d.phone_number, d.os_language, d.xmswl,"     \
	" d.protocol, d.last_cmd, d.os_key, d.first_sync, d.last_attempt, d.last_success,"         \
	" d.last_status, d.access_state, d.state_reason, d.rule, d.admin_state, d.os_family,"      \
	" d.admin_at, d.last_node, d.devinfo_at, d.decided_at, d.result_at, d.loop_until,"         \
	" d.loop_cmd, d.loop_at"
#define PG_DEVICE_NCOLS 32
#define PG_KEY_MATCH                                                                               \
	"lower(d.\"user\" COLLATE \"C\") = lower($1 COLLATE \"C\") AND"                            \
	" lower(d.device_id COLLATE \"C\") = lower($2 COLLATE \"C\")"

static void row_device(const PGresult *r, int row, int c, struct inv_device *d)
{
	memset(d, 0, sizeof(*d));
#define S(f) snprintf(d->f, sizeof(d->f), "%s", pg_val(r, row, c++))
#define N(f) d->f = pg_ll(r, row, c++)
	S(user);
	S(device_id);
	S(device_type);
	S(device_model);
	S(device_os);
	S(user_agent);
	S(friendly_name);
	S(imei);
	S(mobile_operator);
	S(phone_number);
	S(os_language);
	S(xmswl);
	S(protocol);
	S(last_cmd);
	S(os_key);
	N(first_sync);
	N(last_attempt);
	N(last_success);
	d->last_status = (int)pg_ll(r, row, c++);
	S(access_state);
	S(state_reason);
	S(rule);
	d->admin_state = (int)pg_ll(r, row, c++);
	S(os_family);
	N(admin_at);
	S(last_node);
	N(devinfo_at);
	N(decided_at);
	N(result_at);
	N(loop_until);
	d->loop_cmd = (int)pg_ll(r, row, c++);
	N(loop_at);
#undef S
#undef N
}

/* A sync job failed in a way a retry on this connection will not fix: start
 * over (with backoff). An admin change reports its own errors instead. */
static int sync_failed(struct pgs *p, struct pg_job *j, const char *err, int conn_lost)
{
	if (!err)
		return 0;
	if (!conn_lost) {
		char why[320];
		snprintf(why, sizeof(why), "%s: %s", j->name, err);
		pg_fail(p, why);
	}
	return 1;
}

static void changed(struct pgs *p)
{
	struct store *s = p->s;
	if (s->hooks.changed)
		s->hooks.changed(s->hooks.arg);
	else
		store_batch_commit(s);
}

/* --- pulls ---------------------------------------------------------------------------- */

/* An admin change whose table is pulled before its answer (rules, lists). */
static void deliver(struct pg_job *j, int rc, int64_t id, const char *msg)
{
	if (!j->cb)
		return;
	struct store_result r = {.rc = rc, .id = id};
	snprintf(r.msg, sizeof(r.msg), "%s", msg ? msg : "");
	j->cb(j->cb_arg, &r);
	j->cb = NULL;
}

static void pull_timing(struct pgs *p, struct pg_job *j)
{
	uint64_t now = loop_now_ms(p->s->loop);
	p->last_pull_ms = now - j->t0_ms;
	p->last_pull_end_ms = now;
	p->pull_min_ms = p->last_pull_ms;
	if (p->pull_min_ms > PULL_GAP_MAX_MS)
		p->pull_min_ms = PULL_GAP_MAX_MS;
	p->pulls++;
}

static void tombstones_result(struct pgs *p, struct pg_job *j, PGresult *r)
{
	struct store *s = p->s;
	for (int i = 0; i < PQntuples(r); i++) {
		store_local_begin(s);
		if (inv_remove_device(s->inv, pg_val(r, i, 0), pg_val(r, i, 1)) > 0)
			j->changed = 1;
		j->rows++;
	}
}

static void tombstones_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss,
			    int lost)
{
	if (sync_failed(p, j, err, lost))
		return;
	struct store *s = p->s;
	/* Both halves applied: the next pull starts from this snapshot. */
	snprintf(p->horizon, sizeof(p->horizon), "%s", j->text);
	store_local_begin(s);
	inv_meta_set(s->inv, "pg_horizon", p->horizon);
	p->pulled_rows += (uint64_t)j->rows;
	pull_timing(p, j);
	if (j->changed || j->i1)
		changed(p);
	else
		store_batch_commit(s);
}

static void devices_result(struct pgs *p, struct pg_job *j, PGresult *r)
{
	struct store *s = p->s;
	struct inv_device d;
	for (int i = 0; i < PQntuples(r); i++) {
		snprintf(j->text, sizeof(j->text), "%s", pg_val(r, i, 0));
		if (PQgetisnull(r, i, 1))
			continue;
		row_device(r, i, 1, &d);
		store_local_begin(s);
		if (inv_merge_device(s->inv, &d) > 0)
			j->changed = 1;
		if (++j->rows % PULL_COMMIT == 0)
			store_batch_commit(s);
	}
}

static const char *horizon_sql(const char *alias)
{
	static char buf[2][256];
	char *b = buf[alias[0] == 't'];
	snprintf(b, sizeof(buf[0]),
		 "($1::text IS NULL OR (%s.xid >= pg_snapshot_xmin($1::pg_snapshot)"
		 " AND NOT pg_visible_in_snapshot(%s.xid, $1::pg_snapshot)))",
		 alias, alias);
	return b;
}

static void devices_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss, int lost)
{
	if (sync_failed(p, j, err, lost))
		return;
	p->pulled_rows += (uint64_t)j->rows;
	/* The tombstones seen from the same previous snapshot, before anything
	 * else (the horizon moves when both are in). */
	char sql[1024];
	snprintf(sql, sizeof(sql),
		 "SELECT t.\"user\", t.device_id FROM device_tombstones t WHERE %s"
		 " AND NOT EXISTS (SELECT 1 FROM devices d WHERE"
		 " lower(d.\"user\" COLLATE \"C\") = lower(t.\"user\" COLLATE \"C\") AND"
		 " lower(d.device_id COLLATE \"C\") = lower(t.device_id COLLATE \"C\"))",
		 horizon_sql("t"));
	struct pg_job *t = pg_job_new("pull tombstones", sql);
	if (!t)
		return;
	pg_job_param(t, p->horizon[0] ? p->horizon : NULL);
	t->setup = j->setup;
	t->result = tombstones_result;
	t->done = tombstones_done;
	t->i1 = j->changed;
	t->t0_ms = j->t0_ms;
	snprintf(t->text, sizeof(t->text), "%s", j->text);
	pg_submit(p, t, 1);
}

void pg_pull_devices_sql(char *sql, size_t n)
{
	snprintf(sql, n,
		 "SELECT pg_current_snapshot()::text, " PG_DEVICE_COLS
		 " FROM (SELECT 1) one LEFT JOIN devices d ON %s",
		 horizon_sql("d"));
}

static struct pg_job *pull_devices(struct pgs *p)
{
	char sql[2048];
	pg_pull_devices_sql(sql, sizeof(sql));
	struct pg_job *j = pg_job_new("pull devices", sql);
	if (!j)
		return NULL;
	pg_job_param(j, p->horizon[0] ? p->horizon : NULL);
	j->single_row = 1;
	j->result = devices_result;
	j->done = devices_done;
	p->want &= ~PG_WANT_DEVICES;
	return j;
}

static void versions_result(struct pgs *p, struct pg_job *j, PGresult *r)
{
	struct store *s = p->s;
	for (int i = 0; i < PQntuples(r); i++) {
		struct inv_version v = {0};
		snprintf(v.os_key, sizeof(v.os_key), "%s", pg_val(r, i, 0));
		snprintf(v.family, sizeof(v.family), "%s", pg_val(r, i, 1));
		v.first_seen = pg_ll(r, i, 2);
		v.approved = (int)pg_ll(r, i, 3);
		v.approved_at = pg_ll(r, i, 4);
		store_local_begin(s);
		if (inv_merge_version(s->inv, &v) > 0)
			j->changed = 1;
		j->rows++;
	}
}

/* Rules and list entries are replaced whole: keep the rows until done. */
struct table_rows {
	size_t n, cap;
	struct row3 {
		char *a, *b;
		int64_t id, created;
	} * v;
};

static void table_rows_free(struct table_rows *t)
{
	for (size_t i = 0; t && i < t->n; i++) {
		free(t->v[i].a);
		free(t->v[i].b);
	}
	if (t)
		free(t->v);
}

static void collect_result(struct pgs *p, struct pg_job *j, PGresult *r)
{
	struct table_rows *t = j->data;
	for (int i = 0; t && i < PQntuples(r); i++) {
		if (t->n == t->cap) {
			size_t nc = t->cap ? 2 * t->cap : 64;
			void *nv = realloc(t->v, nc * sizeof(*t->v));
			if (!nv) {
				snprintf(j->err, sizeof(j->err), "out of memory");
				return;
			}
			t->v = nv;
			t->cap = nc;
		}
		struct row3 *x = &t->v[t->n++];
		/* rules: id, text, created; lists: list, entry, created */
		x->id = pg_ll(r, i, 0);
		x->a = strdup(pg_val(r, i, 0));
		x->b = strdup(pg_val(r, i, 1));
		x->created = pg_ll(r, i, 2);
		j->rows++;
	}
}

static void table_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss, int lost)
{
	struct store *s = p->s;
	struct table_rows *t = j->data;
	if (err) {
		deliver(j, -1, 0, lost ? "the farm database went away before answering" : err);
		table_rows_free(t);
		sync_failed(p, j, err, lost);
		return;
	}
	int ch = j->changed;
	store_local_begin(s);
	if (!strcmp(j->name, "pull rules")) {
		struct inv_rule_row *rows = calloc(t->n ? t->n : 1, sizeof(*rows));
		for (size_t i = 0; rows && i < t->n; i++)
			rows[i] = (struct inv_rule_row){
			    .id = t->v[i].id, .text = t->v[i].b, .created = t->v[i].created};
		if (rows && inv_rules_replace(s->inv, rows, t->n) > 0)
			ch = 1;
		free(rows);
	} else if (!strcmp(j->name, "pull lists")) {
		struct inv_list_row *rows = calloc(t->n ? t->n : 1, sizeof(*rows));
		for (size_t i = 0; rows && i < t->n; i++)
			rows[i] = (struct inv_list_row){
			    .list = t->v[i].a, .entry = t->v[i].b, .created = t->v[i].created};
		if (rows && inv_lists_replace(s->inv, rows, t->n) > 0)
			ch = 1;
		free(rows);
	}
	table_rows_free(t);
	p->pulled_rows += (uint64_t)j->rows;
	p->pulls++;
	if (ch)
		changed(p);
	else
		store_batch_commit(s);
	deliver(j, (int)j->i1, j->i2, NULL);
}

static void versions_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss,
			  int lost)
{
	if (sync_failed(p, j, err, lost))
		return;
	p->pulled_rows += (uint64_t)j->rows;
	p->pulls++;
	if (j->changed)
		changed(p);
	else
		store_batch_commit(p->s);
}

static void nodes_result(struct pgs *p, struct pg_job *j, PGresult *r)
{
	struct store *s = p->s;
	for (int i = 0; i < PQntuples(r); i++) {
		struct inv_node n = {0};
		snprintf(n.name, sizeof(n.name), "%s", pg_val(r, i, 0));
		snprintf(n.version, sizeof(n.version), "%s", pg_val(r, i, 1));
		snprintf(n.store, sizeof(n.store), "%s", pg_val(r, i, 2));
		n.config_gen = pg_ll(r, i, 3);
		n.policy_gen = pg_ll(r, i, 4);
		n.started_at = pg_ll(r, i, 5);
		n.heartbeat_at = pg_ll(r, i, 6);
		n.requests_total = pg_ll(r, i, 7);
		n.requests_per_s = strtod(pg_val(r, i, 8), NULL);
		n.journal = pg_ll(r, i, 9);
		store_local_begin(s);
		inv_node_put(s->inv, &n);
		j->rows++;
	}
}

static void plain_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss, int lost)
{
	if (sync_failed(p, j, err, lost))
		return;
	p->pulled_rows += (uint64_t)j->rows;
	p->pulls++;
}

/* The farm's steering secret: remembered in the snapshot, handed to the
 * master (which steers with it from now on). */
static void apply_secret(struct pgs *p, const char *hex)
{
	struct store *s = p->s;
	char old[80] = "";
	inv_meta_get(s->inv, "farm_steering_secret", old, sizeof(old));
	if (strcmp(old, hex)) {
		store_local_begin(s);
		inv_meta_set(s->inv, "farm_steering_secret", hex);
		store_batch_commit(s);
	}
	if (s->hooks.secret)
		s->hooks.secret(s->hooks.arg, hex);
}

static void secret_result(struct pgs *p, struct pg_job *j, PGresult *r)
{
	if (PQntuples(r) >= 1 && !PQgetisnull(r, 0, 0))
		apply_secret(p, pg_val(r, 0, 0));
}

static struct pg_job *pull_table(struct pgs *p, unsigned which)
{
	struct pg_job *j = NULL;
	switch (which) {
	case PG_WANT_VERSIONS:
		j = pg_job_new("pull versions",
			       "SELECT os_key, family, first_seen, approved, approved_at FROM "
			       "os_versions");
		if (j) {
			j->result = versions_result;
			j->done = versions_done;
		}
		break;
	case PG_WANT_RULES:
	case PG_WANT_LISTS:
		j = pg_job_new(which == PG_WANT_RULES ? "pull rules" : "pull lists",
			       which == PG_WANT_RULES
				   ? "SELECT id, text, created FROM rules ORDER BY id"
				   : "SELECT list, entry, created FROM device_lists ORDER BY list, "
				     "entry");
		if (j) {
			j->data = calloc(1, sizeof(struct table_rows));
			j->result = collect_result;
			j->done = table_done;
			j->i1 = 1; /* rc delivered to an admin change waiting on it */
		}
		break;
	case PG_WANT_NODES:
		j = pg_job_new("pull nodes",
			       "SELECT name, version, store, config_gen, policy_gen, started_at,"
			       " heartbeat_at, requests_total, requests_per_s, journal FROM nodes");
		if (j) {
			j->result = nodes_result;
			j->done = plain_done;
		}
		break;
	case PG_WANT_META:
		j = pg_job_new("pull secret", "SELECT v FROM meta WHERE k = 'steering_secret'");
		if (j) {
			j->result = secret_result;
			j->done = plain_done;
		}
		break;
	}
	if (j)
		p->want &= ~which;
	return j;
}

void pg_sync_notified(struct pgs *p, const char *table)
{
	static const struct {
		const char *table;
		unsigned want;
	} map[] = {{"devices", PG_WANT_DEVICES},
		   {"device_tombstones", PG_WANT_DEVICES},
		   {"os_versions", PG_WANT_VERSIONS},
		   {"rules", PG_WANT_RULES},
		   {"device_lists", PG_WANT_LISTS},
		   {"nodes", PG_WANT_NODES},
		   {"meta", PG_WANT_META},
		   {"audit", PG_WANT_AUDIT}};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(map[i].table, table))
			p->want |= map[i].want;
}

/* --- the audit trail ------------------------------------------------------------------ */

/*
 * The farm's audit rows not visible in the snapshot of the previous audit
 * pull (the devices' method: exact whatever order writers commit in),
 * oldest first, into the node's file (inv_audit_put: a row pulled twice is
 * one row). An admin change that wrote a line waits for this pull before it
 * answers (cb), so `easctl audit` on the node that made it shows it.
 */
static void audit_result(struct pgs *p, struct pg_job *j, PGresult *r)
{
	struct store *s = p->s;
	struct inv_audit *a = j->data;
	for (int i = 0; a && i < PQntuples(r); i++) {
		snprintf(j->text, sizeof(j->text), "%s", pg_val(r, i, 0));
		if (PQgetisnull(r, i, 1))
			continue;
		memset(a, 0, sizeof(*a));
		a->farm_id = pg_ll(r, i, 1);
		a->at = pg_ll(r, i, 2);
		snprintf(a->node, sizeof(a->node), "%s", pg_val(r, i, 3));
		snprintf(a->who, sizeof(a->who), "%s", pg_val(r, i, 4));
		snprintf(a->source, sizeof(a->source), "%s", pg_val(r, i, 5));
		snprintf(a->what, sizeof(a->what), "%s", pg_val(r, i, 6));
		snprintf(a->before, sizeof(a->before), "%s", pg_val(r, i, 7));
		snprintf(a->after, sizeof(a->after), "%s", pg_val(r, i, 8));
		store_local_begin(s);
		inv_audit_put(s->inv, a);
		if (++j->rows % PULL_COMMIT == 0)
			store_batch_commit(s);
	}
}

static void audit_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss, int lost)
{
	struct store *s = p->s;
	if (err) {
		/* The change itself is committed: say so, the line comes with
		 * the next pull. */
		deliver(j, (int)j->i1, j->i2, NULL);
		sync_failed(p, j, err, lost);
		return;
	}
	if (j->text[0]) {
		snprintf(p->audit_horizon, sizeof(p->audit_horizon), "%s", j->text);
		store_local_begin(s);
		inv_meta_set(s->inv, "pg_audit_horizon", p->audit_horizon);
	}
	store_batch_commit(s);
	p->pulled_rows += (uint64_t)j->rows;
	p->pulls++;
	deliver(j, (int)j->i1, j->i2, NULL);
}

static struct pg_job *pull_audit(struct pgs *p)
{
	struct pg_job *j = pg_job_new(
	    "pull audit",
	    "SELECT pg_current_snapshot()::text, a.id, a.at, a.node, a.who, a.source, a.what,"
	    " a.before, a.after FROM (SELECT 1) one LEFT JOIN audit a ON ($1::text IS NULL OR"
	    " (a.xid >= pg_snapshot_xmin($1::pg_snapshot) AND"
	    " NOT pg_visible_in_snapshot(a.xid, $1::pg_snapshot))) ORDER BY a.id");
	if (!j)
		return NULL;
	j->data = malloc(sizeof(struct inv_audit));
	if (!j->data) {
		pg_job_free(j);
		return NULL;
	}
	pg_job_param(j, p->audit_horizon[0] ? p->audit_horizon : NULL);
	j->single_row = 1;
	j->result = audit_result;
	j->done = audit_done;
	p->want &= ~PG_WANT_AUDIT;
	return j;
}

/* --- push -------------------------------------------------------------------------- */

/* A JSON string of s: valid UTF-8 copied, anything else (a phone's Latin-1
 * User-Agent) as U+FFFD, so one odd byte cannot block the journal. */
static void json_text(struct sbuf *o, const char *s)
{
	const unsigned char *u = (const unsigned char *)(s ? s : "");
	sbuf_put(o, "\"", 1);
	while (*u) {
		unsigned c = *u;
		if (c == '"' || c == '\\') {
			sbuf_printf(o, "\\%c", c);
			u++;
		} else if (c < 0x20) {
			sbuf_printf(o, "\\u%04x", c);
			u++;
		} else if (c < 0x80) {
			sbuf_put(o, (const char *)u, 1);
			u++;
		} else {
			int n = c >= 0xf0 && c <= 0xf4	? 4
				: c >= 0xe0		? 3
				: c >= 0xc2 && c < 0xe0 ? 2
							: 0;
			int ok = n > 0;
			for (int i = 1; ok && i < n; i++)
				ok = (u[i] & 0xc0) == 0x80;
			/* no overlongs, surrogates or code points past U+10FFFF */
			if (ok && n == 3)
				ok = !(c == 0xe0 && u[1] < 0xa0) && !(c == 0xed && u[1] >= 0xa0);
			if (ok && n == 4)
				ok = !(c == 0xf0 && u[1] < 0x90) && !(c == 0xf4 && u[1] >= 0x90);
			if (ok) {
				sbuf_put(o, (const char *)u, (size_t)n);
				u += n;
			} else {
				sbuf_put(o, "\xef\xbf\xbd", 3);
				u++;
			}
		}
	}
	sbuf_put(o, "\"", 1);
}

static void json_key(struct sbuf *o, const char *k, const char *v)
{
	sbuf_printf(o, ",\"%s\":", k);
	json_text(o, v);
}

void pg_json_device(struct sbuf *o, const struct inv_device *d, int64_t seq)
{
	sbuf_printf(o, "{\"kind\":\"d\",\"seq\":%lld", (long long)seq);
	json_key(o, "user", d->user);
	json_key(o, "device_id", d->device_id);
	json_key(o, "device_type", d->device_type);
	json_key(o, "device_model", d->device_model);
	json_key(o, "device_os", d->device_os);
	json_key(o, "user_agent", d->user_agent);
	json_key(o, "friendly_name", d->friendly_name);
	json_key(o, "imei", d->imei);
	json_key(o, "mobile_operator", d->mobile_operator);
	json_key(o, "phone_number", d->phone_number);
	json_key(o, "os_language", d->os_language);
	json_key(o, "xmswl", d->xmswl);
	json_key(o, "protocol", d->protocol);
	json_key(o, "last_cmd", d->last_cmd);
	json_key(o, "os_key", d->os_key);
	json_key(o, "access_state", d->access_state);
	json_key(o, "state_reason", d->state_reason);
	json_key(o, "rule", d->rule);
	json_key(o, "os_family", d->os_family);
	json_key(o, "last_node", d->last_node);
	sbuf_printf(o,
		    ",\"first_sync\":%lld,\"last_attempt\":%lld,\"last_success\":%lld,"
		    "\"last_status\":%d,\"admin_state\":%d,\"admin_at\":%lld,"
		    "\"devinfo_at\":%lld,\"decided_at\":%lld,\"result_at\":%lld,"
		    "\"loop_until\":%lld,\"loop_cmd\":%d,\"loop_at\":%lld}",
		    (long long)d->first_sync, (long long)d->last_attempt,
		    (long long)d->last_success, d->last_status, d->admin_state,
		    (long long)d->admin_at, (long long)d->devinfo_at, (long long)d->decided_at,
		    (long long)d->result_at, (long long)d->loop_until, d->loop_cmd,
		    (long long)d->loop_at);
}

struct push_build {
	struct pgs *p;
	struct sbuf json;
	int rows;
	int64_t max_seq;
	struct inv_device d;
};

static int push_entry(void *arg, int64_t seq, char kind, const char *k1, const char *k2)
{
	struct push_build *b = arg;
	struct store *s = b->p->s;
	b->max_seq = seq;
	struct sbuf *o = &b->json;
	if (kind == JOURNAL_DEVICE) {
		struct inv_device *d = &b->d;
		if (inv_get_device(s->inv, k1, k2, d) != 1)
			return 0; /* a claim that never became a device, or removed */
		if (b->rows)
			sbuf_put(o, ",", 1);
		pg_json_device(o, d, seq);
	} else if (kind == JOURNAL_VERSION) {
		struct inv_version v;
		if (inv_get_version(s->inv, k1, &v) != 1 || !v.first_seen)
			return 0;
		sbuf_printf(o, "%s{\"kind\":\"v\",\"seq\":%lld", b->rows ? "," : "",
			    (long long)seq);
		json_key(o, "os_key", v.os_key);
		json_key(o, "family", v.family);
		sbuf_printf(o, ",\"first_seen\":%lld}", (long long)v.first_seen);
	} else {
		return 0;
	}
	b->rows++;
	return 0;
}

static void push_result(struct pgs *p, struct pg_job *j, PGresult *r)
{
	if (PQntuples(r) >= 1) {
		j->i2 = pg_ll(r, 0, 1); /* duplicates */
		j->changed = 1;		/* answered */
	}
}

static void push_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss, int lost)
{
	struct store *s = p->s;
	p->push_inflight = 0;
	if (lost)
		return; /* the entries wait; the database skips what it applied */
	if (err && strncmp(ss, "22", 2)) {
		p->push_errors++;
		sync_failed(p, j, err, 0);
		return;
	}
	if (err) {
		/* Data the database refuses (class 22): retrying cannot help and
		 * must not block the rest of the journal. */
		p->push_errors++;
		log_err("event=store_push_refused rows=%d error=\"%s\" note=\"these rows are "
			"dropped from the journal; the next change to them is sent again\"",
			j->rows, err);
	}
	store_local_begin(s);
	journal_ack(s->journal, j->i1);
	store_batch_commit(s);
	p->pushes++;
	p->pushed_rows += (uint64_t)j->rows;
	p->push_duplicates += (uint64_t)j->i2;
	p->last_push_ms = loop_now_ms(s->loop) - j->t0_ms;
	struct journal_stats js;
	journal_stats_read(s->journal, &js);
	if (!js.entries && js.overflow_since)
		journal_refill(s->journal, time(NULL)); /* journal_full in journal.h */
}

static struct pg_job *push_job(struct pgs *p)
{
	struct store *s = p->s;
	struct push_build b = {.p = p};
	sbuf_put(&b.json, "[", 1);
	store_local_begin(s); /* reads see this node's uncommitted events too */
	if (journal_peek(s->journal, PUSH_BATCH, push_entry, &b) <= 0) {
		sbuf_free(&b.json);
		return NULL;
	}
	sbuf_put(&b.json, "]", 1);
	if (!b.rows) {
		/* Only entries for rows that are gone: nothing to send. */
		journal_ack(s->journal, b.max_seq);
		sbuf_free(&b.json);
		return NULL;
	}
	struct pg_job *j = b.json.oom ? NULL
				      : pg_job_new("push", "SELECT applied, duplicates FROM "
							   "easgate_push($1, $2, $3::jsonb)");
	if (j) {
		pg_job_param(j, s->node);
		pg_job_param(j, journal_id(s->journal));
		pg_job_param(j, b.json.p);
		j->result = push_result;
		j->done = push_done;
		j->i1 = b.max_seq;
		j->rows = b.rows;
		journal_inflight(s->journal, b.max_seq);
		p->push_inflight = 1;
	}
	sbuf_free(&b.json);
	return j;
}

/* --- heartbeat ------------------------------------------------------------------------ */

static struct pg_job *heartbeat_job(struct pgs *p)
{
	const struct inv_node *n = &p->s->self;
	struct pg_job *j = pg_job_new(
	    "heartbeat",
	    "INSERT INTO nodes (name, version, store, config_gen, policy_gen, started_at,"
	    " heartbeat_at, requests_total, requests_per_s, journal) VALUES ($1, $2, $3,"
	    " $4::bigint, $5::bigint, $6::bigint, extract(epoch FROM now())::bigint, $7::bigint,"
	    " $8::double precision, $9::bigint) ON CONFLICT (name) DO UPDATE SET"
	    " version = excluded.version, store = excluded.store,"
	    " config_gen = excluded.config_gen, policy_gen = excluded.policy_gen,"
	    " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,"
	    " requests_total = excluded.requests_total,"
	    " requests_per_s = excluded.requests_per_s, journal = excluded.journal");
	if (!j)
		return NULL;
	pg_job_param(j, n->name);
	pg_job_param(j, n->version);
	pg_job_param(j, n->store);
	pg_job_paramf(j, "%lld", (long long)n->config_gen);
	pg_job_paramf(j, "%lld", (long long)n->policy_gen);
	pg_job_paramf(j, "%lld", (long long)n->started_at);
	pg_job_paramf(j, "%lld", (long long)n->requests_total);
	pg_job_paramf(j, "%.3f", n->requests_per_s);
	pg_job_paramf(j, "%lld", (long long)n->journal);
	j->done = plain_done;
	p->hb_due = 0;
	return j;
}

struct pg_job *pg_sync_next(struct pgs *p)
{
	struct store *s = p->s;
	uint64_t now = loop_now_ms(s->loop);
	if (p->want & PG_WANT_DEVICES) {
		uint64_t gap = now - p->last_pull_end_ms;
		if (!p->last_pull_end_ms || gap >= p->pull_min_ms)
			return pull_devices(p);
		loop_timer_set(s->loop, &p->kick, p->pull_min_ms - gap);
	}
	static const unsigned tables[] = {PG_WANT_RULES, PG_WANT_LISTS, PG_WANT_VERSIONS,
					  PG_WANT_META, PG_WANT_NODES};
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
		if (p->want & tables[i])
			return pull_table(p, tables[i]);
	if (p->want & PG_WANT_AUDIT)
		return pull_audit(p);
	if (p->hb_due)
		return heartbeat_job(p);
	if (!p->push_inflight) {
		struct journal_stats js;
		journal_stats_read(s->journal, &js);
		if (js.entries)
			return push_job(p);
		if (js.overflow_since && journal_refill(s->journal, time(NULL)) > 0)
			return push_job(p);
	}
	return NULL;
}

/* --- setup ------------------------------------------------------------------------------- */

static void setup_step(struct pgs *p, int step);

static void submit_setup(struct pgs *p, struct pg_job *j)
{
	if (!j) {
		pg_fail(p, "out of memory");
		return;
	}
	j->setup = 1;
	pg_submit(p, j, 1);
}

/* This node's steering secret as its file holds it (offered to a farm that
 * has none yet). */
static int local_secret(struct store *s, char *hex, size_t n)
{
	char path[PATH_MAX + 32];
	if (s->cfg->steering_secret_file[0])
		snprintf(path, sizeof(path), "%s", s->cfg->steering_secret_file);
	else
		snprintf(path, sizeof(path), "%s/steering.key", s->cfg->state_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, hex, n - 1);
	close(fd);
	if (r <= 0)
		return -1;
	hex[r] = 0;
	hex[strcspn(hex, "\r\n")] = 0;
	return strlen(hex) == 32 ? 0 : -1;
}

static void version_result(struct pgs *p, struct pg_job *j, PGresult *r)
{
	if (PQntuples(r) >= 1)
		j->i1 = pg_ll(r, 0, 0);
}

static void migrate_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss,
			 int lost);

static struct pg_job *migrate_job(struct pgs *p, int from)
{
	struct sbuf sql = {0};
	if (store_pg_migration_script(from, 0, &sql) <= 0 || sql.oom) {
		sbuf_free(&sql);
		return NULL;
	}
	struct pg_job *j = pg_job_new("migrate", sql.p);
	sbuf_free(&sql);
	if (j) {
		j->done = migrate_done;
		j->i1 = from;
	}
	return j;
}

static void version_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss, int lost)
{
	if (lost)
		return;
	if (err && strcmp(ss, STORE_PG_NO_TABLE)) {
		pg_fail(p, err);
		return;
	}
	p->db_version = err ? 0 : (int)j->i1;
	int latest = store_pg_schema_latest();
	if (p->db_version >= latest) {
		if (p->db_version > latest)
			log_warn("event=store_schema_newer database=%d binary=%d note=\"a newer "
				 "easgate migrated it; migrations only add, carrying on\"",
				 p->db_version, latest);
		setup_step(p, 2);
		return;
	}
	if (!p->s->cfg->pg.auto_migrate) {
		p->state = PG_BEHIND;
		snprintf(p->last_error, sizeof(p->last_error),
			 "database schema %d, this node needs %d: run easctl db migrate",
			 p->db_version, latest);
		log_warn("event=store_schema_behind database=%d binary=%d note=\"run easctl db "
			 "migrate (postgresql.auto_migrate is off)\"",
			 p->db_version, latest);
		return;
	}
	submit_setup(p, migrate_job(p, p->db_version));
}

static void migrate_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss, int lost)
{
	if (j->cb) {
		struct store_result r = {.rc = err ? -1 : 1};
		if (err)
			snprintf(r.msg, sizeof(r.msg), "migration failed: %s", err);
		else
			snprintf(r.msg, sizeof(r.msg), "migrated the database from schema %d to %d",
				 (int)j->i1, store_pg_schema_latest());
		j->cb(j->cb_arg, &r);
		j->cb = NULL;
	}
	if (lost)
		return;
	if (err) {
		log_warn("event=store_migrate_failed from=%d error=\"%s\"", (int)j->i1, err);
		if (strstr(err, "moved on")) {
			/* Another node migrated it meanwhile: look again. */
			setup_step(p, 0);
			return;
		}
		/* Not retried by itself (it would fail the same way): easctl db
		 * migrate, or the next connection, try again. */
		p->state = PG_BEHIND;
		snprintf(p->last_error, sizeof(p->last_error), "migration failed: %s", err);
		return;
	}
	log_info("event=store_migrated from=%d to=%d", (int)j->i1, store_pg_schema_latest());
	p->db_version = store_pg_schema_latest();
	if (p->state == PG_BEHIND)
		p->state = PG_SETUP;
	if (p->state == PG_SETUP)
		setup_step(p, 2);
}

static void identity_result(struct pgs *p, struct pg_job *j, PGresult *r)
{
	struct store *s = p->s;
	for (int i = 0; i < PQntuples(r); i++) {
		const char *k = pg_val(r, i, 0), *v = pg_val(r, i, 1);
		if (!strcmp(k, "steering_secret")) {
			j->i1 = 1;
			apply_secret(p, v);
		} else if (!strcmp(k, "farm_id") && strcmp(p->farm_id, v)) {
			/* New to this farm (or to this database): everything this
			 * node has goes in, and everything the farm has comes. */
			log_info("event=store_join farm=%s previous=%s note=\"this node's "
				 "inventory is merged into the farm's\"",
				 v, p->farm_id[0] ? p->farm_id : "-");
			store_local_begin(s);
			journal_mark_all(s->journal, time(NULL));
			store_batch_commit(s);
			p->horizon[0] = 0;
			p->audit_horizon[0] = 0;
			snprintf(p->farm_id, sizeof(p->farm_id), "%s", v);
		}
	}
	p->want &= ~PG_WANT_META;
}

static void identity_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss,
			  int lost)
{
	if (sync_failed(p, j, err, lost))
		return;
	setup_step(p, j->i1 ? 4 : 3);
}

static void offer_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss, int lost)
{
	if (sync_failed(p, j, err, lost))
		return;
	setup_step(p, 4);
}

static void synced_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss, int lost)
{
	if (sync_failed(p, j, err, lost))
		return;
	struct store *s = p->s;
	store_local_begin(s);
	inv_meta_set(s->inv, "pg_farm_id", p->farm_id);
	store_batch_commit(s);
	p->synced = 1;
	store_set_ready(s);
	pg_ready(p);
}

static void setup_step(struct pgs *p, int step)
{
	struct pg_job *j;
	char hex[80];
	switch (step) {
	case 0: /* the schema version */
		j = pg_job_new("schema version", store_pg_version_query());
		if (j) {
			j->result = version_result;
			j->done = version_done;
		}
		submit_setup(p, j);
		return;
	case 2: /* listen, then who the farm is */
		j = pg_job_new("listen", "LISTEN easgate");
		if (j)
			j->done = plain_done;
		submit_setup(p, j);
		/* after it (front: the later submit runs first, so the reverse) */
		j = pg_job_new("farm identity",
			       "SELECT k, v FROM meta WHERE k IN ('farm_id', 'steering_secret')"
			       " ORDER BY k");
		if (j) {
			j->result = identity_result;
			j->done = identity_done;
		}
		if (!j) {
			pg_fail(p, "out of memory");
			return;
		}
		j->setup = 1;
		/* queue it behind LISTEN */
		pg_submit(p, j, 0);
		return;
	case 3: /* the farm has no steering secret yet: offer ours */
		if (local_secret(p->s, hex, sizeof(hex)) < 0) {
			setup_step(p, 4);
			return;
		}
		j = pg_job_new("offer secret",
			       "INSERT INTO meta AS m (k, v) VALUES ('steering_secret', $1)"
			       " ON CONFLICT (k) DO UPDATE SET v = m.v RETURNING v");
		if (j) {
			pg_job_param(j, hex);
			j->result = secret_result;
			j->done = offer_done;
		}
		submit_setup(p, j);
		return;
	case 4: { /* everything changed since this node's last pull */
		struct pg_job *chain[8];
		int n = 0;
		chain[n++] = pull_devices(p);
		chain[n++] = pull_table(p, PG_WANT_VERSIONS);
		chain[n++] = pull_table(p, PG_WANT_RULES);
		chain[n++] = pull_table(p, PG_WANT_LISTS);
		chain[n++] = pull_table(p, PG_WANT_NODES);
		chain[n++] = pull_audit(p);
		chain[n++] = pg_job_new("synced", "SELECT 1");
		for (int i = 0; i < n; i++)
			if (!chain[i]) {
				for (int k = 0; k < n; k++)
					pg_job_free(chain[k]);
				pg_fail(p, "out of memory");
				return;
			}
		chain[n - 1]->done = synced_done;
		for (int i = 0; i < n; i++) {
			chain[i]->setup = 1;
			pg_submit(p, chain[i], 0);
		}
		return;
	}
	}
}

void pg_sync_setup(struct pgs *p)
{
	p->synced = 0;
	setup_step(p, 0);
}

void pg_sync_init(struct pgs *p)
{
	struct store *s = p->s;
	inv_meta_get(s->inv, "pg_horizon", p->horizon, sizeof(p->horizon));
	inv_meta_get(s->inv, "pg_audit_horizon", p->audit_horizon, sizeof(p->audit_horizon));
	inv_meta_get(s->inv, "pg_farm_id", p->farm_id, sizeof(p->farm_id));
	char hex[80];
	if (inv_meta_get(s->inv, "farm_steering_secret", hex, sizeof(hex)) == 1 && hex[0] &&
	    s->hooks.secret)
		s->hooks.secret(s->hooks.arg, hex);
	/* A snapshot of the farm exists: serve from it at once (the database
	 * may be down; it is pulled up to date when it answers). */
	if (p->farm_id[0]) {
		log_info("event=store_snapshot farm=%s note=\"serving from this node's snapshot "
			 "until the database answers\"",
			 p->farm_id);
		store_set_ready(s);
	}
}

/* --- admin changes ------------------------------------------------------------------------ */

static void audit_here(struct pgs *p, const struct store_op *op, store_done_fn done, void *arg);

static void op_result(struct pgs *p, struct pg_job *j, PGresult *r)
{
	struct store *s = p->s;
	for (int i = 0; i < PQntuples(r); i++) {
		j->rows++;
		store_local_begin(s);
		switch (j->kind) {
		case STORE_OP_DEVICE_STATE:
		case STORE_OP_LOOP_CLEAR: {
			struct inv_device d;
			row_device(r, i, 0, &d);
			if (inv_merge_device(s->inv, &d) > 0)
				j->changed = 1;
			break;
		}
		case STORE_OP_DEVICE_REMOVE:
			if (inv_remove_device(s->inv, pg_val(r, i, 0), pg_val(r, i, 1)) > 0)
				j->changed = 1;
			break;
		case STORE_OP_VERSION_APPROVE: {
			struct inv_version v = {0};
			snprintf(v.os_key, sizeof(v.os_key), "%s", pg_val(r, i, 0));
			snprintf(v.family, sizeof(v.family), "%s", pg_val(r, i, 1));
			v.first_seen = pg_ll(r, i, 2);
			v.approved = (int)pg_ll(r, i, 3);
			v.approved_at = pg_ll(r, i, 4);
			if (inv_merge_version(s->inv, &v) > 0)
				j->changed = 1;
			break;
		}
		case STORE_OP_RULE_ADD:
			j->i2 = pg_ll(r, i, 0);
			break;
		default:
			break;
		}
	}
}

static void op_done(struct pgs *p, struct pg_job *j, const char *err, const char *ss, int lost)
{
	struct store *s = p->s;
	struct store_result r = {.rc = j->rows > 0, .id = j->i2};
	if (err && j->kind == STORE_OP_AUDIT && j->data) {
		/* The line could not reach the farm: keep it here. */
		struct store_op o = {.kind = STORE_OP_AUDIT, .audit = j->data};
		audit_here(p, &o, j->cb, j->cb_arg);
		return;
	}
	if (err) {
		p->op_errors++;
		r.rc = -1;
		snprintf(r.msg, sizeof(r.msg), "%s",
			 lost ? "the farm database went away before answering: the change may or "
				"may not have been made (look again)"
			      : err);
		j->cb(j->cb_arg, &r);
		return;
	}
	/* Rules and lists: pull the table before answering, so the answer
	 * means "in force on this node" as with the other changes. */
	if (j->kind == STORE_OP_RULE_ADD || j->kind == STORE_OP_RULE_REMOVE ||
	    j->kind == STORE_OP_LIST_ADD || j->kind == STORE_OP_LIST_REMOVE) {
		int rules = j->kind == STORE_OP_RULE_ADD || j->kind == STORE_OP_RULE_REMOVE;
		struct pg_job *t = pull_table(p, rules ? PG_WANT_RULES : PG_WANT_LISTS);
		if (t) {
			t->cb = j->cb;
			t->cb_arg = j->cb_arg;
			t->i1 = r.rc;
			t->i2 = r.id;
			t->changed = r.rc > 0;
			pg_submit(p, t, 1);
			/* its audit line first (front: the later submit runs first) */
			struct pg_job *au = j->i1 && r.rc > 0 ? pull_audit(p) : NULL;
			if (au)
				pg_submit(p, au, 1);
			return;
		}
	}
	if (j->changed)
		changed(p);
	else
		store_batch_commit(s);
	if (j->i1 && r.rc > 0) {
		/* An audit line was written with it: in this node's file
		 * before the answer. */
		struct pg_job *t = pull_audit(p);
		if (t) {
			t->cb = j->cb;
			t->cb_arg = j->cb_arg;
			t->i1 = r.rc;
			t->i2 = r.id;
			pg_submit(p, t, 1);
			return;
		}
	}
	j->cb(j->cb_arg, &r);
}

/*
 * The change and its audit line in one statement, so one transaction: the
 * line is inserted only if the change returned a row (made a change), and
 * neither exists without the other. The audit values follow the change's
 * own parameters. RULE_ADD: an empty what/after names the new rule's id.
 */
static int with_audit(struct pgs *p, struct pg_job *j, const struct store_op *op)
{
	const struct inv_audit *a = op->audit;
	int n = j->nparams;
	if (n + 7 > PG_JOB_PARAMS)
		return -1;
	pg_job_paramf(j, "%lld", (long long)a->at);
	pg_job_param(j, p->s->node);
	pg_job_param(j, a->who);
	pg_job_param(j, a->source);
	pg_job_param(j, a->what);
	pg_job_param(j, a->before);
	pg_job_param(j, a->after);
	char what[128], after[128];
	if (op->kind == STORE_OP_RULE_ADD) {
		snprintf(what, sizeof(what),
			 "coalesce(nullif($%d::text, ''), 'rules add db' || c.id)", n + 5);
		snprintf(after, sizeof(after),
			 "coalesce(nullif($%d::text, ''), 'db' || c.id || ': ' || $1)", n + 7);
	} else {
		snprintf(what, sizeof(what), "$%d::text", n + 5);
		snprintf(after, sizeof(after), "$%d::text", n + 7);
	}
	struct sbuf sql = {0};
	sbuf_printf(&sql,
		    "WITH c AS (%s), a AS (INSERT INTO audit (at, node, who, source, what, before,"
		    " after) SELECT $%d::bigint, $%d::text, $%d::text, $%d::text, %s, $%d::text, %s"
		    " FROM (SELECT * FROM c LIMIT 1) c) SELECT * FROM c",
		    j->sql, n + 1, n + 2, n + 3, n + 4, what, n + 6, after);
	if (sql.oom || !sql.p) {
		sbuf_free(&sql);
		return -1;
	}
	free(j->sql);
	j->sql = sql.p; /* the job owns it */
	j->i1 = 1;	/* a line was written if a row came back: pull it before answering */
	return 0;
}

/* STORE_OP_AUDIT while the database is away: what happened on this node is
 * kept in its file (not sent later: the farm's table is append-only and
 * has no place for lines older than its own). */
static void audit_here(struct pgs *p, const struct store_op *op, store_done_fn done, void *arg)
{
	struct store *s = p->s;
	struct store_result r = {.rc = 1};
	r.id = store_audit_local(s, op, 0);
	if (store_batch_commit(s) < 0 || r.id < 0)
		r.rc = -1;
	snprintf(r.msg, sizeof(r.msg), "kept on this node only (the farm database is away)");
	done(arg, &r);
}

void pg_sync_change(struct pgs *p, const struct store_op *op, store_done_fn done, void *arg)
{
	struct store_result r = {.rc = -1};
	p->ops++;
	if (op->kind == STORE_OP_MIGRATE) {
		if (p->state != PG_READY && p->state != PG_BEHIND && p->state != PG_SETUP) {
			snprintf(r.msg, sizeof(r.msg), "the farm database is unreachable: %s",
				 p->last_error);
			done(arg, &r);
			return;
		}
		if (p->db_version >= store_pg_schema_latest()) {
			r.rc = 0;
			snprintf(r.msg, sizeof(r.msg),
				 "schema version %d, the latest this binary "
				 "knows: nothing to do",
				 p->db_version);
			done(arg, &r);
			return;
		}
		struct pg_job *j = migrate_job(p, p->db_version);
		if (!j) {
			snprintf(r.msg, sizeof(r.msg), "out of memory");
			done(arg, &r);
			return;
		}
		j->cb = done;
		j->cb_arg = arg;
		j->setup = 1;
		if (p->state == PG_BEHIND)
			p->state = PG_SETUP;
		pg_submit(p, j, 1);
		return;
	}
	if (op->kind == STORE_OP_AUDIT && !op->audit) {
		snprintf(r.msg, sizeof(r.msg), "no audit line");
		done(arg, &r);
		return;
	}
	if (op->kind == STORE_OP_AUDIT &&
	    (p->state == PG_DOWN || p->state == PG_CONNECTING || p->state == PG_BEHIND)) {
		audit_here(p, op, done, arg);
		return;
	}
	if (p->state == PG_DOWN || p->state == PG_CONNECTING || p->state == PG_BEHIND) {
		char when[32];
		time_t t = (time_t)p->down_since;
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		p->op_errors++;
		snprintf(r.msg, sizeof(r.msg),
			 "the farm database is unreachable since %s (%s): nothing was changed; "
			 "every node keeps the policy it has",
			 when, p->last_error);
		done(arg, &r);
		return;
	}
	const char *sql = NULL;
	switch (op->kind) {
	case STORE_OP_DEVICE_STATE:
		sql = "UPDATE devices d SET admin_state = $3::int,"
		      " admin_at = greatest(d.admin_at + 1, $4::bigint)"
		      " WHERE " PG_KEY_MATCH " RETURNING " PG_DEVICE_COLS;
		break;
	case STORE_OP_LOOP_CLEAR:
		sql = "UPDATE devices d SET loop_until = 0, loop_cmd = -1,"
		      " loop_at = greatest(d.loop_at + 1, $4::bigint)"
		      " WHERE " PG_KEY_MATCH " AND d.loop_until <> 0 AND $3::int IS NOT NULL"
		      " RETURNING " PG_DEVICE_COLS;
		break;
	case STORE_OP_DEVICE_REMOVE:
		sql = "DELETE FROM devices d WHERE " PG_KEY_MATCH
		      " RETURNING d.\"user\", d.device_id";
		break;
	case STORE_OP_VERSION_APPROVE:
		sql = "INSERT INTO os_versions AS t (os_key, family, first_seen, approved,"
		      " approved_at) VALUES ($1, '', $3::bigint, $2::int, $3::bigint)"
		      " ON CONFLICT ((lower(os_key COLLATE \"C\"))) DO UPDATE SET"
		      " approved = excluded.approved,"
		      " approved_at = greatest(t.approved_at + 1, excluded.approved_at)"
		      " RETURNING os_key, family, first_seen, approved, approved_at";
		break;
	case STORE_OP_RULE_ADD:
		sql = "INSERT INTO rules (text, created, node) VALUES ($1, $2::bigint, $3)"
		      " RETURNING id";
		break;
	case STORE_OP_RULE_REMOVE:
		sql = "DELETE FROM rules WHERE id = $1::bigint RETURNING id";
		break;
	case STORE_OP_LIST_ADD:
		sql = "INSERT INTO device_lists (list, entry, created, node)"
		      " VALUES ($1, $2, $3::bigint, $4) ON CONFLICT DO NOTHING RETURNING list";
		break;
	case STORE_OP_LIST_REMOVE:
		sql = "DELETE FROM device_lists WHERE list = $1"
		      " AND lower(entry COLLATE \"C\") = lower($2 COLLATE \"C\") RETURNING list";
		break;
	case STORE_OP_AUDIT:
		sql = "SELECT 1 WHERE $1::int IS NOT NULL"; /* the line is all (with_audit) */
		break;
	case STORE_OP_MIGRATE:
		break;
	}
	struct pg_job *j = sql ? pg_job_new("admin change", sql) : NULL;
	if (!j) {
		snprintf(r.msg, sizeof(r.msg), "out of memory");
		done(arg, &r);
		return;
	}
	switch (op->kind) {
	case STORE_OP_DEVICE_STATE:
	case STORE_OP_LOOP_CLEAR:
		pg_job_param(j, op->user);
		pg_job_param(j, op->device_id);
		pg_job_paramf(j, "%d", op->state);
		pg_job_paramf(j, "%lld", (long long)op->now);
		break;
	case STORE_OP_DEVICE_REMOVE:
		pg_job_param(j, op->user);
		pg_job_param(j, op->device_id);
		break;
	case STORE_OP_VERSION_APPROVE:
		pg_job_param(j, op->text);
		pg_job_paramf(j, "%d", op->state);
		pg_job_paramf(j, "%lld", (long long)op->now);
		break;
	case STORE_OP_RULE_ADD:
		pg_job_param(j, op->text);
		pg_job_paramf(j, "%lld", (long long)op->now);
		pg_job_param(j, p->s->node);
		break;
	case STORE_OP_RULE_REMOVE:
		pg_job_paramf(j, "%lld", (long long)op->id);
		break;
	case STORE_OP_LIST_ADD:
		pg_job_param(j, op->list);
		pg_job_param(j, op->text);
		pg_job_paramf(j, "%lld", (long long)op->now);
		pg_job_param(j, p->s->node);
		break;
	case STORE_OP_LIST_REMOVE:
		pg_job_param(j, op->list);
		pg_job_param(j, op->text);
		break;
	case STORE_OP_AUDIT:
		pg_job_param(j, "1");
		/* kept for a fallback to this node's file (op is borrowed) */
		j->data = malloc(sizeof(*op->audit));
		if (j->data)
			memcpy(j->data, op->audit, sizeof(*op->audit));
		break;
	case STORE_OP_MIGRATE:
		break;
	}
	if (op->audit && with_audit(p, j, op) < 0) {
		pg_job_free(j);
		snprintf(r.msg, sizeof(r.msg), "out of memory");
		done(arg, &r);
		return;
	}
	j->kind = (int)op->kind;
	j->cb = done;
	j->cb_arg = arg;
	j->result = op_result;
	j->done = op_done;
	pg_submit(p, j, 1);
}
