/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* eas_cmd.c - see eas_cmd.h. */
#include "eas_cmd.h"

#include <strings.h>

static const char *const cmd_names[EAS_CMD__COUNT] = {
    [EAS_CMD_SYNC] = "Sync",
    [EAS_CMD_SENDMAIL] = "SendMail",
    [EAS_CMD_SMARTFORWARD] = "SmartForward",
    [EAS_CMD_SMARTREPLY] = "SmartReply",
    [EAS_CMD_GETATTACHMENT] = "GetAttachment",
    [EAS_CMD_FOLDERSYNC] = "FolderSync",
    [EAS_CMD_FOLDERCREATE] = "FolderCreate",
    [EAS_CMD_FOLDERDELETE] = "FolderDelete",
    [EAS_CMD_FOLDERUPDATE] = "FolderUpdate",
    [EAS_CMD_MOVEITEMS] = "MoveItems",
    [EAS_CMD_GETITEMESTIMATE] = "GetItemEstimate",
    [EAS_CMD_MEETINGRESPONSE] = "MeetingResponse",
    [EAS_CMD_SEARCH] = "Search",
    [EAS_CMD_SETTINGS] = "Settings",
    [EAS_CMD_PING] = "Ping",
    [EAS_CMD_ITEMOPERATIONS] = "ItemOperations",
    [EAS_CMD_PROVISION] = "Provision",
    [EAS_CMD_RESOLVERECIPIENTS] = "ResolveRecipients",
    [EAS_CMD_VALIDATECERT] = "ValidateCert",
    [EAS_CMD_GETHIERARCHY] = "GetHierarchy",
    [EAS_CMD_CREATECOLLECTION] = "CreateCollection",
    [EAS_CMD_DELETECOLLECTION] = "DeleteCollection",
    [EAS_CMD_MOVECOLLECTION] = "MoveCollection",
    [EAS_CMD_NOTIFY] = "Notify",
    [EAS_CMD_FIND] = "Find",
    [EAS_CMD_PROXYLOGIN] = "ProxyLogin",
    [EAS_CMD_OPTIONS] = "Options",
    [EAS_CMD_NONE] = "None",
    [EAS_CMD_UNKNOWN] = "Unknown",
};

const char *eas_cmd_name(int cmd)
{
	if (cmd < 0 || cmd >= EAS_CMD__COUNT || !cmd_names[cmd])
		return "Unknown";
	return cmd_names[cmd];
}

int eas_cmd_parse(const char *s, size_t n)
{
	for (int i = 0; i < EAS_CMD__COUNT; i++) {
		const char *name = cmd_names[i];
		if (!name || i == EAS_CMD_NONE || i == EAS_CMD_UNKNOWN)
			continue;
		size_t k = 0;
		while (name[k] && k < n)
			k++;
		if (k == n && !name[k] && !strncasecmp(name, s, n))
			return i;
	}
	return EAS_CMD_UNKNOWN;
}

int eas_cmd_is_base64_code(int code)
{
	return code >= 0 && code <= EAS_CMD_VALIDATECERT && cmd_names[code] != NULL;
}
