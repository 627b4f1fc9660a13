/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * wdkeeper.h - systemd's WATCHDOG=1 while one long job holds the master's
 * loop (a reload: read the file, compile the policy, build TLS contexts).
 *
 * The loop sends WATCHDOG=1 from a timer, so a reload longer than WatchdogSec
 * (a big config, a slow or loaded machine: 17.7 s in an emulated guest) got
 * the unit killed in the middle of the reload an admin asked for. A keeper is
 * a thread that pings every period while the job runs, but only while
 * healthy() says so (the workers still beat) and for at most max_ms: a job
 * that never ends is a hang, and systemd must then act.
 *
 * The thread only calls healthy() and sd_notify(). Stop it before the job
 * forks (a child of a two-threaded process must not need the other thread's
 * locks) and before it changes what healthy() reads.
 */
#ifndef EG_WDKEEPER_H
#define EG_WDKEEPER_H

#include <stdint.h>

struct wdkeeper;

/* Starts pinging at once, then every period_ms. NULL if period_ms is 0 (no
 * watchdog) or the thread cannot start (the loop's own pings stay). */
struct wdkeeper *wdkeeper_start(uint64_t period_ms, uint64_t max_ms, int (*healthy)(void *arg),
				void *arg);

/* Stops and joins the thread; returns how many pings it sent. NULL is fine. */
unsigned wdkeeper_stop(struct wdkeeper *k);

#endif
