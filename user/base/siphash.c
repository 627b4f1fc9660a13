/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* siphash.c - see siphash.h. Written from the SipHash paper's description. */
#include "siphash.h"
#include "hex.h"

#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/random.h>

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
	return (x << r) | (x >> (64 - r));
}

/* memcpy: the input has no alignment guarantee, and this compiles to one load. */
static inline uint64_t load_le64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

struct sip_state {
	uint64_t v0, v1, v2, v3;
};

static inline void sip_round(struct sip_state *s)
{
	s->v0 += s->v1;
	s->v1 = rotl64(s->v1, 13);
	s->v1 ^= s->v0;
	s->v0 = rotl64(s->v0, 32);
	s->v2 += s->v3;
	s->v3 = rotl64(s->v3, 16);
	s->v3 ^= s->v2;
	s->v0 += s->v3;
	s->v3 = rotl64(s->v3, 21);
	s->v3 ^= s->v0;
	s->v2 += s->v1;
	s->v1 = rotl64(s->v1, 17);
	s->v1 ^= s->v2;
	s->v2 = rotl64(s->v2, 32);
}

/* Compression: two SipRounds per 64-bit message word (the "2" of 2-4). */
static inline void sip_compress(struct sip_state *s, uint64_t m)
{
	s->v3 ^= m;
	sip_round(s);
	sip_round(s);
	s->v0 ^= m;
}

uint64_t siphash24(const struct siphash_key *k, const void *data, size_t len)
{
	/* Initialisation constants: "somepseudorandomlygeneratedbytes". */
	struct sip_state s = {
	    .v0 = k->k0 ^ UINT64_C(0x736f6d6570736575),
	    .v1 = k->k1 ^ UINT64_C(0x646f72616e646f6d),
	    .v2 = k->k0 ^ UINT64_C(0x6c7967656e657261),
	    .v3 = k->k1 ^ UINT64_C(0x7465646279746573),
	};
	const unsigned char *p = data;
	size_t full = len & ~(size_t)7;

	for (size_t i = 0; i < full; i += 8)
		sip_compress(&s, load_le64(p + i));

	/* Last word: the 0..7 trailing bytes, zero padded, length mod 256 on top. */
	unsigned char tail[8] = {0};
	if (len > full)
		memcpy(tail, p + full, len - full);
	sip_compress(&s, load_le64(tail) | ((uint64_t)(len & 0xff) << 56));

	/* Finalisation: four SipRounds (the "4"). */
	s.v2 ^= 0xff;
	for (int r = 0; r < 4; r++)
		sip_round(&s);
	return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

int siphash_key_from_hex(struct siphash_key *k, const char *hex32)
{
	unsigned char b[16];

	if (!k || !hex32)
		return -EINVAL;
	for (int i = 0; i < 16; i++) {
		/* Stop at the first non-digit (a NUL included): never read past a short string. */
		int hi = hex_digit_value(hex32[2 * i]);
		int lo = hi >= 0 ? hex_digit_value(hex32[2 * i + 1]) : -1;
		if (hi < 0 || lo < 0) {
			explicit_bzero(b, sizeof(b));
			return -EINVAL;
		}
		b[i] = (unsigned char)(hi << 4 | lo);
	}
	if (hex32[32] != '\0') {
		explicit_bzero(b, sizeof(b));
		return -EINVAL;
	}
	k->k0 = load_le64(b);
	k->k1 = load_le64(b + 8);
	explicit_bzero(b, sizeof(b));
	return 0;
}

int siphash_key_random(struct siphash_key *k)
{
	unsigned char b[16];
	size_t got = 0;

	if (!k)
		return -EINVAL;
	while (got < sizeof(b)) {
		ssize_t r = getrandom(b + got, sizeof(b) - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int err = errno;
			explicit_bzero(b, sizeof(b));
			return -err;
		}
		got += (size_t)r;
	}
	k->k0 = load_le64(b);
	k->k1 = load_le64(b + 8);
	explicit_bzero(b, sizeof(b));
	return 0;
}
