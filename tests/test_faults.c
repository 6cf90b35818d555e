/*
 * test_faults.c: examples/train_mnist.c on its error paths, built with
 * AddressSanitizer and LeakSanitizer: every failure prints a message that
 * says what is wrong, exits 1, and frees everything (a leak report fails
 * the test here, not only through ctest's FAIL_REGULAR_EXPRESSION).  Its
 * curve files are written like checkpoints: whole or not at all, never
 * through a link.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static char dir[512];

static void write_digits(const char *set, int count, const unsigned char labels[10]) {
  write_idx_digits(dir, set, count, labels);
}

static const unsigned char good[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};

/* lenet5 and train_mnist under ASan + LSan (+ UBSan) in a fresh dir. */
static void build(void) {
  char log[16384];
  scratch_dir(dir, sizeof dir, "faults");
  int st = run_capture(log, sizeof log,
                       "cd '%s' && '%s' '%s/examples/lenet5.nn' -o lenet5.c && '%s' -std=c11 -Wall "
                       "-Wextra -Werror -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer "
                       "-I. '%s/examples/train_mnist.c' lenet5.c -o train_mnist -lm",
                       dir, NNCC_BIN, NNCC_SOURCE_DIR, NNCC_CC, NNCC_SOURCE_DIR);
  cr_assert_eq(st, 0, "%s", log);
}

/* Runs ./train_mnist ARGS; expects exit status want, `say` in its output
 * and no sanitizer report. */
static void expect_run(const char *args, int want, const char *say) {
  static char out[65536];
  int st = run_capture(out, sizeof out,
                       "cd '%s' && ASAN_OPTIONS=detect_leaks=1:exitcode=23 ./train_mnist %s", dir,
                       args);
  cr_expect_eq(st, want, "train_mnist %s: exit %d, want %d:\n%s", args, st, want, out);
  cr_expect(strstr(out, say), "train_mnist %s: want '%s' in:\n%s", args, say, out);
  cr_expect(!strstr(out, "Sanitizer"), "train_mnist %s:\n%s", args, out);
}

Test(train_mnist_faults, error_paths_say_why_and_free_everything, .timeout = 300) {
  build();
  /* a label out of range used to exit 1 without a word */
  const unsigned char bad[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 10};
  write_digits("train", 1100, bad);
  write_digits("test", 20, good);
  expect_run("--data .", 1, "label 10 of digit 9 is out of range 0..9");
  /* the test set is missing after the training set loaded */
  write_digits("train", 1100, good);
  char path[700];
  snprintf(path, sizeof path, "%s/test-images-idx3-ubyte", dir);
  remove(path);
  expect_run("--data .", 1, "cannot open ./test-images-idx3-ubyte");
  write_digits("test", 20, good);
  /* too few training digits */
  write_digits("train", 900, good);
  expect_run("--data .", 1, "needs more than the 1000 held out");
  write_digits("train", 1100, good);
  /* a checkpoint that does not exist, a learning rate the model refuses */
  expect_run("--data . --resume nothing.safetensors", 1, "cannot open \"nothing.safetensors\"");
  /* a checkpoint that cannot be written: after an epoch of training */
  expect_run("--data . --epochs 1 --out no/such/dir/m.safetensors", 1, "cannot create");
  /* and the good run: checkpoint and curves written, no temporaries left */
  expect_run("--data . --epochs 1", 0, "test accuracy");
  DIR *d = opendir(dir);
  for (struct dirent *e; (e = readdir(d));)
    cr_expect(!strstr(e->d_name, ".tmp"), "left behind: %s", e->d_name);
  closedir(d);
}

/* curves.csv is replaced, not written through: a link at its name stays
 * pointing at its target, untouched. */
Test(train_mnist_faults, curves_are_replaced_not_written_through, .timeout = 300) {
  build();
  write_digits("train", 1100, good);
  write_digits("test", 20, good);
  char victim[700], link[700];
  snprintf(victim, sizeof victim, "%s/victim", dir);
  snprintf(link, sizeof link, "%s/curves.csv", dir);
  write_file(victim, "precious");
  cr_assert_eq(symlink(victim, link), 0);
  expect_run("--data . --epochs 1", 0, "curves: curves.csv");
  char *v = read_text(victim), *csv = read_text(link);
  cr_expect_str_eq(v, "precious");
  cr_expect(csv && strncmp(csv, "epoch,loss,", 11) == 0, "%s", csv ? csv : "(none)");
  struct stat st;
  cr_expect(lstat(link, &st) == 0 && S_ISREG(st.st_mode), "curves.csv is not a new file");
  free(v);
  free(csv);
}
