/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* dryrun.c - see dryrun.h. */
#include "dryrun.h"
#include "admin.h"
#include "command.h"
#include "eas_cmd.h"
#include "gate.h"
#include "inventory.h"
#include "osver.h"
#include "policy.h"
#include "fmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DRYRUN_PAGE 1000 /* rows per loop pass: two decisions and a version read each */

struct dryrun_job {
	struct command_job job;
	struct admin *a;
	struct policy *before, *after;
	struct policy_rule rule;
	char text[POLICY_RULE_TEXT_MAX]; /* the rule as typed (canonical form) */
	int cmd;
	int json;
	int64_t now;
	struct inv_cursor cur;
	long scanned, changed;
	long moves[3][3]; /* [from][to] access counts */
	struct sbuf *o;
	/* the last OS version looked up (rows come sorted by user, so this only
	 * saves reads for users with several phones; it is a cache, not a need) */
	char os_key[96];
	struct inv_version ver;
	int have_ver;
};

static const char *reason_text(const struct policy_decision *d)
{
	return d->rule_index >= 0 ? d->rule_name : policy_reason_name(d->reason);
}

static int row(void *arg, const struct inv_device *d)
{
	struct dryrun_job *j = arg;
	j->scanned++;
	struct osver ov;
	osver_effective(d->device_os, d->user_agent, &ov);
	if (strcmp(j->os_key, ov.text)) {
		snprintf(j->os_key, sizeof(j->os_key), "%s", ov.text);
		j->have_ver =
		    ov.text[0] && inv_get_version(admin_inventory(j->a), ov.text, &j->ver) == 1;
	}
	struct policy_input in = {
	    .user = d->user,
	    .device_id = d->device_id,
	    .device_type = d->device_type,
	    .device_model = d->device_model,
	    .device_os = d->device_os,
	    .user_agent = d->user_agent,
	    .xmswl = d->xmswl,
	    .cmd = j->cmd,
	    .admin_state = d->admin_state,
	    .os_first_seen = j->have_ver && j->ver.first_seen ? j->ver.first_seen : 0,
	    .os_approved = j->have_ver ? j->ver.approved : 0,
	    .now = j->now,
	};
	struct policy_decision was, will;
	policy_decide(j->before, &in, &was);
	policy_decide(j->after, &in, &will);
	if (was.access == will.access && was.reason == will.reason &&
	    !strcmp(was.rule_name, will.rule_name))
		return 0;
	j->changed++;
	if (was.access >= 0 && was.access < 3 && will.access >= 0 && will.access < 3)
		j->moves[was.access][will.access]++;
	const char *model = d->device_model[0] ? d->device_model : d->device_type;
	const char *os = d->device_os[0] ? d->device_os : d->os_key;
	struct sbuf *o = j->o;
	if (!j->json) {
		sbuf_printf(o, "%-24.24s %-32.32s %-22.22s %-22.22s %-10s -> %-10s %s\n", d->user,
			    d->device_id, model, os, policy_access_name(was.access),
			    policy_access_name(will.access), reason_text(&will));
		return 0;
	}
	sbuf_printf(o, "%s\n  {\"user\": ", j->changed > 1 ? "," : "");
	fmt_json_str(o, d->user);
	sbuf_printf(o, ", \"device_id\": ");
	fmt_json_str(o, d->device_id);
	sbuf_printf(o, ", \"device_model\": ");
	fmt_json_str(o, model);
	sbuf_printf(o, ", \"device_os\": ");
	fmt_json_str(o, os);
	sbuf_printf(o, ", \"before\": \"%s\", \"before_why\": ", policy_access_name(was.access));
	fmt_json_str(o, reason_text(&was));
	sbuf_printf(o, ", \"after\": \"%s\", \"after_why\": ", policy_access_name(will.access));
	fmt_json_str(o, reason_text(&will));
	sbuf_put(o, "}", 1);
	return 0;
}

static int step(struct command_job *cj, struct sbuf *out, enum ctl_code *code)
{
	struct dryrun_job *j = (struct dryrun_job *)cj;
	j->o = out;
	inv_devices_page(admin_inventory(j->a), &j->cur, DRYRUN_PAGE, NULL, row, j);
	if (!j->cur.done)
		return 0;
	const char *text = j->text;
	if (j->json) {
		sbuf_printf(out, "%s], \"scanned\": %ld, \"changed\": %ld, \"moves\": {",
			    j->changed ? "\n" : "", j->scanned, j->changed);
		int first = 1;
		for (int f = 0; f < 3; f++)
			for (int t = 0; t < 3; t++)
				if (j->moves[f][t]) {
					sbuf_printf(out, "%s\"%s->%s\": %ld", first ? "" : ", ",
						    policy_access_name(f), policy_access_name(t),
						    j->moves[f][t]);
					first = 0;
				}
		sbuf_printf(out, "}}\n");
	} else {
		sbuf_printf(out, "# %ld of %ld devices would change", j->changed, j->scanned);
		for (int f = 0; f < 3; f++)
			for (int t = 0; t < 3; t++)
				if (j->moves[f][t])
					sbuf_printf(out, "; %s -> %s: %ld", policy_access_name(f),
						    policy_access_name(t), j->moves[f][t]);
		sbuf_printf(out, "\n# nothing was saved: easctl rules add '%s'\n", text);
	}
	*code = CTL_OK;
	return 1;
}

static void job_free(struct command_job *cj)
{
	struct dryrun_job *j = (struct dryrun_job *)cj;
	policy_free(j->before);
	policy_free(j->after);
	free(j);
}

enum ctl_code dryrun_command(struct admin *a, int argc, char **argv, struct sbuf *out)
{
	const char *fmt = NULL;
	const struct command_opt opts[] = {{"format", &fmt}, {NULL, NULL}};
	char *pos[1];
	int np;
	enum command_fmt f;
	if (command_parse_opts(argc, argv, 2, opts, pos, &np, 1, out) < 0)
		return CTL_USAGE;
	if (np != 1 || command_parse_fmt(fmt, &f) < 0 || f == FMT_CSV) {
		sbuf_printf(out, "usage: rules dryrun 'RULE' [--format table|json]");
		return CTL_USAGE;
	}
	struct dryrun_job *j = calloc(1, sizeof(*j));
	if (!j)
		return CTL_FAILED;
	j->job.step = step;
	j->job.free = job_free;
	j->a = a;
	j->json = f == FMT_JSON;
	j->now = time(NULL);
	char err[512];
	if (policy_rule_parse(pos[0], &j->rule, err, sizeof(err)) < 0) {
		sbuf_printf(out, "rule refused: %s", err);
		free(j);
		return CTL_USAGE;
	}
	char text[POLICY_RULE_TEXT_MAX];
	policy_rule_format(&j->rule, text, sizeof(text)); /* as typed, before it gets a label */
	snprintf(j->text, sizeof(j->text), "%s", text);
	if (!j->rule.name[0])
		snprintf(j->rule.name, sizeof(j->rule.name), "the new rule");
	j->cmd = EAS_CMD_SYNC;
	for (int c = 0; c < EAS_CMD__COUNT && j->rule.cmds; c++)
		if (j->rule.cmds & EAS_CMD_BIT(c)) {
			j->cmd = c;
			break;
		}
	admin_sync(a);
	j->before = gate_build_policy(admin_config(a), admin_inventory(a), err, sizeof(err));
	if (j->before)
		j->after = gate_build_policy_with(admin_config(a), admin_inventory(a), &j->rule,
						  err, sizeof(err));
	if (!j->before || !j->after) {
		sbuf_printf(out, "policy does not compile: %s", err);
		job_free(&j->job);
		return CTL_FAILED;
	}
	if (j->json) {
		sbuf_printf(out, "{\"rule\": ");
		fmt_json_str(out, text);
		sbuf_printf(out, ", \"command\": \"%s\", \"devices\": [", eas_cmd_name(j->cmd));
	} else {
		sbuf_printf(out, "# dry run of: %s (as a %s from each device)\n", text,
			    eas_cmd_name(j->cmd));
		sbuf_printf(out, "%-24s %-32s %-22s %-22s %-10s    %-10s %s\n", "USER", "DEVICE_ID",
			    "MODEL", "OS", "NOW", "WOULD_BE", "BECAUSE");
	}
	command_defer(&j->job);
	return CTL_OK;
}
