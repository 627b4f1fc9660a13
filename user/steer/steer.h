/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * steer.h - the steering key: whose request this is, as a keyed hash, so
 * that every request of one user reaches the same backend (the Maglev table
 * of backend.h) and a kernel flow verdict names the user without naming it.
 *
 * The key is SipHash-2-4(installation secret, X) where X is the first of:
 * the identity (the Basic user, else User=; eas.h), the DeviceId, the
 * Authorization value itself (an NTLM/Negotiate Autodiscover request names
 * nobody else), the connection (nothing names anyone: the request is kept on
 * one backend for this connection only). Nothing here is stored or logged;
 * the secret lives in the state directory (steering.key), so affinity
 * survives restarts and is the same on every worker.
 */
#ifndef EG_STEER_H
#define EG_STEER_H

#include <stddef.h>
#include <stdint.h>

#include "siphash.h"

/* identity and device_id: NUL-terminated ("" = none); authz: the
 * Authorization header's value (NULL or n == 0: none); conn: any value
 * unique to the client connection. */
uint64_t steer_key(const struct siphash_key *secret, const char *identity, const char *device_id,
		   const char *authz, size_t authz_len, uintptr_t conn);

#endif
