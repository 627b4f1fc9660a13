/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_config.c - the config loader: built-in defaults, a full valid file,
 * and refusals reported as "file:line: message" (every error, not only the
 * first), unknown keys included.
 */
#include "testlib.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "gate.h"
#include "policy.h"

static char path[64];

static void write_conf(const char *text)
{
	snprintf(path, sizeof(path), "/tmp/eg-test-config-%d.conf", (int)getpid());
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static struct gw_config *load(const char *text, struct config_errors *errs, int *rc)
{
	struct gw_config *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	memset(errs, 0, sizeof(*errs));
	write_conf(text);
	config_defaults(c);
	*rc = config_load(c, path, errs);
	unlink(path);
	return c;
}

/* Some error message contains both the file:line prefix and the text. */
static int has_error(const struct config_errors *e, int line, const char *text)
{
	char prefix[96];
	snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	for (int i = 0; i < e->n; i++)
		if (!strncmp(e->msg[i], prefix, strlen(prefix)) && strstr(e->msg[i], text))
			return 1;
	return 0;
}

static void test_defaults(void **state)
{
	struct gw_config c;
	config_defaults(&c);
	assert_int_equal(c.nlisten, 1);
	assert_int_equal(ntohs(((struct sockaddr_in *)&c.listen[0].ss)->sin_port), 8443);
	assert_int_equal(c.nbackends, 1);
	assert_string_equal(c.backends[0].name, "demo");
	assert_int_equal(c.timeouts.hanging_ms, 3660000); /* a Ping may hang ~59 min */
	assert_false(c.strict_device_id); /* real clients send more than Exchange's rule */
	assert_string_equal(c.relay_method, "auto");
	assert_int_equal(c.policy.default_access, POLICY_ALLOW);
	assert_false(c.throttle.enabled);
	assert_true(config_worker_count(&c) >= 1);
}

static void test_addresses(void **state)
{
	struct cfg_addr a;
	assert_int_equal(config_parse_addr("127.0.0.1:443", &a), 0);
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_int_equal(config_parse_addr("[::1]:8443", &a), 0);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(config_parse_addr(":443", &a), 0);
	assert_int_equal(config_parse_addr("::1:443", &a), -1); /* v6 needs brackets */
	assert_int_equal(config_parse_addr("1.2.3.4", &a), -1);
	assert_int_equal(config_parse_addr("1.2.3.4:0", &a), -1);
	assert_int_equal(config_parse_addr("1.2.3.4:65536", &a), -1);
	assert_int_equal(config_parse_addr("example.com:443", &a), -1); /* no DNS at start */
	assert_int_equal(config_parse_addr("127.0.0.1:443", &a), 0);
	assert_false(a.plain);
	/* Plain HTTP behind a TLS-offloading load balancer. */
	assert_int_equal(config_parse_addr("http://127.0.0.1:8080", &a), 0);
	assert_true(a.plain);
	assert_int_equal(ntohs(((struct sockaddr_in *)&a.ss)->sin_port), 8080);
	assert_string_equal(a.text, "http://127.0.0.1:8080");
	assert_int_equal(config_parse_addr("http://[::1]:80", &a), 0);
	assert_true(a.plain);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(config_parse_addr("http://host", &a), -1);
}

static void test_full_file(void **state)
{
	struct config_errors e;
	int rc;
	struct gw_config *c =
	    load("listen = [ \"0.0.0.0:443\", \"[::]:443\" ];\n"
		 "workers = 2;\n"
		 "strict_device_id = true;\n"
		 "timeouts = { idle = 2.5; hanging_request = 3600; };\n"
		 "backends = (\n"
		 "  { name = \"cas1\"; address = \"10.0.0.1:443\"; tls = true; sni = "
		 "\"mail.example\"; },\n"
		 "  { name = \"sogo\"; address = \"127.0.0.1:20000\"; prefix = \"/SOGo\";\n"
		 "    reuse = \"never\"; weight = 3; health = false; }\n"
		 ");\n"
		 "policy = { default = \"quarantine\";\n"
		 "  rules = ( \"block DeviceOS is \\\"iOS 6.1 10B142\\\"\" );\n"
		 "  incubation = { days = 21; families = [ \"iOS\" ]; }; };\n"
		 "xdp = { interfaces = [ \"eth0\" ]; action = \"rst\"; };\n"
		 "throttle = { classes = ( { name = \"default\"; },\n"
		 "  { name = \"ios61\"; match = \"DeviceOS like \\\"iOS 6.1*\\\"\";\n"
		 "    loop = { commands = { MeetingResponse = 8; Ping = false; }; }; } ); };\n",
		 &e, &rc);
	for (int i = 0; i < e.n; i++)
		print_message("%s\n", e.msg[i]);
	assert_int_equal(rc, 0);
	assert_int_equal(c->nlisten, 2);
	assert_int_equal(c->workers, 2);
	assert_true(c->strict_device_id);
	assert_int_equal(c->timeouts.idle_ms, 2500);
	assert_int_equal(c->nbackends, 2);
	assert_true(c->backends[0].tls);
	assert_string_equal(c->backends[1].prefix, "/SOGo");
	assert_int_equal(c->backends[1].reuse, CFG_REUSE_NEVER);
	assert_int_equal(c->backends[1].weight, 3);
	assert_false(c->backends[1].health_enabled);
	assert_int_equal(c->policy.default_access, POLICY_QUARANTINE);
	assert_int_equal(c->policy.nrules, 1);
	assert_int_equal(c->policy.rules[0].line, 11); /* kept for rule errors */
	assert_true(c->policy.incubation);
	assert_int_equal(c->policy.nfamilies, 1);
	assert_int_equal(c->xdp.nifaces, 1);
	assert_true(c->xdp.action_rst);
	assert_true(c->throttle.enabled);
	assert_int_equal(c->throttle.nclasses, 2);
	config_free(c);
	free(c);
}

/* All problems are reported at once, each with its line. */
static void test_errors_with_lines(void **state)
{
	struct config_errors e;
	int rc;
	struct gw_config *c = load("listen = \"1.2.3.4\";\n"			     /* 1 */
				   "bogus = 1;\n"				     /* 2 */
				   "timeouts = { idle = -1; nap = 3; };\n"	     /* 3 */
				   "backends = (\n"				     /* 4 */
				   "  { name = \"a\"; },\n"			     /* 5 */
				   "  { name = \"a\"; address = \"1.2.3.4:80\";\n"   /* 6 */
				   "    prefix = \"x/\"; reuse = \"sometimes\"; }\n" /* 7 */
				   ");\n"					     /* 8 */
				   "policy = { default = \"maybe\"; };\n"	     /* 9 */
				   "xdp = { mode = \"turbo\"; };\n"		     /* 10 */
				   "relay_method = \"sockmap\";\n",		     /* 11 */
				   &e, &rc);
	assert_int_equal(rc, -1);
	assert_true(has_error(&e, 1, "listen: bad address '1.2.3.4'"));
	assert_true(has_error(&e, 2, "unknown setting 'bogus'"));
	assert_true(has_error(&e, 3, "'idle' = -1 s is out of range"));
	assert_true(has_error(&e, 3, "unknown setting 'nap' in timeouts"));
	assert_true(has_error(&e, 5, "needs address"));
	assert_true(has_error(&e, 6, "backend name 'a' is used twice"));
	assert_true(has_error(&e, 6, "prefix must start with '/'"));
	assert_true(has_error(&e, 6, "reuse must be"));
	assert_true(has_error(&e, 9, "policy.default must be"));
	assert_true(has_error(&e, 10, "xdp.mode must be"));
	assert_true(has_error(&e, 11, "relay_method must be auto, user or splice"));
	assert_true(e.n >= 11);
	free(c);
}

/* A list element's line is the line of its text: not where libconfig ended
 * it (the ')' after trailing comments), nor a line above with the same
 * first words (the nearest one at or above libconfig's line is taken). */
static void test_rule_lines(void **state)
{
	struct config_errors e;
	int rc;
	struct gw_config *c =
	    load("# block DeviceId is \"old\"\n"				 /* 1 */
		 "policy = { rules = (\n"					 /* 2 */
		 "  \"block DeviceId is \\\"a\\\"\",\n"				 /* 3 */
		 "  # block DeviceId is \"old\"\n"				 /* 4 */
		 "  \"block DeviceId is \\\"b\\\"\"\n"				 /* 5 */
		 "  # comments after the last rule\n"				 /* 6 */
		 "  #\n"							 /* 7 */
		 "); blocked_device_ids = ( \"Dev12345\", \"Dev67890\" ); };\n", /* 8 */
		 &e, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(c->policy.nrules, 2);
	assert_int_equal(c->policy.rules[0].line, 3);
	assert_int_equal(c->policy.rules[1].line, 5);
	assert_int_equal(c->policy.nblocked, 2);
	assert_int_equal(c->policy.blocked_ids[1].line, 8);
	config_free(c);
	free(c);
}

static void test_syntax_error(void **state)
{
	struct config_errors e;
	int rc;
	struct gw_config *c = load("workers = 2;\nlisten = [ \"1.2.3.4:1\" \n", &e, &rc);
	assert_int_equal(rc, -1);
	assert_int_equal(e.n, 1);
	assert_non_null(strstr(e.msg[0], "syntax"));
	assert_non_null(strstr(e.msg[0], path));
	free(c);
}

static void test_type_errors(void **state)
{
	struct config_errors e;
	int rc;
	struct gw_config *c = load("workers = \"two\";\naccess_log = 1;\n"
				   "tls = { certificates = ( { cert = \"a.pem\"; } ); };\n"
				   "throttle = { classes = ( { name = \"x\"; },\n"
				   "  { name = \"y\"; burst = 5; } ); };\n",
				   &e, &rc);
	assert_int_equal(rc, -1);
	assert_true(has_error(&e, 1, "'workers' must be an integer"));
	assert_true(has_error(&e, 2, "'access_log' must be true or false"));
	assert_true(has_error(&e, 3, "needs key"));
	assert_true(has_error(&e, 5, "needs match")); /* only the first class may go without */
	free(c);
}

/* tls.ktls: auto by default (the start probe decides), on, off; nothing else. */
static void test_ktls_knob(void **state)
{
	(void)state;
	struct gw_config d;
	config_defaults(&d);
	assert_int_equal(d.tls.ktls, CFG_KTLS_AUTO);
	static const struct {
		const char *v;
		int want;
	} ok[] = {{"auto", CFG_KTLS_AUTO}, {"on", CFG_KTLS_ON}, {"off", CFG_KTLS_OFF}};
	struct config_errors e;
	int rc;
	char text[64];
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text), "tls = { ktls = \"%s\"; };\n", ok[i].v);
		struct gw_config *c = load(text, &e, &rc);
		assert_int_equal(rc, 0);
		assert_int_equal(c->tls.ktls, ok[i].want);
		config_free(c);
		free(c);
	}
	struct gw_config *c = load("tls = {\n  ktls = \"yes\";\n};\n", &e, &rc);
	assert_int_not_equal(rc, 0);
	assert_true(has_error(&e, 2, "tls.ktls must be \"auto\" (default), \"on\" or \"off\""));
	if (c) {
		config_free(c);
		free(c);
	}
}

/* Request-body rate, per-source cap and its exempt prefixes. */
static void test_slow_client_limits(void **state)
{
	struct gw_config d;
	config_defaults(&d);
	assert_int_equal(d.limits.min_body_rate, 500);
	assert_int_equal(d.limits.max_conns_per_source, 8192);
	assert_int_equal(d.limits.ncap_exempt, 0);
	assert_true(d.tls.cleanse_plaintext);

	struct config_errors e;
	int rc;
	struct gw_config *c =
	    load("tls = { cleanse_plaintext = false; };\n"
		 "limits = {\n"
		 "  min_body_rate = 0;\n"
		 "  max_connections_per_source = 3000;\n"
		 "  per_source_exempt = [ \"198.18.7.9/16\", \"2001:db8::1\", \"10.1.2.3\" ];\n"
		 "};\n",
		 &e, &rc);
	assert_int_equal(rc, 0);
	assert_false(c->tls.cleanse_plaintext);
	assert_int_equal(c->limits.min_body_rate, 0);
	assert_int_equal(c->limits.max_conns_per_source, 3000);
	assert_int_equal(c->limits.ncap_exempt, 3);
	assert_int_equal(c->limits.cap_exempt[0].len, 96 + 16);
	static const uint8_t in[16] = {[10] = 0xff, 0xff, 198, 18, 200, 1};
	static const uint8_t out[16] = {[10] = 0xff, 0xff, 198, 19, 0, 1};
	assert_true(config_prefix_match(&c->limits.cap_exempt[0], in));
	assert_false(config_prefix_match(&c->limits.cap_exempt[0], out));
	assert_int_equal(c->limits.cap_exempt[1].len, 128); /* a bare address is a host */
	assert_int_equal(c->limits.cap_exempt[2].len, 128);
	config_free(c);
	free(c);

	c = load("limits = {\n"
		 "  per_source_exempt = [ \"10.0.0.0/33\", \"example.org\", \"::/129\", "
		 "\"1.2.3.4/\" ];\n"
		 "  max_connections_per_source = -1;\n"
		 "};\n",
		 &e, &rc);
	assert_int_equal(rc, -1);
	assert_true(has_error(&e, 2, "'10.0.0.0/33' is not an address or prefix"));
	assert_true(has_error(&e, 2, "'example.org' is not an address or prefix"));
	assert_true(has_error(&e, 2, "'::/129' is not an address or prefix"));
	assert_true(has_error(&e, 2, "'1.2.3.4/' is not an address or prefix"));
	assert_true(has_error(&e, 3, "'max_connections_per_source' = -1 is out of range"));
	free(c);

	struct cfg_prefix p;
	assert_int_equal(config_parse_prefix("0.0.0.0/0", &p), 0);
	assert_int_equal(p.len, 96); /* every IPv4 address, no IPv6 one */
	static const uint8_t v6[16] = {0x20, 0x01};
	assert_true(config_prefix_match(&p, in));
	assert_false(config_prefix_match(&p, v6));
	assert_int_equal(config_parse_prefix("2001:db8:ff::/33", &p), 0);
	static const uint8_t v6b[16] = {0x20, 0x01, 0x0d, 0xb8, 0x7f};
	assert_true(config_prefix_match(&p, v6b)); /* host bits cleared: 2001:db8::/33 */
}

static void test_missing_file(void **state)
{
	struct config_errors e = {0};
	struct gw_config *c = calloc(1, sizeof(*c));
	config_defaults(c);
	assert_int_equal(config_load(c, "/nonexistent/easgate.conf", &e), -1);
	assert_int_equal(e.n, 1);
	assert_non_null(strstr(e.msg[0], "cannot read"));
	free(c);
}

/*
 * config_load_text: the bytes as the file would give them. A NUL inside is
 * a byte of the input (libconfig's syntax error at its line, not the end of
 * the text); a rule's line is found in the text itself; config_load of the
 * same bytes gives the same config (it is a wrapper of this one parser).
 */
static void test_load_text(void **state)
{
	static const char conf[] = "workers = 2;\n"
				   "policy = {\n"
				   "  rules = (\n"
				   "    \"block DeviceType is Bad\"\n"
				   "    # a comment between\n"
				   "  );\n"
				   "};\n";
	struct config_errors e = {0}, ef = {0};
	struct gw_config *c = calloc(1, sizeof(*c)), *f = NULL;
	config_defaults(c);
	assert_int_equal(config_load_text(c, "mem.conf", conf, strlen(conf), 0, &e), 0);
	assert_int_equal(c->workers, 2);
	assert_string_equal(c->path, "mem.conf");
	assert_int_equal(c->policy.nrules, 1);
	assert_int_equal(c->policy.rules[0].line, 4); /* not the ')' line libconfig gives */
	int rc;
	f = load(conf, &ef, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(f->workers, 2);
	assert_int_equal(f->policy.rules[0].line, 4);
	assert_string_equal(f->policy.rules[0].text, c->policy.rules[0].text);
	config_free(c);
	config_free(f);
	free(f);

	memset(&e, 0, sizeof(e)); /* an empty file: the defaults */
	config_defaults(c);
	assert_int_equal(config_load_text(c, "mem.conf", "", 0, 0, &e), 0);
	assert_int_equal(e.n, 0);
	assert_int_equal(c->nbackends, 1);

	static const char nul[] = "workers = 1;\n\0\nworkers = 3;\n";
	memset(&e, 0, sizeof(e));
	config_defaults(c);
	assert_int_equal(config_load_text(c, "mem.conf", nul, sizeof(nul) - 1, 0, &e), -1);
	assert_int_equal(e.n, 1);
	assert_string_equal(e.msg[0], "mem.conf:2: syntax: syntax error");
	free(c);
}

/*
 * @include: the file's loader lets libconfig open what it names (as it
 * always did); CONFIG_TEXT_NO_INCLUDE refuses it at its line, whatever the
 * path (absolute, relative, climbing out with ".."), so that the fuzzer's
 * bytes cannot make a parse read a file.
 */
static void test_no_include(void **state)
{
	char inc[64], text[256];
	snprintf(inc, sizeof(inc), "/tmp/eg-test-include-%d.conf", (int)getpid());
	FILE *fi = fopen(inc, "w");
	assert_non_null(fi);
	fputs("workers = 5;\n", fi);
	assert_int_equal(fclose(fi), 0);
	snprintf(text, sizeof(text), "log_level = \"info\";\n@include \"%s\"\n", inc);

	struct config_errors e = {0};
	int rc;
	struct gw_config *c = load(text, &e, &rc);
	assert_int_equal(rc, 0); /* the file's loader: included */
	assert_int_equal(c->workers, 5);

	const char *names[] = {inc, inc + 1, "../../../../../.." /* + inc */};
	for (size_t i = 0; i < 3; i++) {
		snprintf(text, sizeof(text), "log_level = \"info\";\n@include \"%s%s\"\n", names[i],
			 i == 2 ? inc : "");
		memset(&e, 0, sizeof(e));
		config_defaults(c);
		assert_int_equal(
		    config_load_text(c, "mem.conf", text, strlen(text), CONFIG_TEXT_NO_INCLUDE, &e),
		    -1);
		assert_int_equal(e.n, 1);
		assert_string_equal(e.msg[0], "mem.conf:2: syntax: cannot open include file");
		assert_int_equal(c->workers, 0);
	}
	unlink(inc);
	free(c);
}

/*
 * What --check-config, a start and a reload say about text: the loader's
 * errors, else the policy stage's (gate_build_policy, where the rules and
 * lists compile), else "" (taken). Joined by newlines.
 */
static void check_config_text(const char *text, char *out, size_t outsz)
{
	struct config_errors e = {0};
	struct gw_config *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	config_defaults(c);
	out[0] = 0;
	if (config_load_text(c, "mem.conf", text, strlen(text), 0, &e) < 0) {
		for (int i = 0; i < e.n; i++)
			snprintf(out + strlen(out), outsz - strlen(out), "%s\n", e.msg[i]);
		free(c);
		return;
	}
	struct policy *p = gate_build_policy(c, NULL, out, outsz);
	if (p)
		out[0] = 0;
	policy_free(p);
	config_free(c);
	free(c);
}

/*
 * Whichever stage refuses a personal list entry or the incubation settings,
 * its error names the file and the line (fuzz_config's invariant). The
 * policy stage used to say "blocked_ids[1]: want ..." (no line, and not the
 * key's name) and "incubation.days must be at least 1" (no line) about
 * settings the loader had taken.
 */
static void test_policy_refusals_name_lines(void **state)
{
	char out[2048];
	check_config_text("policy = {\n"
			  "  blocked_device_ids = [ \"ok1\",\n"
			  "    \"a b\" ];\n"
			  "  allowed_device_ids = [ \"x:\" ];\n"
			  "};\n",
			  out, sizeof(out));
	assert_non_null(strstr(out, "mem.conf:3: "));
	assert_non_null(strstr(out, "blocked_device_ids"));
	assert_non_null(strstr(out, "mem.conf:4: "));
	assert_non_null(strstr(out, "allowed_device_ids"));

	check_config_text("policy = {\n  incubation = {\n    days = 0;\n  };\n};\n", out,
			  sizeof(out));
	assert_non_null(strstr(out, "mem.conf:3: "));
	assert_non_null(strstr(out, "days"));

	check_config_text("policy = {\n  incubation = {\n    families = [ \"\" ];\n  };\n};\n", out,
			  sizeof(out));
	assert_non_null(strstr(out, "mem.conf:3: "));
	assert_non_null(strstr(out, "families"));

	/* incubation off: its days are not read, so 0 is no error (as before) */
	check_config_text("policy = { incubation = { enabled = false; days = 0; }; };\n", out,
			  sizeof(out));
	assert_string_equal(out, "");
	check_config_text("policy = { blocked_device_ids = [ \"alice:ABC\", \"D+/=._~9\" ]; };\n",
			  out, sizeof(out));
	assert_string_equal(out, "");
}

/*
 * An error quotes what the file says, and a string may hold a raw newline
 * or an escape: each error stays one line of --check-config's output (the
 * byte shown as '?'), whichever stage wrote it. fuzz_config found a rule's
 * error split over two lines.
 */
static void test_errors_are_one_line(void **state)
{
	char out[2048];
	check_config_text("listen = \"no\nwhere\x1b[2J\";\n"
			  "backends = ( { name = \"b\\t\"; address = \"x\\ny:1\"; } );\n",
			  out, sizeof(out));
	assert_non_null(strstr(out, "mem.conf:1: listen: bad address 'no?where?[2J'"));
	assert_non_null(strstr(out, "mem.conf:3: backend 'b?': bad address 'x?y:1'"));
	check_config_text("policy = { rules = ( \"deny\nDeviceOS is x\" ); };\n", out, sizeof(out));
	assert_non_null(strstr(out, ": rule: column 1: unknown access 'deny?DeviceOS'"));
	for (const char *p = out; *p; p++)
		assert_true(*p == '\n' || ((unsigned char)*p >= 0x20 && *p != 0x7f));
}

/* --- @include: an error names the file that holds it ------------------------ */

static char inc_dir[64], inc_cwd[PATH_MAX];

/* inc_dir/name := text. */
static void write_inc(const char *name, const char *text)
{
	char p[160];
	snprintf(p, sizeof(p), "%s/%s", inc_dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* Some error is "file:line: ..." and contains text. */
static int has_error_in(const struct config_errors *e, const char *file, int line, const char *text)
{
	char prefix[192];
	snprintf(prefix, sizeof(prefix), "%s:%d: ", file, line);
	for (int i = 0; i < e->n; i++)
		if (!strncmp(e->msg[i], prefix, strlen(prefix)) && strstr(e->msg[i], text))
			return 1;
	return 0;
}

/* What --check-config says about inc_dir/top.conf: the loader's errors (rc
 * -1), else the policy stage's, one a line ("" and rc 0: taken). */
static int check_top(char *out, size_t outsz, struct config_errors *e)
{
	char top[128];
	snprintf(top, sizeof(top), "%s/top.conf", inc_dir);
	struct gw_config *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	memset(e, 0, sizeof(*e));
	config_defaults(c);
	out[0] = 0;
	int rc = config_load(c, top, e);
	if (rc == 0) {
		struct policy *p = gate_build_policy(c, NULL, out, outsz);
		if (p)
			out[0] = 0;
		else
			rc = 1;
		policy_free(p);
		config_free(c);
	}
	free(c);
	return rc;
}

/*
 * Each stage's error about a setting from an included file (libconfig's
 * syntax error, the loader's unknown key and out-of-range value, a list
 * entry's line found in the text, the policy stage's rule) names that file
 * and its own line, two includes deep; the top file's errors still name the
 * top file. Names as written in the @include: a relative one is opened from
 * the working directory (the product sets no include directory, so libconfig
 * takes the name as it is) and named so. It used to be "top.conf:<line of
 * the included file>" (and a list entry's line libconfig's ')' line).
 */
static void include_errors(const char *pfx)
{
	char top_path[128], mid[160], leaf[160], text[512], out[2048];
	struct config_errors e;
	snprintf(top_path, sizeof(top_path), "%s/top.conf", inc_dir);
	snprintf(mid, sizeof(mid), "%smid.conf", pfx);
	snprintf(leaf, sizeof(leaf), "%sleaf.conf", pfx);

	snprintf(text, sizeof(text),
		 "workers = 1;\n"    /* 1 */
		 "@include \"%s\"\n" /* 2 */
		 "bogus_top = 1;\n", /* 3 */
		 mid);
	write_inc("top.conf", text);
	snprintf(text, sizeof(text),
		 "# mid\n"	       /* 1 */
		 "timeouts = {\n"      /* 2 */
		 "  idle = -5;\n"      /* 3 */
		 "};\n"		       /* 4 */
		 "@include \"%s\"\n"   /* 5 */
		 "mid_unknown = 2;\n", /* 6 */
		 leaf);
	write_inc("mid.conf", text);
	write_inc("leaf.conf", "# leaf\n"			      /* 1 */
			       "\n"				      /* 2 */
			       "limits = { max_head = 99999999; };\n" /* 3 */
			       "leaf_unknown = 3;\n");		      /* 4 */
	assert_int_equal(check_top(out, sizeof(out), &e), -1);
	assert_true(has_error_in(&e, mid, 3, "'idle' = -5 s is out of range"));
	assert_true(has_error_in(&e, mid, 6, "unknown setting 'mid_unknown'"));
	assert_true(has_error_in(&e, leaf, 3, "'max_head' = 99999999 is out of range"));
	assert_true(has_error_in(&e, leaf, 4, "unknown setting 'leaf_unknown'"));
	assert_true(has_error_in(&e, top_path, 3, "unknown setting 'bogus_top'"));
	assert_int_equal(e.n, 5);

	/* the policy stage: a bad rule, its line found in the leaf's text
	 * (libconfig says the ')' line, 8), and an unnamed rule named by it */
	write_inc("leaf.conf", "# leaf\n"				    /* 1 */
			       "policy = {\n"				    /* 2 */
			       "  rules = (\n"				    /* 3 */
			       "    \"block DeviceId is \\\"Leaf1\\\"\",\n" /* 4 */
			       "    \"block DeviceOS iz \\\"x\\\"\"\n"	    /* 5 */
			       "    # the last rule's comment\n"	    /* 6 */
			       "    #\n"				    /* 7 */
			       "  );\n"					    /* 8 */
			       "};\n");					    /* 9 */
	snprintf(text, sizeof(text), "# mid\n\n\n\n@include \"%s\"\n", leaf);
	write_inc("mid.conf", text);
	snprintf(text, sizeof(text), "workers = 1;\n@include \"%s\"\n", mid);
	write_inc("top.conf", text);
	assert_int_equal(check_top(out, sizeof(out), &e), 1);
	char want[192];
	snprintf(want, sizeof(want), "%s:5: rule: ", leaf);
	assert_non_null(strstr(out, want));
	assert_null(strchr(out, '\n')); /* that error only */

	write_inc("leaf.conf", "policy = {\n"
			       "  rules = (\n"
			       "    \"block DeviceId is \\\"Leaf1\\\"\"\n" /* 3 */
			       "    # a comment\n"
			       "  );\n"
			       "};\n");
	struct gw_config *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	memset(&e, 0, sizeof(e));
	config_defaults(c);
	assert_int_equal(config_load(c, top_path, &e), 0);
	assert_int_equal(c->policy.nrules, 1);
	assert_int_equal(c->policy.rules[0].line, 3);
	struct policy *p = gate_build_policy(c, NULL, out, sizeof(out));
	assert_non_null(p);
	snprintf(want, sizeof(want), "%s:3", leaf);
	assert_string_equal(policy_rule_at(p, 0)->name, want);
	policy_free(p);
	config_free(c);
	free(c);

	/* libconfig's syntax error, in the leaf; then in the top file after
	 * the include */
	write_inc("leaf.conf", "x = 1;\n\n  y = ;\n");
	assert_int_equal(check_top(out, sizeof(out), &e), -1);
	assert_int_equal(e.n, 1);
	assert_true(has_error_in(&e, leaf, 3, "syntax: syntax error"));
	write_inc("leaf.conf", "access_log = true;\n");
	snprintf(text, sizeof(text), "workers = 1;\n@include \"%s\"\nlog_level = ;\n", mid);
	write_inc("top.conf", text);
	assert_int_equal(check_top(out, sizeof(out), &e), -1);
	assert_int_equal(e.n, 1);
	assert_true(has_error_in(&e, top_path, 3, "syntax: syntax error"));

	/* an include that cannot be opened: the line of its @include, in
	 * the file that holds it, and where a relative name was looked for */
	snprintf(text, sizeof(text), "# mid\n@include \"%snone.conf\"\n", pfx);
	write_inc("mid.conf", text);
	assert_int_equal(check_top(out, sizeof(out), &e), -1);
	assert_int_equal(e.n, 1);
	assert_true(has_error_in(&e, mid, 2, "syntax: cannot open include file"));
	if (pfx[0] != '/')
		assert_non_null(strstr(e.msg[0], "working directory"));
}

/* inc_dir's files go and the working directory comes back, whether the
 * test passed or not. */
static int inc_teardown(void **state)
{
	if (chdir(inc_cwd) < 0)
		return -1;
	const char *names[] = {"top.conf", "mid.conf", "leaf.conf"};
	for (size_t i = 0; i < 3; i++) {
		char p[160];
		snprintf(p, sizeof(p), "%s/%s", inc_dir, names[i]);
		unlink(p);
	}
	return rmdir(inc_dir);
}

static void test_include_errors_name_their_file(void **state)
{
	assert_non_null(getcwd(inc_cwd, sizeof(inc_cwd)));
	snprintf(inc_dir, sizeof(inc_dir), "/tmp/eg-test-inc-%d", (int)getpid());
	assert_int_equal(mkdir(inc_dir, 0700), 0);
	char abs[80], rel[80];
	snprintf(abs, sizeof(abs), "%s/", inc_dir);
	include_errors(abs);
	/* relative names: from the working directory, the top file's own
	 * or another */
	assert_int_equal(chdir(inc_dir), 0);
	include_errors("");
	assert_int_equal(chdir("/tmp"), 0);
	snprintf(rel, sizeof(rel), "%s/", inc_dir + strlen("/tmp/"));
	include_errors(rel);
}

/*
 * One backend, given once with --backend and once in a file with only its
 * name and address: the same backend, so the same settings, health checks
 * included (path, interval, timeout, rise, fall). --backend used to check
 * every 1 s with a 1 s timeout where the file's backend had 2 s / 1.5 s.
 */
static void test_backend_option_is_file_backend(void **state)
{
	struct config_errors e = {0};
	struct gw_config *f = calloc(1, sizeof(*f)), *o = calloc(1, sizeof(*o));
	assert_non_null(f);
	assert_non_null(o);
	write_conf("backends = ( { name = \"cas1\"; address = \"127.0.0.1:9443\"; } );\n");
	struct config_cmdline fo = {.config_path = path, .workers = -1};
	assert_int_equal(config_load_cmdline(&fo, f, &e), 0);
	unlink(path);
	struct config_cmdline oo = {
	    .backends = {"cas1=127.0.0.1:9443"}, .nbackends = 1, .workers = -1};
	assert_int_equal(config_load_cmdline(&oo, o, &e), 0);
	assert_int_equal(f->nbackends, 1);
	assert_int_equal(o->nbackends, 1);
	const struct cfg_backend *a = &f->backends[0], *b = &o->backends[0];
	assert_string_equal(b->health_path, a->health_path);
	assert_int_equal(b->health_interval_ms, a->health_interval_ms);
	assert_int_equal(b->health_timeout_ms, a->health_timeout_ms);
	assert_int_equal(b->rise, a->rise);
	assert_int_equal(b->fall, a->fall);
	assert_int_equal(b->health_enabled, a->health_enabled);
	assert_string_equal(b->health_path, "/Microsoft-Server-ActiveSync");
	assert_int_equal(b->health_interval_ms, 2000);
	assert_int_equal(b->health_timeout_ms, 1500);
	/* and everything else too, byte for byte (both started zeroed) */
	assert_memory_equal(a, b, sizeof(*a));
	config_free(f);
	config_free(o);
	free(f);
	free(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_addresses),
	    cmocka_unit_test(test_full_file),
	    cmocka_unit_test(test_errors_with_lines),
	    cmocka_unit_test(test_rule_lines),
	    cmocka_unit_test(test_syntax_error),
	    cmocka_unit_test(test_type_errors),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_load_text),
	    cmocka_unit_test(test_no_include),
	    cmocka_unit_test_teardown(test_include_errors_name_their_file, inc_teardown),
	    cmocka_unit_test(test_policy_refusals_name_lines),
	    cmocka_unit_test(test_errors_are_one_line),
	    cmocka_unit_test(test_slow_client_limits),
	    cmocka_unit_test(test_ktls_knob),
	    cmocka_unit_test(test_backend_option_is_file_backend),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
