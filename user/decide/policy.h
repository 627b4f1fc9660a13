/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * policy.h - device access policy: allow / block / quarantine a request from
 * what the phone says about itself (Exchange ActiveSync "ABQ" rules, plus
 * what gateway admins did with F5/TMG: regexes on the User-Agent, blocking
 * one command, minimum OS versions, holding new OS releases back).
 *
 * Rule text (config file and `easctl rules add`):
 *
 *   <access> <characteristic> <op> "<pattern>" [cmd <Cmd>[,<Cmd>...]] [name "<name>"]
 *
 *   access          allow | block | quarantine
 *   characteristic  DeviceType | DeviceModel | DeviceOS | UserAgent | XMSWL
 *                   (aliases X-MS-WL, XMSWLHeader) | User | DeviceId
 *   op              is       exact, case-insensitive (Exchange's QueryString)
 *                   like     glob: * any run, ? one byte; case-insensitive;
 *                            no escapes, no [classes]
 *                   matches  PCRE2 regex as written (add (?i) to ignore case),
 *                            bytes not UTF-8, backtracking bounded
 *                   < <= > >= == !=  version comparison, DeviceOS only; the
 *                            pattern is "<family> <version>", e.g. "iOS 7.0.2";
 *                            matches only phones of that family whose version
 *                            is known (numeric per component, 7.0 == 7.0.0)
 *   cmd             the rule applies only to these commands (names as in
 *                   eas_cmd.h, case-insensitive): "block MeetingResponse but
 *                   let mail flow"
 *   name            a label shown in decisions and logs
 *
 * Keywords are case-insensitive. Patterns and names are double-quoted with
 * \" and \\ as escapes (any other backslash is kept as is, so regexes like
 * "\d+" read naturally), or a single unquoted word. '#' outside quotes
 * starts a comment. Examples:
 *
 *   block DeviceOS is "iOS 6.1 10B142"
 *   block UserAgent matches "^Apple.*1002.*" cmd MeetingResponse
 *   quarantine DeviceOS < "iOS 7.0.2"
 *   block DeviceOS like "iOS 6.1*" name "ios61-loop"
 *
 * Decision order: see policy_precedence_doc() (and the comment above it in
 * policy.c).
 */
#ifndef EG_POLICY_H
#define EG_POLICY_H

#include <stddef.h>
#include <stdint.h>

enum policy_access { POLICY_ALLOW = 0, POLICY_BLOCK = 1, POLICY_QUARANTINE = 2 };

/* Rule characteristics, in the order they are evaluated. */
enum policy_char {
	POLICY_CH_DEVICEID = 0,
	POLICY_CH_USER = 1,
	POLICY_CH_USERAGENT = 2,
	POLICY_CH_DEVICEOS = 3,
	POLICY_CH_DEVICEMODEL = 4,
	POLICY_CH_DEVICETYPE = 5,
	POLICY_CH_XMSWL = 6,
	POLICY_CH__COUNT
};

enum policy_op {
	POLICY_OP_IS = 0,
	POLICY_OP_LIKE = 1,
	POLICY_OP_MATCHES = 2,
	POLICY_OP_LT = 3,
	POLICY_OP_LE = 4,
	POLICY_OP_GT = 5,
	POLICY_OP_GE = 6,
	POLICY_OP_EQ = 7,
	POLICY_OP_NE = 8,
};

/* Why a decision was taken (also its name in logs: policy_reason_name). */
enum policy_reason {
	POLICY_R_OPTIONS = 0,	       /* HTTP OPTIONS: always allowed */
	POLICY_R_ADMIN = 1,	       /* per-device admin_state override */
	POLICY_R_INDIVIDUAL_BLOCK = 2, /* DeviceId in the personal blocked list */
	POLICY_R_INDIVIDUAL_ALLOW = 3, /* DeviceId in the personal allowed list */
	POLICY_R_RULE = 4,	       /* an access rule matched */
	POLICY_R_INCUBATION = 5,       /* allowed, but its OS version is too new */
	POLICY_R_DEFAULT = 6,	       /* nothing matched: default access level */
};

/* policy_input.admin_state: what an admin set for this device via easctl. */
enum {
	POLICY_ADMIN_NONE = 0,
	POLICY_ADMIN_ALLOW = 1, /* "approve" */
	POLICY_ADMIN_BLOCK = 2,
	POLICY_ADMIN_QUARANTINE = 3,
};

#define POLICY_PATTERN_MAX   256  /* bytes incl. NUL */
#define POLICY_NAME_MAX	     64	  /* bytes incl. NUL */
#define POLICY_RULE_TEXT_MAX 2048 /* enough for any policy_rule_format() output */

/* One rule, as parsed. Plain data: copy freely. Unused bytes are zero. */
struct policy_rule {
	int access;			  /* enum policy_access */
	int ch;				  /* enum policy_char */
	int op;				  /* enum policy_op */
	uint64_t cmds;			  /* EAS_CMD_BIT() set; 0 = every command */
	char pattern[POLICY_PATTERN_MAX]; /* unescaped; never empty */
	char name[POLICY_NAME_MAX];	  /* "" if unnamed */
};

/*
 * Parse one rule. Returns 0, or -EINVAL with a message naming the 1-based
 * column in err ("column 7: unknown characteristic 'Foo' (...)"). Regexes
 * are compiled to check them (errors give the offset in the pattern);
 * version patterns must be "<family> <version>" without a build.
 */
int policy_rule_parse(const char *text, struct policy_rule *r, char *err, size_t errsz);

/*
 * Canonical text of r (policy_rule_parse of it yields an equal rule).
 * Returns the length written (without NUL), or -ENOSPC if cap is too small
 * (POLICY_RULE_TEXT_MAX always suffices).
 */
int policy_rule_format(const struct policy_rule *r, char *out, size_t cap);

/* 1 if a and b describe the same rule, else 0. */
int policy_rule_equal(const struct policy_rule *a, const struct policy_rule *b);

/* "allow" / "block" / "quarantine"; "?" if out of range. */
const char *policy_access_name(int access);
/* Case-insensitive name -> enum policy_access, -1 if unknown. */
int policy_access_parse(const char *s);
/* Canonical characteristic name ("DeviceOS"), "?" if out of range. */
const char *policy_char_name(int ch);
/* Reason as shown in logs ("INDIVIDUAL_BLOCK"), "?" if out of range. */
const char *policy_reason_name(int reason);

/*
 * Everything a policy is compiled from. All pointers are borrowed for the
 * duration of policy_new() only.
 */
struct policy_config {
	enum policy_access default_access; /* Exchange's default is allow */
	/* Rules, either as text lines or already parsed (not both). The index
	 * of a rule in its array is its number in decisions. */
	const char *const *rule_texts;
	size_t n_rule_texts;
	const struct policy_rule *rules;
	size_t n_rules;
	/* Personal lists (Exchange's ActiveSyncBlocked/AllowedDeviceIDs):
	 * entries "DeviceId" (any user) or "user:DeviceId"; case-insensitive. */
	const char *const *blocked_ids;
	size_t n_blocked;
	const char *const *allowed_ids;
	size_t n_allowed;
	/* Quarantine OS versions first seen less than `days` ago unless
	 * approved; families e.g. {"iOS"} (none = every family). */
	struct {
		int enabled;
		unsigned days;
		const char *const *families;
		size_t n_families;
	} incubation;
};

struct policy;

/*
 * Compile a policy once (hash tables for exact rules, JIT regexes). Returns
 * NULL with the reason in err ("rule 3: column 9: ...", "blocked_ids[2]:
 * ...") on invalid config or allocation failure. The result is immutable:
 * policy_decide() may be called from several threads at once.
 */
struct policy *policy_new(const struct policy_config *c, char *err, size_t errsz);
/* Free a policy; NULL is a no-op. */
void policy_free(struct policy *p);

/* Rules of a compiled policy (for `easctl rules list`). NULL if out of range. */
size_t policy_rule_count(const struct policy *p);
const struct policy_rule *policy_rule_at(const struct policy *p, size_t i);

/*
 * One request, as the gateway sees it. Strings are borrowed; NULL and ""
 * both mean "not known" and match like the empty string.
 */
struct policy_input {
	const char *user;
	const char *device_id;
	const char *device_type;
	const char *device_model; /* empty: DeviceType stands in (as Exchange) */
	const char *device_os;	  /* DeviceInformation OS; empty: from the UA */
	const char *user_agent;
	const char *xmswl; /* X-MS-WL header */
	int cmd;	   /* enum eas_cmd (EAS_CMD_OPTIONS for OPTIONS) */
	int admin_state;   /* POLICY_ADMIN_* */
	/* Incubation facts for the effective OS (key: struct osver.text from
	 * osver_effective(device_os, user_agent)), unix seconds.
	 * os_first_seen 0 = never seen before, i.e. new now. */
	int64_t os_first_seen;
	int os_approved;
	int64_t now;
};

/* A decision; all strings are copies (truncated to fit), NUL-terminated. */
struct policy_decision {
	int access;	    /* enum policy_access */
	int reason;	    /* enum policy_reason */
	int rule_index;	    /* 0-based index of the rule that decided, or -1 */
	int characteristic; /* enum policy_char that matched, or -1 */
	char rule_name[POLICY_NAME_MAX];
	char device_model[128]; /* effective DeviceModel used */
	char device_os[128];	/* effective DeviceOS used */
	char os_key[96];	/* canonical OS ("iOS 6.1 10B142"), incubation key */
	char explain[640];	/* one line for logs and `easctl rules test` */
};

/*
 * Decide one request. Never fails: a NULL policy means "default allow". The
 * explanation numbers rules from 1 ("rule 3" is rule_index 2), as a human
 * counts lines of rules.
 */
void policy_decide(const struct policy *p, const struct policy_input *in,
		   struct policy_decision *d);

/* The evaluation order, as text for `easctl rules help` and docs. */
const char *policy_precedence_doc(void);

/*
 * Release this thread's regex scratch memory (policy_decide keeps one small
 * PCRE2 match block per thread). Call from threads that exit before the
 * process does; harmless anywhere.
 */
void policy_thread_cleanup(void);

/* Is ent a valid personal list entry ("DeviceId" or "user:DeviceId")? 0, or
 * -EINVAL with the reason in err. */
int policy_id_entry_check(const char *ent, char *err, size_t errsz);

#endif
