/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * config_keys.c - the table of config_keys.h: what every key of easgate.conf
 * means, in the order easgate.conf(5) and the sample configuration show it.
 * Defaults are not written here: they are read from config_defaults() (and,
 * for a list entry, from the defaults config.c gives a new entry).
 */
#include "config_keys.h"
#include "eas_cmd.h"
#include "throttle.h"
#include "tls_params.h"

#include <string.h>

#define ROOT(f) .base = CKB_ROOT, .off = offsetof(struct gw_config, f)
#define CERT(f) .base = CKB_CERT, .off = offsetof(struct cfg_cert, f)
#define BACK(f) .base = CKB_BACKEND, .off = offsetof(struct cfg_backend, f)
#define TCLS(f) .base = CKB_TCLASS, .off = offsetof(struct throttle_class, f)

static void put_strings(struct sbuf *out, const char *open, const char *close, int n,
			const char *(*at)(const void *, int), const void *base)
{
	sbuf_puts(out, open);
	for (int i = 0; i < n; i++)
		sbuf_printf(out, "%s\"%s\"", i ? ", " : " ", at(base, i));
	sbuf_printf(out, " %s", close);
}

static const char *listen_at(const void *b, int i)
{
	return ((const struct gw_config *)b)->listen[i].text;
}
static void fmt_listen(const void *b, struct sbuf *out)
{
	put_strings(out, "[", "]", ((const struct gw_config *)b)->nlisten, listen_at, b);
}

static const char *iface_at(const void *b, int i)
{
	return ((const struct gw_config *)b)->xdp.ifaces[i];
}
static void fmt_ifaces(const void *b, struct sbuf *out)
{
	put_strings(out, "[", "]", ((const struct gw_config *)b)->xdp.nifaces, iface_at, b);
}

static const char *family_at(const void *b, int i)
{
	return ((const struct gw_config *)b)->policy.families[i];
}
static void fmt_families(const void *b, struct sbuf *out)
{
	put_strings(out, "[", "]", ((const struct gw_config *)b)->policy.nfamilies, family_at, b);
}

static const char *admin_at(const void *b, int i)
{
	return ((const struct gw_config *)b)->notify.admins[i];
}
static void fmt_admins(const void *b, struct sbuf *out)
{
	put_strings(out, "[", "]", ((const struct gw_config *)b)->notify.nadmins, admin_at, b);
}

/* Rule texts may hold quotes: written back escaped, as the file has them. */
static void put_texts(struct sbuf *out, const struct cfg_text *t, int n)
{
	sbuf_puts(out, "(");
	for (int i = 0; i < n; i++) {
		sbuf_puts(out, i ? ", \"" : " \"");
		for (const char *p = t[i].text; *p; p++) {
			if (*p == '"' || *p == '\\')
				sbuf_puts(out, "\\");
			sbuf_put(out, p, 1);
		}
		sbuf_puts(out, "\"");
	}
	sbuf_puts(out, " )");
}
static void fmt_rules(const void *b, struct sbuf *out)
{
	const struct gw_config *c = b;
	put_texts(out, c->policy.rules, c->policy.nrules);
}
static void fmt_blocked(const void *b, struct sbuf *out)
{
	const struct gw_config *c = b;
	put_texts(out, c->policy.blocked_ids, c->policy.nblocked);
}
static void fmt_allowed(const void *b, struct sbuf *out)
{
	const struct gw_config *c = b;
	put_texts(out, c->policy.allowed_ids, c->policy.nallowed);
}

static void fmt_exempt(const void *b, struct sbuf *out)
{
	const struct gw_config *c = b;
	sbuf_puts(out, "[");
	for (int i = 0; i < c->limits.ncap_exempt; i++) {
		const struct cfg_prefix *p = &c->limits.cap_exempt[i];
		static const uint8_t v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		sbuf_puts(out, i ? ", \"" : " \"");
		if (p->len >= 96 && !memcmp(p->addr, v4, 12))
			sbuf_printf(out, "%u.%u.%u.%u/%u", p->addr[12], p->addr[13], p->addr[14],
				    p->addr[15], p->len - 96);
		else
			for (int j = 0; j < 16; j += 2)
				sbuf_printf(out, "%x%s", (p->addr[j] << 8) | p->addr[j + 1],
					    j < 14 ? ":" : "");
		if (p->len < 96 || memcmp(p->addr, v4, 12))
			sbuf_printf(out, "/%u", p->len);
		sbuf_puts(out, "\"");
	}
	sbuf_puts(out, " ]");
}

static void fmt_min_version(const void *b, struct sbuf *out)
{
	sbuf_printf(out, "\"%s\"",
		    tls_params_version_name(((const struct gw_config *)b)->tls.min_version));
}

static void fmt_backend_addr(const void *b, struct sbuf *out)
{
	sbuf_printf(out, "\"%s\"", ((const struct cfg_backend *)b)->addr.text);
}

/* Every command a file can name (eas_cmd_parse knows it) whose threshold is
 * not the class's own: its number, or false when it never counts as a loop. */
static void fmt_loop_cmds(const void *b, struct sbuf *out)
{
	const struct throttle_class *k = b;
	sbuf_puts(out, "{");
	for (int i = 0; i < THROTTLE_NCMD; i++) {
		const char *name = eas_cmd_name(i);
		if (!k->loop.cmd[i] || eas_cmd_parse(name, strlen(name)) != i)
			continue;
		if (k->loop.cmd[i] == THROTTLE_LOOP_OFF)
			sbuf_printf(out, " %s = false;", name);
		else
			sbuf_printf(out, " %s = %u;", name, k->loop.cmd[i]);
	}
	sbuf_puts(out, " }");
}

const struct cfg_key config_keys[] = {
    /* --- the top level --------------------------------------------------------------- */
    {.path = "listen",
     .type = CK_OTHER,
     ROOT(listen),
     .type_text = "address or list of addresses",
     .fmt = fmt_listen,
     .sample = "[ \"0.0.0.0:443\" ]",
     .flags = CKF_EXAMPLE,
     .doc = "Where phones connect: one address or a list, \"0.0.0.0:443\", \"[::]:443\". "
	    "\"http://10.0.0.5:8080\" is plain HTTP, for a load balancer in front that has "
	    "ended TLS already (SSL offload); X-Forwarded-Proto then says http."},
    {.path = "workers",
     .type = CK_INT,
     ROOT(workers),
     .doc = "Worker processes; 0 = one per CPU. Each has its own listening socket "
	    "(SO_REUSEPORT) and shares no state with the others."},
    {.path = "user",
     .type = CK_STR,
     ROOT(user),
     .def = "\"easgate\" if that user exists, else \"nobody\"",
     .sample = "\"easgate\"",
     .flags = CKF_EXAMPLE,
     .doc = "The unprivileged account the daemon runs as after setup."},
    {.path = "group",
     .type = CK_STR,
     ROOT(group),
     .doc = "Its group; \"\" = the user's primary group. Members of that group may use "
	    "easctl."},
    {.path = "state_dir",
     .type = CK_STR,
     ROOT(state_dir),
     .doc = "Where the node keeps inventory.db (devices, decisions, rules, lists) and "
	    "steering.key."},
    {.path = "control_socket",
     .type = CK_STR,
     ROOT(control_socket),
     .doc = "The socket easctl talks to."},
    {.path = "log_level",
     .type = CK_STR,
     ROOT(log_level),
     .type_text = "error | warn | info | debug",
     .doc = "The least important lines logged."},
    {.path = "access_log",
     .type = CK_BOOL,
     ROOT(access_log),
     .doc = "One line per request (never its credentials)."},
    {.path = "strict_device_id",
     .type = CK_BOOL,
     ROOT(strict_device_id),
     .doc = "DeviceId and DeviceType: 1..32 printable ASCII characters are accepted (Windows "
	    "Mail sends \"Dbg-NOByirVoyhBcQHNFB4wsmw==\", Nine's debug build "
	    "\"Dbg-Nine526977DA8D36\"); refused with 400 (EAS 108/109) are control bytes, "
	    "blanks, non-ASCII, more than 32, the characters \" \\ , anywhere, = + - @ first "
	    "(spreadsheet formulas), ':' in a DeviceId (\"user:DeviceId\" lists), '-' in a "
	    "DeviceType (Exchange refuses it). A base64-query DeviceId that is binary is shown "
	    "as upper-case hex.\ntrue holds the plain-query DeviceId to Exchange's own rule, "
	    "1..32 letters and digits (the gateway answers 108 as Exchange would); the README's "
	    "\"Client identifiers\" lists what real clients send."},
    {.path = "relay_method",
     .type = CK_STR,
     ROOT(relay_method),
     .type_text = "auto | user | splice",
     .doc = "How a body (an attachment up or down) moves when both legs are plain HTTP: "
	    "\"auto\" = splice(2) in the kernel where it was measured cheaper and this kernel "
	    "does it (probed at start; easctl status shows the choice), else user space. "
	    "A phone leg on TLS counts as plain when tls.ktls handed it to the kernel; "
	    "otherwise its bytes go through user space (OpenSSL)."},
    {.path = "steering_secret_file",
     .type = CK_STR,
     ROOT(steering_secret_file),
     .def = "state_dir/steering.key",
     .sample = "\"/var/lib/easgate/steering.key\"",
     .flags = CKF_COMMENTED,
     .doc = "The secret that keys the steering hash (SipHash), created on first start. In a "
	    "farm (store = \"postgresql\") the nodes share one through the database: the first "
	    "node offers its own, the others adopt it (and write it here)."},
    {.path = "store",
     .type = CK_ENUM,
     ROOT(store),
     .choices = "sqlite|postgresql",
     .doc = "Where devices, admin decisions, runtime rules, personal lists, OS versions and "
	    "loop quarantines live: \"sqlite\" is this node's own file, state_dir/inventory.db "
	    "(nothing to run); \"postgresql\" is shared by a farm of nodes through one "
	    "database, and each node keeps a snapshot in inventory.db and serves from it, also "
	    "while the database is away (the README's \"Farm\"). Store settings take effect at "
	    "the next start, not on reload."},
    {.path = "node_name",
     .type = CK_STR,
     ROOT(node_name),
     .def = "the host name",
     .sample = "\"gw1\"",
     .flags = CKF_COMMENTED,
     .doc = "This node's name in the farm and in easctl nodes: no spaces or quotes."},
    {.path = "postgresql",
     .type = CK_GROUP,
     .flags = CKF_COMMENTED,
     .doc = "The farm's database (store = \"postgresql\")."},
    {.path = "postgresql.conninfo",
     .type = CK_STR,
     ROOT(pg.conninfo),
     .sample = "\"host=10.0.0.11,10.0.0.12 dbname=easgate user=easgate "
	       "target_session_attrs=read-write\"",
     .flags = CKF_EXAMPLE,
     .doc = "A libpq connection string, checked by libpq's own parser. Several hosts are "
	    "tried in order; with target_session_attrs=read-write a failover needs nothing "
	    "from easgate. Put the password in a passfile (passfile=/etc/easgate/pgpass, mode "
	    "0600, owned by the daemon's user), never here. IP addresses (or hostaddr=) keep "
	    "connecting free of blocking name lookups."},
    {.path = "postgresql.timeout",
     .type = CK_SECS,
     ROOT(pg.timeout_ms),
     .doc = "A connection attempt or one query without an answer."},
    {.path = "postgresql.heartbeat",
     .type = CK_SECS,
     ROOT(pg.heartbeat_ms),
     .doc = "How often the node writes its heartbeat (easctl nodes)."},
    {.path = "postgresql.initial_sync",
     .type = CK_SECS,
     ROOT(pg.initial_sync_ms),
     .doc = "How long a node without a snapshot waits for one before serving."},
    {.path = "postgresql.journal_max",
     .type = CK_UINT,
     ROOT(pg.journal_max),
     .doc = "Changed rows waiting for the database, at most (one per device)."},
    {.path = "postgresql.auto_migrate",
     .type = CK_BOOL,
     ROOT(pg.auto_migrate),
     .doc = "Apply schema migrations when connecting; false leaves it to "
	    "easgated --db-migrate or easctl db migrate."},

    /* --- tls ------------------------------------------------------------------------- */
    {.path = "tls", .type = CK_GROUP, .doc = "The phones' side of TLS."},
    {.path = "tls.certificates",
     .type = CK_LIST,
     .doc = "PEM files: the leaf first, then its intermediates. The whole chain is sent on "
	    "every handshake. Several entries = SNI picks by name (SANs); the first one "
	    "answers unknown names."},
    {.path = "tls.certificates.cert",
     .type = CK_STR,
     CERT(cert),
     .doc = "The certificate chain (required)."},
    {.path = "tls.certificates.key",
     .type = CK_STR,
     CERT(key),
     .doc = "Its private key (required)."},
    {.path = "tls.certificates.ocsp_response",
     .type = CK_STR,
     CERT(ocsp_response),
     .flags = CKF_COMMENTED,
     .sample = "\"/etc/easgate/tls/server.ocsp.der\"",
     .doc = "Staple this OCSP response (DER, as openssl ocsp -respout writes it) instead of "
	    "fetching one; the file is re-read when it changes and stapled only while it is "
	    "valid. \"\" = fetch it (ocsp_stapling)."},
    {.path = "tls.allow_incomplete_chain",
     .type = CK_BOOL,
     ROOT(tls.allow_incomplete_chain),
     .doc = "The start (and every reload) is refused when a chain does not reach a trusted "
	    "root (missing intermediate), the key does not match, or a certificate expired. "
	    "true starts anyway, with a warning."},
    {.path = "tls.trust_file",
     .type = CK_STR,
     ROOT(tls.trust_file),
     .doc = "Extra trust anchors for that check (private CAs); \"\" = the system store only."},
    {.path = "tls.ticket_rotation",
     .type = CK_UINT,
     ROOT(tls.ticket_rotate_s),
     .type_text = "seconds (integer)",
     .doc = "Session ticket keys rotate this often; 0 disables tickets."},
    {.path = "tls.expiry_warning",
     .type = CK_UINT,
     ROOT(tls.expiry_warn_days),
     .type_text = "days",
     .doc = "Warn (log, metrics, notices) when a certificate expires within this many days."},
    {.path = "tls.min_version",
     .type = CK_OTHER,
     ROOT(tls.min_version),
     .type_text = "TLSv1.2 | TLSv1.3 | TLSv1.1 | TLSv1.0",
     .fmt = fmt_min_version,
     .doc = "The oldest protocol phones may use. For an old fleet only, \"TLSv1.1\" or "
	    "\"TLSv1.0\": then OpenSSL's security level is lowered to 0 (TLS 1.0/1.1 sign with "
	    "SHA-1/MD5 and OpenSSL 3 refuses them otherwise), the default cipher list gains "
	    "CBC suites, and the start, every reload and easctl certcheck warn about it."},
    {.path = "tls.ciphers",
     .type = CK_STR,
     ROOT(tls.ciphers),
     .def = TLS_PARAMS_CIPHERS ", and CBC suites after them when min_version is below "
			       "TLS 1.2",
     .sample = "\"" TLS_PARAMS_CIPHERS "\"",
     .flags = CKF_COMMENTED,
     .doc = "TLS 1.2 (and older) ciphers, an OpenSSL list; a name that selects nothing is "
	    "refused with its line."},
    {.path = "tls.ciphersuites",
     .type = CK_STR,
     ROOT(tls.ciphersuites),
     .def = TLS_PARAMS_CIPHERSUITES,
     .sample = "\"" TLS_PARAMS_CIPHERSUITES "\"",
     .flags = CKF_COMMENTED,
     .doc = "TLS 1.3 ciphersuites, an OpenSSL list."},
    {.path = "tls.groups",
     .type = CK_STR,
     ROOT(tls.groups),
     .def = TLS_PARAMS_GROUPS,
     .sample = "\"" TLS_PARAMS_GROUPS "\"",
     .flags = CKF_COMMENTED,
     .doc = "Key exchange groups, preferred first."},
    {.path = "tls.ocsp_stapling",
     .type = CK_BOOL,
     ROOT(tls.ocsp_stapling),
     .doc = "Send each certificate's OCSP response in the handshake, so phones need not ask "
	    "the CA. Taken from ocsp_response when set, else fetched by the master from the "
	    "responder named in the certificate (Authority Information Access), refreshed at "
	    "half its validity, never during a handshake. A response is stapled only when its "
	    "signature, the certificate's status (good) and its dates check out; a revoked, "
	    "broken or expired one is logged and not stapled. easctl status shows the state."},
    {.path = "tls.ocsp_fetch_timeout",
     .type = CK_SECS,
     ROOT(tls.ocsp_fetch_timeout_ms),
     .doc = "One fetch from a responder."},
    {.path = "tls.ocsp_retry",
     .type = CK_SECS,
     ROOT(tls.ocsp_retry_ms),
     .doc = "The first retry after a failed fetch; it doubles up to an hour."},
    {.path = "tls.cleanse_plaintext",
     .type = CK_BOOL,
     ROOT(tls.cleanse_plaintext),
     .doc = "Have OpenSSL wipe each decrypted record (a request head: the phone's "
	    "Authorization) once read, and its read buffer before freeing it. Costs about 1 us "
	    "of CPU per request (~5% in keep-alive). false = the last request's plaintext may "
	    "stay in freed heap memory until reused (cores are off either way)."},
    {.path = "tls.ktls",
     .type = CK_ENUM,
     ROOT(tls.ktls),
     .choices = "off|auto|on",
     .doc = "Kernel TLS (TCP_ULP \"tls\") for a phone's connection once its handshake is "
	    "done: the kernel then encrypts and decrypts its records (TLS 1.2 and 1.3, AES-GCM "
	    "and ChaCha20-Poly1305 where the kernel has them), bodies move by splice where "
	    "relay_method says it pays, and an idle connection keeps no OpenSSL state. "
	    "\"auto\" = used where the start probe found it in this kernel and measured it "
	    "cheaper than OpenSSL on this machine; \"on\" = used wherever the kernel has it, "
	    "and easgated refuses to start on a kernel without it; \"off\" = never. easctl "
	    "status says which, and why. A phone that sends a TLS 1.3 KeyUpdate is "
	    "disconnected cleanly (logged): kernels before 6.14 cannot take new keys."},

    /* --- timeouts -------------------------------------------------------------------- */
    {.path = "timeouts", .type = CK_GROUP, .doc = "How long each stage may take."},
    {.path = "timeouts.handshake",
     .type = CK_SECS,
     ROOT(timeouts.handshake_ms),
     .doc = "The TLS handshake."},
    {.path = "timeouts.request_head",
     .type = CK_SECS,
     ROOT(timeouts.head_ms),
     .doc = "From the first byte of a request to its end of head; also how long a new "
	    "connection may wait before its first request starts (slowloris: connect and say "
	    "nothing)."},
    {.path = "timeouts.request_body",
     .type = CK_SECS,
     ROOT(timeouts.body_ms),
     .doc = "The longest silence while a body streams (either way), and the window a "
	    "request body's rate is judged over (limits.min_body_rate)."},
    {.path = "timeouts.idle",
     .type = CK_SECS,
     ROOT(timeouts.idle_ms),
     .doc = "Keep-alive between requests."},
    {.path = "timeouts.backend_connect",
     .type = CK_SECS,
     ROOT(timeouts.backend_connect_ms),
     .doc = "Connecting to a backend."},
    {.path = "timeouts.backend_response",
     .type = CK_SECS,
     ROOT(timeouts.backend_response_ms),
     .doc = "A backend's answer to an ordinary command."},
    {.path = "timeouts.hanging_request",
     .type = CK_SECS,
     ROOT(timeouts.hanging_ms),
     .doc = "A backend's answer to a Ping (or a long-poll Sync): its heartbeat may reach "
	    "3540 s."},
    {.path = "timeouts.drain",
     .type = CK_SECS,
     ROOT(timeouts.drain_ms),
     .doc = "The bound of a graceful stop or reload."},

    /* --- limits ---------------------------------------------------------------------- */
    {.path = "limits", .type = CK_GROUP, .doc = "Sizes and counts."},
    {.path = "limits.max_head",
     .type = CK_UINT,
     ROOT(limits.max_head),
     .type_text = "bytes",
     .doc = "A request head (431 beyond)."},
    {.path = "limits.max_line",
     .type = CK_UINT,
     ROOT(limits.max_line),
     .type_text = "bytes",
     .doc = "One header line (414 / 431 beyond); at most max_head."},
    {.path = "limits.max_headers",
     .type = CK_UINT,
     ROOT(limits.max_headers),
     .doc = "Header lines of a request (8..96)."},
    {.path = "limits.max_connections",
     .type = CK_UINT,
     ROOT(limits.max_conns),
     .doc = "Open connections per worker."},
    {.path = "limits.inspect_body",
     .type = CK_UINT,
     ROOT(limits.inspect_body),
     .type_text = "bytes",
     .doc = "Provision and Settings bodies up to this size are read before deciding "
	    "(DeviceInformation: model, OS), de-chunked and inflated (gzip, deflate) within it; "
	    "one larger or undecodable is refused (413/415/400). 0 = never read bodies "
	    "(DeviceInformation unknown)."},
    {.path = "limits.min_body_rate",
     .type = CK_UINT,
     ROOT(limits.min_body_rate),
     .type_text = "bytes per second",
     .doc = "A request body must average this rate over every timeouts.request_body window, "
	    "or the connection (and the backend connection it holds) is closed: without it a "
	    "body trickling a byte a minute holds a backend for ever. 500 B/s (Apache "
	    "mod_reqtimeout's MinRate) is a tenth of a 2G/GPRS phone's upload; a body slowed by "
	    "the backend (the gateway stopped reading) never counts against the phone. 0 = only "
	    "the silence timeout."},
    {.path = "limits.max_connections_per_source",
     .type = CK_UINT,
     ROOT(limits.max_conns_per_source),
     .doc = "Open connections per source (an IPv4 address, an IPv6 /64: a phone's own "
	    "prefix) over all workers, on TLS listeners. A phone keeps 1-3 (a Ping long-poll, a "
	    "Sync, an attachment download); the largest honest crowd behind one address is a "
	    "corporate Wi-Fi egress or a carrier-grade NAT: 2,000 phones x 3 = 6,000, and 8192 "
	    "leaves a third more. Over the cap a new connection is closed at accept, before any "
	    "TLS work; with XDP on, the source's new SYNs end in the kernel (xdp.action) until "
	    "one of its connections closes. 0 = no cap."},
    {.path = "limits.per_source_exempt",
     .type = CK_OTHER,
     ROOT(limits.cap_exempt),
     .type_text = "list of prefixes",
     .fmt = fmt_exempt,
     .doc = "Sources never capped, e.g. your own NAT egress or a partner's proxy "
	    "(\"198.51.100.0/24\", \"2001:db8:100::/48\", or a bare address). A plain "
	    "(http://) listener's peers are load balancers: never capped."},

    /* --- backends -------------------------------------------------------------------- */
    {.path = "backends",
     .type = CK_LIST,
     .def = "the demo backend of make run, \"127.0.0.1:8081\", checked on /health",
     .flags = CKF_EXAMPLE,
     .doc = "Exchange (or any EAS) servers. Users are spread by a keyed hash of their "
	    "identity (Maglev consistent hashing): losing one backend moves only its users."},
    {.path = "backends.name",
     .type = CK_STR,
     BACK(name),
     .def = "none (required)",
     .sample = "\"cas1\"",
     .flags = CKF_EXAMPLE,
     .doc = "Unique, at most 31 characters."},
    {.path = "backends.address",
     .type = CK_OTHER,
     BACK(addr),
     .type_text = "address",
     .fmt = fmt_backend_addr,
     .def = "none (required)",
     .sample = "\"10.0.0.11:443\"",
     .flags = CKF_EXAMPLE,
     .doc = "IPv4:port or [IPv6]:port."},
    {.path = "backends.prefix",
     .type = CK_STR,
     BACK(prefix),
     .doc = "Prepended to the path (\"/SOGo\" for SOGo): starts with '/', does not end with "
	    "one."},
    {.path = "backends.tls",
     .type = CK_BOOL,
     BACK(tls),
     .sample = "true",
     .flags = CKF_EXAMPLE,
     .doc = "HTTPS to the backend; false = plain HTTP (SSL offload)."},
    {.path = "backends.ca",
     .type = CK_STR,
     BACK(ca),
     .doc = "The CA file to verify it with; \"\" = the system store."},
    {.path = "backends.sni",
     .type = CK_STR,
     BACK(sni),
     .sample = "\"mail.example.com\"",
     .flags = CKF_EXAMPLE,
     .doc = "The name sent and verified; \"\" = none sent, and the certificate must name the "
	    "address (IP SAN)."},
    {.path = "backends.verify",
     .type = CK_BOOL,
     BACK(verify),
     .doc = "Verify the backend's certificate; false accepts any (an explicit opt-out)."},
    {.path = "backends.weight",
     .type = CK_UINT,
     BACK(weight),
     .doc = "Its share of the users relative to the others (1..1000)."},
    {.path = "backends.reuse",
     .type = CK_ENUM,
     BACK(reuse),
     .choices = "safe|never",
     .doc = "\"never\" for servers that close kept-alive connections without saying so: one "
	    "backend connection per request."},
    {.path = "backends.health",
     .type = CK_GROUP,
     .type_text = "group, or false",
     .doc = "Health checks; health = false turns them off."},
    {.path = "backends.health.path",
     .type = CK_STR,
     BACK(health_path),
     .doc = "Requested with GET; any answer below 500 is alive (an EAS server answers 401 "
	    "without credentials)."},
    {.path = "backends.health.interval",
     .type = CK_SECS,
     BACK(health_interval_ms),
     .doc = "Between checks."},
    {.path = "backends.health.timeout",
     .type = CK_SECS,
     BACK(health_timeout_ms),
     .doc = "For one check."},
    {.path = "backends.health.rise",
     .type = CK_UINT,
     BACK(rise),
     .doc = "Successes in a row that bring a backend up."},
    {.path = "backends.health.fall",
     .type = CK_UINT,
     BACK(fall),
     .doc = "Failures in a row that take it down."},

    /* --- policy ---------------------------------------------------------------------- */
    {.path = "policy", .type = CK_GROUP, .doc = "Which phones may sync."},
    {.path = "policy.default",
     .type = CK_ENUM,
     ROOT(policy.default_access),
     .choices = "allow|block|quarantine",
     .doc = "What a device gets when no rule matches (Exchange's DefaultAccessLevel)."},
    {.path = "policy.rules",
     .type = CK_OTHER,
     ROOT(policy.rules),
     .type_text = "list of strings",
     .fmt = fmt_rules,
     .sample = "(\n"
	       "    # \"block DeviceOS is \\\"iOS 6.1 10B142\\\"\",\n"
	       "    # \"block UserAgent matches \\\"^Apple.*1002.*\\\" cmd MeetingResponse "
	       "name \\\"ios61-loop\\\"\",\n"
	       "    # \"quarantine DeviceOS < \\\"iOS 7.0.2\\\"\"\n"
	       "  )",
     .doc = "Rules: <allow|block|quarantine> <Characteristic> <op> \"pattern\" [cmd Cmd,...] "
	    "[name \"n\"]. Characteristics: DeviceType DeviceModel DeviceOS UserAgent XMSWL "
	    "User DeviceId. Ops: is (exact, case-insensitive, as Exchange), like (glob), "
	    "matches (PCRE2 regex), < <= > >= == != (a version, DeviceOS only). Precedence: "
	    "easctl rules precedence."},
    {.path = "policy.blocked_device_ids",
     .type = CK_OTHER,
     ROOT(policy.blocked_ids),
     .type_text = "list of strings",
     .fmt = fmt_blocked,
     .doc = "Exchange's personal block list: \"DeviceId\" or \"user:DeviceId\"."},
    {.path = "policy.allowed_device_ids",
     .type = CK_OTHER,
     ROOT(policy.allowed_ids),
     .type_text = "list of strings",
     .fmt = fmt_allowed,
     .doc = "Exchange's personal allow list: \"DeviceId\" or \"user:DeviceId\"."},
    {.path = "policy.incubation",
     .type = CK_GROUP,
     .doc = "Quarantine OS versions first seen (by an authenticated request) less than days "
	    "ago, unless approved (easctl versions approve \"iOS 8.0 12A365\")."},
    {.path = "policy.incubation.enabled",
     .type = CK_BOOL,
     ROOT(policy.incubation),
     .def = "true once the group is written; without it, off",
     .doc = "Incubation on or off."},
    {.path = "policy.incubation.days",
     .type = CK_UINT,
     ROOT(policy.incubation_days),
     .type_text = "days",
     .doc = "How long a new OS version incubates."},
    {.path = "policy.incubation.families",
     .type = CK_OTHER,
     ROOT(policy.families),
     .type_text = "list of strings",
     .fmt = fmt_families,
     .doc = "The OS families that incubate, such as \"iOS\"; none = every family."},
    {.path = "policy.ios_builds",
     .type = CK_STR,
     ROOT(policy.ios_builds),
     .doc = "An Apple build -> iOS version table (data/ios-builds.tsv's format); \"\" = the "
	    "one built in."},

    /* --- throttle -------------------------------------------------------------------- */
    {.path = "throttle",
     .type = CK_GROUP,
     .doc = "Budgets and loop detection (the iOS 6.1 MeetingResponse loop, KB2814847). A "
	    "device over its budget gets 503 with Retry-After and X-MS-ASThrottle; one that "
	    "repeats the same command with the same body while getting successes is throttled, "
	    "then quarantined for its loop, then (with XDP) dropped in the kernel. Classes are "
	    "chosen with the rule language; class 0 is the default."},
    {.path = "throttle.enabled",
     .type = CK_BOOL,
     ROOT(throttle.enabled),
     .def = "true once the group is written; without it, off",
     .sample = "true",
     .flags = CKF_EXAMPLE,
     .doc = "Throttling and loop detection on or off."},
    {.path = "throttle.devices",
     .type = CK_UINT,
     ROOT(throttle.tc.devices),
     .doc = "Device table slots (fixed memory, ~64 bytes each)."},
    {.path = "throttle.users",
     .type = CK_UINT,
     ROOT(throttle.tc.users),
     .doc = "User table slots (max_devices is counted per user)."},
    {.path = "throttle.offenders",
     .type = CK_UINT,
     ROOT(throttle.tc.offenders),
     .doc = "Records of throttled and looping devices, for easctl throttle and the metrics."},
    {.path = "throttle.device_idle",
     .type = CK_NUM,
     ROOT(throttle.tc.device_idle),
     .type_text = "seconds",
     .doc = "A device not seen this long no longer counts against its user's max_devices."},
    {.path = "throttle.max_request",
     .type = CK_NUM,
     ROOT(throttle.tc.max_request),
     .type_text = "seconds",
     .doc = "The longest a request may be in flight (a Ping's heartbeat): the in-flight count "
	    "of a device idle this long is reset, so a request whose end was lost cannot hold "
	    "it at max_concurrent for ever."},
    {.path = "throttle.classes",
     .type = CK_LIST,
     .more = "{ name = \"ios61\"; match = \"DeviceOS like \\\"iOS 6.1*\\\"\";\n"
	     "      loop = { commands = { MeetingResponse = 4; }; }; }",
     .doc = "Budget classes; the first whose match selects a device applies to it, class 0 "
	    "(which needs no match) to the rest."},
    {.path = "throttle.classes.name",
     .type = CK_STR,
     TCLS(name),
     .doc = "The class's name (easctl throttle, metrics)."},
    {.path = "throttle.classes.match",
     .type = CK_STR,
     TCLS(match),
     .doc = "A selector in the rule language without the access word, e.g. DeviceOS like "
	    "\"iOS 6.1*\"; every class but the first needs one."},
    {.path = "throttle.classes.burst",
     .type = CK_NUM,
     TCLS(burst),
     .type_text = "requests",
     .doc = "The budget's bucket (and starting balance); 0 = no budget."},
    {.path = "throttle.classes.rate",
     .type = CK_NUM,
     TCLS(rate),
     .type_text = "requests per second",
     .doc = "How fast the bucket refills."},
    {.path = "throttle.classes.cutoff",
     .type = CK_NUM,
     TCLS(cutoff),
     .type_text = "requests",
     .doc = "How far below zero a device may go before its cool-down."},
    {.path = "throttle.classes.cooldown",
     .type = CK_NUM,
     TCLS(cooldown),
     .type_text = "seconds",
     .doc = "How long a device past its cutoff is refused."},
    {.path = "throttle.classes.max_concurrent",
     .type = CK_UINT,
     TCLS(max_concurrent),
     .doc = "Requests in flight per device (Exchange's EasMaxConcurrency); 0 = unlimited."},
    {.path = "throttle.classes.max_devices",
     .type = CK_UINT,
     TCLS(max_devices),
     .doc = "Devices per user (EasMaxDevices: the next one gets Status 177); 0 = unlimited. "
	    "Only devices a backend accepted count."},
    {.path = "throttle.classes.hammer",
     .type = CK_UINT,
     TCLS(hammer),
     .doc = "Refused requests (strikes) tolerated in a stage before the device moves to the "
	    "next: from throttled for a loop to quarantined, from cut off or quarantined to "
	    "dropped in the kernel (XDP); 0..255."},
    {.path = "throttle.classes.xdp_ttl",
     .type = CK_NUM,
     TCLS(xdp_ttl),
     .type_text = "seconds",
     .doc = "The longest life of a kernel flow verdict for this class's looping devices."},
    {.path = "throttle.classes.loop",
     .type = CK_GROUP,
     .doc = "Loop detection: the same command with the same body, answered with success, "
	    "threshold times within window."},
    {.path = "throttle.classes.loop.window",
     .type = CK_NUM,
     TCLS(loop.window),
     .type_text = "seconds",
     .doc = "The window repeats are counted in (1..3600)."},
    {.path = "throttle.classes.loop.threshold",
     .type = CK_UINT,
     TCLS(loop.threshold),
     .doc = "Repeats that make a loop, for commands not listed in commands; 0 = detector "
	    "off."},
    {.path = "throttle.classes.loop.throttle",
     .type = CK_NUM,
     TCLS(loop.throttle),
     .type_text = "seconds",
     .doc = "How long a detected loop is throttled (503)."},
    {.path = "throttle.classes.loop.quarantine",
     .type = CK_NUM,
     TCLS(loop.quarantine),
     .type_text = "seconds",
     .doc = "How long a loop detected again is quarantined."},
    {.path = "throttle.classes.loop.memory",
     .type = CK_NUM,
     TCLS(loop.memory),
     .type_text = "seconds",
     .doc = "How long after a stage a new detection goes on to the next stage."},
    {.path = "throttle.classes.loop.commands",
     .type = CK_OTHER,
     .base = CKB_TCLASS,
     .type_text = "group of Command = threshold or false",
     .fmt = fmt_loop_cmds,
     .doc = "Thresholds per command, e.g. MeetingResponse = 8; Command = false means the "
	    "command never counts as a loop. Those not listed use threshold."},

    /* --- xdp ------------------------------------------------------------------------- */
    {.path = "xdp", .type = CK_GROUP, .doc = "The XDP filter in the kernel."},
    {.path = "xdp.interfaces",
     .type = CK_OTHER,
     ROOT(xdp.ifaces),
     .type_text = "list of interface names",
     .fmt = fmt_ifaces,
     .doc = "Interfaces whose ingress the XDP filter guards; none = XDP off."},
    {.path = "xdp.mode",
     .type = CK_ENUM,
     ROOT(xdp.mode),
     .choices = "auto|native|generic",
     .doc = "auto: native, else generic, else without XDP if the kernel refuses it; native "
	    "or generic are demanded: the start fails if the kernel cannot."},
    {.path = "xdp.action",
     .type = CK_ENUM,
     ROOT(xdp.action_rst),
     .choices = "drop|rst",
     .doc = "What blocked flows get."},
    {.path = "xdp.syn_rate",
     .type = CK_UINT,
     ROOT(xdp.syn_rate),
     .doc = "New connections per second per source; 0 = no limit."},
    {.path = "xdp.syn_burst",
     .type = CK_UINT,
     ROOT(xdp.syn_burst),
     .doc = "The burst allowed above syn_rate."},
    {.path = "xdp.verdict_ttl",
     .type = CK_UINT,
     ROOT(xdp.verdict_ttl_s),
     .type_text = "seconds (integer)",
     .doc = "How long a kernel flow verdict lives."},
    {.path = "xdp.pin_dir",
     .type = CK_STR,
     ROOT(xdp.pin_dir),
     .doc = "Where the BPF maps and links are pinned."},

    /* --- admin ----------------------------------------------------------------------- */
    {.path = "admin", .type = CK_GROUP, .doc = "Metrics and the web console."},
    {.path = "admin.metrics",
     .type = CK_STR,
     ROOT(admin.metrics),
     .doc = "Prometheus /metrics, e.g. \"127.0.0.1:9443\"; \"\" = off."},
    {.path = "admin.web",
     .type = CK_STR,
     ROOT(admin.web),
     .doc = "The web console, HTTPS with the certificates of tls, e.g. \"127.0.0.1:9444\" "
	    "(reach it through an SSH tunnel or a jump host); \"\" = off."},
    {.path = "admin.web_accounts",
     .type = CK_STR,
     ROOT(admin.web_accounts),
     .doc = "The console's accounts: \"name:role:yescrypt-hash\" lines, written by easctl "
	    "admin passwd NAME viewer|helpdesk|admin. viewer reads; helpdesk approves, blocks, "
	    "quarantines and removes devices; admin also changes rules, OS versions and lists. "
	    "The file must be 0600: the console refuses a group- or world-readable one."},
    {.path = "admin.web_assets",
     .type = CK_STR,
     ROOT(admin.web_assets),
     .doc = "The console's pages (the package's configuration names /usr/share/easgate/web)."},
    {.path = "admin.web_chartjs",
     .type = CK_STR,
     ROOT(admin.web_chartjs),
     .doc = "Chart.js for the console's charts (Debian's libjs-chart.js)."},
    {.path = "admin.web_idle",
     .type = CK_SECS,
     ROOT(admin.web_idle_ms),
     .doc = "A console session ends after this long without a request."},
    {.path = "admin.web_lockout",
     .type = CK_SECS,
     ROOT(admin.web_lockout_ms),
     .doc = "20 wrong passwords lock a source or an account this long."},

    /* --- notify ---------------------------------------------------------------------- */
    {.path = "notify",
     .type = CK_GROUP,
     .doc = "Notices: to admins (a device quarantined by rule, default or incubation, a loop "
	    "quarantine, a new OS version, a backend down or up, a certificate within "
	    "tls.expiry_warning days), batched; to a phone's user once per quarantine. SMTP "
	    "through a relay and/or a webhook; nothing is sent while both urls are \"\". "
	    "Undeliverable messages are retried with backoff; at most queue wait, and new ones "
	    "beyond that are dropped and counted (easgate_notify_dropped_total). In a farm each "
	    "node sends its own batch of what it saw itself: up to one message per node per "
	    "batch window."},
    {.path = "notify.batch",
     .type = CK_MINUTES,
     ROOT(notify.batch_ms),
     .doc = "One admin message per batch window, never one per phone."},
    {.path = "notify.from", .type = CK_STR, ROOT(notify.from), .doc = "The sender's address."},
    {.path = "notify.admins",
     .type = CK_OTHER,
     ROOT(notify.admins),
     .type_text = "list of addresses",
     .fmt = fmt_admins,
     .doc = "Who gets the admin messages, e.g. [ \"mobile-admins@example.com\" ]."},
    {.path = "notify.smtp", .type = CK_GROUP, .doc = "Mail through a relay."},
    {.path = "notify.smtp.url",
     .type = CK_STR,
     ROOT(notify.smtp_url),
     .doc = "\"smtp://relay.example.com:587\" or \"smtps://relay.example.com:465\"; \"\" = no "
	    "mail."},
    {.path = "notify.smtp.starttls",
     .type = CK_BOOL,
     ROOT(notify.smtp_starttls),
     .doc = "Refuse to send without STARTTLS (smtp://)."},
    {.path = "notify.smtp.user",
     .type = CK_STR,
     ROOT(notify.smtp_user),
     .doc = "The AUTH user; \"\" = no AUTH."},
    {.path = "notify.smtp.password_file",
     .type = CK_STR,
     ROOT(notify.smtp_password_file),
     .doc = "Its password, on the file's first line (keep it 0600)."},
    {.path = "notify.smtp.ca",
     .type = CK_STR,
     ROOT(notify.smtp_ca),
     .doc = "Verify the relay with this CA; \"\" = the system store."},
    {.path = "notify.webhook", .type = CK_GROUP, .doc = "A JSON POST per message."},
    {.path = "notify.webhook.url",
     .type = CK_STR,
     ROOT(notify.webhook_url),
     .doc = "https://... (plain http:// only to loopback); \"\" = none."},
    {.path = "notify.webhook.secret_file",
     .type = CK_STR,
     ROOT(notify.webhook_secret_file),
     .doc = "The HMAC-SHA256 key (required with url): header X-Easgate-Signature: "
	    "sha256=<hex>."},
    {.path = "notify.webhook.ca",
     .type = CK_STR,
     ROOT(notify.webhook_ca),
     .doc = "Verify the receiver with this CA; \"\" = the system store."},
    {.path = "notify.user", .type = CK_GROUP, .doc = "The message to a phone's user."},
    {.path = "notify.user.enabled",
     .type = CK_BOOL,
     ROOT(notify.user_enabled),
     .doc = "One message to the phone's user per quarantine."},
    {.path = "notify.user.address",
     .type = CK_STR,
     ROOT(notify.user_address),
     .doc = "\"\" = the user name when it is a UPN; or a pattern: \"%u@example.com\" (%u: the "
	    "user without DOMAIN\\), \"%l@example.com\" (%l: the part before '@')."},
    {.path = "notify.user.template",
     .type = CK_STR,
     ROOT(notify.user_template),
     .doc = "A file: a \"Subject: ...\" line, a blank line, the body; {user} {device} {model} "
	    "{os} {reason} {contact} are replaced. \"\" = the one built in."},
    {.path = "notify.user.contact",
     .type = CK_STR,
     ROOT(notify.user_contact),
     .doc = "Who the user should ask ({contact})."},
    {.path = "notify.retry",
     .type = CK_GROUP,
     .doc = "The backoff of undeliverable messages: it doubles from min to max."},
    {.path = "notify.retry.min",
     .type = CK_SECS,
     ROOT(notify.retry_min_ms),
     .doc = "The first retry."},
    {.path = "notify.retry.max",
     .type = CK_SECS,
     ROOT(notify.retry_max_ms),
     .doc = "The longest wait between retries."},
    {.path = "notify.queue",
     .type = CK_UINT,
     ROOT(notify.queue),
     .doc = "Messages waiting, at most."},
    {.path = "notify.timeout",
     .type = CK_SECS,
     ROOT(notify.timeout_ms),
     .doc = "One delivery attempt."},
};

const size_t config_keys_count = sizeof(config_keys) / sizeof(config_keys[0]);

const struct cfg_key *config_key_find(const char *path)
{
	for (size_t i = 0; i < config_keys_count; i++)
		if (!strcmp(config_keys[i].path, path))
			return &config_keys[i];
	return NULL;
}

const char *config_key_leaf(const struct cfg_key *k)
{
	const char *dot = strrchr(k->path, '.');
	return dot ? dot + 1 : k->path;
}

int config_key_is_child(const struct cfg_key *k, const char *parent)
{
	size_t n = strlen(parent);
	if (!n)
		return !strchr(k->path, '.');
	return !strncmp(k->path, parent, n) && k->path[n] == '.' && !strchr(k->path + n + 1, '.');
}

/* "%.15g": integers as integers (2592000, not 2.592e+06), 1.5 as 1.5. */
static void put_num(struct sbuf *out, double v)
{
	sbuf_printf(out, "%.15g", v);
}

int config_key_format(const struct cfg_key *k, const void *base, struct sbuf *out)
{
	const char *p = (const char *)base + k->off;
	switch (k->type) {
	case CK_STR:
		sbuf_printf(out, "\"%s\"", p);
		return 0;
	case CK_UINT:
		sbuf_printf(out, "%u", *(const unsigned *)(const void *)p);
		return 0;
	case CK_INT:
		sbuf_printf(out, "%d", *(const int *)(const void *)p);
		return 0;
	case CK_BOOL:
		sbuf_puts(out, *(const int *)(const void *)p ? "true" : "false");
		return 0;
	case CK_SECS:
		put_num(out, *(const unsigned *)(const void *)p / 1000.0);
		return 0;
	case CK_MINUTES:
		put_num(out, *(const unsigned *)(const void *)p / 60000.0);
		return 0;
	case CK_NUM:
		put_num(out, *(const double *)(const void *)p);
		return 0;
	case CK_ENUM: {
		int v = *(const int *)(const void *)p;
		const char *c = k->choices;
		for (int i = 0; i < v && c; i++) {
			c = strchr(c, '|');
			c = c ? c + 1 : NULL;
		}
		if (!c || v < 0)
			return -1;
		sbuf_printf(out, "\"%.*s\"", (int)strcspn(c, "|"), c);
		return 0;
	}
	case CK_OTHER:
		if (!k->fmt)
			return -1;
		k->fmt(base, out);
		return 0;
	case CK_GROUP:
	case CK_LIST:
		break;
	}
	return -1;
}
