/*
 * train.c: the training half of the generated API.
 *
 *   <m>_gradients(m, n, inputs..., targets..., &loss)  forward + backward
 *   <m>_update(m)                                       one optimizer step
 *   <m>_train_step(...)                                 both, as one call
 *   <m>_set / <m>_get(m, "lr", v)                       hyper-parameters
 *   <m>_update_ratio(m, i)                              |update| / |param|
 *
 * The optimizer walks the parameter table: one loop per tensor over params,
 * grads and its state slots, which share the params layout.  Weight decay
 * skips biases and normalization parameters unless `decay_all`.  Optimizer
 * state and the step count are part of checkpoints, so a resumed run
 * continues bit-identically.
 */
#include <string.h>

#include "codegen.h"

int optimizer_slots(const TrainConfig *tc) {
  const char *o = tc->optimizer;
  if (!strcmp(o, "adam"))
    return 2;
  if (!strcmp(o, "momentum") || !strcmp(o, "nesterov") || !strcmp(o, "adagrad") ||
      !strcmp(o, "rmsprop"))
    return 1;
  return 0;
}

void emit_train_fields(Buf *c) {
  buf_puts(c, "    int64_t step;    /* optimizer steps taken: drives the schedule and Adam */\n");
  buf_puts(c, "    double hyper[NN_NUM_HYPER];   /* lr, momentum, ...: see nn_hyper_names */\n");
  buf_puts(c, "    double lr_now;   /* learning rate of the last step */\n");
  buf_puts(c, "    double ratio[NN_NUM_TENSORS > 0 ? NN_NUM_TENSORS : 1];   /* |update| / |param| of the last step */\n");
}

/* Hyper-parameters settable at run time, with the model's values. */
static void hyper_table(const TrainConfig *tc, const char **names, double *values, int *count) {
  const char *n[] = {"lr", "momentum", "beta1", "beta2", "eps", "rho", "l2", "l1", "max_norm",
                     "sched_steps", "sched_gamma", "sched_power", "lr_min"};
  double v[] = {tc->lr, tc->momentum, tc->beta1, tc->beta2, tc->eps, tc->rho, tc->l2, tc->l1,
                tc->max_norm, tc->sched_steps, tc->sched_gamma, tc->sched_power, tc->lr_min};
  *count = (int)(sizeof v / sizeof *v);
  for (int i = 0; i < *count; i++) {
    names[i] = n[i];
    values[i] = v[i];
  }
}

void emit_train_defs(CG *cg) {
  const TrainConfig *tc = program_train_config(cg->prog);
  const char *names[32];
  double values[32];
  int count;
  hyper_table(tc, names, values, &count);
  buf_printf(cg->c, "#define NN_NUM_HYPER %d\n", count);
  buf_puts(cg->c, "enum { ");
  for (int i = 0; i < count; i++)
    buf_printf(cg->c, "NN_H_%s%s", upper(cg->a, names[i]), i + 1 < count ? ", " : " };\n");
  buf_puts(cg->c, "static const char *const nn_hyper_names[NN_NUM_HYPER] = {");
  for (int i = 0; i < count; i++)
    buf_printf(cg->c, "%s\"%s\"", i ? ", " : "", names[i]);
  buf_puts(cg->c, "};\nstatic const double nn_hyper_defaults[NN_NUM_HYPER] = {");
  for (int i = 0; i < count; i++)
    buf_printf(cg->c, "%s%.17g", i ? ", " : "", values[i]);
  buf_puts(cg->c, "};\n\n");
}

void emit_train_decls(CG *cg) {
  const Graph *g = cg->train;
  Buf *h = cg->h;
  const char *m = cg->m, *R = real_name(g);
  const char *args = arena_printf(cg->a, "%s%s", io_params(cg, g, V_INPUT, false),
                                  io_params(cg, g, V_TARGET, false));
  const char *dx = io_params(cg, g, V_INGRAD, true);
  buf_printf(h, "/* Training: forward, backward and one optimizer step; *loss (may be NULL)\n"
                " * gets the mean loss over the batch.  Class targets are labels 0..K-1. */\n");
  buf_printf(h, "int %s_train_step(%s *m, int n%s, %s *loss);\n", m, m, args, R);
  buf_printf(h, "/* The two halves of train_step: gradients into the model, then the update. */\n");
  buf_printf(h, "int %s_gradients(%s *m, int n%s, %s *loss%s);\n", m, m, args, R, dx);
  buf_printf(h, "int %s_update(%s *m);\n", m, m);
  buf_printf(h, "%s *%s_grad(%s *m, int i, size_t *numel);   /* gradient of tensor i */\n", R, m, m);
  buf_printf(h, "/* Hyper-parameters by name: lr momentum beta1 beta2 eps rho l2 l1 max_norm\n"
                " * sched_steps sched_gamma sched_power lr_min.  set returns NN_ERR_ARG for an\n"
                " * unknown name or a negative or non-finite value. */\n");
  buf_printf(h, "int %s_set(%s *m, const char *name, double value);\n", m, m);
  buf_printf(h, "double %s_get(const %s *m, const char *name);\n", m, m);
  buf_printf(h, "double %s_lr(const %s *m);        /* learning rate of the last step */\n", m, m);
  buf_printf(h, "int64_t %s_step(const %s *m);     /* optimizer steps taken */\n", m, m);
  buf_printf(h, "/* |update| / |param| of tensor i in the last step (healthy: about 1e-3);\n"
                " * the optimizer's update, before any max-norm clipping. */\n");
  buf_printf(h, "double %s_update_ratio(const %s *m, int i);\n", m, m);
}

/* The per-element update rule of the configured optimizer. */
static void emit_rule(Buf *c, const TrainConfig *tc) {
  const char *o = tc->optimizer;
  if (!strcmp(o, "sgd"))
    buf_puts(c, "            const double u = lr * gi;\n");
  else if (!strcmp(o, "momentum"))
    buf_puts(c, "            s0[i] = (real)(h[NN_H_MOMENTUM] * s0[i] + gi);\n"
                "            const double u = lr * s0[i];\n");
  else if (!strcmp(o, "nesterov"))
    buf_puts(c, "            s0[i] = (real)(h[NN_H_MOMENTUM] * s0[i] + gi);\n"
                "            const double u = lr * (gi + h[NN_H_MOMENTUM] * s0[i]);\n");
  else if (!strcmp(o, "adagrad"))
    buf_puts(c, "            s0[i] = (real)(s0[i] + gi * gi);\n"
                "            const double u = lr * gi / (sqrt((double)s0[i]) + h[NN_H_EPS]);\n");
  else if (!strcmp(o, "rmsprop"))
    buf_puts(c, "            s0[i] = (real)(h[NN_H_RHO] * s0[i] + (1 - h[NN_H_RHO]) * gi * gi);\n"
                "            const double u = lr * gi / (sqrt((double)s0[i]) + h[NN_H_EPS]);\n");
  else if (!strcmp(o, "adam"))
    buf_puts(c, "            s0[i] = (real)(h[NN_H_BETA1] * s0[i] + (1 - h[NN_H_BETA1]) * gi);\n"
                "            s1[i] = (real)(h[NN_H_BETA2] * s1[i] + (1 - h[NN_H_BETA2]) * gi * gi);\n"
                "            const double u = lr * (s0[i] / bc1) / (sqrt(s1[i] / bc2) + h[NN_H_EPS]);\n");
  else
    internal_error(__FILE__, __LINE__, "optimizer %s", o);
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
    bool train = v->kind == V_PARAM && !v->frozen && v->grad >= 0;
    buf_printf(c, "    {%d, %d, %d},   /* %s */\n", train, train && (v->decay || tc->decay_all),
               v->unit_size, c_string(cg->a, v->name));
    count++;
  }
  if (!count)
    buf_puts(c, "    {0, 0, 0},\n");
  buf_puts(c, "};\n\n");
}

static void emit_update(CG *cg, const TrainConfig *tc) {
  Buf *c = cg->c;
  const char *m = cg->m;
  int slots = optimizer_slots(tc);
  emit_schedule(cg, tc);
  emit_param_flags(cg, tc);
  buf_printf(c, "/* Optimizer %s on every trained tensor; refuses (weights untouched) when a\n"
                " * gradient is not finite. */\n", tc->optimizer);
  buf_printf(c, "int %s_update(%s *m)\n{\n", m, m);
  buf_puts(c, "    if (!m)\n        return NN_ERR_ARG;\n");
  buf_puts(c, "    for (long i = 0; i < NN_PARAMS_SIZE; i++)\n        if (!isfinite(m->grads[i]))\n"
              "            return nn_fail(m, NN_ERR_NONFINITE, \"gradient is not finite\");\n");
  buf_puts(c, "    const double *h = m->hyper;\n    const double lr = nn_schedule_lr(h, (double)m->step);\n");
  buf_puts(c, "    const double bc1 = 1 - pow(h[NN_H_BETA1], (double)(m->step + 1));\n"
              "    const double bc2 = 1 - pow(h[NN_H_BETA2], (double)(m->step + 1));\n"
              "    (void)bc1;\n    (void)bc2;\n");
  buf_puts(c, "    for (int t = 0; t < NN_NUM_TENSORS; t++) {\n"
              "        const struct nn_tensor_desc *d = &nn_tensor_descs[t];\n"
              "        m->ratio[t] = 0;\n"
              "        if (!nn_tensor_opt[t].train)\n            continue;\n"
              "        long size = 1;\n        for (int k = 0; k < d->rank; k++)\n"
              "            size *= (long)d->shape[k];\n"
              "        real *p = m->params + d->offset;\n"
              "        const real *g = m->grads + d->offset;\n");
  for (int s = 0; s < slots; s++)
    buf_printf(c, "        real *s%d = m->state + %dL * NN_PARAMS_SIZE + d->offset;\n", s, s);
  buf_puts(c, "        const double l2 = nn_tensor_opt[t].decay ? h[NN_H_L2] : 0;\n"
              "        const double l1 = nn_tensor_opt[t].decay ? h[NN_H_L1] : 0;\n"
              "        double du = 0, pp = 0;\n"
              "        for (long i = 0; i < size; i++) {\n"
              "            const double gi = g[i] + l2 * p[i] + l1 * ((p[i] > 0) - (p[i] < 0));\n");
  emit_rule(c, tc);
  buf_puts(c, "            p[i] = (real)(p[i] - u);\n"
              "            du += u * u;\n            pp += (double)p[i] * p[i];\n        }\n"
              "        const int unit = nn_tensor_opt[t].unit;\n"
              "        if (h[NN_H_MAX_NORM] > 0 && unit > 0)\n"
              "            for (long o = 0; o + unit <= size; o += unit) {\n"
              "                double norm = 0;\n"
              "                for (int k = 0; k < unit; k++)\n"
              "                    norm += (double)p[o + k] * p[o + k];\n"
              "                norm = sqrt(norm);\n"
              "                if (norm > h[NN_H_MAX_NORM])\n"
              "                    for (int k = 0; k < unit; k++)\n"
              "                        p[o + k] = (real)(p[o + k] * (h[NN_H_MAX_NORM] / norm));\n"
              "            }\n"
              "        m->ratio[t] = pp > 0 ? sqrt(du / pp) : 0;\n    }\n"
              "    m->lr_now = lr;\n    m->step++;\n    return NN_OK;\n}\n\n");
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

static void emit_gradients(CG *cg) {
  const Graph *g = cg->train;
  Buf *c = cg->c;
  const char *m = cg->m, *R = real_name(g);
  buf_printf(c, "int %s_gradients(%s *m, int n%s%s, %s *loss%s)\n{\n", m, m,
             io_params(cg, g, V_INPUT, false), io_params(cg, g, V_TARGET, false), R,
             io_params(cg, g, V_INGRAD, true));
  buf_puts(c, "    if (!m)\n        return NN_ERR_ARG;\n");
  buf_printf(c, "    if (n < 1 || n > %d)\n        return nn_fail(m, NN_ERR_ARG, \"batch size out of range 1..%d\");\n",
             g->max_batch, g->max_batch);
  emit_io_checks(cg, g, V_INPUT);
  emit_io_checks(cg, g, V_TARGET);
  emit_io_checks(cg, g, V_INGRAD);
  emit_target_checks(cg, g);
  buf_puts(c, "    memset(m->grads, 0, sizeof(real) * (size_t)NN_GRADS_SIZE);\n");
  emit_calls(cg, g);
  buf_printf(c, "    const real l = (%s)[0];\n", value_ptr(cg, g, val(g, g->loss)));
  buf_puts(c, "    if (loss)\n        *loss = l;\n");
  buf_puts(c, "    if (!isfinite(l))\n        return nn_fail(m, NN_ERR_NONFINITE, \"loss is not finite\");\n");
  buf_puts(c, "    return NN_OK;\n}\n\n");
}

static void emit_train_step(CG *cg) {
  const Graph *g = cg->train;
  Buf *c = cg->c;
  const char *m = cg->m, *R = real_name(g);
  buf_printf(c, "int %s_train_step(%s *m, int n%s%s, %s *loss)\n{\n", m, m,
             io_params(cg, g, V_INPUT, false), io_params(cg, g, V_TARGET, false), R);
  buf_printf(c, "    int status = %s_gradients(m, n", m);
  for (int k = 0; k < 2; k++) {
    ValueKind kind = k ? V_TARGET : V_INPUT;
    int ids[MAX_IO];
    int count = io_values(g, kind, ids);
    for (int i = 0; i < count; i++)
      buf_printf(c, ", %s", io_name(cg, val(g, ids[i])));
  }
  buf_puts(c, ", loss");
  for (int i = 0; i < io_count(g, V_INGRAD); i++)
    buf_puts(c, ", NULL");
  buf_printf(c, ");\n    return status ? status : %s_update(m);\n}\n\n", m);
}

static void emit_accessors(CG *cg) {
  Buf *c = cg->c;
  const char *m = cg->m;
  buf_puts(c, "static void nn_init_train(struct ");
  buf_printf(c, "%s *m)\n{\n    memcpy(m->hyper, nn_hyper_defaults, sizeof m->hyper);\n}\n\n", m);
  buf_printf(c, "int %s_set(%s *m, const char *name, double value)\n{\n", m, m);
  buf_puts(c, "    if (!m || !name)\n        return NN_ERR_ARG;\n"
              "    if (!isfinite(value) || value < 0)\n"
              "        return nn_fail(m, NN_ERR_ARG, \"hyper-parameters must be finite and >= 0\");\n"
              "    for (int i = 0; i < NN_NUM_HYPER; i++)\n"
              "        if (strcmp(name, nn_hyper_names[i]) == 0) {\n"
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
  buf_printf(c, "real *%s_grad(%s *m, int i, size_t *numel)\n{\n", m, m);
  buf_printf(c, "    real *p = %s_tensor(m, i, numel);\n", m);
  buf_puts(c, "    if (!p || nn_tensor_descs[i].block != 0)\n        return NULL;\n"
              "    return m->grads + nn_tensor_descs[i].offset;\n}\n\n");
}

/* Checkpoint entries beyond the weights: optimizer state per trained tensor
 * (PyTorch's names: momentum_buffer, exp_avg, exp_avg_sq, sum, square_avg)
 * and the step count.  Optional, so plain weight files load too. */
static void emit_state_table(CG *cg, const TrainConfig *tc) {
  const Graph *g = cg->layout;
  Buf *c = cg->c;
  const char *o = tc->optimizer;
  const char *slot_names[2] = {"momentum_buffer", NULL};
  if (!strcmp(o, "adam"))
    slot_names[0] = "exp_avg", slot_names[1] = "exp_avg_sq";
  else if (!strcmp(o, "adagrad"))
    slot_names[0] = "sum";
  else if (!strcmp(o, "rmsprop"))
    slot_names[0] = "square_avg";
  int slots = optimizer_slots(tc);
  buf_puts(c, "/* Optimizer state in checkpoints: name, tensor index, slot. */\n");
  buf_puts(c, "static const struct { const char *name; int tensor, slot; } nn_state_descs[] = {\n");
  int count = 0, t = 0;
  for (int i = 0; i < g->values.len; i++) {
    const Value *v = &g->values.items[i];
    if (v->kind != V_PARAM && v->kind != V_BUFFER)
      continue;
    if (v->kind == V_PARAM && !v->frozen && v->grad >= 0)
      for (int s = 0; s < slots; s++, count++)
        buf_printf(c, "    {%s, %d, %d},\n",
                   c_string(cg->a, arena_printf(cg->a, "optimizer.%s.%s", v->name, slot_names[s])),
                   t, s);
    t++;
  }
  if (!count)
    buf_puts(c, "    {\"\", 0, 0},\n");
  buf_printf(c, "};\n#define NN_NUM_STATE %d\n#define NN_MAX_STATE %d\n\n", count, count ? count : 1);
  buf_printf(c, "static int nn_train_tensors(%s *m, nn_tensor *t)\n{\n", cg->m);
  buf_puts(c, "    int count = 0;\n"
              "    for (int i = 0; i < NN_NUM_STATE; i++) {\n"
              "        const struct nn_tensor_desc *d = &nn_tensor_descs[nn_state_descs[i].tensor];\n"
              "        nn_tensor *e = &t[count++];\n"
              "        *e = (nn_tensor){nn_state_descs[i].name, NN_REAL_DTYPE, d->rank, {0, 0, 0, 0}, NULL, 1};\n"
              "        memcpy(e->shape, d->shape, sizeof e->shape);\n"
              "        e->data = m->state + (long)nn_state_descs[i].slot * NN_PARAMS_SIZE + d->offset;\n"
              "    }\n"
              "    t[count++] = (nn_tensor){\"optimizer.step\", \"I64\", 0, {0, 0, 0, 0}, &m->step, 1};\n"
              "    return count;\n}\n\n");
}

void emit_train(CG *cg) {
  const TrainConfig *tc = program_train_config(cg->prog);
  emit_update(cg, tc);
  emit_gradients(cg);
  emit_train_step(cg);
  emit_accessors(cg);
  emit_state_table(cg, tc);
}
