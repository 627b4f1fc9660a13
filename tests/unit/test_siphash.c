/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_siphash.c - SipHash-2-4 against the published reference vectors and
 * against OpenSSL's EVP_MAC "SIPHASH" (8-byte output) as an independent
 * oracle, plus the key parsing and generation contracts.
 */
#include "testlib.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "siphash.h"

/* The paper's key: bytes 00 01 .. 0f. */
static const struct siphash_key ref_key = {UINT64_C(0x0706050403020100),
					   UINT64_C(0x0f0e0d0c0b0a0908)};

/*
 * Expected tags for key 00..0f and message 00 01 .. (len-1), from the
 * reference implementation's vectors (its 8 output bytes read little-endian).
 * Length 15 is the worked example of the paper's appendix.
 */
static const struct {
	size_t len;
	uint64_t tag;
} ref_vectors[] = {
    {0, UINT64_C(0x726fdb47dd0e0e31)},	{1, UINT64_C(0x74f839c593dc67fd)},
    {2, UINT64_C(0x0d6c8009d9a94f5a)},	{3, UINT64_C(0x85676696d7fb7e2d)},
    {4, UINT64_C(0xcf2794e0277187b7)},	{5, UINT64_C(0x18765564cd99a68d)},
    {6, UINT64_C(0xcbc9466e58fee3ce)},	{7, UINT64_C(0xab0200f58b01d137)},
    {8, UINT64_C(0x93f5f5799a932462)},	{9, UINT64_C(0x9e0082df0ba9e4b0)},
    {10, UINT64_C(0x7a5dbbc594ddb9f3)}, {11, UINT64_C(0xf4b32f46226bada7)},
    {12, UINT64_C(0x751e8fbc860ee5fb)}, {15, UINT64_C(0xa129ca6149be45e5)},
};

static EVP_MAC *oracle_mac;

static int setup(void **state)
{
	(void)state;
	oracle_mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
	return oracle_mac ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	EVP_MAC_free(oracle_mac);
	return 0;
}

static uint64_t le64_from(const unsigned char *b)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

static void le64_to(unsigned char *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
}

/* OpenSSL's SipHash-2-4 (8-byte tag), returned the way siphash24() returns it. */
static uint64_t oracle(const struct siphash_key *k, const void *data, size_t len)
{
	unsigned char key[16], out[8];
	size_t outlen = 0, tagsize = 8;
	OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &tagsize),
			       OSSL_PARAM_construct_end()};
	EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(oracle_mac);
	static const unsigned char none[1];

	assert_non_null(ctx);
	le64_to(key, k->k0);
	le64_to(key + 8, k->k1);
	assert_int_equal(EVP_MAC_init(ctx, key, sizeof(key), params), 1);
	assert_int_equal(EVP_MAC_update(ctx, len ? data : none, len), 1);
	assert_int_equal(EVP_MAC_final(ctx, out, &outlen, sizeof(out)), 1);
	assert_int_equal(outlen, 8);
	EVP_MAC_CTX_free(ctx);
	return le64_from(out);
}

/* Deterministic xorshift64*: reproducible "random" keys and messages. */
static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(0x2545f4914f6cdd1d);
}

static void ref_message(unsigned char *msg, size_t n)
{
	for (size_t i = 0; i < n; i++)
		msg[i] = (unsigned char)i;
}

static void test_reference_vectors(void **state)
{
	(void)state;
	unsigned char msg[16];
	ref_message(msg, sizeof(msg));
	for (size_t i = 0; i < sizeof(ref_vectors) / sizeof(ref_vectors[0]); i++) {
		uint64_t got = siphash24(&ref_key, msg, ref_vectors[i].len);
		if (got != ref_vectors[i].tag)
			fail_msg("len %zu: got %016llx want %016llx", ref_vectors[i].len,
				 (unsigned long long)got, (unsigned long long)ref_vectors[i].tag);
	}
	/* Empty input may come with a NULL pointer. */
	assert_true(siphash24(&ref_key, NULL, 0) == UINT64_C(0x726fdb47dd0e0e31));
}

/* Every length 0..64 of the reference message: all tail sizes, 0..8 blocks. */
static void test_every_length_vs_openssl(void **state)
{
	(void)state;
	unsigned char msg[65];
	ref_message(msg, sizeof(msg));
	/* The oracle itself must agree with the published vectors first. */
	assert_true(oracle(&ref_key, msg, 15) == UINT64_C(0xa129ca6149be45e5));
	for (size_t len = 0; len <= 64; len++) {
		uint64_t got = siphash24(&ref_key, msg, len), want = oracle(&ref_key, msg, len);
		if (got != want)
			fail_msg("len %zu: got %016llx want %016llx", len, (unsigned long long)got,
				 (unsigned long long)want);
	}
}

/* Random keys and bytes, lengths 0..300 and 1031, against OpenSSL. */
static void test_random_vs_openssl(void **state)
{
	(void)state;
	uint64_t seed = UINT64_C(0x5eed0fea5a7e0001);
	unsigned char msg[1031];

	for (int round = 0; round < 20; round++) {
		struct siphash_key k = {rng_next(&seed), rng_next(&seed)};
		for (size_t i = 0; i < sizeof(msg); i++)
			msg[i] = (unsigned char)rng_next(&seed);
		/* Past 255 too: only the low byte of the length enters the last word. */
		for (size_t len = 0; len <= 300; len++)
			assert_true(siphash24(&k, msg, len) == oracle(&k, msg, len));
		assert_true(siphash24(&k, msg, sizeof(msg)) == oracle(&k, msg, sizeof(msg)));
	}
}

/* Input at every misalignment gives the same tag (and no UBSan alignment report). */
static void test_unaligned_input(void **state)
{
	(void)state;
	unsigned char msg[64], buf[64 + 16];
	ref_message(msg, sizeof(msg));
	for (size_t off = 1; off < 16; off++) {
		memcpy(buf + off, msg, sizeof(msg));
		for (size_t len = 0; len <= 64; len++)
			assert_true(siphash24(&ref_key, buf + off, len) ==
				    siphash24(&ref_key, msg, len));
	}
	memcpy(buf + 1, msg, 15);
	assert_true(siphash24(&ref_key, buf + 1, 15) == UINT64_C(0xa129ca6149be45e5));
}

/* The tag depends on every key and message bit: flip each, the tag changes. */
static void test_key_and_message_sensitivity(void **state)
{
	(void)state;
	unsigned char msg[24];
	ref_message(msg, sizeof(msg));
	uint64_t base = siphash24(&ref_key, msg, sizeof(msg));
	for (int bit = 0; bit < 128; bit++) {
		struct siphash_key k = ref_key;
		if (bit < 64)
			k.k0 ^= UINT64_C(1) << bit;
		else
			k.k1 ^= UINT64_C(1) << (bit - 64);
		assert_true(siphash24(&k, msg, sizeof(msg)) != base);
	}
	for (size_t bit = 0; bit < 8 * sizeof(msg); bit++) {
		msg[bit / 8] ^= (unsigned char)(1u << (bit % 8));
		assert_true(siphash24(&ref_key, msg, sizeof(msg)) != base);
		msg[bit / 8] ^= (unsigned char)(1u << (bit % 8));
	}
	/* Trailing zero bytes are not ignored: the length is part of the input. */
	unsigned char zeros[8] = {0};
	assert_true(siphash24(&ref_key, zeros, 3) != siphash24(&ref_key, zeros, 4));
}

static void test_key_from_hex(void **state)
{
	(void)state;
	struct siphash_key k = {0, 0};
	assert_int_equal(siphash_key_from_hex(&k, "000102030405060708090a0b0c0d0e0f"), 0);
	assert_true(k.k0 == ref_key.k0 && k.k1 == ref_key.k1);
	assert_int_equal(siphash_key_from_hex(&k, "FFEEDDCCBBAA99887766554433221100"), 0);
	assert_true(k.k0 == UINT64_C(0x8899aabbccddeeff));
	assert_true(k.k1 == UINT64_C(0x0011223344556677));
}

static void test_key_from_hex_rejects(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "",
	    "000102030405060708090a0b0c0d0e0",	 /* 31 digits */
	    "000102030405060708090a0b0c0d0e0f0", /* 33 digits */
	    "000102030405060708090a0b0c0d0e0f\n",
	    "0x0102030405060708090a0b0c0d0e0f",
	    "000102030405060708090a0b0c0d0e0g",
	    " 00102030405060708090a0b0c0d0e0f",
	    "00010203040506070809 a0b0c0d0e0f",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct siphash_key k = {1, 2};
		assert_int_equal(siphash_key_from_hex(&k, bad[i]), -EINVAL);
		/* A rejected key must not half-overwrite the previous one. */
		assert_true(k.k0 == 1 && k.k1 == 2);
	}
	struct siphash_key k;
	assert_int_equal(siphash_key_from_hex(&k, NULL), -EINVAL);
	assert_int_equal(siphash_key_from_hex(NULL, "000102030405060708090a0b0c0d0e0f"), -EINVAL);
}

static void test_key_random(void **state)
{
	(void)state;
	struct siphash_key a = {0, 0}, b = {0, 0};
	assert_int_equal(siphash_key_random(&a), 0);
	assert_int_equal(siphash_key_random(&b), 0);
	/* 2^-128 chance of a false failure; an unfilled or constant key fails. */
	assert_false(a.k0 == b.k0 && a.k1 == b.k1);
	assert_false(a.k0 == 0 && a.k1 == 0);
	assert_int_equal(siphash_key_random(NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reference_vectors),
	    cmocka_unit_test(test_every_length_vs_openssl),
	    cmocka_unit_test(test_random_vs_openssl),
	    cmocka_unit_test(test_unaligned_input),
	    cmocka_unit_test(test_key_and_message_sensitivity),
	    cmocka_unit_test(test_key_from_hex),
	    cmocka_unit_test(test_key_from_hex_rejects),
	    cmocka_unit_test(test_key_random),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
