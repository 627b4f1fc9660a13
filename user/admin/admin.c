/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* admin.c - see admin.h. */
#include "admin.h"
#include "command.h"
#include "devhist.h"
#include "dryrun.h"
#include "eas_cmd.h"
#include "gate.h"
#include "inventory.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "osver.h"
#include "policy.h"
#include "sighting.h"
#include "fmt.h"
#include "store.h"
#include "throttle.h"
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH_MAX 512 /* events per transaction */

struct admin {
	struct loop *loop;
	const struct gw_config *cfg;
	struct shm *shm;
	struct store *store;   /* owned: where the inventory and the shared policy live */
	struct inventory *inv; /* the store's local file (reads) */
	struct store_hooks up; /* the master's hooks (secret, ready, node) */
	char path[PATH_MAX + 32];
	int ev_rd, ev_wr; /* datagram socketpair: workers write, we read */
	struct loop_io ev_io;
	unsigned pending;
	uint64_t events, bad_events;
	struct throttle *throttle; /* not owned */
	struct notify *notify;	   /* not owned; NULL = no notices */
	struct devhist *hist;	   /* recent decisions per device (console, `device history`) */
	/* OS versions known to exist in the inventory, so that "new OS version
	 * first seen" costs one read per version, not per event. Cleared when full. */
	char (*os_known)[96];
	unsigned n_os_known;
	/* Loop quarantines already told (device key, events count), bounded. */
	struct {
		uint64_t key;
		uint32_t n;
	} loops_told[1024];
	unsigned n_loops_told;
	/* devices seen but not authenticated (owned: this process's view; the
	 * workers inherit the mapping) */
	struct sighting_table *sight;
};

#define OS_KNOWN_MAX 4096

/* The control table is static; the admin is a per-process singleton. */
static struct admin *the_admin;

static void commit(struct admin *a)
{
	a->pending = 0;
	store_batch_commit(a->store); /* also what the store itself wrote meanwhile */
}

static void on_events(struct loop_io *io, uint32_t ev);

/*
 * Bring the inventory up to date before an admin command reads or writes it:
 * apply the events already queued on the socket, then commit. A worker sends
 * its event before it answers the phone, so whatever a phone has been answered
 * is in the inventory when easctl looks (the control socket and the event
 * socket are served by the same loop in no fixed order: without this,
 * `easctl device approve` right after a phone's first request said "no
 * device", and `easctl devices` missed it).
 */
static void sync_events(struct admin *a)
{
	on_events(&a->ev_io, 0);
	commit(a);
}

/*
 * A new generation: workers drop their caches (and, if the runtime rules
 * changed, recompile) on their next request. It must be committed before the
 * generation moves, or a worker could rebuild from the old data and never
 * look again.
 */
static void publish_gen(struct admin *a)
{
	commit(a);
	__atomic_add_fetch(&a->shm->policy_gen, 1, __ATOMIC_ACQ_REL);
}

/*
 * Publish an admin change. Admin writes run outside the event batch
 * (sync_events() first) and are visible to readers when this is called.
 */
static void bump_gen(struct admin *a)
{
	sync_events(a);
	publish_gen(a);
}

/* --- notices from the event stream ---------------------------------------------------- */

static int os_known(struct admin *a, const char *os_key)
{
	for (unsigned i = 0; i < a->n_os_known; i++)
		if (!strcasecmp(a->os_known[i], os_key))
			return 1;
	if (a->n_os_known >= OS_KNOWN_MAX)
		a->n_os_known = 0; /* forget: costs a read per version again */
	snprintf(a->os_known[a->n_os_known++], sizeof(a->os_known[0]), "%s", os_key);
	return 0;
}

/*
 * Before an event is applied, the inventory still says what the device was:
 * a decision event that turns it Quarantined is a new quarantine (one notice
 * to the admins' batch and one to the user), and an OS version the inventory
 * never listed is new. A quarantine an admin set is audited, not noticed.
 */
static void notice_before_apply(struct admin *a, const struct inv_event *e)
{
	if ((e->flags & INV_EV_DECISION) && e->access == POLICY_QUARANTINE &&
	    e->reason != POLICY_R_ADMIN) {
		struct inv_device *d = malloc(sizeof(*d));
		if (d && inv_get_device(a->inv, e->user, e->device_id, d) != 1)
			memset(d, 0, sizeof(*d));
		if (d && strcmp(d->access_state, "Quarantined")) {
			struct notify_item it = {.at = e->now};
			it.kind = e->reason == POLICY_R_INCUBATION ? NOTE_QUARANTINE_INCUBATION
				  : e->reason == POLICY_R_RULE	   ? NOTE_QUARANTINE_RULE
								   : NOTE_QUARANTINE_DEFAULT;
			snprintf(it.user, sizeof(it.user), "%s", e->user);
			snprintf(it.device_id, sizeof(it.device_id), "%s", e->device_id);
			const char *model = (e->flags & INV_EV_DEVINFO) && e->di.model[0]
						? e->di.model
					    : d->device_model[0] ? d->device_model
								 : e->device_type;
			snprintf(it.model, sizeof(it.model), "%s", model);
			snprintf(it.os, sizeof(it.os), "%s", e->os_key);
			snprintf(it.detail, sizeof(it.detail), "%s%s%s",
				 policy_reason_name(e->reason), e->rule[0] ? ": " : "", e->rule);
			notify_post(a->notify, &it);
		}
		free(d);
	}
	if (e->os_key[0] && !os_known(a, e->os_key)) {
		struct inv_version v;
		if (inv_get_version(a->inv, e->os_key, &v) != 1) {
			struct notify_item it = {.kind = NOTE_NEW_OS, .at = e->now};
			snprintf(it.os, sizeof(it.os), "%s", e->os_key);
			snprintf(it.detail, sizeof(it.detail), "family %s, first seen from %s",
				 e->os_family[0] ? e->os_family : "?", e->device_type);
			notify_post(a->notify, &it);
		}
	}
}

static int loop_row(void *arg, const struct throttle_info *d)
{
	struct admin *a = arg;
	uint32_t n = d->events[THROTTLE_EV_QUARANTINE];
	if (!n)
		return 0;
	unsigned i = 0;
	while (i < a->n_loops_told && a->loops_told[i].key != d->device_key)
		i++;
	if (i < a->n_loops_told && a->loops_told[i].n >= n)
		return 0;
	if (i == a->n_loops_told) {
		if (a->n_loops_told == sizeof(a->loops_told) / sizeof(a->loops_told[0]))
			i = a->n_loops_told = 0; /* full: start over (may repeat a notice) */
		a->n_loops_told++;
	}
	a->loops_told[i].key = d->device_key;
	a->loops_told[i].n = n;
	struct notify_item it = {.kind = NOTE_LOOP_QUARANTINE, .at = time(NULL)};
	snprintf(it.user, sizeof(it.user), "%s", d->user);
	snprintf(it.device_id, sizeof(it.device_id), "%s", d->device_id);
	snprintf(it.os, sizeof(it.os), "%s", d->device_os);
	snprintf(it.model, sizeof(it.model), "%s", d->user_agent);
	snprintf(it.detail, sizeof(it.detail), "looping command %s",
		 d->loop_cmd >= 0 ? eas_cmd_name(d->loop_cmd) : "?");
	notify_post(a->notify, &it);
	return 0;
}

static void on_events(struct loop_io *io, uint32_t ev)
{
	struct admin *a = io->arg;
	struct inv_event e;
	int news = 0;
	for (int i = 0; i < 4096; i++) {
		ssize_t n = recv(a->ev_rd, &e, sizeof(e), MSG_DONTWAIT);
		if (n < 0)
			break;
		if ((size_t)n != sizeof(e) || e.magic != INV_EVENT_MAGIC) {
			a->bad_events++;
			continue;
		}
		e.user[sizeof(e.user) - 1] = 0;
		e.device_id[sizeof(e.device_id) - 1] = 0;
		e.rule[sizeof(e.rule) - 1] = 0;
		e.os_key[sizeof(e.os_key) - 1] = 0;
		e.os_family[sizeof(e.os_family) - 1] = 0;
		if (!a->pending && store_batch_begin(a->store) < 0)
			break;
		devhist_note(a->hist, &e);
		if (a->notify)
			notice_before_apply(a, &e);
		int r = store_apply(a->store, &e);
		if (r >= 0)
			a->events++;
		news |= r > 0;
		if (++a->pending >= BATCH_MAX)
			commit(a);
	}
	/*
	 * A phone's DeviceInformation named a new model or OS: the worker that
	 * read it decided with it, but the others may hold the device in their
	 * caches (an OPTIONS or a parallel Ping) and, at most a batch later, on
	 * a cache miss, would still find the old row. Publish it now, like an
	 * admin change: otherwise a phone blocked for its OS passed on its next
	 * connection. Rare (a new device, an OS upgrade), and a new generation
	 * only costs each cached device one indexed read.
	 */
	if (news)
		publish_gen(a);
}

void admin_set_throttle(struct admin *a, struct throttle *t)
{
	a->throttle = t;
}

void admin_set_notify(struct admin *a, struct notify *n)
{
	if (a)
		a->notify = n;
}

struct inventory *admin_inventory(struct admin *a)
{
	return a->inv;
}

const struct gw_config *admin_config(struct admin *a)
{
	return a->cfg;
}

void admin_sync(struct admin *a)
{
	sync_events(a);
}

void admin_publish(struct admin *a)
{
	bump_gen(a);
}

/*
 * The audit line of a change: who (the command layer's actor), when, what,
 * before and after. A change made through the store carries its line
 * (store_op.audit): written with it, atomically, only if it was made; in a
 * farm into the farm's audit table, with this node's name. So easctl and
 * the console cannot differ in what they record, and a change the store
 * refused (the farm's database down) leaves no line.
 */
static struct inv_audit *audit_new(const char *what, const char *before, const char *after)
{
	const struct command_actor *who = command_actor();
	struct inv_audit *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->at = time(NULL);
	command_actor_text(who, r->who, sizeof(r->who));
	snprintf(r->source, sizeof(r->source), "%s", who ? who->source : "");
	snprintf(r->what, sizeof(r->what), "%s", what ? what : "");
	snprintf(r->before, sizeof(r->before), "%s", before ? before : "");
	snprintf(r->after, sizeof(r->after), "%s", after ? after : "");
	return r;
}

/* The log's copy of a line that was written. */
static void audit_log(const struct inv_audit *r, const char *node)
{
	char qw[300], qs[100], qwhat[600], qb[1100], qa[1100], qn[140];
	log_info("event=audit node=%s who=%s source=%s what=%s before=%s after=%s",
		 log_quote(qn, sizeof(qn), node, (size_t)-1),
		 log_quote(qw, sizeof(qw), r->who, (size_t)-1),
		 log_quote(qs, sizeof(qs), r->source, (size_t)-1),
		 log_quote(qwhat, sizeof(qwhat), r->what, (size_t)-1),
		 log_quote(qb, sizeof(qb), r->before, (size_t)-1),
		 log_quote(qa, sizeof(qa), r->after, (size_t)-1));
}

static void audit_written(void *arg, const struct store_result *res)
{
	struct inv_audit *r = arg;
	if (res->rc > 0)
		audit_log(r, the_admin ? store_node_name(the_admin->store) : "");
	else
		log_warn("event=audit_failed what=\"%s\" error=\"%s\"", r->what, res->msg);
	free(r);
}

/* A line alone: what happened on this node and only here (a reload, a
 * throttle forgiven), after it happened. */
void admin_audit(struct admin *a, const char *what, const char *before, const char *after)
{
	struct inv_audit *r = audit_new(what, before, after);
	if (!r)
		return;
	sync_events(a); /* never inside the event batch */
	struct store_op op = {.kind = STORE_OP_AUDIT, .audit = r, .now = r->at};
	store_change(a->store, &op, audit_written, r);
}

int admin_event_fd(const struct admin *a)
{
	return a ? a->ev_wr : -1;
}

struct sighting_table *admin_sightings(const struct admin *a)
{
	return a ? a->sight : NULL;
}

/* The store says something decisions read changed (here, on another node,
 * or in the database): publish it, after the events already queued. */
static void store_changed(void *arg)
{
	bump_gen(arg);
}

static void store_secret(void *arg, const char *hex)
{
	struct admin *a = arg;
	if (a->up.secret)
		a->up.secret(a->up.arg, hex);
}

static void store_ready(void *arg)
{
	struct admin *a = arg;
	if (a->up.ready)
		a->up.ready(a->up.arg);
}

static void store_node(void *arg, struct inv_node *self)
{
	struct admin *a = arg;
	self->policy_gen = (int64_t)__atomic_load_n(&a->shm->policy_gen, __ATOMIC_ACQUIRE);
	if (a->up.node)
		a->up.node(a->up.arg, self);
}

struct admin *admin_new(struct loop *l, const struct gw_config *c, struct shm *s,
			const struct store_hooks *up, char *err, size_t errsz)
{
	struct admin *a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	a->loop = l;
	a->cfg = c;
	a->shm = s;
	a->ev_rd = a->ev_wr = -1;
	if (up)
		a->up = *up;
	a->hist = devhist_new();
	a->os_known = calloc(OS_KNOWN_MAX, sizeof(a->os_known[0]));
	if (!a->hist || !a->os_known) {
		snprintf(err, errsz, "out of memory");
		goto fail;
	}
	gate_inventory_path(c, a->path, sizeof(a->path));
	/* Set before the store opens: it may call the hooks at once. */
	the_admin = a;
	struct store_hooks h = {.arg = a,
				.changed = store_changed,
				.secret = store_secret,
				.ready = store_ready,
				.node = store_node};
	a->store = store_open(l, c, &h, err, errsz);
	if (!a->store)
		goto fail;
	a->inv = store_inventory(a->store);
	a->sight = sighting_new(SIGHTING_SLOTS, err, errsz);
	if (!a->sight)
		goto fail;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0) {
		snprintf(err, errsz, "socketpair: %s", strerror(errno));
		goto fail;
	}
	a->ev_rd = sv[0];
	a->ev_wr = sv[1];
	int big = 4 << 20;
	setsockopt(a->ev_rd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(a->ev_wr, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (loop_io_add_lt(l, &a->ev_io, a->ev_rd, on_events, a) < 0) {
		snprintf(err, errsz, "epoll: %s", strerror(errno));
		goto fail;
	}
	if (admin_check_config(a, c, err, errsz) < 0)
		goto fail;
	return a;
fail:
	admin_free(a);
	return NULL;
}

void admin_free(struct admin *a)
{
	if (!a)
		return;
	if (a->ev_rd >= 0) {
		on_events(&a->ev_io, 0);
		loop_io_del(a->loop, &a->ev_io);
		close(a->ev_rd);
		close(a->ev_wr);
	}
	if (a->store)
		commit(a);
	store_free(a->store);
	sighting_free(a->sight);
	if (the_admin == a)
		the_admin = NULL;
	devhist_free(a->hist);
	free(a->os_known);
	free(a);
}

int admin_check_config(struct admin *a, const struct gw_config *c, char *why, size_t whysz)
{
	struct policy *p = gate_build_policy(c, a ? a->inv : NULL, why, whysz);
	if (!p)
		return -1;
	policy_free(p);
	return 0;
}

void admin_config_changed(struct admin *a, const struct gw_config *c)
{
	a->cfg = c;
	store_config_changed(a->store, c);
	bump_gen(a);
}

void admin_tick(struct admin *a)
{
	commit(a);
	store_tick(a->store);
	/* Loop quarantines are found by walking the throttle's offenders: only
	 * when a notice would reach someone. Each walk reads every offender,
	 * and a flood of claims fills that shared table: the master would map
	 * up to all of it (t_claimed_identity: +4 MiB RSS in a flood). */
	if (notify_wanted(a->notify) && a->throttle)
		throttle_foreach(a->throttle, THROTTLE_F_ACTIVE, throttle_now_ms(), loop_row, a);
}

void admin_forget_in_child(struct admin *a)
{
	if (a)
		store_forget_in_child(a->store);
}

int admin_store_waiting(const struct admin *a)
{
	return a && a->store && store_waiting(a->store);
}

void admin_describe_store(struct admin *a, struct sbuf *o)
{
	if (a && a->store)
		store_describe(a->store, o);
}

void admin_chown_state(struct admin *a, uid_t uid, gid_t gid)
{
	static const char *const sfx[] = {"", "-wal", "-shm"};
	for (int i = 0; i < 3; i++) {
		char p[PATH_MAX + 64];
		snprintf(p, sizeof(p), "%s%s", a->path, sfx[i]);
		if (chown(p, uid, gid) < 0 && errno != ENOENT)
			log_warn("event=chown_failed path=%s error=%m", p);
	}
}

/* --- output helpers ------------------------------------------------------------ */

/* --- devices ------------------------------------------------------------------ */

struct dev_list {
	struct sbuf *o;
	enum command_fmt fmt;
	int n;
	int limit; /* stop after this many (0 = all) */
};

static const char *admin_state_name(int s)
{
	static const char *const n[] = {"", "allow", "block", "quarantine"};
	return s >= 0 && s <= 3 ? n[s] : "?";
}

static int dev_row(void *arg, const struct inv_device *d)
{
	struct dev_list *l = arg;
	struct sbuf *o = l->o;
	char first[32], last[32], ok[32];
	fmt_iso_time(d->first_sync, first, sizeof(first));
	fmt_iso_time(d->last_attempt, last, sizeof(last));
	fmt_iso_time(d->last_success, ok, sizeof(ok));
	const char *model = d->device_model[0] ? d->device_model : d->device_type;
	const char *os = d->device_os[0] ? d->device_os : d->os_key;
	/* The CSV and JSON columns, in the order of the JSON names below. */
	const char *v[] = {d->user,
			   d->device_id,
			   d->device_type,
			   model,
			   os,
			   d->user_agent,
			   d->friendly_name,
			   d->imei,
			   d->mobile_operator,
			   d->protocol,
			   first,
			   last,
			   ok,
			   d->access_state,
			   d->state_reason,
			   d->rule,
			   admin_state_name(d->admin_state),
			   d->last_node};
	enum { NFIELDS = sizeof(v) / sizeof(v[0]) };
	if (l->fmt == FMT_TABLE) {
		sbuf_printf(o, "%-24.24s %-32.32s %-16.16s %-22.22s %-22.22s %-11s %-20s %s\n",
			    d->user, d->device_id, d->device_type, model, os, d->access_state,
			    d->rule[0] ? d->rule : d->state_reason, last);
	} else if (l->fmt == FMT_CSV) {
		for (size_t i = 0; i < NFIELDS; i++) {
			if (i)
				sbuf_put(o, ",", 1);
			fmt_csv_str(o, v[i]);
		}
		sbuf_put(o, "\r\n", 2);
	} else {
		sbuf_printf(o, "%s\n  {", l->n ? "," : "");
		const char *k[] = {"user",	    "device_id",    "device_type",
				   "device_model",  "device_os",    "user_agent",
				   "friendly_name", "imei",	    "mobile_operator",
				   "protocol",	    "first_sync",   "last_sync_attempt",
				   "last_success",  "access_state", "state_reason",
				   "rule",	    "admin_state",  "last_node"};
		_Static_assert(sizeof(k) / sizeof(k[0]) == NFIELDS, "a name for every field");
		for (size_t i = 0; i < NFIELDS; i++) {
			sbuf_printf(o, "%s\"%s\": ", i ? ", " : "", k[i]);
			fmt_json_str(o, v[i]);
		}
		sbuf_put(o, "}", 1);
	}
	l->n++;
	return l->limit && l->n >= l->limit;
}

/* --- unauthenticated sightings (sighting.h) ---------------------------------- */

/* A sighting in the inventory's row shape, for the same listing and filters.
 * first_sync/last_attempt are when it was first and last seen; it never had
 * a success. */
static void sighting_row(const struct sighting *x, struct inv_device *d)
{
	const struct inv_event *e = &x->ev;
	memset(d, 0, sizeof(*d));
	snprintf(d->user, sizeof(d->user), "%s", e->user);
	snprintf(d->device_id, sizeof(d->device_id), "%s", e->device_id);
	snprintf(d->device_type, sizeof(d->device_type), "%s", e->device_type);
	snprintf(d->device_model, sizeof(d->device_model), "%s", e->di.model);
	snprintf(d->device_os, sizeof(d->device_os), "%s", e->di.os);
	snprintf(d->user_agent, sizeof(d->user_agent), "%s", e->user_agent);
	snprintf(d->friendly_name, sizeof(d->friendly_name), "%s", e->di.friendly_name);
	snprintf(d->imei, sizeof(d->imei), "%s", e->di.imei);
	snprintf(d->mobile_operator, sizeof(d->mobile_operator), "%s", e->di.mobile_operator);
	snprintf(d->phone_number, sizeof(d->phone_number), "%s", e->di.phone_number);
	snprintf(d->os_language, sizeof(d->os_language), "%s", e->di.os_language);
	snprintf(d->xmswl, sizeof(d->xmswl), "%s", e->xmswl);
	snprintf(d->protocol, sizeof(d->protocol), "%s", e->protocol);
	snprintf(d->last_cmd, sizeof(d->last_cmd), "%s", eas_cmd_name(e->cmd));
	snprintf(d->os_key, sizeof(d->os_key), "%s", e->os_key);
	d->first_sync = x->first_seen;
	d->last_attempt = x->last_seen;
	d->last_status = x->last_status;
	if (e->access >= 0) {
		snprintf(d->access_state, sizeof(d->access_state), "%s",
			 inv_access_state_name(e->access));
		snprintf(d->state_reason, sizeof(d->state_reason), "%s",
			 policy_reason_name(e->reason));
	}
	snprintf(d->rule, sizeof(d->rule), "%s", e->rule);
}

struct sight_key {
	uint64_t key;
	int64_t last_seen;
};

struct sight_pick {
	const struct inv_match *m;
	struct inv_device *row; /* scratch */
	struct sight_key *keys;
	size_t n, cap;
};

static int sight_pick(void *arg, const struct sighting *x)
{
	struct sight_pick *p = arg;
	sighting_row(x, p->row);
	if (!inv_match(p->m, p->row))
		return 0;
	if (p->n == p->cap) {
		size_t nc = p->cap ? 2 * p->cap : 256;
		void *nk = realloc(p->keys, nc * sizeof(*p->keys));
		if (!nk)
			return 1;
		p->keys = nk;
		p->cap = nc;
	}
	p->keys[p->n].key = x->key;
	p->keys[p->n].last_seen = x->last_seen;
	p->n++;
	return 0;
}

static int by_last_seen_desc(const void *a, const void *b)
{
	int64_t x = ((const struct sight_key *)a)->last_seen;
	int64_t y = ((const struct sight_key *)b)->last_seen;
	return x < y ? 1 : x > y ? -1 : 0;
}

/*
 * The keys of the live sightings matching f, most recently seen first, in
 * p->keys (the caller frees them). The rows are read again when listed
 * (sightings_emit): a device may authenticate or be displaced meanwhile.
 * 0, -1 (no memory), -2 (bad --os-regex).
 */
static int sightings_pick(struct admin *a, const struct inv_filter *f, struct sight_pick *p)
{
	int bad;
	struct inv_match *m = inv_match_new(f, &bad);
	if (!m)
		return bad ? -2 : -1;
	*p = (struct sight_pick){.m = m, .row = malloc(sizeof(struct inv_device))};
	int rc = -1;
	if (p->row) {
		sighting_foreach(a->sight, time(NULL), sight_pick, p);
		if (p->n)
			qsort(p->keys, p->n, sizeof(*p->keys), by_last_seen_desc);
		rc = 0;
	}
	free(p->row);
	p->row = NULL;
	p->m = NULL;
	inv_match_free(m);
	return rc;
}

/*
 * Pass the sightings of keys[*next..n) still live to cb, at most max of
 * them; *next moves past those read. Returns 1 when finished (the end, cb
 * said stop, or no memory), 0 when more are left. *count adds the rows passed.
 */
static int sightings_emit(struct admin *a, const struct sight_key *keys, size_t n, size_t *next,
			  size_t max, int (*cb)(void *arg, const struct inv_device *d), void *arg,
			  int *count)
{
	struct inv_device *row = malloc(sizeof(*row));
	struct sighting *x = malloc(sizeof(*x));
	int64_t now = time(NULL);
	int fin = 1;
	if (row && x) {
		size_t end = *next + max < n ? *next + max : n;
		fin = 0;
		while (!fin && *next < end) {
			if (!sighting_get(a->sight, keys[(*next)++].key, now, x))
				continue; /* authenticated or displaced meanwhile */
			sighting_row(x, row);
			++*count;
			fin = cb(arg, row) != 0;
		}
		fin |= *next >= n;
	}
	free(row);
	free(x);
	return fin;
}

/*
 * Call cb for each live sighting matching f, most recently seen first (the
 * table is bounded: SIGHTING_SLOTS). Returns how many, -1 (no memory), -2
 * (bad --os-regex).
 */
static int foreach_sighting(struct admin *a, const struct inv_filter *f,
			    int (*cb)(void *arg, const struct inv_device *d), void *arg)
{
	struct sight_pick p;
	int r = sightings_pick(a, f, &p);
	if (r < 0)
		return r;
	size_t next = 0;
	int n = 0;
	sightings_emit(a, p.keys, p.n, &next, p.n, cb, arg, &n);
	free(p.keys);
	return n;
}

/* A listing walks the inventory a page per loop pass (command_defer): 2,000
 * rows take about 5 ms here, so a 100,000-device export never holds the
 * master's loop (events, health checks, the watchdog) for long. The
 * unauthenticated listing (--unauthenticated) walks the sightings the same
 * way: their keys, picked and sorted at the first step (a bounded table),
 * then a page of rows per step. */
#define DEVICES_PAGE 2000

struct devices_job {
	struct command_job job;
	struct dev_list l;
	struct inv_cursor cur;
	struct inv_filter f;
	char user[EAS_USER_MAX + 1], os[256], re[256], state[32], dev[EAS_DEVID_MAX + 1];
	int unauth;	      /* list sightings, not the inventory */
	int picked;	      /* unauth: keys taken */
	struct sight_pick sp; /* unauth: the keys (sp.keys owned) */
	size_t next;	      /* unauth: next key to list */
};

/* One page of sightings; -1 no memory, -2 bad regex, 1 finished, 0 more. */
static int sightings_step(struct devices_job *dj)
{
	if (!dj->picked) {
		int r = sightings_pick(the_admin, &dj->f, &dj->sp);
		if (r < 0)
			return r;
		dj->picked = 1;
	}
	int n = 0;
	return sightings_emit(the_admin, dj->sp.keys, dj->sp.n, &dj->next, DEVICES_PAGE, dev_row,
			      &dj->l, &n);
}

static int devices_step(struct command_job *j, struct sbuf *out, enum ctl_code *code)
{
	struct devices_job *dj = (struct devices_job *)j;
	dj->l.o = out;
	int r, fin;
	if (dj->unauth) {
		r = sightings_step(dj);
		fin = r == 1;
	} else {
		r = inv_devices_page(the_admin->inv, &dj->cur, DEVICES_PAGE, &dj->f, dev_row,
				     &dj->l);
		fin = dj->cur.done;
	}
	if (r < 0) {
		out->len = 0;
		if (r == -2)
			sbuf_printf(out, "--os-regex: invalid regular expression");
		else
			sbuf_printf(out, "out of memory");
		*code = r == -2 ? CTL_USAGE : CTL_FAILED;
		return 1;
	}
	if (!fin)
		return 0;
	if (dj->l.fmt == FMT_JSON)
		sbuf_put(out, "\n]\n", 3);
	*code = CTL_OK;
	return 1;
}

static void devices_free(struct command_job *j)
{
	free(((struct devices_job *)j)->sp.keys);
	free(j);
}

enum ctl_code admin_cmd_devices(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct admin *a = the_admin;
	/* a flag without a value: taken out before the key-value options */
	int unauth = 0;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--unauthenticated")) {
			unauth = 1;
			memmove(&argv[i], &argv[i + 1], (size_t)(argc - i - 1) * sizeof(*argv));
			argc--;
			break;
		}
	const char *user = NULL, *os = NULL, *re = NULL, *state = NULL, *fmt = NULL, *dev = NULL,
		   *limit = NULL;
	const struct command_opt opts[] = {{"user", &user},   {"os", &os},	{"os-regex", &re},
					   {"state", &state}, {"format", &fmt}, {"device-id", &dev},
					   {"limit", &limit}, {NULL, NULL}};
	char *pos[1];
	int np;
	struct dev_list l = {.o = out};
	if (command_parse_opts(argc, argv, 1, opts, pos, &np, 0, out) < 0 ||
	    command_parse_fmt(fmt, &l.fmt) < 0) {
		if (!out->len)
			sbuf_printf(out, "--format must be table, csv or json");
		return CTL_USAGE;
	}
	l.limit = limit ? atoi(limit) : 0;
	if (l.limit < 0) {
		sbuf_printf(out, "--limit must be a count");
		return CTL_USAGE;
	}
	struct devices_job *j = calloc(1, sizeof(*j));
	if (!j)
		return CTL_FAILED;
	j->job.step = devices_step;
	j->job.free = devices_free;
	j->l = l;
	j->unauth = unauth;
	snprintf(j->user, sizeof(j->user), "%s", user ? user : "");
	snprintf(j->os, sizeof(j->os), "%s", os ? os : "");
	snprintf(j->re, sizeof(j->re), "%s", re ? re : "");
	snprintf(j->state, sizeof(j->state), "%s", state ? state : "");
	snprintf(j->dev, sizeof(j->dev), "%s", dev ? dev : "");
	j->f = (struct inv_filter){.user = j->user,
				   .os_glob = j->os,
				   .os_regex = j->re,
				   .state = j->state,
				   .device_id = j->dev};
	sync_events(a);
	if (l.fmt == FMT_TABLE)
		sbuf_printf(out, "%-24s %-32s %-16s %-22s %-22s %-11s %-20s %s\n", "USER",
			    "DEVICE_ID", "TYPE", "MODEL", "OS", "STATE", "RULE", "LAST_SYNC");
	else if (l.fmt == FMT_CSV)
		sbuf_printf(out, "user,device_id,device_type,device_model,device_os,user_agent,"
				 "friendly_name,imei,mobile_operator,protocol,first_sync,"
				 "last_sync_attempt,last_success,access_state,state_reason,rule,"
				 "admin_state,last_node\r\n");
	else
		sbuf_put(out, "[", 1);
	command_defer(&j->job);
	return CTL_OK;
}

struct find_one {
	struct inv_device d;
	const char *user;
	int n;
};

static int find_cb(void *arg, const struct inv_device *d)
{
	struct find_one *f = arg;
	if (f->user && f->user[0] && strcasecmp(f->user, d->user))
		return 0;
	if (!f->n)
		f->d = *d;
	f->n++;
	return 0;
}

/* Resolve DeviceId (+ optional user) to exactly one device. */
static enum ctl_code one_device(struct admin *a, const char *user, const char *dev,
				struct inv_device *d, struct sbuf *out)
{
	struct find_one *f = calloc(1, sizeof(*f));
	if (!f)
		return CTL_FAILED;
	f->user = user;
	sync_events(a);
	inv_find_device_id(a->inv, dev, 1000, find_cb, f);
	enum ctl_code rc = CTL_OK;
	if (!f->n) {
		sbuf_printf(out, "no device %s%s%s", dev, user ? " for user " : "",
			    user ? user : "");
		rc = CTL_NOTFOUND;
	} else if (f->n > 1) {
		sbuf_printf(out, "device %s is used by %d users: add --user", dev, f->n);
		rc = CTL_USAGE;
	} else {
		*d = f->d;
	}
	free(f);
	return rc;
}

static void show_device(struct sbuf *o, const struct inv_device *d, int authenticated)
{
	char t1[32], t2[32], t3[32];
	fmt_iso_time(d->first_sync, t1, sizeof(t1));
	fmt_iso_time(d->last_attempt, t2, sizeof(t2));
	fmt_iso_time(d->last_success, t3, sizeof(t3));
	sbuf_printf(o,
		    "User:             %s\nDeviceId:         %s\nDeviceType:       %s\n"
		    "DeviceModel:      %s\nDeviceOS:         %s\nEffectiveOS:      %s\n"
		    "UserAgent:        %s\nFriendlyName:     %s\nIMEI:             %s\n"
		    "MobileOperator:   %s\nPhoneNumber:      %s\nOSLanguage:       %s\n"
		    "X-MS-WL:          %s\nProtocolVersion:  %s\nLastCommand:      %s\n"
		    "FirstSync:        %s\nLastSyncAttempt:  %s\nLastSuccessSync:  %s\n"
		    "LastStatus:       %d\nAccessState:      %s\nStateReason:      %s\n"
		    "Rule:             %s\nAdminState:       %s\nAuthenticated:    %s\n"
		    "LastNode:         %s\n",
		    d->user, d->device_id, d->device_type,
		    d->device_model[0] ? d->device_model : d->device_type, d->device_os, d->os_key,
		    d->user_agent, d->friendly_name, d->imei, d->mobile_operator, d->phone_number,
		    d->os_language, d->xmswl, d->protocol, d->last_cmd, t1, t2, t3, d->last_status,
		    d->access_state, d->state_reason, d->rule, admin_state_name(d->admin_state),
		    authenticated ? "yes" : "no (seen, no backend accepted its credentials yet)",
		    d->last_node[0] ? d->last_node : "-");
	if (d->loop_until > time(NULL)) {
		char until[32];
		fmt_iso_time(d->loop_until, until, sizeof(until));
		sbuf_printf(o, "LoopQuarantine:   until %s (%s)\n", until,
			    d->loop_cmd >= 0 ? eas_cmd_name(d->loop_cmd) : "?");
	}
}

static void show_device_json(struct sbuf *o, const struct inv_device *d, int authenticated)
{
	struct dev_list l = {.o = o, .fmt = FMT_JSON, .n = 0};
	dev_row(&l, d);
	/* dev_row wrote "\n  {...}": add what only the one-device view has */
	o->len--; /* the closing brace */
	sbuf_printf(o, ", \"phone_number\": ");
	fmt_json_str(o, d->phone_number);
	sbuf_printf(o, ", \"os_language\": ");
	fmt_json_str(o, d->os_language);
	sbuf_printf(o, ", \"xmswl\": ");
	fmt_json_str(o, d->xmswl);
	sbuf_printf(o, ", \"last_command\": ");
	fmt_json_str(o, d->last_cmd);
	sbuf_printf(o, ", \"os_key\": ");
	fmt_json_str(o, d->os_key);
	sbuf_printf(o, ", \"last_status\": %d, \"authenticated\": %s}\n", d->last_status,
		    authenticated ? "true" : "false");
}

static void device_history(struct admin *a, struct sbuf *o, const struct inv_device *d, int json)
{
	struct devhist_entry e[DEVHIST_RING];
	int n = devhist_get(a->hist, d->user, d->device_id, e);
	if (!json)
		sbuf_printf(o, "%-20s %-16s %-6s %-11s %-16s %s\n", "WHEN", "COMMAND", "STATUS",
			    "ACCESS", "REASON", "RULE");
	else
		sbuf_put(o, "[", 1);
	for (int i = 0; i < n; i++) {
		char when[32];
		fmt_iso_time(e[i].at, when, sizeof(when));
		const char *acc = e[i].access >= 0 ? policy_access_name(e[i].access) : "-";
		const char *why = e[i].reason >= 0 ? policy_reason_name(e[i].reason) : "-";
		if (!json) {
			sbuf_printf(o, "%-20s %-16s %-6d %-11s %-16s %s\n", when,
				    eas_cmd_name(e[i].cmd), e[i].status, acc, why, e[i].rule);
			continue;
		}
		sbuf_printf(o, "%s\n  {\"at\": \"%s\", \"command\": ", i ? "," : "", when);
		fmt_json_str(o, eas_cmd_name(e[i].cmd));
		sbuf_printf(
		    o,
		    ", \"status\": %d, \"access\": \"%s\", \"reason\": \"%s\", \"kind\": \"%s\", "
		    "\"rule\": ",
		    e[i].status, acc, why,
		    (e[i].flags & INV_EV_DECISION) ? "decision"
		    : (e[i].flags & INV_EV_RESULT) ? "answer"
						   : "seen");
		fmt_json_str(o, e[i].rule);
		sbuf_printf(o, ", \"os\": ");
		fmt_json_str(o, e[i].os_key);
		sbuf_put(o, "}", 1);
	}
	if (json)
		sbuf_printf(o, "%s]\n", n ? "\n" : "");
}

struct find_sight {
	struct inv_device d;
	int n;
};

static int find_sight_cb(void *arg, const struct inv_device *d)
{
	struct find_sight *f = arg;
	if (!f->n)
		f->d = *d;
	f->n++;
	return f->n > 1;
}

/*
 * `easctl device VERB ID` of a device the inventory does not have: if it was
 * seen without authenticating, say so (show and history: its sighting and
 * what devhist remembers, CTL_OK; any other verb: CTL_NOTFOUND, there is no
 * device to act on yet). Returns -1 when there is no such sighting either
 * (out untouched).
 */
static int unauthenticated_device(struct admin *a, const char *user, const char *dev,
				  const char *verb, int json, struct inv_device *d,
				  struct sbuf *out)
{
	struct find_sight *f = calloc(1, sizeof(*f));
	struct inv_filter flt = {.user = user, .device_id = dev};
	if (!f || foreach_sighting(a, &flt, find_sight_cb, f) <= 0) {
		free(f);
		return -1;
	}
	*d = f->d;
	out->len = 0;
	int rc = CTL_NOTFOUND;
	if (f->n > 1) {
		sbuf_printf(out, "device %s was seen for %d users (not authenticated): add --user",
			    dev, f->n);
		rc = CTL_USAGE;
	} else if (!strcmp(verb, "show")) {
		if (json)
			show_device_json(out, d, 0);
		else
			show_device(out, d, 0);
		rc = CTL_OK;
	} else if (!strcmp(verb, "history")) {
		device_history(a, out, d, json);
		rc = CTL_OK;
	} else {
		sbuf_printf(out,
			    "%s (%s) was seen but never authenticated (no backend accepted its "
			    "credentials), so it is not a device yet; to let it in before that, "
			    "add a rule: easctl rules add 'allow DeviceId is \"%s\"'",
			    d->device_id, d->user, d->device_id);
	}
	free(f);
	return rc;
}

/*
 * A change waiting for the store (store_change) is a command job
 * (command.h) that waits: its store callback formats the answer, marks it
 * answered and wakes the transport, which steps the job once more to take
 * the answer. With SQLite the answer is there before the job is first
 * stepped; with PostgreSQL it comes when the database committed, the
 * master's loop running meanwhile. A transport that lets go of the job
 * first (client gone, COMMAND_WAIT_MS) detaches it: the store's answer then
 * frees it.
 */
struct pend {
	struct command_job job;
	int answered; /* the store answered: code and out hold the reply */
	int detached; /* the transport let go: the answer frees */
	enum ctl_code code;
	struct sbuf out;
	struct inv_audit *audit; /* the line sent with the change (logged when written) */
	char verb[16];
	char user[EAS_USER_MAX + 1];
	char dev[EAS_DEVID_MAX + 1];
	char text[POLICY_RULE_TEXT_MAX];
	int state;
	int64_t id;
};

static void pend_destroy(struct pend *x)
{
	sbuf_free(&x->out);
	free(x->audit);
	free(x);
}

static int pend_step(struct command_job *j, struct sbuf *out, enum ctl_code *code)
{
	struct pend *x = (struct pend *)j;
	if (!x->answered)
		return COMMAND_WAIT;
	if (x->out.len)
		sbuf_put(out, x->out.p, x->out.len);
	*code = x->code;
	return 1;
}

static void pend_free(struct command_job *j)
{
	struct pend *x = (struct pend *)j;
	if (!x->answered)
		x->detached = 1;
	else
		pend_destroy(x);
}

/* Inside a command: a job that answers when the store does (the command
 * then calls store_change with pend_* callbacks and returns). */
static struct pend *pend_new(const char *verb)
{
	struct pend *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->job.step = pend_step;
	x->job.free = pend_free;
	snprintf(x->verb, sizeof(x->verb), "%s", verb);
	command_defer(&x->job);
	return x;
}

static void audit_log(const struct inv_audit *r, const char *node);

/* The answer (out is taken). r: the store's result; its audit line, if
 * the change made one, is logged. */
static void pend_finish(struct pend *x, const struct store_result *r, enum ctl_code code,
			struct sbuf *out)
{
	if (r && r->rc > 0 && x->audit)
		audit_log(x->audit, store_node_name(the_admin->store));
	x->code = code;
	x->out = *out;
	x->answered = 1;
	if (x->detached) {
		pend_destroy(x);
		return;
	}
	command_wake(&x->job);
}

/* rc < 0: the store's reason; a farm node says the database is away. */
static enum ctl_code store_failed(const struct store_result *r, struct sbuf *out)
{
	sbuf_printf(out, "%s", r->msg[0] ? r->msg : "the change could not be stored");
	return CTL_FAILED;
}

static void device_done(void *arg, const struct store_result *r)
{
	struct pend *x = arg;
	struct sbuf out = {0};
	enum ctl_code code = CTL_OK;
	char qu[EAS_USER_MAX * 4 + 3], qd[EAS_DEVID_MAX * 4 + 3];
	if (r->rc < 0) {
		code = store_failed(r, &out);
	} else if (r->rc == 0) {
		sbuf_printf(&out, "no device %s for user %s", x->dev, x->user);
		code = CTL_NOTFOUND;
	} else if (!strcmp(x->verb, "remove")) {
		log_info("event=admin_device action=remove user=%s device=%s",
			 log_quote(qu, sizeof(qu), x->user, (size_t)-1),
			 log_quote(qd, sizeof(qd), x->dev, (size_t)-1));
		sbuf_printf(&out, "removed %s (%s)\n", x->dev, x->user);
	} else {
		log_info("event=admin_device action=%s user=%s device=%s", x->verb,
			 log_quote(qu, sizeof(qu), x->user, (size_t)-1),
			 log_quote(qd, sizeof(qd), x->dev, (size_t)-1));
		sbuf_printf(&out, "%s: %s (%s) is now %s; effective on its next request\n", x->verb,
			    x->dev, x->user,
			    x->state ? admin_state_name(x->state) : "decided by the rules");
	}
	pend_finish(x, r, code, &out);
}

/* "access=Quarantined (DEFAULT) admin=none": a device's state for audit lines. */
static void device_state_text(const struct inv_device *d, char *out, size_t n)
{
	snprintf(out, n, "access=%s reason=%s%s%s admin=%s",
		 d->access_state[0] ? d->access_state : "?",
		 d->state_reason[0] ? d->state_reason : "?", d->rule[0] ? " rule=" : "", d->rule,
		 d->admin_state ? admin_state_name(d->admin_state) : "none");
}

enum ctl_code admin_cmd_device(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct admin *a = the_admin;
	const char *user = NULL, *fmt = NULL;
	const struct command_opt opts[] = {{"user", &user}, {"format", &fmt}, {NULL, NULL}};
	char *pos[2];
	int np;
	enum command_fmt f;
	if (command_parse_opts(argc, argv, 1, opts, pos, &np, 2, out) < 0)
		return CTL_USAGE;
	if (np != 2 || command_parse_fmt(fmt, &f) < 0 || f == FMT_CSV) {
		sbuf_printf(out, "usage: device show|history|allow|approve|block|quarantine|clear|"
				 "remove DEVICE_ID [--user USER] [--format table|json]");
		return CTL_USAGE;
	}
	struct inv_device *d = malloc(sizeof(*d));
	if (!d)
		return CTL_FAILED;
	enum ctl_code rc = one_device(a, user, pos[1], d, out);
	if (rc == CTL_NOTFOUND) {
		int u = unauthenticated_device(a, user, pos[1], pos[0], f == FMT_JSON, d, out);
		if (u >= 0) {
			rc = (enum ctl_code)u;
			goto done;
		}
	}
	if (rc != CTL_OK)
		goto done;
	const char *verb = pos[0];
	int state = -1;
	enum store_op_kind kind = STORE_OP_DEVICE_STATE;
	char before[256], what[300], after[64];
	device_state_text(d, before, sizeof(before));
	snprintf(what, sizeof(what), "device %s %s (user %s)", verb, d->device_id, d->user);
	if (!strcmp(verb, "show")) {
		if (f == FMT_JSON)
			show_device_json(out, d, 1);
		else
			show_device(out, d, 1);
		goto done;
	} else if (!strcmp(verb, "history")) {
		device_history(a, out, d, f == FMT_JSON);
		goto done;
	} else if (!strcmp(verb, "allow") || !strcmp(verb, "approve")) {
		state = 1;
	} else if (!strcmp(verb, "block")) {
		state = 2;
	} else if (!strcmp(verb, "quarantine")) {
		state = 3;
	} else if (!strcmp(verb, "clear")) {
		state = 0;
	} else if (!strcmp(verb, "remove")) {
		kind = STORE_OP_DEVICE_REMOVE;
	} else {
		sbuf_printf(out, "unknown action '%s'", verb);
		rc = CTL_USAGE;
		goto done;
	}
	struct pend *x = pend_new(verb);
	if (!x) {
		rc = CTL_FAILED;
		goto done;
	}
	snprintf(x->user, sizeof(x->user), "%s", d->user);
	snprintf(x->dev, sizeof(x->dev), "%s", d->device_id);
	x->state = state;
	if (kind == STORE_OP_DEVICE_REMOVE)
		snprintf(after, sizeof(after), "removed from the inventory");
	else
		snprintf(after, sizeof(after), "admin=%s",
			 state ? admin_state_name(state) : "none");
	x->audit = audit_new(what, before, after);
	struct store_op op = {.kind = kind,
			      .user = d->user,
			      .device_id = d->device_id,
			      .state = state,
			      .now = time(NULL),
			      .audit = x->audit};
	store_change(a->store, &op, device_done, x);
	rc = CTL_OK; /* the answer is the job's */
done:
	free(d);
	return rc;
}

/* --- rules -------------------------------------------------------------------- */

struct rule_list {
	struct sbuf *o;
	int n;
	int json;
	int64_t find; /* rule_find: the id looked for */
	char text[POLICY_RULE_TEXT_MAX];
};

static void rule_row(void *arg, int64_t id, const char *text)
{
	struct rule_list *l = arg;
	if (l->json) {
		sbuf_printf(l->o, "%s{\"id\": \"db%lld\", \"text\": ", l->n ? ", " : "",
			    (long long)id);
		fmt_json_str(l->o, text);
		sbuf_put(l->o, "}", 1);
	} else {
		sbuf_printf(l->o, "db%-6lld %s\n", (long long)id, text);
	}
	l->n++;
}

static void rule_find(void *arg, int64_t id, const char *text)
{
	struct rule_list *l = arg;
	if (id == l->find)
		snprintf(l->text, sizeof(l->text), "%s", text);
}

static enum ctl_code rules_test(struct admin *a, int argc, char **argv, struct sbuf *out)
{
	const char *user = "", *dev = "TESTDEVICE", *type = "", *model = "", *os = "", *ua = "",
		   *wl = "", *cmd = "Sync", *admin = NULL, *first = NULL;
	const struct command_opt opts[] = {{"user", &user},   {"device-id", &dev},
					   {"type", &type},   {"model", &model},
					   {"os", &os},	      {"ua", &ua},
					   {"xmswl", &wl},    {"cmd", &cmd},
					   {"admin", &admin}, {"first-seen-days-ago", &first},
					   {NULL, NULL}};
	char *pos[1];
	int np;
	if (command_parse_opts(argc, argv, 2, opts, pos, &np, 0, out) < 0)
		return CTL_USAGE;
	char err[512];
	struct policy *p = gate_build_policy(a->cfg, a->inv, err, sizeof(err));
	if (!p) {
		sbuf_printf(out, "policy does not compile: %s", err);
		return CTL_FAILED;
	}
	int c = eas_cmd_parse(cmd, strlen(cmd));
	struct osver ov;
	osver_effective(os, ua, &ov);
	int64_t now = time(NULL);
	struct inv_version v = {0};
	int have_v = ov.text[0] && inv_get_version(a->inv, ov.text, &v) == 1;
	struct policy_input in = {
	    .user = user,
	    .device_id = dev,
	    .device_type = type,
	    .device_model = model,
	    .device_os = os,
	    .user_agent = ua,
	    .xmswl = wl,
	    .cmd = c,
	    .admin_state = admin ? atoi(admin) : 0,
	    .os_first_seen = first ? now - (int64_t)atoi(first) * 86400
				   : (have_v && v.first_seen ? v.first_seen : 0),
	    .os_approved = have_v ? v.approved : 0,
	    .now = now,
	};
	struct policy_decision d;
	policy_decide(p, &in, &d);
	/* "#N" is the rule's number in `easctl rules list` and in the
	 * explanation ("rule N ..."): both count from 1. */
	char num[24] = "";
	if (d.rule_index >= 0)
		snprintf(num, sizeof(num), " #%d", d.rule_index + 1);
	sbuf_printf(out,
		    "access:      %s\nreason:      %s\nrule:        %s%s\nmodel:       %s\n"
		    "os:          %s\nos_key:      %s\nexplanation: %s\n",
		    policy_access_name(d.access), policy_reason_name(d.reason),
		    d.rule_index >= 0 ? d.rule_name : "-", num, d.device_model, d.device_os,
		    d.os_key, d.explain);
	policy_free(p);
	return CTL_OK;
}

static void rule_done(void *arg, const struct store_result *r)
{
	struct pend *x = arg;
	struct sbuf out = {0};
	enum ctl_code code = CTL_OK;
	if (r->rc < 0) {
		code = store_failed(r, &out);
	} else if (!strcmp(x->verb, "add")) {
		log_info("event=admin_rule action=add id=%lld rule=\"%s\"", (long long)r->id,
			 x->text);
		sbuf_printf(&out, "added db%lld: %s\n", (long long)r->id, x->text);
		if (x->audit) { /* as the store wrote it (store.h) */
			snprintf(x->audit->what, sizeof(x->audit->what), "rules add db%lld",
				 (long long)r->id);
			snprintf(x->audit->after, sizeof(x->audit->after), "db%lld: %s",
				 (long long)r->id, x->text);
		}
	} else if (r->rc == 0) {
		sbuf_printf(&out, "no rule db%lld", (long long)x->id);
		code = CTL_NOTFOUND;
	} else {
		log_info("event=admin_rule action=remove id=%lld", (long long)x->id);
		sbuf_printf(&out, "removed db%lld\n", (long long)x->id);
	}
	pend_finish(x, r, code, &out);
}

/* The rules as the console shows them: number, text, where it comes from
 * (the config file, or dbN: added at run time, removable). */
static void rules_json(struct admin *a, const struct policy *p, struct sbuf *o)
{
	sbuf_printf(
	    o, "{\"default\": \"%s\", \"incubation\": %s, \"incubation_days\": %u, \"rules\": [",
	    policy_access_name(a->cfg->policy.default_access),
	    a->cfg->policy.incubation ? "true" : "false", a->cfg->policy.incubation_days);
	size_t nfile = (size_t)a->cfg->policy.nrules;
	for (size_t i = 0; i < policy_rule_count(p); i++) {
		const struct policy_rule *r = policy_rule_at(p, i);
		char text[POLICY_RULE_TEXT_MAX];
		policy_rule_format(r, text, sizeof(text));
		sbuf_printf(o, "%s\n  {\"n\": %zu, \"text\": ", i ? "," : "", i + 1);
		fmt_json_str(o, text);
		sbuf_printf(o, ", \"name\": ");
		fmt_json_str(o, r->name);
		sbuf_printf(o, ", \"source\": \"%s\"}", i < nfile ? "config" : "runtime");
	}
	sbuf_printf(o, "%s], \"runtime\": [", policy_rule_count(p) ? "\n" : "");
	struct rule_list l = {.o = o, .json = 1};
	inv_foreach_rule(a->inv, rule_row, &l);
	sbuf_printf(o, "]}\n");
}

enum ctl_code admin_cmd_rules(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct admin *a = the_admin;
	const char *verb = argc > 1 ? argv[1] : "list";
	if (!strcmp(verb, "list")) {
		char err[512];
		struct policy *p = gate_build_policy(a->cfg, a->inv, err, sizeof(err));
		if (!p) {
			sbuf_printf(out, "policy does not compile: %s", err);
			return CTL_FAILED;
		}
		if (argc == 4 && !strcmp(argv[2], "--format") && !strcmp(argv[3], "json")) {
			rules_json(a, p, out);
			policy_free(p);
			return CTL_OK;
		}
		sbuf_printf(out, "# default access: %s; incubation: %s",
			    policy_access_name(a->cfg->policy.default_access),
			    a->cfg->policy.incubation ? "on" : "off");
		if (a->cfg->policy.incubation)
			sbuf_printf(out, " (%u days)", a->cfg->policy.incubation_days);
		sbuf_printf(out, "\n# rules in evaluation order of the file; per request the "
				 "characteristic order decides (see README)\n");
		for (size_t i = 0; i < policy_rule_count(p); i++) {
			char text[POLICY_RULE_TEXT_MAX];
			policy_rule_format(policy_rule_at(p, i), text, sizeof(text));
			sbuf_printf(out, "%-4zu %s\n", i + 1, text);
		}
		policy_free(p);
		return CTL_OK;
	}
	if (!strcmp(verb, "add")) {
		if (argc != 3) {
			sbuf_printf(out, "usage: rules add '<access> <characteristic> <op> "
					 "\"pattern\" [cmd C] [name \"n\"]'");
			return CTL_USAGE;
		}
		struct policy_rule r;
		char err[256];
		if (policy_rule_parse(argv[2], &r, err, sizeof(err)) < 0) {
			sbuf_printf(out, "rule refused: %s", err);
			return CTL_USAGE;
		}
		struct pend *x = pend_new("add");
		if (!x)
			return CTL_FAILED;
		policy_rule_format(&r, x->text, sizeof(x->text));
		sync_events(a);
		/* what and after name the new id: made by the store (store.h) */
		x->audit = audit_new("", "", "");
		struct store_op op = {.kind = STORE_OP_RULE_ADD,
				      .text = x->text,
				      .now = time(NULL),
				      .audit = x->audit};
		store_change(a->store, &op, rule_done, x);
		return CTL_OK; /* the answer is the job's */
	}
	if (!strcmp(verb, "remove")) {
		if (argc != 3) {
			sbuf_printf(out, "usage: rules remove dbID (rules from the config file are "
					 "changed there)");
			return CTL_USAGE;
		}
		const char *id = argv[2];
		if (!strncmp(id, "db", 2))
			id += 2;
		char *end;
		long long v = strtoll(id, &end, 10);
		if (*end || v <= 0) {
			sbuf_printf(out, "rule ids look like db12 (see: easctl rules list)");
			return CTL_USAGE;
		}
		struct pend *x = pend_new("remove");
		if (!x)
			return CTL_FAILED;
		x->id = v;
		sync_events(a);
		char what[64], before[POLICY_RULE_TEXT_MAX + 32];
		struct rule_list *found = calloc(1, sizeof(*found));
		if (found) {
			found->find = v;
			inv_foreach_rule(a->inv, rule_find, found);
		}
		snprintf(what, sizeof(what), "rules remove db%lld", v);
		snprintf(before, sizeof(before), "db%lld: %s", v, found ? found->text : "?");
		free(found);
		x->audit = audit_new(what, before, "");
		struct store_op op = {
		    .kind = STORE_OP_RULE_REMOVE, .id = v, .now = time(NULL), .audit = x->audit};
		store_change(a->store, &op, rule_done, x);
		return CTL_OK; /* the answer is the job's */
	}
	if (!strcmp(verb, "runtime")) {
		struct rule_list l = {.o = out};
		inv_foreach_rule(a->inv, rule_row, &l);
		return CTL_OK;
	}
	if (!strcmp(verb, "test"))
		return rules_test(a, argc, argv, out);
	if (!strcmp(verb, "dryrun"))
		return dryrun_command(a, argc, argv, out);
	if (!strcmp(verb, "precedence")) {
		sbuf_printf(out, "%s\n", policy_precedence_doc());
		return CTL_OK;
	}
	sbuf_printf(out, "usage: rules list|add|remove|test|dryrun|runtime|precedence");
	return CTL_USAGE;
}

/* --- versions -------------------------------------------------------------------- */

struct ver_list {
	struct sbuf *o;
	struct admin *a;
	int only_incubating;
	int json;
	int n;
	int64_t now;
};

/*
 * Whether incubation holds v at `now` when it is not approved (as the policy's
 * step 7 decides for its phones), with the day it ends in *until. When it
 * does not, why (in why): the words a refused approval answers with. One
 * answer for the listing and for approve, so that the console offers
 * Approve exactly where easctl would accept it.
 */
static int version_held(const struct gw_config *c, const struct inv_version *v, int64_t now,
			int64_t *until, char *why, size_t whysz)
{
	/* A version approved before it was seen has no family in its row: the
	 * policy takes it from the OS text, so does this. */
	const char *fam = v->family;
	struct osver o;
	if (!fam[0] && osver_parse(v->os_key, &o) == 0)
		fam = o.family;
	int fam_ok = !c->policy.nfamilies;
	for (int i = 0; i < c->policy.nfamilies; i++)
		fam_ok |= !strcasecmp(c->policy.families[i], fam);
	/* first_seen 0 (or no row): seen, but no authenticated request yet: the
	 * clock has not started, the version incubates from whenever that happens. */
	int64_t start = v->first_seen ? v->first_seen : now;
	*until = start + (int64_t)c->policy.incubation_days * 86400;
	if (!c->policy.incubation) {
		snprintf(why, whysz, "incubation is off");
		return 0;
	}
	if (!fam_ok) {
		snprintf(why, whysz, "the %s family does not incubate (policy.incubation.families)",
			 fam[0] ? fam : "unknown");
		return 0;
	}
	if (now >= *until) {
		char end[32];
		fmt_iso_time(*until, end, sizeof(end));
		snprintf(why, whysz, "its incubation ended at %s", end);
		return 0;
	}
	return 1;
}

static int ver_row(void *arg, const struct inv_version *v)
{
	struct ver_list *l = arg;
	const struct gw_config *c = l->a->cfg;
	int64_t until;
	char why[160];
	int held = version_held(c, v, l->now, &until, why, sizeof(why));
	int incubating = !v->approved && held;
	if (l->only_incubating && !incubating)
		return 0;
	char first[32], end[32];
	fmt_iso_time(v->first_seen, first, sizeof(first));
	fmt_iso_time(until, end, sizeof(end));
	const char *state = v->approved ? "approved" : incubating ? "incubating" : "released";
	if (l->json) {
		sbuf_printf(l->o, "%s\n  {\"os\": ", l->n++ ? "," : "");
		fmt_json_str(l->o, v->os_key);
		sbuf_printf(l->o, ", \"family\": ");
		fmt_json_str(l->o, v->family);
		sbuf_printf(
		    l->o,
		    ", \"first_seen\": \"%s\", \"state\": \"%s\", \"incubating_until\": \"%s\", "
		    "\"devices\": %d}",
		    first, state, incubating ? end : "-", v->devices);
		return 0;
	}
	sbuf_printf(l->o, "%-30.30s %-8s %-21s %-12s %-21s %d\n", v->os_key, v->family, first,
		    v->approved	 ? "approved"
		    : incubating ? "incubating"
				 : "released",
		    incubating ? end : "-", v->devices);
	return 0;
}

static void version_done(void *arg, const struct store_result *r)
{
	struct pend *x = arg;
	struct sbuf out = {0};
	enum ctl_code code = CTL_OK;
	if (r->rc < 0) {
		code = store_failed(r, &out);
	} else {
		log_info("event=admin_version action=%s os=\"%s\"", x->verb, x->text);
		sbuf_printf(&out, "%s: %s\n", x->verb, x->text);
	}
	pend_finish(x, r, code, &out);
}

enum ctl_code admin_cmd_versions(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct admin *a = the_admin;
	const char *verb = argc > 1 ? argv[1] : "list";
	if (!strcmp(verb, "list") || !strcmp(verb, "incubating")) {
		struct ver_list l = {.o = out, .a = a, .now = time(NULL)};
		l.only_incubating = !strcmp(verb, "incubating");
		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "--incubating"))
				l.only_incubating = 1;
			else if (!strcmp(argv[i], "--format") && i + 1 < argc &&
				 (!strcmp(argv[i + 1], "json") || !strcmp(argv[i + 1], "table")))
				l.json = !strcmp(argv[++i], "json");
			else {
				sbuf_printf(out, "usage: versions list [--incubating] [--format "
						 "table|json]");
				return CTL_USAGE;
			}
		}
		sync_events(a);
		if (l.json)
			sbuf_printf(out, "{\"incubation\": %s, \"days\": %u, \"versions\": [",
				    a->cfg->policy.incubation ? "true" : "false",
				    a->cfg->policy.incubation_days);
		else
			sbuf_printf(out, "%-30s %-8s %-21s %-12s %-21s %s\n", "OS", "FAMILY",
				    "FIRST_SEEN", "STATE", "INCUBATING_UNTIL", "DEVICES");
		inv_foreach_version(a->inv, ver_row, &l);
		if (l.json)
			sbuf_printf(out, "%s]}\n", l.n ? "\n" : "");
		return CTL_OK;
	}
	if ((!strcmp(verb, "approve") || !strcmp(verb, "revoke")) && argc == 3) {
		sync_events(a);
		struct inv_version old = {0};
		char before[64], what[200];
		int seen = inv_get_version(a->inv, argv[2], &old) == 1;
		if (seen)
			snprintf(before, sizeof(before), "approved=%d", old.approved);
		else
			snprintf(before, sizeof(before), "not seen yet");
		if (!seen)
			snprintf(old.os_key, sizeof(old.os_key), "%s", argv[2]);
		/* A change that changes nothing is refused with the reason, never
		 * recorded as done: approving a version no incubation holds would
		 * read in the audit as if it had let phones in. */
		int64_t until;
		char why[160];
		if (!strcmp(verb, "revoke") && !old.approved) {
			sbuf_printf(out, "%s is not approved: nothing to revoke", argv[2]);
			return CTL_CONFLICT;
		}
		if (!strcmp(verb, "approve") && old.approved) {
			sbuf_printf(out, "%s is approved already", argv[2]);
			return CTL_CONFLICT;
		}
		if (!strcmp(verb, "approve") &&
		    !version_held(a->cfg, &old, time(NULL), &until, why, sizeof(why))) {
			sbuf_printf(out, "%s is not held (%s): approving it changes nothing",
				    argv[2], why);
			return CTL_CONFLICT;
		}
		snprintf(what, sizeof(what), "versions %s %s", verb, argv[2]);
		struct pend *x = pend_new(verb);
		if (!x)
			return CTL_FAILED;
		snprintf(x->text, sizeof(x->text), "%s", argv[2]);
		x->audit =
		    audit_new(what, before, !strcmp(verb, "approve") ? "approved=1" : "approved=0");
		struct store_op op = {.kind = STORE_OP_VERSION_APPROVE,
				      .text = x->text,
				      .state = !strcmp(verb, "approve"),
				      .now = time(NULL),
				      .audit = x->audit};
		store_change(a->store, &op, version_done, x);
		return CTL_OK; /* the answer is the job's */
	}
	sbuf_printf(out, "usage: versions [list [--incubating]|incubating|approve OS|revoke OS]");
	return CTL_USAGE;
}

enum ctl_code admin_cmd_certcheck(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct admin *a = the_admin;
	int bad = 0;
	for (int i = 0; i < a->cfg->tls.ncerts; i++) {
		const struct cfg_cert *ct = &a->cfg->tls.certs[i];
		struct tls_chain_report r;
		int rc =
		    tls_check_chain(ct->cert, ct->key, a->cfg->tls.trust_file,
				    argc > 1 ? argv[1] : NULL, a->cfg->tls.expiry_warn_days, &r);
		sbuf_printf(out,
			    "%s: %s\n  subject: %s\n  names:   %s\n  chain:   %d certificates%s\n"
			    "  expires: in %ld days\n",
			    ct->cert, rc == 0 ? "OK" : "PROBLEM", r.subject, r.names, r.chain_len,
			    r.chain_complete ? ", complete" : "", r.min_days_left);
		if (r.problem[0])
			sbuf_printf(out, "  problem: %s\n", r.problem);
		if (r.warning[0])
			sbuf_printf(out, "  warning: %s\n", r.warning);
		bad |= rc < 0 || r.min_days_left < (long)a->cfg->tls.expiry_warn_days;
	}
	char w[512];
	if (tls_config_warning(a->cfg, w, sizeof(w)))
		sbuf_printf(out, "protocols: warning: %s\n", w);
	if (bad) {
		/* error replies put the message first */
		struct sbuf tmp = {0};
		sbuf_printf(&tmp, "certificate problems found\n");
		sbuf_put(&tmp, out->p, out->len);
		sbuf_free(out);
		*out = tmp;
		return CTL_FAILED;
	}
	return CTL_OK;
}

/* --- throttling ------------------------------------------------------------------ */

struct thr_list {
	struct sbuf *o;
	const struct throttle *t;
	uint64_t now;
	int json;
	int n;
	uint64_t only; /* a device key, or 0 for all */
};

static int thr_row(void *arg, const struct throttle_info *d)
{
	struct thr_list *l = arg;
	const struct throttle_class *k = throttle_class_at(l->t, (size_t)d->cls);
	if (l->only && d->device_key != l->only)
		return 0;
	if (l->json) {
		struct sbuf *o = l->o;
		sbuf_printf(o, "%s\n  {\"user\": ", l->n++ ? "," : "");
		fmt_json_str(o, d->user);
		sbuf_printf(o, ", \"device_id\": ");
		fmt_json_str(o, d->device_id);
		sbuf_printf(o, ", \"device_os\": ");
		fmt_json_str(o, d->device_os);
		sbuf_printf(o, ", \"class\": ");
		fmt_json_str(o, k ? k->name : "?");
		/* the budget the device went over, so a page can say so */
		sbuf_printf(o, ", \"burst\": %g, \"rate\": %g", k ? k->burst : 0.0,
			    k ? k->rate : 0.0);
		sbuf_printf(
		    o,
		    ", \"state\": \"%s\", \"remaining_s\": %u, \"budget_wait_s\": %u, \"xdp\": %s, "
		    "\"loop_command\": \"%s\", \"last_event\": \"%s\", \"by_command\": {",
		    throttle_state_name(d->state), d->remaining_s, d->budget_wait_s,
		    d->xdp ? "true" : "false", d->loop_cmd >= 0 ? eas_cmd_name(d->loop_cmd) : "",
		    throttle_event_name(d->last_event));
		int first = 1;
		for (int c = 0; c < THROTTLE_NCMD; c++)
			if (d->seen[c]) {
				sbuf_printf(o, "%s\"%s\": [%u, %u]", first ? "" : ", ",
					    eas_cmd_name(c), d->seen[c], d->refused[c]);
				first = 0;
			}
		sbuf_printf(o, "}}");
		return 0;
	}
	sbuf_printf(l->o, "%-24.24s %-32.32s %-22.22s %-10.10s %-15s %6us %-4s %-16s ", d->user,
		    d->device_id, d->device_os, k ? k->name : "?", throttle_state_name(d->state),
		    d->remaining_s, d->xdp ? "yes" : "no",
		    d->loop_cmd >= 0 ? eas_cmd_name(d->loop_cmd) : "-");
	int first = 1;
	for (int c = 0; c < THROTTLE_NCMD; c++)
		if (d->seen[c]) {
			sbuf_printf(l->o, "%s%s=%u/%u", first ? "" : ",", eas_cmd_name(c),
				    d->seen[c], d->refused[c]);
			first = 0;
		}
	sbuf_put(l->o, "\n", 1);
	return 0;
}

static void forgive_done(void *arg, const struct store_result *r)
{
	struct pend *x = arg;
	struct sbuf out = {0};
	enum ctl_code code = CTL_OK;
	char qu[EAS_USER_MAX * 4 + 3], qd[EAS_DEVID_MAX * 4 + 3];
	if (r->rc < 0 && !x->state) {
		code = store_failed(r, &out);
	} else if (r->rc <= 0 && !x->state) {
		sbuf_printf(&out, "no throttled device %s for user %s", x->dev, x->user);
		code = CTL_NOTFOUND;
	} else {
		log_info("event=admin_throttle action=forgive user=%s device=%s farm_loop=%d",
			 log_quote(qu, sizeof(qu), x->user, (size_t)-1),
			 log_quote(qd, sizeof(qd), x->dev, (size_t)-1), r->rc > 0);
		sbuf_printf(&out, "forgiven: %s (%s); kernel flow verdicts expire by their TTL\n",
			    x->dev, x->user);
		if (r->rc < 0)
			sbuf_printf(&out, "on this node only: %s\n", r->msg);
		/* It happened (here at least): its line, made when the command
		 * ran (its actor), written now. */
		struct inv_audit *line = x->audit;
		x->audit = NULL;
		if (line) {
			if (r->rc < 0)
				snprintf(line->after, sizeof(line->after),
					 "forgiven on this node only (the farm's loop quarantine "
					 "stays: the database did not answer)");
			struct store_op op = {
			    .kind = STORE_OP_AUDIT, .audit = line, .now = line->at};
			store_change(the_admin->store, &op, audit_written, line);
		}
	}
	pend_finish(x, NULL, code, &out);
}

enum ctl_code admin_cmd_throttle(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct admin *a = the_admin;
	if (!a->throttle) {
		sbuf_printf(out,
			    "throttling is off (throttle = { enabled = true; ... } in the config)");
		return CTL_FAILED;
	}
	const char *verb = argc > 1 ? argv[1] : "list";
	uint64_t now = throttle_now_ms();
	if (!strcmp(verb, "list") || !strcmp(verb, "--all") || !strcmp(verb, "show")) {
		struct thr_list l = {.o = out, .t = a->throttle, .now = now};
		int all = !strcmp(verb, "--all"), i = 2, show = !strcmp(verb, "show");
		if (show) {
			if (argc < 4) {
				sbuf_printf(out,
					    "usage: throttle show USER DEVICE_ID [--format json]");
				return CTL_USAGE;
			}
			l.only = throttle_device_key(a->throttle, argv[2], argv[3]);
			all = 1;
			i = 4;
		}
		for (; i < argc; i++) {
			if (!strcmp(argv[i], "--all"))
				all = 1;
			else if (!strcmp(argv[i], "--format") && i + 1 < argc)
				l.json = !strcmp(argv[++i], "json");
			else {
				sbuf_printf(out, "unexpected argument: %s", argv[i]);
				return CTL_USAGE;
			}
		}
		if (l.json)
			sbuf_put(out, "[", 1);
		else
			sbuf_printf(out, "%-24s %-32s %-22s %-10s %-15s %7s %-4s %-16s %s\n",
				    "USER", "DEVICE_ID", "OS", "CLASS", "STATE", "LEFT", "XDP",
				    "LOOP_CMD", "SEEN/REFUSED BY COMMAND");
		throttle_foreach(a->throttle, all ? 0 : THROTTLE_F_ACTIVE, now, thr_row, &l);
		if (l.json)
			sbuf_printf(out, "%s]\n", l.n ? "\n" : "");
		return CTL_OK;
	}
	if (!strcmp(verb, "forgive") && argc == 4) {
		int unauth = !strcmp(argv[3], THROTTLE_UNAUTH_LABEL);
		uint64_t k = !unauth ? throttle_device_key(a->throttle, argv[2], argv[3])
				     : throttle_unauth_key(a->throttle,
							   throttle_user_key(a->throttle, argv[2]));
		struct pend *x = pend_new("forgive");
		if (!x)
			return CTL_FAILED;
		snprintf(x->user, sizeof(x->user), "%s", argv[2]);
		snprintf(x->dev, sizeof(x->dev), "%s", argv[3]);
		x->state = throttle_forgive(a->throttle, k, now) == 0; /* here */
		char what[300];
		snprintf(what, sizeof(what), "throttle forgive %s (user %s)", argv[3], argv[2]);
		x->audit = audit_new(what, "throttled", "forgiven");
		if (unauth) {
			struct store_result r = {.rc = 0};
			forgive_done(x, &r);
		} else {
			/* And its loop quarantine, on every node of a farm. */
			struct store_op op = {.kind = STORE_OP_LOOP_CLEAR,
					      .user = argv[2],
					      .device_id = argv[3],
					      .now = time(NULL)};
			store_change(a->store, &op, forgive_done, x);
		}
		return CTL_OK; /* the answer is the job's */
	}
	sbuf_printf(out, "usage: throttle [list [--all]] | show USER DEVICE_ID | forgive USER "
			 "DEVICE_ID");
	return CTL_USAGE;
}

/* --- the store: db, nodes, personal lists ------------------------------------- */

static void migrate_done(void *arg, const struct store_result *r)
{
	struct pend *x = arg;
	struct sbuf out = {0};
	enum ctl_code code = CTL_OK;
	if (r->rc < 0)
		code = store_failed(r, &out);
	else
		sbuf_printf(&out, "%s\n", r->msg);
	pend_finish(x, r, code, &out);
}

enum ctl_code admin_cmd_db(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct admin *a = the_admin;
	const char *verb = argc > 1 ? argv[1] : "status";
	if (!strcmp(verb, "status") && argc <= 2) {
		store_db_status(a->store, out);
		return CTL_OK;
	}
	if (!strcmp(verb, "migrate") && argc == 2) {
		struct pend *x = pend_new("migrate");
		if (!x)
			return CTL_FAILED;
		struct store_op op = {.kind = STORE_OP_MIGRATE, .now = time(NULL)};
		store_change(a->store, &op, migrate_done, x);
		return CTL_OK; /* the answer is the job's */
	}
	sbuf_printf(out, "usage: db status|migrate");
	return CTL_USAGE;
}

struct node_list {
	struct sbuf *o;
	int64_t now;
	unsigned stale_s;
};

static void node_row(void *arg, const struct inv_node *n)
{
	struct node_list *l = arg;
	char hb[32];
	fmt_iso_time(n->heartbeat_at, hb, sizeof(hb));
	int64_t age = n->heartbeat_at ? l->now - n->heartbeat_at : -1;
	sbuf_printf(l->o, "%-20.20s %-36.36s %-10s %10lld %10lld %-20s %6llds %9.1f %8lld %s\n",
		    n->name, n->version, n->store, (long long)n->config_gen,
		    (long long)n->policy_gen, hb, (long long)age, n->requests_per_s,
		    (long long)n->journal, age >= 0 && age <= (int64_t)l->stale_s ? "up" : "stale");
}

enum ctl_code admin_cmd_nodes(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct admin *a = the_admin;
	unsigned hb = (a->cfg->pg.heartbeat_ms + 999) / 1000;
	struct node_list l = {.o = out, .now = time(NULL), .stale_s = 3 * (hb ? hb : 5)};
	sync_events(a);
	sbuf_printf(out, "%-20s %-36s %-10s %10s %10s %-20s %7s %9s %8s %s\n", "NODE", "VERSION",
		    "STORE", "CONFIG_GEN", "POLICY_GEN", "LAST_HEARTBEAT", "AGE", "REQ/S",
		    "JOURNAL", "STATE");
	inv_foreach_node(a->inv, node_row, &l);
	return CTL_OK;
}

static void list_row(void *arg, const char *list, const char *entry)
{
	sbuf_printf(arg, "%-8s %s\n", list, entry);
}

static void list_done(void *arg, const struct store_result *r)
{
	struct pend *x = arg;
	struct sbuf out = {0};
	enum ctl_code code = CTL_OK;
	int add = !strcmp(x->verb, "add");
	if (r->rc < 0) {
		code = store_failed(r, &out);
	} else if (r->rc == 0) {
		sbuf_printf(&out, add ? "%s is already in the %s list" : "%s is not in the %s list",
			    x->text, x->user);
		code = add ? CTL_OK : CTL_NOTFOUND;
		if (add)
			sbuf_put(&out, "\n", 1);
	} else {
		log_info("event=admin_list action=%s list=%s entry=\"%s\"", x->verb, x->user,
			 x->text);
		sbuf_printf(&out, "%s %s %s; effective on the next request\n",
			    add ? "added to" : "removed from", x->user, x->text);
	}
	pend_finish(x, r, code, &out);
}

enum ctl_code admin_cmd_lists(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct admin *a = the_admin;
	const char *verb = argc > 1 ? argv[1] : "show";
	if (!strcmp(verb, "show") && argc <= 2) {
		for (int i = 0; i < a->cfg->policy.nblocked; i++)
			sbuf_printf(out, "%-8s %s (config)\n", "blocked",
				    a->cfg->policy.blocked_ids[i].text);
		for (int i = 0; i < a->cfg->policy.nallowed; i++)
			sbuf_printf(out, "%-8s %s (config)\n", "allowed",
				    a->cfg->policy.allowed_ids[i].text);
		inv_foreach_list(a->inv, list_row, out);
		return CTL_OK;
	}
	if ((!strcmp(verb, "add") || !strcmp(verb, "remove")) && argc == 4 &&
	    (!strcmp(argv[2], "blocked") || !strcmp(argv[2], "allowed"))) {
		char why[256];
		if (policy_id_entry_check(argv[3], why, sizeof(why)) < 0) {
			sbuf_printf(out, "entry refused: %s", why);
			return CTL_USAGE;
		}
		struct pend *x = pend_new(verb);
		if (!x)
			return CTL_FAILED;
		snprintf(x->user, sizeof(x->user), "%s", argv[2]); /* the list */
		snprintf(x->text, sizeof(x->text), "%s", argv[3]);
		int add = !strcmp(verb, "add");
		char what[POLICY_RULE_TEXT_MAX + 32], in[32];
		snprintf(what, sizeof(what), "lists %s %s %s", verb, argv[2], argv[3]);
		snprintf(in, sizeof(in), "in the %s list", argv[2]);
		x->audit = audit_new(what, add ? "not listed" : in, add ? in : "not listed");
		struct store_op op = {.kind = add ? STORE_OP_LIST_ADD : STORE_OP_LIST_REMOVE,
				      .list = x->user,
				      .text = x->text,
				      .now = time(NULL),
				      .audit = x->audit};
		store_change(a->store, &op, list_done, x);
		return CTL_OK; /* the answer is the job's */
	}
	sbuf_printf(out, "usage: lists [show] | lists add|remove blocked|allowed "
			 "'DeviceId' or 'user:DeviceId'");
	return CTL_USAGE;
}

/* --- audit ------------------------------------------------------------------------ */

struct audit_list {
	struct sbuf *o;
	enum command_fmt fmt;
	int n;
};

static int audit_row(void *arg, const struct inv_audit *r)
{
	struct audit_list *l = arg;
	char when[32];
	fmt_iso_time(r->at, when, sizeof(when));
	const char *v[] = {when, r->who, r->source, r->what, r->before, r->after, r->node};
	if (l->fmt == FMT_TABLE) {
		sbuf_printf(l->o, "%-6lld %-20s %-14s %-24s %s | before: %s | after: %s\n",
			    (long long)r->id, when, r->node[0] ? r->node : "-", r->who, r->what,
			    r->before[0] ? r->before : "-", r->after[0] ? r->after : "-");
	} else if (l->fmt == FMT_CSV) {
		sbuf_printf(l->o, "%lld", (long long)r->id);
		for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
			sbuf_put(l->o, ",", 1);
			fmt_csv_str(l->o, v[i]);
		}
		sbuf_put(l->o, "\r\n", 2);
	} else {
		static const char *const k[] = {"at",	  "who",   "source", "what",
						"before", "after", "node"};
		_Static_assert(sizeof(k) / sizeof(k[0]) == sizeof(v) / sizeof(v[0]),
			       "a name for every field");
		sbuf_printf(l->o, "%s\n  {\"id\": %lld", l->n ? "," : "", (long long)r->id);
		for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
			sbuf_printf(l->o, ", \"%s\": ", k[i]);
			fmt_json_str(l->o, v[i]);
		}
		sbuf_put(l->o, "}", 1);
	}
	l->n++;
	return 0;
}

enum ctl_code admin_cmd_audit(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct admin *a = the_admin;
	const char *limit = NULL, *before = NULL, *fmt = NULL;
	const struct command_opt opts[] = {
	    {"limit", &limit}, {"before", &before}, {"format", &fmt}, {NULL, NULL}};
	char *pos[1];
	int np;
	struct audit_list l = {.o = out};
	if (command_parse_opts(argc, argv, 1, opts, pos, &np, 0, out) < 0 ||
	    command_parse_fmt(fmt, &l.fmt) < 0) {
		if (!out->len)
			sbuf_printf(out, "usage: audit [--limit N] [--before ID] [--format "
					 "table|csv|json]");
		return CTL_USAGE;
	}
	int n = limit ? atoi(limit) : 100;
	if (n < 1 || n > 10000)
		n = 100;
	sync_events(a);
	if (l.fmt == FMT_TABLE)
		sbuf_printf(out, "%-6s %-20s %-14s %-24s %s\n", "ID", "WHEN", "NODE", "WHO",
			    "WHAT");
	else if (l.fmt == FMT_CSV)
		sbuf_printf(out, "id,at,who,source,what,before,after,node\r\n");
	else
		sbuf_put(out, "[", 1);
	inv_foreach_audit(a->inv, before ? atoll(before) : 0, n, audit_row, &l);
	if (l.fmt == FMT_JSON)
		sbuf_printf(out, "%s]\n", l.n ? "\n" : "");
	return CTL_OK;
}

/* --- roles: what each argv needs (command.h) ---------------------------------------- */

int admin_need_device(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "--", 2)) {
			i++;
			continue;
		}
		return !strcmp(argv[i], "show") || !strcmp(argv[i], "history") ? ROLE_VIEWER
									       : ROLE_HELPDESK;
	}
	return ROLE_VIEWER;
}

int admin_need_rules(int argc, char **argv)
{
	return argc > 1 && (!strcmp(argv[1], "add") || !strcmp(argv[1], "remove")) ? ROLE_ADMIN
										   : ROLE_VIEWER;
}

int admin_need_versions(int argc, char **argv)
{
	return argc > 1 && (!strcmp(argv[1], "approve") || !strcmp(argv[1], "revoke"))
		   ? ROLE_ADMIN
		   : ROLE_VIEWER;
}

int admin_need_throttle(int argc, char **argv)
{
	return argc > 1 && !strcmp(argv[1], "forgive") ? ROLE_HELPDESK : ROLE_VIEWER;
}

int admin_need_lists(int argc, char **argv)
{
	return argc > 1 && (!strcmp(argv[1], "add") || !strcmp(argv[1], "remove")) ? ROLE_ADMIN
										   : ROLE_VIEWER;
}

int admin_need_db(int argc, char **argv)
{
	return argc > 1 && !strcmp(argv[1], "migrate") ? ROLE_ADMIN : ROLE_VIEWER;
}

/* --- metrics ------------------------------------------------------------------------ */

struct count_ctx {
	struct sbuf *o;
};

static void count_row(void *arg, const char *family, const char *state, long n)
{
	struct count_ctx *c = arg;
	sbuf_printf(c->o, "easgate_devices{os_family=\"");
	metrics_label(c->o, family && family[0] ? family : "unknown");
	sbuf_printf(c->o, "\",state=\"");
	metrics_label(c->o, state && state[0] ? state : "unknown");
	sbuf_printf(c->o, "\"} %ld\n", n);
}

static void render_throttle(struct admin *a, struct sbuf *o)
{
	struct throttle_stats st;
	throttle_stats_read(a->throttle, &st);
	sbuf_printf(o,
		    "# HELP easgate_throttle_refused_total Requests refused by budgets and "
		    "loop detection, by reason.\n# TYPE easgate_throttle_refused_total counter\n");
	for (int r = 0; r < THROTTLE_R__COUNT; r++)
		sbuf_printf(o, "easgate_throttle_refused_total{reason=\"%s\"} %llu\n",
			    throttle_reason_name(r), (unsigned long long)st.refused[r]);
	sbuf_printf(
	    o, "# HELP easgate_throttle_events_total Escalations (throttled, cutoff, "
	       "loop, quarantine, kernel drop).\n# TYPE easgate_throttle_events_total counter\n");
	for (int e = 1; e < THROTTLE_EV__COUNT; e++)
		sbuf_printf(o, "easgate_throttle_events_total{event=\"%s\"} %llu\n",
			    throttle_event_name(e), (unsigned long long)st.events[e]);
	sbuf_printf(o, "# HELP easgate_throttle_loops_total Loops detected, by command.\n"
		       "# TYPE easgate_throttle_loops_total counter\n");
	for (int c = 0; c < THROTTLE_NCMD; c++)
		if (st.loops_by_cmd[c])
			sbuf_printf(o, "easgate_throttle_loops_total{command=\"%s\"} %llu\n",
				    eas_cmd_name(c), (unsigned long long)st.loops_by_cmd[c]);
	sbuf_printf(
	    o,
	    "# HELP easgate_throttle_devices Devices tracked by the throttle table.\n"
	    "# TYPE easgate_throttle_devices gauge\neasgate_throttle_devices %llu\n"
	    "# HELP easgate_throttle_device_capacity Devices the throttle table can hold.\n"
	    "# TYPE easgate_throttle_device_capacity gauge\n"
	    "easgate_throttle_device_capacity %llu\n"
	    "# HELP easgate_throttle_evictions_total Live devices pushed out of the "
	    "full throttle table by new ones.\n# TYPE easgate_throttle_evictions_total counter\n"
	    "easgate_throttle_evictions_total %llu\n"
	    "# HELP easgate_throttle_lock_timeouts_total Requests admitted unaccounted "
	    "because the throttle table was busy.\n# TYPE easgate_throttle_lock_timeouts_total "
	    "counter\neasgate_throttle_lock_timeouts_total %llu\n",
	    (unsigned long long)st.devices, (unsigned long long)st.device_capacity,
	    (unsigned long long)st.device_evictions, (unsigned long long)st.lock_timeouts);
	sbuf_printf(o,
		    "# HELP easgate_throttle_inflight Requests admitted by the throttle and not "
		    "yet ended (max_concurrent counts these); 0 when the gateway is idle.\n"
		    "# TYPE easgate_throttle_inflight gauge\neasgate_throttle_inflight %llu\n",
		    (unsigned long long)st.inflight);
}

void admin_render_metrics(struct admin *a, struct sbuf *o)
{
	if (!a)
		return;
	if (a->throttle)
		render_throttle(a, o);
	sync_events(a);
	struct count_ctx c = {.o = o};
	sbuf_printf(o, "# HELP easgate_devices Devices in the inventory by OS family and access "
		       "state.\n# TYPE easgate_devices gauge\n");
	inv_count_by_family_state(a->inv, count_row, &c);
	notify_render_metrics(a->notify, o);
	struct sighting_stats ss;
	sighting_stats_read(a->sight, time(NULL), &ss);
	sbuf_printf(o,
		    "# HELP easgate_unauthenticated_devices Devices seen whose credentials no "
		    "backend accepted yet (bounded table).\n"
		    "# TYPE easgate_unauthenticated_devices gauge\n"
		    "easgate_unauthenticated_devices %llu\n"
		    "# HELP easgate_unauthenticated_devices_capacity Slots of that table.\n"
		    "# TYPE easgate_unauthenticated_devices_capacity gauge\n"
		    "easgate_unauthenticated_devices_capacity %llu\n"
		    "# HELP easgate_unauthenticated_displaced_total Sightings pushed out by newer "
		    "ones (a flood of claims shows here).\n"
		    "# TYPE easgate_unauthenticated_displaced_total counter\n"
		    "easgate_unauthenticated_displaced_total %llu\n",
		    (unsigned long long)ss.live, (unsigned long long)ss.capacity,
		    (unsigned long long)ss.displaced);
	sbuf_printf(o,
		    "# HELP easgate_inventory_events_total Device events written to the "
		    "inventory.\n# TYPE easgate_inventory_events_total counter\n"
		    "easgate_inventory_events_total %llu\n",
		    (unsigned long long)a->events);
	store_render_metrics(a->store, o);
}

void admin_render_backend_metrics(struct admin *a, struct sbuf *o, const struct stats *sum)
{
	if (!a)
		return;
	sbuf_printf(o, "# HELP easgate_backend_connections Open connections to each backend.\n"
		       "# TYPE easgate_backend_connections gauge\n");
	for (int i = 0; i < a->cfg->nbackends; i++) {
		sbuf_printf(o, "easgate_backend_connections{backend=\"");
		metrics_label(o, a->cfg->backends[i].name);
		sbuf_printf(o, "\"} %lld\n", (long long)sum->backend_conns[i]);
	}
	sbuf_printf(o, "# HELP easgate_backend_requests_total Requests relayed to each backend.\n"
		       "# TYPE easgate_backend_requests_total counter\n");
	for (int i = 0; i < a->cfg->nbackends; i++) {
		sbuf_printf(o, "easgate_backend_requests_total{backend=\"");
		metrics_label(o, a->cfg->backends[i].name);
		sbuf_printf(o, "\"} %llu\n", (unsigned long long)sum->backend_requests[i]);
	}
}
