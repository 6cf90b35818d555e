/*
 * add.c: elementwise sum of two or more tensors of one shape (residual
 * connections; also the sum autodiff uses where gradients meet).  The
 * gradient of each input is the output gradient itself.
 */
#include "emit.h"

static const char *const y_names[] = {"y", NULL};

static bool add_build(Graph *g, Node *node) {
  const Value *x0 = val(g, node->in[0]);
  for (int j = 1; j < node->nin; j++) {
    const Value *x = val(g, node->in[j]);
    bool same = x->batched == x0->batched && x->shape.rank == x0->shape.rank;
    for (int d = 0; same && d < x->shape.rank; d++)
      same = x->shape.dim[d] == x0->shape.dim[d];
    if (!same) {
      Arena *a = g->ctx->arena;
      error_at(g->ctx, node->loc, "add: operand %d has shape %s, operand 1 has %s", j + 1,
               shape_str(a, &x->shape), shape_str(a, &x0->shape));
      return false;
    }
  }
  node_output(g, node, x0->shape, x0->batched, x0->dtype);
  return true;
}

static void add_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  for (int j = 0; j < node->nin; j++)
    buf_printf(b, j ? " + %s" : "%s", a[j]);
}

static void add_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  for (int j = 0; j < node->nin; j++)
    if (need[j])
      din[j] = dout[0];
}

const OpDef op_add = {
    .name = "add", .prefix = "add", .min_in = 2, .max_in = MAX_IN,
    .out_names = y_names, .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_COMMUTATIVE,
    .build = add_build, .emit = emit_elementwise, .scalar = add_scalar,
    .backward = add_backward,
};
