/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* journal.c - see journal.h. */
#include "journal.h"
#include "eas.h"
#include "inventory.h"
#include "log.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

enum {
	J_FIND,
	J_INSERT,
	J_REPLACE,
	J_PEEK,
	J_ACK,
	J_COUNT,
	J_OLDEST,
	J_ALL_DEVICES,
	J_ALL_VERSIONS,
	J_REFILL,
	J_REFILL_NEXT,
	J__N
};

#define REFILL_SCAN                                                                                \
	"SELECT max(last_attempt, devinfo_at, decided_at, result_at, admin_at, loop_at) AS t,"     \
	" user, device_id FROM devices WHERE t > ?1 OR (t = ?1 AND (user > ?2 OR (user = ?2"       \
	" AND device_id > ?3))) ORDER BY t, user, device_id LIMIT ?4"

static const char *const jsql[J__N] = {
    [J_FIND] = "SELECT seq FROM journal WHERE kind = ?1 AND k1 = ?2 AND k2 = ?3",
    [J_INSERT] = "INSERT INTO journal (kind, k1, k2, at) VALUES (?1, ?2, ?3, ?4)",
    /* A new number (AUTOINCREMENT: larger than any before), same row. */
    [J_REPLACE] = "INSERT OR REPLACE INTO journal (kind, k1, k2, at) VALUES (?1, ?2, ?3, ?4)",
    [J_PEEK] = "SELECT seq, kind, k1, k2 FROM journal ORDER BY seq LIMIT ?1",
    [J_ACK] = "DELETE FROM journal WHERE seq <= ?1",
    [J_COUNT] = "SELECT count(*) FROM journal",
    [J_OLDEST] = "SELECT at FROM journal ORDER BY seq LIMIT 1",
    [J_ALL_DEVICES] = "INSERT OR IGNORE INTO journal (kind, k1, k2, at)"
		      " SELECT 'd', user, device_id, ?1 FROM devices",
    [J_ALL_VERSIONS] = "INSERT OR IGNORE INTO journal (kind, k1, k2, at)"
		       " SELECT 'v', os_key, '', ?1 FROM os_versions",
    /* The overflow's devices in (change time, user, DeviceId) order after
     * the cursor (?1, ?2, ?3), at most ?4: a keyset, so many rows changed in
     * the same second do not stop it. */
    [J_REFILL] = "INSERT OR IGNORE INTO journal (kind, k1, k2, at)"
		 " SELECT 'd', user, device_id, ?5 FROM (" REFILL_SCAN ")",
    [J_REFILL_NEXT] = "SELECT t, user, device_id FROM (" REFILL_SCAN ") ORDER BY t DESC,"
		      " user DESC, device_id DESC LIMIT 1",
};

struct journal {
	struct inventory *inv;
	sqlite3 *db;
	sqlite3_stmt *st[J__N];
	char id[40];
	int64_t inflight; /* entries up to this seq are in a push */
	struct journal_stats st_;
	/* refill cursor (meta journal_overflow): changes after (time, user,
	 * DeviceId) still to be journaled again; time 0 = no overflow */
	char cur_user[EAS_USER_MAX + 1], cur_dev[EAS_DEVID_MAX + 1];
};

static sqlite3_stmt *jq(struct journal *j, int i)
{
	sqlite3_stmt *s = j->st[i];
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

static int jstep(struct journal *j, sqlite3_stmt *s, const char *what)
{
	int r = sqlite3_step(s);
	sqlite3_reset(s);
	if (r != SQLITE_DONE && r != SQLITE_ROW) {
		log_err("event=journal_error op=%s error=\"%s\"", what, sqlite3_errmsg(j->db));
		return -1;
	}
	return 0;
}

static uint64_t count_rows(struct journal *j)
{
	sqlite3_stmt *s = jq(j, J_COUNT);
	uint64_t n = sqlite3_step(s) == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	return n;
}

struct journal *journal_new(struct inventory *inv, uint64_t max, char *err, size_t errsz)
{
	struct journal *j = calloc(1, sizeof(*j));
	if (!j) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	j->inv = inv;
	j->db = inv_sqlite(inv);
	j->st_.max = max;
	for (int i = 0; i < J__N; i++)
		if (sqlite3_prepare_v3(j->db, jsql[i], -1, SQLITE_PREPARE_PERSISTENT, &j->st[i],
				       NULL) != SQLITE_OK) {
			snprintf(err, errsz, "journal: %s", sqlite3_errmsg(j->db));
			journal_free(j);
			return NULL;
		}
	if (inv_meta_get(inv, "journal_id", j->id, sizeof(j->id)) != 1 || !j->id[0]) {
		uint64_t r[2];
		if (getrandom(r, sizeof(r), 0) != sizeof(r)) {
			snprintf(err, errsz, "journal: no randomness");
			journal_free(j);
			return NULL;
		}
		snprintf(j->id, sizeof(j->id), "%016llx%016llx", (unsigned long long)r[0],
			 (unsigned long long)r[1]);
		if (inv_meta_set(inv, "journal_id", j->id) < 0) {
			snprintf(err, errsz, "journal: cannot store its id");
			journal_free(j);
			return NULL;
		}
	}
	char v[EAS_USER_MAX + EAS_DEVID_MAX + 40];
	if (inv_meta_get(inv, "journal_overflow", v, sizeof(v)) == 1) {
		/* "time\x1fuser\x1fDeviceId" */
		char *u = strchr(v, '\x1f'), *d = u ? strchr(u + 1, '\x1f') : NULL;
		if (u && d) {
			*u = *d = 0;
			j->st_.overflow_since = strtoll(v, NULL, 10);
			snprintf(j->cur_user, sizeof(j->cur_user), "%s", u + 1);
			snprintf(j->cur_dev, sizeof(j->cur_dev), "%s", d + 1);
		}
	}
	j->st_.entries = count_rows(j);
	return j;
}

void journal_free(struct journal *j)
{
	if (!j)
		return;
	for (int i = 0; i < J__N; i++)
		sqlite3_finalize(j->st[i]);
	free(j);
}

const char *journal_id(const struct journal *j)
{
	return j->id;
}

static void save_cursor(struct journal *j)
{
	char v[EAS_USER_MAX + EAS_DEVID_MAX + 40];
	snprintf(v, sizeof(v), "%lld\x1f%s\x1f%s", (long long)j->st_.overflow_since, j->cur_user,
		 j->cur_dev);
	inv_meta_set(j->inv, "journal_overflow", v);
}

static void bind_key(sqlite3_stmt *s, char kind, const char *k1, const char *k2)
{
	char k[2] = {kind, 0};
	sqlite3_bind_text(s, 1, k, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, k1 ? k1 : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, k2 ? k2 : "", -1, SQLITE_TRANSIENT);
}

int journal_mark(struct journal *j, char kind, const char *k1, const char *k2, int64_t now)
{
	sqlite3_stmt *s = jq(j, J_FIND);
	bind_key(s, kind, k1, k2);
	int64_t seq = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	j->st_.marked++;
	if (seq && seq > j->inflight)
		return 0; /* waiting: its push will read the row as it is then */
	if (!seq && j->st_.entries >= j->st_.max) {
		if (!j->st_.dropped++ || !j->st_.overflow_since) {
			log_warn("event=journal_full entries=%llu max=%llu note=\"changes are kept "
				 "here and sent once the journal has drained\"",
				 (unsigned long long)j->st_.entries,
				 (unsigned long long)j->st_.max);
		}
		/* From the start of this second: a refill under way may have
		 * passed rows changed in it before this one. */
		if (!j->st_.overflow_since || j->st_.overflow_since >= now) {
			j->st_.overflow_since = now - 1;
			j->cur_user[0] = j->cur_dev[0] = 0;
			save_cursor(j);
		}
		return 1;
	}
	s = jq(j, seq ? J_REPLACE : J_INSERT);
	bind_key(s, kind, k1, k2);
	sqlite3_bind_int64(s, 4, now);
	if (jstep(j, s, "mark") < 0)
		return -1;
	if (!seq)
		j->st_.entries++;
	return 0;
}

int journal_mark_all(struct journal *j, int64_t now)
{
	sqlite3_stmt *s = jq(j, J_ALL_DEVICES);
	sqlite3_bind_int64(s, 1, now);
	if (jstep(j, s, "mark_all") < 0)
		return -1;
	s = jq(j, J_ALL_VERSIONS);
	sqlite3_bind_int64(s, 1, now);
	if (jstep(j, s, "mark_all") < 0)
		return -1;
	j->st_.entries = count_rows(j);
	return 0;
}

int journal_peek(struct journal *j, int n,
		 int (*cb)(void *arg, int64_t seq, char kind, const char *k1, const char *k2),
		 void *arg)
{
	sqlite3_stmt *s = jq(j, J_PEEK);
	sqlite3_bind_int(s, 1, n);
	int r, got = 0;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		const char *kind = (const char *)sqlite3_column_text(s, 1);
		got++;
		if (cb(arg, sqlite3_column_int64(s, 0), kind ? kind[0] : 0,
		       (const char *)sqlite3_column_text(s, 2),
		       (const char *)sqlite3_column_text(s, 3)))
			break;
	}
	sqlite3_reset(s);
	return r == SQLITE_ROW || r == SQLITE_DONE ? got : -1;
}

void journal_inflight(struct journal *j, int64_t seq)
{
	j->inflight = seq;
}

int journal_ack(struct journal *j, int64_t seq)
{
	sqlite3_stmt *s = jq(j, J_ACK);
	sqlite3_bind_int64(s, 1, seq);
	int r = sqlite3_step(s);
	sqlite3_reset(s);
	if (r != SQLITE_DONE)
		return -1;
	uint64_t n = (uint64_t)sqlite3_changes(j->db);
	j->st_.acked += n;
	j->st_.entries = j->st_.entries > n ? j->st_.entries - n : 0;
	if (j->inflight <= seq)
		j->inflight = 0;
	return 0;
}

int journal_refill(struct journal *j, int64_t now)
{
	if (!j->st_.overflow_since || j->st_.entries)
		return 0;
	for (int i = J_REFILL; i <= J_REFILL_NEXT; i++) {
		sqlite3_stmt *s = jq(j, i);
		sqlite3_bind_int64(s, 1, j->st_.overflow_since);
		sqlite3_bind_text(s, 2, j->cur_user, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(s, 3, j->cur_dev, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(s, 4, (int64_t)j->st_.max);
		if (i == J_REFILL) {
			sqlite3_bind_int64(s, 5, now);
			if (jstep(j, s, "refill") < 0)
				return -1;
			continue;
		}
		/* the last row taken is the next cursor; none: all refilled */
		if (sqlite3_step(s) == SQLITE_ROW) {
			j->st_.overflow_since = sqlite3_column_int64(s, 0);
			snprintf(j->cur_user, sizeof(j->cur_user), "%s",
				 (const char *)sqlite3_column_text(s, 1));
			snprintf(j->cur_dev, sizeof(j->cur_dev), "%s",
				 (const char *)sqlite3_column_text(s, 2));
		} else {
			j->st_.overflow_since = 0;
		}
		sqlite3_reset(s);
	}
	sqlite3_stmt *s = jq(j, J_ALL_VERSIONS);
	sqlite3_bind_int64(s, 1, now);
	if (jstep(j, s, "refill") < 0)
		return -1;
	j->st_.entries = count_rows(j);
	if (!j->st_.entries)
		j->st_.overflow_since = 0; /* nothing after the cursor */
	save_cursor(j);
	log_info("event=journal_refilled entries=%llu rest_after=%lld",
		 (unsigned long long)j->st_.entries, (long long)j->st_.overflow_since);
	return j->st_.entries > 0;
}

void journal_stats_read(const struct journal *j, struct journal_stats *st)
{
	*st = j->st_;
	sqlite3_stmt *s = jq((struct journal *)j, J_OLDEST);
	st->oldest = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
}
