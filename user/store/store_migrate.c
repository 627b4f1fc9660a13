/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * store_migrate.c - schema migrations outside the daemon (easgated
 * --db-migrate): a deploy step before new binaries roll out, or a database
 * prepared at a given version. Blocking, which is fine here: no loop runs.
 */
#include "store_migrate.h"
#include "gate.h"
#include "inventory_schema.h"
#include "store_pg_schema.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int migrate_sqlite(const struct gw_config *c, int to, char *msg, size_t n)
{
	char path[PATH_MAX + 32];
	gate_inventory_path(c, path, sizeof(path));
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		snprintf(msg, n, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
		sqlite3_close(db);
		return -1;
	}
	sqlite3_busy_timeout(db, 5000);
	sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
	int from = inv_schema_version(db);
	char err[256];
	int v = inv_schema_migrate(db, to, err, sizeof(err));
	sqlite3_close(db);
	if (v < 0) {
		snprintf(msg, n, "%s: %s", path, err);
		return -1;
	}
	snprintf(msg, n, "%s: schema %d -> %d", path, from, v);
	return 0;
}

static int migrate_pg(const struct gw_config *c, int to, char *msg, size_t n)
{
	PGconn *pc = PQconnectdb(c->pg.conninfo);
	if (PQstatus(pc) != CONNECTION_OK) {
		snprintf(msg, n, "%.*s", (int)strcspn(PQerrorMessage(pc), "\n"),
			 PQerrorMessage(pc));
		PQfinish(pc);
		return -1;
	}
	int rc = -1, from = 0;
	PGresult *r = PQexec(pc, store_pg_version_query());
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		from = atoi(PQgetvalue(r, 0, 0));
	else if (!PQresultErrorField(r, PG_DIAG_SQLSTATE) ||
		 strcmp(PQresultErrorField(r, PG_DIAG_SQLSTATE), STORE_PG_NO_TABLE)) {
		snprintf(msg, n, "%.*s", (int)strcspn(PQresultErrorMessage(r), "\n"),
			 PQresultErrorMessage(r));
		goto out;
	}
	PQclear(r);
	r = NULL;
	struct sbuf sql = {0};
	int steps = store_pg_migration_script(from, to, &sql);
	if (steps > 0) {
		r = PQexec(pc, sql.p);
		if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
			snprintf(msg, n, "%.*s", (int)strcspn(PQresultErrorMessage(r), "\n"),
				 PQresultErrorMessage(r));
			sbuf_free(&sql);
			goto out;
		}
	}
	sbuf_free(&sql);
	snprintf(msg, n, "%s@%s:%s: schema %d -> %d", PQdb(pc), PQhost(pc), PQport(pc), from,
		 steps > 0 ? from + steps : from);
	rc = 0;
out:
	PQclear(r);
	PQfinish(pc);
	return rc;
}

int store_migrate_offline(const struct gw_config *c, int to, char *msg, size_t n)
{
	return c->store == CFG_STORE_POSTGRESQL ? migrate_pg(c, to, msg, n)
						: migrate_sqlite(c, to, msg, n);
}
