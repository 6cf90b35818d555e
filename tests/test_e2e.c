/*
 * test_e2e.c: the generated forward pass end to end.
 *
 * Each model (the shipped examples/mlp.nn and examples/lenet5.nn, and one
 * small model per op) is emitted by the real nncc, compiled, loaded, given
 * random weights (create(seed), then random biases, since biases start at
 * zero and would hide bias bugs) and random inputs; its forward output is
 * compared with a naive double-precision reference written here from the
 * weights read back through <m>_tensor by name (PyTorch layouts: dense
 * (out, in), conv (O, I, kH, kW)).  Batch sizes 1, 3 and the maximum.
 *
 * Then the properties the design promises: fused, unfused and unplanned code
 * agree; the same seed gives bit-identical weights and outputs; one and two
 * OpenMP threads give bit-identical outputs and training; the emitted C runs
 * clean under ASan+UBSan and compiles warning-free with gcc and clang, with
 * and without -fopenmp.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MAXB 8
#define OPTS "--batch 8"
#define TOL 1e-5

/* ---- the generated API, loaded through dlsym ---- */

typedef struct Net {
  Compiled cm;
  void *(*create)(uint64_t);
  void (*destroy)(void *);
  int (*forward)(void *, int, const float *, float *);
  float *(*tensor)(void *, int, size_t *);
  const char *(*tensor_name)(int);
  int (*tensor_count)(void);
} Net;

typedef struct Case Case;
/* Reference forward: y (n, ysize) from x (n, xsize) with net's weights. */
typedef void (*RefFn)(const Case *c, Net *net, void *m, int n, const double *x, double *y);

struct Case {
  const char *name;     /* model name = API prefix */
  const char *source;   /* model text, or NULL: examples/<name>.nn */
  int xsize, ysize;     /* floats per sample */
  RefFn ref;
};

static char *model_text(const Case *c) {
  if (c->source) {
    char *s = malloc(strlen(c->source) + 1);
    return strcpy(s, c->source);
  }
  char path[600];
  snprintf(path, sizeof path, "%s/examples/%s.nn", NNCC_SOURCE_DIR, c->name);
  char *s = read_text(path);
  cr_assert(s, "cannot read %s", path);
  return s;
}

static void load_net(Net *net, const Case *c, const char *opts, const char *cflags) {
  char *src = model_text(c);
  compile_model(&net->cm, c->name, src, opts, cflags);
  free(src);
  net->create = (void *(*)(uint64_t))api(&net->cm, "create");
  net->destroy = (void (*)(void *))api(&net->cm, "destroy");
  net->forward = (int (*)(void *, int, const float *, float *))api(&net->cm, "forward");
  net->tensor = (float *(*)(void *, int, size_t *))api(&net->cm, "tensor");
  net->tensor_name = (const char *(*)(int))api(&net->cm, "tensor_name");
  net->tensor_count = (int (*)(void))api(&net->cm, "tensor_count");
}

/* Weights of tensor `name` as doubles; asserts the element count. */
static double *weights(Net *net, void *m, const char *name, size_t numel) {
  for (int i = 0; i < net->tensor_count(); i++) {
    if (strcmp(net->tensor_name(i), name) != 0)
      continue;
    size_t got = 0;
    const float *p = net->tensor(m, i, &got);
    cr_assert(p, "%s: tensor %s is NULL", net->cm.name, name);
    cr_assert_eq(got, numel, "%s: %s has %zu elements, expected %zu", net->cm.name, name, got,
                 numel);
    double *w = malloc(numel * sizeof *w);
    for (size_t k = 0; k < numel; k++)
      w[k] = p[k];
    return w;
  }
  cr_assert_fail("%s: no tensor named %s", net->cm.name, name);
  return NULL;
}

/* Biases start at zero: give them random values so a dropped bias shows. */
static void randomize_biases(Net *net, void *m, uint64_t seed) {
  for (int i = 0; i < net->tensor_count(); i++) {
    const char *name = net->tensor_name(i);
    size_t len = strlen(name), numel = 0;
    if (len < 5 || strcmp(name + len - 5, ".bias") != 0)
      continue;
    float *p = net->tensor(m, i, &numel);
    fill_uniform(p, numel, seed + (uint64_t)i, -0.5f, 0.5f);
  }
}

/* Max relative error of got against want, relative to max(|want_i|, 1e-2 *
 * max |want|): an output near zero comes from cancelling terms of the size
 * of the others, and float32 rounding of those is not a bug (a wrong index
 * or a dropped bias is off by far more than 1e-5 of the output scale). */
static double rel_err(const float *got, const double *want, size_t n) {
  double scale = 0, worst = 0;
  for (size_t i = 0; i < n; i++)
    scale = fmax(scale, fabs(want[i]));
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - want[i]) / fmax(fmax(fabs(want[i]), 1e-2 * scale), 1e-30);
    worst = fmax(worst, isfinite(got[i]) ? d : INFINITY);
  }
  return worst;
}

/* ---- naive double-precision reference ops ---- */

/* y (n, out) = x (n, in) w^T + b, w (out, in); b may be NULL. */
static void ref_dense(double *y, const double *x, int n, int in, int out, const double *w,
                      const double *b) {
  for (int s = 0; s < n; s++)
    for (int o = 0; o < out; o++) {
      double acc = b ? b[o] : 0;
      for (int k = 0; k < in; k++)
        acc += w[(size_t)o * in + k] * x[(size_t)s * in + k];
      y[(size_t)s * out + o] = acc;
    }
}

static void ref_relu(double *x, size_t len) {
  for (size_t i = 0; i < len; i++)
    x[i] = x[i] > 0 ? x[i] : 0;
}

/* In place over rows of k. */
static void ref_softmax(double *x, int n, int k) {
  for (int s = 0; s < n; s++) {
    double *r = x + (size_t)s * k, mx = r[0], sum = 0;
    for (int j = 1; j < k; j++)
      mx = fmax(mx, r[j]);
    for (int j = 0; j < k; j++)
      sum += exp(r[j] - mx);
    for (int j = 0; j < k; j++)
      r[j] = exp(r[j] - mx) / sum;
  }
}

typedef struct Dims {
  int c, h, w;
} Dims;

/* Square kernel k, stride 1, zero padding p; w (o, c, k, k). */
static Dims ref_conv2d(double *y, const double *x, int n, Dims d, int o, int k, int p,
                       const double *w, const double *b) {
  Dims r = {o, d.h + 2 * p - k + 1, d.w + 2 * p - k + 1};
  for (int s = 0; s < n; s++)
    for (int oc = 0; oc < o; oc++)
      for (int i = 0; i < r.h; i++)
        for (int j = 0; j < r.w; j++) {
          double acc = b[oc];
          for (int ic = 0; ic < d.c; ic++)
            for (int u = 0; u < k; u++)
              for (int v = 0; v < k; v++) {
                int yy = i + u - p, xx = j + v - p;
                if (yy < 0 || yy >= d.h || xx < 0 || xx >= d.w)
                  continue;
                acc += w[(((size_t)oc * d.c + ic) * k + u) * k + v] *
                       x[(((size_t)s * d.c + ic) * d.h + yy) * d.w + xx];
              }
          y[(((size_t)s * o + oc) * r.h + i) * r.w + j] = acc;
        }
  return r;
}

/* k x k windows at stride k. */
static Dims ref_maxpool(double *y, const double *x, int n, Dims d, int k) {
  Dims r = {d.c, d.h / k, d.w / k};
  for (int s = 0; s < n; s++)
    for (int c = 0; c < d.c; c++)
      for (int i = 0; i < r.h; i++)
        for (int j = 0; j < r.w; j++) {
          double mx = -INFINITY;
          for (int u = 0; u < k; u++)
            for (int v = 0; v < k; v++)
              mx = fmax(mx, x[(((size_t)s * d.c + c) * d.h + i * k + u) * d.w + j * k + v]);
          y[(((size_t)s * d.c + c) * r.h + i) * r.w + j] = mx;
        }
  return r;
}

/* ---- per-model references ---- */

/* fc<i> applied to x (n, in) into y (n, out), with relu when asked. */
static void fc(Net *net, void *m, int i, double *y, const double *x, int n, int in, int out,
               bool relu) {
  char wn[32], bn[32];
  snprintf(wn, sizeof wn, "fc%d.weight", i);
  snprintf(bn, sizeof bn, "fc%d.bias", i);
  double *w = weights(net, m, wn, (size_t)out * in), *b = weights(net, m, bn, (size_t)out);
  ref_dense(y, x, n, in, out, w, b);
  if (relu)
    ref_relu(y, (size_t)n * out);
  free(w);
  free(b);
}

static void ref_mlp(const Case *c, Net *net, void *m, int n, const double *x, double *y) {
  (void)c;
  double *h1 = malloc((size_t)n * 128 * sizeof *h1), *h2 = malloc((size_t)n * 64 * sizeof *h2);
  fc(net, m, 1, h1, x, n, 784, 128, true);
  fc(net, m, 2, h2, h1, n, 128, 64, true);
  fc(net, m, 3, y, h2, n, 64, 10, false);
  ref_softmax(y, n, 10);
  free(h1);
  free(h2);
}

static Dims conv(Net *net, void *m, int i, double *y, const double *x, int n, Dims d, int o,
                 int k, int p) {
  char wn[32], bn[32];
  snprintf(wn, sizeof wn, "conv%d.weight", i);
  snprintf(bn, sizeof bn, "conv%d.bias", i);
  double *w = weights(net, m, wn, (size_t)o * d.c * k * k), *b = weights(net, m, bn, (size_t)o);
  Dims r = ref_conv2d(y, x, n, d, o, k, p, w, b);
  free(w);
  free(b);
  return r;
}

/* Inference batchnorm from the model's own statistics and parameters:
 * y = (x - mean) / sqrt(var + 1e-5) * gamma + beta per channel. */
static void bn(Net *net, void *m, int i, double *y, int n, Dims d) {
  char name[4][48];
  const char *suffix[4] = {"weight", "bias", "running_mean", "running_var"};
  double *t[4];
  for (int k = 0; k < 4; k++) {
    snprintf(name[k], sizeof name[k], "bn%d.%s", i, suffix[k]);
    t[k] = weights(net, m, name[k], (size_t)d.c);
  }
  long s = (long)d.h * d.w;
  for (int b = 0; b < n; b++)
    for (int c = 0; c < d.c; c++)
      for (long j = 0; j < s; j++) {
        double *v = &y[((long)b * d.c + c) * s + j];
        *v = (*v - t[2][c]) / sqrt(t[3][c] + 1e-5) * t[0][c] + t[1][c];
      }
  for (int k = 0; k < 4; k++)
    free(t[k]);
}

static void ref_lenet5(const Case *c, Net *net, void *m, int n, const double *x, double *y) {
  (void)c;
  size_t big = (size_t)n * 6 * 28 * 28;
  double *a = malloc(big * sizeof *a), *b = malloc(big * sizeof *b);
  Dims d = conv(net, m, 1, a, x, n, (Dims){1, 28, 28}, 6, 5, 2);
  bn(net, m, 1, a, n, d);
  ref_relu(a, (size_t)n * d.c * d.h * d.w);
  d = ref_maxpool(b, a, n, d, 2);
  d = conv(net, m, 2, a, b, n, d, 16, 5, 0);
  bn(net, m, 2, a, n, d);
  ref_relu(a, (size_t)n * d.c * d.h * d.w);
  d = ref_maxpool(b, a, n, d, 2);
  cr_assert(d.c * d.h * d.w == 400);
  fc(net, m, 1, a, b, n, 400, 120, true);
  fc(net, m, 2, b, a, n, 120, 84, true);
  fc(net, m, 3, y, b, n, 84, 10, false);
  ref_softmax(y, n, 10);
  free(a);
  free(b);
}

/* dense: x (7) -> fc1 (5), no activation. */
static void ref_op_dense(const Case *c, Net *net, void *m, int n, const double *x, double *y) {
  (void)c;
  fc(net, m, 1, y, x, n, 7, 5, false);
}

static void ref_op_relu(const Case *c, Net *net, void *m, int n, const double *x, double *y) {
  (void)net;
  (void)m;
  memcpy(y, x, (size_t)n * c->xsize * sizeof *y);
  ref_relu(y, (size_t)n * c->xsize);
}

/* out = relu(fc1(x)) + x, a residual connection. */
static void ref_op_add(const Case *c, Net *net, void *m, int n, const double *x, double *y) {
  (void)c;
  fc(net, m, 1, y, x, n, 6, 6, true);
  for (int i = 0; i < n * 6; i++)
    y[i] += x[i];
}

/* out = fc1(flatten(x (2, 3, 4))), 24 -> 5. */
static void ref_op_flatten(const Case *c, Net *net, void *m, int n, const double *x, double *y) {
  (void)c;
  fc(net, m, 1, y, x, n, 24, 5, false);
}

/* flatten of an input straight to the output: a view of caller memory. */
static void ref_op_flatten_io(const Case *c, Net *net, void *m, int n, const double *x,
                              double *y) {
  (void)net;
  (void)m;
  memcpy(y, x, (size_t)n * c->xsize * sizeof *y);
}

static void ref_op_softmax(const Case *c, Net *net, void *m, int n, const double *x,
                           double *y) {
  fc(net, m, 1, y, x, n, c->xsize, c->ysize, false);
  ref_softmax(y, n, c->ysize);
}

/* Logits of a dense-relu stack, without softmax. */
static void ref_op_stack(const Case *c, Net *net, void *m, int n, const double *x, double *y) {
  (void)c;
  double *h = malloc((size_t)n * 16 * sizeof *h);
  fc(net, m, 1, h, x, n, 12, 16, true);
  fc(net, m, 2, y, h, n, 16, 3, false);
  free(h);
}

static const Case mlp = {"mlp", NULL, 784, 10, ref_mlp};
static const Case lenet5 = {"lenet5", NULL, 784, 10, ref_lenet5};
static const Case op_dense = {"op_dense", "model op_dense\ninput x: f32[7]\n"
                              "h = dense(x, 5)\noutput h\n", 7, 5, ref_op_dense};
static const Case op_relu = {"op_relu", "model op_relu\ninput x: f32[3, 4]\n"
                             "output r = relu(x)\n", 12, 12, ref_op_relu};
static const Case op_add = {"op_add", "model op_add\ninput x: f32[6]\n"
                            "h = dense(x, 6) |> relu\nout = h + x\noutput out\n",
                            6, 6, ref_op_add};
static const Case op_flatten = {"op_flatten", "model op_flatten\ninput x: f32[2, 3, 4]\n"
                                "h = flatten(x) |> dense(5)\noutput h\n", 24, 5, ref_op_flatten};
static const Case op_flatten_io = {"op_flatten_io", "model op_flatten_io\n"
                                   "input x: f32[2, 3, 4]\noutput f = flatten(x)\n",
                                   24, 24, ref_op_flatten_io};
static const Case op_softmax = {"op_softmax", "model op_softmax\ninput x: f32[9]\n"
                                "output p = softmax(dense(x, 6))\n", 9, 6, ref_op_softmax};
static const Case op_stack = {"op_stack", "model op_stack\ninput x: f32[12]\n"
                              "target y: class[3]\nh = dense(x, 16) |> relu\n"
                              "logits = dense(h, 3)\noutput logits\n"
                              "loss cross_entropy(logits, y)\n", 12, 3, ref_op_stack};

/* ---- forward against the reference ---- */

/* Runs forward at batch n; also checks that rows past n stay untouched. */
static void forward_n(Net *net, void *m, int n, int ysize, const float *x, float *y) {
  size_t cap = (size_t)(n + 1) * ysize;
  for (size_t i = 0; i < cap; i++)
    y[i] = -12345.0f;
  cr_assert_eq(net->forward(m, n, x, y), 0, "%s: forward(n=%d) failed", net->cm.name, n);
  for (size_t i = (size_t)n * ysize; i < cap; i++)
    cr_assert_eq(y[i], -12345.0f, "%s: forward(n=%d) wrote past its output", net->cm.name, n);
}

static void check_forward(const Case *c, const char *opts, const int *batches, int nb) {
  Net net;
  load_net(&net, c, opts, MODEL_O1);
  void *m = net.create(1234);
  cr_assert(m);
  randomize_biases(&net, m, 99);
  int maxn = 0;
  for (int i = 0; i < nb; i++)
    maxn = batches[i] > maxn ? batches[i] : maxn;
  size_t xl = (size_t)maxn * c->xsize, yl = (size_t)(maxn + 1) * c->ysize;
  float *x = malloc(xl * sizeof *x), *y = malloc(yl * sizeof *y);
  double *xd = malloc(xl * sizeof *xd), *want = malloc(yl * sizeof *want);
  for (int i = 0; i < nb; i++) {
    int n = batches[i];
    fill_uniform(x, (size_t)n * c->xsize, 7 + (uint64_t)n, -1, 1);
    for (size_t k = 0; k < (size_t)n * c->xsize; k++)
      xd[k] = x[k];
    forward_n(&net, m, n, c->ysize, x, y);
    c->ref(c, &net, m, n, xd, want);
    double err = rel_err(y, want, (size_t)n * c->ysize);
    cr_expect(err < TOL, "%s %s: n=%d, max relative error %.3g vs the reference", c->name,
              opts, n, err);
  }
  net.destroy(m);
  free(x);
  free(y);
  free(xd);
  free(want);
  close_model(&net.cm);
}

static const int batches[] = {1, 3, MAXB};
#define NB (int)(sizeof batches / sizeof *batches)

Test(e2e_forward, mlp) { check_forward(&mlp, OPTS, batches, NB); }
Test(e2e_forward, lenet5, .timeout = 300) { check_forward(&lenet5, OPTS, batches, NB); }
Test(e2e_forward, op_dense) { check_forward(&op_dense, OPTS, batches, NB); }
Test(e2e_forward, op_relu) { check_forward(&op_relu, OPTS, batches, NB); }
Test(e2e_forward, op_add) { check_forward(&op_add, OPTS, batches, NB); }
Test(e2e_forward, op_flatten) { check_forward(&op_flatten, OPTS, batches, NB); }
Test(e2e_forward, op_flatten_io) { check_forward(&op_flatten_io, OPTS, batches, NB); }
Test(e2e_forward, op_softmax) { check_forward(&op_softmax, OPTS, batches, NB); }
Test(e2e_forward, op_stack) { check_forward(&op_stack, OPTS, batches, NB); }

Test(e2e_forward, mlp_default_batch_64) {
  static const int b64[] = {1, 3, 64};
  check_forward(&mlp, "", b64, 3);
}

/* Inference-only code computes the same forward. */
Test(e2e_forward, mlp_infer_only) { check_forward(&mlp, OPTS " --infer", batches, NB); }

/* ---- variants: fusion and memory planning do not change results ---- */

static float *outputs_of(const Case *c, const char *opts, int n) {
  Net net;
  load_net(&net, c, opts, MODEL_O1);
  void *m = net.create(77);
  cr_assert(m);
  randomize_biases(&net, m, 5);
  float *x = malloc((size_t)n * c->xsize * sizeof *x);
  float *y = malloc((size_t)(n + 1) * c->ysize * sizeof *y);
  fill_uniform(x, (size_t)n * c->xsize, 11, -1, 1);
  forward_n(&net, m, n, c->ysize, x, y);
  net.destroy(m);
  free(x);
  close_model(&net.cm);
  return y;
}

static void check_variants(const Case *c) {
  const char *variants[] = {OPTS " --fuse=none", OPTS " --no-plan", OPTS " --fuse=none --no-plan"};
  float *base = outputs_of(c, OPTS, 5);
  size_t len = (size_t)5 * c->ysize;
  double *want = malloc(len * sizeof *want);
  for (size_t i = 0; i < len; i++)
    want[i] = base[i];
  for (int v = 0; v < 3; v++) {
    float *y = outputs_of(c, variants[v], 5);
    /* Folding batchnorm into the weights rounds differently in f32: the
     * issue's bound for fused vs unfused is 1e-5 relative. */
    double err = rel_err(y, want, len);
    cr_expect(err < 1e-5, "%s: %s differs from the fused, planned code by %.3g", c->name,
              variants[v], err);
    free(y);
  }
  free(base);
  free(want);
}

Test(e2e_variants, mlp) { check_variants(&mlp); }
Test(e2e_variants, lenet5, .timeout = 300) { check_variants(&lenet5); }
Test(e2e_variants, op_add) { check_variants(&op_add); }

/* ---- determinism ---- */

static bool same_tensors(Net *net, void *a, void *b) {
  for (int i = 0; i < net->tensor_count(); i++) {
    size_t na = 0, nb = 0;
    const float *pa = net->tensor(a, i, &na), *pb = net->tensor(b, i, &nb);
    if (na != nb || memcmp(pa, pb, na * sizeof *pa) != 0)
      return false;
  }
  return true;
}

Test(e2e_determinism, same_seed_bit_identical) {
  Net net;
  load_net(&net, &lenet5, OPTS, MODEL_O1);
  void *a = net.create(42), *b = net.create(42), *c = net.create(43);
  cr_assert(a && b && c);
  cr_expect(same_tensors(&net, a, b), "same seed, different weights");
  cr_expect(!same_tensors(&net, a, c), "seeds 42 and 43 give the same weights");
  float x[3 * 784], ya[3 * 10], yb[3 * 10];
  fill_uniform(x, sizeof x / sizeof *x, 3, -1, 1);
  cr_assert_eq(net.forward(a, 3, x, ya), 0);
  cr_assert_eq(net.forward(b, 3, x, yb), 0);
  cr_expect(memcmp(ya, yb, sizeof ya) == 0, "same seed, different outputs");
  net.destroy(a);
  net.destroy(b);
  net.destroy(c);
  close_model(&net.cm);
}

/* ---- a driver program: threads and sanitizers ---- */

/* Creates the model, prints forward outputs at full and partial batch and
 * the loss of three training steps, as float bits. */
static const char driver_body[] =
    "#include <stdio.h>\n#include <string.h>\n"
    "#ifdef _OPENMP\n#include <omp.h>\n#endif\n"
    "static void dump(const char *tag, const float *v, size_t len) {\n"
    "  printf(\"%s\", tag);\n"
    "  for (size_t i = 0; i < len; i++) {\n"
    "    unsigned u;\n    memcpy(&u, &v[i], 4);\n    printf(\" %08x\", u);\n  }\n"
    "  printf(\"\\n\");\n}\n"
    "static float x[MAXN * XS], y[MAXN * YS];\nstatic int32_t t[MAXN];\n"
    "int main(void) {\n"
    "#ifdef _OPENMP\n  printf(\"threads %d\\n\", omp_get_max_threads());\n#endif\n"
    "  unsigned long s = 12345;\n"
    "  for (int i = 0; i < MAXN * XS; i++) {\n"
    "    s = s * 6364136223846793005ul + 1442695040888963407ul;\n"
    "    x[i] = (float)((s >> 40) & 0xffff) / 65536.0f - 0.5f;\n  }\n"
    "  for (int i = 0; i < MAXN; i++)\n    t[i] = i % CLASSES;\n"
    "  MODEL *m = NM(create)(42);\n  if (!m)\n    return 2;\n"
    "  if (NM(forward)(m, MAXN, x, y))\n    return 3;\n  dump(\"forward\", y, MAXN * YS);\n"
    "  if (NM(forward)(m, 3, x, y))\n    return 3;\n  dump(\"forward3\", y, 3 * YS);\n"
    "  for (int k = 0; k < 3; k++) {\n    float loss;\n"
    "    int st = NM(train_step)(m, MAXN, x, t, &loss);\n"
    "    if (st) {\n      printf(\"train_step: %s\\n\", NM(strerror)(st));\n      return 4;\n    }\n"
    "    dump(\"loss\", &loss, 1);\n  }\n"
    "  if (NM(forward)(m, MAXN, x, y))\n    return 5;\n  dump(\"trained\", y, MAXN * YS);\n"
    "  NM(destroy)(m);\n  return 0;\n}\n";

/* Writes dir/driver.c for model `name` (one input, one output of ysize,
 * class target of `classes`) and compiles it with the model's C. */
static void build_driver(const Compiled *cm, const char *out, const char *cflags, int xsize,
                         int ysize, int classes) {
  char path[700], upper[64];
  snprintf(path, sizeof path, "%s/driver.c", cm->dir);
  size_t i = 0;
  for (; cm->name[i] && i + 1 < sizeof upper; i++)
    upper[i] = (char)toupper((unsigned char)cm->name[i]);
  upper[i] = '\0';
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fprintf(f, "#include \"%s.h\"\n#define NM(f) %s_##f\n#define MODEL %s\n", cm->name, cm->name,
          cm->name);
  fprintf(f, "#define MAXN %s_MAX_BATCH\n#define XS %d\n#define YS %d\n#define CLASSES %d\n",
          upper, xsize, ysize, classes);
  fputs(driver_body, f);
  fclose(f);
  static char log[1 << 16];
  int st = run_capture(log, sizeof log, "%s -std=c11 -Wall -Wextra -Werror %s -o %s/%s %s %s -lm",
                       NNCC_CC, cflags, cm->dir, out, path, cm->c_path);
  cr_assert_eq(st, 0, "driver build failed (%s):\n%s", cflags, log);
}

static char *run_driver(const Compiled *cm, const char *exe, const char *env, int *status) {
  size_t cap = 1 << 20;
  char *out = malloc(cap);
  *status = run_capture(out, cap, "%s %s/%s", env, cm->dir, exe);
  return out;
}

/* The text after the "threads N" line. */
static const char *after_threads(const char *s, int want) {
  int got = -1;
  cr_assert(sscanf(s, "threads %d", &got) == 1, "driver did not report threads:\n%.400s", s);
  cr_assert_eq(got, want, "OMP_NUM_THREADS=%d but the driver ran %d threads", want, got);
  return strchr(s, '\n');
}

static void check_threads(const Case *c) {
  Net net;
  load_net(&net, c, OPTS, MODEL_O1);
  build_driver(&net.cm, "driver_omp", "-O2 -fopenmp", c->xsize, c->ysize, 10);
  int s1, s2;
  char *one = run_driver(&net.cm, "driver_omp", "OMP_NUM_THREADS=1", &s1);
  char *two = run_driver(&net.cm, "driver_omp", "OMP_NUM_THREADS=2", &s2);
  cr_assert_eq(s1, 0, "driver failed with 1 thread:\n%.2000s", one);
  cr_assert_eq(s2, 0, "driver failed with 2 threads:\n%.2000s", two);
  const char *a = after_threads(one, 1), *b = after_threads(two, 2);
  cr_assert(strstr(a, "loss"), "no training output:\n%.400s", a);
  cr_expect(strcmp(a, b) == 0, "%s: 1 and 2 threads differ:\n--- 1:\n%.1500s\n--- 2:\n%.1500s",
            c->name, a, b);
  free(one);
  free(two);
  close_model(&net.cm);
}

Test(e2e_threads, mlp, .timeout = 300) { check_threads(&mlp); }
Test(e2e_threads, lenet5, .timeout = 300) { check_threads(&lenet5); }

static void check_sanitizers(const Case *c) {
  Net net;
  load_net(&net, c, OPTS, MODEL_O1);
  build_driver(&net.cm, "driver_san",
               "-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer "
               "-fno-sanitize-recover=all",
               c->xsize, c->ysize, 10);
  int st;
  char *out = run_driver(&net.cm, "driver_san", "ASAN_OPTIONS=detect_leaks=1", &st);
  cr_expect_eq(st, 0, "%s: sanitized driver exited %d:\n%.3000s", c->name, st, out);
  cr_expect(!strstr(out, "runtime error") && !strstr(out, "Sanitizer"),
            "%s: sanitizer report:\n%.3000s", c->name, out);
  cr_expect(strstr(out, "trained"), "%s: driver did not finish:\n%.1000s", c->name, out);
  free(out);
  close_model(&net.cm);
}

Test(e2e_sanitizers, mlp, .timeout = 300) { check_sanitizers(&mlp); }
Test(e2e_sanitizers, lenet5, .timeout = 300) { check_sanitizers(&lenet5); }

/* ---- the emitted C compiles cleanly everywhere ---- */

static void check_compilers(const Case *c) {
  char dir[512], nn[600], cpath[600];
  scratch_dir(dir, sizeof dir, c->name);
  snprintf(nn, sizeof nn, "%s/%s.nn", dir, c->name);
  snprintf(cpath, sizeof cpath, "%s/%s.c", dir, c->name);
  char *src = model_text(c);
  write_file(nn, src);
  free(src);
  static char log[1 << 16];
  int st = run_capture(log, sizeof log, "%s %s -o %s --verify", NNCC_BIN, nn, cpath);
  cr_assert_eq(st, 0, "nncc --verify failed on %s:\n%s", c->name, log);
  const char *ccs[] = {"gcc", "clang"}, *omp[] = {"", "-fopenmp"};
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++) {
      st = run_capture(log, sizeof log,
                       "%s -std=c11 -Wall -Wextra -Werror -pedantic %s -c %s -o %s/o.o",
                       ccs[i], omp[j], cpath, dir);
      cr_expect_eq(st, 0, "%s %s rejects %s:\n%s", ccs[i], omp[j], c->name, log);
    }
}

Test(e2e_compilers, mlp, .timeout = 120) { check_compilers(&mlp); }
Test(e2e_compilers, lenet5, .timeout = 120) { check_compilers(&lenet5); }
Test(e2e_compilers, op_add, .timeout = 120) { check_compilers(&op_add); }
Test(e2e_compilers, op_softmax, .timeout = 120) { check_compilers(&op_softmax); }
Test(e2e_compilers, op_flatten_io, .timeout = 120) { check_compilers(&op_flatten_io); }
