/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * request.c - one request of a connection, from its head to its end:
 *   head      h1 (framing, path) -> eas_request_from_h1 -> the gate
 *             (gate_decide, on the head or once its body was inspected)
 *             -> the steering key (steer.h) -> apply_verdict: forward, or
 *             answer (answer.c) and push the kernel drop a verdict asks for
 *   forward   choose the backend (Maglev), take or open its connection
 *             (upstream.c), rewrite the head for it, then move the body
 *   end       request_finish: the access log line, counters, gate_done
 */
#include "conn.h"
#include "bpfmaps.h"
#include "eas_answer.h"
#include "gzbody.h"
#include "log.h"
#include "steer.h"
#include "upstream.h"
#include "wbxml.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* --- request bookkeeping ---------------------------------------------------- */

/*
 * The one place an admitted request's throttle slot is given back. Every end
 * of a request passes here (request_finish, relay_close, and request_reset as the
 * last guard), and the ticket is cleared, so each admitted request is
 * released exactly once whatever path it ended on.
 */
void request_release(struct conn *c, int status)
{
	if (c->r.tt.admitted && c->w->gate)
		gate_throttle_done(c->w->gate, &c->r.tt, status);
	memset(&c->r.tt, 0, sizeof(c->r.tt));
}

void request_reset(struct conn *c)
{
	request_release(c, 0);
	memset(&c->r, 0, sizeof(c->r));
	c->r.cmd = EAS_CMD_NONE;
	c->r.backend = -1;
	c->r.t0_us = now_us();
}

static const char *sv_name(enum stats_verdict v)
{
	static const char *const n[SV__COUNT] = {"allow",    "block",	"quarantine",
						 "throttle", "refused", "local"};
	return n[v];
}

/* The request is answered: log it, count it, tell the gate. */
void request_finish(struct conn *c)
{
	struct worker *w = c->w;
	uint64_t dur = now_us() - c->r.t0_us;
	stats_request(w->stats, c->r.cmd, c->r.status, c->r.sv, dur);
	if (c->r.backend >= 0)
		w->stats->backend_requests[c->r.backend]++;
	if (w->cfg->access_log) {
		char ip[64], qu[128], qd[48], qt[48], qr[96];
		log_info("event=access client=%s user=%s device=%s type=%s cmd=%s proto=%d.%d "
			 "backend=%s status=%d verdict=%s rule=%s bytes_in=%llu bytes_out=%llu "
			 "dur_ms=%.1f%s%s",
			 relay_peer_ip(c, ip, sizeof(ip)),
			 log_quote(qu, sizeof(qu), c->r.user, (size_t)-1),
			 log_quote(qd, sizeof(qd), c->r.device_id, (size_t)-1),
			 log_quote(qt, sizeof(qt), c->r.device_type, (size_t)-1),
			 eas_cmd_name(c->r.cmd), c->r.proto / 10, c->r.proto % 10,
			 c->r.backend >= 0 ? w->be.b[c->r.backend].cfg->name : "-", c->r.status,
			 sv_name(c->r.sv), log_quote(qr, sizeof(qr), c->r.rule, (size_t)-1),
			 (unsigned long long)c->r.bytes_in, (unsigned long long)c->r.bytes_out,
			 (double)dur / 1000.0, c->r.why ? " reason=" : "",
			 c->r.why ? c->r.why : "");
	}
	if (w->gate && c->r.device_id[0])
		gate_done(w->gate, c->r.user, c->r.device_id, c->r.cmd, c->r.status,
			  c->r.backend >= 0 && c->r.resp_seen, time(NULL));
	request_release(c, c->r.status);
	c->nreq++;
}

/* --- the head ------------------------------------------------------------------ */

/* Drop the parsed head from c->in (and its parse state): the request is now
 * either relayed or answered. */
void request_commit_head(struct conn *c)
{
	if (c->hm && c->r.head_parsed)
		buf_consume(&c->w->pool, &c->in, c->hm->head_len);
	free(c->hm);
	c->hm = NULL;
	free(c->eas);
	c->eas = NULL;
	c->r.head_parsed = 0;
	c->r.head_pending = 0;
}

/* snprintf(dst, dsz, "%s", src) without the format machinery (per request) */
static void copy_field(char *dst, size_t dsz, const char *src)
{
	size_t n = strnlen(src, dsz - 1);
	memcpy(dst, src, n);
	dst[n] = 0;
}

/*
 * Hand the rest of this connection to the XDP filter. Called when the blocked
 * answer is queued, before it is written: once the phone has read it, nothing
 * it sends on this flow can reach us (pushed after the answer, a next request
 * sent at once could still arrive here). XDP sees ingress only: the answer
 * and its retransmissions still leave.
 */
static void push_xdp_verdict(struct conn *c)
{
	struct worker *w = c->w;
	struct eg_flow_key k;
	struct eg_flow_verdict v = {0};
	/* On a plain listener the peer is the load balancer that ended TLS:
	 * its connection may carry other phones' requests next. */
	if (!conn_is_tls(c)) {
		log_debug(
		    "event=xdp_verdict_skipped reason=\"plain listener: the peer is a proxy\"");
		return;
	}
	eg_flow_key_from_addrs(&k, (struct sockaddr *)&c->peer, (struct sockaddr *)&c->local);
	v.action = w->cfg->xdp.action_rst ? EG_ACT_RST : EG_ACT_DROP;
	v.reason = c->r.xdp_reason ? (uint8_t)c->r.xdp_reason : EG_REASON_BLOCKED;
	unsigned ttl = c->r.xdp_ttl ? c->r.xdp_ttl : w->cfg->xdp.verdict_ttl_s;
	v.expires_ns = eg_mono_ns() + (uint64_t)ttl * 1000000000ull;
	v.device_key = c->r.steer_key;
	int e = bpfmaps_flow_set(w->bpf, &k, &v);
	char qu[64];
	log_info("event=xdp_verdict client=%s action=%s ttl_s=%u result=%d",
		 relay_peer_ip(c, qu, sizeof(qu)), v.action == EG_ACT_RST ? "rst" : "drop", ttl, e);
}

/*
 * The body's framing, from the complete head in c->hm. Relaying re-frames a
 * chunked body and drops Transfer-Encoding (hop by hop): a coding before
 * chunked would silently disappear, so it is refused (RFC 9112 6.1: a
 * server that does not implement a transfer coding answers 501).
 * 0, or 1 when the request was answered.
 */
static int head_framing(struct conn *c)
{
	struct worker *w = c->w;
	struct h1_msg *m = c->hm;
	c->r.head_parsed = 1;
	c->r.is_head = m->method == H1_M_HEAD;
	c->r.http10 = m->minor == 0;
	c->r.expect = !!(m->flags & H1_F_EXPECT_CONTINUE);
	/* A draining worker says so on every answer, so the client does not
	 * send another request on a connection about to close. */
	c->r.close_after = (m->flags & H1_F_CONN_CLOSE) || w->draining;
	if (m->flags & H1_F_CHUNKED) {
		c->r.bmode = BODY_CHUNKED;
		h1_chunk_init(&c->r.chunk, &w->lim);
	} else if ((m->flags & H1_F_CLEN) && m->content_length) {
		c->r.bmode = BODY_CLEN;
		c->r.left = m->content_length;
	} else {
		c->r.bmode = BODY_NONE;
	}
	c->r.body_done = c->r.bmode == BODY_NONE;
	/* RFC 9112 6.1: a coding we cannot decode (gzip, compress, deflate as a
	 * transfer-coding) gets 501; forwarding it would hand the backend a body
	 * whose framing we never checked. */
	if (m->flags & H1_F_TE_CODED) {
		answer_refuse(c, 501, "transfer-coding other than chunked refused (RFC 9112 6.1)");
		return 1;
	}
	return 0;
}

/* Is it a path this gateway relays (ActiveSync, Autodiscover), with a method
 * ActiveSync accepts? 0 (*pk set), or 1 when the request was answered. */
static int head_path(struct conn *c, enum eas_path *pk)
{
	struct h1_msg *m = c->hm;
	*pk = eas_classify_path(m->path.p, m->path.n);
	if (*pk == EAS_PATH_OTHER) {
		c->r.sv = SV_LOCAL;
		answer_text(c, 404, "not an ActiveSync or Autodiscover path", 0);
		return 1;
	}
	if (*pk == EAS_PATH_EAS && m->method != H1_M_OPTIONS && m->method != H1_M_POST) {
		c->r.sv = SV_REFUSED;
		answer_text(c, 405, "ActiveSync accepts only OPTIONS and POST", 0);
		return 1;
	}
	return 0;
}

/* Classify the request (c->eas, kept until the gate decided) and note what
 * its log line shows. 0, 1 when it was refused (answered), -1 out of memory. */
static int head_classify(struct conn *c, enum eas_path pk)
{
	struct eas_req *e = c->eas ? c->eas : malloc(sizeof(*e));
	if (!e)
		return -1;
	c->eas = e;
	int bad = eas_request_from_h1(e, c->hm, pk, c->w->cfg->strict_device_id) < 0;
	c->r.cmd = e->cmd;
	c->r.proto = e->proto;
	c->r.hanging = eas_cmd_is_hanging(e->cmd);
	copy_field(c->r.user, sizeof(c->r.user), e->identity);
	copy_field(c->r.device_id, sizeof(c->r.device_id), e->device_id);
	copy_field(c->r.device_type, sizeof(c->r.device_type), e->device_type);
	if (!bad)
		return 0;
	char body[256];
	int n = snprintf(body, sizeof(body), "%d %s: %s\n", e->err_status,
			 eas_http_reason(e->err_status), e->err ? e->err : "malformed");
	c->r.why = e->err;
	c->r.sv = SV_REFUSED;
	char hdr[64] = "";
	if (e->err_eas_status)
		snprintf(hdr, sizeof(hdr), "X-MS-ASError: %d\r\n", e->err_eas_status);
	answer_local(c, e->err_status ? e->err_status : 400, hdr, body, (size_t)n, 0);
	return 1;
}

/*
 * Must the gate see the body before it decides (gate_wants_body)? Then
 * c waits in CS_INSPECT for it (or the request is refused: DeviceInformation
 * that cannot be read must not pass unread). 1 when the decision waits or
 * the request was answered, 0 to decide on the head.
 */
static int head_wants_body(struct conn *c)
{
	struct worker *w = c->w;
	/* limits.inspect_body = 0 is the admin's "never read bodies". */
	int want = w->gate && c->r.bmode != BODY_NONE && w->cfg->limits.inspect_body
		       ? gate_wants_body(w->gate, c->eas)
		       : GATE_BODY_NO;
	if (want == GATE_BODY_DEVINFO && c->r.bmode == BODY_CLEN &&
	    c->r.left > w->cfg->limits.inspect_body) {
		c->r.sv = SV_REFUSED;
		answer_text(c, 413, "body larger than limits.inspect_body, cannot be inspected", 0);
		return 1;
	}
	if (want == GATE_BODY_NO ||
	    (c->r.bmode != BODY_CHUNKED && c->r.left > w->cfg->limits.inspect_body))
		return 0;
	c->st = CS_INSPECT;
	c->r.inspect_need = (uint8_t)want;
	if (c->r.expect) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		buf_append(&w->pool, &c->out, cont, sizeof(cont) - 1, OUT_MAX);
		c->r.sent_continue = 1;
	}
	return 1;
}

/*
 * The steering key (steer.h) of the classified request, and what its
 * backend connection must be: kept per identity (struct upstream), and
 * marked when the request's Authorization authenticates the connection.
 */
static void steer(struct conn *c)
{
	const struct eas_req *e = c->eas;
	const struct h1_header *a = h1_find(c->hm, "Authorization");
	c->r.steer_key = steer_key(&c->w->steer_secret, e->identity, e->device_id,
				   a ? a->value.p : NULL, a ? a->value.n : 0, (uintptr_t)c);
	c->r.owner = e->identity[0] ? c->r.steer_key | 1 : 0;
	for (; a; a = h1_find_next(c->hm, a, "Authorization"))
		c->r.conn_auth |= upstream_auth_scheme(&a->value);
}

/*
 * Act on the gate's verdict v (NULL: no gate, everything is forwarded):
 * steer, then forward, or answer here (pushing a kernel drop for the flow
 * when the verdict says so). body_len >= 0: the whole body, that many bytes
 * after the head in c->in, was read for inspection; an answer drops it so
 * the connection may stay. -1: the body (if any) is still on its way.
 * Returns 1, or -1 on an internal error.
 */
static int apply_verdict(struct conn *c, const struct gate_verdict *v, ssize_t body_len)
{
	struct worker *w = c->w;
	steer(c);
	if (v) {
		copy_field(c->r.rule, sizeof(c->r.rule), v->rule);
		c->r.sv = v->sv;
		c->r.tt = v->tt;
	}
	if (!v || v->action != GATE_ANSWER)
		return request_forward(c) < 0 ? -1 : 1;
	c->r.xdp_drop = v->xdp_drop;
	c->r.xdp_reason = v->xdp_reason;
	c->r.xdp_ttl = v->xdp_ttl;
	if (body_len >= 0) {
		c->r.body_done = 1;
		c->r.left = 0;
	}
	answer_verdict(c, v);
	if (c->r.xdp_drop && w->bpf)
		push_xdp_verdict(c);
	if (body_len >= 0) {
		buf_consume(&w->pool, &c->in, (size_t)body_len);
		c->r.bytes_in += (uint64_t)body_len;
	}
	return 1;
}

/*
 * A complete request head is in c->hm. The pipeline: HTTP (framing, path)
 * -> EAS (eas_request_from_h1) -> the gate (here, or in request_inspect_step once
 * the body it needs is read) -> the steering key -> forward or answer.
 * Returns 1, or -1 on an internal error.
 */
static int head_complete(struct conn *c)
{
	struct worker *w = c->w;
	enum eas_path pk;
	int r;
	if (head_framing(c) || head_path(c, &pk))
		return 1;
	if ((r = head_classify(c, pk)) != 0)
		return r;
	if (head_wants_body(c))
		return 1;
	if (!w->gate)
		return apply_verdict(c, NULL, -1);
	struct gate_verdict v;
	gate_decide(w->gate, c->eas, NULL, 0, time(NULL), &v);
	return apply_verdict(c, &v, -1);
}

int request_head_step(struct conn *c)
{
	struct worker *w = c->w;
	if (!c->in.len || (c->flags & F_CLOSING))
		return 0;
	if (!c->hm) {
		c->hm = calloc(1, sizeof(*c->hm));
		if (!c->hm)
			return -1;
		request_reset(c);
	}
	int r = h1_parse_request(buf_data(&c->in), c->in.len, c->hm, &w->lim);
	if (r == 0 && c->in.len >= w->cfg->limits.max_head) {
		/* The buffer holds max_head bytes and no end of head: nothing more
		 * will be read into it, so say so now rather than at the head timer. */
		c->hm->err = "head too large";
		c->hm->err_status = 431;
		c->hm->err_pos = c->in.len;
		r = -1;
	}
	if (r == 0)
		return 0;
	if (r < 0) {
		char q[160];
		w->stats->http_refused++;
		log_warn("event=http_refused client=%s status=%d reason=%s offset=%zu",
			 relay_peer_ip(c, q, sizeof(q)), c->hm->err_status, c->hm->err,
			 c->hm->err_pos);
		c->r.sv = SV_REFUSED;
		/* Nothing after a malformed head can be framed: answer and close. */
		answer_text(c, c->hm->err_status ? c->hm->err_status : 400, c->hm->err, 1);
		buf_release(&w->pool, &c->in);
		c->r.body_done = 1;
		return 1;
	}
	c->r.bytes_in += (uint64_t)r;
	return head_complete(c) < 0 ? -1 : 1;
}

/* --- an inspected body ---------------------------------------------------------- */

/*
 * The representation inside a request body raw[0..rawlen), for inspection:
 * de-chunked if it came chunked, then its Content-Encoding undone within
 * limits.inspect_body. Sets *body and *blen (into raw, or into bufs[0..1], which
 * the caller frees) and returns NULL; or returns a static reason and sets
 * *status (415 a coding we cannot decode, 413 over the limit, 400 corrupt).
 */
static const char *inspect_decode(const struct conn *c, const uint8_t *raw, size_t rawlen,
				  uint8_t *bufs[2], const uint8_t **body, size_t *blen, int *status)
{
	const struct h1_msg *m = c->hm;
	const struct h1_header *ce = h1_find(m, "Content-Encoding");
	int coding = ce ? gzbody_coding(ce->value.p, ce->value.n) : GZBODY_IDENTITY;
	*status = 415;
	if (ce && h1_find_next(m, ce, "Content-Encoding"))
		return "several Content-Encoding fields";
	if (coding == GZBODY_UNKNOWN)
		return "Content-Encoding the gateway cannot decode";
	*body = raw;
	*blen = rawlen;
	if (c->r.bmode == BODY_CHUNKED) {
		struct h1_chunk ck;
		struct conn_sink k = {.p = bufs[0] = malloc(rawlen ? rawlen : 1)};
		int done = 0;
		*status = 500;
		if (!k.p)
			return "out of memory";
		h1_chunk_init(&ck, &c->w->lim);
		*status = 400;
		if (h1_chunk_feed(&ck, (const char *)raw, rawlen, &done, conn_sink_put, &k) < 0 ||
		    !done)
			return "bad chunked framing";
		*body = k.p;
		*blen = k.len;
	}
	if (coding == GZBODY_IDENTITY)
		return NULL;
	size_t cap = c->w->cfg->limits.inspect_body;
	size_t plen = 0;
	const char *derr = NULL;
	*status = 500;
	if (!(bufs[1] = malloc(cap ? cap : 1)))
		return "out of memory";
	if (gzbody_inflate(*body, *blen, coding == GZBODY_GZIP, bufs[1], cap, &plen, &derr) < 0) {
		*status = derr && strstr(derr, "larger than the limit") ? 413 : 400;
		return *status == 413 ? "body inflates past limits.inspect_body"
				      : "compressed body cannot be decoded";
	}
	*body = bufs[1];
	*blen = plen;
	return NULL;
}

/*
 * CS_INSPECT: wait for the whole (small) body, Content-Length or chunked,
 * decode it however the client encoded it, then decide. A body the gate
 * needs for DeviceInformation that cannot be decoded within
 * limits.inspect_body is refused: letting it pass unread would let any
 * blocked phone through by compressing or chunking its Settings.
 */
int request_inspect_step(struct conn *c)
{
	struct worker *w = c->w;
	struct h1_msg *m = c->hm;
	const uint8_t *raw = (const uint8_t *)buf_data(&c->in) + m->head_len;
	size_t have = c->in.len - m->head_len, rawlen, limit = w->cfg->limits.inspect_body;
	int devinfo = c->r.inspect_need == GATE_BODY_DEVINFO, unread = 0;
	if (c->r.bmode == BODY_CLEN) {
		if (have < c->r.left)
			return 0;
		rawlen = (size_t)c->r.left;
	} else {
		int done = 0;
		if (have == c->r.iscan)
			return 0;
		ssize_t k = h1_chunk_feed(&c->r.chunk, (const char *)raw + c->r.iscan,
					  have - c->r.iscan, &done, NULL, NULL);
		if (k < 0) {
			answer_refuse(c, c->r.chunk.err_status ? c->r.chunk.err_status : 400,
				      c->r.chunk.err);
			buf_release(&w->pool, &c->in);
			c->r.body_done = 1;
			return 1;
		}
		c->r.iscan += (uint32_t)k;
		if (!done && have < limit)
			return 0;
		if (c->r.iscan > limit)
			done = 0; /* the same limit as a Content-Length body's */
		if (!done && devinfo) {
			c->r.sv = SV_REFUSED;
			answer_text(c, 413,
				    "chunked body larger than limits.inspect_body, cannot be "
				    "inspected",
				    1);
			return 1;
		}
		/* Forwarding frames the body again from its first byte. */
		h1_chunk_init(&c->r.chunk, &w->lim);
		unread = !done; /* only a fingerprint was wanted: go without it */
		rawlen = c->r.iscan;
	}
	uint8_t *bufs[2] = {NULL, NULL};
	const uint8_t *body = NULL;
	size_t blen = 0;
	int status = 0;
	const char *why = NULL;
	if (!unread)
		why = inspect_decode(c, raw, rawlen, bufs, &body, &blen, &status);
	struct eas_devinfo di;
	int have_di = 0;
	if (!why && blen) {
		const char *derr = NULL;
		int r = wbxml_devinfo(body, blen, &di, &derr);
		have_di = r == 1;
		if (r < 0) {
			char q[160];
			log_info("event=wbxml_undecodable client=%s cmd=%s reason=%s",
				 relay_peer_ip(c, q, sizeof(q)), eas_cmd_name(c->r.cmd),
				 derr ? derr : "?");
			if (devinfo) {
				why = "WBXML body cannot be decoded";
				status = 400;
			}
		}
	}
	uint64_t fp = why || unread ? 0 : gate_fingerprint(w->gate, body, blen);
	free(bufs[0]);
	free(bufs[1]);
	if (why && devinfo) {
		/* The body is here: drop it, the connection may stay. */
		c->r.body_done = 1;
		c->r.left = 0;
		c->r.sv = SV_REFUSED;
		answer_text(c, status, why, 0);
		buf_consume(&w->pool, &c->in, rawlen);
		c->r.bytes_in += rawlen;
		return 1;
	}
	struct gate_verdict v;
	gate_decide(w->gate, c->eas, have_di ? &di : NULL, fp, time(NULL), &v);
	/* An answer drops a body that is here, so keep-alive stays possible. */
	return apply_verdict(c, &v, unread ? -1 : (ssize_t)rawlen);
}

/* --- forwarding ----------------------------------------------------------------- */

/* Append the rewritten request head for backend b to up->out. */
static int build_request_head(struct conn *c, const struct cfg_backend *b)
{
	struct worker *w = c->w;
	struct h1_msg *m = c->hm;
	struct buf *o = &c->up->out;
	const char *base = buf_data(&c->in);
	const char *end = base + m->head_len;
	size_t max = w->cfg->limits.max_head + 1024;
	char ip[64];
	int ok = 0;

	ok |= buf_append(&w->pool, o, m->method_str.p, m->method_str.n, max);
	ok |= buf_append(&w->pool, o, " ", 1, max);
	if (!(m->path.n == 1 && m->path.p[0] == '*'))
		ok |= buf_append(&w->pool, o, b->prefix, strlen(b->prefix), max);
	if (m->flags & H1_F_ABS_FORM) {
		ok |= buf_append(&w->pool, o, m->path.n ? m->path.p : "/",
				 m->path.n ? m->path.n : 1, max);
		if (m->query.p) {
			ok |= buf_append(&w->pool, o, "?", 1, max);
			ok |= buf_append(&w->pool, o, m->query.p, m->query.n, max);
		}
	} else {
		ok |= buf_append(&w->pool, o, m->target.p, m->target.n, max);
	}
	ok |= buf_append(&w->pool, o, " HTTP/1.1\r\n", 11, max);
	for (unsigned i = 0; i < m->nhdr; i++) {
		const struct h1_header *h = &m->hdr[i];
		if (h1_is_hop_by_hop(m, h->name) ||
		    (h->name.n == 6 && !strncasecmp(h->name.p, "Expect", 6)) ||
		    (h->name.n == 15 && !strncasecmp(h->name.p, "X-Forwarded-For", 15)) ||
		    (h->name.n == 17 && !strncasecmp(h->name.p, "X-Forwarded-Proto", 17)))
			continue;
		/* Copy the field line as received, byte for byte. */
		const char *from = h->name.p;
		const char *scan = h->value.n ? h->value.p + h->value.n : h->name.p + h->name.n;
		const char *nl = memchr(scan, '\n', (size_t)(end - scan));
		if (!nl)
			return -1;
		ok |= buf_append(&w->pool, o, from, (size_t)(nl + 1 - from), max);
	}
	if (c->r.bmode == BODY_CHUNKED)
		ok |= buf_append(&w->pool, o, "Transfer-Encoding: chunked\r\n", 28, max);
	if (!h1_find(m, "Host")) {
		/* HTTP/1.0 may omit Host; the backend gets HTTP/1.1, which needs
		 * one: the target's authority if it had one, else the backend's
		 * own name (its TLS name, or its address). */
		ok |= buf_append(&w->pool, o, "Host: ", 6, max);
		if (m->host.n)
			ok |= buf_append(&w->pool, o, m->host.p, m->host.n, max);
		else if (b->sni[0])
			ok |= buf_append(&w->pool, o, b->sni, strlen(b->sni), max);
		else
			ok |= buf_append(&w->pool, o, b->addr.text, strlen(b->addr.text), max);
		ok |= buf_append(&w->pool, o, "\r\n", 2, max);
	}
	/* Appends, not snprintf: this runs for every forwarded request. */
	static const char xff[] = "X-Forwarded-For: ", xfp_s[] = "\r\nX-Forwarded-Proto: https\r\n",
			  xfp[] = "\r\nX-Forwarded-Proto: http\r\n", cc[] = "Connection: close\r\n";
	const char *ipt = relay_peer_ip(c, ip, sizeof(ip));
	if (!ipt)
		ipt = "";
	ok |= buf_append(&w->pool, o, xff, sizeof(xff) - 1, max);
	ok |= buf_append(&w->pool, o, ipt, strlen(ipt), max);
	if (conn_is_tls(c))
		ok |= buf_append(&w->pool, o, xfp_s, sizeof(xfp_s) - 1, max);
	else
		ok |= buf_append(&w->pool, o, xfp, sizeof(xfp) - 1, max);
	if (b->reuse == CFG_REUSE_NEVER)
		ok |= buf_append(&w->pool, o, cc, sizeof(cc) - 1, max);
	ok |= buf_append(&w->pool, o, "\r\n", 2, max);
	return ok ? -1 : 0;
}

/* Choose the backend, (re)use or open its connection, queue the head. */
int request_forward(struct conn *c)
{
	struct worker *w = c->w;
	backends_refresh(&w->be, w->shm);
	int bi = backends_pick(&w->be, c->r.steer_key, c->r.avoid);
	if (bi < 0) {
		c->r.sv = SV_LOCAL;
		answer_text(c, 503, "no backend is available", 0);
		return 1;
	}
	c->r.backend = bi;
	const struct cfg_backend *b = w->be.b[bi].cfg;
	if (c->up) /* not expected: a finished exchange leaves it idle in the set */
		upstream_close(c);
	c->up = upstream_take(c, bi);
	if (!c->up && upstream_connect(c, bi) < 0) {
		char q[96];
		log_warn("event=backend_connect_failed backend=%s error=%s", b->name,
			 log_quote(q, sizeof(q), strerror(errno), (size_t)-1));
		c->r.avoid |= UINT64_C(1) << bi;
		if (++c->r.attempts < MAX_ATTEMPTS)
			return request_forward(c);
		answer_text(c, 502, "backend unreachable", 0);
		return 1;
	}
	struct upstream *u = c->up;
	u->resp_started = u->resp_done = 0;
	u->rx_bytes = 0;
	u->used_ms = loop_now_ms(w->loop);
	u->priv |= c->r.conn_auth;
	if (build_request_head(c, b) < 0) {
		answer_text(c, 431, "request head too large after rewriting", 1);
		return 1;
	}
	if (c->r.expect && !c->r.sent_continue && c->r.bmode != BODY_NONE) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		buf_append(&w->pool, &c->out, cont, sizeof(cont) - 1, OUT_MAX);
		c->r.sent_continue = 1;
	}
	if (c->r.hanging && c->st != CS_FORWARD)
		w->stats->hanging_open++;
	c->st = CS_FORWARD;
	/* Keep the head until the backend accepted the connection: if the
	 * connect fails, nothing was sent and we retry another backend. */
	c->r.head_pending = 1;
	if (!(u->flags & (F_CONNECTING | F_TLSCONN)))
		request_commit_head(c);
	return 1;
}

/* Move validated request-body bytes from c->in to up->out. */
int request_body_step(struct conn *c)
{
	struct worker *w = c->w;
	struct upstream *u = c->up;
	if (c->r.body_done || !c->in.len || !u || c->r.head_pending)
		return 0;
	long sp = buf_reserve(&w->pool, &u->out, BUF_BLOCK, OUT_MAX);
	if (sp <= 0)
		return 0;
	size_t n = c->in.len < (size_t)sp ? c->in.len : (size_t)sp;
	if (c->r.bmode == BODY_CLEN) {
		if (n > c->r.left)
			n = (size_t)c->r.left;
		c->r.left -= n;
		c->r.body_done = c->r.left == 0;
	} else {
		int done = 0;
		ssize_t k = h1_chunk_feed(&c->r.chunk, buf_data(&c->in), n, &done, NULL, NULL);
		if (k < 0) {
			char q[96];
			log_warn("event=http_refused client=%s reason=%s phase=chunked_body",
				 relay_peer_ip(c, q, sizeof(q)), c->r.chunk.err);
			w->stats->http_refused++;
			c->r.why = c->r.chunk.err;
			c->r.sv = SV_REFUSED;
			/* The backend saw a partial request: it must not keep it. */
			upstream_close(c);
			if (!c->r.resp_seen) {
				c->r.body_done = 1;
				answer_text(c, c->r.chunk.err_status ? c->r.chunk.err_status : 400,
					    c->r.chunk.err, 1);
				buf_release(&w->pool, &c->in);
				return 1;
			}
			relay_close(c, "bad chunked framing");
			return -1;
		}
		n = (size_t)k;
		c->r.body_done = done;
	}
	memcpy(buf_tail(&u->out), buf_data(&c->in), n);
	u->out.len += (uint32_t)n;
	buf_consume(&w->pool, &c->in, n);
	c->r.bytes_in += n;
	return n > 0;
}

/* CS_LOCAL: read and drop the body of a request we answered ourselves. */
int request_discard_step(struct conn *c)
{
	struct worker *w = c->w;
	if (c->r.body_done || !c->in.len)
		return 0;
	size_t n = c->in.len;
	if (c->r.bmode == BODY_CLEN) {
		if (n > c->r.left)
			n = (size_t)c->r.left;
		c->r.left -= n;
		c->r.body_done = c->r.left == 0;
	} else {
		c->r.body_done = 1; /* chunked: we close instead (answer_local) */
		n = c->in.len;
	}
	buf_consume(&w->pool, &c->in, n);
	return 1;
}
