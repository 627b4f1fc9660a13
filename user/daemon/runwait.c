/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* runwait.c - see runwait.h. */
#include "runwait.h"
#include "procstat.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int runwait_available(void)
{
	return access("/proc/self/schedstat", R_OK) == 0;
}

/* The file's first bytes, NUL-terminated; -1 on error. */
static ssize_t read_small(const char *path, char *buf, size_t sz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sz - 1);
	int e = errno;
	close(fd);
	if (n < 0) {
		errno = e;
		return -1;
	}
	buf[n] = 0;
	return n;
}

int runwait_read(pid_t pid, struct runwait_sample *s)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	if (read_small(path, buf, sizeof(buf)) < 0)
		return -1;
	if (sscanf(buf, "%" SCNu64 " %" SCNu64 " %" SCNu64, &s->exec_ns, &s->run_delay_ns,
		   &s->slices) != 3) {
		errno = EINVAL;
		return -1;
	}
	char state;
	if (procstat_read(pid, &state, NULL) < 0)
		return -1;
	s->runnable = state == 'R';
	return 0;
}

uint64_t runwait_update(struct runwait *w, uint64_t beat_ms, uint64_t now_ms,
			const struct runwait_sample *s)
{
	if (w->have_prev && now_ms >= w->prev_ms) {
		int kept_off =
		    s->runnable && s->exec_ns == w->prev.exec_ns && s->slices == w->prev.slices;
		w->pending_ms = kept_off ? w->pending_ms + (now_ms - w->prev_ms) : 0;
	}
	/* When the task next runs, run_delay takes in the wait already counted as
	 * pending: the maximum keeps the account from counting it twice. */
	uint64_t total = s->run_delay_ns / 1000000u + w->pending_ms;
	if (!w->have_prev || total > w->waited_ms)
		w->waited_ms = total;
	w->prev = *s;
	w->prev_ms = now_ms;
	if (!w->have_prev || beat_ms != w->beat_ms) {
		w->beat_ms = beat_ms;
		w->waited_at_beat_ms = w->waited_ms;
	}
	w->have_prev = 1;
	return w->waited_ms - w->waited_at_beat_ms;
}

uint64_t runwait_waited_ms(struct runwait *w, pid_t pid, uint64_t beat_ms, uint64_t now_ms)
{
	struct runwait_sample s;
	if (w->pid != pid) {
		memset(w, 0, sizeof(*w));
		w->pid = pid;
	}
	if (runwait_read(pid, &s) < 0)
		return 0;
	return runwait_update(w, beat_ms, now_ms, &s);
}
