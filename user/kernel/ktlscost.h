/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * ktlscost.h - is kernel TLS cheaper than OpenSSL on this machine? Measured
 * at start (tls.ktls = "auto"), as the relay's splice choice is: the same
 * bytes through a loopback TCP pair in this thread, as 16 KiB AES-128-GCM
 * records sealed and opened by OpenSSL around plain send/recv, and as
 * plaintext through a kTLS TX socket to a kTLS RX socket. The figure is this
 * thread's CPU time (user + system: the kernel's crypto runs in the
 * sendmsg/recvmsg calls) per 10^9 bytes, the best of a few alternating
 * rounds. Both include the loopback TCP work, which is the same in each.
 */
#ifndef EG_KTLSCOST_H
#define EG_KTLSCOST_H

#include <stddef.h>

struct ktlscost {
	double user_s_per_gb;	/* OpenSSL records + send/recv */
	double kernel_s_per_gb; /* kTLS send/recv */
	size_t bytes;		/* per method and round */
	int rounds;
	char why[120]; /* a method that could not run: why ("" = both ran) */
};

/* 0 with both figures, -errno (why says) when either could not run. */
int ktlscost_measure(struct ktlscost *out, size_t bytes, int rounds);

#endif
