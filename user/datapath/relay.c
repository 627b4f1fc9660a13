/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * relay.c - the connection state machine: a connection's life (accept,
 * relay_close(), the only teardown), the socket pumps and the driver. See
 * relay.h, and conn.h for the parts in the other files.
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
 * All sockets are registered edge-triggered for both directions; relay_run()
 * keeps stepping every pump until none makes progress. Buffers are taken
 * from the worker pool only while bytes are in them.
 */
#include "relay.h"
#include "conn.h"
#include "eas_answer.h"
#include "ktls.h"
#include "log.h"
#include "srcadmit.h"
#include "upstream.h"

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
#include <unistd.h>

#define RUN_TURN 256 /* steps one connection takes before others get a turn */

const char *relay_peer_ip(const struct conn *c, char *buf, size_t n)
{
	if (c->peer.sa.sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = &c->peer.in6;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			return inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], buf, (socklen_t)n);
		return inet_ntop(AF_INET6, &s6->sin6_addr, buf, (socklen_t)n);
	}
	return inet_ntop(AF_INET, &c->peer.in.sin_addr, buf, (socklen_t)n);
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
		if (ktls_handoff(c) < 0)
			return -1;
		c->st = CS_HEAD;
		request_reset(c);
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
		log_debug("event=tls_handshake_failed client=%s error=%s",
			  relay_peer_ip(c, q, sizeof(q)), tls_errstr(e, sizeof(e)));
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
		return !c->r.body_done && !c->r.head_pending && !bodysplice_req_wanted(c);
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
	ssize_t r = c->ktls ? ktls_read(c, buf_tail(&c->in), (size_t)sp)
			    : io_read(c->fd, c->ssl, buf_tail(&c->in), (size_t)sp, &c->flags);
	if (r > 0 && c->ssl && !c->ktls && (c->flags & TLS_F_SOCK_DRAINED) &&
	    !SSL_has_pending(c->ssl))
		c->flags &= ~F_RD; /* the next edge says when there is more: no read() for EAGAIN */
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
			upstream_close(c);
			c->r.avoid |= UINT64_C(1) << bi;
			if (++c->r.attempts >= MAX_ATTEMPTS || !c->r.head_pending) {
				c->r.sv = SV_LOCAL;
				answer_text(c, 502, "backend unreachable", !c->r.body_done);
				return 1;
			}
			return request_forward(c);
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
			response_bad_gateway(c, "backend TLS handshake failed");
			return 1;
		}
		u->flags &= ~F_TLSCONN;
		u->flags |= F_RD | F_WR; /* read-ahead: see tls_step */
	}
	if (c->r.head_pending)
		request_commit_head(c);
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
		int k = request_body_step(c);
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
		 * (on a reused connection: response_reused_lost). */
		u->flags |= F_EOF;
		buf_release(&c->w->pool, &u->out);
		if (!u->in.len && !u->resp_started && u->nreq && !u->rx_bytes) {
			response_reused_lost(c, "backend closed a reused connection (request not "
						"replayed)");
			return -1;
		}
		if (!u->in.len && !u->resp_started) {
			response_bad_gateway(c, "backend closed the connection while receiving");
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
	if (u->resp_done || c->st != CS_FORWARD || bodysplice_resp_wanted(c))
		return 0;
	long sp = buf_reserve(&w->pool, &u->in, BUF_BLOCK, OUT_MAX);
	if (sp <= 0)
		return sp < 0 ? -1 : 0;
	ssize_t r = io_read(u->fd, u->ssl, buf_tail(&u->in), (size_t)sp, &u->flags);
	if (!u->ssl && (r > 0 ? r < sp : r == 0 && !(u->flags & F_RD)))
		u->drained_turn = loop_turn(w->loop);
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

/* --- the driver ----------------------------------------------------------------- */

static int step_request(struct conn *c)
{
	switch (c->st) {
	case CS_HEAD:
		return request_head_step(c);
	case CS_INSPECT:
		return request_inspect_step(c);
	case CS_FORWARD: {
		int r = request_body_step(c);
		return r < 0 ? r : r | bodysplice_request(c);
	}
	case CS_LOCAL:
		return request_discard_step(c);
	default:
		return 0;
	}
}

void relay_run(struct conn *c)
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
		if ((r = response_step(c)) < 0)
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
			request_finish(c);
			c->st = CS_HEAD;
			request_reset(c);
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
	upstream_sweep(c);
	/* The turn ended with work left (every step still moving bytes). The
	 * sockets are edge-triggered: if their peers have sent everything
	 * already, no new event will come, so come back after the other
	 * connections had their turn. */
	if (iter == RUN_TURN)
		loop_timer_set(c->w->loop, &c->again, 0);
	conntimer_arm(c, any);
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
	relay_run(c);
}

void relay_upstream_io(struct loop_io *io, uint32_t ev)
{
	struct upstream *u = io->arg;
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
		u->flags |= F_RD;
	if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
		u->flags |= F_WR;
	if (ev & (EPOLLRDHUP | EPOLLHUP))
		u->flags |= F_RDHUP | F_RD;
	relay_run(u->c);
}

static void conn_again(struct loop_timer *t)
{
	relay_run(t->arg);
}

/* --- lifecycle --------------------------------------------------------------------- */

void relay_close(struct conn *c, const char *why)
{
	struct worker *w = c->w;
	if (c->flags & F_DEAD)
		return;
	if (why && c->st != CS_TLS) {
		char q[64];
		log_debug("event=close client=%s reason=%s", relay_peer_ip(c, q, sizeof(q)), why);
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
			request_finish(c);
	}
	request_release(c, 0); /* a request that never got as far as request_finish */
	for (int i = 0; i < UP_SET_MAX; i++)
		if (c->ups[i])
			upstream_free(c, c->ups[i]);
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
		upstream_close(c);
		c->w->stats->hanging_open--;
		c->r.hanging = 0;
		c->r.sv = SV_LOCAL;
		answer_local(c, 200, "Content-Type: application/vnd.ms-sync.wbxml\r\n", wb, wl, 1);
		relay_run(c);
		return (c->flags & F_DEAD) != 0;
	}
	if (c->st == CS_HOLD) {
		/* A held quarantined Ping: its answer ("no changes") is queued;
		 * send it now and close, rather than at the drain deadline. */
		c->st = CS_LOCAL;
		c->flags |= F_CLOSING;
		relay_run(c);
		return (c->flags & F_DEAD) != 0;
	}
	/* Idle as far as we have read: the socket is edge-triggered, so a
	 * request may be waiting unread; read it now. A request found, or one
	 * arriving before the T_DRAIN timer, is answered with Connection: close;
	 * a connection still idle then is closed. */
	if (c->st == CS_HEAD && !c->hm)
		c->flags |= F_RD;
	relay_run(c);
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
		worker_took(w);
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
		memcpy(&c->peer, &ss, sl < sizeof(c->peer) ? sl : sizeof(c->peer));
		sl = sizeof(c->local);
		getsockname(fd, (struct sockaddr *)&c->local, &sl);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->ssl = l->plain ? NULL : tls_server_ssl(w->tls, fd);
		if (c->ssl) {
			ktls_prepare(c->ssl);
			tls_track_drain(c->ssl, &c->flags);
		}
		loop_timer_init(&c->tmr, conntimer_fired, c);
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
			request_reset(c);
		}
		c->t_accept_ms = loop_now_ms(w->loop);
		c->next = w->conns;
		if (w->conns)
			w->conns->prev = c;
		w->conns = c;
		w->nconns++;
		w->stats->conns_accepted++;
		w->stats->conns_open++;
		conntimer_arm(c, 1);
	}
}
