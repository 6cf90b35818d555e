/*
 * test_mpi.c: --distributed=mpi under mpirun (ctest label mpi).
 *
 * tests/mpi/driver.c trains a model for a few steps, once as one process on
 * the whole batch (the model built without --distributed) and once as 2 or
 * 3 ranks on shards of it (3 ranks split 8 samples 2, 3, 3): the ranks must
 * end bit for bit identical, and equal to the one process within rounding
 * (f64: 1e-9; f32: 1e-4), step losses included.  The driver starts each rank
 * from its own seed, so the first step must broadcast rank 0's weights, and
 * it round-trips a checkpoint with each rank perturbed differently in
 * between.  Faults: one rank's bad label or NaN input fails the step on every
 * rank, weights unchanged, and later steps go on; ranks compiled from
 * different models or --batch fail at the first step with a message.
 * Every mpirun runs under `timeout`, so a hang fails the test.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define MPIRUN "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 60 mpirun --oversubscribe"

static const char mlp[] =
    "model net\n"
    "input  x: f32[64]\n"
    "target y: class[10]\n"
    "logits = dense(x, 512) |> relu |> dense(256) |> relu |> dense(10)\n"
    "output probs = softmax(logits)\n"
    "loss   cross_entropy(logits, y)\n"
    "train {\n  optimizer sgd(lr=0.05, momentum=0.9)\n}\n";

static const char conv[] =
    "model net\n"
    "input  x: f32[2, 8, 8]\n"
    "target y: class[4]\n"
    "h = conv2d(x, 6, kernel=3, pad=1) |> relu |> maxpool(2)\n"
    "logits = flatten(h) |> dense(4)\n"
    "output probs = softmax(logits)\n"
    "loss   cross_entropy(logits, y)\n"
    "train {\n  optimizer adam(lr=0.01)\n}\n";

static const char conv_bn[] =
    "model net\n"
    "input  x: f32[2, 8, 8]\n"
    "target y: class[4]\n"
    "h = conv2d(x, 6, kernel=3, pad=1) |> batchnorm |> relu |> maxpool(2)\n"
    "logits = flatten(h) |> dense(4)\n"
    "output probs = softmax(logits)\n"
    "loss   cross_entropy(logits, y)\n"
    "train {\n  optimizer sgd(lr=0.05, momentum=0.9)\n}\n";

static void require_mpi(void) {
  if (run("command -v mpicc >/dev/null && command -v mpirun >/dev/null") == 0)
    return;
  /* CI installs Open MPI (scripts/install-deps): there, its absence is a failure */
  cr_assert(!getenv("CI"), "mpicc or mpirun missing: apt-get install libopenmpi-dev openmpi-bin");
  cr_skip_test("Open MPI is not installed (libopenmpi-dev, openmpi-bin)");
}

/* dir/<sub>/net.c from model text with nncc `opts`, and dir/<sub>/driver
 * built on it: with mpicc and -DDIST when dist. */
static void build(const char *dir, const char *sub, const char *model, const char *opts,
                  bool dist) {
  char log[16384];
  cr_assert_eq(run("mkdir -p %s/%s", dir, sub), 0);
  char nn[700];
  snprintf(nn, sizeof nn, "%s/%s/net.nn", dir, sub);
  write_file(nn, model);
  int st = run_capture(log, sizeof log, "%s %s %s%s -o %s/%s/net.c", NNCC_BIN, nn, opts,
                       dist ? " --distributed=mpi" : "", dir, sub);
  cr_assert_eq(st, 0, "nncc failed:\n%s", log);
  st = run_capture(log, sizeof log,
                   "%s -std=c11 -O2 -Wall -Wextra -Werror %s %s -I%s/%s %s/tests/mpi/driver.c "
                   "%s/%s/net.c -lm -o %s/%s/driver",
                   dist ? "mpicc" : NNCC_CC, dist ? "-DDIST" : "",
                   strstr(opts, "f64") ? "-DREAL=double" : "", dir, sub, NNCC_SOURCE_DIR, dir,
                   sub, dir, sub);
  cr_assert_eq(st, 0, "compiling the driver failed:\n%s", log);
}

/* The step lines of OUT.<rank>.txt: status, loss, unchanged. */
typedef struct Step {
  int status, unchanged;
  double loss;
  char error[200];
} Step;

static int read_steps(const char *dir, const char *out, int rank, Step *steps, int max) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s.%d.txt", dir, out, rank);
  FILE *f = fopen(path, "r");
  cr_assert(f, "no %s", path);
  char line[512];
  int count = 0;
  while (fgets(line, sizeof line, f) && count < max) {
    Step *s = &steps[count];
    s->error[0] = '\0';
    int k;
    if (sscanf(line, "step %d status %d loss %lf unchanged %d error %199[^\n]", &k, &s->status,
               &s->loss, &s->unchanged, s->error) >= 4) {
      count++;
    } else {
      cr_assert(strncmp(line, "save ", 5) == 0, "%s: %s", path, line);
      cr_expect(strncmp(line, "save 0 load 0", 13) == 0 || !strncmp(out, "mismatch", 8), "%s: %s",
                path, line);
    }
  }
  fclose(f);
  return count;
}

static unsigned char *read_bin(const char *dir, const char *out, int rank, long *bytes) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s.%d.bin", dir, out, rank);
  FILE *f = fopen(path, "rb");
  cr_assert(f, "no %s", path);
  fseek(f, 0, SEEK_END);
  *bytes = ftell(f);
  rewind(f);
  unsigned char *b = malloc((size_t)*bytes + 1);
  cr_assert(fread(b, 1, (size_t)*bytes, f) == (size_t)*bytes);
  fclose(f);
  return b;
}

/* Largest |a - b| / (1 + |b|) over the reals of two weight files. */
static double weight_diff(const unsigned char *a, const unsigned char *b, long bytes, bool f64) {
  double worst = 0;
  for (long i = 0; i < bytes; i += f64 ? 8 : 4) {
    double x, y;
    if (f64) {
      memcpy(&x, a + i, 8);
      memcpy(&y, b + i, 8);
    } else {
      float fx, fy;
      memcpy(&fx, a + i, 4);
      memcpy(&fy, b + i, 4);
      x = fx;
      y = fy;
    }
    double d = fabs(x - y) / (1 + fabs(y));
    worst = d > worst || isnan(d) ? d : worst;
  }
  return worst;
}

/* `model` trained 3 + 3 steps on a batch of 8 by one process and by np
 * ranks (built with dist_opts too): same steps, same weights within tol,
 * ranks bit for bit alike. */
static void check_matches_one_process(const char *model, const char *opts, const char *dist_opts,
                                      int np, double tol) {
  require_mpi();
  char dir[512], both[256];
  scratch_dir(dir, sizeof dir, "mpi");
  snprintf(both, sizeof both, "%s %s", opts, dist_opts);
  build(dir, "one", model, opts, false);
  build(dir, "dist", model, both, true);
  char log[16384];
  int classes = strstr(model, "class[10]") ? 10 : 4;
  cr_assert_eq(run_capture(log, sizeof log, "cd %s && one/driver 3 8 %d one", dir, classes), 0, "%s", log);
  cr_assert_eq(run_capture(log, sizeof log, "cd %s && " MPIRUN " -np %d dist/driver 3 8 %d dist",
                           dir, np, classes), 0, "mpirun failed:\n%s", log);
  Step one[8], ranks[8];
  cr_assert_eq(read_steps(dir, "one", 0, one, 8), 6);
  long bytes_one, bytes;
  unsigned char *w_one = read_bin(dir, "one", 0, &bytes_one);
  unsigned char *w0 = read_bin(dir, "dist", 0, &bytes);
  cr_assert_eq(bytes, bytes_one);
  bool f64 = strstr(opts, "f64");
  for (int r = 0; r < np; r++) {
    cr_assert_eq(read_steps(dir, "dist", r, ranks, 8), 6);
    for (int s = 0; s < 6; s++) {
      cr_expect_eq(ranks[s].status, 0, "rank %d step %d: %s", r, s, ranks[s].error);
      cr_expect_leq(fabs(ranks[s].loss - one[s].loss), tol * (1 + fabs(one[s].loss)),
                    "rank %d step %d: loss %.17g, one process %.17g", r, s, ranks[s].loss,
                    one[s].loss);
    }
    unsigned char *w = read_bin(dir, "dist", r, &bytes);
    cr_expect(bytes == bytes_one && memcmp(w, w0, (size_t)bytes) == 0,
              "rank %d's weights differ from rank 0's", r);
    free(w);
  }
  double d = weight_diff(w0, w_one, bytes, f64);
  cr_expect_leq(d, tol, "%d ranks vs one process: weights differ by %g (tolerance %g)", np, d, tol);
  free(w_one);
  free(w0);
}

Test(mpi, mlp_f64_two_ranks_match_one_process, .timeout = 120) {
  check_matches_one_process(mlp, "--dtype f64", "", 2, 1e-9);
}

Test(mpi, mlp_f64_three_ranks_uneven_match_one_process, .timeout = 120) {
  check_matches_one_process(mlp, "--dtype f64", "", 3, 1e-9);
}

Test(mpi, conv_f32_three_ranks_match_one_process, .timeout = 120) {
  check_matches_one_process(conv, "", "", 3, 1e-4);
}

/* --sync-batchnorm: statistics over all ranks' samples, so batchnorm models
 * match one process too (the prologue fusion puts relu's mask into the
 * backward kernel's sums: both paths). */
Test(mpi, sync_batchnorm_three_ranks_match_one_process, .timeout = 120) {
  check_matches_one_process(conv_bn, "--dtype f64", "--sync-batchnorm", 3, 1e-9);
}

Test(mpi, sync_batchnorm_prologue_f32_two_ranks_match_one_process, .timeout = 120) {
  check_matches_one_process(conv_bn, "--fuse=bn_fold,epilogue,elementwise,prologue", "--sync-batchnorm", 2,
                            1e-4);
}

/* conv_bn on 3 ranks, with one rank's bad data at step 1 when fault is not
 * NULL: every rank returns the failure, with its weights (and running
 * statistics) unchanged, and the other steps succeed; the ranks end bit for
 * bit alike.  (Local batchnorm statistics, the default, differ from one
 * process's; the running statistics are averaged, so the ranks agree.) */
static void check_ranks(const char *fault, int status) {
  require_mpi();
  char dir[512], log[16384];
  scratch_dir(dir, sizeof dir, "mpi");
  build(dir, "dist", conv_bn, "", true);
  cr_assert_eq(run_capture(log, sizeof log, "cd %s && " MPIRUN " -np 3 dist/driver 3 8 4 dist%s%s",
                           dir, fault ? " 1 1 " : "", fault ? fault : ""),
               0, "mpirun failed (or hung):\n%s", log);
  long bytes0, bytes;
  unsigned char *w0 = read_bin(dir, "dist", 0, &bytes0);
  for (int r = 0; r < 3; r++) {
    Step steps[8];
    cr_assert_eq(read_steps(dir, "dist", r, steps, 8), 6);
    for (int s = 0; s < 6; s++)
      cr_expect_eq(steps[s].status, s == 1 ? status : 0, "rank %d step %d: status %d (%s)", r, s,
                   steps[s].status, steps[s].error);
    if (fault) {
      cr_expect(steps[1].unchanged, "rank %d: the failed step changed the weights", r);
      cr_expect(r == 1 || strstr(steps[1].error, "other rank"), "rank %d: %s", r, steps[1].error);
    }
    unsigned char *w = read_bin(dir, "dist", r, &bytes);
    cr_expect(bytes == bytes0 && memcmp(w, w0, (size_t)bytes) == 0, "rank %d differs", r);
    free(w);
  }
  free(w0);
}

Test(mpi, batchnorm_ranks_stay_identical, .timeout = 120) { check_ranks(NULL, 0); }

Test(mpi, bad_label_on_one_rank_fails_every_rank, .timeout = 120) { check_ranks("label", -7); }

Test(mpi, nan_input_on_one_rank_fails_every_rank, .timeout = 120) { check_ranks("nan", -5); }

/* Ranks of different builds (MPMD: one binary per rank) stop at the first
 * step with NN_ERR_MISMATCH and a message, instead of hanging. */
static void check_mismatch(const char *other, const char *opts, const char *message) {
  require_mpi();
  char dir[512], log[16384];
  scratch_dir(dir, sizeof dir, "mpi");
  build(dir, "a", mlp, "", true);
  build(dir, "b", other, opts, true);
  cr_assert_eq(run_capture(log, sizeof log,
                           "cd %s && " MPIRUN " -np 1 a/driver 1 8 10 mismatch : -np 1 b/driver 1 8 10 mismatch",
                           dir), 0, "mpirun failed (or hung):\n%s", log);
  for (int r = 0; r < 2; r++) {
    Step steps[4];
    cr_assert_geq(read_steps(dir, "mismatch", r, steps, 4), 1);
    cr_expect_eq(steps[0].status, -4, "rank %d: status %d", r, steps[0].status);
    cr_expect(strstr(steps[0].error, message), "rank %d: '%s'", r, steps[0].error);
  }
}

Test(mpi, different_models_are_refused, .timeout = 120) {
  char other[sizeof mlp + 8];
  snprintf(other, sizeof other, "%s", mlp);
  memcpy(strstr(other, "dense(256)"), "dense(255)", 10);
  check_mismatch(other, "", "different models");
}

Test(mpi, different_batch_is_refused, .timeout = 120) {
  check_mismatch(mlp, "--batch 32", "different --batch");
}

/* Without --distributed nothing of MPI is emitted; with it, model.h
 * includes mpi.h and declares set_comm and sync. */
Test(mpi, mpi_only_when_asked) {
  char dir[512], log[4096];
  scratch_dir(dir, sizeof dir, "mpi");
  char nn[700];
  snprintf(nn, sizeof nn, "%s/net.nn", dir);
  write_file(nn, conv_bn);
  for (int dist = 0; dist < 2; dist++) {
    cr_assert_eq(run_capture(log, sizeof log, "%s %s %s -o %s/net%d.c", NNCC_BIN, nn,
                             dist ? "--distributed=mpi" : "", dir, dist), 0, "%s", log);
    char path[700];
    snprintf(path, sizeof path, "%s/net%d.c", dir, dist);
    char *c = read_text(path);
    snprintf(path, sizeof path, "%s/net%d.h", dir, dist);
    char *h = read_text(path);
    cr_expect_eq(strstr(c, "MPI_") != NULL, dist, "net%d.c", dist);
    cr_expect_eq(strstr(h, "#include <mpi.h>") != NULL, dist, "net%d.h", dist);
    cr_expect_eq(strstr(h, "int net_sync(net *m);") != NULL, dist, "net%d.h", dist);
    cr_expect_eq(strstr(h, "int net_set_comm(net *m, MPI_Comm comm);") != NULL, dist);
    free(c);
    free(h);
  }
  /* the distributed file (sync-batchnorm kernels too) is warning-free under gcc and clang */
  require_mpi();
  cr_assert_eq(run_capture(log, sizeof log, "%s %s --distributed=mpi --sync-batchnorm -o %s/net2.c",
                           NNCC_BIN, nn, dir), 0, "%s", log);
  for (int k = 0; k < 2; k++)
    cr_expect_eq(run_capture(log, sizeof log, "OMPI_CC=%s mpicc -std=c11 -O1 -Wall -Wextra -Werror "
                             "-pedantic -c %s/net2.c -o %s/net2.o", k ? "clang" : "gcc", dir, dir),
                 0, "%s:\n%s", k ? "clang" : "gcc", log);
}

/* The epoch rows of train_mnist's CSV: loss, train and validation accuracy. */
static int read_curves(const char *path, double rows[][3], int max) {
  FILE *f = fopen(path, "r");
  cr_assert(f, "no %s", path);
  char line[256];
  int count = 0, epoch;
  while (fgets(line, sizeof line, f) && count < max)
    if (sscanf(line, "%d,%lf,%lf,%lf", &epoch, &rows[count][0], &rows[count][1],
               &rows[count][2]) == 4)
      count++;
  fclose(f);
  return count;
}

/* examples/train_mnist.c --mpi on 2 ranks (lenet5, --sync-batchnorm) takes
 * one process's steps: the same curves, on synthetic digits. */
Test(mpi, train_mnist_two_ranks_match_one_process, .timeout = 180) {
  require_mpi();
  static const unsigned char labels[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  char dir[512], log[16384];
  scratch_dir(dir, sizeof dir, "mpi");
  write_idx_digits(dir, "train", 1300, labels);
  write_idx_digits(dir, "test", 200, labels);
  int st = run_capture(
      log, sizeof log,
      "cd %s && mkdir one dist && %s %s/examples/lenet5.nn -o one/lenet5.c && "
      "%s %s/examples/lenet5.nn -o dist/lenet5.c --distributed=mpi --sync-batchnorm && "
      "%s -std=c11 -O2 -Wall -Wextra -Werror -Ione %s/examples/train_mnist.c one/lenet5.c "
      "-o one/train_mnist -lm && mpicc -std=c11 -O2 -Wall -Wextra -Werror -Idist "
      "%s/examples/train_mnist.c dist/lenet5.c -o dist/train_mnist -lm",
      dir, NNCC_BIN, NNCC_SOURCE_DIR, NNCC_BIN, NNCC_SOURCE_DIR, NNCC_CC, NNCC_SOURCE_DIR,
      NNCC_SOURCE_DIR);
  cr_assert_eq(st, 0, "%s", log);
  const char *args = "--data . --epochs 2 --batch 32 --shift 1";
  st = run_capture(log, sizeof log, "cd %s && one/train_mnist %s --csv one.csv --svg one.svg "
                   "--out one.safetensors", dir, args);
  cr_assert_eq(st, 0, "%s", log);
  st = run_capture(log, sizeof log, "cd %s && " MPIRUN " -np 2 dist/train_mnist --mpi %s --csv "
                   "two.csv --svg two.svg --out two.safetensors", dir, args);
  cr_assert_eq(st, 0, "%s", log);
  cr_expect(strstr(log, "test accuracy"), "%s", log);
  double one[4][3], two[4][3];
  char path[700];
  snprintf(path, sizeof path, "%s/one.csv", dir);
  cr_assert_eq(read_curves(path, one, 4), 2);
  snprintf(path, sizeof path, "%s/two.csv", dir);
  cr_assert_eq(read_curves(path, two, 4), 2);
  for (int e = 0; e < 2; e++) {
    cr_expect_leq(fabs(one[e][0] - two[e][0]), 1e-4 * (1 + one[e][0]), "epoch %d loss: %g vs %g",
                  e + 1, one[e][0], two[e][0]);
    for (int k = 1; k < 3; k++)
      cr_expect_leq(fabs(one[e][k] - two[e][k]), 0.011, "epoch %d accuracy: %g vs %g", e + 1,
                    one[e][k], two[e][k]);
  }
  /* a build on the MPI model needs --mpi, and the other way round */
  st = run_capture(log, sizeof log, "cd %s && one/train_mnist --mpi %s", dir, args);
  cr_expect_eq(st, 2, "%s", log);
  cr_expect(strstr(log, "--mpi needs a model from nncc --distributed=mpi"), "%s", log);
}
