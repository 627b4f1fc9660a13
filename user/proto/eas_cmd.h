/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * eas_cmd.h - the ActiveSync command set, shared by the query decoder, the
 * policy engine (command-scoped rules), answers and metrics.
 *
 * Values 0..22 are the MS-ASHTTP base64 "Command code" byte (2.2.1.1.1.1.2),
 * so a decoded base64 query maps 1:1. Plain-text-only commands follow from
 * 32. Everything stays below 64 so a uint64_t is a set of commands.
 */
#ifndef EG_EAS_CMD_H
#define EG_EAS_CMD_H

#include <stddef.h>
#include <stdint.h>

enum eas_cmd {
	EAS_CMD_SYNC = 0,
	EAS_CMD_SENDMAIL = 1,
	EAS_CMD_SMARTFORWARD = 2,
	EAS_CMD_SMARTREPLY = 3,
	EAS_CMD_GETATTACHMENT = 4,
	EAS_CMD_FOLDERSYNC = 9,
	EAS_CMD_FOLDERCREATE = 10,
	EAS_CMD_FOLDERDELETE = 11,
	EAS_CMD_FOLDERUPDATE = 12,
	EAS_CMD_MOVEITEMS = 13,
	EAS_CMD_GETITEMESTIMATE = 14,
	EAS_CMD_MEETINGRESPONSE = 15,
	EAS_CMD_SEARCH = 16,
	EAS_CMD_SETTINGS = 17,
	EAS_CMD_PING = 18,
	EAS_CMD_ITEMOPERATIONS = 19,
	EAS_CMD_PROVISION = 20,
	EAS_CMD_RESOLVERECIPIENTS = 21,
	EAS_CMD_VALIDATECERT = 22,
	/* plain-text only (legacy or newer than the base64 table) */
	EAS_CMD_GETHIERARCHY = 32,
	EAS_CMD_CREATECOLLECTION = 33,
	EAS_CMD_DELETECOLLECTION = 34,
	EAS_CMD_MOVECOLLECTION = 35,
	EAS_CMD_NOTIFY = 36,
	EAS_CMD_FIND = 37,
	EAS_CMD_PROXYLOGIN = 38,
	/* not commands of the protocol, but classes of request the gateway sees */
	EAS_CMD_OPTIONS = 60, /* HTTP OPTIONS on the EAS path */
	EAS_CMD_NONE = 61,    /* no command (e.g. autodiscover, bad query) */
	EAS_CMD_UNKNOWN = 62, /* a Cmd= value or code we do not know */
	EAS_CMD__COUNT = 63
};

#define EAS_CMD_BIT(c) (UINT64_C(1) << (unsigned)(c))

/* Canonical name ("MeetingResponse"); "Unknown" for values without one. */
const char *eas_cmd_name(int cmd);
/* Case-insensitive name -> enum value; EAS_CMD_UNKNOWN if not a command. */
int eas_cmd_parse(const char *s, size_t n);
/* Is this value a base64 command code (0..22 with a name)? */
int eas_cmd_is_base64_code(int code);

#endif
