/*
 * test_budget.c: --memory-budget BYTES and the kernels without workspace it
 * falls back to (direct convolutions, the in-place pointwise product, the
 * matrix-vector dense layer).
 *
 * A small model with every kind of layer a microcontroller model has (3x3,
 * depthwise strided, pointwise, dense) at --batch 1: its default build
 * (fastest kernels, whose products test_op_conv2d and test_op_dense check
 * against naive references) gives memory_size() M.  With a budget of M - 1
 * nncc must switch kernels: memory_size() within the budget, outputs (and a
 * training step's loss) equal to the default build's within f32 rounding.
 * A budget below the activations themselves is an error that says by how
 * much and which tensors are live at the peak, and writes nothing.  A
 * residual add fused into a conv writes over its dying operand.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static const char model[] =
    "model bud\n"
    "input  x: f32[3, 16, 12]\n"
    "target y: class[10]\n"
    "h = conv2d(x, 16, kernel=3, padding=same) |> batchnorm |> relu\n"
    "h = conv2d(h, 16, kernel=3, stride=2, groups=16, padding=same) |> batchnorm |> relu\n"
    "h = conv2d(h, 24, kernel=1) |> batchnorm |> relu\n"
    "h = conv2d(h, 8, kernel=(3, 2), pad=(1, 0)) |> relu\n"
    "logits = flatten(h) |> dense(10)\n"
    "output probs = softmax(logits)\n"
    "loss cross_entropy(logits, y)\n"
    "train {\n  optimizer sgd(lr=0.1)\n}\n";

enum { XS = 3 * 16 * 12, PS = 10 };

typedef size_t (*size_fn)(void);
typedef void *(*create_fn)(uint64_t);
typedef void (*destroy_fn)(void *);
typedef int (*forward_fn)(void *, int, const float *, float *);
typedef int (*step_fn)(void *, int, const float *, const int32_t *, float *);

/* Builds the model with `opts`; its memory_size, outputs for a fixed input
 * and (training builds) the loss of one step. */
static size_t run_model(const char *opts, float *probs, float *loss) {
  Compiled cm;
  compile_model(&cm, "bud", model, opts, "-O2");
  size_t mem = ((size_fn)api(&cm, "memory_size"))();
  void *m = ((create_fn)api(&cm, "create"))(3);
  cr_assert(m);
  float x[XS];
  fill_uniform(x, XS, 5, -1, 1);
  cr_assert_eq(((forward_fn)api(&cm, "forward"))(m, 1, x, probs), 0);
  if (loss) {
    int32_t y = 7;
    cr_assert_eq(((step_fn)api(&cm, "train_step"))(m, 1, x, &y, loss), 0);
  }
  ((destroy_fn)api(&cm, "destroy"))(m);
  close_model(&cm);
  return mem;
}

static void expect_close(const float *got, const float *want, int n, const char *what) {
  for (int i = 0; i < n; i++)
    cr_expect(fabsf(got[i] - want[i]) <= 1e-5f * fmaxf(1, fabsf(want[i])), "%s %d: %g, want %g",
              what, i, got[i], want[i]);
}

static void fits_with_kernels_without_workspace(const char *build) {
  char opts[256];
  float want[PS], got[PS], loss_want = 0, loss_got = 0;
  bool train = strstr(build, "--infer") == NULL;
  size_t plain = run_model(build, want, train ? &loss_want : NULL);
  snprintf(opts, sizeof opts, "%s --memory-budget %zu", build, plain - 1);
  size_t lean = run_model(opts, got, train ? &loss_got : NULL);
  cr_expect_lt(lean, plain, "budget %zu: memory_size %zu", plain - 1, lean);
  expect_close(got, want, PS, "probs");
  if (train)
    expect_close(&loss_got, &loss_want, 1, "loss");
}

Test(budget, inference_fits_with_kernels_without_workspace) {
  fits_with_kernels_without_workspace("--infer --batch 1 --threads 1");
}

Test(budget, training_fits_with_kernels_without_workspace) {
  fits_with_kernels_without_workspace("--batch 1 --threads 2");
}

/* A budget the fastest kernels meet changes nothing: the same kernels and
 * plan (--report prints both). */
Test(budget, a_loose_budget_changes_nothing) {
  char dir[512], path[700], msg[4096];
  scratch_dir(dir, sizeof dir, "budget_loose");
  snprintf(path, sizeof path, "%s/bud.nn", dir);
  write_file(path, model);
  int st = run_capture(msg, sizeof msg,
                       "cd '%s' && '%s' bud.nn --batch 1 --report > a.txt && '%s' bud.nn "
                       "--batch 1 --memory-budget 64M --report > b.txt && cmp a.txt b.txt 2>&1 && "
                       "grep -c 'in place' a.txt",
                       dir, NNCC_BIN, NNCC_BIN);
  cr_assert_eq(st, 0, "%s", msg);
}

Test(budget, too_small_says_by_how_much_and_what_is_live) {
  char dir[512], path[700], msg[4096];
  scratch_dir(dir, sizeof dir, "budget_small");
  snprintf(path, sizeof path, "%s/bud.nn", dir);
  write_file(path, model);
  /* the first layer's output alone is 16 x 16 x 12 x 4 = 12288 bytes */
  int st = run_capture(msg, sizeof msg, "cd '%s' && '%s' bud.nn --infer --batch 1 "
                       "--memory-budget 8K -o out.c 2>&1", dir, NNCC_BIN);
  cr_expect_eq(st, 1, "%s", msg);
  cr_expect(strstr(msg, "nncc: error: --memory-budget 8192: memory_size() needs about ") != NULL,
            "%s", msg);
  cr_expect(strstr(msg, "live at the arena's peak: ") && strstr(msg, "12288 bytes"), "%s", msg);
  snprintf(path, sizeof path, "%s/out.c", dir);
  cr_expect(access(path, F_OK) != 0, "out.c written");
}

Test(budget, bad_values_are_usage_errors) {
  static const char *const bad[] = {"0", "-5", "12Q", "K", "1125899906842625", "2000000000M"};
  char msg[4096];
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int st = run_capture(msg, sizeof msg, "'%s' x.nn --memory-budget '%s' 2>&1", NNCC_BIN, bad[i]);
    cr_expect_eq(st, 2, "%s: %s", bad[i], msg);
    cr_expect(strstr(msg, "--memory-budget takes a size in bytes") != NULL, "%s: %s", bad[i], msg);
  }
}

/* A residual add fused into the conv that computes its other operand: the
 * output takes over the dying operand's storage, so at that step two
 * 8 x 10 x 10 tensors are live (3200 bytes each), not three; the outputs are
 * bit-identical to --no-plan's, where every tensor has its own buffer. */
static const char residual[] =
    "model res\n"
    "input  x: f32[3, 10, 10]\n"
    "a = conv2d(x, 8, kernel=1) |> relu\n"
    "h = conv2d(a, 8, kernel=3, pad=1) |> relu\n"
    "h = conv2d(h, 8, kernel=3, pad=1)\n"
    "output y = relu(a + h) |> global_avgpool |> flatten |> dense(4)\n";

static void residual_outputs(const char *opts, float *y) {
  Compiled cm;
  compile_model(&cm, "res", residual, opts, "-O2");
  void *m = ((create_fn)api(&cm, "create"))(9);
  float x[300];
  fill_uniform(x, 300, 4, -1, 1);
  cr_assert_eq(((forward_fn)api(&cm, "forward"))(m, 1, x, y), 0);
  ((destroy_fn)api(&cm, "destroy"))(m);
  close_model(&cm);
}

Test(budget, residual_add_in_place) {
  char dir[512], path[700], msg[8192];
  scratch_dir(dir, sizeof dir, "budget_residual");
  snprintf(path, sizeof path, "%s/res.nn", dir);
  write_file(path, residual);
  int st = run_capture(msg, sizeof msg, "cd '%s' && '%s' res.nn --infer --batch 1 --threads 1 "
                       "--memory-budget 16K --report", dir, NNCC_BIN);
  cr_assert_eq(st, 0, "%s", msg);
  const char *arena = strstr(msg, "  arena ");
  cr_assert(arena, "%s", msg);
  cr_expect_eq(strtol(arena + 8, NULL, 10), 2 * 3200, "%s", msg);
  float planned[4], apart[4], lean[4];
  residual_outputs("--infer --batch 1", planned);   /* the default kernels, in place too */
  residual_outputs("--infer --batch 1 --no-plan", apart);
  cr_expect_eq(memcmp(planned, apart, sizeof planned), 0, "in place differs from apart");
  residual_outputs("--infer --batch 1 --memory-budget 16K", lean);
  expect_close(lean, planned, 4, "direct kernels");
}
