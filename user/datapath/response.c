/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * response.c - the backend's answer on its way to the client: its head
 * parsed (strictly, like a request's) and rewritten, its body framed and
 * copied (or spliced, bodysplice.c), and the exchange's end: the backend
 * connection kept idle for its identity's next request, or closed.
 */
#include "conn.h"
#include "log.h"
#include "upstream.h"

#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int build_response_head(struct conn *c, struct h1_msg *m)
{
	struct worker *w = c->w;
	struct buf *o = &c->out;
	const char *end = buf_data(&c->up->in) + m->head_len;
	/* h1 parsed a three-digit status (100..599): no snprintf per response */
	char line[] = "HTTP/1.1 000 ";
	int ok = 0;
	line[9] = (char)('0' + m->status / 100 % 10);
	line[10] = (char)('0' + m->status / 10 % 10);
	line[11] = (char)('0' + m->status % 10);
	ok |= buf_append(&w->pool, o, line, sizeof(line) - 1, OUT_MAX);
	ok |= buf_append(&w->pool, o, m->reason.p ? m->reason.p : "", m->reason.n, OUT_MAX);
	ok |= buf_append(&w->pool, o, "\r\n", 2, OUT_MAX);
	for (unsigned i = 0; i < m->nhdr; i++) {
		const struct h1_header *h = &m->hdr[i];
		if (h1_is_hop_by_hop(m, h->name))
			continue;
		const char *scan = h->value.n ? h->value.p + h->value.n : h->name.p + h->name.n;
		const char *nl = memchr(scan, '\n', (size_t)(end - scan));
		if (!nl)
			return -1;
		ok |= buf_append(&w->pool, o, h->name.p, (size_t)(nl + 1 - h->name.p), OUT_MAX);
	}
	/* An HTTP/1.0 client cannot read chunked: it gets the payload, ended
	 * by the close (response_step de-chunks; close_after is set). */
	if (c->up->bmode == BODY_CHUNKED && !c->r.http10)
		ok |= buf_append(&w->pool, o, "Transfer-Encoding: chunked\r\n", 28, OUT_MAX);
	if (c->r.close_after)
		ok |= buf_append(&w->pool, o, "Connection: close\r\n", 19, OUT_MAX);
	else if (c->r.http10)
		ok |= buf_append(&w->pool, o, "Connection: keep-alive\r\n", 24, OUT_MAX);
	ok |= buf_append(&w->pool, o, "\r\n", 2, OUT_MAX);
	return ok ? -1 : 0;
}

/* The exchange on this connection is complete: next request or close. */
static void exchange_done(struct conn *c)
{
	struct worker *w = c->w;
	struct upstream *u = c->up;
	if (c->r.hanging)
		w->stats->hanging_open--;
	request_finish(c);
	if (u) {
		u->nreq++;
		if (u->in.len || (u->ssl && SSL_has_pending(u->ssl))) {
			/* More than the response's framing declared: whatever it is, it
			 * is nobody's answer. Never forwarded, never reused. */
			log_warn(
			    "event=backend_error backend=%s reason=\"bytes after the end of the "
			    "response\" action=close_backend",
			    w->be.b[u->backend].cfg->name);
			w->stats->backend_failures[u->backend]++;
			upstream_close(c);
		} else if (u->resp_close || !c->r.body_done || (u->flags & F_EOF) ||
			   w->be.b[u->backend].cfg->reuse == CFG_REUSE_NEVER) {
			upstream_close(c);
		} else {
			/* Idle in the set until its identity's next request. From now
			 * on a readable edge means it is unfit (upstream_sweep); bytes that
			 * came before this point are found when it is taken again
			 * (upstream_take), without a syscall per request here. */
			c->up = NULL;
			u->flags &= ~F_RD;
			u->idle_turn = loop_turn(w->loop);
			u->idle_clean = u->drained_turn == u->idle_turn;
			upstream_idle_put(c, u);
		}
	}
	if (!c->r.body_done || c->r.close_after || w->draining)
		c->flags |= F_CLOSING;
	c->st = CS_HEAD;
	request_reset(c);
}

void response_bad_gateway(struct conn *c, const char *why)
{
	char q[96];
	log_warn("event=backend_error backend=%s reason=%s",
		 c->r.backend >= 0 ? c->w->be.b[c->r.backend].cfg->name : "-",
		 log_quote(q, sizeof(q), why, (size_t)-1));
	if (c->r.backend >= 0)
		c->w->stats->backend_failures[c->r.backend]++;
	upstream_close(c);
	if (c->r.resp_seen) {
		relay_close(c, why);
		return;
	}
	if (c->r.hanging)
		c->w->stats->hanging_open--;
	c->r.hanging = 0;
	c->r.sv = SV_LOCAL;
	answer_text(c, 502, why, !c->r.body_done);
}

/*
 * A reused backend connection ended before a byte of the answer: the backend
 * closed it after the previous response (SOGo does, without saying so) and
 * the FIN crossed our request. Nothing is replayed. The phone's connection is
 * closed the same way, without an answer, so the phone sees exactly what it
 * would see talking to the backend directly, a kept-alive connection closed
 * before an answer, and retries on a new one as HTTP clients do (RFC 9112
 * 9.3.1; HAProxy's "http-reuse safe" relies on the same). A 502 instead would
 * turn a routine keep-alive race into an error on the phone. This cannot hit
 * a phone's first request: backend connections belong to one phone
 * connection, so a reused one means the phone's connection is reused too.
 */
void response_reused_lost(struct conn *c, const char *why)
{
	char q[96];
	log_warn("event=backend_error backend=%s reason=%s action=close_client",
		 c->r.backend >= 0 ? c->w->be.b[c->r.backend].cfg->name : "-",
		 log_quote(q, sizeof(q), why, (size_t)-1));
	if (c->r.backend >= 0)
		c->w->stats->backend_failures[c->r.backend]++;
	c->r.status = 502; /* logged; the phone gets the close */
	c->r.sv = SV_LOCAL;
	c->r.why = why;
	relay_close(c, why);
}

int response_step(struct conn *c)
{
	struct worker *w = c->w;
	struct upstream *u = c->up;
	if (c->st != CS_FORWARD || !u || (u->flags & (F_CONNECTING | F_TLSCONN)))
		return 0;
	int progress = 0;
	while (!u->resp_started) {
		if (!u->in.len) {
			if ((u->flags & F_EOF) && u->nreq && !u->rx_bytes) {
				response_reused_lost(c, "backend closed a reused connection before "
							"answering (request not replayed)");
				return -1;
			}
			if (u->flags & F_EOF) {
				response_bad_gateway(
				    c, "backend closed the connection without an answer");
				return 1;
			}
			return progress;
		}
		if (!u->hm && !(u->hm = calloc(1, sizeof(*u->hm))))
			return -1;
		int r =
		    h1_parse_response(buf_data(&u->in), u->in.len, c->r.is_head, u->hm, &w->lim);
		if (r == 0) {
			if (u->flags & F_EOF) {
				response_bad_gateway(c, "backend closed mid response head");
				return 1;
			}
			return progress;
		}
		if (r < 0) {
			response_bad_gateway(c, u->hm->err);
			return 1;
		}
		struct h1_msg *m = u->hm;
		if (m->status == 101) { /* we never forward Upgrade */
			response_bad_gateway(c,
					     "101 Switching Protocols without an upgrade request");
			return 1;
		}
		if (m->status < 200) { /* interim: we answer 100-continue ourselves */
			buf_consume(&w->pool, &u->in, (size_t)r);
			h1_msg_reset(m);
			progress = 1;
			continue;
		}
		c->r.resp_seen = 1;
		c->r.status = m->status;
		/* The backend authenticates this connection itself: it stays its
		 * identity's for life (see struct upstream). */
		for (const struct h1_header *h = h1_find(m, "WWW-Authenticate"); h;
		     h = h1_find_next(m, h, "WWW-Authenticate"))
			u->priv |= upstream_auth_scheme(&h->value);
		u->resp_close = !!(m->flags & H1_F_CONN_CLOSE);
		u->eof_body = !!(m->flags & H1_F_EOF_BODY);
		if (m->flags & H1_F_CHUNKED) {
			u->bmode = BODY_CHUNKED;
			h1_chunk_init(&u->chunk, NULL);
		} else if ((m->flags & H1_F_CLEN) && !(m->flags & H1_F_NO_BODY) &&
			   m->content_length) {
			u->bmode = BODY_CLEN;
			u->left = m->content_length;
		} else {
			u->bmode = BODY_NONE;
		}
		if (u->eof_body || (u->bmode == BODY_CHUNKED && c->r.http10))
			c->r.close_after = 1;
		if (build_response_head(c, m) < 0) {
			response_bad_gateway(c, "response head too large");
			return 1;
		}
		c->r.bytes_out += (uint64_t)r;
		buf_consume(&w->pool, &u->in, (size_t)r);
		free(u->hm);
		u->hm = NULL;
		u->resp_started = 1;
		u->resp_done = u->bmode == BODY_NONE && !u->eof_body;
		progress = 1;
	}
	/* body */
	while (!u->resp_done && u->in.len) {
		long sp = buf_reserve(&w->pool, &c->out, BUF_BLOCK, OUT_MAX);
		if (sp <= 0)
			break;
		size_t n = u->in.len < (size_t)sp ? u->in.len : (size_t)sp;
		if (u->bmode == BODY_CLEN) {
			if (n > u->left)
				n = (size_t)u->left;
			u->left -= n;
			u->resp_done = u->left == 0;
		} else if (u->bmode == BODY_CHUNKED) {
			int done = 0;
			/* For HTTP/1.0 only the payload goes out (at most n bytes). */
			struct conn_sink k1 = {.p = (uint8_t *)buf_tail(&c->out)};
			ssize_t k = h1_chunk_feed(&u->chunk, buf_data(&u->in), n, &done,
						  c->r.http10 ? conn_sink_put : NULL, &k1);
			if (k < 0) {
				response_bad_gateway(c, u->chunk.err);
				return 1;
			}
			n = (size_t)k;
			u->resp_done = done;
			if (c->r.http10) {
				c->out.len += (uint32_t)k1.len;
				buf_consume(&w->pool, &u->in, n);
				c->r.bytes_out += k1.len;
				progress = 1;
				if (n == 0)
					break;
				continue;
			}
		}
		memcpy(buf_tail(&c->out), buf_data(&u->in), n);
		c->out.len += (uint32_t)n;
		buf_consume(&w->pool, &u->in, n);
		c->r.bytes_out += n;
		progress = 1;
		if (n == 0)
			break;
	}
	if (!u->resp_done && bodysplice_resp_wanted(c)) {
		int k = bodysplice_response(c);
		if (k < 0)
			return -1;
		progress |= k;
	}
	if (!u->resp_done && (u->flags & F_EOF) && !u->in.len) {
		if (u->eof_body) {
			u->resp_done = 1;
		} else {
			relay_close(c, "backend closed mid response body");
			return -1;
		}
	}
	if (u->resp_done) {
		exchange_done(c);
		progress = 1;
	}
	return progress;
}
