/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * history.h - requests per second over the last hours, by verdict, by EAS
 * command and by backend, for the console's charts (`easctl history`).
 *
 * The master samples the workers' shared counters (shm stats) every
 * HISTORY_STEP_S seconds and keeps the differences in a ring of
 * HISTORY_POINTS samples (6 hours, about 1.2 MiB); nothing is asked of a
 * worker and nothing is written to disk (a restart starts the charts again).
 */
#ifndef EG_HISTORY_H
#define EG_HISTORY_H

#include <stdint.h>

#include "config.h"
#include "control.h"
#include "shm.h"

#define HISTORY_STEP_S 10
#define HISTORY_POINTS 2160

struct history;

struct history *history_new(void);
void history_free(struct history *h);
/* From the master's tick: take a sample when a step has passed. */
void history_tick(struct history *h, const struct shm *s, const struct gw_config *c, int64_t now);
/* `history [--hours N]`: JSON {"step": s, "t": [...], "verdict": {...},
 * "command": {...}, "backend": {...}}, values in requests per second. */
enum ctl_code history_command(struct history *h, int argc, char **argv, struct sbuf *out);

#endif
