// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * xdp_gate.bpf.c - the XDP verdict filter on the gateway's ingress interface.
 *
 * The daemon decides in userspace (after TLS, EAS classification and device
 * policy) that a connection belongs to a blocked, quarantined or flooding
 * phone and writes its 5-tuple into flow_verdict. From then on this program
 * drops that flow's packets, or answers them with a TCP RST, while other
 * phones behind the same NAT address (other source ports) are untouched.
 *
 * Steps, each returning an XDP action ("decided") or EG_CONTINUE:
 *   parse     Ethernet, <= 2 VLAN tags, IPv4/IPv6 (+ext headers), TCP;
 *             not TCP -> NOT_TCP, truncated/invalid -> MALFORMED (both pass:
 *             the stack gets to judge what we cannot)
 *   port      dst port not in xdp_cfg.ports -> OTHER_PORT (pass). An empty
 *             port list guards every TCP port.
 *   flow      flow_verdict hit: DROP / RST / PASS (an explicit allow that
 *             skips the later steps); expired -> delete + FLOW_EXPIRED (pass)
 *   prefix    src_block longest-prefix hit: DROP or RST (LPM_DROP); a PASS
 *             entry carves an allowed prefix out of a wider blocked one
 *   src cap   SYN without ACK from a source in src_cap (the daemon counts
 *             its open connections and found it at its cap) -> CONN_CAP:
 *             DROP, or RST as the entry says; expired -> deleted, pass on
 *   syn rate  SYN without ACK over the per-source token bucket -> RATE_DROP
 *             (a source is an IPv4 address or an IPv6 /64)
 * Every packet is counted exactly once in xdp_stats, at the single exit. The
 * stat names the verdict that matched: a RST verdict on a segment that is
 * itself a RST (never answered, RFC 9293) drops it and still counts FLOW_RST.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "easgate_abi.h"
#define EG_MAPS_GATE
#include "maps.h"
#include "parse.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * Load-time features, set through the skeleton's rodata before load; the
 * verifier removes the disabled steps as dead code.
 *   eg_feat_rst:       0 = enforce RST verdicts as DROP (an interface where
 *                      XDP_TX does not work)
 *   eg_feat_src_block: 0 = skip the prefix lookup
 *   eg_feat_syn_rate:  0 = skip the SYN token bucket
 *   eg_feat_src_cap:   0 = skip the connection-cap lookup
 */
const volatile __u8 eg_feat_rst = 1;
const volatile __u8 eg_feat_src_block = 1;
const volatile __u8 eg_feat_syn_rate = 1;
const volatile __u8 eg_feat_src_cap = 1;

#define EG_CONTINUE   (-1)
#define EG_L3_OFF_MAX (14 + 4 * EG_VLAN_MAX)
#define EG_RST_TTL    64

/* What the steps need to know about the packet, copied out of it. */
struct eg_pkt {
	struct eg_flow_key key; /* src = sender, v4 mapped; ports network order */
	__u32 seq;		/* network order */
	__u32 ack_seq;		/* network order */
	__u32 l3_off;		/* IP header offset from data (after VLAN tags) */
	__u32 seg_len;		/* TCP payload bytes, per the IP length fields */
	__u8 tcp_flags;		/* byte 13 of the TCP header */
	__u8 is_v6;
};

/* Header layouts without bitfields, for building the RST. */
struct eg_ip4_raw {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__be16 check;
	__be32 saddr;
	__be32 daddr;
};

struct eg_ip6_raw {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct eg_tcp_raw {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res;
	__u8 flags;
	__be16 window;
	__be16 check;
	__be16 urg_ptr;
};

static __always_inline __u64 eg_now(__u64 *now)
{
	if (!*now)
		*now = bpf_ktime_get_ns();
	return *now;
}

static __always_inline int eg_decide(__u32 *stat, __u32 s, int action)
{
	*stat = s;
	return action;
}

/* ---- RST generation --------------------------------------------------------- */

/* Ones' complement sum of an even number of bytes (any byte order, see RFC 1071). */
static __always_inline __u64 eg_csum_add(__u64 sum, const void *buf, int len)
{
	const __u16 *w = buf;

#pragma unroll
	for (int i = 0; i < len / 2; i++)
		sum += w[i];
	return sum;
}

static __always_inline __u16 eg_csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/*
 * The reset for an incoming segment, per RFC 9293 3.10.7.1: if it carries
 * an ACK, <SEQ=SEG.ACK><CTL=RST>; otherwise <SEQ=0><ACK=SEG.SEQ+SEG.LEN>
 * <CTL=RST,ACK>, where SEG.LEN counts SYN and FIN. No options, window 0.
 */
static __always_inline void eg_rst_tcp(const struct eg_pkt *p, struct eg_tcp_raw *t)
{
	__builtin_memset(t, 0, sizeof(*t));
	t->source = p->key.dport;
	t->dest = p->key.sport;
	t->doff_res = 5 << 4;
	if (p->tcp_flags & EG_TCP_ACK) {
		t->seq = p->ack_seq;
		t->flags = EG_TCP_RST;
	} else {
		__u32 len =
		    p->seg_len + !!(p->tcp_flags & EG_TCP_SYN) + !!(p->tcp_flags & EG_TCP_FIN);

		t->ack_seq = bpf_htonl(bpf_ntohl(p->seq) + len);
		t->flags = EG_TCP_RST | EG_TCP_ACK;
	}
}

/*
 * Rewrite the frame in place as l2 | l3 (l3_len bytes) | tcp: shrink it to
 * that size (dropping IP options, IPv6 extension headers, TCP options and
 * payload), swap the MACs, keep any VLAN tags. l3_len is a constant after
 * inlining, so the copies are fixed-size stores the verifier can check.
 */
static __always_inline int eg_rst_emit(struct xdp_md *ctx, __u32 off, const void *l3, __u32 l3_len,
				       const struct eg_tcp_raw *tcp)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth;
	__u8 mac[EG_ETH_ALEN];
	int delta;

	if (off > EG_L3_OFF_MAX)
		return XDP_DROP;
	delta = (int)(off + l3_len + sizeof(*tcp)) - (int)(end - data);
	if (delta < 0 && bpf_xdp_adjust_tail(ctx, delta))
		return XDP_DROP;
	data = eg_ctx_data(ctx);
	end = eg_ctx_end(ctx);
	eth = data;
	/* Two checks: the verifier tracks data and data + off separately. */
	if ((void *)(eth + 1) > end || data + off + l3_len + sizeof(*tcp) > end)
		return XDP_DROP;
	__builtin_memcpy(mac, eth->h_dest, EG_ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, EG_ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, EG_ETH_ALEN);
	__builtin_memcpy(data + off, l3, l3_len);
	__builtin_memcpy(data + off + l3_len, tcp, sizeof(*tcp));
	return XDP_TX;
}

static __always_inline int eg_rst_v4(struct xdp_md *ctx, const struct eg_pkt *p)
{
	struct eg_ip4_raw ip = {};
	struct eg_tcp_raw tcp;
	__u64 sum;

	eg_rst_tcp(p, &tcp);
	ip.ver_ihl = 0x45;
	ip.tot_len = bpf_htons(sizeof(ip) + sizeof(tcp));
	ip.frag_off = bpf_htons(EG_IP_DF); /* id 0 + DF: an atomic datagram (RFC 6864) */
	ip.ttl = EG_RST_TTL;
	ip.protocol = IPPROTO_TCP;
	__builtin_memcpy(&ip.saddr, &p->key.daddr[12], 4);
	__builtin_memcpy(&ip.daddr, &p->key.saddr[12], 4);
	ip.check = eg_csum_fold(eg_csum_add(0, &ip, sizeof(ip)));

	sum = eg_csum_add(0, &ip.saddr, 8); /* pseudo header: addresses, proto, length */
	sum += bpf_htons(IPPROTO_TCP) + bpf_htons(sizeof(tcp));
	tcp.check = eg_csum_fold(eg_csum_add(sum, &tcp, sizeof(tcp)));
	return eg_rst_emit(ctx, p->l3_off, &ip, sizeof(ip), &tcp);
}

static __always_inline int eg_rst_v6(struct xdp_md *ctx, const struct eg_pkt *p)
{
	struct eg_ip6_raw ip6 = {};
	struct eg_tcp_raw tcp;
	__u64 sum;

	eg_rst_tcp(p, &tcp);
	ip6.ver_tc_flow = bpf_htonl(0x60000000);
	ip6.payload_len = bpf_htons(sizeof(tcp));
	ip6.nexthdr = IPPROTO_TCP;
	ip6.hop_limit = EG_RST_TTL;
	__builtin_memcpy(ip6.saddr, p->key.daddr, 16);
	__builtin_memcpy(ip6.daddr, p->key.saddr, 16);

	sum = eg_csum_add(0, ip6.saddr, 32); /* pseudo header (RFC 8200 8.1) */
	sum += bpf_htons(sizeof(tcp)) + bpf_htons(IPPROTO_TCP);
	tcp.check = eg_csum_fold(eg_csum_add(sum, &tcp, sizeof(tcp)));
	return eg_rst_emit(ctx, p->l3_off, &ip6, sizeof(ip6), &tcp);
}

/* Answer with a RST in place of the segment; never answer a RST (RFC 9293). */
static __always_inline int eg_act_rst(struct xdp_md *ctx, const struct eg_pkt *p)
{
	if (!eg_feat_rst || (p->tcp_flags & EG_TCP_RST))
		return XDP_DROP;
	return p->is_v6 ? eg_rst_v6(ctx, p) : eg_rst_v4(ctx, p);
}

/* ---- steps ------------------------------------------------------------------ */

static __always_inline int eg_step_parse(struct xdp_md *ctx, struct eg_pkt *p, __u32 *stat)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct eg_cursor c = {.pos = data};
	struct ethhdr *eth;
	struct iphdr *iph;
	struct ipv6hdr *ip6;
	struct tcphdr *th;
	__u32 l4len = 0;
	int proto, hlen;

	proto = eg_parse_eth(&c, end, &eth);
	if (proto == EG_PARSE_BAD)
		return eg_decide(stat, EG_STAT_MALFORMED, XDP_PASS);
	p->l3_off = c.pos - data;
	if (proto == bpf_htons(EG_ETH_P_IP)) {
		proto = eg_parse_ipv4(&c, end, &iph, &l4len);
		if (proto == IPPROTO_TCP) {
			p->key.saddr[10] = 0xff;
			p->key.saddr[11] = 0xff;
			p->key.daddr[10] = 0xff;
			p->key.daddr[11] = 0xff;
			__builtin_memcpy(&p->key.saddr[12], &iph->saddr, 4);
			__builtin_memcpy(&p->key.daddr[12], &iph->daddr, 4);
		}
	} else if (proto == bpf_htons(EG_ETH_P_IPV6)) {
		proto = eg_parse_ipv6(&c, end, &ip6, &l4len);
		if (proto == IPPROTO_TCP) {
			__builtin_memcpy(p->key.saddr, &ip6->saddr, 16);
			__builtin_memcpy(p->key.daddr, &ip6->daddr, 16);
			p->is_v6 = 1;
		}
	} else {
		return eg_decide(stat, EG_STAT_NOT_TCP, XDP_PASS);
	}
	if (proto == EG_PARSE_BAD)
		return eg_decide(stat, EG_STAT_MALFORMED, XDP_PASS);
	if (proto != IPPROTO_TCP)
		return eg_decide(stat, EG_STAT_NOT_TCP, XDP_PASS);
	hlen = eg_parse_tcp(&c, end, &th, l4len);
	if (hlen == EG_PARSE_BAD)
		return eg_decide(stat, EG_STAT_MALFORMED, XDP_PASS);
	p->key.sport = th->source;
	p->key.dport = th->dest;
	p->seq = th->seq;
	p->ack_seq = th->ack_seq;
	p->tcp_flags = ((__u8 *)th)[13];
	p->seg_len = l4len - hlen;
	return EG_CONTINUE;
}

/* Empty port list = guard all TCP; otherwise only the listed dst ports. */
static __always_inline int eg_step_port(const struct eg_xdp_cfg *cfg, const struct eg_pkt *p,
					__u32 *stat)
{
	int listed = 0;

	if (!cfg)
		return EG_CONTINUE;
#pragma unroll
	for (int i = 0; i < EG_MAX_GUARDED_PORTS; i++) {
		if (!cfg->ports[i])
			continue;
		if (cfg->ports[i] == p->key.dport)
			return EG_CONTINUE;
		listed = 1;
	}
	return listed ? eg_decide(stat, EG_STAT_OTHER_PORT, XDP_PASS) : EG_CONTINUE;
}

static __always_inline int eg_step_flow(struct xdp_md *ctx, const struct eg_pkt *p, __u64 *now,
					__u32 *stat)
{
	struct eg_flow_verdict *v = bpf_map_lookup_elem(&flow_verdict, &p->key);

	if (!v)
		return EG_CONTINUE;
	if (v->expires_ns && eg_now(now) >= v->expires_ns) {
		/* Lazy expiry; bpfmaps_gc sweeps the flows that never come back. */
		bpf_map_delete_elem(&flow_verdict, &p->key);
		return eg_decide(stat, EG_STAT_FLOW_EXPIRED, XDP_PASS);
	}
	switch (v->action) {
	case EG_ACT_DROP:
		v->hits++; /* racy by design (ABI: approximate) */
		return eg_decide(stat, EG_STAT_FLOW_DROP, XDP_DROP);
	case EG_ACT_RST:
		v->hits++;
		return eg_decide(stat, EG_STAT_FLOW_RST, eg_act_rst(ctx, p));
	case EG_ACT_PASS:
		v->hits++;
		return eg_decide(stat, EG_STAT_PASS, XDP_PASS);
	default:
		return EG_CONTINUE; /* unknown action: ignore the entry */
	}
}

/*
 * Nothing to find in an empty src_block (the usual state): skip the trie
 * walk, most of this program's cost over a bare lookup. Reads the kernel's
 * entry count through the map pointer (read-only BTF access, CAP_PERFMON);
 * on a kernel without that field it always walks. A prefix being inserted
 * at this very moment applies from the next packet.
 */
static __always_inline int eg_src_block_empty(void)
{
	struct lpm_trie *t = (struct lpm_trie *)&src_block;

	if (!bpf_core_field_exists(t->n_entries))
		return 0;
	return t->n_entries == 0;
}

static __always_inline int eg_step_src_block(struct xdp_md *ctx, const struct eg_pkt *p, __u64 *now,
					     __u32 *stat)
{
	struct eg_lpm_key k = {.prefixlen = 128};
	struct eg_lpm_val *v;

	if (eg_src_block_empty())
		return EG_CONTINUE;
	__builtin_memcpy(k.addr, p->key.saddr, 16);
	v = bpf_map_lookup_elem(&src_block, &k);
	if (!v)
		return EG_CONTINUE;
	/* Expired: ignored here (the matched prefix length is unknown, so it
	 * cannot be deleted from here); bpfmaps_gc removes it. */
	if (v->expires_ns && eg_now(now) >= v->expires_ns)
		return EG_CONTINUE;
	if (v->action == EG_ACT_DROP)
		return eg_decide(stat, EG_STAT_LPM_DROP, XDP_DROP);
	if (v->action == EG_ACT_RST)
		return eg_decide(stat, EG_STAT_LPM_DROP, eg_act_rst(ctx, p));
	return EG_CONTINUE;
}

/*
 * New connections only (SYN without ACK): a source the daemon found at its
 * connection cap. Only SYNs pay for the lookup; the connections the source
 * already has are untouched. The lookup is a fixed-size key copied out of
 * the packet: nothing here reads packet memory.
 */
static __always_inline int eg_step_src_cap(struct xdp_md *ctx, const struct eg_pkt *p, __u64 *now,
					   __u32 *stat)
{
	struct eg_rate_key k;
	struct eg_src_cap *v;

	if ((p->tcp_flags & (EG_TCP_SYN | EG_TCP_ACK)) != EG_TCP_SYN)
		return EG_CONTINUE;
	__builtin_memcpy(k.addr, p->key.saddr, 16);
	if (p->is_v6) /* keyed like src_rate: the /64 */
		__builtin_memset(&k.addr[8], 0, 8);
	v = bpf_map_lookup_elem(&src_cap, &k);
	if (!v)
		return EG_CONTINUE;
	if (v->expires_ns && eg_now(now) >= v->expires_ns) {
		bpf_map_delete_elem(&src_cap, &k);
		return EG_CONTINUE;
	}
	if (v->action == EG_ACT_RST)
		return eg_decide(stat, EG_STAT_CONN_CAP, eg_act_rst(ctx, p));
	return eg_decide(stat, EG_STAT_CONN_CAP, XDP_DROP);
}

/* New connections only (SYN without ACK): a source over its bucket is dropped. */
static __always_inline int eg_step_syn_rate(const struct eg_xdp_cfg *cfg, const struct eg_pkt *p,
					    __u64 *now, __u32 *stat)
{
	struct eg_rate_key rk;
	struct eg_rate_state *s;
	__u32 rate, burst;
	__u64 t;

	if ((p->tcp_flags & (EG_TCP_SYN | EG_TCP_ACK)) != EG_TCP_SYN || !cfg || !cfg->syn_rate)
		return EG_CONTINUE;
	rate = cfg->syn_rate;
	burst = cfg->syn_burst;
	t = eg_now(now);
	__builtin_memcpy(rk.addr, p->key.saddr, 16);
	if (p->is_v6) /* one bucket per /64: a host can rotate through its /64 */
		__builtin_memset(&rk.addr[8], 0, 8);
	s = bpf_map_lookup_elem(&src_rate, &rk);
	if (!s) {
		struct eg_rate_state fresh = {
		    .tokens_milli = (__u64)(burst ? burst : 1) * EG_TOKEN_MILLI,
		    .last_ns = t,
		};

		eg_bucket_take(&fresh, t, rate, burst);
		bpf_map_update_elem(&src_rate, &rk, &fresh, BPF_NOEXIST);
		return EG_CONTINUE;
	}
	if (eg_bucket_take(s, t, rate, burst))
		return EG_CONTINUE;
	return eg_decide(stat, EG_STAT_RATE_DROP, XDP_DROP);
}

static __always_inline int eg_gate(struct xdp_md *ctx, __u32 *stat)
{
	const struct eg_xdp_cfg *cfg;
	struct eg_pkt p;
	__u32 zero = 0;
	__u64 now = 0;
	int act;

	__builtin_memset(&p, 0, sizeof(p));
	act = eg_step_parse(ctx, &p, stat);
	if (act != EG_CONTINUE)
		return act;
	cfg = bpf_map_lookup_elem(&xdp_cfg, &zero);
	act = eg_step_port(cfg, &p, stat);
	if (act != EG_CONTINUE)
		return act;
	act = eg_step_flow(ctx, &p, &now, stat);
	if (act != EG_CONTINUE)
		return act;
	if (eg_feat_src_block) {
		act = eg_step_src_block(ctx, &p, &now, stat);
		if (act != EG_CONTINUE)
			return act;
	}
	if (eg_feat_src_cap) {
		act = eg_step_src_cap(ctx, &p, &now, stat);
		if (act != EG_CONTINUE)
			return act;
	}
	if (eg_feat_syn_rate) {
		act = eg_step_syn_rate(cfg, &p, &now, stat);
		if (act != EG_CONTINUE)
			return act;
	}
	return eg_decide(stat, EG_STAT_PASS, XDP_PASS);
}

SEC("xdp")
int xdp_gate(struct xdp_md *ctx)
{
	__u64 bytes = ctx->data_end - ctx->data; /* before any RST rewrite */
	__u32 stat = EG_STAT_PASS;
	struct eg_stat_val *sv;
	int act;

	act = eg_gate(ctx, &stat);
	sv = bpf_map_lookup_elem(&xdp_stats, &stat);
	if (sv) {
		sv->packets++; /* per-CPU: no atomics needed */
		sv->bytes += bytes;
	}
	return act;
}
