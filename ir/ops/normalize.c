/*
 * normalize.c: data preprocessing inside the model,
 *
 *   normalize(x, mean=[...], std=[...])    y = (x - mean[c]) / std[c]
 *
 * per channel c = dim 0 of the per-sample shape (C, H, W) or (C).  Each list
 * has C entries, or one entry applied to every channel.  There are no
 * parameters: the constants are baked into the expression, so a model file
 * carries its preprocessing and callers feed raw data.  The gradient is the
 * elementwise dy / std[c] (normalize_dx).
 *
 * Both ops are elementwise.  When the constants differ between channels the
 * scalar expression indexes a constant table by the channel index that the
 * generic elementwise kernel, or the anchor it is fused into, passes in.
 */
#include <math.h>
#include <stdlib.h>

#include "emit.h"

enum { A_MEAN, A_STD };

static const AttrSpec norm_attrs[] = {
    {"mean", ATTR_LIST, NULL},
    {"std", ATTR_LIST, NULL},
};

static const char *const x_in[] = {"x", NULL}, *const y_out[] = {"y", NULL};
static const char *const dy_in[] = {"dy", NULL}, *const dx_out[] = {"dx", NULL};

static bool check_list(Graph *g, Node *node, int a, int channels) {
  const AttrVal *l = &node->attr[a];
  const char *name = norm_attrs[a].name;
  if (l->nlist != 1 && l->nlist != channels) {
    error_at(g->ctx, l->loc, "normalize: %s has %d values; the input has %d channels "
             "(give %d values, or one for all)", name, l->nlist, channels, channels);
    return false;
  }
  for (int i = 0; i < l->nlist; i++) {
    if (!isfinite(l->list[i])) {
      error_at(g->ctx, l->loc, "normalize: %s values must be finite", name);
      return false;
    }
    if (a == A_STD && !(l->list[i] > 0)) {
      error_at(g->ctx, l->loc, "normalize: std must be positive, got %g", l->list[i]);
      return false;
    }
  }
  return true;
}

static bool norm_build(Graph *g, Node *node) {
  const Value *x = val(g, node->in[0]);
  if (x->dtype == DT_I32) {
    error_at(g->ctx, node->loc, "normalize: the input must be real numbers, not labels");
    return false;
  }
  int channels = x->shape.rank ? x->shape.dim[0] : 1;
  if (!check_list(g, node, A_MEAN, channels) || !check_list(g, node, A_STD, channels))
    return false;
  node_output(g, node, x->shape, x->batched, x->dtype);
  return true;
}

/* A real literal without an Emit at hand (scalar rules get none): the
 * shortest decimal that reads back to v, as a double cast to real. */
static void put_num(Buf *b, double v) {
  char tmp[64];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (strtod(tmp, NULL) == v)
      break;
  }
  buf_printf(b, "(real)%s", tmp);
}

static bool uniform(const AttrVal *l) {
  for (int i = 1; i < l->nlist; i++)
    if (l->list[i] != l->list[0])
      return false;
  return true;
}

/* The constant of list l at channel c. */
static void put_const(Buf *b, const AttrVal *l, const char *c) {
  if (uniform(l)) {
    put_num(b, l->list[0]);
    return;
  }
  buf_puts(b, "((const real[]){");
  for (int i = 0; i < l->nlist; i++) {
    if (i)
      buf_puts(b, ", ");
    put_num(b, l->list[i]);
  }
  buf_printf(b, "})[%s]", c);
}

static void norm_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "(%s - ", a[0]);
  put_const(b, &node->attr[A_MEAN], a[node->nin]);
  buf_puts(b, ") / ");
  put_const(b, &node->attr[A_STD], a[node->nin]);
}

/* dx = dy / std[c] */
static void norm_dx_scalar(Buf *b, const Graph *g, const Node *node, const char *const *a) {
  buf_printf(b, "%s / ", a[0]);
  put_const(b, &node->attr[A_STD], a[node->nin]);
}

static void norm_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din) {
  const Value *x = val(g, node->in[0]);
  din[0] = derived_node(g, OP_NORMALIZE_DX, node->id, &dout[0], 1, x->shape, x->batched);
}

static double norm_flops(const Graph *g, const Node *node) {
  return 2.0 * (double)shape_numel(&val(g, node->in[0])->shape);
}

const OpDef op_normalize = {
    .name = "normalize", .prefix = "normalize", .min_in = 1, .max_in = 1,
    .attrs = norm_attrs, .nattr = 2, .in_names = x_in, .out_names = y_out,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_CHANNEL,
    .build = norm_build, .emit = emit_elementwise, .scalar = norm_scalar,
    .backward = norm_backward, .flops = norm_flops,
};

const OpDef op_normalize_dx = {
    .name = "normalize_dx", .min_in = 1, .max_in = 1, .attrs = norm_attrs, .nattr = 2,
    .in_names = dy_in, .out_names = dx_out,
    .roles = ROLE_ELEMENTWISE | ROLE_INPLACE | ROLE_INTERNAL | ROLE_CHANNEL,
    .emit = emit_elementwise, .scalar = norm_dx_scalar,
};
