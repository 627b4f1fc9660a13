/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* log.c - see log.h. */
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char log_proc[32] = "easgated";
static enum log_level log_level = LOG_INFO;
static int log_ts;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* syslog priorities of the levels: err, warning, info, debug */
static const int level_prio[] = {3, 4, 6, 7};
static int log_journal = -1; /* stderr is the journal: 1/0, -1 = not looked yet */

/* systemd names the journal stream it gave the service in JOURNAL_STREAM
 * (device:inode). Only there does a line start with "<N>": journald takes it
 * as the line's PRIORITY and strips it (sd-daemon(3)), so `journalctl -p err`
 * finds the errors; a terminal, a file or a pipe gets the plain line. */
static int stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_set_proc(const char *proc)
{
	snprintf(log_proc, sizeof(log_proc), "%s", proc);
}

void log_set_level(enum log_level lvl)
{
	log_level = lvl;
}

enum log_level log_get_level(void)
{
	return log_level;
}

void log_set_timestamps(int on)
{
	log_ts = on;
}

int log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, level_names[i]))
			return i;
	if (!strcmp(s, "err"))
		return LOG_ERR;
	if (!strcmp(s, "warning"))
		return LOG_WARN;
	return -1;
}

void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
	if (lvl > log_level)
		return;
	/* One write() per line so lines from workers never interleave. */
	char line[2048];
	int n = 0;
	if (log_journal < 0)
		log_journal = stderr_is_journal();
	if (log_journal)
		n += snprintf(line, sizeof(line), "<%d>", level_prio[lvl]);
	if (log_ts) {
		struct timeval tv;
		struct tm tm;
		gettimeofday(&tv, NULL);
		gmtime_r(&tv.tv_sec, &tm);
		n += (int)strftime(line + n, sizeof(line) - (size_t)n, "ts=%Y-%m-%dT%H:%M:%S", &tm);
		n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03ldZ ",
			      (long)tv.tv_usec / 1000);
	}
	n += snprintf(line + n, sizeof(line) - (size_t)n, "level=%s proc=%s ", level_names[lvl],
		      log_proc);
	if (n < (int)sizeof(line) - 1) {
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		n = (m < 0) ? n : n + m;
	}
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(lvl, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}

const char *log_quote(char *out, size_t outsz, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	if (outsz < 3) {
		if (outsz)
			out[0] = 0;
		return out;
	}
	if (!s)
		s = "";
	if (len == (size_t)-1)
		len = strlen(s);
	out[o++] = '"';
	for (size_t i = 0; i < len && o + 5 < outsz; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	out[o++] = '"';
	out[o] = 0;
	return out;
}

void log_mask_ctl(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}
