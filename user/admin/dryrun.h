/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * dryrun.h - `easctl rules dryrun 'RULE'` (and the console's rules page):
 * which devices of the inventory a rule would change, and how, before it is
 * saved. The current policy and the policy with the rule added where
 * `rules add` would put it are both compiled with the gateway's own compiler
 * (gate_build_policy_with) and every inventory row is decided by the gateway's
 * own evaluator (policy_decide), as a Sync from that device would be (or the
 * rule's first command, when it is scoped to commands). The scan is stepped
 * (command_defer), a page of the inventory per loop pass.
 */
#ifndef EG_DRYRUN_H
#define EG_DRYRUN_H

#include "control.h"

struct admin;

enum ctl_code dryrun_command(struct admin *a, int argc, char **argv, struct sbuf *out);

#endif
