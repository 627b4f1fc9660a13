/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* history.c - see history.h. */
#include "history.h"
#include "eas_cmd.h"
#include "fmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOP_CMDS 8 /* the busiest commands of the window are charted */

static const char *const verdict_names[SV__COUNT] = {"allow",	 "block",   "quarantine",
						     "throttle", "refused", "local"};

struct point {
	int64_t t;
	uint32_t verdict[SV__COUNT];
	uint32_t cmd[STATS_NCMD];
	uint32_t backend[EG_MAX_BACKENDS]; /* by name slot (names[]) */
};

struct totals {
	uint64_t verdict[SV__COUNT];
	uint64_t cmd[STATS_NCMD];
	uint64_t backend[EG_MAX_BACKENDS]; /* by config index */
	char backend_name[EG_MAX_BACKENDS][EG_BACKEND_NAME_LEN];
	int nbackends;
};

struct history {
	struct point *ring;
	unsigned head, n;
	int64_t last_t;
	struct totals prev;
	int have_prev;
	/* backend names ever charted: a point's backend[i] belongs to names[i] */
	char names[EG_MAX_BACKENDS][EG_BACKEND_NAME_LEN];
	int nnames;
	struct stats sum; /* scratch (large) */
};

struct history *history_new(void)
{
	struct history *h = calloc(1, sizeof(*h));
	if (h && !(h->ring = calloc(HISTORY_POINTS, sizeof(*h->ring)))) {
		free(h);
		h = NULL;
	}
	return h;
}

void history_free(struct history *h)
{
	if (!h)
		return;
	free(h->ring);
	free(h);
}

static void read_totals(struct history *h, const struct shm *s, const struct gw_config *c,
			struct totals *t)
{
	memset(t, 0, sizeof(*t));
	stats_sum(s->worker_stats, EG_MAX_WORKERS, &h->sum);
	for (int cmd = 0; cmd < STATS_NCMD; cmd++)
		for (int st = 0; st < STATS_NSTATUS; st++)
			for (int v = 0; v < SV__COUNT; v++) {
				uint64_t n = h->sum.requests[cmd][st][v];
				t->verdict[v] += n;
				t->cmd[cmd] += n;
			}
	t->nbackends = c->nbackends;
	for (int i = 0; i < c->nbackends; i++) {
		t->backend[i] = h->sum.backend_requests[i];
		snprintf(t->backend_name[i], sizeof(t->backend_name[i]), "%s", c->backends[i].name);
	}
}

static int name_slot(struct history *h, const char *name)
{
	for (int i = 0; i < h->nnames; i++)
		if (!strcmp(h->names[i], name))
			return i;
	if (h->nnames >= EG_MAX_BACKENDS)
		return -1;
	snprintf(h->names[h->nnames], sizeof(h->names[0]), "%s", name);
	return h->nnames++;
}

static uint32_t delta(uint64_t now, uint64_t before)
{
	/* counters only grow; a worker slot reused after a reload can make a
	 * sum step back once: count nothing rather than a wrap */
	return now >= before ? (uint32_t)(now - before) : 0;
}

void history_tick(struct history *h, const struct shm *s, const struct gw_config *c, int64_t now)
{
	if (!h || now - h->last_t < HISTORY_STEP_S)
		return;
	struct totals t;
	read_totals(h, s, c, &t);
	if (h->have_prev) {
		struct point *p = &h->ring[h->head];
		memset(p, 0, sizeof(*p));
		p->t = now;
		for (int v = 0; v < SV__COUNT; v++)
			p->verdict[v] = delta(t.verdict[v], h->prev.verdict[v]);
		for (int cmd = 0; cmd < STATS_NCMD; cmd++)
			p->cmd[cmd] = delta(t.cmd[cmd], h->prev.cmd[cmd]);
		for (int i = 0; i < t.nbackends; i++) {
			int slot = name_slot(h, t.backend_name[i]);
			int j = 0; /* the same backend in the previous sample, by name */
			while (j < h->prev.nbackends &&
			       strcmp(h->prev.backend_name[j], t.backend_name[i]))
				j++;
			if (slot >= 0 && j < h->prev.nbackends)
				p->backend[slot] = delta(t.backend[i], h->prev.backend[j]);
		}
		h->head = (h->head + 1) % HISTORY_POINTS;
		if (h->n < HISTORY_POINTS)
			h->n++;
	}
	h->prev = t;
	h->have_prev = 1;
	h->last_t = now;
}

static void series(struct sbuf *o, const struct history *h, unsigned first, unsigned n,
		   const char *name, int kind, int idx, int *comma)
{
	sbuf_printf(o, "%s", *comma ? ", " : "");
	fmt_json_str(o, name);
	sbuf_put(o, ": [", 3);
	for (unsigned i = 0; i < n; i++) {
		const struct point *p = &h->ring[(first + i) % HISTORY_POINTS];
		uint64_t v = kind == 0	 ? p->verdict[idx]
			     : kind == 1 ? p->cmd[idx]
					 : p->backend[idx];
		sbuf_printf(o, "%s%.2f", i ? "," : "", (double)v / HISTORY_STEP_S);
	}
	sbuf_put(o, "]", 1);
	*comma = 1;
}

enum ctl_code history_command(struct history *h, int argc, char **argv, struct sbuf *out)
{
	unsigned hours = 6;
	if (argc == 3 && !strcmp(argv[1], "--hours"))
		hours = (unsigned)atoi(argv[2]);
	else if (argc != 1) {
		sbuf_printf(out, "usage: history [--hours N]   (JSON, requests per second)");
		return CTL_USAGE;
	}
	if (!hours || hours > 6)
		hours = 6;
	unsigned n = hours * 3600 / HISTORY_STEP_S;
	if (n > h->n)
		n = h->n;
	unsigned first = (h->head + HISTORY_POINTS - n) % HISTORY_POINTS;
	sbuf_printf(out, "{\"step\": %d, \"t\": [", HISTORY_STEP_S);
	for (unsigned i = 0; i < n; i++)
		sbuf_printf(out, "%s%lld", i ? "," : "",
			    (long long)h->ring[(first + i) % HISTORY_POINTS].t);
	sbuf_printf(out, "], \"verdict\": {");
	int comma = 0;
	for (int v = 0; v < SV__COUNT; v++)
		series(out, h, first, n, verdict_names[v], 0, v, &comma);
	/* the busiest commands of the window by name */
	uint64_t tot[STATS_NCMD] = {0};
	for (unsigned i = 0; i < n; i++)
		for (int c = 0; c < STATS_NCMD; c++)
			tot[c] += h->ring[(first + i) % HISTORY_POINTS].cmd[c];
	sbuf_printf(out, "}, \"command\": {");
	comma = 0;
	for (int k = 0; k < TOP_CMDS; k++) {
		int best = -1;
		for (int c = 0; c < STATS_NCMD; c++)
			if (tot[c] && (best < 0 || tot[c] > tot[best]))
				best = c;
		if (best < 0)
			break;
		series(out, h, first, n, eas_cmd_name(best), 1, best, &comma);
		tot[best] = 0;
	}
	sbuf_printf(out, "}, \"backend\": {");
	comma = 0;
	for (int b = 0; b < h->nnames; b++)
		series(out, h, first, n, h->names[b], 2, b, &comma);
	sbuf_printf(out, "}}\n");
	return CTL_OK;
}
