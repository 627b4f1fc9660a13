// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * reuseport.bpf.c - picks the worker listener for each new connection.
 *
 * Every worker slot has a listening socket in the SO_REUSEPORT group of each
 * listen address, registered in reuse_socks at group * EG_MAX_WORKERS +
 * slot. The daemon keeps workers[slot] up to date (accepting, load = open
 * connections). For each new connection this program selects, among
 * accepting workers, the least loaded; ties (common: equal load right after
 * start) are spread by the connection's flow hash, so the same SYN
 * retransmitted lands on the same worker. The slot's socket of THIS group is
 * found by trying the groups in turn: the kernel refuses a socket of another
 * group (-EBADFD) without selecting it. With no accepting worker, or when
 * the chosen slot has no live socket here, it selects nothing and the kernel
 * falls back to its default hash selection: a connection is never refused
 * because of this program.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "easgate_abi.h"
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

/* Pass 1: lowest load among accepting workers, and how many share it. */
static long eg_rp_min(__u32 i, void *data)
{
	struct eg_rp_scan *s = data;
	struct eg_worker *w = bpf_map_lookup_elem(&workers, &i);

	if (!w || !w->accepting)
		return 0;
	if (w->load < s->best_load) {
		s->best_load = w->load;
		s->ties = 1;
		s->first = i;
	} else if (w->load == s->best_load) {
		s->ties++;
	}
	return 0;
}

/* Pass 2: the pick-th (0-based) accepting worker with best_load. */
static long eg_rp_nth(__u32 i, void *data)
{
	struct eg_rp_scan *s = data;
	struct eg_worker *w = bpf_map_lookup_elem(&workers, &i);

	if (!w || !w->accepting || w->load != s->best_load)
		return 0;
	if (s->pick-- == 0) {
		s->slot = i;
		return 1; /* stop */
	}
	return 0;
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

		if (bpf_sk_select_reuseport(md, &reuse_socks, &key, 0) == 0)
			break;
	}
	return SK_PASS;
}
