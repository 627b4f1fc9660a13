/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * bpf-verify - what the running kernel's verifier says about each program of
 * the BPF objects given (build/bpf/NAME.bpf.o): loaded or refused, instructions
 * processed, states, and on refusal the verifier's last lines.
 *
 *   bpf-verify [-v] OBJ.bpf.o...
 *
 * One line per program, key=value:
 *   bpf-verify kernel=6.1.0-50-amd64 object=xdp_gate program=xdp_gate result=loaded
 *     insns_processed=1234 states=56 peak_states=40 verified_insns=1234
 * Exit status: 0 if every program loaded, 1 if one was refused, 2 on usage.
 * The kernel matrix (tests/kernel/) runs it in every guest; the numbers go in
 * the README. Maps are created unpinned (nothing is left behind) and the
 * programs are only loaded, never attached. -v prints the whole log of a
 * refused program. Needs the privileges of the loader (root).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define BV_LOG_SIZE (16u << 20)

static int bv_quiet(enum libbpf_print_level lvl, const char *fmt, va_list ap)
{
	return 0; /* the per-program logs below say what matters */
}

/* The value after `key` in the verifier's statistics line, or -1. */
static long bv_stat(const char *log, const char *key)
{
	const char *p = strstr(log, key);

	return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* The last n lines of log, each indented, to stdout. */
static void bv_tail(const char *log, int n)
{
	const char *end = log + strlen(log), *p = end;

	while (p > log && n >= 0)
		if (*--p == '\n')
			n--;
	if (p > log)
		p++;
	for (const char *q = p; q < end;) {
		const char *nl = memchr(q, '\n', (size_t)(end - q));
		int len = nl ? (int)(nl - q) : (int)(end - q);

		printf("    | %.*s\n", len, q);
		q += len + 1;
	}
}

/*
 * Load only program `prog` of the object at path, with the verifier's log at
 * `level` into log. Returns the loaded object (close it) or NULL, *err set.
 */
static struct bpf_object *bv_load_one(const char *path, const char *prog, __u32 level, char *log,
				      int *err)
{
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	struct bpf_program *q;
	struct bpf_map *m;

	if (!obj) {
		*err = -errno;
		return NULL;
	}
	bpf_object__for_each_map(m, obj) bpf_map__set_pin_path(m, NULL);
	bpf_object__for_each_program(q, obj)
	{
		int me = !strcmp(bpf_program__name(q), prog);

		bpf_program__set_autoload(q, me);
		if (me) {
			log[0] = 0;
			bpf_program__set_log_buf(q, log, BV_LOG_SIZE);
			bpf_program__set_log_level(q, level);
		}
	}
	*err = bpf_object__load(obj);
	return obj;
}

static int bv_object(const char *path, const char *kernel, int verbose, char *log)
{
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	struct bpf_program *p;
	const char *name;
	int err, bad = 0;

	if (!obj) {
		printf("bpf-verify kernel=%s object=%s result=unreadable error=\"%s\"\n", kernel,
		       path, strerror(errno));
		return 1;
	}
	name = bpf_object__name(obj);
	/* One program at a time, so each gets its own log and a refusal does
	 * not hide how the others fare. Statistics only (level 4): a full trace
	 * of a large program can overflow any buffer, which fails the load. */
	bpf_object__for_each_program(p, obj)
	{
		struct bpf_object *one = bv_load_one(path, bpf_program__name(p), 4, log, &err);
		struct bpf_program *q =
		    one ? bpf_object__find_program_by_name(one, bpf_program__name(p)) : NULL;

		if (!err && q) {
			struct bpf_prog_info info;
			__u32 len = sizeof(info);

			memset(&info, 0, sizeof(info));
			bpf_obj_get_info_by_fd(bpf_program__fd(q), &info, &len);
			printf("bpf-verify kernel=%s object=%s program=%s result=loaded "
			       "insns_processed=%ld states=%ld peak_states=%ld verified_insns=%u\n",
			       kernel, name, bpf_program__name(p), bv_stat(log, "processed "),
			       bv_stat(log, "total_states "), bv_stat(log, "peak_states "),
			       info.verified_insns);
		} else {
			bad = 1;
			printf(
			    "bpf-verify kernel=%s object=%s program=%s result=refused error=\"%s\" "
			    "insns_processed=%ld\n",
			    kernel, name, bpf_program__name(p), strerror(-err),
			    bv_stat(log, "processed "));
			/* Again with the trace, for the instruction it stopped at. */
			bpf_object__close(one);
			one = bv_load_one(path, bpf_program__name(p), 1, log, &err);
			bv_tail(log, verbose ? 1 << 30 : 12);
		}
		bpf_object__close(one);
	}
	bpf_object__close(obj);
	return bad;
}

int main(int argc, char **argv)
{
	struct utsname u;
	int verbose = 0, bad = 0, i = 1;
	char *log;

	if (argc > 1 && !strcmp(argv[1], "-v")) {
		verbose = 1;
		i++;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: bpf-verify [-v] OBJ.bpf.o...\n");
		return 2;
	}
	log = malloc(BV_LOG_SIZE);
	if (!log || uname(&u) < 0)
		return 2;
	libbpf_set_print(bv_quiet);
	for (; i < argc; i++)
		bad |= bv_object(argv[i], u.release, verbose, log);
	free(log);
	return bad;
}
