/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* steer.c - see steer.h. */
#include "steer.h"

#include <string.h>

uint64_t steer_key(const struct siphash_key *secret, const char *identity, const char *device_id,
		   const char *authz, size_t authz_len, uintptr_t conn)
{
	const char *id = identity[0] ? identity : device_id;
	if (id[0])
		return siphash24(secret, id, strlen(id));
	if (authz && authz_len)
		return siphash24(secret, authz, authz_len);
	return siphash24(secret, &conn, sizeof(conn));
}
