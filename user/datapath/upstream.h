/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * upstream.h - the backend connections of one client connection (private to
 * the relay's files, see conn.h). At most UP_SET_MAX, each belonging to one
 * identity for its whole life (relay.h says why); an idle one is reused for
 * its identity's next request to the same backend when it is still fit,
 * the least recently used one makes way for a new one.
 *
 * An idle connection the backend never authenticated itself (no NTLM or
 * Negotiate on it: every request carries its own credentials) is also
 * indexed in its worker by (backend, identity): the same identity's request
 * on another client connection of the worker takes it over (it moves to
 * that client connection's set) instead of opening one. A load balancer in
 * front spreads each phone over several connections; without this, a user
 * whose connection sat idle on another of them paid a new backend
 * connection per request, and so did the backend.
 */
#ifndef EG_UPSTREAM_H
#define EG_UPSTREAM_H

#include "conn.h"

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
	enum conn_body bmode;
	int eof_body;
	uint64_t left;
	struct h1_chunk chunk;
	uint64_t rx_bytes; /* response bytes received for this request */
	int splicing;	   /* the response body moves backend -> phone by splice */
	/* Loop turn of the last read that left the (plain) socket empty: a
	 * short read or EAGAIN. 0: unknown (TLS, or bytes moved by splice). */
	uint64_t drained_turn;
	/* Went idle drained, in turn idle_turn: whatever arrives afterwards
	 * raises an edge, so once an epoll_wait has returned since, F_RD and
	 * F_RDHUP say all a MSG_PEEK would (upstream_idle_ok). */
	uint8_t idle_clean;
	uint64_t idle_turn;
	struct upstream *next_dead;
	/* In the worker's index of idle shareable connections (pprev NULL:
	 * not indexed). Only while idle, owner != 0 and !priv. */
	struct upstream *idle_next, **idle_pprev;
};

/* The idle connection of c's request's (backend bi, identity), taken for it
 * if still fit (an unfit one is closed), or NULL. */
struct upstream *upstream_take(struct conn *c, int bi);
/* Open a connection to backend bi for c's request (c->up). 0 or -1 (errno). */
int upstream_connect(struct conn *c, int bi);
/* u (c's, just finished its exchange) is idle in c's set: index it for its
 * identity's requests on other client connections, if it may serve them. */
void upstream_idle_put(struct conn *c, struct upstream *u);
/* Close idle members that sent something or closed. */
void upstream_sweep(struct conn *c);
/* Close one backend connection of c (the current one or an idle one). */
void upstream_free(struct conn *c, struct upstream *u);
/* Close the backend connection of the current request, if any. */
void upstream_close(struct conn *c);
/* Does this Authorization (or WWW-Authenticate) value authenticate the
 * connection rather than the request (NTLM, Negotiate: IIS keeps it per TCP
 * connection)? */
int upstream_auth_scheme(const struct h1_str *v);

#endif
