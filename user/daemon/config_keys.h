/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * config_keys.h - every key of easgate.conf, described once: its path, type,
 * where its value lives in struct gw_config (so its default is read from
 * config_defaults(), never written down twice) and what it means.
 *
 * config.c accepts exactly the keys of this table (an unknown key is an
 * error), and tools/eg-doc.c writes easgate.conf(5) and the commented sample
 * configuration from it: a key cannot be accepted without being documented.
 */
#ifndef EG_CONFIG_KEYS_H
#define EG_CONFIG_KEYS_H

#include <stddef.h>

#include "config.h"
#include "sbuf.h"

enum cfg_key_type {
	CK_GROUP,   /* name = { ... }: its keys follow it in the table */
	CK_LIST,    /* name = ( { ... }, ... ): the keys of one entry follow */
	CK_STR,	    /* char[] at off */
	CK_UINT,    /* unsigned at off */
	CK_INT,	    /* int at off */
	CK_BOOL,    /* int at off */
	CK_SECS,    /* unsigned milliseconds at off, written in seconds */
	CK_MINUTES, /* unsigned milliseconds at off, written in minutes */
	CK_NUM,	    /* double at off */
	CK_ENUM,    /* int at off: the index of its name in choices ("a|b|c") */
	CK_OTHER,   /* written by fmt (NULL: only its sample shows a value) */
};

/* What off is relative to: the whole configuration or one entry of a list. */
enum cfg_key_base { CKB_ROOT, CKB_CERT, CKB_BACKEND, CKB_TCLASS };

enum {
	CKF_COMMENTED = 1, /* the sample shows it commented out (no default to write) */
	CKF_EXAMPLE = 2,   /* the sample shows an example value, not the default */
};

struct cfg_key {
	const char *path; /* "tls.ocsp_retry"; a list entry's key: "backends.health.path" */
	enum cfg_key_type type;
	enum cfg_key_base base;
	size_t off;
	const char *choices;   /* CK_ENUM */
	const char *type_text; /* the type in words when not the one type gives */
	void (*fmt)(const void *base, struct sbuf *out); /* CK_OTHER: the value as written */
	const char *def;    /* the default in words, when it is not a written value */
	const char *sample; /* what the sample writes instead of the default */
	const char *more;   /* CK_LIST: further entries of the sample, as written */
	unsigned flags;
	const char *doc; /* sentences; '\n' separates paragraphs */
};

extern const struct cfg_key config_keys[];
extern const size_t config_keys_count;

/* The entry for path, or NULL. */
const struct cfg_key *config_key_find(const char *path);
/* The key's last path component ("retry" of "notify.retry"). */
const char *config_key_leaf(const struct cfg_key *k);
/* Is k a direct child of the group or list at path parent ("" = the top)? */
int config_key_is_child(const struct cfg_key *k, const char *parent);

/*
 * Append k's value in base (a gw_config, cfg_cert, cfg_backend or
 * throttle_class as k->base says) as the file would write it. 0, or -1 when
 * the key has no value of its own (a group, a list, or CK_OTHER without fmt).
 */
int config_key_format(const struct cfg_key *k, const void *base, struct sbuf *out);

/* The defaults of one list entry, as config.c gives a new entry. */
void config_backend_defaults(struct cfg_backend *b);

#endif
