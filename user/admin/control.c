/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* control.c - see control.h. */
#include "control.h"
#include "command.h"
#include "log.h"
#include "peercred.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_MAX_REQ	65536
#define CTL_MAX_ARGS	64
#define CTL_MAX_CLIENTS 32
#define CTL_REQ_MS	2000 /* the whole request must arrive within this */
#define CTL_REPLY_MS	5000 /* the reply must make progress within this */

/*
 * One client connection, served from the master's loop without ever waiting
 * on it: a client that connects and sends nothing (or reads nothing) costs a
 * slot and a timer, never the master's time (it also runs the health checks,
 * the metrics and the systemd watchdog).
 */
struct ctl_client {
	struct control *c;
	struct ctl_client *next;
	struct loop_io io;
	struct loop_timer deadline;
	struct loop_timer run; /* 0 ms: the command runs after this pass's events */
	int fd;
	struct peercred who;
	char *req; /* up to CTL_MAX_REQ, grown as it arrives */
	size_t req_len, req_cap;
	struct sbuf out; /* the whole reply */
	size_t out_off;
	int replying;
	struct command_job *job; /* a deferred command being stepped (command.h) */
	struct sbuf job_out;
	int waiting; /* the job waits for an answer (COMMAND_WAIT); deadline armed */
};

struct control {
	struct loop *loop;
	struct loop_io io;
	int fd;
	char path[108];
	uid_t uid;
	gid_t gid;
	const struct ctl_cmd *cmds;
	void *ctx;
	struct ctl_client *clients;
	int nclients;
};

/* Blocking send of all of p (the client side, easctl). */
static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The reply's bytes: "ok\n" + output, or "error <code> <first line>\n" + the rest. */
static void format_reply(struct sbuf *dst, enum ctl_code code, const struct sbuf *out)
{
	if (code == CTL_OK) {
		sbuf_put(dst, "ok\n", 3);
		if (out->len)
			sbuf_put(dst, out->p, out->len);
		return;
	}
	const char *msg = out->len ? out->p : "failed";
	const char *nl = strchr(msg, '\n');
	int ml = nl ? (int)(nl - msg) : (int)strlen(msg);
	sbuf_printf(dst, "error %d %.*s\n", code, ml > 500 ? 500 : ml, msg);
	if (nl && nl[1])
		sbuf_put(dst, nl + 1, strlen(nl + 1));
}

static void client_end(struct ctl_client *k)
{
	struct control *c = k->c;
	for (struct ctl_client **pp = &c->clients; *pp; pp = &(*pp)->next)
		if (*pp == k) {
			*pp = k->next;
			break;
		}
	c->nclients--;
	loop_io_del(c->loop, &k->io);
	loop_timer_cancel(c->loop, &k->deadline);
	loop_timer_cancel(c->loop, &k->run);
	/* EOF for easctl now, even though workers forked by a command (reload)
	 * may still hold a copy of fd. */
	shutdown(k->fd, SHUT_RDWR);
	close(k->fd);
	free(k->req);
	sbuf_free(&k->out);
	command_job_free(k->job);
	sbuf_free(&k->job_out);
	free(k);
}

/* Send what the socket takes; end the client when all is sent or it failed. */
static void client_write(struct ctl_client *k)
{
	while (k->out_off < k->out.len) {
		ssize_t w = send(k->fd, k->out.p + k->out_off, k->out.len - k->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			return; /* EPOLLOUT (edge-triggered) calls us again */
		}
		if (w <= 0) {
			client_end(k);
			return;
		}
		k->out_off += (size_t)w;
		loop_timer_set(k->c->loop, &k->deadline, CTL_REPLY_MS);
	}
	client_end(k);
}

static void client_reply(struct ctl_client *k, enum ctl_code code, struct sbuf *out)
{
	format_reply(&k->out, code, out);
	if (k->out.oom) {
		client_end(k);
		return;
	}
	k->replying = 1;
	loop_timer_set(k->c->loop, &k->deadline, CTL_REPLY_MS);
	client_write(k);
}

static void client_reply_text(struct ctl_client *k, enum ctl_code code, const char *msg)
{
	struct sbuf out = {0};
	sbuf_printf(&out, "%s", msg);
	client_reply(k, code, &out);
	sbuf_free(&out);
}

static void client_wake(void *arg)
{
	struct ctl_client *k = arg;
	loop_timer_set(k->c->loop, &k->run, 0);
}

/* A deferred command: one bounded step per loop pass until it is done; a
 * job waiting for the store is stepped again when it wakes (COMMAND_WAIT),
 * for at most COMMAND_WAIT_MS (client_timeout). */
static void client_step(struct ctl_client *k)
{
	enum ctl_code code = CTL_FAILED;
	int r = command_step(k->job, &k->job_out, &code);
	if (r == 0) {
		loop_timer_set(k->c->loop, &k->run, 0);
		return;
	}
	if (r == COMMAND_WAIT) {
		if (!k->waiting) {
			k->waiting = 1;
			loop_timer_set(k->c->loop, &k->deadline, COMMAND_WAIT_MS);
		}
		return;
	}
	k->waiting = 0;
	command_job_free(k->job);
	k->job = NULL;
	loop_update_clock(k->c->loop);
	struct sbuf out = k->job_out;
	memset(&k->job_out, 0, sizeof(k->job_out));
	client_reply(k, code, &out);
	sbuf_free(&out);
}

/* The request is complete: run it (from a timer, see client_read). */
static void client_run(struct loop_timer *t)
{
	struct ctl_client *k = t->arg;
	struct control *c = k->c;
	if (k->job) {
		client_step(k);
		return;
	}
	char *argv[CTL_MAX_ARGS + 1];
	int argc = 0;
	for (size_t i = 0; i < k->req_len && argc < CTL_MAX_ARGS;) {
		if (!k->req[i])
			break;
		argv[argc++] = k->req + i;
		i += strlen(k->req + i) + 1;
	}
	argv[argc] = NULL;
	if (!argc) {
		client_reply_text(k, CTL_USAGE, "empty request");
		return;
	}
	/* The peer passed peercred_refusal(): root, the daemon's user or its
	 * group, which administer the whole daemon anyway. */
	struct command_actor who = {.kind = "easctl", .uid = k->who.uid, .role = ROLE_ADMIN};
	snprintf(who.name, sizeof(who.name), "uid %u", (unsigned)k->who.uid);
	snprintf(who.source, sizeof(who.source), "pid %d", (int)k->who.pid);
	struct sbuf out = {0};
	enum ctl_code code = command_run(c->cmds, c->ctx, &who, argc, argv, &out, &k->job);
	if (k->job) {
		k->job_out = out;
		k->job->wake = client_wake;
		k->job->wake_arg = k;
		loop_timer_set(c->loop, &k->run, 0);
		return;
	}
	/* The command may have taken a while (reload): the loop's clock. */
	loop_update_clock(c->loop);
	client_reply(k, code, &out);
	sbuf_free(&out);
}

/* Complete when the buffer ends with an empty argument (or is just one). */
static int request_complete(const struct ctl_client *k)
{
	size_t n = k->req_len;
	return (n >= 2 && !k->req[n - 1] && !k->req[n - 2]) || (n == 1 && !k->req[0]);
}

static void client_read(struct ctl_client *k)
{
	for (;;) {
		if (k->req_len == k->req_cap) {
			if (k->req_cap == CTL_MAX_REQ) {
				client_reply_text(k, CTL_USAGE, "request too long");
				return;
			}
			size_t ncap = k->req_cap ? k->req_cap * 4 : 1024;
			char *np = realloc(k->req, ncap > CTL_MAX_REQ ? CTL_MAX_REQ : ncap);
			if (!np) {
				client_end(k);
				return;
			}
			k->req = np;
			k->req_cap = ncap > CTL_MAX_REQ ? CTL_MAX_REQ : ncap;
		}
		ssize_t r = recv(k->fd, k->req + k->req_len, k->req_cap - k->req_len, MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return;
		if (r <= 0) {
			client_reply_text(k, CTL_USAGE,
					  "malformed request (want NUL-separated arguments)");
			return;
		}
		k->req_len += (size_t)r;
		if (request_complete(k)) {
			/* Run it after every event of this loop pass was handled: a
			 * command may free objects (reload frees the health checks)
			 * whose events are still queued in this pass. */
			loop_timer_cancel(k->c->loop, &k->deadline);
			loop_timer_set(k->c->loop, &k->run, 0);
			k->replying = 1; /* nothing more is read */
			return;
		}
	}
}

static void client_io(struct loop_io *io, uint32_t ev)
{
	struct ctl_client *k = io->arg;
	if (loop_timer_armed(&k->run) || (k->job && !k->out.len))
		return; /* request complete, command not run or not answered yet */
	if (k->replying)
		client_write(k);
	else
		client_read(k);
}

static void client_timeout(struct loop_timer *t)
{
	struct ctl_client *k = t->arg;
	if (k->job && !k->out.len) {
		/* A job waiting for the store (COMMAND_WAIT): it is freed (and
		 * lets go of the answer to come), the client is told. */
		log_warn("event=control_deferred_timeout pid=%d", (int)k->who.pid);
		command_job_free(k->job);
		k->job = NULL;
		sbuf_free(&k->job_out);
		k->waiting = 0;
		client_reply_text(
		    k, CTL_FAILED,
		    "no answer in time (the change may still be applied: look again)");
		return;
	}
	if (k->replying) {
		client_end(k); /* a client that does not take its reply */
		return;
	}
	log_warn("event=control_timeout pid=%d uid=%u bytes=%zu", (int)k->who.pid,
		 (unsigned)k->who.uid, k->req_len);
	client_reply_text(k, CTL_USAGE, "request not received in time");
}

/* A best-effort one-line answer to a client we do not serve, then close. */
static void refuse(int fd, enum ctl_code code, const char *msg)
{
	char line[160];
	int n = snprintf(line, sizeof(line), "error %d %s\n", code, msg);
	(void)!send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

static void on_accept(struct loop_io *io, uint32_t ev)
{
	struct control *c = io->arg;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		struct peercred who;
		const char *why = peercred_refusal(fd, c->uid, c->gid, &who);
		if (why) {
			log_warn("event=control_denied pid=%d uid=%u gid=%u reason=\"%s\"",
				 (int)who.pid, (unsigned)who.uid, (unsigned)who.gid, why);
			refuse(fd, CTL_DENIED, "permission denied");
			continue;
		}
		struct ctl_client *k = c->nclients < CTL_MAX_CLIENTS ? calloc(1, sizeof(*k)) : NULL;
		if (!k) {
			log_warn("event=control_busy pid=%d clients=%d", (int)who.pid, c->nclients);
			refuse(fd, CTL_FAILED, "busy: too many control clients");
			continue;
		}
		k->c = c;
		k->fd = fd;
		k->who = who;
		loop_timer_init(&k->deadline, client_timeout, k);
		loop_timer_init(&k->run, client_run, k);
		if (loop_io_add(c->loop, &k->io, fd, client_io, k) < 0) {
			free(k);
			refuse(fd, CTL_FAILED, "cannot serve");
			continue;
		}
		k->next = c->clients;
		c->clients = k;
		c->nclients++;
		loop_timer_set(c->loop, &k->deadline, CTL_REQ_MS);
	}
}

struct control *control_new(struct loop *l, const char *path, uid_t uid, gid_t gid,
			    const struct ctl_cmd *cmds, void *ctx)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("event=control_failed path=%s error=\"path too long\"", path);
		return NULL;
	}
	struct control *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->loop = l;
	c->uid = uid;
	c->gid = gid;
	c->cmds = cmds;
	c->ctx = ctx;
	snprintf(c->path, sizeof(c->path), "%s", path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		goto fail;
	unlink(path);
	mode_t old = umask(0117);
	int r = bind(c->fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || listen(c->fd, 64) < 0)
		goto fail;
	if (geteuid() == 0 && chown(path, uid, gid) < 0)
		log_warn("event=control_chown path=%s error=%m", path);
	if (loop_io_add_lt(l, &c->io, c->fd, on_accept, c) < 0)
		goto fail;
	return c;
fail:
	log_err("event=control_failed path=%s error=%m", path);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return NULL;
}

void control_close_fd(struct control *c)
{
	if (!c)
		return;
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	/* Only this process's copies: no shutdown, the master still answers. */
	for (struct ctl_client *k = c->clients; k; k = k->next)
		close(k->fd);
}

void control_free(struct control *c)
{
	if (!c)
		return;
	while (c->clients)
		client_end(c->clients);
	loop_io_del(c->loop, &c->io);
	close(c->fd);
	unlink(c->path);
	free(c);
}

int control_call(const char *path, int argc, char **argv, struct sbuf *out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	struct sbuf req = {0};
	for (int i = 0; i < argc; i++)
		sbuf_put(&req, argv[i], strlen(argv[i]) + 1);
	sbuf_put(&req, "", 1);
	/* A refused client may find the socket closed while it writes: the
	 * refusal is already waiting to be read, so read on anyway. */
	(void)write_all(fd, req.p, req.len);
	sbuf_free(&req);
	shutdown(fd, SHUT_WR);
	char buf[65536];
	struct sbuf all = {0};
	ssize_t r;
	while ((r = recv(fd, buf, sizeof(buf), 0)) > 0)
		sbuf_put(&all, buf, (size_t)r);
	close(fd);
	if (!all.len) {
		sbuf_free(&all);
		errno = ECONNRESET;
		return -1;
	}
	int code = CTL_FAILED;
	char *nl = memchr(all.p, '\n', all.len);
	size_t hl = nl ? (size_t)(nl - all.p) + 1 : all.len;
	if (!strncmp(all.p, "ok\n", 3)) {
		code = CTL_OK;
		sbuf_put(out, all.p + hl, all.len - hl);
	} else if (!strncmp(all.p, "error ", 6)) {
		code = atoi(all.p + 6);
		const char *msg = strchr(all.p + 6, ' ');
		if (msg && msg < all.p + hl)
			sbuf_put(out, msg + 1, (size_t)(all.p + hl - msg - 1));
		sbuf_put(out, all.p + hl, all.len - hl);
	}
	sbuf_free(&all);
	return code;
}
