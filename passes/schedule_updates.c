/*
 * schedule_updates.c: --eager-update.  One param_update node per trained
 * parameter (not frozen, with a gradient), placed right after the later of
 *   - the node that completes the parameter's gradient (its V_PGRAD's
 *     producer), and
 *   - the last node whose kernel reads the parameter: a layer's dx kernel
 *     reads the weights of the forward pass, so the update must wait for it.
 * Updates due after the same node keep the params order.  The pass runs
 * after fusion, on the kernels as they will run (kernel_reads: a fused
 * epilogue's or a recomputed prologue's operands are read by its anchor),
 * so that no read of a parameter moves past its update afterwards;
 * eliminate_dead only removes reads, which leaves an update later than it
 * needs to be, never too early.  The planner then frees each gradient after
 * its update.  A future global gradient-norm clip would need every gradient
 * before the first update, which this schedule cannot give (docs/api.md).
 */
#include <stdlib.h>

#include "nncc.h"

typedef struct Due {
  int param, after;   /* the parameter, the node its update follows */
} Due;

/* Later node first; after the same node, the later parameter first (each
 * is inserted right after that node, so the params order results). */
static int by_after_desc(const void *pa, const void *pb) {
  const Due *a = pa, *b = pb;
  return a->after != b->after ? b->after - a->after : b->param - a->param;
}

void schedule_updates(Graph *g) {
  int nv = g->values.len;
  int *after = arena_alloc(g->ctx->arena, sizeof(int) * (size_t)(nv + 1));
  for (int i = 0; i < nv; i++)
    after[i] = -1;
  for (int i = 0; i < g->nodes.len; i++) {
    const Node *node = &g->nodes.items[i];
    if (node->dead)   /* fused nodes too: their anchor's kernel reads for them */
      continue;
    int reads[MAX_READS];
    int nreads = kernel_reads(g, node, reads);
    for (int j = 0; j < nreads; j++)
      if (val(g, reads[j])->kind == V_PARAM)
        after[reads[j]] = i;
    for (int k = 0; k < node->nout; k++)
      if (val(g, node->out[k])->kind == V_PGRAD)
        after[val(g, node->out[k])->param] = i;   /* in node order: the later of the two stays */
  }
  Due *due = arena_alloc(g->ctx->arena, sizeof(Due) * (size_t)(nv + 1));
  int count = 0;
  for (int i = 0; i < nv; i++) {
    const Value *v = val(g, i);
    if (v->kind == V_PARAM && !v->frozen && v->grad >= 0) {
      if (after[i] < 0 || val(g, v->grad)->producer < 0)
        internal_error(__FILE__, __LINE__, "no node computes the gradient of %s", v->name);
      due[count++] = (Due){i, after[i]};
    }
  }
  qsort(due, (size_t)count, sizeof *due, by_after_desc);
  for (int k = 0; k < count; k++) {
    const Value *p = val(g, due[k].param);
    int grad = p->grad;
    Node *u = insert_node(g, due[k].after + 1, OP_PARAM_UPDATE, p->name,
                          node_at(g, val(g, grad)->producer)->loc);
    u->backward = true;
    node_input(g, u, due[k].param);
    node_input(g, u, grad);
  }
}
