/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * throttle.c - see throttle.h (the design note is there).
 *
 * Layout of the shared mapping, created once by throttle_new():
 *
 *   struct thdr          4 KiB: sizes, hash secret, counters
 *   dev buckets          512 B each: lock word + 7 x struct tdev (64 B)
 *   user buckets         128 B each: lock word + 7 x struct tuser (16 B)
 *   offender buckets     lock word + 4 x struct toff
 *
 * Lock order: device bucket, then user bucket or offender bucket; never
 * the other way round, and never two buckets of one table at once.
 * Counters in the header are updated with relaxed atomics (only refusals
 * and escalations touch them: admitted requests write nothing shared but
 * their own bucket).
 */
#include "throttle.h"
#include "policy.h"
#include "shmlock.h"
#include "siphash.h"

#include <errno.h>
#include <math.h> /* isfinite: a macro, no libm */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define DEV_WAYS  7
#define USER_WAYS 7
#define OFF_WAYS  4

#define THDR_MAGIC UINT64_C(0x65675f7468726f74) /* "eg_throt" */

/* A device idle longer than this restarts fresh: every 32-bit millisecond
 * stamp in its slot is then meaningless (stages and windows are shorter). */
#define STALE_S 86400u
/* How long an offender counts as "active" after its last refusal. */
#define ACTIVE_RECENT_MS 60000u

/* TD_F_LOOPED: a loop stage happened (loop.memory counts from its end).
 * TD_F_AUTHED: a backend accepted this device's credentials; only such a
 * device is counted in its user's ndev (and released when it leaves). */
enum { TD_F_XDP = 1, TD_F_OFFENDER = 2, TD_F_SOFT = 4, TD_F_LOOPED = 8, TD_F_AUTHED = 16 };

#define NCAND 3

/* One device: exactly one cache line. Times are 32-bit milliseconds of
 * the caller's monotonic clock (compare with signed differences). */
struct tdev {
	uint64_t key; /* 0 = empty */
	uint64_t user;
	uint32_t seen_s;    /* last request, seconds (eviction, idleness) */
	uint32_t refill_ms; /* bucket last recharged up to here */
	int32_t balance;    /* milli-tokens */
	uint32_t until_ms;  /* end of the current stage */
	uint32_t lwin_ms;   /* start of the current loop sub-window */
	uint32_t dk;	    /* doorkeeper: one hashed bit per fingerprint seen once in
			     * the current sub-window and not (yet) a candidate */
	/* loop candidates, [0] the one closest to its threshold: (command,
	 * fingerprint) folded into 32 bits with the command in the low 6 bits
	 * (0 = empty); successes in the current and previous sub-window */
	uint32_t cfp[NCAND];
	uint8_t ccur[NCAND];
	uint8_t cprev[NCAND];
	uint8_t level; /* enum throttle_state */
	uint8_t cls;
	uint8_t inflight;
	uint8_t strikes;
	uint8_t flags; /* TD_F_* */
	uint8_t loop_cmd;
};
_Static_assert(sizeof(struct tdev) == 64, "struct tdev is one cache line");

struct tdev_bucket {
	uint32_t lock; /* owner's thread id, 0 = free */
	uint32_t pad[15];
	struct tdev d[DEV_WAYS];
};
_Static_assert(sizeof(struct tdev_bucket) == 512, "device bucket size");

struct tuser {
	uint64_t key; /* 0 = empty */
	uint32_t ndev;
	uint32_t seen_s;
};

struct tuser_bucket {
	uint32_t lock;
	uint32_t pad;
	struct tuser u[USER_WAYS];
	uint8_t pad2[8];
};
_Static_assert(sizeof(struct tuser_bucket) == 128, "user bucket size");

/* An offender record. Labels are written under seq (odd while written);
 * counters are atomic adds, read without a lock (display only). */
struct toff {
	uint32_t seq;
	uint8_t cls;
	uint8_t loop_cmd; /* 0xff = never looped */
	uint8_t last_event;
	uint8_t pad;
	uint64_t key; /* 0 = empty */
	uint64_t user;
	uint64_t first_ms, last_ms, refused_ms;
	char device_id[40];
	char user_s[72];
	char os[64];
	char ua[96];
	uint32_t events[THROTTLE_EV__COUNT];
	uint32_t seen[THROTTLE_NCMD];
	uint32_t refused[THROTTLE_NCMD];
};

struct toff_bucket {
	uint32_t lock;
	uint32_t pad[15];
	struct toff o[OFF_WAYS];
};

struct thdr {
	uint64_t magic;
	uint64_t map_len;
	uint32_t dev_mask, user_mask, off_mask; /* bucket counts - 1 */
	uint32_t idle_s, maxreq_s;
	uint32_t pad;
	struct siphash_key secret;
	uint64_t dev_off, user_off, off_off; /* byte offsets of the arrays */
	/* counters (relaxed atomics) */
	uint64_t refused[THROTTLE_R__COUNT];
	uint64_t events[THROTTLE_EV__COUNT];
	uint64_t loops_by_cmd[THROTTLE_NCMD];
	uint64_t dev_evict, dev_expired, user_evict, off_evict, lock_timeouts;
	uint64_t devices, users;
	uint64_t unauth_untracked;
	uint64_t inflight; /* sum of every device's inflight, kept where it changes */
};
_Static_assert(sizeof(struct thdr) <= 4096, "header fits its page");

/* A class in the units the hot path uses. */
struct crt {
	int32_t burst_m;  /* milli-tokens; 0 = no budget */
	uint32_t rate_m;  /* milli-tokens per second */
	int32_t cutoff_m; /* balance at which the cool-down starts (<= 0) */
	uint32_t cooldown_ms;
	uint32_t max_conc, max_dev;
	uint32_t window_ms;
	uint32_t throttle_ms, quarantine_ms, memory_ms;
	uint32_t hammer;
	uint32_t xdp_ttl_s;
	uint8_t thr[THROTTLE_NCMD]; /* effective loop threshold per command, 0 = off */
};

struct throttle {
	struct thdr *h; /* shared mapping (owned: unmapped by throttle_free) */
	struct tdev_bucket *dev;
	struct tuser_bucket *usr;
	struct toff_bucket *off;
	/* this process's classes (owned) */
	struct throttle_class *cls;
	struct crt *rt;
	size_t ncls;
	struct policy *sel; /* class selectors, NULL if none (owned) */
	int *sel_cls;	    /* selector rule index -> class index (owned) */
};

/* ---- names ---------------------------------------------------------------- */

static const char *const action_names[] = {"ok", "throttle", "max_devices", "loop_quarantine",
					   "xdp_drop"};
static const char *const reason_names[THROTTLE_R__COUNT] = {
    "none", "budget", "cutoff", "concurrency", "max_devices", "loop", "lock"};
static const char *const event_names[THROTTLE_EV__COUNT] = {
    "none", "throttled", "cutoff", "loop", "quarantine", "xdp", "max_devices"};
static const char *const state_names[THROTTLE_S__COUNT] = {"ok", "cutoff", "loop_throttle",
							   "loop_quarantine"};

#define NAME_OF(tab, i) ((i) >= 0 && (size_t)(i) < sizeof(tab) / sizeof((tab)[0]) ? (tab)[i] : "?")

const char *throttle_action_name(int a)
{
	return NAME_OF(action_names, a);
}
const char *throttle_reason_name(int r)
{
	return NAME_OF(reason_names, r);
}
const char *throttle_event_name(int e)
{
	return NAME_OF(event_names, e);
}
const char *throttle_state_name(int s)
{
	return NAME_OF(state_names, s);
}

/* ---- classes ---------------------------------------------------------------- */

static const int write_cmds[] = {
    EAS_CMD_MEETINGRESPONSE, EAS_CMD_SENDMAIL,	   EAS_CMD_SMARTREPLY,	 EAS_CMD_SMARTFORWARD,
    EAS_CMD_MOVEITEMS,	     EAS_CMD_FOLDERCREATE, EAS_CMD_FOLDERDELETE, EAS_CMD_FOLDERUPDATE,
};

void throttle_class_defaults(struct throttle_class *c, const char *name)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name ? name : "default");
	c->burst = 300;
	c->rate = 3;
	c->cutoff = 300;
	c->cooldown = 60;
	c->max_concurrent = 10;
	c->max_devices = 100;
	c->loop.window = 60;
	c->loop.threshold = 20;
	c->loop.cmd[EAS_CMD_PING] = 120;
	for (size_t i = 0; i < sizeof(write_cmds) / sizeof(write_cmds[0]); i++)
		c->loop.cmd[write_cmds[i]] = 8;
	/* OPTIONS carries no body; nothing to fingerprint. */
	c->loop.cmd[EAS_CMD_OPTIONS] = THROTTLE_LOOP_OFF;
	c->loop.throttle = 60;
	c->loop.quarantine = 900;
	c->loop.memory = 3600;
	c->hammer = 10;
	c->xdp_ttl = 600;
}

void throttle_config_defaults(struct throttle_config *c)
{
	memset(c, 0, sizeof(*c));
	c->devices = 100000;
	c->users = 100000;
	c->offenders = 4096;
	c->device_idle = 30 * 86400.0;
	c->max_request = 3660;
}

unsigned throttle_class_loop_threshold(const struct throttle_class *c, int cmd)
{
	if (cmd < 0 || cmd >= THROTTLE_NCMD)
		cmd = EAS_CMD_UNKNOWN;
	unsigned v = c->loop.cmd[cmd];
	if (v == THROTTLE_LOOP_OFF)
		return 0;
	return v ? v : c->loop.threshold;
}

int throttle_class_set_loop_cmd(struct throttle_class *c, const char *cmd, unsigned threshold)
{
	int k = eas_cmd_parse(cmd, strlen(cmd));
	if (k == EAS_CMD_UNKNOWN && strcasecmp(cmd, "Unknown") != 0)
		return -EINVAL;
	if (threshold == 1 || threshold > THROTTLE_THRESHOLD_MAX)
		return -EINVAL;
	c->loop.cmd[k] = threshold ? (uint16_t)threshold : THROTTLE_LOOP_OFF;
	return 0;
}

static int range(double v, double lo, double hi)
{
	return isfinite(v) && v >= lo && v <= hi;
}

/* Compile "allow <match>" into r (also used to check a selector). */
static int selector_rule(const char *match, struct policy_rule *r, char *err, size_t errsz)
{
	char text[THROTTLE_MATCH_MAX + 16];
	snprintf(text, sizeof(text), "allow %s", match);
	char e[256];
	if (policy_rule_parse(text, r, e, sizeof(e)) < 0) {
		snprintf(err, errsz, "match: %s (the text after \"allow \")", e);
		return -EINVAL;
	}
	return 0;
}

int throttle_class_check(const struct throttle_class *c, char *err, size_t errsz)
{
#define BAD(...)                                                                                   \
	do {                                                                                       \
		snprintf(err, errsz, __VA_ARGS__);                                                 \
		return -EINVAL;                                                                    \
	} while (0)
	if (!c->name[0] || memchr(c->name, 0, sizeof(c->name)) == NULL)
		BAD("name: must be 1..%d characters", THROTTLE_NAME_MAX - 1);
	if (memchr(c->match, 0, sizeof(c->match)) == NULL)
		BAD("match: longer than %d characters", THROTTLE_MATCH_MAX - 1);
	if (!range(c->burst, 0, 1e6))
		BAD("burst: must be 0..1000000 requests");
	if (c->burst > 0 && !range(c->rate, 0.001, 1e6))
		BAD("rate: must be 0.001..1000000 requests per second");
	if (!range(c->cutoff, 0, 1e6))
		BAD("cutoff: must be 0..1000000 requests");
	if (c->burst > 0 && !range(c->cooldown, 1, 86400))
		BAD("cooldown: must be 1..86400 s");
	if (c->max_concurrent > 255)
		BAD("max_concurrent: must be 0..255");
	/* a threshold of 1 would refuse every request with a body */
	if (c->loop.threshold == 1 || c->loop.threshold > THROTTLE_THRESHOLD_MAX)
		BAD("loop.threshold: must be 0 (off) or 2..%d", THROTTLE_THRESHOLD_MAX);
	for (int i = 0; i < THROTTLE_NCMD; i++)
		if (c->loop.cmd[i] != THROTTLE_LOOP_OFF &&
		    (c->loop.cmd[i] == 1 || c->loop.cmd[i] > THROTTLE_THRESHOLD_MAX))
			BAD("loop.commands.%s: must be 0 (off) or 2..%d", eas_cmd_name(i),
			    THROTTLE_THRESHOLD_MAX);
	if (!range(c->loop.window, 1, 3600))
		BAD("loop.window: must be 1..3600 s");
	if (!range(c->loop.throttle, 1, 86400))
		BAD("loop.throttle: must be 1..86400 s");
	if (!range(c->loop.quarantine, 1, 86400))
		BAD("loop.quarantine: must be 1..86400 s");
	if (!range(c->loop.memory, 0, 86400))
		BAD("loop.memory: must be 0..86400 s");
	if (c->hammer > 255)
		BAD("hammer: must be 0..255");
	if (!range(c->xdp_ttl, 1, 86400))
		BAD("xdp_ttl: must be 1..86400 s");
	if (c->match[0]) {
		struct policy_rule r;
		if (selector_rule(c->match, &r, err, errsz) < 0)
			return -EINVAL;
	}
	return 0;
#undef BAD
}

/* Round to nearest; values are range-checked, and libm stays out of the
 * library's link line. */
static int64_t iround(double v)
{
	return (int64_t)(v < 0 ? v - 0.5 : v + 0.5);
}

static uint32_t ms_of(double s)
{
	return (uint32_t)iround(s * 1000.0);
}

static void class_compile(const struct throttle_class *c, struct crt *r)
{
	memset(r, 0, sizeof(*r));
	r->burst_m = (int32_t)iround(c->burst * 1000.0);
	r->rate_m = (uint32_t)iround(c->rate * 1000.0);
	if (r->burst_m && !r->rate_m)
		r->rate_m = 1;
	r->cutoff_m = -(int32_t)iround(c->cutoff * 1000.0);
	r->cooldown_ms = ms_of(c->cooldown);
	r->max_conc = c->max_concurrent;
	r->max_dev = c->max_devices;
	r->window_ms = ms_of(c->loop.window);
	r->throttle_ms = ms_of(c->loop.throttle);
	r->quarantine_ms = ms_of(c->loop.quarantine);
	r->memory_ms = ms_of(c->loop.memory);
	r->hammer = c->hammer ? c->hammer : 1;
	r->xdp_ttl_s = (uint32_t)iround(c->xdp_ttl);
	for (int i = 0; i < THROTTLE_NCMD; i++)
		r->thr[i] = (uint8_t)throttle_class_loop_threshold(c, i);
}

int throttle_set_classes(struct throttle *t, const struct throttle_class *cls, size_t ncls,
			 char *err, size_t errsz)
{
	char e[320];
	if (ncls < 1 || ncls > THROTTLE_MAX_CLASSES) {
		snprintf(err, errsz, "classes: need 1..%d", THROTTLE_MAX_CLASSES);
		return -EINVAL;
	}
	for (size_t i = 0; i < ncls; i++) {
		if (throttle_class_check(&cls[i], e, sizeof(e)) < 0) {
			snprintf(err, errsz, "class %zu (%.31s): %s", i, cls[i].name, e);
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++)
			if (!strcmp(cls[i].name, cls[j].name)) {
				snprintf(err, errsz, "class %zu: duplicate name \"%s\"", i,
					 cls[i].name);
				return -EINVAL;
			}
	}
	struct throttle_class *nc = calloc(ncls, sizeof(*nc));
	struct crt *nr = calloc(ncls, sizeof(*nr));
	struct policy_rule *rules = calloc(ncls, sizeof(*rules));
	int *map = calloc(ncls, sizeof(*map));
	struct policy *sel = NULL;
	if (!nc || !nr || !rules || !map) {
		snprintf(err, errsz, "out of memory");
		goto fail;
	}
	size_t nrules = 0;
	for (size_t i = 0; i < ncls; i++) {
		nc[i] = cls[i];
		class_compile(&cls[i], &nr[i]);
		/* Class 0 is the fallback: its selector, if any, is ignored. */
		if (i == 0 || !cls[i].match[0])
			continue;
		if (selector_rule(cls[i].match, &rules[nrules], e, sizeof(e)) < 0) {
			snprintf(err, errsz, "class %zu: %s", i, e);
			goto fail;
		}
		snprintf(rules[nrules].name, sizeof(rules[nrules].name), "%s", cls[i].name);
		map[nrules++] = (int)i;
	}
	if (nrules) {
		struct policy_config pc = {
		    .default_access = POLICY_ALLOW, .rules = rules, .n_rules = nrules};
		sel = policy_new(&pc, e, sizeof(e));
		if (!sel) {
			snprintf(err, errsz, "class selectors: %s", e);
			goto fail;
		}
	}
	free(rules);
	free(t->cls);
	free(t->rt);
	free(t->sel_cls);
	policy_free(t->sel);
	t->cls = nc;
	t->rt = nr;
	t->ncls = ncls;
	t->sel = sel;
	t->sel_cls = map;
	return 0;
fail:
	free(nc);
	free(nr);
	free(rules);
	free(map);
	return -EINVAL;
}

size_t throttle_class_count(const struct throttle *t)
{
	return t->ncls;
}

const struct throttle_class *throttle_class_at(const struct throttle *t, size_t i)
{
	return i < t->ncls ? &t->cls[i] : NULL;
}

int throttle_class_find(const struct throttle *t, const char *name)
{
	for (size_t i = 0; i < t->ncls; i++)
		if (!strcmp(t->cls[i].name, name))
			return (int)i;
	return -1;
}

int throttle_classify(const struct throttle *t, const struct policy_input *in)
{
	if (!t->sel)
		return 0;
	struct policy_input x = *in;
	/* Only the rules decide a class: no admin overrides, no incubation. */
	x.admin_state = POLICY_ADMIN_NONE;
	x.os_first_seen = 0;
	x.os_approved = 1;
	struct policy_decision d;
	policy_decide(t->sel, &x, &d);
	if (d.reason != POLICY_R_RULE || d.rule_index < 0)
		return 0;
	return t->sel_cls[d.rule_index];
}

/* ---- lifecycle ---------------------------------------------------------------- */

static uint32_t pow2_buckets(unsigned want, unsigned ways)
{
	uint64_t n = ((uint64_t)want + ways - 1) / ways;
	uint32_t b = 1;
	while (b < n && b < (1u << 28))
		b <<= 1;
	return b;
}

struct throttle *throttle_new(const struct throttle_config *c, const struct throttle_class *cls,
			      size_t ncls, char *err, size_t errsz)
{
	struct throttle_config def;
	if (!c) {
		throttle_config_defaults(&def);
		c = &def;
	}
	if (c->devices < 1 || c->devices > (1u << 30) || c->users < 1 || c->users > (1u << 30) ||
	    c->offenders < 1 || c->offenders > (1u << 20)) {
		snprintf(err, errsz, "table sizes: devices and users 1..2^30, offenders 1..2^20");
		return NULL;
	}
	if (!range(c->device_idle, 60, 365 * 86400.0) || !range(c->max_request, 1, 86400)) {
		snprintf(err, errsz, "device_idle must be 60 s..1 year, max_request 1..86400 s");
		return NULL;
	}
	struct throttle *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	if (throttle_set_classes(t, cls, ncls, err, errsz) < 0) {
		free(t);
		return NULL;
	}
	uint32_t nd = pow2_buckets(c->devices, DEV_WAYS);
	uint32_t nu = pow2_buckets(c->users, USER_WAYS);
	uint32_t no = pow2_buckets(c->offenders, OFF_WAYS);
	uint64_t off_dev = 4096;
	uint64_t off_usr = off_dev + (uint64_t)nd * sizeof(struct tdev_bucket);
	uint64_t off_off = off_usr + (uint64_t)nu * sizeof(struct tuser_bucket);
	uint64_t len = off_off + (uint64_t)no * sizeof(struct toff_bucket);
	len = (len + 4095) & ~UINT64_C(4095);
	/* Shared and anonymous: workers forked later see the same pages. Pages
	 * are zero-filled on first touch, so a mostly empty table costs little. */
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		snprintf(err, errsz, "mmap %llu bytes: %s", (unsigned long long)len,
			 strerror(errno));
		throttle_free(t);
		return NULL;
	}
	t->h = m;
	t->h->magic = THDR_MAGIC;
	t->h->map_len = len;
	t->h->dev_mask = nd - 1;
	t->h->user_mask = nu - 1;
	t->h->off_mask = no - 1;
	t->h->idle_s = (uint32_t)iround(c->device_idle);
	t->h->maxreq_s = (uint32_t)iround(c->max_request);
	t->h->dev_off = off_dev;
	t->h->user_off = off_usr;
	t->h->off_off = off_off;
	int r = siphash_key_random(&t->h->secret);
	if (r < 0) {
		snprintf(err, errsz, "random key: %s", strerror(-r));
		throttle_free(t);
		return NULL;
	}
	t->dev = (struct tdev_bucket *)((char *)m + off_dev);
	t->usr = (struct tuser_bucket *)((char *)m + off_usr);
	t->off = (struct toff_bucket *)((char *)m + off_off);
	return t;
}

void throttle_free(struct throttle *t)
{
	if (!t)
		return;
	if (t->h)
		munmap(t->h, t->h->map_len);
	policy_free(t->sel);
	free(t->sel_cls);
	free(t->cls);
	free(t->rt);
	free(t);
}

/* ---- keys and time ---------------------------------------------------------- */

static size_t lower_copy(char *dst, size_t cap, const char *s)
{
	size_t n = 0;
	for (; s && s[n] && n + 1 < cap; n++) {
		char ch = s[n];
		dst[n] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
	}
	dst[n] = 0;
	return n;
}

uint64_t throttle_user_key(const struct throttle *t, const char *user)
{
	char buf[320];
	size_t n = lower_copy(buf + 1, sizeof(buf) - 1, user);
	buf[0] = 'U'; /* domain separation from device keys */
	return siphash24(&t->h->secret, buf, n + 1) | 1;
}

uint64_t throttle_device_key(const struct throttle *t, const char *user, const char *device_id)
{
	char buf[400];
	buf[0] = 'D';
	size_t n = 1 + lower_copy(buf + 1, 300, user);
	buf[n++] = 0; /* "ab"+"c" and "a"+"bc" differ */
	n += lower_copy(buf + n, sizeof(buf) - n, device_id);
	return siphash24(&t->h->secret, buf, n) | 1;
}

uint64_t throttle_fingerprint(const struct throttle *t, const void *data, size_t n)
{
	struct siphash_key k = {t->h->secret.k1 ^ UINT64_C(0x46505f6b6579), t->h->secret.k0};
	return siphash24(&k, data, n) | 1;
}

uint64_t throttle_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Milliseconds from then to now; 0 if now is (slightly) earlier, which
 * happens when another worker stamped a slot with a fresher clock read. */
static uint32_t since(uint32_t now, uint32_t then)
{
	int32_t d = (int32_t)(now - then);
	return d > 0 ? (uint32_t)d : 0;
}

/* ---- locks ---------------------------------------------------------------- */

/* 0 when held; -1 when it could not be had (counted; the caller fails open). */
static int lock_take(struct throttle *t, uint32_t *lk)
{
	if (shmlock_take(lk) == 0)
		return 0;
	__atomic_fetch_add(&t->h->lock_timeouts, 1, __ATOMIC_RELAXED);
	return -1;
}

static void count(uint64_t *c)
{
	__atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

static void uncount(uint64_t *c)
{
	__atomic_fetch_sub(c, 1, __ATOMIC_RELAXED);
}

/* Forget d's in-flight requests (lost, evicted or reset) and the gauge's share. */
static void inflight_drop(struct throttle *t, struct tdev *d)
{
	if (d->inflight)
		__atomic_fetch_sub(&t->h->inflight, d->inflight, __ATOMIC_RELAXED);
	d->inflight = 0;
}

static struct tdev_bucket *dev_bucket(const struct throttle *t, uint64_t key)
{
	return &t->dev[(key >> 7) & t->h->dev_mask];
}

static struct tuser_bucket *user_bucket(const struct throttle *t, uint64_t key)
{
	return &t->usr[(key >> 11) & t->h->user_mask];
}

static struct toff_bucket *off_bucket(const struct throttle *t, uint64_t key)
{
	return &t->off[(key >> 17) & t->h->off_mask];
}

static struct tdev *dev_find(struct tdev_bucket *b, uint64_t key)
{
	for (int i = 0; i < DEV_WAYS; i++)
		if (b->d[i].key == key)
			return &b->d[i];
	return NULL;
}

/* ---- users ---------------------------------------------------------------- */

/* A device of user `user` left the table. */
static void user_release(struct throttle *t, uint64_t user)
{
	struct tuser_bucket *ub = user_bucket(t, user);
	if (lock_take(t, &ub->lock) < 0)
		return;
	for (int i = 0; i < USER_WAYS; i++)
		if (ub->u[i].key == user) {
			if (ub->u[i].ndev)
				ub->u[i].ndev--;
			break;
		}
	shmlock_drop(&ub->lock);
}

/*
 * Count a new device for user. Returns 0 (counted), 1 (the user already has
 * max devices: refuse with 177), -1 (table busy: counted nowhere, admit).
 */
static int user_add(struct throttle *t, uint64_t user, uint32_t max, uint32_t now_s)
{
	struct tuser_bucket *ub = user_bucket(t, user);
	if (lock_take(t, &ub->lock) < 0)
		return -1;
	struct tuser *u = NULL, *victim = NULL;
	int vrank = 9;
	for (int i = 0; i < USER_WAYS; i++) {
		struct tuser *x = &ub->u[i];
		if (x->key == user) {
			u = x;
			break;
		}
		/* empty first, then a user without devices, then the oldest */
		int rank = !x->key ? 0 : !x->ndev ? 1 : 2;
		if (rank < vrank || (rank == vrank && (int32_t)(x->seen_s - victim->seen_s) < 0)) {
			victim = x;
			vrank = rank;
		}
	}
	if (!u) {
		u = victim;
		if (u->key) {
			if (u->ndev)
				count(&t->h->user_evict);
		} else {
			count(&t->h->users);
		}
		u->key = user;
		u->ndev = 0;
	}
	u->seen_s = now_s;
	if (max && u->ndev >= max) {
		shmlock_drop(&ub->lock);
		return 1;
	}
	u->ndev++;
	shmlock_drop(&ub->lock);
	return 0;
}

/*
 * Does user already have max authenticated devices? Reads only: a device
 * that has not authenticated must not create or fill a user entry. 0 when
 * the table is busy (fail open).
 */
static int user_full(struct throttle *t, uint64_t user, uint32_t max)
{
	if (!max)
		return 0;
	struct tuser_bucket *ub = user_bucket(t, user);
	if (lock_take(t, &ub->lock) < 0)
		return 0;
	int full = 0;
	for (int i = 0; i < USER_WAYS; i++)
		if (ub->u[i].key == user) {
			full = ub->u[i].ndev >= max;
			break;
		}
	shmlock_drop(&ub->lock);
	return full;
}

/* ---- devices ---------------------------------------------------------------- */

static void cand_clear(struct tdev *d);

static void dev_reset_budget(struct tdev *d, const struct crt *c, uint32_t now)
{
	d->refill_ms = now;
	d->balance = c->burst_m;
	d->level = THROTTLE_S_OK;
	d->until_ms = now;
	d->lwin_ms = now;
	d->dk = 0;
	d->inflight = 0;
	d->strikes = 0;
	d->flags &= TD_F_OFFENDER | TD_F_AUTHED;
	cand_clear(d);
}

/*
 * Pick the slot a new device takes (see "Memory" in the design note), or
 * NULL. Unauthenticated devices go first; a newcomer that has not
 * authenticated (authed 0) never takes the slot of an authenticated device
 * that is still active, so a flood of claimed identities cannot push real
 * devices (their budgets, loop counts, places in max_devices) out.
 */
static struct tdev *dev_victim(struct tdev_bucket *b, uint32_t now_s, uint32_t idle_s, int authed,
			       int *expired)
{
	struct tdev *best = NULL;
	int best_rank = 99;
	for (int i = 0; i < DEV_WAYS; i++) {
		struct tdev *d = &b->d[i];
		int quiet = d->level == THROTTLE_S_OK && !d->inflight && !(d->flags & TD_F_XDP);
		int rank;
		if (!d->key)
			rank = 0;
		else if (since(now_s, d->seen_s) > idle_s)
			rank = 1;
		else if (!(d->flags & TD_F_AUTHED))
			rank = quiet ? 2 : d->level == THROTTLE_S_OK ? 3 : 6;
		else if (!authed)
			continue;
		else
			rank = quiet ? 4 : d->level == THROTTLE_S_OK ? 5 : 7;
		if (rank < best_rank ||
		    (rank == best_rank && rank >= 2 && (int32_t)(d->seen_s - best->seen_s) < 0)) {
			best = d;
			best_rank = rank;
		}
		if (rank == 0)
			break;
	}
	*expired = best_rank <= 1;
	return best;
}

static void dev_evict(struct throttle *t, struct tdev *d, int expired)
{
	if (!d->key)
		return;
	uint64_t user = d->user;
	inflight_drop(t, d);
	int counted = !!(d->flags & TD_F_AUTHED);
	memset(d, 0, sizeof(*d));
	count(expired ? &t->h->dev_expired : &t->h->dev_evict);
	uncount(&t->h->devices);
	if (counted)
		user_release(t, user);
}

/* ---- loop detector ---------------------------------------------------------- */

static void cand_clear(struct tdev *d)
{
	memset(d->cfp, 0, sizeof(d->cfp));
	memset(d->ccur, 0, sizeof(d->ccur));
	memset(d->cprev, 0, sizeof(d->cprev));
}

/* (command, fingerprint) -> 32 bits, command in the low 6, never 0. */
static uint32_t fold_fp(uint64_t fp, int cmd)
{
	uint64_t x = fp ^ ((uint64_t)(cmd + 1) * UINT64_C(0x9e3779b97f4a7c15));
	x ^= x >> 29;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 32;
	return (((uint32_t)x | 0x40u) & ~0x3fu) | (uint32_t)(cmd & 0x3f);
}

static int cfp_cmd(uint32_t cfp)
{
	return (int)(cfp & 0x3f);
}

/* Move the two-sub-window sliding counter forward to now. */
static void loop_roll(struct tdev *d, uint32_t w, uint32_t now)
{
	uint32_t e = since(now, d->lwin_ms);
	if (e < w)
		return;
	d->dk = 0;
	if (e >= 2 * w) {
		memset(d->ccur, 0, sizeof(d->ccur));
		memset(d->cprev, 0, sizeof(d->cprev));
		d->lwin_ms = now;
		return;
	}
	memcpy(d->cprev, d->ccur, sizeof(d->cprev));
	memset(d->ccur, 0, sizeof(d->ccur));
	d->lwin_ms += w;
}

/* Sliding-window estimate of candidate i: the current sub-window plus the
 * part of the previous one that still overlaps the last `w` ms. */
static uint32_t cand_est(const struct tdev *d, int i, uint32_t w, uint32_t now)
{
	uint32_t e = since(now, d->lwin_ms);
	if (e > w)
		e = w;
	return d->ccur[i] + (uint32_t)(((uint64_t)d->cprev[i] * (w - e)) / w);
}

static int cand_find(const struct tdev *d, uint32_t cfp)
{
	for (int i = 0; i < NCAND; i++)
		if (d->cfp[i] == cfp)
			return i;
	return -1;
}

static uint32_t dk_bit(uint32_t cfp)
{
	return 1u << ((cfp >> 7) & 31);
}

/* est_a/thr(a) > est_b/thr(b)? A count as a fraction of its command's
 * threshold: a Ping repeated 60 times a minute (threshold 120) is less of a
 * loop than a MeetingResponse repeated 6 times (threshold 8). */
static int ratio_above(uint32_t est_a, int cmd_a, uint32_t est_b, int cmd_b, const struct crt *c)
{
	uint32_t ta = c->thr[cmd_a] ? c->thr[cmd_a] : 255, tb = c->thr[cmd_b] ? c->thr[cmd_b] : 255;
	return (uint64_t)est_a * tb > (uint64_t)est_b * ta;
}

static void cand_swap(struct tdev *d, int i, int j)
{
	uint32_t f = d->cfp[i];
	uint8_t cu = d->ccur[i], pr = d->cprev[i];
	d->cfp[i] = d->cfp[j];
	d->ccur[i] = d->ccur[j];
	d->cprev[i] = d->cprev[j];
	d->cfp[j] = f;
	d->ccur[j] = cu;
	d->cprev[j] = pr;
}

/* Candidate i changed: if it is now closer to its threshold than the
 * incumbent [0], it becomes the incumbent. */
static void cand_promote(struct tdev *d, int i, const struct crt *c, uint32_t now)
{
	uint32_t w = c->window_ms;
	if (i > 0 && ratio_above(cand_est(d, i, w, now), cfp_cmd(d->cfp[i]), cand_est(d, 0, w, now),
				 cfp_cmd(d->cfp[0]), c))
		cand_swap(d, i, 0);
}

/*
 * Count an admitted request (ci: its candidate, or -1). NCAND candidates
 * and a doorkeeper: a pair seen for the first time in this sub-window only
 * sets its doorkeeper bit, so one-off bodies (each Sync has a new SyncKey)
 * never push a candidate out. Seen again, it takes the free slot, or the
 * non-incumbent slot furthest from its threshold if that is no closer to
 * its threshold than the newcomer's count of 1 (the first sighting is not
 * counted: a bit may be shared, and a pair must never count more than it
 * was seen). The incumbent [0] is only displaced by a candidate overtaking
 * it, so the pair closest to looping keeps counting whatever else comes.
 */
static void cand_add(struct tdev *d, int ci, uint32_t cfp, const struct crt *c, uint32_t now)
{
	if (ci >= 0) {
		if (d->ccur[ci] < 255)
			d->ccur[ci]++;
		cand_promote(d, ci, c, now);
		return;
	}
	int v = -1;
	for (int i = 0; i < NCAND; i++)
		if (!d->cfp[i]) {
			v = i;
			break;
		}
	if (v < 0) {
		if (!(d->dk & dk_bit(cfp))) {
			d->dk |= dk_bit(cfp);
			return;
		}
		for (int i = 1; i < NCAND; i++)
			if (v < 0 ||
			    ratio_above(cand_est(d, v, c->window_ms, now), cfp_cmd(d->cfp[v]),
					cand_est(d, i, c->window_ms, now), cfp_cmd(d->cfp[i]), c))
				v = i;
		if (ratio_above(cand_est(d, v, c->window_ms, now), cfp_cmd(d->cfp[v]), 1,
				cfp_cmd(cfp), c))
			return; /* every candidate is closer to its threshold */
	}
	d->cfp[v] = cfp;
	d->ccur[v] = 1;
	d->cprev[v] = 0;
	cand_promote(d, v, c, now);
}

/* ---- offenders ---------------------------------------------------------------- */

static struct toff *off_find(struct toff_bucket *b, uint64_t key)
{
	for (int i = 0; i < OFF_WAYS; i++)
		if (__atomic_load_n(&b->o[i].key, __ATOMIC_ACQUIRE) == key)
			return &b->o[i];
	return NULL;
}

static void label(char *dst, size_t cap, const char *s)
{
	snprintf(dst, cap, "%s", s ? s : "");
}

static uint64_t off_touched(const struct toff *o)
{
	return o->last_ms > o->refused_ms ? o->last_ms : o->refused_ms;
}

/*
 * Note an offender's request. With events (a mask of 1 << THROTTLE_EV_*),
 * the record is created if missing. Returns 1 if it was created.
 */
static int off_note(struct throttle *t, const struct throttle_req *rq, uint64_t key, int cls,
		    unsigned events, int cmd, int refused, int loop_cmd, uint64_t now_ms)
{
	struct toff_bucket *b = off_bucket(t, key);
	struct toff *o = off_find(b, key);
	int created = 0;
	if (!o && !events)
		return 0;
	if (events) {
		if (lock_take(t, &b->lock) < 0)
			return 0;
		o = off_find(b, key);
		if (!o) {
			struct toff *v = NULL;
			for (int i = 0; i < OFF_WAYS; i++) {
				struct toff *x = &b->o[i];
				if (!x->key) {
					v = x;
					break;
				}
				if (!v || off_touched(x) < off_touched(v))
					v = x;
			}
			if (v->key)
				count(&t->h->off_evict);
			o = v;
			__atomic_add_fetch(&o->seq, 1, __ATOMIC_ACQ_REL); /* odd: being written */
			__atomic_store_n(&o->key, 0, __ATOMIC_RELEASE);
			uint32_t seq = o->seq;
			memset((char *)o + sizeof(o->seq), 0, sizeof(*o) - sizeof(o->seq));
			o->seq = seq;
			o->user = rq->user_key;
			o->loop_cmd = 0xff;
			o->first_ms = now_ms;
			label(o->device_id, sizeof(o->device_id), rq->device_id);
			label(o->user_s, sizeof(o->user_s), rq->user);
			label(o->os, sizeof(o->os), rq->device_os);
			label(o->ua, sizeof(o->ua), rq->user_agent);
			__atomic_store_n(&o->key, key, __ATOMIC_RELEASE);
			__atomic_add_fetch(&o->seq, 1, __ATOMIC_ACQ_REL); /* even: stable */
			created = 1;
		}
		o->cls = (uint8_t)cls;
		if (loop_cmd >= 0)
			o->loop_cmd = (uint8_t)loop_cmd;
		for (int e = 1; e < THROTTLE_EV__COUNT; e++)
			if (events & (1u << e)) {
				o->events[e]++;
				o->last_event = (uint8_t)e;
			}
		o->last_ms = now_ms;
		shmlock_drop(&b->lock);
	}
	__atomic_fetch_add(&o->seen[cmd], 1, __ATOMIC_RELAXED);
	if (refused) {
		__atomic_fetch_add(&o->refused[cmd], 1, __ATOMIC_RELAXED);
		__atomic_store_n(&o->refused_ms, now_ms, __ATOMIC_RELAXED);
	}
	return created;
}

/* ---- the decision ------------------------------------------------------------ */

static uint32_t ceil_s(uint32_t ms)
{
	return ms ? (ms + 999) / 1000 : 0;
}

static void recharge(struct tdev *d, const struct crt *c, uint32_t now)
{
	if (!c->burst_m)
		return;
	uint32_t el = since(now, d->refill_ms);
	if (!el)
		return;
	if (d->balance >= c->burst_m) {
		d->refill_ms = now;
		d->balance = c->burst_m; /* a reload may have lowered burst */
		return;
	}
	uint64_t add = (uint64_t)el * c->rate_m / 1000u;
	if (!add)
		return; /* keep refill_ms: the fraction accrues */
	int64_t nb = (int64_t)d->balance + (int64_t)add;
	if (nb >= c->burst_m) {
		d->balance = c->burst_m;
		d->refill_ms = now;
	} else {
		d->balance = (int32_t)nb;
		d->refill_ms += (uint32_t)(add * 1000u / c->rate_m);
	}
}

static void debit(struct tdev *d, const struct crt *c, int32_t cost_m)
{
	if (!c->burst_m)
		return;
	int64_t nb = (int64_t)d->balance - cost_m;
	if (nb < INT32_MIN / 2)
		nb = INT32_MIN / 2;
	d->balance = (int32_t)nb;
}

static void stage_enter(struct tdev *d, int level, uint32_t until)
{
	d->level = (uint8_t)level;
	d->until_ms = until;
	d->strikes = 0;
	d->flags &= (uint8_t) ~(TD_F_XDP | TD_F_SOFT);
}

static void stage_end(struct tdev *d, const struct crt *c, uint32_t now)
{
	if (d->level == THROTTLE_S_CUTOFF) {
		recharge(d, c, now);
		/* After the cool-down the bucket holds what it recharged, at
		 * least one request: the device is not refused at once again. */
		if (c->burst_m && d->balance < 1000)
			d->balance = 1000 < c->burst_m ? 1000 : c->burst_m;
	} else {
		cand_clear(d);
		d->dk = 0;
		d->lwin_ms = now;
	}
	d->level = THROTTLE_S_OK;
	d->strikes = 0;
	d->flags &= (uint8_t) ~(TD_F_XDP | TD_F_SOFT);
}

static int strike(struct tdev *d, uint32_t hammer)
{
	if (d->strikes < 255)
		d->strikes++;
	return d->strikes >= hammer;
}

static const char *const asthrottle_for[THROTTLE_R__COUNT] = {
    [THROTTLE_R_NONE] = "",
    [THROTTLE_R_BUDGET] = "OutOfBudgets",
    [THROTTLE_R_CUTOFF] = "OutOfBudgets",
    [THROTTLE_R_CONCURRENCY] = "ConcurrentRequests",
    [THROTTLE_R_MAX_DEVICES] = "MaximumDevicesReached",
    [THROTTLE_R_LOOP] = "CommandFrequency",
    [THROTTLE_R_LOCK] = "",
};

static void refuse(struct throttle_verdict *v, enum throttle_action a, enum throttle_reason r,
		   const char *text)
{
	v->action = a;
	v->reason = r;
	v->asthrottle = asthrottle_for[r];
	v->text = text;
}

/* Highest escalation of a mask, for the verdict (the log line). */
static enum throttle_event top_event(unsigned mask)
{
	static const enum throttle_event order[] = {THROTTLE_EV_MAX_DEVICES, THROTTLE_EV_XDP,
						    THROTTLE_EV_QUARANTINE,  THROTTLE_EV_LOOP,
						    THROTTLE_EV_CUTOFF,	     THROTTLE_EV_THROTTLED};
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (mask & (1u << order[i]))
			return order[i];
	return THROTTLE_EV_NONE;
}

/* A device in a stage: count the strike, maybe escalate, refuse. */
static unsigned in_stage(struct tdev *d, const struct crt *c, int cmd, uint32_t now,
			 struct throttle_verdict *v)
{
	unsigned ev = 0;
	uint32_t rem = since(d->until_ms, now);
	switch (d->level) {
	case THROTTLE_S_CUTOFF:
		if (!(d->flags & TD_F_XDP) && strike(d, c->hammer)) {
			d->flags |= TD_F_XDP;
			ev |= 1u << THROTTLE_EV_XDP;
		}
		refuse(v, (d->flags & TD_F_XDP) ? THROTTLE_XDP_DROP : THROTTLE_THROTTLE,
		       THROTTLE_R_CUTOFF, "cut off: budget exhausted beyond the cutoff");
		break;
	case THROTTLE_S_LOOP_THROTTLE:
		if (strike(d, c->hammer)) {
			stage_enter(d, THROTTLE_S_LOOP_QUARANTINE, now + c->quarantine_ms);
			rem = c->quarantine_ms;
			ev |= 1u << THROTTLE_EV_QUARANTINE;
			refuse(v, THROTTLE_LOOP_QUARANTINE, THROTTLE_R_LOOP,
			       "loop: kept sending while throttled, quarantined");
		} else {
			refuse(v, THROTTLE_THROTTLE, THROTTLE_R_LOOP,
			       "loop: same request repeated, throttled");
		}
		break;
	default: /* THROTTLE_S_LOOP_QUARANTINE */
		if (cmd == d->loop_cmd && !(d->flags & TD_F_XDP) && strike(d, c->hammer)) {
			d->flags |= TD_F_XDP;
			ev |= 1u << THROTTLE_EV_XDP;
		}
		if (d->flags & TD_F_XDP)
			refuse(v, THROTTLE_XDP_DROP, THROTTLE_R_LOOP,
			       "loop: kept looping while quarantined, dropped in the kernel");
		else
			refuse(v, THROTTLE_LOOP_QUARANTINE, THROTTLE_R_LOOP, "loop: quarantined");
		break;
	}
	v->remaining_s = ceil_s(rem);
	if (v->action != THROTTLE_LOOP_QUARANTINE)
		v->retry_after_s = v->remaining_s ? v->remaining_s : 1;
	if (v->action == THROTTLE_XDP_DROP)
		v->ttl_s = v->remaining_s < c->xdp_ttl_s ? v->remaining_s : c->xdp_ttl_s;
	if (v->action == THROTTLE_XDP_DROP && !v->ttl_s)
		v->ttl_s = 1;
	return ev;
}

/* The budget ran out (d->balance <= 0): debit the refused request, refuse.
 * Returns the escalations (a mask of 1 << THROTTLE_EV_*). */
static unsigned over_budget(struct tdev *d, const struct crt *c, int32_t cost_m, uint32_t now,
			    struct throttle_verdict *v)
{
	unsigned ev = 0;
	debit(d, c, cost_m);
	if (!(d->flags & TD_F_SOFT)) {
		d->flags |= TD_F_SOFT;
		ev |= 1u << THROTTLE_EV_THROTTLED;
	}
	refuse(v, THROTTLE_THROTTLE, THROTTLE_R_BUDGET, "over budget");
	/* until the balance is positive again */
	uint64_t need = (uint64_t)(1 - (int64_t)d->balance);
	uint64_t s = (need * 1000u + c->rate_m - 1) / c->rate_m; /* ms */
	v->retry_after_s = ceil_s(s > 86400000u ? 86400000u : (uint32_t)s);
	/* Past the cutoff, the cool-down starts. */
	if (d->balance <= c->cutoff_m) {
		stage_enter(d, THROTTLE_S_CUTOFF, now + c->cooldown_ms);
		d->balance = c->cutoff_m;
		d->refill_ms = now;
		ev |= 1u << THROTTLE_EV_CUTOFF;
		refuse(v, THROTTLE_THROTTLE, THROTTLE_R_CUTOFF,
		       "cut off: budget exhausted beyond the cutoff");
		v->remaining_s = ceil_s(c->cooldown_ms);
		v->retry_after_s = v->remaining_s;
	}
	return ev;
}

/* A refusal of the slot d (bucket b, locked): unlock, count, note the
 * offender under key (rq's labels). */
static void refused_done(struct throttle *t, struct tdev_bucket *b, struct tdev *d,
			 const struct throttle_req *rq, uint64_t key, int cls, int cmd, unsigned ev,
			 uint64_t now_ms, struct throttle_verdict *v)
{
	if (ev)
		d->flags |= TD_F_OFFENDER;
	int offender = !!(d->flags & TD_F_OFFENDER);
	int loop_cmd = v->loop_cmd;
	shmlock_drop(&b->lock);
	count(&t->h->refused[v->reason]);
	for (int e = 1; e < THROTTLE_EV__COUNT; e++)
		if (ev & (1u << e))
			count(&t->h->events[e]);
	v->event = top_event(ev);
	if (offender)
		off_note(t, rq, key, cls, ev, cmd, 1, loop_cmd, now_ms);
}

/* A device (or a user's unauthenticated bucket) seen again: forget what
 * is too old to mean anything. */
static void dev_touch(struct throttle *t, struct tdev *d, const struct crt *c, uint32_t now,
		      uint32_t now_s)
{
	uint32_t idle = since(now_s, d->seen_s);
	if (idle > STALE_S || (d->inflight && idle > t->h->maxreq_s))
		inflight_drop(t, d); /* a lost throttle_done() */
	if (idle > STALE_S)
		dev_reset_budget(d, c, now);
	d->seen_s = now_s;
}

/* Domain-separated from device and user keys ("A" for anonymous). */
uint64_t throttle_unauth_key(const struct throttle *t, uint64_t user_key)
{
	char buf[9];
	buf[0] = 'A';
	memcpy(buf + 1, &user_key, sizeof(user_key));
	return siphash24(&t->h->secret, buf, sizeof(buf)) | 1;
}

/*
 * The budget every not-yet-authenticated device of one user shares (see
 * "Claimed identities" in the design note): the class's burst, rate,
 * cutoff, cool-down and hammer, no loop detector, no concurrency count. 0:
 * admitted (debited); 1: refused (*v filled, counted).
 */
static int unauth_step(struct throttle *t, const struct throttle_req *rq, const struct crt *c,
		       int cls, int cmd, uint64_t now_ms, int32_t cost_m,
		       struct throttle_verdict *v)
{
	if (!c->burst_m)
		return 0;
	uint32_t now = (uint32_t)now_ms;
	uint32_t now_s = (uint32_t)(now_ms / 1000u);
	uint64_t key = throttle_unauth_key(t, rq->user_key ? rq->user_key : 1);
	struct tdev_bucket *b = dev_bucket(t, key);
	if (lock_take(t, &b->lock) < 0)
		return 0; /* fail open, as for a device */
	struct tdev *d = dev_find(b, key);
	if (!d) {
		int expired;
		d = dev_victim(b, now_s, t->h->idle_s, 0, &expired);
		if (!d) {
			shmlock_drop(&b->lock);
			count(&t->h->unauth_untracked);
			return 0;
		}
		dev_evict(t, d, expired);
		d->key = key;
		d->user = rq->user_key ? rq->user_key : 1;
		dev_reset_budget(d, c, now);
		count(&t->h->devices);
	} else {
		dev_touch(t, d, c, now, now_s);
	}
	d->cls = (uint8_t)cls;
	if (d->level != THROTTLE_S_OK && (int32_t)(now - d->until_ms) >= 0)
		stage_end(d, c, now);
	unsigned ev = 0;
	if (d->level != THROTTLE_S_OK) {
		ev |= in_stage(d, c, cmd, now, v);
	} else {
		recharge(d, c, now);
		if (d->balance > 0) {
			debit(d, c, cost_m);
			d->flags &= (uint8_t)~TD_F_SOFT;
			shmlock_drop(&b->lock);
			return 0;
		}
		ev |= over_budget(d, c, cost_m, now, v);
	}
	v->state = (enum throttle_state)d->level;
	v->text = v->reason == THROTTLE_R_BUDGET
		      ? "unauthenticated devices of this user over budget"
		      : "unauthenticated devices of this user cut off";
	/* The offender record is the user's, not the claimed DeviceId's. */
	struct throttle_req x = *rq;
	x.device_id = THROTTLE_UNAUTH_LABEL;
	refused_done(t, b, d, &x, key, cls, cmd, ev, now_ms, v);
	return 1;
}

enum throttle_action throttle_check(struct throttle *t, const struct throttle_req *rq,
				    uint64_t now_ms, struct throttle_verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->action = THROTTLE_OK;
	v->loop_cmd = -1;
	v->asthrottle = "";
	v->text = "ok";
	int ci_cls = rq->cls >= 0 && (size_t)rq->cls < t->ncls ? rq->cls : 0;
	v->cls = ci_cls;
	const struct crt *c = &t->rt[ci_cls];
	int cmd = rq->cmd >= 0 && rq->cmd < THROTTLE_NCMD ? rq->cmd : EAS_CMD_UNKNOWN;
	uint64_t key = rq->device_key ? rq->device_key : 1;
	uint64_t user = rq->user_key ? rq->user_key : 1;
	uint32_t now = (uint32_t)now_ms;
	uint32_t now_s = (uint32_t)(now_ms / 1000u);
	int32_t cost_m =
	    (int32_t)((rq->cost ? (rq->cost > 1000000 ? 1000000 : rq->cost) : 1) * 1000);
	unsigned ev = 0;

	/* The user's unauthenticated budget first, then this device's own
	 * (never two buckets at once). A refused claim touches nothing else:
	 * not even the page of its device's bucket. */
	if (!rq->authed && cmd != EAS_CMD_OPTIONS &&
	    unauth_step(t, rq, c, ci_cls, cmd, now_ms, cost_m, v))
		return v->action;
	struct tdev_bucket *b = dev_bucket(t, key);
	if (lock_take(t, &b->lock) < 0) {
		v->reason = THROTTLE_R_LOCK;
		v->text = "table busy: admitted unaccounted";
		return v->action;
	}
	struct tdev *d = dev_find(b, key);
	int authed = rq->authed || (d && (d->flags & TD_F_AUTHED));
	if (!d) {
		/* Only authenticated devices take a place among the user's
		 * max_devices; one that has not authenticated yet is refused
		 * when the authenticated ones fill them, and counts nowhere. */
		int u =
		    authed ? user_add(t, user, c->max_dev, now_s) : user_full(t, user, c->max_dev);
		if (u == 1 && cmd == EAS_CMD_OPTIONS) {
			/* Exchange always answers OPTIONS; it does not make the
			 * device a partner, so it takes no place either. */
			shmlock_drop(&b->lock);
			v->text = "OPTIONS from a device beyond the user's limit (not counted)";
			return v->action;
		}
		if (u == 1) {
			/* No slot is taken: the device stays new, and refused,
			 * until one of the user's devices leaves the table. */
			shmlock_drop(&b->lock);
			refuse(v, THROTTLE_MAX_DEVICES, THROTTLE_R_MAX_DEVICES,
			       "user has the maximum number of devices");
			v->eas_status = 177;
			count(&t->h->refused[THROTTLE_R_MAX_DEVICES]);
			/* One event per refused device, however often it retries. */
			int known = off_find(off_bucket(t, key), key) != NULL;
			if (off_note(t, rq, key, ci_cls, known ? 0 : 1u << THROTTLE_EV_MAX_DEVICES,
				     cmd, 1, -1, now_ms)) {
				v->event = THROTTLE_EV_MAX_DEVICES;
				count(&t->h->events[THROTTLE_EV_MAX_DEVICES]);
			}
			return v->action;
		}
		int expired;
		d = dev_victim(b, now_s, t->h->idle_s, authed, &expired);
		if (!d) {
			/* Every slot holds an active authenticated device: this
			 * one is judged by the user's unauthenticated budget alone. */
			shmlock_drop(&b->lock);
			count(&t->h->unauth_untracked);
			v->text = "unauthenticated device not tracked (bucket full)";
			return v->action;
		}
		dev_evict(t, d, expired);
		d->key = key;
		d->user = user;
		dev_reset_budget(d, c, now);
		if (authed)
			d->flags |= TD_F_AUTHED;
		count(&t->h->devices);
	} else {
		dev_touch(t, d, c, now, now_s);
		if (authed && !(d->flags & TD_F_AUTHED)) {
			/* Known to the inventory, new to this table's count (a
			 * restart, or another worker saw its first success). */
			d->flags |= TD_F_AUTHED;
			d->user = user;
			user_add(t, user, 0, now_s);
		}
	}
	d->seen_s = now_s;
	d->cls = (uint8_t)ci_cls;

	if (d->level != THROTTLE_S_OK && (int32_t)(now - d->until_ms) >= 0)
		stage_end(d, c, now);

	if (d->level != THROTTLE_S_OK) {
		ev |= in_stage(d, c, cmd, now, v);
		v->state = (enum throttle_state)d->level;
		v->loop_cmd = d->level == THROTTLE_S_CUTOFF ? -1 : d->loop_cmd;
		goto refused;
	}

	recharge(d, c, now);

	/* Loop detector: would this request make the threshold? */
	uint32_t fp = 0;
	int ci = -1;
	unsigned thr = rq->fingerprint ? c->thr[cmd] : 0;
	if (thr) {
		fp = fold_fp(rq->fingerprint, cmd);
		loop_roll(d, c->window_ms, now);
		ci = cand_find(d, fp);
		uint32_t est = (ci >= 0 ? cand_est(d, ci, c->window_ms, now) : 0) + 1;
		if (est >= thr) {
			/* until_ms still holds the end of the last stage */
			int repeat =
			    (d->flags & TD_F_LOOPED) && since(now, d->until_ms) < c->memory_ms;
			d->flags |= TD_F_LOOPED;
			d->loop_cmd = (uint8_t)cmd;
			count(&t->h->loops_by_cmd[cmd]);
			ev |= 1u << THROTTLE_EV_LOOP;
			if (repeat) {
				stage_enter(d, THROTTLE_S_LOOP_QUARANTINE, now + c->quarantine_ms);
				ev |= 1u << THROTTLE_EV_QUARANTINE;
				refuse(v, THROTTLE_LOOP_QUARANTINE, THROTTLE_R_LOOP,
				       "loop: same request repeated again, quarantined");
				v->remaining_s = ceil_s(c->quarantine_ms);
			} else {
				stage_enter(d, THROTTLE_S_LOOP_THROTTLE, now + c->throttle_ms);
				refuse(v, THROTTLE_THROTTLE, THROTTLE_R_LOOP,
				       "loop: same request repeated, throttled");
				v->remaining_s = ceil_s(c->throttle_ms);
				v->retry_after_s = v->remaining_s;
			}
			v->state = (enum throttle_state)d->level;
			v->loop_cmd = cmd;
			goto refused;
		}
	}

	if (c->max_conc && d->inflight >= c->max_conc) {
		debit(d, c, cost_m);
		refuse(v, THROTTLE_THROTTLE, THROTTLE_R_CONCURRENCY, "too many requests in flight");
		v->retry_after_s = 1;
	} else if (c->burst_m && d->balance <= 0) {
		ev |= over_budget(d, c, cost_m, now, v);
	} else {
		/* admitted */
		debit(d, c, cost_m);
		d->flags &= (uint8_t)~TD_F_SOFT;
		if (d->inflight < 255) {
			d->inflight++;
			count(&t->h->inflight);
		}
		if (thr)
			cand_add(d, ci, fp, c, now);
		v->ticket.device_key = key;
		v->ticket.user_key = user;
		v->ticket.fp = fp;
		v->ticket.admitted = 1;
		int offender = !!(d->flags & TD_F_OFFENDER);
		shmlock_drop(&b->lock);
		if (offender)
			off_note(t, rq, key, ci_cls, 0, cmd, 0, -1, now_ms);
		return v->action;
	}
	v->state = (enum throttle_state)d->level;

refused:
	refused_done(t, b, d, rq, key, ci_cls, cmd, ev, now_ms, v);
	return v->action;
}

void throttle_done(struct throttle *t, const struct throttle_ticket *tk, int http_status,
		   uint64_t now_ms)
{
	(void)now_ms;
	if (!tk->admitted)
		return;
	struct tdev_bucket *b = dev_bucket(t, tk->device_key);
	if (lock_take(t, &b->lock) < 0)
		return;
	struct tdev *d = dev_find(b, tk->device_key);
	if (d) {
		if (d->inflight) {
			d->inflight--;
			uncount(&t->h->inflight);
		}
		if (tk->fp && (http_status < 200 || http_status > 299)) {
			/* Only answered successes count towards a loop. */
			int ci = cand_find(d, tk->fp);
			if (ci >= 0) {
				if (d->ccur[ci])
					d->ccur[ci]--;
				else if (d->cprev[ci])
					d->cprev[ci]--;
			}
		}
	}
	shmlock_drop(&b->lock);
}

int throttle_authenticated(struct throttle *t, uint64_t device_key, uint64_t user_key,
			   uint64_t now_ms)
{
	struct tdev_bucket *b = dev_bucket(t, device_key ? device_key : 1);
	if (lock_take(t, &b->lock) < 0)
		return -EBUSY;
	struct tdev *d = dev_find(b, device_key ? device_key : 1);
	int r = -ENOENT;
	if (d && (d->flags & TD_F_AUTHED)) {
		r = 0;
	} else if (d) {
		/* Counted even beyond max_devices: it was let through (two new
		 * devices racing), and a success must not turn into 177. */
		d->flags |= TD_F_AUTHED;
		d->user = user_key ? user_key : 1;
		user_add(t, d->user, 0, (uint32_t)(now_ms / 1000u));
		r = 1;
	}
	shmlock_drop(&b->lock);
	return r;
}

int throttle_forgive(struct throttle *t, uint64_t device_key, uint64_t now_ms)
{
	struct tdev_bucket *b = dev_bucket(t, device_key);
	if (lock_take(t, &b->lock) < 0)
		return -EBUSY;
	struct tdev *d = dev_find(b, device_key);
	if (!d) {
		shmlock_drop(&b->lock);
		return -ENOENT;
	}
	uint8_t inflight = d->inflight;
	const struct crt *c = &t->rt[d->cls < t->ncls ? d->cls : 0];
	dev_reset_budget(d, c, (uint32_t)now_ms);
	d->inflight = inflight;
	shmlock_drop(&b->lock);
	return 0;
}

/* ---- visibility ---------------------------------------------------------------- */

/* Seconds until d's bucket, recharged to now, lets a request through
 * (balance > 0, as throttle_check admits); 0 = now. Reads d only. */
static uint32_t budget_wait_s(const struct throttle *t, const struct tdev *d, uint32_t now)
{
	const struct crt *c = &t->rt[d->cls < t->ncls ? d->cls : 0];
	if (!c->burst_m || !c->rate_m)
		return 0;
	int64_t bal = (int64_t)d->balance + (int64_t)since(now, d->refill_ms) * c->rate_m / 1000;
	if (bal > 0)
		return 0;
	uint64_t ms = ((uint64_t)(1 - bal) * 1000u + c->rate_m - 1) / c->rate_m;
	return ceil_s(ms > 86400000u ? 86400000u : (uint32_t)ms);
}

int throttle_foreach(struct throttle *t, unsigned flags, uint64_t now_ms,
		     int (*fn)(void *arg, const struct throttle_info *d), void *arg)
{
	int n = 0;
	uint32_t now = (uint32_t)now_ms;
	for (uint32_t bi = 0; bi <= t->h->off_mask; bi++) {
		struct toff_bucket *ob = &t->off[bi];
		for (int i = 0; i < OFF_WAYS; i++) {
			struct toff *o = &ob->o[i];
			if (!__atomic_load_n(&o->key, __ATOMIC_ACQUIRE))
				continue;
			struct throttle_info x;
			int ok = 0;
			for (int tries = 0; tries < 16 && !ok; tries++) {
				uint32_t s1 = __atomic_load_n(&o->seq, __ATOMIC_ACQUIRE);
				if (s1 & 1)
					continue;
				memset(&x, 0, sizeof(x));
				x.device_key = __atomic_load_n(&o->key, __ATOMIC_RELAXED);
				x.user_key = o->user;
				memcpy(x.device_id, o->device_id, sizeof(x.device_id));
				memcpy(x.user, o->user_s, sizeof(x.user));
				memcpy(x.device_os, o->os, sizeof(x.device_os));
				memcpy(x.user_agent, o->ua, sizeof(x.user_agent));
				x.device_id[sizeof(x.device_id) - 1] = 0;
				x.user[sizeof(x.user) - 1] = 0;
				x.device_os[sizeof(x.device_os) - 1] = 0;
				x.user_agent[sizeof(x.user_agent) - 1] = 0;
				x.cls = o->cls;
				x.loop_cmd = o->loop_cmd == 0xff ? -1 : o->loop_cmd;
				x.last_event = (enum throttle_event)o->last_event;
				x.first_ms = o->first_ms;
				x.last_ms = o->last_ms;
				for (int e = 0; e < THROTTLE_EV__COUNT; e++)
					x.events[e] =
					    __atomic_load_n(&o->events[e], __ATOMIC_RELAXED);
				for (int k = 0; k < THROTTLE_NCMD; k++) {
					x.seen[k] = __atomic_load_n(&o->seen[k], __ATOMIC_RELAXED);
					x.refused[k] =
					    __atomic_load_n(&o->refused[k], __ATOMIC_RELAXED);
				}
				__atomic_thread_fence(__ATOMIC_ACQUIRE);
				ok = __atomic_load_n(&o->seq, __ATOMIC_RELAXED) == s1 &&
				     x.device_key;
			}
			if (!ok)
				continue;
			uint64_t refused_ms = __atomic_load_n(&o->refused_ms, __ATOMIC_RELAXED);
			/* The live stage, from the device table. */
			struct tdev_bucket *b = dev_bucket(t, x.device_key);
			if (lock_take(t, &b->lock) == 0) {
				struct tdev *d = dev_find(b, x.device_key);
				if (d) {
					x.in_table = 1;
					if (d->level != THROTTLE_S_OK &&
					    (int32_t)(now - d->until_ms) < 0) {
						x.state = (enum throttle_state)d->level;
						x.remaining_s = ceil_s(since(d->until_ms, now));
						x.xdp = !!(d->flags & TD_F_XDP);
					} else if (d->level == THROTTLE_S_OK) {
						x.budget_wait_s = budget_wait_s(t, d, now);
					}
				}
				shmlock_drop(&b->lock);
			}
			if ((flags & THROTTLE_F_ACTIVE) && x.state == THROTTLE_S_OK &&
			    !(refused_ms && (int64_t)(now_ms - refused_ms) < ACTIVE_RECENT_MS))
				continue;
			n++;
			if (fn(arg, &x))
				return n;
		}
	}
	return n;
}

void throttle_stats_read(const struct throttle *t, struct throttle_stats *s)
{
	const struct thdr *h = t->h;
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < THROTTLE_R__COUNT; i++)
		s->refused[i] = __atomic_load_n(&h->refused[i], __ATOMIC_RELAXED);
	for (int i = 0; i < THROTTLE_EV__COUNT; i++)
		s->events[i] = __atomic_load_n(&h->events[i], __ATOMIC_RELAXED);
	for (int i = 0; i < THROTTLE_NCMD; i++)
		s->loops_by_cmd[i] = __atomic_load_n(&h->loops_by_cmd[i], __ATOMIC_RELAXED);
	s->device_evictions = __atomic_load_n(&h->dev_evict, __ATOMIC_RELAXED);
	s->device_expired = __atomic_load_n(&h->dev_expired, __ATOMIC_RELAXED);
	s->user_evictions = __atomic_load_n(&h->user_evict, __ATOMIC_RELAXED);
	s->offender_evictions = __atomic_load_n(&h->off_evict, __ATOMIC_RELAXED);
	s->lock_timeouts = __atomic_load_n(&h->lock_timeouts, __ATOMIC_RELAXED);
	s->devices = __atomic_load_n(&h->devices, __ATOMIC_RELAXED);
	s->users = __atomic_load_n(&h->users, __ATOMIC_RELAXED);
	s->inflight = __atomic_load_n(&h->inflight, __ATOMIC_RELAXED);
	s->unauth_untracked = __atomic_load_n(&h->unauth_untracked, __ATOMIC_RELAXED);
	s->device_capacity = (uint64_t)(h->dev_mask + 1) * DEV_WAYS;
	s->user_capacity = (uint64_t)(h->user_mask + 1) * USER_WAYS;
	s->offender_capacity = (uint64_t)(h->off_mask + 1) * OFF_WAYS;
	s->memory_bytes = h->map_len;
}
