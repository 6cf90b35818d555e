/*
 * test_codegen.c: properties of the emitted C that cut across ops: fused
 * elementwise chains give the same numbers as separate kernels, one loop is
 * emitted for a chain, and degenerate models (no parameters) still produce
 * C that compiles under -pedantic -Werror.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const char *chain =
    "model chain\ninput x: f32[3, 4]\ntarget t: f32[3, 4]\n"
    "h = x + x |> relu |> sigmoid |> tanh |> elu\nout = h + x\noutput out\nloss mse(out, t)\n";

typedef int (*Forward)(void *, int, const float *, float *);

static void run_forward(const char *opts, float *y, const float *x, int n) {
  Compiled cm;
  compile_model(&cm, "chain", chain, opts, MODEL_O1 " -pedantic");
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void *m = create(1);
  cr_assert_eq(((Forward)api(&cm, "forward"))(m, n, x, y), 0);
  ((void (*)(void *))api(&cm, "destroy"))(m);
  close_model(&cm);
}

Test(codegen, fused_chain_matches_separate_kernels) {
  float x[5 * 12], fused[5 * 12], plain[5 * 12];
  for (int i = 0; i < 5 * 12; i++)
    x[i] = (float)sin(i * 0.7) * 2;
  run_forward("--batch 5", fused, x, 5);
  run_forward("--batch 5 --fuse=none", plain, x, 5);
  for (int i = 0; i < 5 * 12; i++) {
    double xi = x[i], h = tanh(1 / (1 + exp(-fmax(2 * xi, 0))));
    double want = (h > 0 ? h : expm1(h)) + xi;
    cr_expect(fabs(fused[i] - want) < 1e-5 * fmax(1, fabs(want)), "fused[%d] %g vs %g", i,
              fused[i], want);
    cr_expect(fabs(fused[i] - plain[i]) <= 1e-6 * fmax(1, fabs(plain[i])), "[%d] %g vs %g", i,
              fused[i], plain[i]);
  }
}

Test(codegen, chain_is_one_loop) {
  char dir[512], nn[600], out[1 << 14];
  scratch_dir(dir, sizeof dir, "chainrep");
  snprintf(nn, sizeof nn, "%s/chain.nn", dir);
  write_file(nn, chain);
  cr_assert_eq(run_capture(out, sizeof out, "%s %s --infer --report", NNCC_BIN, nn), 0, "%s", out);
  cr_expect(strstr(out, "inference graph: 1 kernels (5 nodes fused away)"), "%s", out);
}

Test(codegen, parameterless_training_model_compiles_pedantic) {
  Compiled cm;
  compile_model(&cm, "nop",
                "model nop\ninput x: f32[4]\ntarget t: f32[4]\nout = sigmoid(x)\n"
                "output out\nloss mse(out, t)\n",
                "", "-O2 -pedantic");
  cr_expect_eq(((int (*)(void))api(&cm, "tensor_count"))(), 0);
  close_model(&cm);
}

/* conv |> batchnorm |> relu in training: relu runs in batchnorm's forward
 * kernel and, with the opt-in prologue fusion, its gradient inside
 * batchnorm's backward kernel (one kernel for dx, dgamma and dbeta). */
Test(codegen, batchnorm_relu_fused_forward_and_backward) {
  char dir[512], nn[600], out[1 << 14];
  scratch_dir(dir, sizeof dir, "bnrelu");
  snprintf(nn, sizeof nn, "%s/bnr.nn", dir);
  write_file(nn, "model bnr\ninput x: f32[2, 5, 5]\ntarget y: class[3]\n"
                 "h = conv2d(x, 4, kernel=3, pad=1) |> batchnorm |> relu\n"
                 "logits = flatten(h) |> dense(3)\noutput logits\nloss cross_entropy(logits, y)\n");
  cr_assert_eq(run_capture(out, sizeof out,
                           "%s %s --report --fuse=bn_fold,epilogue,elementwise,prologue", NNCC_BIN,
                           nn),
               0, "%s", out);
  cr_expect(strstr(out, "fused: relu1 (relu) into bn1 (batchnorm)"), "%s", out);
  cr_expect(strstr(out, "fused: relu1 (relu_dx) recomputed in bn1 (batchnorm_dx)"), "%s", out);
  cr_expect(strstr(out, "folded: bn1 (batchnorm) into the weights and bias of conv1"), "%s", out);
}

/* An --infer build loads a training checkpoint (skipping its Adam state)
 * and computes what the training build computes; other unknown tensors
 * are still refused. */
Test(codegen, infer_build_loads_training_checkpoint) {
  const char *model = "model ckpt\ninput x: f32[6]\ntarget y: class[3]\n"
                      "logits = dense(x, 5) |> relu |> dense(3)\noutput logits\n"
                      "loss cross_entropy(logits, y)\ntrain {\n  optimizer adam(lr=0.01)\n}\n";
  Compiled train, infer;
  compile_model(&train, "ckpt", model, "--batch 4", MODEL_O1);
  compile_model(&infer, "ckpt", model, "--batch 4 --infer", MODEL_O1);
  void *(*tcreate)(uint64_t) = (void *(*)(uint64_t))api(&train, "create");
  void *(*icreate)(uint64_t) = (void *(*)(uint64_t))api(&infer, "create");
  int (*step)(void *, int, const float *, const int32_t *, float *) =
      (int (*)(void *, int, const float *, const int32_t *, float *))api(&train, "train_step");
  void *tm = tcreate(1), *im = icreate(2);
  float x[4 * 6], a[4 * 3], b[4 * 3], loss;
  int32_t y[4] = {0, 1, 2, 1};
  fill_uniform(x, 24, 9, -1, 1);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(step(tm, 4, x, y, &loss), 0);
  char path[600];
  snprintf(path, sizeof path, "%s/ckpt.safetensors", train.dir);
  cr_assert_eq(((int (*)(void *, const char *))api(&train, "save"))(tm, path), 0);
  int (*iload)(void *, const char *) = (int (*)(void *, const char *))api(&infer, "load");
  cr_assert_eq(iload(im, path), 0, "%s",
               ((const char *(*)(void *))api(&infer, "last_error"))(im));
  cr_assert_eq(((Forward)api(&train, "forward"))(tm, 4, x, a), 0);
  cr_assert_eq(((Forward)api(&infer, "forward"))(im, 4, x, b), 0);
  cr_expect(memcmp(a, b, sizeof a) == 0, "forward differs after loading the checkpoint");
  /* A file from another model is still refused. */
  Compiled other;
  compile_model(&other, "ckpt",
                "model ckpt\ninput x: f32[6]\nlogits = dense(x, 5) |> relu |> dense(3)\n"
                "extra = dense(x, 2)\noutput logits\noutput extra\n",
                "--batch 4", MODEL_O1);
  void *om = ((void *(*)(uint64_t))api(&other, "create"))(3);
  snprintf(path, sizeof path, "%s/other.safetensors", other.dir);
  cr_assert_eq(((int (*)(void *, const char *))api(&other, "save"))(om, path), 0);
  cr_expect_eq(iload(im, path), -4, "a file with an unexpected tensor must be refused");
  ((void (*)(void *))api(&train, "destroy"))(tm);
  ((void (*)(void *))api(&infer, "destroy"))(im);
  ((void (*)(void *))api(&other, "destroy"))(om);
}

/* ---- the file a person reads (issue #11) ---------------------------------- */

/* lenet5.c as nncc emits it with opts; malloc'd. */
static char *emit_lenet5(const char *tag, const char *opts) {
  char dir[512], out[1 << 12];
  scratch_dir(dir, sizeof dir, tag);
  cr_assert_eq(run_capture(out, sizeof out, "%s %s/examples/lenet5.nn -o %s/l5.c %s", NNCC_BIN,
                           NNCC_SOURCE_DIR, dir, opts),
               0, "%s", out);
  char path[600];
  snprintf(path, sizeof path, "%s/l5.c", dir);
  char *text = read_text(path);
  cr_assert(text);
  return text;
}

/* The body of the function that starts with head ("\nint lenet5_forward("). */
static char *function(const char *text, const char *head) {
  const char *start = strstr(text, head), *end = start ? strstr(start, "\n}\n") : NULL;
  cr_assert(end, "no %s", head + 1);
  char *body = malloc((size_t)(end - start) + 1);
  memcpy(body, start, (size_t)(end - start));
  body[end - start] = '\0';
  return body;
}

/* Every kernel call passes named tensors: the only lines that mention the
 * arena, params or grads blocks are the declarations of those names. */
static void expect_named_calls(const char *body) {
  int decls = 0;
  for (const char *line = body; line; line = strchr(line + 1, '\n')) {
    const char *eol = strchr(line + 1, '\n');
    size_t len = eol ? (size_t)(eol - line) : strlen(line);
    char buf[512];
    snprintf(buf, sizeof buf, "%.*s", (int)(len < 511 ? len : 511), line);
    if (strstr(buf, "m->arena +") || strstr(buf, "m->params +") || strstr(buf, "m->grads +")) {
      cr_expect(strstr(buf, "*const ") && strstr(buf, " = m->"), "a call on a raw pointer:%s", buf);
      decls++;
    }
  }
  cr_expect(decls > 10, "%d declarations", decls);
}

Test(codegen, calls_pass_named_tensors) {
  char *text = emit_lenet5("named", "");
  char *fwd = function(text, "\nint lenet5_forward("), *grad = function(text, "\nint lenet5_gradients(");
  expect_named_calls(fwd);
  expect_named_calls(grad);
  cr_expect(strstr(fwd, "conv1_forward(conv1_y, conv1_ws, in_x, bn1_wf, bn1_bf, n);"), "%s", fwd);
  cr_expect(strstr(fwd, "    const real *const conv1_weight = m->params + 0;"), "%s", fwd);
  cr_expect(strstr(grad, "conv1_conv2d_dw(conv1_dw, conv1_dw_ws, bn1_dx, in_x, n);"), "%s", grad);
  cr_expect(strstr(grad, "    real *const conv1_dw = m->grads + 0;"), "%s", grad);
  /* flatten is a view: fc1 reads pool2's output under pool2's name */
  cr_expect(strstr(fwd, "fc1_forward(fc1_y, fc1_ws, pool2_y, fc1_weight, fc1_bias, n);"), "%s", fwd);
  free(fwd);
  free(grad);
  free(text);
}

static int count(const char *text, const char *what) {
  int k = 0;
  for (const char *p = strstr(text, what); p; p = strstr(p + 1, what))
    k++;
  return k;
}

/* forward() and gradients() each open one parallel region around all their
 * kernel calls; update() one of its own; each of --threads threads at most
 * (8 here); no kernel opens any: their loops
 * are work-shared ("omp for") and the small kernels run in "omp single". */
Test(codegen, one_parallel_region_per_call) {
  char *text = emit_lenet5("region", "");
  char *fwd = function(text, "\nint lenet5_forward("), *grad = function(text, "\nint lenet5_gradients(");
  char *upd = function(text, "\nint lenet5_update(");
  const char *region = "#pragma omp parallel num_threads(nn_team(8))\n#endif\n    {\n";
  cr_expect_eq(count(fwd, "#pragma omp parallel"), 1, "%s", fwd);
  cr_expect_eq(count(fwd, region), 1, "%s", fwd);
  cr_expect_eq(count(grad, "#pragma omp parallel"), 1, "%s", grad);
  cr_expect_eq(count(grad, region), 1, "%s", grad);
  cr_expect_eq(count(upd, "#pragma omp parallel for num_threads(nn_team(8))"), 1, "%s", upd);
  cr_expect_eq(count(text, "#pragma omp parallel"), 3);
  cr_expect(count(fwd, "#pragma omp single") >= 1 && count(grad, "#pragma omp single") >= 1);
  cr_expect(count(text, "#pragma omp for") > 20);
  /* the calls are inside the region: after it opens, before the loss is read */
  const char *open = strstr(grad, region), *call = strstr(grad, "conv1_conv2d_dw(");
  const char *read = strstr(grad, "const real l = ");
  cr_expect(open && call && read && open < call && call < read);
  free(fwd);
  free(grad);
  free(upd);
  free(text);
}

/* relu_dx in place over dy reads it through dx, so it takes no dy; out of
 * place (--no-plan) it does. */
Test(codegen, in_place_dx_takes_no_dy) {
  char *text = emit_lenet5("inplace", "");
  cr_expect(strstr(text, "static void relu4_relu_dx(real *dx, const real *restrict y, int n)\n"),
            "relu4_relu_dx signature");
  cr_expect(!strstr(text, "(void)dy;"));
  cr_expect(strstr(text, "relu4_relu_dx(relu4_dx, fc2_y, n);   /* in place: relu4_dx is fc3_dx */"));
  free(text);
  text = emit_lenet5("outofplace", "--no-plan");
  cr_expect(strstr(text, "static void relu4_relu_dx(real *dx, const real *dy, const real *restrict y, "
                         "int n)\n"),
            "relu4_relu_dx signature with --no-plan");
  cr_expect(strstr(text, "relu4_relu_dx(relu4_dx, fc3_dx, fc2_y, n);\n"));
  free(text);
}

/* A layer's forward and backward kernels are neighbours, layers in the
 * order they run, a layer fused into others both ways has no banner (relu1:
 * forward into bn1, backward into pool1's dx), one with a kernel left has
 * one that says where its forward went (relu3); `ws` is only ever a
 * workspace (pooling's window bounds are i0 i1 j0 j1). */
Test(codegen, kernels_grouped_by_layer) {
  char *text = emit_lenet5("layers", "");
  const char *order[] = {"/* ---- layer \"conv1\" ---- */",
                         "static void conv1_forward(",
                         "static void conv1_forward_train(",
                         "static void conv1_conv2d_dw(",
                         "static void conv1_conv2d_db(",
                         "/* ---- layer \"bn1\" ---- */",
                         "static void bn1_batchnorm_fold(",
                         "static void bn1_forward(",
                         "static void bn1_batchnorm_dx(",
                         "static void pool1_forward(",
                         "static void pool1_maxpool_dx(",
                         "static void conv2_forward(",
                         "/* ---- layer \"relu3\" (forward fused into \"fc1\") ---- */",
                         "static void relu3_relu_dx(",
                         "static void loss1_cross_entropy_dx(",
                         "\nint lenet5_forward(",
                         "\nint lenet5_gradients("};
  const char *at = text;
  for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
    const char *p = strstr(text, order[i]);
    cr_expect(p && p > at, "'%s' missing or out of order", order[i]);
    at = p ? p : at;
  }
  cr_expect(strstr(text, "const int j0 = ow * 2, j1 = j0 + 2;"));
  cr_expect(!strstr(text, "layer \"relu1\"") && !strstr(text, "relu1_relu_dx("));
  cr_expect(strstr(text, "fused: relu_dx"), "pool1's dx computes relu1's");
  cr_expect(!strstr(text, "int ws"));
  free(text);
}

/* The contents in the header comment name each section's banner line. */
Test(codegen, contents_point_at_sections) {
  char *text = emit_lenet5("contents", "--main=train");
  int rows = 0;
  for (const char *row = strstr(text, " *   1. "); row && strncmp(row, " *   ", 5) == 0;
       row = strchr(row, '\n') + 1) {
    int number = atoi(row + 5);
    const char *eol = strchr(row, '\n');
    const char *p = eol;
    while (p[-1] >= '0' && p[-1] <= '9')
      p--;
    int line = atoi(p);
    const char *l = text;
    for (int k = 1; k < line && l; k++)
      l = strchr(l, '\n') + 1;
    char want[32];
    snprintf(want, sizeof want, "/* ==== %d. ", number);
    cr_expect(l && strncmp(l, want, strlen(want)) == 0, "row %d points at line %d", number, line);
    rows++;
  }
  cr_expect_eq(rows, 7, "runtime, tables, kernels, forward, training, API, main");
  free(text);
}

/* ---- plain -O2 (issue #12) ------------------------------------------------- */

/* The text of asm function `name` (its label to its .size line) in s, or NULL. */
static char *asm_function(const char *s, const char *name) {
  char label[160];
  snprintf(label, sizeof label, "\n%s:\n", name);
  const char *start = strstr(s, label), *end = start ? strstr(start, "\t.size\t") : NULL;
  if (!end)
    return NULL;
  char *body = malloc((size_t)(end - start) + 1);
  memcpy(body, start, (size_t)(end - start));
  body[end - start] = '\0';
  return body;
}

/* The assembly of the model nncc emits from `nn` with `opts` (as dir/m.c),
 * built with gcc -std=c11 -O2 -fopenmp and `cflags`, no -march, as an
 * embedder may build it.  Skips where gcc's target_clones do not exist. */
static char *plain_o2_asm(const char *dir, const char *nn, const char *opts, const char *cflags) {
#if !defined(__x86_64__) || !defined(__linux__)
  cr_skip_test("x86-64 Linux only (target_clones)");
#endif
  char out[1 << 12], path[600];
  if (run_capture(out, sizeof out, "gcc --version") != 0)
    cr_skip_test("no gcc");
  cr_assert_eq(run_capture(out, sizeof out, "%s %s -o %s/m.c %s && cd %s && "
                                            "gcc -std=c11 -O2 -fopenmp %s -S m.c -o m.s",
                           NNCC_BIN, nn, dir, opts, dir, cflags),
               0, "%s", out);
  snprintf(path, sizeof path, "%s/m.s", dir);
  char *s = read_text(path);
  cr_assert(s);
  return s;
}

/* Built with plain -O2: the per-channel kernels also exist for AVX-512
 * (NN_CLONES), and those clones are vector code; the product kernels,
 * whose micro-kernels pick their ISA at run time, are built once, and their
 * epilogue (rows of contiguous stores) is vector code even for SSE2.
 * Without the prelude's cost-model pragma gcc 12 leaves all of these loops
 * scalar at -O2. */
Test(codegen, plain_O2_vectorizes) {
  char dir[512], nn[600];
  scratch_dir(dir, sizeof dir, "plain_o2");
  snprintf(nn, sizeof nn, "%s/examples/lenet5.nn", NNCC_SOURCE_DIR);
  char *s = plain_o2_asm(dir, nn, "", "");
  char *bn = asm_function(s, "bn1_batchnorm_dx.avx512f");
  cr_assert(bn, "no AVX-512 clone of bn1's batchnorm_dx");
  cr_expect(strstr(bn, "%zmm"), "bn1's batchnorm_dx clone is not AVX-512 vector code");
  cr_expect(!strstr(s, "\nconv1_forward.avx512f:\n"), "a product kernel was cloned");
  char *conv = asm_function(s, "conv1_forward");
  cr_assert(conv);
  cr_expect(strstr(conv, "addps"), "conv1's epilogue (bias, relu) is not vector code");
  free(conv);
  free(bn);
  free(s);
  /* -DNN_NO_CLONES (the sanitized suite's models): the loops built once */
  s = plain_o2_asm(dir, nn, "", "-DNN_NO_CLONES");
  cr_expect(!strstr(s, ".avx512f:") && !strstr(s, ".avx2:"), "NN_NO_CLONES still cloned");
  cr_expect(strstr(s, "\nbn1_batchnorm_dx:\n"), "no bn1_batchnorm_dx without clones");
  free(s);
}

/* A residual add whose relu's gradient is fused into it, y = x > 0 ? y +
 * dy : 0, reads y and dy under the condition: gcc will not if-convert that
 * (it would speculate a load or a trapping add) unless it can mask the
 * loads, so its AVX2 clone was scalar (6.5% of resnet20's training step on
 * a Zen 3 core).  The rectifiers' gradients are selects of bits (rpick). */
Test(codegen, residual_relu_dx_vectorizes_on_avx2) {
  char dir[512], path[600];
  scratch_dir(dir, sizeof dir, "resid_o2");
  snprintf(path, sizeof path, "%s/resid.nn", dir);
  write_file(path, "model resid\n"
                   "input x: f32[8, 6, 6]\n"
                   "target y: class[4]\n"
                   "h = conv2d(x, 8, kernel=3, pad=1) |> relu\n"
                   "h = relu(conv2d(h, 8, kernel=3, pad=1) + h)\n"
                   "logits = dense(flatten(h), 4)\n"
                   "output p = softmax(logits)\n"
                   "loss cross_entropy(logits, y)\n"
                   "train { optimizer sgd(lr=0.1) }\n");
  char *s = plain_o2_asm(dir, path, "", "");
  snprintf(path, sizeof path, "%s/m.c", dir);
  char *c = read_text(path);
  cr_assert(c);
  /* h's two gradients added, relu_dx fused: the add's comment, then its definition */
  const char *k = strstr(c, "(add, model line 5)");
  cr_assert(k, "no add kernel in the training code");
  const char *end = strstr(k, "*/"), *fused = strstr(k, "fused: relu_dx");
  cr_assert(end && fused && fused < end, "the add has no relu_dx fused");
  const char *def = strstr(end, "static void ");
  cr_assert(def);
  def += strlen("static void ");
  char name[128];
  size_t len = strcspn(def, "(");
  cr_assert_lt(len, sizeof name - 8);
  snprintf(name, sizeof name, "%.*s.avx2", (int)len, def);
  char *body = asm_function(s, name);
  cr_assert(body, "no AVX2 clone %s", name);
  cr_expect(strstr(body, "%ymm"), "%s is not AVX2 vector code", name);
  free(body);
  free(s);
  free(c);
}

/* At batch 1 dense is dot products in plain C loops, not the micro-kernels:
 * its kernels are cloned like the per-channel ones, or a plain -O2 build
 * runs them as SSE2 (mlp512's forward 0.28 ms against 0.075 with the
 * clones, 0.056 at -march=native). */
Test(codegen, products_off_the_engine_are_cloned) {
  char dir[512], nn[600];
  scratch_dir(dir, sizeof dir, "b1_o2");
  snprintf(nn, sizeof nn, "%s/examples/mlp512.nn", NNCC_SOURCE_DIR);
  char *s = plain_o2_asm(dir, nn, "--infer --batch 1", "");
  char *fc = asm_function(s, "fc1_forward.avx2");
  cr_assert(fc, "no AVX2 clone of fc1's forward at batch 1");
  cr_expect(strstr(fc, "%ymm"), "fc1's forward clone is not AVX2 vector code");
  free(fc);
  free(s);
}

/* The test suite builds models with their system headers precompiled
 * (tests/support/model_pch.h, tests/CMakeLists.txt): a quarter of each
 * sanitized model's compile.  The precompiled header includes nothing an
 * emitted model does not (so a missing #include cannot hide behind it), and
 * gcc takes it for a model built the way the harness builds them ('!' in
 * gcc -H's list; an unusable one is 'x' and the compile only slower). */
Test(codegen, models_use_the_precompiled_headers) {
  char path[600], cc[1024], out[1 << 14];
  snprintf(path, sizeof path, "%s/tests/support/model_pch.h", NNCC_SOURCE_DIR);
  char *pch = read_text(path);
  cr_assert(pch, "cannot read %s", path);
  Compiled cm;
  compile_model(&cm, "pchm", chain, "--dtype f32", NULL);
  char *model = read_text(cm.c_path);
  cr_assert(model);
  int includes = 0;
  for (const char *at = strstr(pch, "\n#include <"); at; at = strstr(at + 1, "\n#include <")) {
    char line[64];
    size_t n = strcspn(at + 1, "\n");
    cr_assert(n < sizeof line);
    memcpy(line, at + 1, n);
    line[n] = '\0';
    cr_expect(strstr(model, line), "model_pch.h has %s, which the model does not", line);
    includes++;
  }
  cr_expect_geq(includes, 10, "model_pch.h: %d includes", includes);
  if (strcmp(NNCC_MODEL_PCH, "") == 0)
    cr_skip_test("the models' headers are precompiled for gcc only");
  model_cc(cc, sizeof cc, NULL);
  cr_assert_eq(run_capture(out, sizeof out, "%s -H -fsyntax-only %s", cc, cm.c_path), 0, "%s", out);
  cr_expect(strstr(out, "\n! ") || strncmp(out, "! ", 2) == 0,
            "gcc did not use the precompiled header:\n%s", out);
  close_model(&cm);
  free(model);
  free(pch);
}
