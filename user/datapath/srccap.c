/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * srccap.c - see srccap.h. Linear probing with backward-shift deletion, so a
 * table never fills up with the tombstones of sources long gone (mobile
 * addresses churn all day).
 */
#include "srccap.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct srccap_entry {
	uint64_t tag; /* 0 = empty; written last on insert (release) */
	uint64_t n;   /* open connections from tag in this slot */
};

struct srccap {
	uint64_t *used;		     /* [nslots] entries in use per slot (shared) */
	struct srccap_entry *tables; /* [nslots][size] (shared) */
	void *map;
	size_t map_len, head_len;
	unsigned nslots;
	uint32_t size; /* entries per slot, a power of two */
};

int srccap_source(const struct sockaddr *peer, uint8_t out[16])
{
	memset(out, 0, 16);
	if (peer->sa_family == AF_INET) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &((const struct sockaddr_in *)peer)->sin_addr, 4);
		return 0;
	}
	if (peer->sa_family != AF_INET6)
		return -1;
	const struct in6_addr *a = &((const struct sockaddr_in6 *)peer)->sin6_addr;
	/* An IPv4 phone on a dual-stack socket is still one IPv4 address: its
	 * /64 would be every IPv4 phone at once. */
	memcpy(out, a, IN6_IS_ADDR_V4MAPPED(a) ? 16 : 8);
	return 0;
}

uint64_t srccap_tag(const struct siphash_key *secret, const uint8_t src[16])
{
	uint64_t t = siphash24(secret, src, 16);
	return t ? t : 1;
}

struct srccap *srccap_new(unsigned nslots, unsigned per_slot)
{
	if (!nslots) {
		errno = EINVAL;
		return NULL;
	}
	struct srccap *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	uint32_t size = 256; /* 4 KiB: slot tables start on page boundaries */
	while (size < 2ull * per_slot && size < (1u << 30))
		size <<= 1;
	long page = sysconf(_SC_PAGESIZE);
	s->nslots = nslots;
	s->size = size;
	s->head_len = ((size_t)nslots * sizeof(uint64_t) + (size_t)page - 1) & ~((size_t)page - 1);
	s->map_len = s->head_len + (size_t)nslots * size * sizeof(struct srccap_entry);
	s->map = mmap(NULL, s->map_len, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->map == MAP_FAILED) {
		free(s);
		return NULL;
	}
	/* Tags and counts, mostly untouched pages: nothing a core needs. */
	madvise(s->map, s->map_len, MADV_DONTDUMP);
	s->used = s->map;
	s->tables = (struct srccap_entry *)((char *)s->map + s->head_len);
	return s;
}

void srccap_free(struct srccap *s)
{
	if (!s)
		return;
	munmap(s->map, s->map_len);
	free(s);
}

static struct srccap_entry *slot_table(const struct srccap *s, unsigned slot)
{
	return s->tables + (size_t)slot * s->size;
}

void srccap_slot_reset(struct srccap *s, unsigned slot)
{
	if (!s || slot >= s->nslots)
		return;
	struct srccap_entry *t = slot_table(s, slot);
	size_t len = (size_t)s->size * sizeof(*t);
	/* Give the pages back; where the kernel cannot, zero them. */
	if (madvise(t, len, MADV_REMOVE) != 0)
		memset(t, 0, len);
	__atomic_store_n(&s->used[slot], 0, __ATOMIC_RELEASE);
}

/* Index of tag in t, or of the empty entry where it would go. */
static uint32_t probe(const struct srccap_entry *t, uint32_t mask, uint64_t tag)
{
	uint32_t i = (uint32_t)tag & mask;
	for (;;) {
		uint64_t e = __atomic_load_n(&t[i].tag, __ATOMIC_ACQUIRE);
		if (e == tag || e == 0)
			return i;
		i = (i + 1) & mask;
	}
}

int srccap_add(struct srccap *s, unsigned slot, uint64_t tag)
{
	if (!s || slot >= s->nslots)
		return -1;
	struct srccap_entry *t = slot_table(s, slot);
	uint32_t mask = s->size - 1;
	/* At most three quarters full, so probe() always meets an empty entry. */
	uint32_t i = probe(t, mask, tag);
	if (t[i].tag == tag) {
		__atomic_store_n(&t[i].n, t[i].n + 1, __ATOMIC_RELAXED);
		return 0;
	}
	if (s->used[slot] >= (uint64_t)s->size / 4 * 3)
		return -1;
	__atomic_store_n(&t[i].n, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&t[i].tag, tag, __ATOMIC_RELEASE);
	__atomic_store_n(&s->used[slot], s->used[slot] + 1, __ATOMIC_RELEASE);
	return 0;
}

void srccap_del(struct srccap *s, unsigned slot, uint64_t tag)
{
	if (!s || slot >= s->nslots)
		return;
	struct srccap_entry *t = slot_table(s, slot);
	uint32_t mask = s->size - 1;
	uint32_t i = probe(t, mask, tag);
	if (t[i].tag != tag)
		return;
	if (t[i].n > 1) {
		__atomic_store_n(&t[i].n, t[i].n - 1, __ATOMIC_RELAXED);
		return;
	}
	/* Backward shift: pull later entries of the run into the hole when the
	 * hole lies between their home and where they sit. */
	uint32_t j = i;
	for (;;) {
		j = (j + 1) & mask;
		uint64_t e = t[j].tag;
		if (!e)
			break;
		uint32_t home = (uint32_t)e & mask;
		/* Stay if home is cyclically in (i, j]. */
		if (i <= j ? (home > i && home <= j) : (home > i || home <= j))
			continue;
		__atomic_store_n(&t[i].n, t[j].n, __ATOMIC_RELAXED);
		__atomic_store_n(&t[i].tag, e, __ATOMIC_RELEASE);
		i = j;
	}
	__atomic_store_n(&t[i].tag, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&t[i].n, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->used[slot], s->used[slot] - 1, __ATOMIC_RELEASE);
}

unsigned srccap_count(const struct srccap *s, uint64_t tag)
{
	if (!s)
		return 0;
	uint64_t sum = 0;
	uint32_t mask = s->size - 1;
	for (unsigned slot = 0; slot < s->nslots; slot++) {
		if (!__atomic_load_n(&s->used[slot], __ATOMIC_ACQUIRE))
			continue;
		const struct srccap_entry *t = slot_table(s, slot);
		uint32_t i = (uint32_t)tag & mask;
		/* Bounded: another writer may be shifting entries under us. */
		for (uint32_t k = 0; k < s->size; k++, i = (i + 1) & mask) {
			uint64_t e = __atomic_load_n(&t[i].tag, __ATOMIC_ACQUIRE);
			if (e == tag) {
				sum += __atomic_load_n(&t[i].n, __ATOMIC_RELAXED);
				break;
			}
			if (!e)
				break;
		}
	}
	return sum > UINT32_MAX ? UINT32_MAX : (unsigned)sum;
}
