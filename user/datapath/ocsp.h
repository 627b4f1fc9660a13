/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * ocsp.h - OCSP stapling.
 *
 * The master owns every response: it reads one from the configured file
 * (tls.certificates[].ocsp_response) or fetches one from the responder named
 * in the certificate (Authority Information Access), checks it
 * (ocsp_check_response), and publishes it in shared memory; workers staple
 * what is published (ocsp_shm_read, from the TLS status callback). A fetch
 * runs in a short-lived child process (DNS, connect and the HTTP exchange
 * block), which hands the bytes back through a pipe the master's loop
 * watches: no handshake and no master duty ever waits for a responder.
 *
 * Refresh: at half the response's validity; after a failure, retry after
 * tls.ocsp_retry, doubling up to an hour. A response is stapled only while
 * it is valid (signature, status good, thisUpdate <= now < nextUpdate); a
 * revoked, broken or expired one is withdrawn and logged. A response
 * without nextUpdate counts as valid for OCSP_NO_NEXT_UPDATE_S after its
 * thisUpdate.
 */
#ifndef EG_OCSP_H
#define EG_OCSP_H

#include <openssl/ocsp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "sbuf.h"
#include "loop.h"
#include "shm.h"

#define OCSP_NO_NEXT_UPDATE_S 3600
#define OCSP_MAX_RESPONSE     SHM_OCSP_MAX

/* What ocsp_check_response found. */
struct ocsp_verdict {
	int status;	    /* V_OCSP_CERTSTATUS_GOOD/REVOKED/UNKNOWN; -1 = not reached */
	time_t this_update; /* 0 = not reached */
	time_t expires;	    /* nextUpdate, or this_update + OCSP_NO_NEXT_UPDATE_S */
	char why[256];	    /* on refusal: what is wrong, for the log */
};

/*
 * Check a DER OCSP response for leaf (issued by issuer): well-formed and
 * successful, signed by the issuer or a responder it delegated to (the
 * signer's chain verified against store, with untrusted as intermediates),
 * about this certificate, status good, and thisUpdate <= now < nextUpdate
 * (5 minutes of clock skew allowed). Returns 0 if it may be stapled, -1
 * with v->why otherwise (v->status says "revoked" when that is the reason).
 */
int ocsp_check_response(const unsigned char *der, size_t len, X509 *leaf, X509 *issuer,
			STACK_OF(X509) * untrusted, X509_STORE *store, time_t now,
			struct ocsp_verdict *v);

/* Worker: copy the response published for the certificate whose DER SHA-256
 * is leaf_sha256 into out (cap bytes). Returns its length, 0 if none is
 * published or it expired at now. */
size_t ocsp_shm_read(const struct shm *s, const uint8_t leaf_sha256[32], time_t now, uint8_t *out,
		     size_t cap);

/* Master: publish (len > 0) or withdraw (len 0) a slot's response. */
void ocsp_shm_publish(struct shm *s, int slot, const uint8_t leaf_sha256[32], time_t expires,
		      const uint8_t *der, size_t len);

struct ocsp_stapler;

/* Master. NULL on allocation failure. */
struct ocsp_stapler *ocsp_stapler_new(struct loop *l, struct shm *s);
/* Take the certificates of c (start and every reload): responses already
 * held for the same certificate are kept, the rest read or fetched. */
void ocsp_stapler_configure(struct ocsp_stapler *o, const struct gw_config *c);
/* Once a second: re-read changed files, withdraw what expired. */
void ocsp_stapler_tick(struct ocsp_stapler *o);
/* One line per certificate for `easctl status`. */
void ocsp_stapler_describe(struct ocsp_stapler *o, struct sbuf *out);
void ocsp_stapler_free(struct ocsp_stapler *o);

#endif
