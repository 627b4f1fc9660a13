/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* command.c - see command.h. */
#include "command.h"

#include <stdio.h>
#include <string.h>

static const struct command_actor *current;
static struct command_job *deferred;

static const struct ctl_cmd *find(const struct ctl_cmd *cmds, const char *name)
{
	for (const struct ctl_cmd *x = cmds; x->name; x++)
		if (!strcmp(x->name, name))
			return x;
	return NULL;
}

void command_actor_text(const struct command_actor *a, char *out, size_t outsz)
{
	if (!a)
		snprintf(out, outsz, "daemon");
	else if (!strcmp(a->kind, "easctl"))
		snprintf(out, outsz, "easctl:uid=%u", (unsigned)a->uid);
	else
		snprintf(out, outsz, "%s:%s", a->kind, a->name);
}

const char *command_role_name(int role)
{
	static const char *const n[] = {"viewer", "helpdesk", "admin"};
	return role >= 0 && role <= ROLE_ADMIN ? n[role] : "?";
}

int command_role_parse(const char *s)
{
	for (int r = 0; r <= ROLE_ADMIN; r++)
		if (!strcmp(s, command_role_name(r)))
			return r;
	return -1;
}

int command_role_needed(const struct ctl_cmd *cmds, int argc, char **argv)
{
	const struct ctl_cmd *c = argc > 0 ? find(cmds, argv[0]) : NULL;
	return c && c->need ? c->need(argc, argv) : ROLE_VIEWER;
}

const struct command_actor *command_actor(void)
{
	return current;
}

void command_defer(struct command_job *j)
{
	if (deferred && deferred->free)
		deferred->free(deferred);
	deferred = j;
}

enum ctl_code command_run(const struct ctl_cmd *cmds, void *ctx, const struct command_actor *who,
			  int argc, char **argv, struct sbuf *out, struct command_job **job)
{
	*job = NULL;
	if (argc < 1) {
		sbuf_printf(out, "empty request");
		return CTL_USAGE;
	}
	const struct ctl_cmd *cmd = find(cmds, argv[0]);
	if (!cmd) {
		sbuf_printf(out, "unknown command '%s' (try: easctl help)", argv[0]);
		return CTL_USAGE;
	}
	int need = cmd->need ? cmd->need(argc, argv) : ROLE_VIEWER;
	if (who->role < need) {
		sbuf_printf(out, "permission denied: '%s%s%s' needs the %s role", argv[0],
			    argc > 1 ? " " : "", argc > 1 ? argv[1] : "", command_role_name(need));
		return CTL_DENIED;
	}
	current = who;
	deferred = NULL;
	enum ctl_code code = cmd->fn(ctx, argc, argv, out);
	current = NULL;
	if (deferred) {
		deferred->actor = *who;
		*job = deferred;
		deferred = NULL;
	}
	return code;
}

int command_step(struct command_job *j, struct sbuf *out, enum ctl_code *code)
{
	current = &j->actor;
	j->woken = 0;
	int done = j->step(j, out, code);
	current = NULL;
	/* woken while stepping (an answer that came at once): step again */
	if (done == COMMAND_WAIT && j->woken)
		done = 0;
	return done;
}

void command_wake(struct command_job *j)
{
	j->woken = 1;
	if (j->wake)
		j->wake(j->wake_arg);
}

void command_job_free(struct command_job *j)
{
	if (j && j->free)
		j->free(j);
}

int command_parse_opts(int argc, char **argv, int start, const struct command_opt *opts, char **pos,
		       int *npos, int maxpos, struct sbuf *out)
{
	*npos = 0;
	for (int i = start; i < argc; i++) {
		if (!strncmp(argv[i], "--", 2)) {
			const struct command_opt *o = opts;
			while (o->name && strcmp(o->name, argv[i] + 2))
				o++;
			if (!o->name || i + 1 >= argc) {
				sbuf_printf(out, "unknown option or missing value: %s", argv[i]);
				return -1;
			}
			*o->val = argv[++i];
		} else {
			if (*npos >= maxpos) {
				sbuf_printf(out, "unexpected argument: %s", argv[i]);
				return -1;
			}
			pos[(*npos)++] = argv[i];
		}
	}
	return 0;
}

int command_parse_fmt(const char *s, enum command_fmt *f)
{
	if (!s || !strcmp(s, "table"))
		*f = FMT_TABLE;
	else if (!strcmp(s, "csv"))
		*f = FMT_CSV;
	else if (!strcmp(s, "json"))
		*f = FMT_JSON;
	else
		return -1;
	return 0;
}
