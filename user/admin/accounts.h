/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * accounts.h - the console's accounts: a file of "name:role:hash" lines,
 * hash = crypt(3) yescrypt ("$y$..."), written by `easctl admin passwd NAME
 * ROLE` and read by the daemon.
 *
 * The file must be readable by its owner only (mode 0600 or stricter): the
 * daemon refuses to use a group- or world-readable file (the hashes would be
 * open to offline guessing) and easctl refuses to write into one. Names are
 * 1-64 of [A-Za-z0-9._@-]; roles are viewer, helpdesk, admin (command.h).
 */
#ifndef EG_ACCOUNTS_H
#define EG_ACCOUNTS_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#define ACCOUNTS_MAX	 1024
#define ACCOUNT_NAME_MAX 64
#define ACCOUNT_HASH_MAX 160

struct account {
	char name[ACCOUNT_NAME_MAX + 1];
	int role; /* enum command_role */
	char hash[ACCOUNT_HASH_MAX];
};

struct accounts {
	struct account *a;
	int n;
	struct timespec mtime; /* of the file as loaded */
	ino_t ino;
};

/* 1 if name is a valid account name. */
int accounts_name_ok(const char *name);

/* Load path into out (replacing what it held). -1 with err set: missing,
 * not a regular file, group/world-readable, or a malformed line (file:line). */
int accounts_load(const char *path, struct accounts *out, char *err, size_t errsz);
void accounts_free(struct accounts *a);
/* 1 if the file changed since out was loaded (mtime or inode). */
int accounts_changed(const char *path, const struct accounts *a);
const struct account *accounts_find(const struct accounts *a, const char *name);

/* Is password the one hash was made from? Constant-time compare. Slow by
 * design (yescrypt): call it off the event loop. A NULL hash still spends
 * the time of a real check (no timing hint that the account does not exist). */
int accounts_verify(const char *hash, const char *password);

/* easctl: set NAME's role and password (adding it), atomically (a 0600 temp
 * file renamed over the old one). Refuses a group/world-readable existing
 * file. 0 or -1 with err. */
int accounts_set(const char *path, const char *name, int role, const char *password, char *err,
		 size_t errsz);

#endif
