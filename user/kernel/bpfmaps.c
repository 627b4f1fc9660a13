/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * bpfmaps.c - skeleton load, map pinning and reuse, XDP link pinning,
 * SK_REUSEPORT attachment and map writes. See bpfmaps.h for the contracts.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stddef.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpfmaps.h"
#include "kfeat.h"
#include "log.h"
#include "xdp_gate.skel.h"
#include "reuseport.skel.h"

#define BPFMAPS_MAX_LINKS  16
#define BPFMAPS_BPFFS_ROOT "/sys/fs/bpf"
#define BPFMAPS_GC_BATCH   256

/* An mmap'd BPF_F_MMAPABLE array: element i is at base + i * stride. */
struct bpfmaps_mm {
	uint8_t *base; /* NULL if not mapped */
	size_t len;
	size_t stride; /* value size rounded up to 8, as the kernel lays it out */
};

struct bpfmaps {
	struct xdp_gate_bpf *xdp;     /* owns the XDP program and the gate maps */
	struct reuseport_bpf *rp;     /* owns the SK_REUSEPORT program, workers, reuse_socks */
	char *pin_dir;		      /* owned copy; NULL = nothing pinned */
	int maps_reused;	      /* maps taken over from existing pins */
	int ncpu;		      /* possible CPUs, for per-CPU lookups */
	struct eg_stat_sum *percpu;   /* owned scratch, ncpu entries */
	struct bpfmaps_mm backends;   /* struct eg_backend[EG_MAX_BACKENDS] */
	struct bpfmaps_mm maglev;     /* __u32[EG_MAGLEV_SIZE] */
	struct bpfmaps_mm workers;    /* struct eg_worker[EG_MAX_WORKERS] */
	int links[BPFMAPS_MAX_LINKS]; /* unpinned XDP link fds: closing detaches */
	int nlinks;
	unsigned int flags; /* enum bpfmaps_flags of the open */
	char why[2][200];   /* per enum bpfmaps_prog: why it is not loaded */
	int native_err;	    /* bpfmaps_xdp_native_err() */
};

/* ---- logging ----------------------------------------------------------------- */

/*
 * What the last failed load said, for bpfmaps_why(): the verifier's error
 * is the line before its "processed N insns" summary; a failure before the
 * verifier (a relocation, a missing kernel type) is libbpf's first warning.
 */
static struct {
	int quiet;	/* best effort: warnings go to debug (the caller logs the why) */
	char prev[200]; /* the previous line */
	char verifier[200];
	char libbpf[200];
} bpfmaps_capture;

static void bpfmaps_capture_line(const char *line, enum libbpf_print_level lvl)
{
	if (!strncmp(line, "processed ", 10) && !bpfmaps_capture.verifier[0])
		snprintf(bpfmaps_capture.verifier, sizeof(bpfmaps_capture.verifier), "%s",
			 bpfmaps_capture.prev);
	else if (lvl == LIBBPF_WARN && !strncmp(line, "libbpf: ", 8) && !bpfmaps_capture.libbpf[0])
		snprintf(bpfmaps_capture.libbpf, sizeof(bpfmaps_capture.libbpf), "%s", line + 8);
	snprintf(bpfmaps_capture.prev, sizeof(bpfmaps_capture.prev), "%s", line);
}

/* libbpf -> log.h, one log line per line of libbpf output (verifier logs are long). */
__attribute__((format(printf, 2, 0))) static int bpfmaps_libbpf_print(enum libbpf_print_level lvl,
								      const char *fmt, va_list ap)
{
	enum log_level l = lvl == LIBBPF_WARN && !bpfmaps_capture.quiet ? LOG_WARN : LOG_DEBUG;
	char *msg = NULL, *save = NULL, q[1024];

	if (vasprintf(&msg, fmt, ap) < 0)
		return 0;
	for (char *line = strtok_r(msg, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		bpfmaps_capture_line(line, lvl);
		if (l <= log_get_level())
			log_msg(l, "event=libbpf msg=%s",
				log_quote(q, sizeof(q), line, (size_t)-1));
	}
	free(msg);
	return 0;
}

static void bpfmaps_capture_reset(void)
{
	bpfmaps_capture.prev[0] = bpfmaps_capture.verifier[0] = bpfmaps_capture.libbpf[0] = 0;
}

/* The reason a load failed with err, into out. */
static void bpfmaps_capture_why(char *out, size_t n, int err)
{
	if (bpfmaps_capture.verifier[0])
		snprintf(out, n, "verifier: %s", bpfmaps_capture.verifier);
	else if (bpfmaps_capture.libbpf[0])
		snprintf(out, n, "%s", bpfmaps_capture.libbpf);
	else
		snprintf(out, n, "%s", strerror(-err));
}

/* ---- small helpers ------------------------------------------------------------- */

uint64_t eg_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void bpfmaps_addr16(uint8_t out[16], __u16 *port, const struct sockaddr *sa)
{
	memset(out, 0, 16);
	*port = 0;
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		out[10] = out[11] = 0xff;
		memcpy(out + 12, &in->sin_addr, 4);
		*port = in->sin_port;
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		memcpy(out, &in6->sin6_addr, 16);
		*port = in6->sin6_port;
	}
}

void eg_flow_key_from_addrs(struct eg_flow_key *k, const struct sockaddr *peer,
			    const struct sockaddr *local)
{
	memset(k, 0, sizeof(*k));
	bpfmaps_addr16(k->saddr, &k->sport, peer);
	bpfmaps_addr16(k->daddr, &k->dport, local);
}

static int bpfmaps_expired(uint64_t expires_ns, uint64_t now_ns)
{
	return expires_ns && now_ns >= expires_ns;
}

static struct bpf_map *bpfmaps_find_map(const struct bpfmaps *g, const char *name)
{
	struct bpf_map *m = g->xdp ? bpf_object__find_map_by_name(g->xdp->obj, name) : NULL;

	return m || !g->rp ? m : bpf_object__find_map_by_name(g->rp->obj, name);
}

int bpfmaps_map_fd(const struct bpfmaps *g, const char *name)
{
	struct bpf_map *m = g && name ? bpfmaps_find_map(g, name) : NULL;

	return m ? bpf_map__fd(m) : -ENOENT;
}

int bpfmaps_prog_fd(const struct bpfmaps *g, enum bpfmaps_prog p)
{
	if (!g)
		return -EINVAL;
	if (p == BPFMAPS_PROG_XDP)
		return g->xdp ? bpf_program__fd(g->xdp->progs.xdp_gate) : -EOPNOTSUPP;
	if (p == BPFMAPS_PROG_REUSEPORT)
		return g->rp ? bpf_program__fd(g->rp->progs.eg_reuseport) : -EOPNOTSUPP;
	return -EINVAL;
}

int bpfmaps_maps_reused(const struct bpfmaps *g)
{
	return g ? g->maps_reused : 0;
}

int bpfmaps_loaded(const struct bpfmaps *g, enum bpfmaps_prog p)
{
	if (!g)
		return 0;
	return p == BPFMAPS_PROG_XDP ? !!g->xdp : p == BPFMAPS_PROG_REUSEPORT ? !!g->rp : 0;
}

const char *bpfmaps_why(const struct bpfmaps *g, enum bpfmaps_prog p)
{
	if (!g || (p != BPFMAPS_PROG_XDP && p != BPFMAPS_PROG_REUSEPORT))
		return "";
	return g->why[p];
}

int bpfmaps_xdp_native_err(const struct bpfmaps *g)
{
	return g ? g->native_err : 0;
}

/* ---- bpffs and pins ------------------------------------------------------------ */

static int bpfmaps_is_bpffs(const char *path)
{
	struct statfs st;

	return statfs(path, &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

/* pin_dir must end up on a bpffs; mount one on /sys/fs/bpf if that is where it goes. */
static int bpfmaps_ensure_bpffs(const char *pin_dir)
{
	size_t rl = strlen(BPFMAPS_BPFFS_ROOT);

	if (strncmp(pin_dir, BPFMAPS_BPFFS_ROOT "/", rl + 1) != 0 || pin_dir[rl + 1] == '\0') {
		log_err("event=bpf_open reason=pin_dir_not_under_bpffs pin_dir=%s", pin_dir);
		return -EINVAL;
	}
	if (bpfmaps_is_bpffs(BPFMAPS_BPFFS_ROOT))
		return 0;
	if (mount("bpf", BPFMAPS_BPFFS_ROOT, "bpf", 0, NULL) != 0) {
		int err = -errno;

		log_err("event=bpffs_mount path=%s err=%s", BPFMAPS_BPFFS_ROOT, strerror(-err));
		return err;
	}
	log_info("event=bpffs_mount path=%s", BPFMAPS_BPFFS_ROOT);
	return 0;
}

static int bpfmaps_prepare_pin_dir(const char *pin_dir)
{
	int err = bpfmaps_ensure_bpffs(pin_dir);

	if (err)
		return err;
	if (mkdir(pin_dir, 0700) != 0 && errno != EEXIST) {
		err = -errno;
		log_err("event=bpf_open reason=mkdir pin_dir=%s err=%s", pin_dir, strerror(-err));
		return err;
	}
	return 0;
}

/*
 * Decide about an existing pin for map m before load. Returns 1 if libbpf
 * will reuse it, 0 if there is none (or an incompatible one was removed, so
 * a fresh map gets pinned), -errno on failure.
 */
static int bpfmaps_check_pin(const struct bpf_map *m)
{
	const char *path = bpf_map__pin_path(m);
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	int fd, err;

	if (!path)
		return 0;
	fd = bpf_obj_get(path);
	if (fd < 0)
		return fd == -ENOENT ? 0 : fd;
	memset(&info, 0, sizeof(info));
	err = bpf_obj_get_info_by_fd(fd, &info, &len);
	close(fd);
	if (err)
		return err;
	if (info.type == (__u32)bpf_map__type(m) && info.key_size == bpf_map__key_size(m) &&
	    info.value_size == bpf_map__value_size(m) &&
	    info.max_entries == bpf_map__max_entries(m) && info.map_flags == bpf_map__map_flags(m))
		return 1;
	log_warn("event=bpf_pin_incompatible path=%s action=replace entries=lost", path);
	return unlink(path) == 0 ? 0 : -errno;
}

/* Before load: count reusable pins, or disable pinning entirely (pin_dir NULL). */
static int bpfmaps_setup_pins(struct bpfmaps *g, struct bpf_object *obj)
{
	struct bpf_map *m;
	int r;

	bpf_object__for_each_map(m, obj)
	{
		if (!g->pin_dir) {
			/* LIBBPF_PIN_BY_NAME without pin_root_path means /sys/fs/bpf. */
			r = bpf_map__set_pin_path(m, NULL);
		} else {
			r = bpfmaps_check_pin(m);
			g->maps_reused += r > 0;
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- open / close -------------------------------------------------------------- */

static int bpfmaps_mmap(struct bpfmaps_mm *mm, const struct bpf_map *m)
{
	long page = sysconf(_SC_PAGESIZE);

	mm->stride = ((size_t)bpf_map__value_size(m) + 7) & ~(size_t)7;
	mm->len = mm->stride * bpf_map__max_entries(m);
	mm->len = (mm->len + (size_t)page - 1) & ~((size_t)page - 1);
	mm->base = mmap(NULL, mm->len, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(m), 0);
	if (mm->base == MAP_FAILED) {
		mm->base = NULL;
		return -errno;
	}
	return 0;
}

static void bpfmaps_munmap(struct bpfmaps_mm *mm)
{
	if (mm->base)
		munmap(mm->base, mm->len);
	mm->base = NULL;
}

static int bpfmaps_load_xdp(struct bpfmaps *g, const struct bpf_object_open_opts *oo,
			    unsigned int flags)
{
	int err;

	g->xdp = xdp_gate_bpf__open_opts(oo);
	if (!g->xdp)
		return -errno;
	g->xdp->rodata->eg_feat_rst = !(flags & BPFMAPS_F_NO_RST);
	g->xdp->rodata->eg_feat_src_block = !(flags & BPFMAPS_F_NO_SRC_BLOCK);
	g->xdp->rodata->eg_feat_syn_rate = !(flags & BPFMAPS_F_NO_SYN_RATE);
	g->xdp->rodata->eg_feat_src_cap = !(flags & BPFMAPS_F_NO_SRC_CAP);
	err = bpfmaps_setup_pins(g, g->xdp->obj);
	if (!err)
		err = kfeat_forced_off("xdp") ? -EOPNOTSUPP : xdp_gate_bpf__load(g->xdp);
	if (!err)
		err = bpfmaps_mmap(&g->backends, g->xdp->maps.backends);
	if (!err)
		err = bpfmaps_mmap(&g->maglev, g->xdp->maps.maglev_table);
	return err;
}

static int bpfmaps_load_reuseport(struct bpfmaps *g, const struct bpf_object_open_opts *oo)
{
	int err;

	g->rp = reuseport_bpf__open_opts(oo);
	if (!g->rp)
		return -errno;
	err = bpfmaps_setup_pins(g, g->rp->obj);
	if (!err)
		err = kfeat_forced_off("reuseport") ? -EOPNOTSUPP : reuseport_bpf__load(g->rp);
	if (!err)
		err = bpfmaps_mmap(&g->workers, g->rp->maps.workers);
	return err;
}

/* Best effort: leave program p out, keeping why. */
static void bpfmaps_refused(struct bpfmaps *g, enum bpfmaps_prog p, int err);

/*
 * After loading program p with result err: what the open returns. In
 * best-effort mode a kernel's refusal leaves p out (0); missing privileges
 * are not the kernel's doing and fail the open (so the daemon can say
 * what to fix).
 */
static int bpfmaps_settle(struct bpfmaps *g, enum bpfmaps_prog p, int err)
{
	if (!err || !(g->flags & BPFMAPS_F_BEST_EFFORT) || err == -EPERM || err == -EACCES)
		return err;
	bpfmaps_refused(g, p, err);
	return 0;
}

static void bpfmaps_refused(struct bpfmaps *g, enum bpfmaps_prog p, int err)
{
	char *why = g->why[p];

	if (kfeat_forced_off(p == BPFMAPS_PROG_XDP ? "xdp" : "reuseport"))
		snprintf(why, sizeof(g->why[p]), "%s", KFEAT_FORCED_WHY);
	else
		bpfmaps_capture_why(why, sizeof(g->why[p]), err);
	if (p == BPFMAPS_PROG_XDP) {
		bpfmaps_munmap(&g->backends);
		bpfmaps_munmap(&g->maglev);
		xdp_gate_bpf__destroy(g->xdp);
		g->xdp = NULL;
	} else {
		bpfmaps_munmap(&g->workers);
		reuseport_bpf__destroy(g->rp);
		g->rp = NULL;
	}
}

static int bpfmaps_load_all(struct bpfmaps *g, const struct bpfmaps_opts *o)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = o->pin_dir);
	int err;

	if (o->pin_dir) {
		g->pin_dir = strdup(o->pin_dir);
		if (!g->pin_dir)
			return -ENOMEM;
		err = bpfmaps_prepare_pin_dir(o->pin_dir);
		if (err)
			return err;
	}
	g->ncpu = libbpf_num_possible_cpus();
	if (g->ncpu <= 0)
		return g->ncpu < 0 ? g->ncpu : -EINVAL;
	g->percpu = calloc((size_t)g->ncpu, sizeof(*g->percpu));
	if (!g->percpu)
		return -ENOMEM;
	g->flags = o->flags;
	bpfmaps_capture.quiet = !!(o->flags & BPFMAPS_F_BEST_EFFORT);
	bpfmaps_capture_reset();
	err = bpfmaps_settle(g, BPFMAPS_PROG_XDP, bpfmaps_load_xdp(g, &oo, o->flags));
	if (!err) {
		bpfmaps_capture_reset();
		err = bpfmaps_settle(g, BPFMAPS_PROG_REUSEPORT, bpfmaps_load_reuseport(g, &oo));
	}
	bpfmaps_capture.quiet = 0;
	return err;
}

struct bpfmaps *bpfmaps_open_opts(const struct bpfmaps_opts *o, int *err)
{
	struct bpfmaps *g;
	char q[240];
	int e, dummy;

	if (!err)
		err = &dummy;
	libbpf_set_print(bpfmaps_libbpf_print);
	if (!o) {
		*err = -EINVAL;
		return NULL;
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		*err = -ENOMEM;
		return NULL;
	}
	e = bpfmaps_load_all(g, o);
	if (e) {
		log_err("event=bpf_open pin_dir=%s err=%s", o->pin_dir ? o->pin_dir : "-",
			strerror(-e));
		bpfmaps_close(g);
		*err = e;
		return NULL;
	}
	log_info("event=bpf_open pin_dir=%s maps_reused=%d", o->pin_dir ? o->pin_dir : "-",
		 g->maps_reused);
	for (int p = 0; p < 2; p++)
		if (g->why[p][0]) /* best effort: the caller says what that means */
			log_info("event=bpf_program_refused program=%s why=%s",
				 p == BPFMAPS_PROG_XDP ? "xdp_gate" : "reuseport",
				 log_quote(q, sizeof(q), g->why[p], (size_t)-1));
	*err = 0;
	return g;
}

struct bpfmaps *bpfmaps_open(const char *pin_dir, int *err)
{
	struct bpfmaps_opts o = {.pin_dir = pin_dir};

	return bpfmaps_open_opts(&o, err);
}

void bpfmaps_close(struct bpfmaps *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->nlinks; i++)
		close(g->links[i]);
	bpfmaps_munmap(&g->backends);
	bpfmaps_munmap(&g->maglev);
	bpfmaps_munmap(&g->workers);
	reuseport_bpf__destroy(g->rp);
	xdp_gate_bpf__destroy(g->xdp);
	free(g->percpu);
	free(g->pin_dir);
	free(g);
}

/* ---- XDP attachment ------------------------------------------------------------ */

static const char *bpfmaps_xdp_mode_name(int ifindex)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);

	if (bpf_xdp_query(ifindex, 0, &q) != 0)
		return "unknown";
	switch (q.attach_mode) {
	case XDP_ATTACHED_DRV:
		return "native";
	case XDP_ATTACHED_SKB:
		return "generic";
	case XDP_ATTACHED_HW:
		return "offload";
	default:
		return "none";
	}
}

static int bpfmaps_mode_ok(int ifindex, int mode)
{
	const char *cur = bpfmaps_xdp_mode_name(ifindex);

	if (mode == BPFMAPS_XDP_NATIVE)
		return strcmp(cur, "native") == 0;
	if (mode == BPFMAPS_XDP_GENERIC)
		return strcmp(cur, "generic") == 0;
	return 1;
}

/*
 * A previous daemon's pinned link: switch it to prog_fd if it still serves
 * ifindex in an acceptable mode (returns 1), otherwise detach and unpin it
 * (returns 0; *prev_mode = the mode it had if it was on this interface, so
 * the caller can restore it, else -1). -errno on failure.
 */
static int bpfmaps_reuse_link(const char *path, int ifindex, int prog_fd, int mode, int *prev_mode)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);
	int fd = bpf_obj_get(path), err, here;

	*prev_mode = -1;
	if (fd < 0)
		return fd == -ENOENT ? 0 : fd;
	memset(&info, 0, sizeof(info));
	err = bpf_obj_get_info_by_fd(fd, &info, &len);
	here = !err && info.type == BPF_LINK_TYPE_XDP && (int)info.xdp.ifindex == ifindex;
	if (here && bpfmaps_mode_ok(ifindex, mode)) {
		err = bpf_link_update(fd, prog_fd, NULL);
		close(fd);
		if (err)
			log_err("event=xdp_link_update path=%s err=%s", path, strerror(-err));
		return err ? err : 1;
	}
	if (here)
		*prev_mode = strcmp(bpfmaps_xdp_mode_name(ifindex), "native") == 0
				 ? BPFMAPS_XDP_NATIVE
				 : BPFMAPS_XDP_GENERIC;
	log_info("event=xdp_link_stale path=%s reason=%s action=replace", path,
		 here ? "mode" : "interface");
	bpf_link_detach(fd);
	close(fd);
	return unlink(path) == 0 || errno == ENOENT ? 0 : -errno;
}

static int bpfmaps_link_create(struct bpfmaps *g, int prog_fd, int ifindex, int mode,
			       const char *ifname, const char **mode_out)
{
	LIBBPF_OPTS(bpf_link_create_opts, lo);
	int fd;

	if (mode != BPFMAPS_XDP_GENERIC) {
		lo.flags = XDP_FLAGS_DRV_MODE;
		fd = kfeat_forced_off("xdp_native")
			 ? -EOPNOTSUPP
			 : bpf_link_create(prog_fd, ifindex, BPF_XDP, &lo);
		g->native_err = fd < 0 ? fd : 0;
		if (fd >= 0) {
			*mode_out = "native";
			return fd;
		}
		if (mode == BPFMAPS_XDP_NATIVE || fd == -EBUSY || fd == -EEXIST)
			return fd;
		log_info("event=xdp_native_unavailable ifname=%s err=%s fallback=generic", ifname,
			 strerror(-fd));
	}
	lo.flags = XDP_FLAGS_SKB_MODE;
	fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &lo);
	if (fd >= 0)
		*mode_out = "generic";
	return fd;
}

/* Keep an unpinned link's fd (closing it would detach the program). */
static int bpfmaps_keep_link(struct bpfmaps *g, int fd)
{
	if (g->nlinks == BPFMAPS_MAX_LINKS) {
		close(fd);
		return -ENOSPC;
	}
	g->links[g->nlinks++] = fd;
	return 0;
}

static int bpfmaps_pin_link(const char *path, int fd)
{
	int err = bpf_obj_pin(fd, path);

	close(fd); /* the pin holds the link from now on; on failure this detaches */
	if (err)
		log_err("event=xdp_link_pin path=%s err=%s", path, strerror(-err));
	return err;
}

/* A new link in `mode`, pinned at path (or kept by g without a pin_dir). */
static int bpfmaps_link_new(struct bpfmaps *g, const char *path, int prog_fd, int ifindex, int mode,
			    const char *ifname, const char **mode_out)
{
	int fd = bpfmaps_link_create(g, prog_fd, ifindex, mode, ifname, mode_out);

	if (fd < 0) {
		log_err("event=xdp_attach ifname=%s err=%s", ifname, strerror(-fd));
		return fd;
	}
	return g->pin_dir ? bpfmaps_pin_link(path, fd) : bpfmaps_keep_link(g, fd);
}

int bpfmaps_attach_xdp(struct bpfmaps *g, const char *ifname, int mode, const char **mode_out)
{
	const char *dummy;
	char path[PATH_MAX] = "";
	int ifindex, prog_fd, r, prev = -1;

	if (!mode_out)
		mode_out = &dummy;
	if (!g || !ifname || mode < BPFMAPS_XDP_AUTO || mode > BPFMAPS_XDP_GENERIC)
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	g->native_err = 0;
	ifindex = (int)if_nametoindex(ifname);
	if (!ifindex)
		return -errno;
	prog_fd = bpf_program__fd(g->xdp->progs.xdp_gate);
	if (g->pin_dir) {
		if (snprintf(path, sizeof(path), "%s/link_xdp_%s", g->pin_dir, ifname) >=
		    (int)sizeof(path))
			return -ENAMETOOLONG;
		r = bpfmaps_reuse_link(path, ifindex, prog_fd, mode, &prev);
		if (r != 0) {
			if (r > 0) {
				*mode_out = bpfmaps_xdp_mode_name(ifindex);
				log_info("event=xdp_attach ifname=%s mode=%s link=updated", ifname,
					 *mode_out);
			}
			return r < 0 ? r : 0;
		}
	}
	r = bpfmaps_link_new(g, path, prog_fd, ifindex, mode, ifname, mode_out);
	if (r && prev >= 0) {
		/* The requested mode failed: keep enforcing in the previous one. */
		log_warn("event=xdp_mode_switch ifname=%s err=%s action=restore_previous", ifname,
			 strerror(-r));
		if (bpfmaps_link_new(g, path, prog_fd, ifindex, prev, ifname, mode_out) == 0)
			return r;
	}
	if (!r)
		log_info("event=xdp_attach ifname=%s mode=%s link=%s", ifname, *mode_out,
			 g->pin_dir ? "pinned" : "process");
	return r;
}

static int bpfmaps_unpin_entry(const char *dir, const char *name)
{
	char path[PATH_MAX];
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	if (strncmp(name, "link_", 5) == 0) {
		fd = bpf_obj_get(path);
		if (fd >= 0) {
			bpf_link_detach(fd); /* now, even if some process still holds an fd */
			close(fd);
		}
	}
	return unlink(path) == 0 ? 0 : -errno;
}

int bpfmaps_detach_all(const char *pin_dir)
{
	struct dirent *de;
	DIR *d;
	int err = 0, r;

	if (!pin_dir)
		return -EINVAL;
	d = opendir(pin_dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		r = bpfmaps_unpin_entry(pin_dir, de->d_name);
		if (r && !err)
			err = r;
	}
	closedir(d);
	if (rmdir(pin_dir) != 0 && !err)
		err = -errno;
	if (err)
		log_err("event=bpf_detach_all pin_dir=%s err=%s", pin_dir, strerror(-err));
	else
		log_info("event=bpf_detach_all pin_dir=%s", pin_dir);
	return err;
}

/* ---- verdict maps ----------------------------------------------------------------- */

int bpfmaps_set_cfg(struct bpfmaps *g, const struct eg_xdp_cfg *c)
{
	__u32 zero = 0;

	if (!g || !c || (c->syn_rate && !c->syn_burst))
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	return bpf_map_update_elem(bpf_map__fd(g->xdp->maps.xdp_cfg), &zero, c, BPF_ANY);
}

int bpfmaps_flow_set(struct bpfmaps *g, const struct eg_flow_key *k,
		     const struct eg_flow_verdict *v)
{
	struct eg_flow_key key;
	struct eg_flow_verdict val;

	if (!g || !k || !v || v->action > EG_ACT_RST || v->reason >= EG_REASON__MAX)
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	key = *k;
	key.pad = 0;
	val = *v;
	val.pad0 = 0;
	return bpf_map_update_elem(bpf_map__fd(g->xdp->maps.flow_verdict), &key, &val, BPF_ANY);
}

int bpfmaps_flow_del(struct bpfmaps *g, const struct eg_flow_key *k)
{
	struct eg_flow_key key;

	if (!g || !k)
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	key = *k;
	key.pad = 0;
	return bpf_map_delete_elem(bpf_map__fd(g->xdp->maps.flow_verdict), &key);
}

int bpfmaps_flow_get(struct bpfmaps *g, const struct eg_flow_key *k, struct eg_flow_verdict *v)
{
	struct eg_flow_key key;

	if (!g || !k || !v)
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	key = *k;
	key.pad = 0;
	return bpf_map_lookup_elem(bpf_map__fd(g->xdp->maps.flow_verdict), &key, v);
}

/* Digits only, value <= max. */
static int bpfmaps_parse_len(const char *s, unsigned int max, unsigned int *out)
{
	unsigned int v = 0;

	if (!*s || strlen(s) > 3)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned int)(*s - '0');
	}
	if (v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int bpfmaps_parse_cidr(const char *cidr, struct eg_lpm_key *k)
{
	char buf[INET6_ADDRSTRLEN + 8];
	char *slash;
	unsigned int len, bits;

	if (!cidr || !k || strlen(cidr) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, cidr);
	slash = strchr(buf, '/');
	if (slash)
		*slash++ = '\0';
	memset(k, 0, sizeof(*k));
	if (inet_pton(AF_INET, buf, k->addr + 12) == 1) {
		k->addr[10] = k->addr[11] = 0xff;
		bits = 32;
	} else if (inet_pton(AF_INET6, buf, k->addr) == 1) {
		bits = 128;
	} else {
		return -EINVAL;
	}
	len = bits;
	if (slash && bpfmaps_parse_len(slash, bits, &len))
		return -EINVAL;
	k->prefixlen = 128 - bits + len;
	for (unsigned int i = k->prefixlen; i < 128; i++) /* clear host bits */
		k->addr[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
	return 0;
}

int bpfmaps_prefix_set(struct bpfmaps *g, const char *cidr, const struct eg_lpm_val *v)
{
	struct eg_lpm_key key;
	struct eg_lpm_val val;

	if (!g || !v || v->action > EG_ACT_RST || v->reason >= EG_REASON__MAX ||
	    bpfmaps_parse_cidr(cidr, &key))
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	val = *v;
	val.pad0 = 0;
	val.pad1 = 0;
	return bpf_map_update_elem(bpf_map__fd(g->xdp->maps.src_block), &key, &val, BPF_ANY);
}

int bpfmaps_prefix_del(struct bpfmaps *g, const char *cidr)
{
	struct eg_lpm_key key;

	if (!g || bpfmaps_parse_cidr(cidr, &key))
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	return bpf_map_delete_elem(bpf_map__fd(g->xdp->maps.src_block), &key);
}

/* ---- sources at their connection cap ------------------------------------------------ */

int bpfmaps_src_cap_set(struct bpfmaps *g, const uint8_t src[16], const struct eg_src_cap *v)
{
	struct eg_rate_key key;
	struct eg_src_cap val;

	if (!g || !src || !v || (v->action != EG_ACT_DROP && v->action != EG_ACT_RST))
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	memcpy(key.addr, src, sizeof(key.addr));
	memset(&val, 0, sizeof(val));
	val.action = v->action;
	val.conns = v->conns;
	val.cap = v->cap;
	val.expires_ns = v->expires_ns;
	return bpf_map_update_elem(bpf_map__fd(g->xdp->maps.src_cap), &key, &val, BPF_ANY);
}

int bpfmaps_src_cap_del(struct bpfmaps *g, const uint8_t src[16])
{
	struct eg_rate_key key;

	if (!g || !src)
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	memcpy(key.addr, src, sizeof(key.addr));
	return bpf_map_delete_elem(bpf_map__fd(g->xdp->maps.src_cap), &key);
}

int bpfmaps_src_cap_clear(struct bpfmaps *g)
{
	struct eg_rate_key key, next;
	int fd, err, n = 0;

	if (!g)
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	fd = bpf_map__fd(g->xdp->maps.src_cap);
	/* Always delete the first key: deleting never disturbs the walk. */
	while ((err = bpf_map_get_next_key(fd, NULL, &key)) == 0) {
		if (bpf_map_delete_elem(fd, &key) == 0)
			n++;
		else if (bpf_map_get_next_key(fd, &key, &next) != 0)
			break;
	}
	return n;
}

int bpfmaps_src_cap_each(struct bpfmaps *g, bpfmaps_src_cap_fn fn, void *arg)
{
	struct eg_rate_key key, next;
	struct eg_src_cap val;
	int fd, err, nerr, n = 0;

	if (!g || !fn)
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	fd = bpf_map__fd(g->xdp->maps.src_cap);
	err = bpf_map_get_next_key(fd, NULL, &key);
	while (!err) {
		nerr = bpf_map_get_next_key(fd, &key, &next);
		/* BPF_EXIST: an entry a worker deleted meanwhile (its source fell
		 * below the cap) stays deleted. */
		if (bpf_map_lookup_elem(fd, &key, &val) == 0 && fn(arg, key.addr, &val) &&
		    bpf_map_update_elem(fd, &key, &val, BPF_EXIST) == 0)
			n++;
		key = next;
		err = nerr;
	}
	return err == -ENOENT ? n : err;
}

/* ---- garbage collection -------------------------------------------------------------- */

/*
 * Generic sweep with get_next_key (LPM tries have no batch ops). The next
 * key is fetched before the current one is deleted, so deletion never
 * restarts the walk. Values must be <= 64 bytes with expires_ns at exp_off.
 */
static int bpfmaps_gc_iter(int fd, size_t ksz, size_t exp_off, uint64_t now)
{
	unsigned char key[64], next[64], val[64];
	uint64_t exp;
	int err, nerr, n = 0;

	err = bpf_map_get_next_key(fd, NULL, key);
	while (!err) {
		nerr = bpf_map_get_next_key(fd, key, next);
		if (bpf_map_lookup_elem(fd, key, val) == 0) {
			memcpy(&exp, val + exp_off, sizeof(exp));
			if (bpfmaps_expired(exp, now) && bpf_map_delete_elem(fd, key) == 0)
				n++;
		}
		memcpy(key, next, ksz);
		err = nerr;
	}
	return err == -ENOENT ? n : err;
}

/* flow_verdict sweep with batched lookups; falls back to the generic walk. */
static int bpfmaps_gc_flows(int fd, uint64_t now)
{
	struct eg_flow_key *keys = calloc(BPFMAPS_GC_BATCH, sizeof(*keys));
	struct eg_flow_verdict *vals = calloc(BPFMAPS_GC_BATCH, sizeof(*vals));
	__u32 in = 0, out = 0, count;
	int err = 0, n = 0, first = 1;

	while (keys && vals && err != -ENOENT) {
		count = BPFMAPS_GC_BATCH;
		err = bpf_map_lookup_batch(fd, first ? NULL : &in, &out, keys, vals, &count, NULL);
		if (err && err != -ENOENT)
			break;
		for (__u32 i = 0; i < count; i++)
			if (bpfmaps_expired(vals[i].expires_ns, now) &&
			    bpf_map_delete_elem(fd, &keys[i]) == 0)
				n++;
		in = out;
		first = 0;
	}
	free(keys);
	free(vals);
	if (err == -ENOENT)
		return n;
	return n + bpfmaps_gc_iter(fd, sizeof(struct eg_flow_key),
				   offsetof(struct eg_flow_verdict, expires_ns), now);
}

int bpfmaps_gc(struct bpfmaps *g, uint64_t now_ns)
{
	int nf, np, nc;

	if (!g)
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	nf = bpfmaps_gc_flows(bpf_map__fd(g->xdp->maps.flow_verdict), now_ns);
	if (nf < 0)
		return nf;
	np = bpfmaps_gc_iter(bpf_map__fd(g->xdp->maps.src_block), sizeof(struct eg_lpm_key),
			     offsetof(struct eg_lpm_val, expires_ns), now_ns);
	if (np < 0)
		return np;
	nc = bpfmaps_gc_iter(bpf_map__fd(g->xdp->maps.src_cap), sizeof(struct eg_rate_key),
			     offsetof(struct eg_src_cap, expires_ns), now_ns);
	if (nc < 0)
		return nc;
	if (nf + np + nc)
		log_debug("event=bpf_gc flows=%d prefixes=%d capped_sources=%d", nf, np, nc);
	return nf + np + nc;
}

/* ---- stats ------------------------------------------------------------------------- */

int bpfmaps_stats(struct bpfmaps *g, struct eg_stat_sum out[EG_STAT__MAX])
{
	int fd, err;

	if (!g || !out)
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	fd = bpf_map__fd(g->xdp->maps.xdp_stats);
	for (__u32 i = 0; i < EG_STAT__MAX; i++) {
		err = bpf_map_lookup_elem(fd, &i, g->percpu);
		if (err)
			return err;
		out[i].packets = out[i].bytes = 0;
		for (int c = 0; c < g->ncpu; c++) {
			out[i].packets += g->percpu[c].packets;
			out[i].bytes += g->percpu[c].bytes;
		}
	}
	return 0;
}

/* ---- steering mirrors ------------------------------------------------------------------ */

int bpfmaps_mirror_maglev(struct bpfmaps *g, const uint32_t *table, uint32_t n)
{
	if (!g || (!table && n) || n > EG_MAGLEV_SIZE || !g->maglev.base)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++)
		memcpy(g->maglev.base + (size_t)i * g->maglev.stride, &table[i], sizeof(*table));
	return 0;
}

static struct eg_backend *bpfmaps_backend(struct bpfmaps *g, uint32_t idx)
{
	if (!g || idx >= EG_MAX_BACKENDS || !g->backends.base)
		return NULL;
	return (struct eg_backend *)(void *)(g->backends.base + (size_t)idx * g->backends.stride);
}

int bpfmaps_mirror_backend(struct bpfmaps *g, uint32_t idx, const struct eg_backend *b)
{
	struct eg_backend *m = bpfmaps_backend(g, idx);

	if (!m || !b)
		return -EINVAL;
	/* Field by field: conns belongs to the workers' atomic adds. */
	memcpy(m->addr, b->addr, sizeof(m->addr));
	m->port = b->port;
	m->up = b->up;
	m->pad0 = 0;
	m->weight = b->weight;
	memcpy(m->name, b->name, sizeof(m->name));
	m->name[sizeof(m->name) - 1] = '\0';
	return 0;
}

int bpfmaps_backend_conns_add(struct bpfmaps *g, uint32_t idx, int64_t delta)
{
	struct eg_backend *m = bpfmaps_backend(g, idx);
	__u64 cur, next;

	if (!m)
		return -EINVAL;
	cur = __atomic_load_n(&m->conns, __ATOMIC_RELAXED);
	do {
		if (delta < 0 && (__u64)(-(delta + 1)) + 1 > cur)
			next = 0; /* a decrement for a connection counted before a reset */
		else
			next = cur + (__u64)delta;
	} while (!__atomic_compare_exchange_n(&m->conns, &cur, next, 0, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	return 0;
}

int bpfmaps_steer_set(struct bpfmaps *g, const struct eg_flow_key *k, const struct eg_conn_steer *s)
{
	struct eg_flow_key key;

	if (!g || !k || !s)
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	key = *k;
	key.pad = 0;
	return bpf_map_update_elem(bpf_map__fd(g->xdp->maps.conn_steer), &key, s, BPF_ANY);
}

int bpfmaps_steer_del(struct bpfmaps *g, const struct eg_flow_key *k)
{
	struct eg_flow_key key;

	if (!g || !k)
		return -EINVAL;
	if (!g->xdp)
		return -EOPNOTSUPP;
	key = *k;
	key.pad = 0;
	return bpf_map_delete_elem(bpf_map__fd(g->xdp->maps.conn_steer), &key);
}

/* ---- SO_REUSEPORT ------------------------------------------------------------------ */

int bpfmaps_reuseport_attach(struct bpfmaps *g, int listen_fd)
{
	int prog_fd;

	if (!g || listen_fd < 0)
		return -EINVAL;
	if (!g->rp)
		return -EOPNOTSUPP;
	prog_fd = bpf_program__fd(g->rp->progs.eg_reuseport);
	if (setsockopt(listen_fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog_fd,
		       sizeof(prog_fd)) != 0) {
		int err = -errno;

		log_err("event=reuseport_attach fd=%d err=%s", listen_fd, strerror(-err));
		return err;
	}
	return 0;
}

int bpfmaps_reuseport_groups(const struct bpfmaps *g)
{
	if (!g)
		return -EINVAL;
	if (!g->rp)
		return -EOPNOTSUPP;
	return (int)(bpf_map__max_entries(g->rp->maps.reuse_socks) / EG_MAX_WORKERS);
}

int bpfmaps_reuseport_register(struct bpfmaps *g, uint32_t group, uint32_t slot, int listen_fd)
{
	__u64 v = (__u64)listen_fd;
	__u32 key;
	int err;

	if (!g || slot >= EG_MAX_WORKERS || listen_fd < 0)
		return -EINVAL;
	if (!g->rp)
		return -EOPNOTSUPP;
	if (group >= (uint32_t)bpfmaps_reuseport_groups(g))
		return -EINVAL;
	key = group * EG_MAX_WORKERS + slot;
	err = bpf_map_update_elem(bpf_map__fd(g->rp->maps.reuse_socks), &key, &v, BPF_ANY);
	if (err)
		log_err("event=reuseport_register group=%u slot=%u fd=%d err=%s", group, slot,
			listen_fd, strerror(-err));
	return err;
}

static struct eg_worker *bpfmaps_worker(struct bpfmaps *g, uint32_t slot)
{
	if (!g || slot >= EG_MAX_WORKERS || !g->workers.base)
		return NULL;
	return (struct eg_worker *)(void *)(g->workers.base + (size_t)slot * g->workers.stride);
}

int bpfmaps_workers_reset(struct bpfmaps *g)
{
	if (!g)
		return -EINVAL;
	if (!g->workers.base)
		return -EOPNOTSUPP;
	for (uint32_t i = 0; i < EG_MAX_WORKERS; i++) {
		struct eg_worker *m = bpfmaps_worker(g, i);

		__atomic_store_n(&m->accepting, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&m->load, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&m->queued, 0, __ATOMIC_RELAXED);
	}
	return 0;
}

int bpfmaps_worker_set(struct bpfmaps *g, uint32_t slot, const struct eg_worker *w)
{
	struct eg_worker *m = bpfmaps_worker(g, slot);

	if (!m || !w)
		return -EINVAL;
	__atomic_store_n(&m->load, w->load, __ATOMIC_RELAXED);
	__atomic_store_n(&m->accepting, w->accepting, __ATOMIC_RELEASE);
	return 0;
}

int bpfmaps_worker_get(struct bpfmaps *g, uint32_t slot, struct eg_worker *w)
{
	struct eg_worker *m = bpfmaps_worker(g, slot);

	if (!m || !w)
		return -EINVAL;
	w->accepting = __atomic_load_n(&m->accepting, __ATOMIC_ACQUIRE);
	w->load = __atomic_load_n(&m->load, __ATOMIC_RELAXED);
	w->queued = __atomic_load_n(&m->queued, __ATOMIC_RELAXED);
	return 0;
}

uint32_t bpfmaps_worker_unqueue(struct bpfmaps *g, uint32_t slot, uint32_t n)
{
	struct eg_worker *m = bpfmaps_worker(g, slot);

	if (!m)
		return 0;
	/* The program adds concurrently (its atomic add is the same locked
	 * instruction family as this compare-exchange). */
	uint32_t q = __atomic_load_n(&m->queued, __ATOMIC_RELAXED), to;
	do
		to = q > n ? q - n : 0;
	while (q && !__atomic_compare_exchange_n(&m->queued, &q, to, 1, __ATOMIC_RELAXED,
						 __ATOMIC_RELAXED));
	return q ? to : 0;
}
