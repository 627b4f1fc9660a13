/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * fmt.h - escaping for every format the command layer and the console
 * emit. Values come from phones (DeviceModel, User-Agent, FriendlyName...)
 * and must never become markup, script, JSON structure or a spreadsheet
 * formula wherever they are shown.
 */
#ifndef EG_FMT_H
#define EG_FMT_H

#include <stdint.h>

#include "sbuf.h"

/* A JSON string literal with quotes; control bytes as \uXXXX, and <, >, &
 * too, so a JSON document embedded anywhere cannot close a script element. */
void fmt_json_str(struct sbuf *o, const char *s);
/*
 * One CSV field (RFC 4180 quoting). A value a spreadsheet would run as a
 * formula (first character = + - @, TAB or CR) is prefixed with a single
 * quote (the OWASP advice), so an exported DeviceModel of "=HYPERLINK(...)"
 * is shown as text.
 */
void fmt_csv_str(struct sbuf *o, const char *s);
/* Text for HTML element content or a quoted attribute: & < > " ' escaped. */
void fmt_html(struct sbuf *o, const char *s);
/* ISO 8601 UTC ("2026-11-25T09:30:00Z"); "-" for 0. */
void fmt_iso_time(int64_t t, char *out, size_t n);

#endif
