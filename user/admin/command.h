/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * command.h - the one command layer behind easctl (control socket) and the
 * web console: both run the same struct ctl_cmd table (commands[] in
 * daemon/master.c) through command_run(), so an action has one
 * implementation, one permission check and one audit line whichever way
 * it arrived.
 *
 * Who: every run carries an actor (an easctl peer by uid, or a console
 * account with its role and source address). Commands read it through
 * command_actor() while they run, e.g. to write the audit line; it is NULL
 * outside a run.
 *
 * Roles: a command's `need` function says which role an argv requires
 * (viewer reads; helpdesk approves, blocks, quarantines and removes devices;
 * admin changes rules, OS versions, lists, reloads). easctl peers passed the
 * socket's peer check and act as admin.
 *
 * Slow commands never hold the loop: a command that would scan a large
 * inventory (listing, export, dry run) does its first bounded step, then
 * hands a job to command_defer(); the transport calls command_step() from
 * the loop, one bounded step per loop pass, until the job says it is done.
 * A change a farm's database must confirm (store_change) is a job too: it
 * waits (COMMAND_WAIT) until the store answers, and easctl and the console
 * answer when it does, the loop running meanwhile.
 */
#ifndef EG_COMMAND_H
#define EG_COMMAND_H

#include <sys/types.h>

#include "control.h"

enum command_role { ROLE_VIEWER = 0, ROLE_HELPDESK = 1, ROLE_ADMIN = 2 };

struct command_actor {
	char kind[12];	 /* "easctl" | "console" */
	char name[64];	 /* console account; "uid N" for easctl */
	uid_t uid;	 /* easctl: the peer's uid (from the kernel) */
	int role;	 /* enum command_role */
	char source[64]; /* console: the client address */
};

/* The text audit lines and logs use for an actor: "console:alice" or "easctl:uid=0". */
void command_actor_text(const struct command_actor *a, char *out, size_t outsz);

/*
 * A command that continues in bounded steps (see command_defer), or waits
 * for an answer from outside the loop (a farm's database: store.h). step
 * returns COMMAND_WAIT when it has nothing to do until the job calls
 * command_wake() (possibly before the transport first steps it: the
 * transport always steps a new job once). A transport gives a waiting job
 * COMMAND_WAIT_MS, then answers that no answer came in time and frees the
 * job (whose free must then outlive, or detach from, the pending answer).
 */
#define COMMAND_WAIT	2
#define COMMAND_WAIT_MS 30000
struct command_job {
	/* One bounded step (a few ms at most): append to out; return 1 when
	 * finished with *code set, 0 to be called again, COMMAND_WAIT to be
	 * called again after command_wake(). */
	int (*step)(struct command_job *j, struct sbuf *out, enum ctl_code *code);
	void (*free)(struct command_job *j); /* releases j itself */
	struct command_actor actor;	     /* set by command_run */
	/* set by the transport: step the job again soon */
	void (*wake)(void *arg);
	void *wake_arg;
	int woken; /* command_wake() came before the transport waited */
};

/*
 * Run argv through the table as `who`. Returns the command's code with its
 * output in out, or CTL_DENIED when who's role is below what the command
 * needs for this argv. When the command deferred, *job is set (else NULL)
 * and the code is meaningless: call command_step() until it returns 1.
 */
enum ctl_code command_run(const struct ctl_cmd *cmds, void *ctx, const struct command_actor *who,
			  int argc, char **argv, struct sbuf *out, struct command_job **job);
/* One step of a deferred command, as its actor. 1 = finished (*code set),
 * 0 = step again, COMMAND_WAIT = step again once woken. */
int command_step(struct command_job *j, struct sbuf *out, enum ctl_code *code);
/* Free a job that will not be finished (its client went away). NULL is a no-op. */
void command_job_free(struct command_job *j);

/* From inside a command's fn: finish in steps (the layer takes j). */
void command_defer(struct command_job *j);
/* The answer a waiting job waited for is there: its transport steps it. */
void command_wake(struct command_job *j);
/* The actor of the command being run (NULL outside a run). */
const struct command_actor *command_actor(void);

/* The role a command needs for argv (0 = viewer when it has no need fn). */
int command_role_needed(const struct ctl_cmd *cmds, int argc, char **argv);
const char *command_role_name(int role);

/* "--key value" options of a command; other words go to pos (at most maxpos).
 * -1 with a message in out on an unknown option or a stray word. */
struct command_opt {
	const char *name;
	const char **val;
};
int command_parse_opts(int argc, char **argv, int start, const struct command_opt *opts, char **pos,
		       int *npos, int maxpos, struct sbuf *out);
enum command_fmt { FMT_TABLE, FMT_CSV, FMT_JSON };
/* NULL = table. -1 if s names no format. */
int command_parse_fmt(const char *s, enum command_fmt *f);
int command_role_parse(const char *s); /* -1 if unknown */

#endif
