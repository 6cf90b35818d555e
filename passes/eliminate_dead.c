/*
 * eliminate_dead.c: removes nodes whose outputs reach nothing the caller
 * sees.  Roots are model outputs (V_OUTPUT), the loss, parameter gradients,
 * writes to buffers (batchnorm running statistics, marked by ops as
 * outputs of kind V_BUFFER) and the nodes that update parameters in place
 * (ROLE_UPDATE: --eager-update's param_update, which has no outputs).  Walks the node array backwards, so one sweep
 * suffices in topological order.
 */
#include <string.h>

#include "nncc.h"

static bool is_root(const Value *v) {
  return v->kind == V_OUTPUT || v->kind == V_LOSS || v->kind == V_PGRAD ||
         v->kind == V_INGRAD || v->kind == V_BUFFER;
}

void eliminate_dead(Graph *g) {
  bool *live = arena_alloc(g->ctx->arena, (size_t)g->values.len + 1);
  for (int i = 0; i < g->values.len; i++)
    live[i] = is_root(&g->values.items[i]);
  for (int i = g->nodes.len - 1; i >= 0; i--) {
    Node *node = &g->nodes.items[i];
    if (node->dead)
      continue;
    bool needed = op_def(node->op)->roles & ROLE_UPDATE;
    for (int k = 0; k < node->nout; k++)
      needed |= live[node->out[k]];
    if (!needed) {
      node->dead = true;
      continue;
    }
    int reads[MAX_READS];
    int nreads = kernel_reads(g, node, reads);
    for (int j = 0; j < nreads; j++)
      live[reads[j]] = true;
  }
}
