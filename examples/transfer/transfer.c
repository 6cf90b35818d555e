/*
 * transfer.c: LeNet-5 pre-trained on MNIST digits 0-4, then fine-tuned on
 * digits 5-9 at batch 1, with TinyEngine's sparse update and with every
 * layer trained, from the same checkpoint (issue #16 item 8).
 *
 *   examples/transfer/run        # builds everything below and runs it
 *
 * Three builds of the same layers (the same tensor names), each its own
 * model name so that one program links all three:
 *   pretrain.nn  every layer trains, --batch 64     lenet5_pretrain_*
 *   sparse.nn    the sparse update, --batch 1       lenet5_sparse_*
 *   full.nn      every layer trains, --batch 1      lenet5_full_*
 *
 * Labels: one 10-way classifier throughout, the usual class-incremental
 * set-up.  Pre-training sees only digits 0-4 (so logits 5-9 only ever learn
 * to be small), fine-tuning only digits 5-9, with no replay of the old
 * digits.  Accuracy is the argmax over all ten classes, on the test digits
 * of 0-4 (what is forgotten), of 5-9 (what is learned) and of all ten.
 *
 * Steps: pre-training runs --pre-epochs passes over the training digits
 * 0-4 in minibatches of 64, each pass in a new order drawn from --seed;
 * the cosine schedule of pretrain.nn spans exactly those steps.  It saves
 * OUT/pretrained.safetensors.  Each fine-tune loads that file into a fresh
 * batch-1 build and takes --steps steps of one digit (default: one pass
 * over the training digits 5-9), the same digits in the same order for both
 * builds, at the same constant learning rate --lr; then it saves
 * OUT/sparse.safetensors or OUT/full.safetensors and prints how many
 * parameters changed, the test accuracies and memory_size().
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lenet5_full.h"
#include "lenet5_pretrain.h"
#include "lenet5_sparse.h"
#define MNIST_PROG "transfer"
#include "../mnist_data.h"

#define CLASSES 10
#define FIRST_NEW 5 /* digits 0-4 are the old classes, 5-9 the new ones */

/* ---- the three builds behind one interface ------------------------------- */

/* The generated API of one build, its model pointer as void *.  The
 * wrappers convert each call's model pointer to the build's own type. */
typedef struct {
  const char *name;
  int max_batch;
  size_t (*memory_size)(void);
  void *(*create)(uint64_t seed);
  void (*destroy)(void *m);
  int (*forward)(void *m, int n, const float *x, float *probs);
  int (*train_step)(void *m, int n, const float *x, const int32_t *y, float *loss);
  int (*set)(void *m, const char *name, double value);
  int (*save)(void *m, const char *path);
  int (*load)(void *m, const char *path);
  const char *(*last_error)(const void *m);
  const char *(*strerror)(int status);
  int (*tensor_count)(void);
  const char *(*tensor_name)(int i);
  float *(*tensor)(void *m, int i, size_t *numel);
} Build;

#define WRAP(M)                                                                                 \
  static void *M##_create_v(uint64_t seed) { return M##_create(seed); }                         \
  static void M##_destroy_v(void *m) { M##_destroy(m); }                                        \
  static int M##_forward_v(void *m, int n, const float *x, float *p) {                          \
    return M##_forward(m, n, x, p);                                                             \
  }                                                                                             \
  static int M##_train_step_v(void *m, int n, const float *x, const int32_t *y, float *loss) {  \
    return M##_train_step(m, n, x, y, loss);                                                    \
  }                                                                                             \
  static int M##_set_v(void *m, const char *k, double v) { return M##_set(m, k, v); }           \
  static int M##_save_v(void *m, const char *path) { return M##_save(m, path); }                \
  static int M##_load_v(void *m, const char *path) { return M##_load(m, path); }                \
  static const char *M##_last_error_v(const void *m) { return M##_last_error(m); }              \
  static float *M##_tensor_v(void *m, int i, size_t *n) { return M##_tensor(m, i, n); }
#define BUILD(M, UC, label)                                                                     \
  {label, UC##_MAX_BATCH, M##_memory_size, M##_create_v, M##_destroy_v, M##_forward_v,         \
   M##_train_step_v, M##_set_v, M##_save_v, M##_load_v, M##_last_error_v, M##_strerror,         \
   M##_tensor_count, M##_tensor_name, M##_tensor_v}

WRAP(lenet5_pretrain)
WRAP(lenet5_sparse)
WRAP(lenet5_full)
static const Build pretrain = BUILD(lenet5_pretrain, LENET5_PRETRAIN, "pre-trained");
static const Build finetunes[2] = {BUILD(lenet5_sparse, LENET5_SPARSE, "sparse"),
                                   BUILD(lenet5_full, LENET5_FULL, "full")};

static int fail(const Build *b, void *m, int status, const char *what) {
  fprintf(stderr, "transfer: %s build: %s: %s (%s)\n", b->name, what, b->strerror(status),
          m ? b->last_error(m) : "");
  return 0;
}

/* ---- data: the digits of each task ------------------------------------------ */

/* The indices into a Set of its digits below FIRST_NEW (old) or not (new). */
typedef struct {
  int n;
  int *idx;
} Task;

static int split(const Set *s, Task *old, Task *new) {
  old->idx = malloc(sizeof *old->idx * (size_t)s->n);
  new->idx = malloc(sizeof *new->idx * (size_t)s->n);
  old->n = new->n = 0;
  if (!old->idx || !new->idx)
    return 0;
  for (int i = 0; i < s->n; i++) {
    Task *t = s->y[i] < FIRST_NEW ? old : new;
    t->idx[t->n++] = i;
  }
  return old->n > 0 && new->n > 0;
}

static double now(void) {
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- training and evaluation ---------------------------------------------- */

/* Fraction of the digits of t whose most likely class (of all ten) is
 * their label, or -1 after printing the error. */
static double accuracy(const Build *b, void *m, const Set *s, const Task *t) {
  static float x[64 * PIXELS], probs[64 * CLASSES];
  int right = 0, batch = b->max_batch < 64 ? b->max_batch : 64;
  for (int first = 0; first < t->n; first += batch) {
    int k = t->n - first < batch ? t->n - first : batch;
    for (int i = 0; i < k; i++)
      memcpy(x + (size_t)i * PIXELS, s->x + (size_t)t->idx[first + i] * PIXELS,
             sizeof *x * PIXELS);
    int st = b->forward(m, k, x, probs);
    if (st != 0)
      return fail(b, m, st, "forward") - 1;
    for (int i = 0; i < k; i++) {
      int best = 0;
      for (int c = 1; c < CLASSES; c++)
        best = probs[i * CLASSES + c] > probs[i * CLASSES + best] ? c : best;
      right += best == s->y[t->idx[first + i]];
    }
  }
  return (double)right / t->n;
}

/* steps training steps of `batch` digits of t: passes over t, each in a new
 * order drawn from (seed, pass), the last minibatch of a pass shorter.
 * Returns the mean loss of the last pass, or -1 after printing the error. */
static double train(const Build *b, void *m, const Set *s, const Task *t, int batch, long steps,
                    uint64_t seed) {
  static float x[64 * PIXELS];
  static int32_t y[64];
  int *order = malloc(sizeof *order * (size_t)t->n);
  if (!order)
    return fail(b, m, 0, "out of memory") - 1;
  double sum = 0;
  int seen = 0;
  for (long step = 0, pass = 0, next = t->n; step < steps; step++) {
    if (next >= t->n) { /* a new pass */
      uint64_t rng = seed * 1000003u + (uint64_t)pass++;
      memcpy(order, t->idx, sizeof *order * (size_t)t->n);
      shuffle(order, t->n, &rng);
      next = 0, sum = 0, seen = 0;
    }
    int k = t->n - next < batch ? (int)(t->n - next) : batch;
    for (int i = 0; i < k; i++) {
      memcpy(x + (size_t)i * PIXELS, s->x + (size_t)order[next + i] * PIXELS,
             sizeof *x * PIXELS);
      y[i] = s->y[order[next + i]];
    }
    float loss;
    int st = b->train_step(m, k, x, y, &loss);
    if (st != 0) {
      free(order);
      return fail(b, m, st, "train_step") - 1;
    }
    next += k, sum += (double)loss * k, seen += k;
  }
  free(order);
  return seen ? sum / seen : 0;
}

/* ---- the experiment ------------------------------------------------------- */

typedef struct {
  const char *data, *out;
  uint64_t seed;
  int pre_epochs;
  long steps;           /* fine-tuning steps; 0: one pass over the new digits */
  double pre_lr, lr;    /* 0: the model file's */
} Options;

typedef struct {
  const Set *train, *test;
  Task train_old, train_new, test_old, test_new, test_all;
} Data;

/* Accuracy on the old, the new and all test digits: one row of the table. */
static int report(const Build *b, void *m, const Data *d, const char *label, size_t memory,
                  long changed) {
  double a[3] = {accuracy(b, m, d->test, &d->test_old), accuracy(b, m, d->test, &d->test_new),
                 accuracy(b, m, d->test, &d->test_all)};
  if (a[0] < 0 || a[1] < 0 || a[2] < 0)
    return 0;
  printf("%-26s %6.2f%% %6.2f%% %6.2f%%", label, 100 * a[0], 100 * a[1], 100 * a[2]);
  if (memory)
    printf("  %9zu B %8ld", memory, changed);
  printf("\n");
  return 1;
}

static void path_in(char *buf, size_t cap, const Options *o, const char *file) {
  snprintf(buf, cap, "%s/%s.safetensors", o->out, file);
}

/* Pre-trains on the old digits and saves the checkpoint. */
static int pre_train(const Options *o, const Data *d, void *m) {
  const Build *b = &pretrain;
  int per_epoch = (d->train_old.n + b->max_batch - 1) / b->max_batch, st;
  long steps = (long)o->pre_epochs * per_epoch;
  char path[1100];
  path_in(path, sizeof path, o, "pretrained");
  if (o->pre_lr > 0 && (st = b->set(m, "lr", o->pre_lr)) != 0)
    return fail(b, m, st, "--pre-lr");
  if ((st = b->set(m, "sched_steps", (double)steps)) != 0)
    return fail(b, m, st, "sched_steps");
  double t0 = now(), loss = train(b, m, d->train, &d->train_old, b->max_batch, steps, o->seed);
  if (loss < 0)
    return 0;
  if ((st = b->save(m, path)) != 0)
    return fail(b, m, st, path);
  printf("pre-training on digits 0-%d: %d epochs of %d digits at batch %d (%ld steps, seed %llu), "
         "%.1f s; last epoch's loss %.4f; saved %s\n",
         FIRST_NEW - 1, o->pre_epochs, d->train_old.n, b->max_batch, steps,
         (unsigned long long)o->seed, now() - t0, loss, path);
  return 1;
}

/* A copy of every tensor of m (parameters and buffers), back to back. */
static float *snapshot(const Build *b, void *m) {
  size_t total = 0, n;
  for (int i = 0; i < b->tensor_count(); i++)
    total += (b->tensor(m, i, &n), n);
  float *all = malloc(sizeof *all * (total ? total : 1)), *p = all;
  for (int i = 0; all && i < b->tensor_count(); i++) {
    const float *t = b->tensor(m, i, &n);
    memcpy(p, t, sizeof *p * n);
    p += n;
  }
  return all;
}

/* Parameters of m that differ from the snapshot (not counting the batchnorm
 * running statistics, which every training forward moves). */
static long changed(const Build *b, void *m, const float *before) {
  long count = 0;
  size_t n;
  for (int i = 0; i < b->tensor_count(); i++) {
    const float *t = b->tensor(m, i, &n);
    for (size_t j = 0; j < n && !strstr(b->tensor_name(i), ".running_"); j++)
      count += memcmp(&t[j], &before[j], sizeof *t) != 0;
    before += n;
  }
  return count;
}

/* One fine-tune from the checkpoint: load, train at batch 1, save, report. */
static int fine_tune(const Options *o, const Data *d, const Build *b) {
  char in[1100], out[1100], label[64];
  path_in(in, sizeof in, o, "pretrained");
  path_in(out, sizeof out, o, b->name);
  void *m = b->create(o->seed);
  if (!m)
    return fail(b, NULL, 0, "out of memory");
  int st = b->load(m, in), ok = 0;
  float *before = st == 0 ? snapshot(b, m) : NULL;
  long steps = o->steps ? o->steps : d->train_new.n;
  double t0 = now();
  if (st != 0)
    fail(b, m, st, in);
  else if (!before)
    fail(b, m, 0, "out of memory");
  else if (o->lr > 0 && (st = b->set(m, "lr", o->lr)) != 0)
    fail(b, m, st, "--lr");
  else if (train(b, m, d->train, &d->train_new, 1, steps, o->seed + 1) >= 0) {
    double secs = now() - t0;
    snprintf(label, sizeof label, "%s fine-tune (%.1f s)", b->name, secs);
    ok = (st = b->save(m, out)) == 0 ? report(b, m, d, label, b->memory_size(), changed(b, m, before))
                                      : fail(b, m, st, out);
  }
  free(before);
  b->destroy(m);
  return ok;
}

static int run(const Options *o, const Data *d) {
  void *m = pretrain.create(o->seed);
  if (!m)
    return fail(&pretrain, NULL, 0, "out of memory");
  int ok = pre_train(o, d, m);
  if (ok) {
    printf("fine-tuning on digits %d-9 at batch 1: %ld steps of one digit, the same order for "
           "both builds%s\n\n",
           FIRST_NEW, o->steps ? o->steps : (long)d->train_new.n,
           o->steps ? "" : " (one pass)");
    printf("test accuracy, 10-way         0-%d     %d-9     0-9  memory_size  parameters\n"
           "(%d, %d, %d test digits)%*s at batch 1     changed\n",
           FIRST_NEW - 1, FIRST_NEW, d->test_old.n, d->test_new.n, d->test_all.n, 25, "");
    ok = report(&pretrain, m, d, "pre-trained on 0-4", 0, 0);
  }
  pretrain.destroy(m);
  for (int i = 0; ok && i < 2; i++)
    ok = fine_tune(o, d, &finetunes[i]);
  return ok;
}

/* ---- command line ---------------------------------------------------------- */

static const char usage[] =
    "usage: transfer [options]\n"
    "  --data DIR        IDX files from scripts/get-mnist (default data)\n"
    "  --out DIR         where the three checkpoints go (default .)\n"
    "  --seed N          initial weights and every order (default 1)\n"
    "  --pre-epochs N    pre-training passes over digits 0-4 at batch 64 (default 5)\n"
    "  --pre-lr X        pre-training learning rate (default: pretrain.nn's)\n"
    "  --steps N         fine-tuning steps at batch 1 (default: one pass over digits 5-9)\n"
    "  --lr X            fine-tuning learning rate of both builds (default: their .nn's)\n";

static int parse_args(int argc, char **argv, Options *o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    char *end;
    long n = strtol(v, &end, 10);
    int whole = end != v && !*end && n >= 0 && n <= 100000000, ok = 1;
    if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--seed")) ok = whole, o->seed = (uint64_t)n;
    else if (!strcmp(a, "--pre-epochs")) ok = whole && n > 0, o->pre_epochs = (int)n;
    else if (!strcmp(a, "--steps")) ok = whole && n > 0, o->steps = n;
    else if (!strcmp(a, "--pre-lr")) ok = (o->pre_lr = strtod(v, &end)) > 0 && !*end;
    else if (!strcmp(a, "--lr")) ok = (o->lr = strtod(v, &end)) > 0 && !*end;
    else ok = 0;
    if (!ok) {
      fprintf(stderr, "transfer: bad option or value: %s %s\n", a, v);
      return 0;
    }
  }
  if (argc % 2 == 0)
    fprintf(stderr, "transfer: '%s' needs a value\n", argv[argc - 1]);
  return argc % 2 == 1;
}

int main(int argc, char **argv) {
  Options o = {"data", ".", 1, 5, 0, 0, 0};
  if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
    printf("%s", usage);
    return 0;
  }
  if (!parse_args(argc, argv, &o)) {
    fprintf(stderr, "%s", usage);
    return 2;
  }
  Set train = {0, NULL, NULL}, test = {0, NULL, NULL};
  Data d = {&train, &test, {0, NULL}, {0, NULL}, {0, NULL}, {0, NULL}, {0, NULL}};
  int ok = load_set(o.data, "train", &train) && load_set(o.data, "test", &test);
  if (ok && !(ok = split(&train, &d.train_old, &d.train_new) &&
                   split(&test, &d.test_old, &d.test_new)))
    fprintf(stderr, "transfer: the training and the test digits must each hold digits of 0-%d "
                    "and of %d-9 (or out of memory)\n", FIRST_NEW - 1, FIRST_NEW);
  if (ok && !(d.test_all.idx = malloc(sizeof *d.test_all.idx * (size_t)test.n)))
    ok = fail(&pretrain, NULL, 0, "out of memory");
  for (int i = 0; ok && i < test.n; i++)
    d.test_all.idx[d.test_all.n++] = i;
  if (ok)
    printf("%d training digits (%d of 0-%d, %d of %d-9), %d test digits\n", train.n,
           d.train_old.n, FIRST_NEW - 1, d.train_new.n, FIRST_NEW, test.n);
  ok = ok && run(&o, &d);
  Task *tasks[] = {&d.train_old, &d.train_new, &d.test_old, &d.test_new, &d.test_all};
  for (int i = 0; i < 5; i++)
    free(tasks[i]->idx);
  free_set(&train);
  free_set(&test);
  return ok ? 0 : 1;
}
