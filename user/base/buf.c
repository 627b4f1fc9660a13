/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* buf.c - see buf.h. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

int bufpool_init(struct bufpool *bp, unsigned keep)
{
	memset(bp, 0, sizeof(*bp));
	bp->free = calloc(keep ? keep : 1, sizeof(void *));
	if (!bp->free)
		return -1;
	bp->cap = keep;
	return 0;
}

void bufpool_destroy(struct bufpool *bp)
{
	for (unsigned i = 0; i < bp->nfree; i++)
		free(bp->free[i]);
	free(bp->free);
	memset(bp, 0, sizeof(*bp));
}

static void block_put(struct bufpool *bp, void *p, uint32_t cap)
{
	bp->in_use--;
	if (cap == BUF_BLOCK && bp->nfree < bp->cap)
		bp->free[bp->nfree++] = p;
	else
		free(p);
}

long buf_reserve(struct bufpool *bp, struct buf *b, size_t want, size_t max)
{
	if (!b->p) {
		size_t cap = want <= BUF_BLOCK ? BUF_BLOCK : want;
		if (cap > max && max >= want)
			cap = max;
		if (cap == BUF_BLOCK && bp->nfree)
			b->p = bp->free[--bp->nfree];
		else
			b->p = malloc(cap);
		if (!b->p)
			return -1;
		bp->in_use++;
		b->cap = (uint32_t)cap;
		b->off = b->len = 0;
	}
	if (b->cap - b->off - b->len >= want)
		return (long)(b->cap - b->off - b->len);
	if (b->off) { /* compact first: cheaper than growing */
		memmove(b->p, b->p + b->off, b->len);
		/* The tail of the old copy, past the new end, is stale. */
		if (b->wipe) {
			uint32_t from = b->len > b->off ? b->len : b->off;
			explicit_bzero(b->p + from, b->off + b->len - from);
		}
		b->off = 0;
		if (b->cap - b->len >= want)
			return (long)(b->cap - b->len);
	}
	if (b->cap < max) {
		size_t ncap = (size_t)b->cap * 2;
		while (ncap < b->len + want)
			ncap *= 2;
		if (ncap > max)
			ncap = max;
		char *np = malloc(ncap);
		if (!np)
			return -1;
		memcpy(np, b->p, b->len);
		if (b->wipe)
			explicit_bzero(b->p, b->len);
		block_put(bp, b->p, b->cap);
		bp->in_use++;
		b->p = np;
		b->cap = (uint32_t)ncap;
	}
	return (long)(b->cap - b->off - b->len);
}

void buf_release(struct bufpool *bp, struct buf *b)
{
	if (b->p && b->wipe)
		explicit_bzero(b->p + b->off, b->len);
	if (b->p)
		block_put(bp, b->p, b->cap);
	b->p = NULL;
	b->cap = b->off = b->len = 0;
}

void buf_consume(struct bufpool *bp, struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_release(bp, b);
		return;
	}
	if (b->wipe)
		explicit_bzero(b->p + b->off, n);
	b->off += (uint32_t)n;
	b->len -= (uint32_t)n;
}

int buf_append(struct bufpool *bp, struct buf *b, const void *d, size_t n, size_t max)
{
	long sp = buf_reserve(bp, b, n, max);
	if (sp < 0 || (size_t)sp < n)
		return -1;
	memcpy(buf_tail(b), d, n);
	b->len += (uint32_t)n;
	return 0;
}
