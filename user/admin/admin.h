/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * admin.h - the master's policy administration: the inventory writer (events
 * from workers, batched into SQLite transactions), the easctl commands that
 * list and change devices, rules and OS versions, and the device metrics.
 * Every change that can alter a decision bumps shm->policy_gen, so it takes
 * effect on the next request of every open connection.
 */
#ifndef EG_ADMIN_H
#define EG_ADMIN_H

#include <sys/types.h>

#include "config.h"
#include "control.h"
#include "loop.h"
#include "shm.h"
#include "stats.h"

struct admin;

struct store_hooks;
/* up: what the master hears from the store (farm steering secret, ready to
 * serve, heartbeat numbers); its `changed` is the admin's own. */
struct admin *admin_new(struct loop *l, const struct gw_config *c, struct shm *s,
			const struct store_hooks *up, char *err, size_t errsz);
void admin_free(struct admin *a);

struct throttle;
/* The shared throttle table, for `easctl throttle` and metrics (may be NULL). */
void admin_set_throttle(struct admin *a, struct throttle *t);

struct notify;
/* Where notices go (quarantines, loops, new OS versions); NULL = nowhere. */
void admin_set_notify(struct admin *a, struct notify *n);

/* For the commands kept in their own files (dryrun.c): the master's
 * read-write inventory connection, the running config, bringing the
 * inventory up to date, and publishing a change to the workers. */
struct inventory;
struct inventory *admin_inventory(struct admin *a);
const struct gw_config *admin_config(struct admin *a);
void admin_sync(struct admin *a);
void admin_publish(struct admin *a);

/*
 * Record a change: who (command_actor(), the command layer's caller), when,
 * what, before, after; in the append-only audit table and the log. Every
 * command that changes something calls it once it succeeded.
 */
void admin_audit(struct admin *a, const char *what, const char *before, const char *after);

/* Socket the workers send inventory events to (inherited across fork). */
int admin_event_fd(const struct admin *a);
struct sighting_table;
/* The table of unauthenticated sightings (shared memory, inherited across
 * fork; sighting.h). */
struct sighting_table *admin_sightings(const struct admin *a);

/* Validate what a config would compile to (rules, lists). a may be NULL. */
int admin_check_config(struct admin *a, const struct gw_config *c, char *why, size_t whysz);
/* The running config changed (reload): remember it and bump the policy gen. */
void admin_config_changed(struct admin *a, const struct gw_config *c);
/* Once a second: commit pending inventory writes, heartbeats. */
void admin_tick(struct admin *a);
/* In a forked worker: close what the store's connection left in it. */
void admin_forget_in_child(struct admin *a);
/* 1 while the store waits for its first sync with the farm (store.h). */
int admin_store_waiting(const struct admin *a);
/* The store's lines for easctl status. */
void admin_describe_store(struct admin *a, struct sbuf *o);
/* Make the inventory files owned by the unprivileged user. */
void admin_chown_state(struct admin *a, uid_t uid, gid_t gid);

/*
 * The commands of policy administration (struct ctl_cmd handlers, in the
 * command table of master.c): devices and device, rules, versions,
 * throttle, certcheck, audit, lists, nodes, db. ctx is unused (one admin
 * per process). The admin_need_* functions say which role an argv needs
 * (command.h).
 */
enum ctl_code admin_cmd_devices(void *ctx, int argc, char **argv, struct sbuf *out);
enum ctl_code admin_cmd_device(void *ctx, int argc, char **argv, struct sbuf *out);
enum ctl_code admin_cmd_rules(void *ctx, int argc, char **argv, struct sbuf *out);
enum ctl_code admin_cmd_versions(void *ctx, int argc, char **argv, struct sbuf *out);
enum ctl_code admin_cmd_throttle(void *ctx, int argc, char **argv, struct sbuf *out);
enum ctl_code admin_cmd_certcheck(void *ctx, int argc, char **argv, struct sbuf *out);
enum ctl_code admin_cmd_audit(void *ctx, int argc, char **argv, struct sbuf *out);
enum ctl_code admin_cmd_lists(void *ctx, int argc, char **argv, struct sbuf *out);
enum ctl_code admin_cmd_nodes(void *ctx, int argc, char **argv, struct sbuf *out);
enum ctl_code admin_cmd_db(void *ctx, int argc, char **argv, struct sbuf *out);
int admin_need_device(int argc, char **argv);
int admin_need_rules(int argc, char **argv);
int admin_need_versions(int argc, char **argv);
int admin_need_throttle(int argc, char **argv);
int admin_need_lists(int argc, char **argv);
int admin_need_db(int argc, char **argv);

/* Metrics the admin module knows (devices by OS family and state). */
void admin_render_metrics(struct admin *a, struct sbuf *o);
/* Per-backend connection gauges, labelled by name. */
void admin_render_backend_metrics(struct admin *a, struct sbuf *o, const struct stats *sum);

#endif
