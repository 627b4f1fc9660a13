/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * bodysplice.h - how a body moves when both legs are plaintext (a plain
 * listener and a plain backend): with splice, socket -> pipe -> socket in
 * the kernel, for Content-Length bodies of at least min_body bytes, through
 * a pipe of pipe_size bytes; otherwise, and always with a TLS leg, through
 * user space. The master sets it before it forks workers
 * (choose_relay_path); default: user space. The relay's side is in conn.h.
 */
#ifndef EG_BODYSPLICE_H
#define EG_BODYSPLICE_H

#include <stddef.h>
#include <stdint.h>

struct bodysplice_path {
	int splice;
	uint64_t min_body;
	size_t pipe_size;
};
void bodysplice_set_path(const struct bodysplice_path *p);

#endif
