/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* store_migrate.h - migrate the configured store's schema without a daemon. */
#ifndef EG_STORE_MIGRATE_H
#define EG_STORE_MIGRATE_H

#include <stddef.h>

#include "config.h"

/* Up to version `to` (<= 0: the latest). 0, or -1; msg says what happened. */
int store_migrate_offline(const struct gw_config *c, int to, char *msg, size_t n);

#endif
