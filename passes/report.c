/*
 * report.c: --report, what fusion and memory planning bought.
 */
#include "nncc.h"

static void graph_report(Buf *b, const Graph *g) {
  size_t real = g->dtype == DT_F64 ? 8 : 4;
  int nodes = 0, fused = 0;
  double flops = 0;
  for (int i = 0; i < g->nodes.len; i++) {
    const Node *node = &g->nodes.items[i];
    fused += node->fused_into >= 0;
    if (node->dead)
      continue;
    nodes++;
    const OpDef *def = op_def(node->op);
    if (def->flops)
      flops += def->flops(g, node);
  }
  buf_printf(b, "%s graph: %d kernels (%d nodes fused away), %.3g MFLOP per sample\n",
             g->mode == MODE_TRAIN ? "training" : "inference", nodes, fused, flops / 1e6);
  buf_printf(b, "  params       %12ld bytes\n", g->params_size * (long)real);
  buf_printf(b, "  buffers      %12ld bytes\n", g->buffers_size * (long)real);
  buf_printf(b, "  naive        %12ld bytes (one buffer per tensor, batch %d)\n",
             g->naive_size * (long)real, g->max_batch);
  buf_printf(b, "  arena        %12ld bytes (planned)\n", g->arena_size * (long)real);
  buf_printf(b, "  lower bound  %12ld bytes (most bytes live at one step)\n",
             g->lower_bound * (long)real);
  if (g->lower_bound > 0)
    buf_printf(b, "  arena / lower bound = %.3f, naive / arena = %.2f\n",
               (double)g->arena_size / (double)g->lower_bound,
               g->arena_size ? (double)g->naive_size / (double)g->arena_size : 0.0);
}

void report(Buf *b, const Graph *infer, const Graph *train) {
  graph_report(b, infer);
  if (train)
    graph_report(b, train);
}
