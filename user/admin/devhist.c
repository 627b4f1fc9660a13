/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* devhist.c - see devhist.h. */
#include "devhist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WAYS 4 /* slots per bucket: a device lives in one of them */

struct slot {
	char user[EAS_USER_MAX + 1];
	char device_id[EAS_DEVID_MAX + 1];
	int64_t last; /* 0 = free */
	unsigned head, n;
	struct devhist_entry ring[DEVHIST_RING];
};

struct devhist {
	struct slot slots[DEVHIST_DEVICES];
};

/* FNV-1a over the lower-cased key: users and DeviceIds compare case-insensitively. */
static unsigned bucket(const char *user, const char *dev)
{
	uint32_t h = 2166136261u;
	for (const char *p = user; *p; p++)
		h = (h ^ (unsigned char)(*p | 0x20)) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (const char *p = dev; *p; p++)
		h = (h ^ (unsigned char)(*p | 0x20)) * 16777619u;
	return (h % (DEVHIST_DEVICES / WAYS)) * WAYS;
}

struct devhist *devhist_new(void)
{
	return calloc(1, sizeof(struct devhist));
}

void devhist_free(struct devhist *h)
{
	free(h);
}

static struct slot *find(const struct devhist *h, const char *user, const char *dev)
{
	unsigned b = bucket(user, dev);
	for (unsigned i = 0; i < WAYS; i++) {
		const struct slot *s = &h->slots[b + i];
		if (s->last && !strcasecmp(s->user, user) && !strcasecmp(s->device_id, dev))
			return (struct slot *)s;
	}
	return NULL;
}

void devhist_note(struct devhist *h, const struct inv_event *e)
{
	if (!h || !e->device_id[0])
		return;
	struct slot *s = find(h, e->user, e->device_id);
	if (!s) {
		unsigned b = bucket(e->user, e->device_id);
		s = &h->slots[b];
		for (unsigned i = 1; i < WAYS; i++)
			if (h->slots[b + i].last < s->last)
				s = &h->slots[b + i];
		memset(s, 0, sizeof(*s));
		snprintf(s->user, sizeof(s->user), "%s", e->user);
		snprintf(s->device_id, sizeof(s->device_id), "%s", e->device_id);
	}
	s->last = e->now ? e->now : 1;
	struct devhist_entry *x = &s->ring[s->head];
	memset(x, 0, sizeof(*x));
	x->at = e->now;
	x->cmd = e->cmd;
	x->flags = e->flags;
	x->access = (e->flags & (INV_EV_DECISION | INV_EV_RESULT)) ? e->access : -1;
	x->reason = (e->flags & INV_EV_DECISION) ? e->reason : -1;
	x->status = (e->flags & INV_EV_RESULT) ? e->status : 0;
	snprintf(x->rule, sizeof(x->rule), "%s", e->rule);
	snprintf(x->os_key, sizeof(x->os_key), "%s", e->os_key);
	s->head = (s->head + 1) % DEVHIST_RING;
	if (s->n < DEVHIST_RING)
		s->n++;
}

int devhist_get(const struct devhist *h, const char *user, const char *device_id,
		struct devhist_entry out[DEVHIST_RING])
{
	const struct slot *s = h ? find(h, user, device_id) : NULL;
	if (!s)
		return 0;
	unsigned start = (s->head + DEVHIST_RING - s->n) % DEVHIST_RING;
	for (unsigned i = 0; i < s->n; i++)
		out[i] = s->ring[(start + i) % DEVHIST_RING];
	return (int)s->n;
}
