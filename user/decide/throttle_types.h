/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * throttle_types.h - the throttling settings as plain types: a budget class
 * and the table sizes, which the configuration (config.h) holds and
 * throttle.h's engine reads. Types and limits only, so that whoever holds a
 * configuration does not include the engine.
 */
#ifndef EG_THROTTLE_TYPES_H
#define EG_THROTTLE_TYPES_H

#include <stdint.h>

#define THROTTLE_NAME_MAX      32  /* class name incl. NUL */
#define THROTTLE_MATCH_MAX     512 /* class selector rule text incl. NUL */
#define THROTTLE_MAX_CLASSES   32
#define THROTTLE_NCMD	       64 /* enum eas_cmd values */
#define THROTTLE_THRESHOLD_MAX 255

/*
 * A budget class. Durations in seconds, rates in requests per second.
 * throttle_class_defaults() gives the values argued for in the design note;
 * throttle_class_check() validates.
 */
struct throttle_class {
	char name[THROTTLE_NAME_MAX];
	/* Selector in the access-rule language without the access word, e.g.
	 * `DeviceOS like "iOS 6.1*"` or `UserAgent matches "^Apple.*1002"`;
	 * "" = selected only as the fallback (class 0) or by index. */
	char match[THROTTLE_MATCH_MAX];
	double burst;		 /* bucket size (and start balance), requests; 0 = no budget */
	double rate;		 /* recharge, requests per second */
	double cutoff;		 /* how far below zero before the cool-down, requests */
	double cooldown;	 /* s */
	unsigned max_concurrent; /* requests in flight per device; 0 = unlimited */
	unsigned max_devices;	 /* devices per user; 0 = unlimited */
	struct {
		double window;	    /* s, <= 3600 */
		unsigned threshold; /* default for every command; 0 = detector off */
		/* per command (enum eas_cmd): 0 = use threshold,
		 * THROTTLE_LOOP_OFF = never, else 2..THROTTLE_THRESHOLD_MAX */
		uint16_t cmd[THROTTLE_NCMD];
		double throttle;   /* s of LOOP_THROTTLE after a detection */
		double quarantine; /* s of LOOP_QUARANTINE */
		double memory;	   /* s after a stage: a new detection goes to quarantine */
	} loop;
	unsigned hammer; /* strikes tolerated in a stage before escalating */
	double xdp_ttl;	 /* s, cap on a kernel flow verdict's lifetime */
};
#define THROTTLE_LOOP_OFF 0xffffu

/* Table sizes (fixed for the life of the table). */
struct throttle_config {
	unsigned devices;   /* device slots wanted (rounded up to 7 x 2^k) */
	unsigned users;	    /* user slots wanted (idem) */
	unsigned offenders; /* offender records wanted (rounded up to 4 x 2^k) */
	double device_idle; /* s: a device unseen this long no longer counts (177) */
	double max_request; /* s: longest request (Ping heartbeat); in-flight
			     * counts of a device idle this long are reset, so a
			     * lost throttle_done() cannot block it for ever */
};

#endif
