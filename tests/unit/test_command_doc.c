/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_command_doc.c - the daemon's command table and the help table agree:
 * every command easgated runs has its help (easctl help, easctl(8)), whose
 * usage lines name it, and every help names a command the daemon runs or one
 * easctl runs itself (admin passwd). A command added without help fails here.
 */
#include "testlib.h"

#include "command_doc.h"
#include "master.h"

#include <string.h>

/* Commands easctl runs without the daemon. */
static const char *const local_only[] = {"admin", NULL};

static void test_every_command_has_help(void **state)
{
	int n = 0;
	for (const struct ctl_cmd *k = master_commands(); k->name; k++, n++) {
		const struct command_doc *d = command_doc_find(k->name);
		char first[64];
		if (!d)
			fail_msg("command '%s' has no help in command_doc.c", k->name);
		snprintf(first, sizeof(first), "easctl %s", k->name);
		if (strncmp(d->text, first, strlen(first)) ||
		    (d->text[strlen(first)] != ' ' && d->text[strlen(first)] != '\n'))
			fail_msg("the help of '%s' does not start with its usage: %.40s", k->name,
				 d->text);
	}
	assert_true(n >= 16);
}

static void test_every_help_is_a_command(void **state)
{
	for (const struct command_doc *d = command_docs; d->name; d++) {
		int found = 0;
		for (const struct ctl_cmd *k = master_commands(); k->name && !found; k++)
			found = !strcmp(k->name, d->name);
		for (const char *const *l = local_only; *l && !found; l++)
			found = !strcmp(*l, d->name);
		if (!found)
			fail_msg("help for '%s', which no one runs", d->name);
		/* the description follows the usage lines, indented two spaces */
		assert_non_null(strstr(d->text, "\n  "));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_command_has_help),
	    cmocka_unit_test(test_every_help_is_a_command),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
