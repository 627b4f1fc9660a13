/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * testlib.h - what every unit test includes: cmocka, and helpers to find
 * fixtures (tests/data) whatever the working directory.
 */
#ifndef EG_TESTLIB_H
#define EG_TESTLIB_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* Directory of test fixtures: $EG_TEST_DATA or tests/data. */
static inline const char *tl_data_dir(void)
{
	const char *d = getenv("EG_TEST_DATA");
	return d ? d : "tests/data";
}

/*
 * Read a whole file into a malloc'd buffer (NUL-terminated for convenience,
 * *len excludes the NUL). Fails the test when the file cannot be read.
 */
static inline char *tl_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = 0;
	fclose(f);
	*len = (size_t)n;
	return buf;
}

#endif
