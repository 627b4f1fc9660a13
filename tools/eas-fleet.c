/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * eas-fleet - a bounded fleet of simulated phones against the gateway, for
 * the throttling end-to-end test and benchmark (issue #6).
 *
 *   N well-behaved devices replay what real clients do (bodies from the
 *   captures): a FolderSync, then cycles of Sync (each with the next SyncKey,
 *   so no two Sync bodies of a device are alike) and Ping (the captured body,
 *   identical every time, as real clients send it), a pause ("think") between
 *   cycles, a FolderSync every 10th cycle. Half are Android (Nine, EAS 16.1),
 *   half iOS 7.0.3 (EAS 14.1). They honour Retry-After.
 *
 *   M looping devices behave like iOS 6.1 10B142 in February 2013
 *   (User-Agent Apple-iPhone4C1/1002.142, MS-ASProtocolVersion 14.1): the
 *   same MeetingResponse body again and again, `--loop-interval-ms` apart,
 *   ignoring Retry-After, reconnecting whenever a connection dies.
 *
 * Every device has its own TLS connection (kept alive, resumed on reconnect),
 * all driven by one epoll loop, optionally all from one source address
 * (--bind: a NAT'd fleet). The run is bounded in time (--duration <= 600 s)
 * and requests (--max-requests). At the end a JSON report goes to stdout
 * (or --out): per class request and response rates, status counts,
 * latencies, how many devices were refused, answers that came from the
 * backend (X-Backend header) per second, and per looping device the time
 * and request number of its first throttle (HTTP 503, or EAS status 177),
 * first quarantine answer (an envelope with EAS status 129/130 made by the
 * gateway, HTTP 403, or an X-MS-ASThrottle containing --quarantine-match)
 * and first drop (no answer within --timeout-ms, a reset, or a refused
 * connection), each as {ms since its first request when it was noticed,
 * request number}: a drop is noticed when its timeout expires.
 *
 * Exit status: 0 when the run completed (whatever the gateway did), 1 on
 * a setup error, 2 on usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define FL_MAX_DEVICES	20000
#define FL_MAX_LOOPERS	2000
#define FL_MAX_DURATION 600
#define FL_INBUF	16384 /* response head + small body; larger bodies are discarded */
#define FL_OUTBUF	4096
#define FL_MAX_BODIES	64
#define FL_LAT_BUCKETS	10001 /* 1 ms buckets up to 10 s, the last one is "more" */
#define FL_PASSWORD	"fleet-test-password"
#define FL_NINE_UA	"Nine-sdk_phone64_x86_64/SE1A.220621.001"
#define FL_IOS7_UA	"Apple-iPhone6C1/1102.511"
#define FL_LOOP_UA	"Apple-iPhone4C1/1002.142"

enum fl_class { FC_GOOD = 0, FC_LOOP = 1, FC__N };
static const char *const class_name[FC__N] = {"well_behaved", "looping"};

enum fl_state { D_IDLE, D_CONNECT, D_HANDSHAKE, D_WRITE, D_READ };

/* What a request is. A well-behaved phone's script is a cycle of steps:
 * FolderSync once, then Sync, Ping, think, Sync, Ping, think ... with a
 * FolderSync before every 10th Sync. */
enum fl_cmd { FK_FOLDERSYNC = 0, FK_SYNC = 1, FK_PING = 2, FK_MEETINGRESPONSE = 3 };

struct body {
	unsigned char *p;
	size_t n;
};

struct event_at {
	int64_t ms;   /* since the device's first request; -1 = never */
	long request; /* 1-based request number */
};

struct dev {
	int idx;
	enum fl_class cls;
	char user[64], user_q[80], devid[40], devtype[16];
	const char *ua, *proto;
	char auth[160];

	int fd;
	SSL *ssl;
	SSL_SESSION *sess;
	enum fl_state st;
	uint32_t ev;	      /* epoll events registered (0 = not registered) */
	uint64_t next_ms;     /* IDLE: when to start the next request */
	uint64_t deadline_ms; /* busy: give up at */
	uint64_t t_send;      /* when the current request started */
	enum fl_cmd cmd;      /* the current request */

	char out[FL_OUTBUF + 1024];
	size_t outlen, outoff;
	char in[FL_INBUF];
	size_t inlen;
	/* response parse state */
	int head_done, status, chunked, conn_close, from_backend, retry_after;
	long clen; /* -1 unknown */
	size_t head_len;
	uint64_t body_seen; /* bytes of body consumed (Content-Length) */
	char asthrottle[64];

	/* script */
	unsigned cycle, synckey;
	enum fl_cmd next; /* what comes next */

	/* per device outcome */
	long nreq, nresp;
	uint64_t first_ms;
	int refused; /* got a 503/177/quarantine answer */
	int dropped;
	long backend;
	struct event_at first_throttle, first_quarantine, first_drop;
	char last_asthrottle[64];
};

struct cls_stats {
	long requests, responses, timeouts, resets, connect_errors, backend;
	long status[600];     /* HTTP status counts */
	long eas_status[200]; /* envelope status of gateway-made answers */
	uint32_t lat[FL_LAT_BUCKETS];
	long *resp_by_s, *backend_by_s;
	long *failed_by_s; /* failed requests by the second they were sent in */
};

static struct {
	struct sockaddr_storage dst;
	socklen_t dstlen;
	struct sockaddr_storage src;
	socklen_t srclen;
	int have_src;
	char host[256];
	const char *sni, *cafile, *path, *captures, *qmatch, *outfile;
	int ndev, nloop;
	double duration, warmup;
	unsigned think_lo, think_hi, loop_interval, timeout_ms, good_timeout_ms, ping_timeout_ms;
	unsigned ramp_ms;
	long max_requests;
	unsigned long seed;
} opt = {
    .path = "/Microsoft-Server-ActiveSync",
    .captures = "tests/data/eas-captures",
    .qmatch = "quarantin",
    .ndev = 200,
    .nloop = 5,
    .duration = 20,
    .think_lo = 2000,
    .think_hi = 6000,
    .loop_interval = 100,
    .timeout_ms = 3000,
    .good_timeout_ms = 10000,
    .ping_timeout_ms = 60000,
    .ramp_ms = 1000,
    .max_requests = 1000000,
    .seed = 1,
};

static struct body sync_bodies[FL_MAX_BODIES], ping_bodies[FL_MAX_BODIES],
    fsync_bodies[FL_MAX_BODIES];
static int nsync, nping, nfsync;
static struct dev *devs;
static int ndevs;
static struct cls_stats cs[FC__N];
static SSL_CTX *ctx;
static int epfd;
static uint64_t t_start, t_end;
static long total_requests;
static int nseconds;

/* iOS 6.1's MeetingResponse: accept meeting request RequestId in folder 1.
 * WBXML (MS-ASWBXML code page 8), checked against libwbxml's xml2wbxml:
 * <MeetingResponse><Request><UserResponse>1</UserResponse>
 * <CollectionId>1</CollectionId><RequestId>...</RequestId></Request></MeetingResponse> */
static const char loop_body[] =
    "\x03\x01\x6a\x00" /* WBXML 1.3, public id 1, UTF-8, no string table */
    "\x00\x08"	       /* SWITCH_PAGE 8 (MeetingResponse) */
    "\x47\x49"	       /* <MeetingResponse><Request> */
    "\x4c\x03"
    "1"
    "\x00\x01" /* <UserResponse>1</UserResponse> (accept) */
    "\x46\x03"
    "1"
    "\x00\x01" /* <CollectionId>1</CollectionId> */
    "\x48\x03"
    "RgAAAAD4kVbTbG3RQ4xJjJfRKBiDBwBHQZ"
    "\x00\x01"	/* <RequestId>..</RequestId> */
    "\x01\x01"; /* </Request></MeetingResponse> */
#define LOOP_BODY_LEN (sizeof(loop_body) - 1)

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "eas-fleet: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* splitmix64: reproducible per --seed */
static uint64_t rng_state;
static uint64_t rnd(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static unsigned rnd_between(unsigned lo, unsigned hi)
{
	return hi > lo ? lo + (unsigned)(rnd() % (hi - lo + 1)) : lo;
}

/* ---- captures ---------------------------------------------------------------- */

static int load_file(const char *path, unsigned char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	if (n < 0 || n > (1 << 20)) {
		fclose(f);
		return -1;
	}
	*buf = malloc((size_t)n + 1);
	if (!*buf || fread(*buf, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(*buf);
		return -1;
	}
	fclose(f);
	*len = (size_t)n;
	return 0;
}

/* Sync bodies whose SyncKey we know how to rewrite: <Sync><Collections>
 * <Collection><SyncKey> STR_I right after the header (all captures). */
static int sync_key_at(const unsigned char *b, size_t n)
{
	static const unsigned char pre[] = {0x03, 0x01, 0x6a, 0x00, 0x45, 0x5c, 0x4f, 0x4b, 0x03};
	if (n < sizeof(pre) + 2 || memcmp(b, pre, sizeof(pre)) != 0)
		return -1;
	for (size_t i = sizeof(pre); i < n; i++)
		if (b[i] == 0)
			return (int)sizeof(pre);
	return -1;
}

static void add_body(struct body *arr, int *n, const unsigned char *p, size_t len)
{
	for (int i = 0; i < *n; i++)
		if (arr[i].n == len && !memcmp(arr[i].p, p, len))
			return; /* distinct bodies only */
	if (*n >= FL_MAX_BODIES)
		return;
	arr[*n].p = malloc(len);
	if (!arr[*n].p)
		die("out of memory");
	memcpy(arr[*n].p, p, len);
	arr[*n].n = len;
	(*n)++;
}

static void load_captures(void)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/MANIFEST.tsv", opt.captures);
	FILE *m = fopen(path, "r");
	if (!m)
		die("%s: %s (use --captures DIR)", path, strerror(errno));
	char line[1024];
	while (fgets(line, sizeof(line), m)) {
		char file[512], method[16], cmd[64];
		if (sscanf(line, "%511s %15s %63s", file, method, cmd) != 3 ||
		    strcmp(method, "POST"))
			continue;
		int which = !strcmp(cmd, "Sync")	 ? 0
			    : !strcmp(cmd, "Ping")	 ? 1
			    : !strcmp(cmd, "FolderSync") ? 2
							 : -1;
		if (which < 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", opt.captures, file);
		unsigned char *raw;
		size_t len;
		if (load_file(path, &raw, &len) < 0)
			die("%s: cannot read", path);
		unsigned char *body = memmem(raw, len, "\r\n\r\n", 4);
		if (body) {
			body += 4;
			size_t bl = len - (size_t)(body - raw);
			if (which == 0 && sync_key_at(body, bl) > 0)
				add_body(sync_bodies, &nsync, body, bl);
			else if (which == 1)
				add_body(ping_bodies, &nping, body, bl);
			else if (which == 2)
				add_body(fsync_bodies, &nfsync, body, bl);
		}
		free(raw);
	}
	fclose(m);
	if (!nsync || !nping || !nfsync)
		die("%s: need Sync, Ping and FolderSync captures (found %d, %d, %d)", opt.captures,
		    nsync, nping, nfsync);
}

/* ---- requests ---------------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64(const char *in, char *out, size_t cap)
{
	size_t n = strlen(in), o = 0;
	for (size_t i = 0; i < n && o + 5 < cap; i += 3) {
		uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)(unsigned char)in[i + 1] << 8;
		if (i + 2 < n)
			v |= (uint32_t)(unsigned char)in[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? b64[v & 63] : '=';
	}
	out[o] = 0;
}

static void dev_init(struct dev *d, int idx, enum fl_class cls)
{
	memset(d, 0, sizeof(*d));
	d->idx = idx;
	d->cls = cls;
	d->fd = -1;
	d->first_throttle.ms = d->first_quarantine.ms = d->first_drop.ms = -1;
	if (cls == FC_LOOP) {
		snprintf(d->user, sizeof(d->user), "loop%03d@fleet.example", idx);
		snprintf(d->devid, sizeof(d->devid), "ApplLOOP%08d", idx);
		snprintf(d->devtype, sizeof(d->devtype), "iPhone");
		d->ua = FL_LOOP_UA;
		d->proto = "14.1";
	} else if (idx % 2 == 0) {
		snprintf(d->user, sizeof(d->user), "user%05d@fleet.example", idx);
		snprintf(d->devid, sizeof(d->devid), "Nine%012d", idx);
		snprintf(d->devtype, sizeof(d->devtype), "Android");
		d->ua = FL_NINE_UA;
		d->proto = "16.1";
	} else {
		snprintf(d->user, sizeof(d->user), "user%05d@fleet.example", idx);
		snprintf(d->devid, sizeof(d->devid), "ApplF%011d", idx);
		snprintf(d->devtype, sizeof(d->devtype), "iPhone");
		d->ua = FL_IOS7_UA;
		d->proto = "14.1";
	}
	size_t o = 0;
	for (const char *s = d->user; *s && o + 4 < sizeof(d->user_q); s++) {
		if (*s == '@') {
			memcpy(d->user_q + o, "%40", 3);
			o += 3;
		} else {
			d->user_q[o++] = *s;
		}
	}
	d->user_q[o] = 0;
	char cred[160], enc[160];
	snprintf(cred, sizeof(cred), "%s:%s", d->user, FL_PASSWORD);
	base64(cred, enc, sizeof(enc));
	snprintf(d->auth, sizeof(d->auth), "Basic %s", enc);
	d->synckey = 1 + (unsigned)(rnd() % 1000);
}

/* Build the next request of d's script into d->out. */
static void build_request(struct dev *d)
{
	const char *cmd;
	unsigned char body[FL_OUTBUF];
	size_t blen;
	d->cmd = d->cls == FC_LOOP ? FK_MEETINGRESPONSE : d->next;
	switch (d->cmd) {
	case FK_MEETINGRESPONSE:
		cmd = "MeetingResponse";
		memcpy(body, loop_body, LOOP_BODY_LEN);
		blen = LOOP_BODY_LEN;
		break;
	case FK_FOLDERSYNC: {
		const struct body *b = &fsync_bodies[d->idx % nfsync];
		cmd = "FolderSync";
		memcpy(body, b->p, b->n);
		blen = b->n;
		break;
	}
	case FK_SYNC: {
		/* a captured Sync with this device's next SyncKey */
		const struct body *b = &sync_bodies[(d->idx + d->cycle) % nsync];
		int at = sync_key_at(b->p, b->n);
		size_t klen = strlen((const char *)b->p + at);
		char key[24];
		int kl = snprintf(key, sizeof(key), "%u", d->synckey++);
		memcpy(body, b->p, (size_t)at);
		memcpy(body + at, key, (size_t)kl);
		memcpy(body + at + kl, b->p + at + klen, b->n - (size_t)at - klen);
		blen = b->n - klen + (size_t)kl;
		cmd = "Sync";
		break;
	}
	default: {
		const struct body *b = &ping_bodies[d->idx % nping];
		cmd = "Ping";
		memcpy(body, b->p, b->n);
		blen = b->n;
		break;
	}
	}
	int n = snprintf(d->out, sizeof(d->out),
			 "POST %s?Cmd=%s&User=%s&DeviceId=%s&DeviceType=%s HTTP/1.1\r\n"
			 "Host: %s\r\n"
			 "User-Agent: %s\r\n"
			 "MS-ASProtocolVersion: %s\r\n"
			 "X-MS-PolicyKey: 1307479563\r\n"
			 "Accept-Language: en-US\r\n"
			 "Content-Type: application/vnd.ms-sync.wbxml\r\n"
			 "Authorization: %s\r\n"
			 "Content-Length: %zu\r\n\r\n",
			 opt.path, cmd, d->user_q, d->devid, d->devtype, opt.host, d->ua, d->proto,
			 d->auth, blen);
	if (n < 0 || (size_t)n + blen > sizeof(d->out))
		die("request too large");
	memcpy(d->out + n, body, blen);
	d->outlen = (size_t)n + blen;
	d->outoff = 0;
}

/* ---- connection plumbing ------------------------------------------------------ */

static void ep_set(struct dev *d, uint32_t ev)
{
	if (d->fd < 0 || d->ev == ev)
		return;
	struct epoll_event e = {.events = ev, .data.ptr = d};
	if (!d->ev)
		epoll_ctl(epfd, EPOLL_CTL_ADD, d->fd, &e);
	else if (!ev)
		epoll_ctl(epfd, EPOLL_CTL_DEL, d->fd, NULL);
	else
		epoll_ctl(epfd, EPOLL_CTL_MOD, d->fd, &e);
	d->ev = ev;
}

static void disconnect(struct dev *d)
{
	if (d->ssl) {
		SSL_free(d->ssl);
		d->ssl = NULL;
	}
	if (d->fd >= 0) {
		ep_set(d, 0);
		close(d->fd);
		d->fd = -1;
	}
	d->ev = 0;
}

static void schedule(struct dev *d, uint64_t at)
{
	d->st = D_IDLE;
	d->next_ms = at;
	if (d->fd >= 0)
		ep_set(d, EPOLLIN | EPOLLRDHUP); /* notice a server-side close while idle */
}

static struct cls_stats *cls_of(const struct dev *d)
{
	return &cs[d->cls];
}

static int64_t dev_ms(const struct dev *d, uint64_t now)
{
	return (int64_t)(now - d->first_ms);
}

static void mark(struct event_at *e, const struct dev *d, uint64_t now)
{
	if (e->ms < 0) {
		e->ms = dev_ms(d, now);
		e->request = d->nreq;
	}
}

/* The current request got no answer: timeout, reset or refused connection. */
static void request_failed(struct dev *d, uint64_t now, int kind)
{
	struct cls_stats *s = cls_of(d);
	if (kind == 0)
		s->timeouts++;
	else if (kind == 1)
		s->resets++;
	else
		s->connect_errors++;
	int sec = d->t_send >= t_start ? (int)((d->t_send - t_start) / 1000) : 0;
	if (sec < nseconds)
		s->failed_by_s[sec]++;
	d->dropped = 1;
	mark(&d->first_drop, d, now);
	disconnect(d);
	/* a looping phone retries at once; a normal one after a while */
	schedule(d, now + (d->cls == FC_LOOP ? opt.loop_interval : 5000));
}

static void start_request(struct dev *d, uint64_t now);

static void start_connect(struct dev *d, uint64_t now)
{
	d->fd = socket(opt.dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (d->fd < 0) {
		request_failed(d, now, 2);
		return;
	}
	int one = 1;
	setsockopt(d->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (opt.have_src) {
#ifdef IP_BIND_ADDRESS_NO_PORT
		setsockopt(d->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#endif
		if (bind(d->fd, (struct sockaddr *)&opt.src, opt.srclen) < 0)
			die("bind to the source address: %s", strerror(errno));
	}
	d->ev = 0;
	if (connect(d->fd, (struct sockaddr *)&opt.dst, opt.dstlen) < 0 && errno != EINPROGRESS) {
		request_failed(d, now, 2);
		return;
	}
	d->st = D_CONNECT;
	ep_set(d, EPOLLOUT);
}

static void start_request(struct dev *d, uint64_t now)
{
	if (total_requests >= opt.max_requests || now >= t_end) {
		d->st = D_IDLE;
		d->next_ms = UINT64_MAX;
		return;
	}
	build_request(d);
	d->inlen = 0;
	d->head_done = 0;
	d->t_send = now;
	if (!d->nreq)
		d->first_ms = now;
	d->nreq++;
	total_requests++;
	cls_of(d)->requests++;
	/* A looper's silence is what a kernel drop looks like: a short timeout.
	 * A well-behaved phone waits longer (a loaded test machine is slow),
	 * and for a Ping the whole long poll. */
	unsigned tmo = d->cls == FC_LOOP   ? opt.timeout_ms
		       : d->cmd == FK_PING ? opt.ping_timeout_ms
					   : opt.good_timeout_ms;
	d->deadline_ms = now + tmo;
	if (d->fd < 0) {
		start_connect(d, now);
		return;
	}
	d->st = D_WRITE;
	ep_set(d, EPOLLOUT);
}

/* ---- responses ---------------------------------------------------------------- */

static int hdr_is(const char *line, size_t n, const char *name, const char **val)
{
	size_t k = strlen(name);
	if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
		return 0;
	const char *v = line + k + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	*val = v;
	return 1;
}

/* Parse the head in d->in[0..head_len). 0, or -1 if it is not HTTP. */
static int parse_head(struct dev *d)
{
	char *p = d->in;
	if (strncmp(p, "HTTP/1.", 7) != 0)
		return -1;
	d->status = atoi(p + 9);
	d->clen = -1;
	d->chunked = d->conn_close = d->from_backend = 0;
	d->retry_after = -1;
	d->asthrottle[0] = 0;
	char *line = strstr(p, "\r\n");
	while (line && line + 2 < d->in + d->head_len) {
		line += 2;
		char *eol = strstr(line, "\r\n");
		if (!eol || eol == line)
			break;
		*eol = 0;
		const char *v;
		size_t n = (size_t)(eol - line);
		if (hdr_is(line, n, "Content-Length", &v))
			d->clen = atol(v);
		else if (hdr_is(line, n, "Transfer-Encoding", &v))
			d->chunked = strcasestr(v, "chunked") != NULL;
		else if (hdr_is(line, n, "Connection", &v))
			d->conn_close = strcasestr(v, "close") != NULL;
		else if (hdr_is(line, n, "Retry-After", &v))
			d->retry_after = atoi(v);
		else if (hdr_is(line, n, "X-MS-ASThrottle", &v))
			snprintf(d->asthrottle, sizeof(d->asthrottle), "%s", v);
		else if (hdr_is(line, n, "X-Backend", &v))
			d->from_backend = 1;
		*eol = '\r';
		line = eol;
	}
	return 0;
}

/* EAS status of a gateway-made envelope: header, optional SWITCH_PAGE, root,
 * Status, STR_I digits. -1 if the body is not that shape. */
static int envelope_status(const unsigned char *b, size_t n)
{
	if (n < 10 || n > 40 || memcmp(b, "\x03\x01\x6a\x00", 4) != 0)
		return -1;
	size_t i = 4;
	if (b[i] == 0x00)
		i += 2;
	i += 2; /* root tag, Status tag */
	if (i >= n || b[i] != 0x03)
		return -1;
	int v = 0;
	for (i++; i < n && b[i] >= '0' && b[i] <= '9'; i++)
		v = v * 10 + (b[i] - '0');
	return i < n && b[i] == 0 ? v : -1;
}

/* A complete answer: account it and schedule what the phone does next. */
static void response_done(struct dev *d, uint64_t now, const unsigned char *body, size_t blen)
{
	struct cls_stats *s = cls_of(d);
	d->nresp++;
	s->responses++;
	if (d->status > 0 && d->status < 600)
		s->status[d->status]++;
	uint64_t lat = now - d->t_send;
	s->lat[lat < FL_LAT_BUCKETS - 1 ? lat : FL_LAT_BUCKETS - 1]++;
	int sec = (int)((now - t_start) / 1000);
	if (sec >= 0 && sec < nseconds) {
		s->resp_by_s[sec]++;
		if (d->from_backend)
			s->backend_by_s[sec]++;
	}
	if (d->from_backend) {
		s->backend++;
		d->backend++;
	}
	int est = d->from_backend ? -1 : envelope_status(body, blen);
	if (est >= 0 && est < 200 && !d->from_backend)
		s->eas_status[est]++;
	if (d->asthrottle[0])
		snprintf(d->last_asthrottle, sizeof(d->last_asthrottle), "%s", d->asthrottle);
	int throttled = d->status == 503 || d->status == 429;
	int quarantined = (!d->from_backend && (est == 129 || est == 130 || d->status == 403)) ||
			  (d->asthrottle[0] && strcasestr(d->asthrottle, opt.qmatch));
	if (est == 177)
		throttled = 1;
	if (throttled) {
		d->refused = 1;
		mark(&d->first_throttle, d, now);
	}
	if (quarantined) {
		d->refused = 1;
		mark(&d->first_quarantine, d, now);
	}
	if (!d->sess && d->ssl)
		d->sess = SSL_get1_session(d->ssl); /* TLS 1.3 tickets arrive after the handshake */
	if (d->conn_close)
		disconnect(d);

	uint64_t next = now;
	if (d->cls == FC_LOOP) {
		next = now + opt.loop_interval; /* Retry-After? never heard of it */
	} else if (throttled) {
		/* a well-behaved phone waits as told, then retries the same step */
		next = now + (uint64_t)(d->retry_after > 0 ? d->retry_after : 5) * 1000u;
	} else if (d->cmd == FK_FOLDERSYNC) {
		d->next = FK_SYNC;
	} else if (d->cmd == FK_SYNC) {
		d->next = FK_PING;
	} else {
		d->cycle++;
		d->next = d->cycle % 10 == 0 ? FK_FOLDERSYNC : FK_SYNC;
		next = now + rnd_between(opt.think_lo, opt.think_hi);
	}
	schedule(d, next);
}

/* Consume what is in d->in; returns 1 when the response is complete, 0 if
 * more is needed, -1 on a protocol error. */
static int consume(struct dev *d, uint64_t now)
{
	if (!d->head_done) {
		char *e = memmem(d->in, d->inlen, "\r\n\r\n", 4);
		if (!e)
			return d->inlen >= sizeof(d->in) ? -1 : 0;
		d->head_len = (size_t)(e - d->in) + 4;
		char save = d->in[d->head_len - 1];
		d->in[d->head_len - 1] = 0; /* strstr stops at the head */
		int r = parse_head(d);
		d->in[d->head_len - 1] = save;
		if (r < 0)
			return -1;
		d->head_done = 1;
		d->body_seen = 0;
		if (d->status == 100) { /* interim: drop it, wait for the real one */
			memmove(d->in, d->in + d->head_len, d->inlen - d->head_len);
			d->inlen -= d->head_len;
			d->head_done = 0;
			return consume(d, now);
		}
	}
	unsigned char *body = (unsigned char *)d->in + d->head_len;
	size_t have = d->inlen - d->head_len;
	if (d->chunked) {
		/* Small chunked bodies only (the gateway and the demo backend
		 * send those); walk the chunks until the last one. */
		size_t i = 0;
		for (;;) {
			unsigned char *crlf = memmem(body + i, have - i, "\r\n", 2);
			if (!crlf)
				return have >= FL_INBUF - d->head_len ? -1 : 0;
			unsigned long sz = strtoul((char *)body + i, NULL, 16);
			size_t data = (size_t)(crlf - body) + 2;
			if (sz == 0) {
				if (!memmem(body + i, have - i, "\r\n\r\n", 4))
					return 0;
				response_done(d, now, NULL, 0);
				return 1;
			}
			if (data + sz + 2 > have)
				return have >= FL_INBUF - d->head_len ? -1 : 0;
			i = data + sz + 2;
		}
	}
	if (d->clen < 0) {
		if (d->status == 204 || d->status == 304 || d->status < 200) {
			response_done(d, now, NULL, 0);
			return 1;
		}
		return 0; /* until close */
	}
	if (have >= (size_t)d->clen) {
		response_done(d, now, body, (size_t)d->clen);
		return 1;
	}
	/* a large body: keep the head, count and discard what came */
	if (d->inlen >= sizeof(d->in) - 1024) {
		d->body_seen += have;
		d->clen -= (long)have;
		d->inlen = d->head_len;
	}
	return 0;
}

static int ssl_want(struct dev *d, int r)
{
	int e = SSL_get_error(d->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		ep_set(d, EPOLLIN);
		return 0;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		ep_set(d, EPOLLOUT);
		return 0;
	}
	ERR_clear_error();
	return -1;
}

static void step(struct dev *d, uint64_t now)
{
	for (;;) {
		switch (d->st) {
		case D_IDLE: {
			/* Readable while idle: a late TLS 1.3 session ticket (keep
			 * the connection), or the server closed it (idle timeout):
			 * reconnect on the next request. */
			char c;
			int r = d->ssl ? SSL_read(d->ssl, &c, 1) : 0;
			if (r <= 0 && d->ssl && SSL_get_error(d->ssl, r) == SSL_ERROR_WANT_READ)
				return;
			ERR_clear_error();
			disconnect(d);
			return;
		}
		case D_CONNECT: {
			int err = 0;
			socklen_t l = sizeof(err);
			getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &l);
			if (err) {
				request_failed(d, now, err == ECONNRESET ? 1 : 2);
				return;
			}
			d->ssl = SSL_new(ctx);
			if (!d->ssl)
				die("SSL_new failed");
			SSL_set_fd(d->ssl, d->fd);
			if (opt.sni) {
				SSL_set_tlsext_host_name(d->ssl, opt.sni);
				if (opt.cafile)
					SSL_set1_host(d->ssl, opt.sni);
			}
			if (d->sess)
				SSL_set_session(d->ssl, d->sess);
			SSL_set_connect_state(d->ssl);
			d->st = D_HANDSHAKE;
			break;
		}
		case D_HANDSHAKE: {
			int r = SSL_do_handshake(d->ssl);
			if (r == 1) {
				d->st = D_WRITE;
				break;
			}
			if (ssl_want(d, r) < 0)
				request_failed(d, now, 2);
			return;
		}
		case D_WRITE: {
			int r = SSL_write(d->ssl, d->out + d->outoff, (int)(d->outlen - d->outoff));
			if (r > 0) {
				d->outoff += (size_t)r;
				if (d->outoff == d->outlen) {
					d->st = D_READ;
					ep_set(d, EPOLLIN);
				}
				break;
			}
			if (ssl_want(d, r) < 0)
				request_failed(d, now, 1);
			return;
		}
		case D_READ: {
			if (d->inlen >= sizeof(d->in)) {
				request_failed(d, now, 1);
				return;
			}
			int r = SSL_read(d->ssl, d->in + d->inlen, (int)(sizeof(d->in) - d->inlen));
			if (r > 0) {
				d->inlen += (size_t)r;
				int c = consume(d, now);
				if (c < 0)
					request_failed(d, now, 1);
				if (c != 0)
					return;
				break;
			}
			int e = SSL_get_error(d->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				ep_set(d, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
				return;
			}
			ERR_clear_error();
			/* EOF: a body delimited by close is complete now */
			if (d->head_done && d->clen < 0 && !d->chunked) {
				response_done(d, now, NULL, 0);
				disconnect(d);
				return;
			}
			request_failed(d, now, 1);
			return;
		}
		}
	}
}

/* ---- report ---------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static double pct(const struct cls_stats *s, double q)
{
	long total = 0, acc = 0;
	for (int i = 0; i < FL_LAT_BUCKETS; i++)
		total += s->lat[i];
	if (!total)
		return 0;
	for (int i = 0; i < FL_LAT_BUCKETS; i++) {
		acc += s->lat[i];
		if ((double)acc >= q * (double)total)
			return i;
	}
	return FL_LAT_BUCKETS - 1;
}

static void json_event(FILE *f, const char *name, const struct event_at *e)
{
	fprintf(f, "\"%s\": ", name);
	if (e->ms < 0)
		fprintf(f, "null");
	else
		fprintf(f, "{\"ms\": %lld, \"request\": %ld}", (long long)e->ms, e->request);
}

static void report(FILE *f, double elapsed)
{
	/* whole seconds of the run proper (a starved process may end late) */
	int w0 = (int)opt.warmup, w1 = (int)elapsed;
	if (w1 > (int)opt.duration)
		w1 = (int)opt.duration;
	if (w0 >= w1)
		w0 = 0;
	fprintf(f, "{\n  \"duration_s\": %.3f,\n  \"measured_from_s\": %d,\n", elapsed, w0);
	fprintf(f, "  \"target\": ");
	json_str(f, opt.host);
	fprintf(f, ",\n  \"bind\": %s,\n", opt.have_src ? "true" : "false");
	fprintf(f, "  \"total_requests\": %ld,\n", total_requests);
	for (int c = 0; c < FC__N; c++) {
		struct cls_stats *s = &cs[c];
		int ndevc = 0, refused = 0, dropped = 0;
		for (int i = 0; i < ndevs; i++)
			if (devs[i].cls == (enum fl_class)c) {
				ndevc++;
				refused += devs[i].refused;
				dropped += devs[i].dropped;
			}
		long win = 0, bwin = 0, blast = 0;
		for (int i = w0; i < w1; i++) {
			win += s->resp_by_s[i];
			bwin += s->backend_by_s[i];
		}
		int last_n = w1 - w0 >= 20 ? 5 : (w1 - w0 + 3) / 4;
		if (last_n < 1)
			last_n = 1;
		for (int i = w1 - last_n; i < w1; i++)
			if (i >= 0)
				blast += s->backend_by_s[i];
		double span = w1 > w0 ? (double)(w1 - w0) : 1;
		fprintf(f, "  \"%s\": {\n", class_name[c]);
		fprintf(f,
			"    \"devices\": %d,\n    \"requests\": %ld,\n    \"responses\": %ld,\n",
			ndevc, s->requests, s->responses);
		fprintf(f, "    \"rate_rps\": %.2f,\n    \"backend_rps\": %.2f,\n",
			(double)win / span, (double)bwin / span);
		fprintf(f, "    \"last_window_s\": %d,\n    \"backend_rps_last\": %.2f,\n", last_n,
			(double)blast / last_n);
		fprintf(f, "    \"backend_answers\": %ld,\n", s->backend);
		fprintf(f, "    \"refused_devices\": %d,\n    \"dropped_devices\": %d,\n", refused,
			dropped);
		fprintf(
		    f,
		    "    \"timeouts\": %ld,\n    \"resets\": %ld,\n    \"connect_errors\": %ld,\n",
		    s->timeouts, s->resets, s->connect_errors);
		fprintf(f, "    \"statuses\": {");
		int first = 1;
		for (int k = 0; k < 600; k++)
			if (s->status[k]) {
				fprintf(f, "%s\"%d\": %ld", first ? "" : ", ", k, s->status[k]);
				first = 0;
			}
		fprintf(f, "},\n    \"gateway_eas_statuses\": {");
		first = 1;
		for (int k = 0; k < 200; k++)
			if (s->eas_status[k]) {
				fprintf(f, "%s\"%d\": %ld", first ? "" : ", ", k, s->eas_status[k]);
				first = 0;
			}
		fprintf(f,
			"},\n    \"latency_ms\": {\"p50\": %.0f, \"p90\": %.0f, \"p99\": %.0f},\n",
			pct(s, 0.5), pct(s, 0.9), pct(s, 0.99));
		fprintf(f, "    \"responses_by_second\": [");
		for (int i = 0; i < w1; i++)
			fprintf(f, "%s%ld", i ? ", " : "", s->resp_by_s[i]);
		fprintf(f, "],\n    \"backend_by_second\": [");
		for (int i = 0; i < w1; i++)
			fprintf(f, "%s%ld", i ? ", " : "", s->backend_by_s[i]);
		fprintf(f, "],\n    \"failed_by_second_sent\": [");
		for (int i = 0; i < w1; i++)
			fprintf(f, "%s%ld", i ? ", " : "", s->failed_by_s[i]);
		fprintf(f, "]\n  },\n");
	}
	fprintf(f, "  \"loopers\": [");
	int first = 1;
	for (int i = 0; i < ndevs; i++) {
		struct dev *d = &devs[i];
		if (d->cls != FC_LOOP)
			continue;
		fprintf(f, "%s\n    {\"device_id\": ", first ? "" : ",");
		first = 0;
		json_str(f, d->devid);
		fprintf(f, ", \"user\": ");
		json_str(f, d->user);
		fprintf(f, ", \"requests\": %ld, \"responses\": %ld, \"backend_answers\": %ld, ",
			d->nreq, d->nresp, d->backend);
		json_event(f, "first_throttle", &d->first_throttle);
		fprintf(f, ", ");
		json_event(f, "first_quarantine", &d->first_quarantine);
		fprintf(f, ", ");
		json_event(f, "first_drop", &d->first_drop);
		fprintf(f, ", \"asthrottle\": ");
		json_str(f, d->last_asthrottle);
		fprintf(f, "}");
	}
	fprintf(f, "\n  ]\n}\n");
}

/* ---- main ------------------------------------------------------------------ */

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len, int port_req)
{
	char host[256];
	const char *port = NULL;
	if (s[0] == '[') {
		const char *e = strchr(s, ']');
		if (!e || (size_t)(e - s - 1) >= sizeof(host))
			return -1;
		memcpy(host, s + 1, (size_t)(e - s - 1));
		host[e - s - 1] = 0;
		if (e[1] == ':')
			port = e + 2;
	} else {
		const char *c = strrchr(s, ':');
		size_t n = c ? (size_t)(c - s) : strlen(s);
		if (n >= sizeof(host))
			return -1;
		memcpy(host, s, n);
		host[n] = 0;
		if (c)
			port = c + 1;
	}
	if (port_req && !port)
		return -1;
	int p = port ? atoi(port) : 0;
	if (p < 0 || p > 65535)
		return -1;
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)p);
		*len = sizeof(*a4);
	} else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)p);
		*len = sizeof(*a6);
	} else {
		return -1;
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: eas-fleet --connect ADDR:PORT [options]\n"
	    "A bounded fleet of simulated EAS phones against the gateway; JSON report.\n\n"
	    "  --connect ADDR:PORT   gateway (IPv4 or [IPv6]:port)\n"
	    "  --sni NAME            TLS server name (also Host:); default the address\n"
	    "  --cafile FILE         verify the gateway's chain (and NAME with --sni)\n"
	    "  --bind ADDR           source address of every connection (a NAT'd fleet)\n"
	    "  --devices N           well-behaved devices (default 200, max %d)\n"
	    "  --loopers M           looping iOS 6.1 10B142 devices (default 5, max %d)\n"
	    "  --duration S          run time in seconds (default 20, max %d)\n"
	    "  --warmup S            rates leave out the first S seconds (default 0)\n"
	    "  --captures DIR        capture set with MANIFEST.tsv (default %s)\n"
	    "  --think-ms LO[,HI]    well-behaved pause between cycles (default 2000,6000)\n"
	    "  --loop-interval-ms MS looper pause between requests (default 100)\n"
	    "  --timeout-ms MS       a looper without an answer within MS is dropped\n"
	    "                        (default 3000)\n"
	    "  --good-timeout-ms MS  the same for well-behaved requests (default 10000)\n"
	    "  --ping-timeout-ms MS  the same for their Pings, a long poll (default 60000)\n"
	    "  --ramp-ms MS          spread the first requests over MS (default 1000)\n"
	    "  --path PATH           EAS path (default /Microsoft-Server-ActiveSync)\n"
	    "  --quarantine-match S  X-MS-ASThrottle substring meaning quarantined\n"
	    "                        (default \"quarantin\"; EAS 129/130 and HTTP 403 also count)\n"
	    "  --max-requests N      stop sending after N requests in all (default 1000000)\n"
	    "  --seed N              reproducible pauses and SyncKeys (default 1)\n"
	    "  --out FILE            write the report there instead of stdout\n"
	    "  --help\n",
	    FL_MAX_DEVICES, FL_MAX_LOOPERS, FL_MAX_DURATION, opt.captures);
}

static void parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"connect", 1, 0, 'c'},
	    {"sni", 1, 0, 's'},
	    {"cafile", 1, 0, 'a'},
	    {"bind", 1, 0, 'b'},
	    {"devices", 1, 0, 'n'},
	    {"loopers", 1, 0, 'm'},
	    {"duration", 1, 0, 'd'},
	    {"warmup", 1, 0, 'w'},
	    {"captures", 1, 0, 'C'},
	    {"think-ms", 1, 0, 't'},
	    {"loop-interval-ms", 1, 0, 'i'},
	    {"timeout-ms", 1, 0, 'T'},
	    {"ping-timeout-ms", 1, 0, 'P'},
	    {"good-timeout-ms", 1, 0, 'G'},
	    {"ramp-ms", 1, 0, 'r'},
	    {"path", 1, 0, 'p'},
	    {"quarantine-match", 1, 0, 'q'},
	    {"max-requests", 1, 0, 'M'},
	    {"seed", 1, 0, 'S'},
	    {"out", 1, 0, 'o'},
	    {"help", 0, 0, 'h'},
	    {0, 0, 0, 0},
	};
	const char *connect_to = NULL;
	int o;
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'c':
			connect_to = optarg;
			break;
		case 's':
			opt.sni = optarg;
			break;
		case 'a':
			opt.cafile = optarg;
			break;
		case 'b':
			if (parse_addr(optarg, &opt.src, &opt.srclen, 0) < 0)
				goto bad;
			opt.have_src = 1;
			break;
		case 'n':
			opt.ndev = atoi(optarg);
			break;
		case 'm':
			opt.nloop = atoi(optarg);
			break;
		case 'd':
			opt.duration = atof(optarg);
			break;
		case 'w':
			opt.warmup = atof(optarg);
			break;
		case 'C':
			opt.captures = optarg;
			break;
		case 't':
			if (sscanf(optarg, "%u,%u", &opt.think_lo, &opt.think_hi) < 2)
				opt.think_hi = opt.think_lo;
			break;
		case 'i':
			opt.loop_interval = (unsigned)atoi(optarg);
			break;
		case 'T':
			opt.timeout_ms = (unsigned)atoi(optarg);
			break;
		case 'P':
			opt.ping_timeout_ms = (unsigned)atoi(optarg);
			break;
		case 'G':
			opt.good_timeout_ms = (unsigned)atoi(optarg);
			break;
		case 'r':
			opt.ramp_ms = (unsigned)atoi(optarg);
			break;
		case 'p':
			opt.path = optarg;
			break;
		case 'q':
			opt.qmatch = optarg;
			break;
		case 'M':
			opt.max_requests = atol(optarg);
			break;
		case 'S':
			opt.seed = strtoul(optarg, NULL, 10);
			break;
		case 'o':
			opt.outfile = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			goto bad;
		}
	}
	if (!connect_to || parse_addr(connect_to, &opt.dst, &opt.dstlen, 1) < 0) {
		fprintf(stderr, "eas-fleet: --connect ADDR:PORT is required\n");
		goto bad;
	}
	if (opt.ndev < 0 || opt.ndev > FL_MAX_DEVICES || opt.nloop < 0 ||
	    opt.nloop > FL_MAX_LOOPERS || opt.ndev + opt.nloop == 0) {
		fprintf(stderr, "eas-fleet: --devices 0..%d, --loopers 0..%d, not both 0\n",
			FL_MAX_DEVICES, FL_MAX_LOOPERS);
		goto bad;
	}
	if (!(opt.duration > 0 && opt.duration <= FL_MAX_DURATION) || opt.warmup < 0 ||
	    opt.warmup >= opt.duration) {
		fprintf(stderr, "eas-fleet: --duration 0..%d s, --warmup below it\n",
			FL_MAX_DURATION);
		goto bad;
	}
	if (opt.think_hi < opt.think_lo || opt.timeout_ms < 10 || opt.good_timeout_ms < 10 ||
	    opt.ping_timeout_ms < 10 || opt.max_requests < 1) {
		fprintf(stderr, "eas-fleet: bad --think-ms, --timeout-ms or --max-requests\n");
		goto bad;
	}
	if (opt.sni)
		snprintf(opt.host, sizeof(opt.host), "%s", opt.sni);
	else
		snprintf(opt.host, sizeof(opt.host), "%s", connect_to);
	return;
bad:
	usage(stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	rng_state = opt.seed;
	load_captures();

	/* every device needs a descriptor, plus a few */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)(opt.ndev + opt.nloop + 64)) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)(opt.ndev + opt.nloop + 64)
				  ? rl.rlim_max
				  : (rlim_t)(opt.ndev + opt.nloop + 64);
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		die("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
	if (opt.cafile) {
		if (SSL_CTX_load_verify_locations(ctx, opt.cafile, NULL) != 1)
			die("%s: cannot load CA", opt.cafile);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}

	ndevs = opt.ndev + opt.nloop;
	devs = calloc((size_t)ndevs, sizeof(*devs));
	if (!devs)
		die("out of memory");
	nseconds = (int)opt.duration + 2;
	for (int c = 0; c < FC__N; c++) {
		cs[c].resp_by_s = calloc((size_t)nseconds, sizeof(long));
		cs[c].backend_by_s = calloc((size_t)nseconds, sizeof(long));
		cs[c].failed_by_s = calloc((size_t)nseconds, sizeof(long));
		if (!cs[c].resp_by_s || !cs[c].backend_by_s || !cs[c].failed_by_s)
			die("out of memory");
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll: %s", strerror(errno));
	t_start = now_ms();
	t_end = t_start + (uint64_t)(opt.duration * 1000.0);
	for (int i = 0; i < ndevs; i++) {
		int loop = i >= opt.ndev;
		dev_init(&devs[i], loop ? i - opt.ndev : i, loop ? FC_LOOP : FC_GOOD);
		devs[i].next_ms = t_start + (opt.ramp_ms ? rnd() % opt.ramp_ms : 0);
	}

	struct epoll_event evs[256];
	for (;;) {
		uint64_t now = now_ms();
		if (now >= t_end)
			break;
		uint64_t wake = t_end;
		for (int i = 0; i < ndevs; i++) {
			struct dev *d = &devs[i];
			if (d->st == D_IDLE) {
				if (d->next_ms <= now)
					start_request(d, now);
			} else if (now >= d->deadline_ms) {
				request_failed(d, now, 0);
			}
			uint64_t at = d->st == D_IDLE ? d->next_ms : d->deadline_ms;
			if (at < wake)
				wake = at;
		}
		int timeout = wake > now ? (int)(wake - now) : 0;
		if (timeout > 50)
			timeout = 50;
		int n = epoll_wait(epfd, evs, 256, timeout);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		now = now_ms();
		for (int i = 0; i < n; i++) {
			struct dev *d = evs[i].data.ptr;
			if (d->fd < 0)
				continue;
			step(d, now);
		}
	}
	double elapsed = (double)(now_ms() - t_start) / 1000.0;
	FILE *out = stdout;
	if (opt.outfile && !(out = fopen(opt.outfile, "w")))
		die("%s: %s", opt.outfile, strerror(errno));
	report(out, elapsed);
	if (out != stdout)
		fclose(out);
	for (int i = 0; i < ndevs; i++) {
		disconnect(&devs[i]);
		SSL_SESSION_free(devs[i].sess);
	}
	SSL_CTX_free(ctx);
	close(epfd);
	return 0;
}
