/*
 * test_op_layernorm.c: the layernorm op end to end.
 *
 * Forward: layernorm over (C, H, W) and over a vector, with random weight
 * and bias written through <m>_tensor and inputs far from zero mean, at
 * batch 1, 3 and the maximum, against a double-precision reference written
 * here; the inference forward and the training graph's kernels are the same.
 * Gradients: f64 finite differences through grad_check after dense and after
 * conv, with a random weight (init=normal) so a lost weight term shows.
 * Determinism: gradients with 1, 3 and 7 OpenMP threads are bit-identical.
 * Errors: exact diagnostics and exit code 1 from the nncc binary.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

#define MAX_BATCH 5

/* y = (x - mean) / sqrt(var + eps) * w + b per sample of m elements. */
static void reference(double *y, const float *x, const float *w, const float *b, int n, int m,
                      double eps) {
  for (int s = 0; s < n; s++) {
    const float *xr = x + (size_t)s * (size_t)m;
    double mean = 0, var = 0;
    for (int i = 0; i < m; i++)
      mean += xr[i];
    mean /= m;
    for (int i = 0; i < m; i++)
      var += (xr[i] - mean) * (xr[i] - mean);
    var /= m;
    for (int i = 0; i < m; i++)
      y[(size_t)s * (size_t)m + i] = (xr[i] - mean) / sqrt(var + eps) * w[i] + b[i];
  }
}

static float *tensor(const Compiled *cm, void *m, const char *want, size_t *numel) {
  float *t = tensor_by_name(cm, m, "tensor", want, numel);
  cr_assert(t, "no tensor %s", want);
  return t;
}

static void forward_case(const char *name, const char *shape, int m, const char *opts) {
  char model[512];
  snprintf(model, sizeof model,
           "model %s\ninput x: f32[%s]\nout = layernorm(x, eps=0.01)\noutput out\n", name,
           shape);
  Compiled cm;
  compile_model(&cm, name, model, opts, MODEL_O1);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  int (*forward)(void *, int, const float *, float *) =
      (int (*)(void *, int, const float *, float *))api(&cm, "forward");
  void *mod = create(3);
  size_t k;
  float *w = tensor(&cm, mod, "ln1.weight", &k);
  cr_assert_eq(k, (size_t)m);
  float *b = tensor(&cm, mod, "ln1.bias", &k);
  cr_assert_eq(k, (size_t)m);
  fill_uniform(w, (size_t)m, 1, 0.5f, 2);
  fill_uniform(b, (size_t)m, 2, -1, 1);
  size_t len = (size_t)MAX_BATCH * (size_t)m;
  float *x = malloc(sizeof(float) * len), *y = malloc(sizeof(float) * len);
  double *want = malloc(sizeof(double) * len);
  fill_uniform(x, len, 4, 3, 7);
  const int batches[] = {1, 3, MAX_BATCH};
  for (int i = 0; i < 3; i++) {
    int n = batches[i];
    reference(want, x, w, b, n, m, 0.01);
    cr_assert_eq(forward(mod, n, x, y), 0);
    double err = max_rel_err(y, want, (size_t)n * (size_t)m);
    cr_expect(err < 1e-5, "%s batch %d: error %g", name, n, err);
  }
  destroy(mod);
  free(x);
  free(y);
  free(want);
  close_model(&cm);
}

Test(layernorm, forward_chw) { forward_case("ln_chw", "3, 4, 5", 60, "--batch 5"); }
Test(layernorm, forward_vector) { forward_case("ln_vec", "7", 7, "--batch 5"); }
Test(layernorm, forward_f32_unfused_unplanned) {
  forward_case("ln_np", "2, 3, 3", 18, "--batch 5 --fuse=none --no-plan");
}

/* ---- gradients --------------------------------------------------------------- */

static void grad_case(const char *name, const char *input, const char *body, size_t x_per,
                      size_t t_per, const char *target) {
  char model[1024];
  snprintf(model, sizeof model,
           "model %s\ninput x: f32[%s]\ntarget t: f32[%s]\n%soutput out\nloss mse(out, t)\n",
           name, input, target, body);
  Compiled cm;
  compile_model(&cm, name, model, "--dtype f64 --input-grad --batch 4", MODEL_O1);
  GradReport r = grad_check_random(&cm, 3, x_per, t_per, 31, -1, 2);
  cr_expect(r.worst < 1e-6, "%s: worst %.3g at %s", name, r.worst, r.where);
  cr_expect(r.tensors >= 4, "%s: %d tensors", name, r.tensors);
  close_model(&cm);
}

Test(layernorm, gradients_after_dense) {
  grad_case("ln_gd", "6",
            "out = dense(x, 5) |> layernorm(init=normal, init_scale=0.8) |> tanh\n", 6, 5,
            "5");
}

Test(layernorm, gradients_after_conv) {
  grad_case("ln_gc", "2, 4, 4",
            "out = conv2d(x, 3, kernel=3, pad=1) |> layernorm(eps=0.001, init=normal, "
            "init_scale=0.8)\n",
            32, 48, "3, 4, 4");
}

/* Default weight 1 and bias 0, followed by a dense layer. */
Test(layernorm, gradients_default_init) {
  grad_case("ln_gi", "2, 4, 4", "out = conv2d(x, 2, kernel=3) |> layernorm |> dense(3)\n", 32,
            3, "3");
}

/* Every parameter gradient and the input gradient of one gradients() call
 * with `threads` OpenMP threads, in out; returns the count. */
static size_t gradients_at(const Compiled *cm, int threads, const double *x, const double *t,
                           double *out, size_t x_len) {
  ((void (*)(int))dlsym(cm->lib, "omp_set_num_threads"))(threads);
  void *m = ((void *(*)(uint64_t))api(cm, "create"))(5);
  double loss;
  int (*gradients)(void *, int, const double *, const double *, double *, double *) =
      (int (*)(void *, int, const double *, const double *, double *, double *))api(
          cm, "gradients");
  cr_assert(gradients(m, MAX_BATCH, x, t, &loss, out) == 0);
  size_t len = x_len;
  int count = ((int (*)(void))api(cm, "tensor_count"))();
  for (int k = 0; k < count; k++) {
    size_t numel;
    double *g = ((double *(*)(void *, int, size_t *))api(cm, "grad"))(m, k, &numel);
    if (g) {
      memcpy(out + len, g, numel * sizeof *g);
      len += numel;
    }
  }
  ((void (*)(void *))api(cm, "destroy"))(m);
  return len;
}

/* 1, 3 and 7 threads give bit-identical gradients (dweight and dbias sum
 * over the batch inside one thread per element). */
Test(layernorm, gradients_thread_count_invariant) {
  Compiled cm;
  compile_model(&cm, "ln_thr",
                "model ln_thr\ninput x: f32[3, 6, 6]\ntarget t: f32[4]\n"
                "a = conv2d(x, 4, kernel=3, pad=1) |> layernorm\n"
                "out = concat(a, x) |> layernorm |> dense(4)\noutput out\n"
                "loss mse(out, t)\n",
                "--dtype f64 --batch 5 --input-grad", MODEL_O1 " -fopenmp");
  cr_assert(dlsym(cm.lib, "omp_set_num_threads"), "not linked with OpenMP");
  enum { X = MAX_BATCH * 108 };
  static double x[X], t[MAX_BATCH * 4], ref[8192], got[8192];
  fill_uniform_d(x, X, 40, -1, 1);
  fill_uniform_d(t, MAX_BATCH * 4, 41, -1, 1);
  size_t len = gradients_at(&cm, 1, x, t, ref, X);
  for (int threads = 3; threads <= 7; threads += 4) {
    cr_assert(gradients_at(&cm, threads, x, t, got, X) == len);
    cr_expect(memcmp(ref, got, len * sizeof *got) == 0, "%d threads differ from 1", threads);
  }
  /* No close_model: dlclose would unmap the OpenMP runtime this library
   * pulled in while its idle worker threads still spin in it (a SIGSEGV in
   * about half the runs).  The test process ends here anyway. */
}

/* ---- errors ----------------------------------------------------------------------- */

static void expect_error(const char *body, const char *want) {
  char dir[512], path[600], out[4096], line[1024];
  scratch_dir(dir, sizeof dir, "ln_err");
  snprintf(path, sizeof path, "%s/bad.nn", dir);
  write_file(path, body);
  int st = run_capture(out, sizeof out, "%s %s -o %s/bad.c", NNCC_BIN, path, dir);
  cr_expect_eq(st, 1, "exit status %d, output:\n%s", st, out);
  snprintf(line, sizeof line, "%s:%s\n", path, want);
  cr_expect(strstr(out, line), "want\n%sgot\n%s", line, out);
}

#define HEAD "model bad\ninput x: f32[2, 4, 4]\n"

Test(layernorm_errors, eps_zero) {
  expect_error(HEAD "y = layernorm(x, eps=0)\noutput y\n",
               "3:22: error: layernorm: eps must be positive, got 0");
}

Test(layernorm_errors, eps_negative_positional) {
  expect_error(HEAD "y = layernorm(x, 0.5 - 1)\noutput y\n",
               "3:22: error: layernorm: eps must be positive, got -0.5");
}

Test(layernorm_errors, too_many_arguments) {
  expect_error(HEAD "y = layernorm(x, 1e-5, 2)\noutput y\n",
               "3:24: error: too many arguments to layernorm (it takes 1 after its tensor "
               "input)");
}

Test(layernorm_errors, two_tensors) {
  expect_error(HEAD "y = layernorm(x, x)\noutput y\n",
               "3:5: error: layernorm takes 1 tensor input, got 2");
}
