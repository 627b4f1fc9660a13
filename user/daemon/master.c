/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* master.c - see master.h. */
#include "master.h"
#include "admin.h"
#include "bodysplice.h"
#include "bpfmaps.h"
#include "check.h"
#include "command.h"
#include "command_doc.h"
#include "console.h"
#include "control.h"
#include "gate.h"
#include "history.h"
#include "kfeat.h"
#include "krelay.h"
#include "ktls.h"
#include "ktlscost.h"
#include "log.h"
#include "loop.h"
#include "maglev.h"
#include "metrics.h"
#include "notify.h"
#include "ocsp.h"
#include "priv.h"
#include "relay.h"
#include "runwait.h"
#include "shm.h"
#include "siphash.h"
#include "srcadmit.h"
#include "srccap.h"
#include "fmt.h"
#include "store.h"
#include "throttle.h"
#include "tls.h"
#include "wdkeeper.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS (EG_MAX_WORKERS * 4)

struct proc {
	pid_t pid;
	int slot;
	int stats_slot;
	uint64_t gen;
	int draining;
	uint64_t started_ms;
	struct runwait runwait; /* its waits for a CPU, for the watchdog's judgement */
};

struct lsock {
	char addr[128];
	int fds[EG_MAX_WORKERS];
	int in_use;		/* referenced by the running config */
	int rp_group;		/* SK_REUSEPORT group of this address; -1 = not attached */
	uint64_t rp_registered; /* bit s: fds[s] is in the program's socket array */
};

struct master {
	const struct config_cmdline *opts; /* the command line, again at every reload */
	const char *version;		   /* easgated --version, for the farm's node heartbeats */
	struct loop *loop;
	struct gw_config *cfg;
	struct shm *shm;
	uint64_t gen;
	int nworkers;
	struct lsock socks[CFG_MAX_LISTEN * 2];
	int nsocks;
	struct proc procs[MAX_PROCS];
	struct siphash_key secret;
	struct bpfmaps *bpf;
	struct checker *checker;
	struct control *control;
	struct admin *admin;
	struct metrics *metrics;
	struct console *console;   /* admin.web: NULL = off */
	struct notify *notify;	   /* notices (never NULL once started) */
	struct history *history;   /* requests/s for the console's charts */
	struct tls_server *tls;	   /* built here, inherited by the workers of this generation */
	struct ocsp_stapler *ocsp; /* OCSP responses, published in shm for the workers */
	struct throttle *throttle; /* shared budget/loop table, created before the first fork */
	struct srccap *srccap;	   /* connections per source, one table per stats slot */
	struct maglev mirror_mg;   /* the Maglev table as the workers build it, for bpftool */
	uint64_t mirrored_gen;	   /* backend_gen last mirrored (UINT64_MAX = never) */
	uid_t uid;
	gid_t gid;
	int stopping;
	uint64_t reloads, reload_failures;
	char last_reload_error[320];
	struct loop_timer watchdog;
	struct loop_timer tick;
	struct loop_timer stop_deadline;
	struct loop_timer respawn;
	uint64_t respawn_backoff_ms;
	uint64_t watchdog_ms;
	int watchdog_held; /* a worker is hung: WATCHDOG=1 withheld (said once) */
	int schedstat;	   /* silence judged net of CPU waits (runwait.h); else wall clock */
	uint64_t ticket_rotated_ms;
	uint64_t certs_checked_ms;
	char relay_path[320]; /* how bodies move and why (choose_relay_path) */
	struct krelay_caps relay_caps;
	int relay_probed;
	/* Workers start once the store has what they need (store.h: a farm
	 * node without a snapshot waits for its first sync, bounded). */
	int store_ready;
	int can_serve; /* setup done: workers may be forked */
	int serving;   /* workers were started */
	struct loop_timer store_wait;
	struct kfeat kf;	   /* kernel features found at start (kfeat.h) */
	char ktls_probe_why[200];  /* what the kTLS probe found missing ("" = nothing) */
	struct ktlscost ktls_cost; /* measured once, for tls.ktls = "auto" */
	int ktls_measured;	   /* 1 measured, -1 could not */
	int ktls_used;		   /* phone legs go to the kernel (choose_ktls) */
};

/* --- configuration ---------------------------------------------------------- */

static struct shm *cert_shm; /* where master_check_certs publishes (NULL: nowhere) */

int master_check_certs(const struct gw_config *c, int verbose)
{
	int bad = 0;
	if (cert_shm)
		cert_shm->ncerts = 0;
	for (int i = 0; i < c->tls.ncerts; i++) {
		struct tls_chain_report r;
		const struct cfg_cert *ct = &c->tls.certs[i];
		int rc = tls_check_chain(ct->cert, ct->key, c->tls.trust_file, NULL,
					 c->tls.expiry_warn_days, &r);
		if (cert_shm && i < 16) {
			struct shm_cert *sc = &cert_shm->certs[i];
			snprintf(sc->path, sizeof(sc->path), "%s", ct->cert);
			sc->not_after = r.not_after;
			sc->ok = rc == 0;
			sc->warn = r.warning[0] != 0;
			cert_shm->ncerts = i + 1;
		}
		if (rc < 0) {
			int incomplete = !strncmp(r.problem, "incomplete chain", 16);
			if (incomplete && c->tls.allow_incomplete_chain) {
				log_warn("event=cert_check cert=%s problem=\"%s\" "
					 "override=allow_incomplete_chain",
					 ct->cert, r.problem);
				continue;
			}
			log_err("event=cert_check cert=%s problem=\"%s\"", ct->cert, r.problem);
			bad = 1;
			continue;
		}
		if (r.warning[0])
			log_warn("event=cert_check cert=%s warning=\"%s\"", ct->cert, r.warning);
		if (verbose)
			log_info("event=cert_check cert=%s subject=\"%s\" names=\"%s\" chain=%d "
				 "days_left=%ld ok=1",
				 ct->cert, r.subject, r.names, r.chain_len, r.min_days_left);
	}
	return bad ? -1 : 0;
}

/* The admin lowered the protocol floor: say what that costs, every time the
 * config is taken (start, reload, --check-config). */
static void warn_tls_config(const struct gw_config *c)
{
	char w[512];
	if (tls_config_warning(c, w, sizeof(w)))
		log_warn("event=tls_legacy_protocols warning=\"%s\"", w);
}

int master_check_config_full(const struct gw_config *c)
{
	int bad = master_check_certs(c, 1) < 0;
	char why[512];
	warn_tls_config(c);
	if (admin_check_config(NULL, c, why, sizeof(why)) < 0) {
		fprintf(stderr, "%s\n", why);
		bad++;
	}
	if (notify_check_config(c, why, sizeof(why)) < 0) {
		fprintf(stderr, "notify: %s\n", why);
		bad++;
	}
	if (console_check_config(c, why, sizeof(why)) < 0) {
		fprintf(stderr, "admin.web: %s\n", why);
		bad++;
	}
	return bad;
}

/* --- state: directory, steering secret ---------------------------------------- */

static int mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* The steering secret keys every identity hash. It lives in the state dir so
 * affinity survives restarts; it is created once with 32 random hex chars. */
static int load_secret(struct master *m)
{
	char path[PATH_MAX + 32], hex[64] = "";
	if (m->cfg->steering_secret_file[0])
		snprintf(path, sizeof(path), "%s", m->cfg->steering_secret_file);
	else
		snprintf(path, sizeof(path), "%s/steering.key", m->cfg->state_dir);
	FILE *f = fopen(path, "r");
	if (f) {
		int ok = fgets(hex, sizeof(hex), f) != NULL;
		fclose(f);
		hex[strcspn(hex, "\r\n")] = 0;
		if (ok && siphash_key_from_hex(&m->secret, hex) == 0)
			return 0;
		log_err("event=steering_secret_bad path=%s (want 32 hex characters)", path);
		return -1;
	}
	if (siphash_key_random(&m->secret) < 0)
		return -1;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_err("event=steering_secret_create path=%s error=%m", path);
		return -1;
	}
	dprintf(fd, "%016llx%016llx\n", (unsigned long long)m->secret.k0,
		(unsigned long long)m->secret.k1);
	close(fd);
	/* Re-read through the same parser, so file and memory agree. */
	f = fopen(path, "r");
	if (!f || !fgets(hex, sizeof(hex), f)) {
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	hex[strcspn(hex, "\r\n")] = 0;
	return siphash_key_from_hex(&m->secret, hex);
}

/* The farm's steering secret replaces ours: in the file (so a restart while
 * the database is away steers the same way) and in memory. The hex text is
 * written as the farm has it: it is what load_secret() parses. */
static void store_secret_file(struct master *m, const char *hex)
{
	char path[PATH_MAX + 32], tmp[PATH_MAX + 40];
	if (m->cfg->steering_secret_file[0])
		snprintf(path, sizeof(path), "%s", m->cfg->steering_secret_file);
	else
		snprintf(path, sizeof(path), "%s/steering.key", m->cfg->state_dir);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || dprintf(fd, "%s\n", hex) < 0 || fsync(fd) < 0 || rename(tmp, path) < 0)
		log_warn("event=steering_secret_save_failed path=%s error=%m note=\"the farm's "
			 "secret is used until the next start\"",
			 path);
	if (fd >= 0)
		close(fd);
}

/* --- listening sockets --------------------------------------------------------- */

static int open_listener(const struct cfg_addr *a)
{
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (a->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, 4096) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Make sure every configured address has one socket per worker slot. */
static int ensure_listeners(struct master *m, const struct gw_config *c)
{
	for (int i = 0; i < m->nsocks; i++)
		m->socks[i].in_use = 0;
	for (int a = 0; a < c->nlisten; a++) {
		struct lsock *ls = NULL;
		for (int i = 0; i < m->nsocks; i++)
			if (!strcmp(m->socks[i].addr, c->listen[a].text))
				ls = &m->socks[i];
		if (!ls) {
			if (m->nsocks >= (int)(sizeof(m->socks) / sizeof(m->socks[0]))) {
				log_err("event=listen_failed error=\"too many addresses\"");
				return -1;
			}
			ls = &m->socks[m->nsocks];
			memset(ls, 0, sizeof(*ls));
			snprintf(ls->addr, sizeof(ls->addr), "%s", c->listen[a].text);
			ls->rp_group = -1;
			for (int s = 0; s < EG_MAX_WORKERS; s++)
				ls->fds[s] = -1;
			m->nsocks++;
		}
		for (int s = 0; s < m->nworkers; s++) {
			if (ls->fds[s] >= 0)
				continue;
			ls->fds[s] = open_listener(&c->listen[a]);
			if (ls->fds[s] < 0) {
				log_err("event=listen_failed addr=%s error=%m", ls->addr);
				return -1;
			}
		}
		ls->in_use = 1;
	}
	return 0;
}

static void close_unused_listeners(struct master *m)
{
	for (int i = 0; i < m->nsocks; i++) {
		if (m->socks[i].in_use)
			continue;
		for (int s = 0; s < EG_MAX_WORKERS; s++)
			if (m->socks[i].fds[s] >= 0)
				close(m->socks[i].fds[s]);
		m->socks[i] = m->socks[--m->nsocks];
		i--;
	}
}

/*
 * With BPF loaded, new connections are placed by the SK_REUSEPORT program:
 * attach it to each listen address's group and register every slot's socket
 * (once: a socket leaves the program's array by itself when it is closed).
 * Called at start and after each reload's ensure_listeners. A failure leaves
 * that address on the kernel's hash selection, which refuses nothing.
 */
static int reuseport_free_group(const struct master *m, int ngroups)
{
	for (int g = 0; g < ngroups; g++) {
		int used = 0;
		for (int i = 0; i < m->nsocks; i++)
			used |= m->socks[i].rp_group == g;
		if (!used)
			return g;
	}
	return -1;
}

/*
 * The SK_REUSEPORT program on every listen address (new ones after a
 * reload too). Optional: a group it cannot join keeps the kernel's hash
 * selection; the kernel feature report says which and why.
 */
static void setup_reuseport(struct master *m)
{
	if (!m->bpf || !bpfmaps_loaded(m->bpf, BPFMAPS_PROG_REUSEPORT))
		return;
	int ngroups = bpfmaps_reuseport_groups(m->bpf), e = 0, ok = 0;
	char why[200] = "";
	for (int i = 0; i < m->nsocks; i++) {
		struct lsock *ls = &m->socks[i];
		if (ls->rp_group < 0) {
			int g = reuseport_free_group(m, ngroups);
			if (g < 0 || (e = bpfmaps_reuseport_attach(m->bpf, ls->fds[0])) < 0) {
				if (!why[0])
					snprintf(why, sizeof(why), "%s: %s", ls->addr,
						 g < 0 ? "no free group" : strerror(-e));
				continue;
			}
			ls->rp_group = g;
			ls->rp_registered = 0;
			log_info("event=reuseport_attached addr=%s group=%d", ls->addr, g);
		}
		ok += ls->rp_group >= 0;
		for (int s = 0; s < m->nworkers; s++)
			if (ls->fds[s] >= 0 && !(ls->rp_registered & (1ull << s)) &&
			    bpfmaps_reuseport_register(m->bpf, (uint32_t)ls->rp_group, (uint32_t)s,
						       ls->fds[s]) == 0)
				ls->rp_registered |= 1ull << s;
	}
	char detail[32];
	snprintf(detail, sizeof(detail), "groups=%d", ok);
	kfeat_set(&m->kf, KFEAT_REUSEPORT, ok > 0, detail, why);
}

/*
 * Mirror the backend list and the Maglev table into the pinned BPF maps, so
 * `bpftool map dump pinned .../backends` shows names, addresses, health and
 * connection counts, and .../maglev_table which backend each slot steers to.
 * The table is built exactly as the workers build theirs (same names,
 * weights and health, same algorithm), so the mirror is the truth.
 */
static void mirror_steering(struct master *m, int force)
{
	if (!m->bpf)
		return;
	uint64_t gen = __atomic_load_n(&m->shm->backend_gen, __ATOMIC_ACQUIRE);
	if (!force && gen == m->mirrored_gen)
		return;
	m->mirrored_gen = gen;
	struct maglev_backend mb[EG_MAX_BACKENDS];
	for (int i = 0; i < m->cfg->nbackends; i++) {
		const struct cfg_backend *b = &m->cfg->backends[i];
		int slot = shm_backend_find(m->shm, b->name);
		struct eg_backend e = {0};
		e.up = slot < 0 || m->shm->backends[slot].up;
		e.weight = b->weight;
		snprintf(e.name, sizeof(e.name), "%s", b->name);
		if (b->addr.ss.ss_family == AF_INET) {
			const struct sockaddr_in *sin = (const void *)&b->addr.ss;
			e.addr[10] = e.addr[11] = 0xff;
			memcpy(&e.addr[12], &sin->sin_addr, 4);
			e.port = sin->sin_port;
		} else {
			const struct sockaddr_in6 *sin6 = (const void *)&b->addr.ss;
			memcpy(e.addr, &sin6->sin6_addr, 16);
			e.port = sin6->sin6_port;
		}
		bpfmaps_mirror_backend(m->bpf, (uint32_t)i, &e);
		mb[i].name = b->name;
		mb[i].weight = b->weight;
		mb[i].up = e.up;
	}
	if (!m->mirror_mg.table && maglev_init(&m->mirror_mg, EG_MAGLEV_SIZE) < 0)
		return;
	if (maglev_build(&m->mirror_mg, mb, (uint32_t)m->cfg->nbackends) == 0)
		bpfmaps_mirror_maglev(m->bpf, m->mirror_mg.table, m->mirror_mg.size);
}

/* --- workers ---------------------------------------------------------------------- */

static struct proc *proc_free_slot(struct master *m)
{
	for (int i = 0; i < MAX_PROCS; i++)
		if (!m->procs[i].pid)
			return &m->procs[i];
	return NULL;
}

/* A stats slot no live worker writes to. */
static int free_stats_slot(const struct master *m)
{
	for (int s = 0; s < EG_MAX_WORKERS; s++) {
		int used = 0;
		for (int i = 0; i < MAX_PROCS; i++)
			used |= m->procs[i].pid && m->procs[i].stats_slot == s;
		if (!used)
			return s;
	}
	return -1;
}

/* A worker is gone: its counters stay (cumulative), its gauges cannot. */
static void zero_gauges(struct stats *st)
{
	st->conns_open = 0;
	st->hanging_open = 0;
	st->heap_bytes = 0;
	for (int b = 0; b < EG_MAX_BACKENDS; b++)
		st->backend_conns[b] = 0;
}

static int spawn_worker(struct master *m, int slot)
{
	struct proc *p = proc_free_slot(m);
	int ss = free_stats_slot(m);
	if (!p || ss < 0)
		return -1;
	int fds[CFG_MAX_LISTEN];
	for (int a = 0; a < m->cfg->nlisten; a++) {
		fds[a] = -1;
		for (int i = 0; i < m->nsocks; i++)
			if (!strcmp(m->socks[i].addr, m->cfg->listen[a].text))
				fds[a] = m->socks[i].fds[slot];
	}
	pid_t pid = fork();
	if (pid < 0) {
		log_err("event=fork_failed error=%m");
		return -1;
	}
	if (pid == 0) {
		/* child: the master's loop, control socket and checks are not ours */
		struct worker_args a = {
		    .slot = slot,
		    .stats_slot = ss,
		    .gen = m->gen,
		    .shm = m->shm,
		    .cfg = m->cfg,
		    .listen_fds = fds,
		    .steer_secret = m->secret,
		    .bpf = m->bpf,
		    .event_fd = admin_event_fd(m->admin),
		    .sightings = admin_sightings(m->admin),
		    .tls = m->tls,
		    .throttle = m->cfg->throttle.enabled ? m->throttle : NULL,
		    .srccap = m->srccap,
		};
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		/* The master's own sockets are not the worker's business. */
		control_close_fd(m->control);
		metrics_close_fd(m->metrics);
		admin_forget_in_child(m->admin);
		console_close_fds(m->console);
		_exit(worker_main(&a));
	}
	p->pid = pid;
	p->slot = slot;
	p->stats_slot = ss;
	p->gen = m->gen;
	p->draining = 0;
	/* The fork's time, not the loop's cached clock: at start that is from
	 * before the master's own setup, which would eat into the start grace. */
	p->started_ms = loop_update_clock(m->loop);
	return 0;
}

static int count_procs(const struct master *m)
{
	int n = 0;
	for (int i = 0; i < MAX_PROCS; i++)
		n += m->procs[i].pid != 0;
	return n;
}

static void signal_old(struct master *m, uint64_t keep_gen, int sig)
{
	for (int i = 0; i < MAX_PROCS; i++) {
		struct proc *p = &m->procs[i];
		if (p->pid && p->gen != keep_gen && !p->draining) {
			kill(p->pid, sig);
			p->draining = 1;
		}
	}
}

/* Start a worker for every slot that has none of the current generation. */
static void on_respawn(struct loop_timer *t)
{
	struct master *m = t->arg;
	if (m->stopping)
		return;
	for (int s = 0; s < m->nworkers; s++) {
		int have = 0;
		for (int i = 0; i < MAX_PROCS; i++)
			have |= m->procs[i].pid && m->procs[i].slot == s &&
				m->procs[i].gen == m->gen && !m->procs[i].draining;
		if (!have)
			spawn_worker(m, s);
	}
}

static void on_child(struct loop *l, int signo, void *arg)
{
	struct master *m = arg;
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct proc *p = NULL;
		for (int i = 0; i < MAX_PROCS; i++)
			if (m->procs[i].pid == pid)
				p = &m->procs[i];
		if (!p)
			continue;
		int crashed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
		if (crashed)
			log_err("event=worker_exit slot=%d pid=%d status=%d signal=%d", p->slot,
				pid, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
				WIFSIGNALED(status) ? WTERMSIG(status) : 0);
		else
			log_info("event=worker_exit slot=%d pid=%d gen=%llu", p->slot, pid,
				 (unsigned long long)p->gen);
		if (m->bpf && m->shm->worker_pid[p->slot] == pid) {
			/* The slot's socket stays open (the respawned worker takes it
			 * over): steer new connections to the other slots meanwhile. */
			struct eg_worker none = {0};
			bpfmaps_worker_set(m->bpf, (uint32_t)p->slot, &none);
			bpfmaps_worker_unqueue(m->bpf, (uint32_t)p->slot, UINT32_MAX);
		}
		int respawn = !m->stopping && !p->draining && p->gen == m->gen;
		zero_gauges(&m->shm->worker_stats[p->stats_slot]);
		/* Its connections died with it (a crash included): stop counting them. */
		srccap_slot_reset(m->srccap, (unsigned)p->stats_slot);
		int fast = loop_now_ms(m->loop) - p->started_ms < 1000;
		memset(p, 0, sizeof(*p));
		if (respawn) {
			/* Respawn from a timer, never from here: a worker that dies at
			 * once must not keep the master from reading its signals. */
			m->respawn_backoff_ms =
			    fast ? (m->respawn_backoff_ms ? m->respawn_backoff_ms * 2 : 100) : 0;
			if (m->respawn_backoff_ms > 5000)
				m->respawn_backoff_ms = 5000;
			loop_timer_set(m->loop, &m->respawn, m->respawn_backoff_ms);
		}
	}
	if (m->stopping && !count_procs(m))
		loop_stop(m->loop);
}

/* --- reload ------------------------------------------------------------------------ */

static void notify_status(struct master *m)
{
	sd_notifyf(0, "STATUS=gen %llu, %d workers, %llu reloads (%llu failed)%s%s",
		   (unsigned long long)m->gen, m->nworkers, (unsigned long long)m->reloads,
		   (unsigned long long)m->reload_failures, m->last_reload_error[0] ? ": " : "",
		   m->last_reload_error);
}

/* Create the throttle table, or give the running one the new classes. It is
 * created once and kept across reloads (counters survive). */
static int setup_throttle(struct master *m, const struct gw_config *c, char *err, size_t errsz)
{
	if (!c->throttle.enabled)
		return 0;
	if (!m->throttle) {
		m->throttle = throttle_new(&c->throttle.tc, c->throttle.classes,
					   (size_t)c->throttle.nclasses, err, errsz);
		return m->throttle ? 0 : -1;
	}
	return throttle_set_classes(m->throttle, c->throttle.classes, (size_t)c->throttle.nclasses,
				    err, errsz) < 0
		   ? -1
		   : 0;
}

static void choose_relay_path(struct master *m, const struct gw_config *c);
struct stall {
	uint64_t silent_ms; /* since its last beat (or its fork) */
	uint64_t waited_ms; /* of which runnable, waiting for a CPU */
};
static const struct proc *stalled_worker(struct master *m, uint64_t now, struct stall *st);

/* WATCHDOG=1 now, from the loop's thread, unless a worker is hung: for the
 * steps of a reload that fork (no keeper thread then), which took 0.5-1.3 s
 * in an emulated guest. */
static void watchdog_kick(struct master *m)
{
	struct stall st;
	if (m->watchdog_ms && !stalled_worker(m, eg_mono_ns() / 1000000u, &st))
		sd_notify(0, "WATCHDOG=1");
}

static int apply_config(struct master *m, struct gw_config *nc, struct tls_server *ntls)
{
	int old_n = m->nworkers;
	if (nc->workers && config_worker_count(nc) != old_n)
		log_warn("event=reload_workers note=\"worker count changes need a restart\"");
	if (ensure_listeners(m, nc) < 0)
		return -1;
	setup_reuseport(m);
	struct gw_config *old = m->cfg;
	struct tls_server *old_tls = m->tls;
	m->cfg = nc;
	m->tls = ntls;
	m->gen++;
	choose_relay_path(m, nc);
	checker_free(m->checker);
	m->checker = checker_new(m->loop, m->shm, nc);
	mirror_steering(m, 1);
	watchdog_kick(m);
	for (int s = 0; s < m->nworkers; s++) {
		spawn_worker(m, s);
		watchdog_kick(m);
	}
	signal_old(m, m->gen, SIGTERM);
	close_unused_listeners(m);
	if (m->admin)
		admin_config_changed(m->admin, nc);
	ocsp_stapler_configure(m->ocsp, nc);
	char nerr[320];
	if (m->notify && notify_reconfigure(m->notify, nc, nerr, sizeof(nerr)) < 0)
		log_err("event=notify_reconfigure_failed error=\"%s\"", nerr); /* checked before */
	console_reconfigure(m->console, nc);
	if (!m->console && nc->admin.web[0])
		log_warn("event=console_not_started addr=%s note=\"the console starts with the "
			 "daemon: restart to turn it on\"",
			 nc->admin.web);
	if (old) {
		config_free(old);
		free(old);
	}
	tls_server_free(old_tls); /* the old workers have their own copies */
	return 0;
}

/* The reload keeper's test (another thread; the loop is held meanwhile, so
 * procs do not change): every worker still beats. */
static int workers_beat(void *arg)
{
	struct stall st;
	return !stalled_worker(arg, eg_mono_ns() / 1000000u, &st);
}

/* Returns 0 on success; on failure the running config stays in force. */
static int master_reload(struct master *m, char *why, size_t whysz)
{
	uint64_t t0 = eg_mono_ns() / 1000000u;
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
		   (unsigned long long)(eg_mono_ns() / 1000u));
	/* The loop is held until apply_config: the keeper pings meanwhile, for
	 * at most 10 WatchdogSec (watchdog_ms is half of it). */
	struct wdkeeper *keeper =
	    wdkeeper_start(m->watchdog_ms, 20 * m->watchdog_ms, workers_beat, m);
	struct gw_config *nc = calloc(1, sizeof(*nc));
	struct config_errors errs = {0};
	struct tls_server *ntls = NULL;
	char terr[512];
	int rc = -1;
	uint64_t t_parsed = t0, t_checked = t0, t_tls = t0;
	if (!nc) {
		snprintf(why, whysz, "out of memory");
	} else if (config_load_cmdline(m->opts, nc, &errs) < 0) {
		config_log_errors(&errs);
		snprintf(why, whysz, "%s%s", errs.n ? errs.msg[0] : "config error",
			 errs.n > 1 ? " (and more)" : "");
		free(nc);
		nc = NULL;
	} else if (t_parsed = eg_mono_ns() / 1000000u, master_check_certs(nc, 0) < 0) {
		snprintf(why, whysz, "certificate check failed (see log)");
	} else if (gate_load_builds(nc, why, whysz) < 0) {
		/* message set */
	} else if (admin_check_config(m->admin, nc, why, whysz) < 0) {
		/* message set */
	} else if (nc->tls.ktls == CFG_KTLS_ON && m->kf.f[KFEAT_KTLS].state != KFEAT_ON) {
		snprintf(why, whysz, "tls.ktls = \"on\" but this kernel has no kernel TLS (%s)",
			 m->kf.f[KFEAT_KTLS].why);
	} else if (notify_check_config(nc, why, whysz) < 0) {
		/* message set */
	} else if (m->console && console_check_config(nc, why, whysz) < 0) {
		/* message set */
	} else if (setup_throttle(m, nc, terr, sizeof(terr)) < 0) {
		snprintf(why, whysz, "throttle: %s", terr);
	} else if (t_checked = eg_mono_ns() / 1000000u,
		   !(ntls = tls_server_new(nc, m->shm, terr, sizeof(terr)))) {
		snprintf(why, whysz, "TLS: %s", terr);
	} else {
		rc = 0;
	}
	t_tls = eg_mono_ns() / 1000000u;
	unsigned kept = wdkeeper_stop(keeper); /* before apply_config forks workers */
	/* The loop's clock is from before the reload: the new workers' start
	 * (the floor of their heartbeat) and the timers apply_config sets must
	 * be from now, or the new workers look silent for the whole reload. */
	loop_update_clock(m->loop);
	if (rc == 0 && apply_config(m, nc, ntls) < 0) {
		snprintf(why, whysz, "cannot apply the new listeners");
		tls_server_free(ntls);
		rc = -1;
	} else if (rc == 0) {
		nc = NULL;
	}
	if (nc) {
		config_free(nc);
		free(nc);
	}
	m->reloads++;
	if (rc < 0) {
		m->reload_failures++;
		snprintf(m->last_reload_error, sizeof(m->last_reload_error), "%s", why);
		log_err("event=reload_failed reason=\"%s\" note=\"the running configuration stays "
			"in force\"",
			why);
	} else {
		m->last_reload_error[0] = 0;
		warn_tls_config(m->cfg);
		/* Where a slow reload's time went (the loop was held for hold_ms). */
		uint64_t t1 = eg_mono_ns() / 1000000u;
		log_info("event=reloaded gen=%llu hold_ms=%llu parse_ms=%llu checks_ms=%llu "
			 "tls_ms=%llu apply_ms=%llu keeper_pings=%u",
			 (unsigned long long)m->gen, (unsigned long long)(t1 - t0),
			 (unsigned long long)(t_parsed - t0),
			 (unsigned long long)(t_checked - t_parsed),
			 (unsigned long long)(t_tls - t_checked), (unsigned long long)(t1 - t_tls),
			 kept);
	}
	sd_notify(0, "READY=1");
	notify_status(m);
	return rc;
}

/* --- stop ---------------------------------------------------------------------------- */

static void stop_deadline(struct loop_timer *t)
{
	struct master *m = t->arg;
	for (int i = 0; i < MAX_PROCS; i++)
		if (m->procs[i].pid) {
			log_warn("event=worker_kill pid=%d reason=\"drain deadline\"",
				 m->procs[i].pid);
			kill(m->procs[i].pid, SIGKILL);
		}
}

static void master_stop(struct master *m)
{
	if (m->stopping)
		return;
	m->stopping = 1;
	sd_notify(0, "STOPPING=1\nSTATUS=draining");
	log_info("event=stopping");
	signal_old(m, UINT64_MAX, SIGTERM);
	loop_timer_set(m->loop, &m->stop_deadline, m->cfg->timeouts.drain_ms + 2000);
	if (!count_procs(m))
		loop_stop(m->loop);
}

static void on_signal(struct loop *l, int signo, void *arg)
{
	struct master *m = arg;
	char why[320];
	if (signo == SIGHUP && !m->stopping) {
		/* systemctl reload: no easctl peer, no console account; the
		 * audit line says "daemon" (command_actor() is NULL here) */
		uint64_t gen = m->gen;
		if (master_reload(m, why, sizeof(why)) == 0 && m->admin) {
			char before[32], after[32];
			snprintf(before, sizeof(before), "generation %llu",
				 (unsigned long long)gen);
			snprintf(after, sizeof(after), "generation %llu",
				 (unsigned long long)m->gen);
			admin_audit(m->admin, "reload (SIGHUP)", before, after);
		}
	} else if (signo == SIGTERM || signo == SIGINT)
		master_stop(m);
}

/* --- housekeeping ---------------------------------------------------------------------- */

/* A worker that has not beaten yet is still starting (BPF objects, TLS
 * contexts, the inventory): on a CPU-limited container or under a sanitizer
 * that takes seconds, and a watchdog period plus a tick would call it hung
 * before its loop ever ran. It gets this long from its fork instead. */
#define WORKER_START_GRACE_MS 10000u

/* A started worker kept off the CPU (a cgroup's quota spent, a loaded host)
 * cannot tick either, yet it is not hung: its silence is judged net of its
 * waits for a CPU (runwait.h). Net of them only this long: a worker that
 * spins in a cage is runnable and waiting too, and one kept off the CPU for
 * as long as a whole start may take serves nobody either. */
#define WORKER_STARVED_MAX_MS WORKER_START_GRACE_MS

/* A live worker whose loop has not ticked (every second, shm.h) for a
 * watchdog period plus a tick of the time it could have run, or for
 * WORKER_STARVED_MAX_MS at all, is hung; or NULL. Its start is the floor:
 * the slot may hold an earlier worker's last beat. Samples every worker,
 * so each account sees every check. */
static const struct proc *stalled_worker(struct master *m, uint64_t now, struct stall *st)
{
	const struct proc *hung = NULL;
	for (int i = 0; i < MAX_PROCS; i++) {
		struct proc *p = &m->procs[i];
		if (!p->pid)
			continue;
		uint64_t beat = m->shm->worker_beat_ms[p->stats_slot];
		uint64_t limit = m->watchdog_ms + 1000;
		uint64_t cap = limit > WORKER_STARVED_MAX_MS ? limit : WORKER_STARVED_MAX_MS;
		int starting = beat < p->started_ms;
		if (starting) {
			beat = p->started_ms;
			if (limit < WORKER_START_GRACE_MS)
				limit = WORKER_START_GRACE_MS;
		}
		uint64_t waited =
		    m->schedstat ? runwait_waited_ms(&p->runwait, p->pid, beat, now) : 0;
		if (hung || now <= beat)
			continue;
		uint64_t silent = now - beat;
		if (starting)
			waited = 0; /* the grace covers a start's waits */
		else if (waited > silent)
			waited = silent;
		if (silent - waited > limit || silent > cap) {
			st->silent_ms = silent;
			st->waited_ms = waited;
			hung = p;
		}
	}
	return hung;
}

/* WATCHDOG=1 says the whole gateway works, so it is withheld while a worker
 * is hung: systemd then restarts the unit (a worker stopped with SIGSTOP
 * would otherwise keep its share of new connections for ever). */
static void on_watchdog(struct loop_timer *t)
{
	struct master *m = t->arg;
	struct stall st = {0};
	const struct proc *p = stalled_worker(m, loop_now_ms(m->loop), &st);
	if (!p) {
		sd_notify(0, "WATCHDOG=1");
		m->watchdog_held = 0;
	} else if (!m->watchdog_held) {
		m->watchdog_held = 1;
		log_err("event=worker_stalled slot=%d pid=%d silent_ms=%llu runnable_wait_ms=%llu "
			"action=\"watchdog ping withheld\"",
			p->slot, (int)p->pid, (unsigned long long)st.silent_ms,
			(unsigned long long)st.waited_ms);
	}
	loop_timer_set(m->loop, &m->watchdog, m->watchdog_ms);
}

static void on_tick(struct loop_timer *t)
{
	struct master *m = t->arg;
	uint64_t now = loop_now_ms(m->loop);
	if (m->cfg->tls.ticket_rotate_s &&
	    now - m->ticket_rotated_ms >= (uint64_t)m->cfg->tls.ticket_rotate_s * 1000) {
		shm_tickets_rotate(m->shm);
		m->ticket_rotated_ms = now;
	}
	if (m->bpf) {
		uint64_t now_ns = eg_mono_ns();
		srcadmit_refresh_kernel(m->bpf, m->srccap, &m->secret, m->cfg, now_ns);
		bpfmaps_gc(m->bpf, now_ns);
		mirror_steering(m, 0);
	}
	if (m->admin)
		admin_tick(m->admin);
	ocsp_stapler_tick(m->ocsp);
	history_tick(m->history, m->shm, m->cfg, time(NULL));
	notify_tick(m->notify, m->shm, m->cfg);
	if (now - m->certs_checked_ms >= 3600 * 1000) { /* expiry moves daily: hourly is plenty */
		master_check_certs(m->cfg, 0);
		m->certs_checked_ms = now;
	}
	loop_timer_set(m->loop, &m->tick, 1000);
}

/* --- control commands ----------------------------------------------------------------- */

static enum ctl_code cmd_status(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct master *m = ctx;
	struct stats sum;
	stats_sum(m->shm->worker_stats, EG_MAX_WORKERS, &sum);
	sbuf_printf(out,
		    "pid %d\ngeneration %llu\nworkers %d\nconnections %lld\nlong_polls %lld\n"
		    "reloads %llu\nreload_failures %llu\n",
		    getpid(), (unsigned long long)m->gen, m->nworkers, (long long)sum.conns_open,
		    (long long)sum.hanging_open, (unsigned long long)m->reloads,
		    (unsigned long long)m->reload_failures);
	if (m->last_reload_error[0])
		sbuf_printf(out, "last_reload_error %s\n", m->last_reload_error);
	sbuf_printf(out, "xdp %s\n", m->kf.f[KFEAT_XDP].state == KFEAT_ON ? "attached" : "off");
	sbuf_printf(out, "relay %s\n", m->relay_path);
	admin_describe_store(m->admin, out);
	if (!m->serving)
		sbuf_printf(out, "serving no (waiting for the first sync with the farm)\n");
	ocsp_stapler_describe(m->ocsp, out);
	sbuf_printf(out, "kernel %s\n", m->kf.kernel);
	for (int i = 0; i < KFEAT__COUNT; i++) {
		char line[512];
		sbuf_printf(out, "%s\n", kfeat_line(&m->kf, (enum kfeat_id)i, line, sizeof(line)));
	}
	return CTL_OK;
}

static void backends_json(struct master *m, const struct stats *sum, struct sbuf *out)
{
	sbuf_put(out, "[", 1);
	for (int i = 0; i < m->cfg->nbackends; i++) {
		const struct cfg_backend *b = &m->cfg->backends[i];
		int s = shm_backend_find(m->shm, b->name);
		const struct shm_backend *sb = s >= 0 ? &m->shm->backends[s] : NULL;
		sbuf_printf(out, "%s\n  {\"name\": ", i ? "," : "");
		fmt_json_str(out, b->name);
		sbuf_printf(out, ", \"address\": ");
		fmt_json_str(out, b->addr.text);
		sbuf_printf(
		    out,
		    ", \"tls\": %s, \"up\": %s, \"health_checks\": %s, \"checks_ok\": %llu, "
		    "\"checks_failed\": %llu, \"connections\": %lld, \"requests\": %llu, "
		    "\"failures\": %llu, \"last_error\": ",
		    b->tls ? "true" : "false", sb && sb->up ? "true" : "false",
		    b->health_enabled ? "true" : "false",
		    sb ? (unsigned long long)sb->checks_ok : 0ull,
		    sb ? (unsigned long long)sb->checks_failed : 0ull,
		    (long long)sum->backend_conns[i], (unsigned long long)sum->backend_requests[i],
		    (unsigned long long)sum->backend_failures[i]);
		fmt_json_str(out, sb ? sb->last_error : "");
		sbuf_put(out, "}", 1);
	}
	sbuf_printf(out, "%s]\n", m->cfg->nbackends ? "\n" : "");
}

static enum ctl_code cmd_backends(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct master *m = ctx;
	struct stats sum;
	stats_sum(m->shm->worker_stats, EG_MAX_WORKERS, &sum);
	if (argc == 3 && !strcmp(argv[1], "--format") && !strcmp(argv[2], "json")) {
		backends_json(m, &sum, out);
		return CTL_OK;
	}
	sbuf_printf(out, "%-16s %-24s %-5s %10s %12s %10s  %s\n", "NAME", "ADDRESS", "STATE",
		    "CONNS", "REQUESTS", "FAILURES", "LAST_ERROR");
	for (int i = 0; i < m->cfg->nbackends; i++) {
		const struct cfg_backend *b = &m->cfg->backends[i];
		int s = shm_backend_find(m->shm, b->name);
		const struct shm_backend *sb = s >= 0 ? &m->shm->backends[s] : NULL;
		sbuf_printf(out, "%-16s %-24s %-5s %10lld %12llu %10llu  %s\n", b->name,
			    b->addr.text, sb && sb->up ? "up" : "down",
			    (long long)sum.backend_conns[i],
			    (unsigned long long)sum.backend_requests[i],
			    (unsigned long long)sum.backend_failures[i], sb ? sb->last_error : "");
	}
	return CTL_OK;
}

static enum ctl_code cmd_reload(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct master *m = ctx;
	char why[320];
	if (master_reload(m, why, sizeof(why)) < 0) {
		sbuf_printf(out, "reload refused: %s\n", why);
		return CTL_FAILED;
	}
	sbuf_printf(out, "reloaded: generation %llu\n", (unsigned long long)m->gen);
	char before[32], after[32];
	snprintf(before, sizeof(before), "generation %llu", (unsigned long long)m->gen - 1);
	snprintf(after, sizeof(after), "generation %llu", (unsigned long long)m->gen);
	admin_audit(m->admin, "reload", before, after);
	return CTL_OK;
}

static enum ctl_code cmd_help(void *ctx, int argc, char **argv, struct sbuf *out);

static enum ctl_code cmd_metrics(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct master *m = ctx;
	metrics_render(out, m->shm, m->admin, m->bpf);
	return CTL_OK;
}

static enum ctl_code cmd_history(void *ctx, int argc, char **argv, struct sbuf *out)
{
	struct master *m = ctx;
	return history_command(m->history, argc, argv, out);
}

static int need_admin(int argc, char **argv)
{
	return ROLE_ADMIN;
}

/*
 * The one table of commands, for easctl and the console alike (command.h):
 * name, handler (its help is command_doc.c's), the role an argv needs
 * (NULL: viewer), and whether the console may run it (it reads and
 * decides; reload, metrics and help stay with easctl). ctx is the master.
 */
static const struct ctl_cmd commands[] = {
    {"status", cmd_status, NULL, 1},
    {"backends", cmd_backends, NULL, 1},
    {"reload", cmd_reload, need_admin, 0},
    {"metrics", cmd_metrics, NULL, 0},
    {"history", cmd_history, NULL, 1},
    {"help", cmd_help, NULL, 0},
    {"throttle", admin_cmd_throttle, admin_need_throttle, 1},
    {"devices", admin_cmd_devices, NULL, 1},
    {"device", admin_cmd_device, admin_need_device, 1},
    {"rules", admin_cmd_rules, admin_need_rules, 1},
    {"versions", admin_cmd_versions, admin_need_versions, 1},
    {"certcheck", admin_cmd_certcheck, NULL, 1},
    {"audit", admin_cmd_audit, NULL, 1},
    {"lists", admin_cmd_lists, admin_need_lists, 0},
    {"nodes", admin_cmd_nodes, NULL, 0},
    {"db", admin_cmd_db, admin_need_db, 0},
    {NULL, NULL, NULL, 0},
};

const struct ctl_cmd *master_commands(void)
{
	return commands;
}

static enum ctl_code cmd_help(void *ctx, int argc, char **argv, struct sbuf *out)
{
	for (const struct ctl_cmd *k = commands; k->name; k++) {
		const struct command_doc *d = command_doc_find(k->name);
		/* its usage lines: the description is easctl help COMMAND's */
		for (const char *l = d ? d->text : ""; *l;) {
			size_t n = strcspn(l, "\n");
			if (!strncmp(l, "easctl ", 7) || !strncmp(l, "    ", 4))
				sbuf_printf(out, "  %.*s\n", (int)n, l);
			l += n + (l[n] == '\n');
		}
	}
	return CTL_OK;
}

/* --- setup ----------------------------------------------------------------------------- */

static int setup_identity(struct master *m)
{
	m->uid = getuid();
	m->gid = getgid();
	if (geteuid() != 0)
		return 0;
	const char *user = m->cfg->user[0] ? m->cfg->user : NULL;
	uid_t uid;
	gid_t gid;
	if (!user)
		user = priv_lookup("easgate", NULL, &uid, &gid) == 0 ? "easgate" : "nobody";
	if (priv_lookup(user, m->cfg->group, &uid, &gid) < 0) {
		log_err("event=user_unknown user=%s group=%s", user, m->cfg->group);
		return -1;
	}
	m->uid = uid;
	m->gid = gid;
	return 0;
}

static const char *xdp_mode_key(int mode)
{
	return mode == BPFMAPS_XDP_NATIVE    ? "native"
	       : mode == BPFMAPS_XDP_GENERIC ? "generic"
					     : "auto";
}

/*
 * Attach XDP to every configured interface. Returns -1 (refuse to start,
 * with a log line that says what to change) only for what the configuration
 * demands or gets wrong: a missing interface, another program in the way,
 * or xdp.mode "native"/"generic" the kernel cannot give. With "auto" an
 * interface where XDP cannot attach at all is left unguarded and reported.
 */
static int attach_xdp_all(struct master *m)
{
	const struct gw_config *c = m->cfg;
	char detail[160] = "", why[200] = "";
	int attached = 0;
	for (int i = 0; i < c->xdp.nifaces; i++) {
		const char *ifn = c->xdp.ifaces[i], *mode = NULL;
		int r = bpfmaps_attach_xdp(m->bpf, ifn, c->xdp.mode, &mode);
		int ne = bpfmaps_xdp_native_err(m->bpf);
		if (r == -ENODEV || r == -ENXIO) {
			log_err("event=xdp_attach_failed iface=%s error=%s "
				"fix=\"xdp.interfaces names an interface this host does not have\"",
				ifn, strerror(-r));
			return -1;
		}
		if (r == -EBUSY || r == -EEXIST) {
			log_err("event=xdp_attach_failed iface=%s error=%s "
				"fix=\"another XDP program is attached to %s: detach it "
				"(ip link set dev %s xdp off) or remove %s from xdp.interfaces\"",
				ifn, strerror(-r), ifn, ifn, ifn);
			return -1;
		}
		if (r < 0 && c->xdp.mode == BPFMAPS_XDP_NATIVE) {
			log_err("event=xdp_attach_failed iface=%s mode=native error=%s "
				"fix=\"the driver of %s has no native XDP here: set "
				"xdp.mode = \\\"auto\\\" (native where the driver has it, generic "
				"elsewhere) or \\\"generic\\\"\"",
				ifn, strerror(-r), ifn);
			return -1;
		}
		if (r < 0 && c->xdp.mode == BPFMAPS_XDP_GENERIC) {
			log_err("event=xdp_attach_failed iface=%s mode=generic error=%s "
				"fix=\"this kernel cannot attach XDP to %s: set "
				"xdp.mode = \\\"auto\\\" to run without it there\"",
				ifn, strerror(-r), ifn);
			return -1;
		}
		size_t n = strlen(detail);
		if (r < 0) {
			log_warn(
			    "event=xdp_attach_failed iface=%s mode=auto error=%s action=unguarded",
			    ifn, strerror(-r));
			snprintf(why + strlen(why), sizeof(why) - strlen(why), "%s%s: %s",
				 why[0] ? "; " : "", ifn, strerror(-r));
			continue;
		}
		attached++;
		snprintf(detail + n, sizeof(detail) - n, "%s%s=%s", n ? " " : "", ifn,
			 mode ? mode : "?");
		if (ne && c->xdp.mode == BPFMAPS_XDP_AUTO)
			snprintf(why + strlen(why), sizeof(why) - strlen(why),
				 "%s%s: native refused (%s), generic used", why[0] ? "; " : "", ifn,
				 strerror(-ne));
		log_info("event=xdp_attached iface=%s mode=%s maps_reused=%d pin_dir=%s", ifn,
			 mode ? mode : "?", bpfmaps_maps_reused(m->bpf), c->xdp.pin_dir);
	}
	kfeat_set(&m->kf, KFEAT_XDP, attached > 0, detail, why);
	return 0;
}

/*
 * Load the BPF programs the kernel accepts. XDP is what xdp.interfaces asks
 * for; with xdp.mode "auto" it is optional (a kernel that refuses it leaves
 * the gateway without kernel drops, said at start and in `easctl status`),
 * with "native"/"generic" it is demanded. SK_REUSEPORT is always optional.
 */
static int setup_bpf(struct master *m)
{
	const struct gw_config *c = m->cfg;
	if (!c->xdp.nifaces) {
		kfeat_set(&m->kf, KFEAT_XDP, 0, NULL, "xdp.interfaces is empty");
		kfeat_set(&m->kf, KFEAT_REUSEPORT, 0, NULL,
			  "xdp.interfaces is empty (the BPF programs are loaded with XDP only)");
		return 0;
	}
	struct bpfmaps_opts o = {.pin_dir = c->xdp.pin_dir, .flags = BPFMAPS_F_BEST_EFFORT};
	int err = 0;
	/* Best effort: a kernel's refusal leaves a program out; what fails the
	 * open is ours to fix (privileges, the pin directory). */
	m->bpf = bpfmaps_open_opts(&o, &err);
	if (!m->bpf) {
		log_err("event=bpf_open_failed pin_dir=%s error=%s fix=\"%s\"", c->xdp.pin_dir,
			strerror(-err),
			err == -EPERM || err == -EACCES
			    ? "loading BPF needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"
			    : "xdp.pin_dir must be a directory under /sys/fs/bpf (a bpffs)");
		return -1;
	}
	if (!bpfmaps_loaded(m->bpf, BPFMAPS_PROG_REUSEPORT))
		kfeat_set(&m->kf, KFEAT_REUSEPORT, 0, NULL,
			  bpfmaps_why(m->bpf, BPFMAPS_PROG_REUSEPORT));
	if (!bpfmaps_loaded(m->bpf, BPFMAPS_PROG_XDP)) {
		char q[240];
		const char *why = bpfmaps_why(m->bpf, BPFMAPS_PROG_XDP);
		if (c->xdp.mode != BPFMAPS_XDP_AUTO) {
			log_err("event=xdp_unavailable mode=%s why=%s fix=\"this kernel refused "
				"the XDP program: set xdp.mode = \\\"auto\\\" to run without it, "
				"or empty xdp.interfaces\"",
				xdp_mode_key(c->xdp.mode),
				log_quote(q, sizeof(q), why, (size_t)-1));
			return -1;
		}
		kfeat_set(&m->kf, KFEAT_XDP, 0, NULL, why);
		return 0;
	}
	struct eg_xdp_cfg xc = {.syn_rate = c->xdp.syn_rate, .syn_burst = c->xdp.syn_burst};
	int np = 0;
	for (int a = 0; a < c->nlisten && np < EG_MAX_GUARDED_PORTS; a++)
		if (!c->listen[a].plain) /* a proxy in front: its SYNs are not a phone's */
			xc.ports[np++] = ((struct sockaddr_in *)&c->listen[a].ss)->sin_port;
	bpfmaps_set_cfg(m->bpf, &xc);
	return attach_xdp_all(m);
}

/*
 * How relayed bytes move. The kernel is probed once at start (by doing each
 * thing, while the capabilities to load BPF are still there); the choice is
 * made again on every reload from that probe and relay_method. Only two
 * plaintext legs can move a body in the kernel: the phone's TLS is OpenSSL
 * in user space, so a TLS leg would need kernel TLS. The workers a
 * generation forks inherit the choice (bodysplice_set_path).
 */
/*
 * Kernel TLS for the phone legs (ktls.h): where the probe found it, with
 * tls.ktls "on", or "auto" and measured at least KTLS_MARGIN cheaper than
 * OpenSSL here (ktlscost.h, once per start). The feature's note says which,
 * and why (`easctl status`, the start log).
 */
#define KTLS_MARGIN 0.10
static void choose_ktls(struct master *m, const struct gw_config *c)
{
	struct kfeat_item *f = &m->kf.f[KFEAT_KTLS];
	char note[200], detail[sizeof(f->detail)];
	const struct ktlscost *k = &m->ktls_cost;
	m->ktls_used = 0;
	if (f->state != KFEAT_ON) {
		ktls_set_path(0);
		return;
	}
	if (c->tls.ktls == CFG_KTLS_AUTO && !m->ktls_measured) {
		m->ktls_measured = ktlscost_measure(&m->ktls_cost, 4u << 20, 3) == 0 ? 1 : -1;
		log_info("event=ktls_cost user_s_per_gb=%.3f kernel_s_per_gb=%.3f bytes=%zu "
			 "rounds=%d why=\"%s\"",
			 k->user_s_per_gb, k->kernel_s_per_gb, k->bytes, k->rounds, k->why);
	}
	if (c->tls.ktls == CFG_KTLS_OFF) {
		snprintf(note, sizeof(note), "not used: tls.ktls = off");
	} else if (c->tls.ktls == CFG_KTLS_ON) {
		m->ktls_used = 1;
		snprintf(note, sizeof(note), "used for phone connections: tls.ktls = on");
	} else if (m->ktls_measured < 0) {
		snprintf(note, sizeof(note), "not used: tls.ktls = auto, cost not measured (%s)",
			 k->why);
	} else {
		m->ktls_used = k->kernel_s_per_gb <= k->user_s_per_gb * (1 - KTLS_MARGIN);
		snprintf(note, sizeof(note),
			 "%s: tls.ktls = auto, measured kernel %.3f vs OpenSSL %.3f CPU s/GB",
			 m->ktls_used ? "used for phone connections" : "not used, not cheaper here",
			 k->kernel_s_per_gb, k->user_s_per_gb);
	}
	if (m->ktls_probe_why[0])
		snprintf(note + strlen(note), sizeof(note) - strlen(note), "; %s",
			 m->ktls_probe_why);
	snprintf(detail, sizeof(detail), "%s", f->detail);
	kfeat_set(&m->kf, KFEAT_KTLS, 1, detail, note);
	ktls_set_path(m->ktls_used ? m->kf.ktls_ok : 0);
}

static void choose_relay_path(struct master *m, const struct gw_config *c)
{
	if (!m->relay_probed) {
		krelay_probe(&m->relay_caps);
		kfeat_from_krelay(&m->kf, &m->relay_caps);
		kfeat_probe_ktls(&m->kf);
		snprintf(m->ktls_probe_why, sizeof(m->ktls_probe_why), "%s",
			 m->kf.f[KFEAT_KTLS].why);
		m->relay_probed = 1;
	}
	choose_ktls(m, c);
	const struct krelay_caps *k = &m->relay_caps;
	const char *plain = krelay_default_method(k, NULL);
	if (!strcmp(c->relay_method, "user"))
		plain = "user";
	else if (!strcmp(c->relay_method, "splice")) {
		plain = k->splice ? "splice" : "user";
		if (!k->splice)
			log_warn("event=relay_method_unavailable method=splice note=\"this kernel "
				 "refused splice between sockets: user space it is\"");
	}
	struct bodysplice_path rp = {.splice = !strcmp(plain, "splice"),
				     .min_body = krelay_pref_measured.min_body,
				     .pipe_size = krelay_pref_measured.pipe_size};
	bodysplice_set_path(&rp);
	char why[160];
	if (m->ktls_used)
		snprintf(why, sizeof(why), "kernel TLS: bodies of kTLS phone legs move as %s",
			 plain);
	else if (k->ktls)
		snprintf(why, sizeof(why), "kernel TLS present, not used (see feature ktls)");
	else
		snprintf(why, sizeof(why), "kernel TLS absent: %s",
			 k->ktls_why[0] ? k->ktls_why : "probe failed");
	snprintf(m->relay_path, sizeof(m->relay_path),
		 "tls_legs=%s plaintext_legs=%s configured=%s min_body=%llu pipe=%zu "
		 "splice=%d sockmap=%d ktls=%d why=\"%s\"",
		 m->ktls_used ? "kernel" : "user", plain, c->relay_method,
		 (unsigned long long)rp.min_body, rp.pipe_size, k->splice, k->sockmap, k->ktls,
		 why);
	char line[512];
	log_info("event=relay_path %s probe=\"%s\"", m->relay_path,
		 krelay_describe(line, sizeof(line), k, NULL));
}

/* --- the store's hooks (store.h) ------------------------------------------------ */

static void start_workers(struct master *m)
{
	if (m->serving || !m->can_serve || m->stopping)
		return;
	m->serving = 1;
	loop_timer_cancel(m->loop, &m->store_wait);
	for (int s = 0; s < m->nworkers; s++)
		if (spawn_worker(m, s) < 0)
			log_err("event=worker_spawn_failed slot=%d", s);
	log_info("event=serving workers=%d store_ready=%d", m->nworkers, m->store_ready);
}

static void store_wait_over(struct loop_timer *t)
{
	struct master *m = t->arg;
	log_warn("event=store_first_sync_timeout note=\"serving with what this node has: its "
		 "configuration and an empty snapshot\"");
	start_workers(m);
}

static void on_store_ready(void *arg)
{
	struct master *m = arg;
	m->store_ready = 1;
	start_workers(m);
}

static void on_store_secret(void *arg, const char *hex)
{
	struct master *m = arg;
	struct siphash_key k;
	if (siphash_key_from_hex(&k, hex) < 0) {
		log_err(
		    "event=farm_steering_secret_bad note=\"want 32 hex characters; ours kept\"");
		return;
	}
	if (k.k0 == m->secret.k0 && k.k1 == m->secret.k1)
		return;
	m->secret = k;
	store_secret_file(m, hex);
	log_info("event=farm_steering_secret note=\"the farm's secret replaces this node's\"");
	if (!m->serving)
		return;
	/* Workers hash with the secret they were forked with: a new
	 * generation, as a reload does (the old one drains). */
	m->gen++;
	for (int s = 0; s < m->nworkers; s++)
		spawn_worker(m, s);
	signal_old(m, m->gen, SIGTERM);
}

static void on_store_node(void *arg, struct inv_node *self)
{
	struct master *m = arg;
	struct stats sum;
	stats_sum(m->shm->worker_stats, EG_MAX_WORKERS, &sum);
	snprintf(self->version, sizeof(self->version), "%s", m->version ? m->version : "");
	self->config_gen = (int64_t)m->gen;
	self->requests_total = (int64_t)sum.duration_count;
}

int master_run(const struct config_cmdline *o, const char *version)
{
	struct master *m = calloc(1, sizeof(*m));
	struct config_errors errs = {0};
	int rc = 1;
	if (!m)
		return 1;
	m->opts = o;
	m->version = version;
	kfeat_init(&m->kf);
	log_set_proc("master");
	signal(SIGPIPE, SIG_IGN);
	m->cfg = calloc(1, sizeof(*m->cfg));
	if (!m->cfg || config_load_cmdline(o, m->cfg, &errs) < 0) {
		config_log_errors(&errs);
		free(m->cfg);
		free(m);
		return 1;
	}
	log_set_level((enum log_level)log_level_parse(m->cfg->log_level));
	warn_tls_config(m->cfg);
	if (master_check_certs(m->cfg, 1) < 0) {
		log_err("event=start_refused reason=\"certificate check failed\"");
		goto out;
	}
	if (mkdir_p(m->cfg->state_dir, 0750) < 0) {
		log_err("event=state_dir_failed path=%s error=%m", m->cfg->state_dir);
		goto out;
	}
	char rundir[PATH_MAX];
	snprintf(rundir, sizeof(rundir), "%s", m->cfg->control_socket);
	char *slash = strrchr(rundir, '/');
	if (slash && slash != rundir) {
		*slash = 0;
		mkdir_p(rundir, 0750);
	}
	if (load_secret(m) < 0 || setup_identity(m) < 0)
		goto out;
	if (geteuid() == 0) {
		if (chown(m->cfg->state_dir, m->uid, m->gid) < 0)
			log_warn("event=chown_failed path=%s error=%m", m->cfg->state_dir);
		if (slash && slash != rundir && chown(rundir, m->uid, m->gid) < 0)
			log_warn("event=chown_failed path=%s error=%m", rundir);
	}
	m->shm = shm_create();
	m->loop = loop_new();
	if (!m->shm || !m->loop)
		goto out;
	cert_shm = m->shm;
	master_check_certs(m->cfg, 0); /* publish for metrics */
	/* Checked just now: the next in an hour, not at the first tick. Each check
	 * reads the key, and OpenSSL 3.0's PEM decoder frees its DER unwiped. */
	m->certs_checked_ms = loop_now_ms(m->loop);
	m->ticket_rotated_ms = loop_now_ms(m->loop);
	m->nworkers = config_worker_count(m->cfg);
	for (int i = 0; i < m->cfg->nbackends; i++)
		shm_backend_slot(m->shm, m->cfg->backends[i].name);
	if (ensure_listeners(m, m->cfg) < 0)
		goto out;
	char terr[512];
	m->tls = tls_server_new(m->cfg, m->shm, terr, sizeof(terr));
	if (!m->tls) {
		log_err("event=tls_failed error=\"%s\"", terr);
		goto out;
	}
	if (setup_bpf(m) < 0)
		goto out;
	if (m->bpf)
		bpfmaps_workers_reset(m->bpf); /* slots of a previous daemon mean nothing */
	setup_reuseport(m);
	mirror_steering(m, 1);
	char err[320];
	if (gate_load_builds(m->cfg, err, sizeof(err)) < 0) {
		log_err("event=ios_builds_failed error=\"%s\"", err);
		goto out;
	}
	loop_timer_init(&m->store_wait, store_wait_over, m);
	struct store_hooks up = {
	    .arg = m, .ready = on_store_ready, .secret = on_store_secret, .node = on_store_node};
	m->admin = admin_new(m->loop, m->cfg, m->shm, &up, err, sizeof(err));
	if (!m->admin) {
		log_err("event=admin_failed error=\"%s\"", err);
		goto out;
	}
	if (setup_throttle(m, m->cfg, err, sizeof(err)) < 0) {
		log_err("event=throttle_failed error=\"%s\"", err);
		goto out;
	}
	admin_set_throttle(m->admin, m->throttle);
	/* Sized once, from the start config: a worker never has more sources
	 * than connections. Virtual until used (MAP_NORESERVE). */
	m->srccap = srccap_new(EG_MAX_WORKERS, m->cfg->limits.max_conns < (1u << 17)
						   ? m->cfg->limits.max_conns
						   : (1u << 17));
	if (!m->srccap) {
		log_err("event=srccap_failed error=%m");
		goto out;
	}
	if (m->bpf) /* counts start at 0: a previous daemon's capped sources are not */
		bpfmaps_src_cap_clear(m->bpf);
	m->history = history_new();
	m->notify = notify_new(m->loop, m->cfg, err, sizeof(err));
	if (!m->history || !m->notify) {
		log_err("event=notify_failed error=\"%s\"", m->history ? err : "out of memory");
		goto out;
	}
	admin_set_notify(m->admin, m->notify);
	m->control = control_new(m->loop, m->cfg->control_socket, m->uid, m->gid, commands, m);
	if (!m->control)
		goto out;
	if (m->cfg->admin.web[0]) {
		m->console = console_new(m->loop, m->cfg, &m->tls, commands, m, err, sizeof(err));
		if (!m->console) {
			log_err("event=console_failed error=\"%s\"", err);
			goto out;
		}
	}
	if (m->cfg->admin.metrics[0]) {
		m->metrics =
		    metrics_new(m->loop, &m->cfg->admin.metrics_addr, m->shm, m->admin, &m->bpf);
		if (!m->metrics)
			goto out;
	}
	if (geteuid() == 0) {
		/* Files the workers open later must be theirs (inventory, secret). */
		admin_chown_state(m->admin, m->uid, m->gid);
		char path[PATH_MAX + 32];
		snprintf(path, sizeof(path), "%s/steering.key", m->cfg->state_dir);
		if (chown(path, m->uid, m->gid) < 0 && errno != ENOENT)
			log_warn("event=chown_failed path=%s error=%m", path);
	}
	/* From here on the master needs: new listeners on reload (low ports),
	 * reading private keys on reload (root-only files) and, with XDP,
	 * attaching programs. Nothing else; workers keep nothing. */
	choose_relay_path(m, m->cfg); /* before the capabilities to load BPF are gone */
	kfeat_log(&m->kf);
	if (m->cfg->tls.ktls == CFG_KTLS_ON && !m->ktls_used) {
		char q[240];
		log_err(
		    "event=ktls_unavailable why=%s fix=\"this kernel has no kernel TLS (TCP_ULP "
		    "tls, CONFIG_TLS): set tls.ktls = \\\"auto\\\" or \\\"off\\\"\"",
		    log_quote(q, sizeof(q), m->kf.f[KFEAT_KTLS].why, (size_t)-1));
		goto out;
	}
	unsigned long long keep = PRIV_CAP_NET_BIND_SERVICE | PRIV_CAP_DAC_READ_SEARCH;
	if (m->bpf)
		keep |= PRIV_CAP_NET_ADMIN | PRIV_CAP_BPF | PRIV_CAP_PERFMON;
	if (priv_drop_to(m->uid, m->gid, keep) < 0)
		goto out;
	loop_timer_init(&m->tick, on_tick, m);
	loop_timer_init(&m->watchdog, on_watchdog, m);
	loop_timer_init(&m->stop_deadline, stop_deadline, m);
	loop_timer_init(&m->respawn, on_respawn, m);
	/* What a worker forks and orphans is adopted here, not by init: it stays
	 * a descendant, which the control socket refuses (peercred.h). on_child
	 * reaps such strangers. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		log_warn("event=subreaper_failed error=%m");
	if (loop_signal(m->loop, SIGCHLD, on_child, m) < 0 ||
	    loop_signal(m->loop, SIGHUP, on_signal, m) < 0 ||
	    loop_signal(m->loop, SIGTERM, on_signal, m) < 0 ||
	    loop_signal(m->loop, SIGINT, on_signal, m) < 0)
		goto out;
	m->gen = 1;
	m->checker = checker_new(m->loop, m->shm, m->cfg);
	/* After SIGCHLD is watched: fetches run in child processes. */
	m->ocsp = ocsp_stapler_new(m->loop, m->shm);
	if (!m->ocsp)
		goto out;
	ocsp_stapler_configure(m->ocsp, m->cfg);
	m->can_serve = 1;
	if (m->store_ready) {
		start_workers(m);
		if (!count_procs(m))
			goto out;
	} else {
		log_info("event=store_first_sync_wait max_ms=%u", m->cfg->pg.initial_sync_ms);
		loop_timer_set(m->loop, &m->store_wait, m->cfg->pg.initial_sync_ms);
	}
	loop_timer_set(m->loop, &m->tick, 1000);
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec) {
		m->watchdog_ms = usec / 2000;
		if (!m->watchdog_ms)
			m->watchdog_ms = 1;
		m->schedstat = runwait_available();
		if (!m->schedstat)
			log_warn(
			    "event=watchdog_wall_clock note=\"no /proc/self/schedstat (a kernel "
			    "without schedstats): a worker kept off the CPU counts as silent\"");
		loop_timer_set(m->loop, &m->watchdog, m->watchdog_ms);
	}
	log_info("event=started pid=%d workers=%d listen=%s backends=%d user_uid=%u xdp=%s "
		 "control=%s",
		 getpid(), m->nworkers, m->cfg->listen[0].text, m->cfg->nbackends, (unsigned)m->uid,
		 m->kf.f[KFEAT_XDP].state == KFEAT_ON ? "on" : "off", m->cfg->control_socket);
	sd_notify(0, "READY=1");
	notify_status(m);
	loop_run(m->loop);
	rc = 0;
out:
	if (rc)
		log_err("event=start_failed");
	for (int i = 0; i < MAX_PROCS; i++)
		if (m->procs[i].pid) {
			kill(m->procs[i].pid, SIGKILL);
			waitpid(m->procs[i].pid, NULL, 0);
		}
	checker_free(m->checker);
	ocsp_stapler_free(m->ocsp);
	admin_set_notify(m->admin, NULL);
	/* The store first: it answers the easctl and console clients it keeps
	 * waiting (their jobs are freed with them below). */
	admin_free(m->admin);
	m->admin = NULL;
	control_free(m->control);
	metrics_free(m->metrics);
	console_free(m->console);
	notify_free(m->notify);
	history_free(m->history);
	if (m->bpf)
		bpfmaps_close(m->bpf); /* pins and the XDP program stay: verdicts keep working */
	tls_server_free(m->tls);
	throttle_free(m->throttle);
	srccap_free(m->srccap);
	maglev_free(&m->mirror_mg);
	loop_free(m->loop);
	for (int i = 0; i < m->nsocks; i++)
		for (int s = 0; s < EG_MAX_WORKERS; s++)
			if (m->socks[i].fds[s] >= 0)
				close(m->socks[i].fds[s]);
	if (m->shm)
		shm_destroy(m->shm);
	config_free(m->cfg);
	free(m->cfg);
	free(m);
	log_info("event=stopped");
	return rc;
}
