/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* config_lines.c - see config_lines.h. */
#include "config_lines.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct config_lines {
	char *text;  /* the file, each '\n' replaced by NUL */
	char **line; /* line[i] = start of line i + 1, in text */
	int n;
};

char *config_file_read(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	errno = 0;
	while (buf) {
		n += fread(buf + n, 1, cap - n - 1, f);
		if (n < cap - 1)
			break;
		char *grown = realloc(buf, cap * 2);
		if (!grown) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = grown;
		cap *= 2;
	}
	int bad = ferror(f) ? (errno ? errno : EIO) : buf ? 0 : ENOMEM;
	fclose(f);
	if (bad) {
		free(buf);
		errno = bad;
		return NULL;
	}
	buf[n] = 0;
	*len = n;
	return buf;
}

struct config_lines *config_lines_new(const char *text, size_t len)
{
	struct config_lines *cl = calloc(1, sizeof(*cl));
	if (!cl || !(cl->text = malloc(len + 1))) {
		free(cl);
		return NULL;
	}
	memcpy(cl->text, text, len);
	cl->text[len] = 0;
	int cap = 1;
	for (size_t i = 0; i < len; i++)
		cap += cl->text[i] == '\n';
	cl->line = malloc(sizeof(*cl->line) * (size_t)cap);
	if (!cl->line) {
		config_lines_free(cl);
		return NULL;
	}
	char *p = cl->text, *end = cl->text + len;
	while (p < end) {
		cl->line[cl->n++] = p;
		char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		*nl = 0;
		p = nl + 1;
	}
	return cl;
}

int config_lines_find(const struct config_lines *cl, int line, int above, const char *needle)
{
	if (!cl)
		return line;
	int last = line < cl->n ? line : cl->n;
	for (int ln = last; ln >= 1 && ln >= line - above; ln--)
		if (strstr(cl->line[ln - 1], needle))
			return ln;
	return line;
}

void config_lines_free(struct config_lines *cl)
{
	if (!cl)
		return;
	free(cl->line);
	free(cl->text);
	free(cl);
}
