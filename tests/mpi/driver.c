/*
 * driver.c: trains model `net` (nncc ... -o net.c) for tests/test_mpi.c, as
 * one process on the whole batch, or with -DDIST (net built with
 * --distributed=mpi, run under mpirun) as ranks on shards of it.
 *
 *   driver STEPS BATCH CLASSES OUT [FAULT_RANK FAULT_STEP label|nan]
 *
 * Batch s is the same everywhere (a fixed generator); rank r of p trains on
 * samples [BATCH*r/p, BATCH*(r+1)/p).  Rank r starts from seed 42 + r: the
 * first step must broadcast rank 0's weights.  After STEPS steps the model
 * is saved, perturbed on each rank differently, loaded, and trained STEPS
 * more.  OUT.<rank>.txt gets a line per step (status, loss, whether a
 * failed step left the weights as they were, last_error); OUT.<rank>.bin
 * the final tensors, raw reals in tensor order.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"
#ifdef DIST
#include <mpi.h>
#endif

#ifndef REAL
#define REAL float
#endif
typedef REAL real;

static uint64_t rng = 1;
static double uniform(void) {
  rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(rng >> 11) / 9007199254740992.0;
}

/* Every tensor's values, concatenated. */
static size_t snapshot(net *m, real *out) {
  size_t total = 0;
  for (int i = 0; i < net_tensor_count(); i++) {
    size_t numel;
    const real *t = net_tensor(m, i, &numel);
    if (out)
      memcpy(out + total, t, numel * sizeof *t);
    total += numel;
  }
  return total;
}

int main(int argc, char **argv) {
  int rank = 0, size = 1;
#ifdef DIST
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
#endif
  if (argc != 5 && argc != 8) {
    fprintf(stderr, "usage: driver STEPS BATCH CLASSES OUT [FAULT_RANK FAULT_STEP label|nan]\n");
    return 2;
  }
  int steps = atoi(argv[1]), batch = atoi(argv[2]), classes = atoi(argv[3]);
  int fault_rank = argc == 8 ? atoi(argv[5]) : -1, fault_step = argc == 8 ? atoi(argv[6]) : -1;
  const char *fault = argc == 8 ? argv[7] : "";
  char path[1024];
  snprintf(path, sizeof path, "%s.%d.txt", argv[4], rank);
  FILE *log = fopen(path, "w");
  net *m = net_create(42 + (uint64_t)rank);
  real *x = malloc(sizeof(real) * (size_t)batch * NET_X_SIZE);
  int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
  size_t total = snapshot(m, NULL);
  real *before = malloc(sizeof(real) * total), *after = malloc(sizeof(real) * total);
  if (!log || !m || !x || !y || !before || !after)
    return 1;
  int lo = (int)((long)batch * rank / size), hi = (int)((long)batch * (rank + 1) / size);
  for (int s = 0; s < 2 * steps; s++) {
    if (s == steps) {   /* checkpoint round trip: ranks perturbed apart, load makes them one */
      int st = net_save(m, "ckpt.safetensors");
      size_t numel;
      net_tensor(m, 0, &numel)[0] += (real)(rank + 1);
      int st2 = net_load(m, "ckpt.safetensors");
      fprintf(log, "save %d load %d\n", st, st2);
    }
    rng = 1000 + (uint64_t)s;
    for (long i = 0; i < (long)batch * NET_X_SIZE; i++)
      x[i] = (real)(uniform() * 2 - 1);
    for (int i = 0; i < batch; i++)
      y[i] = (int32_t)(uniform() * classes);
    if (s == fault_step && rank == fault_rank) {
      if (!strcmp(fault, "label"))
        y[lo] = classes;
      else
        x[(long)lo * NET_X_SIZE] = (real)NAN;
    }
    snapshot(m, before);
    real loss = 0;
    int st = net_train_step(m, hi - lo, x + (long)lo * NET_X_SIZE, y + lo, &loss);
    snapshot(m, after);
    int unchanged = memcmp(before, after, sizeof(real) * total) == 0;
    fprintf(log, "step %d status %d loss %.17g unchanged %d error %s\n", s, st, (double)loss,
            unchanged, st ? net_last_error(m) : "");
  }
  fclose(log);
  snprintf(path, sizeof path, "%s.%d.bin", argv[4], rank);
  FILE *f = fopen(path, "wb");
  snapshot(m, after);
  if (!f || fwrite(after, sizeof(real), total, f) != total || fclose(f))
    return 1;
  net_destroy(m);
  free(x);
  free(y);
  free(before);
  free(after);
#ifdef DIST
  MPI_Finalize();
#endif
  return 0;
}
