/*
 * param_update.c: --eager-update's optimizer step of one trained parameter,
 * param_update(p, dp).  It has no outputs and no kernel of its own: it
 * writes p and its optimizer state in place, so eliminate_dead keeps it
 * (ROLE_UPDATE), and codegen/train.c, which owns the optimizer's emission,
 * calls the same chunk arithmetic as update() on dp where the node stands.
 * passes/schedule_updates.c creates and places the nodes; the planner then
 * frees dp after it, so that the gradients of different tensors share
 * arena memory.
 */
#include "emit.h"

static const char *const in_names[] = {"p", "dp", NULL};
static const char *const out_names[] = {NULL};

const OpDef op_param_update = {
    .name = "param_update", .min_in = 2, .max_in = 2, .in_names = in_names,
    .out_names = out_names, .roles = ROLE_INTERNAL | ROLE_UPDATE,
};
