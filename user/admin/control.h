/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * control.h - the admin UNIX socket (easctl talks to it).
 *
 * Wire format, one request per connection:
 *   request:  argv as NUL-terminated strings, then one more NUL (empty arg)
 *   response: "ok\n" or "error <code> <message>\n", then the output, then EOF
 * Codes (also easctl's exit codes): 1 usage, 2 not found, 3 failed,
 * 4 permission denied. Nothing here can stop the daemon: a malformed request
 * gets an error and its connection is closed.
 *
 * Access: the socket is created 0660 owned by the daemon's user and the
 * configured group; each client is checked again when it is accepted
 * (peercred.h: root, that user, or a member of that group, primary or
 * supplementary; never a process of the gateway itself, i.e. a worker).
 *
 * Clients are served from the loop and never waited for: at most 32 at a
 * time, a request of at most 64 KiB that must arrive within 2 s, a reply
 * that must make progress every 5 s; commands run one at a time, after the
 * loop pass that completed their request, through the command layer
 * (command.h) as the peer's uid with the admin role; a command that defers
 * is stepped from the loop until it is done (one that waits for a farm's
 * database: at most COMMAND_WAIT_MS, then the client is told no answer came).
 */
#ifndef EG_CONTROL_H
#define EG_CONTROL_H

#include <stddef.h>
#include <sys/types.h>

#include "loop.h"
#include "sbuf.h" /* command output */

/* 5 is easctl's own "daemon unreachable", never sent. CTL_CONFLICT: the
 * change would change nothing in the state it names (the console's 409). */
enum ctl_code {
	CTL_OK = 0,
	CTL_USAGE = 1,
	CTL_NOTFOUND = 2,
	CTL_FAILED = 3,
	CTL_DENIED = 4,
	CTL_CONFLICT = 6
};

/* A command handler writes its output (or error message) into out. */
typedef enum ctl_code (*ctl_fn)(void *ctx, int argc, char **argv, struct sbuf *out);

struct ctl_cmd {
	const char *name; /* first argv word */
	ctl_fn fn;
	/* The role (enum command_role in command.h) this argv needs; NULL =
	 * viewer (the command only reads). */
	int (*need)(int argc, char **argv);
	int console; /* the web console may run it too (easctl runs every command) */
};

struct control;

/*
 * Listen on path (removing a stale socket), mode 0660, owned by uid/gid when
 * running as root. cmds is a NULL-name-terminated table. NULL on failure.
 */
struct control *control_new(struct loop *l, const char *path, uid_t uid, gid_t gid,
			    const struct ctl_cmd *cmds, void *ctx);
void control_free(struct control *c);
/* In a forked child: close the listening socket without unlinking it. */
void control_close_fd(struct control *c);

/* Client side (easctl): send argv, read the reply into out, return the code
 * (or -1 if the daemon cannot be reached, errno set). */
int control_call(const char *path, int argc, char **argv, struct sbuf *out);

#endif
