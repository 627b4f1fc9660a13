/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * osver.c - see osver.h.
 *
 * Unknown Apple builds: Apple numbers builds <major><letter><number>[suffix]
 * and the numbers only grow within one train (same major and letter) as
 * releases come out (10B141..10B147 are 6.1..6.1.2, 11B511..11B651 are
 * 7.0.3..7.0.6). So a build missing from the table is at least as new as the
 * nearest lower known build of its train, and we report that build's version
 * as a lower bound (OSVER_SRC_NEAREST). Across trains nothing is inferred
 * (16H5 is 12.4.9 but 16H20 is 12.5), and neither are four-digit numbers:
 * those are device variants (10A8426 = 6.0.1 on iPad mini) or betas
 * (21A5248v), whose numbers do not follow the release order. A lower bound
 * is the safe side for "allow only >= X" rules: a phone can look older than
 * it is, never newer.
 */
#include "osver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "sbuf.h"

#ifdef EG_HAVE_IOS_BUILDS_INC
#include "ios_builds.inc"
#ifndef EG_IOS_BUILDS_SYM /* names `xxd -i data/ios-builds.tsv` generates */
#define EG_IOS_BUILDS_SYM data_ios_builds_tsv
#define EG_IOS_BUILDS_LEN data_ios_builds_tsv_len
#endif
#endif

#define OSVER_DEFAULT_TSV "data/ios-builds.tsv"
#define OSVER_TSV_MAX	  (1u << 20) /* the shipped table is ~10 KiB */
#define OSVER_COMP_MAX	  99999999u  /* largest version component we accept */

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_space(char c)
{
	return c == ' ' || c == '\t';
}

static int is_alnum(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Bounded copy that always terminates; returns the length copied. */
static size_t copy_n(char *dst, size_t cap, const char *src, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = 0;
	return n;
}

/* ---- families ------------------------------------------------------------ */

/* Canonical spelling of the families we know, so incubation keys agree. */
static const char *const known_families[] = {
    "iOS", "iPadOS", "Android", "Windows Phone", "Windows", "macOS", "BlackBerry",
};

static void family_canon(char *fam)
{
	size_t n = strlen(fam);
	for (size_t i = 0; i < sizeof(known_families) / sizeof(known_families[0]); i++) {
		if (strlen(known_families[i]) == n && !strcasecmp(fam, known_families[i])) {
			strcpy(fam, known_families[i]);
			return;
		}
	}
}

/* ---- text ----------------------------------------------------------------- */

/* No stdio: this runs on every request and snprintf costs more than the
 * rest of the parse. Cut at the field's size. */
static void osver_make_text(struct osver *o)
{
	struct sbuf t;

	sbuf_fixed(&t, o->text, sizeof(o->text));
	sbuf_puts(&t, o->family);
	for (unsigned i = 0; i < o->nv; i++) {
		sbuf_puts(&t, i ? "." : " ");
		sbuf_uint(&t, o->v[i]);
	}
	if (o->build[0]) {
		sbuf_puts(&t, " ");
		sbuf_puts(&t, o->build);
	}
}

/*
 * Parse "d[.d[.d[.d]]]" at s (len n). Returns bytes consumed (0 if s does not
 * start with a digit), -1 on a component overflow.
 */
static int parse_dotted(const char *s, size_t n, unsigned v[4], unsigned *nv)
{
	size_t i = 0;

	*nv = 0;
	while (i < n && is_digit(s[i]) && *nv < 4) {
		unsigned long val = 0;
		while (i < n && is_digit(s[i])) {
			val = val * 10 + (unsigned)(s[i++] - '0');
			if (val > OSVER_COMP_MAX)
				return -1;
		}
		v[(*nv)++] = (unsigned)val;
		if (i + 1 < n && s[i] == '.' && is_digit(s[i + 1]) && *nv < 4)
			i++;
		else
			break;
	}
	return (int)i;
}

/* ---- Apple builds ------------------------------------------------------- */

/* A build as a sortable key: 10B142 = {10, 'B', 142, 0}; 11A470a has sfx 'a'. */
struct build_key {
	unsigned major;
	char letter;
	unsigned num;
	char sfx;
	unsigned ndigits; /* digits in num as written: 4+ means variant/beta */
};

/* "10B142", "11A470a", "8G4". Returns 0 or -1. */
static int build_key_parse(const char *s, size_t n, struct build_key *k)
{
	size_t i = 0;

	memset(k, 0, sizeof(*k));
	while (i < n && i < 2 && is_digit(s[i]))
		k->major = k->major * 10 + (unsigned)(s[i++] - '0');
	if (i == 0 || k->major == 0 || i >= n || s[i] < 'A' || s[i] > 'Z')
		return -1;
	k->letter = s[i++];
	size_t d0 = i;
	while (i < n && is_digit(s[i]) && i - d0 < 5)
		k->num = k->num * 10 + (unsigned)(s[i++] - '0');
	k->ndigits = (unsigned)(i - d0);
	if (k->ndigits == 0)
		return -1;
	if (i < n && s[i] >= 'a' && s[i] <= 'z')
		k->sfx = s[i++];
	return i == n ? 0 : -1;
}

static int build_key_cmp(const struct build_key *a, const struct build_key *b)
{
	if (a->major != b->major)
		return a->major < b->major ? -1 : 1;
	if (a->letter != b->letter)
		return a->letter < b->letter ? -1 : 1;
	if (a->num != b->num)
		return a->num < b->num ? -1 : 1;
	if (a->sfx != b->sfx)
		return a->sfx < b->sfx ? -1 : 1;
	return 0;
}

struct build_ent {
	struct build_key key;
	unsigned v[4];
	unsigned nv;
	unsigned line; /* in the source TSV, for duplicate errors */
};

/* The loaded table, sorted by key. Replaced whole by osver_builds_load(). */
static struct build_ent *g_builds;
static size_t g_nbuilds;

static int build_ent_cmp(const void *a, const void *b)
{
	return build_key_cmp(&((const struct build_ent *)a)->key,
			     &((const struct build_ent *)b)->key);
}

/* Index of the first entry with key >= k (binary search). */
static size_t builds_lower_bound(const struct build_key *k)
{
	size_t lo = 0, hi = g_nbuilds;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (build_key_cmp(&g_builds[mid].key, k) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int osver_build_version(const char *build, unsigned v[4], unsigned *nv)
{
	struct build_key k;

	*nv = 0;
	if (!build || build_key_parse(build, strlen(build), &k) < 0 || !g_nbuilds)
		return OSVER_SRC_NONE;
	size_t i = builds_lower_bound(&k);
	if (i < g_nbuilds && !build_key_cmp(&g_builds[i].key, &k)) {
		memcpy(v, g_builds[i].v, sizeof(g_builds[i].v));
		*nv = g_builds[i].nv;
		return OSVER_SRC_TABLE;
	}
	if (k.ndigits > 3) /* variant or beta: its number says nothing (see top) */
		return OSVER_SRC_NONE;
	while (i-- > 0) {
		const struct build_ent *e = &g_builds[i];
		if (e->key.major != k.major || e->key.letter != k.letter)
			break;
		if (e->key.ndigits > 3)
			continue;
		memcpy(v, e->v, sizeof(e->v));
		*nv = e->nv;
		return OSVER_SRC_NEAREST;
	}
	return OSVER_SRC_NONE;
}

size_t osver_builds_count(void)
{
	return g_nbuilds;
}

/* Parse one non-comment TSV line into e. Returns NULL or why it failed. */
static const char *builds_parse_line(const char *s, size_t n, struct build_ent *e)
{
	size_t i = 0, b0, b1;

	b0 = i;
	while (i < n && !is_space(s[i]))
		i++;
	b1 = i;
	if (i == n)
		return "expected build<TAB>version";
	if (build_key_parse(s + b0, b1 - b0, &e->key) < 0)
		return "bad build (want e.g. 10B142 or 11A470a)";
	while (i < n && is_space(s[i]))
		i++;
	int used = parse_dotted(s + i, n - i, e->v, &e->nv);
	if (used <= 0 || (i + (size_t)used < n && !is_space(s[i + (size_t)used])))
		return "bad version (want e.g. 6.1 or 7.0.2)";
	i += (size_t)used;
	while (i < n && is_space(s[i]))
		i++;
	if (i < n && s[i] != '#')
		return "trailing garbage after the version";
	return NULL;
}

/* Count candidate lines so we can allocate once. */
static size_t builds_count_lines(const char *t, size_t n)
{
	size_t lines = 1;
	for (size_t i = 0; i < n; i++)
		lines += t[i] == '\n';
	return lines;
}

static int builds_check_dups(struct build_ent *ents, size_t cnt, char *err, size_t errsz)
{
	for (size_t i = 1; i < cnt; i++) {
		if (!build_key_cmp(&ents[i - 1].key, &ents[i].key)) {
			unsigned a = ents[i - 1].line, b = ents[i].line;
			snprintf(err, errsz, "line %u: build listed twice (also line %u)",
				 a > b ? a : b, a > b ? b : a);
			return -EINVAL;
		}
	}
	return 0;
}

int osver_builds_load(const char *t, size_t n, char *err, size_t errsz)
{
	char dummy[8];
	if (!err || !errsz) {
		err = dummy;
		errsz = sizeof(dummy);
	}
	err[0] = 0;
	if (!t)
		n = 0;
	struct build_ent *ents = calloc(builds_count_lines(t, n), sizeof(*ents));
	if (!ents)
		return -ENOMEM;

	size_t cnt = 0, pos = 0;
	unsigned line = 0;
	while (pos < n) {
		size_t end = pos;
		while (end < n && t[end] != '\n')
			end++;
		line++;
		size_t a = pos, b = end;
		pos = end + 1;
		while (a < b && is_space(t[a]))
			a++;
		while (b > a && (is_space(t[b - 1]) || t[b - 1] == '\r'))
			b--;
		if (a == b || t[a] == '#')
			continue;
		const char *why = builds_parse_line(t + a, b - a, &ents[cnt]);
		if (why) {
			snprintf(err, errsz, "line %u: %s", line, why);
			free(ents);
			return -EINVAL;
		}
		ents[cnt++].line = line;
	}
	qsort(ents, cnt, sizeof(*ents), build_ent_cmp);
	if (builds_check_dups(ents, cnt, err, errsz) < 0) {
		free(ents);
		return -EINVAL;
	}
	free(g_builds);
	g_builds = ents;
	g_nbuilds = cnt;
	return (int)cnt;
}

#ifdef EG_HAVE_IOS_BUILDS_INC
int osver_builds_load_default(void)
{
	char err[128];
	int rc =
	    osver_builds_load((const char *)EG_IOS_BUILDS_SYM, EG_IOS_BUILDS_LEN, err, sizeof(err));
	if (rc < 0)
		log_warn("event=ios_builds_load source=embedded reason=\"%s\"", err);
	return rc;
}
#else
int osver_builds_load_default(void)
{
	char err[128];
	FILE *f = fopen(OSVER_DEFAULT_TSV, "rb");
	if (!f) {
		int e = errno;
		log_warn("event=ios_builds_load file=%s reason=\"%s\"", OSVER_DEFAULT_TSV,
			 strerror(e));
		return -e;
	}
	char *buf = malloc(OSVER_TSV_MAX);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	size_t n = fread(buf, 1, OSVER_TSV_MAX, f);
	int rc = ferror(f) ? -EIO : n == OSVER_TSV_MAX ? -EFBIG : 0;
	fclose(f);
	if (rc == 0)
		rc = osver_builds_load(buf, n, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "%s", strerror(-rc));
	free(buf);
	if (rc < 0)
		log_warn("event=ios_builds_load file=%s reason=\"%s\"", OSVER_DEFAULT_TSV, err);
	return rc;
}
#endif

/* ---- DeviceOS strings ----------------------------------------------------- */

/*
 * Scan the family words of s: every leading word not starting with a digit,
 * joined by single spaces into fam. Returns the offset of the first other
 * word (or strlen), -1 if the family is empty or too long.
 */
static int parse_family(const char *s, char *fam, size_t famsz)
{
	size_t i = 0, fl = 0;

	while (s[i]) {
		while (is_space(s[i]))
			i++;
		if (!s[i] || is_digit(s[i]) || s[i] == '(')
			break;
		size_t w0 = i;
		while (s[i] && !is_space(s[i]))
			i++;
		size_t wl = i - w0;
		if (fl + (fl ? 1 : 0) + wl >= famsz)
			return -1;
		if (fl)
			fam[fl++] = ' ';
		memcpy(fam + fl, s + w0, wl);
		fl += wl;
		fam[fl] = 0;
	}
	return fl ? (int)i : -1;
}

/* Build = "(x)" content or the first word at s; truncated to fit. */
static void parse_build_word(const char *s, char *build, size_t cap)
{
	while (is_space(*s))
		s++;
	size_t n = 0;
	if (*s == '(') {
		s++;
		while (s[n] && s[n] != ')')
			n++;
	} else {
		while (s[n] && !is_space(s[n]))
			n++;
	}
	copy_n(build, cap, s, n);
}

/*
 * The version word at s: "6.1", "4.4.2.N900VVRUCNC4" (suffix = build),
 * "12_r2". A word that starts with digits glued to a letter ("10B142") is a
 * build, not a version. Returns the offset after the word, -1 on overflow.
 */
static int parse_version_word(const char *s, struct osver *o)
{
	size_t wl = 0;
	while (s[wl] && !is_space(s[wl]))
		wl++;
	int used = parse_dotted(s, wl, o->v, &o->nv);
	if (used < 0)
		return -1;
	size_t u = (size_t)used;
	if (u < wl && !(s[u] == '.' || s[u] == '-' || s[u] == '_')) {
		o->nv = 0; /* "10B142": the word is a build */
		copy_n(o->build, sizeof(o->build), s, wl);
		return (int)wl;
	}
	if (u + 1 < wl)
		copy_n(o->build, sizeof(o->build), s + u + 1, wl - u - 1);
	return (int)wl;
}

int osver_parse(const char *s, struct osver *o)
{
	memset(o, 0, sizeof(*o));
	if (!s)
		return -EINVAL;
	int i = parse_family(s, o->family, sizeof(o->family));
	if (i < 0)
		goto bad;
	family_canon(o->family);
	while (is_space(s[i]))
		i++;
	if (is_digit(s[i])) {
		int used = parse_version_word(s + i, o);
		if (used < 0)
			goto bad;
		i += used;
	}
	if (!o->build[0])
		parse_build_word(s + i, o->build, sizeof(o->build));
	o->src = o->nv ? OSVER_SRC_TEXT : OSVER_SRC_NONE;
	if (!o->nv && !strcmp(o->family, "iOS") && o->build[0])
		o->src = osver_build_version(o->build, o->v, &o->nv);
	osver_make_text(o);
	return 0;
bad:
	memset(o, 0, sizeof(*o));
	return -EINVAL;
}

/* ---- User-Agents ------------------------------------------------------- */

/* Read n decimal digits at s as a number (n <= 9). */
static unsigned digits_val(const char *s, size_t n)
{
	unsigned v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (unsigned)(s[i] - '0');
	return v;
}

static size_t span_digits(const char *s)
{
	size_t n = 0;
	while (is_digit(s[n]))
		n++;
	return n;
}

/*
 * "<MMLL>.<NNN>[000NN]" -> build "10B142" / "11A470a" (Apple's EAS encoding:
 * letters as 2-digit alphabet positions). Returns 0 or -1.
 */
static int apple_decode_build(const char *p, char *build, size_t cap)
{
	size_t ln = span_digits(p);
	if (ln < 3 || ln > 4 || p[ln] != '.')
		return -1;
	unsigned major = digits_val(p, ln - 2), letter = digits_val(p + ln - 2, 2);
	if (major == 0 || letter < 1 || letter > 26)
		return -1;
	const char *r = p + ln + 1;
	size_t rn = span_digits(r);
	if (rn == 0 || rn > 13 || is_alnum(r[rn]))
		return -1;
	char sfx = 0;
	if (rn >= 6 && !memcmp(r + rn - 5, "000", 3)) {
		unsigned pos = digits_val(r + rn - 2, 2);
		if (pos >= 1 && pos <= 26) {
			sfx = (char)('a' + pos - 1);
			rn -= 5;
		}
	}
	while (rn > 1 && *r == '0') { /* 705.018 is 7E18 */
		r++;
		rn--;
	}
	if (rn > 5)
		return -1;
	char letters[2] = {(char)('A' + letter - 1), 0}, sfxs[2] = {sfx, 0};
	struct sbuf b;
	sbuf_fixed(&b, build, cap);
	sbuf_uint(&b, major);
	sbuf_puts(&b, letters);
	sbuf_uint(&b, digits_val(r, rn));
	sbuf_puts(&b, sfxs);
	return 0;
}

/* Apple-iPhone4C1/1002.142 */
static int ua_apple(const char *ua, struct osver *o)
{
	if (strncasecmp(ua, "Apple-", 6))
		return -1;
	const char *hw = ua + 6;
	size_t hl = 0;
	while (is_alnum(hw[hl]))
		hl++;
	if (hl == 0 || hl >= sizeof(o->hw) || hw[hl] != '/')
		return -1;
	if (apple_decode_build(hw + hl + 1, o->build, sizeof(o->build)) < 0)
		return -1;
	copy_n(o->hw, sizeof(o->hw), hw, hl);
	strcpy(o->family, "iOS");
	o->src = osver_build_version(o->build, o->v, &o->nv);
	return 0;
}

/* iOS/7.0.2 (11A501) dataaccessd/1.0 */
static int ua_ios_slash(const char *ua, struct osver *o)
{
	size_t fl;
	if (!strncasecmp(ua, "iOS/", 4))
		fl = 3;
	else if (!strncasecmp(ua, "iPadOS/", 7))
		fl = 6;
	else
		return -1;
	const char *p = ua + fl + 1;
	int used = parse_dotted(p, strlen(p), o->v, &o->nv);
	if (used <= 0 || (p[used] && !is_space(p[used])))
		return -1;
	copy_n(o->family, sizeof(o->family), ua, fl);
	family_canon(o->family);
	p += used;
	while (is_space(*p))
		p++;
	if (*p == '(')
		parse_build_word(p, o->build, sizeof(o->build));
	o->src = OSVER_SRC_TEXT;
	return 0;
}

/*
 * Android/4.4.2-EAS-1.3 -> "Android 4.4.2": Exchange's synthesis for
 * non-Samsung types (text before the first '-', '/' read as a space).
 */
static int ua_android(const char *ua, struct osver *o)
{
	if (strncasecmp(ua, "Android/", 8) || !is_digit(ua[8]))
		return -1;
	char tmp[64];
	size_t n = 0;
	while (ua[n] && ua[n] != '-' && n < sizeof(tmp) - 1) {
		tmp[n] = ua[n] == '/' ? ' ' : ua[n];
		n++;
	}
	tmp[n] = 0;
	struct osver t;
	if (osver_parse(tmp, &t) < 0 || !t.nv)
		return -1;
	*o = t;
	return 0;
}

/*
 * SAMSUNG-SM-N900V/101.403 -> "Android 4.3": Exchange's synthesis for
 * Samsung types reads the digits after the last '.' with every '0' as a
 * separator. Faithful only for single-digit components (Android 10+ cannot
 * be expressed this way); we drop empty components instead of emitting "..".
 */
static int ua_samsung(const char *ua, struct osver *o)
{
	if (strncasecmp(ua, "SAMSUNG-", 8))
		return -1;
	const char *slash = strchr(ua + 8, '/');
	const char *dot = strrchr(ua, '.');
	if (!slash || !dot || dot < slash || !dot[1])
		return -1;
	const char *d = dot + 1;
	size_t dn = span_digits(d);
	if (dn == 0 || d[dn])
		return -1;
	unsigned nv = 0;
	for (size_t i = 0; i < dn && nv < 4;) {
		size_t j = i;
		while (j < dn && d[j] != '0')
			j++;
		if (j > i && j - i <= 8)
			o->v[nv++] = digits_val(d + i, j - i);
		i = j + 1;
	}
	if (!nv)
		return -1;
	o->nv = nv;
	strcpy(o->family, "Android");
	copy_n(o->hw, sizeof(o->hw), ua + 8, (size_t)(slash - ua - 8));
	o->src = OSVER_SRC_TEXT;
	return 0;
}

int osver_from_user_agent(const char *ua, struct osver *o)
{
	memset(o, 0, sizeof(*o));
	if (!ua)
		return -EINVAL;
	if (ua_apple(ua, o) == 0 || ua_ios_slash(ua, o) == 0 || ua_android(ua, o) == 0 ||
	    ua_samsung(ua, o) == 0) {
		osver_make_text(o);
		return 0;
	}
	memset(o, 0, sizeof(*o));
	return -ENOENT;
}

const char *osver_effective(const char *device_os, const char *user_agent, struct osver *o)
{
	if (device_os && device_os[0]) {
		osver_parse(device_os, o);
		return device_os;
	}
	if (user_agent && osver_from_user_agent(user_agent, o) == 0)
		return o->text;
	memset(o, 0, sizeof(*o));
	return "";
}

/* ---- comparison ----------------------------------------------------------- */

int osver_cmp_version(const struct osver *a, const struct osver *b)
{
	for (unsigned i = 0; i < 4; i++) {
		unsigned x = i < a->nv ? a->v[i] : 0, y = i < b->nv ? b->v[i] : 0;
		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

int osver_cmp(const struct osver *a, const struct osver *b)
{
	int c = strcasecmp(a->family, b->family);
	if (c)
		return c < 0 ? -1 : 1;
	return osver_cmp_version(a, b);
}
