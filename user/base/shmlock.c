/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* shmlock.c - see shmlock.h. */
#include "shmlock.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/* Spin this many rounds, then yield/sleep up to WAITS times (about 50 ms in
 * all: a holder preempted on a busy machine gets that long). */
#define SPIN  256u
#define WAITS 1000u

/* The owner's id, cached per thread; forgotten in a forked child (which has
 * another). */
static __thread uint32_t tl_tid;
static pthread_once_t tid_once = PTHREAD_ONCE_INIT;

static void tid_forget(void)
{
	tl_tid = 0;
}

static void tid_init(void)
{
	pthread_atfork(NULL, NULL, tid_forget);
}

static uint32_t self_tid(void)
{
	if (!tl_tid) {
		pthread_once(&tid_once, tid_init);
		tl_tid = (uint32_t)gettid();
	}
	return tl_tid;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static int take_from(uint32_t *lk, uint32_t cur, uint32_t me)
{
	return __atomic_compare_exchange_n(lk, &cur, me, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

int shmlock_take(uint32_t *lk)
{
	uint32_t me = self_tid();
	for (uint32_t i = 0;; i++) {
		uint32_t cur = __atomic_load_n(lk, __ATOMIC_RELAXED);
		if (cur == 0 || cur == me) { /* free, or left by a dead thread with our id */
			if (take_from(lk, cur, me))
				return 0;
			continue;
		}
		if (i < SPIN) {
			cpu_relax();
			continue;
		}
		if ((i - SPIN) % 16 == 0 && kill((pid_t)cur, 0) < 0 && errno == ESRCH) {
			if (take_from(lk, cur, me)) /* the holder died in its critical section */
				return 0;
			continue;
		}
		if (i >= SPIN + WAITS)
			return -1;
		/* The holder is most likely preempted (more runnable processes
		 * than CPUs): spinning would only delay it further. Yield a few
		 * times, then sleep; a holder back on a CPU finishes in ns. */
		if (i < SPIN + 16) {
			sched_yield();
		} else {
			struct timespec ts = {0, 50000};
			nanosleep(&ts, NULL);
		}
	}
}
