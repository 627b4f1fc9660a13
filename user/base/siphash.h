/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * siphash.h - SipHash-2-4 (Aumasson & Bernstein, 2012), 64-bit output.
 *
 * The gateway never stores or maps a user identity in clear: BPF maps, logs
 * and the steering table see only siphash24(installation secret, identity).
 * Hand-written because it runs once per request on the hot path, where an
 * OpenSSL EVP_MAC fetch costs about a microsecond.
 *
 * Key layout follows the reference implementation: the 16 key bytes
 * b[0..15] give k0 = little-endian b[0..7] and k1 = little-endian b[8..15],
 * so the paper's key 00 01 .. 0f is { 0x0706050403020100, 0x0f0e0d0c0b0a0908 }.
 */
#ifndef EG_SIPHASH_H
#define EG_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* A 128-bit SipHash key. It is a secret: never log it or put it in a map. */
struct siphash_key {
	uint64_t k0, k1;
};

/*
 * SipHash-2-4 of len bytes at data (any alignment; data may be NULL when
 * len == 0). Returns the 64-bit tag as an integer; its little-endian bytes
 * are the reference implementation's 8-byte output. Pure, thread-safe.
 */
uint64_t siphash24(const struct siphash_key *k, const void *data, size_t len);

/*
 * Parse exactly 32 hex digits (either case, NUL-terminated, nothing else:
 * no prefix, spaces or newline) as the 16 key bytes in order. Returns 0, or
 * -EINVAL and leaves *k untouched.
 */
int siphash_key_from_hex(struct siphash_key *k, const char *hex32);

/*
 * Fill *k from getrandom() (blocks until the kernel pool is initialised,
 * retries on EINTR). Returns 0, or -errno and leaves *k untouched.
 */
int siphash_key_random(struct siphash_key *k);

#endif
