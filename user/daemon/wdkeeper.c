/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* wdkeeper.c - see wdkeeper.h. */
#include "wdkeeper.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>
#include <time.h>

struct wdkeeper {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t period_ms, max_ms;
	int (*healthy)(void *arg);
	void *arg;
	int stop;
	unsigned pings;
};

static struct timespec mono_after(uint64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

static void *run(void *arg)
{
	struct wdkeeper *k = arg;
	uint64_t spent = 0;
	pthread_mutex_lock(&k->mu);
	while (!k->stop && spent <= k->max_ms) {
		if (k->healthy(k->arg)) {
			sd_notify(0, "WATCHDOG=1");
			k->pings++;
		}
		struct timespec until = mono_after(k->period_ms);
		while (!k->stop && pthread_cond_timedwait(&k->cv, &k->mu, &until) != ETIMEDOUT)
			;
		spent += k->period_ms;
	}
	pthread_mutex_unlock(&k->mu);
	return NULL;
}

struct wdkeeper *wdkeeper_start(uint64_t period_ms, uint64_t max_ms, int (*healthy)(void *arg),
				void *arg)
{
	if (!period_ms)
		return NULL;
	struct wdkeeper *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->period_ms = period_ms;
	k->max_ms = max_ms;
	k->healthy = healthy;
	k->arg = arg;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&k->mu, NULL);
	/* Signals stay with the loop's thread (signalfd). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&k->th, NULL, run, k);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		pthread_cond_destroy(&k->cv);
		pthread_mutex_destroy(&k->mu);
		free(k);
		return NULL;
	}
	return k;
}

unsigned wdkeeper_stop(struct wdkeeper *k)
{
	if (!k)
		return 0;
	pthread_mutex_lock(&k->mu);
	k->stop = 1;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mu);
	pthread_join(k->th, NULL);
	unsigned n = k->pings;
	pthread_cond_destroy(&k->cv);
	pthread_mutex_destroy(&k->mu);
	free(k);
	return n;
}
