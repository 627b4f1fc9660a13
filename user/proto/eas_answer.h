/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * eas_answer.h - what the gateway sends when it answers an EAS request
 * itself (blocked, quarantined, unprovisioned, throttled, malformed, OPTIONS)
 * instead of relaying it.
 *
 * Exchange's rule (reference sec. 2.3): for EAS >= 14.0, a refusal whose
 * status the client's version knows goes out as HTTP 200 with a WBXML body
 * <{Command} xmlns="{ns}"><Status>N</Status></{Command}>; otherwise as the
 * bare HTTP status with no body. So:
 *
 *	int http = eas_http_status_for(req.proto, 129, 403);
 *	size_t n = http == 200 ? eas_status_wbxml(req.cmd, 129, buf, sizeof(buf)) : 0;
 *	if (http == 200 && n == 0) http = 403;	(command without an envelope)
 *	-> "HTTP/1.1 <http> <eas_http_reason(http)>", and when n > 0
 *	   "Content-Type: " EAS_WBXML_CONTENT_TYPE plus the n bytes.
 */
#ifndef EG_EAS_ANSWER_H
#define EG_EAS_ANSWER_H

#include <stddef.h>
#include <stdint.h>

#include "eas_cmd.h"

#define EAS_WBXML_CONTENT_TYPE "application/vnd.ms-sync.wbxml"
/* Enough for any envelope eas_status_wbxml writes (22 bytes at most). */
#define EAS_STATUS_WBXML_MAX 32

/* Defaults for eas_options_headers (MS-ASHTTP 2.2.1.1.2.6 and the 3.2.5.2
 * example list, plus Find from 16.1). */
#define EAS_DEFAULT_VERSIONS "2.5,12.0,12.1,14.0,14.1,16.0,16.1"
#define EAS_DEFAULT_COMMANDS                                                                       \
	"Sync,SendMail,SmartForward,SmartReply,GetAttachment,GetHierarchy,CreateCollection,"       \
	"DeleteCollection,MoveCollection,FolderSync,FolderCreate,FolderDelete,FolderUpdate,"       \
	"MoveItems,GetItemEstimate,MeetingResponse,Search,Settings,Ping,ItemOperations,"           \
	"Provision,ResolveRecipients,ValidateCert,Find"
/* MS-Server-ActiveSync value; the spec tells clients not to act on it. */
#ifndef EAS_SERVER_VERSION
#define EAS_SERVER_VERSION "15.1"
#endif

/*
 * Write the status envelope for cmd into out[0..cap): WBXML header
 * 03 01 6A 00, SWITCH_PAGE to the command's code page (omitted for page 0,
 * the initial page, as in the MS-ASWBXML example), the root tag with
 * content, that page's Status tag, STR_I "<status>" in decimal, END END.
 * Commands: Sync, FolderSync/Create/Delete/Update, GetItemEstimate,
 * MoveItems, MeetingResponse, Search, Settings, Ping, ItemOperations,
 * Provision, ResolveRecipients, ValidateCert, SendMail/SmartForward/
 * SmartReply (ComposeMail), Find.
 * Returns the bytes written; 0 if the command has no envelope (e.g.
 * GetAttachment, OPTIONS, legacy commands), status < 0, or cap is too
 * small (nothing useful is written then).
 */
size_t eas_status_wbxml(enum eas_cmd cmd, int status, uint8_t *out, size_t cap);

/*
 * The HTTP status to send for a refusal with EAS status eas_status to a
 * client speaking proto_x10 (141 = 14.1; 0 = unknown): 200 (answer with
 * the envelope) when eas_status is 1..100 (command-specific, any version)
 * or within the version's known range (14.0: <= 163, 14.1: <= 177,
 * 16.0/16.1: <= 185, newer: all); otherwise http_fallback (e.g. 403 for a
 * blocked device on 12.1, 449 provisioning, 503 throttled). eas_status <= 0
 * and fallbacks 441/451 (Exchange never wraps those) give http_fallback.
 */
int eas_http_status_for(int proto_x10, int eas_status, int http_fallback);

/*
 * The headers of an OPTIONS answer, each line CRLF-terminated, into
 * out[0..cap) with a NUL after them: Allow, MS-Server-ActiveSync,
 * MS-ASProtocolVersions, MS-ASProtocolCommands, Public. versions/commands
 * are comma-separated lists; NULL selects the defaults above. Returns the
 * length written (without the NUL), or 0 if cap is too small or a list is
 * empty or contains control bytes (no header injection).
 */
size_t eas_options_headers(char *out, size_t cap, const char *versions, const char *commands);

/* Name of a common EAS status 101..185 for logs ("DeviceIsBlockedForThisUser"
 * for 129); "Unknown" for other values. Never NULL. */
const char *eas_status_name(int status);

/* Reason phrase for the HTTP statuses an EAS gateway sends (449 "Retry after
 * sending a PROVISION command", ...); "Unknown" otherwise. Never NULL. */
const char *eas_http_reason(int http_status);

#endif
