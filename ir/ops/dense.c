/*
 * dense.c: fully connected layer y = x W^T + b, and its backward kernels.
 *
 *   x (N, K) flattened from any per-sample shape, w (U, K) as PyTorch's
 *   Linear.weight, bias (U), y (N, U).
 *
 * dense is an epilogue anchor: a fused activation (or folded batchnorm) is
 * applied to the accumulator before the single store of y.
 *
 * The three products (y, dx, dw) run on the micro-kernel of
 * runtime/nn_gemm.c; each kernel splits its output into tiles, one thread
 * per tile, and the micro-kernel alone fixes the order of every sum, so
 * results are bit-identical for any thread count.
 */
#include "emit.h"

enum { A_UNITS, A_BIAS };

/* Bytes of packed x^T that the forward keeps in L2 beside a block of w
 * (half of a 512 KB L2, the smallest of the x86-64 cores of this decade). */
enum { DENSE_L2_PANELS = 256 * 1024 };

static const AttrSpec dense_attrs[] = {
    {"units", ATTR_INT, NULL},
    {"bias", ATTR_BOOL, "true"},
};

static const char *const fwd_in[] = {"x", "w", "bias", NULL};
static const char *const fwd_out[] = {"y", "ws", NULL};

/* The three products on the packed engine (codegen/product.c), U units, K
 * inputs, batch n:
 *
 *   forward  y (n, U)  = x (n, K) . w^T (K, U)
 *   dx       dx (n, K) = dy (n, U) . w (U, K)
 *   dw       dw (U, K) = dy^T (U, n) . x (n, K)
 *
 * Each is C = A . B with A(i, k) = a[i * ars + k * acs], B(k, j) = b[k * brs
 * + j * bcs]; the workspace holds both packed operands for the largest
 * batch. */
typedef enum { FWD, DX, DW } Which;

static Product dense_product(Ctx *ctx, Which which, int units, long k, int max_batch) {
  Arena *a = ctx->arena;
  const char *K = arena_printf(a, "%ld", k), *U = arena_printf(a, "%d", units);
  switch (which) {
  case FWD:   /* not a Product: see dense_emit */
    break;
  case DX:
    return (Product){.m = "n", .k = U, .max_m = max_batch, .max_k = units, .n = k,
                     .a = "dy", .ars = U, .acs = "1", .b = "w", .brs = K, .bcs = "1"};
  case DW:
    return (Product){.m = U, .k = "n", .max_m = units, .max_k = max_batch, .n = k,
                     .a = "dy", .ars = "1", .acs = U, .b = "x", .brs = K, .bcs = "1"};
  }
  return (Product){0};
}

static long fwd_reals(const Graph *g, int units, long k);


static void dense_workspace(Graph *g, Node *node, Which which, int units, long k) {
  Product p = dense_product(g->ctx, which, units, k, g->max_batch);
  node_workspace(g, node, which == FWD        ? fwd_reals(g, units, k)
                          : workspace_free(g) ? 0
                                              : product_reals(&p));
}

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
  dense_workspace(g, node, FWD, units, k);
  return true;
}

/* The forward product y^T (U, n) = w (U, K) . x^T (K, n): the filter rows
 * are the micro-kernel's A, read in place (packing w would cost as much as
 * a batch-64 product), but for the last NN_MR rows when U is not a
 * multiple (packed, so that no row past w is read); x^T is packed in
 * panels of NN_NR samples.  Each tile is stored through the epilogue, so
 * a sample's output does not depend on the batch it comes in. */
static long fwd_reals(const Graph *g, int units, long k) {
  int max_batch = g->max_batch;
  if (workspace_free(g))
    return 0;
  return ((long)(max_batch + NN_NR - 1) / NN_NR * NN_NR + (units % NN_MR ? NN_MR : 0)) * k;
}

/* At --batch 1 the product is a matrix-vector one: a tile of NN_NR samples
 * would pack 32 copies of x for one (and under --memory-budget too).  Each output is a dot product of its
 * row of w and x in NN_VL partial sums (a vector of them), added in order:
 * no workspace, w and x read once. */
static void emit_gemv(Emit *e, const Node *node, int units, long k) {
  bool bias = node->nin > 2;
  emitln(e, "(void)ws;");
  emit_omp_for(e, "schedule(static)");
  emitln(e, "for (int o = 0; o < %d; o++) {", units);
  emitln(e, "const real *const wo = w + (long)o * %ld;", k);
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "const real *const xb = x + (long)b * %ld;", k);
  emitln(e, "real s[NN_VL] = {0};");
  emitln(e, "long i = 0;");
  emitln(e, "for (; i + NN_VL <= %ld; i += NN_VL)", k);
  emitln(e, "    for (int l = 0; l < NN_VL; l++)");
  emitln(e, "        s[l] += wo[i + l] * xb[i + l];");
  emitln(e, "for (int l = 0; i < %ld; i++, l++)", k);
  emitln(e, "    s[l] += wo[i] * xb[i];");
  emitln(e, "real acc = %s;", bias ? "bias[o]" : "0");
  emitln(e, "for (int l = 0; l < NN_VL; l++)");
  emitln(e, "    acc += s[l];");
  emitln(e, "const long at = (long)b * %d + o;", units);
  emitln(e, "y[at] = %s;", epilogue_expr(e, node, "acc", "o", "at"));
  emitln(e, "}");
  emitln(e, "}");
}

static void dense_emit(Emit *e, const Graph *g, const Node *node) {
  const Value *y = val(g, node->out[0]);
  int units = y->shape.dim[0], mt = (units + NN_MR - 1) / NN_MR, full = units / NN_MR;
  long k = shape_numel(&val(g, node->in[0])->shape);
  long xt = (long)(g->max_batch + NN_NR - 1) / NN_NR * NN_NR * k;
  bool bias = node->nin > 2;
  if (workspace_free(g)) {
    emit_gemv(e, node, units, k);
    return;
  }
  emit_engine(e, false);
  emitln(e, "const int nt = (n + NN_NR - 1) / NN_NR;");
  emitln(e, "{");
  emit_omp(e, "for");
  emitln(e, "for (int jt = 0; jt <= nt; jt++) {");
  emitln(e, "if (jt < nt) {");
  emitln(e, "const int nr = n - jt * NN_NR < NN_NR ? n - jt * NN_NR : NN_NR;");
  emitln(e, "nn_pack_b(ws + (long)jt * NN_NR * %ld, x + (long)jt * NN_NR * %ld, 1, %ld, nr, %ld);",
         k, k, k, k);
  if (full < mt) {
    emitln(e, "} else {");
    emitln(e, "nn_pack_a(ws + %ldL, w + %ldL, %ld, 1, %d, %ld);", xt, (long)full * NN_MR * k, k,
           units - full * NN_MR, k);
  }
  emitln(e, "}");
  emitln(e, "}");
  /* Rows of w outer when every packed column panel stays in L2 beside
   * them: then w, the larger operand, comes from memory once, not once per
   * panel of 32 samples (mlp512's fc1 at batch 64: 1.6 MB once, not twice). */
  emit_omp(e, "for collapse(2) schedule(static)");
  if (xt * real_size(g->dtype) <= DENSE_L2_PANELS) {
    emitln(e, "for (int mt = 0; mt < %d; mt++) {", mt);
    emitln(e, "for (int jt = 0; jt < nt; jt++) {");
  } else {
    emitln(e, "for (int jt = 0; jt < nt; jt++) {");
    emitln(e, "for (int mt = 0; mt < %d; mt++) {", mt);
  }
  emitln(e, "const int o0 = mt * NN_MR, b0 = jt * NN_NR;");
  emitln(e, "const int mr = %d - o0 < NN_MR ? %d - o0 : NN_MR;", units, units);
  emitln(e, "const int nr = n - b0 < NN_NR ? n - b0 : NN_NR;");
  emitln(e, "real t[NN_MR * NN_NR];");
  emitln(e, "if (mr == NN_MR)");
  emitln(e, "    ukr(t, w + (long)o0 * %ld, %ld, 1, ws + (long)jt * NN_NR * %ld, %ld, 1, NN_NR, 0, 0);",
         k, k, k, k);
  emitln(e, "else");
  emitln(e, "    ukr(t, ws + %ldL, 1, NN_MR, ws + (long)jt * NN_NR * %ld, %ld, 1, NN_NR, 0, 0);", xt,
         k, k);
  emitln(e, "for (int i = 0; i < mr; i++) {");
  emitln(e, "const int o = o0 + i;");
  emitln(e, "for (int j = 0; j < nr; j++) {");
  emitln(e, "const long at = (long)(b0 + j) * %d + o;", units);
  emitln(e, "const real acc = t[i * NN_NR + j]%s;", bias ? " + bias[o]" : "");
  emitln(e, "y[at] = %s;", epilogue_expr(e, node, "acc", "o", "at"));
  for (int i = 0; i < 5; i++)
    emitln(e, "}");
}

/* 2 U K FLOPs per sample: forward and dx read w as input 1; dw writes it. */
static double dense_flops(const Graph *g, const Node *node) {
  return 2.0 * (double)shape_numel(&val(g, node->in[1])->shape);
}

static double dense_dw_flops(const Graph *g, const Node *node) {
  return 2.0 * (double)shape_numel(&val(g, node->out[0])->shape);
}

/* --report: the product's shape, rows x columns x depth. */
static const char *product_text(const Graph *g, const Node *node, Which which) {
  int units = val(g, node->in[0])->shape.dim[0];
  long k = shape_numel(&val(g, node->in[1])->shape);
  if (which == DX)
    k = shape_numel(&val(g, node->out[0])->shape);
  Product p = dense_product(g->ctx, which, units, k, g->max_batch);
  if (workspace_free(g))
    return arena_printf(g->ctx->arena, "rows of %s scaled and added, no workspace (%d x %ld)",
                        which == DX ? "w" : "x", units, p.n);
  return arena_printf(g->ctx->arena, "packed product (%s x %ld x %s), both operands packed",
                      which == DW ? arena_printf(g->ctx->arena, "%d", units) : "n", p.n, p.k);
}

static const char *dense_kernel(const Graph *g, const Node *node) {
  if (workspace_free(g))
    return arena_printf(g->ctx->arena, "matrix-vector product (%d x %ld): w and x "
                        "read in place, no workspace", val(g, node->out[0])->shape.dim[0],
                        shape_numel(&val(g, node->in[0])->shape));
  return arena_printf(g->ctx->arena, "product (%d x n x %ld): w read in place, x^T packed",
                      val(g, node->out[0])->shape.dim[0],
                      shape_numel(&val(g, node->in[0])->shape));
}
static const char *dense_dx_kernel(const Graph *g, const Node *node) { return product_text(g, node, DX); }
static const char *dense_dw_kernel(const Graph *g, const Node *node) { return product_text(g, node, DW); }

/* dx and dw: plain stores of each tile into a (rows x cols) output c. */
static void emit_plain_product(Emit *e, const Graph *g, Which which, int units, long k,
                               const char *c, long cols) {
  Product p = dense_product(e->ctx, which, units, k, g->max_batch);
  emit_product(e, &p);
  emitln(e, "nn_store_tile(%s + (long)r0 * %ld + c0, %ld, t, mr, nr);", c, cols, cols);
  emit_product_end(e);
}

/* Without workspace (as the forward's matrix-vector kernel): dx (n, K) =
 * dy (n, U) . w (U, K) as rows of w scaled and added in unit order, dw (U,
 * K) = dy^T . x as one row per unit summed over the samples in order;
 * both loops run along K, contiguous. */
/* dx and dw without workspace (workspace_free): rows of w (dx) or of x (dw)
 * scaled by dy and added in order, one output row per iteration:
 * d(outer) = sum over inner of dy(b, o) * src(inner) with (b, o) = (outer,
 * inner) for dx and (inner, outer) for dw. */
static void emit_scaled_rows(Emit *e, const char *d, int units, long k, bool dx) {
  const char *outer = dx ? "b" : "o", *inner = dx ? "o" : "b";
  emitln(e, "(void)ws;");
  emit_omp_for(e, "schedule(static)");
  if (dx)
    emitln(e, "for (int b = 0; b < n; b++) {");
  else
    emitln(e, "for (int o = 0; o < %d; o++) {", units);
  emitln(e, "real *const d = %s + (long)%s * %ld;", d, outer, k);
  emitln(e, "for (long i = 0; i < %ld; i++)", k);
  emitln(e, "    d[i] = 0;");
  if (dx)
    emitln(e, "for (int o = 0; o < %d; o++) {", units);
  else
    emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "const real g = dy[(long)b * %d + o];", units);
  emitln(e, "const real *const s = %s + (long)%s * %ld;", dx ? "w" : "x", inner, k);
  emitln(e, "for (long i = 0; i < %ld; i++)", k);
  emitln(e, "    d[i] += g * s[i];");
  emitln(e, "}");
  emitln(e, "}");
}

static void dense_dx_emit(Emit *e, const Graph *g, const Node *node) {
  int units = val(g, node->in[0])->shape.dim[0];
  long k = shape_numel(&val(g, node->out[0])->shape);
  if (workspace_free(g))
    emit_scaled_rows(e, "dx", units, k, true);
  else
    emit_plain_product(e, g, DX, units, k, "dx", k);
}

/* A thread owns each tile (row) of dw and sums over the batch in order, so
 * dw does not depend on the thread count. */
static void dense_dw_emit(Emit *e, const Graph *g, const Node *node) {
  int units = val(g, node->in[0])->shape.dim[0];
  long k = shape_numel(&val(g, node->in[1])->shape);
  if (workspace_free(g))
    emit_scaled_rows(e, "dw", units, k, false);
  else
    emit_plain_product(e, g, DW, units, k, "dw", k);
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
  int units = val(g, w)->shape.dim[0];
  long k = shape_numel(&val(g, x)->shape);
  if (need[0]) {
    int in[2] = {dy, w};
    din[0] = derived_node(g, OP_DENSE_DX, node->id, in, 2, val(g, x)->shape, true);
    dense_workspace(g, node_at(g, val(g, din[0])->producer), DX, units, k);
  }
  if (need[1]) {
    int in[2] = {dy, x};
    din[1] = derived_node(g, OP_DENSE_DW, node->id, in, 2, val(g, w)->shape, false);
    dense_workspace(g, node_at(g, val(g, din[1])->producer), DW, units, k);
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
    .roles = ROLE_ANCHOR | ROLE_PRODUCT, .fold_weight_in = 1, .fold_bias_in = 2,
    .build = dense_build, .emit = dense_emit, .backward = dense_backward,
    .flops = dense_flops, .kernel = dense_kernel,
};

static const char *const dx_in[] = {"dy", "w", NULL}, *const dx_out[] = {"dx", "ws", NULL};
static const char *const dw_in[] = {"dy", "x", NULL}, *const dw_out[] = {"dw", "ws", NULL};
static const char *const db_in[] = {"dy", NULL}, *const db_out[] = {"db", NULL};

const OpDef op_dense_dx = {
    .name = "dense_dx", .attrs = dense_attrs, .nattr = 2, .in_names = dx_in,
    .out_names = dx_out, .roles = ROLE_INTERNAL | ROLE_PRODUCT, .emit = dense_dx_emit,
    .flops = dense_flops, .kernel = dense_dx_kernel,
};
const OpDef op_dense_dw = {
    .name = "dense_dw", .attrs = dense_attrs, .nattr = 2, .in_names = dw_in,
    .out_names = dw_out, .roles = ROLE_INTERNAL | ROLE_PRODUCT, .emit = dense_dw_emit,
    .flops = dense_dw_flops, .kernel = dense_dw_kernel,
};
const OpDef op_dense_db = {
    .name = "dense_db", .attrs = dense_attrs, .nattr = 2, .in_names = db_in,
    .out_names = db_out, .roles = ROLE_INTERNAL, .emit = dense_db_emit,
};
