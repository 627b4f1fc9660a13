/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * xdp_bench.c - ns per packet of the XDP verdict filter, measured in the
 * kernel with BPF_PROG_TEST_RUN (repeat = 1e6, the kernel reports the mean
 * run time), median of 5 runs per case; the rounds interleave the cases.
 *
 *   empty       bench_floor xdp_empty: the cost of TEST_RUN itself
 *   floor       bench_floor xdp_floor: same parsers + one LRU lookup
 *   gate-pass   xdp_gate, an IPv4 ACK that passes every step
 *   gate-pass6  the same over IPv6
 *   gate-drop   xdp_gate, flow_verdict hit (DROP)
 *   gate-lpm    xdp_gate, src_block hit (DROP)
 *   gate-pass0  gate-pass with src_block empty (no prefix blocks configured,
 *               the common case: the trie walk is skipped)
 * The verdict tables hold 10000 other flows and 1000 other prefixes (none
 * for gate-pass0), the floor's table the same 10000 flows.
 * Target: gate-pass <= 1.5 x floor.
 *
 * Usage: build/bench/xdp_bench [repeat]   (built by `make`; root, exits 77
 * otherwise). bench_floor.bpf.c, beside it, holds the reference programs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpfmaps.h"
#include "log.h"
#include "bench_floor.skel.h"

#define RUNS 5

struct bench_case {
	const char *name;
	int prog_fd;
	const uint8_t *pkt;
	size_t len;
	uint32_t expect; /* XDP action the case must produce */
	double ns[RUNS];
};

/* Ethernet + IPv4/IPv6 + TCP ACK to port 443, 64 payload bytes. Checksums
 * are left zero: XDP does not verify them. */
static size_t xb_packet(uint8_t *b, int v6, const char *src, uint16_t sport)
{
	size_t l3 = v6 ? 40 : 20, n = 14 + l3 + 20 + 64;
	uint8_t *ip = b + 14, *tcp = ip + l3;
	uint16_t be;

	memset(b, 0, n);
	b[0] = 0x02;
	b[5] = 0x01;
	b[6] = 0x02;
	b[11] = 0x02;
	be = htons(v6 ? 0x86DD : 0x0800);
	memcpy(b + 12, &be, 2);
	if (v6) {
		ip[0] = 0x60;
		be = htons(20 + 64);
		memcpy(ip + 4, &be, 2);
		ip[6] = IPPROTO_TCP;
		ip[7] = 64;
		inet_pton(AF_INET6, src, ip + 8);
		inet_pton(AF_INET6, "2001:db8:1::1", ip + 24);
	} else {
		ip[0] = 0x45;
		be = htons(20 + 20 + 64);
		memcpy(ip + 2, &be, 2);
		ip[8] = 64;
		ip[9] = IPPROTO_TCP;
		inet_pton(AF_INET, src, ip + 12);
		inet_pton(AF_INET, "198.18.0.1", ip + 16);
	}
	be = htons(sport);
	memcpy(tcp, &be, 2);
	be = htons(443);
	memcpy(tcp + 2, &be, 2);
	tcp[12] = 5 << 4;
	tcp[13] = 0x10; /* ACK */
	return n;
}

/* One timed run of c (round r). */
static int xb_run(struct bench_case *c, int r, int repeat)
{
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = c->pkt, .data_size_in = (__u32)c->len,
		    .repeat = repeat);
	int err = bpf_prog_test_run_opts(c->prog_fd, &o);

	if (err) {
		fprintf(stderr, "%s: test run: %s\n", c->name, strerror(-err));
		return err;
	}
	if (o.retval != c->expect) {
		fprintf(stderr, "%s: action %u, expected %u\n", c->name, o.retval, c->expect);
		return -EINVAL;
	}
	c->ns[r] = o.duration; /* mean ns per run, as measured by the kernel */
	return 0;
}

static int xb_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double xb_median(struct bench_case *c)
{
	qsort(c->ns, RUNS, sizeof(c->ns[0]), xb_cmp);
	return c->ns[RUNS / 2];
}

/* 10000 unrelated flows in both tables, nprefix unrelated prefixes, and
 * (with prefixes) the verdicts the drop cases hit. */
static int xb_fill(struct bpfmaps *g, int floor_fd, int nprefix)
{
	struct eg_flow_verdict v = {.action = EG_ACT_DROP, .reason = EG_REASON_BLOCKED};
	struct eg_lpm_val lv = {.action = EG_ACT_DROP, .reason = EG_REASON_ADMIN};
	struct eg_xdp_cfg cfg = {.syn_rate = 10, .syn_burst = 20, .ports = {htons(443)}};
	struct sockaddr_in peer = {.sin_family = AF_INET}, local = {.sin_family = AF_INET};
	struct eg_flow_key k;
	char cidr[32];
	int err = bpfmaps_set_cfg(g, &cfg);

	inet_pton(AF_INET, "198.18.0.1", &local.sin_addr);
	local.sin_port = htons(443);
	for (int i = 0; i < 10000 && !err; i++) {
		inet_pton(AF_INET, "198.19.0.0", &peer.sin_addr);
		peer.sin_addr.s_addr = htonl(ntohl(peer.sin_addr.s_addr) + (uint32_t)i);
		peer.sin_port = htons((uint16_t)(1024 + i));
		eg_flow_key_from_addrs(&k, (struct sockaddr *)&peer, (struct sockaddr *)&local);
		err = bpfmaps_flow_set(g, &k, &v);
		if (!err)
			err = bpf_map_update_elem(floor_fd, &k, &v, BPF_ANY);
	}
	for (int i = 0; i < nprefix && !err; i++) {
		snprintf(cidr, sizeof(cidr), "10.%d.%d.0/24", i / 256, i % 256);
		err = bpfmaps_prefix_set(g, cidr, &lv);
	}
	inet_pton(AF_INET, "198.18.0.3", &peer.sin_addr);
	peer.sin_port = htons(40000);
	eg_flow_key_from_addrs(&k, (struct sockaddr *)&peer, (struct sockaddr *)&local);
	if (!err)
		err = bpfmaps_flow_set(g, &k, &v);
	if (!err && nprefix)
		err = bpfmaps_prefix_set(g, "198.18.128.0/24", &lv);
	return err;
}

int main(int argc, char **argv)
{
	static uint8_t p4[256], p6[256], pdrop[256], plpm[256];
	int repeat = argc > 1 ? atoi(argv[1]) : 1000000, err;
	struct bench_floor_bpf *fl;
	struct bpfmaps *g, *g2;
	size_t n4, n6, nd, nl;

	if (geteuid() != 0) {
		printf("SKIP: xdp_bench needs root\n");
		return 77;
	}
	log_set_level(LOG_WARN);
	g = bpfmaps_open(NULL, &err);
	g2 = bpfmaps_open(NULL, &err);
	fl = bench_floor_bpf__open_and_load();
	if (!g || !g2 || !fl) {
		fprintf(stderr, "xdp_bench: cannot load programs\n");
		return 1;
	}
	if (xb_fill(g, bpf_map__fd(fl->maps.floor_flows), 1000) ||
	    xb_fill(g2, bpf_map__fd(fl->maps.floor_flows), 0)) {
		fprintf(stderr, "xdp_bench: cannot fill maps\n");
		return 1;
	}
	n4 = xb_packet(p4, 0, "198.18.0.2", 40000);
	n6 = xb_packet(p6, 1, "2001:db8:2::2", 40000);
	nd = xb_packet(pdrop, 0, "198.18.0.3", 40000);
	nl = xb_packet(plpm, 0, "198.18.128.9", 40000);

	int gate = bpfmaps_prog_fd(g, BPFMAPS_PROG_XDP);
	struct bench_case cases[] = {
	    {"empty", bpf_program__fd(fl->progs.xdp_empty), p4, n4, XDP_PASS, {0}},
	    {"floor", bpf_program__fd(fl->progs.xdp_floor), p4, n4, XDP_PASS, {0}},
	    {"gate-pass", gate, p4, n4, XDP_PASS, {0}},
	    {"gate-pass6", gate, p6, n6, XDP_PASS, {0}},
	    {"gate-drop", gate, pdrop, nd, XDP_DROP, {0}},
	    {"gate-lpm", gate, plpm, nl, XDP_DROP, {0}},
	    {"gate-pass0", bpfmaps_prog_fd(g2, BPFMAPS_PROG_XDP), p4, n4, XDP_PASS, {0}},
	};
	size_t nc = sizeof(cases) / sizeof(cases[0]);
	double med[sizeof(cases) / sizeof(cases[0])];

	printf("%-12s %10s %10s %10s   (repeat=%d, %d runs)\n", "case", "median", "min", "max",
	       repeat, RUNS);
	/* Rounds interleave the cases, so that a noisy neighbour slows all of
	 * them alike instead of skewing the ratios. */
	for (int r = 0; r < RUNS; r++)
		for (size_t i = 0; i < nc; i++)
			if (xb_run(&cases[i], r, repeat))
				return 1;
	for (size_t i = 0; i < nc; i++) {
		med[i] = xb_median(&cases[i]);
		printf("%-12s %7.1f ns %7.1f ns %7.1f ns\n", cases[i].name, med[i], cases[i].ns[0],
		       cases[i].ns[RUNS - 1]);
	}
	printf("gate-pass / floor = %.2f, gate-pass0 / floor = %.2f (target <= 1.50)\n",
	       med[2] / med[1], med[6] / med[1]);
	bench_floor_bpf__destroy(fl);
	bpfmaps_close(g2);
	bpfmaps_close(g);
	return 0;
}
