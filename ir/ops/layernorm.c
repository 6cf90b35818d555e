/*
 * layernorm.c: layer normalization over the whole per-sample shape, as
 * PyTorch's LayerNorm(normalized_shape = per-sample shape):
 *
 *   x (N, S...) -> y (N, S...),  y = (x - mean) * invstd * weight + bias
 *
 * with mean and the biased variance over the M elements of each sample,
 * invstd = 1 / sqrt(var + eps).  Parameters weight (S...) = 1 and bias
 * (S...) = 0, not decayed.  The forward kernel also writes mean and invstd
 * (N, 1) for the backward kernels; it is the same kernel in training and
 * inference, since the statistics are the sample's own (no running state).
 *
 * Backward, with xhat = (x - mean) * invstd and g = dy * weight:
 *   dx = invstd * (g - mean(g) - xhat * mean(g * xhat))   per sample;
 *   dweight = sum over the batch of dy * xhat, dbias = sum of dy.
 * Every reduction runs in double in a fixed order inside one thread (a
 * thread owns a sample for y and dx, an element for dweight and dbias), so
 * results are bit-identical for any thread count.
 */
#include <math.h>

#include "emit.h"

enum { A_EPS };

static const AttrSpec ln_attrs[] = {
    {"eps", ATTR_FLOAT, "1e-5"},
};

static const char *const fwd_in[] = {"x", "weight", "bias", NULL};
static const char *const fwd_out[] = {"y", "mean", "invstd", NULL};

static bool ln_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  if (x->dtype == DT_I32 || !x->batched) {
    error_at(g->ctx, node->loc, "layernorm: the input must be real numbers per sample");
    return false;
  }
  double eps = attr_num(node, A_EPS);
  if (!(eps > 0) || !isfinite(eps)) {
    error_at(g->ctx, node->attr[A_EPS].loc, "layernorm: eps must be positive, got %g", eps);
    return false;
  }
  Shape s = x->shape;
  node_param(g, node, "weight", s, (Init){.kind = INIT_ONES}, false);
  node_param(g, node, "bias", s, (Init){.kind = INIT_ZEROS}, false);
  node = node_at(g, node->id);
  node_output(g, node, s, true, g->dtype);
  node_output(g, node, shape_of(1, 1), true, g->dtype);
  node_output(g, node, shape_of(1, 1), true, g->dtype);
  return true;
}

/* One thread per sample: mean, variance, then y. */
static void ln_emit(Emit *e, const Graph *g, const Node *node) {
  long m = shape_numel(&val(g, node->in[0])->shape);
  emit_omp_for(e, "");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "const real *xr = x + (long)b * %ld;", m);
  emitln(e, "real *yr = y + (long)b * %ld;", m);
  emitln(e, "double sum = 0, sq = 0;");
  emitln(e, "for (long i = 0; i < %ld; i++)", m);
  emitln(e, "    sum += xr[i];");
  emitln(e, "const double mu = sum / %ld;", m);
  emitln(e, "for (long i = 0; i < %ld; i++)", m);
  emitln(e, "    sq += (xr[i] - mu) * (xr[i] - mu);");
  emitln(e, "const double is = 1.0 / sqrt(sq / %ld + %.17g);", m, attr_num(node, A_EPS));
  emitln(e, "mean[b] = (real)mu;");
  emitln(e, "invstd[b] = (real)is;");
  emitln(e, "for (long i = 0; i < %ld; i++)", m);
  emitln(e, "    yr[i] = (real)((xr[i] - mu) * is) * weight[i] + bias[i];");
  emitln(e, "}");
}

/* dx per sample (one thread each): two sums, then the elements. */
static void ln_dx_emit(Emit *e, const Graph *g, const Node *node) {
  long m = shape_numel(&val(g, node->out[0])->shape);
  emit_omp_for(e, "");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "const real *dyr = dy + (long)b * %ld, *xr = x + (long)b * %ld;", m, m);
  emitln(e, "real *dxr = dx + (long)b * %ld;", m);
  emitln(e, "const double mu = mean[b], is = invstd[b];");
  emitln(e, "double sum_g = 0, sum_gx = 0;");
  emitln(e, "for (long i = 0; i < %ld; i++) {", m);
  emitln(e, "const double gi = (double)dyr[i] * weight[i];");
  emitln(e, "sum_g += gi;");
  emitln(e, "sum_gx += gi * ((double)xr[i] - mu) * is;");
  emitln(e, "}");
  emitln(e, "const double mg = sum_g / %ld, mgx = sum_gx / %ld;", m, m);
  emitln(e, "for (long i = 0; i < %ld; i++) {", m);
  emitln(e, "const double xhat = ((double)xr[i] - mu) * is;");
  emitln(e, "dxr[i] = (real)(is * ((double)dyr[i] * weight[i] - mg - xhat * mgx));");
  emitln(e, "}");
  emitln(e, "}");
}

/* dweight, dbias: a thread owns element i and sums over the batch in order. */
static void ln_dparams_emit(Emit *e, const Graph *g, const Node *node) {
  long m = shape_numel(&val(g, node->out[0])->shape);
  emit_omp_for(e, "");
  emitln(e, "for (long i = 0; i < %ld; i++) {", m);
  emitln(e, "double sw = 0, sb = 0;");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "const long k = (long)b * %ld + i;", m);
  emitln(e, "sw += (double)dy[k] * ((double)x[k] - mean[b]) * invstd[b];");
  emitln(e, "sb += dy[k];");
  emitln(e, "}");
  emitln(e, "dweight[i] = (real)sw;");
  emitln(e, "dbias[i] = (real)sb;");
  emitln(e, "}");
}

static void ln_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  int id = node->id;
  int x = node->in[0], weight = node->in[1], mean = node->out[1], invstd = node->out[2];
  Shape s = val(g, x)->shape;
  if (need[0]) {
    int in[5] = {dout[0], x, weight, mean, invstd};
    din[0] = derived_node(g, OP_LAYERNORM_DX, id, in, 5, s, true);
  }
  if (need[1] || need[2]) {
    int in[4] = {dout[0], x, mean, invstd};
    int dweight = derived_node(g, OP_LAYERNORM_DPARAMS, id, in, 4, s, false);
    Node *k = node_at(g, val(g, dweight)->producer);
    int dbias = node_output(g, k, s, false, g->dtype);
    din[1] = need[1] ? dweight : -1;
    din[2] = need[2] ? dbias : -1;
  }
}

static double ln_flops(const Graph *g, const Node *node) {
  return 7.0 * (double)shape_numel(&val(g, node->in[0])->shape);
}

const OpDef op_layernorm = {
    .name = "layernorm", .prefix = "ln", .min_in = 1, .max_in = 1,
    .attrs = ln_attrs, .nattr = 1, .in_names = fwd_in, .out_names = fwd_out,
    .build = ln_build, .emit = ln_emit, .backward = ln_backward, .flops = ln_flops,
};

static const char *const dx_in[] = {"dy", "x", "weight", "mean", "invstd", NULL};
static const char *const dx_out[] = {"dx", NULL};
static const char *const dp_in[] = {"dy", "x", "mean", "invstd", NULL};
static const char *const dp_out[] = {"dweight", "dbias", NULL};

const OpDef op_layernorm_dx = {
    .name = "layernorm_dx", .attrs = ln_attrs, .nattr = 1, .in_names = dx_in,
    .out_names = dx_out, .roles = ROLE_INTERNAL, .emit = ln_dx_emit,
};

const OpDef op_layernorm_dparams = {
    .name = "layernorm_dparams", .attrs = ln_attrs, .nattr = 1, .in_names = dp_in,
    .out_names = dp_out, .roles = ROLE_INTERNAL, .emit = ln_dparams_emit,
};
