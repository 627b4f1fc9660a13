/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * throttle.h - per-device budgets, loop detection and escalation (issue #6).
 *
 * DESIGN NOTE
 *
 * What it does. For every EAS request that names a device, the gateway asks
 * throttle_check() whether to let it through; when the answer is sent it
 * calls throttle_done(). In the spirit of Exchange's EAS throttling policy:
 *
 *  - Budget: a token bucket per device. A request costs one token (cost > 1
 *    possible). The bucket holds up to `burst` tokens and recharges `rate`
 *    tokens per second. When it is empty the request is refused with 503 +
 *    Retry-After (time until one token is back) + X-MS-ASThrottle. Refused
 *    requests still cost a token, so a client that ignores Retry-After
 *    digs the balance below zero; at -`cutoff` it is cut off for
 *    `cooldown` seconds (everything 503, Retry-After = time left).
 *  - Concurrency: at most `max_concurrent` requests of one device in flight
 *    (a hanging Ping counts); more get 503 (Exchange: EasMaxConcurrency,
 *    default 10 per user, reference 4.5).
 *  - Devices per user: the (N+1)th distinct DeviceId of one user gets EAS
 *    status 177 MaximumDevicesReached (Exchange: EasMaxDevices, default
 *    100). Only an authenticated device counts (see Claimed identities):
 *    from its first backend 2xx (throttle_authenticated) or when the caller
 *    knows it authenticated before (throttle_req.authed: it has an
 *    inventory row), while it is in the device table; it stops counting
 *    when its slot is reused, which happens first to devices idle for more
 *    than device_idle (see Memory). A device that has not authenticated is
 *    refused with 177 when the authenticated ones already fill the user's
 *    places, and takes none itself. OPTIONS is always answered and takes no
 *    place.
 *  - Loops: the same device sending the same command with the same body (the
 *    caller's 64-bit fingerprint: a body hash, or a hash of the item ids)
 *    `threshold` times within `window` seconds, the earlier ones answered
 *    2xx, is a loop. Counting is a sliding window (two sub-windows of
 *    `window` s, the older one weighted by how much of it still overlaps)
 *    over three candidate (command, fingerprint) pairs per device, ranked
 *    by count / threshold; the first is only displaced by another one
 *    overtaking it. A pair seen for the first time in a sub-window only
 *    sets a bit in a 32-bit "doorkeeper", so one-off bodies (every Sync has
 *    a new SyncKey) never push a candidate out; seen again, it competes for
 *    the weakest other slot. So a loop interleaved with varying traffic and
 *    with legitimately repeated Pings keeps counting (unit-tested). Counts
 *    never exceed what was seen, so nothing is called a loop before
 *    `threshold` identical requests; a loop that starts amid other traffic
 *    is caught at most one request later (its first sighting may only set
 *    the doorkeeper bit).
 *    A request is counted when admitted and un-counted if its answer is not
 *    2xx (throttle_done), so "threshold" means threshold-1 successes plus
 *    the request that would make it threshold: that request is refused.
 *
 * Claimed identities. The user name is a claim until a backend accepts the
 * credentials (the gateway does not authenticate). Nothing a client that
 * cannot authenticate sends may use up what belongs to a real device:
 *  - budgets stay per (user, DeviceId): claims with other DeviceIds never
 *    touch a real device's bucket, concurrency or loop counts;
 *  - they take no place among the user's max_devices (above);
 *  - every request of a device that has not authenticated is ALSO charged
 *    to one bucket per user shared by all of that user's unauthenticated
 *    devices (same class numbers; no loop detector, no concurrency): a
 *    client rotating DeviceIds gets a fresh device bucket each time but not
 *    a fresh user bucket, so it is throttled, cut off and, hammering on,
 *    dropped by XDP like one device. Authenticated devices are never
 *    charged to it, so exhausting it cannot touch the user's phones; it
 *    delays only the user's NEW devices while the flood lasts (at most the
 *    cool-down after it ends). A per-user bucket, not per (user, source
 *    address): a phone's address changes and a flood can come from many;
 *    per-source limits are the listener's business;
 *  - in the device table an unauthenticated newcomer never evicts an
 *    authenticated device that is still active (see Memory).
 * What the gateway cannot do is tell two clients apart that present the SAME
 * user and DeviceId before the backend answers (short of storing something
 * derived from the password, which it never does): a client that knows a
 * real device's DeviceId can spend that device's budget. Its DeviceId is
 * the secret that limits this to one device.
 *
 * Escalation, per device (throttle_state):
 *
 *   OK --budget empty--> (503, soft) --balance <= -cutoff--> CUTOFF(cooldown)
 *   OK --loop detected--> LOOP_THROTTLE(loop.throttle s, all 503)
 *        --`hammer` requests during it--> LOOP_QUARANTINE(loop.quarantine s)
 *   A loop detected again within loop.memory s of the end of the device's
 *   previous stage goes straight to LOOP_QUARANTINE. In CUTOFF every request, in LOOP_QUARANTINE
 *   every request of the looping command, is a strike; `hammer` strikes set
 *   the XDP flag: from then until the stage ends every request of the device
 *   gets THROTTLE_XDP_DROP (answer, then drop the connection's flow in the
 *   kernel for ttl_s). Stages expire by themselves (lazily, at the device's
 *   next request); throttle_forgive() ends one at once (easctl).
 *
 * Defaults, and why (throttle_class_defaults()). The 129 real captures
 * (Nine, EAS 16.1) show what clients repeat legitimately: the same Ping body
 * (HeartbeatInterval 240, one folder set) 12 times, the same FolderSync
 * (SyncKey unchanged) 14 times, Provision/Settings bodies 5-10 times,
 * identical Sync bodies at most twice (Sync repeats only when nothing
 * changed: the SyncKey moves on otherwise). Account setup is a dozen
 * requests in a few seconds; an initial sync with WindowSize 5 (as in the
 * captures) is hundreds of back-to-back Syncs, all with different SyncKeys.
 *   burst 300, rate 3/s, cutoff 300, cooldown 60 s: a 400-Sync initial sync
 *     at 5/s passes (300 + 3 x 80 s >= 400); a device above 3 requests/s
 *     for minutes is not a person. 10 Syncs a minute is 1/18 of the rate.
 *   max_concurrent 10: Exchange's per-user default; a phone has a Ping and
 *     one or two other requests open.
 *   max_devices 100: Exchange's EasMaxDevices default.
 *   loop window 60 s, threshold 20: a Sync or FolderSync repeated byte for
 *     byte 20 times in a minute, each answered 200, is a client ignoring
 *     what the server said; pollers repeat every few minutes.
 *   Ping 120: a Ping is *meant* to be repeated with the same body; it comes
 *     back early only when something changed, and the client then Syncs
 *     before pinging again. 120 in a minute (one every 0.5 s) is no longer
 *     push mail even for a mailbox receiving a message a second.
 *   MeetingResponse, SendMail, SmartReply, SmartForward, MoveItems,
 *     Folder{Create,Delete,Update}: 8. A write that succeeded is not
 *     repeated byte for byte; retries after an answer lost on the radio
 *     link are one or two. The iOS 6.1 loop (KB2814847) is this case.
 *   loop.throttle 60 s, quarantine 900 s, memory 3600 s, hammer 10,
 *     xdp_ttl 600 s: a phone that obeys Retry-After sees one minute of 503;
 *     one that sends 10 more requests in that minute is quarantined for a
 *     quarter of an hour (visible, auto-expiring), and if it sends the
 *     looping command 10 more times there, its connections are dropped in
 *     the kernel until the quarantine ends. So a loop reaches the backend at
 *     most threshold-1 times per quarantine period: from ~20 requests a
 *     minute to ~20 per 15 minutes, and at most `threshold + 2 x hammer`
 *     requests after it starts, a looping device is being dropped.
 *
 * Workers. Workers are processes and SO_REUSEPORT spreads one phone's
 * connections over them (and a NAT'd phone reconnects often), so per-worker
 * budgets would either be N times too generous (full rates) or unfair
 * (rates / N, while one kept-alive connection puts all of a phone's traffic
 * on one worker), loop counts would be split N ways, and devices-per-user
 * cannot be counted at all. So the state is ONE table in shared memory
 * (mmap MAP_SHARED|MAP_ANONYMOUS) created by the master before it forks:
 * every worker sees exact counts. Each bucket (7 devices) has a spinlock
 * word holding the owner's thread id; critical sections are a few dozen
 * instructions without syscalls, so contention needs two workers on the
 * same bucket at the same instant. A holder that died (worker crash) is
 * detected by kill(tid, 0) == ESRCH and its lock taken over. A waiter
 * spins briefly, then yields and sleeps (a preempted holder needs the CPU);
 * a lock that cannot be had within ~50 ms fails open (request admitted
 * unaccounted, counted in lock_timeouts). The lock is shmlock.h's, shared
 * with the sightings table. The table survives reloads (new workers
 * inherit it); a restart starts empty, which only forgets penalties.
 *
 * Memory. Fixed at throttle_new(), whatever the number of devices: devices
 * (64 bytes each, 7-way set-associative buckets, capacity rounded up to a
 * power-of-two number of buckets), users (16 bytes, for devices-per-user)
 * and offenders (about 1 KiB each: labels and per-command counts of devices
 * that were throttled, looped or refused, for easctl and logs). Defaults:
 * 114,688 devices, 114,688 users, 4,096 offenders = about 14 MiB. When a
 * bucket is full the victim is, in order: an empty slot, a device idle for
 * more than device_idle, the least recently seen device in state OK with
 * nothing in flight, any OK device, then any. A flood of new DeviceIds
 * thus evicts idle devices, never a penalised one unless all 7 of a bucket
 * are; a newcomer that has not authenticated takes only an empty, idle or
 * unauthenticated slot (authenticated ones are never its victims unless
 * idle), and if there is none it is not tracked (admitted on its user's
 * unauthenticated budget alone, counted in unauth_untracked). Evicting a
 * device forgets its budget (fail open). Per request: one
 * lock, one 512-byte bucket scan, no allocation; the user table is touched
 * only when a device is new (see tools/bench/throttle_bench.c).
 *
 * Time is the caller's CLOCK_MONOTONIC in milliseconds (throttle_now_ms()).
 * Durations are bounded (window <= 1 h, stages <= 1 day) so 32-bit
 * millisecond stamps never wrap inside one stage; a device idle for a day
 * restarts with a full bucket.
 *
 * Wiring (the gateway): the master creates the table with throttle_new()
 * before forking and hands the pointer to every worker; per request with a
 * DeviceId, after the access decision: cls = throttle_classify(), then
 * throttle_check() with the body's throttle_fingerprint() (bodies up to
 * limits.inspect_body; 0 for bigger ones or none), answer per the action,
 * and throttle_done(&ticket, status) when the request ends, including when
 * the client goes away. The master serves easctl from throttle_foreach()
 * and metrics from throttle_stats_read().
 *
 * Identities: keys are SipHash-2-4 with a secret kept in the shared table
 * (throttle_device_key / throttle_user_key), so every worker derives the
 * same key; labels (DeviceId, user, OS, User-Agent) are copied only into
 * offender records, which exist to be shown to the admin.
 */
#ifndef EG_THROTTLE_H
#define EG_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

#include "eas_cmd.h"
#include "throttle_types.h"

struct policy_input;

/* What the gateway does with the request. */
enum throttle_action {
	THROTTLE_OK = 0,	      /* forward; call throttle_done() with the answer */
	THROTTLE_THROTTLE = 1,	      /* 503 + Retry-After + X-MS-ASThrottle */
	THROTTLE_MAX_DEVICES = 2,     /* EAS status 177 (bare 403 before EAS 14.1) */
	THROTTLE_LOOP_QUARANTINE = 3, /* answer as a quarantined device (reason "loop") */
	THROTTLE_XDP_DROP = 4,	      /* answer as THROTTLE, then drop this flow in XDP */
};

/* Why. */
enum throttle_reason {
	THROTTLE_R_NONE = 0,
	THROTTLE_R_BUDGET = 1,	    /* bucket empty */
	THROTTLE_R_CUTOFF = 2,	    /* cut off for the cool-down */
	THROTTLE_R_CONCURRENCY = 3, /* too many requests in flight */
	THROTTLE_R_MAX_DEVICES = 4, /* user already has max_devices devices */
	THROTTLE_R_LOOP = 5,	    /* loop detected / loop stage */
	THROTTLE_R_LOCK = 6,	    /* table busy: admitted unaccounted (fail open) */
	THROTTLE_R__COUNT
};

/* Escalations: each is reported once, on the request that caused it. */
enum throttle_event {
	THROTTLE_EV_NONE = 0,
	THROTTLE_EV_THROTTLED = 1,   /* budget ran out (first refusal after an admit) */
	THROTTLE_EV_CUTOFF = 2,	     /* balance reached -cutoff: cool-down starts */
	THROTTLE_EV_LOOP = 3,	     /* loop detected: LOOP_THROTTLE starts */
	THROTTLE_EV_QUARANTINE = 4,  /* LOOP_QUARANTINE starts */
	THROTTLE_EV_XDP = 5,	     /* hammering during a stage: kernel drop */
	THROTTLE_EV_MAX_DEVICES = 6, /* a user's (N+1)th device refused */
	THROTTLE_EV__COUNT
};

/* A device's stage. */
enum throttle_state {
	THROTTLE_S_OK = 0,
	THROTTLE_S_CUTOFF = 1,
	THROTTLE_S_LOOP_THROTTLE = 2,
	THROTTLE_S_LOOP_QUARANTINE = 3,
	THROTTLE_S__COUNT
};

/* One request, as throttle_check() needs it. Strings are borrowed and read
 * only when the device becomes (or is) an offender; NULL = unknown. */
struct throttle_req {
	uint64_t device_key;  /* throttle_device_key(); never 0 */
	uint64_t user_key;    /* throttle_user_key() */
	int cls;	      /* class index (throttle_classify()); out of range = 0 */
	int cmd;	      /* enum eas_cmd */
	uint64_t fingerprint; /* body hash / item ids; 0 = not loop-checked */
	unsigned cost;	      /* tokens; 0 = 1 */
	int authed;	      /* the device authenticated before (an inventory row, or
				 a success another worker saw): counted for max_devices,
				 spared the unauthenticated budget. 0: charged to it
				 too, even if this table knows better (the caller's
				 word is taken, so a refused claim costs one lookup) */
	const char *device_id;
	const char *user;
	const char *device_os;
	const char *user_agent;
};

/* What throttle_done() needs; part of the verdict, keep it with the request. */
struct throttle_ticket {
	uint64_t device_key;
	uint64_t user_key;
	uint32_t fp;	  /* folded (command, fingerprint) counted; 0 = none */
	uint8_t admitted; /* counted in flight */
};

struct throttle_verdict {
	enum throttle_action action;
	enum throttle_reason reason;
	enum throttle_event event; /* THROTTLE_EV_NONE unless this request escalated */
	enum throttle_state state; /* the device's stage after this request */
	uint32_t retry_after_s;	   /* THROTTLE/XDP_DROP: Retry-After; others: 0 */
	uint32_t remaining_s;	   /* time left in the stage (0 if none) */
	uint32_t ttl_s;		   /* XDP_DROP: kernel flow verdict lifetime */
	int eas_status;		   /* MAX_DEVICES: 177 */
	int loop_cmd;		   /* command that looped (loop stages), else -1 */
	int cls;		   /* class used */
	const char *asthrottle;	   /* X-MS-ASThrottle value ("" when none); static */
	const char *text;	   /* one-line reason for logs; static */
	struct throttle_ticket ticket;
};

struct throttle;

/* Fill c with the defaults of the design note, named `name`. */
void throttle_class_defaults(struct throttle_class *c, const char *name);
/* 0, or -EINVAL with a message ("loop.window: must be 1..3600 s"). The
 * selector is checked by compiling it (policy_rule_parse). */
int throttle_class_check(const struct throttle_class *c, char *err, size_t errsz);
/* Set a per-command loop threshold by command name ("MeetingResponse");
 * threshold 0 = detector off for it. 0, or -EINVAL (unknown command, 1, > 255). */
int throttle_class_set_loop_cmd(struct throttle_class *c, const char *cmd, unsigned threshold);
/* Effective loop threshold of cmd in c (0 = not checked). */
unsigned throttle_class_loop_threshold(const struct throttle_class *c, int cmd);

void throttle_config_defaults(struct throttle_config *c);

/*
 * Create the shared table (before forking the workers: children inherit it)
 * and this process's view with classes cls[0..n) (n >= 1; cls[0] is the
 * fallback class). NULL with the reason in err.
 */
struct throttle *throttle_new(const struct throttle_config *c, const struct throttle_class *cls,
			      size_t ncls, char *err, size_t errsz);
/* Unmap this process's view and free its classes. Children that inherited
 * the mapping keep theirs (the table lives until the last one unmaps it).
 * NULL is a no-op. */
void throttle_free(struct throttle *t);

/*
 * Replace this process's classes (reload). The shared state is kept; each
 * device's counters are read with the class of its next request. 0, or
 * -EINVAL with the reason in err (the previous classes stay).
 */
int throttle_set_classes(struct throttle *t, const struct throttle_class *cls, size_t ncls,
			 char *err, size_t errsz);
size_t throttle_class_count(const struct throttle *t);
const struct throttle_class *throttle_class_at(const struct throttle *t, size_t i);
/* Index of the class named name, or -1. */
int throttle_class_find(const struct throttle *t, const char *name);

/*
 * The class of a request: the first class (from 1 on) whose selector
 * matches, in the access-rule precedence (policy_precedence_doc: command
 * scoped first, then DeviceId, User, UserAgent, DeviceOS, DeviceModel,
 * DeviceType, XMSWL; config order within one), else 0. Pass the same
 * policy_input the access decision used (it carries the effective OS).
 * admin_state and os_* fields are ignored. Cost: one policy_decide over
 * the selectors.
 */
int throttle_classify(const struct throttle *t, const struct policy_input *in);

/* Keys, with the table's secret (the same in every worker). user is folded
 * to lower case (Exchange user names are case-insensitive); device_id too. */
uint64_t throttle_user_key(const struct throttle *t, const char *user);
uint64_t throttle_device_key(const struct throttle *t, const char *user, const char *device_id);
/* The key of a user's shared budget for unauthenticated devices (see Claimed
 * identities), for throttle_forgive(); easctl and logs show it with the
 * DeviceId label THROTTLE_UNAUTH_LABEL. */
uint64_t throttle_unauth_key(const struct throttle *t, uint64_t user_key);
#define THROTTLE_UNAUTH_LABEL "(unauthenticated)"
/* A fingerprint of n bytes (never 0). */
uint64_t throttle_fingerprint(const struct throttle *t, const void *data, size_t n);

/* CLOCK_MONOTONIC in milliseconds: the clock every call below expects. */
uint64_t throttle_now_ms(void);

/*
 * Decide one request (see the design note). Never fails; fills *v and
 * returns v->action. For THROTTLE_OK, call throttle_done(&v->ticket) once
 * the answer is known or the request was abandoned; for the other actions
 * calling it is allowed and does nothing.
 */
enum throttle_action throttle_check(struct throttle *t, const struct throttle_req *rq,
				    uint64_t now_ms, struct throttle_verdict *v);

/*
 * The request of ticket tk ended with http_status (0 = aborted, no answer).
 * Releases its in-flight slot; a non-2xx answer un-counts it for the loop
 * detector. Call exactly once per admitted request.
 */
void throttle_done(struct throttle *t, const struct throttle_ticket *tk, int http_status,
		   uint64_t now_ms);

/*
 * A backend accepted the credentials of this device (a 2xx answer to one of
 * its requests): from now on it counts for its user's max_devices and is
 * no longer charged to the user's unauthenticated budget. 1 newly counted,
 * 0 already, -ENOENT not in the table (it will be counted on its next
 * request, when the caller passes throttle_req.authed), -EBUSY.
 */
int throttle_authenticated(struct throttle *t, uint64_t device_key, uint64_t user_key,
			   uint64_t now_ms);

/*
 * End a device's stage now (admin approval, `easctl throttle forgive`):
 * state OK, XDP flag and loop counts cleared, bucket full. The kernel flow
 * verdicts already written stay until their TTL (bpfmaps_flow_del to lift
 * them earlier). 0, or -ENOENT if the device is not in the table.
 */
int throttle_forgive(struct throttle *t, uint64_t device_key, uint64_t now_ms);

/* An offender as shown by easctl. */
struct throttle_info {
	uint64_t device_key, user_key;
	char device_id[40];
	char user[72];
	char device_os[64];
	char user_agent[96];
	int cls;		   /* class index at the last event */
	enum throttle_state state; /* live stage (OK once expired) */
	int xdp;		   /* stage escalated to kernel drop */
	int in_table;		   /* device still in the device table */
	uint32_t remaining_s;	   /* time left in the stage */
	uint32_t budget_wait_s;	   /* no stage: until its budget admits a request (0 = now) */
	int loop_cmd;		   /* -1 if it never looped */
	enum throttle_event last_event;
	uint64_t first_ms, last_ms; /* first and last event (throttle_now_ms clock) */
	uint32_t events[THROTTLE_EV__COUNT];
	uint32_t seen[THROTTLE_NCMD];	 /* requests per command since its first event */
	uint32_t refused[THROTTLE_NCMD]; /* of which refused (503/177/quarantine/drop) */
};

#define THROTTLE_F_ACTIVE 1u /* only devices whose stage is still running */

/*
 * Call fn for every offender record (flags THROTTLE_F_ACTIVE: only those in
 * a running stage or with a refusal within the last minute), in table
 * order. Safe from any process (the master, for easctl) while workers run:
 * each record is copied consistently. fn returning non-zero stops the walk.
 * Returns how many records were passed to fn.
 */
int throttle_foreach(struct throttle *t, unsigned flags, uint64_t now_ms,
		     int (*fn)(void *arg, const struct throttle_info *d), void *arg);

/* Counters for metrics (monotonic since the table was created, all workers). */
struct throttle_stats {
	uint64_t refused[THROTTLE_R__COUNT];  /* requests not admitted, by reason */
	uint64_t events[THROTTLE_EV__COUNT];  /* escalations */
	uint64_t loops_by_cmd[THROTTLE_NCMD]; /* loop detections per command */
	uint64_t device_evictions;	      /* live devices pushed out by new ones */
	uint64_t device_expired;	      /* idle devices reused */
	uint64_t user_evictions;	      /* users with devices pushed out (177 fails open) */
	uint64_t offender_evictions;
	uint64_t lock_timeouts; /* requests admitted unaccounted (table busy) */
	uint64_t devices;	/* gauge: devices in the table */
	uint64_t device_capacity;
	uint64_t users;	   /* gauge */
	uint64_t inflight; /* gauge: admitted requests not yet done (0 when idle) */
	uint64_t user_capacity;
	uint64_t offender_capacity;
	uint64_t memory_bytes;	   /* size of the shared table */
	uint64_t unauth_untracked; /* unauthenticated devices (or user buckets) that
				      found no slot: admitted on their user's budget */
};
void throttle_stats_read(const struct throttle *t, struct throttle_stats *s);

const char *throttle_action_name(int a); /* "ok", "throttle", "max_devices", ... */
const char *throttle_reason_name(int r); /* "budget", "cutoff", ... */
const char *throttle_event_name(int e);	 /* "throttled", "cutoff", "loop", ... */
const char *throttle_state_name(int s);	 /* "ok", "cutoff", "loop_throttle", ... */

#endif
