/*
 * losses.c: loss functions, each a ROLE_LOSS op whose output is the mean
 * loss over the batch (a scalar), with its gradient kernel beside it.  The
 * gradient of the loss itself is 1, so backward rules ignore dout.
 *
 * cross_entropy(logits, labels): softmax and negative log-likelihood in one
 * op, with the log-sum-exp shifted by the row maximum (stable for any
 * logits); its gradient is (softmax - onehot) / n, never forming 1/p.
 */
#include "codegen.h"

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

static void mse_emit(Emit *e, const Graph *g, const Node *node) {
  long k = shape_numel(&val(g, node->in[0])->shape);
  emitln(e, "double total = 0;");
  emitln(e, "for (long i = 0; i < (long)n * %ld; i++) {", k);
  emitln(e, "const double d = (double)pred[i] - (double)target[i];");
  emitln(e, "total += d * d;");
  emitln(e, "}");
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
