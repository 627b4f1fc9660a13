/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * loop.h - the one event loop: epoll for file descriptors, a binary min-heap
 * of timers, signalfd for signals. One loop per process (master, each worker);
 * nothing in it is shared between processes.
 *
 * File descriptors are registered once, edge-triggered, for both directions
 * (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET). Owners keep "ready" flags and run
 * their state machine until EAGAIN; this avoids an epoll_ctl() per state
 * change, which matters with ~100k mostly idle long-polls.
 *
 * Handles (struct loop_io, struct loop_timer) are embedded in their owner and
 * owned by it; the loop only borrows them between add and del.
 */
#ifndef EG_LOOP_H
#define EG_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct loop_io;
struct loop_timer;

typedef void (*loop_io_cb)(struct loop_io *io, uint32_t events);
typedef void (*loop_timer_cb)(struct loop_timer *t);
typedef void (*loop_hook_cb)(struct loop *l, void *arg);

struct loop_io {
	int fd;
	loop_io_cb cb;
	void *arg; /* owner's context, untouched by the loop */
};

struct loop_timer {
	uint64_t deadline_ms; /* loop clock (CLOCK_MONOTONIC ms) */
	size_t heap_idx;      /* 0 = not armed; else 1-based heap position */
	loop_timer_cb cb;
	void *arg;
};

struct loop *loop_new(void);
void loop_free(struct loop *l);

/* Register fd edge-triggered for EPOLLIN|EPOLLOUT|EPOLLRDHUP. 0 or -errno. */
int loop_io_add(struct loop *l, struct loop_io *io, int fd, loop_io_cb cb, void *arg);
/* Register level-triggered for reading only (listeners, control sockets). */
int loop_io_add_lt(struct loop *l, struct loop_io *io, int fd, loop_io_cb cb, void *arg);
/*
 * Register level-triggered for reading, and for writing while want_write is
 * set (loop_io_want_write). For libraries that read and write on their own
 * schedule (libpq): level-triggered, so nothing is lost when they do not
 * read a socket dry. 0 or -errno.
 */
int loop_io_add_lt_rw(struct loop *l, struct loop_io *io, int fd, loop_io_cb cb, void *arg,
		      int want_write);
/* Change the write interest of an io added with loop_io_add_lt_rw. 0 or -errno. */
int loop_io_want_write(struct loop *l, struct loop_io *io, int want_write);
/* Stop watching io->fd (does not close it). Safe to call from its own callback. */
void loop_io_del(struct loop *l, struct loop_io *io);

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *arg);
/* (Re)arm to fire after ms milliseconds. */
void loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t ms);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);
static inline int loop_timer_armed(const struct loop_timer *t)
{
	return t->heap_idx != 0;
}

/* How many epoll_waits have returned: an fd's readiness that arose before
 * turn T's epoll_wait (and after its last read) is reported by turn T. */
uint64_t loop_turn(const struct loop *l);
/* Milliseconds of CLOCK_MONOTONIC, cached once per loop iteration. */
uint64_t loop_now_ms(struct loop *l);
/* Refresh the cached clock (after long work inside a callback). */
uint64_t loop_update_clock(struct loop *l);

/*
 * Call cb(l, arg) once per iteration, after all events of the iteration were
 * handled and before sleeping: used to batch work (flush queued writes).
 */
int loop_add_before_sleep(struct loop *l, loop_hook_cb cb, void *arg);

/*
 * Route signal signo to cb through a signalfd owned by the loop. The signal is
 * blocked for the process. Several signals may share one cb.
 */
typedef void (*loop_signal_cb)(struct loop *l, int signo, void *arg);
int loop_signal(struct loop *l, int signo, loop_signal_cb cb, void *arg);

/* Run until loop_stop(). Returns 0, or -errno if epoll itself fails. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);

#endif
