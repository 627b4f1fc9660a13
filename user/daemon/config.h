/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * config.h - the one configuration model (struct gw_config) and its loader.
 *
 * The file format is libconfig's (a documented, widely packaged C library):
 * config_keys.h describes every key (easgate.conf(5) is made from it). Loading
 * collects all errors as "file:line: message" (relayd/HAProxy habit) instead
 * of stopping at the first; unknown keys are errors, so typos do not silently
 * fall back to defaults. Built-in defaults make a config file optional.
 *
 * A gw_config is immutable once loaded: a reload builds a new one and starts
 * new workers with it, and requests in flight keep the one they started
 * with (a worker runs one config until it has drained; worker.h).
 */
#ifndef EG_CONFIG_H
#define EG_CONFIG_H

#include <limits.h>
#include <net/if.h>
#include <stdint.h>
#include <sys/socket.h>

#include "easgate_limits.h"
#include "policy.h" /* enum policy_access (types only: no engine behind it here) */
#include "throttle_types.h"

#define CFG_MAX_LISTEN	  8
#define CFG_MAX_CERTS	  16
#define CFG_MAX_RULES	  4096
#define CFG_MAX_IDS	  4096
#define CFG_MAX_IFACES	  8
#define CFG_MAX_FAMILIES  8
#define CFG_MAX_ERRORS	  32
#define CFG_MAX_TCLASSES  16
#define CFG_MAX_EXEMPT	  64
#define CFG_MAX_NOTIFY_TO 8

struct cfg_addr {
	char text[128]; /* as written: "0.0.0.0:443", "[::]:443", "http://127.0.0.1:8080" */
	struct sockaddr_storage ss;
	socklen_t len;
	int plain; /* "http://": plain HTTP, TLS already ended by a load balancer in front */
};

struct cfg_cert {
	char cert[PATH_MAX]; /* PEM: leaf then intermediates */
	char key[PATH_MAX];
	char ocsp_response[PATH_MAX]; /* DER OCSP response to staple ("" = fetch it) */
};

enum cfg_reuse {
	CFG_REUSE_SAFE = 0, /* reuse a backend connection if it is still open (peeked) */
	CFG_REUSE_NEVER = 1 /* one backend connection per request (SOGo-like servers) */
};

struct cfg_backend {
	char name[EG_BACKEND_NAME_LEN];
	struct cfg_addr addr;
	char prefix[128];  /* prepended to the path, e.g. "/SOGo" */
	int tls;	   /* 1 = HTTPS to the backend */
	char ca[PATH_MAX]; /* CA file to verify the backend with ("" = system store) */
	char sni[256];	   /* server name to send and verify ("" = none / address) */
	int verify;	   /* verify the backend's certificate (default 1 when tls) */
	unsigned weight;   /* Maglev weight >= 1 */
	enum cfg_reuse reuse;
	int health_enabled;
	char health_path[256];
	unsigned health_interval_ms, health_timeout_ms, rise, fall;
};

/* Where policy state and the inventory live (store.h). */
enum cfg_store { CFG_STORE_SQLITE = 0, CFG_STORE_POSTGRESQL = 1 };

/* An address prefix; IPv4 as ::ffff:a.b.c.d with len 96 + its length. */
struct cfg_prefix {
	uint8_t addr[16]; /* network order, host bits zero */
	unsigned len;	  /* 0..128 */
};

struct cfg_text {
	char *text;
	int line;	  /* in file */
	const char *file; /* the @include'd file that holds it, named as its @include
			   * wrote it (owned by the config: gw_config.included);
			   * NULL = the config's own file (config_text_file) */
};

enum cfg_ktls { CFG_KTLS_OFF = 0, CFG_KTLS_AUTO = 1, CFG_KTLS_ON = 2 };

struct gw_config {
	char path[PATH_MAX]; /* "" = built-in defaults only */
	/* The @include'd files that cfg_text entries came from, each once
	 * (cfg_text.file points here); malloc'd, freed by config_free. */
	char **included;
	int nincluded;

	struct cfg_addr listen[CFG_MAX_LISTEN];
	int nlisten;
	int workers; /* 0 = one per online CPU */
	char user[64];
	char group[64];
	char state_dir[PATH_MAX];
	char control_socket[PATH_MAX];
	char log_level[16];
	int access_log;
	int strict_device_id; /* plain DeviceId held to Exchange's rule (letters, digits) */
	/* How bodies move between two plaintext legs: "auto" (the method measured
	 * cheapest that this kernel supports), "user" or "splice". */
	char relay_method[16];

	struct {
		struct cfg_cert certs[CFG_MAX_CERTS];
		int ncerts;
		int allow_incomplete_chain;
		char trust_file[PATH_MAX]; /* extra trust anchors for the chain check */
		unsigned ticket_rotate_s;  /* 0 = tickets off */
		int cleanse_plaintext;	   /* SSL_OP_CLEANSE_PLAINTEXT on phone connections */
		/* The phone leg's record layer in the kernel after the handshake
		 * (ktls.h): CFG_KTLS_AUTO where the start probe measured it
		 * cheaper, _ON wherever the kernel has it (refuses to start
		 * otherwise), _OFF never. */
		int ktls;
		unsigned expiry_warn_days;
		/* Phone-facing protocol knobs (tls_params.h); "" = the default list.
		 * min_version is an OpenSSL version (TLS1_2_VERSION = 0x0303). */
		int min_version;
		char ciphers[1024];	/* TLS 1.2 and older */
		char ciphersuites[256]; /* TLS 1.3 */
		char groups[256];
		/* OCSP stapling (ocsp.h) */
		int ocsp_stapling;		/* staple (from the file, else fetched) */
		unsigned ocsp_fetch_timeout_ms; /* one fetch from a responder */
		unsigned ocsp_retry_ms;		/* first retry after a failure; doubles */
	} tls;

	struct {
		unsigned handshake_ms;
		unsigned head_ms; /* first byte to end of request head */
		unsigned
		    body_ms; /* max silence while a body streams; the request-body rate window */
		unsigned idle_ms; /* keep-alive between requests */
		unsigned backend_connect_ms;
		unsigned backend_response_ms; /* ordinary requests */
		unsigned hanging_ms;	      /* Ping / long-poll Sync: up to ~59 min */
		unsigned drain_ms;	      /* graceful stop bound */
	} timeouts;

	struct {
		unsigned max_head;
		unsigned max_line;
		unsigned max_headers;
		unsigned max_conns; /* per worker */
		unsigned
		    inspect_body; /* bodies up to this size are buffered for WBXML inspection */
		/* bytes/s a request body must average over each timeouts.request_body
		 * window; 0 = only the silence timeout */
		unsigned min_body_rate;
		/* open connections per source (IPv4 address, IPv6 /64) over all
		 * workers, TLS listeners only; 0 = no cap */
		unsigned max_conns_per_source;
		struct cfg_prefix cap_exempt[CFG_MAX_EXEMPT]; /* sources never capped */
		int ncap_exempt;
	} limits;

	struct cfg_backend backends[EG_MAX_BACKENDS];
	int nbackends;

	char steering_secret_file[PATH_MAX];

	struct {
		enum policy_access default_access;
		struct cfg_text rules[CFG_MAX_RULES];
		int nrules;
		struct cfg_text blocked_ids[CFG_MAX_IDS];
		int nblocked;
		struct cfg_text allowed_ids[CFG_MAX_IDS];
		int nallowed;
		int incubation;
		unsigned incubation_days;
		char families[CFG_MAX_FAMILIES][16];
		int nfamilies;
		char ios_builds[PATH_MAX]; /* "" = the table built into the binary */
	} policy;

	struct {
		char ifaces[CFG_MAX_IFACES][IF_NAMESIZE];
		int nifaces;
		int mode;	/* 0 auto, 1 native, 2 generic */
		int action_rst; /* RST instead of silent drop */
		unsigned syn_rate, syn_burst;
		unsigned verdict_ttl_s;
		char pin_dir[PATH_MAX];
	} xdp;

	/* Budgets and loop detection (user/decide/throttle.h). Class 0 is the default;
	 * the first class whose `match` selects a device applies to it. */
	struct {
		int enabled;
		struct throttle_config tc;
		struct throttle_class classes[CFG_MAX_TCLASSES];
		int nclasses;
	} throttle;

	struct {
		char metrics[128]; /* "" = no metrics listener */
		struct cfg_addr metrics_addr;
		/* The web console (user/admin/console.h): "" = off. */
		char web[128];
		struct cfg_addr web_addr;
		char web_accounts[PATH_MAX]; /* crypt(3) hashes, 0600 (easctl admin passwd) */
		char web_assets[PATH_MAX];   /* the console's HTML/CSS/JS (web/) */
		char web_chartjs[PATH_MAX];  /* Debian's libjs-chart.js */
		unsigned web_idle_ms;	     /* a session ends after this much inactivity */
		unsigned web_lockout_ms;     /* how long 20 wrong passwords lock out */
	} admin;

	/* The farm (store.h, store_pg.c). node_name names this node in the
	 * farm and in easctl nodes (default: the host name). */
	enum cfg_store store;
	char node_name[64];
	struct {
		char conninfo[1024];	  /* libpq connection string (may name several hosts) */
		unsigned journal_max;	  /* entries of the journal of unsent changes */
		unsigned timeout_ms;	  /* connect / one query without progress */
		unsigned heartbeat_ms;	  /* node heartbeat interval (also with SQLite) */
		unsigned initial_sync_ms; /* a node with no snapshot waits this long for one */
		int auto_migrate;	  /* apply schema migrations when connecting */
	} pg;

	/* Notices (user/admin/notify.h): "" urls = none sent. */
	struct {
		unsigned batch_ms; /* admins: one message per batch window */
		char from[256];
		char admins[CFG_MAX_NOTIFY_TO][256];
		int nadmins;
		char smtp_url[256]; /* smtp://relay:587 (STARTTLS below) or smtps:// */
		int smtp_starttls;  /* refuse to send without STARTTLS */
		char smtp_user[128];
		char smtp_password_file[PATH_MAX];
		char smtp_ca[PATH_MAX]; /* verify the relay with this CA ("" = system store) */
		char webhook_url[512];
		char webhook_secret_file[PATH_MAX]; /* HMAC-SHA256 key */
		char webhook_ca[PATH_MAX];
		int user_enabled;
		char user_address[256];	      /* "%u@example.com"; "" = the UPN itself */
		char user_template[PATH_MAX]; /* "" = built in */
		char user_contact[256];
		unsigned retry_min_ms, retry_max_ms;
		unsigned queue;	     /* messages waiting at most; more are dropped (counted) */
		unsigned timeout_ms; /* one delivery attempt */
	} notify;
};

struct config_errors {
	char msg[CFG_MAX_ERRORS][320];
	int n;
	int dropped; /* errors beyond CFG_MAX_ERRORS */
};

/* Fill c with the built-in defaults (no allocation). */
void config_defaults(struct gw_config *c);

/* Command-line settings that override the file (and survive reloads). */
struct config_cmdline {
	const char *config_path; /* NULL = built-in defaults */
	const char *listen;
	const char *tls_cert, *tls_key, *trust_file;
	const char *backends[EG_MAX_BACKENDS]; /* "name=host:port[,prefix=/x][,health=0]" */
	int nbackends;
	const char *state_dir;
	const char *control_socket;
	const char *user;
	const char *log_level;
	const char *metrics;
	int workers; /* -1 = from config */
};

/*
 * The defaults, the file (if any), then the command line over them: what
 * easgated runs with, at start and at every reload. A --backend is read as
 * the file reads a backend (the same defaults: health checks included).
 * 0 or -1 (every problem in errs, c then freed as by config_load).
 */
int config_load_cmdline(const struct config_cmdline *o, struct gw_config *c,
			struct config_errors *errs);

/*
 * Load path over the defaults. Returns 0, or -1 with every problem found in
 * errs ("path:line: message"). On failure c is freed and must not be used.
 * A problem in an @include'd file names that file, as the @include wrote it:
 * libconfig opens the name as written (no include directory is set), so a
 * relative one is taken from the working directory.
 */
int config_load(struct gw_config *c, const char *path, struct config_errors *errs);

/* Flags of config_load_text. */
enum {
	/* Refuse every @include (libconfig opens the file it names): for
	 * bytes that are not an admin's file, such as the fuzzer's, so that
	 * a parse reads no file, whatever the bytes name. */
	CONFIG_TEXT_NO_INCLUDE = 1,
};

/*
 * config_load on bytes already in memory: text[0..len) (NULs and all) as
 * the file called name, which only names it in errors ("name:line: ...")
 * and in c->path. config_load reads its file and calls this: one parser.
 */
int config_load_text(struct gw_config *c, const char *name, const char *text, size_t len,
		     unsigned flags, struct config_errors *errs);

/* Release what config_load allocated (rule texts, included file names). */
void config_free(struct gw_config *c);

/* The file that holds t, for "file:line" messages about it. */
static inline const char *config_text_file(const struct gw_config *c, const struct cfg_text *t)
{
	return t->file ? t->file : c->path[0] ? c->path : "(config)";
}

/* Parse "1.2.3.4:443" / "[::1]:443" / ":443". 0 or -1. */
int config_parse_addr(const char *s, struct cfg_addr *a);

/* Parse "198.18.0.0/15", "2001:db8::/32" or a bare address (a host). 0 or -1. */
int config_parse_prefix(const char *s, struct cfg_prefix *p);
/* Does prefix p contain the 16-byte address a (IPv4-mapped for IPv4)? */
int config_prefix_match(const struct cfg_prefix *p, const uint8_t a[16]);

/* Number of workers to run: workers, or the online CPU count. */
int config_worker_count(const struct gw_config *c);

/* Append "path:line: msg" to errs (printf-style). */
void config_error(struct config_errors *errs, const char *path, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Print all errors to the log at error level. */
void config_log_errors(const struct config_errors *errs);

#endif
