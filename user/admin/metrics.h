/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * metrics.h - Prometheus text exposition on a separate admin listener
 * (admin.metrics). A scrape sums the per-worker counters in shared memory and
 * reads the kernel's per-CPU counters: it never talks to a worker and never
 * blocks the data path.
 */
#ifndef EG_METRICS_H
#define EG_METRICS_H

#include "config.h"
#include "control.h"
#include "loop.h"
#include "shm.h"

struct metrics;
struct admin;
struct bpfmaps;

/* bpf is read through a pointer: it may change on reload. */
struct metrics *metrics_new(struct loop *l, const struct cfg_addr *addr, struct shm *s,
			    struct admin *a, struct bpfmaps **bpf);
void metrics_free(struct metrics *m);
/* In a forked child: close the listening socket. */
void metrics_close_fd(struct metrics *m);

/*
 * Append v as a label value, escaped as the text exposition format wants
 * (backslash, double quote, newline): label values carry what phones and
 * the config wrote (a DeviceOS family, backend names, file paths), and one
 * unescaped quote would make every later scrape unparsable.
 */
void metrics_label(struct sbuf *o, const char *v);

/* Render the whole exposition into out (also used by `easctl metrics`). */
void metrics_render(struct sbuf *out, struct shm *s, struct admin *a, struct bpfmaps *bpf);

#endif
