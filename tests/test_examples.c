/*
 * test_examples.c: every examples/NAME.nn, found with opendir so that a new
 * example is covered without touching this file, is
 *   build:  a complete model (one input, one target, one output, a `loss`
 *           and a `train { }` section), accepted by `nncc --verify`, its
 *           training and inference C compiled by gcc and clang with
 *           -std=c11 -Wall -Wextra -Werror -pedantic, with and without
 *           -fopenmp;
 *   grad:   gradient-checked in f64 on a batch of 2 (every fifth input
 *           element, 6 samples of each parameter);
 *   train:  trainable: on 16 fixed synthetic samples the f32 -O2 build
 *           halves its loss within TRAIN_STEPS steps of its own optimizer;
 *           and its --infer build computes the training build's forward to
 *           1e-5, at the initial weights (same seed) and after training
 *           (weights and batchnorm running statistics copied over, which
 *           exercises batchnorm folding).  One test, as the two share the
 *           costly -O2 compile.
 *
 * The models of examples/imagenet/ get the build test only (imagenet_build).
 *
 * The .nn file is read only for its declarations (model, input, target,
 * output, loss, train); everything else is nncc's business.
 *
 * Gradient checks perturb many input elements, so for inputs of more than
 * GRAD_MAX_INPUT elements per sample (CIFAR-size (3, 32, 32)) the check runs
 * on a copy whose input is (C, H/4, W/4): no op's gradient rule depends on H
 * and W, and the full-size model is what the other two tests build.
 *
 * The bound is GRAD_TOL = 1e-6, as for the ops.  grad_check's central
 * difference steps by 1e-5: with 1e-6, rounding noise of a few ulps in a
 * deep model's loss (sums over thousands of terms) reached 2.4e-6 on
 * lenet5.nn (2.4e-7 with 1e-5, 3.4e-8 with 1e-4: noise falling as 1/eps),
 * while a wrong rule shows errors of 1e-2 and more.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

#define EXAMPLES NNCC_SOURCE_DIR "/examples"
#define MAX_EXAMPLES 64
#define TRAIN_BATCH 16
#define TRAIN_STEPS 200
#define GRAD_MAX_INPUT 1024
#define GRAD_TOL 1e-6
#define STRICT "-std=c11 -Wall -Wextra -Werror -pedantic"

/* ---- discovery ---------------------------------------------------------- */

static int by_name(const void *a, const void *b) {
  return strcmp((const char *)a, (const char *)b);
}

/* Sorted file names of examples/NAME.nn; returns the count. */
static int list_examples(char names[][128]) {
  DIR *d = opendir(EXAMPLES);
  cr_assert(d, "cannot open %s", EXAMPLES);
  int count = 0;
  for (struct dirent *e; (e = readdir(d));) {
    size_t len = strlen(e->d_name);
    if (len < 4 || len >= 128 || strcmp(e->d_name + len - 3, ".nn") != 0)
      continue;
    cr_assert(count < MAX_EXAMPLES, "more than %d examples", MAX_EXAMPLES);
    memcpy(names[count++], e->d_name, len + 1);
  }
  closedir(d);
  qsort(names, (size_t)count, sizeof names[0], by_name);
  return count;
}

/* An index into the sorted list: a plain int survives Criterion's passing
 * of parameters to the test process, a pointer would not. */
static int example_index[MAX_EXAMPLES];

static size_t example_count(void) {
  char names[MAX_EXAMPLES][128];
  int count = list_examples(names);
  for (int i = 0; i < count; i++)
    example_index[i] = i;
  return (size_t)count;
}

ParameterizedTestParameters(examples, build) {
  return cr_make_param_array(int, example_index, example_count());
}

/* ---- the declarations of an example ------------------------------------- */

typedef struct Example {
  char file[128];        /* vgg_small.nn */
  char path[700];
  char *src;             /* the file's text */
  char name[64];         /* model name = API prefix */
  char output[64];       /* the output's name */
  int inputs, targets, outputs;
  bool has_loss, has_train;
  int in_rank;
  long in_dim[4];
  size_t in_size;        /* elements per sample */
  int classes;           /* class[K] target: K; f32 target: 0 */
  size_t tgt_size;       /* f32 target: elements per sample */
  char *in_line;         /* where "input ..." starts in src */
} Example;

/* Word at s (an identifier), copied into out. */
static const char *word(const char *s, char *out, size_t cap) {
  size_t k = 0;
  while (isalnum((unsigned char)*s) || *s == '_') {
    if (k + 1 < cap)
      out[k++] = *s;
    s++;
  }
  out[k] = '\0';
  return s;
}

/* Parses "[d0, d1, ...]" at s; returns the element count. */
static size_t dims(const char *s, long *dim, int *rank) {
  size_t numel = 1;
  *rank = 0;
  s = strchr(s, '[');
  cr_assert(s, "shape without '['");
  while (*s && *s != ']') {
    char *end;
    long v = strtol(s + 1, &end, 10);
    cr_assert(end != s + 1 && *rank < 4, "bad shape");
    dim[(*rank)++] = v;
    numel *= (size_t)v;
    s = end;
    while (*s == ' ')
      s++;
  }
  return numel;
}

static void read_decl(Example *ex, char *line) {
  char kw[32], id[64];
  const char *p = word(line, kw, sizeof kw);
  while (*p == ' ' || *p == '\t')
    p++;
  p = word(p, id, sizeof id);
  if (strcmp(kw, "model") == 0) {
    snprintf(ex->name, sizeof ex->name, "%s", id);
  } else if (strcmp(kw, "input") == 0) {
    ex->inputs++;
    ex->in_line = line;
    ex->in_size = dims(p, ex->in_dim, &ex->in_rank);
  } else if (strcmp(kw, "target") == 0) {
    long d[4];
    int r;
    ex->targets++;
    if (strstr(p, "class"))
      ex->classes = (int)strtol(strchr(p, '[') + 1, NULL, 10);
    else
      ex->tgt_size = dims(p, d, &r);
  } else if (strcmp(kw, "output") == 0) {
    ex->outputs++;
    snprintf(ex->output, sizeof ex->output, "%s", id);
  } else if (strcmp(kw, "loss") == 0) {
    ex->has_loss = true;
  } else if (strcmp(kw, "train") == 0) {
    ex->has_train = true;
  }
}

/* Loads example number `index` and checks it is a complete model this test
 * can drive (the limits are the harness's: one input, one target). */
static void load_example(Example *ex, int index) {
  char names[MAX_EXAMPLES][128];
  int count = list_examples(names);
  cr_assert(index < count, "example %d vanished", index);
  memset(ex, 0, sizeof *ex);
  snprintf(ex->file, sizeof ex->file, "%s", names[index]);
  snprintf(ex->path, sizeof ex->path, "%s/%s", EXAMPLES, ex->file);
  ex->src = read_text(ex->path);
  cr_assert(ex->src, "cannot read %s", ex->path);
  for (char *line = ex->src; line && *line;) {
    while (*line == ' ' || *line == '\t')
      line++;
    read_decl(ex, line);
    line = strchr(line, '\n');
    line = line ? line + 1 : NULL;
  }
  cr_assert(ex->name[0], "%s: no 'model' line", ex->file);
  cr_assert(ex->has_loss, "%s: no 'loss' statement: every example must be trainable", ex->file);
  cr_assert(ex->has_train, "%s: no 'train { }' section", ex->file);
  cr_assert(ex->inputs == 1 && ex->targets == 1 && ex->outputs == 1,
            "%s: %d inputs, %d targets, %d outputs; this test drives exactly one of each",
            ex->file, ex->inputs, ex->targets, ex->outputs);
}

static void free_example(Example *ex) {
  free(ex->src);
  ex->src = NULL;
}

/* Elements per sample of the output, from the generated header. */
static size_t output_size(const Compiled *cm, const Example *ex) {
  char h[700], macro[160];
  snprintf(h, sizeof h, "%.*s.h", (int)(strlen(cm->c_path) - 2), cm->c_path);
  snprintf(macro, sizeof macro, "#define %s_%s_SIZE ", ex->name, ex->output);
  for (char *c = macro; *c; c++)
    if (c > macro + 7)
      *c = (char)toupper((unsigned char)*c);
  char *text = read_text(h);
  cr_assert(text, "no header %s", h);
  char *at = strstr(text, macro);
  cr_assert(at, "%s: no %s", h, macro);
  size_t size = (size_t)strtoul(at + strlen(macro), NULL, 10);
  free(text);
  return size;
}

/* ---- synthetic data ----------------------------------------------------- */

/* Labels and targets for n samples of x.  A real-valued target with as many
 * elements as the input is the input itself (autoencoders); any other is
 * uniform in [0, 1]. */
static void make_targets(const Example *ex, int n, const double *x, size_t in_size,
                         int32_t *labels, double *t) {
  for (int i = 0; i < n; i++)
    labels[i] = (int32_t)((i * 7 + 3) % (ex->classes ? ex->classes : 1));
  if (ex->classes)
    return;
  size_t len = (size_t)n * ex->tgt_size;
  if (ex->tgt_size == in_size)
    memcpy(t, x, len * sizeof *t);
  else
    fill_uniform_d(t, len, 43, 0, 1);
}

/* ---- build -------------------------------------------------------------- */

ParameterizedTest(int *index, examples, build, .timeout = 300) {
  Example ex;
  load_example(&ex, *index);
  char dir[512], log[1 << 14];
  scratch_dir(dir, sizeof dir, ex.name);
  const char *modes[] = {"", "--infer"};
  const char *ccs[] = {"gcc", "clang"};
  for (int m = 0; m < 2; m++) {
    int st = run_capture(log, sizeof log, "%s %s -o %s/%s%d.c --verify %s", NNCC_BIN, ex.path,
                         dir, ex.name, m, modes[m]);
    cr_assert(st == 0, "%s: nncc --verify %s failed:\n%s", ex.file, modes[m], log);
    for (int c = 0; c < 2; c++)
      for (int omp = 0; omp < 2; omp++) {
        st = run_capture(log, sizeof log, "%s " STRICT " %s -fsyntax-only %s/%s%d.c", ccs[c],
                         omp ? "-fopenmp" : "", dir, ex.name, m);
        cr_expect(st == 0, "%s%s: %s %s failed:\n%s", ex.file, modes[m], ccs[c],
                  omp ? "-fopenmp" : "", log);
      }
  }
  free_example(&ex);
}

/* The ImageNet-size models of examples/imagenet/ (ResNet-50: 24 GFLOP per
 * training sample) are too big to gradient-check and train here; they get
 * the build test alone, and tests/torch/check.py --models resnet50 checks
 * them against PyTorch. */
Test(examples, imagenet_build, .timeout = 600) {
  DIR *d = opendir(EXAMPLES "/imagenet");
  cr_assert(d, "cannot open %s/imagenet", EXAMPLES);
  int count = 0;
  char dir[512], log[1 << 14];
  scratch_dir(dir, sizeof dir, "imagenet");
  for (struct dirent *e; (e = readdir(d));) {
    size_t len = strlen(e->d_name);
    if (len < 4 || strcmp(e->d_name + len - 3, ".nn") != 0)
      continue;
    count++;
    const char *modes[] = {"", "--infer --batch 1"};
    for (int m = 0; m < 2; m++) {
      int st = run_capture(log, sizeof log, "%s %s/imagenet/%s -o %s/m%d.c --verify %s", NNCC_BIN,
                           EXAMPLES, e->d_name, dir, m, modes[m]);
      cr_assert(st == 0, "%s: nncc --verify %s failed:\n%s", e->d_name, modes[m], log);
      const char *ccs[] = {"gcc", "clang"};
      for (int c = 0; c < 2; c++) {
        st = run_capture(log, sizeof log, "%s " STRICT " -fopenmp -fsyntax-only %s/m%d.c", ccs[c],
                         dir, m);
        cr_expect(st == 0, "%s %s: %s failed:\n%s", e->d_name, modes[m], ccs[c], log);
      }
    }
  }
  closedir(d);
  cr_expect(count >= 1, "no model in examples/imagenet/");
}

/* The MLPerf Tiny models of examples/tiny/ against the parameter counts of
 * their Keras definitions (mlcommons/tiny, benchmark/training/), counted
 * here with Keras's rules: Dense in*out + out, Conv2D kh*kw*cin*cout + cout,
 * DepthwiseConv2D kh*kw*c + c (every layer with its bias), BatchNormalization
 * 4c of which 2c (moving mean and variance) are not trainable.  nncc's
 * params block holds Keras's trainable weights, its buffers block the
 * moving statistics (f32 each).  Each model also builds (--verify, gcc and
 * clang -Werror) for training and for batch-1 inference; scripts/mcu-check
 * runs them. */
#define K_DENSE(i, o) ((i) * (o) + (o))
#define K_CONV(k, ci, co) ((k) * (ci) * (co) + (co))
#define K_DW(c) (9 * (c) + (c))
#define K_BN(c) (4 * (c))
#define K_SEP(ci, co) (K_DW(ci) + K_BN(ci) + K_CONV(1, ci, co) + K_BN(co))

static const struct {
  const char *file;
  long keras_params, keras_non_trainable;
} tiny_models[] = {
    {"anomaly_ae.nn",
     K_DENSE(640, 128) + K_BN(128) + 3 * (K_DENSE(128, 128) + K_BN(128)) + K_DENSE(128, 8) +
         K_BN(8) + K_DENSE(8, 128) + K_BN(128) + 3 * (K_DENSE(128, 128) + K_BN(128)) +
         K_DENSE(128, 640),
     2 * (8 * 128 + 8)},
    {"ds_cnn.nn", K_CONV(10 * 4, 1, 64) + K_BN(64) + 4 * K_SEP(64, 64) + K_DENSE(64, 12),
     2 * 9 * 64},
    {"mobilenet_v1.nn",
     K_CONV(9, 3, 8) + K_BN(8) + K_SEP(8, 16) + K_SEP(16, 32) + K_SEP(32, 32) + K_SEP(32, 64) +
         K_SEP(64, 64) + K_SEP(64, 128) + 5 * K_SEP(128, 128) + K_SEP(128, 256) +
         K_SEP(256, 256) + K_DENSE(256, 2),
     2 * (8 + 8 + 16 + 16 + 32 + 32 + 32 + 32 + 64 + 64 + 64 + 64 + 128 + 5 * 256 + 128 + 256 +
          256 + 256)},
    {"resnet8.nn",
     K_CONV(9, 3, 16) + K_BN(16) + 2 * (K_CONV(9, 16, 16) + K_BN(16)) + K_CONV(9, 16, 32) +
         K_CONV(9, 32, 32) + 2 * K_BN(32) + K_CONV(1, 16, 32) + K_CONV(9, 32, 64) +
         K_CONV(9, 64, 64) + 2 * K_BN(64) + K_CONV(1, 32, 64) + K_DENSE(64, 10),
     2 * (16 * 3 + 32 * 2 + 64 * 2)},
};

/* The byte count of `label` in the report's section starting at `from`. */
static long report_bytes(const char *from, const char *label) {
  const char *at = strstr(from, label);
  cr_assert(at, "no '%s' in the report", label);
  return strtol(at + strlen(label), NULL, 10);
}

Test(examples, tiny_keras_parameter_counts, .timeout = 300) {
  char dir[512], log[1 << 15];
  scratch_dir(dir, sizeof dir, "tiny");
  for (size_t i = 0; i < sizeof tiny_models / sizeof tiny_models[0]; i++) {
    const char *file = tiny_models[i].file;
    long trainable = tiny_models[i].keras_params - tiny_models[i].keras_non_trainable;
    const char *modes[] = {"--batch 1", "--infer --batch 1"};
    for (int m = 0; m < 2; m++) {
      int st = run_capture(log, sizeof log, "%s %s/tiny/%s -o %s/m%d.c --verify --report %s",
                           NNCC_BIN, EXAMPLES, file, dir, m, modes[m]);
      cr_assert(st == 0, "%s: nncc %s failed:\n%s", file, modes[m], log);
      const char *inference = strstr(log, "inference graph:");
      cr_assert(inference, "%s: no inference section in the report:\n%s", file, log);
      cr_expect_eq(report_bytes(inference, "params"), 4 * trainable,
                   "%s: params %ld bytes, Keras has %ld trainable parameters", file,
                   report_bytes(inference, "params"), trainable);
      cr_expect_eq(report_bytes(inference, "buffers"), 4 * tiny_models[i].keras_non_trainable,
                   "%s: buffers %ld bytes, Keras has %ld non-trainable parameters", file,
                   report_bytes(inference, "buffers"), tiny_models[i].keras_non_trainable);
      const char *ccs[] = {"gcc", "clang"};
      for (int c = 0; c < 2; c++) {
        st = run_capture(log, sizeof log, "%s " STRICT " -fsyntax-only %s/m%d.c", ccs[c], dir, m);
        cr_expect(st == 0, "%s %s: %s failed:\n%s", file, modes[m], ccs[c], log);
      }
    }
  }
}

/* ---- gradient check ----------------------------------------------------- */

/* The model's text, with a large input shrunk to (C, H/4, W/4) (and a target
 * that repeats the input shape likewise). */
static char *grad_model(const Example *ex, size_t *in_size, size_t *tgt_size) {
  *in_size = ex->in_size;
  *tgt_size = ex->tgt_size;
  size_t len = strlen(ex->src);
  char *out = malloc(len + 64);
  if (ex->in_size <= GRAD_MAX_INPUT) {
    memcpy(out, ex->src, len + 1);
    return out;
  }
  cr_assert(ex->in_rank == 3 && ex->in_dim[1] % 4 == 0 && ex->in_dim[2] % 4 == 0,
            "%s: input of %zu elements per sample: the gradient check can shrink only (C, H, W) "
            "with H, W multiples of 4",
            ex->file, ex->in_size);
  cr_assert(ex->tgt_size != ex->in_size, "%s: cannot shrink an input-sized target", ex->file);
  long c = ex->in_dim[0], h = ex->in_dim[1] / 4, w = ex->in_dim[2] / 4;
  const char *open = strchr(ex->in_line, '['), *close = strchr(open, ']');
  int k = snprintf(out, len + 64, "%.*s[%ld, %ld, %ld", (int)(open - ex->src), ex->src, c, h, w);
  snprintf(out + k, len + 64 - (size_t)k, "%s", close);
  *in_size = (size_t)(c * h * w);
  return out;
}

ParameterizedTestParameters(examples, grad) {
  return cr_make_param_array(int, example_index, example_count());
}

ParameterizedTest(int *index, examples, grad, .timeout = 300) {
  Example ex;
  load_example(&ex, *index);
  size_t in_size, tgt_size;
  char *model = grad_model(&ex, &in_size, &tgt_size);
  Compiled cm;
  compile_model(&cm, ex.name, model, "--dtype f64 --input-grad --batch 4", "-O2");
  const int n = 2;
  double *x = malloc((size_t)n * in_size * sizeof *x);
  double *t = malloc((size_t)n * (tgt_size + 1) * sizeof *t);
  int32_t labels[n];
  fill_uniform_d(x, (size_t)n * in_size, 42, 0, 1);
  make_targets(&ex, n, x, in_size, labels, t);
  /* every fifth: each column of an 8-pixel row in turn.  Every one was 80%
   * of resnet20's check (73 s; 31 s so); the ops' tests check every one. */
  grad_check_input_stride = 5;
  GradReport r = grad_check(&cm, n, x, (size_t)n * in_size, ex.classes ? (void *)labels : t, 6);
  cr_expect(r.tensors > 0, "%s: no parameter gradients", ex.file);
  cr_expect(r.worst < GRAD_TOL, "%s: worst relative error %.3g at %s (%d checked)", ex.file, r.worst,
            r.where, r.checked);
  cr_log_info("%s: %d tensors, %d elements checked, worst %.2g", ex.file, r.tensors, r.checked,
              r.worst);
  free(x);
  free(t);
  free(model);
  close_model(&cm);
  free_example(&ex);
}

/* ---- f32 builds: training and inference --------------------------------- */

typedef void *(*CreateFn)(uint64_t);
typedef void (*DestroyFn)(void *);
typedef int (*StepFn)(void *, int, const float *, const void *, float *);
typedef int (*ForwardFn)(void *, int, const float *, float *);

/* TRAIN_BATCH samples in [0, 1] and their targets, as float. */
typedef struct Batch {
  float *x, *t;
  int32_t labels[TRAIN_BATCH];
  const void *y;       /* labels or t */
} Batch;

static void make_batch(Batch *b, const Example *ex) {
  size_t xl = TRAIN_BATCH * ex->in_size, tl = TRAIN_BATCH * (ex->tgt_size + 1);
  double *xd = malloc(xl * sizeof *xd), *td = malloc(tl * sizeof *td);
  fill_uniform_d(xd, xl, 42, 0, 1);
  make_targets(ex, TRAIN_BATCH, xd, ex->in_size, b->labels, td);
  b->x = malloc(xl * sizeof *b->x);
  b->t = malloc(tl * sizeof *b->t);
  for (size_t i = 0; i < xl; i++)
    b->x[i] = (float)xd[i];
  for (size_t i = 0; i < tl; i++)
    b->t[i] = (float)td[i];
  b->y = ex->classes ? (const void *)b->labels : b->t;
  free(xd);
  free(td);
}

static void free_batch(Batch *b) {
  free(b->x);
  free(b->t);
}

static const char *last_error(const Compiled *cm, void *m) {
  return ((const char *(*)(void *))api(cm, "last_error"))(m);
}

/* Both builds' forward on the batch agree to 1e-5 (relative above 1). */
static void same_forward(const Example *ex, const Compiled *tr, void *mt, const Compiled *in,
                         void *mi, const Batch *b, const char *when) {
  size_t len = TRAIN_BATCH * output_size(tr, ex);
  float *yt = malloc(len * sizeof *yt), *yi = malloc(len * sizeof *yi);
  int st = ((ForwardFn)api(tr, "forward"))(mt, TRAIN_BATCH, b->x, yt);
  cr_assert(st == 0, "%s: forward failed with %d: %s", ex->file, st, last_error(tr, mt));
  st = ((ForwardFn)api(in, "forward"))(mi, TRAIN_BATCH, b->x, yi);
  cr_assert(st == 0, "%s: --infer forward failed with %d: %s", ex->file, st, last_error(in, mi));
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < len; i++) {
    double d = fabs((double)yt[i] - yi[i]) / fmax(1, fabs((double)yt[i]));
    if (!(d <= worst))
      worst = d, at = i;
  }
  cr_expect(worst <= 1e-5, "%s %s: --infer forward differs by %.3g at %zu (%g vs %g)", ex->file,
            when, worst, at, yi[at], yt[at]);
  free(yt);
  free(yi);
}

/* The inference build gets the trained weights and running statistics by
 * name through the tensor API.  (Not save/load: an --infer build rejects the
 * training build's file for its optimizer.* entries.) */
static void copy_weights(const Compiled *from, void *mf, const Compiled *to, void *mt) {
  typedef float *(*TensorFn)(void *, int, size_t *);
  int (*count)(void) = (int (*)(void))api(to, "tensor_count");
  int (*from_count)(void) = (int (*)(void))api(from, "tensor_count");
  const char *(*name)(int) = (const char *(*)(int))api(to, "tensor_name");
  const char *(*from_name)(int) = (const char *(*)(int))api(from, "tensor_name");
  TensorFn get = (TensorFn)api(from, "tensor"), put = (TensorFn)api(to, "tensor");
  for (int i = 0; i < count(); i++) {
    int j = 0;
    while (j < from_count() && strcmp(from_name(j), name(i)) != 0)
      j++;
    cr_assert(j < from_count(), "--infer tensor %s is not in the training build", name(i));
    size_t nf, nt;
    float *src = get(mf, j, &nf), *dst = put(mt, i, &nt);
    cr_assert(nf == nt, "%s: %zu elements in training, %zu in --infer", name(i), nf, nt);
    memcpy(dst, src, nt * sizeof *dst);
  }
}

/* Trains the f32 -O2 build on TRAIN_BATCH fixed samples until the loss is
 * half its first value (at most TRAIN_STEPS steps); returns the steps. */
static int train_until_half(const Example *ex, const Compiled *cm, void *m, const Batch *b) {
  StepFn step = (StepFn)api(cm, "train_step");
  float first = NAN, loss = NAN;
  int s = 0;
  for (; s < TRAIN_STEPS; s++) {
    int st = step(m, TRAIN_BATCH, b->x, b->y, &loss);
    cr_assert(st == 0, "%s: train_step %d failed with %d: %s", ex->file, s, st,
              last_error(cm, m));
    if (s == 0)
      first = loss;
    if (loss <= first / 2)
      break;
  }
  cr_expect(isfinite(first) && loss <= first / 2,
            "%s: loss %.4g -> %.4g in %d steps, not halved", ex->file, first, loss, s);
  cr_log_info("%s: loss %.4g -> %.4g in %d steps", ex->file, first, loss, s);
  return s;
}

ParameterizedTestParameters(examples, train) {
  return cr_make_param_array(int, example_index, example_count());
}

/* Trainability, and the --infer build's forward against the training
 * build's (one test: the two share the costly -O2 compile). */
ParameterizedTest(int *index, examples, train, .timeout = 300) {
  Example ex;
  load_example(&ex, *index);
  Compiled tr, in;
  compile_model(&tr, ex.name, ex.src, "--batch 16", "-O2");
  compile_model(&in, ex.name, ex.src, "--batch 16 --infer", "-O2");
  Batch b;
  make_batch(&b, &ex);
  void *mt = ((CreateFn)api(&tr, "create"))(5), *mi = ((CreateFn)api(&in, "create"))(5);
  same_forward(&ex, &tr, mt, &in, mi, &b, "at the initial weights (same seed)");
  train_until_half(&ex, &tr, mt, &b);
  copy_weights(&tr, mt, &in, mi);
  same_forward(&ex, &tr, mt, &in, mi, &b, "after training");
  ((DestroyFn)api(&tr, "destroy"))(mt);
  ((DestroyFn)api(&in, "destroy"))(mi);
  free_batch(&b);
  close_model(&tr);
  close_model(&in);
  free_example(&ex);
}
