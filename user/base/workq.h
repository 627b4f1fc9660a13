/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * workq.h - one helper thread for CPU-heavy work the master's loop must not
 * wait for (the console's password checks: a yescrypt hash costs tens of
 * milliseconds by design). Jobs wait in a bounded queue; work() runs on the
 * thread, done() back on the loop (an eventfd wakes it).
 *
 * Only pure computation belongs here: the master forks workers while this
 * thread may be running, and a child inherits no thread, so work() must not
 * take a lock that a child could need (no OpenSSL, no NSS, no stdio; malloc
 * is safe: glibc takes its locks across fork).
 */
#ifndef EG_WORKQ_H
#define EG_WORKQ_H

#include "loop.h"

struct workq;

struct workq_job {
	void (*work)(struct workq_job *j); /* on the helper thread */
	void (*done)(struct workq_job *j); /* on the loop; owns j from here */
	struct workq_job *next;		   /* private */
};

struct workq *workq_new(struct loop *l, unsigned max_pending);
/* Stop the thread; jobs still queued get done() (their work did not run). */
void workq_free(struct workq *q);
/* 0, or -1 when max_pending jobs are waiting already (the caller refuses). */
int workq_submit(struct workq *q, struct workq_job *j);

#endif
