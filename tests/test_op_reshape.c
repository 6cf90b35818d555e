/*
 * test_op_reshape.c: the reshape op end to end.
 *
 * Forward: reshape keeps the row-major order of each sample, so its output
 * must equal the input element for element, as the model output (the copy
 * kernel) and inside the graph (a view, read by a following relu and a
 * dense layer, against references written here).  Gradients: gradcheck.c's
 * registry row (a view between two convolutions) and here through -1 dims.
 * Errors: tests/test_frontend.c.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gradcheck.h"

#define MAXB 5
#define PER 24   /* elements per sample: x is f32[2, 3, 4] */

typedef int (*Fwd)(void *, int, const float *, float *);

static void *model_create(const Compiled *cm) {
  return ((void *(*)(uint64_t))api(cm, "create"))(1);
}

/* The model output is the reshape: the copy kernel, bit for bit. */
Test(reshape, output_is_the_input_in_order) {
  Compiled cm;
  compile_model(&cm, "rsa", "model rsa\ninput x: f32[2, 3, 4]\noutput y = reshape(x, [4, -1])\n",
                "--batch 5", MODEL_O1);
  void *m = model_create(&cm);
  static const int batches[] = {1, 3, MAXB};
  for (int k = 0; k < 3; k++) {
    float x[MAXB * PER], y[MAXB * PER];
    fill_uniform(x, (size_t)batches[k] * PER, 7 + (uint64_t)k, -2, 2);
    cr_assert_eq(((Fwd)api(&cm, "forward"))(m, batches[k], x, y), 0);
    cr_expect(memcmp(x, y, sizeof(float) * (size_t)batches[k] * PER) == 0, "batch %d",
              batches[k]);
  }
  ((void (*)(void *))api(&cm, "destroy"))(m);
  close_model(&cm);
}

/* A view inside the graph: y = dense(relu(reshape(x, [6, 4]))) with the
 * dense weights set here, against y[o] = sum_i w[o][i] max(x[i], 0) + b[o]. */
Test(reshape, view_feeds_the_next_layers) {
  Compiled cm;
  compile_model(&cm, "rsv",
                "model rsv\ninput x: f32[2, 3, 4]\n"
                "output y = reshape(x, [6, 4]) |> relu |> flatten |> dense(3)\n",
                "--batch 5", MODEL_O1);
  void *m = model_create(&cm);
  size_t nw, nb;
  float *w = tensor_by_name(&cm, m, "tensor", "fc1.weight", &nw);
  float *b = tensor_by_name(&cm, m, "tensor", "fc1.bias", &nb);
  cr_assert(w && b && nw == 3 * PER && nb == 3);
  fill_uniform(w, nw, 11, -1, 1);
  fill_uniform(b, nb, 12, -1, 1);
  float x[MAXB * PER], y[MAXB * 3];
  fill_uniform(x, MAXB * PER, 13, -2, 2);
  cr_assert_eq(((Fwd)api(&cm, "forward"))(m, MAXB, x, y), 0);
  for (int s = 0; s < MAXB; s++)
    for (int o = 0; o < 3; o++) {
      double want = b[o];
      for (int i = 0; i < PER; i++)
        want += (double)w[o * PER + i] * fmax(x[s * PER + i], 0);
      cr_expect(fabs(y[s * 3 + o] - want) <= 1e-5 * fmax(1, fabs(want)), "sample %d unit %d: %g, "
                "want %g", s, o, (double)y[s * 3 + o], want);
    }
  ((void (*)(void *))api(&cm, "destroy"))(m);
  close_model(&cm);
}

/* Gradients through reshapes that infer a dimension, in f64: to the input
 * (--input-grad, the reverse reshape) and to the conv and dense weights. */
Test(reshape, gradient) {
  Compiled cm;
  compile_model(&cm, "rsg",
                "model rsg\ninput x: f32[2, 3, 4]\ntarget t: f32[5]\n"
                "h = reshape(x, [-1, 2, 2]) |> conv2d(3, kernel=2) |> reshape([-1])\n"
                "out = dense(h, 5)\noutput out\nloss mse(out, t)\n",
                "--dtype f64 --input-grad --batch 4", MODEL_O1);
  GradReport r = grad_check_random(&cm, 3, PER, 5, 21, -2, 2);
  cr_expect_eq(r.tensors, 4);
  cr_expect(r.worst < 1e-6, "worst relative error %.3g at %s (%d checked)", r.worst, r.where,
            r.checked);
  close_model(&cm);
}
