/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * h1.h - strict, zero-copy HTTP/1.1 message head parser and chunked body
 * scanner (RFC 9110 / RFC 9112).
 *
 * Every request head from a phone and every response head from a backend goes
 * through here before a single byte is forwarded, so this is where request
 * smuggling is stopped: anything two implementations could frame differently
 * is refused (Content-Length with Transfer-Encoding, duplicate or list
 * Content-Length, obs-fold, bare CR/LF, CTLs, sloppy request lines...).
 *
 * Zero-copy: every struct h1_str points into the caller's buffer and is valid
 * only while that buffer is unchanged. Nothing is allocated; the parser never
 * reads buf[len] or beyond.
 *
 * Choices the RFC leaves open (documented here once, tested in test_h1.c):
 *  - Leading empty lines (CRLF only) before a request line are skipped, any
 *    number as long as the head stays within max_head; they count in
 *    head_len. Responses may not start with an empty line.
 *  - Request targets: origin-form; asterisk-form only with OPTIONS;
 *    absolute-form (http/https) only when its authority equals the Host
 *    header, so the routing layer and the backend can never disagree on the
 *    host. CONNECT (authority-form) is refused with 405: the gateway does not
 *    tunnel. Targets are passed as received (percent-encoding kept) but must
 *    use only RFC 3986 path/query characters and well-formed %XX escapes,
 *    and the path may hold no dot-segment ("." or "..", dots raw or %2e,
 *    segments ending at '/', %2F or %5C): 400. A relay prepends its
 *    backend's path prefix, and "/../x" would climb out of it.
 *  - Request Transfer-Encoding: gzip/deflate/compress (and x-gzip/x-compress)
 *    may precede a final chunked; an unknown coding is 501; chunked twice,
 *    chunked not last, a non-chunked final coding, or transfer-parameters
 *    (none is defined for these codings) are 400. Transfer-Encoding
 *    in an HTTP/1.0 message is refused (RFC 9112 6.1 calls it faulty).
 *  - Responses follow RFC 9112 6.3 (no body after HEAD, 1xx, 204, 304;
 *    a non-chunked final coding or no length means read until close),
 *    except that Content-Length with Transfer-Encoding, chunked twice, and
 *    Transfer-Encoding or a non-zero Content-Length on 1xx/204 are refused
 *    rather than repaired. The status line may omit the SP before an empty
 *    reason phrase.
 *  - A Connection header may not name Host or Content-Length: a relay that
 *    strips Connection-listed headers would otherwise strip the framing.
 *  - An HTTP/1.1 request needs exactly one Host; HTTP/1.0 at most one.
 */
#ifndef EG_H1_H
#define EG_H1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Size of struct h1_msg's header array: the hard cap on h1_limits.max_headers. */
#define H1_MAX_HEADERS 96

/* Defaults used for any struct h1_limits field left at 0 (or lim == NULL). */
#define H1_DEF_MAX_HEAD	     (32u * 1024)
#define H1_DEF_MAX_LINE	     (8u * 1024)
#define H1_DEF_MAX_HEADERS   H1_MAX_HEADERS
#define H1_DEF_MAX_CHUNK_EXT 256u

/* A slice of the caller's buffer: p[0..n). p may be NULL when n == 0. */
struct h1_str {
	const char *p;
	size_t n;
};

/* One field line; value has no leading/trailing OWS (SP/HTAB). */
struct h1_header {
	struct h1_str name;
	struct h1_str value;
};

enum h1_method {
	H1_M_OTHER = 0, /* a valid token we have no constant for (methods are case-sensitive) */
	H1_M_GET,
	H1_M_HEAD,
	H1_M_POST,
	H1_M_PUT,
	H1_M_DELETE,
	H1_M_OPTIONS,
	H1_M_CONNECT, /* never returned by a successful parse: refused with 405 */
	H1_M_TRACE,
	H1_M_PATCH,
};

/*
 * Message flags (struct h1_msg.flags). Exactly one of the four framing flags
 * CHUNKED, CLEN, EOF_BODY, NO_BODY is set after a successful parse; it says
 * how to find the end of the body.
 */
enum h1_flag {
	H1_F_CHUNKED = 1u << 0,	       /* body is chunked (final transfer-coding): use h1_chunk_* */
	H1_F_CLEN = 1u << 1,	       /* body is exactly content_length bytes (may be 0) */
	H1_F_EOF_BODY = 1u << 2,       /* response body runs until the backend closes */
	H1_F_NO_BODY = 1u << 3,	       /* no body: 1xx/204/304, answer to HEAD, or a
					  request with neither Content-Length nor
					  Transfer-Encoding */
	H1_F_CONN_CLOSE = 1u << 4,     /* close after this exchange: "close" option, HTTP/1.0
					  without keep-alive, or EOF-delimited body */
	H1_F_CONN_KEEPALIVE = 1u << 5, /* "keep-alive" connection option present */
	H1_F_EXPECT_CONTINUE = 1u << 6, /* HTTP/1.1 request with Expect: 100-continue */
	H1_F_UPGRADE = 1u << 7,		/* Upgrade header present and named in Connection */
	H1_F_TE_CODED = 1u << 8,	/* a transfer-coding other than chunked applies: the
					   payload is not the plain representation */
	H1_F_ABS_FORM = 1u << 9,	/* request target was absolute-form */
	H1_F_CONNECTION = 1u << 10,	/* a Connection header is present (its options
					   are hop-by-hop: h1_is_hop_by_hop) */
};

/*
 * Limits; a field left 0 takes its H1_DEF_* default, so
 * `struct h1_limits l = { .max_head = 65536 };` is fine. max_headers above
 * H1_MAX_HEADERS is clamped to it.
 */
struct h1_limits {
	size_t max_head;      /* whole head incl. CRLFs (431); also caps a trailer section */
	size_t max_line;      /* one line without its CRLF (414 request line, 431 field line) */
	unsigned max_headers; /* field lines per head / trailer section (431) */
	size_t max_chunk_ext; /* bytes after the hex size on one chunk-size line */
	uint64_t max_body;    /* request Content-Length and chunked payload cap (413);
				 0 = no cap; h1_parse_response() ignores it */
};

/* Private resume state of h1_parse_*: lets a re-call scan only new bytes. */
struct h1_scan {
	size_t pos;	   /* bytes [0,pos) already checked */
	size_t line_start; /* offset of the line being received */
	unsigned nlines;   /* complete non-empty lines so far (start line + fields) */
};

/*
 * A parsed message head. After a parse returning > 0 every field is set;
 * slices point into the parsed buffer. Fields that do not apply are zero
 * (status for requests, method/target for responses).
 */
struct h1_msg {
	enum h1_method method;	  /* request method, H1_M_OTHER if not in the enum */
	struct h1_str method_str; /* method token as sent; .p is where the request line starts */
	struct h1_str target;	  /* request-target as sent (still percent-encoded) */
	struct h1_str path;	  /* target up to '?' ("*" for asterisk-form; for
				     absolute-form the part after the authority, maybe empty) */
	struct h1_str query;	  /* after the first '?', excluding it; .p == NULL if no '?' */
	struct h1_str host;	  /* Host field value (requests); n == 0 when absent */
	int status;		  /* response status code, 100..599 */
	struct h1_str reason;	  /* response reason phrase, may be empty */
	int minor;		  /* HTTP/1.<minor>: 0 or 1 */
	struct h1_header hdr[H1_MAX_HEADERS]; /* field lines in received order */
	unsigned nhdr;			      /* entries used in hdr */
	unsigned flags;			      /* enum h1_flag bits */
	uint64_t content_length; /* valid Content-Length value (<= INT64_MAX), 0 if absent;
				    also kept for HEAD/304 answers, where no body follows */
	size_t head_len; /* bytes through the blank line: the body starts at buf + head_len */
	const char *err; /* on -1: static reason, e.g. "Content-Length with Transfer-Encoding" */
	size_t err_pos;	 /* on -1: offset in buf where the problem was found */
	int err_status;	 /* on -1: status to answer with; requests 400/405/413/414/
			    417/431/501/505, responses always 502 */
	struct h1_scan scan; /* private; see h1_msg_reset() */
};

/*
 * Forget any partially scanned head in m, so the next h1_parse_* call starts
 * from byte 0. Needed only when abandoning a message after a 0 return (the
 * parsers reset it themselves when they return > 0 or -1); a zeroed struct is
 * also a valid start.
 */
void h1_msg_reset(struct h1_msg *m);

/*
 * Parse a request head at the start of buf[0..len).
 *
 * Returns head_len (> 0) when the head is complete and valid, 0 when more
 * bytes are needed and what arrived so far is valid and within the limits,
 * -1 when invalid (m->err, m->err_pos, m->err_status set).
 *
 * Re-calling after more bytes arrived is cheap: m->scan remembers what was
 * checked, so only new bytes are examined until the head is complete. The
 * caller must pass the same message each time, with buf[0..old len) unchanged
 * (the buffer may move). Bytes after the head are never read, so pipelined
 * requests are parsed by calling again at buf + head_len + body length.
 * lim may be NULL (defaults).
 */
int h1_parse_request(const char *buf, size_t len, struct h1_msg *m, const struct h1_limits *lim);

/*
 * Parse a response head; same contract as h1_parse_request(). req_was_head
 * is non-zero when the request was HEAD (the response then has no body).
 * Errors set err_status 502: the client is answered Bad Gateway.
 */
int h1_parse_response(const char *buf, size_t len, int req_was_head, struct h1_msg *m,
		      const struct h1_limits *lim);

/*
 * The buffer holding m's head moved (it grew, or was compacted) from `from`
 * to `to`: move every slice of m with it. Call it for each move while the
 * parsed head is still in use.
 */
void h1_rebase(struct h1_msg *m, const char *from, const char *to);

/* First header named name (case-insensitive, NUL-terminated), or NULL. */
const struct h1_header *h1_find(const struct h1_msg *m, const char *name);

/*
 * Next header named name after `after` (which must point into m->hdr), or
 * NULL. Policy code uses it to refuse duplicated singleton headers, so the
 * gateway and the backend cannot read different copies.
 */
const struct h1_header *h1_find_next(const struct h1_msg *m, const struct h1_header *after,
				     const char *name);

/*
 * Is token an element of the comma-separated list value? Elements are
 * compared whole (after trimming OWS), case-insensitively; empty elements
 * are ignored. Quoted strings are not understood (not needed for the
 * Connection, Expect and Transfer-Encoding lists this serves). Returns 1/0.
 */
int h1_token_in_list(struct h1_str value, const char *token);

/*
 * Must a relay drop the header called name? 1 for Connection, Keep-Alive,
 * Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade,
 * Proxy-Authenticate, Proxy-Authorization, and any field named by one of
 * m's Connection headers; else 0. Case-insensitive.
 */
int h1_is_hop_by_hop(const struct h1_msg *m, struct h1_str name);

/*
 * The reason phrase of a status code that easgate sends (RFC 9110 15's
 * names), or NULL for one it does not know: callers choose their own
 * fallback (EAS codes and "Unknown" in eas_http_reason, the console's
 * "Error").
 */
const char *h1_reason_phrase(int status);

/*
 * Streaming scanner for a chunked body (RFC 9112 7.1). All fields are
 * private except err / err_status / err_off, which are set when
 * h1_chunk_feed() returns -1.
 */
struct h1_chunk {
	int state;
	unsigned ndigits;     /* hex digits of the current chunk size */
	uint64_t remaining;   /* chunk-size being read, then data bytes still due */
	uint64_t total;	      /* payload bytes so far (checked against max_body) */
	uint64_t off;	      /* body bytes consumed so far */
	size_t line_len;      /* bytes on the current size-line extension / trailer line */
	size_t trailer_len;   /* bytes of trailer section so far */
	unsigned ntrailers;   /* trailer field lines so far */
	struct h1_limits lim; /* resolved limits */
	const char *err;      /* static reason after -1 */
	int err_status;	      /* 400, or 413 when max_body is exceeded */
	uint64_t err_off;     /* offset of the bad byte from the start of the body */
};

/* Start scanning a new chunked body. lim may be NULL (defaults). */
void h1_chunk_init(struct h1_chunk *c, const struct h1_limits *lim);

/*
 * Consume the chunked body bytes in buf[0..len): chunk sizes, extensions,
 * data, last-chunk, trailers. on_data (may be NULL) gets every run of payload
 * bytes, in order, pointing into buf. Works with any split of the input,
 * down to one byte per call.
 *
 * Returns the number of bytes that belong to the body (forward exactly those,
 * verbatim), or -1 on a framing error (c->err). Sets *done = 1 once the final
 * CRLF was consumed: the return value then stops right after it, and any
 * further bytes (a pipelined message) are left alone; else *done = 0. After
 * completion it returns 0 with *done = 1; after an error, -1 again.
 */
ssize_t h1_chunk_feed(struct h1_chunk *c, const char *buf, size_t len, int *done,
		      void (*on_data)(void *arg, const char *p, size_t n), void *arg);

#endif
