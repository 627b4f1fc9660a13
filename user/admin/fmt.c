/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* fmt.c - see fmt.h. */
#include "fmt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void fmt_json_str(struct sbuf *o, const char *s)
{
	sbuf_put(o, "\"", 1);
	const char *run = s;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != '<' && ch != '>' && ch != '&' &&
		    ch != 0x7f)
			continue;
		sbuf_put(o, run, (size_t)(s - run));
		if (ch == '"' || ch == '\\')
			sbuf_printf(o, "\\%c", ch);
		else
			sbuf_printf(o, "\\u%04x", ch);
		run = s + 1;
	}
	sbuf_put(o, run, (size_t)(s - run));
	sbuf_put(o, "\"", 1);
}

void fmt_csv_str(struct sbuf *o, const char *s)
{
	int formula = s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' ||
		      s[0] == '\r';
	if (!formula && !strpbrk(s, ",\"\r\n")) {
		sbuf_put(o, s, strlen(s));
		return;
	}
	sbuf_put(o, "\"", 1);
	if (formula)
		sbuf_put(o, "'", 1);
	for (; *s; s++) {
		if (*s == '"')
			sbuf_put(o, "\"", 1);
		sbuf_put(o, s, 1);
	}
	sbuf_put(o, "\"", 1);
}

void fmt_html(struct sbuf *o, const char *s)
{
	const char *run = s;
	for (; *s; s++) {
		const char *e = NULL;
		switch (*s) {
		case '&':
			e = "&amp;";
			break;
		case '<':
			e = "&lt;";
			break;
		case '>':
			e = "&gt;";
			break;
		case '"':
			e = "&quot;";
			break;
		case '\'':
			e = "&#39;";
			break;
		default:
			continue;
		}
		sbuf_put(o, run, (size_t)(s - run));
		sbuf_put(o, e, strlen(e));
		run = s + 1;
	}
	sbuf_put(o, run, (size_t)(s - run));
}

void fmt_iso_time(int64_t t, char *out, size_t n)
{
	if (!t) {
		snprintf(out, n, "-");
		return;
	}
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
