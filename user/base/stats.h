/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * stats.h - per-worker counters, written only by their worker (plain
 * increments, no atomics: one writer per slot) and summed by the master for
 * the metrics endpoint. Living in shared memory means a scrape never asks a
 * worker anything and never blocks the data path.
 */
#ifndef EG_STATS_H
#define EG_STATS_H

#include <stdint.h>

#include "easgate_limits.h"

enum stats_verdict {
	SV_ALLOW = 0,	   /* forwarded */
	SV_BLOCK = 1,	   /* refused by policy: blocked */
	SV_QUARANTINE = 2, /* answered or limited as quarantined */
	SV_THROTTLE = 3,   /* over budget */
	SV_REFUSED = 4,	   /* malformed request refused before policy */
	SV_LOCAL = 5,	   /* answered by the gateway itself (health, autodiscover errors) */
	SV__COUNT
};

/* The status codes we count individually; everything else is "other". */
#define STATS_STATUSES                                                                             \
	{                                                                                          \
		200, 400, 401, 403, 404, 413, 431, 449, 451, 456, 500, 502, 503, 504               \
	}
#define STATS_NSTATUS 15 /* the 14 above + other */
#define STATS_NCMD    64 /* enum eas_cmd values */

/* Request duration histogram upper bounds, in milliseconds (+Inf implied). */
#define STATS_DURATION_BOUNDS                                                                      \
	{                                                                                          \
		5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 30000, 300000                      \
	}
#define STATS_NBUCKETS 13

struct stats {
	uint64_t requests[STATS_NCMD][STATS_NSTATUS][SV__COUNT];
	uint64_t duration_bucket[STATS_NBUCKETS];
	uint64_t duration_sum_us;
	uint64_t duration_count;
	uint64_t tls_handshakes; /* completed, full */
	uint64_t tls_resumed;	 /* completed, resumed from a ticket */
	uint64_t tls_failures;	 /* handshakes that failed or timed out */
	uint64_t conns_accepted;
	int64_t conns_open;			/* gauge */
	int64_t hanging_open;			/* gauge: Ping long-polls in flight */
	int64_t backend_conns[EG_MAX_BACKENDS]; /* gauge: open backend connections */
	uint64_t backend_requests[EG_MAX_BACKENDS];
	uint64_t backend_failures[EG_MAX_BACKENDS];
	uint64_t http_refused; /* requests refused by the HTTP parser */
	uint64_t bytes_from_clients;
	uint64_t bytes_to_clients;
	uint64_t bytes_spliced; /* body bytes moved in the kernel (splice), both ways */
	int64_t heap_bytes; /* gauge: malloc'd bytes in use (mallinfo2), refreshed every second */
	uint64_t slow_clients_closed; /* request bodies cut off below limits.min_body_rate */
	uint64_t source_cap_refused;  /* accepted, then closed: the source was at its cap */
};

/* Index of an HTTP status in the per-status dimension. */
int stats_status_index(int status);
/* The status code printed for an index ("other" -> 0). */
int stats_status_code(int idx);
/* Account one finished request. */
void stats_request(struct stats *s, int cmd, int status, enum stats_verdict v, uint64_t dur_us);
/* Sum n slots into out. */
void stats_sum(const struct stats *slots, int n, struct stats *out);

#endif
