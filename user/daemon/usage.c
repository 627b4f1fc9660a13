/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* usage.c - see usage.h. */
#include "usage.h"

#include <string.h>

const struct usage_opt usage_opts[] = {
    {'c', "config", "FILE", "configuration file (default: built-in defaults)"},
    {'t', "check-config", NULL, "check the configuration and certificates, then exit"},
    {0, "detach", NULL, "remove the XDP programs, links and pinned maps, exit"},
    {0, "db-migrate", "[=N]",
     "migrate the configured store's schema (to version N),\nthen exit (easctl db migrate "
     "does it in a running daemon)"},
    {0, "probe-kernel", NULL,
     "which kernel features easgated can use here, and why\nnot the others; no "
     "configuration needed (root)"},
    {0, "listen", "ADDR", "listen address (host:port, [v6]:port)"},
    {0, "tls-cert", "FILE", "PEM certificate chain (leaf first)"},
    {0, "tls-key", "FILE", "PEM private key"},
    {0, "trust-file", "FILE", "extra trust anchors for the chain check"},
    {0, "backend", "SPEC",
     "name=host:port[,prefix=/p][,health=0|/path][,reuse=never]\n(repeatable; replaces the "
     "configured backends)"},
    {0, "state-dir", "DIR", "inventory and steering secret"},
    {0, "control-socket", "P", "admin socket for easctl"},
    {0, "metrics", "ADDR", "Prometheus listener"},
    {0, "user", "USER", "run as USER after setup"},
    {'w', "workers", "N", "worker processes (0 = one per CPU)"},
    {'l', "log-level", "LEVEL", "error, warn, info, debug"},
    {'V', "version", NULL, "print the version, exit"},
    {'h', "help", NULL, "this list"},
    {0, NULL, NULL, NULL},
};

void usage_print(FILE *f)
{
	fprintf(f, "usage: easgated [options]\n");
	for (const struct usage_opt *o = usage_opts; o->name; o++) {
		char head[40];
		const char *arg = o->arg ? o->arg : "";
		snprintf(head, sizeof(head), "%c%c%c --%s%s%s", o->shortopt ? '-' : ' ',
			 o->shortopt ? o->shortopt : ' ', o->shortopt ? ',' : ' ', o->name,
			 arg[0] && arg[0] != '[' ? " " : "", arg);
		const char *t = o->text;
		size_t n = strcspn(t, "\n");
		fprintf(f, "  %-24s %.*s\n", head, (int)n, t);
		while (t[n] == '\n') {
			t += n + 1;
			n = strcspn(t, "\n");
			fprintf(f, "  %-24s %.*s\n", "", (int)n, t);
		}
	}
}
