/*
 * flatten.c: (N, d0, d1, ...) -> (N, d0*d1*...).  A view: the planner gives
 * the output the input's storage, so no kernel runs; the copy kernel below
 * is used only where a view is impossible (the output is a model output).
 * Its gradient is the same reshape in the other direction.  The copy kernel
 * and the gradient serve reshape (reshape.c) too.
 */
#include "emit.h"

static const char *const x_names[] = {"x", NULL};
static const char *const y_names[] = {"y", NULL};

static bool flatten_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  node_output(g, node, shape_of(1, (int)shape_numel(&x->shape)), x->batched, x->dtype);
  return true;
}

void emit_view_copy(Emit *e, const Graph *g, const Node *node) {
  long numel = shape_numel(&val(g, node->out[0])->shape);
  emitln(e, "memcpy(y, x, sizeof(real) * (size_t)n * %ld);", numel);
}

/* The derived node gets its output shape here: its attributes (reshape's
 * target) are not read again. */
void view_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  (void)need;
  const Value *x = val(g, node->in[0]);
  din[0] = derived_node(g, node->op, node->id, dout, 1, x->shape, x->batched);
}

const OpDef op_flatten = {
    .name = "flatten", .prefix = "flatten", .min_in = 1, .max_in = 1,
    .in_names = x_names, .out_names = y_names, .roles = ROLE_VIEW,
    .build = flatten_build, .emit = emit_view_copy, .backward = view_backward,
};
