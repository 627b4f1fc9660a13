/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_tls_params.c - the phone-facing TLS knobs: version names, cipher,
 * ciphersuite and group lists checked entry by entry (OpenSSL alone would
 * take "AES128-GCM-SHA256:TYPO" and drop unknown TLS 1.3 names silently),
 * and the config keys refused with file:line.
 */
#include "testlib.h"

#include <openssl/ssl.h>
#include <unistd.h>

#include "config.h"
#include "tls_params.h"

static void test_versions(void **state)
{
	assert_int_equal(tls_params_version("TLSv1.2"), TLS1_2_VERSION);
	assert_int_equal(tls_params_version("tlsv1.3"), TLS1_3_VERSION);
	assert_int_equal(tls_params_version("TLSv1"), TLS1_VERSION);
	assert_int_equal(tls_params_version("TLSv1.0"), TLS1_VERSION);
	assert_int_equal(tls_params_version("TLSv1.1"), TLS1_1_VERSION);
	assert_int_equal(tls_params_version("SSLv3"), -1);
	assert_int_equal(tls_params_version("1.2"), -1);
	assert_string_equal(tls_params_version_name(TLS1_VERSION), "TLSv1.0");
}

static void test_ciphers(void **state)
{
	char why[256] = "";
	assert_int_equal(tls_params_check_ciphers(TLS_PARAMS_CIPHERS, why, sizeof(why)), 0);
	assert_int_equal(tls_params_check_ciphers(TLS_PARAMS_CIPHERS_LEGACY, why, sizeof(why)), 0);
	assert_int_equal(
	    tls_params_check_ciphers("HIGH:!aNULL:!RC4:!MD5:@STRENGTH", why, sizeof(why)), 0);
	assert_int_equal(tls_params_check_ciphers("ECDHE+AESGCM", why, sizeof(why)), 0);
	/* one typo among good names: OpenSSL would accept the list */
	assert_int_equal(
	    tls_params_check_ciphers("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA257", why,
				     sizeof(why)),
	    -1);
	assert_non_null(strstr(why, "unknown cipher 'ECDHE-RSA-AES128-GCM-SHA257'"));
	/* a TLS 1.3 name belongs in ciphersuites */
	assert_int_equal(tls_params_check_ciphers("TLS_AES_128_GCM_SHA256", why, sizeof(why)), -1);
	assert_int_equal(tls_params_check_ciphers("", why, sizeof(why)), -1);
	assert_non_null(strstr(why, "empty"));
	assert_int_equal(tls_params_check_ciphers("!aNULL", why, sizeof(why)), -1);
	assert_non_null(strstr(why, "selects no cipher"));
}

static void test_ciphersuites_and_groups(void **state)
{
	char why[256] = "";
	assert_int_equal(tls_params_check_ciphersuites(TLS_PARAMS_CIPHERSUITES, why, sizeof(why)),
			 0);
	assert_int_equal(tls_params_check_ciphersuites("TLS_AES_128_CCM_SHA256", why, sizeof(why)),
			 0);
	/* OpenSSL drops an unknown suite without a word */
	assert_int_equal(tls_params_check_ciphersuites("TLS_AES_128_GCM_SHA256:TLS_AES_512_GCM",
						       why, sizeof(why)),
			 -1);
	assert_non_null(strstr(why, "unknown TLS 1.3 ciphersuite 'TLS_AES_512_GCM'"));
	assert_int_equal(
	    tls_params_check_ciphersuites("ECDHE-RSA-AES128-GCM-SHA256", why, sizeof(why)), -1);
	assert_int_equal(tls_params_check_groups(TLS_PARAMS_GROUPS, why, sizeof(why)), 0);
	assert_int_equal(tls_params_check_groups("X25519:P-521:ffdhe2048", why, sizeof(why)), 0);
	assert_int_equal(tls_params_check_groups("X25519:P-999", why, sizeof(why)), -1);
	assert_non_null(strstr(why, "unknown group 'P-999'"));
}

static void test_old_protocols(void **state)
{
	char why[256] = "";
	assert_int_equal(
	    tls_params_check_old_protocols(TLS_PARAMS_CIPHERS, TLS1_2_VERSION, why, sizeof(why)),
	    0);
	assert_int_equal(tls_params_check_old_protocols(TLS_PARAMS_CIPHERS_LEGACY, TLS1_VERSION,
							why, sizeof(why)),
			 0);
	/* AEAD only: TLS 1.0 would have nothing to negotiate */
	assert_int_equal(
	    tls_params_check_old_protocols(TLS_PARAMS_CIPHERS, TLS1_VERSION, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "no cipher in the list works below TLS 1.2"));
}

static char path[64];

static struct gw_config *load(const char *text, struct config_errors *errs, int *rc)
{
	struct gw_config *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	memset(errs, 0, sizeof(*errs));
	snprintf(path, sizeof(path), "/tmp/eg-test-tlsparams-%d.conf", (int)getpid());
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	config_defaults(c);
	*rc = config_load(c, path, errs);
	unlink(path);
	return c;
}

static int has_error(const struct config_errors *e, int line, const char *text)
{
	char prefix[96];
	snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	for (int i = 0; i < e->n; i++)
		if (!strncmp(e->msg[i], prefix, strlen(prefix)) && strstr(e->msg[i], text))
			return 1;
	return 0;
}

static void test_config_keys(void **state)
{
	struct config_errors e;
	int rc;
	struct gw_config *c = load("tls = {\n"			    /* 1 */
				   "  min_version = \"TLSv1.0\";\n" /* 2 */
				   "  groups = \"P-256\";\n"	    /* 3 */
				   "  ocsp_stapling = false;\n"	    /* 4 */
				   "  ocsp_retry = 0.5;\n"	    /* 5 */
				   "  certificates = ( { cert = \"a.pem\"; key = \"a.key\";\n"
				   "    ocsp_response = \"a.ocsp\"; } );\n" /* 7 */
				   "};\n",
				   &e, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(c->tls.min_version, TLS1_VERSION);
	assert_string_equal(c->tls.groups, "P-256");
	assert_string_equal(c->tls.ciphers, "");
	assert_int_equal(c->tls.ocsp_stapling, 0);
	assert_int_equal(c->tls.ocsp_retry_ms, 500);
	assert_string_equal(c->tls.certs[0].ocsp_response, "a.ocsp");
	config_free(c);
	free(c);

	c = load("tls = {\n"						  /* 1 */
		 "  min_version = \"SSLv3\";\n"				  /* 2 */
		 "  ciphers = \"ECDHE-RSA-AES128-GCM-SHA256:BOGUS\";\n"	  /* 3 */
		 "  ciphersuites = \"TLS_AES_128_GCM_SHA256:TLS_FOO\";\n" /* 4 */
		 "  groups = \"X25519:curve9\";\n"			  /* 5 */
		 "};\n",
		 &e, &rc);
	assert_int_equal(rc, -1);
	assert_true(has_error(&e, 2, "tls.min_version must be"));
	assert_true(has_error(&e, 3, "tls.ciphers: unknown cipher 'BOGUS'"));
	assert_true(has_error(&e, 4, "tls.ciphersuites: unknown TLS 1.3 ciphersuite 'TLS_FOO'"));
	assert_true(has_error(&e, 5, "tls.groups: unknown group 'curve9'"));
	free(c);

	c = load("tls = {\n"
		 "  min_version = \"TLSv1.1\";\n"
		 "  ciphers = \"ECDHE-RSA-AES128-GCM-SHA256\";\n" /* 3 */
		 "};\n",
		 &e, &rc);
	assert_int_equal(rc, -1);
	assert_true(has_error(&e, 3, "no cipher in the list works below TLS 1.2"));
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_versions),
	    cmocka_unit_test(test_ciphers),
	    cmocka_unit_test(test_ciphersuites_and_groups),
	    cmocka_unit_test(test_old_protocols),
	    cmocka_unit_test(test_config_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
