/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_bpf_xdp.c - the XDP verdict filter through BPF_PROG_TEST_RUN, and the
 * bpfmaps library against real (unpinned) maps.
 *
 * Packets are built here by an independent builder (RFC 1071 checksums over
 * big-endian words, headers written byte by byte) and run through the
 * loaded xdp_gate program. Fixture tables in the Katran style: {description,
 * packet, expected action, expected stats index, expected output}. Every
 * run also checks that exactly one xdp_stats counter moved, by one packet
 * and the frame's length in bytes.
 *
 * Needs root (CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON): exits 77 otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "testlib.h"
#include "bpfmaps.h"
#include "log.h"
#include "../../bpf/parse.h"

#define GW4  "198.18.0.1"
#define CL4  "198.18.0.2"
#define GW6  "2001:db8:1::1"
#define CL6  "2001:db8:2::2"
#define PORT 443

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10

static struct bpfmaps *G;
static int PROG;

/* ---- packet builder (independent of the BPF code) ------------------------ */

/* What to build; zero fields take the defaults noted. */
struct pk {
	int v6;
	int nvlan;	       /* 0..3 tags: 802.1AD outer, then 802.1Q */
	uint16_t ethertype;    /* override (e.g. ARP); 0 = IPv4/IPv6 */
	const uint8_t *ext;    /* IPv6 extension header types, in order */
	int next;	       /* how many */
	int frag_off;	       /* fragment offset, 8-byte units */
	int mf;		       /* more-fragments flag */
	uint8_t proto;	       /* 0 = TCP */
	const char *src, *dst; /* NULL = client -> gateway of the family */
	uint16_t sport, dport; /* 0 = 40000, PORT */
	uint32_t seq, ack;     /* host order */
	uint8_t flags;	       /* TCP flags; 0 = ACK */
	int ip_opt;	       /* IPv4 option bytes (NOPs), multiple of 4 */
	int tcp_opt;	       /* TCP option bytes (NOPs), multiple of 4 */
	int payload;	       /* payload bytes */
	int bad_ihl, bad_doff; /* override the header length fields */
	int reply;	       /* a gateway reply: MACs swapped, TTL 64, window 0, id 0 */
};

static const uint8_t MAC_GW[6] = {0x02, 0, 0, 0, 0, 0x01};
static const uint8_t MAC_CL[6] = {0x02, 0, 0, 0, 0, 0x02};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

/* RFC 1071 over big-endian 16-bit words, odd byte padded. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void pk_addrs(const struct pk *s, uint8_t *src, uint8_t *dst)
{
	const char *a = s->src ? s->src : (s->v6 ? CL6 : CL4);
	const char *b = s->dst ? s->dst : (s->v6 ? GW6 : GW4);
	int af = s->v6 ? AF_INET6 : AF_INET;

	assert_int_equal(inet_pton(af, a, src), 1);
	assert_int_equal(inet_pton(af, b, dst), 1);
}

/* Transport checksum over the pseudo header of either family. */
static uint16_t l4_csum(const struct pk *s, const uint8_t *src, const uint8_t *dst,
			const uint8_t *l4, size_t len, uint8_t proto)
{
	size_t alen = s->v6 ? 16 : 4;
	uint32_t sum = csum_add(0, src, alen);

	sum = csum_add(sum, dst, alen);
	sum += proto + (uint32_t)len; /* IPv6: 32-bit length, high half is zero here */
	return csum_fold(csum_add(sum, l4, len));
}

static size_t pk_l4(const struct pk *s, uint8_t *p, uint8_t proto)
{
	size_t n;

	if (s->frag_off || proto != IPPROTO_TCP) { /* bare payload or UDP-ish header */
		n = (size_t)(s->frag_off ? 0 : 8) + (size_t)s->payload;
		memset(p, 0, n);
		if (!s->frag_off) {
			put16(p, s->sport ? s->sport : 40000);
			put16(p + 2, s->dport ? s->dport : PORT);
			put16(p + 4, (uint16_t)n);
		}
		for (size_t i = n - (size_t)s->payload; i < n; i++)
			p[i] = (uint8_t)('a' + i % 26);
		return n;
	}
	n = 20 + (size_t)s->tcp_opt + (size_t)s->payload;
	memset(p, 0, n);
	put16(p, s->sport ? s->sport : 40000);
	put16(p + 2, s->dport ? s->dport : PORT);
	put32(p + 4, s->seq);
	put32(p + 8, s->ack);
	p[12] = (uint8_t)((s->bad_doff ? s->bad_doff : 5 + s->tcp_opt / 4) << 4);
	p[13] = s->flags ? s->flags : TH_ACK;
	put16(p + 14, s->reply ? 0 : 502);
	memset(p + 20, 0x01, (size_t)s->tcp_opt); /* NOP options */
	for (int i = 0; i < s->payload; i++)
		p[20 + s->tcp_opt + i] = (uint8_t)('a' + i % 26);
	return n;
}

static size_t pk_eth(const struct pk *s, uint8_t *b)
{
	static const uint16_t tpid[3][3] = {{0x8100}, {0x88A8, 0x8100}, {0x88A8, 0x8100, 0x8100}};
	size_t off = 12;

	memcpy(b, s->reply ? MAC_CL : MAC_GW, 6);
	memcpy(b + 6, s->reply ? MAC_GW : MAC_CL, 6);
	for (int i = 0; i < s->nvlan; i++) {
		put16(b + off, tpid[s->nvlan - 1][i]);
		put16(b + off + 2, (uint16_t)(100 + i));
		off += 4;
	}
	put16(b + off, s->ethertype ? s->ethertype : (s->v6 ? 0x86DD : 0x0800));
	return off + 2;
}

static size_t pk_ipv4(const struct pk *s, uint8_t *ip, uint8_t proto)
{
	uint8_t src[4], dst[4];
	size_t hl = 20 + (size_t)s->ip_opt;
	size_t l4 = pk_l4(s, ip + hl, proto);

	pk_addrs(s, src, dst);
	ip[0] = (uint8_t)(0x40 | (s->bad_ihl ? s->bad_ihl : (int)hl / 4));
	ip[1] = 0;
	put16(ip + 2, (uint16_t)(hl + l4));
	put16(ip + 4, s->reply ? 0 : 0x1234);
	put16(ip + 6,
	      (uint16_t)(0x4000 * (!s->mf && !s->frag_off) | 0x2000 * !!s->mf | s->frag_off));
	ip[8] = s->reply ? 64 : 57;
	ip[9] = proto;
	put16(ip + 10, 0);
	memcpy(ip + 12, src, 4);
	memcpy(ip + 16, dst, 4);
	memset(ip + 20, 0x01, (size_t)s->ip_opt);
	put16(ip + 10, csum_fold(csum_add(0, ip, hl)));
	if (proto == IPPROTO_TCP && !s->frag_off)
		put16(ip + hl + 16, l4_csum(s, src, dst, ip + hl, l4, proto));
	return hl + l4;
}

/* One IPv6 extension header of `type`, 8 bytes, followed by `nh`. */
static void pk_ext6(const struct pk *s, uint8_t *e, uint8_t type, uint8_t nh)
{
	memset(e, 0, 8);
	e[0] = nh;
	if (type == 44) { /* fragment: offset << 3 | M */
		put16(e + 2, (uint16_t)(s->frag_off << 3 | !!s->mf));
		put32(e + 4, 0xabcd);
	} else if (type == 43) { /* routing: type 253 (experimental), 0 segments left */
		e[2] = 253;
	} else { /* hop-by-hop / destination options: one PadN option */
		e[2] = 1;
		e[3] = 4;
	}
}

static size_t pk_ipv6(const struct pk *s, uint8_t *ip, uint8_t proto)
{
	uint8_t src[16], dst[16];
	size_t ext = 8 * (size_t)s->next;
	size_t l4 = pk_l4(s, ip + 40 + ext, proto);

	pk_addrs(s, src, dst);
	memset(ip, 0, 40);
	ip[0] = 0x60;
	put16(ip + 4, (uint16_t)(ext + l4));
	ip[6] = s->next ? s->ext[0] : proto;
	ip[7] = s->reply ? 64 : 57;
	memcpy(ip + 8, src, 16);
	memcpy(ip + 24, dst, 16);
	for (int i = 0; i < s->next; i++)
		pk_ext6(s, ip + 40 + 8 * i, s->ext[i], i + 1 < s->next ? s->ext[i + 1] : proto);
	if (proto == IPPROTO_TCP && !s->frag_off)
		put16(ip + 40 + ext + 16, l4_csum(s, src, dst, ip + 40 + ext, l4, proto));
	return 40 + ext + l4;
}

/* Build the frame into b (>= 512 bytes); returns its length. */
static size_t pk_build(const struct pk *s, uint8_t *b)
{
	uint8_t proto = s->proto ? s->proto : IPPROTO_TCP;
	size_t off = pk_eth(s, b);

	if (s->ethertype) {
		memset(b + off, 0, 28); /* e.g. an ARP body */
		return off + 28;
	}
	return off + (s->v6 ? pk_ipv6(s, b + off, proto) : pk_ipv4(s, b + off, proto));
}

/* ---- running the program ------------------------------------------------------- */

struct run {
	int err;
	uint32_t action;
	uint8_t out[2048];
	uint32_t out_len;
};

static void run_raw(int prog, const uint8_t *in, size_t len, struct run *r)
{
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in, .data_size_in = (__u32)len,
		    .data_out = r->out, .data_size_out = sizeof(r->out), .repeat = 1);

	r->err = bpf_prog_test_run_opts(prog, &o);
	r->action = o.retval;
	r->out_len = o.data_size_out;
}

static void stats_now(struct eg_stat_sum s[EG_STAT__MAX])
{
	assert_int_equal(bpfmaps_stats(G, s), 0);
}

/* Exactly one counter moved, the expected one, by one packet of len bytes. */
static void assert_counted_once(const struct eg_stat_sum *a, const struct eg_stat_sum *b, int stat,
				size_t len)
{
	uint64_t pk = 0, by = 0;

	for (int i = 0; i < EG_STAT__MAX; i++) {
		pk += b[i].packets - a[i].packets;
		by += b[i].bytes - a[i].bytes;
	}
	assert_int_equal(pk, 1);
	assert_int_equal(by, len);
	if (b[stat].packets - a[stat].packets != 1)
		fail_msg("expected stat %d to count the packet", stat);
}

/* Run one frame and check the action, the stat, and (when PASS/DROP) that
 * the frame is untouched. Fills r for further checks. */
static void run_expect(const char *desc, const uint8_t *in, size_t len, uint32_t action, int stat,
		       struct run *r)
{
	struct eg_stat_sum a[EG_STAT__MAX], b[EG_STAT__MAX];

	stats_now(a);
	run_raw(PROG, in, len, r);
	stats_now(b);
	if (r->err)
		fail_msg("%s: test run failed: %s", desc, strerror(-r->err));
	if (r->action != action)
		fail_msg("%s: action %u, expected %u", desc, r->action, action);
	assert_counted_once(a, b, stat, len);
	if (action != XDP_TX) {
		assert_int_equal(r->out_len, len);
		assert_memory_equal(r->out, in, len);
	}
}

static void run_spec(const char *desc, const struct pk *s, uint32_t action, int stat)
{
	uint8_t buf[512];
	size_t len = pk_build(s, buf);
	struct run r;

	run_expect(desc, buf, len, action, stat, &r);
}

/* ---- map state helpers ----------------------------------------------------------- */

static void clear_map(const char *name)
{
	int fd = bpfmaps_map_fd(G, name);
	uint8_t key[64];

	assert_true(fd >= 0);
	while (bpf_map_get_next_key(fd, NULL, key) == 0)
		assert_int_equal(bpf_map_delete_elem(fd, key), 0);
}

static void set_ports(uint16_t p0, uint32_t rate, uint32_t burst)
{
	struct eg_xdp_cfg c;

	memset(&c, 0, sizeof(c));
	c.ports[0] = htons(p0);
	c.syn_rate = rate;
	c.syn_burst = burst;
	assert_int_equal(bpfmaps_set_cfg(G, &c), 0);
}

static int reset(void **state)
{
	(void)state;
	clear_map(EG_MAP_FLOW_VERDICT);
	clear_map(EG_MAP_SRC_BLOCK);
	clear_map(EG_MAP_SRC_RATE);
	clear_map(EG_MAP_SRC_CAP);
	set_ports(PORT, 0, 0);
	return 0;
}

/* The flow key the program builds for spec s (src = client). */
static void key_of(const struct pk *s, struct eg_flow_key *k)
{
	struct sockaddr_storage peer, local;

	memset(&peer, 0, sizeof(peer));
	memset(&local, 0, sizeof(local));
	if (s->v6) {
		struct sockaddr_in6 *p = (struct sockaddr_in6 *)&peer,
				    *l = (struct sockaddr_in6 *)&local;

		p->sin6_family = l->sin6_family = AF_INET6;
		inet_pton(AF_INET6, s->src ? s->src : CL6, &p->sin6_addr);
		inet_pton(AF_INET6, s->dst ? s->dst : GW6, &l->sin6_addr);
		p->sin6_port = htons(s->sport ? s->sport : 40000);
		l->sin6_port = htons(s->dport ? s->dport : PORT);
	} else {
		struct sockaddr_in *p = (struct sockaddr_in *)&peer,
				   *l = (struct sockaddr_in *)&local;

		p->sin_family = l->sin_family = AF_INET;
		inet_pton(AF_INET, s->src ? s->src : CL4, &p->sin_addr);
		inet_pton(AF_INET, s->dst ? s->dst : GW4, &l->sin_addr);
		p->sin_port = htons(s->sport ? s->sport : 40000);
		l->sin_port = htons(s->dport ? s->dport : PORT);
	}
	eg_flow_key_from_addrs(k, (struct sockaddr *)&peer, (struct sockaddr *)&local);
}

static void set_flow(const struct pk *s, uint8_t action, uint64_t expires)
{
	struct eg_flow_key k;
	struct eg_flow_verdict v = {.action = action,
				    .reason = EG_REASON_BLOCKED,
				    .expires_ns = expires,
				    .device_key = 0x1122334455667788ull};

	key_of(s, &k);
	assert_int_equal(bpfmaps_flow_set(G, &k, &v), 0);
}

static void set_prefix(const char *cidr, uint8_t action, uint64_t expires)
{
	struct eg_lpm_val v = {.action = action, .reason = EG_REASON_ADMIN, .expires_ns = expires};

	assert_int_equal(bpfmaps_prefix_set(G, cidr, &v), 0);
}

/* ---- pure C: token bucket, cidr, flow keys ----------------------------------------- */

static void test_bucket_math(void **state)
{
	struct eg_rate_state s = {.tokens_milli = 3000, .last_ns = 1000};
	uint64_t t = 1000;

	(void)state;
	/* burst 3: three pass, the fourth at the same instant does not */
	for (int i = 0; i < 3; i++)
		assert_int_equal(eg_bucket_take(&s, t, 10, 3), 1);
	assert_int_equal(eg_bucket_take(&s, t, 10, 3), 0);
	/* 10/s: 50 ms earns half a token, 100 ms a whole one */
	assert_int_equal(eg_bucket_take(&s, t + 50000000, 10, 3), 0);
	assert_int_equal(s.tokens_milli, 500);
	assert_int_equal(eg_bucket_take(&s, t + 100000000, 10, 3), 1);
	assert_int_equal(s.tokens_milli, 0);
	/* a long pause refills to the burst, not beyond (and does not overflow) */
	t += 100000000;
	assert_int_equal(eg_bucket_take(&s, t + 3600ull * 1000000000ull, 10, 3), 1);
	assert_int_equal(s.tokens_milli, 2000);
	/* the clock going backwards (CPUs racing) earns nothing */
	s.tokens_milli = 0;
	s.last_ns = 5000000000ull;
	assert_int_equal(eg_bucket_take(&s, 4000000000ull, 10, 3), 0);
	assert_int_equal(s.last_ns, 5000000000ull);
	/* 1/s with a SYN every 100 us: each step rounds to 0.1 milli-token, yet
	 * the time still accumulates and one token is earned after one second */
	s.tokens_milli = 0;
	s.last_ns = 0;
	int passed = 0;
	for (uint64_t now = 100000; now <= 1000000000ull; now += 100000)
		passed += eg_bucket_take(&s, now, 1, 1);
	assert_int_equal(passed, 1);
	/* rate 0 = unlimited; burst 0 behaves as 1 */
	assert_int_equal(eg_bucket_take(&s, 0, 0, 0), 1);
	s.tokens_milli = 5000;
	assert_int_equal(eg_bucket_take(&s, s.last_ns, 1, 0), 1);
	assert_int_equal(s.tokens_milli, 0);
	/* huge rate and burst: no overflow in the fill-time computation */
	s.tokens_milli = 0;
	s.last_ns = 0;
	assert_int_equal(eg_bucket_take(&s, 1, 0xffffffffu, 0xffffffffu), 1);
}

static void test_parse_cidr(void **state)
{
	struct eg_lpm_key k;
	static const uint8_t v4[16] = {[10] = 0xff, [11] = 0xff, [12] = 198, [13] = 18};
	static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0x00, 0x07};

	(void)state;
	assert_int_equal(bpfmaps_parse_cidr("198.18.0.77/24", &k), 0);
	assert_int_equal(k.prefixlen, 96 + 24);
	assert_memory_equal(k.addr, v4, 16); /* host bits cleared */
	assert_int_equal(bpfmaps_parse_cidr("2001:db8:7:ffff::1/48", &k), 0);
	assert_int_equal(k.prefixlen, 48);
	assert_memory_equal(k.addr, v6, 16);
	assert_int_equal(bpfmaps_parse_cidr("198.18.0.1", &k), 0);
	assert_int_equal(k.prefixlen, 128);
	assert_int_equal(bpfmaps_parse_cidr("0.0.0.0/0", &k), 0);
	assert_int_equal(k.prefixlen, 96);
	assert_int_equal(bpfmaps_parse_cidr("198.18.0.0/33", &k), -EINVAL);
	assert_int_equal(bpfmaps_parse_cidr("2001:db8::/129", &k), -EINVAL);
	assert_int_equal(bpfmaps_parse_cidr("198.18.0.0/", &k), -EINVAL);
	assert_int_equal(bpfmaps_parse_cidr("198.18.0.0/2x", &k), -EINVAL);
	assert_int_equal(bpfmaps_parse_cidr("198.18.0.0/-1", &k), -EINVAL);
	assert_int_equal(bpfmaps_parse_cidr("example.com/24", &k), -EINVAL);
	assert_int_equal(bpfmaps_parse_cidr("", &k), -EINVAL);
}

static void test_flow_key_from_addrs(void **state)
{
	struct sockaddr_in p4 = {.sin_family = AF_INET, .sin_port = htons(40001)};
	struct sockaddr_in l4 = {.sin_family = AF_INET, .sin_port = htons(443)};
	struct sockaddr_in6 p6 = {.sin6_family = AF_INET6, .sin6_port = htons(40002)};
	struct eg_flow_key k;
	static const uint8_t m4[16] = {[10] = 0xff, [11] = 0xff, [12] = 198, [13] = 18, [15] = 2};

	(void)state;
	inet_pton(AF_INET, CL4, &p4.sin_addr);
	inet_pton(AF_INET, GW4, &l4.sin_addr);
	memset(&k, 0xaa, sizeof(k));
	eg_flow_key_from_addrs(&k, (struct sockaddr *)&p4, (struct sockaddr *)&l4);
	assert_memory_equal(k.saddr, m4, 16);
	assert_int_equal(k.daddr[15], 1);
	assert_int_equal(k.sport, htons(40001));
	assert_int_equal(k.dport, htons(443));
	assert_int_equal(k.pad, 0);
	/* a dual-stack socket reports v4 peers as ::ffff:a.b.c.d: same key */
	inet_pton(AF_INET6, "::ffff:" CL4, &p6.sin6_addr);
	eg_flow_key_from_addrs(&k, (struct sockaddr *)&p6, (struct sockaddr *)&l4);
	assert_memory_equal(k.saddr, m4, 16);
	assert_int_equal(k.sport, htons(40002));
}

/* ---- fixtures: parsing and classification --------------------------------------------- */

static const uint8_t EXT_HDF[] = {0, 60, 44};		    /* hop-by-hop, dest opts, fragment */
static const uint8_t EXT_ALL[] = {0, 43, 60, 44};	    /* + routing */
static const uint8_t EXT_7[] = {0, 60, 60, 60, 60, 60, 60}; /* one more than EG_IPV6_EXT_MAX */
static const uint8_t EXT_6[] = {0, 60, 60, 60, 60, 60};	    /* exactly EG_IPV6_EXT_MAX */

struct fixture {
	const char *desc;
	struct pk in;
	uint32_t action;
	int stat;
};

static const struct fixture FIXTURES[] = {
    {"IPv4/TCP ACK with payload", {.payload = 100}, XDP_PASS, EG_STAT_PASS},
    {"IPv4 with IP options, TCP options",
     {.ip_opt = 8, .tcp_opt = 12, .payload = 10},
     XDP_PASS,
     EG_STAT_PASS},
    {"IPv6/TCP", {.v6 = 1, .payload = 10}, XDP_PASS, EG_STAT_PASS},
    {"802.1Q VLAN IPv4", {.nvlan = 1}, XDP_PASS, EG_STAT_PASS},
    {"QinQ (802.1AD + 802.1Q) IPv6", {.nvlan = 2, .v6 = 1}, XDP_PASS, EG_STAT_PASS},
    {"three VLAN tags: not parsed further", {.nvlan = 3}, XDP_PASS, EG_STAT_NOT_TCP},
    {"IPv6 hop-by-hop + dest opts + first fragment",
     {.v6 = 1, .ext = EXT_HDF, .next = 3, .mf = 1},
     XDP_PASS,
     EG_STAT_PASS},
    {"IPv6 hop + routing + dest + fragment",
     {.v6 = 1, .ext = EXT_ALL, .next = 4},
     XDP_PASS,
     EG_STAT_PASS},
    {"IPv6 with EG_IPV6_EXT_MAX ext headers",
     {.v6 = 1, .ext = EXT_6, .next = 6},
     XDP_PASS,
     EG_STAT_PASS},
    {"IPv6 with too many ext headers",
     {.v6 = 1, .ext = EXT_7, .next = 7},
     XDP_PASS,
     EG_STAT_MALFORMED},
    {"IPv6 non-first fragment",
     {.v6 = 1, .ext = EXT_HDF, .next = 3, .frag_off = 185, .payload = 40},
     XDP_PASS,
     EG_STAT_NOT_TCP},
    {"IPv4 first fragment (MF, offset 0)", {.mf = 1, .payload = 16}, XDP_PASS, EG_STAT_PASS},
    {"IPv4 non-first fragment", {.frag_off = 185, .payload = 40}, XDP_PASS, EG_STAT_NOT_TCP},
    {"IPv4/UDP", {.proto = IPPROTO_UDP, .payload = 20}, XDP_PASS, EG_STAT_NOT_TCP},
    {"IPv6/UDP", {.v6 = 1, .proto = IPPROTO_UDP}, XDP_PASS, EG_STAT_NOT_TCP},
    {"ARP", {.ethertype = 0x0806}, XDP_PASS, EG_STAT_NOT_TCP},
    {"IPv4 IHL 4", {.bad_ihl = 4}, XDP_PASS, EG_STAT_MALFORMED},
    {"IPv4 IHL 15 past the datagram", {.bad_ihl = 15}, XDP_PASS, EG_STAT_MALFORMED},
    {"TCP doff 4", {.bad_doff = 4}, XDP_PASS, EG_STAT_MALFORMED},
    {"TCP doff 15 past the segment", {.bad_doff = 15, .payload = 4}, XDP_PASS, EG_STAT_MALFORMED},
    {"TCP to an unguarded port", {.dport = 8080}, XDP_PASS, EG_STAT_OTHER_PORT},
    {"IPv6 TCP to an unguarded port", {.v6 = 1, .dport = 25}, XDP_PASS, EG_STAT_OTHER_PORT},
};

static void test_fixtures(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(FIXTURES) / sizeof(FIXTURES[0]); i++)
		run_spec(FIXTURES[i].desc, &FIXTURES[i].in, FIXTURES[i].action, FIXTURES[i].stat);
}

/* Every prefix of a valid frame: never a crash, always PASS + MALFORMED,
 * except that the kernel refuses to run XDP on less than an Ethernet header. */
static void truncate_all(const char *desc, const struct pk *s)
{
	uint8_t buf[512];
	size_t full = pk_build(s, buf);
	struct run r;

	for (size_t len = 0; len < full; len++) {
		if (len < 14) {
			struct eg_stat_sum a[EG_STAT__MAX], b[EG_STAT__MAX];

			stats_now(a);
			run_raw(PROG, buf, len, &r);
			stats_now(b);
			assert_int_equal(r.err, -EINVAL);
			assert_memory_equal(a, b, sizeof(a));
			continue;
		}
		run_expect(desc, buf, len, XDP_PASS, EG_STAT_MALFORMED, &r);
	}
	run_expect(desc, buf, full, XDP_PASS, EG_STAT_PASS, &r);
}

static void test_truncation(void **state)
{
	(void)state;
	truncate_all("v4 truncated", &(struct pk){.ip_opt = 4, .tcp_opt = 8, .payload = 5});
	truncate_all("v6 truncated", &(struct pk){.v6 = 1, .payload = 5});
	truncate_all("vlan truncated", &(struct pk){.nvlan = 1, .payload = 3});
	truncate_all("qinq v6 ext truncated",
		     &(struct pk){.nvlan = 2, .v6 = 1, .ext = EXT_ALL, .next = 4, .payload = 3});
}

static void test_port_list(void **state)
{
	struct pk s = {.dport = 8080};

	(void)state;
	set_flow(&s, EG_ACT_DROP, 0);
	run_spec("verdict on an unguarded port is not looked at", &s, XDP_PASS, EG_STAT_OTHER_PORT);
	set_ports(0, 0, 0); /* empty list: every TCP port is guarded */
	run_spec("empty port list guards all TCP", &s, XDP_DROP, EG_STAT_FLOW_DROP);
}

/* ---- flow verdicts, prefixes, SYN rate --------------------------------------------------- */

static void test_flow_verdict(void **state)
{
	struct pk a = {.sport = 50001}, nat_neighbour = {.sport = 50002};
	struct pk a6 = {.v6 = 1, .sport = 50003};
	struct eg_flow_key k;
	struct eg_flow_verdict v;

	(void)state;
	set_flow(&a, EG_ACT_DROP, 0);
	run_spec("flow hit: drop", &a, XDP_DROP, EG_STAT_FLOW_DROP);
	run_spec("flow hit again", &a, XDP_DROP, EG_STAT_FLOW_DROP);
	run_spec("same NAT address, other port", &nat_neighbour, XDP_PASS, EG_STAT_PASS);
	key_of(&a, &k);
	assert_int_equal(bpfmaps_flow_get(G, &k, &v), 0);
	assert_int_equal(v.hits, 2);
	assert_int_equal(v.device_key, 0x1122334455667788ull);

	set_flow(&a6, EG_ACT_DROP, eg_mono_ns() + 60ull * 1000000000ull);
	run_spec("v6 flow hit, not yet expired", &a6, XDP_DROP, EG_STAT_FLOW_DROP);

	set_flow(&a, EG_ACT_DROP, 1); /* expired long ago */
	run_spec("expired verdict passes", &a, XDP_PASS, EG_STAT_FLOW_EXPIRED);
	assert_int_equal(bpfmaps_flow_get(G, &k, &v), -ENOENT); /* and was deleted */
	run_spec("then it is a plain miss", &a, XDP_PASS, EG_STAT_PASS);

	set_prefix(CL4 "/32", EG_ACT_DROP, 0);
	set_flow(&a, EG_ACT_PASS, 0);
	run_spec("flow PASS is an allow: beats a prefix block", &a, XDP_PASS, EG_STAT_PASS);
	run_spec("the neighbour stays blocked", &nat_neighbour, XDP_DROP, EG_STAT_LPM_DROP);

	assert_int_equal(bpfmaps_flow_del(G, &k), 0);
	assert_int_equal(bpfmaps_flow_del(G, &k), -ENOENT);
	v.action = 7;
	assert_int_equal(bpfmaps_flow_set(G, &k, &v), -EINVAL);
}

static void test_src_block(void **state)
{
	(void)state;
	set_prefix("198.18.0.0/24", EG_ACT_DROP, 0);
	set_prefix("2001:db8:2::/48", EG_ACT_DROP, 0);
	run_spec("v4 /24 hit", &(struct pk){.src = "198.18.0.200"}, XDP_DROP, EG_STAT_LPM_DROP);
	run_spec("v4 outside the /24", &(struct pk){.src = "198.18.1.2"}, XDP_PASS, EG_STAT_PASS);
	run_spec("v6 /48 hit", &(struct pk){.v6 = 1, .src = "2001:db8:2:ffff::9"}, XDP_DROP,
		 EG_STAT_LPM_DROP);
	run_spec("v6 outside the /48", &(struct pk){.v6 = 1, .src = "2001:db8:3::2"}, XDP_PASS,
		 EG_STAT_PASS);
	run_spec("IPv4-compatible v6 address is not v4",
		 &(struct pk){.v6 = 1, .src = "::198.18.0.5"}, XDP_PASS, EG_STAT_PASS);

	set_prefix("198.18.0.128/25", EG_ACT_PASS, 0);
	run_spec("PASS carve-out inside a blocked /24", &(struct pk){.src = "198.18.0.200"},
		 XDP_PASS, EG_STAT_PASS);
	run_spec("rest of the /24 still blocked", &(struct pk){.src = "198.18.0.20"}, XDP_DROP,
		 EG_STAT_LPM_DROP);

	set_prefix("198.18.0.0/24", EG_ACT_DROP, 1);
	run_spec("expired prefix is ignored", &(struct pk){.src = "198.18.0.20"}, XDP_PASS,
		 EG_STAT_PASS);
	assert_int_equal(bpfmaps_prefix_del(G, "2001:db8:2::/48"), 0);
	run_spec("deleted prefix", &(struct pk){.v6 = 1, .src = "2001:db8:2::9"}, XDP_PASS,
		 EG_STAT_PASS);
	assert_int_equal(bpfmaps_prefix_del(G, "2001:db8:2::/48"), -ENOENT);
	/* Emptied trie (the program skips the walk), then one prefix again. */
	clear_map(EG_MAP_SRC_BLOCK);
	run_spec("empty src_block", &(struct pk){.src = "198.18.0.20"}, XDP_PASS, EG_STAT_PASS);
	set_prefix("198.18.0.20/32", EG_ACT_DROP, 0);
	run_spec("first prefix applies at once", &(struct pk){.src = "198.18.0.20"}, XDP_DROP,
		 EG_STAT_LPM_DROP);
	assert_int_equal(bpfmaps_prefix_set(G, "bogus", &(struct eg_lpm_val){0}), -EINVAL);
}

static void test_syn_rate(void **state)
{
	struct pk syn = {.flags = TH_SYN};

	(void)state;
	set_ports(PORT, 1, 3); /* 1 new connection/s, burst 3 */
	for (int i = 0; i < 3; i++) {
		syn.sport = (uint16_t)(41000 + i);
		run_spec("SYN within the burst", &syn, XDP_PASS, EG_STAT_PASS);
	}
	syn.sport = 41003;
	run_spec("SYN over the burst", &syn, XDP_DROP, EG_STAT_RATE_DROP);
	run_spec("ACK is never rate-limited", &(struct pk){.sport = 41003}, XDP_PASS, EG_STAT_PASS);
	run_spec("SYN-ACK is not a new connection", &(struct pk){.flags = TH_SYN | TH_ACK},
		 XDP_PASS, EG_STAT_PASS);
	run_spec("another source has its own bucket",
		 &(struct pk){.flags = TH_SYN, .src = "198.18.0.3"}, XDP_PASS, EG_STAT_PASS);
	run_spec("v6 SYN, own bucket", &(struct pk){.v6 = 1, .flags = TH_SYN}, XDP_PASS,
		 EG_STAT_PASS);
	for (int i = 0; i < 2; i++)
		run_spec("same /64, other address: same bucket",
			 &(struct pk){.v6 = 1, .flags = TH_SYN, .src = "2001:db8:2::99"}, XDP_PASS,
			 EG_STAT_PASS);
	run_spec("the /64 is over its burst", &(struct pk){.v6 = 1, .flags = TH_SYN}, XDP_DROP,
		 EG_STAT_RATE_DROP);
	run_spec("another /64 is not",
		 &(struct pk){.v6 = 1, .flags = TH_SYN, .src = "2001:db8:3::2"}, XDP_PASS,
		 EG_STAT_PASS);
	/* Refill: 1000/s for 20 ms is 20 tokens, capped at the burst of 3. */
	set_ports(PORT, 1000, 3);
	usleep(20000);
	for (int i = 0; i < 3; i++)
		run_spec("refilled", &syn, XDP_PASS, EG_STAT_PASS);
	set_ports(PORT, 0, 0);
	run_spec("limit off", &syn, XDP_PASS, EG_STAT_PASS);
	assert_int_equal(bpfmaps_set_cfg(G, &(struct eg_xdp_cfg){.syn_rate = 5}), -EINVAL);
}

/* ---- RST generation ------------------------------------------------------------------------ */

/* Header checksums of a reply, verified with the test's own RFC 1071 code. */
static void assert_checksums_ok(const struct pk *s, const uint8_t *f, size_t len)
{
	size_t l3 = 14 + 4 * (size_t)s->nvlan;
	uint8_t src[16], dst[16];
	size_t alen = s->v6 ? 16 : 4, ipl = s->v6 ? 40 : 20;
	uint32_t sum;

	assert_true(len >= l3 + ipl + 20);
	if (!s->v6)
		assert_int_equal(csum_fold(csum_add(0, f + l3, 20)), 0);
	memcpy(src, f + l3 + (s->v6 ? 8 : 12), alen);
	memcpy(dst, f + l3 + (s->v6 ? 24 : 16), alen);
	sum = csum_add(csum_add(0, src, alen), dst, alen) + IPPROTO_TCP + 20;
	assert_int_equal(csum_fold(csum_add(sum, f + l3 + ipl, 20)), 0);
}

struct rst_case {
	const char *desc;
	struct pk in;
	uint32_t rst_seq, rst_ack; /* expected, host order */
	uint8_t rst_flags;
};

static const struct rst_case RST_CASES[] = {
    {"v4 data segment with options: RST seq = its ACK",
     {.ip_opt = 8,
      .tcp_opt = 12,
      .payload = 200,
      .seq = 1000,
      .ack = 0xfffffff0,
      .flags = TH_ACK | TH_PSH},
     0xfffffff0,
     0,
     TH_RST},
    {"v4 SYN: RST+ACK, ack = seq + 1",
     {.flags = TH_SYN, .seq = 0xffffffff, .tcp_opt = 20},
     0,
     0,
     TH_RST | TH_ACK},
    {"v6 ext headers, FIN+data without ACK: ack = seq + len + 1",
     {.v6 = 1, .ext = EXT_ALL, .next = 4, .flags = TH_FIN, .seq = 7, .payload = 33},
     0,
     41,
     TH_RST | TH_ACK},
    {"QinQ v4: tags kept", {.nvlan = 2, .seq = 5, .ack = 77, .payload = 1}, 77, 0, TH_RST},
    {"VLAN v6 SYN", {.nvlan = 1, .v6 = 1, .flags = TH_SYN, .seq = 100}, 0, 101, TH_RST | TH_ACK},
};

static void check_rst(const struct rst_case *c, int stat)
{
	uint8_t in[512], exp[512];
	struct pk rs = {.v6 = c->in.v6,
			.nvlan = c->in.nvlan,
			.reply = 1,
			.seq = c->rst_seq,
			.ack = c->rst_ack,
			.flags = c->rst_flags};
	size_t len = pk_build(&c->in, in), elen;
	struct run r;

	/* the expected reply: gateway -> client, ports swapped, no options/payload */
	rs.src = c->in.dst ? c->in.dst : (c->in.v6 ? GW6 : GW4);
	rs.dst = c->in.src ? c->in.src : (c->in.v6 ? CL6 : CL4);
	rs.sport = c->in.dport ? c->in.dport : PORT;
	rs.dport = c->in.sport ? c->in.sport : 40000;
	elen = pk_build(&rs, exp);
	run_expect(c->desc, in, len, XDP_TX, stat, &r);
	assert_int_equal(r.out_len, elen);
	for (size_t i = 0; i < elen; i++)
		if (r.out[i] != exp[i])
			fail_msg("%s: byte %zu is %02x, expected %02x", c->desc, i, r.out[i],
				 exp[i]);
	assert_checksums_ok(&rs, r.out, r.out_len);
}

static void test_rst(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(RST_CASES) / sizeof(RST_CASES[0]); i++) {
		set_flow(&RST_CASES[i].in, EG_ACT_RST, 0);
		check_rst(&RST_CASES[i], EG_STAT_FLOW_RST);
	}
	/* a RST is never answered with a RST: dropped, still counted */
	struct pk rst = {.flags = TH_RST | TH_ACK, .sport = 42000};

	set_flow(&rst, EG_ACT_RST, 0);
	run_spec("incoming RST is dropped, not answered", &rst, XDP_DROP, EG_STAT_FLOW_RST);

	/* prefix with action RST */
	set_prefix("198.18.0.64/26", EG_ACT_RST, 0);
	struct rst_case lpm = {
	    "prefix RST", {.src = "198.18.0.66", .seq = 1, .ack = 2}, 2, 0, TH_RST};

	check_rst(&lpm, EG_STAT_LPM_DROP);
}

/* A source the daemon found at its connection cap: its new connections end
 * in XDP, everything else it sends passes. */
static void set_src_cap(const char *ip, uint8_t action, uint64_t expires_ns)
{
	uint8_t src[16] = {0};
	struct eg_src_cap v = {.action = action, .conns = 7, .cap = 7, .expires_ns = expires_ns};

	if (strchr(ip, ':')) {
		assert_int_equal(inet_pton(AF_INET6, ip, src), 1);
		memset(src + 8, 0, 8); /* the /64, as srccap_source makes it */
	} else {
		src[10] = src[11] = 0xff;
		assert_int_equal(inet_pton(AF_INET, ip, src + 12), 1);
	}
	assert_int_equal(bpfmaps_src_cap_set(G, src, &v), 0);
}

static void test_src_cap(void **state)
{
	uint64_t later = eg_mono_ns() + 60000000000ull;
	uint8_t src[16] = {[10] = 0xff, 0xff, 198, 18, 0, 2};

	(void)state;
	run_spec("no entry: SYN passes", &(struct pk){.flags = TH_SYN}, XDP_PASS, EG_STAT_PASS);
	set_src_cap(CL4, EG_ACT_DROP, later);
	run_spec("SYN from a capped source", &(struct pk){.flags = TH_SYN}, XDP_DROP,
		 EG_STAT_CONN_CAP);
	run_spec("...its open connections are untouched (ACK)", &(struct pk){.payload = 10},
		 XDP_PASS, EG_STAT_PASS);
	run_spec("...FIN too", &(struct pk){.flags = TH_FIN | TH_ACK}, XDP_PASS, EG_STAT_PASS);
	run_spec("another address is not capped",
		 &(struct pk){.flags = TH_SYN, .src = "198.18.0.3"}, XDP_PASS, EG_STAT_PASS);
	set_src_cap(CL6, EG_ACT_DROP, later);
	run_spec("v6: a capped /64",
		 &(struct pk){.v6 = 1, .flags = TH_SYN, .src = "2001:db8:2::77"}, XDP_DROP,
		 EG_STAT_CONN_CAP);
	run_spec("v6: the next /64 is not",
		 &(struct pk){.v6 = 1, .flags = TH_SYN, .src = "2001:db8:2:1::2"}, XDP_PASS,
		 EG_STAT_PASS);
	/* Before the SYN bucket: a refused SYN takes no token. */
	set_ports(PORT, 1, 1);
	run_spec("capped before the bucket is asked", &(struct pk){.flags = TH_SYN}, XDP_DROP,
		 EG_STAT_CONN_CAP);
	assert_int_equal(bpfmaps_src_cap_del(G, src), 0);
	assert_int_equal(bpfmaps_src_cap_del(G, src), -ENOENT);
	run_spec("deleted: the bucket still has its token", &(struct pk){.flags = TH_SYN}, XDP_PASS,
		 EG_STAT_PASS);
	set_ports(PORT, 0, 0);
	/* RST: the SYN is answered <SEQ=0><ACK=seq+1><RST,ACK>. */
	set_src_cap(CL4, EG_ACT_RST, later);
	struct rst_case rc = {
	    "capped SYN answered with a RST", {.flags = TH_SYN, .seq = 41}, 0, 42, TH_RST | TH_ACK};

	check_rst(&rc, EG_STAT_CONN_CAP);
	/* Expired (a daemon died with the source at its cap): passes, and the
	 * program deletes the entry on the way. */
	set_src_cap(CL4, EG_ACT_DROP, 1);
	run_spec("expired entry: SYN passes", &(struct pk){.flags = TH_SYN}, XDP_PASS,
		 EG_STAT_PASS);
	assert_int_equal(bpfmaps_src_cap_del(G, src), -ENOENT);
	/* Refused: other actions; clear and gc. */
	assert_int_equal(bpfmaps_src_cap_set(G, src, &(struct eg_src_cap){.action = EG_ACT_PASS}),
			 -EINVAL);
	set_src_cap("198.18.0.7", EG_ACT_DROP, 1);
	set_src_cap("198.18.0.8", EG_ACT_DROP, later);
	assert_int_equal(bpfmaps_gc(G, eg_mono_ns()), 1);
	set_src_cap("198.18.0.9", EG_ACT_DROP, later);
	assert_int_equal(bpfmaps_src_cap_clear(G), 3); /* .8, .9 and the v6 /64 */
	run_spec("cleared", &(struct pk){.v6 = 1, .flags = TH_SYN}, XDP_PASS, EG_STAT_PASS);
}

/* bpfmaps_src_cap_each (the master's refresh): the callback's changes are
 * written back; an entry deleted meanwhile (a worker saw its source fall
 * below the cap) is not written again. */
struct each_seen {
	int n;
	uint64_t expires_ns;
};

static int each_refresh_7(void *arg, const uint8_t src[16], struct eg_src_cap *v)
{
	struct each_seen *e = arg;
	e->n++;
	if (src[15] == 8) { /* deleted under our feet before the write */
		assert_int_equal(bpfmaps_src_cap_del(G, src), 0);
		v->expires_ns = e->expires_ns;
		return 1;
	}
	if (src[15] != 7)
		return 0;
	v->expires_ns = e->expires_ns;
	return 1;
}

static void test_src_cap_each(void **state)
{
	uint64_t soon = eg_mono_ns() + 1000000000ull, later = soon + 60000000000ull;
	struct each_seen e = {.expires_ns = later};

	(void)state;
	set_src_cap("198.18.0.7", EG_ACT_DROP, soon);
	set_src_cap("198.18.0.8", EG_ACT_DROP, soon);
	set_src_cap("198.18.0.9", EG_ACT_DROP, soon);
	assert_int_equal(bpfmaps_src_cap_each(G, each_refresh_7, &e), 1);
	assert_int_equal(e.n, 3);
	/* .7 outlives its first expiry, .9 does not, .8 stays deleted */
	assert_int_equal(bpfmaps_gc(G, soon + 1), 1);
	run_spec("the rewritten entry holds", &(struct pk){.flags = TH_SYN, .src = "198.18.0.7"},
		 XDP_DROP, EG_STAT_CONN_CAP);
	run_spec("the deleted one is not written again",
		 &(struct pk){.flags = TH_SYN, .src = "198.18.0.8"}, XDP_PASS, EG_STAT_PASS);
	assert_int_equal(bpfmaps_src_cap_clear(G), 1);
}

/* A gate loaded with BPFMAPS_F_NO_RST enforces RST verdicts as drops. */
static void test_feature_no_rst(void **state)
{
	struct bpfmaps_opts o = {.pin_dir = NULL,
				 .flags = BPFMAPS_F_NO_RST | BPFMAPS_F_NO_SRC_BLOCK};
	struct pk s = {.sport = 43000};
	struct eg_flow_key k;
	struct eg_flow_verdict v = {.action = EG_ACT_RST};
	uint8_t buf[512];
	struct run r;
	size_t len;
	int err;
	struct bpfmaps *g2 = bpfmaps_open_opts(&o, &err);

	(void)state;
	assert_non_null(g2);
	key_of(&s, &k);
	assert_int_equal(bpfmaps_flow_set(g2, &k, &v), 0);
	assert_int_equal(bpfmaps_prefix_set(g2, CL4 "/32", &(struct eg_lpm_val){.action = 1}), 0);
	len = pk_build(&s, buf);
	run_raw(bpfmaps_prog_fd(g2, BPFMAPS_PROG_XDP), buf, len, &r);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.action, XDP_DROP);
	s.sport = 43001; /* no flow verdict; the prefix step is compiled out */
	len = pk_build(&s, buf);
	run_raw(bpfmaps_prog_fd(g2, BPFMAPS_PROG_XDP), buf, len, &r);
	assert_int_equal(r.action, XDP_PASS);
	bpfmaps_close(g2);
}

/* ---- library: gc, mirrors ------------------------------------------------------------------- */

static void test_gc(void **state)
{
	uint64_t now = eg_mono_ns();
	struct eg_flow_key k;
	struct eg_flow_verdict v;
	struct pk s = {0};

	(void)state;
	s.sport = 1;
	set_flow(&s, EG_ACT_DROP, 1); /* expired */
	s.sport = 2;
	set_flow(&s, EG_ACT_DROP, now + 60000000000ull); /* live */
	s.sport = 3;
	set_flow(&s, EG_ACT_DROP, 0); /* never expires */
	set_prefix("198.18.5.0/24", EG_ACT_DROP, 1);
	set_prefix("198.18.6.0/24", EG_ACT_DROP, now + 60000000000ull);
	assert_int_equal(bpfmaps_gc(G, now), 2);
	s.sport = 2;
	key_of(&s, &k);
	assert_int_equal(bpfmaps_flow_get(G, &k, &v), 0);
	s.sport = 1;
	key_of(&s, &k);
	assert_int_equal(bpfmaps_flow_get(G, &k, &v), -ENOENT);
	assert_int_equal(bpfmaps_prefix_del(G, "198.18.5.0/24"), -ENOENT);
	assert_int_equal(bpfmaps_prefix_del(G, "198.18.6.0/24"), 0);
	/* many batches */
	for (int i = 0; i < 1000; i++) {
		s.sport = (uint16_t)(10000 + i);
		set_flow(&s, EG_ACT_DROP, i % 2 ? 1 : 0);
	}
	assert_int_equal(bpfmaps_gc(G, now), 500);
	assert_int_equal(bpfmaps_gc(G, now), 0);
}

static void test_mirrors(void **state)
{
	static uint32_t table[EG_MAGLEV_SIZE];
	struct eg_backend b = {.port = htons(8443), .up = 1, .weight = 3, .conns = 999};
	struct eg_backend got;
	struct eg_conn_steer st = {.steer_key = 42, .backend = 3, .worker = 1}, st2;
	struct eg_worker w = {.accepting = 1, .load = 42}, w2;
	struct eg_flow_key k;
	uint32_t idx, val;
	int fd;

	(void)state;
	for (uint32_t i = 0; i < EG_MAGLEV_SIZE; i++)
		table[i] = i % 7;
	assert_int_equal(bpfmaps_mirror_maglev(G, table, EG_MAGLEV_SIZE), 0);
	fd = bpfmaps_map_fd(G, EG_MAP_MAGLEV);
	for (idx = 0; idx < EG_MAGLEV_SIZE; idx += 4099) {
		assert_int_equal(bpf_map_lookup_elem(fd, &idx, &val), 0);
		assert_int_equal(val, idx % 7);
	}
	idx = EG_MAGLEV_SIZE - 1;
	assert_int_equal(bpf_map_lookup_elem(fd, &idx, &val), 0);
	assert_int_equal(val, idx % 7);
	assert_int_equal(bpfmaps_mirror_maglev(G, table, EG_MAGLEV_SIZE + 1), -EINVAL);

	strcpy(b.name, "exch-a");
	assert_int_equal(bpfmaps_mirror_backend(G, 3, &b), 0);
	assert_int_equal(bpfmaps_backend_conns_add(G, 3, 5), 0);
	assert_int_equal(bpfmaps_backend_conns_add(G, 3, -2), 0);
	fd = bpfmaps_map_fd(G, EG_MAP_BACKENDS);
	idx = 3;
	assert_int_equal(bpf_map_lookup_elem(fd, &idx, &got), 0);
	assert_string_equal(got.name, "exch-a");
	assert_int_equal(got.port, htons(8443));
	assert_int_equal(got.weight, 3);
	assert_int_equal(got.conns, 3); /* b.conns ignored: the gauge is the workers' */
	assert_int_equal(bpfmaps_backend_conns_add(G, 3, -10), 0);
	assert_int_equal(bpf_map_lookup_elem(fd, &idx, &got), 0);
	assert_int_equal(got.conns, 0); /* saturates */
	assert_int_equal(bpfmaps_mirror_backend(G, EG_MAX_BACKENDS, &b), -EINVAL);

	key_of(&(struct pk){.sport = 777}, &k);
	assert_int_equal(bpfmaps_steer_set(G, &k, &st), 0);
	assert_int_equal(bpf_map_lookup_elem(bpfmaps_map_fd(G, EG_MAP_CONN_STEER), &k, &st2), 0);
	assert_int_equal(st2.backend, 3);
	assert_int_equal(bpfmaps_steer_del(G, &k), 0);
	assert_int_equal(bpfmaps_steer_del(G, &k), -ENOENT);

	assert_int_equal(bpfmaps_worker_set(G, 5, &w), 0);
	idx = 5;
	assert_int_equal(bpf_map_lookup_elem(bpfmaps_map_fd(G, EG_MAP_WORKERS), &idx, &w2), 0);
	assert_int_equal(w2.accepting, 1);
	assert_int_equal(w2.load, 42);
	assert_int_equal(bpfmaps_worker_set(G, EG_MAX_WORKERS, &w), -EINVAL);
	assert_int_equal(bpfmaps_map_fd(G, "nope"), -ENOENT);
}

/* The daemon forks workers after bpfmaps_open: a child's writes (map fds,
 * shared mappings) must reach the parent's view, and a child closing its
 * copy must not disturb the parent. */
static void test_fork(void **state)
{
	struct eg_worker w = {.accepting = 1, .load = 9}, got;
	struct eg_backend b;
	struct eg_flow_key k;
	struct eg_flow_verdict v;
	uint32_t idx;
	int status;
	pid_t pid;

	(void)state;
	key_of(&(struct pk){.sport = 4242}, &k);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int bad = bpfmaps_backend_conns_add(G, 4, 7) || bpfmaps_worker_set(G, 6, &w) ||
			  bpfmaps_flow_set(G, &k, &(struct eg_flow_verdict){.action = 1});
		bpfmaps_close(G);
		_exit(bad);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	idx = 4;
	assert_int_equal(bpf_map_lookup_elem(bpfmaps_map_fd(G, EG_MAP_BACKENDS), &idx, &b), 0);
	assert_int_equal(b.conns, 7);
	idx = 6;
	assert_int_equal(bpf_map_lookup_elem(bpfmaps_map_fd(G, EG_MAP_WORKERS), &idx, &got), 0);
	assert_int_equal(got.load, 9);
	assert_int_equal(bpfmaps_flow_get(G, &k, &v), 0);
	run_spec("verdict written by a child is enforced", &(struct pk){.sport = 4242}, XDP_DROP,
		 EG_STAT_FLOW_DROP);
}

int main(void)
{
	/* Pure user-space arithmetic and parsing: no privileges needed. */
	const struct CMUnitTest pure[] = {
	    cmocka_unit_test(test_bucket_math),
	    cmocka_unit_test(test_parse_cidr),
	    cmocka_unit_test(test_flow_key_from_addrs),
	};
	const struct CMUnitTest bpf[] = {
	    cmocka_unit_test_setup(test_fixtures, reset),
	    cmocka_unit_test_setup(test_truncation, reset),
	    cmocka_unit_test_setup(test_port_list, reset),
	    cmocka_unit_test_setup(test_flow_verdict, reset),
	    cmocka_unit_test_setup(test_src_block, reset),
	    cmocka_unit_test_setup(test_syn_rate, reset),
	    cmocka_unit_test_setup(test_rst, reset),
	    cmocka_unit_test_setup(test_src_cap, reset),
	    cmocka_unit_test_setup(test_src_cap_each, reset),
	    cmocka_unit_test_setup(test_feature_no_rst, reset),
	    cmocka_unit_test_setup(test_gc, reset),
	    cmocka_unit_test_setup(test_mirrors, reset),
	    cmocka_unit_test_setup(test_fork, reset),
	};
	int err, rc;

	rc = cmocka_run_group_tests_name("user space", pure, NULL, NULL);
	if (geteuid() != 0) {
		printf("SKIP: the BPF part of test_bpf_xdp needs root (BPF_PROG_TEST_RUN)\n");
		return rc ? 1 : 77;
	}
	log_set_level(LOG_WARN);
	G = bpfmaps_open(NULL, &err);
	if (!G) {
		/* Not permitted is a skip; a kernel that refuses the programs is
		 * exactly what this test is for. */
		printf("%s: cannot load the BPF programs: %s\n", err == -EPERM ? "SKIP" : "FAIL",
		       strerror(-err));
		return err == -EPERM && !rc ? 77 : 1;
	}
	PROG = bpfmaps_prog_fd(G, BPFMAPS_PROG_XDP);
	rc |= cmocka_run_group_tests_name("bpf", bpf, NULL, NULL);
	bpfmaps_close(G);
	return rc ? 1 : 0;
}
