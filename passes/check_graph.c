/*
 * check_graph.c: structural invariants, checked between passes in debug
 * builds.  A failure is an nncc bug, never a user error.
 */
#include "nncc.h"

static bool fail(const Graph *g, const Node *node, const char *what) {
  fprintf(stderr, "nncc: graph check: node %d (%s %s): %s\n", node->id,
          op_def(node->op)->name, node->name, what);
  return false;
}

bool check_graph(const Graph *g) {
  for (int i = 0; i < g->nodes.len; i++) {
    const Node *node = &g->nodes.items[i];
    if (node->dead)
      continue;
    bool update = op_def(node->op)->roles & ROLE_UPDATE;   /* writes its input in place */
    if (node->nin > MAX_IN || node->nout > MAX_OUT || node->nout < (update ? 0 : 1))
      return fail(g, node, "bad input or output count");
    for (int j = 0; j < node->nin; j++) {
      int v = node->in[j];
      if (v < 0 || v >= g->values.len)
        return fail(g, node, "input out of range");
      int p = g->values.items[v].producer;
      if (p >= i)
        return fail(g, node, "input produced later: not topological");
      bool recomputed = j == 0 && node->prologue == p;
      bool hoisted = g->values.items[v].kind == V_CONST;
      if (p >= 0 && g->nodes.items[p].dead && !recomputed && !hoisted)
        return fail(g, node, "input produced by a dead node");
    }
    for (int k = 0; k < node->nout; k++) {
      int v = node->out[k];
      if (v < 0 || v >= g->values.len || g->values.items[v].producer != i)
        return fail(g, node, "output not owned by the node");
      if (g->values.items[v].shape.rank > MAX_RANK)
        return fail(g, node, "rank too large");
    }
  }
  return true;
}
