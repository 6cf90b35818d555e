/*
 * pool.c: pooling over (N, C, H, W): maxpool, minpool, avgpool, sumpool with
 * a kernel kh x kw, stride sh x sw (0 = the kernel) and zero padding per
 * side (the window of ir/window.c, padding=same included), and
 * global_avgpool (the whole plane, giving (N, C, 1, 1)); with their
 * backward kernels.
 *
 *   Ho = (H + pt + pb - kh) / sh + 1,  Wo = (W + pl + pr - kw) / sw + 1
 *
 * Padding cells never take part: max/min pooling skip them (as if they were
 * -inf/+inf), sumpool adds nothing for them, and avgpool divides by the number
 * of real cells in the window (PyTorch's count_include_pad=False, TF's 'same').
 * With every pad at most half its kernel (PyTorch's rule) every window holds
 * at least one real cell.
 *
 * Every kernel walks the (n, c) planes in parallel and, inside a plane, the
 * output windows in order; global_avgpool is the H x W window at stride 1.
 * Backward kernels also own one plane of dx each, so overlapping windows add
 * into it in a fixed order: bit-identical for any thread count.  max/min
 * backward recompute the winner instead of storing indices: the gradient of
 * an output goes to the first cell of its window, in row-major window order,
 * whose input equals the output.
 */
#include "emit.h"

typedef enum { POOL_MAX, POOL_MIN, POOL_AVG, POOL_SUM } PoolKind;

/* The forward op, its backward op, and how they reduce a window. */
typedef struct PoolInfo {
  OpKind fwd, dx;
  PoolKind kind;
  bool global;
} PoolInfo;

static const PoolInfo pools[] = {
    {OP_MAXPOOL, OP_MAXPOOL_DX, POOL_MAX, false},
    {OP_MINPOOL, OP_MINPOOL_DX, POOL_MIN, false},
    {OP_AVGPOOL, OP_AVGPOOL_DX, POOL_AVG, false},
    {OP_SUMPOOL, OP_SUMPOOL_DX, POOL_SUM, false},
    {OP_GLOBAL_AVGPOOL, OP_GLOBAL_AVGPOOL_DX, POOL_AVG, true},
};

static const PoolInfo *info_of(OpKind op) {
  for (size_t i = 0; i < sizeof pools / sizeof *pools; i++)
    if (pools[i].fwd == op || pools[i].dx == op)
      return &pools[i];
  unreachable();
}

enum { A_KERNEL, A_STRIDE, A_PAD, A_PADDING };

static const AttrSpec pool_attrs[] = {
    {"kernel", ATTR_INTS, NULL},
    {"stride", ATTR_INTS, "0"},
    {"pad", ATTR_INTS, "0"},
    {"padding", ATTR_IDENT, "valid"},
};

static const WindowAttrs pool_window = {A_KERNEL, A_STRIDE, -1, A_PAD, A_PADDING, true};

/* Window geometry of one node; x is the (C, H, W) input plane shape. */
typedef struct Geom {
  int c, h, w, ho, wo;
  int kh, kw, sh, sw;
  int pt, pl;          /* pads above and on the left */
  bool pad;            /* any pad: windows are clipped */
  Window win;          /* as written, for the kernels' comments */
} Geom;

static Geom geom_of(const Node *node, const Shape *x) {
  Geom q = {.c = x->dim[0], .h = x->dim[1], .w = x->dim[2]};
  Window win = {.kh = q.h, .kw = q.w, .sh = 1, .sw = 1, .dh = 1, .dw = 1};
  if (!info_of(node->op)->global)
    win = window_of(node, &pool_window, q.h, q.w);
  q.kh = win.kh, q.kw = win.kw, q.sh = win.sh, q.sw = win.sw;
  q.pt = win.pt, q.pl = win.pl;
  q.pad = win.pt || win.pb || win.pl || win.pr;
  q.win = win;
  q.ho = (int)window_out(q.h, q.kh, q.sh, 1, win.pt, win.pb);
  q.wo = (int)window_out(q.w, q.kw, q.sw, 1, win.pl, win.pr);
  return q;
}

/* ---- shape rule ------------------------------------------------------------ */

static bool pool_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  if (!x->batched || x->shape.rank != 3 || x->dtype == DT_I32) {
    error_at(g->ctx, node->loc, "%s: input must be (C, H, W) per sample, got %s%s",
             op_def(node->op)->name, shape_str(g->ctx->arena, &x->shape),
             x->dtype == DT_I32 ? " (class labels)" : "");
    return false;
  }
  Window win;
  long ho, wo;
  if (!info_of(node->op)->global &&
      !window_check(g, node, &pool_window, x->shape.dim[1], x->shape.dim[2], &win, &ho, &wo))
    return false;
  Geom q = geom_of(node, &x->shape);
  Shape y = shape_of(3, q.c, q.ho, q.wo);
  if (!check_shape(g, node, y))
    return false;
  node_output(g, node, y, true, x->dtype);
  return true;
}

static double pool_flops(const Graph *g, const Node *node) {
  Geom q = geom_of(node, &val(g, node->in[0])->shape);
  return (double)q.c * q.ho * q.wo * q.kh * q.kw;
}

/* ---- the window walker -------------------------------------------------------- */

/* Opens the loop over the planes p of (n, C): pointers xp (H*W) and yp
 * (Ho*Wo) into the two named tensors, the first one written.  A comment
 * first says what window the kernel slides. */
static void open_planes(Emit *e, const Geom *q, const char *big, const char *small,
                        bool big_is_out) {
  long hw = (long)q->h * q->w, ohw = (long)q->ho * q->wo;
  emitln(e, "/* %s */", window_str(e->ctx->arena, &q->win));
  emit_omp_for(e, "");
  emitln(e, "for (long p = 0; p < (long)n * %d; p++) {", q->c);
  if (big_is_out) {
    emitln(e, "real *%sp = %s + p * %ld;", big, big, hw);
    emitln(e, "const real *%sp = %s + p * %ld;", small, small, ohw);
  } else {
    emitln(e, "const real *%sp = %s + p * %ld;", big, big, hw);
    emitln(e, "real *%sp = %s + p * %ld;", small, small, ohw);
  }
}

/* Opens the loops over the output cells (oh, ow) of a plane and defines the
 * window's clipped rows [i0, i1) and columns [j0, j1) (the loops over a
 * window run i over rows, j over columns; `ws` is a workspace in every
 * kernel) and its index o. */
static void open_windows(Emit *e, const Geom *q) {
  emitln(e, "for (int oh = 0; oh < %d; oh++) {", q->ho);
  if (q->pad) {
    emitln(e, "const int h0 = oh * %d - %d;", q->sh, q->pt);
    emitln(e, "const int i0 = h0 > 0 ? h0 : 0, i1 = h0 + %d < %d ? h0 + %d : %d;", q->kh,
           q->h, q->kh, q->h);
  } else {
    emitln(e, "const int i0 = oh * %d, i1 = i0 + %d;", q->sh, q->kh);
  }
  emitln(e, "for (int ow = 0; ow < %d; ow++) {", q->wo);
  if (q->pad) {
    emitln(e, "const int w0 = ow * %d - %d;", q->sw, q->pl);
    emitln(e, "const int j0 = w0 > 0 ? w0 : 0, j1 = w0 + %d < %d ? w0 + %d : %d;", q->kw,
           q->w, q->kw, q->w);
  } else {
    emitln(e, "const int j0 = ow * %d, j1 = j0 + %d;", q->sw, q->kw);
  }
  emitln(e, "const int o = oh * %d + ow;", q->wo);
}

static void close_loops(Emit *e, int depth) {
  while (depth-- > 0)
    emitln(e, "}");
}

/* The number of real cells of the window, for avgpool. */
static const char *window_count(Emit *e, const Geom *q) {
  if (q->pad)
    return "(real)((i1 - i0) * (j1 - j0))";
  return lit(e, (double)q->kh * q->kw);
}

/* ---- forward ----------------------------------------------------------------- */

static void pool_emit(Emit *e, const Graph *g, const Node *node) {
  PoolKind kind = info_of(node->op)->kind;
  Geom q = geom_of(node, &val(g, node->in[0])->shape);
  open_planes(e, &q, "x", "y", false);
  open_windows(e, &q);
  bool extreme = kind == POOL_MAX || kind == POOL_MIN;
  emitln(e, "real acc = %s;", extreme ? arena_printf(e->ctx->arena, "xp[i0 * %d + j0]", q.w)
                                       : "0");
  emitln(e, "for (int i = i0; i < i1; i++)");
  emitln(e, "    for (int j = j0; j < j1; j++)");
  if (extreme)
    emitln(e, "        acc = %s(acc, xp[i * %d + j]);", kind == POOL_MAX ? "rmax" : "rmin",
           q.w);
  else
    emitln(e, "        acc += xp[i * %d + j];", q.w);
  if (kind == POOL_AVG)
    emitln(e, "yp[o] = acc / %s;", window_count(e, &q));
  else
    emitln(e, "yp[o] = acc;");
  close_loops(e, 3);
}

static void pool_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  if (!need[0])
    return;
  const PoolInfo *pi = info_of(node->op);
  const Value *x = val(g, node->in[0]);
  bool extreme = pi->kind == POOL_MAX || pi->kind == POOL_MIN;
  int in[3] = {dout[0], node->in[0], node->out[0]};
  din[0] = derived_node(g, pi->dx, node->id, in, extreme ? 3 : 1, x->shape, true);
}

/* ---- backward ---------------------------------------------------------------- */

/* dx (N, C, H, W) from dy (N, C, Ho, Wo); max/min also read x and y.
 * max/min backward are anchors: an elementwise op on dx (the relu_dx of a
 * relu before the pool) runs on each value as it is stored. */

/* The store of d (an expression) into plane cell `cell` through the fused
 * epilogue, at flat index p * H * W + cell and channel p % C: the body of
 * a braced loop, or braced itself (the epilogue of a chain declares its
 * steps). */
static void store_dx(Emit *e, const Node *node, const Geom *q, const char *cell, const char *d) {
  Arena *a = e->ctx->arena;
  if (!node->nepilogue) {
    emitln(e, "dxp[%s] = %s;", cell, d);
    return;
  }
  const char *k = arena_printf(a, "p * %ld + %s", (long)q->h * q->w, cell);
  const char *c = arena_printf(a, "(int)(p %% %d)", q->c);
  emitln(e, "dxp[%s] = %s;", cell, epilogue_expr(e, node, arena_printf(a, "(%s)", d), c, k));
}

/* max/min backward when the windows tile the plane without overlap or
 * padding (stride == kernel, as in maxpool(2)): each cell of a window is
 * written once, with dy at the winner and 0 elsewhere, without branches:
 * scanning the window backwards leaves the first matching cell in `at`.
 * Cells no window covers (the last rows or columns of an odd plane) are
 * zeroed first, by open_tiled_dx, which opens the loop over the planes. */
static void open_tiled_dx(Emit *e, const Node *node, const Geom *q) {
  open_planes(e, q, "dx", "dy", true);
  if (q->ho * q->kh < q->h || q->wo * q->kw < q->w) {
    emitln(e, "for (long i = 0; i < %ld; i++) {", (long)q->h * q->w);
    store_dx(e, node, q, "i", "0");
    emitln(e, "}");
  }
  emitln(e, "const real *xp = x + p * %ld, *yp = y + p * %ld;", (long)q->h * q->w,
         (long)q->ho * q->wo);
}

static void extreme_dx_tiled(Emit *e, const Node *node, const Geom *q) {
  open_tiled_dx(e, node, q);
  open_windows(e, q);
  emitln(e, "int at = -1;");
  emitln(e, "for (int i = i1 - 1; i >= i0; i--)");
  emitln(e, "    for (int j = j1 - 1; j >= j0; j--)");
  emitln(e, "        at = xp[i * %d + j] == yp[o] ? i * %d + j : at;", q->w, q->w);
  emitln(e, "for (int i = i0; i < i1; i++) {");
  emitln(e, "for (int j = j0; j < j1; j++) {");
  Arena *a = e->ctx->arena;
  store_dx(e, node, q, arena_printf(a, "i * %d + j", q->w),
           arena_printf(a, "i * %d + j == at ? dyp[o] : 0", q->w));
  close_loops(e, 5);
}

/* The same for 2x2 windows of stride 2 (maxpool(2)), one output row at a
 * time: each window's four cells tested without a loop, so that the
 * compiler vectorizes along the row (the general loop above stays scalar,
 * which with a fused relu_dx cost more than the pass it saved: LeNet-5's
 * step 1.02-1.04x). */
static void extreme_dx_2x2(Emit *e, const Node *node, const Geom *q) {
  open_tiled_dx(e, node, q);
  emitln(e, "for (int oh = 0; oh < %d; oh++) {", q->ho);
  emitln(e, "for (int ow = 0; ow < %d; ow++) {", q->wo);
  emitln(e, "const int o = oh * %d + ow, q0 = 2 * oh * %d + 2 * ow, q1 = q0 + 1, q2 = q0 + %d, "
            "q3 = q2 + 1;", q->wo, q->w, q->w);
  emitln(e, "const real m = yp[o], g = dyp[o];");
  emitln(e, "/* the first cell in window order that holds the extreme takes dy */");
  emitln(e, "const int e0 = xp[q0] == m, e1 = xp[q1] == m, e2 = xp[q2] == m, e3 = xp[q3] == m;");
  emitln(e, "const int a1 = e1 & !e0, a2 = e2 & !(e0 | e1), a3 = e3 & !(e0 | e1 | e2);");
  const char *cells[4] = {"q0", "q1", "q2", "q3"}, *vals[4] = {"e0", "a1", "a2", "a3"};
  const bool chain = node->nepilogue > 1;
  for (int i = 0; i < 4; i++) {
    if (chain)
      emitln(e, "{");
    store_dx(e, node, q, cells[i], arena_printf(e->ctx->arena, "%s ? g : 0", vals[i]));
    if (chain)
      emitln(e, "}");
  }
  close_loops(e, 3);
}

static void pool_dx_emit(Emit *e, const Graph *g, const Node *node) {
  PoolKind kind = info_of(node->op)->kind;
  Geom q = geom_of(node, &val(g, node->out[0])->shape);
  bool tiled = q.sh == q.kh && q.sw == q.kw && !q.pad;
  if ((kind == POOL_MAX || kind == POOL_MIN) && tiled) {
    if (q.kh == 2 && q.kw == 2)
      extreme_dx_2x2(e, node, &q);
    else
      extreme_dx_tiled(e, node, &q);
    return;
  }
  open_planes(e, &q, "dx", "dy", true);
  emitln(e, "for (long i = 0; i < %ld; i++)", (long)q.h * q.w);
  emitln(e, "    dxp[i] = 0;");
  if (kind == POOL_MAX || kind == POOL_MIN) {
    emitln(e, "const real *xp = x + p * %ld, *yp = y + p * %ld;", (long)q.h * q.w,
           (long)q.ho * q.wo);
    open_windows(e, &q);
    /* at stays -1 only when the window holds a NaN. */
    emitln(e, "int at = -1;");
    emitln(e, "for (int i = i0; i < i1 && at < 0; i++)");
    emitln(e, "    for (int j = j0; j < j1; j++)");
    emitln(e, "        if (xp[i * %d + j] == yp[o]) { at = i * %d + j; break; }", q.w, q.w);
    emitln(e, "if (at >= 0)");
    emitln(e, "    dxp[at] += dyp[o];");
    if (node->nepilogue) {   /* windows overlap: the epilogue once the plane is summed */
      close_loops(e, 2);
      emitln(e, "for (long i = 0; i < %ld; i++) {", (long)q.h * q.w);
      store_dx(e, node, &q, "i", "dxp[i]");
      close_loops(e, 2);
      return;
    }
  } else {
    open_windows(e, &q);
    if (kind == POOL_AVG)
      emitln(e, "const real d = dyp[o] / %s;", window_count(e, &q));
    else
      emitln(e, "const real d = dyp[o];");
    emitln(e, "for (int i = i0; i < i1; i++)");
    emitln(e, "    for (int j = j0; j < j1; j++)");
    emitln(e, "        dxp[i * %d + j] += d;", q.w);
  }
  close_loops(e, 3);
}

/* ---- registry entries ---------------------------------------------------------- */

static const char *const x_names[] = {"x", NULL}, *const y_names[] = {"y", NULL};
static const char *const dx_ext_in[] = {"dy", "x", "y", NULL};
static const char *const dx_in[] = {"dy", NULL}, *const dx_out[] = {"dx", NULL};

#define POOL_OP(sym, lang, pfx, nattrs)                                                  \
  const OpDef op_##sym = {                                                               \
      .name = lang, .prefix = pfx, .min_in = 1, .max_in = 1,                             \
      .attrs = pool_attrs, .nattr = nattrs, .in_names = x_names, .out_names = y_names,   \
      .build = pool_build, .emit = pool_emit, .backward = pool_backward,                 \
      .flops = pool_flops,                                                               \
  }
#define POOL_DX_OP(sym, lang, nattrs, ins, role)                                         \
  const OpDef op_##sym = {                                                               \
      .name = lang, .attrs = pool_attrs, .nattr = nattrs, .in_names = ins,               \
      .out_names = dx_out, .roles = ROLE_INTERNAL | (role), .emit = pool_dx_emit,        \
  }

POOL_OP(maxpool, "maxpool", "pool", 4);
POOL_OP(minpool, "minpool", "pool", 4);
POOL_OP(avgpool, "avgpool", "pool", 4);
POOL_OP(sumpool, "sumpool", "pool", 4);
POOL_OP(global_avgpool, "global_avgpool", "gap", 0);
POOL_DX_OP(maxpool_dx, "maxpool_dx", 4, dx_ext_in, ROLE_ANCHOR);
POOL_DX_OP(minpool_dx, "minpool_dx", 4, dx_ext_in, ROLE_ANCHOR);
POOL_DX_OP(avgpool_dx, "avgpool_dx", 4, dx_in, 0);
POOL_DX_OP(sumpool_dx, "sumpool_dx", 4, dx_in, 0);
POOL_DX_OP(global_avgpool_dx, "global_avgpool_dx", 0, dx_in, 0);
