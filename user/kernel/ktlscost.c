/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* ktlscost.c - see ktlscost.h. */
#include "ktlscost.h"
#include "kfeat.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/tls.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

#define REC   16384		 /* plaintext per record: TLS's maximum */
#define WIRE  (5 + REC + 1 + 16) /* TLS 1.3 record: header, inner type, tag */
#define NONCE 12

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A connected loopback pair (a: the client, with TCP_NODELAY; b: accepted),
 * made with the feature probe's listener and pair. */
static int pair(int *a, int *b)
{
	int one = 1, lfd = kfeat_loopback_listener(1), e;

	*a = *b = -1;
	if (lfd < 0)
		return lfd;
	e = kfeat_loopback_pair(lfd, a, b);
	close(lfd);
	if (e < 0) {
		if (*a >= 0)
			close(*a);
		if (*b >= 0)
			close(*b);
		*a = *b = -1;
		return e;
	}
	setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int recv_all(int fd, uint8_t *p, size_t n)
{
	while (n) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 2000) != 1)
			return -ETIMEDOUT;
		ssize_t r = recv(fd, p, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -EIO;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* OpenSSL's work per record, reduced to what costs: seal, send, receive, open. */
static int run_user(size_t bytes, double *cpu)
{
	static const uint8_t key[16];
	uint8_t nonce[NONCE] = {0}, *pt = calloc(1, REC + 1), *wire = malloc(WIRE),
		*back = malloc(WIRE), *out = malloc(REC + 32);
	EVP_CIPHER *ci = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
	EVP_CIPHER_CTX *enc = EVP_CIPHER_CTX_new(), *dec = EVP_CIPHER_CTX_new();
	int a, b, e = pair(&a, &b), len;
	if (e == 0 && (!pt || !wire || !back || !out || !ci || !enc || !dec))
		e = -ENOMEM;
	double t0 = thread_cpu_s();
	for (size_t done = 0; !e && done < bytes; done += REC) {
		memcpy(nonce + 4, &done, sizeof(done) < 8 ? sizeof(done) : 8);
		wire[0] = 23, wire[1] = 3, wire[2] = 3, wire[3] = (WIRE - 5) >> 8,
		wire[4] = (WIRE - 5) & 0xff;
		pt[REC] = 23;
		if (EVP_EncryptInit_ex2(enc, ci, key, nonce, NULL) != 1 ||
		    EVP_EncryptUpdate(enc, NULL, &len, wire, 5) != 1 ||
		    EVP_EncryptUpdate(enc, wire + 5, &len, pt, REC + 1) != 1 ||
		    EVP_EncryptFinal_ex(enc, wire + 5 + len, &len) != 1 ||
		    EVP_CIPHER_CTX_ctrl(enc, EVP_CTRL_GCM_GET_TAG, 16, wire + WIRE - 16) != 1) {
			e = -EIO;
			break;
		}
		if ((e = send_all(a, wire, WIRE)) < 0 || (e = recv_all(b, back, WIRE)) < 0)
			break;
		if (EVP_DecryptInit_ex2(dec, ci, key, nonce, NULL) != 1 ||
		    EVP_DecryptUpdate(dec, NULL, &len, back, 5) != 1 ||
		    EVP_DecryptUpdate(dec, out, &len, back + 5, REC + 1) != 1 ||
		    EVP_CIPHER_CTX_ctrl(dec, EVP_CTRL_GCM_SET_TAG, 16, back + WIRE - 16) != 1 ||
		    EVP_DecryptFinal_ex(dec, out + len, &len) != 1)
			e = -EBADMSG;
	}
	*cpu = thread_cpu_s() - t0;
	EVP_CIPHER_CTX_free(enc);
	EVP_CIPHER_CTX_free(dec);
	EVP_CIPHER_free(ci);
	free(pt), free(wire), free(back), free(out);
	if (a >= 0)
		close(a), close(b);
	return e;
}

/* The kernel's: plaintext into a TLS_TX socket, out of a TLS_RX one. */
static int run_kernel(size_t bytes, double *cpu, const char **step)
{
	struct tls12_crypto_info_aes_gcm_128 info = {
	    .info = {.version = TLS_1_3_VERSION, .cipher_type = TLS_CIPHER_AES_GCM_128}};
	uint8_t *pt = calloc(1, REC), *back = malloc(REC);
	int a, b, e = pair(&a, &b);
	*step = "loopback pair";
	if (e == 0 && (!pt || !back))
		e = -ENOMEM;
	if (!e) {
		*step = "TCP_ULP/TLS_TX/TLS_RX";
		if (setsockopt(a, IPPROTO_TCP, TCP_ULP, "tls", 3) < 0 ||
		    setsockopt(b, IPPROTO_TCP, TCP_ULP, "tls", 3) < 0 ||
		    setsockopt(a, SOL_TLS, TLS_TX, &info, sizeof(info)) < 0 ||
		    setsockopt(b, SOL_TLS, TLS_RX, &info, sizeof(info)) < 0)
			e = -errno;
	}
	*step = "records";
	double t0 = thread_cpu_s();
	for (size_t done = 0; !e && done < bytes; done += REC)
		if ((e = send_all(a, pt, REC)) == 0)
			e = recv_all(b, back, REC);
	*cpu = thread_cpu_s() - t0;
	free(pt), free(back);
	if (a >= 0)
		close(a), close(b);
	return e;
}

int ktlscost_measure(struct ktlscost *o, size_t bytes, int rounds)
{
	memset(o, 0, sizeof(*o));
	o->bytes = bytes;
	o->rounds = rounds;
	double bu = 0, bk = 0;
	for (int r = 0; r < rounds; r++) {
		double u, k;
		const char *step;
		int e = run_user(bytes, &u);
		if (e < 0) {
			snprintf(o->why, sizeof(o->why), "OpenSSL records: %s", strerror(-e));
			return e;
		}
		e = run_kernel(bytes, &k, &step);
		if (e < 0) {
			snprintf(o->why, sizeof(o->why), "kernel TLS %s: %s", step, strerror(-e));
			return e;
		}
		if (!r || u < bu)
			bu = u;
		if (!r || k < bk)
			bk = k;
	}
	o->user_s_per_gb = bu * 1e9 / (double)bytes;
	o->kernel_s_per_gb = bk * 1e9 / (double)bytes;
	return 0;
}
