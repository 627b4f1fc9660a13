/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_sighting.c - the table of devices seen but not authenticated: what a
 * decision, the inventory and the admin get from it (the merged
 * DeviceInformation, the last answer, authentication hiding it), and the
 * promises that make it safe against a flood of claims: a fixed size
 * whatever the number of claims, expiry, and one table for all workers.
 */
#include "testlib.h"

#include <sys/wait.h>
#include <unistd.h>

#include "policy.h"
#include "sighting.h"

#define NOW 1800000000LL /* unix seconds */

static struct sighting_table *mk(unsigned slots)
{
	char err[256];
	struct sighting_table *s = sighting_new(slots, err, sizeof(err));
	if (!s)
		fail_msg("sighting_new: %s", err);
	return s;
}

/* A decision event as the gate sends it. */
static void decision(struct inv_event *ev, const char *user, const char *dev, int access,
		     int64_t now)
{
	memset(ev, 0, sizeof(*ev));
	ev->magic = INV_EVENT_MAGIC;
	ev->flags = INV_EV_DECISION;
	ev->now = now;
	ev->cmd = EAS_CMD_FOLDERSYNC;
	ev->access = access;
	ev->reason = POLICY_R_DEFAULT;
	snprintf(ev->user, sizeof(ev->user), "%s", user);
	snprintf(ev->device_id, sizeof(ev->device_id), "%s", dev);
	snprintf(ev->device_type, sizeof(ev->device_type), "iPhone");
	snprintf(ev->user_agent, sizeof(ev->user_agent), "Apple-iPhone9C3/1402.100");
}

static void test_note_merge_and_get(void **state)
{
	(void)state;
	struct sighting_table *s = mk(0);
	uint64_t k = sighting_key(s, "Victim", "ApplPHONE1");
	assert_int_equal(k, sighting_key(s, "victim", "applphone1")); /* case-insensitive */
	assert_int_not_equal(k, sighting_key(s, "victi", "mApplPHONE1"));
	struct inv_event ev;
	struct sighting x;
	uint32_t seq0 = 0, seq = 0;
	assert_int_equal(sighting_get(s, k, NOW, &x), 0);
	decision(&ev, "victim", "ApplPHONE1", POLICY_QUARANTINE, NOW);
	assert_int_equal(sighting_note(s, k, &ev, &seq0), 0);
	/* DeviceInformation arrives: model and OS move di_seq */
	decision(&ev, "victim", "ApplPHONE1", POLICY_QUARANTINE, NOW + 5);
	ev.flags |= INV_EV_DEVINFO;
	snprintf(ev.di.model, sizeof(ev.di.model), "iPhone9C3");
	snprintf(ev.di.os, sizeof(ev.di.os), "iOS 10.1.1 14B100");
	snprintf(ev.di.imei, sizeof(ev.di.imei), "3566");
	assert_int_equal(sighting_note(s, k, &ev, &seq), 1);
	assert_int_not_equal(seq, seq0);
	/* a later decision without it keeps it; a non-device-level one (an
	 * OPTIONS) does not change the state */
	decision(&ev, "victim", "ApplPHONE1", POLICY_ALLOW, NOW + 9);
	ev.flags = 0;
	ev.cmd = EAS_CMD_OPTIONS;
	assert_int_equal(sighting_note(s, k, &ev, NULL), 0);
	sighting_result(s, k, 401, NOW + 10);
	assert_int_equal(sighting_get(s, k, NOW + 10, &x), 1);
	assert_string_equal(x.ev.user, "victim");
	assert_string_equal(x.ev.device_id, "ApplPHONE1");
	assert_string_equal(x.ev.di.model, "iPhone9C3");
	assert_string_equal(x.ev.di.os, "iOS 10.1.1 14B100");
	assert_string_equal(x.ev.di.imei, "3566");
	assert_true(x.ev.flags & INV_EV_DEVINFO);
	assert_int_equal(x.ev.access, POLICY_QUARANTINE);
	assert_int_equal(x.last_status, 401);
	assert_int_equal(x.first_seen, NOW);
	assert_int_equal(x.last_seen, NOW + 10);
	assert_int_equal(x.notes, 3);
	uint32_t pseq;
	int gone;
	assert_int_equal(sighting_peek(s, k, NOW + 10, &pseq, &gone), 1);
	assert_int_equal(pseq, seq);
	assert_int_equal(gone, 0);
	/* the same DeviceInformation again is no news */
	decision(&ev, "victim", "ApplPHONE1", POLICY_QUARANTINE, NOW + 11);
	ev.flags |= INV_EV_DEVINFO;
	snprintf(ev.di.os, sizeof(ev.di.os), "iOS 10.1.1 14B100");
	assert_int_equal(sighting_note(s, k, &ev, &pseq), 0);
	assert_int_equal(pseq, seq);
	sighting_free(s);
}

static void test_authenticated_is_forgotten(void **state)
{
	(void)state;
	struct sighting_table *s = mk(0);
	uint64_t k = sighting_key(s, "alice", "ApplA");
	struct inv_event ev;
	decision(&ev, "alice", "ApplA", POLICY_ALLOW, NOW);
	sighting_note(s, k, &ev, NULL);
	sighting_forget(s, k, NOW, NULL);
	struct sighting x;
	uint32_t seq;
	int gone = 0;
	assert_int_equal(sighting_get(s, k, NOW, &x), 0);
	assert_int_equal(sighting_peek(s, k, NOW, &seq, &gone), 1);
	assert_int_equal(gone, 1); /* deciders learn it authenticated */
	/* a worker that has not heard yet cannot bring it back; it learns
	 * why (not a busy table): its event must go to the inventory */
	assert_int_equal(sighting_note(s, k, &ev, NULL), SIGHTING_GONE);
	struct sighting_stats st;
	sighting_stats_read(s, NOW, &st);
	assert_int_equal(st.live, 0);
	sighting_free(s);
}

/* Worker A reads the sighting to create the row, worker B notes the phone's
 * DeviceInformation, then A hides the sighting: what B noted in between is
 * handed to A by the forget, never lost with the slot. */
static void test_forget_hands_over_late_notes(void **state)
{
	(void)state;
	struct sighting_table *s = mk(0);
	uint64_t k = sighting_key(s, "rita", "ApplR");
	struct inv_event ev;
	struct sighting x, y;
	decision(&ev, "rita", "ApplR", POLICY_ALLOW, NOW);
	sighting_note(s, k, &ev, NULL);
	assert_int_equal(sighting_get(s, k, NOW, &x), 1);
	decision(&ev, "rita", "ApplR", POLICY_BLOCK, NOW + 1);
	ev.flags |= INV_EV_DEVINFO;
	snprintf(ev.di.os, sizeof(ev.di.os), "iOS 6.1 10B142");
	assert_int_equal(sighting_note(s, k, &ev, NULL), 1);
	memset(&y, 0, sizeof(y));
	assert_int_equal(sighting_forget(s, k, NOW + 1, &y), 1);
	assert_int_not_equal(y.di_seq, x.di_seq);
	assert_string_equal(y.ev.di.os, "iOS 6.1 10B142");
	assert_int_equal(y.ev.access, POLICY_BLOCK);
	/* once hidden there is nothing more to hand over */
	assert_int_equal(sighting_forget(s, k, NOW + 1, &y), 0);
	assert_int_equal(sighting_forget(s, sighting_key(s, "rita", "Other"), NOW + 1, NULL), 0);
	sighting_free(s);
}

static void test_expiry(void **state)
{
	(void)state;
	struct sighting_table *s = mk(0);
	uint64_t k = sighting_key(s, "bob", "ApplB");
	struct inv_event ev;
	decision(&ev, "bob", "ApplB", POLICY_ALLOW, NOW);
	sighting_note(s, k, &ev, NULL);
	struct sighting x;
	assert_int_equal(sighting_get(s, k, NOW + SIGHTING_TTL_S - 1, &x), 1);
	assert_int_equal(sighting_get(s, k, NOW + SIGHTING_TTL_S, &x), 0);
	uint32_t seq;
	int gone;
	assert_int_equal(sighting_peek(s, k, NOW + SIGHTING_TTL_S, &seq, &gone), 0);
	/* seen again after expiry: a new sighting, first seen now */
	decision(&ev, "bob", "ApplB", POLICY_ALLOW, NOW + SIGHTING_TTL_S + 1);
	sighting_note(s, k, &ev, NULL);
	assert_int_equal(sighting_get(s, k, NOW + SIGHTING_TTL_S + 1, &x), 1);
	assert_int_equal(x.first_seen, NOW + SIGHTING_TTL_S + 1);
	assert_int_equal(x.notes, 1);
	sighting_free(s);
}

static int count_cb(void *arg, const struct sighting *x)
{
	(void)x;
	(*(int *)arg)++;
	return 0;
}

/* 1,000,000 claims, each a new (user, DeviceId): the table keeps at most its
 * slots, the newest ones, and its memory never changes. */
static void test_bounded_under_a_million_claims(void **state)
{
	(void)state;
	struct sighting_table *s = mk(4096);
	struct sighting_stats st;
	sighting_stats_read(s, NOW, &st);
	uint64_t mem = st.memory_bytes;
	assert_int_equal(st.capacity, 4096);
	/* 4,096 bodies of ~2.6 KB plus heads: about 10.4 MiB, fixed */
	assert_in_range(mem, 4096 * sizeof(struct sighting),
			4096 * sizeof(struct sighting) + 200000);
	struct inv_event ev;
	char user[32], dev[32];
	for (int i = 0; i < 1000000; i++) {
		snprintf(user, sizeof(user), "claim%d", i % 1000);
		snprintf(dev, sizeof(dev), "Claim%08d", i);
		decision(&ev, user, dev, POLICY_ALLOW, NOW + i / 1000);
		if (sighting_note(s, sighting_key(s, user, dev), &ev, NULL) < 0)
			fail_msg("claim %d not noted", i);
	}
	sighting_stats_read(s, NOW + 1000, &st);
	assert_int_equal(st.memory_bytes, mem);
	assert_true(st.live <= 4096 && st.live > 3500);
	assert_int_equal(st.created, 1000000);
	assert_true(st.displaced >= 1000000 - 4096);
	assert_int_equal(st.busy, 0);
	int n = 0;
	assert_int_equal(sighting_foreach(s, NOW + 1000, count_cb, &n), (int)st.live);
	/* the newest claim is there, the oldest long gone */
	struct sighting x;
	assert_int_equal(
	    sighting_get(s, sighting_key(s, "claim999", "Claim00999999"), NOW + 999, &x), 1);
	assert_int_equal(sighting_get(s, sighting_key(s, "claim0", "Claim00000000"), NOW + 999, &x),
			 0);
	sighting_free(s);
}

/* Workers are forked processes: what one notes, the master (and the
 * others) read. */
static void test_shared_between_processes(void **state)
{
	(void)state;
	struct sighting_table *s = mk(16384); /* 1,000 keys: a full bucket is rare */
	pid_t kids[2];
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		assert_true(kids[k] >= 0);
		if (kids[k] == 0) {
			struct inv_event ev;
			char dev[32];
			for (int i = 0; i < 500; i++) {
				snprintf(dev, sizeof(dev), "W%dDEV%03d", k, i);
				decision(&ev, "shared", dev, POLICY_ALLOW, NOW);
				/* -1 = a lock not had in 50 ms (a preempted holder on a
				 * loaded machine): counted in busy, checked below */
				sighting_note(s, sighting_key(s, "shared", dev), &ev, NULL);
			}
			_exit(0);
		}
	}
	for (int k = 0; k < 2; k++) {
		int st = 0;
		assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	struct sighting_stats st;
	sighting_stats_read(s, NOW, &st);
	assert_int_equal(st.created + st.busy, 1000);
	assert_true(st.busy <= 10);
	assert_true(st.live + st.busy >= 990); /* a full 4-way bucket may displace a few */
	/* each one readable by its key, as the worker wrote it */
	struct sighting x;
	char dev[32];
	int found = 0;
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < 500; i++) {
			snprintf(dev, sizeof(dev), "W%dDEV%03d", k, i);
			if (!sighting_get(s, sighting_key(s, "shared", dev), NOW, &x))
				continue;
			assert_string_equal(x.ev.device_id, dev);
			found++;
		}
	assert_int_equal(found, (int)st.live);
	sighting_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_note_merge_and_get),
	    cmocka_unit_test(test_authenticated_is_forgotten),
	    cmocka_unit_test(test_forget_hands_over_late_notes),
	    cmocka_unit_test(test_expiry),
	    cmocka_unit_test(test_bounded_under_a_million_claims),
	    cmocka_unit_test(test_shared_between_processes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
