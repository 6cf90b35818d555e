/*
 * test_op_conv2d.c: the conv2d op end to end.
 *
 * Forward: each configuration is emitted with the real nncc, compiled and
 * run at batch 1, 3 and the maximum; its output is compared with a naive
 * double-precision convolution written here, reading the model's own
 * weights through <m>_tensor (bias set to random values first, since it
 * starts at zero).  Gradients: f64 finite differences through grad_check.
 * Determinism: gradients with 1, 3 and 7 OpenMP threads are bit-identical.
 * Errors: bad models must fail with the exact diagnostic and exit code 1.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

#define MAX_BATCH 5

/* A case with a square window: kernel k, stride s, pad p. */
typedef struct Conv {
  const char *name;
  int c, h, w, o, k, s, p, g;
  bool bias;
} Conv;

/* Any window: as written in `win` (kernel=..., stride=..., dilation=...,
 * pad=... or padding=...; NULL: the square one of kh, sh and pt), and its
 * geometry, the pads worked out by hand. */
typedef struct Geo {
  const char *name;
  int c, h, w, o, g;
  bool bias;
  const char *win;
  int kh, kw, sh, sw, dh, dw, pt, pb, pl, pr;
} Geo;

static Geo geo(const Conv *v) {
  return (Geo){v->name, v->c, v->h, v->w, v->o, v->g, v->bias, NULL,
               v->k, v->k, v->s, v->s, 1, 1, v->p, v->p, v->p, v->p};
}

static int out_h(const Geo *v) {
  return (v->h + v->pt + v->pb - (v->kh - 1) * v->dh - 1) / v->sh + 1;
}
static int out_w(const Geo *v) {
  return (v->w + v->pl + v->pr - (v->kw - 1) * v->dw - 1) / v->sw + 1;
}

/* A one-conv model with an mse loss; `post` is appended to the conv call. */
static void model_text(char *buf, size_t cap, const Geo *v, const char *post) {
  char win[200];
  if (v->win)
    snprintf(win, sizeof win, "%s", v->win);
  else
    snprintf(win, sizeof win, "kernel=%d, stride=%d, pad=%d", v->kh, v->sh, v->pt);
  snprintf(buf, cap,
           "model %s\ninput x: f32[%d, %d, %d]\ntarget t: f32[%d, %d, %d]\n"
           "out = conv2d(x, %d, %s, bias=%s, groups=%d)%s\n"
           "output out\nloss mse(out, t)\n",
           v->name, v->c, v->h, v->w, v->o, out_h(v), out_w(v), v->o, win,
           v->bias ? "true" : "false", v->g, post);
}

/* y (n, O, Ho, Wo) in double from x (n, C, H, W), w (O, C/G, K, K), b (O);
 * mag gets the sum of the magnitudes of the terms of each output, the scale
 * against which f32 rounding of the sum is measured. */
static void reference(double *y, double *mag, const float *x, const float *w, const float *b,
                      int n, const Geo *v, bool relu) {
  int ho = out_h(v), wo = out_w(v), cpg = v->c / v->g, opg = v->o / v->g;
  for (int s = 0; s < n; s++)
    for (int o = 0; o < v->o; o++)
      for (int i = 0; i < ho; i++)
        for (int j = 0; j < wo; j++) {
          double acc = b ? b[o] : 0, sum_abs = fabs(acc);
          for (int cl = 0; cl < cpg; cl++)
            for (int kh = 0; kh < v->kh; kh++)
              for (int kw = 0; kw < v->kw; kw++) {
                int ih = i * v->sh - v->pt + kh * v->dh, iw = j * v->sw - v->pl + kw * v->dw;
                int c = o / opg * cpg + cl;
                if (ih < 0 || ih >= v->h || iw < 0 || iw >= v->w)
                  continue;
                double term = (double)w[((o * cpg + cl) * v->kh + kh) * v->kw + kw] *
                              x[((s * v->c + c) * v->h + ih) * v->w + iw];
                acc += term;
                sum_abs += fabs(term);
              }
          size_t at = (((size_t)s * v->o + o) * ho + i) * wo + j;
          y[at] = relu && acc < 0 ? 0 : acc;
          mag[at] = sum_abs;
        }
}

/* Max of |got - want| / max(|want|, magnitude of the terms): a summation in
 * f32 is accurate to a few ulps of the sum of |terms|, not of the result,
 * which may cancel to near zero.  A wrong index or a lost term moves the
 * result by the size of a term, far above 1e-5 of this scale. */
static double max_err(const float *got, const double *want, const double *mag, size_t len) {
  double worst = 0;
  for (size_t i = 0; i < len; i++) {
    double denom = fmax(fabs(want[i]), mag[i]);
    double err = isfinite(got[i]) ? fabs(got[i] - want[i]) / fmax(denom, 1e-30) : INFINITY;
    worst = fmax(worst, err);
  }
  return worst;
}

typedef void *(*create_fn)(uint64_t);
typedef void (*destroy_fn)(void *);
typedef int (*forward_fn)(void *, int, const float *, float *);
typedef int (*tensor_count_fn)(void);

static void forward_run(const Geo *v, bool relu, double tol, const char *flags, int threads);
static void forward_case(const Geo *v, bool relu, double tol, const char *flags) {
  forward_run(v, relu, tol, flags, 0);
}
static void check_forward_with(const Conv *c, bool relu, double tol, const char *flags) {
  Geo v = geo(c);
  forward_case(&v, relu, tol, flags);
}
static void check_forward(const Conv *v, bool relu) {
  check_forward_with(v, relu, 1e-5, "--batch 5");
}
static void check_forward_tol(const Conv *v, bool relu, double tol) {
  check_forward_with(v, relu, tol, "--batch 5");
}

static void forward_geo(const Geo *v, bool relu) { forward_case(v, relu, 1e-5, "--batch 5"); }
static void forward_tol(const Geo *v, bool relu, double tol) {
  forward_case(v, relu, tol, "--batch 5");
}

/* threads > 0: built with OpenMP and run on that many threads. */
static void forward_run(const Geo *v, bool relu, double tol, const char *flags, int threads) {
  char text[1024];
  model_text(text, sizeof text, v, relu ? " |> relu" : "");
  Compiled cm;
  compile_model(&cm, v->name, text, flags, threads ? MODEL_O1 " -fopenmp" : MODEL_O1);
  if (threads) {
    void (*set)(int) = (void (*)(int))dlsym(cm.lib, "omp_set_num_threads");
    cr_assert(set, "not linked with OpenMP");
    set(threads);
  }
  void *m = ((create_fn)api(&cm, "create"))(7);
  cr_assert(m);
  size_t wn = 0, bn = 0;
  float *w = tensor_by_name(&cm, m, "tensor", "conv1.weight", &wn);
  float *b = tensor_by_name(&cm, m, "tensor", "conv1.bias", &bn);
  cr_assert(w && wn == (size_t)v->o * (v->c / v->g) * v->kh * v->kw, "%s: weight", v->name);
  cr_assert(v->bias ? b && bn == (size_t)v->o : !b, "%s: bias", v->name);
  if (b)
    fill_uniform(b, bn, 11, -0.5f, 0.5f);
  size_t x_per = (size_t)v->c * v->h * v->w, y_per = (size_t)v->o * out_h(v) * out_w(v);
  float *x = malloc(MAX_BATCH * x_per * sizeof *x);
  float *y = malloc(MAX_BATCH * y_per * sizeof *y);
  double *want = malloc(MAX_BATCH * y_per * sizeof *want);
  double *mag = malloc(MAX_BATCH * y_per * sizeof *mag);
  int most = MAX_BATCH;   /* the build's --batch */
  const char *at = strstr(flags, "--batch ");
  if (at)
    most = atoi(at + 8);
  static const int batches[] = {1, 3, MAX_BATCH};
  for (int t = 0; t < 3 && batches[t] <= most; t++) {
    int n = batches[t];
    fill_uniform(x, (size_t)n * x_per, 100 + (uint64_t)n, -1, 1);
    int st = ((forward_fn)api(&cm, "forward"))(m, n, x, y);
    cr_assert(st == 0, "%s: forward returned %d", v->name, st);
    reference(want, mag, x, w, b, n, v, relu);
    double err = max_err(y, want, mag, (size_t)n * y_per);
    cr_expect(err < tol, "%s%s batch %d: max relative error %.3g", v->name,
              relu ? "+relu" : "", n, err);
  }
  free(x);
  free(y);
  free(want);
  free(mag);
  ((destroy_fn)api(&cm, "destroy"))(m);
  close_model(&cm);
}

/* ---- forward ----------------------------------------------------------- */

/* 3x3 stride-1 layers of 8+ channels run Winograd F(4x4, 3x3) (conv2d.c,
 * use_winograd; --report says so): its transforms' constants make f32
 * results less accurate than a direct sum, by about 10x (docs/performance.md);
 * 1e-4 of the terms' magnitude still catches a wrong tile, tap or edge.
 * Tiles cut by the image's edge (10x11), rows past O (O = 10 is not a
 * multiple of NN_MR), pads 0 and 2, a fused relu, several panels. */
Test(conv2d_winograd, forward) {
  check_forward_tol(&(Conv){"wg", 8, 12, 12, 12, 3, 1, 1, 1, true}, false, 1e-4);
}
/* --no-winograd: the same layer as `forward` summed directly, as accurate as
 * every direct convolution here (1-2e-7; Winograd's 2-3.5e-6 would fail). */
Test(conv2d_winograd, opt_out) {
  check_forward_with(&(Conv){"wgno", 8, 12, 12, 12, 3, 1, 1, 1, true}, false, 5e-7,
                     "--batch 5 --no-winograd");
}
/* At batch 1 on planes of 7 to 30 tiles, as pixel rows (conv2d.c,
 * wino_rows): 16 tiles in rows of 6 (the last one short) by 2 panels of
 * filters (40: the second short); 9 tiles cut by the edge (10x10); pads per
 * side. */
Test(conv2d_winograd, pixel_rows) {
  check_forward_with(&(Conv){"wr1", 32, 14, 14, 40, 3, 1, 1, 1, true}, true, 1e-4, "--batch 1");
  check_forward_with(&(Conv){"wr2", 16, 10, 10, 32, 3, 1, 1, 1, false}, false, 1e-4, "--batch 1");
  forward_case(&(Geo){"wr3", 16, 10, 13, 32, 1, true, "kernel=3, pad=(1, 2, 1, 0)", 3, 3, 1, 1, 1,
                      1, 1, 2, 1, 0},
               true, 1e-4, "--batch 1");
}
Test(conv2d_winograd, forward_cut_tiles) {
  check_forward_tol(&(Conv){"wgcut", 9, 10, 11, 10, 3, 1, 1, 1, true}, true, 1e-4);
}
Test(conv2d_winograd, forward_pad0) {
  check_forward_tol(&(Conv){"wgp0", 8, 14, 13, 8, 3, 1, 0, 1, false}, false, 1e-4);
}
Test(conv2d_winograd, forward_pad2) {
  check_forward_tol(&(Conv){"wgp2", 10, 9, 12, 9, 3, 1, 2, 1, true}, true, 1e-4);
}

Test(conv2d_forward, k3_pad1) { check_forward(&(Conv){"k3p1", 3, 8, 8, 4, 3, 1, 1, 1, true}, false); }
Test(conv2d_forward, k5_pad2) { check_forward(&(Conv){"k5p2", 2, 9, 9, 3, 5, 1, 2, 1, true}, false); }
Test(conv2d_forward, k5_nopad) { check_forward(&(Conv){"k5p0", 2, 9, 9, 3, 5, 1, 0, 1, true}, false); }
Test(conv2d_forward, stride2) { check_forward(&(Conv){"s2", 3, 9, 8, 4, 3, 2, 1, 1, true}, false); }
Test(conv2d_forward, stride3_k4) { check_forward(&(Conv){"s3", 2, 11, 10, 3, 4, 3, 2, 1, true}, false); }
Test(conv2d_forward, k1) { check_forward(&(Conv){"k1", 5, 6, 6, 3, 1, 1, 0, 1, true}, false); }
Test(conv2d_forward, no_bias) { check_forward(&(Conv){"nob", 3, 8, 8, 4, 3, 1, 1, 1, false}, false); }
Test(conv2d_forward, groups2) { check_forward(&(Conv){"g2", 4, 8, 8, 6, 3, 1, 1, 2, true}, false); }
Test(conv2d_forward, depthwise) { check_forward(&(Conv){"dw", 4, 8, 8, 4, 3, 1, 1, 4, true}, false); }
Test(conv2d_forward, depthwise_mult2) { check_forward(&(Conv){"dw2", 3, 7, 7, 6, 3, 2, 1, 3, true}, false); }
/* Seven filter panels (the last one partial) over one panel of padded
 * input read in place; fused relu. */
Test(conv2d_forward, wide_packed) { check_forward(&(Conv){"wide", 3, 12, 12, 40, 3, 1, 1, 1, true}, true); }
Test(conv2d_forward, nonsquare) { check_forward(&(Conv){"ns", 3, 7, 5, 4, 3, 1, 1, 1, true}, false); }
Test(conv2d_forward, nonsquare_nopad) { check_forward(&(Conv){"ns0", 2, 5, 9, 3, 3, 2, 0, 1, true}, false); }
Test(conv2d_forward, kernel_equals_padded) { check_forward(&(Conv){"kfull", 2, 3, 3, 2, 5, 1, 1, 1, true}, false); }
Test(conv2d_forward, fused_relu) { check_forward(&(Conv){"relu", 3, 8, 8, 4, 3, 1, 1, 1, true}, true); }
/* Many tiles: 400 output pixels (12 full tiles of 32 and an edge of 16),
 * 9 output channels (two tiles of 4 and an edge of 1). */
Test(conv2d_forward, many_tiles) { check_forward(&(Conv){"tiles", 3, 20, 20, 9, 3, 1, 1, 1, true}, true); }
/* 1x1, stride 1, no padding: the input planes are the columns (no im2col). */
Test(conv2d_forward, direct_1x1_many_channels) { check_forward(&(Conv){"d1", 37, 7, 9, 10, 1, 1, 0, 1, true}, false); }
/* pointwise at batch 1: the last row tile (13 filters) and column panel (36
 * pixels) start back from the edge; a plane under one panel (20 pixels) is
 * copied, fewer filters than a tile (5) packed */
Test(conv2d_forward, pointwise_edges) {
  check_forward_with(&(Conv){"pwe", 4, 6, 6, 13, 1, 1, 0, 1, true}, true, 1e-5, "--batch 1");
}
Test(conv2d_forward, pointwise_small_plane) {
  check_forward_with(&(Conv){"pws", 7, 4, 5, 8, 1, 1, 0, 1, true}, false, 1e-5, "--batch 1");
}
Test(conv2d_forward, pointwise_few_filters) {
  check_forward_with(&(Conv){"pwf", 9, 6, 7, 5, 1, 1, 0, 1, false}, false, 1e-5, "--batch 1");
}
/* Pixel rows at batch 1 (conv2d.c, pixel_rows): small planes, the pixels
 * as the micro-kernel's rows and the filters as its columns.  x packed in
 * tiles (49 pixels: the last tile one pixel and five of zeros); the columns
 * packed for a stride-2 window, for a 3x3 one of stride 1, and for a plane
 * under one tile (4 pixels) with filters past one panel (40). */
Test(conv2d_forward, pixel_rows_in_place) {
  check_forward_with(&(Conv){"pr1", 150, 7, 7, 32, 1, 1, 0, 1, true}, true, 1e-5, "--batch 1");
}
Test(conv2d_forward, pixel_rows_strided) {
  check_forward_with(&(Conv){"pr2", 16, 14, 13, 32, 3, 2, 1, 1, true}, true, 1e-5, "--batch 1");
}
Test(conv2d_forward, pixel_rows_3x3) {
  check_forward_with(&(Conv){"pr3", 3, 7, 7, 128, 3, 1, 1, 1, false}, false, 1e-5, "--batch 1");
}
Test(conv2d_forward, pixel_rows_tiny_plane) {
  check_forward_with(&(Conv){"pr4", 5, 2, 2, 40, 1, 1, 0, 1, true}, true, 1e-5, "--batch 1");
}
/* Deep enough that the depth goes in blocks (conv2d.c, rows_depth: 800
 * taps at 49 pixels in f32): 1000 channels read in place (a block of 200
 * last), 900 taps of columns (a block of 100), two panels of filters. */
Test(conv2d_forward, pixel_rows_blocked_depth) {
  check_forward_with(&(Conv){"pr5", 1000, 7, 7, 64, 1, 1, 0, 1, true}, true, 1e-5, "--batch 1");
  check_forward_with(&(Conv){"pr6", 100, 14, 14, 64, 3, 2, 1, 1, false}, false, 1e-5, "--batch 1");
}
Test(conv2d_forward, depthwise_fused_relu) { check_forward(&(Conv){"dwr", 5, 9, 7, 5, 3, 2, 1, 5, true}, true); }
Test(conv2d_forward, direct_1x1_groups) { check_forward(&(Conv){"d1g", 6, 5, 5, 9, 1, 1, 0, 3, false}, false); }
Test(conv2d_forward, fused_relu_groups) { check_forward(&(Conv){"relug", 4, 7, 6, 4, 3, 2, 1, 2, false}, true); }

/* ---- windows: non-square kernels, strides, dilation, per-side pads ------- */

/* The fields after `win` are the geometry worked out by hand from the
 * window as written: kh kw sh sw dh dw, then pads top bottom left right.
 * padding=same is TensorFlow's rule: DS-CNN's first layer, 10x4 at stride 2
 * on 49x10, outputs 25x5 and pads 9 rows (4 above, 5 below) and 2 columns
 * (1 and 1); stride 2 on an even size pads 0 before and 1 after. */
#define DSCNN "kernel=(10, 4), stride=(2, 2), padding=same", 10, 4, 2, 2, 1, 1, 4, 5, 1, 1
Test(conv2d_window, dscnn_same) {
  forward_geo(&(Geo){"wds", 1, 49, 10, 6, 1, true, DSCNN}, true);
}
Test(conv2d_window, same_stride2_even) {
  forward_geo(&(Geo){"wse", 3, 8, 6, 4, 1, true,
              "kernel=3, stride=2, padding=same", 3, 3, 2, 2, 1, 1, 0, 1, 0, 1}, false);
}
/* Stride 1 and a square kernel: the in-place product, its padded copy
 * uneven on every side. */
Test(conv2d_window, pads_per_side_in_place) {
  forward_geo(&(Geo){"wpi", 3, 7, 6, 5, 1, true,
              "kernel=3, pad=(0, 2, 1, 0)", 3, 3, 1, 1, 1, 1, 0, 2, 1, 0}, false);
}
Test(conv2d_window, pads_rows_cols) {
  forward_geo(&(Geo){"wrc", 2, 6, 9, 3, 1, true,
              "kernel=(3, 5), stride=(1, 2), pad=(1, 2)", 3, 5, 1, 2, 1, 1, 1, 1, 2, 2},
                false);
}
Test(conv2d_window, dilation) {
  forward_geo(&(Geo){"wdl", 3, 9, 8, 4, 1, true,
              "kernel=3, dilation=2, pad=2", 3, 3, 1, 1, 2, 2, 2, 2, 2, 2}, true);
}
Test(conv2d_window, dilation_pair_strided) {
  forward_geo(&(Geo){"wdp", 2, 11, 9, 4, 2, true,
              "kernel=(3, 2), stride=(2, 1), dilation=(2, 3), pad=(1, 2, 0, 1)",
              3, 2, 2, 1, 2, 3, 1, 2, 0, 1}, false);
}
Test(conv2d_window, depthwise_same_stride2) {
  forward_geo(&(Geo){"wdw", 4, 8, 7, 4, 4, false,
              "kernel=3, stride=2, padding=same", 3, 3, 2, 2, 1, 1, 0, 1, 1, 1}, false);
}
Test(conv2d_window, k1_strided) {
  forward_geo(&(Geo){"wk1", 5, 7, 6, 3, 1, true,
              "kernel=1, stride=(2, 1)", 1, 1, 2, 1, 1, 1, 0, 0, 0, 0}, false);
}
/* Winograd takes a 3x3 layer whose pads above and on the left are equal
 * (its input copy offsets the plane by one count), and no other. */
Test(conv2d_window, winograd_pads_per_side) {
  forward_tol(&(Geo){"wwg", 8, 10, 9, 8, 1, true,
              "kernel=3, pad=(1, 2, 1, 0)", 3, 3, 1, 1, 1, 1, 1, 2, 1, 0},
                    true, 1e-4);
}
Test(conv2d_window, winograd_declined) {
  forward_geo(&(Geo){"wnw", 8, 10, 9, 8, 1, true,
              "kernel=3, pad=(0, 1, 1, 1)", 3, 3, 1, 1, 1, 1, 0, 1, 1, 1}, false);
}

/* --report names the kernel each window got. */
static void expect_report_of(const char *name, const char *in, const char *win, const char *flags,
                             const char *want, bool present) {
  char dir[512], nn[600], out[16384], text[512];
  scratch_dir(dir, sizeof dir, name);
  snprintf(nn, sizeof nn, "%s/m.nn", dir);
  snprintf(text, sizeof text, "model m\ninput x: f32[%s]\noutput y = conv2d(x, %s)\n", in, win);
  write_file(nn, text);
  int st = run_capture(out, sizeof out, "%s %s --infer %s --report -o %s/m.c", NNCC_BIN, nn, flags,
                       dir);
  cr_assert(st == 0, "%s", out);
  cr_expect(!strstr(out, want) == !present, "%s: '%s' %s in:\n%s", win, want,
            present ? "missing" : "unexpected", out);
}

static void expect_report(const char *name, const char *win, const char *want, bool present) {
  char args[256];
  snprintf(args, sizeof args, "8, %s", win);
  expect_report_of(name, "8, 10, 9", args, "", want, present);
}

Test(conv2d_window, kernel_choice) {
  expect_report("kc1", "kernel=3, pad=(1, 2, 1, 0)", "Winograd", true);
  expect_report("kc2", "kernel=3, pad=(0, 1, 1, 1)", "Winograd", false);
  expect_report("kc3", "kernel=3, pad=2, dilation=2", "(dilated)", true);
  expect_report("kc4", "kernel=(3, 1), pad=(1, 0)", "(non-square kernel)", true);
  expect_report_of("kc5", "7, 7, 7", "32, kernel=1", "--batch 1", "pixel rows", true);
  expect_report_of("kc6", "3, 14, 13", "32, kernel=3, stride=2, pad=1", "--batch 1", "pixel rows", true);
  expect_report_of("kc7", "3, 7, 7", "128, kernel=3, pad=1", "--batch 1", "pixel rows", true);
  expect_report_of("kc8", "5, 2, 2", "40, kernel=1", "--batch 1", "pixel rows", true);
  expect_report_of("kc9", "4, 6, 6", "13, kernel=1", "--batch 1", "pixel rows", false);
  expect_report_of("kc14", "1000, 7, 7", "64, kernel=1", "--batch 1",
                   "input packed in tiles, depth 1000 in blocks of 800", true);
  expect_report_of("kc15", "100, 14, 14", "64, kernel=3, stride=2, pad=1", "--batch 1",
                   "columns packed in tiles, depth 900 in blocks of 800", true);
  expect_report_of("kc16", "7, 7, 7", "32, kernel=1", "--batch 1", "in blocks of", false);
  expect_report_of("kc10", "32, 14, 14", "40, kernel=3, pad=1", "--batch 1",
                   "Winograd F(4x4,3x3) as pixel rows", true);
  expect_report_of("kc11", "16, 10, 10", "32, kernel=3, pad=1", "--batch 1",
                   "Winograd F(4x4,3x3) as pixel rows", true);
  expect_report_of("kc12", "16, 10, 13", "32, kernel=3, pad=(1, 2, 1, 0)", "--batch 1",
                   "Winograd F(4x4,3x3) as pixel rows", true);
  expect_report_of("kc13", "16, 7, 7", "32, kernel=3, pad=1", "--batch 1",
                   "Winograd F(4x4,3x3) as pixel rows", false);   /* one row of tiles */
}

/* The relu really ran inside the conv kernel. */
Test(conv2d_forward, relu_is_fused) {
  char dir[512], nn[600], out[8192];
  scratch_dir(dir, sizeof dir, "fusedrelu");
  snprintf(nn, sizeof nn, "%s/m.nn", dir);
  char text[1024];
  Geo v = geo(&(Conv){"m", 3, 8, 8, 4, 3, 1, 1, 1, true});
  model_text(text, sizeof text, &v, " |> relu");
  write_file(nn, text);
  int st = run_capture(out, sizeof out, "%s %s --report", NNCC_BIN, nn);
  cr_assert(st == 0, "%s", out);
  cr_expect(strstr(out, "fused: relu1 (relu) into conv1 (conv2d)"), "%s", out);
}

/* ---- gradients --------------------------------------------------------- */

typedef int (*forward_d_fn)(void *, int, const double *, double *);

/* Targets within 0.05 of the model's own outputs (same seed as grad_check):
 * the loss stays small, so its rounding error, which the finite difference
 * divides by 2*eps, stays far below the gradients it is compared with. */
static void near_targets(const Compiled *cm, int n, const double *x, double *t, size_t tl) {
  void *m = ((create_fn)api(cm, "create"))(7);
  cr_assert(m);
  double *y = malloc(tl * sizeof *y);
  cr_assert(((forward_d_fn)api(cm, "forward"))(m, n, x, y) == 0);
  fill_uniform_d(t, tl, 43, -0.05, 0.05);
  for (size_t i = 0; i < tl; i++)
    t[i] += y[i];
  free(y);
  ((destroy_fn)api(cm, "destroy"))(m);
}

/* Checks every parameter gradient (up to 200 elements each) and every input
 * gradient of model `text` at batch n (the build's largest), built with
 * nncc options `extra` too. */
static void grad_case_opts(const char *name, const char *text, size_t x_per, size_t t_per,
                           int tensors, int n, const char *extra) {
  Compiled cm;
  char flags[128];
  snprintf(flags, sizeof flags, "--dtype f64 --input-grad --batch %d %s", n, extra);
  compile_model(&cm, name, text, flags, MODEL_O1);
  size_t xl = n * x_per, tl = n * t_per;
  double *x = malloc(xl * sizeof *x), *t = malloc(tl * sizeof *t);
  fill_uniform_d(x, xl, 42, -1, 1);
  near_targets(&cm, n, x, t, tl);
  GradReport r = grad_check(&cm, n, x, xl, t, 200);
  cr_expect(r.tensors == tensors, "%s: %d parameter gradients", name, r.tensors);
  cr_expect(r.worst < 1e-6, "%s: worst relative error %.3g at %s (%d checked)", name,
            r.worst, r.where, r.checked);
  free(x);
  free(t);
  close_model(&cm);
}

static void grad_case_n(const char *name, const char *text, size_t x_per, size_t t_per,
                        int tensors, int n) {
  grad_case_opts(name, text, x_per, t_per, tensors, n, "");
}

static void grad_case(const char *name, const char *text, size_t x_per, size_t t_per,
                      int tensors) {
  grad_case_n(name, text, x_per, t_per, tensors, 3);
}

static void grad_geo_n(const Geo *v, int n) {
  char text[1024];
  model_text(text, sizeof text, v, "");
  grad_case_n(v->name, text, (size_t)v->c * v->h * v->w, (size_t)v->o * out_h(v) * out_w(v),
              v->bias ? 2 : 1, n);
}
static void grad_geo(const Geo *v) { grad_geo_n(v, 3); }
static void check_grad(const Conv *c) {
  Geo v = geo(c);
  grad_geo(&v);
}

Test(conv2d_grad, k3_pad1) { check_grad(&(Conv){"gk3", 2, 6, 6, 3, 3, 1, 1, 1, true}); }
Test(conv2d_grad, stride2_pad) { check_grad(&(Conv){"gs2", 2, 7, 6, 3, 3, 2, 1, 1, true}); }
Test(conv2d_grad, stride3_k4_pad2) { check_grad(&(Conv){"gs3", 2, 8, 7, 2, 4, 3, 2, 1, true}); }
Test(conv2d_grad, k5_nopad) { check_grad(&(Conv){"gk5", 2, 7, 6, 2, 5, 1, 0, 1, true}); }
Test(conv2d_grad, groups2_no_bias) { check_grad(&(Conv){"gg2", 4, 5, 5, 6, 3, 1, 1, 2, false}); }
Test(conv2d_grad, depthwise_stride2) { check_grad(&(Conv){"gdw", 3, 6, 7, 3, 3, 2, 1, 3, true}); }
/* Stride 1: dx is the convolution of dy by the flipped filters, a product
 * with a workspace even though the depthwise forward has none. */
Test(conv2d_grad, depthwise_stride1) { check_grad(&(Conv){"gdw1", 3, 6, 7, 3, 3, 1, 1, 3, true}); }
/* at batch 1 the dx of a pointwise conv is one too, its filters read
 * transposed (8 filters of 7: the dx has 8 rows, one tile and a shifted one) */
Test(conv2d_grad, pointwise) {
  Geo v = geo(&(Conv){"gpw", 8, 5, 5, 7, 1, 1, 0, 1, true});
  grad_geo_n(&v, 1);
}
Test(conv2d_grad, pointwise_wide_plane) {
  Geo v = geo(&(Conv){"gpw2", 3, 6, 7, 9, 1, 1, 0, 1, false});
  grad_geo_n(&v, 1);
}
/* dw of a 1x1 stride-1 conv reads x in place as its columns: samples 3
 * apart, two groups */
Test(conv2d_grad, pointwise_batch_groups) {
  check_grad(&(Conv){"gpg", 4, 5, 6, 6, 1, 1, 0, 2, true});
}
Test(conv2d_grad, kernel_larger_than_input) { check_grad(&(Conv){"gkl", 2, 3, 4, 2, 6, 1, 2, 1, true}); }

/* dx through col2im (strides, dilation) and as the convolution of dy with
 * the flipped filters (stride 1: pads per side become K-1-pad per side). */
Test(conv2d_grad, window_dscnn_same) {
  grad_geo(&(Geo){"gwds", 1, 13, 6, 2, 1, true,
           "kernel=(4, 3), stride=(2, 2), padding=same", 4, 3, 2, 2, 1, 1, 1, 2, 1, 1});
}
Test(conv2d_grad, window_pads_per_side) {
  grad_geo(&(Geo){"gwpp", 2, 6, 5, 3, 1, true,
           "kernel=3, pad=(0, 2, 1, 0)", 3, 3, 1, 1, 1, 1, 0, 2, 1, 0});
}
Test(conv2d_grad, window_nonsquare_stride1) {
  grad_geo(&(Geo){"gwns", 2, 6, 7, 3, 1, true,
           "kernel=(2, 4), pad=(1, 0, 2, 1)", 2, 4, 1, 1, 1, 1, 1, 0, 2, 1});
}
Test(conv2d_grad, window_dilation) {
  grad_geo(&(Geo){"gwdl", 2, 7, 8, 2, 2, true,
           "kernel=(3, 2), stride=(1, 2), dilation=(2, 3), pad=(2, 1, 0, 2)",
           3, 2, 1, 2, 2, 3, 2, 1, 0, 2});
}
Test(conv2d_grad, window_depthwise_same) {
  grad_geo(&(Geo){"gwdw", 3, 6, 5, 3, 3, false,
           "kernel=3, stride=2, padding=same", 3, 3, 2, 2, 1, 1, 0, 1, 1, 1});
}

/* conv -> relu (fused) -> conv: the second conv's dx feeds relu_dx, whose
 * result feeds the first conv's dw and dx. */
Test(conv2d_grad, conv_relu_conv) {
  grad_case("gch",
            "model gch\ninput x: f32[2, 6, 6]\ntarget t: f32[2, 3, 3]\n"
            "h = conv2d(x, 3, kernel=3, pad=1) |> relu\n"
            "out = conv2d(h, 2, kernel=3, stride=2, pad=1)\noutput out\nloss mse(out, t)\n",
            72, 18, 4);
}

/* Under --memory-budget (one byte under the default build's memory_size())
 * the kernels without workspace: direct loops forward, dx added tap by tap
 * into its planes (instead of col2im, or of the product by the flipped
 * filters at stride 1). */
Test(conv2d_grad, kernels_without_workspace_under_a_memory_budget) {
  const char *text = "model gmb\ninput x: f32[4, 9, 8]\ntarget t: f32[4, 5, 3]\n"
                     "h = conv2d(x, 6, kernel=3, stride=2, pad=1, groups=2)\n"
                     "h = conv2d(h, 4, kernel=(3, 2), dilation=(1, 2), pad=(1, 1, 0, 1))\n"
                     "out = conv2d(h, 4, kernel=3, pad=1)\n"
                     "output out\nloss mse(out, t)\n";
  Compiled fast;
  compile_model(&fast, "gmb", text, "--dtype f64 --input-grad --batch 3", MODEL_O1);
  size_t mem = ((size_t (*)(void))api(&fast, "memory_size"))();
  close_model(&fast);
  char budget[64];
  snprintf(budget, sizeof budget, "--memory-budget %zu", mem - 1);
  grad_case_opts("gmb", text, 288, 60, 6, 3, budget);
  /* every dx tap by tap: the stride-1 one too (its product would need the
   * workspace the budget took away) */
  char dir[512], nn[600], out[16384];
  scratch_dir(dir, sizeof dir, "gmb_report");
  snprintf(nn, sizeof nn, "%s/m.nn", dir);
  write_file(nn, text);
  int st = run_capture(out, sizeof out, "%s %s --dtype f64 --input-grad --batch 3 %s --report -o %s/m.c",
                       NNCC_BIN, nn, budget, dir);
  cr_assert(st == 0, "%s", out);
  int scatter = 0;
  for (const char *at = out; (at = strstr(at, "added tap by tap")); at++)
    scatter++;
  cr_expect(scatter == 3, "%d of 3 dx kernels without workspace in:\n%s", scatter, out);
}

/* ---- gradients against a reference, with the batch in chunks ----------- */

/* dy of mse(y, t), the mean over the batch of each sample's mean squared
 * error: the mean over all len values. */
static void mse_dy(double *dy, const double *y, const double *t, size_t len) {
  for (size_t i = 0; i < len; i++)
    dy[i] = 2 * (y[i] - t[i]) / (double)len;
}

/* dx, dw, db of one conv in double, from dy (n, O, Ho, Wo): the adjoints of
 * `reference` written out tap by tap. */
static void reference_grads(double *dx, double *dw, double *db, const double *dy,
                            const double *x, const double *w, int n, const Geo *v) {
  int ho = out_h(v), wo = out_w(v), cpg = v->c / v->g, opg = v->o / v->g;
  memset(dx, 0, sizeof *dx * (size_t)n * v->c * v->h * v->w);
  memset(dw, 0, sizeof *dw * (size_t)v->o * cpg * v->kh * v->kw);
  memset(db, 0, sizeof *db * (size_t)v->o);
  for (int s = 0; s < n; s++)
    for (int o = 0; o < v->o; o++)
      for (int i = 0; i < ho; i++)
        for (int j = 0; j < wo; j++) {
          double d = dy[(((size_t)s * v->o + o) * ho + i) * wo + j];
          db[o] += d;
          for (int cl = 0; cl < cpg; cl++)
            for (int kh = 0; kh < v->kh; kh++)
              for (int kw = 0; kw < v->kw; kw++) {
                int ih = i * v->sh - v->pt + kh * v->dh, iw = j * v->sw - v->pl + kw * v->dw;
                if (ih < 0 || ih >= v->h || iw < 0 || iw >= v->w)
                  continue;
                size_t wi = (((size_t)o * cpg + cl) * v->kh + kh) * v->kw + kw;
                size_t xi = (((size_t)s * v->c + o / opg * cpg + cl) * v->h + ih) * v->w + iw;
                dw[wi] += d * x[xi];
                dx[xi] += d * w[wi];
              }
        }
}

typedef int (*gradients_d_fn)(void *, int, const double *, const double *, double *, double *);

/* Convolutions whose columns fill most of the workspace: the batch runs in
 * chunks of one or a few samples, so a chunk that is skipped, repeated or
 * added twice into dw shows.  In f64 against reference_grads. */
static void chunked_geo(const Geo *v) {
  char text[1024];
  model_text(text, sizeof text, v, "");
  Compiled cm;
  compile_model(&cm, v->name, text, "--dtype f64 --input-grad --batch 5", "-O2");
  void *m = ((create_fn)api(&cm, "create"))(3);
  cr_assert(m);
  int n = MAX_BATCH;
  size_t xl = (size_t)n * v->c * v->h * v->w, yl = (size_t)n * v->o * out_h(v) * out_w(v);
  size_t wl = (size_t)v->o * (v->c / v->g) * v->kh * v->kw;
  double *x = malloc(xl * sizeof *x), *t = malloc(yl * sizeof *t), *y = malloc(yl * sizeof *y);
  double *dy = malloc(yl * sizeof *dy), *dx = malloc(xl * sizeof *dx), *got = malloc(xl * sizeof *got);
  double *dw = malloc(wl * sizeof *dw), *db = malloc(v->o * sizeof *db);
  fill_uniform_d(x, xl, 8, -1, 1);
  fill_uniform_d(t, yl, 9, -1, 1);
  size_t numel;
  const double *w = (const double *)tensor_by_name(&cm, m, "tensor", "conv1.weight", &numel);
  const double *b = (const double *)tensor_by_name(&cm, m, "tensor", "conv1.bias", &numel);
  cr_assert(w && b);
  cr_assert(((forward_d_fn)api(&cm, "forward"))(m, n, x, y) == 0);
  mse_dy(dy, y, t, yl);
  reference_grads(dx, dw, db, dy, x, w, n, v);
  double loss;
  cr_assert(((gradients_d_fn)api(&cm, "gradients"))(m, n, x, t, &loss, got) == 0);
  const double *gw = tensor_by_name(&cm, m, "grad", "conv1.weight", &numel);
  const double *gb = tensor_by_name(&cm, m, "grad", "conv1.bias", &numel);
  cr_assert(gw && gb);
  cr_expect(max_rel_err_d(got, dx, xl) < 1e-9, "%s: dx differs by %.3g", v->name,
            max_rel_err_d(got, dx, xl));
  cr_expect(max_rel_err_d(gw, dw, wl) < 1e-9, "%s: dw differs by %.3g", v->name,
            max_rel_err_d(gw, dw, wl));
  cr_expect(max_rel_err_d(gb, db, v->o) < 1e-9, "%s: db differs by %.3g", v->name,
            max_rel_err_d(gb, db, v->o));
  free(x), free(t), free(y), free(dy), free(dx), free(got), free(dw), free(db);
  ((destroy_fn)api(&cm, "destroy"))(m);
  close_model(&cm);
}

static void check_chunked(const Conv *c) {
  Geo v = geo(c);
  chunked_geo(&v);
}

/* A chunk holds what fits in 2^18 values, or up to 4 samples within 2^20
 * (conv2d.c, chunk_samples).  16*25*2304 = 921,600 column values per
 * sample: one sample per chunk. */
Test(conv2d_chunked, one_sample_per_chunk) {
  check_chunked(&(Conv){"ch1", 16, 48, 48, 5, 5, 1, 2, 1, true});
}
/* 16*25*900 = 360,000 per sample: chunks of 2, 2 and 1 samples; strided,
 * grouped. */
Test(conv2d_chunked, uneven_chunks_strided_groups) {
  check_chunked(&(Conv){"ch3", 16, 60, 59, 6, 5, 2, 2, 2, true});
}

/* Winograd forward and dx (the flipped, transposed filters) in f64: as exact
 * as the direct sum. */
Test(conv2d_winograd, forward_dx_f64) {
  check_chunked(&(Conv){"wgd", 8, 16, 15, 12, 3, 1, 1, 1, true});
}
/* Filters past one micro-kernel tile of dU^T (O = 40 > NN_NR); and 256 + 256
 * channels, where a chunk of dw holds one panel of tiles: two chunks. */
Test(conv2d_winograd, dw_wide) {
  check_chunked(&(Conv){"wgdw", 10, 8, 9, 40, 3, 1, 1, 1, true});
}
Test(conv2d_winograd, dw_two_chunks) {
  check_chunked(&(Conv){"wgch", 256, 12, 12, 256, 3, 1, 1, 1, true});
}
/* At most 16 filters: dU by dot products (conv2d.c, wino_dw_dots), over
 * 5 x 100 tiles in two chunks of 448 and 52 (two panels, 12 lanes of
 * zeros); 17 filters take the products, for comparison. */
Test(conv2d_winograd, dw_dots_two_chunks) {
  check_chunked(&(Conv){"wgdd", 16, 40, 40, 16, 3, 1, 1, 1, true});
  check_chunked(&(Conv){"wgdp", 16, 40, 40, 17, 3, 1, 1, 1, true});
}
Test(conv2d_winograd, grad) { check_grad(&(Conv){"gwg", 8, 10, 10, 9, 3, 1, 1, 1, true}); }
/* Rows of more tiles than a panel has lanes (134 columns: 34 tiles of 4):
 * panels that start and end inside a row, one row's tiles in two panels;
 * forward in f32 against the direct loops, dx and dw in f64. */
Test(conv2d_winograd, wide_rows) {
  check_forward_tol(&(Conv){"wgwide", 8, 6, 134, 8, 3, 1, 1, 1, true}, false, 1e-4);
  check_chunked(&(Conv){"wgwided", 8, 6, 134, 9, 3, 1, 1, 1, true});
}

/* Winograd's dx and dw with pads per side (pt == pl), in f64. */
Test(conv2d_winograd, pads_per_side_f64) {
  chunked_geo(&(Geo){"wgpp", 8, 11, 10, 9, 1, true,
              "kernel=3, pad=(2, 0, 2, 1)", 3, 3, 1, 1, 1, 1, 2, 0, 2, 1});
}
/* The flipped filters of a non-square kernel, and col2im of a dilated
 * strided one, in f64 against reference_grads. */
Test(conv2d_chunked, window_nonsquare) {
  chunked_geo(&(Geo){"chns", 3, 9, 8, 5, 1, true,
              "kernel=(2, 3), pad=(1, 0, 2, 1)", 2, 3, 1, 1, 1, 1, 1, 0, 2, 1});
}
Test(conv2d_chunked, window_dilated_strided) {
  chunked_geo(&(Geo){"chds", 4, 12, 11, 6, 2, true,
              "kernel=(3, 2), stride=(2, 3), dilation=2, pad=(1, 0)",
              3, 2, 2, 3, 2, 2, 1, 1, 0, 0});
}

/* dx and dw of a layer with seven filter panels: dx reads the padded dy in
 * place through many filter panels of the transposed filters. */
Test(conv2d_chunked, wide_packed) {
  check_chunked(&(Conv){"chw", 3, 12, 12, 40, 3, 1, 1, 1, true});
}

/* ---- --threads ---------------------------------------------------------- */

typedef size_t (*memory_size_fn)(void);

/* --threads 1 keeps one slot of per-thread scratch (a smaller arena) and
 * computes the same bits as the default 8 slots, here run on 3 threads. */
Test(conv2d_threads, one_slot_is_smaller_and_equal) {
  static const char body[] = "input x: f32[5, 16, 16]\n"
                             "output y = conv2d(x, 8, kernel=3, pad=1) |> relu\n";
  char text1[256], text8[256];
  snprintf(text1, sizeof text1, "model thr1\n%s", body);
  snprintf(text8, sizeof text8, "model thr8\n%s", body);
  Compiled one, eight;
  compile_model(&one, "thr1", text1, "--infer --batch 4 --threads 1", "-O2 -fopenmp");
  compile_model(&eight, "thr8", text8, "--infer --batch 4", "-O2 -fopenmp");
  size_t small = ((memory_size_fn)api(&one, "memory_size"))();
  size_t large = ((memory_size_fn)api(&eight, "memory_size"))();
  cr_expect(small < large, "memory_size: --threads 1 %zu, default %zu", small, large);
  ((void (*)(int))dlsym(eight.lib, "omp_set_num_threads"))(3);
  static float x[4 * 5 * 16 * 16], y1[4 * 8 * 16 * 16], y8[4 * 8 * 16 * 16];
  fill_uniform(x, sizeof x / sizeof *x, 21, -1, 1);
  void *m1 = ((create_fn)api(&one, "create"))(9), *m8 = ((create_fn)api(&eight, "create"))(9);
  cr_assert(m1 && m8);
  cr_assert(((forward_fn)api(&one, "forward"))(m1, 4, x, y1) == 0);
  cr_assert(((forward_fn)api(&eight, "forward"))(m8, 4, x, y8) == 0);
  cr_expect(memcmp(y1, y8, sizeof y1) == 0, "--threads 1 and 8 differ");
  ((destroy_fn)api(&one, "destroy"))(m1);
  ((destroy_fn)api(&eight, "destroy"))(m8);
  close_model(&one);
  close_model(&eight);
}

/* The kernels share their loops among the threads of the call's one
 * parallel region; those with per-thread slots (the padded plane read in
 * place, a column panel, Winograd's transformed tiles) have one per thread
 * of the region whatever their own work.  Large enough to be shared at
 * batch 5, on 3 threads, against the reference. */
Test(conv2d_threads, shared_kernels_on_three_threads) {
  static const Conv cases[] = {
      {"thpw", 64, 4, 4, 128, 1, 1, 0, 1, true},    /* 1x1 in place, a 16-pixel plane */
      {"thip", 16, 10, 12, 24, 5, 1, 2, 1, true},   /* in place, padded plane per slot */
      {"thst", 16, 12, 12, 40, 3, 2, 1, 1, true},   /* strided: column panel per slot */
      {"thwg", 32, 12, 12, 32, 3, 1, 1, 1, true},   /* Winograd */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    Geo v = geo(&cases[i]);
    forward_run(&v, true, 1e-5, "--batch 5", 3);
  }
}

/* ---- determinism ------------------------------------------------------- */

typedef int (*gradients_fn)(void *, int, const float *, const float *, float *, float *);
typedef float *(*grad_fn)(void *, int, size_t *);

/* Copies every parameter gradient and the input gradient (xlen reals per
 * sample) into out. */
static size_t gradients_at(const Compiled *cm, int threads, const float *x, size_t xlen,
                           const float *t, float *out) {
  ((void (*)(int))dlsym(cm->lib, "omp_set_num_threads"))(threads);
  void *m = ((create_fn)api(cm, "create"))(5);
  float loss, *dx = out;
  cr_assert(((gradients_fn)api(cm, "gradients"))(m, MAX_BATCH, x, t, &loss, dx) == 0);
  size_t len = MAX_BATCH * xlen;
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

/* With OpenMP, 1, 3 and 7 threads give bit-identical gradients: every
 * backward kernel keeps each sum inside one thread.  xlen, tlen: reals per
 * sample of the input and the target. */
static void check_determinism(const char *name, const char *text, size_t xlen, size_t tlen) {
  Compiled cm;
  compile_model(&cm, name, text, "--batch 5 --input-grad", MODEL_O1 " -fopenmp");
  cr_assert(dlsym(cm.lib, "omp_set_num_threads"), "not linked with OpenMP");
  static float x[MAX_BATCH * 1024], t[MAX_BATCH * 2048], ref[16384], got[16384];
  cr_assert(xlen <= 1024 && tlen <= 2048);
  fill_uniform(x, MAX_BATCH * xlen, 60, -1, 1);
  fill_uniform(t, MAX_BATCH * tlen, 61, -1, 1);
  size_t len = gradients_at(&cm, 1, x, xlen, t, ref);
  cr_assert(len <= 16384);
  for (int threads = 3; threads <= 7; threads += 4) {
    cr_assert(gradients_at(&cm, threads, x, xlen, t, got) == len);
    cr_expect(memcmp(ref, got, len * sizeof *got) == 0, "%s: %d threads differ from 1", name,
              threads);
  }
  close_model(&cm);
}

Test(conv2d_determinism, threads) {
  check_determinism("det",
                    "model det\ninput x: f32[4, 9, 7]\ntarget t: f32[6, 4, 3]\n"
                    "h = conv2d(x, 6, kernel=3, pad=1, groups=2) |> relu\n"
                    "h = conv2d(h, 6, kernel=3, stride=2, groups=6, bias=false) |> relu\n"
                    "out = conv2d(h, 6, kernel=1)\noutput out\nloss mse(out, t)\n",
                    252, 72);
}

/* Winograd's dw both ways: dU as dot products (8 filters) and as products
 * (20). */
Test(conv2d_determinism, winograd_threads) {
  check_determinism("detw",
                    "model detw\ninput x: f32[16, 8, 8]\ntarget t: f32[20, 8, 8]\n"
                    "h = conv2d(x, 8, kernel=3, pad=1) |> relu\n"
                    "out = conv2d(h, 20, kernel=3, pad=1)\noutput out\nloss mse(out, t)\n",
                    1024, 1280);
}

/* ---- shape errors -------------------------------------------------------- */

/* Runs nncc on a model whose line 4 is `line` and input is `input`; expects
 * exit code 1 and the diagnostic "<file>:4:<col>: error: <msg>". */
static void expect_error(const char *input, const char *line, int col, const char *msg) {
  char dir[512], nn[600], out[8192], want[1024], text[1024];
  scratch_dir(dir, sizeof dir, "conv_err");
  snprintf(nn, sizeof nn, "%s/e.nn", dir);
  snprintf(text, sizeof text,
           "model e\ninput x: f32[%s]\ntarget t: f32[4, 8, 8]\n%s\noutput out\n"
           "loss mse(out, t)\n",
           input, line);
  write_file(nn, text);
  int st = run_capture(out, sizeof out, "%s %s -o %s/e.c", NNCC_BIN, nn, dir);
  cr_expect(st == 1, "exit code %d for '%s':\n%s", st, line, out);
  snprintf(want, sizeof want, "%s:4:%d: error: %s\n%s\n", nn, col, msg, line);
  cr_expect(strstr(out, want), "want:\n%s\ngot:\n%s", want, out);
}

Test(conv2d_errors, kernel_larger_than_input) {
  expect_error("3, 3, 3", "out = conv2d(x, 4, kernel=5)", 27,
               "conv2d: kernel 5x5 is larger than the padded input 3x3");
}

Test(conv2d_errors, kernel_larger_than_padded_nonsquare) {
  expect_error("3, 9, 2", "out = conv2d(x, 4, kernel=5, pad=1)", 27,
               "conv2d: kernel 5x5 is larger than the padded input 11x4");
}

Test(conv2d_errors, groups_not_dividing_inputs) {
  expect_error("6, 8, 8", "out = conv2d(x, 8, kernel=3, groups=4)", 37,
               "conv2d: 6 input channels are not divisible by groups=4");
}

Test(conv2d_errors, groups_not_dividing_outputs) {
  expect_error("4, 8, 8", "out = conv2d(x, 6, kernel=3, groups=4)", 37,
               "conv2d: 6 output channels are not divisible by groups=4");
}

Test(conv2d_errors, zero_channels) {
  expect_error("3, 8, 8", "out = conv2d(x, 0, kernel=3)", 17,
               "conv2d: channels must be positive, got 0");
}

Test(conv2d_errors, zero_stride) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=3, stride=0)", 37,
               "conv2d: stride must be positive, got 0");
}

Test(conv2d_errors, negative_pad) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=3, pad=-1)", 34,
               "conv2d: pad must be >= 0, got -1");
}

Test(conv2d_errors, zero_kernel) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=0)", 27,
               "conv2d: kernel must be positive, got 0");
}

Test(conv2d_errors, wrong_rank) {
  expect_error("8", "out = conv2d(x, 4, kernel=3)", 7,
               "conv2d: input must be (C, H, W), got [8]");
}

Test(conv2d_errors, huge_pad) {
  expect_error("1, 2, 2", "out = conv2d(x, 1, kernel=1, stride=1000000000, pad=1500000000)", 53,
               "conv2d: the padded input 3000000002x3000000002 is too large");
}

/* ---- window errors: each names the attribute as written ------------------ */

Test(conv2d_errors, kernel_arity) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=(3, 3, 3))", 27,
               "conv2d: kernel must be an integer or (kh, kw), got 3 values");
}

Test(conv2d_errors, pad_arity) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=3, pad=(1, 1, 1))", 34,
               "conv2d: pad must be an integer, (ph, pw) or (top, bottom, left, right), got 3 "
               "values");
}

Test(conv2d_errors, stride_tuple_not_positive) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=3, stride=(2, 0))", 37,
               "conv2d: stride must be positive, got (2, 0)");
}

Test(conv2d_errors, dilation_not_positive) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=3, dilation=0)", 39,
               "conv2d: dilation must be positive, got 0");
}

Test(conv2d_errors, pad_side_negative) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=3, pad=(1, 1, -1, 0))", 34,
               "conv2d: pad must be >= 0, got (1, 1, -1, 0)");
}

Test(conv2d_errors, pad_and_padding) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=3, pad=1, padding=same)", 45,
               "conv2d: pad and padding=same cannot both be given");
}

Test(conv2d_errors, padding_unknown) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=3, padding=full)", 38,
               "conv2d: padding must be same or valid, got 'full'");
}

Test(conv2d_errors, kernel_not_integer) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=(3, 2.5))", 27,
               "conv2d: argument 'kernel' must be an integer or a tuple of integers, not a "
               "tuple with a number that is not an integer");
}

Test(conv2d_errors, dilated_kernel_too_large) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=(3, 2), dilation=(4, 1))", 27,
               "conv2d: kernel 3x2 dilated to 9x2 is larger than the padded input 8x8");
}

Test(conv2d_errors, nonsquare_kernel_too_large) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=(2, 11), pad=(0, 1))", 27,
               "conv2d: kernel 2x11 is larger than the padded input 8x10");
}

/* TF's 'same' on a kernel dilated past any int: the pads are too large, not
 * wrapped around. */
Test(conv2d_errors, same_pads_too_large) {
  expect_error("3, 8, 8", "out = conv2d(x, 4, kernel=(2000000000, 1), dilation=2000000000, "
               "padding=same)", 73, "conv2d: the padded input 2147483655x8 is too large");
}
