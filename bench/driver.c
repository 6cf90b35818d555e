/* bench/driver.c: times one model's fused code against its unfused code in one process.
 *
 * bench/run compiles the same model.nn twice under two model names, nnbench_f (fused, the default) and
 * nnbench_u (--fuse=none), both --infer or both training builds, and links them with this file.  The
 * per-model facts the driver cannot know come in as macros: IN_SIZE and OUT_SIZE (floats per sample, the
 * header's <M>_<NAME>_SIZE), and for training builds BENCH_TRAIN plus either TGT_CLASSES (class labels
 * 0..K-1) or TGT_SIZE (floats per sample of a real target).
 *
 * First the driver proves the two variants compute the same thing: it perturbs the fused model's
 * tensors (so folded batchnorm statistics are not the identity), copies them into the unfused model,
 * and compares forward outputs (and, for training builds, the loss and every gradient) within 1e-5
 * relative to each tensor's largest magnitude.  Any mismatch exits 2 before anything is timed.
 *
 * Then it times forward (inference builds) or train_step (training builds, learning rate 1e-12 so both
 * variants do the same work on practically the same weights every step; set() refuses 0): a warm-up,
 * then --runs rounds, each round one run of the fused variant and one of the unfused (f/u/f/u...),
 * each run a fixed number of calls calibrated to last about --run-ms.  Models so heavy that one call
 * outlasts a run get fewer rounds (at least 3) to stay within --budget-ms.  It prints one line of key=value pairs for bench/run.
 * -DBENCH_F64 builds it for models emitted with --dtype f64. */
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

#include "nnbench_f.h"
#include "nnbench_u.h"

#if !defined(IN_SIZE) || !defined(OUT_SIZE)
#error "bench/run passes -DIN_SIZE=... -DOUT_SIZE=..."
#endif
#if defined(BENCH_TRAIN) && !defined(TGT_CLASSES) && !defined(TGT_SIZE)
#error "a training build needs -DTGT_CLASSES=K or -DTGT_SIZE=S"
#endif

#define TOLERANCE 1e-5
#define MAX_RUNS 1000

/* -DBENCH_F64 for models emitted with --dtype f64 (to tell rounding from a fusion bug). */
#ifdef BENCH_F64
typedef double real;
#else
typedef float real;
#endif

typedef struct {
    int batch, runs, check;
    double run_ms, warmup_ms, budget_ms;
} Options;

typedef struct {
    nnbench_f *f;
    nnbench_u *u;
    int n;
    real *x, *out_f, *out_u;
#ifdef BENCH_TRAIN
#ifdef TGT_CLASSES
    int32_t *y;
#else
    real *y;
#endif
#endif
} Bench;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench driver: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(2);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* xorshift64*: the same inputs on every run, no dependence on libc's rand. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double uniform(double lo, double hi)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545f4914f6cdd1dull;
    return lo + (hi - lo) * (double)(r >> 11) / 9007199254740992.0;
}

static void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count, size);
    if (!p)
        die("out of memory", NULL);
    return p;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

/* Largest |a - b| over the largest |a| (or 1e-30): 0 for identical tensors, NaN-safe (returns inf). */
static double rel_error(const real *a, const real *b, size_t count)
{
    double diff = 0, scale = 1e-30;
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i]))
            return INFINITY;
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)a[i]));
    }
    return diff / scale;
}

static double check_close(const char *what, const real *a, const real *b, size_t count, double worst)
{
    double err = rel_error(a, b, count);
    if (!(err <= TOLERANCE)) {
        fprintf(stderr, "bench driver: fused and unfused %s differ: relative error %.3g > %g\n", what,
                err, TOLERANCE);
        exit(2);
    }
    return fmax(worst, err);
}

/* Root mean square of a tensor, or 1 for an all-zero one (biases, shifts, running means). */
static double rms_or_one(const real *t, size_t count)
{
    double sum = 0;
    for (size_t k = 0; k < count; k++)
        sum += (double)t[k] * t[k];
    return sum > 0 ? sqrt(sum / count) : 1;
}

/* Perturb every tensor of the fused model so that batchnorm folding is not the identity: a factor in
 * 0.8..1.2 and noise of 10% of the tensor's RMS (variances: 0.5..2).  Noise relative to the RMS keeps
 * weights at their initial scale; absolute noise would grow the activations of deep models layer by layer,
 * and with them the f32 rounding that the 1e-5 check must not mistake for a bug.  Then copy every tensor
 * into the unfused model, which must list the same tensors in the same order. */
static void share_weights(Bench *b)
{
    int count = nnbench_f_tensor_count();
    if (count != nnbench_u_tensor_count())
        die("fused and unfused models list different tensors", NULL);
    for (int i = 0; i < count; i++) {
        const char *name = nnbench_f_tensor_name(i);
        size_t nf = 0, nu = 0;
        real *tf = nnbench_f_tensor(b->f, i, &nf), *tu = nnbench_u_tensor(b->u, i, &nu);
        if (!tf || !tu || nf != nu || strcmp(name, nnbench_u_tensor_name(i)) != 0)
            die("fused and unfused tensor tables differ at", name);
        double noise = 0.1 * rms_or_one(tf, nf);
        for (size_t k = 0; k < nf; k++)
            tf[k] = ends_with(name, "running_var") ? (real)uniform(0.5, 2.0)
                                                   : (real)(tf[k] * uniform(0.8, 1.2) + uniform(-noise, noise));
        memcpy(tu, tf, nf * sizeof *tf);
    }
}

static void fill_inputs(Bench *b)
{
    for (size_t i = 0; i < (size_t)b->n * IN_SIZE; i++)
        b->x[i] = (real)uniform(0, 1);
#ifdef BENCH_TRAIN
#ifdef TGT_CLASSES
    for (int i = 0; i < b->n; i++)
        b->y[i] = (int32_t)(uniform(0, 1) * TGT_CLASSES) % TGT_CLASSES;
#else
    for (size_t i = 0; i < (size_t)b->n * TGT_SIZE; i++)
        b->y[i] = (real)uniform(-1, 1);
#endif
#endif
}

static void status(int st, const char *call)
{
    if (st != 0)
        die(call, nnbench_f_strerror(st));
}

#ifdef BENCH_TRAIN
/* Loss and every parameter gradient of one batch, fused against unfused. */
static double check_gradients(Bench *b, double worst)
{
    real loss_f = 0, loss_u = 0;
    status(nnbench_f_gradients(b->f, b->n, b->x, b->y, &loss_f), "fused gradients");
    status(nnbench_u_gradients(b->u, b->n, b->x, b->y, &loss_u), "unfused gradients");
    worst = check_close("loss", &loss_f, &loss_u, 1, worst);
    for (int i = 0; i < nnbench_f_tensor_count(); i++) {
        size_t nf = 0, nu = 0;
        real *gf = nnbench_f_grad(b->f, i, &nf), *gu = nnbench_u_grad(b->u, i, &nu);
        if (!gf != !gu || nf != nu)
            die("fused and unfused gradient tables differ at", nnbench_f_tensor_name(i));
        if (gf) {
            char what[256];
            snprintf(what, sizeof what, "gradient of %s", nnbench_f_tensor_name(i));
            worst = check_close(what, gf, gu, nf, worst);
        }
    }
    return worst;
}
#endif

static double check_agreement(Bench *b)
{
    share_weights(b);
    status(nnbench_f_forward(b->f, b->n, b->x, b->out_f), "fused forward");
    status(nnbench_u_forward(b->u, b->n, b->x, b->out_u), "unfused forward");
    double worst = check_close("forward outputs", b->out_f, b->out_u, (size_t)b->n * OUT_SIZE, 0);
#ifdef BENCH_TRAIN
    worst = check_gradients(b, worst);
#endif
    return worst;
}

static void call_f(Bench *b)
{
#ifdef BENCH_TRAIN
    status(nnbench_f_train_step(b->f, b->n, b->x, b->y, NULL), "fused train_step");
#else
    status(nnbench_f_forward(b->f, b->n, b->x, b->out_f), "fused forward");
#endif
}

static void call_u(Bench *b)
{
#ifdef BENCH_TRAIN
    status(nnbench_u_train_step(b->u, b->n, b->x, b->y, NULL), "unfused train_step");
#else
    status(nnbench_u_forward(b->u, b->n, b->x, b->out_u), "unfused forward");
#endif
}

/* Milliseconds per call over `iters` calls. */
static double time_run(Bench *b, int fused, long iters)
{
    double t0 = now_ms();
    for (long i = 0; i < iters; i++)
        fused ? call_f(b) : call_u(b);
    return (now_ms() - t0) / iters;
}

/* Warm both variants up (caches, page faults, OpenMP threads) for about warmup_ms and at least one call
 * each, alternating; return the calls per run that make a fused run last about run_ms, and in *per_call
 * the fused call's time. */
static long warm_up(Bench *b, const Options *o, double *per_call)
{
    double t0 = now_ms();
    long calls = 0;
    do {
        *per_call = time_run(b, 1, 1);
        call_u(b);
        calls++;
    } while (now_ms() - t0 < o->warmup_ms);
    long iters = (long)ceil(o->run_ms / fmax(*per_call, 1e-6));
    return iters < 1 ? 1 : iters;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int count)
{
    qsort(v, (size_t)count, sizeof *v, cmp_double);
    return count % 2 ? v[count / 2] : 0.5 * (v[count / 2 - 1] + v[count / 2]);
}

/* Heavy models get fewer rounds (at least 3) so that the rounds fit in about budget_ms. */
static int rounds_within_budget(const Options *o, double run_ms)
{
    int fit = (int)(o->budget_ms / (2 * run_ms));
    int runs = fit < o->runs ? fit : o->runs;
    return runs < 3 ? (o->runs < 3 ? o->runs : 3) : runs;
}

static void measure(Bench *b, const Options *o, double worst)
{
    static double tf[MAX_RUNS], tu[MAX_RUNS], ratio[MAX_RUNS];
    double per_call = 0;
    long iters = warm_up(b, o, &per_call);
    int runs = rounds_within_budget(o, iters * per_call);
    for (int r = 0; r < runs; r++) {
        tf[r] = time_run(b, 1, iters);
        tu[r] = time_run(b, 0, iters);
        ratio[r] = tu[r] / tf[r];
    }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    double mf = median(tf, runs), mu = median(tu, runs), mr = median(ratio, runs);
    printf("threads=%d batch=%d runs=%d iters=%ld check_rel_err=%.3g mem_f=%zu mem_u=%zu "
           "f_med=%.6f f_min=%.6f f_max=%.6f u_med=%.6f u_min=%.6f u_max=%.6f "
           "pair_med=%.4f pair_min=%.4f pair_max=%.4f\n",
           threads, b->n, runs, iters, worst, nnbench_f_memory_size(), nnbench_u_memory_size(), mf, tf[0],
           tf[runs - 1], mu, tu[0], tu[runs - 1], mr, ratio[0], ratio[runs - 1]);
}

static void parse_options(Options *o, int argc, char **argv)
{
    *o = (Options){NNBENCH_F_MAX_BATCH, 15, 1, 100, 300, 20000};
    for (int i = 1; i + 1 < argc; i += 2) {
        double v = atof(argv[i + 1]);
        if (strcmp(argv[i], "--batch") == 0)
            o->batch = (int)v;
        else if (strcmp(argv[i], "--runs") == 0)
            o->runs = (int)v;
        else if (strcmp(argv[i], "--run-ms") == 0)
            o->run_ms = v;
        else if (strcmp(argv[i], "--warmup-ms") == 0)
            o->warmup_ms = v;
        else if (strcmp(argv[i], "--budget-ms") == 0)
            o->budget_ms = v;
        else if (strcmp(argv[i], "--check") == 0)
            o->check = (int)v;
        else
            die("unknown option", argv[i]);
    }
    if (argc % 2 == 0)
        die("options come in pairs: --batch N --runs N --run-ms MS --warmup-ms MS --budget-ms MS --check 0|1",
            NULL);
    if (o->batch < 1 || o->batch > NNBENCH_F_MAX_BATCH || o->batch > NNBENCH_U_MAX_BATCH)
        die("--batch out of range of the generated code's MAX_BATCH", NULL);
    if (o->runs < 1 || o->runs > MAX_RUNS || !(o->run_ms > 0) || !(o->warmup_ms >= 0) || !(o->budget_ms > 0))
        die("--runs must be 1..1000, --run-ms and --budget-ms positive", NULL);
}

int main(int argc, char **argv)
{
    Options o;
    parse_options(&o, argc, argv);
    Bench b = {0};
    b.n = o.batch;
    b.f = nnbench_f_create(1);
    b.u = nnbench_u_create(1);
    if (!b.f || !b.u)
        die("cannot create the models", NULL);
    b.x = xcalloc((size_t)b.n * IN_SIZE, sizeof *b.x);
    b.out_f = xcalloc((size_t)b.n * OUT_SIZE, sizeof *b.out_f);
    b.out_u = xcalloc((size_t)b.n * OUT_SIZE, sizeof *b.out_u);
#ifdef BENCH_TRAIN
#ifdef TGT_CLASSES
    b.y = xcalloc((size_t)b.n, sizeof *b.y);
#else
    b.y = xcalloc((size_t)b.n * TGT_SIZE, sizeof *b.y);
#endif
    status(nnbench_f_set(b.f, "lr", 1e-12), "set lr");
    status(nnbench_u_set(b.u, "lr", 1e-12), "set lr");
#endif
    fill_inputs(&b);
    double worst = -1;   /* -1: not checked (bench/run checks once per binary) */
    if (o.check)
        worst = check_agreement(&b);
    else
        share_weights(&b);
    measure(&b, &o, worst);
    nnbench_f_destroy(b.f);
    nnbench_u_destroy(b.u);
    free(b.x);
    free(b.out_f);
    free(b.out_u);
#ifdef BENCH_TRAIN
    free(b.y);
#endif
    return 0;
}
