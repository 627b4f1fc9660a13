/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_wdkeeper.c - the reload's watchdog keeper, against a NOTIFY_SOCKET of
 * the test's own: WATCHDOG=1 at once and every period while healthy, none
 * while not, none after max_ms (a job that never ends is a hang), none after
 * stop; no thread without a watchdog.
 */
#include "testlib.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "wdkeeper.h"

static int notify_fd = -1;
static char notify_path[108];

static int setup(void **state)
{
	(void)state;
	snprintf(notify_path, sizeof(notify_path), "/tmp/eg-wdkeeper-%d.sock", (int)getpid());
	unlink(notify_path);
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", notify_path);
	if (notify_fd < 0 || bind(notify_fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	setenv("NOTIFY_SOCKET", notify_path, 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	close(notify_fd);
	unlink(notify_path);
	return 0;
}

/* WATCHDOG=1 datagrams received so far (drains the socket). */
static int pings(void)
{
	char buf[256];
	int n = 0;
	ssize_t r;
	while ((r = recv(notify_fd, buf, sizeof(buf) - 1, 0)) > 0) {
		buf[r] = 0;
		n += strstr(buf, "WATCHDOG=1") != NULL;
	}
	return n;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0)
		;
}

static int flag_healthy(void *arg)
{
	return *(volatile int *)arg;
}

static void test_pings_while_healthy(void **state)
{
	(void)state;
	int healthy = 1;
	pings();
	struct wdkeeper *k = wdkeeper_start(50, 10000, flag_healthy, &healthy);
	assert_non_null(k);
	sleep_ms(20);
	assert_int_equal(pings(), 1); /* at once, not after a period */
	sleep_ms(500);
	int n = pings();
	assert_true(n >= 5 && n <= 11); /* every 50 ms */
	healthy = 0;
	sleep_ms(100);
	pings();
	sleep_ms(300);
	assert_int_equal(pings(), 0); /* withheld while a worker is hung */
	healthy = 1;
	sleep_ms(150);
	assert_true(pings() >= 1);
	unsigned sent = wdkeeper_stop(k);
	assert_true(sent >= 8);
	sleep_ms(150);
	assert_int_equal(pings(), 0); /* none after stop */
}

static void test_gives_up_after_max(void **state)
{
	(void)state;
	int healthy = 1;
	pings();
	struct wdkeeper *k = wdkeeper_start(50, 200, flag_healthy, &healthy);
	assert_non_null(k);
	sleep_ms(600);
	int n = pings();
	assert_true(n >= 2 && n <= 6); /* 0, 50, ..., 200 ms, then silence */
	sleep_ms(300);
	assert_int_equal(pings(), 0);
	wdkeeper_stop(k);
}

static void test_no_watchdog_no_thread(void **state)
{
	(void)state;
	int healthy = 1;
	assert_null(wdkeeper_start(0, 1000, flag_healthy, &healthy));
	assert_int_equal(wdkeeper_stop(NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pings_while_healthy),
	    cmocka_unit_test(test_gives_up_after_max),
	    cmocka_unit_test(test_no_watchdog_no_thread),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
