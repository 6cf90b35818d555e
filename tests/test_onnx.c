/*
 * test_onnx.c: ONNX import and --emit-nn, end to end through the real binary.
 *
 * The fixtures in tests/onnx/ were exported from PyTorch by
 * tests/onnx/make-fixtures, with a batch of inputs and PyTorch's outputs
 * for them (raw little-endian f32), so these tests need neither PyTorch nor
 * the onnx package.  Each model is compiled with `nncc X.onnx -o X.c`, which
 * bakes the initializers into X_weights.c; the generated forward must give
 * PyTorch's outputs within 1e-5.  Malformed files must give one clear
 * `file: error: ...` line, exit 1 and leave no output.  --emit-nn of every
 * example model must compile to the C of the model itself.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dlfcn.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

#define FIXTURES NNCC_SOURCE_DIR "/tests/onnx"
#define BATCH 4

static char log_text[1 << 16];

/* Whether dir holds no .c, .h or temporary file. */
static bool nothing_written(const char *dir) {
  char pat[600];
  snprintf(pat, sizeof pat, "%s/*.[ch]", dir);
  glob_t g;
  bool none = glob(pat, 0, NULL, &g) == GLOB_NOMATCH;
  if (!none)
    globfree(&g);
  snprintf(pat, sizeof pat, "%s/.*.tmp", dir);
  none = none && glob(pat, 0, NULL, &g) == GLOB_NOMATCH;
  return none;
}

static float *read_f32(const char *path, size_t n) { return read_values(path, n, 4); }

typedef struct Fixture {
  const char *name;
  size_t in, out;   /* per sample */
} Fixture;

static const Fixture fixtures[] = {
    {"mlp", 20, 10},              /* Gemm Relu Tanh Sigmoid Softmax */
    {"convnet", 144, 5},          /* Conv (groups, stride, pads) BatchNormalization MaxPool
                                     LeakyRelu Pad AveragePool Flatten Gemm */
    {"convnet_folded", 144, 5},   /* the same exported in eval mode: BN folded into Conv */
    {"resnet", 108, 6},           /* PRelu Elu Add Softplus Clip Concat GlobalAveragePool
                                     Shape Gather Unsqueeze Concat Reshape */
    {"lnmlp", 12, 3},             /* LayerNormalization (opset 17) MatMul + Add, Clip */
    {"windows", 130, 5},          /* Conv and pools: non-square kernels, strides per axis,
                                     dilations, pads per axis */
    {"pads", 144, 32},            /* pads per side, auto_pad SAME_UPPER and SAME_LOWER on Conv,
                                     MaxPool, AveragePool (a graph built by make-fixtures,
                                     expected outputs from PyTorch's F.pad + layer) */
    {"prelu_shared", 50, 6},      /* PRelu with one slope (nn.PReLU()), after Conv and Gemm */
    {"reshape", 72, 5},           /* Reshape to constant shapes (the batch folded, -1, -1 as
                                     the batch) between Conv, Tanh and Gemm */
};

/* Compiles fixture f with `opts`, runs forward on its inputs, returns the
 * largest difference from PyTorch's outputs relative to max(1, |want|). */
static double forward_error(const Fixture *f, const char *opts, bool f64) {
  char dir[512], so[700];
  scratch_dir(dir, sizeof dir, f->name);
  int st = run_capture(log_text, sizeof log_text, "%s %s/%s.onnx -o %s/%s.c %s", NNCC_BIN,
                       FIXTURES, f->name, dir, f->name, opts);
  cr_assert_eq(st, 0, "nncc failed on %s.onnx:\n%s", f->name, log_text);
  snprintf(so, sizeof so, "%s/%s.so", dir, f->name);
  st = run_capture(log_text, sizeof log_text,
                   "cd %s && %s -std=c11 -Wall -Wextra -Werror -O1 -shared -fPIC %s.c "
                   "%s_weights.c -o %s -lm", dir, NNCC_CC, f->name, f->name, so);
  cr_assert_eq(st, 0, "cc failed:\n%s", log_text);
  void *lib = dlopen(so, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  cr_assert(lib, "dlopen: %s", dlerror());
  char sym[128];
  snprintf(sym, sizeof sym, "%s_create", f->name);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))dlsym(lib, sym);
  snprintf(sym, sizeof sym, "%s_forward", f->name);
  void *fwd = dlsym(lib, sym);
  snprintf(sym, sizeof sym, "%s_destroy", f->name);
  void (*destroy)(void *) = (void (*)(void *))dlsym(lib, sym);
  cr_assert(create && fwd && destroy, "missing API symbols in %s", so);

  char path[700];
  snprintf(path, sizeof path, "%s/%s.in.f32", FIXTURES, f->name);
  float *x = read_f32(path, BATCH * f->in);
  snprintf(path, sizeof path, "%s/%s.out.f32", FIXTURES, f->name);
  float *want = read_f32(path, BATCH * f->out);
  double *xd = malloc(BATCH * f->in * sizeof *xd), *yd = malloc(BATCH * f->out * sizeof *yd);
  float *y = malloc(BATCH * f->out * sizeof *y);
  for (size_t i = 0; i < BATCH * f->in; i++)
    xd[i] = x[i];
  void *m = create(1);
  cr_assert(m);
  if (f64)
    st = ((int (*)(void *, int, const double *, double *))fwd)(m, BATCH, xd, yd);
  else
    st = ((int (*)(void *, int, const float *, float *))fwd)(m, BATCH, x, y);
  cr_assert_eq(st, 0, "forward failed: %d", st);
  double err = 0;
  for (size_t i = 0; i < BATCH * f->out; i++) {
    double got = f64 ? yd[i] : y[i];
    err = fmax(err, fabs(got - want[i]) / fmax(1.0, fabs(want[i])));
  }
  destroy(m);
  free(x), free(want), free(xd), free(yd), free(y);
  return err;
}

/* Parameters are indices: criterion may run a test in a fresh process,
 * where pointers into the parent's data mean nothing. */
static int fixture_index[] = {0, 1, 2, 3, 4, 5, 6, 7, 8};

ParameterizedTestParameters(onnx, matches_pytorch) {
  return cr_make_param_array(int, fixture_index, sizeof fixtures / sizeof *fixtures);
}

ParameterizedTest(int *i, onnx, matches_pytorch) {
  const Fixture *f = &fixtures[*i];
  double err = forward_error(f, "--infer", false);
  cr_log_info("%s: max error %.3g against PyTorch\n", f->name, err);
  cr_assert_leq(err, 1e-5, "%s: forward differs from PyTorch by %.3g", f->name, err);
}

/* A training build copies the baked weights in init_in; an f64 build gets
 * them as F64. */
Test(onnx, training_and_f64_builds) {
  cr_assert_leq(forward_error(&fixtures[1], "", false), 1e-5);
  cr_assert_leq(forward_error(&fixtures[3], "--infer --dtype f64", true), 1e-5);
}

/* --emit-nn prints the program, layers named as PyTorch's modules, and
 * writes nothing without -o. */
Test(onnx, emit_nn) {
  char dir[512];
  scratch_dir(dir, sizeof dir, "emit");
  int st = run_capture(log_text, sizeof log_text, "cd %s && %s %s/convnet.onnx --emit-nn",
                       dir, NNCC_BIN, FIXTURES);
  cr_assert_eq(st, 0, "%s", log_text);
  static const char *const want[] = {
      "model convnet\n", "input x: f32[1, 12, 12]\n",
      "conv1 = conv2d(x, 4, kernel=3, pad=1, name=\"conv1\")\n",
      "batchnorm(conv1, momentum=0.1, eps=1e-05, name=\"bn1\")",
      "conv2d(h2, 8, kernel=3, stride=2, pad=1, bias=false, groups=2, name=\"conv2\")",
      "avgpool(h3, 2, stride=1)", "output y = fc\n"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    cr_expect(strstr(log_text, want[i]), "missing '%s' in:\n%s", want[i], log_text);
  cr_expect(nothing_written(dir), "--emit-nn without -o wrote files in %s", dir);
}

/* Compiles `model` and its --emit-nn text; true when the C files are
 * byte-identical (the kernels cite model lines, so lines must be kept). */
static bool same_c(const char *dir, const char *model) {
  int st = run_capture(log_text, sizeof log_text,
                       "cd %s && mkdir -p a b && %s %s --emit-nn > b/m.nn && %s %s -o a/m.c && "
                       "%s b/m.nn -o b/m.c && cmp a/m.c b/m.c && cmp a/m.h b/m.h", dir,
                       NNCC_BIN, model, NNCC_BIN, model, NNCC_BIN);
  return st == 0;
}

/* --emit-nn and the model file compile to the same C, for every example
 * (blocks, repeats, chains over several lines, train sections). */
Test(emit_nn, examples_round_trip, .timeout = 300) {
  glob_t g;
  cr_assert_eq(glob(NNCC_SOURCE_DIR "/examples/*.nn", 0, NULL, &g), 0);
  for (size_t i = 0; i < g.gl_pathc; i++) {
    char dir[512];
    scratch_dir(dir, sizeof dir, "round");
    cr_expect(same_c(dir, g.gl_pathv[i]), "%s: --emit-nn does not compile to the same C:\n%s",
              g.gl_pathv[i], log_text);
  }
  globfree(&g);
}

/* What the printer must keep: statements sharing a line, one-line block
 * and repeat bodies, reals that look whole, unary minus, arithmetic, a
 * chain broken over lines, a train section in the middle. */
Test(emit_nn, tricky_program) {
  char dir[512], path[600];
  scratch_dir(dir, sizeof dir, "tricky");
  snprintf(path, sizeof path, "%s/t.nn", dir);
  write_file(path,
             "# comment\nmodel t\ninput x: f32[2, 8, 8]; target y: class[3]\n"
             "block b(h, c, s=1) { return conv2d(h, c, kernel=3, stride=s, pad=1) |> relu }\n"
             "k = 2 * (3 - 1) / 2.0\n"
             "h = b(x, 4, name=\"first\")\n"
             "train {\n  optimizer momentum(lr=2.0 / 4, momentum=0.9)\n  decay_all = true\n}\n"
             "repeat 2 { h = b(h, 4) }\n"
             "h = h\n  |> clip(min=-1.5, max=2.0)\n  |> flatten\n"
             "  |> dense(3)\n"
             "output o = h; loss cross_entropy(h, y)\n");
  cr_expect(same_c(dir, path), "--emit-nn of t.nn does not compile to the same C:\n%s",
            log_text);
}

/* Windows as tuples and padding=same print back as written. */
Test(emit_nn, windows) {
  char dir[512], path[600];
  scratch_dir(dir, sizeof dir, "windows");
  snprintf(path, sizeof path, "%s/w.nn", dir);
  static const char text[] =
      "model w\ninput x: f32[1, 49, 10]\n"
      "h = conv2d(x, 4, kernel=(10, 4), stride=(2, 2), padding=same)\n"
      "h = conv2d(h, 4, kernel=(3,\n  1), dilation=(2, 1), pad=(1, 2, 0, 0), groups=4)\n"
      "output y = maxpool(h, (3, 2), stride=(1, 2), pad=(1, 0)) |> avgpool(2, padding=valid)\n";
  write_file(path, text);
  cr_expect(same_c(dir, path), "--emit-nn of w.nn does not compile to the same C:\n%s", log_text);
  int st = run_capture(log_text, sizeof log_text, "%s %s --emit-nn", NNCC_BIN, path);
  cr_assert_eq(st, 0, "%s", log_text);
  cr_expect(strstr(log_text, "kernel=(10, 4), stride=(2, 2), padding=same"), "%s", log_text);
  cr_expect(strstr(log_text, "pad=(1, 2, 0, 0)"), "%s", log_text);
}

/* An ONNX model's --emit-nn text with its --emit-weights file compiles to
 * the C of the model itself: model.h and model_weights.c byte for byte,
 * model.c but for the options in its header comment (--weights FILE). */
Test(emit_nn, onnx_round_trip) {
  for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
    char dir[512];
    scratch_dir(dir, sizeof dir, "onnxround");
    const char *m = fixtures[i].name;
    int st = run_capture(log_text, sizeof log_text,
                         "cd %s && mkdir a b && %s %s/%s.onnx --emit-nn --emit-weights w.st > "
                         "b/%s.nn && %s %s/%s.onnx -o a/%s.c && %s b/%s.nn --weights w.st -o "
                         "b/%s.c && cmp a/%s.h b/%s.h && cmp a/%s_weights.c b/%s_weights.c && "
                         "sed 2d a/%s.c > a.body && sed 2d b/%s.c > b.body && cmp a.body b.body",
                         dir, NNCC_BIN, FIXTURES, m, m, NNCC_BIN, FIXTURES, m, m, NNCC_BIN, m,
                         m, m, m, m, m, m, m);
    cr_expect_eq(st, 0, "%s: the --emit-nn text does not compile to the same C:\n%s", m,
                 log_text);
  }
}

/* --emit-weights is for an ONNX model, and writes no C. */
Test(emit_nn, emit_weights_usage) {
  char dir[512];
  scratch_dir(dir, sizeof dir, "ewusage");
  int st = run_capture(log_text, sizeof log_text, "cd %s && %s %s/mlp.onnx --emit-weights w.st "
                       "-o m.c 2>&1", dir, NNCC_BIN, FIXTURES);
  cr_expect_eq(st, 2, "%s", log_text);
  st = run_capture(log_text, sizeof log_text, "cd %s && %s %s/examples/mlp.nn --emit-weights "
                   "w.st 2>&1", dir, NNCC_BIN, NNCC_SOURCE_DIR);
  cr_expect_eq(st, 2, "%s", log_text);
  cr_expect(nothing_written(dir));
}

typedef struct Bad {
  const char *file;
  const char *error;   /* the whole first line of stderr, after "<path>: error: " */
} Bad;

static const Bad bad_files[] = {
    {"bad_truncated", "not a valid ONNX model (protobuf decoding failed: the file is "
                      "truncated, corrupt or not ONNX)"},
    {"bad_cycle", "node 'r1' (Relu): reads 't2' before node 'fc' computes it: the graph has a "
                  "cycle or is not in topological order"},
    {"bad_missing_init", "node 'fc' (Gemm): reads 'fc.bias', which is not a graph input, an "
                         "initializer or the output of a node (a missing initializer?)"},
    {"bad_weight_type", "tensor 'fc.weight' has element type 6; only float32 (1), int64 (7) "
                        "and bool (9) constants are supported"},
    {"bad_input_type", "input 'x' must be a float32 tensor"},
    {"bad_shape", "node 'fc' (Gemm): input 'x' has 4 features per sample but the weight "
                  "'fc.weight' is [3, 5]"},
    {"bad_pads", "node 'conv' (Conv): attribute 'pads' has 3 values, expected 4"},
    {"bad_unsupported", "node 'erf1' (Erf): unsupported op; supported: Conv, "
                        "BatchNormalization, Relu, LeakyRelu, PRelu, Elu, Sigmoid, Tanh, "
                        "Softplus, Clip, MaxPool, AveragePool, GlobalAveragePool, Gemm, MatMul, "
                        "Flatten, Reshape, Add, Concat, Dropout, Softmax, LayerNormalization, "
                        "Identity, Constant, Pad, Shape, Gather, Unsqueeze"},
};

/* Runs nncc on `path` into an empty directory; expects exit 1, the first
 * line of stderr `<path>: error: <error>` (when error is not NULL), and no
 * file written. */
static void expect_rejected(const char *path, const char *error) {
  char dir[512];
  scratch_dir(dir, sizeof dir, "bad");
  int st = run_capture(log_text, sizeof log_text, "%s %s -o %s/m.c 2>&1", NNCC_BIN, path, dir);
  cr_expect_eq(st, 1, "%s: exit %d, expected 1:\n%s", path, st, log_text);
  if (error) {
    char want[1024];
    snprintf(want, sizeof want, "%s: error: %s\n", path, error);
    cr_expect_eq(strncmp(log_text, want, strlen(want)), 0, "got:\n%s\nwanted:\n%s", log_text,
                 want);
  }
  cr_expect(nothing_written(dir), "%s: files written in %s", path, dir);
}

static int bad_index[] = {0, 1, 2, 3, 4, 5, 6, 7};

ParameterizedTestParameters(malformed, clear_error) {
  return cr_make_param_array(int, bad_index, sizeof bad_files / sizeof *bad_files);
}

ParameterizedTest(int *i, malformed, clear_error) {
  const Bad *b = &bad_files[*i];
  char path[600];
  snprintf(path, sizeof path, "%s/%s.onnx", FIXTURES, b->file);
  expect_rejected(path, b->error);
}

/* Every prefix of a real model, and the model with bytes flipped, is
 * rejected or compiled, never a crash (exit 1 or 0, not a signal). */
Test(malformed, prefixes_and_flips, .timeout = 300) {
  char path[600], dir[512];
  snprintf(path, sizeof path, "%s/mlp.onnx", FIXTURES);
  FILE *f = fopen(path, "rb");
  cr_assert(f);
  static unsigned char data[1 << 16];
  size_t n = fread(data, 1, sizeof data, f);
  fclose(f);
  scratch_dir(dir, sizeof dir, "prefix");
  char cut[700];
  snprintf(cut, sizeof cut, "%s/cut.onnx", dir);
  for (size_t len = 0; len < n; len += 1 + len / 4) {
    f = fopen(cut, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
    int st = run_capture(log_text, sizeof log_text, "%s %s --emit-nn >/dev/null 2>&1", NNCC_BIN,
                         cut);
    cr_expect(st == 1, "prefix of %zu bytes: exit %d", len, st);
  }
  for (size_t at = 0; at < n; at += 1 + at / 3) {
    data[at] ^= 0x5a;
    f = fopen(cut, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
    data[at] ^= 0x5a;
    int st = run_capture(log_text, sizeof log_text, "%s %s -o %s/m.c 2>&1", NNCC_BIN, cut, dir);
    cr_expect(st == 0 || st == 1, "byte %zu flipped: exit %d:\n%s", at, st, log_text);
    if (st == 1)
      cr_expect(strstr(log_text, "error: "), "byte %zu flipped: no error message", at);
  }
}

Test(malformed, missing_and_not_onnx) {
  char dir[512], path[600];
  scratch_dir(dir, sizeof dir, "garbage");
  snprintf(path, sizeof path, "%s/text.onnx", dir);
  write_file(path, "model m\ninput x: f32[4]\noutput y = dense(x, 2)\n");
  expect_rejected(path, NULL);
  snprintf(path, sizeof path, "%s/none.onnx", dir);
  expect_rejected(path, NULL);
}
