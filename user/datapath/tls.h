/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * tls.h - OpenSSL 3 contexts: the phone-facing server side (certificates with
 * their full chain, SNI, TLS 1.2/1.3 by default (tls.min_version, cipher and
 * group lists: tls_params.h), stateless tickets with keys that
 * rotate and are shared by all workers), the backend-facing client side, and
 * the certificate chain check used at start, at reload and by
 * `easctl certcheck`.
 */
#ifndef EG_TLS_H
#define EG_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config.h"
#include "shm.h"

struct tls_server;

/*
 * Before any key is read: private keys (and the PEM text they are parsed
 * from) go to OpenSSL's secure heap, which is mlock'ed where RLIMIT_MEMLOCK
 * allows and MADV_DONTDUMP always, so no core holds them. 0, or -1 when the
 * heap could not be set up (keys then live in the ordinary heap; logged).
 */
int tls_secure_heap_init(void);

/*
 * Build server contexts for every configured certificate. Each PEM file holds
 * the leaf then its intermediates; the whole chain is sent on every
 * handshake. tickets may be NULL (no session tickets). Returns NULL with a
 * reason in err.
 */
struct tls_server *tls_server_new(const struct gw_config *c, struct shm *tickets, char *err,
				  size_t errsz);
void tls_server_free(struct tls_server *t);
/* 1 with a human-readable warning in out when the configuration lowers the
 * phone-facing side's protocol floor below TLS 1.2; 0 otherwise. Logged at
 * start and reload, printed by --check-config and `easctl certcheck`. */
int tls_config_warning(const struct gw_config *c, char *out, size_t outsz);

/* A new server-side SSL for an accepted fd. NULL on failure. */
SSL *tls_server_ssl(struct tls_server *t, int fd);

/* Bit of *word that tls_track_drain keeps: set when s's last read() from its
 * socket returned less than OpenSSL asked for (or nothing), clear when it
 * filled the request. Set means the socket was empty at that read: with
 * edge-triggered epoll, anything arriving later raises a new edge. */
#define TLS_F_SOCK_DRAINED (1u << 31)
/* Keep TLS_F_SOCK_DRAINED in *word (which must outlive s) up to date. */
void tls_track_drain(SSL *s, uint32_t *word);

/* Client context for an HTTPS backend (verification per cfg_backend). */
SSL_CTX *tls_backend_ctx(const struct cfg_backend *b, char *err, size_t errsz);

/* What the chain check found for one certificate file. */
struct tls_chain_report {
	int ok;		      /* usable as configured */
	int chain_complete;   /* leaf -> ... -> trusted root verifies */
	int key_matches;      /* private key belongs to the leaf */
	int self_signed_leaf; /* demo/test certificates */
	int untrusted_root;   /* chain complete up to a root that is not trusted here */
	int chain_len;	      /* certificates in the file */
	long days_left;	      /* until the leaf expires (negative: expired) */
	long min_days_left;   /* over the whole chain */
	long long not_after;  /* earliest notAfter over the chain, Unix seconds (0: none) */
	char subject[256];
	char issuer[256];
	char names[512];   /* SAN DNS names, comma-separated */
	char problem[512]; /* first blocking problem, human-readable */
	char warning[512]; /* non-blocking remark (expiry soon, untrusted root) */
};

/*
 * Check cert_file/key_file: chain completeness up to a trusted root (system
 * store plus trust_file if not ""), key match, expiry, names. When hostname
 * is not NULL, it must be covered by the SANs. Returns 0 if usable (rep->ok),
 * -1 otherwise; rep->problem says why.
 */
int tls_check_chain(const char *cert_file, const char *key_file, const char *trust_file,
		    const char *hostname, unsigned warn_days, struct tls_chain_report *rep);

/* The last OpenSSL error as text (and clear the queue). */
const char *tls_errstr(char *buf, size_t len);

#endif
