/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * conntimer.c - the one timer of a connection (c->tmr, its kind in
 * c->tmr_kind): what the connection waits for in each state and for how
 * long (timeouts.*, limits.min_body_rate), and what happens when it fires.
 */
#include "conn.h"
#include "log.h"
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>

/* How long a draining worker keeps an idle keep-alive connection open for a
 * request that may already be on its way. */
#define DRAIN_IDLE_MS 1000
/* How long an idle TLS connection keeps OpenSSL's record buffers. */
#define QUIET_MS 500

void conntimer_set(struct conn *c, int kind, unsigned ms, int restart)
{
	if (c->tmr_kind == kind && !restart && loop_timer_armed(&c->tmr))
		return;
	c->tmr_kind = kind;
	loop_timer_set(c->w->loop, &c->tmr, ms);
}

static unsigned quiet_of(unsigned ms)
{
	return ms / 2 < QUIET_MS ? ms / 2 : QUIET_MS;
}

/*
 * The phone's TLS record buffers (~34 KiB). The server context releases them
 * whenever they empty (SSL_MODE_RELEASE_BUFFERS), which costs a malloc, a
 * free and, with SSL_OP_CLEANSE_PLAINTEXT, a 17 KiB cleanse per request (the
 * plaintext itself is cleansed as it is read either way). So between complete
 * requests a connection keeps them (kind T_IDLE or T_RESPONSE: the phone is
 * not in the middle of sending), and frees them once it has been quiet for
 * a moment (T_QUIET_*, at most QUIET_MS of the wait), after which the state's
 * own timer runs for the rest: every timeout stays what it was. A phone that
 * owes the rest of a head or body (a slow one, or an attacker trickling
 * bytes) gets release-when-empty back (tls_bufs_release), so it never holds
 * more than before.
 */
static void arm_wait(struct conn *c, int kind, unsigned ms)
{
	int quiet = kind == T_IDLE ? T_QUIET_IDLE : T_QUIET_RESPONSE;
	if (c->tmr_kind == quiet && !loop_timer_armed(&c->tmr)) { /* it fired */
		conntimer_set(c, kind, ms - quiet_of(ms), 1);
		return;
	}
	if (c->ssl && (c->flags & F_TLSBUF) && quiet_of(ms)) {
		SSL_clear_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
		conntimer_set(c, quiet, quiet_of(ms), 0);
		return;
	}
	conntimer_set(c, kind, ms, 0);
}

static void tls_bufs_release(struct conn *c)
{
	if (c->ssl && !(SSL_get_mode(c->ssl) & SSL_MODE_RELEASE_BUFFERS)) {
		SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
		SSL_free_buffers(c->ssl); /* what the last read left; 0 if a record is pending */
	}
}

/*
 * A request body must arrive at limits.min_body_rate on average over each
 * window of timeouts.request_body: a silence timer alone, restarted by every
 * byte, lets a body trickling one byte a minute hold its backend connection
 * for ever. The window is not restarted by progress; conntimer_fired judges it.
 * With the rate at 0 the timer is the silence timer it used to be.
 */
static void arm_body_timer(struct conn *c, int progress)
{
	const struct gw_config *cfg = c->w->cfg;
	tls_bufs_release(c);
	if (!cfg->limits.min_body_rate) {
		conntimer_set(c, T_BODY, cfg->timeouts.body_ms, progress);
		return;
	}
	if (c->tmr_kind == T_RATE && loop_timer_armed(&c->tmr))
		return;
	c->win_rx = c->rx;
	conntimer_set(c, T_RATE, cfg->timeouts.body_ms, 1);
}

void conntimer_arm(struct conn *c, int progress)
{
	const struct gw_config *cfg = c->w->cfg;
	if (progress && c->ssl)
		c->flags |= F_TLSBUF;
	switch (c->st) {
	case CS_TLS:
		conntimer_set(c, T_HANDSHAKE, cfg->timeouts.handshake_ms, 0);
		break;
	case CS_HEAD:
		if (c->flags & F_CLOSING)
			conntimer_set(c, T_FLUSH, cfg->timeouts.body_ms, progress);
		else if (c->hm) {
			tls_bufs_release(c);
			conntimer_set(c, T_HEAD, cfg->timeouts.head_ms, 0);
		} else if (c->w->draining)
			/* Idle on a draining worker: a request may be on its way
			 * (the client cannot know yet); wait briefly for it. */
			conntimer_set(c, T_DRAIN,
				      cfg->timeouts.drain_ms < DRAIN_IDLE_MS
					  ? cfg->timeouts.drain_ms
					  : DRAIN_IDLE_MS,
				      0);
		else if (!c->nreq)
			/* Nothing asked yet: a new connection owes its first
			 * request head within request_head (nginx's
			 * client_header_timeout), not a keep-alive's idle time. */
			arm_wait(c, T_IDLE, cfg->timeouts.head_ms);
		else
			arm_wait(c, T_IDLE, cfg->timeouts.idle_ms);
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
			conntimer_set(c, T_CONNECT, cfg->timeouts.backend_connect_ms, 0);
		else if (!c->r.body_done)
			arm_body_timer(c, progress);
		else if (c->up && c->up->resp_started)
			conntimer_set(c, T_BODY, cfg->timeouts.body_ms, progress);
		else
			arm_wait(c, T_RESPONSE,
				 c->r.hanging ? cfg->timeouts.hanging_ms
					      : cfg->timeouts.backend_response_ms);
		break;
	}
}

void conntimer_fired(struct loop_timer *t)
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
		log_info("event=timeout phase=request_head client=%s",
			 relay_peer_ip(c, q, sizeof(q)));
		free(c->hm);
		c->hm = NULL;
		c->r.sv = SV_REFUSED;
		answer_text(c, 408, "request head timeout", 1);
		buf_release(&c->w->pool, &c->in);
		c->r.body_done = 1;
		relay_run(c);
		return;
	case T_HOLD:
		c->st = CS_LOCAL;
		relay_run(c);
		return;
	case T_QUIET_IDLE:
	case T_QUIET_RESPONSE:
		/* 0 (kept) only while a record is pending: not idle after all */
		SSL_free_buffers(c->ssl);
		c->flags &= ~F_TLSBUF;
		conntimer_arm(c, 0);
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
			conntimer_set(c, T_RATE, cfg->timeouts.body_ms, 1);
			return;
		}
		log_info("event=timeout phase=request_body reason=%s client=%s bytes=%llu "
			 "window_ms=%u",
			 got ? "min_rate" : "silence", relay_peer_ip(c, q, sizeof(q)),
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
		response_bad_gateway(c, "backend connect timeout");
		relay_run(c);
		return;
	case T_RESPONSE:
		log_warn("event=timeout phase=backend_response client=%s cmd=%s",
			 relay_peer_ip(c, q, sizeof(q)), eas_cmd_name(c->r.cmd));
		if (!c->r.resp_seen) {
			upstream_close(c);
			if (c->r.hanging)
				c->w->stats->hanging_open--;
			c->r.hanging = 0;
			c->r.sv = SV_LOCAL;
			answer_text(c, 504, "backend response timeout", 1);
			relay_run(c);
			return;
		}
		relay_close(c, "response timeout");
		return;
	default:
		relay_close(c, "body timeout");
		return;
	}
}
