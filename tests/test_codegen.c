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
  compile_model(&cm, "chain", chain, opts, "-O1 -pedantic");
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
 * kernel and its gradient inside batchnorm's backward kernels. */
Test(codegen, batchnorm_relu_fused_forward_and_backward) {
  char dir[512], nn[600], out[1 << 14];
  scratch_dir(dir, sizeof dir, "bnrelu");
  snprintf(nn, sizeof nn, "%s/bnr.nn", dir);
  write_file(nn, "model bnr\ninput x: f32[2, 5, 5]\ntarget y: class[3]\n"
                 "h = conv2d(x, 4, kernel=3, pad=1) |> batchnorm |> relu\n"
                 "logits = flatten(h) |> dense(3)\noutput logits\nloss cross_entropy(logits, y)\n");
  cr_assert_eq(run_capture(out, sizeof out, "%s %s --report", NNCC_BIN, nn), 0, "%s", out);
  cr_expect(strstr(out, "fused: relu1 (relu) into bn1 (batchnorm)"), "%s", out);
  cr_expect(strstr(out, "fused: relu1 (relu_dx) recomputed in bn1 (batchnorm_dx)"), "%s", out);
  cr_expect(strstr(out, "fused: relu1 (relu_dx) recomputed in bn1 (batchnorm_dparams)"), "%s", out);
  cr_expect(strstr(out, "folded: bn1 (batchnorm) into the weights and bias of conv1"), "%s", out);
}
