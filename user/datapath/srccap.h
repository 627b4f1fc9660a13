/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * srccap.h - open connections per source address, counted across the worker
 * processes (limits.max_connections_per_source).
 *
 * A source is an IPv4 address or an IPv6 /64 (a phone gets a /64 of its own;
 * a host can pick any address inside it), the same unit the XDP SYN bucket
 * uses. Sources are kept as 64-bit SipHash tags (installation secret), so
 * the table names no address.
 *
 * Storage: one shared anonymous mapping the master makes before forking, with
 * one open-addressing table per process slot (the worker's stats slot, which
 * no two live processes share). Each table has exactly one writer, the
 * process owning the slot: no locks. A reader sums a source's count over the
 * slots in use; reads race with the other writers, so a count can be off by
 * the connections other workers open or close at that instant (the cap holds
 * to within the workers accepting at once). When a process exits, the master
 * zeroes its slot: a crashed worker's connections died with it and stop
 * counting at once. Pages are touched only where entries are written
 * (MAP_NORESERVE), so an idle slot costs no memory.
 */
#ifndef EG_SRCCAP_H
#define EG_SRCCAP_H

#include <stdint.h>
#include <sys/socket.h>

#include "siphash.h"

struct srccap;

/* The 16-byte source of a peer: IPv4 (also IPv4-mapped IPv6) as
 * ::ffff:a.b.c.d, IPv6 with its low 64 bits cleared. 0, or -1 for another
 * family. The layout of struct eg_rate_key (include/easgate_abi.h). */
int srccap_source(const struct sockaddr *peer, uint8_t out[16]);

/* The tag of a source (never 0). */
uint64_t srccap_tag(const struct siphash_key *secret, const uint8_t src[16]);

/*
 * Master, before the first fork: room for per_slot sources in each of
 * nslots slots (rounded up to a power of two, twice that many entries so
 * probes stay short). NULL on failure (errno set).
 */
struct srccap *srccap_new(unsigned nslots, unsigned per_slot);
void srccap_free(struct srccap *s);

/* Master: the process owning slot is gone; forget its connections. */
void srccap_slot_reset(struct srccap *s, unsigned slot);

/* Owner of slot: one more connection from tag. 0, or -1 when the slot's table
 * is full (the connection is then not counted). */
int srccap_add(struct srccap *s, unsigned slot, uint64_t tag);
/* Owner of slot: one connection from tag closed (one srccap_add earlier). */
void srccap_del(struct srccap *s, unsigned slot, uint64_t tag);

/* Anyone: open connections from tag, summed over every slot. */
unsigned srccap_count(const struct srccap *s, uint64_t tag);

#endif
