/*
 * gradcheck.h: finite-difference gradient checks of generated training code.
 *
 * The model must be compiled with `--dtype f64 --input-grad` and have one
 * input and one target, so its API has
 *   int <m>_gradients(<m> *, int n, const double *x, const T *y, double *loss, double *dx)
 * Every parameter element (or an even sample of at most `max_per_tensor` of
 * them) and every input element (or every grad_check_input_stride-th) is
 * perturbed by +-1e-5 (less where that step crosses a kink, see
 * gradcheck.c); the central
 * difference of the loss is compared with the analytic gradient.
 */
#ifndef GRADCHECK_H
#define GRADCHECK_H

#include "harness.h"

typedef struct GradReport {
  double worst;        /* max |a - d| / max(|a|, |d|, 1e-3) */
  char where[200];     /* tensor and index of the worst element */
  int checked;         /* elements compared */
  int tensors;         /* parameter tensors with a gradient */
} GradReport;

/* Set: grad_check also moves every batchnorm's gamma and beta away from 1
 * and 0 (its running statistics always move away from 0 and 1). */
extern bool grad_check_bn_affine;

/* Checks every grad_check_input_stride-th input element (default 1: all).
 * Prime to the rows' widths, a stride still reaches every column. */
extern int grad_check_input_stride;

GradReport grad_check(const Compiled *cm, int n, const double *x, size_t x_len, const void *y,
                      int max_per_tensor);

/* grad_check of a model with one real input and one real target: n
 * samples of x_per inputs uniform in [lo, hi] and t_per targets uniform in
 * [-1, 1], drawn from seed; every parameter element is checked. */
GradReport grad_check_random(const Compiled *cm, int n, size_t x_per, size_t t_per, uint64_t seed,
                             double lo, double hi);

#endif
