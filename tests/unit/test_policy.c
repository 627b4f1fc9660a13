/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* test_policy.c - rule syntax, matching, precedence, incubation. */
#include "testlib.h"

#include <errno.h>
#include <fnmatch.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "eas_cmd.h"
#include "osver.h"
#include "policy.h"

#define NOW	 INT64_C(1700000000)
#define DAY	 INT64_C(86400)
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int setup(void **state)
{
	(void)state;
	size_t n;
	char err[128];
	char *t = tl_read_file("data/ios-builds.tsv", &n);
	int rc = osver_builds_load(t, n, err, sizeof(err));
	free(t);
	return rc > 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	policy_thread_cleanup();
	return 0;
}

/* Compile rules (texts) with a default; fail the test on error. */
static struct policy *mk(const char *const *rules, size_t n, int def)
{
	char err[256];
	struct policy_config c = {.default_access = def, .rule_texts = rules, .n_rule_texts = n};
	struct policy *p = policy_new(&c, err, sizeof(err));
	if (!p)
		fail_msg("policy_new: %s", err);
	return p;
}

/* An iPhone 4S on iOS 6.1, doing a Sync, as a plain-text query would give. */
static struct policy_input iphone(void)
{
	struct policy_input in = {
	    .user = "jdoe",
	    .device_id = "ApplDMPFXZABDFHW",
	    .device_type = "iPhone",
	    .device_model = "iPhone4C1",
	    .device_os = "iOS 6.1 10B142",
	    .user_agent = "Apple-iPhone4C1/1002.142",
	    .cmd = EAS_CMD_SYNC,
	    .now = NOW,
	};
	return in;
}

static struct policy_decision decide(const struct policy *p, const struct policy_input *in)
{
	struct policy_decision d;
	policy_decide(p, in, &d);
	return d;
}

/* Parse must fail with a message containing each of the given fragments. */
static void parse_fails(const char *text, const char *frag1, const char *frag2)
{
	struct policy_rule r;
	char err[256];
	if (policy_rule_parse(text, &r, err, sizeof(err)) != -EINVAL)
		fail_msg("accepted: %s", text);
	if (!strstr(err, frag1) || (frag2 && !strstr(err, frag2)))
		fail_msg("'%s': message '%s' lacks '%s'/'%s'", text, err, frag1,
			 frag2 ? frag2 : "");
}

static void roundtrip(const struct policy_rule *r, const char *want_text)
{
	char text[POLICY_RULE_TEXT_MAX], err[256];
	struct policy_rule back;
	assert_true(policy_rule_format(r, text, sizeof(text)) > 0);
	if (want_text)
		assert_string_equal(text, want_text);
	if (policy_rule_parse(text, &back, err, sizeof(err)) < 0)
		fail_msg("reparse of '%s': %s", text, err);
	assert_true(policy_rule_equal(r, &back));
}

/* ---- syntax ------------------------------------------------------------- */

static void test_parse_examples(void **state)
{
	(void)state;
	struct policy_rule r;
	char err[256];

	assert_int_equal(
	    policy_rule_parse("block DeviceOS is \"iOS 6.1 10B142\"", &r, err, sizeof(err)), 0);
	assert_int_equal(r.access, POLICY_BLOCK);
	assert_int_equal(r.ch, POLICY_CH_DEVICEOS);
	assert_int_equal(r.op, POLICY_OP_IS);
	assert_string_equal(r.pattern, "iOS 6.1 10B142");
	assert_true(r.cmds == 0);
	roundtrip(&r, "block DeviceOS is \"iOS 6.1 10B142\"");

	assert_int_equal(policy_rule_parse("block UserAgent matches \"^Apple.*1002.*\" cmd "
					   "MeetingResponse",
					   &r, err, sizeof(err)),
			 0);
	assert_int_equal(r.op, POLICY_OP_MATCHES);
	assert_true(r.cmds == EAS_CMD_BIT(EAS_CMD_MEETINGRESPONSE));
	roundtrip(&r, "block UserAgent matches \"^Apple.*1002.*\" cmd MeetingResponse");

	assert_int_equal(
	    policy_rule_parse("quarantine DeviceOS < \"iOS 7.0.2\"", &r, err, sizeof(err)), 0);
	assert_int_equal(r.access, POLICY_QUARANTINE);
	assert_int_equal(r.op, POLICY_OP_LT);
	roundtrip(&r, "quarantine DeviceOS < \"iOS 7.0.2\"");

	assert_int_equal(policy_rule_parse("block DeviceOS like \"iOS 6.1*\" name \"ios61-loop\"",
					   &r, err, sizeof(err)),
			 0);
	assert_int_equal(r.op, POLICY_OP_LIKE);
	assert_string_equal(r.name, "ios61-loop");
	roundtrip(&r, "block DeviceOS like \"iOS 6.1*\" name \"ios61-loop\"");
}

static void test_parse_pleasant(void **state)
{
	(void)state;
	struct policy_rule r;
	char err[256];

	/* keywords case-insensitive, unquoted words, aliases, clauses either order */
	assert_int_equal(
	    policy_rule_parse("  ALLOW  devicetype  IS  iPhone  # comment", &r, err, sizeof(err)),
	    0);
	roundtrip(&r, "allow DeviceType is \"iPhone\"");
	assert_int_equal(policy_rule_parse("block X-MS-WL like WindowsMail* name wm cmd sync, "
					   "ping,FolderSync",
					   &r, err, sizeof(err)),
			 0);
	assert_int_equal(r.ch, POLICY_CH_XMSWL);
	assert_true(r.cmds == (EAS_CMD_BIT(EAS_CMD_SYNC) | EAS_CMD_BIT(EAS_CMD_PING) |
			       EAS_CMD_BIT(EAS_CMD_FOLDERSYNC)));
	roundtrip(&r, "block XMSWL like \"WindowsMail*\" cmd Sync,FolderSync,Ping name \"wm\"");
	assert_int_equal(policy_rule_parse("block XMSWLHeader is x", &r, err, sizeof(err)), 0);
	assert_int_equal(r.ch, POLICY_CH_XMSWL);

	/* escapes: \" and \\ only; other backslashes stay (regexes read naturally) */
	assert_int_equal(
	    policy_rule_parse("block UserAgent matches \"^\\\"q\\\\\\d+\"", &r, err, sizeof(err)),
	    0);
	assert_string_equal(r.pattern, "^\"q\\\\d+");
	roundtrip(&r, NULL);
	assert_int_equal(policy_rule_parse("block User matches \"\\d+\"", &r, err, sizeof(err)), 0);
	assert_string_equal(r.pattern, "\\d+");
	roundtrip(&r, "block User matches \"\\\\d+\"");

	/* every op */
	static const char *const ops[] = {"<", "<=", ">", ">=", "==", "!="};
	for (size_t i = 0; i < NELEM(ops); i++) {
		char text[64];
		snprintf(text, sizeof(text), "allow DeviceOS %s \"Android 4.4\"", ops[i]);
		assert_int_equal(policy_rule_parse(text, &r, err, sizeof(err)), 0);
		assert_int_equal(r.op, POLICY_OP_LT + (int)i);
		roundtrip(&r, text);
	}
	assert_int_equal(
	    policy_rule_parse("allow DeviceOS >= \"Windows Phone 8.1\"", &r, err, sizeof(err)), 0);
}

static void test_parse_errors(void **state)
{
	(void)state;
	parse_fails("block DeviceColour is red", "unknown characteristic 'DeviceColour'",
		    "column 7");
	parse_fails("block UserAgent matches \"^Apple(.*\"", "bad regex", "offset 9");
	parse_fails("block UserAgent matches \"a{2,1}\"", "bad regex", "column 25");
	parse_fails("block DeviceModel < \"iOS 7.0.2\"", "works only on DeviceOS", "column 19");
	parse_fails("block DeviceOS is \"iOS 6.1", "unterminated quote", "column 19");
	parse_fails("block DeviceOS is \"iOS 6.1 name x", "unterminated quote", NULL);
	parse_fails("", "empty rule", NULL);
	parse_fails("   # only a comment", "empty rule", NULL);
	parse_fails("deny DeviceOS is x", "unknown access 'deny'", "column 1");
	parse_fails("block", "missing characteristic", NULL);
	parse_fails("block DeviceOS", "missing operator", NULL);
	parse_fails("block DeviceOS contains x", "unknown operator 'contains'", NULL);
	parse_fails("block DeviceOS is", "missing pattern", NULL);
	parse_fails("block DeviceOS is \"\"", "empty pattern", NULL);
	parse_fails("block DeviceOS < \"iOS 7.0.2 11A501\"", "without a build", NULL);
	parse_fails("block DeviceOS < \"7.0.2\"", "version pattern", NULL);
	parse_fails("block DeviceOS < iOS", "version pattern", NULL);
	parse_fails("block UserAgent is ab\"c", "stray quote", NULL);
	parse_fails("block UserAgent is \"abc\"def", "blank after the closing quote", NULL);
	parse_fails("block UserAgent is x cmd Frobnicate", "unknown command 'Frobnicate'", NULL);
	parse_fails("block UserAgent is x cmd", "expected a command name", NULL);
	parse_fails("block UserAgent is x cmd Options", "OPTIONS is always allowed", NULL);
	parse_fails("block UserAgent is x cmd Sync cmd Ping", "'cmd' given twice", NULL);
	parse_fails("block UserAgent is x name a name b", "'name' given twice", NULL);
	parse_fails("block UserAgent is x name \"\"", "empty name", NULL);
	parse_fails("block UserAgent is x because", "unexpected 'because'", NULL);
	parse_fails("block UserAgent is \"a\tb\"", "control character", NULL);

	char longpat[400];
	memset(longpat, 'a', sizeof(longpat));
	memcpy(longpat, "block User is ", 14);
	longpat[sizeof(longpat) - 1] = 0;
	parse_fails(longpat, "longer than 255 bytes", NULL);
}

/*
 * A rule's error quotes the word it stopped at, and that word may hold
 * control bytes (a config string may hold a raw newline; easctl and the
 * console pass what they get): the message shows them as '?', so it stays
 * one line and writes no terminal escape. fuzz_config found
 * "column 115: unexpected '\<newline>...'" split over two lines of
 * --check-config's output.
 */
static void test_errors_carry_no_control_bytes(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "deny\nDeviceOS is x",
	    "block UserAgent is x because\r\x1b[2J",
	    "block DeviceOS contains\x7f x",
	    "block UserAgent is x cmd Sync\nPing",
	};
	for (size_t i = 0; i < NELEM(bad); i++) {
		struct policy_rule r;
		char err[256];
		assert_int_equal(policy_rule_parse(bad[i], &r, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "column "));
		for (const char *p = err; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				fail_msg("rule %zu: control byte 0x%02x in '%s'", i,
					 (unsigned char)*p, err);
	}
	parse_fails("deny\nDeviceOS is x", "unknown access 'deny?DeviceOS'", "column 1");
}

static void test_format_roundtrip(void **state)
{
	(void)state;
	static const char *const texts[] = {
	    "allow DeviceId is \"ApplDMPFXZABDFHW\"",
	    "quarantine User like \"contoso\\\\*\" name \"a \\\"quoted\\\" name\"",
	    "block DeviceType matches \"^(SAMSUNG|SM-)\" cmd Sync,SendMail,Search,Ping",
	    "block DeviceOS != \"iOS 7.0.2\"",
	    "allow XMSWL like \"?\"",
	};
	for (size_t i = 0; i < NELEM(texts); i++) {
		struct policy_rule r;
		char err[256];
		if (policy_rule_parse(texts[i], &r, err, sizeof(err)) < 0)
			fail_msg("%s: %s", texts[i], err);
		roundtrip(&r, texts[i]);
	}
	/* a too-small buffer is reported, not truncated silently */
	struct policy_rule r;
	char small[10];
	assert_int_equal(policy_rule_parse(texts[0], &r, NULL, 0), 0);
	assert_int_equal(policy_rule_format(&r, small, sizeof(small)), -ENOSPC);
	assert_string_equal(small, "");
}

/* ---- matching ----------------------------------------------------------- */

/* Exchange-compatible "is": exact, case-insensitive, never partial. */
static void test_exact_is_exact(void **state)
{
	(void)state;
	const char *rules[] = {"block DeviceOS is \"iOS 6.1 10B142\""};
	struct policy *p = mk(rules, 1, POLICY_ALLOW);
	struct policy_input in = iphone();
	static const struct {
		const char *os;
		int access;
	} cases[] = {
	    {"iOS 6.1 10B142", POLICY_BLOCK},  {"IOS 6.1 10b142", POLICY_BLOCK},
	    {"iOS 6.1 10B1420", POLICY_ALLOW}, {"iOS 6.1 10B14", POLICY_ALLOW},
	    {"iOS 6.1", POLICY_ALLOW},	       {" iOS 6.1 10B142", POLICY_ALLOW},
	    {"iOS 6.1 10B142 ", POLICY_ALLOW}, {"iOS 6.1.1 10B145", POLICY_ALLOW},
	};
	for (size_t i = 0; i < NELEM(cases); i++) {
		in.device_os = cases[i].os;
		struct policy_decision d = decide(p, &in);
		if (d.access != cases[i].access)
			fail_msg("'%s': got %s", cases[i].os, policy_access_name(d.access));
	}
	in.device_os = "iOS 6.1 10B142";
	struct policy_decision d = decide(p, &in);
	assert_int_equal(d.reason, POLICY_R_RULE);
	assert_int_equal(d.rule_index, 0);
	assert_int_equal(d.characteristic, POLICY_CH_DEVICEOS);
	policy_free(p);
}

static void test_glob(void **state)
{
	(void)state;
	const char *rules[] = {"block DeviceOS like \"iOS 6.1*\" name \"ios61-loop\"",
			       "quarantine DeviceModel like \"iPhone?C1\""};
	struct policy *p = mk(rules, NELEM(rules), POLICY_ALLOW);
	struct policy_input in = iphone();
	in.device_model = "iPad9C9";

	in.device_os = "iOS 6.1.3 10B329";
	assert_int_equal(decide(p, &in).access, POLICY_BLOCK);
	in.device_os = "ios 6.1 10B142";
	struct policy_decision d = decide(p, &in);
	assert_int_equal(d.access, POLICY_BLOCK);
	assert_string_equal(d.rule_name, "ios61-loop");
	in.device_os = "iOS 6.0.1 10A523";
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	in.device_os = "xiOS 6.1";
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);

	in.device_os = "iOS 7.0 11A465";
	in.device_model = "iPhone4C1";
	assert_int_equal(decide(p, &in).access, POLICY_QUARANTINE);
	in.device_model = "iphone5c1";
	assert_int_equal(decide(p, &in).access, POLICY_QUARANTINE);
	in.device_model = "iPhone10C1"; /* ? is exactly one byte */
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	in.device_model = "iPhone4C12";
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	policy_free(p);

	/* stars anywhere, backtracking */
	const char *r2[] = {"block UserAgent like \"*i*Phone*/1002.*\""};
	p = mk(r2, 1, POLICY_ALLOW);
	in = iphone();
	assert_int_equal(decide(p, &in).access, POLICY_BLOCK);
	in.user_agent = "Apple-iPad2C1/1002.141";
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	in.user_agent = "";
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	policy_free(p);
}

static void test_regex(void **state)
{
	(void)state;
	const char *rules[] = {"block UserAgent matches \"^Apple.*1002.*\""};
	struct policy *p = mk(rules, 1, POLICY_ALLOW);
	struct policy_input in = iphone();
	assert_int_equal(decide(p, &in).access, POLICY_BLOCK);
	in.user_agent = "Apple-iPad3C3/1002.141";
	assert_int_equal(decide(p, &in).access, POLICY_BLOCK);
	in.user_agent = "Apple-iPhone6C1/1101.465";
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	in.user_agent = "apple-iPhone4C1/1002.142"; /* as written: case matters */
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	in.user_agent = "MyApple-1002"; /* anchored */
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	policy_free(p);

	const char *r2[] = {"block UserAgent matches \"(?i)^apple-ipad\"",
			    "block User matches \"^$\""};
	p = mk(r2, NELEM(r2), POLICY_ALLOW);
	in = iphone();
	in.user_agent = "APPLE-IPAD2C1/1002.141";
	assert_int_equal(decide(p, &in).access, POLICY_BLOCK);
	in.user_agent = "Apple-iPhone4C1/1002.142";
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	in.user = NULL; /* missing values match as "" */
	assert_int_equal(decide(p, &in).rule_index, 1);
	policy_free(p);

	/* catastrophic backtracking is cut off by the match limit: no match */
	const char *r3[] = {"block UserAgent matches \"^(a|aa)+$\""};
	p = mk(r3, 1, POLICY_ALLOW);
	char ua[4096];
	memset(ua, 'a', sizeof(ua) - 2);
	ua[sizeof(ua) - 2] = 'b';
	ua[sizeof(ua) - 1] = 0;
	in = iphone();
	in.user_agent = ua;
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	policy_free(p);
}

/* The admin notes' minimum version: only iOS >= 7.0.2 gets in. */
static void test_version_minimum(void **state)
{
	(void)state;
	const char *rules[] = {"allow DeviceOS >= \"iOS 7.0.2\"", "allow DeviceType is Android"};
	struct policy *p = mk(rules, NELEM(rules), POLICY_BLOCK);
	struct policy_input in = iphone();
	static const struct {
		const char *os;
		int access;
	} cases[] = {
	    {"iOS 7.0.2 11A501", POLICY_ALLOW}, {"iOS 7.0.1 (11A470a)", POLICY_BLOCK},
	    {"iOS 7.0 11A465", POLICY_BLOCK},	{"iOS 7.0.10", POLICY_ALLOW},
	    {"iOS 7.1 11D167", POLICY_ALLOW},	{"iOS 17.7.2 21H221", POLICY_ALLOW},
	    {"iOS 6.1.6 10B500", POLICY_BLOCK}, {"iOS", POLICY_BLOCK}, /* unknown version */
	    {"Android 14", POLICY_BLOCK}, /* other family: rule does not apply */
	};
	for (size_t i = 0; i < NELEM(cases); i++) {
		in.device_os = cases[i].os;
		struct policy_decision d = decide(p, &in);
		if (d.access != cases[i].access)
			fail_msg("'%s': got %s (%s)", cases[i].os, policy_access_name(d.access),
				 d.explain);
	}
	policy_free(p);

	const char *r2[] = {"quarantine DeviceOS < \"iOS 7.0.2\""};
	p = mk(r2, 1, POLICY_ALLOW);
	in = iphone();
	in.device_os = "iOS 7.0.1 11A470a";
	assert_int_equal(decide(p, &in).access, POLICY_QUARANTINE);
	in.device_os = "iOS 7.0.2 11A501";
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	/* an unknown version is not "older than" anything */
	in.device_os = "iOS";
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	in.device_os = NULL;
	in.user_agent = "Apple-iPhone17C1/2201.100"; /* build beyond the table */
	struct policy_decision d = decide(p, &in);
	assert_int_equal(d.access, POLICY_ALLOW);
	assert_string_equal(d.device_os, "iOS 22A100");
	policy_free(p);
}

static void test_version_ops(void **state)
{
	(void)state;
	static const struct {
		const char *op;
		int lt, eq, gt; /* expected match for 7.0.1, 7.0.2, 7.0.3 */
	} cases[] = {
	    {"<", 1, 0, 0},  {"<=", 1, 1, 0}, {">", 0, 0, 1},
	    {">=", 0, 1, 1}, {"==", 0, 1, 0}, {"!=", 1, 0, 1},
	};
	static const char *const oses[] = {"iOS 7.0.1", "iOS 7.0.2.0", "iOS 7.0.3"};
	for (size_t i = 0; i < NELEM(cases); i++) {
		char rule[64];
		snprintf(rule, sizeof(rule), "block DeviceOS %s \"IOS 7.0.2\"", cases[i].op);
		const char *rules[] = {rule};
		struct policy *p = mk(rules, 1, POLICY_ALLOW);
		int want[3] = {cases[i].lt, cases[i].eq, cases[i].gt};
		for (int k = 0; k < 3; k++) {
			struct policy_input in = iphone();
			in.device_os = oses[k];
			int blocked = decide(p, &in).access == POLICY_BLOCK;
			if (blocked != want[k])
				fail_msg("%s vs %s: %d", rule, oses[k], blocked);
		}
		policy_free(p);
	}
}

/* The KB2814847 mitigation: MeetingResponse blocked, mail keeps flowing. */
static void test_command_scope(void **state)
{
	(void)state;
	const char *rules[] = {"allow DeviceOS like \"iOS*\"",
			       "block UserAgent matches \"^Apple.*1002.*\" cmd MeetingResponse"};
	struct policy *p = mk(rules, NELEM(rules), POLICY_QUARANTINE);
	struct policy_input in = iphone();

	/* plain-text "Cmd=MeetingResponse" and base64 command code 15 alike */
	int plain = eas_cmd_parse("MeetingResponse", 15);
	assert_true(eas_cmd_is_base64_code(15));
	assert_int_equal(plain, 15);
	in.cmd = plain;
	struct policy_decision d = decide(p, &in);
	assert_int_equal(d.access, POLICY_BLOCK);
	assert_int_equal(d.rule_index, 1);
	in.cmd = 15;
	assert_int_equal(decide(p, &in).access, POLICY_BLOCK);

	static const int others[] = {EAS_CMD_SYNC,
				     EAS_CMD_PING,
				     EAS_CMD_FOLDERSYNC,
				     EAS_CMD_SENDMAIL,
				     EAS_CMD_SMARTREPLY,
				     EAS_CMD_PROVISION,
				     EAS_CMD_UNKNOWN,
				     EAS_CMD_NONE,
				     -5,
				     1000};
	for (size_t i = 0; i < NELEM(others); i++) {
		in.cmd = others[i];
		d = decide(p, &in);
		if (d.access != POLICY_ALLOW || d.rule_index != 0)
			fail_msg("cmd %d: %s", others[i], d.explain);
	}
	/* iOS 7 phones are not caught by the scoped rule */
	in.cmd = EAS_CMD_MEETINGRESPONSE;
	in.user_agent = "Apple-iPhone6C1/1101.465";
	in.device_os = "iOS 7.0 11A465";
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	policy_free(p);
}

/* ---- precedence ----------------------------------------------------------- */

static struct policy *mk_lists(const char *const *rules, size_t n, int def,
			       const char *const *blocked, size_t nb, const char *const *allowed,
			       size_t na)
{
	char err[256];
	struct policy_config c = {.default_access = def,
				  .rule_texts = rules,
				  .n_rule_texts = n,
				  .blocked_ids = blocked,
				  .n_blocked = nb,
				  .allowed_ids = allowed,
				  .n_allowed = na};
	struct policy *p = policy_new(&c, err, sizeof(err));
	if (!p)
		fail_msg("policy_new: %s", err);
	return p;
}

static void test_personal_lists(void **state)
{
	(void)state;
	const char *rules[] = {"allow DeviceType is iPhone", "block DeviceType is iPad"};
	const char *blocked[] = {"ApplDMPFXZABDFHW", "alice:ApplALICE1"};
	const char *allowed[] = {"jdoe:ApplIPAD0001", "ApplSHARED01"};
	struct policy *p = mk_lists(rules, 2, POLICY_QUARANTINE, blocked, 2, allowed, 2);
	struct policy_input in = iphone();

	/* personal block beats an allow rule; IDs compare case-insensitively */
	in.device_id = "appldmpfxzabdfhw";
	struct policy_decision d = decide(p, &in);
	assert_int_equal(d.access, POLICY_BLOCK);
	assert_int_equal(d.reason, POLICY_R_INDIVIDUAL_BLOCK);
	assert_int_equal(d.rule_index, -1);
	assert_non_null(strstr(d.explain, "ApplDMPFXZABDFHW"));

	/* "user:DeviceId" applies to that user only */
	in.device_id = "ApplALICE1";
	assert_int_equal(decide(p, &in).reason, POLICY_R_RULE);
	in.user = "ALICE";
	assert_int_equal(decide(p, &in).reason, POLICY_R_INDIVIDUAL_BLOCK);

	/* personal allow beats a block rule */
	in = iphone();
	in.device_type = "iPad";
	in.device_model = "iPad2C1";
	in.device_id = "ApplIPAD0001";
	in.user = "bob"; /* jdoe's entry, not bob's */
	assert_int_equal(decide(p, &in).reason, POLICY_R_RULE);
	in.device_id = "ApplSHARED01";
	d = decide(p, &in);
	assert_int_equal(d.access, POLICY_ALLOW);
	assert_int_equal(d.reason, POLICY_R_INDIVIDUAL_ALLOW);
	in.device_id = "ApplIPAD0001";
	in.user = "JDoe";
	assert_int_equal(decide(p, &in).reason, POLICY_R_INDIVIDUAL_ALLOW);
	/* no partial matches on IDs */
	in.device_id = "ApplIPAD000";
	assert_int_equal(decide(p, &in).access, POLICY_BLOCK);
	in.device_id = "";
	assert_int_equal(decide(p, &in).reason, POLICY_R_RULE);
	policy_free(p);
}

static void test_admin_state(void **state)
{
	(void)state;
	const char *rules[] = {"block DeviceType is iPhone"};
	const char *blocked[] = {"BLOCKED1"};
	const char *allowed[] = {"ALLOWED1"};
	struct policy *p = mk_lists(rules, 1, POLICY_ALLOW, blocked, 1, allowed, 1);
	struct policy_input in = iphone();
	static const struct {
		int admin;
		const char *id;
		int access, reason;
	} cases[] = {
	    {POLICY_ADMIN_NONE, "X", POLICY_BLOCK, POLICY_R_RULE},
	    {POLICY_ADMIN_ALLOW, "X", POLICY_ALLOW, POLICY_R_ADMIN},
	    {POLICY_ADMIN_QUARANTINE, "X", POLICY_QUARANTINE, POLICY_R_ADMIN},
	    {POLICY_ADMIN_BLOCK, "ALLOWED1", POLICY_BLOCK, POLICY_R_ADMIN},
	    {POLICY_ADMIN_QUARANTINE, "ALLOWED1", POLICY_QUARANTINE, POLICY_R_ADMIN},
	    {POLICY_ADMIN_ALLOW, "BLOCKED1", POLICY_BLOCK, POLICY_R_INDIVIDUAL_BLOCK},
	    {POLICY_ADMIN_QUARANTINE, "BLOCKED1", POLICY_BLOCK, POLICY_R_INDIVIDUAL_BLOCK},
	    {POLICY_ADMIN_NONE, "ALLOWED1", POLICY_ALLOW, POLICY_R_INDIVIDUAL_ALLOW},
	};
	for (size_t i = 0; i < NELEM(cases); i++) {
		in.admin_state = cases[i].admin;
		in.device_id = cases[i].id;
		struct policy_decision d = decide(p, &in);
		if (d.access != cases[i].access || d.reason != cases[i].reason)
			fail_msg("case %zu: %s/%s (%s)", i, policy_access_name(d.access),
				 policy_reason_name(d.reason), d.explain);
	}
	policy_free(p);
}

static void test_options_always_allowed(void **state)
{
	(void)state;
	const char *rules[] = {"block UserAgent like \"*\""};
	const char *blocked[] = {"ApplDMPFXZABDFHW"};
	struct policy *p = mk_lists(rules, 1, POLICY_BLOCK, blocked, 1, NULL, 0);
	struct policy_input in = iphone();
	in.cmd = EAS_CMD_OPTIONS;
	in.admin_state = POLICY_ADMIN_BLOCK;
	struct policy_decision d = decide(p, &in);
	assert_int_equal(d.access, POLICY_ALLOW);
	assert_int_equal(d.reason, POLICY_R_OPTIONS);
	in.cmd = EAS_CMD_SYNC;
	assert_int_equal(decide(p, &in).access, POLICY_BLOCK);
	policy_free(p);
}

/* The first characteristic in the fixed order wins, not the first line. */
static void test_characteristic_order(void **state)
{
	(void)state;
	const char *rules[] = {
	    "allow DeviceType is iPhone",	   /* 0 */
	    "quarantine DeviceModel is iPhone4C1", /* 1 */
	    "block DeviceOS like \"iOS 6*\"",	   /* 2 */
	    "allow UserAgent like \"Apple-*\"",	   /* 3 */
	    "block XMSWL like \"*\"",		   /* 4 */
	};
	struct policy *p = mk(rules, NELEM(rules), POLICY_BLOCK);
	struct policy_input in = iphone();
	struct policy_decision d = decide(p, &in);
	assert_int_equal(d.rule_index, 3); /* UserAgent first */
	assert_int_equal(d.characteristic, POLICY_CH_USERAGENT);
	in.user_agent = "iOS/6.1 (10B142) dataaccessd/1.0";
	assert_int_equal(decide(p, &in).rule_index, 2); /* then DeviceOS */
	in.device_os = "iOS 7.0 11A465";
	assert_int_equal(decide(p, &in).rule_index, 1); /* then DeviceModel */
	in.device_model = "iPhone5C1";
	assert_int_equal(decide(p, &in).rule_index, 0); /* then DeviceType */
	in.device_type = "SmartPhone";
	assert_int_equal(decide(p, &in).rule_index, 4); /* XMSWL last */
	policy_free(p);

	/* DeviceId and User come before UserAgent */
	const char *r2[] = {"block UserAgent like \"*\"", "allow User is jdoe",
			    "quarantine DeviceId is ApplDMPFXZABDFHW"};
	p = mk(r2, NELEM(r2), POLICY_BLOCK);
	in = iphone();
	assert_int_equal(decide(p, &in).rule_index, 2);
	in.device_id = "other";
	assert_int_equal(decide(p, &in).rule_index, 1);
	in.user = "other";
	assert_int_equal(decide(p, &in).rule_index, 0);
	policy_free(p);
}

/* Within a characteristic, the earliest rule wins whatever its op. */
static void test_first_rule_wins(void **state)
{
	(void)state;
	const char *a[] = {"quarantine DeviceOS like \"iOS 6*\"",
			   "block DeviceOS is \"iOS 6.1 10B142\""};
	const char *b[] = {"block DeviceOS is \"iOS 6.1 10B142\"",
			   "quarantine DeviceOS like \"iOS 6*\""};
	const char *c[] = {"allow DeviceOS is \"iOS 6.1 10B142\"",
			   "block DeviceOS is \"IOS 6.1 10B142\""};
	const char *e[] = {"allow DeviceOS >= \"iOS 6.0\"", "block DeviceOS matches \"^iOS 6\""};
	struct policy_input in = iphone();
	struct policy *p = mk(a, 2, POLICY_ALLOW);
	assert_int_equal(decide(p, &in).access, POLICY_QUARANTINE);
	policy_free(p);
	p = mk(b, 2, POLICY_ALLOW);
	assert_int_equal(decide(p, &in).access, POLICY_BLOCK);
	policy_free(p);
	p = mk(c, 2, POLICY_BLOCK); /* duplicate exact keys: first wins */
	assert_int_equal(decide(p, &in).rule_index, 0);
	policy_free(p);
	p = mk(e, 2, POLICY_BLOCK); /* level used as is: no block-beats-allow */
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	policy_free(p);
}

static void test_scoped_beats_unscoped(void **state)
{
	(void)state;
	const char *rules[] = {
	    "allow DeviceId is ApplDMPFXZABDFHW",		     /* most specific, unscoped */
	    "block DeviceType is iPhone cmd MeetingResponse,Search", /* scoped, least specific */
	    "allow UserAgent like \"Apple*\" cmd Search",	     /* scoped, earlier char */
	};
	struct policy *p = mk(rules, NELEM(rules), POLICY_ALLOW);
	struct policy_input in = iphone();
	in.cmd = EAS_CMD_MEETINGRESPONSE;
	struct policy_decision d = decide(p, &in);
	assert_int_equal(d.access, POLICY_BLOCK);
	assert_int_equal(d.rule_index, 1);
	in.cmd = EAS_CMD_SEARCH; /* both scoped rules apply: UserAgent before DeviceType */
	assert_int_equal(decide(p, &in).rule_index, 2);
	in.cmd = EAS_CMD_SYNC;
	assert_int_equal(decide(p, &in).rule_index, 0);
	policy_free(p);
}

static void test_model_falls_back_to_type(void **state)
{
	(void)state;
	const char *rules[] = {"block DeviceModel is iPhone"};
	struct policy *p = mk(rules, 1, POLICY_ALLOW);
	struct policy_input in = iphone();
	in.device_model = NULL;
	struct policy_decision d = decide(p, &in);
	assert_int_equal(d.access, POLICY_BLOCK);
	assert_string_equal(d.device_model, "iPhone");
	in.device_model = "";
	assert_int_equal(decide(p, &in).access, POLICY_BLOCK);
	in.device_model = "iPhone4C1";
	d = decide(p, &in);
	assert_int_equal(d.access, POLICY_ALLOW);
	assert_string_equal(d.device_model, "iPhone4C1");
	policy_free(p);
}

/* OS rules apply from the first request, before DeviceInformation. */
static void test_os_from_user_agent(void **state)
{
	(void)state;
	const char *rules[] = {"block DeviceOS like \"iOS 6.1*\""};
	struct policy *p = mk(rules, 1, POLICY_ALLOW);
	struct policy_input in = iphone();
	in.device_os = NULL;
	struct policy_decision d = decide(p, &in);
	assert_int_equal(d.access, POLICY_BLOCK);
	assert_string_equal(d.device_os, "iOS 6.1 10B142");
	assert_string_equal(d.os_key, "iOS 6.1 10B142");
	/* DeviceInformation, once known, wins over the UA */
	in.device_os = "iOS 7.0.2 11A501";
	d = decide(p, &in);
	assert_int_equal(d.access, POLICY_ALLOW);
	assert_string_equal(d.device_os, "iOS 7.0.2 11A501");
	/* exact Exchange-style rules also see the UA-derived string */
	const char *r2[] = {"block DeviceOS is \"iOS 6.1 10B142\"",
			    "quarantine DeviceOS < \"iOS 7.0.2\""};
	policy_free(p);
	p = mk(r2, 2, POLICY_ALLOW);
	in.device_os = "";
	assert_int_equal(decide(p, &in).rule_index, 0);
	in.user_agent = "Apple-iPhone6C1/1101.47000001";
	d = decide(p, &in);
	assert_int_equal(d.rule_index, 1);
	assert_string_equal(d.device_os, "iOS 7.0.1 11A470a");
	policy_free(p);
}

/* ---- incubation ------------------------------------------------------------ */

static struct policy *mk_incubation(const char *const *rules, size_t n, int def,
				    const char *const *fams, size_t nf)
{
	char err[256];
	const char *allowed[] = {"VIP1"};
	struct policy_config c = {.default_access = def,
				  .rule_texts = rules,
				  .n_rule_texts = n,
				  .allowed_ids = allowed,
				  .n_allowed = 1};
	c.incubation.enabled = 1;
	c.incubation.days = 14;
	c.incubation.families = fams;
	c.incubation.n_families = nf;
	struct policy *p = policy_new(&c, err, sizeof(err));
	if (!p)
		fail_msg("policy_new: %s", err);
	return p;
}

static void test_incubation(void **state)
{
	(void)state;
	const char *rules[] = {"block DeviceOS like \"iOS 6.1*\"", "allow DeviceType is iPhone",
			       "quarantine DeviceType is iPad"};
	const char *fams[] = {"ios"};
	struct policy *p = mk_incubation(rules, NELEM(rules), POLICY_ALLOW, fams, 1);
	struct policy_input in = iphone();
	in.device_os = "iOS 17.7.2 21H221";
	in.os_first_seen = NOW - 3 * DAY;

	/* an allow by rule becomes quarantine */
	struct policy_decision d = decide(p, &in);
	assert_int_equal(d.access, POLICY_QUARANTINE);
	assert_int_equal(d.reason, POLICY_R_INCUBATION);
	assert_string_equal(d.os_key, "iOS 17.7.2 21H221");
	assert_non_null(strstr(d.explain, "incubation"));
	assert_non_null(strstr(d.explain, "rule 2"));
	/* never seen before = new now */
	in.os_first_seen = 0;
	assert_int_equal(decide(p, &in).reason, POLICY_R_INCUBATION);
	/* approved versions pass */
	in.os_approved = 1;
	d = decide(p, &in);
	assert_int_equal(d.access, POLICY_ALLOW);
	assert_int_equal(d.reason, POLICY_R_RULE);
	/* days elapsed: pass (exactly 14 days is enough) */
	in.os_approved = 0;
	in.os_first_seen = NOW - 14 * DAY;
	assert_int_equal(decide(p, &in).access, POLICY_ALLOW);
	in.os_first_seen = NOW - 14 * DAY + 1;
	assert_int_equal(decide(p, &in).access, POLICY_QUARANTINE);
	/* the default allow is held back too */
	in.device_type = "Tablet";
	in.device_model = "X";
	assert_int_equal(decide(p, &in).reason, POLICY_R_INCUBATION);
	/* family filter: Android is not incubated */
	in.device_os = "Android 14";
	d = decide(p, &in);
	assert_int_equal(d.access, POLICY_ALLOW);
	assert_int_equal(d.reason, POLICY_R_DEFAULT);
	/* unknown OS: nothing to key on */
	in.device_os = NULL;
	in.user_agent = "Nine-x/1";
	assert_int_equal(decide(p, &in).reason, POLICY_R_DEFAULT);

	/* never overrides a block, a quarantine or a personal allow */
	in = iphone();
	in.os_first_seen = NOW;
	assert_int_equal(decide(p, &in).access, POLICY_BLOCK);
	in.device_os = "iOS 17.7.2 21H221";
	in.device_type = "iPad";
	in.device_model = "";
	d = decide(p, &in);
	assert_int_equal(d.access, POLICY_QUARANTINE);
	assert_int_equal(d.reason, POLICY_R_RULE);
	in.device_id = "VIP1";
	d = decide(p, &in);
	assert_int_equal(d.access, POLICY_ALLOW);
	assert_int_equal(d.reason, POLICY_R_INDIVIDUAL_ALLOW);
	policy_free(p);

	/* no family list: every family */
	p = mk_incubation(NULL, 0, POLICY_ALLOW, NULL, 0);
	in = iphone();
	in.device_os = "Android 14";
	in.os_first_seen = NOW - DAY;
	assert_int_equal(decide(p, &in).reason, POLICY_R_INCUBATION);
	policy_free(p);
}

/* ---- explanations, config errors, scale ----------------------------------- */

static void test_explain(void **state)
{
	(void)state;
	const char *rules[] = {"allow DeviceType is Android",
			       "block DeviceOS is \"iOS 6.1 10B142\" name \"ios61\"",
			       "block UserAgent matches \"^Apple.*1002\" cmd MeetingResponse"};
	struct policy *p = mk(rules, NELEM(rules), POLICY_QUARANTINE);
	struct policy_input in = iphone();
	struct policy_decision d = decide(p, &in);
	assert_string_equal(d.explain, "rule 2 'ios61' DeviceOS is \"iOS 6.1 10B142\" matched "
				       "\"iOS 6.1 10B142\": block");
	in.cmd = EAS_CMD_MEETINGRESPONSE;
	d = decide(p, &in);
	assert_string_equal(d.explain,
			    "rule 3 UserAgent matches \"^Apple.*1002\" cmd "
			    "MeetingResponse matched \"Apple-iPhone4C1/1002.142\": block");
	in.device_os = "iOS 7.0 11A465";
	in.cmd = EAS_CMD_SYNC;
	d = decide(p, &in);
	assert_string_equal(d.explain, "no rule matched: default quarantine");
	assert_string_equal(policy_reason_name(d.reason), "DEFAULT");
	policy_free(p);

	const char *doc = policy_precedence_doc();
	const char *order[] = {"OPTIONS",
			       "blocked list",
			       "quarantine",
			       "allowed list",
			       "DeviceId, User, UserAgent, DeviceOS, DeviceModel",
			       "default",
			       "Incubation"};
	const char *at = doc;
	for (size_t i = 0; i < NELEM(order); i++) {
		const char *hit = strstr(at, order[i]);
		if (!hit)
			fail_msg("precedence doc lacks '%s' in order", order[i]);
		at = hit;
	}
	/* NULL policy: default allow */
	d = decide(NULL, &in);
	assert_int_equal(d.access, POLICY_ALLOW);
	assert_int_equal(d.reason, POLICY_R_DEFAULT);
}

static void test_config_errors(void **state)
{
	(void)state;
	char err[256];
	const char *rules[] = {"allow DeviceType is iPhone", "block Colour is red"};
	struct policy_config c = {.rule_texts = rules, .n_rule_texts = 2};
	assert_null(policy_new(&c, err, sizeof(err)));
	assert_string_equal(err, "rule 2: column 7: unknown characteristic 'Colour' (expected "
				 "DeviceType, DeviceModel, DeviceOS, UserAgent, XMSWL, User or "
				 "DeviceId)");

	struct policy_rule parsed;
	assert_int_equal(policy_rule_parse(rules[0], &parsed, NULL, 0), 0);
	c.rules = &parsed;
	c.n_rules = 1;
	assert_null(policy_new(&c, err, sizeof(err)));
	assert_non_null(strstr(err, "not both"));

	/* parsed rules work, and are validated */
	c.rule_texts = NULL;
	c.n_rule_texts = 0;
	struct policy *p = policy_new(&c, err, sizeof(err));
	assert_non_null(p);
	assert_int_equal(policy_rule_count(p), 1);
	assert_true(policy_rule_equal(policy_rule_at(p, 0), &parsed));
	assert_null(policy_rule_at(p, 1));
	policy_free(p);
	parsed.cmds = EAS_CMD_BIT(5); /* no such command */
	assert_null(policy_new(&c, err, sizeof(err)));
	assert_non_null(strstr(err, "rule 1:"));
	parsed.cmds = 0;
	parsed.pattern[0] = 0;
	assert_null(policy_new(&c, err, sizeof(err)));

	struct policy_config c2 = {.default_access = 7};
	assert_null(policy_new(&c2, err, sizeof(err)));
	c2.default_access = POLICY_ALLOW;
	const char *ids[] = {"ok", "user:"};
	c2.blocked_ids = ids;
	c2.n_blocked = 2;
	assert_null(policy_new(&c2, err, sizeof(err)));
	assert_non_null(strstr(err, "blocked_ids[1]"));
	c2.n_blocked = 0;
	c2.incubation.enabled = 1;
	assert_null(policy_new(&c2, err, sizeof(err)));
	assert_non_null(strstr(err, "incubation.days"));
	assert_null(policy_new(NULL, err, sizeof(err)));
	policy_free(NULL);
	assert_int_equal(policy_access_parse("Quarantine"), POLICY_QUARANTINE);
	assert_int_equal(policy_access_parse("deny"), -1);
}

/* Many exact rules: the hash finds the right (earliest) one. */
static void test_many_rules(void **state)
{
	(void)state;
	enum { N = 3000 };
	static char texts[N][64];
	const char *rules[N];
	for (int i = 0; i < N; i++) {
		int access = i % 3;
		snprintf(texts[i], sizeof(texts[i]), "%s DeviceModel is \"Model-%d\"",
			 policy_access_name(access), i % 2000);
		rules[i] = texts[i];
	}
	struct policy *p = mk(rules, N, POLICY_QUARANTINE);
	struct policy_input in = iphone();
	in.user_agent = "x";
	in.device_os = "y";
	char model[32];
	for (int i = 0; i < 2000; i += 7) {
		snprintf(model, sizeof(model), "MODEL-%d", i);
		in.device_model = model;
		struct policy_decision d = decide(p, &in);
		assert_int_equal(d.rule_index, i);
		assert_int_equal(d.access, i % 3);
	}
	in.device_model = "Model-2000";
	assert_int_equal(decide(p, &in).reason, POLICY_R_DEFAULT);
	policy_free(p);
}

/* Real client requests: a UA glob quarantines the Nine client, OPTIONS pass. */
static void test_captures(void **state)
{
	(void)state;
	const char *rules[] = {"quarantine UserAgent like \"Nine-*\" name nine"};
	struct policy *p = mk(rules, 1, POLICY_ALLOW);
	char path[512];
	snprintf(path, sizeof(path), "%s/eas-captures/MANIFEST.tsv", tl_data_dir());
	size_t n;
	char *m = tl_read_file(path, &n);
	int rows = 0, options = 0;
	for (char *line = strtok(m, "\n"); line; line = strtok(NULL, "\n")) {
		char *f[4] = {0};
		char *q = line;
		for (int i = 0; i < 4 && q; i++) {
			f[i] = q;
			q = strchr(q, '\t');
			if (q)
				*q++ = 0;
		}
		if (!f[3] || !strcmp(f[0], "file"))
			continue;
		struct policy_input in = {.user_agent = f[3], .device_type = "Android", .now = NOW};
		in.cmd =
		    !strcmp(f[1], "OPTIONS") ? EAS_CMD_OPTIONS : eas_cmd_parse(f[2], strlen(f[2]));
		struct policy_decision d = decide(p, &in);
		if (in.cmd == EAS_CMD_OPTIONS) {
			options++;
			assert_int_equal(d.access, POLICY_ALLOW);
		} else {
			assert_int_equal(d.access, POLICY_QUARANTINE);
			assert_string_equal(d.rule_name, "nine");
		}
		rows++;
	}
	free(m);
	assert_int_equal(rows, 129);
	assert_true(options > 0);
	policy_free(p);
}

/* ---- differential tests: the prefilter never hides a match ---------------- */

static uint32_t rng_state = 12345;

static uint32_t rnd(uint32_t n)
{
	rng_state = rng_state * 1103515245u + 12345u;
	return (rng_state >> 8) % n;
}

static void rand_str(char *out, size_t maxlen, const char *alphabet)
{
	size_t n = rnd((uint32_t)maxlen + 1), k = strlen(alphabet);
	for (size_t i = 0; i < n; i++)
		out[i] = alphabet[rnd((uint32_t)k)];
	out[n] = 0;
}

/* One rule given as a struct (no quoting concerns), default allow. */
static struct policy *mk_one(int op, const char *pattern)
{
	struct policy_rule r = {.access = POLICY_BLOCK, .ch = POLICY_CH_USERAGENT, .op = op};
	snprintf(r.pattern, sizeof(r.pattern), "%s", pattern);
	struct policy_config c = {.rules = &r, .n_rules = 1};
	return policy_new(&c, NULL, 0);
}

static int blocks(const struct policy *p, const char *ua)
{
	struct policy_input in = {.user_agent = ua, .device_os = "x", .cmd = EAS_CMD_SYNC};
	return decide(p, &in).access == POLICY_BLOCK;
}

/* like == fnmatch(FNM_CASEFOLD) for patterns without [ and \ */
static void test_glob_differential(void **state)
{
	(void)state;
	int matches = 0;
	for (int t = 0; t < 3000; t++) {
		char pat[16], subj[24];
		rand_str(pat, 12, "abcABC*?*-?./");
		if (!pat[0])
			continue;
		struct policy *p = mk_one(POLICY_OP_LIKE, pat);
		assert_non_null(p);
		for (int k = 0; k < 30; k++) {
			rand_str(subj, 20, "abcABC-./x");
			if (k & 1) { /* bias towards matching: fill the wildcards */
				size_t n = 0;
				for (const char *c = pat; *c && n < sizeof(subj) - 3; c++) {
					if (*c != '*')
						subj[n++] = *c == '?' ? 'b' : *c;
					else
						for (uint32_t r = rnd(3); r > 0; r--)
							subj[n++] = 'a';
				}
				subj[n] = 0;
			}
			int want = fnmatch(pat, subj, FNM_CASEFOLD | FNM_NOESCAPE) == 0;
			if (blocks(p, subj) != want)
				fail_msg("like \"%s\" vs \"%s\": want %d", pat, subj, want);
			matches += want;
		}
		policy_free(p);
	}
	assert_true(matches > 5000); /* the test exercised real matches */
}

/* Constructs the literal scan must see through; each subject matches. */
static void test_regex_tricky(void **state)
{
	(void)state;
	static const struct {
		const char *re, *subject;
	} cases[] = {
	    {"ab(c)de", "abcde"},
	    {"a(b)?cde", "acde"},
	    {"xyzabc{2}de", "xyzabccde"},
	    {"abc+de", "abcccde"},
	    {"wxyzabc*de", "wxyzabde"},
	    {"wxyzabc?de", "wxyzabde"},
	    {"(?i)ABCdef", "abcDEF"},
	    {"abc\\.def", "abc.def"},
	    {"abc[.]def", "abc.def"},
	    {"[[:alpha:]]abc]", "xabc]"},
	    {"ab\\dcde", "ab5cde"},
	    {"^abc$", "abc"},
	    {"abcd|wxyz", "wxyz"},
	    {"(abc|xyz)123", "xyz123"},
	    {"abc\\Q.*\\E", "abc.*"},
	    {"abc(*ACCEPT)xyz", "abc"},
	    {"abc\\x41def", "abcAdef"},
	    {"abc\\101def", "abcAdef"},
	    {"(?x) a b c d", "abcd"},
	    {"ab(?=c)cde", "abcde"},
	    {"abc{,2}", "abc{,2}"},
	    {"a{2}bcde", "aabcde"},
	    {"abc(?#x)def", "abcdef"},
	    {"ab[c\\]]de", "ab]de"},
	    {"abc\\ndef", "abc\ndef"},
	    {"a.c.e.g", "abcdefg"},
	    {"abcdef(?i:XYZ)", "abcdefxyz"},
	    {"(?i)a(?-i)bcd", "Abcd"},
	    {"abc\\Kdef", "abcdef"},
	    {"(?|(abc)|(xyz))def", "xyzdef"},
	    {"ab[]x]cde", "ab]cde"},
	    {"ab[^]x]cde", "abqcde"},
	    {"abc{1,3||xyz}", "xyz}"},
	    {"abcd{1, 2}", "abcd{1, 2}"},
	    {"ab[[:x]|]cdef|zz", "zz"},
	    {"ab[[:alpha:]x]cdef", "abqcdef"},
	    {"abc{2,}de", "abccde"},
	    {"[[:[:]?abcd|xy", "xy"},
	};
	for (size_t i = 0; i < NELEM(cases); i++) {
		struct policy *p = mk_one(POLICY_OP_MATCHES, cases[i].re);
		if (!p)
			fail_msg("does not compile: %s", cases[i].re);
		if (!blocks(p, cases[i].subject))
			fail_msg("matches \"%s\" missed \"%s\"", cases[i].re, cases[i].subject);
		policy_free(p);
	}
}

/* matches == pcre2_match() for random regexes, prefilter or not */
static void test_regex_differential(void **state)
{
	(void)state;
	static const char *const tok[] = {
	    "a",	"b",	     "c",     "ab",	     "abc",   "A",     "B",
	    "1",	"-",	     "/",     ".",	     "*",     "+",     "?",
	    "*?",	"{2}",	     "{1,2}", "(",	     ")",     "(?:",   "(?i)",
	    "|",	"^",	     "$",     "[ab]",	     "[^a]",  "\\d",   "\\.",
	    "\\w",	"\\b",	     "\\-",   "[[:alpha:]]", "(?=a)", "\\x41", "\\Qa|b\\E",
	    "(?x) a b", "(*ACCEPT)", "(?#c)", "\\1",	     "]",     "}",
	};
	int compiled = 0, matches = 0;
	for (int t = 0; t < 4000; t++) {
		char pat[POLICY_PATTERN_MAX] = "";
		int ntok = 1 + (int)rnd(9);
		for (int k = 0; k < ntok; k++)
			strncat(pat, tok[rnd(NELEM(tok))], sizeof(pat) - strlen(pat) - 1);
		int ec;
		PCRE2_SIZE off;
		pcre2_code *re =
		    pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL);
		if (!re)
			continue;
		compiled++;
		struct policy *p = mk_one(POLICY_OP_MATCHES, pat);
		assert_non_null(p);
		pcre2_match_data *md = pcre2_match_data_create(1, NULL);
		for (int k = 0; k < 30; k++) {
			char subj[POLICY_PATTERN_MAX];
			rand_str(subj, 24, k & 1 ? "abcAB1-/." : "abcabcabcab");
			if (k % 3 == 2) { /* bias towards matching: the pattern's plain bytes */
				size_t n = 0;
				for (const char *c = pat; *c; c++)
					if (!strchr("()[]{}|*+?.^$\\:=#", *c))
						subj[n++] = *c;
				subj[n] = 0;
			}
			int want =
			    pcre2_match(re, (PCRE2_SPTR)subj, strlen(subj), 0, 0, md, NULL) >= 0;
			if (blocks(p, subj) != want)
				fail_msg("matches \"%s\" vs \"%s\": want %d", pat, subj, want);
			matches += want;
		}
		pcre2_match_data_free(md);
		pcre2_code_free(re);
		policy_free(p);
	}
	assert_true(compiled > 1000);
	assert_true(matches > 5000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_examples),
	    cmocka_unit_test(test_parse_pleasant),
	    cmocka_unit_test(test_parse_errors),
	    cmocka_unit_test(test_errors_carry_no_control_bytes),
	    cmocka_unit_test(test_format_roundtrip),
	    cmocka_unit_test(test_exact_is_exact),
	    cmocka_unit_test(test_glob),
	    cmocka_unit_test(test_regex),
	    cmocka_unit_test(test_version_minimum),
	    cmocka_unit_test(test_version_ops),
	    cmocka_unit_test(test_command_scope),
	    cmocka_unit_test(test_personal_lists),
	    cmocka_unit_test(test_admin_state),
	    cmocka_unit_test(test_options_always_allowed),
	    cmocka_unit_test(test_characteristic_order),
	    cmocka_unit_test(test_first_rule_wins),
	    cmocka_unit_test(test_scoped_beats_unscoped),
	    cmocka_unit_test(test_model_falls_back_to_type),
	    cmocka_unit_test(test_os_from_user_agent),
	    cmocka_unit_test(test_incubation),
	    cmocka_unit_test(test_explain),
	    cmocka_unit_test(test_config_errors),
	    cmocka_unit_test(test_many_rules),
	    cmocka_unit_test(test_captures),
	    cmocka_unit_test(test_glob_differential),
	    cmocka_unit_test(test_regex_tricky),
	    cmocka_unit_test(test_regex_differential),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
