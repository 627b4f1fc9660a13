/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * command_doc.c - what each easctl command does, written once: easctl help,
 * the daemon's help command, easctl(8) (tools/eg-doc.c) and the bash
 * completion (which reads easctl help) all come from this table.
 *
 * Format, which the completion and the man page generator read: the usage
 * lines first, each starting "easctl NAME " (a line indented 4+ spaces
 * continues the one above), then the description, indented two spaces.
 */
#include "command_doc.h"

#include <string.h>

const struct command_doc command_docs[] = {
    {"status", "easctl status\n  Daemon pid, config generation, workers, open connections and "
	       "long-polls, reloads.\n"},
    {"backends", "easctl backends [--format json]\n  Each backend: address, health, connections, "
		 "requests, failures, last error.\n"},
    {"reload", "easctl reload\n  Re-read the configuration, rules and certificates. A broken "
	       "file is refused\n  and the running configuration stays in force (exit 3).\n"},
    {"devices",
     "easctl devices [--user U] [--os GLOB] [--os-regex RE] [--state S] [--device-id D]\n"
     "               [--limit N] [--format table|csv|json] [--unauthenticated]\n"
     "  List the inventory, like Get-MobileDevice. --os 'iOS 6.1*' matches DeviceOS\n"
     "  (or the OS decoded from the User-Agent before DeviceInformation arrived).\n"
     "  --state is Allowed, Blocked or Quarantined. A device is in the inventory once a\n"
     "  backend accepted its credentials; --unauthenticated lists instead the devices\n"
     "  seen without that (most recent first; a bounded table, see the README).\n"},
    {"device", "easctl device show|history|allow|approve|block|quarantine|clear|remove DEVICE_ID\n"
	       "    [--user U] [--format table|json]\n"
	       "  Per-device decisions (Exchange's personal allow/block lists). approve = allow.\n"
	       "  clear returns the device to the rules. Effective on its next request. history\n"
	       "  lists its recent decisions and answers (since the daemon started).\n"},
    {"rules", "easctl rules list\n"
	      "easctl rules add '<allow|block|quarantine> <Characteristic> <op> \"pattern\" "
	      "[cmd C,...] [name \"n\"]'\n"
	      "easctl rules remove dbID\n"
	      "easctl rules dryrun '<allow|block|quarantine> ...' [--format table|json]\n"
	      "easctl rules test [--user U] [--device-id D] [--type T] [--model M] [--os OS]\n"
	      "                  [--ua UA] [--xmswl W] [--cmd CMD] [--first-seen-days-ago N]\n"
	      "easctl rules precedence\n"
	      "  Characteristics: DeviceType DeviceModel DeviceOS UserAgent XMSWL User DeviceId.\n"
	      "  Ops: is (exact, case-insensitive), like (glob), matches (regex),\n"
	      "       < <= > >= == != (version, DeviceOS only: \"iOS 7.0.2\").\n"
	      "  test prints which rule decides for that device and command, and why; dryrun\n"
	      "  lists the inventory devices a rule would change, and how, without saving it.\n"},
    {"versions", "easctl versions [list [--incubating]|incubating|approve 'OS'|revoke 'OS']\n"
		 "  OS versions seen, incubation state; approve lets an incubating version in\n"
		 "  (or one not seen yet, ahead of its release day), revoke undoes an approval.\n"
		 "  Either is refused (exit 6) where it would change nothing.\n"},
    {"throttle", "easctl throttle [list [--all]]|show USER DEVICE_ID|forgive USER DEVICE_ID\n"
		 "  Throttled and looping devices (--all: every tracked device); forgive lifts\n"
		 "  a device's throttle and loop state at once.\n"},
    {"lists", "easctl lists [show]\n"
	      "easctl lists add|remove blocked|allowed 'DeviceId' | 'user:DeviceId'\n"
	      "  Personal lists kept at run time (the config file's are listed too), as\n"
	      "  Exchange's ActiveSyncBlockedDeviceIDs/AllowedDeviceIDs. Effective on the next\n"
	      "  request; in a farm, on every node.\n"},
    {"nodes",
     "easctl nodes\n  The farm's nodes: version, config generation, last heartbeat, requests/s,\n"
     "  journal; 'stale' after three missed heartbeats. With store = \"sqlite\": this node.\n"},
    {"db",
     "easctl db status\n"
     "easctl db migrate\n"
     "  The store: SQLite file or farm database, up or down and since when, schema\n"
     "  versions, the journal of changes waiting for the database. migrate applies the\n"
     "  schema migrations this binary knows (needed when postgresql.auto_migrate = false).\n"},
    {"certcheck",
     "easctl certcheck [HOSTNAME]\n"
     "easctl certcheck --cert CHAIN.pem --key KEY.pem [--trust ROOT.pem] [--host NAME]\n"
     "  Chain complete to a trusted root, key matches, names cover HOSTNAME, expiry.\n"
     "  The second form runs locally, without a daemon.\n"},
    {"audit", "easctl audit [--limit N] [--before ID] [--format table|csv|json]\n"
	      "  Every change made with easctl or the console, newest first: when, on which\n"
	      "  node, who, what, before and after. Append-only. In a farm: the farm's\n"
	      "  changes, made on any node (a change the database refused has no line).\n"},
    {"history", "easctl history [--hours N]\n"
		"  Requests per second by verdict, command and backend over the last hours "
		"(JSON).\n"},
    {"metrics", "easctl metrics\n  The Prometheus exposition, as served on admin.metrics.\n"},
    {"admin", "easctl admin passwd NAME ROLE [--file PATH]\n"
	      "  Add a console account or set its password and role (viewer, helpdesk, admin).\n"
	      "  The password is read from the terminal (twice) or from the first line of stdin.\n"
	      "  PATH (default $EASGATE_ACCOUNTS or /etc/easgate/console.passwd) is written\n"
	      "  0600; a group- or world-readable file is refused.\n"},
    {"help", "easctl help [COMMAND]\n  The commands, or one command's usage and what it does "
	     "(also: easctl COMMAND\n  --help).\n"},
    {NULL, NULL},
};

const struct command_doc *command_doc_find(const char *name)
{
	for (const struct command_doc *d = command_docs; d->name; d++)
		if (!strcmp(d->name, name))
			return d;
	return NULL;
}
