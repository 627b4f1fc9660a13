/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* priv.c - see priv.h. Uses the raw capset(2) interface (no libcap needed). */
#include "priv.h"
#include "log.h"

#include <errno.h>
#include <grp.h>
#include <stdint.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static int cap_get(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	return (int)syscall(SYS_capget, &h, d);
}

static int cap_set(unsigned long long eff, unsigned long long perm, unsigned long long inh)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2] = {
	    {(uint32_t)eff, (uint32_t)perm, (uint32_t)inh},
	    {(uint32_t)(eff >> 32), (uint32_t)(perm >> 32), (uint32_t)(inh >> 32)},
	};
	return (int)syscall(SYS_capset, &h, d);
}

int priv_no_dumps(void)
{
	struct rlimit none = {0, 0};
	int rc = 0;
	if (setrlimit(RLIMIT_CORE, &none) < 0) {
		log_err("event=no_core_dumps step=rlimit error=%m");
		rc = -1;
	}
	/* Also covers a pipe core_pattern (systemd-coredump, apport), which the
	 * kernel runs whatever RLIMIT_CORE says. Set again by the kernel on
	 * every uid change (to fs.suid_dumpable): never back to 1 by itself. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		log_err("event=no_core_dumps step=dumpable error=%m");
		rc = -1;
	}
	return rc;
}

int priv_bind_now(char **argv)
{
	const char *v = getenv("LD_BIND_NOW");
	if (v && v[0]) /* ld.so binds lazily only when it is unset or empty */
		return 0;
	if (setenv("LD_BIND_NOW", "1", 1) < 0)
		return -1;
	execv("/proc/self/exe", argv);
	log_warn("event=bind_now step=exec error=%m (symbols stay lazily bound)");
	unsetenv("LD_BIND_NOW");
	return -1;
}

int priv_has_cap(int cap)
{
	struct __user_cap_data_struct d[2];
	if (cap_get(d) < 0)
		return 0;
	return (d[cap / 32].effective >> (cap % 32)) & 1;
}

int priv_lookup(const char *user, const char *group, uid_t *uid, gid_t *gid)
{
	struct passwd *pw = getpwnam(user);
	if (!pw)
		return -1;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (group && group[0]) {
		struct group *gr = getgrnam(group);
		if (!gr)
			return -1;
		*gid = gr->gr_gid;
	}
	return 0;
}

int priv_drop_to(uid_t uid, gid_t gid, unsigned long long keep)
{
	if (geteuid() != 0)
		return 0;
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups(1, &gid) < 0 ||
	    setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
		log_err("event=priv_drop_failed uid=%u gid=%u error=%m", (unsigned)uid,
			(unsigned)gid);
		return -1;
	}
	if (cap_set(keep, keep, 0) < 0) {
		log_err("event=capset_failed error=%m");
		return -1;
	}
	/* Ambient capabilities so an exec'd helper would keep them: none needed. */
	prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	return 0;
}

int priv_drop_all(void)
{
	struct __user_cap_data_struct d[2];
	if (cap_get(d) < 0)
		return 0;
	if (!d[0].permitted && !d[1].permitted && geteuid() != 0)
		return 0;
	if (cap_set(0, 0, 0) < 0) {
		log_err("event=capset_failed error=%m");
		return -1;
	}
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	return 0;
}
