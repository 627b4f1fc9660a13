/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * check.h - active health checks, run by the master on its loop: every
 * interval, connect to each backend (TLS if configured), send
 * "GET <health path>" and read the status line. Any HTTP answer below 500
 * counts as alive (an Exchange EAS path answers 401 without credentials);
 * connect errors, timeouts and 5xx count as failures. After `fall`
 * consecutive failures the backend is marked down in shared memory, after
 * `rise` successes up again; workers rebuild their Maglev table when they see
 * shm->backend_gen change, so only the dead backend's users move.
 */
#ifndef EG_CHECK_H
#define EG_CHECK_H

#include "config.h"
#include "loop.h"
#include "shm.h"

struct checker;

struct checker *checker_new(struct loop *l, struct shm *s, const struct gw_config *c);
/* Stop all checks and free. Health state in shm stays as it was. */
void checker_free(struct checker *k);

#endif
