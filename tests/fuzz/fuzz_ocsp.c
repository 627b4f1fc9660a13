/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * fuzz_ocsp.c - libFuzzer target for what the master does with bytes a
 * responder (or a response file) hands it: ocsp_check_response against a
 * certificate made at start. Whatever the bytes, the answer is 0 or -1 with
 * a reason, never a crash; and bytes not signed by the issuer are never
 * accepted (nothing here can forge its signature).
 */
#include "ocsp.h"

#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

static X509 *leaf, *issuer;
static X509_STORE *store;
static STACK_OF(X509) * untrusted;

static X509 *make(const char *cn, EVP_PKEY *key, X509 *signer, EVP_PKEY *signer_key)
{
	X509 *x = X509_new();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), signer ? 2 : 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -86400);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(signer ? signer : x));
	X509_set_pubkey(x, key);
	X509_sign(x, signer_key, EVP_sha256());
	return x;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	EVP_PKEY *ck = EVP_EC_gen("P-256"), *lk = EVP_EC_gen("P-256");
	issuer = make("fuzz CA", ck, NULL, ck);
	leaf = make("fuzz leaf", lk, issuer, ck);
	store = X509_STORE_new();
	X509_STORE_add_cert(store, issuer);
	untrusted = sk_X509_new_null();
	EVP_PKEY_free(ck);
	EVP_PKEY_free(lk);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ocsp_verdict v;
	int rc = ocsp_check_response(data, size, leaf, issuer, untrusted, store, time(NULL), &v);
	if (rc == 0)
		abort(); /* accepted bytes nobody here signed */
	if (!memchr(v.why, 0, sizeof(v.why)) || !v.why[0])
		abort(); /* a refusal always says why */
	return 0;
}
