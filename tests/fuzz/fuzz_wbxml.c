/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * fuzz_wbxml.c - libFuzzer target for the WBXML tokenizer, DeviceInformation
 * extraction and bounded inflation. The input is used three ways: as a WBXML
 * body, as a gzip body and as a deflate body; whatever inflates is decoded
 * as WBXML too, as the gateway would.
 */
#include "gzbody.h"
#include "wbxml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_string(const char *s, size_t size)
{
	size_t n = strnlen(s, size);

	if (n == size) /* every field is NUL-terminated */
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
			abort(); /* sanitising must remove control characters */
}

static void decode(const uint8_t *data, size_t size)
{
	struct wbxml_reader r;
	struct wbxml_token t;
	struct eas_devinfo di;
	const char *err;
	int rc = 0, page, tag;

	if (wbxml_reader_init(&r, data, size) == 0) {
		while ((rc = wbxml_next(&r, &t)) == 1) {
			if (r.depth < 0 || r.depth > r.max_depth)
				abort();
			if ((t.kind == WBXML_TEXT || t.kind == WBXML_OPAQUE) &&
			    (t.data < data || t.len > size || t.data + t.len > data + size))
				abort();
		}
		if (rc == 0 && r.depth != 0)
			abort();
	}
	int di_rc = wbxml_devinfo(data, size, &di, &err);
	/* The extractor and the tokenizer must agree on well-formedness. */
	if ((di_rc < 0) != (r.err != NULL))
		abort();
	if (di_rc >= 0) {
		check_string(di.model, sizeof(di.model));
		check_string(di.os, sizeof(di.os));
		check_string(di.user_agent, sizeof(di.user_agent));
		check_string(di.os_language, sizeof(di.os_language));
		check_string(di.enable_outbound_sms, sizeof(di.enable_outbound_sms));
		if ((di.truncated | di.duplicate) & ~di.present)
			abort();
	}
	(void)wbxml_root(data, size, &page, &tag);
	if (size < 4096) { /* the debug printer walks the same tokens, plus the name tables */
		static FILE *devnull;
		if (!devnull && !(devnull = fopen("/dev/null", "w")))
			abort();
		if ((wbxml_dump(devnull, data, size) < 0) != (di_rc < 0))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[64 * 1024];
	size_t olen;
	const char *err;

	decode(data, size);
	for (int gz = 0; gz <= 1; gz++) {
		if (gzbody_inflate(data, size, gz, out, sizeof(out), &olen, &err) == 0) {
			if (olen > sizeof(out) || err)
				abort();
			decode(out, olen);
		} else if (!err || olen != 0) {
			abort();
		}
	}
	return 0;
}
