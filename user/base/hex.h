/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* hex.h - the value of a hexadecimal digit, for the parsers (percent-
 * decoding, chunk sizes, IPv6 hosts) and the keys read from files. */
#ifndef EG_HEX_H
#define EG_HEX_H

/* 0..15 for 0-9, a-f, A-F; -1 for anything else. */
static inline int hex_digit_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
