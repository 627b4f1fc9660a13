/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * krelay.h - moving a body's bytes between two plaintext TCP sockets without
 * copying them through this process: what the kernel supports (probed by
 * doing it), which way is cheapest here (measured), and flows that start
 * and stop on an exact byte count so the next request head is parsed in
 * userspace again.
 *
 * Methods (enum krelay_method):
 *   user      read()/write() through a 64 KiB buffer (the relay's own
 *             pumps, user/datapath)
 *   splice    splice(2) socket -> pipe -> socket, driven by the event loop
 *             (krelay_pipe_*): no copy to userspace, exact byte counts
 *   sockmap   relay.bpf strparser + sk_skb verdict redirecting to the peer's
 *             egress; the transmit runs in a kernel worker (psock backlog).
 *             Whole connection (no budget): reliable, tested byte-exact.
 *             With a byte budget: EXPERIMENTAL, see below
 *   verdict   sk_skb verdict without strparser: whole skbs, so no budget;
 *             only for a connection that has become a tunnel
 *   skmsg     sk_msg redirect of a LOCAL sender's sendmsg() to the peer's
 *             egress. A phone is never local: measured, never a default
 *
 * Only user and splice stop on an exact byte count reliably, so only they
 * carry HTTP bodies (the next request head must be parsed in userspace).
 * The budgeted sockmap flow (strparser cuts at the budget, krelay_flow_stop()
 * hands the socket back with the spill) is experimental and never chosen:
 * measured with tools/bench/relay_bench -H on a build machine (Linux
 * 6.18), 7 of 3001 gateway-style handoffs failed (0.23 %: 5 stalls, where
 * the budget's bytes never reached the verdict, and 2 wrong counts), and 9
 * of 3000 under ASan (0.3 %, all stalls). A gateway would corrupt or hang
 * about one kernel-relayed body in 400.
 * In that pattern a socket leaves and rejoins the map for every body; the
 * likely cause (not proven) is in the kernel: removal stops the
 * socket's strparser, which may hold bytes it already took from TCP, and a
 * socket that rejoins gets a fresh one. Neither the teardown order in
 * krelay.c nor an earlier variant that also waited for src's TCP receive
 * queue (sock_diag) closed it.
 *
 * A TLS leg can only join a kernel relay with kernel TLS (TCP_ULP "tls"):
 * easgated's phone side is OpenSSL in userspace, so without kTLS only a
 * plaintext<->plaintext pair qualifies (krelay_leg_ok).
 *
 * Flow lifecycle (sockmap/verdict/skmsg; krelay.c has the why). Whole-
 * connection flows are stopped once src has said EOF (POLLRDHUP) or when the
 * connection is given up; a budget ends a flow early (experimental).
 *   krelay_flow_start(src, dst, budget)  bytes that arrive on src from now
 *        on, and those already queued on it, go out of dst, at most budget
 *   [event fd readable: budget used up] or [src EPOLLRDHUP] or [abort]
 *   krelay_flow_stop() until it returns 0 (-EAGAIN: dst is still sending
 *        relayed bytes; retry on dst EPOLLOUT or a short timer). Then both
 *        sockets are plain TCP sockets again. The stream on src continues,
 *        in order, with: the bytes krelay_flow_stop() returned in `spill`
 *        (they arrived past the budget before the teardown), then whatever
 *        read(src) returns. The status tells how much of the budget was
 *        moved; the rest (status.left) is still to be relayed by the caller.
 * While a flow runs the caller must neither read src nor write dst.
 * Conventions: 0 or -errno; nothing here blocks or logs above debug.
 */
#ifndef EG_KRELAY_H
#define EG_KRELAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/types.h>
#include "easgate_abi.h"

enum krelay_method {
	KRELAY_USER = 0,
	KRELAY_SPLICE = 1,
	KRELAY_SOCKMAP = 2,
	KRELAY_VERDICT = 3,
	KRELAY_SKMSG = 4,
	KRELAY__COUNT
};

/* "user", "splice", "sockmap", "verdict", "skmsg"; NULL if out of range. */
const char *krelay_method_name(enum krelay_method m);
/* The method with that name, or -EINVAL. */
int krelay_method_from_name(const char *name);

/* What this kernel does, each found by doing it on a loopback pair. */
struct krelay_caps {
	int splice;	     /* splice(2) moved bytes socket -> pipe -> socket */
	int sockmap;	     /* relay.bpf loaded, strparser relay (whole connection) moved bytes */
	int verdict;	     /* sk_skb verdict without strparser attached and moved bytes */
	int skmsg;	     /* sk_msg redirect moved a local sender's bytes */
	int ktls;	     /* setsockopt(TCP_ULP, "tls") accepted on a connected socket */
	char why[160];	     /* first failure of the BPF probes ("" if none) */
	char ktls_why[96];   /* why kTLS is absent */
	char splice_why[96]; /* why splice is absent */
};

/*
 * Probe everything (a few ms; needs CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON
 * for the BPF methods, otherwise they are reported absent with the reason).
 * Returns 0; fields say what works.
 */
int krelay_probe(struct krelay_caps *c);

/* Can a leg (tls: 1 = TLS terminated here) take part in a kernel relay? */
int krelay_leg_ok(const struct krelay_caps *c, int tls);

/*
 * Measured cost of each method (tools/bench/relay_bench.c), and the rule's
 * parameters. cpu_s_per_gb[m] = 0: not measured, never chosen.
 */
struct krelay_pref {
	double cpu_s_per_gb[KRELAY__COUNT]; /* system-wide CPU per 10^9 bytes relayed */
	double margin;	   /* a kernel method must be this much cheaper than user (0.10 = 10 %) */
	uint64_t min_body; /* bodies below this stay in user space: setup costs more */
	size_t pipe_size;  /* splice: the pipe size its figure was measured with;
			    * pass it to krelay_pipe_open() */
	const char *where; /* the platform and date the numbers come from */
};

/* The numbers measured on the project's build/CI machines (krelay-results.md). */
extern const struct krelay_pref krelay_pref_measured;

/*
 * The method for a plaintext<->plaintext body of at least p->min_body
 * bytes: the cheaper of user and splice (the methods that stop on an exact
 * byte count reliably), where splice must have worked in the probe and be
 * measured at least p->margin cheaper than user. Never sockmap, verdict or
 * skmsg (see above). p NULL: krelay_pref_measured. c NULL: "user".
 * Never NULL.
 */
const char *krelay_default_method(const struct krelay_caps *c, const struct krelay_pref *p);

/*
 * One log line's worth of key=value text about the probe and the choice,
 * e.g. `method=splice pipe=1048576 splice=1 sockmap=1 verdict=1 skmsg=1
 * ktls=0 ktls_why="..." bpf_why="" measured="..."` (no "event="; the caller
 * adds it). Returns out (always NUL-terminated, truncated to outsz).
 */
const char *krelay_describe(char *out, size_t outsz, const struct krelay_caps *c,
			    const struct krelay_pref *p);

/* ---- splice ------------------------------------------------------------------ */

/* A pipe for splice relays; `held` bytes are in the pipe, not yet written out. */
struct krelay_pipe {
	int fd[2];
	size_t held;
};

/* Open (size: F_SETPIPE_SZ request, 0 = default 64 KiB). */
int krelay_pipe_open(struct krelay_pipe *p, size_t size);
void krelay_pipe_close(struct krelay_pipe *p);

/*
 * Move up to max bytes src -> pipe -> dst without blocking (both sockets
 * non-blocking, or pass blocking sockets to block). Returns bytes written
 * to dst (> 0), 0 if nothing could move (EAGAIN on either side; bytes may
 * be held in the pipe, p->held: call again when dst is writable), -1 for
 * EOF on src with the pipe empty, or another -errno (never -EPERM, which
 * would read as EOF). The total read from src never exceeds the sum of max
 * over the calls, so a body stops exactly: pass max = bytes left - p->held.
 */
ssize_t krelay_splice(struct krelay_pipe *p, int src, int dst, size_t max);

/* ---- BPF flows ----------------------------------------------------------------- */

struct krelay;	    /* relay.bpf loaded and attached; one per process */
struct krelay_flow; /* one direction: src -> dst */

/* Load and attach relay.bpf. -errno (-EPERM without privileges). */
int krelay_open(struct krelay **out);
/* Frees k (NULL is fine). Flows must have been stopped and freed first. */
void krelay_close(struct krelay *k);

/*
 * An fd (epoll) that becomes readable when a flow's budget is used up or a
 * byte arrives past it. Then call krelay_events(): cb gets each event.
 */
int krelay_event_fd(const struct krelay *k);
int krelay_events(struct krelay *k, void (*cb)(void *arg, const struct eg_krelay_event *ev),
		  void *arg);

struct krelay_flow_opts {
	enum krelay_method method; /* KRELAY_SOCKMAP (default), KRELAY_VERDICT, KRELAY_SKMSG */
	uint64_t budget;	   /* bytes; EG_KRELAY_UNLIMITED: until stopped. Anything
				    * else is experimental (see the top of this file) */
	uint32_t chunk;		   /* sockmap with a budget: redirect in messages of this
				    * size (the last one shorter); 0 = whatever arrived */
};

/*
 * Start relaying. src, dst: connected TCP sockets; for KRELAY_SKMSG src is
 * the local sender's socket (its sendmsg() is redirected). A socket may be
 * the src of one flow and the dst of one other flow at the same time (both
 * directions of a connection). KRELAY_VERDICT and KRELAY_SKMSG take no
 * budget (-EINVAL), and KRELAY_VERDICT needs an src nobody has read from
 * yet (whole skbs are handed over).
 */
int krelay_flow_start(struct krelay *k, int src, int dst, const struct krelay_flow_opts *o,
		      struct krelay_flow **out);

struct krelay_status {
	uint64_t moved;	  /* bytes redirected to dst */
	uint64_t left;	  /* budget still to move (EG_KRELAY_UNLIMITED: none set) */
	uint64_t spilled; /* bytes that arrived past the budget (returned by stop) */
	uint64_t dropped; /* bytes the kernel dropped (dst gone): the stream is broken */
	uint64_t sent;	  /* bytes dst's TCP has taken since the start (<= moved) */
	int stopping;	  /* krelay_flow_stop() began */
};

int krelay_flow_status(const struct krelay_flow *f, struct krelay_status *st);

/* The cookie of the flow's source (matches eg_krelay_event.src). */
uint64_t krelay_flow_src_cookie(const struct krelay_flow *f);

/*
 * Tear down; call until it returns 0. -EAGAIN: dst still has relayed bytes
 * to send (or the spill has not arrived): call again later. On 0, spill
 * holds *nspill bytes that arrived past the budget (stream order: before
 * anything read(src) returns now); -ENOBUFS if cap < status.spilled (call
 * again with a larger buffer); -EPIPE if the kernel dropped bytes (close
 * the connection). The flow is freed by krelay_flow_free() only.
 */
int krelay_flow_stop(struct krelay_flow *f, void *spill, size_t cap, size_t *nspill);
/* Stops without waiting (bytes in flight are lost: for a connection being closed) and frees. */
void krelay_flow_free(struct krelay_flow *f);

#endif
