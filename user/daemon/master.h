/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * master.h - the supervising process: loads and checks the config, owns the
 * listening sockets, the kernel maps, the control socket, the health checks
 * and the inventory writer; forks one worker per core and replaces them on
 * reload without closing a listening socket (new workers take over the same
 * sockets, old ones drain).
 */
#ifndef EG_MASTER_H
#define EG_MASTER_H

#include "config.h"
#include "control.h"

/* Check certificates as a start/reload would. 0 or -1 (problems logged). */
int master_check_certs(const struct gw_config *c, int verbose);

/* Everything --check-config checks: certificates and policy rules.
 * Returns the number of problems (0 = OK), each logged/printed. */
int master_check_config_full(const struct gw_config *c);

/* Run until stopped; returns the exit code. version: easgated --version,
 * which the farm's node heartbeats carry. */
int master_run(const struct config_cmdline *o, const char *version);

/* The daemon's command table (control.h), NULL-name-terminated: for the
 * check that every command has its help (command_doc.h). */
const struct ctl_cmd *master_commands(void);

#endif
