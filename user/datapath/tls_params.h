/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * tls_params.h - the protocol knobs of the phone-facing TLS side: protocol
 * version names, the default lists, and the checks that let the config
 * loader refuse a cipher, ciphersuite or group list with file:line before
 * any context is built.
 *
 * OpenSSL is lenient where an admin needs it strict: a cipher list is
 * accepted as long as one entry matches anything, and a TLS 1.3
 * ciphersuite list silently drops names it does not know (an empty result
 * turns TLS 1.3 off). These checks refuse each entry that selects nothing.
 * Exclusions (!X, -X) are not checked: "!RC4" must stay valid where RC4 is
 * not built in.
 */
#ifndef EG_TLS_PARAMS_H
#define EG_TLS_PARAMS_H

#include <stddef.h>

/* TLS 1.2 AEAD suites with forward secrecy (ECDSA and RSA certificates). */
#define TLS_PARAMS_CIPHERS                                                                         \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* With TLS 1.0/1.1 enabled: those, then the CBC suites old phones have
 * (TLS 1.0/1.1 have no AEAD suite at all); the last two, without forward
 * secrecy, for clients without ECDHE (Android 2.x). */
#define TLS_PARAMS_CIPHERS_LEGACY                                                                  \
	TLS_PARAMS_CIPHERS ":ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"                         \
			   "ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:AES128-SHA:AES256-SHA"
/* TLS 1.3: AES-128-GCM/SHA-256 first: same security margin for this use, and
 * SHA-256 is what the CPU accelerates (SHA-NI); the key schedule hashes a lot. */
#define TLS_PARAMS_CIPHERSUITES                                                                    \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_PARAMS_GROUPS "X25519:P-256:P-384"

/* "TLSv1", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3" (case-insensitive)
 * -> TLS1_VERSION ... TLS1_3_VERSION; -1 if unknown. */
int tls_params_version(const char *name);
/* TLS1_VERSION -> "TLSv1.0" ...; "?" if unknown. */
const char *tls_params_version_name(int version);

/* 0, or -1 with why ("unknown cipher 'X'", ...). */
int tls_params_check_ciphers(const char *list, char *why, size_t whysz);
int tls_params_check_ciphersuites(const char *list, char *why, size_t whysz);
int tls_params_check_groups(const char *list, char *why, size_t whysz);
/* With min_version below TLS 1.2: the cipher list must hold a suite those
 * protocols can use (an AEAD-only list would refuse every old phone).
 * 0 otherwise, or -1 with why. */
int tls_params_check_old_protocols(const char *ciphers, int min_version, char *why, size_t whysz);

#endif
