/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * config.c - libconfig file -> struct gw_config, with every error reported as
 * "file:line: message". See config.h; the keys are config_keys.c's.
 */
#include "config.h"
#include "config_keys.h"
#include "config_lines.h"
#include "log.h"
#include "throttle.h"
#include "tls_params.h"

#include <arpa/inet.h>
#include <libconfig.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

void config_error(struct config_errors *errs, const char *path, int line, const char *fmt, ...)
{
	if (errs->n >= CFG_MAX_ERRORS) {
		errs->dropped++;
		return;
	}
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Errors quote the file's strings: each stays one line. */
	log_mask_ctl(msg);
	snprintf(errs->msg[errs->n++], sizeof(errs->msg[0]), "%s:%d: %s", path, line, msg);
}

void config_log_errors(const struct config_errors *errs)
{
	char q[400];
	for (int i = 0; i < errs->n; i++)
		log_err("event=config_error error=%s",
			log_quote(q, sizeof(q), errs->msg[i], (size_t)-1));
	if (errs->dropped)
		log_err("event=config_error more_errors=%d", errs->dropped);
}

int config_parse_addr(const char *s, struct cfg_addr *a)
{
	char host[128];
	const char *port;
	memset(a, 0, sizeof(*a));
	snprintf(a->text, sizeof(a->text), "%s", s);
	if (!strncasecmp(s, "http://", 7)) {
		a->plain = 1;
		s += 7;
	}
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
			return -1;
		memcpy(host, s + 1, (size_t)(end - s - 1));
		host[end - s - 1] = 0;
		port = end + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof(host))
			return -1;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = 0;
		if (strchr(host, ':'))
			return -1; /* bare IPv6 needs brackets */
		port = colon + 1;
	}
	char *endp;
	long p = strtol(port, &endp, 10);
	if (!*port || *endp || p < 1 || p > 65535)
		return -1;
	if (!host[0])
		snprintf(host, sizeof(host), "0.0.0.0");
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)p);
		a->len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)p);
		a->len = sizeof(*sin6);
		return 0;
	}
	return -1;
}

int config_parse_prefix(const char *s, struct cfg_prefix *p)
{
	char host[64];
	const char *slash = strchr(s, '/');
	size_t hl = slash ? (size_t)(slash - s) : strlen(s);
	if (hl >= sizeof(host))
		return -1;
	memcpy(host, s, hl);
	host[hl] = 0;
	memset(p, 0, sizeof(*p));
	unsigned max = 128, base = 0;
	struct in_addr a4;
	if (inet_pton(AF_INET, host, &a4) == 1) {
		p->addr[10] = p->addr[11] = 0xff;
		memcpy(p->addr + 12, &a4, 4);
		max = 32;
		base = 96;
	} else if (inet_pton(AF_INET6, host, p->addr) != 1) {
		return -1;
	}
	unsigned len = max;
	if (slash) {
		char *end;
		long v = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || v < 0 || v > (long)max)
			return -1;
		len = (unsigned)v;
	}
	p->len = base + len;
	for (unsigned bit = p->len; bit < 128; bit++)
		p->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
	return 0;
}

int config_prefix_match(const struct cfg_prefix *p, const uint8_t a[16])
{
	unsigned full = p->len / 8, rest = p->len % 8;
	if (memcmp(p->addr, a, full))
		return 0;
	if (!rest)
		return 1;
	uint8_t m = (uint8_t)(0xffu << (8 - rest));
	return (p->addr[full] & m) == (a[full] & m);
}

/*
 * What a backend is unless said otherwise, however it is given (a file's
 * backends entry, --backend): weight 1, certificate verified, reused
 * connections, checked with GET /Microsoft-Server-ActiveSync (an EAS
 * server answers it, 401 without credentials) every 2 s, 1.5 s timeout,
 * up after 2 successes, down after 2 failures (easgate.conf(5)).
 */
void config_backend_defaults(struct cfg_backend *b)
{
	memset(b, 0, sizeof(*b));
	b->weight = 1;
	b->verify = 1;
	b->reuse = CFG_REUSE_SAFE;
	b->health_enabled = 1;
	snprintf(b->health_path, sizeof(b->health_path), "/Microsoft-Server-ActiveSync");
	b->health_interval_ms = 2000;
	b->health_timeout_ms = 1500;
	b->rise = 2;
	b->fall = 2;
}

void config_defaults(struct gw_config *c)
{
	memset(c, 0, sizeof(*c));
	config_parse_addr("0.0.0.0:8443", &c->listen[0]);
	c->nlisten = 1;
	c->workers = 0;
	snprintf(c->state_dir, sizeof(c->state_dir), "/var/lib/easgate");
	snprintf(c->control_socket, sizeof(c->control_socket), "/run/easgate/control.sock");
	snprintf(c->log_level, sizeof(c->log_level), "info");
	c->access_log = 1;
	c->strict_device_id = 0; /* see eas.h: real clients send more than Exchange's rule */
	snprintf(c->relay_method, sizeof(c->relay_method), "auto");

	snprintf(c->tls.certs[0].cert, sizeof(c->tls.certs[0].cert), "/etc/easgate/tls/server.pem");
	snprintf(c->tls.certs[0].key, sizeof(c->tls.certs[0].key), "/etc/easgate/tls/server.key");
	c->tls.ncerts = 1;
	c->tls.ticket_rotate_s = 3600;
	c->tls.cleanse_plaintext = 1;
	c->tls.ktls = CFG_KTLS_AUTO;
	c->tls.expiry_warn_days = 30;
	c->tls.min_version = TLS1_2_VERSION;
	c->tls.ocsp_stapling = 1;
	c->tls.ocsp_fetch_timeout_ms = 5000;
	c->tls.ocsp_retry_ms = 60000;

	c->timeouts.handshake_ms = 15000;
	c->timeouts.head_ms = 30000;
	c->timeouts.body_ms = 60000;
	c->timeouts.idle_ms = 300000;
	c->timeouts.backend_connect_ms = 5000;
	c->timeouts.backend_response_ms = 120000;
	c->timeouts.hanging_ms = 3660000; /* Ping heartbeat may reach 3540 s */
	c->timeouts.drain_ms = 30000;

	c->limits.max_head = 32768;
	c->limits.max_line = 8192;
	c->limits.max_headers = 96;
	c->limits.max_conns = 200000;
	c->limits.inspect_body = 65536;
	c->limits.min_body_rate = 500;
	c->limits.max_conns_per_source = 8192;

	/* Without a file: the demo backend (tools/eas-demo-backend), checked
	 * on its own health page. */
	struct cfg_backend *b = &c->backends[0];
	config_backend_defaults(b);
	snprintf(b->name, sizeof(b->name), "demo");
	config_parse_addr("127.0.0.1:8081", &b->addr);
	snprintf(b->health_path, sizeof(b->health_path), "/health");
	c->nbackends = 1;

	c->policy.default_access = POLICY_ALLOW;
	c->policy.incubation_days = 21;

	c->throttle.enabled = 0;
	throttle_config_defaults(&c->throttle.tc);
	throttle_class_defaults(&c->throttle.classes[0], "default");
	c->throttle.nclasses = 1;

	snprintf(c->admin.web_accounts, sizeof(c->admin.web_accounts),
		 "/etc/easgate/console.passwd");
	snprintf(c->admin.web_assets, sizeof(c->admin.web_assets), "/usr/local/share/easgate/web");
	snprintf(c->admin.web_chartjs, sizeof(c->admin.web_chartjs),
		 "/usr/share/javascript/chart.js");
	c->admin.web_idle_ms = 15 * 60 * 1000;
	c->admin.web_lockout_ms = 15 * 60 * 1000;

	c->notify.batch_ms = 5 * 60 * 1000;
	snprintf(c->notify.from, sizeof(c->notify.from), "easgate@localhost");
	c->notify.smtp_starttls = 1;
	snprintf(c->notify.user_contact, sizeof(c->notify.user_contact), "your helpdesk");
	c->notify.retry_min_ms = 10 * 1000;
	c->notify.retry_max_ms = 600 * 1000;
	c->notify.queue = 20000;
	c->notify.timeout_ms = 30 * 1000;

	c->xdp.verdict_ttl_s = 600;
	snprintf(c->xdp.pin_dir, sizeof(c->xdp.pin_dir), "/sys/fs/bpf/easgate");

	c->store = CFG_STORE_SQLITE;
	if (gethostname(c->node_name, sizeof(c->node_name)) < 0 || !c->node_name[0])
		snprintf(c->node_name, sizeof(c->node_name), "easgate");
	c->node_name[sizeof(c->node_name) - 1] = 0;
	c->pg.journal_max = 1000000;
	c->pg.timeout_ms = 5000;
	c->pg.heartbeat_ms = 5000;
	c->pg.initial_sync_ms = 10000;
	c->pg.auto_migrate = 1;
}

/* --- schema-checked reading ------------------------------------------------ */

/* An @include'd file's lines, read at its first list of texts. */
struct inc_lines {
	char *file;		    /* as libconfig names it */
	struct config_lines *lines; /* NULL = keep libconfig's lines */
};

struct rd {
	const char *path;
	struct gw_config *c;
	struct config_errors *errs;
	const char *text; /* what libconfig parsed */
	size_t len;
	struct config_lines *lines; /* split at the first list of texts, owned */
	int lines_read;		    /* tried once: NULL lines = keep libconfig's */
	struct inc_lines *inc;	    /* the included files' (owned) */
	int ninc;
};

/* The file that holds s: the @include'd file that libconfig read it from
 * (named as the @include wrote it), else the one parsed from text. */
static const char *src_file(const struct rd *rd, const config_setting_t *s)
{
	const char *f = config_setting_source_file(s);
	return f ? f : rd->path;
}

#define ERR(rd, s, ...)                                                                            \
	config_error((rd)->errs, src_file(rd, s), config_setting_source_line(s), __VA_ARGS__)

/* Every child of group g (at path where, "" = the top level) must be a key
 * of config_keys.h's table: what the file accepts is what is documented. */
static void check_keys(struct rd *rd, const config_setting_t *g, const char *where)
{
	int n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		if (!name)
			continue;
		int ok = 0;
		for (size_t k = 0; k < config_keys_count && !ok; k++)
			ok = config_key_is_child(&config_keys[k], where) &&
			     !strcmp(config_key_leaf(&config_keys[k]), name);
		if (!ok)
			ERR(rd, s, "unknown setting '%s' in %s", name,
			    *where ? where : "the top level");
	}
}

static int get_str(struct rd *rd, const config_setting_t *g, const char *key, char *out,
		   size_t outsz)
{
	config_setting_t *s = config_setting_get_member(g, key);
	if (!s)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		ERR(rd, s, "'%s' must be a string", key);
		return -1;
	}
	const char *v = config_setting_get_string(s);
	if (strlen(v) >= outsz) {
		ERR(rd, s, "'%s' is too long (max %zu)", key, outsz - 1);
		return -1;
	}
	snprintf(out, outsz, "%s", v);
	return 1;
}

static int get_uint(struct rd *rd, const config_setting_t *g, const char *key, unsigned *out,
		    unsigned min, unsigned max)
{
	config_setting_t *s = config_setting_get_member(g, key);
	if (!s)
		return 0;
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
		ERR(rd, s, "'%s' must be an integer", key);
		return -1;
	}
	long long v = config_setting_get_int64(s);
	if (t == CONFIG_TYPE_INT)
		v = config_setting_get_int(s);
	if (v < (long long)min || v > (long long)max) {
		ERR(rd, s, "'%s' = %lld is out of range [%u, %u]", key, v, min, max);
		return -1;
	}
	*out = (unsigned)v;
	return 1;
}

static int get_bool(struct rd *rd, const config_setting_t *g, const char *key, int *out)
{
	config_setting_t *s = config_setting_get_member(g, key);
	if (!s)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		ERR(rd, s, "'%s' must be true or false", key);
		return -1;
	}
	*out = config_setting_get_bool(s);
	return 1;
}

/* A numeric setting (int, int64 or float) as a double. 0 if s is not numeric. */
static int number_value(const config_setting_t *s, double *v)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		*v = config_setting_get_int(s);
		return 1;
	case CONFIG_TYPE_INT64:
		*v = (double)config_setting_get_int64(s);
		return 1;
	case CONFIG_TYPE_FLOAT:
		*v = config_setting_get_float(s);
		return 1;
	default:
		return 0;
	}
}

/* Seconds in the file, milliseconds in the model (fractions allowed: 0.5). */
static int get_secs(struct rd *rd, const config_setting_t *g, const char *key, unsigned *ms,
		    double max_s)
{
	config_setting_t *s = config_setting_get_member(g, key);
	double v;
	if (!s)
		return 0;
	if (!number_value(s, &v)) {
		ERR(rd, s, "'%s' must be a number of seconds", key);
		return -1;
	}
	if (v <= 0 || v > max_s) {
		ERR(rd, s, "'%s' = %g s is out of range (0, %g]", key, v, max_s);
		return -1;
	}
	*ms = (unsigned)(v * 1000.0 + 0.5);
	return 1;
}

/*
 * The lines of file (NULL: the text parsed), split once per parse. An
 * included file is read again here, as libconfig opened it (the name as
 * written: no include directory is set when includes are read): were it
 * changed in between, a line found is only a line nearer its text, or
 * libconfig's own.
 */
static const struct config_lines *lines_of(struct rd *rd, const char *file)
{
	if (!file) {
		if (!rd->lines_read) {
			rd->lines = config_lines_new(rd->text, rd->len);
			rd->lines_read = 1;
		}
		return rd->lines;
	}
	for (int i = 0; i < rd->ninc; i++)
		if (!strcmp(rd->inc[i].file, file))
			return rd->inc[i].lines;
	struct inc_lines *grown = realloc(rd->inc, sizeof(*grown) * (size_t)(rd->ninc + 1));
	if (!grown)
		return NULL;
	rd->inc = grown;
	struct inc_lines *il = &rd->inc[rd->ninc];
	if (!(il->file = strdup(file)))
		return NULL;
	rd->ninc++;
	size_t len = 0;
	char *text = config_file_read(file, &len);
	il->lines = text ? config_lines_new(text, len) : NULL;
	free(text);
	return il->lines;
}

static void inc_lines_free(struct rd *rd)
{
	for (int i = 0; i < rd->ninc; i++) {
		free(rd->inc[i].file);
		config_lines_free(rd->inc[i].lines);
	}
	free(rd->inc);
}

/*
 * libconfig reports a list element's line where the parser finished it, which
 * for a string followed by comment lines is the closing ')' line. Point at the
 * line that holds the string instead: the nearest line at or above `line`
 * (at most 64 above) in file (NULL: the text parsed) that contains the text's
 * first words. Each file is read once per parse (config_lines.h: once per
 * element was quadratic).
 */
static int text_line(struct rd *rd, int line, const char *file, const char *text)
{
	char needle[48];
	size_t n = strcspn(text, "\"\\");
	if (n > sizeof(needle) - 1)
		n = sizeof(needle) - 1;
	if (n < 5)
		return line;
	memcpy(needle, text, n);
	needle[n] = 0;
	return config_lines_find(lines_of(rd, file), line, 64, needle);
}

/* file (an included file's name, from libconfig) as a string that the
 * config owns, for a cfg_text; NULL stays NULL (the config's own file).
 * -1 if out of memory. */
static int own_file_name(struct gw_config *c, const char *file, const char **out)
{
	*out = NULL;
	if (!file)
		return 0;
	for (int i = c->nincluded - 1; i >= 0; i--)
		if (!strcmp(c->included[i], file)) {
			*out = c->included[i];
			return 0;
		}
	char **grown = realloc(c->included, sizeof(*grown) * (size_t)(c->nincluded + 1));
	if (!grown)
		return -1;
	c->included = grown;
	if (!(grown[c->nincluded] = strdup(file)))
		return -1;
	*out = grown[c->nincluded++];
	return 0;
}

/* A list/array of strings -> cfg_text entries (strdup'd, with line numbers). */
static void get_texts(struct rd *rd, const config_setting_t *g, const char *key,
		      struct cfg_text *out, int *n, int max)
{
	config_setting_t *s = config_setting_get_member(g, key);
	if (!s)
		return;
	if (!config_setting_is_aggregate(s) || config_setting_is_group(s)) {
		ERR(rd, s, "'%s' must be a list of strings", key);
		return;
	}
	int len = config_setting_length(s);
	for (int i = 0; i < len; i++) {
		config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			ERR(rd, e, "'%s' entry %d must be a string", key, i + 1);
			continue;
		}
		if (*n >= max) {
			ERR(rd, e, "'%s': more than %d entries", key, max);
			return;
		}
		const char *file = config_setting_source_file(e);
		out[*n].text = strdup(config_setting_get_string(e));
		if (!out[*n].text || own_file_name(rd->c, file, &out[*n].file) < 0) {
			free(out[*n].text);
			out[*n].text = NULL;
			ERR(rd, e, "out of memory");
			return;
		}
		out[*n].line =
		    text_line(rd, (int)config_setting_source_line(e), file, out[*n].text);
		(*n)++;
	}
}

static void read_listen(struct rd *rd, config_setting_t *root, struct gw_config *c)
{
	config_setting_t *s = config_setting_get_member(root, "listen");
	if (!s)
		return;
	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		if (config_parse_addr(config_setting_get_string(s), &c->listen[0]) < 0)
			ERR(rd, s, "listen: bad address '%s' (want host:port or [v6]:port)",
			    config_setting_get_string(s));
		c->nlisten = 1;
		return;
	}
	if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
		ERR(rd, s, "listen must be an address or a list of addresses");
		return;
	}
	c->nlisten = 0;
	for (int i = 0; i < config_setting_length(s); i++) {
		config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			ERR(rd, e, "listen entries must be strings");
			continue;
		}
		if (c->nlisten >= CFG_MAX_LISTEN) {
			ERR(rd, e, "more than %d listen addresses", CFG_MAX_LISTEN);
			return;
		}
		if (config_parse_addr(config_setting_get_string(e), &c->listen[c->nlisten]) < 0)
			ERR(rd, e, "listen: bad address '%s'", config_setting_get_string(e));
		else
			c->nlisten++;
	}
	if (c->nlisten == 0)
		ERR(rd, s, "listen: at least one address is needed");
}

/* min_version and the cipher, ciphersuite and group lists, each checked by
 * OpenSSL itself so that a typo is refused here with its line, not at the
 * first handshake. */
static void read_tls_params(struct rd *rd, config_setting_t *g, struct gw_config *c)
{
	char v[16] = "", why[256];
	if (get_str(rd, g, "min_version", v, sizeof(v)) == 1) {
		int ver = tls_params_version(v);
		if (ver < 0)
			ERR(rd, config_setting_get_member(g, "min_version"),
			    "tls.min_version must be \"TLSv1.2\" (default), \"TLSv1.3\", or for an "
			    "old fleet \"TLSv1.1\" or \"TLSv1.0\"");
		else
			c->tls.min_version = ver;
	}
	static const struct {
		const char *key;
		size_t off, size;
		int (*check)(const char *, char *, size_t);
	} lists[] = {
	    {"ciphers", offsetof(struct gw_config, tls.ciphers), sizeof(c->tls.ciphers),
	     tls_params_check_ciphers},
	    {"ciphersuites", offsetof(struct gw_config, tls.ciphersuites),
	     sizeof(c->tls.ciphersuites), tls_params_check_ciphersuites},
	    {"groups", offsetof(struct gw_config, tls.groups), sizeof(c->tls.groups),
	     tls_params_check_groups},
	};
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		char *dst = (char *)c + lists[i].off;
		if (get_str(rd, g, lists[i].key, dst, lists[i].size) == 1 &&
		    lists[i].check(dst, why, sizeof(why)) < 0) {
			ERR(rd, config_setting_get_member(g, lists[i].key), "tls.%s: %s",
			    lists[i].key, why);
			dst[0] = 0;
		}
	}
	config_setting_t *cs = config_setting_get_member(g, "ciphers");
	if (cs && c->tls.ciphers[0] &&
	    tls_params_check_old_protocols(c->tls.ciphers, c->tls.min_version, why, sizeof(why)) <
		0)
		ERR(rd, cs, "tls.ciphers: %s", why);
}

static void read_tls(struct rd *rd, config_setting_t *root, struct gw_config *c)
{
	config_setting_t *g = config_setting_get_member(root, "tls");
	if (!g)
		return;
	if (!config_setting_is_group(g)) {
		ERR(rd, g, "tls must be a group { ... }");
		return;
	}
	check_keys(rd, g, "tls");
	get_bool(rd, g, "allow_incomplete_chain", &c->tls.allow_incomplete_chain);
	get_str(rd, g, "trust_file", c->tls.trust_file, sizeof(c->tls.trust_file));
	get_uint(rd, g, "ticket_rotation", &c->tls.ticket_rotate_s, 0, 7 * 86400);
	get_uint(rd, g, "expiry_warning", &c->tls.expiry_warn_days, 0, 3650);
	read_tls_params(rd, g, c);
	get_bool(rd, g, "ocsp_stapling", &c->tls.ocsp_stapling);
	get_secs(rd, g, "ocsp_fetch_timeout", &c->tls.ocsp_fetch_timeout_ms, 60);
	get_secs(rd, g, "ocsp_retry", &c->tls.ocsp_retry_ms, 86400);
	get_bool(rd, g, "cleanse_plaintext", &c->tls.cleanse_plaintext);
	char kt[16];
	if (get_str(rd, g, "ktls", kt, sizeof(kt)) == 1) {
		if (!strcmp(kt, "auto"))
			c->tls.ktls = CFG_KTLS_AUTO;
		else if (!strcmp(kt, "on"))
			c->tls.ktls = CFG_KTLS_ON;
		else if (!strcmp(kt, "off"))
			c->tls.ktls = CFG_KTLS_OFF;
		else
			ERR(rd, config_setting_get_member(g, "ktls"),
			    "tls.ktls must be \"auto\" (default), \"on\" or \"off\"");
	}
	config_setting_t *l = config_setting_get_member(g, "certificates");
	if (!l)
		return;
	if (!config_setting_is_list(l)) {
		ERR(rd, l, "tls.certificates must be a list ( { cert = ...; key = ...; }, ... )");
		return;
	}
	c->tls.ncerts = 0;
	for (int i = 0; i < config_setting_length(l); i++) {
		config_setting_t *e = config_setting_get_elem(l, (unsigned)i);
		if (!config_setting_is_group(e)) {
			ERR(rd, e, "certificate entries must be groups { cert = ...; key = ...; }");
			continue;
		}
		check_keys(rd, e, "tls.certificates");
		if (c->tls.ncerts >= CFG_MAX_CERTS) {
			ERR(rd, e, "more than %d certificates", CFG_MAX_CERTS);
			return;
		}
		struct cfg_cert *ct = &c->tls.certs[c->tls.ncerts];
		if (get_str(rd, e, "cert", ct->cert, sizeof(ct->cert)) != 1)
			ERR(rd, e, "certificate entry needs cert = \"file.pem\"");
		if (get_str(rd, e, "key", ct->key, sizeof(ct->key)) != 1)
			ERR(rd, e, "certificate entry needs key = \"file.key\"");
		get_str(rd, e, "ocsp_response", ct->ocsp_response, sizeof(ct->ocsp_response));
		c->tls.ncerts++;
	}
	if (!c->tls.ncerts)
		ERR(rd, l, "tls.certificates is empty");
}

static void read_timeouts(struct rd *rd, config_setting_t *root, struct gw_config *c)
{
	config_setting_t *g = config_setting_get_member(root, "timeouts");
	if (!g)
		return;
	check_keys(rd, g, "timeouts");
	get_secs(rd, g, "handshake", &c->timeouts.handshake_ms, 600);
	get_secs(rd, g, "request_head", &c->timeouts.head_ms, 600);
	get_secs(rd, g, "request_body", &c->timeouts.body_ms, 3600);
	get_secs(rd, g, "idle", &c->timeouts.idle_ms, 86400);
	get_secs(rd, g, "backend_connect", &c->timeouts.backend_connect_ms, 600);
	get_secs(rd, g, "backend_response", &c->timeouts.backend_response_ms, 86400);
	get_secs(rd, g, "hanging_request", &c->timeouts.hanging_ms, 86400);
	get_secs(rd, g, "drain", &c->timeouts.drain_ms, 86400);
}

static void read_limits(struct rd *rd, config_setting_t *root, struct gw_config *c)
{
	config_setting_t *g = config_setting_get_member(root, "limits");
	if (!g)
		return;
	check_keys(rd, g, "limits");
	get_uint(rd, g, "max_head", &c->limits.max_head, 1024, 1 << 20);
	get_uint(rd, g, "max_line", &c->limits.max_line, 256, 1 << 20);
	get_uint(rd, g, "max_headers", &c->limits.max_headers, 8, 96);
	get_uint(rd, g, "max_connections", &c->limits.max_conns, 16, 10000000);
	get_uint(rd, g, "inspect_body", &c->limits.inspect_body, 0, 1 << 24);
	get_uint(rd, g, "min_body_rate", &c->limits.min_body_rate, 0, 1 << 30);
	get_uint(rd, g, "max_connections_per_source", &c->limits.max_conns_per_source, 0, 10000000);
	config_setting_t *ex = config_setting_get_member(g, "per_source_exempt");
	if (ex && !config_setting_is_array(ex) && !config_setting_is_list(ex))
		ERR(rd, ex,
		    "limits.per_source_exempt must be a list of prefixes [ \"10.0.0.0/8\" ]");
	for (int i = 0; ex && i < config_setting_length(ex); i++) {
		config_setting_t *e = config_setting_get_elem(ex, (unsigned)i);
		const char *v = config_setting_get_string(e);
		if (c->limits.ncap_exempt >= CFG_MAX_EXEMPT) {
			ERR(rd, e, "limits.per_source_exempt: more than %d prefixes",
			    CFG_MAX_EXEMPT);
			break;
		}
		if (!v || config_parse_prefix(v, &c->limits.cap_exempt[c->limits.ncap_exempt]) < 0)
			ERR(rd, e,
			    "limits.per_source_exempt: '%s' is not an address or prefix "
			    "(\"198.18.0.0/15\", \"2001:db8::/32\")",
			    v ? v : "?");
		else
			c->limits.ncap_exempt++;
	}
	if (c->limits.max_line > c->limits.max_head)
		ERR(rd, g, "limits.max_line (%u) exceeds limits.max_head (%u)", c->limits.max_line,
		    c->limits.max_head);
}

static void read_backend(struct rd *rd, config_setting_t *e, struct cfg_backend *b)
{
	check_keys(rd, e, "backends");
	config_backend_defaults(b);
	if (get_str(rd, e, "name", b->name, sizeof(b->name)) != 1)
		ERR(rd, e, "backend needs name = \"...\" (at most %d characters)",
		    EG_BACKEND_NAME_LEN - 1);
	char addr[128] = "";
	if (get_str(rd, e, "address", addr, sizeof(addr)) != 1)
		ERR(rd, e, "backend '%s' needs address = \"host:port\"", b->name);
	else if (config_parse_addr(addr, &b->addr) < 0)
		ERR(rd, e, "backend '%s': bad address '%s' (want IPv4:port or [IPv6]:port)",
		    b->name, addr);
	get_str(rd, e, "prefix", b->prefix, sizeof(b->prefix));
	if (b->prefix[0] && (b->prefix[0] != '/' || b->prefix[strlen(b->prefix) - 1] == '/'))
		ERR(rd, e, "backend '%s': prefix must start with '/' and not end with one",
		    b->name);
	get_bool(rd, e, "tls", &b->tls);
	get_str(rd, e, "ca", b->ca, sizeof(b->ca));
	get_str(rd, e, "sni", b->sni, sizeof(b->sni));
	get_bool(rd, e, "verify", &b->verify);
	get_uint(rd, e, "weight", &b->weight, 1, 1000);
	char reuse[16] = "";
	if (get_str(rd, e, "reuse", reuse, sizeof(reuse)) == 1) {
		if (!strcmp(reuse, "safe"))
			b->reuse = CFG_REUSE_SAFE;
		else if (!strcmp(reuse, "never"))
			b->reuse = CFG_REUSE_NEVER;
		else
			ERR(rd, e, "backend '%s': reuse must be \"safe\" or \"never\"", b->name);
	}
	config_setting_t *h = config_setting_get_member(e, "health");
	if (h) {
		if (config_setting_type(h) == CONFIG_TYPE_BOOL) {
			b->health_enabled = config_setting_get_bool(h);
			return;
		}
		if (!config_setting_is_group(h)) {
			ERR(rd, h,
			    "health must be false or a group { path = ...; interval = ...; }");
			return;
		}
		check_keys(rd, h, "backends.health");
		get_str(rd, h, "path", b->health_path, sizeof(b->health_path));
		get_secs(rd, h, "interval", &b->health_interval_ms, 3600);
		get_secs(rd, h, "timeout", &b->health_timeout_ms, 600);
		get_uint(rd, h, "rise", &b->rise, 1, 100);
		get_uint(rd, h, "fall", &b->fall, 1, 100);
	}
}

static void read_backends(struct rd *rd, config_setting_t *root, struct gw_config *c)
{
	config_setting_t *l = config_setting_get_member(root, "backends");
	if (!l)
		return;
	if (!config_setting_is_list(l)) {
		ERR(rd, l, "backends must be a list ( { name = ...; address = ...; }, ... )");
		return;
	}
	c->nbackends = 0;
	for (int i = 0; i < config_setting_length(l); i++) {
		config_setting_t *e = config_setting_get_elem(l, (unsigned)i);
		if (!config_setting_is_group(e)) {
			ERR(rd, e, "backend entries must be groups { ... }");
			continue;
		}
		if (c->nbackends >= EG_MAX_BACKENDS) {
			ERR(rd, e, "more than %d backends", EG_MAX_BACKENDS);
			return;
		}
		struct cfg_backend *b = &c->backends[c->nbackends];
		read_backend(rd, e, b);
		for (int j = 0; j < c->nbackends; j++)
			if (b->name[0] && !strcmp(c->backends[j].name, b->name))
				ERR(rd, e, "backend name '%s' is used twice", b->name);
		c->nbackends++;
	}
	if (!c->nbackends)
		ERR(rd, l, "backends is empty: at least one backend is needed");
}

static void read_policy(struct rd *rd, config_setting_t *root, struct gw_config *c)
{
	config_setting_t *g = config_setting_get_member(root, "policy");
	if (!g)
		return;
	check_keys(rd, g, "policy");
	char def[16] = "";
	if (get_str(rd, g, "default", def, sizeof(def)) == 1) {
		int a = policy_access_parse(def);
		if (a < 0)
			ERR(rd, config_setting_get_member(g, "default"),
			    "policy.default must be \"allow\", \"block\" or \"quarantine\"");
		else
			c->policy.default_access = a;
	}
	get_texts(rd, g, "rules", c->policy.rules, &c->policy.nrules, CFG_MAX_RULES);
	get_texts(rd, g, "blocked_device_ids", c->policy.blocked_ids, &c->policy.nblocked,
		  CFG_MAX_IDS);
	get_texts(rd, g, "allowed_device_ids", c->policy.allowed_ids, &c->policy.nallowed,
		  CFG_MAX_IDS);
	get_str(rd, g, "ios_builds", c->policy.ios_builds, sizeof(c->policy.ios_builds));
	config_setting_t *inc = config_setting_get_member(g, "incubation");
	if (!inc)
		return;
	if (!config_setting_is_group(inc)) {
		ERR(rd, inc,
		    "policy.incubation must be a group { days = 21; families = [\"iOS\"]; }");
		return;
	}
	check_keys(rd, inc, "policy.incubation");
	c->policy.incubation = 1;
	get_bool(rd, inc, "enabled", &c->policy.incubation);
	/* 0 days is taken only with the incubation off (policy.h refuses it
	 * on): refused here, where its line is known. */
	if (get_uint(rd, inc, "days", &c->policy.incubation_days, 0, 3650) == 1 &&
	    c->policy.incubation && !c->policy.incubation_days)
		ERR(rd, config_setting_get_member(inc, "days"),
		    "policy.incubation.days must be at least 1 (or enabled = false)");
	config_setting_t *f = config_setting_get_member(inc, "families");
	if (f) {
		for (int i = 0; i < config_setting_length(f); i++) {
			config_setting_t *e = config_setting_get_elem(f, (unsigned)i);
			const char *v = config_setting_get_string(e);
			if (!v || !v[0] || strlen(v) >= sizeof(c->policy.families[0]) ||
			    c->policy.nfamilies >= CFG_MAX_FAMILIES) {
				ERR(rd, e,
				    "incubation.families: entries are short OS family names "
				    "such as \"iOS\" (at most %d)",
				    CFG_MAX_FAMILIES);
				continue;
			}
			snprintf(c->policy.families[c->policy.nfamilies++],
				 sizeof(c->policy.families[0]), "%s", v);
		}
	}
}

static void read_xdp(struct rd *rd, config_setting_t *root, struct gw_config *c)
{
	config_setting_t *g = config_setting_get_member(root, "xdp");
	if (!g)
		return;
	check_keys(rd, g, "xdp");
	config_setting_t *l = config_setting_get_member(g, "interfaces");
	if (l) {
		for (int i = 0; i < config_setting_length(l); i++) {
			config_setting_t *e = config_setting_get_elem(l, (unsigned)i);
			const char *v = config_setting_get_string(e);
			if (!v || !v[0] || strlen(v) >= IF_NAMESIZE ||
			    c->xdp.nifaces >= CFG_MAX_IFACES) {
				ERR(rd, e,
				    "xdp.interfaces: entries are interface names (at most %d)",
				    CFG_MAX_IFACES);
				continue;
			}
			snprintf(c->xdp.ifaces[c->xdp.nifaces++], IF_NAMESIZE, "%s", v);
		}
	}
	char mode[16] = "";
	if (get_str(rd, g, "mode", mode, sizeof(mode)) == 1) {
		if (!strcmp(mode, "auto"))
			c->xdp.mode = 0;
		else if (!strcmp(mode, "native"))
			c->xdp.mode = 1;
		else if (!strcmp(mode, "generic"))
			c->xdp.mode = 2;
		else
			ERR(rd, config_setting_get_member(g, "mode"),
			    "xdp.mode must be \"auto\", \"native\" or \"generic\"");
	}
	char action[16] = "";
	if (get_str(rd, g, "action", action, sizeof(action)) == 1) {
		if (!strcmp(action, "drop"))
			c->xdp.action_rst = 0;
		else if (!strcmp(action, "rst"))
			c->xdp.action_rst = 1;
		else
			ERR(rd, config_setting_get_member(g, "action"),
			    "xdp.action must be \"drop\" or \"rst\"");
	}
	get_uint(rd, g, "syn_rate", &c->xdp.syn_rate, 0, 10000000);
	get_uint(rd, g, "syn_burst", &c->xdp.syn_burst, 0, 10000000);
	get_uint(rd, g, "verdict_ttl", &c->xdp.verdict_ttl_s, 1, 30 * 86400);
	get_str(rd, g, "pin_dir", c->xdp.pin_dir, sizeof(c->xdp.pin_dir));
}

static int get_double(struct rd *rd, const config_setting_t *g, const char *key, double *out,
		      double min, double max)
{
	config_setting_t *s = config_setting_get_member(g, key);
	double v;
	if (!s)
		return 0;
	if (!number_value(s, &v)) {
		ERR(rd, s, "'%s' must be a number", key);
		return -1;
	}
	if (v < min || v > max) {
		ERR(rd, s, "'%s' = %g is out of range [%g, %g]", key, v, min, max);
		return -1;
	}
	*out = v;
	return 1;
}

static void read_tclass(struct rd *rd, config_setting_t *e, struct throttle_class *k, int idx)
{
	check_keys(rd, e, "throttle.classes");
	char name[THROTTLE_NAME_MAX] = "";
	if (get_str(rd, e, "name", name, sizeof(name)) != 1)
		ERR(rd, e, "throttle class needs name = \"...\"");
	throttle_class_defaults(k, name);
	if (get_str(rd, e, "match", k->match, sizeof(k->match)) != 1 && idx > 0)
		ERR(rd, e,
		    "throttle class '%s' needs match = \"<Characteristic> <op> ...\" (only "
		    "the first class may go without)",
		    name);
	get_double(rd, e, "burst", &k->burst, 0, 1e9);
	get_double(rd, e, "rate", &k->rate, 0, 1e9);
	get_double(rd, e, "cutoff", &k->cutoff, 0, 1e9);
	get_double(rd, e, "cooldown", &k->cooldown, 0, 86400 * 30);
	get_uint(rd, e, "max_concurrent", &k->max_concurrent, 0, 100000);
	get_uint(rd, e, "max_devices", &k->max_devices, 0, 100000);
	get_uint(rd, e, "hammer", &k->hammer, 0, 100000);
	get_double(rd, e, "xdp_ttl", &k->xdp_ttl, 0, 86400 * 30);
	config_setting_t *l = config_setting_get_member(e, "loop");
	if (l) {
		check_keys(rd, l, "throttle.classes.loop");
		get_double(rd, l, "window", &k->loop.window, 1, 3600);
		get_uint(rd, l, "threshold", &k->loop.threshold, 0, THROTTLE_THRESHOLD_MAX);
		get_double(rd, l, "throttle", &k->loop.throttle, 0, 86400 * 30);
		get_double(rd, l, "quarantine", &k->loop.quarantine, 0, 86400 * 30);
		get_double(rd, l, "memory", &k->loop.memory, 0, 86400 * 365);
		config_setting_t *cm = config_setting_get_member(l, "commands");
		for (int i = 0; cm && i < config_setting_length(cm); i++) {
			config_setting_t *x = config_setting_get_elem(cm, (unsigned)i);
			const char *cmd = config_setting_name(x);
			int t = config_setting_type(x);
			if (!cmd || (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_BOOL)) {
				ERR(rd, x,
				    "loop.commands entries look like MeetingResponse = 8; "
				    "(or Ping = false; to exempt a command)");
				continue;
			}
			/* Ping = false: never a loop; Ping = true: the class threshold. */
			if (t == CONFIG_TYPE_BOOL && config_setting_get_bool(x))
				continue;
			unsigned th =
			    t == CONFIG_TYPE_BOOL ? 0 : (unsigned)config_setting_get_int(x);
			if (th == 0 && t != CONFIG_TYPE_BOOL) {
				ERR(rd, x,
				    "loop.commands: %s = 0 is ambiguous; write %s = false to "
				    "exempt the command",
				    cmd, cmd);
				continue;
			}
			if (throttle_class_set_loop_cmd(k, cmd, th) < 0)
				ERR(rd, x,
				    "loop.commands: unknown command '%s' or threshold %u out of "
				    "range (2..%d)",
				    cmd, th, THROTTLE_THRESHOLD_MAX);
		}
	}
	char err[256];
	if (throttle_class_check(k, err, sizeof(err)) < 0)
		ERR(rd, e, "throttle class '%s': %s", name, err);
}

static void read_throttle(struct rd *rd, config_setting_t *root, struct gw_config *c)
{
	config_setting_t *g = config_setting_get_member(root, "throttle");
	if (!g)
		return;
	check_keys(rd, g, "throttle");
	c->throttle.enabled = 1;
	get_bool(rd, g, "enabled", &c->throttle.enabled);
	get_uint(rd, g, "devices", &c->throttle.tc.devices, 64, 1u << 26);
	get_uint(rd, g, "users", &c->throttle.tc.users, 64, 1u << 26);
	get_uint(rd, g, "offenders", &c->throttle.tc.offenders, 16, 1u << 20);
	get_double(rd, g, "device_idle", &c->throttle.tc.device_idle, 1, 86400 * 3650);
	get_double(rd, g, "max_request", &c->throttle.tc.max_request, 1, 86400);
	config_setting_t *l = config_setting_get_member(g, "classes");
	if (!l)
		return;
	if (!config_setting_is_list(l)) {
		ERR(rd, l, "throttle.classes must be a list ( { name = ...; ... }, ... )");
		return;
	}
	c->throttle.nclasses = 0;
	for (int i = 0; i < config_setting_length(l); i++) {
		config_setting_t *e = config_setting_get_elem(l, (unsigned)i);
		if (!config_setting_is_group(e) || c->throttle.nclasses >= CFG_MAX_TCLASSES) {
			ERR(rd, e, "throttle.classes entries are groups { ... } (at most %d)",
			    CFG_MAX_TCLASSES);
			continue;
		}
		read_tclass(rd, e, &c->throttle.classes[c->throttle.nclasses], i);
		c->throttle.nclasses++;
	}
	if (!c->throttle.nclasses)
		ERR(rd, l, "throttle.classes is empty");
}

static void read_admin(struct rd *rd, config_setting_t *root, struct gw_config *c)
{
	config_setting_t *g = config_setting_get_member(root, "admin");
	if (!g)
		return;
	check_keys(rd, g, "admin");
	if (get_str(rd, g, "metrics", c->admin.metrics, sizeof(c->admin.metrics)) == 1 &&
	    c->admin.metrics[0] && config_parse_addr(c->admin.metrics, &c->admin.metrics_addr) < 0)
		ERR(rd, config_setting_get_member(g, "metrics"), "admin.metrics: bad address '%s'",
		    c->admin.metrics);
	if (get_str(rd, g, "web", c->admin.web, sizeof(c->admin.web)) == 1 && c->admin.web[0] &&
	    (config_parse_addr(c->admin.web, &c->admin.web_addr) < 0 || c->admin.web_addr.plain))
		ERR(rd, config_setting_get_member(g, "web"),
		    "admin.web: bad address '%s' (host:port; the console is HTTPS only)",
		    c->admin.web);
	get_str(rd, g, "web_accounts", c->admin.web_accounts, sizeof(c->admin.web_accounts));
	get_str(rd, g, "web_assets", c->admin.web_assets, sizeof(c->admin.web_assets));
	get_str(rd, g, "web_chartjs", c->admin.web_chartjs, sizeof(c->admin.web_chartjs));
	get_secs(rd, g, "web_idle", &c->admin.web_idle_ms, 86400);
	get_secs(rd, g, "web_lockout", &c->admin.web_lockout_ms, 86400);
}

/* An e-mail address as a recipient or sender: no blanks or control bytes
 * (they would end a header line or an SMTP command), one '@'. */
static int mail_address_ok(const char *s)
{
	const char *at = strchr(s, '@');
	if (!at || at == s || !at[1] || strchr(at + 1, '@'))
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == '<' || *s == '>' || *s == 0x7f)
			return 0;
	return 1;
}

static void read_notify(struct rd *rd, config_setting_t *root, struct gw_config *c)
{
	config_setting_t *g = config_setting_get_member(root, "notify");
	if (!g)
		return;
	check_keys(rd, g, "notify");
	double minutes;
	if (get_double(rd, g, "batch", &minutes, 0.05, 1440) == 1)
		c->notify.batch_ms = (unsigned)(minutes * 60000.0 + 0.5);
	if (get_str(rd, g, "from", c->notify.from, sizeof(c->notify.from)) == 1 &&
	    !mail_address_ok(c->notify.from))
		ERR(rd, config_setting_get_member(g, "from"), "notify.from: not an e-mail address");
	config_setting_t *l = config_setting_get_member(g, "admins");
	for (int i = 0; l && i < config_setting_length(l); i++) {
		config_setting_t *e = config_setting_get_elem(l, (unsigned)i);
		const char *v = config_setting_get_string(e);
		if (!v || !mail_address_ok(v) || strlen(v) >= sizeof(c->notify.admins[0]) ||
		    c->notify.nadmins >= CFG_MAX_NOTIFY_TO) {
			ERR(rd, e, "notify.admins: entries are e-mail addresses (at most %d)",
			    CFG_MAX_NOTIFY_TO);
			continue;
		}
		snprintf(c->notify.admins[c->notify.nadmins++], sizeof(c->notify.admins[0]), "%s",
			 v);
	}
	config_setting_t *m = config_setting_get_member(g, "smtp");
	if (m) {
		check_keys(rd, m, "notify.smtp");
		if (get_str(rd, m, "url", c->notify.smtp_url, sizeof(c->notify.smtp_url)) == 1 &&
		    c->notify.smtp_url[0] && strncmp(c->notify.smtp_url, "smtp://", 7) &&
		    strncmp(c->notify.smtp_url, "smtps://", 8))
			ERR(rd, config_setting_get_member(m, "url"),
			    "notify.smtp.url must start with smtp:// or smtps://");
		get_bool(rd, m, "starttls", &c->notify.smtp_starttls);
		get_str(rd, m, "user", c->notify.smtp_user, sizeof(c->notify.smtp_user));
		get_str(rd, m, "password_file", c->notify.smtp_password_file,
			sizeof(c->notify.smtp_password_file));
		get_str(rd, m, "ca", c->notify.smtp_ca, sizeof(c->notify.smtp_ca));
	}
	config_setting_t *w = config_setting_get_member(g, "webhook");
	if (w) {
		check_keys(rd, w, "notify.webhook");
		if (get_str(rd, w, "url", c->notify.webhook_url, sizeof(c->notify.webhook_url)) ==
			1 &&
		    c->notify.webhook_url[0] && strncmp(c->notify.webhook_url, "https://", 8) &&
		    strncmp(c->notify.webhook_url, "http://127.", 11) &&
		    strncmp(c->notify.webhook_url, "http://localhost", 16))
			ERR(rd, config_setting_get_member(w, "url"),
			    "notify.webhook.url must be https:// (plain http only to loopback)");
		get_str(rd, w, "secret_file", c->notify.webhook_secret_file,
			sizeof(c->notify.webhook_secret_file));
		get_str(rd, w, "ca", c->notify.webhook_ca, sizeof(c->notify.webhook_ca));
		if (c->notify.webhook_url[0] && !c->notify.webhook_secret_file[0])
			ERR(rd, w, "notify.webhook needs secret_file (the HMAC key)");
	}
	config_setting_t *u = config_setting_get_member(g, "user");
	if (u) {
		check_keys(rd, u, "notify.user");
		get_bool(rd, u, "enabled", &c->notify.user_enabled);
		get_str(rd, u, "address", c->notify.user_address, sizeof(c->notify.user_address));
		get_str(rd, u, "template", c->notify.user_template,
			sizeof(c->notify.user_template));
		get_str(rd, u, "contact", c->notify.user_contact, sizeof(c->notify.user_contact));
	}
	config_setting_t *r = config_setting_get_member(g, "retry");
	if (r) {
		check_keys(rd, r, "notify.retry");
		get_secs(rd, r, "min", &c->notify.retry_min_ms, 3600);
		get_secs(rd, r, "max", &c->notify.retry_max_ms, 86400);
		if (c->notify.retry_max_ms < c->notify.retry_min_ms)
			ERR(rd, r, "notify.retry.max is below notify.retry.min");
	}
	get_uint(rd, g, "queue", &c->notify.queue, 16, 10000000);
	get_secs(rd, g, "timeout", &c->notify.timeout_ms, 600);
}

/* store = "sqlite" | "postgresql", node_name, and postgresql { ... }. */
static void read_store(struct rd *rd, config_setting_t *root, struct gw_config *c)
{
	char kind[16] = "";
	if (get_str(rd, root, "store", kind, sizeof(kind)) == 1) {
		if (!strcmp(kind, "sqlite"))
			c->store = CFG_STORE_SQLITE;
		else if (!strcmp(kind, "postgresql"))
			c->store = CFG_STORE_POSTGRESQL;
		else
			ERR(rd, config_setting_get_member(root, "store"),
			    "store must be \"sqlite\" (default) or \"postgresql\"");
	}
	if (get_str(rd, root, "node_name", c->node_name, sizeof(c->node_name)) == 1 &&
	    (!c->node_name[0] || strcspn(c->node_name, " \t\r\n\"\\") != strlen(c->node_name)))
		ERR(rd, config_setting_get_member(root, "node_name"),
		    "node_name must be a non-empty name without spaces or quotes");
	config_setting_t *g = config_setting_get_member(root, "postgresql");
	if (g) {
		if (!config_setting_is_group(g)) {
			ERR(rd, g, "postgresql must be a group { conninfo = \"...\"; }");
			return;
		}
		check_keys(rd, g, "postgresql");
		if (get_str(rd, g, "conninfo", c->pg.conninfo, sizeof(c->pg.conninfo)) == 1) {
			/* libpq's own parser: a typo is refused here with its line. */
			char *why = NULL;
			PQconninfoOption *o = PQconninfoParse(c->pg.conninfo, &why);
			if (!o)
				ERR(rd, config_setting_get_member(g, "conninfo"),
				    "postgresql.conninfo: %.*s", why ? (int)strcspn(why, "\n") : 13,
				    why ? why : "out of memory");
			PQconninfoFree(o);
			PQfreemem(why);
		}
		get_uint(rd, g, "journal_max", &c->pg.journal_max, 16, 100000000);
		get_secs(rd, g, "timeout", &c->pg.timeout_ms, 600);
		get_secs(rd, g, "heartbeat", &c->pg.heartbeat_ms, 3600);
		get_secs(rd, g, "initial_sync", &c->pg.initial_sync_ms, 3600);
		get_bool(rd, g, "auto_migrate", &c->pg.auto_migrate);
	}
	if (c->store == CFG_STORE_POSTGRESQL && !c->pg.conninfo[0])
		ERR(rd, g ? g : config_setting_get_member(root, "store"),
		    "store = \"postgresql\" needs postgresql.conninfo (a libpq connection "
		    "string, e.g. \"host=db1,db2 dbname=easgate "
		    "target_session_attrs=read-write\")");
}

int config_load(struct gw_config *c, const char *path, struct config_errors *errs)
{
	size_t len = 0;
	char *text = config_file_read(path, &len);
	if (!text) {
		snprintf(c->path, sizeof(c->path), "%s", path);
		config_error(errs, path, 0, "cannot read the file: %m");
		return -1;
	}
	int r = config_load_text(c, path, text, len, 0, errs);
	free(text);
	return r;
}

/* libconfig joins the include directory and the name as written (absolute
 * or not), so a directory that cannot exist makes every @include fail as a
 * syntax error at its line, without a file opened. */
#define NO_INCLUDE_DIR "/nonexistent/easgate-no-include"

int config_load_text(struct gw_config *c, const char *name, const char *text, size_t len,
		     unsigned flags, struct config_errors *errs)
{
	config_t lc;
	struct rd rd = {.path = name, .c = c, .errs = errs, .text = text, .len = len};
	snprintf(c->path, sizeof(c->path), "%s", name);
	/* libconfig reads a stream (config_read_string would stop at a NUL
	 * that the file's bytes may hold). */
	FILE *f = fmemopen((void *)text, len, "r");
	if (!f) {
		config_error(errs, name, 0, "cannot read the file: %m");
		return -1;
	}
	config_init(&lc);
	if (flags & CONFIG_TEXT_NO_INCLUDE)
		config_set_include_dir(&lc, NO_INCLUDE_DIR);
	int ok = config_read(&lc, f) == CONFIG_TRUE;
	fclose(f);
	if (!ok) {
		const char *why = config_error_text(&lc);
		/* libconfig opens a relative @include from the working directory
		 * (/ under systemd), where the admin may have meant the config's
		 * own: say where it was looked for. */
		char cwd[PATH_MAX], where[PATH_MAX + 64] = "";
		if (!(flags & CONFIG_TEXT_NO_INCLUDE) && !strcmp(why, "cannot open include file") &&
		    getcwd(cwd, sizeof(cwd)))
			snprintf(where, sizeof(where),
				 " (a relative name is opened from the working directory %s)", cwd);
		config_error(errs, config_error_file(&lc) ? config_error_file(&lc) : name,
			     config_error_line(&lc), "syntax: %s%s", why, where);
		config_destroy(&lc);
		return -1;
	}
	config_setting_t *root = config_root_setting(&lc);
	check_keys(&rd, root, "");
	read_listen(&rd, root, c);
	unsigned w = 0;
	if (get_uint(&rd, root, "workers", &w, 0, EG_MAX_WORKERS) == 1)
		c->workers = (int)w;
	get_str(&rd, root, "user", c->user, sizeof(c->user));
	get_str(&rd, root, "group", c->group, sizeof(c->group));
	get_str(&rd, root, "state_dir", c->state_dir, sizeof(c->state_dir));
	get_str(&rd, root, "control_socket", c->control_socket, sizeof(c->control_socket));
	if (get_str(&rd, root, "log_level", c->log_level, sizeof(c->log_level)) == 1 &&
	    log_level_parse(c->log_level) < 0)
		ERR(&rd, config_setting_get_member(root, "log_level"),
		    "log_level must be error, warn, info or debug");
	get_bool(&rd, root, "access_log", &c->access_log);
	get_bool(&rd, root, "strict_device_id", &c->strict_device_id);
	if (get_str(&rd, root, "relay_method", c->relay_method, sizeof(c->relay_method)) == 1 &&
	    strcmp(c->relay_method, "auto") && strcmp(c->relay_method, "user") &&
	    strcmp(c->relay_method, "splice"))
		ERR(&rd, config_setting_get_member(root, "relay_method"),
		    "relay_method must be auto, user or splice");
	get_str(&rd, root, "steering_secret_file", c->steering_secret_file,
		sizeof(c->steering_secret_file));
	read_tls(&rd, root, c);
	read_timeouts(&rd, root, c);
	read_limits(&rd, root, c);
	read_backends(&rd, root, c);
	read_policy(&rd, root, c);
	read_xdp(&rd, root, c);
	read_throttle(&rd, root, c);
	read_admin(&rd, root, c);
	read_store(&rd, root, c);
	read_notify(&rd, root, c);
	config_lines_free(rd.lines);
	inc_lines_free(&rd);
	config_destroy(&lc);
	if (errs->n) {
		config_free(c);
		return -1;
	}
	return 0;
}

/* --- the command line over the file ------------------------------------------ */

/* --backend name=host:port[,prefix=/p][,health=0|/path][,reuse=never][,weight=N] */
static int parse_backend_opt(const char *spec, struct cfg_backend *b, struct config_errors *errs)
{
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s", spec);
	config_backend_defaults(b);
	char *save = NULL, *tok = strtok_r(tmp, ",", &save);
	char *eq = tok ? strchr(tok, '=') : NULL;
	if (!eq) {
		config_error(errs, "--backend", 0, "want name=host:port[,prefix=/p][,health=0]: %s",
			     spec);
		return -1;
	}
	*eq = 0;
	snprintf(b->name, sizeof(b->name), "%s", tok);
	if (config_parse_addr(eq + 1, &b->addr) < 0) {
		config_error(errs, "--backend", 0, "bad address in %s", spec);
		return -1;
	}
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strncmp(tok, "prefix=", 7))
			snprintf(b->prefix, sizeof(b->prefix), "%s", tok + 7);
		else if (!strcmp(tok, "health=0"))
			b->health_enabled = 0;
		else if (!strncmp(tok, "health=", 7))
			snprintf(b->health_path, sizeof(b->health_path), "%s", tok + 7);
		else if (!strcmp(tok, "reuse=never"))
			b->reuse = CFG_REUSE_NEVER;
		else if (!strncmp(tok, "weight=", 7))
			b->weight = (unsigned)atoi(tok + 7) ? (unsigned)atoi(tok + 7) : 1;
		else {
			config_error(errs, "--backend", 0, "unknown option '%s'", tok);
			return -1;
		}
	}
	return 0;
}

int config_load_cmdline(const struct config_cmdline *o, struct gw_config *c,
			struct config_errors *errs)
{
	config_defaults(c);
	if (o->config_path && config_load(c, o->config_path, errs) < 0)
		return -1;
	if (o->listen) {
		if (config_parse_addr(o->listen, &c->listen[0]) < 0) {
			config_error(errs, "--listen", 0, "bad address %s", o->listen);
			goto bad;
		}
		c->nlisten = 1;
	}
	if (o->tls_cert) {
		snprintf(c->tls.certs[0].cert, sizeof(c->tls.certs[0].cert), "%s", o->tls_cert);
		snprintf(c->tls.certs[0].key, sizeof(c->tls.certs[0].key), "%s",
			 o->tls_key ? o->tls_key : o->tls_cert);
		c->tls.ncerts = 1;
	}
	if (o->trust_file)
		snprintf(c->tls.trust_file, sizeof(c->tls.trust_file), "%s", o->trust_file);
	if (o->nbackends) {
		c->nbackends = 0;
		for (int i = 0; i < o->nbackends; i++)
			if (parse_backend_opt(o->backends[i], &c->backends[c->nbackends++], errs) <
			    0)
				goto bad;
	}
	if (o->state_dir)
		snprintf(c->state_dir, sizeof(c->state_dir), "%s", o->state_dir);
	if (o->control_socket)
		snprintf(c->control_socket, sizeof(c->control_socket), "%s", o->control_socket);
	if (o->user)
		snprintf(c->user, sizeof(c->user), "%s", o->user);
	if (o->log_level)
		snprintf(c->log_level, sizeof(c->log_level), "%s", o->log_level);
	if (o->metrics) {
		snprintf(c->admin.metrics, sizeof(c->admin.metrics), "%s", o->metrics);
		if (config_parse_addr(o->metrics, &c->admin.metrics_addr) < 0) {
			config_error(errs, "--metrics", 0, "bad address %s", o->metrics);
			goto bad;
		}
	}
	if (o->workers >= 0)
		c->workers = o->workers;
	return 0;
bad:
	config_free(c);
	return -1;
}

void config_free(struct gw_config *c)
{
	for (int i = 0; i < c->policy.nrules; i++)
		free(c->policy.rules[i].text);
	for (int i = 0; i < c->policy.nblocked; i++)
		free(c->policy.blocked_ids[i].text);
	for (int i = 0; i < c->policy.nallowed; i++)
		free(c->policy.allowed_ids[i].text);
	c->policy.nrules = c->policy.nblocked = c->policy.nallowed = 0;
	for (int i = 0; i < c->nincluded; i++)
		free(c->included[i]);
	free(c->included);
	c->included = NULL;
	c->nincluded = 0;
}

int config_worker_count(const struct gw_config *c)
{
	if (c->workers > 0)
		return c->workers;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > EG_MAX_WORKERS)
		n = EG_MAX_WORKERS;
	return (int)n;
}
