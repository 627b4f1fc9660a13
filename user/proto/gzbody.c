/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* gzbody.c - see gzbody.h. */
#include "gzbody.h"

#include <limits.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

int gzbody_coding(const char *s, size_t n)
{
	while (n && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 0 || (n == 8 && !strncasecmp(s, "identity", 8)))
		return GZBODY_IDENTITY;
	if ((n == 4 && !strncasecmp(s, "gzip", 4)) || (n == 6 && !strncasecmp(s, "x-gzip", 6)))
		return GZBODY_GZIP;
	if (n == 7 && !strncasecmp(s, "deflate", 7))
		return GZBODY_DEFLATE;
	return GZBODY_UNKNOWN;
}

/*
 * RFC 1950 header: CM = 8, CINFO <= 7, and the first two bytes as a
 * big-endian number are a multiple of 31. HTTP "deflate" means this, but
 * some clients send raw deflate, which (barring a 1-in-31 coincidence on a
 * stored block) fails the check.
 */
static int looks_zlib(const uint8_t *in, size_t n)
{
	return n >= 2 && (in[0] & 0x0F) == 8 && (in[0] >> 4) <= 7 &&
	       (((unsigned)in[0] << 8) | in[1]) % 31 == 0;
}

static int gz_fail(const char **err, const char *why)
{
	if (err)
		*err = why;
	return -1;
}

/*
 * Run inflate until the stream(s) end; on success *outlen is what landed in
 * out[]. When out[] is full we keep going into a 1-byte probe: a stream that
 * ends without writing to it fitted exactly, one that writes to it is over
 * the limit.
 */
static const char *gz_run(z_stream *zs, int is_gzip, uint8_t *out, size_t *outlen)
{
	uint8_t probe;
	int probing = 0;

	for (;;) {
		if (!probing && zs->avail_out == 0) {
			zs->next_out = &probe;
			zs->avail_out = 1;
			probing = 1;
		}
		int rc = inflate(zs, Z_NO_FLUSH);
		if (probing && zs->avail_out == 0)
			return "inflated body larger than the limit";
		switch (rc) {
		case Z_OK:
			continue;
		case Z_STREAM_END:
			if (zs->avail_in == 0) {
				if (!probing)
					*outlen = (size_t)(zs->next_out - out);
				return NULL;
			}
			/* RFC 1952 allows several gzip members back to back. */
			if (!is_gzip)
				return "data after the end of the deflate stream";
			if (inflateReset(zs) != Z_OK)
				return "zlib reset failed";
			continue;
		case Z_BUF_ERROR:
			return "truncated compressed body";
		case Z_NEED_DICT:
			return "deflate stream needs a preset dictionary";
		case Z_MEM_ERROR:
			return "out of memory";
		default:
			return "corrupt compressed body";
		}
	}
}

int gzbody_inflate(const uint8_t *in, size_t n, int is_gzip, uint8_t *out, size_t cap,
		   size_t *outlen, const char **err)
{
	z_stream zs;
	int wbits;
	const char *why;

	*outlen = 0;
	if (n > UINT_MAX)
		return gz_fail(err, "compressed body too large");
	if (cap > UINT_MAX)
		cap = UINT_MAX; /* zlib counts in uInt; nothing we inspect is that large */
	if (is_gzip)
		wbits = 16 + MAX_WBITS;
	else
		wbits = looks_zlib(in, n) ? MAX_WBITS : -MAX_WBITS;
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, wbits) != Z_OK)
		return gz_fail(err, "zlib init failed");
	zs.next_in = (Bytef *)(uintptr_t)in; /* zlib's API is not const-correct; it only reads */
	zs.avail_in = (uInt)n;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	*outlen = cap; /* unless gz_run ends before filling out[] */
	why = gz_run(&zs, is_gzip, out, outlen);
	inflateEnd(&zs);
	if (why) {
		*outlen = 0;
		return gz_fail(err, why);
	}
	if (err)
		*err = NULL;
	return 0;
}
