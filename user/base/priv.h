/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * priv.h - dropping privileges. The master keeps only the capabilities it
 * still needs after setup (binding new listeners on reload, attaching XDP to
 * new interfaces); workers, which parse every byte phones send, keep none.
 */
#ifndef EG_PRIV_H
#define EG_PRIV_H

#include <sys/types.h>

#define PRIV_CAP_DAC_READ_SEARCH  (1ull << 2)
#define PRIV_CAP_NET_BIND_SERVICE (1ull << 10)
#define PRIV_CAP_NET_ADMIN	  (1ull << 12)
#define PRIV_CAP_PERFMON	  (1ull << 38)
#define PRIV_CAP_BPF		  (1ull << 39)

/* Resolve user (and group, "" = the user's primary group). 0 or -1. */
int priv_lookup(const char *user, const char *group, uid_t *uid, gid_t *gid);

/*
 * Become uid/gid keeping exactly `keep` (PRIV_CAP_* bits) as permitted and
 * effective capabilities; sets no_new_privs. No-op (0) when not root.
 * Returns 0 or -1 (logged).
 */
int priv_drop_to(uid_t uid, gid_t gid, unsigned long long keep);

/* Clear every capability of this process (workers). 0 or -1. */
int priv_drop_all(void);

/*
 * No core dumps, ever, from this process and its children: RLIMIT_CORE 0
 * (soft and hard) and PR_SET_DUMPABLE 0. A core of a worker would hold TLS
 * keys and whatever credentials are in flight. Non-dumpable also makes
 * /proc/PID belong to root and refuses ptrace to the same uid: only root
 * (CAP_SYS_PTRACE) can attach, e.g. `gcore` to debug. 0 or -1 (logged).
 */
int priv_no_dumps(void);

/*
 * Have ld.so bind every symbol of every library before main() runs again:
 * unless LD_BIND_NOW is already set, set it and re-execute /proc/self/exe
 * with argv (same pid; call first, before argv is permuted or anything is
 * open). A lazy binding at run time saves all vector registers on the
 * stack, and they hold request bytes (a credential: t_secrets). Linking
 * with -z now covers only easgated itself, not libz or libpcre2. Returns
 * only if it cannot re-execute (then -1, logged, still lazy) or need not (0).
 */
int priv_bind_now(char **argv);

/* Does this process have capability bit `cap` (CAP_* number) effective? */
int priv_has_cap(int cap);

#endif
