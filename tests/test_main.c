/*
 * test_main.c: nncc --main=train|infer|bench.  The emitted model.c alone must
 * build (under -Werror -pedantic, with and without OpenMP) into a program
 * that benchmarks, trains on IDX files and scores saved weights.
 *
 * The data set is written by the test: 200 8x8 images of two easy classes
 * (bright left half = 0, bright right half = 1, plus noise), so training
 * must drive the loss down and the accuracy up within a few epochs.  The
 * error paths (missing, wrong-sized or mislabelled files, bad options,
 * models that do not fit --main) must fail with a message and exit 1 or 2.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define SIDE 8
#define COUNT 200

static const char model[] =
    "model tiny\n"
    "input  x: f32[1, 8, 8]\n"
    "target y: class[2]\n"
    "h = flatten(x) |> dense(16) |> relu\n"
    "logits = dense(h, 2)\n"
    "output probs = softmax(logits)\n"
    "loss cross_entropy(logits, y)\n"
    "train {\n  optimizer adam(lr=1e-2)\n}\n";

static void put_be32(FILE *f, unsigned v) {
  unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                        (unsigned char)(v >> 8), (unsigned char)v};
  fwrite(b, 1, 4, f);
}

/* dir/images (count x side x side) and dir/labels (count); label k of
 * sample i is i % 2, or bad_label for the last sample when >= 0. */
static void write_data(const char *dir, int count, int side, int labels, int bad_label) {
  char path[700];
  snprintf(path, sizeof path, "%s/images", dir);
  FILE *f = fopen(path, "wb");
  cr_assert(f);
  put_be32(f, 0x803), put_be32(f, (unsigned)count), put_be32(f, (unsigned)side),
      put_be32(f, (unsigned)side);
  uint64_t s = 7;
  for (int i = 0; i < count; i++)
    for (int p = 0; p < side * side; p++) {
      s = s * 6364136223846793005u + 1442695040888963407u;
      int noise = (int)(s >> 58), left = p % side < side / 2;
      fputc(left == (i % 2 == 0) ? 200 + noise : noise, f);
    }
  cr_assert_eq(fclose(f), 0);
  snprintf(path, sizeof path, "%s/labels", dir);
  f = fopen(path, "wb");
  put_be32(f, 0x801), put_be32(f, (unsigned)labels);
  for (int i = 0; i < labels; i++)
    fputc(bad_label >= 0 && i == labels - 1 ? bad_label : i % 2, f);
  cr_assert_eq(fclose(f), 0);
}

/* Emits the model with --main=kind and builds dir/model with cflags. */
static void build(char *dir, size_t cap, const char *tag, const char *src, const char *opts,
                  const char *cflags) {
  scratch_dir(dir, cap, tag);
  char path[700], out[8192];
  snprintf(path, sizeof path, "%s/model.nn", dir);
  write_file(path, src);
  int st = run_capture(out, sizeof out, "'%s' '%s/model.nn' %s -o '%s/model.c'", NNCC_BIN, dir,
                       opts, dir);
  cr_assert_eq(st, 0, "nncc failed:\n%s", out);
  st = run_capture(out, sizeof out,
                   "cd '%s' && '%s' -std=c11 -Wall -Wextra -Werror -pedantic -O1 %s model.c "
                   "-o model -lm",
                   dir, NNCC_CC, cflags);
  cr_assert_eq(st, 0, "cc failed:\n%s", out);
}

/* The mean losses printed by "./model train", in order. */
static int losses(const char *out, double *loss, int cap) {
  int n = 0;
  for (const char *p = strstr(out, "loss "); p && n < cap; p = strstr(p + 1, "loss "))
    loss[n++] = strtod(p + 5, NULL);
  return n;
}

Test(main, bench_train_and_infer, .timeout = 120) {
  char dir[512], out[16384];
  build(dir, sizeof dir, "main_train", model, "--main=train --batch 16", "-fopenmp");
  write_data(dir, COUNT, SIDE, COUNT, -1);

  int st = run_capture(out, sizeof out, "cd '%s' && ./model bench --runs 3", dir);
  cr_assert_eq(st, 0, "%s", out);
  cr_assert(strstr(out, "forward") && strstr(out, "train_step") && strstr(out, "median"), "%s",
            out);

  st = run_capture(out, sizeof out,
                   "cd '%s' && ./model train images labels --epochs 6 --seed 3 --out w.st", dir);
  cr_assert_eq(st, 0, "%s", out);
  double loss[16];
  int n = losses(out, loss, 16);
  cr_assert_eq(n, 6, "expected 6 epochs:\n%s", out);
  cr_assert_lt(loss[5], 0.5 * loss[0], "loss did not decrease:\n%s", out);
  cr_assert(strstr(out, "accuracy 100.00%"), "did not learn two easy classes:\n%s", out);

  st = run_capture(out, sizeof out, "cd '%s' && ./model infer w.st images labels", dir);
  cr_assert_eq(st, 0, "%s", out);
  cr_assert(strstr(out, "accuracy 100.00% on 200 samples"), "%s", out);
  st = run_capture(out, sizeof out, "cd '%s' && ./model infer w.st images | wc -l", dir);
  cr_assert_eq(st, 0);
  cr_assert_eq(atoi(out), COUNT, "one line per sample expected, got %s", out);
  st = run_capture(out, sizeof out, "cd '%s' && ./model infer w.st images | sed -n 2p", dir);
  cr_assert_str_eq(out, "1 1\n");
}

Test(main, builds_without_openmp_and_with_clang, .timeout = 120) {
  char dir[512], out[4096];
  build(dir, sizeof dir, "main_plain", model, "--main=bench", "");
  cr_assert_eq(run_capture(out, sizeof out, "cd '%s' && ./model bench --runs 1 --batch 5", dir),
               0, "%s", out);
  if (run("command -v clang >/dev/null 2>&1") == 0) {
    int st = run_capture(out, sizeof out,
                         "cd '%s' && clang -std=c11 -Wall -Wextra -Werror -pedantic -O1 model.c "
                         "-o model_clang -lm",
                         dir);
    cr_assert_eq(st, 0, "%s", out);
  }
}

/* ./model ARGS must exit `status` with `needle` in its output. */
static void expect_run(const char *dir, const char *args, int status, const char *needle) {
  char out[4096];
  int st = run_capture(out, sizeof out, "cd '%s' && ./model %s", dir, args);
  cr_assert_eq(st, status, "./model %s: exit %d, expected %d:\n%s", args, st, status, out);
  cr_assert(strstr(out, needle), "./model %s: no '%s' in:\n%s", args, needle, out);
}

Test(main, run_time_errors, .timeout = 120) {
  char dir[512];
  build(dir, sizeof dir, "main_err", model, "--main=train", "");
  write_data(dir, 20, SIDE, 20, -1);
  expect_run(dir, "", 2, "usage:");
  expect_run(dir, "fly", 2, "usage:");
  expect_run(dir, "train images", 2, "usage:");
  expect_run(dir, "train missing labels", 1, "missing: No such file");
  expect_run(dir, "train images labels --epochs zero", 2, "bad option or value");
  expect_run(dir, "train labels labels", 1, "expected 3");
  expect_run(dir, "infer nothing.st images labels", 1, "cannot load weights");
  expect_run(dir, "bench --runs 0", 2, "bad option");

  write_data(dir, 20, 5, 20, -1); /* 5x5 images for an 8x8 input */
  expect_run(dir, "train images labels", 1, "5x5 = 25 pixels, the model's input has 64");
  write_data(dir, 20, SIDE, 19, -1);
  expect_run(dir, "train images labels", 1, "20 images but 19 labels");
  write_data(dir, 20, SIDE, 20, 7);
  expect_run(dir, "train images labels", 1, "label 7 of sample 19 is not below 2");
}

/* nncc refuses models --main cannot drive, before writing anything. */
static void expect_refused(const char *src, const char *opts, int status, const char *needle) {
  char dir[512], path[700], out[4096];
  scratch_dir(dir, sizeof dir, "main_refuse");
  snprintf(path, sizeof path, "%s/m.nn", dir);
  write_file(path, src);
  int st = run_capture(out, sizeof out, "'%s' '%s' %s -o '%s/m.c'", NNCC_BIN, path, opts, dir);
  cr_assert_eq(st, status, "exit %d, expected %d:\n%s", st, status, out);
  cr_assert(strstr(out, needle), "no '%s' in:\n%s", needle, out);
  snprintf(path, sizeof path, "%s/m.c", dir);
  char *c = read_text(path);
  cr_assert_null(c, "m.c written despite the error");
}

Test(main, compile_time_errors, .timeout = 60) {
  expect_refused("model r\ninput x: f32[4]\ntarget t: f32[2]\noutput o = dense(x, 2)\n"
                 "loss mse(o, t)\n",
                 "--main=train", 1, "nncc: error: --main needs");
  expect_refused("model two\ninput a: f32[4]\ninput b: f32[4]\ntarget y: class[2]\n"
                 "l = add(dense(a, 2), dense(b, 2))\noutput p = softmax(l)\n"
                 "loss cross_entropy(l, y)\n",
                 "--main=bench", 1, "exactly one real input");
  expect_refused(model, "--main=train --infer", 1, "--main needs");
  expect_refused(model, "--main=fly", 2, "--main takes train, infer or bench");
  expect_refused(model, "--main", 2, "--main needs a value");
}

Test(main, infer_only_build, .timeout = 60) {
  char dir[512];
  build(dir, sizeof dir, "main_infer", model, "--main=infer --infer", "");
  write_data(dir, 20, SIDE, 20, -1);
  expect_run(dir, "train images labels", 2, "usage:");
  expect_run(dir, "bench --runs 2", 0, "forward");
}
