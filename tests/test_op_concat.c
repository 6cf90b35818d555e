/*
 * test_op_concat.c: the concat op end to end.
 *
 * Forward: three model inputs of different channel counts are concatenated
 * at batch 1, 3 and the maximum; a copy is exact, so the output must equal
 * the reference built here element for element (a wrong offset or stride
 * puts some element in the wrong place).  Gradients: f64 finite differences
 * through grad_check on an inception-like block whose inputs also reach the
 * loss by other paths, and on dense outputs with a repeated operand.  The
 * backward graph slices dy only for inputs that need it.  Errors: exact
 * diagnostics and exit code 1 from the nncc binary.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

#define MAX_BATCH 5

typedef int (*Forward3)(void *, int, const float *, const float *, const float *, float *);

/* y[b] = a[b] ++ b[b] ++ c[b], with per-sample sizes sa, sb, sc. */
static void reference(float *y, const float *a, const float *b, const float *c, int n, int sa,
                      int sb, int sc) {
  for (int s = 0; s < n; s++) {
    float *row = y + (size_t)s * (size_t)(sa + sb + sc);
    memcpy(row, a + (size_t)s * (size_t)sa, sizeof(float) * (size_t)sa);
    memcpy(row + sa, b + (size_t)s * (size_t)sb, sizeof(float) * (size_t)sb);
    memcpy(row + sa + sb, c + (size_t)s * (size_t)sc, sizeof(float) * (size_t)sc);
  }
}

/* Concat of inputs with shapes [ca, inner], [cb, inner], [cc, inner]. */
static void forward_case(const char *name, const char *inner, int ca, int cb, int cc,
                         int inner_size) {
  char model[512];
  snprintf(model, sizeof model,
           "model %s\ninput a: f32[%d%s]\ninput b: f32[%d%s]\ninput c: f32[%d%s]\n"
           "out = concat(a, b, c)\noutput out\n",
           name, ca, inner, cb, inner, cc, inner);
  Compiled cm;
  compile_model(&cm, name, model, "--batch 5", MODEL_O1);
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(&cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(&cm, "destroy");
  Forward3 forward = (Forward3)api(&cm, "forward");
  void *m = create(1);
  int sa = ca * inner_size, sb = cb * inner_size, sc = cc * inner_size, st = sa + sb + sc;
  float *a = malloc(sizeof(float) * MAX_BATCH * (size_t)sa);
  float *b = malloc(sizeof(float) * MAX_BATCH * (size_t)sb);
  float *c = malloc(sizeof(float) * MAX_BATCH * (size_t)sc);
  float *y = malloc(sizeof(float) * MAX_BATCH * (size_t)st);
  float *want = malloc(sizeof(float) * MAX_BATCH * (size_t)st);
  fill_uniform(a, MAX_BATCH * (size_t)sa, 1, -1, 1);
  fill_uniform(b, MAX_BATCH * (size_t)sb, 2, 2, 3);
  fill_uniform(c, MAX_BATCH * (size_t)sc, 3, -3, -2);
  const int batches[] = {1, 3, MAX_BATCH};
  for (int k = 0; k < 3; k++) {
    int n = batches[k];
    memset(y, 0, sizeof(float) * MAX_BATCH * (size_t)st);
    reference(want, a, b, c, n, sa, sb, sc);
    cr_assert_eq(forward(m, n, a, b, c, y), 0);
    for (int i = 0; i < n * st; i++)
      cr_assert(y[i] == want[i], "%s, batch %d: y[%d] = %g, want %g", name, n, i, y[i],
                want[i]);
  }
  destroy(m);
  free(a);
  free(b);
  free(c);
  free(y);
  free(want);
  close_model(&cm);
}

Test(concat, forward_chw) { forward_case("cat_chw", ", 3, 4", 2, 1, 3, 12); }
Test(concat, forward_vectors) { forward_case("cat_vec", "", 3, 5, 2, 1); }

/* ---- gradients --------------------------------------------------------------- */

static void grad_case(const char *name, const char *body, size_t x_per, size_t t_per) {
  char model[1024];
  snprintf(model, sizeof model,
           "model %s\ninput x: f32[2, 4, 4]\ntarget t: f32[%zu]\n%soutput out\n"
           "loss mse(out, t)\n",
           name, t_per, body);
  Compiled cm;
  compile_model(&cm, name, model, "--dtype f64 --input-grad --batch 4", MODEL_O1);
  GradReport r = grad_check_random(&cm, 3, x_per, t_per, 21, -1, 1);
  cr_expect(r.worst < 1e-6, "%s: worst %.3g at %s", name, r.worst, r.where);
  cr_expect(r.tensors >= 4, "%s: %d tensors", name, r.tensors);
  close_model(&cm);
}

/* x reaches the loss through conv a, conv b and directly through concat:
 * three gradient contributions for x, channel counts 3, 1 and 2. */
Test(concat, gradients_inception) {
  grad_case("cat_inc",
            "a = conv2d(x, 3, kernel=3, pad=1) |> tanh\n"
            "b = conv2d(x, 1, kernel=1)\n"
            "out = concat(a, b, x) |> dense(3)\n",
            32, 3);
}

/* Four operands of rank 1, one of them twice and one a view of x. */
Test(concat, gradients_dense_repeated_operand) {
  grad_case("cat_dense",
            "a = dense(x, 3)\n"
            "b = dense(x, 2) |> tanh\n"
            "out = concat(a, b, a, flatten(x)) |> dense(4)\n",
            32, 4);
}

/* Counts occurrences of `what` in s. */
static int count_of(const char *s, const char *what) {
  int k = 0;
  for (const char *p = strstr(s, what); p; p = strstr(p + 1, what))
    k++;
  return k;
}

/* Without --input-grad x needs no gradient: only the conv's slice of dy is
 * taken (one concat_dx, offset 2). */
Test(concat, backward_slices_only_needed_inputs) {
  char dir[512], nn[600], out[1 << 15];
  scratch_dir(dir, sizeof dir, "cat_need");
  snprintf(nn, sizeof nn, "%s/m.nn", dir);
  write_file(nn, "model m\ninput x: f32[2, 4, 4]\ntarget t: f32[3]\n"
                 "out = concat(x, conv2d(x, 3, kernel=1)) |> dense(3)\noutput out\n"
                 "loss mse(out, t)\n");
  int st = run_capture(out, sizeof out, "%s %s -o %s/m.c --emit-ir", NNCC_BIN, nn, dir);
  cr_assert_eq(st, 0, "%s", out);
  cr_expect_eq(count_of(out, "= concat_dx["), 1, "%s", out);
  cr_expect(strstr(out, "offset=2 : f32[N, 3, 4, 4]"), "%s", out);
}

/* ---- errors ----------------------------------------------------------------------- */

/* nncc must exit 1 with "<file>:<want>" in its output. */
static void expect_error(const char *body, const char *want) {
  char dir[512], path[600], out[4096], line[1024];
  scratch_dir(dir, sizeof dir, "cat_err");
  snprintf(path, sizeof path, "%s/bad.nn", dir);
  write_file(path, body);
  int st = run_capture(out, sizeof out, "%s %s -o %s/bad.c", NNCC_BIN, path, dir);
  cr_expect_eq(st, 1, "exit status %d, output:\n%s", st, out);
  snprintf(line, sizeof line, "%s:%s\n", path, want);
  cr_expect(strstr(out, line), "want\n%sgot\n%s", line, out);
}

#define HEAD "model bad\ninput x: f32[2, 4, 4]\ninput v: f32[3, 4, 5]\ninput u: f32[8]\n"

Test(concat_errors, inner_dims_differ) {
  expect_error(HEAD "y = concat(x, v)\noutput y\n",
               "5:5: error: concat: operand 2 has shape [3, 4, 5], operand 1 has [2, 4, 4] "
               "(all dims but the first must match)");
}

Test(concat_errors, ranks_differ) {
  expect_error(HEAD "y = concat(x, x, u)\noutput y\n",
               "5:5: error: concat: operand 3 has shape [8], operand 1 has [2, 4, 4] "
               "(all dims but the first must match)");
}

Test(concat_errors, one_input) {
  expect_error(HEAD "y = concat(x)\noutput y\n",
               "5:5: error: concat takes at least 2 tensor inputs, got 1");
}

Test(concat_errors, nine_inputs) {
  expect_error(HEAD "y = concat(x, x, x, x, x, x, x, x, x)\noutput y\n",
               "5:5: error: concat takes at most 8 tensor inputs, got 9");
}

Test(concat_errors, takes_no_attributes) {
  expect_error(HEAD "y = concat(x, x, 2)\noutput y\n",
               "5:18: error: too many arguments to concat (it takes 0 after its tensor "
               "inputs)");
}
