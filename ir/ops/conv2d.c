/*
 * conv2d.c: 2-D convolution (cross-correlation, as PyTorch's Conv2d) and its
 * backward kernels.
 *
 *   x (N, C, H, W), w (O, C/G, KH, KW) as PyTorch's Conv2d.weight (OIHW),
 *   bias (O), y (N, O, Ho, Wo) with Ho = (H + PT + PB - (KH-1)*DH - 1) / SH + 1
 *   (the same for W): the window of ir/window.c, whose pads may differ per
 *   side (padding=same: TensorFlow's rule).
 *   G groups: output channel o reads input channels [g*C/G, (g+1)*C/G) with
 *   g = o / (O/G); G == C is a depthwise convolution.
 *
 * Every kernel is a matrix product on the micro-kernels of
 * runtime/nn_gemm.c, over the padded input read in place or the columns of
 * runtime/nn_im2col.c (see "kernels" below).  conv2d is an epilogue anchor: bias and a fused
 * batchnorm or activation are applied to each tile before its single store
 * of y.
 *
 * Results do not depend on the thread count: each thread owns the outputs
 * it sums into, and every sum runs in an order fixed by the code (dw adds
 * the samples in batch order).
 */
#include <limits.h>

#include "emit.h"

enum { A_CHANNELS, A_KERNEL, A_STRIDE, A_PAD, A_BIAS, A_GROUPS, A_DILATION, A_PADDING, NATTR };

static const AttrSpec conv2d_attrs[NATTR] = {
    {"channels", ATTR_INT, NULL},     {"kernel", ATTR_INTS, NULL},
    {"stride", ATTR_INTS, "1"},       {"pad", ATTR_INTS, "0"},
    {"bias", ATTR_BOOL, "true"},      {"groups", ATTR_INT, "1"},
    {"dilation", ATTR_INTS, "1"},     {"padding", ATTR_IDENT, "valid"},
};

static const WindowAttrs conv_window = {A_KERNEL, A_STRIDE, A_DILATION, A_PAD, A_PADDING, false};

static const char *const fwd_in[] = {"x", "w", "bias", NULL};
static const char *const fwd_out[] = {"y", "ws", NULL};

/* Every size a kernel needs, from the node's attributes and its x and y. */
typedef struct Conv {
  int c, h, w;      /* input channels and size */
  int o, ho, wo;    /* output channels and size */
  Window q;         /* kernel, stride, dilation, pads */
  int g;            /* groups */
  int cpg, opg;     /* input and output channels per group */
  long hw, howo;    /* plane sizes; long: a plane may hold 2^31 elements */
  long kk, fsize;   /* KH*KW, and one filter C/G*KH*KW */
} Conv;

static Conv conv_dims(const Node *node, const Shape *x, const Shape *y) {
  Conv v = {.c = x->dim[0], .h = x->dim[1], .w = x->dim[2],
            .o = y->dim[0], .ho = y->dim[1], .wo = y->dim[2],
            .q = window_of(node, &conv_window, x->dim[1], x->dim[2]),
            .g = attr_int(node, A_GROUPS)};
  v.cpg = v.c / v.g;
  v.opg = v.o / v.g;
  v.hw = (long)v.h * v.w;
  v.howo = (long)v.ho * v.wo;
  v.kk = (long)v.q.kh * v.q.kw;
  v.fsize = v.cpg * v.kk;
  return v;
}

/* The window as the runtime's nn_window, a compound literal for a call. */
static const char *window_arg(Emit *e, const Conv *v) {
  const Window *q = &v->q;
  return arena_printf(e->ctx->arena, "&(const nn_window){%d, %d, %d, %d, %d, %d, %d, %d}",
                      q->kh, q->kw, q->sh, q->sw, q->dh, q->dw, q->pt, q->pl);
}

/* The first line of each kernel's body: the window it computes. */
static void emit_window_comment(Emit *e, const Conv *v) {
  emitln(e, "/* %s */", window_str(e->ctx->arena, &v->q));
}

typedef enum { WS_FWD, WS_DX, WS_DW } WsKind;
static bool conv_workspace(Graph *g, Node *node, const Conv *v, WsKind kind);

/* ---- shape rule ---------------------------------------------------------- */

static bool check_attrs(Graph *g, const Node *node) {
  static const int positive[] = {A_CHANNELS, A_GROUPS};
  for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++) {
    int a = positive[i], v = attr_int(node, a);
    if (v <= 0) {
      error_at(g->ctx, node->attr[a].loc, "conv2d: %s must be positive, got %d",
               conv2d_attrs[a].name, v);
      return false;
    }
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

static bool conv2d_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  if (x->shape.rank != 3) {
    error_at(g->ctx, node->loc, "conv2d: input must be (C, H, W), got %s",
             shape_str(g->ctx->arena, &x->shape));
    return false;
  }
  int c = x->shape.dim[0], h = x->shape.dim[1], w = x->shape.dim[2];
  Window q;
  long ho, wo;
  if (!check_attrs(g, node) || !check_groups(g, node, c) ||
      !window_check(g, node, &conv_window, h, w, &q, &ho, &wo))
    return false;
  int o = attr_int(node, A_CHANNELS), groups = attr_int(node, A_GROUPS);
  Shape ws = shape_of(4, o, c / groups, q.kh, q.kw), ys = shape_of(3, o, (int)ho, (int)wo);
  if (!check_shape(g, node, ws) || !check_shape(g, node, ys))
    return false;
  long kk = (long)q.kh * q.kw;
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
  return conv_workspace(g, node, &v, WS_FWD);
}

/* ---- kernels ------------------------------------------------------------- */

/* Every kernel is a product per sample and group on the micro-kernels of
 * runtime/nn_gemm.c (see docs/design.md, "Kernels"), with R = C/G*KH*KW taps
 * and P = Ho*Wo output pixels:
 *
 *   forward  y_g (O/G, P) = w_g (O/G, R) . col_g (R, P)
 *   dx       stride and dilation 1: a forward convolution of dy with the
 *            filters transposed and flipped and pads K-1-pad per side (no
 *            col2im, no scatter); otherwise col_g (R, P) = w_g^T . dy_g,
 *            then col2im
 *   dw       dw_g (O/G, R) = sum over samples of dy_g (O/G, P) . col_g^T
 *
 * The filters are packed once per call into NN_MR-row panels.  The columns
 * are never stored for stride 1 and a square kernel of dilation 1 (the
 * micro-kernel's taps): the input is padded and flattened with wp = W + PL
 * + PR pixels per row (nn_pad_planes), and the micro-kernels read each
 * tap's NN_NR pixels in place; outputs are computed for wp pixels per row
 * and the last wp - Wo of each are dropped.  For any other window the
 * forward packs each NN_NR-pixel panel of columns (nn_pack_cols) and dw
 * writes the columns of a chunk of samples (im2col).  The loops are shared
 * among the threads of the caller's region (at most --threads: the slots
 * of scratch the workspace holds); a thread owns each output tile and the
 * code alone fixes every summation order, so results do not depend on the
 * thread count. */

static long col_reals(const Conv *v) { return (long)v->c * v->kk * v->howo; }

/* Stride-1 products read their padded input in place; measured against
 * packed columns (docs/performance.md), in place was as fast on 64-channel
 * 32x32 layers and 1.5x faster on resnet20 (whose small planes make many
 * short runs to pack).  dw does not: its dot products along the pixels
 * read the windows unaligned, and written columns were 1.1-1.2x faster. */
static bool in_place(const Conv *v) {
  const Window *q = &v->q;   /* the micro-kernel's taps are a square of dilation 1 */
  return q->sh == 1 && q->sw == 1 && q->kh == q->kw && q->dh == 1 && q->dw == 1;
}

/* The padded, flattened input of one group: cpg planes of (H + PT + PB) x wp,
 * then a tail of zeros for the last panel's reach past the last plane. */
static long pad_wp(const Conv *v) { return (long)v->w + v->q.pl + v->q.pr; }
static long pad_plane(const Conv *v) { return ((long)v->h + v->q.pt + v->q.pb) * pad_wp(v); }
static long pad_tail(const Conv *v) { return NN_NR + v->q.kw; }
static long pad_reals(const Conv *v, int channels) {
  return channels * pad_plane(v) + pad_tail(v);
}
static long flat_pixels(const Conv *v) { return (long)v->ho * pad_wp(v); }   /* Ho x wp */

/* The dx of a stride-1 convolution is itself a convolution: of dy (O
 * channels, Ho x Wo) with pads KH-1-PT above, KH-1-PB below (KW-1-PL and
 * KW-1-PR at the sides) back to H x W, with the filters w'(c, o, kh, kw) =
 * w(o, c, KH-1-kh, KW-1-kw) in groups of O/G inputs and C/G outputs. */
static bool dx_as_conv(const Conv *v) {
  const Window *q = &v->q;
  return q->sh == 1 && q->sw == 1 && q->dh == 1 && q->dw == 1 && q->pt < q->kh &&
         q->pb < q->kh && q->pl < q->kw && q->pr < q->kw;
}

static Conv dx_conv(const Conv *v) {
  Conv t = *v;
  t.c = v->o, t.h = v->ho, t.w = v->wo, t.o = v->c, t.ho = v->h, t.wo = v->w;
  t.q.pt = v->q.kh - 1 - v->q.pt, t.q.pb = v->q.kh - 1 - v->q.pb;
  t.q.pl = v->q.kw - 1 - v->q.pl, t.q.pr = v->q.kw - 1 - v->q.pr;
  t.cpg = v->opg, t.opg = v->cpg;
  t.hw = v->howo, t.howo = v->hw, t.fsize = v->opg * v->kk;
  return t;
}

/* The forward product's workspace: G * MT filter panels of NN_MR rows,
 * then per thread slot the padded input of one group (in place) or one
 * R x NN_NR column panel. */
static int fwd_mt(const Conv *v) { return (v->opg + NN_MR - 1) / NN_MR; }

static long fwd_panels_reals(const Conv *v) {
  return (long)v->g * fwd_mt(v) * NN_MR * v->fsize;
}

static long fwd_pixels(const Conv *v) { return in_place(v) ? flat_pixels(v) : v->howo; }

/* Per-thread scratch.  A kernel whose shared loop has at most `items`
 * iterations (at the largest batch) keeps min(items, --threads) slots, and
 * a thread indexes its slot by its number.  The caller's region can have
 * more threads than that (up to --threads); dealt one iteration at a time
 * in thread order (schedule(static, 1)), the loop then gives iterations
 * only to threads numbered below `items`.  Otherwise each thread gets one
 * block of iterations (schedule(static)). */
static int slots(const Graph *g, long items) {
  return items < g->max_threads ? (int)items : g->max_threads;
}

static void emit_slot_for(Emit *e, const Graph *g, long items, bool collapse) {
  emit_omp(e, arena_printf(e->ctx->arena, "for %sschedule(static%s)", collapse ? "collapse(2) " : "",
                           items < g->max_threads ? ", 1" : ""));
}

static long fwd_items(const Conv *v, const Graph *g) {
  return (long)g->max_batch * v->g * ((fwd_pixels(v) + NN_NR - 1) / NN_NR);
}

static long fwd_slot_reals(const Conv *v) {
  return in_place(v) ? pad_reals(v, v->cpg) : v->fsize * NN_NR;
}

/* Winograd F(4x4, 3x3) (runtime/nn_winograd.c): 3x3, stride 1, dilation
 * 1, one group, as many pad rows above as pad columns on the left (its
 * input copy pads the plane by one count, pt == pl, before it: the pads
 * below and on the right follow from the output size);
 * output tiles of 4x4 pixels, NN_NR tiles of the batch per panel.  It
 * needs 36 products of K = C per panel where the direct product needs 9
 * per NN_NR pixels.  The transforms cost in proportion to C + O per tile,
 * the products to C x O: about as much as the products at 16 channels, a
 * sixteenth at 256.  So it is chosen when its products, weighted by 1 +
 * 8/C + 8/O, need fewer micro-kernel steps than the direct product, and
 * both C and O are at least 8. */
static long wino_tiles(const Conv *v) { return (long)((v->ho + 3) / 4) * ((v->wo + 3) / 4); }

static long wino_panels(const Conv *v, int batch) {
  return (batch * wino_tiles(v) + NN_NR - 1) / NN_NR;
}

static bool wino_window(const Conv *v, const Graph *g) {
  const Window *q = &v->q;
  return !g->no_winograd && !g->memory_first && q->kh == 3 && q->kw == 3 && q->sh == 1 &&
         q->sw == 1 && q->dh == 1 && q->dw == 1 && q->pt == q->pl && v->g == 1 && v->c >= 8 &&
         v->o >= 8;
}

static double wino_weight(const Conv *v) { return 1 + 8.0 / v->c + 8.0 / v->o; }

static bool use_winograd(const Conv *v, const Graph *g) {
  if (!wino_window(v, g))
    return false;
  double direct = 9.0 * g->max_batch * ((flat_pixels(v) + NN_NR - 1) / NN_NR);
  return 36.0 * wino_panels(v, g->max_batch) * wino_weight(v) < direct;
}

static bool reads_baked(const Graph *g, const Node *node, OpKind op);
static bool conv2d_split_constant(Graph *g, int id);

/* Its workspace: the transformed filters, 36 x MT panels of NN_MR rows by
 * C, then per thread slot the transformed input of one panel (C x
 * WINO_VC), its 36 products for one row panel (36 x NN_MR x NN_NR), one
 * row's 4x4 outputs (16 x NN_NR) and a zero row (wino_pad_reals). */
static long wino_u_reals(const Conv *v) { return 36L * fwd_mt(v) * NN_MR * v->c; }

/* The transformed input of a panel as the products read it: position xi of
 * channel c's tiles at v + c * WINO_VC + xi * NN_NR, so that the transform
 * writes a channel's 36 rows in one contiguous run (a copy of them was 16%
 * of its time).  A product reads one row per channel, WINO_VC apart: 37
 * rows rather than 36 spread them over all of L1's sets (a stride of 36
 * rows of NN_NR reals put them in a quarter of them). */
#define WINO_VC (37L * NN_NR)

/* The zero row that nn_wino_input (w reals) and nn_wino_dy (wo) read for
 * the rows above and below a plane, in whole NN_NR (so that the next
 * thread's slot starts as aligned as the first). */
static long wino_pad_reals(const Conv *v) {
  long row = v->w > v->wo ? v->w : v->wo;
  return (row + NN_NR - 1) / NN_NR * NN_NR;
}

static long wino_slot_reals(const Conv *v) {
  return v->c * WINO_VC + 36L * NN_MR * NN_NR + 16L * NN_NR + wino_pad_reals(v);
}

/* Depthwise (one input channel per group, G > 1): direct loops over each
 * output plane, tap by tap, no workspace; the product's NN_MR filter rows
 * would hold one filter each. */
static bool depthwise(const Conv *v) { return v->cpg == 1 && v->g > 1; }

/* Pointwise at --batch 1 or under --memory-budget (1x1, stride 1, no pads,
 * one group): y (O, P) = w (O, C) . x (C, P) with both operands read in
 * place, no workspace: memory first.  The last row tile
 * (column panel) starts NN_MR (NN_NR) before the edge, so that every read is
 * inside the matrix, and stores only what the previous ones did not; fewer
 * than NN_MR filters are packed, a plane under one panel is copied.  (At
 * larger batches the in-place product's copy of each sample's input into a
 * contiguous slot pays: measured 1.2x faster on 64 channels of 32x32.) */
static bool pointwise(const Conv *v, const Graph *g) {
  const Window *q = &v->q;
  return workspace_free(g) && q->kh == 1 && q->kw == 1 && q->sh == 1 &&
         q->sw == 1 &&
         q->pt == 0 && q->pb == 0 && q->pl == 0 && q->pr == 0 && v->g == 1;
}

/* A 1x1 window of stride 1 without pads: the im2col columns are x itself
 * (each sample's channel planes in order), so dw reads x in place. */
static bool columns_are_x(const Conv *v) {
  const Window *q = &v->q;
  return q->kh == 1 && q->kw == 1 && q->sh == 1 && q->sw == 1 && q->pt == 0 && q->pb == 0 &&
         q->pl == 0 && q->pr == 0;
}

static long pw_pack_reals(const Conv *v) { return v->o < NN_MR ? (long)NN_MR * v->c : 0; }
static long pw_slot_reals(const Conv *v) { return v->howo < NN_NR ? (long)v->c * NN_NR : 0; }
static long pw_items(const Conv *v, const Graph *g) {
  return (long)g->max_batch * ((v->howo + NN_NR - 1) / NN_NR);
}

/* Pixel rows (batch 1): y^T (P, O) = col^T (P, R) . w^T (R, O), the output
 * pixels as the micro-kernel's NN_MR rows and the filters as its NN_NR
 * columns, packed into CT panels of NN_NR filters (at compile time when the
 * weights are baked).  The rows come from x for a 1x1 window of stride 1
 * without pads (A(p, c) = x[c * P + p]), else from the columns, which
 * im2col writes whole (R x P) once per call; either is packed once per
 * call into tiles of NN_MR pixels (k-major, the last tile's missing pixels
 * zero), which every panel then reads: read down its columns in place, a
 * cache line per tap, A held the micro-kernel at 77 GFLOP/s on Zen 3
 * against 95 packed, and ResNet-50's 7x7 layers took 1.3-1.4x the time.
 * (Packing the columns tile by tile straight from x, NN_MR pixels a call,
 * made vgg_small's batch 1 1.1x slower than without pixel rows.)  A thread
 * owns panels of filters and runs every pixel tile through each, so that a
 * panel (R x NN_NR) streams from L2 (or, deep, a block of it: rows_depth).
 * Chosen when it needs 5% fewer micro-kernel
 * tiles, its columns counted in, than the product with the filters as
 * rows: on small planes, whose pixels fill few panels of NN_NR (ResNet-50's
 * 7x7 and 14x14 layers: 49 pixels are 2 panels of 32, 23% of them padding,
 * but 9 tiles of 6, 9%). */
static long rows_rt(const Conv *v) { return (v->howo + NN_MR - 1) / NN_MR; }
static long rows_ct(const Conv *v) { return (v->o + NN_NR - 1) / NN_NR; }
static bool rows_in_place(const Conv *v) { return columns_are_x(v) && v->howo >= NN_MR; }
static long rows_panels_reals(const Conv *v) { return rows_ct(v) * NN_NR * v->fsize; }
/* The rows read from columns im2col wrote whole (R x P), unless the plane
 * is under one tile: then one packed tile. */
static bool rows_im2col(const Conv *v) { return !rows_in_place(v) && v->howo >= NN_MR; }
static long rows_cols_reals(const Conv *v) {
  return rows_in_place(v) ? 0 : rows_im2col(v) ? v->fsize * v->howo : (long)NN_MR * v->fsize;
}

/* The depth R goes in blocks of rows_depth() taps, every pixel tile through
 * a block before the next, when the rows of A (P x R) and a panel (R x
 * NN_NR) are more than ROWS_BLOCK_BYTES: then a block of both stays in L2
 * while the tiles reuse it, and the tiles' sums wait in a slot of the
 * workspace (the micro-kernel adds a block's sum to what t holds: rounded
 * per block, the same for any thread count).  Unblocked, ResNet-50's 7x7
 * layers read each panel (590 KB in layer4's 3x3 convolutions, over Zen 3's
 * 512 KB L2) from L3 again for every one of their 9 tiles; blocked, three
 * such layers took 0.83-0.88x the time (blocks of 192 to 800 taps alike,
 * 1600 worse). */
enum { ROWS_BLOCK_BYTES = 256 << 10 };

static long rows_depth(const Conv *v, const Graph *g) {
  long esize = real_size(g->dtype), most = ROWS_BLOCK_BYTES / esize;
  long kc = most / (v->howo + NN_NR) / 32 * 32;
  if (kc < 32)
    kc = 32;
  return rows_rt(v) > 1 && (v->howo + NN_NR) * v->fsize > most && kc < v->fsize ? kc : v->fsize;
}

static long rows_packed_reals(const Conv *v) {
  return v->howo >= NN_MR ? rows_rt(v) * NN_MR * v->fsize : 0;
}

static long rows_sums_reals(const Conv *v, const Graph *g) {
  return rows_depth(v, g) < v->fsize
             ? (long)slots(g, rows_ct(v)) * rows_rt(v) * NN_MR * NN_NR : 0;
}

/* The micro-kernel tiles per tap of the product with the filters as rows. */
static long filter_rows_tiles(const Conv *v) {
  return (long)fwd_mt(v) * ((fwd_pixels(v) + NN_NR - 1) / NN_NR);
}

/* (conv_kernel asks wino_rows first.) */
static bool pixel_rows(const Conv *v, const Graph *g) {
  if (g->max_batch != 1 || g->memory_first || v->g != 1 || use_winograd(v, g))
    return false;
  /* micro-kernel tiles per tap, and packing: a packed value costs about a
   * twelfth of a tile's step (1 of its 12 cycles), P / 12 per tap */
  double pack = v->howo / 12.0;
  double as_rows = (double)filter_rows_tiles(v);
  double as_cols = (double)rows_rt(v) * rows_ct(v);
  return 20 * (as_cols + (rows_in_place(v) ? 0 : pack)) < 19 * (as_rows + (in_place(v) ? 0 : pack));
}

/* Winograd as pixel rows (batch 1, at most WINO_ROWS_MOST tiles: one panel
 * of the input transform): the 36 products M_xi^T (tiles, O) = V_xi^T
 * (tiles, C) . U_xi^T (C, O), the tiles as the micro-kernel's rows, read in
 * place from the transformed panel (A(i, c) = v[(xi * C + c) * NN_NR + i]),
 * and U_xi^T in panels of NN_NR filters (transformed at compile time when
 * baked).  A tile of M holds NN_MR tiles x NN_NR filters for one xi; the
 * 36 of them are what nn_wino_output takes, the filters in its lanes.  On
 * ResNet-50's 14x14 planes (16 tiles) the filters as rows leave half of
 * every panel of 32 tiles empty: 43 x 36 products of K = 256 against 3 x 8
 * x 36. Chosen, against the best direct kernel, as use_winograd, on planes
 * of more than NN_MR tiles: with one row of tiles every panel of U^T, 4x
 * the filters' bytes, is read once per call, and on ResNet-50's 7x7 layers
 * (4 tiles, 38 MB of U^T) that memory traffic took as long as the direct
 * kernel's extra multiply-adds (2.7 against 2.9 ms). */
enum { WINO_ROWS_MOST = 5 * NN_MR };   /* rows read stay inside the panel's NN_NR lanes */

static long wino_rows_rt(const Conv *v) { return (wino_tiles(v) + NN_MR - 1) / NN_MR; }

static bool wino_rows(const Conv *v, const Graph *g) {
  if (g->max_batch != 1 || !wino_window(v, g) || wino_tiles(v) <= NN_MR ||
      wino_tiles(v) > WINO_ROWS_MOST)
    return false;
  long as_rows = filter_rows_tiles(v), as_cols = rows_rt(v) * rows_ct(v);
  long direct = as_cols < as_rows ? as_cols : as_rows;
  return 36.0 * wino_rows_rt(v) * rows_ct(v) * wino_weight(v) < 9.0 * direct;
}

/* Its workspace: U^T (36 x CT panels of C x NN_NR), the transformed input
 * (36 x C x NN_NR), the plane nn_wino_input pads, then per thread the 36
 * tiles of M of every row tile (each block of U serves all the rows before
 * the next is read) and the 4x4 outputs of one tile. */
static long wino_rows_u_reals(const Conv *v) { return 36L * rows_ct(v) * v->c * NN_NR; }
static long wino_rows_v_reals(const Conv *v) { return v->c * WINO_VC; }
static long wino_rows_slot_reals(const Conv *v) {
  return wino_rows_rt(v) * 36L * NN_MR * NN_NR + 16L * NN_NR;
}

/* Which kernel computes the forward product of v, or (dx) the dx of a
 * stride-1 convolution as the product of dx_conv(): K_DIRECT is the direct
 * loops forward and, for dx, w * dy added tap by tap (emit_dx_scatter);
 * neither needs a workspace.  The workspace (fwd_reals), the emitters and
 * --report all follow this one choice. */
typedef enum { K_DIRECT, K_ROWS, K_WINO_ROWS, K_POINTWISE, K_WINOGRAD, K_PRODUCT } ConvKernel;

static ConvKernel conv_kernel(const Conv *v, const Graph *g, bool dx) {
  if (!dx && wino_rows(v, g))
    return K_WINO_ROWS;
  if (!dx && pixel_rows(v, g))
    return K_ROWS;
  if (pointwise(v, g))
    return K_POINTWISE;
  if (g->memory_first || (!dx && depthwise(v)))
    return K_DIRECT;
  if (use_winograd(v, g))
    return K_WINOGRAD;
  return K_PRODUCT;
}

static long fwd_reals(const Conv *v, const Graph *g, bool dx) {
  switch (conv_kernel(v, g, dx)) {
  case K_DIRECT:
    return 0;
  case K_ROWS:
    return rows_panels_reals(v) + rows_cols_reals(v) + rows_packed_reals(v) +
           rows_sums_reals(v, g);
  case K_WINO_ROWS:
    return wino_rows_u_reals(v) + wino_rows_v_reals(v) + NN_MR + wino_pad_reals(v) +
           slots(g, rows_ct(v)) * wino_rows_slot_reals(v);
  case K_POINTWISE:
    return pw_pack_reals(v) + (long)slots(g, pw_items(v, g)) * pw_slot_reals(v);
  case K_WINOGRAD:
    return wino_u_reals(v) + (long)slots(g, wino_panels(v, g->max_batch)) * wino_slot_reals(v);
  case K_PRODUCT:
    break;
  }
  return fwd_panels_reals(v) + (long)slots(g, fwd_items(v, g)) * fwd_slot_reals(v);
}

/* dx through columns (stride > 1) and dw of stride > 1: chunks of samples
 * whose columns fit in CHUNK_REALS (at least one sample). */
enum { CHUNK_REALS = 1 << 18 };

static int chunk_of(long per_sample, int max_batch) {
  long nb = CHUNK_REALS / per_sample;
  return nb < 1 ? 1 : nb > max_batch ? max_batch : (int)nb;
}

static int col_chunk(const Conv *v, int max_batch) { return chunk_of(col_reals(v), max_batch); }

static long dxcol_reals(const Conv *v, const Graph *g) {
  long panels = (long)v->g * ((v->fsize + NN_MR - 1) / NN_MR) * NN_MR * v->opg;
  return panels + (long)g->max_threads * v->opg * NN_NR +
         (long)col_chunk(v, g->max_batch) * col_reals(v);
}

static int dw_chunk(const Conv *v, int max_batch) { return chunk_of(col_reals(v), max_batch); }

/* Winograd dw: per chunk of wino_chunk() tiles (a whole number of panels)
 * the transformed input V (36 x C x chunk) and dy (36 x chunk x O,
 * tile-major), then dU^T (36 x C x O) += V . dY^T, a product per xi of K =
 * the chunk's tiles; at the end dw = G^T dU G.  A chunk holds what fits in
 * WINO_CHUNK_REALS. */
enum { WINO_CHUNK_REALS = 1 << 19 };

static long wino_chunk(const Conv *v, int max_batch) {
  long per_panel = 36L * (v->c + v->o) * NN_NR, most = wino_panels(v, max_batch);
  long panels = WINO_CHUNK_REALS / per_panel;
  return (panels < 1 ? 1 : panels > most ? most : panels) * NN_NR;
}

/* With O filters at most half a micro-kernel tile's NN_NR columns, that
 * tile would compute twice what is kept (resnet20's 16 -> 16 layers ran
 * their dw at 57% of the peak, the forward at 140%): such a layer's dU is
 * NN_DR x NN_DR dot products (nn_ukr_nt) of rows of the transformed dy by
 * rows of the transformed x along the chunk's tiles (emit_winograd_dw_dots). */
static bool wino_dw_dots(const Conv *v) { return 2 * v->o <= NN_NR; }

/* dU^T in micro-kernel tiles: 36 x CT x OT tiles of NN_MR x NN_NR; with
 * dots, dU (36 x O x C, xi wino_dus() reals apart). */
static int wino_ct(const Conv *v) { return (v->c + NN_MR - 1) / NN_MR; }
static int wino_ot(const Conv *v) { return (v->o + NN_NR - 1) / NN_NR; }
static long wino_dus(const Conv *v) { return ((long)v->o * v->c + NN_NR - 1) / NN_NR * NN_NR; }
static long wino_du_reals(const Conv *v) {
  return wino_dw_dots(v) ? 36L * wino_dus(v) : 36L * wino_ct(v) * wino_ot(v) * NN_MR * NN_NR;
}

static long wino_dw_reals(const Conv *v, const Graph *g) {
  return wino_du_reals(v) + 36L * (v->c + v->o) * wino_chunk(v, g->max_batch) + NN_NR +
         (long)g->max_threads * wino_pad_reals(v);
}

/* Gives node (forward, dx or dw of a convolution with dims v) its
 * workspace. */
static bool conv_workspace(Graph *g, Node *node, const Conv *v, WsKind kind) {
  Conv t = dx_conv(v);
  long reals = kind == WS_FWD ? fwd_reals(v, g, false)
               : kind == WS_DW ? (use_winograd(v, g) ? wino_dw_reals(v, g)
                                  : columns_are_x(v) ? 0
                                                     : (long)dw_chunk(v, g->max_batch) * col_reals(v))
               : dx_as_conv(v) ? fwd_reals(&t, g, true)
               : g->memory_first ? 0
                               : dxcol_reals(v, g);
  if (reals > INT_MAX) {
    error_at(g->ctx, node->loc, "conv2d: the workspace (%ld values) is too large", reals);
    return false;
  }
  node_workspace(g, node, reals);
  return true;
}

/* "const int mr = ...": the rows of the tile from o0 that lie in group g
 * (of `per` rows), at most `most`. */
static void emit_mr(Emit *e, const char *o0, int per, const char *most) {
  emitln(e, "const int mr = (g + 1) * %d - %s < %s ? (g + 1) * %d - %s : %s;", per, o0, most,
         per, o0, most);
}

/* Packs the filters of convolution v into G * MT panels of NN_MR rows at
 * ws: A(i, r) of group g = w(o0 + i, r), or with `flip` (dx) the filters of
 * the convolution v is the dx of, transposed and flipped. */
static void emit_filter_panels(Emit *e, const Conv *v, bool flip) {
  int mt = fwd_mt(v);
  emit_omp(e, "for");
  emitln(e, "for (int mt = 0; mt < %d; mt++) {", v->g * mt);
  emitln(e, "const int g = mt / %d, o0 = g * %d + mt %% %d * NN_MR;", mt, v->opg, mt);
  emit_mr(e, "o0", v->opg, "NN_MR");
  emitln(e, "real *const ap = ws + (long)mt * %ld;", NN_MR * v->fsize);
  if (!flip) {
    emitln(e, "nn_pack_a(ap, w + (long)o0 * %ld, %ld, 1, mr, %ld);", v->fsize, v->fsize,
           v->fsize);
  } else {   /* w'(c, (o, tap)) = w(g*O/G + o, c - g*C/G, KK-1-tap), c = o0 + i */
    emitln(e, "for (long r = 0; r < %ld; r++) {", v->fsize);
    emitln(e, "const long from = (long)(g * %d + r / %ld) * %ld + %ld - r %% %ld;", v->cpg,
           v->kk, (long)v->opg * v->kk, v->kk - 1, v->kk);
    emitln(e, "for (int i = 0; i < NN_MR; i++)");
    emitln(e, "    ap[r * NN_MR + i] = i < mr ? w[from + (long)(o0 - g * %d + i) * %ld] : 0;",
           v->opg, v->kk);
    emitln(e, "}");
  }
  emitln(e, "}");
}

/* The forward product of convolution v from input `x` to output `y` (node's
 * epilogue applied when `fused`); `flip`: the filters are those of the
 * convolution v is the dx of. */
static void emit_conv_product(Emit *e, const Graph *g, const Node *node, const Conv *v,
                              const char *x, const char *y, bool flip, bool fused) {
  int mt = fwd_mt(v);
  long pixels = fwd_pixels(v), pt = (pixels + NN_NR - 1) / NN_NR, wp = pad_wp(v);
  bool bias = fused && node->nin > 2, baked = !flip && reads_baked(g, node, OP_CONV2D_PANELS);
  emit_engine(e, false);
  emitln(e, "{");
  emitln(e, "real *const slot = ws + %ldL + (long)nn_thread_id() * %ld;",
         baked ? 0 : fwd_panels_reals(v), fwd_slot_reals(v));
  if (in_place(v))
    emitln(e, "long padded = -1;   /* the (sample, group) in slot */");
  if (baked) {
    emitln(e, "const real *const pa = w;   /* packed at compile time */");
  } else {
    emitln(e, "const real *const pa = ws;");
    emit_filter_panels(e, v, flip);
  }
  emit_slot_for(e, g, fwd_items(v, g), true);
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "for (int gp = 0; gp < %ld; gp++) {", v->g * pt);
  emitln(e, "const int g = gp / %ld;", pt);
  emitln(e, "const long q0 = (long)(gp %% %ld) * NN_NR;", pt);
  const char *from = arena_printf(e->ctx->arena, "%s + ((long)b * %d + (long)g * %d) * %ld", x,
                                  v->c, v->cpg, v->hw);
  /* The columns that are output pixels, as runs: columns [rj0, rj1) are
   * the pixels from rp on.  Contiguous stores, so the epilogue vectorizes
   * even where the ISA has no masked store (SSE2, gcc -O2). */
  emitln(e, "int nrun = 0, rj0[NN_NR], rj1[NN_NR];");
  emitln(e, "long rp[NN_NR];");
  if (in_place(v)) {
    emitln(e, "if (padded != (long)b * %d + g) {", v->g);
    emitln(e, "padded = (long)b * %d + g;", v->g);
    emitln(e, "nn_pad_planes(slot, %s, %d, %d, %d, %d, %d, %ld, %ld, %ld);", from, v->cpg, v->h,
           v->w, v->q.pt, v->q.pl, wp, pad_plane(v), pad_tail(v));
    emitln(e, "}");
    emitln(e, "for (int j = 0; j < NN_NR; j++) {");
    emitln(e, "const long q = q0 + j, oh = q / %ld, ow = q %% %ld;", wp, wp);
    emitln(e, "if (q >= %ld || ow >= %d)", pixels, v->wo);
    emitln(e, "    continue;");
    emitln(e, "if (nrun == 0 || rj1[nrun - 1] != j)");
    emitln(e, "    rj0[nrun] = j, rp[nrun] = oh * %d + ow, nrun++;", v->wo);
    emitln(e, "rj1[nrun - 1] = j + 1;");
    emitln(e, "}");
  } else {
    emitln(e, "const int np = %ld - q0 < NN_NR ? (int)(%ld - q0) : NN_NR;", pixels, pixels);
    emitln(e, "nn_pack_cols(slot, NN_NR, %s, %d, %d, %d, %s, %d, q0, np);", from, v->cpg, v->h, v->w,
           window_arg(e, v), v->wo);
    emitln(e, "rj0[0] = 0, rj1[0] = np, rp[0] = q0, nrun = 1;");
  }
  emitln(e, "for (int mt = g * %d; mt < (g + 1) * %d; mt++) {", mt, mt);
  emitln(e, "const int o0 = g * %d + mt %% %d * NN_MR;", v->opg, mt);
  emit_mr(e, "o0", v->opg, "NN_MR");
  emitln(e, "real t[NN_MR * NN_NR];");
  if (in_place(v))
    emitln(e, "ukr(t, pa + (long)mt * %ld, 1, NN_MR, slot + q0, %d, %d, %ld, %ld, 0);", NN_MR * v->fsize,
           v->cpg, v->q.kh, pad_plane(v), wp);
  else
    emitln(e, "ukr(t, pa + (long)mt * %ld, 1, NN_MR, slot, %ld, 1, NN_NR, 0, 0);", NN_MR * v->fsize,
           v->fsize);
  emitln(e, "for (int i = 0; i < mr; i++) {");
  emitln(e, "const int o = o0 + i;");
  emitln(e, "const long yo = ((long)b * %d + o) * %ld;", v->o, v->howo);
  emitln(e, "for (int r = 0; r < nrun; r++) {");
  emitln(e, "const long yr = yo + rp[r] - rj0[r];");
  emitln(e, "for (int j = rj0[r]; j < rj1[r]; j++) {");
  emitln(e, "const long yi = yr + j;");
  emitln(e, "const real acc = t[i * NN_NR + j]%s;", bias ? " + bias[o]" : "");
  emitln(e, "%s[yi] = %s;", y, fused ? epilogue_expr(e, node, "acc", "o", "yi") : "acc");
  for (int k = 0; k < 7; k++)
    emitln(e, "}");
}

/* The transformed filters U of convolution v at ws, named `name`: the
 * filters padded with zeros to whole panels, as NN_MR-row panels (A(o, c)
 * at (xi * MT + o / NN_MR) * NN_MR * C + c * NN_MR + o % NN_MR) or with
 * `cols` NN_NR-column ones (B(c, o) at ((xi * CT + o / NN_NR) * C + c) *
 * NN_NR + o % NN_NR); `flip`: the filters of the convolution v is the dx
 * of. */
static void emit_wino_filters(Emit *e, const Conv *v, const char *name, bool flip, bool cols) {
  long up = cols ? rows_ct(v) * NN_NR * v->c : (long)fwd_mt(v) * NN_MR * v->c;
  int per = cols ? NN_NR : NN_MR;
  const char *pn = cols ? "NN_NR" : "NN_MR";
  emitln(e, "real *const %s = ws;", name);
  emit_omp(e, "for");
  emitln(e, "for (long q0 = 0; q0 < %ld; q0 += NN_NR) {   /* NN_NR of U's lanes at a time */", up);
  emitln(e, "const real *g[NN_NR];");
  emitln(e, "const int n = %ld - q0 < NN_NR ? (int)(%ld - q0) : NN_NR;", up, up);
  emitln(e, "for (int k = 0; k < n; k++) {");
  emitln(e, "const long q = q0 + k;");
  emitln(e, "const int o = (int)(q / %ld) * %s + (int)(q %% %s), c = (int)(q / %s %% %d);",
         (long)per * v->c, pn, pn, pn, v->c);
  if (!flip)
    emitln(e, "g[k] = o < %d ? w + ((long)o * %d + c) * 9 : NULL;", v->o, v->c);
  else   /* w'(o, c) = w(c, o) rotated by 180 degrees */
    emitln(e, "g[k] = o < %d ? w + ((long)c * %d + o) * 9 : NULL;", v->o, v->o);
  emitln(e, "}");
  emitln(e, "nn_wino_filters(%s + q0, %ld, g, n, %d);", name, up, flip);
  emitln(e, "}");
}

/* One output of emit_winograd's stores: `value` (yt's) at y0 + `at` in
 * y, through the epilogue unless it went over yt already (early). */
static void emit_wino_store(Emit *e, const Node *node, const char *y, const char *value,
                            const char *at, bool early, bool bias) {
  emitln(e, "const long yi = y0 + %s;", at);
  if (early) {
    emitln(e, "%s[yi] = %s;", y, value);
  } else {
    emitln(e, "const real acc = %s%s;", value, bias ? " + bias[o]" : "");
    emitln(e, "%s[yi] = %s;", y, epilogue_expr(e, node, "acc", "o", "yi"));
  }
}

/* The Winograd form of emit_conv_product: per panel of NN_NR tiles, the
 * input transform of every channel, then per NN_MR output channels the 36
 * products and the output transform of each, stored through the epilogue
 * (only the pixels that exist: the last row and column of tiles may stick
 * out of the image). */
static void emit_winograd(Emit *e, const Graph *g, const Node *node, const Conv *v,
                          const char *x, const char *y, bool flip, bool fused) {
  int mt = fwd_mt(v), tw = (v->wo + 3) / 4, th = (v->ho + 3) / 4;
  long tiles = wino_tiles(v);
  bool bias = fused && node->nin > 2, baked = !flip && reads_baked(g, node, OP_CONV2D_WINO_U);
  emit_engine(e, false);
  emitln(e, "{");
  emitln(e, "real *const v = ws + %ldL + (long)nn_thread_id() * %ld;", baked ? 0 : wino_u_reals(v),
         wino_slot_reals(v));
  emitln(e, "real *const m = v + %ldL, *const yt = m + %ld, *const pad = yt + %d;",
         v->c * WINO_VC, 36L * NN_MR * NN_NR, 16 * NN_NR);
  /* U(xi) panel mt, row i, column c at uf + (xi * MT + mt) * NN_MR * C + c * NN_MR + i */
  if (baked)
    emitln(e, "const real *const uf = w;   /* transformed at compile time */");
  else
    emit_wino_filters(e, v, "uf", flip, false);
  emitln(e, "const long tiles = (long)n * %ld;", tiles);
  emit_slot_for(e, g, wino_panels(v, g->max_batch), false);
  emitln(e, "for (long pn = 0; pn < (tiles + NN_NR - 1) / NN_NR; pn++) {");
  emitln(e, "const long tile0 = pn * NN_NR;");
  emitln(e, "const int nt = tiles - tile0 < NN_NR ? (int)(tiles - tile0) : NN_NR;");
  emitln(e, "nn_wino_input(v, NN_NR, %ld, %s, %ld, %d, %d, %d, %d, %d, %d, tile0, nt, pad);",
         WINO_VC, x, (long)v->c * v->hw, v->c, v->h, v->w, v->q.pt, th, tw);
  emitln(e, "long at[NN_NR];   /* the tile's first output pixel in y, -1 past the batch */");
  emitln(e, "int rows[NN_NR], cols[NN_NR];   /* of its 4x4 pixels, those in the image */");
  emitln(e, "for (int j = 0; j < NN_NR; j++) {");
  emitln(e, "const long tile = tile0 + j, b = tile / %ld;", tiles);
  emitln(e, "const int ty = (int)(tile %% %ld) / %d, tx = (int)(tile %% %ld) %% %d;", tiles, tw,
         tiles, tw);
  emitln(e, "at[j] = j < nt ? b * %ld + (long)ty * %d + tx * 4 : -1;", (long)v->o * v->howo,
         4 * v->wo);
  emitln(e, "rows[j] = %d - 4 * ty < 4 ? %d - 4 * ty : 4;", v->ho, v->ho);
  emitln(e, "cols[j] = %d - 4 * tx < 4 ? %d - 4 * tx : 4;", v->wo, v->wo);
  emitln(e, "}");
  /* Tiles of a row of tiles are consecutive lanes, and their pixels
   * continue each other's rows in y: per row of pixels, a run of len tiles
   * is 4 len contiguous values, stored below as such (where a value at a
   * time was 12% of resnet20's training step).  Only the run's last tile
   * may be cut. */
  emitln(e, "int runs[NN_NR];   /* at a run's first tile: how many tiles continue its rows */");
  emitln(e, "for (int j = 0; j < nt;) {");
  emitln(e, "int len = 1;");
  emitln(e, "while (j + len < nt && cols[j + len - 1] == 4 && rows[j + len] == rows[j] &&");
  emitln(e, "       at[j + len] == at[j] + 4L * len)");
  emitln(e, "    len++;");
  emitln(e, "runs[j] = len;");
  emitln(e, "j += len;");
  emitln(e, "}");
  emitln(e, "for (int mt = 0; mt < %d; mt++) {", mt);
  emitln(e, "const int o0 = mt * NN_MR;");
  emitln(e, "const int mr = %d - o0 < NN_MR ? %d - o0 : NN_MR;", v->o, v->o);
  emitln(e, "for (int xi = 0; xi < 36; xi++)");
  emitln(e, "    ukr(m + xi * NN_MR * NN_NR, uf + ((long)xi * %d + mt) * %ld, 1, NN_MR, "
            "v + xi * NN_NR, %d, 1, %ld, 0, 0);",
         mt, (long)NN_MR * v->c, v->c, WINO_VC);
  emitln(e, "for (int i = 0; i < mr; i++) {");
  emitln(e, "const int o = o0 + i;");
  emitln(e, "nn_wino_output(yt, m + i * NN_NR);");
  /* Bias and an epilogue of the channel alone go over yt first: a loop that
   * vectorizes (the stores below are 4 pixels at a time), and for a ReLU no
   * branch per value in scalar code. */
  bool early = !fused || !epilogue_reads_batched(g, node);
  if (early && (bias || (fused && node->nepilogue > 0))) {
    emitln(e, "for (int k = 0; k < 16 * NN_NR; k++) {");
    emitln(e, "const real acc = yt[k]%s;", bias ? " + bias[o]" : "");
    emitln(e, "yt[k] = %s;", fused ? epilogue_expr(e, node, "acc", "o", "k") : "acc");
    emitln(e, "}");
  }
  /* a run's row a: column c of tile t from lane t of yt's row 4 a + c (an
   * interleave of four vectors) */
  emitln(e, "for (int j = 0; j < nt; j += runs[j]) {");
  emitln(e, "const int len = runs[j], full = cols[j + len - 1] == 4 ? len : len - 1;");
  emitln(e, "for (int a = 0; a < rows[j]; a++) {");
  emitln(e, "const long y0 = at[j] + (long)o * %ld + a * %d;", v->howo, v->wo);
  emitln(e, "const real *const s = yt + a * 4 * NN_NR + j;");
  emitln(e, "for (int t = 0; t < full; t++) {");
  emitln(e, "for (int c = 0; c < 4; c++) {");
  emit_wino_store(e, node, y, "s[c * NN_NR + t]", "4 * t + c", early, bias);
  emitln(e, "}");
  emitln(e, "}");
  emitln(e, "for (int c = 0; full < len && c < cols[j + full]; c++) {");
  emit_wino_store(e, node, y, "s[c * NN_NR + full]", "4 * full + c", early, bias);
  emitln(e, "}");
  emitln(e, "}");
  for (int k = 0; k < 5; k++)
    emitln(e, "}");
}

/* Direct: per (sample, output channel) plane and output row, a row of
 * accumulators on the stack (Wo reals): zeroed, then each input channel of
 * the group and each of its taps in order adds its weight times the input
 * row over the output columns it reaches (a contiguous loop for stride 1),
 * then bias and epilogue, one store per value (so y may be in place of a
 * residual operand, which is read at each index just before).  Each output's sum runs over its channels
 * and taps in a fixed order, whatever the thread count. */
/* Opens the loop over a tap row's kw (its weight wv) and then the loop over
 * the output columns ow whose input column ow * sw + off lies inside the
 * row: the statement that follows is the loop body. */
static void emit_tap_columns(Emit *e, const Conv *v) {
  const Window *q = &v->q;
  emitln(e, "for (int kw = 0; kw < %d; kw++) {", q->kw);
  emitln(e, "const real wv = wc[kh * %d + kw];", q->kw);
  emitln(e, "const int off = kw * %d - %d;   /* iw = ow * %d + off */", q->dw, q->pl, q->sw);
  emitln(e, "const int lo = off < 0 ? (-off + %d) / %d : 0;", q->sw - 1, q->sw);
  emitln(e, "const int reach = off < %d ? (%d - off) / %d + 1 : 0;", v->w, v->w - 1, q->sw);
  emitln(e, "const int hi = reach < %d ? reach : %d;", v->wo, v->wo);
  emitln(e, "for (int ow = lo; ow < hi; ow++)");
}

static void emit_direct(Emit *e, const Node *node, const Conv *v, bool fused) {
  const Window *q = &v->q;
  bool bias = fused && node->nin > 2;
  emitln(e, "(void)ws;");
  emit_omp_for(e, "collapse(2) schedule(static)");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "for (int o = 0; o < %d; o++) {", v->o);
  emitln(e, "const real *const xg = x + ((long)b * %d + (long)(o / %d) * %d) * %ld;", v->c,
         v->opg, v->cpg, v->hw);
  emitln(e, "for (int oh = 0; oh < %d; oh++) {", v->ho);
  emitln(e, "const long yr = ((long)b * %d + o) * %ld + (long)oh * %d;", v->o, v->howo, v->wo);
  emitln(e, "real acc[%d] = {0};", v->wo);
  emitln(e, "for (int c = 0; c < %d; c++) {", v->cpg);
  emitln(e, "const real *const xc = xg + (long)c * %ld, *const wc = w + ((long)o * %d + c) * %ld;",
         v->hw, v->cpg, v->kk);
  emitln(e, "for (int kh = 0; kh < %d; kh++) {", q->kh);
  emitln(e, "const int ih = oh * %d - %d + kh * %d;", q->sh, q->pt, q->dh);
  emitln(e, "if (ih < 0 || ih >= %d)", v->h);
  emitln(e, "    continue;");
  emitln(e, "const real *const xr = xc + (long)ih * %d;", v->w);
  emit_tap_columns(e, v);
  emitln(e, "    acc[ow] += wv * xr[ow * %d + off];", q->sw);
  for (int k = 0; k < 3; k++)
    emitln(e, "}");
  emitln(e, "for (int ow = 0; ow < %d; ow++) {", v->wo);
  emitln(e, "const long yi = yr + ow;");
  emitln(e, "const real a = acc[ow]%s;", bias ? " + bias[o]" : "");
  emitln(e, "y[yi] = %s;", fused ? epilogue_expr(e, node, "a", "o", "yi") : "a");
  emitln(e, "}");
  for (int k = 0; k < 3; k++)
    emitln(e, "}");
}

/* Pointwise (see pointwise()): from `x` to `y`; `flip`: the filters are
 * those of the convolution v is the dx of, read transposed. */
static void emit_pointwise(Emit *e, const Graph *g, const Node *node, const Conv *v,
                           const char *x, const char *y, bool flip, bool fused) {
  long p = v->howo, pack = pw_pack_reals(v), slot = pw_slot_reals(v);
  bool bias = fused && node->nin > 2;
  /* A(o, c) = w[o * C + c], or flipped w[c * O + o] */
  long ars = flip ? 1 : v->c, acs = flip ? v->o : 1;
  emit_engine(e, false);
  if (!pack && !slot)
    emitln(e, "(void)ws;");
  emitln(e, "{");
  if (pack) {
    emit_omp(e, "single");
    emitln(e, "nn_pack_a(ws, w, %ld, %ld, %d, %d);", ars, acs, v->o, v->c);
  }
  if (slot)
    emitln(e, "real *const slot = ws + %ldL + (long)nn_thread_id() * %ld;", pack, slot);
  emit_slot_for(e, g, pw_items(v, g), true);
  emitln(e, "for (int b = 0; b < n; b++) {");   /* n is 1: the loop keeps x's batch layout */
  emitln(e, "for (long q0 = 0; q0 < %ld; q0 += NN_NR) {", p);
  emitln(e, "const real *const xb = %s + (long)b * %ld;", x, (long)v->c * p);
  if (slot) {   /* the plane is narrower than a panel */
    emitln(e, "for (int c = 0; c < %d; c++)", v->c);
    emitln(e, "    for (int j = 0; j < NN_NR; j++)");
    emitln(e, "        slot[c * NN_NR + j] = j < %ld ? xb[(long)c * %ld + j] : 0;", p, p);
    emitln(e, "const long qs = 0;");
  } else {
    emitln(e, "const long qs = q0 + NN_NR <= %ld ? q0 : %ld;", p, p - NN_NR);
  }
  emitln(e, "const int j0 = (int)(q0 - qs), j1 = (int)((q0 + NN_NR < %ld ? q0 + NN_NR : %ld) - qs);",
         p, p);
  const char *bp = slot ? "slot" : "xb + qs";
  long plane = slot ? NN_NR : p;
  emitln(e, "for (int o0 = 0; o0 < %d; o0 += NN_MR) {", v->o);
  emitln(e, "real t[NN_MR * NN_NR];");
  if (pack) {
    emitln(e, "const int os = 0;");
    emitln(e, "ukr(t, ws, 1, NN_MR, %s, %d, 1, %ld, 0, 0);", bp, v->c, plane);
  } else {
    emitln(e, "const int os = o0 + NN_MR <= %d ? o0 : %d;", v->o, v->o - NN_MR);
    emitln(e, "ukr(t, w + (long)os * %ld, %ld, %ld, %s, %d, 1, %ld, 0, 0);", ars, ars, acs, bp,
           v->c, plane);
  }
  emitln(e, "for (int i = o0 - os; i < NN_MR && os + i < %d; i++) {", v->o);
  emitln(e, "const int o = os + i;");
  emitln(e, "const long yr = ((long)b * %d + o) * %ld + qs;", v->o, p);
  emitln(e, "for (int j = j0; j < j1; j++) {");
  emitln(e, "const long yi = yr + j;");
  emitln(e, "const real acc = t[i * NN_NR + j]%s;", bias ? " + bias[o]" : "");
  emitln(e, "%s[yi] = %s;", y, fused ? epilogue_expr(e, node, "acc", "o", "yi") : "acc");
  for (int k = 0; k < 6; k++)
    emitln(e, "}");
}

/* Pixel rows (see pixel_rows()), forward only, the epilogue fused.  The
 * rows of A (x in place, or the columns im2col wrote) are packed tile by
 * tile first (rows_packed_reals), so that the micro-kernel reads NN_MR
 * contiguous values a tap rather than a cache line per tap. */
static void emit_pixel_rows(Emit *e, const Graph *g, const Node *node, const Conv *v) {
  long r = v->fsize, p = v->howo, ct = rows_ct(v), rt = rows_rt(v), kc = rows_depth(v, g);
  bool bias = node->nin > 2, baked = reads_baked(g, node, OP_CONV2D_COL_PANELS);
  bool in_place = rows_in_place(v), tiles = p >= NN_MR;
  long at = baked ? 0 : rows_panels_reals(v), apo = at + rows_cols_reals(v);
  emit_engine(e, false);
  emitln(e, "{");
  if (baked) {
    emitln(e, "const real *const pb = w;   /* packed at compile time */");
  } else {   /* B(r, j) of panel c = w(c * NN_NR + j, r) */
    emitln(e, "real *const pb = ws;");
    emit_omp(e, "for");
    emitln(e, "for (int c = 0; c < %ld; c++)", ct);
    emitln(e, "    nn_pack_b(pb + (long)c * %ld, w + (long)c * %ld, 1, %ld, "
              "%d - c * NN_NR < NN_NR ? %d - c * NN_NR : NN_NR, %ld);",
           NN_NR * r, NN_NR * r, r, v->o, v->o, r);
  }
  if (!in_place)
    emitln(e, "real *const pa = ws + %ldL;", at);
  /* A(i, r) of tile t at ap[(t * R + r) * NN_MR + i], pixels past P zero */
  emitln(e, "real *const ap = %s;", tiles ? arena_printf(e->ctx->arena, "ws + %ldL", apo) : "pa");
  emitln(e, "for (int b = 0; b < n; b++) {");
  const char *xb = arena_printf(e->ctx->arena, "x + (long)b * %ld", (long)v->c * v->hw);
  if (rows_im2col(v)) {   /* col (R, P): A(i, r) = col[r * P + i], like x */
    emit_omp(e, "for");
    emitln(e, "for (int ci = 0; ci < %d; ci++)", v->c);
    emitln(e, "    nn_im2col(pa + (long)ci * %ld, %s + (long)ci * %ld, %d, %d, %s, %d, %d);",
           v->kk * p, xb, v->hw, v->h, v->w, window_arg(e, v), v->ho, v->wo);
  } else if (!in_place) {   /* one tile, packed as such */
    emit_omp(e, "single");
    emitln(e, "nn_pack_cols(pa, NN_MR, %s, %d, %d, %d, %s, %d, 0, %ld);", xb, v->c, v->h, v->w,
           window_arg(e, v), v->wo, p);
  }
  if (tiles) {
    emit_omp(e, "for");
    emitln(e, "for (int t = 0; t < %ld; t++)", rt);
    emitln(e, "    nn_pack_a(ap + (long)t * %ld, %s + t * NN_MR, 1, %ld, "
              "%ld - t * NN_MR < NN_MR ? (int)(%ld - t * NN_MR) : NN_MR, %ld);",
           r * NN_MR, in_place ? xb : "pa", p, p, p, r);
  }
  emit_slot_for(e, g, ct, false);
  emitln(e, "for (int c = 0; c < %ld; c++) {", ct);
  emitln(e, "const int o0 = c * NN_NR, nr = %d - o0 < NN_NR ? %d - o0 : NN_NR;", v->o, v->o);
  if (kc < r) {   /* a block of R for every tile, then the next */
    emitln(e, "real *const sums = ws + %ldL + (long)nn_thread_id() * %ld;",
           apo + rows_packed_reals(v), rt * NN_MR * NN_NR);
    emitln(e, "for (long k0 = 0; k0 < %ld; k0 += %ld) {", r, kc);
    emitln(e, "const int kn = %ld - k0 < %ld ? (int)(%ld - k0) : %ld;", r, kc, r, kc);
    emitln(e, "for (int t = 0; t < %ld; t++)", rt);
    emitln(e, "    ukr(sums + t * NN_MR * NN_NR, ap + ((long)t * %ld + k0) * NN_MR, 1, NN_MR, "
              "pb + (long)c * %ld + k0 * NN_NR, kn, 1, NN_NR, 0, k0 > 0);",
           r, NN_NR * r);
    emitln(e, "}");
  }
  emitln(e, "for (int t = 0; t < %ld; t++) {", rt);
  if (kc < r) {
    emitln(e, "const real *const tt = sums + t * NN_MR * NN_NR;");
  } else {
    emitln(e, "real tt[NN_MR * NN_NR];");
    emitln(e, "ukr(tt, ap + (long)t * %ld, 1, NN_MR, pb + (long)c * %ld, %ld, 1, NN_NR, 0, 0);",
           r * NN_MR, NN_NR * r, r);
  }
  emitln(e, "const long p0 = (long)t * NN_MR;");
  emitln(e, "const int i1 = %ld - p0 < NN_MR ? (int)(%ld - p0) : NN_MR;", p, p);
  emitln(e, "for (int j = 0; j < nr; j++) {");
  emitln(e, "const int o = o0 + j;");
  emitln(e, "const long yr = ((long)b * %d + o) * %ld + p0;", v->o, p);
  emitln(e, "for (int i = 0; i < i1; i++) {");
  emitln(e, "const long yi = yr + i;");
  emitln(e, "const real acc = tt[i * NN_NR + j]%s;", bias ? " + bias[o]" : "");
  emitln(e, "y[yi] = %s;", epilogue_expr(e, node, "acc", "o", "yi"));
  for (int k = 0; k < 6; k++)
    emitln(e, "}");
}

/* Winograd as pixel rows (see wino_rows()), forward only, the epilogue
 * fused.  U^T(xi) panel c, row ci, column j at ub + ((xi * CT + c) * C + ci)
 * * NN_NR + j = U_xi(c * NN_NR + j, ci). */
static void emit_wino_rows(Emit *e, const Graph *g, const Node *node, const Conv *v) {
  long ct = rows_ct(v), rt = wino_rows_rt(v), tiles = wino_tiles(v);
  int tw = (v->wo + 3) / 4, th = (v->ho + 3) / 4;
  bool bias = node->nin > 2, baked = reads_baked(g, node, OP_CONV2D_WINO_UC);
  long at = baked ? 0 : wino_rows_u_reals(v);
  emit_engine(e, false);
  emitln(e, "real *const v = ws + %ldL, *const pad = v + %ldL;", at, wino_rows_v_reals(v) + NN_MR);
  emitln(e, "{");
  emitln(e, "real *const m = pad + %ldL + (long)nn_thread_id() * %ld, *const yt = m + %ld;",
         wino_pad_reals(v), wino_rows_slot_reals(v), rt * 36L * NN_MR * NN_NR);
  if (baked)
    emitln(e, "const real *const ub = w;   /* transformed at compile time */");
  else
    emit_wino_filters(e, v, "ub", false, true);
  emitln(e, "for (int b = 0; b < n; b++) {");
  emit_omp(e, "single");
  emitln(e, "nn_wino_input(v, NN_NR, %ld, x + (long)b * %ld, %ld, %d, %d, %d, %d, %d, %d, 0, %ld, "
            "pad);",
         WINO_VC, (long)v->c * v->hw, (long)v->c * v->hw, v->c, v->h, v->w, v->q.pt, th, tw, tiles);
  emit_slot_for(e, g, ct, false);
  emitln(e, "for (int c = 0; c < %ld; c++) {", ct);
  emitln(e, "const int o0 = c * NN_NR, nr = %d - o0 < NN_NR ? %d - o0 : NN_NR;", v->o, v->o);
  emitln(e, "for (int xi = 0; xi < 36; xi++)");
  emitln(e, "    for (int r = 0; r < %ld; r++)", rt);
  emitln(e, "        ukr(m + (r * 36 + xi) * NN_MR * NN_NR, v + xi * NN_NR + r * NN_MR, 1, "
            "%ld, ub + ((long)xi * %ld + c) * %ld, %d, 1, NN_NR, 0, 0);",
         WINO_VC, ct, (long)v->c * NN_NR, v->c);
  emitln(e, "for (int r = 0; r < %ld; r++) {", rt);
  emitln(e, "for (int i = 0; i < NN_MR && r * NN_MR + i < %ld; i++) {", tiles);
  emitln(e, "const int tile = r * NN_MR + i, ty = tile / %d, tx = tile %% %d;", tw, tw);
  emitln(e, "const int rows = %d - 4 * ty < 4 ? %d - 4 * ty : 4;", v->ho, v->ho);
  emitln(e, "const int cols = %d - 4 * tx < 4 ? %d - 4 * tx : 4;", v->wo, v->wo);
  emitln(e, "nn_wino_output(yt, m + (long)r * 36 * NN_MR * NN_NR + i * NN_NR);");
  emitln(e, "for (int j = 0; j < nr; j++) {");
  emitln(e, "const int o = o0 + j;");
  emitln(e, "const long yo = ((long)b * %d + o) * %ld + (long)ty * %d + tx * 4;", v->o, v->howo,
         4 * v->wo);
  emitln(e, "for (int a = 0; a < rows; a++)");
  emitln(e, "    for (int k = 0; k < cols; k++) {");
  emitln(e, "const long yi = yo + a * %d + k;", v->wo);
  emitln(e, "const real acc = yt[(a * 4 + k) * NN_NR + j]%s;", bias ? " + bias[o]" : "");
  emitln(e, "y[yi] = %s;", epilogue_expr(e, node, "acc", "o", "yi"));
  for (int k = 0; k < 7; k++)
    emitln(e, "}");
}

static void conv2d_emit(Emit *e, const Graph *g, const Node *node) {
  Conv v = conv_dims(node, &val(g, node->in[0])->shape, &val(g, node->out[0])->shape);
  emit_window_comment(e, &v);
  switch (conv_kernel(&v, g, false)) {
  case K_DIRECT:
    emit_direct(e, node, &v, true);
    break;
  case K_ROWS:
    emit_pixel_rows(e, g, node, &v);
    break;
  case K_WINO_ROWS:
    emit_wino_rows(e, g, node, &v);
    break;
  case K_POINTWISE:
    emit_pointwise(e, g, node, &v, "x", "y", false, true);
    break;
  case K_WINOGRAD:
    emit_winograd(e, g, node, &v, "x", "y", false, true);
    break;
  case K_PRODUCT:
    emit_conv_product(e, g, node, &v, "x", "y", false, true);
    break;
  }
}

/* --report: the forward product's choice, for v and (dx) for dx_conv(). */
static const char *product_choice(const Graph *g, const Conv *v, bool dx) {
  Arena *a = g->ctx->arena;
  long panels = (fwd_pixels(v) + NN_NR - 1) / NN_NR;
  switch (conv_kernel(v, g, dx)) {
  case K_DIRECT:
    return arena_printf(a, "%s, direct: each of %d output planes %stap by tap, no workspace",
                        depthwise(v) ? "depthwise" : "memory first", v->o,
                        depthwise(v) ? "" : "channel by channel, ");
  case K_ROWS:
    return arena_printf(a, "pixel rows at batch 1: %ld tiles of %d pixels by %ld panels of %d "
                           "filters (%.0f%% of the products' lanes padding, against %.0f%% with "
                           "the filters as rows), %s%s",
                        rows_rt(v), NN_MR, rows_ct(v), NN_NR,
                        100.0 * (1 - (double)v->howo * v->o / (rows_rt(v) * rows_ct(v) * NN_MR * NN_NR)),
                        100.0 * (1 - (double)v->howo * v->o / (filter_rows_tiles(v) * NN_MR * NN_NR)),
                        rows_in_place(v) ? "input packed in tiles" : "columns packed in tiles",
                        rows_depth(v, g) < v->fsize
                            ? arena_printf(a, ", depth %ld in blocks of %ld", v->fsize,
                                           rows_depth(v, g))
                            : "");
  case K_WINO_ROWS:
    return arena_printf(a, "Winograd F(4x4,3x3) as pixel rows at batch 1: %ld tiles of 4x4 "
                           "pixels in %ld rows of %d by %ld panels of %d filters, 36 products of "
                           "K = %d each (4x fewer multiply-adds than direct%s)",
                        wino_tiles(v), wino_rows_rt(v), NN_MR, rows_ct(v), NN_NR, v->c,
                        v->ho % 4 || v->wo % 4 ? ", some tile pixels dropped at the edges" : "");
  case K_POINTWISE:
    return arena_printf(a, "pointwise product at batch 1 (%d x %d filters by %d x %ld pixels): "
                           "filters and input read in place%s",
                        v->o, v->c, v->c, v->howo,
                        pw_slot_reals(v) || pw_pack_reals(v) ? " (under one tile: copied)" : "");
  case K_WINOGRAD:
    return arena_printf(a, "Winograd F(4x4,3x3): %ld tiles of 4x4 pixels per sample, in panels "
                           "of %d; 36 products of %d x %d filters by %d x %d tiles per panel "
                           "(4x fewer multiply-adds than direct%s)",
                        wino_tiles(v), NN_NR, v->o, v->c, v->c, NN_NR,
                        v->ho % 4 || v->wo % 4 ? ", some tile pixels dropped at the edges" : "");
  case K_PRODUCT:
    break;
  }
  if (in_place(v))
    return arena_printf(a, "in place: %d filter panels x %ld pixel panels read from the padded "
                           "input (%.0f%% of the pixels computed are dropped)",
                        v->g * fwd_mt(v), panels,
                        100.0 * (1 - (double)v->howo / ((double)panels * NN_NR)));
  return arena_printf(a, "packed columns: %ld pixel panels per sample, each shared by %d filter "
                         "panels%s",
                      panels, fwd_mt(v),
                      v->q.sh > 1 || v->q.sw > 1 ? " (stride > 1)"
                      : v->q.dh > 1 || v->q.dw > 1 ? " (dilated)"
                      : v->q.kh != v->q.kw ? " (non-square kernel)" : "");
}

static const char *conv2d_kernel(const Graph *g, const Node *node) {
  Conv v = conv_dims(node, &val(g, node->in[0])->shape, &val(g, node->out[0])->shape);
  const char *how = product_choice(g, &v, false);
  return reads_baked(g, node, OP_CONV2D_WINO_U) || reads_baked(g, node, OP_CONV2D_WINO_UC)
             ? arena_printf(g->ctx->arena, "%s; filters transformed at compile time", how)
         : reads_baked(g, node, OP_CONV2D_PANELS) || reads_baked(g, node, OP_CONV2D_COL_PANELS)
             ? arena_printf(g->ctx->arena, "%s; filters packed at compile time", how)
             : how;
}

static const char *conv2d_dx_kernel(const Graph *g, const Node *node) {
  Conv v = conv_dims(node, &val(g, node->out[0])->shape, &val(g, node->in[0])->shape);
  Conv t = dx_conv(&v);
  if (dx_as_conv(&v) && conv_kernel(&t, g, true) != K_DIRECT)
    return arena_printf(g->ctx->arena, "the convolution of dy by the flipped filters, %s",
                        product_choice(g, &t, true));
  if (g->memory_first)
    return arena_printf(g->ctx->arena, "direct: w * dy added tap by tap into each dx plane, no "
                        "workspace (%s)", window_str(g->ctx->arena, &v.q));
  return arena_printf(g->ctx->arena, "columns of %d samples at a time, then col2im (%s)",
                      col_chunk(&v, g->max_batch), window_str(g->ctx->arena, &v.q));
}

static const char *conv2d_dw_kernel(const Graph *g, const Node *node) {
  Conv v = conv_dims(node, &val(g, node->in[1])->shape, &val(g, node->in[0])->shape);
  if (use_winograd(&v, g))
    return arena_printf(g->ctx->arena, "Winograd F(4x4,3x3): dU = sum over tiles of (A dy A^T) . "
                        "(B^T x B), 36 %s of K = %ld tiles a chunk, dw = G^T dU G",
                        wino_dw_dots(&v) ? "sets of dot products (16 filters or fewer)" : "products",
                        wino_chunk(&v, g->max_batch));
  if (columns_are_x(&v))
    return arena_printf(g->ctx->arena, "%dx%d dot products of dy and x read in place (1x1, no "
                        "workspace)", NN_DR, NN_DR);
  return arena_printf(g->ctx->arena, "%dx%d dot products over the columns of %d samples at a time",
                      NN_DR, NN_DR, dw_chunk(&v, g->max_batch));
}

static double conv2d_flops(const Graph *g, const Node *node) {
  Conv v = conv_dims(node, &val(g, node->in[0])->shape, &val(g, node->out[0])->shape);
  return 2.0 * v.o * (double)v.fsize * (double)v.howo;
}

/* dx and dw: as many multiply-adds as the forward product (dy is in[0]). */
static double conv2d_backward_flops(const Graph *g, const Node *node) {
  const Shape *dy = &val(g, node->in[0])->shape;
  int w = node->op == OP_CONV2D_DX ? node->in[1] : node->out[0];
  return 2.0 * (double)shape_numel(&val(g, w)->shape) * dy->dim[1] * dy->dim[2];
}

/* dx (N, C, H, W).  Stride 1: the forward product of dx_conv().  Else, per
 * chunk of samples: col_g (R, P) = w_g^T (R, O/G) . dy_g (O/G, P) into the
 * workspace, tiles of NN_MR column rows x NN_NR pixels, then col2im sums
 * each (sample, channel) plane, tap by tap in a fixed order. */
/* dx of a strided or dilated convolution without workspace (under
 * --memory-budget): each thread owns planes (b, c) of dx and adds every
 * tap's w * dy into them, outputs o in order, so the sums are the same for
 * any thread count. */
static void emit_dx_scatter(Emit *e, const Conv *v) {
  const Window *q = &v->q;
  emitln(e, "(void)ws;");
  emit_omp_for(e, "collapse(2) schedule(static)");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "for (int c = 0; c < %d; c++) {", v->c);
  emitln(e, "real *const d = dx + ((long)b * %d + c) * %ld;", v->c, v->hw);
  emitln(e, "for (long i = 0; i < %ld; i++)", v->hw);
  emitln(e, "    d[i] = 0;");
  emitln(e, "const int g = c / %d;", v->cpg);
  emitln(e, "for (int o = g * %d; o < (g + 1) * %d; o++) {", v->opg, v->opg);
  emitln(e, "const real *const dyo = dy + ((long)b * %d + o) * %ld;", v->o, v->howo);
  emitln(e, "const real *const wc = w + ((long)o * %d + c %% %d) * %ld;", v->cpg, v->cpg, v->kk);
  emitln(e, "for (int kh = 0; kh < %d; kh++) {", q->kh);
  emitln(e, "for (int oh = 0; oh < %d; oh++) {", v->ho);
  emitln(e, "const int ih = oh * %d - %d + kh * %d;", q->sh, q->pt, q->dh);
  emitln(e, "if (ih < 0 || ih >= %d)", v->h);
  emitln(e, "    continue;");
  emitln(e, "real *const dr = d + (long)ih * %d;", v->w);
  emit_tap_columns(e, v);
  emitln(e, "    dr[ow * %d + off] += wv * dyo[(long)oh * %d + ow];", q->sw, v->wo);
  for (int k = 0; k < 6; k++)
    emitln(e, "}");
}

static void conv2d_dx_emit(Emit *e, const Graph *g, const Node *node) {
  Conv v = conv_dims(node, &val(g, node->out[0])->shape, &val(g, node->in[0])->shape);
  emit_window_comment(e, &v);
  if (dx_as_conv(&v) || g->memory_first) {
    Conv t = dx_conv(&v);
    switch (dx_as_conv(&v) ? conv_kernel(&t, g, true) : K_DIRECT) {
    case K_DIRECT:
      emit_dx_scatter(e, &v);
      break;
    case K_POINTWISE:
      emit_pointwise(e, g, node, &t, "dy", "dx", true, false);
      break;
    case K_WINOGRAD:
      emit_winograd(e, g, node, &t, "dy", "dx", true, false);
      break;
    case K_ROWS:   /* forward only */
    case K_WINO_ROWS:
    case K_PRODUCT:
      emit_conv_product(e, g, node, &t, "dy", "dx", true, false);
      break;
    }
    return;
  }
  int rt = (int)((v.fsize + NN_MR - 1) / NN_MR), pt = (int)((v.howo + NN_NR - 1) / NN_NR);
  int nb = col_chunk(&v, g->max_batch);
  long panels = (long)v.g * rt * NN_MR * v.opg, cols = panels + (long)g->max_threads * v.opg * NN_NR;
  emit_engine(e, false);
  emitln(e, "{");
  emitln(e, "real *const bp = ws + %ldL + (long)nn_thread_id() * %ld;", panels,
         (long)v.opg * NN_NR);
  emitln(e, "real *const col = ws + %ldL;", cols);
  emit_omp(e, "for");   /* A(r, o) of group g = w(g*O/G + o, r) */
  emitln(e, "for (int mt = 0; mt < %d; mt++) {", v.g * rt);
  emitln(e, "const int g = mt / %d, r0 = mt %% %d * NN_MR;", rt, rt);
  emitln(e, "const int mr = %ld - r0 < NN_MR ? (int)(%ld - r0) : NN_MR;", v.fsize, v.fsize);
  emitln(e, "nn_pack_a(ws + (long)mt * %ld, w + (long)g * %ld + r0, 1, %ld, mr, %d);",
         (long)NN_MR * v.opg, (long)v.opg * v.fsize, v.fsize, v.opg);
  emitln(e, "}");
  emitln(e, "for (int b0 = 0; b0 < n; b0 += %d) {", nb);
  emitln(e, "const int nb = n - b0 < %d ? n - b0 : %d;", nb, nb);
  emit_omp(e, "for collapse(2) schedule(static)");
  emitln(e, "for (int bi = 0; bi < nb; bi++) {");
  emitln(e, "for (int gp = 0; gp < %d; gp++) {", v.g * pt);
  emitln(e, "const int g = gp / %d;", pt);
  emitln(e, "const long p0 = (long)(gp %% %d) * NN_NR;", pt);
  emitln(e, "const int np = %ld - p0 < NN_NR ? (int)(%ld - p0) : NN_NR;", v.howo, v.howo);
  emitln(e, "nn_pack_b(bp, dy + ((long)(b0 + bi) * %d + (long)g * %d) * %ld + p0, %ld, 1, np, %d);",
         v.o, v.opg, v.howo, v.howo, v.opg);
  emitln(e, "for (int mt = g * %d; mt < (g + 1) * %d; mt++) {", rt, rt);
  emitln(e, "const int r0 = mt %% %d * NN_MR;", rt);
  emitln(e, "const int mr = %ld - r0 < NN_MR ? (int)(%ld - r0) : NN_MR;", v.fsize, v.fsize);
  emitln(e, "real t[NN_MR * NN_NR];");
  emitln(e, "ukr(t, ws + (long)mt * %ld, 1, NN_MR, bp, %d, 1, NN_NR, 0, 0);", (long)NN_MR * v.opg, v.opg);
  emitln(e, "real *const d = col + (long)bi * %ld + ((long)g * %ld + r0) * %ld + p0;",
         col_reals(&v), v.fsize, v.howo);
  emitln(e, "nn_store_tile(d, %ld, t, mr, np);", v.howo);
  emitln(e, "}");
  emitln(e, "}");
  emitln(e, "}");
  emit_omp(e, "for collapse(2)");
  emitln(e, "for (int bi = 0; bi < nb; bi++) {");
  emitln(e, "for (int c = 0; c < %d; c++) {", v.c);
  emitln(e, "nn_col2im(dx + ((long)(b0 + bi) * %d + c) * %ld, col + (long)bi * %ld + (long)c * %ld,",
         v.c, v.hw, col_reals(&v), v.kk * v.howo);
  emitln(e, "          %d, %d, %s, %d, %d);", v.h, v.w, window_arg(e, &v), v.ho, v.wo);
  emitln(e, "}");
  emitln(e, "}");
  emitln(e, "}");
  emitln(e, "}");
}

/* The rest of emit_winograd_dw with dots (wino_dw_dots): the transforms
 * panel-major (a panel's 36 rows of NN_NR tiles per channel together, as
 * forward's: the 36 rows a chunk apart took the dw of resnet20's 16 -> 16
 * layers as long as the forward and dx together), each thread owns NN_DR x
 * NN_DR blocks of one xi's dU(o, c) and adds the chunk's dot products into
 * them, a panel's NN_NR tiles per segment; then dw = G^T dU G, NN_NR
 * filters (o, c) at a time, dU's rows laid out as dw's. */
static void emit_winograd_dw_dots(Emit *e, const Conv *v) {
  int ob = (v->o + NN_DR - 1) / NN_DR, cb = (v->c + NN_DR - 1) / NN_DR;
  long oc = (long)v->o * v->c;
  emit_omp(e, "for schedule(static)");
  emitln(e, "for (int task = 0; task < %d; task++) {", 36 * ob * cb);
  emitln(e, "const int xi = task / %d, o0 = task / %d %% %d * NN_DR, c0 = task %% %d * NN_DR;",
         ob * cb, cb, ob, cb);
  emitln(e, "const int mr = %d - o0 < NN_DR ? %d - o0 : NN_DR, nr = %d - c0 < NN_DR ? %d - c0 : "
            "NN_DR;", v->o, v->o, v->c, v->c);
  emitln(e, "const real *rows[NN_DR];");
  emitln(e, "for (int j = 0; j < NN_DR; j++)");
  emitln(e, "    rows[j] = vt + ((long)(c0 + (j < nr ? j : 0)) * 36 + xi) * NN_NR;");
  emitln(e, "dot(du + (long)xi * %ld + (long)o0 * %d + c0, %d, (int)np, NN_NR, wt + ((long)o0 * 36 "
            "+ xi) * NN_NR, %ld, %ld, rows, %ld, mr, nr, t0 > 0);",
         wino_dus(v), v->c, v->c, 36L * NN_NR, 36L * v->o * NN_NR, 36L * v->c * NN_NR);
  emitln(e, "}");
  emitln(e, "}");
  emit_omp(e, "for");
  emitln(e, "for (long q0 = 0; q0 < %ld; q0 += NN_NR) {", oc);
  emitln(e, "real *d[NN_NR];");
  emitln(e, "for (int j = 0; j < NN_NR; j++)");
  emitln(e, "    d[j] = q0 + j < %ld ? dw + (q0 + j) * 9 : NULL;", oc);
  emitln(e, "nn_wino_filter_grads(d, du + q0, %ld);", wino_dus(v));
  emitln(e, "}");
  emitln(e, "}");
}

/* dw (O, C/G, K, K): dw_g (O/G, R) = sum over samples of dy_g (O/G, P) .
 * col_g^T, with both dy's and the columns' rows running along the pixels:
 * dot products (nn_ukr_nt) of NN_DR rows of dy by NN_DR rows of columns.
 * Per chunk of samples the columns are written (im2col), then a thread
 * owns NN_DR taps of dw and adds the chunk's products into them, the dot
 * products running over the pixels of all its samples in batch order (a
 * small plane alone would leave the vector lanes' sums too short). */
/* Winograd dw (see wino_chunk): the transforms of a chunk's panels are
 * shared among the threads, then each owns tiles of dU^T (NN_MR channels
 * by NN_NR filters, for one xi) and adds the chunk's product into them,
 * chunk after chunk: every sum runs in tile order whatever the thread
 * count.  B's columns past O read the next row (or the NN_NR reals past
 * the end): computed, never stored.  With few filters (wino_dw_dots) the
 * transforms are panel-major and dU takes dot products instead. */
static void emit_winograd_dw(Emit *e, const Graph *g, const Conv *v) {
  int tw = (v->wo + 3) / 4, th = (v->ho + 3) / 4, ct = wino_ct(v), ot = wino_ot(v);
  long chunk = wino_chunk(v, g->max_batch);
  bool dots = wino_dw_dots(v);
  emit_engine(e, dots);
  emitln(e, "real *const du = ws, *const vt = ws + %ldL, *const wt = vt + %ldL;",
         wino_du_reals(v), 36L * v->c * chunk);
  emitln(e, "const long tiles = (long)n * %ld;", wino_tiles(v));
  emitln(e, "{");
  emitln(e, "real *const pad = wt + %ldL + (long)nn_thread_id() * %ld;",
         36L * v->o * chunk + NN_NR, wino_pad_reals(v));
  emitln(e, "for (long t0 = 0; t0 < tiles; t0 += %ld) {", chunk);
  emitln(e, "const long np = (tiles - t0 < %ld ? tiles - t0 + NN_NR - 1 : %ld) / NN_NR;", chunk,
         chunk);
  emit_omp(e, "for schedule(static)");
  emitln(e, "for (long pn = 0; pn < np; pn++) {");
  emitln(e, "const long tile0 = t0 + pn * NN_NR;");
  emitln(e, "const int nt = tiles - tile0 < NN_NR ? (int)(tiles - tile0) : NN_NR;");
  if (dots) {   /* panel-major: each panel's 36 rows of a channel together */
    emitln(e, "nn_wino_input(vt + pn * %ld, NN_NR, %ld, x, %ld, %d, %d, %d, %d, %d, %d, tile0, nt, "
              "pad);",
           36L * v->c * NN_NR, 36L * NN_NR, (long)v->c * v->hw, v->c, v->h, v->w, v->q.pt, th, tw);
    emitln(e, "nn_wino_dy_rows(wt + pn * %ld, NN_NR, %ld, dy, %ld, %d, %d, %d, %d, %d, tile0, nt, "
              "pad);",
           36L * v->o * NN_NR, 36L * NN_NR, (long)v->o * v->howo, v->o, v->ho, v->wo, th, tw);
  } else {
    emitln(e, "nn_wino_input(vt + pn * NN_NR, %ld, %ld, x, %ld, %d, %d, %d, %d, %d, %d, tile0, "
              "nt, pad);",
           v->c * chunk, chunk, (long)v->c * v->hw, v->c, v->h, v->w, v->q.pt, th, tw);
    emitln(e, "nn_wino_dy(wt + pn * NN_NR * %d, %ld, dy, %ld, %d, %d, %d, %d, %d, tile0, nt, pad);",
           v->o, chunk, (long)v->o * v->howo, v->o, v->ho, v->wo, th, tw);
  }
  emitln(e, "}");
  if (dots) {
    emit_winograd_dw_dots(e, v);
    return;
  }
  emit_omp(e, "for schedule(static)");
  emitln(e, "for (int task = 0; task < %d; task++) {", 36 * ct * ot);
  emitln(e, "const int xi = task / %d, c0 = task / %d %% %d * NN_MR, o0 = task %% %d * NN_NR;",
         ct * ot, ot, ct, ot);
  emitln(e, "ukr(du + (long)task * NN_MR * NN_NR, vt + ((long)xi * %d + c0) * %ld, %ld, 1, "
            "wt + (long)xi * %ld + o0, (int)(np * NN_NR), 1, %d, 0, t0 > 0);",
         v->c, chunk, chunk, chunk * v->o, v->o);
  emitln(e, "}");
  emitln(e, "}");
  /* dU(o, c) at tile (xi, c / NN_MR, o / NN_NR), row c % NN_MR, column o %
   * NN_NR: NN_NR columns at a time */
  emit_omp(e, "for");
  emitln(e, "for (long q0 = 0; q0 < %ld; q0 += NN_NR) {", (long)ct * ot * NN_MR * NN_NR);
  emitln(e, "real *d[NN_NR];");
  emitln(e, "const int tile = (int)(q0 / (NN_MR * NN_NR)), c = tile / %d * NN_MR + (int)(q0 / "
            "NN_NR %% NN_MR);", ot);
  emitln(e, "for (int j = 0; j < NN_NR; j++) {");
  emitln(e, "const int o = tile %% %d * NN_NR + j;", ot);
  emitln(e, "d[j] = c < %d && o < %d ? dw + ((long)o * %d + c) * 9 : NULL;", v->c, v->o, v->c);
  emitln(e, "}");
  emitln(e, "nn_wino_filter_grads(d, du + q0, %ld);", (long)ct * ot * NN_MR * NN_NR);
  emitln(e, "}");
  emitln(e, "}");
}

static void conv2d_dw_emit(Emit *e, const Graph *g, const Node *node) {
  Conv v = conv_dims(node, &val(g, node->in[1])->shape, &val(g, node->in[0])->shape);
  emit_window_comment(e, &v);
  if (use_winograd(&v, g)) {
    emit_winograd_dw(e, g, &v);
    return;
  }
  bool in_x = columns_are_x(&v);
  int rt = (int)((v.fsize + NN_DR - 1) / NN_DR), nb = in_x ? g->max_batch : dw_chunk(&v, g->max_batch);
  emit_engine(e, true);
  if (in_x)
    emitln(e, "(void)ws;");
  emitln(e, "{");
  emitln(e, "for (int b0 = 0; b0 < n; b0 += %d) {", nb);
  emitln(e, "const int nb = n - b0 < %d ? n - b0 : %d;", nb, nb);
  if (!in_x) {
    emit_omp(e, "for collapse(2)");
    emitln(e, "for (int bi = 0; bi < nb; bi++) {");
    emitln(e, "for (int c = 0; c < %d; c++) {", v.c);
    emitln(e, "nn_im2col(ws + (long)bi * %ld + (long)c * %ld, x + ((long)(b0 + bi) * %d + c) * %ld,",
           col_reals(&v), v.kk * v.howo, v.c, v.hw);
    emitln(e, "          %d, %d, %s, %d, %d);", v.h, v.w, window_arg(e, &v), v.ho, v.wo);
    emitln(e, "}");
    emitln(e, "}");
  }
  emit_omp(e, "for schedule(static)");
  emitln(e, "for (int rt = 0; rt < %d; rt++) {", v.g * rt);
  emitln(e, "const int g = rt / %d;", rt);
  emitln(e, "const long r0 = (long)(rt %% %d) * NN_DR;", rt);
  emitln(e, "const int nr = %ld - r0 < NN_DR ? (int)(%ld - r0) : NN_DR;", v.fsize, v.fsize);
  emitln(e, "const real *rows[NN_DR];   /* the tile's taps in sample 0's columns */");
  emitln(e, "for (int j = 0; j < NN_DR; j++)");
  if (in_x)
    emitln(e, "    rows[j] = x + ((long)b0 * %d + g * %ld + r0 + (j < nr ? j : 0)) * %ld;", v.c,
           v.fsize, v.howo);
  else
    emitln(e, "    rows[j] = ws + (g * %ld + r0 + (j < nr ? j : 0)) * %ld;", v.fsize, v.howo);
  emitln(e, "for (int o0 = g * %d; o0 < (g + 1) * %d; o0 += NN_DR) {", v.opg, v.opg);
  emit_mr(e, "o0", v.opg, "NN_DR");
  emitln(e, "dot(dw + (long)o0 * %ld + r0, %ld, nb, %ld, dy + ((long)b0 * %d + o0) * %ld, %ld, "
            "%ld, rows, %ld, mr, nr, b0 > 0);",
         v.fsize, v.fsize, v.howo, v.o, v.howo, v.howo, (long)v.o * v.howo, col_reals(&v));
  for (int k = 0; k < 4; k++)
    emitln(e, "}");
}

/* db (O) = sum over the batch and positions of dy (N, O, Ho, Wo). */
static void conv2d_db_emit(Emit *e, const Graph *g, const Node *node) {
  const Shape *dy = &val(g, node->in[0])->shape;
  int o = dy->dim[0], hw = dy->dim[1] * dy->dim[2];
  emit_omp_for(e, "");
  emitln(e, "for (int c = 0; c < %d; c++) {", o);
  /* in real: a bias trained on a microcontroller has no double FPU */
  emit_channel_sums(e, "real", o, hw, 1, (const char *const[]){"acc"},
                    (const char *const[]){"dy[k]"}, NULL, (const char *const[]){"dy", NULL});
  emitln(e, "db[c] = acc;");
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
    conv_workspace(g, node_at(g, val(g, din[0])->producer), &v, WS_DX);
  }
  if (need[1]) {
    int in[2] = {dy, x};
    din[1] = derived_node(g, OP_CONV2D_DW, id, in, 2, val(g, w)->shape, false);
    conv_workspace(g, node_at(g, val(g, din[1])->producer), &v, WS_DW);
  }
  if (bias >= 0 && need[2]) {
    int in[1] = {dy};
    din[2] = derived_node(g, OP_CONV2D_DB, id, in, 1, val(g, bias)->shape, false);
  }
}

const OpDef op_conv2d = {
    .name = "conv2d", .prefix = "conv", .min_in = 1, .max_in = 1,
    .attrs = conv2d_attrs, .nattr = NATTR, .in_names = fwd_in, .out_names = fwd_out,
    .roles = ROLE_ANCHOR | ROLE_PRODUCT, .fold_weight_in = 1, .fold_bias_in = 2,
    .build = conv2d_build, .emit = conv2d_emit, .backward = conv2d_backward,
    .flops = conv2d_flops, .kernel = conv2d_kernel, .split_constant = conv2d_split_constant,
};

/* ---- filters prepared at compile time ------------------------------------ */

/* With the weights baked (--infer --weights), what a layer makes of its
 * filters at every call is the same on every call: the transformed filters
 * U of a Winograd layer, the NN_MR-row panels of a product.  The layer splits
 * that off as a node of its own (conv2d_wino_u, conv2d_panels), which
 * hoist_constants evaluates at compile time into the consts block, and
 * reads the result there (its in[1]) instead of preparing its filters in its
 * workspace at every call.  At batch 1 that was 18-24% of vgg_small's and
 * resnet20's forward for the Winograd layers alone. */
static bool reads_baked(const Graph *g, const Node *node, OpKind op) {
  int p = val(g, node->in[1])->producer;
  return p >= 0 && g->nodes.items[p].op == op;
}

static bool conv2d_split_constant(Graph *g, int id) {
  Node *node = node_at(g, id);
  Conv v = conv_dims(node, &val(g, node->in[0])->shape, &val(g, node->out[0])->shape);
  OpKind op;
  long reals;
  const char *what;
  switch (conv_kernel(&v, g, false)) {
  case K_WINOGRAD:
    op = OP_CONV2D_WINO_U, reals = wino_u_reals(&v), what = "wino_u";
    break;
  case K_PRODUCT:
    op = OP_CONV2D_PANELS, reals = fwd_panels_reals(&v), what = "panels";
    break;
  case K_ROWS:
    op = OP_CONV2D_COL_PANELS, reals = rows_panels_reals(&v), what = "col_panels";
    break;
  case K_WINO_ROWS:
    op = OP_CONV2D_WINO_UC, reals = wino_rows_u_reals(&v), what = "wino_u_cols";
    break;
  default:
    return false;
  }
  if (reads_baked(g, node, op) || !is_constant(val(g, node->in[1])))
    return false;
  Node *t = insert_node(g, id, op, node->name, node->loc);
  node = node_at(g, id + 1);
  memcpy(t->attr, node->attr, sizeof t->attr);
  node_input(g, t, node->in[1]);
  int u = node_output(g, t, shape_of(1, (int)reals), false, g->dtype);
  val(g, u)->name = arena_printf(g->ctx->arena, "%s.%s", node->name, what);
  node = node_at(g, id + 1);
  node->in[1] = u;
  val(g, node->out[1])->shape.dim[0] -= (int)reals;   /* ws: the slots only */
  return true;
}

/* The panels emit_filter_panels packs (nn_pack_a): group g's row panel mt
 * at (g * MT + mt) * NN_MR * R, A(i, r) at r * NN_MR + i, zero past the
 * group's filters; a copy, so bit for bit. */
static void panels_eval(const Graph *g, const Node *node, const void *const *in,
                        void *const *out) {
  const Shape *ws = &val(g, node->in[0])->shape;   /* (O, C/G, KH, KW) */
  const int groups = attr_int(node, A_GROUPS), opg = ws->dim[0] / groups;
  const int mt = (opg + NN_MR - 1) / NN_MR;
  const long r = shape_numel(ws) / ws->dim[0];
  const size_t es = g->dtype == DT_F32 ? 4 : 8;
  const char *w = in[0];
  char *p = out[0];
  memset(p, 0, es * (size_t)(groups * mt * NN_MR * r));
  for (int gr = 0; gr < groups; gr++)
    for (int m = 0; m < mt; m++) {
      const int o0 = gr * opg + m * NN_MR;
      char *ap = p + es * (size_t)((gr * mt + m) * NN_MR * r);
      for (int i = 0; i < NN_MR && o0 + i < (gr + 1) * opg; i++)
        for (long k = 0; k < r; k++)
          memcpy(ap + es * (size_t)(k * NN_MR + i), w + es * (size_t)((o0 + i) * r + k), es);
    }
}

/* The panels emit_pixel_rows packs (nn_pack_b): panel c of NN_NR filters at
 * c * NN_NR * R, B(r, j) at r * NN_NR + j = w(c * NN_NR + j, r), zero past
 * the filters; a copy, so bit for bit. */
static void col_panels_eval(const Graph *g, const Node *node, const void *const *in,
                            void *const *out) {
  const Shape *ws = &val(g, node->in[0])->shape;   /* (O, C, KH, KW) */
  const int o = ws->dim[0], ct = (o + NN_NR - 1) / NN_NR;
  const long r = shape_numel(ws) / o;
  const size_t es = g->dtype == DT_F32 ? 4 : 8;
  const char *w = in[0];
  char *p = out[0];
  memset(p, 0, es * (size_t)(ct * NN_NR * r));
  for (int j = 0; j < o; j++)
    for (long k = 0; k < r; k++)
      memcpy(p + es * (size_t)(((long)j / NN_NR * r + k) * NN_NR + j % NN_NR),
             w + es * (size_t)(j * r + k), es);
}

/* U as emit_winograd lays it out (emit_wino_rows with `cols`), from w (O,
 * C, 3, 3): nn_wino_filters' arithmetic (runtime/nn_winograd.c) in the same
 * order, so that the baked values equal the ones a build with loadable
 * weights computes, bit for bit. */
#define WINO_U(real)                                                                   \
  do {                                                                                 \
    const real *w = in[0];                                                             \
    real *u = out[0];                                                                  \
    for (long oc = 0; oc < up; oc++) {                                                 \
      const int o = (int)(oc / nc), c = (int)(oc % nc);                                \
      real *r = u + (cols ? ((long)(o / NN_NR) * nc + c) * NN_NR + o % NN_NR           \
                          : (long)(o / NN_MR) * NN_MR * nc + (long)c * NN_MR + o % NN_MR); \
      real f[3][3], t[6][3];                                                           \
      if (o >= no) {   /* the rows of the last panel past the filters */               \
        for (int xi = 0; xi < 36; xi++)                                                \
          r[xi * up] = 0;                                                              \
        continue;                                                                      \
      }                                                                                \
      for (int i = 0; i < 9; i++)                                                      \
        f[i / 3][i % 3] = w[oc * 9 + i];                                               \
      for (int j = 0; j < 3; j++) {                                                    \
        const real f0 = f[0][j], f1 = f[1][j], f2 = f[2][j];                           \
        t[0][j] = f0 / 4;                                                              \
        t[1][j] = -(f0 + f1 + f2) / 6;                                                 \
        t[2][j] = -(f0 - f1 + f2) / 6;                                                 \
        t[3][j] = f0 / 24 + f1 / 12 + f2 / 6;                                          \
        t[4][j] = f0 / 24 - f1 / 12 + f2 / 6;                                          \
        t[5][j] = f2;                                                                  \
      }                                                                                \
      for (int i = 0; i < 6; i++) {                                                    \
        const real t0 = t[i][0], t1 = t[i][1], t2 = t[i][2];                           \
        real *q = r + (long)i * 6 * up;                                                \
        q[0 * up] = t0 / 4;                                                            \
        q[1 * up] = -(t0 + t1 + t2) / 6;                                               \
        q[2 * up] = -(t0 - t1 + t2) / 6;                                               \
        q[3 * up] = t0 / 24 + t1 / 12 + t2 / 6;                                        \
        q[4 * up] = t0 / 24 - t1 / 12 + t2 / 6;                                        \
        q[5 * up] = t2;                                                                \
      }                                                                                \
    }                                                                                  \
  } while (0)

static void wino_u_eval(const Graph *g, const Node *node, const void *const *in,
                        void *const *out) {
  const Shape *ws = &val(g, node->in[0])->shape;   /* (O, C, 3, 3) */
  const int no = ws->dim[0], nc = ws->dim[1];
  const long up = shape_numel(&val(g, node->out[0])->shape) / 36;   /* the padded O x C */
  const bool cols = node->op == OP_CONV2D_WINO_UC;
  if (g->dtype == DT_F32)
    WINO_U(float);
  else
    WINO_U(double);
}
#undef WINO_U

static const char *const u_in[] = {"w", NULL}, *const u_out[] = {"u", NULL};

const OpDef op_conv2d_wino_u = {
    .name = "conv2d_wino_u", .attrs = conv2d_attrs, .nattr = NATTR, .in_names = u_in,
    .out_names = u_out, .roles = ROLE_INTERNAL, .eval = wino_u_eval, .shown_as = "conv2d",
};
const OpDef op_conv2d_wino_uc = {
    .name = "conv2d_wino_uc", .attrs = conv2d_attrs, .nattr = NATTR, .in_names = u_in,
    .out_names = u_out, .roles = ROLE_INTERNAL, .eval = wino_u_eval, .shown_as = "conv2d",
};
const OpDef op_conv2d_panels = {
    .name = "conv2d_panels", .attrs = conv2d_attrs, .nattr = NATTR, .in_names = u_in,
    .out_names = u_out, .roles = ROLE_INTERNAL, .eval = panels_eval, .shown_as = "conv2d",
};
const OpDef op_conv2d_col_panels = {
    .name = "conv2d_col_panels", .attrs = conv2d_attrs, .nattr = NATTR, .in_names = u_in,
    .out_names = u_out, .roles = ROLE_INTERNAL, .eval = col_panels_eval, .shown_as = "conv2d",
};

static const char *const dx_in[] = {"dy", "w", NULL}, *const dx_out[] = {"dx", "ws", NULL};
static const char *const dw_in[] = {"dy", "x", NULL}, *const dw_out[] = {"dw", "ws", NULL};
static const char *const db_in[] = {"dy", NULL}, *const db_out[] = {"db", NULL};

const OpDef op_conv2d_dx = {
    .name = "conv2d_dx", .attrs = conv2d_attrs, .nattr = NATTR, .in_names = dx_in,
    .out_names = dx_out, .roles = ROLE_INTERNAL | ROLE_PRODUCT, .emit = conv2d_dx_emit,
    .flops = conv2d_backward_flops, .kernel = conv2d_dx_kernel,
};
const OpDef op_conv2d_dw = {
    .name = "conv2d_dw", .attrs = conv2d_attrs, .nattr = NATTR, .in_names = dw_in,
    .out_names = dw_out, .roles = ROLE_INTERNAL | ROLE_PRODUCT, .emit = conv2d_dw_emit,
    .flops = conv2d_backward_flops, .kernel = conv2d_dw_kernel,
};
const OpDef op_conv2d_db = {
    .name = "conv2d_db", .attrs = conv2d_attrs, .nattr = NATTR, .in_names = db_in,
    .out_names = db_out, .roles = ROLE_INTERNAL, .emit = conv2d_db_emit,
};
