/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_wbxml.c - the WBXML tokenizer, DeviceInformation extraction and
 * bounded gzip inflation, checked against real client captures, libwbxml
 * (via fixtures here and tests/wbxml-diff.sh) and hostile inputs placed
 * right before a PROT_NONE page.
 *
 * Without arguments it runs the cmocka tests. tests/wbxml-diff.sh also uses
 * two helper modes:
 *   test_wbxml --diff-gen DIR N    write DIR/doc-NNNN.xml + .expect (N documents)
 *                                  and the capture bodies as DIR/cap-*.wbxml
 *   test_wbxml --diff-check DIR N  decode DIR/doc-NNNN.wbxml, compare with .expect
 *                                  and the token stream with DIR/doc-NNNN.ref.xml;
 *                                  token streams of DIR/cap-*.wbxml vs .ref.xml
 */
#include "testlib.h"

#include "gzbody.h"
#include "wbxml.h"

#include <glob.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

/* --- buffers that fault on any read past their end ------------------------- */

struct guarded {
	uint8_t *map, *data;
	size_t maplen;
};

static uint8_t *guard_copy(struct guarded *g, const void *src, size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (n + pg - 1) / pg + 1;

	g->maplen = pages * pg;
	g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g->map != MAP_FAILED);
	assert_int_equal(mprotect(g->map + (pages - 1) * pg, pg, PROT_NONE), 0);
	g->data = g->map + (pages - 1) * pg - n;
	if (n)
		memcpy(g->data, src, n);
	return g->data;
}

static void guard_free(struct guarded *g)
{
	munmap(g->map, g->maplen);
}

/* --- a tiny WBXML writer for hand-made documents -------------------------- */

struct wb {
	uint8_t b[16384];
	size_t n;
};

static void wb_put(struct wb *w, const void *p, size_t n)
{
	assert_true(w->n + n <= sizeof(w->b));
	memcpy(w->b + w->n, p, n);
	w->n += n;
}

#define WB(w, ...) wb_put(w, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

static void wb_str(struct wb *w, const char *s)
{
	WB(w, 0x03);
	wb_put(w, s, strlen(s) + 1);
}

static void wb_hdr(struct wb *w)
{
	w->n = 0;
	WB(w, 0x03, 0x01, 0x6A, 0x00);
}

/* Header, Settings page, <Settings><DeviceInformation><Set> open. */
static void wb_di_open(struct wb *w)
{
	wb_hdr(w);
	WB(w, 0x00, 18, 0x45, 0x56, 0x48);
}

static void wb_di_close(struct wb *w)
{
	WB(w, 0x01, 0x01, 0x01);
}

/* Tokenise buf to the end: returns wbxml_next's final value, sets *ntok. */
static int tokenize_all(const uint8_t *buf, size_t len, struct wbxml_reader *r, int *ntok)
{
	struct wbxml_token t;
	int rc;

	*ntok = 0;
	if (wbxml_reader_init(r, buf, len))
		return -1;
	while ((rc = wbxml_next(r, &t)) == 1)
		(*ntok)++;
	return rc;
}

/* Both entry points agree that buf is malformed, with a reason. */
static void expect_malformed(const uint8_t *buf, size_t len, const char *why)
{
	struct guarded g;
	const uint8_t *p = guard_copy(&g, buf, len);
	struct wbxml_reader r;
	struct eas_devinfo di;
	const char *err = NULL;
	int ntok;

	assert_int_equal(tokenize_all(p, len, &r, &ntok), -1);
	assert_non_null(r.err);
	assert_true(r.err_pos <= len);
	if (why && !strstr(r.err, why))
		fail_msg("error \"%s\" does not mention \"%s\"", r.err, why);
	assert_int_equal(wbxml_devinfo(p, len, &di, &err), -1);
	assert_non_null(err);
	guard_free(&g);
}

static int devinfo_guarded(const uint8_t *buf, size_t len, struct eas_devinfo *di)
{
	struct guarded g;
	const char *err = "unset";
	int rc = wbxml_devinfo(guard_copy(&g, buf, len), len, di, &err);

	if (rc >= 0)
		assert_null(err);
	guard_free(&g);
	return rc;
}

/* --- captures ---------------------------------------------------------------- */

struct capture {
	char name[128]; /* file name without directory */
	char *raw;
	const uint8_t *body;
	size_t body_len;
};

static int load_captures(struct capture **out)
{
	char pat[512];
	glob_t gl;

	snprintf(pat, sizeof(pat), "%s/eas-captures/*.http", tl_data_dir());
	assert_int_equal(glob(pat, 0, NULL, &gl), 0);
	struct capture *c = calloc(gl.gl_pathc, sizeof(*c));
	assert_non_null(c);
	for (size_t i = 0; i < gl.gl_pathc; i++) {
		size_t n;
		const char *slash = strrchr(gl.gl_pathv[i], '/');
		snprintf(c[i].name, sizeof(c[i].name), "%s", slash ? slash + 1 : gl.gl_pathv[i]);
		c[i].raw = tl_read_file(gl.gl_pathv[i], &n);
		const char *sep = strstr(c[i].raw, "\r\n\r\n");
		assert_non_null(sep);
		c[i].body = (const uint8_t *)sep + 4;
		c[i].body_len = n - (size_t)(sep + 4 - c[i].raw);
	}
	*out = c;
	int count = (int)gl.gl_pathc;
	globfree(&gl);
	return count;
}

static void free_captures(struct capture *c, int n)
{
	for (int i = 0; i < n; i++)
		free(c[i].raw);
	free(c);
}

/* "754-R12-Provision.http" -> "Provision" (into buf). */
static const char *capture_cmd(const char *name, char *buf, size_t sz)
{
	const char *dash = strrchr(name, '-');
	snprintf(buf, sz, "%s", dash ? dash + 1 : name);
	char *dot = strchr(buf, '.');
	if (dot)
		*dot = 0;
	return buf;
}

static void test_captures_tokenize(void **state)
{
	static const struct {
		const char *cmd;
		int page, tag;
	} roots[] = {
	    {"Sync", 0, 0x05},	     {"FolderSync", 7, 0x16}, {"Ping", 13, 0x05},
	    {"Provision", 14, 0x05}, {"Settings", 18, 0x05},  {"ItemOperations", 20, 0x05},
	    {"SendMail", 21, 0x05},  {"Search", 15, 0x05},    {"ResolveRecipients", 10, 0x05},
	};
	struct capture *c;
	int n = load_captures(&c), with_body = 0;
	(void)state;

	assert_int_equal(n, 129);
	for (int i = 0; i < n; i++) {
		char cmd[128];
		struct wbxml_reader r;
		int ntok, page = -1, tag = -1;
		if (c[i].body_len == 0)
			continue;
		with_body++;
		struct guarded g;
		const uint8_t *p = guard_copy(&g, c[i].body, c[i].body_len);
		int rc = tokenize_all(p, c[i].body_len, &r, &ntok);
		if (rc != 0)
			fail_msg("%s: %s at %zu", c[i].name, r.err, r.err_pos);
		assert_int_equal(r.depth, 0);
		assert_true(ntok >= 2);
		assert_int_equal(r.public_id, 1);
		assert_int_equal(wbxml_root(p, c[i].body_len, &page, &tag), 0);
		capture_cmd(c[i].name, cmd, sizeof(cmd));
		size_t k;
		for (k = 0; k < sizeof(roots) / sizeof(roots[0]); k++)
			if (!strcmp(roots[k].cmd, cmd))
				break;
		if (k == sizeof(roots) / sizeof(roots[0]))
			fail_msg("%s: no expected root for %s", c[i].name, cmd);
		if (page != roots[k].page || tag != roots[k].tag)
			fail_msg("%s: root %d/0x%02x", c[i].name, page, tag);
		guard_free(&g);
	}
	assert_int_equal(with_body, 117); /* the 12 OPTIONS have no body */
	free_captures(c, n);
}

/*
 * The 18 captures with DeviceInformation, values as `wbxml2xml -l ACTIVESYNC
 * -m 0` shows them (checked by hand). The 800-* session ran another build.
 */
static const char *const devinfo_captures[] = {
    "754-R12-Provision.http", "754-R30-Provision.http", "754-R48-Settings.http",
    "760-R13-Provision.http", "760-R31-Provision.http", "760-R49-Settings.http",
    "768-R12-Provision.http", "768-R30-Provision.http", "768-R48-Settings.http",
    "780-R13-Provision.http", "780-R31-Provision.http", "780-R49-Settings.http",
    "788-R12-Provision.http", "788-R30-Provision.http", "788-R48-Settings.http",
    "800-R11-Provision.http", "800-R31-Provision.http", "800-R43-Settings.http",
};

static int is_devinfo_capture(const char *name)
{
	for (size_t i = 0; i < sizeof(devinfo_captures) / sizeof(devinfo_captures[0]); i++)
		if (!strcmp(devinfo_captures[i], name))
			return 1;
	return 0;
}

static void test_captures_devinfo(void **state)
{
	struct capture *c;
	int n = load_captures(&c), found = 0, without = 0;
	(void)state;

	for (int i = 0; i < n; i++) {
		struct eas_devinfo di;
		if (c[i].body_len == 0)
			continue;
		int rc = devinfo_guarded(c[i].body, c[i].body_len, &di);
		if (!is_devinfo_capture(c[i].name)) {
			if (rc != 0)
				fail_msg("%s: rc %d, expected 0", c[i].name, rc);
			assert_int_equal(di.present, 0);
			without++;
			continue;
		}
		if (rc != 1)
			fail_msg("%s: rc %d, expected 1", c[i].name, rc);
		found++;
		assert_string_equal(di.model, "Android SDK built for x86_64");
		assert_string_equal(di.imei, "000000000000000");
		assert_string_equal(di.friendly_name, "sdk_phone64_x86_64");
		assert_string_equal(di.os, strncmp(c[i].name, "800-", 4) ? "Android 12.8752307"
									 : "Android 12.8151367");
		assert_string_equal(di.os_language, "English (United States)");
		assert_string_equal(di.mobile_operator, "T-Mobile");
		assert_string_equal(di.phone_number, "");
		assert_string_equal(di.user_agent, "");
		assert_int_equal(di.present, EAS_DI_MODEL | EAS_DI_IMEI | EAS_DI_FRIENDLY_NAME |
						 EAS_DI_OS | EAS_DI_OS_LANGUAGE |
						 EAS_DI_MOBILE_OPERATOR);
		assert_int_equal(di.truncated, 0);
		assert_int_equal(di.duplicate, 0);
	}
	assert_int_equal(found, 18);
	assert_int_equal(without, 117 - 18);
	free_captures(c, n);
}

static const uint8_t *capture_body(const char *file, char **raw, size_t *len)
{
	char path[512];
	size_t n;

	snprintf(path, sizeof(path), "%s/eas-captures/%s", tl_data_dir(), file);
	*raw = tl_read_file(path, &n);
	const char *sep = strstr(*raw, "\r\n\r\n");
	assert_non_null(sep);
	*len = n - (size_t)(sep + 4 - *raw);
	return (const uint8_t *)sep + 4;
}

/* Every proper prefix of a valid body is an error, and nothing reads past it. */
static void test_truncated_everywhere(void **state)
{
	const char *files[] = {"754-R12-Provision.http", "754-R48-Settings.http",
			       "804-R4-SendMail.http"};
	(void)state;

	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		char *raw;
		size_t len;
		const uint8_t *body = capture_body(files[f], &raw, &len);
		for (size_t cut = 0; cut < len; cut++)
			expect_malformed(body, cut, NULL);
		struct eas_devinfo di;
		assert_true(devinfo_guarded(body, len, &di) >= 0);
		free(raw);
	}
}

/* Random corruption: never a crash or an over-read, always a defined answer. */
static void test_mutations(void **state)
{
	char *raw;
	size_t len;
	const uint8_t *body = capture_body("754-R12-Provision.http", &raw, &len);
	uint8_t buf[512];
	uint64_t x = 0x9E3779B97F4A7C15u;
	int ok = 0, bad = 0;
	(void)state;

	assert_true(len <= sizeof(buf));
	for (int i = 0; i < 20000; i++) {
		memcpy(buf, body, len);
		for (int k = 0; k < 1 + i % 4; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			buf[(x >> 8) % len] = (uint8_t)x;
		}
		struct eas_devinfo di;
		int rc = devinfo_guarded(buf, len - (x >> 40) % 3, &di);
		assert_true(rc >= -1 && rc <= 1);
		if (rc >= 0) {
			ok++;
			for (size_t s = 0; s < sizeof(di.model) && di.model[s]; s++)
				assert_true((unsigned char)di.model[s] >= 0x20 &&
					    di.model[s] != 0x7F);
		} else {
			bad++;
		}
	}
	assert_true(ok > 0 && bad > 0);
	free(raw);
}

/* --- malformed inputs ------------------------------------------------------------ */

static void test_bad_header(void **state)
{
	static const uint8_t good[] = {0x03, 0x01, 0x6A, 0x00, 0x45, 0x01};
	struct wb w;
	struct wbxml_reader r;
	int ntok;
	(void)state;

	for (size_t cut = 0; cut < 4; cut++)
		expect_malformed(good, cut, cut ? "truncated" : "truncated header");
	expect_malformed((const uint8_t[]){0x00, 0x01, 0x6A, 0x00, 0x45, 0x01}, 6, "version");
	expect_malformed((const uint8_t[]){0x04, 0x01, 0x6A, 0x00, 0x45, 0x01}, 6, "version");
	/* public id as a 6-byte mb_u_int32, then one that overflows 32 bits */
	expect_malformed(
	    (const uint8_t[]){0x03, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x6A, 0x00, 0x45, 0x01}, 11,
	    "longer than 5 bytes");
	expect_malformed(
	    (const uint8_t[]){0x03, 0x90, 0x80, 0x80, 0x80, 0x00, 0x6A, 0x00, 0x45, 0x01}, 10,
	    "overflows");
	expect_malformed((const uint8_t[]){0x03, 0x01, 0x04, 0x00, 0x45, 0x01}, 6, "UTF-8");
	expect_malformed((const uint8_t[]){0x03, 0x01, 0x6A, 0x03, 'a', 'b', 0x00, 0x45, 0x01}, 9,
			 "string table");
	expect_malformed((const uint8_t[]){0x03, 0x00, 0x00, 0x6A, 0x00, 0x45, 0x01}, 7,
			 "string table");
	expect_malformed((const uint8_t[]){0x03, 0x01, 0x6A, 0x00}, 4, "no root");

	/* The largest public id is accepted and reported; other versions too. */
	w.n = 0;
	WB(&w, 0x01, 0x8F, 0xFF, 0xFF, 0xFF, 0x7F, 0x6A, 0x00, 0x45, 0x01);
	assert_int_equal(tokenize_all(w.b, w.n, &r, &ntok), 0);
	assert_int_equal(r.public_id, 0xFFFFFFFFu);
	assert_int_equal(r.version, 1);
	/* 106 spelled with a redundant leading 0x80 is still 106 */
	w.n = 0;
	WB(&w, 0x03, 0x01, 0x80, 0x6A, 0x00, 0x45, 0x01);
	assert_int_equal(tokenize_all(w.b, w.n, &r, &ntok), 0);
}

static void test_bad_body(void **state)
{
	(void)state;
#define HDR 0x03, 0x01, 0x6A, 0x00
#define BAD(why, ...)                                                                              \
	expect_malformed((const uint8_t[]){HDR, __VA_ARGS__},                                      \
			 sizeof((const uint8_t[]){HDR, __VA_ARGS__}), why)
	BAD("unknown code page", 0x00, 26, 0x45, 0x01);
	BAD("unknown code page", 0x00, 0xFF, 0x45, 0x01);
	BAD("truncated SWITCH_PAGE", 0x45, 0x00);
	BAD("STR_T", 0x45, 0x83, 0x00, 0x01);
	BAD("ENTITY", 0x45, 0x02, 0x41, 0x01);
	BAD("LITERAL", 0x45, 0x04, 0x00, 0x01);
	BAD("LITERAL", 0x45, 0xC4, 0x00, 0x01, 0x01);
	BAD("PI", 0x45, 0x43, 0x01);
	BAD("EXT", 0x45, 0x40, 'a', 0x00, 0x01);
	BAD("EXT", 0x45, 0x80, 0x00, 0x01);
	BAD("EXT", 0x45, 0xC0, 0x01);
	BAD("attributes", 0x85, 0x01);
	BAD("attributes", 0x45, 0xC5, 0x01, 0x01, 0x01);
	BAD("unterminated STR_I", 0x45, 0x03, 'a', 'b');
	BAD("OPAQUE longer", 0x45, 0xC3, 0x8F, 0xFF, 0xFF, 0xFF, 0x7F, 'a', 0x01);
	BAD("OPAQUE longer", 0x45, 0xC3, 0x05, 'a', 'b', 0x01);
	BAD("truncated mb_u_int32", 0x45, 0xC3, 0x81);
	BAD("longer than 5 bytes", 0x45, 0xC3, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01);
	BAD("END without", 0x01);
	BAD("END without", 0x45, 0x01, 0x01);
	BAD("truncated", 0x45, 0x46);
	BAD("text outside", 0x03, 'a', 0x00, 0x45, 0x01);
	BAD("text outside", 0xC3, 0x00, 0x45, 0x01);
	BAD("second root", 0x45, 0x01, 0x45, 0x01);
	BAD("second root", 0x05, 0x05);
	BAD("after the root", 0x45, 0x01, 0x00, 0x00);
	BAD("attributes", 0x45, 0x01, 0xFF);
#undef BAD
#undef HDR
}

static void nest(struct wb *w, int depth)
{
	wb_hdr(w);
	for (int i = 0; i < depth; i++)
		WB(w, 0x45);
	for (int i = 0; i < depth; i++)
		WB(w, 0x01);
}

static void test_depth_limit(void **state)
{
	struct wb w;
	struct wbxml_reader r;
	struct wbxml_token t;
	int ntok, rc;
	(void)state;

	nest(&w, 32);
	assert_int_equal(tokenize_all(w.b, w.n, &r, &ntok), 0);
	assert_int_equal(ntok, 64);
	nest(&w, 33);
	expect_malformed(w.b, w.n, "too deeply");

	/* The limit is configurable up to the stack size. */
	nest(&w, 64);
	assert_int_equal(wbxml_reader_init(&r, w.b, w.n), 0);
	r.max_depth = 64;
	while ((rc = wbxml_next(&r, &t)) == 1)
		;
	assert_int_equal(rc, 0);
	nest(&w, 65);
	assert_int_equal(wbxml_reader_init(&r, w.b, w.n), 0);
	r.max_depth = 1000; /* clamped to WBXML_DEPTH_HARD_MAX */
	while ((rc = wbxml_next(&r, &t)) == 1)
		;
	assert_int_equal(rc, -1);
	nest(&w, 3);
	assert_int_equal(wbxml_reader_init(&r, w.b, w.n), 0);
	r.max_depth = 2;
	while ((rc = wbxml_next(&r, &t)) == 1)
		;
	assert_int_equal(rc, -1);
}

/* Token kinds, pages, END naming its element, sticky end and error states. */
static void test_token_stream(void **state)
{
	struct wb w;
	struct wbxml_reader r;
	struct wbxml_token t;
	(void)state;

	wb_hdr(&w);
	WB(&w, 0x00, 14, 0x45, 0x00, 18, 0x56, 0x1A); /* <Provision><DeviceInformation><OS/> */
	wb_str(&w, "x");
	/* opaque, switch to Provision, </DeviceInformation>, <Policies/>, </Provision> */
	WB(&w, 0xC3, 0x02, 0x00, 0xFF, 0x00, 14, 0x01, 0x06, 0x01);
	assert_int_equal(wbxml_reader_init(&r, w.b, w.n), 0);
	assert_int_equal(wbxml_next(&r, &t), 1);
	assert_int_equal(t.kind, WBXML_TAG_START);
	assert_int_equal(t.page, 14);
	assert_int_equal(t.tag, 0x05);
	assert_int_equal(t.has_content, 1);
	assert_int_equal(r.depth, 1);
	assert_int_equal(wbxml_next(&r, &t), 1);
	assert_int_equal(t.page, 18);
	assert_int_equal(t.tag, 0x16);
	assert_int_equal(wbxml_next(&r, &t), 1);
	assert_int_equal(t.tag, 0x1A);
	assert_int_equal(t.has_content, 0);
	assert_int_equal(r.depth, 2);
	assert_int_equal(wbxml_next(&r, &t), 1);
	assert_int_equal(t.kind, WBXML_TEXT);
	assert_int_equal(t.len, 1);
	assert_memory_equal(t.data, "x", 1);
	assert_int_equal(wbxml_next(&r, &t), 1);
	assert_int_equal(t.kind, WBXML_OPAQUE);
	assert_int_equal(t.len, 2);
	assert_memory_equal(t.data, "\0\xFF", 2);
	assert_int_equal(wbxml_next(&r, &t), 1);
	assert_int_equal(t.kind, WBXML_TAG_END);
	assert_int_equal(t.page, 18); /* the element's page, not the current one */
	assert_int_equal(t.tag, 0x16);
	assert_int_equal(wbxml_next(&r, &t), 1);
	assert_int_equal(t.page, 14);
	assert_int_equal(t.tag, 0x06);
	assert_int_equal(t.has_content, 0);
	assert_int_equal(wbxml_next(&r, &t), 1);
	assert_int_equal(t.kind, WBXML_TAG_END);
	assert_int_equal(t.tag, 0x05);
	assert_int_equal(r.depth, 0);
	assert_int_equal(wbxml_next(&r, &t), 0);
	assert_int_equal(wbxml_next(&r, &t), 0);

	/* A lone content-less root is a whole document. */
	wb_hdr(&w);
	WB(&w, 0x00, 13, 0x05);
	int page, tag, ntok;
	assert_int_equal(tokenize_all(w.b, w.n, &r, &ntok), 0);
	assert_int_equal(ntok, 1);
	assert_int_equal(wbxml_root(w.b, w.n, &page, &tag), 0);
	assert_int_equal(page, 13);
	assert_int_equal(tag, 0x05);

	/* Errors are sticky and say where. */
	wb_hdr(&w);
	WB(&w, 0x45, 0x02);
	assert_int_equal(wbxml_reader_init(&r, w.b, w.n), 0);
	assert_int_equal(wbxml_next(&r, &t), 1);
	assert_int_equal(wbxml_next(&r, &t), -1);
	assert_int_equal(r.err_pos, 5);
	assert_int_equal(wbxml_next(&r, &t), -1);
	assert_int_equal(wbxml_root(w.b, 4, &page, &tag), -1);
}

/* --- DeviceInformation semantics ----------------------------------------------- */

static void test_devinfo_only_right_elements(void **state)
{
	struct wb w;
	struct eas_devinfo di;
	(void)state;

	/* Model directly under Settings, outside DeviceInformation. */
	wb_hdr(&w);
	WB(&w, 0x00, 18, 0x45, 0x57);
	wb_str(&w, "decoy");
	WB(&w, 0x01, 0x01);
	assert_int_equal(devinfo_guarded(w.b, w.n, &di), 0);
	assert_int_equal(di.present, 0);

	/* Inside Set: Provision's token 0x17 (MaxAttachmentSize), a Model nested in
	 * Get, a Set under Get; then the real OS. */
	wb_di_open(&w);
	WB(&w, 0x00, 14, 0x57);
	wb_str(&w, "decoy1");
	WB(&w, 0x01, 0x00, 18, 0x47, 0x57);
	wb_str(&w, "decoy2");
	WB(&w, 0x01, 0x48, 0x57);
	wb_str(&w, "decoy3");
	WB(&w, 0x01, 0x01, 0x01, 0x5A);
	wb_str(&w, "Android 14");
	WB(&w, 0x01);
	wb_di_close(&w);
	assert_int_equal(devinfo_guarded(w.b, w.n, &di), 1);
	assert_int_equal(di.present, EAS_DI_OS);
	assert_string_equal(di.os, "Android 14");
	assert_string_equal(di.model, "");

	/* Set not directly under DeviceInformation; page-14 token 0x16 is not it. */
	wb_hdr(&w);
	WB(&w, 0x00, 18, 0x45, 0x56, 0x47, 0x48, 0x57);
	wb_str(&w, "decoy");
	WB(&w, 0x01, 0x01, 0x01, 0x01, 0x00, 14, 0x56, 0x00, 18, 0x48, 0x57);
	wb_str(&w, "decoy");
	WB(&w, 0x01, 0x01, 0x01, 0x01);
	assert_int_equal(devinfo_guarded(w.b, w.n, &di), 1);
	assert_int_equal(di.present, 0);

	/* Only the field's own text counts, not its children's. */
	wb_di_open(&w);
	WB(&w, 0x57);
	wb_str(&w, "ab");
	WB(&w, 0x47);
	wb_str(&w, "zz");
	WB(&w, 0x01);
	wb_str(&w, "cd");
	WB(&w, 0x01);
	wb_di_close(&w);
	assert_int_equal(devinfo_guarded(w.b, w.n, &di), 1);
	assert_string_equal(di.model, "abcd");

	/* <DeviceInformation/> counts as found, with nothing in it. */
	wb_hdr(&w);
	WB(&w, 0x00, 18, 0x45, 0x16, 0x01);
	assert_int_equal(devinfo_guarded(w.b, w.n, &di), 1);
	assert_int_equal(di.present, 0);
}

static void test_devinfo_values(void **state)
{
	struct wb w;
	struct eas_devinfo di;
	(void)state;

	wb_di_open(&w);
	WB(&w, 0x57); /* Model in two STR_I and an OPAQUE */
	wb_str(&w, "Pix");
	wb_str(&w, "el ");
	WB(&w, 0xC3, 0x01, '8', 0x01);
	WB(&w, 0x1A); /* <OS/> */
	WB(&w, 0x5C);
	wb_str(&w, "+1 555 0100");
	WB(&w, 0x01, 0x60);
	wb_str(&w, "Outlook-iOS/2.0");
	WB(&w, 0x01, 0x61);
	wb_str(&w, "1");
	WB(&w, 0x01, 0x58);
	wb_str(&w, "356938035643809");
	WB(&w, 0x01, 0x59);
	wb_str(&w, "Kim\xE2\x80\x99s phone");
	WB(&w, 0x01, 0x5B);
	wb_str(&w, "de-DE");
	WB(&w, 0x01, 0x62);
	wb_str(&w, "Telekom.de");
	WB(&w, 0x01, 0x57); /* a second Model: ignored, flagged */
	wb_str(&w, "iPhone");
	WB(&w, 0x01);
	wb_di_close(&w);
	assert_int_equal(devinfo_guarded(w.b, w.n, &di), 1);
	assert_string_equal(di.model, "Pixel 8");
	assert_string_equal(di.os, "");
	assert_string_equal(di.phone_number, "+1 555 0100");
	assert_string_equal(di.user_agent, "Outlook-iOS/2.0");
	assert_string_equal(di.enable_outbound_sms, "1");
	assert_string_equal(di.imei, "356938035643809");
	assert_string_equal(di.friendly_name, "Kim\xE2\x80\x99s phone");
	assert_string_equal(di.os_language, "de-DE");
	assert_string_equal(di.mobile_operator, "Telekom.de");
	assert_int_equal(di.present, 0x1FF);
	assert_int_equal(di.duplicate, EAS_DI_MODEL);
	assert_int_equal(di.truncated, 0);
}

static void test_devinfo_sanitise(void **state)
{
	struct wb w;
	struct eas_devinfo di;
	(void)state;

	wb_di_open(&w);
	WB(&w, 0x57);
	wb_str(&w, "a\tb\x01"
		   "c\x7F"
		   "d\n");
	WB(&w, 0x01, 0x5A); /* C1 control U+0085 is one '?'; bad UTF-8 is '?' per byte */
	wb_str(&w, "x\xC2\x85y\xFF\xFEz\xC0\x80w\xED\xA0\x80v\xF0\x9F\x98\x80\xE6\x97");
	WB(&w, 0x01, 0x58); /* an OPAQUE value may even hold NUL */
	WB(&w, 0xC3, 0x03, '1', 0x00, '2', 0x01);
	wb_di_close(&w);
	assert_int_equal(devinfo_guarded(w.b, w.n, &di), 1);
	assert_string_equal(di.model, "a?b?c?d?");
	assert_string_equal(di.os, "x?y??z??w???v\xF0\x9F\x98\x80??");
	assert_string_equal(di.imei, "1?2");
	assert_int_equal(di.truncated, 0);
}

static void repeat_str(struct wb *w, const char *unit, size_t times)
{
	WB(w, 0x03);
	for (size_t i = 0; i < times; i++)
		wb_put(w, unit, strlen(unit));
	WB(w, 0x00);
}

static int all_units(const char *s, const char *unit, size_t times)
{
	size_t u = strlen(unit);
	if (strlen(s) != u * times)
		return 0;
	for (size_t i = 0; i < times; i++)
		if (memcmp(s + i * u, unit, u))
			return 0;
	return 1;
}

static void test_devinfo_truncation(void **state)
{
	struct wb w;
	struct eas_devinfo di;
	(void)state;

	wb_di_open(&w);
	WB(&w, 0x57);
	repeat_str(&w, "a", 255); /* exactly fits: not truncated */
	WB(&w, 0x01, 0x5A);
	repeat_str(&w, "\xE6\x97\xA5", 100); /* 300 bytes -> 85 whole characters */
	WB(&w, 0x01, 0x5B);
	repeat_str(&w, "\xC3\xBC", 40); /* 64-byte buffer -> 31 characters */
	WB(&w, 0x01, 0x60);
	repeat_str(&w, "\xF0\x9F\x98\x80", 70); /* 280 bytes -> 63 characters */
	WB(&w, 0x01, 0x59);
	repeat_str(&w, "\xC2\x85", 1000); /* 2000 bytes of C1 controls -> 255 '?' */
	WB(&w, 0x01, 0x61);
	repeat_str(&w, "1", 9); /* 8-byte buffer */
	WB(&w, 0x01, 0x58);
	for (int i = 0; i < 5; i++) /* 5 x 1000 bytes in separate strings */
		repeat_str(&w, "9", 1000);
	WB(&w, 0x01);
	wb_di_close(&w);
	assert_int_equal(devinfo_guarded(w.b, w.n, &di), 1);
	assert_true(all_units(di.model, "a", 255));
	assert_true(all_units(di.os, "\xE6\x97\xA5", 85));
	assert_true(all_units(di.os_language, "\xC3\xBC", 31));
	assert_true(all_units(di.user_agent, "\xF0\x9F\x98\x80", 63));
	assert_true(all_units(di.friendly_name, "?", 255));
	assert_true(all_units(di.enable_outbound_sms, "1", 7));
	assert_true(all_units(di.imei, "9", 255));
	assert_int_equal(di.truncated, EAS_DI_OS | EAS_DI_OS_LANGUAGE | EAS_DI_USER_AGENT |
					   EAS_DI_FRIENDLY_NAME | EAS_DI_ENABLE_OUTBOUND_SMS |
					   EAS_DI_IMEI);
}

static void test_dump(void **state)
{
	char *raw, *text = NULL;
	size_t len, tlen = 0;
	const uint8_t *body = capture_body("754-R48-Settings.http", &raw, &len);
	(void)state;

	FILE *f = open_memstream(&text, &tlen);
	assert_non_null(f);
	assert_int_equal(wbxml_dump(f, body, len), 0);
	fclose(f);
	assert_string_equal(text, "wbxml version=0x03 public_id=1\n"
				  "<Settings:Settings>\n"
				  "  <Settings:DeviceInformation>\n"
				  "    <Settings:Set>\n"
				  "      <Settings:Model>\n"
				  "        \"Android SDK built for x86_64\"\n"
				  "      </Settings:Model>\n"
				  "      <Settings:IMEI>\n"
				  "        \"000000000000000\"\n"
				  "      </Settings:IMEI>\n"
				  "      <Settings:FriendlyName>\n"
				  "        \"sdk_phone64_x86_64\"\n"
				  "      </Settings:FriendlyName>\n"
				  "      <Settings:OS>\n"
				  "        \"Android 12.8752307\"\n"
				  "      </Settings:OS>\n"
				  "      <Settings:OSLanguage>\n"
				  "        \"English (United States)\"\n"
				  "      </Settings:OSLanguage>\n"
				  "      <Settings:MobileOperator>\n"
				  "        \"T-Mobile\"\n"
				  "      </Settings:MobileOperator>\n"
				  "    </Settings:Set>\n"
				  "  </Settings:DeviceInformation>\n"
				  "</Settings:Settings>\n");
	free(text);
	text = NULL;
	f = open_memstream(&text, &tlen);
	assert_int_equal(wbxml_dump(f, body, len - 1), -1);
	fclose(f);
	assert_non_null(strstr(text, "error at 145: truncated"));
	free(text);
	assert_null(wbxml_tag_name(7, 0x16));
	assert_null(wbxml_page_name(26));
	assert_string_equal(wbxml_page_name(25), "Find");
	assert_string_equal(wbxml_tag_name(14, 0x3B), "AccountOnlyRemoteWipe");
	free(raw);
}

/* --- gzbody --------------------------------------------------------------------- */

/* Compress with zlib: wbits 16+15 gzip, 15 zlib, -15 raw deflate. */
static uint8_t *squeeze(const uint8_t *in, size_t n, int wbits, size_t *outlen)
{
	z_stream zs;
	size_t cap = n + n / 100 + 64;
	uint8_t *out = malloc(cap);

	memset(&zs, 0, sizeof(zs));
	assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)n;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	*outlen = zs.total_out;
	deflateEnd(&zs);
	return out;
}

static int inflate_guarded(const uint8_t *in, size_t n, int gz, uint8_t *out, size_t cap,
			   size_t *olen, const char **err)
{
	struct guarded g;
	int rc = gzbody_inflate(guard_copy(&g, in, n), n, gz, out, cap, olen, err);
	guard_free(&g);
	return rc;
}

static void test_gzbody_roundtrip(void **state)
{
	char *raw;
	size_t len, zlen, olen;
	const uint8_t *body = capture_body("754-R12-Provision.http", &raw, &len);
	static const int wbits[] = {16 + 15, 15, -15};
	uint8_t out[4096];
	const char *err;
	struct eas_devinfo di;
	(void)state;

	for (size_t k = 0; k < 3; k++) {
		uint8_t *z = squeeze(body, len, wbits[k], &zlen);
		int gz = k == 0 ? GZBODY_GZIP : GZBODY_DEFLATE;
		assert_int_equal(inflate_guarded(z, zlen, gz, out, sizeof(out), &olen, &err), 0);
		assert_null(err);
		assert_int_equal(olen, len);
		assert_memory_equal(out, body, len);
		assert_int_equal(wbxml_devinfo(out, olen, &di, &err), 1);
		assert_string_equal(di.model, "Android SDK built for x86_64");
		/* exactly the size fits; one byte less is refused, not truncated */
		assert_int_equal(inflate_guarded(z, zlen, gz, out, len, &olen, &err), 0);
		assert_int_equal(olen, len);
		assert_int_equal(inflate_guarded(z, zlen, gz, out, len - 1, &olen, &err), -1);
		assert_non_null(strstr(err, "limit"));
		assert_int_equal(olen, 0);
		/* every truncation is refused */
		for (size_t cut = 0; cut < zlen; cut++)
			assert_int_equal(inflate_guarded(z, cut, gz, out, sizeof(out), &olen, &err),
					 -1);
		free(z);
	}
	/* gzip of nothing is an empty body; two gzip members concatenate */
	uint8_t *z = squeeze(body, 0, 16 + 15, &zlen);
	assert_int_equal(inflate_guarded(z, zlen, GZBODY_GZIP, out, 0, &olen, &err), 0);
	assert_int_equal(olen, 0);
	free(z);
	size_t z1len, z2len;
	uint8_t *z1 = squeeze(body, 40, 16 + 15, &z1len);
	uint8_t *z2 = squeeze(body + 40, len - 40, 16 + 15, &z2len);
	uint8_t both[1024];
	memcpy(both, z1, z1len);
	memcpy(both + z1len, z2, z2len);
	assert_int_equal(
	    inflate_guarded(both, z1len + z2len, GZBODY_GZIP, out, sizeof(out), &olen, &err), 0);
	assert_int_equal(olen, len);
	assert_memory_equal(out, body, len);
	/* junk after the stream is refused */
	both[z1len] = 'x';
	assert_int_equal(
	    inflate_guarded(both, z1len + 1, GZBODY_GZIP, out, sizeof(out), &olen, &err), -1);
	free(z1);
	free(z2);
	z = squeeze(body, len, 15, &zlen);
	z = realloc(z, zlen + 1);
	z[zlen] = 0;
	assert_int_equal(
	    inflate_guarded(z, zlen + 1, GZBODY_DEFLATE, out, sizeof(out), &olen, &err), -1);
	assert_non_null(strstr(err, "after the end"));
	free(z);
	free(raw);
}

static void test_gzbody_bomb(void **state)
{
	size_t n = 1 << 20, zlen, olen;
	uint8_t *zeros = calloc(1, n), *out = malloc(64 * 1024);
	const char *err = NULL;
	(void)state;

	uint8_t *z = squeeze(zeros, n, 16 + 15, &zlen);
	assert_true(zlen < 2048);
	assert_int_equal(inflate_guarded(z, zlen, GZBODY_GZIP, out, 64 * 1024, &olen, &err), -1);
	assert_string_equal(err, "inflated body larger than the limit");
	assert_int_equal(olen, 0);
	free(z);
	z = squeeze(zeros, n, -15, &zlen);
	assert_int_equal(inflate_guarded(z, zlen, GZBODY_DEFLATE, out, 64 * 1024, &olen, &err), -1);
	assert_string_equal(err, "inflated body larger than the limit");
	free(z);
	/* not compressed at all */
	assert_int_equal(
	    inflate_guarded((const uint8_t *)"hello", 5, GZBODY_GZIP, out, 64, &olen, &err), -1);
	assert_int_equal(inflate_guarded(NULL, 0, GZBODY_DEFLATE, out, 64, &olen, &err), -1);
	free(zeros);
	free(out);
}

static void test_gzbody_coding(void **state)
{
	(void)state;
	assert_int_equal(gzbody_coding("gzip", 4), GZBODY_GZIP);
	assert_int_equal(gzbody_coding(" GZip ", 6), GZBODY_GZIP);
	assert_int_equal(gzbody_coding("x-gzip", 6), GZBODY_GZIP);
	assert_int_equal(gzbody_coding("Deflate", 7), GZBODY_DEFLATE);
	assert_int_equal(gzbody_coding("identity", 8), GZBODY_IDENTITY);
	assert_int_equal(gzbody_coding("", 0), GZBODY_IDENTITY);
	assert_int_equal(gzbody_coding("br", 2), GZBODY_UNKNOWN);
	assert_int_equal(gzbody_coding("gzip, deflate", 13), GZBODY_UNKNOWN);
	assert_int_equal(gzbody_coding("gzipx", 4), GZBODY_GZIP); /* n bounds the value */
}

/* --- expectations and token streams shared by fixtures and the diff -------------- */

struct expect_field {
	const char *key; /* key in .expect files, also the XML element name */
	unsigned bit;
	size_t off, size;
};

#define EXPECT_FIELD(name, b, m)                                                                   \
	{                                                                                          \
		name, b, offsetof(struct eas_devinfo, m), sizeof(((struct eas_devinfo *)0)->m)     \
	}

static const struct expect_field expect_fields[] = {
    EXPECT_FIELD("Model", EAS_DI_MODEL, model),
    EXPECT_FIELD("IMEI", EAS_DI_IMEI, imei),
    EXPECT_FIELD("FriendlyName", EAS_DI_FRIENDLY_NAME, friendly_name),
    EXPECT_FIELD("OS", EAS_DI_OS, os),
    EXPECT_FIELD("OSLanguage", EAS_DI_OS_LANGUAGE, os_language),
    EXPECT_FIELD("PhoneNumber", EAS_DI_PHONE_NUMBER, phone_number),
    EXPECT_FIELD("UserAgent", EAS_DI_USER_AGENT, user_agent),
    EXPECT_FIELD("MobileOperator", EAS_DI_MOBILE_OPERATOR, mobile_operator),
    EXPECT_FIELD("EnableOutboundSMS", EAS_DI_ENABLE_OUTBOUND_SMS, enable_outbound_sms),
};
#define N_EXPECT_FIELDS (sizeof(expect_fields) / sizeof(expect_fields[0]))

/* Growable string. */
struct sbuf {
	char *s;
	size_t n, cap;
};

static void sb_add(struct sbuf *b, const void *p, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->s = realloc(b->s, b->cap);
		if (!b->s)
			abort();
	}
	memcpy(b->s + b->n, p, n);
	b->n += n;
	b->s[b->n] = 0;
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct sbuf b = {0};
	char chunk[4096];
	size_t n;

	if (!f)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sb_add(&b, chunk, n);
	fclose(f);
	sb_add(&b, "", 0);
	*len = b.n;
	return b.s;
}

/*
 * Compare what wbxml_devinfo found with a .expect file ("result=N",
 * "present=0x..", "truncated=0x..", "duplicate=0x..", "<Field>=<value>").
 * Returns the number of mismatches, described on stderr.
 */
static int check_expect(const char *name, const char *expect, int rc, const struct eas_devinfo *di)
{
	int bad = 0;
	char *copy = strdup(expect), *save = NULL;

	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = 0;
		const char *v = eq + 1;
		unsigned long num = strtoul(v, NULL, 0);
		if (!strcmp(line, "result") && (long)rc != (long)num)
			bad++, fprintf(stderr, "%s: result %d, expected %s\n", name, rc, v);
		else if (!strcmp(line, "present") && di->present != num)
			bad++, fprintf(stderr, "%s: present 0x%x, expected %s\n", name, di->present,
				       v);
		else if (!strcmp(line, "truncated") && di->truncated != num)
			bad++, fprintf(stderr, "%s: truncated 0x%x, expected %s\n", name,
				       di->truncated, v);
		else if (!strcmp(line, "duplicate") && di->duplicate != num)
			bad++, fprintf(stderr, "%s: duplicate 0x%x, expected %s\n", name,
				       di->duplicate, v);
		for (size_t k = 0; k < N_EXPECT_FIELDS; k++) {
			const char *got = (const char *)di + expect_fields[k].off;
			if (!strcmp(line, expect_fields[k].key) && strcmp(got, v))
				bad++, fprintf(stderr,
					       "%s: %s\n  got      \"%s\"\n  expected \"%s\"\n",
					       name, line, got, v);
		}
	}
	free(copy);
	return bad;
}

/* Token stream line format: "+Page:Name", "-", "=text" (\\ and \n escaped). */
static void ts_text(struct sbuf *ts, const uint8_t *s, size_t n)
{
	sb_str(ts, "=");
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\')
			sb_str(ts, "\\\\");
		else if (s[i] == '\n')
			sb_str(ts, "\\n");
		else
			sb_add(ts, s + i, 1);
	}
	sb_str(ts, "\n");
}

static void ts_start(struct sbuf *ts, const char *ns, const char *name)
{
	sb_str(ts, "+");
	sb_str(ts, ns);
	sb_str(ts, ":");
	sb_str(ts, name);
	sb_str(ts, "\n");
}

/*
 * Our decoder's token stream; adjacent text tokens are merged, as in XML.
 * *opaque (if non-NULL) counts OPAQUE tokens, which libwbxml shows in base64.
 */
static int ts_from_wbxml(struct sbuf *ts, const uint8_t *buf, size_t len, int *opaque)
{
	struct wbxml_reader r;
	struct wbxml_token t;
	struct sbuf text = {0};
	char unk[16];
	int rc;

	if (wbxml_reader_init(&r, buf, len))
		return -1;
	while ((rc = wbxml_next(&r, &t)) == 1) {
		if (t.kind == WBXML_OPAQUE && opaque)
			(*opaque)++;
		if (t.kind == WBXML_TEXT || t.kind == WBXML_OPAQUE) {
			sb_add(&text, t.data, t.len);
			continue;
		}
		if (text.n)
			ts_text(ts, (const uint8_t *)text.s, text.n), text.n = 0;
		if (t.kind == WBXML_TAG_END) {
			sb_str(ts, "-\n");
			continue;
		}
		const char *nm = wbxml_tag_name(t.page, t.tag);
		snprintf(unk, sizeof(unk), "0x%02X", (unsigned)t.tag);
		ts_start(ts, wbxml_page_name(t.page), nm ? nm : unk);
		if (!t.has_content)
			sb_str(ts, "-\n");
	}
	free(text.s);
	return rc;
}

static void xml_unescape(struct sbuf *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '&') {
			sb_add(out, s + i, 1);
			continue;
		}
		const char *semi = memchr(s + i, ';', n - i);
		if (!semi)
			abort();
		size_t k = (size_t)(semi - (s + i));
		static const char *const ents[][2] = {
		    {"&amp", "&"}, {"&lt", "<"}, {"&gt", ">"}, {"&quot", "\""}, {"&apos", "'"}};
		int done = 0;
		for (size_t e = 0; e < 5 && !done; e++)
			if (strlen(ents[e][0]) == k && !memcmp(s + i, ents[e][0], k))
				sb_str(out, ents[e][1]), done = 1;
		if (!done && s[i + 1] == '#') {
			unsigned long cp = s[i + 2] == 'x' ? strtoul(s + i + 3, NULL, 16)
							   : strtoul(s + i + 2, NULL, 10);
			char u[4];
			size_t ul = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
			static const unsigned char lead[] = {0, 0, 0xC0, 0xE0, 0xF0};
			for (size_t b = ul; b-- > 1; cp >>= 6)
				u[b] = (char)(0x80 | (cp & 0x3F));
			u[0] = (char)(lead[ul] | cp);
			sb_add(out, u, ul);
			done = 1;
		}
		if (!done)
			abort();
		i += k;
	}
}

/*
 * The token stream of wbxml2xml's compact output (no whitespace between
 * elements; default namespaces via xmlns="Page:" only). Returns 0, -1 if it
 * is not the XML this reader understands.
 */
static int ts_from_xml(struct sbuf *ts, const char *x)
{
	char ns[WBXML_DEPTH_HARD_MAX + 2][32] = {{0}};
	int depth = 0;

	while (*x) {
		if (*x != '<') {
			const char *lt = strchr(x, '<');
			if (!lt)
				lt = x + strlen(x);
			if (depth > 0) {
				struct sbuf t = {0};
				xml_unescape(&t, x, (size_t)(lt - x));
				ts_text(ts, (const uint8_t *)t.s, t.n);
				free(t.s);
			}
			x = lt;
			continue;
		}
		const char *gt = strchr(x, '>');
		if (!gt)
			return -1;
		if (x[1] == '?' || x[1] == '!') {
			x = gt + 1;
			continue;
		}
		if (x[1] == '/') {
			sb_str(ts, "-\n");
			depth--;
			x = gt + 1;
			continue;
		}
		size_t nl = strcspn(x + 1, " />");
		char name[64];
		if (nl >= sizeof(name) || depth > WBXML_DEPTH_HARD_MAX)
			return -1;
		memcpy(name, x + 1, nl);
		name[nl] = 0;
		memcpy(ns[depth + 1], ns[depth], sizeof(ns[0]));
		const char *xn = strstr(x, "xmlns=\"");
		if (xn && xn < gt) {
			size_t l = strcspn(xn + 7, ":\"");
			if (l >= sizeof(ns[0]))
				return -1;
			memcpy(ns[depth + 1], xn + 7, l);
			ns[depth + 1][l] = 0;
		}
		/* MS-ASWBXML's own table (and so libwbxml) spells Settings 0x2B this way. */
		if (!strcmp(name, "ihsManagementInformation"))
			snprintf(name, sizeof(name), "RightsManagementInformation");
		ts_start(ts, ns[depth + 1], name);
		if (gt[-1] == '/')
			sb_str(ts, "-\n");
		else
			depth++;
		x = gt + 1;
	}
	return depth == 0 ? 0 : -1;
}

/* Print the first differing line of two token streams. */
static void ts_report(const char *name, const char *mine, const char *ref)
{
	size_t i = 0, line = 1, bol = 0;
	while (mine[i] && mine[i] == ref[i]) {
		if (mine[i] == '\n')
			line++, bol = i + 1;
		i++;
	}
	fprintf(stderr,
		"%s: token streams differ at line %zu\n  ours:     %.*s\n  libwbxml: %.*s\n", name,
		line, (int)strcspn(mine + bol, "\n"), mine + bol, (int)strcspn(ref + bol, "\n"),
		ref + bol);
}

/*
 * Check one document: stem.wbxml against stem.expect and stem.ref.xml.
 * Returns the number of problems (0 = all agree).
 */
static int check_document(const char *stem)
{
	char path[600];
	size_t blen, elen, xlen;
	int bad = 0;

	snprintf(path, sizeof(path), "%s.wbxml", stem);
	char *bin = slurp(path, &blen);
	snprintf(path, sizeof(path), "%s.expect", stem);
	char *exp = slurp(path, &elen);
	snprintf(path, sizeof(path), "%s.ref.xml", stem);
	char *ref = slurp(path, &xlen);
	if (!bin || !exp || !ref) {
		fprintf(stderr, "%s: missing .wbxml, .expect or .ref.xml\n", stem);
		bad = 1;
		goto out;
	}
	struct eas_devinfo di;
	const char *err = NULL;
	int rc = wbxml_devinfo((const uint8_t *)bin, blen, &di, &err);
	if (rc < 0)
		fprintf(stderr, "%s: %s\n", stem, err);
	bad += check_expect(stem, exp, rc, &di);
	struct sbuf a = {0}, b = {0};
	sb_add(&a, "", 0);
	sb_add(&b, "", 0);
	if (ts_from_wbxml(&a, (const uint8_t *)bin, blen, NULL) != 0 || ts_from_xml(&b, ref) != 0) {
		fprintf(stderr, "%s: cannot build a token stream\n", stem);
		bad++;
	} else if (strcmp(a.s, b.s)) {
		ts_report(stem, a.s, b.s);
		bad++;
	}
	free(a.s);
	free(b.s);
out:
	free(bin);
	free(exp);
	free(ref);
	return bad;
}

static void test_fixtures(void **state)
{
	char pat[512];
	glob_t gl;
	(void)state;

	snprintf(pat, sizeof(pat), "%s/wbxml/*.wbxml", tl_data_dir());
	assert_int_equal(glob(pat, 0, NULL, &gl), 0);
	assert_true(gl.gl_pathc >= 5);
	for (size_t i = 0; i < gl.gl_pathc; i++) {
		char stem[512];
		snprintf(stem, sizeof(stem), "%.*s", (int)(strlen(gl.gl_pathv[i]) - 6),
			 gl.gl_pathv[i]);
		if (check_document(stem))
			fail_msg("%s disagrees with its expectations", stem);
	}
	globfree(&gl);
}

/* --- generator for the differential test ---------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* splitmix64: deterministic, seeded per document */
	uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
	return z ^ (z >> 31);
}

static unsigned rnd_below(unsigned n)
{
	return (unsigned)(rnd() % n);
}

static void put_utf8(struct sbuf *b, uint32_t cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80)
		u[0] = (char)cp, n = 1;
	else if (cp < 0x800)
		u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
	else if (cp < 0x10000)
		u[0] = (char)(0xE0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
		u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
	else
		u[0] = (char)(0xF0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
	sb_add(b, u, n);
}

/* A random code point; never whitespace at the ends of a value (XML tools trim it). */
static uint32_t rnd_cp(int edge, int allow_ctl)
{
	for (;;) {
		unsigned c = rnd_below(100);
		uint32_t cp;
		if (c < 55)
			cp = 0x21 + rnd_below(0x7F - 0x21);
		else if (c < 65)
			cp = ' ';
		else if (c < 68)
			cp = allow_ctl ? (rnd_below(2) ? '\t' : '\n') : 'x';
		else if (c < 80)
			cp = 0xA0 + rnd_below(0x800 - 0xA0);
		else if (c < 93)
			cp = 0x800 + rnd_below(0xFFFE - 0x800);
		else
			cp = 0x10000 + rnd_below(0x110000 - 0x10000);
		if (cp >= 0xD800 && cp <= 0xDFFF)
			continue;
		if (edge && (cp == ' ' || cp == '\t' || cp == '\n' || cp == 0xA0 || cp == 0x85))
			continue;
		return cp;
	}
}

/*
 * Append a random value for a field of buffer size `size` to the XML (escaped)
 * and compute, independently of the decoder, what it must extract: control
 * characters become '?', and the value stops before the first character that
 * would not fit in size - 1 bytes.
 */
static void gen_value(struct sbuf *xml, struct sbuf *want, size_t size, int *truncated)
{
	static const char *const real[] = {
	    "Android SDK built for x86_64",
	    "iPhone15C3",
	    "iOS 17.2.1 21C66",
	    "Android 14.UP1A.231005.007",
	    "SM-S918B",
	    "de-DE",
	    "T-Mobile & Co <DE>",
	    "Outlook-iOS-Android/1.0",
	    "Pixel 8 Pro",
	    "Kim\xE2\x80\x99s iPhone",
	};
	unsigned kind = rnd_below(100);

	*truncated = 0;
	if (size <= 8 && kind < 80) { /* EnableOutboundSMS is a boolean in practice */
		sb_str(xml, kind < 40 ? "0" : "1");
		sb_str(want, kind < 40 ? "0" : "1");
		return;
	}
	if (kind < 20) {
		const char *v0 = real[rnd_below(sizeof(real) / sizeof(real[0]))];
		for (const char *v = v0; *v; v++) {
			if (*v == '&' || *v == '<' || *v == '>')
				sb_str(xml, *v == '&' ? "&amp;" : *v == '<' ? "&lt;" : "&gt;");
			else
				sb_add(xml, v, 1);
		}
		/* realistic values all fit in the smallest text field (64) */
		sb_str(want, v0);
		return;
	}
	kind = rnd_below(100);
	size_t n = kind < 5    ? 0
		   : kind < 40 ? 1 + rnd_below(20)
		   : kind < 80 ? 20 + rnd_below(100)
			       : 200 + rnd_below(500);
	int allow_ctl = rnd_below(4) == 0, full = 0;
	size_t used = 0;

	for (size_t i = 0; i < n; i++) {
		uint32_t cp = rnd_cp(i == 0 || i + 1 == n, allow_ctl);
		if (cp == '&')
			sb_str(xml, "&amp;");
		else if (cp == '<')
			sb_str(xml, "&lt;");
		else if (cp == '>')
			sb_str(xml, "&gt;");
		else if (cp == '"' && rnd_below(2))
			sb_str(xml, "&quot;");
		else
			put_utf8(xml, cp);
		size_t w = cp == '\t' || cp == '\n' ? 1
			   : cp < 0x80		    ? 1
			   : cp < 0x800		    ? 2
			   : cp < 0x10000	    ? 3
						    : 4;
		if (full || used + w > size - 1) {
			full = 1;
			*truncated = 1;
			continue;
		}
		if (cp == '\t' || cp == '\n')
			sb_str(want, "?");
		else
			put_utf8(want, cp);
		used += w;
	}
}

struct gen_doc {
	struct sbuf want[N_EXPECT_FIELDS];
	unsigned present, truncated, duplicate;
	int found;
};

/* Elements in the Settings namespace are written with prefix p ("" or "s:"). */
static void gen_set(struct sbuf *x, struct gen_doc *d, const char *p, const char *prov_decoy)
{
	size_t order[N_EXPECT_FIELDS];

	for (size_t k = 0; k < N_EXPECT_FIELDS; k++)
		order[k] = k;
	for (size_t k = N_EXPECT_FIELDS; k > 1; k--) {
		size_t j = rnd_below((unsigned)k), t = order[k - 1];
		order[k - 1] = order[j], order[j] = t;
	}
	sb_str(x, "<"), sb_str(x, p), sb_str(x, "Set>");
	for (size_t i = 0; i < N_EXPECT_FIELDS; i++) {
		const struct expect_field *f = &expect_fields[order[i]];
		if (rnd_below(100) < 40)
			continue;
		if (rnd_below(100) < 8) { /* a Model nested one level too deep */
			sb_str(x, "<"), sb_str(x, p), sb_str(x, "Get><"), sb_str(x, p);
			sb_str(x, "Model>decoy</"), sb_str(x, p), sb_str(x, "Model></");
			sb_str(x, p), sb_str(x, "Get>");
		}
		if (rnd_below(100) < 8)
			sb_str(x, prov_decoy); /* Provision token 0x17, same number as Model */
		struct sbuf scratch = {0}, *want = &d->want[order[i]];
		int trunc;
		if (d->present & f->bit) {
			d->duplicate |= f->bit;
			want = &scratch; /* first value wins */
		} else {
			d->present |= f->bit;
		}
		sb_str(x, "<"), sb_str(x, p), sb_str(x, f->key), sb_str(x, ">");
		gen_value(x, want, f->size, &trunc);
		sb_str(x, "</"), sb_str(x, p), sb_str(x, f->key), sb_str(x, ">");
		if (want != &scratch && trunc)
			d->truncated |= f->bit;
		free(scratch.s);
	}
	sb_str(x, "</"), sb_str(x, p), sb_str(x, "Set>");
}

static void gen_devinfo(struct sbuf *x, struct gen_doc *d, const char *open, const char *p,
			const char *prov_decoy)
{
	d->found = 1;
	sb_str(x, open);
	if (rnd_below(100) < 10) /* an empty Set before the real one */
		sb_str(x, "<"), sb_str(x, p), sb_str(x, "Set/>");
	gen_set(x, d, p, prov_decoy);
	sb_str(x, "</"), sb_str(x, p), sb_str(x, "DeviceInformation>");
}

static void gen_settings(struct sbuf *x, struct gen_doc *d)
{
	static const char decoy[] = "<MaxAttachmentSize xmlns=\"Provision:\">1</MaxAttachmentSize>";

	sb_str(x, "<Settings xmlns=\"Settings:\">");
	if (rnd_below(2))
		sb_str(x, "<Oof><Get><BodyType>Text</BodyType></Get></Oof>");
	if (rnd_below(100) < 15)
		sb_str(x, "<Model>outside DeviceInformation</Model>");
	if (rnd_below(100) < 90)
		gen_devinfo(x, d, "<DeviceInformation>", "", decoy);
	if (d->found && rnd_below(100) < 10) /* a second block: fields repeat, first wins */
		gen_devinfo(x, d, "<DeviceInformation>", "", decoy);
	if (rnd_below(2))
		sb_str(x, "<UserInformation><Get/></UserInformation>");
	sb_str(x, "</Settings>");
}

static void gen_provision(struct sbuf *x, struct gen_doc *d)
{
	int prefixed = rnd_below(2);

	sb_str(x, prefixed ? "<Provision xmlns=\"Provision:\" xmlns:s=\"Settings:\">"
			   : "<Provision xmlns=\"Provision:\">");
	if (rnd_below(100) < 90) {
		if (prefixed)
			gen_devinfo(x, d, "<s:DeviceInformation>",
				    "s:", "<MaxAttachmentSize>2</MaxAttachmentSize>");
		else
			gen_devinfo(
			    x, d, "<DeviceInformation xmlns=\"Settings:\">", "",
			    "<MaxAttachmentSize xmlns=\"Provision:\">2</MaxAttachmentSize>");
	}
	sb_str(x, "<Policies><Policy><PolicyType>MS-EAS-Provisioning-WBXML</PolicyType>");
	if (rnd_below(2))
		sb_str(x, "<PolicyKey>1307812345</PolicyKey><Status>1</Status>");
	sb_str(x, "</Policy></Policies></Provision>");
}

static int write_file(const char *path, const char *s, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(s, 1, n, f) != n || fclose(f)) {
		perror(path);
		return -1;
	}
	return 0;
}

static int diff_gen(const char *dir, int n)
{
	for (int i = 0; i < n; i++) {
		struct sbuf x = {0}, e = {0};
		struct gen_doc d;
		char path[600], line[64];

		memset(&d, 0, sizeof(d));
		rng_state = 0x5EED0000u + (uint64_t)i;
		sb_str(&x,
		       "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE ActiveSync PUBLIC "
		       "\"-//MICROSOFT//DTD ActiveSync//EN\" \"http://www.microsoft.com/\">\n");
		if (i % 2)
			gen_provision(&x, &d);
		else
			gen_settings(&x, &d);
		snprintf(line, sizeof(line), "result=%d\npresent=0x%x\ntruncated=0x%x\n", d.found,
			 d.present, d.truncated);
		sb_str(&e, line);
		snprintf(line, sizeof(line), "duplicate=0x%x\n", d.duplicate);
		sb_str(&e, line);
		for (size_t k = 0; k < N_EXPECT_FIELDS; k++) {
			if (!(d.present & expect_fields[k].bit))
				continue;
			sb_str(&e, expect_fields[k].key), sb_str(&e, "=");
			sb_add(&e, d.want[k].s ? d.want[k].s : "", d.want[k].n), sb_str(&e, "\n");
			free(d.want[k].s);
		}
		snprintf(path, sizeof(path), "%s/doc-%04d.xml", dir, i);
		int rc = write_file(path, x.s, x.n);
		snprintf(path, sizeof(path), "%s/doc-%04d.expect", dir, i);
		rc |= write_file(path, e.s, e.n);
		free(x.s);
		free(e.s);
		if (rc)
			return 1;
	}
	return 0;
}

/* Write the body of every capture that has one to DIR/cap-<name>.wbxml. */
static int diff_extract_captures(const char *dir)
{
	char pat[512], path[700];
	glob_t gl;

	snprintf(pat, sizeof(pat), "%s/eas-captures/*.http", tl_data_dir());
	if (glob(pat, 0, NULL, &gl)) {
		fprintf(stderr, "wbxml-diff: no captures at %s\n", pat);
		return 1;
	}
	for (size_t i = 0; i < gl.gl_pathc; i++) {
		size_t n;
		char *raw = slurp(gl.gl_pathv[i], &n);
		const char *sep = raw ? strstr(raw, "\r\n\r\n") : NULL;
		const char *base = strrchr(gl.gl_pathv[i], '/');
		int rc = 0;
		if (sep && (size_t)(sep + 4 - raw) < n) {
			snprintf(path, sizeof(path), "%s/cap-%.*s.wbxml", dir,
				 (int)strcspn(base + 1, "."), base + 1);
			rc = write_file(path, sep + 4, n - (size_t)(sep + 4 - raw));
		}
		free(raw);
		if (rc || !sep) {
			globfree(&gl);
			return 1;
		}
	}
	globfree(&gl);
	return 0;
}

/*
 * Compare token streams of the real captures with libwbxml's decoding where
 * we can: bodies whose elements all have names in our tables and that carry
 * no OPAQUE data (libwbxml prints it in base64).
 */
static int diff_check_captures(const char *dir)
{
	char pat[600];
	glob_t gl;
	int compared = 0, skipped = 0, bad = 0;

	snprintf(pat, sizeof(pat), "%s/cap-*.wbxml", dir);
	if (glob(pat, 0, NULL, &gl))
		return 0;
	for (size_t i = 0; i < gl.gl_pathc; i++) {
		char ref_path[700];
		size_t blen, xlen;
		int opaque = 0;
		snprintf(ref_path, sizeof(ref_path), "%.*s.ref.xml",
			 (int)(strlen(gl.gl_pathv[i]) - 6), gl.gl_pathv[i]);
		char *bin = slurp(gl.gl_pathv[i], &blen), *ref = slurp(ref_path, &xlen);
		struct sbuf a = {0}, b = {0};
		sb_add(&a, "", 0);
		sb_add(&b, "", 0);
		if (!bin || !ref || ts_from_wbxml(&a, (const uint8_t *)bin, blen, &opaque) ||
		    ts_from_xml(&b, ref)) {
			fprintf(stderr, "%s: cannot decode\n", gl.gl_pathv[i]);
			bad++;
		} else if (opaque || strstr(a.s, ":0x")) {
			skipped++;
		} else if (strcmp(a.s, b.s)) {
			ts_report(gl.gl_pathv[i], a.s, b.s);
			bad++;
		} else {
			compared++;
		}
		free(a.s), free(b.s), free(bin), free(ref);
	}
	globfree(&gl);
	printf("wbxml-diff: %d capture bodies agree, %d skipped (pages without name tables or "
	       "OPAQUE), %d disagree\n",
	       compared, skipped, bad);
	return bad;
}

static int diff_check(const char *dir, int n)
{
	int bad_docs = 0, with_di = 0, truncs = 0;

	for (int i = 0; i < n; i++) {
		char stem[600], path[700];
		size_t len;
		snprintf(stem, sizeof(stem), "%s/doc-%04d", dir, i);
		if (check_document(stem))
			bad_docs++;
		snprintf(path, sizeof(path), "%s.expect", stem);
		char *e = slurp(path, &len);
		if (e && strstr(e, "result=1"))
			with_di++;
		if (e && !strstr(e, "truncated=0x0\n"))
			truncs++;
		free(e);
	}
	printf("wbxml-diff: %d documents (%d with DeviceInformation, %d with truncated fields), "
	       "%d disagree\n",
	       n, with_di, truncs, bad_docs);
	return bad_docs || diff_check_captures(dir) ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--diff-gen"))
		return diff_gen(argv[2], atoi(argv[3])) || diff_extract_captures(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "--diff-check"))
		return diff_check(argv[2], atoi(argv[3]));
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_captures_tokenize),
	    cmocka_unit_test(test_captures_devinfo),
	    cmocka_unit_test(test_truncated_everywhere),
	    cmocka_unit_test(test_mutations),
	    cmocka_unit_test(test_bad_header),
	    cmocka_unit_test(test_bad_body),
	    cmocka_unit_test(test_depth_limit),
	    cmocka_unit_test(test_token_stream),
	    cmocka_unit_test(test_devinfo_only_right_elements),
	    cmocka_unit_test(test_devinfo_values),
	    cmocka_unit_test(test_devinfo_sanitise),
	    cmocka_unit_test(test_devinfo_truncation),
	    cmocka_unit_test(test_dump),
	    cmocka_unit_test(test_gzbody_roundtrip),
	    cmocka_unit_test(test_gzbody_bomb),
	    cmocka_unit_test(test_gzbody_coding),
	    cmocka_unit_test(test_fixtures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
