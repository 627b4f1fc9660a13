/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * maglev.h - Maglev consistent hashing (Eisenbud et al., NSDI 2016) for
 * steering each user to one Exchange backend.
 *
 * The lookup table is a flat array of backend indices so it can be copied
 * as-is into the BPF array map EG_MAP_MAGLEV. A user key (siphash24 of the
 * identity, see siphash.h) selects table[key % size].
 *
 * Properties the rest of the gateway relies on:
 *  - a backend's permutation depends only on its NAME (two fixed SipHash
 *    keys), and backends are placed in name order, so the same set of names
 *    gives the same user -> name mapping whatever the config order and across
 *    restarts and hosts;
 *  - marking one backend down moves its users and (almost) nobody else's;
 *    bringing it back restores the previous table exactly;
 *  - each backend's share of slots is proportional to its weight
 *    (credit-based weighted population, as in Katran's MaglevHashV2).
 */
#ifndef EG_MAGLEV_H
#define EG_MAGLEV_H

#include <stdint.h>

/* Table value when no backend is up: the caller must refuse the request. */
#define MAGLEV_NONE UINT32_MAX

/* Largest accepted table size: bounds the allocation to 64 MiB. */
#define MAGLEV_SIZE_MAX (UINT32_C(1) << 24)

/* One configured backend, as given to maglev_build(). Borrowed, not kept. */
struct maglev_backend {
	const char *name; /* unique, non-empty; the only input to its permutation */
	uint32_t weight;  /* relative share, >= 1 */
	int up;		  /* 0: excluded from the table (health check failed) */
};

/*
 * A lookup table. Owns table (size entries), allocated by maglev_init() and
 * released by maglev_free(). table[i] is an index into the backend array of
 * the last successful maglev_build() (always < nbackends), or MAGLEV_NONE.
 */
struct maglev {
	uint32_t size;	    /* number of slots, a prime */
	uint32_t *table;    /* size entries */
	uint32_t nbackends; /* n of the last successful maglev_build(); 0 before */
};

/*
 * Allocate a table of size slots, all MAGLEV_NONE. size must be a prime
 * <= MAGLEV_SIZE_MAX (EG_MAGLEV_SIZE, 65537, is the default) and *m must not
 * hold a table already. Returns 0, -EINVAL (bad size) or -ENOMEM; on error
 * *m is zeroed.
 */
int maglev_init(struct maglev *m, uint32_t size);

/*
 * Rebuild m->table from b[0..n-1]: every slot gets the index of a backend
 * with up != 0, in proportion to the weights; all slots are MAGLEV_NONE if
 * none is up. Deterministic: depends only on size and the (name, weight, up)
 * set, not on the order of b[]. n must be <= EG_MAX_BACKENDS (the BPF
 * backends map size); names must be unique and non-empty; weights >= 1.
 * Allocation-free; O(size * log size) for equal weights.
 * Returns 0, or -EINVAL with the table left unchanged.
 * The table is rewritten in place: callers that share it with other threads
 * must build into a second struct maglev and swap.
 */
int maglev_build(struct maglev *m, const struct maglev_backend *b, uint32_t n);

/*
 * Backend index for a user key: m->table[key % m->size]. MAGLEV_NONE if no
 * backend is up or m holds no table. The BPF side must compute the same
 * modulo on the same 64-bit key.
 */
uint32_t maglev_lookup(const struct maglev *m, uint64_t key);

/*
 * The permutation of a backend in a table of size slots (size prime >= 2):
 * its preference list is (offset + j * skip) % size, j = 0, 1, ...
 * offset in [0, size), skip in [1, size). Exposed for tests and diagnostics.
 */
void maglev_permutation(const char *name, uint32_t size, uint32_t *offset, uint32_t *skip);

/* Release the table and zero *m. NULL and already-freed structs are fine. */
void maglev_free(struct maglev *m);

#endif
