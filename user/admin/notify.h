/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * notify.h - notices to admins and to phone users, by SMTP (through a
 * configured relay, STARTTLS and AUTH as configured) and/or a webhook (JSON,
 * signed with HMAC-SHA256), delivered with libcurl.
 *
 * Admins get batches: the first new item opens a batch, and notify.batch
 * minutes later one message lists everything that arrived meanwhile (never
 * a message per phone). A phone's user gets one message per quarantine (a
 * template; the address from the UPN or a configured pattern).
 *
 * Nothing here runs on the master's loop for longer than a queue operation:
 * messages go to a bounded queue served by one delivery thread (libcurl is
 * blocking, and a relay may take its 30 s timeout). A message that cannot be
 * delivered is retried with exponential backoff (notify.retry min..max),
 * forever while it fits the queue; the queue holds notify.queue messages, and
 * when it is full a new message is dropped and counted
 * (easgate_notify_dropped_total). Batches list at most NOTIFY_BATCH_MAX
 * items; more are counted in the message ("and N more").
 */
#ifndef EG_NOTIFY_H
#define EG_NOTIFY_H

#include <stdint.h>

#include "config.h"
#include "control.h"
#include "loop.h"
#include "shm.h"

#define NOTIFY_BATCH_MAX 20000

enum notify_kind {
	NOTE_QUARANTINE_RULE = 0,
	NOTE_QUARANTINE_DEFAULT,
	NOTE_QUARANTINE_INCUBATION,
	NOTE_LOOP_QUARANTINE,
	NOTE_NEW_OS,
	NOTE_BACKEND_DOWN,
	NOTE_BACKEND_UP,
	NOTE_CERT_EXPIRY,
	NOTE__COUNT
};

struct notify_item {
	int kind; /* enum notify_kind */
	int64_t at;
	char user[128];
	char device_id[64];
	char model[128];
	char os[128];
	char detail[256]; /* rule, backend, certificate, reason */
};

struct notify;

/* NULL with err set when the notify settings cannot be used (a secret file
 * that cannot be read, a template that does not load). With nothing
 * configured it returns a notify that only counts. */
struct notify *notify_new(struct loop *l, const struct gw_config *c, char *err, size_t errsz);
/* Stop the delivery thread (what is queued is lost; counted in the log). */
void notify_free(struct notify *n);
/* A reload: new settings for what is queued from now on. 0 or -1 (err). */
int notify_reconfigure(struct notify *n, const struct gw_config *c, char *err, size_t errsz);
/* Check that c's notify settings load (for reload and --check-config). */
int notify_check_config(const struct gw_config *c, char *err, size_t errsz);

/* Something happened: into the admins' batch; a quarantine also writes to
 * the phone's user (once per quarantine: the caller posts on the change). */
void notify_post(struct notify *n, const struct notify_item *it);
/* 1 when a notice would reach someone (the admins' batch by SMTP or webhook,
 * or users' messages), 0 when notices are only counted. Callers skip the
 * work of finding notices nobody gets (admin_tick's walk of the throttle
 * table for loop quarantines). NULL: 0. */
int notify_wanted(const struct notify *n);
/* Once a second from the master: backend up/down, certificate expiry. */
void notify_tick(struct notify *n, const struct shm *s, const struct gw_config *c);
/* Prometheus lines (queued, sent, retried, dropped). */
void notify_render_metrics(struct notify *n, struct sbuf *o);

const char *notify_kind_name(int kind);

/* Exposed for tests: the user's address from the pattern ("%u" = the user
 * without a DOMAIN\ prefix, "%l" = the part before '@'), or the UPN itself
 * when the user is one and the pattern is "". 0 or -1 (no address). */
int notify_user_address(const char *pattern, const char *user, char *out, size_t outsz);

#endif
