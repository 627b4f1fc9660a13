/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* webform.c - see webform.h. */
#include "webform.h"
#include "hex.h"

#include <string.h>

int webform_parse(char *buf, size_t len, struct webform_field *f, int max)
{
	int n = 0;
	size_t i = 0;
	if (memchr(buf, 0, len))
		return -1;
	while (i < len) {
		size_t end = i;
		while (end < len && buf[end] != '&')
			end++;
		if (end == i) { /* "&&" or a trailing '&' */
			i++;
			continue;
		}
		if (n >= max)
			return -1;
		/* decode buf[i..end) in place; '=' splits name and value once */
		char *out = buf + i, *name = out, *value = NULL;
		for (size_t k = i; k < end; k++) {
			char c = buf[k];
			if (c == '=' && !value) {
				*out++ = 0;
				value = out;
				continue;
			}
			if (c == '+')
				c = ' ';
			else if (c == '%') {
				if (k + 2 >= end)
					return -1;
				int h = hex_digit_value(buf[k + 1]),
				    l = hex_digit_value(buf[k + 2]);
				if (h < 0 || l < 0 || (h == 0 && l == 0))
					return -1;
				c = (char)(h * 16 + l);
				k += 2;
			}
			*out++ = c;
		}
		*out = 0;
		f[n].name = name;
		f[n].value = value ? value : out;
		n++;
		i = end + 1;
	}
	buf[len] = 0;
	return n;
}

const char *webform_get(const struct webform_field *f, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(f[i].name, name))
			return f[i].value;
	return NULL;
}

int webform_cookie(const char *p, size_t len, const char *name, char *out, size_t outsz)
{
	size_t nl = strlen(name), i = 0;
	while (i < len) {
		while (i < len && (p[i] == ' ' || p[i] == ';'))
			i++;
		size_t start = i;
		while (i < len && p[i] != ';')
			i++;
		/* p[start..i) is "k=v" */
		if (i - start > nl && !memcmp(p + start, name, nl) && p[start + nl] == '=') {
			size_t vl = i - start - nl - 1;
			if (vl >= outsz)
				return -1;
			/* cookie-octets only (RFC 6265 4.1.1): no NUL, control byte,
			 * blank, quote, comma or backslash in what we hand back */
			for (size_t k = 0; k < vl; k++) {
				unsigned char ch = (unsigned char)p[start + nl + 1 + k];
				if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == ',' ||
				    ch == '\\')
					return -1;
			}
			memcpy(out, p + start + nl + 1, vl);
			out[vl] = 0;
			return (int)vl;
		}
	}
	return -1;
}
