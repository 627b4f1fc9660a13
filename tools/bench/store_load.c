/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * store_load - how many inventory writes per second one PostgreSQL absorbs
 * from a farm (issue #13).
 *
 *   store_load --conninfo S [--nodes 3] [--devices 100000] [--interval 300]
 *              [--seconds 20] [--batch 500] [--pg-pid PID]
 *
 * Simulates --nodes farm nodes, one connection each as a node has. Node i
 * owns --devices devices and does what a node's store does: push rows with
 * easgate_push() (the JSON of pg_json_device, its own journal id and
 * sequence numbers, batches of at most --batch rows), then pull the devices
 * changed since its previous pull (pg_pull_devices_sql), as every node does
 * after the NOTIFY each push causes. The database must be at the current
 * schema (easgated --db-migrate).
 *
 *   load      every device once (the rows are created);
 *   paced     the steady state: a device syncing every --interval seconds is
 *             one row write, so the demand is nodes x devices / interval
 *             writes per second (3 x 100,000 / 300 = 1,000/s); each node
 *             pushes its share once a second (a node commits its events once
 *             a second) and pulls;
 *   capacity  the same, flat out: rows per second the database absorbs.
 *
 * For each phase: rows pushed and pulled per second, push and pull latency
 * (p50/p99 ms), and, with --pg-pid (the postmaster), the database's CPU
 * seconds (all its processes) per 1,000 rows. One JSON object on stdout.
 * Blocking libpq is fine here: this is a client, not the daemon.
 */
#include <dirent.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "inventory.h"
#include "store_pg.h"

#define MAX_NODES 16

struct node {
	PGconn *c;
	char name[32], journal[40];
	int64_t seq;
	uint64_t next; /* next device to write */
	char horizon[4096];
};

struct lat {
	double *v;
	size_t n, cap;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void lat_add(struct lat *l, double ms)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 1024;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (!l->v) {
			fprintf(stderr, "store_load: out of memory\n");
			exit(1);
		}
	}
	l->v[l->n++] = ms;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(struct lat *l, double p)
{
	if (!l->n)
		return 0;
	qsort(l->v, l->n, sizeof(*l->v), cmp_d);
	size_t i = (size_t)(p * (double)(l->n - 1) + 0.5);
	return l->v[i];
}

/* CPU seconds of the postmaster and all its children (/proc). */
static double pg_cpu(int pid)
{
	if (pid <= 0)
		return 0;
	double hz = (double)sysconf(_SC_CLK_TCK), sum = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char path[64], buf[1024];
		int p = atoi(e->d_name);
		if (p <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", p);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = 0;
		char *r = strrchr(buf, ')');
		int ppid = 0;
		unsigned long ut = 0, st = 0;
		/* after the comm: state ppid ... utime(14) stime(15) */
		if (!r || sscanf(r + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ppid,
				 &ut, &st) != 3)
			continue;
		if (p == pid || ppid == pid)
			sum += (double)(ut + st) / hz;
	}
	if (d)
		closedir(d);
	return sum;
}

static void fill(struct inv_device *d, int node, uint64_t k, int64_t t)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->user, sizeof(d->user), "user%06llu.n%d@corp.example", (unsigned long long)k,
		 node);
	snprintf(d->device_id, sizeof(d->device_id), "ApplN%dD%08llu", node, (unsigned long long)k);
	snprintf(d->device_type, sizeof(d->device_type), "iPhone");
	snprintf(d->device_model, sizeof(d->device_model), "iPhone14,5");
	snprintf(d->device_os, sizeof(d->device_os), "iOS 17.1.2 21B101");
	snprintf(d->os_key, sizeof(d->os_key), "iOS 17.1.2 21B101");
	snprintf(d->os_family, sizeof(d->os_family), "iOS");
	snprintf(d->user_agent, sizeof(d->user_agent), "Apple-iPhone14C5/2101.101");
	snprintf(d->friendly_name, sizeof(d->friendly_name), "iPhone %llu", (unsigned long long)k);
	snprintf(d->protocol, sizeof(d->protocol), "16.1");
	snprintf(d->last_cmd, sizeof(d->last_cmd), "Sync");
	snprintf(d->access_state, sizeof(d->access_state), "Allowed");
	snprintf(d->state_reason, sizeof(d->state_reason), "DEFAULT");
	snprintf(d->last_node, sizeof(d->last_node), "bench%d", node);
	d->first_sync = 1700000000;
	d->last_attempt = d->last_success = d->decided_at = d->result_at = t;
	d->devinfo_at = 1700000000;
	d->last_status = 200;
	d->loop_cmd = -1;
}

/* One push of n rows of node i. Returns rows applied, -1 on error. */
static long push(struct node *nd, int i, uint64_t devices, int n, int64_t t, struct lat *l)
{
	struct sbuf js = {0};
	struct inv_device d;
	sbuf_put(&js, "[", 1);
	for (int k = 0; k < n; k++) {
		fill(&d, i, nd->next++ % devices, t);
		if (k)
			sbuf_put(&js, ",", 1);
		pg_json_device(&js, &d, ++nd->seq);
	}
	sbuf_put(&js, "]", 1);
	const char *params[3] = {nd->name, nd->journal, js.p};
	double t0 = now_s();
	PGresult *r =
	    PQexecParams(nd->c, "SELECT applied, duplicates FROM easgate_push($1, $2, $3::jsonb)",
			 3, NULL, params, NULL, NULL, 0);
	lat_add(l, (now_s() - t0) * 1000);
	long applied = -1;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		applied = atol(PQgetvalue(r, 0, 0));
	else
		fprintf(stderr, "store_load: push: %s", PQresultErrorMessage(r));
	PQclear(r);
	sbuf_free(&js);
	return applied;
}

/* The pull a node makes after a NOTIFY. Returns rows, -1 on error. */
static long pull(struct node *nd, struct lat *l)
{
	char sql[2048];
	pg_pull_devices_sql(sql, sizeof(sql));
	const char *params[1] = {nd->horizon[0] ? nd->horizon : NULL};
	double t0 = now_s();
	PGresult *r = PQexecParams(nd->c, sql, 1, NULL, params, NULL, NULL, 0);
	lat_add(l, (now_s() - t0) * 1000);
	long rows = -1;
	if (PQresultStatus(r) == PGRES_TUPLES_OK) {
		rows = 0;
		for (int k = 0; k < PQntuples(r); k++)
			rows += !PQgetisnull(r, k, 1);
		if (PQntuples(r))
			snprintf(nd->horizon, sizeof(nd->horizon), "%s", PQgetvalue(r, 0, 0));
	} else {
		fprintf(stderr, "store_load: pull: %s", PQresultErrorMessage(r));
	}
	PQclear(r);
	return rows;
}

struct phase {
	const char *name;
	double secs, pushed, pulled, cpu;
	struct lat push_ms, pull_ms;
};

static void report(const struct phase *p, int last)
{
	struct phase *q = (struct phase *)p;
	printf("  \"%s\": {\"seconds\": %.2f, \"rows_pushed\": %.0f, \"rows_per_s\": %.0f,"
	       " \"rows_pulled_per_s\": %.0f, \"push_ms_p50\": %.2f, \"push_ms_p99\": %.2f,"
	       " \"pull_ms_p50\": %.2f, \"pull_ms_p99\": %.2f, \"db_cpu_s_per_1000_rows\": %.3f,"
	       " \"db_cpu_share\": %.2f}%s\n",
	       p->name, p->secs, p->pushed, p->pushed / p->secs, p->pulled / p->secs,
	       pct(&q->push_ms, 0.5), pct(&q->push_ms, 0.99), pct(&q->pull_ms, 0.5),
	       pct(&q->pull_ms, 0.99), p->pushed ? p->cpu * 1000 / p->pushed : 0, p->cpu / p->secs,
	       last ? "" : ",");
}

int main(int argc, char **argv)
{
	const char *conninfo = NULL;
	int nnodes = 3, batch = 500, pg_pid = 0;
	long devices = 100000, interval = 300;
	double seconds = 20;
	static const struct option lo[] = {
	    {"conninfo", required_argument, NULL, 'c'}, {"nodes", required_argument, NULL, 'n'},
	    {"devices", required_argument, NULL, 'd'},	{"interval", required_argument, NULL, 'i'},
	    {"seconds", required_argument, NULL, 's'},	{"batch", required_argument, NULL, 'b'},
	    {"pg-pid", required_argument, NULL, 'p'},	{NULL, 0, NULL, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'c':
			conninfo = optarg;
			break;
		case 'n':
			nnodes = atoi(optarg);
			break;
		case 'd':
			devices = atol(optarg);
			break;
		case 'i':
			interval = atol(optarg);
			break;
		case 's':
			seconds = atof(optarg);
			break;
		case 'b':
			batch = atoi(optarg);
			break;
		case 'p':
			pg_pid = atoi(optarg);
			break;
		default:
			fprintf(stderr,
				"usage: store_load --conninfo S [--nodes 3] [--devices 100000] "
				"[--interval 300] [--seconds 20] [--batch 500] [--pg-pid PID]\n");
			return 2;
		}
	}
	if (!conninfo || nnodes < 1 || nnodes > MAX_NODES || devices < 1 || interval < 1 ||
	    batch < 1 || seconds <= 0 || seconds > 600) {
		fprintf(stderr, "store_load: --conninfo needed; nodes 1..%d, seconds <= 600\n",
			MAX_NODES);
		return 2;
	}
	struct node nodes[MAX_NODES] = {{0}};
	uint32_t run;
	if (getrandom(&run, sizeof(run), 0) != sizeof(run))
		run = (uint32_t)time(NULL);
	for (int i = 0; i < nnodes; i++) {
		nodes[i].c = PQconnectdb(conninfo);
		if (PQstatus(nodes[i].c) != CONNECTION_OK) {
			fprintf(stderr, "store_load: %s", PQerrorMessage(nodes[i].c));
			return 1;
		}
		snprintf(nodes[i].name, sizeof(nodes[i].name), "bench%d", i);
		snprintf(nodes[i].journal, sizeof(nodes[i].journal), "bench-%08x-%d", run, i);
		pull(&nodes[i], &(struct lat){0}); /* start from now */
	}
	int64_t t = (int64_t)time(NULL);
	double demand = (double)nnodes * (double)devices / (double)interval;
	struct phase ph[3] = {{.name = "load"}, {.name = "paced"}, {.name = "capacity"}};

	/* load: every device once, in batches, round robin over the nodes */
	double c0 = pg_cpu(pg_pid), t0 = now_s();
	for (long done = 0; done < devices;) {
		int n = devices - done < batch ? (int)(devices - done) : batch;
		for (int i = 0; i < nnodes; i++) {
			if (push(&nodes[i], i, (uint64_t)devices, n, t, &ph[0].push_ms) < 0)
				return 1;
			ph[0].pushed += n;
		}
		done += n;
	}
	for (int i = 0; i < nnodes; i++)
		ph[0].pulled += (double)pull(&nodes[i], &ph[0].pull_ms);
	ph[0].secs = now_s() - t0;
	ph[0].cpu = pg_cpu(pg_pid) - c0;

	/* paced: each node's share once a second, then its pull */
	c0 = pg_cpu(pg_pid);
	t0 = now_s();
	double carry = 0;
	for (int sec = 0; sec < (int)seconds; sec++) {
		double tick = t0 + sec;
		t++;
		carry += demand / nnodes;
		int n = (int)carry;
		carry -= n;
		for (int i = 0; i < nnodes; i++) {
			for (int left = n; left > 0; left -= batch) {
				if (push(&nodes[i], i, (uint64_t)devices,
					 left < batch ? left : batch, t, &ph[1].push_ms) < 0)
					return 1;
			}
			ph[1].pushed += n;
			ph[1].pulled += (double)pull(&nodes[i], &ph[1].pull_ms);
		}
		double wait = tick + 1 - now_s();
		if (wait > 0)
			usleep((useconds_t)(wait * 1e6));
	}
	ph[1].secs = now_s() - t0;
	ph[1].cpu = pg_cpu(pg_pid) - c0;

	/* capacity: the same, flat out */
	c0 = pg_cpu(pg_pid);
	t0 = now_s();
	while (now_s() - t0 < seconds) {
		t++;
		for (int i = 0; i < nnodes; i++) {
			if (push(&nodes[i], i, (uint64_t)devices, batch, t, &ph[2].push_ms) < 0)
				return 1;
			ph[2].pushed += batch;
			ph[2].pulled += (double)pull(&nodes[i], &ph[2].pull_ms);
		}
	}
	ph[2].secs = now_s() - t0;
	ph[2].cpu = pg_cpu(pg_pid) - c0;

	printf("{\n  \"nodes\": %d, \"devices_per_node\": %ld, \"interval_s\": %ld,"
	       " \"demand_rows_per_s\": %.0f, \"batch\": %d,\n",
	       nnodes, devices, interval, demand, batch);
	for (int i = 0; i < 3; i++)
		report(&ph[i], i == 2);
	printf("}\n");
	for (int i = 0; i < nnodes; i++)
		PQfinish(nodes[i].c);
	return 0;
}
