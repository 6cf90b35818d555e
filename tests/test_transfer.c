/*
 * test_transfer.c: examples/transfer (issue #16 item 8) on synthetic digits,
 * offline and in seconds.  The driver is built with its three generated
 * models under -Werror and run on noisy bars (tests/support: a bar in row
 * 4 + 2 * label, moved along its row, on a background of random pixels):
 * pre-training on classes 0-4 at batch 64, then the sparse and the full
 * fine-tune on 5-9 at batch 1.
 *
 * Checked independently of the driver's own bookkeeping: the sparse build
 * is compiled again and loaded with dlopen; the checkpoint before
 * fine-tuning and the one after are read into it through load and compared
 * tensor by tensor against the list of frozen tensors written out here (not
 * read from sparse.nn), and its test accuracy on 5-9 is recomputed with
 * forward and compared with the driver's.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define PIXELS 784

/* The accuracies (percent) of the table row starting with `row`: on 0-4,
 * 5-9 and 0-9. */
static void row_accuracy(const char *out, const char *row, double acc[3]) {
  const char *p = strstr(out, row);
  cr_assert(p, "no row '%s' in:\n%s", row, out);
  p = strchr(p, '%') - 6; /* the first number ends at the first '%' after the label */
  for (int i = 0; i < 3; i++) {
    char *end;
    acc[i] = strtod(p, &end);
    cr_assert(end != p && *end == '%', "row '%s' unreadable in:\n%s", row, out);
    p = end + 1;
  }
}

/* Whether the n floats of the tensor `name` are the same bits in a and b. */
static int same_tensor(const Compiled *cm, void *a, void *b, const char *name) {
  size_t na = 0, nb = 0;
  const float *ta = tensor_by_name(cm, a, "tensor", name, &na);
  const float *tb = tensor_by_name(cm, b, "tensor", name, &nb);
  cr_assert(ta && tb && na == nb && na > 0, "no tensor %s", name);
  return memcmp(ta, tb, na * sizeof *ta) == 0;
}

/* Fraction of the test digits of classes 5-9 (label = index % 10) that
 * model m classifies right among all ten classes. */
static double new_class_accuracy(const Compiled *cm, void *m, const char *dir, int count) {
  char path[700];
  snprintf(path, sizeof path, "%s/test-images-idx3-ubyte", dir);
  FILE *f = fopen(path, "rb");
  cr_assert(f);
  unsigned char *img = malloc((size_t)count * PIXELS);
  cr_assert(img && fseek(f, 16, SEEK_SET) == 0 && fread(img, PIXELS, (size_t)count, f) == (size_t)count);
  fclose(f);
  int (*forward)(void *, int, const float *, float *) =
      (int (*)(void *, int, const float *, float *))api(cm, "forward");
  int right = 0, total = 0;
  for (int i = 0; i < count; i++) {
    if (i % 10 < 5)
      continue;
    float x[PIXELS], p[10];
    for (int j = 0; j < PIXELS; j++)
      x[j] = img[(size_t)i * PIXELS + j] / 255.0f;
    cr_assert_eq(forward(m, 1, x, p), 0);
    int best = 0;
    for (int c = 1; c < 10; c++)
      best = p[c] > p[best] ? c : best;
    right += best == i % 10;
    total++;
  }
  free(img);
  return (double)right / total;
}

Test(transfer, sparse_fine_tune_learns_new_digits_and_keeps_frozen_tensors, .timeout = 300) {
  static const unsigned char labels[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  char dir[400], out[1 << 14];
  scratch_dir(dir, sizeof dir, "transfer");
  int st = run_capture(
      out, sizeof out,
      "cd '%s' && N='%s' && E='%s/examples/transfer' && $N $E/pretrain.nn -o lenet5_pretrain.c && "
      "$N $E/sparse.nn --batch 1 --threads 1 --eager-update -o lenet5_sparse.c && "
      "$N $E/full.nn --batch 1 --threads 1 --eager-update -o lenet5_full.c && "
      "'%s' -std=c11 -Wall -Wextra -Werror -pedantic -O2 -I. $E/transfer.c lenet5_pretrain.c "
      "lenet5_sparse.c lenet5_full.c -o transfer -lm",
      dir, NNCC_BIN, NNCC_SOURCE_DIR, NNCC_CC);
  cr_assert_eq(st, 0, "%s", out);
  write_idx_noisy_digits(dir, "train", 1000, labels, 7);
  write_idx_noisy_digits(dir, "test", 200, labels, 8);
  st = run_capture(out, sizeof out,
                   "cd '%s' && ./transfer --data . --out . --pre-epochs 4 --steps 300 --lr 0.02",
                   dir);
  cr_assert_eq(st, 0, "%s", out);

  /* Pre-trained on 0-4 only: it knows those and never says 5-9; each
   * fine-tune learns 5-9 far above chance (10% of ten classes, 20% of the
   * five new ones). */
  double pre[3], sparse[3], full[3];
  row_accuracy(out, "pre-trained on 0-4", pre);
  row_accuracy(out, "sparse fine-tune", sparse);
  row_accuracy(out, "full fine-tune", full);
  cr_expect_gt(pre[0], 90, "%s", out);
  cr_expect_lt(pre[1], 5, "%s", out);
  cr_expect_gt(sparse[1], 80, "%s", out);
  cr_expect_gt(full[1], 80, "%s", out);

  /* The checkpoints, read back by the sparse build itself. */
  Compiled cm = {0};
  snprintf(cm.dir, sizeof cm.dir, "%s/so", dir);
  cr_assert_eq(run("mkdir -p '%s'", cm.dir), 0);
  char nn[700], path[700];
  snprintf(nn, sizeof nn, "%s/examples/transfer/sparse.nn", NNCC_SOURCE_DIR);
  compile_model_file(&cm, "lenet5_sparse", nn, "--batch 1 --threads 1", "-O2");
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  int (*load)(void *, const char *) = (int (*)(void *, const char *))api(&cm, "load");
  void *before = create(1), *after = create(1), *fully = create(1);
  snprintf(path, sizeof path, "%s/pretrained.safetensors", dir);
  cr_assert_eq(load(before, path), 0);
  snprintf(path, sizeof path, "%s/sparse.safetensors", dir);
  cr_assert_eq(load(after, path), 0);
  snprintf(path, sizeof path, "%s/full.safetensors", dir); /* same layers, so it loads too */
  cr_assert_eq(load(fully, path), 0);

  /* stats=running: the batchnorm running statistics stay as they were too */
  static const char *const frozen[] = {
      "conv1.weight", "conv1.bias", "bn1.weight", "bn1.running_mean", "bn1.running_var",
      "conv2.weight", "conv2.bias", "bn2.weight", "bn2.running_mean", "bn2.running_var",
      "fc1.weight"};
  static const char *const trained[] = {"bn1.bias", "bn2.bias", "fc1.bias", "fc2.weight",
                                        "fc2.bias", "fc3.weight", "fc3.bias"};
  for (int i = 0; i < 11; i++)
    cr_expect(same_tensor(&cm, before, after, frozen[i]), "sparse: frozen %s changed", frozen[i]);
  for (int i = 0; i < 7; i++)
    cr_expect(!same_tensor(&cm, before, after, trained[i]), "sparse: %s did not train", trained[i]);
  /* the full fine-tune does change what the sparse one freezes (not the
   * convolutions' biases: before a batchnorm their gradient is 0) */
  for (int i = 0; i < 11; i++)
    if (!strstr(frozen[i], "conv") || strstr(frozen[i], "weight"))
      cr_expect(!same_tensor(&cm, before, fully, frozen[i]), "full: %s did not change", frozen[i]);

  double acc = new_class_accuracy(&cm, after, dir, 200);
  cr_expect_lt(fabs(100 * acc - sparse[1]), 0.01, "recomputed %.2f%%, the driver says %.2f%%",
               100 * acc, sparse[1]);
  destroy(before);
  destroy(after);
  destroy(fully);
  close_model(&cm);
}
