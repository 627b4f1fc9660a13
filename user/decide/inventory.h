/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * inventory.h - the device inventory in SQLite (WAL, synchronous=NORMAL: a
 * committed row survives kill -9 of the daemon; only a power loss may cost
 * the last commits). Exchange's Get-MobileDevice, in a file an admin can
 * also open with sqlite3.
 *
 * One writer: the master applies events that workers send over a datagram
 * socket (struct inv_event), batching them into transactions. Workers open
 * the database read-only and cache what they read; the master bumps
 * shm->policy_gen after any change that can alter a decision.
 *
 * A device is (user, DeviceId), as in Exchange. Nothing stored here is a
 * credential.
 */
#ifndef EG_INVENTORY_H
#define EG_INVENTORY_H

#include <stdint.h>

#include "eas.h"

struct inventory;

#define INV_EVENT_MAGIC 0x45474956u /* "EGIV" */

enum inv_event_flags {
	INV_EV_DEVINFO = 1u << 0,  /* di holds DeviceInformation from this request */
	INV_EV_RESULT = 1u << 1,   /* status is the answer's HTTP status */
	INV_EV_DECISION = 1u << 2, /* access/reason/rule are set */
	INV_EV_AUTHED = 1u << 3	   /* RESULT: the backend answered 2xx, so the phone's
				      credentials were good: os_key's incubation clock
				      may start (an unauthenticated client must not be
				      able to start it early with a forged User-Agent) */
};

/* What a worker reports about one request (a fixed-size datagram). */
struct inv_event {
	uint32_t magic;
	uint32_t flags;
	int64_t now; /* unix seconds */
	int32_t cmd;
	int32_t status;
	int32_t access; /* enum policy_access; in INV_EV_RESULT events the access the
			   answer was given under (-1 unknown): a 2xx counts as a success only
			   when the device was allowed */
	int32_t reason; /* enum policy_reason */
	char user[EAS_USER_MAX + 1];
	char device_id[EAS_DEVID_MAX + 1];
	char device_type[EAS_DEVTYPE_MAX + 1];
	char user_agent[256];
	char xmswl[128];
	char protocol[8];
	char rule[64];
	char os_key[96]; /* effective OS (incubation key) */
	char os_family[16];
	struct eas_devinfo di;
};

struct inv_device {
	char user[EAS_USER_MAX + 1];
	char device_id[EAS_DEVID_MAX + 1];
	char device_type[EAS_DEVTYPE_MAX + 1];
	char device_model[256];
	char device_os[256];
	char user_agent[256];
	char friendly_name[256];
	char imei[64];
	char mobile_operator[128];
	char phone_number[64];
	char os_language[64];
	char xmswl[128];
	char protocol[8];
	char last_cmd[24];
	char os_key[96];
	int64_t first_sync, last_attempt, last_success;
	int last_status;
	char access_state[16]; /* Allowed / Blocked / Quarantined */
	char state_reason[24];
	char rule[64];
	int admin_state; /* POLICY_ADMIN_* */
};

struct inv_version {
	char os_key[96];
	char family[16];
	int64_t first_seen; /* first authenticated sighting (incubation clock); 0 = not yet */
	int approved;
	int64_t approved_at;
	int devices;
};

struct inv_filter {
	const char *user;     /* exact, case-insensitive */
	const char *os_glob;  /* glob on DeviceOS (or the effective OS) */
	const char *os_regex; /* PCRE2 on DeviceOS */
	const char *state;    /* Allowed / Blocked / Quarantined */
	const char *device_id;
};

/* Open (creating the schema when writable). NULL with a reason in err. */
struct inventory *inv_open(const char *path, int readonly, char *err, size_t errsz);
void inv_close(struct inventory *inv);

/* Reader API (workers and master). 1 found, 0 not found, -1 error. */
int inv_get_device(struct inventory *inv, const char *user, const char *device_id,
		   struct inv_device *out);
int inv_get_version(struct inventory *inv, const char *os_key, struct inv_version *out);
/* Rules added at run time, in order: cb(text, id). 0 or -1. */
int inv_foreach_rule(struct inventory *inv, void (*cb)(void *arg, int64_t id, const char *text),
		     void *arg);

/* Writer API (master). Calls outside a batch commit on their own. inv_apply():
 * 1 = a DeviceModel/DeviceOS changed (commit now, publish a generation),
 * 0 = applied, -1 = error. */
int inv_batch_begin(struct inventory *inv);
int inv_batch_commit(struct inventory *inv);
int inv_apply(struct inventory *inv, const struct inv_event *ev);
/* 1 changed, 0 no such device, -1 error */
int inv_set_admin_state(struct inventory *inv, const char *user, const char *device_id, int state,
			int64_t now);
int inv_remove_device(struct inventory *inv, const char *user, const char *device_id);
int inv_version_approve(struct inventory *inv, const char *os_key, int approved, int64_t now);
int64_t inv_rule_add(struct inventory *inv, const char *text, int64_t now); /* id or -1 */
int inv_rule_remove(struct inventory *inv, int64_t id); /* 1 removed, 0 none, -1 error */

/* A filter compiled once, for rows from elsewhere too (the sightings).
 * NULL with *bad_regex set when os_regex does not compile (or no memory). */
struct inv_match;
struct inv_match *inv_match_new(const struct inv_filter *f, int *bad_regex);
int inv_match(const struct inv_match *m, const struct inv_device *d);
void inv_match_free(struct inv_match *m);
/* "Allowed", "Blocked", "Quarantined" for an enum policy_access. */
const char *inv_access_state_name(int access);

/* Iterate devices matching f (NULL = all), ordered by user, device; -2 when
 * os_regex does not compile. */
int inv_foreach_device(struct inventory *inv, const struct inv_filter *f,
		       int (*cb)(void *arg, const struct inv_device *d), void *arg);
int inv_foreach_version(struct inventory *inv, int (*cb)(void *arg, const struct inv_version *v),
			void *arg);
/*
 * The audit trail: one row per change made through the command layer
 * (easctl or the console). Append-only (the schema's triggers refuse UPDATE
 * and DELETE). Texts are as the command wrote them; none is a credential.
 */
struct inv_audit {
	int64_t id;
	int64_t at;	  /* unix seconds */
	char who[96];	  /* "console:alice", "easctl:uid=0" */
	char source[64];  /* console: client address; easctl: "pid N" */
	char what[256];	  /* "device approve ApplXYZ (alice)" */
	char before[512]; /* state before ("" when not applicable) */
	char after[512];  /* state after */
};
int64_t inv_audit_add(struct inventory *inv, const struct inv_audit *a); /* id or -1 */
/* Newest first, ids below below_id (<= 0: from the newest), at most limit. */
int inv_foreach_audit(struct inventory *inv, int64_t below_id, int limit,
		      int (*cb)(void *arg, const struct inv_audit *a), void *arg);

/*
 * Scan devices in bounded pages (keyset paging on (user, DeviceId)), so a
 * large inventory is walked a page per loop pass: start with a zeroed cursor;
 * each call reads at most limit rows after the cursor and passes those that
 * match f to cb (non-zero from cb stops the scan). Returns rows read (0 at
 * the end; cur->done is set once nothing is left), -2 for a bad os_regex,
 * -1 out of memory.
 */
struct inv_cursor {
	char user[EAS_USER_MAX + 1];
	char device_id[EAS_DEVID_MAX + 1];
	int done;
};
int inv_devices_page(struct inventory *inv, struct inv_cursor *cur, int limit,
		     const struct inv_filter *f, int (*cb)(void *arg, const struct inv_device *d),
		     void *arg);
/* Devices with this DeviceId (any user; indexed), at most limit. Returns how many. */
int inv_find_device_id(struct inventory *inv, const char *device_id, int limit,
		       int (*cb)(void *arg, const struct inv_device *d), void *arg);

/* Count devices by (OS family, access state) for metrics. */
int inv_count_by_family_state(struct inventory *inv,
			      void (*cb)(void *arg, const char *family, const char *state, long n),
			      void *arg);

#endif
