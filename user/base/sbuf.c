/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* sbuf.c - see sbuf.h. */
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sbuf_fixed(struct sbuf *s, char *arr, size_t cap)
{
	memset(s, 0, sizeof(*s));
	s->p = arr;
	s->cap = cap;
	s->fixed = 1;
	arr[0] = 0;
}

size_t sbuf_room(struct sbuf *s, size_t n)
{
	if (s->oom)
		return 0;
	if (s->fixed) {
		size_t room = s->cap - 1 - s->len;
		if (n > room) {
			s->cut = 1;
			return room;
		}
		return n;
	}
	if (s->len + n + 1 > s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 4096;
		while (ncap < s->len + n + 1)
			ncap *= 2;
		char *np = realloc(s->p, ncap);
		if (!np) {
			s->oom = 1;
			return 0;
		}
		s->p = np;
		s->cap = ncap;
		s->p[s->len] = 0; /* a string even if nothing is appended */
	}
	return n;
}

void sbuf_printf(struct sbuf *s, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		sbuf_put(s, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		s->oom = 1;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sbuf_put(s, big, (size_t)n);
	free(big);
}

void sbuf_reset(struct sbuf *s)
{
	s->len = 0;
	s->cut = 0;
	if (s->p)
		s->p[0] = 0;
}

void sbuf_free(struct sbuf *s)
{
	if (!s->fixed)
		free(s->p);
	memset(s, 0, sizeof(*s));
}
