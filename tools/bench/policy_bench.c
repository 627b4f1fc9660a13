/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * policy_bench.c - ns per policy_decide() for several rule mixes.
 *
 * Built by `make`. Run (from the repo root):
 *   build/bench/policy_bench [iterations [mix]]   (default 200000 per case, all mixes)
 *
 * Every mix has 1,000 rules. For each it prints the best of 7 timed runs
 * (ns per decision) for a request that matches no rule (the worst case:
 * every characteristic, every glob and every regex is considered) and for a
 * rotating set of realistic requests (some hit exact rules, some globs, some
 * nothing).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eas_cmd.h"
#include "osver.h"
#include "policy.h"

#define NRULES 1000
#define NREQ   64

static char rule_buf[NRULES][160];
static const char *rules[NRULES];
static int nrules;

/* Rule nrules from a template taking up to three ints (i, i % 97, i % 13). */
static void add(const char *fmt, int i)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(rule_buf[nrules], sizeof(rule_buf[0]), fmt, i, i % 97, i % 13);
#pragma GCC diagnostic pop
	rules[nrules] = rule_buf[nrules];
	nrules++;
}

/* ~890 exact, 80 glob, 20 regex, 10 version: what a big site accumulates. */
static void mix_realistic(void)
{
	static const char *const exact[] = {
	    "block DeviceModel is \"Model-%d\"", "quarantine DeviceOS is \"iOS %d.%d 1%dB142\"",
	    "allow DeviceId is \"Dev%dX%dY%d\"", "block UserAgent is \"Client-%d/%d.%d\"",
	    "allow DeviceType is \"Type%d\"",
	};
	static const char *const glob[] = {
	    "block UserAgent like \"Vendor%d-*\"",
	    "quarantine DeviceOS like \"Android %d.%d.*\"",
	    "block DeviceModel like \"*-Series%d?\"",
	    "block UserAgent like \"*Agent%d/%d*\"",
	};
	static const char *const regex[] = {
	    "block UserAgent matches \"^Client%d/[0-9]+\\\\.[0-9]+$\"",
	    "block UserAgent matches \"^Apple.*1%d%d.*\" cmd MeetingResponse",
	    "quarantine DeviceModel matches \"^SM-[A-Z]%d[0-9]{2}\"",
	    "block UserAgent matches \"(?i)evil%d\"",
	};
	nrules = 0;
	for (int i = 0; i < 890; i++)
		add(exact[i % 5], i);
	for (int i = 0; i < 80; i++)
		add(glob[i % 4], i);
	for (int i = 0; i < 20; i++)
		add(regex[i % 4], i);
	for (int i = 0; i < 10; i++)
		add(i % 2 ? "quarantine DeviceOS < \"Android %d.%d\""
			  : "block DeviceOS <= \"iOS 4.%d\"",
		    i);
}

static void mix_regex(void)
{
	nrules = 0;
	for (int i = 0; i < NRULES; i++)
		add(i % 2 ? "block UserAgent matches \"^Client%d/[0-9]+\\\\.%d$\""
			  : "block UserAgent matches \"Agent%d.*Build/%d\"",
		    i);
}

static void mix_exact(void)
{
	nrules = 0;
	for (int i = 0; i < NRULES; i++)
		add(i % 2 ? "block DeviceModel is \"Model-%d\"" : "block UserAgent is \"UA-%d/%d\"",
		    i);
}

static void mix_glob(void)
{
	nrules = 0;
	for (int i = 0; i < NRULES; i++)
		add(i % 2 ? "block UserAgent like \"Vendor%d-*\""
			  : "block UserAgent like \"*Agent%d/*\"",
		    i);
}

static void mix_none(void)
{
	nrules = 0;
}

static struct policy_input reqs[NREQ];
static char req_buf[NREQ][3][64];

/* A rotating set: iPhones by UA only, Androids, exact-rule hits, misses. */
static void make_requests(void)
{
	static const char *const uas[] = {
	    "Apple-iPhone4C1/1002.142",
	    "Apple-iPhone6C1/1101.47000001",
	    "Android/4.4.2-EAS-1.3",
	    "SAMSUNG-SM-N900V/101.403",
	    "Nine-sdk_phone64_x86_64/SE1A.220621.001",
	    "Outlook-iOS-Android/1.0",
	    "iOS/16.5.1 (20F75) dataaccessd/1.0",
	    "TouchDown(MSRPC)/7.1.0005",
	};
	for (int i = 0; i < NREQ; i++) {
		struct policy_input *in = &reqs[i];
		memset(in, 0, sizeof(*in));
		snprintf(req_buf[i][0], sizeof(req_buf[0][0]), "Dev%dX0Y0", 5000 + i);
		snprintf(req_buf[i][1], sizeof(req_buf[0][1]), i % 4 ? "Phone%d" : "Model-%d",
			 i * 15);
		snprintf(req_buf[i][2], sizeof(req_buf[0][2]), "user%d", i);
		in->device_id = req_buf[i][0];
		in->device_model = req_buf[i][1];
		in->user = req_buf[i][2];
		in->device_type = i % 2 ? "iPhone" : "Android";
		in->user_agent = uas[i % 8];
		in->device_os = i % 3 ? NULL : "Android 12.0.1";
		in->cmd = i % 5 ? EAS_CMD_SYNC : EAS_CMD_PING;
		in->now = 1700000000;
	}
}

/* CPU time of this thread: time spent descheduled on a busy box is not ours. */
static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile int sink;

/* Best of REPS timed runs: the machine is shared, noise only adds time. */
#define REPS 7

static double run(const struct policy *p, const struct policy_input *in, int nin, long iters)
{
	struct policy_decision d;
	double best = 1e18;
	for (long i = 0; i < iters / 10; i++) { /* warm up */
		policy_decide(p, &in[i % nin], &d);
		sink += d.access;
	}
	for (int r = 0; r < REPS; r++) {
		double t0 = now_ns();
		for (long i = 0; i < iters; i++) {
			policy_decide(p, &in[i % nin], &d);
			sink += d.access;
		}
		double ns = (now_ns() - t0) / (double)iters;
		best = ns < best ? ns : best;
	}
	return best;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fill)(void);
	} mixes[] = {
	    {"no rules", mix_none},
	    {"1000 realistic (890 exact, 80 glob, 20 regex, 10 version)", mix_realistic},
	    {"1000 exact", mix_exact},
	    {"1000 glob", mix_glob},
	    {"1000 regex", mix_regex},
	};
	long iters = argc > 1 ? atol(argv[1]) : 200000;
	int only = argc > 2 ? atoi(argv[2]) : -1;
	char err[256];

	if (iters <= 0)
		iters = 200000;
	if (osver_builds_load_default() <= 0)
		fprintf(stderr, "warning: no iOS build table (run from the repo root)\n");
	make_requests();
	struct policy_input miss = {.user = "nobody",
				    .device_id = "NOMATCH0000",
				    .device_type = "Unknown",
				    .device_model = "NoModel",
				    .device_os = "Tizen 2.3",
				    .user_agent = "SomeClient/1.0 (compatible; nothing)",
				    .xmswl = "x",
				    .cmd = EAS_CMD_SYNC,
				    .now = 1700000000};
	printf("%-60s %14s %14s\n", "mix", "ns/miss", "ns/realistic");
	for (size_t m = 0; m < sizeof(mixes) / sizeof(mixes[0]); m++) {
		if (only >= 0 && (size_t)only != m)
			continue;
		mixes[m].fill();
		struct policy_config c = {.default_access = POLICY_ALLOW,
					  .rule_texts = rules,
					  .n_rule_texts = (size_t)nrules};
		struct policy *p = policy_new(&c, err, sizeof(err));
		if (!p) {
			fprintf(stderr, "%s: %s\n", mixes[m].name, err);
			return 1;
		}
		long it = strstr(mixes[m].name, "regex") && !strstr(mixes[m].name, "realistic")
			      ? iters / 20
			      : iters;
		double a = run(p, &miss, 1, it), b = run(p, reqs, NREQ, it);
		printf("%-60s %14.0f %14.0f\n", mixes[m].name, a, b);
		policy_free(p);
	}
	policy_thread_cleanup();
	return 0;
}
