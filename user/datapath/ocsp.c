/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* ocsp.c - see ocsp.h. */
#include "ocsp.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/http.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CLOCK_SKEW_S	  300
#define MAX_BACKOFF_MS	  (3600u * 1000u)
#define MIN_REFRESH_S	  10
#define DEADLINE_GRACE_MS 2000

/* --- checking a response ------------------------------------------------------- */

static time_t asn1_to_time(const ASN1_GENERALIZEDTIME *t)
{
	struct tm tm;
	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return 0;
	return timegm(&tm);
}

static void openssl_reason(char *out, size_t outsz)
{
	unsigned long e = ERR_peek_last_error();
	if (e)
		ERR_error_string_n(e, out, outsz);
	else
		snprintf(out, outsz, "no detail");
	ERR_clear_error();
}

int ocsp_check_response(const unsigned char *der, size_t len, X509 *leaf, X509 *issuer,
			STACK_OF(X509) * untrusted, X509_STORE *store, time_t now,
			struct ocsp_verdict *v)
{
	const unsigned char *p = der;
	OCSP_RESPONSE *resp = NULL;
	OCSP_BASICRESP *bs = NULL;
	OCSP_CERTID *id = NULL;
	char detail[200];
	int rc = -1;

	memset(v, 0, sizeof(*v));
	v->status = -1;
	if (!len || len > OCSP_MAX_RESPONSE || len > (size_t)LONG_MAX) {
		snprintf(v->why, sizeof(v->why), "response size %zu is out of range (1..%d)", len,
			 OCSP_MAX_RESPONSE);
		goto out;
	}
	resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
	if (!resp || p != der + len) {
		snprintf(v->why, sizeof(v->why), "not a DER OCSP response");
		goto out;
	}
	int rs = OCSP_response_status(resp);
	if (rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
		snprintf(v->why, sizeof(v->why), "responder answered %s",
			 OCSP_response_status_str(rs));
		goto out;
	}
	bs = OCSP_response_get1_basic(resp);
	if (!bs) {
		snprintf(v->why, sizeof(v->why), "no basic response inside");
		goto out;
	}
	/* The signer must chain to a trusted root and be the issuer or a
	 * responder the issuer delegated to (id-kp-OCSPSigning). */
	if (OCSP_basic_verify(bs, untrusted, store, 0) <= 0) {
		openssl_reason(detail, sizeof(detail));
		snprintf(v->why, sizeof(v->why), "signature or signer not trusted: %s", detail);
		goto out;
	}
	id = OCSP_cert_to_id(NULL, leaf, issuer);
	int status = -1, reason = -1;
	ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
	if (!id || !OCSP_resp_find_status(bs, id, &status, &reason, &rev, &thisupd, &nextupd)) {
		snprintf(v->why, sizeof(v->why), "the response is not about this certificate");
		goto out;
	}
	v->status = status;
	v->this_update = asn1_to_time(thisupd);
	v->expires = nextupd ? asn1_to_time(nextupd) : v->this_update + OCSP_NO_NEXT_UPDATE_S;
	if (status == V_OCSP_CERTSTATUS_REVOKED) {
		snprintf(v->why, sizeof(v->why), "certificate REVOKED (reason %s, at %lld)",
			 reason >= 0 ? OCSP_crl_reason_str(reason) : "unspecified",
			 (long long)asn1_to_time(rev));
		goto out;
	}
	if (status != V_OCSP_CERTSTATUS_GOOD) {
		snprintf(v->why, sizeof(v->why), "certificate status %s",
			 OCSP_cert_status_str(status));
		goto out;
	}
	if (!v->this_update || v->this_update > now + CLOCK_SKEW_S) {
		snprintf(v->why, sizeof(v->why), "thisUpdate is in the future (%lld s ahead)",
			 (long long)(v->this_update - now));
		goto out;
	}
	if (v->expires <= now) {
		snprintf(v->why, sizeof(v->why), "expired %lld s ago (nextUpdate passed)",
			 (long long)(now - v->expires));
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	OCSP_CERTID_free(id);
	OCSP_BASICRESP_free(bs);
	OCSP_RESPONSE_free(resp);
	return rc;
}

/* --- shared memory ---------------------------------------------------------------- */

size_t ocsp_shm_read(const struct shm *s, const uint8_t leaf_sha256[32], time_t now, uint8_t *out,
		     size_t cap)
{
	for (int i = 0; i < SHM_OCSP_SLOTS; i++) {
		const struct shm_ocsp *so = &s->ocsp[i];
		uint64_t a, b;
		size_t n;
		int mine;
		time_t expires;
		do {
			a = __atomic_load_n(&so->seq, __ATOMIC_ACQUIRE);
			mine = !memcmp((const void *)so->leaf_sha256, leaf_sha256, 32);
			n = so->len;
			expires = (time_t)so->expires;
			if (mine && n && n <= cap && n <= SHM_OCSP_MAX)
				memcpy(out, (const void *)so->der, n);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			b = __atomic_load_n(&so->seq, __ATOMIC_RELAXED);
		} while ((a & 1) || a != b);
		if (!mine)
			continue;
		return n <= cap && n <= SHM_OCSP_MAX && now < expires ? n : 0;
	}
	return 0;
}

void ocsp_shm_publish(struct shm *s, int slot, const uint8_t leaf_sha256[32], time_t expires,
		      const uint8_t *der, size_t len)
{
	if (slot < 0 || slot >= SHM_OCSP_SLOTS || len > SHM_OCSP_MAX)
		return;
	struct shm_ocsp *so = &s->ocsp[slot];
	__atomic_add_fetch(&so->seq, 1, __ATOMIC_ACQ_REL);
	memcpy(so->leaf_sha256, leaf_sha256, 32);
	so->expires = (int64_t)expires;
	so->len = (uint32_t)len;
	if (len)
		memcpy(so->der, der, len);
	__atomic_add_fetch(&so->seq, 1, __ATOMIC_ACQ_REL);
}

/* --- the master's stapler ------------------------------------------------------------- */

struct ocsp_entry {
	struct ocsp_stapler *o;
	int slot;
	char cert_path[PATH_MAX];
	char file[PATH_MAX]; /* configured response file; "" = fetch */
	char url[512];	     /* the certificate's responder ("" = none) */
	X509 *leaf, *issuer;
	STACK_OF(X509) * chain; /* the certificates after the leaf */
	uint8_t sha[32];

	/* the response stapled now (len 0 = none) */
	uint8_t *der;
	size_t len;
	time_t this_update, expires;
	char state[240]; /* for easctl status */

	/* file source: what was read last */
	struct timespec mtime;
	off_t size;
	ino_t ino;

	/* fetch source */
	struct loop_timer next_fetch;
	struct loop_timer deadline;
	struct loop_io io;
	pid_t pid;
	int fd;
	uint8_t *buf;
	size_t buflen;
	unsigned backoff_ms;
};

struct ocsp_stapler {
	struct loop *loop;
	struct shm *shm;
	X509_STORE *store;
	unsigned timeout_ms, retry_ms;
	struct ocsp_entry *e[CFG_MAX_CERTS];
	int n;
};

static void fmt_time(time_t t, char *out, size_t outsz)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void publish(struct ocsp_entry *e)
{
	ocsp_shm_publish(e->o->shm, e->slot, e->sha, e->expires, e->der, e->len);
}

static void withdraw(struct ocsp_entry *e, const char *state)
{
	free(e->der);
	e->der = NULL;
	e->len = 0;
	e->expires = 0;
	publish(e);
	snprintf(e->state, sizeof(e->state), "not stapled: %s", state);
}

static void fetch_stop(struct ocsp_entry *e)
{
	if (e->fd >= 0) {
		loop_io_del(e->o->loop, &e->io);
		close(e->fd);
		e->fd = -1;
	}
	if (e->pid > 0) /* still running (no EOF yet): it is ours, reaped by SIGCHLD */
		kill(e->pid, SIGKILL);
	e->pid = 0;
	loop_timer_cancel(e->o->loop, &e->deadline);
	free(e->buf);
	e->buf = NULL;
	e->buflen = 0;
}

static void entry_free(struct ocsp_entry *e)
{
	if (!e)
		return;
	fetch_stop(e);
	loop_timer_cancel(e->o->loop, &e->next_fetch);
	free(e->der);
	X509_free(e->leaf);
	X509_free(e->issuer);
	sk_X509_pop_free(e->chain, X509_free);
	free(e);
}

/*
 * A response arrived (file or responder). Stapled if it checks out. A
 * revoked certificate withdraws whatever was stapled: an older "good" would
 * now be a lie. Any other refusal keeps a still-valid earlier response.
 * Returns the verdict's refresh time for scheduling (0 = retry soon).
 */
static time_t take_response(struct ocsp_entry *e, const uint8_t *der, size_t len,
			    const char *source)
{
	struct ocsp_verdict v;
	time_t now = time(NULL);
	char t1[32], t2[32];
	if (ocsp_check_response(der, len, e->leaf, e->issuer, e->chain, e->o->store, now, &v) < 0) {
		log_warn("event=ocsp_refused cert=%s source=%s reason=\"%s\" note=\"not stapled\"",
			 e->cert_path, source, v.why);
		if (v.status == V_OCSP_CERTSTATUS_REVOKED || !e->len || e->expires <= now)
			withdraw(e, v.why);
		/* a revoked answer is an answer: ask again at its own pace */
		return v.status == V_OCSP_CERTSTATUS_REVOKED && v.expires > now
			   ? v.this_update + (v.expires - v.this_update) / 2
			   : 0;
	}
	uint8_t *copy = malloc(len);
	if (!copy)
		return 0;
	memcpy(copy, der, len);
	free(e->der);
	e->der = copy;
	e->len = len;
	e->this_update = v.this_update;
	e->expires = v.expires;
	publish(e);
	fmt_time(v.this_update, t1, sizeof(t1));
	fmt_time(v.expires, t2, sizeof(t2));
	snprintf(e->state, sizeof(e->state),
		 "stapled: good, this_update=%s next_update=%s source=%s", t1, t2, source);
	log_info("event=ocsp_stapled cert=%s source=%s status=good this_update=%s next_update=%s "
		 "bytes=%zu",
		 e->cert_path, source, t1, t2, len);
	return v.this_update + (v.expires - v.this_update) / 2;
}

/* --- file source -------------------------------------------------------------------- */

static void load_file(struct ocsp_entry *e, int force)
{
	struct stat st;
	if (stat(e->file, &st) < 0) {
		if (force || e->size != -1) {
			log_warn("event=ocsp_file_unreadable cert=%s file=%s error=%m",
				 e->cert_path, e->file);
			char why[PATH_MAX + 64];
			snprintf(why, sizeof(why), "cannot read %s: %s", e->file, strerror(errno));
			withdraw(e, why);
			e->size = -1;
		}
		return;
	}
	if (!force && st.st_mtim.tv_sec == e->mtime.tv_sec &&
	    st.st_mtim.tv_nsec == e->mtime.tv_nsec && st.st_size == e->size && st.st_ino == e->ino)
		return;
	e->mtime = st.st_mtim;
	e->size = st.st_size;
	e->ino = st.st_ino;
	uint8_t *buf = malloc(OCSP_MAX_RESPONSE + 1);
	FILE *f = buf ? fopen(e->file, "rb") : NULL;
	size_t n = f ? fread(buf, 1, OCSP_MAX_RESPONSE + 1, f) : 0;
	if (f)
		fclose(f);
	if (!f) {
		log_warn("event=ocsp_file_unreadable cert=%s file=%s error=%m", e->cert_path,
			 e->file);
		withdraw(e, "response file unreadable");
	} else {
		char source[PATH_MAX + 8];
		snprintf(source, sizeof(source), "file:%s", e->file);
		take_response(e, buf, n, source);
	}
	free(buf);
}

/* --- fetch source --------------------------------------------------------------------- */

static void write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		c += w;
		n -= (size_t)w;
	}
}

/* The child: one POST to the responder, the answer ('R' + DER) or the
 * reason ('E' + text) into fd, then _exit (no atexit handler of the master's
 * runs here). */
static void fetch_child(const char *url, const uint8_t *req, size_t reqlen, int timeout_s, int fd)
{
	char *host = NULL, *port = NULL, *path = NULL, msg[320];
	int ssl = 0;
	BIO *rb = NULL, *resp = NULL;
	if (!OSSL_HTTP_parse_url(url, &ssl, NULL, &host, &port, NULL, &path, NULL, NULL)) {
		snprintf(msg, sizeof(msg), "Ecannot parse the responder URL");
	} else if (ssl) {
		snprintf(msg, sizeof(msg),
			 "Ehttps:// responders are not supported (OCSP is "
			 "signed; CAs publish http:// URLs)");
	} else if (!(rb = BIO_new_mem_buf(req, (int)reqlen))) {
		snprintf(msg, sizeof(msg), "Eout of memory");
	} else {
		resp = OSSL_HTTP_transfer(NULL, host, port, path, 0, NULL, NULL, NULL, NULL, NULL,
					  NULL, 0, NULL, "application/ocsp-request", rb,
					  "application/ocsp-response", 1, OCSP_MAX_RESPONSE,
					  timeout_s, 0);
		if (resp) {
			char *data = NULL;
			long n = BIO_get_mem_data(resp, &data);
			write_all(fd, "R", 1);
			if (n > 0)
				write_all(fd, data, (size_t)n);
			_exit(0);
		}
		char e[200];
		openssl_reason(e, sizeof(e));
		snprintf(msg, sizeof(msg), "E%s", e);
	}
	write_all(fd, msg, strlen(msg));
	_exit(0);
}

static void schedule_fetch(struct ocsp_entry *e, time_t at);

static void fetch_failed(struct ocsp_entry *e, const char *why)
{
	unsigned delay = e->backoff_ms ? e->backoff_ms : e->o->retry_ms;
	e->backoff_ms = delay * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : delay * 2;
	log_warn("event=ocsp_fetch_failed cert=%s url=%s reason=\"%s\" retry_in=%.1fs "
		 "stapling=%s",
		 e->cert_path, e->url, why, delay / 1000.0,
		 e->len && e->expires > time(NULL) ? "previous response" : "none");
	if (!e->len || e->expires <= time(NULL)) {
		char s[300];
		snprintf(s, sizeof(s), "fetch from %s failed: %s", e->url, why);
		withdraw(e, s);
	}
	loop_timer_set(e->o->loop, &e->next_fetch, delay);
}

static void fetch_done(struct ocsp_entry *e)
{
	uint8_t *buf = e->buf;
	size_t n = e->buflen;
	e->buf = NULL;
	e->pid = 0; /* EOF: the child is gone (or going) */
	fetch_stop(e);
	if (n && buf[0] == 'R') {
		char source[600];
		snprintf(source, sizeof(source), "responder:%s", e->url);
		time_t refresh = take_response(e, buf + 1, n - 1, source);
		if (refresh) {
			e->backoff_ms = 0;
			schedule_fetch(e, refresh);
		} else {
			fetch_failed(e, "the response did not check out (see ocsp_refused)");
		}
	} else if (n && buf[0] == 'E') {
		char why[320];
		snprintf(why, sizeof(why), "%.*s", (int)(n - 1), (const char *)buf + 1);
		fetch_failed(e, why);
	} else {
		fetch_failed(e, "the fetch process ended without an answer");
	}
	free(buf);
}

static void on_fetch_io(struct loop_io *io, uint32_t events)
{
	struct ocsp_entry *e = io->arg;
	for (;;) {
		if (!e->buf && !(e->buf = malloc(OCSP_MAX_RESPONSE + 512)))
			return;
		size_t room = OCSP_MAX_RESPONSE + 512 - e->buflen;
		uint8_t extra;
		ssize_t r = room ? read(e->fd, e->buf + e->buflen, room) : read(e->fd, &extra, 1);
		if (r > 0 && room) {
			e->buflen += (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return;
		if (r > 0) { /* more than any response may be */
			fetch_stop(e);
			fetch_failed(e, "answer too large");
			return;
		}
		fetch_done(e);
		return;
	}
}

static void on_deadline(struct loop_timer *t)
{
	struct ocsp_entry *e = t->arg;
	fetch_stop(e);
	fetch_failed(e, "timed out");
}

static void start_fetch(struct ocsp_entry *e)
{
	if (e->fd >= 0 || !e->url[0] || !e->issuer)
		return;
	OCSP_REQUEST *req = OCSP_REQUEST_new();
	OCSP_CERTID *id = OCSP_cert_to_id(NULL, e->leaf, e->issuer);
	unsigned char *der = NULL;
	int len = -1;
	if (req && id && OCSP_request_add0_id(req, id)) {
		id = NULL; /* owned by req now */
		len = i2d_OCSP_REQUEST(req, &der);
	}
	OCSP_CERTID_free(id);
	OCSP_REQUEST_free(req);
	int p[2] = {-1, -1};
	if (len <= 0 || pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		OPENSSL_free(der);
		fetch_failed(e, "cannot build the request");
		return;
	}
	unsigned timeout_s = (e->o->timeout_ms + 999) / 1000;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		int fl = fcntl(p[1], F_GETFL);
		fcntl(p[1], F_SETFL, fl & ~O_NONBLOCK);
		fetch_child(e->url, der, (size_t)len, (int)timeout_s, p[1]);
		_exit(0);
	}
	OPENSSL_free(der);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		fetch_failed(e, "fork failed");
		return;
	}
	e->pid = pid;
	e->fd = p[0];
	e->buflen = 0;
	if (loop_io_add_lt(e->o->loop, &e->io, e->fd, on_fetch_io, e) < 0) {
		fetch_stop(e);
		fetch_failed(e, "cannot watch the fetch");
		return;
	}
	loop_timer_set(e->o->loop, &e->deadline, e->o->timeout_ms + DEADLINE_GRACE_MS);
	log_debug("event=ocsp_fetch cert=%s url=%s pid=%d", e->cert_path, e->url, pid);
}

static void on_next_fetch(struct loop_timer *t)
{
	start_fetch(t->arg);
}

static void schedule_fetch(struct ocsp_entry *e, time_t at)
{
	time_t now = time(NULL);
	if (at < now + MIN_REFRESH_S)
		at = now + MIN_REFRESH_S;
	loop_timer_set(e->o->loop, &e->next_fetch, (uint64_t)(at - now) * 1000);
}

/* --- configuration ---------------------------------------------------------------------- */

static struct ocsp_entry *entry_new(struct ocsp_stapler *o, const struct cfg_cert *cc, int slot)
{
	struct ocsp_entry *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->o = o;
	e->slot = slot;
	e->fd = -1;
	e->size = -1;
	snprintf(e->cert_path, sizeof(e->cert_path), "%s", cc->cert);
	snprintf(e->file, sizeof(e->file), "%s", cc->ocsp_response);
	loop_timer_init(&e->next_fetch, on_next_fetch, e);
	loop_timer_init(&e->deadline, on_deadline, e);
	e->chain = sk_X509_new_null();
	FILE *f = fopen(cc->cert, "r");
	X509 *x;
	while (f && e->chain && (x = PEM_read_X509(f, NULL, NULL, NULL))) {
		if (!e->leaf)
			e->leaf = x;
		else
			sk_X509_push(e->chain, x);
	}
	ERR_clear_error();
	if (f)
		fclose(f);
	if (!e->leaf) {
		snprintf(e->state, sizeof(e->state), "not stapled: cannot read the certificate");
		return e;
	}
	unsigned int mdlen = 0;
	X509_digest(e->leaf, EVP_sha256(), e->sha, &mdlen);
	for (int i = 0; i < sk_X509_num(e->chain); i++)
		if (X509_check_issued(sk_X509_value(e->chain, i), e->leaf) == X509_V_OK) {
			e->issuer = sk_X509_value(e->chain, i);
			X509_up_ref(e->issuer);
			break;
		}
	STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(e->leaf);
	if (urls && sk_OPENSSL_STRING_num(urls) > 0)
		snprintf(e->url, sizeof(e->url), "%s", sk_OPENSSL_STRING_value(urls, 0));
	X509_email_free(urls);
	if (!e->issuer)
		snprintf(e->state, sizeof(e->state),
			 "not stapled: the issuer certificate is not in %s", cc->cert);
	else if (!e->file[0] && !e->url[0])
		snprintf(e->state, sizeof(e->state),
			 "not stapled: the certificate names no OCSP responder and no "
			 "ocsp_response file is configured");
	else
		snprintf(e->state, sizeof(e->state), "not stapled yet");
	return e;
}

static X509_STORE *make_store(const struct gw_config *c)
{
	X509_STORE *st = X509_STORE_new();
	if (!st)
		return NULL;
	if (X509_STORE_set_default_paths(st) != 1 ||
	    (c->tls.trust_file[0] && X509_STORE_load_file(st, c->tls.trust_file) != 1)) {
		log_warn("event=ocsp_trust_store_incomplete trust_file=%s", c->tls.trust_file);
		ERR_clear_error();
	}
	return st;
}

struct ocsp_stapler *ocsp_stapler_new(struct loop *l, struct shm *s)
{
	struct ocsp_stapler *o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	o->loop = l;
	o->shm = s;
	return o;
}

void ocsp_stapler_configure(struct ocsp_stapler *o, const struct gw_config *c)
{
	struct ocsp_entry *old[CFG_MAX_CERTS];
	int nold = o->n;
	memcpy(old, o->e, sizeof(old));
	o->n = 0;
	X509_STORE_free(o->store);
	o->store = make_store(c);
	o->timeout_ms = c->tls.ocsp_fetch_timeout_ms;
	o->retry_ms = c->tls.ocsp_retry_ms;
	for (int i = 0; c->tls.ocsp_stapling && i < c->tls.ncerts && i < SHM_OCSP_SLOTS; i++) {
		struct ocsp_entry *e = entry_new(o, &c->tls.certs[i], i);
		if (!e)
			break;
		o->e[o->n++] = e;
		/* A response held for the same certificate from the same kind of
		 * source carries over: a reload neither refetches nor unstaples. */
		for (int j = 0; j < nold && e->leaf && e->issuer; j++) {
			struct ocsp_entry *p = old[j];
			if (!p || !p->len || memcmp(p->sha, e->sha, 32) || strcmp(p->file, e->file))
				continue;
			e->der = p->der;
			e->len = p->len;
			e->this_update = p->this_update;
			e->expires = p->expires;
			snprintf(e->state, sizeof(e->state), "%s", p->state);
			p->der = NULL;
			p->len = 0;
			break;
		}
		publish(e);
		if (!e->leaf || !e->issuer)
			continue;
		if (e->file[0])
			load_file(e, !e->len);
		else if (!e->len)
			start_fetch(e);
		else
			schedule_fetch(e, e->this_update + (e->expires - e->this_update) / 2);
	}
	for (int j = 0; j < nold; j++)
		entry_free(old[j]);
	/* Slots no certificate uses now stop stapling. */
	static const uint8_t none[32];
	for (int s = o->n; s < SHM_OCSP_SLOTS; s++)
		ocsp_shm_publish(o->shm, s, none, 0, NULL, 0);
}

void ocsp_stapler_tick(struct ocsp_stapler *o)
{
	time_t now = time(NULL);
	for (int i = 0; o && i < o->n; i++) {
		struct ocsp_entry *e = o->e[i];
		if (!e->leaf || !e->issuer)
			continue;
		if (e->file[0])
			load_file(e, 0);
		if (e->len && e->expires <= now) {
			log_warn("event=ocsp_expired cert=%s note=\"no longer stapled%s\"",
				 e->cert_path,
				 e->file[0] ? "; replace the response file" : "; refetching");
			withdraw(e, "the response expired");
			if (!e->file[0] && e->fd < 0) {
				loop_timer_cancel(o->loop, &e->next_fetch);
				start_fetch(e);
			}
		}
	}
}

void ocsp_stapler_describe(struct ocsp_stapler *o, struct sbuf *out)
{
	for (int i = 0; o && i < o->n; i++)
		sbuf_printf(out, "ocsp %s %s\n", o->e[i]->cert_path, o->e[i]->state);
}

void ocsp_stapler_free(struct ocsp_stapler *o)
{
	if (!o)
		return;
	for (int i = 0; i < o->n; i++)
		entry_free(o->e[i]);
	X509_STORE_free(o->store);
	free(o);
}
