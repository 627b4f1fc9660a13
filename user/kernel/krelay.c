/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * krelay.c - kernel relay methods: probe, choice, splice and BPF flows.
 * See krelay.h for the contracts and bpf/relay.bpf.c for the kernel side.
 *
 * Teardown is the delicate part: a socket that leaves a sockmap loses what
 * its psock still holds (its redirect backlog and its psock receive queue),
 * so a flow is dismantled in an order where each psock is empty when it goes:
 *   1. the source leaves kr_src: strparser stops under the socket's callback
 *      lock, so from here no byte is redirected and the flow's counters are
 *      final; bytes that arrive later stay in src's TCP queue (plain read);
 *   2. the destination leaves kr_dst only once its TCP has taken every moved
 *      byte (bytes acked + unacked == moved since the start): until then the
 *      psock backlog, a kernel worker, is still sending;
 *   3. the spill socket is read for exactly `spilled` bytes, then removed.
 * Bytes the parser saw before the budget ran out went to dst; bytes after it
 * to the spill; the rest of the stream is still in src's TCP queue. That is
 * the intent; with a budget it fails about once in 400 handoffs (see
 * krelay.h), which is why budgets are experimental. A whole-connection flow
 * is stopped only after src's EOF or to give the connection up, when no
 * byte can be in the strparser, and is exact.
 */
#include "krelay.h"
#include "kfeat.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "relay.skel.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

static const char *const krelay_names[KRELAY__COUNT] = {"user", "splice", "sockmap", "verdict",
							"skmsg"};

const char *krelay_method_name(enum krelay_method m)
{
	return (unsigned)m < KRELAY__COUNT ? krelay_names[m] : NULL;
}

int krelay_method_from_name(const char *name)
{
	for (int i = 0; name && i < KRELAY__COUNT; i++)
		if (!strcmp(name, krelay_names[i]))
			return i;
	return -EINVAL;
}

/*
 * Measured by tools/bench/relay_bench.c -r 15 on a build machine (see
 * tools/bench/krelay-results.md): system-wide busy CPU (/proc/stat, so the
 * softirq and kernel-worker time of the BPF methods counts) per 10^9 bytes
 * relayed over loopback, sender and receiver included (the same for every
 * method), medians of 15 interleaved 1 GiB runs. splice: with a 1 MiB pipe;
 * a 64 KiB pipe measured 0.838 here and within the margin of user in
 * another 15-round run, so pipe_size matters. sockmap, verdict and skmsg
 * are listed for the record: they cannot stop on an exact count (krelay.h)
 * and are never chosen.
 * min_body is not measured: a body that fits in the 64 KiB buffer the relay
 * reads anyway costs one read and one write; splice would add two calls.
 */
const struct krelay_pref krelay_pref_measured = {
    .cpu_s_per_gb = {[KRELAY_USER] = 0.959,
		     [KRELAY_SPLICE] = 0.689,
		     [KRELAY_SOCKMAP] = 0.922,
		     [KRELAY_VERDICT] = 0.903,
		     [KRELAY_SKMSG] = 0.522},
    .margin = 0.10,
    .min_body = 64 * 1024,
    .pipe_size = 1024 * 1024,
    .where = "relay_bench -r 15, 2026-11-25, Linux 6.18.44 Firecracker guest, 2 vCPU AMD EPYC",
};

/* The methods that stop on an exact byte count reliably, besides user. */
static int kr_exact_ok(const struct krelay_caps *c, int m)
{
	return m == KRELAY_SPLICE && c->splice;
}

const char *krelay_default_method(const struct krelay_caps *c, const struct krelay_pref *p)
{
	enum krelay_method best = KRELAY_USER;
	double user;

	if (!p)
		p = &krelay_pref_measured;
	user = p->cpu_s_per_gb[KRELAY_USER];
	if (!c || user <= 0)
		return krelay_names[KRELAY_USER];
	for (int m = KRELAY_USER + 1; m < KRELAY__COUNT; m++) {
		double v = p->cpu_s_per_gb[m];

		if (!kr_exact_ok(c, m) || v <= 0 || v > user * (1.0 - p->margin))
			continue;
		if (best == KRELAY_USER || v < p->cpu_s_per_gb[best])
			best = (enum krelay_method)m;
	}
	return krelay_names[best];
}

const char *krelay_describe(char *out, size_t outsz, const struct krelay_caps *c,
			    const struct krelay_pref *p)
{
	char kq[128], bq[200], wq[160];
	const char *m;

	if (!p)
		p = &krelay_pref_measured;
	m = krelay_default_method(c, p);
	if (!c) {
		snprintf(out, outsz, "method=%s probed=0", m);
		return out;
	}
	snprintf(out, outsz,
		 "method=%s pipe=%zu splice=%d sockmap=%d verdict=%d skmsg=%d ktls=%d ktls_why=%s "
		 "bpf_why=%s measured=%s",
		 m, strcmp(m, "splice") ? (size_t)0 : p->pipe_size, c->splice, c->sockmap,
		 c->verdict, c->skmsg, c->ktls, log_quote(kq, sizeof(kq), c->ktls_why, (size_t)-1),
		 log_quote(bq, sizeof(bq), c->why, (size_t)-1),
		 log_quote(wq, sizeof(wq), p->where ? p->where : "", (size_t)-1));
	return out;
}

int krelay_leg_ok(const struct krelay_caps *c, int tls)
{
	return !tls || (c && c->ktls);
}

/* ---- small socket helpers ----------------------------------------------------- */

static int kr_cookie(int fd, uint64_t *out)
{
	socklen_t l = sizeof(*out);

	return getsockopt(fd, SOL_SOCKET, SO_COOKIE, out, &l) < 0 ? -errno : 0;
}

/*
 * Bytes this TCP socket has taken into its send queue since it was opened:
 * acked + still queued (SIOCOUTQ = write_seq - snd_una). The two are read
 * separately, so they are re-read until the acked count did not move.
 */
static int kr_written(int fd, uint64_t *out)
{
	for (int i = 0; i < 16; i++) {
		struct tcp_info a, b;
		socklen_t la = sizeof(a), lb = sizeof(b);
		int outq = 0;

		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &a, &la) < 0 ||
		    ioctl(fd, SIOCOUTQ, &outq) < 0 ||
		    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &b, &lb) < 0)
			return -errno;
		if (la < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(a.tcpi_bytes_acked))
			return -EOPNOTSUPP;
		if (a.tcpi_bytes_acked == b.tcpi_bytes_acked) {
			*out = a.tcpi_bytes_acked + (uint64_t)outq;
			return 0;
		}
	}
	return -EAGAIN;
}

/* IPv4 as ::ffff:a.b.c.d, ports in host order: the key kr_msg builds. */
static int kr_tuple(int fd, struct eg_krelay_tuple *t)
{
	struct sockaddr_storage l, r;
	socklen_t ll = sizeof(l), rl = sizeof(r);

	memset(t, 0, sizeof(*t));
	if (getsockname(fd, (struct sockaddr *)&l, &ll) < 0 ||
	    getpeername(fd, (struct sockaddr *)&r, &rl) < 0)
		return -errno;
	if (l.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)&l, *b = (const void *)&r;

		t->local_ip6[2] = t->remote_ip6[2] = htonl(0xffff);
		t->local_ip6[3] = a->sin_addr.s_addr;
		t->remote_ip6[3] = b->sin_addr.s_addr;
		t->local_port = ntohs(a->sin_port);
		t->remote_port = ntohs(b->sin_port);
	} else if (l.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)&l, *b = (const void *)&r;

		memcpy(t->local_ip6, &a->sin6_addr, 16);
		memcpy(t->remote_ip6, &b->sin6_addr, 16);
		t->local_port = ntohs(a->sin6_port);
		t->remote_port = ntohs(b->sin6_port);
	} else {
		return -EAFNOSUPPORT;
	}
	return 0;
}

/*
 * strparser and the verdict-only hook run when data *arrives*; bytes queued
 * before the socket joined the map would wait for the next segment, which
 * may never come (the whole body is already here). Setting SO_RCVLOWAT
 * (to its current value) makes TCP call data_ready now.
 */
static int kr_kick(int fd)
{
	int v = 1;
	socklen_t l = sizeof(v);

	if (getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, &l) < 0)
		return -errno;
	return setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) < 0 ? -errno : 0;
}

/* ---- splice --------------------------------------------------------------------- */

int krelay_pipe_open(struct krelay_pipe *p, size_t size)
{
	p->held = 0;
	if (pipe2(p->fd, O_CLOEXEC | O_NONBLOCK) < 0) {
		p->fd[0] = p->fd[1] = -1;
		return -errno;
	}
	/* A bigger pipe lets one splice carry more; the kernel may cap it
	 * (fs.pipe-max-size): the default then stands, which still works. */
	if (size && fcntl(p->fd[1], F_SETPIPE_SZ, (int)size) < 0)
		log_debug("event=krelay_pipe_size want=%zu error=%d", size, errno);
	return 0;
}

void krelay_pipe_close(struct krelay_pipe *p)
{
	if (p->fd[0] >= 0)
		close(p->fd[0]);
	if (p->fd[1] >= 0)
		close(p->fd[1]);
	p->fd[0] = p->fd[1] = -1;
	p->held = 0;
}

ssize_t krelay_splice(struct krelay_pipe *p, int src, int dst, size_t max)
{
	ssize_t out = 0;

	for (;;) {
		if (p->held) {
			ssize_t w = splice(p->fd[0], NULL, dst, NULL, p->held,
					   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

			if (w < 0 && errno == EPERM)
				return -EIO;
			if (w < 0)
				return errno == EAGAIN || errno == EINTR ? out : -errno;
			p->held -= (size_t)w;
			out += w;
			continue;
		}
		if (!max)
			return out;
		ssize_t r =
		    splice(src, NULL, p->fd[1], NULL, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

		if (r == 0)
			return out ? out : -1;
		if (r < 0 && errno == EPERM)
			return -EIO; /* -EPERM is -1, which means EOF here */
		if (r < 0)
			return errno == EAGAIN || errno == EINTR ? out : -errno;
		p->held += (size_t)r;
		max -= (size_t)r;
	}
}

/* ---- BPF flows ------------------------------------------------------------------- */

struct krelay {
	struct relay_bpf *skel;
	struct ring_buffer *rb;
	int src_fd, vsrc_fd, msrc_fd, dst_fd; /* socket maps */
	int state_fd, mstate_fd;	      /* flow state maps */
	int have_verdict, have_skmsg;	      /* optional attachments that worked */
	void (*cb)(void *, const struct eg_krelay_event *);
	void *cb_arg;
};

struct krelay_flow {
	struct krelay *k;
	enum krelay_method m;
	int src, dst;
	uint64_t src_key, dst_key, sp_key;
	struct eg_krelay_tuple tup; /* KRELAY_SKMSG: the state key */
	int sp[2];		    /* spill pair; sp[0] is in kr_dst */
	uint64_t base;		    /* kr_written(dst) at the start */
	int phase;		    /* 0 running, 1 src out, 2 dst out, 3 done */
	struct eg_krelay_state fin; /* counters once the src left (phase >= 1) */
	char *spill;		    /* bytes read from the spill so far */
	size_t nspill;
};

/* libbpf's messages go to debug (a failed probe is an answer, not an error),
 * and the first warning is kept for krelay_caps.why. */
static char kr_last_libbpf[160];

__attribute__((format(printf, 2, 0))) static int kr_libbpf_print(enum libbpf_print_level lvl,
								 const char *fmt, va_list ap)
{
	char *msg = NULL, *save = NULL;

	if (vasprintf(&msg, fmt, ap) < 0)
		return 0;
	for (char *line = strtok_r(msg, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (lvl == LIBBPF_WARN && !kr_last_libbpf[0])
			snprintf(kr_last_libbpf, sizeof(kr_last_libbpf), "%s", line);
		log_debug("event=libbpf msg=\"%s\"", line);
	}
	free(msg);
	return 0;
}

static int kr_rb_sample(void *ctx, void *data, size_t size)
{
	struct krelay *k = ctx;

	if (k->cb && size >= sizeof(struct eg_krelay_event))
		k->cb(k->cb_arg, data);
	return 0;
}

int krelay_open(struct krelay **out)
{
	libbpf_print_fn_t old = libbpf_set_print(kr_libbpf_print);
	struct krelay *k = calloc(1, sizeof(*k));
	int e = 0;

	*out = NULL;
	kr_last_libbpf[0] = 0;
	if (!k) {
		e = -ENOMEM;
		goto out;
	}
	k->skel = relay_bpf__open_and_load();
	if (!k->skel) {
		e = errno ? -errno : -EINVAL;
		goto fail;
	}
	k->src_fd = bpf_map__fd(k->skel->maps.kr_src);
	k->vsrc_fd = bpf_map__fd(k->skel->maps.kr_vsrc);
	k->msrc_fd = bpf_map__fd(k->skel->maps.kr_msrc);
	k->dst_fd = bpf_map__fd(k->skel->maps.kr_dst);
	k->state_fd = bpf_map__fd(k->skel->maps.kr_state);
	k->mstate_fd = bpf_map__fd(k->skel->maps.kr_mstate);
	if (bpf_prog_attach(bpf_program__fd(k->skel->progs.kr_parse), k->src_fd,
			    BPF_SK_SKB_STREAM_PARSER, 0) < 0 ||
	    bpf_prog_attach(bpf_program__fd(k->skel->progs.kr_verdict), k->src_fd,
			    BPF_SK_SKB_STREAM_VERDICT, 0) < 0) {
		e = -errno;
		snprintf(kr_last_libbpf, sizeof(kr_last_libbpf), "attach strparser: %s",
			 strerror(errno));
		goto fail;
	}
	/* The two other hooks are optional: older kernels lack the first. */
	k->have_verdict = bpf_prog_attach(bpf_program__fd(k->skel->progs.kr_skb_verdict),
					  k->vsrc_fd, BPF_SK_SKB_VERDICT, 0) == 0;
	k->have_skmsg = bpf_prog_attach(bpf_program__fd(k->skel->progs.kr_msg), k->msrc_fd,
					BPF_SK_MSG_VERDICT, 0) == 0;
	k->rb = ring_buffer__new(bpf_map__fd(k->skel->maps.kr_events), kr_rb_sample, k, NULL);
	if (!k->rb) {
		e = errno ? -errno : -ENOMEM;
		goto fail;
	}
	*out = k;
	goto out;
fail:
	krelay_close(k);
out:
	libbpf_set_print(old);
	return e;
}

void krelay_close(struct krelay *k)
{
	if (!k)
		return;
	ring_buffer__free(k->rb);
	/* Closing the maps detaches the programs and releases every socket. */
	relay_bpf__destroy(k->skel);
	free(k);
}

int krelay_event_fd(const struct krelay *k)
{
	return ring_buffer__epoll_fd(k->rb);
}

int krelay_events(struct krelay *k, void (*cb)(void *arg, const struct eg_krelay_event *ev),
		  void *arg)
{
	int n;

	k->cb = cb;
	k->cb_arg = arg;
	n = ring_buffer__consume(k->rb);
	k->cb = NULL;
	return n < 0 ? n : 0;
}

static int kr_src_map(const struct krelay_flow *f)
{
	switch (f->m) {
	case KRELAY_VERDICT:
		return f->k->vsrc_fd;
	case KRELAY_SKMSG:
		return f->k->msrc_fd;
	default:
		return f->k->src_fd;
	}
}

static int kr_map_add(int map, uint64_t key, int fd)
{
	uint64_t v = (uint64_t)fd;

	if (bpf_map_update_elem(map, &key, &v, BPF_NOEXIST) < 0)
		return errno == EEXIST ? -EBUSY : -errno;
	return 0;
}

static void kr_map_del(int map, uint64_t key)
{
	bpf_map_delete_elem(map, &key); /* ENOENT: the socket closed, already gone */
}

static int kr_state_get(const struct krelay_flow *f, struct eg_krelay_state *s)
{
	int r = f->m == KRELAY_SKMSG ? bpf_map_lookup_elem(f->k->mstate_fd, &f->tup, s)
				     : bpf_map_lookup_elem(f->k->state_fd, &f->src_key, s);

	return r < 0 ? -errno : 0;
}

static void kr_state_del(const struct krelay_flow *f)
{
	if (f->m == KRELAY_SKMSG)
		bpf_map_delete_elem(f->k->mstate_fd, &f->tup);
	else
		bpf_map_delete_elem(f->k->state_fd, &f->src_key);
}

/* Undo everything start may have done; safe on a partly built flow. */
static void kr_flow_dismantle(struct krelay_flow *f)
{
	if (f->phase < 1)
		kr_map_del(kr_src_map(f), f->src_key);
	if (f->phase < 2)
		kr_map_del(f->k->dst_fd, f->dst_key);
	if (f->sp[0] >= 0) {
		kr_map_del(f->k->dst_fd, f->sp_key);
		close(f->sp[0]);
		close(f->sp[1]);
		f->sp[0] = f->sp[1] = -1;
	}
	kr_state_del(f);
	f->phase = 3;
}

int krelay_flow_start(struct krelay *k, int src, int dst, const struct krelay_flow_opts *o,
		      struct krelay_flow **out)
{
	struct krelay_flow_opts d = {.method = KRELAY_SOCKMAP, .budget = EG_KRELAY_UNLIMITED};
	struct eg_krelay_state s = {0};
	struct krelay_flow *f;
	int e;

	*out = NULL;
	if (!o)
		o = &d;
	if (!o->budget || (o->method != KRELAY_SOCKMAP && o->budget != EG_KRELAY_UNLIMITED) ||
	    (o->method != KRELAY_SOCKMAP && o->method != KRELAY_VERDICT &&
	     o->method != KRELAY_SKMSG))
		return -EINVAL;
	if ((o->method == KRELAY_VERDICT && !k->have_verdict) ||
	    (o->method == KRELAY_SKMSG && !k->have_skmsg))
		return -EOPNOTSUPP;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->k = k;
	f->m = o->method;
	f->src = src;
	f->dst = dst;
	f->sp[0] = f->sp[1] = -1;
	/* Mark the maps as not yet joined, so a failure undoes only what was done. */
	f->phase = 2;
	if ((e = kr_cookie(src, &f->src_key)) < 0 || (e = kr_cookie(dst, &f->dst_key)) < 0)
		goto fail;
	if (f->m == KRELAY_SKMSG && (e = kr_tuple(src, &f->tup)) < 0)
		goto fail;
	if (f->m == KRELAY_SOCKMAP) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, f->sp) < 0) {
			e = -errno;
			f->sp[0] = f->sp[1] = -1;
			goto fail;
		}
		if ((e = kr_cookie(f->sp[0], &f->sp_key)) < 0 ||
		    (e = kr_map_add(k->dst_fd, f->sp_key, f->sp[0])) < 0)
			goto fail;
	}
	if ((e = kr_map_add(k->dst_fd, f->dst_key, dst)) < 0)
		goto fail;
	f->phase = 1;
	s.peer = f->dst_key;
	s.spill = f->sp_key;
	s.left = o->budget;
	s.chunk = o->chunk;
	if ((f->m == KRELAY_SKMSG
		 ? bpf_map_update_elem(k->mstate_fd, &f->tup, &s, BPF_NOEXIST)
		 : bpf_map_update_elem(k->state_fd, &f->src_key, &s, BPF_NOEXIST)) < 0) {
		e = errno == EEXIST ? -EBUSY : -errno;
		goto fail_nostate;
	}
	if ((e = kr_written(dst, &f->base)) < 0)
		goto fail;
	if ((e = kr_map_add(kr_src_map(f), f->src_key, src)) < 0)
		goto fail;
	f->phase = 0;
	if (f->m != KRELAY_SKMSG && (e = kr_kick(src)) < 0)
		goto fail;
	*out = f;
	return 0;
fail_nostate:
	/* The state key belongs to another flow of this src: keep it. */
	if (f->phase < 2)
		kr_map_del(k->dst_fd, f->dst_key);
	if (f->sp[0] >= 0) {
		kr_map_del(k->dst_fd, f->sp_key);
		close(f->sp[0]);
		close(f->sp[1]);
	}
	free(f);
	return e;
fail:
	kr_flow_dismantle(f);
	free(f);
	return e;
}

uint64_t krelay_flow_src_cookie(const struct krelay_flow *f)
{
	return f->src_key;
}

int krelay_flow_status(const struct krelay_flow *f, struct krelay_status *st)
{
	struct eg_krelay_state s;
	uint64_t w = 0;
	int e = 0;

	memset(st, 0, sizeof(*st));
	if (f->phase >= 1)
		s = f->fin;
	else if ((e = kr_state_get(f, &s)) < 0)
		return e;
	st->moved = s.moved;
	st->left = s.left;
	st->spilled = s.spilled;
	st->dropped = s.dropped;
	st->stopping = f->phase >= 1;
	if (f->phase < 2 && kr_written(f->dst, &w) == 0 && w >= f->base)
		st->sent = w - f->base;
	else if (f->phase >= 2)
		st->sent = s.moved - s.dropped;
	return 0;
}

int krelay_flow_stop(struct krelay_flow *f, void *spill, size_t cap, size_t *nspill)
{
	struct krelay *k = f->k;
	uint64_t w;
	int e;

	if (nspill)
		*nspill = 0;
	if (f->phase == 0) {
		/* 1: no more verdicts after this returns; counters are final. */
		kr_map_del(kr_src_map(f), f->src_key);
		f->phase = 1;
		if ((e = kr_state_get(f, &f->fin)) < 0)
			return e;
	}
	if (f->phase == 1) {
		/* 2: dst's TCP must hold every moved byte before its psock goes. */
		if ((e = kr_written(f->dst, &w)) < 0)
			return e;
		if (w < f->base || w - f->base < f->fin.moved - f->fin.dropped)
			return -EAGAIN;
		kr_map_del(k->dst_fd, f->dst_key);
		f->phase = 2;
	}
	if (f->phase == 2) {
		/* 3: the spill, exactly `spilled` bytes (its psock backlog may
		 * still be delivering them). */
		if (f->fin.spilled && cap < f->fin.spilled)
			return -ENOBUFS;
		if (f->fin.spilled && !f->spill && !(f->spill = malloc(f->fin.spilled)))
			return -ENOMEM;
		while (f->nspill < f->fin.spilled) {
			ssize_t r = recv(f->sp[0], f->spill + f->nspill, f->fin.spilled - f->nspill,
					 MSG_DONTWAIT);

			if (r > 0)
				f->nspill += (size_t)r;
			else if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return -EAGAIN;
			else
				return r < 0 ? -errno : -EPIPE;
		}
		if (f->nspill) {
			memcpy(spill, f->spill, f->nspill);
			if (nspill)
				*nspill = f->nspill;
		}
		kr_flow_dismantle(f);
	}
	return f->fin.dropped ? -EPIPE : 0;
}

void krelay_flow_free(struct krelay_flow *f)
{
	if (!f)
		return;
	if (f->phase < 3)
		kr_flow_dismantle(f);
	free(f->spill);
	free(f);
}

/* ---- probe -------------------------------------------------------------------------- */

/* Read exactly n bytes within ms; 0 if they arrived and nothing more came. */
static int kr_expect(int fd, const char *want, size_t n, int ms)
{
	char buf[64];
	size_t got = 0;
	struct pollfd p = {.fd = fd, .events = POLLIN};

	while (got < n && poll(&p, 1, ms) > 0) {
		ssize_t r = recv(fd, buf + got, sizeof(buf) - got, MSG_DONTWAIT);

		if (r <= 0)
			return -EIO;
		got += (size_t)r;
	}
	if (got != n || memcmp(buf, want, n))
		return -EIO;
	return recv(fd, buf, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN ? 0 : -EIO;
}

static int kr_stop_wait(struct krelay_flow *f, void *spill, size_t cap, size_t *n)
{
	for (int i = 0; i < 500; i++) {
		int e = krelay_flow_stop(f, spill, cap, n);

		if (e != -EAGAIN)
			return e;
		usleep(1000);
	}
	return -ETIMEDOUT;
}

static void kr_why(struct krelay_caps *c, const char *what, int e)
{
	if (!c->why[0])
		/* Bounded parts, so the line fits c->why whole. */
		snprintf(c->why, sizeof(c->why), "%.30s: %.40s%s%.80s", what, strerror(-e),
			 kr_last_libbpf[0] ? ": " : "", kr_last_libbpf);
}

static void kr_close4(int *fds)
{
	for (int i = 0; i < 4; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* One probe relay from pair 1 (write fd[0], relay fd[1]) to pair 2 (relay
 * fd[2], read fd[3]): 10 bytes, whole-connection flow (the budgeted sockmap
 * flow is experimental and never chosen, so it is not probed). */
static int kr_probe_flow(struct krelay *k, int lfd, enum krelay_method m)
{
	static const char msg[] = "0123456789";
	struct krelay_flow_opts o = {.method = m, .budget = EG_KRELAY_UNLIMITED};
	struct krelay_flow *f = NULL;
	int fd[4] = {-1, -1, -1, -1}, e;
	size_t ns = 0;

	if ((e = kfeat_loopback_pair(lfd, &fd[0], &fd[1])) < 0 ||
	    (e = kfeat_loopback_pair(lfd, &fd[2], &fd[3])) < 0)
		goto out;
	if ((e = krelay_flow_start(k, m == KRELAY_SKMSG ? fd[0] : fd[1], fd[2], &o, &f)) < 0)
		goto out;
	if (send(fd[0], msg, 10, 0) != 10) {
		e = -errno;
		goto out;
	}
	if ((e = kr_expect(fd[3], msg, 10, 500)) < 0)
		goto out;
	if ((e = kr_stop_wait(f, NULL, 0, &ns)) == 0 && ns)
		e = -EIO;
out:
	krelay_flow_free(f);
	kr_close4(fd);
	return e;
}

static int kr_probe_splice(int lfd)
{
	struct krelay_pipe p;
	int fd[4] = {-1, -1, -1, -1}, e;

	if ((e = kfeat_loopback_pair(lfd, &fd[0], &fd[1])) < 0 ||
	    (e = kfeat_loopback_pair(lfd, &fd[2], &fd[3])) < 0) {
		kr_close4(fd);
		return e;
	}
	if ((e = krelay_pipe_open(&p, 0)) < 0) {
		kr_close4(fd);
		return e;
	}
	e = send(fd[0], "ping", 4, 0) == 4 ? 0 : -errno;
	for (int i = 0; !e && i < 100; i++) {
		ssize_t r = krelay_splice(&p, fd[1], fd[2], 4);

		if (r == 4)
			break;
		if (r < 0) {
			e = (int)r;
			break;
		}
		usleep(1000);
	}
	if (!e)
		e = kr_expect(fd[3], "ping", 4, 500);
	krelay_pipe_close(&p);
	kr_close4(fd);
	return e;
}

int krelay_probe(struct krelay_caps *c)
{
	struct krelay *k = NULL;
	int lfd, c1 = -1, a1 = -1, e;

	memset(c, 0, sizeof(*c));
	lfd = kfeat_loopback_listener(16);
	if (lfd < 0) {
		snprintf(c->why, sizeof(c->why), "loopback listener: %s", strerror(-lfd));
		snprintf(c->ktls_why, sizeof(c->ktls_why), "not probed (no loopback)");
		return 0;
	}
	e = kfeat_forced_off("splice") ? -EOPNOTSUPP : kr_probe_splice(lfd);
	c->splice = e == 0;
	if (e)
		snprintf(c->splice_why, sizeof(c->splice_why), "%s",
			 kfeat_forced_off("splice") ? KFEAT_FORCED_WHY : strerror(-e));

	/* kTLS: the ULP must attach to a connected TCP socket; ENOENT = no
	 * tls module (CONFIG_TLS off), which OpenSSL would hide by falling
	 * back to userspace crypto. */
	if (kfeat_loopback_pair(lfd, &c1, &a1) == 0) {
		if (setsockopt(c1, IPPROTO_TCP, TCP_ULP, "tls", 3) == 0)
			c->ktls = 1;
		else
			snprintf(c->ktls_why, sizeof(c->ktls_why),
				 "setsockopt(TCP_ULP, \"tls\"): %s", strerror(errno));
	} else {
		snprintf(c->ktls_why, sizeof(c->ktls_why), "no loopback pair");
	}
	if (c1 >= 0)
		close(c1);
	if (a1 >= 0)
		close(a1);

	if (kfeat_forced_off("sockmap")) {
		snprintf(c->why, sizeof(c->why), "%s", KFEAT_FORCED_WHY);
		close(lfd);
		return 0;
	}
	if ((e = krelay_open(&k)) < 0) {
		kr_why(c, "load relay.bpf", e);
		close(lfd);
		return 0;
	}
	libbpf_print_fn_t old = libbpf_set_print(kr_libbpf_print);
	kr_last_libbpf[0] = 0;
	if ((e = kr_probe_flow(k, lfd, KRELAY_SOCKMAP)) == 0)
		c->sockmap = 1;
	else
		kr_why(c, "sockmap relay", e);
	if ((e = kr_probe_flow(k, lfd, KRELAY_VERDICT)) == 0)
		c->verdict = 1;
	else
		kr_why(c, "sk_skb verdict relay", e);
	if ((e = kr_probe_flow(k, lfd, KRELAY_SKMSG)) == 0)
		c->skmsg = 1;
	else
		kr_why(c, "sk_msg relay", e);
	libbpf_set_print(old);
	krelay_close(k);
	close(lfd);
	return 0;
}
