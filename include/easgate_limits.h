/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * easgate_limits.h - sizes shared by the kernel programs and the daemon.
 * Each may be overridden at build time (-DEG_...=N) when a deployment needs
 * more; the defaults suit a gateway with ~100k phones.
 */
#ifndef EASGATE_LIMITS_H
#define EASGATE_LIMITS_H

#ifndef EG_FLOW_VERDICT_MAX
#define EG_FLOW_VERDICT_MAX 262144 /* LRU: blocked flows tracked at once */
#endif
#ifndef EG_SRC_BLOCK_MAX
#define EG_SRC_BLOCK_MAX 16384 /* blocked source prefixes */
#endif
#ifndef EG_SRC_RATE_MAX
#define EG_SRC_RATE_MAX 65536 /* LRU: sources with a live SYN bucket */
#endif
#ifndef EG_SRC_CAP_MAX
#define EG_SRC_CAP_MAX 16384 /* LRU: sources at their connection cap at once */
#endif
#ifndef EG_MAGLEV_SIZE
#define EG_MAGLEV_SIZE 65537 /* Maglev lookup table size: a prime >> backends x 100 */
#endif
#ifndef EG_MAX_BACKENDS
#define EG_MAX_BACKENDS 64
#endif
#ifndef EG_CONN_STEER_MAX
#define EG_CONN_STEER_MAX 262144 /* LRU: relayed connections shown to bpftool */
#endif
#ifndef EG_MAX_WORKERS
#define EG_MAX_WORKERS 64
#endif
#define EG_MAX_GUARDED_PORTS 8
#define EG_BACKEND_NAME_LEN  32
#define EG_IPV6_EXT_MAX	     6 /* IPv6 extension headers walked before giving up */

#endif /* EASGATE_LIMITS_H */
