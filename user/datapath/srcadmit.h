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

struct worker;

/* How long a kernel entry lasts without being rewritten: the daemon deletes
 * it when the source falls below its cap; this bounds what a lost delete
 * (a race between workers, a crash) can cost the source. */
#define SRCADMIT_XDP_TTL_S 10

/*
 * A new connection from peer: 0 = take it (*tag is what srcadmit_release
 * needs, 0 when it was not counted), -1 = refuse it (the source is at its
 * cap; counted in the stats, logged at most once a second per worker).
 */
int srcadmit_take(struct worker *w, const struct sockaddr *peer, uint64_t *tag);

/* A connection srcadmit_take counted (tag != 0) closed. */
void srcadmit_release(struct worker *w, const struct sockaddr *peer, uint64_t tag);

#endif
