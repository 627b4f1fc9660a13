/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_steer.c - the steering key: the identity decides, whatever else the
 * request carries; then the DeviceId, then the Authorization value, then the
 * connection; and it is the installation secret's keyed hash of it.
 */
#include "testlib.h"

#include "siphash.h"
#include "steer.h"

static void test_precedence(void **state)
{
	struct siphash_key k = {0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull}, other = k;
	other.k0 ^= 1;
	uint64_t alice = siphash24(&k, "alice", 5);
	assert_int_equal(steer_key(&k, "alice", "DEV1", "NTLM abc", 8, 1), alice);
	assert_int_equal(steer_key(&k, "alice", "DEV2", NULL, 0, 2),
			 alice); /* device, conn: no matter */
	assert_int_equal(steer_key(&k, "", "DEV1", "NTLM abc", 8, 1), siphash24(&k, "DEV1", 4));
	assert_int_equal(steer_key(&k, "", "", "NTLM abc", 8, 1), siphash24(&k, "NTLM abc", 8));
	uintptr_t conn = 12345;
	assert_int_equal(steer_key(&k, "", "", NULL, 0, conn), siphash24(&k, &conn, sizeof(conn)));
	assert_int_equal(steer_key(&k, "", "", "x", 0, conn), siphash24(&k, &conn, sizeof(conn)));
	assert_int_not_equal(steer_key(&other, "alice", "", NULL, 0, 1), alice); /* keyed */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_precedence),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
