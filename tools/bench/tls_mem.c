/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * tls_mem.c - where the bytes of an idle TLS connection go (issue #11, test f).
 *
 * Builds the phone-facing server context with easgated's own code
 * (tls_server_new: the same options, RELEASE_BUFFERS, read-ahead, tickets),
 * then runs N TLS 1.3 handshakes against an in-process client over socket
 * pairs, sends one ~1 KiB request on each (what a parked Ping leaves behind),
 * and counts every byte OpenSSL holds for the server side, by allocation site,
 * through CRYPTO_set_mem_functions. The client's allocations are counted
 * apart and left out. Printed per connection: live bytes after SSL_new,
 * after the handshake, after the request was read, after SSL_free_buffers();
 * what glibc's malloc makes of them (chunk headers and 16-byte rounding); the
 * largest sites; easgated's own structures; the kernel's slab objects per
 * socket (/proc/slabinfo, root).
 *
 * Usage: tls_mem [-n N] CERT.pem KEY.pem      (tools/mkcerts.sh makes a pair)
 */
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "shm.h"
#include "tls.h"
#include "upstream.h"

#define TM_SITES 4096

struct tm_site {
	const char *file;
	int line;
	long live;   /* bytes */
	long nlive;  /* allocations */
	long chunks; /* bytes as glibc chunks */
};

/* Each allocation carries its size, site and side in front of it. */
struct tm_hdr {
	size_t size;
	int site;
	int server;
	long pad; /* keeps the payload 16-byte aligned */
};

static struct tm_site sites[TM_SITES];
static int counting_server; /* allocations now belong to the server side */
static long live[2], nlive[2], chunks[2];

/* What glibc's malloc spends for a request of n bytes: 8 bytes of header,
 * rounded up to 16, at least 32. */
static long tm_chunk(size_t n)
{
	long c = (long)((n + 8 + 15) & ~(size_t)15);
	return c < 32 ? 32 : c;
}

static int tm_site(const char *file, int line)
{
	unsigned h = (unsigned)(((uintptr_t)file >> 3) * 31u + (unsigned)line) % TM_SITES;
	for (int i = 0; i < TM_SITES; i++, h = (h + 1) % TM_SITES) {
		if (sites[h].file == file && sites[h].line == line)
			return (int)h;
		if (!sites[h].file) {
			sites[h].file = file ? file : "?";
			sites[h].line = line;
			return (int)h;
		}
	}
	return 0;
}

static void tm_account(struct tm_hdr *h, int sign)
{
	live[h->server] += sign * (long)h->size;
	nlive[h->server] += sign;
	chunks[h->server] += sign * tm_chunk(h->size);
	if (h->server) {
		sites[h->site].live += sign * (long)h->size;
		sites[h->site].nlive += sign;
		sites[h->site].chunks += sign * tm_chunk(h->size);
	}
}

static void *tm_malloc(size_t n, const char *file, int line)
{
	struct tm_hdr *h = malloc(sizeof(*h) + n);
	if (!h)
		return NULL;
	h->size = n;
	h->server = counting_server;
	h->site = tm_site(file, line);
	tm_account(h, 1);
	return h + 1;
}

static void tm_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	if (!p)
		return;
	struct tm_hdr *h = (struct tm_hdr *)p - 1;
	tm_account(h, -1);
	free(h);
}

static void *tm_realloc(void *p, size_t n, const char *file, int line)
{
	if (!p)
		return tm_malloc(n, file, line);
	struct tm_hdr *h = (struct tm_hdr *)p - 1;
	struct tm_hdr old = *h;
	tm_account(h, -1);
	struct tm_hdr *nh = realloc(h, sizeof(*nh) + n);
	if (!nh) {
		tm_account(&old, 1); /* the old block is still there */
		return NULL;
	}
	nh->size = n;
	tm_account(nh, 1);
	return nh + 1;
}

/* Drive one handshake to its end on both sides; 0 or -1. */
static int tm_handshake(SSL *srv, SSL *cli)
{
	for (int i = 0; i < 100; i++) {
		counting_server = 0;
		int rc = SSL_do_handshake(cli);
		counting_server = 1;
		int rs = SSL_do_handshake(srv);
		counting_server = 0;
		if (rc == 1 && rs == 1)
			return 0;
		if (rc <= 0 && SSL_get_error(cli, rc) != SSL_ERROR_WANT_READ)
			return -1;
		if (rs <= 0 && SSL_get_error(srv, rs) != SSL_ERROR_WANT_READ)
			return -1;
	}
	return -1;
}

static int tm_cmp(const void *a, const void *b)
{
	const struct tm_site *x = a, *y = b;
	return (y->live > x->live) - (y->live < x->live);
}

/* objsize of a slab cache, 0 if not readable */
static long tm_slab(const char *name)
{
	FILE *f = fopen("/proc/slabinfo", "r");
	if (!f)
		return 0;
	char line[512], n[128];
	long active, num, objsize = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%127s %ld %ld %ld", n, &active, &num, &objsize) == 4 &&
		    !strcmp(n, name))
			break;
		else
			objsize = 0;
	fclose(f);
	return objsize;
}

int main(int argc, char **argv)
{
	int n = 2000, opt;
	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt == 'n')
			n = atoi(optarg);
		else
			goto usage;
	}
	if (argc - optind != 2 || n < 1) {
	usage:
		fprintf(stderr, "usage: tls_mem [-n N] CERT.pem KEY.pem\n");
		return 2;
	}
	if (!CRYPTO_set_mem_functions(tm_malloc, tm_realloc, tm_free)) {
		fprintf(stderr, "tls_mem: OpenSSL allocated before main\n");
		return 1;
	}
	static struct gw_config cfg;
	config_defaults(&cfg);
	snprintf(cfg.tls.certs[0].cert, sizeof(cfg.tls.certs[0].cert), "%s", argv[optind]);
	snprintf(cfg.tls.certs[0].key, sizeof(cfg.tls.certs[0].key), "%s", argv[optind + 1]);
	cfg.tls.ncerts = 1;
	cfg.tls.ocsp_stapling = 0;
	struct shm *shm = shm_create();
	char err[512];
	struct tls_server *t = shm ? tls_server_new(&cfg, shm, err, sizeof(err)) : NULL;
	if (!t) {
		fprintf(stderr, "tls_mem: %s\n", shm ? err : "shm_create failed");
		return 1;
	}
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_mode(cctx, SSL_MODE_RELEASE_BUFFERS);

	char req[1100];
	memset(req, 'x', sizeof(req));
	SSL **srv = calloc((size_t)n, sizeof(*srv)), **cli = calloc((size_t)n, sizeof(*cli));
	long at_new = 0, at_hs = 0, at_req = 0, chunks_req = 0, n_req = 0;
	for (int i = 0; i < n; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) {
			perror("socketpair (raise ulimit -n)");
			return 1;
		}
		long before = live[1];
		counting_server = 1;
		srv[i] = tls_server_ssl(t, sv[0]);
		counting_server = 0;
		at_new += live[1] - before;
		cli[i] = SSL_new(cctx);
		SSL_set_fd(cli[i], sv[1]);
		SSL_set_connect_state(cli[i]);
		if (!srv[i] || tm_handshake(srv[i], cli[i]) < 0) {
			fprintf(stderr, "tls_mem: handshake %d failed\n", i);
			return 1;
		}
		char b[2048];
		SSL_read(cli[i], b, sizeof(b)); /* the ticket; WANT_READ after it */
		at_hs += live[1] - before;
		SSL_write(cli[i], req, sizeof(req));
		counting_server = 1;
		int r = SSL_read(srv[i], b, sizeof(b));
		counting_server = 0;
		if (r != (int)sizeof(req)) {
			fprintf(stderr, "tls_mem: request %d not read (%d)\n", i, r);
			return 1;
		}
		at_req += live[1] - before;
		ERR_clear_error();
	}
	chunks_req = chunks[1];
	n_req = nlive[1];
	struct tm_site top[TM_SITES];
	memcpy(top, sites, sizeof(top));
	long before_free = live[1];
	counting_server = 1;
	for (int i = 0; i < n; i++)
		SSL_free_buffers(srv[i]);
	counting_server = 0;
	long freed = before_free - live[1];
	qsort(top, TM_SITES, sizeof(top[0]), tm_cmp);

	printf("OpenSSL %s, %d server connections (TLS 1.3, easgated's server context)\n",
	       OpenSSL_version(OPENSSL_VERSION), n);
	printf("live bytes per connection, OpenSSL's allocations for the server side:\n");
	printf("  after SSL_new                  %7.0f\n", (double)at_new / n);
	printf("  after handshake + ticket       %7.0f\n", (double)at_hs / n);
	printf("  after reading a 1 KiB request  %7.0f  (%.1f allocations; as glibc chunks %.0f)\n",
	       (double)at_req / n, (double)n_req / n, (double)chunks_req / n);
	printf("  SSL_free_buffers() frees       %7.0f\n", (double)freed / n);
	printf("largest sites (bytes per connection, allocations per connection):\n");
	for (int i = 0; i < 16 && top[i].live > 0; i++) {
		const char *f = strrchr(top[i].file, '/');
		printf("  %7.0f %5.1f  %s:%d\n", (double)top[i].live / n, (double)top[i].nlive / n,
		       f ? f + 1 : top[i].file, top[i].line);
	}
	printf("easgated's own, per parked long-poll: struct conn %zu, struct upstream %zu "
	       "(buffers: none while idle, pooled)\n",
	       sizeof(struct conn), sizeof(struct upstream));
	long tcp = tm_slab("TCP"), ino = tm_slab("sock_inode_cache"), filp = tm_slab("filp"),
	     epi = tm_slab("eventpoll_epi"), den = tm_slab("dentry");
	if (tcp)
		printf("kernel slab objects per TCP socket: TCP %ld + sock_inode_cache %ld + filp "
		       "%ld + eventpoll_epi %ld + dentry %ld = %ld (plus its receive/send "
		       "memory while data waits)\n",
		       tcp, ino, filp, epi, den, tcp + ino + filp + epi + den);
	for (int i = 0; i < n; i++) {
		SSL_free(srv[i]);
		SSL_free(cli[i]);
	}
	return 0;
}
