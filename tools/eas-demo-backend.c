/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * eas-demo-backend - the built-in demo Exchange ActiveSync backend.
 *
 * A small, single-process, epoll-driven HTTP/1.1 server that answers like an
 * EAS endpoint (OPTIONS, POST with a minimal WBXML envelope, a health path)
 * and can record every request byte for byte. `make run` puts the gateway in
 * front of it; integration tests run several instances as "Exchange servers"
 * and compare what a client sent with what a backend received.
 *
 * Deliberately independent of user/proto/h1.c: its own request parser and chunked
 * decoder, so a differential test does not share bugs with the gateway. Only
 * user/base/log.h is borrowed, for the log line format.
 *
 * Structure: options -> listener -> one epoll loop. Each connection handles one
 * request at a time (reading ahead for pipelining into a bounded buffer):
 *   CS_HEAD -> CS_BODY -> [CS_WAIT (delay timer)] -> CS_SEND -> CS_HEAD ...
 *                                                            \-> CS_LINGER -> closed
 * Bodies are streamed (hashed and recorded as they arrive), never buffered
 * whole, so memory per connection is bounded by DB_RBUF_CAP + DB_OBUF_CAP,
 * and an idle connection holds neither buffer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "log.h"

#define DB_RBUF_CAP	   32768 /* request head limit, also the pipelining read-ahead */
#define DB_OBUF_CAP	   16384 /* response staging buffer; bodies are generated into it */
#define DB_MAX_HEADERS	   100
#define DB_CHUNK_LINE_MAX  4096		/* chunk-size line incl. extensions */
#define DB_TRAILER_MAX	   16384	/* all trailer lines of one chunked body */
#define DB_LINGER_MS	   2000		/* how long a closing connection drains input */
#define DB_SEND_BUDGET	   (1u << 20)	/* bytes per connection per loop round (fairness) */
#define DB_ACCEPT_PAUSE_MS 100		/* back-off when out of file descriptors */
#define DB_SIZE_MAX	   (1ULL << 40) /* egtest_size upper bound */
#define DB_USER_MAX	   256		/* X-Echo-User is truncated to this */
#define DB_NAME_MAX	   31
#define DB_AUTH_MAX	   16		/* --auth accounts */
#define DB_AUTHZ_MAX	   512		/* Authorization value kept for the --auth check */
#define DB_SEQ_FMT	   "%08" PRIu64 /* seq as in file names and X-Request-Seq */

static const char eas_path_tail[] = "/Microsoft-Server-ActiveSync";
static const char eas_versions[] = "2.5,12.0,12.1,14.0,14.1,16.0,16.1";
static const char eas_commands[] =
    "Sync,SendMail,SmartForward,SmartReply,GetAttachment,GetHierarchy,CreateCollection,"
    "DeleteCollection,MoveCollection,FolderSync,FolderCreate,FolderDelete,FolderUpdate,"
    "MoveItems,GetItemEstimate,MeetingResponse,Search,Settings,Ping,ItemOperations,Provision,"
    "ResolveRecipients,ValidateCert,Find";
static const char eas_server_version[] = "15.1";

/* ------------------------------------------------------------------------- */
/* Types                                                                      */

struct demo_opts {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	const char *listen;	 /* as given, for logs */
	const char *name;	 /* X-Backend value, [A-Za-z0-9._-] */
	const char *record_dir;	 /* NULL: no recording */
	const char *health_path; /* exact path answered with 200 "ok" */
	const char *pidfile;
	const char *portfile;
	char eas_path[256]; /* prefix + "/Microsoft-Server-ActiveSync" */
	uint64_t close_after;
	uint64_t delay_ms;
	uint64_t hold_ping_ms;
	int quiet;
	/* --auth USER:PASSWORD: base64 of each, as a Basic Authorization carries
	 * it; with any given, EAS requests without one of them get 401. */
	char *auth_b64[DB_AUTH_MAX];
	int nauth;
};

enum ev_kind { EV_LISTEN, EV_SIGNAL, EV_CONN };

/* Tag at the start of everything registered with epoll (data.ptr). */
struct ev_src {
	enum ev_kind kind;
};

enum conn_state { CS_HEAD, CS_BODY, CS_WAIT, CS_SEND, CS_LINGER };

/* States of the chunked-body decoder (RFC 9112 section 7.1). */
enum ck_st {
	CK_SIZE,
	CK_BWS,
	CK_EXT,
	CK_SIZE_LF,
	CK_DATA,
	CK_DATA_CR,
	CK_DATA_LF,
	CK_TR_START,
	CK_TR_LINE,
	CK_TR_LF,
	CK_END_LF,
	CK_DONE,
};

struct ck_state {
	enum ck_st st;
	uint64_t size;	    /* chunk size being parsed, then data bytes left */
	unsigned ndigits;   /* hex digits seen in the current size */
	size_t line_len;    /* bytes in the current size line */
	size_t trailer_len; /* bytes of trailer section so far */
};

/* The request being received; reset between requests. */
struct req {
	uint64_t seq; /* 0 until the head is complete (or rejected) */
	char method[32];
	char *target; /* owned, NUL-terminated raw request-target; NULL if unparsed */
	int minor;    /* HTTP/1.<minor> */
	int keep_alive;
	int expect_continue;
	int chunked;
	uint64_t body_left; /* Content-Length framing: bytes still expected */
	uint64_t body_len;  /* payload bytes (de-chunked) */
	uint64_t wire_len;  /* head + body bytes exactly as received */
	struct ck_state ck;
	unsigned char sha[32];
	int rec_fd;		  /* temporary record file, -1 when not recording */
	const char *error;	  /* static reason when the request was rejected */
	char authz[DB_AUTHZ_MAX]; /* Authorization value (for --auth), "" if none */
};

enum resp_phase { PH_DATA, PH_CRLF, PH_CHUNK_HDR, PH_DONE };

/* The response being sent; planned when the request completes. */
struct resp {
	int status;
	int is_options;	 /* add the Exchange OPTIONS header set */
	int is_eas;	 /* EAS POST: MS-Server-ActiveSync, Cache-Control */
	int is_ping;	 /* subject to --hold-ping-ms */
	int echo_sha;	 /* add X-Echo-Body-SHA256 */
	int chunked;	 /* Transfer-Encoding: chunked */
	int no_body;	 /* HEAD, 204, 304 */
	int close_hdr;	 /* send Connection: close, then close */
	int close_quiet; /* --close-after reached: close without saying so */
	const char *ctype;
	const unsigned char *body; /* static bytes, or NULL for the offset pattern */
	uint64_t len;
	unsigned char small[16]; /* storage for the WBXML envelope */
	char user[DB_USER_MAX + 1];
	/* generator state */
	enum resp_phase phase;
	uint64_t off;
	uint64_t chunk_left;
	unsigned chunk_idx;
};

struct conn {
	struct ev_src src; /* must stay first: epoll data.ptr points here */
	struct conn *prev, *next;
	int fd;
	uint32_t evmask;
	uint64_t serial;
	uint64_t nresp; /* responses completed on this connection */
	char peer[64];
	enum conn_state state;
	int peer_eof;
	char *rbuf; /* owned, DB_RBUF_CAP bytes; NULL while idle */
	size_t rstart, rend;
	size_t scan;	     /* bytes after rstart already checked for the head end */
	unsigned char *obuf; /* owned, DB_OBUF_CAP bytes; NULL while idle */
	size_t ostart, oend;
	EVP_MD_CTX *md; /* owned, reused for every request */
	struct req rq;
	struct resp rs;
	uint64_t deadline_ms; /* CLOCK_MONOTONIC, valid while heap_idx >= 0 */
	long heap_idx;
};

struct demo_srv {
	struct demo_opts o;
	int epfd;
	int lfd;
	int sfd;
	struct ev_src lsrc, ssrc;
	uint64_t next_seq;
	uint64_t next_conn;
	uint64_t accept_resume_ms; /* 0: listener active */
	struct conn **heap;	   /* min-heap of connections by deadline_ms */
	size_t heap_len, heap_cap;
	struct conn *conns; /* every open connection, for shutdown */
	int stop;
};

enum run_res { RUN_AGAIN, RUN_BLOCKED, RUN_CLOSED };

/* ------------------------------------------------------------------------- */
/* Small helpers                                                               */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static unsigned char lc(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Case-insensitive equality of a slice and a C string (ASCII only). */
static int ci_eq(const char *a, size_t an, const char *b)
{
	if (an != strlen(b))
		return 0;
	for (size_t i = 0; i < an; i++)
		if (lc((unsigned char)a[i]) != lc((unsigned char)b[i]))
			return 0;
	return 1;
}

static int ci_prefix(const char *a, size_t an, const char *b)
{
	size_t bn = strlen(b);
	return an >= bn && ci_eq(a, bn, b);
}

static int is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return 1;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = lc(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Parse an unsigned decimal slice of 1..18 digits; returns 0 or -1. */
static int parse_u64(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	if (n == 0 || n > 18)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return 0;
}

/* write() all of p, retrying on EINTR; for regular files only. */
static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Replace path atomically with text (tmp file + rename), so pollers never see a partial file. */
static int write_file_atomic(const char *path, const char *text)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int err = write_all(fd, text, strlen(text)) ? -errno : 0;
	if (close(fd) && !err)
		err = -errno;
	if (!err && rename(tmp, path))
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

static void fmt_addr(const struct sockaddr_storage *ss, char *out, size_t outsz)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
		snprintf(out, outsz, "[%s]:%u", host, port);
		return;
	}
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
	inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
	port = ntohs(s4->sin_port);
	snprintf(out, outsz, "%s:%u", host, port);
}

/* ------------------------------------------------------------------------- */
/* Request head parsing (independent of user/proto/h1.c)                            */

/*
 * Look for the end of the request head in p[0..n), resuming at *scan.
 * Strict framing: every CR must be followed by LF and every LF preceded by CR;
 * NUL is refused. Returns the head length (incl. the final CRLF CRLF), 0 if
 * more bytes are needed, or -1 with *why set.
 */
static long head_scan(const char *p, size_t n, size_t *scan, const char **why)
{
	size_t i = *scan;
	for (; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == 0) {
			*why = "NUL byte in request head";
			return -1;
		}
		if (c == '\r' && i + 1 < n && p[i + 1] != '\n') {
			*why = "bare CR in request head";
			return -1;
		}
		if (c != '\n')
			continue;
		if (i == 0 || p[i - 1] != '\r') {
			*why = "bare LF in request head";
			return -1;
		}
		if (i >= 3 && p[i - 2] == '\n' && p[i - 3] == '\r')
			return (long)(i + 1);
	}
	/* A trailing CR stays unchecked until its successor arrives. */
	*scan = (n && p[n - 1] == '\r') ? n - 1 : n;
	return 0;
}

/* Which framing headers a head carried, for the checks that span headers. */
struct hdr_seen {
	unsigned count;
	unsigned host;
	unsigned te;
	int te_chunked;
	int has_cl;
	uint64_t cl;
	int conn_close;
	int conn_keep_alive;
};

/* Request line: method SP request-target SP HTTP/1.x. Returns 0 or an HTTP status. */
static int reqline_parse(const char *p, size_t n, struct req *rq, const char **why)
{
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i >= sizeof(rq->method) || i >= n || p[i] != ' ') {
		*why = "bad method";
		return 400;
	}
	memcpy(rq->method, p, i);
	rq->method[i] = 0;
	size_t t0 = ++i;
	while (i < n && (unsigned char)p[i] > 0x20 && p[i] != 0x7f)
		i++;
	if (i == t0 || i >= n || p[i] != ' ') {
		*why = "bad request-target";
		return 400;
	}
	rq->target = strndup(p + t0, i - t0);
	if (!rq->target) {
		*why = "out of memory";
		return 500;
	}
	i++;
	if (n - i != 8 || memcmp(p + i, "HTTP/", 5) || p[i + 5] < '0' || p[i + 5] > '9' ||
	    p[i + 6] != '.' || p[i + 7] < '0' || p[i + 7] > '9') {
		*why = "bad HTTP version";
		return 400;
	}
	if (p[i + 5] != '1') {
		*why = "unsupported HTTP major version";
		return 505;
	}
	rq->minor = p[i + 7] - '0';
	return 0;
}

/* Set the Connection flags from a comma-separated token list. */
static void conn_tokens(const char *v, size_t n, struct hdr_seen *hs)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
			i++;
		if (ci_eq(v + s, i - s, "close"))
			hs->conn_close = 1;
		else if (ci_eq(v + s, i - s, "keep-alive"))
			hs->conn_keep_alive = 1;
	}
}

/* Transfer-Encoding: only a lone "chunked" is accepted (we decode nothing else). */
static int te_check(const char *v, size_t n, struct hdr_seen *hs, const char **why)
{
	if (++hs->te > 1) {
		*why = "repeated Transfer-Encoding";
		return 400;
	}
	if (ci_eq(v, n, "chunked")) {
		hs->te_chunked = 1;
		return 0;
	}
	size_t k = strlen("chunked");
	if (n > k && ci_eq(v + n - k, k, "chunked")) {
		*why = "unsupported transfer-coding";
		return 501;
	}
	*why = "Transfer-Encoding without final chunked";
	return 400;
}

/* Act on the few headers that matter for framing. Returns 0 or an HTTP status. */
static int header_apply(const char *name, size_t nn, const char *v, size_t vn, struct req *rq,
			struct hdr_seen *hs, const char **why)
{
	if (ci_eq(name, nn, "content-length")) {
		uint64_t cl;
		if (parse_u64(v, vn, &cl) || (hs->has_cl && cl != hs->cl)) {
			*why = "bad or conflicting Content-Length";
			return 400;
		}
		hs->has_cl = 1;
		hs->cl = cl;
	} else if (ci_eq(name, nn, "transfer-encoding")) {
		return te_check(v, vn, hs, why);
	} else if (ci_eq(name, nn, "connection")) {
		conn_tokens(v, vn, hs);
	} else if (ci_eq(name, nn, "expect")) {
		if (!ci_eq(v, vn, "100-continue")) {
			*why = "unsupported expectation";
			return 417;
		}
		rq->expect_continue = 1;
	} else if (ci_eq(name, nn, "authorization")) {
		snprintf(rq->authz, sizeof(rq->authz), "%.*s", (int)vn, v);
	} else if (ci_eq(name, nn, "host")) {
		if (++hs->host > 1) {
			*why = "more than one Host";
			return 400;
		}
	}
	return 0;
}

/* One header line (without CRLF). Returns 0 or an HTTP status. */
static int header_parse(const char *p, size_t n, struct req *rq, struct hdr_seen *hs,
			const char **why)
{
	if (++hs->count > DB_MAX_HEADERS) {
		*why = "too many header fields";
		return 431;
	}
	if (n && (p[0] == ' ' || p[0] == '\t')) {
		*why = "obsolete line folding";
		return 400;
	}
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i >= n || p[i] != ':') {
		*why = "bad header field name";
		return 400;
	}
	size_t nn = i++;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	size_t e = n;
	while (e > i && (p[e - 1] == ' ' || p[e - 1] == '\t'))
		e--;
	for (size_t k = i; k < e; k++) {
		unsigned char c = (unsigned char)p[k];
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			*why = "control byte in header value";
			return 400;
		}
	}
	return header_apply(p, nn, p + i, e - i, rq, hs, why);
}

/* Cross-header rules: framing ambiguity is refused, as a strict origin would. */
static int head_finish(struct req *rq, const struct hdr_seen *hs, const char **why)
{
	if (hs->te && hs->has_cl) {
		*why = "both Content-Length and Transfer-Encoding";
		return 400;
	}
	if (hs->te && rq->minor == 0) {
		*why = "Transfer-Encoding in HTTP/1.0";
		return 400;
	}
	if (rq->minor >= 1 && hs->host == 0) {
		*why = "missing Host";
		return 400;
	}
	rq->chunked = hs->te_chunked;
	rq->body_left = hs->has_cl ? hs->cl : 0;
	if (rq->minor >= 1)
		rq->keep_alive = !hs->conn_close;
	else
		rq->keep_alive = hs->conn_keep_alive && !hs->conn_close;
	return 0;
}

/*
 * Parse a complete head p[0..n) as delimited by head_scan() (so every line ends
 * in CRLF and the last line is empty). Fills rq (method, target, framing).
 * Returns 0, or the HTTP status to answer with and *why.
 */
static int head_parse(const char *p, size_t n, struct req *rq, const char **why)
{
	const char *end = p + n - 2; /* start of the final empty line */
	const char *eol = memchr(p, '\r', n);
	int r = reqline_parse(p, (size_t)(eol - p), rq, why);
	if (r)
		return r;
	struct hdr_seen hs = {0};
	for (const char *l = eol + 2; l < end; l = eol + 2) {
		eol = memchr(l, '\r', (size_t)(end - l) + 1);
		r = header_parse(l, (size_t)(eol - l), rq, &hs, why);
		if (r)
			return r;
	}
	return head_finish(rq, &hs, why);
}

/* ------------------------------------------------------------------------- */
/* Chunked body decoder                                                        */

typedef void (*ck_data_fn)(void *arg, const unsigned char *p, size_t n);

static int ck_size_byte(struct ck_state *k, unsigned char c, const char **why)
{
	int h = hexval(c);
	if (h >= 0) {
		if (k->ndigits >= 15) {
			*why = "chunk size too large";
			return -1;
		}
		k->size = k->size * 16 + (uint64_t)h;
		k->ndigits++;
		return 0;
	}
	if (!k->ndigits) {
		*why = "bad chunk size";
		return -1;
	}
	if (c == ';')
		k->st = CK_EXT;
	else if (c == ' ' || c == '\t')
		k->st = CK_BWS;
	else if (c == '\r')
		k->st = CK_SIZE_LF;
	else {
		*why = "bad chunk size";
		return -1;
	}
	return 0;
}

static int ck_line_byte(struct ck_state *k, unsigned char c, const char **why)
{
	switch (k->st) {
	case CK_BWS:
		if (c == ';')
			k->st = CK_EXT;
		else if (c != ' ' && c != '\t')
			break;
		return 0;
	case CK_EXT:
		if (c == '\r')
			k->st = CK_SIZE_LF;
		else if ((c < 0x20 && c != '\t') || c == 0x7f)
			break;
		return 0;
	case CK_SIZE_LF:
		if (c != '\n')
			break;
		k->st = k->size ? CK_DATA : CK_TR_START;
		k->line_len = 0;
		return 0;
	default:
		return ck_size_byte(k, c, why);
	}
	*why = "bad chunk-size line";
	return -1;
}

static int ck_frame_byte(struct ck_state *k, unsigned char c, const char **why)
{
	switch (k->st) {
	case CK_DATA_CR:
		k->st = CK_DATA_LF;
		if (c == '\r')
			return 0;
		*why = "missing CRLF after chunk data";
		return -1;
	case CK_DATA_LF:
		memset(k, 0, sizeof(*k)); /* back to CK_SIZE */
		if (c == '\n')
			return 0;
		*why = "missing CRLF after chunk data";
		return -1;
	case CK_TR_START:
		if (c == '\r') {
			k->st = CK_END_LF;
			return 0;
		}
		k->st = CK_TR_LINE;
		if (is_tchar(c))
			return 0;
		break;
	case CK_TR_LINE:
		if (c == '\r')
			k->st = CK_TR_LF;
		else if ((c < 0x20 && c != '\t') || c == 0x7f)
			break;
		return 0;
	case CK_TR_LF:
	case CK_END_LF:
		if (c != '\n')
			break;
		k->st = (k->st == CK_END_LF) ? CK_DONE : CK_TR_START;
		return 0;
	default:
		break;
	}
	*why = "bad chunked framing or trailer";
	return -1;
}

/* Advance the decoder over one byte that is not chunk payload. */
static int ck_step(struct ck_state *k, unsigned char c, const char **why)
{
	if (k->st <= CK_SIZE_LF) {
		if (++k->line_len > DB_CHUNK_LINE_MAX) {
			*why = "chunk-size line too long";
			return -1;
		}
		return ck_line_byte(k, c, why);
	}
	if (k->st >= CK_TR_START && ++k->trailer_len > DB_TRAILER_MAX) {
		*why = "trailer section too large";
		return -1;
	}
	return ck_frame_byte(k, c, why);
}

/*
 * Feed p[0..n) of a chunked body to the decoder. Payload bytes are passed to
 * fn(arg, ...). *used is set to the bytes consumed (on error: including the
 * offending byte); bytes after the body's end are not consumed. Returns 1
 * when the body is complete, 0 when more input is needed, -1 on a framing
 * error with *why set.
 */
static int ck_feed(struct ck_state *k, const unsigned char *p, size_t n, size_t *used,
		   ck_data_fn fn, void *arg, const char **why)
{
	size_t i = 0;
	while (i < n && k->st != CK_DONE) {
		if (k->st == CK_DATA) {
			size_t take = (n - i < k->size) ? n - i : (size_t)k->size;
			fn(arg, p + i, take);
			i += take;
			k->size -= take;
			if (!k->size)
				k->st = CK_DATA_CR;
			continue;
		}
		if (ck_step(k, p[i++], why) < 0) {
			*used = i;
			return -1;
		}
	}
	*used = i;
	return k->st == CK_DONE;
}

/* ------------------------------------------------------------------------- */
/* Query string: Cmd= and User=, plain or base64 (MS-ASHTTP 2.2.1.1.1)          */

struct qparam {
	const char *k, *v;
	size_t kn, vn;
};

/* Iterate k=v pairs of q[0..n); *pos is the cursor. Returns 1 per pair, 0 at the end. */
static int query_next(const char *q, size_t n, size_t *pos, struct qparam *out)
{
	while (*pos < n) {
		size_t s = *pos, e = s;
		while (e < n && q[e] != '&')
			e++;
		*pos = (e < n) ? e + 1 : e;
		if (e == s)
			continue;
		const char *eq = memchr(q + s, '=', e - s);
		out->k = q + s;
		out->kn = eq ? (size_t)(eq - (q + s)) : e - s;
		out->v = eq ? eq + 1 : q + e;
		out->vn = eq ? (size_t)(q + e - (eq + 1)) : 0;
		return 1;
	}
	return 0;
}

/* Percent-decode p[0..n) into out (NUL-terminated, truncated to outsz-1). */
static size_t pct_decode(const char *p, size_t n, char *out, size_t outsz)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < outsz; i++) {
		int hi, lo;
		if (p[i] == '%' && i + 2 < n && (hi = hexval((unsigned char)p[i + 1])) >= 0 &&
		    (lo = hexval((unsigned char)p[i + 2])) >= 0) {
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			out[o++] = p[i];
		}
	}
	if (outsz)
		out[o] = 0;
	return o;
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict standard base64 (length multiple of 4, padding only at the end). Returns length or -1. */
static long b64_decode(const char *in, size_t n, unsigned char *out, size_t outsz)
{
	size_t o = 0;
	if (n == 0 || n % 4)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int v[4], pad = 0;
		for (int j = 0; j < 4; j++) {
			v[j] = b64_val((unsigned char)in[i + j]);
			if (v[j] < 0 && in[i + j] == '=' && i + 4 == n && j >= 2) {
				v[j] = 0;
				pad++;
			} else if (v[j] < 0 || pad) {
				return -1;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		for (int j = 0; j < 3 - pad; j++) {
			if (o >= outsz)
				return -1;
			out[o++] = (unsigned char)(w >> (16 - 8 * j));
		}
	}
	return (long)o;
}

/* MS-ASHTTP base64 command codes 0..22; NULL for unassigned codes. */
static const char *const eas_b64_cmds[] = {
    "Sync",
    "SendMail",
    "SmartForward",
    "SmartReply",
    "GetAttachment",
    NULL,
    NULL,
    NULL,
    NULL,
    "FolderSync",
    "FolderCreate",
    "FolderDelete",
    "FolderUpdate",
    "MoveItems",
    "GetItemEstimate",
    "MeetingResponse",
    "Search",
    "Settings",
    "Ping",
    "ItemOperations",
    "Provision",
    "ResolveRecipients",
    "ValidateCert",
};

/*
 * Decode a base64 query value: version, command code, locale, device id,
 * policy key, device type, then {tag,len,value} parameters (tag 8 = User).
 * Sets *cmd (static name or NULL) and user. Returns 0, or -1 if q is not one.
 */
static int eas_b64_query(const char *q, size_t n, const char **cmd, char *user, size_t usz)
{
	char txt[1024];
	unsigned char b[768];
	size_t tn = pct_decode(q, n, txt, sizeof(txt));
	long bn = (n < sizeof(txt)) ? b64_decode(txt, tn, b, sizeof(b)) : -1;
	if (bn < 5)
		return -1;
	size_t len = (size_t)bn, i = 4;
	*cmd = (b[1] < sizeof(eas_b64_cmds) / sizeof(eas_b64_cmds[0])) ? eas_b64_cmds[b[1]] : NULL;
	for (int field = 0; field < 3 && i < len; field++) /* device id, policy key, type */
		i += 1u + b[i];
	while (i + 2 <= len) {
		unsigned tag = b[i], vl = b[i + 1];
		i += 2;
		if (i + vl > len)
			break;
		if (tag == 8)
			snprintf(user, usz, "%.*s", (int)vl, (const char *)b + i);
		i += vl;
	}
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Timers: a min-heap of connections keyed by deadline_ms                      */

static void tmr_swap(struct demo_srv *s, size_t a, size_t b)
{
	struct conn *t = s->heap[a];
	s->heap[a] = s->heap[b];
	s->heap[b] = t;
	s->heap[a]->heap_idx = (long)a;
	s->heap[b]->heap_idx = (long)b;
}

static void tmr_up(struct demo_srv *s, size_t i)
{
	while (i > 0 && s->heap[(i - 1) / 2]->deadline_ms > s->heap[i]->deadline_ms) {
		tmr_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void tmr_down(struct demo_srv *s, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < s->heap_len && s->heap[l]->deadline_ms < s->heap[m]->deadline_ms)
			m = l;
		if (l + 1 < s->heap_len && s->heap[l + 1]->deadline_ms < s->heap[m]->deadline_ms)
			m = l + 1;
		if (m == i)
			return;
		tmr_swap(s, i, m);
		i = m;
	}
}

static void tmr_del(struct demo_srv *s, struct conn *c)
{
	if (c->heap_idx < 0)
		return;
	size_t i = (size_t)c->heap_idx;
	c->heap_idx = -1;
	if (i != --s->heap_len) {
		s->heap[i] = s->heap[s->heap_len];
		s->heap[i]->heap_idx = (long)i;
		tmr_up(s, i);
		tmr_down(s, i);
	}
}

/* Arm c's single timer. Returns 0 or -ENOMEM. */
static int tmr_set(struct demo_srv *s, struct conn *c, uint64_t deadline)
{
	tmr_del(s, c);
	if (s->heap_len == s->heap_cap) {
		size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
		struct conn **h = realloc(s->heap, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		s->heap = h;
		s->heap_cap = cap;
	}
	c->deadline_ms = deadline;
	c->heap_idx = (long)s->heap_len;
	s->heap[s->heap_len++] = c;
	tmr_up(s, s->heap_len - 1);
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Recording: DIR/<seq>.req (wire bytes) and DIR/<seq>.meta                    */

static void rec_path(const struct demo_srv *s, uint64_t seq, const char *ext, int tmp, char *out,
		     size_t outsz)
{
	snprintf(out, outsz, "%s/%s" DB_SEQ_FMT ".%s%s", s->o.record_dir, tmp ? "." : "", seq, ext,
		 tmp ? ".tmp" : "");
}

static void rec_open(struct demo_srv *s, struct conn *c)
{
	char path[4096];
	if (!s->o.record_dir)
		return;
	rec_path(s, c->rq.seq, "req", 1, path, sizeof(path));
	/* 0600: the recorded bytes include the client's Authorization header. */
	c->rq.rec_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (c->rq.rec_fd < 0)
		log_warn("event=record_failed seq=" DB_SEQ_FMT " err=%s", c->rq.seq,
			 strerror(errno));
}

static void rec_abort(struct demo_srv *s, struct conn *c)
{
	char path[4096];
	if (c->rq.rec_fd < 0)
		return;
	close(c->rq.rec_fd);
	c->rq.rec_fd = -1;
	rec_path(s, c->rq.seq, "req", 1, path, sizeof(path));
	unlink(path);
}

static void rec_write(struct demo_srv *s, struct conn *c, const void *p, size_t n)
{
	c->rq.wire_len += n;
	if (c->rq.rec_fd < 0 || !n)
		return;
	if (write_all(c->rq.rec_fd, p, n)) {
		log_warn("event=record_failed seq=" DB_SEQ_FMT " err=%s", c->rq.seq,
			 strerror(errno));
		rec_abort(s, c);
	}
}

static void rec_meta(struct demo_srv *s, struct conn *c, char *buf, size_t sz)
{
	char sha[65];
	for (int i = 0; i < 32; i++)
		snprintf(sha + 2 * i, 3, "%02x", c->rq.sha[i]);
	snprintf(buf, sz,
		 "method=%s\ntarget=%s\nversion=HTTP/1.%d\nbody_len=%" PRIu64 "\nchunked=%d\n"
		 "conn=%" PRIu64 "\nconn_req=%" PRIu64 "\npeer=%s\nwire_len=%" PRIu64 "\n"
		 "body_sha256=%s\nstatus=%d\nbackend=%s\n%s%s%s",
		 c->rq.method, c->rq.target ? c->rq.target : "", c->rq.minor, c->rq.body_len,
		 c->rq.chunked, c->serial, c->nresp + 1, c->peer, c->rq.wire_len,
		 c->rq.error ? "" : sha, c->rs.status, s->o.name, c->rq.error ? "error=" : "",
		 c->rq.error ? c->rq.error : "", c->rq.error ? "\n" : "");
}

/* Publish the record: .req first, then .meta, so a .meta means both are complete. */
static void rec_finish(struct demo_srv *s, struct conn *c)
{
	char tmp[4096], dst[4096];
	if (c->rq.rec_fd < 0)
		return;
	int err = close(c->rq.rec_fd);
	c->rq.rec_fd = -1;
	rec_path(s, c->rq.seq, "req", 1, tmp, sizeof(tmp));
	rec_path(s, c->rq.seq, "req", 0, dst, sizeof(dst));
	if (err || rename(tmp, dst)) {
		log_warn("event=record_failed seq=" DB_SEQ_FMT " err=%s", c->rq.seq,
			 strerror(errno));
		unlink(tmp);
		return;
	}
	size_t tsz = (c->rq.target ? strlen(c->rq.target) : 0) + 1024;
	char *meta = malloc(tsz);
	rec_path(s, c->rq.seq, "meta", 0, dst, sizeof(dst));
	if (!meta)
		return;
	rec_meta(s, c, meta, tsz);
	err = write_file_atomic(dst, meta);
	if (err)
		log_warn("event=record_failed seq=" DB_SEQ_FMT " err=%s", c->rq.seq,
			 strerror(-err));
	free(meta);
}

/* ------------------------------------------------------------------------- */
/* Response planning                                                           */

static const char *status_reason(int st)
{
	static const struct {
		int st;
		const char *r;
	} t[] = {
	    {200, "OK"},
	    {201, "Created"},
	    {202, "Accepted"},
	    {204, "No Content"},
	    {301, "Moved Permanently"},
	    {302, "Found"},
	    {304, "Not Modified"},
	    {400, "Bad Request"},
	    {401, "Unauthorized"},
	    {403, "Forbidden"},
	    {404, "Not Found"},
	    {405, "Method Not Allowed"},
	    {408, "Request Timeout"},
	    {413, "Content Too Large"},
	    {417, "Expectation Failed"},
	    {429, "Too Many Requests"},
	    {431, "Request Header Fields Too Large"},
	    {449, "Retry after sending a PROVISION command"},
	    {451, "Redirect"},
	    {456, "Blocked"},
	    {457, "Expired Password"},
	    {500, "Internal Server Error"},
	    {501, "Not Implemented"},
	    {502, "Bad Gateway"},
	    {503, "Service Unavailable"},
	    {504, "Gateway Timeout"},
	    {505, "HTTP Version Not Supported"},
	    {507, "Insufficient Storage"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].st == st)
			return t[i].r;
	return "Status";
}

/* Minimal WBXML envelope per command: <Root><Status>1</Status></Root>. */
static const struct {
	const char *cmd;
	unsigned char page, root, status;
} eas_envelopes[] = {
    {"Sync", 0, 0x05, 0x0E},	  {"FolderSync", 7, 0x16, 0x0C}, {"Provision", 14, 0x05, 0x0B},
    {"Settings", 18, 0x05, 0x06}, {"Ping", 13, 0x05, 0x07},
};

static void resp_set_static(struct resp *rs, int status, const char *ctype, const void *body,
			    size_t len)
{
	rs->status = status;
	rs->ctype = ctype;
	rs->body = body;
	rs->len = len;
}

/* Fill the WBXML body for cmd (empty body for commands without an envelope). */
static void resp_eas_post(struct resp *rs, const char *cmd)
{
	static const unsigned char hdr[] = {0x03, 0x01, 0x6a, 0x00};
	resp_set_static(rs, 200, "application/vnd.ms-sync.wbxml", rs->small, 0);
	rs->is_eas = 1;
	rs->is_ping = cmd && !strcmp(cmd, "Ping");
	for (size_t i = 0; cmd && i < sizeof(eas_envelopes) / sizeof(eas_envelopes[0]); i++) {
		if (strcmp(cmd, eas_envelopes[i].cmd))
			continue;
		unsigned char *b = rs->small;
		memcpy(b, hdr, sizeof(hdr));
		const unsigned char rest[] = {0x00,
					      eas_envelopes[i].page,
					      (unsigned char)(eas_envelopes[i].root | 0x40),
					      (unsigned char)(eas_envelopes[i].status | 0x40),
					      0x03,
					      '1',
					      0x00,
					      0x01,
					      0x01};
		memcpy(b + sizeof(hdr), rest, sizeof(rest));
		rs->len = sizeof(hdr) + sizeof(rest);
	}
}

/* Split a request-target into path and query; absolute-form loses its authority. */
static void target_split(const char *t, const char **path, size_t *pn, const char **q, size_t *qn)
{
	size_t n = strlen(t);
	size_t skip = ci_prefix(t, n, "http://") ? 7 : ci_prefix(t, n, "https://") ? 8 : 0;
	if (skip) {
		t += skip;
		t += strcspn(t, "/?");
	}
	const char *qm = strchr(t, '?');
	*path = t;
	*pn = qm ? (size_t)(qm - t) : strlen(t);
	*q = qm ? qm + 1 : t + *pn;
	*qn = qm ? strlen(qm + 1) : 0;
}

static int eas_path_match(const struct demo_opts *o, const char *p, size_t n)
{
	size_t en = strlen(o->eas_path);
	return ci_prefix(p, n, o->eas_path) && (n == en || p[en] == '/');
}

/* Cmd and User from the query (plain text first, then the base64 form). */
static const char *query_cmd_user(const char *q, size_t qn, char *cmdbuf, size_t cbsz,
				  struct resp *rs)
{
	struct qparam qp;
	size_t pos = 0;
	const char *cmd = NULL;
	while (query_next(q, qn, &pos, &qp)) {
		if (ci_eq(qp.k, qp.kn, "Cmd")) {
			pct_decode(qp.v, qp.vn, cmdbuf, cbsz);
			cmd = cmdbuf;
		} else if (ci_eq(qp.k, qp.kn, "User")) {
			pct_decode(qp.v, qp.vn, rs->user, sizeof(rs->user));
		}
	}
	if (!cmd && qn) /* strict base64 never parses a k=v query */
		eas_b64_query(q, qn, &cmd, rs->user, sizeof(rs->user));
	for (char *u = rs->user; *u; u++) /* header-safe: printable ASCII only */
		if ((unsigned char)*u < 0x20 || (unsigned char)*u > 0x7e)
			*u = '?';
	return cmd;
}

/* Apply egtest_status / egtest_size / egtest_chunked. Returns 0 or -1 (bad value). */
static int resp_egtest(struct resp *rs, const char *q, size_t qn)
{
	struct qparam qp;
	size_t pos = 0;
	uint64_t v;
	while (query_next(q, qn, &pos, &qp)) {
		if (ci_eq(qp.k, qp.kn, "egtest_status")) {
			if (qp.vn != 3 || parse_u64(qp.v, qp.vn, &v) || v < 200 || v > 599)
				return -1;
			rs->status = (int)v;
		} else if (ci_eq(qp.k, qp.kn, "egtest_size")) {
			if (parse_u64(qp.v, qp.vn, &v) || v > DB_SIZE_MAX)
				return -1;
			resp_set_static(rs, rs->status, "application/octet-stream", NULL, v);
		} else if (ci_eq(qp.k, qp.kn, "egtest_chunked")) {
			rs->chunked = qp.vn == 1 && qp.v[0] == '1';
		}
	}
	return 0;
}

/* --auth: does the request carry one of the accounts' Basic credentials? */
static int auth_ok(const struct demo_opts *o, const struct req *rq)
{
	if (!o->nauth)
		return 1;
	if (strncasecmp(rq->authz, "Basic ", 6))
		return 0;
	const char *t = rq->authz + 6;
	while (*t == ' ')
		t++;
	for (int i = 0; i < o->nauth; i++)
		if (!strcmp(t, o->auth_b64[i]))
			return 1;
	return 0;
}

/* Decide the response to a complete, well-formed request. */
static void resp_plan(struct demo_srv *s, struct conn *c)
{
	static const char nf[] = "not found\n", ok[] = "ok", bad[] = "bad egtest parameter\n";
	struct resp *rs = &c->rs;
	const char *path, *q, *m = c->rq.method;
	size_t pn, qn;
	char cmdbuf[64];
	target_split(c->rq.target, &path, &pn, &q, &qn);
	const char *cmd = query_cmd_user(q, qn, cmdbuf, sizeof(cmdbuf), rs);
	int is_get = !strcmp(m, "GET") || !strcmp(m, "HEAD");

	resp_set_static(rs, 404, "text/plain", nf, sizeof(nf) - 1);
	rs->echo_sha = 1;
	if (is_get && pn == strlen(s->o.health_path) && !memcmp(path, s->o.health_path, pn)) {
		resp_set_static(rs, 200, "text/plain", ok, sizeof(ok) - 1);
	} else if (eas_path_match(&s->o, path, pn) && !auth_ok(&s->o, &c->rq)) {
		static const char unauth[] = "unauthorized\n";
		resp_set_static(rs, 401, "text/plain", unauth, sizeof(unauth) - 1);
	} else if (eas_path_match(&s->o, path, pn) && !strcmp(m, "OPTIONS")) {
		resp_set_static(rs, 200, NULL, NULL, 0);
		rs->body = rs->small;
		rs->is_options = 1;
	} else if (eas_path_match(&s->o, path, pn) && !strcmp(m, "POST")) {
		resp_eas_post(rs, cmd);
	}
	if (resp_egtest(rs, q, qn)) {
		resp_set_static(rs, 400, "text/plain", bad, sizeof(bad) - 1);
		rs->is_ping = 0;
	}
	rs->no_body = !strcmp(m, "HEAD") || rs->status == 204 || rs->status == 304;
	rs->chunked = rs->chunked && c->rq.minor >= 1 && !rs->no_body;
	rs->close_hdr = !c->rq.keep_alive;
	rs->close_quiet = !rs->close_hdr && s->o.close_after && c->nresp + 1 >= s->o.close_after;
}

/* A rejected request: answer status with the reason, then close. */
static void resp_plan_error(struct conn *c, int status, const char *why)
{
	struct resp *rs = &c->rs;
	c->rq.error = why;
	resp_set_static(rs, status, "text/plain", why, strlen(why));
	rs->close_hdr = 1;
}

/* ------------------------------------------------------------------------- */
/* Response output                                                             */

static int ob_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int ob_printf(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	size_t room = DB_OBUF_CAP - c->oend;
	va_start(ap, fmt);
	int n = vsnprintf((char *)c->obuf + c->oend, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room)
		return -1;
	c->oend += (size_t)n;
	return 0;
}

static int ob_alloc(struct conn *c)
{
	if (!c->obuf) {
		c->obuf = malloc(DB_OBUF_CAP);
		c->ostart = c->oend = 0;
	}
	return c->obuf ? 0 : -1;
}

static void ob_compact(struct conn *c)
{
	if (c->ostart == 0)
		return;
	memmove(c->obuf, c->obuf + c->ostart, c->oend - c->ostart);
	c->oend -= c->ostart;
	c->ostart = 0;
}

/* Headers that depend on the kind of response (Exchange-like set for EAS). */
static int resp_head_extra(struct demo_srv *s, struct conn *c)
{
	const struct resp *rs = &c->rs;
	int r = 0;
	if (rs->is_options)
		r |= ob_printf(c,
			       "Allow: OPTIONS,POST\r\nMS-Server-ActiveSync: %s\r\n"
			       "MS-ASProtocolVersions: %s\r\nMS-ASProtocolCommands: %s\r\n"
			       "Public: OPTIONS,POST\r\n",
			       eas_server_version, eas_versions, eas_commands);
	if (rs->is_eas)
		r |= ob_printf(c, "MS-Server-ActiveSync: %s\r\n", eas_server_version);
	if (rs->is_options || rs->is_eas)
		r |= ob_printf(c, "Cache-Control: private\r\n");
	if (rs->status == 401)
		r |= ob_printf(c, "WWW-Authenticate: Basic realm=\"%s\"\r\n", s->o.name);
	if (rs->echo_sha) {
		char sha[65];
		for (int i = 0; i < 32; i++)
			snprintf(sha + 2 * i, 3, "%02x", c->rq.sha[i]);
		r |= ob_printf(c, "X-Echo-Body-SHA256: %s\r\n", sha);
	}
	if (rs->echo_sha && rs->user[0])
		r |= ob_printf(c, "X-Echo-User: %s\r\n", rs->user);
	return r;
}

/* Put the status line and headers into obuf (after any pending 100 Continue). */
static int resp_head(struct demo_srv *s, struct conn *c)
{
	const struct resp *rs = &c->rs;
	char date[64];
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	ob_compact(c);
	int r = ob_printf(
	    c, "HTTP/1.1 %d %s\r\nDate: %s\r\nX-Backend: %s\r\nX-Request-Seq: " DB_SEQ_FMT "\r\n",
	    rs->status, status_reason(rs->status), date, s->o.name, c->rq.seq);
	r |= resp_head_extra(s, c);
	if (rs->ctype)
		r |= ob_printf(c, "Content-Type: %s\r\n", rs->ctype);
	if (rs->chunked)
		r |= ob_printf(c, "Transfer-Encoding: chunked\r\n");
	else if (rs->status != 204)
		r |= ob_printf(c, "Content-Length: %" PRIu64 "\r\n", rs->len);
	if (rs->close_hdr)
		r |= ob_printf(c, "Connection: close\r\n");
	else if (c->rq.minor == 0)
		r |= ob_printf(c, "Connection: keep-alive\r\n");
	return r | ob_printf(c, "\r\n");
}

/*
 * The egtest_size body: 16-byte blocks, each the block's byte offset as 15
 * lowercase hex digits and a newline ("000000000000010\n" is bytes 16..31),
 * truncated to the requested size. Any lost, duplicated or moved block shows.
 */
static void pattern_fill(uint64_t off, unsigned char *dst, size_t n)
{
	char blk[32];
	while (n) {
		size_t in = (size_t)(off % 16);
		snprintf(blk, sizeof(blk), "%015" PRIx64 "\n", off - in);
		size_t k = (16 - in < n) ? 16 - in : n;
		memcpy(dst, blk + in, k);
		dst += k;
		off += k;
		n -= k;
	}
}

/* Response chunk sizes cycle through these, to exercise the peer's decoder. */
static const uint64_t resp_chunk_sizes[] = {1, 2, 7, 100, 4096, 3, 16384, 11, 65536, 999};

/* Generate more of the response body (with chunked framing) into obuf. */
static void resp_fill(struct conn *c)
{
	struct resp *rs = &c->rs;
	ob_compact(c);
	for (;;) {
		size_t room = DB_OBUF_CAP - c->oend;
		if (rs->phase == PH_DONE)
			return;
		if (rs->phase == PH_DATA && rs->chunk_left == 0) {
			rs->phase = rs->chunked ? PH_CRLF : PH_DONE;
		} else if (rs->phase == PH_DATA) {
			if (!room)
				return;
			size_t k = (rs->chunk_left < room) ? (size_t)rs->chunk_left : room;
			if (rs->body)
				memcpy(c->obuf + c->oend, rs->body + rs->off, k);
			else
				pattern_fill(rs->off, c->obuf + c->oend, k);
			c->oend += k;
			rs->off += k;
			rs->chunk_left -= k;
		} else if (rs->phase == PH_CRLF) {
			if (ob_printf(c, "\r\n"))
				return;
			rs->phase = PH_CHUNK_HDR;
		} else {
			if (room < 24)
				return;
			uint64_t left = rs->len - rs->off;
			uint64_t sz =
			    resp_chunk_sizes[rs->chunk_idx++ % (sizeof(resp_chunk_sizes) /
								sizeof(resp_chunk_sizes[0]))];
			if (sz > left)
				sz = left;
			ob_printf(c, "%" PRIx64 "\r\n%s", sz, sz ? "" : "\r\n");
			rs->chunk_left = sz;
			rs->phase = sz ? PH_DATA : PH_DONE;
		}
	}
}

/* ------------------------------------------------------------------------- */
/* Connections                                                                 */

static void conn_close(struct demo_srv *s, struct conn *c)
{
	rec_abort(s, c);
	tmr_del(s, c);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);
	EVP_MD_CTX_free(c->md);
	free(c->rq.target);
	free(c->rbuf);
	free(c->obuf);
	free(c);
}

static void conn_update_events(struct demo_srv *s, struct conn *c)
{
	uint32_t ev = 0;
	int rbuf_room = !c->rbuf || c->rend < DB_RBUF_CAP || c->rstart > 0;
	if (c->oend > c->ostart || c->state == CS_SEND)
		ev |= EPOLLOUT;
	if (c->state == CS_LINGER || (!c->peer_eof && rbuf_room))
		ev |= EPOLLIN;
	if (ev == c->evmask)
		return;
	struct epoll_event e = {.events = ev, .data.ptr = &c->src};
	if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->evmask = ev;
}

static void req_reset(struct conn *c)
{
	free(c->rq.target);
	memset(&c->rq, 0, sizeof(c->rq));
	memset(&c->rs, 0, sizeof(c->rs));
	c->rq.rec_fd = -1;
	c->scan = 0;
}

static void body_data(void *arg, const unsigned char *p, size_t n)
{
	struct conn *c = arg;
	c->rq.body_len += n;
	EVP_DigestUpdate(c->md, p, n);
}

static void log_request(const struct conn *c, uint64_t delay)
{
	char tq[600];
	char resp_len[24] = "chunked";
	if (!c->rs.chunked)
		snprintf(resp_len, sizeof(resp_len), "%" PRIu64, c->rs.no_body ? 0 : c->rs.len);
	log_info("event=request seq=" DB_SEQ_FMT " conn=%" PRIu64 " peer=%s method=%s target=%s "
		 "status=%d body_len=%" PRIu64 " chunked=%d resp_len=%s delay_ms=%" PRIu64
		 "%s%s%s%s",
		 c->rq.seq, c->serial, c->peer, c->rq.method[0] ? c->rq.method : "-",
		 log_quote(tq, sizeof(tq), c->rq.target, (size_t)-1), c->rs.status, c->rq.body_len,
		 c->rq.chunked, resp_len, delay, c->rq.error ? " error=\"" : "",
		 c->rq.error ? c->rq.error : "", c->rq.error ? "\"" : "",
		 c->rs.close_quiet ? " close_after=1" : "");
}

/* Begin sending the planned response (state CS_SEND). Returns 0 or -1. */
static int resp_start(struct demo_srv *s, struct conn *c)
{
	struct resp *rs = &c->rs;
	if (ob_alloc(c) || resp_head(s, c))
		return -1;
	rs->phase = rs->no_body ? PH_DONE : rs->chunked ? PH_CHUNK_HDR : PH_DATA;
	rs->chunk_left = rs->chunked ? 0 : rs->len;
	c->state = CS_SEND;
	return 0;
}

/* The request is fully received (or rejected): record, log, then answer now or later. */
static enum run_res req_complete(struct demo_srv *s, struct conn *c)
{
	unsigned int shalen = 0;
	if (!c->rq.error)
		EVP_DigestFinal_ex(c->md, c->rq.sha, &shalen);
	if (!c->rq.error)
		resp_plan(s, c);
	rec_finish(s, c);
	uint64_t delay = s->o.delay_ms + (c->rs.is_ping ? s->o.hold_ping_ms : 0);
	log_request(c, delay);
	if (delay) {
		c->state = CS_WAIT;
		if (tmr_set(s, c, now_ms() + delay) == 0)
			return RUN_BLOCKED;
	}
	if (resp_start(s, c)) {
		conn_close(s, c);
		return RUN_CLOSED;
	}
	return RUN_AGAIN;
}

/* Reject the current request with status/why; the connection closes after. */
static enum run_res req_fail(struct demo_srv *s, struct conn *c, int status, const char *why)
{
	resp_plan_error(c, status, why);
	return req_complete(s, c);
}

static void req_begin(struct demo_srv *s, struct conn *c)
{
	c->rq.seq = ++s->next_seq;
	rec_open(s, c);
}

/* Queue "100 Continue" when the client waits for it and no body byte came yet. */
static void req_maybe_continue(struct conn *c)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	if (!c->rq.expect_continue || c->rq.minor < 1 || c->rend > c->rstart)
		return;
	if (!c->rq.chunked && c->rq.body_left == 0)
		return;
	if (ob_alloc(c) == 0) {
		memcpy(c->obuf + c->oend, cont, sizeof(cont) - 1);
		c->oend += sizeof(cont) - 1;
	}
}

/* CS_HEAD: find and parse a request head in rbuf. */
static enum run_res conn_parse_head(struct demo_srv *s, struct conn *c)
{
	const char *why = NULL;
	while (c->rend - c->rstart >= 2 && !memcmp(c->rbuf + c->rstart, "\r\n", 2)) {
		c->rstart += 2; /* RFC 9112 2.2: ignore empty lines before a request */
		c->scan = 0;
	}
	size_t avail = c->rend - c->rstart;
	long hl = head_scan(c->rbuf + c->rstart, avail, &c->scan, &why);
	if (hl == 0 && avail >= DB_RBUF_CAP) {
		hl = -1;
		why = "request head too large";
	}
	if (hl == 0) {
		if (!c->peer_eof)
			return RUN_BLOCKED;
		if (avail)
			log_info("event=incomplete_head conn=%" PRIu64 " bytes=%zu", c->serial,
				 avail);
		conn_close(s, c);
		return RUN_CLOSED;
	}
	req_begin(s, c);
	size_t hlen = (hl > 0) ? (size_t)hl : avail;
	rec_write(s, c, c->rbuf + c->rstart, hlen);
	if (hl < 0)
		return req_fail(s, c, avail >= DB_RBUF_CAP ? 431 : 400, why);
	int st = head_parse(c->rbuf + c->rstart, hlen, &c->rq, &why);
	c->rstart += hlen;
	if (st)
		return req_fail(s, c, st, why);
	if (!c->md)
		c->md = EVP_MD_CTX_new();
	if (!c->md || !EVP_DigestInit_ex(c->md, EVP_sha256(), NULL))
		return req_fail(s, c, 500, "digest unavailable");
	req_maybe_continue(c);
	c->state = CS_BODY;
	return RUN_AGAIN;
}

/* CS_BODY: stream body bytes from rbuf to the hash and the record. */
static enum run_res conn_parse_body(struct demo_srv *s, struct conn *c)
{
	const unsigned char *p = (const unsigned char *)c->rbuf + c->rstart;
	size_t n = c->rend - c->rstart, used;
	const char *why = NULL;
	int r;
	if (!c->rq.chunked) {
		used = (n < c->rq.body_left) ? n : (size_t)c->rq.body_left;
		body_data(c, p, used);
		c->rq.body_left -= used;
		r = c->rq.body_left == 0;
	} else {
		r = ck_feed(&c->rq.ck, p, n, &used, body_data, c, &why);
	}
	rec_write(s, c, p, used);
	c->rstart += used;
	if (r < 0)
		return req_fail(s, c, 400, why);
	if (r > 0)
		return req_complete(s, c);
	if (!c->peer_eof)
		return RUN_BLOCKED;
	log_info("event=request_aborted seq=" DB_SEQ_FMT " conn=%" PRIu64 " wire_len=%" PRIu64,
		 c->rq.seq, c->serial, c->rq.wire_len);
	conn_close(s, c);
	return RUN_CLOSED;
}

/* Stop writing, drain whatever the peer still sends for a while, then close. */
static enum run_res conn_linger(struct demo_srv *s, struct conn *c)
{
	size_t pending = c->rbuf ? c->rend - c->rstart : 0;
	if (pending)
		log_info("event=discard_pipelined conn=%" PRIu64 " bytes=%zu", c->serial, pending);
	shutdown(c->fd, SHUT_WR);
	free(c->rbuf);
	c->rbuf = NULL;
	c->rstart = c->rend = 0;
	c->state = CS_LINGER;
	if (c->peer_eof || tmr_set(s, c, now_ms() + DB_LINGER_MS)) {
		conn_close(s, c);
		return RUN_CLOSED;
	}
	return RUN_BLOCKED;
}

/* CS_SEND: write the response; when done, go back to CS_HEAD or close. */
static enum run_res conn_send(struct demo_srv *s, struct conn *c)
{
	size_t budget = DB_SEND_BUDGET;
	for (;;) {
		if (!budget)
			return RUN_BLOCKED; /* EPOLLOUT stays armed: we resume next round */
		if (c->rs.phase != PH_DONE)
			resp_fill(c);
		if (c->ostart == c->oend && c->rs.phase == PH_DONE)
			break;
		ssize_t w = send(c->fd, c->obuf + c->ostart, c->oend - c->ostart, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return RUN_BLOCKED;
		if (w < 0) {
			conn_close(s, c);
			return RUN_CLOSED;
		}
		c->ostart += (size_t)w;
		budget = ((size_t)w < budget) ? budget - (size_t)w : 0;
	}
	int close_now = c->rs.close_hdr || c->rs.close_quiet;
	c->nresp++;
	free(c->obuf);
	c->obuf = NULL;
	c->ostart = c->oend = 0;
	req_reset(c);
	if (close_now)
		return conn_linger(s, c);
	c->state = CS_HEAD;
	return RUN_AGAIN;
}

/* Flush a pending interim response (100 Continue) outside CS_SEND. */
static enum run_res conn_flush_interim(struct demo_srv *s, struct conn *c)
{
	while (c->oend > c->ostart) {
		ssize_t w = send(c->fd, c->obuf + c->ostart, c->oend - c->ostart, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return RUN_BLOCKED;
		if (w < 0) {
			conn_close(s, c);
			return RUN_CLOSED;
		}
		c->ostart += (size_t)w;
	}
	return RUN_BLOCKED;
}

/* Drive a connection as far as it can go without blocking. */
static void conn_run(struct demo_srv *s, struct conn *c)
{
	enum run_res r = RUN_AGAIN;
	while (r == RUN_AGAIN) {
		if (c->state == CS_HEAD && (!c->rbuf || c->rstart == c->rend) && !c->peer_eof) {
			free(c->rbuf); /* idle: keep only the struct */
			c->rbuf = NULL;
			c->rstart = c->rend = 0;
			r = RUN_BLOCKED;
		} else if (c->state == CS_HEAD) {
			r = c->rbuf ? conn_parse_head(s, c) : (conn_close(s, c), RUN_CLOSED);
		} else if (c->state == CS_BODY) {
			r = conn_parse_body(s, c);
		} else if (c->state == CS_SEND) {
			r = conn_send(s, c);
		} else {
			r = RUN_BLOCKED;
		}
	}
	if (r == RUN_CLOSED)
		return;
	if (c->state != CS_SEND && c->state != CS_LINGER && c->oend > c->ostart &&
	    conn_flush_interim(s, c) == RUN_CLOSED)
		return;
	conn_update_events(s, c);
}

/* Read what the socket has. Returns -1 when the connection must be closed. */
static int conn_read(struct conn *c)
{
	if (c->state == CS_LINGER) {
		char sink[16384]; /* one read per event: a fast sender cannot starve others */
		ssize_t r = read(c->fd, sink, sizeof(sink));
		return (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) ? -1 : 0;
	}
	if (!c->rbuf && !(c->rbuf = malloc(DB_RBUF_CAP)))
		return -1;
	if (c->rstart > 0 && (c->rstart == c->rend || c->rend == DB_RBUF_CAP)) {
		memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
		c->rend -= c->rstart;
		c->rstart = 0;
	}
	if (c->rend == DB_RBUF_CAP || c->peer_eof)
		return 0;
	ssize_t r = read(c->fd, c->rbuf + c->rend, DB_RBUF_CAP - c->rend);
	if (r > 0)
		c->rend += (size_t)r;
	else if (r == 0)
		c->peer_eof = 1;
	else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return -1;
	return 0;
}

static void conn_event(struct demo_srv *s, struct conn *c, uint32_t ev)
{
	/* HUP: both directions are shut, nothing can be answered any more. */
	if ((ev & (EPOLLHUP | EPOLLERR)) || ((ev & EPOLLIN) && conn_read(c) < 0)) {
		conn_close(s, c);
		return;
	}
	conn_run(s, c);
}

static void conn_timer(struct demo_srv *s, struct conn *c)
{
	if (c->state == CS_LINGER) {
		conn_close(s, c);
		return;
	}
	if (c->state == CS_WAIT && resp_start(s, c)) {
		conn_close(s, c);
		return;
	}
	conn_run(s, c);
}

static void conn_new(struct demo_srv *s, int fd, const struct sockaddr_storage *ss)
{
	struct conn *c = calloc(1, sizeof(*c));
	int one = 1;
	if (!c) {
		close(fd);
		return;
	}
	c->src.kind = EV_CONN;
	c->fd = fd;
	c->serial = ++s->next_conn;
	c->heap_idx = -1;
	c->rq.rec_fd = -1;
	c->evmask = EPOLLIN;
	fmt_addr(ss, c->peer, sizeof(c->peer));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = &c->src};
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &e)) {
		close(fd);
		free(c);
		return;
	}
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
}

/* ------------------------------------------------------------------------- */
/* Server: listener, signals, loop                                             */

static void srv_listen_ctl(struct demo_srv *s, int on)
{
	struct epoll_event e = {.events = on ? EPOLLIN : 0, .data.ptr = &s->lsrc};
	epoll_ctl(s->epfd, EPOLL_CTL_MOD, s->lfd, &e);
}

static void srv_accept(struct demo_srv *s)
{
	for (int i = 0; i < 256; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			conn_new(s, fd, &ss);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* Level-triggered: without a pause the loop would spin. */
			log_warn("event=accept_paused err=%s", strerror(errno));
			srv_listen_ctl(s, 0);
			s->accept_resume_ms = now_ms() + DB_ACCEPT_PAUSE_MS;
		}
		return;
	}
}

static int srv_timeout(const struct demo_srv *s)
{
	uint64_t next = UINT64_MAX, now = now_ms();
	if (s->heap_len)
		next = s->heap[0]->deadline_ms;
	if (s->accept_resume_ms && s->accept_resume_ms < next)
		next = s->accept_resume_ms;
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (next - now > 60000 ? 60000 : (int)(next - now));
}

static void srv_timers(struct demo_srv *s)
{
	uint64_t now = now_ms();
	if (s->accept_resume_ms && s->accept_resume_ms <= now) {
		s->accept_resume_ms = 0;
		srv_listen_ctl(s, 1);
	}
	while (s->heap_len && s->heap[0]->deadline_ms <= now) {
		struct conn *c = s->heap[0];
		tmr_del(s, c);
		conn_timer(s, c);
	}
}

static void srv_signal(struct demo_srv *s)
{
	struct signalfd_siginfo si;
	if (read(s->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		log_info("event=signal sig=%s", strsignal((int)si.ssi_signo));
	s->stop = 1;
}

static void srv_loop(struct demo_srv *s)
{
	struct epoll_event evs[256];
	while (!s->stop) {
		int n = epoll_wait(s->epfd, evs, 256, srv_timeout(s));
		if (n < 0 && errno != EINTR) {
			log_err("event=epoll_failed err=%s", strerror(errno));
			return;
		}
		for (int i = 0; i < n; i++) {
			struct ev_src *src = evs[i].data.ptr;
			if (src->kind == EV_LISTEN)
				srv_accept(s);
			else if (src->kind == EV_SIGNAL)
				srv_signal(s);
			else
				conn_event(s, (struct conn *)src, evs[i].events);
		}
		srv_timers(s);
	}
}

/* Raise the soft fd limit to the hard one: 10k idle connections need it. */
static void srv_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			log_warn("event=rlimit_nofile err=%s", strerror(errno));
	}
}

static int srv_open_listener(struct demo_srv *s)
{
	int one = 1;
	int fd = socket(s->o.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s->o.addr.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&s->o.addr, s->o.addrlen) || listen(fd, SOMAXCONN)) {
		int err = -errno;
		close(fd);
		return err;
	}
	s->lfd = fd;
	return 0;
}

/* Port file and pid file are written once listening: their presence means "ready". */
static void srv_announce(struct demo_srv *s)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char addr[80], txt[32];
	getsockname(s->lfd, (struct sockaddr *)&ss, &sl);
	fmt_addr(&ss, addr, sizeof(addr));
	unsigned port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						       : ((struct sockaddr_in *)&ss)->sin_port);
	snprintf(txt, sizeof(txt), "%u\n", port);
	if (s->o.portfile && write_file_atomic(s->o.portfile, txt))
		fatal("event=portfile_failed path=%s err=%s", s->o.portfile, strerror(errno));
	snprintf(txt, sizeof(txt), "%d\n", (int)getpid());
	if (s->o.pidfile && write_file_atomic(s->o.pidfile, txt))
		fatal("event=pidfile_failed path=%s err=%s", s->o.pidfile, strerror(errno));
	log_info("event=listening addr=%s name=%s eas_path=%s health=%s record=%s", addr, s->o.name,
		 s->o.eas_path, s->o.health_path, s->o.record_dir ? s->o.record_dir : "-");
}

static void srv_setup(struct demo_srv *s)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	/* A shell's "cmd &" starts us with SIGINT ignored; we want it delivered. */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	srv_raise_nofile();
	if (s->o.record_dir && mkdir(s->o.record_dir, 0700) && errno != EEXIST)
		fatal("event=record_dir_failed path=%s err=%s", s->o.record_dir, strerror(errno));
	int err = srv_open_listener(s);
	if (err)
		fatal("event=listen_failed addr=%s err=%s", s->o.listen, strerror(-err));
	s->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->sfd < 0 || s->epfd < 0)
		fatal("event=setup_failed err=%s", strerror(errno));
	s->lsrc.kind = EV_LISTEN;
	s->ssrc.kind = EV_SIGNAL;
	struct epoll_event el = {.events = EPOLLIN, .data.ptr = &s->lsrc};
	struct epoll_event es = {.events = EPOLLIN, .data.ptr = &s->ssrc};
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &el) ||
	    epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sfd, &es))
		fatal("event=setup_failed err=%s", strerror(errno));
	srv_announce(s);
}

static void srv_teardown(struct demo_srv *s)
{
	while (s->conns)
		conn_close(s, s->conns);
	free(s->heap);
	close(s->lfd);
	close(s->sfd);
	close(s->epfd);
	if (s->o.pidfile)
		unlink(s->o.pidfile);
	if (s->o.portfile)
		unlink(s->o.portfile);
	log_info("event=stopped requests=%" PRIu64 " connections=%" PRIu64, s->next_seq,
		 s->next_conn);
}

/* ------------------------------------------------------------------------- */
/* Options                                                                     */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: eas-demo-backend [options]\n"
	    "A demo Exchange ActiveSync backend and test peer (HTTP/1.1, no TLS).\n"
	    "\n"
	    "  --listen ADDR:PORT   IPv4 or [IPv6]:port to listen on (default 127.0.0.1:8081;\n"
	    "                       port 0 picks a free port, see --port-file)\n"
	    "  --name NAME          backend name sent as X-Backend (default eas-demo)\n"
	    "  --record DIR         record every request as DIR/<seq>.req + DIR/<seq>.meta\n"
	    "  --close-after N      close each connection after its N-th response, WITHOUT\n"
	    "                       a Connection: close header (as SOGo does)\n"
	    "  --delay-ms MS        delay every response by MS\n"
	    "  --hold-ping-ms MS    hold Cmd=Ping responses MS longer (long poll)\n"
	    "  --prefix /P          EAS path is /P/Microsoft-Server-ActiveSync (e.g. /SOGo)\n"
	    "  --health-path /H     GET /H answers 200 \"ok\" (default /health)\n"
	    "  --pidfile F          write the pid to F once listening; removed on exit\n"
	    "  --port-file F        write the bound port to F once listening; removed on exit\n"
	    "  --quiet              no per-request log lines (warnings still go to stderr)\n"
	    "  --auth USER:PASSWORD accept only these Basic credentials on the EAS path\n"
	    "                       (repeatable); anything else gets 401, as Exchange answers\n"
	    "                       a wrong password. Default: no check (any or none)\n"
	    "  --help               this text\n"
	    "\n"
	    "Answers (every response has X-Backend, X-Request-Seq and Content-Length or\n"
	    "chunked framing):\n"
	    "  OPTIONS <eas path>   200, Exchange-like MS-ASProtocolVersions/-Commands headers\n"
	    "  POST <eas path>      200 application/vnd.ms-sync.wbxml; a <Cmd><Status>1</Status>\n"
	    "                       envelope for Sync, FolderSync, Provision, Settings, Ping,\n"
	    "                       an empty body for other commands\n"
	    "  GET <health path>    200 \"ok\"\n"
	    "  anything else        404; malformed requests 400 (or 431/501/505) + close\n"
	    "  Paths below the EAS path (/default.eas) match too. Responses other than\n"
	    "  rejections carry X-Echo-Body-SHA256 (SHA-256 of the de-chunked request body)\n"
	    "  and X-Echo-User (the percent-decoded User= parameter, or base64 query tag 8).\n"
	    "\n"
	    "Test hooks in the query string (any path):\n"
	    "  egtest_status=NNN    answer with status NNN (200..599)\n"
	    "  egtest_size=N        body of N bytes: 16-byte blocks, each its own offset in\n"
	    "                       15 hex digits and a newline; generated, never held\n"
	    "  egtest_chunked=1     send the body chunked, with varying chunk sizes\n"
	    "\n"
	    "Recording: <seq> is a zero-padded global counter (also X-Request-Seq).\n"
	    "  <seq>.req holds the request EXACTLY as received (head + body, chunked framing\n"
	    "  included). WARNING: that includes the Authorization header, i.e. the client's\n"
	    "  credentials; files are created mode 0600. Use test accounts only.\n"
	    "  <seq>.meta has method= target= version= body_len= (de-chunked) chunked=0|1\n"
	    "  conn= conn_req= peer= wire_len= body_sha256= status= backend= [error=].\n"
	    "  Both are written to a dot-file and renamed; .meta appears after .req.\n"
	    "  Requests whose body never completed are not recorded.\n"
	    "SIGTERM/SIGINT: exit 0.\n");
}

static int opt_addr(const char *a, struct demo_opts *o)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(a, ':');
	uint64_t port;
	if (!colon || parse_u64(colon + 1, strlen(colon + 1), &port) || port > 65535)
		return -1;
	size_t hn = (size_t)(colon - a);
	memset(&o->addr, 0, sizeof(o->addr));
	if (a[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&o->addr;
		if (hn < 3 || a[hn - 1] != ']' || hn - 2 >= sizeof(host))
			return -1;
		snprintf(host, sizeof(host), "%.*s", (int)(hn - 2), a + 1);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		o->addrlen = sizeof(*s6);
		return inet_pton(AF_INET6, host, &s6->sin6_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)&o->addr;
	if (hn == 0 || hn >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%.*s", (int)hn, a);
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	o->addrlen = sizeof(*s4);
	return inet_pton(AF_INET, host, &s4->sin_addr) == 1 ? 0 : -1;
}

static int opt_name_ok(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > DB_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!(is_tchar((unsigned char)n[i]) && n[i] != '\'' && n[i] != '`'))
			return 0;
	return 1;
}

static int opt_path_ok(const char *p, int allow_empty)
{
	if (!*p)
		return allow_empty;
	if (p[0] != '/' || strlen(p) > 200)
		return 0;
	for (; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '?')
			return 0;
	return 1;
}

static int opt_num(const char *v, uint64_t *out)
{
	return parse_u64(v, strlen(v), out);
}

enum {
	OPT_LISTEN = 256,
	OPT_NAME,
	OPT_RECORD,
	OPT_CLOSE_AFTER,
	OPT_DELAY,
	OPT_HOLD_PING,
	OPT_PREFIX,
	OPT_HEALTH,
	OPT_PIDFILE,
	OPT_PORTFILE,
	OPT_QUIET,
	OPT_AUTH,
	OPT_HELP,
};

/* --auth USER:PASSWORD -> the base64 a Basic Authorization header carries. */
static int opt_auth(const char *v, struct demo_opts *o)
{
	size_t n = strlen(v);
	if (!strchr(v, ':') || n > 300 || o->nauth >= DB_AUTH_MAX)
		return -1;
	char *b = malloc(4 * ((n + 2) / 3) + 1);
	if (!b)
		return -1;
	EVP_EncodeBlock((unsigned char *)b, (const unsigned char *)v, (int)n);
	o->auth_b64[o->nauth++] = b;
	return 0;
}

static int opt_one(int opt, const char *v, struct demo_opts *o, const char **prefix)
{
	switch (opt) {
	case OPT_LISTEN:
		o->listen = v;
		return opt_addr(v, o);
	case OPT_NAME:
		o->name = v;
		return opt_name_ok(v) ? 0 : -1;
	case OPT_RECORD:
		o->record_dir = v;
		return *v ? 0 : -1;
	case OPT_CLOSE_AFTER:
		return opt_num(v, &o->close_after);
	case OPT_DELAY:
		return opt_num(v, &o->delay_ms);
	case OPT_HOLD_PING:
		return opt_num(v, &o->hold_ping_ms);
	case OPT_PREFIX:
		*prefix = v;
		if (*v && v[strlen(v) - 1] == '/')
			return -1; /* "/SOGo/" would make "//Microsoft-Server-ActiveSync" */
		return opt_path_ok(v, 1) ? 0 : -1;
	case OPT_HEALTH:
		o->health_path = v;
		return opt_path_ok(v, 0) ? 0 : -1;
	case OPT_PIDFILE:
		o->pidfile = v;
		return 0;
	case OPT_PORTFILE:
		o->portfile = v;
		return 0;
	case OPT_QUIET:
		o->quiet = 1;
		return 0;
	case OPT_AUTH:
		return opt_auth(v, o);
	default:
		return -1;
	}
}

/* Parse argv into o. Returns 0, 1 for --help, or -1 after printing the error. */
static int opts_parse(int argc, char **argv, struct demo_opts *o)
{
	static const struct option lo[] = {
	    {"listen", required_argument, NULL, OPT_LISTEN},
	    {"name", required_argument, NULL, OPT_NAME},
	    {"record", required_argument, NULL, OPT_RECORD},
	    {"close-after", required_argument, NULL, OPT_CLOSE_AFTER},
	    {"delay-ms", required_argument, NULL, OPT_DELAY},
	    {"hold-ping-ms", required_argument, NULL, OPT_HOLD_PING},
	    {"prefix", required_argument, NULL, OPT_PREFIX},
	    {"health-path", required_argument, NULL, OPT_HEALTH},
	    {"pidfile", required_argument, NULL, OPT_PIDFILE},
	    {"port-file", required_argument, NULL, OPT_PORTFILE},
	    {"quiet", no_argument, NULL, OPT_QUIET},
	    {"auth", required_argument, NULL, OPT_AUTH},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	const char *prefix = "";
	int opt;
	o->name = "eas-demo";
	o->health_path = "/health";
	o->listen = "127.0.0.1:8081";
	opt_addr(o->listen, o);
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (opt == OPT_HELP) {
			usage(stdout);
			return 1;
		}
		if (opt_one(opt, optarg, o, &prefix)) {
			if (opt != '?')
				fprintf(stderr, "eas-demo-backend: invalid value for --%s: '%s'\n",
					lo[opt - OPT_LISTEN].name, optarg);
			fprintf(stderr, "try 'eas-demo-backend --help'\n");
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "eas-demo-backend: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	snprintf(o->eas_path, sizeof(o->eas_path), "%s%s", prefix, eas_path_tail);
	return 0;
}

#ifndef DEMO_BACKEND_NO_MAIN
int main(int argc, char **argv)
{
	struct demo_srv s = {.lfd = -1, .sfd = -1, .epfd = -1};
	int r = opts_parse(argc, argv, &s.o);
	if (r)
		return r > 0 ? 0 : 2;
	log_set_proc(s.o.name);
	if (s.o.quiet)
		log_set_level(LOG_WARN);
	srv_setup(&s);
	srv_loop(&s);
	srv_teardown(&s);
	for (int i = 0; i < s.o.nauth; i++)
		free(s.o.auth_b64[i]);
	return 0;
}
#endif
