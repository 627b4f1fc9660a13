/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * fuzz_webform.c - libFuzzer target for the console's form and cookie
 * parsers (what a browser, or anyone, sends to admin.web).
 *
 * Input: byte 0 picks the field limit (1..64), the rest is parsed as a form
 * in an exactly-sized heap copy (plus the one byte the contract allows for
 * the final NUL), then as a Cookie header. Invariants: a success returns at
 * most max fields; every name and value is NUL-terminated inside the buffer
 * and holds no NUL; decoding never grows the text; a cookie found is shorter
 * than the output buffer and NUL-terminated.
 */
#include "webform.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int max = data[0] % WEBFORM_MAX_FIELDS + 1;
	size_t n = size - 1;
	char *buf = malloc(n + 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 1, n);
	struct webform_field f[WEBFORM_MAX_FIELDS];
	int r = webform_parse(buf, n, f, max);
	assert(r >= -1 && r <= max);
	for (int i = 0; i < r; i++) {
		assert(f[i].name >= buf && f[i].name <= buf + n);
		assert(f[i].value >= buf && f[i].value <= buf + n);
		assert(strlen(f[i].name) <= n && strlen(f[i].value) <= n);
		(void)webform_get(f, r, f[i].name);
	}
	free(buf);
	char out[80];
	int c = webform_cookie((const char *)data + 1, n, "eg_session", out, sizeof(out));
	assert(c >= -1 && c < (int)sizeof(out));
	if (c >= 0)
		assert(strlen(out) == (size_t)c);
	return 0;
}
