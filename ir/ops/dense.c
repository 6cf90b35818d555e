/*
 * dense.c: fully connected layer y = x W^T + b, and its backward kernels.
 *
 *   x (N, K) flattened from any per-sample shape, w (U, K) as PyTorch's
 *   Linear.weight, bias (U), y (N, U).
 *
 * dense is an epilogue anchor: a fused activation (or folded batchnorm) is
 * applied to the accumulator before the single store of y.
 */
#include "codegen.h"

enum { A_UNITS, A_BIAS };

static const AttrSpec dense_attrs[] = {
    {"units", ATTR_INT, NULL},
    {"bias", ATTR_BOOL, "true"},
};

static const char *const fwd_in[] = {"x", "w", "bias", NULL};
static const char *const fwd_out[] = {"y", NULL};

static bool dense_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  int units = attr_int(node, A_UNITS);
  long k = shape_numel(&x->shape);
  if (units <= 0) {
    error_at(g->ctx, node->attr[A_UNITS].loc, "dense: units must be positive, got %d", units);
    return false;
  }
  Shape w = shape_of(2, units, (int)k);
  if (!check_shape(g, node, w))
    return false;
  Init xavier = {.kind = INIT_XAVIER_NORMAL, .fan_in = (int)k, .fan_out = units};
  int wid = node_param(g, node, "weight", w, xavier, true);
  val(g, wid)->unit_size = (int)k;
  if (attr_bool(node, A_BIAS))
    node_param(g, node, "bias", shape_of(1, units), (Init){.kind = INIT_ZEROS}, false);
  node_output(g, node, shape_of(1, units), true, g->dtype);
  return true;
}

static void dense_emit(Emit *e, const Graph *g, const Node *node) {
  const Value *y = val(g, node->out[0]);
  int units = y->shape.dim[0];
  long k = shape_numel(&val(g, node->in[0])->shape);
  bool bias = node->nin > 2;
  emit_omp_for(e, "collapse(2)");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "for (int o = 0; o < %d; o++) {", units);
  emitln(e, "const real *xr = x + (long)b * %ld;", k);
  emitln(e, "const real *wr = w + (long)o * %ld;", k);
  emitln(e, "real acc = %s;", bias ? "bias[o]" : "0");
  emitln(e, "for (long k = 0; k < %ld; k++)", k);
  emitln(e, "    acc += wr[k] * xr[k];");
  const char *i = arena_printf(e->ctx->arena, "(long)b * %d + o", units);
  emitln(e, "y[%s] = %s;", i, epilogue_expr(e, node, "acc", "o", i));
  emitln(e, "}");
  emitln(e, "}");
}

static double dense_flops(const Graph *g, const Node *node) {
  return 2.0 * (double)shape_numel(&val(g, node->in[1])->shape);
}

/* dx (N, K) = dy (N, U) . w (U, K) */
static void dense_dx_emit(Emit *e, const Graph *g, const Node *node) {
  int units = val(g, node->in[0])->shape.dim[0];
  long k = shape_numel(&val(g, node->out[0])->shape);
  emit_omp_for(e, "");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "real *dxr = dx + (long)b * %ld;", k);
  emitln(e, "for (long k = 0; k < %ld; k++)", k);
  emitln(e, "    dxr[k] = 0;");
  emitln(e, "for (int o = 0; o < %d; o++) {", units);
  emitln(e, "const real g = dy[(long)b * %d + o];", units);
  emitln(e, "const real *wr = w + (long)o * %ld;", k);
  emitln(e, "for (long k = 0; k < %ld; k++)", k);
  emitln(e, "    dxr[k] += g * wr[k];");
  emitln(e, "}");
  emitln(e, "}");
}

/* dw (U, K) = dy^T (U, N) . x (N, K); one thread owns each row o, so the sum
 * over the batch runs in the same order for any thread count. */
static void dense_dw_emit(Emit *e, const Graph *g, const Node *node) {
  int units = val(g, node->in[0])->shape.dim[0];
  long k = shape_numel(&val(g, node->in[1])->shape);
  emit_omp_for(e, "");
  emitln(e, "for (int o = 0; o < %d; o++) {", units);
  emitln(e, "real *dwr = dw + (long)o * %ld;", k);
  emitln(e, "for (long k = 0; k < %ld; k++)", k);
  emitln(e, "    dwr[k] = 0;");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "const real g = dy[(long)b * %d + o];", units);
  emitln(e, "const real *xr = x + (long)b * %ld;", k);
  emitln(e, "for (long k = 0; k < %ld; k++)", k);
  emitln(e, "    dwr[k] += g * xr[k];");
  emitln(e, "}");
  emitln(e, "}");
}

/* db (U) = sum over the batch of dy (N, U) */
static void dense_db_emit(Emit *e, const Graph *g, const Node *node) {
  int units = val(g, node->in[0])->shape.dim[0];
  emitln(e, "for (int o = 0; o < %d; o++) {", units);
  emitln(e, "real acc = 0;");
  emitln(e, "for (int b = 0; b < n; b++)");
  emitln(e, "    acc += dy[(long)b * %d + o];", units);
  emitln(e, "db[o] = acc;");
  emitln(e, "}");
}

static void dense_backward(Graph *g, Node *node, const int *dout, const bool *need,
                           int *din) {
  int dy = dout[0], x = node->in[0], w = node->in[1];
  if (need[0]) {
    int in[2] = {dy, w};
    din[0] = derived_node(g, OP_DENSE_DX, node->id, in, 2, val(g, x)->shape, true);
  }
  if (need[1]) {
    int in[2] = {dy, x};
    din[1] = derived_node(g, OP_DENSE_DW, node->id, in, 2, val(g, w)->shape, false);
  }
  if (node->nin > 2 && need[2]) {
    int in[1] = {dy};
    din[2] = derived_node(g, OP_DENSE_DB, node->id, in, 1, val(g, node->in[2])->shape,
                          false);
  }
}

const OpDef op_dense = {
    .name = "dense", .prefix = "fc", .min_in = 1, .max_in = 1,
    .attrs = dense_attrs, .nattr = 2, .in_names = fwd_in, .out_names = fwd_out,
    .roles = ROLE_ANCHOR,
    .build = dense_build, .emit = dense_emit, .backward = dense_backward,
    .flops = dense_flops,
};

static const char *const dx_in[] = {"dy", "w", NULL}, *const dx_out[] = {"dx", NULL};
static const char *const dw_in[] = {"dy", "x", NULL}, *const dw_out[] = {"dw", NULL};
static const char *const db_in[] = {"dy", NULL}, *const db_out[] = {"db", NULL};

const OpDef op_dense_dx = {
    .name = "dense_dx", .attrs = dense_attrs, .nattr = 2, .in_names = dx_in,
    .out_names = dx_out, .roles = ROLE_INTERNAL, .emit = dense_dx_emit,
};
const OpDef op_dense_dw = {
    .name = "dense_dw", .attrs = dense_attrs, .nattr = 2, .in_names = dw_in,
    .out_names = dw_out, .roles = ROLE_INTERNAL, .emit = dense_dw_emit,
};
const OpDef op_dense_db = {
    .name = "dense_db", .attrs = dense_attrs, .nattr = 2, .in_names = db_in,
    .out_names = db_out, .roles = ROLE_INTERNAL, .emit = dense_db_emit,
};
