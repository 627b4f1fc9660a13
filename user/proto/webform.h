/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * webform.h - the console's request parsers: application/x-www-form-urlencoded
 * fields (query strings and POST bodies) and Cookie headers. Input is what a
 * browser (or anyone) sent: never read past len, no allocation per field,
 * a clear refusal for what does not decode.
 */
#ifndef EG_WEBFORM_H
#define EG_WEBFORM_H

#include <stddef.h>

#define WEBFORM_MAX_FIELDS 64

struct webform_field {
	char *name, *value; /* NUL-terminated, decoded, inside the caller's buffer */
};

/*
 * Decode "a=1&b=x%20y" in place: buf[0..len) is rewritten (decoded text is
 * never longer) and must have room for a NUL at buf[len]. Returns the number
 * of fields (at most max), or -1 on a bad %XX escape, a NUL byte in the
 * input, or more than max fields. '+' is a space.
 */
int webform_parse(char *buf, size_t len, struct webform_field *f, int max);

/* Value of the first field called name, or NULL. */
const char *webform_get(const struct webform_field *f, int n, const char *name);

/*
 * The value of cookie `name` in a Cookie header value (p[0..len)), copied
 * into out (NUL-terminated). Returns its length, or -1 when absent, longer
 * than outsz - 1, or not made of cookie-octets (RFC 6265: no NUL, control
 * byte, blank, '"', ',' or '\\').
 */
int webform_cookie(const char *p, size_t len, const char *name, char *out, size_t outsz);

#endif
