/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * store_backend.h - what a store backend implements (store_sqlite.c,
 * store_pg.c) and the state store.c keeps for all of them. Not for the
 * store's users: they have store.h.
 */
#ifndef EG_STORE_BACKEND_H
#define EG_STORE_BACKEND_H

#include "store.h"

struct journal;

struct store_backend {
	const char *name;
	void (*change)(struct store *s, const struct store_op *op, store_done_fn done, void *arg);
	void (*committed)(struct store *s); /* events were committed (journal may have grown) */
	void (*tick)(struct store *s);	    /* once a second */
	void (*heartbeat)(struct store *s); /* s->self was refreshed */
	void (*describe)(struct store *s, struct sbuf *o);
	void (*db_status)(struct store *s, struct sbuf *o);
	void (*metrics)(struct store *s, struct sbuf *o);
	void (*free)(struct store *s);
	void (*forget_in_child)(struct store *s); /* close inherited descriptors */
};

struct store {
	const struct store_backend *be;
	void *impl; /* the backend's own state */
	struct loop *loop;
	const struct gw_config *cfg;
	struct store_hooks hooks;
	struct inventory *inv;	 /* the node's file (snapshot with PostgreSQL) */
	struct journal *journal; /* changes to send (PostgreSQL only) */
	char node[64];
	int in_batch;
	int waiting;	      /* hooks.ready not called yet */
	struct inv_node self; /* this node's last heartbeat */
	uint64_t hb_last_ms;  /* loop clock of the last heartbeat */
	uint64_t events, event_errors;
};

/* Backends (store.c picks one). 0, or -1 with the reason in err. */
int store_sqlite_init(struct store *s, char *err, size_t errsz);
int store_pg_init(struct store *s, char *err, size_t errsz);

/* For backends: a transaction on the node's file that joins an open batch. */
int store_local_begin(struct store *s);
/* op's audit line into the node's file (node = this node; RULE_ADD: what
 * and after name rule_id), in the open local transaction (one is begun if
 * none is: the caller commits). Its id, or -1. */
int64_t store_audit_local(struct store *s, const struct store_op *op, int64_t rule_id);
/* hooks.ready, once. */
void store_set_ready(struct store *s);

#endif
