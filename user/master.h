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

/* Command-line settings that override the file (and survive reloads). */
struct master_opts {
	const char *config_path; /* NULL = built-in defaults */
	const char *listen;
	const char *tls_cert, *tls_key, *trust_file;
	const char *backends[EG_MAX_BACKENDS]; /* "name=host:port[,prefix=/x][,health=0]" */
	int nbackends;
	const char *state_dir;
	const char *control_socket;
	const char *user;
	const char *log_level;
	const char *metrics;
	int workers;	     /* -1 = from config */
	const char *version; /* easgated --version, for the farm's node heartbeats */
};

/* Load the file (if any), then apply the overrides. 0 or -1 (errors in errs). */
int master_load_config(const struct master_opts *o, struct gw_config *c,
		       struct config_errors *errs);

/* Check certificates as a start/reload would. 0 or -1 (problems logged). */
int master_check_certs(const struct gw_config *c, int verbose);

/* Everything --check-config checks: certificates and policy rules.
 * Returns the number of problems (0 = OK), each logged/printed. */
int master_check_config_full(const struct gw_config *c);

/* Run until stopped; returns the exit code. */
int master_run(const struct master_opts *o);

#endif
