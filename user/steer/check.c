/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* check.c - see check.h. */
#include "check.h"
#include "log.h"
#include "tls.h"

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

#define CHECK_REQ_FMT                                                                              \
	"GET %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: easgate-health\r\nConnection: close\r\n\r\n"
#define CFG_FIELD(f) sizeof(((struct cfg_backend *)0)->f)
/* Room for the request with every field at its longest (the "%s" are spare). */
#define CHECK_REQ_MAX                                                                              \
	(sizeof(CHECK_REQ_FMT) + CFG_FIELD(prefix) + CFG_FIELD(health_path) + CFG_FIELD(sni))

struct probe {
	struct checker *k;
	const struct cfg_backend *b;
	int slot; /* shm backend slot */
	struct loop_io io;
	struct loop_timer every;
	struct loop_timer deadline;
	int fd;
	SSL *ssl;
	SSL_CTX *ctx;
	int phase; /* 0 idle, 1 connecting, 2 tls, 3 sending, 4 reading */
	char req[CHECK_REQ_MAX];
	size_t req_len, sent;
	char resp[256];
	size_t resp_len;
	unsigned ok_run, fail_run;
};

struct checker {
	struct loop *loop;
	struct shm *shm;
	int n;
	struct probe p[EG_MAX_BACKENDS];
};

static void probe_reset(struct probe *p)
{
	if (p->fd >= 0) {
		loop_io_del(p->k->loop, &p->io);
		if (p->ssl) {
			SSL_set_quiet_shutdown(p->ssl, 1);
			SSL_free(p->ssl);
			p->ssl = NULL;
		}
		close(p->fd);
		p->fd = -1;
	}
	loop_timer_cancel(p->k->loop, &p->deadline);
	p->phase = 0;
	p->sent = p->resp_len = 0;
}

static void set_state(struct probe *p, int up, const char *why)
{
	struct shm_backend *sb = &p->k->shm->backends[p->slot];
	if ((int)sb->up == up)
		return;
	sb->up = (uint32_t)up;
	snprintf(sb->last_error, sizeof(sb->last_error), "%s", up ? "" : why);
	__atomic_add_fetch(&p->k->shm->backend_gen, 1, __ATOMIC_ACQ_REL);
	if (up)
		log_info("event=backend_up backend=%s", p->b->name);
	else
		log_warn("event=backend_down backend=%s reason=\"%s\"", p->b->name, why);
}

static void probe_result(struct probe *p, int ok, const char *why)
{
	struct shm_backend *sb = &p->k->shm->backends[p->slot];
	probe_reset(p);
	if (ok) {
		sb->checks_ok++;
		p->fail_run = 0;
		if (++p->ok_run >= p->b->rise)
			set_state(p, 1, NULL);
	} else {
		sb->checks_failed++;
		p->ok_run = 0;
		if (++p->fail_run >= p->b->fall)
			set_state(p, 0, why);
		log_debug("event=health_check_failed backend=%s reason=\"%s\"", p->b->name, why);
	}
}

static void probe_step(struct probe *p)
{
	char eb[160];
	if (p->phase == 1) {
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			probe_result(p, 0, strerror(err));
			return;
		}
		p->phase = p->ssl ? 2 : 3;
	}
	if (p->phase == 2) {
		ERR_clear_error();
		int r = SSL_do_handshake(p->ssl);
		if (r != 1) {
			int e = SSL_get_error(p->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return;
			probe_result(p, 0, tls_errstr(eb, sizeof(eb)));
			return;
		}
		p->phase = 3;
	}
	if (p->phase == 3) {
		while (p->sent < p->req_len) {
			ssize_t r;
			if (p->ssl) {
				int k = SSL_write(p->ssl, p->req + p->sent,
						  (int)(p->req_len - p->sent));
				if (k <= 0) {
					int e = SSL_get_error(p->ssl, k);
					if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
						return;
					probe_result(p, 0, "write failed");
					return;
				}
				r = k;
			} else {
				r = send(p->fd, p->req + p->sent, p->req_len - p->sent,
					 MSG_NOSIGNAL);
				if (r < 0) {
					if (errno == EAGAIN)
						return;
					probe_result(p, 0, strerror(errno));
					return;
				}
			}
			p->sent += (size_t)r;
		}
		p->phase = 4;
	}
	if (p->phase == 4) {
		for (;;) {
			ssize_t r;
			size_t room = sizeof(p->resp) - 1 - p->resp_len;
			if (!room)
				break;
			if (p->ssl) {
				int k = SSL_read(p->ssl, p->resp + p->resp_len, (int)room);
				if (k <= 0) {
					int e = SSL_get_error(p->ssl, k);
					if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
						return;
					break;
				}
				r = k;
			} else {
				r = recv(p->fd, p->resp + p->resp_len, room, 0);
				if (r < 0 && errno == EAGAIN)
					return;
				if (r <= 0)
					break;
			}
			p->resp_len += (size_t)r;
			if (memchr(p->resp, '\n', p->resp_len))
				break;
		}
		p->resp[p->resp_len] = 0;
		int major, minor, status;
		if (sscanf(p->resp, "HTTP/%d.%d %d", &major, &minor, &status) != 3) {
			probe_result(p, 0, "no HTTP status line");
			return;
		}
		if (status >= 500) {
			char why[64];
			snprintf(why, sizeof(why), "HTTP %d", status);
			probe_result(p, 0, why);
			return;
		}
		probe_result(p, 1, NULL);
	}
}

static void probe_io(struct loop_io *io, uint32_t ev)
{
	probe_step(io->arg);
}

static void probe_timeout(struct loop_timer *t)
{
	probe_result(t->arg, 0, "timeout");
}

static void probe_start(struct loop_timer *t)
{
	struct probe *p = t->arg;
	loop_timer_set(p->k->loop, &p->every, p->b->health_interval_ms);
	if (p->phase)
		return; /* previous probe still running: its deadline will end it */
	p->fd = socket(p->b->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		probe_result(p, 0, strerror(errno));
		return;
	}
	if (connect(p->fd, (const struct sockaddr *)&p->b->addr.ss, p->b->addr.len) < 0 &&
	    errno != EINPROGRESS) {
		probe_result(p, 0, strerror(errno));
		return;
	}
	if (p->ctx) {
		p->ssl = SSL_new(p->ctx);
		if (!p->ssl || SSL_set_fd(p->ssl, p->fd) != 1) {
			probe_result(p, 0, "SSL_new failed");
			return;
		}
		/* The name (or address) to verify is set on the context, as for the relay. */
		if (p->b->sni[0])
			SSL_set_tlsext_host_name(p->ssl, p->b->sni);
		SSL_set_connect_state(p->ssl);
	}
	p->phase = 1;
	if (loop_io_add(p->k->loop, &p->io, p->fd, probe_io, p) < 0) {
		probe_result(p, 0, "epoll");
		return;
	}
	loop_timer_set(p->k->loop, &p->deadline, p->b->health_timeout_ms);
}

struct checker *checker_new(struct loop *l, struct shm *s, const struct gw_config *c)
{
	struct checker *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->loop = l;
	k->shm = s;
	for (int i = 0; i < c->nbackends; i++) {
		const struct cfg_backend *b = &c->backends[i];
		struct probe *p = &k->p[k->n];
		p->k = k;
		p->b = b;
		p->fd = -1;
		p->slot = shm_backend_slot(s, b->name);
		if (p->slot < 0)
			continue;
		if (!b->health_enabled) {
			set_state(p, 1, NULL);
			continue;
		}
		int n = snprintf(p->req, sizeof(p->req), CHECK_REQ_FMT, b->prefix, b->health_path,
				 b->sni[0] ? b->sni : "localhost");
		if (n < 0 || (size_t)n >= sizeof(p->req)) {
			/* Cannot happen with the config's field sizes; never send a cut request. */
			log_err(
			    "event=health_check_disabled backend=%s reason=\"request too long\"",
			    b->name);
			set_state(p, 1, NULL);
			continue;
		}
		p->req_len = (size_t)n;
		char err[256];
		if (b->tls && !(p->ctx = tls_backend_ctx(b, err, sizeof(err))))
			log_warn("event=health_check_tls backend=%s error=\"%s\"", b->name, err);
		/* Start from the state we had (reloads keep health). */
		p->ok_run = s->backends[p->slot].up ? b->rise : 0;
		loop_timer_init(&p->every, probe_start, p);
		loop_timer_init(&p->deadline, probe_timeout, p);
		loop_timer_set(l, &p->every, 10);
		k->n++;
	}
	return k;
}

void checker_free(struct checker *k)
{
	if (!k)
		return;
	for (int i = 0; i < k->n; i++) {
		probe_reset(&k->p[i]);
		loop_timer_cancel(k->loop, &k->p[i].every);
		SSL_CTX_free(k->p[i].ctx);
	}
	free(k);
}
