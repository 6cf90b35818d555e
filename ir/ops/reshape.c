/*
 * reshape.c: reshape(x, shape) gives each sample the per-sample shape
 * `shape` (the batch dimension stays first and is not written), at most one
 * entry -1, inferred from the others; the element count must not change.
 * Row-major order is kept, as torch.reshape and ONNX Reshape keep it.  Like
 * flatten a view: the planner gives the output the input's storage, so no
 * kernel runs; the copy kernel below runs only where a view is impossible
 * (the output is a model output).  Its gradient is the reverse reshape.
 * Both are flatten.c's (emit_view_copy, view_backward).
 */
#include <math.h>

#include "emit.h"

enum { A_SHAPE };

static const AttrSpec reshape_attrs[] = {{"shape", ATTR_LIST, NULL}};
static const char *const x_names[] = {"x", NULL};
static const char *const y_names[] = {"y", NULL};

/* The target shape of node's attribute for an input of n elements per
 * sample, -1 resolved; false (reported) if it is not one. */
static bool target_shape(Graph *g, const Node *node, long n, Shape *out) {
  const AttrVal *a = &node->attr[A_SHAPE];
  if (a->nlist < 1 || a->nlist > MAX_RANK) {
    error_at(g->ctx, a->loc, "reshape: the shape needs 1 to %d dimensions, got %d", MAX_RANK,
             a->nlist);
    return false;
  }
  int infer = -1;
  long known = 1;
  bool fits = true;
  *out = (Shape){.rank = a->nlist};
  for (int d = 0; d < a->nlist; d++) {
    double v = a->list[d];
    if (v == -1 && infer < 0) {
      infer = d;
      continue;
    }
    if (!(v >= 1 && v <= 2147483647.0 && v == floor(v))) {
      error_at(g->ctx, a->loc, "reshape: dimension %d is %g: each must be a positive integer, "
               "or -1 (once) for the one inferred", d, v);
      return false;
    }
    out->dim[d] = (int)v;
    fits &= !__builtin_mul_overflow(known, (long)v, &known);
  }
  fits &= infer >= 0 ? known <= n && n % known == 0 : known == n;
  if (!fits) {
    error_at(g->ctx, a->loc, "reshape: %s holds %ld elements per sample, which the shape "
             "cannot hold", shape_str(g->ctx->arena, &val(g, node->in[0])->shape), n);
    return false;
  }
  if (infer >= 0)
    out->dim[infer] = (int)(n / known);
  return true;
}

static bool reshape_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  if (!x->batched) {
    error_at(g->ctx, node->loc, "reshape: the input must be a batch of tensors");
    return false;
  }
  Shape s;
  if (!target_shape(g, node, shape_numel(&x->shape), &s))
    return false;
  node_output(g, node, s, x->batched, x->dtype);
  return true;
}

const OpDef op_reshape = {
    .name = "reshape", .prefix = "reshape", .min_in = 1, .max_in = 1,
    .attrs = reshape_attrs, .nattr = 1, .in_names = x_names, .out_names = y_names,
    .roles = ROLE_VIEW,
    .build = reshape_build, .emit = emit_view_copy, .backward = view_backward,
};
