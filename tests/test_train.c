/*
 * test_train.c: the generated training API (codegen/train.c) end to end.
 *
 * Models are compiled by the harness (mostly --dtype f64) and driven through
 * their API.  Optimizer steps are checked against reference implementations
 * written here from PyTorch's formulas: after `_gradients` the test reads
 * params and grads, computes the expected new params, calls `_update` and
 * compares (relative 1e-12).  Also: learning-rate schedules, weight decay and
 * max-norm, hyper-parameters at run time, exact checkpoints, update ratios,
 * non-finite inputs, determinism, frozen layers, a training run that must
 * lower the loss tenfold, and the statistics of every initializer.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define NB 8          /* batch */
#define NX 3          /* inputs per sample */
#define MAXT 16       /* tensors */
#define BIGH 9000     /* hidden units of the big model */
#define MAXP 65536    /* elements in a snapshot */

typedef struct Api {
  Compiled cm;
  void *(*create)(uint64_t);
  void (*destroy)(void *);
  int (*gradients)(void *, int, const double *, const int32_t *, double *);
  int (*update)(void *);
  int (*train_step)(void *, int, const double *, const int32_t *, double *);
  int (*count)(void);
  const char *(*name)(int);
  double *(*tensor)(void *, int, size_t *);
  double *(*grad)(void *, int, size_t *);
  int (*set)(void *, const char *, double);
  double (*get)(const void *, const char *);
  double (*lr)(const void *);
  int64_t (*step)(const void *);
  double (*ratio)(const void *, int);
  int (*save)(void *, const char *);
  int (*load)(void *, const char *);
} Api;

static void load_api(Api *a, const char *name, const char *model, const char *opts,
                     const char *cflags) {
  compile_model(&a->cm, name, model, opts, cflags);
  const Compiled *c = &a->cm;
  a->create = (void *(*)(uint64_t))api(c, "create");
  a->destroy = (void (*)(void *))api(c, "destroy");
  a->gradients = (int (*)(void *, int, const double *, const int32_t *, double *))api(c, "gradients");
  a->update = (int (*)(void *))api(c, "update");
  a->train_step = (int (*)(void *, int, const double *, const int32_t *, double *))api(c, "train_step");
  a->count = (int (*)(void))api(c, "tensor_count");
  a->name = (const char *(*)(int))api(c, "tensor_name");
  a->tensor = (double *(*)(void *, int, size_t *))api(c, "tensor");
  a->grad = (double *(*)(void *, int, size_t *))api(c, "grad");
  a->set = (int (*)(void *, const char *, double))api(c, "set");
  a->get = (double (*)(const void *, const char *))api(c, "get");
  a->lr = (double (*)(const void *))api(c, "lr");
  a->step = (int64_t (*)(const void *))api(c, "step");
  a->ratio = (double (*)(const void *, int))api(c, "update_ratio");
  if (model_files) {
    a->save = (int (*)(void *, const char *))api(c, "save");
    a->load = (int (*)(void *, const char *))api(c, "load");
  }
}

/* The small dense model every optimizer test trains; `train` is the body of
 * its train section. */
static const char *mlp(const char *name, const char *train) {
  static char text[1024];
  snprintf(text, sizeof text,
           "model %s\ninput x: f32[3]\ntarget y: class[2]\n"
           "h = dense(x, 4) |> relu\nlogits = dense(h, 2)\noutput logits\n"
           "loss cross_entropy(logits, y)\ntrain {\n%s\n}\n",
           name, train);
  return text;
}

/* The same with BIGH hidden units: its tensors span several optimizer
 * chunks (about 4096 elements, whole units) and blocks, and no size is a
 * multiple of the vector width.  54002 trained elements: enough for the
 * update to run its chunks in parallel. */
static const char *big_mlp(const char *name, const char *train) {
  static char text[1024];
  snprintf(text, sizeof text,
           "model %s\ninput x: f32[3]\ntarget y: class[2]\n"
           "h = dense(x, %d) |> relu\nlogits = dense(h, 2)\noutput logits\n"
           "loss cross_entropy(logits, y)\ntrain {\n%s\n}\n",
           name, BIGH, train);
  return text;
}

/* Batch number k of the synthetic data. */
static void batch(int k, double *x, int32_t *y) {
  fill_uniform_d(x, NB * NX, 1000 + (uint64_t)k, -1, 1);
  for (int b = 0; b < NB; b++)
    y[b] = (int32_t)((b + k) % 2);
}

/* A copy of every tensor and its gradient, flattened in table order. */
typedef struct Snap {
  int count;
  size_t off[MAXT + 1];
  bool weight[MAXT];
  bool no_grad[MAXT];   /* grad() is NULL: a frozen tensor (its gradient counts as 0) */
  double p[MAXP], g[MAXP];
} Snap;

static void snap(const Api *a, void *m, Snap *s) {
  s->count = a->count();
  cr_assert(s->count <= MAXT);
  s->off[0] = 0;
  for (int t = 0; t < s->count; t++) {
    size_t n;
    const double *p = a->tensor(m, t, &n), *g = a->grad(m, t, &n);
    cr_assert(p && s->off[t] + n <= MAXP);
    memcpy(s->p + s->off[t], p, n * sizeof(double));
    s->no_grad[t] = !g;
    if (g)
      memcpy(s->g + s->off[t], g, n * sizeof(double));
    else
      memset(s->g + s->off[t], 0, n * sizeof(double));
    const char *name = a->name(t);
    size_t len = strlen(name);
    s->weight[t] = len > 7 && strcmp(name + len - 7, ".weight") == 0;
    s->off[t + 1] = s->off[t] + n;
  }
}

/* Current params compared with want (relative 1e-12, near-zero entries
 * against 1e-3 of the largest). */
static void expect_params(const Api *a, void *m, const Snap *want, const char *what) {
  static Snap got;
  snap(a, m, &got);
  size_t n = want->off[want->count];
  double err = max_rel_err_d(got.p, want->p, n);
  cr_expect(err < 1e-12, "%s: params differ from the reference by %.3g", what, err);
}

/* ---- optimizers ------------------------------------------------------------- */

typedef enum { O_SGD, O_MOMENTUM, O_NESTEROV, O_ADAGRAD, O_RMSPROP, O_ADAM } Opt;

typedef struct Hyper {
  double lr, mu, b1, b2, eps, rho;
  double damp, wd;   /* torch.optim's dampening and weight_decay (every tensor) */
} Hyper;

/* One step of PyTorch's torch.optim rule on every element of s (as in
 * torch/optim/sgd.py and adam.py: weight_decay adds wd * p to the gradient
 * first; the momentum buffer starts as the gradient, dampened from then on). */
static void ref_step(Opt o, const Hyper *h, int t, Snap *s, double *s0, double *s1) {
  size_t n = s->off[s->count];
  for (size_t i = 0; i < n; i++) {
    double *p = &s->p[i], g = s->g[i] + h->wd * *p;
    switch (o) {
    case O_SGD: *p -= h->lr * g; break;
    case O_MOMENTUM:
      s0[i] = t == 1 ? g : h->mu * s0[i] + (1 - h->damp) * g;
      *p -= h->lr * s0[i];
      break;
    case O_NESTEROV:
      s0[i] = t == 1 ? g : h->mu * s0[i] + (1 - h->damp) * g;
      *p -= h->lr * (g + h->mu * s0[i]);
      break;
    case O_ADAGRAD:
      s0[i] += g * g;
      *p -= h->lr * g / (sqrt(s0[i]) + h->eps);
      break;
    case O_RMSPROP:
      s0[i] = h->rho * s0[i] + (1 - h->rho) * g * g;
      *p -= h->lr * g / (sqrt(s0[i]) + h->eps);
      break;
    case O_ADAM: {
      s0[i] = h->b1 * s0[i] + (1 - h->b1) * g;
      s1[i] = h->b2 * s1[i] + (1 - h->b2) * g * g;
      double bc1 = 1 - pow(h->b1, t), bc2 = 1 - pow(h->b2, t);
      double denom = sqrt(s1[i]) / sqrt(bc2) + h->eps;
      *p -= h->lr / bc1 * s0[i] / denom;
      break;
    }
    }
  }
}

/* Three steps of optimizer o on `model` (f64) against ref_step. */
static void check_optimizer_on(const char *name, const char *model, const char *cflags, Opt o,
                               Hyper h) {
  Api a;
  load_api(&a, name, model, "--dtype f64 --batch 8", cflags);
  void *m = a.create(3);
  static Snap s;
  static double s0[MAXP], s1[MAXP];
  memset(s0, 0, sizeof s0);
  memset(s1, 0, sizeof s1);
  double x[NB * NX];
  int32_t y[NB];
  for (int t = 1; t <= 3; t++) {
    batch(t, x, y);
    double loss;
    cr_assert_eq(a.gradients(m, NB, x, y, &loss), 0);
    snap(&a, m, &s);
    ref_step(o, &h, t, &s, s0, s1);
    cr_assert_eq(a.update(m), 0);
    char what[64];
    snprintf(what, sizeof what, "%s step %d", name, t);
    expect_params(&a, m, &s, what);
    cr_expect_eq(a.step(m), t);
  }
  a.destroy(m);
  close_model(&a.cm);
}

static void check_optimizer(const char *name, const char *train, Opt o, Hyper h) {
  check_optimizer_on(name, mlp(name, train), MODEL_O1, o, h);
}

/* The big model, built for the host CPU: its vector sqrt path where there
 * is one (AVX, AVX-512), full vector blocks, chunk and block tails. */
static void check_optimizer_big(const char *name, const char *train, Opt o, Hyper h) {
  check_optimizer_on(name, big_mlp(name, train), "-O2 -march=native", o, h);
}

Test(optimizer, sgd) {
  check_optimizer("o_sgd", "optimizer sgd(lr=0.1)", O_SGD, (Hyper){.lr = 0.1});
}
Test(optimizer, momentum) {
  check_optimizer("o_mom", "optimizer momentum(lr=0.05, momentum=0.8)", O_MOMENTUM,
                  (Hyper){.lr = 0.05, .mu = 0.8});
}
Test(optimizer, nesterov) {
  check_optimizer("o_nes", "optimizer nesterov(lr=0.05)", O_NESTEROV,
                  (Hyper){.lr = 0.05, .mu = 0.9});
}
Test(optimizer, adagrad) {
  check_optimizer("o_ada", "optimizer adagrad(lr=0.1)", O_ADAGRAD,
                  (Hyper){.lr = 0.1, .eps = 1e-10});
}
Test(optimizer, rmsprop) {
  check_optimizer("o_rms", "optimizer rmsprop(lr=0.01, rho=0.9)", O_RMSPROP,
                  (Hyper){.lr = 0.01, .rho = 0.9, .eps = 1e-8});
}
Test(optimizer, adam) {
  check_optimizer("o_adam", "optimizer adam(lr=0.01, beta2=0.99)", O_ADAM,
                  (Hyper){.lr = 0.01, .b1 = 0.9, .b2 = 0.99, .eps = 1e-8});
}
Test(optimizer, adam_defaults) {
  check_optimizer("o_adamd", "optimizer adam", O_ADAM,
                  (Hyper){.lr = 1e-3, .b1 = 0.9, .b2 = 0.999, .eps = 1e-8});
}
/* torch.optim's spellings: SGD's momentum, dampening, nesterov and
 * weight_decay; Adam's betas and weight_decay. */
Test(optimizer, torch_sgd_weight_decay) {
  check_optimizer("o_tsgd", "optimizer sgd(lr=0.1, weight_decay=0.02)", O_SGD,
                  (Hyper){.lr = 0.1, .wd = 0.02});
}
Test(optimizer, torch_sgd_momentum_dampening) {
  check_optimizer("o_tmom", "optimizer sgd(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)",
                  O_MOMENTUM, (Hyper){.lr = 0.05, .mu = 0.8, .damp = 0.3, .wd = 0.01});
}
Test(optimizer, torch_sgd_nesterov) {
  check_optimizer("o_tnes", "optimizer sgd(0.05, 0.7, 0, 1e-3, true)", O_NESTEROV,
                  (Hyper){.lr = 0.05, .mu = 0.7, .wd = 1e-3});
}
Test(optimizer, torch_adam_betas_weight_decay) {
  check_optimizer("o_tadam", "optimizer adam(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)",
                  O_ADAM, (Hyper){.lr = 0.01, .b1 = 0.8, .b2 = 0.99, .eps = 1e-6, .wd = 0.05});
}
Test(optimizer, momentum_dampening_big) {
  check_optimizer_big("ob_tmom", "optimizer momentum(lr=0.05, momentum=0.8, dampening=0.5)",
                      O_MOMENTUM, (Hyper){.lr = 0.05, .mu = 0.8, .damp = 0.5});
}
Test(optimizer, sgd_big) {
  check_optimizer_big("ob_sgd", "optimizer sgd(lr=0.1)", O_SGD, (Hyper){.lr = 0.1});
}
Test(optimizer, momentum_big) {
  check_optimizer_big("ob_mom", "optimizer momentum(lr=0.05, momentum=0.8)", O_MOMENTUM,
                      (Hyper){.lr = 0.05, .mu = 0.8});
}
Test(optimizer, nesterov_big) {
  check_optimizer_big("ob_nes", "optimizer nesterov(lr=0.05)", O_NESTEROV,
                      (Hyper){.lr = 0.05, .mu = 0.9});
}
Test(optimizer, adagrad_big) {
  check_optimizer_big("ob_ada", "optimizer adagrad(lr=0.1)", O_ADAGRAD,
                      (Hyper){.lr = 0.1, .eps = 1e-10});
}
Test(optimizer, rmsprop_big) {
  check_optimizer_big("ob_rms", "optimizer rmsprop(lr=0.01, rho=0.9)", O_RMSPROP,
                      (Hyper){.lr = 0.01, .rho = 0.9, .eps = 1e-8});
}
Test(optimizer, adam_big) {
  check_optimizer_big("ob_adam", "optimizer adam(lr=0.01, beta2=0.99)", O_ADAM,
                      (Hyper){.lr = 0.01, .b1 = 0.9, .b2 = 0.99, .eps = 1e-8});
}

/* The f32 API of a model: float data, steps computed in float. */
typedef struct Api32 {
  Compiled cm;
  void *(*create)(uint64_t);
  void (*destroy)(void *);
  int (*gradients)(void *, int, const float *, const int32_t *, float *);
  int (*update)(void *);
  int (*train_step)(void *, int, const float *, const int32_t *, float *);
  int (*count)(void);
  float *(*tensor)(void *, int, size_t *);
  float *(*grad)(void *, int, size_t *);
  double (*ratio)(const void *, int);
  int (*save)(void *, const char *);
} Api32;

static void load_api32(Api32 *a, const char *name, const char *model, const char *cflags) {
  compile_model(&a->cm, name, model, "--batch 8", cflags);
  const Compiled *c = &a->cm;
  a->create = (void *(*)(uint64_t))api(c, "create");
  a->destroy = (void (*)(void *))api(c, "destroy");
  a->gradients = (int (*)(void *, int, const float *, const int32_t *, float *))api(c, "gradients");
  a->update = (int (*)(void *))api(c, "update");
  a->train_step =
      (int (*)(void *, int, const float *, const int32_t *, float *))api(c, "train_step");
  a->count = (int (*)(void))api(c, "tensor_count");
  a->tensor = (float *(*)(void *, int, size_t *))api(c, "tensor");
  a->grad = (float *(*)(void *, int, size_t *))api(c, "grad");
  a->ratio = (double (*)(const void *, int))api(c, "update_ratio");
  if (model_files)
    a->save = (int (*)(void *, const char *))api(c, "save");
}

static void batch32(int k, float *x, int32_t *y) {
  double xd[NB * NX];
  batch(k, xd, y);
  for (int i = 0; i < NB * NX; i++)
    x[i] = (float)xd[i];
}

/* Every tensor of an f32 model (and its gradient) into s as doubles; the
 * params also into p. */
static void snap32(const Api32 *a, void *m, Snap *s, float *p) {
  s->count = a->count();
  cr_assert(s->count <= MAXT);
  s->off[0] = 0;
  for (int t = 0; t < s->count; t++) {
    size_t n;
    const float *pt = a->tensor(m, t, &n), *gt = a->grad(m, t, &n);
    cr_assert(pt && gt && s->off[t] + n <= MAXP);
    for (size_t i = 0; i < n; i++) {
      p[s->off[t] + i] = pt[i];
      s->p[s->off[t] + i] = pt[i];
      s->g[s->off[t] + i] = gt[i];
    }
    s->off[t + 1] = s->off[t] + n;
  }
}

/* An f32 model steps in float, as PyTorch does: Adam on the big model
 * against the double reference from the same float params and gradients.
 * One step moves p by about lr; float rounding of the step is ~1e-7 of it. */
Test(optimizer, adam_f32) {
  const Hyper h = {.lr = 0.01, .b1 = 0.9, .b2 = 0.99, .eps = 1e-8};
  Api32 a;
  load_api32(&a, "o_f32", big_mlp("o_f32", "optimizer adam(lr=0.01, beta2=0.99)"),
             "-O2 -march=native");
  void *m = a.create(3);
  static Snap s;
  static double s0[MAXP], s1[MAXP];
  static float p[MAXP];
  float x[NB * NX];
  int32_t y[NB];
  for (int t = 1; t <= 3; t++) {
    batch32(t, x, y);
    cr_assert_eq(a.gradients(m, NB, x, y, NULL), 0);
    snap32(&a, m, &s, p);
    ref_step(O_ADAM, &h, t, &s, s0, s1);
    cr_assert_eq(a.update(m), 0);
    static Snap got;
    snap32(&a, m, &got, p);
    /* Float rounding: of p (2^-24 of it) and of the step u (a few ulps of
     * |u| <~ lr); a wrong rule is off by a fair part of lr. */
    double worst = 0;
    for (size_t i = 0; i < s.off[s.count]; i++)
      worst = fmax(worst, fabs(p[i] - s.p[i]) / (1e-5 * h.lr + 0x1p-23 * fabs(s.p[i])));
    cr_expect(worst <= 1, "f32 adam step %d: params off the reference by %.3g of the tolerance",
              t, worst);
  }
  a.destroy(m);
  close_model(&a.cm);
}

/* ---- schedules -------------------------------------------------------------- */

typedef double (*LrFn)(int t);   /* lr of step t, 0-based */
static double lr_const(int t) { (void)t; return 0.1; }
static double lr_step(int t) { return 0.1 * pow(0.5, t / 3); }
static double lr_exp(int t) { return 0.1 * pow(0.9, t); }
static double lr_inv(int t) { return 0.1 * pow(1 + 0.2 * t, -0.75); }
static double lr_cos(int t) {
  return t >= 5 ? 0.01 : 0.01 + (0.1 - 0.01) * 0.5 * (1 + cos(3.14159265358979323846 * t / 5));
}

static void check_schedule(const char *name, const char *sched, LrFn f) {
  char train[256];
  snprintf(train, sizeof train, "optimizer sgd(lr=0.1)\nschedule %s", sched);
  Api a;
  load_api(&a, name, mlp(name, train), "--dtype f64 --batch 8", MODEL_O1);
  void *m = a.create(3);
  static Snap s;
  double x[NB * NX];
  int32_t y[NB];
  for (int k = 1; k <= 8; k++) {
    batch(k, x, y);
    cr_assert_eq(a.gradients(m, NB, x, y, NULL), 0);
    snap(&a, m, &s);
    double want = f(k - 1);
    for (size_t i = 0; i < s.off[s.count]; i++)
      s.p[i] -= want * s.g[i];
    cr_assert_eq(a.update(m), 0);
    cr_expect(fabs(a.lr(m) - want) <= 1e-15 * want, "%s after step %d: lr %.17g, want %.17g",
              sched, k, a.lr(m), want);
    expect_params(&a, m, &s, sched);
  }
  a.destroy(m);
  close_model(&a.cm);
}

Test(schedule, constant) { check_schedule("s_const", "constant", lr_const); }
Test(schedule, step) { check_schedule("s_step", "step(every=3, gamma=0.5)", lr_step); }
Test(schedule, exp) { check_schedule("s_exp", "exp(0.9)", lr_exp); }
Test(schedule, inv) { check_schedule("s_inv", "inv(gamma=0.2, power=0.75)", lr_inv); }
Test(schedule, cosine) { check_schedule("s_cos", "cosine(steps=5, lr_min=0.01)", lr_cos); }

/* ---- weight decay and max-norm ---------------------------------------------- */

static void check_decay_on(const char *name, const char *decay, double l2, double l1, bool all,
                           bool big) {
  char train[256];
  snprintf(train, sizeof train, "optimizer sgd(lr=0.1)\n%s", decay);
  Api a;
  load_api(&a, name, big ? big_mlp(name, train) : mlp(name, train), "--dtype f64 --batch 8",
           big ? "-O2 -march=native" : MODEL_O1);
  void *m = a.create(3);
  static Snap s;
  double x[NB * NX];
  int32_t y[NB];
  /* Nonzero biases, so decaying them would show. */
  for (int t = 0; t < a.count(); t++) {
    size_t n;
    double *p = a.tensor(m, t, &n);
    for (size_t i = 0; i < n; i++)
      p[i] += 0.25 * (double)(i % 3) - 0.2;
  }
  for (int k = 1; k <= 3; k++) {
    batch(k, x, y);
    cr_assert_eq(a.gradients(m, NB, x, y, NULL), 0);
    snap(&a, m, &s);
    for (int t = 0; t < s.count; t++) {
      bool decayed = s.weight[t] || all;
      for (size_t i = s.off[t]; i < s.off[t + 1]; i++) {
        double p = s.p[i], sign = p > 0 ? 1 : p < 0 ? -1 : 0;
        s.p[i] -= 0.1 * (s.g[i] + (decayed ? l2 * p + l1 * sign : 0));
      }
    }
    cr_assert_eq(a.update(m), 0);
    expect_params(&a, m, &s, decay);
  }
  a.destroy(m);
  close_model(&a.cm);
}

static void check_decay(const char *name, const char *decay, double l2, double l1, bool all) {
  check_decay_on(name, decay, l2, l1, all, false);
}

Test(decay, l2) { check_decay("d_l2", "decay l2(0.05)", 0.05, 0, false); }
Test(decay, l1) { check_decay("d_l1", "decay l1(0.02)", 0, 0.02, false); }
Test(decay, elastic) { check_decay("d_el", "decay elastic(l1=0.02, l2=0.05)", 0.05, 0.02, false); }
Test(decay, l2_all) { check_decay("d_all", "decay l2(0.05)\ndecay_all = true", 0.05, 0, true); }

/* SGD with max-norm 0.3 on a model with `hidden` units (rows of fc1.weight
 * have NX elements, rows of fc2.weight `hidden`). */
static void check_maxnorm(const char *name, const char *model, int hidden, const char *cflags) {
  const double c = 0.3;
  Api a;
  load_api(&a, name, model, "--dtype f64 --batch 8", cflags);
  void *m = a.create(3);
  static Snap s;
  double x[NB * NX];
  int32_t y[NB];
  int clipped = 0;
  for (int k = 1; k <= 3; k++) {
    batch(k, x, y);
    cr_assert_eq(a.gradients(m, NB, x, y, NULL), 0);
    snap(&a, m, &s);
    for (size_t i = 0; i < s.off[s.count]; i++)
      s.p[i] -= 0.5 * s.g[i];
    /* Reference: each weight row (one unit's fan-in) rescaled to norm c. */
    for (int t = 0; t < s.count; t++) {
      if (!s.weight[t])
        continue;
      size_t rowlen = t == 0 ? NX : (size_t)hidden;
      for (size_t r = s.off[t]; r < s.off[t + 1]; r += rowlen) {
        double norm = 0;
        for (size_t i = 0; i < rowlen; i++)
          norm += s.p[r + i] * s.p[r + i];
        norm = sqrt(norm);
        if (norm > c) {
          clipped++;
          for (size_t i = 0; i < rowlen; i++)
            s.p[r + i] *= c / norm;
        }
      }
    }
    cr_assert_eq(a.update(m), 0);
    expect_params(&a, m, &s, "maxnorm");
    static Snap got;
    snap(&a, m, &got);
    for (int t = 0; t < got.count; t++) {
      size_t rowlen = t == 0 ? NX : (size_t)hidden;
      for (size_t r = got.off[t]; got.weight[t] && r < got.off[t + 1]; r += rowlen) {
        double norm = 0;
        for (size_t i = 0; i < rowlen; i++)
          norm += got.p[r + i] * got.p[r + i];
        cr_expect(sqrt(norm) <= c * (1 + 1e-12), "%s row %zu: norm %.17g > %g", a.name(t),
                  (r - got.off[t]) / rowlen, sqrt(norm), c);
      }
    }
  }
  cr_expect(clipped > 0, "no row needed clipping: the test proves nothing");
  a.destroy(m);
  close_model(&a.cm);
}

#define MAXNORM_TRAIN "optimizer sgd(lr=0.5)\ndecay maxnorm(0.3)"
Test(decay, maxnorm) { check_maxnorm("d_mn", mlp("d_mn", MAXNORM_TRAIN), 4, MODEL_O1); }
Test(decay, maxnorm_big) {
  check_maxnorm("d_mnb", big_mlp("d_mnb", MAXNORM_TRAIN), BIGH, "-O2 -march=native");
}
Test(decay, elastic_big) {
  check_decay_on("d_elb", "decay elastic(l1=0.02, l2=0.05)", 0.05, 0.02, false, true);
}

/* ---- hyper-parameters at run time ------------------------------------------ */

Test(hyper, set_get) {
  Api a;
  load_api(&a, "h_set", mlp("h_set", "optimizer momentum(lr=0.1, momentum=0.5)"),
           "--dtype f64 --batch 8", MODEL_O1);
  void *m = a.create(3);
  cr_expect_eq(a.get(m, "lr"), 0.1);
  cr_expect_eq(a.get(m, "momentum"), 0.5);
  cr_expect(isnan(a.get(m, "learning_rate")));
  cr_expect_eq(a.set(m, "learning_rate", 1), -1);
  cr_expect_eq(a.set(m, "lr", -0.5), -1);
  cr_expect_eq(a.set(m, "lr", NAN), -1);
  cr_expect_eq(a.get(m, "lr"), 0.1, "a refused value must not be stored");
  cr_expect_eq(a.set(m, "lr", 0.25), 0);
  cr_expect_eq(a.set(m, "momentum", 0), 0);   /* plain SGD from here on */
  cr_expect_eq(a.get(m, "lr"), 0.25);
  static Snap s;
  double x[NB * NX];
  int32_t y[NB];
  batch(1, x, y);
  cr_assert_eq(a.gradients(m, NB, x, y, NULL), 0);
  snap(&a, m, &s);
  for (size_t i = 0; i < s.off[s.count]; i++)
    s.p[i] -= 0.25 * s.g[i];
  cr_assert_eq(a.update(m), 0);
  expect_params(&a, m, &s, "lr set to 0.25");
  cr_expect_eq(a.lr(m), 0.25);
  a.destroy(m);
  close_model(&a.cm);
}

/* ---- checkpoints -------------------------------------------------------------- */

static void train_steps(const Api *a, void *m, int from, int count) {
  double x[NB * NX];
  int32_t y[NB];
  for (int k = from; k < from + count; k++) {
    batch(k, x, y);
    cr_assert_eq(a->train_step(m, NB, x, y, NULL), 0);
  }
}

static bool same_params(const Api *a, void *m1, void *m2) {
  for (int t = 0; t < a->count(); t++) {
    size_t n1, n2;
    const double *p1 = a->tensor(m1, t, &n1), *p2 = a->tensor(m2, t, &n2);
    if (n1 != n2 || memcmp(p1, p2, n1 * sizeof(double)) != 0)
      return false;
  }
  return true;
}

Test(checkpoint, exact_resume) {
  model_files = true;
  Api a;
  load_api(&a, "ck", mlp("ck", "optimizer adam(lr=0.05)\nschedule exp(0.9)"),
           "--dtype f64 --batch 8", MODEL_O1);
  char path[700];
  snprintf(path, sizeof path, "%s/ck.safetensors", a.cm.dir);
  void *m1 = a.create(3), *m2 = a.create(4);
  train_steps(&a, m1, 0, 4);
  cr_assert_eq(a.save(m1, path), 0, "save failed");
  train_steps(&a, m1, 4, 5);
  cr_assert_eq(a.load(m2, path), 0, "load failed");
  cr_expect_eq(a.step(m2), 4);
  train_steps(&a, m2, 4, 5);
  cr_expect(same_params(&a, m1, m2), "resumed training is not bit-identical");
  cr_expect_eq(a.lr(m1), a.lr(m2));

  /* A different beta1 after loading must change the run: the comparison can fail. */
  void *m3 = a.create(4);
  cr_assert_eq(a.load(m3, path), 0);
  a.set(m3, "beta1", 0.5);
  train_steps(&a, m3, 4, 5);
  cr_expect(!same_params(&a, m1, m3));
  a.destroy(m1), a.destroy(m2), a.destroy(m3);
  close_model(&a.cm);
}

Test(checkpoint, weights_only) {
  model_files = true;
  const char *text = mlp("ckw", "optimizer adam(lr=0.05)");
  Api a, inf;
  load_api(&a, "ckw", text, "--dtype f64 --batch 8", MODEL_O1);
  compile_model(&inf.cm, "ckw", text, "--dtype f64 --batch 8 --infer", MODEL_O1);
  void *(*icreate)(uint64_t) = (void *(*)(uint64_t))api(&inf.cm, "create");
  void (*idestroy)(void *) = (void (*)(void *))api(&inf.cm, "destroy");
  int (*isave)(void *, const char *) = (int (*)(void *, const char *))api(&inf.cm, "save");
  double *(*itensor)(void *, int, size_t *) =
      (double *(*)(void *, int, size_t *))api(&inf.cm, "tensor");
  char path[700];
  snprintf(path, sizeof path, "%s/w.safetensors", inf.cm.dir);
  void *w = icreate(11), *m = a.create(12), *fresh = a.create(11);
  cr_assert_eq(isave(w, path), 0);
  cr_assert_eq(a.load(m, path), 0, "a weights-only file does not load");
  for (int t = 0; t < a.count(); t++) {
    size_t n1, n2;
    const double *got = a.tensor(m, t, &n1), *want = itensor(w, t, &n2);
    cr_expect(n1 == n2 && memcmp(got, want, n1 * sizeof(double)) == 0,
              "%s: loaded %g, saved %g", a.name(t), got[0], want[0]);
  }
  cr_expect_eq(a.step(m), 0);
  /* It trains exactly like a fresh model with those weights. */
  train_steps(&a, m, 0, 3);
  train_steps(&a, fresh, 0, 3);
  cr_expect(same_params(&a, m, fresh));
  idestroy(w);
  a.destroy(m), a.destroy(fresh);
  close_model(&inf.cm);
  close_model(&a.cm);
}

/* The case: an f64 build loads the checkpoint of an f32 build (every
 * float converts exactly), optimizer state included. */
Test(checkpoint, f32_file_into_f64_build) {
  model_files = true;
  const char *text = mlp("ckd", "optimizer adam(lr=0.05)");
  Api a;
  Compiled c32;
  load_api(&a, "ckd", text, "--dtype f64 --batch 8", MODEL_O1);
  compile_model(&c32, "ckd", text, "--batch 8", MODEL_O1);
  void *(*create32)(uint64_t) = (void *(*)(uint64_t))api(&c32, "create");
  int (*save32)(void *, const char *) = (int (*)(void *, const char *))api(&c32, "save");
  int (*step32)(void *, int, const float *, const int32_t *, float *) =
      (int (*)(void *, int, const float *, const int32_t *, float *))api(&c32, "train_step");
  float *(*tensor32)(void *, int, size_t *) = (float *(*)(void *, int, size_t *))api(&c32, "tensor");
  void *m32 = create32(5), *m = a.create(6);
  float x[NB * NX];
  int32_t y[NB] = {0, 1, 0, 1, 1, 0, 0, 1};
  fill_uniform(x, NB * NX, 9, -1, 1);
  cr_assert_eq(step32(m32, NB, x, y, NULL), 0);
  char path[700];
  snprintf(path, sizeof path, "%s/f32.safetensors", c32.dir);
  cr_assert_eq(save32(m32, path), 0);
  cr_assert_eq(a.load(m, path), 0, "an f64 build refuses an f32 checkpoint");
  cr_expect_eq(a.step(m), 1);
  for (int t = 0; t < a.count(); t++) {
    size_t n, n32;
    const double *p = a.tensor(m, t, &n);
    const float *q = tensor32(m32, t, &n32);
    cr_assert_eq(n, n32);
    for (size_t i = 0; i < n; i++)
      cr_expect_eq(p[i], (double)q[i], "%s[%zu]: %a, saved %a", a.name(t), i, p[i], (double)q[i]);
  }
  a.destroy(m);
  ((void (*)(void *))api(&c32, "destroy"))(m32);
  close_model(&c32);
  close_model(&a.cm);
}

/* ---- monitoring ------------------------------------------------------------- */

Test(monitor, update_ratio) {
  Api a;
  load_api(&a, "mon", mlp("mon", "optimizer adam(lr=0.01)"), "--dtype f64 --batch 8", MODEL_O1);
  void *m = a.create(3);
  static Snap before, after;
  double x[NB * NX];
  int32_t y[NB];
  batch(1, x, y);
  cr_assert_eq(a.gradients(m, NB, x, y, NULL), 0);
  snap(&a, m, &before);
  cr_assert_eq(a.update(m), 0);
  snap(&a, m, &after);
  for (int t = 0; t < after.count; t++) {
    double du = 0, pp = 0;
    for (size_t i = after.off[t]; i < after.off[t + 1]; i++) {
      double d = after.p[i] - before.p[i];
      du += d * d;
      pp += after.p[i] * after.p[i];
    }
    double want = sqrt(du / pp), got = a.ratio(m, t);
    cr_expect(got > 0, "%s: ratio %g", a.name(t), got);
    cr_expect(fabs(got - want) <= 1e-9 * want, "%s: ratio %.17g, want %.17g", a.name(t), got,
              want);
  }
  cr_expect_eq(a.ratio(m, -1), 0);
  cr_expect_eq(a.ratio(m, after.count), 0);
  a.destroy(m);
  close_model(&a.cm);
}

Test(monitor, nonfinite_input) {
  Api a;
  load_api(&a, "nanin", mlp("nanin", "optimizer adam(lr=0.01)"), "--dtype f64 --batch 8", MODEL_O1);
  void *m = a.create(3);
  static Snap before, after;
  double x[NB * NX];
  int32_t y[NB];
  train_steps(&a, m, 0, 2);
  snap(&a, m, &before);
  batch(5, x, y);
  x[4] = NAN;
  cr_expect_eq(a.train_step(m, NB, x, y, NULL), -5);
  x[4] = INFINITY;
  cr_expect_eq(a.train_step(m, NB, x, y, NULL), -5);
  snap(&a, m, &after);
  cr_expect(memcmp(before.p, after.p, sizeof(double) * before.off[before.count]) == 0,
            "weights changed by a non-finite step");
  cr_expect_eq(a.step(m), 2);
  /* gradients + update: update refuses too. */
  x[4] = NAN;
  a.gradients(m, NB, x, y, NULL);
  cr_expect_eq(a.update(m), -5);
  snap(&a, m, &after);
  cr_expect(memcmp(before.p, after.p, sizeof(double) * before.off[before.count]) == 0);
  a.destroy(m);
  close_model(&a.cm);
}

/* Every byte of the model's state: a checkpoint holds weights, running
 * statistics, optimizer state and the step. */
static unsigned char *state_bytes(const Api *a, void *m, const char *dir, size_t *n) {
  char path[700];
  snprintf(path, sizeof path, "%s/state.safetensors", dir);
  cr_assert_eq(a->save(m, path), 0);
  FILE *f = fopen(path, "rb");
  cr_assert(f);
  unsigned char *p = malloc(1 << 20);
  *n = fread(p, 1, 1 << 20, f);
  fclose(f);
  remove(path);
  return p;
}

/* f32 with batchnorm: a NaN or Inf pixel makes the loss NaN, a 3e38 one
 * leaves it finite but makes running_var Inf in float.  Each failed step
 * must leave all state, byte for byte, as it was. */
Test(monitor, failed_step_leaves_all_state_unchanged) {
  model_files = true;
  static const char *const model =
      "model bnfail\ninput x: f32[3]\ntarget y: class[2]\n"
      "h = dense(x, 4) |> batchnorm |> relu\nlogits = dense(h, 2)\noutput logits\n"
      "loss cross_entropy(logits, y)\ntrain {\noptimizer adam(lr=0.01)\n}\n";
  Compiled cm;
  compile_model(&cm, "bnfail", model, "--batch 8", MODEL_O1);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  int (*step)(void *, int, const float *, const int32_t *, float *) =
      (int (*)(void *, int, const float *, const int32_t *, float *))api(&cm, "train_step");
  Api a = {.save = (int (*)(void *, const char *))api(&cm, "save")};
  void *m = create(1);
  float x[NB * NX];
  int32_t y[NB];
  for (int k = 0; k < 2; k++) {
    fill_uniform(x, NB * NX, 50 + (uint64_t)k, -1, 1);
    for (int b = 0; b < NB; b++)
      y[b] = b % 2;
    cr_assert_eq(step(m, NB, x, y, NULL), 0);
  }
  size_t n0, n1;
  unsigned char *before = state_bytes(&a, m, cm.dir, &n0);
  const float bad[] = {NAN, INFINITY, -INFINITY, 3e38f};
  for (int i = 0; i < 4; i++) {
    fill_uniform(x, NB * NX, 77, -1, 1);
    x[4] = bad[i];
    cr_expect_eq(step(m, NB, x, y, NULL), -5, "pixel %g: status", (double)bad[i]);
    unsigned char *after = state_bytes(&a, m, cm.dir, &n1);
    cr_expect(n0 == n1 && memcmp(before, after, n0) == 0,
              "pixel %g: the failed step changed the model's state", (double)bad[i]);
    free(after);
  }
  fill_uniform(x, NB * NX, 78, -1, 1);
  cr_expect_eq(step(m, NB, x, y, NULL), 0, "a good step after failed ones");
  free(before);
  ((void (*)(void *))api(&cm, "destroy"))(m);
  close_model(&cm);
}

/* ---- num_batches_tracked ------------------------------------------------------ */

/* PyTorch counts <bn>.num_batches_tracked in every training forward and
 * keeps it in its state_dict; nncc keeps it, saves it (I64, shape []) and
 * loads it, and a failed step leaves it as it was. */
Test(checkpoint, num_batches_tracked) {
  model_files = true;
  static const char *const model =
      "model nbt\ninput x: f32[3]\ntarget y: class[2]\n"
      "h = dense(x, 4) |> batchnorm |> relu\nh = dense(h, 4, name=\"fc2\") |> batchnorm(name=\"bn2\")\n"
      "logits = dense(h, 2)\noutput logits\n"
      "loss cross_entropy(logits, y)\ntrain {\noptimizer sgd(lr=0.01)\n}\n";
  Api a;
  load_api(&a, "nbt", model, "--dtype f64 --batch 8", MODEL_O1);
  char path[700], path2[700];
  snprintf(path, sizeof path, "%s/nbt.safetensors", a.cm.dir);
  snprintf(path2, sizeof path2, "%s/nbt2.safetensors", a.cm.dir);
  void *m = a.create(1), *m2 = a.create(2);
  cr_assert_eq(a.save(m, path), 0);
  cr_expect_eq(st_read_i64(path, "bn2.num_batches_tracked"), 0);
  train_steps(&a, m, 0, 3);
  double x[NB * NX];
  int32_t y[NB];
  batch(3, x, y);
  cr_assert_eq(a.gradients(m, NB, x, y, NULL), 0);   /* a training forward counts too */
  cr_assert_eq(a.save(m, path), 0);
  cr_expect_eq(st_read_i64(path, "bn2.num_batches_tracked"), 4);
  cr_expect_eq(a.step(m), 3);
  /* a failed step: a NaN input (gradients refuses) */
  x[0] = NAN;
  cr_expect_eq(a.train_step(m, NB, x, y, NULL), -5);
  cr_assert_eq(a.save(m, path), 0);
  cr_expect_eq(st_read_i64(path, "bn2.num_batches_tracked"), 4);
  /* loads back: counts as in a PyTorch state_dict, one per layer */
  st_write_i64(path, "bn2.num_batches_tracked", 123456789012LL);
  cr_assert_eq(a.load(m2, path), 0);
  cr_assert_eq(a.save(m2, path2), 0);
  cr_expect_eq(st_read_i64(path2, "bn2.num_batches_tracked"), 123456789012LL);
  /* the step count at its maximum: gradients counts, update refuses, and
   * train_step puts the count back */
  st_write_i64(path, "optimizer.step", INT64_MAX - 1);
  cr_assert_eq(a.load(m2, path), 0);
  batch(4, x, y);
  cr_assert_eq(a.train_step(m2, NB, x, y, NULL), 0);
  cr_expect_eq(a.train_step(m2, NB, x, y, NULL), -1);
  cr_assert_eq(a.save(m2, path2), 0);
  cr_expect_eq(st_read_i64(path2, "bn2.num_batches_tracked"), 123456789013LL);
  /* load refuses a negative count, all or nothing */
  st_write_i64(path, "bn2.num_batches_tracked", -1);
  cr_expect_eq(a.load(m2, path), -7);
  cr_assert_eq(a.save(m2, path2), 0);
  cr_expect_eq(st_read_i64(path2, "bn2.num_batches_tracked"), 123456789013LL);
  a.destroy(m), a.destroy(m2);
  close_model(&a.cm);
}

/* ---- determinism and freezing ---------------------------------------------- */

Test(train, deterministic) {
  Api a;
  load_api(&a, "det", mlp("det", "optimizer rmsprop(lr=0.01)"), "--dtype f64 --batch 8", MODEL_O1);
  void *m1 = a.create(42), *m2 = a.create(42), *m3 = a.create(43);
  cr_expect(same_params(&a, m1, m2));
  cr_expect(!same_params(&a, m1, m3), "the seed does not matter");
  train_steps(&a, m1, 0, 10);
  train_steps(&a, m2, 0, 10);
  cr_expect(same_params(&a, m1, m2));
  a.destroy(m1), a.destroy(m2), a.destroy(m3);
  close_model(&a.cm);
}

static const char *const frozen_model =
    "model frz\ninput x: f32[3]\ntarget y: class[2]\n"
    "h = dense(x, 8) |> relu\nh = dense(h, 8, freeze=true) |> relu\n"
    "logits = dense(h, 2)\noutput logits\nloss cross_entropy(logits, y)\n"
    "train {\noptimizer adam(lr=0.05)\ndecay l2(0.01)\n}\n";

Test(train, freeze) {
  Api a;
  load_api(&a, "frz", frozen_model, "--dtype f64 --batch 8", MODEL_O1);
  void *m = a.create(3);
  static Snap before, after;
  snap(&a, m, &before);
  train_steps(&a, m, 0, 5);
  snap(&a, m, &after);
  for (int t = 0; t < after.count; t++) {
    bool frozen = strncmp(a.name(t), "fc2.", 4) == 0;
    size_t n = after.off[t + 1] - after.off[t];
    bool same = memcmp(before.p + after.off[t], after.p + after.off[t], n * sizeof(double)) == 0;
    cr_expect(same == frozen, "%s: %s", a.name(t), same ? "unchanged" : "changed");
    cr_expect(after.no_grad[t] == frozen, "%s: grad() %s", a.name(t),
              after.no_grad[t] ? "NULL" : "not NULL");
    if (frozen)
      cr_expect_eq(a.ratio(m, t), 0);
  }
  /* The backward graph has no weight gradient for fc2. */
  char out[1 << 15], path[700];
  snprintf(path, sizeof path, "%s/frz.nn", a.cm.dir);
  cr_assert_eq(run_capture(out, sizeof out, "%s %s --emit-ir", NNCC_BIN, path), 0);
  cr_expect(strstr(out, "dense_dw[fc1]") && strstr(out, "dense_dw[fc3]"), "%s", out);
  cr_expect(!strstr(out, "dense_dw[fc2]") && !strstr(out, "dense_db[fc2]"), "%s", out);
  a.destroy(m);
  close_model(&a.cm);
}

/* freeze=weight (TinyEngine's sparse update): fc2's weight stays, its bias
 * trains; the backward graph has fc2's bias gradient and no weight
 * gradient, and no dx below fc2 (nothing there trains).  On a batchnorm it
 * freezes gamma and trains beta. */
static const char *const bias_only_model =
    "model fzw\ninput x: f32[3]\ntarget y: class[2]\n"
    "h = dense(x, 8, freeze=true) |> relu\n"
    "h = dense(h, 8, freeze=weight) |> relu\n"
    "logits = dense(h, 2)\noutput logits\nloss cross_entropy(logits, y)\n"
    "train {\noptimizer adam(lr=0.05)\n}\n";

Test(train, freeze_weight_trains_the_bias) {
  Api a;
  load_api(&a, "fzw", bias_only_model, "--dtype f64 --batch 8", MODEL_O1);
  void *m = a.create(3);
  static Snap before, after;
  snap(&a, m, &before);
  train_steps(&a, m, 0, 5);
  snap(&a, m, &after);
  for (int t = 0; t < after.count; t++) {
    bool frozen = !strncmp(a.name(t), "fc1.", 4) || !strcmp(a.name(t), "fc2.weight");
    size_t n = after.off[t + 1] - after.off[t];
    bool same = memcmp(before.p + after.off[t], after.p + after.off[t], n * sizeof(double)) == 0;
    cr_expect(same == frozen, "%s: %s", a.name(t), same ? "unchanged" : "changed");
  }
  char out[1 << 15], path[700];
  snprintf(path, sizeof path, "%s/fzw.nn", a.cm.dir);
  cr_assert_eq(run_capture(out, sizeof out, "%s %s --emit-ir", NNCC_BIN, path), 0);
  cr_expect(strstr(out, "dense_db[fc2]") && !strstr(out, "dense_dw[fc2]"), "%s", out);
  cr_expect(!strstr(out, "dense_dx[fc2]") && !strstr(out, "_dw[fc1]"), "%s", out);
  snprintf(path, sizeof path, "%s/bn.nn", a.cm.dir);
  write_file(path, "model fzb\ninput x: f32[3]\ntarget y: f32[3]\n"
                   "output h = batchnorm(x, freeze=weight)\nloss mse(h, y)\n");
  cr_assert_eq(run_capture(out, sizeof out, "%s %s --emit-ir=after:lower", NNCC_BIN, path), 0);
  cr_expect(strstr(out, "bn1.weight : f32[3] frozen\n") && strstr(out, "bn1.bias : f32[3]\n"),
            "%s", out);
  a.destroy(m);
  close_model(&a.cm);
}

/* The frozen model without weight decay (decay would move even a zero
 * gradient's tensor in the reference), and the same model with nothing
 * frozen.  fc2 sits between two trained layers: its params come after
 * theirs in the params block. */
static const char *const frozen_mid =
    "model %s\ninput x: f32[3]\ntarget y: class[2]\n"
    "h = dense(x, 8) |> relu\nh = dense(h, 8, freeze=%s) |> relu\n"
    "logits = dense(h, 2)\noutput logits\nloss cross_entropy(logits, y)\n"
    "train {\noptimizer adam(lr=0.05)\n}\n";

static const char *frozen_text(const char *name, bool frozen) {
  static char text[2][512];
  snprintf(text[frozen], sizeof text[frozen], frozen_mid, name, frozen ? "true" : "false");
  return text[frozen];
}

/* Gradients and Adam's two state slots exist for the trained params only
 * (fc1 and fc3: 3*8+8 + 8*2+2 = 50 reals of the 122); Adam's steps on them
 * follow the reference, fc2 stays as it was, and their gradients are those
 * of the same model with nothing frozen, bit for bit. */
Test(train, frozen_params_have_no_grads_or_state) {
  Hyper h = {.lr = 0.05, .b1 = 0.9, .b2 = 0.999, .eps = 1e-8};
  check_optimizer_on("frzo", frozen_text("frzo", true), MODEL_O1, O_ADAM, h);
  Api f, u;
  load_api(&f, "frzg", frozen_text("frzg", true), "--dtype f64 --batch 8", MODEL_O1);
  load_api(&u, "unfg", frozen_text("unfg", false), "--dtype f64 --batch 8", MODEL_O1);
  long trained = 3 * 8 + 8 + 8 * 2 + 2, all = trained + 8 * 8 + 8;
  cr_expect_eq(emitted_define(&f.cm, "NN_PARAMS_SIZE"), all);
  cr_expect_eq(emitted_define(&f.cm, "NN_GRADS_SIZE"), trained);
  cr_expect_eq(emitted_define(&f.cm, "NN_STATE_SIZE"), 2 * trained);
  cr_expect_eq(emitted_define(&u.cm, "NN_GRADS_SIZE"), all);
  cr_expect_eq(emitted_define(&u.cm, "NN_STATE_SIZE"), 2 * all);
  void *mf = f.create(3), *mu = u.create(3);
  double x[NB * NX], lf, lu;
  int32_t y[NB];
  for (int k = 0; k < 3; k++) {
    batch(k, x, y);
    cr_assert_eq(f.gradients(mf, NB, x, y, &lf), 0);
    cr_assert_eq(u.gradients(mu, NB, x, y, &lu), 0);
    cr_expect_eq(lf, lu, "step %d: loss %.17g, unfrozen %.17g", k, lf, lu);
    for (int t = 0; t < f.count(); t++) {
      size_t n;
      const double *gf = f.grad(mf, t, &n), *gu = u.grad(mu, t, &n);
      bool frozen = strncmp(f.name(t), "fc2.", 4) == 0;
      cr_expect(frozen ? !gf : gf && memcmp(gf, gu, n * sizeof *gf) == 0,
                "step %d: %s: gradient %s", k, f.name(t), frozen ? "not NULL" : "differs");
    }
    cr_assert_eq(f.update(mf), 0);
    /* the unfrozen model steps its copy of fc2 too: put it back */
    static Snap keep;
    snap(&u, mu, &keep);
    cr_assert_eq(u.update(mu), 0);
    for (int t = 0; t < u.count(); t++)
      if (strncmp(u.name(t), "fc2.", 4) == 0) {
        size_t n;
        memcpy(u.tensor(mu, t, &n), keep.p + keep.off[t], (keep.off[t + 1] - keep.off[t]) * sizeof(double));
      }
  }
  f.destroy(mf), u.destroy(mu);
  close_model(&f.cm);
  close_model(&u.cm);
}

/* Whether model m1 of a1 and m2 of a2 hold the same tensors, bit for bit. */
static bool same_tensors(const Api *a1, void *m1, const Api *a2, void *m2) {
  for (int t = 0; t < a1->count(); t++) {
    size_t n1, n2;
    const double *p1 = a1->tensor(m1, t, &n1), *p2 = a2->tensor(m2, t, &n2);
    if (strcmp(a1->name(t), a2->name(t)) || n1 != n2 || memcmp(p1, p2, n1 * sizeof(double)))
      return false;
  }
  return a1->count() == a2->count();
}

/* A checkpoint of a build with frozen layers loads into a build of the same
 * model without, and the other way round (the state of what is frozen there
 * is skipped); names, order and values as the model's tensors. */
Test(checkpoint, frozen_and_unfrozen_builds) {
  model_files = true;
  Api f, u;
  load_api(&f, "frzc", frozen_text("frzc", true), "--dtype f64 --batch 8", MODEL_O1);
  load_api(&u, "unfc", frozen_text("unfc", false), "--dtype f64 --batch 8", MODEL_O1);
  char pf[700], pu[700];
  snprintf(pf, sizeof pf, "%s/frozen.safetensors", f.cm.dir);
  snprintf(pu, sizeof pu, "%s/unfrozen.safetensors", u.cm.dir);
  void *mf = f.create(3), *mu = u.create(5);
  train_steps(&f, mf, 0, 2);
  train_steps(&u, mu, 0, 2);
  cr_assert_eq(f.save(mf, pf), 0);
  cr_assert_eq(u.save(mu, pu), 0);
  char *file = read_text(pf), *text = file + 8;   /* the JSON header after its length */
  cr_assert(file);
  const char *order[] = {"\"fc1.weight\"", "\"fc1.bias\"", "\"fc2.weight\"", "\"fc2.bias\"",
                         "\"fc3.weight\"", "\"fc3.bias\"", "\"optimizer.fc1.weight.exp_avg\""};
  for (int k = 1; k < 7; k++)
    cr_expect(strstr(text, order[k - 1]) && strstr(text, order[k - 1]) < strstr(text, order[k]),
              "%s not before %s", order[k - 1], order[k]);
  cr_expect(!strstr(text, "optimizer.fc2."), "state of a frozen tensor saved");
  free(file);
  void *uf = u.create(7), *fu = f.create(9);
  cr_assert_eq(u.load(uf, pf), 0, "%s", u.cm.name);
  cr_assert_eq(f.load(fu, pu), 0, "the unfrozen build's checkpoint does not load");
  cr_expect_eq(u.step(uf), 2);
  cr_expect_eq(f.step(fu), 2);
  cr_expect(same_tensors(&f, mf, &u, uf) && same_tensors(&u, mu, &f, fu));
  cr_expect(!same_tensors(&f, mf, &u, mu), "the two runs agree: the check can not fail");
  f.destroy(mf), f.destroy(fu), u.destroy(mu), u.destroy(uf);
  close_model(&f.cm);
  close_model(&u.cm);
}

/* The update runs its chunks on OpenMP threads; its sums are per chunk, added
 * in chunk order.  1 and 2 threads, and a build without OpenMP, must give the
 * same checkpoint (params, optimizer state) and update ratios, bit for bit. */
static size_t read_bytes(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  cr_assert(f, "cannot read %s", path);
  size_t n = fread(buf, 1, cap, f);
  fclose(f);
  cr_assert(n < cap, "%s: larger than %zu bytes", path, cap);
  return n;
}

static void run_threads(const Api32 *a, const char *path, double *ratio) {
  void *m = a->create(5);
  float x[NB * NX];
  int32_t y[NB];
  for (int k = 0; k < 4; k++) {
    batch32(k, x, y);
    cr_assert_eq(a->train_step(m, NB, x, y, NULL), 0);
  }
  cr_assert_eq(a->save(m, path), 0);
  for (int t = 0; t < a->count(); t++)
    ratio[t] = a->ratio(m, t);
  a->destroy(m);
}

Test(train, threads_bit_identical, .timeout = 120) {
  model_files = true;
  const char *train = "optimizer adam(lr=0.01)\ndecay l2(0.01)\ndecay maxnorm(0.5)";
  static Api32 omp, plain;
  load_api32(&omp, "thr", big_mlp("thr", train), "-O2 -fopenmp");
  load_api32(&plain, "thr", big_mlp("thr", train), "-O2");
  char *text = read_text(omp.cm.c_path);
  const char *upd = strstr(text, "int thr_update(");
  const char *end = upd ? strstr(upd, "\n}\n") : NULL, *par = upd ? strstr(upd, "#pragma omp parallel") : NULL;
  cr_assert(par && par < end, "the update does not run in parallel: the test proves nothing");
  free(text);
  void (*set_threads)(int) = (void (*)(int))dlsym(omp.cm.lib, "omp_set_num_threads");
  int (*max_threads)(void) = (int (*)(void))dlsym(omp.cm.lib, "omp_get_max_threads");
  cr_assert(set_threads && max_threads, "no OpenMP runtime in the -fopenmp build");
  static char bytes[3][1 << 20];
  size_t len[3];
  double ratio[3][MAXT];
  char path[700];
  for (int r = 0; r < 3; r++) {
    snprintf(path, sizeof path, "%s/run%d.safetensors", omp.cm.dir, r);
    if (r < 2) {
      set_threads(r + 1);
      cr_assert_eq(max_threads(), r + 1);
    }
    run_threads(r < 2 ? &omp : &plain, path, ratio[r]);
    len[r] = read_bytes(path, bytes[r], sizeof bytes[r]);
  }
  const char *what[3] = {"1 thread", "2 threads", "no OpenMP"};
  for (int r = 1; r < 3; r++) {
    cr_expect(len[r] == len[0] && memcmp(bytes[r], bytes[0], len[0]) == 0,
              "checkpoints after %s and %s differ", what[0], what[r]);
    cr_expect(memcmp(ratio[r], ratio[0], sizeof(double) * (size_t)omp.count()) == 0,
              "update ratios after %s and %s differ", what[0], what[r]);
  }
  cr_expect(ratio[0][0] > 0);
  close_model(&omp.cm);
  close_model(&plain.cm);
}

/* ---- a real training run ------------------------------------------------------ */

Test(train, mlp_learns, .timeout = 120) {
  const char *text =
      "model learn\ninput x: f32[2]\ntarget y: class[2]\n"
      "h = dense(x, 16) |> relu |> dense(16) |> relu\nlogits = dense(h, 2)\n"
      "output logits\nloss cross_entropy(logits, y)\ntrain {\noptimizer adam(lr=0.01)\n}\n";
  Compiled cm;
  compile_model(&cm, "learn", text, "--batch 64", "-O2");
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  int (*step)(void *, int, const float *, const int32_t *, float *) =
      (int (*)(void *, int, const float *, const int32_t *, float *))api(&cm, "train_step");
  float x[64 * 2];
  int32_t y[64];
  fill_uniform(x, 64 * 2, 9, -1, 1);
  for (int b = 0; b < 64; b++) {
    float s = x[2 * b] + 0.5f * x[2 * b + 1];
    if (fabsf(s) < 0.1f)   /* a clear margin: the loss can go to ~0 */
      x[2 * b] += s < 0 ? -0.2f : 0.2f, s = x[2 * b] + 0.5f * x[2 * b + 1];
    y[b] = s > 0;
  }
  void *m = create(1);
  float first = 0, loss = 0;
  for (int k = 0; k < 300; k++) {
    cr_assert_eq(step(m, 64, x, y, &loss), 0);
    if (k == 0)
      first = loss;
  }
  cr_expect(loss * 10 <= first, "loss %g -> %g: not tenfold lower", first, loss);
  destroy(m);
  close_model(&cm);
}

/* ---- initializers ------------------------------------------------------------ */

typedef struct Stats {
  double mean, std, maxabs;
  long zeros;
} Stats;

static Stats stats(const double *p, size_t n) {
  Stats s = {0};
  for (size_t i = 0; i < n; i++) {
    s.mean += p[i];
    s.maxabs = fmax(s.maxabs, fabs(p[i]));
    s.zeros += p[i] == 0;
  }
  s.mean /= (double)n;
  for (size_t i = 0; i < n; i++)
    s.std += (p[i] - s.mean) * (p[i] - s.mean);
  s.std = sqrt(s.std / (double)n);
  return s;
}

Test(init, statistics) {
  enum { IN = 400, OUT = 300 };
  const char *text =
      "model ini\ninput x: f32[400]\n"
      "output a = dense(x, 300, init=zeros)\n"
      "output b = dense(x, 300, init=ones)\n"
      "output c = dense(x, 300, init=normal, init_scale=0.05)\n"
      "output d = dense(x, 300, init=xavier_normal)\n"
      "output e = dense(x, 300, init=xavier_uniform)\n"
      "output f = dense(x, 300, init=he_normal) |> relu\n"
      "output g = dense(x, 300, init=he_uniform)\n"
      "output h = dense(x, 300, init=sparse, init_scale=10)\n"
      "output i = dense(x, 300) |> relu\n"
      "output j = dense(x, 300, init=normal)\n";
  Compiled cm;
  compile_model(&cm, "ini", text, "--dtype f64 --infer --batch 1", MODEL_O1);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  double *(*tensor)(void *, int, size_t *) =
      (double *(*)(void *, int, size_t *))api(&cm, "tensor");
  void *m = create(5);
  const double xn = sqrt(2.0 / (IN + OUT)), xu = sqrt(6.0 / (IN + OUT));
  const double hn = sqrt(2.0 / IN), hu = sqrt(6.0 / IN);
  /* expected std, uniform limit (0: not uniform) per layer */
  const struct { const char *what; double std, limit; } want[] = {
      {"zeros", 0, 0}, {"ones", 0, 0}, {"normal 0.05", 0.05, 0},
      {"xavier_normal", xn, 0}, {"xavier_uniform", xu / sqrt(3.0), xu},
      {"he_normal", hn, 0}, {"he_uniform", hu / sqrt(3.0), hu},
      {"sparse", 0, 0}, {"default before relu (he_normal)", hn, 0}, {"normal default 0.01", 0.01, 0}};
  for (int l = 0; l < 10; l++) {
    size_t n;
    const double *w = tensor(m, 2 * l, &n);
    cr_assert(w && n == (size_t)IN * OUT);
    Stats s = stats(w, n);
    const char *what = want[l].what;
    if (l == 0) {
      cr_expect(s.zeros == (long)n, "zeros");
      continue;
    }
    if (l == 1) {
      cr_expect(s.mean == 1 && s.std == 0, "ones");
      continue;
    }
    if (l == 7) {
      for (int r = 0; r < OUT; r++) {
        int nz = 0;
        for (int k = 0; k < IN; k++)
          nz += w[r * IN + k] != 0;
        cr_expect_eq(nz, 10, "sparse row %d has %d nonzeros", r, nz);
      }
      continue;
    }
    cr_expect(fabs(s.mean) < 5 * want[l].std / sqrt((double)n), "%s: mean %g", what, s.mean);
    cr_expect(fabs(s.std / want[l].std - 1) < 0.02, "%s: std %g, want %g", what, s.std,
              want[l].std);
    if (want[l].limit > 0)
      cr_expect(s.maxabs <= want[l].limit && s.maxabs > 0.999 * want[l].limit,
                "%s: max |w| %g, limit %g", what, s.maxabs, want[l].limit);
    else
      cr_expect(s.maxabs > 3.5 * want[l].std, "%s: no tails (max %g)", what, s.maxabs);
  }
  /* Biases start at zero. */
  size_t n;
  const double *bias = tensor(m, 5, &n);
  cr_expect(stats(bias, n).zeros == (long)n);
  destroy(m);
  close_model(&cm);
}

/* ---- validation where values enter: set() and load ------------------------- */

/* set() refuses what the train section refuses, says why, and keeps the
 * old value. */
Test(hyper, set_applies_the_train_section_rules) {
  Api a;
  load_api(&a, "h_rules",
           mlp("h_rules", "optimizer adam(lr=0.01)\nschedule step(every=10, gamma=0.5)"),
           "--dtype f64 --batch 8", MODEL_O1);
  const char *(*last_error)(const void *) = (const char *(*)(const void *))api(&a.cm, "last_error");
  void *m = a.create(3);
  static const struct {
    const char *name;
    double value;
    int status;
    const char *why;
  } cases[] = {
      {"eps", 0, -1, "eps must be a positive number"},
      {"eps", -1e-8, -1, "eps must be a positive number"},
      {"eps", 1e-7, 0, NULL},
      {"beta1", 1, -1, "beta1 must be a number in [0, 1)"},
      {"beta1", 0.95, 0, NULL},
      {"beta2", 1, -1, "beta2 must be a number in [0, 1)"},
      {"beta2", -0.1, -1, "beta2 must be"},
      {"lr", 0, -1, "lr must be a positive number"},
      {"lr", INFINITY, -1, "lr must be"},
      {"momentum", 1, -1, "momentum must be a number in [0, 1)"},
      {"rho", 1, -1, "rho must be"},
      {"sched_steps", 0, -1, "sched_steps must be a positive integer"},
      {"sched_steps", 2.5, -1, "sched_steps must be a positive integer"},
      {"sched_steps", 20, 0, NULL},
      {"sched_gamma", 0, -1, "sched_gamma must be a positive number"},
      {"l2", -1, -1, "l2 must be a non-negative number"},
      {"l2", 0, 0, NULL},
      {"max_norm", -1, -1, "max_norm must be a positive number or 0"},
      {"max_norm", 0, 0, NULL}, /* off, as in this model */
      {"max_norm", 2, 0, NULL},
      {"lr_min", NAN, -1, "lr_min must be"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    double old = a.get(m, cases[i].name);
    int st = a.set(m, cases[i].name, cases[i].value);
    cr_expect_eq(st, cases[i].status, "set(%s, %g) = %d", cases[i].name, cases[i].value, st);
    if (cases[i].why) {
      cr_expect(strstr(last_error(m), cases[i].why), "set(%s, %g): %s", cases[i].name,
                cases[i].value, last_error(m));
      cr_expect(a.get(m, cases[i].name) == old, "set(%s, %g) changed the value", cases[i].name,
                cases[i].value);
    }
  }
  train_steps(&a, m, 0, 2); /* what was accepted trains */
  a.destroy(m);
  close_model(&a.cm);
}

/* Overwrites element `index` (esize bytes at v) of tensor `name` in a
 * safetensors file. */
static void patch_tensor(const char *path, const char *name, size_t index, const void *v,
                         size_t esize) {
  FILE *f = fopen(path, "r+b");
  cr_assert(f);
  unsigned char len8[8];
  cr_assert_eq(fread(len8, 1, 8, f), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = n << 8 | len8[i];
  char *hdr = calloc(1, n + 1);
  cr_assert_eq(fread(hdr, 1, n, f), n);
  char key[256];
  snprintf(key, sizeof key, "\"%s\":{", name);
  const char *e = strstr(hdr, key);
  cr_assert(e, "no %s in %s", name, hdr);
  const char *off = strstr(e, "\"data_offsets\":[");
  unsigned long long begin;
  cr_assert_eq(sscanf(off, "\"data_offsets\":[%llu", &begin), 1);
  cr_assert_eq(fseek(f, (long)(8 + n + begin + index * esize), SEEK_SET), 0);
  cr_assert_eq(fwrite(v, 1, esize, f), esize);
  fclose(f);
  free(hdr);
}

/* A checkpoint with a step that cannot be incremented, negative or NaN
 * second moments, NaN or Inf weights: load returns ERR_DATA naming the
 * tensor, and the model keeps every byte of its state. */
Test(checkpoint, load_validates_state) {
  model_files = true;
  Api a;
  load_api(&a, "ck_bad", mlp("ck_bad", "optimizer adam(lr=0.01)"), "--dtype f64 --batch 8", MODEL_O1);
  const char *(*last_error)(const void *) = (const char *(*)(const void *))api(&a.cm, "last_error");
  void *m = a.create(3);
  train_steps(&a, m, 0, 2);
  char good[700], bad[700];
  snprintf(good, sizeof good, "%s/good.safetensors", a.cm.dir);
  snprintf(bad, sizeof bad, "%s/bad.safetensors", a.cm.dir);
  cr_assert_eq(a.save(m, good), 0);
  size_t n0, n1;
  unsigned char *before = state_bytes(&a, m, a.cm.dir, &n0);
  const char *w = a.name(0);
  char sq[256];
  snprintf(sq, sizeof sq, "optimizer.%s.exp_avg_sq", w);
  const int64_t steps[] = {-1, INT64_MAX};
  const double values[] = {-1e-3, NAN, INFINITY};
  for (int k = 0; k < 7; k++) {
    char cmd[1500];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", good, bad);
    cr_assert_eq(system(cmd), 0);
    const char *want;
    if (k < 2) {
      patch_tensor(bad, "optimizer.step", 0, &steps[k], 8);
      want = "optimizer.step: element 0 is not a step count";
    } else if (k < 5) {
      patch_tensor(bad, sq, 1, &values[k - 2], 8);
      want = k == 2 ? "is negative" : "is not finite";
    } else {
      patch_tensor(bad, w, 2, &values[k - 4], 8);
      want = "is not finite";
    }
    cr_expect_eq(a.load(m, bad), -7, "case %d", k);
    cr_expect(strstr(last_error(m), want), "case %d: %s", k, last_error(m));
    unsigned char *after = state_bytes(&a, m, a.cm.dir, &n1);
    cr_expect(n0 == n1 && memcmp(before, after, n0) == 0, "case %d: state changed", k);
    free(after);
  }
  /* the largest step that can still be taken loads, steps once, then stops */
  char cmd[1500];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", good, bad);
  cr_assert_eq(system(cmd), 0);
  int64_t last = INT64_MAX - 1;
  patch_tensor(bad, "optimizer.step", 0, &last, 8);
  cr_assert_eq(a.load(m, bad), 0, "%s", last_error(m));
  double x[NB * NX];
  int32_t y[NB];
  batch(9, x, y);
  cr_expect_eq(a.train_step(m, NB, x, y, NULL), 0);
  cr_expect_eq(a.step(m), INT64_MAX);
  cr_expect_eq(a.train_step(m, NB, x, y, NULL), -1, "a step past INT64_MAX");
  cr_expect_eq(a.step(m), INT64_MAX);
  free(before);
  a.destroy(m);
  close_model(&a.cm);
}

/* A negative running variance would make every forward NaN with status 0. */
Test(checkpoint, load_refuses_a_negative_running_variance) {
  model_files = true;
  static const char *const model =
      "model bnvar\ninput x: f32[3]\ntarget y: class[2]\n"
      "h = dense(x, 4) |> batchnorm |> relu\nlogits = dense(h, 2)\noutput logits\n"
      "loss cross_entropy(logits, y)\ntrain {\noptimizer sgd(lr=0.01)\n}\n";
  Compiled cm;
  compile_model(&cm, "bnvar", model, "--batch 8", MODEL_O1);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  int (*save)(void *, const char *) = (int (*)(void *, const char *))api(&cm, "save");
  int (*load)(void *, const char *) = (int (*)(void *, const char *))api(&cm, "load");
  int (*count)(void) = (int (*)(void))api(&cm, "tensor_count");
  const char *(*name)(int) = (const char *(*)(int))api(&cm, "tensor_name");
  const char *(*last_error)(const void *) = (const char *(*)(const void *))api(&cm, "last_error");
  void *m = create(1);
  const char *var = NULL;
  for (int t = 0; t < count(); t++)
    if (strstr(name(t), ".running_var"))
      var = name(t);
  cr_assert(var);
  char path[700];
  snprintf(path, sizeof path, "%s/var.safetensors", cm.dir);
  cr_assert_eq(save(m, path), 0);
  const float zero = 0, neg = -1;
  patch_tensor(path, var, 1, &zero, 4);
  cr_expect_eq(load(m, path), 0, "a variance of 0 is fine: %s", last_error(m));
  patch_tensor(path, var, 1, &neg, 4);
  cr_expect_eq(load(m, path), -7);
  cr_expect(strstr(last_error(m), "running_var: element 1 is negative"), "%s", last_error(m));
  ((void (*)(void *))api(&cm, "destroy"))(m);
  close_model(&cm);
}
