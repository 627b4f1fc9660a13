/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * backend.h - a worker's view of the Exchange backends: their config, TLS
 * client contexts, health (decided by the master's checks, read from shared
 * memory) and the Maglev table that maps a user's steering key to one of them.
 *
 * Affinity follows the user, never the address: the key is
 * SipHash(secret, identity) (steer.h), so thousands of NAT'd phones spread
 * over the backends, and losing one backend moves only its users.
 */
#ifndef EG_BACKEND_H
#define EG_BACKEND_H

#include <openssl/ssl.h>
#include <stdint.h>

#include "config.h"
#include "maglev.h"
#include "shm.h"

struct backend_rt {
	const struct cfg_backend *cfg; /* borrowed from the worker's config */
	SSL_CTX *ssl_ctx;	       /* HTTPS backends only; owned */
	int up;			       /* copy of shm health at the last refresh */
	int shm_idx;		       /* slot in shm->backends (by name) */
};

struct backends {
	int n;
	struct backend_rt b[EG_MAX_BACKENDS];
	struct maglev mg;
	uint64_t gen_seen; /* shm->backend_gen the table was built for */
};

/* Build TLS contexts and the first Maglev table (all backends up). */
int backends_init(struct backends *bs, const struct gw_config *c, const struct shm *s, char *err,
		  size_t errsz);
void backends_free(struct backends *bs);
/* Rebuild the table if health changed since the last call. Cheap otherwise. */
void backends_refresh(struct backends *bs, const struct shm *s);
/*
 * The backend for key, skipping those in the avoid bitmask (connect failures
 * seen by this request). Returns -1 when none is usable.
 */
int backends_pick(const struct backends *bs, uint64_t key, uint64_t avoid);

#endif
