/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * usage.h - easgated's command-line options, described once: easgated --help
 * prints them and easgated(8) (tools/eg-doc.c) is made from them.
 */
#ifndef EG_USAGE_H
#define EG_USAGE_H

#include <stdio.h>

struct usage_opt {
	char shortopt;	  /* 0 = long form only */
	const char *name; /* the long form, without "--" */
	const char *arg;  /* "FILE"; "[=N]" for an optional value; NULL = none */
	const char *text; /* what it does; '\n' separates lines of --help */
};

/* NULL-name-terminated, in the order --help lists them. */
extern const struct usage_opt usage_opts[];

/* easgated --help */
void usage_print(FILE *f);

#endif
