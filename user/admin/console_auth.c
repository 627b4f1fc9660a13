/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* console_auth.c - see console_auth.h. */
#include "console_auth.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

void console_auth_init(struct console_auth *a, uint64_t idle_ms, uint64_t lockout_ms)
{
	memset(a, 0, sizeof(*a));
	a->idle_ms = idle_ms;
	a->lockout_ms = lockout_ms;
}

static struct limit_slot *slot(struct limit_slot *t, const char *key, int create)
{
	struct limit_slot *oldest = &t[0];
	for (int i = 0; i < LIMIT_SLOTS; i++) {
		if (t[i].first_ms && !strcmp(t[i].key, key))
			return &t[i];
		if (!t[i].first_ms || (oldest->first_ms && t[i].first_ms < oldest->first_ms &&
				       t[i].locked_until_ms <= oldest->locked_until_ms))
			oldest = &t[i];
	}
	if (!create)
		return NULL;
	memset(oldest, 0, sizeof(*oldest));
	snprintf(oldest->key, sizeof(oldest->key), "%s", key);
	return oldest;
}

static uint64_t left(const struct limit_slot *s, uint64_t now)
{
	return s && s->locked_until_ms > now ? s->locked_until_ms - now : 0;
}

uint64_t console_auth_locked(struct console_auth *a, const char *source, const char *user,
			     uint64_t now_ms)
{
	uint64_t l1 = left(slot(a->by_source, source, 0), now_ms);
	uint64_t l2 = user && user[0] ? left(slot(a->by_account, user, 0), now_ms) : 0;
	return l1 > l2 ? l1 : l2;
}

static int count(struct console_auth *a, struct limit_slot *t, const char *key, uint64_t now)
{
	struct limit_slot *s = slot(t, key, 1);
	if (!s->first_ms || now - s->first_ms > a->lockout_ms) {
		s->first_ms = now ? now : 1;
		s->fails = 0;
	}
	if (++s->fails < LOGIN_MAX_FAILS)
		return 0;
	s->locked_until_ms = now + a->lockout_ms;
	s->fails = 0;
	s->first_ms = now ? now : 1;
	a->lockouts++;
	return 1;
}

int console_auth_failed(struct console_auth *a, const char *source, const char *user, int known,
			uint64_t now_ms)
{
	int r = count(a, a->by_source, source, now_ms);
	if (known && user && accounts_name_ok(user))
		r |= count(a, a->by_account, user, now_ms) << 1;
	return r;
}

void console_auth_succeeded(struct console_auth *a, const char *source, const char *user)
{
	struct limit_slot *s = slot(a->by_source, source, 0);
	if (s && !s->locked_until_ms)
		memset(s, 0, sizeof(*s));
	s = slot(a->by_account, user, 0);
	if (s && !s->locked_until_ms)
		memset(s, 0, sizeof(*s));
}

static int random_hex(char *out, size_t n)
{
	unsigned char b[32];
	if (n < 65 || RAND_bytes(b, sizeof(b)) != 1)
		return -1;
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	OPENSSL_cleanse(b, sizeof(b));
	return 0;
}

struct console_session *console_auth_session_new(struct console_auth *a, const char *user, int role,
						 const char *source, uint64_t now_ms)
{
	struct console_session *s = &a->sess[0];
	for (int i = 0; i < CONSOLE_SESSIONS; i++) {
		if (!a->sess[i].last_ms) {
			s = &a->sess[i];
			break;
		}
		if (a->sess[i].last_ms < s->last_ms)
			s = &a->sess[i];
	}
	memset(s, 0, sizeof(*s));
	if (random_hex(s->id, sizeof(s->id)) < 0 || random_hex(s->csrf, sizeof(s->csrf)) < 0) {
		memset(s, 0, sizeof(*s));
		return NULL;
	}
	snprintf(s->user, sizeof(s->user), "%s", user);
	snprintf(s->source, sizeof(s->source), "%s", source);
	s->role = role;
	s->last_ms = now_ms ? now_ms : 1;
	return s;
}

struct console_session *console_auth_session_find(struct console_auth *a, const char *id,
						  uint64_t now_ms)
{
	if (strlen(id) != 64)
		return NULL;
	for (int i = 0; i < CONSOLE_SESSIONS; i++) {
		struct console_session *s = &a->sess[i];
		if (!s->last_ms || CRYPTO_memcmp(s->id, id, 64))
			continue;
		if (now_ms - s->last_ms > a->idle_ms) {
			console_auth_session_end(s);
			return NULL;
		}
		s->last_ms = now_ms;
		return s;
	}
	return NULL;
}

void console_auth_session_end(struct console_session *s)
{
	OPENSSL_cleanse(s, sizeof(*s));
	memset(s, 0, sizeof(*s));
}

void console_auth_sessions_revalidate(struct console_auth *a, const struct accounts *acc)
{
	for (int i = 0; i < CONSOLE_SESSIONS; i++) {
		struct console_session *s = &a->sess[i];
		if (!s->last_ms)
			continue;
		const struct account *x = accounts_find(acc, s->user);
		if (!x || x->role != s->role)
			console_auth_session_end(s);
	}
}

int console_auth_csrf_ok(const struct console_session *s, const char *token)
{
	return token && strlen(token) == 64 && CRYPTO_memcmp(s->csrf, token, 64) == 0;
}
