/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * gate.h - the decision point between classification and relaying: given a
 * classified EAS request (and the DeviceInformation from its body, if any),
 * say whether to forward it or what to answer, and remember what was seen
 * (device inventory, OS versions for incubation).
 *
 * The gate owns the compiled policy and a per-worker device cache; it checks
 * shm->policy_gen on every decision, so an admin's rule change or approval
 * applies to the very next request of every open connection.
 */
#ifndef EG_GATE_H
#define EG_GATE_H

#include <stdint.h>

#include "config.h"
#include "eas.h"
#include "shm.h"
#include "stats.h"
#include "throttle.h"

struct gate;

enum gate_action {
	GATE_FORWARD = 0, /* relay to the backend */
	GATE_ANSWER = 1,  /* the gateway answers itself */
};

struct gate_verdict {
	enum gate_action action;
	enum policy_access access; /* the access that applied */
	enum stats_verdict sv;	   /* for metrics */
	int http_status;	   /* ANSWER: HTTP status when no EAS envelope applies */
	int eas_status;		   /* ANSWER: EAS status for the envelope (0 = none) */
	int empty_ok;		   /* ANSWER: HTTP 200 with an empty body ("no changes") */
	unsigned hold_ms;	   /* ANSWER: delay (quarantined Ping: behave like a heartbeat) */
	int xdp_drop;		   /* after answering, drop this flow in the kernel */
	char rule[64];		   /* the rule that decided ("" = none), for the access log */
	char why[192];		   /* one line for the log: which rule matched what */
	char device_os[96];	   /* effective DeviceOS used (for the access log) */
	/* throttling (user/decide/throttle.h) */
	struct throttle_ticket tt; /* hand to gate_throttle_done() when the request ends */
	unsigned retry_after;	   /* 503: Retry-After seconds */
	const char *asthrottle;	   /* 503: X-MS-ASThrottle value (static) */
	int xdp_reason;		   /* enum eg_reason for the flow verdict (0 = BLOCKED) */
	unsigned xdp_ttl;	   /* flow verdict lifetime, s (0 = xdp.verdict_ttl) */
};

struct gate_opts {
	const struct gw_config *cfg;
	struct shm *shm;
	int worker_slot;
	int event_fd;		   /* datagram socket to the master's inventory writer; -1 = none */
	struct throttle *throttle; /* shared budget/loop table; NULL = throttling off */
	struct sighting_table *sightings; /* shared unauthenticated sightings; NULL = none */
};

struct policy;
struct inventory;
struct sighting_table;

/* Load the Apple build table (config policy.ios_builds, or the one built in).
 * The master calls it before forking so workers inherit it. 0 or -1. */
int gate_load_builds(const struct gw_config *c, char *err, size_t errsz);

/* Path of the inventory database for a config (state_dir/inventory.db). */
void gate_inventory_path(const struct gw_config *c, char *out, size_t outsz);

/*
 * Compile the policy of config c plus the rules added at run time (stored in
 * inv, may be NULL). Config rule errors are reported as "file:line: ..." in
 * err. NULL on failure.
 */
struct policy *gate_build_policy(const struct gw_config *c, struct inventory *inv, char *err,
				 size_t errsz);

/* The same, with one more rule after the run-time ones, where `rules add`
 * would put it (the console's dry run). */
struct policy_rule;
struct policy *gate_build_policy_with(const struct gw_config *c, struct inventory *inv,
				      const struct policy_rule *extra, char *err, size_t errsz);

struct gate *gate_new(const struct gate_opts *o, char *err, size_t errsz);
void gate_free(struct gate *g);

/* What gate_wants_body() asks of the relay. */
enum gate_body {
	GATE_BODY_NO = 0,	   /* decide on the head */
	GATE_BODY_FINGERPRINT = 1, /* read it if small: the loop detector's fingerprint */
	GATE_BODY_DEVINFO = 2,	   /* read and decode it: it may carry DeviceInformation,
				      and a body that cannot be decoded within
				      limits.inspect_body must be refused, never passed */
};

/* Must the body be read before deciding? (Provision/Settings may carry
 * DeviceInformation; the decision then uses the model and OS it reports.)
 * Returns an enum gate_body. */
int gate_wants_body(struct gate *g, const struct eas_req *r);

/* Decide for one request. di may be NULL. now = unix seconds. */
void gate_decide(struct gate *g, const struct eas_req *r, const struct eas_devinfo *di,
		 uint64_t body_fp, int64_t now, struct gate_verdict *v);
/* The loop detector's fingerprint of a request body (0 when throttling is off). */
uint64_t gate_fingerprint(struct gate *g, const void *body, size_t n);
/* A request gate_decide() let through ended with http_status (0 = aborted). */
void gate_throttle_done(struct gate *g, const struct throttle_ticket *tt, int http_status);

/*
 * Record the outcome (last success, last status) once the answer is sent.
 * from_backend: the backend answered, so a 2xx proves the credentials.
 *
 * Authenticated sightings. User= and the Basic user name are claims: the
 * gateway does not check passwords, the backend does. A device becomes
 * authenticated with the first 2xx a backend gives one of its requests
 * (OPTIONS excepted: some backends answer it without credentials). Only
 * then does it get an inventory row, count for its user's max_devices
 * (throttle_authenticated) and start an OS version's incubation clock;
 * until then its requests are noted in the bounded sightings table
 * (sighting.h), never in the inventory, and its requests also spend its
 * user's shared budget for unauthenticated devices (throttle.h).
 */
void gate_done(struct gate *g, const char *identity, const char *device_id, int cmd,
	       int http_status, int from_backend, int64_t now);

#endif
