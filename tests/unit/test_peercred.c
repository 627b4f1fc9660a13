/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_peercred.c - who may use the control socket, decided from the kernel's
 * word about the peer, with real processes on real UNIX sockets:
 *  - this process and its children are refused (the master's children are
 *    its workers, which run as the same uid);
 *  - so is the orphan of a child, once this process is a child subreaper (a
 *    worker cannot escape by double-forking);
 *  - an unrelated process of the same uid (an orphan adopted by init) is
 *    accepted;
 *  - as root: a process whose only link to the group is a SUPPLEMENTARY
 *    group is accepted, its primary group too, another group refused;
 *  - a peer that exited before its check is refused (its pid proves nothing).
 */
#include "testlib.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "peercred.h"

static char dir[64], path[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_peercred.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	chmod(dir, 0755);
	snprintf(path, sizeof(path), "%s/s", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	return 0;
}

static int listen_here(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 8), 0);
	chmod(path, 0777);
	return fd;
}

static int connect_here(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		_exit(90);
	return fd;
}

/* Accept within 5 s (a test that breaks must fail, not hang). */
static int accept_one(int lfd)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 5000), 1);
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

/*
 * Run fn in a grandchild whose parent has exited, once it was adopted (by
 * init, or by this process when it is a child subreaper). The grandchild
 * exits when fn returns.
 */
static void spawn_orphan(void (*fn)(void))
{
	pid_t c = fork();
	assert_true(c >= 0);
	if (c == 0) {
		pid_t me = getpid();
		if (fork() == 0) {
			for (int i = 0; i < 500 && getppid() == me; i++)
				usleep(10000);
			fn();
			_exit(0);
		}
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(c, &st, 0), c);
}

/* The peer sends its pid, then waits for the other end to close. */
static void peer_hold(void)
{
	int fd = connect_here();
	pid_t me = getpid();
	if (write(fd, &me, sizeof(me)) != sizeof(me))
		_exit(91);
	char b;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	poll(&p, 1, 10000);
	(void)!read(fd, &b, 1);
}

static pid_t read_pid(int fd)
{
	pid_t pid = 0;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(read(fd, &pid, sizeof(pid)), sizeof(pid));
	return pid;
}

static void test_self_refused(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct peercred who;
	const char *why = peercred_refusal(sv[0], getuid(), getgid(), &who);
	assert_non_null(why);
	assert_int_equal(who.pid, getpid());
	assert_int_equal(peercred_descendant(getpid()), 1);
	assert_int_equal(peercred_descendant(getppid()), 0);
	close(sv[0]);
	close(sv[1]);
}

static void test_child_refused(void **state)
{
	(void)state;
	int lfd = listen_here();
	pid_t c = fork();
	assert_true(c >= 0);
	if (c == 0) {
		peer_hold();
		_exit(0);
	}
	int fd = accept_one(lfd);
	assert_int_equal(read_pid(fd), c);
	struct peercred who;
	const char *why = peercred_refusal(fd, getuid(), getgid(), &who);
	assert_non_null(why);
	assert_int_equal(who.pid, c);
	assert_int_equal(who.uid, getuid());
	close(fd);
	int st;
	assert_int_equal(waitpid(c, &st, 0), c);
	close(lfd);
}

static void test_unrelated_same_uid_accepted(void **state)
{
	(void)state;
	int lfd = listen_here();
	spawn_orphan(peer_hold);
	int fd = accept_one(lfd);
	pid_t pid = read_pid(fd);
	struct peercred who;
	const char *why = peercred_refusal(fd, getuid(), getgid(), &who);
	assert_null(why);
	assert_int_equal(who.pid, pid);
	assert_int_equal(peercred_descendant(pid), 0);
	close(fd);
	close(lfd);
}

static void test_orphan_of_child_refused_by_subreaper(void **state)
{
	(void)state;
	int lfd = listen_here();
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
	spawn_orphan(peer_hold);
	int fd = accept_one(lfd);
	pid_t pid = read_pid(fd);
	struct peercred who;
	const char *why = peercred_refusal(fd, getuid(), getgid(), &who);
	assert_non_null(why);
	assert_int_equal(who.pid, pid);
	close(fd);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid); /* adopted by us: ours to reap */
	prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
	close(lfd);
}

#define T_UID	    4241 /* the daemon's user in this test */
#define T_PEER_UID  4242
#define T_PEER_GID  4242
#define T_SUPP_GID  4243
#define T_OTHER_GID 4244

static void peer_with_supplementary_group(void)
{
	gid_t g = T_SUPP_GID;
	if (setgroups(1, &g) < 0 || setresgid(T_PEER_GID, T_PEER_GID, T_PEER_GID) < 0 ||
	    setresuid(T_PEER_UID, T_PEER_UID, T_PEER_UID) < 0)
		_exit(92);
	peer_hold();
}

static void test_groups(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		printf("[ SKIPPED  ] test_groups: needs root (setgroups)\n");
		skip();
	}
	int lfd = listen_here();
	spawn_orphan(peer_with_supplementary_group);
	int fd = accept_one(lfd);
	read_pid(fd);
	struct peercred who;
	assert_null(peercred_refusal(fd, T_UID, T_SUPP_GID, &who)); /* supplementary only */
	assert_int_equal(who.uid, T_PEER_UID);
	assert_int_equal(who.gid, T_PEER_GID);
	assert_null(peercred_refusal(fd, T_UID, T_PEER_GID, &who));	  /* primary */
	assert_null(peercred_refusal(fd, T_PEER_UID, T_OTHER_GID, &who)); /* the daemon's uid */
	assert_non_null(peercred_refusal(fd, T_UID, T_OTHER_GID, &who));  /* none of them */
	close(fd);
	close(lfd);
}

/* Connect, say who we are, and exit at once. */
static void peer_gone(void)
{
	int fd = connect_here();
	pid_t me = getpid();
	(void)!write(fd, &me, sizeof(me));
}

static int gone_or_zombie(pid_t pid)
{
	char p[64], buf[256];
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(p, "r");
	if (!f)
		return 1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *rp = strrchr(buf, ')');
	return rp && (rp[2] == 'Z' || rp[2] == 'X');
}

static void test_exited_peer_refused(void **state)
{
	(void)state;
	int lfd = listen_here();
	spawn_orphan(peer_gone);
	int fd = accept_one(lfd);
	pid_t pid = read_pid(fd);
	for (int i = 0; i < 500 && !gone_or_zombie(pid); i++)
		usleep(10000);
	assert_true(gone_or_zombie(pid));
	struct peercred who;
	assert_non_null(peercred_refusal(fd, getuid(), getgid(), &who));
	close(fd);
	close(lfd);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_self_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_child_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unrelated_same_uid_accepted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_orphan_of_child_refused_by_subreaper, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_groups, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_exited_peer_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
