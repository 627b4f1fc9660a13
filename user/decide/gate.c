/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * gate.c - see gate.h. What a verdict means on the wire:
 *
 *   allow       relay to the backend.
 *   block       every command but OPTIONS is answered by the gateway with the
 *               command's WBXML envelope and status 129
 *               (DeviceIsBlockedForThisUser) for EAS >= 14.0, or a bare 403
 *               for older protocol versions, as Exchange does. With XDP on,
 *               the rest of that TCP connection is dropped in the kernel.
 *   quarantine  the gateway lets through what reveals no mailbox content and
 *               answers the rest itself (our documented choice; Exchange would
 *               serve the Inbox holding only its quarantine notice):
 *                 OPTIONS, Provision, Settings, FolderSync  relayed
 *                 Sync, GetItemEstimate   HTTP 200, empty body ("no changes")
 *                 Ping                    held QUARANTINE_HOLD_MS, then
 *                                         <Ping><Status>1</Status> (no changes)
 *                 everything else         envelope status 130 (AccessDenied)
 *                                         / 403 before EAS 14.0
 *               so phones show "waiting for access" instead of retrying fast.
 */
#include "gate.h"
#include "eas_answer.h"
#include "inventory.h"
#include "log.h"
#include "osver.h"
#include "policy.h"
#include "sighting.h"
#include "siphash.h"
#include <linux/types.h>
#include "easgate_abi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DEV_CACHE 8192 /* per worker, direct-mapped: devices in the inventory */
#define UDEV_CACHE                                                                                 \
	2048 /* the same for devices not (yet) authenticated: a flood of                           \
		claims cannot push the real devices out of DEV_CACHE */
#define VER_CACHE	   1024
#define REPORT_EVERY_S	   60 /* refresh last_attempt / last_success at most this often */
#define QUARANTINE_HOLD_MS 120000

struct dev_entry {
	uint64_t key;
	uint64_t gen;
	int admin_state;
	char model[128];
	char os[128];
	int64_t reported_at;
	int64_t result_at;
	int last_access;   /* the device's state: last device-level decision */
	int scoped_access; /* last decision by a command-scoped rule (logging) */
	int answer_access; /* the decision of this device's latest request */
	int last_status;
	int result_access;    /* access the last reported result was answered under */
	uint64_t result_cmds; /* bit per enum eas_cmd: answered with last_status under
			       * result_access since result_at, and reported */
	char os_key[96];
	char os_family[16];
	int authed_reported; /* a 2xx from the backend was reported for os_key */
	int in_inv;	     /* it has an inventory row: it authenticated (see gate.h) */
	int sight_gone;	     /* !in_inv: authenticated on another worker, row not read yet */
	uint64_t skey;	     /* !in_inv: its key in the sightings table */
	uint32_t sight_seq;  /* !in_inv: the sighting's di_seq this entry has seen */
	int64_t loop_until;  /* quarantined for looping until (unix s; any farm node) */
	int loop_cmd;	     /* the command that looped */
};

struct ver_entry {
	uint64_t key;
	uint64_t gen;
	int64_t first_seen;
	int approved;
};

struct gate {
	const struct gw_config *cfg;
	struct shm *shm;
	int slot;
	int event_fd;
	struct inventory *inv;
	struct policy *pol;
	uint64_t rules_fp; /* runtime rules pol was built from (rules_fingerprint) */
	uint64_t gen;
	struct siphash_key hkey;
	struct dev_entry *dev;	/* DEV_CACHE entries, in_inv */
	struct dev_entry *udev; /* UDEV_CACHE entries, !in_inv */
	struct ver_entry *ver;
	struct sighting_table *sight; /* shared; not owned; NULL = none kept */
	uint64_t events_dropped;
	struct throttle *t; /* shared with the other workers; not owned */
};

void gate_inventory_path(const struct gw_config *c, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s/inventory.db", c->state_dir);
}

/* --- policy building ---------------------------------------------------------- */

struct rule_acc {
	struct policy_rule *rules;
	size_t n, cap;
	int failed;
	char *err;
	size_t errsz;
};

static int acc_push(struct rule_acc *a, const struct policy_rule *r)
{
	if (a->n == a->cap) {
		size_t nc = a->cap ? a->cap * 2 : 64;
		struct policy_rule *nr = realloc(a->rules, nc * sizeof(*nr));
		if (!nr)
			return -1;
		a->rules = nr;
		a->cap = nc;
	}
	a->rules[a->n++] = *r;
	return 0;
}

/* Personal list entries added at run time (easctl lists), after the file's. */
struct id_acc {
	const char **v[2]; /* [0] blocked, [1] allowed */
	size_t n[2], cap[2];
	int failed;
};

static void add_db_list(void *arg, const char *list, const char *entry)
{
	struct id_acc *a = arg;
	int k = !strcmp(list, "allowed");
	char why[160];
	if (strcmp(list, "blocked") && strcmp(list, "allowed"))
		return;
	if (policy_id_entry_check(entry, why, sizeof(why)) < 0) {
		log_warn("event=list_entry_skipped list=%s error=\"%s\"", list, why);
		return;
	}
	if (a->n[k] == a->cap[k]) {
		size_t nc = a->cap[k] ? 2 * a->cap[k] : 64;
		const char **nv = realloc(a->v[k], nc * sizeof(*nv));
		if (!nv) {
			a->failed = 1;
			return;
		}
		a->v[k] = nv;
		a->cap[k] = nc;
	}
	if (!(a->v[k][a->n[k]] = strdup(entry)))
		a->failed = 1;
	else
		a->n[k]++;
}

static void add_db_rule(void *arg, int64_t id, const char *text)
{
	struct rule_acc *a = arg;
	struct policy_rule r;
	char e[256];
	if (policy_rule_parse(text, &r, e, sizeof(e)) < 0) {
		log_warn("event=rule_skipped id=%lld error=\"%s\"", (long long)id, e);
		return;
	}
	if (!r.name[0])
		snprintf(r.name, sizeof(r.name), "db%lld", (long long)id);
	if (acc_push(a, &r) < 0)
		a->failed = 1;
}

struct policy *gate_build_policy(const struct gw_config *c, struct inventory *inv, char *err,
				 size_t errsz)
{
	return gate_build_policy_with(c, inv, NULL, err, errsz);
}

struct policy *gate_build_policy_with(const struct gw_config *c, struct inventory *inv,
				      const struct policy_rule *extra, char *err, size_t errsz)
{
	struct rule_acc a = {.err = err, .errsz = errsz};
	struct policy *p = NULL;
	const char **blocked = NULL, **allowed = NULL, **fams = NULL;
	struct id_acc ids = {0};
	err[0] = 0;
	for (int i = 0; i < c->policy.nrules; i++) {
		struct policy_rule r;
		char e[256];
		if (policy_rule_parse(c->policy.rules[i].text, &r, e, sizeof(e)) < 0) {
			size_t l = strlen(err);
			snprintf(err + l, errsz - l, "%s%s:%d: rule: %s", l ? "\n" : "",
				 config_text_file(c, &c->policy.rules[i]), c->policy.rules[i].line,
				 e);
			a.failed = 1;
			continue;
		}
		if (!r.name[0])
			snprintf(r.name, sizeof(r.name), "%s:%d",
				 config_text_file(c, &c->policy.rules[i]), c->policy.rules[i].line);
		if (acc_push(&a, &r) < 0)
			a.failed = 1;
	}
	/* The file's list entries, checked here with their lines (as its
	 * rules are): policy_new would name only an index. */
	static const char *const list_key[2] = {"blocked_device_ids", "allowed_device_ids"};
	const struct cfg_text *list[2] = {c->policy.blocked_ids, c->policy.allowed_ids};
	const int nlist[2] = {c->policy.nblocked, c->policy.nallowed};
	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < nlist[k]; i++) {
			char e[256];
			if (policy_id_entry_check(list[k][i].text, e, sizeof(e)) == 0)
				continue;
			size_t l = strlen(err);
			snprintf(err + l, errsz - l, "%s%s:%d: policy.%s: %s", l ? "\n" : "",
				 config_text_file(c, &list[k][i]), list[k][i].line, list_key[k], e);
			a.failed = 1;
		}
	}
	if (a.failed)
		goto out;
	if (inv) {
		inv_foreach_rule(inv, add_db_rule, &a);
		inv_foreach_list(inv, add_db_list, &ids);
	}
	if (ids.failed)
		goto out;
	if (extra && acc_push(&a, extra) < 0)
		goto out;
	blocked = calloc((size_t)c->policy.nblocked + ids.n[0] + 1, sizeof(char *));
	allowed = calloc((size_t)c->policy.nallowed + ids.n[1] + 1, sizeof(char *));
	fams = calloc((size_t)c->policy.nfamilies + 1, sizeof(char *));
	if (!blocked || !allowed || !fams)
		goto out;
	for (int i = 0; i < c->policy.nblocked; i++)
		blocked[i] = c->policy.blocked_ids[i].text;
	for (int i = 0; i < c->policy.nallowed; i++)
		allowed[i] = c->policy.allowed_ids[i].text;
	for (size_t i = 0; i < ids.n[0]; i++)
		blocked[c->policy.nblocked + (int)i] = ids.v[0][i];
	for (size_t i = 0; i < ids.n[1]; i++)
		allowed[c->policy.nallowed + (int)i] = ids.v[1][i];
	for (int i = 0; i < c->policy.nfamilies; i++)
		fams[i] = c->policy.families[i];
	struct policy_config pc = {
	    .default_access = c->policy.default_access,
	    .rules = a.rules,
	    .n_rules = a.n,
	    .blocked_ids = blocked,
	    .n_blocked = (size_t)c->policy.nblocked + ids.n[0],
	    .allowed_ids = allowed,
	    .n_allowed = (size_t)c->policy.nallowed + ids.n[1],
	};
	pc.incubation.enabled = c->policy.incubation;
	pc.incubation.days = c->policy.incubation_days;
	pc.incubation.families = fams;
	pc.incubation.n_families = (size_t)c->policy.nfamilies;
	p = policy_new(&pc, err, errsz);
out:
	for (int k = 0; k < 2; k++) {
		for (size_t i = 0; i < ids.n[k]; i++)
			free((char *)ids.v[k][i]);
		free(ids.v[k]);
	}
	free(a.rules);
	free(blocked);
	free(allowed);
	free(fams);
	return p;
}

/* --- lifecycle ------------------------------------------------------------------ */

int gate_load_builds(const struct gw_config *c, char *err, size_t errsz)
{
	if (!c->policy.ios_builds[0])
		return osver_builds_load_default() < 0 ? -1 : 0;
	FILE *f = fopen(c->policy.ios_builds, "r");
	if (!f) {
		snprintf(err, errsz, "%s: %s", c->policy.ios_builds, strerror(errno));
		return -1;
	}
	char *buf = malloc(1 << 20);
	size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
	fclose(f);
	if (!buf)
		return -1;
	int r = osver_builds_load(buf, n, err, errsz);
	free(buf);
	return r < 0 ? -1 : 0;
}

/* FNV-1a over the runtime rules (id and text): has the rule set changed? */
static void fp_rule(void *arg, int64_t id, const char *text)
{
	uint64_t *h = arg;
	const unsigned char *p = (const unsigned char *)&id;
	for (size_t i = 0; i < sizeof(id); i++)
		*h = (*h ^ p[i]) * 0x100000001b3ull;
	for (p = (const unsigned char *)(text ? text : ""); *p; p++)
		*h = (*h ^ *p) * 0x100000001b3ull;
	*h = (*h ^ 0xff) * 0x100000001b3ull; /* end of text */
}

static void fp_list(void *arg, const char *list, const char *entry)
{
	fp_rule(arg, list[0], entry);
}

/* ... and over the runtime personal lists: both compile into the policy. */
static uint64_t rules_fingerprint(struct gate *g)
{
	uint64_t h = 0xcbf29ce484222325ull;
	if (inv_foreach_rule(g->inv, fp_rule, &h) < 0 || inv_foreach_list(g->inv, fp_list, &h) < 0)
		return 0; /* unreadable: forces a rebuild (0 is never stored) */
	return h ? h : 1;
}

struct gate *gate_new(const struct gate_opts *o, char *err, size_t errsz)
{
	char path[PATH_MAX + 32];
	struct gate *g = calloc(1, sizeof(*g));
	if (!g) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	g->cfg = o->cfg;
	g->shm = o->shm;
	g->slot = o->worker_slot;
	g->event_fd = o->event_fd;
	g->t = o->throttle;
	g->sight = o->sightings;
	g->dev = calloc(DEV_CACHE, sizeof(*g->dev));
	g->udev = calloc(UDEV_CACHE, sizeof(*g->udev));
	g->ver = calloc(VER_CACHE, sizeof(*g->ver));
	if (!g->dev || !g->udev || !g->ver || siphash_key_random(&g->hkey) < 0) {
		snprintf(err, errsz, "out of memory");
		goto fail;
	}
	if (!osver_builds_count() && gate_load_builds(o->cfg, err, errsz) < 0)
		goto fail;
	gate_inventory_path(o->cfg, path, sizeof(path));
	g->inv = inv_open(path, 1, err, errsz);
	if (!g->inv)
		goto fail;
	g->gen = __atomic_load_n(&o->shm->policy_gen, __ATOMIC_ACQUIRE);
	g->rules_fp = rules_fingerprint(g);
	g->pol = gate_build_policy(o->cfg, g->inv, err, errsz);
	if (!g->pol)
		goto fail;
	return g;
fail:
	gate_free(g);
	return NULL;
}

void gate_free(struct gate *g)
{
	if (!g)
		return;
	policy_free(g->pol);
	inv_close(g->inv);
	free(g->dev);
	free(g->udev);
	free(g->ver);
	free(g);
}

/*
 * Something changed (an admin command, a reload, or a device's new
 * DeviceInformation): forget what we cached. The config rules of a worker
 * never change (a reload starts new workers), so the policy is recompiled
 * only when the runtime rules did: generations published for device news
 * must stay cheap with a thousand rules.
 */
static void refresh(struct gate *g)
{
	uint64_t gen = __atomic_load_n(&g->shm->policy_gen, __ATOMIC_ACQUIRE);
	if (gen == g->gen)
		return;
	g->gen = gen;
	uint64_t fp = rules_fingerprint(g);
	if (fp && fp == g->rules_fp)
		return;
	char err[512];
	struct policy *np = gate_build_policy(g->cfg, g->inv, err, sizeof(err));
	if (np) {
		policy_free(g->pol);
		g->pol = np;
		g->rules_fp = fp;
	} else {
		log_err("event=policy_rebuild_failed error=\"%s\" note=\"previous policy kept\"",
			err);
	}
}

/* --- caches ---------------------------------------------------------------------- */

/* snprintf(dst, cap, "%s", src) without the format machinery (a NULL src
 * gives ""): gate_decide and gate_done copy several per request. */
static void copy_str(char *dst, size_t cap, const char *src)
{
	if (!src)
		src = "";
	/* a loop, not strnlen: src may be an array shorter than cap */
	size_t n = 0;
	while (n + 1 < cap && src[n])
		n++;
	memcpy(dst, src, n);
	dst[n] = 0;
}

static uint64_t dev_key(const struct gate *g, const char *user, const char *device_id)
{
	/* "user\0device_id", lower-cased, cut to the buffer (neither is longer
	 * than its EAS_*_MAX): no snprintf, it runs twice per request */
	char buf[EAS_USER_MAX + EAS_DEVID_MAX + 2];
	size_t ul = strnlen(user, sizeof(buf) - 1);
	size_t dl = strnlen(device_id, sizeof(buf) - 1 - ul - (ul < sizeof(buf) - 1));
	memcpy(buf, user, ul);
	size_t n = ul;
	if (n < sizeof(buf) - 1)
		buf[n++] = 0;
	memcpy(buf + n, device_id, dl);
	n += dl;
	for (size_t i = 0; i < n; i++)
		if (buf[i] >= 'A' && buf[i] <= 'Z')
			buf[i] = (char)(buf[i] + 32);
	return siphash24(&g->hkey, buf, n) | 1;
}

/* The cached entry of key k in either cache (any generation), or NULL. */
static struct dev_entry *dev_cached(struct gate *g, uint64_t k)
{
	struct dev_entry *e = &g->dev[k % DEV_CACHE];
	if (e->key == k)
		return e;
	e = &g->udev[k % UDEV_CACHE];
	return e->key == k ? e : NULL;
}

/* Take model and OS from the device's sighting (another worker may have
 * read its DeviceInformation). */
static void sight_pull(struct gate *g, struct dev_entry *e, int64_t now)
{
	struct sighting *x = malloc(sizeof(*x));
	if (x && sighting_get(g->sight, e->skey, now, x)) {
		if (x->ev.di.model[0])
			copy_str(e->model, sizeof(e->model), x->ev.di.model);
		if (x->ev.di.os[0])
			copy_str(e->os, sizeof(e->os), x->ev.di.os);
		e->sight_seq = x->di_seq;
	}
	free(x);
}

/*
 * The device of request r, from the caches or the inventory. *fresh: it was
 * loaded now and has no inventory row (a first sighting, for this worker).
 * A device without a row is checked against its sighting on every request
 * (a bucket scan, only for unauthenticated devices): DeviceInformation
 * another worker read, or its authentication, show at once.
 */
static struct dev_entry *dev_get(struct gate *g, const struct eas_req *r, int64_t now, int *fresh)
{
	uint64_t k = dev_key(g, r->identity, r->device_id);
	*fresh = 0;
	struct dev_entry *e = &g->dev[k % DEV_CACHE];
	if (e->key == k && e->gen == g->gen)
		return e;
	struct dev_entry *u = &g->udev[k % UDEV_CACHE];
	if (u->key == k && u->gen == g->gen) {
		uint32_t seq;
		int gone;
		if (!g->sight || !sighting_peek(g->sight, u->skey, now, &seq, &gone))
			return u;
		if (!gone) {
			if (seq != u->sight_seq)
				sight_pull(g, u, now);
			return u;
		}
		/* authenticated (on another worker): its row, once committed */
		struct inv_device *d = malloc(sizeof(*d));
		int found = d && inv_get_device(g->inv, r->identity, r->device_id, d) == 1;
		free(d);
		if (!found) {
			u->sight_gone = 1;
			return u;
		}
		u->gen = 0; /* reload below into the inventory cache */
	}
	/* Same device, older generation: what its DeviceInformation said stays
	 * true even if the master has not applied and committed it yet (the
	 * event is in flight). Without this, a new generation in that moment
	 * made the worker forget the OS of a phone it had just blocked for it. */
	char model[sizeof(e->model)] = "", os[sizeof(e->os)] = "";
	int64_t reported = 0;
	struct dev_entry *old = e->key == k ? e : u->key == k ? u : NULL;
	if (old) {
		reported = old->reported_at;
		memcpy(model, old->model, sizeof(model));
		memcpy(os, old->os, sizeof(os));
	}
	/* one entry per device, in the cache its row (or none) says */
	if (e->key == k)
		e->key = 0;
	if (u->key == k)
		u->key = 0;
	struct inv_device d;
	int found = inv_get_device(g->inv, r->identity, r->device_id, &d) == 1;
	e = found ? e : u;
	memset(e, 0, sizeof(*e));
	e->key = k;
	e->gen = g->gen;
	e->reported_at = reported;
	e->last_access = -1;
	e->scoped_access = -1;
	e->answer_access = -1;
	e->in_inv = found;
	e->loop_cmd = -1;
	if (found) {
		e->admin_state = d.admin_state;
		e->loop_until = d.loop_until;
		e->loop_cmd = d.loop_cmd;
		copy_str(e->model, sizeof(e->model), d.device_model[0] ? d.device_model : model);
		copy_str(e->os, sizeof(e->os), d.device_os[0] ? d.device_os : os);
	} else {
		*fresh = 1;
		memcpy(e->model, model, sizeof(model));
		memcpy(e->os, os, sizeof(os));
		if (g->sight) {
			uint32_t seq;
			e->skey = sighting_key(g->sight, r->identity, r->device_id);
			sight_pull(g, e, now);
			/* authenticated elsewhere, its row not committed yet */
			if (sighting_peek(g->sight, e->skey, now, &seq, &e->sight_gone) != 1)
				e->sight_gone = 0;
		}
	}
	return e;
}

static struct ver_entry *ver_get(struct gate *g, const char *os_key, int64_t now)
{
	uint64_t k = siphash24(&g->hkey, os_key, strlen(os_key)) | 1;
	struct ver_entry *e = &g->ver[k % VER_CACHE];
	if (e->key == k && e->gen == g->gen)
		return e;
	memset(e, 0, sizeof(*e));
	e->key = k;
	e->gen = g->gen;
	struct inv_version v;
	if (inv_get_version(g->inv, os_key, &v) == 1) {
		/* 0: listed, but no authenticated request confirmed it yet */
		e->first_seen = v.first_seen ? v.first_seen : now;
		e->approved = v.approved;
	} else {
		e->first_seen = now; /* first seen now; the master records it */
	}
	return e;
}

static void send_event(struct gate *g, const struct inv_event *ev)
{
	if (g->event_fd < 0)
		return;
	if (send(g->event_fd, ev, sizeof(*ev), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* The master is behind: the inventory misses one refresh, the
		 * decision itself is unaffected. */
		if ((g->events_dropped++ & 1023) == 0)
			log_warn("event=inventory_event_dropped count=%llu error=%m",
				 (unsigned long long)g->events_dropped);
	}
}

static void fill_event(struct inv_event *ev, const struct eas_req *r, int64_t now)
{
	memset(ev, 0, sizeof(*ev));
	ev->magic = INV_EVENT_MAGIC;
	ev->now = now;
	ev->cmd = r->cmd;
	copy_str(ev->user, sizeof(ev->user), r->identity);
	copy_str(ev->device_id, sizeof(ev->device_id), r->device_id);
	copy_str(ev->device_type, sizeof(ev->device_type), r->device_type);
	copy_str(ev->user_agent, sizeof(ev->user_agent), r->user_agent);
	copy_str(ev->xmswl, sizeof(ev->xmswl), r->xmswl);
	if (r->proto)
		snprintf(ev->protocol, sizeof(ev->protocol), "%d.%d", r->proto / 10, r->proto % 10);
}

/* --- decisions ----------------------------------------------------------------- */

int gate_wants_body(struct gate *g, const struct eas_req *r)
{
	if (!r->device_id[0])
		return GATE_BODY_NO;
	if (r->cmd == EAS_CMD_PROVISION || r->cmd == EAS_CMD_SETTINGS)
		return GATE_BODY_DEVINFO;
	/* the loop detector needs the body's fingerprint */
	return g->t && throttle_class_loop_threshold(throttle_class_at(g->t, 0), r->cmd) > 0
		   ? GATE_BODY_FINGERPRINT
		   : GATE_BODY_NO;
}

uint64_t gate_fingerprint(struct gate *g, const void *body, size_t n)
{
	return g->t ? throttle_fingerprint(g->t, body, n) : 0;
}

void gate_throttle_done(struct gate *g, const struct throttle_ticket *tt, int http_status)
{
	if (g->t)
		throttle_done(g->t, tt, http_status, throttle_now_ms());
}

static void quarantine_answer(int cmd, struct gate_verdict *v);

/* Budgets and loops (user/decide/throttle.h), after the access decision. */
static void throttle_step(struct gate *g, const struct eas_req *r, const struct policy_input *in,
			  const struct policy_decision *d, uint64_t body_fp, int authed,
			  struct gate_verdict *v, struct throttle_verdict *out)
{
	struct throttle *t = g->t;
	out->event = THROTTLE_EV_NONE;
	out->action = THROTTLE_OK;
	if (!t || d->access == POLICY_BLOCK || r->cmd == EAS_CMD_OPTIONS)
		return;
	struct throttle_req rq = {
	    .device_key = throttle_device_key(t, r->identity, r->device_id),
	    .user_key = throttle_user_key(t, r->identity),
	    .cls = throttle_classify(t, in),
	    .cmd = r->cmd,
	    .fingerprint = body_fp,
	    .authed = authed,
	    .device_id = r->device_id,
	    .user = r->identity,
	    .device_os = d->device_os,
	    .user_agent = r->user_agent,
	};
	struct throttle_verdict tv;
	throttle_check(t, &rq, throttle_now_ms(), &tv);
	*out = tv;
	v->tt = tv.ticket;
	if (tv.event != THROTTLE_EV_NONE) {
		char qu[160], qd[48], qo[160];
		log_warn("event=throttle_%s user=%s device=%s os=%s cmd=%s class=%s reason=%s "
			 "state=%s action=%s retry_after=%u loop_cmd=%s",
			 throttle_event_name(tv.event),
			 log_quote(qu, sizeof(qu), r->identity, (size_t)-1),
			 log_quote(qd, sizeof(qd), r->device_id, (size_t)-1),
			 log_quote(qo, sizeof(qo), d->device_os, (size_t)-1), eas_cmd_name(r->cmd),
			 throttle_class_at(t, (size_t)tv.cls)->name,
			 throttle_reason_name(tv.reason), throttle_state_name(tv.state),
			 throttle_action_name(tv.action), tv.retry_after_s,
			 tv.loop_cmd >= 0 ? eas_cmd_name(tv.loop_cmd) : "-");
	}
	switch (tv.action) {
	case THROTTLE_OK:
		return;
	case THROTTLE_MAX_DEVICES:
		v->action = GATE_ANSWER;
		v->sv = SV_THROTTLE;
		v->eas_status = 177; /* MaximumDevicesReached */
		v->http_status = 403;
		v->empty_ok = 0;
		v->hold_ms = 0;
		break;
	case THROTTLE_LOOP_QUARANTINE:
		v->sv = SV_QUARANTINE;
		v->empty_ok = 0;
		v->hold_ms = 0;
		v->eas_status = 0;
		quarantine_answer(r->cmd, v);
		if (v->action == GATE_FORWARD && (int)r->cmd == tv.loop_cmd) {
			v->action = GATE_ANSWER; /* the looping command never reaches the backend */
			v->eas_status = 130;
			v->http_status = 403;
		}
		break;
	case THROTTLE_THROTTLE:
	case THROTTLE_XDP_DROP:
		v->action = GATE_ANSWER;
		v->sv = SV_THROTTLE;
		v->http_status = 503;
		v->eas_status = 0;
		v->empty_ok = 0;
		v->hold_ms = 0;
		v->retry_after = tv.retry_after_s;
		v->asthrottle = tv.asthrottle;
		if (tv.action == THROTTLE_XDP_DROP) {
			v->xdp_drop = 1;
			v->xdp_reason =
			    tv.reason == THROTTLE_R_LOOP ? EG_REASON_LOOP : EG_REASON_THROTTLED;
			v->xdp_ttl = (unsigned)tv.ttl_s;
		}
		break;
	}
	snprintf(v->rule, sizeof(v->rule), "throttle:%s",
		 throttle_class_at(t, (size_t)tv.cls)->name);
	copy_str(v->why, sizeof(v->why), tv.text);
}

static void quarantine_answer(int cmd, struct gate_verdict *v)
{
	switch (cmd) {
	case EAS_CMD_OPTIONS:
	case EAS_CMD_PROVISION:
	case EAS_CMD_SETTINGS:
	case EAS_CMD_FOLDERSYNC:
		v->action = GATE_FORWARD;
		return;
	case EAS_CMD_SYNC:
	case EAS_CMD_GETITEMESTIMATE:
		v->action = GATE_ANSWER;
		v->empty_ok = 1;
		return;
	case EAS_CMD_PING:
		v->action = GATE_ANSWER;
		v->eas_status = 1;
		v->http_status = 200;
		v->hold_ms = QUARANTINE_HOLD_MS;
		return;
	default:
		v->action = GATE_ANSWER;
		v->eas_status = 130;
		v->http_status = 403;
		return;
	}
}

void gate_decide(struct gate *g, const struct eas_req *r, const struct eas_devinfo *di,
		 uint64_t body_fp, int64_t now, struct gate_verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->action = GATE_FORWARD;
	v->sv = SV_ALLOW;
	if (!r->device_id[0])
		return; /* OPTIONS without a device, Autodiscover: nothing to judge */
	refresh(g);
	int fresh;
	struct dev_entry *e = dev_get(g, r, now, &fresh);
	int new_info = 0;
	if (di) {
		if (di->model[0] && strcmp(e->model, di->model)) {
			copy_str(e->model, sizeof(e->model), di->model);
			new_info = 1;
		}
		if (di->os[0] && strcmp(e->os, di->os)) {
			copy_str(e->os, sizeof(e->os), di->os);
			new_info = 1;
		}
	}
	struct osver ov;
	osver_effective(e->os, r->user_agent, &ov);
	struct ver_entry *ve = ov.text[0] ? ver_get(g, ov.text, now) : NULL;
	struct policy_input in = {
	    .user = r->identity,
	    .device_id = r->device_id,
	    .device_type = r->device_type,
	    .device_model = e->model,
	    .device_os = e->os,
	    .user_agent = r->user_agent,
	    .xmswl = r->xmswl,
	    .cmd = r->cmd,
	    .admin_state = e->admin_state,
	    .os_first_seen = ve ? ve->first_seen : 0,
	    .os_approved = ve ? ve->approved : 0,
	    .now = now,
	};
	struct policy_decision d;
	policy_decide(g->pol, &in, &d);
	v->access = d.access;
	copy_str(v->device_os, sizeof(v->device_os), d.device_os);
	copy_str(v->rule, sizeof(v->rule),
		 d.rule_index >= 0 ? d.rule_name : policy_reason_name(d.reason));
	copy_str(v->why, sizeof(v->why), d.explain);
	if (d.access == POLICY_BLOCK) {
		v->action = GATE_ANSWER;
		v->sv = SV_BLOCK;
		v->eas_status = 129;
		v->http_status = 403;
		v->xdp_drop = 1;
	} else if (d.access == POLICY_QUARANTINE) {
		v->sv = SV_QUARANTINE;
		quarantine_answer(r->cmd, v);
	}
	struct throttle_verdict tv;
	throttle_step(g, r, &in, &d, body_fp, e->in_inv || e->sight_gone, v, &tv);
	if (tv.event == THROTTLE_EV_QUARANTINE && tv.remaining_s && (e->in_inv || e->sight_gone)) {
		/* Quarantined for looping here: on every node of a farm too (the
		 * device's row carries it; inventory.h INV_EV_LOOP). */
		struct inv_event ev;
		fill_event(&ev, r, now);
		ev.flags = INV_EV_LOOP;
		ev.loop_cmd = tv.loop_cmd;
		ev.loop_s = (int32_t)tv.remaining_s;
		send_event(g, &ev);
		e->loop_until = now + tv.remaining_s;
		e->loop_cmd = tv.loop_cmd;
	} else if (tv.action == THROTTLE_OK && e->loop_until > now && d.access != POLICY_BLOCK &&
		   r->cmd != EAS_CMD_OPTIONS) {
		/* Quarantined for looping by another node (or before a restart):
		 * answered as this node's throttle answers its own loops. The
		 * gateway's own answer is no success of the device: it must not
		 * count towards a loop here (the ticket ends now, uncounted). */
		if (g->t) {
			throttle_done(g->t, &v->tt, 0, throttle_now_ms());
			memset(&v->tt, 0, sizeof(v->tt));
		}
		v->sv = SV_QUARANTINE;
		v->empty_ok = 0;
		v->hold_ms = 0;
		v->eas_status = 0;
		quarantine_answer(r->cmd, v);
		if (v->action == GATE_FORWARD && (int)r->cmd == e->loop_cmd) {
			v->action = GATE_ANSWER;
			v->eas_status = 130;
			v->http_status = 403;
		}
		snprintf(v->rule, sizeof(v->rule), "loop:quarantine");
		snprintf(v->why, sizeof(v->why), "quarantined for looping (%s) until %lld",
			 e->loop_cmd >= 0 ? eas_cmd_name(e->loop_cmd) : "?",
			 (long long)e->loop_until);
	}
	e->answer_access = d.access;
	/*
	 * Some decisions are about this request, not the device, and must not
	 * become its state in the inventory:
	 *  - OPTIONS is let through whatever the state (a blocked iPhone probing
	 *    with OPTIONS used to show up as Allowed);
	 *  - a rule scoped to commands ("block MeetingResponse") refuses those
	 *    commands while the phone keeps syncing mail: it is not Blocked (its
	 *    row flipped between Blocked and Allowed with the last command).
	 * Both still show in the access log, and scoped ones in decision logs.
	 */
	int is_options = d.reason == POLICY_R_OPTIONS;
	const struct policy_rule *pr =
	    d.rule_index >= 0 ? policy_rule_at(g->pol, (size_t)d.rule_index) : NULL;
	int scoped = pr && pr->cmds;
	int *seen = scoped ? &e->scoped_access : &e->last_access;
	/* Log a decision once per device and state change, not per request
	 * (the access log already carries verdict and rule for each). */
	if (!is_options && (d.access != *seen || new_info)) {
		char qu[160], qd[48], qo[160];
		log_info("event=decision user=%s device=%s os=%s access=%s reason=%s rule=\"%s\" "
			 "why=\"%s\"",
			 log_quote(qu, sizeof(qu), r->identity, (size_t)-1),
			 log_quote(qd, sizeof(qd), r->device_id, (size_t)-1),
			 log_quote(qo, sizeof(qo), d.device_os, (size_t)-1),
			 policy_access_name(d.access), policy_reason_name(d.reason), v->rule,
			 d.explain);
	}
	int device_level = !is_options && !scoped;
	int changed = device_level && (d.access != e->last_access || strcmp(e->os_key, d.os_key));
	if (fresh || new_info || changed || di || now - e->reported_at >= REPORT_EVERY_S) {
		struct inv_event ev;
		fill_event(&ev, r, now);
		ev.flags = (device_level ? INV_EV_DECISION : 0) | (di ? INV_EV_DEVINFO : 0);
		ev.access = d.access;
		ev.reason = d.reason;
		copy_str(ev.rule, sizeof(ev.rule), d.rule_index >= 0 ? d.rule_name : "");
		copy_str(ev.os_key, sizeof(ev.os_key), d.os_key);
		copy_str(ev.os_family, sizeof(ev.os_family), ov.family);
		if (di)
			ev.di = *di;
		/* Authenticated on another worker, its row not written yet:
		 * the sightings refuse it, the master has its row's event
		 * (sent before the sighting was hidden, on the same socket)
		 * and applies this one after it. */
		if (e->in_inv || e->sight_gone) {
			send_event(g, &ev);
			e->reported_at = now;
		} else if (g->sight && !is_options &&
			   !(v->sv == SV_THROTTLE && v->http_status == 503)) {
			/* Not authenticated: the bounded sightings table, never the
			 * inventory. Neither OPTIONS (it makes no device, and is
			 * never throttled) nor requests the budget refused are
			 * noted: a flood costs a table write only while admitted. */
			uint32_t seq;
			int noted = sighting_note(g->sight, e->skey, &ev, &seq);
			if (noted >= 0)
				e->sight_seq = seq;
			if (noted == SIGHTING_GONE) {
				e->sight_gone = 1;
				send_event(g, &ev);
			}
			e->reported_at = now;
		}
	}
	if (!is_options)
		*seen = d.access;
	if (device_level) {
		if (strcmp(e->os_key, d.os_key))
			e->authed_reported = 0;
		copy_str(e->os_key, sizeof(e->os_key), d.os_key);
		copy_str(e->os_family, sizeof(e->os_family), ov.family);
	}
}

/* A command's bit in dev_entry.result_cmds. */
_Static_assert(EAS_CMD__COUNT <= 64, "a command's bit must fit result_cmds");
static uint64_t cmd_bit(int cmd)
{
	return cmd >= 0 && cmd < 64 ? 1ull << cmd : 0;
}

/*
 * The first authenticated answer of a device without an inventory row: its
 * row is created now, from its sighting (the decision, User-Agent and
 * DeviceInformation its requests carried, possibly on other workers), and
 * it takes its place among its user's max_devices. e may be NULL (the cache
 * entry was reused meanwhile).
 */
static void promote(struct gate *g, struct dev_entry *e, const char *identity,
		    const char *device_id, int cmd, int http_status, int64_t now)
{
	struct inv_event *ev = calloc(1, sizeof(*ev));
	struct sighting *x = calloc(1, sizeof(*x));
	if (!ev || !x)
		goto out;
	uint64_t skey = e ? e->skey : g->sight ? sighting_key(g->sight, identity, device_id) : 0;
	uint32_t seq = 0; /* a sighting's di_seq is never 0 */
	if (g->sight && sighting_get(g->sight, skey, now, x)) {
		*ev = x->ev;
		seq = x->di_seq;
	} else {
		/* Never noted (the table was busy, or a flood displaced it):
		 * the row starts with what this worker knows; later decisions
		 * fill in the rest. */
		struct eas_req *r = calloc(1, sizeof(*r));
		if (!r)
			goto out;
		copy_str(r->identity, sizeof(r->identity), identity);
		copy_str(r->device_id, sizeof(r->device_id), device_id);
		r->cmd = cmd;
		fill_event(ev, r, now);
		free(r);
		ev->flags = INV_EV_DECISION;
		if (e && (e->model[0] || e->os[0])) {
			copy_str(ev->di.model, sizeof(ev->di.model), e->model);
			copy_str(ev->di.os, sizeof(ev->di.os), e->os);
			ev->flags |= INV_EV_DEVINFO;
		}
	}
	ev->magic = INV_EVENT_MAGIC;
	ev->now = now;
	/* The row's state: this worker's device-level decision if it made one. */
	if (e && e->last_access >= 0)
		ev->access = e->last_access;
	else if (ev->access < 0)
		ev->access = e ? e->answer_access : POLICY_ALLOW;
	/* The OS version this success proves (incubation clock). */
	if (e && e->os_key[0]) {
		copy_str(ev->os_key, sizeof(ev->os_key), e->os_key);
		copy_str(ev->os_family, sizeof(ev->os_family), e->os_family);
	}
	ev->flags = (ev->flags & (INV_EV_DECISION | INV_EV_DEVINFO)) | INV_EV_AUTHED;
	send_event(g, ev);
	/* Then the answer itself, under the access it was given with (a
	 * quarantined phone's relayed FolderSync is not a successful sync). */
	ev->flags = INV_EV_RESULT;
	ev->cmd = cmd;
	ev->status = http_status;
	ev->access = e ? e->answer_access : -1;
	send_event(g, ev);
	/* DeviceInformation another worker noted since the read above: sent
	 * after the row's event, it reaches the row (and this worker knows it). */
	if (g->sight && sighting_forget(g->sight, skey, now, x) && x->di_seq != seq) {
		x->ev.flags &= INV_EV_DEVINFO | (x->ev.access >= 0 ? INV_EV_DECISION : 0);
		send_event(g, &x->ev);
		if (e && x->ev.di.model[0])
			copy_str(e->model, sizeof(e->model), x->ev.di.model);
		if (e && x->ev.di.os[0])
			copy_str(e->os, sizeof(e->os), x->ev.di.os);
	}
	if (g->t)
		throttle_authenticated(g->t, throttle_device_key(g->t, identity, device_id),
				       throttle_user_key(g->t, identity), throttle_now_ms());
	if (e) {
		/* It lives in the inventory cache from now on. */
		struct dev_entry *to = &g->dev[e->key % DEV_CACHE];
		if (to != e) {
			*to = *e;
			e->key = 0;
			e = to;
		}
		e->in_inv = 1;
		e->authed_reported = 1;
		e->last_status = http_status;
		e->result_access = e->answer_access;
		e->result_at = now;
		e->result_cmds = cmd_bit(cmd);
	}
out:
	free(ev);
	free(x);
}

void gate_done(struct gate *g, const char *identity, const char *device_id, int cmd,
	       int http_status, int from_backend, int64_t now)
{
	/* An OPTIONS answer says nothing about whether the phone syncs, nor
	 * (some backends answer it without credentials) who it is. */
	if (cmd == EAS_CMD_OPTIONS)
		return;
	uint64_t k = dev_key(g, identity, device_id);
	struct dev_entry *e = dev_cached(g, k);
	/* A 2xx from the backend proves the credentials: the only way a device
	 * becomes authenticated (gate.h). */
	int ok = from_backend && http_status >= 200 && http_status < 300;
	int in_inv = e ? e->in_inv : 0;
	if (!e && ok) {
		struct inv_device *d = malloc(sizeof(*d));
		in_inv = d && inv_get_device(g->inv, identity, device_id, d) == 1;
		free(d);
	}
	if (!in_inv) {
		if (ok)
			promote(g, e, identity, device_id, cmd, http_status, now);
		else if (g->sight)
			sighting_result(g->sight,
					e ? e->skey : sighting_key(g->sight, identity, device_id),
					http_status, now);
		return;
	}
	struct eas_req r;
	memset(&r, 0, sizeof(r));
	copy_str(r.identity, sizeof(r.identity), identity);
	copy_str(r.device_id, sizeof(r.device_id), device_id);
	int known = e != NULL;
	/* The access the answer was given under (gate_decide just set it; -1 if
	 * the request never got that far or the entry was taken since). The
	 * inventory counts a 2xx as a successful sync only when it is
	 * POLICY_ALLOW: the 200 of a status-129 envelope or of a quarantined
	 * "no changes" Sync is the gateway refusing, not the phone syncing. */
	int access = known ? e->answer_access : -1;
	/* The first backend 2xx for this OS version starts its incubation clock:
	 * that one is never folded into an earlier, identical-looking result
	 * (a quarantined phone's 200 envelope looks the same). */
	int authed = known && ok && e->os_key[0];
	/* Folded: the same answer to the same command within the minute. An
	 * answer to another command is news (a quarantined phone's held Sync
	 * after its relayed FolderSync: both 200); a phone alternating Ping and
	 * Sync costs two events a minute, not one per request. */
	int same = known && e->last_status == http_status && e->result_access == access &&
		   now - e->result_at < REPORT_EVERY_S;
	if (same && (e->result_cmds & cmd_bit(cmd)) && (!authed || e->authed_reported))
		return;
	if (known && same) {
		e->result_cmds |= cmd_bit(cmd);
	} else if (known) {
		e->last_status = http_status;
		e->result_access = access;
		e->result_at = now;
		e->result_cmds = cmd_bit(cmd);
	}
	struct inv_event ev;
	fill_event(&ev, &r, now);
	ev.cmd = cmd;
	ev.flags = INV_EV_RESULT;
	ev.status = http_status;
	ev.access = access;
	if (authed) {
		e->authed_reported = 1;
		ev.flags |= INV_EV_AUTHED;
		copy_str(ev.os_key, sizeof(ev.os_key), e->os_key);
		copy_str(ev.os_family, sizeof(ev.os_family), e->os_family);
	}
	send_event(g, &ev);
}
