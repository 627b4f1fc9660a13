/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* wbxml.c - see wbxml.h. Token values: WBXML 1.3 and MS-ASWBXML. */
#include "wbxml.h"

#include <string.h>

/* Global tokens (WBXML 1.3 section 7.1). */
enum {
	TOK_SWITCH_PAGE = 0x00,
	TOK_END = 0x01,
	TOK_ENTITY = 0x02,
	TOK_STR_I = 0x03,
	TOK_LITERAL = 0x04,
	TOK_OPAQUE = 0xC3,
	TAG_CONTENT = 0x40,
	TAG_ATTRS = 0x80,
	TAG_ID_MASK = 0x3F,
};

static int fail(struct wbxml_reader *r, const uint8_t *at, const char *why)
{
	if (!r->err) {
		r->err = why;
		r->err_pos = (size_t)(at - r->start);
	}
	return -1;
}

/*
 * mb_u_int32: big-endian base-128, high bit = more bytes follow. At most 5
 * bytes, and the value must fit in 32 bits, so a 5-byte encoding may carry
 * only 4 bits in its first byte.
 */
static int read_mb_u32(struct wbxml_reader *r, uint32_t *out)
{
	const uint8_t *at = r->p;
	uint32_t v = 0;

	for (int i = 0; i < 5; i++) {
		if (r->p >= r->end)
			return fail(r, at, "truncated mb_u_int32");
		uint8_t b = *r->p++;
		if (v > (UINT32_MAX >> 7))
			return fail(r, at, "mb_u_int32 overflows 32 bits");
		v = (v << 7) | (b & 0x7F);
		if (!(b & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return fail(r, at, "mb_u_int32 longer than 5 bytes");
}

int wbxml_reader_init(struct wbxml_reader *r, const uint8_t *buf, size_t len)
{
	uint32_t charset, strtbl, index = 0;

	memset(r, 0, sizeof(*r));
	r->start = r->p = r->end = buf;
	r->max_depth = WBXML_DEPTH_DEFAULT;
	if (len == 0 || !buf)
		return fail(r, buf, "truncated header");
	r->end = buf + len;
	r->version = *r->p++;
	if (r->version < 0x01 || r->version > 0x03)
		return fail(r, buf, "unsupported WBXML version");
	if (read_mb_u32(r, &r->public_id))
		return -1;
	/* Public id 0 means "given by string-table index": needs a table. */
	if (r->public_id == 0 && read_mb_u32(r, &index))
		return -1;
	const uint8_t *at = r->p;
	if (read_mb_u32(r, &charset))
		return -1;
	if (charset != WBXML_CHARSET_UTF8)
		return fail(r, at, "charset is not UTF-8");
	at = r->p;
	if (read_mb_u32(r, &strtbl))
		return -1;
	if (strtbl != 0)
		return fail(r, at, "string table present (never used by ActiveSync)");
	if (r->public_id == 0)
		return fail(r, at, "public id refers to the string table");
	return 0;
}

static int refuse_global(struct wbxml_reader *r, const uint8_t *at, uint8_t b)
{
	switch (b) {
	case TOK_ENTITY:
		return fail(r, at, "ENTITY token not allowed in ActiveSync");
	case TOK_LITERAL:
	case TOK_LITERAL | TAG_CONTENT:
	case TOK_LITERAL | TAG_ATTRS:
	case TOK_LITERAL | TAG_CONTENT | TAG_ATTRS:
		return fail(r, at, "LITERAL token not allowed in ActiveSync");
	case 0x43:
		return fail(r, at, "PI token not allowed in ActiveSync");
	case 0x83:
		return fail(r, at, "STR_T token not allowed in ActiveSync");
	case 0x40:
	case 0x41:
	case 0x42:
	case 0x80:
	case 0x81:
	case 0x82:
	case 0xC0:
	case 0xC1:
	case 0xC2:
		return fail(r, at, "EXT token not allowed in ActiveSync");
	default:
		return fail(r, at, "attributes not allowed in ActiveSync");
	}
}

static int on_switch_page(struct wbxml_reader *r, const uint8_t *at)
{
	if (r->p >= r->end)
		return fail(r, at, "truncated SWITCH_PAGE");
	if (*r->p > WBXML_PAGE_MAX)
		return fail(r, r->p, "unknown code page");
	r->page = *r->p++;
	return 0;
}

static int on_end(struct wbxml_reader *r, const uint8_t *at, struct wbxml_token *t)
{
	if (r->depth == 0)
		return fail(r, at, "END without an open element");
	r->depth--;
	t->kind = WBXML_TAG_END;
	t->page = r->stack[r->depth].page;
	t->tag = r->stack[r->depth].tag;
	if (r->depth == 0)
		r->done = 1;
	return 1;
}

static int on_str_i(struct wbxml_reader *r, const uint8_t *at, struct wbxml_token *t)
{
	const uint8_t *nul = memchr(r->p, 0, (size_t)(r->end - r->p));

	if (!nul)
		return fail(r, at, "unterminated STR_I");
	t->kind = WBXML_TEXT;
	t->data = r->p;
	t->len = (size_t)(nul - r->p);
	r->p = nul + 1;
	return 1;
}

static int on_opaque(struct wbxml_reader *r, const uint8_t *at, struct wbxml_token *t)
{
	uint32_t n;

	if (read_mb_u32(r, &n))
		return -1;
	if (n > (size_t)(r->end - r->p))
		return fail(r, at, "OPAQUE longer than the document");
	t->kind = WBXML_OPAQUE;
	t->data = r->p;
	t->len = n;
	r->p += n;
	return 1;
}

static int on_tag(struct wbxml_reader *r, const uint8_t *at, uint8_t b, struct wbxml_token *t)
{
	if (r->done)
		return fail(r, at, "second root element");
	t->kind = WBXML_TAG_START;
	t->page = r->page;
	t->tag = b & TAG_ID_MASK;
	t->has_content = !!(b & TAG_CONTENT);
	r->root_seen = 1;
	if (!t->has_content) {
		if (r->depth == 0)
			r->done = 1;
		return 1;
	}
	if (r->depth >= r->max_depth)
		return fail(r, at, "elements nested too deeply");
	r->stack[r->depth].page = (uint8_t)t->page;
	r->stack[r->depth].tag = (uint8_t)t->tag;
	r->depth++;
	return 1;
}

static int at_eof(struct wbxml_reader *r)
{
	if (r->depth > 0)
		return fail(r, r->p, "truncated: elements left open");
	if (!r->root_seen)
		return fail(r, r->p, "no root element");
	return 0;
}

int wbxml_next(struct wbxml_reader *r, struct wbxml_token *t)
{
	memset(t, 0, sizeof(*t));
	if (r->err)
		return -1;
	if (r->max_depth < 1 || r->max_depth > WBXML_DEPTH_HARD_MAX)
		r->max_depth = r->max_depth < 1 ? 1 : WBXML_DEPTH_HARD_MAX;
	for (;;) {
		if (r->p >= r->end)
			return at_eof(r);
		const uint8_t *at = r->p;
		uint8_t b = *r->p++;
		if (b == TOK_SWITCH_PAGE) {
			/* Only the root may follow the header: a trailing page switch is junk. */
			if (r->done)
				return fail(r, at, "data after the root element");
			if (on_switch_page(r, at))
				return -1;
			continue;
		}
		if (b == TOK_END)
			return on_end(r, at, t);
		if ((b == TOK_STR_I || b == TOK_OPAQUE) && r->depth == 0)
			return fail(r, at, "text outside the root element");
		if (b == TOK_STR_I)
			return on_str_i(r, at, t);
		if (b == TOK_OPAQUE)
			return on_opaque(r, at, t);
		if ((b & TAG_ID_MASK) < 0x05 || (b & TAG_ATTRS))
			return refuse_global(r, at, b);
		return on_tag(r, at, b, t);
	}
}

/* --- names (MS-ASWBXML code pages), for logs and wbxml_dump ----------------- */

static const char *const page_names[WBXML_PAGE_MAX + 1] = {
    "AirSync",
    "Contacts",
    "Email",
    "AirNotify",
    "Calendar",
    "Move",
    "GetItemEstimate",
    "FolderHierarchy",
    "MeetingResponse",
    "Tasks",
    "ResolveRecipients",
    "ValidateCert",
    "Contacts2",
    "Ping",
    "Provision",
    "Search",
    "GAL",
    "AirSyncBase",
    "Settings",
    "DocumentLibrary",
    "ItemOperations",
    "ComposeMail",
    "Email2",
    "Notes",
    "RightsManagement",
    "Find",
};

static const char *const airsync_tags[0x40] = {
    [0x05] = "Sync",
    [0x06] = "Responses",
    [0x07] = "Add",
    [0x08] = "Change",
    [0x09] = "Delete",
    [0x0A] = "Fetch",
    [0x0B] = "SyncKey",
    [0x0C] = "ClientId",
    [0x0D] = "ServerId",
    [0x0E] = "Status",
    [0x0F] = "Collection",
    [0x10] = "Class",
    [0x12] = "CollectionId",
    [0x13] = "GetChanges",
    [0x14] = "MoreAvailable",
    [0x15] = "WindowSize",
    [0x16] = "Commands",
    [0x17] = "Options",
    [0x18] = "FilterType",
    [0x1B] = "Conflict",
    [0x1C] = "Collections",
    [0x1D] = "ApplicationData",
    [0x1E] = "DeletesAsMoves",
    [0x20] = "Supported",
    [0x21] = "SoftDelete",
    [0x22] = "MIMESupport",
    [0x23] = "MIMETruncation",
    [0x24] = "Wait",
    [0x25] = "Limit",
    [0x26] = "Partial",
    [0x27] = "ConversationMode",
    [0x28] = "MaxItems",
    [0x29] = "HeartbeatInterval",
};

static const char *const ping_tags[0x40] = {
    [0x05] = "Ping",	[0x07] = "Status",     [0x08] = "HeartbeatInterval",
    [0x09] = "Folders", [0x0A] = "Folder",     [0x0B] = "Id",
    [0x0C] = "Class",	[0x0D] = "MaxFolders",
};

static const char *const provision_tags[0x40] = {
    [0x05] = "Provision",
    [0x06] = "Policies",
    [0x07] = "Policy",
    [0x08] = "PolicyType",
    [0x09] = "PolicyKey",
    [0x0A] = "Data",
    [0x0B] = "Status",
    [0x0C] = "RemoteWipe",
    [0x0D] = "EASProvisionDoc",
    [0x0E] = "DevicePasswordEnabled",
    [0x0F] = "AlphanumericDevicePasswordRequired",
    [0x10] = "RequireStorageCardEncryption",
    [0x11] = "PasswordRecoveryEnabled",
    [0x13] = "AttachmentsEnabled",
    [0x14] = "MinDevicePasswordLength",
    [0x15] = "MaxInactivityTimeDeviceLock",
    [0x16] = "MaxDevicePasswordFailedAttempts",
    [0x17] = "MaxAttachmentSize",
    [0x18] = "AllowSimpleDevicePassword",
    [0x19] = "DevicePasswordExpiration",
    [0x1A] = "DevicePasswordHistory",
    [0x1B] = "AllowStorageCard",
    [0x1C] = "AllowCamera",
    [0x1D] = "RequireDeviceEncryption",
    [0x1E] = "AllowUnsignedApplications",
    [0x1F] = "AllowUnsignedInstallationPackages",
    [0x20] = "MinDevicePasswordComplexCharacters",
    [0x21] = "AllowWiFi",
    [0x22] = "AllowTextMessaging",
    [0x23] = "AllowPOPIMAPEmail",
    [0x24] = "AllowBluetooth",
    [0x25] = "AllowIrDA",
    [0x26] = "RequireManualSyncWhenRoaming",
    [0x27] = "AllowDesktopSync",
    [0x28] = "MaxCalendarAgeFilter",
    [0x29] = "AllowHTMLEmail",
    [0x2A] = "MaxEmailAgeFilter",
    [0x2B] = "MaxEmailBodyTruncationSize",
    [0x2C] = "MaxEmailHTMLBodyTruncationSize",
    [0x2D] = "RequireSignedSMIMEMessages",
    [0x2E] = "RequireEncryptedSMIMEMessages",
    [0x2F] = "RequireSignedSMIMEAlgorithm",
    [0x30] = "RequireEncryptionSMIMEAlgorithm",
    [0x31] = "AllowSMIMEEncryptionAlgorithmNegotiation",
    [0x32] = "AllowSMIMESoftCerts",
    [0x33] = "AllowBrowser",
    [0x34] = "AllowConsumerEmail",
    [0x35] = "AllowRemoteDesktop",
    [0x36] = "AllowInternetSharing",
    [0x37] = "UnapprovedInROMApplicationList",
    [0x38] = "ApplicationName",
    [0x39] = "ApprovedApplicationList",
    [0x3A] = "Hash",
    [0x3B] = "AccountOnlyRemoteWipe",
};

static const char *const settings_tags[0x40] = {
    [0x05] = "Settings",
    [0x06] = "Status",
    [0x07] = "Get",
    [0x08] = "Set",
    [0x09] = "Oof",
    [0x0A] = "OofState",
    [0x0B] = "StartTime",
    [0x0C] = "EndTime",
    [0x0D] = "OofMessage",
    [0x0E] = "AppliesToInternal",
    [0x0F] = "AppliesToExternalKnown",
    [0x10] = "AppliesToExternalUnknown",
    [0x11] = "Enabled",
    [0x12] = "ReplyMessage",
    [0x13] = "BodyType",
    [0x14] = "DevicePassword",
    [0x15] = "Password",
    [0x16] = "DeviceInformation",
    [0x17] = "Model",
    [0x18] = "IMEI",
    [0x19] = "FriendlyName",
    [0x1A] = "OS",
    [0x1B] = "OSLanguage",
    [0x1C] = "PhoneNumber",
    [0x1D] = "UserInformation",
    [0x1E] = "EmailAddresses",
    [0x1F] = "SMTPAddress",
    [0x20] = "UserAgent",
    [0x21] = "EnableOutboundSMS",
    [0x22] = "MobileOperator",
    [0x23] = "PrimarySmtpAddress",
    [0x24] = "Accounts",
    [0x25] = "Account",
    [0x26] = "AccountId",
    [0x27] = "AccountName",
    [0x28] = "UserDisplayName",
    [0x29] = "SendDisabled",
    [0x2B] = "RightsManagementInformation", /* MS-ASWBXML's table: "ihsManagementInformation" */
};

const char *wbxml_page_name(int page)
{
	if (page < 0 || page > WBXML_PAGE_MAX)
		return NULL;
	return page_names[page];
}

const char *wbxml_tag_name(int page, int tag)
{
	const char *const *tab;

	if (tag < 0 || tag > TAG_ID_MASK)
		return NULL;
	switch (page) {
	case 0:
		tab = airsync_tags;
		break;
	case 13:
		tab = ping_tags;
		break;
	case WBXML_PAGE_PROVISION:
		tab = provision_tags;
		break;
	case WBXML_PAGE_SETTINGS:
		tab = settings_tags;
		break;
	default:
		return NULL;
	}
	return tab[tag];
}

/* --- dump ---------------------------------------------------------------------- */

static void dump_name(FILE *out, int page, int tag)
{
	const char *n = wbxml_tag_name(page, tag);

	if (n)
		fprintf(out, "%s:%s", wbxml_page_name(page), n);
	else
		fprintf(out, "%s:0x%02X", wbxml_page_name(page), (unsigned)tag);
}

static void dump_bytes(FILE *out, const uint8_t *s, size_t n)
{
	fputc('"', out);
	for (size_t i = 0; i < n; i++) {
		if (s[i] < 0x20 || s[i] >= 0x7F || s[i] == '"' || s[i] == '\\')
			fprintf(out, "\\x%02X", s[i]);
		else
			fputc(s[i], out);
	}
	fputc('"', out);
}

static void dump_token(FILE *out, const struct wbxml_reader *r, const struct wbxml_token *t)
{
	/* Indent by the element's nesting level, not by the reader's state after it. */
	int level = r->depth - (t->kind == WBXML_TAG_START && t->has_content);

	for (int i = 0; i < level; i++)
		fputs("  ", out);
	switch (t->kind) {
	case WBXML_TAG_START:
		fputc('<', out);
		dump_name(out, t->page, t->tag);
		fputs(t->has_content ? ">\n" : "/>\n", out);
		break;
	case WBXML_TAG_END:
		fputs("</", out);
		dump_name(out, t->page, t->tag);
		fputs(">\n", out);
		break;
	case WBXML_TEXT:
		dump_bytes(out, t->data, t->len);
		fputc('\n', out);
		break;
	case WBXML_OPAQUE:
		fprintf(out, "opaque[%zu]\n", t->len);
		break;
	}
}

int wbxml_dump(FILE *out, const uint8_t *buf, size_t len)
{
	struct wbxml_reader r;
	struct wbxml_token t;
	int rc;

	if (wbxml_reader_init(&r, buf, len) == 0) {
		fprintf(out, "wbxml version=0x%02X public_id=%u\n", r.version, r.public_id);
		while ((rc = wbxml_next(&r, &t)) == 1)
			dump_token(out, &r, &t);
		if (rc == 0)
			return 0;
	}
	fprintf(out, "error at %zu: %s\n", r.err_pos, r.err);
	return -1;
}

int wbxml_root(const uint8_t *buf, size_t len, int *page, int *tag)
{
	struct wbxml_reader r;
	struct wbxml_token t;

	if (wbxml_reader_init(&r, buf, len) || wbxml_next(&r, &t) != 1)
		return -1;
	*page = t.page;
	*tag = t.tag;
	return 0;
}

/* --- DeviceInformation ---------------------------------------------------------- */

struct di_field {
	uint8_t tag; /* Settings page token */
	unsigned bit;
	size_t off, size;
};

#define DI_FIELD(tok, b, member)                                                                   \
	{                                                                                          \
		tok, b, offsetof(struct eas_devinfo, member),                                      \
		    sizeof(((struct eas_devinfo *)0)->member)                                      \
	}

static const struct di_field di_fields[] = {
    DI_FIELD(0x17, EAS_DI_MODEL, model),
    DI_FIELD(0x18, EAS_DI_IMEI, imei),
    DI_FIELD(0x19, EAS_DI_FRIENDLY_NAME, friendly_name),
    DI_FIELD(0x1A, EAS_DI_OS, os),
    DI_FIELD(0x1B, EAS_DI_OS_LANGUAGE, os_language),
    DI_FIELD(0x1C, EAS_DI_PHONE_NUMBER, phone_number),
    DI_FIELD(0x20, EAS_DI_USER_AGENT, user_agent),
    DI_FIELD(0x21, EAS_DI_ENABLE_OUTBOUND_SMS, enable_outbound_sms),
    DI_FIELD(0x22, EAS_DI_MOBILE_OPERATOR, mobile_operator),
};

/*
 * Raw bytes kept per field: sanitising turns at most 2 raw bytes into 1 ('?'
 * for a C1 control), so 2 x the largest buffer (256) plus a cut sequence is
 * always enough to fill any field's buffer.
 */
#define DI_FIELD_MAX 256
#define DI_RAW_MAX   (2 * DI_FIELD_MAX + 4)
#define DI_ASSERT_FITS(m)                                                                          \
	_Static_assert(sizeof(((struct eas_devinfo *)0)->m) <= DI_FIELD_MAX, #m " > DI_FIELD_MAX")
DI_ASSERT_FITS(model);
DI_ASSERT_FITS(imei);
DI_ASSERT_FITS(friendly_name);
DI_ASSERT_FITS(os);
DI_ASSERT_FITS(os_language);
DI_ASSERT_FITS(phone_number);
DI_ASSERT_FITS(user_agent);
DI_ASSERT_FITS(mobile_operator);
DI_ASSERT_FITS(enable_outbound_sms);

/*
 * Walk state. Depths are reader depths *inside* an element (the value of
 * r->depth right after its TAG_START), 0 when not inside one.
 */
struct di_walk {
	struct eas_devinfo *di;
	int found;
	int di_depth, set_depth, field_depth;
	const struct di_field *field; /* field being collected, NULL if none */
	uint8_t raw[DI_RAW_MAX];      /* leading bytes of the field's text, unsanitised */
	size_t raw_len, raw_total;
};

/*
 * Classify the UTF-8 sequence at s[0..n): returns its length if it is a
 * valid printable character, minus its length if it is a valid control
 * character (C0, DEL, C1), 0 if it is not valid UTF-8 (bad lead or
 * continuation, overlong, surrogate, > U+10FFFF, or cut short at n).
 * *need is the length the lead byte announces.
 */
static int utf8_class(const uint8_t *s, size_t n, size_t *need)
{
	uint8_t b = s[0];
	uint32_t cp, min;
	int len;

	*need = 1;
	if (b < 0x80)
		return b >= 0x20 && b != 0x7F ? 1 : -1;
	if (b >= 0xC2 && b <= 0xDF)
		len = 2, cp = b & 0x1F, min = 0x80;
	else if (b >= 0xE0 && b <= 0xEF)
		len = 3, cp = b & 0x0F, min = 0x800;
	else if (b >= 0xF0 && b <= 0xF4)
		len = 4, cp = b & 0x07, min = 0x10000;
	else
		return 0;
	*need = (size_t)len;
	if (n < (size_t)len)
		return 0;
	for (int i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return cp <= 0x9F ? -len : len; /* cp >= 0x80 here: C1 controls */
}

/* Sanitise w->raw into the field's buffer; see struct eas_devinfo for the rules. */
static void di_finish_field(struct di_walk *w)
{
	const struct di_field *f = w->field;
	char *dst = (char *)w->di + f->off;
	size_t i = 0, o = 0, need;

	while (i < w->raw_len) {
		int c = utf8_class(w->raw + i, w->raw_len - i, &need);
		/* A sequence cut by our raw buffer (not by the sender) is truncation. */
		if (!c && w->raw_len - i < need && w->raw_total > w->raw_len)
			break;
		size_t in = c > 0 ? (size_t)c : c < 0 ? (size_t)-c : 1;
		size_t out = c > 0 ? (size_t)c : 1;
		if (o + out > f->size - 1)
			break;
		if (c > 0)
			memcpy(dst + o, w->raw + i, out);
		else
			dst[o] = '?';
		o += out;
		i += in;
	}
	dst[o] = 0;
	if (i < w->raw_total)
		w->di->truncated |= f->bit;
	w->field = NULL;
}

static void di_text(struct di_walk *w, const uint8_t *s, size_t n)
{
	size_t room = sizeof(w->raw) - w->raw_len;
	size_t take = n < room ? n : room;

	memcpy(w->raw + w->raw_len, s, take);
	w->raw_len += take;
	w->raw_total += n;
}

static const struct di_field *di_lookup(int tag)
{
	for (size_t i = 0; i < sizeof(di_fields) / sizeof(di_fields[0]); i++)
		if (di_fields[i].tag == tag)
			return &di_fields[i];
	return NULL;
}

static void di_start(struct di_walk *w, const struct wbxml_token *t, int depth)
{
	const struct di_field *f;

	if (t->page != WBXML_PAGE_SETTINGS)
		return;
	if (t->tag == WBXML_SET_DEVICEINFORMATION && !w->di_depth) {
		w->found = 1;
		w->di_depth = t->has_content ? depth : 0;
		return;
	}
	if (t->tag == WBXML_SET_SET && w->di_depth && !w->set_depth && depth == w->di_depth + 1) {
		w->set_depth = t->has_content ? depth : 0;
		return;
	}
	if (!w->set_depth || w->field || depth != w->set_depth + 1 - !t->has_content)
		return;
	if (!(f = di_lookup(t->tag)))
		return;
	if (w->di->present & f->bit) {
		w->di->duplicate |= f->bit;
		return;
	}
	w->di->present |= f->bit;
	w->field = f;
	w->field_depth = depth;
	w->raw_len = w->raw_total = 0;
	if (!t->has_content)
		di_finish_field(w);
}

/* Called after an END token, with the reader's depth after it. */
static void di_end(struct di_walk *w, int depth)
{
	if (w->field && depth < w->field_depth)
		di_finish_field(w);
	if (w->set_depth && depth < w->set_depth)
		w->set_depth = 0;
	if (w->di_depth && depth < w->di_depth)
		w->di_depth = 0;
}

int wbxml_devinfo(const uint8_t *buf, size_t len, struct eas_devinfo *di, const char **err)
{
	struct wbxml_reader r;
	struct wbxml_token t;
	struct di_walk w = {.di = di};
	int rc;

	memset(di, 0, sizeof(*di));
	if (wbxml_reader_init(&r, buf, len) == 0) {
		while ((rc = wbxml_next(&r, &t)) == 1) {
			if (t.kind == WBXML_TAG_START)
				di_start(&w, &t, r.depth);
			else if (t.kind == WBXML_TAG_END)
				di_end(&w, r.depth);
			else if (w.field && r.depth == w.field_depth)
				di_text(&w, t.data, t.len);
		}
		if (rc == 0) {
			if (err)
				*err = NULL;
			return w.found;
		}
	}
	if (err)
		*err = r.err;
	return -1;
}
