/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* upstream.c - see upstream.h. */
#include "upstream.h"
#include "bpfmaps.h"
#include "log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Does the request carry an Authorization that authenticates the connection
 * rather than the request (NTLM, Negotiate: IIS keeps it per TCP connection)? */
int upstream_auth_scheme(const struct h1_str *v)
{
	return (v->n >= 4 && !strncasecmp(v->p, "NTLM", 4) && (v->n == 4 || v->p[4] == ' ')) ||
	       (v->n >= 9 && !strncasecmp(v->p, "Negotiate", 9) && (v->n == 9 || v->p[9] == ' '));
}

/*
 * Is an idle backend connection still fit for a request? It must be open and
 * must have sent nothing since its last response: a backend that closes
 * kept-alive connections without saying so has sent its FIN by now, and a
 * byte that came unasked (a 408, a planted response) would be taken for the
 * next request's answer. A TLS record without data (a session ticket) is
 * consumed here and harmless; a partial record is not trusted.
 *
 * No syscall when it went idle with its socket drained (idle_clean) and an
 * epoll_wait has returned since: anything that arrived before it raised an
 * edge (F_RD, F_RDHUP), and what arrives after it is the same race a peek
 * leaves between itself and the send. Keep-alive reuse, the common case,
 * costs no recv(MSG_PEEK) then.
 */
static int upstream_idle_ok(struct upstream *u)
{
	char x;
	if ((u->flags & (F_EOF | F_RDHUP)) || u->in.len)
		return 0;
	if (u->idle_clean && !(u->flags & F_RD) && loop_turn(u->c->w->loop) > u->idle_turn)
		return 1; /* nothing arrived before this turn's epoll_wait */
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

/* --- the worker's index of idle connections an identity may take over --------- */

static struct upstream **idle_head(struct worker *w, int bi, uint64_t owner)
{
	/* owner is a keyed hash already: its bits are evenly spread */
	return &w->up_idle[((owner >> 1) ^ (uint64_t)bi * 0x9e3779b97f4a7c15u) >> 54 &
			   (WORKER_UP_IDLE_BUCKETS - 1)];
}

static void idle_unlink(struct upstream *u)
{
	if (!u->idle_pprev)
		return;
	*u->idle_pprev = u->idle_next;
	if (u->idle_next)
		u->idle_next->idle_pprev = u->idle_pprev;
	u->idle_next = NULL;
	u->idle_pprev = NULL;
}

void upstream_idle_put(struct conn *c, struct upstream *u)
{
	if (u->priv || !u->owner || u->idle_pprev)
		return;
	struct upstream **h = idle_head(c->w, u->backend, u->owner);
	u->idle_next = *h;
	if (*h)
		(*h)->idle_pprev = &u->idle_next;
	*h = u;
	u->idle_pprev = h;
}

/* For bpftool: which backend serves this phone connection, and why (the
 * keyed hash of its user, never the user). */
static void steer_publish(struct conn *c, int bi)
{
	struct eg_flow_key k;
	struct eg_conn_steer st = {.steer_key = c->r.steer_key,
				   .backend = (uint32_t)bi,
				   .worker = (uint32_t)c->w->slot,
				   .since_ns = eg_mono_ns()};
	eg_flow_key_from_addrs(&k, (struct sockaddr *)&c->peer, (struct sockaddr *)&c->local);
	bpfmaps_steer_set(c->w->bpf, &k, &st);
}

/* Take u, idle in another client connection's (d's) set, into c's set (its
 * identity's request there needs it). When c's set is full, its least
 * recently used idle member goes to d in exchange if it may serve on
 * another client connection (closed otherwise): taking over a connection
 * closes none, so the worker keeps every identity's connection somewhere.
 * -1 if c has no place. */
static int adopt(struct conn *c, struct upstream *u)
{
	struct conn *d = u->c;
	int ds = -1, slot = -1, lru = -1;
	idle_unlink(u);
	for (int i = 0; i < UP_SET_MAX; i++) {
		if (d->ups[i] == u)
			ds = i;
		struct upstream *x = c->ups[i];
		if (!x && slot < 0)
			slot = i;
		else if (x && x != c->up && (lru < 0 || x->used_ms < c->ups[lru]->used_ms))
			lru = i;
	}
	if (ds < 0 || (slot < 0 && lru < 0))
		return -1;
	d->ups[ds] = NULL;
	if (slot < 0) {
		struct upstream *x = c->ups[lru];
		slot = lru;
		c->ups[lru] = NULL;
		if (!x->priv && x->owner) {
			x->c = d;
			d->ups[ds] = x;
		} else {
			c->ups[lru] = x; /* upstream_free looks for it there */
			upstream_free(c, x);
		}
	}
	u->c = c;
	c->ups[slot] = u;
	if (c->w->bpf) {
		int left = 0;
		for (int i = 0; i < UP_SET_MAX; i++)
			left += d->ups[i] != NULL;
		if (!left) {
			struct eg_flow_key k;
			eg_flow_key_from_addrs(&k, (struct sockaddr *)&d->peer,
					       (struct sockaddr *)&d->local);
			bpfmaps_steer_del(c->w->bpf, &k);
		}
		steer_publish(c, u->backend);
	}
	return 0;
}

/* The most recently idle connection of (bi, this request's identity) in
 * another client connection's set, if this request may use one there. */
static struct upstream *idle_elsewhere(struct conn *c, int bi)
{
	if (!c->r.owner || c->r.conn_auth)
		return NULL; /* an NTLM/Negotiate request authenticates its own */
	for (struct upstream *x = *idle_head(c->w, bi, c->r.owner); x; x = x->idle_next)
		if (x->backend == bi && x->owner == c->r.owner && x->c != c && !x->priv)
			return x;
	return NULL;
}

/*
 * The idle connection of this request's (backend, identity), taken for it if
 * still fit (an unfit one is closed): from c's own set, else one the
 * identity left idle on another client connection of this worker (see the
 * top of upstream.h). An identity-less connection that the backend
 * authenticated serves only requests continuing its handshake.
 */
struct upstream *upstream_take(struct conn *c, int bi)
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
	if (!u && b->reuse != CFG_REUSE_NEVER) {
		u = idle_elsewhere(c, bi);
		if (u && adopt(c, u) < 0)
			u = NULL;
	}
	if (u)
		idle_unlink(u);
	if (u && (b->reuse == CFG_REUSE_NEVER || u->resp_close || !upstream_idle_ok(u))) {
		upstream_free(c, u);
		u = NULL;
	}
	if (u)
		u->idle_clean = 0; /* busy again: set anew when it next goes idle */
	return u;
}

/* A free place in the set for a new connection: the least recently used
 * idle one is closed when all are taken. */
static int upstream_slot(struct conn *c)
{
	int lru = -1;
	for (int i = 0; i < UP_SET_MAX; i++) {
		if (!c->ups[i])
			return i;
		if (c->ups[i] != c->up && (lru < 0 || c->ups[i]->used_ms < c->ups[lru]->used_ms))
			lru = i;
	}
	if (lru >= 0)
		upstream_free(c, c->ups[lru]);
	return lru;
}

/* Idle members that sent something or closed are of no use: close them. */
void upstream_sweep(struct conn *c)
{
	for (int i = 0; i < UP_SET_MAX; i++) {
		struct upstream *u = c->ups[i];
		if (u && u != c->up && (u->flags & (F_RD | F_RDHUP | F_EOF)) &&
		    !upstream_idle_ok(u))
			upstream_free(c, u);
	}
}

int upstream_connect(struct conn *c, int bi)
{
	struct worker *w = c->w;
	const struct cfg_backend *b = w->be.b[bi].cfg;
	int slot = upstream_slot(c);
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
	if (loop_io_add(w->loop, &u->io, u->fd, relay_upstream_io, u) < 0) {
		SSL_free(u->ssl);
		close(u->fd);
		free(u);
		return -1;
	}
	c->up = c->ups[slot] = u;
	u->owner = c->r.owner;
	w->stats->backend_conns[bi]++;
	if (w->bpf) {
		steer_publish(c, bi);
		bpfmaps_backend_conns_add(w->bpf, (uint32_t)bi, 1);
	}
	return 0;
}

/* Close one backend connection of c (the current one or an idle one). */
void upstream_free(struct conn *c, struct upstream *u)
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
	idle_unlink(u);
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
			bpfmaps_steer_del(w->bpf, &k);
		bpfmaps_backend_conns_add(w->bpf, (uint32_t)u->backend, -1);
	}
	/* This epoll batch may still hold an event for u: free it after. */
	u->fd = -1;
	u->next_dead = w->dead_ups;
	w->dead_ups = u;
}

/* Close the backend connection of the current request, if any. */
void upstream_close(struct conn *c)
{
	if (c->up)
		upstream_free(c, c->up);
}
