/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * parse.h - bounds-checked packet parsers for the XDP programs, and the
 * SYN token-bucket arithmetic.
 *
 * Two parts:
 *  1. eg_bucket_take(): pure integer arithmetic on struct eg_rate_state. It is
 *     compiled into the XDP program AND into tests/bpf/test_bpf_xdp.c, which
 *     checks the refill math directly (BPF_PROG_TEST_RUN cannot fake time).
 *     Needs only <linux/types.h> (or vmlinux.h) and easgate_abi.h.
 *  2. Cursor parsers (BPF only): each takes a cursor, checks bounds against
 *     data_end, advances the cursor past its header and returns the next
 *     protocol, or EG_PARSE_BAD when the header is truncated or invalid.
 */
#ifndef EG_BPF_PARSE_H
#define EG_BPF_PARSE_H

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define EG_TOKEN_MILLI 1000ULL /* struct eg_rate_state counts tokens x 1000 */

/*
 * Refill the bucket for the time elapsed since s->last_ns at `rate` tokens
 * per second (capped at `burst` tokens), then try to take one token.
 * Returns 1 if a token was taken (the SYN may pass), 0 if the bucket is empty.
 * A fresh source starts as { .tokens_milli = burst * 1000, .last_ns = now }.
 *
 * Refill is integer: tokens_milli += elapsed_ns * rate / 1e6. When that
 * rounds to zero, last_ns is left alone so that closely spaced SYNs still
 * accumulate refill (otherwise a steady flood at a low rate would never
 * earn a token back). A clock that appears to go backwards (two CPUs racing
 * on the same entry) refills nothing. rate == 0 means "no limit".
 * No overflow: elapsed is compared with the time to fill the bucket first, so
 * elapsed * rate < (cap - tokens) * 1e6 <= 2^32 * 1e9 < 2^64.
 */
static __always_inline int eg_bucket_take(struct eg_rate_state *s, __u64 now, __u32 rate,
					  __u32 burst)
{
	__u64 cap = (__u64)(burst ? burst : 1) * EG_TOKEN_MILLI;
	__u64 tokens = s->tokens_milli;

	if (!rate)
		return 1;
	if (tokens >= cap) {
		tokens = cap; /* full (or the configured burst shrank) */
		s->last_ns = now;
	} else if (now > s->last_ns) {
		__u64 elapsed = now - s->last_ns;
		__u64 fill_ns = (cap - tokens) * 1000000ULL / rate;

		if (elapsed >= fill_ns) {
			tokens = cap;
			s->last_ns = now;
		} else {
			__u64 add = elapsed * rate / 1000000ULL;

			if (add) {
				tokens += add;
				s->last_ns = now;
			}
		}
	}
	if (tokens >= EG_TOKEN_MILLI) {
		s->tokens_milli = tokens - EG_TOKEN_MILLI;
		return 1;
	}
	s->tokens_milli = tokens;
	return 0;
}

#if defined(__bpf__) || defined(__BPF__)

/* Constants that are #defines in the kernel headers, hence not in vmlinux.h. */
#define EG_ETH_ALEN	6
#define EG_ETH_P_IP	0x0800
#define EG_ETH_P_IPV6	0x86DD
#define EG_ETH_P_8021Q	0x8100
#define EG_ETH_P_8021AD 0x88A8
#define EG_IP_MF	0x2000
#define EG_IP_DF	0x4000
#define EG_IP_OFFSET	0x1FFF
#define EG_NH_HOP	0  /* IPv6 hop-by-hop options */
#define EG_NH_ROUTING	43 /* IPv6 routing header */
#define EG_NH_FRAGMENT	44 /* IPv6 fragment header */
#define EG_NH_DEST	60 /* IPv6 destination options */
#define EG_IP6_FRAG_OFF 0xFFF8
#define EG_TCP_FIN	0x01
#define EG_TCP_SYN	0x02
#define EG_TCP_RST	0x04
#define EG_TCP_ACK	0x10
#define EG_VLAN_MAX	2 /* 802.1Q, or 802.1AD + 802.1Q (QinQ) */
#define EG_PARSE_BAD	(-1)
#define EG_PROTO_NOT_L4 256 /* non-first fragment: no transport header to look at */

/*
 * ctx->data / ctx->data_end read with a fixed-offset load. After a helper
 * call clang may otherwise keep "ctx + offset" in registers and load through
 * the sum, which the verifier rejects (modified ctx pointer).
 */
static __always_inline void *eg_ctx_data(struct xdp_md *ctx)
{
	void *p;

	asm volatile("%[p] = *(u32 *)(%[c] + %[o])"
		     : [p] "=r"(p)
		     : [c] "r"(ctx), [o] "i"(__builtin_offsetof(struct xdp_md, data)));
	return p;
}

static __always_inline void *eg_ctx_end(struct xdp_md *ctx)
{
	void *p;

	asm volatile("%[p] = *(u32 *)(%[c] + %[o])"
		     : [p] "=r"(p)
		     : [c] "r"(ctx), [o] "i"(__builtin_offsetof(struct xdp_md, data_end)));
	return p;
}

/*
 * A 16-bit network-order length in host order, with bounds the verifier
 * keeps. Linux 6.1's verifier forgets everything about a register after a
 * byte swap (BPF_END), so the length added to a packet pointer would be
 * unbounded ("math between pkt pointer and register with unbounded min
 * value"). The mask restores [0, 0xffff]; it is asm because clang knows a
 * swapped u16 fits in 16 bits and would drop a mask written in C.
 */
static __always_inline __u32 eg_ntohs_len(__be16 v)
{
	__u64 x = bpf_ntohs(v);

	asm volatile("%[x] &= 0xffff" : [x] "+r"(x));
	return (__u32)x;
}

/* Where the next header starts; only ever moves forward. */
struct eg_cursor {
	void *pos;
};

/*
 * Ethernet plus up to EG_VLAN_MAX VLAN tags. Returns the inner ethertype in
 * network byte order (a third tag is returned as-is: not IP, so not ours),
 * or EG_PARSE_BAD if truncated.
 */
static __always_inline int eg_parse_eth(struct eg_cursor *c, void *end, struct ethhdr **ethp)
{
	struct ethhdr *eth = c->pos;
	__u16 proto;

	if ((void *)(eth + 1) > end)
		return EG_PARSE_BAD;
	*ethp = eth;
	proto = eth->h_proto;
	c->pos = eth + 1;
#pragma unroll
	for (int i = 0; i < EG_VLAN_MAX; i++) {
		struct vlan_hdr *vh = c->pos;

		if (proto != bpf_htons(EG_ETH_P_8021Q) && proto != bpf_htons(EG_ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > end)
			return EG_PARSE_BAD;
		proto = vh->h_vlan_encapsulated_proto;
		c->pos = vh + 1;
	}
	return proto;
}

/*
 * IPv4 header with options. The datagram must be entirely present
 * (tot_len <= what we have; Ethernet padding beyond it is fine).
 * *l4len = tot_len - header length. Returns the protocol, EG_PROTO_NOT_L4
 * for a non-first fragment, or EG_PARSE_BAD.
 */
static __always_inline int eg_parse_ipv4(struct eg_cursor *c, void *end, struct iphdr **iphp,
					 __u32 *l4len)
{
	struct iphdr *iph = c->pos;
	__u32 hlen, tot;

	if ((void *)(iph + 1) > end)
		return EG_PARSE_BAD;
	if (iph->version != 4 || iph->ihl < 5)
		return EG_PARSE_BAD;
	hlen = iph->ihl * 4;
	tot = eg_ntohs_len(iph->tot_len);
	if (tot < hlen || c->pos + tot > end)
		return EG_PARSE_BAD;
	*iphp = iph;
	*l4len = tot - hlen;
	c->pos += hlen;
	if (iph->frag_off & bpf_htons(EG_IP_OFFSET))
		return EG_PROTO_NOT_L4;
	return iph->protocol;
}

static __always_inline int eg_ipv6_is_ext(__u8 nh)
{
	return nh == EG_NH_HOP || nh == EG_NH_ROUTING || nh == EG_NH_DEST || nh == EG_NH_FRAGMENT;
}

/*
 * IPv6 header and up to EG_IPV6_EXT_MAX extension headers (hop-by-hop,
 * routing, destination options, fragment). More extension headers than that
 * is EG_PARSE_BAD (the stack still gets the packet). Other next headers (AH,
 * ESP, no-next-header, UDP...) end the walk and are returned as-is.
 * *l4len = payload_len minus the extension headers.
 */
static __always_inline int eg_parse_ipv6(struct eg_cursor *c, void *end, struct ipv6hdr **ip6p,
					 __u32 *l4len)
{
	struct ipv6hdr *ip6 = c->pos;
	__u32 plen, ext = 0;
	__u8 nh;

	if ((void *)(ip6 + 1) > end)
		return EG_PARSE_BAD;
	if (ip6->version != 6)
		return EG_PARSE_BAD;
	plen = eg_ntohs_len(ip6->payload_len);
	if ((void *)(ip6 + 1) + plen > end)
		return EG_PARSE_BAD;
	*ip6p = ip6;
	nh = ip6->nexthdr;
	c->pos = ip6 + 1;
	for (int i = 0; i < EG_IPV6_EXT_MAX; i++) {
		if (nh == EG_NH_FRAGMENT) {
			struct frag_hdr *fh = c->pos;

			if ((void *)(fh + 1) > end)
				return EG_PARSE_BAD;
			if (fh->frag_off & bpf_htons(EG_IP6_FRAG_OFF))
				return EG_PROTO_NOT_L4;
			nh = fh->nexthdr;
			c->pos = fh + 1;
			ext += sizeof(*fh);
		} else if (eg_ipv6_is_ext(nh)) {
			struct ipv6_opt_hdr *oh = c->pos;
			__u32 len;

			if ((void *)(oh + 1) > end)
				return EG_PARSE_BAD;
			len = ((__u32)oh->hdrlen + 1) * 8;
			if (c->pos + len > end)
				return EG_PARSE_BAD;
			nh = oh->nexthdr;
			c->pos += len;
			ext += len;
		} else {
			break;
		}
	}
	if (eg_ipv6_is_ext(nh) || ext > plen)
		return EG_PARSE_BAD;
	*l4len = plen - ext;
	return nh;
}

/*
 * TCP header with options: doff >= 5 and the header must fit both in the
 * packet and in the IP payload. Returns the header length or EG_PARSE_BAD.
 */
static __always_inline int eg_parse_tcp(struct eg_cursor *c, void *end, struct tcphdr **thp,
					__u32 l4len)
{
	struct tcphdr *th = c->pos;
	__u32 hlen;

	if ((void *)(th + 1) > end)
		return EG_PARSE_BAD;
	hlen = th->doff * 4;
	if (hlen < sizeof(*th) || hlen > l4len || c->pos + hlen > end)
		return EG_PARSE_BAD;
	*thp = th;
	c->pos += hlen;
	return hlen;
}

#endif /* __bpf__ */
#endif /* EG_BPF_PARSE_H */
