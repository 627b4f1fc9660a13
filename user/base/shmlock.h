/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * shmlock.h - a lock word in memory that processes share (the throttle
 * table's and the sightings table's buckets), which survives a holder that
 * dies inside its critical section.
 *
 * The word holds the owner's thread id, 0 when free. A waiter spins a
 * little, then yields and sleeps; every 16 rounds it asks the kernel
 * whether the owner still exists (kill(tid, 0): ESRCH) and takes over the
 * lock of a dead one (a crashed worker) instead of waiting forever: the
 * data it guarded may be half-updated, which the callers accept (at worst
 * one entry's counters are off). A lock word equal to the caller's own id
 * was left by a dead thread whose id the kernel reused (no caller takes a
 * lock it holds) and is taken over too.
 *
 * No lock is held for long, so giving up is the answer to a busy table:
 * after about 50 ms shmlock_take() returns -1 and the caller fails open
 * (admits the request uncounted) and counts the timeout itself.
 */
#ifndef EG_SHMLOCK_H
#define EG_SHMLOCK_H

#include <stdint.h>

/* 0 when held by the calling thread; -1 when it could not be had in time. */
int shmlock_take(uint32_t *lk);

static inline void shmlock_drop(uint32_t *lk)
{
	__atomic_store_n(lk, 0, __ATOMIC_RELEASE);
}

#endif
