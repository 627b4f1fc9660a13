/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * worker.h - one worker process: its loop, listeners, connections and the
 * per-process state the relay needs. A worker runs exactly one config
 * generation; a reload starts new workers and lets the old ones drain, so a
 * connection always finishes on the config it started with.
 */
#ifndef EG_WORKER_H
#define EG_WORKER_H

#include <sys/types.h>
#include <stdint.h>

#include "backend.h"
#include "buf.h"
#include "config.h"
#include "h1.h"
#include "loop.h"
#include "shm.h"
#include "siphash.h"
#include "stats.h"
#include "tls.h"

struct conn;
struct upstream;
struct gate;
struct bpfmaps;
struct throttle;
struct sighting_table;
struct srccap;

struct listener {
	struct loop_io io;
	int fd;
	int plain; /* plain HTTP: no TLS on this socket */
	struct worker *w;
};

#define WORKER_UP_IDLE_BUCKETS 1024

struct worker {
	int slot;
	pid_t pid; /* getpid() once at start: owns_slot runs every loop turn and accept */
	uint64_t gen;
	struct loop *loop;
	struct shm *shm;
	struct stats *stats; /* &shm->worker_stats[slot] */
	const struct gw_config *cfg;
	struct tls_server *tls;
	struct backends be;
	struct siphash_key steer_secret;
	struct h1_limits lim;
	struct bufpool pool;
	struct gate *gate;     /* policy + inventory access; NULL = allow all */
	struct bpfmaps *bpf;   /* kernel maps; NULL when XDP is off */
	struct srccap *srccap; /* connections per source, all workers (shared) */
	int srccap_slot;       /* this process's table in it: its stats slot */

	struct listener listeners[CFG_MAX_LISTEN];
	int nlisteners;
	int accepting;

	struct conn *conns; /* doubly linked, for draining and shutdown */
	unsigned nconns;
	struct conn *dead; /* closed this iteration, freed before the next sleep */
	struct upstream *dead_ups;
	/* Idle backend connections an identity may take from another client
	 * connection, hashed by (backend, identity): upstream.h. */
	struct upstream *up_idle[WORKER_UP_IDLE_BUCKETS];

	int draining;
	struct loop_timer drain_timer;
	/* Last state given to the SK_REUSEPORT program (worker_publish). */
	uint32_t pub_accepting, pub_load;
	int published;
	/* Reconciling the slot's queued count (worker_reconcile): what it was at
	 * the last tick, and how many connections were accepted since. */
	uint32_t rp_queued_then, rp_took;
	struct loop_timer tick; /* 1 s housekeeping */
};

/* Per-worker inputs prepared by the master before fork. */
struct worker_args {
	int slot;
	int stats_slot; /* shm->worker_stats index owned by this process alone */
	uint64_t gen;
	struct shm *shm;
	const struct gw_config *cfg;
	const int *listen_fds; /* one per cfg->listen entry, for this slot */
	struct siphash_key steer_secret;
	struct bpfmaps *bpf;
	int event_fd;		   /* inventory events to the master */
	struct tls_server *tls;	   /* loaded by the master: keys need not be readable by workers */
	struct throttle *throttle; /* shared table (NULL: throttling off) */
	struct sighting_table *sightings; /* shared unauthenticated sightings */
	struct srccap *srccap;		  /* connections per source (shared) */
};

/* Run a worker until it has drained; returns the process exit code. */
int worker_main(const struct worker_args *a);

/* Start draining: stop accepting, close idle connections, answer long-polls. */
void worker_drain(struct worker *w);
/* A connection was just accepted: tell the SK_REUSEPORT program at once
 * (one more open, one less queued), before any work on it. */
void worker_took(struct worker *w);

#endif
