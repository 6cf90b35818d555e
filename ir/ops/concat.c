/*
 * concat.c: channel concatenation, concat(x0, x1, ...) with 2 to MAX_IN
 * inputs (inception modules, dense blocks).
 *
 *   x_j (N, C_j, d1, ...) -> y (N, C_0 + C_1 + ..., d1, ...)
 *
 * All per-sample dims but the first must agree.  Per sample, y holds x_0's
 * block, then x_1's, and so on; the forward kernel copies each input's
 * per-sample block into place.  The gradient of x_j is the slice of dy at
 * its channel offset: one concat_dx node per input that needs a gradient
 * (a single node with one output per input would not fit MAX_OUT = 4), so
 * inputs without a gradient cost nothing, and the offset is its attribute.
 *
 * Why a copy and not a view.  A zero-copy concat would let the planner place
 * each x_j inside y's buffer.  But tensors are dense (n, per-sample) arrays
 * and every kernel indexes them that way, while inside y the samples of x_j
 * lie C_total * S elements apart, not C_j * S: x_j would have to be a strided
 * tensor.  It is contiguous only when the batch is 1, and the batch is a
 * runtime value.  Making it work would need strides in every kernel, plus
 * a second kind of alias ("interleaved sub-range of") in plan_memory and in
 * validate_plan, whose proof today relies on views sharing all their bytes.
 * The copy is one pass over the data, small next to the convolutions that
 * produce its inputs.
 */
#include <limits.h>

#include "emit.h"

enum { A_OFFSET };

static const char *const y_out[] = {"y", NULL};

static bool same_inner_dims(const Shape *a, const Shape *b) {
  if (a->rank != b->rank)
    return false;
  for (int d = 1; d < a->rank; d++)
    if (a->dim[d] != b->dim[d])
      return false;
  return true;
}

static bool check_operand(Graph *g, Node *node, int j) {
  const Value *x = val(g, node->in[j]), *x0 = val(g, node->in[0]);
  Arena *a = g->ctx->arena;
  if (x->dtype == DT_I32) {
    error_at(g->ctx, node->loc, "concat: operand %d must be real numbers, not labels", j + 1);
    return false;
  }
  if (!x->batched || x->shape.rank < 1) {
    error_at(g->ctx, node->loc, "concat: operand %d has shape %s; it needs a channel dim",
             j + 1, shape_str(a, &x->shape));
    return false;
  }
  if (!same_inner_dims(&x->shape, &x0->shape)) {
    error_at(g->ctx, node->loc,
             "concat: operand %d has shape %s, operand 1 has %s (all dims but the first "
             "must match)", j + 1, shape_str(a, &x->shape), shape_str(a, &x0->shape));
    return false;
  }
  return true;
}

static bool concat_build(Graph *g, Node *node) {
  long channels = 0;
  for (int j = 0; j < node->nin; j++) {
    if (!check_operand(g, node, j))
      return false;
    channels += val(g, node->in[j])->shape.dim[0];
  }
  Shape y = val(g, node->in[0])->shape;
  if (channels > INT_MAX) {
    error_at(g->ctx, node->loc, "concat: %ld channels in all are too many", channels);
    return false;
  }
  y.dim[0] = (int)channels;
  if (!check_shape(g, node, y))
    return false;
  node_output(g, node, y, true, g->dtype);
  return true;
}

/* Per sample b: y[b] = x0[b] ++ x1[b] ++ ... */
static void concat_emit(Emit *e, const Graph *g, const Node *node) {
  long total = shape_numel(&val(g, node->out[0])->shape), at = 0;
  emit_omp_for(e, "");
  emitln(e, "for (int b = 0; b < n; b++) {");
  for (int j = 0; j < node->nin; j++) {
    long size = shape_numel(&val(g, node->in[j])->shape);
    emitln(e, "memcpy(y + (long)b * %ld + %ld, %s + (long)b * %ld, sizeof(real) * %ld);", total,
           at, arg_name(e, node, node->nout + j), size, size);
    at += size;
  }
  emitln(e, "}");
}

/* dx (N, C_j, ...) = dy[:, offset : offset + C_j, ...] */
static void concat_dx_emit(Emit *e, const Graph *g, const Node *node) {
  const Value *dx = val(g, node->out[0]);
  long total = shape_numel(&val(g, node->in[0])->shape), size = shape_numel(&dx->shape);
  long at = (long)attr_int(node, A_OFFSET) * (size / dx->shape.dim[0]);
  emit_omp_for(e, "");
  emitln(e, "for (int b = 0; b < n; b++)");
  emitln(e, "    memcpy(dx + (long)b * %ld, dy + (long)b * %ld + %ld, sizeof(real) * %ld);",
         size, total, at, size);
}

static void concat_backward(Graph *g, Node *node, const int *dout, const bool *need,
                            int *din) {
  int id = node->id, offset = 0;
  for (int j = 0; j < node_at(g, id)->nin; j++) {
    const Value *x = val(g, node_at(g, id)->in[j]);
    Shape xs = x->shape;
    if (need[j]) {
      din[j] = derived_node(g, OP_CONCAT_DX, id, &dout[0], 1, xs, true);
      Node *k = node_at(g, val(g, din[j])->producer);
      k->attr[A_OFFSET] = (AttrVal){.set = true, .num = offset, .loc = k->loc};
    }
    offset += xs.dim[0];
  }
}

const OpDef op_concat = {
    .name = "concat", .prefix = "concat", .min_in = 2, .max_in = MAX_IN,
    .out_names = y_out, .build = concat_build, .emit = concat_emit,
    .backward = concat_backward,
};

static const AttrSpec dx_attrs[] = {{"offset", ATTR_INT, NULL}};
static const char *const dx_in[] = {"dy", NULL}, *const dx_out[] = {"dx", NULL};

const OpDef op_concat_dx = {
    .name = "concat_dx", .attrs = dx_attrs, .nattr = 1, .in_names = dx_in,
    .out_names = dx_out, .roles = ROLE_INTERNAL, .emit = concat_dx_emit,
};
