/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * relay.c - the connection state machine. See relay.h.
 *
 * Data moves through two pumps, each "read into a buffer, process, write out":
 *   phone  --TLS-->  c->in  --[head: parse, classify, gate, rewrite]-->  up->out  --> backend
 *   phone  <--TLS--  c->out <--[head: parse, rewrite; body: frame]--    up->in   <-- backend
 * Bodies are copied verbatim after their framing was validated (Content-Length
 * counted, chunked scanned by h1_chunk_feed), so what the backend receives is
 * exactly what the phone sent, with only the documented head rewrites:
 * hop-by-hop headers and Expect removed, X-Forwarded-For/-Proto set, the
 * backend's path prefix prepended, a Host added to an HTTP/1.0 request
 * without one. An HTTP/1.0 client gets a chunked response de-chunked and
 * ended by the close.
 *
 * All sockets are registered edge-triggered for both directions; conn_run()
 * keeps stepping every pump until none makes progress. Buffers are taken
 * from the worker pool only while bytes are in them.
 */
#include "relay.h"
#include "bpfmaps.h"
#include "eas.h"
#include "eas_answer.h"
#include "gate.h"
#include "gzbody.h"
#include "krelay.h"
#include "log.h"
#include "srcadmit.h"
#include "wbxml.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OUT_MAX	     (64u * 1024) /* cap of a pump's output buffer */
#define RUN_TURN     256	  /* steps one connection takes before others get a turn */
#define DISCARD_MAX  (1u << 20)	  /* request body we read and drop after a local answer */
#define MAX_ATTEMPTS 3		  /* backends tried when connecting fails */
/* Backend connections one client connection keeps open, keyed by (backend,
 * identity), least recently used out: a load balancer's connection carries
 * many phones, and each identity must find its own connection again. */
#define UP_SET_MAX 4
/* Lingering close (see linger_begin): how long, and how many bytes, we read
 * and drop after shutting our side, so the answer is not lost to a reset. */
#define LINGER_MS  1000
#define LINGER_MAX (16u << 20)

enum cstate {
	CS_TLS = 0, /* handshake */
	CS_HEAD,    /* waiting for / reading a request head */
	CS_INSPECT, /* buffering a small body to read DeviceInformation */
	CS_FORWARD, /* request relayed; response pending or streaming */
	CS_LOCAL,   /* a local answer is queued; discarding the request body */
	CS_HOLD,    /* local answer deliberately delayed (quarantined Ping) */
	CS_LINGER,  /* answered, our side shut: dropping what the client still sends */
};

/* connection and upstream flags */
#define F_RD	     (1u << 0) /* socket readable (edge seen, not yet drained) */
#define F_WR	     (1u << 1) /* socket writable */
#define F_EOF	     (1u << 2) /* peer finished sending */
#define F_RDHUP	     (1u << 3) /* peer hung up (epoll) */
#define F_CLOSING    (1u << 4) /* close once c->out is flushed */
#define F_DEAD	     (1u << 5) /* closed; waiting to be freed */
#define F_CONNECTING (1u << 6) /* upstream: TCP connect in progress */
#define F_TLSCONN    (1u << 7) /* upstream: TLS handshake in progress */

enum body_mode { BODY_NONE = 0, BODY_CLEN = 1, BODY_CHUNKED = 2 };

/*
 * One backend connection. It belongs to its client connection and to one
 * identity (owner) for its whole life: requests of another identity never
 * use it. priv records that the backend authenticated the connection itself
 * (NTLM/Negotiate, as IIS does), which makes even an identity-less (owner 0)
 * request unfit for it unless that request continues the handshake.
 */
struct upstream {
	struct conn *c;
	struct loop_io io;
	int fd;
	SSL *ssl;
	int backend;
	uint32_t flags;
	uint64_t owner;	   /* identity key of its requests (0 = no identity) */
	uint8_t priv;	   /* connection-based authentication seen */
	uint64_t used_ms;  /* last given a request: LRU order in the set */
	unsigned nreq;	   /* requests sent on this connection */
	struct buf in;	   /* raw bytes from the backend */
	struct buf out;	   /* rewritten head + request body for the backend */
	struct h1_msg *hm; /* response head being parsed */
	int resp_started;  /* response head parsed and queued to the client */
	int resp_done;
	int resp_close; /* backend will close after this response */
	enum body_mode bmode;
	int eof_body;
	uint64_t left;
	struct h1_chunk chunk;
	uint64_t rx_bytes; /* response bytes received for this request */
	int splicing;	   /* the response body moves backend -> phone by splice */
	struct upstream *next_dead;
};

/* What we keep of a request after its head is gone: enough to log it. */
struct reqinfo {
	uint64_t t0_us;
	int cmd;
	int proto;
	int status;
	int backend;
	enum stats_verdict sv;
	uint64_t steer_key;
	uint64_t owner;	      /* identity key for backend connections (0 = no identity) */
	uint8_t conn_auth;    /* Authorization: NTLM / Negotiate (authenticates the connection) */
	uint8_t http10;	      /* the client speaks HTTP/1.0: no chunked answers */
	uint8_t inspect_need; /* enum gate_body of a request in CS_INSPECT */
	uint32_t iscan;	      /* CS_INSPECT, chunked: body bytes scanned so far */
	uint64_t avoid;	      /* backends that failed to connect for this request */
	int attempts;
	uint64_t bytes_in, bytes_out;
	uint8_t is_head, hanging, expect, sent_continue, close_after, body_done, resp_seen;
	uint8_t head_parsed;  /* c->hm holds a complete head, slices into c->in */
	uint8_t head_pending; /* head still in c->in until the backend is connected */
	uint8_t splicing;     /* the request body moves phone -> backend by splice */
	enum body_mode bmode;
	uint64_t left;
	struct h1_chunk chunk;
	/* The whole identity, as the gate saw it at decision: gate_done() must
	 * key the result with the same value (a cut one is another device). */
	char user[sizeof(((struct eas_req *)0)->identity)];
	char device_id[EAS_DEVID_MAX + 1];
	char device_type[EAS_DEVTYPE_MAX + 1];
	char rule[64];
	const char *why;  /* static refusal reason, if any */
	int xdp_drop;	  /* push a kernel drop for this flow once answered */
	int xdp_reason;	  /* enum eg_reason (0 = BLOCKED) */
	unsigned xdp_ttl; /* s; 0 = xdp.verdict_ttl */
	struct throttle_ticket tt;
};

struct conn {
	struct worker *w;
	struct conn *prev, *next;
	struct loop_io io;
	struct loop_timer tmr;
	struct loop_timer again; /* conn_run stopped at its turn's cap: run again */
	int tmr_kind;
	int fd;
	SSL *ssl;
	uint32_t flags;
	enum cstate st;
	struct sockaddr_storage peer, local;
	struct buf in, out;
	struct h1_msg *hm;		  /* request head being parsed */
	struct eas_req *eas;		  /* classification, kept only until the gate decided */
	struct upstream *up;		  /* serving the current request (one of ups[]) */
	struct upstream *ups[UP_SET_MAX]; /* every open backend connection of this client */
	struct reqinfo r;
	struct krelay_pipe kp_req, kp_resp; /* splice pipes, open only while a body moves */
	uint64_t nreq;
	uint64_t t_accept_ms;
	uint64_t src_tag; /* counted against its source's cap (srcadmit); 0 = not */
	uint64_t rx;	  /* bytes read from the phone (TLS plaintext), all requests */
	uint64_t win_rx;  /* rx when the current request-body rate window began */
};

/* How long a draining worker keeps an idle keep-alive connection open for a
 * request that may already be on its way. */
#define DRAIN_IDLE_MS 1000

enum tmr_kind {
	T_NONE,
	T_HANDSHAKE,
	T_IDLE,
	T_DRAIN,
	T_HEAD,
	T_BODY,
	T_CONNECT,
	T_RESPONSE,
	T_HOLD,
	T_FLUSH,
	T_RATE, /* a request body's rate window (limits.min_body_rate) */
	T_LINGER
};

static void conn_run(struct conn *c);
static void relay_close(struct conn *c, const char *why);
static void up_close(struct conn *c);
static void up_free(struct conn *c, struct upstream *u);
static int forward_begin(struct conn *c);
static void answer_local(struct conn *c, int status, const char *extra_hdrs, const void *body,
			 size_t blen, int close);
static void linger_step(struct conn *c);
static void linger_begin(struct conn *c);

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const char *peer_ip(const struct conn *c, char *buf, size_t n)
{
	if (c->peer.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)&c->peer;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			return inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], buf, (socklen_t)n);
		return inet_ntop(AF_INET6, &s6->sin6_addr, buf, (socklen_t)n);
	}
	return inet_ntop(AF_INET, &((const struct sockaddr_in *)&c->peer)->sin_addr, buf,
			 (socklen_t)n);
}

/* --- low-level I/O ---------------------------------------------------------- */

/* An SSL_read/SSL_write result r <= 0 as io_read/io_write report it. */
static ssize_t ssl_outcome(SSL *ssl, int r, uint32_t *flags)
{
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		*flags &= ~F_RD;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		*flags &= ~F_WR;
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		return -1;
	default:
		return -2;
	}
}

/* >0 bytes, 0 would block, -1 EOF, -2 error. Updates F_RD/F_WR. */
static ssize_t io_read(int fd, SSL *ssl, char *p, size_t n, uint32_t *flags)
{
	if (ssl) {
		ERR_clear_error();
		int r = SSL_read(ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
		return r > 0 ? r : ssl_outcome(ssl, r, flags);
	}
	ssize_t r = read(fd, p, n);
	if (r > 0)
		return r;
	if (r == 0)
		return -1;
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		*flags &= ~F_RD;
		return 0;
	}
	return errno == EINTR ? 0 : -2;
}

static ssize_t io_write(int fd, SSL *ssl, const char *p, size_t n, uint32_t *flags)
{
	if (ssl) {
		ERR_clear_error();
		int r = SSL_write(ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
		return r > 0 ? r : ssl_outcome(ssl, r, flags);
	}
	ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		*flags &= ~F_WR;
		return 0;
	}
	return errno == EINTR ? 0 : -2;
}

/* --- timers ------------------------------------------------------------------ */

static void set_timer(struct conn *c, int kind, unsigned ms, int restart)
{
	if (c->tmr_kind == kind && !restart && loop_timer_armed(&c->tmr))
		return;
	c->tmr_kind = kind;
	loop_timer_set(c->w->loop, &c->tmr, ms);
}

/*
 * A request body must arrive at limits.min_body_rate on average over each
 * window of timeouts.request_body: a silence timer alone, restarted by every
 * byte, lets a body trickling one byte a minute hold its backend connection
 * for ever. The window is not restarted by progress; conn_timeout judges it.
 * With the rate at 0 the timer is the silence timer it used to be.
 */
static void arm_body_timer(struct conn *c, int progress)
{
	const struct gw_config *cfg = c->w->cfg;
	if (!cfg->limits.min_body_rate) {
		set_timer(c, T_BODY, cfg->timeouts.body_ms, progress);
		return;
	}
	if (c->tmr_kind == T_RATE && loop_timer_armed(&c->tmr))
		return;
	c->win_rx = c->rx;
	set_timer(c, T_RATE, cfg->timeouts.body_ms, 1);
}

static void arm_phase_timer(struct conn *c, int progress)
{
	const struct gw_config *cfg = c->w->cfg;
	switch (c->st) {
	case CS_TLS:
		set_timer(c, T_HANDSHAKE, cfg->timeouts.handshake_ms, 0);
		break;
	case CS_HEAD:
		if (c->flags & F_CLOSING)
			set_timer(c, T_FLUSH, cfg->timeouts.body_ms, progress);
		else if (c->hm)
			set_timer(c, T_HEAD, cfg->timeouts.head_ms, 0);
		else if (c->w->draining)
			/* Idle on a draining worker: a request may be on its way
			 * (the client cannot know yet); wait briefly for it. */
			set_timer(c, T_DRAIN,
				  cfg->timeouts.drain_ms < DRAIN_IDLE_MS ? cfg->timeouts.drain_ms
									 : DRAIN_IDLE_MS,
				  0);
		else if (!c->nreq)
			/* Nothing asked yet: a new connection owes its first
			 * request head within request_head (nginx's
			 * client_header_timeout), not a keep-alive's idle time. */
			set_timer(c, T_IDLE, cfg->timeouts.head_ms, 0);
		else
			set_timer(c, T_IDLE, cfg->timeouts.idle_ms, 0);
		break;
	case CS_INSPECT:
	case CS_LOCAL:
		arm_body_timer(c, progress);
		break;
	case CS_HOLD:
	case CS_LINGER:
		break; /* their timers are set when entering the state */
	case CS_FORWARD:
		if (c->up && (c->up->flags & (F_CONNECTING | F_TLSCONN)))
			set_timer(c, T_CONNECT, cfg->timeouts.backend_connect_ms, 0);
		else if (!c->r.body_done)
			arm_body_timer(c, progress);
		else if (c->up && c->up->resp_started)
			set_timer(c, T_BODY, cfg->timeouts.body_ms, progress);
		else
			set_timer(c, T_RESPONSE,
				  c->r.hanging ? cfg->timeouts.hanging_ms
					       : cfg->timeouts.backend_response_ms,
				  0);
		break;
	}
}

/* --- request bookkeeping ---------------------------------------------------- */

/*
 * The one place an admitted request's throttle slot is given back. Every end
 * of a request passes here (req_finish, relay_close, and req_reset as the
 * last guard), and the ticket is cleared, so each admitted request is
 * released exactly once whatever path it ended on.
 */
static void req_release(struct conn *c, int status)
{
	if (c->r.tt.admitted && c->w->gate)
		gate_throttle_done(c->w->gate, &c->r.tt, status);
	memset(&c->r.tt, 0, sizeof(c->r.tt));
}

static void req_reset(struct conn *c)
{
	req_release(c, 0);
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
static void req_finish(struct conn *c)
{
	struct worker *w = c->w;
	uint64_t dur = now_us() - c->r.t0_us;
	stats_request(w->stats, c->r.cmd, c->r.status, c->r.sv, dur);
	if (c->r.backend >= 0)
		w->stats->backend_requests[c->r.backend]++;
	if (w->cfg->access_log) {
		char ip[64], qu[128], qd[48], qt[48], qr[96];
		log_info(
		    "event=access client=%s user=%s device=%s type=%s cmd=%s proto=%d.%d "
		    "backend=%s status=%d verdict=%s rule=%s bytes_in=%llu bytes_out=%llu "
		    "dur_ms=%.1f%s%s",
		    peer_ip(c, ip, sizeof(ip)), log_quote(qu, sizeof(qu), c->r.user, (size_t)-1),
		    log_quote(qd, sizeof(qd), c->r.device_id, (size_t)-1),
		    log_quote(qt, sizeof(qt), c->r.device_type, (size_t)-1), eas_cmd_name(c->r.cmd),
		    c->r.proto / 10, c->r.proto % 10,
		    c->r.backend >= 0 ? w->be.b[c->r.backend].cfg->name : "-", c->r.status,
		    sv_name(c->r.sv), log_quote(qr, sizeof(qr), c->r.rule, (size_t)-1),
		    (unsigned long long)c->r.bytes_in, (unsigned long long)c->r.bytes_out,
		    (double)dur / 1000.0, c->r.why ? " reason=" : "", c->r.why ? c->r.why : "");
	}
	if (w->gate && c->r.device_id[0])
		gate_done(w->gate, c->r.user, c->r.device_id, c->r.cmd, c->r.status,
			  c->r.backend >= 0 && c->r.resp_seen, time(NULL));
	req_release(c, c->r.status);
	c->nreq++;
}

/* --- head slices ---------------------------------------------------------------- */

static void rebase_str(struct h1_str *s, const char *from, const char *to)
{
	if (s->p)
		s->p = to + (s->p - from);
}

/* c->in moved (grown or compacted): move the parsed head's slices with it. */
static void h1_rebase(struct h1_msg *m, const char *from, const char *to)
{
	rebase_str(&m->method_str, from, to);
	rebase_str(&m->target, from, to);
	rebase_str(&m->path, from, to);
	rebase_str(&m->query, from, to);
	rebase_str(&m->host, from, to);
	rebase_str(&m->reason, from, to);
	for (unsigned i = 0; i < m->nhdr; i++) {
		rebase_str(&m->hdr[i].name, from, to);
		rebase_str(&m->hdr[i].value, from, to);
	}
}

/* Drop the parsed head from c->in (and its parse state): the request is now
 * either relayed or answered. */
static void head_commit(struct conn *c)
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

/* --- local answers ---------------------------------------------------------- */

static void answer_local(struct conn *c, int status, const char *extra_hdrs, const void *body,
			 size_t blen, int close)
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
	head_commit(c);
	c->st = CS_LOCAL;
}

static void answer_text(struct conn *c, int status, const char *why, int close)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "%d %s: %s\n", status, eas_http_reason(status), why);
	c->r.why = why;
	answer_local(c, status, NULL, body, (size_t)n, close);
}

/* Answer per the gate's verdict: EAS status envelope or bare HTTP status. */
static void answer_verdict(struct conn *c, const struct gate_verdict *v)
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
		set_timer(c, T_HOLD, v->hold_ms, 1);
	}
}

/* --- request head ----------------------------------------------------------- */

static void copy_field(char *dst, size_t dsz, const char *src)
{
	snprintf(dst, dsz, "%s", src);
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
	if (!c->ssl) {
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
	int e = bpfgate_flow_set(w->bpf, &k, &v);
	char qu[64];
	log_info("event=xdp_verdict client=%s action=%s ttl_s=%u result=%d",
		 peer_ip(c, qu, sizeof(qu)), v.action == EG_ACT_RST ? "rst" : "drop", ttl, e);
}

/* A request the gateway will not relay for an HTTP reason: logged as the
 * parser's refusals are, answered, and the connection closed after it. */
static void refuse_request(struct conn *c, int status, const char *why)
{
	char q[160];
	c->w->stats->http_refused++;
	log_warn("event=http_refused client=%s status=%d reason=%s", peer_ip(c, q, sizeof(q)),
		 status, why);
	c->r.sv = SV_REFUSED;
	answer_text(c, status, why, 1);
}

/* Does the request carry an Authorization that authenticates the connection
 * rather than the request (NTLM, Negotiate: IIS keeps it per TCP connection)? */
static int conn_auth_scheme(const struct h1_str *v)
{
	return (v->n >= 4 && !strncasecmp(v->p, "NTLM", 4) && (v->n == 4 || v->p[4] == ' ')) ||
	       (v->n >= 9 && !strncasecmp(v->p, "Negotiate", 9) && (v->n == 9 || v->p[9] == ' '));
}

/* Classify the complete head in c->hm; decide; start forwarding or answer. */
static int head_complete(struct conn *c, size_t head_len)
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
	/* Relaying re-frames a chunked body and drops Transfer-Encoding (hop by
	 * hop): a coding before chunked would silently disappear. RFC 9112 6.1:
	 * a server that does not implement a transfer coding answers 501. */
	if (m->flags & H1_F_TE_CODED) {
		refuse_request(c, 501, "transfer-coding other than chunked not implemented");
		return 1;
	}

	enum eas_path pk = eas_classify_path(m->path.p, m->path.n);
	if (pk == EAS_PATH_OTHER) {
		c->r.sv = SV_LOCAL;
		answer_text(c, 404, "not an ActiveSync or Autodiscover path", 0);
		return 1;
	}
	int is_options = m->method == H1_M_OPTIONS;
	if (pk == EAS_PATH_EAS && !is_options && m->method != H1_M_POST) {
		c->r.sv = SV_REFUSED;
		answer_text(c, 405, "ActiveSync accepts only OPTIONS and POST", 0);
		return 1;
	}
	struct eas_req *e = c->eas ? c->eas : malloc(sizeof(*e));
	if (!e)
		return -1;
	c->eas = e;
	eas_req_init(e);
	e->strict_ids = w->cfg->strict_device_id != 0;
	int bad = 0;
	if (pk == EAS_PATH_EAS && m->query.n)
		bad |= eas_parse_query(e, m->query.p, m->query.n) < 0;
	for (unsigned i = 0; i < m->nhdr; i++)
		bad |= eas_parse_header(e, m->hdr[i].name.p, m->hdr[i].name.n, m->hdr[i].value.p,
					m->hdr[i].value.n) < 0;
	/* Autodiscover carries no EAS query: only the identity matters there. */
	bad |= eas_finish(e, is_options || pk == EAS_PATH_AUTODISCOVER) < 0;
	if (pk == EAS_PATH_AUTODISCOVER)
		e->cmd = EAS_CMD_NONE;
	c->r.cmd = e->cmd;
	c->r.proto = e->proto;
	c->r.hanging = eas_cmd_is_hanging(e->cmd);
	copy_field(c->r.user, sizeof(c->r.user), e->identity);
	copy_field(c->r.device_id, sizeof(c->r.device_id), e->device_id);
	copy_field(c->r.device_type, sizeof(c->r.device_type), e->device_type);
	if (bad) {
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
	 * Steering key: the user identity (Basic user, else User=), else the
	 * DeviceId, else the Authorization value itself (NTLM/Negotiate
	 * autodiscover): hashed with the installation secret, never stored.
	 */
	const char *idv = e->identity[0] ? e->identity : e->device_id;
	if (idv[0]) {
		c->r.steer_key = siphash24(&w->steer_secret, idv, strlen(idv));
	} else {
		const struct h1_header *a = h1_find(m, "Authorization");
		if (a && a->value.n)
			c->r.steer_key = siphash24(&w->steer_secret, a->value.p, a->value.n);
		else
			c->r.steer_key = siphash24(&w->steer_secret, &c, sizeof(c));
	}
	(void)head_len;
	/* Backend connections are kept per identity (see struct upstream). */
	c->r.owner = e->identity[0] ? c->r.steer_key | 1 : 0;
	for (const struct h1_header *a = h1_find(m, "Authorization"); a;
	     a = h1_find_next(m, a, "Authorization"))
		c->r.conn_auth |= conn_auth_scheme(&a->value);
	/* limits.inspect_body = 0 is the admin's "never read bodies". */
	int want = w->gate && c->r.bmode != BODY_NONE && w->cfg->limits.inspect_body
		       ? gate_wants_body(w->gate, e)
		       : GATE_BODY_NO;
	if (want == GATE_BODY_DEVINFO && c->r.bmode == BODY_CLEN &&
	    c->r.left > w->cfg->limits.inspect_body) {
		/* DeviceInformation we cannot read must not pass unread. */
		c->r.sv = SV_REFUSED;
		answer_text(c, 413, "body larger than limits.inspect_body, cannot be inspected", 0);
		return 1;
	}
	if (want != GATE_BODY_NO &&
	    (c->r.bmode == BODY_CHUNKED || c->r.left <= w->cfg->limits.inspect_body)) {
		c->st = CS_INSPECT;
		c->r.inspect_need = (uint8_t)want;
		if (c->r.expect) {
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			buf_append(&w->pool, &c->out, cont, sizeof(cont) - 1, OUT_MAX);
			c->r.sent_continue = 1;
		}
		return 1;
	}
	if (w->gate) {
		struct gate_verdict v;
		gate_decide(w->gate, e, NULL, 0, time(NULL), &v);
		copy_field(c->r.rule, sizeof(c->r.rule), v.rule);
		c->r.sv = v.sv;
		c->r.tt = v.tt;
		if (v.action == GATE_ANSWER) {
			c->r.xdp_drop = v.xdp_drop;
			c->r.xdp_reason = v.xdp_reason;
			c->r.xdp_ttl = v.xdp_ttl;
			answer_verdict(c, &v);
			if (c->r.xdp_drop && w->bpf)
				push_xdp_verdict(c);
			return 1;
		}
	}
	return forward_begin(c);
}

static int head_step(struct conn *c)
{
	struct worker *w = c->w;
	if (!c->in.len || (c->flags & F_CLOSING))
		return 0;
	if (!c->hm) {
		c->hm = calloc(1, sizeof(*c->hm));
		if (!c->hm)
			return -1;
		req_reset(c);
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
			 peer_ip(c, q, sizeof(q)), c->hm->err_status, c->hm->err, c->hm->err_pos);
		c->r.sv = SV_REFUSED;
		/* Nothing after a malformed head can be framed: answer and close. */
		answer_text(c, c->hm->err_status ? c->hm->err_status : 400, c->hm->err, 1);
		buf_release(&w->pool, &c->in);
		c->r.body_done = 1;
		return 1;
	}
	c->r.bytes_in += (uint64_t)r;
	return head_complete(c, (size_t)r) < 0 ? -1 : 1;
}

/* A de-chunking sink: payload bytes into a buffer at least as large as the
 * framed body they come from, so nothing is ever cut. */
struct sink {
	uint8_t *p;
	size_t len;
};

static void sink_put(void *arg, const char *p, size_t n)
{
	struct sink *k = arg;
	memcpy(k->p + k->len, p, n);
	k->len += n;
}

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
		struct sink k = {.p = bufs[0] = malloc(rawlen ? rawlen : 1)};
		int done = 0;
		*status = 500;
		if (!k.p)
			return "out of memory";
		h1_chunk_init(&ck, &c->w->lim);
		*status = 400;
		if (h1_chunk_feed(&ck, (const char *)raw, rawlen, &done, sink_put, &k) < 0 || !done)
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
static int inspect_step(struct conn *c)
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
			refuse_request(c, c->r.chunk.err_status ? c->r.chunk.err_status : 400,
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
				 peer_ip(c, q, sizeof(q)), eas_cmd_name(c->r.cmd),
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
	copy_field(c->r.rule, sizeof(c->r.rule), v.rule);
	c->r.sv = v.sv;
	c->r.tt = v.tt;
	if (v.action == GATE_ANSWER) {
		c->r.xdp_drop = v.xdp_drop;
		c->r.xdp_reason = v.xdp_reason;
		c->r.xdp_ttl = v.xdp_ttl;
		if (!unread) {
			/* The body is already here: drop it so keep-alive stays possible. */
			c->r.body_done = 1;
			c->r.left = 0;
		}
		answer_verdict(c, &v);
		if (c->r.xdp_drop && w->bpf)
			push_xdp_verdict(c);
		if (!unread) {
			buf_consume(&w->pool, &c->in, rawlen);
			c->r.bytes_in += rawlen;
		}
		return 1;
	}
	return forward_begin(c) < 0 ? -1 : 1;
}

/* --- forwarding --------------------------------------------------------------- */

static void up_io(struct loop_io *io, uint32_t ev);

/* Append the rewritten request head for backend b to up->out. */
static int build_request_head(struct conn *c, const struct cfg_backend *b)
{
	struct worker *w = c->w;
	struct h1_msg *m = c->hm;
	struct buf *o = &c->up->out;
	const char *base = buf_data(&c->in);
	const char *end = base + m->head_len;
	size_t max = w->cfg->limits.max_head + 1024;
	char ip[64], tmp[256];
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
	int n = snprintf(tmp, sizeof(tmp), "X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n%s\r\n",
			 peer_ip(c, ip, sizeof(ip)), c->ssl ? "https" : "http",
			 b->reuse == CFG_REUSE_NEVER ? "Connection: close\r\n" : "");
	ok |= buf_append(&w->pool, o, tmp, (size_t)n, max);
	return ok ? -1 : 0;
}

/* --- the backend connection set ---------------------------------------------- */

/*
 * Is an idle backend connection still fit for a request? It must be open and
 * must have sent nothing since its last response: a backend that closes
 * kept-alive connections without saying so has sent its FIN by now, and a
 * byte that came unasked (a 408, a planted response) would be taken for the
 * next request's answer. A TLS record without data (a session ticket) is
 * consumed here and harmless; a partial record is not trusted.
 */
static int up_idle_ok(struct upstream *u)
{
	char x;
	if ((u->flags & (F_EOF | F_RDHUP)) || u->in.len)
		return 0;
	if (u->ssl) {
		ERR_clear_error();
		int r = SSL_read(u->ssl, &x, 1);
		if (r > 0 || SSL_get_error(u->ssl, r) != SSL_ERROR_WANT_READ ||
		    SSL_has_pending(u->ssl))
			return 0;
		u->flags &= ~F_RD;
		return 1;
	}
	ssize_t r = recv(u->fd, &x, 1, MSG_PEEK | MSG_DONTWAIT);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		u->flags &= ~F_RD;
		return 1;
	}
	return 0;
}

/*
 * The idle connection of this request's (backend, identity), taken for it if
 * still fit (an unfit one is closed). An identity-less connection that the
 * backend authenticated serves only requests continuing its handshake.
 */
static struct upstream *up_take(struct conn *c, int bi)
{
	const struct cfg_backend *b = c->w->be.b[bi].cfg;
	struct upstream *u = NULL;
	for (int i = 0; i < UP_SET_MAX; i++) {
		struct upstream *x = c->ups[i];
		if (!x || x == c->up || x->backend != bi || x->owner != c->r.owner ||
		    (x->priv && !x->owner && !c->r.conn_auth))
			continue;
		if (!u || x->used_ms > u->used_ms)
			u = x;
	}
	if (u && (b->reuse == CFG_REUSE_NEVER || u->resp_close || !up_idle_ok(u))) {
		up_free(c, u);
		u = NULL;
	}
	return u;
}

/* A free place in the set for a new connection: the least recently used
 * idle one is closed when all are taken. */
static int up_slot(struct conn *c)
{
	int lru = -1;
	for (int i = 0; i < UP_SET_MAX; i++) {
		if (!c->ups[i])
			return i;
		if (c->ups[i] != c->up && (lru < 0 || c->ups[i]->used_ms < c->ups[lru]->used_ms))
			lru = i;
	}
	if (lru >= 0)
		up_free(c, c->ups[lru]);
	return lru;
}

/* Idle members that sent something or closed are of no use: close them. */
static void up_sweep(struct conn *c)
{
	for (int i = 0; i < UP_SET_MAX; i++) {
		struct upstream *u = c->ups[i];
		if (u && u != c->up && (u->flags & (F_RD | F_RDHUP | F_EOF)) && !up_idle_ok(u))
			up_free(c, u);
	}
}

static int up_connect(struct conn *c, int bi)
{
	struct worker *w = c->w;
	const struct cfg_backend *b = w->be.b[bi].cfg;
	int slot = up_slot(c);
	if (slot < 0) {
		errno = EBUSY;
		return -1;
	}
	struct upstream *u = calloc(1, sizeof(*u));
	if (!u)
		return -1;
	u->c = c;
	u->backend = bi;
	u->out.wipe = 1; /* rewritten request heads: Authorization */
	u->fd = socket(b->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->fd < 0) {
		free(u);
		return -1;
	}
	int one = 1;
	setsockopt(u->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(u->fd, (const struct sockaddr *)&b->addr.ss, b->addr.len) < 0 &&
	    errno != EINPROGRESS) {
		close(u->fd);
		free(u);
		return -1;
	}
	u->flags |= F_CONNECTING;
	if (b->tls) {
		u->ssl = SSL_new(w->be.b[bi].ssl_ctx);
		if (!u->ssl || SSL_set_fd(u->ssl, u->fd) != 1) {
			SSL_free(u->ssl);
			close(u->fd);
			free(u);
			return -1;
		}
		const char *sni = b->sni[0] ? b->sni : NULL;
		if (sni) {
			SSL_set_tlsext_host_name(u->ssl, sni);
			if (b->verify)
				SSL_set1_host(u->ssl, sni);
		}
		SSL_set_connect_state(u->ssl);
		u->flags |= F_TLSCONN;
	}
	if (loop_io_add(w->loop, &u->io, u->fd, up_io, u) < 0) {
		SSL_free(u->ssl);
		close(u->fd);
		free(u);
		return -1;
	}
	c->up = c->ups[slot] = u;
	u->owner = c->r.owner;
	w->stats->backend_conns[bi]++;
	if (w->bpf) {
		/* For bpftool: which backend serves this phone connection, and
		 * why (the keyed hash of its user, never the user). */
		struct eg_flow_key k;
		struct eg_conn_steer st = {.steer_key = c->r.steer_key,
					   .backend = (uint32_t)bi,
					   .worker = (uint32_t)w->slot,
					   .since_ns = eg_mono_ns()};
		eg_flow_key_from_addrs(&k, (struct sockaddr *)&c->peer,
				       (struct sockaddr *)&c->local);
		bpfgate_steer_set(w->bpf, &k, &st);
		bpfgate_backend_conns_add(w->bpf, (uint32_t)bi, 1);
	}
	return 0;
}

/* Choose the backend, (re)use or open its connection, queue the head. */
static int forward_begin(struct conn *c)
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
		up_close(c);
	c->up = up_take(c, bi);
	if (!c->up && up_connect(c, bi) < 0) {
		char q[96];
		log_warn("event=backend_connect_failed backend=%s error=%s", b->name,
			 log_quote(q, sizeof(q), strerror(errno), (size_t)-1));
		c->r.avoid |= UINT64_C(1) << bi;
		if (++c->r.attempts < MAX_ATTEMPTS)
			return forward_begin(c);
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
		head_commit(c);
	return 1;
}

/* --- bodies in the kernel (splice) -------------------------------------------- */

static struct relay_path g_path; /* zero: every body goes through user space */

void relay_set_path(const struct relay_path *p)
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
static int req_splice_wanted(const struct conn *c)
{
	const struct upstream *u = c->up;
	if (c->r.splicing)
		return 1;
	return g_path.splice && u && !c->ssl && !u->ssl && c->st == CS_FORWARD &&
	       c->r.bmode == BODY_CLEN && !c->r.body_done && !c->r.head_pending &&
	       !(u->flags & (F_CONNECTING | F_TLSCONN)) && c->r.left >= g_path.min_body;
}

static int resp_splice_wanted(const struct conn *c)
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
static int req_splice(struct conn *c)
{
	struct upstream *u = c->up;
	if (!req_splice_wanted(c) || c->in.len || u->out.len || c->r.body_done)
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
	relay_close(c, "backend went away mid request body");
	return -1;
}

/* The response body, backend -> phone. 1 progress, 0 blocked, -1 closed. */
static int resp_splice(struct conn *c)
{
	struct upstream *u = c->up;
	if (!resp_splice_wanted(c) || u->in.len || c->out.len || u->resp_done)
		return 0;
	if (!u->splicing) {
		if (!pipe_ready(&c->kp_resp))
			return 0;
		u->splicing = 1;
	}
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

/* Move validated request-body bytes from c->in to up->out. */
static int req_body_step(struct conn *c)
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
				 peer_ip(c, q, sizeof(q)), c->r.chunk.err);
			w->stats->http_refused++;
			c->r.why = c->r.chunk.err;
			c->r.sv = SV_REFUSED;
			/* The backend saw a partial request: it must not keep it. */
			up_close(c);
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
static int discard_step(struct conn *c)
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

/* --- response ------------------------------------------------------------------- */

static int build_response_head(struct conn *c, struct h1_msg *m)
{
	struct worker *w = c->w;
	struct buf *o = &c->out;
	const char *end = buf_data(&c->up->in) + m->head_len;
	char line[64];
	int ok = 0;
	int n = snprintf(line, sizeof(line), "HTTP/1.1 %d ", m->status);
	ok |= buf_append(&w->pool, o, line, (size_t)n, OUT_MAX);
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
	 * by the close (resp_step de-chunks; close_after is set). */
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
	req_finish(c);
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
			up_close(c);
		} else if (u->resp_close || !c->r.body_done || (u->flags & F_EOF) ||
			   w->be.b[u->backend].cfg->reuse == CFG_REUSE_NEVER) {
			up_close(c);
		} else {
			/* Idle in the set until its identity's next request. From now
			 * on a readable edge means it is unfit (up_sweep); bytes that
			 * came before this point are found when it is taken again
			 * (up_take), without a syscall per request here. */
			c->up = NULL;
			u->flags &= ~F_RD;
		}
	}
	if (!c->r.body_done || c->r.close_after || w->draining)
		c->flags |= F_CLOSING;
	c->st = CS_HEAD;
	req_reset(c);
}

static void bad_gateway(struct conn *c, const char *why)
{
	char q[96];
	log_warn("event=backend_error backend=%s reason=%s",
		 c->r.backend >= 0 ? c->w->be.b[c->r.backend].cfg->name : "-",
		 log_quote(q, sizeof(q), why, (size_t)-1));
	if (c->r.backend >= 0)
		c->w->stats->backend_failures[c->r.backend]++;
	up_close(c);
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
static void reused_conn_lost(struct conn *c, const char *why)
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

static int resp_step(struct conn *c)
{
	struct worker *w = c->w;
	struct upstream *u = c->up;
	if (c->st != CS_FORWARD || !u || (u->flags & (F_CONNECTING | F_TLSCONN)))
		return 0;
	int progress = 0;
	while (!u->resp_started) {
		if (!u->in.len) {
			if ((u->flags & F_EOF) && u->nreq && !u->rx_bytes) {
				reused_conn_lost(c, "backend closed a reused connection before "
						    "answering (request not replayed)");
				return -1;
			}
			if (u->flags & F_EOF) {
				bad_gateway(c, "backend closed the connection without an answer");
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
				bad_gateway(c, "backend closed mid response head");
				return 1;
			}
			return progress;
		}
		if (r < 0) {
			bad_gateway(c, u->hm->err);
			return 1;
		}
		struct h1_msg *m = u->hm;
		if (m->status == 101) { /* we never forward Upgrade */
			bad_gateway(c, "101 Switching Protocols without an upgrade request");
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
			u->priv |= conn_auth_scheme(&h->value);
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
			bad_gateway(c, "response head too large");
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
			struct sink k1 = {.p = (uint8_t *)buf_tail(&c->out)};
			ssize_t k = h1_chunk_feed(&u->chunk, buf_data(&u->in), n, &done,
						  c->r.http10 ? sink_put : NULL, &k1);
			if (k < 0) {
				bad_gateway(c, u->chunk.err);
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
	if (!u->resp_done && resp_splice_wanted(c)) {
		int k = resp_splice(c);
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

/* --- socket pumps ---------------------------------------------------------------- */

static int tls_step(struct conn *c)
{
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		/* With read-ahead the handshake may have pulled the phone's first
		 * request out of the socket into OpenSSL's buffer. If this run was
		 * woken without EPOLLIN (e.g. the EPOLLOUT reported at accept), the
		 * edge for that data is dropped at the next epoll_wait because the
		 * socket is empty again: read as if the socket were readable. */
		c->flags |= F_RD;
		if (SSL_session_reused(c->ssl))
			c->w->stats->tls_resumed++;
		else
			c->w->stats->tls_handshakes++;
		c->st = CS_HEAD;
		req_reset(c);
		return 1;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->flags &= ~F_RD;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		c->flags &= ~F_WR;
		return 0;
	default: {
		char e[160], q[64];
		c->w->stats->tls_failures++;
		log_debug("event=tls_handshake_failed client=%s error=%s", peer_ip(c, q, sizeof(q)),
			  tls_errstr(e, sizeof(e)));
		relay_close(c, "tls handshake failed");
		return -1;
	}
	}
}

static int client_wants_read(const struct conn *c)
{
	switch (c->st) {
	case CS_HEAD:
		return !(c->flags & F_CLOSING);
	case CS_INSPECT:
		return 1;
	case CS_FORWARD:
		return !c->r.body_done && !c->r.head_pending && !req_splice_wanted(c);
	case CS_LOCAL:
		/* An answer that closes the connection needs nothing more from
		 * the client: a 10 GB body is not read to be dropped. */
		return !c->r.body_done && !(c->flags & F_CLOSING);
	default:
		return 0;
	}
}

static int client_read(struct conn *c)
{
	struct worker *w = c->w;
	if (!(c->flags & F_RD) || (c->flags & F_EOF) || !client_wants_read(c))
		return 0;
	size_t max = w->cfg->limits.max_head;
	if (c->st == CS_INSPECT)
		max += w->cfg->limits.inspect_body;
	else if (c->st != CS_HEAD)
		max = OUT_MAX;
	const char *before = c->in.p ? buf_data(&c->in) : NULL;
	long sp = buf_reserve(&w->pool, &c->in, BUF_BLOCK, max);
	if (sp < 0)
		return -1;
	if (c->hm && c->r.head_parsed && before && before != buf_data(&c->in))
		h1_rebase(c->hm, before, buf_data(&c->in));
	if (sp == 0)
		return 0;
	ssize_t r = io_read(c->fd, c->ssl, buf_tail(&c->in), (size_t)sp, &c->flags);
	if (r > 0) {
		c->in.len += (uint32_t)r;
		c->rx += (uint64_t)r;
		w->stats->bytes_from_clients += (uint64_t)r;
		return 1;
	}
	if (c->in.len == 0)
		buf_release(&w->pool, &c->in);
	if (r == 0)
		return 0;
	c->flags |= F_EOF;
	return 1;
}

static int client_write(struct conn *c)
{
	struct worker *w = c->w;
	if (!c->out.len || !(c->flags & F_WR) || c->st == CS_HOLD)
		return 0;
	ssize_t r = io_write(c->fd, c->ssl, buf_data(&c->out), c->out.len, &c->flags);
	if (r > 0) {
		buf_consume(&w->pool, &c->out, (size_t)r);
		w->stats->bytes_to_clients += (uint64_t)r;
		return 1;
	}
	if (r < 0) {
		relay_close(c, "client write failed");
		return -1;
	}
	return 0;
}

static int up_handshake(struct conn *c)
{
	struct upstream *u = c->up;
	if (u->flags & F_CONNECTING) {
		if (!(u->flags & (F_WR | F_RDHUP | F_EOF)))
			return 0;
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			char q[96];
			struct worker *w = c->w;
			int bi = u->backend;
			log_warn("event=backend_connect_failed backend=%s error=%s",
				 w->be.b[bi].cfg->name,
				 log_quote(q, sizeof(q), strerror(err), (size_t)-1));
			w->stats->backend_failures[bi]++;
			/* Nothing was sent: safe to try another backend. */
			up_close(c);
			c->r.avoid |= UINT64_C(1) << bi;
			if (++c->r.attempts >= MAX_ATTEMPTS || !c->r.head_pending) {
				c->r.sv = SV_LOCAL;
				answer_text(c, 502, "backend unreachable", !c->r.body_done);
				return 1;
			}
			return forward_begin(c);
		}
		u->flags &= ~F_CONNECTING;
	}
	if (u->flags & F_TLSCONN) {
		ERR_clear_error();
		int r = SSL_do_handshake(u->ssl);
		if (r != 1) {
			int e = SSL_get_error(u->ssl, r);
			if (e == SSL_ERROR_WANT_READ) {
				u->flags &= ~F_RD;
				return 0;
			}
			if (e == SSL_ERROR_WANT_WRITE) {
				u->flags &= ~F_WR;
				return 0;
			}
			/* The reason a request ends with must outlive this block
			 * (the access line is written later): OpenSSL's detail is
			 * logged here, the request ends with a fixed reason. */
			char eb[160], q[200];
			log_warn("event=backend_tls_failed backend=%s error=%s",
				 c->r.backend >= 0 ? c->w->be.b[c->r.backend].cfg->name : "-",
				 log_quote(q, sizeof(q), tls_errstr(eb, sizeof(eb)), (size_t)-1));
			bad_gateway(c, "backend TLS handshake failed");
			return 1;
		}
		u->flags &= ~F_TLSCONN;
		u->flags |= F_RD | F_WR; /* read-ahead: see tls_step */
	}
	if (c->r.head_pending)
		head_commit(c);
	return 1;
}

static int up_write(struct conn *c)
{
	struct upstream *u = c->up;
	if (!u || !u->out.len)
		return 0;
	if (u->flags & (F_CONNECTING | F_TLSCONN))
		return 0;
	if (!(u->flags & F_WR))
		return 0;
	/* Frame the body bytes the phone already sent before the backend sees a
	 * byte: a bad chunk size that arrived with the head is then refused
	 * without the head ever leaving (smuggling probes come in one write). */
	if (c->st == CS_FORWARD && c->in.len && !c->r.body_done) {
		int k = req_body_step(c);
		if (k < 0)
			return -1;
		if (c->up != u)
			return 1; /* refused: u was closed, the 400 is queued */
	}
	ssize_t r = io_write(u->fd, u->ssl, buf_data(&u->out), u->out.len, &u->flags);
	if (r > 0) {
		buf_consume(&c->w->pool, &u->out, (size_t)r);
		return 1;
	}
	if (r < 0) {
		/* The backend went away while we were sending. If it answered
		 * already, read what it said; otherwise report a bad gateway
		 * (on a reused connection: reused_conn_lost). */
		u->flags |= F_EOF;
		buf_release(&c->w->pool, &u->out);
		if (!u->in.len && !u->resp_started && u->nreq && !u->rx_bytes) {
			reused_conn_lost(c, "backend closed a reused connection (request not "
					    "replayed)");
			return -1;
		}
		if (!u->in.len && !u->resp_started) {
			bad_gateway(c, "backend closed the connection while receiving");
			return 1;
		}
		return 1;
	}
	return 0;
}

static int up_read(struct conn *c)
{
	struct worker *w = c->w;
	struct upstream *u = c->up;
	if (!u || !(u->flags & F_RD) || (u->flags & (F_EOF | F_CONNECTING | F_TLSCONN)))
		return 0;
	if (u->resp_done || c->st != CS_FORWARD || resp_splice_wanted(c))
		return 0;
	long sp = buf_reserve(&w->pool, &u->in, BUF_BLOCK, OUT_MAX);
	if (sp <= 0)
		return sp < 0 ? -1 : 0;
	ssize_t r = io_read(u->fd, u->ssl, buf_tail(&u->in), (size_t)sp, &u->flags);
	if (r > 0) {
		u->in.len += (uint32_t)r;
		u->rx_bytes += (uint64_t)r;
		return 1;
	}
	if (!u->in.len)
		buf_release(&w->pool, &u->in);
	if (r == 0)
		return 0;
	u->flags |= F_EOF;
	return 1;
}

/* --- closing ---------------------------------------------------------------------- */

/* CS_LINGER: drop what the client still sends; close at its EOF or a bound. */
static void linger_step(struct conn *c)
{
	char sink[16384];
	while (c->flags & F_RD) {
		ssize_t r = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (r > 0) {
			c->r.bytes_in += (uint64_t)r;
			if (c->r.bytes_in < LINGER_MAX)
				continue;
		} else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->flags &= ~F_RD;
			return;
		} else if (r < 0 && errno == EINTR) {
			continue;
		}
		break; /* EOF, error, or enough */
	}
	if (!(c->flags & F_RD) && !(c->flags & (F_EOF | F_RDHUP)))
		return;
	relay_close(c, NULL);
}

/*
 * Close after an answer without losing it: closing a socket with unread
 * input makes the kernel send a reset, and a client that receives the reset
 * before it read the answer loses the answer. So (as HAProxy and nginx do)
 * end our side first (TLS close_notify, then FIN), then read and drop what
 * the client still sends until it closes too, for at most LINGER_MS and
 * LINGER_MAX bytes. A client that has already finished sending is closed
 * at once.
 */
static void linger_begin(struct conn *c)
{
	if (c->flags & F_EOF) {
		relay_close(c, NULL);
		return;
	}
	if (c->ssl) {
		ERR_clear_error();
		SSL_shutdown(c->ssl); /* one close_notify; the answer to it is not awaited */
	}
	shutdown(c->fd, SHUT_WR);
	buf_release(&c->w->pool, &c->in);
	c->st = CS_LINGER;
	c->r.bytes_in = 0;
	c->flags |= F_RD; /* edge-triggered: what is already queued gives no new edge */
	set_timer(c, T_LINGER,
		  c->w->cfg->timeouts.body_ms < LINGER_MS ? c->w->cfg->timeouts.body_ms : LINGER_MS,
		  1);
	linger_step(c);
}

/* --- the driver ----------------------------------------------------------------- */

static int step_request(struct conn *c)
{
	switch (c->st) {
	case CS_HEAD:
		return head_step(c);
	case CS_INSPECT:
		return inspect_step(c);
	case CS_FORWARD: {
		int r = req_body_step(c);
		return r < 0 ? r : r | req_splice(c);
	}
	case CS_LOCAL:
		return discard_step(c);
	default:
		return 0;
	}
}

static void conn_run(struct conn *c)
{
	int any = 0, iter;
	if (c->st == CS_LINGER) {
		linger_step(c);
		return;
	}
	for (iter = 0; iter < RUN_TURN && !(c->flags & F_DEAD); iter++) {
		int p = 0, r;
		if (c->st == CS_TLS) {
			r = tls_step(c);
			if (r < 0)
				return;
			if (r == 0)
				break;
			any = 1;
			continue;
		}
		if ((r = client_read(c)) < 0)
			goto fail;
		p |= r;
		if ((r = step_request(c)) < 0)
			goto fail;
		p |= r;
		if (c->flags & F_DEAD)
			return;
		if (c->up && (c->up->flags & (F_CONNECTING | F_TLSCONN))) {
			r = up_handshake(c);
			if (r < 0)
				goto fail;
			p |= r;
		}
		if ((r = up_write(c)) < 0)
			goto fail;
		p |= r;
		if ((r = up_read(c)) < 0)
			goto fail;
		p |= r;
		if ((r = resp_step(c)) < 0)
			return; /* closed inside */
		p |= r;
		if (c->flags & F_DEAD)
			return;
		if ((r = client_write(c)) < 0)
			return;
		p |= r;
		/* A local answer is complete once written and the body dropped
		 * (or not to be read: the connection closes after it). */
		if (c->st == CS_LOCAL && !c->out.len &&
		    (c->r.body_done || (c->flags & F_CLOSING))) {
			req_finish(c);
			c->st = CS_HEAD;
			req_reset(c);
			p = 1;
		}
		any |= p;
		if (!p)
			break;
	}
	if (c->flags & F_DEAD)
		return;
	/* Teardown conditions. */
	if ((c->flags & F_CLOSING) && !c->out.len && c->st == CS_HEAD) {
		linger_begin(c);
		return;
	}
	if (c->flags & (F_EOF | F_RDHUP)) {
		int idle = c->st == CS_HEAD && !c->in.len && !c->hm && !c->out.len;
		int gone = c->st == CS_TLS || idle;
		/* The phone hung up while its request or long-poll was pending:
		 * free the backend connection now (SOGo holds a worker per Ping). */
		if (c->st == CS_FORWARD || c->st == CS_HOLD || c->st == CS_INSPECT)
			gone = 1;
		if ((c->flags & F_EOF) && c->st == CS_LOCAL && !c->r.body_done)
			gone = 1;
		if ((c->flags & F_EOF) && c->st == CS_HEAD && c->in.len)
			gone = 1; /* a head that can never complete */
		if (gone) {
			relay_close(c, idle ? NULL : "client closed");
			return;
		}
	}
	/* Idle backend connections that their server closed or wrote to. */
	up_sweep(c);
	/* The turn ended with work left (every step still moving bytes). The
	 * sockets are edge-triggered: if their peers have sent everything
	 * already, no new event will come, so come back after the other
	 * connections had their turn. */
	if (iter == RUN_TURN)
		loop_timer_set(c->w->loop, &c->again, 0);
	arm_phase_timer(c, any);
	return;
fail:
	relay_close(c, "internal error");
}

static void conn_io(struct loop_io *io, uint32_t ev)
{
	struct conn *c = io->arg;
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
		c->flags |= F_RD;
	if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
		c->flags |= F_WR;
	if (ev & (EPOLLRDHUP | EPOLLHUP))
		c->flags |= F_RDHUP | F_RD;
	conn_run(c);
}

static void up_io(struct loop_io *io, uint32_t ev)
{
	struct upstream *u = io->arg;
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
		u->flags |= F_RD;
	if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
		u->flags |= F_WR;
	if (ev & (EPOLLRDHUP | EPOLLHUP))
		u->flags |= F_RDHUP | F_RD;
	conn_run(u->c);
}

static void conn_again(struct loop_timer *t)
{
	conn_run(t->arg);
}

static void conn_timeout(struct loop_timer *t)
{
	struct conn *c = t->arg;
	char q[64];
	switch (c->tmr_kind) {
	case T_HANDSHAKE:
		c->w->stats->tls_failures++;
		relay_close(c, "handshake timeout");
		return;
	case T_IDLE:
	case T_DRAIN:
	case T_FLUSH:
	case T_LINGER:
		relay_close(c, NULL);
		return;
	case T_HEAD:
		log_info("event=timeout phase=request_head client=%s", peer_ip(c, q, sizeof(q)));
		free(c->hm);
		c->hm = NULL;
		c->r.sv = SV_REFUSED;
		answer_text(c, 408, "request head timeout", 1);
		buf_release(&c->w->pool, &c->in);
		c->r.body_done = 1;
		conn_run(c);
		return;
	case T_HOLD:
		c->st = CS_LOCAL;
		conn_run(c);
		return;
	case T_RATE: {
		const struct gw_config *cfg = c->w->cfg;
		uint64_t got = c->rx - c->win_rx;
		uint64_t budget =
		    (uint64_t)cfg->limits.min_body_rate * cfg->timeouts.body_ms / 1000;
		/* Below the rate only counts against the phone when it is the
		 * one holding things up: with F_RD still set we stopped
		 * reading (the backend is not taking the body as fast). */
		if (got >= budget || (got && (c->flags & F_RD))) {
			c->win_rx = c->rx;
			set_timer(c, T_RATE, cfg->timeouts.body_ms, 1);
			return;
		}
		log_info("event=timeout phase=request_body reason=%s client=%s bytes=%llu "
			 "window_ms=%u",
			 got ? "min_rate" : "silence", peer_ip(c, q, sizeof(q)),
			 (unsigned long long)got, cfg->timeouts.body_ms);
		c->w->stats->slow_clients_closed++;
		relay_close(c, "request body too slow");
		return;
	}
	case T_CONNECT:
		if (c->up) {
			c->r.avoid |= UINT64_C(1) << c->up->backend;
			log_warn("event=backend_connect_timeout backend=%s",
				 c->w->be.b[c->up->backend].cfg->name);
		}
		bad_gateway(c, "backend connect timeout");
		conn_run(c);
		return;
	case T_RESPONSE:
		log_warn("event=timeout phase=backend_response client=%s cmd=%s",
			 peer_ip(c, q, sizeof(q)), eas_cmd_name(c->r.cmd));
		if (!c->r.resp_seen) {
			up_close(c);
			if (c->r.hanging)
				c->w->stats->hanging_open--;
			c->r.hanging = 0;
			c->r.sv = SV_LOCAL;
			answer_text(c, 504, "backend response timeout", 1);
			conn_run(c);
			return;
		}
		relay_close(c, "response timeout");
		return;
	default:
		relay_close(c, "body timeout");
		return;
	}
}

/* --- lifecycle --------------------------------------------------------------------- */

/* Close one backend connection of c (the current one or an idle one). */
static void up_free(struct conn *c, struct upstream *u)
{
	struct worker *w = c->w;
	int left = 0;
	for (int i = 0; i < UP_SET_MAX; i++) {
		if (c->ups[i] == u)
			c->ups[i] = NULL;
		left += c->ups[i] != NULL;
	}
	if (c->up == u)
		c->up = NULL;
	loop_io_del(w->loop, &u->io);
	if (u->ssl) {
		SSL_set_quiet_shutdown(u->ssl, 1);
		SSL_free(u->ssl);
	}
	close(u->fd);
	buf_release(&w->pool, &u->in);
	buf_release(&w->pool, &u->out);
	free(u->hm);
	w->stats->backend_conns[u->backend]--;
	if (w->bpf) {
		struct eg_flow_key k;
		eg_flow_key_from_addrs(&k, (struct sockaddr *)&c->peer,
				       (struct sockaddr *)&c->local);
		if (!left)
			bpfgate_steer_del(w->bpf, &k);
		bpfgate_backend_conns_add(w->bpf, (uint32_t)u->backend, -1);
	}
	/* This epoll batch may still hold an event for u: free it after. */
	u->fd = -1;
	u->next_dead = w->dead_ups;
	w->dead_ups = u;
}

/* Close the backend connection of the current request, if any. */
static void up_close(struct conn *c)
{
	if (c->up)
		up_free(c, c->up);
}

static void relay_close(struct conn *c, const char *why)
{
	struct worker *w = c->w;
	if (c->flags & F_DEAD)
		return;
	if (why && c->st != CS_TLS) {
		char q[64];
		log_debug("event=close client=%s reason=%s", peer_ip(c, q, sizeof(q)), why);
	}
	if (c->st == CS_FORWARD && c->r.hanging)
		w->stats->hanging_open--;
	if (c->st == CS_HOLD)
		c->r.status = 499; /* the held answer never left */
	if (c->st == CS_FORWARD || c->st == CS_INSPECT || c->st == CS_LOCAL || c->st == CS_HOLD ||
	    (c->st == CS_HEAD && c->hm)) {
		if (!c->r.status)
			c->r.status = 499; /* nginx's "client closed request" */
		if (c->st != CS_HEAD)
			req_finish(c);
	}
	req_release(c, 0); /* a request that never got as far as req_finish */
	for (int i = 0; i < UP_SET_MAX; i++)
		if (c->ups[i])
			up_free(c, c->ups[i]);
	c->flags |= F_DEAD;
	loop_io_del(w->loop, &c->io);
	loop_timer_cancel(w->loop, &c->tmr);
	loop_timer_cancel(w->loop, &c->again);
	krelay_pipe_close(&c->kp_req);
	krelay_pipe_close(&c->kp_resp);
	if (c->ssl) {
		SSL_set_quiet_shutdown(c->ssl, 1);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	close(c->fd);
	c->fd = -1;
	srcadmit_release(w, (struct sockaddr *)&c->peer, c->src_tag);
	c->src_tag = 0;
	buf_release(&w->pool, &c->in);
	buf_release(&w->pool, &c->out);
	free(c->hm);
	c->hm = NULL;
	free(c->eas);
	c->eas = NULL;
	/* unlink from the live list, push on the dead list */
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
	w->stats->conns_open--;
	c->next = w->dead;
	w->dead = c;
}

void relay_reap(struct worker *w)
{
	while (w->dead_ups) {
		struct upstream *u = w->dead_ups;
		w->dead_ups = u->next_dead;
		free(u);
	}
	while (w->dead) {
		struct conn *c = w->dead;
		w->dead = c->next;
		free(c);
	}
}

struct conn *relay_next(struct conn *c)
{
	return c->next;
}

void relay_close_all(struct worker *w, const char *why)
{
	while (w->conns)
		relay_close(w->conns, why);
}

int relay_drain(struct conn *c)
{
	/* Mid-handshake: let it finish (timeouts.handshake bounds it). A TLS 1.3
	 * client may already have sent its first request; it is answered with
	 * Connection: close like any request on a draining worker. */
	if (c->st == CS_TLS)
		return 0;
	c->r.close_after = 1;
	if (c->st == CS_FORWARD && c->r.hanging && !c->r.resp_seen && c->r.body_done) {
		/* A held Ping: answer "heartbeat expired, no changes" so the phone
		 * re-issues it promptly, to a worker that is not going away. */
		uint8_t wb[64];
		size_t wl = eas_status_wbxml(EAS_CMD_PING, 1, wb, sizeof(wb));
		up_close(c);
		c->w->stats->hanging_open--;
		c->r.hanging = 0;
		c->r.sv = SV_LOCAL;
		answer_local(c, 200, "Content-Type: application/vnd.ms-sync.wbxml\r\n", wb, wl, 1);
		conn_run(c);
		return (c->flags & F_DEAD) != 0;
	}
	if (c->st == CS_HOLD) {
		/* A held quarantined Ping: its answer ("no changes") is queued;
		 * send it now and close, rather than at the drain deadline. */
		c->st = CS_LOCAL;
		c->flags |= F_CLOSING;
		conn_run(c);
		return (c->flags & F_DEAD) != 0;
	}
	/* Idle as far as we have read: the socket is edge-triggered, so a
	 * request may be waiting unread; read it now. A request found, or one
	 * arriving before the T_DRAIN timer, is answered with Connection: close;
	 * a connection still idle then is closed. */
	if (c->st == CS_HEAD && !c->hm)
		c->flags |= F_RD;
	conn_run(c);
	return (c->flags & F_DEAD) != 0;
}

void relay_accept(struct listener *l)
{
	struct worker *w = l->w;
	for (int i = 0; i < 64 && w->accepting; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("event=accept_failed error=%m");
			return;
		}
		if (w->nconns >= w->cfg->limits.max_conns) {
			close(fd);
			continue;
		}
		uint64_t src_tag = 0;
		/* Before any TLS work: refusing costs an accept and a close. */
		if (!l->plain && srcadmit_take(w, (struct sockaddr *)&ss, &src_tag) < 0) {
			close(fd);
			continue;
		}
		struct conn *c = calloc(1, sizeof(*c));
		if (!c) {
			srcadmit_release(w, (struct sockaddr *)&ss, src_tag);
			close(fd);
			continue;
		}
		c->src_tag = src_tag;
		/* Request heads carry Authorization: never left in pooled storage. */
		c->in.wipe = 1;
		c->w = w;
		c->fd = fd;
		c->peer = ss;
		sl = sizeof(c->local);
		getsockname(fd, (struct sockaddr *)&c->local, &sl);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->ssl = l->plain ? NULL : tls_server_ssl(w->tls, fd);
		loop_timer_init(&c->tmr, conn_timeout, c);
		loop_timer_init(&c->again, conn_again, c);
		c->kp_req.fd[0] = c->kp_req.fd[1] = c->kp_resp.fd[0] = c->kp_resp.fd[1] = -1;
		if ((!l->plain && !c->ssl) || loop_io_add(w->loop, &c->io, fd, conn_io, c) < 0) {
			srcadmit_release(w, (struct sockaddr *)&ss, src_tag);
			SSL_free(c->ssl);
			close(fd);
			free(c);
			continue;
		}
		c->st = CS_TLS;
		if (l->plain) {
			c->st = CS_HEAD;
			req_reset(c);
		}
		c->t_accept_ms = loop_now_ms(w->loop);
		c->next = w->conns;
		if (w->conns)
			w->conns->prev = c;
		w->conns = c;
		w->nconns++;
		w->stats->conns_accepted++;
		w->stats->conns_open++;
		arm_phase_timer(c, 1);
	}
}
