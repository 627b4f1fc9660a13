/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* accounts.c - see accounts.h. */
#include "accounts.h"
#include "command.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int accounts_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (!n || n > ACCOUNT_NAME_MAX)
		return 0;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '@' || *p == '-'))
			return 0;
	return 1;
}

static int mode_ok(const struct stat *st, const char *path, char *err, size_t errsz)
{
	if (!S_ISREG(st->st_mode)) {
		snprintf(err, errsz, "%s is not a regular file", path);
		return 0;
	}
	if (st->st_mode & 077) {
		snprintf(err, errsz,
			 "%s is readable or writable by group or others (mode %04o): refused; "
			 "chmod 600 it",
			 path, (unsigned)(st->st_mode & 07777));
		return 0;
	}
	return 1;
}

void accounts_free(struct accounts *a)
{
	if (!a)
		return;
	if (a->a)
		OPENSSL_cleanse(a->a, sizeof(*a->a) * ACCOUNTS_MAX);
	free(a->a);
	memset(a, 0, sizeof(*a));
}

/* "name:role:hash" -> acc. 0 or -1 (why). */
static int parse_line(char *line, struct account *acc, const char **why)
{
	char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!c2) {
		*why = "want name:role:hash";
		return -1;
	}
	*c1 = *c2 = 0;
	int role = command_role_parse(c1 + 1);
	const char *hash = c2 + 1;
	if (!accounts_name_ok(line)) {
		*why = "bad account name";
		return -1;
	}
	if (role < 0) {
		*why = "role must be viewer, helpdesk or admin";
		return -1;
	}
	if (hash[0] != '$' || strlen(hash) >= ACCOUNT_HASH_MAX || strchr(hash, ':')) {
		*why = "the hash is not a crypt(3) hash";
		return -1;
	}
	snprintf(acc->name, sizeof(acc->name), "%s", line);
	acc->role = role;
	snprintf(acc->hash, sizeof(acc->hash), "%s", hash);
	return 0;
}

int accounts_load(const char *path, struct accounts *out, char *err, size_t errsz)
{
	struct accounts a = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(err, errsz, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !mode_ok(&st, path, err, errsz)) {
		close(fd);
		return -1;
	}
	FILE *f = fdopen(fd, "r");
	a.a = calloc(ACCOUNTS_MAX, sizeof(*a.a));
	if (!f || !a.a) {
		snprintf(err, errsz, "out of memory");
		if (f)
			fclose(f);
		else
			close(fd);
		free(a.a);
		return -1;
	}
	char line[512];
	int ln = 0, rc = 0;
	while (fgets(line, sizeof(line), f)) {
		ln++;
		line[strcspn(line, "\r\n")] = 0;
		if (!line[0] || line[0] == '#')
			continue;
		const char *why = NULL;
		if (a.n >= ACCOUNTS_MAX) {
			snprintf(err, errsz, "%s:%d: more than %d accounts", path, ln,
				 ACCOUNTS_MAX);
			rc = -1;
			break;
		}
		if (parse_line(line, &a.a[a.n], &why) < 0) {
			snprintf(err, errsz, "%s:%d: %s", path, ln, why);
			rc = -1;
			break;
		}
		a.n++;
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(f);
	if (rc < 0) {
		accounts_free(&a);
		return -1;
	}
	a.mtime = st.st_mtim;
	a.ino = st.st_ino;
	accounts_free(out);
	*out = a;
	return 0;
}

int accounts_changed(const char *path, const struct accounts *a)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return a->n > 0;
	return st.st_ino != a->ino || st.st_mtim.tv_sec != a->mtime.tv_sec ||
	       st.st_mtim.tv_nsec != a->mtime.tv_nsec;
}

const struct account *accounts_find(const struct accounts *a, const char *name)
{
	for (int i = 0; i < a->n; i++)
		if (!strcmp(a->a[i].name, name))
			return &a->a[i];
	return NULL;
}

/* A real yescrypt hash of nothing anyone knows: unknown accounts cost the same time. */
#define DUMMY_HASH "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$/XxPP4h23H.UG75ihURDQ8NapPXmQ.kAKELhxF0Oqa/"

int accounts_verify(const char *hash, const char *password)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	if (!cd)
		return 0;
	const char *h = hash ? hash : DUMMY_HASH;
	char *out = crypt_rn(password, h, cd, sizeof(*cd));
	int ok = out && out[0] != '*' && strlen(out) == strlen(h) &&
		 CRYPTO_memcmp(out, h, strlen(h)) == 0 && hash != NULL;
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	return ok;
}

int accounts_set(const char *path, const char *name, int role, const char *password, char *err,
		 size_t errsz)
{
	if (!accounts_name_ok(name)) {
		snprintf(err, errsz, "account names are 1-%d of A-Z a-z 0-9 . _ @ -",
			 ACCOUNT_NAME_MAX);
		return -1;
	}
	if (role < 0 || role > ROLE_ADMIN) {
		snprintf(err, errsz, "role must be viewer, helpdesk or admin");
		return -1;
	}
	if (strlen(password) < 8) {
		snprintf(err, errsz, "the password is shorter than 8 characters");
		return -1;
	}
	struct accounts cur = {0};
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!mode_ok(&st, path, err, errsz))
			return -1;
		if (accounts_load(path, &cur, err, errsz) < 0)
			return -1;
	} else if (errno != ENOENT) {
		snprintf(err, errsz, "%s: %s", path, strerror(errno));
		return -1;
	}
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	char *hash = NULL;
	if (cd && crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)))
		hash = crypt_rn(password, salt, cd, sizeof(*cd));
	if (!hash || hash[0] != '$') {
		snprintf(err, errsz, "crypt(3) cannot make a yescrypt hash here");
		free(cd);
		accounts_free(&cur);
		return -1;
	}
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		snprintf(err, errsz, "cannot create %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		OPENSSL_cleanse(cd, sizeof(*cd));
		free(cd);
		accounts_free(&cur);
		return -1;
	}
	/* same owner as the file it replaces (root runs easctl; the daemon
	 * reads it with CAP_DAC_READ_SEARCH or as its owner) */
	if (cur.a && geteuid() == 0 && fchown(fd, st.st_uid, st.st_gid) < 0) {
		/* keep root's ownership: still 0600 */
	}
	fprintf(f, "# easgate console accounts: name:role:yescrypt-hash (easctl admin passwd)\n");
	int replaced = 0;
	for (int i = 0; i < cur.n; i++) {
		if (!strcmp(cur.a[i].name, name)) {
			fprintf(f, "%s:%s:%s\n", name, command_role_name(role), hash);
			replaced = 1;
		} else {
			fprintf(f, "%s:%s:%s\n", cur.a[i].name, command_role_name(cur.a[i].role),
				cur.a[i].hash);
		}
	}
	if (!replaced)
		fprintf(f, "%s:%s:%s\n", name, command_role_name(role), hash);
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	accounts_free(&cur);
	int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
	bad |= fclose(f) != 0;
	if (bad || rename(tmp, path) < 0) {
		snprintf(err, errsz, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}
