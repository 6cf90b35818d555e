/*
 * test_op_activations.c: the activation ops against double-precision
 * references (f32 and f64 builds, batch 1, 3 and the maximum, inputs far
 * into the tails), their gradients by finite differences (inputs kept away
 * from kinks), prelu's per-channel slope and its gradient, maxout, epilogue
 * fusion (fused == --fuse=none), and the shape-rule errors.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

#define MAXB 5           /* --batch of the forward tests */
#define C 4              /* channels of the per-sample shape [C, S] */
#define S 3
#define PER (C * S)

typedef double (*RefFn)(double x, double a, double b);

static double ref_sigmoid(double x, double a, double b) { return 1 / (1 + exp(-x)); }
static double ref_tanh(double x, double a, double b) { return tanh(x); }
static double ref_relu(double x, double a, double b) { return x > 0 ? x : 0; }
static double ref_leaky(double x, double a, double b) { return x > 0 ? x : a * x; }
static double ref_elu(double x, double a, double b) { return x > 0 ? x : a * expm1(x); }
static double ref_clip(double x, double a, double b) { return x < a ? a : x > b ? b : x; }

/* log(1 + e^x) without the stable formula the op uses: in long double. */
static double ref_softplus(double x, double a, double b) {
  return x > 30 ? x + (double)log1pl(expl(-(long double)x)) : (double)log1pl(expl((long double)x));
}

typedef struct Act {
  const char *call;    /* the op applied to x */
  RefFn ref;
  double a, b;         /* the reference's parameters */
  double kinks[2];     /* points where the derivative jumps (NAN: none) */
} Act;

static const Act acts[] = {
    {"sigmoid(x)", ref_sigmoid, 0, 0, {NAN, NAN}},
    {"tanh(x)", ref_tanh, 0, 0, {NAN, NAN}},
    {"relu(x)", ref_relu, 0, 0, {0, NAN}},
    {"leaky_relu(x)", ref_leaky, 0.01, 0, {0, NAN}},
    {"leaky_relu(x, alpha=0.2)", ref_leaky, 0.2, 0, {0, NAN}},
    {"elu(x)", ref_elu, 1, 0, {NAN, NAN}},
    {"elu(x, alpha=0.5)", ref_elu, 0.5, 0, {0, NAN}},
    {"softplus(x)", ref_softplus, 0, 0, {NAN, NAN}},
    {"hardtanh(x)", ref_clip, -1, 1, {-1, 1}},
    {"hardtanh(x, min=-0.5, max=2)", ref_clip, -0.5, 2, {-0.5, 2}},
    {"clip(x, 0, 6)", ref_clip, 0, 6, {0, 6}},
    {"clip(x, min=-3, max=-1)", ref_clip, -3, -1, {-3, -1}},
};
#define NACTS (int)(sizeof acts / sizeof *acts)

/* Random values in [-4, 4] with the tails mixed in. */
static void test_inputs(double *x, size_t n, uint64_t seed) {
  static const double tails[] = {-800, -100, -30, -12, 12, 30, 100, 800, 0, -1e-9, 1e-9};
  fill_uniform_d(x, n, seed, -4, 4);
  for (size_t i = 0; i < n; i += 3)
    x[i] = tails[(i / 3) % (sizeof tails / sizeof *tails)];
}

typedef int (*Fwd32)(void *, int, const float *, float *);
typedef int (*Fwd64)(void *, int, const double *, double *);

/* |got - want| relative to max(|want|, floor). */
static double rel_err(double got, double want, double floor) {
  if (!isfinite(got))
    return INFINITY;
  return fabs(got - want) / fmax(fabs(want), floor);
}

static void model_text(char *buf, size_t cap, const char *name, const char *call) {
  snprintf(buf, cap, "model %s\ninput x: f32[%d, %d]\nout = %s\noutput out\n", name, C, S,
           call);
}

/* Forward of act in f32 and f64 at batch 1, 3 and MAXB against ref. */
static void forward_case(int k) {
  const Act *act = &acts[k];
  char name[32], model[256];
  for (int f64 = 0; f64 <= 1; f64++) {
    snprintf(name, sizeof name, "act%d_%s", k, f64 ? "d" : "f");
    model_text(model, sizeof model, name, act->call);
    Compiled cm;
    compile_model(&cm, name, model, f64 ? "--batch 5 --dtype f64" : "--batch 5", MODEL_O1);
    void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
    void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
    void *m = create(1);
    static const int batches[] = {1, 3, MAXB};
    for (int bi = 0; bi < 3; bi++) {
      int n = batches[bi];
      double x[MAXB * PER], y[MAXB * PER];
      float xf[MAXB * PER], yf[MAXB * PER];
      test_inputs(x, (size_t)n * PER, 100 + (uint64_t)n);
      for (int i = 0; i < n * PER; i++)
        xf[i] = (float)x[i];
      int st = f64 ? ((Fwd64)api(&cm, "forward"))(m, n, x, y)
                   : ((Fwd32)api(&cm, "forward"))(m, n, xf, yf);
      cr_assert_eq(st, 0);
      for (int i = 0; i < n * PER; i++) {
        double want = act->ref(f64 ? x[i] : (double)xf[i], act->a, act->b);
        double err = f64 ? rel_err(y[i], want, 1e-3) : rel_err(yf[i], want, 1e-3);
        cr_expect(err < (f64 ? 1e-13 : 2e-6), "%s %s n=%d: x=%.9g got %.17g want %.17g",
                  act->call, f64 ? "f64" : "f32", n, x[i], f64 ? y[i] : (double)yf[i], want);
      }
    }
    destroy(m);
    close_model(&cm);
  }
}

Test(activations, sigmoid_forward) { forward_case(0); }
Test(activations, tanh_forward) { forward_case(1); }
Test(activations, relu_forward) { forward_case(2); }
Test(activations, leaky_relu_forward) { forward_case(3); }
Test(activations, leaky_relu_alpha_forward) { forward_case(4); }
Test(activations, elu_forward) { forward_case(5); }
Test(activations, elu_alpha_forward) { forward_case(6); }
Test(activations, softplus_forward) { forward_case(7); }
Test(activations, hardtanh_forward) { forward_case(8); }
Test(activations, hardtanh_bounds_forward) { forward_case(9); }
Test(activations, clip_forward) { forward_case(10); }
Test(activations, clip_named_forward) { forward_case(11); }

/* Moves x off the kinks by at least 1e-3. */
static void avoid_kinks(double *x, size_t n, const double *kinks, int nkinks) {
  for (size_t i = 0; i < n; i++)
    for (int k = 0; k < nkinks; k++)
      if (!isnan(kinks[k]) && fabs(x[i] - kinks[k]) < 1e-3)
        x[i] += 2e-3;
}

static void grad_model(const char *name, const char *model, const double *kinks, int nkinks,
                       double lo, double hi) {
  Compiled cm;
  compile_model(&cm, name, model, "--dtype f64 --input-grad --batch 4", MODEL_O1);
  int n = 3;
  double x[4 * PER], t[4 * 5];
  fill_uniform_d(x, (size_t)n * PER, 21, lo, hi);
  avoid_kinks(x, (size_t)n * PER, kinks, nkinks);
  fill_uniform_d(t, (size_t)n * 5, 22, -1, 1);
  GradReport r = grad_check(&cm, n, x, (size_t)n * PER, t, 0);
  cr_expect(r.tensors >= 1, "%s: no parameter gradients", name);
  cr_expect(r.worst < 1e-6, "%s: worst relative error %.3g at %s (%d checked)", name, r.worst,
            r.where, r.checked);
  close_model(&cm);
}

/* The op on the input (its own kernels, kinks avoided), and for smooth ops
 * also after a dense layer (fused into it as an epilogue where possible). */
static void grad_case(int k) {
  const Act *act = &acts[k];
  char name[32], model[512];
  snprintf(name, sizeof name, "actg%d", k);
  snprintf(model, sizeof model,
           "model %s\ninput x: f32[%d, %d]\ntarget t: f32[5]\nh = %s\n"
           "out = dense(h, 5)\noutput out\nloss mse(out, t)\n",
           name, C, S, act->call);
  grad_model(name, model, act->kinks, 2, -2.5, 2.5);
  if (!isnan(act->kinks[0]))
    return;
  snprintf(name, sizeof name, "actgf%d", k);
  char call[64];
  snprintf(call, sizeof call, "%s", act->call);
  char *paren = strchr(call, '(');
  /* "sigmoid(x)" -> "dense(x, 8) |> sigmoid", arguments kept */
  char rest[64];
  snprintf(rest, sizeof rest, "%s", paren[2] == ')' ? "" : paren + 2);
  *paren = '\0';
  snprintf(model, sizeof model,
           "model %s\ninput x: f32[%d, %d]\ntarget t: f32[5]\nh = dense(x, 8) |> %s%s%s\n"
           "out = dense(h, 5)\noutput out\nloss mse(out, t)\n",
           name, C, S, call, rest[0] ? "(" : "", rest[0] ? rest + 1 : "");
  grad_model(name, model, act->kinks, 2, -2.5, 2.5);
}

Test(activations, sigmoid_gradient) { grad_case(0); }
Test(activations, tanh_gradient) { grad_case(1); }
Test(activations, relu_gradient) { grad_case(2); }
Test(activations, leaky_relu_gradient) { grad_case(3); }
Test(activations, leaky_relu_alpha_gradient) { grad_case(4); }
Test(activations, elu_gradient) { grad_case(5); }
Test(activations, elu_alpha_gradient) { grad_case(6); }
Test(activations, softplus_gradient) { grad_case(7); }
Test(activations, hardtanh_gradient) { grad_case(8); }
Test(activations, hardtanh_bounds_gradient) { grad_case(9); }
Test(activations, clip_gradient) { grad_case(10); }
Test(activations, clip_named_gradient) { grad_case(11); }

/* Large |x| in f64 training: the gradients stay finite and match the
 * derivative (sigmoid'(-40) ~ 4e-18, softplus'(-800) = 0). */
Test(activations, tail_gradients_are_finite) {
  static const char *const ops[] = {"sigmoid", "tanh", "softplus", "elu"};
  for (int k = 0; k < 4; k++) {
    char name[32], model[256];
    snprintf(name, sizeof name, "tail%d", k);
    snprintf(model, sizeof model,
             "model %s\ninput x: f32[6]\ntarget t: f32[6]\nout = %s(x)\noutput out\n"
             "loss mse(out, t)\n", name, ops[k]);
    Compiled cm;
    compile_model(&cm, name, model, "--dtype f64 --input-grad --batch 1", MODEL_O1);
    void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
    void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
    int (*gradients)(void *, int, const double *, const double *, double *, double *) =
        (int (*)(void *, int, const double *, const double *, double *, double *))api(
            &cm, "gradients");
    void *m = create(1);
    double x[6] = {-800, -40, -1e-3, 1e-3, 40, 800}, t[6] = {0}, dx[6], loss;
    cr_assert_eq(gradients(m, 1, x, t, &loss, dx), 0, "%s", ops[k]);
    for (int i = 0; i < 6; i++) {
      double y = 0, d = 0;
      if (k == 0) {
        y = 1 / (1 + exp(-x[i]));
        d = y * (1 - y);
      } else if (k == 1) {
        y = tanh(x[i]);
        d = 1 - y * y;
      } else if (k == 2) {
        y = ref_softplus(x[i], 0, 0);
        d = 1 / (1 + exp(-x[i]));
      } else {
        y = ref_elu(x[i], 1, 0);
        d = x[i] > 0 ? 1 : exp(x[i]);
      }
      double dy = 2 * y / 6, want = dy * d;
      /* elu's slope e^x = (y + 1) is exact only up to rounding of y (|dy|
       * eps absolutely): test it relative to |dy| */
      double floor = k == 3 ? fabs(dy) : 1e-300;
      cr_expect(isfinite(dx[i]) && rel_err(dx[i], want, floor) < 1e-9,
                "%s: x=%g dx %.17g want %.17g", ops[k], x[i], dx[i], want);
    }
    destroy(m);
    close_model(&cm);
  }
}

/* ---- prelu ---------------------------------------------------------------- */

static float *tensor_f(const Compiled *cm, void *m, const char *want, size_t *numel) {
  float *t = tensor_by_name(cm, m, "tensor", want, numel);
  cr_assert(t, "no tensor %s", want);
  return t;
}

/* y[b, c, s] = x > 0 ? x : w[c] x, with w initialized to 0.25 and then set
 * per channel; shared: one w for all channels (PyTorch's nn.PReLU()). */
static void check_prelu_forward(const char *name, bool shared) {
  Compiled cm;
  char model[256];
  snprintf(model, sizeof model, "model %s\ninput x: f32[4, 3]\nout = prelu(x%s)\noutput out\n",
           name, shared ? ", shared=true" : "");
  compile_model(&cm, name, model, "--batch 5", MODEL_O1);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  void *m = create(3);
  size_t k, nw = shared ? 1 : C;
  float *w = tensor_f(&cm, m, "prelu1.weight", &k);
  cr_assert_eq(k, nw);
  for (size_t c = 0; c < nw; c++)
    cr_expect_eq(w[c], 0.25f, "initial slope %g", (double)w[c]);
  static const int batches[] = {1, 3, MAXB};
  for (int round = 0; round < 2; round++) {
    if (round)
      fill_uniform(w, nw, 9, -0.5f, 1.5f);
    for (int bi = 0; bi < 3; bi++) {
      int n = batches[bi];
      float x[MAXB * PER], y[MAXB * PER];
      fill_uniform(x, (size_t)n * PER, 30 + (uint64_t)n, -3, 3);
      cr_assert_eq(((Fwd32)api(&cm, "forward"))(m, n, x, y), 0);
      for (int i = 0; i < n * PER; i++) {
        int c = shared ? 0 : (i / S) % C;
        double want = x[i] > 0 ? x[i] : (double)w[c] * x[i];
        cr_expect(rel_err(y[i], want, 1e-3) < 1e-6, "n=%d i=%d got %g want %g", n, i,
                  (double)y[i], want);
      }
    }
  }
  destroy(m);
  close_model(&cm);
}

Test(activations, prelu_forward_per_channel) { check_prelu_forward("pr", false); }
Test(activations, prelu_forward_shared) { check_prelu_forward("prs", true); }

/* Both dx and dweight; prelu on the input (own kernels) and after dense
 * (C = dense units; fused into it in inference, not in training because
 * prelu_dx reads the pre-activation). */
Test(activations, prelu_gradient) {
  double kinks[1] = {0};
  grad_model("prg",
             "model prg\ninput x: f32[4, 3]\ntarget t: f32[5]\nh = prelu(x)\n"
             "out = dense(h, 5)\noutput out\nloss mse(out, t)\n",
             kinks, 1, -2, 2);
  grad_model("prgd",
             "model prgd\ninput x: f32[4, 3]\ntarget t: f32[5]\nh = dense(x, 6) |> prelu\n"
             "out = dense(h, 5) |> prelu\noutput out\nloss mse(out, t)\n",
             kinks, 1, -2, 2);
  grad_model("prgs",
             "model prgs\ninput x: f32[4, 3]\ntarget t: f32[5]\nh = prelu(x, shared=true)\n"
             "out = dense(h, 6) |> prelu(shared=true) |> dense(5)\noutput out\nloss mse(out, t)\n",
             kinks, 1, -2, 2);
}

/* The weight gradient alone, against a hand-computed sum: loss = mse(y, 0)
 * over (n, C, S), dw[c] = sum over x <= 0 of 2 y x / (n C S); shared: one
 * sum over every channel. */
static void check_prelu_dweight(const char *name, bool shared) {
  Compiled cm;
  char model[256];
  snprintf(model, sizeof model,
           "model %s\ninput x: f32[4, 3]\ntarget t: f32[4, 3]\nout = prelu(x%s)\n"
           "output out\nloss mse(out, t)\n", name, shared ? ", shared=true" : "");
  compile_model(&cm, name, model, "--dtype f64 --batch 4", MODEL_O1);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  int (*gradients)(void *, int, const double *, const double *, double *) =
      (int (*)(void *, int, const double *, const double *, double *))api(&cm, "gradients");
  double *(*grad)(void *, int, size_t *) = (double *(*)(void *, int, size_t *))api(&cm, "grad");
  double *(*tensor)(void *, int, size_t *) =
      (double *(*)(void *, int, size_t *))api(&cm, "tensor");
  void *m = create(3);
  int n = 4;
  size_t k, nw = shared ? 1 : C;
  double *w = tensor(m, 0, &k);
  cr_assert_eq(k, nw);
  for (size_t c = 0; c < nw; c++)
    w[c] = 0.1 * (double)(c + 1);
  double x[4 * PER], t[4 * PER] = {0}, loss, want[C] = {0};
  fill_uniform_d(x, (size_t)n * PER, 5, -2, 2);
  cr_assert_eq(gradients(m, n, x, t, &loss), 0);
  double *dw = grad(m, 0, &k);
  cr_assert(dw && k == nw);
  for (int c = 0; c < C; c++)
    for (int b = 0; b < n; b++)
      for (int s = 0; s < S; s++) {
        double v = x[(b * C + c) * S + s], wc = w[shared ? 0 : c];
        if (v <= 0)
          want[shared ? 0 : c] += 2 * (wc * v) * v / (n * PER);
      }
  for (size_t c = 0; c < nw; c++)
    cr_expect(rel_err(dw[c], want[c], 1e-12) < 1e-12, "dweight[%zu] = %.17g, want %.17g", c, dw[c],
              want[c]);
  destroy(m);
  close_model(&cm);
}

Test(activations, prelu_weight_gradient_value) { check_prelu_dweight("prw", false); }
Test(activations, prelu_shared_weight_gradient_value) { check_prelu_dweight("prws", true); }

/* ---- maxout --------------------------------------------------------------- */

/* x (n, 6, 2), k = 3: y (n, 2, 2) = max over channel groups {0,1,2}, {3,4,5}. */
Test(activations, maxout_forward) {
  Compiled cm;
  compile_model(&cm, "mo", "model mo\ninput x: f32[6, 2]\nout = maxout(x, 3)\noutput out\n",
                "--batch 5", MODEL_O1);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  void *m = create(1);
  static const int batches[] = {1, 3, MAXB};
  for (int bi = 0; bi < 3; bi++) {
    int n = batches[bi];
    float x[MAXB * 12], y[MAXB * 4];
    fill_uniform(x, (size_t)n * 12, 40 + (uint64_t)n, -3, 3);
    cr_assert_eq(((Fwd32)api(&cm, "forward"))(m, n, x, y), 0);
    for (int b = 0; b < n; b++)
      for (int g = 0; g < 2; g++)
        for (int s = 0; s < 2; s++) {
          double want = -INFINITY;
          for (int j = 0; j < 3; j++)
            want = fmax(want, x[(b * 6 + g * 3 + j) * 2 + s]);
          cr_expect_eq((double)y[(b * 2 + g) * 2 + s], want, "n=%d b=%d g=%d s=%d", n, b, g, s);
        }
  }
  destroy(m);
  close_model(&cm);
}

/* Inputs where the top two of each group differ by more than 1e-3. */
static void separate_maxima(double *x, int n, int groups, int k, int inner) {
  for (int ng = 0; ng < n * groups; ng++)
    for (int s = 0; s < inner; s++) {
      double *v = x + (long)ng * k * inner + s;
      int best = 0;
      for (int j = 1; j < k; j++)
        if (v[j * inner] > v[best * inner])
          best = j;
      for (int j = 0; j < k; j++)
        if (j != best && v[best * inner] - v[j * inner] < 1e-3)
          v[best * inner] = v[j * inner] + 2e-3;
    }
}

Test(activations, maxout_gradient) {
  Compiled cm;
  compile_model(&cm, "mog",
                "model mog\ninput x: f32[6, 2]\ntarget t: f32[3]\nh = maxout(x, 2)\n"
                "out = dense(h, 3)\noutput out\nloss mse(out, t)\n",
                "--dtype f64 --input-grad --batch 4", MODEL_O1);
  int n = 3;
  double x[4 * 12], t[4 * 3];
  fill_uniform_d(x, (size_t)n * 12, 50, -2, 2);
  separate_maxima(x, n, 3, 2, 2);
  fill_uniform_d(t, (size_t)n * 3, 51, -1, 1);
  GradReport r = grad_check(&cm, n, x, (size_t)n * 12, t, 0);
  cr_expect(r.worst < 1e-6, "maxout: worst %.3g at %s", r.worst, r.where);
  close_model(&cm);
}

/* Ties: the gradient goes to the first maximum only. */
Test(activations, maxout_gradient_ties_go_to_first) {
  Compiled cm;
  compile_model(&cm, "mot",
                "model mot\ninput x: f32[4]\ntarget t: f32[2]\nout = maxout(x, 2)\n"
                "output out\nloss mse(out, t)\n",
                "--dtype f64 --input-grad --batch 1", MODEL_O1);
  int (*gradients)(void *, int, const double *, const double *, double *, double *) =
      (int (*)(void *, int, const double *, const double *, double *, double *))api(
          &cm, "gradients");
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  void *m = create(1);
  double x[4] = {1.5, 1.5, -2, 0.5}, t[2] = {0, 0}, dx[4], loss;
  cr_assert_eq(gradients(m, 1, x, t, &loss, dx), 0);
  cr_expect_eq(loss, (1.5 * 1.5 + 0.5 * 0.5) / 2);
  cr_expect_eq(dx[0], 1.5);   /* 2 * 1.5 / 2 */
  cr_expect_eq(dx[1], 0);
  cr_expect_eq(dx[2], 0);
  cr_expect_eq(dx[3], 0.5);
  destroy(m);
  close_model(&cm);
}

/* ---- epilogue fusion --------------------------------------------------------- */

/* A dense layer followed by `chain`: the default build fuses the chain into
 * the dense kernel (checked in the emitted C) and matches --fuse=none. */
static void fusion_case(const char *tag, const char *chain) {
  char model[256], name[32];
  snprintf(name, sizeof name, "fu_%s", tag);
  snprintf(model, sizeof model,
           "model %s\ninput x: f32[4, 3]\nout = dense(x, 7) |> %s\noutput out\n", name, chain);
  float out[2][MAXB * 7];
  float x[MAXB * PER];
  fill_uniform(x, MAXB * PER, 60, -2, 2);
  for (int fused = 0; fused <= 1; fused++) {
    Compiled cm;
    compile_model(&cm, name, model, fused ? "--batch 5" : "--batch 5 --fuse=none", MODEL_O1);
    char *c = read_text(cm.c_path);
    cr_assert(c);
    bool has_fused = strstr(c, "; fused: ") != NULL;
    cr_expect(has_fused == (fused != 0), "%s: fused=%d but the kernel comment says %d", chain,
              fused, has_fused);
    free(c);
    void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
    void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
    void *m = create(11);
    size_t k;
    float *w = tensor_f(&cm, m, "fc1.weight", &k);
    fill_uniform(w, k, 61, -1, 1);   /* pre-activations of both signs, some large */
    if (strstr(chain, "prelu")) {
      float *s = tensor_f(&cm, m, "prelu1.weight", &k);
      fill_uniform(s, k, 62, -0.5f, 1);
    }
    cr_assert_eq(((Fwd32)api(&cm, "forward"))(m, MAXB, x, out[fused]), 0);
    destroy(m);
    close_model(&cm);
  }
  for (int i = 0; i < MAXB * 7; i++)
    cr_expect(fabs(out[0][i] - out[1][i]) <= 1e-6 * fmax(1, fabs(out[0][i])),
              "%s [%d]: unfused %.9g, fused %.9g", chain, i, (double)out[0][i],
              (double)out[1][i]);
}

Test(activations, fused_sigmoid_matches_unfused) { fusion_case("sig", "sigmoid"); }
Test(activations, fused_prelu_matches_unfused) { fusion_case("prelu", "prelu"); }
Test(activations, fused_chain_matches_unfused) {
  fusion_case("chain", "leaky_relu(0.1) |> elu |> clip(-0.5, 0.8) |> softplus |> tanh");
}

/* ---- shape-rule errors ---------------------------------------------------------- */

static void expect_error(const char *tag, const char *body, const char *message) {
  char dir[512], path[600], out[4096], model[512];
  scratch_dir(dir, sizeof dir, tag);
  snprintf(path, sizeof path, "%s/m.nn", dir);
  snprintf(model, sizeof model, "model m\ninput x: f32[6, 2]\n%s\noutput out\n", body);
  write_file(path, model);
  int st = run_capture(out, sizeof out, "%s %s -o %s/m.c", NNCC_BIN, path, dir);
  cr_expect_eq(st, 1, "%s: exit %d\n%s", body, st, out);
  cr_expect(strstr(out, message) != NULL, "%s: want '%s' in\n%s", body, message, out);
}

Test(activations, errors) {
  expect_error("e1", "out = clip(x, 1, 0)", "clip: min (1) must be less than max (0)");
  expect_error("e2", "out = hardtanh(x, min=2, max=2)", "hardtanh: min (2) must be less than max");
  expect_error("e3", "out = maxout(x, 4)", "maxout: 6 channels");
  expect_error("e4", "out = maxout(x, 0)", "maxout: k must be positive");
  expect_error("e5", "out = leaky_relu(x, alpha=-0.1)", "leaky_relu: alpha must be >= 0");
  expect_error("e6", "out = elu(x, -1)", "elu: alpha must be >= 0");
  expect_error("e7", "out = clip(x, 0)", "clip: missing argument 'max'");
}

/* Under --memory-budget the relu gradient reads y's sign bits (relu_mask,
 * computed in the forward pass) instead of y: 105 elements per sample are
 * three words and 9 bits of a fourth, and samples start at a word.  The
 * budget is one byte under the default build's memory_size(), which makes
 * nncc take its kernels without workspace and the masks.  (No relu right
 * after a relu'd layer: where all its inputs are 0 a zero bias puts the
 * output exactly on the kink, where finite differences see half a slope.) */
Test(activations, relu_gradient_from_sign_bits_under_a_memory_budget) {
  const char *model = "model rmb\ninput x: f32[2, 7, 5]\ntarget t: f32[4]\n"
                      "h = conv2d(x, 3, kernel=3, padding=same) |> relu\n"
                      "h = conv2d(h, 3, kernel=1)\n"
                      "out = flatten(h) |> dense(4) |> relu\noutput out\nloss mse(out, t)\n";
  Compiled fast, small;
  compile_model(&fast, "rmb", model, "--dtype f64 --input-grad --batch 3", MODEL_O1);
  size_t mem = ((size_t (*)(void))api(&fast, "memory_size"))();
  char *text = read_text(fast.c_path);
  cr_assert(text);
  cr_expect(!strstr(text, "_relu_mask("), "the default build keeps y, not its sign bits");
  free(text);
  close_model(&fast);
  char opts[128];
  snprintf(opts, sizeof opts, "--dtype f64 --input-grad --batch 3 --memory-budget %zu", mem - 1);
  compile_model(&small, "rmb", model, opts, MODEL_O1);
  text = read_text(small.c_path);
  cr_assert(text);
  cr_expect(strstr(text, "_relu_mask("), "no sign bits under the budget");
  free(text);
  for (int n = 1; n <= 3; n += 2) {
    GradReport r = grad_check_random(&small, n, 70, 4, 19 + (uint64_t)n, -1, 1);
    cr_expect(r.worst < 1e-6, "n=%d: worst %.3g at %s", n, r.worst, r.where);
    cr_expect(r.tensors == 6);
  }
  close_model(&small);
}
