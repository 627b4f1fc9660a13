/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* tls_params.c - see tls_params.h. */
#include "tls_params.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct {
	const char *name;
	int version;
} versions[] = {
    {"TLSv1", TLS1_VERSION},	 {"TLSv1.0", TLS1_VERSION},   {"TLSv1.1", TLS1_1_VERSION},
    {"TLSv1.2", TLS1_2_VERSION}, {"TLSv1.3", TLS1_3_VERSION},
};

int tls_params_version(const char *name)
{
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
		if (!strcasecmp(name, versions[i].name))
			return versions[i].version;
	return -1;
}

const char *tls_params_version_name(int version)
{
	switch (version) {
	case TLS1_VERSION:
		return "TLSv1.0";
	case TLS1_1_VERSION:
		return "TLSv1.1";
	case TLS1_2_VERSION:
		return "TLSv1.2";
	case TLS1_3_VERSION:
		return "TLSv1.3";
	default:
		return "?";
	}
}

/* Calls ok(ctx, token) for each token between separators (cipher lists
 * take ':', ',' and ' ', as OpenSSL does; the others only ':'); the first
 * token it refuses is named in why. */
static int each_token(const char *list, const char *seps, const char *what,
		      int (*ok)(SSL_CTX *, const char *), char *why, size_t whysz)
{
	char tok[128];
	int n = 0, rc = 0;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		snprintf(why, whysz, "cannot check the %s list: out of memory", what);
		return -1;
	}
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, seps);
		if (len >= sizeof(tok)) {
			snprintf(why, whysz, "%s entry '%.40s...' is too long", what, p);
			rc = -1;
			break;
		}
		if (len) {
			memcpy(tok, p, len);
			tok[len] = 0;
			n++;
			if (!ok(ctx, tok)) {
				snprintf(why, whysz, "unknown %s '%s'", what, tok);
				rc = -1;
				break;
			}
		}
		p += len;
		p += *p != 0;
	}
	if (!rc && !n) {
		snprintf(why, whysz, "the %s list is empty", what);
		rc = -1;
	}
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

static int cipher_ok(SSL_CTX *ctx, const char *tok)
{
	if (tok[0] == '@') /* @STRENGTH, @SECLEVEL=n: checked with the whole list */
		return 1;
	if (tok[0] == '!' || tok[0] == '-')
		return tok[1] != 0; /* exclusions need not name something built in */
	if (tok[0] == '+')
		tok++;
	return SSL_CTX_set_cipher_list(ctx, tok) == 1;
}

int tls_params_check_ciphers(const char *list, char *why, size_t whysz)
{
	if (each_token(list, ":, ", "cipher", cipher_ok, why, whysz) < 0)
		return -1;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	int ok = ctx && SSL_CTX_set_cipher_list(ctx, list) == 1;
	SSL_CTX_free(ctx);
	ERR_clear_error();
	if (!ok) {
		snprintf(why, whysz, "the cipher list selects no cipher");
		return -1;
	}
	return 0;
}

/* A TLS 1.3 suite OpenSSL knows: setting it alone leaves exactly one
 * TLS 1.3 cipher in the context (unknown names are dropped silently). */
static int suite_ok(SSL_CTX *ctx, const char *tok)
{
	if (SSL_CTX_set_ciphersuites(ctx, tok) != 1)
		return 0;
	STACK_OF(SSL_CIPHER) *sk = SSL_CTX_get_ciphers(ctx);
	int n13 = 0;
	for (int i = 0; i < sk_SSL_CIPHER_num(sk); i++)
		n13 += !strcmp(SSL_CIPHER_get_version(sk_SSL_CIPHER_value(sk, i)), "TLSv1.3");
	return n13 == 1;
}

int tls_params_check_ciphersuites(const char *list, char *why, size_t whysz)
{
	return each_token(list, ":", "TLS 1.3 ciphersuite", suite_ok, why, whysz);
}

static int group_ok(SSL_CTX *ctx, const char *tok)
{
	return SSL_CTX_set1_groups_list(ctx, tok) == 1;
}

int tls_params_check_groups(const char *list, char *why, size_t whysz)
{
	return each_token(list, ":", "group", group_ok, why, whysz);
}

int tls_params_check_old_protocols(const char *ciphers, int min_version, char *why, size_t whysz)
{
	if (min_version >= TLS1_2_VERSION)
		return 0;
	/* What a client limited to TLS 1.0/1.1 could offer from this list, at
	 * the security level the server side then runs at. */
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *s = NULL;
	int n = -1;
	if (ctx && SSL_CTX_set_cipher_list(ctx, ciphers) == 1) {
		SSL_CTX_set_security_level(ctx, 0);
		SSL_CTX_set_min_proto_version(ctx, min_version);
		SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
		s = SSL_new(ctx);
		STACK_OF(SSL_CIPHER) *sk = s ? SSL_get1_supported_ciphers(s) : NULL;
		n = sk ? sk_SSL_CIPHER_num(sk) : 0;
		sk_SSL_CIPHER_free(sk);
	}
	SSL_free(s);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	if (n > 0)
		return 0;
	snprintf(why, whysz,
		 "min_version %s, but no cipher in the list works below TLS 1.2 (those have no "
		 "AEAD suite): add CBC suites such as ECDHE-RSA-AES128-SHA, or leave ciphers "
		 "unset for the default that has them",
		 tls_params_version_name(min_version));
	return -1;
}
