/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* store.c - see store.h: what both backends share (the node's file, events,
 * heartbeats) and the dispatch to the configured one. */
#include "store.h"
#include "gate.h"
#include "journal.h"
#include "log.h"
#include "store_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct store *store_open(struct loop *l, const struct gw_config *c, const struct store_hooks *h,
			 char *err, size_t errsz)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	s->loop = l;
	s->cfg = c;
	s->hooks = *h;
	s->waiting = 1;
	snprintf(s->node, sizeof(s->node), "%s", c->node_name);
	char path[PATH_MAX + 32];
	gate_inventory_path(c, path, sizeof(path));
	s->inv = inv_open(path, 0, err, errsz);
	if (!s->inv)
		goto fail;
	inv_set_node(s->inv, s->node);
	snprintf(s->self.name, sizeof(s->self.name), "%s", s->node);
	s->self.started_at = time(NULL);
	int r = c->store == CFG_STORE_POSTGRESQL ? store_pg_init(s, err, errsz)
						 : store_sqlite_init(s, err, errsz);
	if (r < 0)
		goto fail;
	snprintf(s->self.store, sizeof(s->self.store), "%s", s->be->name);
	return s;
fail:
	store_free(s);
	return NULL;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	if (s->inv && s->in_batch)
		store_batch_commit(s);
	if (s->be && s->be->free)
		s->be->free(s);
	s->be = NULL;
	journal_free(s->journal);
	inv_close(s->inv);
	free(s);
}

void store_config_changed(struct store *s, const struct gw_config *c)
{
	s->cfg = c;
}

struct inventory *store_inventory(struct store *s)
{
	return s->inv;
}

const char *store_kind_name(const struct store *s)
{
	return s->be->name;
}

const char *store_node_name(const struct store *s)
{
	return s->node;
}

int store_local_begin(struct store *s)
{
	if (s->in_batch)
		return 0;
	if (inv_batch_begin(s->inv) < 0)
		return -1;
	s->in_batch = 1;
	return 0;
}

int store_batch_begin(struct store *s)
{
	return store_local_begin(s);
}

int store_batch_commit(struct store *s)
{
	if (!s->in_batch)
		return 0;
	s->in_batch = 0;
	int r = inv_batch_commit(s->inv);
	if (s->be && s->be->committed)
		s->be->committed(s);
	return r;
}

int store_apply(struct store *s, const struct inv_event *ev)
{
	int r = inv_apply(s->inv, ev);
	if (r < 0) {
		s->event_errors++;
		return r;
	}
	s->events++;
	/* The rows this event may have touched; a push skips rows that do
	 * not exist (a claim, dropped above). */
	if (s->journal) {
		if (ev->flags & (INV_EV_DECISION | INV_EV_DEVINFO | INV_EV_RESULT | INV_EV_LOOP))
			journal_mark(s->journal, JOURNAL_DEVICE, ev->user, ev->device_id, ev->now);
		if ((ev->flags & INV_EV_AUTHED) && ev->os_key[0])
			journal_mark(s->journal, JOURNAL_VERSION, ev->os_key, "", ev->now);
	}
	return r;
}

void store_change(struct store *s, const struct store_op *op, store_done_fn done, void *arg)
{
	s->be->change(s, op, done, arg);
}

int64_t store_audit_local(struct store *s, const struct store_op *op, int64_t rule_id)
{
	struct inv_audit *a = malloc(sizeof(*a));
	if (!a)
		return -1;
	*a = *op->audit;
	a->id = a->farm_id = 0;
	snprintf(a->node, sizeof(a->node), "%s", s->node);
	if (op->kind == STORE_OP_RULE_ADD) {
		snprintf(a->what, sizeof(a->what), "rules add db%lld", (long long)rule_id);
		snprintf(a->after, sizeof(a->after), "db%lld: %s", (long long)rule_id,
			 op->text ? op->text : "");
	}
	store_local_begin(s);
	int64_t id = inv_audit_add(s->inv, a);
	free(a);
	return id;
}

void store_set_ready(struct store *s)
{
	if (!s->waiting)
		return;
	s->waiting = 0;
	if (s->hooks.ready)
		s->hooks.ready(s->hooks.arg);
}

int store_waiting(const struct store *s)
{
	return s->waiting;
}

/* This node's heartbeat: in its own file (easctl nodes), and for the farm. */
static void heartbeat(struct store *s)
{
	uint64_t now_ms = loop_now_ms(s->loop);
	int64_t prev_total = s->self.requests_total;
	if (s->hooks.node)
		s->hooks.node(s->hooks.arg, &s->self);
	if (s->hb_last_ms && now_ms > s->hb_last_ms)
		s->self.requests_per_s = (double)(s->self.requests_total - prev_total) * 1000.0 /
					 (double)(now_ms - s->hb_last_ms);
	s->hb_last_ms = now_ms;
	s->self.heartbeat_at = time(NULL);
	if (s->journal) {
		struct journal_stats js;
		journal_stats_read(s->journal, &js);
		s->self.journal = (int64_t)js.entries;
	}
	store_local_begin(s);
	inv_node_put(s->inv, &s->self);
	if (s->be->heartbeat)
		s->be->heartbeat(s);
}

void store_tick(struct store *s)
{
	uint64_t every = (uint64_t)s->cfg->pg.heartbeat_ms;
	if (!every)
		every = 5000;
	if (!s->hb_last_ms || loop_now_ms(s->loop) - s->hb_last_ms >= every)
		heartbeat(s);
	if (s->be->tick)
		s->be->tick(s);
}

void store_describe(struct store *s, struct sbuf *o)
{
	s->be->describe(s, o);
}

void store_db_status(struct store *s, struct sbuf *o)
{
	s->be->db_status(s, o);
}

void store_forget_in_child(struct store *s)
{
	if (s && s->be && s->be->forget_in_child)
		s->be->forget_in_child(s);
}

void store_render_metrics(struct store *s, struct sbuf *o)
{
	if (s->be->metrics)
		s->be->metrics(s, o);
}
