/*
 * train_mnist.c: trains the LeNet-5 of examples/lenet5.nn on the MNIST digits
 * that scripts/get-mnist writes to data/, using only the generated lenet5.h
 * (or another model's, see MODEL below).
 *
 *   scripts/get-mnist
 *   nncc examples/lenet5.nn -o lenet5.c
 *   cc -O3 -march=native -fopenmp -std=c11 -I. examples/train_mnist.c lenet5.c -o train_mnist -lm
 *   ./train_mnist --epochs 30 --shift 2
 *
 * Data: 8,000 training digits (the last 1,000 are held out for validation)
 * and 2,000 test digits, pixels scaled to [0, 1].  Each epoch visits the
 * 7,000 training digits in a new order drawn from (seed, epoch), in
 * minibatches; with --shift N every digit is moved by up to N pixels in x
 * and y (zero fill).  After each epoch the program prints the mean training
 * loss, the accuracy on the validation digits and on the first 2,000
 * (unshifted) training digits,
 * images/s and the learning rate; the model with the best validation
 * accuracy is saved (lenet5_save writes a temporary file and renames it), and
 * training stops when that has not improved for --patience epochs (default
 * 12: under the 30-epoch cosine schedule the validation accuracy of 1,000
 * digits can sit on a plateau for 10 epochs while the rate is still high;
 * with 8, seed 2 stopped at epoch 16 with 97.85% on the test digits instead
 * of reaching 98.75%).  At the
 * end the best model is loaded back and scored on the 2,000 test digits, and
 * the learning curves are written as CSV and as an SVG plot.
 *
 * The learning-rate schedule of the model file (cosine) is stretched over
 * exactly --epochs epochs by setting sched_steps; --resume FILE continues
 * from a checkpoint (weights, optimizer state and step count).
 *
 * --mpi: data-parallel over MPI ranks (docs/distributed.md), with a model
 * from nncc --distributed=mpi, built with mpicc:
 *   nncc examples/lenet5.nn -o lenet5.c --distributed=mpi --sync-batchnorm
 *   mpicc -O3 -fopenmp -std=c11 -I. examples/train_mnist.c lenet5.c -o train_mnist -lm
 *   mpirun -np 2 ./train_mnist --mpi --epochs 30 --shift 2
 * Every rank draws the same order and shifts; of each minibatch of --batch
 * digits, rank r of p trains on its shard, digits [k r / p, k (r + 1) / p),
 * and the step averages the gradients, so the ranks together take one
 * process's steps (exactly, up to rounding, with --sync-batchnorm).  Rank 0
 * prints and writes the files; save and load are collective.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The model: examples/lenet5.nn, or any model with the same API shape (input
 * x: f32[1, 28, 28], target y: class[10], output probs of 10) named at build
 * time, as examples/from_pytorch/run does:
 *   cc -DMODEL=mnist_ft -DMODEL_UC=MNIST_FT ... train_mnist.c mnist_ft.c */
#ifndef MODEL
#define MODEL lenet5
#define MODEL_UC LENET5
#endif
#define STR_(x) #x
#define STR(x) STR_(x)
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define API(fn) CAT(MODEL, fn)          /* API(forward): lenet5_forward */
#define MACRO(name) CAT(MODEL_UC, name) /* MACRO(MAX_BATCH): MACRO(MAX_BATCH) */
#include STR(MODEL.h)
#ifdef MPI_VERSION /* the model's header includes mpi.h: nncc --distributed=mpi */
#define HAVE_MPI 1
#else
#define HAVE_MPI 0
#endif
static int rank = 0, ranks = 1; /* this process among the --mpi ranks */

#define MNIST_PROG "train_mnist"
#include "mnist_data.h"
#define N_VALID 1000
#define N_TRAIN_ACC 2000 /* training accuracy is measured on this many training digits */
#define BATCH_MAX MACRO(MAX_BATCH)

typedef struct {
  int epochs, batch, shift, patience;
  double lr; /* 0: keep the model file's */
  uint64_t seed;
  const char *data, *out, *resume, *csv, *svg;
} Options;

typedef struct {
  int epoch;
  double loss, train_acc, valid_acc, lr, seconds, images_per_s;
} Row;

/* dst = src moved by (dx, dy) pixels, zeros where nothing moved in. */
static void shifted(float *dst, const float *src, int dx, int dy) {
  for (int r = 0; r < SIDE; r++)
    for (int c = 0; c < SIDE; c++) {
      int sr = r - dy, sc = c - dx;
      int in = sr >= 0 && sr < SIDE && sc >= 0 && sc < SIDE;
      dst[r * SIDE + c] = in ? src[sr * SIDE + sc] : 0.0f;
    }
}

/* ---- training and evaluation -------------------------------------------- */

static double now(void) {
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Fraction of samples first..first+n-1 of s whose most likely class is right. */
static double accuracy(MODEL *m, const Set *s, int first, int n) {
  static float probs[BATCH_MAX * MACRO(PROBS_SIZE)];
  int right = 0;
  for (int b = 0; b < n; b += BATCH_MAX) {
    int k = n - b < BATCH_MAX ? n - b : BATCH_MAX;
    if (API(forward)(m, k, s->x + (size_t)(first + b) * PIXELS, probs) != 0)
      return -1;
    for (int i = 0; i < k; i++) {
      int best = 0;
      for (int c = 1; c < MACRO(PROBS_SIZE); c++)
        if (probs[i * MACRO(PROBS_SIZE) + c] > probs[i * MACRO(PROBS_SIZE) + best])
          best = c;
      right += best == s->y[first + b + i];
    }
  }
  return (double)right / n;
}

static void progress_bar(int done, int total, double loss, double ips) {
  int width = 30, fill = done * width / total;
  fprintf(stderr, "\r  [%.*s%*s] %5d/%d  loss %.4f  %6.0f img/s", fill,
          "##############################", width - fill, "", done, total, loss, ips);
  fflush(stderr);
}

/* One pass over samples 0..n_train-1 of s in a fresh order; returns the
 * mean loss, or a negative value after printing the error. */
static double train_epoch(MODEL *m, const Set *s, int n_train, const Options *o, int epoch,
                          int tty) {
  static float xb[BATCH_MAX * PIXELS];
  static int32_t yb[BATCH_MAX];
  int *idx = malloc(sizeof *idx * (size_t)n_train);
  if (!idx) {
    fprintf(stderr, "train_mnist: out of memory\n");
    return -1;
  }
  uint64_t rng = o->seed * 1000003u + (uint64_t)epoch;
  for (int i = 0; i < n_train; i++)
    idx[i] = i;
  shuffle(idx, n_train, &rng);
  double sum = 0, t0 = now();
  int done = 0;
  for (int b = 0; b < n_train; b += o->batch) {
    int k = n_train - b < o->batch ? n_train - b : o->batch;
    if (k < ranks) /* a last minibatch too small to share: every rank skips it */
      break;
    int lo = (int)((long)k * rank / ranks), hi = (int)((long)k * (rank + 1) / ranks);
    for (int i = 0; i < k; i++) { /* every rank draws every shift: the same stream */
      const float *src = s->x + (size_t)idx[b + i] * PIXELS;
      int dx = o->shift ? below(&rng, 2 * o->shift + 1) - o->shift : 0;
      int dy = o->shift ? below(&rng, 2 * o->shift + 1) - o->shift : 0;
      if (i < lo || i >= hi)
        continue;
      shifted(xb + (size_t)(i - lo) * PIXELS, src, dx, dy);
      yb[i - lo] = s->y[idx[b + i]];
    }
    float loss; /* the mean over the whole minibatch, all ranks' shards */
    int st = API(train_step)(m, hi - lo, xb, yb, &loss);
    if (st != 0) {
      fprintf(stderr, "\ntrain_mnist: train_step: %s (%s)\n", API(strerror)(st),
              API(last_error)(m));
      free(idx);
      return -1;
    }
    sum += (double)loss * k;
    done += k;
    if (tty && ((b / o->batch) % 8 == 0 || done == n_train))
      progress_bar(done, n_train, sum / done, done / (now() - t0));
  }
  if (tty)
    fprintf(stderr, "\r%*s\r", 80, "");
  free(idx);
  return sum / done;
}

/* ---- files written whole or not at all ------------------------------------
 * As lenet5_save does: a new temporary file beside path (O_EXCL | O_NOFOLLOW,
 * so two runs never share one and a planted link is not followed), synced,
 * then renamed over path; the directory is synced after. */

typedef struct {
  FILE *f;
  char tmp[1100];
} OutFile;

static FILE *out_open(OutFile *o, const char *path) {
  static unsigned counter;
  o->f = NULL;
  if (strlen(path) > 1000 || !*path)
    return NULL;
  for (int attempt = 0; attempt < 100 && !o->f; attempt++) {
    const char *slash = strrchr(path, '/');
    int dir = slash ? (int)(slash - path) + 1 : 0;
    snprintf(o->tmp, sizeof o->tmp, "%.*s.%s.%ld.%u.tmp", dir, path, path + dir, (long)getpid(),
             counter++);
    int fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST)
      return NULL;
    if (fd >= 0 && !(o->f = fdopen(fd, "w"))) {
      close(fd);
      unlink(o->tmp);
    }
  }
  return o->f;
}

/* Finishes what out_open began: path replaced if everything was written. */
static int out_commit(OutFile *o, const char *path, int ok) {
  ok = fflush(o->f) == 0 && fsync(fileno(o->f)) == 0 && ok;
  ok = fclose(o->f) == 0 && ok && rename(o->tmp, path) == 0;
  if (!ok) {
    unlink(o->tmp);
    return 0;
  }
  char dir[1100];
  const char *slash = strrchr(path, '/');
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) + (slash == path) : 1,
           slash ? path : ".");
  int fd = open(dir, O_RDONLY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  return 1;
}

/* ---- learning curves ----------------------------------------------------- */

static int write_csv(const char *path, const Row *rows, int n) {
  OutFile o;
  FILE *f = out_open(&o, path);
  if (!f)
    return 0;
  fprintf(f, "epoch,loss,train_acc,valid_acc,lr,seconds,images_per_s\n");
  for (int i = 0; i < n; i++)
    fprintf(f, "%d,%.6f,%.4f,%.4f,%.6g,%.2f,%.0f\n", rows[i].epoch, rows[i].loss,
            rows[i].train_acc, rows[i].valid_acc, rows[i].lr, rows[i].seconds,
            rows[i].images_per_s);
  return out_commit(&o, path, !ferror(f));
}

/* One panel of the plot: a frame at (x0, y0) of size w x h, y ticks from lo
 * to hi, epochs along x, and up to two series (field offsets into Row). */
typedef struct {
  const char *title, *label[2], *color[2];
  size_t field[2];
  int nseries;
  double lo, hi, scale; /* scale: 100 shows fractions as percent */
} Panel;

static double field(const Row *r, size_t off) { return *(const double *)((const char *)r + off); }

static void svg_panel(FILE *f, const Panel *p, const Row *rows, int n, int x0, int y0, int w,
                      int h) {
  int e0 = rows[0].epoch, e1 = rows[n - 1].epoch > e0 ? rows[n - 1].epoch : e0 + 1;
  fprintf(f, "<text x='%d' y='%d' text-anchor='middle' font-weight='bold'>%s</text>\n",
          x0 + w / 2, y0 - 10, p->title);
  fprintf(f, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='black'/>\n", x0,
          y0, w, h);
  for (int t = 0; t <= 4; t++) {
    double v = p->lo + (p->hi - p->lo) * t / 4;
    int y = y0 + h - h * t / 4;
    fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#ddd'/>\n", x0, y, x0 + w, y);
    fprintf(f, "<text x='%d' y='%d' text-anchor='end'>%.*f</text>\n", x0 - 5, y + 4,
            p->scale > 1 ? 1 : 3, v * p->scale);
  }
  int step = (e1 - e0 + 9) / 10 > 0 ? (e1 - e0 + 9) / 10 : 1;
  for (int e = e0; e <= e1; e += step)
    fprintf(f, "<text x='%d' y='%d' text-anchor='middle'>%d</text>\n",
            x0 + w * (e - e0) / (e1 - e0), y0 + h + 16, e);
  fprintf(f, "<text x='%d' y='%d' text-anchor='middle'>epoch</text>\n", x0 + w / 2, y0 + h + 34);
  for (int s = 0; s < p->nseries; s++) {
    fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", p->color[s]);
    for (int i = 0; i < n; i++) {
      double v = (field(&rows[i], p->field[s]) - p->lo) / (p->hi - p->lo);
      v = v < 0 ? 0 : v > 1 ? 1 : v;
      fprintf(f, "%.1f,%.1f ", x0 + (double)w * (rows[i].epoch - e0) / (e1 - e0),
              y0 + h - h * v);
    }
    fprintf(f, "'/>\n<text x='%d' y='%d' fill='%s'>%s</text>\n", x0 + w - 110,
            y0 + 20 + 16 * s, p->color[s], p->label[s]);
  }
}

static int write_svg(const char *path, const Row *rows, int n) {
  OutFile o;
  FILE *f = out_open(&o, path);
  if (!f)
    return 0;
  double max_loss = 0, min_acc = 1;
  for (int i = 0; i < n; i++) {
    max_loss = fmax(max_loss, rows[i].loss);
    min_acc = fmin(min_acc, fmin(rows[i].train_acc, rows[i].valid_acc));
  }
  Panel loss = {"training loss", {"mean loss"}, {"#c03"}, {offsetof(Row, loss)}, 1,
                0, max_loss > 0 ? max_loss * 1.05 : 1, 1};
  Panel acc = {"accuracy (%)", {"train", "validation"}, {"#06c", "#090"},
               {offsetof(Row, train_acc), offsetof(Row, valid_acc)}, 2,
               floor(min_acc * 50) / 50, 1, 100};
  fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='960' height='380' "
             "font-family='sans-serif' font-size='12'>\n"
             "<rect width='100%%' height='100%%' fill='white'/>\n");
  svg_panel(f, &loss, rows, n, 70, 40, 380, 280);
  svg_panel(f, &acc, rows, n, 550, 40, 380, 280);
  fprintf(f, "</svg>\n");
  return out_commit(&o, path, !ferror(f));
}

/* ---- command line --------------------------------------------------------- */

static const char usage[] =
    "usage: train_mnist [options]\n"
    "  --data DIR      IDX files from scripts/get-mnist (default data)\n"
    "  --epochs N      at most N epochs (default 30)\n"
    "  --batch N       minibatch size, 1..%d (default 64)\n"
    "  --lr X          base learning rate (default: the model file's)\n"
    "  --seed N        weights, order and shifts (default 1)\n"
    "  --shift N       random shifts of up to N pixels (default 2; 0 = off)\n"
    "  --patience N    stop after N epochs without a better validation accuracy (default 12)\n"
    "  --out FILE      best checkpoint (default " STR(MODEL.safetensors) ")\n"
    "  --resume FILE   continue from a checkpoint\n"
    "  --csv FILE      learning curves (default curves.csv)\n"
    "  --svg FILE      plot of the learning curves (default curves.svg)\n"
    "  --mpi           data-parallel under mpirun (a model from nncc --distributed=mpi)\n";

/* A whole number lo..hi into *out; 0 if v is not one. */
static int int_arg(const char *v, long lo, long hi, int *out) {
  char *end;
  long n = strtol(v, &end, 10);
  if (end == v || *end || n < lo || n > hi)
    return 0;
  *out = (int)n;
  return 1;
}

static int parse_args(int argc, char **argv, Options *o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    char *end;
    int seed = 0, ok = 1;
    if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--resume")) o->resume = v;
    else if (!strcmp(a, "--csv")) o->csv = v;
    else if (!strcmp(a, "--svg")) o->svg = v;
    else if (!strcmp(a, "--lr")) ok = (o->lr = strtod(v, &end)) > 0 && *end == '\0';
    else if (!strcmp(a, "--epochs")) ok = int_arg(v, 1, 100000, &o->epochs);
    else if (!strcmp(a, "--batch")) ok = int_arg(v, 1, BATCH_MAX, &o->batch);
    else if (!strcmp(a, "--shift")) ok = int_arg(v, 0, 8, &o->shift);
    else if (!strcmp(a, "--patience")) ok = int_arg(v, 1, 100000, &o->patience);
    else if (!strcmp(a, "--seed") && (ok = int_arg(v, 0, 2147483647, &seed))) o->seed = (uint64_t)seed;
    else ok = 0;
    if (!ok) {
      fprintf(stderr, "train_mnist: bad option or value: %s %s\n", a, v);
      return 0;
    }
  }
  if (argc % 2 == 0)
    fprintf(stderr, "train_mnist: '%s' needs a value\n", argv[argc - 1]);
  return argc % 2 == 1;
}

/* ---- main ------------------------------------------------------------------ */

static int fail_model(MODEL *m, int status, const char *what) {
  fprintf(stderr, "train_mnist: %s: %s (%s)\n", what, API(strerror)(status),
          API(last_error)(m));
  return 1;
}

/* Trains, keeps the best model in o->out, scores it on the test digits;
 * returns the exit status. */
static int run(const Options *o, const Set *train, const Set *test, MODEL *m, Row *rows) {
  int n_train = train->n - N_VALID, steps_per_epoch = (n_train + o->batch - 1) / o->batch;
  int st;
  if (o->resume && (st = API(load)(m, o->resume)) != 0)
    return fail_model(m, st, o->resume);
  if (o->lr > 0 && (st = API(set)(m, "lr", o->lr)) != 0)
    return fail_model(m, st, "--lr");
  API(set)(m, "sched_steps", (double)o->epochs * steps_per_epoch); /* no schedule: ignored */

  int first = (int)(API(step)(m) / steps_per_epoch) + 1, tty = rank == 0 && isatty(fileno(stderr));
  double best = o->resume ? accuracy(m, train, n_train, N_VALID) : -1;
  int best_epoch = first - 1, saved = 0, nrows = 0;
  printf("training on %d digits, validating on %d, testing on %d; batch %d, shift %d, "
         "epochs %d..%d\n", n_train, N_VALID, test->n, o->batch, o->shift, first, o->epochs);
  printf("epoch    loss  train%%  valid%%   img/s        lr\n");
  for (int epoch = first; epoch <= o->epochs && epoch - best_epoch <= o->patience; epoch++) {
    double t0 = now(), loss = train_epoch(m, train, n_train, o, epoch, tty);
    if (loss < 0)
      return 1;
    double secs = now() - t0;
    Row r = {epoch, loss, accuracy(m, train, 0, n_train < N_TRAIN_ACC ? n_train : N_TRAIN_ACC),
             accuracy(m, train, n_train, N_VALID), API(lr)(m), secs, n_train / secs};
    rows[nrows++] = r;
    int better = r.valid_acc > best;
    printf("%5d  %6.4f  %6.2f  %6.2f  %6.0f  %.2e%s\n", epoch, loss, 100 * r.train_acc,
           100 * r.valid_acc, r.images_per_s, r.lr, better ? "  *" : "");
    fflush(stdout);
    if (better) {
      best = r.valid_acc;
      best_epoch = epoch;
      if ((st = API(save)(m, o->out)) != 0)
        return fail_model(m, st, o->out);
      saved = 1;
    }
  }
  if (nrows && rank == 0 && !(write_csv(o->csv, rows, nrows) && write_svg(o->svg, rows, nrows)))
    fprintf(stderr, "train_mnist: cannot write %s or %s\n", o->csv, o->svg);
  if ((saved || o->resume) && (st = API(load)(m, saved ? o->out : o->resume)) != 0)
    return fail_model(m, st, o->out);
  printf("best validation accuracy %.2f%% (epoch %d), saved in %s\n", 100 * best, best_epoch,
         saved ? o->out : o->resume ? o->resume : "(nothing)");
  printf("test accuracy: %.2f%% on %d digits\n", 100 * accuracy(m, test, 0, test->n), test->n);
  if (nrows)
    printf("curves: %s, %s\n", o->csv, o->svg);
  return 0;
}

int main(int argc, char **argv) {
  Options o = {30, 64, 2, 12, 0, 1, "data", STR(MODEL.safetensors), NULL, "curves.csv",
               "curves.svg"};
  if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
    printf(usage, BATCH_MAX);
    return 0;
  }
  int mpi = 0; /* --mpi, taken out of argv */
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--mpi")) {
      mpi = 1;
      memmove(argv + i, argv + i + 1, sizeof *argv * (size_t)(argc - i));
      argc--;
      break;
    }
  if (mpi != HAVE_MPI) {
    fprintf(stderr, mpi ? "train_mnist: --mpi needs a model from nncc --distributed=mpi, built with mpicc\n"
                        : "train_mnist: the model is from nncc --distributed=mpi: run with --mpi (under mpirun)\n");
    return 2;
  }
#if HAVE_MPI
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  if (rank != 0 && !freopen("/dev/null", "w", stdout)) /* rank 0 prints */
    return 1;
#endif
  if (!parse_args(argc, argv, &o)) {
    fprintf(stderr, usage, BATCH_MAX);
    return 2;
  }
  Set train = {0, NULL, NULL}, test = {0, NULL, NULL};
  MODEL *m = NULL;
  Row *rows = NULL;
  int status = 1;
  if (!load_set(o.data, "train", &train) || !load_set(o.data, "test", &test))
    goto done;
  if (train.n <= N_VALID) {
    fprintf(stderr, "train_mnist: %d training digits; needs more than the %d held out\n", train.n,
            N_VALID);
    goto done;
  }
  m = API(create)(o.seed);
  rows = calloc((size_t)o.epochs + 1, sizeof *rows);
  if (!m || !rows) {
    fprintf(stderr, "train_mnist: out of memory\n");
    goto done;
  }
  status = run(&o, &train, &test, m, rows);
done: /* every path frees everything: clean under LeakSanitizer */
  API(destroy)(m);
  free(rows);
  free_set(&train);
  free_set(&test);
#if HAVE_MPI
  MPI_Finalize();
#endif
  return status;
}
