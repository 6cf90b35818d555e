/*
 * gradcheck.c: see gradcheck.h.
 */
#include "gradcheck.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*GradFn)(void *, int, const double *, const void *, double *, double *);

typedef struct Api {
  void *m;
  GradFn gradients;
  int (*count)(void);
  const char *(*name)(int);
  double *(*tensor)(void *, int, size_t *);
  double *(*grad)(void *, int, size_t *);
} Api;

static double loss_at(const Api *a, int n, const double *x, const void *y, double *dx) {
  double loss = NAN;
  int st = a->gradients(a->m, n, x, y, &loss, dx);
  cr_assert(st == 0, "gradients() failed with %d", st);
  return loss;
}

static void compare(GradReport *r, double analytic, double numeric, const char *what, size_t i) {
  double denom = fmax(1e-3, fmax(fabs(analytic), fabs(numeric)));
  double err = fabs(analytic - numeric) / denom;
  r->checked++;
  if (err > r->worst || isnan(err)) {
    r->worst = isnan(err) ? INFINITY : err;
    snprintf(r->where, sizeof r->where, "%s[%zu]: analytic %.10g, numeric %.10g", what, i,
             analytic, numeric);
  }
}

/* Central difference of the loss in *p with step h. */
static double central(const Api *a, int n, const double *x, const void *y, double *p, double h,
                      double *scratch) {
  double saved = *p;
  *p = saved + h;
  double up = loss_at(a, n, x, y, scratch);
  *p = saved - h;
  double down = loss_at(a, n, x, y, scratch);
  *p = saved;
  return (up - down) / (2 * h);
}

/* The derivative of the loss in *p.  The step is 1e-5: rounding noise in
 * the loss (~1e-16 / h relative) stays below 1e-6 even for deep models.  A
 * step that crosses a kink (a relu or max-pool switching) says nothing about
 * the analytic gradient, so each estimate is checked against one with twice
 * the step: on a smooth loss the two differ by O(h^2) (third derivative) plus
 * rounding noise, well under 1e-5 relative; past that the step crossed a
 * kink and is cut tenfold (down to 1e-7). */
static double numeric_grad(const Api *a, int n, const double *x, const void *y, double *p,
                           double *scratch) {
  double d = 0;
  for (double h = 1e-5; h >= 0.99e-7; h /= 10) {
    d = central(a, n, x, y, p, h, scratch);
    double d2 = central(a, n, x, y, p, 2 * h, scratch);
    if (fabs(d - d2) <= 1e-5 * fmax(1e-3, fabs(d)))
      break;
  }
  return d;
}

bool grad_check_bn_affine;
int grad_check_input_stride = 1;

GradReport grad_check(const Compiled *cm, int n, const double *x, size_t x_len, const void *y,
                      int max_per_tensor) {
  GradReport r = {0};
  void *(*create)(uint64_t) = (void *(*)(uint64_t))api(cm, "create");
  void (*destroy)(void *) = (void (*)(void *))api(cm, "destroy");
  Api a = {create(7), (GradFn)api(cm, "gradients"), (int (*)(void))api(cm, "tensor_count"),
           (const char *(*)(int))api(cm, "tensor_name"),
           (double *(*)(void *, int, size_t *))api(cm, "tensor"),
           (double *(*)(void *, int, size_t *))api(cm, "grad")};
  cr_assert(a.m, "create failed");
  /* A batchnorm's running statistics away from (0, 1), and with
   * grad_check_bn_affine its scale and shift away from (1, 0), so that a
   * rule that drops one fails: batchnorm(stats=running) reads the running
   * statistics in training too (batch statistics ignore them).  Its
   * tensors are the four before <bn>.running_var: weight, bias,
   * running_mean and the running_var. */
  for (int t = 3; t < a.count(); t++) {
    const char *name = a.name(t);
    size_t len = strlen(name), numel;
    if (len < 12 || strcmp(name + len - 12, ".running_var"))
      continue;
    const char *w = a.name(t - 3);
    cr_assert(strlen(w) == len - 5 && !strncmp(w, name, len - 12), "%s before %s", w, name);
    for (int k = grad_check_bn_affine ? 0 : 2; k < 4; k++) {
      double *b = a.tensor(a.m, t - 3 + k, &numel);
      for (size_t i = 0; i < numel; i++)
        b[i] = (double[]){1.2, 0.3, -0.2, 0.6}[k] + 0.1 * (double)(i % 4);
    }
  }
  double *xs = malloc(x_len * sizeof *xs), *dx = malloc(x_len * sizeof *dx);
  double *scratch = malloc(x_len * sizeof *scratch);
  memcpy(xs, x, x_len * sizeof *xs);
  /* NaN until written: a kernel that leaves a cell of dx alone fails. */
  for (size_t i = 0; i < x_len; i++)
    dx[i] = NAN;
  loss_at(&a, n, xs, y, dx);
  /* Analytic gradients first: every later call overwrites them. */
  int count = a.count();
  double **grads = calloc((size_t)count, sizeof *grads);
  for (int t = 0; t < count; t++) {
    size_t numel;
    double *g = a.grad(a.m, t, &numel);
    if (!g)
      continue;
    grads[t] = malloc(numel * sizeof(double));
    memcpy(grads[t], g, numel * sizeof(double));
  }
  for (int t = 0; t < count; t++) {
    if (!grads[t])
      continue;
    size_t numel;
    double *p = a.tensor(a.m, t, &numel);
    size_t stride = max_per_tensor > 0 && numel > (size_t)max_per_tensor
                        ? (numel + (size_t)max_per_tensor - 1) / (size_t)max_per_tensor : 1;
    r.tensors++;
    for (size_t i = 0; i < numel; i += stride)
      compare(&r, grads[t][i], numeric_grad(&a, n, xs, y, &p[i], scratch), a.name(t), i);
    free(grads[t]);
  }
  for (size_t i = 0; i < x_len; i += (size_t)grad_check_input_stride)
    compare(&r, dx[i], numeric_grad(&a, n, xs, y, &xs[i], scratch), "input", i);
  for (size_t i = 0; i < x_len; i++)   /* and the rest written at all */
    if (!isfinite(dx[i])) {
      r.worst = INFINITY;
      snprintf(r.where, sizeof r.where, "input[%zu]: analytic %g", i, dx[i]);
    }
  free(grads);
  free(xs);
  free(dx);
  free(scratch);
  destroy(a.m);
  return r;
}

GradReport grad_check_random(const Compiled *cm, int n, size_t x_per, size_t t_per, uint64_t seed,
                             double lo, double hi) {
  double *x = malloc(sizeof(double) * (size_t)n * x_per);
  double *t = malloc(sizeof(double) * (size_t)n * t_per);
  fill_uniform_d(x, (size_t)n * x_per, seed, lo, hi);
  fill_uniform_d(t, (size_t)n * t_per, seed + 1, -1, 1);
  GradReport r = grad_check(cm, n, x, (size_t)n * x_per, t, 0);
  free(x);
  free(t);
  return r;
}
