/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * sighting.c - see sighting.h.
 *
 * Layout of the mapping: a 4 KiB header (sizes, secret, counters), then the
 * buckets (128 bytes: a lock word and SIGHT_WAYS slot heads: key, last seen,
 * gone), then the slots' bodies (struct sighting, 2.6 KB each), apart: a
 * lookup reads only the small heads, so the memory a process touches grows
 * with the sightings recorded, not with the requests looked up (shared
 * anonymous pages are allocated even when only read). Everything is written
 * only under its bucket's lock; readers copy under it too.
 */
#include "sighting.h"
#include "shmlock.h"
#include "siphash.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SIGHT_WAYS  4
#define SIGHT_MAGIC UINT64_C(0x65675f7369676874) /* "eg_sight" */

struct head {
	uint64_t key; /* 0 = free */
	int64_t last_seen;
	uint32_t gone; /* authenticated: hidden, reusable */
	uint32_t pad;
};

struct bucket {
	uint32_t lock; /* owner's thread id, 0 = free */
	uint32_t pad[7];
	struct head s[SIGHT_WAYS];
};
_Static_assert(sizeof(struct bucket) == 128, "two buckets per cache line pair");

struct shdr {
	uint64_t magic;
	uint64_t map_len;
	uint32_t mask; /* buckets - 1 */
	uint32_t pad;
	struct siphash_key secret;
	uint64_t created, displaced, busy;
};

struct sighting_table {
	struct shdr *h; /* the shared mapping (owned: unmapped by sighting_free) */
	struct bucket *b;
	struct sighting *body; /* body of slot w of bucket i: body[i * SIGHT_WAYS + w] */
};

/* ---- locks (shmlock.h) ----------------------------------------------------------- */

/* 0 when held; -1 when it could not be had (counted; the caller fails open). */
static int lock_take(struct sighting_table *s, uint32_t *lk)
{
	if (shmlock_take(lk) == 0)
		return 0;
	__atomic_fetch_add(&s->h->busy, 1, __ATOMIC_RELAXED);
	return -1;
}

/* ---- lifecycle ---------------------------------------------------------------- */

struct sighting_table *sighting_new(unsigned slots, char *err, size_t errsz)
{
	if (!slots)
		slots = SIGHTING_SLOTS;
	if (slots > (1u << 22)) {
		snprintf(err, errsz, "sightings: at most %u slots", 1u << 22);
		return NULL;
	}
	uint32_t nb = 1;
	while ((uint64_t)nb * SIGHT_WAYS < slots)
		nb <<= 1;
	uint64_t off_body = 4096 + (uint64_t)nb * sizeof(struct bucket);
	off_body = (off_body + 4095) & ~UINT64_C(4095);
	uint64_t len = off_body + (uint64_t)nb * SIGHT_WAYS * sizeof(struct sighting);
	len = (len + 4095) & ~UINT64_C(4095);
	struct sighting_table *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	/* Pages are zero-filled on first touch: an idle table costs little. */
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		snprintf(err, errsz, "sightings: mmap %llu bytes: %s", (unsigned long long)len,
			 strerror(errno));
		free(s);
		return NULL;
	}
	s->h = m;
	s->h->magic = SIGHT_MAGIC;
	s->h->map_len = len;
	s->h->mask = nb - 1;
	int r = siphash_key_random(&s->h->secret);
	if (r < 0) {
		snprintf(err, errsz, "sightings: random key: %s", strerror(-r));
		sighting_free(s);
		return NULL;
	}
	s->b = (struct bucket *)((char *)m + 4096);
	s->body = (struct sighting *)((char *)m + off_body);
	return s;
}

void sighting_free(struct sighting_table *s)
{
	if (!s)
		return;
	if (s->h)
		munmap(s->h, s->h->map_len);
	free(s);
}

uint64_t sighting_key(const struct sighting_table *s, const char *user, const char *device_id)
{
	char buf[EAS_USER_MAX + EAS_DEVID_MAX + 4];
	size_t n = 0;
	for (const char *p = user ? user : ""; *p && n < EAS_USER_MAX; p++)
		buf[n++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : *p;
	buf[n++] = 0; /* "ab"+"c" and "a"+"bc" differ */
	for (const char *p = device_id ? device_id : ""; *p && n < sizeof(buf); p++)
		buf[n++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : *p;
	return siphash24(&s->h->secret, buf, n) | 1;
}

/* ---- slots -------------------------------------------------------------------- */

static struct bucket *bucket_of(const struct sighting_table *s, uint64_t key)
{
	return &s->b[(key >> 9) & s->h->mask];
}

static struct sighting *body_of(const struct sighting_table *s, const struct bucket *b,
				const struct head *x)
{
	size_t i = (size_t)(b - s->b) * SIGHT_WAYS + (size_t)(x - b->s);
	return &s->body[i];
}

static int live(const struct head *x, int64_t now)
{
	return x->key && !x->gone && now - x->last_seen < SIGHTING_TTL_S;
}

static struct head *find(struct bucket *b, uint64_t key)
{
	for (int i = 0; i < SIGHT_WAYS; i++)
		if (b->s[i].key == key)
			return &b->s[i];
	return NULL;
}

/* A free, gone or expired slot, else the least recently seen. */
static struct head *victim(struct bucket *b, int64_t now)
{
	struct head *v = NULL;
	for (int i = 0; i < SIGHT_WAYS; i++) {
		struct head *x = &b->s[i];
		if (!live(x, now))
			return x;
		if (!v || x->last_seen < v->last_seen)
			v = x;
	}
	return v;
}

static void merge(char *dst, size_t n, const char *src)
{
	if (src[0])
		snprintf(dst, n, "%s", src);
}

#define MERGE(d, s, f) merge((d)->f, sizeof((d)->f), (s)->f)

int sighting_note(struct sighting_table *s, uint64_t key, const struct inv_event *ev,
		  uint32_t *di_seq)
{
	struct bucket *b = bucket_of(s, key);
	if (lock_take(s, &b->lock) < 0)
		return -1;
	struct head *x = find(b, key);
	if (x && x->gone) {
		/* authenticated: its row says the rest (the noting worker has
		 * not seen it yet) */
		shmlock_drop(&b->lock);
		return SIGHTING_GONE;
	}
	if (x && !live(x, ev->now))
		x->key = 0; /* expired: start over */
	struct sighting *g;
	if (!x || !x->key) {
		x = victim(b, ev->now);
		if (live(x, ev->now))
			__atomic_fetch_add(&s->h->displaced, 1, __ATOMIC_RELAXED);
		g = body_of(s, b, x);
		/* di_seq goes on from any earlier sighting in this slot: a worker
		 * comparing it must see a change, never the same number again */
		uint32_t seq = g->di_seq + 1;
		memset(x, 0, sizeof(*x));
		memset(g, 0, sizeof(*g));
		x->key = key;
		g->key = key;
		g->first_seen = ev->now;
		g->di_seq = seq;
		g->ev = *ev;
		g->ev.flags = INV_EV_DECISION;
		g->ev.access = -1; /* until a device-level decision */
		memset(&g->ev.di, 0, sizeof(g->ev.di));
		__atomic_fetch_add(&s->h->created, 1, __ATOMIC_RELAXED);
	} else {
		g = body_of(s, b, x);
	}
	struct inv_event *e = &g->ev;
	g->notes++;
	if (ev->now > x->last_seen)
		x->last_seen = ev->now;
	g->last_seen = x->last_seen;
	e->now = x->last_seen;
	e->cmd = ev->cmd;
	if (ev->flags & INV_EV_DECISION) {
		e->access = ev->access;
		e->reason = ev->reason;
		snprintf(e->rule, sizeof(e->rule), "%s", ev->rule);
	}
	MERGE(e, ev, device_type);
	MERGE(e, ev, user_agent);
	MERGE(e, ev, xmswl);
	MERGE(e, ev, protocol);
	MERGE(e, ev, os_key);
	MERGE(e, ev, os_family);
	int news = 0;
	if (ev->flags & INV_EV_DEVINFO) {
		const struct eas_devinfo *d = &ev->di;
		news = (d->model[0] && strcmp(d->model, e->di.model)) ||
		       (d->os[0] && strcmp(d->os, e->di.os));
		MERGE(&e->di, d, model);
		MERGE(&e->di, d, os);
		MERGE(&e->di, d, imei);
		MERGE(&e->di, d, friendly_name);
		MERGE(&e->di, d, os_language);
		MERGE(&e->di, d, phone_number);
		MERGE(&e->di, d, user_agent);
		MERGE(&e->di, d, mobile_operator);
		MERGE(&e->di, d, enable_outbound_sms);
		e->di.present |= d->present;
		e->flags |= INV_EV_DEVINFO;
		if (news)
			g->di_seq++;
	}
	if (di_seq)
		*di_seq = g->di_seq;
	shmlock_drop(&b->lock);
	return news;
}

void sighting_result(struct sighting_table *s, uint64_t key, int http_status, int64_t now)
{
	struct bucket *b = bucket_of(s, key);
	if (lock_take(s, &b->lock) < 0)
		return;
	struct head *x = find(b, key);
	if (x && live(x, now)) {
		struct sighting *g = body_of(s, b, x);
		g->last_status = http_status;
		if (now > x->last_seen)
			x->last_seen = now;
		g->last_seen = x->last_seen;
	}
	shmlock_drop(&b->lock);
}

int sighting_peek(struct sighting_table *s, uint64_t key, int64_t now, uint32_t *di_seq, int *gone)
{
	struct bucket *b = bucket_of(s, key);
	if (lock_take(s, &b->lock) < 0)
		return 0;
	struct head *x = find(b, key);
	int r = 0;
	if (x && (x->gone || live(x, now))) {
		*di_seq = body_of(s, b, x)->di_seq;
		*gone = (int)x->gone;
		r = 1;
	}
	shmlock_drop(&b->lock);
	return r;
}

int sighting_get(struct sighting_table *s, uint64_t key, int64_t now, struct sighting *out)
{
	struct bucket *b = bucket_of(s, key);
	if (lock_take(s, &b->lock) < 0)
		return 0;
	struct head *x = find(b, key);
	int r = x && live(x, now);
	if (r)
		*out = *body_of(s, b, x);
	shmlock_drop(&b->lock);
	return r;
}

int sighting_forget(struct sighting_table *s, uint64_t key, int64_t now, struct sighting *out)
{
	struct bucket *b = bucket_of(s, key);
	if (lock_take(s, &b->lock) < 0)
		return 0;
	struct head *x = find(b, key);
	int r = x && live(x, now);
	if (r && out)
		*out = *body_of(s, b, x);
	if (x)
		x->gone = 1;
	shmlock_drop(&b->lock);
	return r;
}

int sighting_foreach(struct sighting_table *s, int64_t now,
		     int (*fn)(void *arg, const struct sighting *x), void *arg)
{
	struct sighting *copy = malloc(sizeof(*copy));
	int n = 0;
	for (uint32_t i = 0; copy && i <= s->h->mask; i++) {
		struct bucket *b = &s->b[i];
		for (int w = 0; w < SIGHT_WAYS; w++) {
			if (lock_take(s, &b->lock) < 0)
				break;
			int ok = live(&b->s[w], now);
			if (ok)
				*copy = *body_of(s, b, &b->s[w]);
			shmlock_drop(&b->lock);
			if (!ok)
				continue;
			n++;
			if (fn(arg, copy)) {
				free(copy);
				return n;
			}
		}
	}
	free(copy);
	return n;
}

static int count_one(void *arg, const struct sighting *x)
{
	(void)x;
	(*(uint64_t *)arg)++;
	return 0;
}

void sighting_stats_read(struct sighting_table *s, int64_t now, struct sighting_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->capacity = (uint64_t)(s->h->mask + 1) * SIGHT_WAYS;
	st->created = __atomic_load_n(&s->h->created, __ATOMIC_RELAXED);
	st->displaced = __atomic_load_n(&s->h->displaced, __ATOMIC_RELAXED);
	st->busy = __atomic_load_n(&s->h->busy, __ATOMIC_RELAXED);
	st->memory_bytes = s->h->map_len;
	sighting_foreach(s, now, count_one, &st->live);
}
