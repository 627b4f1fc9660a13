/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * kfeat.c - the kernel feature report: records, the kernel TLS round trip,
 * the configuration-free probe, and its log and status lines. See kfeat.h.
 */
#include "kfeat.h"
#include "bpfmaps.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <linux/tls.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

static const char *const kfeat_names[KFEAT__COUNT] = {
    "xdp", "reuseport", "splice", "sockmap", "sk_skb", "sk_msg", "ktls",
};

const char *kfeat_name(enum kfeat_id id)
{
	return (unsigned)id < KFEAT__COUNT ? kfeat_names[id] : NULL;
}

void kfeat_init(struct kfeat *k)
{
	struct utsname u;

	memset(k, 0, sizeof(*k));
	if (uname(&u) == 0)
		snprintf(k->kernel, sizeof(k->kernel), "%s", u.release);
}

void kfeat_set(struct kfeat *k, enum kfeat_id id, int on, const char *detail, const char *why)
{
	struct kfeat_item *f;

	if ((unsigned)id >= KFEAT__COUNT)
		return;
	f = &k->f[id];
	f->state = on ? KFEAT_ON : KFEAT_OFF;
	snprintf(f->detail, sizeof(f->detail), "%s", detail ? detail : "");
	snprintf(f->why, sizeof(f->why), "%s", why ? why : "");
}

int kfeat_forced_off(const char *name)
{
	const char *list = getenv("EASGATE_TEST_KFEAT_OFF");
	size_t n = strlen(name);

	for (const char *p = list; p && *p;) {
		size_t l = strcspn(p, ", ");

		if (l == n && !strncmp(p, name, n))
			return 1;
		p += l;
		p += strspn(p, ", ");
	}
	return 0;
}

void kfeat_from_krelay(struct kfeat *k, const struct krelay_caps *c)
{
	/* krelay_caps keeps the first BPF failure only; it explains every
	 * BPF method that is off, since they share the program. */
	const char *bw = c->why[0] ? c->why : "probe failed";

	kfeat_set(k, KFEAT_SPLICE, c->splice, NULL,
		  c->splice	     ? NULL
		  : c->splice_why[0] ? c->splice_why
				     : bw);
	kfeat_set(k, KFEAT_SOCKMAP, c->sockmap, NULL, c->sockmap ? NULL : bw);
	kfeat_set(k, KFEAT_SK_SKB, c->verdict, NULL, c->verdict ? NULL : bw);
	kfeat_set(k, KFEAT_SK_MSG, c->skmsg, NULL, c->skmsg ? NULL : bw);
}

/* ---- kernel TLS ---------------------------------------------------------------- */

/* Key material of the largest crypto_info; the probe's keys are all zero. */
union kfeat_tls_info {
	struct tls_crypto_info base;
	struct tls12_crypto_info_aes_gcm_128 gcm128;
	struct tls12_crypto_info_aes_gcm_256 gcm256;
	struct tls12_crypto_info_chacha20_poly1305 chacha;
};

struct kfeat_cipher {
	const char *name;
	unsigned short type;
	socklen_t len;
};

static const struct kfeat_cipher kfeat_ciphers[] = {
    {"aes-gcm-128", TLS_CIPHER_AES_GCM_128, sizeof(struct tls12_crypto_info_aes_gcm_128)},
    {"aes-gcm-256", TLS_CIPHER_AES_GCM_256, sizeof(struct tls12_crypto_info_aes_gcm_256)},
    {"chacha20-poly1305", TLS_CIPHER_CHACHA20_POLY1305,
     sizeof(struct tls12_crypto_info_chacha20_poly1305)},
};

int kfeat_loopback_listener(int backlog)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, backlog) < 0) {
		int e = -errno;

		if (lfd >= 0)
			close(lfd);
		return e;
	}
	return lfd;
}

int kfeat_loopback_pair(int lfd, int *c, int *a)
{
	struct sockaddr_in sa;
	socklen_t l = sizeof(sa);

	*c = *a = -1;
	if (getsockname(lfd, (struct sockaddr *)&sa, &l) < 0)
		return -errno;
	*c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*c < 0 || connect(*c, (struct sockaddr *)&sa, l) < 0)
		return -errno;
	*a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	return *a < 0 ? -errno : 0;
}

/*
 * One record from c (TLS_TX) to a (TLS_RX) with the same zero keys. 0 if it
 * arrived decrypted; -errno otherwise, *step says which call failed.
 */
static int kfeat_tls_trip(int lfd, unsigned short version, const struct kfeat_cipher *ci,
			  const char **step)
{
	static const char msg[] = "easgate";
	union kfeat_tls_info info;
	char buf[sizeof(msg)];
	struct pollfd p;
	int c, a, e;

	*step = "loopback pair";
	if ((e = kfeat_loopback_pair(lfd, &c, &a)) < 0)
		goto out;
	memset(&info, 0, sizeof(info));
	info.base.version = version;
	info.base.cipher_type = ci->type;
	*step = "TCP_ULP \"tls\"";
	if (setsockopt(c, IPPROTO_TCP, TCP_ULP, "tls", 3) < 0 ||
	    setsockopt(a, IPPROTO_TCP, TCP_ULP, "tls", 3) < 0) {
		e = -errno;
		goto out;
	}
	*step = "TLS_TX";
	if (setsockopt(c, SOL_TLS, TLS_TX, &info, ci->len) < 0) {
		e = -errno;
		goto out;
	}
	*step = "TLS_RX";
	if (setsockopt(a, SOL_TLS, TLS_RX, &info, ci->len) < 0) {
		e = -errno;
		goto out;
	}
	*step = "record round trip";
	e = -EIO;
	if (send(c, msg, sizeof(msg), 0) != (ssize_t)sizeof(msg))
		goto out;
	p = (struct pollfd){.fd = a, .events = POLLIN};
	if (poll(&p, 1, 1000) == 1 && recv(a, buf, sizeof(buf), MSG_DONTWAIT) == sizeof(msg) &&
	    !memcmp(buf, msg, sizeof(msg)))
		e = 0;
out:
	if (c >= 0)
		close(c);
	if (a >= 0)
		close(a);
	return e;
}

void kfeat_probe_ktls(struct kfeat *k)
{
	static const struct {
		unsigned short v;
		const char *name;
	} versions[] = {{TLS_1_2_VERSION, "1.2"}, {TLS_1_3_VERSION, "1.3"}};
	char ciphers[96] = "", vers[16] = "", why[200] = "";
	int any = 0, lfd, vok[2] = {0, 0};

	k->ktls_ok = 0;
	if (kfeat_forced_off("ktls")) {
		kfeat_set(k, KFEAT_KTLS, 0, NULL, KFEAT_FORCED_WHY);
		return;
	}
	lfd = kfeat_loopback_listener(8);
	if (lfd < 0) {
		snprintf(why, sizeof(why), "loopback listener: %s", strerror(-lfd));
		kfeat_set(k, KFEAT_KTLS, 0, NULL, why);
		return;
	}
	for (size_t i = 0; i < sizeof(kfeat_ciphers) / sizeof(kfeat_ciphers[0]); i++) {
		int ok = 0;

		for (size_t v = 0; v < 2; v++) {
			const char *step;
			int e = kfeat_tls_trip(lfd, versions[v].v, &kfeat_ciphers[i], &step);

			if (!e) {
				ok++;
				vok[v] = 1;
				k->ktls_ok |= KFEAT_KTLS_BIT(v, i);
			} else if (!why[0]) {
				snprintf(why, sizeof(why), "%s TLS %s: %s: %s",
					 kfeat_ciphers[i].name, versions[v].name, step,
					 strerror(-e));
			}
		}
		if (ok) {
			any = 1;
			snprintf(ciphers + strlen(ciphers), sizeof(ciphers) - strlen(ciphers),
				 "%s%s%s", ciphers[0] ? "," : "", kfeat_ciphers[i].name,
				 ok == 2 ? "" : "(one version)");
		}
	}
	close(lfd);
	snprintf(vers, sizeof(vers), "%s%s%s", vok[0] ? "1.2" : "", vok[0] && vok[1] ? "," : "",
		 vok[1] ? "1.3" : "");
	if (any) {
		char detail[160];

		snprintf(detail, sizeof(detail), "ciphers=%s versions=%s", ciphers, vers);
		kfeat_set(k, KFEAT_KTLS, 1, detail, why);
	} else {
		kfeat_set(k, KFEAT_KTLS, 0, NULL, why);
	}
}

/* ---- without a configuration ----------------------------------------------------- */

/* SK_REUSEPORT: a listener group of two on loopback, the program attached. */
static void kfeat_probe_reuseport(struct kfeat *k, struct bpfmaps *g)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(sa);
	int fd[2] = {-1, -1}, one = 1, e = 0;
	char why[200];

	for (int i = 0; i < 2 && !e; i++) {
		fd[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd[i] < 0 ||
		    setsockopt(fd[i], SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
		    bind(fd[i], (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    (i == 0 && getsockname(fd[i], (struct sockaddr *)&sa, &l) < 0) ||
		    listen(fd[i], 8) < 0)
			e = -errno;
	}
	if (!e)
		e = bpfmaps_reuseport_attach(g, fd[0]);
	if (!e)
		e = bpfmaps_reuseport_register(g, 0, 0, fd[0]);
	if (!e)
		e = bpfmaps_reuseport_register(g, 0, 1, fd[1]);
	for (int i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	snprintf(why, sizeof(why), "attach to a loopback listener group: %s", strerror(-e));
	kfeat_set(k, KFEAT_REUSEPORT, !e, NULL, e ? why : NULL);
}

/* XDP on loopback: native (no driver support there: reported, not a failure), else generic. */
static void kfeat_probe_xdp_lo(struct kfeat *k, struct bpfmaps *g)
{
	const char *mode = NULL;
	char detail[160], why[200] = "";
	int e = bpfmaps_attach_xdp(g, "lo", BPFMAPS_XDP_AUTO, &mode);
	int ne = bpfmaps_xdp_native_err(g);

	if (e) {
		snprintf(why, sizeof(why), "attach to lo: %s", strerror(-e));
		kfeat_set(k, KFEAT_XDP, 0, NULL, why);
		return;
	}
	snprintf(detail, sizeof(detail), "lo=%s", mode ? mode : "?");
	if (ne)
		snprintf(why, sizeof(why),
			 "native on lo: %s (per driver; decided per interface at start)",
			 strerror(-ne));
	kfeat_set(k, KFEAT_XDP, 1, detail, why);
}

void kfeat_probe_all(struct kfeat *k, int own_netns)
{
	struct bpfmaps_opts o = {.pin_dir = NULL, .flags = BPFMAPS_F_BEST_EFFORT};
	struct krelay_caps caps;
	struct bpfmaps *g;
	char why[200];
	int err = 0;

	kfeat_init(k);
	g = bpfmaps_open_opts(&o, &err);
	if (!g) {
		snprintf(why, sizeof(why), "no program loaded: %s%s", strerror(-err),
			 err == -EPERM ? " (needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
				       : "");
		kfeat_set(k, KFEAT_XDP, 0, NULL, why);
		kfeat_set(k, KFEAT_REUSEPORT, 0, NULL, why);
	} else {
		if (bpfmaps_loaded(g, BPFMAPS_PROG_XDP) && own_netns)
			kfeat_probe_xdp_lo(k, g);
		else if (bpfmaps_loaded(g, BPFMAPS_PROG_XDP))
			kfeat_set(k, KFEAT_XDP, 1, "loaded",
				  "not attached: no network namespace of its own to try it in");
		else
			kfeat_set(k, KFEAT_XDP, 0, NULL, bpfmaps_why(g, BPFMAPS_PROG_XDP));
		if (bpfmaps_loaded(g, BPFMAPS_PROG_REUSEPORT))
			kfeat_probe_reuseport(k, g);
		else
			kfeat_set(k, KFEAT_REUSEPORT, 0, NULL,
				  bpfmaps_why(g, BPFMAPS_PROG_REUSEPORT));
		bpfmaps_close(g);
	}
	krelay_probe(&caps);
	kfeat_from_krelay(k, &caps);
	kfeat_probe_ktls(k);
}

/* ---- output ----------------------------------------------------------------------- */

static const char *kfeat_state_name(enum kfeat_state s)
{
	return s == KFEAT_ON ? "on" : s == KFEAT_OFF ? "off" : "unknown";
}

const char *kfeat_line(const struct kfeat *k, enum kfeat_id id, char *out, size_t outsz)
{
	const struct kfeat_item *f = &k->f[id];
	char q[240];

	snprintf(out, outsz, "feature %s %s%s%s%s%s", kfeat_name(id), kfeat_state_name(f->state),
		 f->detail[0] ? " " : "", f->detail,
		 !f->why[0]		? ""
		 : f->state == KFEAT_ON ? " note="
					: " why=",
		 f->why[0] ? log_quote(q, sizeof(q), f->why, (size_t)-1) : "");
	return out;
}

void kfeat_log(const struct kfeat *k)
{
	char line[512], q[240];
	size_t n;

	n = (size_t)snprintf(line, sizeof(line), "event=kernel_features kernel=%s", k->kernel);
	for (int i = 0; i < KFEAT__COUNT && n < sizeof(line); i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%s", kfeat_names[i],
				      kfeat_state_name(k->f[i].state));
	log_info("%s", line);
	for (int i = 0; i < KFEAT__COUNT; i++) {
		const struct kfeat_item *f = &k->f[i];

		if (f->state == KFEAT_OFF)
			log_warn("event=kernel_feature_off name=%s why=%s", kfeat_names[i],
				 log_quote(q, sizeof(q), f->why, (size_t)-1));
		else if (f->state == KFEAT_ON && (f->detail[0] || f->why[0]))
			log_info("event=kernel_feature name=%s state=on %s%s%s", kfeat_names[i],
				 f->detail, f->why[0] ? " note=" : "",
				 f->why[0] ? log_quote(q, sizeof(q), f->why, (size_t)-1) : "");
	}
}
