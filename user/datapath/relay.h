/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * relay.h - client connections: TLS from the phone, strict HTTP/1.1, EAS
 * classification, the gate's verdict, and relaying to the chosen backend.
 *
 * One connection = one client TCP connection (a phone, or a TLS-offloading
 * load balancer carrying many phones) plus the backend connections it owns:
 * at most 8, each belonging to one identity for its whole life. Backend
 * connections are never shared between identities: NTLM authenticates the
 * connection, and sharing one would hand one user's authenticated
 * connection to another. One the backend never authenticated itself may
 * move, idle, to another client connection of the worker for the same
 * identity's request (upstream.h); an authenticated one never leaves its
 * client connection.
 *
 * Lifecycle: relay_accept() creates, relay_close() is the only teardown
 * (both sides, every buffer); the memory is freed after the current loop
 * iteration so no event of the same epoll batch touches freed memory.
 */
#ifndef EG_RELAY_H
#define EG_RELAY_H

#include "worker.h"

/* Accept every pending connection on a listener (level-triggered). */
void relay_accept(struct listener *l);

/* Free connections closed during this loop iteration (before-sleep hook). */
void relay_reap(struct worker *w);

/*
 * Graceful drain step for one connection: idle keep-alive connections are
 * closed, hanging Pings are answered (heartbeat expired) and closed, busy
 * ones finish their request and then close. Returns 1 if it closed c.
 */
int relay_drain(struct conn *c);

/* Close every connection now (shutdown deadline reached). */
void relay_close_all(struct worker *w, const char *why);

/* Next connection in the worker's list (for iteration while draining). */
struct conn *relay_next(struct conn *c);

#endif
