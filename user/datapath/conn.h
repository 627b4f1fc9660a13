/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * conn.h - a client connection as the relay's files share it. Private to
 * user/datapath (relay.h is the relay's interface to the rest):
 *
 *   relay.c       the connection's life: relay_accept() creates it,
 *                 relay_close() is the only teardown; the socket pumps and
 *                 the driver (relay_run: every step until none progresses)
 *   request.c     a request: its head (h1 -> eas -> gate -> steering key),
 *                 an inspected body, forwarding it, its body to the backend,
 *                 its end (access log line, counters, the gate told)
 *   answer.c      what the gateway answers itself
 *   response.c    the backend's answer, on its way to the client
 *   upstream.c    the backend connections a client connection owns
 *                 (upstream.h)
 *   bodysplice.c  bodies moved by splice(2) between two plaintext legs
 *   ktls.c        the phone's TLS handed to the kernel after the handshake
 *   linger.c      closing after an answer without losing the answer
 *   conntimer.c   the one timer of a connection: what it waits for in each
 *                 state, and what happens when it fires
 *
 * Every function here takes the connection and may close it: after one
 * returns, check F_DEAD before touching c again (relay_run does).
 */
#ifndef EG_CONN_H
#define EG_CONN_H

#include <openssl/ssl.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "buf.h"
#include "eas.h"
#include "gate.h"
#include "h1.h"
#include "krelay.h"
#include "loop.h"
#include "stats.h"
#include "worker.h"

#define OUT_MAX	     (64u * 1024) /* cap of a pump's output buffer */
#define MAX_ATTEMPTS 3		  /* backends tried when connecting fails */
/* Backend connections one client connection keeps open, keyed by (backend,
 * identity), least recently used out: a load balancer's connection carries
 * many phones, and each identity must find its own connection again. */
#define UP_SET_MAX 8

enum conn_state {
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
#define F_TLSBUF     (1u << 8) /* OpenSSL may hold the phone's record buffers (conntimer.c) */
/* bit 31: TLS_F_SOCK_DRAINED (tls.h), kept by OpenSSL's read callback */

enum conn_body { BODY_NONE = 0, BODY_CLEN = 1, BODY_CHUNKED = 2 };

enum conn_timer {
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
	T_LINGER,
	/* a moment of T_IDLE's / T_RESPONSE's wait, after which OpenSSL's record
	 * buffers are freed (conntimer.c) */
	T_QUIET_IDLE,
	T_QUIET_RESPONSE
};

struct upstream; /* upstream.h */

/* A TCP endpoint, IPv4 or IPv6: 28 bytes where a sockaddr_storage takes 128,
 * twice per connection (idle long-polls are counted in the 100,000s). */
union conn_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* What we keep of a request after its head is gone: enough to log it. */
struct conn_req {
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
	enum conn_body bmode;
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
	struct loop_timer again; /* relay_run stopped at its turn's cap: run again */
	int tmr_kind;
	int fd;
	SSL *ssl;     /* the phone's TLS in user space; NULL on a plain listener or with ktls */
	uint8_t ktls; /* KTLS_*: the phone's TLS is the kernel's (ktls.h) */
	uint32_t flags;
	enum conn_state st;
	union conn_addr peer, local;
	struct buf in, out;
	struct h1_msg *hm;		  /* request head being parsed */
	struct eas_req *eas;		  /* classification, kept only until the gate decided */
	struct upstream *up;		  /* serving the current request (one of ups[]) */
	struct upstream *ups[UP_SET_MAX]; /* every open backend connection of this client */
	struct conn_req r;
	struct krelay_pipe kp_req, kp_resp; /* splice pipes, open only while a body moves */
	uint64_t nreq;
	uint64_t t_accept_ms;
	uint64_t src_tag; /* counted against its source's cap (srcadmit); 0 = not */
	uint64_t rx;	  /* bytes read from the phone (TLS plaintext), all requests */
	uint64_t win_rx;  /* rx when the current request-body rate window began */
};

/* The phone's leg is TLS (in user space or in the kernel), not a proxy's plain one. */
static inline int conn_is_tls(const struct conn *c)
{
	return c->ssl || c->ktls;
}

/* A de-chunking sink: payload bytes into a buffer at least as large as the
 * framed body they come from, so nothing is ever cut. */
struct conn_sink {
	uint8_t *p;
	size_t len;
};

static inline void conn_sink_put(void *arg, const char *p, size_t n)
{
	struct conn_sink *k = arg;
	memcpy(k->p + k->len, p, n);
	k->len += n;
}

/* relay.c */
void relay_run(struct conn *c);
void relay_close(struct conn *c, const char *why);
const char *relay_peer_ip(const struct conn *c, char *buf, size_t n);
void relay_upstream_io(struct loop_io *io, uint32_t ev); /* a backend socket's events */

/* request.c */
void request_reset(struct conn *c);
void request_release(struct conn *c, int status);
void request_finish(struct conn *c);
void request_commit_head(struct conn *c);
int request_head_step(struct conn *c);
int request_inspect_step(struct conn *c);
int request_forward(struct conn *c);
int request_body_step(struct conn *c);
int request_discard_step(struct conn *c);

/* answer.c */
void answer_local(struct conn *c, int status, const char *extra_hdrs, const void *body, size_t blen,
		  int close);
void answer_text(struct conn *c, int status, const char *why, int close);
void answer_verdict(struct conn *c, const struct gate_verdict *v);
void answer_refuse(struct conn *c, int status, const char *why);

/* response.c */
int response_step(struct conn *c);
void response_bad_gateway(struct conn *c, const char *why);
void response_reused_lost(struct conn *c, const char *why);

/* bodysplice.c (the path itself: bodysplice.h) */
int bodysplice_req_wanted(const struct conn *c);
int bodysplice_resp_wanted(const struct conn *c);
int bodysplice_request(struct conn *c);
int bodysplice_response(struct conn *c);

/* linger.c */
void linger_begin(struct conn *c);
void linger_step(struct conn *c);

/* conntimer.c */
void conntimer_set(struct conn *c, int kind, unsigned ms, int restart);
void conntimer_arm(struct conn *c, int progress);
void conntimer_fired(struct loop_timer *t);

#endif
