/*
 * conv2d.c: 2-D convolution (cross-correlation, as PyTorch's Conv2d) and its
 * backward kernels.
 *
 *   x (N, C, H, W), w (O, C/G, K, K) as PyTorch's Conv2d.weight (OIHW),
 *   bias (O), y (N, O, Ho, Wo) with Ho = (H + 2P - K) / S + 1 (same for W).
 *   G groups: output channel o reads input channels [g*C/G, (g+1)*C/G) with
 *   g = o / (O/G); G == C is a depthwise convolution.
 *
 * Every kernel is a matrix product through the register tiles of
 * runtime/nn_gemm.c, over the columns of runtime/nn_im2col.c (see
 * "kernels" below).  conv2d is an epilogue anchor: bias and a fused
 * batchnorm or activation are applied to each tile before its single store
 * of y.
 *
 * Results do not depend on the thread count: each thread owns the outputs
 * it sums into, and every sum runs in an order fixed by the code (dw adds
 * the samples in batch order).
 */
#include <limits.h>

#include "codegen.h"

enum { A_CHANNELS, A_KERNEL, A_STRIDE, A_PAD, A_BIAS, A_GROUPS, NATTR };

static const AttrSpec conv2d_attrs[NATTR] = {
    {"channels", ATTR_INT, NULL}, {"kernel", ATTR_INT, NULL}, {"stride", ATTR_INT, "1"},
    {"pad", ATTR_INT, "0"},       {"bias", ATTR_BOOL, "true"}, {"groups", ATTR_INT, "1"},
};

static const char *const fwd_in[] = {"x", "w", "bias", NULL};
static const char *const fwd_out[] = {"y", "ws", NULL};

/* Every size a kernel needs, from the node's attributes and its x and y. */
typedef struct Conv {
  int c, h, w;      /* input channels and size */
  int o, ho, wo;    /* output channels and size */
  int k, s, p, g;   /* kernel, stride, pad, groups */
  int cpg, opg;     /* input and output channels per group */
  long hw, howo;    /* plane sizes; long: a plane may hold 2^31 elements */
  long kk, fsize;   /* K*K, and one filter C/G*K*K */
} Conv;

static Conv conv_dims(const Node *node, const Shape *x, const Shape *y) {
  Conv v = {.c = x->dim[0], .h = x->dim[1], .w = x->dim[2],
            .o = y->dim[0], .ho = y->dim[1], .wo = y->dim[2],
            .k = attr_int(node, A_KERNEL), .s = attr_int(node, A_STRIDE),
            .p = attr_int(node, A_PAD), .g = attr_int(node, A_GROUPS)};
  v.cpg = v.c / v.g;
  v.opg = v.o / v.g;
  v.hw = (long)v.h * v.w;
  v.howo = (long)v.ho * v.wo;
  v.kk = (long)v.k * v.k;
  v.fsize = v.cpg * v.kk;
  return v;
}

typedef enum { COLS, ROWS } Layout;   /* col (C*K*K, P) or row (P, row_ld) */
static bool conv_workspace(Graph *g, Node *node, const Conv *v, Layout l);

/* ---- shape rule ---------------------------------------------------------- */

static bool check_attrs(Graph *g, const Node *node) {
  static const int positive[] = {A_CHANNELS, A_KERNEL, A_STRIDE, A_GROUPS};
  for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++) {
    int a = positive[i], v = attr_int(node, a);
    if (v <= 0) {
      error_at(g->ctx, node->attr[a].loc, "conv2d: %s must be positive, got %d",
               conv2d_attrs[a].name, v);
      return false;
    }
  }
  if (attr_int(node, A_PAD) < 0) {
    error_at(g->ctx, node->attr[A_PAD].loc, "conv2d: pad must be >= 0, got %d",
             attr_int(node, A_PAD));
    return false;
  }
  return true;
}

static bool check_groups(Graph *g, const Node *node, int c) {
  int groups = attr_int(node, A_GROUPS), o = attr_int(node, A_CHANNELS);
  const char *what = c % groups ? "input" : o % groups ? "output" : NULL;
  if (what)
    error_at(g->ctx, node->attr[A_GROUPS].loc,
             "conv2d: %d %s channels are not divisible by groups=%d",
             c % groups ? c : o, what, groups);
  return what == NULL;
}

/* One output dimension; reports an error and returns -1 when the kernel
 * does not fit.  The padded size is bounded so emitted int indices hold. */
static long out_dim(Graph *g, const Node *node, int in_h, int in_w, bool is_h) {
  long k = attr_int(node, A_KERNEL), s = attr_int(node, A_STRIDE), p = attr_int(node, A_PAD);
  long ph = in_h + 2 * p, pw = in_w + 2 * p;
  if (k > ph || k > pw) {
    error_at(g->ctx, node->attr[A_KERNEL].loc,
             "conv2d: kernel %ldx%ld is larger than the padded input %ldx%ld", k, k, ph, pw);
    return -1;
  }
  if (ph > INT_MAX || pw > INT_MAX) {
    error_at(g->ctx, node->attr[A_PAD].loc, "conv2d: padded input %ldx%ld is too large",
             ph, pw);
    return -1;
  }
  return ((is_h ? ph : pw) - k) / s + 1;
}

static bool conv2d_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  if (x->shape.rank != 3) {
    error_at(g->ctx, node->loc, "conv2d: input must be (C, H, W), got %s",
             shape_str(g->ctx->arena, &x->shape));
    return false;
  }
  int c = x->shape.dim[0], h = x->shape.dim[1], w = x->shape.dim[2];
  if (!check_attrs(g, node) || !check_groups(g, node, c))
    return false;
  long ho = out_dim(g, node, h, w, true), wo = out_dim(g, node, h, w, false);
  if (ho < 0 || wo < 0)
    return false;
  int o = attr_int(node, A_CHANNELS), k = attr_int(node, A_KERNEL);
  int groups = attr_int(node, A_GROUPS);
  Shape ws = shape_of(4, o, c / groups, k, k), ys = shape_of(3, o, (int)ho, (int)wo);
  if (!check_shape(g, node, ws) || !check_shape(g, node, ys))
    return false;
  long kk = (long)k * k;
  if (c / groups * kk > INT_MAX || o / groups * kk > INT_MAX) {
    error_at(g->ctx, node->attr[A_KERNEL].loc, "conv2d: filter %s is too large",
             shape_str(g->ctx->arena, &ws));
    return false;
  }
  Init xavier = {.kind = INIT_XAVIER_NORMAL, .fan_in = (int)(c / groups * kk),
                 .fan_out = (int)(o / groups * kk)};
  int wid = node_param(g, node, "weight", ws, xavier, true);
  val(g, wid)->unit_size = (int)(c / groups * kk);
  if (attr_bool(node, A_BIAS))
    node_param(g, node, "bias", shape_of(1, o), (Init){.kind = INIT_ZEROS}, false);
  node_output(g, node, ys, true, g->dtype);
  Conv v = conv_dims(node, &val(g, node->in[0])->shape, &ys);
  return conv_workspace(g, node, &v, COLS);
}

/* ---- kernels ------------------------------------------------------------- */

/* Every kernel is a matrix product per sample and group, through the tiles
 * of runtime/nn_gemm.c (see docs/design.md, "Kernels"):
 *
 *   forward  y_g (O/G, P)   = w_g (O/G, R) . col_g (R, P)
 *   dx       col_g (R, P)   = w_g^T (R, O/G) . dy_g (O/G, P), then col2im
 *   dw       dw_g (O/G, R) += dy_g (O/G, P) . row_g (P, R), sample by sample
 *
 * with R = C/G*K*K rows of columns and P = Ho*Wo output pixels; row is col
 * transposed, so that all three are nn products, whose tiles vectorize
 * along a contiguous row of B.  A 1x1 convolution with stride 1 and no
 * padding is its own column matrix (the input planes); otherwise the
 * columns (or rows) of a chunk of samples go into the node's workspace
 * (runtime/nn_im2col.c).  A chunk's samples' columns are written, then
 * multiplied, each step shared among the threads and ending in a barrier.
 * The chunk holds as many samples as fit in CHUNK_REALS, so the workspace
 * stays in the caches; but at least CHUNK_MIN samples while they fit in
 * CHUNK_MAX, since a chunk of one sample of a large layer (resnet20's 3x3
 * convolutions: 147,456 values) pays two barriers per sample and left the
 * second thread idle (2-thread forward no faster than 1). */
enum { CHUNK_REALS = 1 << 18, CHUNK_MAX = 1 << 20, CHUNK_MIN = 4 };

static bool conv_direct(const Conv *v) { return v->k == 1 && v->s == 1 && v->p == 0; }

static long col_reals(const Conv *v) { return (long)v->c * v->kk * v->howo; }

/* Rows hold C*K*K values and enough zeros after them that the last group's
 * last tile of NN_NR columns stays inside the row. */
static long row_ld(const Conv *v) {
  long r = v->fsize, tiles = (r + NN_NR - 1) / NN_NR;
  return (long)v->c * v->kk + tiles * NN_NR - r;
}

static long sample_reals(const Conv *v, Layout l) {
  return l == ROWS ? v->howo * row_ld(v) : conv_direct(v) ? 0 : col_reals(v);
}

static int chunk_samples(const Conv *v, Layout l, int max_batch) {
  long per = sample_reals(v, l);
  if (per == 0)
    return max_batch;
  long fit = CHUNK_MAX / per, nb = CHUNK_REALS / per;
  if (nb < CHUNK_MIN)
    nb = fit < CHUNK_MIN ? fit : CHUNK_MIN;
  return nb < 1 ? 1 : nb > max_batch ? max_batch : (int)nb;
}

/* Gives node (forward, dx or dw of a convolution with dims v) its
 * workspace: the columns or rows of one chunk of samples. */
static bool conv_workspace(Graph *g, Node *node, const Conv *v, Layout l) {
  long per = sample_reals(v, l);
  if (per == 0)
    return true;
  if (per * chunk_samples(v, l, g->max_batch) > INT_MAX) {
    error_at(g->ctx, node->loc, "conv2d: the columns of one sample (%ld values) are too large",
             per);
    return false;
  }
  node_workspace(g, node, per * chunk_samples(v, l, g->max_batch));
  return true;
}

/* Opens the parallel region and the loop over chunks of samples (b0, nb)
 * and, when `fill`, writes the chunk's columns or rows into ws (nothing for
 * columns of a direct convolution).  The caller emits the product loops
 * and closes both with "}". */
static void emit_chunk(Emit *e, const Graph *g, const Conv *v, Layout l, bool fill) {
  int nb = chunk_samples(v, l, g->max_batch);
  emit_omp(e, "parallel");
  emitln(e, "{");
  emitln(e, "for (int b0 = 0; b0 < n; b0 += %d) {", nb);
  emitln(e, "const int nb = n - b0 < %d ? n - b0 : %d;", nb, nb);
  if (!fill || sample_reals(v, l) == 0)
    return;
  long ld = row_ld(v), pad = ld - (long)v->c * v->kk;
  emit_omp(e, "for collapse(2)");
  emitln(e, "for (int bi = 0; bi < nb; bi++) {");
  emitln(e, "for (int c = 0; c < %d; c++) {", v->c);
  emitln(e, "real *to = ws + (long)bi * %ld;", sample_reals(v, l));
  emitln(e, "const real *from = x + ((long)(b0 + bi) * %d + c) * %ld;", v->c, v->hw);
  if (l == COLS) {
    emitln(e, "nn_im2col(to + (long)c * %ld, from, %d, %d, %d, %d, %d, %d, %d);",
           v->kk * v->howo, v->h, v->w, v->k, v->s, v->p, v->ho, v->wo);
  } else {
    emitln(e, "nn_im2row(to + (long)c * %ld, %ld, from, %d, %d, %d, %d, %d, %d, %d);", v->kk,
           ld, v->h, v->w, v->k, v->s, v->p, v->ho, v->wo);
    if (pad > 0) {
      emitln(e, "if (c == 0)");
      emitln(e, "    for (long q = 0; q < %ld; q++)", v->howo);
      emitln(e, "        for (long r = %ld; r < %ld; r++)", ld - pad, ld);
      emitln(e, "            to[q * %ld + r] = 0;", ld);
    }
  }
  emitln(e, "}");
  emitln(e, "}");
}

/* The columns of sample bi, group g of the chunk: the workspace, or for a
 * direct convolution the input planes themselves (R = C/G rows of P = H*W). */
static const char *columns_of(Emit *e, const Conv *v, const char *x, const char *g) {
  if (conv_direct(v))
    return arena_printf(e->ctx->arena, "(%s + ((long)(b0 + bi) * %d + (long)%s * %d) * %ld)", x,
                        v->c, g, v->cpg, v->hw);
  return arena_printf(e->ctx->arena, "(ws + (long)bi * %ld + (long)%s * %ld)", col_reals(v), g,
                      v->fsize * v->howo);
}

/* Computes tile t of NN_MR rows (from `row0`, mr of them) and NN_NR columns
 * (from j0, nr of them) of an nn product with inner size k, A at `a` with
 * strides ars/acs, B at `b` with rows of `ldb`. */
static void emit_tile_nn(Emit *e, long k, const char *a, const char *ars, const char *acs,
                         const char *b, long ldb) {
  emitln(e, "const int nr = %ld - j0 < NN_NR ? (int)(%ld - j0) : NN_NR;", ldb, ldb);
  emitln(e, "real t[NN_MR][NN_NR];");
  emitln(e, "if (nr == NN_NR)");
  emitln(e, "    nn_tile_nn(t, mr, %ld, %s, %s, %s, %s + j0, %ld);", k, a, ars, acs, b, ldb);
  emitln(e, "else");
  emitln(e, "    nn_tile_nn_edge(t, mr, nr, %ld, %s, %s, %s, %s + j0, %ld);", k, a, ars, acs, b,
         ldb);
}

static void conv2d_emit(Emit *e, const Graph *g, const Node *node) {
  Conv v = conv_dims(node, &val(g, node->in[0])->shape, &val(g, node->out[0])->shape);
  bool bias = node->nin > 2;
  int tiles = (v.opg + NN_MR - 1) / NN_MR;   /* row tiles per group */
  emit_chunk(e, g, &v, COLS, true);
  emit_omp(e, "for collapse(3)");
  emitln(e, "for (int bi = 0; bi < nb; bi++) {");
  emitln(e, "for (int mt = 0; mt < %d; mt++) {", v.g * tiles);
  emitln(e, "for (long j0 = 0; j0 < %ld; j0 += NN_NR) {", v.howo);
  emitln(e, "const int g = mt / %d, o0 = g * %d + mt %% %d * NN_MR;", tiles, v.opg, tiles);
  emitln(e, "const int mr = (g + 1) * %d - o0 < NN_MR ? (g + 1) * %d - o0 : NN_MR;", v.opg,
         v.opg);
  Arena *a = e->ctx->arena;
  emit_tile_nn(e, v.fsize, arena_printf(a, "w + (long)o0 * %ld", v.fsize),
               arena_printf(a, "%ld", v.fsize), "1", columns_of(e, &v, "x", "g"), v.howo);
  emitln(e, "for (int i = 0; i < mr; i++) {");
  emitln(e, "const int o = o0 + i;");
  emitln(e, "const long yo = ((long)(b0 + bi) * %d + o) * %ld + j0;", v.o, v.howo);
  emitln(e, "for (int j = 0; j < nr; j++) {");
  emitln(e, "const real acc = t[i][j]%s;", bias ? " + bias[o]" : "");
  emitln(e, "y[yo + j] = %s;", epilogue_expr(e, node, "acc", "o", "(yo + j)"));
  for (int k = 0; k < 7; k++)
    emitln(e, "}");
}
static double conv2d_flops(const Graph *g, const Node *node) {
  const Value *y = val(g, node->out[0]);
  double positions = (double)y->shape.dim[1] * y->shape.dim[2];
  return 2.0 * (double)shape_numel(&val(g, node->in[1])->shape) * positions;
}

/* dx and dw: as many multiply-adds as the forward product (dy is in[0]). */
static double conv2d_backward_flops(const Graph *g, const Node *node) {
  const Shape *dy = &val(g, node->in[0])->shape;
  int w = node->op == OP_CONV2D_DX ? node->in[1] : node->out[0];
  return 2.0 * (double)shape_numel(&val(g, w)->shape) * dy->dim[1] * dy->dim[2];
}

/* dx (N, C, H, W): per chunk, the columns' gradient w_g^T . dy_g goes to the
 * workspace, then col2im sums it into each (sample, channel) plane; a
 * direct convolution writes the product straight into dx. */
static void conv2d_dx_emit(Emit *e, const Graph *g, const Node *node) {
  Conv v = conv_dims(node, &val(g, node->out[0])->shape, &val(g, node->in[0])->shape);
  Arena *a = e->ctx->arena;
  int tiles = (int)((v.fsize + NN_MR - 1) / NN_MR);   /* row tiles per group */
  emit_chunk(e, g, &v, COLS, false);
  emit_omp(e, "for collapse(3)");
  emitln(e, "for (int bi = 0; bi < nb; bi++) {");
  emitln(e, "for (int mt = 0; mt < %d; mt++) {", v.g * tiles);
  emitln(e, "for (long j0 = 0; j0 < %ld; j0 += NN_NR) {", v.howo);
  emitln(e, "const int g = mt / %d, r0 = mt %% %d * NN_MR;", tiles, tiles);
  emitln(e, "const int mr = %ld - r0 < NN_MR ? (int)(%ld - r0) : NN_MR;", v.fsize, v.fsize);
  emit_tile_nn(e, v.opg, arena_printf(a, "w + (long)g * %ld + r0", v.opg * v.fsize), "1",
               arena_printf(a, "%ld", v.fsize),
               arena_printf(a, "dy + ((long)(b0 + bi) * %d + (long)g * %d) * %ld", v.o, v.opg,
                            v.howo),
               v.howo);
  emitln(e, "real *d = %s + (long)r0 * %ld + j0;",
         conv_direct(&v) ? columns_of(e, &v, "dx", "g") : columns_of(e, &v, "x", "g"),
         v.howo);
  emitln(e, "for (int i = 0; i < mr; i++)");
  emitln(e, "    for (int j = 0; j < nr; j++)");
  emitln(e, "        d[(long)i * %ld + j] = t[i][j];", v.howo);
  for (int k = 0; k < 3; k++)
    emitln(e, "}");
  if (!conv_direct(&v)) {
    emit_omp(e, "for collapse(2)");
    emitln(e, "for (int bi = 0; bi < nb; bi++) {");
    emitln(e, "for (int c = 0; c < %d; c++) {", v.c);
    emitln(e, "nn_col2im(dx + ((long)(b0 + bi) * %d + c) * %ld, ws + (long)bi * %ld + (long)c * %ld,",
           v.c, v.hw, col_reals(&v), v.kk * v.howo);
    emitln(e, "          %d, %d, %d, %d, %d, %d, %d);", v.h, v.w, v.k, v.s, v.p, v.ho, v.wo);
    emitln(e, "}");
    emitln(e, "}");
  }
  emitln(e, "}");
  emitln(e, "}");
}

/* dw (O, C/G, K, K): one thread owns each NN_MR x NN_NR tile of a group's
 * (O/G, R) gradient and adds the samples' products into it in batch order,
 * chunk after chunk. */
static void conv2d_dw_emit(Emit *e, const Graph *g, const Node *node) {
  Conv v = conv_dims(node, &val(g, node->in[1])->shape, &val(g, node->in[0])->shape);
  int otiles = (v.opg + NN_MR - 1) / NN_MR, rtiles = (int)((v.fsize + NN_NR - 1) / NN_NR);
  long ld = row_ld(&v);
  emit_chunk(e, g, &v, ROWS, true);
  emit_omp(e, "for collapse(2)");
  emitln(e, "for (int mt = 0; mt < %d; mt++) {", v.g * otiles);
  emitln(e, "for (int rt = 0; rt < %d; rt++) {", rtiles);
  emitln(e, "const int g = mt / %d, o0 = g * %d + mt %% %d * NN_MR, r0 = rt * NN_NR;", otiles,
         v.opg, otiles);
  emitln(e, "const int mr = (g + 1) * %d - o0 < NN_MR ? (g + 1) * %d - o0 : NN_MR;", v.opg,
         v.opg);
  emitln(e, "const int nr = %ld - r0 < NN_NR ? (int)(%ld - r0) : NN_NR;", v.fsize, v.fsize);
  emitln(e, "real acc[NN_MR][NN_NR];");
  emitln(e, "for (int i = 0; i < mr; i++)");
  emitln(e, "    for (int j = 0; j < nr; j++)");
  emitln(e, "        acc[i][j] = b0 == 0 ? 0 : dw[(long)(o0 + i) * %ld + r0 + j];", v.fsize);
  emitln(e, "for (int bi = 0; bi < nb; bi++) {");
  emitln(e, "real t[NN_MR][NN_NR];");
  emitln(e, "nn_tile_nn(t, mr, %ld, dy + ((long)(b0 + bi) * %d + o0) * %ld, %ld, 1,", v.howo,
         v.o, v.howo, v.howo);
  emitln(e, "           ws + (long)bi * %ld + (long)g * %ld + r0, %ld);", v.howo * ld, v.fsize,
         ld);
  emitln(e, "for (int i = 0; i < mr; i++)");
  emitln(e, "    for (int j = 0; j < nr; j++)");
  emitln(e, "        acc[i][j] += t[i][j];");
  emitln(e, "}");
  emitln(e, "for (int i = 0; i < mr; i++)");
  emitln(e, "    for (int j = 0; j < nr; j++)");
  emitln(e, "        dw[(long)(o0 + i) * %ld + r0 + j] = acc[i][j];", v.fsize);
  for (int k = 0; k < 4; k++)
    emitln(e, "}");
}

/* db (O) = sum over the batch and positions of dy (N, O, Ho, Wo). */
static void conv2d_db_emit(Emit *e, const Graph *g, const Node *node) {
  const Shape *dy = &val(g, node->in[0])->shape;
  int o = dy->dim[0], hw = dy->dim[1] * dy->dim[2];
  emit_omp_for(e, "");
  emitln(e, "for (int o = 0; o < %d; o++) {", o);
  emitln(e, "real acc = 0;");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "const real *dyo = dy + ((long)b * %d + o) * %d;", o, hw);
  emitln(e, "for (int i = 0; i < %d; i++)", hw);
  emitln(e, "    acc += dyo[i];");
  emitln(e, "}");
  emitln(e, "db[o] = acc;");
  emitln(e, "}");
}

static void conv2d_backward(Graph *g, Node *node, const int *dout, const bool *need,
                            int *din) {
  int id = node->id, dy = dout[0], x = node->in[0], w = node->in[1];
  int nin = node->nin, bias = nin > 2 ? node->in[2] : -1;
  Conv v = conv_dims(node, &val(g, x)->shape, &val(g, dy)->shape);
  /* derived_node may move the nodes: `node` is not used below. */
  if (need[0]) {
    int in[2] = {dy, w};
    din[0] = derived_node(g, OP_CONV2D_DX, id, in, 2, val(g, x)->shape, true);
    conv_workspace(g, node_at(g, val(g, din[0])->producer), &v, COLS);
  }
  if (need[1]) {
    int in[2] = {dy, x};
    din[1] = derived_node(g, OP_CONV2D_DW, id, in, 2, val(g, w)->shape, false);
    conv_workspace(g, node_at(g, val(g, din[1])->producer), &v, ROWS);
  }
  if (bias >= 0 && need[2]) {
    int in[1] = {dy};
    din[2] = derived_node(g, OP_CONV2D_DB, id, in, 1, val(g, bias)->shape, false);
  }
}

const OpDef op_conv2d = {
    .name = "conv2d", .prefix = "conv", .min_in = 1, .max_in = 1,
    .attrs = conv2d_attrs, .nattr = NATTR, .in_names = fwd_in, .out_names = fwd_out,
    .roles = ROLE_ANCHOR,
    .build = conv2d_build, .emit = conv2d_emit, .backward = conv2d_backward,
    .flops = conv2d_flops,
};

static const char *const dx_in[] = {"dy", "w", NULL}, *const dx_out[] = {"dx", "ws", NULL};
static const char *const dw_in[] = {"dy", "x", NULL}, *const dw_out[] = {"dw", "ws", NULL};
static const char *const db_in[] = {"dy", NULL}, *const db_out[] = {"db", NULL};

const OpDef op_conv2d_dx = {
    .name = "conv2d_dx", .attrs = conv2d_attrs, .nattr = NATTR, .in_names = dx_in,
    .out_names = dx_out, .roles = ROLE_INTERNAL, .emit = conv2d_dx_emit,
    .flops = conv2d_backward_flops,
};
const OpDef op_conv2d_dw = {
    .name = "conv2d_dw", .attrs = conv2d_attrs, .nattr = NATTR, .in_names = dw_in,
    .out_names = dw_out, .roles = ROLE_INTERNAL, .emit = conv2d_dw_emit,
    .flops = conv2d_backward_flops,
};
const OpDef op_conv2d_db = {
    .name = "conv2d_db", .attrs = conv2d_attrs, .nattr = NATTR, .in_names = db_in,
    .out_names = db_out, .roles = ROLE_INTERNAL, .emit = conv2d_db_emit,
};
