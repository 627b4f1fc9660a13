/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* console.c - see console.h. */
#include "console.h"
#include "accounts.h"
#include "command.h"
#include "console_auth.h"
#include "h1.h"
#include "log.h"
#include "fmt.h"
#include "tls.h"
#include "webform.h"
#include "workq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CONNS      64
#define HEAD_MAX       (16 * 1024)
#define BODY_MAX       (16 * 1024)
#define HANDSHAKE_MS   10000
#define REQUEST_MS     10000
#define KEEPALIVE_MS   60000
#define WRITE_MS       10000
#define FILE_MAX       (4 * 1024 * 1024) /* static files */
#define OUT_MAX	       (256u << 20)	 /* a reply (a large CSV export) */
#define LOGINS_PENDING 16		 /* password checks waiting for the thread */

static const char csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

enum cstate { C_HANDSHAKE, C_READ, C_WAIT, C_WRITE };

struct login_job;

struct conn {
	struct console *k;
	struct conn *next;
	int fd;
	SSL *ssl;
	struct loop_io io;
	struct loop_timer deadline;
	struct loop_timer step; /* a deferred command's next step */
	enum cstate st;
	char peer[64];
	char *in; /* HEAD_MAX + BODY_MAX + 1 */
	size_t in_len;
	struct h1_msg msg;
	size_t req_len; /* head + body of the request being answered */
	struct sbuf out;
	size_t out_off;
	int close_after;
	struct command_job *job;
	struct sbuf job_out;
	int job_raw; /* export: the output is the body, not JSON-wrapped */
	const char *job_ctype, *job_file;
	struct login_job *login;
};

struct console {
	struct loop *loop;
	const struct gw_config *cfg;
	struct tls_server **tls;
	const struct ctl_cmd *cmds;
	void *ctx;
	int fd;
	struct loop_io io;
	char addr[128];
	struct conn *conns;
	int nconns;
	struct console_auth auth;
	struct accounts acc;
	struct workq *wq;
};

struct login_job {
	struct workq_job wj;
	struct conn *conn; /* NULL once the connection is gone */
	char user[ACCOUNT_NAME_MAX + 1];
	int role;
	char hash[ACCOUNT_HASH_MAX];
	int known;
	char password[256];
	int ok;
};

static void conn_drive(struct conn *c);
static void respond_error(struct conn *c, int status, const char *msg);

/* --- connections ------------------------------------------------------------------- */

static void conn_close(struct conn *c)
{
	struct console *k = c->k;
	for (struct conn **pp = &k->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	k->nconns--;
	loop_io_del(k->loop, &c->io);
	loop_timer_cancel(k->loop, &c->deadline);
	loop_timer_cancel(k->loop, &c->step);
	if (c->login)
		c->login->conn = NULL;
	command_job_free(c->job);
	sbuf_free(&c->job_out);
	if (c->ssl) {
		SSL_shutdown(c->ssl); /* best effort, non-blocking */
		SSL_free(c->ssl);
	}
	ERR_clear_error();
	/* workers forked meanwhile hold copies of fd: end it for the browser now */
	shutdown(c->fd, SHUT_RDWR);
	close(c->fd);
	if (c->in)
		OPENSSL_cleanse(c->in, c->in_len); /* may hold a password */
	free(c->in);
	sbuf_free(&c->out);
	free(c);
}

/* End the connection's command without its answer: the browser gets the
 * error instead. */
static void job_abandon(struct conn *c, int status, const char *msg)
{
	command_job_free(c->job);
	c->job = NULL;
	sbuf_free(&c->job_out);
	respond_error(c, status, msg);
	conn_drive(c);
}

static void on_deadline(struct loop_timer *t)
{
	struct conn *c = t->arg;
	if (c->st == C_WAIT && c->job) {
		/* A change still waiting for a farm's database after
		 * COMMAND_WAIT_MS: the job lets go of the answer to come, and
		 * the helpdesk is told (the change may still be made). */
		job_abandon(c, 504,
			    "no answer in time from the farm database (the change may still be "
			    "applied: look again)");
		return;
	}
	conn_close(c);
}

static const char *reason_phrase(int st)
{
	const char *p = h1_reason_phrase(st);
	return p ? p : st >= 500 ? "Internal Server Error" : "Error";
}

/*
 * Queue a whole response. extra: more header lines (each ending CRLF), or
 * NULL. Every response carries the same protective headers.
 */
static void respond(struct conn *c, int status, const char *ctype, const char *body, size_t len,
		    const char *extra, int cacheable)
{
	sbuf_printf(&c->out,
		    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		    "Content-Security-Policy: %s\r\nX-Content-Type-Options: nosniff\r\n"
		    "X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n"
		    "Cross-Origin-Opener-Policy: same-origin\r\n"
		    "Cross-Origin-Resource-Policy: same-origin\r\n"
		    "Strict-Transport-Security: max-age=31536000\r\nCache-Control: %s\r\n%s%s\r\n",
		    status, reason_phrase(status), ctype, len, csp,
		    cacheable ? "private, max-age=300" : "no-store", extra ? extra : "",
		    c->close_after ? "Connection: close\r\n" : "");
	if (len)
		sbuf_put(&c->out, body, len);
	if (c->out.oom) {
		conn_close(c);
		return;
	}
	c->st = C_WRITE;
	c->out_off = 0;
	loop_timer_set(c->k->loop, &c->deadline, WRITE_MS);
}

/* {"error": msg} with a status. */
static void respond_error(struct conn *c, int status, const char *msg)
{
	struct sbuf b = {0};
	sbuf_printf(&b, "{\"error\": ");
	fmt_json_str(&b, msg);
	sbuf_printf(&b, "}\n");
	respond(c, status, "application/json", b.p, b.len, NULL, 0);
	sbuf_free(&b);
}

/* The session as the pages read it (user, role, CSRF token); extra: the
 * Set-Cookie line of a login, or NULL. */
static void respond_session(struct conn *c, const struct console_session *s, const char *extra)
{
	struct sbuf b = {0};
	sbuf_printf(&b, "{\"user\": ");
	fmt_json_str(&b, s->user);
	sbuf_printf(&b, ", \"role\": \"%s\", \"csrf\": \"%s\"}\n", command_role_name(s->role),
		    s->csrf);
	respond(c, 200, "application/json", b.p, b.len, extra, 0);
	sbuf_free(&b);
}

static const struct h1_header *hdr(const struct conn *c, const char *name)
{
	return h1_find(&c->msg, name);
}

/* A header value as a C string (truncated to outsz). "" when absent. */
static void hdr_str(const struct conn *c, const char *name, char *out, size_t outsz)
{
	const struct h1_header *h = hdr(c, name);
	size_t n = h ? h->value.n : 0;
	if (n >= outsz)
		n = outsz - 1;
	if (h)
		memcpy(out, h->value.p, n);
	out[n] = 0;
}

static struct console_session *session_of(struct conn *c)
{
	const struct h1_header *h = hdr(c, "Cookie");
	char id[80];
	if (!h || webform_cookie(h->value.p, h->value.n, "eg_session", id, sizeof(id)) < 0)
		return NULL;
	return console_auth_session_find(&c->k->auth, id, loop_now_ms(c->k->loop));
}

/* --- static files ---------------------------------------------------------------------- */

static const char *mime(const char *name)
{
	const char *dot = strrchr(name, '.');
	if (!dot)
		return "application/octet-stream";
	if (!strcmp(dot, ".html"))
		return "text/html; charset=utf-8";
	if (!strcmp(dot, ".css"))
		return "text/css; charset=utf-8";
	if (!strcmp(dot, ".js"))
		return "text/javascript; charset=utf-8";
	if (!strcmp(dot, ".png"))
		return "image/png";
	if (!strcmp(dot, ".svg"))
		return "image/svg+xml";
	return "application/octet-stream";
}

/* A file of dir by a plain name ([A-Za-z0-9._-], not starting with '.'). */
static void serve_file(struct conn *c, const char *dir, const char *name)
{
	int ok = name[0] && name[0] != '.' && strlen(name) < 64;
	for (const char *p = name; *p && ok; p++)
		ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		     (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-';
	if (!ok) {
		respond_error(c, 404, "no such file");
		return;
	}
	char path[PATH_MAX + 80];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > FILE_MAX) {
		if (fd >= 0)
			close(fd);
		respond_error(c, 404, "no such file");
		return;
	}
	char *b = malloc((size_t)st.st_size + 1);
	ssize_t n = b ? read(fd, b, (size_t)st.st_size) : -1;
	close(fd);
	if (n != st.st_size) {
		free(b);
		respond_error(c, 500, "cannot read the file");
		return;
	}
	respond(c, 200, mime(name), b, (size_t)n, NULL, 1);
	free(b);
}

/* --- commands ---------------------------------------------------------------------------- */

/* What a session may run from the browser: the commands the table marks
 * for the console (struct ctl_cmd.console). */
static int cmd_allowed(const struct console *k, const char *name)
{
	for (const struct ctl_cmd *x = k->cmds; x->name; x++)
		if (!strcmp(x->name, name))
			return x->console;
	return 0;
}

static int http_status_of(enum ctl_code code)
{
	switch (code) {
	case CTL_OK:
		return 200;
	case CTL_USAGE:
		return 400;
	case CTL_NOTFOUND:
		return 404;
	case CTL_DENIED:
		return 403;
	case CTL_CONFLICT:
		return 409;
	default:
		return 500;
	}
}

static void finish_command(struct conn *c, enum ctl_code code, struct sbuf *out)
{
	if (c->job_raw && code == CTL_OK) {
		char extra[160];
		snprintf(extra, sizeof(extra),
			 "Content-Disposition: attachment; filename=\"%s\"\r\n", c->job_file);
		respond(c, 200, c->job_ctype, out->p ? out->p : "", out->len, extra, 0);
		return;
	}
	struct sbuf b = {0};
	sbuf_printf(&b, "{\"code\": %d, \"output\": ", (int)code);
	fmt_json_str(&b, out->p ? out->p : "");
	sbuf_printf(&b, "}\n");
	if (b.oom)
		respond_error(c, 500, "out of memory");
	else
		respond(c, http_status_of(code), "application/json", b.p, b.len, NULL, 0);
	sbuf_free(&b);
}

static void console_wake(void *arg)
{
	struct conn *c = arg;
	loop_timer_set(c->k->loop, &c->step, 0);
}

static void on_step(struct loop_timer *t)
{
	struct conn *c = t->arg;
	enum ctl_code code = CTL_FAILED;
	int r = command_step(c->job, &c->job_out, &code);
	if (r == COMMAND_WAIT) {
		/* waits for the store (a farm's database): stepped again when it
		 * answers (console_wake), or answered 504 by the deadline */
		if (!loop_timer_armed(&c->deadline))
			loop_timer_set(c->k->loop, &c->deadline, COMMAND_WAIT_MS);
		return;
	}
	if (!r) {
		if (c->job_out.len > OUT_MAX || c->job_out.oom) {
			job_abandon(c, 500,
				    "the answer is too large: narrow the filters, or use easctl");
			return;
		}
		loop_timer_set(c->k->loop, &c->step, 0);
		return;
	}
	command_job_free(c->job);
	c->job = NULL;
	struct sbuf out = c->job_out;
	memset(&c->job_out, 0, sizeof(c->job_out));
	finish_command(c, code, &out);
	sbuf_free(&out);
	conn_drive(c);
}

/*
 * Run argv as the session's account through the command layer. write: the
 * request came as a POST with a valid CSRF token (anything else may only
 * read).
 */
static void run_command(struct conn *c, struct console_session *s, int argc, char **argv, int write)
{
	struct console *k = c->k;
	if (!argc || !cmd_allowed(k, argv[0])) {
		respond_error(c, 400, "not a console command");
		return;
	}
	if (!write && command_role_needed(k->cmds, argc, argv) > ROLE_VIEWER) {
		respond_error(c, 405, "a change needs POST with the CSRF token");
		return;
	}
	struct command_actor who = {.kind = "console", .role = s->role};
	snprintf(who.name, sizeof(who.name), "%s", s->user);
	snprintf(who.source, sizeof(who.source), "%s", c->peer);
	struct sbuf out = {0};
	enum ctl_code code = command_run(k->cmds, k->ctx, &who, argc, argv, &out, &c->job);
	loop_update_clock(k->loop);
	if (code == CTL_DENIED) {
		char qu[200], qa[200];
		log_warn("event=console_denied user=%s role=%s source=%s command=%s",
			 log_quote(qu, sizeof(qu), s->user, (size_t)-1), command_role_name(s->role),
			 c->peer, log_quote(qa, sizeof(qa), argv[0], (size_t)-1));
	}
	if (c->job) {
		c->job_out = out;
		c->job->wake = console_wake;
		c->job->wake_arg = c;
		c->st = C_WAIT;
		loop_timer_cancel(k->loop, &c->deadline);
		loop_timer_set(k->loop, &c->step, 0);
		return;
	}
	finish_command(c, code, &out);
	sbuf_free(&out);
}

/* argv from the fields named "a", in order. */
static int argv_of(struct webform_field *f, int nf, char **argv, int max)
{
	int n = 0;
	for (int i = 0; i < nf && n < max; i++)
		if (!strcmp(f[i].name, "a"))
			argv[n++] = f[i].value;
	argv[n] = NULL;
	return n;
}

/* --- login ------------------------------------------------------------------------------- */

static void login_work(struct workq_job *wj)
{
	struct login_job *j = (struct login_job *)wj;
	j->ok = accounts_verify(j->known ? j->hash : NULL, j->password);
	OPENSSL_cleanse(j->password, sizeof(j->password));
}

static void login_done(struct workq_job *wj)
{
	struct login_job *j = (struct login_job *)wj;
	struct conn *c = j->conn;
	OPENSSL_cleanse(j->password, sizeof(j->password));
	if (!c) {
		free(j);
		return;
	}
	c->login = NULL;
	struct console *k = c->k;
	uint64_t now = loop_now_ms(k->loop);
	char qu[200];
	log_quote(qu, sizeof(qu), j->user, (size_t)-1);
	if (j->ok) {
		console_auth_succeeded(&k->auth, c->peer, j->user);
		struct console_session *s =
		    console_auth_session_new(&k->auth, j->user, j->role, c->peer, now);
		if (!s) {
			respond_error(c, 503, "no session could be made");
		} else {
			char cookie[200];
			snprintf(cookie, sizeof(cookie),
				 "Set-Cookie: eg_session=%s; Path=/; HttpOnly; Secure; "
				 "SameSite=Strict\r\n",
				 s->id);
			respond_session(c, s, cookie);
			log_info("event=console_login user=%s role=%s source=%s", qu,
				 command_role_name(j->role), c->peer);
		}
	} else {
		int lock = console_auth_failed(&k->auth, c->peer, j->user, j->known, now);
		log_warn("event=console_login_failed user=%s source=%s", qu, c->peer);
		if (lock)
			log_warn("event=console_lockout source=%s user=%s locked=%s failures=%d "
				 "lockout_s=%llu",
				 c->peer, qu,
				 lock == 3   ? "source,account"
				 : lock == 1 ? "source"
					     : "account",
				 LOGIN_MAX_FAILS, (unsigned long long)(k->auth.lockout_ms / 1000));
		respond_error(c, 401, "wrong user name or password");
	}
	free(j);
	conn_drive(c);
}

/* (Re)load the accounts file when it changed; -1 when it cannot be used. */
static int accounts_fresh(struct console *k)
{
	const char *path = k->cfg->admin.web_accounts;
	if (k->acc.a && !accounts_changed(path, &k->acc))
		return 0;
	char err[400];
	if (accounts_load(path, &k->acc, err, sizeof(err)) < 0) {
		log_err("event=console_accounts_refused error=\"%s\"", err);
		accounts_free(&k->acc);
		console_auth_sessions_revalidate(&k->auth, &k->acc);
		return -1;
	}
	console_auth_sessions_revalidate(&k->auth, &k->acc);
	log_info("event=console_accounts_loaded path=%s accounts=%d", path, k->acc.n);
	return 0;
}

static void do_login(struct conn *c, struct webform_field *f, int nf)
{
	struct console *k = c->k;
	const char *user = webform_get(f, nf, "user"), *pw = webform_get(f, nf, "password");
	if (!user || !pw || strlen(pw) >= sizeof(((struct login_job *)0)->password)) {
		respond_error(c, 400, "user and password are needed");
		return;
	}
	if (accounts_fresh(k) < 0) {
		respond_error(c, 503, "the console's accounts file is refused (see the log)");
		return;
	}
	uint64_t left = console_auth_locked(&k->auth, c->peer, user, loop_now_ms(k->loop));
	if (left) {
		char qu[200], extra[64];
		log_warn("event=console_login_refused user=%s source=%s reason=locked_out "
			 "seconds_left=%llu",
			 log_quote(qu, sizeof(qu), user, (size_t)-1), c->peer,
			 (unsigned long long)(left / 1000 + 1));
		snprintf(extra, sizeof(extra), "Retry-After: %llu\r\n",
			 (unsigned long long)(left / 1000 + 1));
		struct sbuf b = {0};
		sbuf_printf(&b, "{\"error\": \"too many wrong passwords: try again in %llu s\"}\n",
			    (unsigned long long)(left / 1000 + 1));
		respond(c, 429, "application/json", b.p, b.len, extra, 0);
		sbuf_free(&b);
		return;
	}
	struct login_job *j = calloc(1, sizeof(*j));
	if (!j) {
		respond_error(c, 503, "out of memory");
		return;
	}
	j->wj.work = login_work;
	j->wj.done = login_done;
	j->conn = c;
	snprintf(j->user, sizeof(j->user), "%s", user);
	snprintf(j->password, sizeof(j->password), "%s", pw);
	const struct account *a = accounts_name_ok(user) ? accounts_find(&k->acc, user) : NULL;
	if (a) {
		j->known = 1;
		j->role = a->role;
		snprintf(j->hash, sizeof(j->hash), "%s", a->hash);
	}
	if (workq_submit(k->wq, &j->wj) < 0) {
		OPENSSL_cleanse(j->password, sizeof(j->password));
		free(j);
		respond_error(c, 503, "busy: too many logins at once, try again");
		return;
	}
	c->login = j;
	c->st = C_WAIT;
	loop_timer_cancel(k->loop, &c->deadline);
}

/* --- routing -------------------------------------------------------------------------------- */

static int path_is(const struct conn *c, const char *p)
{
	return c->msg.path.n == strlen(p) && !memcmp(c->msg.path.p, p, c->msg.path.n);
}

static int path_starts(const struct conn *c, const char *p)
{
	size_t n = strlen(p);
	return c->msg.path.n > n && !memcmp(c->msg.path.p, p, n);
}

/* A POST from a page of another origin is refused even before the CSRF
 * check (browsers send Origin with every POST). */
static int origin_ok(const struct conn *c)
{
	char origin[300], host[260], want[300];
	hdr_str(c, "Origin", origin, sizeof(origin));
	if (!origin[0])
		return 1;
	hdr_str(c, "Host", host, sizeof(host));
	snprintf(want, sizeof(want), "https://%s", host);
	return !strcmp(origin, want);
}

static void handle(struct conn *c)
{
	struct console *k = c->k;
	const struct h1_msg *m = &c->msg;
	int get = m->method == H1_M_GET, post = m->method == H1_M_POST;
	if (!get && !post) {
		respond_error(c, 405, "GET or POST");
		return;
	}
	/* The query (GET) or the body (POST) as form fields; both are copied
	 * so the decoding cannot touch the head the h1 slices point into. */
	char *form = NULL;
	size_t flen = 0;
	if (get && m->query.p) {
		flen = m->query.n;
		form = malloc(flen + 1);
		if (form)
			memcpy(form, m->query.p, flen);
	} else if (post) {
		flen = (size_t)m->content_length;
		form = malloc(flen + 1);
		if (form)
			memcpy(form, c->in + m->head_len, flen);
	}
	struct webform_field f[WEBFORM_MAX_FIELDS];
	int nf = 0;
	if (form) {
		nf = webform_parse(form, flen, f, WEBFORM_MAX_FIELDS);
		if (nf < 0) {
			OPENSSL_cleanse(form, flen);
			free(form);
			respond_error(c, 400, "the form does not decode");
			return;
		}
	}
	if (post && !origin_ok(c)) {
		respond_error(c, 403, "cross-origin request refused");
		goto out;
	}
	if (get && (path_is(c, "/") || path_is(c, "/index.html"))) {
		serve_file(c, k->cfg->admin.web_assets, "index.html");
	} else if (get && path_starts(c, "/assets/")) {
		char name[80];
		snprintf(name, sizeof(name), "%.*s", (int)(m->path.n - 8), m->path.p + 8);
		serve_file(c, k->cfg->admin.web_assets, name);
	} else if (get && path_is(c, "/vendor/chart.js")) {
		serve_file(c, k->cfg->admin.web_chartjs, "chart.min.js");
	} else if (post && path_is(c, "/api/login")) {
		do_login(c, f, nf);
	} else {
		struct console_session *s = session_of(c);
		if (!s) {
			respond_error(c, 401, "log in first");
			goto out;
		}
		char token[80];
		hdr_str(c, "X-CSRF-Token", token, sizeof(token));
		int csrf = post && console_auth_csrf_ok(s, token);
		if (post && !csrf) {
			log_warn("event=console_csrf_refused user=%s source=%s", s->user, c->peer);
			respond_error(c, 403, "CSRF token missing or wrong");
			goto out;
		}
		char *argv[WEBFORM_MAX_FIELDS + 1];
		if (get && path_is(c, "/api/session")) {
			respond_session(c, s, NULL);
		} else if (post && path_is(c, "/api/logout")) {
			log_info("event=console_logout user=%s source=%s", s->user, c->peer);
			console_auth_session_end(s);
			respond(c, 200, "application/json", "{}\n", 3,
				"Set-Cookie: eg_session=; Path=/; HttpOnly; Secure; "
				"SameSite=Strict; Max-Age=0\r\n",
				0);
		} else if (path_is(c, "/api/run")) {
			run_command(c, s, argv_of(f, nf, argv, WEBFORM_MAX_FIELDS), argv, csrf);
		} else if (get && (path_is(c, "/export/devices.csv") ||
				   path_is(c, "/export/devices.json"))) {
			int csv = path_is(c, "/export/devices.csv");
			/* the page's filters, as `easctl devices` options */
			static const char *const keys[] = {"user", "os", "os-regex", "state", NULL};
			char *av[16];
			int ac = 0;
			av[ac++] = (char *)"devices";
			for (const char *const *key = keys; *key; key++) {
				const char *v = webform_get(f, nf, *key);
				if (v && v[0]) {
					static char opt[4][16];
					snprintf(opt[key - keys], sizeof(opt[0]), "--%s", *key);
					av[ac++] = opt[key - keys];
					av[ac++] = (char *)v;
				}
			}
			/* the devices page's "seen, not authenticated" choice */
			const char *un = webform_get(f, nf, "unauthenticated");
			if (un && !strcmp(un, "1"))
				av[ac++] = (char *)"--unauthenticated";
			av[ac++] = (char *)"--format";
			av[ac++] = (char *)(csv ? "csv" : "json");
			av[ac] = NULL;
			c->job_raw = 1;
			c->job_ctype = csv ? "text/csv; charset=utf-8" : "application/json";
			c->job_file = csv ? "devices.csv" : "devices.json";
			run_command(c, s, ac, av, 0);
		} else {
			respond_error(c, 404, "no such page");
		}
	}
out:
	if (form) {
		OPENSSL_cleanse(form, flen);
		free(form);
	}
}

/* --- the state machine ---------------------------------------------------------------------- */

/* 1 when a complete request is in c->in (msg parsed), 0 for more, -1 answered with an error. */
static int request_ready(struct conn *c)
{
	struct h1_limits lim = {.max_head = HEAD_MAX, .max_line = 8192, .max_body = BODY_MAX};
	int r = h1_parse_request(c->in, c->in_len, &c->msg, &lim);
	if (r == 0) {
		if (c->in_len >= HEAD_MAX) {
			c->close_after = 1;
			respond_error(c, 431, "request head too large");
			return -1;
		}
		return 0;
	}
	if (r < 0) {
		c->close_after = 1;
		respond_error(c, c->msg.err_status ? c->msg.err_status : 400,
			      c->msg.err ? c->msg.err : "bad request");
		return -1;
	}
	if (c->msg.flags & H1_F_CHUNKED) {
		c->close_after = 1;
		respond_error(c, 411, "send a Content-Length");
		return -1;
	}
	if (c->msg.content_length > BODY_MAX) {
		c->close_after = 1;
		respond_error(c, 413, "body too large");
		return -1;
	}
	size_t want = c->msg.head_len + (size_t)c->msg.content_length;
	if (c->in_len < want)
		return 0;
	c->req_len = want;
	if (c->msg.flags & H1_F_CONN_CLOSE)
		c->close_after = 1;
	return 1;
}

static int ssl_want(struct conn *c, int r)
{
	int e = SSL_get_error(c->ssl, r);
	ERR_clear_error();
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

static void conn_drive(struct conn *c)
{
	struct console *k = c->k;
	for (;;) {
		switch (c->st) {
		case C_HANDSHAKE: {
			int r = SSL_do_handshake(c->ssl);
			if (r == 1) {
				c->st = C_READ;
				loop_timer_set(k->loop, &c->deadline, KEEPALIVE_MS);
				continue;
			}
			if (!ssl_want(c, r))
				conn_close(c);
			return;
		}
		case C_READ: {
			int ready = c->in_len ? request_ready(c) : 0;
			if (ready < 0)
				continue; /* the error response is queued */
			if (ready > 0) {
				handle(c);
				if (c->st == C_READ) /* nothing was queued: cannot happen */
					c->st = C_WRITE;
				continue;
			}
			size_t room = HEAD_MAX + BODY_MAX - c->in_len;
			if (!room) {
				c->close_after = 1;
				respond_error(c, 413, "request too large");
				continue;
			}
			int n = SSL_read(c->ssl, c->in + c->in_len, (int)room);
			if (n <= 0) {
				if (!ssl_want(c, n))
					conn_close(c);
				return;
			}
			if (!c->in_len)
				loop_timer_set(k->loop, &c->deadline, REQUEST_MS);
			c->in_len += (size_t)n;
			continue;
		}
		case C_WAIT:
			return; /* a login check or a stepped command */
		case C_WRITE: {
			while (c->out_off < c->out.len) {
				int n = SSL_write(c->ssl, c->out.p + c->out_off,
						  (int)(c->out.len - c->out_off > (1u << 30)
							    ? (1u << 30)
							    : c->out.len - c->out_off));
				if (n <= 0) {
					if (!ssl_want(c, n))
						conn_close(c);
					return;
				}
				c->out_off += (size_t)n;
				loop_timer_set(k->loop, &c->deadline, WRITE_MS);
			}
			if (c->close_after) {
				conn_close(c);
				return;
			}
			/* next request: keep what came after this one (pipelining) */
			sbuf_free(&c->out);
			c->out_off = 0;
			memmove(c->in, c->in + c->req_len, c->in_len - c->req_len);
			c->in_len -= c->req_len;
			c->req_len = 0;
			h1_msg_reset(&c->msg);
			c->job_raw = 0;
			c->st = C_READ;
			loop_timer_set(k->loop, &c->deadline,
				       c->in_len ? REQUEST_MS : KEEPALIVE_MS);
			continue;
		}
		}
	}
}

static void conn_io(struct loop_io *io, uint32_t ev)
{
	conn_drive(io->arg);
}

static void on_accept(struct loop_io *io, uint32_t ev)
{
	struct console *k = io->arg;
	for (int i = 0; i < 16; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(k->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		struct conn *c = k->nconns < MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
		if (c)
			c->in = malloc(HEAD_MAX + BODY_MAX + 1);
		if (!c || !c->in || !*k->tls || !(c->ssl = tls_server_ssl(*k->tls, fd))) {
			if (c)
				free(c->in);
			free(c);
			close(fd);
			continue;
		}
		c->k = k;
		c->fd = fd;
		if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->peer,
				  sizeof(c->peer));
		else if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->peer,
				  sizeof(c->peer));
		loop_timer_init(&c->deadline, on_deadline, c);
		loop_timer_init(&c->step, on_step, c);
		if (loop_io_add(k->loop, &c->io, fd, conn_io, c) < 0) {
			SSL_free(c->ssl);
			free(c->in);
			free(c);
			close(fd);
			continue;
		}
		c->next = k->conns;
		k->conns = c;
		k->nconns++;
		loop_timer_set(k->loop, &c->deadline, HANDSHAKE_MS);
		conn_drive(c);
	}
}

/* --- lifecycle -------------------------------------------------------------------------------- */

int console_check_config(const struct gw_config *c, char *err, size_t errsz)
{
	if (!c->admin.web[0])
		return 0;
	struct accounts a = {0};
	if (accounts_load(c->admin.web_accounts, &a, err, errsz) < 0)
		return -1;
	accounts_free(&a);
	char p[PATH_MAX + 32];
	snprintf(p, sizeof(p), "%s/index.html", c->admin.web_assets);
	if (access(p, R_OK) < 0) {
		snprintf(err, errsz, "admin.web_assets: %s: %s", p, strerror(errno));
		return -1;
	}
	return 0;
}

struct console *console_new(struct loop *l, const struct gw_config *c, struct tls_server **tls,
			    const struct ctl_cmd *cmds, void *ctx, char *err, size_t errsz)
{
	if (console_check_config(c, err, errsz) < 0)
		return NULL;
	struct console *k = calloc(1, sizeof(*k));
	if (!k) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	k->loop = l;
	k->cfg = c;
	k->tls = tls;
	k->cmds = cmds;
	k->ctx = ctx;
	snprintf(k->addr, sizeof(k->addr), "%s", c->admin.web);
	console_auth_init(&k->auth, c->admin.web_idle_ms, c->admin.web_lockout_ms);
	accounts_fresh(k);
	const struct cfg_addr *a = &c->admin.web_addr;
	k->fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (k->fd >= 0)
		setsockopt(k->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (k->fd < 0 || bind(k->fd, (const struct sockaddr *)&a->ss, a->len) < 0 ||
	    listen(k->fd, 64) < 0 || loop_io_add_lt(l, &k->io, k->fd, on_accept, k) < 0) {
		snprintf(err, errsz, "admin.web %s: %s", c->admin.web, strerror(errno));
		goto fail;
	}
	k->wq = workq_new(l, LOGINS_PENDING);
	if (!k->wq) {
		snprintf(err, errsz, "admin.web: cannot start the password thread");
		loop_io_del(l, &k->io);
		goto fail;
	}
	log_info("event=console_listening addr=%s accounts=%s assets=%s", c->admin.web,
		 c->admin.web_accounts, c->admin.web_assets);
	return k;
fail:
	if (k->fd >= 0)
		close(k->fd);
	accounts_free(&k->acc);
	free(k);
	return NULL;
}

void console_reconfigure(struct console *k, const struct gw_config *c)
{
	if (!k)
		return;
	k->cfg = c;
	k->auth.idle_ms = c->admin.web_idle_ms;
	k->auth.lockout_ms = c->admin.web_lockout_ms;
	if (strcmp(k->addr, c->admin.web))
		log_warn("event=console_address_unchanged running=%s configured=%s note=\"a new "
			 "admin.web address needs a restart\"",
			 k->addr, c->admin.web);
}

void console_close_fds(struct console *k)
{
	if (!k)
		return;
	close(k->fd);
	for (struct conn *c = k->conns; c; c = c->next)
		close(c->fd);
}

void console_free(struct console *k)
{
	if (!k)
		return;
	while (k->conns)
		conn_close(k->conns);
	workq_free(k->wq); /* login jobs of closed connections: freed in their done() */
	loop_io_del(k->loop, &k->io);
	close(k->fd);
	accounts_free(&k->acc);
	OPENSSL_cleanse(&k->auth, sizeof(k->auth));
	free(k);
}
