/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_journal.c - the farm node's journal (journal.h) and the field-group
 * merge of rows from the database (inv_merge_device), on a real SQLite file.
 */
#include "testlib.h"

#include <unistd.h>

#include "inventory.h"
#include "journal.h"
#include "policy.h"

static char dir[64];

static struct inventory *open_inv(void)
{
	char path[128], err[256];
	snprintf(dir, sizeof(dir), "/tmp/test_journal.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/inventory.db", dir);
	struct inventory *inv = inv_open(path, 0, err, sizeof(err));
	if (!inv)
		fail_msg("%s", err);
	inv_set_node(inv, "n1");
	return inv;
}

static void close_inv(struct inventory *inv)
{
	char cmd[160];
	inv_close(inv);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* A device event as a worker sends it (authenticated, with a decision). */
static void seen(struct inventory *inv, const char *user, const char *dev, int64_t now)
{
	struct inv_event ev = {.magic = INV_EVENT_MAGIC,
			       .flags = INV_EV_DECISION | INV_EV_AUTHED,
			       .now = now,
			       .access = POLICY_ALLOW};
	snprintf(ev.user, sizeof(ev.user), "%s", user);
	snprintf(ev.device_id, sizeof(ev.device_id), "%s", dev);
	snprintf(ev.device_type, sizeof(ev.device_type), "Phone");
	assert_true(inv_apply(inv, &ev) >= 0);
}

struct peeked {
	int n;
	int64_t seq[64];
	char k2[64][40];
};

static int peek_cb(void *arg, int64_t seq, char kind, const char *k1, const char *k2)
{
	struct peeked *p = arg;
	assert_int_equal(kind, JOURNAL_DEVICE);
	p->seq[p->n] = seq;
	snprintf(p->k2[p->n], sizeof(p->k2[0]), "%s", k2);
	p->n++;
	return 0;
}

/* One entry per row; a row marked again while waiting keeps its place;
 * marked again while its push is in flight, it gets a new number and
 * survives the acknowledgement of that push. */
static void test_marks_coalesce_and_inflight(void **state)
{
	(void)state;
	char err[256];
	struct inventory *inv = open_inv();
	struct journal *j = journal_new(inv, 100, err, sizeof(err));
	assert_non_null(j);
	for (int i = 0; i < 5; i++)
		assert_int_equal(journal_mark(j, JOURNAL_DEVICE, "u", "D1", 100 + i), 0);
	assert_int_equal(journal_mark(j, JOURNAL_DEVICE, "U", "d1", 106), 0); /* same row */
	assert_int_equal(journal_mark(j, JOURNAL_DEVICE, "u", "D2", 107), 0);
	struct journal_stats st;
	journal_stats_read(j, &st);
	assert_int_equal(st.entries, 2);
	struct peeked p = {0};
	assert_int_equal(journal_peek(j, 10, peek_cb, &p), 2);
	assert_string_equal(p.k2[0], "D1");
	journal_inflight(j, p.seq[1]); /* both in a push */
	assert_int_equal(journal_mark(j, JOURNAL_DEVICE, "u", "D1", 108), 0);
	assert_int_equal(journal_ack(j, p.seq[1]), 0);
	struct peeked q = {0};
	assert_int_equal(journal_peek(j, 10, peek_cb, &q), 1);
	assert_string_equal(q.k2[0], "D1");
	assert_true(q.seq[0] > p.seq[1]);
	journal_stats_read(j, &st);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.acked, 1); /* D1's entry was replaced, not acknowledged */
	journal_free(j);
	close_inv(inv);
}

/* Full: a new row is not journaled (counted); after the journal drains,
 * journal_refill brings back every device changed since, in batches of the
 * bound, even when many changed in the same second. */
static void test_full_then_refill(void **state)
{
	(void)state;
	char err[256];
	struct inventory *inv = open_inv();
	struct journal *j = journal_new(inv, 4, err, sizeof(err));
	assert_non_null(j);
	char dev[16];
	int dropped = 0;
	for (int i = 0; i < 10; i++) {
		snprintf(dev, sizeof(dev), "DEV%02d", i);
		seen(inv, "u", dev, 5000); /* all in the same second */
		dropped += journal_mark(j, JOURNAL_DEVICE, "u", dev, 5000) == 1;
	}
	struct journal_stats st;
	journal_stats_read(j, &st);
	assert_int_equal(st.entries, 4);
	assert_int_equal(dropped, 6);
	assert_int_equal(st.dropped, 6);
	assert_true(st.overflow_since > 0);
	/* drain and refill until the overflow is made good */
	int seen_dev[10] = {0}, rounds = 0;
	for (;;) {
		struct peeked p = {0};
		journal_peek(j, 10, peek_cb, &p);
		for (int i = 0; i < p.n; i++)
			seen_dev[atoi(p.k2[i] + 3)] = 1;
		if (p.n)
			assert_int_equal(journal_ack(j, p.seq[p.n - 1]), 0);
		journal_stats_read(j, &st);
		if (!st.overflow_since && !st.entries)
			break;
		assert_true(journal_refill(j, 6000) >= 0);
		assert_true(++rounds < 10);
	}
	for (int i = 0; i < 10; i++)
		assert_true(seen_dev[i]);
	journal_free(j);
	close_inv(inv);
}

static struct inv_device dev_row(const char *model, int64_t devinfo_at, const char *state,
				 int64_t decided_at, int admin, int64_t admin_at)
{
	struct inv_device d;
	memset(&d, 0, sizeof(d));
	snprintf(d.user, sizeof(d.user), "u");
	snprintf(d.device_id, sizeof(d.device_id), "M1");
	snprintf(d.device_model, sizeof(d.device_model), "%s", model);
	d.devinfo_at = devinfo_at;
	snprintf(d.access_state, sizeof(d.access_state), "%s", state);
	d.decided_at = decided_at;
	d.admin_state = admin;
	d.admin_at = admin_at;
	d.last_attempt = devinfo_at > decided_at ? devinfo_at : decided_at;
	d.loop_cmd = -1;
	return d;
}

/* Each group of fields is taken from the newer side, whatever the order the
 * rows arrive in; the answer says whether a decision-relevant field moved. */
static void test_merge_groups(void **state)
{
	(void)state;
	struct inventory *inv = open_inv();
	struct inv_device a = dev_row("Old", 10, "Blocked", 30, 2, 5);
	struct inv_device b = dev_row("New", 20, "Allowed", 25, 0, 4);
	assert_int_equal(inv_merge_device(inv, &a), 1); /* new row */
	assert_int_equal(inv_merge_device(inv, &b), 1); /* model changed */
	struct inv_device got;
	assert_int_equal(inv_get_device(inv, "u", "M1", &got), 1);
	assert_string_equal(got.device_model, "New");	  /* b's DeviceInformation is newer */
	assert_string_equal(got.access_state, "Blocked"); /* a's decision is newer */
	assert_int_equal(got.admin_state, 2);		  /* a's admin change is newer */
	assert_int_equal(got.last_attempt, 30);
	assert_int_equal(inv_merge_device(inv, &a), 0); /* nothing new */
	assert_int_equal(inv_merge_device(inv, &b), 0);
	close_inv(inv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_marks_coalesce_and_inflight),
	    cmocka_unit_test(test_full_then_refill),
	    cmocka_unit_test(test_merge_groups),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
