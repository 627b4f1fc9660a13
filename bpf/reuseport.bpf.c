// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * reuseport.bpf.c - picks the worker listener for each new connection.
 *
 * Every worker slot has a listening socket in the SO_REUSEPORT group of each
 * listen address, registered in reuse_socks at group * EG_MAX_WORKERS +
 * slot. The daemon keeps workers[slot] up to date (accepting, load = open
 * connections). For each new connection this program selects, among
 * accepting workers, the least loaded, counting as load also the
 * connections it placed there that the worker has not accepted yet
 * (queued): for each SYN it places it adds one to the slot's queued, so a
 * burst of connects arriving before any worker wakes up is spread evenly,
 * not by hash (see struct eg_worker for who takes queued down). Only a SYN
 * is counted: other packets reaching a listener (a syncookie's ACK, strays)
 * are placed the same way but create no queued connection here. Ties are
 * spread by the connection's flow hash. The slot's socket of THIS group is
 * found by trying the groups in turn: the kernel refuses a socket of another
 * group (-EBADFD) without selecting it. With no accepting worker, or when
 * the chosen slot has no live socket here, it selects nothing and the kernel
 * falls back to its default hash selection: a connection is never refused
 * because of this program.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "easgate_abi.h"
#include <bpf/bpf_endian.h>
#include "parse.h" /* EG_TCP_* */
#define EG_MAPS_REUSEPORT
#include "maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* State shared by the two bpf_loop passes (a plain 64-iteration loop with
 * data-dependent branches is too many paths for the verifier). */
struct eg_rp_scan {
	__u32 best_load; /* lowest load among accepting workers */
	__u32 ties;	 /* how many accepting workers have best_load */
	__u32 first;	 /* the first of them */
	__u32 pick;	 /* pass 2: how many more ties to skip */
	__u32 slot;	 /* result */
};

/* Open plus placed-not-yet-accepted: what the worker will have to serve.
 * Both words move concurrently; a stale read misplaces one connection. */
static __always_inline __u32 eg_rp_load(const struct eg_worker *w)
{
	return w->load + w->queued;
}

/* Pass 1: lowest load among accepting workers, and how many share it. */
static long eg_rp_min(__u32 i, void *data)
{
	struct eg_rp_scan *s = data;
	struct eg_worker *w = bpf_map_lookup_elem(&workers, &i);

	if (!w || !w->accepting)
		return 0;
	__u32 load = eg_rp_load(w);

	if (load < s->best_load) {
		s->best_load = load;
		s->ties = 1;
		s->first = i;
	} else if (load == s->best_load) {
		s->ties++;
	}
	return 0;
}

/* Pass 2: the pick-th (0-based) accepting worker with best_load. */
static long eg_rp_nth(__u32 i, void *data)
{
	struct eg_rp_scan *s = data;
	struct eg_worker *w = bpf_map_lookup_elem(&workers, &i);

	if (!w || !w->accepting || eg_rp_load(w) != s->best_load)
		return 0;
	if (s->pick-- == 0) {
		s->slot = i;
		return 1; /* stop */
	}
	return 0;
}

/* A connection's first SYN (SYN without ACK)? The data starts at the TCP
 * header; byte 13 holds the flags. */
static __always_inline int eg_rp_is_syn(struct sk_reuseport_md *md)
{
	__u8 flags;

	if (md->ip_protocol != IPPROTO_TCP || bpf_skb_load_bytes(md, 13, &flags, 1))
		return 0;
	return (flags & (EG_TCP_SYN | EG_TCP_ACK)) == EG_TCP_SYN;
}

SEC("sk_reuseport")
int eg_reuseport(struct sk_reuseport_md *md)
{
	struct eg_rp_scan s = {.best_load = ~0U};

	bpf_loop(EG_MAX_WORKERS, eg_rp_min, &s, 0);
	if (!s.ties)
		return SK_PASS;
	/* Loads may move between the passes (workers write them
	 * concurrently); if the pick is not found, the first minimum stands. */
	s.pick = md->hash % s.ties;
	s.slot = s.first;
	bpf_loop(EG_MAX_WORKERS, eg_rp_nth, &s, 0);
	/* Which group this connection's listeners form is not in the context:
	 * try the slot's key in every group; only this group's socket can be
	 * selected. If none (empty slot, socket closed) nothing is selected and
	 * the kernel picks by hash. */
	for (__u32 g = 0; g < EG_RP_GROUPS; g++) {
		__u32 key = g * EG_MAX_WORKERS + s.slot;

		if (bpf_sk_select_reuseport(md, &reuse_socks, &key, 0) == 0) {
			struct eg_worker *w = bpf_map_lookup_elem(&workers, &s.slot);

			if (w && eg_rp_is_syn(md))
				__sync_fetch_and_add(&w->queued, 1);
			break;
		}
	}
	return SK_PASS;
}
