/*
 * train.c: the training half of the generated API.
 *
 *   <m>_gradients(m, n, inputs..., targets..., &loss)  forward + backward
 *   <m>_update(m)                                       one optimizer step
 *   <m>_train_step(...)                                 both, as one call
 *   <m>_set / <m>_get(m, "lr", v)                       hyper-parameters
 *   <m>_update_ratio(m, i)                              |update| / |param|
 *
 * The optimizer walks the trained tensors in fixed chunks (see "the
 * optimizer step" below) over params, grads and its state slots, which share
 * the params layout: the trained params come first in the params block
 * (passes/plan_memory.c), so grads and each state slot cover only that
 * prefix, NN_TRAINED_SIZE reals.  Weight decay skips biases and normalization parameters
 * unless `decay_all`.  Optimizer state and the step count are part of
 * checkpoints, so a resumed run continues bit-identically.
 *
 * --eager-update (Graph.eager_update): no gradients(), update() or grad(),
 * and no grads block.  train_step runs the forward pass, checks the loss and
 * the running statistics, then the backward pass, in which each param_update
 * node (passes/schedule_updates.c) calls nn_update_tensor: the same chunks,
 * blocks and sums as update(), on the tensor's gradient where the planner put
 * it in the arena, so the results are update()'s bit for bit.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "codegen.h"

int optimizer_slots(const TrainConfig *tc) { return optimizer_def(tc->optimizer)->slots; }

void emit_train_fields(Buf *c) {
  buf_puts(c, "    int64_t step;    /* optimizer steps taken: drives the schedule and Adam */\n");
  buf_puts(c, "    double hyper[NN_NUM_HYPER];   /* lr, momentum, ...: see nn_hyper_names */\n");
  buf_puts(c, "    double lr_now;   /* learning rate of the last step */\n");
  buf_puts(c, "    double ratio[NN_NUM_TENSORS > 0 ? NN_NUM_TENSORS : 1];   /* |update| / |param| of the last step */\n");
  buf_puts(c, "    double opt_sums[NN_MAX_CHUNKS][2];   /* per optimizer chunk: sum u^2, sum p^2 */\n");
  buf_puts(c, "    real buffers_prev[NN_BUFFERS_SIZE > 0 ? NN_BUFFERS_SIZE : 1];   /* buffers before the\n"
              "                       last gradients(): restored when its step fails */\n");
  buf_puts(c, "    int64_t counters_prev[NN_NUM_COUNTERS > 0 ? NN_NUM_COUNTERS : 1];   /* the same, counters */\n");
}

/* ---- the optimizer step ------------------------------------------------------
 *
 * With fast conv2d and dense kernels the update is a large part of a small
 * model's training step (it was 40% of the MLP's when it ran element by
 * element in double), so it is laid out for the vector units:
 *
 *   - Trained tensors are cut into chunks fixed here (whole max-norm units,
 *     about UPD_CHUNK elements) and chunks into blocks of NN_UB elements whose
 *     temporaries stay in L1.  Chunks may run on any thread: each owns its
 *     elements and its pair of sums, and the sums are added in chunk order.
 *   - A block runs its rule in loops without branches or calls, which gcc and
 *     clang vectorize.  The arithmetic is in `real`, the model's dtype, as
 *     PyTorch does it: in f32 the step u is off by a few float ulps of u, and
 *     u is ~1e-3 of p, so the new p is off by ~1e-3 of an ulp beyond its own
 *     rounding to float (half the float math, twice the vector lanes).  sqrt
 *     has a loop of its own with vector instructions (nn_sqrt_block in
 *     runtime/nn_update.c, with nn_max_norm and nn_all_finite): a loop
 *     of sqrt() calls stays scalar because of errno.
 *   - The sums behind update_ratio are in double, in NN_VL lanes (element i
 *     of a chunk adds to lane i % NN_VL), lanes added in order: fixed by the
 *     code, not by the thread.
 *   - The non-finite check is its own branch-free pass, since nothing may be
 *     written before it has seen every gradient.
 */

enum {
  UPD_CHUNK = 4096,        /* elements per chunk (rounded to whole units) */
  UPD_BLOCK = 256,         /* elements per block, a multiple of NN_VL */
  UPD_PARALLEL = 3 << 14,  /* trained elements from which chunks run in parallel: 2
                              threads measured 1.4x faster at 62k, no faster at 36k */
};

/* A param the optimizer updates: not frozen, with a gradient. */
static bool is_trained(const Value *v) { return v->kind == V_PARAM && !v->frozen && v->grad >= 0; }

/* The elements of v's optimizer chunks (the last may be shorter). */
static long chunk_len(const Value *v) {
  long unit = v->unit_size;
  return unit > 0 ? unit * (UPD_CHUNK / unit > 1 ? UPD_CHUNK / unit : 1) : UPD_CHUNK;
}

/* The optimizer chunks of every trained tensor (not frozen, with a
 * gradient), in params order: rows {begin, end, tensor} into out (when not
 * NULL), the tensor index counting params and buffers as nn_tensor_descs
 * does.  Returns the number of chunks; *trained gets the elements. */
static long walk_chunks(const CG *cg, Buf *out, long *trained) {
  const Graph *g = cg->layout;
  long count = 0;
  *trained = 0;
  for (int i = 0, t = 0; i < g->values.len; i++) {
    const Value *v = &g->values.items[i];
    if (v->kind != V_PARAM && v->kind != V_BUFFER)
      continue;
    if (is_trained(v)) {
      long size = shape_numel(&v->shape), len = chunk_len(v);
      for (long o = 0; o < size; o += len, count++)
        if (out)
          buf_printf(out, "    {%ldL, %ldL, %d},\n", v->offset + o,
                     v->offset + (o + len < size ? o + len : size), t);
      *trained += size;
    }
    t++;
  }
  return count;
}

/* The chunk table, before the model struct (which holds a sum pair per chunk). */
static void emit_update_chunks(CG *cg) {
  Buf *c = cg->c;
  buf_puts(c, "/* Optimizer chunks: params [begin, end) of one trained tensor, in order (whole\n"
              " * max-norm units).  The update runs chunk by chunk; its sums are per chunk,\n"
              " * added in this order. */\n");
  buf_puts(c, "static const struct nn_opt_chunk {\n    long begin, end;\n    int tensor;\n"
              "} nn_opt_chunks[] = {\n");
  long trained, count = walk_chunks(cg, c, &trained);
  if (!count)
    buf_puts(c, "    {0L, 0L, 0},\n");
  buf_printf(c, "};\n#define NN_NUM_CHUNKS %ld\n#define NN_MAX_CHUNKS %ld\n\n", count,
             count ? count : 1);
}

/* Hyper-parameters settable at run time: name and TrainConfig field. */
#define H(name, field) {name, offsetof(TrainConfig, field)}
static const struct { const char *name; size_t field; } hypers[] = {
    H("lr", lr), H("momentum", momentum), H("beta1", beta1), H("beta2", beta2), H("eps", eps),
    H("rho", rho), H("dampening", dampening), H("l2", l2), H("l1", l1), H("max_norm", max_norm),
    H("sched_steps", sched_steps), H("sched_gamma", sched_gamma),
    H("sched_power", sched_power), H("lr_min", lr_min)};
#undef H
enum { NUM_HYPER = sizeof hypers / sizeof *hypers };

static double hyper_value(const TrainConfig *tc, int i) {
  return *(const double *)((const char *)tc + hypers[i].field);
}

static const char *c_double(Arena *a, double v) {
  return isinf(v) ? "HUGE_VAL" : arena_printf(a, "%.17g", v);
}

/* What set() accepts, per hyper-parameter: the train section's range
 * (frontend/train.c), and 0 where the model has 0 (the feature off, as
 * max_norm without `decay maxnorm`). */
static void emit_hyper_ranges(CG *cg, const TrainConfig *tc) {
  static const ValueRange any = {0, INFINITY, true, false, false, "a non-negative number"};
  Buf *c = cg->c;
  buf_puts(c, "/* set(): lo, hi, lo allowed, hi allowed, whole numbers only, 0 allowed (feature\n"
              " * off in this model); the train section's rules. */\n");
  buf_puts(c, "static const struct nn_hyper_range {\n    double lo, hi;\n"
              "    int lo_closed, hi_closed, whole, zero;\n    const char *text;\n"
              "} nn_hyper_ranges[NN_NUM_HYPER] = {\n");
  for (int i = 0; i < NUM_HYPER; i++) {
    const ValueRange *r = train_value_range(hypers[i].field);
    r = r ? r : &any;
    buf_printf(c, "    {%s, %s, %d, %d, %d, %d, \"%s\"},   /* %s */\n", c_double(cg->a, r->lo),
               c_double(cg->a, r->hi), r->lo_closed, r->hi_closed, r->whole,
               hyper_value(tc, i) == 0, r->text, hypers[i].name);
  }
  buf_puts(c, "};\n\n");
}

void emit_train_defs(CG *cg) {
  const TrainConfig *tc = &cg->train->train_config;
  buf_printf(cg->c, "#define NN_NUM_HYPER %d\n", NUM_HYPER);
  buf_puts(cg->c, "enum { ");
  for (int i = 0; i < NUM_HYPER; i++)
    buf_printf(cg->c, "NN_H_%s%s", upper(cg->a, hypers[i].name), i + 1 < NUM_HYPER ? ", " : " };\n");
  buf_puts(cg->c, "static const char *const nn_hyper_names[NN_NUM_HYPER] = {");
  for (int i = 0; i < NUM_HYPER; i++)
    buf_printf(cg->c, "%s\"%s\"", i ? ", " : "", hypers[i].name);
  buf_puts(cg->c, "};\nstatic const double nn_hyper_defaults[NN_NUM_HYPER] = {");
  for (int i = 0; i < NUM_HYPER; i++)
    buf_printf(cg->c, "%s%.17g", i ? ", " : "", hyper_value(tc, i));
  buf_puts(cg->c, "};\n");
  emit_hyper_ranges(cg, tc);
  emit_update_chunks(cg);
}

void emit_train_decls(CG *cg) {
  const Graph *g = cg->train;
  Buf *h = cg->h;
  const char *m = cg->m, *R = real_name(g);
  const char *args = arena_printf(cg->a, "%s%s", io_params(cg, g, V_INPUT, false),
                                  io_params(cg, g, V_TARGET, false));
  const char *dx = io_params(cg, g, V_INGRAD, true);
  if (g->eager_update) {
    buf_printf(h, "/* Training: forward, backward and one optimizer step; *loss (may be NULL)\n"
                  " * gets the mean loss over the batch.  Class targets are labels 0..K-1.\n"
                  " * Built with --eager-update: each trained tensor's update is applied as soon\n"
                  " * as its gradient is complete, and the gradient's memory reused, so there is\n"
                  " * no gradients(), update() or grad().  %s_ERR_NONFINITE: a loss or running\n"
                  " * statistics not finite leave weights, buffers, optimizer state and step as\n"
                  " * they were; a gradient not finite stops the step at that tensor (last_error\n"
                  " * names it): the tensors updated before it in this step keep their update\n"
                  " * (weights and optimizer state), the rest is as it was. */\n", cg->M);
    buf_printf(h, "int %s_train_step(%s *m, int n%s, %s *loss);\n", m, m, args, R);
  } else {
    buf_printf(h, "/* Training: forward, backward and one optimizer step; *loss (may be NULL)\n"
                  " * gets the mean loss over the batch.  Class targets are labels 0..K-1.  A\n"
                  " * failed step (%s_ERR_NONFINITE: loss, gradient or running statistics not\n"
                  " * finite) leaves weights, buffers, optimizer state and step as they were. */\n", cg->M);
    buf_printf(h, "int %s_train_step(%s *m, int n%s, %s *loss);\n", m, m, args, R);
    buf_printf(h, "/* The two halves of train_step: gradients into the model (and the running\n"
                  " * statistics, unless it fails), then the update. */\n");
    buf_printf(h, "int %s_gradients(%s *m, int n%s, %s *loss%s);\n", m, m, args, R, dx);
    buf_printf(h, "int %s_update(%s *m);\n", m, m);
    buf_printf(h, "%s *%s_grad(%s *m, int i, size_t *numel);   /* gradient of tensor i */\n", R, m, m);
  }
  buf_printf(h, "/* Hyper-parameters by name: lr momentum beta1 beta2 eps rho dampening l2 l1\n"
                " * max_norm sched_steps sched_gamma sched_power lr_min.  set returns %s_ERR_ARG\n"
                " * (model unchanged) for an unknown name or a value the train section refuses:\n"
                " * eps, lr > 0; beta1, beta2, momentum, rho in [0, 1); see docs/api.md. */\n", cg->M);
  buf_printf(h, "int %s_set(%s *m, const char *name, double value);\n", m, m);
  buf_printf(h, "double %s_get(const %s *m, const char *name);\n", m, m);
  buf_printf(h, "double %s_lr(const %s *m);        /* learning rate of the last step */\n", m, m);
  buf_printf(h, "int64_t %s_step(const %s *m);     /* optimizer steps taken */\n", m, m);
  buf_printf(h, "/* |update| / |param| of tensor i in the last step (healthy: about 1e-3);\n"
                " * the optimizer's update, before any max-norm clipping. */\n");
  buf_printf(h, "double %s_update_ratio(const %s *m, int i);\n", m, m);
}

static void emit_schedule(CG *cg, const TrainConfig *tc) {
  Buf *c = cg->c;
  const char *s = tc->schedule;
  buf_printf(c, "/* Learning rate at step t (0-based): schedule %s. */\n", s);
  buf_puts(c, "static double nn_schedule_lr(const double *h, double t)\n{\n");
  if (!strcmp(s, "constant"))
    buf_puts(c, "    (void)t;\n    return h[NN_H_LR];\n");
  else if (!strcmp(s, "step"))
    buf_puts(c, "    return h[NN_H_LR] * pow(h[NN_H_SCHED_GAMMA], floor(t / h[NN_H_SCHED_STEPS]));\n");
  else if (!strcmp(s, "exp"))
    buf_puts(c, "    return h[NN_H_LR] * pow(h[NN_H_SCHED_GAMMA], t);\n");
  else if (!strcmp(s, "inv"))
    buf_puts(c, "    return h[NN_H_LR] * pow(1 + h[NN_H_SCHED_GAMMA] * t, -h[NN_H_SCHED_POWER]);\n");
  else if (!strcmp(s, "cosine"))
    buf_puts(c, "    const double x = t < h[NN_H_SCHED_STEPS] ? t / h[NN_H_SCHED_STEPS] : 1.0;\n"
                "    return h[NN_H_LR_MIN] + (h[NN_H_LR] - h[NN_H_LR_MIN]) * 0.5 * (1 + cos(3.14159265358979323846 * x));\n");
  else
    internal_error(__FILE__, __LINE__, "schedule %s", s);
  buf_puts(c, "}\n\n");
}

/* Which tensors the optimizer updates and decays. */
static void emit_param_flags(CG *cg, const TrainConfig *tc) {
  const Graph *g = cg->layout;
  Buf *c = cg->c;
  buf_puts(c, "/* Per tensor: trained (not frozen, not a buffer), decayed, elements per unit\n"
              " * for max-norm (0: none). */\n");
  buf_puts(c, "static const struct { int train, decay, unit; } nn_tensor_opt[] = {\n");
  int count = 0;
  for (int i = 0; i < g->values.len; i++) {
    const Value *v = &g->values.items[i];
    if (v->kind != V_PARAM && v->kind != V_BUFFER)
      continue;
    bool train = is_trained(v);
    buf_printf(c, "    {%d, %d, %d},   /* %s */\n", train, train && (v->decay || tc->decay_all),
               v->unit_size, c_string(cg->a, v->name));
    count++;
  }
  if (!count)
    buf_puts(c, "    {0, 0, 0},\n");
  buf_puts(c, "};\n\n");
}

/* One optimizer's rule on element i, given its gradient gi (decay included)
 * and the step's constants k.  A rule with a root sets num[i] and den[i]
 * (update = num / (sqrt(den) + eps), the sqrt in a loop of its own, or
 * `apply`'s u of them); the others define `const real u`. */
typedef struct Rule {
  const char *name;
  bool root;
  const char *lines[8];   /* NULL-terminated */
  const char *apply;
} Rule;

static const Rule rules[] = {
    {"sgd", false, {"const real u = k->lr * gi;"}, NULL},
    {"momentum", false, {"const real s = k->mu * s0[i] + k->damp * gi;", "s0[i] = s;",
                         "const real u = k->lr * s;"}, NULL},
    {"nesterov", false, {"const real s = k->mu * s0[i] + k->damp * gi;", "s0[i] = s;",
                         "const real u = k->lr * (gi + k->mu * s);"}, NULL},
    {"adagrad", true, {"const real s = s0[i] + gi * gi;", "s0[i] = s;", "num[i] = k->lr * gi;",
                       "den[i] = s;"}, NULL},
    {"rmsprop", true, {"const real s = k->rho * s0[i] + k->rho1 * gi * gi;", "s0[i] = s;",
                       "num[i] = k->lr * gi;", "den[i] = s;"}, NULL},
    /* as torch.optim.Adam: lr / bc1 and sqrt(bc2) once per step, two divisions per
     * element (it was three: lr (a / bc1) / (sqrt(b / bc2) + eps)) */
    {"adam", true, {"const real a = k->b1 * s0[i] + k->c1 * gi;",
                    "const real b = k->b2 * s1[i] + k->c2 * gi * gi;", "s0[i] = a;", "s1[i] = b;",
                    "num[i] = a;", "den[i] = b;"},
     "const real u = k->step * (num[i] / (den[i] / k->sbc2 + k->eps));"},
};

static const Rule *find_rule(const TrainConfig *tc) {
  for (size_t i = 0; i < sizeof rules / sizeof *rules; i++)
    if (!strcmp(rules[i].name, tc->optimizer))
      return &rules[i];
  internal_error(__FILE__, __LINE__, "optimizer %s", tc->optimizer);
  return NULL;
}

/* gi: with `decay` the L2 and L1 terms, else the gradient alone. */
static void emit_gi(Emit *e, bool decay) {
  if (decay)
    emitln(e, "const real gi = g[i] + k->l2 * p[i] + k->l1 * (real)((p[i] > 0) - (p[i] < 0));");
  else
    emitln(e, "const real gi = g[i];");
}

/* The step of element i (lane l): p -= u, lane sums of u^2 and p^2. */
static void emit_apply(Emit *e, const Rule *r, bool decay) {
  emitln(e, "const long i = i0 + l;");
  if (r->root)
    emitln(e, "%s", r->apply ? r->apply : "const real u = num[i] / (den[i] + k->eps);");
  else {
    emit_gi(e, decay);
    for (int j = 0; r->lines[j]; j++)
      emitln(e, "%s", r->lines[j]);
  }
  emitln(e, "const real q = p[i] - u;");
  emitln(e, "p[i] = q;");
  emitln(e, "su[l] += (double)u * u;");
  emitln(e, "sp[l] += (double)q * q;");
}

/* struct nn_opt_k: one step's constants for one tensor, hoisted out of the
 * element loops and rounded to real once. */
static void emit_step_consts(Emit *e) {
  emitln(e, "#define NN_UB %d   /* optimizer block: elements whose temporaries stay in L1 */",
         UPD_BLOCK);
  emitln(e, "/* One step's constants for one tensor, in the element type. */");
  emitln(e, "struct nn_opt_k {");
  emitln(e, "real lr, eps, mu, damp, rho, rho1, b1, c1, b2, c2, step, sbc2, l2, l1;");
  emitln(e, "};");
  buf_puts(e->b, "\n");
}

static const char *state_params(int slots) {
  return slots == 2 ? ", real *restrict s0, real *restrict s1"
         : slots   ? ", real *restrict s0"
                   : "";
}

/* The loops of nn_opt_block, gi with or without decay. */
static void emit_opt_loops(Emit *e, const Rule *r, bool decay) {
  if (r->root) {
    emitln(e, "real num[NN_UB], den[NN_UB];");
    emitln(e, "for (long i = 0; i < n; i++) {");
    emit_gi(e, decay);
    for (int j = 0; r->lines[j]; j++)
      emitln(e, "%s", r->lines[j]);
    emitln(e, "}");
    emitln(e, "nn_sqrt_block(den, n);");
  }
  emitln(e, "long i0 = 0;");
  emitln(e, "for (; i0 + NN_VL <= n; i0 += NN_VL)");
  emitln(e, "    for (int l = 0; l < NN_VL; l++) {");
  e->indent++;
  emit_apply(e, r, decay);
  e->indent--;
  emitln(e, "    }");
  emitln(e, "for (int l = 0; i0 + l < n; l++) {");
  emit_apply(e, r, decay);
  emitln(e, "}");
}

/* nn_opt_block: the rule on n <= NN_UB elements, then its lane sums added
 * to the chunk's. */
static void emit_opt_block(Emit *e, const Rule *r, int slots) {
  emitln(e, "/* %s on n <= NN_UB elements; lane sums of u^2 and of p^2 after the step are\n"
            " * added to du and pp.  NN_CLONES: vector code for this CPU in any build. */",
         r->name);
  emitln(e, "NN_CLONES static void nn_opt_block(real *restrict p, const real *restrict g%s, long n,",
         state_params(slots));
  emitln(e, "                         const struct nn_opt_k *k, double du[NN_VL], double pp[NN_VL])");
  emitln(e, "{");
  emitln(e, "double su[NN_VL] = {0}, sp[NN_VL] = {0};");
  /* without decay (the default) gi is g: the sign and the product of the L1
   * and L2 terms, in every element, were a quarter of Adam's first loop */
  emitln(e, "if (k->l2 == 0 && k->l1 == 0) {");
  emit_opt_loops(e, r, false);
  emitln(e, "} else {");
  emit_opt_loops(e, r, true);
  emitln(e, "}");
  emitln(e, "for (int l = 0; l < NN_VL; l++) {");
  emitln(e, "du[l] += su[l];");
  emitln(e, "pp[l] += sp[l];");
  emitln(e, "}");
  emitln(e, "}");
  buf_puts(e->b, "\n");
}

/* nn_opt_chunk: the blocks of chunk c, its two sums into m->opt_sums[c],
 * then max-norm on its units.  eager: the chunk's gradient is an argument,
 * not in m->grads. */
static void emit_opt_chunk(Emit *e, const char *m, int slots, bool eager) {
  emitln(e, "/* Chunk c: its blocks, then max-norm on its (whole) units.  Sums of u^2 and\n"
            " * p^2 (before clipping) into m->opt_sums[c].%s */",
         eager ? "  gc: the chunk's gradient." : "");
  emitln(e, "static void nn_opt_chunk(%s *m, const struct nn_opt_k *step, int c%s)", m,
         eager ? ", const real *gc" : "");
  emitln(e, "{");
  emitln(e, "const struct nn_opt_chunk *ch = &nn_opt_chunks[c];");
  emitln(e, "const int t = ch->tensor;");
  emitln(e, "struct nn_opt_k k = *step;");
  emitln(e, "if (!nn_tensor_opt[t].decay)");
  emitln(e, "    k.l2 = k.l1 = 0;");
  emitln(e, "double du[NN_VL] = {0}, pp[NN_VL] = {0};");
  emitln(e, "for (long o = ch->begin; o < ch->end; o += NN_UB) {");
  emitln(e, "const long n = ch->end - o < NN_UB ? ch->end - o : NN_UB;");
  const char *st = slots == 2 ? ", m->state + o, m->state + NN_TRAINED_SIZE + o"
                   : slots    ? ", m->state + o"
                              : "";
  emitln(e, "nn_opt_block(m->params + o, %s%s, n, &k, du, pp);",
         eager ? "gc + (o - ch->begin)" : "m->grads + o", st);
  emitln(e, "}");
  emitln(e, "double su = 0, sp = 0;");
  emitln(e, "for (int l = 0; l < NN_VL; l++) {");
  emitln(e, "su += du[l];");
  emitln(e, "sp += pp[l];");
  emitln(e, "}");
  emitln(e, "m->opt_sums[c][0] = su;");
  emitln(e, "m->opt_sums[c][1] = sp;");
  emitln(e, "const double c_max = m->hyper[NN_H_MAX_NORM];");
  emitln(e, "if (c_max > 0 && nn_tensor_opt[t].unit > 0)");
  emitln(e, "    nn_max_norm(m->params + ch->begin, ch->end - ch->begin, nn_tensor_opt[t].unit, c_max);");
  emitln(e, "}");
  buf_puts(e->b, "\n");
}

/* The sums of each tensor's chunks, in chunk order, into m->ratio. */
static void emit_ratios(Emit *e) {
  emitln(e, "for (int t = 0; t < NN_NUM_TENSORS; t++)");
  emitln(e, "    m->ratio[t] = 0;");
  emitln(e, "/* Each tensor's sums, chunk by chunk in order (its chunks are consecutive). */");
  emitln(e, "for (int c = 0; c < NN_NUM_CHUNKS;) {");
  emitln(e, "const int t = nn_opt_chunks[c].tensor;");
  emitln(e, "double du = 0, pp = 0;");
  emitln(e, "for (; c < NN_NUM_CHUNKS && nn_opt_chunks[c].tensor == t; c++) {");
  emitln(e, "du += m->opt_sums[c][0];");
  emitln(e, "pp += m->opt_sums[c][1];");
  emitln(e, "}");
  emitln(e, "m->ratio[t] = pp > 0 ? sqrt(du / pp) : 0;");
  emitln(e, "}");
}

/* const double *h, lr, t1 and struct nn_opt_k k: the constants of step
 * m->step, as locals. */
static void emit_step_k(Emit *e) {
  emitln(e, "const double *h = m->hyper;");
  emitln(e, "const double lr = nn_schedule_lr(h, (double)m->step), t1 = (double)(m->step + 1);");
  emitln(e, "const struct nn_opt_k k = {.lr = (real)lr, .eps = (real)h[NN_H_EPS],");
  emitln(e, "    .mu = (real)h[NN_H_MOMENTUM], .rho = (real)h[NN_H_RHO], .rho1 = (real)(1 - h[NN_H_RHO]),");
  emitln(e, "    /* torch.optim.SGD: the first step's buffer is the gradient, undamped */");
  emitln(e, "    .damp = (real)(m->step == 0 ? 1 : 1 - h[NN_H_DAMPENING]),");
  emitln(e, "    .b1 = (real)h[NN_H_BETA1], .c1 = (real)(1 - h[NN_H_BETA1]),");
  emitln(e, "    .step = (real)(lr / (1 - pow(h[NN_H_BETA1], t1))), .b2 = (real)h[NN_H_BETA2],");
  emitln(e, "    .c2 = (real)(1 - h[NN_H_BETA2]), .sbc2 = (real)sqrt(1 - pow(h[NN_H_BETA2], t1)),");
  emitln(e, "    .l2 = (real)h[NN_H_L2], .l1 = (real)h[NN_H_L1]};");
}

static void emit_update_api(Emit *e, const CG *cg, const TrainConfig *tc) {
  const char *m = cg->m;
  emitln(e, "/* Optimizer %s on every trained tensor; refuses (weights untouched) when a\n"
            " * gradient is not finite. */", tc->optimizer);
  emitln(e, "int %s_update(%s *m)", m, m);
  emitln(e, "{");
  emitln(e, "if (!m)");
  emitln(e, "    return NN_ERR_ARG;");
  emitln(e, "if (m->step == INT64_MAX)");
  emitln(e, "    return nn_fail(m, NN_ERR_ARG, \"step count at its maximum\");");
  emitln(e, "if (!nn_all_finite(m->grads, NN_GRADS_SIZE))");
  emitln(e, "    return nn_fail(m, NN_ERR_NONFINITE, \"gradient is not finite\");");
  emit_step_k(e);
  long trained, chunks = walk_chunks(cg, NULL, &trained);
  if (chunks > 1 && trained >= UPD_PARALLEL)
    emit_omp_parallel_for(e, arena_printf(cg->a, "num_threads(nn_team(%d)) schedule(static)",
                                          cg->layout->max_threads));
  emitln(e, "for (int c = 0; c < NN_NUM_CHUNKS; c++)");
  emitln(e, "    nn_opt_chunk(m, &k, c);");
  emit_ratios(e);
  emitln(e, "m->lr_now = lr;");
  emitln(e, "m->step++;");
  emitln(e, "return NN_OK;");
  emitln(e, "}");
  buf_puts(e->b, "\n");
}

/* --eager-update: nn_update_tensor, one tensor's step where its param_update
 * node stands, and nn_step_failed, what a failed one leaves. */
static void emit_update_tensor(Emit *e, const CG *cg) {
  const char *m = cg->m;
  bool big = false;   /* a tensor worth running its chunks in parallel */
  for (int i = 0; i < cg->layout->values.len; i++) {
    const Value *v = &cg->layout->values.items[i];
    big |= is_trained(v) && shape_numel(&v->shape) >= UPD_PARALLEL;
  }
  emitln(e, "/* --eager-update: the step of the tensor of chunks [c0, c1) from its gradient\n"
            " * g, as update() makes it; nothing written when g is not finite.  done: the\n"
            " * tensors this step updated before it. */");
  emitln(e, "static int nn_update_tensor(%s *m, const struct nn_opt_k *k, int c0, int c1, const real *g,", m);
  emitln(e, "                            int done)");
  emitln(e, "{");
  emitln(e, "const int t = nn_opt_chunks[c0].tensor;");
  emitln(e, "const long begin = nn_opt_chunks[c0].begin, numel = nn_opt_chunks[c1 - 1].end - begin;");
  emitln(e, "if (!nn_all_finite(g, numel)) {");
  emitln(e, "snprintf(m->error, sizeof m->error, \"gradient of %%s is not finite: the step stopped there; \"");
  emitln(e, "         \"the %%d tensor%%s updated before it in this step keep their update\",");
  emitln(e, "         nn_tensor_descs[t].name, done, done == 1 ? \"\" : \"s\");");
  emitln(e, "return NN_ERR_NONFINITE;");
  emitln(e, "}");
  if (big)
    emit_omp_parallel_for(e, arena_printf(cg->a, "num_threads(nn_team(%d)) schedule(static) if(numel >= %d)",
                                          cg->layout->max_threads, UPD_PARALLEL));
  emitln(e, "for (int c = c0; c < c1; c++)");
  emitln(e, "    nn_opt_chunk(m, k, c, g + (nn_opt_chunks[c].begin - begin));");
  emitln(e, "double du = 0, pp = 0;   /* in chunk order, as update() adds them */");
  emitln(e, "for (int c = c0; c < c1; c++) {");
  emitln(e, "du += m->opt_sums[c][0];");
  emitln(e, "pp += m->opt_sums[c][1];");
  emitln(e, "}");
  emitln(e, "m->ratio[t] = pp > 0 ? sqrt(du / pp) : 0;");
  emitln(e, "return NN_OK;");
  emitln(e, "}");
  buf_puts(e->b, "\n");
  emitln(e, "/* A step stopped by a gradient that is not finite: the running statistics and\n"
            " * counters as they were (the tensors updated before it keep their update). */");
  emitln(e, "static int nn_step_failed(%s *m)", m);
  emitln(e, "{");
  emitln(e, "memcpy(m->buffers, m->buffers_prev, sizeof(real) * (size_t)NN_BUFFERS_SIZE);");
  emitln(e, "memcpy(m->counters, m->counters_prev, sizeof m->counters);");
  emitln(e, "return NN_ERR_NONFINITE;");
  emitln(e, "}");
  buf_puts(e->b, "\n");
}

static void emit_update(CG *cg, const TrainConfig *tc) {
  const Rule *r = find_rule(tc);
  int slots = optimizer_slots(tc);
  bool eager = cg->train->eager_update;
  Emit e = {.ctx = cg->ctx, .b = cg->c, .g = cg->train};
  emit_schedule(cg, tc);
  emit_param_flags(cg, tc);
  emit_step_consts(&e);
  emit_opt_block(&e, r, slots);
  emit_opt_chunk(&e, cg->m, slots, eager);
  if (eager)
    emit_update_tensor(&e, cg);
  else
    emit_update_api(&e, cg, tc);
}

/* Label range checks for class targets. */
static void emit_target_checks(CG *cg, const Graph *g) {
  for (int i = 0; i < g->values.len; i++) {
    const Value *v = &g->values.items[i];
    if (v->kind != V_TARGET || v->classes <= 0)
      continue;
    const char *name = io_name(cg, v);
    buf_printf(cg->c, "    for (long i = 0; i < (long)n * %ld; i++)\n", shape_numel(&v->shape));
    buf_printf(cg->c, "        if (%s[i] < 0 || %s[i] >= %d)\n", name, name, v->classes);
    buf_printf(cg->c, "            return nn_fail(m, NN_ERR_DATA, \"%s: label out of range 0..%d\");\n",
               name, v->classes - 1);
  }
}

/* gradients' checks of n and of the arguments: `return nn_fail(...)` on the first failure. */
static void emit_arg_checks(CG *cg, const Graph *g) {
  buf_printf(cg->c, "    if (n < 1 || n > %d)\n        return nn_fail(m, NN_ERR_ARG, \"batch size out of range 1..%d\");\n",
             g->max_batch, g->max_batch);
  emit_io_checks(cg, g, V_INPUT);
  emit_io_checks(cg, g, V_TARGET);
  emit_io_checks(cg, g, V_INGRAD);
  emit_target_checks(cg, g);
}

/* The arguments of gradients after n, as a call passes them. */
static void emit_call_args(CG *cg, const Graph *g) {
  for (int k = 0; k < 2; k++) {
    ValueKind kind = k ? V_TARGET : V_INPUT;
    int ids[MAX_IO];
    int count = io_values(g, kind, ids);
    for (int i = 0; i < count; i++)
      buf_printf(cg->c, ", %s", io_name(cg, val(g, ids[i])));
  }
}

/* --distributed=mpi: the checks as a function, whose verdict the ranks agree
 * on before any of them starts the step (nn_dist_agree). */
static void emit_dist_checks(CG *cg) {
  const Graph *g = cg->train;
  Buf *c = cg->c;
  buf_printf(c, "static int nn_check_args(%s *m, int n%s%s%s)\n{\n", cg->m,
             io_params(cg, g, V_INPUT, false), io_params(cg, g, V_TARGET, false),
             io_params(cg, g, V_INGRAD, true));
  emit_arg_checks(cg, g);
  buf_puts(c, "    return NN_OK;\n}\n\n");
}

/* After the forward pass (gradients: after the backward pass): the loss into
 * *loss, the loss and the running statistics checked (a failure restores the
 * statistics), the counters counted. */
static void emit_step_checks(CG *cg, bool dist) {
  const Graph *g = cg->train;
  Buf *c = cg->c;
  const char *l = tensor_ref(cg, g, g->loss);   /* a name, or "m->arena + 16" */
  buf_printf(c, strchr(l, ' ') ? "\n    const real l = (%s)[0];\n" : "\n    const real l = %s[0];\n", l);
  if (!dist)
    buf_puts(c, "    if (loss)\n        *loss = l;\n");
  buf_printf(c, "    const char *bad = !isfinite(l) ? \"loss is not finite\"\n"
                "                      : %s ? \"running statistics are not finite\"\n"
                "                      : NULL;\n",
             dist ? "!stats_ok" : "!nn_all_finite(m->buffers, NN_BUFFERS_SIZE)");
  if (dist)
    buf_puts(c, "    status = nn_dist_finish(m, bad, l, loss);   /* also waits for the buckets */\n"
                "    if (status) {\n"
                "        memcpy(m->buffers, m->buffers_prev, sizeof(real) * (size_t)NN_BUFFERS_SIZE);\n"
                "        return status;\n    }\n");
  else
    buf_puts(c, "    if (bad) {\n"
                "        memcpy(m->buffers, m->buffers_prev, sizeof(real) * (size_t)NN_BUFFERS_SIZE);\n"
                "        return nn_fail(m, NN_ERR_NONFINITE, bad);\n    }\n");
  /* PyTorch counts num_batches_tracked in every training forward; saturating,
   * so a count always loads back (load refuses only negative ones) */
  buf_puts(c, "    memcpy(m->counters_prev, m->counters, sizeof m->counters);\n");
  int ticking = 0;   /* batchnorm stats=running counts nothing, as an eval() layer */
  for (int i = 0; i < g->values.len; i++)
    ticking += g->values.items[i].kind == V_COUNTER && !g->values.items[i].frozen;
  if (ticking == g->counters)
    buf_puts(c, "    for (int i = 0; i < NN_NUM_COUNTERS; i++)\n"
                "        m->counters[i] += m->counters[i] < INT64_MAX;\n");
  else
    for (int i = 0; i < g->values.len; i++)
      if (g->values.items[i].kind == V_COUNTER && !g->values.items[i].frozen)
        buf_printf(c, "    m->counters[%ld] += m->counters[%ld] < INT64_MAX;\n",
                   g->values.items[i].offset, g->values.items[i].offset);
}

static void emit_gradients(CG *cg) {
  const Graph *g = cg->train;
  Buf *c = cg->c;
  const char *m = cg->m, *R = real_name(g);
  bool dist = cg->cfg->distributed;
  if (dist)
    emit_dist_checks(cg);
  buf_printf(c, "int %s_gradients(%s *m, int n%s%s, %s *loss%s)\n{\n", m, m,
             io_params(cg, g, V_INPUT, false), io_params(cg, g, V_TARGET, false), R,
             io_params(cg, g, V_INGRAD, true));
  buf_puts(c, "    if (!m)\n        return NN_ERR_ARG;\n");
  if (dist) {
    /* every rank runs the same collectives in the same order, failing or not */
    buf_printf(c, "    int status = m->synced ? NN_OK : %s_sync(m);   /* the first step: same model, rank 0's weights */\n", m);
    buf_puts(c, "    if (!status)\n        status = nn_dist_agree(m, nn_check_args(m, n");
    emit_call_args(cg, g);
    int ids[MAX_IO], count = io_values(g, V_INGRAD, ids);
    for (int i = 0; i < count; i++)
      buf_printf(c, ", %s", io_name(cg, val(g, ids[i])));
    buf_puts(c, "), n);\n    if (status)\n        return status;\n");
  } else {
    emit_arg_checks(cg, g);
  }
  /* The forward pass updates the running statistics in place: a copy taken
   * first undoes that when the step fails (a NaN pixel, a 3e38 one whose
   * variance is Inf in float). */
  buf_puts(c, "    memcpy(m->buffers_prev, m->buffers, sizeof(real) * (size_t)NN_BUFFERS_SIZE);\n");
  buf_puts(c, "    memset(m->grads, 0, sizeof(real) * (size_t)NN_GRADS_SIZE);\n");
  emit_calls(cg, g);
  if (dist)
    emit_dist_rest(cg);
  emit_step_checks(cg, dist);
  buf_puts(c, "    return NN_OK;\n}\n\n");
}

/* --eager-update, emit_calls before the first backward kernel: the checks
 * (nothing is updated yet) and the step's constants. */
void emit_eager_checks(CG *cg) {
  emit_step_checks(cg, false);
  Emit e = {.ctx = cg->ctx, .b = cg->c, .g = cg->train, .indent = 1};
  emit_step_k(&e);
  bool any = false;
  for (int i = 0; i < cg->train->nodes.len; i++)
    any |= is_emitted(cg->train, &cg->train->nodes.items[i]) &&
           (op_def(cg->train->nodes.items[i].op)->roles & ROLE_UPDATE);
  if (!any)
    emitln(&e, "(void)k;   /* no tensor is trained */");
  cg->eager_checked = true;
}

/* --eager-update, emit_calls at a param_update node: its tensor's step. */
void emit_eager_update(CG *cg, const Node *node) {
  const Graph *g = cg->train;
  const Value *p = val(g, node->in[0]);
  long first = 0, end = 0;   /* p's rows of nn_opt_chunks, in walk_chunks's order */
  for (int i = 0; i < g->values.len && !end; i++) {
    const Value *v = &g->values.items[i];
    long n = is_trained(v) ? (shape_numel(&v->shape) + chunk_len(v) - 1) / chunk_len(v) : 0;
    if (v == p)
      end = first + n;
    else
      first += n;
  }
  buf_printf(cg->c, "    if (nn_update_tensor(m, &k, %ld, %ld, %s, %d))   /* %s */\n"
                    "        return nn_step_failed(m);\n",
             first, end, tensor_ref(cg, g, node->in[1]), cg->eager_done++,
             c_string(cg->a, p->name));
}

static void emit_train_step(CG *cg) {
  const Graph *g = cg->train;
  Buf *c = cg->c;
  const char *m = cg->m, *R = real_name(g);
  buf_printf(c, "int %s_train_step(%s *m, int n%s%s, %s *loss)\n{\n", m, m,
             io_params(cg, g, V_INPUT, false), io_params(cg, g, V_TARGET, false), R);
  buf_printf(c, "    int status = %s_gradients(m, n", m);
  emit_call_args(cg, g);
  buf_puts(c, ", loss");
  for (int i = 0; i < io_count(g, V_INGRAD); i++)
    buf_puts(c, ", NULL");
  buf_printf(c, ");\n    if (status)\n        return status;\n    status = %s_update(m);\n", m);
  buf_puts(c, "    if (status) {   /* the weights are untouched: so are the running statistics */\n"
              "        memcpy(m->buffers, m->buffers_prev, sizeof(real) * (size_t)NN_BUFFERS_SIZE);\n"
              "        memcpy(m->counters, m->counters_prev, sizeof m->counters);\n    }\n"
              "    return status;\n}\n\n");
}

static void emit_accessors(CG *cg) {
  Buf *c = cg->c;
  const char *m = cg->m;
  buf_puts(c, "static void nn_init_train(struct ");
  buf_printf(c, "%s *m)\n{\n    memcpy(m->hyper, nn_hyper_defaults, sizeof m->hyper);\n}\n\n", m);
  buf_printf(c, "int %s_set(%s *m, const char *name, double value)\n{\n", m, m);
  buf_puts(c, "    if (!m || !name)\n        return NN_ERR_ARG;\n"
              "    for (int i = 0; i < NN_NUM_HYPER; i++)\n"
              "        if (strcmp(name, nn_hyper_names[i]) == 0) {\n"
              "            const struct nn_hyper_range *r = &nn_hyper_ranges[i];\n"
              "            const int ok = isfinite(value) && (r->lo_closed ? value >= r->lo : value > r->lo) &&\n"
              "                           (r->hi_closed ? value <= r->hi : value < r->hi) &&\n"
              "                           (!r->whole || value == floor(value));\n"
              "            if (!ok && !(r->zero && value == 0)) {\n"
              "                snprintf(m->error, sizeof m->error, \"%s must be %s%s\", nn_hyper_names[i],\n"
              "                         r->text, r->zero ? \" or 0\" : \"\");\n"
              "                return NN_ERR_ARG;\n            }\n"
              "            m->hyper[i] = value;\n            return NN_OK;\n        }\n"
              "    return nn_fail(m, NN_ERR_ARG, \"unknown hyper-parameter\");\n}\n\n");
  buf_printf(c, "double %s_get(const %s *m, const char *name)\n{\n", m, m);
  buf_puts(c, "    for (int i = 0; m && name && i < NN_NUM_HYPER; i++)\n"
              "        if (strcmp(name, nn_hyper_names[i]) == 0)\n            return m->hyper[i];\n"
              "    return NAN;\n}\n\n");
  buf_printf(c, "double %s_lr(const %s *m) { return m ? m->lr_now : 0; }\n\n", m, m);
  buf_printf(c, "int64_t %s_step(const %s *m) { return m ? m->step : 0; }\n\n", m, m);
  buf_printf(c, "double %s_update_ratio(const %s *m, int i)\n{\n", m, m);
  buf_puts(c, "    return m && i >= 0 && i < NN_NUM_TENSORS ? m->ratio[i] : 0;\n}\n\n");
  if (cg->train->eager_update)
    return;   /* no grads block, no grad() */
  buf_printf(c, "real *%s_grad(%s *m, int i, size_t *numel)\n{\n", m, m);
  buf_printf(c, "    const real *p = %s_tensor(m, i, numel);\n", m);
  buf_puts(c, "    if (!p || nn_tensor_descs[i].block != 0 || nn_tensor_descs[i].offset >= NN_GRADS_SIZE)\n"
              "        return NULL;   /* a buffer or a frozen param: no gradient */\n"
              "    return m->grads + nn_tensor_descs[i].offset;\n}\n\n");
}

/* Checkpoint entries beyond the weights: optimizer state per trained tensor
 * (PyTorch's names: momentum_buffer, exp_avg, exp_avg_sq, sum, square_avg)
 * and the step count.  Optional, so plain weight files load too. */
static void emit_state_table(CG *cg, const TrainConfig *tc) {
  const Graph *g = cg->layout;
  Buf *c = cg->c;
  const OptimizerDef *od = optimizer_def(tc->optimizer);
  int slots = od->slots;
  buf_puts(c, "#ifndef NN_NO_FILES\n/* Optimizer state in checkpoints: name, tensor index, slot. */\n");
  buf_puts(c, "static const struct { const char *name; int tensor, slot; } nn_state_descs[] = {\n");
  int count = 0, t = 0;
  for (int i = 0; i < g->values.len; i++) {
    const Value *v = &g->values.items[i];
    if (v->kind != V_PARAM && v->kind != V_BUFFER)
      continue;
    if (is_trained(v))
      for (int s = 0; s < slots; s++, count++)
        buf_printf(c, "    {%s, %d, %d},\n",
                   c_string(cg->a, arena_printf(cg->a, "optimizer.%s.%s", v->name, od->slot[s])),
                   t, s);
    t++;
  }
  if (!count)
    buf_puts(c, "    {\"\", 0, 0},\n");
  buf_printf(c, "};\n#define NN_NUM_STATE %d\n#define NN_MAX_STATE %d\n", count, count ? count : 1);
  /* a checkpoint of a build that trains more of the model loads too: the
   * state of what is frozen here is read and dropped */
  buf_puts(c, "static const char *const nn_untrained_state[] = {\n");
  int untrained = 0;
  for (int i = 0; i < g->values.len; i++) {
    const Value *v = &g->values.items[i];
    if (v->kind == V_PARAM && !(!v->frozen && v->grad >= 0) && ++untrained)
      buf_printf(c, "    %s,\n", c_string(cg->a, arena_printf(cg->a, "optimizer.%s.*", v->name)));
  }
  if (!untrained)
    buf_puts(c, "    \"\",\n");
  buf_printf(c, "};\n#define NN_NUM_UNTRAINED %d\n", untrained);
  /* second moments must be >= 0: their square root divides the step */
  const bool *second = od->second_moment;
  buf_printf(c, "static const int nn_state_checks[2] = {%s, %s};   /* what load requires per slot */\n\n",
             second[0] ? "NN_CHECK_NONNEG" : "NN_CHECK_FINITE",
             second[1] ? "NN_CHECK_NONNEG" : "NN_CHECK_FINITE");
  buf_printf(c, "static int nn_train_tensors(%s *m, nn_tensor *t)\n{\n", cg->m);
  buf_puts(c, "    int count = 0;\n"
              "    for (int i = 0; i < NN_NUM_STATE; i++) {\n"
              "        const struct nn_tensor_desc *d = &nn_tensor_descs[nn_state_descs[i].tensor];\n"
              "        nn_tensor *e = &t[count++];\n"
              "        *e = (nn_tensor){nn_state_descs[i].name, NN_REAL_DTYPE, d->rank, {0, 0, 0, 0}, NULL, 1,\n"
              "                         nn_state_checks[nn_state_descs[i].slot]};\n"
              "        memcpy(e->shape, d->shape, sizeof e->shape);\n"
              "        e->data = m->state + (long)nn_state_descs[i].slot * NN_TRAINED_SIZE + d->offset;\n"
              "    }\n"
              "    t[count++] = (nn_tensor){\"optimizer.step\", \"I64\", 0, {0, 0, 0, 0}, &m->step, 1, NN_CHECK_STEP};\n"
              "    return count;\n}\n#endif /* NN_NO_FILES */\n\n");
}

/* --eager-update: train_step alone, the forward pass, the checks and the
 * backward pass with each tensor's update where its param_update node is. */
static void emit_eager_train_step(CG *cg) {
  const Graph *g = cg->train;
  Buf *c = cg->c;
  const char *m = cg->m;
  buf_printf(c, "int %s_train_step(%s *m, int n%s%s, %s *loss)\n{\n", m, m,
             io_params(cg, g, V_INPUT, false), io_params(cg, g, V_TARGET, false), real_name(g));
  buf_puts(c, "    if (!m)\n        return NN_ERR_ARG;\n");
  emit_arg_checks(cg, g);
  buf_puts(c, "    if (m->step == INT64_MAX)\n"
              "        return nn_fail(m, NN_ERR_ARG, \"step count at its maximum\");\n");
  buf_puts(c, "    memcpy(m->buffers_prev, m->buffers, sizeof(real) * (size_t)NN_BUFFERS_SIZE);\n");
  cg->eager_checked = false;
  cg->eager_done = 0;
  emit_calls(cg, g);   /* emit_eager_checks, emit_eager_update */
  if (!cg->eager_checked)   /* no backward pass */
    emit_eager_checks(cg);
  buf_puts(c, "    m->lr_now = lr;\n    m->step++;\n    return NN_OK;\n}\n\n");
}

void emit_train(CG *cg) {
  const TrainConfig *tc = &cg->train->train_config;
  if (cg->train->eager_update) {
    emit_update(cg, tc);   /* the static functions train_step calls */
    emit_eager_train_step(cg);
  } else {
    emit_gradients(cg);
    emit_train_step(cg);
    emit_update(cg, tc);
  }
  emit_accessors(cg);
  emit_state_table(cg, tc);
}
