/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * h1.c - see h1.h.
 *
 * A head is parsed in two passes. The first (head_scan) runs byte by byte
 * over the bytes not seen before, so a head dribbled in one byte per read
 * costs O(n) in total: it checks line endings, control bytes, line and head
 * sizes, and validates each line's syntax as soon as it is complete, so
 * garbage is refused early. Once the blank line is seen, the second pass
 * (head_build) splits the now-known-good head again, fills struct h1_msg
 * and applies the cross-header rules (framing, Host, Connection).
 */
#include "h1.h"
#include "hex.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

/* ---- character classes ----------------------------------------------------- */

enum {
	C_TCHAR = 1, /* token character (RFC 9110 5.6.2) */
	C_TGT = 2,   /* allowed raw in a path or query (RFC 3986 pchar, '/', '?', '%') */
	C_HOST = 4,  /* allowed in a Host reg-name (unreserved, '%', sub-delims but ',') */
};

#define C_ALNUM (C_TCHAR | C_TGT | C_HOST)

static const unsigned char cclass[256] = {
    ['0' ... '9'] = C_ALNUM, ['A' ... 'F'] = C_ALNUM, ['G' ... 'Z'] = C_ALNUM,
    ['a' ... 'f'] = C_ALNUM, ['g' ... 'z'] = C_ALNUM, ['-'] = C_ALNUM,
    ['.'] = C_ALNUM,	     ['_'] = C_ALNUM,	      ['~'] = C_ALNUM,
    ['!'] = C_ALNUM,	     ['$'] = C_ALNUM,	      ['&'] = C_ALNUM,
    ['\''] = C_ALNUM,	     ['*'] = C_ALNUM,	      ['+'] = C_ALNUM,
    ['%'] = C_ALNUM,	     ['('] = C_TGT | C_HOST,  [')'] = C_TGT | C_HOST,
    [';'] = C_TGT | C_HOST,  ['='] = C_TGT | C_HOST,  [','] = C_TGT,
    [':'] = C_TGT,	     ['@'] = C_TGT,	      ['/'] = C_TGT,
    ['?'] = C_TGT,	     ['#'] = C_TCHAR,	      ['^'] = C_TCHAR,
    ['`'] = C_TCHAR,	     ['|'] = C_TCHAR,
};

static int is_c(unsigned char c, unsigned cls)
{
	return (cclass[c] & cls) != 0;
}

/* Bytes never allowed in a head: CTLs other than HTAB, and DEL (CR/LF are
 * handled by the line logic before this is asked). */
static int is_bad_ctl(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

static int is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Case-insensitive equality of a slice and a NUL-terminated literal. */
static int str_ieq(struct h1_str s, const char *lit)
{
	size_t n = strlen(lit);
	return s.n == n && strncasecmp(s.p, lit, n) == 0;
}

static int all_tchar(const char *p, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_c((unsigned char)p[i], C_TCHAR))
			return 0;
	return 1;
}

/*
 * Next non-empty element of comma-list v from *pos, OWS-trimmed. Returns 0
 * when the list is exhausted.
 */
static int list_next(struct h1_str v, size_t *pos, struct h1_str *el)
{
	while (*pos < v.n) {
		size_t b = *pos, e;
		const char *comma = memchr(v.p + b, ',', v.n - b);
		e = comma ? (size_t)(comma - v.p) : v.n;
		*pos = comma ? e + 1 : v.n;
		while (b < e && is_ows((unsigned char)v.p[b]))
			b++;
		while (e > b && is_ows((unsigned char)v.p[e - 1]))
			e--;
		if (e > b) {
			el->p = v.p + b;
			el->n = e - b;
			return 1;
		}
	}
	return 0;
}

/* ---- limits ------------------------------------------------------------------ */

static void lim_resolve(const struct h1_limits *in, struct h1_limits *out)
{
	static const struct h1_limits zero;
	if (!in)
		in = &zero;
	out->max_head = in->max_head ? in->max_head : H1_DEF_MAX_HEAD;
	if (out->max_head > INT_MAX)
		out->max_head = INT_MAX; /* head_len is returned as an int */
	out->max_line = in->max_line ? in->max_line : H1_DEF_MAX_LINE;
	out->max_headers = in->max_headers ? in->max_headers : H1_DEF_MAX_HEADERS;
	if (out->max_headers > H1_MAX_HEADERS)
		out->max_headers = H1_MAX_HEADERS;
	out->max_chunk_ext = in->max_chunk_ext ? in->max_chunk_ext : H1_DEF_MAX_CHUNK_EXT;
	out->max_body = in->max_body;
}

/* ---- parse context ------------------------------------------------------- */

struct h1_ctx {
	const char *buf;
	struct h1_msg *m;
	struct h1_limits lim;
	int is_resp;
	int req_was_head;
};

void h1_msg_reset(struct h1_msg *m)
{
	memset(&m->scan, 0, sizeof(m->scan));
}

static void rebase_str(struct h1_str *s, const char *from, const char *to)
{
	if (s->p)
		s->p = to + (s->p - from);
}

void h1_rebase(struct h1_msg *m, const char *from, const char *to)
{
	rebase_str(&m->method_str, from, to);
	rebase_str(&m->target, from, to);
	rebase_str(&m->path, from, to);
	rebase_str(&m->query, from, to);
	rebase_str(&m->host, from, to);
	rebase_str(&m->reason, from, to);
	for (unsigned i = 0; i < m->nhdr; i++) {
		rebase_str(&m->hdr[i].name, from, to);
		rebase_str(&m->hdr[i].value, from, to);
	}
}

/* Record an error; responses always answer 502 to the client. */
static int fail(struct h1_ctx *x, const char *why, size_t pos, int status)
{
	x->m->err = why;
	x->m->err_pos = pos;
	x->m->err_status = x->is_resp ? 502 : status;
	h1_msg_reset(x->m);
	return -1;
}

/* ---- start lines ------------------------------------------------------------- */

static enum h1_method method_id(const char *p, size_t n)
{
	static const struct {
		const char *s;
		enum h1_method m;
	} tab[] = {
	    {"GET", H1_M_GET},	       {"HEAD", H1_M_HEAD},	{"POST", H1_M_POST},
	    {"PUT", H1_M_PUT},	       {"DELETE", H1_M_DELETE}, {"OPTIONS", H1_M_OPTIONS},
	    {"CONNECT", H1_M_CONNECT}, {"TRACE", H1_M_TRACE},	{"PATCH", H1_M_PATCH},
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strlen(tab[i].s) == n && memcmp(tab[i].s, p, n) == 0)
			return tab[i].m;
	return H1_M_OTHER;
}

/*
 * "HTTP/1.0" or "HTTP/1.1" at p (8 bytes available). Returns the minor
 * version, -1 if malformed, -2 if well-formed but another version.
 */
static int parse_version(const char *p)
{
	if (memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' || p[5] < '0' || p[5] > '9' || p[7] < '0' ||
	    p[7] > '9')
		return -1;
	if (p[5] != '1' || p[7] > '1')
		return -2;
	return p[7] - '0';
}

/* Is p[0..n) "%2f" or "%5c" (an encoded '/' or '\\', which IIS decodes)? */
static int enc_sep(const char *p, size_t n)
{
	return n >= 3 && p[0] == '%' &&
	       ((p[1] == '2' && (p[2] | 0x20) == 'f') || (p[1] == '5' && (p[2] | 0x20) == 'c'));
}

/* Is p[0..n) "." or "..", any dot possibly written %2e? */
static int dot_segment(const char *p, size_t n)
{
	unsigned dots = 0;
	for (size_t i = 0; i < n; dots++) {
		if (p[i] == '.')
			i++;
		else if (n - i >= 3 && p[i] == '%' && p[i + 1] == '2' && (p[i + 2] | 0x20) == 'e')
			i += 3;
		else
			return 0;
	}
	return dots == 1 || dots == 2;
}

/*
 * Offset of the first dot-segment in path[0..n), or -1. Segments end at '/'
 * and at encoded separators, as a backend that decodes them sees it.
 */
static long find_dot_segment(const char *p, size_t n)
{
	size_t b = 0;
	for (size_t i = 0; i <= n; i++) {
		size_t sep = i == n ? 1 : p[i] == '/' ? 1 : enc_sep(p + i, n - i) ? 3 : 0;
		if (!sep)
			continue;
		if (dot_segment(p + b, i - b))
			return (long)b;
		i += sep - 1;
		b = i + 1;
	}
	return -1;
}

/*
 * Check the path-and-query characters of t[0..n) and set m->path / m->query.
 * '%' must start a %XX escape. A dot-segment in the path is refused: behind
 * a relay that prepends a path prefix it would climb out of the prefix.
 */
static int parse_path_query(struct h1_ctx *x, const char *t, size_t n)
{
	struct h1_msg *m = x->m;
	size_t q = n;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)t[i];
		size_t pos = (size_t)(t + i - x->buf);
		if (!is_c(c, C_TGT))
			return fail(x, "invalid character in request target", pos, 400);
		if (c == '%' && (i + 2 >= n || hex_digit_value((unsigned char)t[i + 1]) < 0 ||
				 hex_digit_value((unsigned char)t[i + 2]) < 0))
			return fail(x, "invalid percent-encoding in request target", pos, 400);
		if (c == '?' && q == n)
			q = i;
	}
	long dot = find_dot_segment(t, q);
	if (dot >= 0)
		return fail(x, "dot-segment in request path", (size_t)(t + dot - x->buf), 400);
	m->path = (struct h1_str){t, q};
	if (q < n)
		m->query = (struct h1_str){t + q + 1, n - q - 1};
	return 0;
}

/*
 * Host syntax: reg-name (%XX escapes well-formed) or [v6], with an optional
 * ":port" of up to 5 digits. Empty is valid (RFC 9112 3.2).
 */
static int host_valid(struct h1_str h)
{
	size_t i = 0;
	if (h.n && h.p[0] == '[') {
		for (i = 1; i < h.n && h.p[i] != ']'; i++)
			if (hex_digit_value((unsigned char)h.p[i]) < 0 && h.p[i] != ':' &&
			    h.p[i] != '.')
				return 0;
		if (i == h.n || i == 1)
			return 0;
		i++;
	} else {
		for (; i < h.n && is_c((unsigned char)h.p[i], C_HOST); i++)
			if (h.p[i] == '%' &&
			    (i + 2 >= h.n || hex_digit_value((unsigned char)h.p[i + 1]) < 0 ||
			     hex_digit_value((unsigned char)h.p[i + 2]) < 0))
				return 0;
		if (i == 0 && h.n)
			return 0; /* ":port" without a host */
	}
	if (i == h.n)
		return 1;
	if (h.p[i] != ':' || h.n - i - 1 > 5)
		return 0;
	for (i++; i < h.n; i++)
		if (h.p[i] < '0' || h.p[i] > '9')
			return 0;
	return 1;
}

/* absolute-form: "http://" or "https://" authority [ path-abempty ] [ "?" query ]. */
static int parse_absolute(struct h1_ctx *x, const char *t, size_t n, struct h1_str *authority)
{
	size_t pos = (size_t)(t - x->buf), s;
	if (n > 7 && strncasecmp(t, "http://", 7) == 0)
		s = 7;
	else if (n > 8 && strncasecmp(t, "https://", 8) == 0)
		s = 8;
	else
		return fail(x, "invalid request target", pos, 400);
	size_t e = s;
	while (e < n && t[e] != '/' && t[e] != '?')
		e++;
	*authority = (struct h1_str){t + s, e - s};
	if (e == s || !host_valid(*authority))
		return fail(x, "invalid authority in request target", pos + s, 400);
	if (parse_path_query(x, t + e, n - e) < 0)
		return -1;
	x->m->flags |= H1_F_ABS_FORM;
	return 0;
}

/* method SP request-target SP HTTP-version, single SPs only. */
static int parse_request_line(struct h1_ctx *x, size_t b, size_t e, struct h1_str *authority)
{
	struct h1_msg *m = x->m;
	const char *l = x->buf + b;
	size_t n = e - b;
	const char *sp1 = memchr(l, ' ', n);
	if (!sp1 || sp1 == l)
		return fail(x, "malformed request line", b, 400);
	size_t ml = (size_t)(sp1 - l);
	if (!all_tchar(l, ml))
		return fail(x, "invalid method token", b, 400);
	const char *t = sp1 + 1;
	const char *sp2 = memchr(t, ' ', (size_t)(l + n - t));
	if (!sp2)
		return fail(x, "missing HTTP version", e, 400);
	if (sp2 == t)
		return fail(x, "empty request target", (size_t)(t - x->buf), 400);
	const char *v = sp2 + 1;
	if ((size_t)(l + n - v) != 8)
		return fail(x, "malformed HTTP version", (size_t)(v - x->buf), 400);
	int minor = parse_version(v);
	if (minor == -1)
		return fail(x, "malformed HTTP version", (size_t)(v - x->buf), 400);
	if (minor == -2)
		return fail(x, "unsupported HTTP version", (size_t)(v - x->buf), 505);
	m->minor = minor;
	m->method_str = (struct h1_str){l, ml};
	m->method = method_id(l, ml);
	m->target = (struct h1_str){t, (size_t)(sp2 - t)};
	m->path = m->query = (struct h1_str){NULL, 0};
	authority->n = 0;
	if (m->method == H1_M_CONNECT)
		return fail(x, "CONNECT not supported", b, 405);
	if (m->target.n == 1 && t[0] == '*') {
		if (m->method != H1_M_OPTIONS)
			return fail(x, "asterisk-form target with a method other than OPTIONS",
				    (size_t)(t - x->buf), 400);
		m->path = m->target;
		return 0;
	}
	if (t[0] == '/')
		return parse_path_query(x, t, m->target.n);
	return parse_absolute(x, t, m->target.n, authority);
}

/* HTTP-version SP 3DIGIT [ SP reason-phrase ]; a missing SP before an empty
 * reason is tolerated (common, harmless). */
static int parse_status_line(struct h1_ctx *x, size_t b, size_t e)
{
	struct h1_msg *m = x->m;
	const char *l = x->buf + b;
	size_t n = e - b;
	if (n < 12 || l[8] != ' ')
		return fail(x, "malformed status line", b, 502);
	int minor = parse_version(l);
	if (minor < 0)
		return fail(x, "unsupported or malformed HTTP version", b, 502);
	if (l[9] < '1' || l[9] > '5' || l[10] < '0' || l[10] > '9' || l[11] < '0' || l[11] > '9')
		return fail(x, "invalid status code", b + 9, 502);
	if (n > 12 && l[12] != ' ')
		return fail(x, "malformed status line", b + 12, 502);
	m->minor = minor;
	m->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	m->reason = n > 12 ? (struct h1_str){l + 13, n - 13} : (struct h1_str){l + 12, 0};
	return 0;
}

/* ---- field lines ------------------------------------------------------------- */

/* field-name ":" OWS field-value OWS; CTLs were refused by head_scan. */
static int parse_field_line(struct h1_ctx *x, size_t b, size_t e, struct h1_header *h)
{
	const char *l = x->buf + b;
	size_t n = e - b, i = 0;
	if (is_ows((unsigned char)l[0]))
		return fail(x, "obs-fold or whitespace at start of field line", b, 400);
	while (i < n && is_c((unsigned char)l[i], C_TCHAR))
		i++;
	if (i == n)
		return fail(x, "field line without colon", b + i, 400);
	if (is_ows((unsigned char)l[i]))
		return fail(x, "whitespace between field name and colon", b + i, 400);
	if (l[i] != ':')
		return fail(x, "invalid character in field name", b + i, 400);
	if (i == 0)
		return fail(x, "empty field name", b, 400);
	size_t vb = i + 1, ve = n;
	while (vb < ve && is_ows((unsigned char)l[vb]))
		vb++;
	while (ve > vb && is_ows((unsigned char)l[ve - 1]))
		ve--;
	h->name = (struct h1_str){l, i};
	h->value = (struct h1_str){l + vb, ve - vb};
	return 0;
}

/* ---- pass 1: incremental scan ------------------------------------------------ */

/*
 * A line [line_start, cr) just ended at the CR of its CRLF. Returns 1 at the
 * blank line ending the head, 0 to continue, -1 on error.
 */
static int scan_line_done(struct h1_ctx *x, size_t cr)
{
	struct h1_scan *s = &x->m->scan;
	size_t b = s->line_start;
	struct h1_str authority;
	struct h1_header h;
	if (cr == b) {
		if (s->nlines > 0)
			return 1;
		if (x->is_resp)
			return fail(x, "empty line before status line", b, 502);
		return 0; /* RFC 9112 2.2: skip empty lines before a request line */
	}
	if (s->nlines == 0) {
		if (x->is_resp ? parse_status_line(x, b, cr)
			       : parse_request_line(x, b, cr, &authority))
			return -1;
	} else {
		if (s->nlines > x->lim.max_headers)
			return fail(x, "too many header fields", b, 431);
		if (parse_field_line(x, b, cr, &h))
			return -1;
	}
	s->nlines++;
	return 0;
}

/*
 * Examine buf[scan.pos .. min(len, max_head)). Returns the head length once
 * the blank line is seen, 0 if more bytes are needed, -1 on error.
 */
/* Is p[0, n) free of control bytes (CR and LF included; HTAB allowed)? */
static int bytes_clean(const unsigned char *p, size_t n)
{
	unsigned bad = 0;
	for (size_t k = 0; k < n; k++)
		bad |= (unsigned)((p[k] < 0x20 && p[k] != '\t') | (p[k] == 0x7f));
	return !bad;
}

/* The same, eight bytes at a time: -O2 does not vectorize the byte loop
 * (callgrind: 9 instructions per head byte, a third of parsing a request
 * head). A word flagged as holding a byte below 0x20 or a 0x7f (the tests
 * have no false negatives) is looked at byte by byte: an HTAB is fine. */
static int span_clean(const unsigned char *p, size_t n)
{
	const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
	size_t k = 0;
	for (; k + 8 <= n; k += 8) {
		uint64_t w, d;
		memcpy(&w, p + k, 8);
		d = w ^ (ones * 0x7f);
		if ((((w - ones * 0x20) & ~w) | ((d - ones) & ~d)) & highs)
			if (!bytes_clean(p + k, 8))
				return 0;
	}
	return bytes_clean(p + k, n - k);
}

static long head_scan(struct h1_ctx *x, size_t len)
{
	struct h1_scan *s = &x->m->scan;
	const char *buf = x->buf;
	size_t end = len < x->lim.max_head ? len : x->lim.max_head;
	for (size_t i = s->pos; i < end; i++) {
		/* A whole line, CRLF-terminated, of at most max_line clean bytes:
		 * what the byte loop below would accept, found without a decision
		 * per byte (it was 4% of a worker's keep-alive profile). Anything
		 * else takes the byte loop, which says what is wrong and where. */
		const char *nlp;
		while (i == s->line_start && (nlp = memchr(buf + i, '\n', end - i))) {
			size_t nl = (size_t)(nlp - buf);
			if (nl == i || buf[nl - 1] != '\r' || nl - 1 - i > x->lim.max_line ||
			    !span_clean((const unsigned char *)buf + i, nl - 1 - i))
				break;
			int rc = scan_line_done(x, nl - 1);
			if (rc)
				return rc < 0 ? -1 : (long)(nl + 1);
			s->line_start = i = nl + 1;
		}
		if (i >= end)
			break;
		unsigned char c = (unsigned char)buf[i];
		if (i > s->line_start && buf[i - 1] == '\r' && c != '\n')
			return fail(x, "bare CR in head", i - 1, 400);
		if (c == '\n') {
			if (i == s->line_start || buf[i - 1] != '\r')
				return fail(x, "bare LF in head", i, 400);
			int rc = scan_line_done(x, i - 1);
			if (rc)
				return rc < 0 ? -1 : (long)(i + 1);
			s->line_start = i + 1;
		} else if (c != '\r') {
			if (is_bad_ctl(c))
				return fail(x, "control character in head", i, 400);
			if (i - s->line_start >= x->lim.max_line)
				return fail(
				    x, s->nlines ? "header line too long" : "start line too long",
				    i, s->nlines ? 431 : 414);
		}
	}
	s->pos = end;
	if (end < len)
		return fail(x, "head too large", end, 431);
	return 0;
}

/* ---- pass 2: build the message and apply cross-header rules ------------------ */

/* What the field lines said, gathered before deciding on framing. */
struct h1_sem {
	size_t cl_pos, te_pos;
	int has_cl, has_te, has_host, has_upgrade;
	int conn_close, conn_keepalive, conn_upgrade, expect_continue;
	unsigned te_codings, te_chunked;
	int te_last_chunked;
	size_t te_unknown_pos; /* offset of the first unknown coding, 0 = none */
};

static int sem_content_length(struct h1_ctx *x, struct h1_sem *sm, const struct h1_header *h)
{
	size_t pos = (size_t)(h->name.p - x->buf);
	uint64_t v = 0;
	if (sm->has_cl)
		return fail(x, "duplicate Content-Length", pos, 400);
	if (h->value.n == 0)
		return fail(x, "empty Content-Length", pos, 400);
	for (size_t i = 0; i < h->value.n; i++) {
		unsigned d = (unsigned char)h->value.p[i] - '0';
		if (d > 9)
			return fail(x, "invalid Content-Length", pos, 400);
		if (v > (UINT64_C(0x7fffffffffffffff) - d) / 10)
			return fail(x, "Content-Length too large", pos, 400);
		v = v * 10 + d;
	}
	sm->has_cl = 1;
	sm->cl_pos = pos;
	x->m->content_length = v;
	return 0;
}

static int te_known(struct h1_str c)
{
	return str_ieq(c, "gzip") || str_ieq(c, "x-gzip") || str_ieq(c, "deflate") ||
	       str_ieq(c, "compress") || str_ieq(c, "x-compress");
}

/*
 * One Transfer-Encoding line: codings accumulate across lines (RFC 9110
 * 5.3). Decisions that need the whole list are taken in frame_request/
 * frame_response.
 */
static int sem_transfer_encoding(struct h1_ctx *x, struct h1_sem *sm, const struct h1_header *h)
{
	size_t pos = (size_t)(h->name.p - x->buf), lp = 0;
	struct h1_str el;
	int any = 0;
	while (list_next(h->value, &lp, &el)) {
		const char *semi = memchr(el.p, ';', el.n);
		struct h1_str c = {el.p, semi ? (size_t)(semi - el.p) : el.n};
		while (c.n && is_ows((unsigned char)c.p[c.n - 1]))
			c.n--;
		if (!all_tchar(c.p, c.n))
			return fail(x, "invalid Transfer-Encoding", pos, 400);
		int chunked = str_ieq(c, "chunked");
		if (semi && (chunked || !x->is_resp))
			return fail(x, "transfer-coding parameters not supported", pos, 400);
		if (!chunked && !te_known(c) && !sm->te_unknown_pos)
			sm->te_unknown_pos = pos;
		sm->te_codings++;
		sm->te_chunked += chunked;
		sm->te_last_chunked = chunked;
		any = 1;
	}
	if (!any)
		return fail(x, "empty Transfer-Encoding", pos, 400);
	if (!sm->has_te)
		sm->te_pos = pos;
	sm->has_te = 1;
	return 0;
}

static int sem_connection(struct h1_ctx *x, struct h1_sem *sm, const struct h1_header *h)
{
	size_t pos = (size_t)(h->name.p - x->buf), lp = 0;
	struct h1_str el;
	x->m->flags |= H1_F_CONNECTION;
	while (list_next(h->value, &lp, &el)) {
		if (!all_tchar(el.p, el.n))
			return fail(x, "invalid Connection option", pos, 400);
		if (str_ieq(el, "host") || str_ieq(el, "content-length"))
			return fail(x, "Connection names Host or Content-Length", pos, 400);
		sm->conn_close |= str_ieq(el, "close");
		sm->conn_keepalive |= str_ieq(el, "keep-alive");
		sm->conn_upgrade |= str_ieq(el, "upgrade");
	}
	return 0;
}

static int sem_expect(struct h1_ctx *x, struct h1_sem *sm, const struct h1_header *h)
{
	size_t lp = 0;
	struct h1_str el;
	while (list_next(h->value, &lp, &el)) {
		if (!str_ieq(el, "100-continue"))
			return fail(x, "unsupported expectation", (size_t)(h->name.p - x->buf),
				    417);
		sm->expect_continue = 1;
	}
	return 0;
}

static int sem_host(struct h1_ctx *x, struct h1_sem *sm, const struct h1_header *h)
{
	size_t pos = (size_t)(h->name.p - x->buf);
	if (sm->has_host)
		return fail(x, "duplicate Host", pos, 400);
	if (!host_valid(h->value))
		return fail(x, "invalid Host", pos, 400);
	sm->has_host = 1;
	x->m->host = h->value;
	return 0;
}

/* Dispatch one stored field line to the rule for its name, if any. */
static int sem_field(struct h1_ctx *x, struct h1_sem *sm, const struct h1_header *h)
{
	if (str_ieq(h->name, "content-length"))
		return sem_content_length(x, sm, h);
	if (str_ieq(h->name, "transfer-encoding"))
		return sem_transfer_encoding(x, sm, h);
	if (str_ieq(h->name, "connection"))
		return sem_connection(x, sm, h);
	if (str_ieq(h->name, "upgrade"))
		sm->has_upgrade = 1;
	if (x->is_resp)
		return 0;
	if (str_ieq(h->name, "host"))
		return sem_host(x, sm, h);
	if (str_ieq(h->name, "expect"))
		return sem_expect(x, sm, h);
	return 0;
}

/* RFC 9112 6.3 for requests, with smuggling-prone cases refused. */
static int frame_request(struct h1_ctx *x, const struct h1_sem *sm)
{
	struct h1_msg *m = x->m;
	if (sm->has_te) {
		size_t pos = sm->te_pos;
		if (sm->has_cl)
			return fail(x, "Content-Length with Transfer-Encoding",
				    sm->te_pos > sm->cl_pos ? sm->te_pos : sm->cl_pos, 400);
		if (m->minor == 0)
			return fail(x, "Transfer-Encoding in HTTP/1.0 request", pos, 400);
		if (sm->te_unknown_pos)
			return fail(x, "unknown transfer-coding", sm->te_unknown_pos, 501);
		if (sm->te_chunked > 1)
			return fail(x, "chunked applied more than once", pos, 400);
		if (!sm->te_last_chunked)
			return fail(x, "chunked is not the final transfer-coding", pos, 400);
		m->flags |= H1_F_CHUNKED | (sm->te_codings > 1 ? H1_F_TE_CODED : 0);
	} else if (sm->has_cl) {
		if (x->lim.max_body && m->content_length > x->lim.max_body)
			return fail(x, "Content-Length over the body limit", sm->cl_pos, 413);
		m->flags |= H1_F_CLEN;
	} else {
		m->flags |= H1_F_NO_BODY;
	}
	return 0;
}

/* RFC 9112 6.3 for responses; CL+TE and double chunked are refused. */
static int frame_response(struct h1_ctx *x, const struct h1_sem *sm)
{
	struct h1_msg *m = x->m;
	int st = m->status;
	int no_body = x->req_was_head || st < 200 || st == 204 || st == 304;
	if (sm->has_te) {
		if (sm->has_cl)
			return fail(x, "Content-Length with Transfer-Encoding", sm->te_pos, 502);
		if (m->minor == 0)
			return fail(x, "Transfer-Encoding in HTTP/1.0 response", sm->te_pos, 502);
		if (sm->te_chunked > 1)
			return fail(x, "chunked applied more than once", sm->te_pos, 502);
		if (st < 200 || st == 204)
			return fail(x, "Transfer-Encoding in 1xx or 204 response", sm->te_pos, 502);
	}
	if (sm->has_cl && m->content_length && (st < 200 || st == 204))
		return fail(x, "Content-Length in 1xx or 204 response", sm->cl_pos, 502);
	if (no_body)
		m->flags |= H1_F_NO_BODY;
	else if (sm->has_te && sm->te_last_chunked)
		m->flags |= H1_F_CHUNKED | (sm->te_codings > 1 ? H1_F_TE_CODED : 0);
	else if (sm->has_te)
		m->flags |= H1_F_EOF_BODY | H1_F_CONN_CLOSE | H1_F_TE_CODED;
	else if (sm->has_cl)
		m->flags |= H1_F_CLEN;
	else
		m->flags |= H1_F_EOF_BODY | H1_F_CONN_CLOSE;
	return 0;
}

/* Rules that need every field line: Host, connection options, framing. */
static int finish(struct h1_ctx *x, const struct h1_sem *sm, struct h1_str authority)
{
	struct h1_msg *m = x->m;
	if (!x->is_resp) {
		if (m->minor == 1 && !sm->has_host)
			return fail(x, "missing Host", m->head_len, 400);
		if (authority.n) {
			if (sm->has_host &&
			    !(m->host.n == authority.n &&
			      strncasecmp(m->host.p, authority.p, authority.n) == 0))
				return fail(x, "Host does not match the target authority",
					    (size_t)(m->host.p - x->buf), 400);
			m->host = authority;
		}
		if (m->minor == 1 && sm->expect_continue)
			m->flags |= H1_F_EXPECT_CONTINUE;
	}
	if (sm->conn_close || (m->minor == 0 && !sm->conn_keepalive))
		m->flags |= H1_F_CONN_CLOSE;
	if (sm->conn_keepalive)
		m->flags |= H1_F_CONN_KEEPALIVE;
	if (sm->has_upgrade && sm->conn_upgrade && m->minor == 1)
		m->flags |= H1_F_UPGRADE;
	return x->is_resp ? frame_response(x, sm) : frame_request(x, sm);
}

static void msg_clear(struct h1_msg *m)
{
	m->method = H1_M_OTHER;
	m->method_str = m->target = m->path = m->query = m->host = m->reason =
	    (struct h1_str){NULL, 0};
	m->status = 0;
	m->minor = 0;
	m->nhdr = 0;
	m->flags = 0;
	m->content_length = 0;
	m->head_len = 0;
	m->err = NULL;
	m->err_pos = 0;
	m->err_status = 0;
}

/*
 * Second pass over a complete head of head_len bytes whose every line
 * head_scan already validated, so the start line and field lines cannot fail
 * here; only cross-header rules can.
 */
static int head_build(struct h1_ctx *x, size_t head_len)
{
	struct h1_msg *m = x->m;
	const char *buf = x->buf;
	struct h1_sem sm = {0};
	struct h1_str authority = {NULL, 0};
	size_t p = 0;
	msg_clear(m);
	m->head_len = head_len;
	while (buf[p] == '\r')
		p += 2; /* leading empty lines */
	size_t cr = (size_t)((const char *)memchr(buf + p, '\n', head_len - p) - buf) - 1;
	if (x->is_resp ? parse_status_line(x, p, cr) : parse_request_line(x, p, cr, &authority))
		return -1;
	for (p = cr + 2; buf[p] != '\r'; p = cr + 2) {
		cr = (size_t)((const char *)memchr(buf + p, '\n', head_len - p) - buf) - 1;
		struct h1_header *h = &m->hdr[m->nhdr++];
		if (parse_field_line(x, p, cr, h) || sem_field(x, &sm, h))
			return -1;
	}
	if (finish(x, &sm, authority))
		return -1;
	h1_msg_reset(m);
	return (int)head_len;
}

static int parse_head(struct h1_ctx *x, size_t len)
{
	if (x->m->scan.pos > len || x->m->scan.line_start > x->m->scan.pos)
		h1_msg_reset(x->m); /* not the message we were scanning */
	long rc = head_scan(x, len);
	if (rc <= 0)
		return (int)rc;
	return head_build(x, (size_t)rc);
}

int h1_parse_request(const char *buf, size_t len, struct h1_msg *m, const struct h1_limits *lim)
{
	struct h1_ctx x = {.buf = buf, .m = m, .is_resp = 0};
	lim_resolve(lim, &x.lim);
	return parse_head(&x, len);
}

int h1_parse_response(const char *buf, size_t len, int req_was_head, struct h1_msg *m,
		      const struct h1_limits *lim)
{
	struct h1_ctx x = {.buf = buf, .m = m, .is_resp = 1, .req_was_head = req_was_head};
	lim_resolve(lim, &x.lim);
	return parse_head(&x, len);
}

/* ---- lookups ------------------------------------------------------------------- */

const struct h1_header *h1_find_next(const struct h1_msg *m, const struct h1_header *after,
				     const char *name)
{
	unsigned i = after ? (unsigned)(after - m->hdr) + 1 : 0;
	for (; i < m->nhdr; i++)
		if (str_ieq(m->hdr[i].name, name))
			return &m->hdr[i];
	return NULL;
}

const struct h1_header *h1_find(const struct h1_msg *m, const char *name)
{
	return h1_find_next(m, NULL, name);
}

int h1_token_in_list(struct h1_str value, const char *token)
{
	size_t lp = 0;
	struct h1_str el;
	while (list_next(value, &lp, &el))
		if (str_ieq(el, token))
			return 1;
	return 0;
}

int h1_is_hop_by_hop(const struct h1_msg *m, struct h1_str name)
{
	/* Lengths first, no strlen: the relay asks this for every header of
	 * every request and response, and the second loop scans all of them. */
#define HOP(s)                                                                                     \
	{                                                                                          \
		s, sizeof(s) - 1                                                                   \
	}
	static const struct {
		const char *s;
		size_t n;
	} fixed[] = {
	    HOP("Connection"),
	    HOP("Keep-Alive"),
	    HOP("Proxy-Connection"),
	    HOP("TE"),
	    HOP("Trailer"),
	    HOP("Transfer-Encoding"),
	    HOP("Upgrade"),
	    HOP("Proxy-Authenticate"),
	    HOP("Proxy-Authorization"),
	};
#undef HOP
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (name.n == fixed[i].n && !strncasecmp(name.p, fixed[i].s, name.n))
			return 1;
	for (unsigned i = 0; (m->flags & H1_F_CONNECTION) && i < m->nhdr; i++) {
		size_t lp = 0;
		struct h1_str el;
		if (m->hdr[i].name.n != 10 || !str_ieq(m->hdr[i].name, "connection"))
			continue;
		while (list_next(m->hdr[i].value, &lp, &el))
			if (el.n == name.n && strncasecmp(el.p, name.p, el.n) == 0)
				return 1;
	}
	return 0;
}

const char *h1_reason_phrase(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 302:
		return "Found";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 417:
		return "Expectation Failed";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return NULL;
	}
}

/* ---- chunked body scanner ---------------------------------------------------- */

/*
 * States of struct h1_chunk. The EXT_* states follow RFC 9112 7.1.1:
 * chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).
 */
enum h1_chunk_state {
	CS_SIZE = 0,	/* hex digits of chunk-size */
	CS_EXT_WS,	/* BWS that must lead to ';' */
	CS_EXT_NAME_WS, /* after ';' */
	CS_EXT_NAME,
	CS_EXT_NAME_END, /* BWS after a name: '=' or ';' must follow */
	CS_EXT_VAL_WS,	 /* after '=' */
	CS_EXT_VAL,
	CS_EXT_QS, /* inside a quoted-string */
	CS_EXT_QP, /* after a backslash in a quoted-string */
	CS_EXT_AFTER,
	CS_SIZE_LF,
	CS_DATA,
	CS_DATA_CR,
	CS_DATA_LF,
	CS_TR_START, /* start of a trailer line or of the final CRLF */
	CS_TR_NAME,
	CS_TR_VALUE,
	CS_TR_LF,
	CS_END_LF,
	CS_DONE,
	CS_ERROR,
};

void h1_chunk_init(struct h1_chunk *c, const struct h1_limits *lim)
{
	memset(c, 0, sizeof(*c));
	c->state = CS_SIZE;
	lim_resolve(lim, &c->lim);
}

static int chunk_err(struct h1_chunk *c, const char *why, int status)
{
	c->err = why;
	c->err_status = status;
	c->err_off = c->off;
	c->state = CS_ERROR;
	return -1;
}

static int chunk_size_byte(struct h1_chunk *c, unsigned char ch)
{
	int v = hex_digit_value(ch);
	if (v >= 0) {
		if (++c->ndigits > 16)
			return chunk_err(c, "chunk size too long", 400);
		c->remaining = (c->remaining << 4) | (unsigned)v;
		return 0;
	}
	if (c->ndigits == 0)
		return chunk_err(c, "invalid chunk size", 400);
	c->line_len = 1;
	if (ch == '\r')
		c->state = CS_SIZE_LF;
	else if (ch == ';')
		c->state = CS_EXT_NAME_WS;
	else if (is_ows(ch))
		c->state = CS_EXT_WS;
	else
		return chunk_err(c, "invalid chunk size", 400);
	return 0;
}

/* The CRLF after chunk-size [chunk-ext] is complete. */
static int chunk_size_done(struct h1_chunk *c)
{
	if (c->remaining == 0) {
		c->state = CS_TR_START;
		return 0;
	}
	/* total never exceeds max_body (nor INT64_MAX): no subtraction wraps. */
	if (c->lim.max_body && c->remaining > c->lim.max_body - c->total)
		return chunk_err(c, "chunked body over the body limit", 413);
	/* Like Content-Length, sizes stay within INT64_MAX: a backend holding
	 * them in a signed 64-bit integer must never read a negative one. */
	if (c->remaining > (uint64_t)INT64_MAX - c->total)
		return chunk_err(c, "chunk size too large", 400);
	c->total += c->remaining;
	c->state = CS_DATA;
	return 0;
}

/* One byte of a chunk extension; where the grammar allows, CR ends the line. */
static int chunk_ext_byte(struct h1_chunk *c, unsigned char ch)
{
	int st = c->state, tch = is_c(ch, C_TCHAR), ows = is_ows(ch);
	if (ch == '\r' && (st == CS_EXT_NAME || st == CS_EXT_VAL || st == CS_EXT_AFTER)) {
		c->state = CS_SIZE_LF;
		return 0;
	}
	if (++c->line_len > c->lim.max_chunk_ext)
		return chunk_err(c, "chunk extension too long", 400);
	if (st == CS_EXT_QS && ch != '"' && ch != '\\' && !is_bad_ctl(ch))
		return 0;
	if (st == CS_EXT_QP && !is_bad_ctl(ch))
		c->state = CS_EXT_QS;
	else if (st == CS_EXT_QS && ch == '"')
		c->state = CS_EXT_AFTER;
	else if (st == CS_EXT_QS && ch == '\\')
		c->state = CS_EXT_QP;
	else if (ows && st != CS_EXT_VAL_WS && st != CS_EXT_NAME_WS)
		c->state = st == CS_EXT_NAME			    ? CS_EXT_NAME_END
			   : st == CS_EXT_VAL || st == CS_EXT_AFTER ? CS_EXT_WS
								    : st;
	else if (ows)
		; /* BWS after ';' or '=' */
	else if (ch == ';' && st != CS_EXT_NAME_WS && st != CS_EXT_VAL_WS)
		c->state = CS_EXT_NAME_WS;
	else if (ch == '=' && (st == CS_EXT_NAME || st == CS_EXT_NAME_END))
		c->state = CS_EXT_VAL_WS;
	else if (tch && (st == CS_EXT_NAME_WS || st == CS_EXT_NAME))
		c->state = CS_EXT_NAME;
	else if (tch && (st == CS_EXT_VAL_WS || st == CS_EXT_VAL))
		c->state = CS_EXT_VAL;
	else if (ch == '"' && st == CS_EXT_VAL_WS)
		c->state = CS_EXT_QS;
	else
		return chunk_err(c, "invalid chunk extension", 400);
	return 0;
}

/* One byte of the trailer section (after last-chunk) or of the final CRLF. */
static int chunk_trailer_byte(struct h1_chunk *c, unsigned char ch)
{
	int st = c->state;
	if (++c->trailer_len > c->lim.max_head)
		return chunk_err(c, "trailer section too large", 431);
	if (st == CS_END_LF || st == CS_TR_LF) {
		if (ch != '\n')
			return chunk_err(c, "bare CR in trailer section", 400);
		c->state = st == CS_END_LF ? CS_DONE : CS_TR_START;
		return 0;
	}
	if (ch == '\r' && st != CS_TR_NAME) {
		c->state = st == CS_TR_START ? CS_END_LF : CS_TR_LF;
		return 0;
	}
	if (st == CS_TR_START) {
		if (!is_c(ch, C_TCHAR))
			return chunk_err(c, "invalid trailer field", 400);
		if (++c->ntrailers > c->lim.max_headers)
			return chunk_err(c, "too many trailer fields", 431);
		c->line_len = 0;
		c->state = CS_TR_NAME;
	} else if (st == CS_TR_NAME && ch == ':') {
		c->state = CS_TR_VALUE;
	} else if (st == CS_TR_NAME && !is_c(ch, C_TCHAR)) {
		return chunk_err(c, "invalid trailer field name", 400);
	} else if (st == CS_TR_VALUE && is_bad_ctl(ch)) {
		return chunk_err(c, "control character in trailer", 400);
	}
	if (++c->line_len > c->lim.max_line)
		return chunk_err(c, "trailer line too long", 431);
	return 0;
}

/* Advance the scanner by one framing byte (never called in CS_DATA). */
static int chunk_byte(struct h1_chunk *c, unsigned char ch)
{
	int st = c->state;
	if (ch == '\n' && st != CS_SIZE_LF && st != CS_DATA_LF && st != CS_TR_LF && st != CS_END_LF)
		return chunk_err(c, "bare LF in chunked framing", 400);
	switch (st) {
	case CS_SIZE:
		return chunk_size_byte(c, ch);
	case CS_SIZE_LF:
		if (ch != '\n')
			return chunk_err(c, "bare CR in chunk size line", 400);
		return chunk_size_done(c);
	case CS_DATA_CR:
		if (ch != '\r')
			return chunk_err(c, "missing CRLF after chunk data", 400);
		c->state = CS_DATA_LF;
		return 0;
	case CS_DATA_LF:
		if (ch != '\n')
			return chunk_err(c, "missing CRLF after chunk data", 400);
		c->state = CS_SIZE;
		c->ndigits = 0;
		c->remaining = 0;
		return 0;
	case CS_TR_START:
	case CS_TR_NAME:
	case CS_TR_VALUE:
	case CS_TR_LF:
	case CS_END_LF:
		return chunk_trailer_byte(c, ch);
	default:
		return chunk_ext_byte(c, ch);
	}
}

ssize_t h1_chunk_feed(struct h1_chunk *c, const char *buf, size_t len, int *done,
		      void (*on_data)(void *arg, const char *p, size_t n), void *arg)
{
	size_t i = 0;
	*done = 0;
	if (c->state == CS_ERROR)
		return -1;
	while (i < len && c->state != CS_DONE) {
		if (c->state == CS_DATA) {
			size_t n = len - i;
			if (n > c->remaining)
				n = (size_t)c->remaining;
			if (on_data)
				on_data(arg, buf + i, n);
			i += n;
			c->off += n;
			c->remaining -= n;
			if (c->remaining == 0)
				c->state = CS_DATA_CR;
			continue;
		}
		if (chunk_byte(c, (unsigned char)buf[i]) < 0)
			return -1;
		i++;
		c->off++;
	}
	*done = c->state == CS_DONE;
	return (ssize_t)i;
}
