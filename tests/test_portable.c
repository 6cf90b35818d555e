/*
 * test_portable.c: the portable C path of runtime/nn_gemm.c, checked on
 * another architecture (issue #12, item 4).
 *
 * On x86 the emitted micro-kernels run as AVX-512 or AVX2 intrinsics; the
 * plain C ones run on every other CPU and compiler, so nothing else in the
 * suite would notice if they were wrong there.  For each model below the
 * test emits the C with the real nncc and builds one driver (the bottom of
 * this file, under PORTABLE_DRIVER) three times:
 *
 *   arm   aarch64-linux-gnu-gcc -O2 -std=c11 -static, run under qemu-aarch64
 *   x86   the system cc -O2 -std=c11: the best path cpuid finds here
 *   x86p  the same with -DNN_PORTABLE: the C path on x86
 *
 * The driver creates the model from a fixed seed, runs forward, one
 * gradients call (the loss and backward of a training step) and forward
 * again (now on the running statistics the step updated), and prints every
 * value as a hex float: the initial parameters, the outputs, the loss,
 * every parameter gradient and every buffer.  The test requires arm and
 * x86p to agree bit for bit, and each within f32 rounding of x86 (see
 * TOLERANCE); it fails naming the model, the tensor and the element.
 *
 * The models cover what the kernels tile differently: lenet5 (kernel 5
 * with and without padding, pooling, dense), a conv model with stride 2,
 * groups, depthwise (also strided), kernel 5 with padding and 1x1, and a
 * dense model with units 13 and 7 (not multiples of the 6-row tile) at a
 * batch of 37 (a full 32-column tile and a partial one).  Batches are small
 * because qemu runs the arm build about 10x slower than native.
 *
 * A missing cross compiler or qemu is a failure naming the Debian package
 * (scripts/install-deps installs them), never a skip.
 */
#ifndef PORTABLE_DRIVER

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define SELF NNCC_SOURCE_DIR "/tests/test_portable.c"
#define CROSS_CC "aarch64-linux-gnu-gcc"
#define QEMU "qemu-aarch64"
#define CFLAGS "-O2 -std=c11 -Wall -Wextra -Werror"

/*
 * Tolerance.  The vector paths differ from the C path only in rounding:
 * AVX-512 and AVX2 use fused multiply-adds (one rounding per product and
 * add, the C path two) and add a tile's previous value after its k loop
 * instead of before.  Each such difference is a relative 2^-24 (6e-8) of
 * the terms summed, so over sums of a few hundred terms through a few
 * layers the results drift apart by about 1e-6 of the tensor's magnitude
 * (measured: at most 9.2e-7, docs/performance.md).  Per-element relative
 * error would be meaningless where a value is small by cancellation, so a
 * tensor is measured as max |a - b| / magnitude, the magnitude being its
 * largest |value|, and for a gradient the largest |gradient| of its layer
 * (the name before the last dot): the bias of a conv or dense followed by a
 * training batchnorm has gradient 0 in exact arithmetic (batchnorm removes
 * any per-channel shift), so both builds hold only rounding noise there,
 * of order 2^-24 of the layer's weight gradient.  1e-5 allows several
 * times the expected drift, while a wrong index or a dropped term in a
 * kernel gives errors of order 1.
 *
 * The C path on aarch64 and on x86 must agree exactly: the same C, IEEE
 * binary32 operations in the same order, and no contraction into FMAs
 * (gcc's ISO modes, -std=c11, imply -ffp-contract=off; baseline x86-64
 * has no FMA anyway).  The initial parameters must be equal everywhere:
 * nn_init draws them from an integer generator through double sqrt, log
 * and cos rounded to float.
 */
#define TOLERANCE 1e-5

typedef struct Case {
  const char *name;   /* model name = file name = API prefix */
  const char *text;   /* model source, or NULL for examples/<name>.nn */
  int batch;          /* n of every call; also --batch */
  int classes;        /* K of target y */
} Case;

/* Every model has input x, class target y and output probs: the driver's
 * calls are the same for all. */
static const char conv_mix[] =
    "model conv_mix\n"
    "input x: f32[4, 11, 11]\n"
    "target y: class[5]\n"
    "h = conv2d(x, 8, kernel=3, stride=2, pad=1) |> relu        # stride 2: (8, 6, 6)\n"
    "h = conv2d(h, 8, kernel=3, pad=1, groups=2) |> batchnorm |> relu\n"
    "h = conv2d(h, 8, kernel=3, pad=1, groups=8) |> relu        # depthwise\n"
    "h = conv2d(h, 8, kernel=3, stride=2, pad=1, groups=8)      # to (8, 3, 3)\n"
    "h = conv2d(h, 12, kernel=5, pad=2) |> batchnorm |> relu    # kernel 5, pad 2\n"
    "h = conv2d(h, 7, kernel=1) |> relu                         # 1x1\n"
    "logits = flatten(h) |> dense(5)\n"
    "output probs = softmax(logits)\n"
    "loss cross_entropy(logits, y)\n";

static const char dense_mix[] =
    "model dense_mix\n"
    "input x: f32[50]\n"
    "target y: class[7]\n"
    "h = dense(x, 13) |> relu\n"
    "h = dense(h, 20) |> batchnorm |> relu\n"
    "logits = dense(h, 7)\n"
    "output probs = softmax(logits)\n"
    "loss cross_entropy(logits, y)\n";

static const Case cases[] = {
    {"lenet5", NULL, 5, 10},
    {"conv_mix", conv_mix, 3, 5},
    {"dense_mix", dense_mix, 37, 7},
};

/* Fails the test, naming the package, when a tool is missing. */
static void require_cross_tools(void) {
  cr_assert(run("command -v " CROSS_CC " >/dev/null") == 0,
            CROSS_CC " not found: install Debian's gcc-aarch64-linux-gnu and "
                     "libc6-dev-arm64-cross (scripts/install-deps does)");
  cr_assert(run("command -v " QEMU " >/dev/null") == 0,
            QEMU " not found: install Debian's qemu-user (scripts/install-deps does)");
}

/* One record of a driver's output: `kind name count`, then count values. */
typedef struct Rec {
  char kind[32], name[128];
  size_t n;
  float *v;
} Rec;

typedef struct Dump {
  Rec rec[64];
  int count;
} Dump;

static void parse_dump(Dump *d, const char *path) {
  char *text = read_text(path);
  cr_assert(text, "no output %s", path);
  memset(d, 0, sizeof *d);
  char *p = text;
  while (*p) {
    cr_assert(d->count < 64, "%s: too many records", path);
    Rec *r = &d->rec[d->count++];
    int used = 0;
    cr_assert(sscanf(p, "%31s %127s %zu%n", r->kind, r->name, &r->n, &used) == 3,
              "%s: bad record header at byte %td", path, p - text);
    p += used;
    r->v = malloc((r->n ? r->n : 1) * sizeof *r->v);
    for (size_t i = 0; i < r->n; i++) {
      char *end;
      r->v[i] = (float)strtod(p, &end);   /* exact: %a of a float */
      cr_assert(end != p, "%s: %s %s: value %zu missing", path, r->kind, r->name, i);
      p = end;
    }
    while (*p == '\n')
      p++;
  }
  free(text);
}

static void free_dump(Dump *d) {
  for (int i = 0; i < d->count; i++)
    free(d->rec[i].v);
}

/* The layer of a tensor name: all before the last dot. */
static size_t layer_len(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot ? (size_t)(dot - name) : strlen(name);
}

/* What record i of d is measured against (see TOLERANCE). */
static double magnitude(const Dump *d, int i) {
  const Rec *r = &d->rec[i];
  size_t len = layer_len(r->name);
  double mag = 0;
  for (int j = 0; j < d->count; j++) {
    const Rec *o = &d->rec[j];
    bool same_layer = strcmp(o->kind, "grad") == 0 && strcmp(r->kind, "grad") == 0 &&
                      layer_len(o->name) == len && strncmp(o->name, r->name, len) == 0;
    if (j == i || same_layer)
      for (size_t k = 0; k < o->n; k++)
        mag = fmax(mag, fabs(o->v[k]));
  }
  return mag;
}

/* max |a - b| over one record; *where gets the worst element. */
static double max_diff(const Rec *a, const Rec *b, size_t *where) {
  double diff = 0;
  *where = 0;
  for (size_t i = 0; i < b->n; i++) {
    double d = isfinite(a->v[i]) && isfinite(b->v[i]) ? fabs((double)a->v[i] - b->v[i])
                                                      : INFINITY;
    if (d > diff)
      diff = d, *where = i;
  }
  return diff;
}

/* Largest error per kind of record. */
typedef struct Worst {
  double forward, loss, grad, buffer;
} Worst;

/* Compares dump a (build `an`) against b (build `bn`): bit for bit when
 * `exact`, else within TOLERANCE; initial parameters always bit for bit.
 * Returns the largest errors. */
static Worst compare(const char *model, const Dump *a, const char *an, const Dump *b,
                     const char *bn, bool exact) {
  Worst w = {0};
  cr_assert(a->count == b->count, "%s: %s has %d records, %s %d", model, an, a->count, bn,
            b->count);
  for (int i = 0; i < a->count; i++) {
    const Rec *ra = &a->rec[i], *rb = &b->rec[i];
    cr_assert(strcmp(ra->kind, rb->kind) == 0 && strcmp(ra->name, rb->name) == 0 &&
                  ra->n == rb->n,
              "%s: record %d is %s %s [%zu] in %s, %s %s [%zu] in %s", model, i, ra->kind,
              ra->name, ra->n, an, rb->kind, rb->name, rb->n, bn);
    size_t at;
    double diff = max_diff(ra, rb, &at), mag = magnitude(b, i);
    double e = diff == 0 ? 0 : mag > 0 ? diff / mag : INFINITY;
    if (exact || strcmp(ra->kind, "init") == 0) {
      cr_expect(diff == 0, "%s: %s %s differs between %s and %s, which must agree bit for bit "
                "(element %zu: %a vs %a; error %.3g of the magnitude %.3g)",
                model, ra->kind, ra->name, an, bn, at, (double)ra->v[at], (double)rb->v[at],
                e, mag);
    } else {
      cr_expect(e <= TOLERANCE,
                "%s: %s %s: %s against %s: max |diff| / magnitude = %.3g > %g "
                "(element %zu: %a vs %a, magnitude %.3g)",
                model, ra->kind, ra->name, an, bn, e, TOLERANCE, at, (double)ra->v[at],
                (double)rb->v[at], mag);
    }
    if (strcmp(ra->kind, "init") == 0)
      continue;
    double *slot = strncmp(ra->kind, "forward", 7) == 0 ? &w.forward
                   : strcmp(ra->kind, "loss") == 0      ? &w.loss
                   : strcmp(ra->kind, "grad") == 0      ? &w.grad
                                                        : &w.buffer;
    *slot = fmax(*slot, e);
  }
  return w;
}

static void log_worst(const char *model, const char *what, Worst w) {
  cr_log_info("%s: %s: forward %.2g, loss %.2g, gradients %.2g, buffers %.2g", model, what,
              w.forward, w.loss, w.grad, w.buffer);
}

/* Builds the driver against dir/<name>.c with compiler `cc` and `flags`
 * into dir/<exe>. */
static void build(const char *dir, const Case *c, const char *cc, const char *flags,
                  const char *exe) {
  char upper[64];
  size_t i = 0;
  for (; c->name[i] && i + 1 < sizeof upper; i++)
    upper[i] = (char)(c->name[i] >= 'a' && c->name[i] <= 'z' ? c->name[i] - 32 : c->name[i]);
  upper[i] = '\0';
  static char log[1 << 16];
  int st = run_capture(log, sizeof log,
                       "%s " CFLAGS " %s -I%s -DPORTABLE_DRIVER '-DPORTABLE_HEADER=\"%s.h\"' "
                       "-DPORTABLE_MODEL=%s -DPORTABLE_N=%d -DPORTABLE_CLASSES=%d "
                       "-DPORTABLE_X_SIZE=%s_X_SIZE -DPORTABLE_OUT_SIZE=%s_PROBS_SIZE "
                       "-o %s/%s " SELF " %s/%s.c -lm",
                       cc, flags, dir, c->name, c->name, c->batch, c->classes, upper, upper,
                       dir, exe, dir, c->name);
  cr_assert(st == 0, "%s: %s failed%s:\n%s", c->name, cc,
            strcmp(cc, CROSS_CC) == 0 ? " (no <stdio.h> or libc.a? install Debian's "
                                        "libc6-dev-arm64-cross)"
                                      : "",
            log);
}

static void execute(const char *dir, const Case *c, const char *prefix, const char *exe) {
  static char log[1 << 16];
  int st = run_capture(log, sizeof log, "%s %s/%s > %s/%s.txt", prefix, dir, exe, dir, exe);
  cr_assert(st == 0, "%s: %s%s failed (%d):\n%s", c->name, prefix, exe, st, log);
}

/* Parameters are indices into cases: Criterion runs each test in a new
 * process of this executable, where pointers into the parent's data would
 * not be valid (a position-independent executable is mapped elsewhere). */
ParameterizedTestParameters(portable, aarch64_and_portable_match_x86) {
  static int index[sizeof cases / sizeof cases[0]];
  for (size_t i = 0; i < sizeof index / sizeof index[0]; i++)
    index[i] = (int)i;
  return cr_make_param_array(int, index, sizeof index / sizeof index[0]);
}

ParameterizedTest(int *i, portable, aarch64_and_portable_match_x86, .timeout = 300) {
  const Case *c = &cases[*i];
  require_cross_tools();
  char dir[512], nn[700], log[1 << 14];
  scratch_dir(dir, sizeof dir, c->name);
  if (c->text) {
    snprintf(nn, sizeof nn, "%s/%s.nn", dir, c->name);
    write_file(nn, c->text);
  } else {
    snprintf(nn, sizeof nn, NNCC_SOURCE_DIR "/examples/%s.nn", c->name);
  }
  int st = run_capture(log, sizeof log, "%s %s -o %s/%s.c --batch %d", NNCC_BIN, nn, dir,
                       c->name, c->batch);
  cr_assert(st == 0, "nncc failed (%d) on %s:\n%s", st, nn, log);

  build(dir, c, CROSS_CC, "-static", "arm");
  build(dir, c, NNCC_CC, "", "x86");
  build(dir, c, NNCC_CC, "-DNN_PORTABLE", "x86p");
  execute(dir, c, QEMU " ", "arm");
  execute(dir, c, "", "x86");
  execute(dir, c, "", "x86p");

  char path[700];
  static Dump arm, x86, x86p;
  snprintf(path, sizeof path, "%s/arm.txt", dir);
  parse_dump(&arm, path);
  snprintf(path, sizeof path, "%s/x86.txt", dir);
  parse_dump(&x86, path);
  snprintf(path, sizeof path, "%s/x86p.txt", dir);
  parse_dump(&x86p, path);
  compare(c->name, &arm, "aarch64", &x86p, "x86 NN_PORTABLE", true);
  log_worst(c->name, "aarch64 vs x86", compare(c->name, &arm, "aarch64", &x86, "x86", false));
  log_worst(c->name, "x86 NN_PORTABLE vs x86",
            compare(c->name, &x86p, "x86 NN_PORTABLE", &x86, "x86", false));
  free_dump(&arm);
  free_dump(&x86);
  free_dump(&x86p);
}

#else /* PORTABLE_DRIVER */

/*
 * The driver: built per model with PORTABLE_MODEL (the API prefix),
 * PORTABLE_HEADER, PORTABLE_N, PORTABLE_CLASSES, PORTABLE_X_SIZE and
 * PORTABLE_OUT_SIZE.  Prints records `kind name count` and then count hex
 * floats, one per line; exits non-zero if a call fails.
 */
#include <stdint.h>
#include <stdio.h>

#include PORTABLE_HEADER

#define PORTABLE_CAT_(a, b) a##_##b
#define PORTABLE_CAT(a, b) PORTABLE_CAT_(a, b)
#define API(f) PORTABLE_CAT(PORTABLE_MODEL, f)

static void dump(const char *kind, const char *name, const float *v, size_t n) {
  printf("%s %s %zu\n", kind, name, n);
  for (size_t i = 0; i < n; i++)
    printf("%a\n", (double)v[i]);
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Tensors by index: parameters are those with a gradient, buffers the
 * rest (batchnorm running statistics). */
enum { PARAMS, GRADS, BUFFERS };

static void dump_tensors(PORTABLE_MODEL *m, int what) {
  for (int i = 0; i < API(tensor_count)(); i++) {
    size_t n;
    const char *name = API(tensor_name)(i);
    const float *t = API(tensor)(m, i, &n);
    const float *g = API(grad)(m, i, NULL);
    if (what == PARAMS && g)
      dump("init", name, t, n);
    else if (what == GRADS && g)
      dump("grad", name, g, n);
    else if (what == BUFFERS && !g)
      dump("buffer", name, t, n);
  }
}

int main(void) {
  static float x[PORTABLE_N * PORTABLE_X_SIZE], probs[PORTABLE_N * PORTABLE_OUT_SIZE];
  static int32_t y[PORTABLE_N];
  /* Inputs in [-1, 1) on a 2^-23 grid: exact on every machine. */
  uint64_t s = 2026;
  for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
    x[i] = (float)(splitmix(&s) >> 40) * 0x1p-23f - 1.0f;
  for (int i = 0; i < PORTABLE_N; i++)
    y[i] = (int32_t)(splitmix(&s) % PORTABLE_CLASSES);

  PORTABLE_MODEL *m = API(create)(42);
  if (!m)
    return 2;
  dump_tensors(m, PARAMS);
  float loss;
  int st = API(forward)(m, PORTABLE_N, x, probs);
  if (st == 0) {
    dump("forward", "probs", probs, sizeof probs / sizeof probs[0]);
    st = API(gradients)(m, PORTABLE_N, x, y, &loss);
  }
  if (st == 0) {
    dump("loss", "loss", &loss, 1);
    dump_tensors(m, GRADS);
    dump_tensors(m, BUFFERS); /* running statistics the step updated */
    st = API(forward)(m, PORTABLE_N, x, probs);
  }
  if (st == 0)
    dump("forward_after_step", "probs", probs, sizeof probs / sizeof probs[0]);
  else
    fprintf(stderr, "%s (%s)\n", API(strerror)(st), API(last_error)(m));
  API(destroy)(m);
  return st != 0;
}

#endif /* PORTABLE_DRIVER */
