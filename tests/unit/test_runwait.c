/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_runwait.c - the account of a worker's waits for a CPU, from samples
 * shaped as measured (runwait.h): run_delay grows only when the task next
 * runs, so a task found runnable and not run since the last sample is
 * waiting; a stopped, sleeping or running one is not. Also the read of a
 * real process (this one) and of one that is gone.
 */
#include "testlib.h"

#include <errno.h>
#include <unistd.h>

#include "runwait.h"

#define MS 1000000ull

static struct runwait_sample smp(uint64_t rd_ms, uint64_t exec_ms, uint64_t slices, int runnable)
{
	struct runwait_sample s = {.run_delay_ns = rd_ms * MS,
				   .exec_ns = exec_ms * MS,
				   .slices = slices,
				   .runnable = runnable};
	return s;
}

/* Kept off the CPU: runnable, nothing run, for 1.5 s of samples; then it runs
 * and run_delay takes in the whole wait, which is not counted twice. */
static void test_starved(void **state)
{
	(void)state;
	struct runwait w = {0};
	struct runwait_sample s = smp(100, 50, 10, 0);
	assert_int_equal(runwait_update(&w, 1000, 1000, &s), 0); /* beat seen: the baseline */
	s = smp(100, 50, 10, 1);				 /* woke, waiting */
	assert_int_equal(runwait_update(&w, 1000, 1500, &s), 500);
	assert_int_equal(runwait_update(&w, 1000, 2000, &s), 1000);
	assert_int_equal(runwait_update(&w, 1000, 2500, &s), 1500);
	s = smp(100 + 1200, 51, 11, 0); /* ran (1.2 s of wait accounted), slept */
	assert_int_equal(runwait_update(&w, 1000, 3000, &s), 1500);
	s = smp(100 + 1700, 52, 12, 0); /* 0.5 s more waits, all run since */
	assert_int_equal(runwait_update(&w, 1000, 3500, &s), 1700);
	s = smp(100 + 1700, 53, 13, 0); /* ticked: a new beat, a new baseline */
	assert_int_equal(runwait_update(&w, 3600, 4000, &s), 0);
}

/* Stopped or blocked (state T, S, D): no run, but not runnable either. */
static void test_stopped(void **state)
{
	(void)state;
	struct runwait w = {0};
	struct runwait_sample s = smp(7, 3, 2, 0);
	for (uint64_t t = 1000; t <= 5000; t += 500)
		assert_int_equal(runwait_update(&w, 1000, t, &s), 0);
}

/* Spinning: runnable and on a CPU (its CPU time grows), waits only as
 * run_delay says. */
static void test_spinning(void **state)
{
	(void)state;
	struct runwait w = {0};
	uint64_t exec = 0, rd = 0;
	for (uint64_t t = 1000; t <= 5000; t += 500) {
		struct runwait_sample s = smp(rd, exec, exec / 4, 1);
		assert_int_equal(runwait_update(&w, 1000, t, &s), rd);
		exec += 490;
		rd += 10;
	}
}

/* This process: readable, runnable (it is running), and an account that a
 * new pid restarts; a pid that is gone reads as no wait. */
static void test_read(void **state)
{
	(void)state;
	if (!runwait_available())
		skip();
	struct runwait_sample s;
	assert_int_equal(runwait_read(getpid(), &s), 0);
	assert_true(s.runnable);
	assert_true(s.slices > 0); /* exec_ns of a running task moves at its next tick */
	struct runwait w = {.pid = 1, .have_prev = 1, .waited_ms = 99999};
	assert_int_equal(runwait_waited_ms(&w, getpid(), 1, 2), 0);
	assert_int_equal(w.pid, getpid());
	errno = 0;
	assert_int_equal(runwait_read(0x3ffffff0, &s), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(runwait_waited_ms(&w, 0x3ffffff0, 1, 2), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_starved),
	    cmocka_unit_test(test_stopped),
	    cmocka_unit_test(test_spinning),
	    cmocka_unit_test(test_read),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
