/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * easctl - administer a running easgated over its control socket.
 *
 * The daemon does the work (so a change takes effect at once, for every
 * worker); easctl sends its arguments and prints the answer. Exit codes are
 * stable for scripts: 0 ok, 1 usage, 2 not found, 3 failed, 4 permission
 * denied, 5 daemon unreachable.
 *
 * `easctl certcheck --cert F --key K` also works without a daemon, to check
 * a certificate before deploying it, and `easctl admin passwd NAME ROLE`
 * writes the console's accounts file (the daemon re-reads it when it changes).
 */
#include "accounts.h"
#include "command.h"
#include "control.h"
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define EXIT_UNREACHABLE 5

struct help {
	const char *cmd;
	const char *text;
};

static const struct help helps[] = {
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
		 "  OS versions seen, incubation state; approve lets an incubating version in.\n"},
    {"throttle", "easctl throttle [list [--all]]|show USER DEVICE_ID|forgive USER DEVICE_ID\n"
		 "  Throttled and looping devices (--all: every tracked device); forgive lifts\n"
		 "  a device's throttle and loop state at once.\n"},
    {"metrics", "easctl metrics\n  The Prometheus exposition, as served on admin.metrics.\n"},
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
    {"audit", "easctl audit [--limit N] [--before ID] [--format table|csv|json]\n"
	      "  Every change made with easctl or the console, newest first: when, on which\n"
	      "  node, who, what, before and after. Append-only. In a farm: the farm's\n"
	      "  changes, made on any node (a change the database refused has no line).\n"},
    {"admin", "easctl admin passwd NAME ROLE [--file PATH]\n"
	      "  Add a console account or set its password and role (viewer, helpdesk, admin).\n"
	      "  The password is read from the terminal (twice) or from the first line of stdin.\n"
	      "  PATH (default $EASGATE_ACCOUNTS or /etc/easgate/console.passwd) is written\n"
	      "  0600; a group- or world-readable file is refused.\n"},
    {"history", "easctl history [--hours N]\n"
		"  Requests per second by verdict, command and backend over the last hours "
		"(JSON).\n"},
    {"certcheck",
     "easctl certcheck [HOSTNAME]\n"
     "easctl certcheck --cert CHAIN.pem --key KEY.pem [--trust ROOT.pem] [--host NAME]\n"
     "  Chain complete to a trusted root, key matches, names cover HOSTNAME, expiry.\n"
     "  The second form runs locally, without a daemon.\n"},
    {NULL, NULL},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: easctl [-s SOCKET] COMMAND [ARGS]   (easctl help COMMAND for details)\n"
		   "commands: status backends reload devices device rules versions throttle "
		   "lists nodes db certcheck audit history metrics admin help\n"
		   "socket: -s, $EASGATE_CONTROL, or /run/easgate/control.sock\n");
}

static int local_certcheck(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL, *trust = "", *host = NULL;
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc) {
			fprintf(stderr, "easctl: %s needs a value\n", argv[i]);
			return 1;
		}
		if (!strcmp(argv[i], "--cert"))
			cert = argv[++i];
		else if (!strcmp(argv[i], "--key"))
			key = argv[++i];
		else if (!strcmp(argv[i], "--trust"))
			trust = argv[++i];
		else if (!strcmp(argv[i], "--host"))
			host = argv[++i];
		else {
			fprintf(stderr, "easctl: unknown option %s\n", argv[i]);
			return 1;
		}
	}
	if (!cert || !key) {
		fprintf(stderr, "easctl: certcheck needs --cert and --key\n");
		return 1;
	}
	struct tls_chain_report r;
	int rc = tls_check_chain(cert, key, trust, host, 30, &r);
	printf("%s: %s\n  subject: %s\n  issuer:  %s\n  names:   %s\n  chain:   %d "
	       "certificates%s\n  expires: in %ld days\n",
	       cert, rc == 0 ? "OK" : "PROBLEM", r.subject, r.issuer, r.names, r.chain_len,
	       r.chain_complete ? ", complete" : "", r.min_days_left);
	if (r.problem[0])
		printf("  problem: %s\n", r.problem);
	if (r.warning[0])
		printf("  warning: %s\n", r.warning);
	/* Expiring soon is usable but needs action: scripts and monitoring see
	 * it by the exit code. */
	return rc == 0 && r.min_days_left >= 30 ? 0 : 3;
}

/* One line from the terminal without echo, or from stdin when it is not one. */
static int read_password(const char *prompt, char *out, size_t outsz)
{
	int tty = isatty(STDIN_FILENO);
	struct termios old, quiet;
	if (tty) {
		fprintf(stderr, "%s", prompt);
		tcgetattr(STDIN_FILENO, &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	int ok = fgets(out, (int)outsz, stdin) != NULL;
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fprintf(stderr, "\n");
	}
	out[strcspn(out, "\r\n")] = 0;
	return ok ? 0 : -1;
}

static int admin_passwd(int argc, char **argv)
{
	const char *path = getenv("EASGATE_ACCOUNTS");
	if (!path)
		path = "/etc/easgate/console.passwd";
	if (argc == 6 && !strcmp(argv[4], "--file"))
		path = argv[5];
	else if (argc != 4) {
		fprintf(stderr, "usage: easctl admin passwd NAME ROLE [--file PATH]\n");
		return 1;
	}
	int role = command_role_parse(argv[3]);
	if (role < 0) {
		fprintf(stderr, "easctl: ROLE is viewer, helpdesk or admin\n");
		return 1;
	}
	char pw[256], again[256], err[512];
	if (read_password("password: ", pw, sizeof(pw)) < 0) {
		fprintf(stderr, "easctl: no password given\n");
		return 1;
	}
	if (isatty(STDIN_FILENO) &&
	    (read_password("again: ", again, sizeof(again)) < 0 || strcmp(pw, again))) {
		fprintf(stderr, "easctl: the passwords differ\n");
		return 1;
	}
	int rc = accounts_set(path, argv[2], role, pw, err, sizeof(err));
	memset(pw, 0, sizeof(pw));
	memset(again, 0, sizeof(again));
	if (rc < 0) {
		fprintf(stderr, "easctl: %s\n", err);
		return 3;
	}
	printf("%s: %s is %s\n", path, argv[2], argv[3]);
	return 0;
}

int main(int argc, char **argv)
{
	const char *sock = getenv("EASGATE_CONTROL");
	int i = 1;
	if (!sock)
		sock = "/run/easgate/control.sock";
	while (i < argc && argv[i][0] == '-') {
		if ((!strcmp(argv[i], "-s") || !strcmp(argv[i], "--socket")) && i + 1 < argc) {
			sock = argv[i + 1];
			i += 2;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 1;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 1;
	}
	int n = argc - i;
	char **args = argv + i;
	if (!strcmp(args[0], "help") ||
	    (n > 1 && (!strcmp(args[n - 1], "--help") || !strcmp(args[n - 1], "-h")))) {
		const char *what = !strcmp(args[0], "help") ? (n > 1 ? args[1] : NULL) : args[0];
		if (!what) {
			usage(stdout);
			for (const struct help *h = helps; h->cmd; h++)
				printf("\n%s", h->text);
			return 0;
		}
		for (const struct help *h = helps; h->cmd; h++)
			if (!strcmp(h->cmd, what)) {
				fputs(h->text, stdout);
				return 0;
			}
		fprintf(stderr, "easctl: no help for '%s'\n", what);
		return 1;
	}
	if (!strcmp(args[0], "certcheck") && n > 1 && !strncmp(args[1], "--", 2))
		return local_certcheck(n, args);
	if (!strcmp(args[0], "admin")) {
		if (n >= 2 && !strcmp(args[1], "passwd"))
			return admin_passwd(n, args);
		fprintf(stderr, "usage: easctl admin passwd NAME ROLE [--file PATH]\n");
		return 1;
	}
	struct sbuf out = {0};
	int code = control_call(sock, n, args, &out);
	if (code < 0) {
		fprintf(stderr, "easctl: cannot reach easgated at %s: %s\n", sock, strerror(errno));
		return EXIT_UNREACHABLE;
	}
	if (code == 0) {
		if (out.len)
			fwrite(out.p, 1, out.len, stdout);
	} else {
		fprintf(stderr, "easctl: %.*s%s", (int)out.len, out.p ? out.p : "",
			out.len && out.p[out.len - 1] == '\n' ? "" : "\n");
	}
	sbuf_free(&out);
	return code;
}
