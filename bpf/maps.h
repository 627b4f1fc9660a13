/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * maps.h - the BPF maps, one comment each. Every map the daemon shares with
 * operators is BTF-typed (so `bpftool map dump` prints field names) and
 * pinned by name under the loader's pin_root_path (EG_PIN_DIR in
 * production): a restarted daemon reuses them, verdicts survive restarts.
 *
 * Two groups, selected by the including object:
 *   EG_MAPS_GATE       xdp_gate.bpf.c: verdict maps, config, stats, and the
 *                      steering mirrors (written by userspace, read by bpftool)
 *   EG_MAPS_REUSEPORT  reuseport.bpf.c: worker load and the listener array
 * Variable names are the map names (EG_MAP_* in easgate_abi.h, <= 15 chars).
 */
#ifndef EG_BPF_MAPS_H
#define EG_BPF_MAPS_H

/* xdp_stats value: one per enum eg_stat, per CPU (bytes = frame length seen). */
struct eg_stat_val {
	__u64 packets;
	__u64 bytes;
};

#ifdef EG_MAPS_GATE
/*
 * flow_verdict: 5-tuple of a phone's connection -> what to do with it.
 * LRU so a flood of verdicts evicts the oldest instead of failing updates.
 * Written by the daemon (bpfmaps_flow_set), expired entries deleted by the
 * XDP program on hit and by bpfmaps_gc.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EG_FLOW_VERDICT_MAX);
	__type(key, struct eg_flow_key);
	__type(value, struct eg_flow_verdict);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flow_verdict SEC(".maps");

/* src_block: blocked source prefixes, IPv4 as ::ffff:0:0/96 + len. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, EG_SRC_BLOCK_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct eg_lpm_key);
	__type(value, struct eg_lpm_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} src_block SEC(".maps");

/*
 * src_rate: SYN token bucket per source: an IPv4 address (v4-mapped) or an
 * IPv6 /64 (low 64 bits zero). Only the XDP program writes
 * it; LRU keeps the sources that are actually sending SYNs. Updates race
 * between CPUs (no lock in the ABI struct): the limit is approximate.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EG_SRC_RATE_MAX);
	__type(key, struct eg_rate_key);
	__type(value, struct eg_rate_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} src_rate SEC(".maps");

/*
 * src_cap: sources at their connection cap (struct eg_src_cap), keyed like
 * src_rate. Written and deleted by the workers (bpfmaps_src_cap_set/del) as a
 * source reaches its cap and falls below it; an entry past expires_ns is
 * ignored and deleted on its next SYN, so a daemon that died with a source
 * at its cap cannot lock it out. LRU: a flood of capped sources evicts the
 * oldest instead of failing updates.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EG_SRC_CAP_MAX);
	__type(key, struct eg_rate_key);
	__type(value, struct eg_src_cap);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} src_cap SEC(".maps");

/* xdp_cfg: a single entry (key 0), rewritten by bpfmaps_set_cfg. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct eg_xdp_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdp_cfg SEC(".maps");

/* xdp_stats: index enum eg_stat; each packet is counted in exactly one. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EG_STAT__MAX);
	__type(key, __u32);
	__type(value, struct eg_stat_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdp_stats SEC(".maps");

/*
 * maglev_table: mirror of the userspace Maglev table (slot -> backend index)
 * for bpftool. Mmapable so the daemon mirrors it with one memcpy.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EG_MAGLEV_SIZE);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} maglev_table SEC(".maps");

/*
 * backends: mirror of the backend table. Mmapable: the forked workers add to
 * `conns` with atomic adds on the shared mapping, so no increment is lost
 * and no syscall is made per connection.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EG_MAX_BACKENDS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct eg_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backends SEC(".maps");

/* conn_steer: relayed connection -> backend/worker, for bpftool only. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EG_CONN_STEER_MAX);
	__type(key, struct eg_flow_key);
	__type(value, struct eg_conn_steer);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conn_steer SEC(".maps");
#endif /* EG_MAPS_GATE */

#ifdef EG_MAPS_REUSEPORT
/*
 * workers: per worker slot, accepting flag and load, read by the
 * SK_REUSEPORT program. Mmapable: each forked worker stores its own slot
 * without a syscall.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EG_MAX_WORKERS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct eg_worker);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} workers SEC(".maps");

/*
 * reuse_socks: key group * EG_MAX_WORKERS + slot -> the listening socket of
 * worker slot `slot` in reuseport group `group` (one group per listen
 * address, numbered by the daemon). Not pinned: sockets belong to one
 * daemon and leave the map when they close.
 */
#ifndef EG_RP_GROUPS
#define EG_RP_GROUPS 8 /* listen addresses per daemon (the config allows 8) */
#endif
struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, EG_MAX_WORKERS *EG_RP_GROUPS);
	__type(key, __u32);
	__type(value, __u64);
} reuse_socks SEC(".maps");
#endif /* EG_MAPS_REUSEPORT */

#endif /* EG_BPF_MAPS_H */
