/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * inventory_schema.h - versions of the inventory's SQLite schema. A
 * schema_version table lists the migrations applied (version, when, what);
 * a database made before it existed is recognised by its meta row.
 * Migrations only add tables and columns, so a binary can keep using a
 * database a newer binary migrated.
 */
#ifndef EG_INVENTORY_SCHEMA_H
#define EG_INVENTORY_SCHEMA_H

#include <stddef.h>

typedef struct sqlite3 sqlite3;

/* The version this binary creates. */
int inv_schema_latest(void);
/* The version of db: 0 = empty, -1 = unreadable. */
int inv_schema_version(sqlite3 *db);
/* What migration `version` does (for easctl db status). 0 or -1. */
int inv_schema_describe(int version, const char **what);
/*
 * Apply the migrations up to target (<= 0: the latest) in one write
 * transaction each; rows are kept. Returns the version the file has now,
 * or -1 with the reason in err (the file stays at its old version).
 */
int inv_schema_migrate(sqlite3 *db, int target, char *err, size_t errsz);

#endif
