/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * command_doc.h - the help text of every easctl command, in one table
 * (command_doc.c): easctl help, the daemon's help, easctl(8).
 */
#ifndef EG_COMMAND_DOC_H
#define EG_COMMAND_DOC_H

struct command_doc {
	const char *name; /* the command word */
	const char *text; /* usage lines ("easctl NAME ..."), then the description */
};

/* In the order `easctl help` lists them; NULL-name-terminated. */
extern const struct command_doc command_docs[];

const struct command_doc *command_doc_find(const char *name);

#endif
