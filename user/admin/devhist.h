/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * devhist.h - the master's short memory of each device's recent decisions
 * and answers, for the console's device page and `easctl device history`.
 *
 * Fed with the inventory events the workers already send (so it costs the
 * data path nothing); those are sent when a decision changes, on a device's
 * first request or DeviceInformation, and at most once a minute otherwise,
 * so this is "decisions over time", not a log of every request (the access
 * log is that).
 *
 * Bounded: DEVHIST_DEVICES devices x DEVHIST_RING entries (about 3 MiB); a
 * new device takes the slot of the one seen longest ago in its bucket.
 */
#ifndef EG_DEVHIST_H
#define EG_DEVHIST_H

#include <stdint.h>

#include "inventory.h"

#define DEVHIST_DEVICES 4096
#define DEVHIST_RING	16

struct devhist_entry {
	int64_t at;
	int32_t cmd;	/* enum eas_cmd */
	int32_t status; /* HTTP status of the answer (result entries), else 0 */
	int32_t access; /* enum policy_access; -1 unknown */
	int32_t reason; /* enum policy_reason (decision entries), else -1 */
	uint32_t flags; /* INV_EV_* of the event */
	char rule[64];
	char os_key[64];
};

struct devhist;

struct devhist *devhist_new(void);
void devhist_free(struct devhist *h);
/* Remember one event (any flags). */
void devhist_note(struct devhist *h, const struct inv_event *e);
/* Entries of (user, device_id), oldest first. Returns how many (0 = none kept). */
int devhist_get(const struct devhist *h, const char *user, const char *device_id,
		struct devhist_entry out[DEVHIST_RING]);

#endif
