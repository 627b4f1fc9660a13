/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * store_pg.h - the PostgreSQL backend's insides, shared by its connection
 * half (store_pg.c: libpq on the master's loop, the job queue, LISTEN, state)
 * and its sync half (store_pg_sync.c: what the jobs say and do with the
 * answers). Not for the store's users: they have store.h.
 *
 * One connection, one query in flight (libpq's model), jobs in a FIFO: admin
 * changes jump the queue; pulls, pushes and heartbeats are made when the
 * connection is idle (pg_sync_next). A job that gets no byte for
 * postgresql.timeout ends the connection (a dead peer does not answer); a
 * reconnect starts with the setup (schema, LISTEN, the farm's identity and
 * secret) and a pull of everything changed meanwhile.
 */
#ifndef EG_STORE_PG_H
#define EG_STORE_PG_H

#include <libpq-fe.h>

#include "store_backend.h"

struct pgs;
struct pg_job;

/* Each result of the job's query (single-row mode: one per row); r is
 * cleared by the caller. */
typedef void (*pg_result_fn)(struct pgs *p, struct pg_job *j, PGresult *r);
/* The job ended: err NULL on success, else the first error (sqlstate may be
 * ""); conn_lost: the connection died under it (it will not be retried). */
typedef void (*pg_done_fn)(struct pgs *p, struct pg_job *j, const char *err, const char *sqlstate,
			   int conn_lost);

#define PG_JOB_PARAMS 12

struct pg_job {
	struct pg_job *next;
	const char *name; /* logs, easctl db status */
	char *sql;	  /* owned */
	int nparams;
	char *params[PG_JOB_PARAMS]; /* owned; NULL = SQL NULL */
	int single_row;
	int setup; /* may run before the connection is ready (setup chain) */
	pg_result_fn result;
	pg_done_fn done;
	/* for done/result */
	store_done_fn cb; /* an admin change's callback */
	void *cb_arg;
	int kind;	/* enum store_op_kind, or -1 */
	int64_t i1, i2; /* job-specific numbers */
	int rows;	/* rows seen */
	int changed;	/* something decisions read changed */
	char text[256]; /* job-specific text */
	void *data;	/* job-specific, freed with the job */
	char err[256];	/* first error */
	char sqlstate[6];
	uint64_t t0_ms; /* loop clock when sent (kept if set before) */
};

enum pg_state {
	PG_DOWN,       /* waiting to reconnect */
	PG_CONNECTING, /* PQconnectPoll */
	PG_SETUP,      /* connected: schema, LISTEN, identity, first pull */
	PG_BEHIND,     /* connected, schema older and auto_migrate off */
	PG_READY,
};

struct pgs {
	struct store *s;
	PGconn *conn;
	enum pg_state state;
	struct loop_io io;
	int io_fd;	/* registered socket, -1 none */
	int want_write; /* registered write interest */
	PostgresPollingStatusType poll;
	struct loop_timer retry, deadline, kick;
	uint64_t backoff_ms;
	struct pg_job *head, *tail;   /* waiting */
	struct pg_job *cur;	      /* in flight */
	int64_t up_since, down_since; /* unix s */
	char last_error[256];
	char host[128], port[16]; /* of the current connection */
	int db_version;
	/* hosts of the conninfo, for the next attempt after a timeout (libpq
	 * moves on by itself only when a host refuses or fails) */
	int nhosts, host_start;
	/* what to pull when idle (NOTIFY, reconnect) */
	unsigned want;
	uint64_t pull_min_ms; /* gap before the next pull: the last one's length, <= 100 ms */
	uint64_t last_pull_end_ms;
	int synced; /* first full pull of this connection done */
	int push_inflight;
	int hb_due;
	char farm_id[40];
	char horizon[1024];	  /* pg_snapshot text of the last device pull; "" = none */
	char audit_horizon[1024]; /* the same for the audit trail */
	/* counters for easctl db status and metrics */
	uint64_t connects, disconnects, notifies, pulls, pulled_rows, pushes, pushed_rows,
	    push_duplicates, push_errors, ops, op_errors, timeouts;
	uint64_t last_push_ms, last_pull_ms; /* durations */
};

#define PG_WANT_DEVICES	 (1u << 0)
#define PG_WANT_VERSIONS (1u << 1)
#define PG_WANT_RULES	 (1u << 2)
#define PG_WANT_LISTS	 (1u << 3)
#define PG_WANT_NODES	 (1u << 4)
#define PG_WANT_META	 (1u << 5)
#define PG_WANT_AUDIT	 (1u << 6)
#define PG_WANT_ALL	 0x7fu

/* store_pg.c */
struct pg_job *pg_job_new(const char *name, const char *sql);
void pg_job_param(struct pg_job *j, const char *v); /* appended; NULL = SQL NULL */
void pg_job_paramf(struct pg_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pg_job_free(struct pg_job *j);
/* Queue a job (front: before the others waiting). It runs when the
 * connection is ready (or in setup, for setup jobs). */
void pg_submit(struct pgs *p, struct pg_job *j, int front);
/* Connection-level failure: close, count, retry later. */
void pg_fail(struct pgs *p, const char *why);
/* Run the next job if the connection is idle. */
void pg_kick(struct pgs *p);
/* Every column of a result row as text ("" for NULL). */
const char *pg_val(const PGresult *r, int row, int col);
long long pg_ll(const PGresult *r, int row, int col);

/* The setup is done: everything may run. */
void pg_ready(struct pgs *p);

/* store_pg_sync.c */
/* Connected: queue the setup chain. */
void pg_sync_setup(struct pgs *p);
/* The connection is idle and ready: the next pull/push/heartbeat, or NULL. */
struct pg_job *pg_sync_next(struct pgs *p);
/* A notification on channel "easgate" (payload: the table). */
void pg_sync_notified(struct pgs *p, const char *table);
/* An admin change. */
void pg_sync_change(struct pgs *p, const struct store_op *op, store_done_fn done, void *arg);
/* Init: start from the snapshot's sync state (horizon, farm id, secret). */
void pg_sync_init(struct pgs *p);
/* What a push sends for one device (a JSON object for easgate_push), and the
 * query of a device pull ($1: the previous pull's pg_snapshot text, or NULL
 * for everything; row 0: this pull's snapshot, then the device columns).
 * Also used by tools/bench/store_load.c, so it measures what nodes do. */
void pg_json_device(struct sbuf *o, const struct inv_device *d, int64_t seq);
void pg_pull_devices_sql(char *sql, size_t n);

#endif
