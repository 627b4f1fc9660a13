/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * procstat.h - a process's state and parent from /proc/PID/stat, for the
 * master's watchdog (is a silent worker runnable?) and the control socket's
 * peer check (is the peer one of ours?).
 */
#ifndef EG_PROCSTAT_H
#define EG_PROCSTAT_H

#include <sys/types.h>

/* pid's state letter (R, S, D, T, Z...) and parent; ppid may be NULL.
 * -1 (errno set) if the process is gone or the file cannot be read or parsed. */
int procstat_read(pid_t pid, char *state, pid_t *ppid);

#endif
