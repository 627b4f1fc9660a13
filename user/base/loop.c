/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* loop.c - see loop.h. */
#include "loop.h"
#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 256
#define LOOP_MAX_HOOKS	8
#define LOOP_MAX_SIGS	8

struct loop_sig {
	int signo;
	loop_signal_cb cb;
	void *arg;
};

struct loop {
	int epfd;
	int running;
	uint64_t now_ms;
	uint64_t turn;		  /* epoll_waits returned so far */
	struct loop_timer **heap; /* 1-based min-heap on deadline_ms */
	size_t heap_len, heap_cap;
	struct {
		loop_hook_cb cb;
		void *arg;
	} hooks[LOOP_MAX_HOOKS];
	int nhooks;
	int sigfd;
	sigset_t sigmask;
	struct loop_io sig_io;
	struct loop_sig sigs[LOOP_MAX_SIGS];
	int nsigs;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct loop *loop_new(void)
{
	struct loop *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return NULL;
	}
	l->sigfd = -1;
	sigemptyset(&l->sigmask);
	l->now_ms = mono_ms();
	return l;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	if (l->sigfd >= 0)
		close(l->sigfd);
	close(l->epfd);
	free(l->heap);
	free(l);
}

static int io_add(struct loop *l, struct loop_io *io, int fd, loop_io_cb cb, void *arg,
		  uint32_t events)
{
	io->fd = fd;
	io->cb = cb;
	io->arg = arg;
	struct epoll_event ev = {.events = events, .data.ptr = io};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

int loop_io_add(struct loop *l, struct loop_io *io, int fd, loop_io_cb cb, void *arg)
{
	return io_add(l, io, fd, cb, arg, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
}

int loop_io_add_lt(struct loop *l, struct loop_io *io, int fd, loop_io_cb cb, void *arg)
{
	return io_add(l, io, fd, cb, arg, EPOLLIN);
}

int loop_io_add_lt_rw(struct loop *l, struct loop_io *io, int fd, loop_io_cb cb, void *arg,
		      int want_write)
{
	return io_add(l, io, fd, cb, arg, EPOLLIN | EPOLLRDHUP | (want_write ? EPOLLOUT : 0));
}

int loop_io_want_write(struct loop *l, struct loop_io *io, int want_write)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want_write ? EPOLLOUT : 0),
				 .data.ptr = io};
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0 ? -errno : 0;
}

void loop_io_del(struct loop *l, struct loop_io *io)
{
	if (io->fd >= 0)
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->cb = NULL;
}

/* --- timers: binary min-heap, O(log n) arm/cancel --------------------------- */

static void heap_swap(struct loop *l, size_t a, size_t b)
{
	struct loop_timer *t = l->heap[a];
	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->heap_idx = a;
	l->heap[b]->heap_idx = b;
}

static void heap_up(struct loop *l, size_t i)
{
	while (i > 1 && l->heap[i / 2]->deadline_ms > l->heap[i]->deadline_ms) {
		heap_swap(l, i, i / 2);
		i /= 2;
	}
}

static void heap_down(struct loop *l, size_t i)
{
	for (;;) {
		size_t m = i, a = 2 * i, b = 2 * i + 1;
		if (a <= l->heap_len && l->heap[a]->deadline_ms < l->heap[m]->deadline_ms)
			m = a;
		if (b <= l->heap_len && l->heap[b]->deadline_ms < l->heap[m]->deadline_ms)
			m = b;
		if (m == i)
			return;
		heap_swap(l, i, m);
		i = m;
	}
}

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *arg)
{
	t->deadline_ms = 0;
	t->heap_idx = 0;
	t->cb = cb;
	t->arg = arg;
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
	size_t i = t->heap_idx;
	if (!i)
		return;
	t->heap_idx = 0;
	if (i != l->heap_len) {
		l->heap[i] = l->heap[l->heap_len];
		l->heap[i]->heap_idx = i;
		l->heap_len--;
		heap_up(l, i);
		heap_down(l, i);
	} else {
		l->heap_len--;
	}
}

void loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t ms)
{
	uint64_t deadline = l->now_ms + ms;
	if (t->heap_idx) {
		uint64_t old = t->deadline_ms;
		t->deadline_ms = deadline;
		if (deadline < old)
			heap_up(l, t->heap_idx);
		else
			heap_down(l, t->heap_idx);
		return;
	}
	if (l->heap_len + 1 >= l->heap_cap) {
		size_t ncap = l->heap_cap ? l->heap_cap * 2 : 1024;
		struct loop_timer **nh = realloc(l->heap, ncap * sizeof(*nh));
		if (!nh) {
			/* Out of memory: fire on the next iteration rather than never. */
			log_err("event=timer_oom");
			abort();
		}
		l->heap = nh;
		l->heap_cap = ncap;
	}
	t->deadline_ms = deadline;
	l->heap[++l->heap_len] = t;
	t->heap_idx = l->heap_len;
	heap_up(l, l->heap_len);
}

uint64_t loop_turn(const struct loop *l)
{
	return l->turn;
}

uint64_t loop_now_ms(struct loop *l)
{
	return l->now_ms;
}

uint64_t loop_update_clock(struct loop *l)
{
	l->now_ms = mono_ms();
	return l->now_ms;
}

int loop_add_before_sleep(struct loop *l, loop_hook_cb cb, void *arg)
{
	if (l->nhooks >= LOOP_MAX_HOOKS)
		return -ENOSPC;
	l->hooks[l->nhooks].cb = cb;
	l->hooks[l->nhooks].arg = arg;
	l->nhooks++;
	return 0;
}

/* --- signals -------------------------------------------------------------- */

static void sig_readable(struct loop_io *io, uint32_t events)
{
	struct loop *l = io->arg;
	struct signalfd_siginfo si;
	while (read(l->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		for (int i = 0; i < l->nsigs; i++)
			if (l->sigs[i].signo == (int)si.ssi_signo)
				l->sigs[i].cb(l, (int)si.ssi_signo, l->sigs[i].arg);
	}
}

int loop_signal(struct loop *l, int signo, loop_signal_cb cb, void *arg)
{
	if (l->nsigs >= LOOP_MAX_SIGS)
		return -ENOSPC;
	sigaddset(&l->sigmask, signo);
	if (sigprocmask(SIG_BLOCK, &l->sigmask, NULL) < 0)
		return -errno;
	int fd = signalfd(l->sigfd, &l->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (l->sigfd < 0) {
		l->sigfd = fd;
		int r = loop_io_add_lt(l, &l->sig_io, fd, sig_readable, l);
		if (r < 0)
			return r;
	}
	l->sigs[l->nsigs].signo = signo;
	l->sigs[l->nsigs].cb = cb;
	l->sigs[l->nsigs].arg = arg;
	l->nsigs++;
	return 0;
}

/* --- run ------------------------------------------------------------------- */

static void run_timers(struct loop *l)
{
	/* At most as many callbacks as there were timers: one that re-arms
	 * itself for "now" (0 ms) runs again after the next epoll_wait, not in
	 * an endless loop here (the clock does not move inside this pass). */
	size_t budget = l->heap_len;
	while (budget-- && l->heap_len && l->heap[1]->deadline_ms <= l->now_ms) {
		struct loop_timer *t = l->heap[1];
		loop_timer_cancel(l, t);
		t->cb(t);
	}
}

int loop_run(struct loop *l)
{
	struct epoll_event evs[LOOP_MAX_EVENTS];
	l->running = 1;
	while (l->running) {
		for (int i = 0; i < l->nhooks; i++)
			l->hooks[i].cb(l, l->hooks[i].arg);
		int timeout = -1;
		if (l->heap_len) {
			uint64_t d = l->heap[1]->deadline_ms;
			timeout = d <= l->now_ms
				      ? 0
				      : (int)(d - l->now_ms > 60000 ? 60000 : d - l->now_ms);
		}
		int n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR)
			return -errno;
		l->now_ms = mono_ms();
		l->turn++;
		for (int i = 0; i < n; i++) {
			struct loop_io *io = evs[i].data.ptr;
			if (io->cb)
				io->cb(io, evs[i].events);
		}
		run_timers(l);
	}
	return 0;
}

void loop_stop(struct loop *l)
{
	l->running = 0;
}
