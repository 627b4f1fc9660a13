/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * runwait.h - how long a process was runnable but not given a CPU, as the
 * master samples it at each watchdog check.
 *
 * A worker's silence (no loop tick) is judged by the time it could have run:
 * a worker in a cgroup whose CPU quota is spent, or on a loaded host, waits
 * in the run queue and cannot tick; that is not a hang, while a stopped
 * (state T), blocked (S/D) or spinning (R, on a CPU) one is. Measured on
 * 6.1 (cgroup v2) and 6.18 (v1): /proc/PID/schedstat's run_delay grows by
 * the time spent waiting, throttled time included, but only when the task
 * next gets a CPU; a task starved for seconds shows no growth meanwhile. So
 * a sample that finds the task runnable (R) with neither its CPU time nor
 * its count of slices moved since the previous sample counts that whole
 * interval as waiting too (at most one interval more than the truth, and
 * only for a task the kernel keeps off the CPU). The cgroup's throttled
 * time is not used: it grows while a stopped task's cage-mates are
 * throttled, and sums over CPUs.
 *
 * Only the thread group leader is sampled (the worker's loop thread). No
 * cost to the workers: the master reads two small /proc files per worker.
 */
#ifndef EG_RUNWAIT_H
#define EG_RUNWAIT_H

#include <stdint.h>
#include <sys/types.h>

struct runwait_sample {
	uint64_t run_delay_ns; /* schedstat: waited on a run queue, up to the last slice */
	uint64_t exec_ns;      /* schedstat: on a CPU */
	uint64_t slices;       /* schedstat: times it got a CPU */
	int runnable;	       /* /proc/PID/stat state R */
};

/* One worker's account; zero it (or let a new pid reset it). */
struct runwait {
	pid_t pid;
	int have_prev;
	uint64_t prev_ms;
	struct runwait_sample prev;
	uint64_t pending_ms; /* runnable, not run, since the samples that said so */
	uint64_t waited_ms;  /* monotonic: run_delay + pending, never taken back */
	uint64_t beat_ms;    /* the beat the next field belongs to */
	uint64_t waited_at_beat_ms;
};

/* 1 if this kernel has per-task schedstats (/proc/self/schedstat). */
int runwait_available(void);

/* Reads pid's sample; -1 (errno set) if the process is gone or unreadable. */
int runwait_read(pid_t pid, struct runwait_sample *s);

/* Adds a sample taken at now_ms, for a worker whose last beat is beat_ms;
 * returns the ms it spent runnable-waiting since that beat (as far as the
 * samples tell: a beat is seen at the first sample after it). */
uint64_t runwait_update(struct runwait *w, uint64_t beat_ms, uint64_t now_ms,
			const struct runwait_sample *s);

/* runwait_read + runwait_update for pid (a new pid starts a new account);
 * 0 if the sample cannot be read. */
uint64_t runwait_waited_ms(struct runwait *w, pid_t pid, uint64_t beat_ms, uint64_t now_ms);

#endif
