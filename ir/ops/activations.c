/*
 * activations.c: activation functions.
 *
 * All but maxout are elementwise: each is a scalar rule from which the
 * kernel, epilogue fusion into conv/dense and elementwise-chain fusion are
 * derived.  Their backward rules are internal elementwise *_dx ops computing
 * dx = f'(.) * dy, reading the forward output y where f' is cheap in y
 * (relu, sigmoid, tanh, leaky_relu, elu, hardtanh: y is what the next layer
 * keeps anyway, and x may then be overwritten in place) and x otherwise
 * (softplus: 1 - exp(-y) cancels badly for small y; prelu: the sign of y
 * depends on the learned slope).
 *
 * Scalar rules parenthesize their arguments and result, and use each forward
 * argument at most twice (max(x, 0) + a min(x, 0) rather than x > 0 ? x :
 * a x): in a fused chain each argument is the whole expression of the
 * previous op, so the text grows with the product of the uses.
 *
 * prelu has a learned slope per channel, weight (C) with C = dim 0 of the
 * per-sample shape (or one for all, shared=true); its weight gradient sums
 * over the batch and positions in prelu_dw, one thread per channel
 * (deterministic for any thread count).
 *
 * maxout(x, k) takes the maximum over groups of k consecutive channels:
 * x (N, C, ...) -> y (N, C/k, ...); the gradient goes to the first maximum.
 */
#include "emit.h"

static const char *const x_names[] = {"x", NULL};
static const char *const y_names[] = {"y", NULL};
static const char *const dy_y_names[] = {"dy", "y", NULL};
static const char *const dy_x_names[] = {"dy", "x", NULL};
static const char *const dx_names[] = {"dx", NULL};

/* Output has the input's shape. */
static bool build_same_shape(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  node_output(g, node, x->shape, x->batched, x->dtype);
  return true;
}

/* dx = f'(.) * dy via the op's *_DX elementwise partner reading (dy, y). */
static int dx_from_y(Graph *g, Node *node, OpKind dx_op, int dy) {
  int in[2] = {dy, node->out[0]};
  const Value *x = val(g, node->in[0]);
  return derived_node(g, dx_op, node->id, in, 2, x->shape, x->batched);
}

/* The same, reading (dy, x). */
static int dx_from_x(Graph *g, Node *node, OpKind dx_op, int dy) {
  int in[2] = {dy, node->in[0]};
  const Value *x = val(g, node->in[0]);
  return derived_node(g, dx_op, node->id, in, 2, x->shape, x->batched);
}

/* A real literal for scalar rules (which get no Emit), parenthesized so a
 * negative value is safe after any operator. */
static const char *num(const Graph *g, double v) {
  Emit e = {.ctx = g->ctx, .g = g};
  return arena_printf(g->ctx->arena, "(%s)", lit(&e, v));
}

/* Reports an error at attribute i unless lo <= value (strictly when open). */
static bool check_min(Graph *g, Node *node, int i, double lo, bool open) {
  double v = attr_num(node, i);
  if (open ? v > lo : v >= lo)
    return true;
  error_at(g->ctx, node->attr[i].set ? node->attr[i].loc : node->loc, "%s: %s must be %s %g, got %g",
           op_def(node->op)->name, op_def(node->op)->attrs[i].name, open ? ">" : ">=", lo, v);
  return false;
}

/* ---- relu ------------------------------------------------------------------ */

static void relu_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "rmax(%s, 0)", a[0]);
}

/* Under --memory-budget (g->memory_first) the backward pass keeps the sign
 * of y as bits (relu_mask, run in the forward pass right after y) instead
 * of y, 1/32 of its f32 bytes: y itself may die as soon as the next layer
 * has read it.  Else y, which the next layer keeps anyway for its own
 * gradient, unless that layer is frozen. */
static void relu_backward(Graph *g, Node *node, const int *dout, const bool *need,
                          int *din) {
  if (!g->memory_first || !val(g, node->out[0])->batched) {
    din[0] = dx_from_y(g, node, OP_RELU_DX, dout[0]);
    return;
  }
  long words = (shape_numel(&val(g, node->out[0])->shape) + 31) / 32;
  int mask = derived_node(g, OP_RELU_MASK, node->id, &node->out[0], 1, shape_of(1, (int)words),
                          true);
  val(g, mask)->dtype = DT_I32;
  int in[2] = {dout[0], mask};
  const Value *x = val(g, node->in[0]);
  din[0] = derived_node(g, OP_RELU_MASK_DX, node->id, in, 2, x->shape, x->batched);
}

/* Words of 32 bits per sample, element i of a sample at bit i % 32 of word
 * i / 32; the loop over words q of a batch, with first the element index of
 * the word's bit 0 and count its bits. */
static void emit_word_loop(Emit *e, long numel) {
  long words = (numel + 31) / 32;
  emit_omp_for(e, "");
  emitln(e, "for (long q = 0; q < (long)n * %ld; q++) {", words);
  emitln(e, "const long first = q / %ld * %ld + q %% %ld * 32;", words, numel, words);
  emitln(e, "const int count = q %% %ld < %ld ? 32 : %ld;", words, words - 1,
         numel - (words - 1) * 32);
}

static void relu_mask_emit(Emit *e, const Graph *g, const Node *node) {
  emitln(e, "uint32_t *const bits = (uint32_t *)mask;");
  emit_word_loop(e, shape_numel(&val(g, node->in[0])->shape));
  emitln(e, "uint32_t word = 0;");
  emitln(e, "for (int j = 0; j < count; j++)");
  emitln(e, "    word |= (uint32_t)(y[first + j] > 0) << j;");
  emitln(e, "bits[q] = word;");
  emitln(e, "}");
}

static void relu_mask_dx_emit(Emit *e, const Graph *g, const Node *node) {
  emitln(e, "const uint32_t *const bits = (const uint32_t *)mask;");
  emit_word_loop(e, shape_numel(&val(g, node->out[0])->shape));
  emitln(e, "const uint32_t word = bits[q];");
  emitln(e, "for (int j = 0; j < count; j++)");
  emitln(e, "    dx[first + j] = word >> j & 1 ? dy[first + j] : 0;");
  emitln(e, "}");
}

static void relu_dx_scalar(Buf *b, const Graph *g, const Node *node,
                           const char *const *a) {
  buf_printf(b, "rpick((%s) > 0, %s, 0)", a[1], a[0]);
}

const OpDef op_relu = {
    .name = "relu", .prefix = "relu", .min_in = 1, .max_in = 1,
    .in_names = x_names, .out_names = y_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_RECTIFIER,
    .build = build_same_shape, .emit = emit_elementwise, .scalar = relu_scalar,
    .backward = relu_backward,
};

const OpDef op_relu_dx = {
    .name = "relu_dx", .min_in = 2, .max_in = 2,
    .in_names = dy_y_names, .out_names = dx_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_INTERNAL,
    .emit = emit_elementwise, .scalar = relu_dx_scalar,
};

static const char *const mask_names[] = {"mask", NULL};
static const char *const dy_mask_names[] = {"dy", "mask", NULL};

const OpDef op_relu_mask = {
    .name = "relu_mask", .in_names = y_names, .out_names = mask_names,
    .roles = ROLE_INTERNAL | ROLE_SAVED, .emit = relu_mask_emit,
};

const OpDef op_relu_mask_dx = {
    .name = "relu_mask_dx", .in_names = dy_mask_names, .out_names = dx_names,
    .roles = ROLE_INTERNAL | ROLE_INPLACE, .emit = relu_mask_dx_emit,
};

/* ---- sigmoid: 1 / (1 + e^-x); e^-x overflows to inf for x << 0, giving 0.
 * dx = dy y (1 - y). ---------------------------------------------------------- */

static void sigmoid_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "(1 / (1 + rexp(-(%s))))", a[0]);
}

static void sigmoid_backward(Graph *g, Node *node, const int *dout, const bool *need,
                             int *din) {
  din[0] = dx_from_y(g, node, OP_SIGMOID_DX, dout[0]);
}

static void sigmoid_dx_scalar(Buf *b, const Graph *g, const Node *node,
                              const char *const *a) {
  buf_printf(b, "((%s) * (%s) * (1 - (%s)))", a[0], a[1], a[1]);
}

const OpDef op_sigmoid = {
    .name = "sigmoid", .prefix = "sigmoid", .min_in = 1, .max_in = 1,
    .in_names = x_names, .out_names = y_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE,
    .build = build_same_shape, .emit = emit_elementwise, .scalar = sigmoid_scalar,
    .backward = sigmoid_backward,
};

const OpDef op_sigmoid_dx = {
    .name = "sigmoid_dx", .min_in = 2, .max_in = 2,
    .in_names = dy_y_names, .out_names = dx_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_INTERNAL,
    .emit = emit_elementwise, .scalar = sigmoid_dx_scalar,
};

/* ---- tanh: dx = dy (1 - y^2) -------------------------------------------------- */

static void tanh_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "rtanh(%s)", a[0]);
}

static void tanh_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  din[0] = dx_from_y(g, node, OP_TANH_DX, dout[0]);
}

static void tanh_dx_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "((%s) * (1 - (%s) * (%s)))", a[0], a[1], a[1]);
}

const OpDef op_tanh = {
    .name = "tanh", .prefix = "tanh", .min_in = 1, .max_in = 1,
    .in_names = x_names, .out_names = y_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE,
    .build = build_same_shape, .emit = emit_elementwise, .scalar = tanh_scalar,
    .backward = tanh_backward,
};

const OpDef op_tanh_dx = {
    .name = "tanh_dx", .min_in = 2, .max_in = 2,
    .in_names = dy_y_names, .out_names = dx_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_INTERNAL,
    .emit = emit_elementwise, .scalar = tanh_dx_scalar,
};

/* ---- leaky_relu(alpha) and elu(alpha).  alpha >= 0 keeps sign(y) ==
 * sign(x), so the backward rules can test y instead of x.  elu's slope left
 * of 0 is alpha e^x = y + alpha. ------------------------------------------------- */

enum { A_ALPHA };

static const AttrSpec leaky_attrs[] = {{"alpha", ATTR_FLOAT, "0.01"}};
static const AttrSpec elu_attrs[] = {{"alpha", ATTR_FLOAT, "1"}};

static bool build_alpha(Graph *g, Node *node) {
  return check_min(g, node, A_ALPHA, 0, false) && build_same_shape(g, node);
}

static void leaky_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "(rmax(%s, 0) + %s * rmin(%s, 0))", a[0], num(g, attr_num(node, A_ALPHA)),
             a[0]);
}

static void leaky_backward(Graph *g, Node *node, const int *dout, const bool *need,
                           int *din) {
  din[0] = dx_from_y(g, node, OP_LEAKY_RELU_DX, dout[0]);
}

static void leaky_dx_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "rpick((%s) > 0, %s, %s * (%s))", a[1], a[0], num(g, attr_num(node, A_ALPHA)),
             a[0]);
}

const OpDef op_leaky_relu = {
    .name = "leaky_relu", .prefix = "lrelu", .min_in = 1, .max_in = 1,
    .attrs = leaky_attrs, .nattr = 1, .in_names = x_names, .out_names = y_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_RECTIFIER,
    .build = build_alpha, .emit = emit_elementwise, .scalar = leaky_scalar,
    .backward = leaky_backward,
};

const OpDef op_leaky_relu_dx = {
    .name = "leaky_relu_dx", .min_in = 2, .max_in = 2,
    .attrs = leaky_attrs, .nattr = 1, .in_names = dy_y_names, .out_names = dx_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_INTERNAL,
    .emit = emit_elementwise, .scalar = leaky_dx_scalar,
};

static void elu_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "(rmax(%s, 0) + %s * rexpm1(rmin(%s, 0)))", a[0],
             num(g, attr_num(node, A_ALPHA)), a[0]);
}

static void elu_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  din[0] = dx_from_y(g, node, OP_ELU_DX, dout[0]);
}

static void elu_dx_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "rpick((%s) > 0, %s, (%s) * ((%s) + %s))", a[1], a[0], a[0], a[1],
             num(g, attr_num(node, A_ALPHA)));
}

const OpDef op_elu = {
    .name = "elu", .prefix = "elu", .min_in = 1, .max_in = 1,
    .attrs = elu_attrs, .nattr = 1, .in_names = x_names, .out_names = y_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_RECTIFIER,
    .build = build_alpha, .emit = emit_elementwise, .scalar = elu_scalar,
    .backward = elu_backward,
};

const OpDef op_elu_dx = {
    .name = "elu_dx", .min_in = 2, .max_in = 2,
    .attrs = elu_attrs, .nattr = 1, .in_names = dy_y_names, .out_names = dx_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_INTERNAL,
    .emit = emit_elementwise, .scalar = elu_dx_scalar,
};

/* ---- softplus: log(1 + e^x) = max(x, 0) + log1p(e^-|x|), which neither
 * overflows nor loses the small values far left.  dx = dy sigmoid(x). ------ */

static void softplus_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "(rmax(%s, 0) + rlog1p(rexp(-rfabs(%s))))", a[0], a[0]);
}

static void softplus_backward(Graph *g, Node *node, const int *dout, const bool *need,
                              int *din) {
  din[0] = dx_from_x(g, node, OP_SOFTPLUS_DX, dout[0]);
}

static void softplus_dx_scalar(Buf *b, const Graph *g, const Node *node,
                               const char *const *a) {
  buf_printf(b, "((%s) / (1 + rexp(-(%s))))", a[0], a[1]);
}

const OpDef op_softplus = {
    .name = "softplus", .prefix = "softplus", .min_in = 1, .max_in = 1,
    .in_names = x_names, .out_names = y_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE,
    .build = build_same_shape, .emit = emit_elementwise, .scalar = softplus_scalar,
    .backward = softplus_backward,
};

const OpDef op_softplus_dx = {
    .name = "softplus_dx", .min_in = 2, .max_in = 2,
    .in_names = dy_x_names, .out_names = dx_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_INTERNAL,
    .emit = emit_elementwise, .scalar = softplus_dx_scalar,
};

/* ---- hardtanh(min=-1, max=1) and clip(min, max): y = min(max(x, lo), hi).
 * y strictly inside (lo, hi) exactly when x is, so dx tests y. ------------- */

enum { A_MIN, A_MAX };

static const AttrSpec hardtanh_attrs[] = {{"min", ATTR_FLOAT, "-1"}, {"max", ATTR_FLOAT, "1"}};
static const AttrSpec clip_attrs[] = {{"min", ATTR_FLOAT, NULL}, {"max", ATTR_FLOAT, NULL}};

static bool build_clip(Graph *g, Node *node) {
  double lo = attr_num(node, A_MIN), hi = attr_num(node, A_MAX);
  if (!(lo < hi)) {
    error_at(g->ctx, node->attr[A_MAX].set ? node->attr[A_MAX].loc : node->loc,
             "%s: min (%g) must be less than max (%g)", op_def(node->op)->name, lo, hi);
    return false;
  }
  return build_same_shape(g, node);
}

static void clip_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "rmin(rmax(%s, %s), %s)", a[0], num(g, attr_num(node, A_MIN)),
             num(g, attr_num(node, A_MAX)));
}

static void clip_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  din[0] = dx_from_y(g, node, OP_HARDTANH_DX, dout[0]);
}

static void clip_dx_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "rpick(((%s) > %s) & ((%s) < %s), %s, 0)", a[1], num(g, attr_num(node, A_MIN)),
             a[1], num(g, attr_num(node, A_MAX)), a[0]);
}

const OpDef op_hardtanh = {
    .name = "hardtanh", .prefix = "hardtanh", .min_in = 1, .max_in = 1,
    .attrs = hardtanh_attrs, .nattr = 2, .in_names = x_names, .out_names = y_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE,
    .build = build_clip, .emit = emit_elementwise, .scalar = clip_scalar,
    .backward = clip_backward,
};

const OpDef op_clip = {
    .name = "clip", .prefix = "clip", .min_in = 1, .max_in = 1,
    .attrs = clip_attrs, .nattr = 2, .in_names = x_names, .out_names = y_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE,
    .build = build_clip, .emit = emit_elementwise, .scalar = clip_scalar,
    .backward = clip_backward,
};

/* Serves both: hardtanh's and clip's attributes are in the same order. */
const OpDef op_hardtanh_dx = {
    .name = "hardtanh_dx", .min_in = 2, .max_in = 2,
    .attrs = hardtanh_attrs, .nattr = 2, .in_names = dy_y_names, .out_names = dx_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_INTERNAL,
    .emit = emit_elementwise, .scalar = clip_dx_scalar,
};

/* ---- prelu: y = x > 0 ? x : weight[c] x, weight (C) initialized to 0.25
 * as PyTorch's PReLU and never decayed.  dx = dy (x > 0 ? 1 : weight[c]);
 * dweight[c] = sum over the batch and positions of channel c of dy x where
 * x <= 0.  With shared=true (PyTorch's default nn.PReLU()) weight is (1),
 * one slope for every channel: the elementwise kernels read a (1) input as
 * weight[0], and dweight[0] sums over everything. ------------------------------ */

enum { A_SHARED };
static const AttrSpec prelu_attrs[] = {{"shared", ATTR_BOOL, "false"}};
static const char *const prelu_in[] = {"x", "weight", NULL};
static const char *const prelu_dx_in[] = {"dy", "x", "weight", NULL};
static const char *const prelu_dw_out[] = {"dweight", NULL};

static bool prelu_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  if (!x->batched || x->shape.rank < 1) {
    error_at(g->ctx, node->loc, "prelu: the input must be a batch of tensors");
    return false;
  }
  Shape w = shape_of(1, attr_num(node, A_SHARED) != 0 ? 1 : x->shape.dim[0]);
  if (!check_shape(g, node, w))
    return false;
  node_param(g, node, "weight", w, (Init){.kind = INIT_CONST, .value = 0.25}, false);
  x = val(g, node->in[0]);
  node_output(g, node, x->shape, x->batched, x->dtype);
  return true;
}

static void prelu_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "(rmax(%s, 0) + (%s) * rmin(%s, 0))", a[0], a[1], a[0]);
}

static void prelu_dx_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "rpick((%s) > 0, %s, (%s) * (%s))", a[1], a[0], a[2], a[0]);
}

/* dweight (C) from dy, x (N, C, ...): a thread owns each channel and sums
 * over the batch in order.  A shared slope, dweight (1): one sum over all,
 * in double, in order. */
static void prelu_dw_emit(Emit *e, const Graph *g, const Node *node) {
  const Value *x = val(g, node->in[1]);
  long numel = shape_numel(&x->shape);
  int channels = x->shape.dim[0];
  long inner = numel / channels;
  if (shape_numel(&val(g, node->out[0])->shape) == 1 && channels > 1) {
    emitln(e, "double acc = 0;");
    emitln(e, "for (long i = 0; i < (long)n * %ld; i++)", numel);
    emitln(e, "    acc += x[i] > 0 ? 0 : (double)dy[i] * x[i];");
    emitln(e, "dweight[0] = (real)acc;");
    return;
  }
  emit_omp_for(e, "");
  emitln(e, "for (int c = 0; c < %d; c++) {", channels);
  emitln(e, "real acc = 0;");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "const long base = (long)b * %ld + (long)c * %ld;", numel, inner);
  emitln(e, "for (long s = 0; s < %ld; s++)", inner);
  emitln(e, "    acc += x[base + s] > 0 ? 0 : dy[base + s] * x[base + s];");
  emitln(e, "}");
  emitln(e, "dweight[c] = acc;");
  emitln(e, "}");
}

static void prelu_backward(Graph *g, Node *node, const int *dout, const bool *need,
                           int *din) {
  int x = node->in[0], w = node->in[1];
  if (need[0]) {
    int in[3] = {dout[0], x, w};
    din[0] = derived_node(g, OP_PRELU_DX, node->id, in, 3, val(g, x)->shape, true);
  }
  if (need[1]) {
    int in[2] = {dout[0], x};
    din[1] = derived_node(g, OP_PRELU_DW, node->id, in, 2, val(g, w)->shape, false);
  }
}

const OpDef op_prelu = {
    .name = "prelu", .prefix = "prelu", .min_in = 1, .max_in = 1,
    .attrs = prelu_attrs, .nattr = 1, .in_names = prelu_in, .out_names = y_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_RECTIFIER,
    .build = prelu_build, .emit = emit_elementwise, .scalar = prelu_scalar,
    .backward = prelu_backward,
};

const OpDef op_prelu_dx = {
    .name = "prelu_dx", .min_in = 3, .max_in = 3,
    .in_names = prelu_dx_in, .out_names = dx_names,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_INTERNAL,
    .emit = emit_elementwise, .scalar = prelu_dx_scalar,
};

const OpDef op_prelu_dw = {
    .name = "prelu_dw", .min_in = 2, .max_in = 2,
    .in_names = dy_x_names, .out_names = prelu_dw_out, .roles = ROLE_INTERNAL,
    .emit = prelu_dw_emit,
};

/* ---- maxout(x, k): y[b, g, s] = max over j < k of x[b, g k + j, s].  The
 * group of output (b, g) is the contiguous block x + (b G + g) k inner. ---- */

enum { A_K };

static const AttrSpec maxout_attrs[] = {{"k", ATTR_INT, NULL}};

static bool maxout_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  int k = attr_int(node, A_K);
  if (k < 1) {
    error_at(g->ctx, node->attr[A_K].loc, "maxout: k must be positive, got %d", k);
    return false;
  }
  if (!x->batched || x->shape.rank < 1 || x->shape.dim[0] % k != 0) {
    error_at(g->ctx, node->attr[A_K].loc,
             "maxout: %d channels (dim 0 of %s) are not divisible by k = %d",
             x->shape.rank ? x->shape.dim[0] : 0, shape_str(g->ctx->arena, &x->shape), k);
    return false;
  }
  Shape y = x->shape;
  y.dim[0] /= k;
  if (!check_shape(g, node, y))
    return false;
  node_output(g, node, y, true, x->dtype);
  return true;
}

/* Loop over (sample, group) pairs and positions: xg is the group's block,
 * `best` the index j of the first maximum at position s. */
static void maxout_loops(Emit *e, const Graph *g, const Node *node, int x_arg) {
  const Value *x = val(g, node->in[x_arg]);
  int k = attr_int(node, A_K);
  int groups = x->shape.dim[0] / k;
  long inner = shape_numel(&x->shape) / x->shape.dim[0];
  emit_omp_for(e, "");
  emitln(e, "for (long ng = 0; ng < (long)n * %d; ng++) {", groups);
  emitln(e, "const real *xg = x + ng * %ld;", (long)k * inner);
  emitln(e, "for (long s = 0; s < %ld; s++) {", inner);
  emitln(e, "int best = 0;");
  emitln(e, "for (int j = 1; j < %d; j++)", k);
  emitln(e, "    if (xg[(long)j * %ld + s] > xg[(long)best * %ld + s])", inner, inner);
  emitln(e, "        best = j;");
}

static void maxout_emit(Emit *e, const Graph *g, const Node *node) {
  long inner = shape_numel(&val(g, node->out[0])->shape) / val(g, node->out[0])->shape.dim[0];
  maxout_loops(e, g, node, 0);
  emitln(e, "y[ng * %ld + s] = xg[(long)best * %ld + s];", inner, inner);
  emitln(e, "}");
  emitln(e, "}");
}

/* dx (N, C, ...) from dy (N, C/k, ...) and x: each group block of dx is
 * written entirely by the thread owning it. */
static void maxout_dx_emit(Emit *e, const Graph *g, const Node *node) {
  const Value *x = val(g, node->in[1]);
  int k = attr_int(node, A_K);
  long inner = shape_numel(&x->shape) / x->shape.dim[0];
  maxout_loops(e, g, node, 1);
  emitln(e, "for (int j = 0; j < %d; j++)", k);
  emitln(e, "    dx[ng * %ld + (long)j * %ld + s] = j == best ? dy[ng * %ld + s] : 0;",
         (long)k * inner, inner, inner);
  emitln(e, "}");
  emitln(e, "}");
}

static void maxout_backward(Graph *g, Node *node, const int *dout, const bool *need,
                            int *din) {
  din[0] = dx_from_x(g, node, OP_MAXOUT_DX, dout[0]);
}

const OpDef op_maxout = {
    .name = "maxout", .prefix = "maxout", .min_in = 1, .max_in = 1,
    .attrs = maxout_attrs, .nattr = 1, .in_names = x_names, .out_names = y_names,
    .build = maxout_build, .emit = maxout_emit, .backward = maxout_backward,
};

const OpDef op_maxout_dx = {
    .name = "maxout_dx", .min_in = 2, .max_in = 2,
    .attrs = maxout_attrs, .nattr = 1, .in_names = dy_x_names, .out_names = dx_names,
    .roles = ROLE_INTERNAL, .emit = maxout_dx_emit,
};
