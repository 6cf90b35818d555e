/*
 * report.c: --report, what fusion and memory planning bought.  Byte counts
 * are checked products: plan_memory bounds every block, and naive_size,
 * which it saturates, is printed as "over" when it does not fit.
 */
#include "nncc.h"

/* "  <label> <bytes> bytes<tail>" for reals elements of esize bytes. */
static void put_bytes(Buf *b, const char *label, long reals, long esize, const char *tail) {
  long bytes;
  if (reals < 0 || __builtin_mul_overflow(reals, esize, &bytes))
    buf_printf(b, "  %-12s over 9223372036854775807 bytes%s\n", label, tail);
  else
    buf_printf(b, "  %-12s %12ld bytes%s\n", label, bytes, tail);
}

static void graph_report(Buf *b, const Graph *g) {
  size_t real = real_size(g->dtype);
  int nodes = 0, fused = 0;
  double flops = 0;
  for (int i = 0; i < g->nodes.len; i++) {
    const Node *node = &g->nodes.items[i];
    fused += node->fused_into >= 0;
    if (node->dead || (op_def(node->op)->roles & ROLE_UPDATE))   /* not a kernel */
      continue;
    nodes++;
    const OpDef *def = op_def(node->op);
    if (def->flops)
      flops += def->flops(g, node);
  }
  buf_printf(b, "%s graph: %d kernels (%d nodes fused away), %.3g MFLOP per sample\n",
             g->mode == MODE_TRAIN ? "training" : "inference", nodes, fused, flops / 1e6);
  long esize = (long)real;
  put_bytes(b, "params", g->params_size, esize, "");
  put_bytes(b, "buffers", g->buffers_size, esize, "");
  if (g->mode == MODE_TRAIN) {
    /* the trained params come first: grads and optimizer state cover them only */
    int slots = optimizer_def(g->train_config.optimizer)->slots;
    if (g->eager_update)
      put_bytes(b, "grads", 0, esize,
                arena_printf(g->ctx->arena,
                             " (--eager-update: no grads block; each gradient is in the arena until "
                             "its tensor's update, %ld bytes of them at its lower bound, of %ld "
                             "bytes for all trained params)",
                             g->grads_at_peak * esize, g->trained_size * esize));
    else
      put_bytes(b, "grads", g->trained_size, esize,
                arena_printf(g->ctx->arena,
                             " (the trained params; %ld bytes of params frozen; --eager-update: "
                             "none, each gradient in the arena until its tensor's update)",
                             (g->params_size - g->trained_size) * esize));
    put_bytes(b, "state", slots * g->trained_size, esize,
              arena_printf(g->ctx->arena, " (optimizer %s: %d slot%s of the trained params)",
                           g->train_config.optimizer, slots, slots == 1 ? "" : "s"));
  }
  if (g->consts_size)
    put_bytes(b, "consts", g->consts_size, esize, " (computed by nncc from the weights, baked read-only: folded batchnorm, prepared filters)");
  put_bytes(b, "naive", g->naive_size, esize,
            arena_printf(g->ctx->arena, " (one buffer per tensor, batch %d)", g->max_batch));
  put_bytes(b, "arena", g->arena_size, esize, " (planned)");
  put_bytes(b, "lower bound", g->lower_bound, esize, " (most bytes live at one step)");
  put_bytes(b, "tensors", g->tensors_bound, esize,
            " (of them the graph's own tensors, without kernel workspaces)");
  put_bytes(b, "scratch", g->scratch_size, esize, " (the largest kernel workspace)");
  if (g->lower_bound > 0)
    buf_printf(b, "  arena / lower bound = %.3f, naive / arena = %.2f\n",
               (double)g->arena_size / (double)g->lower_bound,
               g->arena_size ? (double)g->naive_size / (double)g->arena_size : 0.0);
}

/* One line per node whose op chooses among kernels: name, op, choice. */
static void kernel_report(Buf *b, const Graph *g) {
  bool any = false;
  for (int i = 0; i < g->nodes.len; i++) {
    const Node *node = &g->nodes.items[i];
    const OpDef *def = op_def(node->op);
    if (node->dead || !def->kernel)
      continue;
    if (!any)
      buf_printf(b, "kernels (%s graph):\n", g->mode == MODE_TRAIN ? "training" : "inference");
    any = true;
    buf_printf(b, "  %-16s %-10s %s\n", node->name, def->name, def->kernel(g, node));
  }
}

void report(Buf *b, const Graph *infer, const Graph *train) {
  kernel_report(b, infer);
  if (train)
    kernel_report(b, train);
  graph_report(b, infer);
  if (train)
    graph_report(b, train);
}
