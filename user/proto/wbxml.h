/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * wbxml.h - a strict, allocation-free WBXML pull tokenizer for ActiveSync
 * request bodies (MS-ASWBXML), and the extraction of Settings:DeviceInformation
 * (Model, OS, ...) that the device policy rules need.
 *
 * Only the subset of WBXML 1.x that ActiveSync uses is accepted: header
 * version 1..3, charset UTF-8 (106), no string table; body tokens SWITCH_PAGE
 * (pages 0..25), END, STR_I, OPAQUE and tags 0x05..0x3F with the content bit.
 * Everything else (attributes, ENTITY, EXT_*, PI, LITERAL*, STR_T) is an
 * error, as in Microsoft's own test decoder: a gateway that tolerated more
 * than the backend would let a client show it one document and the backend
 * another.
 *
 * All returned data pointers borrow the caller's buffer; nothing is
 * allocated and the decoder never recurses, so hostile nesting costs only
 * the fixed element stack below.
 */
#ifndef EG_WBXML_H
#define EG_WBXML_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eas.h" /* struct eas_devinfo, what wbxml_devinfo() extracts */

#define WBXML_PAGE_MAX	     25	 /* highest ActiveSync code page (Find) */
#define WBXML_DEPTH_DEFAULT  32	 /* default limit on open elements */
#define WBXML_DEPTH_HARD_MAX 64	 /* size of the element stack; max_depth is clamped to it */
#define WBXML_CHARSET_UTF8   106 /* IANA MIBenum */
#define WBXML_PAGE_PROVISION 14
#define WBXML_PAGE_SETTINGS  18

/* Settings (page 18) tokens used by DeviceInformation (MS-ASWBXML code page 18). */
#define WBXML_SET_SETTINGS	    0x05
#define WBXML_SET_SET		    0x08
#define WBXML_SET_DEVICEINFORMATION 0x16

/*
 * Reader state. Initialise with wbxml_reader_init(); all fields are readable,
 * max_depth may be changed (1..WBXML_DEPTH_HARD_MAX) before the first
 * wbxml_next(). p/end/start borrow the caller's buffer, which must outlive
 * the reader and every token taken from it.
 */
struct wbxml_reader {
	const uint8_t *start, *p, *end;
	int page;	    /* current code page (SWITCH_PAGE is global state, not scoped) */
	int depth;	    /* elements open after the last token */
	int max_depth;	    /* more open elements than this is an error */
	uint8_t version;    /* header: 0x01..0x03 (WBXML 1.1..1.3) */
	uint32_t public_id; /* header: ActiveSync sends 1; anything else is only reported */
	int root_seen;	    /* the root element has started */
	int done;	    /* the root element is closed: only EOF may follow */
	const char *err;    /* static reason of the first error, NULL if none */
	size_t err_pos;	    /* offset of the offending byte from the start of the buffer */
	struct {
		uint8_t page, tag;
	} stack[WBXML_DEPTH_HARD_MAX]; /* open elements, so END can say what it closes */
};

enum wbxml_kind {
	WBXML_TAG_START, /* page/tag/has_content set; a tag without content has no TAG_END */
	WBXML_TAG_END,	 /* page/tag of the element being closed */
	WBXML_TEXT,	 /* STR_I: data/len, NUL excluded (may be any bytes but NUL) */
	WBXML_OPAQUE,	 /* OPAQUE: data/len, arbitrary bytes */
};

struct wbxml_token {
	enum wbxml_kind kind;
	int page, tag;	     /* for TAG_START / TAG_END; tag is the token without the 0x40 bit */
	int has_content;     /* TAG_START only: the element has content and a matching END */
	const uint8_t *data; /* TEXT / OPAQUE: borrowed from the reader's buffer */
	size_t len;
};

/*
 * Validate the header of buf[0..len) and prepare r to read the body.
 * Returns 0, or -1 with r->err / r->err_pos set. String tables are refused:
 * MS-ASWBXML says the length is always 0, and every token that could
 * reference one (STR_T, LITERAL*, attributes, a public id by index) is
 * refused anyway, so a table could only hide bytes from the gateway.
 */
int wbxml_reader_init(struct wbxml_reader *r, const uint8_t *buf, size_t len);

/*
 * Read the next body token into *t. Returns 1 (a token), 0 (the document
 * ended cleanly: root element closed, no trailing bytes; repeated calls keep
 * returning 0) or -1 (malformed; r->err / r->err_pos say why and where;
 * repeated calls keep returning -1). Never reads outside the buffer.
 */
int wbxml_next(struct wbxml_reader *r, struct wbxml_token *t);

/* Namespace name of a code page ("Settings"), or NULL outside 0..25. */
const char *wbxml_page_name(int page);
/*
 * Element name for (page, tag) when this decoder knows it ("Model"), else
 * NULL. Names are known for AirSync (0), Ping (13), Provision (14) and
 * Settings (18): the pages the gateway inspects or logs.
 */
const char *wbxml_tag_name(int page, int tag);

/*
 * Print the token stream of buf as indented text to out, one token per line
 * (<Settings:Model>, "text", opaque[n], </Settings:Model>; control bytes and
 * non-ASCII escaped as \xNN). For debugging and tests. Returns 0 if the
 * document is well formed, -1 after printing the error line.
 */
int wbxml_dump(FILE *out, const uint8_t *buf, size_t len);

/*
 * The first element of the body: *page / *tag (e.g. 18 / 0x05 for Settings).
 * Returns 0, or -1 if the header or the first token is malformed. Only reads
 * as far as the first tag: the rest of the document is not validated.
 */
int wbxml_root(const uint8_t *buf, size_t len, int *page, int *tag);

/*
 * Extract DeviceInformation from a Settings or Provision request body (it is
 * recognised wherever a Settings:DeviceInformation element occurs; fields
 * count only as direct children of its Settings:Set child). *di is zeroed
 * first. Returns 1 (DeviceInformation found), 0 (well-formed WBXML without
 * it) or -1 (malformed: *err, if err is non-NULL, says why; *di must then not
 * be trusted). The whole document is validated in every case.
 */
int wbxml_devinfo(const uint8_t *buf, size_t len, struct eas_devinfo *di, const char **err);

#endif
