/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * test_eas_answer.c - the gateway's own EAS answers: status envelopes
 * (decoded by libwbxml's wbxml2xml as an independent oracle), the
 * HTTP-200-or-bare-status rule, OPTIONS headers, status names.
 */
#include "testlib.h"

#include <unistd.h>

#include "eas_answer.h"

struct env_case {
	enum eas_cmd cmd;
	const char *root; /* root element */
	const char *ns;	  /* its namespace as wbxml2xml prints it */
};

static const struct env_case envs[] = {
    {EAS_CMD_SYNC, "Sync", "AirSync:"},
    {EAS_CMD_SENDMAIL, "SendMail", "ComposeMail:"},
    {EAS_CMD_SMARTFORWARD, "SmartForward", "ComposeMail:"},
    {EAS_CMD_SMARTREPLY, "SmartReply", "ComposeMail:"},
    {EAS_CMD_FOLDERSYNC, "FolderSync", "FolderHierarchy:"},
    {EAS_CMD_FOLDERCREATE, "FolderCreate", "FolderHierarchy:"},
    {EAS_CMD_FOLDERDELETE, "FolderDelete", "FolderHierarchy:"},
    {EAS_CMD_FOLDERUPDATE, "FolderUpdate", "FolderHierarchy:"},
    {EAS_CMD_MOVEITEMS, "MoveItems", "Move:"},
    {EAS_CMD_GETITEMESTIMATE, "GetItemEstimate", "GetItemEstimate:"},
    {EAS_CMD_MEETINGRESPONSE, "MeetingResponse", "MeetingResponse:"},
    {EAS_CMD_SEARCH, "Search", "Search:"},
    {EAS_CMD_SETTINGS, "Settings", "Settings:"},
    {EAS_CMD_PING, "Ping", "Ping:"},
    {EAS_CMD_ITEMOPERATIONS, "ItemOperations", "ItemOperations:"},
    {EAS_CMD_PROVISION, "Provision", "Provision:"},
    {EAS_CMD_RESOLVERECIPIENTS, "ResolveRecipients", "ResolveRecipients:"},
    {EAS_CMD_VALIDATECERT, "ValidateCert", "ValidateCert:"},
    {EAS_CMD_FIND, "Find", "Find:"},
};

/* Decode WBXML with wbxml2xml into out; returns 0 on success. */
static int wbxml_to_xml(const uint8_t *wb, size_t n, char *out, size_t cap)
{
	char path[] = "/tmp/eg_test_wbxml_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, wb, n), (ssize_t)n);
	close(fd);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "wbxml2xml -l ACTIVESYNC -m 0 -o - %s 2>/dev/null", path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t got = fread(out, 1, cap - 1, p);
	out[got] = 0;
	int rc = pclose(p);
	unlink(path);
	return rc;
}

static int have_wbxml2xml(void)
{
	return system("command -v wbxml2xml >/dev/null 2>&1") == 0;
}

/* Exact bytes for two envelopes, worked out by hand from MS-ASWBXML. */
static void test_envelope_bytes(void **state)
{
	(void)state;
	uint8_t out[EAS_STATUS_WBXML_MAX];
	/* page 0 needs no SWITCH_PAGE; Sync 0x05|0x40, Status 0x0E|0x40 */
	static const uint8_t sync129[] = {0x03, 0x01, 0x6A, 0x00, 0x45, 0x4E, 0x03,
					  '1',	'2',  '9',  0x00, 0x01, 0x01};
	size_t n = eas_status_wbxml(EAS_CMD_SYNC, 129, out, sizeof(out));
	assert_int_equal(n, sizeof(sync129));
	assert_memory_equal(out, sync129, n);
	/* Provision page 14: Provision 0x05, Status 0x0B */
	static const uint8_t prov142[] = {0x03, 0x01, 0x6A, 0x00, 0x00, 0x0E, 0x45, 0x4B,
					  0x03, '1',  '4',  '2',  0x00, 0x01, 0x01};
	n = eas_status_wbxml(EAS_CMD_PROVISION, 142, out, sizeof(out));
	assert_int_equal(n, sizeof(prov142));
	assert_memory_equal(out, prov142, n);
	/* Find page 25 (MS-ASWBXML 2.1.2.1.26): Find 0x05, Status 0x0A */
	static const uint8_t find2[] = {0x03, 0x01, 0x6A, 0x00, 0x00, 0x19, 0x45,
					0x4A, 0x03, '2',  0x00, 0x01, 0x01};
	n = eas_status_wbxml(EAS_CMD_FIND, 2, out, sizeof(out));
	assert_int_equal(n, sizeof(find2));
	assert_memory_equal(out, find2, n);
}

/* Every envelope decodes, with libwbxml's own tables, to the command's
 * root element in its namespace holding <Status>N</Status>. */
static void test_envelopes_decode(void **state)
{
	(void)state;
	if (!have_wbxml2xml()) {
		print_message("skip: wbxml2xml (libwbxml2-utils) not installed\n");
		skip();
	}
	for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++) {
		uint8_t wb[EAS_STATUS_WBXML_MAX];
		char xml[2048], want[256];
		int status = 101 + (int)i * 4;
		size_t n = eas_status_wbxml(envs[i].cmd, status, wb, sizeof(wb));
		assert_true(n > 0);
		if (envs[i].cmd == EAS_CMD_FIND) /* libwbxml 0.11 has no page 25 */
			continue;
		if (wbxml_to_xml(wb, n, xml, sizeof(xml)) != 0)
			fail_msg("wbxml2xml failed for %s", envs[i].root);
		snprintf(want, sizeof(want), "<%s xmlns=\"%s\"><Status>%d</Status></%s>",
			 envs[i].root, envs[i].ns, status, envs[i].root);
		if (!strstr(xml, want))
			fail_msg("%s: want %s in %s", envs[i].root, want, xml);
	}
}

static void test_envelope_limits(void **state)
{
	(void)state;
	static const enum eas_cmd none[] = {
	    EAS_CMD_GETATTACHMENT, EAS_CMD_OPTIONS,   EAS_CMD_NONE,	  EAS_CMD_UNKNOWN,
	    EAS_CMD_GETHIERARCHY,  EAS_CMD_NOTIFY,    EAS_CMD_PROXYLOGIN, (enum eas_cmd)5,
	    (enum eas_cmd)99,	   (enum eas_cmd) - 1};
	uint8_t out[64];
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
		assert_int_equal(eas_status_wbxml(none[i], 129, out, sizeof(out)), 0);
	assert_int_equal(eas_status_wbxml(EAS_CMD_SYNC, -1, out, sizeof(out)), 0);

	/* too small: 0 and nothing written; exactly enough: all of it */
	for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++) {
		size_t need = eas_status_wbxml(envs[i].cmd, 2147483647, out, sizeof(out));
		assert_true(need > 0 && need <= EAS_STATUS_WBXML_MAX);
		memset(out, 0xAA, sizeof(out));
		assert_int_equal(eas_status_wbxml(envs[i].cmd, 2147483647, out, need - 1), 0);
		for (size_t k = 0; k < sizeof(out); k++)
			assert_int_equal(out[k], 0xAA);
		assert_int_equal(eas_status_wbxml(envs[i].cmd, 2147483647, out, need), need);
		assert_int_equal(out[need], 0xAA);
	}
	assert_int_equal(eas_status_wbxml(EAS_CMD_PING, 0, out, sizeof(out)), 13);
}

static void test_http_status_rule(void **state)
{
	(void)state;
	static const struct {
		int proto, eas, fallback, want;
	} cases[] = {
	    {121, 129, 403, 403}, /* blocked, 12.1: bare 403 */
	    {140, 129, 403, 200}, /* blocked, 14.0+: envelope */
	    {141, 129, 403, 200}, {161, 129, 403, 200}, {25, 142, 449, 449},
	    {120, 142, 449, 449}, {121, 144, 449, 449}, {140, 142, 449, 200},
	    {140, 163, 403, 200}, {140, 164, 403, 403}, /* 14.0 knows <= 163 */
	    {141, 177, 403, 200}, {141, 178, 403, 403}, /* 14.1 knows <= 177 */
	    {160, 185, 403, 200}, {161, 185, 403, 200}, {161, 186, 403, 403},
	    {170, 999, 403, 200}, /* newer: everything */
	    {121, 2, 400, 200},	  /* command-specific code */
	    {0, 129, 403, 403},	  /* unknown version */
	    {161, 0, 503, 503},	  /* throttled: no EAS status */
	    {161, -1, 503, 503},  {161, 129, 451, 451}, {161, 129, 441, 441},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = eas_http_status_for(cases[i].proto, cases[i].eas, cases[i].fallback);
		if (got != cases[i].want)
			fail_msg("proto %d status %d fallback %d: got %d want %d", cases[i].proto,
				 cases[i].eas, cases[i].fallback, got, cases[i].want);
	}
}

static void test_options_headers(void **state)
{
	(void)state;
	char out[1024];
	size_t n = eas_options_headers(out, sizeof(out), NULL, NULL);
	assert_int_equal(n, strlen(out));
	assert_non_null(strstr(out, "Allow: OPTIONS,POST\r\n"));
	assert_non_null(strstr(out, "Public: OPTIONS,POST\r\n"));
	assert_non_null(strstr(out, "MS-Server-ActiveSync: " EAS_SERVER_VERSION "\r\n"));
	assert_non_null(
	    strstr(out, "MS-ASProtocolVersions: 2.5,12.0,12.1,14.0,14.1,16.0,16.1\r\n"));
	assert_non_null(strstr(out, "MS-ASProtocolCommands: Sync,SendMail,"));
	assert_non_null(strstr(out, ",ValidateCert,Find\r\n"));
	assert_string_equal(out + n - 2, "\r\n");

	n = eas_options_headers(out, sizeof(out), "14.0,14.1", "Sync,Ping");
	assert_string_equal(out, "Allow: OPTIONS,POST\r\n"
				 "MS-Server-ActiveSync: " EAS_SERVER_VERSION "\r\n"
				 "MS-ASProtocolVersions: 14.0,14.1\r\n"
				 "MS-ASProtocolCommands: Sync,Ping\r\n"
				 "Public: OPTIONS,POST\r\n");
	assert_int_equal(n, strlen(out));
	/* exactly enough room (n + NUL) works, one less does not */
	char small[256];
	assert_int_equal(eas_options_headers(small, n + 1, "14.0,14.1", "Sync,Ping"), n);
	assert_int_equal(eas_options_headers(small, n, "14.0,14.1", "Sync,Ping"), 0);
	assert_string_equal(small, "");
	/* no header injection, no empty lists */
	assert_int_equal(eas_options_headers(out, sizeof(out), "14.1\r\nX-Evil: 1", NULL), 0);
	assert_int_equal(eas_options_headers(out, sizeof(out), NULL, "Sync\n"), 0);
	assert_int_equal(eas_options_headers(out, sizeof(out), "", NULL), 0);
	assert_int_equal(eas_options_headers(out, 0, NULL, NULL), 0);
}

static void test_status_names(void **state)
{
	(void)state;
	assert_string_equal(eas_status_name(129), "DeviceIsBlockedForThisUser");
	assert_string_equal(eas_status_name(101), "InvalidContent");
	assert_string_equal(eas_status_name(108), "DeviceIdMissingOrInvalid");
	assert_string_equal(eas_status_name(109), "DeviceTypeMissingOrInvalid");
	assert_string_equal(eas_status_name(126), "UserDisabledForSync");
	assert_string_equal(eas_status_name(142), "DeviceNotProvisioned");
	assert_string_equal(eas_status_name(144), "InvalidPolicyKey");
	assert_string_equal(eas_status_name(156), "MoveCommandInvalidDestinationFolder");
	assert_string_equal(eas_status_name(160), "AvailabilityTooManyRecipients");
	assert_string_equal(eas_status_name(177), "MaximumDevicesReached");
	assert_string_equal(eas_status_name(185), "InvalidRecipients");
	static const int unknown[] = {-5, 0, 1, 100, 157, 158, 159, 186, 100000};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
		assert_string_equal(eas_status_name(unknown[i]), "Unknown");
	assert_string_equal(eas_http_reason(449), "Retry after sending a PROVISION command");
	assert_string_equal(eas_http_reason(503), "Service Unavailable");
	/* what the gateway answers an undecodable body with (request.c) */
	assert_string_equal(eas_http_reason(415), "Unsupported Media Type");
	assert_string_equal(eas_http_reason(299), "Unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_envelope_bytes),  cmocka_unit_test(test_envelopes_decode),
	    cmocka_unit_test(test_envelope_limits), cmocka_unit_test(test_http_status_rule),
	    cmocka_unit_test(test_options_headers), cmocka_unit_test(test_status_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
