/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_console.c - the console's building blocks, each against what a user
 * (or an attacker) would do:
 *  - form and cookie parsing: decoding, refusals (bad %XX, NUL), bounds;
 *  - escaping: JSON keeps markup characters out, HTML escapes all five,
 *    CSV quotes and disarms formulas (= + - @ TAB CR);
 *  - login limits: the 20th wrong password locks the source (and account),
 *    even the right one is then refused, the lock ends after lockout_ms;
 *    random account names cannot push a real one out of the table;
 *  - sessions: idle timeout, CSRF token compare, revalidation when an
 *    account's role changes;
 *  - the accounts file: group/world-readable refused (load and write),
 *    yescrypt set/verify, a wrong password and an unknown name refused;
 *  - the command layer: roles per argv, the actor seen by a command,
 *    deferred commands stepped to the end;
 *  - the audit table is append-only (UPDATE and DELETE fail, even in SQL);
 *  - notify_user_address: UPN, DOMAIN\user, patterns, nothing injectable;
 *  - devhist keeps the last DEVHIST_RING entries, oldest first.
 */
#include "testlib.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accounts.h"
#include "command.h"
#include "console_auth.h"
#include "devhist.h"
#include "inventory.h"
#include "notify.h"
#include "fmt.h"
#include "webform.h"

static void test_webform(void **st)
{
	char b[128];
	struct webform_field f[8];
	snprintf(b, sizeof(b), "a=device&a=approve&a=Appl%%20X+Y&&user=%%3Cb%%3E&empty=&flag");
	int n = webform_parse(b, strlen(b), f, 8);
	assert_int_equal(n, 6);
	assert_string_equal(f[2].value, "Appl X Y");
	assert_string_equal(webform_get(f, n, "user"), "<b>");
	assert_string_equal(webform_get(f, n, "empty"), "");
	assert_string_equal(webform_get(f, n, "flag"), "");
	assert_null(webform_get(f, n, "nope"));
	snprintf(b, sizeof(b), "a=%%zz");
	assert_int_equal(webform_parse(b, strlen(b), f, 8), -1);
	snprintf(b, sizeof(b), "a=%%0");
	assert_int_equal(webform_parse(b, strlen(b), f, 8), -1);
	snprintf(b, sizeof(b), "a=x%%00y"); /* a NUL would cut a value short */
	assert_int_equal(webform_parse(b, strlen(b), f, 8), -1);
	memcpy(b, "a=1\0b=2", 7);
	assert_int_equal(webform_parse(b, 7, f, 8), -1);
	snprintf(b, sizeof(b), "a&b&c");
	assert_int_equal(webform_parse(b, strlen(b), f, 2), -1); /* more than max */
	char c[80];
	const char *h = "theme=dark; eg_session=abc123; other=x";
	assert_int_equal(webform_cookie(h, strlen(h), "eg_session", c, sizeof(c)), 6);
	assert_string_equal(c, "abc123");
	assert_int_equal(webform_cookie(h, strlen(h), "eg", c, sizeof(c)), -1);
	assert_int_equal(webform_cookie(h, strlen(h), "eg_session", c, 4), -1); /* too long */
	h = "xeg_session=evil";
	assert_int_equal(webform_cookie(h, strlen(h), "eg_session", c, sizeof(c)), -1);
	/* a value with a NUL or a control byte is no session id (found by fuzz_webform) */
	assert_int_equal(webform_cookie("eg_session=ab\0cd", 16, "eg_session", c, sizeof(c)), -1);
	assert_int_equal(webform_cookie("eg_session=ab\001cd", 16, "eg_session", c, sizeof(c)), -1);
}

static void test_escaping(void **st)
{
	struct sbuf o = {0};
	fmt_json_str(&o, "<img src=x onerror=alert(1)>\"\\\n");
	assert_string_equal(o.p, "\"\\u003cimg src=x onerror=alert(1)\\u003e\\\"\\\\\\u000a\"");
	o.len = 0;
	fmt_html(&o, "<a href='x'>&\"");
	assert_string_equal(o.p, "&lt;a href=&#39;x&#39;&gt;&amp;&quot;");
	const char *formulas[] = {"=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"};
	for (size_t i = 0; i < 6; i++) {
		o.len = 0;
		fmt_csv_str(&o, formulas[i]);
		assert_true(o.len > 3);
		assert_memory_equal(o.p, "\"'", 2); /* quoted, then a leading ' */
	}
	o.len = 0;
	fmt_csv_str(&o, "a,\"b\"");
	assert_string_equal(o.p, "\"a,\"\"b\"\"\"");
	o.len = 0;
	fmt_csv_str(&o, "iPhone 5");
	assert_string_equal(o.p, "iPhone 5");
	sbuf_free(&o);
}

static void test_lockout(void **st)
{
	struct console_auth *a = calloc(1, sizeof(*a));
	console_auth_init(a, 1000, 60000);
	uint64_t t = 1000;
	for (int i = 1; i < LOGIN_MAX_FAILS; i++) {
		assert_int_equal(console_auth_failed(a, "192.0.2.1", "alice", 1, t), 0);
		assert_int_equal(console_auth_locked(a, "192.0.2.1", "alice", t), 0);
	}
	/* the 20th locks both the source and the account */
	assert_int_equal(console_auth_failed(a, "192.0.2.1", "alice", 1, t), 3);
	assert_true(console_auth_locked(a, "192.0.2.1", "bob", t + 1) > 0);   /* the source */
	assert_true(console_auth_locked(a, "192.0.2.9", "alice", t + 1) > 0); /* the account */
	assert_int_equal(console_auth_locked(a, "192.0.2.9", "bob", t + 1), 0);
	console_auth_succeeded(a, "192.0.2.1", "alice"); /* a right password does not lift a lock */
	assert_true(console_auth_locked(a, "192.0.2.1", "alice", t + 2) > 0);
	assert_int_equal(console_auth_locked(a, "192.0.2.1", "alice", t + 60001), 0);
	/* 5000 names that are no account cannot push a real account's count
	 * out of the table: carol's 20th failure still locks her */
	for (int i = 0; i < 19; i++)
		console_auth_failed(a, "198.51.100.1", "carol", 1, t);
	for (int i = 0; i < 5000; i++) {
		char name[32], src[32];
		snprintf(name, sizeof(name), "rnd%d", i);
		snprintf(src, sizeof(src), "203.0.113.%d", i % 200);
		console_auth_failed(a, src, name, 0, t + 10);
	}
	assert_int_equal(console_auth_failed(a, "198.51.100.3", "carol", 1, t + 20), 2);
	assert_true(console_auth_locked(a, "198.51.100.4", "carol", t + 21) > 0);
	free(a);
}

static void test_sessions(void **st)
{
	struct console_auth *a = calloc(1, sizeof(*a));
	console_auth_init(a, 1000, 60000);
	struct console_session *s =
	    console_auth_session_new(a, "alice", ROLE_HELPDESK, "192.0.2.1", 5000);
	assert_non_null(s);
	char id[65], csrf[65];
	snprintf(id, sizeof(id), "%s", s->id);
	snprintf(csrf, sizeof(csrf), "%s", s->csrf);
	assert_int_equal(strlen(id), 64);
	assert_string_not_equal(id, csrf);
	assert_ptr_equal(console_auth_session_find(a, id, 5900), s);
	assert_true(console_auth_csrf_ok(s, csrf));
	csrf[63] ^= 1;
	assert_false(console_auth_csrf_ok(s, csrf));
	assert_false(console_auth_csrf_ok(s, ""));
	assert_false(console_auth_csrf_ok(s, NULL));
	id[0] ^= 1;
	assert_null(console_auth_session_find(a, id, 5900));
	id[0] ^= 1;
	assert_null(console_auth_session_find(a, id, 7000)); /* idle 1.1 s > 1 s */
	assert_null(console_auth_session_find(a, id, 7001)); /* and it is gone */
	/* an account's role changes: its sessions end */
	s = console_auth_session_new(a, "alice", ROLE_HELPDESK, "192.0.2.1", 8000);
	snprintf(id, sizeof(id), "%s", s->id);
	struct account acc = {.name = "alice", .role = ROLE_VIEWER};
	struct accounts list = {.a = &acc, .n = 1};
	console_auth_sessions_revalidate(a, &list);
	assert_null(console_auth_session_find(a, id, 8001));
	free(a);
}

static void test_accounts(void **st)
{
	char dir[] = "/tmp/test_console.XXXXXX", path[128], err[512];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/console.passwd", dir);
	assert_int_equal(
	    accounts_set(path, "alice", ROLE_HELPDESK, "correct horse 1", err, sizeof(err)), 0);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(
	    accounts_set(path, "bob", ROLE_ADMIN, "battery staple 2", err, sizeof(err)), 0);
	struct accounts a = {0};
	assert_int_equal(accounts_load(path, &a, err, sizeof(err)), 0);
	assert_int_equal(a.n, 2);
	const struct account *x = accounts_find(&a, "alice");
	assert_non_null(x);
	assert_int_equal(x->role, ROLE_HELPDESK);
	assert_memory_equal(x->hash, "$y$", 3);
	assert_true(accounts_verify(x->hash, "correct horse 1"));
	assert_false(accounts_verify(x->hash, "correct horse 2"));
	assert_false(accounts_verify(NULL, "correct horse 1")); /* unknown account */
	assert_false(accounts_changed(path, &a));
	/* refused: group- or world-readable, for reading and for writing */
	chmod(path, 0640);
	assert_int_equal(accounts_load(path, &a, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "mode 0640"));
	assert_int_equal(accounts_set(path, "carol", ROLE_VIEWER, "longenough", err, sizeof(err)),
			 -1);
	chmod(path, 0604);
	assert_int_equal(accounts_load(path, &a, err, sizeof(err)), -1);
	chmod(path, 0600);
	assert_int_equal(
	    accounts_set(path, "bad:name", ROLE_VIEWER, "longenough", err, sizeof(err)), -1);
	assert_int_equal(accounts_set(path, "carol", ROLE_VIEWER, "short", err, sizeof(err)), -1);
	/* a malformed line is refused with file:line */
	FILE *f = fopen(path, "a");
	fprintf(f, "mallory:root:$y$x\n");
	fclose(f);
	assert_int_equal(accounts_load(path, &a, err, sizeof(err)), -1);
	assert_non_null(strstr(err, ":4: role must be"));
	accounts_free(&a);
	unlink(path);
	rmdir(dir);
}

static int seen_role = -1;
static char seen_who[96];

static enum ctl_code cmd_probe(void *ctx, int argc, char **argv, struct sbuf *out)
{
	command_actor_text(command_actor(), seen_who, sizeof(seen_who));
	seen_role = command_actor()->role;
	sbuf_printf(out, "ran %s", argc > 1 ? argv[1] : "");
	return CTL_OK;
}

static int need_probe(int argc, char **argv)
{
	return argc > 1 && !strcmp(argv[1], "change") ? ROLE_HELPDESK : ROLE_VIEWER;
}

struct count_job {
	struct command_job job;
	int steps;
};

static int count_step(struct command_job *j, struct sbuf *out, enum ctl_code *code)
{
	struct count_job *c = (struct count_job *)j;
	sbuf_printf(out, "%d", c->steps);
	assert_non_null(command_actor()); /* the actor is there in every step */
	if (++c->steps < 3)
		return 0;
	*code = CTL_OK;
	return 1;
}

static void count_free(struct command_job *j)
{
	free(j);
}

static enum ctl_code cmd_slow(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct count_job *j = calloc(1, sizeof(*j));
	j->job.step = count_step;
	j->job.free = count_free;
	command_defer(&j->job);
	return CTL_OK;
}

static void test_command_layer(void **st)
{
	static const struct ctl_cmd cmds[] = {{"probe", cmd_probe, need_probe, 1},
					      {"slow", cmd_slow, NULL, 1},
					      {NULL, NULL, NULL, 0}};
	struct command_actor viewer = {.kind = "console", .name = "victor", .role = ROLE_VIEWER};
	struct command_actor helper = {.kind = "console", .name = "helen", .role = ROLE_HELPDESK};
	struct sbuf out = {0};
	struct command_job *job;
	char *show[] = {"probe", "show", NULL}, *change[] = {"probe", "change", NULL};
	assert_int_equal(command_run(cmds, NULL, &viewer, 2, show, &out, &job), CTL_OK);
	assert_string_equal(seen_who, "console:victor");
	out.len = 0;
	seen_role = -1;
	assert_int_equal(command_run(cmds, NULL, &viewer, 2, change, &out, &job), CTL_DENIED);
	assert_int_equal(seen_role, -1); /* never ran */
	assert_non_null(strstr(out.p, "needs the helpdesk role"));
	out.len = 0;
	assert_int_equal(command_run(cmds, NULL, &helper, 2, change, &out, &job), CTL_OK);
	assert_int_equal(seen_role, ROLE_HELPDESK);
	assert_null(command_actor()); /* only while a command runs */
	char *slow[] = {"slow", NULL};
	out.len = 0;
	command_run(cmds, NULL, &helper, 1, slow, &out, &job);
	assert_non_null(job);
	enum ctl_code code = CTL_FAILED;
	int steps = 0;
	while (!command_step(job, &out, &code))
		steps++;
	assert_int_equal(steps, 2);
	assert_int_equal(code, CTL_OK);
	assert_string_equal(out.p, "012");
	command_job_free(job);
	sbuf_free(&out);
}

static int audit_cb(void *arg, const struct inv_audit *a)
{
	struct {
		int n;
		char first[256];
	} *g = arg;
	if (!g->n++)
		snprintf(g->first, sizeof(g->first), "%s", a->what);
	return 0;
}

static void test_audit_append_only(void **st)
{
	char dir[] = "/tmp/test_console.XXXXXX", path[128], err[256];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/inventory.db", dir);
	struct inventory *inv = inv_open(path, 0, err, sizeof(err));
	assert_non_null(inv);
	struct inv_audit r = {.at = 1000};
	snprintf(r.who, sizeof(r.who), "console:alice");
	snprintf(r.what, sizeof(r.what), "device approve X");
	assert_int_equal(inv_audit_add(inv, &r), 1);
	snprintf(r.what, sizeof(r.what), "rules add db1");
	assert_int_equal(inv_audit_add(inv, &r), 2);
	inv_close(inv);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	char *e = NULL;
	assert_int_not_equal(sqlite3_exec(db, "UPDATE audit SET who = 'nobody'", NULL, NULL, &e),
			     SQLITE_OK);
	assert_non_null(strstr(e, "append-only"));
	sqlite3_free(e);
	assert_int_not_equal(sqlite3_exec(db, "DELETE FROM audit", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	inv = inv_open(path, 1, err, sizeof(err));
	assert_non_null(inv);
	struct {
		int n;
		char first[256];
	} got = {0};
	assert_int_equal(inv_foreach_audit(inv, 0, 10, audit_cb, &got), 2);
	assert_string_equal(got.first, "rules add db1"); /* newest first */
	inv_close(inv);
	unlink(path);
	char p2[160];
	snprintf(p2, sizeof(p2), "%s-wal", path);
	unlink(p2);
	snprintf(p2, sizeof(p2), "%s-shm", path);
	unlink(p2);
	rmdir(dir);
}

static void test_user_address(void **st)
{
	char out[256];
	assert_int_equal(notify_user_address("", "alice@example.org", out, sizeof(out)), 0);
	assert_string_equal(out, "alice@example.org");
	assert_int_equal(notify_user_address("", "CONTOSO\\alice", out, sizeof(out)), -1);
	assert_int_equal(notify_user_address("%u@example.org", "CONTOSO\\alice", out, sizeof(out)),
			 0);
	assert_string_equal(out, "alice@example.org");
	assert_int_equal(
	    notify_user_address("%l@mail.example.org", "bob@corp.example", out, sizeof(out)), 0);
	assert_string_equal(out, "bob@mail.example.org");
	/* nothing that could end an SMTP command or add a recipient */
	assert_int_equal(notify_user_address("", "a b@example.org", out, sizeof(out)), -1);
	assert_int_equal(notify_user_address("", "a@x>\r\nRCPT TO:<b@y", out, sizeof(out)), -1);
	assert_int_equal(notify_user_address("%u@example.org", "a,b", out, sizeof(out)), -1);
	assert_int_equal(notify_user_address("", "a@b@c", out, sizeof(out)), -1);
}

static void test_devhist(void **st)
{
	struct devhist *h = devhist_new();
	struct inv_event e = {.magic = INV_EVENT_MAGIC, .flags = INV_EV_DECISION};
	snprintf(e.user, sizeof(e.user), "alice");
	snprintf(e.device_id, sizeof(e.device_id), "DEV1");
	for (int i = 0; i < DEVHIST_RING + 5; i++) {
		e.now = 1000 + i;
		devhist_note(h, &e);
	}
	struct devhist_entry out[DEVHIST_RING];
	assert_int_equal(devhist_get(h, "ALICE", "dev1", out), DEVHIST_RING);
	assert_int_equal(out[0].at, 1005); /* oldest kept */
	assert_int_equal(out[DEVHIST_RING - 1].at, 1000 + DEVHIST_RING + 4);
	assert_int_equal(devhist_get(h, "alice", "DEV2", out), 0);
	devhist_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_webform),	      cmocka_unit_test(test_escaping),
	    cmocka_unit_test(test_lockout),	      cmocka_unit_test(test_sessions),
	    cmocka_unit_test(test_accounts),	      cmocka_unit_test(test_command_layer),
	    cmocka_unit_test(test_audit_append_only), cmocka_unit_test(test_user_address),
	    cmocka_unit_test(test_devhist),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
