/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * fuzz_eas_query.c - libFuzzer target for the EAS request classifier.
 *
 * The first input byte picks what the rest is:
 *   sel % 4 == 0  a raw query string (plain or base64 form, auto-detected)
 *   sel % 4 == 1  the binary MS-ASHTTP layout: base64-encoded here, so the
 *                 fuzzer works on the decoded bytes directly
 *   sel % 4 == 2  one header: the next byte picks the name, the rest is the value
 *   sel % 4 == 3  a request path for eas_classify_path
 * Bit 0x80 of sel makes eas_finish treat the request as OPTIONS; bit 0x40
 * sets strict_ids (config strict_device_id).
 * Every result must keep all fields NUL-terminated and consistent, and an
 * accepted DeviceId/DeviceType must obey the rule in eas.h whatever the form.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eas.h"
#include "eas_answer.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static const char *const header_names[] = {
    "User-Agent",    "MS-ASProtocolVersion", "X-MS-PolicyKey", "X-MS-WL",
    "Authorization", "MS-ASAcceptMultiPart", "Host",	       "authorization",
};

static void b64(const uint8_t *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		v |= i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0;
		v |= i + 2 < n ? in[i + 2] : 0;
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? a[v & 63] : '=';
	}
	out[o] = 0;
}

#define FIELD_OK(f) CHECK(memchr((f), 0, sizeof(f)) != NULL)

/* Empty (not sent) or what every sink takes as it is: see eas.h. */
static void ident_ok(const char *s, const char *also_refused)
{
	if (!*s)
		return;
	CHECK(!strchr("=+-@", s[0]));
	for (const char *p = s; *p; p++)
		CHECK(*p > 0x20 && *p < 0x7f && !strchr("\",\\", *p) && !strchr(also_refused, *p));
}

static void check_req(const struct eas_req *r)
{
	FIELD_OK(r->user);
	FIELD_OK(r->device_id);
	FIELD_OK(r->device_type);
	FIELD_OK(r->collection_id);
	FIELD_OK(r->item_id);
	FIELD_OK(r->long_id);
	FIELD_OK(r->occurrence);
	FIELD_OK(r->attachment_name);
	FIELD_OK(r->user_agent);
	FIELD_OK(r->xmswl);
	FIELD_OK(r->auth_user);
	FIELD_OK(r->identity);
	CHECK((unsigned)r->cmd < EAS_CMD__COUNT);
	CHECK(r->err ? r->err_status == 400 : (r->err_status == 0 && r->err_eas_status == 0));
	if (r->err)
		return;
	ident_ok(r->device_id, ":");
	ident_ok(r->device_type, "-");
	CHECK(strcmp(r->device_id, ".") && strcmp(r->device_id, ".."));
	if (r->strict_ids && r->form == EAS_FORM_PLAIN)
		for (const char *p = r->device_id; *p; p++)
			CHECK((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
			      (*p >= 'A' && *p <= 'Z'));
	if (r->cmd != EAS_CMD_OPTIONS)
		CHECK(r->device_id[0] && r->device_type[0] && r->cmd != EAS_CMD_NONE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char enc[4 * 4096 / 3 + 8];
	struct eas_req r;

	if (size < 1)
		return 0;
	uint8_t sel = data[0];
	const char *s = (const char *)data + 1;
	size_t n = size - 1;

	eas_req_init(&r);
	r.strict_ids = (sel & 0x40) != 0;
	switch (sel % 4) {
	case 0:
		eas_parse_query(&r, s, n);
		break;
	case 1:
		if (n > 4096)
			return 0;
		b64(data + 1, n, enc);
		eas_parse_query(&r, enc, strlen(enc));
		break;
	case 2:
		if (n < 1)
			return 0;
		eas_parse_header(&r, header_names[data[1] % 8], strlen(header_names[data[1] % 8]),
				 s + 1, n - 1);
		break;
	default:
		CHECK(eas_classify_path(s, n) <= EAS_PATH_AUTODISCOVER);
		break;
	}
	eas_finish(&r, sel & 0x80);
	check_req(&r);

	uint8_t wb[EAS_STATUS_WBXML_MAX];
	size_t wn = eas_status_wbxml(r.cmd, r.err_eas_status, wb, sizeof(wb));
	CHECK(wn <= sizeof(wb));
	CHECK(eas_status_name(r.err_eas_status) != NULL);
	return 0;
}
