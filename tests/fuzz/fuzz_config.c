/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * fuzz_config.c - config_load_text() (easgated's config file parser) on
 * arbitrary bytes, then the policy the daemon builds from what it accepted
 * (gate_build_policy, as --check-config and a reload do).
 *
 * Aborts when: a refusal has no error, or an error does not name a line of
 * the input ("fuzz.conf:N: ..." with 1 <= N <= the input's lines) or is
 * not one line free of control bytes (errors quote the input); an
 * acceptance carries errors; the same bytes parsed twice give different
 * configs or different errors; the policy stage refuses what the loader
 * took without naming its line the same way; an entry names another file
 * than the input (no file is included).
 * ASan's leak check covers config_free. EG_FUZZ_VERBOSE=1 prints what each
 * input gave (errors, or "accepted"), to read a reproducer.
 *
 * CONFIG_TEXT_NO_INCLUDE: an @include is refused at its line, so no input
 * makes the parser open a file. The loader reads no other file (certificates,
 * lists and password files are read later by the daemon, not here).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "gate.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/*
 * libconfig 1.5 (Debian 12) itself leaks the string token it was scanning
 * when a syntax error stops it (a program calling only config_init,
 * config_read and config_destroy leaks 1 to 64 bytes on such input; both
 * reproducers are seeds: libconfig_leak_*). Not ours to free, so only those
 * two allocation sites inside libconfig are not reported.
 */
const char *__lsan_default_suppressions(void)
{
	return "leak:strbuf_append\n"
	       "leak:libconfig_yylex\n";
}

#define NAME "fuzz.conf"

/* Does msg start with "fuzz.conf:N: " with 1 <= N <= max_line and go on,
 * on one line with no control byte? */
static int names_a_line(const char *msg, long max_line)
{
	for (const char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return 0;
	size_t nl = strlen(NAME);
	if (strncmp(msg, NAME ":", nl + 1))
		return 0;
	char *end;
	long line = strtol(msg + nl + 1, &end, 10);
	return end != msg + nl + 1 && line >= 1 && line <= max_line && !strncmp(end, ": ", 2) &&
	       end[2];
}

static void check_errors(const struct config_errors *e, int rc, long max_line)
{
	if (rc != 0 && rc != -1)
		abort();
	if (rc == 0 && (e->n || e->dropped))
		abort(); /* accepted, yet something was wrong */
	if (rc < 0 && !e->n)
		abort(); /* refused without a reason */
	for (int i = 0; i < e->n; i++)
		if (!names_a_line(e->msg[i], max_line))
			abort();
}

/* The two parses' configs, rule texts and their files compared by content
 * (their pointers differ), everything else byte for byte (both start from
 * config_defaults' memset, so padding is equal too). */
static void check_same(struct gw_config *a, struct gw_config *b)
{
	if (a->policy.nrules != b->policy.nrules || a->policy.nblocked != b->policy.nblocked ||
	    a->policy.nallowed != b->policy.nallowed)
		abort();
	struct {
		struct cfg_text *x, *y;
		int n;
	} lists[] = {
	    {a->policy.rules, b->policy.rules, a->policy.nrules},
	    {a->policy.blocked_ids, b->policy.blocked_ids, a->policy.nblocked},
	    {a->policy.allowed_ids, b->policy.allowed_ids, a->policy.nallowed},
	};
	struct gw_config *na = malloc(sizeof(*na)), *nb = malloc(sizeof(*nb));
	if (!na || !nb)
		abort();
	memcpy(na, a, sizeof(*na));
	memcpy(nb, b, sizeof(*nb));
	for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++)
		for (int i = 0; i < lists[l].n; i++)
			if (strcmp(lists[l].x[i].text, lists[l].y[i].text) ||
			    lists[l].x[i].line != lists[l].y[i].line ||
			    strcmp(config_text_file(a, &lists[l].x[i]), NAME) ||
			    strcmp(config_text_file(b, &lists[l].y[i]), NAME))
				abort();
	struct cfg_text *owned[2][3] = {
	    {na->policy.rules, na->policy.blocked_ids, na->policy.allowed_ids},
	    {nb->policy.rules, nb->policy.blocked_ids, nb->policy.allowed_ids}};
	for (int k = 0; k < 2; k++)
		for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++)
			for (int i = 0; i < lists[l].n; i++) {
				owned[k][l][i].text = NULL;
				owned[k][l][i].file = NULL;
			}
	if (na->nincluded || nb->nincluded)
		abort(); /* no file was included */
	if (memcmp(na, nb, sizeof(*na)))
		abort();
	free(na);
	free(nb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of its own, so ASan sees any read past the input's end. */
	char *text = malloc(size ? size : 1);
	struct gw_config *c = calloc(1, sizeof(*c)), *c2 = calloc(1, sizeof(*c2));
	struct config_errors *e = calloc(1, sizeof(*e)), *e2 = calloc(1, sizeof(*e2));
	if (!text || !c || !c2 || !e || !e2)
		abort();
	memcpy(text, data, size);
	long max_line = 1;
	for (size_t i = 0; i < size; i++)
		max_line += text[i] == '\n';

	config_defaults(c);
	int rc = config_load_text(c, NAME, text, size, CONFIG_TEXT_NO_INCLUDE, e);
	if (getenv("EG_FUZZ_VERBOSE")) {
		for (int i = 0; i < e->n; i++)
			fprintf(stderr, "%s\n", e->msg[i]);
		if (!rc)
			fprintf(stderr, "accepted\n");
	}
	check_errors(e, rc, max_line);
	config_defaults(c2);
	int rc2 = config_load_text(c2, NAME, text, size, CONFIG_TEXT_NO_INCLUDE, e2);
	if (rc2 != rc || e2->n != e->n || e2->dropped != e->dropped)
		abort();
	for (int i = 0; i < e->n; i++)
		if (strcmp(e->msg[i], e2->msg[i]))
			abort();
	if (rc == 0) {
		check_same(c, c2);
		char why[1024];
		struct policy *p = gate_build_policy(c, NULL, why, sizeof(why));
		if (!p && getenv("EG_FUZZ_VERBOSE"))
			fprintf(stderr, "policy refused: %s\n", why);
		if (!p && !why[0])
			abort(); /* refused without a reason */
		/* one error a line, each naming a line of the input */
		for (char *l = why, *nl; !p && l; l = nl ? nl + 1 : NULL) {
			if ((nl = strchr(l, '\n')))
				*nl = 0;
			if (!names_a_line(l, max_line))
				abort();
		}
		policy_free(p);
		config_free(c);
		config_free(c2);
	}
	free(c);
	free(c2);
	free(e);
	free(e2);
	free(text);
	return 0;
}
