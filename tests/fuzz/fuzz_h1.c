/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * fuzz_h1.c - libFuzzer target for the HTTP/1.1 head parser and the chunked
 * scanner.
 *
 * Input: byte 0 picks the mode (bits 0-1: request, response, response to
 * HEAD, chunked body; bit 2: small limits), bytes 1-2 a split offset, the
 * rest is the message. Each message is parsed in one piece, then in two
 * pieces split at the offset (each piece in its own exactly-sized heap
 * copy, so the buffer also moves between calls), and small inputs once more
 * one byte at a time. All runs must give identical results, and successful
 * parses must satisfy the invariants the relay relies on.
 */
#include "h1.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);      \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct h1_limits small_lim = {
    .max_head = 128, .max_line = 40, .max_headers = 4, .max_chunk_ext = 8, .max_body = 64};

static char *dup_bytes(const uint8_t *p, size_t n)
{
	char *b = malloc(n ? n : 1);
	CHECK(b);
	memcpy(b, p, n);
	return b;
}

/* ---- heads ------------------------------------------------------------------- */

static int parse(int mode, const char *b, size_t n, struct h1_msg *m, const struct h1_limits *l)
{
	return mode == 0 ? h1_parse_request(b, n, m, l) : h1_parse_response(b, n, mode == 2, m, l);
}

static void same_str(struct h1_str a, const char *ba, struct h1_str b, const char *bb)
{
	CHECK(!a.p == !b.p);
	CHECK(a.n == b.n);
	if (a.p)
		CHECK(a.p - ba == b.p - bb);
}

/* Results of two parses of the same bytes at different addresses agree. */
static void same_result(int ra, const struct h1_msg *a, const char *ba, int rb,
			const struct h1_msg *b, const char *bb)
{
	CHECK(ra == rb);
	if (ra < 0) {
		CHECK(a->err == b->err && a->err_pos == b->err_pos &&
		      a->err_status == b->err_status);
		return;
	}
	if (ra == 0)
		return;
	CHECK(a->head_len == b->head_len && a->flags == b->flags && a->nhdr == b->nhdr);
	CHECK(a->method == b->method && a->status == b->status && a->minor == b->minor);
	CHECK(a->content_length == b->content_length);
	same_str(a->method_str, ba, b->method_str, bb);
	same_str(a->target, ba, b->target, bb);
	same_str(a->path, ba, b->path, bb);
	same_str(a->query, ba, b->query, bb);
	same_str(a->host, ba, b->host, bb);
	same_str(a->reason, ba, b->reason, bb);
	for (unsigned i = 0; i < a->nhdr; i++) {
		same_str(a->hdr[i].name, ba, b->hdr[i].name, bb);
		same_str(a->hdr[i].value, ba, b->hdr[i].value, bb);
	}
}

static void in_head(struct h1_str s, const char *buf, size_t head_len)
{
	if (s.p)
		CHECK(s.p >= buf && s.p + s.n <= buf + head_len);
}

/* What the relay relies on after a successful parse. */
static void check_ok(int mode, int rc, const struct h1_msg *m, const char *buf, size_t len)
{
	if (rc < 0) {
		CHECK(m->err && m->err_pos <= len);
		CHECK(m->err_status >= 400 && m->err_status <= 505);
		return;
	}
	if (rc == 0)
		return;
	size_t hl = m->head_len;
	CHECK((size_t)rc == hl && hl <= len && hl >= 4);
	CHECK(memcmp(buf + hl - 4, "\r\n\r\n", 4) == 0);
	unsigned fr = m->flags & (H1_F_CHUNKED | H1_F_CLEN | H1_F_EOF_BODY | H1_F_NO_BODY);
	CHECK(fr && (fr & (fr - 1)) == 0);
	CHECK(m->nhdr <= H1_MAX_HEADERS);
	CHECK(m->minor == 0 || m->minor == 1);
	CHECK(m->content_length <= INT64_MAX);
	if (mode == 0) {
		CHECK(!(m->flags & H1_F_EOF_BODY));
		CHECK(m->method != H1_M_CONNECT && m->method_str.n > 0 && m->target.n > 0);
		CHECK(m->minor == 0 || h1_find(m, "host"));
	} else {
		CHECK(m->status >= 100 && m->status <= 599);
	}
	/* the two framing headers can never both be present */
	CHECK(!(h1_find(m, "content-length") && h1_find(m, "transfer-encoding")));
	in_head(m->method_str, buf, hl);
	in_head(m->target, buf, hl);
	in_head(m->path, buf, hl);
	in_head(m->query, buf, hl);
	in_head(m->host, buf, hl);
	in_head(m->reason, buf, hl);
	for (unsigned i = 0; i < m->nhdr; i++) {
		const struct h1_header *h = &m->hdr[i];
		in_head(h->name, buf, hl);
		in_head(h->value, buf, hl);
		CHECK(h->name.n > 0 && !memchr(h->name.p, ':', h->name.n));
		CHECK(!memchr(h->value.p, '\r', h->value.n) &&
		      !memchr(h->value.p, '\n', h->value.n));
		(void)h1_is_hop_by_hop(m, h->name);
		(void)h1_token_in_list(h->value, "close");
	}
}

static void fuzz_head(int mode, const struct h1_limits *lim, const uint8_t *p, size_t n,
		      size_t split)
{
	static struct h1_msg a, b;
	char *whole = dup_bytes(p, n);
	memset(&a, 0, sizeof(a));
	int ra = parse(mode, whole, n, &a, lim);
	check_ok(mode, ra, &a, whole, n);

	/* two pieces */
	memset(&b, 0, sizeof(b));
	char *first = dup_bytes(p, split);
	int rb = parse(mode, first, split, &b, lim);
	if (rb != 0) {
		same_result(ra, &a, whole, rb, &b, first);
	} else {
		char *again = dup_bytes(p, n);
		rb = parse(mode, again, n, &b, lim);
		same_result(ra, &a, whole, rb, &b, again);
		free(again);
	}
	free(first);

	/* one byte at a time */
	if (n <= 256) {
		memset(&b, 0, sizeof(b));
		rb = 0;
		for (size_t k = 1; k <= n && rb == 0; k++) {
			char *pre = dup_bytes(p, k);
			rb = parse(mode, pre, k, &b, lim);
			if (rb != 0 || k == n)
				same_result(ra, &a, whole, rb, &b, pre);
			free(pre);
		}
	}
	free(whole);
}

/* ---- chunked ----------------------------------------------------------------- */

struct cres {
	ssize_t consumed;
	int done;
	const char *err;
	uint64_t err_off;
	size_t npay;
	char *pay;
	size_t cap;
};

static void on_data(void *arg, const char *p, size_t n)
{
	struct cres *r = arg;
	CHECK(n > 0 && r->npay + n <= r->cap);
	memcpy(r->pay + r->npay, p, n);
	r->npay += n;
}

/* Feed p[0..n) in pieces ending at the given cut offsets. */
static void chunk_run(const struct h1_limits *lim, const uint8_t *p, size_t n, const size_t *cuts,
		      size_t ncuts, struct cres *r)
{
	struct h1_chunk c;
	h1_chunk_init(&c, lim);
	r->consumed = 0;
	r->done = 0;
	r->npay = 0;
	size_t off = 0;
	for (size_t i = 0; i <= ncuts && !r->done; i++) {
		size_t end = i < ncuts ? cuts[i] : n;
		if (end < off)
			continue;
		char *b = dup_bytes(p + off, end - off);
		ssize_t rc = h1_chunk_feed(&c, b, end - off, &r->done, on_data, r);
		free(b);
		if (rc < 0) {
			r->consumed = -1;
			r->err = c.err;
			r->err_off = c.err_off;
			CHECK(c.err &&
			      (c.err_status == 400 || c.err_status == 413 || c.err_status == 431));
			return;
		}
		CHECK((size_t)rc <= end - off);
		CHECK(r->done || (size_t)rc == end - off);
		off += (size_t)rc;
		r->consumed = (ssize_t)off;
	}
}

static void same_chunk(const struct cres *a, const struct cres *b)
{
	CHECK(a->consumed == b->consumed && a->done == b->done);
	CHECK(a->err == b->err && a->err_off == b->err_off);
	if (a->consumed >= 0)
		CHECK(a->npay == b->npay && memcmp(a->pay, b->pay, a->npay) == 0);
}

static void fuzz_chunked(const struct h1_limits *lim, const uint8_t *p, size_t n, size_t split)
{
	struct cres a = {.cap = n, .pay = malloc(n ? n : 1)};
	struct cres b = {.cap = n, .pay = malloc(n ? n : 1)};
	CHECK(a.pay && b.pay);
	chunk_run(lim, p, n, NULL, 0, &a);
	if (a.done) {
		CHECK(a.consumed >= 5 && p[a.consumed - 1] == '\n' && p[a.consumed - 2] == '\r');
		CHECK(a.npay < (size_t)a.consumed);
	}
	chunk_run(lim, p, n, &split, 1, &b);
	same_chunk(&a, &b);
	if (n <= 256) {
		size_t cuts[256];
		for (size_t i = 0; i < n; i++)
			cuts[i] = i + 1;
		chunk_run(lim, p, n, cuts, n, &b);
		same_chunk(&a, &b);
	}
	free(a.pay);
	free(b.pay);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	int mode = data[0] & 3;
	const struct h1_limits *lim = (data[0] & 4) ? &small_lim : NULL;
	size_t n = size - 3;
	size_t split = ((size_t)data[1] << 8 | data[2]) % (n + 1);
	const uint8_t *p = data + 3;
	if (mode == 3)
		fuzz_chunked(lim, p, n, split);
	else
		fuzz_head(mode, lim, p, n, split);
	return 0;
}
