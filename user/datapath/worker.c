/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* worker.c - see worker.h. */
#include "worker.h"
#include "bpfmaps.h"
#include "gate.h"
#include "log.h"
#include "priv.h"
#include "relay.h"

#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Tell the SK_REUSEPORT program (bpf/reuseport.bpf.c) whether this slot takes
 * new connections and how loaded it is (open connections: long-polls
 * dominate). Plain stores into the shared map, only when something changed.
 * Only the slot's current owner writes: after a reload the new generation's
 * worker owns the slot (same listening socket) and a draining one keeps out.
 */
static int owns_slot(const struct worker *w)
{
	return w->bpf && w->shm->worker_pid[w->slot] == w->pid;
}

static void worker_publish(struct worker *w)
{
	if (!owns_slot(w))
		return;
	struct eg_worker e = {.accepting = w->accepting && !w->draining, .load = w->nconns};
	if (w->published && e.accepting == w->pub_accepting && e.load == w->pub_load)
		return;
	bpfmaps_worker_set(w->bpf, (uint32_t)w->slot, &e);
	w->pub_accepting = e.accepting;
	w->pub_load = e.load;
	w->published = 1;
}

void worker_took(struct worker *w)
{
	if (!owns_slot(w))
		return;
	/* Load first, then queued: the sum the program reads never dips, or a
	 * SYN arriving in between would come here once too often. If the
	 * connection is refused after all, the next publish corrects load. */
	struct eg_worker e = {.accepting = w->pub_accepting, .load = w->nconns + 1};
	bpfmaps_worker_set(w->bpf, (uint32_t)w->slot, &e);
	w->pub_load = e.load;
	bpfmaps_worker_unqueue(w->bpf, (uint32_t)w->slot, 1);
	w->rp_took++;
}

/*
 * Once a second: forget placements that will never be accepted (a SYN whose
 * handshake never completed, a SYN dropped on a full accept queue, a
 * syncookie's connection the ACK placed elsewhere), or queued would grow and
 * keep new connections away from this worker for good. What was queued a
 * tick ago and not accepted since is stale, except what still waits in the
 * accept queues (TCP_INFO of a listener: tcpi_unacked = its accept backlog).
 * A handshake slower than a tick is forgotten too: the clamp at 0 absorbs
 * its accept.
 */
static void worker_reconcile(struct worker *w)
{
	if (!owns_slot(w))
		return;
	uint32_t old = w->rp_queued_then > w->rp_took ? w->rp_queued_then - w->rp_took : 0;
	uint32_t waiting = 0;
	for (int i = 0; i < w->nlisteners; i++) {
		struct tcp_info ti;
		socklen_t sl = sizeof(ti);
		if (getsockopt(w->listeners[i].fd, IPPROTO_TCP, TCP_INFO, &ti, &sl) == 0)
			waiting += ti.tcpi_unacked;
	}
	uint32_t left = bpfmaps_worker_unqueue(w->bpf, (uint32_t)w->slot, 0);
	if (old > waiting)
		left = bpfmaps_worker_unqueue(w->bpf, (uint32_t)w->slot, old - waiting);
	w->rp_queued_then = left;
	w->rp_took = 0;
}

static void before_sleep(struct loop *l, void *arg)
{
	struct worker *w = arg;
	relay_reap(w);
	worker_publish(w);
}

static void stop_accepting(struct worker *w)
{
	if (!w->accepting)
		return;
	w->accepting = 0;
	for (int i = 0; i < w->nlisteners; i++)
		loop_io_del(w->loop, &w->listeners[i].io);
}

void worker_drain(struct worker *w)
{
	if (w->draining)
		return;
	w->draining = 1;
	stop_accepting(w);
	worker_publish(w);
	log_info("event=worker_draining connections=%u", w->nconns);
	struct conn *c = w->conns;
	while (c) {
		struct conn *next = relay_next(c);
		relay_drain(c);
		c = next;
	}
	loop_timer_set(w->loop, &w->drain_timer, w->cfg->timeouts.drain_ms);
}

static void drain_deadline(struct loop_timer *t)
{
	struct worker *w = t->arg;
	if (w->nconns)
		log_warn("event=drain_deadline closing=%u", w->nconns);
	relay_close_all(w, "drain deadline");
	loop_stop(w->loop);
}

/* The heartbeat the master's watchdog reads (shm.h), in this worker's stats slot. */
static void beat(struct worker *w)
{
	w->shm->worker_beat_ms[w->stats - w->shm->worker_stats] = loop_now_ms(w->loop);
}

static void on_tick(struct loop_timer *t)
{
	struct worker *w = t->arg;
	beat(w);
	if (w->draining && !w->nconns) {
		loop_stop(w->loop);
		return;
	}
	if (w->draining) {
		/* Again on every draining tick: a connection accepted just before
		 * the drain may have started a long-poll since, which must be
		 * answered now rather than at the drain deadline. */
		struct conn *c = w->conns;
		while (c) {
			struct conn *next = relay_next(c);
			relay_drain(c);
			c = next;
		}
	}
	/* Orphaned (the master died without telling us): finish and leave. */
	if (!w->draining && getppid() == 1)
		worker_drain(w);
	worker_reconcile(w);
	backends_refresh(&w->be, w->shm);
	w->stats->heap_bytes = (int64_t)mallinfo2().uordblks;
	loop_timer_set(w->loop, &w->tick, w->draining ? 100 : 1000);
}

static void on_signal(struct loop *l, int signo, void *arg)
{
	struct worker *w = arg;
	if (signo == SIGTERM || signo == SIGINT) {
		worker_drain(w);
	} else if (signo == SIGQUIT) {
		relay_close_all(w, "quit");
		loop_stop(l);
	}
}

static void on_listen(struct loop_io *io, uint32_t ev)
{
	relay_accept(io->arg);
}

int worker_main(const struct worker_args *a)
{
	char name[32], err[512];
	int rc = 1;
	struct worker *w = calloc(1, sizeof(*w));
	if (!w)
		return 1;
	snprintf(name, sizeof(name), "worker%d", a->slot);
	log_set_proc(name);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	w->slot = a->slot;
	w->pid = getpid();
	w->gen = a->gen;
	w->shm = a->shm;
	w->stats = &a->shm->worker_stats[a->stats_slot];
	w->cfg = a->cfg;
	w->steer_secret = a->steer_secret;
	w->bpf = a->bpf;
	w->srccap = a->srccap;
	w->srccap_slot = a->stats_slot;
	w->lim.max_head = a->cfg->limits.max_head;
	w->lim.max_line = a->cfg->limits.max_line;
	w->lim.max_headers = a->cfg->limits.max_headers;
	w->loop = loop_new();
	if (!w->loop || bufpool_init(&w->pool, 4096) < 0)
		goto out;
	w->tls = a->tls;
	if (backends_init(&w->be, a->cfg, a->shm, err, sizeof(err)) < 0) {
		log_err("event=worker_backends_failed error=\"%s\"", err);
		goto out;
	}
	struct gate_opts go = {.cfg = a->cfg,
			       .shm = a->shm,
			       .worker_slot = a->slot,
			       .event_fd = a->event_fd,
			       .throttle = a->throttle,
			       .sightings = a->sightings};
	w->gate = gate_new(&go, err, sizeof(err));
	if (!w->gate) {
		log_err("event=worker_gate_failed error=\"%s\"", err);
		goto out;
	}
	/* Everything privileged is done: the code that parses phones' bytes runs
	 * with no capabilities at all. */
	if (priv_drop_all() < 0)
		goto out;
	w->accepting = 1;
	for (int i = 0; i < a->cfg->nlisten; i++) {
		struct listener *l = &w->listeners[w->nlisteners];
		l->fd = a->listen_fds[i];
		l->plain = a->cfg->listen[i].plain;
		l->w = w;
		if (loop_io_add_lt(w->loop, &l->io, l->fd, on_listen, l) < 0) {
			log_err("event=worker_listen_failed error=%m");
			goto out;
		}
		w->nlisteners++;
	}
	/* The loop's clock is from loop_new(), before the start's work (the
	 * policy compile: seconds for thousands of rules on a slow CPU). The
	 * first beat and the first tick must count from now: a stale stamp made
	 * the master see a worker that had just started as silent for its whole
	 * start plus a tick, and withhold the watchdog ping. */
	loop_update_clock(w->loop);
	loop_timer_init(&w->drain_timer, drain_deadline, w);
	loop_timer_init(&w->tick, on_tick, w);
	loop_timer_set(w->loop, &w->tick, 1000);
	loop_add_before_sleep(w->loop, before_sleep, w);
	if (loop_signal(w->loop, SIGTERM, on_signal, w) < 0 ||
	    loop_signal(w->loop, SIGINT, on_signal, w) < 0 ||
	    loop_signal(w->loop, SIGQUIT, on_signal, w) < 0)
		goto out;
	w->shm->worker_pid[a->slot] = w->pid;
	beat(w);
	worker_publish(w);
	log_debug("event=worker_ready gen=%llu", (unsigned long long)a->gen);
	loop_run(w->loop);
	rc = 0;
out:
	relay_close_all(w, "exit");
	relay_reap(w);
	gate_free(w->gate);
	backends_free(&w->be);
	bufpool_destroy(&w->pool);
	loop_free(w->loop);
	free(w);
	return rc;
}
