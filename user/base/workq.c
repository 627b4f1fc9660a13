/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* workq.c - see workq.h. */
#include "workq.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct workq {
	struct loop *loop;
	struct loop_io io;
	int efd;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct workq_job *todo, *todo_tail, *done;
	unsigned pending, max;
	int stop;
};

static void *run(void *arg)
{
	struct workq *q = arg;
	pthread_mutex_lock(&q->mu);
	while (!q->stop) {
		struct workq_job *j = q->todo;
		if (!j) {
			pthread_cond_wait(&q->cv, &q->mu);
			continue;
		}
		q->todo = j->next;
		if (!q->todo)
			q->todo_tail = NULL;
		pthread_mutex_unlock(&q->mu);
		j->work(j);
		pthread_mutex_lock(&q->mu);
		j->next = q->done;
		q->done = j;
		uint64_t one = 1;
		(void)!write(q->efd, &one, sizeof(one));
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

static void on_done(struct loop_io *io, uint32_t ev)
{
	struct workq *q = io->arg;
	uint64_t v;
	(void)!read(q->efd, &v, sizeof(v));
	pthread_mutex_lock(&q->mu);
	struct workq_job *j = q->done;
	q->done = NULL;
	pthread_mutex_unlock(&q->mu);
	while (j) {
		struct workq_job *next = j->next;
		q->pending--;
		j->done(j);
		j = next;
	}
}

struct workq *workq_new(struct loop *l, unsigned max_pending)
{
	struct workq *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->loop = l;
	q->max = max_pending;
	q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	if (q->efd < 0 || loop_io_add_lt(l, &q->io, q->efd, on_done, q) < 0)
		goto fail;
	/* the thread takes no signal: the loop's signalfd gets them all */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(&q->th, NULL, run, q);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r == 0)
		return q;
	loop_io_del(l, &q->io);
fail:
	if (q->efd >= 0)
		close(q->efd);
	free(q);
	return NULL;
}

int workq_submit(struct workq *q, struct workq_job *j)
{
	if (q->pending >= q->max)
		return -1;
	q->pending++;
	j->next = NULL;
	pthread_mutex_lock(&q->mu);
	if (q->todo_tail)
		q->todo_tail->next = j;
	else
		q->todo = j;
	q->todo_tail = j;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	return 0;
}

void workq_free(struct workq *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	q->stop = 1;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	pthread_join(q->th, NULL);
	on_done(&q->io, 0);
	struct workq_job *j = q->todo;
	while (j) {
		struct workq_job *next = j->next;
		j->done(j);
		j = next;
	}
	loop_io_del(q->loop, &q->io);
	close(q->efd);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	free(q);
}
