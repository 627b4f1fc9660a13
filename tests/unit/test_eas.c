/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_eas.c - EAS request classification: the 129 real captures, the
 * MS-ASHTTP base64 example, every command code and parameter tag, plain vs
 * base64 equivalence, refusals with their statuses, headers, paths, and
 * that no password survives in struct eas_req.
 */
#include "testlib.h"

#include "eas.h"

/* ---- helpers ------------------------------------------------------------- */

static void b64enc(const uint8_t *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? a[v & 63] : '=';
	}
	out[o] = 0;
}

/* Test-side base64 decoder (for reading the captures' Authorization). */
static size_t b64dec(const char *in, size_t n, char *out)
{
	size_t o = 0, bits = 0;
	uint32_t acc = 0;
	for (size_t i = 0; i < n && in[i] != '='; i++) {
		const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		const char *p = strchr(a, in[i]);
		assert_non_null(p);
		acc = acc << 6 | (uint32_t)(p - a);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)(acc >> bits & 0xff);
		}
	}
	out[o] = 0;
	return o;
}

/* Builder for binary base64 queries (MS-ASHTTP 2.2.1.1.1.1 layout). */
struct qb {
	uint8_t b[4096];
	size_t n;
};

static void qb_bytes(struct qb *q, const void *p, size_t n)
{
	assert_true(q->n + n <= sizeof(q->b));
	memcpy(q->b + q->n, p, n);
	q->n += n;
}

static void qb_u8(struct qb *q, unsigned v)
{
	uint8_t b = (uint8_t)v;
	qb_bytes(q, &b, 1);
}

/* pk < 0: no policy key. id/type are NUL-terminated strings. */
static void qb_head(struct qb *q, unsigned ver, unsigned cmd, const char *id, long long pk,
		    const char *type)
{
	q->n = 0;
	qb_u8(q, ver);
	qb_u8(q, cmd);
	qb_u8(q, 0x09); /* locale 0x0409, little-endian */
	qb_u8(q, 0x04);
	qb_u8(q, strlen(id));
	qb_bytes(q, id, strlen(id));
	if (pk < 0) {
		qb_u8(q, 0);
	} else {
		qb_u8(q, 4);
		for (int i = 0; i < 4; i++)
			qb_u8(q, (unsigned)((unsigned long long)pk >> (8 * i)) & 0xff);
	}
	qb_u8(q, strlen(type));
	qb_bytes(q, type, strlen(type));
}

static void qb_param(struct qb *q, unsigned tag, const char *val)
{
	qb_u8(q, tag);
	qb_u8(q, strlen(val));
	qb_bytes(q, val, strlen(val));
}

/* Encode the builder and parse it as the whole query. */
static int qb_parse(struct eas_req *r, const struct qb *q)
{
	char enc[8192];
	b64enc(q->b, q->n, enc);
	return eas_parse_query(r, enc, strlen(enc));
}

static int parse_q(struct eas_req *r, const char *q)
{
	eas_req_init(r);
	return eas_parse_query(r, q, strlen(q));
}

static int hdr(struct eas_req *r, const char *name, const char *val)
{
	return eas_parse_header(r, name, strlen(name), val, strlen(val));
}

/* Plain POST: query then finish; returns finish's verdict. */
static int post(struct eas_req *r, const char *q)
{
	parse_q(r, q);
	return eas_finish(r, 0);
}

static void assert_refused(struct eas_req *r, int http, int eas)
{
	assert_non_null(r->err);
	assert_int_equal(r->err_status, http);
	assert_int_equal(r->err_eas_status, eas);
}

static void assert_struct_lacks(const struct eas_req *r, const char *secret)
{
	assert_null(memmem(r, sizeof(*r), secret, strlen(secret)));
}

/* ---- the 129 real captures --------------------------------------------- */

struct capture {
	char method[16], path[256], query[512];
	char auth_user[300], user_param[300], device_id[64];
	const char *password;
};

/* Percent-decode the User= value of a capture query (test-side). */
static void query_param(const char *q, const char *name, char *out, size_t cap)
{
	out[0] = 0;
	size_t nl = strlen(name);
	for (const char *p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (strncmp(p, name, nl) || p[nl] != '=')
			continue;
		size_t o = 0;
		for (const char *v = p + nl + 1; *v && *v != '&' && o + 1 < cap; v++) {
			if (*v == '%') {
				unsigned x;
				assert_int_equal(sscanf(v + 1, "%2x", &x), 1);
				out[o++] = (char)x;
				v += 2;
			} else {
				out[o++] = *v;
			}
		}
		out[o] = 0;
	}
}

/* Feed one capture to the classifier like the relay will (strict_ids from
 * strict_device_id). */
static int feed_capture(const char *buf, struct eas_req *r, struct capture *c, int strict)
{
	const char *eol = strstr(buf, "\r\n");
	const char *sp = strchr(buf, ' ');
	const char *ver = strstr(buf, " HTTP/1.1\r\n");
	assert_true(eol && sp && ver && ver < eol);
	snprintf(c->method, sizeof(c->method), "%.*s", (int)(sp - buf), buf);
	const char *target = sp + 1, *qm = memchr(target, '?', (size_t)(ver - target));
	const char *pend = qm ? qm : ver;
	snprintf(c->path, sizeof(c->path), "%.*s", (int)(pend - target), target);
	snprintf(c->query, sizeof(c->query), "%.*s", qm ? (int)(ver - qm - 1) : 0,
		 qm ? qm + 1 : "");

	eas_req_init(r);
	r->strict_ids = (uint8_t)strict;
	assert_int_equal(eas_classify_path(c->path, strlen(c->path)), EAS_PATH_EAS);
	int rc = eas_parse_query(r, c->query, strlen(c->query));
	for (const char *line = eol + 2;; line = strstr(line, "\r\n") + 2) {
		const char *end = strstr(line, "\r\n");
		assert_non_null(end);
		if (end == line)
			break;
		const char *colon = memchr(line, ':', (size_t)(end - line));
		assert_non_null(colon);
		if (!strncmp(line, "Authorization: Basic ", 21)) {
			char cred[300];
			b64dec(line + 21, (size_t)(end - line - 21), cred);
			char *pw = strchr(cred, ':');
			assert_non_null(pw);
			*pw = 0;
			snprintf(c->auth_user, sizeof(c->auth_user), "%s", cred);
			c->password = "test-password";
			assert_string_equal(pw + 1, c->password);
		}
		if (eas_parse_header(r, line, (size_t)(colon - line), colon + 1,
				     (size_t)(end - colon - 1)) < 0)
			rc = -1;
	}
	query_param(c->query, "User", c->user_param, sizeof(c->user_param));
	query_param(c->query, "DeviceId", c->device_id, sizeof(c->device_id));
	if (eas_finish(r, !strcmp(c->method, "OPTIONS")) < 0)
		rc = -1;
	return rc;
}

static void lower_str(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s + 32);
}

static void check_capture(const char *file, const char *method, const char *cmd, const char *ua,
			  const char *ver)
{
	char path[512];
	size_t len;
	struct eas_req r;
	struct capture c;

	snprintf(path, sizeof(path), "%s/eas-captures/%s", tl_data_dir(), file);
	char *buf = tl_read_file(path, &len);
	int rc = feed_capture(buf, &r, &c, 0);
	assert_string_equal(c.method, method);
	assert_string_equal(eas_cmd_name(r.cmd), cmd);
	assert_string_equal(r.user_agent, ua);
	assert_string_equal(r.xmswl, "Nine/4.9.2a");
	assert_int_equal(r.auth_scheme, EAS_AUTH_BASIC);
	assert_string_equal(r.auth_user, c.auth_user);
	lower_str(c.auth_user);
	assert_string_equal(r.identity, c.auth_user);
	assert_int_equal(r.proto, !strcmp(ver, "16.1") ? 161 : 0);
	assert_struct_lacks(&r, c.password);
	assert_int_equal(r.has_policy_key, strstr(buf, "X-MS-PolicyKey:") != NULL);

	if (rc != 0)
		fail_msg("%s refused: %s", file, r.err);
	if (!strcmp(method, "POST")) {
		assert_int_equal(r.form, EAS_FORM_PLAIN);
		assert_string_equal(r.user, c.user_param);
		assert_string_equal(r.device_id, c.device_id);
		assert_string_equal(r.device_type, "Android");
	} else {
		assert_int_equal(r.form, EAS_FORM_NONE);
		assert_string_equal(r.device_id, "");
	}
	/* With strict_device_id, Exchange's rule: only the debug build's
	 * "Dbg-Nine526977DA8D36" (a '-') is refused, 400/108. */
	rc = feed_capture(buf, &r, &c, 1);
	if (!strcmp(file, "805-R4-ResolveRecipients.http")) {
		assert_int_equal(rc, -1);
		assert_refused(&r, 400, 108);
	} else if (rc != 0) {
		fail_msg("%s refused with strict_ids: %s", file, r.err);
	}
	free(buf);
}

static void test_captures(void **state)
{
	(void)state;
	char path[512];
	size_t len;
	int files = 0;

	snprintf(path, sizeof(path), "%s/eas-captures/MANIFEST.tsv", tl_data_dir());
	char *m = tl_read_file(path, &len);
	char *save = NULL;
	strtok_r(m, "\n", &save); /* header line */
	for (char *line; (line = strtok_r(NULL, "\n", &save));) {
		char *f[7] = {0};
		char *p = line;
		for (int i = 0; i < 7 && p; i++) {
			f[i] = p;
			p = strchr(p, '\t');
			if (p)
				*p++ = 0;
		}
		assert_non_null(f[4]);
		check_capture(f[0], f[1], f[2], f[3], f[4]);
		files++;
	}
	assert_int_equal(files, 129);
	free(m);
}

/* ---- base64 form ---------------------------------------------------------- */

static void test_spec_example(void **state)
{
	(void)state;
	struct eas_req r;
	assert_int_equal(parse_q(&r, "jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l"), 0);
	assert_int_equal(eas_finish(&r, 0), 0);
	assert_int_equal(r.form, EAS_FORM_BASE64);
	assert_int_equal(r.proto, 140);
	assert_int_equal(r.cmd, EAS_CMD_SYNC);
	assert_int_equal(r.locale, 0x0409);
	assert_string_equal(r.device_id, "v140Device");
	assert_string_equal(r.device_type, "SmartPhone");
	assert_int_equal(r.has_policy_key, 0);
	assert_string_equal(r.user, "");
}

/* MS-ASHTTP 2.2.1.1.1.1.2, written out independently of eas_cmd.c. */
static const char *const code_names[23] = {
    "Sync",
    "SendMail",
    "SmartForward",
    "SmartReply",
    "GetAttachment",
    NULL,
    NULL,
    NULL,
    NULL,
    "FolderSync",
    "FolderCreate",
    "FolderDelete",
    "FolderUpdate",
    "MoveItems",
    "GetItemEstimate",
    "MeetingResponse",
    "Search",
    "Settings",
    "Ping",
    "ItemOperations",
    "Provision",
    "ResolveRecipients",
    "ValidateCert",
};

static void test_every_command_code(void **state)
{
	(void)state;
	for (unsigned code = 0; code < 256; code++) {
		struct eas_req r;
		struct qb q;
		eas_req_init(&r);
		qb_head(&q, 141, code, "ABC123", -1, "iPhone");
		int rc = qb_parse(&r, &q);
		if (code < 23 && code_names[code]) {
			assert_int_equal(rc, 0);
			assert_int_equal(eas_finish(&r, 0), 0);
			assert_int_equal(r.cmd, code);
			assert_string_equal(eas_cmd_name(r.cmd), code_names[code]);
		} else {
			assert_int_equal(rc, -1);
			assert_refused(&r, 400, 0);
		}
	}
}

static void test_every_param_tag(void **state)
{
	(void)state;
	struct eas_req r;
	struct qb q;
	eas_req_init(&r);
	qb_head(&q, 161, 2 /* SmartForward */, "ABC123", 0x12345678, "SP");
	qb_param(&q, 0, "att:1");
	qb_param(&q, 1, "coll-5");
	qb_param(&q, 2, "deprecated-name"); /* CollectionName: ignored */
	qb_param(&q, 3, "5:12");
	qb_param(&q, 4, "RgAAAAlong");
	qb_param(&q, 5, "parent"); /* ParentId: ignored */
	qb_param(&q, 6, "2013-02-12T00:00:00.000Z");
	qb_u8(&q, 7); /* Options: SaveInSent | AcceptMultiPart */
	qb_u8(&q, 1);
	qb_u8(&q, 0x03);
	qb_param(&q, 8, "Bob@Example.com");
	qb_param(&q, 9, "future"); /* unknown tag: ignored */
	assert_int_equal(qb_parse(&r, &q), 0);
	assert_int_equal(eas_finish(&r, 0), 0);
	assert_int_equal(r.cmd, EAS_CMD_SMARTFORWARD);
	assert_string_equal(r.attachment_name, "att:1");
	assert_string_equal(r.collection_id, "coll-5");
	assert_string_equal(r.item_id, "5:12");
	assert_string_equal(r.long_id, "RgAAAAlong");
	assert_string_equal(r.occurrence, "2013-02-12T00:00:00.000Z");
	assert_int_equal(r.options, 0x03);
	assert_int_equal(r.save_in_sent, 1);
	assert_int_equal(r.accept_multipart, 1);
	assert_string_equal(r.user, "Bob@Example.com");
	assert_string_equal(r.identity, "bob@example.com");
	assert_int_equal(r.has_policy_key, 1);
	assert_int_equal(r.policy_key, 0x12345678); /* little-endian on the wire */
	assert_int_equal(r.proto, 161);

	/* Options bits one at a time. */
	eas_req_init(&r);
	qb_head(&q, 140, 1, "ABC123", -1, "SP");
	qb_u8(&q, 7);
	qb_u8(&q, 1);
	qb_u8(&q, 0x02);
	assert_int_equal(qb_parse(&r, &q), 0);
	assert_int_equal(r.save_in_sent, 0);
	assert_int_equal(r.accept_multipart, 1);
}

static void test_base64_device_id(void **state)
{
	(void)state;
	struct eas_req r;
	struct qb q;
	char bin[17];

	/* 16 binary bytes -> 32 upper-case hex digits, as SOGo renders them and
	 * as Windows Phone sends the same ID in its plain-form requests */
	for (int i = 0; i < 16; i++)
		bin[i] = (char)(i * 16 + 15 - i); /* 0f 1e ... f0 */
	bin[16] = 0;
	for (int strict = 0; strict < 2; strict++) {
		eas_req_init(&r);
		r.strict_ids = (uint8_t)strict;
		qb_head(&q, 141, 0, bin, -1, "iPhone");
		assert_int_equal(qb_parse(&r, &q), 0);
		assert_string_equal(r.device_id, "0F1E2D3C4B5A69788796A5B4C3D2E1F0");
	}

	/* bytes that make a valid DeviceId stay text, in both modes (strict_ids
	 * holds only the plain parameter to Exchange's rule) */
	for (int strict = 0; strict < 2; strict++) {
		eas_req_init(&r);
		r.strict_ids = (uint8_t)strict;
		qb_head(&q, 161, 17, "Dbg-NOByirVoyhBcQHNFB4wsmw==", -1, "WindowsMail");
		assert_int_equal(qb_parse(&r, &q), 0);
		assert_string_equal(r.device_id, "Dbg-NOByirVoyhBcQHNFB4wsmw==");
	}

	/* printable but not a valid DeviceId (a blank, a leading '='): hex */
	eas_req_init(&r);
	qb_head(&q, 141, 0, "ab c", -1, "iPhone");
	assert_int_equal(qb_parse(&r, &q), 0);
	assert_string_equal(r.device_id, "61622063");
	eas_req_init(&r);
	qb_head(&q, 141, 0, "=1", -1, "iPhone");
	assert_int_equal(qb_parse(&r, &q), 0);
	assert_string_equal(r.device_id, "3D31");

	/* 17 binary bytes do not fit 32 characters: 108 */
	char bin17[18];
	memset(bin17, 0x80, 17);
	bin17[17] = 0;
	eas_req_init(&r);
	qb_head(&q, 141, 0, bin17, -1, "iPhone");
	assert_int_equal(qb_parse(&r, &q), -1);
	assert_refused(&r, 400, 108);

	/* 32 alnum kept, 33 alnum refused */
	eas_req_init(&r);
	qb_head(&q, 141, 0, "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", -1, "iPhone");
	assert_int_equal(qb_parse(&r, &q), 0);
	assert_string_equal(r.device_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345");
	eas_req_init(&r);
	qb_head(&q, 141, 0, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456", -1, "iPhone");
	assert_int_equal(qb_parse(&r, &q), -1);
	assert_refused(&r, 400, 108);
}

/* Every prefix of a valid binary query that cuts a field is refused (400);
 * prefixes ending between parameters are complete requests. */
static void test_base64_truncation(void **state)
{
	(void)state;
	struct qb full, q;
	qb_head(&full, 141, 15, "ApplDMPFXZABDFHW", 42, "iPad");
	size_t head = full.n;
	qb_param(&full, 3, "5:12");
	size_t mid = full.n;
	qb_param(&full, 8, "user1@contoso.com");
	for (size_t cut = 1; cut < full.n; cut++) {
		struct eas_req r;
		eas_req_init(&r);
		q = full;
		q.n = cut;
		int rc = qb_parse(&r, &q);
		if (rc == 0)
			rc = eas_finish(&r, 0);
		if (cut == head || cut == mid) {
			assert_int_equal(rc, 0);
			continue;
		}
		if (rc != -1)
			fail_msg("prefix of %zu/%zu bytes accepted", cut, full.n);
		assert_int_equal(r.err_status, 400);
	}
	struct eas_req r;
	eas_req_init(&r);
	assert_int_equal(qb_parse(&r, &full), 0);
	assert_int_equal(eas_finish(&r, 0), 0);
}

struct b64_bad {
	const char *what;
	void (*build)(struct qb *q);
	int eas;
};

static void bad_version(struct qb *q)
{
	qb_head(q, 25, 0, "ABC", -1, "SP"); /* base64 needs 12.1+ */
}
static void bad_pklen(struct qb *q)
{
	static const uint8_t b[] = {141, 0, 9, 4, 3, 'A', 'B', 'C', 3, 1, 2, 3, 2, 'S', 'P'};
	q->n = 0;
	qb_bytes(q, b, sizeof(b));
}
static void bad_type_dash(struct qb *q)
{
	qb_head(q, 141, 0, "ABC", -1, "Smart-Phone");
}
static void bad_type_long(struct qb *q)
{
	qb_head(q, 141, 0, "ABC", -1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456");
}
static void bad_type_empty(struct qb *q)
{
	qb_head(q, 141, 0, "ABC", -1, "");
}
static void bad_id_empty(struct qb *q)
{
	qb_head(q, 141, 0, "", -1, "SP");
}
static void bad_param_past_end(struct qb *q)
{
	qb_head(q, 141, 0, "ABC", -1, "SP");
	qb_u8(q, 1);
	qb_u8(q, 10);
	qb_bytes(q, "abc", 3);
}
static void bad_param_tag_only(struct qb *q)
{
	qb_head(q, 141, 0, "ABC", -1, "SP");
	qb_u8(q, 8);
}
static void bad_options_len(struct qb *q)
{
	qb_head(q, 141, 1, "ABC", -1, "SP");
	qb_param(q, 7, "\x01\x02");
}
static void bad_dup_tag(struct qb *q)
{
	qb_head(q, 141, 0, "ABC", -1, "SP");
	qb_param(q, 8, "alice");
	qb_param(q, 8, "bob");
}
static void bad_ctl_value(struct qb *q)
{
	qb_head(q, 141, 0, "ABC", -1, "SP");
	qb_param(q, 8, "ali\nce");
}
static void bad_too_long(struct qb *q)
{
	qb_head(q, 141, 0, "ABC", -1, "SP");
	for (int i = 0; i < 16; i++)
		qb_param(q, 20,
			 "........................................................................"
			 "........................................................................"
			 "....................................................");
}

static void test_base64_refusals(void **state)
{
	(void)state;
	static const struct b64_bad cases[] = {
	    {"version 2.5", bad_version, 0},
	    {"policy key length 3", bad_pklen, 0},
	    {"DeviceType with '-'", bad_type_dash, 109},
	    {"DeviceType 33 chars", bad_type_long, 109},
	    {"DeviceType empty", bad_type_empty, 109},
	    {"DeviceId empty", bad_id_empty, 108},
	    {"param past end", bad_param_past_end, 0},
	    {"tag without length", bad_param_tag_only, 0},
	    {"Options not one byte", bad_options_len, 0},
	    {"repeated tag", bad_dup_tag, 0},
	    {"control byte in User", bad_ctl_value, 0},
	    {"over 3 KiB decoded", bad_too_long, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct eas_req r;
		struct qb q;
		eas_req_init(&r);
		cases[i].build(&q);
		if (qb_parse(&r, &q) != -1)
			fail_msg("accepted: %s", cases[i].what);
		assert_int_equal(eas_finish(&r, 0), -1);
		assert_refused(&r, 400, cases[i].eas);
	}
}

/* Header values never override the base64 fields; they fill gaps. */
static void test_base64_beats_headers(void **state)
{
	(void)state;
	struct eas_req r;
	struct qb q;
	eas_req_init(&r);
	assert_int_equal(hdr(&r, "MS-ASProtocolVersion", "16.1"), 0);
	assert_int_equal(hdr(&r, "X-MS-PolicyKey", "7"), 0);
	qb_head(&q, 141, 18, "ABC", 99, "SP");
	assert_int_equal(qb_parse(&r, &q), 0);
	assert_int_equal(eas_finish(&r, 0), 0);
	assert_int_equal(r.proto, 141);
	assert_int_equal(r.policy_key, 99);

	eas_req_init(&r);
	qb_head(&q, 141, 18, "ABC", -1, "SP");
	assert_int_equal(qb_parse(&r, &q), 0);
	assert_int_equal(hdr(&r, "X-MS-PolicyKey", "7"), 0);
	assert_int_equal(eas_finish(&r, 0), 0);
	assert_int_equal(r.has_policy_key, 1);
	assert_int_equal(r.policy_key, 7);
	assert_true(eas_cmd_is_hanging(r.cmd));
}

/* ---- plain == base64 --------------------------------------------------- */

static void assert_same(const struct eas_req *a, const struct eas_req *b)
{
	assert_null(a->err);
	assert_null(b->err);
	assert_int_equal(a->cmd, b->cmd);
	assert_string_equal(a->user, b->user);
	assert_string_equal(a->identity, b->identity);
	assert_string_equal(a->device_id, b->device_id);
	assert_string_equal(a->device_type, b->device_type);
	assert_string_equal(a->collection_id, b->collection_id);
	assert_string_equal(a->item_id, b->item_id);
	assert_string_equal(a->long_id, b->long_id);
	assert_string_equal(a->occurrence, b->occurrence);
	assert_string_equal(a->attachment_name, b->attachment_name);
	assert_int_equal(a->save_in_sent, b->save_in_sent);
	assert_int_equal(a->proto, b->proto);
	assert_int_equal(a->has_policy_key, b->has_policy_key);
	assert_int_equal(a->policy_key, b->policy_key);
}

static void test_plain_equals_base64(void **state)
{
	(void)state;
	struct eas_req p, b;
	struct qb q;

	/* KB2814847's iOS MeetingResponse, both ways */
	static const char kb[] = "User=user1%40contoso.com&DeviceId=ApplDMPFXZABDFHW&"
				 "DeviceType=iPad&Cmd=MeetingResponse&ItemId=5%3A12";
	eas_req_init(&p);
	assert_int_equal(hdr(&p, "MS-ASProtocolVersion", "14.1"), 0);
	assert_int_equal(hdr(&p, "X-MS-PolicyKey", "3942919513"), 0);
	assert_int_equal(eas_parse_query(&p, kb, sizeof(kb) - 1), 0);
	assert_int_equal(eas_finish(&p, 0), 0);
	eas_req_init(&b);
	qb_head(&q, 141, 15, "ApplDMPFXZABDFHW", 3942919513LL, "iPad");
	qb_param(&q, 8, "user1@contoso.com");
	qb_param(&q, 3, "5:12");
	assert_int_equal(qb_parse(&b, &q), 0);
	assert_int_equal(eas_finish(&b, 0), 0);
	assert_same(&p, &b);
	assert_int_equal(p.form, EAS_FORM_PLAIN);
	assert_int_equal(b.form, EAS_FORM_BASE64);
	assert_int_equal(p.cmd, EAS_CMD_MEETINGRESPONSE);
	assert_string_equal(p.item_id, "5:12");

	/* SmartReply with every reply parameter */
	assert_int_equal(parse_q(&p, "Cmd=SmartReply&User=Alice&DeviceId=X1&DeviceType=SP&"
				     "CollectionId=7&ItemId=7%3A3&LongId=RgAB%2Bz&Occurrence=X&"
				     "SaveInSent=T&AttachmentName=a%2Fb"),
			 0);
	assert_int_equal(hdr(&p, "MS-ASProtocolVersion", "14.0"), 0);
	assert_int_equal(eas_finish(&p, 0), 0);
	eas_req_init(&b);
	qb_head(&q, 140, 3, "X1", -1, "SP");
	qb_param(&q, 1, "7");
	qb_param(&q, 3, "7:3");
	qb_param(&q, 4, "RgAB+z");
	qb_param(&q, 6, "X");
	qb_param(&q, 0, "a/b");
	qb_param(&q, 8, "Alice");
	qb_u8(&q, 7);
	qb_u8(&q, 1);
	qb_u8(&q, 1);
	assert_int_equal(qb_parse(&b, &q), 0);
	assert_int_equal(eas_finish(&b, 0), 0);
	assert_same(&p, &b);
	assert_string_equal(p.identity, "alice");
}

/* ---- plain form ------------------------------------------------------------ */

static void test_plain_order_and_case(void **state)
{
	(void)state;
	static const char *const forms[] = {
	    "Cmd=Sync&User=Bob&DeviceId=ABC123&DeviceType=iPhone",
	    "DeviceType=iPhone&DeviceId=ABC123&User=Bob&Cmd=Sync",
	    "devicetype=iPhone&CMD=sync&deviceid=ABC123&uSeR=Bob",
	    "%43md=Sync&%55ser=Bob&Device%49d=ABC123&DeviceType=iPhone", /* encoded names */
	    "&&Foo=bar&Cmd=Sync&&User=Bob&DeviceId=ABC123&DeviceType=iPhone&Bogus&",
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		struct eas_req r;
		if (post(&r, forms[i]) != 0)
			fail_msg("%s refused: %s", forms[i], r.err);
		assert_int_equal(r.cmd, EAS_CMD_SYNC);
		assert_string_equal(r.user, "Bob");
		assert_string_equal(r.identity, "bob");
		assert_string_equal(r.device_id, "ABC123");
		assert_string_equal(r.device_type, "iPhone");
	}
}

static void test_plain_decoding(void **state)
{
	(void)state;
	struct eas_req r;
	assert_int_equal(post(&r, "Cmd=Sync&User=DOM%5Cj+doe&DeviceId=%41%42&DeviceType=SP"), 0);
	assert_string_equal(r.user, "DOM\\j doe"); /* '+' is a space, as PHP/ASP.NET */
	assert_string_equal(r.identity, "dom\\j doe");
	assert_string_equal(r.device_id, "AB");

	/* Cmd=Options on a POST must not become the always-allowed OPTIONS */
	assert_int_equal(post(&r, "Cmd=Options&User=u&DeviceId=A&DeviceType=SP"), 0);
	assert_int_equal(r.cmd, EAS_CMD_UNKNOWN);
	assert_int_equal(post(&r, "Cmd=None&User=u&DeviceId=A&DeviceType=SP"), 0);
	assert_int_equal(r.cmd, EAS_CMD_UNKNOWN);
	assert_int_equal(post(&r, "Cmd=Frobnicate&User=u&DeviceId=A&DeviceType=SP"), 0);
	assert_int_equal(r.cmd, EAS_CMD_UNKNOWN);
	assert_int_equal(post(&r, "Cmd=gethierarchy&User=u&DeviceId=A&DeviceType=SP"), 0);
	assert_int_equal(r.cmd, EAS_CMD_GETHIERARCHY);
	assert_int_equal(post(&r, "Cmd=Find&DeviceId=A&DeviceType=SP&SaveInSent=f"), 0);
	assert_int_equal(r.cmd, EAS_CMD_FIND);
	assert_int_equal(r.save_in_sent, 0);
	assert_false(eas_cmd_is_hanging(r.cmd));

	/* a long unknown parameter is ignored, value unchecked */
	char q[2048] = "Cmd=Ping&DeviceId=A&DeviceType=SP&X=";
	memset(q + strlen(q), 'z', 1500);
	assert_int_equal(post(&r, q), 0);
	assert_true(eas_cmd_is_hanging(r.cmd));
}

struct plain_bad {
	const char *q;
	int http, eas;
};

static void test_plain_refusals(void **state)
{
	(void)state;
	static const struct plain_bad cases[] = {
	    {"Cmd=Sync&User=u&DeviceId=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456&DeviceType=SP", 400, 108},
	    {"Cmd=Sync&User=u&DeviceId=&DeviceType=SP", 400, 108},
	    {"Cmd=Sync&User=u&DeviceId&DeviceType=SP", 400, 108},
	    {"Cmd=Sync&User=u&DeviceId=ab+cd&DeviceType=SP", 400, 108},
	    {"Cmd=Sync&User=u&DeviceType=SP", 400, 108},
	    {"Cmd=Sync&User=u&DeviceId=A&DeviceType=i-Phone", 400, 109},
	    {"Cmd=Sync&User=u&DeviceId=A&DeviceType=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456", 400, 109},
	    {"Cmd=Sync&User=u&DeviceId=A&DeviceType=", 400, 109},
	    {"Cmd=Sync&User=u&DeviceId=A&DeviceType=iPhone%20X", 400, 109},
	    {"Cmd=Sync&User=u&DeviceId=A", 400, 109},
	    {"User=u&DeviceId=A&DeviceType=SP", 400, 0},
	    {"Cmd=&User=u&DeviceId=A&DeviceType=SP", 400, 0},
	    {"Cmd=Sync%00&User=u&DeviceId=A&DeviceType=SP", 400, 0},
	    {"Cmd=", 400, 0}, /* base64-shaped, but a parameter: plain */
	    {"Cmd=Sync&cmd=Ping&DeviceId=A&DeviceType=SP", 400, 0},
	    {"Cmd=Sync&DeviceId=A&DeviceId=A&DeviceType=SP", 400, 0},
	    {"Cmd=Sync&User=%zz&DeviceId=A&DeviceType=SP", 400, 0},
	    {"Cmd=Sync&User=%4&DeviceId=A&DeviceType=SP", 400, 0},
	    {"Cmd=Sync&User=a%00b&DeviceId=A&DeviceType=SP", 400, 0},
	    {"Cmd=Sync&User=a%0Db&DeviceId=A&DeviceType=SP", 400, 0},
	    {"C%zzmd=Sync&DeviceId=A&DeviceType=SP", 400, 0},
	    {"Cmd=SendMail&SaveInSent=yes&DeviceId=A&DeviceType=SP", 400, 0},
	    {"jAAJ*Ap2", 400, 108}, /* not base64-shaped: a plain query without fields */
	    {"", 400, 108},	    /* POST without any query */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct eas_req r;
		if (post(&r, cases[i].q) != -1)
			fail_msg("accepted: %s", cases[i].q);
		if (r.err_status != cases[i].http || r.err_eas_status != cases[i].eas)
			fail_msg("%s: got %d/%d (%s)", cases[i].q, r.err_status, r.err_eas_status,
				 r.err);
	}

	/* user name: 256 characters fit, 257 do not */
	char q[600] = "Cmd=Sync&DeviceId=A&DeviceType=SP&User=";
	size_t base = strlen(q);
	memset(q + base, 'u', 256);
	struct eas_req r;
	assert_int_equal(post(&r, q), 0);
	assert_int_equal(strlen(r.user), 256);
	q[base + 256] = 'u';
	assert_int_equal(post(&r, q), -1);
	assert_refused(&r, 400, 0);
	/* refused request still tells the log which command it was */
	assert_int_equal(post(&r, "DeviceType=S-P&Cmd=Provision&DeviceId=A"), -1);
	assert_int_equal(r.cmd, EAS_CMD_PROVISION);
}

/* ---- real clients (README, "Client identifiers", has the sources) -------- */

struct client_shape {
	const char *name, *query, *ua, *proto; /* query: plain, or base64 if no '=' */
	const char *device_id, *device_type;   /* what the gateway must see */
	int strict_ok;			       /* accepted with strict_ids too */
};

static void test_real_clients(void **state)
{
	(void)state;
	static const struct client_shape cases[] = {
	    {"Windows Mail (issue #9)",
	     "Cmd=Settings&User=alice&DeviceId=Dbg-NOByirVoyhBcQHNFB4wsmw==&DeviceType=WindowsMail",
	     "MSFT-WP/10.0.10240", "16.1", "Dbg-NOByirVoyhBcQHNFB4wsmw==", "WindowsMail", 0},
	    {"Windows Mail, %-encoded",
	     "Cmd=ItemOperations&User=alice&DeviceId=Dbg-NOByirVoyhBcQHNFB4wsmw%3D%3D&"
	     "DeviceType=WindowsMail",
	     "MSFT-WP/10.0.10240", "16.1", "Dbg-NOByirVoyhBcQHNFB4wsmw==", "WindowsMail", 0},
	    {"Windows Mail, Search without User",
	     "Cmd=Search&DeviceId=Dbg-NOByirVoyhBcQHNFB4wsmw==&DeviceType=WindowsMail",
	     "MSFT-WP/10.0.10240", "16.1", "Dbg-NOByirVoyhBcQHNFB4wsmw==", "WindowsMail", 0},
	    {"Windows 8 Mail (tine20 #3705)",
	     "User=ast&DeviceId=C1CE4B5333336E47BF20A4962FB74CBB&DeviceType=WindowsMail&Cmd=Sync",
	     "MSFT-WP/10.0.10240", "14.0", "C1CE4B5333336E47BF20A4962FB74CBB", "WindowsMail", 1},
	    {"Windows Phone 8.1, base64 (tine20 #5242; key, type filled in)",
	     "jREHBBB5as2MmCK7PBjTcygvbVXsBAAAAAADV1A4", "MSFT-WP/8.10.14157", NULL,
	     "796ACD8C9822BB3C18D373282F6D55EC", "WP8", 1},
	    {"iOS 6 (KB2814847)",
	     "User=user1@contoso.com&DeviceId=ApplDMPFXZABDFHW&DeviceType=iPad&Cmd=MeetingResponse",
	     "Apple-iPad2C1/1002.141", "14.1", "ApplDMPFXZABDFHW", "iPad", 1},
	    {"iOS 11+ (Apple forum 99522)",
	     "User=u&DeviceId=O8S9UD4DOH0SLEPOQC5AJ9AE3C&DeviceType=iPhone&Cmd=Settings",
	     "Apple-iPhone9C1/1504.100", "14.1", "O8S9UD4DOH0SLEPOQC5AJ9AE3C", "iPhone", 1},
	    {"Android (mail-in-a-box #937)",
	     "Cmd=Sync&User=u&DeviceId=androidc195792594&DeviceType=Android",
	     "Android/5.0.1-EAS-2.0", "14.0", "androidc195792594", "Android", 1},
	    {"Samsung (SOGo)",
	     "Cmd=FolderSync&User=sogo10&DeviceId=SEC17CD1A3E9E3F2&DeviceType=SAMSUNGSGHI317M",
	     "SAMSUNG-SM-N900V/101.403", "14.1", "SEC17CD1A3E9E3F2", "SAMSUNGSGHI317M", 1},
	    {"Outlook for iOS/Android (CSS-Exchange)",
	     "User=test%40microsoft.com&DeviceId=BF36923991ADFBA9&DeviceType=Outlook&Cmd=SendMail",
	     "Outlook-iOS-Android/1.0", "16.1", "BF36923991ADFBA9", "Outlook", 1},
	    {"Outlook desktop (mail-in-a-box #937)",
	     "Cmd=Sync&User=u&DeviceId=224c6d7124be43638aaf13ebc79d3d46&DeviceType=WindowsOutlook",
	     "Outlook/16.0 (16.0.7167.6539; C2R; x86)", "14.0", "224c6d7124be43638aaf13ebc79d3d46",
	     "WindowsOutlook", 1},
	    {"Nine, base64 (mailcow #4594)", "jQAJBBBOaW5lMzQyQkEzRjNFNkM2BAAAAAAHQW5kcm9pZAcBAA==",
	     "Nine-sdk_phone64_x86_64/SE1A.220621.001", NULL, "Nine342BA3F3E6C6", "Android", 1},
	    {"Nine debug build (our capture)",
	     "Cmd=ResolveRecipients&User=debug@mail.fd&DeviceId=Dbg-Nine526977DA8D36&"
	     "DeviceType=Android",
	     "Nine-sdk_phone64_x86_64/SE1A.220203.002.A1", "16.1", "Dbg-Nine526977DA8D36",
	     "Android", 0},
	    {"every newly accepted character",
	     "Cmd=Sync&DeviceId=a%2Bb%2Fc=d.e_f~g!$'()*;&DeviceType=x.y_z", "t/1", "14.1",
	     "a+b/c=d.e_f~g!$'()*;", "x.y_z", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct client_shape *c = &cases[i];
		for (int strict = 0; strict < 2; strict++) {
			struct eas_req r;
			eas_req_init(&r);
			r.strict_ids = (uint8_t)strict;
			eas_parse_query(&r, c->query, strlen(c->query));
			assert_int_equal(hdr(&r, "User-Agent", c->ua), 0);
			if (c->proto)
				assert_int_equal(hdr(&r, "MS-ASProtocolVersion", c->proto), 0);
			int rc = eas_finish(&r, 0);
			if (strict && !c->strict_ok) {
				if (rc != -1 || r.err_eas_status != 108)
					fail_msg("%s: strict_ids accepted it", c->name);
				continue;
			}
			if (rc != 0)
				fail_msg("%s (strict %d): %d/%d %s", c->name, strict, r.err_status,
					 r.err_eas_status, r.err);
			assert_string_equal(r.device_id, c->device_id);
			assert_string_equal(r.device_type, c->device_type);
			assert_string_equal(r.user_agent, c->ua);
		}
	}
}

/* What the default rule refuses, and why (eas.h), in the plain form. */
static void test_identifier_refusals(void **state)
{
	(void)state;
	static const struct plain_bad cases[] = {
	    {"DeviceId=ab%20cd&DeviceType=SP", 400, 108},	/* blank */
	    {"DeviceId=ab+cd&DeviceType=SP", 400, 108},		/* '+' decodes to a blank */
	    {"DeviceId=ab%09cd&DeviceType=SP", 400, 108},	/* tab */
	    {"DeviceId=ab%0Acd&DeviceType=SP", 400, 108},	/* LF: a forged log line */
	    {"DeviceId=ab%7Fcd&DeviceType=SP", 400, 108},	/* DEL */
	    {"DeviceId=%C3%A9t%C3%A9&DeviceType=SP", 400, 108}, /* not 7-bit ASCII */
	    {"DeviceId=ab%22cd&DeviceType=SP", 400, 108},	/* quote of logs, rules, CSV */
	    {"DeviceId=ab%5Ccd&DeviceType=SP", 400, 108},	/* escape of logs, rules, JSON */
	    {"DeviceId=ab%2Ccd&DeviceType=SP", 400, 108},	/* CSV separator; MS-ASHTTP */
	    {"DeviceId=bob%3Aab&DeviceType=SP", 400, 108},	/* "user:DeviceId" lists */
	    {"DeviceId=%3DSUM(1)&DeviceType=SP", 400, 108},	/* spreadsheet formulas */
	    {"DeviceId=%2B1&DeviceType=SP", 400, 108},
	    {"DeviceId=-1&DeviceType=SP", 400, 108},
	    {"DeviceId=%40SUM(1)&DeviceType=SP", 400, 108},
	    {"DeviceId=.&DeviceType=SP", 400, 108}, /* path components */
	    {"DeviceId=..&DeviceType=SP", 400, 108},
	    {"DeviceId=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456&DeviceType=SP", 400, 108},
	    {"DeviceId=a&DeviceType=i-Phone", 400, 109}, /* Exchange: 109 */
	    {"DeviceId=a&DeviceType=i%22Phone", 400, 109},
	    {"DeviceId=a&DeviceType=i%2CPhone", 400, 109},
	    {"DeviceId=a&DeviceType=%3DPhone", 400, 109},
	    {"DeviceId=a&DeviceType=%C3%A9", 400, 109},
	};
	char q[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct eas_req r;
		snprintf(q, sizeof(q), "Cmd=Sync&User=u&%s", cases[i].q);
		if (post(&r, q) != -1)
			fail_msg("accepted: %s", q);
		if (r.err_status != cases[i].http || r.err_eas_status != cases[i].eas)
			fail_msg("%s: got %d/%d (%s)", q, r.err_status, r.err_eas_status, r.err);
	}
	/* 32 characters of the widest set fit; '.', ':' and '-' inside are fine
	 * where the rule allows them */
	struct eas_req r;
	assert_int_equal(post(&r, "Cmd=Sync&DeviceId=a.b-c_d~e!f$g&h=i&DeviceType=S.P"), 0);
	assert_string_equal(r.device_id, "a.b-c_d~e!f$g");
	assert_int_equal(post(&r, "Cmd=Sync&DeviceId=.a..b&DeviceType=SP"), 0);
	assert_int_equal(
	    post(&r, "Cmd=Sync&DeviceId=0123456789abcdef0123456789ABCDE%2F&DeviceType=SP"), 0);
	assert_int_equal(strlen(r.device_id), 32);
}

static void test_options(void **state)
{
	(void)state;
	struct eas_req r;
	eas_req_init(&r);
	assert_int_equal(eas_parse_query(&r, "", 0), 0);
	assert_int_equal(eas_finish(&r, 1), 0);
	assert_int_equal(r.cmd, EAS_CMD_OPTIONS);
	assert_int_equal(r.form, EAS_FORM_NONE);
	/* an OPTIONS carrying a Cmd is still OPTIONS */
	parse_q(&r, "Cmd=Sync&DeviceId=A&DeviceType=SP");
	assert_int_equal(eas_finish(&r, 1), 0);
	assert_int_equal(r.cmd, EAS_CMD_OPTIONS);
	/* but a broken DeviceId is broken on OPTIONS too */
	parse_q(&r, "DeviceId=a%20b");
	assert_int_equal(eas_finish(&r, 1), -1);
	assert_refused(&r, 400, 108);
}

/* ---- headers --------------------------------------------------------------- */

static void test_header_versions(void **state)
{
	(void)state;
	static const struct {
		const char *v;
		int x10;
	} ok[] = {{"2.5", 25},	 {"12.0", 120}, {"12.1", 121},	 {"14.0", 140},
		  {"14.1", 141}, {"16.0", 160}, {" 16.1\t", 161}};
	static const char *const bad[] = {"", "2.0", "14", "14.2", "16.10", "16.1x", "141"};
	struct eas_req r;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		eas_req_init(&r);
		assert_int_equal(hdr(&r, "ms-asprotocolversion", ok[i].v), 0);
		eas_finish(&r, 1);
		assert_int_equal(r.proto, ok[i].x10);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		eas_req_init(&r);
		assert_int_equal(hdr(&r, "MS-ASProtocolVersion", bad[i]), -1);
		assert_refused(&r, 400, 0);
	}
}

static void test_header_policy_key(void **state)
{
	(void)state;
	struct eas_req r;
	eas_req_init(&r);
	assert_int_equal(hdr(&r, "X-MS-PolicyKey", "0"), 0);
	eas_finish(&r, 1);
	assert_int_equal(r.has_policy_key, 1);
	assert_int_equal(r.policy_key, 0);
	eas_req_init(&r);
	assert_int_equal(hdr(&r, "x-ms-policykey", " 4294967295 "), 0);
	eas_finish(&r, 1);
	assert_int_equal(r.policy_key, 4294967295u);
	static const char *const bad[] = {"",	 "4294967296", "-1",	     "+1",
					  "12a", "0x10",       "99999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		eas_req_init(&r);
		assert_int_equal(hdr(&r, "X-MS-PolicyKey", bad[i]), -1);
		assert_refused(&r, 400, 0);
	}
}

static void basic_header(const char *cred, char *out)
{
	strcpy(out, "Basic ");
	b64enc((const uint8_t *)cred, strlen(cred), out + 6);
}

static void test_header_auth(void **state)
{
	(void)state;
	struct eas_req r;
	char h[512];

	/* Basic wins over User=, identity lower-cased, password gone */
	basic_header("Alice@Example.COM:S3cr3t-Pa55:with:colons", h);
	assert_int_equal(parse_q(&r, "Cmd=Sync&User=mallory&DeviceId=A&DeviceType=SP"), 0);
	assert_int_equal(hdr(&r, "authorization", h), 0);
	assert_int_equal(eas_finish(&r, 0), 0);
	assert_int_equal(r.auth_scheme, EAS_AUTH_BASIC);
	assert_string_equal(r.auth_user, "Alice@Example.COM");
	assert_string_equal(r.identity, "alice@example.com");
	assert_string_equal(r.user, "mallory");
	assert_struct_lacks(&r, "S3cr3t-Pa55");
	assert_struct_lacks(&r, "Pa55");
	assert_struct_lacks(&r, h + 6); /* nor the encoded credentials */

	/* scheme case-insensitive, unpadded base64 accepted */
	eas_req_init(&r);
	assert_int_equal(hdr(&r, "Authorization", "bAsIc dTpw"), 0); /* "u:p" */
	assert_string_equal(r.auth_user, "u");

	/* non-Basic schemes: no user; identity falls back to User= */
	static const struct {
		const char *v;
		enum eas_auth s;
	} schemes[] = {{"NTLM TlRMTVNTUAABAAAAB4IIog==", EAS_AUTH_NTLM},
		       {"Negotiate YIIFyw==", EAS_AUTH_NEGOTIATE},
		       {"Bearer eyJ0eXAi.eyJhdWQi.sig", EAS_AUTH_BEARER},
		       {"Digest username=\"x\"", EAS_AUTH_OTHER}};
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		assert_int_equal(parse_q(&r, "Cmd=Sync&User=Carol&DeviceId=A&DeviceType=SP"), 0);
		assert_int_equal(hdr(&r, "Authorization", schemes[i].v), 0);
		assert_int_equal(eas_finish(&r, 0), 0);
		assert_int_equal(r.auth_scheme, schemes[i].s);
		assert_string_equal(r.auth_user, "");
		assert_string_equal(r.identity, "carol");
	}

	/* malformed Basic */
	static const char *const bad[] = {"Basic !!!!", "Basic dTpw=", "Basic",
					  "Basic bm9jb2xvbg=="};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		eas_req_init(&r);
		if (hdr(&r, "Authorization", bad[i]) != -1)
			fail_msg("accepted: %s", bad[i]);
		assert_refused(&r, 400, 0);
	}
	/* a user of 257 characters, and over-long credentials */
	char cred[1200];
	memset(cred, 'a', 257);
	strcpy(cred + 257, ":pw");
	basic_header(cred, h);
	eas_req_init(&r);
	assert_int_equal(hdr(&r, "Authorization", h), -1);
	char big[2000];
	memset(cred, 'a', 1100);
	strcpy(cred + 1100, ":pw");
	basic_header(cred, big);
	eas_req_init(&r);
	assert_int_equal(hdr(&r, "Authorization", big), -1);

	/* two Authorization headers: refused, whatever they say */
	eas_req_init(&r);
	assert_int_equal(hdr(&r, "Authorization", "Basic dTpw"), 0);
	assert_int_equal(hdr(&r, "Authorization", "Basic dTpw"), -1);
	assert_refused(&r, 400, 0);
}

static void test_header_misc(void **state)
{
	(void)state;
	struct eas_req r;
	eas_req_init(&r);
	assert_int_equal(hdr(&r, "user-agent", "  Apple-iPhone4C1/1002.142 "), 0);
	assert_string_equal(r.user_agent, "Apple-iPhone4C1/1002.142");
	assert_int_equal(hdr(&r, "X-MS-WL", "WindowsMail"), 0);
	assert_string_equal(r.xmswl, "WindowsMail");
	assert_int_equal(hdr(&r, "MS-ASAcceptMultiPart", "T"), 0);
	assert_int_equal(r.accept_multipart, 1);
	assert_int_equal(hdr(&r, "Host", "x\x01y"), 0); /* not ours: ignored */
	assert_int_equal(hdr(&r, "User-Agent", "again"), -1);
	assert_refused(&r, 400, 0);

	eas_req_init(&r);
	assert_int_equal(hdr(&r, "User-Agent", "a\x01b"), -1);
	eas_req_init(&r);
	assert_int_equal(hdr(&r, "MS-ASAcceptMultiPart", "yes"), -1);

	char ua[600];
	memset(ua, 'x', 512);
	ua[512] = 0;
	eas_req_init(&r);
	assert_int_equal(hdr(&r, "User-Agent", ua), 0);
	ua[512] = 'x';
	ua[513] = 0;
	eas_req_init(&r);
	assert_int_equal(hdr(&r, "User-Agent", ua), -1);
}

/* ---- paths ------------------------------------------------------------------ */

static void test_paths(void **state)
{
	(void)state;
	static const struct {
		const char *p;
		enum eas_path want;
	} cases[] = {
	    {"/Microsoft-Server-ActiveSync", EAS_PATH_EAS},
	    {"/Microsoft-Server-ActiveSync/", EAS_PATH_EAS},
	    {"/Microsoft-Server-ActiveSync/default.eas", EAS_PATH_EAS},
	    {"/microsoft-server-activesync", EAS_PATH_EAS},
	    {"/MICROSOFT-SERVER-ACTIVESYNC?Cmd=Sync", EAS_PATH_EAS},
	    {"//Microsoft-Server-ActiveSync", EAS_PATH_EAS},
	    {"/x/../Microsoft-Server-ActiveSync", EAS_PATH_EAS},
	    {"/./Microsoft-Server-ActiveSync", EAS_PATH_EAS},
	    {"/Microsoft%2DServer-ActiveSync", EAS_PATH_EAS},
	    {"\\Microsoft-Server-ActiveSync", EAS_PATH_OTHER}, /* must start with '/' */
	    {"/autodiscover/autodiscover.xml", EAS_PATH_AUTODISCOVER},
	    {"/Autodiscover/Autodiscover.xml", EAS_PATH_AUTODISCOVER},
	    {"/AutoDiscover", EAS_PATH_AUTODISCOVER},
	    {"/Microsoft-Server-ActiveSyncX", EAS_PATH_OTHER},
	    {"/Microsoft-Server-ActiveSyn", EAS_PATH_OTHER},
	    {"/Microsoft-Server-ActiveSync/../owa", EAS_PATH_OTHER},
	    {"/Microsoft-Server-ActiveSync/%2e%2e/ecp", EAS_PATH_OTHER},
	    {"/Microsoft-Server-ActiveSync\\..\\owa", EAS_PATH_OTHER},
	    {"/Microsoft-Server-ActiveSync%2F..%2Fowa", EAS_PATH_OTHER},
	    {"/Microsoft-Server-ActiveSync/a%2F..%2F..%2Fowa", EAS_PATH_OTHER},
	    {"/Microsoft-Server-ActiveSync/a%5C..%5C..%5Cowa", EAS_PATH_OTHER},
	    {"/Microsoft-Server-ActiveSync/%zz", EAS_PATH_OTHER},
	    {"/Microsoft-Server-ActiveSync/a%00", EAS_PATH_OTHER},
	    {"/owa", EAS_PATH_OTHER},
	    {"/", EAS_PATH_OTHER},
	    {"", EAS_PATH_OTHER},
	    {"*", EAS_PATH_OTHER},
	    {"https://host/Microsoft-Server-ActiveSync", EAS_PATH_OTHER},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum eas_path got = eas_classify_path(cases[i].p, strlen(cases[i].p));
		if (got != cases[i].want)
			fail_msg("%s: got %d want %d", cases[i].p, got, cases[i].want);
	}
	/* deeper than 64 segments: refused as ambiguous */
	char deep[400] = "/Microsoft-Server-ActiveSync";
	for (int i = 0; i < 70; i++)
		strcat(deep, "/a");
	assert_int_equal(eas_classify_path(deep, strlen(deep)), EAS_PATH_OTHER);
	/* the length bounds the read: a prefix of a longer buffer */
	assert_int_equal(eas_classify_path("/Microsoft-Server-ActiveSyncX", 28), EAS_PATH_EAS);
}

/* ---- from a parsed head (what the relay runs) ---------------------------- */

static int from_head(const char *head, struct eas_req *r, enum eas_path *pk)
{
	static struct h1_msg m;
	memset(&m, 0, sizeof(m));
	assert_true(h1_parse_request(head, strlen(head), &m, NULL) > 0);
	*pk = eas_classify_path(m.path.p, m.path.n);
	return eas_request_from_h1(r, &m, *pk, 0);
}

static void test_from_h1(void **state)
{
	struct eas_req r;
	enum eas_path pk;
	/* query and headers together; the Basic user is the identity */
	assert_int_equal(from_head("POST /Microsoft-Server-ActiveSync?Cmd=Sync&User=alice&DeviceId="
				   "ABC123&DeviceType=iPhone HTTP/1.1\r\nHost: mail\r\n"
				   "Authorization: Basic Ym9iOnB3\r\nMS-ASProtocolVersion: 14.1\r\n"
				   "User-Agent: Apple-iPhone4C1/1002.142\r\n\r\n",
				   &r, &pk),
			 0);
	assert_int_equal(pk, EAS_PATH_EAS);
	assert_int_equal(r.cmd, EAS_CMD_SYNC);
	assert_string_equal(r.identity, "bob");
	assert_string_equal(r.device_id, "ABC123");
	assert_int_equal(r.proto, 141);
	assert_string_equal(r.user_agent, "Apple-iPhone4C1/1002.142");
	/* OPTIONS names no device */
	assert_int_equal(
	    from_head("OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: mail\r\n\r\n", &r,
		      &pk),
	    0);
	assert_int_equal(r.cmd, EAS_CMD_OPTIONS);
	/* Autodiscover: no EAS query is read, only the identity matters */
	assert_int_equal(from_head("POST /autodiscover/autodiscover.xml?Cmd=Sync HTTP/1.1\r\n"
				   "Host: mail\r\nAuthorization: Basic Ym9iOnB3\r\n\r\n",
				   &r, &pk),
			 0);
	assert_int_equal(pk, EAS_PATH_AUTODISCOVER);
	assert_int_equal(r.cmd, EAS_CMD_NONE);
	assert_string_equal(r.identity, "bob");
	/* a refusal keeps what was valid, for the log line; the first error wins */
	assert_int_equal(
	    from_head("POST /Microsoft-Server-ActiveSync?Cmd=Ping&User=carol HTTP/1.1\r\n"
		      "Host: mail\r\nMS-ASProtocolVersion: 9.9\r\n\r\n",
		      &r, &pk),
	    -1);
	assert_int_equal(r.cmd, EAS_CMD_PING);
	assert_string_equal(r.identity, "carol");
	assert_int_equal(r.err_status, 400);
	/* two Authorization fields: refused, whatever the gateway would pick */
	assert_int_equal(from_head("POST /Microsoft-Server-ActiveSync?Cmd=Sync&User=a&DeviceId=D1&"
				   "DeviceType=T HTTP/1.1\r\nHost: m\r\nAuthorization: Basic "
				   "Ym9iOnB3\r\nAuthorization: Basic ZXZlOnB3\r\n\r\n",
				   &r, &pk),
			 -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_captures),
	    cmocka_unit_test(test_from_h1),
	    cmocka_unit_test(test_spec_example),
	    cmocka_unit_test(test_every_command_code),
	    cmocka_unit_test(test_every_param_tag),
	    cmocka_unit_test(test_base64_device_id),
	    cmocka_unit_test(test_base64_truncation),
	    cmocka_unit_test(test_base64_refusals),
	    cmocka_unit_test(test_base64_beats_headers),
	    cmocka_unit_test(test_plain_equals_base64),
	    cmocka_unit_test(test_plain_order_and_case),
	    cmocka_unit_test(test_plain_decoding),
	    cmocka_unit_test(test_plain_refusals),
	    cmocka_unit_test(test_real_clients),
	    cmocka_unit_test(test_identifier_refusals),
	    cmocka_unit_test(test_options),
	    cmocka_unit_test(test_header_versions),
	    cmocka_unit_test(test_header_policy_key),
	    cmocka_unit_test(test_header_auth),
	    cmocka_unit_test(test_header_misc),
	    cmocka_unit_test(test_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
