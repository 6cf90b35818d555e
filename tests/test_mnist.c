/*
 * test_mnist.c: the IDX reader of runtime/nn_idx.c, and the MNIST files that
 * scripts/get-mnist writes (when data/ holds them).
 *
 * The runtime files are compiled straight into this test after the prelude
 * the code generator writes, as in test_runtime.c.  Each test writes its own
 * small IDX file byte by byte and checks that the reader accepts exactly the
 * well-formed ones and names the problem in the others.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <sys/stat.h>
#include <unistd.h>

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef float real;
#define NN_REAL_DTYPE "F32"
#if defined(__GNUC__) || defined(__clang__)
#define NN_UNUSED __attribute__((unused))
#else
#define NN_UNUSED
#endif

#include "../runtime/nn_errors.c"
#include "../runtime/nn_idx.c"

/* ---- helpers ------------------------------------------------------------- */

static char *tmp_path(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/idx_%ld_%s", NNCC_TEST_TMP, (long)getpid(), name);
  return buf;
}

/* An IDX file: magic bytes, ndims big-endian dims, then nbytes of data
 * (pattern i*7) followed by `extra` more bytes (negative: cut off). */
static void write_idx(const char *path, const unsigned char magic[4], int ndims,
                      const uint32_t *dims, long extra) {
  FILE *f = fopen(path, "wb");
  cr_assert(f, "cannot create %s", path);
  fwrite(magic, 1, 4, f);
  uint64_t n = 1;
  for (int i = 0; i < ndims; i++) {
    unsigned char b[4] = {(unsigned char)(dims[i] >> 24), (unsigned char)(dims[i] >> 16),
                          (unsigned char)(dims[i] >> 8), (unsigned char)dims[i]};
    fwrite(b, 1, 4, f);
    n *= dims[i];
  }
  cr_assert(n < (1u << 24), "test data too large");
  long total = (long)n + extra;
  for (long i = 0; i < total; i++)
    fputc((int)(i * 7 & 0xff), f);
  cr_assert_eq(fclose(f), 0);
}

static const unsigned char IMAGES[4] = {0, 0, 8, 3};
static const unsigned char LABELS[4] = {0, 0, 8, 1};

/* Loads path expecting failure with status and a message containing both
 * the file name and `needle`. */
static void expect_error(const char *path, int ndims, int status, const char *needle) {
  int32_t dims[3] = {0};
  unsigned char *data = (unsigned char *)1;
  char err[256];
  int s = nn_idx_load_u8(path, ndims, dims, &data, err, sizeof err);
  cr_assert_eq(s, status, "status %d, expected %d (%s)", s, status, err);
  cr_assert_null(data);
  cr_assert(strstr(err, path), "message does not name the file: %s", err);
  cr_assert(strstr(err, needle), "message '%s' lacks '%s'", err, needle);
}

/* ---- the reader ---------------------------------------------------------- */

Test(idx, reads_images) {
  char path[512];
  uint32_t dims[3] = {5, 3, 4};
  write_idx(tmp_path(path, sizeof path, "img"), IMAGES, 3, dims, 0);
  int32_t d[3];
  unsigned char *data = NULL;
  char err[256];
  cr_assert_eq(nn_idx_load_u8(path, 3, d, &data, err, sizeof err), NN_OK, "%s", err);
  cr_assert(d[0] == 5 && d[1] == 3 && d[2] == 4);
  for (int i = 0; i < 60; i++)
    cr_assert_eq(data[i], (unsigned char)(i * 7 & 0xff), "byte %d", i);
  free(data);
}

Test(idx, reads_labels_and_sets_unused_dims_to_one) {
  char path[512];
  uint32_t dims[1] = {300}; /* > 255: the big-endian dims use two bytes */
  write_idx(tmp_path(path, sizeof path, "lab"), LABELS, 1, dims, 0);
  int32_t d[3] = {0, 0, 0};
  unsigned char *data = NULL;
  char err[256];
  cr_assert_eq(nn_idx_load_u8(path, 1, d, &data, err, sizeof err), NN_OK, "%s", err);
  cr_assert(d[0] == 300 && d[1] == 1 && d[2] == 1);
  cr_assert_eq(data[299], (unsigned char)(299 * 7 & 0xff));
  free(data);
}

Test(idx, refuses_missing_file) {
  char path[512];
  expect_error(tmp_path(path, sizeof path, "nonexistent"), 3, NN_ERR_IO, "No such file");
}

Test(idx, refuses_truncated_data) {
  char path[512];
  uint32_t dims[3] = {10, 28, 28};
  write_idx(tmp_path(path, sizeof path, "trunc"), IMAGES, 3, dims, -1);
  expect_error(path, 3, NN_ERR_DATA, "truncated");
}

Test(idx, refuses_trailing_bytes) {
  char path[512];
  uint32_t dims[1] = {10};
  write_idx(tmp_path(path, sizeof path, "trail"), LABELS, 1, dims, 3);
  expect_error(path, 1, NN_ERR_DATA, "trailing bytes");
}

Test(idx, refuses_truncated_header) {
  char path[512];
  FILE *f = fopen(tmp_path(path, sizeof path, "hdr"), "wb");
  fwrite(IMAGES, 1, 4, f);
  fwrite("\0\0\0\1\0\0", 1, 6, f); /* two and a half dims */
  fclose(f);
  expect_error(path, 3, NN_ERR_DATA, "header");
  f = fopen(path, "wb");
  fwrite("\0\0", 1, 2, f);
  fclose(f);
  expect_error(path, 3, NN_ERR_DATA, "too short");
}

Test(idx, refuses_bad_magic) {
  char path[512];
  uint32_t dims[3] = {2, 28, 28};
  const unsigned char floats[4] = {0, 0, 0x0d, 3}; /* IDX of float32 */
  write_idx(tmp_path(path, sizeof path, "float"), floats, 3, dims, 0);
  expect_error(path, 3, NN_ERR_DATA, "magic 00000d03");
  const unsigned char png[4] = {0x89, 'P', 'N', 'G'};
  write_idx(path, png, 3, dims, 0);
  expect_error(path, 3, NN_ERR_DATA, "not an IDX file");
}

Test(idx, refuses_wrong_ndims) {
  char path[512];
  uint32_t dims[3] = {4, 28, 28};
  write_idx(tmp_path(path, sizeof path, "nd"), IMAGES, 3, dims, 0);
  expect_error(path, 1, NN_ERR_DATA, "3 dimensions, expected 1");
  write_idx(path, LABELS, 1, dims, 0);
  expect_error(path, 3, NN_ERR_DATA, "1 dimensions, expected 3");
}

Test(idx, refuses_zero_and_huge_dims) {
  char path[512];
  FILE *f = fopen(tmp_path(path, sizeof path, "huge"), "wb");
  fwrite(IMAGES, 1, 4, f);
  fwrite("\xff\xff\xff\xff\0\0\0\x1c\0\0\0\x1c", 1, 12, f); /* 2^32 - 1 images */
  fclose(f);
  expect_error(path, 3, NN_ERR_DATA, "dimension 0 is 4294967295");
  f = fopen(path, "wb");
  fwrite(IMAGES, 1, 4, f);
  fwrite("\x7f\xff\xff\xff\x7f\xff\xff\xff\x7f\xff\xff\xff", 1, 12, f); /* product ~2^93 */
  fclose(f);
  expect_error(path, 3, NN_ERR_DATA, "too large");
  uint32_t zero[3] = {3, 0, 28};
  write_idx(path, IMAGES, 3, zero, 0);
  expect_error(path, 3, NN_ERR_DATA, "dimension 1 is 0");
}

Test(idx, refuses_bad_arguments) {
  int32_t d[3];
  unsigned char *data;
  char err[64];
  cr_assert_eq(nn_idx_load_u8(NULL, 3, d, &data, err, sizeof err), NN_ERR_ARG);
  cr_assert_eq(nn_idx_load_u8("x", 4, d, &data, err, sizeof err), NN_ERR_ARG);
  cr_assert_eq(nn_idx_load_u8("x", 3, d, NULL, NULL, 0), NN_ERR_ARG);
}

Test(idx, truncates_long_messages_safely) {
  char path[512];
  uint32_t dims[1] = {10};
  write_idx(tmp_path(path, sizeof path, "short_err"), LABELS, 1, dims, 1);
  int32_t d[3];
  unsigned char *data;
  char err[8];
  memset(err, 'x', sizeof err);
  cr_assert_eq(nn_idx_load_u8(path, 1, d, &data, err, sizeof err), NN_ERR_DATA);
  cr_assert_eq(err[7], '\0');
}

/* ---- the files scripts/get-mnist writes ----------------------------------- */

static int have_data(void) {
  struct stat st;
  return stat(NNCC_SOURCE_DIR "/data/test-labels-idx1-ubyte", &st) == 0;
}

/* Counts, shapes and label range of data/; skipped before get-mnist ran. */
Test(mnist, data_files_are_well_formed) {
  if (!have_data())
    cr_skip_test("data/ is empty: run scripts/get-mnist");
  const char *sets[2] = {"train", "test"};
  const int32_t counts[2] = {8000, 2000};
  for (int s = 0; s < 2; s++) {
    char img[512], lab[512], err[256];
    snprintf(img, sizeof img, "%s/data/%s-images-idx3-ubyte", NNCC_SOURCE_DIR, sets[s]);
    snprintf(lab, sizeof lab, "%s/data/%s-labels-idx1-ubyte", NNCC_SOURCE_DIR, sets[s]);
    int32_t di[3], dl[3];
    unsigned char *x, *y;
    cr_assert_eq(nn_idx_load_u8(img, 3, di, &x, err, sizeof err), NN_OK, "%s", err);
    cr_assert_eq(nn_idx_load_u8(lab, 1, dl, &y, err, sizeof err), NN_OK, "%s", err);
    cr_assert(di[0] == counts[s] && di[1] == 28 && di[2] == 28 && dl[0] == counts[s]);
    int per[10] = {0};
    for (int i = 0; i < counts[s]; i++) {
      cr_assert_lt(y[i], 10);
      per[y[i]]++;
    }
    for (int c = 0; c < 10; c++) /* shuffled: every class is well represented */
      cr_assert_gt(per[c], counts[s] / 20, "%s: class %d has %d samples", sets[s], c, per[c]);
    free(x);
    free(y);
  }
}

/* ---- examples/train_mnist.c ------------------------------------------------ */

#include "harness.h"

/* dir/<set>-images-idx3-ubyte and -labels-idx1-ubyte: count 28x28 digits,
 * a bright bar in row 4 + 2*label, so the classes are easy to tell apart. */
static void write_digits(const char *dir, const char *set, int count) {
  static const unsigned char labels[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  write_idx_digits(dir, set, count, labels);
}

/* The example builds with the generated lenet5 under -Werror, trains,
 * writes the checkpoint and both curve files, resumes, and explains a
 * missing data directory. */
Test(train_mnist, example_runs_end_to_end, .timeout = 300) {
  char dir[512], out[16384], path[700];
  scratch_dir(dir, sizeof dir, "train_mnist");
  int st = run_capture(out, sizeof out,
                       "cd '%s' && '%s' '%s/examples/lenet5.nn' -o lenet5.c && '%s' -std=c11 "
                       "-Wall -Wextra -Werror -pedantic -O2 -I. '%s/examples/train_mnist.c' "
                       "lenet5.c -o train_mnist -lm",
                       dir, NNCC_BIN, NNCC_SOURCE_DIR, NNCC_CC, NNCC_SOURCE_DIR);
  cr_assert_eq(st, 0, "%s", out);
  write_digits(dir, "train", 1500);
  write_digits(dir, "test", 100);
  st = run_capture(out, sizeof out, "cd '%s' && ./train_mnist --data . --epochs 3 --shift 0", dir);
  cr_assert_eq(st, 0, "%s", out);
  cr_assert(strstr(out, "test accuracy: ") && strstr(out, "on 100 digits"), "%s", out);
  double acc = strtod(strstr(out, "test accuracy: ") + 15, NULL);
  cr_assert_gt(acc, 95, "ten bars not learned in 3 epochs:\n%s", out);
  const char *files[] = {"lenet5.safetensors", "curves.csv", "curves.svg"};
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    char *text = read_text(path);
    cr_assert(text, "%s not written", files[i]);
    if (i == 1)
      cr_assert(strncmp(text, "epoch,loss,", 11) == 0 && strstr(text, "\n3,"), "%s", text);
    if (i == 2)
      cr_assert(strstr(text, "<svg") && strstr(text, "<polyline") && strstr(text, "</svg>"));
    free(text);
  }
  st = run_capture(out, sizeof out,
                   "cd '%s' && ./train_mnist --data . --epochs 4 --shift 1 --resume lenet5.safetensors "
                   "--out r.st",
                   dir);
  cr_assert_eq(st, 0, "%s", out);
  /* it goes on after the epoch of the best checkpoint, not from 1 */
  cr_assert(strstr(out, "..4\n") && !strstr(out, "epochs 1.."), "resume restarted:\n%s", out);
  st = run_capture(out, sizeof out, "cd '%s' && ./train_mnist --data nowhere", dir);
  cr_assert_eq(st, 1, "%s", out);
  cr_assert(strstr(out, "run scripts/get-mnist"), "%s", out);
}
