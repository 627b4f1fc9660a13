/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* procstat.c - see procstat.h. */
#include "procstat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int procstat_read(pid_t pid, char *state, pid_t *ppid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	int e = n < 0 ? errno : EINVAL;
	close(fd);
	if (n <= 0) {
		errno = e;
		return -1;
	}
	buf[n] = 0;
	/* "pid (comm) S ppid ...": comm may hold spaces and parentheses, so the
	 * last ')' ends it. */
	const char *rp = strrchr(buf, ')');
	int pp;
	if (!rp || sscanf(rp + 1, " %c %d", state, &pp) != 2) {
		errno = EINVAL;
		return -1;
	}
	if (ppid)
		*ppid = (pid_t)pp;
	return 0;
}
