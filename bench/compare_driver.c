/* bench/compare_driver.c: one nncc model as a timing server for bench/compare.
 *
 * bench/compare emits a model under the name `nncmp` (a training build, or --infer) and compiles it
 * with this file; IN_SIZE (reals per sample of the one input), OUT_SIZE and, for training builds,
 * BENCH_TRAIN and TGT_CLASSES=K come in as macros.  bench/driver.c times two nncc variants against
 * each other inside one process; here the other side is PyTorch in the Python process, so the
 * driver is a separate process that bench/compare drives over a pipe, which lets it interleave the
 * rounds of both engines:
 *
 *   compare_driver BATCH          then on stdin, one command per line:
 *     run K      K calls (forward, or train_step with learning rate 1e-12, so every call does the
 *                same work on practically the same weights: set() refuses 0); prints "ms T" with
 *                T the milliseconds per call
 *     quit
 *
 * Inputs are uniform in [0, 1), labels uniform in 0..K-1, from a fixed xorshift seed.  Threads come
 * from OMP_NUM_THREADS. */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime under -std=c11 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nncmp.h"

#if !defined(IN_SIZE) || !defined(OUT_SIZE) || (defined(BENCH_TRAIN) && !defined(TGT_CLASSES))
#error "bench/compare passes -DIN_SIZE=... -DOUT_SIZE=... (and -DBENCH_TRAIN -DTGT_CLASSES=K)"
#endif

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double uniform(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

static void check(nncmp *m, int status, const char *what)
{
    if (status) {
        fprintf(stderr, "compare_driver: %s: %s (%s)\n", what, nncmp_strerror(status), nncmp_last_error(m));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    int n = argc == 2 ? atoi(argv[1]) : 0;
    if (n < 1 || n > NNCMP_MAX_BATCH) {
        fprintf(stderr, "usage: compare_driver BATCH (1..%d)\n", NNCMP_MAX_BATCH);
        return 2;
    }
    nncmp *m = nncmp_create(1);
    float *x = malloc(sizeof *x * (size_t)n * IN_SIZE), *out = malloc(sizeof *out * (size_t)n * OUT_SIZE);
    if (!m || !x || !out) {
        fprintf(stderr, "compare_driver: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)n * IN_SIZE; i++)
        x[i] = (float)uniform();
#ifdef BENCH_TRAIN
    int32_t *y = malloc(sizeof *y * (size_t)n);
    if (!y)
        return 1;
    for (int i = 0; i < n; i++)
        y[i] = (int32_t)(uniform() * TGT_CLASSES) % TGT_CLASSES;
    check(m, nncmp_set(m, "lr", 1e-12), "set lr");
#endif
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        long calls;
        if (strncmp(line, "quit", 4) == 0)
            break;
        if (sscanf(line, "run %ld", &calls) != 1 || calls < 1) {
            fprintf(stderr, "compare_driver: bad command %s", line);
            return 2;
        }
        double t0 = now_ms();
        for (long i = 0; i < calls; i++) {
#ifdef BENCH_TRAIN
            check(m, nncmp_train_step(m, n, x, y, NULL), "train_step");
#else
            check(m, nncmp_forward(m, n, x, out), "forward");
#endif
        }
        printf("ms %.6f\n", (now_ms() - t0) / calls);
        fflush(stdout);
    }
    nncmp_destroy(m);
    free(x);
    free(out);
#ifdef BENCH_TRAIN
    free(y);
#endif
    return 0;
}
