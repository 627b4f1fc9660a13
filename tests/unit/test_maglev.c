/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_maglev.c - the steering promises: balanced users, minimal disruption
 * when a backend goes down and back, weights, independence from config
 * order, MAGLEV_NONE when nothing is up; plus the table construction
 * against a plain transcription of the paper's population loop.
 *
 * Users are 100k synthetic identities "user<i>@corp.example" hashed with a
 * fixed SipHash key, exactly as the gateway derives steering keys.
 */
#include "testlib.h"

#include <errno.h>
#include <time.h>

#include "easgate_limits.h"
#include "maglev.h"
#include "siphash.h"

#define NUSERS 100000
#define MAXN   10

static uint64_t user_keys[NUSERS];
/* Owners of every user under one table, compared across rebuilds. */
static uint32_t owner_a[NUSERS], owner_b[NUSERS];
static char names[EG_MAX_BACKENDS][EG_BACKEND_NAME_LEN];

static int setup(void **state)
{
	(void)state;
	struct siphash_key k;
	if (siphash_key_from_hex(&k, "5ca1ab1e0ddba11c0ffee0ddf00dcafe") != 0)
		return -1;
	for (int i = 0; i < NUSERS; i++) {
		char id[64];
		int n = snprintf(id, sizeof(id), "user%d@corp.example", i);
		user_keys[i] = siphash24(&k, id, (size_t)n);
	}
	for (int i = 0; i < EG_MAX_BACKENDS; i++)
		snprintf(names[i], sizeof(names[i]), "exch%02d.corp.example", i + 1);
	return 0;
}

static void backends(struct maglev_backend *b, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		b[i] = (struct maglev_backend){.name = names[i], .weight = 1, .up = 1};
}

static void init_built(struct maglev *m, uint32_t size, const struct maglev_backend *b, uint32_t n)
{
	assert_int_equal(maglev_init(m, size), 0);
	assert_int_equal(maglev_build(m, b, n), 0);
}

static void owners(const struct maglev *m, uint32_t *out)
{
	for (int i = 0; i < NUSERS; i++)
		out[i] = maglev_lookup(m, user_keys[i]);
}

static double pct(double part, double whole)
{
	return whole > 0 ? 100.0 * part / whole : 0.0;
}

/* ---- contracts ---------------------------------------------------------- */

static void test_init_sizes(void **state)
{
	(void)state;
	static const uint32_t bad[] = {0, 1, 4, 9, 65535, 65536, 65539 * 3, MAGLEV_SIZE_MAX + 43};
	static const uint32_t good[] = {2, 3, 7, 251, EG_MAGLEV_SIZE};
	struct maglev m;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(maglev_init(&m, bad[i]), -EINVAL);
		assert_null(m.table);
		maglev_free(&m);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(maglev_init(&m, good[i]), 0);
		assert_int_equal(m.size, good[i]);
		assert_int_equal(m.nbackends, 0);
		/* Before any build nobody is steered anywhere. */
		for (uint32_t s = 0; s < good[i]; s++)
			assert_int_equal(m.table[s], MAGLEV_NONE);
		assert_int_equal(maglev_lookup(&m, 12345), MAGLEV_NONE);
		maglev_free(&m);
		assert_null(m.table);
		maglev_free(&m); /* twice is harmless */
	}
	maglev_free(NULL);
	assert_int_equal(maglev_lookup(&m, 1), MAGLEV_NONE); /* freed */
	assert_int_equal(maglev_lookup(NULL, 1), MAGLEV_NONE);
}

static void test_build_rejects_bad_config(void **state)
{
	(void)state;
	struct maglev_backend b[EG_MAX_BACKENDS + 1];
	struct maglev m;
	uint32_t saved[251];

	for (uint32_t i = 0; i < EG_MAX_BACKENDS + 1; i++)
		b[i] = (struct maglev_backend){
		    .name = names[i % EG_MAX_BACKENDS], .weight = 1, .up = 1};
	init_built(&m, 251, b, 3);
	memcpy(saved, m.table, sizeof(saved));

	struct maglev_backend dup[3] = {b[0], b[1], b[0]};
	struct maglev_backend zero_w[2] = {b[0], {.name = names[1], .weight = 0, .up = 1}};
	struct maglev_backend no_name[2] = {b[0], {.name = NULL, .weight = 1, .up = 1}};
	struct maglev_backend empty[2] = {b[0], {.name = "", .weight = 1, .up = 0}};
	assert_int_equal(maglev_build(&m, dup, 3), -EINVAL);
	assert_int_equal(maglev_build(&m, zero_w, 2), -EINVAL);
	assert_int_equal(maglev_build(&m, no_name, 2), -EINVAL);
	assert_int_equal(maglev_build(&m, empty, 2), -EINVAL);
	assert_int_equal(maglev_build(&m, NULL, 2), -EINVAL);
	/* Indices must fit the BPF backends map. */
	assert_int_equal(maglev_build(&m, b, EG_MAX_BACKENDS + 1), -EINVAL);
	/* A rejected config leaves the previous table serving. */
	assert_memory_equal(saved, m.table, sizeof(saved));
	assert_int_equal(m.nbackends, 3);
	assert_int_equal(maglev_build(&m, b, EG_MAX_BACKENDS), 0);
	maglev_free(&m);
	assert_int_equal(maglev_build(&m, b, 3), -EINVAL); /* no table */
}

/* lookup is table[key % size] over the full 64-bit key, as the BPF side computes it. */
static void test_lookup_is_key_mod_size(void **state)
{
	(void)state;
	struct maglev_backend b[5];
	struct maglev m;
	backends(b, 5);
	init_built(&m, 13, b, 5);
	for (uint64_t r = 0; r < 13; r++) {
		assert_int_equal(maglev_lookup(&m, r), m.table[r]);
		assert_int_equal(maglev_lookup(&m, UINT64_C(0x100000000) * 13 + r), m.table[r]);
	}
	assert_int_equal(maglev_lookup(&m, UINT64_MAX), m.table[UINT64_MAX % 13]);
	maglev_free(&m);
}

/* ---- balance ------------------------------------------------------------ */

static void check_balance(uint32_t n)
{
	struct maglev_backend b[MAXN];
	struct maglev m;
	uint32_t slots[MAXN] = {0}, users[MAXN] = {0};

	backends(b, n);
	init_built(&m, EG_MAGLEV_SIZE, b, n);
	for (uint32_t s = 0; s < m.size; s++) {
		assert_true(m.table[s] < n);
		slots[m.table[s]]++;
	}
	owners(&m, owner_a);
	for (int i = 0; i < NUSERS; i++)
		users[owner_a[i]]++;

	uint32_t smin = UINT32_MAX, smax = 0;
	double mean = (double)NUSERS / n, maxdev = 0;
	for (uint32_t i = 0; i < n; i++) {
		smin = slots[i] < smin ? slots[i] : smin;
		smax = slots[i] > smax ? slots[i] : smax;
		double dev = pct(users[i] > mean ? users[i] - mean : mean - users[i], mean);
		maxdev = dev > maxdev ? dev : maxdev;
	}
	printf("# balance N=%u: slots %u..%u of %u, users max deviation %.2f%% of mean %.0f\n", n,
	       smin, smax, m.size, maxdev, mean);
	/* Equal weights fill round-robin: slot counts differ by at most one. */
	assert_true(smax - smin <= 1);
	assert_true(maxdev <= 3.0);
	maglev_free(&m);
}

static void test_balance(void **state)
{
	(void)state;
	check_balance(3);
	check_balance(5);
	check_balance(10);
}

/* ---- disruption --------------------------------------------------------- */

struct disruption {
	double survivors_moved_pct; /* worst over the choice of dead backend */
	double restored_pct;	    /* worst over the choice of dead backend */
};

/* Kill backend d of n, rebuild, count moves; bring it back, count returns. */
static void kill_and_revive(uint32_t n, uint32_t d, struct disruption *r)
{
	struct maglev_backend b[MAXN];
	struct maglev m;
	uint32_t survivors = 0, moved = 0, dead_users = 0, restored = 0;

	backends(b, n);
	init_built(&m, EG_MAGLEV_SIZE, b, n);
	owners(&m, owner_a);
	b[d].up = 0;
	assert_int_equal(maglev_build(&m, b, n), 0);
	owners(&m, owner_b);
	for (int i = 0; i < NUSERS; i++) {
		assert_true(owner_b[i] < n && owner_b[i] != d); /* the dead one gets nobody */
		if (owner_a[i] == d) {
			dead_users++;
		} else {
			survivors++;
			moved += owner_b[i] != owner_a[i];
		}
	}
	assert_true(dead_users > 0);
	b[d].up = 1;
	assert_int_equal(maglev_build(&m, b, n), 0);
	owners(&m, owner_b);
	for (int i = 0; i < NUSERS; i++) {
		assert_int_equal(owner_b[i], owner_a[i]);
		restored += owner_a[i] == d && owner_b[i] == d;
	}
	double mv = pct(moved, survivors), rs = pct(restored, dead_users);
	r->survivors_moved_pct = mv > r->survivors_moved_pct ? mv : r->survivors_moved_pct;
	r->restored_pct = rs < r->restored_pct ? rs : r->restored_pct;
	maglev_free(&m);
}

static void check_disruption(uint32_t n)
{
	struct disruption r = {.survivors_moved_pct = 0, .restored_pct = 100};
	for (uint32_t d = 0; d < n; d++)
		kill_and_revive(n, d, &r);
	printf("# disruption N=%u: worst survivors moved %.3f%%, worst restored on return %.1f%%\n",
	       n, r.survivors_moved_pct, r.restored_pct);
	assert_true(r.survivors_moved_pct <= 1.0);
	assert_true(r.restored_pct >= 99.99);
}

static void test_minimal_disruption(void **state)
{
	(void)state;
	check_disruption(3);
	check_disruption(5);
	check_disruption(10);
}

/* ---- weights ------------------------------------------------------------ */

static void check_weights(const uint32_t *w, uint32_t n)
{
	struct maglev_backend b[MAXN];
	struct maglev m;
	uint32_t slots[MAXN] = {0}, users[MAXN] = {0};
	uint64_t wsum = 0;

	backends(b, n);
	for (uint32_t i = 0; i < n; i++) {
		b[i].weight = w[i];
		wsum += w[i];
	}
	init_built(&m, EG_MAGLEV_SIZE, b, n);
	for (uint32_t s = 0; s < m.size; s++)
		slots[m.table[s]]++;
	owners(&m, owner_a);
	for (int i = 0; i < NUSERS; i++)
		users[owner_a[i]]++;
	for (uint32_t i = 0; i < n; i++) {
		double want = (double)w[i] / (double)wsum;
		double sdev = pct(slots[i] / (double)m.size - want, want);
		double udev = pct(users[i] / (double)NUSERS - want, want);
		printf(
		    "# weights: backend %u weight %u: slots %+.3f%%, users %+.2f%% off its share\n",
		    i, w[i], sdev, udev);
		assert_true(sdev < 0.1 && sdev > -0.1);
		assert_true(udev <= 3.0 && udev >= -3.0);
	}
	maglev_free(&m);
}

static void test_weights(void **state)
{
	(void)state;
	static const uint32_t w12[] = {1, 2}, w21[] = {2, 1}, w123[] = {1, 2, 3, 1};
	check_weights(w12, 2);
	check_weights(w21, 2);
	check_weights(w123, 4);
}

/* Extreme ratios terminate, and a huge weight cannot overflow the credits. */
static void test_extreme_weights(void **state)
{
	(void)state;
	struct maglev_backend b[3];
	struct maglev m;
	uint32_t slots[3] = {0};

	backends(b, 3);
	b[0].weight = UINT32_MAX;
	b[1].weight = UINT32_MAX - 1;
	b[2].weight = 1;
	init_built(&m, EG_MAGLEV_SIZE, b, 3);
	for (uint32_t s = 0; s < m.size; s++)
		slots[m.table[s]]++;
	assert_true(slots[0] >= slots[1] && slots[1] + 1 >= slots[0]);
	assert_true(slots[2] <= 1);
	maglev_free(&m);
}

/* ---- determinism -------------------------------------------------------- */

static void test_config_order_does_not_matter(void **state)
{
	(void)state;
	struct maglev_backend fwd[MAXN], rev[MAXN];
	struct maglev m;

	backends(fwd, MAXN);
	fwd[3].weight = 3;
	fwd[7].up = 0;
	for (uint32_t i = 0; i < MAXN; i++)
		rev[i] = fwd[(i * 7 + 3) % MAXN]; /* a shuffled config order */
	init_built(&m, EG_MAGLEV_SIZE, fwd, MAXN);
	owners(&m, owner_a);
	assert_int_equal(maglev_build(&m, rev, MAXN), 0);
	owners(&m, owner_b);
	for (int i = 0; i < NUSERS; i++)
		assert_string_equal(fwd[owner_a[i]].name, rev[owner_b[i]].name);
	/* Rebuilding the same config is a no-op. */
	uint32_t *copy = malloc(m.size * sizeof(*copy));
	assert_non_null(copy);
	memcpy(copy, m.table, m.size * sizeof(*copy));
	assert_int_equal(maglev_build(&m, rev, MAXN), 0);
	assert_memory_equal(copy, m.table, m.size * sizeof(*copy));
	free(copy);
	maglev_free(&m);
}

/*
 * Pinned output: the permutation of a name and the start of a table must
 * never change between releases, or every user is re-steered (and loses
 * its backend-side session state) on upgrade. Update only on purpose.
 */
static void test_golden_table(void **state)
{
	(void)state;
	static const uint32_t want_head[16] = {2, 3, 0, 0, 1, 3, 2, 1, 0, 1, 1, 4, 4, 4, 1, 1};
	struct maglev_backend b[5];
	struct maglev m;
	uint32_t off, skip;

	maglev_permutation("exch01.corp.example", EG_MAGLEV_SIZE, &off, &skip);
	assert_int_equal(off, 29471);
	assert_int_equal(skip, 8726);
	backends(b, 5);
	init_built(&m, EG_MAGLEV_SIZE, b, 5);
	assert_memory_equal(want_head, m.table, sizeof(want_head));
	maglev_free(&m);
}

/* ---- nothing up --------------------------------------------------------- */

static void test_all_down(void **state)
{
	(void)state;
	struct maglev_backend b[5];
	struct maglev m;

	backends(b, 5);
	init_built(&m, EG_MAGLEV_SIZE, b, 5);
	for (uint32_t i = 0; i < 5; i++)
		b[i].up = 0;
	assert_int_equal(maglev_build(&m, b, 5), 0);
	for (uint32_t s = 0; s < m.size; s++)
		assert_int_equal(m.table[s], MAGLEV_NONE);
	for (int i = 0; i < NUSERS; i += 97)
		assert_int_equal(maglev_lookup(&m, user_keys[i]), MAGLEV_NONE);
	/* An empty backend list is the same situation. */
	assert_int_equal(maglev_build(&m, NULL, 0), 0);
	assert_int_equal(maglev_lookup(&m, user_keys[0]), MAGLEV_NONE);
	/* One back up takes everybody. */
	b[2].up = 1;
	assert_int_equal(maglev_build(&m, b, 5), 0);
	for (uint32_t s = 0; s < m.size; s++)
		assert_int_equal(m.table[s], 2);
	maglev_free(&m);
}

/* ---- construction vs. the paper ----------------------------------------- */

static const struct maglev_backend *cmp_base;

static int cmp_name(const void *a, const void *b)
{
	return strcmp(cmp_base[*(const uint32_t *)a].name, cmp_base[*(const uint32_t *)b].name);
}

/*
 * The paper's Populate with explicit permutation[i][j] = (offset + j*skip) % M
 * and Katran-style credits for weights. Written for clarity, not speed.
 */
static void ref_populate(uint32_t M, const struct maglev_backend *b, uint32_t n, uint32_t *entry)
{
	uint32_t order[EG_MAX_BACKENDS], offset[EG_MAX_BACKENDS], skip[EG_MAX_BACKENDS];
	uint64_t next[EG_MAX_BACKENDS] = {0}, credit[EG_MAX_BACKENDS] = {0}, maxw = 0;
	uint32_t nup = 0, filled = 0;

	for (uint32_t i = 0; i < n; i++)
		if (b[i].up)
			order[nup++] = i;
	cmp_base = b;
	qsort(order, nup, sizeof(order[0]), cmp_name);
	for (uint32_t j = 0; j < nup; j++) {
		maglev_permutation(b[order[j]].name, M, &offset[j], &skip[j]);
		maxw = b[order[j]].weight > maxw ? b[order[j]].weight : maxw;
	}
	for (uint32_t s = 0; s < M; s++)
		entry[s] = MAGLEV_NONE;
	while (nup > 0 && filled < M) {
		for (uint32_t j = 0; j < nup && filled < M; j++) {
			credit[j] += b[order[j]].weight;
			if (credit[j] < maxw)
				continue;
			credit[j] -= maxw;
			uint64_t c = (offset[j] + next[j] * skip[j]) % M;
			while (entry[c] != MAGLEV_NONE)
				c = (offset[j] + ++next[j] * skip[j]) % M;
			entry[c] = order[j];
			next[j]++;
			filled++;
		}
	}
}

static void test_matches_reference_population(void **state)
{
	(void)state;
	static const uint32_t sizes[] = {2, 3, 7, 13, 251, 4099, EG_MAGLEV_SIZE};
	static uint32_t want[EG_MAGLEV_SIZE];
	uint64_t seed = 42;

	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		for (int round = 0; round < 4; round++) {
			struct maglev_backend b[EG_MAX_BACKENDS];
			struct maglev m;
			uint32_t n = 1 + (uint32_t)((seed = seed * 6364136223846793005u + 1) >> 58);
			backends(b, n);
			for (uint32_t i = 0; i < n; i++) {
				seed = seed * 6364136223846793005u + 1;
				b[i].weight = 1 + (uint32_t)(seed >> 61);
				b[i].up = (seed >> 40) % 5 != 0;
			}
			init_built(&m, sizes[si], b, n);
			ref_populate(sizes[si], b, n, want);
			assert_memory_equal(want, m.table, sizes[si] * sizeof(want[0]));
			maglev_free(&m);
		}
	}
}

static void test_permutation_range(void **state)
{
	(void)state;
	static const uint32_t sizes[] = {2, 3, 7, 251, EG_MAGLEV_SIZE};
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		for (int i = 0; i < EG_MAX_BACKENDS; i++) {
			uint32_t off, skip;
			maglev_permutation(names[i], sizes[si], &off, &skip);
			assert_true(off < sizes[si]);
			assert_true(skip >= 1 && skip < sizes[si]);
		}
	}
}

/* More backends than slots: the table still fills, with up backends only. */
static void test_tiny_table(void **state)
{
	(void)state;
	struct maglev_backend b[MAXN];
	struct maglev m;

	backends(b, MAXN);
	b[0].up = 0;
	init_built(&m, 7, b, MAXN);
	for (uint32_t s = 0; s < 7; s++)
		assert_true(m.table[s] > 0 && m.table[s] < MAXN);
	maglev_free(&m);
}

/* ---- cost --------------------------------------------------------------- */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void test_build_time(void **state)
{
	(void)state;
	struct maglev_backend b[EG_MAX_BACKENDS];
	struct maglev m;
	const int reps = 20;

	backends(b, EG_MAX_BACKENDS);
	assert_int_equal(maglev_init(&m, EG_MAGLEV_SIZE), 0);
	double t0 = now_ms();
	for (int r = 0; r < reps; r++)
		assert_int_equal(maglev_build(&m, b, 10), 0);
	double t10 = (now_ms() - t0) / reps;
	for (uint32_t i = 0; i < EG_MAX_BACKENDS; i++)
		b[i].weight = 1 + i % 7;
	t0 = now_ms();
	assert_int_equal(maglev_build(&m, b, EG_MAX_BACKENDS), 0);
	double t64 = now_ms() - t0;
	printf("# build %u slots: 10 backends %.3f ms, %d weighted backends %.3f ms\n", m.size, t10,
	       EG_MAX_BACKENDS, t64);
	/* Generous (sanitizers, loaded CI): catches an accidental O(size^2), not jitter. */
	assert_true(t10 < 500 && t64 < 500);
	maglev_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init_sizes),
	    cmocka_unit_test(test_build_rejects_bad_config),
	    cmocka_unit_test(test_lookup_is_key_mod_size),
	    cmocka_unit_test(test_balance),
	    cmocka_unit_test(test_minimal_disruption),
	    cmocka_unit_test(test_weights),
	    cmocka_unit_test(test_extreme_weights),
	    cmocka_unit_test(test_config_order_does_not_matter),
	    cmocka_unit_test(test_golden_table),
	    cmocka_unit_test(test_all_down),
	    cmocka_unit_test(test_matches_reference_population),
	    cmocka_unit_test(test_permutation_range),
	    cmocka_unit_test(test_tiny_table),
	    cmocka_unit_test(test_build_time),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
