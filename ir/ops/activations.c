/*
 * activations.c: elementwise activations.  Each is a scalar rule; the kernel,
 * epilogue fusion and elementwise-chain fusion are all derived from it.
 * Backward rules are elementwise ops too, reading the forward output y where
 * the derivative can be written in terms of y (cheaper to keep than x).
 */
#include "codegen.h"

static const char *const x_names[] = {"x", NULL};
static const char *const y_names[] = {"y", NULL};
static const char *const dy_y_names[] = {"dy", "y", NULL};
static const char *const dx_names[] = {"dx", NULL};

/* Output has the input's shape. */
static bool build_same_shape(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  node_output(g, node, x->shape, x->batched, x->dtype);
  return true;
}

/* dx = f'(.) * dy via the op's *_DX elementwise partner reading (dy, y). */
static int dx_from_y(Graph *g, Node *node, OpKind dx_op, int dy) {
  int in[2] = {dy, node->out[0]};
  const Value *x = val(g, node->in[0]);
  return derived_node(g, dx_op, node->id, in, 2, x->shape, x->batched);
}

/* ---- relu ------------------------------------------------------------------ */

static void relu_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "rmax(%s, 0)", a[0]);
}

static void relu_backward(Graph *g, Node *node, const int *dout, const bool *need,
                          int *din) {
  din[0] = dx_from_y(g, node, OP_RELU_DX, dout[0]);
}

static void relu_dx_scalar(Buf *b, const Graph *g, const Node *node,
                           const char *const *a) {
  buf_printf(b, "%s > 0 ? %s : 0", a[1], a[0]);
}

const OpDef op_relu = {
    .name = "relu", .prefix = "relu", .min_in = 1, .max_in = 1,
    .in_names = x_names, .out_names = y_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE,
    .build = build_same_shape, .emit = emit_elementwise, .scalar = relu_scalar,
    .backward = relu_backward,
};

const OpDef op_relu_dx = {
    .name = "relu_dx", .min_in = 2, .max_in = 2,
    .in_names = dy_y_names, .out_names = dx_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_INTERNAL,
    .emit = emit_elementwise, .scalar = relu_dx_scalar,
};
