/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* bodysplice.c - see bodysplice.h and conn.h. */
#include "bodysplice.h"
#include "conn.h"
#include "ktls.h"
#include "upstream.h"

#include <errno.h>
#include <limits.h>
#include <sys/types.h>

static struct bodysplice_path g_path; /* zero: every body goes through user space */

void bodysplice_set_path(const struct bodysplice_path *p)
{
	g_path = *p;
}

/*
 * A body may move by splice only between two plaintext legs, only with a
 * Content-Length (a chunked body is re-framed here), and only once nothing
 * of it is buffered in user space: from then on the pipe holds the only
 * bytes in flight, so nothing can overtake them. The decision is sticky
 * until the body's last byte, so user-space reads never resume mid-body.
 */
int bodysplice_req_wanted(const struct conn *c)
{
	const struct upstream *u = c->up;
	if (c->r.splicing)
		return 1;
	return g_path.splice && u && !c->ssl && !u->ssl && c->st == CS_FORWARD &&
	       c->r.bmode == BODY_CLEN && !c->r.body_done && !c->r.head_pending &&
	       !(u->flags & (F_CONNECTING | F_TLSCONN)) && c->r.left >= g_path.min_body;
}

int bodysplice_resp_wanted(const struct conn *c)
{
	const struct upstream *u = c->up;
	if (!u)
		return 0;
	if (u->splicing)
		return 1;
	return g_path.splice && !c->ssl && !u->ssl && u->resp_started && !u->resp_done &&
	       u->bmode == BODY_CLEN && u->left >= g_path.min_body && !c->kp_req.held;
}

static int pipe_ready(struct krelay_pipe *p)
{
	return p->fd[0] >= 0 || krelay_pipe_open(p, g_path.pipe_size) == 0;
}

/*
 * One splice step of a body: src -> pipe -> dst, reading at most `left`
 * minus what the pipe holds (the next request's bytes stay on the socket).
 * Returns bytes delivered to dst (> 0), 0 when blocked (the blocked side's
 * readiness flag is cleared), -1 for EOF on src, or -errno.
 */
static ssize_t splice_step(struct krelay_pipe *p, uint64_t left, int src, uint32_t *src_flags,
			   int dst, uint32_t *dst_flags)
{
	uint64_t want = left - p->held;
	ssize_t n = krelay_splice(p, src, dst, want > SSIZE_MAX ? SSIZE_MAX : (size_t)want);
	if (n == 0)
		*(p->held ? dst_flags : src_flags) &= ~(p->held ? F_WR : F_RD);
	return n;
}

/* The request body, phone -> backend. 1 progress, 0 blocked/not applicable. */
int bodysplice_request(struct conn *c)
{
	struct upstream *u = c->up;
	if (!bodysplice_req_wanted(c) || c->in.len || u->out.len || c->r.body_done)
		return 0;
	if (!c->r.splicing) {
		if (!pipe_ready(&c->kp_req))
			return 0; /* no pipe (fd limit): user space moves it */
		c->r.splicing = 1;
	}
	ssize_t n = splice_step(&c->kp_req, c->r.left, c->fd, &c->flags, u->fd, &u->flags);
	if (n > 0) {
		c->r.left -= (uint64_t)n;
		c->r.bytes_in += (uint64_t)n;
		c->rx += (uint64_t)n;
		c->w->stats->bytes_from_clients += (uint64_t)n;
		c->w->stats->bytes_spliced += (uint64_t)n;
		if (!c->r.left) {
			c->r.body_done = 1;
			c->r.splicing = 0;
			krelay_pipe_close(&c->kp_req);
		}
		return 1;
	}
	if (n == 0)
		return 0;
	if (n == -1) { /* the phone stopped mid body: closed as in user space */
		c->flags |= F_EOF;
		return 1;
	}
	if (c->ktls && (n == -EINVAL || n == -EIO || n == -EBADMSG)) {
		relay_close(c, ktls_splice_failed(c, (int)-n));
		return -1;
	}
	relay_close(c, "backend went away mid request body");
	return -1;
}

/* The response body, backend -> phone. 1 progress, 0 blocked, -1 closed. */
int bodysplice_response(struct conn *c)
{
	struct upstream *u = c->up;
	if (!bodysplice_resp_wanted(c) || u->in.len || c->out.len || u->resp_done)
		return 0;
	if (!u->splicing) {
		if (!pipe_ready(&c->kp_resp))
			return 0;
		u->splicing = 1;
	}
	u->drained_turn = 0; /* splice stops at the body's end, not at an empty socket */
	ssize_t n = splice_step(&c->kp_resp, u->left, u->fd, &u->flags, c->fd, &c->flags);
	if (n > 0) {
		u->left -= (uint64_t)n;
		u->rx_bytes += (uint64_t)n;
		c->r.bytes_out += (uint64_t)n;
		c->w->stats->bytes_to_clients += (uint64_t)n;
		c->w->stats->bytes_spliced += (uint64_t)n;
		if (!u->left) {
			u->resp_done = 1;
			u->splicing = 0;
			krelay_pipe_close(&c->kp_resp);
		}
		return 1;
	}
	if (n == 0)
		return 0;
	relay_close(c, n == -1 ? "backend closed mid response body" : "splice failed");
	return -1;
}
