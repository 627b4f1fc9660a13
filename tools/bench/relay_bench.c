/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * relay_bench.c - what moving a body through the gateway costs with each
 * relay method of user/kernel/krelay.c, on loopback TCP, in a network namespace of
 * its own.
 *
 * Three processes per run: a sender, a relay and a receiver (sender ->
 * relay -> receiver, two TCP connections). Methods:
 *   user       the relay read()s and write()s through a 64 KiB buffer
 *   splice     krelay_splice(): socket -> 64 KiB pipe -> socket
 *   splice-256k, splice-1m  the same with a bigger pipe (batching)
 *   sockmap    relay.bpf strparser + sk_skb verdict, whole connection
 *   verdict    relay.bpf sk_skb verdict without strparser, whole connection
 *   skmsg      sk_msg redirect of the sender's sendmsg() (a local sender
 *              only: a phone is never local, so it is shown, never chosen)
 *
 * Throughput: SIZE bytes (default 1 GiB) one way, RUNS times (default 3):
 * wall time, Gbit/s, the relay process's utime+stime and the SYSTEM-WIDE
 * busy CPU (/proc/stat, every state except idle and iowait) over the
 * transfer, per GB (10^9 bytes). The kernel methods do their work in
 * softirq and kernel workers that no process is charged for, so only the
 * system-wide figure compares methods; sender and receiver cost the same
 * in every method. Rounds interleave the methods; medians are reported,
 * with min-max of the system CPU.
 * Latency: 1 KiB ping-pong through the relay (both directions), RTTS round
 * trips (default 20000) after 200 warm-up ones, once per round: medians of
 * the rounds' p50 and p99, in us.
 * Handoffs (-H N): the experimental budgeted sockmap flow (strparser cuts at
 * a byte budget, krelay_flow_stop() hands the socket back with the spill),
 * used as the gateway would: N kernel handoffs, each bounded by a 1 s
 * timeout; stalls, errors and corrupted streams are counted.
 *
 * Built by `make` (build/bench/relay_bench; `make SAN=1`: build/asan/bench/).
 * Usage: build/bench/relay_bench [-s BYTES] [-r RUNS] [-n RTTS] [-m m1,m2,...]
 *                                 [-H HANDOFFS]
 *   (-m none -H 2000: handoffs only; -H 0: none)
 * Root only (BPF, a network namespace); exits 77 otherwise. Prints progress
 * on stderr and a markdown report on stdout. Default run: about a minute.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "krelay.h"
#include "log.h"

#define KIB	      1024u
#define MIB	      (1024u * 1024u)
#define RB_IO	      (256 * KIB) /* sender/receiver read and write size */
#define RB_BUF	      (64 * KIB)  /* user method buffer, as relay.c */
#define RB_MSG	      1024	  /* ping-pong message */
#define RB_WARM	      200	  /* ping-pong warm-up round trips */
#define RB_TIMEOUT_MS 120000	  /* one run, whatever happens */

struct rb_method {
	const char *name;
	enum krelay_method m;
	size_t pipe; /* splice: pipe size */
};

static const struct rb_method rb_methods[] = {
    {"user", KRELAY_USER, 0},
    {"splice", KRELAY_SPLICE, 64 * KIB},
    {"splice-256k", KRELAY_SPLICE, 256 * KIB},
    {"splice-1m", KRELAY_SPLICE, MIB},
    {"sockmap", KRELAY_SOCKMAP, 0},
    {"verdict", KRELAY_VERDICT, 0},
    {"skmsg", KRELAY_SKMSG, 0},
};
#define RB_NMETHODS (sizeof(rb_methods) / sizeof(rb_methods[0]))

/* What a relay or pinger child reports to the parent through a pipe. */
struct rb_report {
	int ok;
	double relay_cpu; /* relay: utime+stime over the transfer, s */
	double p50, p99;  /* pinger: round trip, us */
	uint64_t bytes;	  /* receiver: bytes received */
};

struct rb_result {
	double wall, sys_cpu, relay_cpu; /* s */
	int ok;
};

/* ---- small helpers ------------------------------------------------------------------ */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Busy CPU seconds of the whole machine so far: every /proc/stat state but
 * idle and iowait (guest time is already inside user). */
static double sys_busy_s(void)
{
	unsigned long long v[10] = {0};
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		return 0;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
	fclose(f);
	if (n < 8)
		return 0;
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;

	while (n) {
		ssize_t r = recv(fd, b, n, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

static int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Wait until fd's peer has shut its write side (a FIN arrived). */
static int wait_rdhup(int fd, int ms)
{
	struct pollfd pf = {.fd = fd, .events = POLLRDHUP};
	int n = poll(&pf, 1, ms);

	return n == 1 && (pf.revents & (POLLRDHUP | POLLHUP)) ? 0 : -1;
}

/* A connected loopback pair from listener lfd: *c connects, *a accepts. */
static int tcp_pair(int lfd, int *c, int *a)
{
	struct sockaddr_in sa;
	socklen_t l = sizeof(sa);

	*a = -1;
	if (getsockname(lfd, (struct sockaddr *)&sa, &l) < 0)
		return -1;
	*c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*c < 0 || connect(*c, (struct sockaddr *)&sa, l) < 0)
		return -1;
	*a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	return *a < 0 ? -1 : 0;
}

/* ---- the relay child ------------------------------------------------------------------ */

/* One direction of a userspace (user, splice) relay. */
struct rb_dir {
	int src, dst, done;
	struct krelay_pipe p; /* splice */
	uint8_t *buf;	      /* user */
	size_t off, len;
};

/*
 * Move what can move without blocking (bounded, so the other direction gets
 * its turn). Returns the poll events the direction waits for on src/dst
 * (*on_dst says which fd), 0 when done, -1 on error. EOF on src is passed
 * on as shutdown(dst, SHUT_WR), as relay.c does for a half-close.
 */
static int dir_step(struct rb_dir *d, int splice_mode, int *on_dst)
{
	for (int i = 0; i < 16 && !d->done; i++) {
		if (splice_mode) {
			ssize_t r = krelay_splice(&d->p, d->src, d->dst, 1u << 30);

			if (r == -1) {
				shutdown(d->dst, SHUT_WR);
				d->done = 1;
			} else if (r < 0) {
				return -1;
			} else if (r == 0) {
				*on_dst = d->p.held != 0;
				return *on_dst ? POLLOUT : POLLIN;
			}
			continue;
		}
		if (d->off < d->len) {
			ssize_t w = send(d->dst, d->buf + d->off, d->len - d->off,
					 MSG_NOSIGNAL | MSG_DONTWAIT);

			if (w < 0 && errno == EAGAIN) {
				*on_dst = 1;
				return POLLOUT;
			}
			if (w < 0)
				return -1;
			d->off += (size_t)w;
			continue;
		}
		ssize_t r = recv(d->src, d->buf, RB_BUF, MSG_DONTWAIT);

		if (r == 0) {
			shutdown(d->dst, SHUT_WR);
			d->done = 1;
		} else if (r < 0 && errno == EAGAIN) {
			*on_dst = 0;
			return POLLIN;
		} else if (r < 0) {
			return -1;
		} else {
			d->off = 0;
			d->len = (size_t)r;
		}
	}
	if (d->done)
		return 0;
	*on_dst = 0;
	return POLLIN | POLLOUT; /* more may move: poll returns at once */
}

/* A <-> B in userspace until both directions saw EOF. */
static int relay_user(int a, int b, int splice_mode, size_t pipe_size)
{
	struct rb_dir d[2] = {{.src = a, .dst = b}, {.src = b, .dst = a}};
	int e = 0;

	nonblock(a);
	nonblock(b);
	for (int i = 0; i < 2; i++) {
		if (splice_mode && krelay_pipe_open(&d[i].p, pipe_size) < 0)
			return -1;
		if (!splice_mode && !(d[i].buf = malloc(RB_BUF)))
			return -1;
	}
	while (!e && !(d[0].done && d[1].done)) {
		struct pollfd pf[2] = {{.fd = a}, {.fd = b}};
		int busy = 0;

		for (int i = 0; i < 2; i++) {
			int on_dst = 0, ev = d[i].done ? 0 : dir_step(&d[i], splice_mode, &on_dst);

			if (ev < 0)
				e = -1;
			else if (ev == (POLLIN | POLLOUT))
				busy = 1; /* more may move at once: poll without waiting */
			else if (ev)
				pf[(i == 0) == !on_dst ? 0 : 1].events |= (short)ev;
		}
		if (!e && !(d[0].done && d[1].done) && poll(pf, 2, busy ? 0 : RB_TIMEOUT_MS) < 0)
			e = -1;
		if (!busy && !e && !pf[0].revents && !pf[1].revents && !(d[0].done && d[1].done))
			e = -1; /* nothing moved for RB_TIMEOUT_MS */
	}
	for (int i = 0; i < 2; i++) {
		if (splice_mode)
			krelay_pipe_close(&d[i].p);
		free(d[i].buf);
	}
	return e;
}

/* Stop a whole-connection flow once its source said EOF, forward what is
 * left in the source's queue, pass the EOF on. */
static int kflow_finish(struct krelay_flow *f, int src_rx, int dst)
{
	char buf[4096];
	double end = now_s() + 10;
	ssize_t r;
	int e;

	if (wait_rdhup(src_rx, RB_TIMEOUT_MS) < 0) {
		fprintf(stderr, "relay_bench: no EOF from the source\n");
		return -1;
	}
	while ((e = krelay_flow_stop(f, NULL, 0, NULL)) == -EAGAIN && now_s() < end)
		usleep(100);
	if (e < 0) {
		struct krelay_status st;

		krelay_flow_status(f, &st);
		fprintf(stderr, "relay_bench: flow stop: %s (moved %llu, dropped %llu)\n",
			strerror(-e), (unsigned long long)st.moved, (unsigned long long)st.dropped);
		return -1;
	}
	while ((r = recv(src_rx, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		if (write_all(dst, buf, (size_t)r) < 0)
			return -1;
	shutdown(dst, SHUT_WR);
	return 0;
}

/* A kernel relay of a run: A -> B, and B -> A for the ping-pong. */
struct rb_kern {
	struct krelay *k;
	struct krelay_flow *up, *down;
};

/* skmsg redirects the local senders' sendmsg(): its sources are C and S;
 * the relay still learns their EOF from A and B, as the other methods do. */
static int kern_start(struct rb_kern *kr, enum krelay_method m, int both, const int *q)
{
	struct krelay_flow_opts o = {.method = m, .budget = EG_KRELAY_UNLIMITED};
	int e = krelay_open(&kr->k);

	if (e < 0) {
		fprintf(stderr, "relay_bench: krelay_open: %s\n", strerror(-e));
		return -1;
	}
	e = krelay_flow_start(kr->k, m == KRELAY_SKMSG ? q[0] : q[1], q[2], &o, &kr->up);
	if (!e && both)
		e = krelay_flow_start(kr->k, m == KRELAY_SKMSG ? q[3] : q[2], q[1], &o, &kr->down);
	if (e < 0)
		fprintf(stderr, "relay_bench: flow start: %s\n", strerror(-e));
	return e < 0 ? -1 : 0;
}

static int kern_finish(struct rb_kern *kr, const int *q)
{
	int e = kr->up ? kflow_finish(kr->up, q[1], q[2]) : -1;

	if (!e && kr->down)
		e = kflow_finish(kr->down, q[2], q[1]);
	return e;
}

static void kern_free(struct rb_kern *kr)
{
	krelay_flow_free(kr->up);
	krelay_flow_free(kr->down);
	krelay_close(kr->k);
}

/* ---- sender, receiver, pinger, echo ------------------------------------------------------ */

/* Byte o of the stream: position-dependent (a lost or repeated byte shows)
 * and periodic in RB_IO, so the sender fills its buffer once. */
static uint8_t stream_byte(uint64_t o)
{
	return (uint8_t)(((o >> 3) & 0xff) ^ ((o >> 11) & 0x7f) ^ (o & 7) * 37);
}

static int sender(int fd, uint64_t n)
{
	uint8_t *buf = malloc(RB_IO);
	uint64_t off = 0;
	int e = 0;

	if (!buf)
		return -1;
	for (size_t i = 0; i < RB_IO; i++)
		buf[i] = stream_byte(i);
	while (!e && off < n) {
		size_t k = n - off < RB_IO ? (size_t)(n - off) : RB_IO;

		e = write_all(fd, buf, k);
		off += k;
	}
	shutdown(fd, SHUT_WR); /* not close: the skmsg relay holds this socket too */
	free(buf);
	return e;
}

/* Reads to EOF; checks the first and last byte of every read (cheap, the
 * same for every method; the unit tests check every byte). */
static void receiver(int fd, struct rb_report *rep)
{
	uint8_t *buf = malloc(RB_IO);
	ssize_t r;

	rep->ok = buf != NULL;
	while (buf && (r = recv(fd, buf, RB_IO, 0)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || buf[0] != stream_byte(rep->bytes) ||
		    buf[r - 1] != stream_byte(rep->bytes + (uint64_t)r - 1)) {
			rep->ok = 0;
			break;
		}
		rep->bytes += (uint64_t)r;
	}
	free(buf);
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

static void pinger(int fd, int rtts, struct rb_report *rep)
{
	double *t = calloc((size_t)rtts, sizeof(*t));
	uint8_t msg[RB_MSG], back[RB_MSG];

	memset(msg, 'p', sizeof(msg));
	for (int i = -RB_WARM; t && i < rtts; i++) {
		double t0 = now_s();

		msg[i & 1023] = (uint8_t)i;
		if (write_all(fd, msg, sizeof(msg)) < 0 || read_all(fd, back, sizeof(back)) < 0 ||
		    memcmp(msg, back, sizeof(msg)))
			goto out;
		if (i >= 0)
			t[i] = (now_s() - t0) * 1e6;
	}
	if (t) {
		qsort(t, (size_t)rtts, sizeof(*t), cmp_double);
		rep->p50 = t[rtts / 2];
		rep->p99 = t[(size_t)rtts * 99 / 100];
		rep->ok = 1;
	}
out:
	shutdown(fd, SHUT_WR);
	free(t);
}

static void echo(int fd)
{
	uint8_t msg[RB_MSG];

	while (read_all(fd, msg, sizeof(msg)) == 0)
		if (write_all(fd, msg, sizeof(msg)) < 0)
			break;
	shutdown(fd, SHUT_WR);
}

/* ---- one run ----------------------------------------------------------------------------- */

struct rb_run {
	const struct rb_method *m;
	int pingpong; /* 0: size bytes one way; 1: ping-pong */
	uint64_t size;
	int rtts;
	int lfd;
};

/* What each child uses; the child closes every other descriptor of the run. */
struct rb_child {
	const struct rb_run *r;
	int q[4];  /* C (sender), A, B (relay), S (receiver) */
	int ready; /* relay -> parent: set up */
	int go;	   /* parent -> sender: start */
	int rep;   /* child -> parent: struct rb_report */
};

static int send_report(int fd, const struct rb_report *rep)
{
	return write(fd, rep, sizeof(*rep)) == (ssize_t)sizeof(*rep) ? 0 : -1;
}

static int child_relay(const struct rb_child *ch)
{
	const struct rb_method *m = ch->r->m;
	struct rb_report rep = {0};
	struct rb_kern kr = {0};
	int user = m->m == KRELAY_USER || m->m == KRELAY_SPLICE, e = 0;
	double c0;
	char x = 1;

	/* The kernel methods set up (BPF load, flows) before the clock starts. */
	if (!user)
		e = kern_start(&kr, m->m, ch->r->pingpong, ch->q);
	if (write(ch->ready, &x, 1) != 1)
		e = -1;
	c0 = self_cpu_s();
	if (!e)
		e = user ? relay_user(ch->q[1], ch->q[2], m->m == KRELAY_SPLICE, m->pipe)
			 : kern_finish(&kr, ch->q);
	rep.relay_cpu = self_cpu_s() - c0;
	rep.ok = e == 0;
	if (!user)
		kern_free(&kr);
	return send_report(ch->rep, &rep) < 0 || e < 0 ? -1 : 0;
}

static int child_sender(const struct rb_child *ch)
{
	struct rb_report rep = {0};
	char x;

	if (read(ch->go, &x, 1) != 1)
		return -1;
	if (!ch->r->pingpong)
		return sender(ch->q[0], ch->r->size);
	pinger(ch->q[0], ch->r->rtts, &rep);
	return send_report(ch->rep, &rep) < 0 || !rep.ok ? -1 : 0;
}

static int child_receiver(const struct rb_child *ch)
{
	struct rb_report rep = {0};

	if (ch->r->pingpong) {
		echo(ch->q[3]);
		return 0;
	}
	receiver(ch->q[3], &rep);
	return send_report(ch->rep, &rep);
}

enum { RB_RELAY, RB_SENDER, RB_RECEIVER };

/* Fork one child: it keeps the descriptors in keep[] (-1: none), closes the rest. */
static pid_t spawn(int who, const struct rb_child *ch, const int *all, int n, const int *keep)
{
	pid_t p = fork();

	if (p != 0)
		return p;
	for (int i = 0; i < n; i++) {
		int k = 0;

		for (int j = 0; j < 6; j++)
			k |= all[i] == keep[j];
		if (!k)
			close(all[i]);
	}
	alarm(RB_TIMEOUT_MS / 1000 + 10);
	switch (who) {
	case RB_RELAY:
		_exit(child_relay(ch) < 0 ? 1 : 0);
	case RB_SENDER:
		_exit(child_sender(ch) < 0 ? 1 : 0);
	default:
		_exit(child_receiver(ch) < 0 ? 1 : 0);
	}
}

static int wait_read(int fd, void *p, size_t n, int ms)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};

	if (poll(&pf, 1, ms) != 1)
		return -1;
	return read(fd, p, n) == (ssize_t)n ? 0 : -1;
}

/* Reap the children, killing any still running after a grace period. */
static void reap(const pid_t *pids, int n)
{
	for (int i = 0; i < n; i++) {
		if (pids[i] <= 0)
			continue;
		for (int t = 0; t < 50 && waitpid(pids[i], NULL, WNOHANG) == 0; t++)
			usleep(20000);
		if (kill(pids[i], 0) == 0 && waitpid(pids[i], NULL, WNOHANG) == 0) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
		}
	}
}

/* One transfer or ping-pong; res (throughput) or lat (ping-pong) filled. */
static int run_once(const struct rb_run *r, struct rb_result *res, struct rb_report *lat)
{
	int rp[3][2], ready[2], go[2], all[16], n = 0, e = -1;
	struct rb_child ch = {.r = r, .q = {-1, -1, -1, -1}};
	struct rb_report relay = {0}, end = {0};
	pid_t pids[3] = {0};
	double t0, c0;
	char x = 1;

	memset(res, 0, sizeof(*res));
	for (int i = 0; i < 3; i++)
		if (pipe2(rp[i], O_CLOEXEC) < 0)
			return -1;
	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)
		return -1;
	if (tcp_pair(r->lfd, &ch.q[0], &ch.q[1]) < 0 || tcp_pair(r->lfd, &ch.q[2], &ch.q[3]) < 0)
		return -1;
	if (r->pingpong)
		for (int i = 0; i < 4; i++)
			nodelay(ch.q[i]);
	for (int i = 0; i < 4; i++)
		all[n++] = ch.q[i];
	for (int i = 0; i < 3; i++) {
		all[n++] = rp[i][0];
		all[n++] = rp[i][1];
	}
	all[n++] = ready[0], all[n++] = ready[1], all[n++] = go[0], all[n++] = go[1];

	int skmsg = r->m->m == KRELAY_SKMSG;
	int k_relay[6] = {
	    ch.q[1], ch.q[2], ready[1], rp[0][1], skmsg ? ch.q[0] : -1, skmsg ? ch.q[3] : -1};
	int k_send[6] = {ch.q[0], go[0], rp[1][1], -1, -1, -1};
	int k_recv[6] = {ch.q[3], rp[2][1], -1, -1, -1, -1};

	ch.ready = ready[1];
	ch.go = go[0];
	ch.rep = rp[0][1];
	pids[0] = spawn(RB_RELAY, &ch, all, n, k_relay);
	ch.rep = rp[1][1];
	pids[1] = spawn(RB_SENDER, &ch, all, n, k_send);
	ch.rep = rp[2][1];
	pids[2] = spawn(RB_RECEIVER, &ch, all, n, k_recv);
	/* The parent keeps only its ends of the pipes: a socket's last close
	 * must be its owner's, or no EOF would travel. */
	for (int i = 0; i < n; i++)
		if (all[i] != ready[0] && all[i] != go[1] && all[i] != rp[0][0] &&
		    all[i] != rp[1][0] && all[i] != rp[2][0])
			close(all[i]);
	if (pids[0] < 0 || pids[1] < 0 || pids[2] < 0 || wait_read(ready[0], &x, 1, 10000) < 0)
		goto out;
	t0 = now_s();
	c0 = sys_busy_s();
	if (write(go[1], &x, 1) != 1)
		goto out;
	/* The run ends when the receiver saw EOF (throughput) or the pinger is done. */
	if (wait_read(r->pingpong ? rp[1][0] : rp[2][0], &end, sizeof(end), RB_TIMEOUT_MS) < 0)
		goto out;
	res->wall = now_s() - t0;
	res->sys_cpu = sys_busy_s() - c0;
	if (wait_read(rp[0][0], &relay, sizeof(relay), 20000) < 0)
		goto out;
	res->relay_cpu = relay.relay_cpu;
	res->ok = relay.ok && end.ok && (r->pingpong || end.bytes == r->size);
	if (lat)
		*lat = end;
	e = res->ok ? 0 : -1;
out:
	reap(pids, 3);
	close(ready[0]);
	close(go[1]);
	for (int i = 0; i < 3; i++)
		close(rp[i][0]);
	return e;
}

/* ---- handoffs: the budgeted sockmap flow as the gateway would use it ------------------- */

#define HO_CYCLES  20 /* request/response cycles per connection */
#define HO_WAIT_MS 1000

struct ho_stats {
	int handoffs, ok;
	int stall; /* the budget's DONE event did not come within HO_WAIT_MS */
	int stop;  /* krelay_flow_stop() did not finish within HO_WAIT_MS, or failed */
	int count; /* moved != budget, or the spill did not match its count */
	int lost;  /* the stream broke after a handoff: bytes missing or wrong */
	int start; /* krelay_flow_start() failed */
};

struct ho_plan {
	uint64_t head[HO_CYCLES], body[HO_CYCLES], resp[HO_CYCLES];
	int pipelined;
	int resp_ok; /* responses the client has read */
	int abort;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

struct ho_side {
	struct ho_plan *p;
	int fd;
	uint64_t got; /* bytes read and checked */
	int bad;      /* a byte was wrong or missing */
};

/* Byte o of stream seed: a wrong, lost or repeated byte shows at once. */
static uint8_t ho_byte(uint64_t seed, uint64_t o)
{
	uint64_t x = (o >> 3) * 0x9E3779B97F4A7C15ull ^ seed;

	x ^= x >> 29;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 32;
	return (uint8_t)(x >> ((o & 7) * 8));
}

static void ho_fill(uint8_t *b, uint64_t seed, uint64_t off, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = ho_byte(seed, off + i);
}

static int ho_check(const uint8_t *b, uint64_t seed, uint64_t off, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != ho_byte(seed, off + i))
			return -1;
	return 0;
}

/* Read up to n bytes within ms; returns what arrived (0: EOF, error or timeout). */
static size_t ho_read(int fd, uint8_t *b, size_t n, int ms)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	ssize_t r;

	if (poll(&pf, 1, ms) != 1)
		return 0;
	r = recv(fd, b, n, MSG_DONTWAIT);
	return r > 0 ? (size_t)r : 0;
}

/* Read and check exactly n bytes of stream seed; -1 if they do not come. */
static int ho_expect(struct ho_side *s, uint8_t *buf, uint64_t seed, uint64_t n)
{
	for (uint64_t done = 0; done < n;) {
		size_t want = n - done < MIB ? (size_t)(n - done) : MIB;
		size_t k = ho_read(s->fd, buf, want, 5000);

		if (!k || ho_check(buf, seed, s->got, k) < 0) {
			s->bad = 1;
			return -1;
		}
		__atomic_store_n(&s->got, s->got + k, __ATOMIC_RELAXED);
		done += k;
	}
	return 0;
}

/* Responses the client has read, and request bytes the server has read. */
static int ho_progress(struct ho_plan *p, const struct ho_side *srv, uint64_t *got)
{
	int n;

	pthread_mutex_lock(&p->mu);
	n = p->resp_ok;
	pthread_mutex_unlock(&p->mu);
	*got = __atomic_load_n(&srv->got, __ATOMIC_RELAXED);
	return n;
}

static int ho_send(int fd, uint8_t *buf, uint64_t seed, uint64_t *off, uint64_t n)
{
	for (uint64_t done = 0; done < n;) {
		size_t k = n - done < MIB ? (size_t)(n - done) : MIB;

		ho_fill(buf, seed, *off, k);
		if (write_all(fd, buf, k) < 0)
			return -1;
		*off += k;
		done += k;
	}
	return 0;
}

static void *ho_client_tx(void *arg)
{
	struct ho_side *s = arg;
	struct ho_plan *p = s->p;
	uint8_t *buf = malloc(MIB);
	uint64_t off = 0;

	for (int i = 0; buf && i < HO_CYCLES; i++) {
		pthread_mutex_lock(&p->mu);
		while (!p->pipelined && p->resp_ok < i && !p->abort)
			pthread_cond_wait(&p->cv, &p->mu);
		int stop = p->abort;

		pthread_mutex_unlock(&p->mu);
		if (stop || ho_send(s->fd, buf, 101, &off, p->head[i] + p->body[i]) < 0)
			break;
	}
	free(buf);
	return NULL;
}

static void *ho_client_rx(void *arg)
{
	struct ho_side *s = arg;
	struct ho_plan *p = s->p;
	uint8_t *buf = malloc(MIB);

	for (int i = 0; buf && i < HO_CYCLES; i++) {
		if (ho_expect(s, buf, 202, p->resp[i]) < 0)
			break;
		pthread_mutex_lock(&p->mu);
		p->resp_ok = i + 1;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
	free(buf);
	return NULL;
}

static void *ho_server(void *arg)
{
	struct ho_side *s = arg;
	struct ho_plan *p = s->p;
	uint8_t *buf = malloc(MIB);
	uint64_t roff = 0;

	for (int i = 0; buf && i < HO_CYCLES; i++)
		if (ho_expect(s, buf, 101, p->head[i] + p->body[i]) < 0 ||
		    ho_send(s->fd, buf, 202, &roff, p->resp[i]) < 0)
			break;
	free(buf);
	return NULL;
}

struct ho_ev {
	uint64_t src, budget;
	int done;
};

static void ho_on_event(void *arg, const struct eg_krelay_event *ev)
{
	struct ho_ev *g = arg;

	if (ev->src == g->src && ev->kind == EG_KRELAY_EV_DONE && ev->moved == g->budget)
		g->done = 1;
}

/* One handoff: budget bytes src -> dst in the kernel; what arrived past the
 * budget is appended to pend. 0, or -1 with the failure counted. */
static int ho_kernel(struct krelay *k, int src, int dst, uint64_t budget, uint8_t *pend,
		     size_t *npend, size_t cap, struct ho_stats *st)
{
	struct krelay_flow_opts o = {.method = KRELAY_SOCKMAP, .budget = budget};
	struct pollfd pf = {.fd = krelay_event_fd(k), .events = POLLIN};
	struct ho_ev g = {.budget = budget};
	struct krelay_status s;
	struct krelay_flow *f;
	double end = now_s() + HO_WAIT_MS / 1e3;
	size_t ns = 0;
	int e;

	st->handoffs++;
	if (krelay_flow_start(k, src, dst, &o, &f) < 0) {
		st->start++;
		return -1;
	}
	g.src = krelay_flow_src_cookie(f);
	while (!g.done && now_s() < end) {
		poll(&pf, 1, 10);
		krelay_events(k, ho_on_event, &g);
	}
	if (!g.done) {
		st->stall++;
		krelay_flow_free(f);
		return -1;
	}
	end = now_s() + HO_WAIT_MS / 1e3;
	while ((e = krelay_flow_stop(f, pend + *npend, cap - *npend, &ns)) == -EAGAIN &&
	       now_s() < end)
		usleep(100);
	if (e < 0) {
		st->stop++;
		krelay_flow_free(f);
		return -1;
	}
	krelay_flow_status(f, &s);
	krelay_flow_free(f);
	if (s.moved != budget || s.left || s.spilled != ns) {
		st->count++;
		return -1;
	}
	*npend += ns;
	return 0;
}

/* Read from fd into pend until it holds need bytes (5 s at most). */
static int ho_fill_pend(int fd, uint8_t *pend, size_t *npend, size_t cap, size_t need)
{
	double end = now_s() + 5;

	while (*npend < need && now_s() < end) {
		size_t room = cap - *npend < 16 * KIB ? cap - *npend : 16 * KIB;

		*npend += ho_read(fd, pend + *npend, room, 100);
	}
	return *npend >= need ? 0 : -1;
}

static void ho_consume(uint8_t *pend, size_t *npend, size_t n)
{
	memmove(pend, pend + n, *npend - n);
	*npend -= n;
}

static void ho_plan_make(struct ho_plan *p, uint64_t seed)
{
	static const uint64_t bodies[] = {0, 1, 100, 16 * KIB, 64 * KIB, MIB};
	uint64_t r = seed;

	for (int i = 0; i < HO_CYCLES; i++) {
		r = r * 6364136223846793005ull + 1442695040888963407ull;
		p->head[i] = 40 + (r >> 33) % 600;
		p->body[i] = i % 7 == 6 ? (r >> 20) % (3 * MIB) : bodies[(r >> 40) % 6];
		p->resp[i] = 1 + (r >> 13) % (300 * KIB);
	}
}

/* The relay's side of one cycle: head in userspace, the body's unbuffered
 * rest and the whole response in the kernel. */
static int ho_cycle(struct krelay *k, const int *q, const struct ho_plan *p, int i, uint8_t *pend,
		    size_t *npend, size_t cap, struct ho_stats *st)
{
	uint64_t have;
	size_t none = 0;

	if (ho_fill_pend(q[1], pend, npend, cap, p->head[i]) < 0 ||
	    write_all(q[2], pend, p->head[i]) < 0)
		return -2;
	ho_consume(pend, npend, p->head[i]);
	have = *npend < p->body[i] ? *npend : p->body[i];
	if (write_all(q[2], pend, have) < 0)
		return -2;
	ho_consume(pend, npend, have);
	if (p->body[i] > have && ho_kernel(k, q[1], q[2], p->body[i] - have, pend, npend, cap, st))
		return -1;
	return ho_kernel(k, q[2], q[1], p->resp[i], pend + cap, &none, 0, st);
}

/* One connection of HO_CYCLES cycles; stops at the first failure. */
static void ho_session(struct krelay *k, int lfd, uint64_t seed, int limit, struct ho_stats *st)
{
	struct ho_plan p = {.pipelined = (int)(seed & 1)};
	struct ho_side ctx = {.p = &p}, crx = {.p = &p}, srv = {.p = &p};
	size_t cap = 64 * MIB, npend = 0;
	uint8_t *pend = malloc(cap);
	int q[4] = {-1, -1, -1, -1}, e = 0, before = st->handoffs, ncyc = 0;
	uint64_t want = 0, got = 0;
	pthread_t t[3];

	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	ho_plan_make(&p, seed);
	if (!pend || tcp_pair(lfd, &q[0], &q[1]) < 0 || tcp_pair(lfd, &q[2], &q[3]) < 0) {
		fprintf(stderr, "relay_bench: handoff setup failed\n");
		st->start++;
		goto out;
	}
	ctx.fd = crx.fd = q[0];
	srv.fd = q[3];
	pthread_create(&t[0], NULL, ho_client_tx, &ctx);
	pthread_create(&t[1], NULL, ho_client_rx, &crx);
	pthread_create(&t[2], NULL, ho_server, &srv);
	while (!e && ncyc < HO_CYCLES && st->handoffs - before < limit)
		if (!(e = ho_cycle(k, q, &p, ncyc, pend, &npend, cap, st)))
			ncyc++;
	/* Every byte relayed so far must reach its reader, exactly. */
	for (int i = 0; i < ncyc; i++)
		want += p.head[i] + p.body[i];
	for (int w = 0; !e && w < 5000 && (ho_progress(&p, &srv, &got) < ncyc || got < want); w++)
		usleep(1000);
	if (!e && (ho_progress(&p, &srv, &got) < ncyc || got < want || crx.bad || srv.bad))
		e = -2;
	/* Wake everyone: blocked reads return once the sockets are shut. */
	pthread_mutex_lock(&p.mu);
	p.abort = 1;
	pthread_cond_broadcast(&p.cv);
	pthread_mutex_unlock(&p.mu);
	for (int i = 0; i < 4; i++)
		shutdown(q[i], SHUT_RDWR);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	if (e == -2)
		st->lost++;
	else if (!e)
		st->ok += st->handoffs - before;
out:
	for (int i = 0; i < 4; i++)
		if (q[i] >= 0)
			close(q[i]);
	free(pend);
	pthread_mutex_destroy(&p.mu);
	pthread_cond_destroy(&p.cv);
}

static void handoffs(int lfd, int n, struct ho_stats *st)
{
	struct krelay *k = NULL;
	double end = now_s() + 120;
	int e = krelay_open(&k);

	memset(st, 0, sizeof(*st));
	if (e < 0) {
		fprintf(stderr, "relay_bench: krelay_open: %s\n", strerror(-e));
		return;
	}
	for (uint64_t seed = 1; st->handoffs < n && now_s() < end; seed++)
		ho_session(k, lfd, seed, n - st->handoffs, st);
	krelay_close(k);
}

/* ---- report ------------------------------------------------------------------------------- */

struct rb_row {
	const struct rb_method *m;
	int ok, runs;
	double wall[16], sys[16], relay[16];
	int lat_ok, lat_runs;
	double p50[16], p99[16];
};

static double median(double *v, int n)
{
	double t[16];

	memcpy(t, v, sizeof(double) * (size_t)n);
	qsort(t, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static double minmax(const double *v, int n, int max)
{
	double r = v[0];

	for (int i = 1; i < n; i++)
		r = max ? (v[i] > r ? v[i] : r) : (v[i] < r ? v[i] : r);
	return r;
}

static void cpu_model(char *out, size_t n)
{
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(out, n, "unknown");
	while (f && fgets(line, sizeof(line), f)) {
		char *c = strchr(line, ':');

		if (!strncmp(line, "model name", 10) && c) {
			snprintf(out, n, "%s", c + 2);
			out[strcspn(out, "\n")] = 0;
			break;
		}
	}
	if (f)
		fclose(f);
}

static void report(const struct rb_row *rows, int nrows, uint64_t size, int rtts,
		   const struct ho_stats *ho, int nho, const struct krelay_caps *caps)
{
	struct utsname u;
	char cpu[128], date[32];
	time_t t = time(NULL);
	double gb = (double)size / 1e9;

	uname(&u);
	cpu_model(cpu, sizeof(cpu));
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&t));
	printf("date: %s; kernel: %s; CPU: %s, %ld cores online\n\n", date, u.release, cpu,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("probe: splice=%d sockmap=%d verdict=%d skmsg=%d ktls=%d (%s)\n\n", caps->splice,
	       caps->sockmap, caps->verdict, caps->skmsg, caps->ktls, caps->ktls_why);
	printf("%.2f GiB one way per run and a ping-pong of %d x %d B round trips, %d rounds "
	       "interleaving the methods; medians over the rounds\n\n",
	       (double)size / (1 << 30), rtts, RB_MSG, nrows ? rows[0].runs : 0);
	printf("| method | wall s | Gbit/s | relay process CPU s/GB | system CPU s/GB (min-max) "
	       "| RTT p50 us | RTT p99 us |\n|---|---|---|---|---|---|---|\n");
	for (int i = 0; i < nrows; i++) {
		const struct rb_row *r = &rows[i];

		if (!r->ok) {
			printf("| %s | failed | | | | | |\n", r->m->name);
			continue;
		}
		double w = median((double *)r->wall, r->runs);

		printf("| %s | %.2f | %.2f | %.3f | %.3f (%.3f-%.3f) |", r->m->name, w,
		       (double)size * 8 / w / 1e9, median((double *)r->relay, r->runs) / gb,
		       median((double *)r->sys, r->runs) / gb, minmax(r->sys, r->runs, 0) / gb,
		       minmax(r->sys, r->runs, 1) / gb);
		if (r->lat_ok)
			printf(" %.1f | %.1f |\n", median((double *)r->p50, r->lat_runs),
			       median((double *)r->p99, r->lat_runs));
		else
			printf(" failed | |\n");
	}
	if (nho) {
		int fail = ho->stall + ho->stop + ho->count + ho->lost + ho->start;

		printf(
		    "\nbudgeted sockmap handoffs: %d attempted, %d failed (%.1f %%): "
		    "%d stalls (no DONE within %d ms), %d stop timeouts/errors, %d wrong counts, "
		    "%d broken streams, %d start errors\n",
		    ho->handoffs, fail, ho->handoffs ? 100.0 * fail / ho->handoffs : 0, ho->stall,
		    HO_WAIT_MS, ho->stop, ho->count, ho->lost, ho->start);
	}
}

/* ---- main ---------------------------------------------------------------------------------- */

static int lo_up(void)
{
	struct ifreq ifr = {0};
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), e = 0;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		e = -1;
	ifr.ifr_flags |= IFF_UP;
	if (!e && ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		e = -1;
	if (fd >= 0)
		close(fd);
	return e;
}

static int listener(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
		return -1;
	return fd;
}

static int want_method(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; p && *p;) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);

		if (l == n && !strncmp(p, name, n))
			return 1;
		p = c ? c + 1 : NULL;
	}
	return !list;
}

/* Round r of one method: a transfer, or (pingpong) a ping-pong. */
static void measure(struct rb_row *row, int lfd, uint64_t size, int r, int rtts, int pingpong)
{
	struct rb_run run = {.m = row->m, .size = size, .rtts = rtts, .lfd = lfd};
	struct rb_result res;
	struct rb_report lat = {0};

	if (pingpong) {
		if (r && !row->lat_ok)
			return;
		run.pingpong = 1;
		row->lat_ok = run_once(&run, &res, &lat) == 0;
		row->p50[r] = lat.p50;
		row->p99[r] = lat.p99;
		row->lat_runs = r + 1;
		fprintf(stderr, "  %-11s ping-pong %d: %s p50 %.1f us p99 %.1f us\n", row->m->name,
			r + 1, row->lat_ok ? "ok" : "FAILED", lat.p50, lat.p99);
		return;
	}
	if (!row->ok)
		return;
	row->ok = run_once(&run, &res, NULL) == 0;
	row->wall[r] = res.wall;
	row->sys[r] = res.sys_cpu;
	row->relay[r] = res.relay_cpu;
	row->runs = r + 1;
	fprintf(stderr, "  %-11s run %d: %s %.2f s, system %.2f s, relay %.2f s\n", row->m->name,
		r + 1, row->ok ? "ok" : "FAILED", res.wall, res.sys_cpu, res.relay_cpu);
}

int main(int argc, char **argv)
{
	uint64_t size = 1ull << 30;
	int runs = 3, rtts = 20000, nho = 200, lfd, nrows = 0, opt;
	const char *list = NULL;
	struct rb_row rows[RB_NMETHODS];
	struct krelay_caps caps;
	struct ho_stats ho = {0};

	while ((opt = getopt(argc, argv, "s:r:n:m:H:")) != -1) {
		switch (opt) {
		case 's':
			size = strtoull(optarg, NULL, 0);
			break;
		case 'r':
			runs = atoi(optarg);
			break;
		case 'n':
			rtts = atoi(optarg);
			break;
		case 'm':
			list = optarg;
			break;
		case 'H':
			nho = atoi(optarg);
			break;
		default:
			fprintf(stderr,
				"usage: %s [-s BYTES] [-r RUNS] [-n RTTS] [-m m1,m2] "
				"[-H HANDOFFS]\n",
				argv[0]);
			return 2;
		}
	}
	if (runs < 1 || runs > 16 || rtts < 0 || nho < 0 || !size) {
		fprintf(stderr, "relay_bench: runs 1..16, rtts >= 0, handoffs >= 0, size > 0\n");
		return 2;
	}
	if (geteuid() != 0) {
		printf("SKIP: relay_bench needs root (BPF, a network namespace)\n");
		return 77;
	}
	/* A namespace of our own: ports and traffic touch no one else. */
	if (unshare(CLONE_NEWNET) < 0 || lo_up() < 0 || (lfd = listener()) < 0) {
		fprintf(stderr, "relay_bench: network namespace: %s\n", strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_WARN);
	krelay_probe(&caps);
	for (size_t i = 0; i < RB_NMETHODS; i++) {
		if (!want_method(list, rb_methods[i].name))
			continue;
		memset(&rows[nrows], 0, sizeof(rows[nrows]));
		rows[nrows].m = &rb_methods[i];
		rows[nrows++].ok = 1;
	}
	/* Rounds interleave the methods, so a drift in the machine's state
	 * touches all of them alike. */
	for (int r = 0; r < runs; r++) {
		for (int i = 0; i < nrows; i++)
			measure(&rows[i], lfd, size, r, rtts, 0);
		for (int i = 0; rtts > 0 && i < nrows; i++)
			measure(&rows[i], lfd, size, r, rtts, 1);
	}
	if (nho) {
		fprintf(stderr, "  handoffs: %d budgeted sockmap flows...\n", nho);
		handoffs(lfd, nho, &ho);
	}
	if (nrows || nho)
		report(rows, nrows, size, rtts, &ho, nho, &caps);
	close(lfd);
	return 0;
}
