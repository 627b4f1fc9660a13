/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* test_osver.c - DeviceOS parsing, User-Agent decoding, the build table. */
#include "testlib.h"

#include <errno.h>

#include "osver.h"

static void load_table(void)
{
	size_t n;
	char err[128];
	char *t = tl_read_file("data/ios-builds.tsv", &n);
	int rc = osver_builds_load(t, n, err, sizeof(err));
	free(t);
	if (rc <= 0)
		fail_msg("data/ios-builds.tsv: %s", err);
}

static int setup(void **state)
{
	(void)state;
	load_table();
	return 0;
}

static void check_parse(const char *s, const char *fam, unsigned nv, const unsigned *v,
			const char *build, const char *text)
{
	struct osver o;
	assert_int_equal(osver_parse(s, &o), 0);
	assert_string_equal(o.family, fam);
	assert_int_equal(o.nv, nv);
	for (unsigned i = 0; i < nv; i++)
		assert_int_equal(o.v[i], v[i]);
	assert_string_equal(o.build, build);
	assert_string_equal(o.text, text);
}

static void test_parse_examples(void **state)
{
	(void)state;
	check_parse("iOS 6.1 10B142", "iOS", 2, (unsigned[]){6, 1}, "10B142", "iOS 6.1 10B142");
	check_parse("iOS 7.0.1 (11A470a)", "iOS", 3, (unsigned[]){7, 0, 1}, "11A470a",
		    "iOS 7.0.1 11A470a");
	check_parse("iOS 11.2.6 15D100", "iOS", 3, (unsigned[]){11, 2, 6}, "15D100",
		    "iOS 11.2.6 15D100");
	check_parse("Android 12.0.1", "Android", 3, (unsigned[]){12, 0, 1}, "", "Android 12.0.1");
	check_parse("Android 4.4.2.N900VVRUCNC4", "Android", 3, (unsigned[]){4, 4, 2},
		    "N900VVRUCNC4", "Android 4.4.2 N900VVRUCNC4");
	check_parse("Windows Phone 8.10", "Windows Phone", 2, (unsigned[]){8, 10}, "",
		    "Windows Phone 8.10");
	/* family spelling is canonicalised, blanks collapse */
	check_parse("  ios   7.0.2   11A501 ", "iOS", 3, (unsigned[]){7, 0, 2}, "11A501",
		    "iOS 7.0.2 11A501");
	/* Samsung sends only the family */
	check_parse("Android", "Android", 0, NULL, "", "Android");
	/* an unknown family keeps its spelling */
	check_parse("Tizen 2.3", "Tizen", 2, (unsigned[]){2, 3}, "", "Tizen 2.3");
}

static void test_parse_build_only_uses_table(void **state)
{
	(void)state;
	struct osver o;
	assert_int_equal(osver_parse("iOS 10B142", &o), 0);
	assert_int_equal(o.nv, 2);
	assert_int_equal(o.v[0], 6);
	assert_int_equal(o.v[1], 1);
	assert_int_equal(o.src, OSVER_SRC_TABLE);
	assert_string_equal(o.text, "iOS 6.1 10B142");
}

static void test_parse_rejects(void **state)
{
	(void)state;
	struct osver o;
	assert_int_equal(osver_parse(NULL, &o), -EINVAL);
	assert_int_equal(osver_parse("", &o), -EINVAL);
	assert_int_equal(osver_parse("   ", &o), -EINVAL);
	assert_int_equal(osver_parse("10B142", &o), -EINVAL);
	assert_int_equal(osver_parse("iOS 123456789012", &o), -EINVAL);
	assert_int_equal(osver_parse("Outlook for iOS and Android 1.0", &o), -EINVAL);
	assert_string_equal(o.text, "");
}

static void test_cmp(void **state)
{
	(void)state;
	struct osver a, b;
	osver_parse("iOS 7.0.2", &a);
	osver_parse("iOS 7.0.1 11A470a", &b);
	assert_true(osver_cmp(&a, &b) > 0);
	assert_true(osver_cmp(&b, &a) < 0);
	osver_parse("IOS 7.0", &a);
	osver_parse("iOS 7.0.0 11A465", &b);
	assert_int_equal(osver_cmp(&a, &b), 0); /* missing = 0; build ignored */
	osver_parse("iOS 7.0.10", &a);
	osver_parse("iOS 7.0.9", &b);
	assert_true(osver_cmp(&a, &b) > 0); /* numeric, not lexical */
	osver_parse("Windows Phone 8.10", &a);
	osver_parse("Windows Phone 8.1", &b);
	assert_true(osver_cmp(&a, &b) > 0);
	osver_parse("Android 7.0", &a);
	osver_parse("iOS 7.0", &b);
	assert_true(osver_cmp(&a, &b) != 0);
	assert_int_equal(osver_cmp_version(&a, &b), 0);
}

static void check_ua(const char *ua, const char *text, const char *hw, int src)
{
	struct osver o;
	assert_int_equal(osver_from_user_agent(ua, &o), 0);
	assert_string_equal(o.text, text);
	assert_string_equal(o.hw, hw);
	assert_int_equal(o.src, src);
}

static void test_apple_ua(void **state)
{
	(void)state;
	check_ua("Apple-iPhone4C1/1002.142", "iOS 6.1 10B142", "iPhone4C1", OSVER_SRC_TABLE);
	check_ua("Apple-iPad2C1/1002.141", "iOS 6.1 10B141", "iPad2C1", OSVER_SRC_TABLE);
	check_ua("Apple-iPhone5C2/1002.146", "iOS 6.1.2 10B146", "iPhone5C2", OSVER_SRC_TABLE);
	check_ua("Apple-iPhone6C1/1101.465", "iOS 7.0 11A465", "iPhone6C1", OSVER_SRC_TABLE);
	/* trailing 000NN is a lower-case letter */
	check_ua("Apple-iPhone6C1/1101.47000001", "iOS 7.0.1 11A470a", "iPhone6C1",
		 OSVER_SRC_TABLE);
	check_ua("Apple-iPad3C3/1102.55400001", "iOS 7.0.4 11B554a", "iPad3C3", OSVER_SRC_TABLE);
	check_ua("Apple-iPhone8C4/1504.100", "iOS 11.2.6 15D100", "iPhone8C4", OSVER_SRC_TABLE);
	/* Apple's documented examples: leading zeros dropped, 1-digit majors */
	check_ua("Apple-iPhone2C1/705.018", "iOS 7E18", "iPhone2C1", OSVER_SRC_NONE);
	check_ua("Apple-iPhone1C2/508.01100001", "iOS 5H11a", "iPhone1C2", OSVER_SRC_NONE);
	check_ua("Apple-iPhone3C1/807.4", "iOS 4.3.1 8G4", "iPhone3C1", OSVER_SRC_TABLE);
}

static void test_apple_ua_unknown_builds(void **state)
{
	(void)state;
	/* same train, lower known build 11B651 = 7.0.6: a lower bound */
	check_ua("Apple-iPhone6C1/1102.700", "iOS 7.0.6 11B700", "iPhone6C1", OSVER_SRC_NEAREST);
	/* a suffix build after a known one of the same number */
	check_ua("Apple-iPhone6C1/1101.47000002", "iOS 7.0.1 11A470b", "iPhone6C1",
		 OSVER_SRC_NEAREST);
	/* below every build of its train: nothing inferred */
	check_ua("Apple-iPhone6C1/1104.100", "iOS 11D100", "iPhone6C1", OSVER_SRC_NONE);
	/* 4-digit numbers are variants/betas: exact only */
	check_ua("Apple-iPhone6C1/2101.5248", "iOS 21A5248", "iPhone6C1", OSVER_SRC_NONE);
	check_ua("Apple-iPad2C5/1001.8426", "iOS 6.0.1 10A8426", "iPad2C5", OSVER_SRC_TABLE);
	/* a train not in the table at all */
	check_ua("Apple-iPhone17C1/2201.100", "iOS 22A100", "iPhone17C1", OSVER_SRC_NONE);
}

static void test_other_uas(void **state)
{
	(void)state;
	check_ua("iOS/7.0.2 (11A501) dataaccessd/1.0", "iOS 7.0.2 11A501", "", OSVER_SRC_TEXT);
	check_ua("iOS/16.5.1 (20F75) dataaccessd/1.0", "iOS 16.5.1 20F75", "", OSVER_SRC_TEXT);
	check_ua("Android/4.4.2-EAS-1.3", "Android 4.4.2", "", OSVER_SRC_TEXT);
	check_ua("Android/4.3.1-EAS-1.3", "Android 4.3.1", "", OSVER_SRC_TEXT);
	check_ua("SAMSUNG-SM-N900V/101.403", "Android 4.3", "SM-N900V", OSVER_SRC_TEXT);
	check_ua("SAMSUNG-SGH-I337/101.40402", "Android 4.4.2", "SGH-I337", OSVER_SRC_TEXT);
}

static void test_ua_rejects(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "",
	    "Apple-",
	    "Apple-iPhone4C1",
	    "Apple-iPhone4C1/1002",
	    "Apple-iPhone4C1/1099.142", /* letter 99 */
	    "Apple-iPhone4C1/1000.142", /* letter 00 */
	    "Apple-iPhone4C1/12345.1",
	    "Apple-iPhone4C1/1002.142x",
	    "Apple-iPh one/1002.142",
	    "Android-Mail/7.5.1",
	    "Outlook-iOS-Android/1.0",
	    "TouchDown(MSRPC)/7.1.0005",
	    "hltevzw/KOT49H",
	    "SAMSUNG-SM-N900V/101.abc",
	    "SAMSUNG-SM-N900V/000",
	    "iOS/x",
	    "Nine-sdk_phone64_x86_64/SE1A.220621.001",
	};
	struct osver o;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (osver_from_user_agent(bad[i], &o) != -ENOENT)
			fail_msg("accepted UA '%s' as %s", bad[i], o.text);
		assert_string_equal(o.text, "");
	}
	assert_int_equal(osver_from_user_agent(NULL, &o), -EINVAL);
}

/* Every real capture's User-Agent decodes or is cleanly unrecognised. */
static void test_capture_uas(void **state)
{
	(void)state;
	char path[512];
	snprintf(path, sizeof(path), "%s/eas-captures/MANIFEST.tsv", tl_data_dir());
	size_t n;
	char *m = tl_read_file(path, &n);
	int rows = 0;
	for (char *line = strtok(m, "\n"); line; line = strtok(NULL, "\n")) {
		char *f[4] = {0};
		char *p = line;
		for (int i = 0; i < 4 && p; i++) {
			f[i] = p;
			p = strchr(p, '\t');
			if (p)
				*p++ = 0;
		}
		if (!f[3] || !strcmp(f[0], "file"))
			continue;
		struct osver o;
		int rc = osver_from_user_agent(f[3], &o);
		assert_true(rc == 0 || rc == -ENOENT);
		rows++;
	}
	free(m);
	assert_int_equal(rows, 129);
}

static void test_effective(void **state)
{
	(void)state;
	struct osver o;
	const char *dos = "iOS 6.1.3 10B329";
	assert_ptr_equal(osver_effective(dos, "Apple-iPhone4C1/1002.142", &o), dos);
	assert_string_equal(o.text, "iOS 6.1.3 10B329");
	assert_string_equal(osver_effective("", "Apple-iPhone4C1/1002.142", &o), "iOS 6.1 10B142");
	assert_string_equal(osver_effective(NULL, "Apple-iPhone4C1/1002.142", &o),
			    "iOS 6.1 10B142");
	assert_string_equal(o.hw, "iPhone4C1");
	assert_string_equal(osver_effective(NULL, "Nine-x/1", &o), "");
	assert_string_equal(o.family, "");
	assert_string_equal(osver_effective(NULL, NULL, &o), "");
}

/* The shipped table covers every iOS 6.x and 7.x release (and more). */
static void test_table_coverage(void **state)
{
	(void)state;
	static const struct {
		const char *build, *ver;
	} want[] = {
	    {"8A293", "4.0"},	  {"9A334", "5.0"},	{"10A403", "6.0"},     {"10A523", "6.0.1"},
	    {"10A551", "6.0.2"},  {"10B141", "6.1"},	{"10B145", "6.1.1"},   {"10B146", "6.1.2"},
	    {"10B329", "6.1.3"},  {"10B350", "6.1.4"},	{"10B400", "6.1.5"},   {"10B500", "6.1.6"},
	    {"11A465", "7.0"},	  {"11A470a", "7.0.1"}, {"11A501", "7.0.2"},   {"11B511", "7.0.3"},
	    {"11B554a", "7.0.4"}, {"11B601", "7.0.5"},	{"11B651", "7.0.6"},   {"11D167", "7.1"},
	    {"11D201", "7.1.1"},  {"11D257", "7.1.2"},	{"12H321", "8.4.1"},   {"13G37", "9.3.6"},
	    {"14G61", "10.3.4"},  {"15D100", "11.2.6"}, {"16H62", "12.5.5"},   {"17H35", "13.7"},
	    {"18H107", "14.8.1"}, {"19H370", "15.8"},	{"20H350", "16.7.10"}, {"21A329", "17.0"},
	    {"21H221", "17.7.2"},
	};
	assert_true(osver_builds_count() > 250);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		unsigned v[4], nv;
		char got[32] = "";
		assert_int_equal(osver_build_version(want[i].build, v, &nv), OSVER_SRC_TABLE);
		for (unsigned k = 0, o = 0; k < nv; k++)
			o += (unsigned)snprintf(got + o, sizeof(got) - o, k ? ".%u" : "%u", v[k]);
		assert_string_equal(got, want[i].ver);
	}
}

static void test_table_errors(void **state)
{
	(void)state;
	char err[128];
	size_t before = osver_builds_count();
	const char *bad1 = "# c\n10B142\t6.1\nbogus line\n";
	assert_int_equal(osver_builds_load(bad1, strlen(bad1), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "line 3:"));
	const char *bad2 = "10B142\t6.1\n\n10B142\t6.1.1\n";
	assert_int_equal(osver_builds_load(bad2, strlen(bad2), err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "line 3: build listed twice (also line 1)");
	const char *bad3 = "10B142\t6.x\n";
	assert_int_equal(osver_builds_load(bad3, strlen(bad3), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "line 1: bad version"));
	const char *bad4 = "10b142\t6.1\n";
	assert_int_equal(osver_builds_load(bad4, strlen(bad4), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "line 1: bad build"));
	/* a failed load leaves the table alone */
	assert_int_equal(osver_builds_count(), before);

	/* CRLF, trailing comments, no final newline */
	const char *ok = "10B142\t6.1  # 4S\r\n\r\n11A470a 7.0.1";
	assert_int_equal(osver_builds_load(ok, strlen(ok), err, sizeof(err)), 2);
	unsigned v[4], nv;
	assert_int_equal(osver_build_version("11A470a", v, &nv), OSVER_SRC_TABLE);
	assert_int_equal(nv, 3);
	load_table();
}

static void test_load_default(void **state)
{
	(void)state;
	/* tests run from the repo root, where data/ios-builds.tsv lives */
	assert_true(osver_builds_load_default() > 250);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_examples),
	    cmocka_unit_test(test_parse_build_only_uses_table),
	    cmocka_unit_test(test_parse_rejects),
	    cmocka_unit_test(test_cmp),
	    cmocka_unit_test(test_apple_ua),
	    cmocka_unit_test(test_apple_ua_unknown_builds),
	    cmocka_unit_test(test_other_uas),
	    cmocka_unit_test(test_ua_rejects),
	    cmocka_unit_test(test_capture_uas),
	    cmocka_unit_test(test_effective),
	    cmocka_unit_test(test_table_coverage),
	    cmocka_unit_test(test_table_errors),
	    cmocka_unit_test(test_load_default),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
