/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* srcadmit.c - see srcadmit.h. */
#include "srcadmit.h"
#include "bpfmaps.h"
#include "log.h"
#include "srccap.h"
#include "worker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* The whole address (not the /64) as the exempt prefixes are written. */
static int full_addr(const struct sockaddr *sa, uint8_t out[16])
{
	memset(out, 0, 16);
	if (sa->sa_family == AF_INET) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		return 0;
	}
	return -1;
}

static int exempt_addr(const struct gw_config *cfg, const uint8_t a[16])
{
	for (int i = 0; i < cfg->limits.ncap_exempt; i++)
		if (config_prefix_match(&cfg->limits.cap_exempt[i], a))
			return 1;
	return 0;
}

static int exempt(const struct gw_config *cfg, const struct sockaddr *peer)
{
	uint8_t a[16];
	if (full_addr(peer, a) < 0)
		return 1;
	return exempt_addr(cfg, a);
}

static void tell_kernel(struct worker *w, const uint8_t src[16], unsigned conns)
{
	struct eg_src_cap v = {
	    .action = w->cfg->xdp.action_rst ? EG_ACT_RST : EG_ACT_DROP,
	    .conns = conns,
	    .cap = w->cfg->limits.max_conns_per_source,
	    .expires_ns = eg_mono_ns() + (uint64_t)SRCADMIT_XDP_TTL_S * 1000000000ull,
	};
	bpfmaps_src_cap_set(w->bpf, src, &v);
}

static const char *addr_text(const struct sockaddr *sa, char *buf, size_t n)
{
	const void *a = sa->sa_family == AF_INET6
			    ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
			    : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
	if (!inet_ntop(sa->sa_family, a, buf, (socklen_t)n))
		snprintf(buf, n, "?");
	return buf;
}

int srcadmit_take(struct worker *w, const struct sockaddr *peer, uint64_t *tag)
{
	static uint64_t last_refusal_log_ms, last_full_log_ms;
	unsigned cap = w->cfg->limits.max_conns_per_source;
	uint8_t src[16];
	*tag = 0;
	if (!cap || !w->srccap || srccap_source(peer, src) < 0 || exempt(w->cfg, peer))
		return 0;
	uint64_t t = srccap_tag(&w->steer_secret, src);
	unsigned n = srccap_count(w->srccap, t);
	uint64_t now = loop_now_ms(w->loop);
	char q[64];
	if (n >= cap) {
		w->stats->source_cap_refused++;
		/* A flood must not become a flood of log lines: one a second. */
		if (now - last_refusal_log_ms >= 1000 || !last_refusal_log_ms) {
			last_refusal_log_ms = now;
			log_warn("event=source_cap_refused client=%s conns=%u cap=%u",
				 addr_text(peer, q, sizeof(q)), n, cap);
		}
		if (w->bpf) /* its entry expired or lost a race: write it again */
			tell_kernel(w, src, n);
		return -1;
	}
	if (srccap_add(w->srccap, (unsigned)w->srccap_slot, t) < 0) {
		if (now - last_full_log_ms >= 60000 || !last_full_log_ms) {
			last_full_log_ms = now;
			log_warn("event=source_table_full note=\"new sources are not counted "
				 "until some close; raise limits.max_connections\"");
		}
		return 0;
	}
	*tag = t;
	if (w->bpf && n + 1 >= cap)
		tell_kernel(w, src, n + 1);
	return 0;
}

void srcadmit_release(struct worker *w, const struct sockaddr *peer, uint64_t tag)
{
	uint8_t src[16];
	if (!tag || !w->srccap)
		return;
	srccap_del(w->srccap, (unsigned)w->srccap_slot, tag);
	unsigned cap = w->cfg->limits.max_conns_per_source;
	/* Just below the cap again: let its SYNs through (one syscall, only at
	 * that crossing). */
	if (w->bpf && cap && srccap_source(peer, src) == 0 &&
	    srccap_count(w->srccap, tag) + 1 == cap)
		bpfmaps_src_cap_del(w->bpf, src);
}

struct refresh {
	const struct srccap *sc;
	const struct siphash_key *secret;
	const struct gw_config *cfg;
	uint64_t now_ns;
};

static int refresh_one(void *arg, const uint8_t src[16], struct eg_src_cap *v)
{
	const struct refresh *r = arg;
	const uint64_t ttl = (uint64_t)SRCADMIT_XDP_TTL_S * 1000000000ull;
	const uint64_t fresh =
	    (uint64_t)(SRCADMIT_XDP_TTL_S - SRCADMIT_XDP_REFRESH_S) * 1000000000ull;
	unsigned cap = r->cfg->limits.max_conns_per_source;
	if (!cap || v->expires_ns > r->now_ns + fresh)
		return 0;
	/* An IPv6 key is the /64: matched as written, like the counting. */
	if (exempt_addr(r->cfg, src))
		return 0;
	unsigned n = srccap_count(r->sc, srccap_tag(r->secret, src));
	if (n < cap)
		return 0;
	v->conns = n;
	v->cap = cap;
	v->expires_ns = r->now_ns + ttl;
	return 1;
}

int srcadmit_refresh_kernel(struct bpfmaps *bpf, const struct srccap *sc,
			    const struct siphash_key *secret, const struct gw_config *cfg,
			    uint64_t now_ns)
{
	struct refresh r = {.sc = sc, .secret = secret, .cfg = cfg, .now_ns = now_ns};
	if (!bpf || !sc || !cfg->limits.max_conns_per_source)
		return 0;
	return bpfmaps_src_cap_each(bpf, refresh_one, &r);
}
