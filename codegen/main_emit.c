/*
 * main_emit.c: --main=train|infer|bench appends a main() to model.c, so the
 * one file builds into a program with no other source:
 *
 *   cc -O3 -fopenmp model.c -o model -lm
 *   ./model train IMAGES LABELS [--epochs N] [--batch N] [--lr X] [--seed N] [--out FILE]
 *   ./model infer WEIGHTS IMAGES [LABELS]
 *   ./model bench [--runs N] [--batch N]
 *
 * The data are IDX files of bytes (MNIST's format, read by runtime/nn_idx.c),
 * pixels scaled to [0, 1].  So the model must have one real input (its
 * per-sample size is checked against rows x cols when the images load), one
 * output scored by argmax, and for training one class target; anything else
 * is refused at compile time.  The text below is a template: "@m" becomes
 * the model prefix; the counts come in as NN_MAIN_* macros.  Every helper is
 * named nn_main_*; those names are reserved before kernels are named.
 */
#include <string.h>

#include "codegen.h"

static const char *const main_names[] = {
    "nn_main_data", "nn_main_usage", "nn_main_now",  "nn_main_load",  "nn_main_free",
    "nn_main_accuracy", "nn_main_train", "nn_main_infer", "nn_main_bench", "nn_main_int",
    "nn_main_next", "nn_main_cmp", "nn_main_fail", "NN_MAIN_IN", "NN_MAIN_OUT",
    "NN_MAIN_CLASSES", "NN_MAIN_BATCH", "NN_MAIN_TRAIN", "NN_MAIN_STEP", NULL};

void main_reserve(CG *cg) {
  for (int i = 0; main_names[i]; i++)
    ident_reserve(cg->a, &cg->idents, main_names[i]);
}

/* ---- the template ------------------------------------------------------ */

static const char common[] =
    "/* ---- main (--main): ./@m train|infer|bench; see usage below ---- */\n\n"
    "#ifdef NN_NO_FILES\n#error \"--main reads IDX files and writes checkpoints: build without -DNN_NO_FILES\"\n#endif\n"
    "#include <time.h>\n\n"
    "typedef struct {\n    int n;\n    real *x;      /* n x NN_MAIN_IN, [0, 1] */\n"
    "    int32_t *y;   /* n labels, or NULL */\n} nn_main_data;\n\n"
    "static int nn_main_usage(void)\n{\n"
    "    fprintf(stderr, \"usage: @m train IMAGES LABELS [--epochs N] [--batch N] [--lr X] [--seed N] [--out FILE]\\n\"\n"
    "                    \"       @m infer WEIGHTS IMAGES [LABELS]\\n\"\n"
    "                    \"       @m bench [--runs N] [--batch N]\\n\"\n"
    "                    \"IMAGES and LABELS are IDX files of bytes (MNIST format).\\n\");\n"
    "    return 2;\n}\n\n"
    "static int nn_main_fail(const char *what, const char *detail)\n{\n"
    "    fprintf(stderr, \"@m: %s: %s\\n\", what, detail);\n    return 1;\n}\n\n"
    "static double nn_main_now(void)\n{\n    struct timespec ts;\n"
    "    timespec_get(&ts, TIME_UTC);\n    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;\n}\n\n"
    "/* A whole number in lo..hi, or -1. */\n"
    "static long nn_main_int(const char *s, long lo, long hi)\n{\n    char *end;\n"
    "    long v = strtol(s, &end, 10);\n"
    "    return end != s && *end == '\\0' && v >= lo && v <= hi ? v : -1;\n}\n\n"
    "static uint64_t nn_main_next(uint64_t *s)\n{\n"
    "    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));\n"
    "    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);\n"
    "    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);\n    return z ^ (z >> 31);\n}\n\n"
    "static void nn_main_free(nn_main_data *d)\n{\n    free(d->x);\n    free(d->y);\n}\n\n"
    "/* Images (n, rows, cols) with rows x cols == NN_MAIN_IN, and labels\n"
    " * (n) below NN_MAIN_CLASSES if a labels file is given. */\n"
    "static int nn_main_load(const char *images, const char *labels, nn_main_data *d)\n{\n"
    "    int32_t dims[3], ldims[3];\n    unsigned char *px, *lb = NULL;\n    char err[512];\n"
    "    d->x = NULL;\n    d->y = NULL;\n"
    "    if (nn_idx_load_u8(images, 3, dims, &px, err, sizeof err) != NN_OK)\n"
    "        return nn_main_fail(\"cannot load images\", err);\n"
    "    if ((long)dims[1] * dims[2] != NN_MAIN_IN) {\n"
    "        snprintf(err, sizeof err, \"%s: images are %ldx%ld = %ld pixels, the model's input has %d\",\n"
    "                 images, (long)dims[1], (long)dims[2], (long)dims[1] * dims[2], NN_MAIN_IN);\n"
    "        free(px);\n        return nn_main_fail(\"wrong image size\", err);\n    }\n"
    "    if (labels && nn_idx_load_u8(labels, 1, ldims, &lb, err, sizeof err) != NN_OK) {\n"
    "        free(px);\n        return nn_main_fail(\"cannot load labels\", err);\n    }\n"
    "    if (labels && ldims[0] != dims[0]) {\n"
    "        snprintf(err, sizeof err, \"%ld images but %ld labels\", (long)dims[0], (long)ldims[0]);\n"
    "        free(px);\n        free(lb);\n        return nn_main_fail(labels, err);\n    }\n"
    "    d->n = dims[0];\n    d->x = malloc(sizeof *d->x * (size_t)d->n * NN_MAIN_IN);\n"
    "    d->y = lb ? malloc(sizeof *d->y * (size_t)d->n) : NULL;\n"
    "    int ok = d->x && (!lb || d->y);\n"
    "    for (long i = 0; ok && i < (long)d->n * NN_MAIN_IN; i++)\n"
    "        d->x[i] = (real)px[i] / (real)255;\n"
    "    for (int i = 0; ok && lb && i < d->n; i++) {\n"
    "        d->y[i] = lb[i];\n"
    "        if (lb[i] >= NN_MAIN_CLASSES) {\n"
    "            snprintf(err, sizeof err, \"label %d of sample %d is not below %d\", lb[i], i, NN_MAIN_CLASSES);\n"
    "            ok = 0;\n            nn_main_fail(labels, err);\n        }\n    }\n"
    "    free(px);\n    free(lb);\n"
    "    if (!ok)\n        nn_main_free(d);\n    return ok ? 0 : 1;\n}\n\n"
    "/* Fraction of samples whose largest output is at their label; with\n"
    " * print, one line \"index class\" per sample instead. */\n"
    "static double nn_main_accuracy(@m *m, const nn_main_data *d, int print)\n{\n"
    "    static real out[NN_MAIN_BATCH * NN_MAIN_OUT];\n    long right = 0;\n"
    "    for (int b = 0; b < d->n; b += NN_MAIN_BATCH) {\n"
    "        int k = d->n - b < NN_MAIN_BATCH ? d->n - b : NN_MAIN_BATCH;\n"
    "        if (@m_forward(m, k, d->x + (size_t)b * NN_MAIN_IN, out) != NN_OK)\n            return -1;\n"
    "        for (int i = 0; i < k; i++) {\n            int best = 0;\n"
    "            for (int c = 1; c < NN_MAIN_OUT; c++)\n"
    "                if (out[i * NN_MAIN_OUT + c] > out[i * NN_MAIN_OUT + best])\n                    best = c;\n"
    "            if (print)\n                printf(\"%d %d\\n\", b + i, best);\n"
    "            else\n                right += best == d->y[b + i];\n        }\n    }\n"
    "    return d->n ? (double)right / d->n : 0;\n}\n\n";

static const char train[] =
    "static int nn_main_train(int argc, char **argv)\n{\n"
    "    if (argc < 4)\n        return nn_main_usage();\n"
    "    long epochs = 10, batch = NN_MAIN_BATCH, seed = 1;\n    double lr = 0;\n"
    "    const char *out = \"@m.safetensors\";\n"
    "    for (int i = 4; i < argc; i += 2) {\n"
    "        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : \"\";\n"
    "        if (!strcmp(a, \"--epochs\") && (epochs = nn_main_int(v, 1, 1000000)) > 0) continue;\n"
    "        if (!strcmp(a, \"--batch\") && (batch = nn_main_int(v, 1, NN_MAIN_BATCH)) > 0) continue;\n"
    "        if (!strcmp(a, \"--seed\") && (seed = nn_main_int(v, 0, 2147483647)) >= 0) continue;\n"
    "        if (!strcmp(a, \"--lr\") && (lr = strtod(v, NULL)) > 0) continue;\n"
    "        if (!strcmp(a, \"--out\") && *v) {\n            out = v;\n            continue;\n        }\n"
    "        fprintf(stderr, \"@m: bad option or value: %s %s\\n\", a, v);\n        return nn_main_usage();\n    }\n"
    "    nn_main_data d;\n    if (nn_main_load(argv[2], argv[3], &d))\n        return 1;\n"
    "    @m *m = @m_create((uint64_t)seed);\n    int *idx = malloc(sizeof *idx * (size_t)d.n);\n"
    "    real *xb = malloc(sizeof *xb * (size_t)batch * NN_MAIN_IN);\n"
    "    int32_t *yb = malloc(sizeof *yb * (size_t)batch);\n"
    "    if (!m || !idx || !xb || !yb)\n        return nn_main_fail(\"train\", \"out of memory\");\n"
    "    if (lr > 0)\n        @m_set(m, \"lr\", lr);\n"
    "    uint64_t rng = (uint64_t)seed;\n"
    "    for (int i = 0; i < d.n; i++)\n        idx[i] = i;\n"
    "    printf(\"training on %d samples, batch %ld, %ld epochs\\n\", d.n, batch, epochs);\n"
    "    for (long e = 1; e <= epochs; e++) {\n"
    "        for (int i = d.n - 1; i > 0; i--) {\n"
    "            int j = (int)(nn_main_next(&rng) % (uint64_t)(i + 1)), t = idx[i];\n"
    "            idx[i] = idx[j];\n            idx[j] = t;\n        }\n"
    "        double sum = 0, t0 = nn_main_now();\n"
    "        for (int b = 0; b < d.n; b += (int)batch) {\n"
    "            int k = d.n - b < batch ? d.n - b : (int)batch;\n"
    "            for (int i = 0; i < k; i++) {\n"
    "                memcpy(xb + (size_t)i * NN_MAIN_IN, d.x + (size_t)idx[b + i] * NN_MAIN_IN, sizeof *xb * NN_MAIN_IN);\n"
    "                yb[i] = d.y[idx[b + i]];\n            }\n"
    "            real loss;\n            int st = @m_train_step(m, k, xb, yb, &loss);\n"
    "            if (st != NN_OK)\n                return nn_main_fail(\"train_step\", @m_last_error(m));\n"
    "            sum += (double)loss * k;\n        }\n"
    "        double secs = nn_main_now() - t0;\n"
    "        printf(\"epoch %ld  loss %.6f  accuracy %.2f%%  %.0f samples/s  lr %.3g\\n\", e, sum / d.n,\n"
    "               100 * nn_main_accuracy(m, &d, 0), d.n / secs, @m_lr(m));\n"
    "        fflush(stdout);\n    }\n"
    "    int st = @m_save(m, out);\n"
    "    if (st != NN_OK)\n        return nn_main_fail(out, @m_last_error(m));\n"
    "    printf(\"saved %s\\n\", out);\n"
    "    free(idx);\n    free(xb);\n    free(yb);\n    nn_main_free(&d);\n    @m_destroy(m);\n"
    "    return 0;\n}\n\n";

static const char infer[] =
    "static int nn_main_infer(int argc, char **argv)\n{\n"
    "    if (argc < 4 || argc > 5)\n        return nn_main_usage();\n"
    "    nn_main_data d;\n    if (nn_main_load(argv[3], argc == 5 ? argv[4] : NULL, &d))\n        return 1;\n"
    "    @m *m = @m_create(0);\n    if (!m)\n        return nn_main_fail(\"infer\", \"out of memory\");\n"
    "    if (@m_load(m, argv[2]) != NN_OK)\n        return nn_main_fail(\"cannot load weights\", @m_last_error(m));\n"
    "    double acc = nn_main_accuracy(m, &d, !d.y);\n"
    "    if (acc < 0)\n        return nn_main_fail(\"forward\", @m_last_error(m));\n"
    "    if (d.y)\n        printf(\"accuracy %.2f%% on %d samples\\n\", 100 * acc, d.n);\n"
    "    nn_main_free(&d);\n    @m_destroy(m);\n    return 0;\n}\n\n";

static const char bench[] =
    "static int nn_main_cmp(const void *a, const void *b)\n{\n"
    "    double x = *(const double *)a, y = *(const double *)b;\n    return (x > y) - (x < y);\n}\n\n"
    "/* Median time of runs calls of forward (what 0) or train_step (1) after\n"
    " * three warm-up calls, on random inputs and labels. */\n"
    "static int nn_main_bench(int argc, char **argv)\n{\n    long runs = 20, batch = NN_MAIN_BATCH;\n"
    "    for (int i = 2; i < argc; i += 2) {\n"
    "        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : \"\";\n"
    "        if (!strcmp(a, \"--runs\") && (runs = nn_main_int(v, 1, 100000)) > 0) continue;\n"
    "        if (!strcmp(a, \"--batch\") && (batch = nn_main_int(v, 1, NN_MAIN_BATCH)) > 0) continue;\n"
    "        fprintf(stderr, \"@m: bad option or value: %s %s\\n\", a, v);\n        return nn_main_usage();\n    }\n"
    "    @m *m = @m_create(1);\n"
    "    real *x = malloc(sizeof *x * (size_t)batch * NN_MAIN_IN);\n"
    "    real *out = malloc(sizeof *out * (size_t)batch * NN_MAIN_OUT);\n"
    "    int32_t *y = malloc(sizeof *y * (size_t)batch);\n"
    "    double *t = malloc(sizeof *t * (size_t)runs);\n"
    "    if (!m || !x || !out || !y || !t)\n        return nn_main_fail(\"bench\", \"out of memory\");\n"
    "    uint64_t rng = 42;\n"
    "    for (long i = 0; i < batch * NN_MAIN_IN; i++)\n"
    "        x[i] = (real)(nn_main_next(&rng) >> 11) * (real)0x1p-53;\n"
    "    for (long i = 0; i < batch; i++)\n"
    "        y[i] = (int32_t)(nn_main_next(&rng) % NN_MAIN_CLASSES);\n"
    "    const char *what[2] = {\"forward\", \"train_step\"};\n"
    "    for (int w = 0; w < 1 + NN_MAIN_TRAIN; w++) {\n"
    "        for (long r = -3; r < runs; r++) {\n"
    "            double t0 = nn_main_now();\n"
    "            int st = w ? NN_MAIN_STEP(m, (int)batch, x, y) : @m_forward(m, (int)batch, x, out);\n"
    "            if (st != NN_OK)\n                return nn_main_fail(what[w], @m_last_error(m));\n"
    "            if (r >= 0)\n                t[r] = nn_main_now() - t0;\n        }\n"
    "        qsort(t, (size_t)runs, sizeof *t, nn_main_cmp);\n"
    "        double med = runs % 2 ? t[runs / 2] : (t[runs / 2 - 1] + t[runs / 2]) / 2;\n"
    "        printf(\"%-10s batch %ld: median %.3f ms over %ld runs, %.0f samples/s\\n\", what[w], batch,\n"
    "               med * 1e3, runs, batch / med);\n    }\n"
    "    free(x);\n    free(out);\n    free(y);\n    free(t);\n    @m_destroy(m);\n    return 0;\n}\n\n";

static const char dispatch[] =
    "int main(int argc, char **argv)\n{\n"
    "    const char *kind = argc > 1 ? argv[1] : \"\";\n"
    "@TRAIN"
    "    if (!strcmp(kind, \"infer\"))\n        return nn_main_infer(argc, argv);\n"
    "    if (!strcmp(kind, \"bench\"))\n        return nn_main_bench(argc, argv);\n"
    "    return nn_main_usage();\n}\n";

/* text with "@m" replaced by the model prefix and "@TRAIN" by train_call */
static void put_template(CG *cg, const char *text, const char *train_call) {
  const char *p = text;
  while (*p) {
    size_t len = strcspn(p, "@");
    buf_printf(cg->c, "%.*s", (int)len, p);
    p += len;
    if (!strncmp(p, "@m", 2)) {
      buf_puts(cg->c, cg->m);
      p += 2;
    } else if (!strncmp(p, "@TRAIN", 6)) {
      buf_puts(cg->c, train_call);
      p += 6;
    } else if (*p) {
      internal_error(__FILE__, __LINE__, "bad placeholder in the --main template");
    }
  }
}

/* ---- checks and emission --------------------------------------------------- */

static bool main_error(CG *cg, const char *why) {
  error_plain(cg->ctx, "--main needs %s", why);
  return false;
}

/* The class target of the training graph, or NULL. */
static const Value *class_target(const Graph *g) {
  int ids[MAX_IO];
  if (!g || io_values(g, V_TARGET, ids) != 1)
    return NULL;
  const Value *t = val(g, ids[0]);
  return t->classes > 0 ? t : NULL;
}

bool emit_main(CG *cg) {
  const char *kind = cg->cfg->main_kind;
  const Graph *g = cg->infer;
  int in[MAX_IO], out[MAX_IO];
  if (!g)
    return main_error(cg, "the inference graph (a model with an output)");
  if (io_values(g, V_INPUT, in) != 1 || val(g, in[0])->dtype == DT_I32)
    return main_error(cg, "a model with exactly one real input (the images)");
  if (io_values(g, V_OUTPUT, out) != 1 || shape_numel(&val(g, out[0])->shape) < 2)
    return main_error(cg, "a model with exactly one output of at least 2 values per sample");
  const Value *t = class_target(cg->train);
  if (!t && (strcmp(kind, "infer") != 0 || cg->train))
    return main_error(cg, "a training section with one class target (target y: class[K]); "
                          "--infer builds support only --main=infer");
  long classes = t ? t->classes : shape_numel(&val(g, out[0])->shape);
  if (t && classes > 256)
    return main_error(cg, "at most 256 classes (IDX labels are bytes)");
  buf_printf(cg->c, "#define NN_MAIN_IN %ld\n#define NN_MAIN_OUT %ld\n#define NN_MAIN_CLASSES %ld\n",
             shape_numel(&val(g, in[0])->shape), shape_numel(&val(g, out[0])->shape), classes);
  buf_printf(cg->c, "#define NN_MAIN_BATCH %d\n#define NN_MAIN_TRAIN %d\n", g->max_batch,
             cg->train ? 1 : 0);
  if (cg->train)
    buf_printf(cg->c, "#define NN_MAIN_STEP(m, n, x, y) %s_train_step(m, n, x, y, NULL)\n\n",
               cg->m);
  else
    buf_puts(cg->c, "#define NN_MAIN_STEP(m, n, x, y) ((void)(y), NN_ERR_ARG)\n\n");
  put_template(cg, common, "");
  if (cg->train)
    put_template(cg, train, "");
  put_template(cg, infer, "");
  put_template(cg, bench, "");
  put_template(cg, dispatch,
               cg->train ? "    if (!strcmp(kind, \"train\"))\n        return nn_main_train(argc, argv);\n"
                         : "");
  return true;
}
