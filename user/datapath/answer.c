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
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%s%s%s\r\n",
			 status, eas_http_reason(status), blen, extra_hdrs ? extra_hdrs : "",
			 blen && !(extra_hdrs && strstr(extra_hdrs, "Content-Type"))
			     ? "Content-Type: text/plain\r\n"
			     : "",
			 close	       ? "Connection: close\r\n"
			 : c->r.http10 ? "Connection: keep-alive\r\n"
				       : "");
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
		snprintf(hdrs, sizeof(hdrs), "Content-Type: application/vnd.ms-sync.wbxml\r\n");
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
