/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_buf.c - pooled buffers, and what a buffer marked `wipe` leaves behind:
 * nothing of its bytes in the pool's blocks after consume, release,
 * compaction or growth (a request head's Authorization must not outlive the
 * request in pooled storage). An unmarked buffer is not touched (no cost on
 * the response path).
 */
#include "testlib.h"

#include "buf.h"

static const char SECRET[] = "Authorization: Basic YWxpY2U6czNjcjN0\r\n";
#define SLEN (sizeof(SECRET) - 1)

/* Does the secret occur anywhere in n bytes at p? */
static int holds(const char *p, size_t n)
{
	for (size_t i = 0; i + SLEN <= n; i++)
		if (!memcmp(p + i, SECRET, SLEN))
			return 1;
	return 0;
}

static void test_consume_and_release(void **state)
{
	struct bufpool bp;
	struct buf b = {.wipe = 1};
	assert_int_equal(bufpool_init(&bp, 8), 0);
	assert_int_equal(buf_append(&bp, &b, "GET / HTTP/1.1\r\n", 16, BUF_BLOCK), 0);
	assert_int_equal(buf_append(&bp, &b, SECRET, SLEN, BUF_BLOCK), 0);
	assert_int_equal(buf_append(&bp, &b, "\r\nbody", 6, BUF_BLOCK), 0);
	char *block = b.p;
	buf_consume(&bp, &b, 16 + SLEN + 2); /* the head: gone, and zeroed */
	assert_false(holds(block, BUF_BLOCK));
	assert_memory_equal(buf_data(&b), "body", 4);
	assert_int_equal(buf_append(&bp, &b, SECRET, SLEN, BUF_BLOCK), 0);
	buf_release(&bp, &b); /* back to the pool: nothing of it left */
	assert_int_equal(bp.nfree, 1);
	assert_ptr_equal(bp.free[0], block);
	assert_false(holds(block, BUF_BLOCK));
	assert_int_equal(b.wipe, 1); /* the mark stays with the buffer */
	bufpool_destroy(&bp);
}

static void test_compaction(void **state)
{
	struct bufpool bp;
	struct buf b = {.wipe = 1};
	assert_int_equal(bufpool_init(&bp, 8), 0);
	/* Fill, consume a little, then ask for more room than is left at the end:
	 * the live bytes (holding the secret) move to the front. */
	char fill[BUF_BLOCK - SLEN - 100];
	memset(fill, 'x', sizeof(fill));
	assert_int_equal(buf_append(&bp, &b, fill, sizeof(fill), BUF_BLOCK), 0);
	assert_int_equal(buf_append(&bp, &b, SECRET, SLEN, BUF_BLOCK), 0);
	buf_consume(&bp, &b, sizeof(fill) - 10);
	assert_true(buf_reserve(&bp, &b, 1000, BUF_BLOCK) >= 1000);
	assert_int_equal(b.off, 0);
	/* Exactly one copy: the live one at the front. */
	assert_true(holds(b.p, 10 + SLEN));
	assert_false(holds(b.p + 10 + SLEN, BUF_BLOCK - 10 - SLEN));
	buf_release(&bp, &b);
	bufpool_destroy(&bp);
}

static void test_growth(void **state)
{
	struct bufpool bp;
	struct buf b = {.wipe = 1};
	assert_int_equal(bufpool_init(&bp, 8), 0);
	assert_int_equal(buf_append(&bp, &b, SECRET, SLEN, 4 * BUF_BLOCK), 0);
	char *old = b.p;
	char big[BUF_BLOCK];
	memset(big, 'y', sizeof(big));
	assert_int_equal(buf_append(&bp, &b, big, sizeof(big), 4 * BUF_BLOCK), 0);
	assert_ptr_not_equal(b.p, old); /* grew into a new block... */
	assert_int_equal(bp.nfree, 1);	/* ...the old one went to the pool, wiped */
	assert_ptr_equal(bp.free[0], old);
	assert_false(holds(old, BUF_BLOCK));
	assert_true(holds(b.p, b.len));
	buf_release(&bp, &b);
	bufpool_destroy(&bp);
}

static void test_unmarked_untouched(void **state)
{
	struct bufpool bp;
	struct buf b = {0};
	assert_int_equal(bufpool_init(&bp, 8), 0);
	assert_int_equal(buf_append(&bp, &b, SECRET, SLEN, BUF_BLOCK), 0);
	char *block = b.p;
	buf_release(&bp, &b);
	assert_true(holds(block, BUF_BLOCK)); /* responses are not scrubbed */
	bufpool_destroy(&bp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_consume_and_release),
	    cmocka_unit_test(test_compaction),
	    cmocka_unit_test(test_growth),
	    cmocka_unit_test(test_unmarked_untouched),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
