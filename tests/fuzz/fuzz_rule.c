/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * fuzz_rule.c - policy_rule_parse() on arbitrary text.
 *
 * Input: "<rule text>\n<value>". Every rule the parser accepts must format,
 * re-parse to an equal rule, format to the same text again, compile into a
 * policy, and decide the value exactly as a reference would: pcre2_match()
 * for "matches", fnmatch() for "like", self-match for "is". The last part
 * fuzzes the regex/glob prefilter, which must never hide a match.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <fnmatch.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eas_cmd.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What policy_decide must say for value v, or -1 when no reference applies. */
static int reference(const struct policy_rule *r, const char *v)
{
	if (r->op == POLICY_OP_IS)
		return strcasecmp(r->pattern, v) == 0;
	if (r->op == POLICY_OP_LIKE) {
		if (strpbrk(r->pattern, "[\\")) /* fnmatch reads these, we do not */
			return -1;
		return fnmatch(r->pattern, v, FNM_CASEFOLD | FNM_NOESCAPE) == 0;
	}
	if (r->op != POLICY_OP_MATCHES)
		return -1;
	int ec, rc;
	PCRE2_SIZE off;
	pcre2_code *re =
	    pcre2_compile((PCRE2_SPTR)r->pattern, PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL);
	if (!re)
		abort(); /* the parser accepted it */
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	pcre2_match_context *mc = pcre2_match_context_create(NULL);
	pcre2_set_match_limit(mc, 100000);
	rc = pcre2_match(re, (PCRE2_SPTR)v, strlen(v), 0, 0, md, mc);
	pcre2_match_context_free(mc);
	pcre2_match_data_free(md);
	pcre2_code_free(re);
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	return rc >= 0 ? 1 : -1; /* limits hit: no reference */
}

static void check_decision(const struct policy_rule *r, const char *value)
{
	struct policy_config c = {.default_access = POLICY_ALLOW, .rules = r, .n_rules = 1};
	char err[256];
	struct policy *p = policy_new(&c, err, sizeof(err));
	if (!p)
		abort();
	const char *v = value;
	if (r->ch == POLICY_CH_DEVICEOS && !v[0])
		v = r->pattern; /* an empty DeviceOS would be derived from the UA */
	int cmd = EAS_CMD_SYNC;
	for (int i = 0; r->cmds && i < 64; i++) {
		if (r->cmds & EAS_CMD_BIT(i)) {
			cmd = i;
			break;
		}
	}
	struct policy_input in = {.user = v,
				  .device_id = v,
				  .device_type = v,
				  .device_model = v[0] ? v : "m",
				  .device_os = v,
				  .user_agent = v,
				  .xmswl = v,
				  .cmd = cmd};
	struct policy_decision d;
	policy_decide(p, &in, &d);
	int want = reference(r, r->ch == POLICY_CH_DEVICEMODEL ? in.device_model : v);
	if (want >= 0 && want != (d.rule_index == 0))
		abort();
	if (d.explain[0] == 0)
		abort();
	policy_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[2048], value[1024] = "";
	if (size >= sizeof(text))
		size = sizeof(text) - 1;
	memcpy(text, data, size);
	text[size] = 0;
	char *nl = strchr(text, '\n');
	if (nl) {
		*nl = 0;
		strncpy(value, nl + 1, sizeof(value) - 1);
	}

	struct policy_rule r, back;
	char err[256], out[POLICY_RULE_TEXT_MAX], out2[POLICY_RULE_TEXT_MAX];
	if (policy_rule_parse(text, &r, err, sizeof(err)) < 0) {
		if (!err[0] || strncmp(err, "column ", 7))
			abort(); /* every error says where */
		for (const char *p = err; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				abort(); /* one line, no terminal escape */
		return 0;
	}
	if (policy_rule_format(&r, out, sizeof(out)) < 0)
		abort();
	if (policy_rule_parse(out, &back, err, sizeof(err)) < 0)
		abort();
	if (!policy_rule_equal(&r, &back))
		abort();
	if (policy_rule_format(&back, out2, sizeof(out2)) < 0 || strcmp(out, out2))
		abort();
	check_decision(&r, value);
	/* a rule's own pattern is a value it must accept (is/like) */
	if (r.op == POLICY_OP_IS || r.op == POLICY_OP_LIKE)
		check_decision(&r, r.pattern);
	return 0;
}
