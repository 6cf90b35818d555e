/*
 * plan_memory.c: assigns every tensor its place.
 *
 * Parameters and buffers get consecutive offsets in their blocks (in value
 * order, so the inference and training graphs of one model agree), the
 * trained parameters first and the frozen ones after them: gradients and
 * optimizer state cover only that prefix (trained_size), and a training
 * build with baked weights reads the frozen suffix where it is baked.  A
 * parameter's gradient sits at the same offset in the grads block; with
 * --eager-update (g->eager_update) there is no grads block: a gradient is an
 * activation like any other, live until its param_update node.
 *
 * Activations share one arena.  Each lives from the step that writes it to
 * the last step that reads it.  An op with ROLE_INPLACE writes over its
 * first input when that input dies there.  Offsets are then chosen greedily
 * by size, largest first, each at the lowest address free for its whole
 * lifetime (the "greedy by size" strategy of TFLite's planner).  The
 * results: arena_size, naive_size (one buffer per tensor), lower_bound (the
 * most bytes live at one step: no plan can do better), tensors_bound (the
 * same without kernel workspaces), scratch_size (the largest workspace)
 * and, with --eager-update, grads_at_peak (the gradients' part of
 * lower_bound).
 *
 * Sizes are checked 64-bit arithmetic: a tensor at the largest batch, the
 * params, buffers and arena blocks may hold up to MAX_BLOCK reals, so every
 * byte count derived from them (six blocks of 8-byte reals at most) fits an
 * int64.  A model beyond that is an error naming the tensor that crossed it;
 * naive_size alone, only reported, saturates at LONG_MAX instead.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "nncc.h"

#define ALIGN 16   /* reals: 64 bytes for f32 */
#define MAX_BLOCK (1L << 58)   /* reals in one tensor or block; 2^61 bytes in f64 */

typedef struct Interval {
  int value;       /* the group's root value */
  int first, last; /* steps */
  long size;       /* reals, aligned */
  long offset;
} Interval;

/* "tensor 'h' <what> 2^58 elements at batch 64 (...)", at h's line. */
static bool too_big(Graph *g, const Value *v, const char *what) {
  const Node *p = v->producer >= 0 ? node_at(g, v->producer) : NULL;
  const char *msg = "tensor '%s' %s 2^58 elements at batch %d (%s): lower --batch or the "
                    "model's sizes";
  const char *dt = g->dtype == DT_F64 ? "2^61 bytes in f64" : "2^60 bytes in f32";
  if (p)
    error_at(g->ctx, p->loc, msg, v->name, what, g->max_batch, dt);
  else
    error_plain(g->ctx, msg, v->name, what, g->max_batch, dt);
  return false;
}

/* *sum += n unless that passes MAX_BLOCK. */
static bool add_size(long *sum, long n) {
  long s;
  if (__builtin_add_overflow(*sum, n, &s) || s > MAX_BLOCK)
    return false;
  *sum = s;
  return true;
}

/* Reals of v at the largest batch, rounded up to ALIGN; -1 past MAX_BLOCK. */
static long aligned_size(const Graph *g, const Value *v) {
  long n;
  if (__builtin_mul_overflow(shape_numel(&v->shape), (long)(v->batched ? g->max_batch : 1), &n) ||
      n > MAX_BLOCK)
    return -1;
  return (n + ALIGN - 1) / ALIGN * ALIGN;
}

/* read[v]: some kernel reads value v at run time. */
static bool *read_at_run_time(const Graph *g) {
  bool *read = arena_alloc(g->ctx->arena, (size_t)g->values.len + 1);
  int vals[MAX_READS];
  for (int i = 0; i < g->nodes.len; i++) {
    const Node *node = &g->nodes.items[i];
    if (node->dead || node->fused_into >= 0)
      continue;
    int n = kernel_reads(g, node, vals);
    for (int k = 0; k < n; k++)
      read[vals[k]] = true;
  }
  return read;
}

static bool place_persistent(Graph *g) {
  long params = 0, buffers = 0, consts = 0;
  g->counters = 0;
  for (int i = 0; i < g->values.len; i++) {
    Value *v = &g->values.items[i];
    if (v->kind == V_COUNTER) {
      v->offset = g->counters++;
    } else if (v->kind == V_BUFFER) {
      v->offset = buffers;
      if (!add_size(&buffers, shape_numel(&v->shape)))
        return too_big(g, v, "brings the buffers past");
    }
  }
  /* The baked constants that kernels read, then those only the compile-time
   * evaluation reads (folded weights that became Winograd filters or
   * panels): past consts_size, computed by nncc but not emitted. */
  const bool *read = read_at_run_time(g);
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < g->values.len; i++) {
      Value *v = &g->values.items[i];
      if (v->kind != V_CONST || read[i] != !pass)
        continue;
      v->offset = consts;
      if (!add_size(&consts, shape_numel(&v->shape)))
        return too_big(g, v, "brings the baked constants past");
    }
    if (!pass)
      g->consts_size = consts;
  }
  /* the trained params, then the frozen ones */
  for (int frozen = 0; frozen < 2; frozen++) {
    for (int i = 0; i < g->values.len; i++) {
      Value *v = &g->values.items[i];
      if (v->kind != V_PARAM || v->frozen != frozen)
        continue;
      v->offset = params;
      if (!add_size(&params, shape_numel(&v->shape)))
        return too_big(g, v, "brings the parameters past");
    }
    if (!frozen)
      g->trained_size = params;
  }
  for (int i = 0; i < g->values.len && !g->eager_update; i++) {
    Value *v = &g->values.items[i];
    if (v->kind == V_PGRAD)
      v->offset = val(g, v->param)->offset;
  }
  g->params_size = params;
  g->buffers_size = buffers;
  g->consts_total = consts;
  return true;
}

static int root(const Graph *g, int v) {
  while (val(g, v)->alias >= 0)
    v = val(g, v)->alias;
  return v;
}

/* The root of the one batched operand of node's epilogue that nothing else
 * the kernel reads shares storage with (a residual add's other input), or
 * -1. */
static int residual_operand(const Graph *g, const Node *node) {
  int found = -1;
  for (int k = 0; k < node->nepilogue; k++) {
    const Node *ep = node_at(g, node->epilogue[k]);
    for (int j = 1; j < ep->nin; j++)
      if (val(g, ep->in[j])->batched) {
        if (found >= 0)
          return -1;
        found = root(g, ep->in[j]);
      }
  }
  int reads[MAX_READS];
  int nreads = kernel_reads(g, node, reads), uses = 0;
  for (int j = 0; found >= 0 && j < nreads; j++)
    uses += root(g, reads[j]) == found;
  return uses == 1 ? found : -1;
}

/* first[v], last[v]: the steps that write and last read each arena value. */
static void live_ranges(Graph *g, int *first, int *last, bool plan) {
  for (int i = 0; i < g->values.len; i++)
    first[i] = last[i] = -1;
  int step = 0;
  for (int i = 0; i < g->nodes.len; i++) {
    Node *node = &g->nodes.items[i];
    if (node->dead || node->fused_into >= 0)
      continue;
    int reads[MAX_READS];
    int nreads = kernel_reads(g, node, reads);
    for (int j = 0; j < nreads; j++)
      last[reads[j]] = step;
    for (int k = 0; k < node->nout; k++)
      if (first[node->out[k]] < 0)
        first[node->out[k]] = last[node->out[k]] = step;
    step++;
  }
  /* The loss is read by the API after the last kernel. */
  for (int i = 0; i < g->values.len; i++)
    if (g->values.items[i].kind == V_LOSS && first[i] >= 0)
      last[i] = step;
  /* Views share their input's storage, in place ops (with a plan) their
   * dying first input's: the group's lifetime covers all its members. */
  step = 0;
  for (int i = 0; i < g->nodes.len; i++) {
    Node *node = &g->nodes.items[i];
    if (node->dead || node->fused_into >= 0)
      continue;
    unsigned roles = op_def(node->op)->roles;
    int y = node->out[0];
    if ((roles & ROLE_VIEW) && in_arena(g, val(g, y)) && val(g, y)->alias < 0) {
      int x = root(g, node->in[0]);
      val(g, y)->alias = x;
      if (last[y] > last[x])
        last[x] = last[y];
    } else if (plan && (roles & ROLE_ANCHOR) && node->nepilogue > 0) {
      /* A residual add fused into a conv/dense/batchnorm: every kernel of
       * an anchor reads the operand at an index just before it writes y
       * there, so y may take over a dying operand's storage. */
      int x = residual_operand(g, node);
      if (x >= 0 && in_arena(g, val(g, x)) && in_arena(g, val(g, y)) && last[x] == step &&
          aligned_size(g, val(g, x)) == aligned_size(g, val(g, y)) && val(g, y)->alias < 0) {
        val(g, y)->alias = x;
        last[x] = last[y];
      }
    } else if (plan && (roles & ROLE_INPLACE) && node->nin > 0) {
      int x = root(g, node->in[0]);
      bool others_read = false;
      for (int j = 1; j < node->nin; j++)
        others_read |= root(g, node->in[j]) == x;
      if (in_arena(g, val(g, x)) && in_arena(g, val(g, y)) && last[x] == step && !others_read &&
          aligned_size(g, val(g, x)) == aligned_size(g, val(g, y)) && val(g, y)->alias < 0) {
        val(g, y)->alias = x;
        last[x] = last[y];
      }
    }
    step++;
  }
}

static int by_size_desc(const void *a, const void *b) {
  const Interval *x = a, *y = b;
  if (x->size != y->size)
    return x->size < y->size ? 1 : -1;
  return x->value - y->value;
}

static bool overlaps(const Interval *a, const Interval *b) {
  return a->first <= b->last && b->first <= a->last;
}

/* Lowest offset where `it` fits between the placed intervals it overlaps.
 * Placed intervals end by MAX_BLOCK and it->size <= MAX_BLOCK: no sum here
 * overflows. */
static long best_offset(const Interval *placed, int nplaced, const Interval *it) {
  long offset = 0;
  bool moved = true;
  while (moved) {
    moved = false;
    for (int k = 0; k < nplaced; k++) {
      const Interval *p = &placed[k];
      if (overlaps(p, it) && offset < p->offset + p->size && p->offset < offset + it->size) {
        offset = p->offset + p->size;
        moved = true;
      }
    }
  }
  return offset;
}

static int by_first(const void *a, const void *b) {
  const Interval *x = a, *y = b;
  if (x->first != y->first)
    return x->first - y->first;
  return by_size_desc(a, b);
}

static int by_lifetime_desc(const void *a, const void *b) {
  const Interval *x = a, *y = b;
  if (x->last - x->first != y->last - y->first)
    return (y->last - y->first) - (x->last - x->first);
  return by_size_desc(a, b);
}

/* Places the n intervals in their order at the lowest offsets that fit (one
 * after another without a plan); returns the arena's size, or -1 with an
 * error if it passes MAX_BLOCK. */
static long place(Graph *g, Interval *iv, int n, bool plan) {
  long size = 0;
  for (int k = 0; k < n; k++) {
    iv[k].offset = plan ? best_offset(iv, k, &iv[k]) : size;
    long end = iv[k].offset;
    if (!add_size(&end, iv[k].size)) {
      too_big(g, val(g, iv[k].value), "brings the planned arena past");
      return -1;
    }
    if (end > size)
      size = end;
  }
  return size;
}

/* The most reals live at any one step (n intervals over nsteps steps);
 * false, with *v the tensor that crossed MAX_BLOCK, if that is too many. */
static bool lower_bound(const Interval *iv, int n, int nsteps, long *bound, int *v) {
  *bound = 0;
  for (int s = 0; s < nsteps; s++) {
    long live = 0;
    for (int k = 0; k < n; k++)
      if (iv[k].first <= s && s <= iv[k].last && !add_size(&live, iv[k].size)) {
        *v = iv[k].value;
        return false;
      }
    if (live > *bound)
      *bound = live;
  }
  return true;
}

/* eager_update: the reals of gradients (groups holding a V_PGRAD) live at
 * the first step where `bound` reals are. */
static long grads_at_peak(const Graph *g, const Interval *iv, int n, int nsteps, long bound) {
  bool *grad = arena_alloc(g->ctx->arena, (size_t)g->values.len + 1);
  for (int i = 0; i < g->values.len; i++)
    if (g->values.items[i].kind == V_PGRAD)
      grad[root(g, i)] = true;
  for (int s = 0; s < nsteps; s++) {
    long live = 0, grads = 0;
    for (int k = 0; k < n; k++)
      if (iv[k].first <= s && s <= iv[k].last) {
        live += iv[k].size;   /* <= bound: lower_bound checked the sums */
        grads += grad[iv[k].value] ? iv[k].size : 0;
      }
    if (live == bound)
      return grads;
  }
  return 0;
}

void plan_memory(Graph *g, bool plan) {
  Arena *a = g->ctx->arena;
  g->arena_size = g->naive_size = g->lower_bound = g->tensors_bound = g->scratch_size = 0;
  g->grads_at_peak = 0;
  if (!place_persistent(g))
    return;
  int nv = g->values.len;
  int *first = arena_alloc(a, sizeof(int) * (size_t)(nv + 1));
  int *last = arena_alloc(a, sizeof(int) * (size_t)(nv + 1));
  for (int i = 0; i < nv; i++)
    g->values.items[i].alias = -1;
  live_ranges(g, first, last, plan);

  Interval *iv = arena_alloc(a, sizeof(Interval) * (size_t)(nv + 1));
  int n = 0, nsteps = 0;
  for (int i = 0; i < nv; i++) {
    Value *v = &g->values.items[i];
    if (!in_arena(g, v) || first[i] < 0 || !in_arena(g, val(g, root(g, i))))
      continue;
    long size = aligned_size(g, v);
    if (size < 0) {
      too_big(g, v, "needs more than");
      return;
    }
    if (__builtin_add_overflow(g->naive_size, size, &g->naive_size))
      g->naive_size = LONG_MAX;   /* only reported */
    if (v->alias >= 0)
      continue;
    iv[n++] = (Interval){i, first[i], last[i], size, 0};
    if (last[i] + 1 > nsteps)
      nsteps = last[i] + 1;
  }
  int big;
  if (!lower_bound(iv, n, nsteps, &g->lower_bound, &big)) {
    too_big(g, val(g, big), "brings the activations live at one step past");
    return;
  }
  if (g->eager_update)
    g->grads_at_peak = grads_at_peak(g, iv, n, nsteps, g->lower_bound);
  Interval *own = arena_alloc(a, sizeof(Interval) * (size_t)(n + 1));
  int nown = 0;
  for (int k = 0; k < n; k++) {
    if (!val(g, iv[k].value)->scratch)
      own[nown++] = iv[k];
    else if (iv[k].size > g->scratch_size)
      g->scratch_size = iv[k].size;
  }
  lower_bound(own, nown, nsteps, &g->tensors_bound, &big);   /* <= lower_bound: fits */
  /* Greedy placement in three orders: largest first, earliest first and
   * longest-lived first (short-lived scratch such as kernel workspaces
   * fragments the first); the smallest arena wins. */
  static int (*const orders[])(const void *, const void *) = {by_size_desc, by_first,
                                                              by_lifetime_desc};
  Interval *other = arena_alloc(a, sizeof(Interval) * (size_t)(n + 1));
  memcpy(other, iv, sizeof(Interval) * (size_t)n);
  qsort(iv, (size_t)n, sizeof *iv, by_size_desc);
  long size = place(g, iv, n, plan);
  if (size < 0)
    return;
  for (int o = 1; plan && o < 3; o++) {
    Interval *try = arena_alloc(a, sizeof(Interval) * (size_t)(n + 1));
    memcpy(try, other, sizeof(Interval) * (size_t)n);
    qsort(try, (size_t)n, sizeof *try, orders[o]);
    long alt = place(g, try, n, plan);
    if (alt < 0)
      return;
    if (alt < size)
      iv = try, size = alt;
  }
  g->arena_size = size;
  for (int k = 0; k < n; k++)
    g->values.items[iv[k].value].offset = iv[k].offset;
  for (int i = 0; i < nv; i++) {
    Value *v = &g->values.items[i];
    if (in_arena(g, v) && v->alias >= 0)
      v->offset = val(g, root(g, i))->offset;
  }
}

static int by_bytes_desc(const void *a, const void *b) {
  const long *x = a, *y = b;   /* pairs (size, value) */
  return x[0] != y[0] ? (x[0] < y[0] ? 1 : -1) : (x[1] > y[1]) - (x[1] < y[1]);
}

void describe_peak(Graph *g, Buf *b) {
  Arena *a = g->ctx->arena;
  int nv = g->values.len;
  int *first = arena_alloc(a, sizeof(int) * (size_t)(nv + 1));
  int *last = arena_alloc(a, sizeof(int) * (size_t)(nv + 1));
  for (int i = 0; i < nv; i++)
    g->values.items[i].alias = -1;
  live_ranges(g, first, last, true);   /* the aliases plan_memory made, again */
  int nsteps = 0;
  for (int i = 0; i < nv; i++)
    nsteps = last[i] + 1 > nsteps ? last[i] + 1 : nsteps;
  long best = -1;
  int peak = 0;
  for (int s = 0; s < nsteps; s++) {
    long live = 0;
    for (int i = 0; i < nv; i++)
      if (in_arena(g, &g->values.items[i]) && g->values.items[i].alias < 0 && first[i] >= 0 &&
          first[i] <= s && s <= last[i])
        live += aligned_size(g, &g->values.items[i]);
    if (live > best)
      best = live, peak = s;
  }
  long (*pairs)[2] = arena_alloc(a, sizeof *pairs * (size_t)(nv + 1));
  int n = 0;
  for (int i = 0; i < nv; i++)
    if (in_arena(g, &g->values.items[i]) && g->values.items[i].alias < 0 && first[i] >= 0 &&
        first[i] <= peak && peak <= last[i] && aligned_size(g, &g->values.items[i]) > 0)
      pairs[n][0] = aligned_size(g, &g->values.items[i]), pairs[n++][1] = i;
  qsort(pairs, (size_t)n, sizeof *pairs, by_bytes_desc);
  long esize = real_size(g->dtype);
  for (int k = 0; k < n; k++) {
    const Value *v = val(g, (int)pairs[k][1]);
    buf_printf(b, "%s%s %ld bytes", k ? ", " : "", v->name, pairs[k][0] * esize);
  }
}
