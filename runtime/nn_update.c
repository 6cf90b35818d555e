/*
 * nn_update.c: the element loops of the generated optimizer update that do
 * not depend on the optimizer (codegen/train.c emits the rule itself).
 *
 * Each is written so gcc and clang vectorize it: the finite check has no
 * branch per element, max-norm sums in NN_VL lanes (in double, added in a
 * fixed order), and sqrt uses the vector instruction where the target has
 * one, since a loop of sqrt() calls stays scalar because of errno.
 */
#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

/* 1 if every x[i] is finite; one early exit per 4096 elements. */
static NN_UNUSED int nn_all_finite(const real *x, long n) {
  for (long o = 0; o < n; o += 4096) {
    const long end = n - o < 4096 ? n : o + 4096;
    int ok = 1;
    for (long i = o; i < end; i++)
      ok &= isfinite(x[i]) != 0;
    if (!ok)
      return 0;
  }
  return 1;
}

/* Max-norm on the units of p[0, n): each unit's vector rescaled to norm at
 * most c. */
static NN_UNUSED void nn_max_norm(real *restrict p, long n, int unit, double c) {
  for (long o = 0; o + unit <= n; o += unit) {
    real *restrict v = p + o;
    double acc[NN_VL] = {0};
    int k0 = 0;
    for (; k0 + NN_VL <= unit; k0 += NN_VL)
      for (int l = 0; l < NN_VL; l++)
        acc[l] += (double)v[k0 + l] * v[k0 + l];
    for (int l = 0; k0 + l < unit; l++)
      acc[l] += (double)v[k0 + l] * v[k0 + l];
    double norm = 0;
    for (int l = 0; l < NN_VL; l++)
      norm += acc[l];
    norm = sqrt(norm);
    if (norm > c) {
      const double f = c / norm;
      for (int k = 0; k < unit; k++)
        v[k] = (real)(v[k] * f);
    }
  }
}

/* x[i] = sqrt(x[i]).  The vector sqrt is IEEE sqrt: the same bits as
 * sqrt(). */
static NN_UNUSED void nn_sqrt_block(real *x, long n) {
  long i = 0;
#if defined(__AVX512F__) && NN_REAL_F64
  for (; i + 8 <= n; i += 8)
    _mm512_storeu_pd(x + i, _mm512_sqrt_pd(_mm512_loadu_pd(x + i)));
#elif defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(x + i, _mm512_sqrt_ps(_mm512_loadu_ps(x + i)));
#elif defined(__AVX__) && NN_REAL_F64
  for (; i + 4 <= n; i += 4)
    _mm256_storeu_pd(x + i, _mm256_sqrt_pd(_mm256_loadu_pd(x + i)));
#elif defined(__AVX__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(x + i, _mm256_sqrt_ps(_mm256_loadu_ps(x + i)));
#endif
  for (; i < n; i++)
    x[i] = (real)sqrt(x[i]);   /* correctly rounded, as sqrtf */
}
