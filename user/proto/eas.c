/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * eas.c - EAS request classification: path, query (plain and base64 forms),
 * headers. See eas.h for the contracts; protocol facts are from
 * /work/shared/reference/eas-protocol.md sections 1 and 2 (MS-ASHTTP).
 *
 * No allocation, no pointer into the caller's buffers survives a call, and
 * no input byte is read past its length.
 */
#include "eas.h"
#include "hex.h"

#include <string.h>

/* Decoded base64 query limit: the longest request without a repeated tag
 * is 5 + 255 + 1 + 4 + 1 + 255 + 9 * 257 bytes, just under 3 KiB. */
#define EAS_B64Q_MAX 3072
/* Decoded Basic credentials limit (user + ':' + password). */
#define EAS_BASIC_MAX 1024
/* Path segments we track for dot-segment removal. */
#define EAS_PATH_DEPTH 64

/* Header bits for eas_req.seen_headers. */
enum {
	H_UA = 1u << 0,
	H_PROTO = 1u << 1,
	H_PKEY = 1u << 2,
	H_WL = 1u << 3,
	H_AUTH = 1u << 4,
	H_AMP = 1u << 5,
};

/* ---- small helpers ------------------------------------------------------- */

static int is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static unsigned char lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static int is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* Case-insensitive (ASCII) comparison of s[0..n) with a NUL-terminated literal. */
static int ci_eq(const char *s, size_t n, const char *lit)
{
	size_t i;
	for (i = 0; i < n; i++)
		if (!lit[i] || lower((unsigned char)s[i]) != lower((unsigned char)lit[i]))
			return 0;
	return lit[i] == 0;
}

/* Record the first refusal only: later errors are consequences or noise. */
static int fail(struct eas_req *r, int http, int eas, const char *why)
{
	if (!r->err) {
		r->err = why;
		r->err_status = http;
		r->err_eas_status = eas;
	}
	return -1;
}

static int has_ctl(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (is_ctl((unsigned char)s[i]))
			return 1;
	return 0;
}

/* Copy n bytes into a field of cap bytes (room for the NUL included). */
static int put_field(char *dst, size_t cap, const char *src, size_t n)
{
	if (n >= cap || has_ctl(src, n))
		return -1;
	memcpy(dst, src, n);
	dst[n] = 0;
	return 0;
}

/*
 * Percent-decode s[0..n) into dst (at most cap bytes written, no NUL).
 * Always scans the whole input so that the flags describe all of it.
 */
struct pct_out {
	size_t len; /* full decoded length, even beyond cap */
	int bad;    /* malformed escape */
	int ctl;    /* decoded control byte (NUL included) */
	int sep;    /* decoded '/' or '\' */
};

static void pct_decode(const char *s, size_t n, int plus_space, char *dst, size_t cap,
		       struct pct_out *o)
{
	memset(o, 0, sizeof(*o));
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%') {
			int hi = i + 2 < n ? hex_digit_value((unsigned char)s[i + 1]) : -1;
			int lo = i + 2 < n ? hex_digit_value((unsigned char)s[i + 2]) : -1;
			if (hi < 0 || lo < 0) {
				o->bad = 1;
				return;
			}
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+' && plus_space) {
			c = ' ';
		}
		o->ctl |= is_ctl(c);
		o->sep |= (c == '/' || c == '\\');
		if (o->len < cap)
			dst[o->len] = (char)c;
		o->len++;
	}
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Standard base64 (RFC 4648 alphabet), padding optional but consistent.
 * Returns the decoded length, or -1 (bad input or longer than cap).
 */
static long b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
	size_t pad = 0;
	while (n > 0 && pad < 2 && in[n - 1] == '=') {
		n--;
		pad++;
	}
	if (n % 4 == 1 || (pad && (n + pad) % 4 != 0))
		return -1;
	size_t olen = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
	if (olen > cap)
		return -1;
	uint32_t acc = 0;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_val((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		if (i % 4 == 3) {
			out[k++] = (uint8_t)(acc >> 16);
			out[k++] = (uint8_t)(acc >> 8);
			out[k++] = (uint8_t)acc;
			acc = 0;
		}
	}
	if (n % 4 == 2) {
		out[k++] = (uint8_t)(acc >> 4);
	} else if (n % 4 == 3) {
		out[k++] = (uint8_t)(acc >> 10);
		out[k++] = (uint8_t)(acc >> 2);
	}
	return (long)k;
}

/* ---- public: init, path --------------------------------------------------- */

void eas_req_init(struct eas_req *r)
{
	memset(r, 0, sizeof(*r));
	r->form = EAS_FORM_NONE;
	r->cmd = EAS_CMD_NONE;
	r->auth_scheme = EAS_AUTH_NONE;
}

enum seg_kind { SEG_OTHER, SEG_EAS, SEG_AUTOD };

/* Kind of one decoded path segment, or -1 if the path is ambiguous. */
static int path_segment(const char *s, size_t n, int *kind)
{
	char seg[32];
	struct pct_out o;
	pct_decode(s, n, 0, seg, sizeof(seg), &o);
	if (o.bad || o.ctl || o.sep)
		return -1;
	*kind = SEG_OTHER;
	if (o.len <= sizeof(seg)) {
		if (ci_eq(seg, o.len, "Microsoft-Server-ActiveSync"))
			*kind = SEG_EAS;
		else if (ci_eq(seg, o.len, "autodiscover"))
			*kind = SEG_AUTOD;
		else if (ci_eq(seg, o.len, "."))
			return 1;
		else if (ci_eq(seg, o.len, ".."))
			return 2;
	}
	return 0;
}

enum eas_path eas_classify_path(const char *path, size_t n)
{
	uint8_t stack[EAS_PATH_DEPTH];
	size_t depth = 0, i = 0;
	const char *q = n ? memchr(path, '?', n) : NULL;

	if (q)
		n = (size_t)(q - path);
	if (n == 0 || path[0] != '/')
		return EAS_PATH_OTHER;
	while (i < n) {
		if (path[i] == '/' || path[i] == '\\') { /* IIS treats '\' as '/' */
			i++;
			continue;
		}
		size_t start = i;
		while (i < n && path[i] != '/' && path[i] != '\\')
			i++;
		int kind, rc = path_segment(path + start, i - start, &kind);
		if (rc < 0)
			return EAS_PATH_OTHER;
		if (rc == 2 && depth > 0)
			depth--;
		if (rc != 0)
			continue;
		if (depth == EAS_PATH_DEPTH)
			return EAS_PATH_OTHER;
		stack[depth++] = (uint8_t)kind;
	}
	if (depth == 0)
		return EAS_PATH_OTHER;
	if (stack[0] == SEG_EAS)
		return EAS_PATH_EAS;
	return stack[0] == SEG_AUTOD ? EAS_PATH_AUTODISCOVER : EAS_PATH_OTHER;
}

/* ---- device id / type rules (Exchange: 400 + 108 / 109) ------------------- */

/* Exchange's own DeviceId rule (MS-ASHTTP 2.2.1.1.1.2: 1*32(ALPHA / DIGIT)). */
static int exchange_device_id(const char *s, size_t n)
{
	if (n == 0 || n > EAS_DEVID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum((unsigned char)s[i]))
			return 0;
	return 1;
}

/*
 * An identifier that every place it is written to takes as it is: a log
 * value, a rule pattern, a CSV or JSON field, a SQLite key, a hash input.
 * The contract (and why each character is refused) is in eas.h.
 */
static int safe_ident(const char *s, size_t n, size_t max, const char *also_refused)
{
	if (n == 0 || n > max || strchr("=+-@", s[0]))
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x21 || c > 0x7e || strchr("\",\\", c) || strchr(also_refused, c))
			return 0;
	}
	return 1;
}

static int valid_device_id(const char *s, size_t n)
{
	if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
		return 0;
	return safe_ident(s, n, EAS_DEVID_MAX, ":");
}

static int valid_device_type(const char *s, size_t n)
{
	return safe_ident(s, n, EAS_DEVTYPE_MAX, "-");
}

static int set_device_id(struct eas_req *r, const char *s, size_t n)
{
	if (!(r->strict_ids ? exchange_device_id(s, n) : valid_device_id(s, n)))
		return fail(r, 400, 108, "DeviceId missing or invalid");
	memcpy(r->device_id, s, n);
	r->device_id[n] = 0;
	return 0;
}

static int set_device_type(struct eas_req *r, const char *s, size_t n)
{
	if (!valid_device_type(s, n))
		return fail(r, 400, 109, "DeviceType missing or invalid");
	memcpy(r->device_type, s, n);
	r->device_type[n] = 0;
	return 0;
}

/* ---- plain-text query ------------------------------------------------------ */

enum plain_param {
	P_CMD,
	P_USER,
	P_DEVID,
	P_DEVTYPE,
	P_COLL,
	P_ITEM,
	P_LONG,
	P_OCC,
	P_ATT,
	P_SIS,
	P__COUNT
};

static const char *const plain_names[P__COUNT] = {
    [P_CMD] = "Cmd",
    [P_USER] = "User",
    [P_DEVID] = "DeviceId",
    [P_DEVTYPE] = "DeviceType",
    [P_COLL] = "CollectionId",
    [P_ITEM] = "ItemId",
    [P_LONG] = "LongId",
    [P_OCC] = "Occurrence",
    [P_ATT] = "AttachmentName",
    [P_SIS] = "SaveInSent",
};

/* The string field a parameter lands in, or NULL for Cmd/DeviceId/... */
static char *plain_field(struct eas_req *r, int p)
{
	switch (p) {
	case P_USER:
		return r->user;
	case P_COLL:
		return r->collection_id;
	case P_ITEM:
		return r->item_id;
	case P_LONG:
		return r->long_id;
	case P_OCC:
		return r->occurrence;
	case P_ATT:
		return r->attachment_name;
	default:
		return NULL;
	}
}

static int set_cmd_name(struct eas_req *r, const char *v, size_t n)
{
	if (n == 0)
		return fail(r, 400, 0, "empty Cmd");
	if (has_ctl(v, n)) /* "Sync%00" must not be "Sync" to anyone */
		return fail(r, 400, 0, "Cmd has control bytes");
	int c = eas_cmd_parse(v, n);
	/* "Options"/"None" name request classes, not commands: a POST with
	 * Cmd=Options must not inherit the always-allowed OPTIONS class. */
	if (c == EAS_CMD_OPTIONS || c == EAS_CMD_NONE)
		c = EAS_CMD_UNKNOWN;
	r->cmd = (enum eas_cmd)c;
	return 0;
}

/* Apply one decoded plain parameter value. */
static int plain_apply(struct eas_req *r, int p, const char *v, size_t n)
{
	char *field = plain_field(r, p);

	if (field) {
		size_t cap = p == P_USER ? sizeof(r->user) : EAS_PARAM_MAX + 1;
		if (put_field(field, cap, v, n) < 0)
			return fail(r, 400, 0, "query parameter too long or has control bytes");
		return 0;
	}
	switch (p) {
	case P_CMD:
		return set_cmd_name(r, v, n);
	case P_DEVID:
		return set_device_id(r, v, n);
	case P_DEVTYPE:
		return set_device_type(r, v, n);
	default: /* P_SIS */
		if (ci_eq(v, n, "T") || ci_eq(v, n, "F")) {
			r->save_in_sent = lower((unsigned char)v[0]) == 't';
			return 0;
		}
		return fail(r, 400, 0, "SaveInSent is not T or F");
	}
}

/* One "name[=value]" segment of a plain query. */
static int plain_segment(struct eas_req *r, const char *s, size_t n)
{
	const char *eq = memchr(s, '=', n);
	size_t nlen = eq ? (size_t)(eq - s) : n;
	const char *v = eq ? eq + 1 : s + n;
	size_t vlen = n - nlen - (eq ? 1 : 0);
	char name[32], val[EAS_PARAM_MAX + 1];
	struct pct_out o;
	int p;

	pct_decode(s, nlen, 1, name, sizeof(name), &o);
	if (o.bad)
		return fail(r, 400, 0, "bad percent-escape in query");
	for (p = 0; p < P__COUNT; p++)
		if (o.len <= sizeof(name) && ci_eq(name, o.len, plain_names[p]))
			break;
	if (p == P__COUNT)
		return 0; /* unknown parameter: ignored, value not inspected */
	if (r->seen_params & (1u << p))
		return fail(r, 400, 0, "repeated query parameter");
	r->seen_params |= 1u << p;

	pct_decode(v, vlen, 1, val, sizeof(val), &o);
	if (o.bad)
		return fail(r, 400, 0, "bad percent-escape in query");
	/* An over-long value is cut to one byte more than any field holds,
	 * so the field's own check refuses it with its status (108/109/400). */
	return plain_apply(r, p, val, o.len < sizeof(val) ? o.len : sizeof(val));
}

static int parse_plain(struct eas_req *r, const char *q, size_t n)
{
	int rc = 0;
	size_t i = 0;

	r->form = EAS_FORM_PLAIN;
	while (i <= n) {
		const char *amp = memchr(q + i, '&', n - i);
		size_t end = amp ? (size_t)(amp - q) : n;
		if (end > i && plain_segment(r, q + i, end - i) < 0)
			rc = -1; /* keep going: later fields still help logs */
		i = end + 1;
	}
	return rc;
}

/* ---- base64 query ---------------------------------------------------------- */

/* Z-Push's IsBase64String(): groups of 4, '=' padding only at the end. */
static int looks_base64(const char *q, size_t n)
{
	if (n == 0 || n % 4 != 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)q[i];
		if (b64_val(c) >= 0)
			continue;
		if (c != '=')
			return 0;
		/* '=' allowed at n-1, or at n-2 when n-1 is '=' too */
		if (!(i == n - 1 || (i == n - 2 && q[n - 1] == '=')))
			return 0;
	}
	return 1;
}

struct cur {
	const uint8_t *p;
	size_t n, off;
};

static int cur_take(struct cur *c, size_t len, const uint8_t **out)
{
	if (len > c->n - c->off)
		return -1;
	*out = c->p + c->off;
	c->off += len;
	return 0;
}

static int cur_u8(struct cur *c, uint8_t *v)
{
	const uint8_t *b;
	if (cur_take(c, 1, &b) < 0)
		return -1;
	*v = b[0];
	return 0;
}

/* A length byte followed by that many bytes. */
static int cur_lv(struct cur *c, const uint8_t **val, uint8_t *len)
{
	if (cur_u8(c, len) < 0)
		return -1;
	return cur_take(c, *len, val);
}

static int valid_b64_version(int v)
{
	/* MS-ASHTTP 2.2.1.1.1.1: base64 is not supported by 2.5 and 12.0. */
	return v == 121 || v == 140 || v == 141 || v == 160 || v == 161;
}

static int b64_device_id(struct eas_req *r, const uint8_t *id, uint8_t len)
{
	static const char hex[] = "0123456789ABCDEF";

	if (valid_device_id((const char *)id, len)) {
		memcpy(r->device_id, id, len);
		r->device_id[len] = 0;
		return 0;
	}
	if (len == 0 || (size_t)len * 2 > EAS_DEVID_MAX)
		return fail(r, 400, 108, "DeviceId missing or invalid");
	for (size_t i = 0; i < len; i++) {
		r->device_id[2 * i] = hex[id[i] >> 4];
		r->device_id[2 * i + 1] = hex[id[i] & 15];
	}
	r->device_id[2 * (size_t)len] = 0;
	return 0;
}

static char *b64_tag_field(struct eas_req *r, uint8_t tag)
{
	switch (tag) {
	case 0:
		return r->attachment_name;
	case 1:
		return r->collection_id;
	case 3:
		return r->item_id;
	case 4:
		return r->long_id;
	case 6:
		return r->occurrence;
	case 8:
		return r->user;
	default: /* 2 CollectionName, 5 ParentId: deprecated; others unknown */
		return NULL;
	}
}

static int b64_param(struct eas_req *r, uint8_t tag, const uint8_t *v, uint8_t len)
{
	char *field = b64_tag_field(r, tag);

	if (tag <= 8) {
		if (r->seen_params & (1u << tag))
			return fail(r, 400, 0, "repeated base64 query parameter");
		r->seen_params |= 1u << tag;
	}
	if (tag == 7) {
		if (len != 1)
			return fail(r, 400, 0, "base64 Options parameter is not one byte");
		r->options = v[0];
		r->save_in_sent = (v[0] & 0x01) != 0;
		r->accept_multipart = (v[0] & 0x02) != 0;
		return 0;
	}
	if (!field)
		return 0;
	/* every field holds 255 bytes plus NUL, so only control bytes fail */
	if (put_field(field, EAS_PARAM_MAX + 1, (const char *)v, len) < 0)
		return fail(r, 400, 0, "base64 query parameter has control bytes");
	return 0;
}

/*
 * Fixed head: version, command, locale, DeviceId, policy key, DeviceType.
 * Returns 0, -1 (bad DeviceId/DeviceType: the parameters that follow are
 * still well-framed) or -2 (framing broken: stop).
 */
static int b64_head(struct eas_req *r, struct cur *c)
{
	const uint8_t *b, *id, *pk, *type;
	uint8_t idlen, pklen, typelen;

	if (cur_take(c, 4, &b) < 0 || cur_lv(c, &id, &idlen) < 0 || cur_lv(c, &pk, &pklen) < 0 ||
	    cur_lv(c, &type, &typelen) < 0)
		return fail(r, 400, 0, "base64 query truncated") - 1;
	if (!valid_b64_version(b[0]))
		return fail(r, 400, 0, "base64 query: unsupported protocol version") - 1;
	if (!eas_cmd_is_base64_code(b[1]))
		return fail(r, 400, 0, "base64 query: unknown command code") - 1;
	if (pklen != 0 && pklen != 4)
		return fail(r, 400, 0, "base64 query: policy key length not 0 or 4") - 1;
	r->q_proto = b[0];
	r->cmd = (enum eas_cmd)b[1];
	r->locale = (uint16_t)(b[2] | b[3] << 8);
	if (pklen == 4) {
		r->q_has_policy_key = 1;
		r->q_policy_key = (uint32_t)pk[0] | (uint32_t)pk[1] << 8 | (uint32_t)pk[2] << 16 |
				  (uint32_t)pk[3] << 24;
	}
	int rc = b64_device_id(r, id, idlen);
	if (set_device_type(r, (const char *)type, typelen) < 0)
		rc = -1;
	return rc;
}

static int parse_base64(struct eas_req *r, const char *q, size_t n)
{
	uint8_t buf[EAS_B64Q_MAX];
	long len;
	int rc;

	r->form = EAS_FORM_BASE64;
	if (n / 4 * 3 > sizeof(buf) + 2)
		return fail(r, 400, 0, "base64 query too long");
	len = b64_decode(q, n, buf, sizeof(buf));
	if (len < 0)
		return fail(r, 400, 0, "base64 query does not decode");
	struct cur c = {buf, (size_t)len, 0};
	rc = b64_head(r, &c);
	if (rc == -2)
		return -1;
	while (c.off < c.n) {
		const uint8_t *v;
		uint8_t tag, vlen;
		if (cur_u8(&c, &tag) < 0 || cur_lv(&c, &v, &vlen) < 0)
			return fail(r, 400, 0, "base64 query parameter truncated");
		if (b64_param(r, tag, v, vlen) < 0)
			rc = -1;
	}
	return rc;
}

int eas_parse_query(struct eas_req *r, const char *q, size_t n)
{
	if (r->form != EAS_FORM_NONE)
		return fail(r, 400, 0, "query parsed twice");
	if (n == 0)
		return 0;
	/* The only base64-shaped string naming a parameter is "Cmd=". */
	if (looks_base64(q, n) && !(n == 4 && ci_eq(q, 4, "Cmd=")))
		return parse_base64(r, q, n);
	return parse_plain(r, q, n);
}

/* ---- headers --------------------------------------------------------------- */

static int parse_proto(const char *v, size_t n)
{
	static const struct {
		const char *s;
		int x10;
	} vers[] = {{"2.5", 25},   {"12.0", 120}, {"12.1", 121}, {"14.0", 140},
		    {"14.1", 141}, {"16.0", 160}, {"16.1", 161}};
	for (size_t i = 0; i < sizeof(vers) / sizeof(vers[0]); i++)
		if (n == strlen(vers[i].s) && !memcmp(v, vers[i].s, n))
			return vers[i].x10;
	return 0;
}

static int parse_u32(const char *v, size_t n, uint32_t *out)
{
	uint64_t x = 0;
	if (n == 0 || n > 10)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	if (x > UINT32_MAX)
		return -1;
	*out = (uint32_t)x;
	return 0;
}

/*
 * Basic credentials: decode into a stack buffer, keep what precedes the
 * first ':' (RFC 7617: the user-id cannot contain ':'), wipe the buffer.
 */
static int auth_basic(struct eas_req *r, const char *v, size_t n)
{
	uint8_t buf[EAS_BASIC_MAX];
	int rc = 0;
	long len = n / 4 * 3 <= sizeof(buf) ? b64_decode(v, n, buf, sizeof(buf)) : -1;

	if (len < 0) {
		rc = fail(r, 400, 0, "Basic credentials malformed or too long");
	} else {
		const uint8_t *colon = memchr(buf, ':', (size_t)len);
		if (!colon)
			rc = fail(r, 400, 0, "Basic credentials without ':'");
		else if (put_field(r->auth_user, sizeof(r->auth_user), (const char *)buf,
				   (size_t)(colon - buf)) < 0)
			rc = fail(r, 400, 0, "Basic user too long or has control bytes");
	}
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

static int parse_auth(struct eas_req *r, const char *v, size_t n)
{
	size_t s = 0;
	while (s < n && v[s] != ' ' && v[s] != '\t')
		s++;
	size_t rest = s;
	while (rest < n && (v[rest] == ' ' || v[rest] == '\t'))
		rest++;

	if (ci_eq(v, s, "Basic")) {
		r->auth_scheme = EAS_AUTH_BASIC;
		return auth_basic(r, v + rest, n - rest);
	}
	if (ci_eq(v, s, "NTLM"))
		r->auth_scheme = EAS_AUTH_NTLM;
	else if (ci_eq(v, s, "Negotiate"))
		r->auth_scheme = EAS_AUTH_NEGOTIATE;
	else if (ci_eq(v, s, "Bearer"))
		r->auth_scheme = EAS_AUTH_BEARER;
	else
		r->auth_scheme = EAS_AUTH_OTHER;
	return 0;
}

/* Which handled header is this? 0 if none. By length first: every header
 * of every request comes here, and most are none of these. */
static unsigned header_bit(const char *name, size_t nlen)
{
	switch (nlen) {
	case 7:
		return ci_eq(name, nlen, "X-MS-WL") ? H_WL : 0;
	case 10:
		return ci_eq(name, nlen, "User-Agent") ? H_UA : 0;
	case 13:
		return ci_eq(name, nlen, "Authorization") ? H_AUTH : 0;
	case 14:
		return ci_eq(name, nlen, "X-MS-PolicyKey") ? H_PKEY : 0;
	case 20:
		if (ci_eq(name, nlen, "MS-ASProtocolVersion"))
			return H_PROTO;
		return ci_eq(name, nlen, "MS-ASAcceptMultiPart") ? H_AMP : 0;
	default:
		return 0;
	}
}

static int header_apply(struct eas_req *r, unsigned bit, const char *v, size_t n)
{
	switch (bit) {
	case H_UA:
		if (put_field(r->user_agent, sizeof(r->user_agent), v, n) < 0)
			return fail(r, 400, 0, "User-Agent too long or has control bytes");
		return 0;
	case H_WL:
		if (put_field(r->xmswl, sizeof(r->xmswl), v, n) < 0)
			return fail(r, 400, 0, "X-MS-WL too long or has control bytes");
		return 0;
	case H_PROTO:
		r->hdr_proto = parse_proto(v, n);
		return r->hdr_proto ? 0 : fail(r, 400, 0, "unsupported MS-ASProtocolVersion");
	case H_PKEY:
		if (parse_u32(v, n, &r->hdr_policy_key) < 0)
			return fail(r, 400, 0, "X-MS-PolicyKey is not a uint32");
		r->hdr_has_policy_key = 1;
		return 0;
	case H_AMP:
		if (!ci_eq(v, n, "T") && !ci_eq(v, n, "F"))
			return fail(r, 400, 0, "MS-ASAcceptMultiPart is not T or F");
		r->accept_multipart |= lower((unsigned char)v[0]) == 't';
		return 0;
	default: /* H_AUTH */
		return parse_auth(r, v, n);
	}
}

int eas_parse_header(struct eas_req *r, const char *name, size_t nlen, const char *val, size_t vlen)
{
	unsigned bit = header_bit(name, nlen);

	if (!bit)
		return 0;
	if (r->seen_headers & bit)
		return fail(r, 400, 0, "repeated EAS request header");
	r->seen_headers |= bit;
	while (vlen > 0 && (val[0] == ' ' || val[0] == '\t')) {
		val++;
		vlen--;
	}
	while (vlen > 0 && (val[vlen - 1] == ' ' || val[vlen - 1] == '\t'))
		vlen--;
	return header_apply(r, bit, val, vlen);
}

/* ---- finish ---------------------------------------------------------------- */

static void set_identity(struct eas_req *r)
{
	const char *src = r->auth_user[0] ? r->auth_user : r->user;
	size_t i;
	for (i = 0; src[i] && i < EAS_USER_MAX; i++)
		r->identity[i] = (char)lower((unsigned char)src[i]);
	r->identity[i] = 0;
}

int eas_finish(struct eas_req *r, int is_options)
{
	int b64 = r->form == EAS_FORM_BASE64;

	r->proto = b64 ? r->q_proto : r->hdr_proto;
	r->has_policy_key = b64 && r->q_has_policy_key ? 1 : r->hdr_has_policy_key;
	r->policy_key = b64 && r->q_has_policy_key ? r->q_policy_key : r->hdr_policy_key;
	set_identity(r);

	if (is_options) {
		r->cmd = EAS_CMD_OPTIONS; /* may omit DeviceId/DeviceType/Cmd */
	} else if (!r->err) {
		if (!r->device_id[0])
			fail(r, 400, 108, "DeviceId missing or invalid");
		else if (!r->device_type[0])
			fail(r, 400, 109, "DeviceType missing or invalid");
		else if (r->cmd == EAS_CMD_NONE)
			fail(r, 400, 0, "no Cmd in request");
	}
	return r->err ? -1 : 0;
}

int eas_request_from_h1(struct eas_req *r, const struct h1_msg *m, enum eas_path pk, int strict_ids)
{
	int is_options = m->method == H1_M_OPTIONS, bad = 0;

	eas_req_init(r);
	r->strict_ids = strict_ids != 0;
	/* Every part is read even after a refusal, so that what was valid
	 * (notably cmd and the identity) is there to log; err is the first. */
	if (pk == EAS_PATH_EAS && m->query.n)
		bad |= eas_parse_query(r, m->query.p, m->query.n) < 0;
	for (unsigned i = 0; i < m->nhdr; i++)
		bad |= eas_parse_header(r, m->hdr[i].name.p, m->hdr[i].name.n, m->hdr[i].value.p,
					m->hdr[i].value.n) < 0;
	bad |= eas_finish(r, is_options || pk == EAS_PATH_AUTODISCOVER) < 0;
	if (pk == EAS_PATH_AUTODISCOVER)
		r->cmd = EAS_CMD_NONE;
	return bad ? -1 : 0;
}

int eas_cmd_is_hanging(enum eas_cmd cmd)
{
	return cmd == EAS_CMD_PING;
}
