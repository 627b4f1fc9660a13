/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * kfeat.h - which kernel features easgated uses on the running kernel, each
 * found by doing it (loading the program, attaching it, moving bytes through
 * it), and why the others are off. `bpftool feature probe` is not used: it
 * answers wrongly on some kernels, and cannot say whether THIS program
 * passes THIS verifier.
 *
 * The master fills one struct kfeat while it sets up: bpfmaps.c loads and
 * attaches the programs (XDP, SK_REUSEPORT), krelay_probe() moves bytes by
 * splice and the sockmap programs, kfeat_probe_ktls() makes a kernel TLS
 * round trip per cipher. It logs the result once (event=kernel_features,
 * plus event=kernel_feature_off with the reason for each feature that is
 * off) and `easctl status` shows it (kfeat_line). `easgated --probe-kernel`
 * runs the same probes without a configuration (kfeat_probe_all).
 *
 * Nothing here refuses to start: every feature is optional; the caller
 * refuses only what the configuration demands (xdp.mode = "native").
 *
 * Test hook: EASGATE_TEST_KFEAT_OFF="name[,name...]" makes the named probes
 * fail as a kernel without the feature would (names as kfeat_name(), plus
 * "xdp_native" for native XDP attachment), so the degraded paths can be
 * tested on a kernel that has everything. The reason then says so.
 */
#ifndef EG_KFEAT_H
#define EG_KFEAT_H

#include <stddef.h>

#include "krelay.h"

enum kfeat_id {
	KFEAT_XDP = 0,	 /* xdp_gate passed the verifier and is attached (modes per interface) */
	KFEAT_REUSEPORT, /* the SK_REUSEPORT program is loaded and attached to the listeners */
	KFEAT_SPLICE,	 /* splice(2) socket -> pipe -> socket */
	KFEAT_SOCKMAP,	 /* relay.bpf loaded; strparser + sk_skb verdict relay moved bytes */
	KFEAT_SK_SKB,	 /* sk_skb verdict without strparser moved bytes */
	KFEAT_SK_MSG,	 /* sk_msg redirect moved bytes */
	KFEAT_KTLS,	 /* TCP_ULP "tls": a TX -> RX round trip worked with some cipher */
	KFEAT__COUNT
};

enum kfeat_state { KFEAT_UNKNOWN = 0, KFEAT_OFF = 1, KFEAT_ON = 2 };

struct kfeat_item {
	enum kfeat_state state;
	char detail[160]; /* on: what exactly ("veth0=native lo=generic", kTLS ciphers) */
	char why[200];	  /* off: the reason; on: what is missing, if anything ("" = nothing) */
};

/* A (TLS version, cipher) pair kernel TLS moved a record with: cipher 0
 * AES-GCM-128, 1 AES-GCM-256, 2 ChaCha20-Poly1305; v13 0 = TLS 1.2. */
#define KFEAT_KTLS_BIT(v13, cipher) (1u << ((cipher)*2 + (v13)))

struct kfeat {
	char kernel[65]; /* uname -r */
	struct kfeat_item f[KFEAT__COUNT];
	unsigned ktls_ok; /* KFEAT_KTLS_BIT of every pair that worked */
};

/* All unknown, kernel release filled in. */
void kfeat_init(struct kfeat *k);

/* "xdp", "reuseport", "splice", "sockmap", "sk_skb", "sk_msg", "ktls"; NULL if out of range. */
const char *kfeat_name(enum kfeat_id id);

/* Record a result; detail and why may be NULL (empty). Truncates to fit. */
void kfeat_set(struct kfeat *k, enum kfeat_id id, int on, const char *detail, const char *why);

/* The test hook: 1 if EASGATE_TEST_KFEAT_OFF lists name. */
int kfeat_forced_off(const char *name);
/* The reason to record for a feature the hook turned off. */
#define KFEAT_FORCED_WHY "turned off by EASGATE_TEST_KFEAT_OFF (test hook)"

/* For the probes (here and krelay_probe): a TCP listener on 127.0.0.1, port
 * chosen by the kernel (fd, or -errno), and a connected pair from it: *c
 * the connecting side, *a the accepted one (0 or -errno; the caller closes
 * whichever of the two is >= 0). */
int kfeat_loopback_listener(int backlog);
int kfeat_loopback_pair(int lfd, int *c, int *a);

/* splice, sockmap, sk_skb, sk_msg from the relay probe. */
void kfeat_from_krelay(struct kfeat *k, const struct krelay_caps *c);

/*
 * Kernel TLS: on a loopback TCP pair per (version, cipher), TCP_ULP "tls"
 * on both ends, TLS_TX keys on one and the same keys as TLS_RX on the other,
 * one record across. Versions TLS 1.2 and 1.3; ciphers AES-GCM-128,
 * AES-GCM-256, ChaCha20-Poly1305. On if any pair worked; detail lists what
 * did (`ciphers=aes-gcm-128,... versions=1.2,1.3`), why the first failure.
 * A few ms; the first use may load the tls and crypto modules.
 */
void kfeat_probe_ktls(struct kfeat *k);

/*
 * Everything, without a configuration (`easgated --probe-kernel`): the
 * programs are loaded unpinned, XDP is attached to "lo" (native, else
 * generic) only if own_netns says the caller is in a network namespace of
 * its own, SK_REUSEPORT to a loopback listener group, then krelay_probe()
 * and kfeat_probe_ktls().
 */
void kfeat_probe_all(struct kfeat *k, int own_netns);

/* One line for `easctl status`: "feature NAME on|off|unknown [detail] [note=|why=...]"
 * (note: what an "on" feature lacks; why: why it is off). */
const char *kfeat_line(const struct kfeat *k, enum kfeat_id id, char *out, size_t outsz);

/* The start log: one event=kernel_features line, then one warn line per feature off. */
void kfeat_log(const struct kfeat *k);

#endif
