/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_loop.c - the event loop: timers fire in deadline order, and a timer
 * that re-arms itself for "now" (a connection yielding its turn) never
 * starves I/O: the readiness of a socket is still seen.
 */
#include "testlib.h"

#include <unistd.h>

#include "loop.h"

struct yielder {
	struct loop *l;
	struct loop_timer t;
	int runs;
};

static void yield_again(struct loop_timer *t)
{
	struct yielder *y = t->arg;
	y->runs++;
	if (y->runs < 1000000) /* bounded, so a regression fails instead of hanging */
		loop_timer_set(y->l, &y->t, 0);
	else
		loop_stop(y->l);
}

struct reader {
	struct loop *l;
	int seen;
};

static void on_readable(struct loop_io *io, uint32_t ev)
{
	struct reader *r = io->arg;
	(void)ev;
	r->seen = 1;
	loop_stop(r->l);
}

static void test_zero_ms_timer_does_not_starve_io(void **state)
{
	struct loop *l = loop_new();
	assert_non_null(l);
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct yielder y = {.l = l};
	struct reader r = {.l = l};
	struct loop_io io;
	loop_timer_init(&y.t, yield_again, &y);
	loop_timer_set(l, &y.t, 0);
	assert_int_equal(loop_io_add(l, &io, p[0], on_readable, &r), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(loop_run(l), 0);
	assert_true(r.seen);
	assert_true(y.runs < 10); /* the I/O came within a few turns, not after 1e6 */
	loop_io_del(l, &io);
	loop_timer_cancel(l, &y.t);
	loop_free(l);
	close(p[0]);
	close(p[1]);
}

struct order {
	struct loop *l;
	struct loop_timer t[3];
	int seq[3], n;
};

static void fired(struct loop_timer *t)
{
	struct order *o = t->arg;
	o->seq[o->n++] = (int)(t - o->t);
	if (o->n == 3)
		loop_stop(o->l);
}

static void test_deadline_order(void **state)
{
	struct order o = {.l = loop_new()};
	assert_non_null(o.l);
	for (int i = 0; i < 3; i++)
		loop_timer_init(&o.t[i], fired, &o);
	loop_timer_set(o.l, &o.t[0], 30);
	loop_timer_set(o.l, &o.t[1], 10);
	loop_timer_set(o.l, &o.t[2], 20);
	assert_int_equal(loop_run(o.l), 0);
	assert_int_equal(o.seq[0], 1);
	assert_int_equal(o.seq[1], 2);
	assert_int_equal(o.seq[2], 0);
	loop_free(o.l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_zero_ms_timer_does_not_starve_io),
	    cmocka_unit_test(test_deadline_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
