/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * store.h - where the policy state and the device inventory live: one
 * interface, two backends.
 *
 *   store = "sqlite"      (default) the node's own file, state_dir/inventory.db
 *                         (inventory.h): embedded, nothing to run.
 *   store = "postgresql"  the node is part of a farm (store_pg.c): devices,
 *                         admin decisions, personal lists, runtime rules, OS
 *                         versions, loop quarantines, the steering secret and
 *                         node heartbeats are shared through one database.
 *
 * Whatever the backend, the request path reads only the node's SQLite file:
 * workers open it read-only and cache, as they always did. With PostgreSQL
 * that file is the node's snapshot of the farm (kept current by LISTEN/NOTIFY
 * and incremental pulls) plus its journal of changes not confirmed yet
 * (journal.h); it is also what a node restarting while the database is down
 * starts from. Nothing here ever waits for the database inside the master's
 * loop: libpq runs non-blocking on the loop (connect included).
 *
 * Writers: the master only. Events from workers go to store_apply() in
 * batches (store_batch_begin/commit); admin changes to store_change(), which
 * answers through a callback: at once with SQLite, when the database has
 * committed with PostgreSQL (the change is then in the snapshot too, and
 * hooks.changed has been called). Every change a decision can see calls
 * hooks.changed, on whichever node it was made (or directly in the database).
 *
 * The audit trail (inventory.h inv_audit) rides with the admin changes
 * (store_op.audit): one table in the farm's database for every node, and
 * each node's file holds a copy (pulled like the devices), which is what
 * `easctl audit` and the console read.
 */
#ifndef EG_STORE_H
#define EG_STORE_H

#include <stdint.h>

#include "config.h"
#include "sbuf.h"
#include "inventory.h"
#include "loop.h"

struct store;

enum store_op_kind {
	STORE_OP_DEVICE_STATE,	  /* user, device_id, state (POLICY_ADMIN_*) */
	STORE_OP_DEVICE_REMOVE,	  /* user, device_id */
	STORE_OP_VERSION_APPROVE, /* text = OS key, state = 1 approve / 0 revoke */
	STORE_OP_RULE_ADD,	  /* text = rule (already parsed and formatted) */
	STORE_OP_RULE_REMOVE,	  /* id */
	STORE_OP_LIST_ADD,	  /* list ("blocked"/"allowed"), text = entry */
	STORE_OP_LIST_REMOVE,	  /* list, text */
	STORE_OP_LOOP_CLEAR,	  /* user, device_id: its loop quarantine ends everywhere */
	STORE_OP_MIGRATE,	  /* apply the schema migrations this binary knows */
	STORE_OP_AUDIT,		  /* audit only: something done on this node (a reload) */
};

struct store_op {
	enum store_op_kind kind;
	const char *user, *device_id, *text, *list; /* borrowed until store_change returns */
	int state;
	int64_t id;
	int64_t now; /* unix s */
	/*
	 * The change's audit line (inv_audit without id, node, farm_id; NULL:
	 * none). Written with the change, atomically, and only if it changed
	 * something (rc 1): a change refused or failed (a farm's database
	 * down) leaves no line. RULE_ADD: what and after are made by the
	 * store (they name the new rule's id). With PostgreSQL the line goes
	 * to the farm's audit table (node = this node) and every node's file
	 * mirrors it; STORE_OP_AUDIT while the database is down is kept in
	 * this node's file only (it happened here; it is not sent later).
	 */
	const struct inv_audit *audit;
};

struct store_result {
	int rc;	    /* 1 changed, 0 nothing to change / not found, -1 failed */
	int64_t id; /* RULE_ADD: the rule's id */
	char msg[256];
};

typedef void (*store_done_fn)(void *arg, const struct store_result *r);

struct store_hooks {
	void *arg;
	/* Something a decision reads changed: publish a policy generation. */
	void (*changed)(void *arg);
	/* The farm's steering secret (32 hex characters) differs from ours. */
	void (*secret)(void *arg, const char *hex);
	/* The node may start serving: first sync with the farm done, or not
	 * needed (SQLite, or a snapshot exists), or given up on (timeout). */
	void (*ready)(void *arg);
	/* Fill this node's heartbeat (version, generation, requests). */
	void (*node)(void *arg, struct inv_node *self);
};

/* Open the configured store. hooks is copied. NULL with the reason in err. */
struct store *store_open(struct loop *l, const struct gw_config *c, const struct store_hooks *h,
			 char *err, size_t errsz);
/* Pending store_change callbacks are called with rc -1 first. NULL is a no-op. */
void store_free(struct store *s);
/* The running config changed (reload). The store settings themselves
 * (store, postgresql.*) take effect at the next start. */
void store_config_changed(struct store *s, const struct gw_config *c);

/* The node's SQLite file: reads, and what workers open (inventory.h). */
struct inventory *store_inventory(struct store *s);
const char *store_kind_name(const struct store *s); /* "sqlite", "postgresql" */
const char *store_node_name(const struct store *s);

/* Worker events, batched by the caller (inv_apply's return values). */
int store_batch_begin(struct store *s);
int store_batch_commit(struct store *s);
int store_apply(struct store *s, const struct inv_event *ev);

/* An admin change. done is called exactly once, possibly before this
 * returns. */
void store_change(struct store *s, const struct store_op *op, store_done_fn done, void *arg);

/* In a forked child (a worker): drop this process's copy of the database
 * connection's socket, so that the master closing it really closes it. */
void store_forget_in_child(struct store *s);
/* Once a second from the master: heartbeats, retries. */
void store_tick(struct store *s);
/* 1 until hooks.ready was called. */
int store_waiting(const struct store *s);

/* The store's lines for `easctl status` ("store ..."), `easctl db status`,
 * and its Prometheus metrics. */
void store_describe(struct store *s, struct sbuf *o);
void store_db_status(struct store *s, struct sbuf *o);
void store_render_metrics(struct store *s, struct sbuf *o);

#endif
