/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * policy.c - see policy.h.
 *
 * Layout: names, rule text parser, rule formatter, compilation (hash tables,
 * globs, regexes, version patterns, personal lists), decision.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "policy.h"

#include <errno.h>
#include <limits.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eas_cmd.h"
#include "log.h"
#include "osver.h"
#include "sbuf.h"

/*
 * PRECEDENCE - how policy_decide() decides; the same text is returned by
 * policy_precedence_doc(). Steps are tried in order; the first that applies
 * decides.
 *
 *  1. OPTIONS is always allowed (Exchange does the same: clients probe with
 *     OPTIONS before anything else, and it reveals nothing).
 *  2. admin_state BLOCK, then the personal blocked list: blocked
 *     (Exchange checks ActiveSyncBlockedDeviceIDs first; the gateway's
 *     per-device "block" is the same thing).
 *  3. admin_state QUARANTINE: quarantined. A deliberate hold on one device
 *     ranks above approvals but can never undo a block.
 *  4. admin_state ALLOW ("approve"), then the personal allowed list: allowed
 *     (Exchange approves a quarantined device by adding it to
 *     ActiveSyncAllowedDeviceIDs, which beats every rule).
 *  5. Rules scoped to the request's command (cmd ...), then unscoped rules.
 *     A scoped rule is more specific on the command axis; ranking it first
 *     is what makes "block MeetingResponse for ^Apple.*1002" work while an
 *     unscoped allow rule for the same phones lets mail flow.
 *     Within each pass, characteristics are tried in this fixed order and
 *     the first characteristic with a matching rule decides:
 *       DeviceId, User       - extensions, most specific first: they name
 *                              one device or one person;
 *       UserAgent, DeviceOS,
 *       DeviceModel, DeviceType - Exchange's observed order;
 *       XMSWL                - last, where Exchange's enum puts it (current
 *                              Exchange may not evaluate it at all).
 *     Within a characteristic the earliest rule (config order) wins, and its
 *     level is used as is: no "block beats allow" merging (as Exchange).
 *  6. No rule matched: the default access level.
 *  7. Incubation: when 5 or 6 said allow, the OS family is covered, the OS
 *     version (the canonical "family version build") was first seen less
 *     than N days ago and is not approved: quarantined. It only ever turns
 *     a rule/default allow into quarantine; it never touches blocks,
 *     quarantines or personal/admin allows.
 * DeviceModel falls back to DeviceType when empty (as Exchange). DeviceOS
 * falls back to the OS derived from the User-Agent, so OS rules apply before
 * the phone sends DeviceInformation.
 */
static const char precedence_doc[] =
    "Decision order (first step that applies decides):\n"
    "  1. OPTIONS requests are always allowed.\n"
    "  2. Admin per-device block, then the personal blocked list (DeviceId or user:DeviceId): "
    "block.\n"
    "  3. Admin per-device quarantine: quarantine.\n"
    "  4. Admin per-device allow (approve), then the personal allowed list: allow.\n"
    "  5. Rules: first those scoped to the request's command (cmd ...), then unscoped rules.\n"
    "     In each pass characteristics are tried in this order and the first one with a\n"
    "     matching rule decides: DeviceId, User, UserAgent, DeviceOS, DeviceModel,\n"
    "     DeviceType, XMSWL. Within a characteristic the earliest rule wins; its access\n"
    "     level is used as is.\n"
    "  6. No rule matched: the default access level.\n"
    "  7. Incubation: an allow from step 5 or 6 becomes quarantine while the device's OS\n"
    "     version (family version build) was first seen less than N days ago and is not\n"
    "     approved. It never overrides a block, a quarantine or a personal/admin allow.\n"
    "DeviceModel falls back to DeviceType; DeviceOS falls back to the OS derived from the\n"
    "User-Agent (e.g. Apple-iPhone4C1/1002.142 is \"iOS 6.1 10B142\").\n";

const char *policy_precedence_doc(void)
{
	return precedence_doc;
}

/* Bound on regex backtracking per match, so one bad pattern cannot stall a
 * worker on a long User-Agent (a pattern over the limit does not match). */
#define POLICY_RE_MATCH_LIMIT 100000u
#define POLICY_MAX_RULES      (1u << 20)
#define POLICY_ID_MAX	      256 /* personal list entry, "user:DeviceId" */

/* ---- names ---------------------------------------------------------------- */

static const char *const access_names[] = {"allow", "block", "quarantine"};

static const char *const char_names[POLICY_CH__COUNT] = {
    [POLICY_CH_DEVICEID] = "DeviceId",
    [POLICY_CH_USER] = "User",
    [POLICY_CH_USERAGENT] = "UserAgent",
    [POLICY_CH_DEVICEOS] = "DeviceOS",
    [POLICY_CH_DEVICEMODEL] = "DeviceModel",
    [POLICY_CH_DEVICETYPE] = "DeviceType",
    [POLICY_CH_XMSWL] = "XMSWL",
};

static const char *const op_names[] = {
    [POLICY_OP_IS] = "is", [POLICY_OP_LIKE] = "like", [POLICY_OP_MATCHES] = "matches",
    [POLICY_OP_LT] = "<",  [POLICY_OP_LE] = "<=",     [POLICY_OP_GT] = ">",
    [POLICY_OP_GE] = ">=", [POLICY_OP_EQ] = "==",     [POLICY_OP_NE] = "!=",
};
#define N_OPS ((int)(sizeof(op_names) / sizeof(op_names[0])))

static const char *const reason_names[] = {
    [POLICY_R_OPTIONS] = "OPTIONS",
    [POLICY_R_ADMIN] = "ADMIN",
    [POLICY_R_INDIVIDUAL_BLOCK] = "INDIVIDUAL_BLOCK",
    [POLICY_R_INDIVIDUAL_ALLOW] = "INDIVIDUAL_ALLOW",
    [POLICY_R_RULE] = "RULE",
    [POLICY_R_INCUBATION] = "INCUBATION",
    [POLICY_R_DEFAULT] = "DEFAULT",
};

const char *policy_access_name(int a)
{
	return a >= 0 && a < 3 ? access_names[a] : "?";
}

int policy_access_parse(const char *s)
{
	for (int i = 0; s && i < 3; i++)
		if (!strcasecmp(s, access_names[i]))
			return i;
	return -1;
}

const char *policy_char_name(int ch)
{
	return ch >= 0 && ch < POLICY_CH__COUNT ? char_names[ch] : "?";
}

const char *policy_reason_name(int r)
{
	return r >= 0 && r <= POLICY_R_DEFAULT ? reason_names[r] : "?";
}

static int op_is_version(int op)
{
	return op >= POLICY_OP_LT && op <= POLICY_OP_NE;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t';
}

static int is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static unsigned char fold(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* ---- rule text parser ----------------------------------------------------- */

struct lex {
	const char *s;
	size_t i;
	char *err;
	size_t errsz;
};

__attribute__((format(printf, 3, 4))) static int lex_fail(struct lex *lx, size_t at,
							  const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(lx->err, lx->errsz, "column %zu: ", at + 1);
	if (n >= 0 && (size_t)n < lx->errsz) {
		va_start(ap, fmt);
		vsnprintf(lx->err + n, lx->errsz - (size_t)n, fmt, ap);
		va_end(ap);
	}
	/* A quoted word may hold control bytes (a raw newline from a config
	 * string): an error stays one line. */
	if (lx->errsz)
		log_mask_ctl(lx->err);
	return -EINVAL;
}

/* Skip blanks; 1 when nothing but a comment remains. */
static int lex_at_end(struct lex *lx)
{
	while (is_space(lx->s[lx->i]))
		lx->i++;
	return !lx->s[lx->i] || lx->s[lx->i] == '#';
}

/* A keyword: the run of non-blank, non-quote bytes. Sets *at to its start. */
static size_t lex_word(struct lex *lx, const char **w, size_t *at)
{
	lex_at_end(lx);
	*at = lx->i;
	*w = lx->s + lx->i;
	while (lx->s[lx->i] && !is_space(lx->s[lx->i]) && lx->s[lx->i] != '"')
		lx->i++;
	return lx->i - *at;
}

static int word_is(const char *w, size_t n, const char *kw)
{
	return strlen(kw) == n && !strncasecmp(w, kw, n);
}

/* A quoted string with \" and \\ escapes, into buf (cap bytes). */
static int lex_quoted(struct lex *lx, char *buf, size_t cap, const char *what)
{
	size_t start = lx->i, n = 0;
	lx->i++; /* opening quote */
	for (;;) {
		unsigned char c = (unsigned char)lx->s[lx->i];
		if (!c)
			return lex_fail(lx, start, "unterminated quote in %s", what);
		if (c == '"') {
			lx->i++;
			break;
		}
		if (is_ctl(c))
			return lex_fail(lx, lx->i, "control character in %s", what);
		if (c == '\\' && (lx->s[lx->i + 1] == '"' || lx->s[lx->i + 1] == '\\'))
			c = (unsigned char)lx->s[++lx->i];
		if (n + 1 >= cap)
			return lex_fail(lx, start, "%s longer than %zu bytes", what, cap - 1);
		buf[n++] = (char)c;
		lx->i++;
	}
	buf[n] = 0;
	if (lx->s[lx->i] && !is_space(lx->s[lx->i]))
		return lex_fail(lx, lx->i, "expected a blank after the closing quote of %s", what);
	return (int)n;
}

/* A pattern or name: quoted, or one unquoted word. */
static int lex_value(struct lex *lx, char *buf, size_t cap, const char *what)
{
	if (lex_at_end(lx))
		return lex_fail(lx, lx->i, "missing %s", what);
	if (lx->s[lx->i] == '"')
		return lex_quoted(lx, buf, cap, what);
	size_t start = lx->i, n = 0;
	while (lx->s[lx->i] && !is_space(lx->s[lx->i])) {
		unsigned char c = (unsigned char)lx->s[lx->i];
		if (c == '"')
			return lex_fail(lx, lx->i, "stray quote in unquoted %s (quote it)", what);
		if (is_ctl(c))
			return lex_fail(lx, lx->i, "control character in %s", what);
		if (n + 1 >= cap)
			return lex_fail(lx, start, "%s longer than %zu bytes", what, cap - 1);
		buf[n++] = (char)c;
		lx->i++;
	}
	buf[n] = 0;
	return (int)n;
}

static int parse_access(struct lex *lx, struct policy_rule *r)
{
	const char *w;
	if (lex_at_end(lx))
		return lex_fail(lx, lx->i, "empty rule (expected allow, block or quarantine)");
	size_t at, n = lex_word(lx, &w, &at);
	for (int i = 0; i < 3; i++) {
		if (word_is(w, n, access_names[i])) {
			r->access = i;
			return 0;
		}
	}
	return lex_fail(lx, at, "unknown access '%.*s' (expected allow, block or quarantine)",
			(int)n, w);
}

static int parse_char(struct lex *lx, struct policy_rule *r)
{
	const char *w;
	size_t at, n = lex_word(lx, &w, &at);
	for (int i = 0; i < POLICY_CH__COUNT; i++) {
		if (word_is(w, n, char_names[i])) {
			r->ch = i;
			return 0;
		}
	}
	if (word_is(w, n, "X-MS-WL") || word_is(w, n, "XMSWLHeader")) {
		r->ch = POLICY_CH_XMSWL;
		return 0;
	}
	if (!n)
		return lex_fail(lx, at, "missing characteristic");
	return lex_fail(lx, at,
			"unknown characteristic '%.*s' (expected DeviceType, DeviceModel, "
			"DeviceOS, UserAgent, XMSWL, User or DeviceId)",
			(int)n, w);
}

static int parse_op(struct lex *lx, struct policy_rule *r, size_t *at)
{
	const char *w;
	size_t n = lex_word(lx, &w, at);
	for (int i = 0; i < N_OPS; i++) {
		if (word_is(w, n, op_names[i])) {
			r->op = i;
			return 0;
		}
	}
	if (!n)
		return lex_fail(lx, *at, "missing operator");
	return lex_fail(lx, *at,
			"unknown operator '%.*s' (expected is, like, matches, <, <=, >, >=, == "
			"or !=)",
			(int)n, w);
}

/* "cmd Sync,Ping" / "cmd Sync, Ping" */
static int parse_cmds(struct lex *lx, struct policy_rule *r)
{
	for (;;) {
		lex_at_end(lx);
		size_t at = lx->i, n = 0;
		while ((lx->s[at + n] | 0x20) >= 'a' && (lx->s[at + n] | 0x20) <= 'z')
			n++;
		if (!n)
			return lex_fail(lx, at, "expected a command name after 'cmd'");
		int c = eas_cmd_parse(lx->s + at, n);
		if (c == EAS_CMD_OPTIONS)
			return lex_fail(lx, at,
					"OPTIONS is always allowed; a rule cannot scope it");
		if (c == EAS_CMD_UNKNOWN || c == EAS_CMD_NONE)
			return lex_fail(lx, at, "unknown command '%.*s'", (int)n, lx->s + at);
		r->cmds |= EAS_CMD_BIT(c);
		lx->i = at + n;
		while (is_space(lx->s[lx->i]))
			lx->i++;
		if (lx->s[lx->i] != ',')
			return 0;
		lx->i++;
	}
}

static int check_name(struct lex *lx, size_t at, const char *name)
{
	if (!name[0])
		return lex_fail(lx, at, "empty name");
	return 0;
}

/* Optional clauses after the pattern: cmd ..., name ..., each at most once. */
static int parse_clauses(struct lex *lx, struct policy_rule *r)
{
	int have_cmd = 0, have_name = 0, rc;
	while (!lex_at_end(lx)) {
		const char *w;
		size_t at, n = lex_word(lx, &w, &at);
		if (word_is(w, n, "cmd") && !have_cmd) {
			have_cmd = 1;
			if ((rc = parse_cmds(lx, r)) < 0)
				return rc;
		} else if (word_is(w, n, "name") && !have_name) {
			have_name = 1;
			lex_at_end(lx);
			size_t vat = lx->i;
			if ((rc = lex_value(lx, r->name, sizeof(r->name), "name")) < 0)
				return rc;
			if ((rc = check_name(lx, vat, r->name)) < 0)
				return rc;
		} else if (word_is(w, n, "cmd") || word_is(w, n, "name")) {
			return lex_fail(lx, at, "'%.*s' given twice", (int)n, w);
		} else {
			if (!n) /* a quote where a keyword belongs */
				n = 1;
			return lex_fail(lx, at,
					"unexpected '%.*s' after the pattern (expected cmd or "
					"name)",
					(int)n, w);
		}
	}
	return 0;
}

/* Compile a regex; on error report "bad regex: <why> at pattern offset N". */
static pcre2_code *regex_compile(const char *pat, char *why, size_t whysz)
{
	int ec;
	PCRE2_SIZE off;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL);
	if (!re && why) {
		PCRE2_UCHAR msg[160];
		if (pcre2_get_error_message(ec, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", ec);
		snprintf(why, whysz, "bad regex: %s at pattern offset %zu", (char *)msg,
			 (size_t)off);
	}
	return re;
}

/* A version pattern: "<family> <version>" without a build. */
static int version_pattern(const char *pat, struct osver *o)
{
	if (osver_parse(pat, o) < 0 || !o->nv || o->build[0] || o->src != OSVER_SRC_TEXT)
		return -1;
	return 0;
}

static int validate_pattern(struct lex *lx, size_t op_at, size_t pat_at, struct policy_rule *r)
{
	if (!r->pattern[0])
		return lex_fail(lx, pat_at, "empty pattern");
	if (op_is_version(r->op)) {
		struct osver o;
		if (r->ch != POLICY_CH_DEVICEOS)
			return lex_fail(lx, op_at,
					"version comparison '%s' works only on DeviceOS (use is, "
					"like or matches on %s)",
					op_names[r->op], char_names[r->ch]);
		if (version_pattern(r->pattern, &o) < 0)
			return lex_fail(lx, pat_at,
					"version pattern must be \"<family> <version>\" without a "
					"build, e.g. \"iOS 7.0.2\"");
	}
	if (r->op == POLICY_OP_MATCHES) {
		char why[200];
		pcre2_code *re = regex_compile(r->pattern, why, sizeof(why));
		if (!re)
			return lex_fail(lx, pat_at, "%s", why);
		pcre2_code_free(re);
	}
	return 0;
}

int policy_rule_parse(const char *text, struct policy_rule *r, char *err, size_t errsz)
{
	char dummy[8];
	struct lex lx = {.s = text ? text : "", .err = err, .errsz = errsz};
	size_t op_at, pat_at;
	int rc;

	if (!err || !errsz) {
		lx.err = dummy;
		lx.errsz = sizeof(dummy);
	}
	lx.err[0] = 0;
	memset(r, 0, sizeof(*r));
	if ((rc = parse_access(&lx, r)) < 0 || (rc = parse_char(&lx, r)) < 0 ||
	    (rc = parse_op(&lx, r, &op_at)) < 0)
		goto out;
	lex_at_end(&lx);
	pat_at = lx.i;
	if ((rc = lex_value(&lx, r->pattern, sizeof(r->pattern), "pattern")) < 0)
		goto out;
	if ((rc = parse_clauses(&lx, r)) < 0 || (rc = validate_pattern(&lx, op_at, pat_at, r)) < 0)
		goto out;
	return 0;
out:
	memset(r, 0, sizeof(*r));
	return rc;
}

/* ---- rule formatter ------------------------------------------------------- */

/* A pattern or name in double quotes, '"' and '\\' escaped: what the parser reads back. */
static void put_rule_quoted(struct sbuf *o, const char *s)
{
	sbuf_put(o, "\"", 1);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			sbuf_put(o, "\\", 1);
		sbuf_put(o, s, 1);
	}
	sbuf_put(o, "\"", 1);
}

int policy_rule_format(const struct policy_rule *r, char *out, size_t cap)
{
	struct sbuf o;

	if (!cap)
		return -ENOSPC;
	sbuf_fixed(&o, out, cap);
	if (r->access < 0 || r->access > 2 || r->ch < 0 || r->ch >= POLICY_CH__COUNT || r->op < 0 ||
	    r->op >= N_OPS)
		return -EINVAL;
	sbuf_puts(&o, access_names[r->access]);
	sbuf_puts(&o, " ");
	sbuf_puts(&o, char_names[r->ch]);
	sbuf_puts(&o, " ");
	sbuf_puts(&o, op_names[r->op]);
	sbuf_puts(&o, " ");
	put_rule_quoted(&o, r->pattern);
	if (r->cmds) {
		const char *sep = " cmd ";
		for (int c = 0; c < 64; c++) {
			if (!(r->cmds & EAS_CMD_BIT(c)))
				continue;
			sbuf_puts(&o, sep);
			sbuf_puts(&o, eas_cmd_name(c));
			sep = ",";
		}
	}
	if (r->name[0]) {
		sbuf_puts(&o, " name ");
		put_rule_quoted(&o, r->name);
	}
	if (o.cut) {
		out[0] = 0;
		return -ENOSPC;
	}
	return (int)o.len;
}

int policy_rule_equal(const struct policy_rule *a, const struct policy_rule *b)
{
	return a->access == b->access && a->ch == b->ch && a->op == b->op && a->cmds == b->cmds &&
	       !strcmp(a->pattern, b->pattern) && !strcmp(a->name, b->name);
}

/* ---- exact-match hash tables ---------------------------------------------- */

/*
 * Open addressing, keys stored case-folded, looked up with the raw value
 * folded on the fly (no allocation per decision). Each key keeps the rule
 * (or list entry) indices that carry it, ascending.
 */
struct xent {
	char *key; /* folded, NUL-terminated; NULL = empty slot */
	size_t klen;
	uint64_t h;
	int *idx;
	size_t n;
};

struct xtab {
	struct xent *e;
	size_t mask; /* capacity - 1; capacity is a power of two */
	size_t used;
};

/* ASCII-lower-case the 8 bytes of w at once (bytes >= 0x80 untouched). */
static uint64_t fold8(uint64_t w)
{
	const uint64_t lo7 = 0x7f7f7f7f7f7f7f7full, hi = 0x8080808080808080ull;
	uint64_t h7 = w & lo7;
	uint64_t ge_a = h7 + 0x3f3f3f3f3f3f3f3full; /* high bit set where byte >= 'A' */
	uint64_t gt_z = h7 + 0x2525252525252525ull; /* high bit set where byte > 'Z' */
	uint64_t upper = (ge_a ^ gt_z) & ~w & hi;
	return w | (upper >> 2);
}

/* Up to 8 bytes of s as a little-endian word, zero-padded. */
static uint64_t load8(const char *s, size_t n)
{
	uint64_t w = 0;
	memcpy(&w, s, n < 8 ? n : 8);
	return w;
}

/*
 * Case-folded hash, a word at a time (keys are admin-configured and the
 * table is never written at run time, so a fast non-keyed mix is fine).
 */
static uint64_t hash_fold(const char *s, size_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
	for (size_t i = 0; i < n; i += 8) {
		h ^= fold8(load8(s + i, n - i));
		h *= 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	return h;
}

static int xtab_init(struct xtab *t, size_t nkeys)
{
	size_t cap = 8;
	while (cap < nkeys * 2)
		cap <<= 1;
	t->e = calloc(cap, sizeof(*t->e));
	t->mask = cap - 1;
	t->used = 0;
	return t->e ? 0 : -ENOMEM;
}

static int key_eq(const struct xent *e, uint64_t h, const char *s, size_t n)
{
	if (e->h != h || e->klen != n)
		return 0;
	for (size_t i = 0; i < n; i += 8)
		if (load8(e->key + i, n - i) != fold8(load8(s + i, n - i)))
			return 0;
	return 1;
}

static const struct xent *xtab_find(const struct xtab *t, const char *s, size_t n)
{
	if (!t->used)
		return NULL;
	uint64_t h = hash_fold(s, n);
	for (size_t i = (size_t)h & t->mask;; i = (i + 1) & t->mask) {
		const struct xent *e = &t->e[i];
		if (!e->key)
			return NULL;
		if (key_eq(e, h, s, n))
			return e;
	}
}

/* Add idx under key s (folded copy made on first insert). */
static int xtab_add(struct xtab *t, const char *s, size_t n, int idx)
{
	uint64_t h = hash_fold(s, n);
	size_t i = (size_t)h & t->mask;
	while (t->e[i].key && !key_eq(&t->e[i], h, s, n))
		i = (i + 1) & t->mask;
	struct xent *e = &t->e[i];
	if (!e->key) {
		if (!(e->key = malloc(n + 1)))
			return -ENOMEM;
		for (size_t k = 0; k < n; k++)
			e->key[k] = (char)fold((unsigned char)s[k]);
		e->key[n] = 0;
		e->klen = n;
		e->h = h;
		t->used++;
	}
	int *ni = realloc(e->idx, (e->n + 1) * sizeof(*ni));
	if (!ni)
		return -ENOMEM;
	e->idx = ni;
	e->idx[e->n++] = idx;
	return 0;
}

static void xtab_free(struct xtab *t)
{
	for (size_t i = 0; t->e && i <= t->mask; i++) {
		free(t->e[i].key);
		free(t->e[i].idx);
	}
	free(t->e);
	memset(t, 0, sizeof(*t));
}

/* ---- compiled policy ----------------------------------------------------- */

struct crule {
	struct policy_rule r;
	size_t plen;
	pcre2_code *re;	  /* matches */
	struct osver ver; /* version ops */
	size_t ver_famlen;
	char *glob;    /* like: pattern folded */
	size_t prefix; /* like: literal bytes before the first wildcard */
	size_t minlen; /* like: bytes a value needs at least */
	int has_star;  /* like */
	int pf[2];     /* prefilter trigram bits every match needs; -1 = none */
};

/*
 * A like/matches/version rule as the scan sees it: compact and contiguous,
 * so skipping a thousand prefiltered rules touches 16 KiB, not the rules.
 */
struct other {
	int idx;       /* rule index */
	int16_t pf[2]; /* copy of crule.pf */
	uint64_t cmds; /* copy of the rule's cmds */
};

/* Rules of one characteristic in one pass (scoped or unscoped). */
struct chset {
	struct xtab exact;
	struct other *others; /* ascending rule index */
	size_t n_others;
	int prefiltered; /* some of others have pf bits: build the value's bitmap */
};

struct idlist {
	struct xtab any;  /* "DeviceId" entries */
	struct xtab user; /* "user:DeviceId" entries, keyed "user:deviceid" */
	char **text;	  /* entries as configured, for explanations */
	size_t n;
};

struct policy {
	int def;
	struct crule *rules;
	size_t nrules;
	struct chset pass[2][POLICY_CH__COUNT]; /* [0] scoped, [1] unscoped */
	uint64_t scoped_cmds;			/* union of scoped rules' cmds */
	struct idlist blocked, allowed;
	int inc_enabled;
	unsigned inc_days;
	char (*inc_fam)[16];
	size_t n_inc_fam;
	pcre2_match_context *mctx;
};

size_t policy_rule_count(const struct policy *p)
{
	return p ? p->nrules : 0;
}

const struct policy_rule *policy_rule_at(const struct policy *p, size_t i)
{
	return p && i < p->nrules ? &p->rules[i].r : NULL;
}

static void idlist_free(struct idlist *l)
{
	xtab_free(&l->any);
	xtab_free(&l->user);
	for (size_t i = 0; i < l->n; i++)
		free(l->text[i]);
	free(l->text);
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nrules; i++) {
		pcre2_code_free(p->rules[i].re);
		free(p->rules[i].glob);
	}
	free(p->rules);
	for (int s = 0; s < 2; s++) {
		for (int c = 0; c < POLICY_CH__COUNT; c++) {
			xtab_free(&p->pass[s][c].exact);
			free(p->pass[s][c].others);
		}
	}
	idlist_free(&p->blocked);
	idlist_free(&p->allowed);
	free(p->inc_fam);
	pcre2_match_context_free(p->mctx);
	free(p);
}

__attribute__((format(printf, 3, 4))) static struct policy *fail(char *err, size_t errsz,
								 const char *fmt, ...)
{
	va_list ap;
	if (err && errsz) {
		va_start(ap, fmt);
		vsnprintf(err, errsz, fmt, ap);
		va_end(ap);
	}
	return NULL;
}

/* Gather the rules: parse texts, or re-validate parsed ones via text. */
static int load_rules(struct policy *p, const struct policy_config *c, char *err, size_t errsz)
{
	size_t n = c->rules ? c->n_rules : c->n_rule_texts;
	char why[256], text[POLICY_RULE_TEXT_MAX];

	if (n > POLICY_MAX_RULES) {
		snprintf(err, errsz, "too many rules (%zu, at most %u)", n, POLICY_MAX_RULES);
		return -EINVAL;
	}
	p->rules = calloc(n ? n : 1, sizeof(*p->rules));
	if (!p->rules)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct policy_rule *r = &p->rules[i].r;
		const char *src = c->rules ? text : c->rule_texts[i];
		if (c->rules && policy_rule_format(&c->rules[i], text, sizeof(text)) < 0) {
			snprintf(err, errsz, "rule %zu: invalid rule structure", i + 1);
			return -EINVAL;
		}
		if (policy_rule_parse(src, r, why, sizeof(why)) < 0) {
			snprintf(err, errsz, "rule %zu: %s", i + 1, why);
			return -EINVAL;
		}
		if (c->rules && !policy_rule_equal(r, &c->rules[i])) {
			snprintf(err, errsz, "rule %zu: does not survive formatting (bad bytes?)",
				 i + 1);
			return -EINVAL;
		}
		p->nrules++;
	}
	return 0;
}

/*
 * Prefilter. A glob or regex can only match a value that contains its
 * required literal (a run of plain bytes every match must include). We keep
 * up to two trigrams of that literal, folded, as bits of a 2048-bit set; per
 * decision, each value's trigrams are hashed into a bitmap once, and a rule
 * whose bits are not all present is skipped without running it. Bits can
 * collide (the rule then simply runs), but a rule that could match is never
 * skipped: that is what makes the filter exact.
 */
#define PF_BITS	 2048u
#define PF_WORDS (PF_BITS / 64)

/* 11-bit hash of a folded trigram packed as 0x00aabbcc. */
static unsigned pf_mix(uint32_t tri)
{
	return (tri * 2654435761u) >> 21;
}

static unsigned pf_hash(const unsigned char *t)
{
	return pf_mix(((uint32_t)fold(t[0]) << 16) | ((uint32_t)fold(t[1]) << 8) | fold(t[2]));
}

/* Pick the bits for a required literal of n bytes (n < 3: no filter). */
static void pf_from_literal(struct crule *cr, const char *lit, size_t n)
{
	cr->pf[0] = cr->pf[1] = -1;
	if (n < 3)
		return;
	/* first and last trigram: numbers and versions sit at the end */
	cr->pf[0] = (int)pf_hash((const unsigned char *)lit);
	cr->pf[1] = (int)pf_hash((const unsigned char *)lit + n - 3);
}

static void pf_bitmap(const char *s, size_t n, uint64_t bm[PF_WORDS])
{
	uint32_t tri = 0;
	memset(bm, 0, PF_WORDS * sizeof(uint64_t));
	for (size_t i = 0; i < n; i++) {
		tri = ((tri << 8) | fold((unsigned char)s[i])) & 0xffffff;
		if (i >= 2) {
			unsigned b = pf_mix(tri);
			bm[b / 64] |= UINT64_C(1) << (b % 64);
		}
	}
}

static int pf_pass(const struct other *o, const uint64_t *bm)
{
	for (int k = 0; k < 2; k++) {
		int b = o->pf[k];
		if (b >= 0 && !(bm[(unsigned)b / 64] & (UINT64_C(1) << ((unsigned)b % 64))))
			return 0;
	}
	return 1;
}

/* Longest run of the glob without * or ?. */
static void glob_literal(struct crule *cr)
{
	size_t best = 0, best_at = 0, run = 0;
	for (size_t i = 0; i <= cr->plen; i++) {
		char c = cr->r.pattern[i];
		if (c && c != '*' && c != '?') {
			run++;
			continue;
		}
		if (run > best) {
			best = run;
			best_at = i - run;
		}
		run = 0;
	}
	pf_from_literal(cr, cr->r.pattern + best_at, best);
}

/*
 * The longest literal a regex match must contain, found conservatively at
 * the top level of the pattern (never inside groups, never across
 * quantifiers or classes), folded by the caller's hash. Copies it to out and
 * returns its length; 0 when unsure: then the rule is not prefiltered. Gives up on constructs that
 * change how the rest reads: top-level alternation, \Q, (?x...), (*VERB), (?#, and escapes that
 * take arguments.
 */
struct relit {
	char run[POLICY_PATTERN_MAX], best[POLICY_PATTERN_MAX];
	size_t rn, bn;
	int prev_lit; /* the last token was a literal byte appended to run */
	int depth;    /* group nesting */
	int giveup;   /* a construct we cannot follow: no literal */
};

static void relit_flush(struct relit *x)
{
	if (x->rn > x->bn) {
		memcpy(x->best, x->run, x->rn);
		x->bn = x->rn;
	}
	x->rn = 0;
	x->prev_lit = 0;
}

/*
 * "[:name:]" inside a class at re[i] == '[': the index after it, or 0 if it
 * is not one. Mirrors PCRE2's check: it gives up at the first ']' or "[:".
 */
static size_t relit_posix(const char *re, size_t i)
{
	for (size_t k = i + 2; re[k]; k++) {
		if (re[k] == '\\' && (re[k + 1] == ']' || re[k + 1] == '\\'))
			k++;
		else if (re[k] == ']' || (re[k] == '[' && re[k + 1] == ':'))
			return 0;
		else if (re[k] == ':' && re[k + 1] == ']')
			return k + 2;
	}
	return 0;
}

/* Skip a character class starting at re[i] == '['; returns index after it. */
static size_t relit_skip_class(const char *re, size_t i, int *giveup)
{
	size_t e;
	i++;
	if (re[i] == '^')
		i++;
	if (re[i] == ']')
		i++;
	while (re[i] && re[i] != ']') {
		if (re[i] == '\\') {
			if (!re[i + 1] || re[i + 1] == 'Q')
				break;
			i += 2;
		} else if (re[i] == '[' && re[i + 1] == ':' && (e = relit_posix(re, i))) {
			i = e;
		} else {
			i++;
		}
	}
	if (re[i] != ']')
		*giveup = 1;
	return i + 1;
}

/*
 * Length of a quantifier-shaped "{n}", "{n,}", "{n,m}", "{,m}" (blanks
 * allowed) at re[i], else 0: then PCRE2 reads the '{' as a literal. This is
 * a superset of what any PCRE2 version accepts, so erring is only ever on
 * the side of treating a literal brace as a quantifier (less filtering).
 */
static size_t relit_quant(const char *re, size_t i)
{
	size_t k = i + 1, digits = 0;
	while (re[k] == ' ')
		k++;
	for (; re[k] >= '0' && re[k] <= '9'; k++)
		digits++;
	while (re[k] == ' ')
		k++;
	if (re[k] == ',') {
		k++;
		while (re[k] == ' ')
			k++;
		for (; re[k] >= '0' && re[k] <= '9'; k++)
			digits++;
		while (re[k] == ' ')
			k++;
	}
	return re[k] == '}' && digits ? k + 1 - i : 0;
}

/* "(?" or "(*" at re[i]: 1 if it defeats the literal scan. */
static int relit_bad_group(const char *re, size_t i)
{
	if (re[i + 1] == '*')
		return 1;
	if (re[i + 1] != '?')
		return 0;
	if (re[i + 2] == '#')
		return 1;
	for (size_t k = i + 2; re[k] && re[k] != ')' && re[k] != ':'; k++)
		if (re[k] == 'x')
			return 1;
	return 0;
}

/* A plain byte of the current run. */
static void relit_byte(struct relit *x, char c)
{
	x->run[x->rn++] = c;
	x->prev_lit = 1;
}

/* An escape such as \d or \. at re[i]; returns the index after it. */
static size_t relit_escape(const char *re, size_t i, struct relit *x)
{
	static const char no_arg_escapes[] = "dDwWsSbBAzZGKRhHvVXntrefa";
	unsigned char e = (unsigned char)re[i + 1];
	int alnum = (e >= '0' && e <= '9') || ((e | 0x20) >= 'a' && (e | 0x20) <= 'z');
	if (!e || (alnum && !strchr(no_arg_escapes, e))) {
		x->giveup = 1; /* takes arguments or is a backreference: cannot follow */
		return i + 1;
	}
	if (x->depth == 0) {
		if (alnum)
			relit_flush(x); /* \d, \b, ...: not a literal byte */
		else
			relit_byte(x, (char)e);
	}
	return i + 2;
}

/* A metacharacter or plain byte at the top level; returns the next index. */
static size_t relit_top(const char *re, size_t i, struct relit *x)
{
	char c = re[i];
	size_t q = c == '{' ? relit_quant(re, i) : 0;
	if (c == '|') {
		x->giveup = 1;
		return i + 1;
	}
	if (c == '?' || c == '*' || q) {
		if (x->prev_lit)
			x->rn--; /* the byte before a ?, * or {n,m} is optional */
		relit_flush(x);
		return i + (q ? q : 1);
	}
	if (c == '{' || c == '+' || c == '^' || c == '$' || c == '.') {
		relit_flush(x); /* '+' keeps its byte; a literal '{' stays out */
		return i + 1;
	}
	relit_byte(x, c);
	return i + 1;
}

static size_t regex_literal(const char *re, char *out)
{
	struct relit x = {.rn = 0};

	for (size_t i = 0; re[i] && !x.giveup;) {
		char c = re[i];
		if (c == '\\') {
			i = relit_escape(re, i, &x);
		} else if (c == '[') {
			if (x.depth == 0)
				relit_flush(&x);
			i = relit_skip_class(re, i, &x.giveup);
		} else if (c == '(') {
			x.giveup = relit_bad_group(re, i);
			if (x.depth++ == 0)
				relit_flush(&x);
			i++;
		} else if (c == ')') {
			x.giveup = --x.depth < 0;
			x.prev_lit = 0;
			i++;
		} else {
			i = x.depth > 0 ? i + 1 : relit_top(re, i, &x);
		}
	}
	if (x.giveup || x.depth != 0)
		return 0;
	relit_flush(&x);
	memcpy(out, x.best, x.bn);
	return x.bn;
}

/* Prepare a glob: folded copy, literal prefix, minimum length. */
static int compile_glob(struct crule *cr)
{
	const char *pat = cr->r.pattern;
	if (!(cr->glob = malloc(cr->plen + 1)))
		return -ENOMEM;
	cr->prefix = cr->plen;
	for (size_t i = 0; i < cr->plen; i++) {
		cr->glob[i] = (char)fold((unsigned char)pat[i]);
		if ((pat[i] == '*' || pat[i] == '?') && cr->prefix == cr->plen)
			cr->prefix = i;
		if (pat[i] == '*')
			cr->has_star = 1;
		else
			cr->minlen++;
	}
	cr->glob[cr->plen] = 0;
	return 0;
}

static int compile_rule(struct crule *cr, char *err, size_t errsz, size_t i)
{
	cr->plen = strlen(cr->r.pattern);
	cr->pf[0] = cr->pf[1] = -1;
	switch (cr->r.op) {
	case POLICY_OP_IS:
		return 0;
	case POLICY_OP_LIKE:
		glob_literal(cr);
		return compile_glob(cr);
	case POLICY_OP_MATCHES: {
		char why[200], lit[POLICY_PATTERN_MAX];
		pf_from_literal(cr, lit, regex_literal(cr->r.pattern, lit));
		if (!(cr->re = regex_compile(cr->r.pattern, why, sizeof(why)))) {
			snprintf(err, errsz, "rule %zu: %s", i + 1, why);
			return -EINVAL;
		}
		/* JIT is an optimisation: pcre2_match() interprets if it failed. */
		pcre2_jit_compile(cr->re, PCRE2_JIT_COMPLETE);
		return 0;
	}
	default:
		if (version_pattern(cr->r.pattern, &cr->ver) < 0) {
			snprintf(err, errsz, "rule %zu: bad version pattern", i + 1);
			return -EINVAL;
		}
		cr->ver_famlen = strlen(cr->ver.family);
		return 0;
	}
}

/* Size and fill the per-characteristic structures of both passes. */
static int index_rules(struct policy *p)
{
	size_t nexact[2][POLICY_CH__COUNT] = {{0}}, nother[2][POLICY_CH__COUNT] = {{0}};
	for (size_t i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[i].r;
		int s = r->cmds ? 0 : 1;
		if (r->op == POLICY_OP_IS)
			nexact[s][r->ch]++;
		else
			nother[s][r->ch]++;
		p->scoped_cmds |= r->cmds;
	}
	for (int s = 0; s < 2; s++) {
		for (int c = 0; c < POLICY_CH__COUNT; c++) {
			struct chset *cs = &p->pass[s][c];
			if (nexact[s][c] && xtab_init(&cs->exact, nexact[s][c]) < 0)
				return -ENOMEM;
			if (nother[s][c] &&
			    !(cs->others = calloc(nother[s][c], sizeof(*cs->others))))
				return -ENOMEM;
		}
	}
	for (size_t i = 0; i < p->nrules; i++) {
		const struct crule *cr = &p->rules[i];
		struct chset *cs = &p->pass[cr->r.cmds ? 0 : 1][cr->r.ch];
		if (cr->r.op != POLICY_OP_IS) {
			struct other *o = &cs->others[cs->n_others++];
			o->idx = (int)i;
			o->pf[0] = (int16_t)cr->pf[0];
			o->pf[1] = (int16_t)cr->pf[1];
			o->cmds = cr->r.cmds;
			cs->prefiltered |= cr->pf[0] >= 0;
		} else if (xtab_add(&cs->exact, cr->r.pattern, cr->plen, (int)i) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int id_entry_bad(const char *ent)
{
	size_t n = ent ? strlen(ent) : 0;
	const char *colon = ent ? strrchr(ent, ':') : NULL;
	int bad = n == 0 || n >= POLICY_ID_MAX || (colon && (colon == ent || !colon[1]));
	for (size_t i = 0; !bad && i < n; i++)
		bad = is_ctl((unsigned char)ent[i]) || is_space(ent[i]);
	return bad;
}

int policy_id_entry_check(const char *ent, char *err, size_t errsz)
{
	if (!id_entry_bad(ent))
		return 0;
	snprintf(err, errsz, "want \"DeviceId\" or \"user:DeviceId\" (no blanks, < %d bytes)",
		 POLICY_ID_MAX);
	return -EINVAL;
}

/* One personal list entry: "DeviceId" or "user:DeviceId". */
static int idlist_add(struct idlist *l, const char *ent, char *err, size_t errsz, const char *what)
{
	size_t n = ent ? strlen(ent) : 0;
	const char *colon = ent ? strrchr(ent, ':') : NULL;
	if (id_entry_bad(ent)) {
		snprintf(err, errsz, "%s[%zu]: want \"DeviceId\" or \"user:DeviceId\" (no blanks)",
			 what, l->n);
		return -EINVAL;
	}
	if (!(l->text[l->n] = strdup(ent)))
		return -ENOMEM;
	int rc = xtab_add(colon ? &l->user : &l->any, ent, n, (int)l->n);
	l->n++;
	return rc;
}

static int idlist_build(struct idlist *l, const char *const *ents, size_t n, char *err,
			size_t errsz, const char *what)
{
	if (!(l->text = calloc(n ? n : 1, sizeof(*l->text))) || xtab_init(&l->any, n) < 0 ||
	    xtab_init(&l->user, n) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int rc = idlist_add(l, ents[i], err, errsz, what);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int incubation_setup(struct policy *p, const struct policy_config *c, char *err,
			    size_t errsz)
{
	p->inc_enabled = c->incubation.enabled;
	p->inc_days = c->incubation.days;
	if (!p->inc_enabled)
		return 0;
	if (p->inc_days == 0) {
		snprintf(err, errsz, "incubation.days must be at least 1");
		return -EINVAL;
	}
	size_t n = c->incubation.n_families;
	if (n && !(p->inc_fam = calloc(n, sizeof(*p->inc_fam))))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *f = c->incubation.families[i];
		if (!f || !f[0] || strlen(f) >= sizeof(p->inc_fam[0])) {
			snprintf(err, errsz, "incubation.families[%zu]: empty or too long", i);
			return -EINVAL;
		}
		strcpy(p->inc_fam[p->n_inc_fam++], f);
	}
	return 0;
}

struct policy *policy_new(const struct policy_config *c, char *err, size_t errsz)
{
	char dummy[8];
	int rc;

	if (!err || !errsz) {
		err = dummy;
		errsz = sizeof(dummy);
	}
	err[0] = 0;
	if (!c)
		return fail(err, errsz, "no configuration");
	if (c->default_access > POLICY_QUARANTINE)
		return fail(err, errsz, "default access must be allow, block or quarantine");
	if (c->n_rules && c->n_rule_texts)
		return fail(err, errsz, "give rules either as text or parsed, not both");
	struct policy *p = calloc(1, sizeof(*p));
	if (!p)
		return fail(err, errsz, "out of memory");
	p->def = c->default_access;
	if ((rc = load_rules(p, c, err, errsz)) < 0)
		goto out;
	for (size_t i = 0; i < p->nrules; i++)
		if ((rc = compile_rule(&p->rules[i], err, errsz, i)) < 0)
			goto out;
	if ((rc = index_rules(p)) < 0 ||
	    (rc = idlist_build(&p->blocked, c->blocked_ids, c->n_blocked, err, errsz,
			       "blocked_ids")) < 0 ||
	    (rc = idlist_build(&p->allowed, c->allowed_ids, c->n_allowed, err, errsz,
			       "allowed_ids")) < 0 ||
	    (rc = incubation_setup(p, c, err, errsz)) < 0)
		goto out;
	if (!(p->mctx = pcre2_match_context_create(NULL))) {
		rc = -ENOMEM;
		goto out;
	}
	pcre2_set_match_limit(p->mctx, POLICY_RE_MATCH_LIMIT);
	return p;
out:
	if (rc == -ENOMEM)
		snprintf(err, errsz, "out of memory");
	policy_free(p);
	return NULL;
}

/* ---- matching ------------------------------------------------------------- */

/* The request's values per characteristic (borrowed), with lengths. */
struct vals {
	const char *s[POLICY_CH__COUNT];
	size_t n[POLICY_CH__COUNT];
	struct osver os;			 /* parsed effective DeviceOS */
	size_t famlen;				 /* strlen(os.family) */
	unsigned bm_done;			 /* bit per characteristic: bm[] filled */
	uint64_t bm[POLICY_CH__COUNT][PF_WORDS]; /* prefilter trigram sets */
};

/* Case-insensitive glob; p is folded. Iterative: linear in practice. */
static int glob_match(const char *p, size_t pn, const char *s, size_t sn)
{
	size_t pi = 0, si = 0, star = (size_t)-1, mark = 0;
	while (si < sn) {
		if (pi < pn && p[pi] == '*') {
			star = pi++;
			mark = si;
		} else if (pi < pn &&
			   (p[pi] == '?' || (unsigned char)p[pi] == fold((unsigned char)s[si]))) {
			pi++;
			si++;
		} else if (star != (size_t)-1) {
			pi = star + 1;
			si = ++mark;
		} else {
			return 0;
		}
	}
	while (pi < pn && p[pi] == '*')
		pi++;
	return pi == pn;
}

static int like_match(const struct crule *cr, const char *s, size_t n)
{
	if (n < cr->minlen || (!cr->has_star && n != cr->minlen))
		return 0;
	for (size_t i = 0; i < cr->prefix; i++)
		if ((unsigned char)cr->glob[i] != fold((unsigned char)s[i]))
			return 0;
	return glob_match(cr->glob + cr->prefix, cr->plen - cr->prefix, s + cr->prefix,
			  n - cr->prefix);
}

static __thread pcre2_match_data *tl_md;

void policy_thread_cleanup(void)
{
	pcre2_match_data_free(tl_md);
	tl_md = NULL;
}

static int regex_match(const struct policy *p, const struct crule *cr, const char *s, size_t n)
{
	if (!tl_md && !(tl_md = pcre2_match_data_create(1, NULL)))
		return 0;
	int rc = pcre2_match(cr->re, (PCRE2_SPTR)s, n, 0, 0, tl_md, p->mctx);
	return rc >= 0; /* 0 = matched, ovector too small (we need no groups) */
}

static int version_match(const struct crule *cr, const struct vals *v)
{
	const struct osver *os = &v->os;
	if (!os->nv || v->famlen != cr->ver_famlen || strcasecmp(os->family, cr->ver.family))
		return 0;
	int c = osver_cmp_version(os, &cr->ver);
	switch (cr->r.op) {
	case POLICY_OP_LT:
		return c < 0;
	case POLICY_OP_LE:
		return c <= 0;
	case POLICY_OP_GT:
		return c > 0;
	case POLICY_OP_GE:
		return c >= 0;
	case POLICY_OP_EQ:
		return c == 0;
	default:
		return c != 0;
	}
}

static int rule_match(const struct policy *p, const struct crule *cr, const struct vals *v)
{
	int ch = cr->r.ch;
	switch (cr->r.op) {
	case POLICY_OP_LIKE:
		return like_match(cr, v->s[ch], v->n[ch]);
	case POLICY_OP_MATCHES:
		return regex_match(p, cr, v->s[ch], v->n[ch]);
	default:
		return version_match(cr, v);
	}
}

/* First exact rule under e that applies to cmd (scoped pass) or any. */
static int exact_first(const struct policy *p, const struct xent *e, int scoped, int cmd)
{
	if (!scoped)
		return e->idx[0];
	for (size_t k = 0; k < e->n; k++)
		if (p->rules[e->idx[k]].r.cmds & EAS_CMD_BIT(cmd))
			return e->idx[k];
	return INT_MAX;
}

/* Earliest matching rule of one characteristic in one pass, or INT_MAX. */
static int match_char(const struct policy *p, const struct chset *cs, int scoped, int cmd,
		      struct vals *v, int ch)
{
	int best = INT_MAX;
	const struct xent *e = xtab_find(&cs->exact, v->s[ch], v->n[ch]);
	if (e)
		best = exact_first(p, e, scoped, cmd);
	const uint64_t *bm = NULL;
	if (cs->prefiltered && cs->n_others && cs->others[0].idx < best) {
		bm = v->bm[ch];
		if (!(v->bm_done & (1u << ch))) {
			pf_bitmap(v->s[ch], v->n[ch], v->bm[ch]);
			v->bm_done |= 1u << ch;
		}
	}
	for (size_t k = 0; k < cs->n_others; k++) {
		const struct other *o = &cs->others[k];
		if (o->idx >= best)
			break;
		if (scoped && !(o->cmds & EAS_CMD_BIT(cmd)))
			continue;
		if (bm && !pf_pass(o, bm))
			continue;
		if (rule_match(p, &p->rules[o->idx], v))
			return o->idx;
	}
	return best;
}

/* Step 5: the deciding rule index, or -1; *ch_out = its characteristic. */
static int match_rules(const struct policy *p, int cmd, struct vals *v, int *ch_out)
{
	for (int s = (p->scoped_cmds & EAS_CMD_BIT(cmd)) ? 0 : 1; s < 2; s++) {
		for (int ch = 0; ch < POLICY_CH__COUNT; ch++) {
			int idx = match_char(p, &p->pass[s][ch], s == 0, cmd, v, ch);
			if (idx != INT_MAX) {
				*ch_out = ch;
				return idx;
			}
		}
	}
	return -1;
}

/* Personal list lookup: the entry index that names this device, or -1. */
static int idlist_find(const struct idlist *l, const char *user, const char *id)
{
	size_t un = strlen(user), idn = strlen(id);
	const struct xent *e;
	if (!idn)
		return -1;
	if ((e = xtab_find(&l->any, id, idn)))
		return e->idx[0];
	if (!un || !l->user.used || un + 1 + idn >= POLICY_ID_MAX)
		return -1;
	char key[POLICY_ID_MAX];
	memcpy(key, user, un);
	key[un] = ':';
	memcpy(key + un + 1, id, idn);
	if ((e = xtab_find(&l->user, key, un + 1 + idn)))
		return e->idx[0];
	return -1;
}

/* ---- decision ------------------------------------------------------------- */

/*
 * Explanations are built with plain appends (sbuf, into d->explain):
 * snprintf costs more than a whole rule evaluation, and the common paths
 * (rule, default) need none.
 */

/* A value in double quotes, escaped like log values. */
static void put_quoted(struct sbuf *x, const char *s, size_t n)
{
	char q[300];
	sbuf_puts(x, log_quote(q, sizeof(q), s, n));
}

/* Bounded string copy into a fixed array. */
static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = 0;
}

static void set(struct policy_decision *d, int access, int reason)
{
	d->access = access;
	d->reason = reason;
}

static const char *nz(const char *s)
{
	return s ? s : "";
}

/* "rule 3 'name' DeviceOS is "..." cmd X matched "...": block" */
static void explain_rule(const struct policy *p, const struct vals *v, int idx, struct sbuf *x)
{
	const struct policy_rule *r = &p->rules[idx].r;
	struct policy_rule bare = *r;
	char text[POLICY_RULE_TEXT_MAX];
	sbuf_puts(x, "rule ");
	sbuf_uint(x, (unsigned)idx + 1);
	sbuf_puts(x, " ");
	if (r->name[0]) {
		sbuf_puts(x, "'");
		sbuf_puts(x, r->name);
		sbuf_puts(x, "' ");
	}
	bare.name[0] = 0; /* the name and the access word are shown apart */
	if (policy_rule_format(&bare, text, sizeof(text)) > 0) {
		const char *t = strchr(text, ' ');
		sbuf_puts(x, t ? t + 1 : text);
	}
	sbuf_puts(x, " matched ");
	put_quoted(x, v->s[r->ch], v->n[r->ch]);
	sbuf_puts(x, ": ");
	sbuf_puts(x, access_names[r->access]);
}

/* Steps 2-4; leaves x empty when they do not decide. */
static void decide_lists(const struct policy *p, const struct policy_input *in,
			 struct policy_decision *d, struct sbuf *x)
{
	const char *user = nz(in->user), *id = nz(in->device_id);
	int e;

	if (in->admin_state == POLICY_ADMIN_BLOCK) {
		set(d, POLICY_BLOCK, POLICY_R_ADMIN);
		sbuf_puts(x, "admin set this device to block");
	} else if (p && (e = idlist_find(&p->blocked, user, id)) >= 0) {
		set(d, POLICY_BLOCK, POLICY_R_INDIVIDUAL_BLOCK);
		sbuf_puts(x, "personal blocked list entry ");
		put_quoted(x, p->blocked.text[e], (size_t)-1);
		sbuf_puts(x, ": block");
	} else if (in->admin_state == POLICY_ADMIN_QUARANTINE) {
		set(d, POLICY_QUARANTINE, POLICY_R_ADMIN);
		sbuf_puts(x, "admin set this device to quarantine");
	} else if (in->admin_state == POLICY_ADMIN_ALLOW) {
		set(d, POLICY_ALLOW, POLICY_R_ADMIN);
		sbuf_puts(x, "admin approved this device: allow");
	} else if (p && (e = idlist_find(&p->allowed, user, id)) >= 0) {
		set(d, POLICY_ALLOW, POLICY_R_INDIVIDUAL_ALLOW);
		sbuf_puts(x, "personal allowed list entry ");
		put_quoted(x, p->allowed.text[e], (size_t)-1);
		sbuf_puts(x, ": allow");
	}
}

/* Steps 5-6. */
static void decide_rules(const struct policy *p, const struct policy_input *in, struct vals *v,
			 struct policy_decision *d, struct sbuf *x)
{
	int cmd = in->cmd >= 0 && in->cmd < 64 ? in->cmd : EAS_CMD_UNKNOWN, ch = -1;
	int idx = p ? match_rules(p, cmd, v, &ch) : -1;
	if (idx < 0) {
		set(d, p ? p->def : POLICY_ALLOW, POLICY_R_DEFAULT);
		sbuf_puts(x, "no rule matched: default ");
		sbuf_puts(x, access_names[d->access]);
		return;
	}
	set(d, p->rules[idx].r.access, POLICY_R_RULE);
	d->rule_index = idx;
	d->characteristic = ch;
	copy_str(d->rule_name, sizeof(d->rule_name), p->rules[idx].r.name);
	explain_rule(p, v, idx, x);
}

static int incubation_family(const struct policy *p, const char *fam)
{
	if (!p->n_inc_fam)
		return 1;
	for (size_t i = 0; i < p->n_inc_fam; i++)
		if (!strcasecmp(p->inc_fam[i], fam))
			return 1;
	return 0;
}

/* Step 7: turn a rule/default allow into quarantine for too-new OSes. */
static void decide_incubation(const struct policy *p, const struct policy_input *in,
			      const struct vals *v, struct policy_decision *d, struct sbuf *x)
{
	if (!p || !p->inc_enabled || d->access != POLICY_ALLOW || in->os_approved ||
	    (d->reason != POLICY_R_RULE && d->reason != POLICY_R_DEFAULT) || !v->os.text[0] ||
	    !incubation_family(p, v->os.family))
		return;
	int64_t first = in->os_first_seen ? in->os_first_seen : in->now;
	int64_t age = in->now - first, limit = (int64_t)p->inc_days * 86400;
	if (age >= limit)
		return;
	char was[sizeof(d->explain)];
	memcpy(was, x->p, x->len + 1);
	sbuf_reset(x);
	set(d, POLICY_QUARANTINE, POLICY_R_INCUBATION);
	sbuf_puts(x, "incubation: OS ");
	put_quoted(x, v->os.text, (size_t)-1);
	sbuf_puts(x, " first seen ");
	sbuf_uint(x, age > 0 ? (unsigned long long)(age / 86400) : 0);
	sbuf_puts(x, " days ago (< ");
	sbuf_uint(x, p->inc_days);
	sbuf_puts(x, ") and not approved; was: ");
	sbuf_puts(x, was);
}

static void fill_vals(const struct policy_input *in, struct vals *v, struct policy_decision *d)
{
	const char *model = nz(in->device_model);
	if (!model[0])
		model = nz(in->device_type);
	v->s[POLICY_CH_DEVICEID] = nz(in->device_id);
	v->s[POLICY_CH_USER] = nz(in->user);
	v->s[POLICY_CH_USERAGENT] = nz(in->user_agent);
	v->s[POLICY_CH_DEVICEOS] = osver_effective(in->device_os, in->user_agent, &v->os);
	v->s[POLICY_CH_DEVICEMODEL] = model;
	v->s[POLICY_CH_DEVICETYPE] = nz(in->device_type);
	v->s[POLICY_CH_XMSWL] = nz(in->xmswl);
	for (int c = 0; c < POLICY_CH__COUNT; c++)
		v->n[c] = strlen(v->s[c]);
	v->bm_done = 0;
	v->famlen = strlen(v->os.family);
	copy_str(d->device_model, sizeof(d->device_model), model);
	copy_str(d->device_os, sizeof(d->device_os), v->s[POLICY_CH_DEVICEOS]);
	copy_str(d->os_key, sizeof(d->os_key), v->os.text);
}

void policy_decide(const struct policy *p, const struct policy_input *in, struct policy_decision *d)
{
	struct vals v;
	struct sbuf x;

	/* every field is set below; no memset of the ~1 KiB struct */
	d->access = POLICY_ALLOW;
	d->reason = POLICY_R_DEFAULT;
	d->rule_index = -1;
	d->characteristic = -1;
	d->rule_name[0] = 0;
	sbuf_fixed(&x, d->explain, sizeof(d->explain));
	fill_vals(in, &v, d);
	if (in->cmd == EAS_CMD_OPTIONS) {
		set(d, POLICY_ALLOW, POLICY_R_OPTIONS);
		sbuf_puts(&x, "OPTIONS is always allowed");
		return;
	}
	decide_lists(p, in, d, &x);
	if (x.len)
		return;
	decide_rules(p, in, &v, d, &x);
	decide_incubation(p, in, &v, d, &x);
}
