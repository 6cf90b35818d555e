/*
 * window.c: the sliding window that conv2d and the pools share: kernel,
 * stride, dilation and per-side zero padding, as the user wrote them
 * (an integer for both axes, a tuple per axis or per side) or from
 * padding=same, TensorFlow's rule:
 *
 *   out = ceil(in / s),  total pad = max((out - 1) * s + (k - 1) * d + 1 - in, 0),
 *   top (left) = total / 2, bottom (right) = the rest.
 *
 * Each op keeps its own attribute specs (WindowAttrs says where they are);
 * this file reads them, checks them against each other and the input
 * plane, and resolves them into a Window of ten integers that the kernels
 * and the runtime's im2col use.
 */
#include <limits.h>
#include <string.h>

#include "nncc.h"

/* The value as written: "3" or "(10, 4)". */
static const char *written(Arena *a, const AttrVal *v) {
  if (!v->nlist)
    return arena_printf(a, "%d", (int)v->num);
  Buf b = {0};
  for (int i = 0; i < v->nlist; i++)
    buf_printf(&b, "%s%d", i ? ", " : "(", (int)v->list[i]);
  buf_puts(&b, ")");
  char *s = arena_strdup(a, b.data);
  buf_free(&b);
  return s;
}

/* Value i of an attribute written as one integer or a tuple. */
static int item(const AttrVal *v, int i) { return v->nlist ? (int)v->list[i] : (int)v->num; }

static const AttrVal *attr_at(const Node *node, int i) { return i >= 0 ? &node->attr[i] : NULL; }

/* (y, x) of a pair attribute; `none` when the op has no such attribute. */
static void pair(const Node *node, int i, int none, int *y, int *x) {
  const AttrVal *v = attr_at(node, i);
  *y = v ? item(v, 0) : none;
  *x = v ? item(v, v->nlist ? 1 : 0) : none;
}

long window_out(long in, int k, int s, int d, int a, int b) {
  return (in + a + b - ((long)k - 1) * d - 1) / s + 1;
}

/* TensorFlow's 'same': *a before, *b after. */
static void same_pads(int in, int k, int s, int d, int *a, int *b) {
  long out = (in + (long)s - 1) / s;
  long total = (out - 1) * s + ((long)k - 1) * d + 1 - in;
  if (total < 0)
    total = 0;
  if (total > INT_MAX)   /* then the padded input is too large: window_check says so */
    total = INT_MAX;
  *a = (int)(total / 2);
  *b = (int)(total - total / 2);
}

static bool is_same(const Node *node, const WindowAttrs *wa) {
  const AttrVal *v = attr_at(node, wa->padding);
  return v && v->ident && strcmp(v->ident, "same") == 0;
}

Window window_of(const Node *node, const WindowAttrs *wa, int h, int w) {
  Window q;
  pair(node, wa->kernel, 1, &q.kh, &q.kw);
  pair(node, wa->stride, 1, &q.sh, &q.sw);
  pair(node, wa->dilation, 1, &q.dh, &q.dw);
  if (q.sh == 0 && q.sw == 0)   /* the pools' stride 0 */
    q.sh = q.kh, q.sw = q.kw;
  const AttrVal *p = attr_at(node, wa->pad);
  if (is_same(node, wa)) {
    same_pads(h, q.kh, q.sh, q.dh, &q.pt, &q.pb);
    same_pads(w, q.kw, q.sw, q.dw, &q.pl, &q.pr);
  } else if (!p) {
    q.pt = q.pb = q.pl = q.pr = 0;
  } else if (p->nlist == 4) {
    q.pt = item(p, 0), q.pb = item(p, 1), q.pl = item(p, 2), q.pr = item(p, 3);
  } else {
    pair(node, wa->pad, 0, &q.pt, &q.pl);
    q.pb = q.pt, q.pr = q.pl;
  }
  return q;
}

/* ---- checks ---------------------------------------------------------------- */

/* How many values attribute i may have, as a mask of 1 << count. */
static bool check_arity(Graph *g, const Node *node, int i, unsigned counts, const char *forms) {
  const AttrVal *v = attr_at(node, i);
  if (!v || (counts >> (v->nlist ? v->nlist : 1) & 1))
    return true;
  const char *name = op_def(node->op)->attrs[i].name;
  error_at(g->ctx, v->loc, "%s: %s must be %s, got %d values", op_def(node->op)->name, name,
           forms, v->nlist);
  return false;
}

/* Every value of attribute i at least lo; a scalar 0 is also allowed when
 * zero_ok (the pools' stride). */
static bool check_min(Graph *g, const Node *node, int i, int lo, bool zero_ok,
                      const char *what) {
  const AttrVal *v = attr_at(node, i);
  if (!v)
    return true;
  if (zero_ok && !v->nlist && v->num == 0)
    return true;
  for (int k = 0; k < (v->nlist ? v->nlist : 1); k++)
    if (item(v, k) < lo) {
      error_at(g->ctx, v->loc, "%s: %s must be %s, got %s", op_def(node->op)->name,
               op_def(node->op)->attrs[i].name, what, written(g->ctx->arena, v));
      return false;
    }
  return true;
}

static bool check_values(Graph *g, const Node *node, const WindowAttrs *wa) {
  const unsigned one_or_two = 1u << 1 | 1u << 2;
  if (!check_arity(g, node, wa->kernel, one_or_two, "an integer or (kh, kw)") ||
      !check_arity(g, node, wa->stride, one_or_two, "an integer or (sh, sw)") ||
      !check_arity(g, node, wa->dilation, one_or_two, "an integer or (dh, dw)") ||
      !check_arity(g, node, wa->pad, one_or_two | 1u << 4,
                   "an integer, (ph, pw) or (top, bottom, left, right)"))
    return false;
  bool pool = wa->pad_le_half;
  if (!check_min(g, node, wa->kernel, 1, false, "positive") ||
      !check_min(g, node, wa->stride, 1, pool,
                 pool ? "positive (or 0 for stride = kernel)" : "positive") ||
      !check_min(g, node, wa->dilation, 1, false, "positive") ||
      (!pool && !check_min(g, node, wa->pad, 0, false, ">= 0")))
    return false;
  const AttrVal *padding = attr_at(node, wa->padding);
  const char *name = op_def(node->op)->name;
  if (padding && strcmp(padding->ident, "same") != 0 && strcmp(padding->ident, "valid") != 0) {
    error_at(g->ctx, padding->loc, "%s: padding must be same or valid, got '%s'", name,
             padding->ident);
    return false;
  }
  if (padding && padding->given && attr_at(node, wa->pad)->given) {
    error_at(g->ctx, padding->loc, "%s: pad and padding=%s cannot both be given", name,
             padding->ident);
    return false;
  }
  return true;
}

/* The pools: every pad at most half its axis's kernel (PyTorch's rule; then
 * every window holds a real cell, and TF's 'same' never pads more). */
static bool check_half(Graph *g, const Node *node, const WindowAttrs *wa, const Window *q) {
  const AttrVal *v = attr_at(node, wa->pad);
  bool ok = q->pt >= 0 && q->pb >= 0 && q->pl >= 0 && q->pr >= 0 && 2 * q->pt <= q->kh &&
            2 * q->pb <= q->kh && 2 * q->pl <= q->kw && 2 * q->pr <= q->kw;
  if (ok)
    return true;
  const char *name = op_def(node->op)->name;
  if (!v->nlist && q->kh == q->kw)
    error_at(g->ctx, v->loc, "%s: pad must be between 0 and kernel/2 = %d, got %d", name,
             q->kh / 2, (int)v->num);
  else
    error_at(g->ctx, v->loc, "%s: pad %s must be between 0 and half the kernel %dx%d on each "
             "side", name, written(g->ctx->arena, v), q->kh, q->kw);
  return false;
}

bool window_check(Graph *g, const Node *node, const WindowAttrs *wa, int h, int w, Window *q,
                  long *ho, long *wo) {
  if (!check_values(g, node, wa))
    return false;
  *q = window_of(node, wa, h, w);
  if (wa->pad_le_half && !check_half(g, node, wa, q))
    return false;
  const char *name = op_def(node->op)->name;
  long ph = (long)h + q->pt + q->pb, pw = (long)w + q->pl + q->pr;
  /* The emitted window bounds and the padded planes' indices are ints. */
  if (ph > INT_MAX || pw > INT_MAX || ph * pw > MAX_ELEMS) {
    const AttrVal *pad = attr_at(node, is_same(node, wa) ? wa->padding : wa->pad);
    error_at(g->ctx, pad->loc, "%s: the padded input %ldx%ld is too large", name, ph, pw);
    return false;
  }
  long eh = ((long)q->kh - 1) * q->dh + 1, ew = ((long)q->kw - 1) * q->dw + 1;
  if (eh > ph || ew > pw) {
    const AttrVal *k = attr_at(node, wa->kernel);
    if (q->dh == 1 && q->dw == 1)
      error_at(g->ctx, k->loc, "%s: kernel %dx%d is larger than the padded input %ldx%ld",
               name, q->kh, q->kw, ph, pw);
    else
      error_at(g->ctx, k->loc, "%s: kernel %dx%d dilated to %ldx%ld is larger than the "
               "padded input %ldx%ld", name, q->kh, q->kw, eh, ew, ph, pw);
    return false;
  }
  *ho = window_out(h, q->kh, q->sh, q->dh, q->pt, q->pb);
  *wo = window_out(w, q->kw, q->sw, q->dw, q->pl, q->pr);
  return true;
}

const char *window_str(Arena *a, const Window *q) {
  const char *pad = q->pt == q->pb && q->pl == q->pr
                        ? (q->pt == q->pl ? arena_printf(a, "pad %d", q->pt)
                                          : arena_printf(a, "pad (%d, %d)", q->pt, q->pl))
                        : arena_printf(a, "pad (%d, %d, %d, %d)", q->pt, q->pb, q->pl, q->pr);
  const char *dil = q->dh == 1 && q->dw == 1 ? ""
                    : arena_printf(a, ", dilation %dx%d", q->dh, q->dw);
  return arena_printf(a, "kernel %dx%d, stride %dx%d%s, %s", q->kh, q->kw, q->sh, q->sw, dil,
                      pad);
}
