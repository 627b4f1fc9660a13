/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * easctl - administer a running easgated over its control socket.
 *
 * The daemon does the work (so a change takes effect at once, for every
 * worker); easctl sends its arguments and prints the answer. Exit codes are
 * stable for scripts: 0 ok, 1 usage, 2 not found, 3 failed, 4 permission
 * denied, 5 daemon unreachable, 6 nothing to change (e.g. approving an OS
 * version that no incubation holds).
 *
 * `easctl certcheck --cert F --key K` also works without a daemon, to check
 * a certificate before deploying it, and `easctl admin passwd NAME ROLE`
 * writes the console's accounts file (the daemon re-reads it when it changes).
 */
#include "accounts.h"
#include "command.h"
#include "command_doc.h"
#include "control.h"
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define EXIT_UNREACHABLE 5

static void usage(FILE *f)
{
	fprintf(f, "usage: easctl [-s SOCKET] COMMAND [ARGS]   (easctl help COMMAND for details)\n"
		   "commands:");
	for (const struct command_doc *d = command_docs; d->name; d++)
		fprintf(f, " %s", d->name);
	fprintf(f, "\nsocket: -s, $EASGATE_CONTROL, or /run/easgate/control.sock\n");
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
			for (const struct command_doc *d = command_docs; d->name; d++)
				printf("\n%s", d->text);
			return 0;
		}
		const struct command_doc *d = command_doc_find(what);
		if (d) {
			fputs(d->text, stdout);
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
