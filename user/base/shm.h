/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * shm.h - the small region the master shares with its workers
 * (mmap MAP_SHARED|MAP_ANONYMOUS before fork; survives worker restarts and
 * reloads, never touched by anything outside this process tree).
 *
 * Everything else is shared-nothing: each worker has its own OpenSSL state,
 * buffers, caches and SQLite connection (OpenSSL 3.0 loses much of its speed
 * to lock contention when threads share state; processes do not).
 *
 * Writers: the master only, except the per-worker stats slots (each written
 * by its own worker). Readers use the seqlock helpers below.
 */
#ifndef EG_SHM_H
#define EG_SHM_H

#include <stdint.h>

#include "easgate_limits.h"
#include "stats.h"

#define SHM_TICKET_KEYS 2    /* [0] current (encrypts), [1] previous (decrypts, renews) */
#define SHM_OCSP_SLOTS	16   /* one per configured certificate (CFG_MAX_CERTS) */
#define SHM_OCSP_MAX	8192 /* DER bytes: a response with a delegated signer's chain fits */

struct shm_ticket_key {
	uint8_t name[16];
	uint8_t aes_key[32];
	uint8_t hmac_key[32];
};

struct shm_backend {
	char name[EG_BACKEND_NAME_LEN]; /* slot owner; "" = free */
	uint32_t up;			/* health-check verdict: 1 up, 0 down */
	uint32_t pad;
	uint64_t checks_ok;
	uint64_t checks_failed;
	char last_error[96]; /* why it went down */
};

struct shm {
	/* seqlock over tickets: odd while the master writes */
	volatile uint64_t ticket_seq;
	struct shm_ticket_key tickets[SHM_TICKET_KEYS];

	/* bumped by the master after any policy-relevant change (rules, approvals,
	 * admin device states): workers drop caches and recompile on the next
	 * request, so changes take effect without restart. */
	volatile uint64_t policy_gen;

	/* backend health, one slot per backend name (shm_backend_slot): the
	 * config's order may change on reload, a backend's health stays */
	volatile uint64_t backend_gen; /* bumped when any up/down changes */
	struct shm_backend backends[EG_MAX_BACKENDS];

	/* per-process counters for metrics. Each live worker owns one slot
	 * (assigned by the master), so a draining worker and its successor never
	 * write the same counters; a slot's counters stay after its process
	 * exits (they are cumulative) and its gauges are zeroed by the master. */
	struct stats worker_stats[EG_MAX_WORKERS];
	/* worker slot -> pid, for the control socket's status */
	volatile int32_t worker_pid[EG_MAX_WORKERS];
	/* Each worker's heartbeat, indexed like worker_stats (its own slot): its
	 * loop's clock (CLOCK_MONOTONIC ms) at its last tick. The master stops
	 * sending systemd's WATCHDOG=1 while a live worker's is stale, so a hung
	 * worker (stopped, stuck in a call) gets the unit restarted. */
	volatile uint64_t worker_beat_ms[EG_MAX_WORKERS];

	/* certificate health, refreshed by the master (start, reload, hourly) */
	struct shm_cert {
		char path[128];
		int64_t not_after; /* earliest notAfter over the chain, Unix seconds */
		int32_t ok;	   /* usable as configured */
		int32_t warn;	   /* expires within tls.expiry_warning days, or untrusted root */
	} certs[16];
	int32_t ncerts;

	/* OCSP responses to staple, validated by the master (ocsp.h); a worker
	 * staples the one whose leaf_sha256 is its certificate's, and only
	 * before `expires`. Seqlock per slot, as for the tickets. */
	struct shm_ocsp {
		volatile uint64_t seq;
		uint8_t leaf_sha256[32];
		int64_t expires; /* unix seconds: the response's nextUpdate */
		uint32_t len;	 /* 0 = nothing to staple */
		uint8_t der[SHM_OCSP_MAX];
	} ocsp[SHM_OCSP_SLOTS];
};

/* Master: the slot for backend `name`, allocated (marked up) if new; -1 if full.
 * Slots are keyed by name so health survives reloads that reorder backends. */
int shm_backend_slot(struct shm *s, const char *name);
/* Worker: the slot for `name`, or -1 if the master has not allocated it. */
int shm_backend_find(const struct shm *s, const char *name);

/* Create the region (master, before forking). NULL on failure. */
struct shm *shm_create(void);

/* Unmap the region (master, at exit). */
void shm_destroy(struct shm *s);

/* Copy the ticket keys consistently (seqlock read). */
void shm_tickets_read(const struct shm *s, struct shm_ticket_key out[SHM_TICKET_KEYS]);
/* Master: shift current to previous and install fresh random keys. 0 or -1. */
int shm_tickets_rotate(struct shm *s);

#endif
