/*
 * test_import.c: `import "net.onnx"` in a .nn file, which trains a graph
 * exported from PyTorch (docs/language.md, "Imports").
 *
 * Every ONNX fixture of tests/onnx/ is imported by a .nn file that adds a
 * loss (mse against a fixed target); the generated training step's loss and
 * the gradient of every parameter must be PyTorch's within 1e-5.  PyTorch's
 * values were written by tests/onnx/make-fixtures, under the names nncc
 * gives the imported parameters (PyTorch's state_dict names), so the test
 * also checks that every parameter of the model has a PyTorch counterpart.
 * tests/onnx/ft.nn imports ft.onnx (a relative path, from another working
 * directory) with a classifier's loss and a train section: forward output,
 * loss and gradients against PyTorch, the initial weights are the
 * initializers, freeze= holds layers still, and bad imports get
 * file:line:col errors.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define FIXTURES NNCC_SOURCE_DIR "/tests/onnx"
#define BATCH 4

static char log_text[1 << 16];

/* n values of `size` bytes from FIXTURES/<name>.<suffix>, malloc'd. */
static void *read_fixture(const char *name, const char *suffix, size_t n, size_t size) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s.%s", FIXTURES, name, suffix);
  return read_values(path, n, size);
}

static double rel_err(double got, double want) { return fabs(got - want) / fmax(1.0, fabs(want)); }

typedef int (*GradientsFn)(void *m, int n, const float *x, const void *t, float *loss);
typedef int (*ForwardFn)(void *m, int n, const float *x, float *y);

/* Runs forward and gradients of the compiled model on fixture `name`'s
 * batch (targets t) and returns the largest difference from PyTorch's
 * outputs, loss and gradients (<name>.grads.txt/.f32); every parameter
 * of the model must be in that list. */
static double train_error(const Compiled *cm, const char *name, const void *t, size_t in,
                          size_t out) {
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(cm, "destroy");
  float *x = read_fixture(name, "in.f32", BATCH * in, 4);
  float *want = read_fixture(name, "out.f32", BATCH * out, 4);
  float *want_loss = read_fixture(name, "loss.f32", 1, 4);
  float *y = malloc(BATCH * out * sizeof *y), loss = NAN;
  void *m = create(1);
  cr_assert(m);
  cr_assert_eq(((ForwardFn)api(cm, "forward"))(m, BATCH, x, y), 0);
  double err = 0;
  for (size_t i = 0; i < BATCH * out; i++)
    err = fmax(err, rel_err(y[i], want[i]));
  cr_assert_eq(((GradientsFn)api(cm, "gradients"))(m, BATCH, x, t, &loss), 0);
  err = fmax(err, rel_err(loss, *want_loss));
  cr_log_info("%s: loss %.8g, PyTorch's %.8g\n", name, loss, *want_loss);

  char path[700], pname[128];
  snprintf(path, sizeof path, "%s/%s.grads.txt", FIXTURES, name);
  FILE *list = fopen(path, "r");
  cr_assert(list, "cannot open %s", path);
  size_t numel, total = 0;
  int nparams = 0;
  while (fscanf(list, "%127s %zu", pname, &numel) == 2)
    total += numel, nparams++;
  float *want_grad = read_fixture(name, "grads.f32", total, 4), *g = want_grad;
  rewind(list);
  while (fscanf(list, "%127s %zu", pname, &numel) == 2) {
    size_t have = 0;
    float *grad = tensor_by_name(cm, m, "grad", pname, &have);
    cr_assert(grad, "%s: the model has no parameter '%s'", name, pname);
    cr_assert_eq(have, numel, "%s: %s has %zu elements, PyTorch's %zu", name, pname, have,
                 numel);
    for (size_t i = 0; i < numel; i++)
      err = fmax(err, rel_err(grad[i], *g++));
  }
  fclose(list);
  int (*count)(void) = (int (*)(void))api(cm, "tensor_count");
  float *(*grad)(void *, int, size_t *) = (float *(*)(void *, int, size_t *))api(cm, "grad");
  int model_params = 0;
  for (int i = 0; i < count(); i++)
    model_params += grad(m, i, NULL) != NULL;
  cr_assert_eq(model_params, nparams, "%s: %d parameters, PyTorch's model has %d", name,
               model_params, nparams);
  destroy(m);
  free(x), free(want), free(want_loss), free(y), free(want_grad);
  return err;
}

typedef struct Fixture {
  const char *name;
  size_t in, out;   /* per sample */
} Fixture;

static const Fixture fixtures[] = {
    {"mlp", 20, 10}, {"convnet", 144, 5}, {"convnet_folded", 144, 5}, {"resnet", 108, 6},
    {"lnmlp", 12, 3}, {"windows", 130, 5},   /* windows: non-square, strided, dilated */
};

static int fixture_index[] = {0, 1, 2, 3, 4, 5};

ParameterizedTestParameters(import, gradients_match_pytorch) {
  return cr_make_param_array(int, fixture_index, sizeof fixtures / sizeof *fixtures);
}

/* Each fixture's graph, imported and trained with mse: batchnorm on batch
 * statistics, as PyTorch's train mode. */
ParameterizedTest(int *i, import, gradients_match_pytorch) {
  const Fixture *f = &fixtures[*i];
  char model[1024];
  snprintf(model, sizeof model,
           "model %s\nimport \"%s/%s.onnx\"\ntarget t: f32[%zu]\noutput y\nloss mse(y, t)\n",
           f->name, FIXTURES, f->name, f->out);
  Compiled cm;
  compile_model(&cm, f->name, model, "--no-winograd", NULL);
  float *t = read_fixture(f->name, "target.f32", BATCH * f->out, 4);
  double err = train_error(&cm, f->name, t, f->in, f->out);
  cr_log_info("%s: max error %.3g against PyTorch (output, loss, gradients)\n", f->name, err);
  cr_assert_leq(err, 1e-5, "%s: differs from PyTorch by %.3g", f->name, err);
  free(t);
  close_model(&cm);
}

/* Compiles tests/onnx/ft.nn from a scratch directory: its import "ft.onnx"
 * is found beside the .nn file, not in the working directory. */
static void compile_ft(Compiled *cm, const char *opts) {
  memset(cm, 0, sizeof *cm);
  scratch_dir(cm->dir, sizeof cm->dir, "ft");
  compile_model_file(cm, "ft", FIXTURES "/ft.nn", opts, NULL);
}

Test(import, trains_like_pytorch) {
  Compiled cm;
  compile_ft(&cm, "--no-winograd");
  int32_t *labels = read_fixture("ft", "labels.i32", BATCH, 4);
  double err = train_error(&cm, "ft", labels, 64, 10);
  cr_log_info("ft: max error %.3g against PyTorch (probs, loss, gradients)\n", err);
  cr_assert_leq(err, 1e-5, "ft: differs from PyTorch by %.3g", err);

  /* a training step moves every parameter (adam: by about lr) */
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  int (*step)(void *, int, const float *, const int32_t *, float *) =
      (int (*)(void *, int, const float *, const int32_t *, float *))api(&cm, "train_step");
  float *x = read_fixture("ft", "in.f32", BATCH * 64, 4);
  void *m = create(1), *fresh = create(2);   /* any seed: the weights are the initializers */
  float loss;
  cr_assert_eq(step(m, BATCH, x, labels, &loss), 0);
  size_t n;
  float *w0 = tensor_by_name(&cm, fresh, "tensor", "features.0.weight", &n);
  float *w1 = tensor_by_name(&cm, m, "tensor", "features.0.weight", NULL);
  double moved = 0;
  for (size_t i = 0; i < n; i++)
    moved = fmax(moved, fabs(w1[i] - w0[i]));
  cr_assert(moved > 0.5e-3 && moved < 2e-3, "features.0.weight moved by %g, lr is 1e-3", moved);
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  destroy(m), destroy(fresh);
  free(labels), free(x);
  close_model(&cm);
}

/* freeze="features" holds the layers under features still; the renamed
 * output is bound under its new name. */
Test(import, freeze_and_rename) {
  Compiled cm;
  compile_model(&cm, "fz",
                "model fz\nimport \"" FIXTURES "/ft.onnx\" (freeze=\"features\", "
                "logits=scores)\ntarget y: class[10]\noutput scores\n"
                "loss cross_entropy(scores, y)\ntrain { optimizer sgd(lr=0.1) }\n",
                NULL, NULL);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  int (*step)(void *, int, const float *, const int32_t *, float *) =
      (int (*)(void *, int, const float *, const int32_t *, float *))api(&cm, "train_step");
  float *x = read_fixture("ft", "in.f32", BATCH * 64, 4);
  int32_t *labels = read_fixture("ft", "labels.i32", BATCH, 4);
  void *m = create(1), *fresh = create(1);
  float loss;
  cr_assert_eq(step(m, BATCH, x, labels, &loss), 0);
  static const char *const names[] = {"features.0.weight", "features.3.bias", "classifier.weight"};
  for (int k = 0; k < 3; k++) {
    size_t n;
    float *a = tensor_by_name(&cm, fresh, "tensor", names[k], &n);
    float *b = tensor_by_name(&cm, m, "tensor", names[k], NULL);
    cr_assert(a && b, "no tensor %s", names[k]);
    bool same = !memcmp(a, b, n * sizeof *a);
    cr_expect(same == (k < 2), "%s %s", names[k], same ? "did not move" : "moved");
  }
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  destroy(m), destroy(fresh);
  free(x), free(labels);
  close_model(&cm);
}

typedef struct BadImport {
  const char *line;    /* line 2 of the model */
  const char *error;   /* the first line of stderr after "<dir>/m.nn:" */
} BadImport;

/* The model's directory holds copies of ft.onnx and bad_pads.onnx, and a
 * FIFO (whose open must not wait for a writer); %s is that directory. */
static const BadImport bad_imports[] = {
    {"import \"none.onnx\"", "2:8: error: cannot open '%s/none.onnx': No such file or directory"},
    {"import \"bad_pads.onnx\"",
     "2:8: error: %s/bad_pads.onnx: node 'conv' (Conv): attribute 'pads' has 3 values, "
     "expected 4"},
    {"import \"ft.onnx\" (logit=z)",
     "2:19: error: '%s/ft.onnx' has no input or output 'logit' (inputs: x; outputs: logits)"},
    {"import \"ft.onnx\" (freeze=2)",
     "2:26: error: freeze must be true, false or a layer name such as \"features\""},
    {"import \"ft.onnx\" (x)",
     "2:19: error: import takes only named options: freeze= and renames such as logits=scores"},
    {"import \"ft.onnx\"\ntarget logits: class[10]",
     "3:8: error: 'logits' is already defined by the import at line 2 (rename it there: "
     "(logits=new_name))"},
    {"input x: f32[3]\nimport \"ft.onnx\"", NULL},   /* ft.onnx:2:7, a note at m.nn:3:8 */
    {"import \"fifo.onnx\"", "2:8: error: %s/fifo.onnx: not a regular file of at most 1 GiB"},
};

static int bad_index[] = {0, 1, 2, 3, 4, 5, 6, 7};

ParameterizedTestParameters(import, bad_imports_are_errors) {
  return cr_make_param_array(int, bad_index, sizeof bad_imports / sizeof *bad_imports);
}

ParameterizedTest(int *i, import, bad_imports_are_errors, .timeout = 60) {
  const BadImport *b = &bad_imports[*i];
  char dir[512], path[700], text[1024], want[2048];
  scratch_dir(dir, sizeof dir, "badimport");
  cr_assert_eq(run("cp %s/ft.onnx %s/bad_pads.onnx %s && mkfifo %s/fifo.onnx", FIXTURES,
                   FIXTURES, dir, dir), 0);
  snprintf(path, sizeof path, "%s/m.nn", dir);
  snprintf(text, sizeof text, "model m\n%s\noutput o = relu(logits)\n", b->line);
  write_file(path, text);
  int st = run_capture(log_text, sizeof log_text, "%s %s -o %s/m.c 2>&1", NNCC_BIN, path, dir);
  cr_expect_eq(st, 1, "exit %d, expected 1:\n%s", st, log_text);
  if (b->error) {
    int at = snprintf(want, sizeof want, "%s:", path);
    snprintf(want + at, sizeof want - (size_t)at, b->error, dir);
  } else {
    snprintf(want, sizeof want, "%s/ft.onnx:2:7: error: 'x' is already defined\n"
             "input x: f32[1, 8, 8]\n      ^\n%s:3:8: note: in the graph imported here\n", dir,
             path);
  }
  cr_expect_eq(strncmp(log_text, want, strlen(want)), 0, "got:\n%s\nwanted:\n%s", log_text,
               want);
  snprintf(path, sizeof path, "%s/m.c", dir);
  cr_expect(!read_text(path), "m.c written");
}

/* Layers the program adds start from their own initializers (create's
 * seed); the imported ones from the graph's, whatever the seed.  With
 * them the build is not read-only (--infer). */
Test(import, added_layers_are_initialized) {
  Compiled cm;
  compile_model(&cm, "hd",
                "model hd\nimport \"" FIXTURES "/ft.onnx\" (freeze=true)\n"
                "output probs = relu(logits) |> dense(3, name=\"head\")\n",
                "--infer", NULL);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void *a = create(1), *b = create(2);
  size_t n, k;
  float *wa = tensor_by_name(&cm, a, "tensor", "head.weight", &n);
  float *wb = tensor_by_name(&cm, b, "tensor", "head.weight", NULL);
  float *fa = tensor_by_name(&cm, a, "tensor", "classifier.weight", &k);
  float *fb = tensor_by_name(&cm, b, "tensor", "classifier.weight", NULL);
  cr_assert(wa && wb && fa && fb);
  cr_expect(memcmp(wa, wb, n * sizeof *wa), "head.weight does not depend on the seed");
  cr_expect(!memcmp(fa, fb, k * sizeof *fa), "classifier.weight depends on the seed");
  double norm = 0;
  for (size_t i = 0; i < n; i++)
    norm += wa[i] * wa[i];
  cr_expect(norm > 0.1, "head.weight is not initialized (sum of squares %g)", norm);
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  destroy(a), destroy(b);
  close_model(&cm);
}

/* --emit-nn prints the program with the import expanded; that text, with
 * the graph's weights from --emit-weights, compiles to the same model.h and
 * model_weights.c (model.c differs in the kernels' "model line" comments:
 * the expansion moves the lines). */
Test(import, emit_nn_expands_the_import) {
  char dir[512];
  scratch_dir(dir, sizeof dir, "emitimport");
  int st = run_capture(log_text, sizeof log_text,
                       "cd %s && mkdir a b && %s %s/ft.nn --emit-nn > b/ft.nn && "
                       "%s %s/ft.onnx --emit-weights w.st && %s %s/ft.nn -o a/ft.c && "
                       "%s b/ft.nn --weights w.st -o b/ft.c && cmp a/ft.h b/ft.h && "
                       "cmp a/ft_weights.c b/ft_weights.c && cat b/ft.nn", dir, NNCC_BIN,
                       FIXTURES, NNCC_BIN, FIXTURES, NNCC_BIN, FIXTURES, NNCC_BIN);
  cr_assert_eq(st, 0, "%s", log_text);
  static const char *const want[] = {
      "model ft\n", "input x: f32[1, 8, 8]\n",
      "features_0 = conv2d(x, 4, kernel=3, pad=1, name=\"features.0\")\n",
      "classifier = dense(h4, 10, name=\"classifier\")\nlogits = classifier\n",
      "target y: class[10]\n", "output probs = softmax(logits)\n"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    cr_expect(strstr(log_text, want[i]), "missing '%s' in:\n%s", want[i], log_text);
}
