/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* metrics.c - see metrics.h. */
#include "metrics.h"
#include "admin.h"
#include "bpfmaps.h"
#include "eas_cmd.h"
#include "log.h"
#include "stats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct metrics {
	struct loop *loop;
	struct loop_io io;
	int fd;
	struct shm *shm;
	struct admin *admin;
	struct bpfmaps **bpf;
};

static const char *const verdict_names[SV__COUNT] = {"allow",	 "block",   "quarantine",
						     "throttle", "refused", "local"};

static const char *const xdp_reason_names[EG_STAT__MAX] = {
    "pass",	    "not_tcp",	"malformed", "flow_drop",  "flow_rst",
    "flow_expired", "lpm_drop", "rate_drop", "other_port", "conn_cap"};

void metrics_label(struct sbuf *o, const char *v)
{
	const char *run = v;
	for (; *v; v++) {
		const char *esc = *v == '\\'   ? "\\\\"
				  : *v == '"'  ? "\\\""
				  : *v == '\n' ? "\\n"
					       : NULL;
		if (!esc)
			continue;
		sbuf_put(o, run, (size_t)(v - run));
		sbuf_put(o, esc, 2);
		run = v + 1;
	}
	sbuf_put(o, run, (size_t)(v - run));
}

void metrics_render(struct sbuf *o, struct shm *s, struct admin *a, struct bpfmaps *bpf)
{
	struct stats *t = calloc(1, sizeof(*t));
	if (!t)
		return;
	stats_sum(s->worker_stats, EG_MAX_WORKERS, t);
	sbuf_printf(o, "# HELP easgate_requests_total Requests answered, by EAS command, HTTP "
		       "status and gateway verdict.\n# TYPE easgate_requests_total counter\n");
	for (int c = 0; c < STATS_NCMD; c++)
		for (int st = 0; st < STATS_NSTATUS; st++)
			for (int v = 0; v < SV__COUNT; v++) {
				uint64_t n = t->requests[c][st][v];
				if (!n)
					continue;
				int code = stats_status_code(st);
				char status[8];
				if (code)
					snprintf(status, sizeof(status), "%d", code);
				else
					snprintf(status, sizeof(status), "other");
				sbuf_printf(o,
					    "easgate_requests_total{command=\"%s\",status=\"%s\","
					    "verdict=\"%s\"} %llu\n",
					    eas_cmd_name(c), status, verdict_names[v],
					    (unsigned long long)n);
			}
	static const uint64_t bounds[] = STATS_DURATION_BOUNDS;
	sbuf_printf(o, "# HELP easgate_request_duration_seconds Time from request head to "
		       "response end.\n# TYPE easgate_request_duration_seconds histogram\n");
	uint64_t cum = 0;
	for (int b = 0; b < STATS_NBUCKETS; b++) {
		cum += t->duration_bucket[b];
		if (b < STATS_NBUCKETS - 1)
			sbuf_printf(o, "easgate_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
				    (double)bounds[b] / 1000.0, (unsigned long long)cum);
		else
			sbuf_printf(o,
				    "easgate_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
				    (unsigned long long)cum);
	}
	sbuf_printf(o, "easgate_request_duration_seconds_sum %.6f\n",
		    (double)t->duration_sum_us / 1e6);
	sbuf_printf(o, "easgate_request_duration_seconds_count %llu\n",
		    (unsigned long long)t->duration_count);
	sbuf_printf(o,
		    "# HELP easgate_tls_handshakes_total Completed TLS handshakes.\n"
		    "# TYPE easgate_tls_handshakes_total counter\n"
		    "easgate_tls_handshakes_total{resumed=\"false\"} %llu\n"
		    "easgate_tls_handshakes_total{resumed=\"true\"} %llu\n",
		    (unsigned long long)t->tls_handshakes, (unsigned long long)t->tls_resumed);
	sbuf_printf(o,
		    "# HELP easgate_tls_handshake_failures_total Failed or timed out TLS "
		    "handshakes.\n# TYPE easgate_tls_handshake_failures_total counter\n"
		    "easgate_tls_handshake_failures_total %llu\n",
		    (unsigned long long)t->tls_failures);
	sbuf_printf(o,
		    "# HELP easgate_connections Open client connections.\n"
		    "# TYPE easgate_connections gauge\neasgate_connections %lld\n",
		    (long long)t->conns_open);
	sbuf_printf(o,
		    "# HELP easgate_long_polls Hanging requests (Ping) in flight.\n"
		    "# TYPE easgate_long_polls gauge\neasgate_long_polls %lld\n",
		    (long long)t->hanging_open);
	sbuf_printf(o,
		    "# HELP easgate_heap_bytes Heap in use by the workers (malloc), for memory "
		    "per connection.\n# TYPE easgate_heap_bytes gauge\neasgate_heap_bytes %lld\n",
		    (long long)t->heap_bytes);
	sbuf_printf(o,
		    "# HELP easgate_http_refused_total Requests refused by the HTTP parser.\n"
		    "# TYPE easgate_http_refused_total counter\neasgate_http_refused_total %llu\n",
		    (unsigned long long)t->http_refused);
	sbuf_printf(o,
		    "# HELP easgate_slow_clients_closed_total Connections closed because a request "
		    "body arrived below limits.min_body_rate.\n"
		    "# TYPE easgate_slow_clients_closed_total counter\n"
		    "easgate_slow_clients_closed_total %llu\n",
		    (unsigned long long)t->slow_clients_closed);
	sbuf_printf(o,
		    "# HELP easgate_source_cap_refused_total New connections closed at accept "
		    "because their source had limits.max_connections_per_source open.\n"
		    "# TYPE easgate_source_cap_refused_total counter\n"
		    "easgate_source_cap_refused_total %llu\n",
		    (unsigned long long)t->source_cap_refused);
	sbuf_printf(o,
		    "# HELP easgate_relay_spliced_bytes_total Body bytes moved between plaintext "
		    "legs in the kernel (splice), both directions.\n"
		    "# TYPE easgate_relay_spliced_bytes_total counter\n"
		    "easgate_relay_spliced_bytes_total %llu\n",
		    (unsigned long long)t->bytes_spliced);
	sbuf_printf(o, "# HELP easgate_backend_up Health-check verdict per backend.\n"
		       "# TYPE easgate_backend_up gauge\n");
	for (int i = 0; i < EG_MAX_BACKENDS; i++)
		if (s->backends[i].name[0]) {
			sbuf_printf(o, "easgate_backend_up{backend=\"");
			metrics_label(o, s->backends[i].name);
			sbuf_printf(o, "\"} %u\n", s->backends[i].up);
		}
	admin_render_backend_metrics(a, o, t);
	if (bpf) {
		struct eg_stat_sum xs[EG_STAT__MAX];
		if (bpfmaps_stats(bpf, xs) == 0) {
			sbuf_printf(o, "# HELP easgate_xdp_verdicts_total Packets seen by the XDP "
				       "program, by verdict.\n# TYPE easgate_xdp_verdicts_total "
				       "counter\n");
			for (int r = 0; r < EG_STAT__MAX; r++)
				sbuf_printf(o, "easgate_xdp_verdicts_total{reason=\"%s\"} %llu\n",
					    xdp_reason_names[r], (unsigned long long)xs[r].packets);
		}
	}
	/* A timestamp (Prometheus' base unit), not days left: alert on
	 * easgate_certificate_expiry_timestamp_seconds - time() < 14 * 86400. */
	sbuf_printf(o, "# HELP easgate_certificate_expiry_timestamp_seconds When the first "
		       "certificate of the chain expires (Unix time).\n"
		       "# TYPE easgate_certificate_expiry_timestamp_seconds gauge\n");
	for (int i = 0; i < s->ncerts && i < 16; i++) {
		sbuf_printf(o, "easgate_certificate_expiry_timestamp_seconds{cert=\"");
		metrics_label(o, s->certs[i].path);
		sbuf_printf(o, "\"} %lld\n", (long long)s->certs[i].not_after);
	}
	sbuf_printf(o, "# HELP easgate_certificate_warnings Certificates with a problem (1) or a "
		       "warning such as expiring soon (1), by kind.\n"
		       "# TYPE easgate_certificate_warnings gauge\n");
	for (int i = 0; i < s->ncerts && i < 16; i++)
		for (int kind = 0; kind < 2; kind++) {
			sbuf_printf(o, "easgate_certificate_warnings{cert=\"");
			metrics_label(o, s->certs[i].path);
			sbuf_printf(o, "\",kind=\"%s\"} %d\n", kind ? "warning" : "problem",
				    kind ? s->certs[i].warn : !s->certs[i].ok);
		}
	admin_render_metrics(a, o);
	free(t);
}

/* One scrape connection, waited for in the loop: the master never blocks on
 * a scraper that connects and sends nothing (it also runs the control
 * socket, the health checks and the watchdog). */
struct scrape {
	struct loop_io io;
	struct loop_timer timer;
	struct metrics *m;
	int fd;
};

static void scrape_end(struct scrape *sc)
{
	loop_io_del(sc->m->loop, &sc->io);
	loop_timer_cancel(sc->m->loop, &sc->timer);
	close(sc->fd);
	free(sc);
}

static void scrape_timeout(struct loop_timer *t)
{
	scrape_end(t->arg);
}

/* Readable: the request line is there (one small packet); answer and close. */
static void scrape_readable(struct loop_io *io, uint32_t ev)
{
	struct scrape *sc = io->arg;
	struct metrics *m = sc->m;
	int fd = sc->fd;
	char req[2048];
	ssize_t n = recv(fd, req, sizeof(req) - 1, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		scrape_end(sc);
		return;
	}
	req[n] = 0;
	struct sbuf body = {0};
	const char *status = "200 OK";
	if (!strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET / ", 6))
		metrics_render(&body, m->shm, m->admin, *m->bpf);
	else {
		status = "404 Not Found";
		sbuf_printf(&body, "try /metrics\n");
	}
	char head[256];
	int hl = snprintf(head, sizeof(head),
			  "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
			  "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			  status, body.len);
	/* Small and local: a blocking send with a timeout is fine here. */
	struct timeval tv = {.tv_sec = 1};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (send(fd, head, (size_t)hl, MSG_NOSIGNAL) == hl && body.len)
		(void)!send(fd, body.p, body.len, MSG_NOSIGNAL);
	sbuf_free(&body);
	scrape_end(sc);
}

static void on_accept(struct loop_io *io, uint32_t ev)
{
	struct metrics *m = io->arg;
	for (int i = 0; i < 16; i++) {
		int fd = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		struct scrape *sc = calloc(1, sizeof(*sc));
		if (!sc || loop_io_add_lt(m->loop, &sc->io, fd, scrape_readable, sc) < 0) {
			free(sc);
			close(fd);
			continue;
		}
		sc->m = m;
		sc->fd = fd;
		loop_timer_init(&sc->timer, scrape_timeout, sc);
		loop_timer_set(m->loop, &sc->timer, 2000);
	}
}

struct metrics *metrics_new(struct loop *l, const struct cfg_addr *addr, struct shm *s,
			    struct admin *a, struct bpfmaps **bpf)
{
	struct metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->loop = l;
	m->shm = s;
	m->admin = a;
	m->bpf = bpf;
	m->fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (m->fd >= 0)
		setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (m->fd < 0 || bind(m->fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 ||
	    listen(m->fd, 64) < 0 || loop_io_add_lt(l, &m->io, m->fd, on_accept, m) < 0) {
		log_err("event=metrics_listen_failed addr=%s error=%m", addr->text);
		if (m->fd >= 0)
			close(m->fd);
		free(m);
		return NULL;
	}
	log_info("event=metrics_listening addr=%s", addr->text);
	return m;
}

void metrics_close_fd(struct metrics *m)
{
	if (m && m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	loop_io_del(m->loop, &m->io);
	close(m->fd);
	free(m);
}
