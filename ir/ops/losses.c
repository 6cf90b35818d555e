/*
 * losses.c: loss functions, each a ROLE_LOSS op whose output is the mean
 * loss over the batch (a scalar), with its gradient kernel beside it.  The
 * gradient of the loss itself is 1, so backward rules ignore dout.
 *
 * cross_entropy(logits, labels): softmax and negative log-likelihood in one
 * op, with the log-sum-exp shifted by the row maximum (stable for any
 * logits); its gradient is (softmax - onehot) / n, never forming 1/p.
 */
#include "emit.h"

static const char *const xent_in[] = {"logits", "labels", NULL};
static const char *const loss_out[] = {"loss", NULL};
static const char *const dlogits_out[] = {"dlogits", NULL};

static bool xent_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]), *y = val(g, node->in[1]);
  Arena *a = g->ctx->arena;
  if (x->shape.rank != 1 || !x->batched) {
    error_at(g->ctx, node->loc, "cross_entropy: logits must be (N, K), got %s; flatten first",
             shape_str(a, &x->shape));
    return false;
  }
  if (y->dtype != DT_I32 || y->classes <= 0) {
    error_at(g->ctx, node->loc, "cross_entropy: the target must be class labels (class[K])");
    return false;
  }
  if (y->classes != x->shape.dim[0]) {
    error_at(g->ctx, node->loc, "cross_entropy: %d logits per sample, but the target has %d classes",
             x->shape.dim[0], y->classes);
    return false;
  }
  node_output(g, node, shape_of(1, 1), false, g->dtype);
  return true;
}

/* Per sample: log-sum-exp of the row, shifted by its maximum. */
static void emit_lse(Emit *e, int k) {
  emitln(e, "const real *row = logits + (long)b * %d;", k);
  emitln(e, "real mx = row[0];");
  emitln(e, "for (int k = 1; k < %d; k++)", k);
  emitln(e, "    mx = rmax(mx, row[k]);");
  emitln(e, "real sum = 0;");
  emitln(e, "for (int k = 0; k < %d; k++)", k);
  emitln(e, "    sum += rexp(row[k] - mx);");
}

static void xent_emit(Emit *e, const Graph *g, const Node *node) {
  int k = val(g, node->in[0])->shape.dim[0];
  emitln(e, "double total = 0;");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emit_lse(e, k);
  emitln(e, "total += (double)(mx + rlog(sum) - row[labels[b]]);");
  emitln(e, "}");
  emitln(e, "loss[0] = (real)(total / n);");
}

static void xent_dx_emit(Emit *e, const Graph *g, const Node *node) {
  int k = val(g, node->in[0])->shape.dim[0];
  emit_omp_for(e, "");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emit_lse(e, k);
  emitln(e, "real *d = dlogits + (long)b * %d;", k);
  emitln(e, "for (int k = 0; k < %d; k++)", k);
  emitln(e, "    d[k] = (rexp(row[k] - mx) / sum - (k == labels[b])) / n;");
  emitln(e, "}");
}

static void xent_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  const Value *x = val(g, node->in[0]);
  din[0] = derived_node(g, OP_SOFTMAX_XENT_DX, node->id, node->in, 2, x->shape, true);
}

const OpDef op_softmax_xent = {
    .name = "cross_entropy", .prefix = "loss", .min_in = 2, .max_in = 2,
    .in_names = xent_in, .out_names = loss_out, .roles = ROLE_LOSS,
    .build = xent_build, .emit = xent_emit, .backward = xent_backward,
};

const OpDef op_softmax_xent_dx = {
    .name = "cross_entropy_dx", .min_in = 2, .max_in = 2,
    .in_names = xent_in, .out_names = dlogits_out, .roles = ROLE_INTERNAL,
    .emit = xent_dx_emit,
};

/* ---- mse(pred, target): mean over the batch of the mean squared error per
 * sample (PyTorch's MSELoss with reduction='mean'). ---------------------- */

static const char *const mse_in[] = {"pred", "target", NULL};
static const char *const dpred_out[] = {"dpred", NULL};

static bool same_shape(const Value *a, const Value *b) {
  if (a->shape.rank != b->shape.rank)
    return false;
  for (int d = 0; d < a->shape.rank; d++)
    if (a->shape.dim[d] != b->shape.dim[d])
      return false;
  return true;
}

static bool regression_build(Graph *g, Node *node) {
  const Value *p = val(g, node->in[0]), *t = val(g, node->in[1]);
  Arena *a = g->ctx->arena;
  if (t->dtype == DT_I32 || !same_shape(p, t) || !p->batched) {
    error_at(g->ctx, node->loc, "%s: prediction %s and target %s%s must have one shape",
             op_def(node->op)->name, shape_str(a, &p->shape), shape_str(a, &t->shape),
             t->dtype == DT_I32 ? " (class labels)" : "");
    return false;
  }
  node_output(g, node, shape_of(1, 1), false, g->dtype);
  return true;
}

/* double total = the sum over the n K elements i of s, which `lines`
 * compute from i (the last one defines `const double s`).  In LOSS_LANES
 * partial sums, lane j taking the elements j mod LOSS_LANES, added in
 * order at the end: a fixed order that vectorizes, where one running sum
 * was a chain of dependent additions (1 ms per million elements). */
enum { LOSS_LANES = 16 };

static void emit_loss_body(Emit *e, const char *const *lines) {
  emitln(e, "const long i = i0 + j;");
  for (int q = 0; lines[q]; q++)
    emitln(e, "%s", lines[q]);
  emitln(e, "lane[j] += s;");
}

static void emit_total(Emit *e, long k, const char *const *lines) {
  emitln(e, "double total = 0;");
  emitln(e, "{");
  emitln(e, "double lane[%d] = {0};", LOSS_LANES);
  emitln(e, "const long len = (long)n * %ld;", k);
  emitln(e, "long i0 = 0;");
  emitln(e, "for (; i0 + %d <= len; i0 += %d)", LOSS_LANES, LOSS_LANES);
  emitln(e, "    for (int j = 0; j < %d; j++) {", LOSS_LANES);
  e->indent++;
  emit_loss_body(e, lines);
  e->indent--;
  emitln(e, "    }");
  emitln(e, "for (int j = 0; i0 + j < len; j++) {");
  emit_loss_body(e, lines);
  emitln(e, "}");
  emitln(e, "for (int j = 0; j < %d; j++)", LOSS_LANES);
  emitln(e, "    total += lane[j];");
  emitln(e, "}");
}

static void mse_emit(Emit *e, const Graph *g, const Node *node) {
  long k = shape_numel(&val(g, node->in[0])->shape);
  emit_total(e, k, (const char *const[]){"const double d = (double)pred[i] - (double)target[i];",
                                         "const double s = d * d;", NULL});
  emitln(e, "loss[0] = (real)(total / ((double)n * %ld));", k);
}

static void mse_dx_emit(Emit *e, const Graph *g, const Node *node) {
  long k = shape_numel(&val(g, node->in[0])->shape);
  emit_omp_for(e, "");
  emitln(e, "for (long i = 0; i < (long)n * %ld; i++)", k);
  emitln(e, "    dpred[i] = (real)(2.0 * ((double)pred[i] - (double)target[i]) / ((double)n * %ld));", k);
}

static void mse_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  const Value *p = val(g, node->in[0]);
  din[0] = derived_node(g, OP_MSE_DX, node->id, node->in, 2, p->shape, true);
}

const OpDef op_mse = {
    .name = "mse", .prefix = "loss", .min_in = 2, .max_in = 2,
    .in_names = mse_in, .out_names = loss_out, .roles = ROLE_LOSS,
    .build = regression_build, .emit = mse_emit, .backward = mse_backward,
};

const OpDef op_mse_dx = {
    .name = "mse_dx", .min_in = 2, .max_in = 2,
    .in_names = mse_in, .out_names = dpred_out, .roles = ROLE_INTERNAL,
    .emit = mse_dx_emit,
};

/* ---- hinge(scores, labels, margin=1) and squared_hinge: the multiclass SVM
 * loss of Weston & Watkins (cs231n's form), per sample
 *   sum over j != y of max(0, s_j - s_y + margin)   (squared: of its square),
 * mean over the batch.  No division by the class count (PyTorch's
 * MultiMarginLoss has one).  Gradient per row: each active margin m_j > 0
 * gives d_j = 1/n (squared: 2 m_j / n) and d_y = -sum of those. ---------- */

enum { A_MARGIN };
static const AttrSpec hinge_attrs[] = {{"margin", ATTR_FLOAT, "1"}};
static const char *const hinge_in[] = {"scores", "labels", NULL};
static const char *const dscores_out[] = {"dscores", NULL};

static bool hinge_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]), *y = val(g, node->in[1]);
  const char *name = op_def(node->op)->name;
  if (x->shape.rank != 1 || !x->batched) {
    error_at(g->ctx, node->loc, "%s: scores must be (N, K), got %s; flatten first", name,
             shape_str(g->ctx->arena, &x->shape));
    return false;
  }
  if (y->dtype != DT_I32 || y->classes <= 0 || y->classes != x->shape.dim[0]) {
    error_at(g->ctx, node->loc, "%s: the target must be class labels class[%d]", name,
             x->shape.dim[0]);
    return false;
  }
  if (!(attr_num(node, A_MARGIN) >= 0)) {
    error_at(g->ctx, node->attr[A_MARGIN].loc, "%s: margin must be non-negative", name);
    return false;
  }
  node_output(g, node, shape_of(1, 1), false, g->dtype);
  return true;
}

/* Declares `mg`, the margin of class k against the label's score, per row. */
static void emit_hinge_row(Emit *e, const Node *node, int k) {
  emitln(e, "const real *row = scores + (long)b * %d;", k);
  emitln(e, "const int y = labels[b];");
  emitln(e, "for (int k = 0; k < %d; k++) {", k);
  emitln(e, "const double mg = (double)row[k] - (double)row[y] + %.17g;",
         attr_num(node, A_MARGIN));
}

static void hinge_emit_common(Emit *e, const Graph *g, const Node *node, bool squared) {
  int k = val(g, node->in[0])->shape.dim[0];
  emitln(e, "double total = 0;");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emit_hinge_row(e, node, k);
  emitln(e, "if (k != y && mg > 0)");
  emitln(e, "    total += %s;", squared ? "mg * mg" : "mg");
  emitln(e, "}");
  emitln(e, "}");
  emitln(e, "loss[0] = (real)(total / n);");
}

static void hinge_dx_common(Emit *e, const Graph *g, const Node *node, bool squared) {
  int k = val(g, node->in[0])->shape.dim[0];
  emit_omp_for(e, "");
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "real *d = dscores + (long)b * %d;", k);
  emitln(e, "double dy = 0;");
  emit_hinge_row(e, node, k);
  emitln(e, "const double dk = k != y && mg > 0 ? %s / n : 0;", squared ? "2 * mg" : "1.0");
  emitln(e, "d[k] = (real)dk;");
  emitln(e, "dy += dk;");
  emitln(e, "}");
  emitln(e, "d[y] = (real)-dy;");
  emitln(e, "}");
}

static void hinge_emit(Emit *e, const Graph *g, const Node *node) {
  hinge_emit_common(e, g, node, false);
}
static void sq_hinge_emit(Emit *e, const Graph *g, const Node *node) {
  hinge_emit_common(e, g, node, true);
}
static void hinge_dx_emit(Emit *e, const Graph *g, const Node *node) {
  hinge_dx_common(e, g, node, false);
}
static void sq_hinge_dx_emit(Emit *e, const Graph *g, const Node *node) {
  hinge_dx_common(e, g, node, true);
}

static void hinge_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  OpKind dx = node->op == OP_HINGE ? OP_HINGE_DX : OP_SQUARED_HINGE_DX;
  din[0] = derived_node(g, dx, node->id, node->in, 2, val(g, node->in[0])->shape, true);
}

const OpDef op_hinge = {
    .name = "hinge", .prefix = "loss", .min_in = 2, .max_in = 2,
    .attrs = hinge_attrs, .nattr = 1, .in_names = hinge_in, .out_names = loss_out,
    .roles = ROLE_LOSS, .build = hinge_build, .emit = hinge_emit, .backward = hinge_backward,
};
const OpDef op_hinge_dx = {
    .name = "hinge_dx", .min_in = 2, .max_in = 2, .attrs = hinge_attrs, .nattr = 1,
    .in_names = hinge_in, .out_names = dscores_out, .roles = ROLE_INTERNAL,
    .emit = hinge_dx_emit,
};
const OpDef op_squared_hinge = {
    .name = "squared_hinge", .prefix = "loss", .min_in = 2, .max_in = 2,
    .attrs = hinge_attrs, .nattr = 1, .in_names = hinge_in, .out_names = loss_out,
    .roles = ROLE_LOSS, .build = hinge_build, .emit = sq_hinge_emit, .backward = hinge_backward,
};
const OpDef op_squared_hinge_dx = {
    .name = "squared_hinge_dx", .min_in = 2, .max_in = 2, .attrs = hinge_attrs, .nattr = 1,
    .in_names = hinge_in, .out_names = dscores_out, .roles = ROLE_INTERNAL,
    .emit = sq_hinge_dx_emit,
};

/* ---- bce(logits, targets): sigmoid binary cross-entropy for multi-label
 * targets in {0, 1} (f32, the logits' shape), in the stable form
 *   max(x, 0) - x t + log1p(exp(-|x|)),
 * summed over the labels of a sample, mean over the batch.  Its gradient is
 * (sigmoid(x) - t) / n, with the sigmoid evaluated on the side where exp
 * cannot overflow. ----------------------------------------------------- */

static const char *const bce_in[] = {"logits", "targets", NULL};

static void bce_emit(Emit *e, const Graph *g, const Node *node) {
  long k = shape_numel(&val(g, node->in[0])->shape);
  emit_total(e, k, (const char *const[]){"const double x = logits[i], t = targets[i];",
                                         "const double s = (x > 0 ? x : 0) - x * t + "
                                         "log1p(exp(-fabs(x)));", NULL});
  emitln(e, "loss[0] = (real)(total / n);");
}

static void bce_dx_emit(Emit *e, const Graph *g, const Node *node) {
  long k = shape_numel(&val(g, node->in[0])->shape);
  emit_omp_for(e, "");
  emitln(e, "for (long i = 0; i < (long)n * %ld; i++) {", k);
  emitln(e, "const double x = logits[i], z = exp(-fabs(x));");
  emitln(e, "const double s = x >= 0 ? 1 / (1 + z) : z / (1 + z);");
  emitln(e, "dlogits[i] = (real)((s - (double)targets[i]) / n);");
  emitln(e, "}");
}

static void bce_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  din[0] = derived_node(g, OP_BCE_DX, node->id, node->in, 2, val(g, node->in[0])->shape, true);
}

const OpDef op_bce = {
    .name = "bce", .prefix = "loss", .min_in = 2, .max_in = 2,
    .in_names = bce_in, .out_names = loss_out, .roles = ROLE_LOSS,
    .build = regression_build, .emit = bce_emit, .backward = bce_backward,
};
const OpDef op_bce_dx = {
    .name = "bce_dx", .min_in = 2, .max_in = 2, .in_names = bce_in, .out_names = dlogits_out,
    .roles = ROLE_INTERNAL, .emit = bce_dx_emit,
};

/* ---- l1(pred, target): mean absolute error over all elements (PyTorch's
 * L1Loss); gradient sign(pred - target) / (n K), 0 where they are equal. */

static void l1_emit(Emit *e, const Graph *g, const Node *node) {
  long k = shape_numel(&val(g, node->in[0])->shape);
  emit_total(e, k, (const char *const[]){"const double s = fabs((double)pred[i] - (double)target[i]);",
                                         NULL});
  emitln(e, "loss[0] = (real)(total / ((double)n * %ld));", k);
}

static void l1_dx_emit(Emit *e, const Graph *g, const Node *node) {
  long k = shape_numel(&val(g, node->in[0])->shape);
  emit_omp_for(e, "");
  emitln(e, "for (long i = 0; i < (long)n * %ld; i++) {", k);
  emitln(e, "const double d = (double)pred[i] - (double)target[i];");
  emitln(e, "dpred[i] = (real)((double)((d > 0) - (d < 0)) / ((double)n * %ld));", k);
  emitln(e, "}");
}

static void l1_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  din[0] = derived_node(g, OP_L1_DX, node->id, node->in, 2, val(g, node->in[0])->shape, true);
}

const OpDef op_l1 = {
    .name = "l1", .prefix = "loss", .min_in = 2, .max_in = 2,
    .in_names = mse_in, .out_names = loss_out, .roles = ROLE_LOSS,
    .build = regression_build, .emit = l1_emit, .backward = l1_backward,
};
const OpDef op_l1_dx = {
    .name = "l1_dx", .min_in = 2, .max_in = 2, .in_names = mse_in, .out_names = dpred_out,
    .roles = ROLE_INTERNAL, .emit = l1_dx_emit,
};

/* ---- huber(pred, target, delta=1): PyTorch's HuberLoss, mean over all
 * elements of  0.5 d^2  where |d| <= delta, else  delta (|d| - delta/2);
 * gradient clamp(d, -delta, delta) / (n K). ----------------------------- */

enum { A_DELTA };
static const AttrSpec huber_attrs[] = {{"delta", ATTR_FLOAT, "1"}};

static bool huber_build(Graph *g, Node *node) {
  if (!(attr_num(node, A_DELTA) > 0)) {
    error_at(g->ctx, node->attr[A_DELTA].loc, "huber: delta must be positive");
    return false;
  }
  return regression_build(g, node);
}

static void huber_emit(Emit *e, const Graph *g, const Node *node) {
  long k = shape_numel(&val(g, node->in[0])->shape);
  double delta = attr_num(node, A_DELTA);
  const char *s = arena_printf(e->ctx->arena,
                               "const double s = a <= %.17g ? 0.5 * a * a : %.17g * (a - 0.5 * %.17g);",
                               delta, delta, delta);
  emit_total(e, k, (const char *const[]){"const double a = fabs((double)pred[i] - (double)target[i]);",
                                         s, NULL});
  emitln(e, "loss[0] = (real)(total / ((double)n * %ld));", k);
}

static void huber_dx_emit(Emit *e, const Graph *g, const Node *node) {
  long k = shape_numel(&val(g, node->in[0])->shape);
  double delta = attr_num(node, A_DELTA);
  emit_omp_for(e, "");
  emitln(e, "for (long i = 0; i < (long)n * %ld; i++) {", k);
  emitln(e, "const double d = (double)pred[i] - (double)target[i];");
  emitln(e, "const double c = d > %.17g ? %.17g : d < -%.17g ? -%.17g : d;", delta, delta,
         delta, delta);
  emitln(e, "dpred[i] = (real)(c / ((double)n * %ld));", k);
  emitln(e, "}");
}

static void huber_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  din[0] = derived_node(g, OP_HUBER_DX, node->id, node->in, 2, val(g, node->in[0])->shape, true);
}

const OpDef op_huber = {
    .name = "huber", .prefix = "loss", .min_in = 2, .max_in = 2,
    .attrs = huber_attrs, .nattr = 1, .in_names = mse_in, .out_names = loss_out,
    .roles = ROLE_LOSS, .build = huber_build, .emit = huber_emit, .backward = huber_backward,
};
const OpDef op_huber_dx = {
    .name = "huber_dx", .min_in = 2, .max_in = 2, .attrs = huber_attrs, .nattr = 1,
    .in_names = mse_in, .out_names = dpred_out, .roles = ROLE_INTERNAL,
    .emit = huber_dx_emit,
};
