/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * srcadmit.h - does a worker take a new connection from this source?
 * limits.max_connections_per_source over all workers (user/datapath/srccap.h), and,
 * with XDP on, the kernel told which sources are at their cap so their next
 * SYNs end in the XDP program (src_cap) instead of in accept().
 *
 * Only TLS listeners are capped: a plain listener's peer is the load balancer
 * that ended TLS for many phones. Sources in limits.per_source_exempt
 * (carrier-grade NAT, a corporate Wi-Fi egress) are never capped.
 */
#ifndef EG_SRCADMIT_H
#define EG_SRCADMIT_H

#include <stdint.h>
#include <sys/socket.h>

#include "siphash.h"

struct bpfmaps;
struct gw_config;
struct srccap;
struct worker;

/* How long a kernel entry lasts without being rewritten: the daemon deletes
 * it when the source falls below its cap; this bounds what a lost delete
 * (a race between workers, a crash) can cost the source. */
#define SRCADMIT_XDP_TTL_S 10
/* The master rewrites the entry of a source still at its cap once this much
 * of SRCADMIT_XDP_TTL_S is gone: the rest is the margin for a late tick on a
 * loaded machine (its SYNs would reach accept() again once it expired). */
#define SRCADMIT_XDP_REFRESH_S 3

/*
 * A new connection from peer: 0 = take it (*tag is what srcadmit_release
 * needs, 0 when it was not counted), -1 = refuse it (the source is at its
 * cap; counted in the stats, logged at most once a second per worker).
 */
int srcadmit_take(struct worker *w, const struct sockaddr *peer, uint64_t *tag);

/* A connection srcadmit_take counted (tag != 0) closed. */
void srcadmit_release(struct worker *w, const struct sockaddr *peer, uint64_t tag);

/*
 * The master, every tick: each kernel entry whose source is still at its cap
 * (counted in sc under the workers' secret, not exempt under cfg) and older
 * than SRCADMIT_XDP_REFRESH_S expires SRCADMIT_XDP_TTL_S from now_ns again.
 * The others are left to the workers' deletes and to their expiry. Returns
 * how many were rewritten, or -errno.
 */
int srcadmit_refresh_kernel(struct bpfmaps *bpf, const struct srccap *sc,
			    const struct siphash_key *secret, const struct gw_config *cfg,
			    uint64_t now_ns);

#endif
