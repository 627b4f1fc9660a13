/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * buf.h - byte buffers for connections, with storage taken from and given back
 * to a per-worker pool. An idle connection (a phone between requests, or a
 * long-poll waiting for its answer) holds no buffer at all: that is how an
 * idle TLS connection stays within a few KiB.
 *
 * Data lives at p[off, off+len). Storage is BUF_BLOCK bytes from the pool, or
 * a larger malloc'd block when a head or an inspected body needs it.
 */
#ifndef EG_BUF_H
#define EG_BUF_H

#include <stddef.h>
#include <stdint.h>

#define BUF_BLOCK 16384u

struct bufpool {
	void **free;	 /* stack of BUF_BLOCK blocks */
	unsigned nfree;	 /* blocks on the stack */
	unsigned cap;	 /* stack capacity: more are freed, not kept */
	uint64_t in_use; /* blocks handed out (for metrics / memory tests) */
};

struct buf {
	char *p;
	uint32_t cap, off, len;
	/* 1 = the bytes may hold credentials (request heads): every byte that
	 * leaves the buffer (consumed, released, moved by compaction or growth)
	 * is zeroed first, so pooled and freed storage never keeps them. Set by
	 * the owner; kept across buf_release. */
	uint32_t wipe;
};

int bufpool_init(struct bufpool *bp, unsigned keep);
void bufpool_destroy(struct bufpool *bp);

/* Ensure at least `want` contiguous free bytes at the end, growing storage up
 * to `max` total capacity. Returns the free bytes available (may be < want if
 * max is reached), or -1 on allocation failure. */
long buf_reserve(struct bufpool *bp, struct buf *b, size_t want, size_t max);
/* Free bytes at the end (no allocation). */
static inline size_t buf_space(const struct buf *b)
{
	return b->p ? b->cap - b->off - b->len : 0;
}
static inline char *buf_data(const struct buf *b)
{
	return b->p + b->off;
}
static inline char *buf_tail(const struct buf *b)
{
	return b->p + b->off + b->len;
}
/* Drop n bytes from the front (zeroed first if b->wipe); storage returns to
 * the pool when empty. */
void buf_consume(struct bufpool *bp, struct buf *b, size_t n);
/* Append n bytes (growing up to max). 0, or -1 if it does not fit. */
int buf_append(struct bufpool *bp, struct buf *b, const void *d, size_t n, size_t max);
/* Return storage to the pool (contents are lost: zeroed first if b->wipe). */
void buf_release(struct bufpool *bp, struct buf *b);

#endif
