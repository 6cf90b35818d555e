/*
 * softmax.c: softmax over the first per-sample axis, and its backward kernel.
 *
 *   x (N, K): y[b, k] = exp(x[b, k] - max_k x[b, :]) / sum_k exp(...)
 *   x (N, K, d1, ...): the same over K for every position (d1, ...), like
 *   PyTorch's softmax(dim=1) on (N, C, H, W).
 *
 * Subtracting the row maximum keeps every exp() in (0, 1], so logits of any
 * size neither overflow nor lose the row.  Backward reads the output:
 *   dx = y * (dy - sum_k dy * y).
 * Each (sample, position) row belongs to one thread in both kernels.
 */
#include "emit.h"

static const char *const x_names[] = {"x", NULL}, *const y_names[] = {"y", NULL};
static const char *const dx_in[] = {"dy", "y", NULL}, *const dx_out[] = {"dx", NULL};

/* K: the softmax axis; s: positions per sample (stride between k and k+1). */
typedef struct Rows {
  int k;
  long s;
} Rows;

static Rows rows_of(const Value *x) {
  Rows r = {x->shape.dim[0], shape_numel(&x->shape) / x->shape.dim[0]};
  return r;
}

static bool softmax_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  if (!x->batched || x->shape.rank < 1 || x->dtype == DT_I32) {
    error_at(g->ctx, node->loc, "softmax: input must be a batched real tensor, got %s%s",
             shape_str(g->ctx->arena, &x->shape), x->dtype == DT_I32 ? " (class labels)" : "");
    return false;
  }
  node_output(g, node, x->shape, true, x->dtype);
  return true;
}

/* Opens the loop over the rows p of (n, positions) and points <name>r at
 * the row's first element in each named tensor (the first one is written);
 * element k of a row is at [k * s]. */
static void open_rows(Emit *e, Rows r, const char *const *names, int nnames) {
  long ks = (long)r.k * r.s;
  emit_omp_for(e, "");
  emitln(e, "for (long p = 0; p < (long)n * %ld; p++) {", r.s);
  if (r.s == 1)
    emitln(e, "const long base = p * %d;", r.k);
  else
    emitln(e, "const long base = p / %ld * %ld + p %% %ld;", r.s, ks, r.s);
  for (int i = 0; i < nnames; i++)
    emitln(e, "%sreal *%sr = %s + base;", i == 0 ? "" : "const ", names[i], names[i]);
}

/* The index of element k of a row. */
static const char *at_k(Emit *e, Rows r) {
  return r.s == 1 ? "k" : arena_printf(e->ctx->arena, "k * %ld", r.s);
}

static void softmax_emit(Emit *e, const Graph *g, const Node *node) {
  Rows r = rows_of(val(g, node->in[0]));
  const char *k = at_k(e, r);
  static const char *const names[] = {"y", "x"};
  open_rows(e, r, names, 2);
  emitln(e, "real mx = xr[0];");
  emitln(e, "for (int k = 1; k < %d; k++)", r.k);
  emitln(e, "    mx = rmax(mx, xr[%s]);", k);
  emitln(e, "real sum = 0;");
  emitln(e, "for (int k = 0; k < %d; k++) {", r.k);
  emitln(e, "yr[%s] = rexp(xr[%s] - mx);", k, k);
  emitln(e, "sum += yr[%s];", k);
  emitln(e, "}");
  emitln(e, "for (int k = 0; k < %d; k++)", r.k);
  emitln(e, "    yr[%s] /= sum;", k);
  emitln(e, "}");
}

static double softmax_flops(const Graph *g, const Node *node) {
  return 4.0 * (double)shape_numel(&val(g, node->in[0])->shape);
}

/* dx = y * (dy - <dy, y>) per row. */
static void softmax_dx_emit(Emit *e, const Graph *g, const Node *node) {
  Rows r = rows_of(val(g, node->out[0]));
  const char *k = at_k(e, r);
  static const char *const names[] = {"dx", "dy", "y"};
  open_rows(e, r, names, 3);
  emitln(e, "real dot = 0;");
  emitln(e, "for (int k = 0; k < %d; k++)", r.k);
  emitln(e, "    dot += dyr[%s] * yr[%s];", k, k);
  emitln(e, "for (int k = 0; k < %d; k++)", r.k);
  emitln(e, "    dxr[%s] = yr[%s] * (dyr[%s] - dot);", k, k, k);
  emitln(e, "}");
}

static void softmax_backward(Graph *g, Node *node, const int *dout, const bool *need,
                             int *din) {
  if (!need[0])
    return;
  int in[2] = {dout[0], node->out[0]};
  din[0] = derived_node(g, OP_SOFTMAX_DX, node->id, in, 2, val(g, node->in[0])->shape, true);
}

const OpDef op_softmax = {
    .name = "softmax", .prefix = "softmax", .min_in = 1, .max_in = 1,
    .in_names = x_names, .out_names = y_names,
    .build = softmax_build, .emit = softmax_emit, .backward = softmax_backward,
    .flops = softmax_flops,
};

const OpDef op_softmax_dx = {
    .name = "softmax_dx", .min_in = 2, .max_in = 2,
    .in_names = dx_in, .out_names = dx_out, .roles = ROLE_INTERNAL,
    .emit = softmax_dx_emit,
};
