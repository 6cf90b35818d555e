/*
 * test_fusion.c: fusion never changes results beyond float rounding.  For
 * every example model, the default (fused) build, the build with every
 * fusion including the opt-in prologue, and the --fuse=none build, created
 * from one seed, give the same forward outputs (1e-5 relative, f32) and the
 * same loss and parameter gradients (1e-5 relative in norm per tensor) on
 * the same batch.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "driver.h"

#define N 3

typedef struct Shapes {
  long x, y, out;     /* per-sample elements of input, target, output */
  int classes;        /* class target: labels 0..classes-1; 0: real target */
} Shapes;

/* Sizes from the compiler's own graphs of the model. */
static Shapes shapes_of(const char *path) {
  Options opt = OPTIONS_DEFAULT;
  opt.input = path, opt.max_batch = N, opt.fuse = FUSE_NONE;
  Ctx ctx = {.arena = new_arena()};
  Result r = {0};
  cr_assert(nncc_compile(&ctx, &opt, &r), "%s: %s", path, ctx.diag.data);
  cr_assert(r.train, "%s has no loss", path);
  Shapes s = {0};
  for (int i = 0; i < r.train->values.len; i++) {
    const Value *v = &r.train->values.items[i];
    if (v->kind == V_INPUT)
      s.x = shape_numel(&v->shape);
    if (v->kind == V_TARGET) {
      s.y = shape_numel(&v->shape);
      s.classes = v->classes;
    }
  }
  for (int i = 0; i < r.infer->values.len; i++)
    if (r.infer->values.items[i].kind == V_OUTPUT)
      s.out = shape_numel(&r.infer->values.items[i].shape);
  free_result(&r);
  buf_free(&ctx.diag);
  free_arena(ctx.arena);
  return s;
}

typedef struct Run {
  float loss, *out, **grads;
  size_t *numel;
  int count;
} Run;

static Run run_variant(const char *name, const char *text, const char *opts, const Shapes *s,
               const float *x, const void *y) {
  Compiled cm;
  compile_model(&cm, name, text, opts, MODEL_O1);
  void *m = ((void *(*)(uint64_t))api(&cm, "create"))(5);
  Run r = {0};
  r.out = malloc(sizeof(float) * (size_t)(N * s->out));
  int (*forward)(void *, int, const float *, float *) =
      (int (*)(void *, int, const float *, float *))api(&cm, "forward");
  cr_assert_eq(forward(m, N, x, r.out), 0);
  int (*gradients)(void *, int, const float *, const void *, float *) =
      (int (*)(void *, int, const float *, const void *, float *))api(&cm, "gradients");
  cr_assert_eq(gradients(m, N, x, y, &r.loss), 0, "%s: gradients failed", name);
  r.count = ((int (*)(void))api(&cm, "tensor_count"))();
  r.grads = calloc((size_t)r.count, sizeof *r.grads);
  r.numel = calloc((size_t)r.count, sizeof *r.numel);
  float *(*grad)(void *, int, size_t *) = (float *(*)(void *, int, size_t *))api(&cm, "grad");
  for (int t = 0; t < r.count; t++) {
    float *g = grad(m, t, &r.numel[t]);
    if (!g)
      continue;
    r.grads[t] = malloc(sizeof(float) * r.numel[t]);
    memcpy(r.grads[t], g, sizeof(float) * r.numel[t]);
  }
  ((void (*)(void *))api(&cm, "destroy"))(m);
  return r;
}

static void free_run(Run *r) {
  for (int t = 0; t < r->count; t++)
    free(r->grads[t]);
  free(r->grads);
  free(r->numel);
  free(r->out);
}

static double norm_rel(const float *a, const float *b, size_t n) {
  double d = 0, s = 0;
  for (size_t i = 0; i < n; i++) {
    d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    s += (double)b[i] * b[i];
  }
  return s > 0 ? sqrt(d / s) : sqrt(d);
}

/* A fused build's run against the --fuse=none run of the same batch. */
static void compare_runs(const char *file, const char *fuse, const Run *fused, const Run *plain,
                         const Shapes *s) {
  double out_err = norm_rel(fused->out, plain->out, (size_t)(N * s->out));
  cr_expect(out_err < 1e-5, "%s %s: forward outputs differ by %g", file, fuse, out_err);
  cr_expect(fabs(fused->loss - plain->loss) <= 1e-5 * fmax(1, fabs(plain->loss)),
            "%s %s: loss %g vs %g", file, fuse, fused->loss, plain->loss);
  int compared = 0;
  for (int k = 0; k < fused->count; k++) {
    if (!fused->grads[k] || !plain->grads[k])
      continue;
    double err = norm_rel(fused->grads[k], plain->grads[k], fused->numel[k]);
    cr_expect(err < 1e-5, "%s %s: gradient of tensor %d differs by %g", file, fuse, k, err);
    compared++;
  }
  cr_expect(compared > 0, "%s %s: no gradients compared", file, fuse);
}

static void compare_model(const char *path, const char *file) {
  char name[128];
  char *text = read_text(path);
  cr_assert(text, "cannot read %s", path);
  Shapes s = shapes_of(path);
  float *x = malloc(sizeof(float) * (size_t)(N * s.x));
  fill_uniform(x, (size_t)(N * s.x), 3, 0, 1);
  int32_t labels[N];
  float *t = malloc(sizeof(float) * (size_t)(N * (s.y ? s.y : 1)));
  for (int i = 0; i < N; i++)
    labels[i] = s.classes ? (i * 7 + 1) % s.classes : 0;
  fill_uniform(t, (size_t)(N * s.y), 4, 0, 1);
  const void *y = s.classes ? (const void *)labels : (const void *)t;
  /* The model line names the API; the harness needs it as the file name. */
  const char *model = strstr(text, "\nmodel ");
  cr_assert(model || strncmp(text, "model ", 6) == 0);
  sscanf(model ? model + 7 : text + 6, "%127s", name);
  static const char *const fusions[] = {"--fuse=all",
                                        "--fuse=bn_fold,epilogue,elementwise,prologue"};
  char opts[128];
  snprintf(opts, sizeof opts, "--batch %d --fuse=none", N);
  Run plain = run_variant(name, text, opts, &s, x, y);
  for (size_t f = 0; f < sizeof fusions / sizeof fusions[0]; f++) {
    snprintf(opts, sizeof opts, "--batch %d %s", N, fusions[f]);
    Run fused = run_variant(name, text, opts, &s, x, y);
    compare_runs(file, fusions[f], &fused, &plain, &s);
    free_run(&fused);
  }
  free_run(&plain);
  free(x);
  free(t);
  free(text);
}

static void compare_example(const char *file) {
  char path[600];
  snprintf(path, sizeof path, "%s/examples/%s", NNCC_SOURCE_DIR, file);
  compare_model(path, file);
}

/* Windows per axis and side: batchnorm folded into a conv of a 10x4 kernel
 * at stride 2 with TF's 'same' pads, relu epilogues on a depthwise conv
 * with 'same' pads and a dilated conv with pads per side. */
Test(fusion, windows_same_outputs_and_gradients) {
  char path[600];
  snprintf(path, sizeof path, "%s/fusion_windows_%ld.nn", NNCC_TEST_TMP, (long)getpid());
  write_file(path, "model fwin\ninput x: f32[1, 13, 10]\ntarget y: class[3]\n"
                   "h = conv2d(x, 6, kernel=(4, 3), stride=(2, 2), padding=same) |> batchnorm "
                   "|> relu\n"
                   "h = conv2d(h, 6, kernel=3, groups=6, padding=same) |> batchnorm |> relu\n"
                   "h = conv2d(h, 4, kernel=(2, 3), dilation=(2, 1), pad=(1, 0, 1, 2)) |> relu\n"
                   "h = avgpool(h, (3, 2), pad=(1, 0)) |> flatten\n"
                   "logits = dense(h, 3)\noutput p = softmax(logits)\n"
                   "loss cross_entropy(logits, y)\n");
  compare_model(path, "fusion_windows");
  remove(path);
}

Test(fusion, every_example_same_outputs_and_gradients, .timeout = 900) {
  DIR *d = opendir(NNCC_SOURCE_DIR "/examples");
  cr_assert(d);
  struct dirent *e;
  int models = 0;
  while ((e = readdir(d))) {
    size_t len = strlen(e->d_name);
    if (len > 3 && !strcmp(e->d_name + len - 3, ".nn")) {
      compare_example(e->d_name);
      models++;
    }
  }
  closedir(d);
  cr_expect(models >= 2);
}

/* CPU seconds nncc_compile takes for a chain of 2 * repeats layers
 * (h = relu(h + x)), with its training graph. */
static double chain_seconds(int repeats) {
  char path[512];
  snprintf(path, sizeof path, "%s/chain_%ld_%d.nn", NNCC_TEST_TMP, (long)getpid(), repeats);
  FILE *f = fopen(path, "w");
  cr_assert(f, "cannot create %s", path);
  fprintf(f, "model chain\ninput x: f32[16]\ntarget t: f32[16]\nh = x\n"
             "repeat %d { h = relu(h + x) }\noutput y = h\nloss mse(h, t)\n", repeats);
  cr_assert_eq(fclose(f), 0);
  Options opt = OPTIONS_DEFAULT;
  opt.input = path, opt.max_batch = 4;
  Ctx ctx = {.arena = new_arena()};
  Result r = {0};
  clock_t start = clock();
  bool ok = nncc_compile(&ctx, &opt, &r);
  double seconds = (double)(clock() - start) / CLOCKS_PER_SEC;
  cr_assert(ok, "%s", ctx.diag.data);
  free_result(&r);
  buf_free(&ctx.diag);
  free_arena(ctx.arena);
  remove(path);
  return seconds;
}

/* Found with the fuzz harness, on a model at the language's limits: fusion
 * scanned the whole graph for the consumers of every candidate, quadratic
 * in the layers, so a chain of 20,000 layers (the limit) took 8 s in a
 * release build and over 80 s under the sanitizers.  Ten times the layers must now cost about ten times the
 * CPU time (it was 70 times), whatever the load of the machine. */
Test(fusion, compile_time_linear_in_layers, .timeout = 600) {
  double small = chain_seconds(999), large = chain_seconds(9999);
  cr_assert(large < 30 * small + 0.2, "2,000 layers: %.2f s, 20,000 layers: %.2f s of CPU",
            small, large);
}
