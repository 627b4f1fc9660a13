/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * sbuf.h - the one string builder: appends into a heap buffer that grows
 * (command output, pages, messages) or into the caller's fixed array that
 * never does (per-request text: an OS version, a decision's explanation, a
 * rule written back).
 *
 *   struct sbuf s = {0};             growable; sbuf_free(&s) when done.
 *                                    A failed allocation sets oom and drops
 *                                    the rest (check oom once, at the end).
 *   sbuf_fixed(&s, arr, sizeof(arr)) into arr: what does not fit in
 *                                    cap - 1 bytes is cut and sets cut.
 *
 * p is NUL-terminated after every call (once anything was appended, or
 * from sbuf_fixed on). Only sbuf_printf uses stdio: the other appends are
 * cheap enough for every request.
 */
#ifndef EG_SBUF_H
#define EG_SBUF_H

#include <stddef.h>
#include <string.h>

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;   /* growable: an allocation failed and output was dropped */
	int fixed; /* p is the caller's array: never grown, never freed */
	int cut;   /* fixed: output did not fit and was cut */
};

/* Build into arr[0..cap) (cap >= 1); arr becomes "". */
void sbuf_fixed(struct sbuf *s, char *arr, size_t cap);

/* How many of n more bytes fit once it has grown (or been cut); 0 after a
 * failed allocation. The out-of-line half of sbuf_put. */
size_t sbuf_room(struct sbuf *s, size_t n);

/* The appends are inline: a decision makes a dozen of them. */
static inline void sbuf_put(struct sbuf *s, const char *d, size_t n)
{
	if (s->len + n >= s->cap || s->oom)
		n = sbuf_room(s, n);
	if (!n)
		return;
	memcpy(s->p + s->len, d, n);
	s->len += n;
	s->p[s->len] = 0;
}

static inline void sbuf_puts(struct sbuf *s, const char *str)
{
	sbuf_put(s, str, strlen(str));
}

static inline void sbuf_uint(struct sbuf *s, unsigned long long v) /* decimal */
{
	char d[24];
	size_t k = sizeof(d);
	do {
		d[--k] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sbuf_put(s, d + k, sizeof(d) - k);
}

void sbuf_printf(struct sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empty it (keeping its storage). */
void sbuf_reset(struct sbuf *s);
/* Growable: release the heap buffer (a no-op for a fixed one). */
void sbuf_free(struct sbuf *s);

#endif
