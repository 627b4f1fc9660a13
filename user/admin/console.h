/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * console.h - the web console (admin.web): a small, strict HTTPS server in
 * the master's loop for the helpdesk's browser.
 *
 * - TLS with the gateway's own certificates (the master's tls_server, chain
 *   checked at start and reload), HTTP/1.1 heads through the project's h1
 *   parser; bodies by Content-Length only, at most 16 KiB.
 * - Never waits: non-blocking sockets, 64 connections at most, a deadline
 *   for every state (handshake 10 s, a request 10 s, keep-alive 60 s, a
 *   reply must progress every 10 s); password checks (yescrypt) run on a
 *   helper thread (workq.h); inventory scans run a page per loop pass
 *   (command.h).
 * - Every action is a command of the same table easctl uses, run through
 *   command_run() as the logged-in account with its role: one
 *   implementation, one permission check, one audit line per change.
 * - Sessions, CSRF tokens and login limits: console_auth.h. Every response
 *   carries a Content-Security-Policy without inline script; pages are
 *   static files (admin.web_assets) that build the DOM with textContent, so
 *   phone-supplied values are never markup.
 */
#ifndef EG_CONSOLE_H
#define EG_CONSOLE_H

#include "config.h"
#include "control.h"
#include "loop.h"

struct console;
struct tls_server;

/* Listen on c->admin.web_addr; *tls is read per connection (it changes on
 * reload). cmds/ctx: the command table and its context (as control.h). The
 * accounts file must exist and be private, or NULL is returned (err). */
struct console *console_new(struct loop *l, const struct gw_config *c, struct tls_server **tls,
			    const struct ctl_cmd *cmds, void *ctx, char *err, size_t errsz);
void console_free(struct console *k);
/* A reload: new settings (the listen address needs a restart). */
void console_reconfigure(struct console *k, const struct gw_config *c);
/* In a forked child: close every socket of the console without shutting
 * any connection down. */
void console_close_fds(struct console *k);
/* Check a config's console settings (accounts file present and private). */
int console_check_config(const struct gw_config *c, char *err, size_t errsz);

#endif
