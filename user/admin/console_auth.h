/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * console_auth.h - the console's sessions and login limits.
 *
 * Sessions: 256 at most; the id and the CSRF token are 32 random bytes each
 * (hex); a session ends after idle_ms without a request, at logout, or when
 * its account's role changed or the account is gone (the accounts file is
 * re-read when it changes). The CSRF token must come back, in the
 * X-CSRF-Token header, with every request that changes something.
 *
 * Login limits: LOGIN_MAX_FAILS wrong passwords from one source address, or
 * for one account from anywhere, within lockout_ms lock that source (or
 * account) out for lockout_ms; while locked even the right password is
 * refused. Both tables are bounded (LIMIT_SLOTS; the oldest entry gives way).
 */
#ifndef EG_CONSOLE_AUTH_H
#define EG_CONSOLE_AUTH_H

#include <stdint.h>

#include "accounts.h"

#define CONSOLE_SESSIONS 256
#define LOGIN_MAX_FAILS	 20
#define LIMIT_SLOTS	 1024

struct console_session {
	char id[65];
	char csrf[65];
	char user[ACCOUNT_NAME_MAX + 1];
	int role;
	char source[64];
	uint64_t last_ms; /* 0 = free slot */
};

struct limit_slot {
	char key[ACCOUNT_NAME_MAX + 1];
	uint32_t fails;
	uint64_t first_ms, locked_until_ms;
};

struct console_auth {
	struct console_session sess[CONSOLE_SESSIONS];
	struct limit_slot by_source[LIMIT_SLOTS], by_account[LIMIT_SLOTS];
	uint64_t idle_ms, lockout_ms;
	uint64_t lockouts; /* how many lockouts began (metrics, tests) */
};

void console_auth_init(struct console_auth *a, uint64_t idle_ms, uint64_t lockout_ms);
/* ms left of a lockout of this source or account (0 = may try). */
uint64_t console_auth_locked(struct console_auth *a, const char *source, const char *user,
			     uint64_t now_ms);
/* A wrong password (known: user names an account). Returns 1 when this one
 * started a lockout of the source, 2 of the account, 3 both (the caller logs
 * it), else 0. Only known accounts are counted per account: names that do
 * not exist must not push real accounts' counts out of the table. */
int console_auth_failed(struct console_auth *a, const char *source, const char *user, int known,
			uint64_t now_ms);
/* A right one: the source's and account's counts start again. */
void console_auth_succeeded(struct console_auth *a, const char *source, const char *user);

/* A new session (NULL if random bytes cannot be had; the oldest session
 * gives way when all slots are taken). */
struct console_session *console_auth_session_new(struct console_auth *a, const char *user, int role,
						 const char *source, uint64_t now_ms);
/* The live session with this id (constant-time compare), refreshed; NULL if
 * none or idle too long (then ended). */
struct console_session *console_auth_session_find(struct console_auth *a, const char *id,
						  uint64_t now_ms);
void console_auth_session_end(struct console_session *s);
/* End every session of an account whose role is no longer `role` (-1: gone). */
void console_auth_sessions_revalidate(struct console_auth *a, const struct accounts *acc);
/* 1 if token is s's CSRF token (constant time). */
int console_auth_csrf_ok(const struct console_session *s, const char *token);

#endif
