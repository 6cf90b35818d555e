/* bench/peak.c: the f32 FMA peak of one core and the memory bandwidth, to put kernel speeds in scale.
 *
 * Peak: a loop of 12 independent fused multiply-adds per iteration, in 512-bit (AVX-512F) and 256-bit
 * (AVX2 + FMA) variants compiled with target attributes, so the file needs no -march flag.  Twelve
 * accumulators cover the FMA latency (4 cycles on Zen 4, 4 on recent Intel) times two pipes with room to
 * spare.  They are twelve named variables, not an array: gcc keeps an array of vectors on the stack and
 * the loop becomes load-FMA-store.  The intrinsics (_mm512_fmadd_ps) make the FMA explicit, so the result
 * does not depend on -ffp-contract.  GFLOP/s = 2 x lanes x 12 x iterations / seconds, best of --runs
 * (default 15, the two widths interleaved): on a shared machine the best run is the uninterrupted one.
 *
 * Bandwidth: copy (b = a, memcpy) and triad (a = b + s * c) over arrays of --mb MB each (default 256,
 * well past the L3), written once before timing so that page faults are not measured.  Bytes counted as
 * the arrays read plus the array written (no write-allocate traffic): copy 2 x size, triad 3 x size.
 *
 * Prints one line per measurement, then `peak=<GFLOP/s>` (the larger of the two FMA peaks) for
 * bench/layers.  Single-threaded: per-core numbers, timed by the process's CPU time.
 *
 *   cc -O2 bench/peak.c -o peak && ./peak [--runs N] [--mb MB] [--no-mem]
 */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime under -std=c11 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FMA_ITERS 10000000L   /* 12 x 10 M FMAs: about 20-40 ms per run at 100 GFLOP/s */

/* CPU time of the process (one thread): on a shared machine the time other processes held the core is
 * left out, so the peak is that of the core, not of our share of it. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One step of all twelve chains. */
#define FMA12(fma, a, b)                                                                               \
    do {                                                                                               \
        c0 = fma(c0, a, b); c1 = fma(c1, a, b); c2 = fma(c2, a, b); c3 = fma(c3, a, b);                 \
        c4 = fma(c4, a, b); c5 = fma(c5, a, b); c6 = fma(c6, a, b); c7 = fma(c7, a, b);                 \
        c8 = fma(c8, a, b); c9 = fma(c9, a, b); c10 = fma(c10, a, b); c11 = fma(c11, a, b);             \
    } while (0)

/* c = c * a + b converges to b / (1 - a): no overflow, no denormals, and the compiler cannot fold it. */
__attribute__((target("avx512f"))) static float fma_avx512(long iters, float a_, float b_)
{
    __m512 a = _mm512_set1_ps(a_), b = _mm512_set1_ps(b_);
    __m512 c0 = _mm512_set1_ps(0.0f), c1 = _mm512_set1_ps(0.1f), c2 = _mm512_set1_ps(0.2f),
           c3 = _mm512_set1_ps(0.3f), c4 = _mm512_set1_ps(0.4f), c5 = _mm512_set1_ps(0.5f),
           c6 = _mm512_set1_ps(0.6f), c7 = _mm512_set1_ps(0.7f), c8 = _mm512_set1_ps(0.8f),
           c9 = _mm512_set1_ps(0.9f), c10 = _mm512_set1_ps(1.0f), c11 = _mm512_set1_ps(1.1f);
    for (long i = 0; i < iters; i++)
        FMA12(_mm512_fmadd_ps, a, b);
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_avx2(long iters, float a_, float b_)
{
    __m256 a = _mm256_set1_ps(a_), b = _mm256_set1_ps(b_);
    __m256 c0 = _mm256_set1_ps(0.0f), c1 = _mm256_set1_ps(0.1f), c2 = _mm256_set1_ps(0.2f),
           c3 = _mm256_set1_ps(0.3f), c4 = _mm256_set1_ps(0.4f), c5 = _mm256_set1_ps(0.5f),
           c6 = _mm256_set1_ps(0.6f), c7 = _mm256_set1_ps(0.7f), c8 = _mm256_set1_ps(0.8f),
           c9 = _mm256_set1_ps(0.9f), c10 = _mm256_set1_ps(1.0f), c11 = _mm256_set1_ps(1.1f);
    for (long i = 0; i < iters; i++)
        FMA12(_mm256_fmadd_ps, a, b);
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

volatile float sink;   /* keeps the results alive */

/* GFLOP/s of one run of an FMA loop of `lanes` f32 lanes; *best keeps the largest. */
static void fma_run(float (*loop)(long, float, float), int lanes, double *best)
{
    double t0 = now_s();
    sink = loop(FMA_ITERS, 0.999f, 1e-3f);
    double gflops = 2.0 * lanes * 12 * FMA_ITERS / (now_s() - t0) * 1e-9;
    *best = gflops > *best ? gflops : *best;
}

/* Best of `runs` runs of each supported loop, interleaved (512, 256, 512, ...) so that a busy spell of
 * a shared machine does not fall on one of them only; the best run is the one nothing interrupted. */
static void fma_peaks(int has512, int has256, int runs, double *p512, double *p256)
{
    double ignored = 0;
    if (has512)
        fma_run(fma_avx512, 16, &ignored);   /* warm-up: clock ramp, first use of the upper lanes */
    if (has256)
        fma_run(fma_avx2, 8, &ignored);
    for (int r = 0; r < runs; r++) {
        if (has512)
            fma_run(fma_avx512, 16, p512);
        if (has256)
            fma_run(fma_avx2, 8, p256);
    }
}

/* Best GB/s of copy and triad over arrays of `count` floats. */
static void bandwidth(size_t count, int runs, double *copy_gbs, double *triad_gbs)
{
    float *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b), *c = malloc(count * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "peak: out of memory for 3 x %zu floats\n", count);
        exit(1);
    }
    for (size_t i = 0; i < count; i++)   /* touch every page before timing */
        a[i] = 1.0f, b[i] = 2.0f, c[i] = 0.5f * (float)(i & 1023);
    double bytes = (double)count * sizeof(float);
    *copy_gbs = *triad_gbs = 0;
    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        memcpy(b, a, count * sizeof *a);
        double t1 = now_s();
        for (size_t i = 0; i < count; i++)
            a[i] = b[i] + 3.0f * c[i];
        double t2 = now_s();
        double copy = 2 * bytes / (t1 - t0) * 1e-9, triad = 3 * bytes / (t2 - t1) * 1e-9;
        *copy_gbs = copy > *copy_gbs ? copy : *copy_gbs;
        *triad_gbs = triad > *triad_gbs ? triad : *triad_gbs;
    }
    sink = a[count / 2] + b[count / 3];
    free(a);
    free(b);
    free(c);
}

int main(int argc, char **argv)
{
    int runs = 15, mem = 1;
    double mb = 256;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--mb") == 0 && i + 1 < argc)
            mb = atof(argv[++i]);
        else if (strcmp(argv[i], "--no-mem") == 0)
            mem = 0;
        else {
            fprintf(stderr, "usage: peak [--runs N] [--mb MB per array] [--no-mem]\n");
            return 2;
        }
    }
    if (runs < 1 || !(mb > 0)) {
        fprintf(stderr, "peak: --runs must be >= 1 and --mb positive\n");
        return 2;
    }
    __builtin_cpu_init();
    int has512 = __builtin_cpu_supports("avx512f");
    int has256 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    double p512 = 0, p256 = 0;
    fma_peaks(has512, has256, runs, &p512, &p256);
    if (has512)
        printf("fma_avx512  %7.1f GFLOP/s f32 (12 chains of _mm512_fmadd_ps, best of %d)\n", p512, runs);
    else
        printf("fma_avx512  not supported\n");
    if (has256)
        printf("fma_avx2    %7.1f GFLOP/s f32 (12 chains of _mm256_fmadd_ps, best of %d)\n", p256, runs);
    else
        printf("fma_avx2    not supported\n");
    if (mem) {
        double copy, triad;
        bandwidth((size_t)(mb * 1048576 / sizeof(float)), runs < 3 ? runs : 3, &copy, &triad);
        printf("copy        %7.1f GB/s (memcpy of %g MB, read + write bytes)\n", copy, mb);
        printf("triad       %7.1f GB/s (a = b + s*c over %g MB arrays, 2 reads + 1 write)\n", triad, mb);
    }
    printf("peak=%.1f\n", p512 > p256 ? p512 : p256);
    return 0;
}
