/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* tls.c - see tls.h. */
#include "tls.h"
#include "ktls.h"
#include "log.h"
#include "ocsp.h"
#include "tls_params.h"

#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct tls_cert_ctx {
	SSL_CTX *ctx;
	uint8_t sha256[32];  /* of the leaf's DER: finds its OCSP response in shm */
	char names[32][256]; /* SAN DNS names (lower case), "*.example.org" allowed */
	int nnames;
};

struct tls_server {
	struct tls_cert_ctx certs[CFG_MAX_CERTS];
	int ncerts;
};

/* Per process: the ticket key source and a pre-fetched cipher (fetching per
 * handshake is one of OpenSSL 3.0's avoidable costs). */
static struct shm *ticket_shm;
static EVP_CIPHER *ticket_cipher;
/* Where the master publishes OCSP responses (NULL: stapling off). */
static struct shm *ocsp_shm;

/* Sixteen certificates' keys, twice (a reload loads the new set while the old
 * is in use); an RSA-4096 key takes about 4 KiB of it. */
#define TLS_SECURE_HEAP (256 * 1024)

int tls_secure_heap_init(void)
{
	if (CRYPTO_secure_malloc_initialized())
		return 0;
	/* 1 = set up and locked; 2 = set up, but mlock (or madvise) refused. */
	int r = CRYPTO_secure_malloc_init(TLS_SECURE_HEAP, 16);
	if (r == 0) {
		log_warn("event=secure_heap_failed note=\"private keys stay in the ordinary "
			 "heap (core dumps are off)\"");
		return -1;
	}
	if (r == 2)
		log_debug("event=secure_heap note=\"not locked in memory (RLIMIT_MEMLOCK)\"");
	return 0;
}

const char *tls_errstr(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	if (!e) {
		snprintf(buf, len, "no OpenSSL error");
		return buf;
	}
	ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

static int ticket_cb(SSL *s, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
		     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct shm_ticket_key keys[SHM_TICKET_KEYS];
	OSSL_PARAM params[3];
	int ret = -1, idx = -1;

	if (!ticket_shm || !ticket_cipher)
		return -1;
	shm_tickets_read(ticket_shm, keys);
	if (enc) {
		idx = 0;
		memcpy(key_name, keys[0].name, 16);
		if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(ticket_cipher)) != 1)
			goto out;
	} else {
		for (int i = 0; i < SHM_TICKET_KEYS; i++)
			if (!memcmp(key_name, keys[i].name, 16))
				idx = i;
		if (idx < 0) {
			ret = 0; /* unknown key: full handshake */
			goto out;
		}
	}
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, keys[idx].hmac_key, 32);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_CTX_set_params(hctx, params))
		goto out;
	if (enc)
		ret = EVP_EncryptInit_ex(cctx, ticket_cipher, NULL, keys[idx].aes_key, iv) ? 1 : -1;
	else if (EVP_DecryptInit_ex(cctx, ticket_cipher, NULL, keys[idx].aes_key, iv))
		/* 2 = issue a fresh ticket: needed for an old key, and always for
		 * TLS 1.3, where a client uses each ticket once (RFC 8446 C.4). */
		ret = idx == 0 && SSL_version(s) < TLS1_3_VERSION ? 1 : 2;
out:
	OPENSSL_cleanse(keys, sizeof(keys));
	return ret;
}

static int name_matches(const char *pattern, const char *host)
{
	if (!strcasecmp(pattern, host))
		return 1;
	if (pattern[0] == '*' && pattern[1] == '.') {
		const char *dot = strchr(host, '.');
		return dot && dot != host && !strcasecmp(dot + 1, pattern + 2);
	}
	return 0;
}

static int servername_cb(SSL *s, int *al, void *arg)
{
	struct tls_server *t = arg;
	const char *host = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
	if (!host || t->ncerts < 2)
		return SSL_TLSEXT_ERR_OK;
	for (int i = 0; i < t->ncerts; i++)
		for (int j = 0; j < t->certs[i].nnames; j++)
			if (name_matches(t->certs[i].names[j], host)) {
				if (i)
					SSL_set_SSL_CTX(s, t->certs[i].ctx);
				return SSL_TLSEXT_ERR_OK;
			}
	return SSL_TLSEXT_ERR_OK; /* unknown name: the first certificate answers */
}

/* The client asked for the certificate status: staple what the master has
 * published for the certificate this handshake uses (SNI may have switched
 * the context, and with it this callback's argument), if it has not expired.
 * Reading shared memory is all it does: a handshake never waits for OCSP. */
static int status_cb(SSL *s, void *arg)
{
	const struct tls_cert_ctx *c = arg;
	uint8_t der[SHM_OCSP_MAX];
	if (!ocsp_shm || !c)
		return SSL_TLSEXT_ERR_NOACK;
	size_t n = ocsp_shm_read(ocsp_shm, c->sha256, time(NULL), der, sizeof(der));
	if (!n)
		return SSL_TLSEXT_ERR_NOACK;
	unsigned char *p = OPENSSL_malloc(n);
	if (!p)
		return SSL_TLSEXT_ERR_NOACK;
	memcpy(p, der, n);
	if (SSL_set_tlsext_status_ocsp_resp(s, p, (long)n) != 1) {
		OPENSSL_free(p);
		return SSL_TLSEXT_ERR_NOACK;
	}
	return SSL_TLSEXT_ERR_OK;
}

static void collect_names(X509 *x, struct tls_cert_ctx *c)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && c->nnames < 32; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type != GEN_DNS)
			continue;
		const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
		int n = ASN1_STRING_length(g->d.dNSName);
		if (n <= 0 || n >= 256 || memchr(d, 0, (size_t)n))
			continue;
		memcpy(c->names[c->nnames], d, (size_t)n);
		c->names[c->nnames][n] = 0;
		c->nnames++;
	}
	GENERAL_NAMES_free(gens);
}

static SSL_CTX *server_ctx(const struct gw_config *c, const struct cfg_cert *cc,
			   struct tls_cert_ctx *out, char *err, size_t errsz)
{
	char e[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		snprintf(err, errsz, "SSL_CTX_new: %s", tls_errstr(e, sizeof(e)));
		return NULL;
	}
	int legacy = c->tls.min_version < TLS1_2_VERSION;
	SSL_CTX_set_min_proto_version(ctx, c->tls.min_version);
	/* OpenSSL 3 refuses TLS 1.0/1.1 at security level 1 and up: their
	 * handshake signs with SHA-1/MD5. Level 0 is what makes the admin's
	 * choice work at all (tls_config_warning says so at start). */
	if (legacy)
		SSL_CTX_set_security_level(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
				     SSL_OP_CIPHER_SERVER_PREFERENCE |
				     SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* A decrypted record (a request head: Authorization) must not stay in
	 * OpenSSL's read buffer once copied out, nor in the heap after
	 * SSL_MODE_RELEASE_BUFFERS frees it. OpenSSL then cleanses the whole
	 * buffer (~17 KiB) at every release, i.e. once per request. */
	if (c->tls.cleanse_plaintext)
		SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT);
	/* Idle connections (Ping long-polls) then hold no 34 KiB record buffers. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	const char *ciphers = c->tls.ciphers[0] ? c->tls.ciphers
			      : legacy		? TLS_PARAMS_CIPHERS_LEGACY
						: TLS_PARAMS_CIPHERS;
	if (!SSL_CTX_set_cipher_list(ctx, ciphers) ||
	    !SSL_CTX_set_ciphersuites(ctx, c->tls.ciphersuites[0] ? c->tls.ciphersuites
								  : TLS_PARAMS_CIPHERSUITES) ||
	    !SSL_CTX_set1_groups_list(ctx, c->tls.groups[0] ? c->tls.groups : TLS_PARAMS_GROUPS)) {
		snprintf(err, errsz, "cipher/group setup: %s", tls_errstr(e, sizeof(e)));
		goto fail;
	}
	/* Stateless resumption only: tickets sealed with keys shared by all
	 * workers, so a phone resumes whichever worker it lands on. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 1);
	/* One read() per TLS record instead of two (header, then body). */
	SSL_CTX_set_read_ahead(ctx, 1);
	if (ticket_shm)
		SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
	else
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (SSL_CTX_use_certificate_chain_file(ctx, cc->cert) != 1) {
		snprintf(err, errsz, "%s: cannot load certificate chain: %s", cc->cert,
			 tls_errstr(e, sizeof(e)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cc->key, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errsz, "%s: cannot load private key: %s", cc->key,
			 tls_errstr(e, sizeof(e)));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errsz, "%s does not belong to the certificate in %s", cc->key,
			 cc->cert);
		ERR_clear_error();
		goto fail;
	}
	out->ctx = ctx;
	out->nnames = 0;
	collect_names(SSL_CTX_get0_certificate(ctx), out);
	unsigned int mdlen = 0;
	X509_digest(SSL_CTX_get0_certificate(ctx), EVP_sha256(), out->sha256, &mdlen);
	SSL_CTX_set_tlsext_status_cb(ctx, status_cb);
	SSL_CTX_set_tlsext_status_arg(ctx, out);
	ktls_server_ctx(ctx);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

struct tls_server *tls_server_new(const struct gw_config *c, struct shm *tickets, char *err,
				  size_t errsz)
{
	struct tls_server *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	ticket_shm = c->tls.ticket_rotate_s ? tickets : NULL;
	ocsp_shm = c->tls.ocsp_stapling ? tickets : NULL;
	if (ticket_shm && !ticket_cipher)
		ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
	for (int i = 0; i < c->tls.ncerts; i++) {
		if (!server_ctx(c, &c->tls.certs[i], &t->certs[i], err, errsz)) {
			tls_server_free(t);
			return NULL;
		}
		t->ncerts++;
	}
	if (t->ncerts > 1)
		SSL_CTX_set_tlsext_servername_callback(t->certs[0].ctx, servername_cb);
	SSL_CTX_set_tlsext_servername_arg(t->certs[0].ctx, t);
	return t;
}

void tls_server_free(struct tls_server *t)
{
	if (!t)
		return;
	for (int i = 0; i < t->ncerts; i++)
		SSL_CTX_free(t->certs[i].ctx);
	free(t);
}

static long drain_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret,
		     size_t *processed)
{
	(void)argp;
	(void)argi;
	(void)argl;
	if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
		uint32_t *w = (uint32_t *)BIO_get_callback_arg(b);
		if (ret > 0 && processed && *processed >= len)
			*w &= ~TLS_F_SOCK_DRAINED;
		else
			*w |= TLS_F_SOCK_DRAINED;
	}
	return ret;
}

void tls_track_drain(SSL *s, uint32_t *word)
{
	BIO *rb = SSL_get_rbio(s);
	if (!rb)
		return;
	BIO_set_callback_arg(rb, (char *)word);
	BIO_set_callback_ex(rb, drain_cb);
}

SSL *tls_server_ssl(struct tls_server *t, int fd)
{
	SSL *s = SSL_new(t->certs[0].ctx);
	if (!s)
		return NULL;
	if (SSL_set_fd(s, fd) != 1) {
		SSL_free(s);
		return NULL;
	}
	SSL_set_accept_state(s);
	return s;
}

/*
 * What a verified backend certificate must name, set on the context so that
 * every SSL made from it (the relay's and the health check's) checks the
 * same thing: the configured sni (a DNS name, or an IP literal), else the
 * address the gateway connects to (IP SAN). Without it any certificate the
 * CA signed, for any host, would be accepted.
 */
static int backend_expect_name(SSL_CTX *ctx, const struct cfg_backend *b)
{
	X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (b->sni[0]) {
		if (X509_VERIFY_PARAM_set1_ip_asc(vp, b->sni) == 1)
			return 0;
		return X509_VERIFY_PARAM_set1_host(vp, b->sni, 0) == 1 ? 0 : -1;
	}
	const struct sockaddr *sa = (const struct sockaddr *)&b->addr.ss;
	int ok = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		ok = X509_VERIFY_PARAM_set1_ip(vp, (const unsigned char *)&in->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		ok = X509_VERIFY_PARAM_set1_ip(vp, (const unsigned char *)&in6->sin6_addr, 16);
	}
	return ok == 1 ? 0 : -1;
}

SSL_CTX *tls_backend_ctx(const struct cfg_backend *b, char *err, size_t errsz)
{
	char e[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		snprintf(err, errsz, "SSL_CTX_new: %s", tls_errstr(e, sizeof(e)));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* No SSL_OP_CLEANSE_PLAINTEXT here: what the backend sends (mail, not
	 * credentials: those only leave, and TLS does not buffer plaintext it
	 * sends) is not wiped on the way to the phone either. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
				     SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (b->verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		int ok = b->ca[0] ? SSL_CTX_load_verify_locations(ctx, b->ca, NULL)
				  : SSL_CTX_set_default_verify_paths(ctx);
		if (ok != 1) {
			snprintf(err, errsz, "backend %s: cannot load CA %s: %s", b->name,
				 b->ca[0] ? b->ca : "(system store)", tls_errstr(e, sizeof(e)));
			SSL_CTX_free(ctx);
			return NULL;
		}
		if (backend_expect_name(ctx, b) < 0) {
			snprintf(err, errsz, "backend %s: cannot set the name to verify: %s",
				 b->name, tls_errstr(e, sizeof(e)));
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	return ctx;
}

int tls_config_warning(const struct gw_config *c, char *out, size_t outsz)
{
	out[0] = 0;
	if (c->tls.min_version >= TLS1_2_VERSION)
		return 0;
	snprintf(out, outsz,
		 "tls.min_version = %s: phones may connect with TLS 1.0/1.1, which have no AEAD "
		 "cipher and sign the handshake with SHA-1/MD5; OpenSSL's security level is "
		 "lowered to 0 for the phone-facing side so they work at all (TLS 1.2/1.3 "
		 "clients still get the strongest choice); cipher list: %s",
		 tls_params_version_name(c->tls.min_version),
		 c->tls.ciphers[0] ? "as configured"
				   : "the default plus CBC suites for old phones");
	return 1;
}

/* --- chain check ------------------------------------------------------------ */

static void x509_name_text(X509_NAME *n, char *out, size_t outsz)
{
	BIO *b = BIO_new(BIO_s_mem());
	out[0] = 0;
	if (!b)
		return;
	X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253);
	int len = BIO_read(b, out, (int)outsz - 1);
	out[len > 0 ? len : 0] = 0;
	BIO_free(b);
}

static long long unix_time(const ASN1_TIME *t)
{
	struct tm tm;
	if (!ASN1_TIME_to_tm(t, &tm))
		return 0;
	return (long long)timegm(&tm);
}

static long days_until(const ASN1_TIME *t)
{
	int days = 0, secs = 0;
	if (!ASN1_TIME_diff(&days, &secs, NULL, t))
		return 0;
	return days;
}

int tls_check_chain(const char *cert_file, const char *key_file, const char *trust_file,
		    const char *hostname, unsigned warn_days, struct tls_chain_report *rep)
{
	char e[256];
	STACK_OF(X509) *chain = sk_X509_new_null();
	X509_STORE *store = NULL;
	X509_STORE_CTX *vctx = NULL;
	EVP_PKEY *key = NULL;
	X509 *leaf = NULL;
	FILE *f = NULL;

	memset(rep, 0, sizeof(*rep));
	rep->min_days_left = 1L << 30;
	f = fopen(cert_file, "r");
	if (!f) {
		snprintf(rep->problem, sizeof(rep->problem), "cannot open %s: %m", cert_file);
		goto out;
	}
	X509 *x;
	while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
		sk_X509_push(chain, x);
		long d = days_until(X509_get0_notAfter(x));
		if (d < rep->min_days_left)
			rep->min_days_left = d;
		long long na = unix_time(X509_get0_notAfter(x));
		if (na && (!rep->not_after || na < rep->not_after))
			rep->not_after = na;
	}
	ERR_clear_error();
	fclose(f);
	f = NULL;
	rep->chain_len = sk_X509_num(chain);
	if (!rep->chain_len) {
		snprintf(rep->problem, sizeof(rep->problem), "%s holds no PEM certificate",
			 cert_file);
		goto out;
	}
	leaf = sk_X509_shift(chain);
	x509_name_text(X509_get_subject_name(leaf), rep->subject, sizeof(rep->subject));
	x509_name_text(X509_get_issuer_name(leaf), rep->issuer, sizeof(rep->issuer));
	rep->days_left = days_until(X509_get0_notAfter(leaf));
	rep->self_signed_leaf = X509_check_issued(leaf, leaf) == X509_V_OK;
	struct tls_cert_ctx names = {0};
	collect_names(leaf, &names);
	for (int i = 0; i < names.nnames; i++) {
		size_t l = strlen(rep->names);
		snprintf(rep->names + l, sizeof(rep->names) - l, "%s%s", i ? "," : "",
			 names.names[i]);
	}

	f = fopen(key_file, "r");
	if (!f) {
		snprintf(rep->problem, sizeof(rep->problem), "cannot open key %s: %m", key_file);
		goto out;
	}
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	if (!key) {
		snprintf(rep->problem, sizeof(rep->problem), "%s: not a PEM private key: %s",
			 key_file, tls_errstr(e, sizeof(e)));
		goto out;
	}
	rep->key_matches = X509_check_private_key(leaf, key) == 1;
	ERR_clear_error();
	if (!rep->key_matches) {
		snprintf(rep->problem, sizeof(rep->problem),
			 "the private key in %s does not match the certificate %s", key_file,
			 rep->subject);
		goto out;
	}

	store = X509_STORE_new();
	if (!store || X509_STORE_set_default_paths(store) != 1) {
		snprintf(rep->problem, sizeof(rep->problem), "cannot load the system trust store");
		goto out;
	}
	if (trust_file && trust_file[0] && X509_STORE_load_file(store, trust_file) != 1) {
		snprintf(rep->problem, sizeof(rep->problem), "cannot load trust file %s: %s",
			 trust_file, tls_errstr(e, sizeof(e)));
		goto out;
	}
	vctx = X509_STORE_CTX_new();
	if (!vctx || X509_STORE_CTX_init(vctx, store, leaf, chain) != 1)
		goto out;
	/* Expiry is reported separately below, with days. */
	X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(vctx), X509_V_FLAG_NO_CHECK_TIME);
	if (X509_verify_cert(vctx) == 1) {
		rep->chain_complete = 1;
	} else {
		int verr = X509_STORE_CTX_get_error(vctx);
		X509 *bad = X509_STORE_CTX_get_current_cert(vctx);
		char bsub[256] = "", biss[256] = "";
		if (bad) {
			x509_name_text(X509_get_subject_name(bad), bsub, sizeof(bsub));
			x509_name_text(X509_get_issuer_name(bad), biss, sizeof(biss));
		}
		if (verr == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
		    (verr == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)) {
			/* Complete up to a root the file carries, not trusted here. */
			rep->chain_complete = 1;
			rep->untrusted_root = 1;
			snprintf(rep->warning, sizeof(rep->warning),
				 "chain ends at a root this host does not trust (%s); clients need "
				 "it installed",
				 bsub);
		} else if (verr == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
			   verr == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT) {
			snprintf(
			    rep->problem, sizeof(rep->problem),
			    "incomplete chain: the issuer of \"%s\" (\"%s\") is neither in %s "
			    "nor a trusted root; append the intermediate certificate(s) to the "
			    "file",
			    bsub, biss, cert_file);
			goto out;
		} else {
			snprintf(rep->problem, sizeof(rep->problem),
				 "chain does not verify at \"%s\": %s", bsub,
				 X509_verify_cert_error_string(verr));
			goto out;
		}
	}
	if (rep->days_left < 0 || rep->min_days_left < 0) {
		snprintf(
		    rep->problem, sizeof(rep->problem), "certificate expired %ld days ago (%s)",
		    -(rep->days_left < rep->min_days_left ? rep->days_left : rep->min_days_left),
		    rep->days_left < 0 ? "leaf" : "a chain certificate");
		goto out;
	}
	if (hostname && hostname[0] && X509_check_host(leaf, hostname, 0, 0, NULL) != 1) {
		snprintf(rep->problem, sizeof(rep->problem),
			 "certificate names (%s) do not cover %s",
			 rep->names[0] ? rep->names : "none", hostname);
		goto out;
	}
	if ((unsigned long)rep->min_days_left < warn_days && !rep->warning[0])
		snprintf(rep->warning, sizeof(rep->warning), "expires in %ld days",
			 rep->min_days_left);
	rep->ok = 1;
out:
	if (f)
		fclose(f);
	X509_STORE_CTX_free(vctx);
	X509_STORE_free(store);
	EVP_PKEY_free(key);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	return rep->ok ? 0 : -1;
}
