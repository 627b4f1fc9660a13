/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * notify.c - see notify.h.
 *
 * Delivery is libcurl's multi interface driven by the master's loop, not a
 * thread: the master forks workers at any time (reloads, respawns), and a
 * fork while another thread holds an OpenSSL or NSS lock leaves the child
 * with that lock taken forever. curl's sockets are watched by a private
 * epoll set (level-triggered, the interest curl asks for) that is itself one
 * readable fd in the master's loop; curl's timer is a loop timer. Each call
 * into curl does only what is ready, so a slow or dead relay costs the loop
 * nothing but a few non-blocking calls.
 */
#include "notify.h"
#include "log.h"
#include "fmt.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define PARALLEL 4 /* transfers at once */

enum channel { CH_SMTP = 0, CH_WEBHOOK = 1, CH__COUNT };

struct msg {
	struct msg *next;
	int ch;
	char *rcpt; /* SMTP: one recipient per message (users) or a comma list (admins) */
	char *body; /* the whole RFC 5322 message, or the webhook's JSON */
	size_t len, off;
	unsigned tries;
	CURL *easy;
	struct curl_slist *list; /* recipients or headers */
	char errbuf[CURL_ERROR_SIZE];
};

struct settings {
	char smtp_url[256], smtp_user[128], smtp_password[256], smtp_ca[PATH_MAX];
	int smtp_starttls;
	char webhook_url[512], webhook_ca[PATH_MAX];
	unsigned char webhook_key[256];
	size_t webhook_key_len;
	char from[256];
	char admins[CFG_MAX_NOTIFY_TO][256];
	int nadmins;
	unsigned batch_ms, retry_min_ms, retry_max_ms, queue, timeout_ms;
	int user_enabled;
	char user_address[256], user_contact[256];
	char *user_template; /* owned */
};

struct notify {
	struct loop *loop;
	struct settings s;
	CURLM *multi;
	int epfd;
	struct loop_io ep_io;
	struct loop_timer curl_timer; /* curl's own timeouts */
	struct loop_timer pump_timer; /* a channel's backoff ended */
	struct loop_timer batch_timer;
	struct msg *head, *tail; /* waiting, FIFO */
	unsigned queued, inflight;
	struct msg *running[PARALLEL];
	uint64_t backoff_until[CH__COUNT]; /* loop ms */
	unsigned backoff_ms[CH__COUNT];
	/* the admins' batch being collected */
	struct notify_item *batch;
	unsigned nbatch;
	uint64_t batch_more; /* items beyond NOTIFY_BATCH_MAX */
	/* what notify_tick compares with */
	uint32_t backend_up[EG_MAX_BACKENDS];
	char backend_name[EG_MAX_BACKENDS][EG_BACKEND_NAME_LEN];
	int64_t cert_told[16]; /* day a certificate warning was last told */
	int ticked;
	/* counters for metrics */
	uint64_t posted[NOTE__COUNT], sent[CH__COUNT], retries, dropped, failed, batches,
	    user_messages;
};

static const char *const kind_names[NOTE__COUNT] = {
    "quarantined by rule", "quarantined by default", "quarantined for incubation",
    "loop quarantine",	   "new OS version",	     "backend down",
    "backend up",	   "certificate expiring"};

const char *notify_kind_name(int kind)
{
	return kind >= 0 && kind < NOTE__COUNT ? kind_names[kind] : "?";
}

/* --- settings ------------------------------------------------------------------------- */

/* A secret from a file: its first line. Never logged. */
static int read_secret(const char *path, char *out, size_t outsz, size_t *len, char *err,
		       size_t errsz)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, errsz, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	size_t n = fread(out, 1, outsz - 1, f);
	fclose(f);
	while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		n--;
	out[n] = 0;
	if (!n) {
		snprintf(err, errsz, "%s is empty", path);
		return -1;
	}
	if (len)
		*len = n;
	return 0;
}

static char *read_file(const char *path, size_t max, char *err, size_t errsz)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, errsz, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	char *b = malloc(max + 1);
	size_t n = b ? fread(b, 1, max, f) : 0;
	int more = fgetc(f) != EOF;
	fclose(f);
	if (!b || more) {
		snprintf(err, errsz, "%s: too large (at most %zu bytes)", path, max);
		free(b);
		return NULL;
	}
	b[n] = 0;
	return b;
}

static const char default_template[] =
    "Subject: Your phone {device} cannot sync mail yet\n"
    "\n"
    "Hello {user},\n"
    "\n"
    "the phone {model} ({os}, device id {device}) tried to sync your mailbox and\n"
    "was put in quarantine: {reason}.\n"
    "\n"
    "It will sync as soon as it is approved. Please ask {contact}.\n";

static int load_settings(struct settings *s, const struct gw_config *c, char *err, size_t errsz)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->smtp_url, sizeof(s->smtp_url), "%s", c->notify.smtp_url);
	snprintf(s->smtp_user, sizeof(s->smtp_user), "%s", c->notify.smtp_user);
	snprintf(s->smtp_ca, sizeof(s->smtp_ca), "%s", c->notify.smtp_ca);
	s->smtp_starttls = c->notify.smtp_starttls;
	snprintf(s->webhook_url, sizeof(s->webhook_url), "%s", c->notify.webhook_url);
	snprintf(s->webhook_ca, sizeof(s->webhook_ca), "%s", c->notify.webhook_ca);
	snprintf(s->from, sizeof(s->from), "%s", c->notify.from);
	for (int i = 0; i < c->notify.nadmins; i++)
		snprintf(s->admins[i], sizeof(s->admins[i]), "%s", c->notify.admins[i]);
	s->nadmins = c->notify.nadmins;
	s->batch_ms = c->notify.batch_ms;
	s->retry_min_ms = c->notify.retry_min_ms;
	s->retry_max_ms = c->notify.retry_max_ms;
	s->queue = c->notify.queue;
	s->timeout_ms = c->notify.timeout_ms;
	s->user_enabled = c->notify.user_enabled;
	snprintf(s->user_address, sizeof(s->user_address), "%s", c->notify.user_address);
	snprintf(s->user_contact, sizeof(s->user_contact), "%s", c->notify.user_contact);
	if (c->notify.smtp_password_file[0] &&
	    read_secret(c->notify.smtp_password_file, s->smtp_password, sizeof(s->smtp_password),
			NULL, err, errsz) < 0)
		return -1;
	if (c->notify.webhook_secret_file[0] &&
	    read_secret(c->notify.webhook_secret_file, (char *)s->webhook_key,
			sizeof(s->webhook_key), &s->webhook_key_len, err, errsz) < 0)
		return -1;
	if (c->notify.user_template[0]) {
		s->user_template = read_file(c->notify.user_template, 16384, err, errsz);
		if (!s->user_template)
			return -1;
		if (strncmp(s->user_template, "Subject: ", 9) ||
		    !strstr(s->user_template, "\n\n")) {
			snprintf(
			    err, errsz,
			    "%s: a template starts with a \"Subject: ...\" line and a blank line",
			    c->notify.user_template);
			free(s->user_template);
			s->user_template = NULL;
			return -1;
		}
	}
	return 0;
}

static void free_settings(struct settings *s)
{
	free(s->user_template);
	OPENSSL_cleanse(s->smtp_password, sizeof(s->smtp_password));
	OPENSSL_cleanse(s->webhook_key, sizeof(s->webhook_key));
	s->user_template = NULL;
}

int notify_check_config(const struct gw_config *c, char *err, size_t errsz)
{
	struct settings *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errsz, "out of memory");
		return -1;
	}
	int r = load_settings(s, c, err, errsz);
	free_settings(s);
	free(s);
	return r;
}

/* --- the queue and curl ------------------------------------------------------------------ */

static void msg_free(struct msg *m)
{
	if (!m)
		return;
	curl_slist_free_all(m->list);
	free(m->rcpt);
	free(m->body);
	free(m);
}

static size_t read_cb(char *buf, size_t size, size_t nmemb, void *arg)
{
	struct msg *m = arg;
	size_t n = size * nmemb, left = m->len - m->off;
	if (n > left)
		n = left;
	memcpy(buf, m->body + m->off, n);
	m->off += n;
	return n;
}

static size_t discard_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	(void)p;
	(void)arg;
	return size * nmemb;
}

static void pump(struct notify *n);

/* Queue a message; NULL body = out of memory. Counted as dropped when full. */
static void enqueue(struct notify *n, int ch, char *rcpt, char *body, size_t len)
{
	if (!body || n->queued >= n->s.queue) {
		n->dropped++;
		if ((n->dropped & 255) == 1)
			log_warn("event=notify_dropped channel=%s queued=%u dropped=%llu "
				 "reason=\"%s\"",
				 ch == CH_SMTP ? "smtp" : "webhook", n->queued,
				 (unsigned long long)n->dropped,
				 body ? "queue full (notify.queue)" : "out of memory");
		free(rcpt);
		free(body);
		return;
	}
	struct msg *m = calloc(1, sizeof(*m));
	if (!m) {
		n->dropped++;
		free(rcpt);
		free(body);
		return;
	}
	m->ch = ch;
	m->rcpt = rcpt;
	m->body = body;
	m->len = len;
	if (n->tail)
		n->tail->next = m;
	else
		n->head = m;
	n->tail = m;
	n->queued++;
	pump(n);
}

static void hmac_hex(const struct settings *s, const char *body, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	HMAC(EVP_sha256(), s->webhook_key, (int)s->webhook_key_len, (const unsigned char *)body,
	     len, md, &mdlen);
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int start(struct notify *n, struct msg *m)
{
	const struct settings *s = &n->s;
	CURL *e = curl_easy_init();
	if (!e)
		return -1;
	m->easy = e;
	m->off = 0;
	m->errbuf[0] = 0;
	curl_slist_free_all(m->list);
	m->list = NULL;
	curl_easy_setopt(e, CURLOPT_PRIVATE, m);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, m->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(s->timeout_ms < 10000 ? s->timeout_ms : 10000));
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, m->ch == CH_SMTP ? "smtp,smtps" : "http,https");
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (m->ch == CH_SMTP) {
		curl_easy_setopt(e, CURLOPT_URL, s->smtp_url);
		if (s->smtp_ca[0])
			curl_easy_setopt(e, CURLOPT_CAINFO, s->smtp_ca);
		if (s->smtp_starttls)
			curl_easy_setopt(e, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
		if (s->smtp_user[0]) {
			curl_easy_setopt(e, CURLOPT_USERNAME, s->smtp_user);
			curl_easy_setopt(e, CURLOPT_PASSWORD, s->smtp_password);
		}
		char from[300];
		snprintf(from, sizeof(from), "<%s>", s->from);
		curl_easy_setopt(e, CURLOPT_MAIL_FROM, from);
		char *save = NULL, *list = strdup(m->rcpt);
		for (char *r = list ? strtok_r(list, ",", &save) : NULL; r;
		     r = strtok_r(NULL, ",", &save)) {
			char one[300];
			snprintf(one, sizeof(one), "<%s>", r);
			m->list = curl_slist_append(m->list, one);
		}
		free(list);
		curl_easy_setopt(e, CURLOPT_MAIL_RCPT, m->list);
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(e, CURLOPT_READDATA, m);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)m->len);
	} else {
		curl_easy_setopt(e, CURLOPT_URL, s->webhook_url);
		if (s->webhook_ca[0])
			curl_easy_setopt(e, CURLOPT_CAINFO, s->webhook_ca);
		char sig[64 + 32], hex[65];
		hmac_hex(s, m->body, m->len, hex);
		snprintf(sig, sizeof(sig), "X-Easgate-Signature: sha256=%s", hex);
		m->list = curl_slist_append(m->list, "Content-Type: application/json");
		m->list = curl_slist_append(m->list, sig);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, m->list);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, m->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)m->len);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_cb);
	}
	if (curl_multi_add_handle(n->multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		m->easy = NULL;
		return -1;
	}
	return 0;
}

static int channel_configured(const struct notify *n, int ch)
{
	return ch == CH_SMTP ? n->s.smtp_url[0] != 0 : n->s.webhook_url[0] != 0;
}

/* Start what may start: free transfer slots, channels not backing off. */
static void pump(struct notify *n)
{
	uint64_t now = loop_now_ms(n->loop), wake = 0;
	struct msg **pp = &n->head, *prev = NULL;
	while (*pp && n->inflight < PARALLEL) {
		struct msg *m = *pp;
		if (!channel_configured(n, m->ch)) { /* a reload took the channel away */
			*pp = m->next;
			if (n->tail == m)
				n->tail = prev;
			n->queued--;
			n->dropped++;
			msg_free(m);
			continue;
		}
		if (n->backoff_until[m->ch] > now) {
			if (!wake || n->backoff_until[m->ch] < wake)
				wake = n->backoff_until[m->ch];
			prev = m;
			pp = &m->next;
			continue;
		}
		*pp = m->next;
		if (n->tail == m)
			n->tail = prev;
		m->next = NULL;
		n->queued--;
		if (start(n, m) < 0) {
			n->failed++;
			msg_free(m);
			continue;
		}
		for (int i = 0; i < PARALLEL; i++)
			if (!n->running[i]) {
				n->running[i] = m;
				break;
			}
		n->inflight++;
	}
	if (wake)
		loop_timer_set(n->loop, &n->pump_timer, wake - now);
}

/* Back to the head of the queue: it keeps its place ahead of newer ones. */
static void requeue(struct notify *n, struct msg *m)
{
	m->next = n->head;
	n->head = m;
	if (!n->tail)
		n->tail = m;
	n->queued++;
}

static void finished(struct notify *n, struct msg *m, CURLcode rc)
{
	long code = 0;
	curl_easy_getinfo(m->easy, CURLINFO_RESPONSE_CODE, &code);
	curl_multi_remove_handle(n->multi, m->easy);
	curl_easy_cleanup(m->easy);
	m->easy = NULL;
	for (int i = 0; i < PARALLEL; i++)
		if (n->running[i] == m)
			n->running[i] = NULL;
	n->inflight--;
	const char *ch = m->ch == CH_SMTP ? "smtp" : "webhook";
	int ok = rc == CURLE_OK && (m->ch == CH_SMTP || (code >= 200 && code < 300));
	if (ok) {
		n->sent[m->ch]++;
		n->backoff_ms[m->ch] = 0;
		msg_free(m);
		return;
	}
	/* The other side said no to this message (SMTP 5xx, HTTP 4xx other than
	 * 408/429): retrying would repeat the answer. Anything else (no
	 * connection, a timeout, 4xx from a relay, 5xx from a webhook) is the
	 * channel's trouble: the channel backs off and the message waits. */
	int permanent = m->ch == CH_SMTP ? code >= 500 && code < 600
					 : code >= 400 && code < 500 && code != 408 && code != 429;
	if (permanent) {
		n->failed++;
		log_warn(
		    "event=notify_refused channel=%s code=%ld error=\"%s\" note=\"not retried\"",
		    ch, code, m->errbuf[0] ? m->errbuf : curl_easy_strerror(rc));
		msg_free(m);
		return;
	}
	unsigned b = n->backoff_ms[m->ch];
	b = b ? b * 2 : n->s.retry_min_ms;
	if (b > n->s.retry_max_ms)
		b = n->s.retry_max_ms;
	n->backoff_ms[m->ch] = b;
	n->backoff_until[m->ch] = loop_now_ms(n->loop) + b;
	n->retries++;
	m->tries++;
	log_warn("event=notify_retry channel=%s code=%ld error=\"%s\" tries=%u retry_in_ms=%u "
		 "queued=%u",
		 ch, code, m->errbuf[0] ? m->errbuf : curl_easy_strerror(rc), m->tries, b,
		 n->queued + 1);
	requeue(n, m);
}

static void check_done(struct notify *n)
{
	CURLMsg *cm;
	int left;
	while ((cm = curl_multi_info_read(n->multi, &left))) {
		if (cm->msg != CURLMSG_DONE)
			continue;
		struct msg *m = NULL;
		curl_easy_getinfo(cm->easy_handle, CURLINFO_PRIVATE, (char **)&m);
		if (m)
			finished(n, m, cm->data.result);
	}
	pump(n);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *arg, void *sockp)
{
	struct notify *n = arg;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(n->epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	struct epoll_event ev = {.data.fd = s};
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	if (epoll_ctl(n->epfd, EPOLL_CTL_MOD, s, &ev) < 0 && errno == ENOENT)
		epoll_ctl(n->epfd, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

static int timer_cb(CURLM *multi, long ms, void *arg)
{
	struct notify *n = arg;
	if (ms < 0)
		loop_timer_cancel(n->loop, &n->curl_timer);
	else
		loop_timer_set(n->loop, &n->curl_timer, (uint64_t)ms);
	return 0;
}

static void on_curl_timer(struct loop_timer *t)
{
	struct notify *n = t->arg;
	int running;
	curl_multi_socket_action(n->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(n);
}

static void on_epoll(struct loop_io *io, uint32_t events)
{
	struct notify *n = io->arg;
	struct epoll_event evs[16];
	int k = epoll_wait(n->epfd, evs, 16, 0);
	for (int i = 0; i < k; i++) {
		int mask = 0, running;
		if (evs[i].events & EPOLLIN)
			mask |= CURL_CSELECT_IN;
		if (evs[i].events & EPOLLOUT)
			mask |= CURL_CSELECT_OUT;
		if (evs[i].events & (EPOLLERR | EPOLLHUP))
			mask |= CURL_CSELECT_ERR;
		curl_multi_socket_action(n->multi, evs[i].data.fd, mask, &running);
	}
	check_done(n);
}

static void on_pump(struct loop_timer *t)
{
	pump(t->arg);
}

/* --- messages ------------------------------------------------------------------------------- */

/* Phone-supplied text in a mail: printable, no line breaks (no header or
 * body structure can be injected). */
static void clean(char *out, size_t n, const char *in)
{
	size_t o = 0;
	for (; *in && o + 1 < n; in++)
		out[o++] = (unsigned char)*in < 0x20 || *in == 0x7f ? '?' : *in;
	out[o] = 0;
}

static void mail_head(struct sbuf *b, const struct settings *s, const char *to, const char *subject)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	sbuf_printf(b,
		    "Date: %s\r\nFrom: easgate <%s>\r\nTo: %s\r\nSubject: %s\r\nMIME-Version: "
		    "1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
		    "Content-Transfer-Encoding: 8bit\r\nAuto-Submitted: auto-generated\r\n\r\n",
		    date, s->from, to, subject);
}

static void item_line(struct sbuf *b, const struct notify_item *it)
{
	char when[32], user[160], dev[80], model[160], os[160], detail[300];
	fmt_iso_time(it->at, when, sizeof(when));
	clean(user, sizeof(user), it->user);
	clean(dev, sizeof(dev), it->device_id);
	clean(model, sizeof(model), it->model);
	clean(os, sizeof(os), it->os);
	clean(detail, sizeof(detail), it->detail);
	sbuf_printf(b, "%s  %-26s", when, notify_kind_name(it->kind));
	if (dev[0])
		sbuf_printf(b, "  %s  %s  %s  %s", user, dev, model, os);
	else if (os[0])
		sbuf_printf(b, "  %s", os);
	if (detail[0])
		sbuf_printf(b, "  (%s)", detail);
	sbuf_put(b, "\r\n", 2);
}

static void send_batch(struct loop_timer *t)
{
	struct notify *n = t->arg;
	const struct settings *s = &n->s;
	if (!n->nbatch)
		return;
	n->batches++;
	unsigned counts[NOTE__COUNT] = {0};
	for (unsigned i = 0; i < n->nbatch; i++)
		counts[n->batch[i].kind]++;
	char subject[256];
	int off = snprintf(subject, sizeof(subject), "[easgate] %u new:", n->nbatch);
	for (int k = 0; k < NOTE__COUNT && off < (int)sizeof(subject); k++)
		if (counts[k])
			off += snprintf(subject + off, sizeof(subject) - (size_t)off, " %u %s;",
					counts[k], kind_names[k]);
	if (subject[off - 1] == ';')
		subject[off - 1] = 0;
	if (s->smtp_url[0] && s->nadmins) {
		struct sbuf b = {0}, to = {0};
		for (int i = 0; i < s->nadmins; i++)
			sbuf_printf(&to, "%s%s", i ? "," : "", s->admins[i]);
		mail_head(&b, s, to.p, subject);
		sbuf_printf(&b, "easgate noticed %u new item%s since the last message:\r\n\r\n",
			    n->nbatch, n->nbatch == 1 ? "" : "s");
		for (unsigned i = 0; i < n->nbatch; i++)
			item_line(&b, &n->batch[i]);
		if (n->batch_more)
			sbuf_printf(&b,
				    "\r\n... and %llu more (not listed: more than %d in one "
				    "batch)\r\n",
				    (unsigned long long)n->batch_more, NOTIFY_BATCH_MAX);
		sbuf_printf(&b, "\r\nApprove or block in the console, or: easctl devices --state "
				"Quarantined\r\n");
		enqueue(n, CH_SMTP, b.oom ? NULL : to.p, b.oom ? NULL : b.p, b.len);
		if (b.oom) {
			sbuf_free(&b);
			sbuf_free(&to);
		}
	}
	if (s->webhook_url[0]) {
		struct sbuf j = {0};
		sbuf_printf(
		    &j,
		    "{\"source\": \"easgate\", \"sent_at\": %lld, \"more\": %llu, \"events\": [",
		    (long long)time(NULL), (unsigned long long)n->batch_more);
		for (unsigned i = 0; i < n->nbatch; i++) {
			const struct notify_item *it = &n->batch[i];
			sbuf_printf(&j, "%s\n {\"kind\": \"%s\", \"at\": %lld, \"user\": ",
				    i ? "," : "", kind_names[it->kind], (long long)it->at);
			fmt_json_str(&j, it->user);
			sbuf_printf(&j, ", \"device_id\": ");
			fmt_json_str(&j, it->device_id);
			sbuf_printf(&j, ", \"model\": ");
			fmt_json_str(&j, it->model);
			sbuf_printf(&j, ", \"os\": ");
			fmt_json_str(&j, it->os);
			sbuf_printf(&j, ", \"detail\": ");
			fmt_json_str(&j, it->detail);
			sbuf_put(&j, "}", 1);
		}
		sbuf_printf(&j, "\n]}\n");
		enqueue(n, CH_WEBHOOK, NULL, j.oom ? NULL : j.p, j.len);
		if (j.oom)
			sbuf_free(&j);
	}
	log_info("event=notify_batch items=%u more=%llu", n->nbatch,
		 (unsigned long long)n->batch_more);
	n->nbatch = 0;
	n->batch_more = 0;
}

int notify_user_address(const char *pattern, const char *user, char *out, size_t outsz)
{
	const char *bs = strchr(user, '\\');
	const char *bare = bs ? bs + 1 : user; /* DOMAIN\user -> user */
	const char *at = strchr(bare, '@');
	out[0] = 0;
	if (!pattern[0]) {
		if (!at || at == bare || !at[1])
			return -1;
		snprintf(out, outsz, "%s", bare);
	} else {
		size_t o = 0;
		for (const char *p = pattern; *p && o + 1 < outsz; p++) {
			if (p[0] == '%' && (p[1] == 'u' || p[1] == 'l')) {
				size_t len = p[1] == 'l' && at ? (size_t)(at - bare) : strlen(bare);
				if (o + len >= outsz)
					return -1;
				memcpy(out + o, bare, len);
				o += len;
				p++;
			} else {
				out[o++] = *p;
			}
		}
		out[o] = 0;
	}
	/* one '@', nothing that could end an SMTP command or a header */
	const char *a = strchr(out, '@');
	if (!a || a == out || !a[1] || strchr(a + 1, '@'))
		return -1;
	for (const char *p = out; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == '<' || *p == '>' || *p == ',' || *p == 0x7f)
			return -1;
	return 0;
}

static void user_message(struct notify *n, const struct notify_item *it)
{
	const struct settings *s = &n->s;
	char to[256];
	if (notify_user_address(s->user_address, it->user, to, sizeof(to)) < 0) {
		char q[300];
		log_warn("event=notify_no_address user=%s note=\"set notify.user.address\"",
			 log_quote(q, sizeof(q), it->user, (size_t)-1));
		return;
	}
	const char *tpl = s->user_template ? s->user_template : default_template;
	char user[160], dev[80], model[160], os[160], reason[300];
	clean(user, sizeof(user), it->user);
	clean(dev, sizeof(dev), it->device_id);
	clean(model, sizeof(model), it->model[0] ? it->model : "phone");
	clean(os, sizeof(os), it->os[0] ? it->os : "unknown OS");
	clean(reason, sizeof(reason),
	      it->kind == NOTE_QUARANTINE_INCUBATION ? "its OS version is new and held back "
						       "until it is approved"
	      : it->kind == NOTE_QUARANTINE_RULE     ? "a device rule puts it in quarantine"
	      : it->kind == NOTE_LOOP_QUARANTINE     ? "it sent the same request over and over"
						     : "new phones wait for approval");
	const struct {
		const char *key, *val;
	} vars[] = {{"{user}", user}, {"{device}", dev},    {"{model}", model},
		    {"{os}", os},     {"{reason}", reason}, {"{contact}", s->user_contact}};
	/* expand the template: "Subject: ...\n\nbody" */
	struct sbuf t = {0};
	for (const char *p = tpl; *p;) {
		size_t k = 0;
		while (k < sizeof(vars) / sizeof(vars[0]) &&
		       strncmp(p, vars[k].key, strlen(vars[k].key)))
			k++;
		if (k < sizeof(vars) / sizeof(vars[0])) {
			sbuf_put(&t, vars[k].val, strlen(vars[k].val));
			p += strlen(vars[k].key);
		} else {
			sbuf_put(&t, p++, 1);
		}
	}
	if (t.oom || !t.p) {
		sbuf_free(&t);
		enqueue(n, CH_SMTP, NULL, NULL, 0);
		return;
	}
	char *nl = strchr(t.p, '\n');
	char subject[256];
	snprintf(subject, sizeof(subject), "%.*s", nl ? (int)(nl - t.p - 9) : 0, t.p + 9);
	struct sbuf b = {0};
	mail_head(&b, s, to, subject);
	/* body: after the blank line, LF -> CRLF */
	const char *body = strstr(t.p, "\n\n");
	for (const char *p = body ? body + 2 : ""; *p; p++) {
		if (*p == '\n')
			sbuf_put(&b, "\r\n", 2);
		else if (*p != '\r')
			sbuf_put(&b, p, 1);
	}
	sbuf_free(&t);
	n->user_messages++;
	char *rcpt = strdup(to);
	enqueue(n, CH_SMTP, rcpt, b.oom ? NULL : b.p, b.len);
	if (b.oom)
		sbuf_free(&b);
}

int notify_wanted(const struct notify *n)
{
	return n &&
	       (n->s.webhook_url[0] || (n->s.smtp_url[0] && (n->s.nadmins || n->s.user_enabled)));
}

void notify_post(struct notify *n, const struct notify_item *it)
{
	if (!n || it->kind < 0 || it->kind >= NOTE__COUNT)
		return;
	n->posted[it->kind]++;
	int quarantine = it->kind == NOTE_QUARANTINE_RULE || it->kind == NOTE_QUARANTINE_DEFAULT ||
			 it->kind == NOTE_QUARANTINE_INCUBATION || it->kind == NOTE_LOOP_QUARANTINE;
	if (quarantine && n->s.user_enabled && n->s.smtp_url[0])
		user_message(n, it);
	if (!n->s.webhook_url[0] && !(n->s.smtp_url[0] && n->s.nadmins))
		return;
	if (n->nbatch >= NOTIFY_BATCH_MAX) {
		n->batch_more++;
		return;
	}
	n->batch[n->nbatch++] = *it;
	if (!loop_timer_armed(&n->batch_timer))
		loop_timer_set(n->loop, &n->batch_timer, n->s.batch_ms);
}

void notify_tick(struct notify *n, const struct shm *s, const struct gw_config *c)
{
	if (!n)
		return;
	int64_t now = time(NULL);
	for (int i = 0; i < EG_MAX_BACKENDS; i++) {
		const struct shm_backend *b = &s->backends[i];
		if (!b->name[0])
			continue;
		int known = n->ticked && !strcmp(n->backend_name[i], b->name);
		if (known && n->backend_up[i] != b->up) {
			struct notify_item it = {
			    .kind = b->up ? NOTE_BACKEND_UP : NOTE_BACKEND_DOWN, .at = now};
			snprintf(it.detail, sizeof(it.detail), "%s%s%s", b->name, b->up ? "" : ": ",
				 b->up ? "" : b->last_error);
			notify_post(n, &it);
		}
		n->backend_up[i] = b->up;
		snprintf(n->backend_name[i], sizeof(n->backend_name[i]), "%s", b->name);
	}
	n->ticked = 1;
	for (int i = 0; i < s->ncerts && i < 16; i++) {
		if (!s->certs[i].warn && s->certs[i].ok) {
			n->cert_told[i] = 0;
			continue;
		}
		if (n->cert_told[i] == now / 86400) /* once a day while it lasts */
			continue;
		n->cert_told[i] = now / 86400;
		struct notify_item it = {.kind = NOTE_CERT_EXPIRY, .at = now};
		char until[32];
		fmt_iso_time(s->certs[i].not_after, until, sizeof(until));
		snprintf(it.detail, sizeof(it.detail), "%s expires %s (warning days: %u)%s",
			 s->certs[i].path, until, c->tls.expiry_warn_days,
			 s->certs[i].ok ? "" : "; it has a problem now");
		notify_post(n, &it);
	}
}

void notify_render_metrics(struct notify *n, struct sbuf *o)
{
	if (!n)
		return;
	sbuf_printf(o, "# HELP easgate_notify_posted_total Notices raised, by kind.\n"
		       "# TYPE easgate_notify_posted_total counter\n");
	for (int k = 0; k < NOTE__COUNT; k++)
		sbuf_printf(o, "easgate_notify_posted_total{kind=\"%s\"} %llu\n", kind_names[k],
			    (unsigned long long)n->posted[k]);
	sbuf_printf(o,
		    "# HELP easgate_notify_sent_total Messages delivered, by channel.\n"
		    "# TYPE easgate_notify_sent_total counter\n"
		    "easgate_notify_sent_total{channel=\"smtp\"} %llu\n"
		    "easgate_notify_sent_total{channel=\"webhook\"} %llu\n"
		    "# HELP easgate_notify_queued Messages waiting for delivery or a retry.\n"
		    "# TYPE easgate_notify_queued gauge\neasgate_notify_queued %u\n"
		    "# HELP easgate_notify_retries_total Delivery attempts that failed and will "
		    "be retried.\n# TYPE easgate_notify_retries_total counter\n"
		    "easgate_notify_retries_total %llu\n"
		    "# HELP easgate_notify_dropped_total Messages dropped because the queue was "
		    "full (notify.queue).\n# TYPE easgate_notify_dropped_total counter\n"
		    "easgate_notify_dropped_total %llu\n"
		    "# HELP easgate_notify_failed_total Messages the relay or webhook refused for "
		    "good (not retried).\n# TYPE easgate_notify_failed_total counter\n"
		    "easgate_notify_failed_total %llu\n",
		    (unsigned long long)n->sent[CH_SMTP], (unsigned long long)n->sent[CH_WEBHOOK],
		    n->queued + n->inflight, (unsigned long long)n->retries,
		    (unsigned long long)n->dropped, (unsigned long long)n->failed);
}

/* --- lifecycle ------------------------------------------------------------------------------ */

struct notify *notify_new(struct loop *l, const struct gw_config *c, char *err, size_t errsz)
{
	static int curl_ready;
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			snprintf(err, errsz, "curl_global_init failed");
			return NULL;
		}
		curl_ready = 1;
	}
	struct notify *n = calloc(1, sizeof(*n));
	if (!n) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	n->loop = l;
	n->epfd = -1;
	if (load_settings(&n->s, c, err, errsz) < 0)
		goto fail;
	n->batch = calloc(NOTIFY_BATCH_MAX, sizeof(*n->batch));
	n->multi = curl_multi_init();
	n->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!n->batch || !n->multi || n->epfd < 0) {
		snprintf(err, errsz, "notify setup: %s", strerror(errno));
		goto fail;
	}
	curl_multi_setopt(n->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(n->multi, CURLMOPT_SOCKETDATA, n);
	curl_multi_setopt(n->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(n->multi, CURLMOPT_TIMERDATA, n);
	loop_timer_init(&n->curl_timer, on_curl_timer, n);
	loop_timer_init(&n->pump_timer, on_pump, n);
	loop_timer_init(&n->batch_timer, send_batch, n);
	if (loop_io_add_lt(l, &n->ep_io, n->epfd, on_epoll, n) < 0) {
		snprintf(err, errsz, "notify: epoll: %s", strerror(errno));
		goto fail;
	}
	log_info("event=notify smtp=%s webhook=%s admins=%d users=%s batch_s=%.1f queue=%u",
		 n->s.smtp_url[0] ? n->s.smtp_url : "off", n->s.webhook_url[0] ? "on" : "off",
		 n->s.nadmins, n->s.user_enabled ? "on" : "off", n->s.batch_ms / 1000.0,
		 n->s.queue);
	return n;
fail:
	if (n->epfd >= 0)
		close(n->epfd);
	if (n->multi)
		curl_multi_cleanup(n->multi);
	free(n->batch);
	free_settings(&n->s);
	free(n);
	return NULL;
}

int notify_reconfigure(struct notify *n, const struct gw_config *c, char *err, size_t errsz)
{
	struct settings s;
	if (load_settings(&s, c, err, errsz) < 0)
		return -1;
	free_settings(&n->s);
	n->s = s;
	pump(n);
	return 0;
}

void notify_free(struct notify *n)
{
	if (!n)
		return;
	if (n->nbatch)
		send_batch(&n->batch_timer); /* queued, then lost with the rest below */
	unsigned lost = n->queued + n->inflight;
	if (lost)
		log_warn("event=notify_lost_at_stop messages=%u", lost);
	for (int i = 0; i < PARALLEL; i++)
		if (n->running[i]) {
			curl_multi_remove_handle(n->multi, n->running[i]->easy);
			curl_easy_cleanup(n->running[i]->easy);
			msg_free(n->running[i]);
		}
	while (n->head) {
		struct msg *m = n->head;
		n->head = m->next;
		msg_free(m);
	}
	loop_timer_cancel(n->loop, &n->curl_timer);
	loop_timer_cancel(n->loop, &n->pump_timer);
	loop_timer_cancel(n->loop, &n->batch_timer);
	loop_io_del(n->loop, &n->ep_io);
	close(n->epfd);
	curl_multi_cleanup(n->multi);
	free(n->batch);
	free_settings(&n->s);
	free(n);
}
