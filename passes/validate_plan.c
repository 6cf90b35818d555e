/*
 * validate_plan.c: an independent check of plan_memory's result, used by
 * the tests on every example model.  It recomputes lifetimes from the
 * schedule and proves that no two arena tensors alive at the same step
 * overlap in memory, except a tensor and the one it legally reuses:
 *   - a view (flatten) shares its input's bytes: same data, both readable;
 *   - an in-place write (relu, add) reuses its first input, which must not
 *     be read by any later step.
 */
#include "nncc.h"

typedef struct Life {
  int first, last;   /* step that writes it, last step that reads it */
} Life;

static int group_root(const Graph *g, int v);

/* In the arena: not a view of a model input. */
static bool planned(const Graph *g, int v) {
  return in_arena(g, val(g, v)) && in_arena(g, val(g, group_root(g, v)));
}

static int group_root(const Graph *g, int v) {
  int hops = 0;
  while (val(g, v)->alias >= 0 && hops++ < g->values.len)
    v = val(g, v)->alias;
  return v;
}

static Life *lifetimes(const Graph *g, int *nsteps) {
  Life *life = arena_alloc(g->ctx->arena, sizeof(Life) * (size_t)(g->values.len + 1));
  for (int i = 0; i < g->values.len; i++)
    life[i] = (Life){-1, -1};
  int step = 0;
  for (int i = 0; i < g->nodes.len; i++) {
    const Node *node = &g->nodes.items[i];
    if (node->dead)
      continue;
    int reads[MAX_READS];
    int nreads = kernel_reads(g, node, reads);
    for (int j = 0; j < nreads; j++)
      life[reads[j]].last = step;
    for (int k = 0; k < node->nout; k++)
      if (life[node->out[k]].first < 0)
        life[node->out[k]] = (Life){step, step};
    step++;
  }
  for (int i = 0; i < g->values.len; i++)
    if (g->values.items[i].kind == V_LOSS && life[i].first >= 0)
      life[i].last = step;
  *nsteps = step;
  return life;
}

/* Whether u and v may share bytes although both are alive at once. */
static bool legal_reuse(const Graph *g, const Life *life, int u, int v) {
  if (group_root(g, u) != group_root(g, v))
    return false;
  const Value *a = val(g, u), *b = val(g, v);
  if (life[u].first > life[v].first) {
    const Value *t = a;
    a = b;
    b = t;
    int s = u;
    u = v;
    v = s;
  }
  /* b was written after a: a view of a, or an in-place write over a dead a. */
  const Node *writer = node_at(g, b->producer);
  if (op_def(writer->op)->roles & ROLE_VIEW)
    return true;
  return life[u].last <= life[v].first;
}

bool validate_plan(const Graph *g, Buf *why) {
  int nsteps;
  const Life *life = lifetimes(g, &nsteps);
  for (int u = 0; u < g->values.len; u++) {
    const Value *a = val(g, u);
    if (!planned(g, u) || life[u].first < 0)
      continue;
    long asize = shape_numel(&a->shape) * (a->batched ? g->max_batch : 1);
    if (a->offset < 0 || a->offset + asize > g->arena_size) {
      buf_printf(why, "%s: [%ld, %ld) outside the arena of %ld\n", a->name, a->offset,
                 a->offset + asize, g->arena_size);
      return false;
    }
    for (int v = u + 1; v < g->values.len; v++) {
      const Value *b = val(g, v);
      if (!planned(g, v) || life[v].first < 0)
        continue;
      long bsize = shape_numel(&b->shape) * (b->batched ? g->max_batch : 1);
      bool live_together = life[u].first <= life[v].last && life[v].first <= life[u].last;
      bool overlap = a->offset < b->offset + bsize && b->offset < a->offset + asize;
      if (live_together && overlap && !legal_reuse(g, life, u, v)) {
        buf_printf(why, "%s [%ld, %ld) steps %d..%d overlaps %s [%ld, %ld) steps %d..%d\n",
                   a->name, a->offset, a->offset + asize, life[u].first, life[u].last, b->name,
                   b->offset, b->offset + bsize, life[v].first, life[v].last);
        return false;
      }
    }
  }
  return true;
}
