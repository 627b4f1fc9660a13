/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * ktls.h - the phone leg's record layer handed to the kernel (TCP_ULP "tls")
 * once OpenSSL has done the handshake. From then on the socket reads and
 * writes plaintext, OpenSSL's state for the connection is freed (c->ssl is
 * NULL, c->ktls says the leg is TLS), and bodies can move by splice between
 * it and a plaintext backend (bodysplice.c) as between two plain sockets.
 *
 * The keys are set here, not by OpenSSL's SSL_OP_ENABLE_KTLS: OpenSSL 3.0
 * hands TLS 1.3 to the kernel in the sending direction only. TLS 1.3: the
 * application traffic secrets (OpenSSL's key log callback, kept in the SSL
 * until the handshake ends, then wiped) expanded to key and IV (RFC 8446
 * 7.3); TLS 1.2: the key block from the master secret (RFC 5246 6.3). The
 * record sequence numbers are those the handshake left: 1 in both
 * directions for TLS 1.2 (the Finished messages), for TLS 1.3 0 from the
 * phone and the number of session tickets sent to it. So that OpenSSL holds
 * no record of the phone's that the kernel must see, read-ahead is off until
 * the handshake ends.
 *
 * Per connection, only for AEAD ciphers (AES-128/256-GCM, ChaCha20-Poly1305)
 * that the start probe (kfeat_probe_ktls) moved a record with in this TLS
 * version; otherwise the connection stays with OpenSSL.
 *
 * What kTLS RX gives besides data is read with its record type
 * (TLS_GET_RECORD_TYPE): close_notify ends the stream like EOF; another
 * alert, a KeyUpdate or any other handshake message closes the connection
 * with a logged reason (event=ktls_close): the kernels tested (6.1, 6.12)
 * cannot take new keys, so a KeyUpdate cannot be followed.
 */
#ifndef EG_KTLS_H
#define EG_KTLS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/types.h>

struct conn;

/* c->ktls bits */
#define KTLS_ON	 (1u << 0) /* both directions are the kernel's */
#define KTLS_V13 (1u << 1) /* TLS 1.3 (else 1.2) */

/* Which (version, cipher) pairs to hand over: kfeat.h's KFEAT_KTLS_BIT
 * mask from the probe; 0 = none (kTLS off). Set by the master before it
 * forks workers. */
void ktls_set_path(unsigned ok_mask);

/* On every phone-facing context: the key log callback that keeps the TLS
 * 1.3 secrets of connections ktls_prepare() marked. */
void ktls_server_ctx(SSL_CTX *ctx);

/* Before the handshake of a phone connection: mark it, read-ahead off. A
 * no-op when kTLS is off. */
void ktls_prepare(SSL *ssl);

/* After the handshake: 1 handed to the kernel (c->ssl freed, c->ktls set),
 * 0 stays with OpenSSL (read-ahead back on), -1 closed (the kernel took one
 * direction and refused the other). */
int ktls_handoff(struct conn *c);

/* Read plaintext from a kTLS phone socket, as relay.c's io_read: >0 bytes,
 * 0 would block (F_RD cleared), -1 end of stream (FIN or close_notify),
 * -2 the connection must close (logged: an alert, a KeyUpdate, a record
 * that failed to decrypt). */
ssize_t ktls_read(struct conn *c, char *p, size_t n);

/* A splice from the phone failed with err: read what stopped it (a
 * non-data record) and log it. The reason to close with. */
const char *ktls_splice_failed(struct conn *c, int err);

/* Our close_notify, before the FIN (linger.c). */
void ktls_shutdown(struct conn *c);

#endif
