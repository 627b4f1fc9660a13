/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * fuzz_prefix.c - config_parse_prefix() (limits.per_source_exempt) on
 * arbitrary text. An accepted prefix has a length within 0..128 and no host
 * bits set, contains its own address, and parses from its printed form to
 * the same prefix; a prefix of length 128 matches exactly one address.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[128];
	struct cfg_prefix p, q;
	if (size >= sizeof(text))
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	if (config_parse_prefix(text, &p) < 0)
		return 0;
	if (p.len > 128)
		abort();
	for (unsigned bit = p.len; bit < 128; bit++)
		if (p.addr[bit / 8] & (0x80u >> (bit % 8)))
			abort();
	if (!config_prefix_match(&p, p.addr))
		abort();
	char addr[INET6_ADDRSTRLEN], again[INET6_ADDRSTRLEN + 8];
	if (!inet_ntop(AF_INET6, p.addr, addr, sizeof(addr)))
		abort();
	snprintf(again, sizeof(again), "%s/%u", addr, p.len);
	if (config_parse_prefix(again, &q) < 0 || memcmp(&p, &q, sizeof(p)))
		abort();
	if (p.len == 128) {
		uint8_t other[16];
		memcpy(other, p.addr, 16);
		other[15] ^= 1;
		if (config_prefix_match(&p, other))
			abort();
	}
	return 0;
}
