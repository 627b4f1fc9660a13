/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* control.c - see control.h. */
#include "control.h"
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_MAX_REQ  65536
#define CTL_MAX_ARGS 64

struct control {
	struct loop *loop;
	struct loop_io io;
	int fd;
	char path[108];
	uid_t uid;
	gid_t gid;
	const struct ctl_cmd *cmds;
	void *ctx;
};

void sbuf_put(struct sbuf *s, const char *d, size_t n)
{
	if (s->oom)
		return;
	if (s->len + n + 1 > s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 4096;
		while (ncap < s->len + n + 1)
			ncap *= 2;
		char *np = realloc(s->p, ncap);
		if (!np) {
			s->oom = 1;
			return;
		}
		s->p = np;
		s->cap = ncap;
	}
	memcpy(s->p + s->len, d, n);
	s->len += n;
	s->p[s->len] = 0;
}

void sbuf_printf(struct sbuf *s, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		sbuf_put(s, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		s->oom = 1;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sbuf_put(s, big, (size_t)n);
	free(big);
}

void sbuf_free(struct sbuf *s)
{
	free(s->p);
	memset(s, 0, sizeof(*s));
}

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

static void reply(int fd, enum ctl_code code, struct sbuf *out)
{
	char head[600];
	if (code == CTL_OK) {
		snprintf(head, sizeof(head), "ok\n");
		write_all(fd, head, strlen(head));
		if (out->len)
			write_all(fd, out->p, out->len);
	} else {
		/* The first line of the output is the message. */
		const char *msg = out->len ? out->p : "failed";
		const char *nl = strchr(msg, '\n');
		int ml = nl ? (int)(nl - msg) : (int)strlen(msg);
		snprintf(head, sizeof(head), "error %d %.*s\n", code, ml > 500 ? 500 : ml, msg);
		write_all(fd, head, strlen(head));
		if (nl && nl[1])
			write_all(fd, nl + 1, strlen(nl + 1));
	}
}

/* Handle one connection synchronously: requests are tiny and local. */
static void serve(struct control *c, int fd)
{
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	struct sbuf out = {0};
	char *buf = NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 ||
	    (cr.uid != 0 && cr.uid != c->uid && cr.gid != c->gid && cr.uid != geteuid())) {
		sbuf_printf(&out, "permission denied");
		reply(fd, CTL_DENIED, &out);
		goto done;
	}
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	buf = malloc(CTL_MAX_REQ);
	if (!buf)
		goto done;
	size_t len = 0;
	int complete = 0;
	while (len < CTL_MAX_REQ && !complete) {
		ssize_t r = recv(fd, buf + len, CTL_MAX_REQ - len, 0);
		if (r <= 0)
			break;
		len += (size_t)r;
		/* complete when the buffer ends with an empty argument */
		complete = len >= 2 && buf[len - 1] == 0 && buf[len - 2] == 0;
		if (len == 1 && buf[0] == 0)
			complete = 1;
	}
	char *argv[CTL_MAX_ARGS + 1];
	int argc = 0;
	if (!complete) {
		sbuf_printf(&out, "malformed request (want NUL-separated arguments)");
		reply(fd, CTL_USAGE, &out);
		goto done;
	}
	for (size_t i = 0; i < len && argc < CTL_MAX_ARGS;) {
		if (!buf[i])
			break;
		argv[argc++] = buf + i;
		i += strlen(buf + i) + 1;
	}
	argv[argc] = NULL;
	if (!argc) {
		sbuf_printf(&out, "empty request");
		reply(fd, CTL_USAGE, &out);
		goto done;
	}
	for (const struct ctl_cmd *k = c->cmds; k->name; k++)
		if (!strcmp(k->name, argv[0])) {
			enum ctl_code code = k->fn(c->ctx, argc, argv, &out);
			reply(fd, code, &out);
			goto done;
		}
	sbuf_printf(&out, "unknown command '%s' (try: easctl help)", argv[0]);
	reply(fd, CTL_USAGE, &out);
done:
	free(buf);
	sbuf_free(&out);
	/* EOF for easctl now, even though workers forked by this command
	 * (reload) hold copies of fd. */
	shutdown(fd, SHUT_RDWR);
	close(fd);
}

static void on_accept(struct loop_io *io, uint32_t ev)
{
	struct control *c = io->arg;
	for (;;) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			return;
		serve(c, fd);
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
	if (c && c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

void control_free(struct control *c)
{
	if (!c)
		return;
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
	int rc = write_all(fd, req.p, req.len);
	sbuf_free(&req);
	if (rc < 0) {
		close(fd);
		return -1;
	}
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
