/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_srccap.c - connections per source across processes: sources (IPv4,
 * IPv6 /64, IPv4-mapped), counts summed over slots, a dead slot forgotten,
 * a full table refusing new sources (and only those), and 200,000 random
 * adds and deletes agreeing with a plain reference model (backward-shift
 * deletion never loses an entry). Counting across a fork uses real processes.
 */
#include "testlib.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <unistd.h>

#include "srccap.h"

static const struct siphash_key key = {0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};

static uint64_t tag_of(const char *ip)
{
	struct sockaddr_storage ss = {0};
	uint8_t src[16];
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	assert_int_equal(srccap_source((struct sockaddr *)&ss, src), 0);
	return srccap_tag(&key, src);
}

static void test_sources(void **state)
{
	uint8_t src[16];
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
	inet_pton(AF_INET6, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", &s6.sin6_addr);
	assert_int_equal(srccap_source((struct sockaddr *)&s6, src), 0);
	static const uint8_t want[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2};
	assert_memory_equal(src, want, 16); /* the /64, low half zero */
	/* Two hosts in one /64 are one source; the next /64 is another. */
	assert_true(tag_of("2001:db8:1:2::1") == tag_of("2001:db8:1:2:ffff::9"));
	assert_true(tag_of("2001:db8:1:2::1") != tag_of("2001:db8:1:3::1"));
	/* IPv4 and IPv4-mapped IPv6 are the same source, each address its own. */
	assert_true(tag_of("198.18.0.2") == tag_of("::ffff:198.18.0.2"));
	assert_true(tag_of("198.18.0.2") != tag_of("198.18.0.3"));
	struct sockaddr sa = {.sa_family = AF_UNIX};
	assert_int_equal(srccap_source(&sa, src), -1);
}

static void test_count_over_slots(void **state)
{
	struct srccap *s = srccap_new(4, 1000);
	assert_non_null(s);
	uint64_t a = tag_of("198.18.0.2"), b = tag_of("198.18.0.3");
	assert_int_equal(srccap_count(s, a), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(srccap_add(s, 0, a), 0);
	for (int i = 0; i < 7; i++)
		assert_int_equal(srccap_add(s, 3, a), 0);
	assert_int_equal(srccap_add(s, 1, b), 0);
	assert_int_equal(srccap_count(s, a), 12);
	assert_int_equal(srccap_count(s, b), 1);
	srccap_del(s, 3, a);
	assert_int_equal(srccap_count(s, a), 11);
	srccap_del(s, 1, b);
	srccap_del(s, 1, b); /* more deletes than adds: no underflow */
	assert_int_equal(srccap_count(s, b), 0);
	/* The process owning slot 3 died: its 6 connections went with it. */
	srccap_slot_reset(s, 3);
	assert_int_equal(srccap_count(s, a), 5);
	assert_int_equal(srccap_add(s, 3, a), 0);
	assert_int_equal(srccap_count(s, a), 6);
	assert_int_equal(srccap_add(s, 4, a), -1); /* no such slot */
	srccap_free(s);
	srccap_free(NULL);
}

static void test_full_table(void **state)
{
	struct srccap *s = srccap_new(1, 10); /* 256 entries, 192 sources at most */
	assert_non_null(s);
	int added = 0;
	char ip[32];
	for (int i = 0; i < 300; i++) {
		snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 250, i % 250 + 1);
		if (srccap_add(s, 0, tag_of(ip)) == 0)
			added++;
	}
	assert_int_equal(added, 192);
	/* Known sources still count when the table is full; new ones do not. */
	assert_int_equal(srccap_add(s, 0, tag_of("10.0.0.1")), 0);
	assert_int_equal(srccap_count(s, tag_of("10.0.0.1")), 2);
	assert_int_equal(srccap_add(s, 0, tag_of("192.0.2.1")), -1);
	srccap_del(s, 0, tag_of("10.0.0.5"));
	assert_int_equal(srccap_add(s, 0, tag_of("192.0.2.1")), 0);
	srccap_free(s);
}

/* Random adds and deletes over few sources in a small table (long probe runs,
 * wrap-around): every count agrees with a reference array after each step. */
static void test_random_model(void **state)
{
	enum { NSRC = 150, STEPS = 200000 };
	struct srccap *s = srccap_new(2, 100); /* 256 entries per slot */
	assert_non_null(s);
	uint64_t tags[NSRC];
	unsigned ref[2][NSRC] = {{0}};
	for (int i = 0; i < NSRC; i++) {
		/* Tags chosen to collide: many share a home index. */
		tags[i] = ((uint64_t)(i + 1) << 32) | (uint64_t)(i % 7) * 37u;
	}
	uint32_t x = 12345;
	for (int step = 0; step < STEPS; step++) {
		x = x * 1103515245u + 12345u;
		int i = (int)((x >> 8) % NSRC), sl = (int)((x >> 4) & 1);
		if ((x >> 20) % 3 && ref[sl][i] < 5) {
			assert_int_equal(srccap_add(s, (unsigned)sl, tags[i]), 0);
			ref[sl][i]++;
		} else if (ref[sl][i]) {
			srccap_del(s, (unsigned)sl, tags[i]);
			ref[sl][i]--;
		}
		if (step % 97 == 0 || step == STEPS - 1)
			for (int k = 0; k < NSRC; k++)
				assert_int_equal(srccap_count(s, tags[k]), ref[0][k] + ref[1][k]);
	}
	srccap_free(s);
}

/* Two processes, two slots, one mapping: each sees the other's connections. */
static void test_across_fork(void **state)
{
	struct srccap *s = srccap_new(2, 100);
	assert_non_null(s);
	uint64_t a = tag_of("198.18.0.9");
	int p2c[2], c2p[2];
	assert_int_equal(pipe(p2c), 0);
	assert_int_equal(pipe(c2p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char c;
		for (int i = 0; i < 3; i++)
			srccap_add(s, 1, a);
		if (write(c2p[1], "x", 1) != 1 || read(p2c[0], &c, 1) != 1)
			_exit(2);
		_exit(srccap_count(s, a) == 5 ? 0 : 1);
	}
	char c;
	assert_int_equal(read(c2p[0], &c, 1), 1);
	srccap_add(s, 0, a);
	srccap_add(s, 0, a);
	assert_int_equal(srccap_count(s, a), 5);
	assert_int_equal(write(p2c[1], "x", 1), 1);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	srccap_slot_reset(s, 1); /* the child is gone */
	assert_int_equal(srccap_count(s, a), 2);
	srccap_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sources),	cmocka_unit_test(test_count_over_slots),
	    cmocka_unit_test(test_full_table),	cmocka_unit_test(test_random_model),
	    cmocka_unit_test(test_across_fork),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
