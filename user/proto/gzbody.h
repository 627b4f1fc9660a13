/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * gzbody.h - bounded inflation of compressed HTTP request bodies
 * (Content-Encoding: gzip / deflate), so the WBXML inside can be inspected.
 *
 * The output buffer is the caller's and its size is a hard limit: a body
 * that would inflate past it is refused, never truncated, because a 1 KiB
 * body can inflate to gigabytes (decompression bomb).
 */
#ifndef EG_GZBODY_H
#define EG_GZBODY_H

#include <stddef.h>
#include <stdint.h>

/* Values of gzbody_coding() and of gzbody_inflate()'s is_gzip. */
enum gzbody_coding {
	GZBODY_DEFLATE = 0,  /* "deflate": zlib (RFC 1950) or, as some clients send, raw RFC 1951 */
	GZBODY_GZIP = 1,     /* "gzip" / "x-gzip": RFC 1952, concatenated members allowed */
	GZBODY_IDENTITY = 2, /* no coding: nothing to inflate */
	GZBODY_UNKNOWN = -1, /* a coding we cannot decode (br, compress, a list of codings) */
};

/*
 * Map a Content-Encoding value (case-insensitive, surrounding spaces
 * ignored; n bytes, no NUL needed) to enum gzbody_coding. An empty value is
 * identity.
 */
int gzbody_coding(const char *s, size_t n);

/*
 * Inflate in[0..n) into out[0..cap). is_gzip selects GZBODY_GZIP, else
 * deflate (the zlib wrapper is detected from its header, raw deflate
 * otherwise). On success returns 0 and sets *outlen. Returns -1 and sets
 * *err (a static string; err may be NULL) when the output would exceed cap,
 * the input is corrupt or truncated, or bytes follow the compressed stream.
 * Allocates only zlib's internal state (freed before returning).
 */
int gzbody_inflate(const uint8_t *in, size_t n, int is_gzip, uint8_t *out, size_t cap,
		   size_t *outlen, const char **err);

#endif
