/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * main.c - easgated: command line, then either a one-shot action
 * (--check-config, --detach, --probe-kernel, --version) or the master process.
 */
#include "bpfmaps.h"
#include "config.h"
#include "kfeat.h"
#include "log.h"
#include "master.h"
#include "priv.h"
#include "store_migrate.h"
#include "tls.h"
#include "usage.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "version.h" /* generated: EASGATE_VERSION, from tools/version.sh or the package */

/*
 * --probe-kernel: the probes the daemon runs at start, without a
 * configuration, in a network namespace of its own where it can (so the
 * test attachment to loopback and the loopback pairs touch nobody).
 * Prints what `easctl status` would: "kernel R" and one "feature" line each.
 */
static int probe_kernel(void)
{
	struct kfeat k;
	char line[512];
	int own = unshare(CLONE_NEWNET) == 0, uerr = errno;

	log_set_proc("probe");
	if (own) {
		struct ifreq ifr = {0};
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
		if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0 ||
		    (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr) < 0))
			log_warn("event=probe_lo_up error=%s", strerror(errno));
		if (fd >= 0)
			close(fd);
	} else {
		log_info("event=probe_netns error=%s note=\"probing in this namespace, without "
			 "attaching XDP\"",
			 strerror(uerr));
	}
	kfeat_probe_all(&k, own);
	printf("kernel %s\n", k.kernel);
	for (int i = 0; i < KFEAT__COUNT; i++)
		printf("%s\n", kfeat_line(&k, (enum kfeat_id)i, line, sizeof(line)));
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check-config", no_argument, NULL, 't'},
	    {"detach", no_argument, NULL, 'D'},
	    {"db-migrate", optional_argument, NULL, 'G'},
	    {"probe-kernel", no_argument, NULL, 'P'},
	    {"listen", required_argument, NULL, 'L'},
	    {"tls-cert", required_argument, NULL, 'C'},
	    {"tls-key", required_argument, NULL, 'K'},
	    {"trust-file", required_argument, NULL, 'T'},
	    {"backend", required_argument, NULL, 'B'},
	    {"state-dir", required_argument, NULL, 'S'},
	    {"control-socket", required_argument, NULL, 's'},
	    {"metrics", required_argument, NULL, 'M'},
	    {"user", required_argument, NULL, 'u'},
	    {"workers", required_argument, NULL, 'w'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct config_cmdline o = {.workers = -1};
	int check = 0, detach = 0, probe = 0, migrate = 0, migrate_to = 0, c;
	/* Before anything else: execve resets what priv_no_dumps sets. */
	priv_bind_now(argv);
	/* First, before a key or a request is in memory: no process of ours
	 * ever writes a core, and keys live where a core could not see them. */
	priv_no_dumps();
	tls_secure_heap_init();
	while ((c = getopt_long(argc, argv, "c:tw:l:Vh", lopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.config_path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'D':
			detach = 1;
			break;
		case 'G':
			migrate = 1;
			migrate_to = optarg ? atoi(optarg) : 0;
			if (optarg && migrate_to <= 0) {
				fprintf(stderr, "easgated: --db-migrate=N wants a version >= 1\n");
				return 2;
			}
			break;
		case 'P':
			probe = 1;
			break;
		case 'L':
			o.listen = optarg;
			break;
		case 'C':
			o.tls_cert = optarg;
			break;
		case 'K':
			o.tls_key = optarg;
			break;
		case 'T':
			o.trust_file = optarg;
			break;
		case 'B':
			if (o.nbackends >= EG_MAX_BACKENDS) {
				fprintf(stderr, "easgated: too many --backend options\n");
				return 2;
			}
			o.backends[o.nbackends++] = optarg;
			break;
		case 'S':
			o.state_dir = optarg;
			break;
		case 's':
			o.control_socket = optarg;
			break;
		case 'M':
			o.metrics = optarg;
			break;
		case 'u':
			o.user = optarg;
			break;
		case 'w':
			o.workers = atoi(optarg);
			break;
		case 'l':
			if (log_level_parse(optarg) < 0) {
				fprintf(stderr, "easgated: unknown log level '%s'\n", optarg);
				return 2;
			}
			o.log_level = optarg;
			break;
		case 'V':
			printf("easgated %s\n", EASGATE_VERSION);
			return 0;
		case 'h':
			usage_print(stdout);
			return 0;
		default:
			usage_print(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage_print(stderr);
		return 2;
	}
	if (o.log_level)
		log_set_level((enum log_level)log_level_parse(o.log_level));
	if (probe)
		return probe_kernel();
	if (detach) {
		struct gw_config *cfg = calloc(1, sizeof(*cfg));
		struct config_errors errs = {0};
		if (!cfg || config_load_cmdline(&o, cfg, &errs) < 0) {
			config_log_errors(&errs);
			free(cfg);
			return 1;
		}
		char pin_dir[PATH_MAX];
		snprintf(pin_dir, sizeof(pin_dir), "%s", cfg->xdp.pin_dir);
		config_free(cfg);
		free(cfg);
		int r = bpfmaps_detach_all(pin_dir);
		if (r < 0) {
			log_err("event=detach_failed pin_dir=%s error=%s", pin_dir, strerror(-r));
			return 1;
		}
		log_info("event=detached pin_dir=%s", pin_dir);
		return 0;
	}
	if (migrate) {
		struct gw_config *cfg = calloc(1, sizeof(*cfg));
		struct config_errors errs = {0};
		log_set_proc("migrate");
		if (!cfg || config_load_cmdline(&o, cfg, &errs) < 0) {
			config_log_errors(&errs);
			free(cfg);
			return 1;
		}
		char msg[512];
		int r = store_migrate_offline(cfg, migrate_to, msg, sizeof(msg));
		config_free(cfg);
		free(cfg);
		fprintf(r < 0 ? stderr : stdout, "%s%s\n", r < 0 ? "easgated: " : "", msg);
		return r < 0 ? 1 : 0;
	}
	if (check) {
		struct gw_config *cfg = calloc(1, sizeof(*cfg));
		struct config_errors errs = {0};
		log_set_proc("check");
		if (!cfg || config_load_cmdline(&o, cfg, &errs) < 0) {
			config_log_errors(&errs);
			fprintf(stderr, "%s: configuration has %d error(s)\n",
				o.config_path ? o.config_path : "(defaults)",
				errs.n + errs.dropped);
			for (int i = 0; i < errs.n; i++)
				fprintf(stderr, "%s\n", errs.msg[i]);
			free(cfg);
			return 1;
		}
		int bad = master_check_config_full(cfg);
		config_free(cfg);
		free(cfg);
		if (bad) {
			fprintf(stderr, "%s: configuration refused\n",
				o.config_path ? o.config_path : "(defaults)");
			return 1;
		}
		printf("%s: configuration OK\n", o.config_path ? o.config_path : "(defaults)");
		return 0;
	}
	return master_run(&o, EASGATE_VERSION);
}
