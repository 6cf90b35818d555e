/*
 * test_op_batchnorm.c: batchnorm in training (batch statistics, running
 * statistics update, gradients) and inference (running statistics, fused
 * into the preceding layer or not), against double-precision references.
 * Channel sums run in 32 partial-sum lanes: shapes cover positions per
 * channel below 32 (tail only), a multiple of 32 (no tail) and both.  The
 * relu gradient fused into the backward kernel (--fuse ... prologue) must
 * give the bits the separate relu_dx kernel gives, for any thread count.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>

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
  compile_model(&cm, name, model, opts, MODEL_O1);
  GradReport r = grad_check_random(&cm, 3, x_per, t_per, 11, -1, 1);
  cr_expect(r.worst < 1e-6, "%s: worst %.3g at %s", name, r.worst, r.where);
  cr_expect(r.tensors >= 2);
  close_model(&cm);
}

/* 7 * 6 = 42 positions per channel: 32 in the lanes' main loop, 10 in the tail. */
static const char *model_conv_bn_42 =
    "model bnl\ninput x: f32[2, 7, 6]\ntarget t: f32[3, 7, 6]\n"
    "out = conv2d(x, 3, kernel=3, pad=1) |> batchnorm(eps=0.01) |> relu\n"
    "output out\nloss mse(out, t)\n";

#define PROLOGUE "--fuse=bn_fold,epilogue,elementwise,prologue"

Test(batchnorm, gradients_after_conv) { grad_case("bnc", model_conv_bn, 60, 80, ""); }
Test(batchnorm, gradients_after_dense) { grad_case("bnd", model_dense_bn, 6, 5, ""); }
Test(batchnorm, gradients_after_conv_lanes_and_tail) {
  grad_case("bnl", model_conv_bn_42, 84, 126, "");
}
/* relu_dx computed inside the batchnorm backward kernel (prologue fusion). */
Test(batchnorm, gradients_with_fused_relu_gradient) {
  grad_case("bnc", model_conv_bn, 60, 80, PROLOGUE);
}
Test(batchnorm, gradients_with_fused_relu_gradient_lanes_and_tail) {
  grad_case("bnl", model_conv_bn_42, 84, 126, PROLOGUE);
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
                opts, MODEL_O1);
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

/* One training step's forward on a batch of n: the loss mse(y, t) with y
 * the batch-normalized x (gamma 1, beta 0), and running_mean = 0.9 * 0 +
 * 0.1 * mean, running_var = 0.9 * 1 + 0.1 * unbiased variance, all against
 * double-precision sums.  x is (C, S) per sample: S positions per channel. */
static void batch_statistics_case(const char *input, int c, int s, int n) {
  char model[256];
  snprintf(model, sizeof model,
           "model bnr\ninput x: f32[%s]\ntarget t: f32[%s]\n"
           "out = batchnorm(x)\noutput out\nloss mse(out, t)\n",
           input, input);
  Compiled cm;
  compile_model(&cm, "bnr", model, "--batch 4 --dtype f64", MODEL_O1);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  int (*gradients)(void *, int, const double *, const double *, double *) =
      (int (*)(void *, int, const double *, const double *, double *))api(&cm, "gradients");
  void *m = create(1);
  size_t len = (size_t)n * c * s;
  double *x = malloc(sizeof(double) * len), *t = malloc(sizeof(double) * len), loss;
  fill_uniform_d(x, len, 7, -2, 3);
  fill_uniform_d(t, len, 8, -1, 1);
  cr_assert_eq(gradients(m, n, x, t, &loss), 0);
  double *rm = tensor_by_name(&cm, m, "tensor", "bn1.running_mean", NULL);
  double *rv = tensor_by_name(&cm, m, "tensor", "bn1.running_var", NULL);
  cr_assert(rm && rv);
  double want_loss = 0, count = (double)n * s;
  for (int k = 0; k < c; k++) {
    double sum = 0, sq = 0;
    for (int b = 0; b < n; b++)
      for (int j = 0; j < s; j++)
        sum += x[((long)b * c + k) * s + j];
    double mean = sum / count;
    for (int b = 0; b < n; b++)
      for (int j = 0; j < s; j++)
        sq += (x[((long)b * c + k) * s + j] - mean) * (x[((long)b * c + k) * s + j] - mean);
    double unbiased = count > 1 ? sq / (count - 1) : sq / count;
    cr_expect(fabs(rm[k] - 0.1 * mean) < 1e-12, "%s n=%d: running_mean[%d] %.17g vs %.17g",
              input, n, k, rm[k], 0.1 * mean);
    cr_expect(fabs(rv[k] - (0.9 + 0.1 * unbiased)) < 1e-12, "%s n=%d: running_var[%d]", input,
              n, k);
    for (int b = 0; b < n; b++)
      for (int j = 0; j < s; j++) {
        long o = ((long)b * c + k) * s + j;
        double d = (x[o] - mean) / sqrt(sq / count + 1e-5) - t[o];
        want_loss += d * d;
      }
  }
  want_loss /= (double)len;
  cr_expect(fabs(loss - want_loss) < 1e-12 * want_loss, "%s n=%d: loss %.17g vs %.17g", input,
            n, loss, want_loss);
  free(x);
  free(t);
  ((void (*)(void *))api(&cm, "destroy"))(m);
  close_model(&cm);
}

/* Positions per channel: 9 (tail only), 32 (lanes only), 72 (both), 1. */
Test(batchnorm, batch_statistics_and_running_statistics) {
  static const struct {
    const char *input;
    int c, s;
  } shapes[] = {{"2, 3, 3", 2, 9}, {"3, 8, 4", 3, 32}, {"2, 9, 8", 2, 72}, {"5", 5, 1}};
  static const int batches[] = {1, 3, 4};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    for (size_t j = 0; j < sizeof batches / sizeof batches[0]; j++)
      batch_statistics_case(shapes[i].input, shapes[i].c, shapes[i].s, batches[j]);
}

/* Loss, input gradient and every parameter gradient of one step of
 * model_conv_bn_42 on n samples, into out; returns the count.  threads > 0
 * sets the OpenMP team size first. */
static size_t step_bits(const Compiled *cm, int threads, int n, const float *x, const float *t,
                        float *out) {
  if (threads > 0)
    ((void (*)(int))dlsym(cm->lib, "omp_set_num_threads"))(threads);
  void *m = ((void *(*)(uint64_t))api(cm, "create"))(5);
  int (*gradients)(void *, int, const float *, const float *, float *, float *) =
      (int (*)(void *, int, const float *, const float *, float *, float *))api(cm, "gradients");
  cr_assert_eq(gradients(m, n, x, t, out, out + 1), 0);
  size_t len = 1 + (size_t)n * 84;
  for (int k = 0; k < ((int (*)(void))api(cm, "tensor_count"))(); k++) {
    size_t numel;
    float *g = ((float *(*)(void *, int, size_t *))api(cm, "grad"))(m, k, &numel);
    if (g) {
      memcpy(out + len, g, numel * sizeof *g);
      len += numel;
    }
  }
  ((void (*)(void *))api(cm, "destroy"))(m);
  return len;
}

/* The masked gradient the fused kernel stores is the one relu_dx stores,
 * and the sums that follow are the same: identical bits, fused or not. */
Test(batchnorm, fused_relu_gradient_same_bits_as_relu_dx) {
  Compiled plain, fused;
  compile_model(&plain, "bnl", model_conv_bn_42, "--batch 5 --input-grad", "-O2");
  compile_model(&fused, "bnl", model_conv_bn_42, "--batch 5 --input-grad " PROLOGUE, "-O2");
  char *text = read_text(fused.c_path);
  cr_assert(text);
  cr_expect(!strstr(text, "_relu_dx("), "the prologue build still has a relu_dx kernel");
  free(text);
  static float x[5 * 84], t[5 * 126], a[4096], b[4096];
  fill_uniform(x, 5 * 84, 31, -1, 1);
  fill_uniform(t, 5 * 126, 32, -1, 1);
  for (int n = 1; n <= 5; n += 2) {
    size_t len = step_bits(&plain, 0, n, x, t, a);
    cr_assert_eq(step_bits(&fused, 0, n, x, t, b), len);
    cr_expect(memcmp(a, b, len * sizeof *a) == 0, "n=%d: the fused relu gradient changes bits",
              n);
  }
  close_model(&plain);
  close_model(&fused);
}

/* A thread owns a channel and its sums: 1, 2 and 3 threads give the same
 * bits, forward and backward. */
Test(batchnorm, threads_same_bits) {
  Compiled cm;
  compile_model(&cm, "bnl", model_conv_bn_42, "--batch 5 --input-grad " PROLOGUE,
                "-O2 -fopenmp");
  cr_assert(dlsym(cm.lib, "omp_set_num_threads"), "not linked with OpenMP");
  static float x[5 * 84], t[5 * 126], a[4096], b[4096];
  fill_uniform(x, 5 * 84, 41, -1, 1);
  fill_uniform(t, 5 * 126, 42, -1, 1);
  size_t len = step_bits(&cm, 1, 5, x, t, a);
  for (int threads = 2; threads <= 3; threads++) {
    cr_assert_eq(step_bits(&cm, threads, 5, x, t, b), len);
    cr_expect(memcmp(a, b, len * sizeof *a) == 0, "%d threads differ from 1", threads);
  }
  close_model(&cm);
}

/* Without an input gradient the backward is the dgamma/dbeta kernel alone:
 * it must give the bits of the dx kernel's sums (that one is gradient
 * checked above). */
Test(batchnorm, parameter_gradients_without_input_gradient) {
  const char *model = "model bnp\ninput x: f32[3, 6, 7]\ntarget t: f32[3, 6, 7]\n"
                      "out = batchnorm(x) |> relu\noutput out\nloss mse(out, t)\n";
  Compiled with_dx, without;
  compile_model(&with_dx, "bnp", model, "--batch 4 --input-grad " PROLOGUE, "-O2");
  compile_model(&without, "bnp", model, "--batch 4 " PROLOGUE, "-O2");
  static float x[4 * 126], t[4 * 126], dx[4 * 126];
  fill_uniform(x, 4 * 126, 51, -1, 1);
  fill_uniform(t, 4 * 126, 52, -1, 1);
  void *a = ((void *(*)(uint64_t))api(&with_dx, "create"))(3);
  void *b = ((void *(*)(uint64_t))api(&without, "create"))(3);
  float la, lb;
  cr_assert_eq(((int (*)(void *, int, const float *, const float *, float *, float *))api(
                   &with_dx, "gradients"))(a, 4, x, t, &la, dx),
               0);
  cr_assert_eq(((int (*)(void *, int, const float *, const float *, float *))api(
                   &without, "gradients"))(b, 4, x, t, &lb),
               0);
  cr_expect(la == lb);
  const char *names[] = {"bn1.weight", "bn1.bias"};
  for (int i = 0; i < 2; i++) {
    size_t na, nb;
    float *ga = tensor_by_name(&with_dx, a, "grad", names[i], &na);
    float *gb = tensor_by_name(&without, b, "grad", names[i], &nb);
    cr_assert(ga && gb && na == 3 && nb == 3);
    cr_expect(memcmp(ga, gb, 3 * sizeof *ga) == 0, "%s differs", names[i]);
  }
  ((void (*)(void *))api(&with_dx, "destroy"))(a);
  ((void (*)(void *))api(&without, "destroy"))(b);
  close_model(&with_dx);
  close_model(&without);
}

/* ---- stats=running: the running statistics in training too ---- */

static const char *model_conv_bn_running =
    "model bns\ninput x: f32[2, 7, 6]\ntarget t: f32[3, 7, 6]\n"
    "out = conv2d(x, 3, kernel=3, pad=1) |> batchnorm(eps=0.01, stats=running) |> relu\n"
    "output out\nloss mse(out, t)\n";

static const char *model_dense_bn_running_frozen =
    "model bnw\ninput x: f32[6]\ntarget t: f32[5]\n"
    "out = dense(x, 5) |> batchnorm(stats=running, freeze=weight) |> tanh\n"
    "output out\nloss mse(out, t)\n";

/* gradcheck sets the running statistics away from (0, 1) (gradcheck.c). */
Test(batchnorm, running_statistics_gradients) {
  grad_check_bn_affine = true;
  grad_case("bns", model_conv_bn_running, 84, 126, "");
  grad_case("bns", model_conv_bn_running, 84, 126, "--fuse=none");
  grad_case("bnw", model_dense_bn_running_frozen, 6, 5, "");   /* bn1.weight: no grad() */
  grad_check_bn_affine = false;
}

/* With gamma frozen nothing in the backward pass reads the conv's output:
 * the normalization and the relu run as the conv's epilogue in training,
 * which then stores one tensor; batch 1 works (batch statistics of a single
 * value per channel would make every gradient 0). */
Test(batchnorm, running_statistics_fuse_into_the_conv_when_gamma_is_frozen) {
  const char *model = "model bnf\ninput x: f32[2, 7, 6]\ntarget t: f32[3, 7, 6]\n"
                      "out = conv2d(x, 3, kernel=3, pad=1) |> batchnorm(stats=running, "
                      "freeze=weight) |> relu\noutput out\nloss mse(out, t)\n";
  Compiled cm;
  compile_model(&cm, "bnf", model, "--dtype f64 --input-grad --batch 1", MODEL_O1);
  char *text = read_text(cm.c_path);
  cr_assert(text);
  cr_expect(!strstr(text, "_batchnorm_infer(") && !strstr(text, "_relu("),
            "the normalization or the relu is a kernel of its own");
  free(text);
  grad_check_bn_affine = true;
  GradReport r = grad_check_random(&cm, 1, 84, 126, 17, -1, 1);
  grad_check_bn_affine = false;
  cr_expect(r.worst < 1e-6, "worst %.3g at %s", r.worst, r.where);
  cr_expect(r.tensors == 3, "%d tensors with a gradient", r.tensors);  /* conv w, b; bn beta */
  close_model(&cm);
}

/* A training step leaves the running statistics and the counter as they
 * were (PyTorch's eval() of the layer), while a batch-statistics layer
 * counts. */
Test(batchnorm, running_statistics_stay_in_training) {
  const char *model = "model bnk\ninput x: f32[3, 4, 4]\ntarget t: f32[3, 4, 4]\n"
                      "h = batchnorm(x, stats=running) |> relu\n"
                      "out = batchnorm(h, name=\"bn_batch\")\noutput out\nloss mse(out, t)\n";
  Compiled cm;
  compile_model(&cm, "bnk", model, "--batch 2", MODEL_O1);
  void *m = ((void *(*)(uint64_t))api(&cm, "create"))(3);
  static float x[2 * 48], t[2 * 48];
  fill_uniform(x, 2 * 48, 61, -1, 1);
  fill_uniform(t, 2 * 48, 62, -1, 1);
  float loss;
  int (*step)(void *, int, const float *, const float *, float *) =
      (int (*)(void *, int, const float *, const float *, float *))api(&cm, "train_step");
  cr_assert_eq(step(m, 2, x, t, &loss), 0);
  cr_assert_eq(step(m, 2, x, t, &loss), 0);
  size_t n;
  float *rm = tensor_by_name(&cm, m, "tensor", "bn1.running_mean", &n);
  float *rv = tensor_by_name(&cm, m, "tensor", "bn1.running_var", &n);
  float *bm = tensor_by_name(&cm, m, "tensor", "bn_batch.running_mean", &n);
  cr_assert(rm && rv && bm && n == 3);
  for (int c = 0; c < 3; c++) {
    cr_expect(rm[c] == 0 && rv[c] == 1, "bn1's running statistics moved");
    cr_expect(bm[c] != 0, "bn_batch's running mean did not move");
  }
  char *text = read_text(cm.c_path);
  cr_assert(text);
  cr_expect(strstr(text, "m->counters[1] += ") && !strstr(text, "m->counters[0] += "),
            "only bn_batch's num_batches_tracked counts");
  free(text);
  ((void (*)(void *))api(&cm, "destroy"))(m);
  close_model(&cm);
}
