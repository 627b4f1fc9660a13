/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * peercred.h - who is at the other end of an accepted UNIX stream socket, in
 * the kernel's words, and whether that peer may administer the daemon.
 *
 * Allowed: root, the daemon's user, or a member of its group (primary OR
 * supplementary: SO_PEERGROUPS, the groups the kernel recorded at connect(),
 * the same credentials the socket file's 0660 permission was checked
 * against; not getgrouplist(), which asks NSS (it may block on LDAP) about the
 * group database rather than the process, nor /proc/PID/status, which is
 * read later and can belong to another process once the pid is reused).
 *
 * Never allowed: this process or any of its descendants. Workers run as the
 * daemon's user and parse every byte phones send; a worker that was taken
 * over must not reach admin commands. The process must be a child subreaper
 * (PR_SET_CHILD_SUBREAPER, the master sets it) so that what a worker forks
 * and orphans is adopted by it and stays a descendant.
 *
 * The descendant test reads the peer's /proc/PID/stat and walks PPid up. A
 * peer that has exited (or is a zombie) is refused: its pid proves nothing.
 * Where the kernel has SO_PEERPIDFD (Linux 6.5) the peer is also checked to
 * be alive AFTER the walk, so what was read was the connecting process
 * itself, not another that reused its pid. On older kernels the remaining
 * race needs the pid space to wrap between connect() and the accept (which
 * the master does at once: it never blocks on a client).
 */
#ifndef EG_PEERCRED_H
#define EG_PEERCRED_H

#include <sys/types.h>

struct peercred {
	pid_t pid; /* 0 when the peer is in a pid namespace we cannot see */
	uid_t uid;
	gid_t gid; /* primary */
};

/*
 * NULL if the peer of the connected UNIX socket fd may use it (see above)
 * for a daemon running as uid/gid; else why not (a static string). who gets
 * the peer's pid/uid/gid for the log (zeroes when unknown).
 */
const char *peercred_refusal(int fd, uid_t uid, gid_t gid, struct peercred *who);

/* 1 if pid is this process or a descendant, 0 if not, -1 if it is gone (or a
 * zombie) or its ancestry cannot be read. */
int peercred_descendant(pid_t pid);

#endif
