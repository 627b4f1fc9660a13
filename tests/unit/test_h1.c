/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_h1.c - the strict HTTP/1.1 parser: real EAS captures, every refusal
 * rule, dribbled and pipelined input, responses, the chunked scanner, and
 * reads past `len` caught by a PROT_NONE guard page.
 */
#include "testlib.h"

#include "h1.h"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------ */

static void sig_add(char *out, size_t outsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sig_add(char *out, size_t outsz, const char *fmt, ...)
{
	size_t used = strlen(out);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out + used, outsz - used, fmt, ap);
	va_end(ap);
}

/* A slice as "offset+length" from base, so results from copies compare equal. */
static void sig_str(char *out, size_t outsz, const char *base, struct h1_str s)
{
	if (!s.p)
		sig_add(out, outsz, " -");
	else
		sig_add(out, outsz, " %td+%zu", s.p - base, s.n);
}

/* Everything a caller can observe of a parse, position-independent. */
static void msg_sig(int rc, const struct h1_msg *m, const char *base, char *out, size_t outsz)
{
	out[0] = 0;
	sig_add(out, outsz, "rc=%d", rc);
	if (rc < 0) {
		sig_add(out, outsz, " err=%s pos=%zu st=%d", m->err, m->err_pos, m->err_status);
		return;
	}
	if (rc == 0)
		return;
	sig_add(out, outsz, " hl=%zu fl=%x cl=%llu me=%d st=%d mi=%d n=%u", m->head_len, m->flags,
		(unsigned long long)m->content_length, (int)m->method, m->status, m->minor,
		m->nhdr);
	sig_str(out, outsz, base, m->method_str);
	sig_str(out, outsz, base, m->target);
	sig_str(out, outsz, base, m->path);
	sig_str(out, outsz, base, m->query);
	sig_str(out, outsz, base, m->host);
	sig_str(out, outsz, base, m->reason);
	for (unsigned i = 0; i < m->nhdr; i++) {
		sig_str(out, outsz, base, m->hdr[i].name);
		sig_str(out, outsz, base, m->hdr[i].value);
	}
}

static int parse_any(int resp, int head, const char *b, size_t n, struct h1_msg *m,
		     const struct h1_limits *lim)
{
	return resp ? h1_parse_response(b, n, head, m, lim) : h1_parse_request(b, n, m, lim);
}

/*
 * Parse s in one piece into *m (slices point into s), then again one byte at
 * a time, each prefix in an exactly-sized heap copy (ASan sees a read past
 * the prefix) and at a new address (the resume state must be position-free).
 * Both must agree on everything. Returns the one-piece result.
 */
static int parse_both(int resp, int head, const char *s, size_t n, const struct h1_limits *lim,
		      struct h1_msg *m)
{
	static char sa[16384], sb[16384];
	static struct h1_msg m2;
	memset(m, 0, sizeof(*m));
	int rc = parse_any(resp, head, s, n, m, lim);
	msg_sig(rc, m, s, sa, sizeof(sa));

	memset(&m2, 0, sizeof(m2));
	int rc2 = 0;
	for (size_t k = 1; k <= n && rc2 == 0; k++) {
		char *b = malloc(k);
		assert_non_null(b);
		memcpy(b, s, k);
		rc2 = parse_any(resp, head, b, k, &m2, lim);
		if (rc2 != 0 || k == n)
			msg_sig(rc2, &m2, b, sb, sizeof(sb));
		free(b);
	}
	if (n == 0)
		msg_sig(rc2, &m2, s, sb, sizeof(sb));
	if (strcmp(sa, sb) != 0)
		fail_msg("one piece: %s\ndribbled:  %s\ninput: %.*s", sa, sb, (int)n, s);
	return rc;
}

static int req(const char *s, struct h1_msg *m)
{
	return parse_both(0, 0, s, strlen(s), NULL, m);
}

static int resp(const char *s, int head, struct h1_msg *m)
{
	return parse_both(1, head, s, strlen(s), NULL, m);
}

static int str_is(struct h1_str s, const char *lit)
{
	return s.p && s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

static const char *hval(const struct h1_msg *m, const char *name, char *out, size_t outsz)
{
	const struct h1_header *h = h1_find(m, name);
	if (!h)
		return NULL;
	snprintf(out, outsz, "%.*s", (int)h->value.n, h->value.p);
	return out;
}

static unsigned framing(unsigned flags)
{
	return flags & (H1_F_CHUNKED | H1_F_CLEN | H1_F_EOF_BODY | H1_F_NO_BODY);
}

/* ---- EAS captures ------------------------------------------------------------- */

struct cap {
	char file[128], method[16], cmd[32], ua[128], asv[16];
	unsigned long body;
};

static int read_manifest(struct cap *caps, int max)
{
	char path[512];
	size_t len;
	snprintf(path, sizeof(path), "%s/eas-captures/MANIFEST.tsv", tl_data_dir());
	char *txt = tl_read_file(path, &len);
	int n = 0;
	char *save = NULL;
	for (char *line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[7] = {0};
		int nf = 0;
		for (char *p = line; p && nf < 7; nf++) {
			f[nf] = p;
			p = strchr(p, '\t');
			if (p)
				*p++ = 0;
		}
		if (nf < 6 || strcmp(f[0], "file") == 0)
			continue;
		assert_true(n < max);
		struct cap *c = &caps[n++];
		snprintf(c->file, sizeof(c->file), "%s", f[0]);
		snprintf(c->method, sizeof(c->method), "%s", f[1]);
		snprintf(c->cmd, sizeof(c->cmd), "%s", f[2]);
		snprintf(c->ua, sizeof(c->ua), "%s", f[3]);
		snprintf(c->asv, sizeof(c->asv), "%s", f[4]);
		c->body = strtoul(f[5], NULL, 10);
	}
	free(txt);
	return n;
}

static char *read_capture(const char *file, size_t *len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/eas-captures/%s", tl_data_dir(), file);
	return tl_read_file(path, len);
}

/* The Host value found the naive way, independent of the parser. */
static void naive_host(const char *buf, char *out, size_t outsz)
{
	const char *h = strstr(buf, "\r\nHost: ");
	assert_non_null(h);
	h += 8;
	const char *e = strstr(h, "\r\n");
	snprintf(out, outsz, "%.*s", (int)(e - h), h);
}

static void test_captures(void **state)
{
	static struct cap caps[160];
	static struct h1_msg m;
	char v[256], want[256];
	(void)state;
	int n = read_manifest(caps, 160);
	assert_int_equal(n, 129);
	for (int i = 0; i < n; i++) {
		const struct cap *c = &caps[i];
		size_t len;
		char *buf = read_capture(c->file, &len);
		const char *eoh = memmem(buf, len, "\r\n\r\n", 4);
		assert_non_null(eoh);
		size_t body_off = (size_t)(eoh - buf) + 4;

		int rc = parse_both(0, 0, buf, len, NULL, &m);
		if (rc <= 0)
			fail_msg("%s: rc=%d err=%s at %zu", c->file, rc, m.err, m.err_pos);
		assert_int_equal(rc, body_off);
		assert_int_equal(m.head_len, body_off);
		assert_int_equal(len - body_off, c->body);
		assert_int_equal(m.minor, 1);
		assert_true(str_is(m.method_str, c->method));
		assert_true(str_is(m.path, "/Microsoft-Server-ActiveSync"));
		if (strcmp(c->method, "POST") == 0) {
			assert_int_equal(m.method, H1_M_POST);
			assert_int_equal(framing(m.flags), H1_F_CLEN);
			assert_int_equal(m.content_length, c->body);
			snprintf(want, sizeof(want), "Cmd=%s&", c->cmd);
			assert_non_null(m.query.p);
			assert_true(m.query.n > strlen(want));
			assert_memory_equal(m.query.p, want, strlen(want));
		} else {
			assert_int_equal(m.method, H1_M_OPTIONS);
			assert_int_equal(framing(m.flags), H1_F_NO_BODY);
			assert_int_equal(len, body_off);
		}
		naive_host(buf, want, sizeof(want));
		assert_string_equal(want, "dev.fd");
		assert_true(str_is(m.host, want));
		assert_string_equal(hval(&m, "user-agent", v, sizeof(v)), c->ua);
		if (c->asv[0])
			assert_string_equal(hval(&m, "MS-ASProtocolVersion", v, sizeof(v)), c->asv);
		else
			assert_null(h1_find(&m, "MS-ASProtocolVersion"));
		assert_false(m.flags & H1_F_CONN_CLOSE);
		free(buf);
	}
}

/* Three captures back to back in one buffer, parsed in sequence. */
static void test_pipelined(void **state)
{
	static const char *files[] = {"754-R106-Sync.http", "754-R21-Options.http",
				      "804-R4-SendMail.http"};
	static struct h1_msg m;
	char *all = NULL;
	size_t total = 0, lens[3];
	(void)state;
	for (int i = 0; i < 3; i++) {
		char *b = read_capture(files[i], &lens[i]);
		all = realloc(all, total + lens[i]);
		assert_non_null(all);
		memcpy(all + total, b, lens[i]);
		total += lens[i];
		free(b);
	}
	size_t off = 0;
	for (int i = 0; i < 3; i++) {
		memset(&m, 0, sizeof(m));
		int rc = h1_parse_request(all + off, total - off, &m, NULL);
		assert_true(rc > 0);
		size_t body = (m.flags & H1_F_CLEN) ? (size_t)m.content_length : 0;
		assert_int_equal((size_t)rc + body, lens[i]);
		off += (size_t)rc + body;
	}
	assert_int_equal(off, total);

	/* Same msg reused after a complete parse: no stale resume state. */
	const char *two = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /bb HTTP/1.1\r\nHost: y\r\n\r\n";
	int rc = h1_parse_request(two, strlen(two), &m, NULL);
	assert_int_equal(rc, 28);
	rc = h1_parse_request(two + 28, strlen(two) - 28, &m, NULL);
	assert_int_equal(rc, 29);
	assert_true(str_is(m.target, "/bb"));
	assert_true(str_is(m.host, "y"));
	free(all);
}

/* ---- refusals ----------------------------------------------------------------- */

struct bad {
	const char *in;
	int status;
	const char *err; /* substring of m.err */
};

#define RQ(hdrs) "POST /x HTTP/1.1\r\nHost: a\r\n" hdrs "\r\n"

static const struct bad bad_requests[] = {
    /* framing ambiguities */
    {RQ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400, "with Transfer-Encoding"},
    {RQ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400, "with Transfer-Encoding"},
    {RQ("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n"), 400, "with Transfer-Encoding"},
    {RQ("Content-Length: 5\r\nContent-Length: 5\r\n"), 400, "duplicate Content-Length"},
    {RQ("Content-Length: 5\r\ncontent-length: 6\r\n"), 400, "duplicate Content-Length"},
    {RQ("Content-Length: 5, 5\r\n"), 400, "invalid Content-Length"},
    {RQ("Content-Length: 5a\r\n"), 400, "invalid Content-Length"},
    {RQ("Content-Length: -5\r\n"), 400, "invalid Content-Length"},
    {RQ("Content-Length: +5\r\n"), 400, "invalid Content-Length"},
    {RQ("Content-Length: 0x10\r\n"), 400, "invalid Content-Length"},
    {RQ("Content-Length: 5 5\r\n"), 400, "invalid Content-Length"},
    {RQ("Content-Length:\r\n"), 400, "empty Content-Length"},
    {RQ("Content-Length:   \r\n"), 400, "empty Content-Length"},
    {RQ("Content-Length: 18446744073709551616\r\n"), 400, "too large"},
    {RQ("Content-Length: 9223372036854775808\r\n"), 400, "too large"},
    {RQ("Transfer-Encoding: gzip\r\n"), 400, "not the final"},
    {RQ("Transfer-Encoding: chunked, gzip\r\n"), 400, "not the final"},
    {RQ("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), 400, "not the final"},
    {RQ("Transfer-Encoding: chunked, chunked\r\n"), 400, "more than once"},
    {RQ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400, "more than once"},
    {RQ("Transfer-Encoding: foo, chunked\r\n"), 501, "unknown transfer-coding"},
    {RQ("Transfer-Encoding: identity\r\n"), 501, "unknown transfer-coding"},
    {RQ("Transfer-Encoding: xchunked\r\n"), 501, "unknown transfer-coding"},
    {RQ("Transfer-Encoding: chunked;a=b\r\n"), 400, "parameters"},
    {RQ("Transfer-Encoding: \"chunked\"\r\n"), 400, "invalid Transfer-Encoding"},
    {RQ("Transfer-Encoding:\r\n"), 400, "empty Transfer-Encoding"},
    {RQ("Transfer-Encoding: ,\r\n"), 400, "empty Transfer-Encoding"},
    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "HTTP/1.0"},
    /* head syntax */
    {RQ("X-A: b\r\n c\r\n"), 400, "obs-fold"},
    {RQ("X-A: b\r\n\tc\r\n"), 400, "obs-fold"},
    {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "obs-fold"},
    {"GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bare LF"},
    {RQ("X-A: b\n"), 400, "bare LF"},
    {"GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bare LF"},
    {"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare LF"},
    {RQ("X-A: b\rc\r\n"), 400, "bare CR"},
    {"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400, "bare CR"},
    {"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400, "bare CR"},
    {RQ("X-A: \x01\r\n"), 400, "control character"},
    {RQ("X-A: a\x1b[0m\r\n"), 400, "control character"},
    {RQ("X-A: a\x7f\r\n"), 400, "control character"},
    {"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "control character"},
    {RQ("Host : a\r\n"), 400, "whitespace between field name and colon"},
    {RQ("X-A\t: a\r\n"), 400, "whitespace between field name and colon"},
    {RQ(": a\r\n"), 400, "empty field name"},
    {RQ("X(A): a\r\n"), 400, "invalid character in field name"},
    {RQ("X@A: a\r\n"), 400, "invalid character in field name"},
    {RQ("X\xc3\xa9: a\r\n"), 400, "invalid character in field name"},
    {RQ("NoColon\r\n"), 400, "without colon"},
    /* request line */
    {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "empty request target"},
    {"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400, "HTTP version"},
    {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "HTTP version"},
    {"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "method"},
    {" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "request line"},
    {"GET /\r\nHost: a\r\n\r\n", 400, "missing HTTP version"},
    {"GET\r\nHost: a\r\n\r\n", 400, "request line"},
    {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "method"},
    {"GET / http/1.1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"},
    {"GET / HTTP/1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"},
    {"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"},
    {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version"},
    {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version"},
    {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "unsupported HTTP version"},
    {"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505, "unsupported HTTP version"},
    {"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"},
    {"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "asterisk-form"},
    {"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405, "CONNECT"},
    {"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid character in request target"},
    {"GET /a<b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid character in request target"},
    {"GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid character in request target"},
    {"GET /a?{} HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid character in request target"},
    {"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid character in request target"},
    {"GET /a%2 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "percent-encoding"},
    {"GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400, "percent-encoding"},
    {"GET /a?b=% HTTP/1.1\r\nHost: a\r\n\r\n", 400, "percent-encoding"},
    {"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid request target"},
    {"GET http:/// HTTP/1.1\r\nHost: a\r\n\r\n", 400, "authority"},
    {"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "authority"},
    {"GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "does not match"},
    {"GET http://a/ HTTP/1.1\r\n\r\n", 400, "missing Host"},
    /* dot-segments: raw, %2e in any case and mix, ended by '/', %2F, %5C or the end */
    {"GET /../a HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    {"GET /a/.. HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    {"GET /a/..?q HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    {"GET /a/./b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    {"GET /a/. HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    {"GET /%2e%2e/a HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    {"GET /%2E%2e/a HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    {"GET /.%2E/a HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    {"GET /%2e./a HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    {"GET /%2e/a HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    {"GET /a/..%2fb HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    {"GET /a%5c..%5Cb HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    {"GET /a%2F%2e%2E HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    {"GET http://a/x/../b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "dot-segment"},
    /* Host */
    {"GET / HTTP/1.1\r\n\r\n", 400, "missing Host"},
    {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "duplicate Host"},
    {"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400, "duplicate Host"},
    {"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400, "duplicate Host"},
    {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host"},
    {"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", 400, "invalid Host"},
    {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid Host"},
    {"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, "invalid Host"},
    {"GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", 400, "invalid Host"},
    {"GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", 400, "invalid Host"},
    {"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, "invalid Host"},
    {"GET / HTTP/1.1\r\nHost: []\r\n\r\n", 400, "invalid Host"},
    {"GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400, "invalid Host"},
    {"GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", 400, "invalid Host"},
    {"GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", 400, "invalid Host"},
    /* Expect, Connection */
    {RQ("Expect: 200-ok\r\n"), 417, "expectation"},
    {RQ("Expect: 100-continue, foo\r\n"), 417, "expectation"},
    {RQ("Connection: close, content-length\r\n"), 400, "Connection names"},
    {RQ("Connection: Host\r\n"), 400, "Connection names"},
    {RQ("Connection: close;x\r\n"), 400, "invalid Connection option"},
};

static void test_request_refusals(void **state)
{
	static struct h1_msg m;
	(void)state;
	for (size_t i = 0; i < sizeof(bad_requests) / sizeof(bad_requests[0]); i++) {
		const struct bad *b = &bad_requests[i];
		int rc = parse_both(0, 0, b->in, strlen(b->in), NULL, &m);
		if (rc != -1 || m.err_status != b->status || !strstr(m.err, b->err))
			fail_msg("case %zu: rc=%d status=%d err=%s, want %d \"%s\"\ninput: %s", i,
				 rc, m.err_status, rc < 0 ? m.err : "-", b->status, b->err, b->in);
		assert_true(m.err_pos <= strlen(b->in));
	}
}

/* NUL bytes cannot live in the string table above. */
static void test_nul_in_head(void **state)
{
	static struct h1_msg m;
	static const char v[] = "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n";
	static const char t[] = "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n";
	(void)state;
	assert_int_equal(parse_both(0, 0, v, sizeof(v) - 1, NULL, &m), -1);
	assert_int_equal(m.err_status, 400);
	assert_int_equal(m.err_pos, 31);
	assert_int_equal(parse_both(0, 0, t, sizeof(t) - 1, NULL, &m), -1);
	assert_int_equal(m.err_pos, 5);
}

/* Garbage is refused as soon as its line is complete, not at end of head. */
static void test_early_refusal(void **state)
{
	struct h1_msg m = {0};
	(void)state;
	const char *s = "\x16\x03\x01\x02\x00\x01";
	assert_int_equal(h1_parse_request(s, strlen(s), &m, NULL), -1);
	memset(&m, 0, sizeof(m));
	s = "GET / HTTP/2.0\r\n";
	assert_int_equal(h1_parse_request(s, strlen(s), &m, NULL), -1);
	assert_int_equal(m.err_status, 505);
	memset(&m, 0, sizeof(m));
	s = "GET / HTTP/1.1\r\nHost : a\r\n";
	assert_int_equal(h1_parse_request(s, strlen(s), &m, NULL), -1);
	memset(&m, 0, sizeof(m));
	s = "GET / HTTP/1.1\r\nHost: a\r\n"; /* valid so far: need more */
	assert_int_equal(h1_parse_request(s, strlen(s), &m, NULL), 0);
}

/* ---- limits ------------------------------------------------------------------- */

/* "GET /aaa HTTP/1.1", Host, then nhdr fields "Xnnn: vvv": the request line
 * is target_len + 13 bytes, each field line vlen + 6. */
static char *build_head(size_t target_len, unsigned nhdr, size_t vlen, size_t *out_len)
{
	size_t cap = target_len + nhdr * (vlen + 16) + 64;
	char *b = malloc(cap);
	assert_non_null(b);
	size_t n = (size_t)sprintf(b, "GET /");
	memset(b + n, 'a', target_len - 1);
	n += target_len - 1;
	n += (size_t)sprintf(b + n, " HTTP/1.1\r\nHost: h\r\n");
	for (unsigned i = 0; i < nhdr; i++) {
		n += (size_t)sprintf(b + n, "X%03u: ", i);
		memset(b + n, 'v', vlen);
		n += vlen;
		n += (size_t)sprintf(b + n, "\r\n");
	}
	n += (size_t)sprintf(b + n, "\r\n");
	*out_len = n;
	return b;
}

static void test_line_limits(void **state)
{
	static struct h1_msg m;
	struct h1_limits lim = {.max_head = 400, .max_line = 100, .max_headers = 4};
	size_t n;
	char *b;
	(void)state;

	/* request line of exactly max_line bytes passes, one more is 414 */
	b = build_head(100 - 13, 0, 0, &n);
	assert_int_equal(parse_both(0, 0, b, n, &lim, &m), (int)n);
	free(b);
	b = build_head(100 - 12, 0, 0, &n);
	assert_int_equal(parse_both(0, 0, b, n, &lim, &m), -1);
	assert_int_equal(m.err_status, 414);
	assert_int_equal(m.err_pos, 100);
	free(b);

	/* header line of exactly max_line bytes passes, one more is 431 */
	b = build_head(1, 1, 100 - 6, &n);
	assert_int_equal(parse_both(0, 0, b, n, &lim, &m), (int)n);
	free(b);
	b = build_head(1, 1, 100 - 5, &n);
	assert_int_equal(parse_both(0, 0, b, n, &lim, &m), -1);
	assert_int_equal(m.err_status, 431);
	assert_non_null(strstr(m.err, "header line too long"));
	free(b);

	/* Host + 3 fields = max_headers passes, one more is 431 */
	b = build_head(1, 3, 1, &n);
	assert_int_equal(parse_both(0, 0, b, n, &lim, &m), (int)n);
	assert_int_equal(m.nhdr, 4);
	free(b);
	b = build_head(1, 4, 1, &n);
	assert_int_equal(parse_both(0, 0, b, n, &lim, &m), -1);
	assert_int_equal(m.err_status, 431);
	assert_non_null(strstr(m.err, "too many"));
	free(b);
}

static void test_head_limits(void **state)
{
	static struct h1_msg m;
	size_t n;
	char *b;
	(void)state;

	/* head of exactly max_head passes; one byte more is 431 */
	struct h1_limits lim = {.max_head = 0};
	b = build_head(1, 3, 1, &n);
	lim.max_head = n;
	assert_int_equal(parse_both(0, 0, b, n, &lim, &m), (int)n);
	lim.max_head = n - 1;
	assert_int_equal(parse_both(0, 0, b, n, &lim, &m), -1);
	assert_int_equal(m.err_status, 431);
	assert_int_equal(m.err_pos, n - 1);
	assert_non_null(strstr(m.err, "head too large"));
	/* an incomplete head within the limit is "need more" */
	memset(&m, 0, sizeof(m));
	assert_int_equal(h1_parse_request(b, n - 1, &m, &lim), 0);
	free(b);

	/* the defaults: 32 KiB head, 96 fields */
	b = build_head(1, 95, 300, &n);
	assert_true(n < 32 * 1024);
	assert_int_equal(parse_both(0, 0, b, n, NULL, &m), (int)n);
	assert_int_equal(m.nhdr, 96);
	free(b);
	b = build_head(1, 96, 10, &n);
	assert_int_equal(parse_both(0, 0, b, n, NULL, &m), -1);
	assert_int_equal(m.err_status, 431);
	free(b);
	b = build_head(1, 90, 400, &n);
	assert_true(n > 32 * 1024);
	assert_int_equal(parse_both(0, 0, b, n, NULL, &m), -1);
	assert_int_equal(m.err_status, 431);
	assert_int_equal(m.err_pos, 32 * 1024);
	free(b);

	/* max_headers above the array size is clamped */
	struct h1_limits huge = {.max_headers = 1000, .max_head = 1 << 20};
	b = build_head(1, 96, 10, &n);
	assert_int_equal(parse_both(0, 0, b, n, &huge, &m), -1);
	free(b);

	/* Content-Length over max_body is 413 */
	struct h1_limits body = {.max_body = 100};
	const char *s = RQ("Content-Length: 100\r\n");
	assert_int_equal(parse_both(0, 0, s, strlen(s), &body, &m), (int)strlen(s));
	s = RQ("Content-Length: 101\r\n");
	assert_int_equal(parse_both(0, 0, s, strlen(s), &body, &m), -1);
	assert_int_equal(m.err_status, 413);
}

/* A 32 KiB head dribbled one byte per call must not be rescanned each time. */
static void test_dribble_linear(void **state)
{
	static struct h1_msg m;
	size_t n;
	(void)state;
	char *b = build_head(1, 95, 330, &n);
	assert_true(n > 31 * 1024 && n <= 32 * 1024);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int round = 0; round < 4; round++) {
		memset(&m, 0, sizeof(m));
		int rc = 0;
		for (size_t k = 1; k <= n; k++) {
			rc = h1_parse_request(b, k, &m, NULL);
			if (k < n)
				assert_int_equal(rc, 0);
		}
		assert_int_equal(rc, (int)n);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	/* 4 x 32 KiB linear is milliseconds even under ASan; quadratic is seconds */
	assert_true(secs < 1.0);
	free(b);
}

/* ---- accepted variants -------------------------------------------------------- */

static void test_request_variants(void **state)
{
	static struct h1_msg m;
	char v[64];
	(void)state;

	/* mixed-case names, "Chunked", OWS trimmed, obs-text allowed in values */
	const char *s = "PUT /up?x=1&y=%2F HTTP/1.1\r\nhOsT:ex.com:8080\r\n"
			"TRANSFER-ENCODING:  Chunked \t\r\nX-Name: caf\xc3\xa9\r\nX-Empty:\r\n\r\n";
	assert_int_equal(req(s, &m), (int)strlen(s));
	assert_int_equal(m.method, H1_M_PUT);
	assert_int_equal(framing(m.flags), H1_F_CHUNKED);
	assert_false(m.flags & H1_F_TE_CODED);
	assert_true(str_is(m.host, "ex.com:8080"));
	assert_true(str_is(m.path, "/up"));
	assert_true(str_is(m.query, "x=1&y=%2F"));
	assert_string_equal(hval(&m, "transfer-encoding", v, sizeof(v)), "Chunked");
	assert_string_equal(hval(&m, "x-empty", v, sizeof(v)), "");
	assert_int_equal(m.nhdr, 4);

	/* gzip before chunked: allowed, payload is coded */
	s = RQ("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n");
	assert_true(req(s, &m) > 0);
	assert_int_equal(m.flags & (H1_F_CHUNKED | H1_F_TE_CODED), H1_F_CHUNKED | H1_F_TE_CODED);

	/* leading empty lines are skipped and counted in head_len */
	s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_int_equal(req(s, &m), (int)strlen(s));
	assert_ptr_equal(m.method_str.p, s + 4);
	assert_int_equal(framing(m.flags), H1_F_NO_BODY);

	/* no query vs empty query; largest Content-Length; leading zeros */
	s = RQ("Content-Length: 9223372036854775807\r\n");
	assert_true(req(s, &m) > 0);
	assert_null(m.query.p);
	assert_int_equal(m.content_length, UINT64_C(9223372036854775807));
	assert_int_equal(framing(m.flags), H1_F_CLEN);
	s = "GET /? HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_true(req(s, &m) > 0);
	assert_non_null(m.query.p);
	assert_int_equal(m.query.n, 0);
	s = RQ("Content-Length: 007\r\n");
	assert_true(req(s, &m) > 0);
	assert_int_equal(m.content_length, 7);

	/* HTTP/1.0: Host optional, close unless keep-alive, Expect ignored */
	s = "GET / HTTP/1.0\r\n\r\n";
	assert_true(req(s, &m) > 0);
	assert_int_equal(m.minor, 0);
	assert_true(m.flags & H1_F_CONN_CLOSE);
	assert_int_equal(m.host.n, 0);
	s = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
	assert_true(req(s, &m) > 0);
	assert_int_equal(m.flags & (H1_F_CONN_CLOSE | H1_F_CONN_KEEPALIVE), H1_F_CONN_KEEPALIVE);
	s = "GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n";
	assert_true(req(s, &m) > 0);
	assert_false(m.flags & H1_F_EXPECT_CONTINUE);

	/* HTTP/1.1: close option, Expect, Upgrade */
	s = RQ("Connection: foo, close\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n");
	assert_true(req(s, &m) > 0);
	assert_true(m.flags & H1_F_CONN_CLOSE);
	assert_true(m.flags & H1_F_EXPECT_CONTINUE);
	s = RQ("Upgrade: websocket\r\n");
	assert_true(req(s, &m) > 0);
	assert_false(m.flags & H1_F_UPGRADE);
	s = RQ("Upgrade: websocket\r\nConnection: Upgrade\r\n");
	assert_true(req(s, &m) > 0);
	assert_true(m.flags & H1_F_UPGRADE);
	assert_false(m.flags & H1_F_CONN_CLOSE);
}

static void test_request_targets(void **state)
{
	static struct h1_msg m;
	(void)state;

	/* asterisk-form and absolute-form */
	const char *s = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_true(req(s, &m) > 0);
	assert_true(str_is(m.path, "*"));
	s = "POST HTTPS://Mail.Example.com/Microsoft-Server-ActiveSync?Cmd=Ping HTTP/1.1\r\n"
	    "Host: mail.example.com\r\nContent-Length: 0\r\n\r\n";
	assert_true(req(s, &m) > 0);
	assert_true(m.flags & H1_F_ABS_FORM);
	assert_true(str_is(m.path, "/Microsoft-Server-ActiveSync"));
	assert_true(str_is(m.query, "Cmd=Ping"));
	assert_true(str_is(m.host, "Mail.Example.com"));
	s = "GET http://[::1]:8080 HTTP/1.0\r\n\r\n";
	assert_true(req(s, &m) > 0);
	assert_true(str_is(m.host, "[::1]:8080"));
	assert_int_equal(m.path.n, 0);
	/* every RFC 3986 path/query character, EAS base64 queries */
	s = "GET /a-._~!$&'()*+,;=:@/%20?q=/?:@%41 HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_true(req(s, &m) > 0);
	assert_true(str_is(m.query, "q=/?:@%41"));
	s = "POST /Microsoft-Server-ActiveSync?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l HTTP/1.1\r\n"
	    "Host: a\r\nContent-Length: 0\r\n\r\n";
	assert_true(req(s, &m) > 0);
	/* dots that are not dot-segments, and dot-segments in the query only */
	s = "GET /.../a..b/.c/d./%2e%2e%2e/a.%2E.b HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_true(req(s, &m) > 0);
	s = "GET /a?x=/../b&y=. HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_true(req(s, &m) > 0);
	assert_true(str_is(m.path, "/a"));

	/* methods: unknown token is OTHER, case-sensitive */
	s = "PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_true(req(s, &m) > 0);
	assert_int_equal(m.method, H1_M_OTHER);
	assert_true(str_is(m.method_str, "PROPFIND"));
	s = "get / HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_true(req(s, &m) > 0);
	assert_int_equal(m.method, H1_M_OTHER);
	s = "DELETE / HTTP/1.1\r\nHost: a\r\n\r\n";
	assert_true(req(s, &m) > 0);
	assert_int_equal(m.method, H1_M_DELETE);

	/* Host forms */
	s = "GET / HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n";
	assert_true(req(s, &m) > 0);
	s = "GET / HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n";
	assert_true(req(s, &m) > 0);
	s = "GET / HTTP/1.1\r\nHost:\r\n\r\n";
	assert_true(req(s, &m) > 0);
	assert_non_null(h1_find(&m, "host"));
	assert_int_equal(m.host.n, 0);
}

/* Incomplete heads: 0 until the blank line, whatever the split. */
static void test_incomplete(void **state)
{
	struct h1_msg m = {0};
	(void)state;
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	size_t n = strlen(s);
	for (size_t k = 0; k < n; k++) {
		memset(&m, 0, sizeof(m));
		assert_int_equal(h1_parse_request(s, k, &m, NULL), 0);
	}
	/* abandoning a partial head: h1_msg_reset() before the next message */
	memset(&m, 0, sizeof(m));
	assert_int_equal(h1_parse_request(s, 20, &m, NULL), 0);
	h1_msg_reset(&m);
	const char *t = "GET /other HTTP/1.1\r\nHost: b\r\n\r\n";
	assert_int_equal(h1_parse_request(t, strlen(t), &m, NULL), (int)strlen(t));
	assert_true(str_is(m.target, "/other"));
}

/* ---- lookups ------------------------------------------------------------------ */

static void test_lookups(void **state)
{
	static struct h1_msg m;
	(void)state;
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nConnection: x-secret, "
			"keep-alive\r\nx-dup: 2\r\nConnection: Foo\r\n\r\n";
	assert_true(req(s, &m) > 0);
	const struct h1_header *h = h1_find(&m, "X-DUP");
	assert_non_null(h);
	assert_true(str_is(h->value, "1"));
	h = h1_find_next(&m, h, "x-dup");
	assert_non_null(h);
	assert_true(str_is(h->value, "2"));
	assert_null(h1_find_next(&m, h, "x-dup"));
	assert_null(h1_find(&m, "X-Du"));
	assert_null(h1_find(&m, "X-Dupe"));

	struct h1_str list = {" gzip ,, Chunked\t, x ", 21};
	assert_true(h1_token_in_list(list, "chunked"));
	assert_true(h1_token_in_list(list, "GZIP"));
	assert_true(h1_token_in_list(list, "x"));
	assert_false(h1_token_in_list(list, "chunk"));
	assert_false(h1_token_in_list(list, ""));
	assert_false(h1_token_in_list((struct h1_str){NULL, 0}, "x"));

	static const char *hop[] = {"Connection",
				    "keep-alive",
				    "PROXY-CONNECTION",
				    "te",
				    "Trailer",
				    "transfer-encoding",
				    "Upgrade",
				    "Proxy-Authenticate",
				    "Proxy-Authorization",
				    "X-Secret",
				    "foo"};
	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
		assert_true(h1_is_hop_by_hop(&m, (struct h1_str){hop[i], strlen(hop[i])}));
	static const char *e2e[] = {"Host", "Content-Length", "Authorization", "X-Dup",
				    "Tee",  "X-Secre"};
	for (size_t i = 0; i < sizeof(e2e) / sizeof(e2e[0]); i++)
		assert_false(h1_is_hop_by_hop(&m, (struct h1_str){e2e[i], strlen(e2e[i])}));
}

/* ---- responses ---------------------------------------------------------------- */

static void test_responses(void **state)
{
	static struct h1_msg m;
	(void)state;
	const char *s =
	    "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nMS-Server-ActiveSync: 16.1\r\n\r\n";
	assert_int_equal(resp(s, 0, &m), (int)strlen(s));
	assert_int_equal(m.status, 200);
	assert_true(str_is(m.reason, "OK"));
	assert_int_equal(framing(m.flags), H1_F_CLEN);
	assert_int_equal(m.content_length, 12);
	assert_int_equal(m.method_str.n, 0);

	/* the same answer to HEAD has no body */
	assert_true(resp(s, 1, &m) > 0);
	assert_int_equal(framing(m.flags), H1_F_NO_BODY);
	assert_int_equal(m.content_length, 12);

	s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
	assert_true(resp(s, 0, &m) > 0);
	assert_int_equal(framing(m.flags), H1_F_CHUNKED);
	assert_false(m.flags & H1_F_CONN_CLOSE);

	s = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
	assert_true(resp(s, 0, &m) > 0);
	assert_int_equal(framing(m.flags), H1_F_EOF_BODY);
	assert_true(m.flags & H1_F_CONN_CLOSE);

	s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
	assert_true(resp(s, 0, &m) > 0);
	assert_int_equal(framing(m.flags), H1_F_EOF_BODY);
	assert_true(m.flags & H1_F_CONN_CLOSE);
	assert_true(m.flags & H1_F_TE_CODED);

	s = "HTTP/1.1 204 No Content\r\n\r\n";
	assert_true(resp(s, 0, &m) > 0);
	assert_int_equal(framing(m.flags), H1_F_NO_BODY);
	s = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
	assert_true(resp(s, 0, &m) > 0);
	assert_int_equal(framing(m.flags), H1_F_NO_BODY);
	s = "HTTP/1.1 304 Not Modified\r\nContent-Length: 500\r\n\r\n";
	assert_true(resp(s, 0, &m) > 0);
	assert_int_equal(framing(m.flags), H1_F_NO_BODY);
	s = "HTTP/1.1 100 Continue\r\n\r\n";
	assert_true(resp(s, 0, &m) > 0);
	assert_int_equal(m.status, 100);
	assert_int_equal(framing(m.flags), H1_F_NO_BODY);
	s = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
	assert_true(resp(s, 0, &m) > 0);
	assert_true(m.flags & H1_F_UPGRADE);
	assert_int_equal(framing(m.flags), H1_F_NO_BODY);

	/* reason phrase: empty, missing SP tolerated, any text */
	s = "HTTP/1.1 449 \r\nContent-Length: 0\r\n\r\n";
	assert_true(resp(s, 0, &m) > 0);
	assert_int_equal(m.status, 449);
	assert_int_equal(m.reason.n, 0);
	s = "HTTP/1.0 503\r\n\r\n";
	assert_true(resp(s, 0, &m) > 0);
	assert_int_equal(m.status, 503);
	assert_int_equal(m.minor, 0);
	assert_true(m.flags & H1_F_CONN_CLOSE);
	s = "HTTP/1.1 500 Internal  Error: \tfoo\r\nContent-Length: 0\r\n\r\n";
	assert_true(resp(s, 0, &m) > 0);
	assert_true(str_is(m.reason, "Internal  Error: \tfoo"));
	s = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n";
	assert_true(resp(s, 0, &m) > 0);
	assert_false(m.flags & H1_F_CONN_CLOSE);
}

static const char *const bad_responses[] = {
    "HTTP/1.1 099 Low\r\n\r\n",
    "HTTP/1.1 600 High\r\n\r\n",
    "HTTP/1.1 20 OK\r\n\r\n",
    "HTTP/1.1 2000 OK\r\n\r\n",
    "HTTP/1.1 20a OK\r\n\r\n",
    "HTTP/1.1 200OK\r\n\r\n",
    "HTTP/1.1  200 OK\r\n\r\n",
    "HTTP/2 200 OK\r\n\r\n",
    "HTTP/2.0 200 OK\r\n\r\n",
    "HTTP/1.2 200 OK\r\n\r\n",
    "http/1.1 200 OK\r\n\r\n",
    "\r\nHTTP/1.1 200 OK\r\n\r\n",
    "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;x=1\r\n\r\n",
    "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
    "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
    "HTTP/1.1 200 O\x01K\r\n\r\n",
};

static void test_response_refusals(void **state)
{
	static struct h1_msg m;
	(void)state;
	for (size_t i = 0; i < sizeof(bad_responses) / sizeof(bad_responses[0]); i++) {
		int rc = resp(bad_responses[i], 0, &m);
		if (rc != -1 || m.err_status != 502)
			fail_msg("case %zu: rc=%d status=%d: %s", i, rc, m.err_status,
				 bad_responses[i]);
	}
}

/* ---- chunked ------------------------------------------------------------------- */

struct sink {
	char buf[4096];
	size_t n;
	unsigned calls;
};

static void sink_data(void *arg, const char *p, size_t n)
{
	struct sink *s = arg;
	assert_true(n > 0);
	assert_true(s->n + n <= sizeof(s->buf));
	memcpy(s->buf + s->n, p, n);
	s->n += n;
	s->calls++;
}

struct chunk_result {
	ssize_t consumed; /* total, or -1 */
	int done;
	const char *err;
	int err_status;
	uint64_t err_off;
	struct sink data;
};

/* Feed s in pieces of `step` bytes (0 = all at once), each piece in its own
 * exactly-sized heap copy. */
static void chunk_run(const char *s, size_t n, size_t step, const struct h1_limits *lim,
		      struct chunk_result *r)
{
	struct h1_chunk c;
	memset(r, 0, sizeof(*r));
	h1_chunk_init(&c, lim);
	size_t off = 0;
	do {
		size_t k = step && n - off > step ? step : n - off;
		char *b = malloc(k ? k : 1);
		assert_non_null(b);
		memcpy(b, s + off, k);
		ssize_t rc = h1_chunk_feed(&c, b, k, &r->done, sink_data, &r->data);
		free(b);
		if (rc < 0) {
			r->consumed = -1;
			r->err = c.err;
			r->err_status = c.err_status;
			r->err_off = c.err_off;
			assert_int_equal(h1_chunk_feed(&c, "0", 1, &r->done, NULL, NULL), -1);
			return;
		}
		assert_true((size_t)rc <= k);
		off += (size_t)rc;
		r->consumed = (ssize_t)off;
		if (r->done)
			break;
		assert_int_equal((size_t)rc, k);
	} while (off < n);
	if (r->done) {
		int d = 0;
		assert_int_equal(h1_chunk_feed(&c, "x", 1, &d, NULL, NULL), 0);
		assert_int_equal(d, 1);
	}
}

/* All at once, 1 byte and 3 bytes at a time must agree exactly. */
static void chunk_both(const char *s, size_t n, const struct h1_limits *lim, struct chunk_result *r)
{
	static struct chunk_result r1, r3;
	chunk_run(s, n, 0, lim, r);
	chunk_run(s, n, 1, lim, &r1);
	chunk_run(s, n, 3, lim, &r3);
	const struct chunk_result *o[2] = {&r1, &r3};
	for (int i = 0; i < 2; i++) {
		assert_int_equal(o[i]->consumed, r->consumed);
		assert_int_equal(o[i]->done, r->done);
		assert_ptr_equal(o[i]->err, r->err);
		assert_int_equal(o[i]->err_off, r->err_off);
		assert_int_equal(o[i]->data.n, r->data.n);
		assert_memory_equal(o[i]->data.buf, r->data.buf, r->data.n);
	}
}

static void test_chunked_valid(void **state)
{
	static const struct {
		const char *in, *payload;
		size_t tail; /* bytes after the body that must be left alone */
	} ok[] = {
	    {"5\r\nhello\r\n0\r\n\r\n", "hello", 0},
	    {"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "hello world", 16},
	    {"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij", 0},
	    {"0005\r\nhello\r\n000\r\n\r\n", "hello", 0},
	    {"000000000000000A\r\n0123456789\r\n0\r\n\r\n", "0123456789", 0},
	    {"5;a=b;c=\"q\\\"x;\"\r\nhello\r\n0;last\r\n\r\n", "hello", 0},
	    {"5 ; a = b ;c\t;d=\"\"\r\nhello\r\n0\r\n\r\n", "hello", 0},
	    {"3\r\n\r\n\r\r\n0\r\n\r\n", "\r\n\r", 0},
	    {"0\r\nX-Checksum: abc\r\nY:\r\nZ: caf\xc3\xa9\t\r\n\r\n", "", 0},
	    {"0\r\n\r\n0\r\n\r\n", "", 5},
	};
	struct chunk_result r;
	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		size_t n = strlen(ok[i].in);
		chunk_both(ok[i].in, n, NULL, &r);
		if (r.consumed < 0)
			fail_msg("case %zu: %s at %llu", i, r.err, (unsigned long long)r.err_off);
		assert_true(r.done);
		assert_int_equal(r.consumed, n - ok[i].tail);
		assert_int_equal(r.data.n, strlen(ok[i].payload));
		assert_memory_equal(r.data.buf, ok[i].payload, r.data.n);
	}

	/* incomplete body: everything consumed, not done */
	const char *part = "5\r\nhello\r\n0\r\n";
	chunk_both(part, strlen(part), NULL, &r);
	assert_int_equal(r.consumed, strlen(part));
	assert_false(r.done);

	/* payload arrives in runs, not byte by byte, when fed at once */
	char big[1100];
	memcpy(big, "400\r\n", 5);
	memset(big + 5, 'z', 1024);
	memcpy(big + 5 + 1024, "\r\n0\r\n\r\n", 7);
	chunk_run(big, 1036, 0, NULL, &r);
	assert_true(r.done);
	assert_int_equal(r.data.n, 1024);
	assert_int_equal(r.data.calls, 1);
}

static const struct {
	const char *in;
	const char *err; /* substring */
	int status;
} bad_chunks[] = {
    {"\r\n", "invalid chunk size", 400},
    {"x\r\n", "invalid chunk size", 400},
    {"-1\r\n", "invalid chunk size", 400},
    {"0x5\r\n", "invalid chunk size", 400},
    {"+5\r\n", "invalid chunk size", 400},
    {"00000000000000001\r\n", "chunk size too long", 400},
    {"10000000000000000\r\n", "chunk size too long", 400},
    {"5\r\nhelloX\r\n0\r\n\r\n", "missing CRLF after chunk data", 400},
    {"5\r\nhello\n0\r\n\r\n", "bare LF", 400},
    {"5\r\nhello\r0\r\n\r\n", "missing CRLF after chunk data", 400},
    {"5\nhello\r\n0\r\n\r\n", "bare LF", 400},
    {"5\r\rhello\r\n", "bare CR", 400},
    {"5;\r\nhello\r\n0\r\n\r\n", "invalid chunk extension", 400},
    {"5;a=\r\nhello\r\n0\r\n\r\n", "invalid chunk extension", 400},
    {"5 \r\nhello\r\n0\r\n\r\n", "invalid chunk extension", 400},
    {"5;a b\r\nhello\r\n0\r\n\r\n", "invalid chunk extension", 400},
    {"5;a=b c\r\nhello\r\n0\r\n\r\n", "invalid chunk extension", 400},
    {"5;a=\"x\r\nhello\r\n0\r\n\r\n", "invalid chunk extension", 400},
    {"5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n", "bare LF", 400},
    {"5;a\n\r\nhello\r\n", "bare LF", 400},
    {"5;a=b\"\r\nhello\r\n", "invalid chunk extension", 400},
    {"5;@\r\nhello\r\n", "invalid chunk extension", 400},
    {"0\r\n X: y\r\n\r\n", "invalid trailer field", 400},
    {"0\r\nX y\r\n\r\n", "invalid trailer field name", 400},
    {"0\r\n: y\r\n\r\n", "invalid trailer field", 400},
    {"0\r\nX\r\n\r\n", "invalid trailer field name", 400},
    {"0\r\nX: a\x01\r\n\r\n", "control character in trailer", 400},
    {"0\r\nX: a\r\r\n", "bare CR", 400},
    {"0\r\nX: a\n\r\n", "bare LF", 400},
    {"0\r\n\r\r", "bare CR", 400},
    {"0\r\n\n", "bare LF", 400},
};

static void test_chunked_refusals(void **state)
{
	struct chunk_result r;
	(void)state;
	for (size_t i = 0; i < sizeof(bad_chunks) / sizeof(bad_chunks[0]); i++) {
		chunk_both(bad_chunks[i].in, strlen(bad_chunks[i].in), NULL, &r);
		if (r.consumed != -1 || !strstr(r.err, bad_chunks[i].err) ||
		    r.err_status != bad_chunks[i].status)
			fail_msg("case %zu: consumed=%zd err=%s: %s", i, r.consumed,
				 r.err ? r.err : "-", bad_chunks[i].in);
	}
	/* the error offset points at the offending byte */
	chunk_both("5\r\nhelloX", 9, NULL, &r);
	assert_int_equal(r.err_off, 8);
}

/* "1;eee...\r\nx\r\n0\r\n\r\n" with ext_len bytes after the size digit. */
static size_t ext_body(char *out, size_t ext_len)
{
	out[0] = '1';
	out[1] = ';';
	memset(out + 2, 'e', ext_len - 1);
	memcpy(out + 1 + ext_len, "\r\nx\r\n0\r\n\r\n", 11);
	return 1 + ext_len + 11;
}

static void test_chunked_limits(void **state)
{
	struct chunk_result r;
	char line[600];
	(void)state;

	/* extension length: 256 bytes after the size by default */
	size_t n = ext_body(line, 256);
	chunk_both(line, n, NULL, &r);
	assert_true(r.done);
	n = ext_body(line, 257);
	chunk_both(line, n, NULL, &r);
	assert_int_equal(r.consumed, -1);
	assert_int_equal(r.err_off, 257);
	assert_non_null(strstr(r.err, "extension too long"));

	/* trailers: count, line length, section size */
	struct h1_limits lim = {.max_head = 40, .max_line = 12, .max_headers = 2, .max_body = 10};
	const char *s = "0\r\nA: 1\r\nB: 2\r\n\r\n";
	chunk_both(s, strlen(s), &lim, &r);
	assert_true(r.done);
	s = "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
	chunk_both(s, strlen(s), &lim, &r);
	assert_int_equal(r.err_status, 431);
	assert_non_null(strstr(r.err, "too many trailer"));
	s = "0\r\nA: 123456789\r\n\r\n"; /* a 12-byte line is fine */
	chunk_both(s, strlen(s), &lim, &r);
	assert_true(r.done);
	s = "0\r\nA: 1234567890\r\n\r\n";
	chunk_both(s, strlen(s), &lim, &r);
	assert_non_null(strstr(r.err, "trailer line too long"));
	struct h1_limits tight = {.max_head = 20};
	s = "0\r\nA: 12345\r\nB: 1234\r\n\r\n";
	chunk_both(s, strlen(s), &tight, &r);
	assert_non_null(strstr(r.err, "trailer section too large"));

	/* max_body counts payload across chunks */
	s = "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
	chunk_both(s, strlen(s), &lim, &r);
	assert_true(r.done);
	s = "5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n";
	chunk_both(s, strlen(s), &lim, &r);
	assert_int_equal(r.err_status, 413);
	s = "FFFFFFFFFFFFFFFF\r\n";
	chunk_both(s, strlen(s), &lim, &r);
	assert_int_equal(r.err_status, 413);
	/* without a cap: sizes above INT64_MAX are refused (a backend may hold
	 * them signed), the largest allowed one just streams */
	chunk_both(s, strlen(s), NULL, &r);
	assert_int_equal(r.err_status, 400);
	s = "8000000000000000\r\n";
	chunk_both(s, strlen(s), NULL, &r);
	assert_int_equal(r.err_status, 400);
	s = "7FFFFFFFFFFFFFFF\r\n";
	chunk_both(s, strlen(s), NULL, &r);
	assert_int_equal(r.consumed, strlen(s));
	assert_false(r.done);
}

/* ---- reads past len -------------------------------------------------------------- */

struct guard {
	char *map;
	size_t pg;
};

static void guard_setup(struct guard *g)
{
	g->pg = (size_t)sysconf(_SC_PAGESIZE);
	g->map = mmap(NULL, 2 * g->pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g->map != MAP_FAILED);
	assert_int_equal(mprotect(g->map + g->pg, g->pg, PROT_NONE), 0);
}

/* Place s[0..k) so that it ends right before the PROT_NONE page. */
static char *guard_put(struct guard *g, const char *s, size_t k)
{
	char *p = g->map + g->pg - k;
	memmove(p, s, k);
	return p;
}

/* Every prefix, fresh and dribbled (the buffer moves on every call). */
static void guard_heads(struct guard *g, int resp_mode, const char *s, size_t n)
{
	static struct h1_msg m, md;
	assert_true(n <= g->pg);
	memset(&md, 0, sizeof(md));
	for (size_t k = 0; k <= n; k++) {
		char *p = guard_put(g, s, k);
		memset(&m, 0, sizeof(m));
		int rc = parse_any(resp_mode, 0, p, k, &m, NULL);
		int rcd = parse_any(resp_mode, 0, p, k, &md, NULL);
		assert_int_equal(rc, rcd);
		if (rc != 0)
			memset(&md, 0, sizeof(md));
	}
}

static void guard_chunks(struct guard *g, const char *body)
{
	size_t n = strlen(body);
	for (size_t k = 0; k <= n; k++) {
		struct h1_chunk c;
		int done;
		h1_chunk_init(&c, NULL);
		char *p = guard_put(g, body, k);
		assert_int_equal(h1_chunk_feed(&c, p, k, &done, NULL, NULL), (ssize_t)k);
		assert_int_equal(done, k == n);
	}
	struct h1_chunk c;
	struct sink sk = {.n = 0};
	int done = 0;
	h1_chunk_init(&c, NULL);
	for (size_t k = 0; k < n; k++) {
		char *p = guard_put(g, body + k, 1);
		assert_int_equal(h1_chunk_feed(&c, p, 1, &done, sink_data, &sk), 1);
	}
	assert_true(done);
	assert_int_equal(sk.n, 5);
}

/* A control byte is refused wherever it sits in a field value (the clean-line
 * check goes a word at a time: every offset in and across words, every
 * alignment); HTAB and obs-text bytes are taken anywhere. */
static void test_control_byte_every_offset(void **state)
{
	(void)state;
	static const unsigned char bad[] = {0x00, 0x01, 0x0b, 0x1f, 0x7f};
	static const unsigned char fine[] = {'\t', 0x20, 0x7e, 0x80, 0xfe, 0xff};
	for (size_t shift = 0; shift < 8; shift++) {
		for (size_t at = 1; at < 40; at++) {
			for (size_t b = 0; b < sizeof(bad) + sizeof(fine); b++) {
				int is_bad = b < sizeof(bad);
				char req[160];
				int n =
				    snprintf(req, sizeof(req),
					     "GET / HTTP/1.1\r\nHost: a\r\nX-%.*s: ", (int)shift,
					     "abcdefgh");
				memset(req + n, 'v', 40);
				req[n + (int)at] = (char)(is_bad ? bad[b] : fine[b - sizeof(bad)]);
				memcpy(req + n + 40, "\r\n\r\n", 5);
				struct h1_msg m;
				memset(&m, 0, sizeof(m));
				int rc = h1_parse_request(req, (size_t)n + 44, &m, NULL);
				if (is_bad)
					assert_int_equal(rc, -1);
				else
					assert_int_equal(rc, n + 44);
			}
		}
	}
}

static void test_guard_page(void **state)
{
	struct guard g;
	size_t len;
	(void)state;
	guard_setup(&g);
	char *cap = read_capture("804-R4-SendMail.http", &len);
	guard_heads(&g, 0, cap, len < g.pg ? len : g.pg);
	free(cap);
	static const char *heads[] = {
	    ("GET http://a:1/x?y HTTP/1.1\r\nHost: a:1\r\nTransfer-Encoding: gzip, chunked\r\n"
	     "Connection: keep-alive, x\r\nExpect: 100-continue\r\n\r\n"),
	    "\r\nOPTIONS * HTTP/1.0\r\nContent-Length: 00012\r\nHost: [::1]\r\n\r\n",
	    "GET /%4",
	    "GET / HTTP/1.1\r\nHost: a\r\nX: y\r",
	};
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++)
		guard_heads(&g, 0, heads[i], strlen(heads[i]));
	static const char *rheads[] = {
	    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n",
	    "HTTP/1.1 200",
	    "HTTP/1.1 204 \r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(rheads) / sizeof(rheads[0]); i++)
		guard_heads(&g, 1, rheads[i], strlen(rheads[i]));
	guard_chunks(&g, "5;a=\"b\\\"\"\r\nhello\r\n0\r\nX: y\r\n\r\n");
	munmap(g.map, 2 * g.pg);
}

/* The head's buffer moved: every slice follows it, none points into the old one. */
static void test_rebase(void **state)
{
	static const char head[] = "POST http://mail.example/Microsoft-Server-ActiveSync?Cmd=Sync "
				   "HTTP/1.1\r\nHost: mail.example\r\nUser-Agent: x\r\n\r\n";
	char a[sizeof(head)], b[sizeof(head)];
	struct h1_msg m;
	memset(&m, 0, sizeof(m));
	memcpy(a, head, sizeof(head));
	assert_int_equal(h1_parse_request(a, sizeof(head) - 1, &m, NULL), (int)sizeof(head) - 1);
	memcpy(b, a, sizeof(a));
	memset(a, 'X', sizeof(a));
	h1_rebase(&m, a, b);
	const struct h1_str *all[] = {&m.method_str, &m.target, &m.path, &m.query, &m.host};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		assert_true(all[i]->p >= b && all[i]->p + all[i]->n <= b + sizeof(b));
	assert_memory_equal(m.path.p, "/Microsoft-Server-ActiveSync", m.path.n);
	assert_memory_equal(m.query.p, "Cmd=Sync", m.query.n);
	assert_memory_equal(m.host.p, "mail.example", m.host.n);
	assert_memory_equal(m.hdr[1].name.p, "User-Agent", m.hdr[1].name.n);
	assert_memory_equal(m.hdr[1].value.p, "x", m.hdr[1].value.n);
	assert_null(m.reason.p); /* a request has none: still none */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rebase),
	    cmocka_unit_test(test_captures),
	    cmocka_unit_test(test_pipelined),
	    cmocka_unit_test(test_request_refusals),
	    cmocka_unit_test(test_nul_in_head),
	    cmocka_unit_test(test_early_refusal),
	    cmocka_unit_test(test_line_limits),
	    cmocka_unit_test(test_head_limits),
	    cmocka_unit_test(test_dribble_linear),
	    cmocka_unit_test(test_request_variants),
	    cmocka_unit_test(test_request_targets),
	    cmocka_unit_test(test_incomplete),
	    cmocka_unit_test(test_lookups),
	    cmocka_unit_test(test_responses),
	    cmocka_unit_test(test_response_refusals),
	    cmocka_unit_test(test_chunked_valid),
	    cmocka_unit_test(test_chunked_refusals),
	    cmocka_unit_test(test_chunked_limits),
	    cmocka_unit_test(test_guard_page),
	    cmocka_unit_test(test_control_byte_every_offset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
