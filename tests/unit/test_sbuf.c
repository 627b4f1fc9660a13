/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_sbuf.c - the one string builder: a growable one keeps everything
 * (past its first block too), a fixed one never writes past its array,
 * cuts what does not fit and says so, and both stay NUL-terminated.
 */
#include "testlib.h"

#include "sbuf.h"

static void test_growable(void **state)
{
	struct sbuf s = {0};
	char big[10000];
	memset(big, 'x', sizeof(big));
	sbuf_puts(&s, "n=");
	sbuf_uint(&s, 0);
	sbuf_put(&s, ",", 1);
	sbuf_uint(&s, 18446744073709551615ull);
	sbuf_printf(&s, " %s/%d", "ok", 7);
	assert_string_equal(s.p, "n=0,18446744073709551615 ok/7");
	size_t before = s.len;
	sbuf_put(&s, big, sizeof(big)); /* past the first 4 KiB block */
	assert_int_equal(s.len, before + sizeof(big));
	assert_int_equal(s.p[s.len], 0);
	assert_false(s.oom);
	assert_false(s.cut);
	sbuf_reset(&s);
	assert_string_equal(s.p, "");
	sbuf_free(&s);
	assert_null(s.p);

	struct sbuf e = {0}; /* nothing but an empty append: still a string */
	sbuf_put(&e, "", 0);
	assert_non_null(e.p);
	assert_string_equal(e.p, "");
	sbuf_free(&e);
}

static void test_fixed_cuts(void **state)
{
	char arr[12];
	memset(arr, '#', sizeof(arr));
	char guard = '#';
	struct sbuf s;
	sbuf_fixed(&s, arr, 8);
	assert_string_equal(arr, "");
	sbuf_puts(&s, "iOS ");
	sbuf_uint(&s, 17);
	assert_string_equal(arr, "iOS 17");
	assert_false(s.cut);
	sbuf_puts(&s, ".4.1"); /* 7 bytes fit in 8 with the NUL */
	assert_string_equal(arr, "iOS 17.");
	assert_true(s.cut);
	assert_int_equal(s.len, 7);
	sbuf_puts(&s, "more");
	assert_string_equal(arr, "iOS 17.");
	for (size_t i = 8; i < sizeof(arr); i++) /* nothing written past cap */
		assert_int_equal(arr[i], guard);
	sbuf_reset(&s);
	assert_false(s.cut);
	sbuf_puts(&s, "a");
	assert_string_equal(arr, "a");
	sbuf_free(&s); /* a no-op for the caller's array */
	assert_string_equal(arr, "a");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_growable),
	    cmocka_unit_test(test_fixed_cuts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
