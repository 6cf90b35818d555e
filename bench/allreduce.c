/* bench/allreduce.c: the latency (alpha) and bandwidth (beta) of MPI_Allreduce between the ranks it
 * runs on, for the alpha-beta model of ring allreduce in docs/distributed.md.
 *
 * For each message size (8 B, then 64 KB to 64 MB of floats) it times --reps in-place MPI_SUM
 * allreduces of that size after a barrier, --runs times (default 9), and prints the median time per
 * allreduce (rank 0's wall clock, MPI_Wtime) and the min and max over the runs.  The model: one ring
 * allreduce of B bytes over p ranks takes
 *
 *     T(B) = 2 (p - 1) alpha + 2 (p - 1) / p * B / beta
 *
 * so alpha = T(8 B) / (2 (p - 1)) and beta = 2 (p - 1) / p * B / (T(B) - 2 (p - 1) alpha), taken at
 * the largest size.  Prints `alpha_us=` and `beta_gbit_s=` last.
 *
 *   mpicc -O2 bench/allreduce.c -o allreduce
 *   mpirun -np 2 ./allreduce                                    # shared memory, one host
 *   mpirun -np 2 --mca btl tcp,self --mca btl_tcp_if_include lo ./allreduce   # TCP over loopback
 *   mpirun --hostfile hosts -np 2 ./allreduce                  # between two hosts
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median, min and max of n seconds per allreduce of count floats, on rank 0. */
static void time_size(long count, int runs, int reps, float *buf, double out[3]) {
  double *t = malloc(sizeof *t * (size_t)runs);
  for (int r = 0; r < runs; r++) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int k = 0; k < reps; k++)
      MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    t[r] = (MPI_Wtime() - t0) / reps;
  }
  qsort(t, (size_t)runs, sizeof *t, by_value);
  out[0] = t[runs / 2];
  out[1] = t[0];
  out[2] = t[runs - 1];
  free(t);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, p, runs = 9, reps = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  for (int i = 1; i + 1 < argc; i += 2)
    if (!strcmp(argv[i], "--runs"))
      runs = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps"))
      reps = atoi(argv[i + 1]);
  if (runs < 1 || p < 2) {
    if (rank == 0)
      fprintf(stderr, "allreduce: needs 2 or more ranks and --runs >= 1\n");
    MPI_Finalize();
    return 2;
  }
  static const long sizes[] = {2, 16384, 262144, 1048576, 4194304, 16777216};   /* floats */
  enum { NSIZES = sizeof sizes / sizeof *sizes };
  float *buf = calloc((size_t)sizes[NSIZES - 1], sizeof *buf);
  double t[NSIZES][3];
  for (int s = 0; s < NSIZES; s++) {
    int n = reps > 0 ? reps : sizes[s] <= 16384 ? 200 : sizes[s] <= 1048576 ? 20 : 3;
    time_size(sizes[s], runs, n, buf, t[s]);
  }
  if (rank == 0) {
    printf("%d ranks, median of %d runs (min..max)\n", p, runs);
    for (int s = 0; s < NSIZES; s++)
      printf("%10ld B  %10.1f us  (%.1f..%.1f)  %7.2f Gbit/s algorithmic\n", sizes[s] * 4,
             t[s][0] * 1e6, t[s][1] * 1e6, t[s][2] * 1e6, sizes[s] * 32.0 / t[s][0] * 1e-9);
    double alpha = t[0][0] / (2.0 * (p - 1)), bytes = sizes[NSIZES - 1] * 4.0;
    double beta = 2.0 * (p - 1) / p * bytes / (t[NSIZES - 1][0] - 2.0 * (p - 1) * alpha);
    printf("alpha_us=%.2f\nbeta_gbit_s=%.2f\n", alpha * 1e6, beta * 8e-9);
  }
  free(buf);
  MPI_Finalize();
  return 0;
}
