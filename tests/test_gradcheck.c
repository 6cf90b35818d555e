/*
 * test_gradcheck.c: every differentiable op and the example models,
 * compiled in f64, against central finite differences (max relative error
 * below 1e-6).  Op files add their own cases in their op tests; this file
 * also asserts that no registry op is left without a gradient test.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "nncc.h"

#define F64 "--dtype f64 --input-grad --batch 4"

static void check(const char *name, const char *model, int n, size_t x_per, size_t classes,
                  size_t t_per) {
  Compiled cm;
  compile_model(&cm, name, model, F64, MODEL_O1);
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

/* ---- every op of the language, gradient-checked -------------------------
 * One row per op.  The registry test below fails when an op exists that has
 * no row here, so a new op cannot land without a gradient check. */

typedef struct OpCase {
  const char *op;       /* registry name */
  const char *body;     /* statements after `input x: f32[2, 4, 4]`; binds `out` */
  size_t classes;       /* class target (0: real target of `out`'s size) */
  size_t out_size;      /* per-sample elements of `out` (real targets) */
} OpCase;

#define CONV "h = conv2d(x, 4, kernel=3, pad=1)\n"
static const OpCase op_cases[] = {
    {"conv2d", "out = conv2d(x, 3, kernel=3, stride=2, pad=1)\n", 0, 12},
    {"dense", "out = dense(x, 5)\n", 0, 5},
    {"relu", CONV "out = relu(h)\n", 0, 64},
    {"sigmoid", CONV "out = sigmoid(h)\n", 0, 64},
    {"tanh", CONV "out = tanh(h)\n", 0, 64},
    {"leaky_relu", CONV "out = leaky_relu(h, alpha=0.1)\n", 0, 64},
    {"elu", CONV "out = elu(h)\n", 0, 64},
    {"softplus", CONV "out = softplus(h)\n", 0, 64},
    {"hardtanh", CONV "out = hardtanh(h, min=-0.5, max=0.5)\n", 0, 64},
    {"clip", CONV "out = clip(h, min=-0.3, max=0.6)\n", 0, 64},
    {"prelu", CONV "out = prelu(h)\n", 0, 64},
    {"prelu", CONV "out = prelu(h, shared=true)\n", 0, 64},
    {"maxout", CONV "out = maxout(h, 2)\n", 0, 32},
    {"dropout", CONV "out = dropout(h, 0.3)\n", 0, 64},
    {"flatten", CONV "out = flatten(h) |> dense(3)\n", 0, 3},
    {"reshape", CONV "out = reshape(h, [8, -1, 4]) |> conv2d(2, kernel=3, pad=1) |> reshape([4, 4])\n",
     0, 16},
    {"add", CONV "g = conv2d(x, 4, kernel=1)\nout = add(h, g, x |> conv2d(4, kernel=3, pad=1))\n", 0, 64},
    {"maxpool", CONV "out = maxpool(h, 2)\n", 0, 16},
    {"minpool", CONV "out = minpool(h, 3, stride=1, pad=1)\n", 0, 64},
    {"avgpool", CONV "out = avgpool(h, 3, stride=2, pad=1)\n", 0, 16},
    {"sumpool", CONV "out = sumpool(h, 2)\n", 0, 16},
    {"global_avgpool", CONV "out = global_avgpool(h)\n", 0, 4},
    {"softmax", "out = dense(x, 5) |> softmax\n", 0, 5},
    {"batchnorm", CONV "out = batchnorm(h)\n", 0, 64},
    {"layernorm", CONV "out = layernorm(h)\n", 0, 64},
    {"concat", CONV "out = concat(h, x)\n", 0, 96},
    {"normalize", "out = normalize(x, mean=[0.1, -0.2], std=[0.5, 2]) |> dense(3)\n", 0, 3},
    {"cross_entropy", "out = dense(x, 4)\n", 4, 0},
    {"hinge", "out = dense(x, 4)\n", 4, 0},
    {"squared_hinge", "out = dense(x, 4)\n", 4, 0},
    {"mse", "out = dense(x, 3)\n", 0, 3},
    {"l1", "out = dense(x, 3)\n", 0, 3},
    {"huber", "out = dense(x, 3)\n", 0, 3},
    {"bce", "out = dense(x, 3)\n", 0, 3},
};
#define NUM_OP_CASES (sizeof op_cases / sizeof *op_cases)

static const char *loss_of(const OpCase *c) {
  const OpDef *def = op_def(op_lookup(c->op));
  return (def->roles & ROLE_LOSS) ? c->op : "mse";
}

/* Parameters are indices: Criterion runs each test in a fresh process of
 * the (position-independent) binary, where pointers would not survive. */
static int case_index[NUM_OP_CASES];

ParameterizedTestParameters(gradcheck, op) {
  for (size_t k = 0; k < NUM_OP_CASES; k++)
    case_index[k] = (int)k;
  return cr_make_param_array(int, case_index, NUM_OP_CASES);
}

ParameterizedTest(int *index, gradcheck, op, .timeout = 120) {
  const OpCase *c = &op_cases[*index];
  char name[48], model[1024];
  snprintf(name, sizeof name, "gc_%s", c->op);
  const char *target = c->classes ? "class[4]" : NULL;
  char tshape[32];
  snprintf(tshape, sizeof tshape, "f32[%zu]", c->out_size);
  snprintf(model, sizeof model,
           "model %s\ninput x: f32[2, 4, 4]\ntarget t: %s\n%soutput out\nloss %s(%s, t)\n",
           name, target ? target : tshape, c->body, loss_of(c),
           c->classes ? "out" : "flatten(out)");
  check(name, model, 3, 32, c->classes, c->out_size);
}

/* Every op the language offers has a row above. */
Test(gradcheck, every_op_is_covered) {
  for (int i = 0; i < NUM_OPS; i++) {
    const OpDef *def = op_defs[i];
    if (def->roles & ROLE_INTERNAL)
      continue;
    bool found = false;
    for (size_t k = 0; k < NUM_OP_CASES; k++)
      found |= strcmp(op_cases[k].op, def->name) == 0;
    cr_expect(found, "op '%s' has no gradient check in tests/test_gradcheck.c", def->name);
  }
}
