/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_shmlock.c - the lock word the throttle and sightings tables share
 * between processes: taken and dropped; taken over from a holder that died
 * holding it (a crashed worker) and from a dead thread whose id the caller
 * now has; given up, not waited on forever, while a live holder keeps it.
 */
#include "testlib.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmlock.h"

static uint32_t *shared_word(void)
{
	uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(w != MAP_FAILED);
	*w = 0;
	return w;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_take_drop(void **st)
{
	(void)st;
	uint32_t *w = shared_word();
	assert_int_equal(shmlock_take(w), 0);
	assert_int_equal(*w, (uint32_t)gettid());
	shmlock_drop(w);
	assert_int_equal(*w, 0);
	/* our own id in the word: a dead thread's with the id we now have */
	*w = (uint32_t)gettid();
	assert_int_equal(shmlock_take(w), 0);
	shmlock_drop(w);
	munmap(w, 4096);
}

static void test_dead_holder(void **st)
{
	(void)st;
	uint32_t *w = shared_word();
	pid_t p = fork();
	assert_true(p >= 0);
	if (p == 0)
		_exit(shmlock_take(w) == 0 ? 0 : 1); /* dies holding it */
	int status;
	assert_int_equal(waitpid(p, &status, 0), p);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(*w, (uint32_t)p);
	double t0 = now_s();
	assert_int_equal(shmlock_take(w), 0);
	assert_true(now_s() - t0 < 1.0);
	assert_int_equal(*w, (uint32_t)gettid());
	shmlock_drop(w);
	munmap(w, 4096);
}

static void test_live_holder(void **st)
{
	(void)st;
	uint32_t *w = shared_word();
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t p = fork();
	assert_true(p >= 0);
	if (p == 0) {
		if (shmlock_take(w) == 0)
			(void)!write(ready[1], "x", 1);
		pause();
		_exit(0);
	}
	char c;
	assert_int_equal(read(ready[0], &c, 1), 1);
	double t0 = now_s();
	assert_int_equal(shmlock_take(w), -1); /* given up: the caller fails open */
	double waited = now_s() - t0;
	assert_true(waited > 0.02 && waited < 2.0);
	assert_int_equal(*w, (uint32_t)p); /* still the holder's */
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
	assert_int_equal(shmlock_take(w), 0); /* and once it is gone, ours */
	shmlock_drop(w);
	close(ready[0]);
	close(ready[1]);
	munmap(w, 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_take_drop),
	    cmocka_unit_test(test_dead_holder),
	    cmocka_unit_test(test_live_holder),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
