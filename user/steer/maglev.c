/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* maglev.c - see maglev.h. */
#include "maglev.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "easgate_limits.h"
#include "siphash.h"

/*
 * Fixed keys of the two name hashes (offset and skip). They are not secrets:
 * they only need to be independent of each other and never to change,
 * because changing either reshuffles every user on upgrade (the golden test
 * in test_maglev.c pins the resulting table).
 */
static const struct siphash_key maglev_offset_key = {UINT64_C(0x6d61676c65762d6f), /* "maglev-o" */
						     UINT64_C(0x66667365742d6b31)};
static const struct siphash_key maglev_skip_key = {UINT64_C(0x6d61676c65762d73), /* "maglev-s" */
						   UINT64_C(0x6b69702d6b657932)};

/* Per-backend population state; scratch on the stack, n <= EG_MAX_BACKENDS. */
struct maglev_perm {
	uint32_t idx;	 /* index into the caller's backend array */
	uint32_t pos;	 /* next preferred slot: (offset + next * skip) % size */
	uint32_t skip;	 /* step through the permutation */
	uint32_t weight; /* credit earned per round */
	uint64_t credit; /* weight accumulated since the last claimed slot */
};

static int is_prime(uint32_t x)
{
	if (x < 2)
		return 0;
	if (x % 2 == 0)
		return x == 2;
	for (uint32_t d = 3; (uint64_t)d * d <= x; d += 2)
		if (x % d == 0)
			return 0;
	return 1;
}

int maglev_init(struct maglev *m, uint32_t size)
{
	memset(m, 0, sizeof(*m));
	if (size > MAGLEV_SIZE_MAX || !is_prime(size))
		return -EINVAL;
	m->table = malloc((size_t)size * sizeof(*m->table));
	if (!m->table)
		return -ENOMEM;
	m->size = size;
	for (uint32_t i = 0; i < size; i++)
		m->table[i] = MAGLEV_NONE;
	return 0;
}

void maglev_permutation(const char *name, uint32_t size, uint32_t *offset, uint32_t *skip)
{
	size_t len = strlen(name);

	*offset = (uint32_t)(siphash24(&maglev_offset_key, name, len) % size);
	/* skip in [1, size-1] is coprime with a prime size: a full permutation. */
	*skip = size > 1 ? (uint32_t)(siphash24(&maglev_skip_key, name, len) % (size - 1)) + 1 : 1;
}

/* Sort backend indices by name, so placement order never depends on config order. */
static void sort_by_name(const struct maglev_backend *b, uint32_t *order, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		order[i] = i;
	for (uint32_t i = 1; i < n; i++) {
		uint32_t v = order[i], j = i;
		for (; j > 0 && strcmp(b[order[j - 1]].name, b[v].name) > 0; j--)
			order[j] = order[j - 1];
		order[j] = v;
	}
}

/*
 * Check b[] and return the name order in order[]. Duplicate names are
 * rejected: they would share a permutation, and which of the two got a
 * slot would then depend on config order.
 */
static int validate(const struct maglev_backend *b, uint32_t n, uint32_t *order)
{
	if (n > EG_MAX_BACKENDS || (n > 0 && !b))
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++)
		if (!b[i].name || !b[i].name[0] || b[i].weight == 0)
			return -EINVAL;
	sort_by_name(b, order, n);
	for (uint32_t i = 1; i < n; i++)
		if (strcmp(b[order[i - 1]].name, b[order[i]].name) == 0)
			return -EINVAL;
	return 0;
}

/* Claim the next free slot in p's preference list. One always exists while slots remain. */
static void claim_slot(struct maglev *m, struct maglev_perm *p)
{
	while (m->table[p->pos] != MAGLEV_NONE) {
		p->pos += p->skip; /* both < size <= 2^24: cannot overflow */
		if (p->pos >= m->size)
			p->pos -= m->size;
	}
	m->table[p->pos] = p->idx;
	p->pos += p->skip;
	if (p->pos >= m->size)
		p->pos -= m->size;
}

/*
 * Maglev population with weights: each round, every backend earns its
 * weight in credit and claims one slot per max_weight of credit. The
 * heaviest backend claims every round, so this ends within size rounds,
 * and shares converge to weight / sum(weights).
 */
static void populate(struct maglev *m, struct maglev_perm *perm, uint32_t nup, uint32_t max_w)
{
	uint32_t filled = 0;

	for (;;) {
		for (uint32_t j = 0; j < nup; j++) {
			struct maglev_perm *p = &perm[j];
			p->credit += p->weight;
			if (p->credit < max_w)
				continue;
			p->credit -= max_w;
			claim_slot(m, p);
			if (++filled == m->size)
				return;
		}
	}
}

int maglev_build(struct maglev *m, const struct maglev_backend *b, uint32_t n)
{
	uint32_t order[EG_MAX_BACKENDS];
	struct maglev_perm perm[EG_MAX_BACKENDS];
	uint32_t nup = 0, max_w = 0;

	if (!m || !m->table || validate(b, n, order) < 0)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		const struct maglev_backend *be = &b[order[i]];
		uint32_t offset;
		if (!be->up)
			continue;
		perm[nup] = (struct maglev_perm){.idx = order[i], .weight = be->weight};
		maglev_permutation(be->name, m->size, &offset, &perm[nup].skip);
		perm[nup].pos = offset;
		if (be->weight > max_w)
			max_w = be->weight;
		nup++;
	}
	for (uint32_t i = 0; i < m->size; i++)
		m->table[i] = MAGLEV_NONE;
	if (nup > 0)
		populate(m, perm, nup, max_w);
	m->nbackends = n;
	return 0;
}

uint32_t maglev_lookup(const struct maglev *m, uint64_t key)
{
	if (!m || !m->table || m->size == 0)
		return MAGLEV_NONE;
	return m->table[key % m->size];
}

void maglev_free(struct maglev *m)
{
	if (!m)
		return;
	free(m->table);
	memset(m, 0, sizeof(*m));
}
