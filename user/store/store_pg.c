/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * store_pg.c - the farm store's connection (store_pg.h): libpq driven from
 * the master's loop without ever blocking it. Connect is PQconnectStartParams
 * plus PQconnectPoll on the socket's readiness; queries are PQsendQuery*,
 * answers PQconsumeInput/PQgetResult when the socket is readable, all with
 * the connection in non-blocking mode. libpq itself walks a conninfo's hosts
 * when one refuses or is read-only (target_session_attrs); one that does not
 * answer at all is left after postgresql.timeout, and the next attempt starts
 * at the host after it. What this file does not do: resolve host names
 * without blocking (libpq calls getaddrinfo inside PQconnectStart), so give
 * hostaddr= or IP addresses when a resolver may hang.
 *
 * Passwords: never in logs or easctl output (only host, port, database and
 * user are shown); prefer a passfile to a password in the conninfo.
 */
#include "inventory.h"
#include "journal.h"
#include "log.h"
#include "store_pg.h"
#include "store_pg_schema.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define PG_BACKOFF_MIN_MS 200
#define PG_BACKOFF_MAX_MS 2000

/* --- jobs ----------------------------------------------------------------------- */

struct pg_job *pg_job_new(const char *name, const char *sql)
{
	struct pg_job *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->name = name;
	j->kind = -1;
	j->sql = strdup(sql);
	if (!j->sql) {
		free(j);
		return NULL;
	}
	return j;
}

void pg_job_param(struct pg_job *j, const char *v)
{
	if (j->nparams >= PG_JOB_PARAMS)
		return;
	j->params[j->nparams++] = v ? strdup(v) : NULL;
}

void pg_job_paramf(struct pg_job *j, const char *fmt, ...)
{
	char buf[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pg_job_param(j, buf);
}

void pg_job_free(struct pg_job *j)
{
	if (!j)
		return;
	for (int i = 0; i < j->nparams; i++)
		free(j->params[i]);
	free(j->sql);
	free(j->data);
	free(j);
}

const char *pg_val(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
}

long long pg_ll(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void first_line(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%.*s", (int)strcspn(src ? src : "", "\n"), src ? src : "");
}

/* --- the socket ------------------------------------------------------------------ */

static void on_io(struct loop_io *io, uint32_t ev);

/* (Re)register libpq's socket: it changes while libpq walks the hosts, and a
 * new socket may get the old one's number, so during connect it is always
 * registered afresh. */
static void watch(struct pgs *p, int want_write, int fresh)
{
	int fd = p->conn ? PQsocket(p->conn) : -1;
	struct loop *l = p->s->loop;
	if (p->io_fd >= 0 && (fresh || fd != p->io_fd)) {
		loop_io_del(l, &p->io);
		p->io_fd = -1;
	}
	if (fd < 0)
		return;
	if (p->io_fd < 0) {
		if (loop_io_add_lt_rw(l, &p->io, fd, on_io, p, want_write) < 0) {
			pg_fail(p, "cannot watch the database socket");
			return;
		}
		p->io_fd = fd;
		p->want_write = want_write;
	} else if (p->want_write != want_write) {
		loop_io_want_write(l, &p->io, want_write);
		p->want_write = want_write;
	}
}

/* --- connection state --------------------------------------------------------------- */

static const char *state_name(enum pg_state st)
{
	switch (st) {
	case PG_DOWN:
		return "down";
	case PG_CONNECTING:
		return "connecting";
	case PG_SETUP:
		return "syncing";
	case PG_BEHIND:
		return "schema-behind";
	case PG_READY:
		return "up";
	}
	return "?";
}

static void fail_job(struct pgs *p, struct pg_job *j, const char *why)
{
	if (!j->err[0])
		snprintf(j->err, sizeof(j->err), "%s", why);
	if (j->done)
		j->done(p, j, j->err, j->sqlstate, 1);
	pg_job_free(j);
}

void pg_fail(struct pgs *p, const char *why)
{
	struct store *s = p->s;
	char line[256];
	first_line(line, sizeof(line), why);
	int was_up = p->state == PG_READY || p->state == PG_SETUP || p->state == PG_BEHIND;
	if (was_up || p->up_since >= p->down_since) {
		p->down_since = time(NULL);
		log_warn("event=store_down store=postgresql host=%s port=%s error=\"%s\" "
			 "note=\"serving with the last policy known; changes are journaled\"",
			 p->host[0] ? p->host : "-", p->port[0] ? p->port : "-", line);
	} else if (strcmp(line, p->last_error)) {
		log_warn("event=store_connect_failed error=\"%s\"", line);
	}
	if (was_up)
		p->disconnects++;
	snprintf(p->last_error, sizeof(p->last_error), "%s", line);
	if (p->io_fd >= 0) {
		loop_io_del(s->loop, &p->io);
		p->io_fd = -1;
	}
	loop_timer_cancel(s->loop, &p->deadline);
	if (p->conn) {
		PQfinish(p->conn);
		p->conn = NULL;
	}
	p->state = PG_DOWN;
	p->synced = 0;
	p->push_inflight = 0;
	p->want = PG_WANT_ALL;
	if (s->journal)
		journal_inflight(s->journal, 0);
	/* Everything waiting fails now: an admin is told at once. */
	struct pg_job *j = p->cur;
	p->cur = NULL;
	if (j)
		fail_job(p, j, line);
	while ((j = p->head)) {
		p->head = j->next;
		fail_job(p, j, line);
	}
	p->tail = NULL;
	p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : PG_BACKOFF_MIN_MS;
	if (p->backoff_ms > PG_BACKOFF_MAX_MS)
		p->backoff_ms = PG_BACKOFF_MAX_MS;
	loop_timer_set(s->loop, &p->retry, p->backoff_ms);
}

/* The hosts of a conninfo value ("a,b,c"): how many. */
static int count_list(const char *v)
{
	if (!v || !v[0])
		return 0;
	int n = 1;
	for (; *v; v++)
		n += *v == ',';
	return n;
}

/* v rotated to start at entry k ("a,b,c", 1 -> "b,c,a"). */
static void rotate_list(const char *v, int k, char *out, size_t outsz)
{
	int n = count_list(v);
	out[0] = 0;
	if (n <= 1 || k % n == 0) {
		snprintf(out, outsz, "%s", v);
		return;
	}
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		int want = (k + i) % n;
		const char *e = v;
		for (int x = 0; x < want; x++)
			e = strchr(e, ',') + 1;
		size_t el = strcspn(e, ",");
		len += (size_t)snprintf(out + len, outsz > len ? outsz - len : 0, "%s%.*s",
					i ? "," : "", (int)el, e);
	}
}

static void connect_start(struct pgs *p)
{
	struct store *s = p->s;
	char *why = NULL;
	PQconninfoOption *opts = PQconninfoParse(s->cfg->pg.conninfo, &why);
	if (!opts) {
		pg_fail(p, why ? why : "cannot parse postgresql.conninfo");
		PQfreemem(why);
		return;
	}
	const char *kw[64];
	const char *val[64];
	char rot[3][1024];
	int n = 0, have_app = 0;
	for (PQconninfoOption *o = opts; o->keyword && n < 62; o++) {
		if (!o->val)
			continue;
		const char *v = o->val;
		int which = !strcmp(o->keyword, "host")	      ? 0
			    : !strcmp(o->keyword, "hostaddr") ? 1
			    : !strcmp(o->keyword, "port")     ? 2
							      : -1;
		if (which >= 0 && p->host_start && count_list(v) == p->nhosts) {
			rotate_list(v, p->host_start, rot[which], sizeof(rot[which]));
			v = rot[which];
		}
		have_app |= !strcmp(o->keyword, "application_name") ||
			    !strcmp(o->keyword, "fallback_application_name");
		kw[n] = o->keyword;
		val[n++] = v;
	}
	if (!have_app) {
		kw[n] = "fallback_application_name";
		val[n++] = "easgated";
	}
	kw[n] = NULL;
	val[n] = NULL;
	p->conn = PQconnectStartParams(kw, val, 0);
	PQconninfoFree(opts);
	if (!p->conn || PQstatus(p->conn) == CONNECTION_BAD) {
		pg_fail(p, p->conn ? PQerrorMessage(p->conn) : "out of memory");
		return;
	}
	p->state = PG_CONNECTING;
	p->poll = PGRES_POLLING_WRITING;
	p->host[0] = p->port[0] = 0;
	watch(p, 1, 1);
	loop_timer_set(s->loop, &p->deadline, s->cfg->pg.timeout_ms);
}

static void on_retry(struct loop_timer *t)
{
	struct pgs *p = t->arg;
	if (p->state == PG_DOWN && !p->conn)
		connect_start(p);
}

/* Which entry of the conninfo's host list this attempt is on (for the next
 * attempt after a timeout). */
static int current_host_index(struct pgs *p)
{
	PQconninfoOption *opts = PQconninfoParse(p->s->cfg->pg.conninfo, NULL);
	const char *hosts = NULL, *addrs = NULL;
	for (PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (!strcmp(o->keyword, "host"))
			hosts = o->val;
		if (!strcmp(o->keyword, "hostaddr"))
			addrs = o->val;
	}
	const char *list = hosts && hosts[0] ? hosts : addrs;
	const char *cur = p->conn ? PQhost(p->conn) : NULL;
	int idx = -1;
	if (list && cur) {
		char rot[1024];
		rotate_list(list, p->host_start, rot, sizeof(rot));
		const char *e = rot;
		for (int i = 0; e; i++) {
			size_t el = strcspn(e, ",");
			if (strlen(cur) == el && !strncmp(e, cur, el)) {
				idx = i;
				break;
			}
			e = e[el] ? e + el + 1 : NULL;
		}
	}
	PQconninfoFree(opts);
	return idx;
}

static void connected(struct pgs *p)
{
	struct store *s = p->s;
	loop_timer_cancel(s->loop, &p->deadline);
	if (PQsetnonblocking(p->conn, 1) < 0) {
		pg_fail(p, PQerrorMessage(p->conn));
		return;
	}
	snprintf(p->host, sizeof(p->host), "%s", PQhost(p->conn) ? PQhost(p->conn) : "");
	snprintf(p->port, sizeof(p->port), "%s", PQport(p->conn) ? PQport(p->conn) : "");
	p->state = PG_SETUP;
	p->connects++;
	p->backoff_ms = 0;
	p->host_start = 0;
	p->want = PG_WANT_ALL;
	watch(p, 0, 1);
	log_info("event=store_connected store=postgresql host=%s port=%s db=%s user=%s "
		 "server_version=%d",
		 p->host, p->port, PQdb(p->conn), PQuser(p->conn), PQserverVersion(p->conn));
	pg_sync_setup(p);
	pg_kick(p);
}

static void connect_poll(struct pgs *p, uint32_t ev)
{
	int ready = (p->poll == PGRES_POLLING_READING && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))) ||
		    (p->poll == PGRES_POLLING_WRITING && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)));
	if (!ready)
		return;
	p->poll = PQconnectPoll(p->conn);
	switch (p->poll) {
	case PGRES_POLLING_READING:
		watch(p, 0, 1);
		break;
	case PGRES_POLLING_WRITING:
		watch(p, 1, 1);
		break;
	case PGRES_POLLING_OK:
		connected(p);
		break;
	default:
		pg_fail(p, PQerrorMessage(p->conn));
		break;
	}
}

static void on_deadline(struct loop_timer *t)
{
	struct pgs *p = t->arg;
	char why[256];
	p->timeouts++;
	if (p->state == PG_CONNECTING) {
		int idx = current_host_index(p);
		snprintf(why, sizeof(why), "no answer from %s:%s within %u ms",
			 p->conn && PQhost(p->conn) ? PQhost(p->conn) : "?",
			 p->conn && PQport(p->conn) ? PQport(p->conn) : "?",
			 p->s->cfg->pg.timeout_ms);
		if (p->nhosts > 1 && idx >= 0)
			p->host_start = (p->host_start + idx + 1) % p->nhosts;
		pg_fail(p, why);
		return;
	}
	snprintf(why, sizeof(why), "%s: no answer within %u ms", p->cur ? p->cur->name : "query",
		 p->s->cfg->pg.timeout_ms);
	pg_fail(p, why);
}

/* --- running jobs ---------------------------------------------------------------- */

static void finish_job(struct pgs *p)
{
	struct pg_job *j = p->cur;
	p->cur = NULL;
	loop_timer_cancel(p->s->loop, &p->deadline);
	if (j->done)
		j->done(p, j, j->err[0] ? j->err : NULL, j->sqlstate, 0);
	pg_job_free(j);
}

static void read_results(struct pgs *p)
{
	while (p->conn && p->cur && !PQisBusy(p->conn)) {
		PGresult *r = PQgetResult(p->conn);
		if (!r) {
			finish_job(p);
			return;
		}
		struct pg_job *j = p->cur;
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) {
			if (!j->err[0]) {
				first_line(j->err, sizeof(j->err), PQresultErrorMessage(r));
				const char *ss = PQresultErrorField(r, PG_DIAG_SQLSTATE);
				snprintf(j->sqlstate, sizeof(j->sqlstate), "%s", ss ? ss : "");
			}
		} else if (j->result && !j->err[0]) {
			j->result(p, j, r);
		}
		PQclear(r);
	}
}

static void notifications(struct pgs *p)
{
	PGnotify *n;
	while (p->conn && (n = PQnotifies(p->conn))) {
		p->notifies++;
		if (!strcmp(n->relname, "easgate"))
			pg_sync_notified(p, n->extra ? n->extra : "");
		PQfreemem(n);
	}
}

static void on_io(struct loop_io *io, uint32_t ev)
{
	struct pgs *p = io->arg;
	if (!p->conn)
		return;
	if (p->state == PG_CONNECTING) {
		connect_poll(p, ev);
		return;
	}
	if (ev & EPOLLOUT) {
		int r = PQflush(p->conn);
		if (r < 0) {
			pg_fail(p, PQerrorMessage(p->conn));
			return;
		}
		watch(p, r == 1, 0);
	}
	if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
		if (!PQconsumeInput(p->conn)) {
			pg_fail(p, PQerrorMessage(p->conn));
			return;
		}
		if (p->cur) /* progress: a long answer keeps its job alive */
			loop_timer_set(p->s->loop, &p->deadline, p->s->cfg->pg.timeout_ms);
		notifications(p);
		read_results(p);
	}
	pg_kick(p);
}

static int send_job(struct pgs *p, struct pg_job *j)
{
	int ok = j->nparams ? PQsendQueryParams(p->conn, j->sql, j->nparams, NULL,
						(const char *const *)j->params, NULL, NULL, 0)
			    : PQsendQuery(p->conn, j->sql);
	if (!ok)
		return -1;
	if (!j->t0_ms)
		j->t0_ms = loop_now_ms(p->s->loop);
	if (j->single_row && !PQsetSingleRowMode(p->conn))
		log_warn("event=store_single_row_refused job=%s", j->name);
	int r = PQflush(p->conn);
	if (r < 0)
		return -1;
	watch(p, r == 1, 0);
	return 0;
}

void pg_kick(struct pgs *p)
{
	while (p->conn && !p->cur &&
	       (p->state == PG_SETUP || p->state == PG_BEHIND || p->state == PG_READY)) {
		struct pg_job *j = NULL, **pp = &p->head;
		/* The first job that may run in this state. */
		for (; *pp; pp = &(*pp)->next)
			if (p->state == PG_READY || (*pp)->setup) {
				j = *pp;
				*pp = j->next;
				if (p->tail == j) {
					p->tail = NULL;
					for (struct pg_job *x = p->head; x; x = x->next)
						p->tail = x;
				}
				break;
			}
		if (!j && p->state == PG_READY)
			j = pg_sync_next(p);
		if (!j)
			return;
		j->next = NULL;
		p->cur = j;
		if (send_job(p, j) < 0) {
			pg_fail(p, PQerrorMessage(p->conn));
			return;
		}
		loop_timer_set(p->s->loop, &p->deadline, p->s->cfg->pg.timeout_ms);
	}
}

static void on_kick(struct loop_timer *t)
{
	pg_kick(t->arg);
}

void pg_submit(struct pgs *p, struct pg_job *j, int front)
{
	if (front) {
		j->next = p->head;
		p->head = j;
		if (!p->tail)
			p->tail = j;
	} else {
		j->next = NULL;
		if (p->tail)
			p->tail->next = j;
		else
			p->head = j;
		p->tail = j;
	}
	/* From the loop, not from inside whatever called us. */
	loop_timer_set(p->s->loop, &p->kick, 0);
}

/* --- the backend ------------------------------------------------------------------- */

static void pgb_change(struct store *s, const struct store_op *op, store_done_fn done, void *arg)
{
	pg_sync_change(s->impl, op, done, arg);
}

static void pgb_committed(struct store *s)
{
	struct pgs *p = s->impl;
	if (p && p->state == PG_READY && !p->cur)
		loop_timer_set(s->loop, &p->kick, 0);
}

static void pgb_heartbeat(struct store *s)
{
	struct pgs *p = s->impl;
	p->hb_due = 1;
	pgb_committed(s);
}

static void iso(int64_t t, char *out, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void pgb_describe(struct store *s, struct sbuf *o)
{
	struct pgs *p = s->impl;
	struct journal_stats js;
	journal_stats_read(s->journal, &js);
	int up = p->state == PG_READY;
	int64_t since = up ? p->up_since : p->down_since;
	char when[32];
	iso(since, when, sizeof(when));
	sbuf_printf(o, "store postgresql node=%s state=%s since=%s (%llds) journal=%llu", s->node,
		    state_name(p->state), when, (long long)(time(NULL) - since),
		    (unsigned long long)js.entries);
	if (up)
		sbuf_printf(o, " host=%s port=%s schema=%d", p->host, p->port, p->db_version);
	else
		sbuf_printf(o, " error=\"%s\"", p->last_error);
	sbuf_put(o, "\n", 1);
}

static void pgb_db_status(struct store *s, struct sbuf *o)
{
	struct pgs *p = s->impl;
	struct journal_stats js;
	journal_stats_read(s->journal, &js);
	int up = p->state == PG_READY;
	char when[32], oldest[32] = "-";
	iso(up ? p->up_since : p->down_since, when, sizeof(when));
	if (js.oldest)
		iso(js.oldest, oldest, sizeof(oldest));
	sbuf_printf(o,
		    "store:          postgresql\nnode:           %s\n"
		    "state:          %s since %s\n",
		    s->node, state_name(p->state), when);
	if (p->conn && p->state != PG_CONNECTING)
		sbuf_printf(o, "server:         %s:%s database %s user %s\n", p->host, p->port,
			    PQdb(p->conn), PQuser(p->conn));
	if (!up)
		sbuf_printf(o, "last error:     %s\n", p->last_error);
	sbuf_printf(o,
		    "schema:         database %d, this binary %d (%s)\n"
		    "local file:     schema %d (snapshot of the farm, read by the workers)\n"
		    "farm id:        %s\n"
		    "journal:        %llu waiting (max %llu, oldest %s), %llu dropped when full, "
		    "%llu confirmed\n",
		    p->db_version, store_pg_schema_latest(),
		    store_pg_schema_what(store_pg_schema_latest()), inv_version_of(s->inv),
		    p->farm_id[0] ? p->farm_id : "-", (unsigned long long)js.entries,
		    (unsigned long long)js.max, oldest, (unsigned long long)js.dropped,
		    (unsigned long long)js.acked);
	if (js.overflow_since) {
		char ov[32];
		iso(js.overflow_since, ov, sizeof(ov));
		sbuf_printf(o, "overflow:       changes since %s are sent again once drained\n",
			    ov);
	}
	sbuf_printf(o,
		    "connections:    %llu made, %llu lost, %llu timeouts\n"
		    "pushes:         %llu (%llu rows, %llu already applied, %llu failed), last "
		    "%llu ms\n"
		    "pulls:          %llu (%llu rows), last %llu ms; %llu notifications\n"
		    "admin changes:  %llu (%llu failed)\n",
		    (unsigned long long)p->connects, (unsigned long long)p->disconnects,
		    (unsigned long long)p->timeouts, (unsigned long long)p->pushes,
		    (unsigned long long)p->pushed_rows, (unsigned long long)p->push_duplicates,
		    (unsigned long long)p->push_errors, (unsigned long long)p->last_push_ms,
		    (unsigned long long)p->pulls, (unsigned long long)p->pulled_rows,
		    (unsigned long long)p->last_pull_ms, (unsigned long long)p->notifies,
		    (unsigned long long)p->ops, (unsigned long long)p->op_errors);
}

static void pgb_metrics(struct store *s, struct sbuf *o)
{
	struct pgs *p = s->impl;
	struct journal_stats js;
	journal_stats_read(s->journal, &js);
	int up = p->state == PG_READY;
	sbuf_printf(
	    o,
	    "# HELP easgate_store_up Whether the store holding the shared state is reachable.\n"
	    "# TYPE easgate_store_up gauge\neasgate_store_up{store=\"postgresql\"} %d\n"
	    "# HELP easgate_store_state_since_seconds Unix time the store went up or down last.\n"
	    "# TYPE easgate_store_state_since_seconds gauge\n"
	    "easgate_store_state_since_seconds %lld\n"
	    "# HELP easgate_store_journal_entries Changes waiting to be sent to the database.\n"
	    "# TYPE easgate_store_journal_entries gauge\neasgate_store_journal_entries %llu\n"
	    "# HELP easgate_store_journal_capacity Entries the journal holds at most.\n"
	    "# TYPE easgate_store_journal_capacity gauge\neasgate_store_journal_capacity %llu\n"
	    "# HELP easgate_store_journal_dropped_total Changes not journaled because the journal "
	    "was full (sent later from the snapshot).\n"
	    "# TYPE easgate_store_journal_dropped_total counter\n"
	    "easgate_store_journal_dropped_total %llu\n"
	    "# HELP easgate_store_pushed_rows_total Rows this node sent to the database.\n"
	    "# TYPE easgate_store_pushed_rows_total counter\neasgate_store_pushed_rows_total %llu\n"
	    "# HELP easgate_store_push_duplicates_total Rows the database had applied already "
	    "(resent after a lost answer).\n"
	    "# TYPE easgate_store_push_duplicates_total counter\n"
	    "easgate_store_push_duplicates_total %llu\n"
	    "# HELP easgate_store_pulled_rows_total Rows this node read from the database.\n"
	    "# TYPE easgate_store_pulled_rows_total counter\neasgate_store_pulled_rows_total %llu\n"
	    "# HELP easgate_store_disconnects_total Database connections lost.\n"
	    "# TYPE easgate_store_disconnects_total counter\neasgate_store_disconnects_total "
	    "%llu\n",
	    up, (long long)(up ? p->up_since : p->down_since), (unsigned long long)js.entries,
	    (unsigned long long)js.max, (unsigned long long)js.dropped,
	    (unsigned long long)p->pushed_rows, (unsigned long long)p->push_duplicates,
	    (unsigned long long)p->pulled_rows, (unsigned long long)p->disconnects);
}

static void pgb_free(struct store *s)
{
	struct pgs *p = s->impl;
	if (!p)
		return;
	loop_timer_cancel(s->loop, &p->retry);
	loop_timer_cancel(s->loop, &p->kick);
	pg_fail(p, "the daemon is stopping");
	loop_timer_cancel(s->loop, &p->retry);
	free(p);
	s->impl = NULL;
}

/* A worker forked with the master's connection open: close its copy of the
 * socket (only; libpq's state is the master's and is never used here). */
static void pgb_forget_in_child(struct store *s)
{
	struct pgs *p = s->impl;
	if (p && p->conn && PQsocket(p->conn) >= 0)
		close(PQsocket(p->conn));
}

static const struct store_backend pg_backend = {
    .name = "postgresql",
    .change = pgb_change,
    .committed = pgb_committed,
    .heartbeat = pgb_heartbeat,
    .describe = pgb_describe,
    .db_status = pgb_db_status,
    .metrics = pgb_metrics,
    .free = pgb_free,
    .forget_in_child = pgb_forget_in_child,
};

int store_pg_init(struct store *s, char *err, size_t errsz)
{
	struct pgs *p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errsz, "out of memory");
		return -1;
	}
	p->s = s;
	p->io_fd = -1;
	s->impl = p;
	s->be = &pg_backend;
	s->journal = journal_new(s->inv, s->cfg->pg.journal_max, err, errsz);
	if (!s->journal)
		return -1;
	loop_timer_init(&p->retry, on_retry, p);
	loop_timer_init(&p->deadline, on_deadline, p);
	loop_timer_init(&p->kick, on_kick, p);
	p->down_since = time(NULL);
	snprintf(p->last_error, sizeof(p->last_error), "not connected yet");
	PQconninfoOption *opts = PQconninfoParse(s->cfg->pg.conninfo, NULL);
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (!strcmp(o->keyword, "host") || !strcmp(o->keyword, "hostaddr"))
			if (count_list(o->val) > p->nhosts)
				p->nhosts = count_list(o->val);
	PQconninfoFree(opts);
	p->want = PG_WANT_ALL;
	pg_sync_init(p);
	/* Connect from the loop: after the master dropped its privileges (the
	 * passfile read is the runtime user's). */
	loop_timer_set(s->loop, &p->retry, 0);
	return 0;
}

void pg_ready(struct pgs *p)
{
	if (p->state == PG_READY)
		return;
	p->state = PG_READY;
	p->up_since = time(NULL);
	log_info("event=store_up store=postgresql host=%s port=%s schema=%d down_for_s=%lld",
		 p->host, p->port, p->db_version, (long long)(p->up_since - p->down_since));
	pg_kick(p);
}
