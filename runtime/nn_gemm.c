/*
 * nn_gemm.c: the product engine under conv2d and dense, in the style of
 * BLIS / GotoBLAS: operands are packed into panels, and a micro-kernel
 * multiplies one panel of A by one panel of B with its accumulators in
 * vector registers.
 *
 *   packed A: NN_MR rows, k-major: ap[k * NN_MR + i] = A(i, k)
 *   packed B: NN_NR columns, k-major: bp[k * NN_NR + j] = B(k, j)
 *   nn_ukr:   t (NN_MR x NN_NR) = (acc ? t : 0) + sum over k of A(i, k) B(k, j)
 *
 * Rows and columns past the matrix's edge are packed as zeros, so the
 * micro-kernel always computes a full tile and the caller stores only the
 * part that exists, applying its epilogue (bias, folded batchnorm,
 * activation) on the way, so that a fused output is written once.
 *
 * The micro-kernel exists three times: AVX-512 and AVX2+FMA (intrinsics in
 * functions compiled for those targets by gcc and clang, whatever -march
 * the user gives) and portable C; nn_ukr_pick() chooses by cpuid at run
 * time.  -DNN_PORTABLE forces the C one.  Every path sums over k in the same
 * ascending order, one accumulator per element, so a result depends on the
 * path (FMA rounds once) but never on the thread count or the tile's place.
 *
 * The kernels of conv2d and dense (ir/ops/) emit the loops around these with
 * their shapes as constants: which operand is packed where and when, and how
 * the work is split among the threads.
 */

/* NN_MR, NN_NR and NN_DR are #defined by the prelude from codegen/codegen.h. */
#ifdef _OPENMP
#include <omp.h>
#endif

typedef void (*nn_ukr_fn)(real *restrict t, long kc, const real *restrict ap,
                          const real *restrict bp, int acc);

/* Portable: plain C that any compiler vectorizes as well as it can. */
static NN_UNUSED void nn_ukr_c(real *restrict t, long kc, const real *restrict ap,
                               const real *restrict bp, int acc) {
  real s[NN_MR][NN_NR];
  for (int i = 0; i < NN_MR; i++)
    for (int j = 0; j < NN_NR; j++)
      s[i][j] = acc ? t[i * NN_NR + j] : 0;
  for (long k = 0; k < kc; k++)
    for (int i = 0; i < NN_MR; i++)
      for (int j = 0; j < NN_NR; j++)
        s[i][j] += ap[k * NN_MR + i] * bp[k * NN_NR + j];
  for (int i = 0; i < NN_MR; i++)
    for (int j = 0; j < NN_NR; j++)
      t[i * NN_NR + j] = s[i][j];
}

#if !defined(NN_PORTABLE) && (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define NN_X86 1
#include <immintrin.h>

/* One pass computes NN_MR rows x two vectors of columns (12 accumulators,
 * enough to hide the FMA latency; 15 of the 16 registers AVX2 has); a
 * tile takes NN_NR / (2 * lanes) passes.  V is the vector type, the other
 * arguments its load, store, broadcast, FMA, add and zero. */
#define NN_UKR_PASS(V, LD, ST, SET1, FMA, ADD, ZERO, W)                          \
  for (int h = 0; h < NN_NR; h += 2 * (W)) {                                      \
    V c00 = ZERO(), c01 = ZERO(), c10 = ZERO(), c11 = ZERO(), c20 = ZERO(),       \
      c21 = ZERO(), c30 = ZERO(), c31 = ZERO(), c40 = ZERO(), c41 = ZERO(),       \
      c50 = ZERO(), c51 = ZERO();                                                 \
    const real *restrict a = ap, *restrict b = bp + h;                            \
    for (long k = 0; k < kc; k++, a += NN_MR, b += NN_NR) {                       \
      const V b0 = LD(b), b1 = LD(b + (W));                                       \
      V ai = SET1(a[0]);                                                          \
      c00 = FMA(ai, b0, c00), c01 = FMA(ai, b1, c01);                             \
      ai = SET1(a[1]);                                                            \
      c10 = FMA(ai, b0, c10), c11 = FMA(ai, b1, c11);                             \
      ai = SET1(a[2]);                                                            \
      c20 = FMA(ai, b0, c20), c21 = FMA(ai, b1, c21);                             \
      ai = SET1(a[3]);                                                            \
      c30 = FMA(ai, b0, c30), c31 = FMA(ai, b1, c31);                             \
      ai = SET1(a[4]);                                                            \
      c40 = FMA(ai, b0, c40), c41 = FMA(ai, b1, c41);                             \
      ai = SET1(a[5]);                                                            \
      c50 = FMA(ai, b0, c50), c51 = FMA(ai, b1, c51);                             \
    }                                                                             \
    real *restrict r = t + h;                                                     \
    if (acc) {                                                                    \
      c00 = ADD(LD(r), c00), c01 = ADD(LD(r + (W)), c01);                         \
      c10 = ADD(LD(r + NN_NR), c10), c11 = ADD(LD(r + NN_NR + (W)), c11);         \
      c20 = ADD(LD(r + 2 * NN_NR), c20), c21 = ADD(LD(r + 2 * NN_NR + (W)), c21); \
      c30 = ADD(LD(r + 3 * NN_NR), c30), c31 = ADD(LD(r + 3 * NN_NR + (W)), c31); \
      c40 = ADD(LD(r + 4 * NN_NR), c40), c41 = ADD(LD(r + 4 * NN_NR + (W)), c41); \
      c50 = ADD(LD(r + 5 * NN_NR), c50), c51 = ADD(LD(r + 5 * NN_NR + (W)), c51); \
    }                                                                             \
    ST(r, c00), ST(r + (W), c01), ST(r + NN_NR, c10), ST(r + NN_NR + (W), c11);   \
    ST(r + 2 * NN_NR, c20), ST(r + 2 * NN_NR + (W), c21);                         \
    ST(r + 3 * NN_NR, c30), ST(r + 3 * NN_NR + (W), c31);                         \
    ST(r + 4 * NN_NR, c40), ST(r + 4 * NN_NR + (W), c41);                         \
    ST(r + 5 * NN_NR, c50), ST(r + 5 * NN_NR + (W), c51);                         \
  }

#if NN_REAL_F64
#define NN_UKR_512 NN_UKR_PASS(__m512d, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd, \
                               _mm512_fmadd_pd, _mm512_add_pd, _mm512_setzero_pd, 8)
#define NN_UKR_256 NN_UKR_PASS(__m256d, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_set1_pd, \
                               _mm256_fmadd_pd, _mm256_add_pd, _mm256_setzero_pd, 4)
#else
#define NN_UKR_512 NN_UKR_PASS(__m512, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, \
                               _mm512_fmadd_ps, _mm512_add_ps, _mm512_setzero_ps, 16)
#define NN_UKR_256 NN_UKR_PASS(__m256, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, \
                               _mm256_fmadd_ps, _mm256_add_ps, _mm256_setzero_ps, 8)
#endif

__attribute__((target("avx512f"))) static NN_UNUSED void
nn_ukr_avx512(real *restrict t, long kc, const real *restrict ap, const real *restrict bp,
              int acc) {
  NN_UKR_512
}

__attribute__((target("avx2,fma"))) static NN_UNUSED void
nn_ukr_avx2(real *restrict t, long kc, const real *restrict ap, const real *restrict bp,
            int acc) {
  NN_UKR_256
}
#endif

/* The dot-product micro-kernel, for products whose operands both run along
 * k (conv2d's dw: dy rows . column rows, k = pixels), where packing one of
 * them k-major would be a transpose:
 *
 *   t[i * ldt + j] = (acc ? t[i * ldt + j] : 0) + sum over k of a[i * lda + k] b[j * ldb + k]
 *
 * for i < mr, j < nr (at most NN_DR each).  Each of the NN_DR x NN_DR sums
 * runs in vector lanes over k, the lanes added in a fixed order, then the
 * tail k in order; rows past mr or nr repeat row 0 and are not stored. */
typedef void (*nn_ukr_nt_fn)(real *restrict t, long ldt, long kc, const real *restrict a,
                             long lda, const real *restrict b, long ldb, int mr, int nr,
                             int acc);

static NN_UNUSED void nn_dot_store(real *restrict t, long ldt, int mr, int nr, int acc,
                                   real s[NN_DR][NN_DR]) {
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++)
      t[i * ldt + j] = (acc ? t[i * ldt + j] : 0) + s[i][j];
}

static NN_UNUSED void nn_ukr_nt_c(real *restrict t, long ldt, long kc, const real *restrict a,
                                  long lda, const real *restrict b, long ldb, int mr, int nr,
                                  int acc) {
  real s[NN_DR][NN_DR];
  for (int i = 0; i < NN_DR; i++)
    for (int j = 0; j < NN_DR; j++) {
      const real *restrict ai = a + (i < mr ? i : 0) * lda, *restrict bj = b + (j < nr ? j : 0) * ldb;
      real l[NN_VL] = {0};
      const long kv = kc - kc % NN_VL;
      for (long k = 0; k < kv; k += NN_VL)
        for (int v = 0; v < NN_VL; v++)
          l[v] += ai[k + v] * bj[k + v];
      real sum = 0;
      for (int v = 0; v < NN_VL; v++)
        sum += l[v];
      for (long k = kv; k < kc; k++)
        sum += ai[k] * bj[k];
      s[i][j] = sum;
    }
  nn_dot_store(t, ldt, mr, nr, acc, s);
}

#if defined(NN_X86)
/* Rows i0 and i0 + 1 against the NN_DR rows of b: 8 accumulators. */
#define NN_DOT_PASS(V, LD, FMA, ZERO, HSUM, W, I0)                                   \
  {                                                                                  \
    const real *restrict a0 = a + ((I0) < mr ? (I0) : 0) * lda;                      \
    const real *restrict a1 = a + ((I0) + 1 < mr ? (I0) + 1 : 0) * lda;              \
    V c00 = ZERO(), c01 = ZERO(), c02 = ZERO(), c03 = ZERO(), c10 = ZERO(),          \
      c11 = ZERO(), c12 = ZERO(), c13 = ZERO();                                      \
    const long kv = kc - kc % (W);                                                   \
    for (long k = 0; k < kv; k += (W)) {                                             \
      const V x0 = LD(a0 + k), x1 = LD(a1 + k);                                      \
      V y = LD(b0 + k);                                                              \
      c00 = FMA(x0, y, c00), c10 = FMA(x1, y, c10);                                  \
      y = LD(b1 + k);                                                                \
      c01 = FMA(x0, y, c01), c11 = FMA(x1, y, c11);                                  \
      y = LD(b2 + k);                                                                \
      c02 = FMA(x0, y, c02), c12 = FMA(x1, y, c12);                                  \
      y = LD(b3 + k);                                                                \
      c03 = FMA(x0, y, c03), c13 = FMA(x1, y, c13);                                  \
    }                                                                                \
    s[I0][0] = HSUM(c00), s[I0][1] = HSUM(c01), s[I0][2] = HSUM(c02);                \
    s[I0][3] = HSUM(c03), s[(I0) + 1][0] = HSUM(c10), s[(I0) + 1][1] = HSUM(c11);    \
    s[(I0) + 1][2] = HSUM(c12), s[(I0) + 1][3] = HSUM(c13);                          \
    for (long q = kv; q < kc; q++) {                                                 \
      s[I0][0] += a0[q] * b0[q], s[I0][1] += a0[q] * b1[q];                          \
      s[I0][2] += a0[q] * b2[q], s[I0][3] += a0[q] * b3[q];                          \
      s[(I0) + 1][0] += a1[q] * b0[q], s[(I0) + 1][1] += a1[q] * b1[q];              \
      s[(I0) + 1][2] += a1[q] * b2[q], s[(I0) + 1][3] += a1[q] * b3[q];              \
    }                                                                                \
  }

#define NN_DOT_BODY(V, LD, FMA, ZERO, HSUM, W)                                       \
  const real *restrict b0 = b, *restrict b1 = b + (1 < nr ? ldb : 0);                \
  const real *restrict b2 = b + (2 < nr ? 2 * ldb : 0);                              \
  const real *restrict b3 = b + (3 < nr ? 3 * ldb : 0);                              \
  real s[NN_DR][NN_DR];                                                              \
  NN_DOT_PASS(V, LD, FMA, ZERO, HSUM, W, 0)                                          \
  if (mr > 2)                                                                        \
    NN_DOT_PASS(V, LD, FMA, ZERO, HSUM, W, 2)                                        \
  nn_dot_store(t, ldt, mr, nr, acc, s);

#if NN_REAL_F64
__attribute__((target("avx2,fma"))) static inline double nn_hsum256(__m256d v) {
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}
#define NN_DOT_256 NN_DOT_BODY(__m256d, _mm256_loadu_pd, _mm256_fmadd_pd, _mm256_setzero_pd, \
                               nn_hsum256, 4)
#else
__attribute__((target("avx2,fma"))) static inline float nn_hsum256(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}
#define NN_DOT_256 NN_DOT_BODY(__m256, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_setzero_ps, \
                               nn_hsum256, 8)
#endif

/* AVX-512 has 32 registers: all NN_DR x NN_DR sums in one pass. */
__attribute__((target("avx512f"))) static NN_UNUSED void
nn_ukr_nt_avx512(real *restrict t, long ldt, long kc, const real *restrict a, long lda,
                 const real *restrict b, long ldb, int mr, int nr, int acc) {
#if NN_REAL_F64
#define NN_V __m512d
#define NN_LD _mm512_loadu_pd
#define NN_FMA _mm512_fmadd_pd
#define NN_Z _mm512_setzero_pd
#define NN_HS _mm512_reduce_add_pd
  enum { W = 8 };
#else
#define NN_V __m512
#define NN_LD _mm512_loadu_ps
#define NN_FMA _mm512_fmadd_ps
#define NN_Z _mm512_setzero_ps
#define NN_HS _mm512_reduce_add_ps
  enum { W = 16 };
#endif
  const real *restrict a0 = a, *restrict a1 = a + (1 < mr ? lda : 0);
  const real *restrict a2 = a + (2 < mr ? 2 * lda : 0), *restrict a3 = a + (3 < mr ? 3 * lda : 0);
  const real *restrict b0 = b, *restrict b1 = b + (1 < nr ? ldb : 0);
  const real *restrict b2 = b + (2 < nr ? 2 * ldb : 0), *restrict b3 = b + (3 < nr ? 3 * ldb : 0);
  NN_V c[4][4] = {{NN_Z(), NN_Z(), NN_Z(), NN_Z()}, {NN_Z(), NN_Z(), NN_Z(), NN_Z()},
                  {NN_Z(), NN_Z(), NN_Z(), NN_Z()}, {NN_Z(), NN_Z(), NN_Z(), NN_Z()}};
  const long kv = kc - kc % W;
  for (long k = 0; k < kv; k += W) {
    const NN_V x0 = NN_LD(a0 + k), x1 = NN_LD(a1 + k), x2 = NN_LD(a2 + k), x3 = NN_LD(a3 + k);
    NN_V y = NN_LD(b0 + k);
    c[0][0] = NN_FMA(x0, y, c[0][0]), c[1][0] = NN_FMA(x1, y, c[1][0]);
    c[2][0] = NN_FMA(x2, y, c[2][0]), c[3][0] = NN_FMA(x3, y, c[3][0]);
    y = NN_LD(b1 + k);
    c[0][1] = NN_FMA(x0, y, c[0][1]), c[1][1] = NN_FMA(x1, y, c[1][1]);
    c[2][1] = NN_FMA(x2, y, c[2][1]), c[3][1] = NN_FMA(x3, y, c[3][1]);
    y = NN_LD(b2 + k);
    c[0][2] = NN_FMA(x0, y, c[0][2]), c[1][2] = NN_FMA(x1, y, c[1][2]);
    c[2][2] = NN_FMA(x2, y, c[2][2]), c[3][2] = NN_FMA(x3, y, c[3][2]);
    y = NN_LD(b3 + k);
    c[0][3] = NN_FMA(x0, y, c[0][3]), c[1][3] = NN_FMA(x1, y, c[1][3]);
    c[2][3] = NN_FMA(x2, y, c[2][3]), c[3][3] = NN_FMA(x3, y, c[3][3]);
  }
  const real *restrict ar[4] = {a0, a1, a2, a3}, *restrict br[4] = {b0, b1, b2, b3};
  real s[NN_DR][NN_DR];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) {
      real sum = NN_HS(c[i][j]);
      for (long q = kv; q < kc; q++)
        sum += ar[i][q] * br[j][q];
      s[i][j] = sum;
    }
  nn_dot_store(t, ldt, mr, nr, acc, s);
#undef NN_V
#undef NN_LD
#undef NN_FMA
#undef NN_Z
#undef NN_HS
}

__attribute__((target("avx2,fma"))) static NN_UNUSED void
nn_ukr_nt_avx2(real *restrict t, long ldt, long kc, const real *restrict a, long lda,
               const real *restrict b, long ldb, int mr, int nr, int acc) {
  NN_DOT_256
}
#endif

/* The micro-kernel for this CPU: cpuid on x86 (cheap: reads what the C
 * library's start-up recorded), the portable one elsewhere.  NN_FORCE_ISA
 * (0 portable, 1 AVX2, 2 AVX-512) pins one for tests. */
static NN_UNUSED nn_ukr_fn nn_ukr_pick(void) {
#if defined(NN_X86)
#if defined(NN_FORCE_ISA)
  return NN_FORCE_ISA == 2 ? nn_ukr_avx512 : NN_FORCE_ISA == 1 ? nn_ukr_avx2 : nn_ukr_c;
#else
  if (__builtin_cpu_supports("avx512f"))
    return nn_ukr_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return nn_ukr_avx2;
#endif
#endif
  return nn_ukr_c;
}

static NN_UNUSED nn_ukr_nt_fn nn_ukr_nt_pick(void) {
#if defined(NN_X86)
#if defined(NN_FORCE_ISA)
  return NN_FORCE_ISA == 2 ? nn_ukr_nt_avx512 : NN_FORCE_ISA == 1 ? nn_ukr_nt_avx2 : nn_ukr_nt_c;
#else
  if (__builtin_cpu_supports("avx512f"))
    return nn_ukr_nt_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return nn_ukr_nt_avx2;
#endif
#endif
  return nn_ukr_nt_c;
}

/* Packs rows [0, mr) x columns [0, kc) of A(i, k) = a[i * rs + k * cs] as one
 * NN_MR panel; rows from mr on are zero.  Reads run along whichever index
 * is contiguous. */
static NN_UNUSED void nn_pack_a(real *restrict ap, const real *restrict a, long rs, long cs,
                                int mr, long kc) {
  if (mr < NN_MR)
    for (long k = 0; k < kc; k++)
      for (int i = mr; i < NN_MR; i++)
        ap[k * NN_MR + i] = 0;
  if (cs == 1) {
    for (int i = 0; i < mr; i++)
      for (long k = 0; k < kc; k++)
        ap[k * NN_MR + i] = a[i * rs + k];
  } else {
    for (long k = 0; k < kc; k++)
      for (int i = 0; i < mr; i++)
        ap[k * NN_MR + i] = a[i * rs + k * cs];
  }
}

/* Packs rows [0, kc) x columns [0, nr) of B(k, j) = b[k * rs + j * cs] as one
 * NN_NR panel; columns from nr on are zero. */
static NN_UNUSED void nn_pack_b(real *restrict bp, const real *restrict b, long rs, long cs,
                                int nr, long kc) {
  if (nr < NN_NR)
    for (long k = 0; k < kc; k++)
      for (int j = nr; j < NN_NR; j++)
        bp[k * NN_NR + j] = 0;
  if (cs == 1 && nr == NN_NR) {
    for (long k = 0; k < kc; k++)
      for (int j = 0; j < NN_NR; j++)
        bp[k * NN_NR + j] = b[k * rs + j];
  } else if (cs == 1) {
    for (long k = 0; k < kc; k++)
      for (int j = 0; j < nr; j++)
        bp[k * NN_NR + j] = b[k * rs + j];
  } else {
    for (int j = 0; j < nr; j++)
      for (long k = 0; k < kc; k++)
        bp[k * NN_NR + j] = b[k * rs + j * cs];
  }
}

/* Threads: a kernel opens one parallel region of at most `most` threads
 * (its count of per-thread scratch slots) and indexes its slot by thread. */
static NN_UNUSED inline int nn_team(int most) {
#ifdef _OPENMP
  const int t = omp_get_max_threads();
  return t < most ? t : most;
#else
  (void)most;
  return 1;
#endif
}

static NN_UNUSED inline int nn_thread_id(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
