/*
 * test_op_pool.c: maxpool, minpool, avgpool, sumpool and global_avgpool.
 *
 * Forward: the emitted kernels against a naive double-precision reference
 * written here (window by window, padding cells skipped, avg divided by the
 * real cells), at batch 1, 3 and the maximum, for several geometries.
 * Backward: central finite differences in f64 through `loss mse(pool(x), t)`
 * on inputs whose values are all at least 0.01 apart (max/min never tie under
 * the 1e-6 perturbation); the max tie rule (first cell in window order) on a
 * constant input.  Errors: exact diagnostics from the nncc binary.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

#define MAXB 5

enum { K_MAX, K_MIN, K_AVG, K_SUM, NKINDS };
static const char *const kind_names[NKINDS] = {"maxpool", "minpool", "avgpool", "sumpool"};

typedef struct Cfg {
  int c, h, w;
  int kh, kw, s, p;   /* global: kh = h, kw = w, s = 1, p = 0 */
} Cfg;

/* Any window: strides per axis, pads per side (worked out by hand for
 * padding=same). */
typedef struct Win {
  int c, h, w;
  int kh, kw, sh, sw, pt, pb, pl, pr;
} Win;

static Win win_of(const Cfg *q) {
  return (Win){q->c, q->h, q->w, q->kh, q->kw, q->s, q->s, q->p, q->p, q->p, q->p};
}

static int win_ho(const Win *q) { return (q->h + q->pt + q->pb - q->kh) / q->sh + 1; }
static int win_wo(const Win *q) { return (q->w + q->pl + q->pr - q->kw) / q->sw + 1; }

/* The naive reference: every window cell by cell, skipping padding. */
static void ref_win(int kind, const Win *q, int n, const float *x, double *y) {
  int ho = win_ho(q), wo = win_wo(q);
  for (int b = 0; b < n; b++)
    for (int c = 0; c < q->c; c++)
      for (int oh = 0; oh < ho; oh++)
        for (int ow = 0; ow < wo; ow++) {
          double acc = kind == K_MAX ? -INFINITY : kind == K_MIN ? INFINITY : 0;
          int cells = 0;
          for (int i = 0; i < q->kh; i++)
            for (int j = 0; j < q->kw; j++) {
              int hh = oh * q->sh - q->pt + i, ww = ow * q->sw - q->pl + j;
              if (hh < 0 || hh >= q->h || ww < 0 || ww >= q->w)
                continue;
              double v = x[((b * q->c + c) * q->h + hh) * q->w + ww];
              acc = kind == K_MAX ? fmax(acc, v) : kind == K_MIN ? fmin(acc, v) : acc + v;
              cells++;
            }
          cr_assert(cells > 0, "reference: empty window");
          y[((b * q->c + c) * ho + oh) * wo + ow] = kind == K_AVG ? acc / cells : acc;
        }
}

typedef int (*Fwd4)(void *, int, const float *, float *, float *, float *, float *);

static void ref_pool(int kind, const Cfg *q, int n, const float *x, double *y) {
  Win v = win_of(q);
  ref_win(kind, &v, n, x, y);
}

/* All four pools of one window (as written in `win`) in one model, checked
 * at batch 1, 3, max. */
static void forward_win(const char *name, const char *win, const Win *q) {
  char model[1024];
  snprintf(model, sizeof model,
           "model %s\ninput x: f32[%d, %d, %d]\n"
           "ya = maxpool(x, %s)\nyb = minpool(x, %s)\n"
           "yc = avgpool(x, %s)\nyd = sumpool(x, %s)\n"
           "output ya\noutput yb\noutput yc\noutput yd\n",
           name, q->c, q->h, q->w, win, win, win, win);
  Compiled cm;
  compile_model(&cm, name, model, "--batch 5", MODEL_O1);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  Fwd4 forward = (Fwd4)api(&cm, "forward");
  void *m = create(1);
  cr_assert(m);
  size_t xs = (size_t)q->c * q->h * q->w, ys = (size_t)q->c * win_ho(q) * win_wo(q);
  float *x = malloc(MAXB * xs * sizeof *x), *y[NKINDS];
  double *want = malloc(MAXB * ys * sizeof *want);
  for (int k = 0; k < NKINDS; k++)
    y[k] = malloc(MAXB * ys * sizeof(float));
  const int batches[] = {1, 3, MAXB};
  for (int t = 0; t < 3; t++) {
    int n = batches[t];
    fill_uniform(x, (size_t)n * xs, 100 + (uint64_t)t, -2, 2);
    cr_assert_eq(forward(m, n, x, y[0], y[1], y[2], y[3]), 0);
    for (int k = 0; k < NKINDS; k++) {
      ref_win(k, q, n, x, want);
      /* max/min select an input: exact.  avg/sum round in f32 (a window of
       * up to 25 terms); a wrong window is off by far more than 1e-4. */
      double err = max_rel_err(y[k], want, (size_t)n * ys);
      double tol = k == K_MAX || k == K_MIN ? 0 : 1e-4;
      cr_expect(err <= tol, "%s %s batch %d: relative error %g", name, kind_names[k], n, err);
    }
  }
  for (int k = 0; k < NKINDS; k++)
    free(y[k]);
  free(x);
  free(want);
  destroy(m);
  close_model(&cm);
}

static void check_forward(const char *name, const Cfg *q) {
  char win[100];
  snprintf(win, sizeof win, "%d, stride=%d, pad=%d", q->kh, q->s, q->p);
  Win v = win_of(q);
  forward_win(name, win, &v);
}

Test(pool_forward, k2_s2) { check_forward("pf_k2s2", &(Cfg){3, 8, 8, 2, 2, 2, 0}); }
Test(pool_forward, k3_s1_p1) { check_forward("pf_k3s1p1", &(Cfg){2, 6, 6, 3, 3, 1, 1}); }
Test(pool_forward, k3_s2) { check_forward("pf_k3s2", &(Cfg){2, 7, 7, 3, 3, 2, 0}); }
Test(pool_forward, k3_s2_p1_7x5) { check_forward("pf_7x5", &(Cfg){3, 7, 5, 3, 3, 2, 1}); }
Test(pool_forward, k2_s1_7x5) { check_forward("pf_7x5s1", &(Cfg){2, 7, 5, 2, 2, 1, 0}); }
Test(pool_forward, k5_s3_p2_uneven) { check_forward("pf_k5", &(Cfg){1, 9, 6, 5, 5, 3, 2}); }

/* Windows as tuples; padding=same pads as TensorFlow: stride 2 on 8 rows
 * pads 0 above and 1 below; the default stride (the kernel, 2x3) on 7x7
 * pads 0 and 1 rows, 1 and 1 columns. */
#define SAME_S2 "kernel=3, stride=2, padding=same", &(Win){2, 8, 6, 3, 3, 2, 2, 0, 1, 0, 1}
#define SAME_K "kernel=(2, 3), padding=same", &(Win){2, 7, 7, 2, 3, 2, 3, 0, 1, 1, 1}
#define SIDES "kernel=(3, 4), stride=(1, 2), pad=(1, 0, 2, 1)", &(Win){2, 6, 9, 3, 4, 1, 2, 1, 0, 2, 1}
Test(pool_forward, window_nonsquare) {
  forward_win("pf_ns", "kernel=(4, 3), stride=(2, 1)", &(Win){3, 9, 7, 4, 3, 2, 1, 0, 0, 0, 0});
}
Test(pool_forward, window_same_stride2) { forward_win("pf_ss2", SAME_S2); }
Test(pool_forward, window_same_default_stride) { forward_win("pf_ssk", SAME_K); }
Test(pool_forward, window_pads_per_side) { forward_win("pf_sides", SIDES); }
Test(pool_forward, window_pads_rows_cols) {
  forward_win("pf_rc", "(3, 2), pad=(1, 0)", &(Win){2, 7, 6, 3, 2, 3, 2, 1, 1, 0, 0});
}

/* stride=0 (the default) means stride = kernel. */
Test(pool_forward, default_stride_is_kernel) {
  Compiled cm;
  compile_model(&cm, "pf_def",
                "model pf_def\ninput x: f32[2, 6, 4]\ny = maxpool(x, 2)\noutput y\n",
                "--batch 5", MODEL_O1);
  int (*forward)(void *, int, const float *, float *) =
      (int (*)(void *, int, const float *, float *))api(&cm, "forward");
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void *m = create(1);
  Cfg q = {2, 6, 4, 2, 2, 2, 0};
  float x[3 * 48], y[3 * 12];
  double want[3 * 12];
  fill_uniform(x, 3 * 48, 9, -1, 1);
  cr_assert_eq(forward(m, 3, x, y), 0);
  ref_pool(K_MAX, &q, 3, x, want);
  cr_expect(max_rel_err(y, want, 3 * 12) == 0, "maxpool is exact");
  ((void (*)(void *))api(&cm, "destroy"))(m);
  close_model(&cm);
}

Test(pool_forward, global_avgpool) {
  Cfg q = {4, 5, 3, 5, 3, 1, 0};
  Compiled cm;
  compile_model(&cm, "pf_gap",
                "model pf_gap\ninput x: f32[4, 5, 3]\ny = global_avgpool(x)\noutput y\n",
                "--batch 5", MODEL_O1);
  int (*forward)(void *, int, const float *, float *) =
      (int (*)(void *, int, const float *, float *))api(&cm, "forward");
  void *m = ((void *(*)(uint64_t))api(&cm, "create"))(1);
  float x[MAXB * 60], y[MAXB * 4];
  double want[MAXB * 4];
  const int batches[] = {1, 3, MAXB};
  for (int t = 0; t < 3; t++) {
    int n = batches[t];
    fill_uniform(x, (size_t)n * 60, 7 + (uint64_t)t, -3, 3);
    cr_assert_eq(forward(m, n, x, y), 0);
    ref_pool(K_AVG, &q, n, x, want);
    double err = max_rel_err(y, want, (size_t)n * 4);
    cr_expect(err < 1e-4, "global_avgpool batch %d: relative error %g", n, err);
  }
  ((void (*)(void *))api(&cm, "destroy"))(m);
  close_model(&cm);
}

/* ---- gradients ------------------------------------------------------------------ */

/* Distinct values at least 0.01 apart in a shuffled order, so no max/min
 * window ties, even after a +-1e-6 perturbation. */
static void fill_distinct(double *x, size_t n, uint64_t seed) {
  double *u = malloc(n * sizeof *u);
  fill_uniform_d(u, n, seed, 0, 1);
  for (size_t i = 0; i < n; i++) {
    size_t rank = 0;
    for (size_t j = 0; j < n; j++)
      rank += u[j] < u[i] || (u[j] == u[i] && j < i);
    x[i] = ((double)rank - (double)n / 2) * 0.01;
  }
  free(u);
}

static void grad_win(const char *name, const char *call, const Win *q) {
  char model[512];
  snprintf(model, sizeof model,
           "model %s\ninput x: f32[%d, %d, %d]\ntarget t: f32[%d, %d, %d]\n"
           "y = %s\noutput y\nloss mse(y, t)\n",
           name, q->c, q->h, q->w, q->c, win_ho(q), win_wo(q), call);
  Compiled cm;
  compile_model(&cm, name, model, "--dtype f64 --input-grad --batch 4", MODEL_O1);
  const int n = 3;
  size_t xl = (size_t)n * q->c * q->h * q->w, tl = (size_t)n * q->c * win_ho(q) * win_wo(q);
  double *x = malloc(xl * sizeof *x), *t = malloc(tl * sizeof *t);
  fill_distinct(x, xl, 5);
  /* Targets far from the outputs (within +-1) keep every gradient well
   * above the rounding noise of the finite difference. */
  fill_uniform_d(t, tl, 6, 1.5, 2.5);
  GradReport r = grad_check(&cm, n, x, xl, t, 64);
  cr_expect(r.checked == (int)xl, "%s: %d of %zu inputs checked", name, r.checked, xl);
  cr_expect(r.worst < 1e-6, "%s: worst relative error %.3g at %s", name, r.worst, r.where);
  free(x);
  free(t);
  close_model(&cm);
}

static void check_grad(const char *name, const char *call, const Cfg *q) {
  Win v = win_of(q);
  grad_win(name, call, &v);
}

#define GRAD_TESTS(kind)                                                                   \
  Test(pool_grad, kind##_k2_s2) {                                                          \
    check_grad(#kind "_g1", #kind "(x, 2)", &(Cfg){2, 6, 4, 2, 2, 2, 0});                   \
  }                                                                                        \
  Test(pool_grad, kind##_k3_s1_p1) {                                                       \
    check_grad(#kind "_g2", #kind "(x, 3, stride=1, pad=1)", &(Cfg){2, 5, 5, 3, 3, 1, 1});  \
  }                                                                                        \
  Test(pool_grad, kind##_k3_s2_7x5) {                                                      \
    check_grad(#kind "_g3", #kind "(x, 3, stride=2, pad=1)", &(Cfg){1, 7, 5, 3, 3, 2, 1});  \
  }                                                                                        \
  /* Windows that tile the plane but leave its last row and column out. */                 \
  Test(pool_grad, kind##_k2_s2_odd) {                                                      \
    check_grad(#kind "_g4", #kind "(x, 2)", &(Cfg){2, 7, 5, 2, 2, 2, 0});                   \
  }                                                                                        \
  Test(pool_grad, kind##_same_stride2) {                                                   \
    grad_win(#kind "_g5", #kind "(x, kernel=3, stride=2, padding=same)",                   \
             &(Win){2, 8, 6, 3, 3, 2, 2, 0, 1, 0, 1});                                     \
  }                                                                                        \
  Test(pool_grad, kind##_pads_per_side) {                                                  \
    grad_win(#kind "_g6", #kind "(x, kernel=(3, 4), stride=(1, 2), pad=(1, 0, 2, 1))",     \
             &(Win){1, 5, 7, 3, 4, 1, 2, 1, 0, 2, 1});                                     \
  }

GRAD_TESTS(maxpool)
GRAD_TESTS(minpool)
GRAD_TESTS(avgpool)
GRAD_TESTS(sumpool)

Test(pool_grad, global_avgpool) {
  check_grad("gap_g", "global_avgpool(x)", &(Cfg){3, 4, 5, 4, 5, 1, 0});
}

/* In a model with parameters: the pools' dx through a dense layer and
 * cross_entropy, and the dense gradients behind the pools. */
Test(pool_grad, into_dense_cross_entropy) {
  Compiled cm;
  compile_model(&cm, "pool_fc",
                "model pool_fc\ninput x: f32[2, 6, 5]\ntarget y: class[3]\n"
                "h = maxpool(x, 3, stride=2, pad=1) + avgpool(x, 3, stride=2, pad=1)\n"
                "g = sumpool(global_avgpool(h), 1)\n"
                "logits = dense(flatten(h), 3) + dense(flatten(g), 3)\n"
                "output logits\nloss cross_entropy(logits, y)\n",
                "--dtype f64 --input-grad --batch 4", MODEL_O1);
  const int n = 3;
  double x[3 * 60];
  int32_t y[3] = {2, 0, 1};
  fill_distinct(x, 3 * 60, 8);
  GradReport r = grad_check(&cm, n, x, 3 * 60, y, 64);
  cr_expect(r.tensors == 4, "two weights and two biases: %d gradients", r.tensors);
  cr_expect(r.worst < 1e-6, "worst relative error %.3g at %s", r.worst, r.where);
  close_model(&cm);
}

/* A relu before a max or min pool: its relu_dx runs in the pool's dx as
 * each value is stored (passes/fuse.c), on windows that tile the plane
 * leaving a row and a column out and on overlapping padded ones. */
static void relu_pool_grad(const char *name, const char *pool, int h, int w, int ho, int wo) {
  char model[512];
  snprintf(model, sizeof model,
           "model %s\ninput x: f32[2, %d, %d]\ntarget t: f32[2, %d, %d]\n"
           "y = relu(x) |> %s\noutput y\nloss mse(y, t)\n", name, h, w, ho, wo, pool);
  Compiled cm;
  compile_model(&cm, name, model, "--dtype f64 --input-grad --batch 4", MODEL_O1);
  char *src = read_text(cm.c_path);
  cr_expect(src && strstr(src, "fused: relu_dx"), "%s: relu_dx is a kernel of its own", name);
  free(src);
  const int n = 3;
  size_t xl = (size_t)n * 2 * h * w, tl = (size_t)n * 2 * ho * wo;
  double *x = malloc(xl * sizeof *x), *t = malloc(tl * sizeof *t);
  fill_distinct(x, xl, 11);
  for (size_t i = 0; i < xl; i++)   /* none at relu's kink */
    x[i] += 0.005;
  fill_uniform_d(t, tl, 12, 1.5, 2.5);
  GradReport r = grad_check(&cm, n, x, xl, t, 64);
  cr_expect(r.worst < 1e-6, "%s: worst relative error %.3g at %s", name, r.worst, r.where);
  free(x);
  free(t);
  close_model(&cm);
}

Test(pool_grad, relu_into_maxpool_tiled_odd) { relu_pool_grad("rp1", "maxpool(2)", 7, 5, 3, 2); }
Test(pool_grad, relu_into_maxpool_overlapping) {
  relu_pool_grad("rp2", "maxpool(3, stride=2, pad=1)", 7, 5, 4, 3);
}
Test(pool_grad, relu_into_minpool_tiled) { relu_pool_grad("rp3", "minpool(2)", 6, 4, 3, 2); }

/* On a tie the whole gradient goes to the first cell in window order. */
Test(pool_grad, maxpool_tie_goes_to_first_cell) {
  Compiled cm;
  compile_model(&cm, "tie",
                "model tie\ninput x: f32[1, 4, 4]\ntarget t: f32[1, 3, 3]\n"
                "y = maxpool(x, 2, stride=1)\noutput y\nloss mse(y, t)\n",
                "--dtype f64 --input-grad --batch 2", MODEL_O1);
  typedef int (*Grads)(void *, int, const double *, const double *, double *, double *);
  void *m = ((void *(*)(uint64_t))api(&cm, "create"))(1);
  double x[16] = {0}, t[9], dx[16], loss;
  for (int i = 0; i < 9; i++)
    t[i] = -1 - i;   /* dloss/dy[i] = 2 (0 - t[i]) / 9 */
  cr_assert_eq(((Grads)api(&cm, "gradients"))(m, 1, x, t, &loss, dx), 0);
  for (int h = 0; h < 4; h++)
    for (int w = 0; w < 4; w++) {
      double want = h < 3 && w < 3 ? 2.0 * (1 + h * 3 + w) / 9 : 0;
      cr_expect(fabs(dx[h * 4 + w] - want) < 1e-12, "dx[%d][%d] = %g, want %g", h, w,
                dx[h * 4 + w], want);
    }
  ((void (*)(void *))api(&cm, "destroy"))(m);
  close_model(&cm);
}

/* ---- errors ------------------------------------------------------------------------ */

/* nncc must exit 1 with `want` (after the scratch file path) in its output. */
static void expect_error(const char *body, const char *want) {
  char dir[512], path[600], out[4096];
  scratch_dir(dir, sizeof dir, "pool_err");
  snprintf(path, sizeof path, "%s/bad.nn", dir);
  write_file(path, body);
  int st = run_capture(out, sizeof out, "%s %s -o %s/bad.c", NNCC_BIN, path, dir);
  cr_expect_eq(st, 1, "exit status %d, output:\n%s", st, out);
  char line[1024];
  snprintf(line, sizeof line, "%s:%s\n", path, want);
  cr_expect(strstr(out, line), "want\n%sgot\n%s", line, out);
}

#define HEAD "model bad\ninput x: f32[1, 2, 2]\n"

Test(pool_errors, kernel_larger_than_input) {
  expect_error(HEAD "y = maxpool(x, 3)\noutput y\n",
               "3:16: error: maxpool: kernel 3x3 is larger than the padded input 2x2");
}

Test(pool_errors, kernel_larger_than_padded_nonsquare) {
  expect_error("model bad\ninput x: f32[1, 8, 3]\ny = avgpool(x, 6, pad=1)\noutput y\n",
               "3:16: error: avgpool: kernel 6x6 is larger than the padded input 10x5");
}

Test(pool_errors, kernel_not_positive) {
  expect_error(HEAD "y = minpool(x, 0)\noutput y\n",
               "3:16: error: minpool: kernel must be positive, got 0");
}

Test(pool_errors, negative_stride) {
  expect_error(HEAD "y = maxpool(x, 2, stride=-1)\noutput y\n",
               "3:26: error: maxpool: stride must be positive (or 0 for stride = kernel), "
               "got -1");
}

Test(pool_errors, pad_over_half_kernel) {
  expect_error(HEAD "y = sumpool(x, 3, pad=2)\noutput y\n",
               "3:23: error: sumpool: pad must be between 0 and kernel/2 = 1, got 2");
}

Test(pool_errors, negative_pad) {
  expect_error(HEAD "y = maxpool(x, 2, pad=-1)\noutput y\n",
               "3:23: error: maxpool: pad must be between 0 and kernel/2 = 1, got -1");
}

Test(pool_errors, input_not_chw) {
  expect_error("model bad\ninput x: f32[12]\ny = maxpool(x, 2)\noutput y\n",
               "3:5: error: maxpool: input must be (C, H, W) per sample, got [12]");
}

Test(pool_errors, global_input_not_chw) {
  expect_error("model bad\ninput x: f32[3, 4]\ny = global_avgpool(x)\noutput y\n",
               "3:5: error: global_avgpool: input must be (C, H, W) per sample, got [3, 4]");
}

Test(pool_errors, global_takes_no_kernel) {
  expect_error(HEAD "y = global_avgpool(x, 2)\noutput y\n",
               "3:23: error: too many arguments to global_avgpool (it takes 0 after its "
               "tensor input)");
}

Test(pool_errors, padded_input_too_large) {
  expect_error(HEAD "y = maxpool(x, 2147483647, pad=1073741823)\noutput y\n",
               "3:32: error: maxpool: the padded input 2147483648x2147483648 is too large");
}

Test(pool_errors, kernel_arity) {
  expect_error(HEAD "y = maxpool(x, (2, 2, 2))\noutput y\n",
               "3:16: error: maxpool: kernel must be an integer or (kh, kw), got 3 values");
}

Test(pool_errors, stride_tuple_zero) {
  expect_error(HEAD "y = avgpool(x, 2, stride=(0, 1))\noutput y\n",
               "3:26: error: avgpool: stride must be positive (or 0 for stride = kernel), "
               "got (0, 1)");
}

Test(pool_errors, pad_side_over_half_kernel) {
  expect_error(HEAD "y = maxpool(x, (2, 4), pad=(0, 0, 0, 3))\noutput y\n",
               "3:28: error: maxpool: pad (0, 0, 0, 3) must be between 0 and half the kernel "
               "2x4 on each side");
}

Test(pool_errors, pad_and_padding) {
  expect_error(HEAD "y = maxpool(x, 2, padding=valid, pad=1)\noutput y\n",
               "3:27: error: maxpool: pad and padding=valid cannot both be given");
}
