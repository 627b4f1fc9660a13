/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* shm.c - see shm.h. */
#include "shm.h"
#include "log.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

struct shm *shm_create(void)
{
	void *p = mmap(NULL, sizeof(struct shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED) {
		log_err("event=shm_create error=%m");
		return NULL;
	}
	struct shm *s = p;
	/* The ticket keys live here: a core must not carry them (the rest is
	 * counters, of no use in a core either). */
	madvise(p, sizeof(struct shm), MADV_DONTDUMP);
	if (shm_tickets_rotate(s) < 0 || shm_tickets_rotate(s) < 0) {
		munmap(p, sizeof(struct shm));
		return NULL;
	}
	return s;
}

void shm_destroy(struct shm *s)
{
	OPENSSL_cleanse(s->tickets, sizeof(s->tickets));
	munmap(s, sizeof(*s));
}

void shm_tickets_read(const struct shm *s, struct shm_ticket_key out[SHM_TICKET_KEYS])
{
	uint64_t a, b;
	do {
		a = __atomic_load_n(&s->ticket_seq, __ATOMIC_ACQUIRE);
		memcpy(out, (const void *)s->tickets, sizeof(s->tickets));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		b = __atomic_load_n(&s->ticket_seq, __ATOMIC_RELAXED);
	} while ((a & 1) || a != b);
}

int shm_tickets_rotate(struct shm *s)
{
	struct shm_ticket_key k;
	if (RAND_bytes((unsigned char *)&k, sizeof(k)) != 1) {
		log_err("event=ticket_rotate error=\"RAND_bytes failed\"");
		return -1;
	}
	__atomic_add_fetch(&s->ticket_seq, 1, __ATOMIC_ACQ_REL);
	memcpy(&s->tickets[1], &s->tickets[0], sizeof(k));
	memcpy(&s->tickets[0], &k, sizeof(k));
	__atomic_add_fetch(&s->ticket_seq, 1, __ATOMIC_ACQ_REL);
	OPENSSL_cleanse(&k, sizeof(k));
	return 0;
}

int shm_backend_find(const struct shm *s, const char *name)
{
	for (int i = 0; i < EG_MAX_BACKENDS; i++)
		if (!strcmp(s->backends[i].name, name))
			return i;
	return -1;
}

int shm_backend_slot(struct shm *s, const char *name)
{
	int i = shm_backend_find(s, name);
	if (i >= 0)
		return i;
	for (i = 0; i < EG_MAX_BACKENDS; i++)
		if (!s->backends[i].name[0]) {
			snprintf(s->backends[i].name, sizeof(s->backends[i].name), "%s", name);
			s->backends[i].up = 1;
			return i;
		}
	return -1;
}
