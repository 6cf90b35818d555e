/*
 * test_eager.c: --eager-update (codegen/train.c, passes/schedule_updates.c).
 *
 * An eager build applies each trained tensor's update inside the backward
 * pass, as soon as its gradient is complete; its train_step must leave the
 * model exactly as the ordinary build's train_step does.  The reference here
 * is the ordinary build of the same model (whose optimizers test_train.c
 * checks against formulas written from PyTorch's): after every step the two
 * checkpoints (weights, running statistics, counters, optimizer state, step
 * count) must hold the same bytes, and the loss, the learning rate and every
 * update ratio must be equal.  Also: the memory the eager build saves, the
 * order of updates and reads (a parameter is read after its gradient is
 * complete when a fused prologue recomputes an activation gradient), the
 * failure paths, and the option conflicts.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define NB 8   /* batch */

typedef struct Build {
  Compiled cm;
  size_t (*memory_size)(void);
  void *(*create)(uint64_t);
  void (*destroy)(void *);
  int (*step)(void *, int, const float *, const void *, float *);
  int (*count)(void);
  const char *(*name)(int);
  float *(*tensor)(void *, int, size_t *);
  double (*lr)(const void *);
  int64_t (*steps)(const void *);
  double (*ratio)(const void *, int);
  int (*save)(void *, const char *);
  const char *(*last_error)(const void *);
} Build;

static void load(Build *b, const char *name, const char *model, const char *opts,
                 const char *cflags) {
  compile_model(&b->cm, name, model, opts, cflags);
  const Compiled *c = &b->cm;
  b->memory_size = (size_t (*)(void))api(c, "memory_size");
  b->create = (void *(*)(uint64_t))api(c, "create");
  b->destroy = (void (*)(void *))api(c, "destroy");
  b->step = (int (*)(void *, int, const float *, const void *, float *))api(c, "train_step");
  b->count = (int (*)(void))api(c, "tensor_count");
  b->name = (const char *(*)(int))api(c, "tensor_name");
  b->tensor = (float *(*)(void *, int, size_t *))api(c, "tensor");
  b->lr = (double (*)(const void *))api(c, "lr");
  b->steps = (int64_t (*)(const void *))api(c, "step");
  b->ratio = (double (*)(const void *, int))api(c, "update_ratio");
  b->save = (int (*)(void *, const char *))api(c, "save");
  b->last_error = (const char *(*)(const void *))api(c, "last_error");
}

/* The ordinary and the eager build of `model` (a format with the model name
 * and the train section's body), compiled with -fopenmp and linked with the
 * OpenMP runtime even when no kernel of the small model shares its loops
 * (then the calls open no parallel region and run on one thread). */
static void load_pair(Build *plain, Build *eager, const char *tag, const char *model,
                      const char *train, const char *opts) {
  char name[2][32], text[2][2048], o[2][256];
  for (int k = 0; k < 2; k++) {
    snprintf(name[k], sizeof name[k], "%s_%s", tag, k ? "eager" : "plain");
    snprintf(text[k], sizeof text[k], model, name[k], train);
    snprintf(o[k], sizeof o[k], "%s%s", opts, k ? " --eager-update" : "");
  }
  load(plain, name[0], text[0], o[0], MODEL_O1 " -fopenmp -Wl,--no-as-needed");
  load(eager, name[1], text[1], o[1], MODEL_O1 " -fopenmp -Wl,--no-as-needed");
}

/* The tensor data of a checkpoint of m, every byte after the safetensors
 * header: params, buffers, counters, optimizer state and the step, in table
 * order (the header differs between two builds only by the model name). */
static unsigned char *checkpoint_data(const Build *b, void *m, size_t *n) {
  char path[700];
  snprintf(path, sizeof path, "%s/state.safetensors", b->cm.dir);
  cr_assert_eq(b->save(m, path), 0, "save: %s", b->last_error(m));
  FILE *f = fopen(path, "rb");
  cr_assert(f);
  unsigned char head[8];
  cr_assert_eq(fread(head, 1, 8, f), 8u);
  uint64_t len = 0;
  for (int i = 7; i >= 0; i--)
    len = len << 8 | head[i];
  fseek(f, 0, SEEK_END);
  long total = ftell(f);
  cr_assert(total >= (long)(8 + len));
  *n = (size_t)total - 8 - (size_t)len;
  unsigned char *data = malloc(*n + 1);
  fseek(f, (long)(8 + len), SEEK_SET);
  cr_assert_eq(fread(data, 1, *n, f), *n);
  fclose(f);
  remove(path);
  return data;
}

/* m of a and e of b hold the same state, bit for bit. */
static void expect_same(const Build *a, void *m, const Build *b, void *e, const char *what) {
  size_t n1, n2;
  unsigned char *d1 = checkpoint_data(a, m, &n1), *d2 = checkpoint_data(b, e, &n2);
  cr_expect(n1 == n2 && memcmp(d1, d2, n1) == 0,
            "%s: the checkpoints differ (weights, buffers, counters, optimizer state or step)", what);
  free(d1);
  free(d2);
  cr_expect_eq(a->steps(m), b->steps(e), "%s: step count", what);
  double l1 = a->lr(m), l2 = b->lr(e);
  cr_expect(memcmp(&l1, &l2, sizeof l1) == 0, "%s: lr %.17g against %.17g", what, l1, l2);
  for (int t = 0; t < a->count(); t++) {
    double r1 = a->ratio(m, t), r2 = b->ratio(e, t);
    cr_expect(memcmp(&r1, &r2, sizeof r1) == 0, "%s: update ratio of %s: %.17g against %.17g",
              what, a->name(t), r1, r2);
  }
}

static void set_threads(const Build *b, int threads) {
  void (*set)(int) = (void (*)(int))dlsym(b->cm.lib, "omp_set_num_threads");
  cr_assert(set, "not linked with OpenMP");
  set(threads);
}

/* Batch k: nx inputs per sample in [-1, 1), labels 0..classes-1. */
static void batch(int k, int nx, int classes, float *x, int32_t *y) {
  fill_uniform(x, (size_t)NB * (size_t)nx, 500 + (uint64_t)k, -1, 1);
  for (int i = 0; i < NB; i++)
    y[i] = (int32_t)((i * 7 + k) % classes);
}

/* Steps of the ordinary build (one thread) against the eager build at one
 * and at two threads, compared after each. */
static void check_pair(const Build *plain, const Build *eager, int nx, int classes, int steps) {
  void *p = plain->create(7), *e1 = eager->create(7), *e2 = eager->create(7);
  expect_same(plain, p, eager, e1, "created");
  float *x = malloc(sizeof(float) * NB * (size_t)nx);
  int32_t y[NB];
  for (int k = 0; k < steps; k++) {
    batch(k, nx, classes, x, y);
    float lp, l1, l2;
    set_threads(plain, 1);
    cr_assert_eq(plain->step(p, NB, x, y, &lp), 0, "plain step %d: %s", k, plain->last_error(p));
    cr_assert_eq(eager->step(e1, NB, x, y, &l1), 0, "eager step %d: %s", k, eager->last_error(e1));
    set_threads(eager, 2);
    cr_assert_eq(eager->step(e2, NB, x, y, &l2), 0, "eager step %d: %s", k, eager->last_error(e2));
    set_threads(eager, 1);
    cr_expect(lp == l1 && lp == l2, "step %d: loss %.9g, eager %.9g and %.9g", k, lp, l1, l2);
    char what[64];
    snprintf(what, sizeof what, "step %d, one thread", k);
    expect_same(plain, p, eager, e1, what);
    snprintf(what, sizeof what, "step %d, two threads", k);
    expect_same(plain, p, eager, e2, what);
  }
  free(x);
  plain->destroy(p), eager->destroy(e1), eager->destroy(e2);
}

/* A convolution with batchnorm (batch statistics, running statistics and
 * num_batches_tracked), a frozen layer, a pool, prelu and two dense layers. */
static const char *const conv_model =
    "model %s\ninput x: f32[2, 6, 6]\ntarget y: class[3]\n"
    "h = conv2d(x, 4, kernel=3, pad=1) |> batchnorm |> relu\n"
    "h = conv2d(h, 4, kernel=3, pad=1, freeze=true) |> relu |> maxpool(2)\n"
    "h = flatten(h) |> dense(8) |> prelu\n"
    "logits = dense(h, 3)\noutput logits\nloss cross_entropy(logits, y)\ntrain {\n%s\n}\n";

/* conv_model with the train section `train`: four steps compared. */
static void check_conv(const char *tag, const char *train) {
  Build p, e;
  load_pair(&p, &e, tag, conv_model, train, "--batch 8");
  check_pair(&p, &e, 72, 3, 4);
  close_model(&p.cm), close_model(&e.cm);
}

Test(eager, sgd_momentum_dampening_weight_decay_maxnorm) {
  check_conv("mom", "optimizer sgd(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)\n"
                    "decay maxnorm(0.5)");
}

Test(eager, nesterov_step_schedule) {
  check_conv("nes", "optimizer sgd(lr=0.05, momentum=0.9, nesterov=true, weight_decay=0.01)\n"
                    "schedule step(every=2, gamma=0.5)");
}

/* No grads block: memory_size() smaller by at least the largest gradient
 * (the gradients fit in the arena the forward pass needs anyway), no
 * gradients(), update() or grad(), and --report says so. */
static void expect_memory_and_api(const Build *p, const Build *e) {
  long trained = emitted_define(&p->cm, "NN_GRADS_SIZE"), largest = 0;
  cr_expect_eq(emitted_define(&e->cm, "NN_GRADS_SIZE"), 0);
  void *m = p->create(1);
  for (int t = 0; t < p->count(); t++) {
    size_t n;
    p->tensor(m, t, &n);
    const char *name = p->name(t);
    bool frozen = strncmp(name, "conv2.", 6) == 0, buffer = strstr(name, "running_") != NULL;
    if (!frozen && !buffer && (long)n > largest)
      largest = (long)n;
  }
  p->destroy(m);
  cr_assert_eq(largest, 36 * 8, "fc1.weight is the largest trained tensor");
  size_t pm = p->memory_size(), em = e->memory_size();
  cr_expect(em + sizeof(float) * (size_t)largest <= pm,
            "memory_size: eager %zu, ordinary %zu, largest gradient %ld bytes (all: %ld)", em, pm,
            largest * 4, trained * 4);
  char sym[128], path[700];
  const char *fns[] = {"gradients", "update", "grad"};
  for (int i = 0; i < 3; i++) {
    snprintf(sym, sizeof sym, "%s_%s", p->cm.name, fns[i]);
    cr_expect(dlsym(p->cm.lib, sym), "the ordinary build has no %s", sym);
    snprintf(sym, sizeof sym, "%s_%s", e->cm.name, fns[i]);
    cr_expect(!dlsym(e->cm.lib, sym), "the eager build has %s", sym);
  }
  snprintf(path, sizeof path, "%s/%s.h", e->cm.dir, e->cm.name);
  char *header = read_text(path);
  cr_assert(header);
  cr_expect(strstr(header, "no gradients(), update() or grad()") && !strstr(header, "_gradients("));
  free(header);
  char out[1 << 14];
  snprintf(path, sizeof path, "%s/%s.nn", e->cm.dir, e->cm.name);
  cr_assert_eq(run_capture(out, sizeof out, "%s %s --batch 8 --eager-update --report", NNCC_BIN, path), 0);
  cr_expect(strstr(out, "--eager-update: no grads block"), "--report:\n%s", out);
}

/* f32 with batchnorm: a NaN or Inf pixel makes the loss NaN, a 3e38 one
 * leaves it finite but makes running_var Inf.  Nothing is updated before
 * those checks: each failed step leaves the whole state as it was. */
static void expect_nonfinite_inputs_change_nothing(const Build *e) {
  void *m = e->create(1);
  float x[NB * 72];
  int32_t y[NB];
  for (int k = 0; k < 2; k++) {
    batch(k, 72, 3, x, y);
    cr_assert_eq(e->step(m, NB, x, y, NULL), 0);
  }
  size_t n0, n1;
  unsigned char *before = checkpoint_data(e, m, &n0);
  const float bad[] = {NAN, INFINITY, -INFINITY, 3e38f};
  for (int i = 0; i < 4; i++) {
    batch(5, 72, 3, x, y);
    x[4] = bad[i];
    cr_expect_eq(e->step(m, NB, x, y, NULL), -5, "pixel %g: status", (double)bad[i]);
    unsigned char *after = checkpoint_data(e, m, &n1);
    cr_expect(n0 == n1 && memcmp(before, after, n0) == 0,
              "pixel %g: the failed step changed the model's state", (double)bad[i]);
    free(after);
  }
  cr_expect_eq(e->steps(m), 2);
  batch(6, 72, 3, x, y);
  cr_expect_eq(e->step(m, NB, x, y, NULL), 0, "a good step after failed ones");
  free(before);
  e->destroy(m);
}

/* Adam on conv_model; the same two builds also give the memory and API
 * checks and the non-finite inputs. */
Test(eager, adam_elastic_maxnorm_memory_nonfinite_inputs) {
  Build p, e;
  load_pair(&p, &e, "adm", conv_model,
            "optimizer adam(lr=0.01, betas=(0.8, 0.99))\ndecay elastic(l1=0.001, l2=0.01)\n"
            "decay maxnorm(0.5)\nschedule cosine(steps=3, lr_min=0.001)", "--batch 8");
  check_pair(&p, &e, 72, 3, 4);
  expect_memory_and_api(&p, &e);
  expect_nonfinite_inputs_change_nothing(&e);
  close_model(&p.cm), close_model(&e.cm);
}

/* A weight of 51,200 elements: 13 optimizer chunks of whole 800-element
 * units, run in parallel (both builds) at two threads. */
static const char *const wide_model =
    "model %s\ninput x: f32[800]\ntarget y: class[3]\n"
    "h = dense(x, 64) |> relu\nlogits = dense(h, 3)\noutput logits\n"
    "loss cross_entropy(logits, y)\ntrain {\n%s\n}\n";

Test(eager, rmsprop_adagrad_wide) {
  const char *trains[] = {"optimizer rmsprop(lr=0.001)\ndecay maxnorm(1)",
                          "optimizer adagrad(lr=0.01, weight_decay=0.001)"};
  for (int i = 0; i < 2; i++) {
    Build p, e;
    load_pair(&p, &e, i ? "ada" : "rms", wide_model, trains[i], "--batch 8");
    check_pair(&p, &e, 800, 3, 3);
    close_model(&p.cm), close_model(&e.cm);
  }
}

/* The order of reads and updates.  prelu's slope is read by prelu_dx, which
 * the prologue fusion recomputes inside batchnorm's backward kernel, after
 * prelu_dw has completed the slope's gradient: an update right after the
 * node that completes a gradient would change the slope before that read,
 * and the eager build would no longer match.  And in the IR, each dense
 * layer's weight is updated after its dx kernel has read it. */
static const char *const prologue_model =
    "model %s\ninput x: f32[5]\ntarget y: class[3]\n"
    "h = dense(x, 6) |> batchnorm |> prelu\n"
    "logits = dense(h, 3)\noutput logits\nloss cross_entropy(logits, y)\ntrain {\n%s\n}\n";

Test(eager, updates_after_the_last_read) {
  Build p, e;
  const char *fuse = "--batch 8 --fuse=bn_fold,epilogue,elementwise,prologue";
  load_pair(&p, &e, "pro", prologue_model, "optimizer sgd(lr=0.5)", fuse);
  char nn[700], out[1 << 15];
  snprintf(nn, sizeof nn, "%s/pro_eager.nn", e.cm.dir);
  cr_assert_eq(run_capture(out, sizeof out, "%s %s %s --eager-update --report", NNCC_BIN, nn, fuse), 0);
  cr_assert(strstr(out, "(prelu_dx) recomputed in"), "no prologue fused:\n%s", out);
  check_pair(&p, &e, 5, 3, 3);
  cr_assert_eq(run_capture(out, sizeof out, "%s %s --batch 8 --eager-update --emit-ir", NNCC_BIN, nn), 0);
  const char *dx = strstr(out, "dense_dx[fc2]"), *upd = strstr(out, "param_update[fc2.weight]");
  cr_expect(dx && upd && dx < upd, "fc2.weight is updated before dense_dx reads it:\n%s", out);
  close_model(&p.cm), close_model(&e.cm);
}

/* A gradient that overflows while the loss stays finite (f32): fc1.weight =
 * 1e-30 reads x = 1e30, so h = 1 and y = 1, the loss (1 + 1e9)^2 = 1e18, but
 * d fc1.weight = 2e9 * 1e30 is Inf.  The ordinary build refuses the whole
 * step; the eager one has updated fc2 (its gradients come first), stops at
 * fc1.weight and says how many tensors kept their update. */
static const char *const overflow_model =
    "model %s\ninput x: f32[1]\ntarget t: f32[1]\n"
    "h = dense(x, 1)\ny = dense(h, 1)\noutput y\nloss mse(y, t)\n"
    "train {\noptimizer sgd(lr=0.001)\n}\n";

static void *overflow_start(const Build *b) {
  void *m = b->create(1);
  const struct { const char *name; float v; } init[] = {
      {"fc1.weight", 1e-30f}, {"fc1.bias", 0}, {"fc2.weight", 1}, {"fc2.bias", 0}};
  cr_assert_eq(b->count(), 4);
  for (int t = 0; t < 4; t++) {
    cr_assert_str_eq(b->name(t), init[t].name);
    b->tensor(m, t, NULL)[0] = init[t].v;
  }
  return m;
}

Test(eager, nonfinite_gradient_stops_the_step) {
  char text[2][512];
  Build b[2];
  for (int k = 0; k < 2; k++) {
    snprintf(text[k], sizeof text[k], overflow_model, k ? "ovf_eager" : "ovf_plain");
    load(&b[k], k ? "ovf_eager" : "ovf_plain", text[k], k ? "--batch 1 --eager-update" : "--batch 1",
         MODEL_O1);
  }
  const float x[1] = {1e30f}, t[1] = {-1e9f};
  float before[4], after[2][4], loss[2];
  for (int k = 0; k < 2; k++) {
    void *m = overflow_start(&b[k]);
    for (int i = 0; i < 4; i++)
      before[i] = b[k].tensor(m, i, NULL)[0];
    cr_expect_eq(b[k].step(m, 1, x, t, &loss[k]), -5, "%s: status", b[k].cm.name);
    for (int i = 0; i < 4; i++)
      after[k][i] = b[k].tensor(m, i, NULL)[0];
    cr_expect_eq(b[k].steps(m), 0);
    if (k == 1) {
      const char *msg = b[k].last_error(m);
      int changed = 0, said = -1;
      for (int i = 0; i < 4; i++)
        changed += after[1][i] != before[i];
      const char *at = strstr(msg, "; the ");
      cr_expect(strstr(msg, "fc1.weight") && strstr(msg, "updated before it") && at &&
                    sscanf(at, "; the %d tensor", &said) == 1,
                "message: %s", msg);
      cr_expect_eq(said, changed, "message: %s, but %d tensors changed", msg, changed);
      cr_expect(after[1][2] != before[2], "fc2.weight not updated");
      cr_expect(after[1][0] == before[0], "fc1.weight changed");
    } else {
      cr_expect(memcmp(before, after[0], sizeof before) == 0, "the ordinary build updated");
    }
    b[k].destroy(m);
  }
  cr_expect(isfinite(loss[1]) && loss[0] == loss[1], "loss %g, eager %g", loss[0], loss[1]);
  close_model(&b[0].cm), close_model(&b[1].cm);
}

/* Option conflicts and a model without a loss: `nncc: error: ...`. */
Test(eager, conflicts) {
  char dir[512], path[600], nl[600], out[4096];
  scratch_dir(dir, sizeof dir, "eagerc");
  snprintf(path, sizeof path, "%s/m.nn", dir);
  snprintf(nl, sizeof nl, "%s/noloss.nn", dir);
  char text[1024];
  snprintf(text, sizeof text, overflow_model, "m");
  write_file(path, text);
  write_file(nl, "model noloss\ninput x: f32[2]\ny = dense(x, 2)\noutput y\n");
  const struct {
    const char *args;
    const char *error;
  } cases[] = {
      {"--infer", "nncc: error: --eager-update is for a training build: drop --infer or --eager-update"},
      {"--distributed=mpi", "nncc: error: --eager-update cannot be used with --distributed=mpi"},
      {"--input-grad", "nncc: error: --input-grad gives gradients() the input's gradient, and an "
                       "--eager-update build has no gradients(): drop one of them"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int st = run_capture(out, sizeof out, "%s %s --eager-update %s -o %s/x.c", NNCC_BIN, path,
                         cases[i].args, dir);
    cr_expect_eq(st, 2, "%s: status %d", cases[i].args, st);
    cr_expect(strncmp(out, cases[i].error, strlen(cases[i].error)) == 0, "%s: %s", cases[i].args, out);
  }
  int st = run_capture(out, sizeof out, "%s %s --eager-update -o %s/y.c", NNCC_BIN, nl, dir);
  cr_expect_eq(st, 1);
  cr_expect(strstr(out, "nncc: error: --eager-update is for a training build: noloss has no loss"),
            "%s", out);
  /* both compilers, every warning an error, with and without OpenMP */
  cr_assert_eq(run_capture(out, sizeof out, "%s %s --eager-update --batch 4 -o %s/m.c", NNCC_BIN,
                           path, dir), 0, "%s", out);
  const char *ccs[] = {"gcc", "clang"}, *omp[] = {"", "-fopenmp"};
  for (int c = 0; c < 2; c++)
    for (int o = 0; o < 2; o++) {
      st = run_capture(out, sizeof out, "%s -std=c11 -Wall -Wextra -Werror -pedantic %s -c %s/m.c -o %s/m.o",
                       ccs[c], omp[o], dir, dir);
      cr_expect_eq(st, 0, "%s %s:\n%s", ccs[c], omp[o], out);
    }
}
