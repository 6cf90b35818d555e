/*
 * dense.c: fully connected layer y = x W^T + b, and its backward kernels.
 *
 *   x (N, K) flattened from any per-sample shape, w (U, K) as PyTorch's
 *   Linear.weight, bias (U), y (N, U).
 *
 * dense is an epilogue anchor: a fused activation (or folded batchnorm) is
 * applied to the accumulator before the single store of y.
 *
 * The three products (y, dx, dw) run on the register tiles of
 * runtime/nn_gemm.c, which gcc and clang vectorize; each kernel splits its
 * output into tiles, one thread per tile, and the tile code alone fixes the
 * order of every sum, so results are bit-identical for any thread count.
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

/* Forward tiles are nn_tile_nt tiles of NN_TM units x NN_TN samples: A = w
 * rows, B = x rows, both contiguous along k.  Units go in the tile's rows
 * because they outnumber the samples of small batches: a batch-1 call (GEMV)
 * computes one of NN_TN = 2 columns for nothing, where samples in the rows
 * would waste 3 of NN_TM = 4.  A thread owns each tile and the tile fixes
 * the summation order, so y does not depend on the thread count (or on the
 * batch size). */
static void dense_emit(Emit *e, const Graph *g, const Node *node) {
  const Value *y = val(g, node->out[0]);
  int units = y->shape.dim[0];
  long k = shape_numel(&val(g, node->in[0])->shape);
  bool bias = node->nin > 2;
  emit_omp_for(e, "collapse(2)");
  emitln(e, "for (int o0 = 0; o0 < %d; o0 += NN_TM) {", units);
  emitln(e, "for (int b0 = 0; b0 < n; b0 += NN_TN) {");
  emitln(e, "const int mr = %d - o0 < NN_TM ? %d - o0 : NN_TM;", units, units);
  emitln(e, "const int nr = n - b0 < NN_TN ? n - b0 : NN_TN;");
  emitln(e, "real t[NN_TM][NN_TN];");
  emitln(e, "nn_tile_nt(t, mr, nr, %ld, w + (long)o0 * %ld, %ld, x + (long)b0 * %ld, %ld);", k,
         k, k, k, k);
  emitln(e, "for (int j = 0; j < nr; j++) {");
  emitln(e, "for (int i = 0; i < mr; i++) {");
  emitln(e, "const int o = o0 + i;");
  emitln(e, "const long at = (long)(b0 + j) * %d + o;", units);
  emitln(e, "const real acc = t[i][j]%s;", bias ? " + bias[o]" : "");
  emitln(e, "y[at] = %s;", epilogue_expr(e, node, "acc", "o", "at"));
  emitln(e, "}");
  emitln(e, "}");
  emitln(e, "}");
  emitln(e, "}");
}

/* 2 U K FLOPs per sample: forward and dx read w as input 1; dw writes it. */
static double dense_flops(const Graph *g, const Node *node) {
  return 2.0 * (double)shape_numel(&val(g, node->in[1])->shape);
}

static double dense_dw_flops(const Graph *g, const Node *node) {
  return 2.0 * (double)shape_numel(&val(g, node->out[0])->shape);
}

/* The body of one nn tile of the (rows x cols) product c = A . B at rows
 * [r0, r0 + mr), columns [c0, c0 + nr): the full kernel when nr == NN_NR
 * (the common case, whose store loop has a constant trip count), the edge
 * kernel for the last columns.  a, ars, acs, b, ldb, depth: C expressions
 * of the nn_tile_nn arguments. */
static void emit_nn_tile(Emit *e, const char *c, long cols, const char *depth, const char *a,
                         const char *ars, const char *acs, const char *b, long ldb) {
  emitln(e, "real t[NN_MR][NN_NR];");
  emitln(e, "const int nr = %ld - c0 < NN_NR ? (int)(%ld - c0) : NN_NR;", cols, cols);
  emitln(e, "if (nr == NN_NR) {");
  emitln(e, "nn_tile_nn(t, mr, %s, %s, %s, %s, %s, %ld);", depth, a, ars, acs, b, ldb);
  emitln(e, "for (int i = 0; i < mr; i++)");
  emitln(e, "    for (int j = 0; j < NN_NR; j++)");
  emitln(e, "        %s[(long)(r0 + i) * %ld + c0 + j] = t[i][j];", c, cols);
  emitln(e, "} else {");
  emitln(e, "nn_tile_nn_edge(t, mr, nr, %s, %s, %s, %s, %s, %ld);", depth, a, ars, acs, b, ldb);
  emitln(e, "for (int i = 0; i < mr; i++)");
  emitln(e, "    for (int j = 0; j < nr; j++)");
  emitln(e, "        %s[(long)(r0 + i) * %ld + c0 + j] = t[i][j];", c, cols);
  emitln(e, "}");
}

/* dx (N, K) = dy (N, U) . w (U, K): nn tiles of NN_MR samples x NN_NR
 * inputs, A(b, o) = dy[b * U + o], B = w.  Column tiles outermost, so the
 * U x NN_NR strip of w a thread works on stays in L1 across the batch. */
static void dense_dx_emit(Emit *e, const Graph *g, const Node *node) {
  int units = val(g, node->in[0])->shape.dim[0];
  long k = shape_numel(&val(g, node->out[0])->shape);
  emit_omp_for(e, "collapse(2)");
  emitln(e, "for (long c0 = 0; c0 < %ld; c0 += NN_NR) {", k);
  emitln(e, "for (int r0 = 0; r0 < n; r0 += NN_MR) {");
  emitln(e, "const int mr = n - r0 < NN_MR ? n - r0 : NN_MR;");
  const char *a = arena_printf(e->ctx->arena, "dy + (long)r0 * %d", units);
  const char *depth = arena_printf(e->ctx->arena, "%d", units);
  const char *ars = arena_printf(e->ctx->arena, "%d", units);
  emit_nn_tile(e, "dx", k, depth, a, ars, "1", "w + c0", k);
  emitln(e, "}");
  emitln(e, "}");
}

/* dw (U, K) = dy^T (U, N) . x (N, K): nn tiles of NN_MR units x NN_NR
 * inputs, A(o, b) = dy[b * U + o] (a transpose: row step 1, column step U),
 * B = x.  A thread owns each tile and sums over the batch in order, so dw
 * does not depend on the thread count. */
static void dense_dw_emit(Emit *e, const Graph *g, const Node *node) {
  int units = val(g, node->in[0])->shape.dim[0];
  long k = shape_numel(&val(g, node->in[1])->shape);
  emit_omp_for(e, "collapse(2)");
  emitln(e, "for (long c0 = 0; c0 < %ld; c0 += NN_NR) {", k);
  emitln(e, "for (int r0 = 0; r0 < %d; r0 += NN_MR) {", units);
  emitln(e, "const int mr = %d - r0 < NN_MR ? %d - r0 : NN_MR;", units, units);
  const char *acs = arena_printf(e->ctx->arena, "%d", units);
  emit_nn_tile(e, "dw", k, "n", "dy + r0", "1", acs, "x + c0", k);
  emitln(e, "}");
  emitln(e, "}");
}

/* db (U) = sum over the batch of dy (N, U), a row of dy at a time: the
 * sums run along b in order and vectorize along o. */
static void dense_db_emit(Emit *e, const Graph *g, const Node *node) {
  int units = val(g, node->in[0])->shape.dim[0];
  emitln(e, "for (int o = 0; o < %d; o++)", units);
  emitln(e, "    db[o] = 0;");
  emitln(e, "for (int b = 0; b < n; b++)");
  emitln(e, "    for (int o = 0; o < %d; o++)", units);
  emitln(e, "        db[o] += dy[(long)b * %d + o];", units);
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
    .flops = dense_flops,
};
const OpDef op_dense_dw = {
    .name = "dense_dw", .attrs = dense_attrs, .nattr = 2, .in_names = dw_in,
    .out_names = dw_out, .roles = ROLE_INTERNAL, .emit = dense_dw_emit,
    .flops = dense_dw_flops,
};
const OpDef op_dense_db = {
    .name = "dense_db", .attrs = dense_attrs, .nattr = 2, .in_names = db_in,
    .out_names = db_out, .roles = ROLE_INTERNAL, .emit = dense_db_emit,
};
