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
 *
 * In a farm (store.h) this file is the node's snapshot of the shared state:
 * the workers read it exactly as they do alone, the master merges what the
 * database says into it (inv_merge_*, field group by field group, the
 * newest winning, so a row pulled from the database never undoes news this
 * node has not pushed yet) and applies its own events to it at once.
 * Schema versions: inventory_schema.h.
 */
#ifndef EG_INVENTORY_H
#define EG_INVENTORY_H

#include <stdint.h>

#include "eas.h"
#include "inventory_schema.h"

struct inventory;

#define INV_EVENT_MAGIC 0x45474956u /* "EGIV" */

enum inv_event_flags {
	INV_EV_DEVINFO = 1u << 0,  /* di holds DeviceInformation from this request */
	INV_EV_RESULT = 1u << 1,   /* status is the answer's HTTP status */
	INV_EV_DECISION = 1u << 2, /* access/reason/rule are set */
	INV_EV_AUTHED = 1u << 3,   /* RESULT: the backend answered 2xx, so the phone's
				      credentials were good: os_key's incubation clock
				      may start (an unauthenticated client must not be
				      able to start it early with a forged User-Agent) */
	INV_EV_LOOP = 1u << 4	   /* the throttle quarantined the device for looping
				      (loop_cmd, loop_s): every node of a farm
				      quarantines it until now + loop_s */
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
	int32_t loop_cmd; /* INV_EV_LOOP: enum eas_cmd that looped */
	int32_t loop_s;	  /* INV_EV_LOOP: seconds of quarantine left */
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
	char os_family[16];
	char last_node[64]; /* the farm node that saw it last */
	/* When each group of fields was last set (unix s): the newest wins
	 * when rows from several nodes meet (inv_merge_device). */
	int64_t admin_at, devinfo_at, decided_at, result_at;
	/* A loop quarantine (possibly imposed by another node): until when,
	 * for which command (-1 none), set when. */
	int64_t loop_until, loop_at;
	int loop_cmd;
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

/* Open (creating or migrating the schema when writable). NULL with a reason in err. */
struct inventory *inv_open(const char *path, int readonly, char *err, size_t errsz);
void inv_close(struct inventory *inv);
/* The name of this node, recorded as last_node by inv_apply (writer). */
void inv_set_node(struct inventory *inv, const char *node);
/* The SQLite handle, for the journal that lives in the same file (journal.h). */
sqlite3 *inv_sqlite(struct inventory *inv);
/* Schema version of the open file (inventory_schema.h). */
int inv_version_of(struct inventory *inv);

/* Reader API (workers and master). 1 found, 0 not found, -1 error. */
int inv_get_device(struct inventory *inv, const char *user, const char *device_id,
		   struct inv_device *out);
int inv_get_version(struct inventory *inv, const char *os_key, struct inv_version *out);
/* Rules added at run time, in order: cb(text, id). 0 or -1. */
int inv_foreach_rule(struct inventory *inv, void (*cb)(void *arg, int64_t id, const char *text),
		     void *arg);

/* Writer API (master). Calls outside a batch commit on their own. inv_apply():
 * 1 = a DeviceModel/DeviceOS changed or a loop quarantine started (commit
 * now, publish a generation), 0 = applied, -1 = error. */
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
/* End a device's loop quarantine (easctl throttle forgive). 1, 0 none, -1. */
int inv_loop_clear(struct inventory *inv, const char *user, const char *device_id, int64_t now);

/* Personal lists added at run time ("blocked"/"allowed": "DeviceId" or
 * "user:DeviceId"). add: 1 added, 0 already there; remove: 1, 0 none; -1 error. */
int inv_list_add(struct inventory *inv, const char *list, const char *entry, int64_t now);
int inv_list_remove(struct inventory *inv, const char *list, const char *entry);
int inv_foreach_list(struct inventory *inv,
		     void (*cb)(void *arg, const char *list, const char *entry), void *arg);

/*
 * Rows from elsewhere (the farm database), merged into this snapshot. A
 * device merges field group by field group (identity by last_attempt,
 * DeviceInformation by devinfo_at, decision by decided_at, result by
 * result_at, admin state by admin_at, loop quarantine by loop_at; first
 * sync the earliest, last success the latest): the newer group wins, a tie
 * takes the incoming one. Returns 1 when something a decision reads changed
 * (admin state, model, OS, loop quarantine), 0 otherwise, -1 on error.
 */
int inv_merge_device(struct inventory *inv, const struct inv_device *d);
/* An OS version: the earliest first_seen, approval by approved_at. 1/0/-1 as above. */
int inv_merge_version(struct inventory *inv, const struct inv_version *v);
/* Replace all runtime rules / list entries with these (n may be 0): 1 if they
 * differ from what was there, 0 same, -1 error. */
struct inv_rule_row {
	int64_t id, created;
	const char *text;
};
int inv_rules_replace(struct inventory *inv, const struct inv_rule_row *rows, size_t n);
struct inv_list_row {
	const char *list, *entry;
	int64_t created;
};
int inv_lists_replace(struct inventory *inv, const struct inv_list_row *rows, size_t n);

/* Node heartbeats (easctl nodes). put: newer heartbeat_at wins. */
struct inv_node {
	char name[64];
	char version[64];
	char store[16]; /* "sqlite", "postgresql" */
	int64_t config_gen, policy_gen, started_at, heartbeat_at, requests_total, journal;
	double requests_per_s;
};
int inv_node_put(struct inventory *inv, const struct inv_node *n);
int inv_foreach_node(struct inventory *inv, void (*cb)(void *arg, const struct inv_node *n),
		     void *arg);

/* Small key/value facts about this file (farm sync position, ids). get:
 * 1 found, 0 not. */
int inv_meta_get(struct inventory *inv, const char *k, char *v, size_t vsz);
int inv_meta_set(struct inventory *inv, const char *k, const char *v);

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
	char node[64];	  /* the node it was made on (node_name; "" in rows before the farm) */
	int64_t farm_id;  /* the farm database's id of the row; 0 = this file's own */
};
int64_t inv_audit_add(struct inventory *inv, const struct inv_audit *a); /* id or -1 */
/* A row pulled from the farm (farm_id set): 1 added, 0 already here, -1 error. */
int inv_audit_put(struct inventory *inv, const struct inv_audit *a);
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
