/*
 * batchnorm.c: batch normalization after conv (N, C, H, W) or dense (N, C)
 * layers, as PyTorch's BatchNorm2d / BatchNorm1d.
 *
 * Parameters weight (gamma) [C] = 1 and bias (beta) [C] = 0, not decayed;
 * buffers running_mean [C] = 0 and running_var [C] = 1; the counter
 * num_batches_tracked (int64, as in PyTorch's state_dict), which the
 * generated gradients() counts up with every training forward.
 *
 * Training: statistics of the batch over (N, H, W) per channel; the kernel
 * also updates the running statistics (momentum, unbiased variance as
 * PyTorch does) and keeps mean and 1/sqrt(var + eps) for the backward pass.
 * It is an epilogue anchor: a following activation is applied before the
 * single store of y.  Backward is one kernel, as in cuDNN and PyTorch: the
 * two channel sums (of dy and dy * xhat) are taken once and give dgamma,
 * dbeta and dx.  It can take the activation's gradient as a prologue
 * (ROLE_PROLOGUE, the opt-in prologue fusion): the masked gradient is
 * computed once per sample block into dx, then summed and read back,
 * instead of being stored by a relu_dx kernel.
 * Sums run in double in a fixed order for any thread count (a thread owns
 * a channel) that still vectorizes: SUM_LANES partial sums, see
 * emit_channel_sums.
 * Inference: the build rule turns the node into batchnorm_infer, an
 * elementwise op on the running statistics.  After a conv or dense layer the
 * bn_fold fusion (passes/fuse.c) removes it: batchnorm_fold scales that
 * layer's weights and bias once per forward call (w' = w * s, b' = fma(b -
 * mean, s, beta), s = gamma / sqrt(var + eps) per output channel) and the
 * layer runs on w', b'; with the weights baked read-only nncc computes the
 * fold itself (bn_fold_eval, passes/hoist_constants.c).  Elsewhere it fuses into an epilogue like an activation.
 */
#include <math.h>
#include <string.h>

#include "emit.h"

enum { A_MOMENTUM, A_EPS, A_STATS, NATTR };

static const AttrSpec bn_attrs[] = {
    {"momentum", ATTR_FLOAT, "0.1"},
    {"eps", ATTR_FLOAT, "1e-5"},
    {"stats", ATTR_IDENT, "batch"},
};

static const char *const fwd_in[] = {"x", "gamma", "beta", "running_mean", "running_var", NULL};
static const char *const train_out[] = {"y", "mean", "invstd", NULL};
static const char *const infer_out[] = {"y", NULL};

/* Channels C and positions per channel per sample (H*W, or 1 after dense). */
static void bn_dims(const Value *x, int *channels, long *spatial) {
  *channels = x->shape.dim[0];
  *spatial = shape_numel(&x->shape) / *channels;
}

static bool bn_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  Arena *a = g->ctx->arena;
  if (!x->batched || (x->shape.rank != 1 && x->shape.rank != 3)) {
    error_at(g->ctx, node->loc, "batchnorm: input must be (C, H, W) or (C), got %s",
             shape_str(a, &x->shape));
    return false;
  }
  double momentum = attr_num(node, A_MOMENTUM), eps = attr_num(node, A_EPS);
  if (!(momentum >= 0 && momentum <= 1)) {
    error_at(g->ctx, node->attr[A_MOMENTUM].loc, "batchnorm: momentum must be in [0, 1]");
    return false;
  }
  if (!(eps > 0)) {
    error_at(g->ctx, node->attr[A_EPS].loc, "batchnorm: eps must be positive");
    return false;
  }
  const char *stats = node->attr[A_STATS].ident;
  bool running = strcmp(stats, "running") == 0;
  if (!running && strcmp(stats, "batch") != 0) {
    error_at(g->ctx, node->attr[A_STATS].loc, "batchnorm: stats must be batch or running, got '%s'",
             stats);
    return false;
  }
  int c = x->shape.dim[0];
  Shape per_channel = shape_of(1, c);
  node_param(g, node, "weight", per_channel, (Init){.kind = INIT_ONES}, false);
  node_param(g, node, "bias", per_channel, (Init){.kind = INIT_ZEROS}, false);
  node_buffer(g, node, "running_mean", per_channel, 0.0);
  node_buffer(g, node, "running_var", per_channel, 1.0);
  /* stats=running normalizes with the running statistics in training too
   * and leaves them and the counter as they are (PyTorch's eval() of the
   * layer alone) */
  val(g, node_counter(g, node, "num_batches_tracked"))->frozen = running;
  node = node_at(g, node->id);
  Shape xs = val(g, node->in[0])->shape;
  if (g->mode == MODE_INFER || running) {
    node->op = OP_BATCHNORM_INFER;
    node_output(g, node, xs, true, g->dtype);
    return true;
  }
  node_output(g, node, xs, true, g->dtype);
  node_output(g, node, per_channel, false, g->dtype);
  node_output(g, node, per_channel, false, g->dtype);
  return true;
}

/* What the first pass over a channel reads (emit_channel_sums prefetches
 * it); the later passes find the channel's planes in L2.  The forward's
 * last pass, with a residual to add and y to write, runs at the memory's
 * bandwidth (17 GB/s of this machine's 24 on resnet20's stage 1): with the
 * residual and y prefetched too it took as long. */
static const char *const x_reads[] = {"x", NULL};
static const char *const dy_x_reads[] = {"x", "dy", NULL};   /* + 1: dy alone */

/* The forward's statements after mean and variance: y, the saved mean and
 * invstd, the running statistics (count: the samples' positions). */
static void bn_emit_output(Emit *e, const Node *node, int c, long s) {
  double momentum = attr_num(node, A_MOMENTUM);
  emitln(e, "const real is = (real)(1.0 / sqrt(var + %.17g));", attr_num(node, A_EPS));
  emitln(e, "mean[c] = (real)mu;");
  emitln(e, "invstd[c] = is;");
  emitln(e, "const real scale = gamma[c] * is, shift = beta[c] - (real)mu * gamma[c] * is;");
  emitln(e, "for (int b = 0; b < n; b++)");
  emitln(e, "    for (long i = 0; i < %ld; i++) {", s);
  emitln(e, "    const long k = ((long)b * %d + c) * %ld + i;", c, s);
  emitln(e, "    y[k] = %s;", epilogue_expr(e, node, "x[k] * scale + shift", "c", "k"));
  emitln(e, "    }");
  emitln(e, "const double unbiased = count > 1 ? sq / (count - 1) : var;");
  emitln(e, "running_mean[c] = (real)((1 - %.17g) * running_mean[c] + %.17g * mu);", momentum,
         momentum);
  emitln(e, "running_var[c] = (real)((1 - %.17g) * running_var[c] + %.17g * unbiased);", momentum,
         momentum);
}

/* --sync-batchnorm: the same two passes over the samples of every rank, as
 * one process on the combined batch computes them: the channel sums (and
 * the rank's positions) are summed over the ranks, then the squared
 * deviations from that mean.  Two allreduces per layer. */
static void bn_emit_sync(Emit *e, const Graph *g, const Node *node) {
  int c;
  long s;
  bn_dims(val(g, node->in[0]), &c, &s);
  const char *sum = "sum", *sq = "sq";
  const char *x = "x[k]", *dev = "(x[k] - mu) * (x[k] - mu)";
  emitln(e, "(void)share;");
  emitln(e, "double sums[%d], sqs[%d];   /* per channel; sums[%d]: positions */", c + 1, c, c);
  emit_omp_for(e, "");
  emitln(e, "for (int c = 0; c < %d; c++) {", c);
  emit_channel_sums(e, "double", c, s, 1, &sum, &x, NULL, x_reads);
  emitln(e, "sums[c] = sum;");
  emitln(e, "}");
  emitln(e, "sums[%d] = (double)n * %ld;", c, s);
  emitln(e, "MPI_Allreduce(MPI_IN_PLACE, sums, %d, MPI_DOUBLE, MPI_SUM, comm);", c + 1);
  emitln(e, "const double count = sums[%d];", c);
  emit_omp_for(e, "");
  emitln(e, "for (int c = 0; c < %d; c++) {", c);
  emitln(e, "const double mu = sums[c] / count;");
  emit_channel_sums(e, "double", c, s, 1, &sq, &dev, NULL, NULL);
  emitln(e, "sqs[c] = sq;");
  emitln(e, "}");
  emitln(e, "MPI_Allreduce(MPI_IN_PLACE, sqs, %d, MPI_DOUBLE, MPI_SUM, comm);", c);
  emit_omp_for(e, "");
  emitln(e, "for (int c = 0; c < %d; c++) {", c);
  emitln(e, "const double mu = sums[c] / count, sq = sqs[c];");
  emitln(e, "const double var = sq / count;");
  bn_emit_output(e, node, c, s);
  emitln(e, "}");
}

/* Training forward: per channel (one thread each) mean, variance (two
 * passes, for accuracy), output, running statistics. */
static void bn_emit(Emit *e, const Graph *g, const Node *node) {
  if (g->sync_bn) {
    bn_emit_sync(e, g, node);
    return;
  }
  int c;
  long s;
  bn_dims(val(g, node->in[0]), &c, &s);
  emit_omp_for(e, "");
  emitln(e, "for (int c = 0; c < %d; c++) {", c);
  emitln(e, "const double count = (double)n * %ld;", s);
  const char *sum = "sum", *sq = "sq";
  const char *x = "x[k]", *dev = "(x[k] - mu) * (x[k] - mu)";
  emit_channel_sums(e, "double", c, s, 1, &sum, &x, NULL, x_reads);
  emitln(e, "const double mu = sum / count;");
  emit_channel_sums(e, "double", c, s, 1, &sq, &dev, NULL, NULL);
  emitln(e, "const double var = sq / count;");
  bn_emit_output(e, node, c, s);
  emitln(e, "}");
}

/* Inference: y = (x - mean) * gamma / sqrt(var + eps) + beta, elementwise. */
static void bn_infer_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "(%s - %s) * (%s / rsquare_root(%s + (real)%.17g)) + %s", a[0], a[3], a[1], a[4],
             attr_num(node, A_EPS), a[2]);
}

/* The backward kernel: dx = gamma * invstd / M * (M * dy - sum(dy) - xhat *
 * sum(dy * xhat)), M = N * H * W, xhat = (x - mean) * invstd; with outputs
 * dgamma, dbeta also dgamma = sum(dy * xhat), dbeta = sum(dy).  With a
 * prologue the gradient it works on (`grad`) is first stored in dx, one
 * sample block at a time: recomputed inside the sums, its select would be
 * followed by a float-to-double conversion that gcc will not speculate
 * (-ftrapping-math), so the loops would neither vectorize nor lose their
 * branches, mispredicted on every other element of a ReLU mask. */
/* dx from the channel's means mdy and mdyx, into the sample blocks. */
static void bn_emit_dx(Emit *e, int c, long s, const char *grad) {
  emitln(e, "const real gs = gamma[c] * is;");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "for (long i = 0; i < %ld; i++) {", s);
  emitln(e, "const long k = ((long)b * %d + c) * %ld + i;", c, s);
  emitln(e, "const double xhat = (x[k] - mc) * is;");
  emitln(e, "dx[k] = (real)(gs * (%s[k] - mdy - xhat * mdyx));", grad);
  emitln(e, "}");
  emitln(e, "}");
}

static void bn_dx_emit(Emit *e, const Graph *g, const Node *node) {
  int c;
  long s;
  bn_dims(val(g, node->in[1]), &c, &s);
  const char *grad = node->prologue >= 0 ? "dx" : "dy";
  const char *fill = NULL;
  if (node->prologue >= 0)
    fill = arena_printf(e->ctx->arena, "dx[k] = %s;", input_expr(e, node, 0, "k", "c"));
  /* --sync-batchnorm: the means over all ranks' samples of the gradient
   * with respect to the global loss, which is this rank's times its share;
   * dx stays in this rank's scale (the buckets weight it), so the sums,
   * weighted by share and summed over the ranks, are divided by this rank's
   * positions.  dgamma and dbeta stay this rank's sums, like any gradient. */
  if (g->sync_bn)
    emitln(e, "double sums[%d];   /* per channel: sum dy, sum dy * xhat, times share */", 2 * c);
  emit_omp_for(e, "");
  emitln(e, "for (int c = 0; c < %d; c++) {", c);
  emitln(e, "const real mc = mean[c], is = invstd[c];");
  const char *sums[] = {"sum_dy", "sum_dy_xhat"};
  const char *exprs[] = {arena_printf(e->ctx->arena, "%s[k]", grad),
                         arena_printf(e->ctx->arena, "%s[k] * (x[k] - mc) * is", grad)};
  emit_channel_sums(e, "double", c, s, 2, sums, exprs, fill, dy_x_reads);
  if (node->nout == 3) {
    emitln(e, "dgamma[c] = (real)sum_dy_xhat;");
    emitln(e, "dbeta[c] = (real)sum_dy;");
  }
  if (g->sync_bn) {
    emitln(e, "sums[2 * c] = sum_dy * share;");
    emitln(e, "sums[2 * c + 1] = sum_dy_xhat * share;");
    emitln(e, "}");
    emitln(e, "MPI_Allreduce(MPI_IN_PLACE, sums, %d, MPI_DOUBLE, MPI_SUM, comm);", 2 * c);
    emit_omp_for(e, "");
    emitln(e, "for (int c = 0; c < %d; c++) {", c);
    emitln(e, "const real mc = mean[c], is = invstd[c];");
    emitln(e, "const double count = (double)n * %ld;", s);
    emitln(e, "const double mdy = sums[2 * c] / count, mdyx = sums[2 * c + 1] / count;");
    bn_emit_dx(e, c, s, grad);
    emitln(e, "}");
    return;
  }
  emitln(e, "const double count = (double)n * %ld;", s);
  emitln(e, "const double mdy = sum_dy / count, mdyx = sum_dy_xhat / count;");
  bn_emit_dx(e, c, s, grad);
  emitln(e, "}");
}

/* dgamma = sum(dy * xhat), dbeta = sum(dy), per channel: the backward
 * kernel when the input needs no gradient.  It takes no prologue: with no
 * dx to store the masked gradient in, see bn_dx_emit. */
static void bn_dparams_emit(Emit *e, const Graph *g, const Node *node) {
  int c;
  long s;
  bn_dims(val(g, node->in[1]), &c, &s);
  emit_omp_for(e, "");
  emitln(e, "for (int c = 0; c < %d; c++) {", c);
  emitln(e, "const real mc = mean[c], is = invstd[c];");
  const char *sums[] = {"sum_dy", "sum_dy_xhat"};
  const char *exprs[] = {"dy[k]", "dy[k] * (x[k] - mc) * is"};
  emit_channel_sums(e, "double", c, s, 2, sums, exprs, NULL, dy_x_reads);
  emitln(e, "dgamma[c] = (real)sum_dy_xhat;");
  emitln(e, "dbeta[c] = (real)sum_dy;");
  emitln(e, "}");
}

/* One kernel for dx, dgamma and dbeta when dx is needed (the sums are
 * shared); batchnorm_dparams alone when it is not. */
static void bn_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  int id = node->id;
  int x = node->in[0], gamma = node->in[1], mean = node->out[1], invstd = node->out[2];
  Shape pc = val(g, gamma)->shape;
  int dgamma = -1, dbeta = -1;
  if (need[0]) {
    int in[5] = {dout[0], x, gamma, mean, invstd};
    din[0] = derived_node(g, OP_BATCHNORM_DX, id, in, 5, val(g, x)->shape, true);
    if (need[1] || need[2]) {
      Node *k = node_at(g, val(g, din[0])->producer);
      dgamma = node_output(g, k, pc, false, g->dtype);
      dbeta = node_output(g, k, pc, false, g->dtype);
    }
  } else if (need[1] || need[2]) {
    int in[4] = {dout[0], x, mean, invstd};
    dgamma = derived_node(g, OP_BATCHNORM_DPARAMS, id, in, 4, pc, false);
    Node *k = node_at(g, val(g, dgamma)->producer);
    dbeta = node_output(g, k, pc, false, g->dtype);
  }
  din[1] = need[1] ? dgamma : -1;
  din[2] = need[2] ? dbeta : -1;
}

/* stats=running in training: y = (x - running_mean) * s + beta, s = gamma /
 * sqrt(running_var + eps), is elementwise, so dx = dy * s (batchnorm_infer_dx,
 * elementwise: it fuses like an activation's gradient), dbeta = sum(dy) and
 * dgamma = sum(dy * (x - running_mean) / sqrt(running_var + eps)) per channel
 * (batchnorm_infer_dparams).  Only a trained gamma keeps x alive for the
 * backward pass: with gamma frozen (freeze=weight) nothing reads the layer's
 * input, so the conv or dense layer before it runs the normalization as its
 * epilogue and stores y alone. */
static void bn_infer_backward(Graph *g, Node *node, const int *dout, const bool *need,
                              int *din) {
  int id = node->id, x = node->in[0], gamma = node->in[1];
  Shape pc = val(g, gamma)->shape;
  if (need[0]) {
    int in[3] = {dout[0], gamma, node->in[4]};
    din[0] = derived_node(g, OP_BATCHNORM_INFER_DX, id, in, 3, val(g, x)->shape, true);
  }
  if (need[1]) {
    int in[4] = {dout[0], x, node->in[3], node->in[4]};
    int dbeta = derived_node(g, OP_BATCHNORM_INFER_DPARAMS, id, in, 4, pc, false);
    din[1] = node_output(g, node_at(g, val(g, dbeta)->producer), pc, false, g->dtype);
    din[2] = need[2] ? dbeta : -1;
  } else if (need[2]) {
    din[2] = derived_node(g, OP_BATCHNORM_INFER_DPARAMS, id, &dout[0], 1, pc, false);
  }
}

static void bn_infer_dx_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "(%s) * (%s / rsquare_root(%s + (real)%.17g))", a[0], a[1], a[2],
             attr_num(node, A_EPS));
}

/* dbeta = sum(dy) and, given x, dgamma = sum(dy * xhat) per channel. */
static void bn_infer_dparams_emit(Emit *e, const Graph *g, const Node *node) {
  int c;
  long s;
  bn_dims(val(g, node->in[0]), &c, &s);
  bool gamma = node->nin > 1;
  emit_omp_for(e, "");
  emitln(e, "for (int c = 0; c < %d; c++) {", c);
  if (gamma)
    emitln(e, "const real mc = running_mean[c], is = 1 / rsquare_root(running_var[c] + %s);",
           lit(e, attr_num(node, A_EPS)));
  const char *sums[] = {"sum_dy", "sum_dy_xhat"};
  const char *exprs[] = {"dy[k]", "dy[k] * (x[k] - mc) * is"};
  emit_channel_sums(e, "double", c, s, gamma ? 2 : 1, sums, exprs, NULL,
                    gamma ? dy_x_reads : dy_x_reads + 1);
  emitln(e, "dbeta[c] = (real)sum_dy;");
  if (gamma)
    emitln(e, "dgamma[c] = (real)sum_dy_xhat;");
  emitln(e, "}");
}

static double bn_flops(const Graph *g, const Node *node) {
  return 4.0 * (double)shape_numel(&val(g, node->in[0])->shape);
}

/* w (O, ...) and bias (O) of the anchor -> wf, bf; inputs w, gamma, beta,
 * running_mean, running_var[, bias]. */
static void bn_fold_emit(Emit *e, const Graph *g, const Node *node) {
  const Value *w = val(g, node->in[0]);
  int o = w->shape.dim[0];
  long per = shape_numel(&w->shape) / o;
  emitln(e, "(void)n;");
  emitln(e, "for (int o = 0; o < %d; o++) {", o);
  emitln(e, "const real scale = gamma[o] / rsquare_root(running_var[o] + %s);",
         lit(e, attr_num(node, A_EPS)));
  emitln(e, "for (long k = 0; k < %ld; k++)", per);
  emitln(e, "    wf[(long)o * %ld + k] = w[(long)o * %ld + k] * scale;", per, per);
  emitln(e, "bf[o] = rfma(%s - running_mean[o], scale, beta[o]);", node->nin > 5 ? "bias[o]" : "0");
  emitln(e, "}");
}

/* bn_fold_emit's arithmetic at compile time (every step one IEEE rounding,
 * the fma explicit): a baked fold equals a computed one bit for bit. */
#define BN_FOLD(real, sqrt_, fma_)                                                  \
  do {                                                                              \
    const real *w = in[0], *gamma = in[1], *beta = in[2], *mean = in[3], *var = in[4]; \
    const real *bias = node->nin > 5 ? in[5] : NULL;                                \
    real *wf = out[0], *bf = out[1], eps = (real)lit_value(g->dtype, attr_num(node, A_EPS)); \
    for (int o = 0; o < nout; o++) {                                                \
      const real scale = gamma[o] / sqrt_(var[o] + eps);                            \
      for (long k = 0; k < per; k++)                                                \
        wf[(long)o * per + k] = w[(long)o * per + k] * scale;                       \
      bf[o] = fma_((bias ? bias[o] : 0) - mean[o], scale, beta[o]);                 \
    }                                                                               \
  } while (0)

static void bn_fold_eval(const Graph *g, const Node *node, const void *const *in,
                         void *const *out) {
  const Shape *ws = &val(g, node->in[0])->shape;
  int nout = ws->dim[0];
  long per = shape_numel(ws) / nout;
  if (g->dtype == DT_F32)
    BN_FOLD(float, sqrtf, fmaf);
  else
    BN_FOLD(double, sqrt, fma);
}
#undef BN_FOLD

const OpDef op_batchnorm = {
    .name = "batchnorm", .prefix = "bn", .min_in = 1, .max_in = 1,
    .attrs = bn_attrs, .nattr = NATTR, .in_names = fwd_in, .out_names = train_out,
    .roles = ROLE_ANCHOR | ROLE_WRITES_BUFFERS | ROLE_INIT_THROUGH | ROLE_SYNC,
    .build = bn_build, .emit = bn_emit, .backward = bn_backward, .flops = bn_flops,
};

const OpDef op_batchnorm_infer = {
    .name = "batchnorm_infer", .min_in = 5, .max_in = 5,
    .attrs = bn_attrs, .nattr = NATTR, .in_names = fwd_in, .out_names = infer_out,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_FOLDABLE | ROLE_INTERNAL | ROLE_INIT_THROUGH,
    .fold_op = OP_BATCHNORM_FOLD, .shown_as = "batchnorm",
    .emit = emit_elementwise, .scalar = bn_infer_scalar, .backward = bn_infer_backward,
    .flops = bn_flops,
};

static const char *const infer_dx_in[] = {"dy", "gamma", "running_var", NULL};
static const char *const infer_dx_out[] = {"dx", NULL};
static const char *const infer_dp_in[] = {"dy", "x", "running_mean", "running_var", NULL};
static const char *const infer_dp_out[] = {"dbeta", "dgamma", NULL};

const OpDef op_batchnorm_infer_dx = {
    .name = "batchnorm_infer_dx", .min_in = 3, .max_in = 3, .attrs = bn_attrs, .nattr = NATTR,
    .in_names = infer_dx_in, .out_names = infer_dx_out,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_INTERNAL,
    .emit = emit_elementwise, .scalar = bn_infer_dx_scalar,
};

const OpDef op_batchnorm_infer_dparams = {
    .name = "batchnorm_infer_dparams", .attrs = bn_attrs, .nattr = NATTR,
    .in_names = infer_dp_in, .out_names = infer_dp_out, .roles = ROLE_INTERNAL,
    .emit = bn_infer_dparams_emit,
};

static const char *const dx_in[] = {"dy", "x", "gamma", "mean", "invstd", NULL};
static const char *const dx_out[] = {"dx", "dgamma", "dbeta", NULL};
static const char *const dp_in[] = {"dy", "x", "mean", "invstd", NULL};
static const char *const dp_out[] = {"dgamma", "dbeta", NULL};

const OpDef op_batchnorm_dx = {
    .name = "batchnorm_dx", .attrs = bn_attrs, .nattr = NATTR, .in_names = dx_in,
    .out_names = dx_out, .roles = ROLE_INTERNAL | ROLE_PROLOGUE | ROLE_SYNC, .emit = bn_dx_emit,
};

const OpDef op_batchnorm_dparams = {
    .name = "batchnorm_dparams", .attrs = bn_attrs, .nattr = NATTR, .in_names = dp_in,
    .out_names = dp_out, .roles = ROLE_INTERNAL, .emit = bn_dparams_emit,
};

static const char *const fold_in[] = {"w", "gamma", "beta", "running_mean", "running_var",
                                      "bias", NULL};
static const char *const fold_out[] = {"wf", "bf", NULL};

const OpDef op_batchnorm_fold = {
    .name = "batchnorm_fold", .attrs = bn_attrs, .nattr = NATTR, .in_names = fold_in,
    .out_names = fold_out, .roles = ROLE_INTERNAL, .emit = bn_fold_emit, .eval = bn_fold_eval,
};
