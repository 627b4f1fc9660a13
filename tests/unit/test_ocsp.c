/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_ocsp.c - what may be stapled. Responses are built here with OpenSSL
 * (root -> intermediate -> leaf, the intermediate or a delegate signs) with
 * exact dates and statuses: good is taken; revoked, unknown, expired, not yet
 * valid, signed by a stranger or by a delegate without id-kp-OCSPSigning,
 * about another certificate, not successful, truncated or garbage are not.
 * And the shared-memory slot: a worker reads only its certificate's
 * response, and never after it expired.
 */
#include "testlib.h"

#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>
#include <limits.h>
#include <time.h>

#include "ocsp.h"
#include "shm.h"

struct party {
	EVP_PKEY *key;
	X509 *cert;
};

static struct party root, inter, leaf, other_leaf, stranger, delegate, delegate_no_eku;
static X509_STORE *store;
static STACK_OF(X509) * untrusted;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(e);
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
}

/* A certificate for cn, signed by issuer (NULL: self-signed). */
static void make(struct party *p, const char *cn, const struct party *issuer, int ca,
		 const char *eku)
{
	static long serial = 1000;
	p->key = EVP_EC_gen("P-256");
	assert_non_null(p->key);
	X509 *x = X509_new();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -86400);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer->cert) : n);
	X509_set_pubkey(x, p->key);
	X509 *ic = issuer ? issuer->cert : x;
	add_ext(x, ic, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	if (ca)
		add_ext(x, ic, NID_key_usage, "critical,keyCertSign,cRLSign");
	if (eku)
		add_ext(x, ic, NID_ext_key_usage, eku);
	assert_true(X509_sign(x, issuer ? issuer->key : p->key, EVP_sha256()) > 0);
	p->cert = x;
}

static int setup(void **state)
{
	make(&root, "test root", NULL, 1, NULL);
	make(&inter, "test intermediate", &root, 1, NULL);
	make(&leaf, "mail.example.test", &inter, 0, "serverAuth");
	make(&other_leaf, "other.example.test", &inter, 0, "serverAuth");
	make(&stranger, "stranger", NULL, 1, NULL);
	make(&delegate, "delegated responder", &inter, 0, "OCSPSigning");
	make(&delegate_no_eku, "responder without EKU", &inter, 0, "serverAuth");
	store = X509_STORE_new();
	X509_STORE_add_cert(store, root.cert);
	untrusted = sk_X509_new_null();
	sk_X509_push(untrusted, inter.cert);
	return 0;
}

static int teardown(void **state)
{
	struct party *all[] = {&root,	  &inter,    &leaf,	      &other_leaf,
			       &stranger, &delegate, &delegate_no_eku};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		X509_free(all[i]->cert);
		EVP_PKEY_free(all[i]->key);
	}
	X509_STORE_free(store);
	sk_X509_free(untrusted);
	return 0;
}

#define NO_NEXT LONG_MIN

/* A DER response about `about` (issued by inter), signed by signer. */
static unsigned char *response(const struct party *about, const struct party *signer, int status,
			       long this_off, long next_off, int *len)
{
	OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
	OCSP_CERTID *id = OCSP_cert_to_id(NULL, about->cert, inter.cert);
	ASN1_TIME *tu = X509_gmtime_adj(NULL, this_off);
	ASN1_TIME *nu = next_off == NO_NEXT ? NULL : X509_gmtime_adj(NULL, next_off);
	ASN1_TIME *rev = X509_gmtime_adj(NULL, -7200);
	assert_non_null(OCSP_basic_add1_status(
	    bs, id, status,
	    status == V_OCSP_CERTSTATUS_REVOKED ? OCSP_REVOKED_STATUS_KEYCOMPROMISE : 0, rev, tu,
	    nu));
	/* A delegate's certificate travels in the response; the issuer's is
	 * known to the client already (and a flipped bit must land in signed
	 * data, not in an unused copy of it). */
	unsigned long flags = signer == &delegate || signer == &delegate_no_eku ? 0 : OCSP_NOCERTS;
	assert_int_equal(OCSP_basic_sign(bs, signer->cert, signer->key, EVP_sha256(), NULL, flags),
			 1);
	OCSP_RESPONSE *r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
	unsigned char *der = NULL;
	*len = i2d_OCSP_RESPONSE(r, &der);
	assert_true(*len > 0);
	OCSP_RESPONSE_free(r);
	OCSP_BASICRESP_free(bs);
	OCSP_CERTID_free(id);
	ASN1_TIME_free(tu);
	ASN1_TIME_free(nu);
	ASN1_TIME_free(rev);
	return der;
}

/* ocsp_check_response on that response; returns its rc, verdict in v. */
static int check(const struct party *about, const struct party *signer, int status, long this_off,
		 long next_off, struct ocsp_verdict *v)
{
	int len;
	unsigned char *der = response(about, signer, status, this_off, next_off, &len);
	int rc = ocsp_check_response(der, (size_t)len, leaf.cert, inter.cert, untrusted, store,
				     time(NULL), v);
	OPENSSL_free(der);
	return rc;
}

static void test_good(void **state)
{
	struct ocsp_verdict v;
	time_t now = time(NULL);
	assert_int_equal(check(&leaf, &inter, V_OCSP_CERTSTATUS_GOOD, -60, 3600, &v), 0);
	assert_int_equal(v.status, V_OCSP_CERTSTATUS_GOOD);
	assert_true(v.this_update >= now - 62 && v.this_update <= now - 58);
	assert_true(v.expires >= now + 3598 && v.expires <= now + 3602);
	/* a responder the issuer delegated to, with id-kp-OCSPSigning */
	assert_int_equal(check(&leaf, &delegate, V_OCSP_CERTSTATUS_GOOD, -60, 3600, &v), 0);
	/* no nextUpdate: valid for OCSP_NO_NEXT_UPDATE_S after thisUpdate */
	assert_int_equal(check(&leaf, &inter, V_OCSP_CERTSTATUS_GOOD, -60, NO_NEXT, &v), 0);
	assert_int_equal(v.expires - v.this_update, OCSP_NO_NEXT_UPDATE_S);
	/* thisUpdate a little ahead of our clock: within the allowed skew */
	assert_int_equal(check(&leaf, &inter, V_OCSP_CERTSTATUS_GOOD, 120, 3600, &v), 0);
}

static void test_status_refused(void **state)
{
	struct ocsp_verdict v;
	assert_int_equal(check(&leaf, &inter, V_OCSP_CERTSTATUS_REVOKED, -60, 3600, &v), -1);
	assert_int_equal(v.status, V_OCSP_CERTSTATUS_REVOKED);
	assert_non_null(strstr(v.why, "REVOKED (reason keyCompromise"));
	assert_int_equal(check(&leaf, &inter, V_OCSP_CERTSTATUS_UNKNOWN, -60, 3600, &v), -1);
	assert_non_null(strstr(v.why, "status unknown"));
}

static void test_dates_refused(void **state)
{
	struct ocsp_verdict v;
	assert_int_equal(check(&leaf, &inter, V_OCSP_CERTSTATUS_GOOD, -7200, -60, &v), -1);
	assert_non_null(strstr(v.why, "expired"));
	assert_int_equal(check(&leaf, &inter, V_OCSP_CERTSTATUS_GOOD, -7200, NO_NEXT, &v), -1);
	assert_non_null(strstr(v.why, "expired"));
	assert_int_equal(check(&leaf, &inter, V_OCSP_CERTSTATUS_GOOD, 3600, 7200, &v), -1);
	assert_non_null(strstr(v.why, "in the future"));
}

static void test_signer_refused(void **state)
{
	struct ocsp_verdict v;
	assert_int_equal(check(&leaf, &stranger, V_OCSP_CERTSTATUS_GOOD, -60, 3600, &v), -1);
	assert_non_null(strstr(v.why, "signature or signer not trusted"));
	/* issued by the CA, but not delegated to sign OCSP */
	assert_int_equal(check(&leaf, &delegate_no_eku, V_OCSP_CERTSTATUS_GOOD, -60, 3600, &v), -1);
	assert_non_null(strstr(v.why, "signature or signer not trusted"));
	/* the root signs: trusted, but not the issuer of this certificate */
	assert_int_equal(check(&leaf, &root, V_OCSP_CERTSTATUS_GOOD, -60, 3600, &v), -1);
}

static void test_wrong_certificate_and_garbage(void **state)
{
	struct ocsp_verdict v;
	assert_int_equal(check(&other_leaf, &inter, V_OCSP_CERTSTATUS_GOOD, -60, 3600, &v), -1);
	assert_non_null(strstr(v.why, "not about this certificate"));

	int len;
	unsigned char *der = response(&leaf, &inter, V_OCSP_CERTSTATUS_GOOD, -60, 3600, &len);
	time_t now = time(NULL);
	for (int cut = 1; cut < len; cut += 7)
		assert_int_equal(ocsp_check_response(der, (size_t)(len - cut), leaf.cert,
						     inter.cert, untrusted, store, now, &v),
				 -1);
	/* trailing bytes after the DER: refused, not ignored */
	unsigned char *more = malloc((size_t)len + 1);
	memcpy(more, der, (size_t)len);
	more[len] = 0;
	assert_int_equal(ocsp_check_response(more, (size_t)len + 1, leaf.cert, inter.cert,
					     untrusted, store, now, &v),
			 -1);
	free(more);
	/* one flipped bit in the signed data */
	der[len / 2] ^= 0x01;
	assert_int_equal(
	    ocsp_check_response(der, (size_t)len, leaf.cert, inter.cert, untrusted, store, now, &v),
	    -1);
	OPENSSL_free(der);
	static const unsigned char junk[] = "HTTP/1.0 200 OK\r\n\r\n";
	assert_int_equal(ocsp_check_response(junk, sizeof(junk), leaf.cert, inter.cert, untrusted,
					     store, now, &v),
			 -1);
	assert_int_equal(
	    ocsp_check_response(junk, 0, leaf.cert, inter.cert, untrusted, store, now, &v), -1);

	/* tryLater: a successful exchange that carries no status */
	OCSP_RESPONSE *r = OCSP_response_create(OCSP_RESPONSE_STATUS_TRYLATER, NULL);
	unsigned char *tl = NULL;
	len = i2d_OCSP_RESPONSE(r, &tl);
	assert_int_equal(
	    ocsp_check_response(tl, (size_t)len, leaf.cert, inter.cert, untrusted, store, now, &v),
	    -1);
	assert_non_null(strstr(v.why, "trylater"));
	OPENSSL_free(tl);
	OCSP_RESPONSE_free(r);
}

static void test_shm_slots(void **state)
{
	struct shm *s = calloc(1, sizeof(*s));
	uint8_t a[32], b[32], out[SHM_OCSP_MAX];
	memset(a, 0xaa, sizeof(a));
	memset(b, 0xbb, sizeof(b));
	time_t now = time(NULL);
	static const uint8_t ra[] = "response for a", rb[] = "response for b";
	ocsp_shm_publish(s, 3, a, now + 60, ra, sizeof(ra));
	ocsp_shm_publish(s, 7, b, now + 60, rb, sizeof(rb));
	assert_int_equal(ocsp_shm_read(s, a, now, out, sizeof(out)), sizeof(ra));
	assert_memory_equal(out, ra, sizeof(ra));
	assert_int_equal(ocsp_shm_read(s, b, now, out, sizeof(out)), sizeof(rb));
	assert_memory_equal(out, rb, sizeof(rb));
	/* past nextUpdate: a worker staples nothing, whatever the master does */
	assert_int_equal(ocsp_shm_read(s, a, now + 60, out, sizeof(out)), 0);
	/* withdrawn */
	ocsp_shm_publish(s, 7, b, 0, NULL, 0);
	assert_int_equal(ocsp_shm_read(s, b, now, out, sizeof(out)), 0);
	/* no room: nothing rather than a truncated response */
	assert_int_equal(ocsp_shm_read(s, a, now, out, 4), 0);
	uint8_t c[32] = {0};
	c[0] = 1;
	assert_int_equal(ocsp_shm_read(s, c, now, out, sizeof(out)), 0);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),
	    cmocka_unit_test(test_status_refused),
	    cmocka_unit_test(test_dates_refused),
	    cmocka_unit_test(test_signer_refused),
	    cmocka_unit_test(test_wrong_certificate_and_garbage),
	    cmocka_unit_test(test_shm_slots),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
