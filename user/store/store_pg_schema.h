/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * store_pg_schema.h - the farm database's schema versions (store_pg_schema.c).
 * Migrations only add, so nodes of the previous release keep working on a
 * database a newer node migrated (a rolling upgrade).
 */
#ifndef EG_STORE_PG_SCHEMA_H
#define EG_STORE_PG_SCHEMA_H

#include "sbuf.h"

/* The version this binary creates. */
int store_pg_schema_latest(void);
/* What a version adds ("" if unknown). */
const char *store_pg_schema_what(int version);
/*
 * The script taking a database from version `from` to `to` (<= 0: the
 * latest), appended to out: one simple-query message, so one transaction,
 * under an advisory lock, refusing to run if the version is no longer
 * `from`. Returns how many versions it adds (0: nothing to do).
 */
int store_pg_migration_script(int from, int to, struct sbuf *out);
/* The query reading a database's version. SQLSTATE 42P01 (no such table)
 * means 0: nothing created yet. */
const char *store_pg_version_query(void);
#define STORE_PG_NO_TABLE "42P01"

#endif
