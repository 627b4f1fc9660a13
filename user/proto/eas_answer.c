/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * eas_answer.c - see eas_answer.h.
 *
 * Token values are MS-ASWBXML code-page facts (cross-checked against the
 * libwbxml ActiveSync tables through xml2wbxml, and for Find, page 25,
 * against MS-ASWBXML 2.1.2.1.26 since libwbxml 0.11 lacks that page).
 */
#include "eas_answer.h"
#include "h1.h"

#include <stdio.h>
#include <string.h>

/* WBXML global tokens (MS-ASWBXML uses only these). */
#define WB_SWITCH_PAGE 0x00
#define WB_END	       0x01
#define WB_STR_I       0x03
#define WB_CONTENT     0x40 /* tag has content */

/* Code pages. */
enum {
	CP_AIRSYNC = 0,
	CP_MOVE = 5,
	CP_GETITEMESTIMATE = 6,
	CP_FOLDERHIERARCHY = 7,
	CP_MEETINGRESPONSE = 8,
	CP_RESOLVERECIPIENTS = 10,
	CP_VALIDATECERT = 11,
	CP_PING = 13,
	CP_PROVISION = 14,
	CP_SEARCH = 15,
	CP_SETTINGS = 18,
	CP_ITEMOPERATIONS = 20,
	CP_COMPOSEMAIL = 21,
	CP_FIND = 25,
};

struct envelope {
	uint8_t used; /* 0: the command has no status envelope */
	uint8_t page;
	uint8_t root;	/* root element token, without WB_CONTENT */
	uint8_t status; /* Status token on the same page */
};

static const struct envelope envelopes[EAS_CMD__COUNT] = {
    [EAS_CMD_SYNC] = {1, CP_AIRSYNC, 0x05, 0x0E},
    [EAS_CMD_SENDMAIL] = {1, CP_COMPOSEMAIL, 0x05, 0x12},
    [EAS_CMD_SMARTFORWARD] = {1, CP_COMPOSEMAIL, 0x06, 0x12},
    [EAS_CMD_SMARTREPLY] = {1, CP_COMPOSEMAIL, 0x07, 0x12},
    [EAS_CMD_FOLDERSYNC] = {1, CP_FOLDERHIERARCHY, 0x16, 0x0C},
    [EAS_CMD_FOLDERCREATE] = {1, CP_FOLDERHIERARCHY, 0x13, 0x0C},
    [EAS_CMD_FOLDERDELETE] = {1, CP_FOLDERHIERARCHY, 0x14, 0x0C},
    [EAS_CMD_FOLDERUPDATE] = {1, CP_FOLDERHIERARCHY, 0x15, 0x0C},
    [EAS_CMD_MOVEITEMS] = {1, CP_MOVE, 0x05, 0x0B},
    [EAS_CMD_GETITEMESTIMATE] = {1, CP_GETITEMESTIMATE, 0x05, 0x0E},
    [EAS_CMD_MEETINGRESPONSE] = {1, CP_MEETINGRESPONSE, 0x07, 0x0B},
    [EAS_CMD_SEARCH] = {1, CP_SEARCH, 0x05, 0x0C},
    [EAS_CMD_SETTINGS] = {1, CP_SETTINGS, 0x05, 0x06},
    [EAS_CMD_PING] = {1, CP_PING, 0x05, 0x07},
    [EAS_CMD_ITEMOPERATIONS] = {1, CP_ITEMOPERATIONS, 0x05, 0x0D},
    [EAS_CMD_PROVISION] = {1, CP_PROVISION, 0x05, 0x0B},
    [EAS_CMD_RESOLVERECIPIENTS] = {1, CP_RESOLVERECIPIENTS, 0x05, 0x07},
    [EAS_CMD_VALIDATECERT] = {1, CP_VALIDATECERT, 0x05, 0x0A},
    [EAS_CMD_FIND] = {1, CP_FIND, 0x05, 0x0A},
};

size_t eas_status_wbxml(enum eas_cmd cmd, int status, uint8_t *out, size_t cap)
{
	char digits[16];
	uint8_t buf[EAS_STATUS_WBXML_MAX];
	size_t n = 0;

	if ((unsigned)cmd >= EAS_CMD__COUNT || !envelopes[cmd].used || status < 0)
		return 0;
	const struct envelope *e = &envelopes[cmd];
	int dlen = 0; /* status >= 0: its decimal digits, no snprintf (every refusal) */
	char rev[16];
	do
		rev[dlen++] = (char)('0' + status % 10);
	while ((status /= 10) && dlen < (int)sizeof(rev));
	for (int i = 0; i < dlen; i++)
		digits[i] = rev[dlen - 1 - i];
	digits[dlen] = 0;

	buf[n++] = 0x03; /* WBXML 1.3 */
	buf[n++] = 0x01; /* public id: unknown */
	buf[n++] = 0x6A; /* charset UTF-8 */
	buf[n++] = 0x00; /* string table length */
	if (e->page != 0) {
		buf[n++] = WB_SWITCH_PAGE;
		buf[n++] = e->page;
	}
	buf[n++] = e->root | WB_CONTENT;
	buf[n++] = e->status | WB_CONTENT;
	buf[n++] = WB_STR_I;
	memcpy(buf + n, digits, (size_t)dlen + 1); /* STR_I is NUL-terminated */
	n += (size_t)dlen + 1;
	buf[n++] = WB_END; /* </Status> */
	buf[n++] = WB_END; /* </Command> */
	if (n > cap)
		return 0;
	memcpy(out, buf, n);
	return n;
}

int eas_http_status_for(int proto_x10, int eas_status, int http_fallback)
{
	int last_known;

	if (eas_status <= 0 || http_fallback == 441 || http_fallback == 451)
		return http_fallback;
	if (eas_status < 101) /* command-specific codes: always in the body */
		return 200;
	if (proto_x10 > 161)
		return 200;
	if (proto_x10 >= 160)
		last_known = 185;
	else if (proto_x10 >= 141)
		last_known = 177;
	else if (proto_x10 >= 140)
		last_known = 163;
	else
		return http_fallback; /* 12.1 and older: bare HTTP */
	return eas_status <= last_known ? 200 : http_fallback;
}

static int header_safe(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

size_t eas_options_headers(char *out, size_t cap, const char *versions, const char *commands)
{
	if (!versions)
		versions = EAS_DEFAULT_VERSIONS;
	if (!commands)
		commands = EAS_DEFAULT_COMMANDS;
	if (!header_safe(versions) || !header_safe(commands) || cap == 0)
		return 0;
	int n = snprintf(out, cap,
			 "Allow: OPTIONS,POST\r\n"
			 "MS-Server-ActiveSync: " EAS_SERVER_VERSION "\r\n"
			 "MS-ASProtocolVersions: %s\r\n"
			 "MS-ASProtocolCommands: %s\r\n"
			 "Public: OPTIONS,POST\r\n",
			 versions, commands);
	if (n < 0 || (size_t)n >= cap) {
		out[0] = 0;
		return 0;
	}
	return (size_t)n;
}

/*
 * Common status names (MS-ASCMD 2.2.2 / Z-Push zpushdefs.php for 101-177).
 * 178-185 follow the enum order observed in one Exchange build and are not
 * confirmed by the specification.
 */
static const char *const status_names[] = {
    "InvalidContent",				       /* 101 */
    "InvalidWBXML",				       /* 102 */
    "InvalidXML",				       /* 103 */
    "InvalidDateTime",				       /* 104 */
    "InvalidCombinationOfIDs",			       /* 105 */
    "InvalidIDs",				       /* 106 */
    "InvalidMIME",				       /* 107 */
    "DeviceIdMissingOrInvalid",			       /* 108 */
    "DeviceTypeMissingOrInvalid",		       /* 109 */
    "ServerError",				       /* 110 */
    "ServerErrorRetryLater",			       /* 111 */
    "ActiveDirectoryAccessDenied",		       /* 112 */
    "MailboxQuotaExceeded",			       /* 113 */
    "MailboxServerOffline",			       /* 114 */
    "SendQuotaExceeded",			       /* 115 */
    "MessageRecipientUnresolved",		       /* 116 */
    "MessageReplyNotAllowed",			       /* 117 */
    "MessagePreviouslySent",			       /* 118 */
    "MessageHasNoRecipient",			       /* 119 */
    "MailSubmissionFailed",			       /* 120 */
    "MessageReplyFailed",			       /* 121 */
    "AttachmentIsTooLarge",			       /* 122 */
    "UserHasNoMailbox",				       /* 123 */
    "UserCannotBeAnonymous",			       /* 124 */
    "UserPrincipalCouldNotBeFound",		       /* 125 */
    "UserDisabledForSync",			       /* 126 */
    "UserOnNewMailboxCannotSync",		       /* 127 */
    "UserOnLegacyMailboxCannotSync",		       /* 128 */
    "DeviceIsBlockedForThisUser",		       /* 129 */
    "AccessDenied",				       /* 130 */
    "AccountDisabled",				       /* 131 */
    "SyncStateNotFound",			       /* 132 */
    "SyncStateLocked",				       /* 133 */
    "SyncStateCorrupt",				       /* 134 */
    "SyncStateAlreadyExists",			       /* 135 */
    "SyncStateVersionInvalid",			       /* 136 */
    "CommandNotSupported",			       /* 137 */
    "VersionNotSupported",			       /* 138 */
    "DeviceNotFullyProvisionable",		       /* 139 */
    "RemoteWipeRequested",			       /* 140 */
    "LegacyDeviceOnStrictPolicy",		       /* 141 */
    "DeviceNotProvisioned",			       /* 142 */
    "PolicyRefresh",				       /* 143 */
    "InvalidPolicyKey",				       /* 144 */
    "ExternallyManagedDevicesNotAllowed",	       /* 145 */
    "NoRecurrenceInCalendar",			       /* 146 */
    "UnexpectedItemClass",			       /* 147 */
    "RemoteServerHasNoSSL",			       /* 148 */
    "InvalidStoredRequest",			       /* 149 */
    "ItemNotFound",				       /* 150 */
    "TooManyFolders",				       /* 151 */
    "NoFoldersFound",				       /* 152 */
    "ItemsLostAfterMove",			       /* 153 */
    "FailureInMoveOperation",			       /* 154 */
    "MoveCommandDisallowedForNonPersistentMoveAction", /* 155 */
    "MoveCommandInvalidDestinationFolder",	       /* 156 */
    NULL,					       /* 157 */
    NULL,					       /* 158 */
    NULL,					       /* 159 */
    "AvailabilityTooManyRecipients",		       /* 160 */
    "AvailabilityDLLimitReached",		       /* 161 */
    "AvailabilityTransientFailure",		       /* 162 */
    "AvailabilityFailure",			       /* 163 */
    "BodyPartPreferenceTypeNotSupported",	       /* 164 */
    "DeviceInformationRequired",		       /* 165 */
    "InvalidAccountId",				       /* 166 */
    "AccountSendDisabled",			       /* 167 */
    "IRM_FeatureDisabled",			       /* 168 */
    "IRM_TransientError",			       /* 169 */
    "IRM_PermanentError",			       /* 170 */
    "IRM_InvalidTemplateID",			       /* 171 */
    "IRM_OperationNotPermitted",		       /* 172 */
    "NoPicture",				       /* 173 */
    "PictureTooLarge",				       /* 174 */
    "PictureLimitReached",			       /* 175 */
    "BodyPart_ConversationTooLarge",		       /* 176 */
    "MaximumDevicesReached",			       /* 177 */
    "InvalidMimeBodyCombination",		       /* 178 */
    "InvalidSmartForwardParameters",		       /* 179 */
    "InvalidStartTime",				       /* 180 */
    "InvalidEndTime",				       /* 181 */
    "InvalidTimezoneRange",			       /* 182 */
    "InvalidDateTimeFormat",			       /* 183 */
    "InvalidTimezone",				       /* 184 */
    "InvalidRecipients",			       /* 185 */
};

#define STATUS_FIRST 101
#define STATUS_COUNT (sizeof(status_names) / sizeof(status_names[0]))

const char *eas_status_name(int status)
{
	if (status < STATUS_FIRST || (size_t)(status - STATUS_FIRST) >= STATUS_COUNT)
		return "Unknown";
	const char *s = status_names[status - STATUS_FIRST];
	return s ? s : "Unknown";
}

const char *eas_http_reason(int http_status)
{
	switch (http_status) {
	case 449: /* the phrase Z-Push and Horde send */
		return "Retry after sending a PROVISION command";
	case 451:
		return "Redirect";
	case 456:
		return "Blocked";
	case 457:
		return "Expired Password";
	default: {
		const char *p = h1_reason_phrase(http_status);
		return p ? p : "Unknown";
	}
	}
}
