/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * store_sqlite.c - the default store: the node's own SQLite file is the
 * whole truth (store.h). Admin changes are applied at once.
 */
#include "inventory_schema.h"
#include "log.h"
#include "store_backend.h"

#include <stdio.h>
#include <string.h>

static void sq_change(struct store *s, const struct store_op *op, store_done_fn done, void *arg)
{
	struct store_result r = {0};
	struct inventory *inv = s->inv;
	/* Admin writes never ride in an open event batch; the change and its
	 * audit line are one transaction. */
	store_batch_commit(s);
	store_local_begin(s);
	switch (op->kind) {
	case STORE_OP_DEVICE_STATE:
		r.rc = inv_set_admin_state(inv, op->user, op->device_id, op->state, op->now);
		break;
	case STORE_OP_DEVICE_REMOVE:
		r.rc = inv_remove_device(inv, op->user, op->device_id);
		break;
	case STORE_OP_VERSION_APPROVE:
		r.rc = inv_version_approve(inv, op->text, op->state, op->now) < 0 ? -1 : 1;
		break;
	case STORE_OP_RULE_ADD:
		r.id = inv_rule_add(inv, op->text, op->now);
		r.rc = r.id < 0 ? -1 : 1;
		break;
	case STORE_OP_RULE_REMOVE:
		r.rc = inv_rule_remove(inv, op->id);
		break;
	case STORE_OP_LIST_ADD:
		r.rc = inv_list_add(inv, op->list, op->text, op->now);
		break;
	case STORE_OP_LIST_REMOVE:
		r.rc = inv_list_remove(inv, op->list, op->text);
		break;
	case STORE_OP_LOOP_CLEAR:
		r.rc = inv_loop_clear(inv, op->user, op->device_id, op->now);
		break;
	case STORE_OP_AUDIT:
		r.rc = 1; /* written below */
		break;
	case STORE_OP_MIGRATE:
		/* Opening the file migrated it. */
		r.rc = 0;
		snprintf(r.msg, sizeof(r.msg), "schema version %d, the latest this binary knows",
			 inv_version_of(inv));
		break;
	}
	if (r.rc > 0 && op->audit) {
		int64_t aid = store_audit_local(s, op, r.id);
		if (op->kind == STORE_OP_AUDIT) {
			r.id = aid;
			r.rc = aid < 0 ? -1 : 1;
		}
	}
	if (store_batch_commit(s) < 0 && r.rc > 0)
		r.rc = -1;
	if (r.rc < 0 && !r.msg[0])
		snprintf(r.msg, sizeof(r.msg), "the inventory could not be written (see the log)");
	if (r.rc > 0 && op->kind != STORE_OP_MIGRATE && op->kind != STORE_OP_AUDIT &&
	    s->hooks.changed)
		s->hooks.changed(s->hooks.arg);
	done(arg, &r);
}

static void sq_describe(struct store *s, struct sbuf *o)
{
	sbuf_printf(o, "store sqlite node=%s schema=%d\n", s->node, inv_version_of(s->inv));
}

static void sq_db_status(struct store *s, struct sbuf *o)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/inventory.db", s->cfg->state_dir);
	const char *what = "";
	inv_schema_describe(inv_version_of(s->inv), &what);
	sbuf_printf(o,
		    "store:          sqlite\nnode:           %s\nfile:           %s\n"
		    "schema:         %d (latest known: %d): %s\n",
		    s->node, path, inv_version_of(s->inv), inv_schema_latest(), what);
}

static void sq_metrics(struct store *s, struct sbuf *o)
{
	sbuf_printf(o, "# HELP easgate_store_up Whether the store holding the shared state is "
		       "reachable (SQLite: always).\n# TYPE easgate_store_up gauge\n"
		       "easgate_store_up{store=\"sqlite\"} 1\n");
}

static const struct store_backend sqlite_backend = {
    .name = "sqlite",
    .change = sq_change,
    .describe = sq_describe,
    .db_status = sq_db_status,
    .metrics = sq_metrics,
};

int store_sqlite_init(struct store *s, char *err, size_t errsz)
{
	(void)err;
	(void)errsz;
	s->be = &sqlite_backend;
	store_set_ready(s);
	return 0;
}
