/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * config_lines.h - a config file's lines, read once per parse, so that the
 * loader can point an error at the line that holds a list element's text.
 *
 * libconfig gives each setting a line, but for a list element it is where
 * the parser finished it (a string followed by comment lines: the closing
 * ')' line). The loader looks a little above that line for the text. Doing
 * so by re-reading the file for each element made a parse quadratic: 4,000
 * rules under 20,000 comment lines were ~860,000 read() calls and ~2 s,
 * holding the master's loop during a reload. Here the text is split once and
 * every look-up only touches the lines it searches.
 *
 * The loader reads the file once (config_file_read) and parses those bytes
 * (config_load_text), so the lines searched are the lines libconfig parsed.
 * An @include'd file, which libconfig opens itself, is read once more here
 * for its entries' lines.
 */
#ifndef EG_CONFIG_LINES_H
#define EG_CONFIG_LINES_H

#include <stddef.h>

struct config_lines;

/* The whole file, NUL-terminated (*len excludes the NUL; the bytes may hold
 * other NULs); malloc'd. NULL with errno set if it cannot be read. */
char *config_file_read(const char *path, size_t *len);

/* text[0..len) split into lines (copied). NULL if no memory: callers then
 * keep libconfig's line. */
struct config_lines *config_lines_new(const char *text, size_t len);

/* The last line in [line - above, line] (1-based, clamped to the file) that
 * contains needle; line itself when none does or cl is NULL. */
int config_lines_find(const struct config_lines *cl, int line, int above, const char *needle);

/* NULL is fine. */
void config_lines_free(struct config_lines *cl);

#endif
