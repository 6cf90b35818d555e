/*
 * test_op_batchnorm.c: batchnorm in training (batch statistics, running
 * statistics update, gradients) and inference (running statistics, fused
 * into the preceding layer or not), against double-precision references.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

static const char *model_conv_bn =
    "model bnc\ninput x: f32[3, 5, 4]\ntarget t: f32[4, 5, 4]\n"
    "out = conv2d(x, 4, kernel=3, pad=1, bias=false) |> batchnorm |> relu\n"
    "output out\nloss mse(out, t)\n";

static const char *model_dense_bn =
    "model bnd\ninput x: f32[6]\ntarget t: f32[5]\n"
    "out = dense(x, 5) |> batchnorm(momentum=0.2, eps=0.001)\noutput out\nloss mse(out, t)\n";

static void grad_case(const char *name, const char *model, size_t x_per, size_t t_per,
                      const char *fuse) {
  Compiled cm;
  char opts[160];
  snprintf(opts, sizeof opts, "--dtype f64 --input-grad --batch 4 %s", fuse);
  compile_model(&cm, name, model, opts, "-O1");
  GradReport r = grad_check_random(&cm, 3, x_per, t_per, 11, -1, 1);
  cr_expect(r.worst < 1e-6, "%s: worst %.3g at %s", name, r.worst, r.where);
  cr_expect(r.tensors >= 2);
  close_model(&cm);
}

Test(batchnorm, gradients_after_conv) { grad_case("bnc", model_conv_bn, 60, 80, ""); }
Test(batchnorm, gradients_after_dense) { grad_case("bnd", model_dense_bn, 6, 5, ""); }
/* relu_dx recomputed inside the batchnorm backward kernels (--fuse prologue). */
Test(batchnorm, gradients_with_fused_relu_gradient) {
  grad_case("bnc", model_conv_bn, 60, 80, "--fuse=bn_fold,epilogue,elementwise,prologue");
}

/* Reference: y = (x - rm) / sqrt(rv + eps) * gamma + beta per channel c of
 * (N, C, S). */
static void bn_ref(double *y, const double *x, int n, int c, int s, const float *g,
                   const float *b, const float *rm, const float *rv, double eps) {
  for (int i = 0; i < n; i++)
    for (int k = 0; k < c; k++)
      for (int j = 0; j < s; j++) {
        long o = ((long)i * c + k) * s + j;
        y[o] = (x[o] - rm[k]) / sqrt(rv[k] + eps) * g[k] + b[k];
      }
}

static float *tensor(Compiled *cm, void *m, const char *want, size_t *numel) {
  int (*count)(void) = (int (*)(void))api(cm, "tensor_count");
  const char *(*name)(int) = (const char *(*)(int))api(cm, "tensor_name");
  float *(*get)(void *, int, size_t *) = (float *(*)(void *, int, size_t *))api(cm, "tensor");
  for (int i = 0; i < count(); i++)
    if (!strcmp(name(i), want))
      return get(m, i, numel);
  cr_assert_fail("no tensor %s", want);
  return NULL;
}

static void infer_case(const char *opts) {
  Compiled cm;
  compile_model(&cm, "bni",
                "model bni\ninput x: f32[3, 4, 4]\n"
                "out = dense(flatten(x), 6) |> batchnorm(eps=0.01)\noutput out\n",
                opts, "-O1");
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  int (*forward)(void *, int, const float *, float *) =
      (int (*)(void *, int, const float *, float *))api(&cm, "forward");
  void *m = create(5);
  size_t k;
  float *g = tensor(&cm, m, "bn1.weight", &k), *b = tensor(&cm, m, "bn1.bias", &k);
  float *rm = tensor(&cm, m, "bn1.running_mean", &k), *rv = tensor(&cm, m, "bn1.running_var", &k);
  cr_assert_eq(k, 6);
  fill_uniform(g, 6, 1, 0.5f, 2);
  fill_uniform(b, 6, 2, -1, 1);
  fill_uniform(rm, 6, 3, -0.5f, 0.5f);
  fill_uniform(rv, 6, 4, 0.2f, 3);
  float *w = tensor(&cm, m, "fc1.weight", &k), *bias = tensor(&cm, m, "fc1.bias", &k);
  fill_uniform(bias, 6, 9, -1, 1);
  float x[3 * 48], y[3 * 6];
  double h[3 * 6], want[3 * 6];
  fill_uniform(x, 3 * 48, 6, -1, 1);
  cr_assert_eq(forward(m, 3, x, y), 0);
  for (int i = 0; i < 3; i++)
    for (int o = 0; o < 6; o++) {
      double acc = bias[o];
      for (int j = 0; j < 48; j++)
        acc += (double)w[o * 48 + j] * x[i * 48 + j];
      h[i * 6 + o] = acc;
    }
  bn_ref(want, h, 3, 6, 1, g, b, rm, rv, 0.01);
  cr_expect(max_rel_err(y, want, 18) < 1e-5, "%s: error %g", opts, max_rel_err(y, want, 18));
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  destroy(m);
  close_model(&cm);
}

Test(batchnorm, inference_uses_running_statistics_fused) { infer_case("--batch 4"); }
Test(batchnorm, inference_uses_running_statistics_unfused) { infer_case("--batch 4 --fuse=none"); }

/* After one training step's forward, running_mean = 0.9 * 0 + 0.1 * mean and
 * running_var = 0.9 * 1 + 0.1 * unbiased variance of the batch. */
Test(batchnorm, running_statistics_update) {
  Compiled cm;
  compile_model(&cm, "bnr",
                "model bnr\ninput x: f32[2, 3, 3]\ntarget t: f32[2, 3, 3]\n"
                "out = batchnorm(x)\noutput out\nloss mse(out, t)\n",
                "--batch 4 --dtype f64", "-O1");
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  int (*gradients)(void *, int, const double *, const double *, double *) =
      (int (*)(void *, int, const double *, const double *, double *))api(&cm, "gradients");
  double *(*get)(void *, int, size_t *) = (double *(*)(void *, int, size_t *))api(&cm, "tensor");
  void *m = create(1);
  double x[4 * 18], t[4 * 18], loss;
  fill_uniform_d(x, 4 * 18, 7, -2, 3);
  fill_uniform_d(t, 4 * 18, 8, -1, 1);
  cr_assert_eq(gradients(m, 4, x, t, &loss), 0);
  size_t k;
  double *rm = get(m, 2, &k), *rv = get(m, 3, &k);
  for (int c = 0; c < 2; c++) {
    double sum = 0, sq = 0;
    for (int b = 0; b < 4; b++)
      for (int j = 0; j < 9; j++)
        sum += x[b * 18 + c * 9 + j];
    double mean = sum / 36;
    for (int b = 0; b < 4; b++)
      for (int j = 0; j < 9; j++)
        sq += (x[b * 18 + c * 9 + j] - mean) * (x[b * 18 + c * 9 + j] - mean);
    cr_expect(fabs(rm[c] - 0.1 * mean) < 1e-12, "running_mean[%d] %g vs %g", c, rm[c], 0.1 * mean);
    cr_expect(fabs(rv[c] - (0.9 + 0.1 * sq / 35)) < 1e-12, "running_var[%d]", c);
  }
  ((void (*)(void *))api(&cm, "destroy"))(m);
  close_model(&cm);
}
