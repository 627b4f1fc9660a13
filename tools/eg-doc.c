/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * eg-doc - the manual pages and the sample configuration, from the tables
 * the programs themselves run on (make builds them into build/man/):
 *
 *   eg-doc man TEMPLATE VERSION DATE   a page: TEMPLATE (docs/man/NAME.in) with
 *                                      @KEYS@, @COMMANDS@, @OPTIONS@ lines
 *                                      replaced from config_keys.c,
 *                                      command_doc.c, usage.c
 *   eg-doc sample HEAD                 the commented sample easgate.conf
 *                                      (HEAD: its opening comment, as is)
 *   eg-doc keys                        every key the parser accepts, one a line
 *   eg-doc keys-in FILE                the keys FILE sets (a list's first entry)
 *   eg-doc diff FILE                   the keys whose value in FILE differs from
 *                                      the built-in default (exit 1 if any),
 *                                      except those the table marks as examples
 *
 * Exit 2 on a usage error or a file that does not load.
 */
#include "command_doc.h"
#include "config.h"
#include "config_keys.h"
#include "sbuf.h"
#include "throttle.h"
#include "usage.h"

#include <ctype.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- roff -------------------------------------------------------------------------- */

/* Text as roff: backslashes and hyphens escaped, no line may start with a
 * control character, '\n' ends a paragraph (pp: what starts the next). */
static void roff(FILE *f, const char *s, const char *pp)
{
	int bol = 1;
	for (; *s; s++) {
		if (bol && (*s == '.' || *s == '\''))
			fputs("\\&", f);
		bol = 0;
		if (*s == '\\')
			fputs("\\e", f);
		else if (*s == '-')
			fputs("\\-", f);
		else if (*s == '\n') {
			fprintf(f, "\n%s\n", pp);
			bol = 1;
		} else
			fputc(*s, f);
	}
}

static void roff_bold(FILE *f, const char *s)
{
	fputs("\\fB", f);
	roff(f, s, "");
	fputs("\\fR", f);
}

/* --- configuration keys ------------------------------------------------------------ */

struct bases {
	struct gw_config def; /* config_defaults() */
	struct cfg_backend backend;
};

static const void *key_base(const struct cfg_key *k, const struct gw_config *c,
			    const struct cfg_backend *backend)
{
	switch (k->base) {
	case CKB_ROOT:
		return c;
	case CKB_CERT:
		return &c->tls.certs[0];
	case CKB_BACKEND:
		return backend;
	case CKB_TCLASS:
		return &c->throttle.classes[0];
	}
	return c;
}

static const char *type_text(const struct cfg_key *k, char *buf, size_t n)
{
	static const char *const names[] = {
	    [CK_GROUP] = "group",  [CK_LIST] = "list of groups", [CK_STR] = "string",
	    [CK_UINT] = "integer", [CK_INT] = "integer",	 [CK_BOOL] = "boolean",
	    [CK_SECS] = "seconds", [CK_MINUTES] = "minutes",	 [CK_NUM] = "number",
	    [CK_ENUM] = NULL,	   [CK_OTHER] = "value",
	};
	if (k->type_text)
		return k->type_text;
	if (k->type != CK_ENUM)
		return names[k->type];
	snprintf(buf, n, "%s", k->choices);
	for (char *p = buf; (p = strchr(p, '|'));)
		*p = '/';
	return buf;
}

/* The default as the page states it: in words, or the value written. */
static void default_text(const struct cfg_key *k, const struct bases *b, struct sbuf *out)
{
	if (k->def)
		sbuf_puts(out, k->def);
	else if (config_key_format(k, key_base(k, &b->def, &b->backend), out) < 0)
		sbuf_puts(out, "");
}

static void man_keys(FILE *f, const struct bases *b)
{
	for (size_t i = 0; i < config_keys_count; i++) {
		const struct cfg_key *k = &config_keys[i];
		char tb[128];
		struct sbuf d = {0};
		int top = !strchr(k->path, '.');
		if (top && (k->type == CK_GROUP || k->type == CK_LIST)) {
			fputs(".SS ", f);
			roff(f, k->path, "");
			fputs("\n", f);
			roff(f, k->doc, ".PP");
			if (k->def) {
				fputs(" Default: ", f);
				roff(f, k->def, "");
				fputs(".", f);
			}
			fputs("\n", f);
			continue;
		}
		fputs(".TP\n", f);
		roff_bold(f, k->path);
		fputs(" (", f);
		roff(f, type_text(k, tb, sizeof(tb)), "");
		default_text(k, b, &d);
		if (d.len && k->type != CK_GROUP && k->type != CK_LIST) {
			fputs("; default ", f);
			/* a cipher list is one long word: it may break after a ':' */
			sbuf_put(&d, "", 1);
			for (char *c = d.p, *e; *c; c = e + 1) {
				e = c + strcspn(c, ":");
				char part[1024];
				snprintf(part, sizeof(part), "%.*s", (int)(e - c), c);
				roff(f, part, "");
				if (!*e)
					break;
				fputs(":\\:", f);
			}
		}
		fputs(")\n", f);
		roff(f, k->doc, ".IP");
		fputs("\n", f);
		sbuf_free(&d);
	}
}

/* One comment block, words wrapped to 79 columns; '\n' starts a new line.
 * pre: the line's start (indentation, and "# " in a commented-out block). */
static void comment(FILE *f, const char *pre, const char *text)
{
	int width = 77 - (int)strlen(pre), col = 0;
	for (const char *p = text; *p;) {
		if (*p == '\n') {
			if (col)
				fputs("\n", f);
			col = 0;
			p++;
			continue;
		}
		size_t n = strcspn(p, " \n");
		if (col && col + 1 + (int)n > width) {
			fputs("\n", f);
			col = 0;
		}
		if (!col)
			fprintf(f, "%s#", pre);
		fprintf(f, " %.*s", (int)n, p);
		col += 1 + (int)n;
		p += n;
		while (*p == ' ')
			p++;
	}
	if (col)
		fputs("\n", f);
}

/* The keys of the group or list at parent, each after its description.
 * Keys without a default to write (and all of a block they are in) are
 * commented out, "# " first, so that removing it leaves a valid file. */
static void sample_group(FILE *f, const char *parent, const char *pre, const struct bases *b)
{
	int first = 1;
	for (size_t i = 0; i < config_keys_count; i++) {
		const struct cfg_key *k = &config_keys[i];
		char p[128], inner[128], inner2[128];
		if (!config_key_is_child(k, parent))
			continue;
		/* pre is "# ..." inside a commented-out block */
		if ((k->flags & CKF_COMMENTED) && pre[0] != '#')
			snprintf(p, sizeof(p), "%s# ", pre);
		else
			snprintf(p, sizeof(p), "%s", pre);
		snprintf(inner, sizeof(inner), "%s  ", p);
		snprintf(inner2, sizeof(inner2), "%s    ", p);
		if (!first || !*parent)
			fputs("\n", f);
		first = 0;
		struct sbuf doc = {0}, def = {0};
		sbuf_puts(&doc, k->doc);
		default_text(k, b, &def);
		if ((k->flags & (CKF_EXAMPLE | CKF_COMMENTED)) && def.len)
			sbuf_printf(&doc, " Default: %s.", def.p);
		sbuf_put(&doc, "", 1);
		comment(f, pre, doc.p);
		sbuf_free(&doc);
		sbuf_free(&def);
		const char *leaf = config_key_leaf(k);
		if (k->type == CK_GROUP) {
			fprintf(f, "%s%s = {\n", p, leaf);
			sample_group(f, k->path, inner, b);
			fprintf(f, "%s};\n", p);
		} else if (k->type == CK_LIST) {
			fprintf(f, "%s%s = (\n%s{\n", p, leaf, inner);
			sample_group(f, k->path, inner2, b);
			fprintf(f, "%s}%s\n", inner, k->more ? "," : "");
			if (k->more)
				fprintf(f, "%s%s\n", inner, k->more);
			fprintf(f, "%s);\n", p);
		} else {
			struct sbuf v = {0};
			if (k->sample)
				sbuf_puts(&v, k->sample);
			else if (config_key_format(k, key_base(k, &b->def, &b->backend), &v) < 0) {
				fprintf(stderr, "eg-doc: %s has neither a value nor a sample\n",
					k->path);
				exit(2);
			}
			sbuf_put(&v, "", 1);
			fprintf(f, "%s%s = %s;\n", p, leaf, v.p);
			sbuf_free(&v);
		}
	}
}

/* The setting at a key's path in a file; a list stands for its first entry. */
static config_setting_t *lookup(config_t *lc, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	config_setting_t *s = config_root_setting(lc);
	for (char *save = NULL, *part = strtok_r(buf, ".", &save); part && s;
	     part = strtok_r(NULL, ".", &save)) {
		if (config_setting_is_list(s))
			s = config_setting_get_elem(s, 0);
		s = s && config_setting_is_group(s) ? config_setting_get_member(s, part) : NULL;
	}
	return s;
}

static int keys_in(const char *path)
{
	config_t lc;
	config_init(&lc);
	if (config_read_file(&lc, path) != CONFIG_TRUE) {
		fprintf(stderr, "eg-doc: %s:%d: %s\n", path, config_error_line(&lc),
			config_error_text(&lc));
		return 2;
	}
	for (size_t i = 0; i < config_keys_count; i++)
		if (lookup(&lc, config_keys[i].path))
			printf("%s\n", config_keys[i].path);
	config_destroy(&lc);
	return 0;
}

/* Is k, or a group or list it is in, an example rather than a default? */
static int example(const struct cfg_key *k)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", k->path);
	for (;;) {
		const struct cfg_key *x = config_key_find(buf);
		if (x && (x->flags & CKF_EXAMPLE) && x->type != CK_LIST)
			return 1;
		char *dot = strrchr(buf, '.');
		if (!dot)
			return 0;
		*dot = 0;
	}
}

static int diff(const char *path, const struct bases *b)
{
	static struct gw_config c;
	struct config_errors errs = {0};
	config_defaults(&c);
	if (config_load(&c, path, &errs) < 0) {
		for (int i = 0; i < errs.n; i++)
			fprintf(stderr, "eg-doc: %s\n", errs.msg[i]);
		return 2;
	}
	int n = 0;
	for (size_t i = 0; i < config_keys_count; i++) {
		const struct cfg_key *k = &config_keys[i];
		struct sbuf want = {0}, got = {0};
		if (example(k))
			continue;
		/* A list entry is compared with what a new entry starts from. */
		if (config_key_format(k, key_base(k, &b->def, &b->backend), &want) < 0 ||
		    config_key_format(k, key_base(k, &c, &c.backends[0]), &got) < 0)
			goto next;
		sbuf_put(&want, "", 1);
		sbuf_put(&got, "", 1);
		if (strcmp(want.p, got.p)) {
			printf("%s: built in %s, file %s\n", k->path, want.p, got.p);
			n++;
		}
	next:
		sbuf_free(&want);
		sbuf_free(&got);
	}
	config_free(&c);
	return n ? 1 : 0;
}

/* --- easctl commands and easgated options ------------------------------------------ */

static void man_commands(FILE *f)
{
	for (const struct command_doc *d = command_docs; d->name; d++) {
		const char *l = d->text;
		int in_desc = 0;
		fputs(".TP\n", f);
		while (*l) {
			size_t n = strcspn(l, "\n");
			char line[512];
			snprintf(line, sizeof(line), "%.*s", (int)n, l);
			if (!in_desc && !strncmp(line, "easctl ", 7)) {
				if (l != d->text)
					fputs("\n.TQ\n", f);
				roff_bold(f, line);
			} else if (!in_desc && !strncmp(line, "    ", 4)) {
				const char *t = line;
				while (*t == ' ')
					t++;
				fputs(" ", f);
				roff_bold(f, t);
			} else {
				const char *t = line;
				while (*t == ' ')
					t++;
				fputs(in_desc ? "\n" : "\n", f);
				in_desc = 1;
				roff(f, t, "");
			}
			l += n + (l[n] == '\n');
		}
		fputs("\n", f);
	}
}

static void man_options(FILE *f)
{
	for (const struct usage_opt *o = usage_opts; o->name; o++) {
		fputs(".TP\n", f);
		if (o->shortopt)
			fprintf(f, "\\fB\\-%c\\fR, ", o->shortopt);
		fputs("\\fB\\-\\-", f);
		roff(f, o->name, "");
		fputs("\\fR", f);
		if (o->arg) {
			fputs(o->arg[0] == '[' ? "" : " ", f);
			fputs("\\fI", f);
			roff(f, o->arg, "");
			fputs("\\fR", f);
		}
		fputs("\n", f);
		/* --help's line breaks are for a terminal: one paragraph here. */
		for (const char *t = o->text; *t; t++) {
			if (*t == '\n')
				fputc(' ', f);
			else if (*t == '\\')
				fputs("\\e", f);
			else if (*t == '-')
				fputs("\\-", f);
			else
				fputc(*t, f);
		}
		fputs(".\n", f);
	}
}

static int man(const char *tmpl, const char *version, const char *date, const struct bases *b)
{
	FILE *in = fopen(tmpl, "r");
	char line[4096];
	if (!in) {
		perror(tmpl);
		return 2;
	}
	while (fgets(line, sizeof(line), in)) {
		char *at;
		if (!strcmp(line, "@KEYS@\n"))
			man_keys(stdout, b);
		else if (!strcmp(line, "@COMMANDS@\n"))
			man_commands(stdout);
		else if (!strcmp(line, "@OPTIONS@\n"))
			man_options(stdout);
		else if ((at = strstr(line, "@VERSION@ @DATE@"))) {
			/* the .TH line */
			fprintf(stdout, "%.*s%s\" \"easgate %s%s", (int)(at - line), line, date,
				version, at + strlen("@VERSION@ @DATE@"));
		} else
			fputs(line, stdout);
	}
	fclose(in);
	return 0;
}

static int sample(const char *head, const struct bases *b)
{
	FILE *in = fopen(head, "r");
	char line[1024];
	if (!in) {
		perror(head);
		return 2;
	}
	while (fgets(line, sizeof(line), in))
		fputs(line, stdout);
	fclose(in);
	sample_group(stdout, "", "", b);
	return 0;
}

int main(int argc, char **argv)
{
	static struct bases b;
	config_defaults(&b.def);
	config_backend_defaults(&b.backend);
	/* The defaults must not depend on the machine the pages are made on. */
	snprintf(b.def.node_name, sizeof(b.def.node_name), "%s", "");
	for (size_t i = 0; i < config_keys_count; i++)
		if (!config_keys[i].doc || !config_keys[i].doc[0]) {
			fprintf(stderr, "eg-doc: %s has no description (config_keys.c)\n",
				config_keys[i].path);
			return 2;
		}
	if (argc == 5 && !strcmp(argv[1], "man"))
		return man(argv[2], argv[3], argv[4], &b);
	if (argc == 3 && !strcmp(argv[1], "sample"))
		return sample(argv[2], &b);
	if (argc == 2 && !strcmp(argv[1], "keys")) {
		for (size_t i = 0; i < config_keys_count; i++)
			printf("%s\n", config_keys[i].path);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "keys-in"))
		return keys_in(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "diff")) {
		config_defaults(&b.def); /* the node name as the file's load has it */
		return diff(argv[2], &b);
	}
	fprintf(stderr, "usage: eg-doc man TEMPLATE VERSION DATE | sample HEAD | keys | "
			"keys-in FILE | diff FILE\n");
	return 2;
}
