/*
 * test_losses.c: the losses beyond cross_entropy/mse (hinge, squared_hinge,
 * bce, l1, huber) and the normalize preprocessing op.
 *
 * Forward: the loss is applied straight to the model input, so the test
 * controls the scores exactly; the generated loss (f64 and f32) and, with
 * --input-grad, its gradient d(loss)/d(scores) are compared with naive
 * double-precision references written here, at batch 1, 3 and the maximum.
 * Gradient checks: the loss sits behind a dense layer, data chosen so that
 * no kink (hinge margin, |d| = 0 or delta) is within 1e-4 of the evaluation
 * point, then grad_check against finite differences.  normalize gets a
 * forward test (per-channel, single value, fused as a dense epilogue), a
 * gradient check and its shape errors.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

#define MAXB 8
#define K 5   /* classes / labels per sample */

typedef enum { L_HINGE, L_SQ_HINGE, L_BCE, L_L1, L_HUBER } LossKind;

typedef struct Case {
  LossKind kind;
  const char *call;   /* the loss call in the model */
  double param;       /* margin or delta */
} Case;

/* ---- references (double, naive) ------------------------------------------ */

static double softplus(double z) { return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)); }

/* Loss of one sample and its gradient (not yet divided by the batch). */
static double ref_sample(const Case *c, const double *s, const double *t, int y, double *d) {
  double loss = 0;
  for (int k = 0; k < K; k++)
    d[k] = 0;
  for (int k = 0; k < K; k++) {
    switch (c->kind) {
    case L_HINGE:
    case L_SQ_HINGE: {
      double m = s[k] - s[y] + c->param;
      if (k == y || m <= 0)
        break;
      bool sq = c->kind == L_SQ_HINGE;
      loss += sq ? m * m : m;
      d[k] += sq ? 2 * m : 1;
      d[y] -= sq ? 2 * m : 1;
      break;
    }
    case L_BCE: {
      /* -[t log sigmoid(x) + (1-t) log(1 - sigmoid(x))] */
      loss += t[k] * softplus(-s[k]) + (1 - t[k]) * softplus(s[k]);
      d[k] = 1 / (1 + exp(-s[k])) - t[k];
      break;
    }
    case L_L1:
      loss += fabs(s[k] - t[k]) / K;
      d[k] = (s[k] > t[k] ? 1.0 : -1.0) / K;
      break;
    case L_HUBER: {
      double a = fabs(s[k] - t[k]), dl = c->param;
      loss += (a < dl ? 0.5 * a * a : dl * (a - 0.5 * dl)) / K;
      d[k] = fmax(-dl, fmin(dl, s[k] - t[k])) / K;
      break;
    }
    }
  }
  return loss;
}

static double ref_loss(const Case *c, int n, const double *s, const double *t,
                       const int32_t *y, double *d) {
  double total = 0;
  for (int b = 0; b < n; b++)
    total += ref_sample(c, s + b * K, t + b * K, y[b], d + b * K);
  for (int i = 0; i < n * K; i++)
    d[i] /= n;
  return total / n;
}

static bool is_class(const Case *c) { return c->kind == L_HINGE || c->kind == L_SQ_HINGE; }

static void make_data(const Case *c, uint64_t seed, double *s, double *t, int32_t *y) {
  fill_uniform_d(s, MAXB * K, seed, -3, 3);
  fill_uniform_d(t, MAXB * K, seed + 1, -3, 3);
  for (int b = 0; b < MAXB; b++)
    y[b] = (int32_t)((b * 3 + 1) % K);
  if (c->kind == L_BCE) {
    for (int i = 0; i < MAXB * K; i++)
      t[i] = t[i] > 0;
    s[0] = 60, s[1] = -60, s[2] = 35;   /* exp overflow / log(0) in naive forms */
  }
}

static const char *model_text(const Case *c, const char *name, bool dense) {
  static char text[1024];
  const char *tgt = is_class(c) ? "class[5]" : "f32[5]";
  snprintf(text, sizeof text,
           "model %s\ninput x: f32[5]\ntarget y: %s\n%s\noutput s\nloss %s\n", name, tgt,
           dense ? "s = dense(x, 5)" : "s = relu(x)", c->call);
  return text;
}

/* The call with the scores replaced: "hinge(x, y, margin=0.5)" reads x. */
static const Case cases[] = {
    {L_HINGE, "hinge(%s, y)", 1},
    {L_HINGE, "hinge(%s, y, margin=0.5)", 0.5},
    {L_SQ_HINGE, "squared_hinge(%s, y)", 1},
    {L_SQ_HINGE, "squared_hinge(%s, y, margin=2)", 2},
    {L_BCE, "bce(%s, y)", 0},
    {L_L1, "l1(%s, y)", 0},
    {L_HUBER, "huber(%s, y)", 1},
    {L_HUBER, "huber(%s, y, delta=0.3)", 0.3},
};
#define NCASES (int)(sizeof cases / sizeof *cases)

static Case with_scores(const Case *c, const char *scores) {
  static char call[8][128];
  static int next;
  char *buf = call[next++ % 8];
  snprintf(buf, 128, c->call, scores);
  Case r = *c;
  r.call = buf;
  return r;
}

typedef int (*Grad64)(void *, int, const double *, const void *, double *, double *);
typedef int (*Grad32)(void *, int, const float *, const void *, float *, float *);

static void forward_case(int i) {
  Case c = with_scores(&cases[i], "x");
  char name[32];
  snprintf(name, sizeof name, "lossf%d", i);
  double s[MAXB * K], t[MAXB * K], d[MAXB * K], want_d[MAXB * K];
  int32_t y[MAXB];
  make_data(&c, 100 + (uint64_t)i, s, t, y);
  const void *tgt = is_class(&c) ? (const void *)y : (const void *)t;
  Compiled cm;
  compile_model(&cm, name, model_text(&c, name, false),
                "--dtype f64 --input-grad --batch 8", MODEL_O1);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  Grad64 gradients = (Grad64)api(&cm, "gradients");
  void *m = create(1);
  int batches[] = {1, 3, MAXB};
  for (int k = 0; k < 3; k++) {
    int n = batches[k];
    double loss = NAN;
    cr_assert_eq(gradients(m, n, s, tgt, &loss, d), 0);
    double want = ref_loss(&c, n, s, t, y, want_d);
    cr_expect(fabs(loss - want) <= 1e-12 * fmax(1, fabs(want)), "%s n=%d: loss %.17g, want %.17g",
              c.call, n, loss, want);
    double err = max_rel_err_d(d, want_d, (size_t)(n * K));
    cr_expect(err < 1e-12, "%s n=%d: gradient error %.3g", c.call, n, err);
  }
  destroy(m);
  close_model(&cm);

  /* f32: same formulas, float storage. */
  snprintf(name, sizeof name, "lossg%d", i);
  compile_model(&cm, name, model_text(&c, name, false), "--input-grad --batch 8", MODEL_O1);
  create = (void *(*)(uint64_t))api(&cm, "create");
  destroy = (void (*)(void *))api(&cm, "destroy");
  Grad32 gradients32 = (Grad32)api(&cm, "gradients");
  float sf[MAXB * K], tf[MAXB * K], df[MAXB * K];
  for (int j = 0; j < MAXB * K; j++) {
    sf[j] = (float)s[j], tf[j] = (float)t[j];
    s[j] = sf[j], t[j] = tf[j];
  }
  m = create(1);
  float loss = NAN;
  cr_assert_eq(gradients32(m, MAXB, sf, is_class(&c) ? (const void *)y : (const void *)tf, &loss,
                           df), 0);
  double want = ref_loss(&c, MAXB, s, t, y, want_d);
  cr_expect(fabs(loss - want) <= 1e-5 * fmax(1, fabs(want)), "f32 %s: loss %.9g, want %.9g",
            c.call, loss, want);
  cr_expect(max_rel_err(df, want_d, MAXB * K) < 1e-4, "f32 %s: gradient", c.call);
  destroy(m);
  close_model(&cm);
}

Test(losses, hinge) { forward_case(0), forward_case(1); }
Test(losses, squared_hinge) { forward_case(2), forward_case(3); }
Test(losses, bce) { forward_case(4); }
Test(losses, l1) { forward_case(5); }
Test(losses, huber) { forward_case(6), forward_case(7); }

/* The nearest kink of the loss at scores s: grad checks need it far away. */
static double kink_distance(const Case *c, int n, const double *s, const double *t,
                            const int32_t *y) {
  double best = INFINITY;
  for (int b = 0; b < n; b++)
    for (int k = 0; k < K; k++) {
      double v = s[b * K + k], d = v - t[b * K + k];
      if (is_class(c) && k != y[b])
        best = fmin(best, fabs(v - s[b * K + y[b]] + c->param));
      if (c->kind == L_L1)
        best = fmin(best, fabs(d));
      if (c->kind == L_HUBER)
        best = fmin(best, fabs(fabs(d) - c->param));
    }
  return best;
}

static void grad_case(int i) {
  Case c = with_scores(&cases[i], "s");
  char name[32];
  snprintf(name, sizeof name, "lossgc%d", i);
  Compiled cm;
  compile_model(&cm, name, model_text(&c, name, true), "--dtype f64 --input-grad --batch 8",
                MODEL_O1);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  int (*forward)(void *, int, const double *, double *) =
      (int (*)(void *, int, const double *, double *))api(&cm, "forward");
  void *m = create(7);   /* grad_check's seed: same weights, same scores */
  const int n = 4;
  double x[MAXB * K], t[MAXB * K], s[MAXB * K];
  int32_t y[MAXB];
  bool found = false;
  for (uint64_t seed = 1; seed < 200 && !found; seed++) {
    make_data(&c, seed, x, t, y);
    fill_uniform_d(x, MAXB * K, seed, -2, 2);
    cr_assert_eq(forward(m, n, x, s), 0);
    found = kink_distance(&c, n, s, t, y) > 1e-3;
  }
  cr_assert(found, "%s: no kink-free data", c.call);
  GradReport r = grad_check(&cm, n, x, (size_t)(n * K), is_class(&c) ? (void *)y : (void *)t, 64);
  cr_expect(r.tensors > 0);
  cr_expect(r.worst < 1e-6, "%s: worst relative error %.3g at %s (%d checked)", c.call, r.worst,
            r.where, r.checked);
  destroy(m);
  close_model(&cm);
}

Test(losses_grad, hinge) { grad_case(0), grad_case(1); }
Test(losses_grad, squared_hinge) { grad_case(2), grad_case(3); }
Test(losses_grad, bce) { grad_case(4); }
Test(losses_grad, l1) { grad_case(5); }
Test(losses_grad, huber) { grad_case(6), grad_case(7); }

/* ---- errors ----------------------------------------------------------------- */

static void expect_error(const char *model, const char *message) {
  char dir[512], path[600], out[4096];
  scratch_dir(dir, sizeof dir, "lossErr");
  snprintf(path, sizeof path, "%s/e.nn", dir);
  write_file(path, model);
  int st = run_capture(out, sizeof out, "%s %s -o %s/e.c", NNCC_BIN, path, dir);
  cr_expect_eq(st, 1, "nncc exit %d for:\n%s\n%s", st, model, out);
  cr_expect(strstr(out, message), "expected '%s' in:\n%s", message, out);
}

Test(losses, errors) {
  expect_error("model e\ninput x: f32[4]\ntarget y: class[3]\noutput s = relu(x)\n"
               "loss hinge(x, y)\n", "hinge: the target must be class labels class[4]");
  expect_error("model e\ninput x: f32[4]\ntarget y: class[4]\noutput s = relu(x)\n"
               "loss squared_hinge(x, y, margin=-1)\n", "margin must be non-negative");
  expect_error("model e\ninput x: f32[4]\ntarget y: class[4]\noutput s = relu(x)\n"
               "loss bce(x, y)\n", "bce: prediction");
  expect_error("model e\ninput x: f32[4]\ntarget y: f32[3]\noutput s = relu(x)\n"
               "loss l1(x, y)\n", "l1: prediction [4] and target [3]");
  expect_error("model e\ninput x: f32[4]\ntarget y: f32[4]\noutput s = relu(x)\n"
               "loss huber(x, y, delta=0)\n", "huber: delta must be positive");
}

/* ---- normalize ------------------------------------------------------------- */

#define C 3
#define HW 4

static const double nmean[C] = {0.5, 0.25, -1}, nstd[C] = {2, 0.5, 4};

Test(normalize, forward) {
  const char *text =
      "model nrm\ninput x: f32[3, 2, 2]\n"
      "output y = normalize(x, mean=[0.5, 0.25, -1], std=[2, 0.5, 4])\n"
      "output z = normalize(x, mean=[0.5], std=[4])\n"
      "output u = flatten(x) |> dense(3) |> normalize(mean=[0.5, 0.25, -1], std=[2, 0.5, 4])\n";
  Compiled cm;
  compile_model(&cm, "nrm", text, "--dtype f64 --batch 8", MODEL_O1);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  int (*forward)(void *, int, const double *, double *, double *, double *) =
      (int (*)(void *, int, const double *, double *, double *, double *))api(&cm, "forward");
  double *(*tensor)(void *, int, size_t *) =
      (double *(*)(void *, int, size_t *))api(&cm, "tensor");
  void *m = create(3);
  double x[MAXB * C * HW], x0[MAXB * C * HW], y[MAXB * C * HW], z[MAXB * C * HW], u[MAXB * C];
  double wy[MAXB * C * HW], wz[MAXB * C * HW], wu[MAXB * C];
  fill_uniform_d(x, MAXB * C * HW, 5, -3, 3);
  memcpy(x0, x, sizeof x);
  size_t nw, nb;
  const double *w = tensor(m, 0, &nw), *bias = tensor(m, 1, &nb);
  cr_assert(w && bias && nw == C * C * HW && nb == C);
  int batches[] = {1, 3, MAXB};
  for (int k = 0; k < 3; k++) {
    int n = batches[k];
    cr_assert_eq(forward(m, n, x, y, z, u), 0);
    for (int i = 0; i < n * C * HW; i++) {
      int c = (i / HW) % C;
      wy[i] = (x[i] - nmean[c]) / nstd[c];
      wz[i] = (x[i] - 0.5) / 4;
    }
    for (int b = 0; b < n; b++)
      for (int o = 0; o < C; o++) {
        double acc = bias[o];
        for (int j = 0; j < C * HW; j++)
          acc += w[o * C * HW + j] * x[b * C * HW + j];
        wu[b * C + o] = (acc - nmean[o]) / nstd[o];
      }
    cr_expect(max_rel_err_d(y, wy, (size_t)(n * C * HW)) < 1e-14, "per-channel, n=%d", n);
    cr_expect(max_rel_err_d(z, wz, (size_t)(n * C * HW)) < 1e-14, "one value, n=%d", n);
    cr_expect(max_rel_err_d(u, wu, (size_t)(n * C)) < 1e-12, "dense epilogue, n=%d", n);
    cr_expect(memcmp(x, x0, sizeof x) == 0, "the input was modified");
  }
  destroy(m);
  close_model(&cm);
}

Test(normalize, gradient) {
  const char *text =
      "model nrmg\ninput x: f32[3, 2, 2]\ntarget t: f32[4]\n"
      "h = normalize(x, mean=[0.5, 0.25, -1], std=[2, 0.5, 4]) |> flatten |> dense(3)\n"
      "h = normalize(h, mean=[1, -2, 0.5], std=[0.5, 3, 1.5]) |> dense(4)\n"
      "output h\nloss mse(h, t)\n";
  Compiled cm;
  compile_model(&cm, "nrmg", text, "--dtype f64 --input-grad --batch 4", MODEL_O1);
  double x[4 * C * HW], t[4 * 4];
  fill_uniform_d(x, 4 * C * HW, 11, -2, 2);
  fill_uniform_d(t, 4 * 4, 12, -1, 1);
  GradReport r = grad_check(&cm, 3, x, 3 * C * HW, t, 64);
  cr_expect(r.tensors == 4, "%d tensors", r.tensors);
  cr_expect(r.worst < 1e-6, "worst relative error %.3g at %s (%d checked)", r.worst, r.where,
            r.checked);
  close_model(&cm);
}

Test(normalize, errors) {
  expect_error("model e\ninput x: f32[3, 2]\noutput y = normalize(x, mean=[0, 1], std=[1])\n",
               "normalize: mean has 2 values; the input has 3 channels");
  expect_error("model e\ninput x: f32[3]\noutput y = normalize(x, mean=[0], std=[1, 0, 2])\n",
               "normalize: std must be positive, got 0");
  expect_error("model e\ninput x: f32[3]\noutput y = normalize(x, mean=[0], std=[-1])\n",
               "normalize: std must be positive, got -1");
  expect_error("model e\ninput x: f32[3]\noutput y = normalize(x, mean=[0], std=[1, 2])\n",
               "normalize: std has 2 values");
}
