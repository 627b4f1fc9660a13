// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * relay.bpf.c - move a TCP stream's bytes from one socket to another in the
 * kernel (user/kernel/krelay.c loads it; see krelay.h for when that pays).
 *
 * Maps of sockets (SOCKHASH, key = socket cookie):
 *   kr_src   sources relayed with a byte budget: kr_parse + kr_verdict
 *            (strparser) run on every byte they receive
 *   kr_vsrc  sources relayed without a budget: kr_skb_verdict on whole skbs
 *   kr_msrc  local senders whose sendmsg() is redirected (kr_msg, sk_msg)
 *   kr_dst   redirect targets (no programs: a socket that is only a target
 *            keeps receiving its own bytes through plain TCP)
 *
 * A budget must end exactly on a message boundary (an HTTP body followed by
 * the next request head). The parser therefore cuts messages at the budget:
 * it returns min(budget left, bytes available), and the verdict redirects a
 * message to the peer while budget is left. What arrives after the budget
 * is redirected to the *ingress* of a spill socket the flow owns (an
 * AF_UNIX pair in kr_dst), never passed to the source's own psock queue: a
 * socket's psock queue is freed when it leaves the map, so bytes passed
 * there would be lost at teardown. Userspace reads the spill, then the
 * source's TCP queue, in stream order.
 *
 * strparser hands the parser and the verdict the whole skb; the message
 * starts strp_msg(skb)->offset bytes in (several messages cut from one TCP
 * segment share it). skb->len alone would overstate what is available and
 * stall the stream, so the offset and the message length are read from the
 * kernel skb: the context of an sk_skb program is the kernel's struct
 * sk_buff, and bpf_probe_read_kernel copies strp_msg out of its control
 * block at offsets CO-RE takes from the running kernel's BTF. (The kfunc
 * bpf_cast_to_kern_ctx would read it in place, but exists only from Linux
 * 6.2: Debian 12 runs 6.1.) Needs CAP_PERFMON, as the daemon's loader has.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "easgate_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define KR_AF_INET 2

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, EG_KRELAY_MAX);
	__type(key, __u64);
	__type(value, __u64);
} kr_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, EG_KRELAY_MAX);
	__type(key, __u64);
	__type(value, __u64);
} kr_vsrc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, EG_KRELAY_MAX);
	__type(key, __u64);
	__type(value, __u64);
} kr_msrc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, EG_KRELAY_MAX * 2);
	__type(key, __u64);
	__type(value, __u64);
} kr_dst SEC(".maps");

/* Source cookie -> flow state (kr_src and kr_vsrc sources). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EG_KRELAY_MAX);
	__type(key, __u64);
	__type(value, struct eg_krelay_state);
} kr_state SEC(".maps");

/* Source 4-tuple -> flow state (kr_msrc sources). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EG_KRELAY_MAX);
	__type(key, struct eg_krelay_tuple);
	__type(value, struct eg_krelay_state);
} kr_mstate SEC(".maps");

/* struct eg_krelay_event records: budget used up, bytes past the budget. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} kr_events SEC(".maps");

/* This skb's strparser message; a failed read (never seen) leaves zeros. */
static __always_inline struct strp_msg kr_strp(struct __sk_buff *skb)
{
	struct sk_skb_cb *cb = (struct sk_skb_cb *)((struct sk_buff *)skb)->cb;
	struct strp_msg m = {};

	bpf_probe_read_kernel(&m, sizeof(m), &cb->strp.strp);
	return m;
}

static __always_inline void kr_event(__u64 src, __u64 moved, __u32 kind)
{
	struct eg_krelay_event ev = {.src = src, .moved = moved, .kind = kind};

	/* A full ring only delays userspace until its poll: the counters in
	 * kr_state stay exact. */
	bpf_ringbuf_output(&kr_events, &ev, sizeof(ev), 0);
}

SEC("sk_skb/stream_parser")
int kr_parse(struct __sk_buff *skb)
{
	__u64 ck = bpf_get_socket_cookie(skb);
	struct eg_krelay_state *s = bpf_map_lookup_elem(&kr_state, &ck);
	__u32 avail = skb->len - (__u32)kr_strp(skb).offset;
	__u64 n = avail;

	if (!s || !s->left)
		return avail;
	/* A fixed message size batches redirects; strparser then waits for
	 * that many bytes, which only a budget guarantees will come (without
	 * one, the stream's last bytes would wait forever). */
	if (s->chunk && s->left != EG_KRELAY_UNLIMITED)
		n = s->chunk;
	if (n > s->left)
		n = s->left;
	return (int)n;
}

SEC("sk_skb/stream_verdict")
int kr_verdict(struct __sk_buff *skb)
{
	__u64 ck = bpf_get_socket_cookie(skb);
	struct eg_krelay_state *s = bpf_map_lookup_elem(&kr_state, &ck);
	__u64 n = (__u32)kr_strp(skb).full_len;
	long ret;

	if (!s)
		return SK_PASS;
	if (s->left) {
		/* The parser cut this message at the budget: n <= left. */
		if (s->left != EG_KRELAY_UNLIMITED) {
			s->left = s->left > n ? s->left - n : 0;
			if (!s->left)
				kr_event(ck, s->moved + n, EG_KRELAY_EV_DONE);
		}
		s->moved += n;
		ret = bpf_sk_redirect_hash(skb, &kr_dst, &s->peer, 0);
	} else {
		if (!s->spilled)
			kr_event(ck, s->moved, EG_KRELAY_EV_SPILL);
		s->spilled += n;
		ret = bpf_sk_redirect_hash(skb, &kr_dst, &s->spill, BPF_F_INGRESS);
	}
	if (ret != SK_PASS)
		s->dropped += n;
	return (int)ret;
}

/* No strparser: whole skbs, so no budget (userspace allows none here). */
SEC("sk_skb")
int kr_skb_verdict(struct __sk_buff *skb)
{
	__u64 ck = bpf_get_socket_cookie(skb);
	struct eg_krelay_state *s = bpf_map_lookup_elem(&kr_state, &ck);
	long ret;

	if (!s)
		return SK_PASS;
	/* A bare FIN comes as an skb without data. Redirected, the peer's psock
	 * would send 0 bytes, take that for a hard error, set EPIPE on the peer
	 * socket and stop its transmit. Dropping it loses nothing: the EOF is
	 * already in src's state (userspace sees POLLRDHUP and passes it on). */
	if (!skb->len)
		return SK_DROP;
	s->moved += skb->len;
	ret = bpf_sk_redirect_hash(skb, &kr_dst, &s->peer, 0);
	if (ret != SK_PASS)
		s->dropped += skb->len;
	return (int)ret;
}

/*
 * A local sender's sendmsg() goes straight out of the peer socket: the
 * bytes never cross the loopback connection to the relay. Only for senders
 * on this host; no budget.
 */
SEC("sk_msg")
int kr_msg(struct sk_msg_md *msg)
{
	struct eg_krelay_tuple t = {};
	struct eg_krelay_state *s;

	/* Every field is read unconditionally: a branch per family lets clang
	 * merge the loads into one ctx access at a variable offset, which the
	 * verifier refuses. */
	__u32 l4 = msg->local_ip4, r4 = msg->remote_ip4;

	t.local_ip6[0] = msg->local_ip6[0];
	t.local_ip6[1] = msg->local_ip6[1];
	t.local_ip6[2] = msg->local_ip6[2];
	t.local_ip6[3] = msg->local_ip6[3];
	t.remote_ip6[0] = msg->remote_ip6[0];
	t.remote_ip6[1] = msg->remote_ip6[1];
	t.remote_ip6[2] = msg->remote_ip6[2];
	t.remote_ip6[3] = msg->remote_ip6[3];
	if (msg->family == KR_AF_INET) {
		t.local_ip6[0] = t.local_ip6[1] = t.remote_ip6[0] = t.remote_ip6[1] = 0;
		t.local_ip6[2] = t.remote_ip6[2] = bpf_htonl(0xffff);
		t.local_ip6[3] = l4;
		t.remote_ip6[3] = r4;
	}
	t.local_port = msg->local_port;
	/* The network-order port sits in the upper 16 bits of the field. */
	t.remote_port = bpf_ntohl(msg->remote_port);
	s = bpf_map_lookup_elem(&kr_mstate, &t);
	if (!s)
		return SK_PASS;
	s->moved += msg->size;
	return (int)bpf_msg_redirect_hash(msg, &kr_dst, &s->peer, 0);
}
