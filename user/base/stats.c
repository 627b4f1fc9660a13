/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* stats.c - see stats.h. */
#include "stats.h"

#include <string.h>

static const int statuses[] = STATS_STATUSES;
static const uint64_t bounds_ms[] = STATS_DURATION_BOUNDS;

int stats_status_index(int status)
{
	for (int i = 0; i < (int)(sizeof(statuses) / sizeof(statuses[0])); i++)
		if (statuses[i] == status)
			return i;
	return STATS_NSTATUS - 1;
}

int stats_status_code(int idx)
{
	if (idx < 0 || idx >= (int)(sizeof(statuses) / sizeof(statuses[0])))
		return 0;
	return statuses[idx];
}

void stats_request(struct stats *s, int cmd, int status, enum stats_verdict v, uint64_t dur_us)
{
	if (cmd < 0 || cmd >= STATS_NCMD)
		cmd = STATS_NCMD - 1;
	s->requests[cmd][stats_status_index(status)][v]++;
	int b = 0;
	while (b < STATS_NBUCKETS - 1 && dur_us > bounds_ms[b] * 1000)
		b++;
	s->duration_bucket[b]++;
	s->duration_sum_us += dur_us;
	s->duration_count++;
}

void stats_sum(const struct stats *slots, int n, struct stats *out)
{
	memset(out, 0, sizeof(*out));
	/* The struct is all 64-bit counters: sum it as an array of words. */
	size_t words = sizeof(*out) / sizeof(uint64_t);
	uint64_t *o = (uint64_t *)out;
	for (int i = 0; i < n; i++) {
		const uint64_t *w = (const uint64_t *)&slots[i];
		for (size_t k = 0; k < words; k++)
			o[k] += w[k];
	}
}

_Static_assert(sizeof(struct stats) % sizeof(uint64_t) == 0, "stats must be 64-bit words");
