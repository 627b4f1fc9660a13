/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* peercred.c - see peercred.h. */
#include "peercred.h"
#include "procstat.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/* Deeper chains than this are refused rather than walked (fail closed). */
#define PEERCRED_MAX_DEPTH 4096

int peercred_descendant(pid_t pid)
{
	pid_t self = getpid();
	char state;
	pid_t ppid;
	for (int depth = 0; depth < PEERCRED_MAX_DEPTH; depth++) {
		if (pid == self)
			return 1;
		if (pid <= 1)
			return 0;
		if (procstat_read(pid, &state, &ppid) < 0)
			return -1;
		if (depth == 0 && (state == 'Z' || state == 'X'))
			return -1; /* the peer itself has exited */
		pid = ppid;
	}
	return -1;
}

/* Is gid among the peer's supplementary groups (as recorded at connect)? */
static int peer_in_group(int fd, gid_t gid)
{
	gid_t small[64], *g = small;
	socklen_t len = sizeof(small);
	int found = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
		if (errno != ERANGE || !(g = malloc(len)))
			return 0;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0)
			len = 0;
	}
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		found |= g[i] == gid;
	if (g != small)
		free(g);
	return found;
}

/*
 * The peer's pidfd still names a live process: 1, 0 if it has exited, -1 if
 * unknown. A pidfd polls readable once its process has exited (zombies
 * included), which needs no permission over that process.
 */
static int pidfd_alive(int pidfd)
{
	if (pidfd < 0)
		return -1;
	struct pollfd p = {.fd = pidfd, .events = POLLIN};
	int n = poll(&p, 1, 0);
	return n < 0 ? -1 : n == 0;
}

const char *peercred_refusal(int fd, uid_t uid, gid_t gid, struct peercred *who)
{
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	memset(who, 0, sizeof(*who));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0)
		return "no peer credentials";
	who->pid = cr.pid;
	who->uid = cr.uid;
	who->gid = cr.gid;
	if (cr.pid) {
		int pidfd = -1;
		socklen_t pl = sizeof(pidfd);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &pl) < 0)
			pidfd = -1; /* kernel before 6.5: /proc only */
		int d = peercred_descendant(cr.pid);
		int alive = pidfd_alive(pidfd);
		if (pidfd >= 0)
			close(pidfd);
		if (d == 1)
			return "a process of this gateway (a worker or its child)";
		if (d < 0 || alive == 0)
			return "the client exited before it could be checked";
	}
	if (cr.uid == 0 || cr.uid == uid || cr.uid == geteuid() || cr.gid == gid ||
	    peer_in_group(fd, gid))
		return NULL;
	return "not root, the daemon's user or a member of its group";
}
