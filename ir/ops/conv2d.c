/*
 * conv2d.c: 2-D convolution (cross-correlation, as PyTorch's Conv2d) and its
 * backward kernels.
 *
 *   x (N, C, H, W), w (O, C/G, K, K) as PyTorch's Conv2d.weight (OIHW),
 *   bias (O), y (N, O, Ho, Wo) with Ho = (H + 2P - K) / S + 1 (same for W).
 *   G groups: output channel o reads input channels [g*C/G, (g+1)*C/G) with
 *   g = o / (O/G); G == C is a depthwise convolution.
 *
 * The forward kernel is a direct convolution with every size a constant.
 * Zero padding is never materialized: per output row and column the kernel
 * window is clamped to the part that lies inside the input, so the inner
 * loops carry no bounds tests.  conv2d is an epilogue anchor: a fused
 * activation is applied to the accumulator before the single store of y.
 *
 * Backward kernels are deterministic for any thread count because each
 * thread owns the outputs it sums into: dx gathers per (sample, input
 * channel), dw sums per (output channel, input channel of the group) over
 * the batch in a fixed order, db per output channel.
 */
#include <limits.h>

#include "codegen.h"

enum { A_CHANNELS, A_KERNEL, A_STRIDE, A_PAD, A_BIAS, A_GROUPS, NATTR };

static const AttrSpec conv2d_attrs[NATTR] = {
    {"channels", ATTR_INT, NULL}, {"kernel", ATTR_INT, NULL}, {"stride", ATTR_INT, "1"},
    {"pad", ATTR_INT, "0"},       {"bias", ATTR_BOOL, "true"}, {"groups", ATTR_INT, "1"},
};

static const char *const fwd_in[] = {"x", "w", "bias", NULL};
static const char *const fwd_out[] = {"y", NULL};

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
  return true;
}

/* ---- forward ------------------------------------------------------------- */

/* The kernel window rows [kh0, kh1) that fall inside the input for the output
 * row whose window starts at input row ih0 (may be negative); likewise for
 * columns.  Without padding the window always fits. */
static void emit_window(Emit *e, const Conv *v, const char *a, const char *start, int size) {
  if (v->p == 0) {
    emitln(e, "const int %s0 = 0, %s1 = %d;", a, a, v->k);
    return;
  }
  emitln(e, "const int %s0 = %s < 0 ? -%s : 0;", a, start, start);
  emitln(e, "const int %s1 = %s + %d > %d ? %d - %s : %d;", a, start, v->k, size, size,
         start, v->k);
}

static void conv2d_emit(Emit *e, const Graph *g, const Node *node) {
  Conv v = conv_dims(node, &val(g, node->in[0])->shape, &val(g, node->out[0])->shape);
  bool bias = node->nin > 2;
  emit_omp_for(e, "collapse(2)");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "for (int o = 0; o < %d; o++) {", v.o);
  emitln(e, "const real *xg = x + ((long)b * %d + o / %d * %d) * %ld;", v.c, v.opg, v.cpg,
         v.hw);
  emitln(e, "const real *wo = w + (long)o * %ld;", v.fsize);
  emitln(e, "const long yb = ((long)b * %d + o) * %ld;", v.o, v.howo);
  emitln(e, "for (int oh = 0; oh < %d; oh++) {", v.ho);
  emitln(e, "const int ih0 = oh * %d - %d;", v.s, v.p);
  emit_window(e, &v, "kh", "ih0", v.h);
  emitln(e, "for (int ow = 0; ow < %d; ow++) {", v.wo);
  emitln(e, "const int iw0 = ow * %d - %d;", v.s, v.p);
  emit_window(e, &v, "kw", "iw0", v.w);
  emitln(e, "real acc = %s;", bias ? "bias[o]" : "0");
  emitln(e, "for (int c = 0; c < %d; c++) {", v.cpg);
  emitln(e, "const real *xc = xg + (long)c * %ld;", v.hw);
  emitln(e, "const real *wc = wo + (long)c * %ld;", v.kk);
  emitln(e, "for (int kh = kh0; kh < kh1; kh++)");
  emitln(e, "    for (int kw = kw0; kw < kw1; kw++)");
  emitln(e, "        acc += wc[kh * %d + kw] * xc[(long)(ih0 + kh) * %d + iw0 + kw];", v.k, v.w);
  emitln(e, "}");
  const char *i = arena_printf(e->ctx->arena, "(yb + (long)oh * %d + ow)", v.wo);
  emitln(e, "y[%s] = %s;", i, epilogue_expr(e, node, "acc", "o", i));
  emitln(e, "}");
  emitln(e, "}");
  emitln(e, "}");
  emitln(e, "}");
}

static double conv2d_flops(const Graph *g, const Node *node) {
  const Value *y = val(g, node->out[0]);
  double positions = (double)y->shape.dim[1] * y->shape.dim[2];
  return 2.0 * (double)shape_numel(&val(g, node->in[1])->shape) * positions;
}

/* ---- backward ------------------------------------------------------------ */

/* The kernel rows kh (step S) through which input row `pos` reaches an
 * output row oh = (pos + P - kh) / S in [0, out): kh is congruent to pos + P
 * modulo S, so the lowest candidate is (pos + P) % S, raised to the first kh
 * with oh <= out - 1 (which is congruent too), and capped by kh <= pos + P. */
static void emit_taps(Emit *e, const Conv *v, const char *a, const char *pos, int out) {
  emitln(e, "const int %sr = %s + %d;", a, pos, v->p);
  emitln(e, "const int %slo = %sr - %d;", a, a, (out - 1) * v->s);
  emitln(e, "const int %s0 = %slo > %sr %% %d ? %slo : %sr %% %d;", a, a, a, v->s, a, a,
         v->s);
  emitln(e, "const int %s1 = %sr < %d ? %sr : %d;", a, a, v->k - 1, a, v->k - 1);
}

/* dx (N, C, H, W): each (sample, input channel) plane is gathered by one
 * thread from dy of the group's output channels through the taps that reach
 * each input pixel. */
static void conv2d_dx_emit(Emit *e, const Graph *g, const Node *node) {
  Conv v = conv_dims(node, &val(g, node->out[0])->shape, &val(g, node->in[0])->shape);
  emit_omp_for(e, "collapse(2)");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "for (int c = 0; c < %d; c++) {", v.c);
  emitln(e, "const int o0 = c / %d * %d;", v.cpg, v.opg);
  emitln(e, "const real *wc = w + (long)o0 * %ld + (long)(c %% %d) * %ld;", v.fsize, v.cpg,
         v.kk);
  emitln(e, "const real *dyg = dy + ((long)b * %d + o0) * %ld;", v.o, v.howo);
  emitln(e, "real *dxc = dx + ((long)b * %d + c) * %ld;", v.c, v.hw);
  emitln(e, "for (int ih = 0; ih < %d; ih++) {", v.h);
  emit_taps(e, &v, "kh", "ih", v.ho);
  emitln(e, "for (int iw = 0; iw < %d; iw++) {", v.w);
  emit_taps(e, &v, "kw", "iw", v.wo);
  emitln(e, "real acc = 0;");
  emitln(e, "for (int o = 0; o < %d; o++)", v.opg);
  emitln(e, "    for (int kh = kh0; kh <= kh1; kh += %d)", v.s);
  emitln(e, "        for (int kw = kw0; kw <= kw1; kw += %d)", v.s);
  emitln(e, "            acc += dyg[(long)o * %ld + (long)((khr - kh) / %d) * %d + (kwr - kw) / %d]",
         v.howo, v.s, v.wo, v.s);
  emitln(e, "                   * wc[(long)o * %ld + kh * %d + kw];", v.fsize, v.k);
  emitln(e, "dxc[ih * %d + iw] = acc;", v.w);
  emitln(e, "}");
  emitln(e, "}");
  emitln(e, "}");
  emitln(e, "}");
}

/* The output rows [a0, a1) whose window row `tap` lands inside the input:
 * 0 <= oh * S - P + tap < size. */
static void emit_rows(Emit *e, const Conv *v, const char *a, const char *tap, int size,
                      int out) {
  emitln(e, "const int %slo = %d - %s, %shi = %d - %s;", a, v->p, tap, a, size - 1 + v->p,
         tap);
  emitln(e, "const int %s0 = %slo > 0 ? (%slo + %d) / %d : 0;", a, a, a, v->s - 1, v->s);
  emitln(e, "const int %s1 = %shi < 0 ? 0 : (%shi / %d + 1 < %d ? %shi / %d + 1 : %d);", a, a,
         a, v->s, out, a, v->s, out);
}

/* dw (O, C/G, K, K): one thread owns each (o, c) filter slice and sums over
 * the batch and the output positions in a fixed order. */
static void conv2d_dw_emit(Emit *e, const Graph *g, const Node *node) {
  Conv v = conv_dims(node, &val(g, node->in[1])->shape, &val(g, node->in[0])->shape);
  emit_omp_for(e, "collapse(2)");
  emitln(e, "for (int o = 0; o < %d; o++) {", v.o);
  emitln(e, "for (int c = 0; c < %d; c++) {", v.cpg);
  emitln(e, "const int ci = o / %d * %d + c;", v.opg, v.cpg);
  emitln(e, "for (int kh = 0; kh < %d; kh++) {", v.k);
  emit_rows(e, &v, "oh", "kh", v.h, v.ho);
  emitln(e, "for (int kw = 0; kw < %d; kw++) {", v.k);
  emit_rows(e, &v, "ow", "kw", v.w, v.wo);
  emitln(e, "real acc = 0;");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "const real *dyo = dy + ((long)b * %d + o) * %ld;", v.o, v.howo);
  emitln(e, "const real *xc = x + ((long)b * %d + ci) * %ld;", v.c, v.hw);
  emitln(e, "for (int oh = oh0; oh < oh1; oh++)");
  emitln(e, "    for (int ow = ow0; ow < ow1; ow++)");
  emitln(e, "        acc += dyo[(long)oh * %d + ow] * xc[(long)(oh * %d - %d + kh) * %d + ow * %d - %d + kw];",
         v.wo, v.s, v.p, v.w, v.s, v.p);
  emitln(e, "}");
  emitln(e, "dw[(long)o * %ld + (long)c * %ld + kh * %d + kw] = acc;", v.fsize, v.kk, v.k);
  emitln(e, "}");
  emitln(e, "}");
  emitln(e, "}");
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
  int dy = dout[0], x = node->in[0], w = node->in[1];
  if (need[0]) {
    int in[2] = {dy, w};
    din[0] = derived_node(g, OP_CONV2D_DX, node->id, in, 2, val(g, x)->shape, true);
  }
  if (need[1]) {
    int in[2] = {dy, x};
    din[1] = derived_node(g, OP_CONV2D_DW, node->id, in, 2, val(g, w)->shape, false);
  }
  if (node->nin > 2 && need[2]) {
    int in[1] = {dy};
    din[2] = derived_node(g, OP_CONV2D_DB, node->id, in, 1, val(g, node->in[2])->shape,
                          false);
  }
}

const OpDef op_conv2d = {
    .name = "conv2d", .prefix = "conv", .min_in = 1, .max_in = 1,
    .attrs = conv2d_attrs, .nattr = NATTR, .in_names = fwd_in, .out_names = fwd_out,
    .roles = ROLE_ANCHOR,
    .build = conv2d_build, .emit = conv2d_emit, .backward = conv2d_backward,
    .flops = conv2d_flops,
};

static const char *const dx_in[] = {"dy", "w", NULL}, *const dx_out[] = {"dx", NULL};
static const char *const dw_in[] = {"dy", "x", NULL}, *const dw_out[] = {"dw", NULL};
static const char *const db_in[] = {"dy", NULL}, *const db_out[] = {"db", NULL};

const OpDef op_conv2d_dx = {
    .name = "conv2d_dx", .attrs = conv2d_attrs, .nattr = NATTR, .in_names = dx_in,
    .out_names = dx_out, .roles = ROLE_INTERNAL, .emit = conv2d_dx_emit,
};
const OpDef op_conv2d_dw = {
    .name = "conv2d_dw", .attrs = conv2d_attrs, .nattr = NATTR, .in_names = dw_in,
    .out_names = dw_out, .roles = ROLE_INTERNAL, .emit = conv2d_dw_emit,
};
const OpDef op_conv2d_db = {
    .name = "conv2d_db", .attrs = conv2d_attrs, .nattr = NATTR, .in_names = db_in,
    .out_names = db_out, .roles = ROLE_INTERNAL, .emit = conv2d_db_emit,
};
