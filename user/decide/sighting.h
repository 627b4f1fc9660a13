/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * sighting.h - devices seen but not (yet) authenticated.
 *
 * The gateway does not authenticate: User= and the Basic user name are
 * claims until a backend answers one of the device's requests with a 2xx.
 * Only then does the device get an inventory row (inventory.h). Until then,
 * what its requests said (the last decision, User-Agent, DeviceInformation)
 * lives here, so that
 *  - every worker judges its next requests with the model and OS its
 *    DeviceInformation reported, even on another worker (a phone blocked for
 *    its OS must not pass on its next connection);
 *  - its first authenticated answer can create its row with all of it;
 *  - the admin can list it ("seen, not yet authenticated": easctl devices
 *    --unauthenticated).
 *
 * Bounded: a fixed number of slots (SIGHTING_SLOTS, rounded up to a power of
 * two of 4-way buckets), chosen at sighting_new() and never grown. A slot is
 * reused when it expired (no request for SIGHTING_TTL_S), when its device
 * authenticated, or, in a full bucket, least recently seen first. Keys are
 * SipHash-2-4 of (user, DeviceId) with a secret of the table, so nobody can
 * aim a flood at one bucket. A flood of claims therefore displaces other
 * unauthenticated sightings and nothing else.
 *
 * Shared: one mapping (MAP_SHARED|MAP_ANONYMOUS) made by the master before it
 * forks; workers write, the master reads (easctl). One lock word per bucket
 * (shmlock.h: the owner's thread id, a dead holder detected and replaced); a
 * lock that cannot be had within ~50 ms is given up: the sighting is not
 * recorded (counted in busy; it is a hint, the decision never waits longer).
 *
 * Nothing stored here is a credential; user names and DeviceIds are labels
 * shown to the admin, as in the inventory.
 */
#ifndef EG_SIGHTING_H
#define EG_SIGHTING_H

#include <stddef.h>
#include <stdint.h>

#include "inventory.h"

#define SIGHTING_SLOTS 4096
#define SIGHTING_TTL_S 86400

/* One sighting, as a reader gets it (a copy). */
struct sighting {
	uint64_t key;
	int64_t first_seen, last_seen; /* unix s */
	uint32_t notes;		       /* decisions noted (sighting_note calls) */
	int32_t last_status;	       /* last answer's HTTP status, 0 = none yet */
	uint32_t di_seq;	       /* moves when DeviceModel or DeviceOS changed */
	/* The latest decision (flags INV_EV_DECISION) with every field seen so
	 * far: DeviceInformation merged field by field, as the inventory does. */
	struct inv_event ev;
};

struct sighting_table;

/* slots 0 = SIGHTING_SLOTS. NULL with the reason in err. */
struct sighting_table *sighting_new(unsigned slots, char *err, size_t errsz);
/* Unmap this process's view (children keep theirs). NULL is a no-op. */
void sighting_free(struct sighting_table *s);

/* The key of (user, DeviceId), case-insensitive; never 0. */
uint64_t sighting_key(const struct sighting_table *s, const char *user, const char *device_id);

/*
 * Note a decision about an unauthenticated device: ev is what the inventory
 * would have been sent (user, DeviceId, DeviceType, User-Agent, access,
 * reason, rule, os_key; DeviceInformation when flags has INV_EV_DEVINFO).
 * access, reason and rule are taken only from a device-level decision
 * (flags INV_EV_DECISION). Returns 1 if DeviceModel or DeviceOS changed
 * (di_seq moved; its new value in *di_seq), 0 if not, -1 if not recorded
 * (table busy), SIGHTING_GONE if not recorded because the device
 * authenticated meanwhile: ev must then go to the inventory, or what it
 * says is lost.
 */
#define SIGHTING_GONE (-2)
int sighting_note(struct sighting_table *s, uint64_t key, const struct inv_event *ev,
		  uint32_t *di_seq);
/* The answer to one of its requests (not a 2xx from a backend: that one
 * authenticates, see sighting_forget). */
void sighting_result(struct sighting_table *s, uint64_t key, int http_status, int64_t now);

/* Cheap check for deciders: 1 and *di_seq / *gone when key is present,
 * 0 when absent or expired. gone: the device authenticated (its row is in
 * the inventory, or about to be). */
int sighting_peek(struct sighting_table *s, uint64_t key, int64_t now, uint32_t *di_seq, int *gone);
/* Copy the sighting of key: 1 found, 0 absent, expired or gone. */
int sighting_get(struct sighting_table *s, uint64_t key, int64_t now, struct sighting *out);
/* The device authenticated: hide it, free its slot (peek says gone until
 * the slot is reused). 1 and its last state in *out (out may be NULL) when
 * it was live (as sighting_get): what was noted since a sighting_get() is
 * not lost with it. */
int sighting_forget(struct sighting_table *s, uint64_t key, int64_t now, struct sighting *out);

/* Call fn for every live sighting (not expired, not gone), in table order;
 * fn returning non-zero stops. Returns how many were passed. */
int sighting_foreach(struct sighting_table *s, int64_t now,
		     int (*fn)(void *arg, const struct sighting *x), void *arg);

struct sighting_stats {
	uint64_t capacity;     /* slots */
	uint64_t live;	       /* not expired, not gone (a walk: for metrics/easctl) */
	uint64_t created;      /* sightings recorded since start */
	uint64_t displaced;    /* live sightings pushed out by newer ones */
	uint64_t busy;	       /* notes not recorded: bucket lock not had in time */
	uint64_t memory_bytes; /* size of the mapping */
};
void sighting_stats_read(struct sighting_table *s, int64_t now, struct sighting_stats *st);

#endif
