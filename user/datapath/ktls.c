/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* ktls.c - see ktls.h. */
#include "ktls.h"
#include "conn.h"
#include "kfeat.h"
#include "hex.h"
#include "log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/tls.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

/* TLS record content types and handshake messages (RFC 8446 5.1, 4) */
#define REC_ALERT     21
#define REC_HANDSHAKE 22
#define REC_DATA      23
#define HS_KEY_UPDATE 24

static unsigned g_ok; /* KFEAT_KTLS_BIT mask; 0 = off */
static int g_idx = -1;

/* What a marked SSL keeps until the handshake ends (its ex data). */
struct ktls_hs {
	uint8_t csec[EVP_MAX_MD_SIZE], ssec[EVP_MAX_MD_SIZE]; /* TLS 1.3 traffic secrets */
	uint8_t clen, slen;
	uint8_t tickets; /* TLS 1.3 NewSessionTicket records sent */
};

static void hs_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	if (ptr)
		OPENSSL_clear_free(ptr, sizeof(struct ktls_hs));
}

void ktls_set_path(unsigned ok_mask)
{
	g_ok = ok_mask;
	if (g_ok && g_idx < 0)
		g_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, hs_free);
	if (g_idx < 0)
		g_ok = 0;
}

static int unhex(const char *h, size_t hl, uint8_t *out, size_t max)
{
	size_t n = hl / 2;
	if (hl % 2 || n > max)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_digit_value((unsigned char)h[2 * i]);
		int lo = hex_digit_value((unsigned char)h[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return (int)n;
}

/* "LABEL <client random hex> <secret hex>" (NSS key log format). */
static void keylog_cb(const SSL *ssl, const char *line)
{
	struct ktls_hs *h = g_idx >= 0 ? SSL_get_ex_data(ssl, g_idx) : NULL;
	uint8_t *dst;
	uint8_t *len;
	if (!h)
		return;
	if (!strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24))
		dst = h->csec, len = &h->clen;
	else if (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24))
		dst = h->ssec, len = &h->slen;
	else
		return;
	const char *sec = strrchr(line, ' ');
	int n = sec ? unhex(sec + 1, strlen(sec + 1), dst, EVP_MAX_MD_SIZE) : -1;
	*len = n > 0 ? (uint8_t)n : 0;
}

/* Counts the tickets sent after the TLS 1.3 handshake: each is a record
 * under the application key, so the kernel's sequence starts after them. */
static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
		   SSL *ssl, void *arg)
{
	(void)version, (void)arg;
	struct ktls_hs *h;
	if (!write_p || content_type != SSL3_RT_HANDSHAKE || len < 1 ||
	    ((const uint8_t *)buf)[0] != SSL3_MT_NEWSESSION_TICKET)
		return;
	if (SSL_version(ssl) == TLS1_3_VERSION && (h = SSL_get_ex_data(ssl, g_idx)))
		h->tickets++;
}

void ktls_server_ctx(SSL_CTX *ctx)
{
	SSL_CTX_set_keylog_callback(ctx, keylog_cb);
}

void ktls_prepare(SSL *ssl)
{
	if (!g_ok)
		return;
	struct ktls_hs *h = OPENSSL_zalloc(sizeof(*h));
	if (!h || !SSL_set_ex_data(ssl, g_idx, h)) {
		OPENSSL_free(h);
		return;
	}
	SSL_set_read_ahead(ssl, 0);
	SSL_set_msg_callback(ssl, msg_cb);
}

/* ---- keys ------------------------------------------------------------------ */

union ktls_info {
	struct tls_crypto_info base;
	struct tls12_crypto_info_aes_gcm_128 g128;
	struct tls12_crypto_info_aes_gcm_256 g256;
	struct tls12_crypto_info_chacha20_poly1305 cc;
};

struct ktls_suite {
	int nid;
	int cipher; /* KFEAT_KTLS_BIT's cipher index */
	const char *name;
	unsigned short type;
	size_t keylen, saltlen, ivlen; /* kernel's salt and iv; TLS 1.2 fixed IV = saltlen or 12 */
	socklen_t infolen;
};

static const struct ktls_suite suites[] = {
    {NID_aes_128_gcm, 0, "aes-gcm-128", TLS_CIPHER_AES_GCM_128, 16, 4, 8,
     sizeof(struct tls12_crypto_info_aes_gcm_128)},
    {NID_aes_256_gcm, 1, "aes-gcm-256", TLS_CIPHER_AES_GCM_256, 32, 4, 8,
     sizeof(struct tls12_crypto_info_aes_gcm_256)},
    {NID_chacha20_poly1305, 2, "chacha20-poly1305", TLS_CIPHER_CHACHA20_POLY1305, 32, 0, 12,
     sizeof(struct tls12_crypto_info_chacha20_poly1305)},
};

static int kdf(const char *name, OSSL_PARAM *params, uint8_t *out, size_t outlen)
{
	EVP_KDF *k = EVP_KDF_fetch(NULL, name, NULL);
	EVP_KDF_CTX *x = k ? EVP_KDF_CTX_new(k) : NULL;
	int ok = x && EVP_KDF_derive(x, out, outlen, params) > 0;
	EVP_KDF_CTX_free(x);
	EVP_KDF_free(k);
	return ok ? 0 : -1;
}

/* HKDF-Expand-Label(secret, label, "", outlen) (RFC 8446 7.1). */
static int expand_label(const char *md, const uint8_t *sec, size_t slen, const char *label,
			uint8_t *out, size_t outlen)
{
	uint8_t info[2 + 1 + 6 + 32 + 1];
	size_t ll = strlen(label), n = 0;
	info[n++] = (uint8_t)(outlen >> 8);
	info[n++] = (uint8_t)outlen;
	info[n++] = (uint8_t)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	memcpy(info + n + 6, label, ll);
	n += 6 + ll;
	info[n++] = 0;
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	OSSL_PARAM p[] = {
	    OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
	    OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)sec, slen),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
	    OSSL_PARAM_construct_end(),
	};
	return kdf("HKDF", p, out, outlen);
}

/* One direction's crypto_info from its key, IV (the whole TLS 1.3 IV, or
 * TLS 1.2's fixed part) and first record sequence number. */
static void fill_info(union ktls_info *ci, const struct ktls_suite *su, int v13, const uint8_t *key,
		      const uint8_t *iv, uint64_t seq)
{
	uint8_t rs[8];
	for (int i = 0; i < 8; i++)
		rs[i] = (uint8_t)(seq >> (56 - 8 * i));
	memset(ci, 0, sizeof(*ci));
	ci->base.version = v13 ? TLS_1_3_VERSION : TLS_1_2_VERSION;
	ci->base.cipher_type = su->type;
	switch (su->type) {
	case TLS_CIPHER_AES_GCM_128:
		memcpy(ci->g128.key, key, su->keylen);
		memcpy(ci->g128.salt, iv, 4);
		/* TLS 1.3: the rest of the IV; TLS 1.2: the first explicit
		 * nonce, the sequence number (as OpenSSL does) */
		memcpy(ci->g128.iv, v13 ? iv + 4 : rs, 8);
		memcpy(ci->g128.rec_seq, rs, 8);
		break;
	case TLS_CIPHER_AES_GCM_256:
		memcpy(ci->g256.key, key, su->keylen);
		memcpy(ci->g256.salt, iv, 4);
		memcpy(ci->g256.iv, v13 ? iv + 4 : rs, 8);
		memcpy(ci->g256.rec_seq, rs, 8);
		break;
	default:
		memcpy(ci->cc.key, key, su->keylen);
		memcpy(ci->cc.iv, iv, 12);
		memcpy(ci->cc.rec_seq, rs, 8);
		break;
	}
}

/* rx (the phone's direction) and tx from the handshake's secrets. */
static const char *derive(SSL *s, const struct ktls_hs *h, const struct ktls_suite *su, int v13,
			  union ktls_info *rx, union ktls_info *tx)
{
	const EVP_MD *md = SSL_CIPHER_get_handshake_digest(SSL_get_current_cipher(s));
	const char *mdn = md ? EVP_MD_get0_name(md) : NULL;
	uint8_t kb[2 * 32 + 2 * 12], ck[32], sk[32], civ[12], siv[12];
	const char *why = NULL;
	if (!mdn)
		return "no handshake digest";
	if (v13) {
		if (!h->clen || !h->slen)
			why = "no traffic secrets from the key log";
		else if (expand_label(mdn, h->csec, h->clen, "key", ck, su->keylen) < 0 ||
			 expand_label(mdn, h->csec, h->clen, "iv", civ, 12) < 0 ||
			 expand_label(mdn, h->ssec, h->slen, "key", sk, su->keylen) < 0 ||
			 expand_label(mdn, h->ssec, h->slen, "iv", siv, 12) < 0)
			why = "HKDF-Expand-Label failed";
		else {
			fill_info(rx, su, 1, ck, civ, 0);
			fill_info(tx, su, 1, sk, siv, h->tickets);
		}
	} else {
		uint8_t ms[SSL_MAX_MASTER_KEY_LENGTH], seed[13 + 2 * SSL3_RANDOM_SIZE];
		size_t fiv = su->saltlen ? su->saltlen : 12;
		size_t msl = SSL_SESSION_get_master_key(SSL_get_session(s), ms, sizeof(ms));
		memcpy(seed, "key expansion", 13);
		SSL_get_server_random(s, seed + 13, SSL3_RANDOM_SIZE);
		SSL_get_client_random(s, seed + 13 + SSL3_RANDOM_SIZE, SSL3_RANDOM_SIZE);
		OSSL_PARAM p[] = {
		    OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)mdn, 0),
		    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, ms, msl),
		    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, sizeof(seed)),
		    OSSL_PARAM_construct_end(),
		};
		/* key block: client key, server key, client IV, server IV (AEAD:
		 * no MAC keys) */
		if (!msl || kdf("TLS1-PRF", p, kb, 2 * su->keylen + 2 * fiv) < 0) {
			why = "TLS 1.2 key block";
		} else {
			fill_info(rx, su, 0, kb, kb + 2 * su->keylen, 1);
			fill_info(tx, su, 0, kb + su->keylen, kb + 2 * su->keylen + fiv, 1);
		}
		OPENSSL_cleanse(ms, sizeof(ms));
	}
	OPENSSL_cleanse(kb, sizeof(kb));
	OPENSSL_cleanse(ck, sizeof(ck));
	OPENSSL_cleanse(sk, sizeof(sk));
	OPENSSL_cleanse(civ, sizeof(civ));
	OPENSSL_cleanse(siv, sizeof(siv));
	return why;
}

/* ---- the handoff -------------------------------------------------------------- */

static void stay(struct conn *c, struct ktls_hs *h, const char *why)
{
	char q[64];
	SSL_set_ex_data(c->ssl, g_idx, NULL);
	OPENSSL_clear_free(h, sizeof(*h));
	SSL_set_read_ahead(c->ssl, 1);
	SSL_set_msg_callback(c->ssl, NULL);
	log_debug("event=ktls_skipped client=%s reason=\"%s\"", relay_peer_ip(c, q, sizeof(q)),
		  why);
}

int ktls_handoff(struct conn *c)
{
	struct ktls_hs *h = g_idx >= 0 ? SSL_get_ex_data(c->ssl, g_idx) : NULL;
	if (!h)
		return 0;
	int v13 = SSL_version(c->ssl) == TLS1_3_VERSION;
	if (!v13 && SSL_version(c->ssl) != TLS1_2_VERSION) {
		stay(c, h, "TLS version older than 1.2");
		return 0;
	}
	int nid = SSL_CIPHER_get_cipher_nid(SSL_get_current_cipher(c->ssl));
	const struct ktls_suite *su = NULL;
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		if (suites[i].nid == nid)
			su = &suites[i];
	if (!su || !(g_ok & KFEAT_KTLS_BIT(v13, su->cipher))) {
		stay(c, h,
		     su ? "this kernel has not this cipher in this version"
			: "not an AEAD cipher kernel TLS takes");
		return 0;
	}
	if (SSL_has_pending(c->ssl)) {
		stay(c, h, "OpenSSL holds unread records");
		return 0;
	}
	union ktls_info rx, tx;
	const char *why = derive(c->ssl, h, su, v13, &rx, &tx);
	if (why) {
		stay(c, h, why);
		return 0;
	}
	if (setsockopt(c->fd, IPPROTO_TCP, TCP_ULP, "tls", 3) < 0) {
		/* still a plain TCP socket: OpenSSL carries on */
		stay(c, h, errno == ENOENT ? "TCP_ULP tls: no tls module" : "TCP_ULP tls refused");
		OPENSSL_cleanse(&rx, sizeof(rx));
		OPENSSL_cleanse(&tx, sizeof(tx));
		return 0;
	}
	int rc = 1;
	char q[64];
	/* The ULP without keys passes bytes through as TCP does: a refused
	 * TLS_TX leaves the connection OpenSSL's. Past it, neither side can
	 * be undone. */
	if (setsockopt(c->fd, SOL_TLS, TLS_TX, &tx, su->infolen) < 0) {
		stay(c, h, "TLS_TX refused");
		rc = 0;
	} else if (setsockopt(c->fd, SOL_TLS, TLS_RX, &rx, su->infolen) < 0) {
		log_warn("event=ktls_close client=%s reason=\"the kernel took the sending keys and "
			 "refused the receiving ones: %s\"",
			 relay_peer_ip(c, q, sizeof(q)), strerror(errno));
		rc = -1;
	}
	OPENSSL_cleanse(&rx, sizeof(rx));
	OPENSSL_cleanse(&tx, sizeof(tx));
	if (rc == 0)
		return 0;
	/* OpenSSL's part is over: it must not send a close_notify under keys
	 * the kernel now owns. */
	SSL_set_quiet_shutdown(c->ssl, 1);
	SSL_free(c->ssl); /* frees h (hs_free) */
	c->ssl = NULL;
	if (rc < 0) {
		relay_close(c, "kernel TLS refused the receiving keys");
		return -1;
	}
	c->ktls = (uint8_t)(KTLS_ON | (v13 ? KTLS_V13 : 0));
	log_debug("event=ktls client=%s version=%s cipher=%s", relay_peer_ip(c, q, sizeof(q)),
		  v13 ? "1.3" : "1.2", su->name);
	return 1;
}

/* ---- records that are not data ------------------------------------------------ */

static void send_alert(struct conn *c, uint8_t level, uint8_t desc)
{
	uint8_t a[2] = {level, desc};
	char cb[CMSG_SPACE(sizeof(unsigned char))];
	struct iovec iov = {.iov_base = a, .iov_len = sizeof(a)};
	struct msghdr m = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb, .msg_controllen = sizeof(cb)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_SET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
	*CMSG_DATA(cm) = REC_ALERT;
	m.msg_controllen = cm->cmsg_len;
	(void)sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

void ktls_shutdown(struct conn *c)
{
	send_alert(c, 1, 0); /* warning, close_notify */
}

static ssize_t closing(struct conn *c, const char *reason, int alert)
{
	char q[64];
	log_info("event=ktls_close client=%s reason=\"%s\"", relay_peer_ip(c, q, sizeof(q)),
		 reason);
	if (alert >= 0)
		send_alert(c, alert ? 2 : 1, (uint8_t)alert);
	return -2;
}

/* A record of type t (not data) and its n bytes in p. */
static ssize_t not_data(struct conn *c, unsigned t, const uint8_t *p, ssize_t n)
{
	char why[128];
	if (t == REC_ALERT && n >= 2 && p[1] == 0)
		return -1; /* close_notify: the phone's orderly end */
	if (t == REC_ALERT) {
		snprintf(why, sizeof(why), "the phone sent alert %u (level %u)", n >= 2 ? p[1] : 0,
			 n >= 1 ? p[0] : 0);
		return closing(c, why, -1);
	}
	if (t == REC_HANDSHAKE && n >= 1 && p[0] == HS_KEY_UPDATE && (c->ktls & KTLS_V13))
		/* RFC 8446 4.6.3: the next record from the phone is under new
		 * keys. The kernels tested refuse a second TLS_RX, so that
		 * record could not be read: end cleanly instead. */
		return closing(c,
			       "TLS 1.3 KeyUpdate from the phone: kernel TLS here cannot take "
			       "new keys",
			       0);
	if (t == REC_HANDSHAKE) {
		snprintf(why, sizeof(why), "handshake message %u after the handshake",
			 n >= 1 ? p[0] : 0);
		/* TLS 1.2: a renegotiation (refused by OpenSSL too) */
		return closing(c, why, c->ktls & KTLS_V13 ? 10 : 100);
	}
	snprintf(why, sizeof(why), "record type %u", t);
	return closing(c, why, 10); /* unexpected_message */
}

ssize_t ktls_read(struct conn *c, char *p, size_t n)
{
	char cb[CMSG_SPACE(sizeof(unsigned char))];
	struct iovec iov = {.iov_base = p, .iov_len = n};
	struct msghdr m = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb, .msg_controllen = sizeof(cb)};
	ssize_t r = recvmsg(c->fd, &m, MSG_DONTWAIT);
	if (r < 0) {
		char why[96];
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->flags &= ~F_RD;
			return 0;
		}
		if (errno == EINTR)
			return 0;
		if (errno == ECONNRESET || errno == EPIPE)
			return -1;
		snprintf(why, sizeof(why), "receive: %s%s", strerror(errno),
			 errno == EBADMSG ? " (a record failed to decrypt)" : "");
		return closing(c, why, -1);
	}
	if (r == 0)
		return -1;
	unsigned t = REC_DATA;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
		if (cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE)
			t = *CMSG_DATA(cm);
	if (t == REC_DATA)
		return r;
	return not_data(c, t, (const uint8_t *)p, r);
}

const char *ktls_splice_failed(struct conn *c, int err)
{
	char b[64];
	/* A non-data record stops splice (EINVAL, EIO); it waits to be read
	 * with its type. */
	ssize_t r = ktls_read(c, b, sizeof(b));
	if (r == -1)
		return "client closed mid request body";
	if (r == -2)
		return "kernel TLS: not data mid request body";
	char q[64];
	log_info("event=ktls_close client=%s reason=\"splice: %s\"", relay_peer_ip(c, q, sizeof(q)),
		 strerror(err));
	return "kernel TLS: splice failed";
}
