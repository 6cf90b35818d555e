/*
 * test_op_softmax.c: softmax over (N, K) and over the channels of
 * (N, C, H, W) per position, against a double-precision reference at batch
 * 1, 3 and the maximum; rows sum to 1; logits of +-1000 stay finite and
 * exact; f64 gradient checks through `loss mse(softmax(x), t)`.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

#define MAXB 6

/* softmax over k of x[b, k, s] (K rows of S positions per sample), in
 * double, shifted by the maximum. */
static void ref_softmax(int n, int k, int s, const float *x, double *y) {
  for (int b = 0; b < n; b++)
    for (int p = 0; p < s; p++) {
      const float *xr = x + (long)b * k * s + p;
      double *yr = y + (long)b * k * s + p;
      double mx = -INFINITY, sum = 0;
      for (int i = 0; i < k; i++)
        mx = fmax(mx, xr[i * s]);
      for (int i = 0; i < k; i++)
        sum += exp((double)xr[i * s] - mx);
      for (int i = 0; i < k; i++)
        yr[i * s] = exp((double)xr[i * s] - mx) / sum;
    }
}

typedef struct Softmax {
  Compiled cm;
  void *m;
  int (*forward)(void *, int, const float *, float *);
} Softmax;

static void open_softmax(Softmax *s, const char *name, const char *shape) {
  char model[256];
  snprintf(model, sizeof model, "model %s\ninput x: f32%s\noutput y = softmax(x)\n", name,
           shape);
  compile_model(&s->cm, name, model, "--batch 6", MODEL_O1);
  s->forward = (int (*)(void *, int, const float *, float *))api(&s->cm, "forward");
  s->m = ((void *(*)(uint64_t))api(&s->cm, "create"))(1);
  cr_assert(s->m);
}

static void close_softmax(Softmax *s) {
  ((void (*)(void *))api(&s->cm, "destroy"))(s->m);
  close_model(&s->cm);
}

/* Runs batch n of x through the model; checks y against the reference and
 * that every row sums to 1. */
static void check_rows(Softmax *s, int n, int k, int sp, const float *x) {
  size_t len = (size_t)n * k * sp;
  float *y = malloc(len * sizeof *y);
  double *want = malloc(len * sizeof *want);
  cr_assert_eq(s->forward(s->m, n, x, y), 0);
  ref_softmax(n, k, sp, x, want);
  double err = max_rel_err(y, want, len);
  cr_expect(err < 1e-5, "batch %d: relative error %g", n, err);
  for (int b = 0; b < n; b++)
    for (int p = 0; p < sp; p++) {
      double sum = 0;
      for (int i = 0; i < k; i++)
        sum += y[((long)b * k + i) * sp + p];
      cr_expect(fabs(sum - 1) < 1e-5, "batch %d row (%d, %d) sums to %.9g", n, b, p, sum);
    }
  free(y);
  free(want);
}

static void check_forward(const char *name, const char *shape, int k, int sp, float scale) {
  Softmax s;
  open_softmax(&s, name, shape);
  float x[MAXB * 200];
  cr_assert((size_t)MAXB * k * sp <= sizeof x / sizeof *x);
  const int batches[] = {1, 3, MAXB};
  for (int t = 0; t < 3; t++) {
    fill_uniform(x, (size_t)batches[t] * k * sp, 30 + (uint64_t)t, -scale, scale);
    check_rows(&s, batches[t], k, sp, x);
  }
  close_softmax(&s);
}

Test(softmax, rows) { check_forward("sm_rows", "[10]", 10, 1, 4); }
Test(softmax, one_class) { check_forward("sm_one", "[1]", 1, 1, 4); }
Test(softmax, channels_per_position) { check_forward("sm_chw", "[4, 3, 5]", 4, 15, 3); }
Test(softmax, rank2_over_first_axis) { check_forward("sm_r2", "[3, 7]", 3, 7, 3); }

/* exp(1000) overflows even a double: only the shifted form stays finite. */
Test(softmax, large_logits) {
  Softmax s;
  open_softmax(&s, "sm_big", "[5]");
  float x[3 * 5] = {1000, 999, 0, -1000, 998,      /* ordinary spread, huge values */
                    -1000, -1000, -1000, -1000, -999,  /* all tiny */
                    1000, 1000, 1000, 1000, 1000}; /* a flat row */
  float y[15];
  check_rows(&s, 3, 5, 1, x);
  cr_assert_eq(s.forward(s.m, 3, x, y), 0);
  for (int i = 0; i < 15; i++)
    cr_expect(isfinite(y[i]), "y[%d] = %g", i, y[i]);
  cr_expect(fabs(y[0] - 0.66524096) < 1e-6, "y[0] = %.9g", y[0]);
  cr_expect(y[3] == 0, "exp(-2000) underflows to 0, got %g", y[3]);
  cr_expect(fabs(y[10] - 0.2f) < 1e-7, "flat row: %g", y[10]);
  close_softmax(&s);
}

/* ---- gradients ------------------------------------------------------------------ */

static void check_grad(const char *name, const char *shape, size_t per_sample) {
  char model[256];
  snprintf(model, sizeof model,
           "model %s\ninput x: f32%s\ntarget t: f32%s\np = softmax(x)\noutput p\n"
           "loss mse(p, t)\n",
           name, shape, shape);
  Compiled cm;
  compile_model(&cm, name, model, "--dtype f64 --input-grad --batch 4", MODEL_O1);
  const int n = 3;
  size_t len = (size_t)n * per_sample;
  double *x = malloc(len * sizeof *x), *t = malloc(len * sizeof *t);
  fill_uniform_d(x, len, 11, -2, 2);
  /* Targets away from the probabilities keep the gradients well above the
   * finite difference's rounding noise. */
  fill_uniform_d(t, len, 12, 1, 2);
  GradReport r = grad_check(&cm, n, x, len, t, 64);
  cr_expect(r.checked == (int)len, "%s: %d of %zu inputs checked", name, r.checked, len);
  cr_expect(r.worst < 1e-6, "%s: worst relative error %.3g at %s", name, r.worst, r.where);
  free(x);
  free(t);
  close_model(&cm);
}

Test(softmax_grad, rows) { check_grad("smg_rows", "[6]", 6); }
Test(softmax_grad, channels_per_position) { check_grad("smg_chw", "[3, 2, 2]", 12); }

Test(softmax_grad, after_dense) {
  Compiled cm;
  compile_model(&cm, "smg_fc",
                "model smg_fc\ninput x: f32[5]\ntarget t: f32[4]\n"
                "p = dense(x, 4) |> softmax\noutput p\nloss mse(p, t)\n",
                "--dtype f64 --input-grad --batch 4", MODEL_O1);
  double x[15], t[12];
  fill_uniform_d(x, 15, 21, -1, 1);
  fill_uniform_d(t, 12, 22, 1, 2);
  GradReport r = grad_check(&cm, 3, x, 15, t, 64);
  cr_expect(r.tensors == 2, "weight and bias gradients: %d", r.tensors);
  cr_expect(r.worst < 1e-6, "worst relative error %.3g at %s", r.worst, r.where);
  close_model(&cm);
}
