/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * log.h - structured key=value logging to stderr (journald picks it up).
 *
 * Every line is "level=<lvl> proc=<name> <key=value ...>"; when stderr is
 * systemd's journal stream it starts with "<N>", the level's syslog priority,
 * which journald keeps as PRIORITY (log.c). Callers write the
 * key=value part; values that may contain spaces or quotes go through
 * log_quote(). Nothing credential-bearing may ever be passed here: the
 * Authorization header and passwords are never logged (eas.h keeps only
 * the scheme and a Basic user name of it).
 */
#ifndef EG_LOG_H
#define EG_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Set the process name printed as proc= (e.g. "master", "worker3"). */
void log_set_proc(const char *proc);
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parse "error|warn|info|debug"; returns -1 if unknown. */
int log_level_parse(const char *s);
/* Prepend an ISO-8601 timestamp (off by default: journald adds its own). */
void log_set_timestamps(int on);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define log_err(...)  log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_get_level() >= LOG_DEBUG)                                                  \
			log_msg(LOG_DEBUG, __VA_ARGS__);                                           \
	} while (0)

/* Log at error level and exit(1). Only before the event loop runs. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * Write s (len bytes, or strlen if len == (size_t)-1) into out as a
 * double-quoted log value with \" \\ and control bytes escaped; truncates
 * to fit outsz. Returns out, so it can be used inline in a log call.
 */
const char *log_quote(char *out, size_t outsz, const char *s, size_t len);

/*
 * Replace every control byte of the NUL-terminated s with '?', in place: for
 * an error message that quotes input (a config string may hold a raw newline
 * or a terminal escape), so that it stays one line wherever it is shown.
 */
void log_mask_ctl(char *s);

#endif
