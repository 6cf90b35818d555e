/*
 * test_op_dense.c: the dense op end to end.
 *
 * The kernels compute in register tiles (runtime/nn_gemm.c): forward in
 * 4 x 2 nt tiles with 16 partial sums per element, dx and dw in 4 x 32 nn
 * tiles plus a narrower edge tile.  So the sizes here straddle those tiles:
 * inputs K of 1, 16, 32, 33, 37 and 400 (less than, exactly, and more than
 * one vector of partial sums or one nn tile), units U of 1, 5, 8, 33, 35,
 * 120, batches 1, 3 and MAX_BATCH = 9 (a partial tile of samples).
 *
 * Forward: each configuration is emitted with the real nncc, compiled and
 * run; its output is compared with a naive double-precision product written
 * here, reading the model's own weights through <m>_tensor (bias and
 * batchnorm statistics set to random values first).  Fused epilogues: relu,
 * a residual add (a batched epilogue input) and an inference batchnorm (a
 * per-unit one).  Gradients: f64 finite differences through grad_check.
 * Determinism: outputs and gradients bit-identical with 1, 2 and 3 OpenMP
 * threads, and a sample's output the same whatever the batch around it.
 * Report: the backward kernels count their FLOPs.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

#define MAX_BATCH 9

typedef enum { PLAIN, RELU, RESIDUAL, BATCHNORM } Post;

typedef struct Dense {
  const char *name;
  const char *shape;   /* per-sample input shape; K is its product */
  int k, u;
  bool bias;
  Post post;
} Dense;

/* A one-dense model with an mse loss.  RESIDUAL needs K == U. */
static void model_text(char *buf, size_t cap, const Dense *v) {
  static const char *const post[] = {
      [PLAIN] = "", [RELU] = " |> relu", [RESIDUAL] = " + x |> relu",
      [BATCHNORM] = " |> batchnorm |> relu"};
  snprintf(buf, cap,
           "model %s\ninput x: f32[%s]\ntarget t: f32[%d]\n"
           "out = dense(x, %d, bias=%s)%s\noutput out\nloss mse(out, t)\n",
           v->name, v->shape, v->u, v->u, v->bias ? "true" : "false", post[v->post]);
}

typedef void *(*create_fn)(uint64_t);
typedef void (*destroy_fn)(void *);
typedef int (*forward_fn)(void *, int, const float *, float *);
typedef int (*tensor_count_fn)(void);


/* Inference batchnorm of unit o: scale and shift of (acc - mean). */
typedef struct Bn {
  const float *gamma, *beta, *mean, *var;
} Bn;

/* y (n, U) in double from x (n, K), w (U, K), b (U) and the epilogue of
 * v->post; mag gets the scale against which f32 rounding of each output is
 * measured: the sum of the magnitudes of its terms, through the epilogue. */
static void reference(double *y, double *mag, const float *x, const float *w, const float *b,
                      const Bn *bn, int n, const Dense *v) {
  for (int s = 0; s < n; s++)
    for (int o = 0; o < v->u; o++) {
      double acc = b ? b[o] : 0, sum_abs = fabs(acc);
      for (int p = 0; p < v->k; p++) {
        double term = (double)w[(size_t)o * v->k + p] * x[(size_t)s * v->k + p];
        acc += term;
        sum_abs += fabs(term);
      }
      if (v->post == RESIDUAL) {
        acc += x[(size_t)s * v->k + o];
        sum_abs += fabs(x[(size_t)s * v->k + o]);
      } else if (v->post == BATCHNORM) {
        double scale = bn->gamma[o] / sqrt((double)bn->var[o] + 1e-5);
        acc = (acc - bn->mean[o]) * scale + bn->beta[o];
        sum_abs = (sum_abs + fabs(bn->mean[o])) * fabs(scale) + fabs(bn->beta[o]);
      }
      size_t at = (size_t)s * v->u + o;
      y[at] = v->post != PLAIN && acc < 0 ? 0 : acc;
      mag[at] = sum_abs;
    }
}

/* Max of |got - want| / max(|want|, magnitude of the terms): a sum in f32
 * is accurate to a few ulps of the sum of |terms|, not of the result, which
 * may cancel to near zero.  A wrong index or a lost term moves the result by
 * the size of a term, far above 1e-5 of this scale. */
static double max_err(const float *got, const double *want, const double *mag, size_t len) {
  double worst = 0;
  for (size_t i = 0; i < len; i++) {
    double denom = fmax(fabs(want[i]), mag[i]);
    double err = isfinite(got[i]) ? fabs(got[i] - want[i]) / fmax(denom, 1e-30) : INFINITY;
    worst = fmax(worst, err);
  }
  return worst;
}

/* Random running statistics and affine parameters for bn1 (they start at
 * the identity), read back for the reference. */
static Bn random_bn(const Compiled *cm, void *m, int units) {
  static const char *const names[] = {"bn1.weight", "bn1.bias", "bn1.running_mean",
                                      "bn1.running_var"};
  static const float lo[] = {0.5f, -0.5f, -0.5f, 0.2f}, hi[] = {1.5f, 0.5f, 0.5f, 2.0f};
  float *p[4];
  for (int i = 0; i < 4; i++) {
    size_t numel = 0;
    p[i] = tensor_by_name(cm, m, "tensor", names[i], &numel);
    cr_assert(p[i] && numel == (size_t)units, "%s", names[i]);
    fill_uniform(p[i], numel, 20 + (uint64_t)i, lo[i], hi[i]);
  }
  return (Bn){p[0], p[1], p[2], p[3]};
}

/* Forward at batch 1, 3 and 9, as far as the build's largest batch `most`
 * (1: the matrix-vector kernel). */
static void check_forward_n(const Dense *v, int most) {
  char text[1024], opts[96];
  model_text(text, sizeof text, v);
  Compiled cm;
  /* --infer --fuse=epilogue keeps the batchnorm as a per-unit epilogue
   * instead of folding it into the weights. */
  snprintf(opts, sizeof opts, "--batch %d%s", most,
           v->post == BATCHNORM ? " --infer --fuse=epilogue" : "");
  compile_model(&cm, v->name, text, opts, "-O2");
  void *m = ((create_fn)api(&cm, "create"))(7);
  cr_assert(m);
  size_t wn = 0, bn = 0;
  float *w = tensor_by_name(&cm, m, "tensor", "fc1.weight", &wn);
  float *b = tensor_by_name(&cm, m, "tensor", "fc1.bias", &bn);
  cr_assert(w && wn == (size_t)v->u * v->k, "%s: weight", v->name);
  cr_assert(v->bias ? b && bn == (size_t)v->u : !b, "%s: bias", v->name);
  if (b)
    fill_uniform(b, bn, 11, -0.5f, 0.5f);
  Bn norm = {0};
  if (v->post == BATCHNORM)
    norm = random_bn(&cm, m, v->u);
  float *x = malloc(MAX_BATCH * (size_t)v->k * sizeof *x);
  float *y = malloc(MAX_BATCH * (size_t)v->u * sizeof *y);
  double *want = malloc(MAX_BATCH * (size_t)v->u * sizeof *want);
  double *mag = malloc(MAX_BATCH * (size_t)v->u * sizeof *mag);
  static const int batches[] = {1, 3, MAX_BATCH};
  for (int t = 0; t < 3 && batches[t] <= most; t++) {
    int n = batches[t];
    fill_uniform(x, (size_t)n * v->k, 100 + (uint64_t)n, -1, 1);
    int st = ((forward_fn)api(&cm, "forward"))(m, n, x, y);
    cr_assert(st == 0, "%s: forward returned %d", v->name, st);
    reference(want, mag, x, w, b, &norm, n, v);
    double err = max_err(y, want, mag, (size_t)n * v->u);
    cr_expect(err < 1e-5, "%s batch %d: max relative error %.3g", v->name, n, err);
  }
  free(x);
  free(y);
  free(want);
  free(mag);
  ((destroy_fn)api(&cm, "destroy"))(m);
  close_model(&cm);
}

static void check_forward(const Dense *v) { check_forward_n(v, MAX_BATCH); }

/* ---- forward ----------------------------------------------------------- */

/* --batch 1: dot products in NN_VL partial sums, K below, at and past them */
Test(dense_forward, batch1_gemv) {
  check_forward_n(&(Dense){"g37", "37", 37, 5, true, RELU}, 1);
  check_forward_n(&(Dense){"g3", "3", 3, 7, false, PLAIN}, 1);
  check_forward_n(&(Dense){"g64", "4, 16", 64, 13, true, BATCHNORM}, 1);
}

Test(dense_forward, k37_u5) { check_forward(&(Dense){"k37", "37", 37, 5, true, PLAIN}); }
Test(dense_forward, k37_u5_no_bias) { check_forward(&(Dense){"k37nb", "37", 37, 5, false, PLAIN}); }
Test(dense_forward, k400_u120_relu) {
  check_forward(&(Dense){"k400", "4, 10, 10", 400, 120, true, RELU});
}
Test(dense_forward, k400_u120_no_bias) {
  check_forward(&(Dense){"k400nb", "4, 10, 10", 400, 120, false, PLAIN});
}
Test(dense_forward, k1_u33) { check_forward(&(Dense){"k1", "1", 1, 33, true, PLAIN}); }
Test(dense_forward, k1_u33_relu_no_bias) {
  check_forward(&(Dense){"k1r", "1", 1, 33, false, RELU});
}
Test(dense_forward, k50_u1) { check_forward(&(Dense){"u1", "5, 10", 50, 1, true, PLAIN}); }
Test(dense_forward, k1_u1_relu) { check_forward(&(Dense){"k1u1", "1", 1, 1, true, RELU}); }
Test(dense_forward, k16_u8_exact_tiles) {
  check_forward(&(Dense){"k16", "16", 16, 8, false, PLAIN});
}
Test(dense_forward, k33_u35_relu) { check_forward(&(Dense){"k33", "33", 33, 35, true, RELU}); }
Test(dense_forward, residual_relu) {
  check_forward(&(Dense){"res", "35", 35, 35, true, RESIDUAL});
}
Test(dense_forward, batchnorm_relu_epilogue) {
  check_forward(&(Dense){"bnr", "37", 37, 35, true, BATCHNORM});
}

/* The relu and the residual add really ran inside the dense kernel. */
Test(dense_forward, epilogues_are_fused) {
  char dir[512], nn[600], out[8192], text[1024];
  scratch_dir(dir, sizeof dir, "dense_fused");
  snprintf(nn, sizeof nn, "%s/m.nn", dir);
  model_text(text, sizeof text, &(Dense){"m", "35", 35, 35, true, RESIDUAL});
  write_file(nn, text);
  int st = run_capture(out, sizeof out, "%s %s --report", NNCC_BIN, nn);
  cr_assert(st == 0, "%s", out);
  cr_expect(strstr(out, "fused: add1 (add) into fc1 (dense)"), "%s", out);
  cr_expect(strstr(out, "fused: relu1 (relu) into fc1 (dense)"), "%s", out);
}

/* ---- gradients --------------------------------------------------------- */

/* Every parameter and input gradient of `text` at batch n, the build's
 * largest (5: more than one tile of samples in dx; 1: the kernels without
 * workspace), in f64, against finite differences. */
static void grad_case_n(const char *name, const char *text, size_t x_per, size_t t_per,
                        int tensors, int n) {
  Compiled cm;
  char opts[64];
  snprintf(opts, sizeof opts, "--dtype f64 --input-grad --batch %d", n);
  compile_model(&cm, name, text, opts, MODEL_O1);
  GradReport r = grad_check_random(&cm, n, x_per, t_per, 42, -1, 1);
  cr_expect(r.tensors == tensors, "%s: %d parameter gradients", name, r.tensors);
  cr_expect(r.worst < 1e-6, "%s: worst relative error %.3g at %s (%d checked)", name, r.worst,
            r.where, r.checked);
  close_model(&cm);
}

static void grad_case(const char *name, const char *text, size_t x_per, size_t t_per,
                      int tensors) {
  grad_case_n(name, text, x_per, t_per, tensors, 5);
}

/* --batch 1: dx and dw as rows scaled and added (two layers: dx feeds the
 * first's dy through relu) */
Test(dense_grad, batch1_rows) {
  grad_case_n("g1",
              "model g1\ninput x: f32[37]\ntarget t: f32[6]\n"
              "h = dense(x, 9) |> relu\nout = dense(h, 6, bias=false)\noutput out\n"
              "loss mse(out, t)\n",
              37, 6, 3, 1);
}

/* K = 37: dx and dw have a full 32-column tile and an edge of 5; U = 35
 * units: 8 full row tiles of dw and one of 3. */
Test(dense_grad, k37_u35) {
  grad_case("g37",
            "model g37\ninput x: f32[37]\ntarget t: f32[35]\n"
            "out = dense(x, 35)\noutput out\nloss mse(out, t)\n",
            37, 35, 2);
}

/* Two layers with a fused relu: the second's dx (K = 36) feeds relu_dx,
 * whose result is the first's dy; no bias on the second. */
Test(dense_grad, two_layers_relu) {
  grad_case("g2",
            "model g2\ninput x: f32[2, 35]\ntarget t: f32[33]\n"
            "h = dense(x, 36) |> relu\nout = dense(h, 33, bias=false)\n"
            "output out\nloss mse(out, t)\n",
            70, 33, 3);
}

/* Single unit and single input: every tile is a partial one. */
Test(dense_grad, k1_u1_then_u3) {
  grad_case("g1",
            "model g1\ninput x: f32[1]\ntarget t: f32[3]\n"
            "h = dense(x, 1)\nout = dense(h, 3)\noutput out\nloss mse(out, t)\n",
            1, 3, 4);
}

/* ---- determinism ------------------------------------------------------- */

#define DET_X 256
#define DET_OUT 33
static const char det_model[] =
    "model det\ninput x: f32[256]\ntarget t: f32[33]\n"
    "h = dense(x, 256) |> relu\nh = dense(h, 256) + h |> relu\n"
    "out = dense(h, 33, bias=false)\noutput out\nloss mse(out, t)\n";

typedef int (*gradients_fn)(void *, int, const float *, const float *, float *, float *);
typedef float *(*grad_fn)(void *, int, size_t *);

/* The forward output, then the input gradient and every parameter gradient,
 * with `threads` OpenMP threads; returns the number of floats in out. */
static size_t run_all(const Compiled *cm, int threads, const float *x, const float *t,
                      float *out) {
  ((void (*)(int))dlsym(cm->lib, "omp_set_num_threads"))(threads);
  void *m = ((create_fn)api(cm, "create"))(5);
  cr_assert(((forward_fn)api(cm, "forward"))(m, MAX_BATCH, x, out) == 0);
  size_t len = MAX_BATCH * DET_OUT;
  float loss;
  cr_assert(((gradients_fn)api(cm, "gradients"))(m, MAX_BATCH, x, t, &loss, out + len) == 0);
  len += MAX_BATCH * DET_X;
  for (int k = 0; k < ((tensor_count_fn)api(cm, "tensor_count"))(); k++) {
    size_t numel;
    float *g = ((grad_fn)api(cm, "grad"))(m, k, &numel);
    if (g) {
      memcpy(out + len, g, numel * sizeof *g);
      len += numel;
    }
  }
  ((destroy_fn)api(cm, "destroy"))(m);
  return len;
}

/* 1, 2 and 3 threads give bit-identical outputs and gradients: a thread
 * owns each output tile and the tile code fixes the order of every sum.
 * The 256-unit layers are large enough at batch 9 for their forward, dx
 * and dw to share their loops. */
Test(dense_determinism, threads) {
  Compiled cm;
  compile_model(&cm, "det", det_model, "--batch 9 --input-grad", "-O3 -fopenmp");
  cr_assert(dlsym(cm.lib, "omp_set_num_threads"), "not linked with OpenMP");
  static float x[MAX_BATCH * DET_X], t[MAX_BATCH * DET_OUT], ref[1 << 18], got[1 << 18];
  fill_uniform(x, MAX_BATCH * DET_X, 60, -1, 1);
  fill_uniform(t, MAX_BATCH * DET_OUT, 61, -1, 1);
  size_t len = run_all(&cm, 1, x, t, ref);
  cr_assert(len > MAX_BATCH * (DET_X + DET_OUT) && len <= 1 << 18);
  for (int threads = 2; threads <= 3; threads++) {
    memset(got, 0, sizeof got);
    cr_assert(run_all(&cm, threads, x, t, got) == len);
    cr_expect(memcmp(ref, got, len * sizeof *got) == 0, "%d threads differ from 1", threads);
  }
  close_model(&cm);
}

/* A sample's output does not depend on the batch it comes in (batch 1 and
 * batch 9 take different tile edges through the same sums). */
Test(dense_determinism, batch_size) {
  Compiled cm;
  compile_model(&cm, "det", det_model, "--batch 9 --infer", "-O3");
  void *m = ((create_fn)api(&cm, "create"))(5);
  cr_assert(m);
  forward_fn forward = (forward_fn)api(&cm, "forward");
  static float x[MAX_BATCH * DET_X], all[MAX_BATCH * DET_OUT], one[DET_OUT];
  fill_uniform(x, MAX_BATCH * DET_X, 62, -1, 1);
  cr_assert(forward(m, MAX_BATCH, x, all) == 0);
  for (int s = 0; s < MAX_BATCH; s++) {
    cr_assert(forward(m, 1, x + s * DET_X, one) == 0);
    cr_expect(memcmp(one, all + s * DET_OUT, sizeof one) == 0, "sample %d differs", s);
  }
  ((destroy_fn)api(&cm, "destroy"))(m);
  close_model(&cm);
}

/* ---- report ------------------------------------------------------------ */

/* --report counts dw (and with --input-grad dx) at 2 U K FLOPs per sample
 * each, like the forward product. */
Test(dense_report, backward_flops) {
  char dir[512], nn[600], out[8192];
  scratch_dir(dir, sizeof dir, "dense_flops");
  snprintf(nn, sizeof nn, "%s/f.nn", dir);
  write_file(nn, "model f\ninput x: f32[1000]\ntarget t: f32[500]\n"
                 "out = dense(x, 500, bias=false)\noutput out\nloss mse(out, t)\n");
  int st = run_capture(out, sizeof out, "%s %s --report", NNCC_BIN, nn);
  cr_assert(st == 0, "%s", out);
  cr_expect(strstr(out, "inference graph: 1 kernels (0 nodes fused away), 1 MFLOP per sample"),
            "%s", out);
  cr_expect(strstr(out, "training graph: 4 kernels (0 nodes fused away), 2 MFLOP per sample"),
            "%s", out);
  st = run_capture(out, sizeof out, "%s %s --report --input-grad", NNCC_BIN, nn);
  cr_assert(st == 0, "%s", out);
  cr_expect(strstr(out, "training graph: 5 kernels (0 nodes fused away), 3 MFLOP per sample"),
            "%s", out);
}
