/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * eas.h - classify an Exchange ActiveSync request from its parsed HTTP head.
 *
 * Input is what the HTTP parser already split out: the path, the query
 * (everything after the first '?'), and each header as a (name, value) pair.
 * Every input is a borrowed (pointer, length) slice; nothing here keeps a
 * pointer into it. The result, struct eas_req, is a plain value with
 * fixed-size NUL-terminated fields, safe to copy, log (see the field notes)
 * and hand to the policy engine.
 *
 * Typical use, per request:
 *
 *	struct eas_req r;
 *	eas_req_init(&r);
 *	eas_parse_query(&r, query, query_len);            (any order with headers)
 *	for each header: eas_parse_header(&r, name, nlen, value, vlen);
 *	if (eas_finish(&r, is_options) < 0) answer r.err_status / r.err_eas_status
 *
 * Refusals carry the status a real Exchange server gives (HTTP 400, EAS
 * status 108 DeviceIdMissingOrInvalid / 109 DeviceTypeMissingOrInvalid);
 * eas_answer.h turns them into bytes on the wire.
 *
 * The command enum lives in eas_cmd.h (shared with the policy engine and
 * metrics); it is re-exported here.
 */
#ifndef EG_EAS_H
#define EG_EAS_H

#include <stddef.h>
#include <stdint.h>

#include "eas_cmd.h"
#include "h1.h"

/* Field limits (characters, excluding the terminating NUL). */
#define EAS_USER_MAX 256 /* User= / tag 8 / Basic user, after decoding */
/* Both 32: MS-ASHTTP's device-id is 1*32 characters and Exchange answers 108/109
 * beyond, the longest DeviceId a real client sends is a 32-digit hex GUID, and
 * the inventory, its datagrams and the throttle labels hold this many. */
#define EAS_DEVID_MAX	32
#define EAS_DEVTYPE_MAX 32
#define EAS_PARAM_MAX	256 /* CollectionId, ItemId, LongId, ... */
#define EAS_HDRVAL_MAX	512 /* User-Agent, X-MS-WL */

/* Which query form the request used. */
enum eas_form {
	EAS_FORM_NONE = 0,   /* no query at all (OPTIONS, or a broken POST) */
	EAS_FORM_PLAIN = 1,  /* ?Cmd=...&User=...&DeviceId=...&DeviceType=... */
	EAS_FORM_BASE64 = 2, /* MS-ASHTTP 2.2.1.1.1.1 binary layout, base64 */
};

enum eas_path {
	EAS_PATH_OTHER = 0,	   /* not ours: the relay must not treat it as EAS */
	EAS_PATH_EAS = 1,	   /* /Microsoft-Server-ActiveSync[/anything] */
	EAS_PATH_AUTODISCOVER = 2, /* /autodiscover[/anything] */
};

enum eas_auth {
	EAS_AUTH_NONE = 0, /* no Authorization header */
	EAS_AUTH_BASIC = 1,
	EAS_AUTH_NTLM = 2,
	EAS_AUTH_NEGOTIATE = 3,
	EAS_AUTH_BEARER = 4,
	EAS_AUTH_OTHER = 5,
};

/*
 * One classified request. Every char array is always NUL-terminated and
 * free of control bytes, but may hold UTF-8: log strings through
 * log_quote(). Nothing in here is a credential: of the Authorization header only the
 * scheme and (for Basic) the user name are kept; the password is never
 * copied out of the scratch buffer it is decoded into, and that buffer is
 * wiped before eas_parse_header returns.
 */
struct eas_req {
	enum eas_form form;
	enum eas_cmd cmd; /* final after eas_finish; EAS_CMD_NONE before */

	/* From the query (either form). */
	char user[EAS_USER_MAX + 1];		 /* User= (percent-decoded) or tag 8 */
	char device_id[EAS_DEVID_MAX + 1];	 /* see "DeviceId and DeviceType" */
	char device_type[EAS_DEVTYPE_MAX + 1];	 /* see "DeviceId and DeviceType" */
	char collection_id[EAS_PARAM_MAX + 1];	 /* CollectionId / tag 1 */
	char item_id[EAS_PARAM_MAX + 1];	 /* ItemId / tag 3 */
	char long_id[EAS_PARAM_MAX + 1];	 /* LongId / tag 4 */
	char occurrence[EAS_PARAM_MAX + 1];	 /* Occurrence / tag 6 */
	char attachment_name[EAS_PARAM_MAX + 1]; /* AttachmentName / tag 0 */
	uint16_t locale;			 /* base64 only; 0x0409 = en-US */
	uint8_t options;			 /* base64 tag 7 raw byte */
	uint8_t save_in_sent;			 /* SaveInSent=T or options & 0x01 */
	uint8_t accept_multipart;		 /* options & 0x02 or MS-ASAcceptMultiPart: T */

	/* Protocol version x10 (141 = "14.1"); 0 if unknown. Final after
	 * eas_finish: the base64 Protocol version byte wins over the
	 * MS-ASProtocolVersion header (MS-ASHTTP 2.2.1.1.2.6). */
	int proto;
	/* Policy key; final after eas_finish, same precedence as proto. */
	uint8_t has_policy_key;
	uint32_t policy_key;

	/* From headers. */
	char user_agent[EAS_HDRVAL_MAX + 1];
	char xmswl[EAS_HDRVAL_MAX + 1];
	enum eas_auth auth_scheme;
	char auth_user[EAS_USER_MAX + 1]; /* Basic only: the part before ':' */

	/*
	 * The effective user, computed by eas_finish: the Basic user if there
	 * is one (that is who the backend authenticates), else the User
	 * parameter. ASCII letters are lower-cased so that a client changing
	 * the case of its login (Exchange and AD compare user names
	 * case-insensitively) keeps the same steering and rate-limit key.
	 * Bytes >= 0x80 are kept as they are. Personal data: anything stored
	 * or put in a map is its SipHash (siphash.h), never the string.
	 */
	char identity[EAS_USER_MAX + 1];

	/* First refusal; err == NULL while the request is acceptable. */
	const char *err;    /* static reason, safe to log */
	int err_status;	    /* HTTP status to answer (400, ...) */
	int err_eas_status; /* EAS status (108, 109) or 0 */

	/* Set by the caller after eas_req_init (config strict_device_id): hold
	 * a plain-form DeviceId to Exchange's rule, 1..32 ASCII letters and
	 * digits, instead of the wider default (see eas_parse_query). */
	uint8_t strict_ids;

	/* Internal bookkeeping (eas.c only). */
	int hdr_proto;
	uint8_t hdr_has_policy_key;
	uint32_t hdr_policy_key;
	uint8_t q_has_policy_key;
	uint32_t q_policy_key;
	int q_proto;
	uint32_t seen_params;  /* plain parameters / base64 tags seen */
	uint32_t seen_headers; /* headers handled by eas_parse_header seen */
};

/* Bits of eas_devinfo.present / .truncated / .duplicate, one per field. */
enum eas_devinfo_field {
	EAS_DI_MODEL = 1u << 0,
	EAS_DI_IMEI = 1u << 1,
	EAS_DI_FRIENDLY_NAME = 1u << 2,
	EAS_DI_OS = 1u << 3,
	EAS_DI_OS_LANGUAGE = 1u << 4,
	EAS_DI_PHONE_NUMBER = 1u << 5,
	EAS_DI_USER_AGENT = 1u << 6,
	EAS_DI_MOBILE_OPERATOR = 1u << 7,
	EAS_DI_ENABLE_OUTBOUND_SMS = 1u << 8,
};

/*
 * What a phone says about itself in Settings:DeviceInformation/Set. Every
 * string is NUL-terminated valid UTF-8 without control characters: control
 * characters (C0, DEL, C1) and bytes that are not valid UTF-8 are replaced by
 * '?', because these values end up in logs, CSV and SQLite. A value longer
 * than its buffer is cut at a character boundary and flagged in `truncated`.
 * An element that is present but empty (<OS/>) sets its `present` bit with
 * an empty string. When a field occurs more than once the first value wins
 * and the field is flagged in `duplicate` (a client sending two Models is
 * worth a log line: the backend may pick the other one).
 */
struct eas_devinfo {
	char model[256], imei[256], friendly_name[256], os[256], os_language[64], phone_number[64],
	    user_agent[256], mobile_operator[128];
	char enable_outbound_sms[8]; /* "0"/"1" per MS-ASCMD; kept as sent */
	unsigned present;	     /* EAS_DI_* bits */
	unsigned truncated;	     /* EAS_DI_* bits: value was longer than its buffer */
	unsigned duplicate;	     /* EAS_DI_* bits: element seen again (ignored) */
};

/* Zero the struct and set cmd = EAS_CMD_NONE. Never fails. */
void eas_req_init(struct eas_req *r);

/*
 * Classify the request path (without the query; a '?' ends the path).
 * Matching is case-insensitive on the first path segment after
 * percent-decoding and RFC 3986 dot-segment removal, because the backend
 * (IIS) normalises the same way: "/Microsoft-Server-ActiveSync",
 * "/microsoft-server-activesync/default.eas", "/x/../Microsoft-Server-
 * ActiveSync" are EAS; "/autodiscover/autodiscover.xml" and anything else
 * under /autodiscover are AUTODISCOVER. Ambiguous paths (bad or NUL
 * escapes, an encoded '/' or '\' inside a segment, more than 64 segments)
 * are OTHER: the caller must refuse OTHER rather than relay it unpoliced.
 */
enum eas_path eas_classify_path(const char *path, size_t n);

/*
 * Parse the query string q[0..n) (after '?', without the fragment).
 *
 * Base64 form is assumed exactly when Z-Push would: the whole query matches
 * ^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})?$
 * and it is not a parameter named Cmd. It is decoded per MS-ASHTTP
 * 2.2.1.1.1.1 (version, command code, LE16 locale, DeviceId, policy key
 * length 0|4 + LE32, DeviceType, {tag,len,value}*).
 *
 * DeviceId bytes in base64 form are opaque ("a string or a GUID"): kept as
 * they are when they make a valid default-rule DeviceId (the spec's example
 * carries "v140Device", Nine sends "Nine342BA3F3E6C6"), otherwise hex-encoded
 * in upper case, as SOGo renders them and as Windows Phone sends the same
 * 16-byte ID in its plain-form requests, so both forms keep one identity.
 * More than 16 binary bytes do not fit 32 characters: 108. strict_ids does
 * not apply to this form.
 *
 * Plain form: k=v pairs split on '&', in any order, names case-insensitive,
 * names and values percent-decoded with '+' as space (as PHP and ASP.NET
 * decode them, so the gateway sees what the backend sees). Recognised names:
 * Cmd User DeviceId DeviceType CollectionId ItemId LongId Occurrence
 * AttachmentName SaveInSent; others are ignored. A recognised name twice,
 * a bad %-escape, a decoded NUL/control byte, a value longer than its
 * field: 400. Cmd=<unknown name> is accepted as EAS_CMD_UNKNOWN (the
 * policy decides); Cmd=Options never means OPTIONS.
 *
 * DeviceId and DeviceType, after percent-decoding (README, "Client
 * identifiers", has the clients and sources behind this rule): 1..32
 * printable ASCII characters (0x21..0x7e), except
 *   " \ ,   the quote and escape characters of log values, rule patterns,
 *           CSV and JSON, and the CSV separator (MS-ASHTTP: no commas);
 *   = + - @ as the first character: a spreadsheet opening the CSV export
 *           would run the value as a formula;
 * DeviceId also without ':' (it separates "user:DeviceId" in the personal
 * lists) and not "." or ".." (path components of their own); DeviceType
 * also without '-' (Exchange answers 109; no client sends one: Samsung drops
 * it from its model, SM-N900V -> SAMSUNGSMN900V). So control bytes, blanks,
 * bytes >= 0x80 and over-long values are refused: 400/108 or 400/109. With
 * strict_ids a plain DeviceId must be 1..32 letters/digits. Anything else
 * malformed -> 400. Missing DeviceId/DeviceType/Cmd is checked by
 * eas_finish (OPTIONS may omit them).
 *
 * Returns 0, or -1 with r->err set. On -1 parsing still continued, so the
 * fields that were valid (notably cmd) are filled for logging.
 * n == 0 is valid (form NONE).
 */
int eas_parse_query(struct eas_req *r, const char *q, size_t n);

/*
 * Feed one request header. Names are case-insensitive; leading/trailing
 * spaces and tabs of the value are ignored. Handled:
 *   User-Agent, X-MS-WL         stored (control bytes or > 512 chars: 400)
 *   MS-ASProtocolVersion        2.5 12.0 12.1 14.0 14.1 16.0 16.1, else 400
 *   X-MS-PolicyKey              decimal uint32, else 400
 *   MS-ASAcceptMultiPart        T/F
 *   Authorization               scheme; Basic: user part only (see struct)
 * A second copy of any handled header is refused (400): two Authorization
 * or User-Agent values would let the gateway and the backend disagree.
 * Other headers are ignored. Returns 0, or -1 with r->err set.
 */
int eas_parse_header(struct eas_req *r, const char *name, size_t nlen, const char *val,
		     size_t vlen);

/*
 * Finish classification once the query and all headers are in: resolve
 * proto and policy key, set cmd (EAS_CMD_OPTIONS when is_options), compute
 * identity, and check what a POST must carry: DeviceId (400/108),
 * DeviceType (400/109) and Cmd (400). Returns 0, or -1 when the request
 * must be refused (r->err set, possibly by an earlier call).
 */
int eas_finish(struct eas_req *r, int is_options);

/*
 * Classify a parsed HTTP request head m whose path eas_classify_path() said
 * is pk (EAS or AUTODISCOVER): r is initialised (strict_ids as the config
 * says), then the query (EAS paths only: Autodiscover carries none), every
 * header, and eas_finish (OPTIONS and Autodiscover need no DeviceId,
 * DeviceType or Cmd; an Autodiscover request's cmd is EAS_CMD_NONE). What
 * the relay runs on every request head. 0, or -1 with r->err,
 * r->err_status and r->err_eas_status set (the first refusal).
 */
int eas_request_from_h1(struct eas_req *r, const struct h1_msg *m, enum eas_path pk,
			int strict_ids);

/*
 * May this command be held open by the server for minutes (long poll)?
 * Only Ping here; a Sync with Wait/HeartbeatInterval can also hang, but
 * that is only visible in its WBXML body.
 */
int eas_cmd_is_hanging(enum eas_cmd cmd);

#endif
