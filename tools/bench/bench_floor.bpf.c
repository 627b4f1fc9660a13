// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * bench_floor.bpf.c - reference programs for tools/bench/xdp_bench.c.
 *
 *   xdp_empty   returns XDP_PASS: the cost of BPF_PROG_TEST_RUN itself.
 *               Also attached to the client-side veth in test_bpf_netns,
 *               where native XDP_TX needs a program on the peer.
 *   xdp_floor   the least a verdict filter can do: the same parsers as
 *               xdp_gate (Ethernet/VLAN, IPv4/IPv6, TCP), one LRU lookup of
 *               the 5-tuple, drop on hit. xdp_gate is judged against it.
 * Nothing here is pinned or used by the daemon.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "easgate_abi.h"
#include "parse.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Same shape as flow_verdict, unpinned. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EG_FLOW_VERDICT_MAX);
	__type(key, struct eg_flow_key);
	__type(value, struct eg_flow_verdict);
} floor_flows SEC(".maps");

SEC("xdp")
int xdp_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	void *end = (void *)(long)ctx->data_end;
	struct eg_cursor c = {.pos = (void *)(long)ctx->data};
	struct eg_flow_key key = {};
	struct ethhdr *eth;
	struct iphdr *iph;
	struct ipv6hdr *ip6;
	struct tcphdr *th;
	__u32 l4len = 0;
	int proto;

	proto = eg_parse_eth(&c, end, &eth);
	if (proto == bpf_htons(EG_ETH_P_IP)) {
		if (eg_parse_ipv4(&c, end, &iph, &l4len) != IPPROTO_TCP)
			return XDP_PASS;
		key.saddr[10] = key.saddr[11] = key.daddr[10] = key.daddr[11] = 0xff;
		__builtin_memcpy(&key.saddr[12], &iph->saddr, 4);
		__builtin_memcpy(&key.daddr[12], &iph->daddr, 4);
	} else if (proto == bpf_htons(EG_ETH_P_IPV6)) {
		if (eg_parse_ipv6(&c, end, &ip6, &l4len) != IPPROTO_TCP)
			return XDP_PASS;
		__builtin_memcpy(key.saddr, &ip6->saddr, 16);
		__builtin_memcpy(key.daddr, &ip6->daddr, 16);
	} else {
		return XDP_PASS;
	}
	if (eg_parse_tcp(&c, end, &th, l4len) == EG_PARSE_BAD)
		return XDP_PASS;
	key.sport = th->source;
	key.dport = th->dest;
	return bpf_map_lookup_elem(&floor_flows, &key) ? XDP_DROP : XDP_PASS;
}
