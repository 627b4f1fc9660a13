/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * osver.h - identify a phone's operating system: parse Exchange-style
 * DeviceOS strings, decode Apple/Android/Samsung User-Agents, compare
 * versions.
 *
 * Exchange stores DeviceOS as "<family> <version> <build>" ("iOS 6.1 10B142",
 * "iOS 11.2.6 15D100", "Android 4.4.2.N900VVRUCNC4"); admins write rules
 * against it. A phone only sends DeviceInformation (Settings command) after
 * a few requests, so the gateway also derives the OS from the User-Agent it
 * sends on every request (osver_effective): OS rules then apply from the
 * very first request.
 *
 * Apple's EAS User-Agent encodes the build: "Apple-iPhone4C1/1002.142" is
 * hardware iPhone4C1, build 10B142 (major 10, letter 02 = B, number 142; a
 * trailing "000NN" is a lower-case letter: 1101.47000001 = 11A470a). The
 * marketing version comes from a build table (data/ios-builds.tsv), loaded
 * once at startup with osver_builds_load()/osver_builds_load_default().
 *
 * Nothing here allocates per call or keeps state except the build table;
 * all functions are safe to call concurrently once the table is loaded.
 */
#ifndef EG_OSVER_H
#define EG_OSVER_H

#include <stddef.h>

/* Where a struct osver's version came from. */
enum osver_src {
	OSVER_SRC_NONE = 0,    /* no version known (nv == 0) */
	OSVER_SRC_TEXT = 1,    /* written in the DeviceOS / User-Agent text */
	OSVER_SRC_TABLE = 2,   /* Apple build found in the build table */
	OSVER_SRC_NEAREST = 3, /* unknown Apple build: version of the nearest lower
				  known build of the same train (a lower bound) */
};

/*
 * An identified OS. All strings are NUL-terminated and owned by the struct.
 *  family: "iOS", "Android", "Windows Phone", ... (known families are
 *          canonically capitalised; compare case-insensitively anyway)
 *  v/nv:   numeric version components, nv = 0..4 (0: version unknown)
 *  build:  build identifier ("10B142", "11A470a", "N900VVRUCNC4") or ""
 *  text:   canonical "family version build" (parts omitted when unknown),
 *          e.g. "iOS 7.0.1 11A470a"; the incubation key
 *  hw:     hardware model decoded from an Apple User-Agent ("iPhone4C1"),
 *          else ""
 */
struct osver {
	char family[16];
	unsigned v[4];
	unsigned nv;
	char build[24];
	char text[96];
	char hw[32];
	int src; /* enum osver_src */
};

/*
 * Parse an Exchange DeviceOS string: "<family words> <version>[.<suffix>]
 * [<build> | (<build>)]". The family is every leading word that does not
 * start with a digit. Over-long builds are truncated.
 * Returns 0 (o filled; o->nv may be 0 when the string names only a family,
 * e.g. Samsung's "Android"), -EINVAL when s is NULL/empty, has no family or
 * a malformed version (o is then zeroed).
 */
int osver_parse(const char *device_os, struct osver *o);

/*
 * Derive the OS from a User-Agent. Recognised forms:
 *   Apple-<hw>/<MMLL>.<NNN>[000NN]    native iOS Mail (build via the table)
 *   iOS/<version> (<build>) ...       newer iOS (dataaccessd)
 *   Android/<version>-...             Exchange's synthesis: "Android <version>"
 *   SAMSUNG-<model>/<x>.<digits>      Exchange's synthesis: digits with each
 *                                     '0' read as '.', e.g. 101.403 -> 4.3
 * Returns 0 if recognised (o filled), -ENOENT if not (o zeroed), -EINVAL if
 * ua is NULL.
 */
int osver_from_user_agent(const char *ua, struct osver *o);

/*
 * The DeviceOS to use for a request: device_os (from DeviceInformation) when
 * non-empty, else the canonical text derived from user_agent, else "".
 * o receives the parsed form (zeroed when nothing is known). The returned
 * pointer is device_os itself, o->text, or a static "": it lives as long as
 * the inputs and o.
 */
const char *osver_effective(const char *device_os, const char *user_agent, struct osver *o);

/*
 * Order two OSes: family (case-insensitive), then version numerically per
 * component, missing components counting as 0 (7.0 == 7.0.0). Builds are
 * not compared. Returns <0, 0, >0.
 */
int osver_cmp(const struct osver *a, const struct osver *b);

/* Compare only the version components (as osver_cmp, ignoring family). */
int osver_cmp_version(const struct osver *a, const struct osver *b);

/*
 * Load the Apple build table from TSV text (n bytes, need not be
 * NUL-terminated): lines "build<TAB>version", '#' starts a comment, blank
 * lines ignored. Replaces the current table only if the whole text is valid.
 * Not thread-safe against concurrent lookups: call before starting workers.
 * Returns the number of builds loaded, -EINVAL with "line N: why" in err, or
 * -ENOMEM.
 */
int osver_builds_load(const char *tsv_text, size_t n, char *err, size_t errsz);

/*
 * Load the shipped table: the copy embedded at build time when compiled with
 * -DEG_HAVE_IOS_BUILDS_INC (build/ios_builds.inc from `xxd -i
 * data/ios-builds.tsv`), otherwise the file data/ios-builds.tsv relative to
 * the working directory. Returns as osver_builds_load, or -errno if the file
 * cannot be read. Logs a warning on failure.
 */
int osver_builds_load_default(void);

/* Number of builds in the current table (0 before any load). */
size_t osver_builds_count(void);

/*
 * Look up an Apple build ("10B142") in the table: fills v/nv and returns
 * OSVER_SRC_TABLE (exact), OSVER_SRC_NEAREST (lower bound, see osver.c) or
 * OSVER_SRC_NONE (nv = 0).
 */
int osver_build_version(const char *build, unsigned v[4], unsigned *nv);

#endif
