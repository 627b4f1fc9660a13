/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* linger.c - closing after an answer without losing it (see linger_begin). */
#include "conn.h"
#include "ktls.h"

#include <errno.h>
#include <openssl/err.h>
#include <sys/socket.h>

/* Lingering close (see linger_begin): how long, and how many bytes, we read
 * and drop after shutting our side, so the answer is not lost to a reset. */
#define LINGER_MS  1000
#define LINGER_MAX (16u << 20)

/* CS_LINGER: drop what the client still sends; close at its EOF or a bound. */
void linger_step(struct conn *c)
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
void linger_begin(struct conn *c)
{
	if (c->flags & F_EOF) {
		relay_close(c, NULL);
		return;
	}
	if (c->ssl) {
		ERR_clear_error();
		SSL_shutdown(c->ssl); /* one close_notify; the answer to it is not awaited */
	} else if (c->ktls) {
		ktls_shutdown(c);
	}
	shutdown(c->fd, SHUT_WR);
	buf_release(&c->w->pool, &c->in);
	c->st = CS_LINGER;
	c->r.bytes_in = 0;
	c->flags |= F_RD; /* edge-triggered: what is already queued gives no new edge */
	conntimer_set(
	    c, T_LINGER,
	    c->w->cfg->timeouts.body_ms < LINGER_MS ? c->w->cfg->timeouts.body_ms : LINGER_MS, 1);
	linger_step(c);
}
