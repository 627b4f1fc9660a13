/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * answer.c - what the gateway answers itself instead of relaying: refusals,
 * the gate's verdicts (an EAS status envelope or a bare HTTP status, as
 * eas_answer.h says), 502/503/504 for backends. The request's body is then
 * read and dropped (request_discard_step) or, when it cannot be, the
 * connection closes after the answer.
 */
#include "conn.h"
#include "eas_answer.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

#define DISCARD_MAX (1u << 20) /* request body we read and drop after a local answer */

/* Append s to p (cap: the end of the buffer); returns the new end. The head
 * below is built this way, not with snprintf: refusals are answered at
 * line rate and the format machinery was a visible share of their cost. */
static char *put_str(char *p, const char *cap, const char *s)
{
	size_t n = strlen(s);
	if (n > (size_t)(cap - p))
		n = (size_t)(cap - p);
	memcpy(p, s, n);
	return p + n;
}

static char *put_uint(char *p, const char *cap, unsigned long long v)
{
	char d[24];
	int n = 0;
	do
		d[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (n && p < cap)
		*p++ = d[--n];
	return p;
}

void answer_local(struct conn *c, int status, const char *extra_hdrs, const void *body, size_t blen,
		  int close)
{
	char head[1024];
	/* A body we have not read makes keep-alive unsafe unless we can drop it. */
	if (!c->r.body_done &&
	    (c->r.bmode == BODY_CHUNKED || (c->r.bmode == BODY_CLEN && c->r.left > DISCARD_MAX) ||
	     (c->r.expect && !c->r.sent_continue)))
		close = 1;
	/* The client asked for the close (Connection: close, HTTP/1.0), or the
	 * worker drains. */
	if (c->r.close_after || c->w->draining)
		close = 1;
	/* An HTTP/1.0 client closes after the answer unless told otherwise. */
	const char *cap = head + sizeof(head);
	char *p = put_str(head, cap, "HTTP/1.1 ");
	p = put_uint(p, cap, (unsigned)status);
	p = put_str(p, cap, " ");
	p = put_str(p, cap, eas_http_reason(status));
	p = put_str(p, cap, "\r\nContent-Length: ");
	p = put_uint(p, cap, blen);
	p = put_str(p, cap, "\r\n");
	p = put_str(p, cap, extra_hdrs ? extra_hdrs : "");
	if (blen && !(extra_hdrs && strstr(extra_hdrs, "Content-Type")))
		p = put_str(p, cap, "Content-Type: text/plain\r\n");
	p = put_str(p, cap,
		    close	  ? "Connection: close\r\n"
		    : c->r.http10 ? "Connection: keep-alive\r\n"
				  : "");
	p = put_str(p, cap, "\r\n");
	int n = (int)(p - head);
	buf_append(&c->w->pool, &c->out, head, (size_t)n, OUT_MAX);
	if (blen && !c->r.is_head)
		buf_append(&c->w->pool, &c->out, body, blen, OUT_MAX);
	c->r.status = status;
	c->r.bytes_out += (size_t)n + blen;
	if (close) {
		c->flags |= F_CLOSING;
		c->r.close_after = 1;
	}
	request_commit_head(c);
	c->st = CS_LOCAL;
}

void answer_text(struct conn *c, int status, const char *why, int close)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "%d %s: %s\n", status, eas_http_reason(status), why);
	c->r.why = why;
	answer_local(c, status, NULL, body, (size_t)n, close);
}

/* Answer per the gate's verdict: EAS status envelope or bare HTTP status. */
void answer_verdict(struct conn *c, const struct gate_verdict *v)
{
	uint8_t wb[128];
	size_t wl = 0;
	int status = v->http_status;
	char hdrs[256] = "";
	if (v->eas_status) {
		status = eas_http_status_for(c->r.proto, v->eas_status, v->http_status);
		if (status == 200)
			wl =
			    eas_status_wbxml((enum eas_cmd)c->r.cmd, v->eas_status, wb, sizeof(wb));
		if (status == 200 && !wl) /* no envelope for this command: bare status */
			status = v->http_status;
	}
	if (v->empty_ok)
		status = 200;
	if (status == 200)
		strcpy(hdrs, "Content-Type: application/vnd.ms-sync.wbxml\r\n");
	if (status == 503)
		snprintf(hdrs, sizeof(hdrs), "Retry-After: %u\r\nX-MS-ASThrottle: %s\r\n",
			 v->retry_after ? v->retry_after : 60,
			 v->asthrottle && v->asthrottle[0] ? v->asthrottle : "Gateway");
	answer_local(c, status, hdrs, wl ? wb : NULL, wl, 0);
	if (v->hold_ms) {
		/* Quarantined long-poll: answer after a heartbeat-like pause so
		 * the phone does not spin re-issuing it. */
		c->st = CS_HOLD;
		conntimer_set(c, T_HOLD, v->hold_ms, 1);
	}
}

/* A request the gateway will not relay for an HTTP reason: logged as the
 * parser's refusals are, answered, and the connection closed after it. */
void answer_refuse(struct conn *c, int status, const char *why)
{
	char q[160];
	c->w->stats->http_refused++;
	log_warn("event=http_refused client=%s status=%d reason=%s", relay_peer_ip(c, q, sizeof(q)),
		 status, why);
	c->r.sv = SV_REFUSED;
	answer_text(c, status, why, 1);
}
