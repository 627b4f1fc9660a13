/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_bpf_netns.c - the fast path on real sockets, without the daemon.
 *
 *  verdicts   two network namespaces joined by a veth pair (198.18.0.0/24),
 *             xdp_gate attached natively on the gateway side (the client side
 *             runs an XDP_PASS program, which native XDP_TX on veth needs).
 *             Two connections from the SAME client address: a DROP verdict
 *             stalls A while B keeps talking, deleting it lets A recover on
 *             retransmit; a RST verdict resets A's client (ECONNRESET).
 *  reuseport  three SO_REUSEPORT listeners on loopback: new connections go
 *             to the least loaded accepting worker, spread over ties, and
 *             fall back to the kernel when no worker is eligible; with two
 *             listen addresses (two groups) both steer by the same slots.
 *
 * One process: sockets are created inside a namespace with setns() and keep
 * it. Pins go to a unique /sys/fs/bpf/easgate-test-<pid> and are removed.
 *
 * `test_bpf_netns --helper open|check|detach ...` is a driver for
 * tests/bpf/test_bpf_pins.sh (see helper_main below).
 *
 * Needs root; exits 77 otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "testlib.h"
#include "bpfmaps.h"
#include "log.h"
#include "bench_floor.skel.h"

#define GW_ADDR "198.18.0.1"
#define CL_ADDR "198.18.0.2"
#define PORT	4443

/* ---- environment ------------------------------------------------------------------ */

static struct {
	char ns_gw[32], ns_cl[32]; /* network namespace names */
	char if_gw[16], if_cl[16]; /* veth ends */
	char pin_dir[64];
	int orig_ns; /* fd of the namespace we started in */
	int ready;
} E;

__attribute__((format(printf, 1, 2))) static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void ns_enter(const char *name)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(setns(fd, CLONE_NEWNET), 0);
	close(fd);
}

static void ns_back(void)
{
	assert_int_equal(setns(E.orig_ns, CLONE_NEWNET), 0);
}

static void env_cleanup(void)
{
	if (!E.ready)
		return;
	E.ready = 0;
	setns(E.orig_ns, CLONE_NEWNET);
	sh("ip netns del %s 2>/dev/null", E.ns_gw);
	sh("ip netns del %s 2>/dev/null", E.ns_cl);
	bpfmaps_detach_all(E.pin_dir);
}

static void on_signal(int sig)
{
	env_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

static int env_setup(void **state)
{
	int pid = (int)getpid();

	(void)state;
	snprintf(E.ns_gw, sizeof(E.ns_gw), "egt-gw-%d", pid);
	snprintf(E.ns_cl, sizeof(E.ns_cl), "egt-cl-%d", pid);
	snprintf(E.if_gw, sizeof(E.if_gw), "egg%d", pid);
	snprintf(E.if_cl, sizeof(E.if_cl), "egc%d", pid);
	snprintf(E.pin_dir, sizeof(E.pin_dir), "/sys/fs/bpf/easgate-test-%d", pid);
	E.ready = 1;
	if (sh("ip netns add %s && ip netns add %s", E.ns_gw, E.ns_cl) ||
	    sh("ip link add %s netns %s type veth peer name %s netns %s", E.if_gw, E.ns_gw, E.if_cl,
	       E.ns_cl) ||
	    sh("ip -n %s addr add %s/24 dev %s && ip -n %s link set %s up && ip -n %s link set lo "
	       "up",
	       E.ns_gw, GW_ADDR, E.if_gw, E.ns_gw, E.if_gw, E.ns_gw) ||
	    sh("ip -n %s addr add %s/24 dev %s && ip -n %s link set %s up && ip -n %s link set lo "
	       "up",
	       E.ns_cl, CL_ADDR, E.if_cl, E.ns_cl, E.if_cl, E.ns_cl)) {
		env_cleanup();
		return -1;
	}
	return 0;
}

static int env_teardown(void **state)
{
	(void)state;
	env_cleanup();
	return 0;
}

/* ---- socket helpers ------------------------------------------------------------------- */

static int wait_fd(int fd, short events, int ms)
{
	struct pollfd p = {.fd = fd, .events = events};

	return poll(&p, 1, ms) == 1 ? p.revents : 0;
}

static struct sockaddr_in sin4(const char *addr, uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};

	assert_int_equal(inet_pton(AF_INET, addr, &a.sin_addr), 1);
	return a;
}

static int tcp_listen(const char *addr, uint16_t port, int reuseport)
{
	struct sockaddr_in a = sin4(addr, port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport)
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 128), 0);
	return fd;
}

static int tcp_connect(const char *addr, uint16_t port)
{
	struct sockaddr_in a = sin4(addr, port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	assert_true(fd >= 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static uint16_t local_port(int fd)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	return ntohs(a.sin_port);
}

static uint16_t peer_port(int fd)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);

	assert_int_equal(getpeername(fd, (struct sockaddr *)&a, &l), 0);
	return ntohs(a.sin_port);
}

/* Accept the connection whose peer port is cport. */
static int accept_from(int lfd, uint16_t cport, int *other, uint16_t oport)
{
	int got = -1;

	for (int i = 0; i < 2; i++) {
		int fd;

		assert_true(wait_fd(lfd, POLLIN, 2000) & POLLIN);
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		assert_true(fd >= 0);
		if (peer_port(fd) == cport)
			got = fd;
		else if (peer_port(fd) == oport)
			*other = fd;
	}
	assert_true(got >= 0 && *other >= 0);
	return got;
}

/* Send msg on `from`; it must arrive on `to` within ms. */
static void xfer(int from, int to, const char *msg, int ms)
{
	char buf[64];
	size_t n = strlen(msg);

	assert_int_equal(send(from, msg, n, MSG_NOSIGNAL), (ssize_t)n);
	assert_true(wait_fd(to, POLLIN, ms) & POLLIN);
	assert_int_equal(recv(to, buf, sizeof(buf), 0), (ssize_t)n);
	assert_memory_equal(buf, msg, n);
}

static void flow_key_of(int srv_fd, struct eg_flow_key *k)
{
	struct sockaddr_storage peer, local;
	socklen_t pl = sizeof(peer), ll = sizeof(local);

	assert_int_equal(getpeername(srv_fd, (struct sockaddr *)&peer, &pl), 0);
	assert_int_equal(getsockname(srv_fd, (struct sockaddr *)&local, &ll), 0);
	eg_flow_key_from_addrs(k, (struct sockaddr *)&peer, (struct sockaddr *)&local);
}

static uint64_t stat_packets(struct bpfmaps *g, int idx)
{
	struct eg_stat_sum s[EG_STAT__MAX];

	assert_int_equal(bpfmaps_stats(g, s), 0);
	return s[idx].packets;
}

/* ---- verdicts over a veth pair ------------------------------------------------------------- */

struct conns {
	int lfd, ca, cb, sa, sb; /* listener, clients A/B, server sides */
};

static void open_conns(struct conns *c)
{
	uint16_t pa, pb;

	ns_enter(E.ns_gw);
	c->lfd = tcp_listen(GW_ADDR, PORT, 0);
	ns_enter(E.ns_cl);
	c->ca = tcp_connect(GW_ADDR, PORT);
	c->cb = tcp_connect(GW_ADDR, PORT);
	ns_back();
	pa = local_port(c->ca);
	pb = local_port(c->cb);
	assert_int_not_equal(pa, pb); /* same client address, different source ports */
	c->sb = -1;
	c->sa = accept_from(c->lfd, pa, &c->sb, pb);
	xfer(c->ca, c->sa, "hello A", 2000);
	xfer(c->cb, c->sb, "hello B", 2000);
	xfer(c->sa, c->ca, "reply A", 2000);
}

static void attach_gate(struct bpfmaps *g, struct bench_floor_bpf **peer)
{
	struct eg_xdp_cfg cfg = {.ports = {htons(PORT)}};
	const char *mode = NULL;

	assert_int_equal(bpfmaps_set_cfg(g, &cfg), 0);
	ns_enter(E.ns_gw);
	assert_int_equal(bpfmaps_attach_xdp(g, E.if_gw, BPFMAPS_XDP_NATIVE, &mode), 0);
	assert_string_equal(mode, "native");
	ns_enter(E.ns_cl);
	*peer = bench_floor_bpf__open_and_load();
	assert_non_null(*peer);
	assert_int_equal(bpf_xdp_attach((int)if_nametoindex(E.if_cl),
					bpf_program__fd((*peer)->progs.xdp_empty),
					XDP_FLAGS_DRV_MODE, NULL),
			 0);
	ns_back();
}

static void test_verdicts(void **state)
{
	struct eg_flow_verdict drop = {.action = EG_ACT_DROP, .reason = EG_REASON_BLOCKED};
	struct eg_flow_verdict rst = {.action = EG_ACT_RST, .reason = EG_REASON_QUARANTINED};
	struct bench_floor_bpf *peer = NULL;
	struct eg_flow_key ka;
	struct conns c;
	struct bpfmaps *g;
	char buf[16];
	uint64_t n0;
	int err;

	(void)state;
	g = bpfmaps_open(E.pin_dir, &err);
	assert_non_null(g);
	attach_gate(g, &peer);
	open_conns(&c);
	flow_key_of(c.sa, &ka);

	/* DROP on A: A's data stalls, B is untouched. */
	n0 = stat_packets(g, EG_STAT_FLOW_DROP);
	assert_int_equal(bpfmaps_flow_set(g, &ka, &drop), 0);
	assert_int_equal(send(c.ca, "A1", 2, MSG_NOSIGNAL), 2);
	xfer(c.cb, c.sb, "B1", 1000);
	assert_int_equal(wait_fd(c.sa, POLLIN, 500), 0);
	xfer(c.sb, c.cb, "B2", 1000);
	assert_true(stat_packets(g, EG_STAT_FLOW_DROP) > n0);

	/* Verdict deleted: A recovers on its next retransmit. */
	assert_int_equal(bpfmaps_flow_del(g, &ka), 0);
	assert_true(wait_fd(c.sa, POLLIN, 6000) & POLLIN);
	assert_int_equal(recv(c.sa, buf, sizeof(buf), 0), 2);
	assert_memory_equal(buf, "A1", 2);

	/* RST on A: the client side gets ECONNRESET, B still works. */
	n0 = stat_packets(g, EG_STAT_FLOW_RST);
	assert_int_equal(bpfmaps_flow_set(g, &ka, &rst), 0);
	assert_int_equal(send(c.ca, "A2", 2, MSG_NOSIGNAL), 2);
	assert_true(wait_fd(c.ca, POLLIN, 3000) & (POLLIN | POLLERR | POLLHUP));
	errno = 0;
	assert_int_equal(recv(c.ca, buf, sizeof(buf), 0), -1);
	assert_int_equal(errno, ECONNRESET);
	assert_true(stat_packets(g, EG_STAT_FLOW_RST) > n0);
	xfer(c.cb, c.sb, "B3", 1000);
	xfer(c.sb, c.cb, "B4", 1000);

	close(c.ca);
	close(c.cb);
	close(c.sa); /* the server side of A is still ESTABLISHED: userspace closes it */
	close(c.sb);
	close(c.lfd);
	bench_floor_bpf__destroy(peer);
	bpfmaps_close(g);
	assert_int_equal(bpfmaps_detach_all(E.pin_dir), 0);
	assert_int_equal(access(E.pin_dir, F_OK), -1);
}

/* ---- SO_REUSEPORT worker selection --------------------------------------------------------- */

#define NLISTEN 3

/* Open n connections; count which listener each one was queued on. Each
 * accept takes one off the slot's queued count, as a worker does (the load
 * stays what the test set). */
static void connect_count(struct bpfmaps *g, const int *lfd, uint16_t port, int n,
			  int counts[NLISTEN])
{
	memset(counts, 0, sizeof(int) * NLISTEN);
	for (int i = 0; i < n; i++) {
		int c = tcp_connect("127.0.0.1", port), found = 0;

		for (int j = 0; j < NLISTEN && !found; j++) {
			int a = accept4(lfd[j], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

			if (a >= 0) {
				bpfmaps_worker_unqueue(g, (uint32_t)j, 1);
				counts[j]++;
				found = 1;
				close(a);
			}
		}
		assert_true(found);
		close(c);
	}
}

static void set_worker(struct bpfmaps *g, uint32_t slot, uint32_t accepting, uint32_t load)
{
	struct eg_worker w = {.accepting = accepting, .load = load};

	assert_int_equal(bpfmaps_worker_set(g, slot, &w), 0);
}

static void test_reuseport(void **state)
{
	int lfd[NLISTEN], counts[NLISTEN], err;
	uint16_t port;
	struct bpfmaps *g = bpfmaps_open(NULL, &err);

	(void)state;
	assert_non_null(g);
	ns_enter(E.ns_gw); /* a private loopback */
	lfd[0] = tcp_listen("127.0.0.1", 0, 1);
	port = local_port(lfd[0]);
	for (int i = 1; i < NLISTEN; i++)
		lfd[i] = tcp_listen("127.0.0.1", port, 1);
	for (int i = 0; i < NLISTEN; i++)
		fcntl(lfd[i], F_SETFL, O_NONBLOCK);
	/* Stale state from a previous daemon is reset. */
	set_worker(g, 7, 1, 0);
	assert_int_equal(bpfmaps_workers_reset(g), 0);
	{
		struct eg_worker w7;

		assert_int_equal(bpfmaps_worker_get(g, 7, &w7), 0);
		assert_int_equal(w7.accepting, 0);
	}
	assert_int_equal(bpfmaps_reuseport_attach(g, lfd[0]), 0);
	for (uint32_t i = 0; i < NLISTEN; i++)
		assert_int_equal(bpfmaps_reuseport_register(g, 0, i, lfd[i]), 0);
	/* A socket sits in one place of the array only. */
	assert_int_equal(bpfmaps_reuseport_register(g, 1, 0, lfd[0]), -EBUSY);

	set_worker(g, 0, 1, 5);
	set_worker(g, 1, 1, 1);
	set_worker(g, 2, 0, 0); /* draining: never chosen although idle */
	connect_count(g, lfd, port, 20, counts);
	assert_int_equal(counts[1], 20);

	set_worker(g, 0, 1, 3);
	set_worker(g, 1, 1, 3);
	set_worker(g, 2, 1, 3);
	connect_count(g, lfd, port, 60, counts);
	for (int i = 0; i < NLISTEN; i++)
		assert_true(counts[i] > 0); /* ties spread by hash (P(fail) ~ 1e-10) */

	set_worker(g, 0, 0, 0);
	set_worker(g, 1, 0, 0);
	set_worker(g, 2, 0, 0);
	connect_count(g, lfd, port, 10, counts); /* no accepting worker: kernel default */
	set_worker(g, 9, 1, 0);			 /* accepting but never registered */
	connect_count(g, lfd, port, 10, counts); /* still accepted, by the kernel's choice */

	ns_back();
	for (int i = 0; i < NLISTEN; i++)
		close(lfd[i]);
	bpfmaps_close(g);
}

/*
 * Two listen addresses = two reuseport groups sharing the worker slots: the
 * program finds the chosen slot's socket in whichever group the connection
 * came to (the second group's sockets are registered at group 3, so the
 * lookups of groups 0..2 fail first).
 */
static void test_reuseport_groups(void **state)
{
	int la[NLISTEN], lb[NLISTEN], counts[NLISTEN], err;
	uint16_t pa, pb;
	struct bpfmaps *g = bpfmaps_open(NULL, &err);

	(void)state;
	assert_non_null(g);
	assert_true(bpfmaps_reuseport_groups(g) >= 4);
	ns_enter(E.ns_gw);
	la[0] = tcp_listen("127.0.0.1", 0, 1);
	pa = local_port(la[0]);
	lb[0] = tcp_listen("127.0.0.1", 0, 1);
	pb = local_port(lb[0]);
	for (int i = 1; i < NLISTEN; i++) {
		la[i] = tcp_listen("127.0.0.1", pa, 1);
		lb[i] = tcp_listen("127.0.0.1", pb, 1);
	}
	for (int i = 0; i < NLISTEN; i++) {
		fcntl(la[i], F_SETFL, O_NONBLOCK);
		fcntl(lb[i], F_SETFL, O_NONBLOCK);
	}
	assert_int_equal(bpfmaps_workers_reset(g), 0);
	assert_int_equal(bpfmaps_reuseport_attach(g, la[0]), 0);
	assert_int_equal(bpfmaps_reuseport_attach(g, lb[0]), 0);
	for (uint32_t i = 0; i < NLISTEN; i++) {
		assert_int_equal(bpfmaps_reuseport_register(g, 0, i, la[i]), 0);
		assert_int_equal(bpfmaps_reuseport_register(g, 3, i, lb[i]), 0);
	}
	assert_int_equal(
	    bpfmaps_reuseport_register(g, (uint32_t)bpfmaps_reuseport_groups(g), 0, la[0]),
	    -EINVAL);
	set_worker(g, 0, 1, 4);
	set_worker(g, 1, 1, 9);
	set_worker(g, 2, 1, 2); /* least loaded */
	connect_count(g, la, pa, 20, counts);
	assert_int_equal(counts[2], 20);
	connect_count(g, lb, pb, 20, counts);
	assert_int_equal(counts[2], 20);
	set_worker(g, 2, 0, 2); /* draining: slot 0 is next */
	connect_count(g, lb, pb, 20, counts);
	assert_int_equal(counts[0], 20);

	ns_back();
	for (int i = 0; i < NLISTEN; i++) {
		close(la[i]);
		close(lb[i]);
	}
	bpfmaps_close(g);
}

/*
 * A burst: 64 connections placed before any worker accepts (what wrk's 64
 * simultaneous connects do to a 2-worker gateway). The published loads are
 * equal all along, so only the program's own count of what it placed can
 * balance them: the two accept queues must end within one of each other
 * (so 32/32 here: the flow hash alone gives that ~10% of the time).
 */
#define BURST 64
static void test_reuseport_burst(void **state)
{
	int lfd[2], cfd[BURST], held[2] = {0, 0}, err;
	uint16_t port;
	struct bpfmaps *g = bpfmaps_open(NULL, &err);

	(void)state;
	assert_non_null(g);
	ns_enter(E.ns_gw);
	lfd[0] = tcp_listen("127.0.0.1", 0, 1);
	port = local_port(lfd[0]);
	lfd[1] = tcp_listen("127.0.0.1", port, 1);
	for (int i = 0; i < 2; i++)
		fcntl(lfd[i], F_SETFL, O_NONBLOCK);
	assert_int_equal(bpfmaps_workers_reset(g), 0);
	assert_int_equal(bpfmaps_reuseport_attach(g, lfd[0]), 0);
	for (uint32_t i = 0; i < 2; i++)
		assert_int_equal(bpfmaps_reuseport_register(g, 0, i, lfd[i]), 0);
	set_worker(g, 0, 1, 0);
	set_worker(g, 1, 1, 0);
	for (int i = 0; i < BURST; i++)
		cfd[i] = tcp_connect("127.0.0.1", port);
	for (int j = 0; j < 2; j++) {
		struct eg_worker w;
		int a;

		/* What the program counted is what waits in the accept queue. */
		assert_int_equal(bpfmaps_worker_get(g, (uint32_t)j, &w), 0);
		while ((a = accept4(lfd[j], NULL, NULL, SOCK_CLOEXEC)) >= 0) {
			bpfmaps_worker_unqueue(g, (uint32_t)j, 1);
			held[j]++;
			close(a);
		}
		assert_int_equal(w.queued, held[j]);
		assert_int_equal(bpfmaps_worker_get(g, (uint32_t)j, &w), 0);
		assert_int_equal(w.queued, 0);
	}
	print_message("burst of %d: %d / %d\n", BURST, held[0], held[1]);
	assert_int_equal(held[0] + held[1], BURST);
	assert_true(abs(held[0] - held[1]) <= 1);
	/* Never below 0 (an accept the program did not count); UINT32_MAX clears. */
	assert_int_equal(bpfmaps_worker_unqueue(g, 0, 1), 0);
	{
		int extra = tcp_connect("127.0.0.1", port);
		struct eg_worker w0, w1;

		assert_int_equal(bpfmaps_worker_get(g, 0, &w0), 0);
		assert_int_equal(bpfmaps_worker_get(g, 1, &w1), 0);
		assert_int_equal(w0.queued + w1.queued, 1);
		assert_int_equal(bpfmaps_worker_unqueue(g, 0, UINT32_MAX), 0);
		assert_int_equal(bpfmaps_worker_unqueue(g, 1, UINT32_MAX), 0);
		close(extra);
	}
	ns_back();
	for (int i = 0; i < BURST; i++)
		close(cfd[i]);
	for (int i = 0; i < 2; i++)
		close(lfd[i]);
	bpfmaps_close(g);
}

/* ---- driver for test_bpf_pins.sh ----------------------------------------------------------- */

static void helper_fill(struct bpfmaps *g)
{
	struct eg_flow_key k;
	struct sockaddr_in peer = sin4(CL_ADDR, 40000), local = sin4(GW_ADDR, 443);
	struct eg_flow_verdict v = {.action = EG_ACT_DROP,
				    .reason = EG_REASON_BLOCKED,
				    .expires_ns = eg_mono_ns() + 3600ull * 1000000000ull,
				    .device_key = 0xfeedfacecafebeefull};
	struct eg_lpm_val lv = {.action = EG_ACT_DROP, .reason = EG_REASON_ADMIN};
	struct eg_backend b = {.port = htons(443), .up = 1, .weight = 1, .name = "exch-a"};
	struct eg_conn_steer st = {.steer_key = 7, .backend = 0, .worker = 1};
	struct eg_worker w = {.accepting = 1, .load = 3};
	struct eg_rate_key rk = {.addr = {[10] = 0xff, [11] = 0xff, 198, 18, 0, 2}};
	struct eg_rate_state rs = {.tokens_milli = 1000, .last_ns = 1};
	struct eg_xdp_cfg cfg = {.ports = {htons(443)}};
	struct eg_src_cap cap = {.action = EG_ACT_DROP, .conns = 8192, .cap = 8192};
	uint32_t table[4] = {0, 0, 0, 0};

	eg_flow_key_from_addrs(&k, (struct sockaddr *)&peer, (struct sockaddr *)&local);
	if (bpfmaps_flow_set(g, &k, &v) || bpfmaps_prefix_set(g, "198.18.7.0/24", &lv) ||
	    bpfmaps_mirror_backend(g, 0, &b) || bpfmaps_mirror_maglev(g, table, 4) ||
	    bpfmaps_steer_set(g, &k, &st) || bpfmaps_worker_set(g, 1, &w) ||
	    bpfmaps_set_cfg(g, &cfg) || bpfmaps_src_cap_set(g, rk.addr, &cap) ||
	    bpf_map_update_elem(bpfmaps_map_fd(g, EG_MAP_SRC_RATE), &rk, &rs, BPF_ANY))
		fprintf(stderr, "helper: filling maps failed\n");
}

static int helper_has_entry(struct bpfmaps *g)
{
	struct eg_flow_key k;
	struct eg_flow_verdict v;
	struct sockaddr_in peer = sin4(CL_ADDR, 40000), local = sin4(GW_ADDR, 443);

	eg_flow_key_from_addrs(&k, (struct sockaddr *)&peer, (struct sockaddr *)&local);
	return bpfmaps_flow_get(g, &k, &v) == 0 && v.device_key == 0xfeedfacecafebeefull;
}

/*
 *   --helper open   PIN_DIR IFNAME MODE   load, pin, attach, write one entry per map
 *   --helper check  PIN_DIR IFNAME MODE   reopen, re-attach, exit 0 iff the entry is there
 *   --helper detach PIN_DIR               bpfmaps_detach_all
 * Prints "reused=N mode=M" for open/check.
 */
static int helper_main(int argc, char **argv)
{
	const char *mode = "-";
	struct bpfmaps *g;
	int err, ok = 1;

	if (argc == 2 && strcmp(argv[0], "detach") == 0)
		return bpfmaps_detach_all(argv[1]) == 0 ? 0 : 1;
	if (argc != 4 || (strcmp(argv[0], "open") != 0 && strcmp(argv[0], "check") != 0)) {
		fprintf(stderr,
			"usage: --helper open|check PIN_DIR IFNAME MODE | detach PIN_DIR\n");
		return 2;
	}
	g = bpfmaps_open(argv[1], &err);
	if (!g)
		return 1;
	err = bpfmaps_attach_xdp(g, argv[2], atoi(argv[3]), &mode);
	if (strcmp(argv[0], "open") == 0)
		helper_fill(g);
	else
		ok = helper_has_entry(g);
	printf("reused=%d mode=%s attach=%d entry=%d\n", bpfmaps_maps_reused(g), mode, err, ok);
	bpfmaps_close(g);
	return err == 0 && ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verdicts),
	    cmocka_unit_test(test_reuseport),
	    cmocka_unit_test(test_reuseport_groups),
	    cmocka_unit_test(test_reuseport_burst),
	};

	if (argc >= 2 && strcmp(argv[1], "--helper") == 0)
		return helper_main(argc - 2, argv + 2);
	if (geteuid() != 0) {
		printf("SKIP: test_bpf_netns needs root (netns, veth, XDP)\n");
		return 77;
	}
	if (access("/var/run/netns", F_OK) != 0 && system("ip netns list >/dev/null 2>&1") != 0) {
		printf("SKIP: iproute2 netns support unavailable\n");
		return 77;
	}
	log_set_level(LOG_WARN);
	E.orig_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGALRM, on_signal);
	alarm(60); /* a hung test must not hang CI (cleanup runs, then it dies) */
	return cmocka_run_group_tests(tests, env_setup, env_teardown);
}
