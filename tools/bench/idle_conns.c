/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * idle_conns.c - the TLS client of the benchmark (tools/bench/run.sh), two modes.
 *
 * Idle (default): open N TLS connections, send one request on each (an EAS
 * capture, normally a Ping that the backend holds: a real idle long-poll),
 * print "READY ..." once every connection has sent its request, and keep them
 * all open until SIGTERM/SIGINT. The caller measures the proxy's memory
 * meanwhile. Each connection is its own user (User=, Basic credentials and
 * DeviceId made unique) so user-affinity hashing spreads them as real phones.
 *
 * Handshakes (--handshakes full|resume): for D seconds keep P connections in
 * flight; each is TCP connect, TLS handshake, read of the session ticket,
 * close_notify, close. No HTTP request is sent: what the proxy spends is the
 * cost of a new TLS connection and nothing else. "resume" offers the newest
 * ticket on every connection (PSK with ECDHE, as phones resume), "full" never
 * offers one. The number actually resumed is printed, so a proxy that does
 * not resume cannot pass for one that does.
 *
 * Client-side TLS is 1.3 only, no certificate verification (the client's CPU
 * is not what is measured, and all proxies serve the same chain).
 *
 * Built by `make` (build/bench/idle_conns).
 * Usage: idle_conns [options] IPv4:PORT        (--help)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum ic_state { IC_CONNECT, IC_HANDSHAKE, IC_SEND, IC_IDLE, IC_CLOSING };

struct ic_conn {
	int fd;
	SSL *ssl;
	enum ic_state st;
	uint32_t id;
	size_t off;	 /* request bytes sent */
	int answered;	 /* idle mode: the proxy answered (the long-poll did not hold) */
	uint32_t events; /* what epoll currently waits for */
	double t_start;	 /* handshake mode: when connect() was called */
};

struct ic_opts {
	struct sockaddr_in dst;
	const char *sni;
	const char *capture;
	long n;		/* idle: connections; handshakes: 0 = until the deadline */
	int par;	/* connections in the handshake phase at once */
	double seconds; /* handshake mode duration */
	int handshakes; /* 0 idle, 1 full, 2 resume */
	int src_addrs;	/* spread source addresses over 127.0.0.2 .. */
	long settle_ms; /* idle: wait this long after the last request before READY */
};

static struct ic_opts o = {
    .sni = "localhost", .n = 1000, .par = 64, .seconds = 10, .settle_ms = 1000};
static SSL_CTX *ctx;
static SSL_SESSION *newest; /* resume mode: the newest ticket received */
static int epfd;
static volatile sig_atomic_t stop;
static char *cap_head, *cap_body;
static size_t cap_body_len;

/* Counters. */
static long n_started, n_inflight, n_handshakes, n_resumed, n_failed, n_idle, n_answered,
    n_peer_closed;
static long n_tickets_resumed; /* new tickets received on resumed connections */
/* Handshake mode: connect() to handshake complete, µs, one per handshake. */
static float *lat_us;
static size_t lat_n, lat_cap;

static double ic_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void ic_on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void ic_base64(const unsigned char *in, size_t n, char *out)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, j = 0;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[j++] = tab[v >> 18 & 63];
		out[j++] = tab[v >> 12 & 63];
		out[j++] = tab[v >> 6 & 63];
		out[j++] = tab[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
		out[j++] = tab[v >> 18 & 63];
		out[j++] = tab[v >> 12 & 63];
		out[j++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
		out[j++] = '=';
	}
	out[j] = 0;
}

/* Loads the capture and splits it into head (without the final CRLFCRLF) and body. */
static int ic_load_capture(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return -1;
	}
	static char raw[1 << 20];
	size_t n = fread(raw, 1, sizeof(raw) - 1, f);
	fclose(f);
	raw[n] = 0;
	char *end = strstr(raw, "\r\n\r\n");
	if (!end) {
		fprintf(stderr, "%s: no end of head\n", path);
		return -1;
	}
	*end = 0;
	cap_head = raw;
	cap_body = end + 4;
	cap_body_len = n - (size_t)(cap_body - raw);
	return 0;
}

/* Appends s to out (bounded). */
static void ic_cat(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
	if (*len + n >= cap)
		n = cap - *len - 1;
	memcpy(out + *len, s, n);
	*len += n;
	out[*len] = 0;
}

/*
 * The capture for connection id: query parameters User= and DeviceId= and the
 * Authorization header belong to user id, Content-Length is recomputed, every
 * other byte is the capture's. Returns the length written to out.
 */
static size_t ic_build_request(uint32_t id, char *out, size_t cap)
{
	char user[64], cred[96], b64[160], line[1024];
	size_t len = 0;
	snprintf(user, sizeof(user), "idle%u@dev.fd", id);
	snprintf(cred, sizeof(cred), "%s:test-password", user);
	ic_base64((const unsigned char *)cred, strlen(cred), b64);
	out[0] = 0;
	const char *p = cap_head;
	for (int first = 1; *p; first = 0) {
		const char *eol = strstr(p, "\r\n");
		size_t ll = eol ? (size_t)(eol - p) : strlen(p);
		if (first) {
			/* Rewrite User= and DeviceId= in the request line. */
			const char *q = p, *e = p + ll;
			while (q < e) {
				if (!strncmp(q, "User=", 5)) {
					int k = snprintf(line, sizeof(line),
							 "User=idle%u%%40dev.fd", id);
					ic_cat(out, cap, &len, line, (size_t)k);
				} else if (!strncmp(q, "DeviceId=", 9)) {
					int k =
					    snprintf(line, sizeof(line), "DeviceId=Idle%012u", id);
					ic_cat(out, cap, &len, line, (size_t)k);
				} else {
					ic_cat(out, cap, &len, q, 1);
					q++;
					continue;
				}
				while (q < e && *q != '&' && *q != ' ')
					q++;
			}
		} else if (!strncasecmp(p, "Authorization:", 14)) {
			int k = snprintf(line, sizeof(line), "Authorization: Basic %s", b64);
			ic_cat(out, cap, &len, line, (size_t)k);
		} else if (!strncasecmp(p, "Content-Length:", 15)) {
			int k = snprintf(line, sizeof(line), "Content-Length: %zu", cap_body_len);
			ic_cat(out, cap, &len, line, (size_t)k);
		} else {
			ic_cat(out, cap, &len, p, ll);
		}
		ic_cat(out, cap, &len, "\r\n", 2);
		p = eol ? eol + 2 : p + ll;
	}
	ic_cat(out, cap, &len, "\r\n", 2);
	if (len + cap_body_len >= cap)
		return 0;
	memcpy(out + len, cap_body, cap_body_len);
	return len + cap_body_len;
}

static int ic_new_session(SSL *s, SSL_SESSION *sess)
{
	(void)s;
	if (o.handshakes != 2)
		return 0; /* full mode: never reused, let OpenSSL free it */
	if (SSL_session_reused(s))
		n_tickets_resumed++;
	/* A private copy, for the same reason as in ic_start(). */
	SSL_SESSION *copy = SSL_SESSION_dup(sess);
	if (copy) {
		SSL_SESSION_free(newest);
		newest = copy;
	}
	return 0; /* OpenSSL keeps (and frees) the original */
}

static void ic_want(struct ic_conn *c, uint32_t ev)
{
	if (c->events == ev)
		return;
	struct epoll_event e = {.events = ev, .data.ptr = c};
	epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
	c->events = ev;
}

static void ic_free(struct ic_conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	SSL_free(c->ssl);
	close(c->fd);
	free(c);
}

static int ic_start(uint32_t id)
{
	struct ic_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	c->id = id;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		perror("socket");
		free(c);
		return -1;
	}
	/* As real clients: without it, our close_notify (or request) waits for
	 * the server's delayed ACK of our Finished when no ticket follows it. */
	int nodelay = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
	if (o.src_addrs > 0) {
		/* More source addresses, more ephemeral ports: 20,000+ connections to
		 * one address:port would otherwise crowd the 28,000-port range. */
		int one = 1;
		struct sockaddr_in sa = {.sin_family = AF_INET};
		sa.sin_addr.s_addr = htonl(0x7f000002u + id % (uint32_t)o.src_addrs);
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			perror("bind");
	}
	if (connect(c->fd, (struct sockaddr *)&o.dst, sizeof(o.dst)) < 0 && errno != EINPROGRESS) {
		perror("connect");
		close(c->fd);
		free(c);
		return -1;
	}
	c->ssl = SSL_new(ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_connect_state(c->ssl);
	SSL_set_tlsext_host_name(c->ssl, o.sni);
	if (o.handshakes == 2 && newest) {
		/* Each connection gets its own copy of the newest ticket, so one
		 * connection's end cannot spoil it for the next (OpenSSL marks a
		 * connection's session not resumable when a ticket replaces it). */
		SSL_SESSION *d = SSL_SESSION_dup(newest);
		SSL_set_session(c->ssl, d);
		SSL_SESSION_free(d);
	}
	c->st = IC_CONNECT;
	c->events = EPOLLOUT;
	c->t_start = ic_now();
	struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
	epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &e);
	n_started++;
	n_inflight++;
	return 0;
}

static void ic_lat_add(double us)
{
	if (lat_n == lat_cap) {
		size_t cap = lat_cap ? lat_cap * 2 : 65536;
		float *p = realloc(lat_us, cap * sizeof(*p));
		if (!p)
			return; /* the percentiles then cover the samples kept */
		lat_us = p;
		lat_cap = cap;
	}
	lat_us[lat_n++] = (float)us;
}

static int ic_cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of the recorded latencies, nearest rank. */
static double ic_lat_q(double q)
{
	if (!lat_n)
		return 0;
	size_t i = (size_t)(q * (double)lat_n);
	return lat_us[i >= lat_n ? lat_n - 1 : i];
}

/* Maps an SSL result to "wait for I/O" (0) or "failed/closed" (-1). */
static int ic_ssl_wait(struct ic_conn *c, int r)
{
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		ic_want(c, EPOLLIN);
		return 0;
	case SSL_ERROR_WANT_WRITE:
		ic_want(c, EPOLLOUT);
		return 0;
	default:
		ERR_clear_error();
		return -1;
	}
}

/* Advances c as far as it goes; may free it. */
static void ic_step(struct ic_conn *c)
{
	char buf[16384];
	static char req[1 << 20];
	int r;

	for (;;) {
		switch (c->st) {
		case IC_CONNECT: {
			int err = 0;
			socklen_t l = sizeof(err);
			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
			if (err) {
				n_failed++;
				n_inflight--;
				ic_free(c);
				return;
			}
			c->st = IC_HANDSHAKE;
			break;
		}
		case IC_HANDSHAKE:
			r = SSL_do_handshake(c->ssl);
			if (r != 1) {
				if (ic_ssl_wait(c, r) == 0)
					return;
				n_failed++;
				n_inflight--;
				ic_free(c);
				return;
			}
			n_handshakes++;
			if (SSL_session_reused(c->ssl))
				n_resumed++;
			if (o.handshakes)
				ic_lat_add((ic_now() - c->t_start) * 1e6);
			if (o.handshakes) {
				/* Our close_notify first; the read that follows picks
				 * up the ticket the server sent after its Finished. */
				SSL_shutdown(c->ssl);
				c->st = IC_CLOSING;
			} else if (cap_head) {
				c->st = IC_SEND;
			} else { /* no -r: park right after the handshake */
				n_inflight--;
				n_idle++;
				c->st = IC_IDLE;
				ic_want(c, EPOLLIN);
			}
			break;
		case IC_SEND: {
			size_t n = ic_build_request(c->id, req, sizeof(req));
			r = SSL_write(c->ssl, req + c->off, (int)(n - c->off));
			if (r <= 0) {
				if (ic_ssl_wait(c, r) == 0)
					return;
				n_failed++;
				n_inflight--;
				ic_free(c);
				return;
			}
			c->off += (size_t)r;
			if (c->off < n)
				break;
			n_inflight--;
			n_idle++;
			c->st = IC_IDLE;
			ic_want(c, EPOLLIN);
			break;
		}
		case IC_IDLE:
			r = SSL_read(c->ssl, buf, sizeof(buf));
			if (r > 0) {
				if (!c->answered)
					n_answered++;
				c->answered = 1;
				break;
			}
			if (ic_ssl_wait(c, r) == 0)
				return;
			n_peer_closed++;
			n_idle--;
			ic_free(c);
			return;
		case IC_CLOSING:
			r = SSL_read(c->ssl, buf, sizeof(buf));
			if (r > 0)
				break;
			if (r < 0 && ic_ssl_wait(c, r) == 0)
				return;
			n_inflight--;
			ic_free(c);
			return;
		}
	}
}

static void ic_usage(FILE *f)
{
	fprintf(f,
		"usage: idle_conns [options] IPv4:PORT\n"
		"  -n N              idle mode: connections to open (default 1000);\n"
		"                    handshake mode: stop after N (default: run -d seconds)\n"
		"  -r FILE           idle mode: the request each connection sends (EAS capture;\n"
		"                    without -r the connections park right after the handshake)\n"
		"  -P PAR            connections in the handshake phase at once (default 64)\n"
		"  -d SECONDS        handshake mode: duration (default 10)\n"
		"      --handshakes full|resume   handshake mode (default: idle mode)\n"
		"      --src-addrs K source addresses 127.0.0.2 .. 127.0.0.K+1 (loopback targets)\n"
		"      --settle-ms MS idle mode: wait after the last request before READY (1000)\n"
		"      --sni NAME    server name (default localhost)\n"
		"Idle mode prints \"READY opened= failed= answered= closed=\" then holds the\n"
		"connections until SIGTERM/SIGINT and prints \"DONE ...\". Handshake mode prints\n"
		"\"HANDSHAKES mode= done= resumed= failed= seconds= rate= ... p50_us= p99_us= "
		"p999_us=\"\n"
		"(connect to handshake complete).\n");
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"handshakes", required_argument, NULL, 'H'},
	    {"src-addrs", required_argument, NULL, 'A'},
	    {"settle-ms", required_argument, NULL, 'S'},
	    {"sni", required_argument, NULL, 'N'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;
	int n_given = 0;
	while ((c = getopt_long(argc, argv, "n:r:P:d:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			o.n = atol(optarg);
			n_given = 1;
			break;
		case 'r':
			o.capture = optarg;
			break;
		case 'P':
			o.par = atoi(optarg);
			break;
		case 'd':
			o.seconds = atof(optarg);
			break;
		case 'H':
			if (!strcmp(optarg, "full"))
				o.handshakes = 1;
			else if (!strcmp(optarg, "resume"))
				o.handshakes = 2;
			else {
				ic_usage(stderr);
				return 2;
			}
			break;
		case 'A':
			o.src_addrs = atoi(optarg);
			break;
		case 'S':
			o.settle_ms = atol(optarg);
			break;
		case 'N':
			o.sni = optarg;
			break;
		case 'h':
			ic_usage(stdout);
			return 0;
		default:
			ic_usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1 || o.par < 1) {
		ic_usage(stderr);
		return 2;
	}
	if (o.handshakes && !n_given)
		o.n = 0;
	char host[64];
	const char *colon = strrchr(argv[optind], ':');
	if (!colon || (size_t)(colon - argv[optind]) >= sizeof(host)) {
		ic_usage(stderr);
		return 2;
	}
	memcpy(host, argv[optind], (size_t)(colon - argv[optind]));
	host[colon - argv[optind]] = 0;
	o.dst.sin_family = AF_INET;
	o.dst.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &o.dst.sin_addr) != 1) {
		fprintf(stderr, "idle_conns: %s: not an IPv4 address\n", host);
		return 2;
	}
	if (o.capture && ic_load_capture(o.capture) < 0)
		return 2;

	/* Room for every connection (root may raise the hard limit). */
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rlim_t want = (rlim_t)(o.handshakes ? o.par : o.n) + 64;
	if (rl.rlim_cur < want) {
		rl.rlim_cur = want;
		if (rl.rlim_max < want)
			rl.rlim_max = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			perror("setrlimit(RLIMIT_NOFILE)");
			return 1;
		}
	}

	setvbuf(stdout, NULL, _IOLBF, 0);
	struct sigaction sa = {.sa_handler = ic_on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* The client cache is off; the callback hands us each new ticket. */
	SSL_CTX_set_session_cache_mode(ctx,
				       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, ic_new_session);
	/* 34 KiB of record buffers per parked connection would make this client,
	 * not the proxy, the memory hog of the idle test. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

	epfd = epoll_create1(EPOLL_CLOEXEC);
	double t0 = ic_now(), deadline = t0 + o.seconds, last_req = 0, t_end = 0;
	int ready = 0;
	uint32_t next_id = 0;
	struct epoll_event evs[256];

	if (o.handshakes == 2) {
		/* One full handshake first: its ticket seeds every resumption. */
		ic_start(next_id++);
		while (!stop && n_inflight > 0) {
			int k = epoll_wait(epfd, evs, 256, 1000);
			for (int i = 0; i < k; i++)
				ic_step(evs[i].data.ptr);
		}
		if (!newest) {
			fprintf(stderr, "idle_conns: the server issued no session ticket\n");
			printf(
			    "HANDSHAKES mode=resume done=0 resumed=0 failed=1 seconds=0 rate=0\n");
			return 1;
		}
		n_handshakes = n_resumed = n_started = n_tickets_resumed = 0;
		lat_n = 0;
		t0 = ic_now();
		deadline = t0 + o.seconds;
	}
	while (!stop) {
		double now = ic_now();
		if (o.handshakes) {
			int more = now < deadline && (!o.n || n_started < o.n);
			while (more && n_inflight < o.par && ic_start(next_id++) == 0)
				more = !o.n || n_started < o.n;
			if (!more && n_inflight == 0) {
				t_end = now;
				break;
			}
			if (now > deadline + 10) { /* a stuck peer must not hang the run */
				t_end = now;
				break;
			}
		} else {
			while (n_started < o.n && n_inflight < o.par && ic_start(next_id++) == 0)
				;
			if (!ready && n_started == o.n && n_inflight == 0) {
				if (!last_req)
					last_req = now;
				if (now - last_req >= (double)o.settle_ms / 1000) {
					printf(
					    "READY opened=%ld failed=%ld answered=%ld closed=%ld "
					    "seconds=%.1f\n",
					    n_idle, n_failed, n_answered, n_peer_closed, now - t0);
					ready = 1;
				}
			}
		}
		int k = epoll_wait(epfd, evs, 256, 100);
		for (int i = 0; i < k; i++)
			ic_step(evs[i].data.ptr);
	}
	if (o.handshakes) {
		double secs = (t_end ? t_end : ic_now()) - t0;
		qsort(lat_us, lat_n, sizeof(*lat_us), ic_cmp_float);
		printf("HANDSHAKES mode=%s done=%ld resumed=%ld failed=%ld seconds=%.3f rate=%.0f "
		       "new_tickets_on_resumed=%ld p50_us=%.0f p99_us=%.0f p999_us=%.0f\n",
		       o.handshakes == 2 ? "resume" : "full", n_handshakes, n_resumed, n_failed,
		       secs, secs > 0 ? (double)n_handshakes / secs : 0, n_tickets_resumed,
		       ic_lat_q(0.50), ic_lat_q(0.99), ic_lat_q(0.999));
		return n_handshakes > 0 ? 0 : 1;
	}
	printf("DONE opened=%ld failed=%ld answered=%ld closed=%ld\n", n_idle, n_failed, n_answered,
	       n_peer_closed);
	return 0;
}
