/* bench/layers_driver.c: times one layer's forward, dw and dx kernels, for bench/layers.
 *
 * bench/layers emits a single-layer model (one conv2d or dense without bias, output = the layer, loss
 * mse against a real target) three times and links the three builds with this file:
 *   lw  a training build: lw_forward is the layer's forward kernel; lw_gradients runs forward, the loss
 *       and its gradient, and dw (the only parameter gradient; the input needs no gradient)
 *   lx  the same with --input-grad: lx_gradients adds dx
 *   lf  the same with freeze=true: lf_gradients runs forward and the loss only, no backward kernel
 * so that, per call, dw = t(lw_gradients) - t(lf_gradients) and dx = t(lx_gradients) - t(lw_gradients).
 * IN_SIZE and OUT_SIZE (floats per sample of x and of the output, which is also the target's size)
 * come in as macros.
 *
 * After a warm-up that also calibrates each variant to about --run-ms per run, it times --rounds
 * rounds; each round runs the four variants once (fwd, loss, dw, dx), the order rotating every round.
 * Each run is timed twice, by the wall clock (CLOCK_MONOTONIC: fwd_ms, dw_ms, ...) and by the process's
 * CPU time (CLOCK_PROCESS_CPUTIME_ID: cpu_fwd_ms, ...; at 1 thread it leaves out the time other
 * processes held the core).  The differences are taken within each round and their median printed, so
 * a slow spell of a shared machine falls on both terms of a difference.  busy = median over runs of CPU
 * time / (wall time x threads): below ~0.95 at 1 thread, other processes took the core.  One line of
 * key=value pairs.
 */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime under -std=c11 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "lf.h"
#include "lw.h"
#include "lx.h"

#if !defined(IN_SIZE) || !defined(OUT_SIZE)
#error "bench/layers passes -DIN_SIZE=... -DOUT_SIZE=..."
#endif

#define MAX_ROUNDS 1000
enum { V_FWD, V_LOSS, V_DW, V_DX, NVARIANT };
static const char *variant_name[NVARIANT] = {"fwd", "loss", "dw", "dx"};

typedef struct {
    lw *w;
    lx *x;
    lf *f;
    int n;
    float *in, *tgt, *out, *dx;
} Layer;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "layers driver: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(2);
}

static double clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* xorshift64*: the same data on every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float uniform(float lo, float hi)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545f4914f6cdd1dull;
    return lo + (hi - lo) * (float)((double)(r >> 11) / 9007199254740992.0);
}

static float *random_floats(size_t count, float lo, float hi)
{
    float *p = malloc(count * sizeof *p);
    if (!p)
        die("out of memory", NULL);
    for (size_t i = 0; i < count; i++)
        p[i] = uniform(lo, hi);
    return p;
}

static void status(int st, const char *call)
{
    if (st != 0)
        die(call, lw_strerror(st));
}

/* One call of a variant. */
static void call(Layer *l, int v)
{
    float loss;
    switch (v) {
    case V_FWD: status(lw_forward(l->w, l->n, l->in, l->out), "lw_forward"); break;
    case V_LOSS: status(lf_gradients(l->f, l->n, l->in, l->tgt, &loss), "lf_gradients"); break;
    case V_DW: status(lw_gradients(l->w, l->n, l->in, l->tgt, &loss), "lw_gradients"); break;
    case V_DX: status(lx_gradients(l->x, l->n, l->in, l->tgt, &loss, l->dx), "lx_gradients"); break;
    }
}

/* Wall ms per call over `calls` calls of variant v; *cpu_ms gets the process CPU ms per call. */
static double time_run(Layer *l, int v, long calls, double *cpu_ms)
{
    double c0 = clock_ms(CLOCK_PROCESS_CPUTIME_ID), t0 = clock_ms(CLOCK_MONOTONIC);
    for (long i = 0; i < calls; i++)
        call(l, v);
    double t1 = clock_ms(CLOCK_MONOTONIC), c1 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
    *cpu_ms = (c1 - c0) / calls;
    return (t1 - t0) / calls;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..count) (sorts v). */
static double median(double *v, int count)
{
    qsort(v, (size_t)count, sizeof *v, cmp_double);
    return count % 2 ? v[count / 2] : 0.5 * (v[count / 2 - 1] + v[count / 2]);
}

/* Warm every variant up for about warmup_ms in all (alternating, at least one call each) and return in
 * calls[v] the calls that make one run of v last about run_ms. */
static void warm_up(Layer *l, double warmup_ms, double run_ms, long calls[NVARIANT])
{
    double per[NVARIANT], cpu, t0 = clock_ms(CLOCK_MONOTONIC);
    do {
        for (int v = 0; v < NVARIANT; v++)
            per[v] = time_run(l, v, 1, &cpu);
    } while (clock_ms(CLOCK_MONOTONIC) - t0 < warmup_ms);
    for (int v = 0; v < NVARIANT; v++) {
        long c = (long)ceil(run_ms / fmax(per[v], 1e-6));
        calls[v] = c < 1 ? 1 : c;
    }
}

/* Medians over rounds of the four variants' times per call and of the derived loss, dw and dx times (the
 * differences taken within each round), printed as <prefix>fwd_ms= ... ; sorts t. */
static void print_medians(const char *prefix, double t[NVARIANT][MAX_ROUNDS], int rounds)
{
    static double loss[MAX_ROUNDS], dw[MAX_ROUNDS], dx[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        loss[r] = t[V_LOSS][r] - t[V_FWD][r];
        dw[r] = t[V_DW][r] - t[V_LOSS][r];
        dx[r] = t[V_DX][r] - t[V_DW][r];
    }
    printf(" %sfwd_ms=%.6f %slossgrad_ms=%.6f %sdw_ms=%.6f %sdx_ms=%.6f", prefix, median(t[V_FWD], rounds),
           prefix, median(loss, rounds), prefix, median(dw, rounds), prefix, median(dx, rounds));
    for (int v = 1; v < NVARIANT; v++) {
        double med = median(t[v], rounds);   /* sorts t[v]: min first, max last */
        printf(" %s%s_call_ms=%.6f %s%s_min=%.6f %s%s_max=%.6f", prefix, variant_name[v], med, prefix,
               variant_name[v], t[v][0], prefix, variant_name[v], t[v][rounds - 1]);
    }
}

static void measure(Layer *l, int rounds, double warmup_ms, double run_ms)
{
    static double wall[NVARIANT][MAX_ROUNDS], cpu[NVARIANT][MAX_ROUNDS], busy[NVARIANT * MAX_ROUNDS];
    long calls[NVARIANT];
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    warm_up(l, warmup_ms, run_ms, calls);
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < NVARIANT; k++) {
            int v = (r + k) % NVARIANT;
            wall[v][r] = time_run(l, v, calls[v], &cpu[v][r]);
            busy[r * NVARIANT + v] = cpu[v][r] / (wall[v][r] * threads);
        }
    printf("threads=%d batch=%d rounds=%d busy=%.3f", threads, l->n, rounds, median(busy, rounds * NVARIANT));
    for (int v = 0; v < NVARIANT; v++)
        printf(" %s_calls=%ld", variant_name[v], calls[v]);
    print_medians("", wall, rounds);
    print_medians("cpu_", cpu, rounds);
    printf("\n");
}

int main(int argc, char **argv)
{
    int batch = LW_MAX_BATCH, rounds = 9;
    double run_ms = 100, warmup_ms = 300;
    for (int i = 1; i + 1 < argc; i += 2) {
        double v = atof(argv[i + 1]);
        if (strcmp(argv[i], "--batch") == 0)
            batch = (int)v;
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = (int)v;
        else if (strcmp(argv[i], "--run-ms") == 0)
            run_ms = v;
        else if (strcmp(argv[i], "--warmup-ms") == 0)
            warmup_ms = v;
        else
            die("unknown option", argv[i]);
    }
    if (argc % 2 == 0)
        die("options come in pairs: --batch N --rounds N --run-ms MS --warmup-ms MS", NULL);
    if (batch < 1 || batch > LW_MAX_BATCH || rounds < 1 || rounds > MAX_ROUNDS || !(run_ms > 0))
        die("--batch must be 1..MAX_BATCH, --rounds 1..1000, --run-ms positive", NULL);
    Layer l = {.n = batch};
    l.w = lw_create(1);
    l.x = lx_create(1);
    l.f = lf_create(1);
    if (!l.w || !l.x || !l.f)
        die("cannot create the models", NULL);
    l.in = random_floats((size_t)batch * IN_SIZE, 0, 1);
    l.tgt = random_floats((size_t)batch * OUT_SIZE, -1, 1);
    l.out = random_floats((size_t)batch * OUT_SIZE, 0, 0);
    l.dx = random_floats((size_t)batch * IN_SIZE, 0, 0);
    measure(&l, rounds, warmup_ms, run_ms);
    lw_destroy(l.w);
    lx_destroy(l.x);
    lf_destroy(l.f);
    free(l.in);
    free(l.tgt);
    free(l.out);
    free(l.dx);
    return 0;
}
