/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* backend.c - see backend.h. */
#include "backend.h"
#include "log.h"
#include "tls.h"

#include <string.h>

static int build_table(struct backends *bs)
{
	struct maglev_backend mb[EG_MAX_BACKENDS];
	for (int i = 0; i < bs->n; i++) {
		mb[i].name = bs->b[i].cfg->name;
		mb[i].weight = bs->b[i].cfg->weight;
		mb[i].up = bs->b[i].up;
	}
	return maglev_build(&bs->mg, mb, (uint32_t)bs->n);
}

int backends_init(struct backends *bs, const struct gw_config *c, const struct shm *s, char *err,
		  size_t errsz)
{
	memset(bs, 0, sizeof(*bs));
	if (maglev_init(&bs->mg, EG_MAGLEV_SIZE) < 0) {
		snprintf(err, errsz, "cannot allocate the Maglev table");
		return -1;
	}
	bs->n = c->nbackends;
	for (int i = 0; i < c->nbackends; i++) {
		bs->b[i].cfg = &c->backends[i];
		bs->b[i].shm_idx = s ? shm_backend_find(s, c->backends[i].name) : -1;
		bs->b[i].up = bs->b[i].shm_idx >= 0 ? (int)s->backends[bs->b[i].shm_idx].up : 1;
		if (c->backends[i].tls) {
			bs->b[i].ssl_ctx = tls_backend_ctx(&c->backends[i], err, errsz);
			if (!bs->b[i].ssl_ctx) {
				backends_free(bs);
				return -1;
			}
		}
	}
	if (build_table(bs) < 0) {
		snprintf(err, errsz, "cannot build the Maglev table");
		backends_free(bs);
		return -1;
	}
	return 0;
}

void backends_free(struct backends *bs)
{
	for (int i = 0; i < bs->n; i++)
		SSL_CTX_free(bs->b[i].ssl_ctx);
	maglev_free(&bs->mg);
	memset(bs, 0, sizeof(*bs));
}

void backends_refresh(struct backends *bs, const struct shm *s)
{
	uint64_t gen = __atomic_load_n(&s->backend_gen, __ATOMIC_ACQUIRE);
	if (gen == bs->gen_seen)
		return;
	bs->gen_seen = gen;
	int changed = 0;
	for (int i = 0; i < bs->n; i++) {
		int up = bs->b[i].shm_idx >= 0 ? (int)s->backends[bs->b[i].shm_idx].up : 1;
		changed |= up != bs->b[i].up;
		bs->b[i].up = up;
	}
	if (changed && build_table(bs) < 0)
		log_err("event=maglev_build_failed");
}

int backends_pick(const struct backends *bs, uint64_t key, uint64_t avoid)
{
	uint32_t i = maglev_lookup(&bs->mg, key);
	if (i != MAGLEV_NONE && !(avoid & (UINT64_C(1) << i)))
		return (int)i;
	if (i == MAGLEV_NONE)
		return -1;
	/*
	 * The user's backend failed to connect before health checks noticed:
	 * re-probe the table with derived keys so this user lands on another
	 * backend deterministically, until the master ejects the dead one.
	 */
	for (uint64_t salt = 1; salt <= 64; salt++) {
		uint64_t k = key ^ (salt * UINT64_C(0x9e3779b97f4a7c15));
		uint32_t j = maglev_lookup(&bs->mg, k);
		if (j != MAGLEV_NONE && !(avoid & (UINT64_C(1) << j)))
			return (int)j;
	}
	for (int j = 0; j < bs->n; j++)
		if (bs->b[j].up && !(avoid & (UINT64_C(1) << j)))
			return j;
	return -1;
}
