/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * bpfmaps.h - load, pin and attach the kernel fast path, and write its maps.
 *
 * One struct bpfmaps holds the loaded xdp_gate and reuseport skeletons. With
 * a pin_dir (EG_PIN_DIR in production) every shared map is pinned there by
 * name and REUSED by the next bpfmaps_open, so verdicts, counters and config
 * survive a daemon restart; the XDP attachment is a bpf_link pinned as
 * <pin_dir>/link_xdp_<ifname>, so it survives the daemon exiting and is
 * updated in place (not re-attached) by the next daemon. Only
 * bpfmaps_detach_all() (`easgated --detach`) removes them.
 *
 * Conventions: functions return 0 (or a count) on success and -errno on
 * failure; libbpf's own messages go to user/base/log.h. Map writes are single
 * syscalls (a few microseconds) or plain stores into shared mappings:
 * fine to call from the event loop.
 *
 * Fork: the daemon forks its workers after bpfmaps_open(). Everything in a
 * struct bpfmaps stays valid in the children: map and program fds are
 * inherited, the mmap'd arrays (backends, maglev_table, workers) are
 * MAP_SHARED, and no state depends on the pid. A child may call
 * bpfmaps_close() on its copy: that closes the child's fds and mappings only.
 */
#ifndef EG_BPFMAPS_H
#define EG_BPFMAPS_H

#include <stdint.h>
#include <sys/socket.h>
#include <linux/types.h>
#include "easgate_abi.h"

/* Per-CPU xdp_stats summed over all CPUs; index enum eg_stat. */
struct eg_stat_sum {
	uint64_t packets;
	uint64_t bytes; /* frame bytes as seen by XDP (before any RST rewrite) */
};

struct bpfmaps; /* opaque; see bpfmaps.c */

/* Load-time features of the XDP program (BPF const volatile globals). */
enum bpfmaps_flags {
	BPFMAPS_F_NO_RST = 1u << 0,	  /* enforce RST verdicts as DROP (XDP_TX unusable) */
	BPFMAPS_F_NO_SRC_BLOCK = 1u << 1, /* skip the src_block prefix lookup */
	BPFMAPS_F_NO_SYN_RATE = 1u << 2,  /* skip the SYN token bucket */
	BPFMAPS_F_NO_SRC_CAP = 1u << 3,	  /* skip the connection-cap lookup */
	/* Load each program on its own: one the kernel refuses is left out
	 * (bpfmaps_loaded() says 0, bpfmaps_why() says why), even all of them;
	 * the open still fails for missing privileges (-EPERM) or pins. The
	 * verifier's log goes to debug, not warn. Without it (tests), any
	 * refusal fails the open. */
	BPFMAPS_F_BEST_EFFORT = 1u << 4,
};

struct bpfmaps_opts {
	const char *pin_dir; /* NULL: pin nothing, reuse nothing (tests, benchmarks) */
	unsigned int flags;  /* enum bpfmaps_flags */
};

enum bpfmaps_xdp_mode {
	BPFMAPS_XDP_AUTO = 0,	 /* native, falling back to generic */
	BPFMAPS_XDP_NATIVE = 1,	 /* driver mode only */
	BPFMAPS_XDP_GENERIC = 2, /* skb mode only */
};

enum bpfmaps_prog {
	BPFMAPS_PROG_XDP = 0,
	BPFMAPS_PROG_REUSEPORT = 1,
};

/*
 * Open and load both programs. With pin_dir: mount bpffs on /sys/fs/bpf if
 * pin_dir is below it and nothing is mounted there, create pin_dir (0700),
 * reuse every compatible pinned map (same type, key/value size, max_entries
 * and flags) and pin the rest. An incompatible pinned map (an upgrade
 * changed a limit) is logged and replaced: its entries are lost.
 * Returns NULL with *err = -errno on failure (-EPERM: not privileged).
 */
struct bpfmaps *bpfmaps_open(const char *pin_dir, int *err);
struct bpfmaps *bpfmaps_open_opts(const struct bpfmaps_opts *o, int *err);

/* How many maps the last open took over from existing pins (0 on a fresh start). */
int bpfmaps_maps_reused(const struct bpfmaps *g);

/*
 * Whether program p is loaded (always, without BPFMAPS_F_BEST_EFFORT). The
 * functions that need a program that is not loaded fail: -EOPNOTSUPP, or
 * -EINVAL for the mmap'd mirrors and worker slots (XDP: attach, cfg,
 * flows, prefixes, gc, stats, mirrors, steering; SK_REUSEPORT:
 * reuseport_*, workers_reset, worker_*).
 */
int bpfmaps_loaded(const struct bpfmaps *g, enum bpfmaps_prog p);
/* Why p is not loaded: the verifier's or libbpf's message ("" if it is). */
const char *bpfmaps_why(const struct bpfmaps *g, enum bpfmaps_prog p);
/* The error of the last bpfmaps_attach_xdp()'s native attempt (-errno), or
 * 0 if native worked or was not tried (mode generic, a link updated). */
int bpfmaps_xdp_native_err(const struct bpfmaps *g);

/*
 * Attach the XDP program to ifname (mode: enum bpfmaps_xdp_mode). With a
 * pin_dir the bpf_link is pinned as <pin_dir>/link_xdp_<ifname> and the
 * attachment outlives this process; if that pin already exists (a previous
 * daemon) and still points at ifname in an acceptable mode, the link is
 * switched to this program atomically (no window without a filter, no
 * EBUSY). A stale pin (interface recreated, other mode requested) is
 * detached and replaced; if the newly requested mode then fails, the
 * previous mode is restored with the new program (the filter keeps
 * enforcing) and the error is returned. Without a pin_dir the attachment
 * lasts until bpfmaps_close(). *mode_out (may be NULL) is set to "native"
 * or "generic".
 * -EBUSY/-EEXIST: another XDP program is attached to the interface.
 */
int bpfmaps_attach_xdp(struct bpfmaps *g, const char *ifname, int mode, const char **mode_out);

/* Replace xdp_cfg. Ports are network order, 0 = unused; an empty list guards
 * every TCP port. syn_rate 0 = no SYN limit; with a rate, syn_burst must be
 * >= 1 (-EINVAL otherwise). */
int bpfmaps_set_cfg(struct bpfmaps *g, const struct eg_xdp_cfg *c);

/* Insert or replace a flow verdict (k->pad and v's padding are zeroed here).
 * -EINVAL for an unknown action or reason. */
int bpfmaps_flow_set(struct bpfmaps *g, const struct eg_flow_key *k,
		     const struct eg_flow_verdict *v);
/* Remove a flow verdict; -ENOENT if there was none. */
int bpfmaps_flow_del(struct bpfmaps *g, const struct eg_flow_key *k);
/* Read a flow verdict (hits as counted by the XDP program); -ENOENT if none. */
int bpfmaps_flow_get(struct bpfmaps *g, const struct eg_flow_key *k, struct eg_flow_verdict *v);

/*
 * Parse "198.18.0.0/24", "2001:db8::/32" or a bare address (host prefix)
 * into an LPM key: IPv4 becomes ::ffff:a.b.c.d with prefixlen 96 + len, host
 * bits are cleared. Returns 0 or -EINVAL.
 */
int bpfmaps_parse_cidr(const char *cidr, struct eg_lpm_key *k);
/* Block (or, with action PASS, carve out) a source prefix. -EINVAL on a bad
 * cidr or action. Note that an IPv6 prefix covering ::ffff:0:0/96 (e.g. ::/0)
 * also matches every IPv4 source. */
int bpfmaps_prefix_set(struct bpfmaps *g, const char *cidr, const struct eg_lpm_val *v);
/* Remove a source prefix; -ENOENT if there was none. */
int bpfmaps_prefix_del(struct bpfmaps *g, const char *cidr);

/*
 * A source at its connection cap (src: struct eg_rate_key's 16 bytes, see
 * srccap_source): its SYNs are dropped (action DROP) or answered with a RST
 * (RST) by XDP until v->expires_ns or bpfmaps_src_cap_del. Padding is zeroed
 * here; -EINVAL for another action.
 */
int bpfmaps_src_cap_set(struct bpfmaps *g, const uint8_t src[16], const struct eg_src_cap *v);
/* The source fell below its cap; -ENOENT if it had no entry. */
int bpfmaps_src_cap_del(struct bpfmaps *g, const uint8_t src[16]);
/*
 * Visit every src_cap entry: fn gets its source and value and returns 1 to
 * write the (changed) value back, 0 to leave it. An entry deleted meanwhile
 * is not written again. Returns how many were written, or -errno.
 */
typedef int (*bpfmaps_src_cap_fn)(void *arg, const uint8_t src[16], struct eg_src_cap *v);
int bpfmaps_src_cap_each(struct bpfmaps *g, bpfmaps_src_cap_fn fn, void *arg);
/* Forget every capped source (a new daemon's counts start at 0). Returns
 * how many were deleted. */
int bpfmaps_src_cap_clear(struct bpfmaps *g);

/*
 * Delete the flow_verdict, src_block and src_cap entries whose expires_ns is set and
 * <= now_ns (CLOCK_MONOTONIC, see eg_mono_ns). Returns how many were deleted.
 * Uses batched lookups: a full 262144-entry flow table costs milliseconds.
 */
int bpfmaps_gc(struct bpfmaps *g, uint64_t now_ns);

/* Sum xdp_stats over all possible CPUs into out[EG_STAT__MAX]. */
int bpfmaps_stats(struct bpfmaps *g, struct eg_stat_sum out[EG_STAT__MAX]);

/* Mirror the Maglev table (slot -> backend index) for bpftool; n <= EG_MAGLEV_SIZE. */
int bpfmaps_mirror_maglev(struct bpfmaps *g, const uint32_t *table, uint32_t n);
/* Mirror backend idx (< EG_MAX_BACKENDS). b->conns is ignored: the gauge is
 * owned by bpfmaps_backend_conns_add and survives re-mirroring. */
int bpfmaps_mirror_backend(struct bpfmaps *g, uint32_t idx, const struct eg_backend *b);
/* Atomically add delta to backends[idx].conns (saturating at 0); safe from
 * any worker process, no syscall. */
int bpfmaps_backend_conns_add(struct bpfmaps *g, uint32_t idx, int64_t delta);

/* Record / forget which backend and worker a relayed connection uses. */
int bpfmaps_steer_set(struct bpfmaps *g, const struct eg_flow_key *k,
		      const struct eg_conn_steer *s);
int bpfmaps_steer_del(struct bpfmaps *g, const struct eg_flow_key *k);

/*
 * SK_REUSEPORT steering. One reuseport group per listen address, numbered by
 * the caller (0 .. bpfmaps_reuseport_groups() - 1, stable while the address
 * is listened on); one listening socket per worker slot in each group. The
 * workers map (accepting, load) is per slot and applies to every group.
 *
 * Attach the program to listen_fd's SO_REUSEPORT group (any member socket;
 * SO_REUSEPORT must be set). Once per group; attaching again replaces.
 */
int bpfmaps_reuseport_attach(struct bpfmaps *g, int listen_fd);
/* How many groups the socket array has room for. */
int bpfmaps_reuseport_groups(const struct bpfmaps *g);
/* Put worker slot's listening socket of `group` into the socket array. A
 * socket can be registered once (-EBUSY after); it leaves the array by
 * itself when it is closed. */
int bpfmaps_reuseport_register(struct bpfmaps *g, uint32_t group, uint32_t slot, int listen_fd);
/* Mark every slot not accepting, load 0: a new daemon's slots owe nothing to
 * what a previous one left in the pinned map. Call before the workers start. */
int bpfmaps_workers_reset(struct bpfmaps *g);
/* Publish a worker's accepting flag and load (plain stores, no syscall;
 * queued is left alone: the program counts it up concurrently).
 * A slot marked accepting should be registered first; if it is not, new
 * connections fall back to the kernel's hash selection. */
int bpfmaps_worker_set(struct bpfmaps *g, uint32_t slot, const struct eg_worker *w);
/* Read a slot back (tests, status). */
int bpfmaps_worker_get(struct bpfmaps *g, uint32_t slot, struct eg_worker *w);
/* Take n off the slot's queued count (placed by the program, not accepted
 * yet), never below 0; UINT32_MAX clears it. Returns what is left. */
uint32_t bpfmaps_worker_unqueue(struct bpfmaps *g, uint32_t slot, uint32_t n);

/* Raw fds for tests, benchmarks and easctl (owned by g: do not close). */
int bpfmaps_prog_fd(const struct bpfmaps *g, enum bpfmaps_prog p);
/* fd of the map named EG_MAP_* (or "reuse_socks"); -ENOENT if unknown. */
int bpfmaps_map_fd(const struct bpfmaps *g, const char *name);

/* Close fds and mappings and free g. Pins and pinned links stay (the filter
 * keeps enforcing); unpinned XDP links are detached. NULL is a no-op. */
void bpfmaps_close(struct bpfmaps *g);

/*
 * `easgated --detach`: detach every pinned link in pin_dir (the XDP program
 * leaves its interfaces), remove every pin and the directory itself.
 * A missing pin_dir is success. Returns 0 or -errno (first failure; the rest
 * is still attempted).
 */
int bpfmaps_detach_all(const char *pin_dir);

/* Flow key for a connection: peer = the phone (src), local = the gateway
 * (dst); IPv4 becomes IPv4-mapped IPv6; ports network order. An unknown
 * family leaves that side zero. */
void eg_flow_key_from_addrs(struct eg_flow_key *k, const struct sockaddr *peer,
			    const struct sockaddr *local);

/* CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns() and expires_ns. */
uint64_t eg_mono_ns(void);

#endif /* EG_BPFMAPS_H */
