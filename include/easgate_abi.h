/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * easgate_abi.h - the one definition of everything the kernel programs and
 * the daemon share: map key/value layouts, enums, pin names.
 *
 * Rules for this file:
 *  - fixed-width types only (__u8..__u64), explicit padding, no pointers, so
 *    the layout is identical for clang -target bpf and for gcc x86_64;
 *  - every field says its unit and byte order;
 *  - nothing in any map is a credential: device identities are 64-bit keyed
 *    hashes (SipHash-2-4 with a per-installation secret), never names or ids.
 *
 * Included by the bpf/ programs (after vmlinux.h) and by user/ code (after
 * <linux/types.h>).
 */
#ifndef EASGATE_ABI_H
#define EASGATE_ABI_H

#include "easgate_limits.h"

/* Where the daemon pins maps and links. bpftool reads them from here. */
#define EG_PIN_DIR "/sys/fs/bpf/easgate"

/* Map names (<= 15 characters: the kernel truncates BPF object names). */
#define EG_MAP_FLOW_VERDICT "flow_verdict"
#define EG_MAP_SRC_BLOCK    "src_block"
#define EG_MAP_SRC_RATE	    "src_rate"
#define EG_MAP_XDP_CFG	    "xdp_cfg"
#define EG_MAP_XDP_STATS    "xdp_stats"
#define EG_MAP_MAGLEV	    "maglev_table"
#define EG_MAP_BACKENDS	    "backends"
#define EG_MAP_CONN_STEER   "conn_steer"
#define EG_MAP_SRC_CAP	    "src_cap"
#define EG_MAP_WORKERS	    "workers"

/* What the XDP program does with a packet that matched an entry. */
enum eg_action {
	EG_ACT_PASS = 0, /* let it through (also: entry present but expired) */
	EG_ACT_DROP = 1, /* XDP_DROP */
	EG_ACT_RST = 2,	 /* answer with a TCP RST via XDP_TX, drop the original */
};

/* Why an entry exists; also the index of the reason in logs and metrics. */
enum eg_reason {
	EG_REASON_NONE = 0,
	EG_REASON_BLOCKED = 1,	   /* an access rule or admin blocked the device */
	EG_REASON_QUARANTINED = 2, /* quarantined device kept hammering */
	EG_REASON_THROTTLED = 3,   /* over its request budget cutoff */
	EG_REASON_LOOP = 4,	   /* loop detector escalated */
	EG_REASON_ADMIN = 5,	   /* operator-set prefix/flow block */
	EG_REASON__MAX
};

/*
 * Per-CPU counters, indexed by enum eg_stat. Every packet the XDP program
 * sees is counted exactly once in one of these.
 */
enum eg_stat {
	EG_STAT_PASS = 0,	  /* no verdict applied */
	EG_STAT_NOT_TCP = 1,	  /* not TCP or not IP: passed to the stack */
	EG_STAT_MALFORMED = 2,	  /* truncated/invalid headers: passed to the stack */
	EG_STAT_FLOW_DROP = 3,	  /* flow_verdict hit, action DROP */
	EG_STAT_FLOW_RST = 4,	  /* flow_verdict hit, action RST */
	EG_STAT_FLOW_EXPIRED = 5, /* flow_verdict hit but expired: passed */
	EG_STAT_LPM_DROP = 6,	  /* src_block prefix hit */
	EG_STAT_RATE_DROP = 7,	  /* SYN over the per-source token bucket */
	EG_STAT_OTHER_PORT = 8,	  /* TCP to a port we do not guard: passed */
	EG_STAT_CONN_CAP = 9,	  /* SYN from a source at its connection cap (src_cap) */
	EG_STAT__MAX
};

/*
 * A TCP flow as the gateway sees it on ingress: src = the phone (or its NAT),
 * dst = the gateway. IPv4 addresses are stored as IPv4-mapped IPv6
 * (::ffff:a.b.c.d) so one key type covers both families.
 */
struct eg_flow_key {
	__u8 saddr[16]; /* source address, network byte order */
	__u8 daddr[16]; /* destination address, network byte order */
	__u16 sport;	/* source port, network byte order */
	__u16 dport;	/* destination port, network byte order */
	__u32 pad;	/* must be zero */
};

struct eg_flow_verdict {
	__u8 action;	  /* enum eg_action */
	__u8 reason;	  /* enum eg_reason */
	__u16 pad0;	  /* must be zero */
	__u32 hits;	  /* packets matched (approximate: racy increments) */
	__u64 expires_ns; /* bpf_ktime_get_ns() deadline (CLOCK_MONOTONIC); 0 = never */
	__u64 device_key; /* SipHash of (user, DeviceId): names no one */
};

/* LPM key for blocked source prefixes; prefixlen counts bits of addr. */
struct eg_lpm_key {
	__u32 prefixlen; /* IPv4 prefixes are 96 + len over ::ffff:0:0/96 */
	__u8 addr[16];	 /* network byte order, IPv4-mapped for IPv4 */
};

struct eg_lpm_val {
	__u8 action;	  /* enum eg_action */
	__u8 reason;	  /* enum eg_reason */
	__u16 pad0;	  /* must be zero */
	__u32 pad1;	  /* must be zero */
	__u64 expires_ns; /* CLOCK_MONOTONIC ns; 0 = never */
};

/* Token bucket state for new connections (SYN without ACK) per source. */
struct eg_rate_key {
	__u8 addr[16]; /* source address, IPv4-mapped for IPv4 */
};

struct eg_rate_state {
	__u64 tokens_milli; /* tokens x 1000, so sub-token refill accumulates */
	__u64 last_ns;	    /* CLOCK_MONOTONIC of the last refill */
};

/*
 * A source (key: struct eg_rate_key, an IPv4 address or an IPv6 /64) that has
 * as many connections open as limits.max_connections_per_source allows. The
 * daemon counts (user/datapath/srccap.h) and writes the entry when a source reaches
 * its cap; it deletes it when one of them closes. Until then the source's
 * new connections (SYN without ACK) end here.
 */
struct eg_src_cap {
	__u8 action;	  /* enum eg_action: DROP, or RST to refuse at once */
	__u8 pad0[3];	  /* must be zero */
	__u32 conns;	  /* connections the daemon counted when it wrote this */
	__u32 cap;	  /* limits.max_connections_per_source at that time */
	__u32 pad1;	  /* must be zero */
	__u64 expires_ns; /* CLOCK_MONOTONIC; rewritten while the source stays at its cap */
};

/* Single-entry array: what the XDP program guards and how. */
struct eg_xdp_cfg {
	__u32 syn_rate;			   /* new connections per second per source; 0 = no limit */
	__u32 syn_burst;		   /* bucket depth in connections */
	__u16 ports[EG_MAX_GUARDED_PORTS]; /* guarded TCP dst ports, network order; 0 = unused */
};

/* Backend table mirrored for bpftool: index = backend id. */
struct eg_backend {
	__u8 addr[16]; /* backend address, IPv4-mapped for IPv4 */
	__u16 port;    /* network byte order */
	__u8 up;       /* 1 if health checks pass */
	__u8 pad0;
	__u32 weight;			/* relative Maglev weight */
	__u64 conns;			/* open relayed connections (gauge, updated by workers) */
	char name[EG_BACKEND_NAME_LEN]; /* config name, NUL-terminated */
};

/* One relayed connection: which user key was steered to which backend. */
struct eg_conn_steer {
	__u64 steer_key; /* SipHash of the user identity (never the identity) */
	__u32 backend;	 /* index into backends */
	__u32 worker;	 /* worker slot that owns the connection */
	__u64 since_ns;	 /* CLOCK_MONOTONIC when the backend was chosen */
};

/*
 * Per-worker load, read by the SK_REUSEPORT program; the slot's load is
 * load + queued. The slot's worker stores accepting and load; queued is
 * counted up by the program (atomic add, one per SYN it places on the slot)
 * and down by the worker (atomic, clamped at 0: one per accept, and once a
 * second whatever was placed over a second ago and is neither accepted nor
 * in the accept queue: handshakes that never completed).
 */
struct eg_worker {
	__u32 accepting; /* 0 while draining: no new connections */
	__u32 load;	 /* open connections (long-polls dominate) */
	__u32 queued;	 /* placed by the program, not accepted yet */
};

/*
 * In-kernel relay (bpf/relay.bpf.c, user/kernel/krelay.c). Nothing here is pinned:
 * each process loads its own copy, and the maps name sockets by their
 * socket cookie (SO_COOKIE), which means nothing outside this host.
 */
#define EG_KRELAY_UNLIMITED (~0ULL) /* eg_krelay_state.left: no byte budget */
#ifndef EG_KRELAY_MAX
#define EG_KRELAY_MAX 16384 /* sockets in each relay map (a relayed flow uses 2 or 3) */
#endif

/* Per source socket (key: its cookie): where its incoming bytes go. */
struct eg_krelay_state {
	__u64 peer;    /* cookie of the destination socket (kr_dst): bytes go to its egress */
	__u64 spill;   /* cookie of the spill socket (kr_dst): bytes past the budget go to
			* its ingress, so removing the source from the map loses nothing */
	__u64 left;    /* bytes still to move to peer; EG_KRELAY_UNLIMITED = no budget */
	__u64 moved;   /* bytes redirected to peer */
	__u64 spilled; /* bytes redirected to spill (arrived past the budget) */
	__u64 dropped; /* bytes the kernel dropped: a redirect target was missing */
	__u32 chunk;   /* strparser message cap, bytes; 0 = whatever has arrived */
	__u32 pending; /* length the parser gave the message now in flight */
};

/* sk_msg sources are keyed by their 4-tuple (sk_msg has no socket cookie). */
struct eg_krelay_tuple {
	__u32 local_ip6[4];  /* network byte order; IPv4 as ::ffff:a.b.c.d */
	__u32 remote_ip6[4]; /* network byte order; IPv4 as ::ffff:a.b.c.d */
	__u32 local_port;    /* host byte order */
	__u32 remote_port;   /* host byte order */
};

enum eg_krelay_ev_kind {
	EG_KRELAY_EV_DONE = 1,	/* the budget is used up: stop the flow */
	EG_KRELAY_EV_SPILL = 2, /* a first byte arrived past the budget */
};

/* Ring buffer record: userspace learns without polling that a flow ended. */
struct eg_krelay_event {
	__u64 src;   /* cookie of the source socket */
	__u64 moved; /* eg_krelay_state.moved at the time */
	__u32 kind;  /* enum eg_krelay_ev_kind */
	__u32 pad;
};

#endif /* EASGATE_ABI_H */
