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
 * holding the master's loop during a reload. Here the file is read once and
 * every look-up only touches the lines it searches.
 */
#ifndef EG_CONFIG_LINES_H
#define EG_CONFIG_LINES_H

struct config_lines;

/* The whole file, split into lines. NULL if it cannot be read (or no
 * memory): callers then keep libconfig's line. */
struct config_lines *config_lines_read(const char *path);

/* The last line in [line - above, line] (1-based, clamped to the file) that
 * contains needle; line itself when none does or cl is NULL. */
int config_lines_find(const struct config_lines *cl, int line, int above, const char *needle);

/* NULL is fine. */
void config_lines_free(struct config_lines *cl);

#endif
