/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * journal.h - what this farm node changed and the database has not confirmed
 * yet: an outbox table in the node's own inventory file (WAL), written in the
 * same transaction as the change itself, so a crash or kill -9 keeps both or
 * neither.
 *
 * An entry names a row (a device, or an OS version), not an event: a phone
 * that syncs a hundred times while the database is down is one entry, and
 * what is sent is the row as it is when sent (merged field group by field
 * group over there, inventory.h). So the journal's size is bounded by the
 * rows that changed, not by the time the database was away.
 *
 * Each entry has a sequence number from this file (AUTOINCREMENT: never
 * reused, even after deletes). A push sends the oldest entries with their
 * numbers; the database applies each (node, journal id, seq) at most once
 * (store_pg_schema.c) and the entries are deleted when it confirms. An entry
 * marked again while its push is in flight gets a new number, so the newer
 * state is pushed again; one marked again while waiting keeps its place
 * (nothing to write).
 *
 * Bound: `max` entries (postgresql.journal_max). When full, a change to a
 * row not already waiting is not journaled: counted (dropped), and the time
 * of the first such drop is kept (meta journal_overflow_since). When the
 * journal has drained, every device changed since then is journaled again
 * (journal_refill), so nothing is lost, only sent later.
 */
#ifndef EG_JOURNAL_H
#define EG_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

struct inventory;
struct journal;

#define JOURNAL_DEVICE	'd' /* k1 = user, k2 = DeviceId */
#define JOURNAL_VERSION 'v' /* k1 = os_key */

struct journal_stats {
	uint64_t entries; /* waiting now */
	uint64_t max;
	uint64_t marked;	/* marks since start */
	uint64_t dropped;	/* marks refused because the journal was full */
	uint64_t acked;		/* entries the database confirmed since start */
	int64_t overflow_since; /* unix s of the first drop not yet refilled; 0 none */
	int64_t oldest;		/* unix s the oldest entry waits since (approx.); 0 none */
};

/* On the writer's open inventory. NULL with the reason in err. */
struct journal *journal_new(struct inventory *inv, uint64_t max, char *err, size_t errsz);
void journal_free(struct journal *j);

/* This file's journal id (random, made once): with the node name it keys the
 * database's record of what was applied, so a rebuilt node starts afresh. */
const char *journal_id(const struct journal *j);

/* Row (kind, k1, k2) changed. 0 journaled (or already waiting), 1 dropped
 * (full; counted), -1 error. Call inside the writer's transaction. */
int journal_mark(struct journal *j, char kind, const char *k1, const char *k2, int64_t now);
/* Every device and version of the file (a node joining a farm). 0 or -1. */
int journal_mark_all(struct journal *j, int64_t now);

/* The oldest n entries, in order: cb(arg, seq, kind, k1, k2); cb returning
 * non-zero stops. Returns how many were passed, -1 on error. */
int journal_peek(struct journal *j, int n,
		 int (*cb)(void *arg, int64_t seq, char kind, const char *k1, const char *k2),
		 void *arg);
/* A push of the entries up to seq is in flight (0: none; after a lost
 * connection they wait again). */
void journal_inflight(struct journal *j, int64_t seq);
/* The database confirmed every entry up to seq: delete them. 0 or -1. */
int journal_ack(struct journal *j, int64_t seq);
/* Drained after an overflow: journal every device changed since then (up to
 * the bound). 1 if entries were added, 0 nothing to do, -1 error. */
int journal_refill(struct journal *j, int64_t now);

void journal_stats_read(const struct journal *j, struct journal_stats *st);

#endif
