/*
 * nn_gemm.c: the product engine under conv2d and dense, in the style of
 * BLIS / GotoBLAS: a micro-kernel multiplies a packed panel of A by a panel
 * of B with its accumulators in vector registers.
 *
 *   A:        ap[i * ars + k * acs] = A(i, k): packed, NN_MR rows k-major
 *             (ars 1, acs NN_MR), or a row-major matrix read in place
 *   B:        NN_NR contiguous columns per k, at b + ci * plane + kh * wp + kw
 *             for k = (ci, kh, kw) < nc x kk x kk
 *   nn_ukr:   t (NN_MR x NN_NR) = (acc ? t : 0) + sum over k of A(i, k) B(k, j)
 *
 * A packed B panel is the case kk = 1, plane = NN_NR.  A convolution of
 * stride 1 needs no packed B at all: on its input padded and flattened
 * with rows wp apart, the NN_NR output pixels from q (counted with wp
 * pixels per output row, the last wp - wo of each discarded) see, through
 * tap (ci, kh, kw), the NN_NR contiguous values from q + ci * plane + kh *
 * wp + kw: the kernel reads them in place (implicit im2col).
 *
 * Rows of A past the matrix's edge are packed as zeros, and columns of B past
 * it hold whatever; the micro-kernel always computes a full tile and the
 * caller stores only the part that exists, applying its epilogue (bias,
 * folded batchnorm, activation) on the way, so that a fused output is
 * written once.
 *
 * The micro-kernels exist three times: AVX-512 and AVX2+FMA (intrinsics in
 * functions compiled for those targets by gcc and clang, whatever -march
 * the user gives) and portable C; nn_ukr_pick() chooses by cpuid at run
 * time.  -DNN_PORTABLE forces the C ones, -DNN_FORCE_ISA=0|1|2 one path
 * (tests).  Every path sums over k in the same ascending order, one
 * accumulator per element, so a result depends on the path (FMA rounds
 * once) but never on the thread count or the tile's place.
 *
 * The kernels of conv2d and dense (ir/ops/) emit the loops around these with
 * their shapes as constants: which operand is packed where and when, and how
 * the work is split among the threads.
 */

/* NN_MR, NN_NR and NN_DR are #defined by the prelude from ir/emit.h. */
#ifdef _OPENMP
#include <omp.h>
#endif

typedef void (*nn_ukr_fn)(real *restrict t, const real *restrict ap, long ars, long acs,
                          const real *restrict b, int nc, int kk, long plane, long wp, int acc);

/* Portable: plain C that any compiler vectorizes as well as it can. */
static NN_UNUSED void nn_ukr_c(real *restrict t, const real *restrict ap, long ars, long acs,
                               const real *restrict b, int nc, int kk, long plane, long wp,
                               int acc) {
  real s[NN_MR][NN_NR];
  for (int i = 0; i < NN_MR; i++)
    for (int j = 0; j < NN_NR; j++)
      s[i][j] = acc ? t[i * NN_NR + j] : 0;
  for (int ci = 0; ci < nc; ci++)
    for (int kh = 0; kh < kk; kh++)
      for (int kw = 0; kw < kk; kw++, ap += acs) {
        const real *restrict bk = b + ci * plane + kh * wp + kw;
        for (int i = 0; i < NN_MR; i++)
          for (int j = 0; j < NN_NR; j++)
            s[i][j] += ap[i * ars] * bk[j];
      }
  for (int i = 0; i < NN_MR; i++)
    for (int j = 0; j < NN_NR; j++)
      t[i * NN_NR + j] = s[i][j];
}

#if !defined(NN_PORTABLE) && (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define NN_X86 1
#include <immintrin.h>

/* Loops that compilers vectorize for the target they are given: with -O2
 * and no -march that is SSE2.  On x86 Linux gcc builds a function marked
 * NN_CLONES also for AVX-512 and AVX2 (target_clones: the loader picks one
 * by cpuid, as nn_ukr_pick does for the micro-kernels; the parallel regions
 * inside are cloned with it); clang 14 refuses target_clones beside
 * `unused`.  A build for AVX-512 already (-march=native here) needs none;
 * -DNN_NO_CLONES builds for the given target only, which compiles faster
 * (the sanitized test suite's models). */
#if defined(__linux__) && !defined(NN_FORCE_ISA) && !defined(NN_NO_CLONES) && !defined(__clang__) && \
    !defined(__AVX512F__)
#define NN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

/* One pass computes NN_MR rows x two vectors of columns (12 accumulators,
 * enough to hide the FMA latency; 15 of the 16 registers AVX2 has); a
 * tile takes NN_NR / (2 * lanes) passes.  V is the vector type, the other
 * arguments its load, store, broadcast, FMA, add and zero. */
#define NN_UKR_STEP(V, LD, SET1, FMA, W, BK, AR, AC)                              \
  {                                                                               \
    const V b0 = LD(BK), b1 = LD((BK) + (W));                                     \
    V ai = SET1(a[0]);                                                            \
    c00 = FMA(ai, b0, c00), c01 = FMA(ai, b1, c01);                               \
    ai = SET1(a[AR]);                                                             \
    c10 = FMA(ai, b0, c10), c11 = FMA(ai, b1, c11);                               \
    ai = SET1(a[2 * (AR)]);                                                       \
    c20 = FMA(ai, b0, c20), c21 = FMA(ai, b1, c21);                               \
    ai = SET1(a[3 * (AR)]);                                                       \
    c30 = FMA(ai, b0, c30), c31 = FMA(ai, b1, c31);                               \
    ai = SET1(a[4 * (AR)]);                                                       \
    c40 = FMA(ai, b0, c40), c41 = FMA(ai, b1, c41);                               \
    ai = SET1(a[5 * (AR)]);                                                       \
    c50 = FMA(ai, b0, c50), c51 = FMA(ai, b1, c51);                               \
    a += (AC);                                                                    \
  }

/* gcc leaves the k loops rolled: on Zen 3 (AVX2) that ran the micro-kernel
 * at 70-74 GFLOP/s on hot operands, clang's unrolled loops at 85-87. */
#if defined(__GNUC__) && !defined(__clang__)
#define NN_UKR_UNROLL _Pragma("GCC unroll 4")
#else
#define NN_UKR_UNROLL
#endif

/* The k loops, A's strides AR and AC: a plain loop for a packed B panel
 * (kk = 1), three nested ones for a convolution's taps. */
#define NN_UKR_LOOPS(V, LD, SET1, FMA, W, AR, AC, B, NC)                          \
  if (kk == 1) {                                                                  \
    const real *restrict bk = (B) + h;                                            \
    NN_UKR_UNROLL                                                                 \
    for (int ci = 0; ci < (NC); ci++, bk += plane)                                \
      NN_UKR_STEP(V, LD, SET1, FMA, W, bk, AR, AC)                                \
  } else {                                                                        \
    for (int ci = 0; ci < (NC); ci++)                                             \
      for (int kh = 0; kh < kk; kh++) {                                           \
        const real *restrict row = (B) + ci * plane + kh * wp + h;                \
        NN_UKR_UNROLL                                                             \
        for (int kw = 0; kw < kk; kw++)                                           \
          NN_UKR_STEP(V, LD, SET1, FMA, W, row + kw, AR, AC)                      \
      }                                                                           \
  }

/* OP on each of the twelve accumulators of a pass and its place in 6 rows
 * of NN_NR from r: OP(F, G, c, p) with F and G two of the vector type's
 * functions (below). */
#define NN_UKR_TILE(OP, F, G, r, W)                                               \
  do {                                                                            \
    OP(F, G, c00, (r)); OP(F, G, c01, (r) + (W));                                 \
    OP(F, G, c10, (r) + NN_NR); OP(F, G, c11, (r) + NN_NR + (W));                 \
    OP(F, G, c20, (r) + 2 * NN_NR); OP(F, G, c21, (r) + 2 * NN_NR + (W));         \
    OP(F, G, c30, (r) + 3 * NN_NR); OP(F, G, c31, (r) + 3 * NN_NR + (W));         \
    OP(F, G, c40, (r) + 4 * NN_NR); OP(F, G, c41, (r) + 4 * NN_NR + (W));         \
    OP(F, G, c50, (r) + 5 * NN_NR); OP(F, G, c51, (r) + 5 * NN_NR + (W));         \
  } while (0)
#define NN_UKR_ZERO(F, G, c, p) (c = F())
#define NN_UKR_LOAD(F, G, c, p) (c = F(p))
#define NN_UKR_STORE(F, G, c, p) F(p, c)
#define NN_UKR_ADD(F, G, c, p) (c = F(G(p), c))

/* Where a tile takes more than one pass (AVX2; f64), each pass reads all
 * of A's depth again, and A read in place down its columns (pixel rows: a
 * plane's pixels, k the channel, acs the plane) comes a cache line per k:
 * with B's half panel beside it that spilled from L1.  So that A's depth
 * goes in blocks of about NN_UKR_DEPTH k, both passes over a block before
 * the next, the partial sums kept in `part` between blocks: every sum is
 * still the same FMAs in the same order.  On Zen 3 (AVX2) ResNet-50's
 * batch-1 forward took 0.91x the time in blocks of 128, 0.86x in blocks of
 * 32 (fewer of A's lines, a plane apart, in one set of L1); dense layers
 * (A's rows contiguous) and packed A were 3-5% slower blocked, and are
 * not.  A packed A gets its strides (1 and NN_MR) as constants the
 * compiler folds into the addresses: with them in registers gcc -O3
 * -march=native ran the 3x3 convolutions 1.25x slower. */
#define NN_UKR_DEPTH 32
#define NN_UKR_PASS(V, LD, ST, SET1, FMA, ADD, ZERO, W)                          \
  real part[NN_MR * NN_NR];                                                       \
  const int cb = 2 * (W) < NN_NR && ars == 1 && acs > NN_MR &&                    \
                         NN_UKR_DEPTH / (kk * kk) > 1                             \
                     ? NN_UKR_DEPTH / (kk * kk) : nc;                             \
  for (int c0 = 0; c0 < nc; c0 += cb) {                                           \
    const int nb = nc - c0 < cb ? nc - c0 : cb;                                   \
    for (int h = 0; h < NN_NR; h += 2 * (W)) {                                    \
      V c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;               \
      if (c0 == 0)                                                                \
        NN_UKR_TILE(NN_UKR_ZERO, ZERO, ZERO, 0, W);                               \
      else                                                                        \
        NN_UKR_TILE(NN_UKR_LOAD, LD, LD, part + h, W);                            \
      const real *restrict a = ap + (long)c0 * kk * kk * acs;                     \
      const real *restrict bc = b + (long)c0 * plane;                             \
      if (ars == 1 && acs == NN_MR)                                               \
        NN_UKR_LOOPS(V, LD, SET1, FMA, W, 1, NN_MR, bc, nb)                       \
      else                                                                        \
        NN_UKR_LOOPS(V, LD, SET1, FMA, W, ars, acs, bc, nb)                       \
      if (c0 + nb < nc) {                                                         \
        NN_UKR_TILE(NN_UKR_STORE, ST, ST, part + h, W);                           \
        continue;                                                                 \
      }                                                                           \
      real *restrict r = t + h;                                                   \
      if (acc)                                                                    \
        NN_UKR_TILE(NN_UKR_ADD, ADD, LD, r, W);                                   \
      NN_UKR_TILE(NN_UKR_STORE, ST, ST, r, W);                                    \
    }                                                                             \
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
nn_ukr_avx512(real *restrict t, const real *restrict ap, long ars, long acs,
              const real *restrict b, int nc, int kk, long plane, long wp, int acc) {
  NN_UKR_512
}

__attribute__((target("avx2,fma"))) static NN_UNUSED void
nn_ukr_avx2(real *restrict t, const real *restrict ap, long ars, long acs,
            const real *restrict b, int nc, int kk, long plane, long wp, int acc) {
  NN_UKR_256
}
#endif
#ifndef NN_CLONES
#define NN_CLONES
#endif

/* The dot-product micro-kernel, for products whose operands both run along
 * k (conv2d's dw: rows of dy . rows of columns, k = the pixels of every
 * sample of a chunk), where packing one of them k-major would be a
 * transpose:
 *
 *   t[i * ldt + j] = (acc ? t[i * ldt + j] : 0)
 *                    + sum over samples s < nb, k < kc of a[s * sa + i * lda + k] b[j][s * sb + k]
 *
 * for i < mr (at most NN_DR), j < NN_DR, the rows b[j] given by pointer
 * (stored: j < nr).  Each of the NN_DR x NN_DR sums runs in vector lanes
 * over the samples' k, the lanes added in a fixed order, then the tails of
 * the samples in order; rows of a past mr repeat row 0 and are not
 * stored. */
typedef void (*nn_ukr_nt_fn)(real *restrict t, long ldt, int nb, long kc,
                             const real *restrict a, long lda, long sa, const real *const *b,
                             long sb, int mr, int nr, int acc);

static NN_UNUSED void nn_dot_store(real *restrict t, long ldt, int mr, int nr, int acc,
                                   real s[NN_DR][NN_DR]) {
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++)
      t[i * ldt + j] = (acc ? t[i * ldt + j] : 0) + s[i][j];
}

/* The tails: k from kv on, sample by sample, into s. */
static NN_UNUSED inline void nn_dot_tails(real s[NN_DR][NN_DR], int nb, long kv, long kc,
                                          const real *const a[NN_DR], long sa,
                                          const real *const *b, long sb) {
  for (int q = 0; q < nb; q++)
    for (long k = kv; k < kc; k++)
      for (int i = 0; i < NN_DR; i++)
        for (int j = 0; j < NN_DR; j++)
          s[i][j] += a[i][q * sa + k] * b[j][q * sb + k];
}

static NN_UNUSED void nn_ukr_nt_c(real *restrict t, long ldt, int nb, long kc,
                                  const real *restrict a, long lda, long sa,
                                  const real *const *b, long sb, int mr, int nr, int acc) {
  const real *ar[NN_DR];
  for (int i = 0; i < NN_DR; i++)
    ar[i] = a + (i < mr ? i : 0) * lda;
  const long kv = kc - kc % NN_VL;
  real s[NN_DR][NN_DR];
  for (int i = 0; i < NN_DR; i++)
    for (int j = 0; j < NN_DR; j++) {
      real l[NN_VL] = {0};
      for (int q = 0; q < nb; q++) {
        const real *restrict ai = ar[i] + q * sa, *restrict bj = b[j] + q * sb;
        for (long k = 0; k < kv; k += NN_VL)
          for (int v = 0; v < NN_VL; v++)
            l[v] += ai[k + v] * bj[k + v];
      }
      real sum = 0;
      for (int v = 0; v < NN_VL; v++)
        sum += l[v];
      s[i][j] = sum;
    }
  nn_dot_tails(s, nb, kv, kc, ar, sa, b, sb);
  nn_dot_store(t, ldt, mr, nr, acc, s);
}

#if defined(NN_X86)
/* The NN_DR x NN_DR sums, JP columns a pass: AVX-512 all four in one pass
 * (16 accumulators, 4 + 1 operands, of its 32 registers); AVX2 in two
 * passes of 8 accumulators, reading a twice: with all 16 in one pass,
 * 21 live vectors in its 16 registers, gcc spilled accumulators to the
 * stack, and the loads and stores of those in the loop held LeNet-5's
 * dw at 11-13 GFLOP/s on Zen 3.  A sum is the same sequence of FMAs
 * either way.  V is the vector type, W its lanes, the rest its load, FMA,
 * zero and horizontal sum. */
/* gcc 12 folds the loads of y into the FMAs that use them, each of the
 * four FMAs of a column loading it again: 20 loads for 16 FMAs, where 8 do.
 * An empty asm that takes the vector in a register keeps one load each. */
#define NN_IN_REG(x) __asm__("" : "+v"(x))
#define NN_DOT_COL(FMA, j, y)                                                         \
  c[0][j] = FMA(x0, y, c[0][j]), c[1][j] = FMA(x1, y, c[1][j]);                       \
  c[2][j] = FMA(x2, y, c[2][j]), c[3][j] = FMA(x3, y, c[3][j]);
#define NN_DOT_BODY(V, LD, FMA, ZERO, HSUM, W, JP)                                    \
  const real *ar[NN_DR];                                                              \
  for (int i = 0; i < NN_DR; i++)                                                     \
    ar[i] = a + (i < mr ? i : 0) * lda;                                               \
  const long kv = kc - kc % (W);                                                      \
  real s[NN_DR][NN_DR];                                                               \
  for (int j0 = 0; j0 < NN_DR; j0 += (JP)) {                                          \
    V c[NN_DR][JP];                                                                   \
    for (int i = 0; i < NN_DR; i++)                                                   \
      for (int j = 0; j < (JP); j++)                                                  \
        c[i][j] = ZERO();                                                             \
    for (int q = 0; q < nb; q++) {                                                    \
      const real *restrict a0 = ar[0] + q * sa, *restrict a1 = ar[1] + q * sa;        \
      const real *restrict a2 = ar[2] + q * sa, *restrict a3 = ar[3] + q * sa;        \
      const real *restrict bq[JP];                                                    \
      for (int j = 0; j < (JP); j++)                                                  \
        bq[j] = b[j0 + j] + q * sb;                                                   \
      for (long k = 0; k < kv; k += (W)) {                                            \
        V x0 = LD(a0 + k), x1 = LD(a1 + k), x2 = LD(a2 + k), x3 = LD(a3 + k);         \
        V y0 = LD(bq[0] + k), y1 = LD(bq[1] + k);                                     \
        NN_IN_REG(x0); NN_IN_REG(x1); NN_IN_REG(x2); NN_IN_REG(x3);                   \
        NN_IN_REG(y0); NN_IN_REG(y1);                                                 \
        NN_DOT_COL(FMA, 0, y0)                                                        \
        NN_DOT_COL(FMA, 1, y1)                                                        \
        if ((JP) == 4) {                                                              \
          V y2 = LD(bq[2 % (JP)] + k), y3 = LD(bq[3 % (JP)] + k);                     \
          NN_IN_REG(y2); NN_IN_REG(y3);                                               \
          NN_DOT_COL(FMA, 2 % (JP), y2)                                               \
          NN_DOT_COL(FMA, 3 % (JP), y3)                                               \
        }                                                                             \
      }                                                                               \
    }                                                                                 \
    for (int i = 0; i < NN_DR; i++)                                                   \
      for (int j = 0; j < (JP); j++)                                                  \
        s[i][j0 + j] = HSUM(c[i][j]);                                                 \
  }                                                                                   \
  nn_dot_tails(s, nb, kv, kc, ar, sa, b, sb);                                         \
  nn_dot_store(t, ldt, mr, nr, acc, s);

#if NN_REAL_F64
__attribute__((target("avx2,fma"))) static inline double nn_hsum256(__m256d v) {
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}
#define NN_DOT_512 NN_DOT_BODY(__m512d, _mm512_loadu_pd, _mm512_fmadd_pd, _mm512_setzero_pd, \
                               _mm512_reduce_add_pd, 8, 4)
#define NN_DOT_256 NN_DOT_BODY(__m256d, _mm256_loadu_pd, _mm256_fmadd_pd, _mm256_setzero_pd, \
                               nn_hsum256, 4, 2)
#else
__attribute__((target("avx2,fma"))) static inline float nn_hsum256(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}
#define NN_DOT_512 NN_DOT_BODY(__m512, _mm512_loadu_ps, _mm512_fmadd_ps, _mm512_setzero_ps, \
                               _mm512_reduce_add_ps, 16, 4)
#define NN_DOT_256 NN_DOT_BODY(__m256, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_setzero_ps, \
                               nn_hsum256, 8, 2)
#endif

__attribute__((target("avx512f"))) static NN_UNUSED void
nn_ukr_nt_avx512(real *restrict t, long ldt, int nb, long kc, const real *restrict a, long lda,
                 long sa, const real *const *b, long sb, int mr, int nr, int acc) {
  NN_DOT_512
}

__attribute__((target("avx2,fma"))) static NN_UNUSED void
nn_ukr_nt_avx2(real *restrict t, long ldt, int nb, long kc, const real *restrict a, long lda,
               long sa, const real *const *b, long sb, int mr, int nr, int acc) {
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
  } else if (mr == NN_MR) {   /* a constant count: with rs 1, not a call of memcpy per k */
    for (long k = 0; k < kc; k++)
      for (int i = 0; i < NN_MR; i++)
        ap[k * NN_MR + i] = a[i * rs + k * cs];
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

/* c (mr x nr, rows ldc apart) = the first rows and columns of the tile t.
 * A full row is a copy of constant size, inlined: gcc makes a copy loop to
 * a variable count a call of memcpy, per row here. */
static NN_UNUSED inline void nn_store_tile(real *restrict c, long ldc, const real *restrict t,
                                           int mr, int nr) {
  for (int i = 0; i < mr; i++) {
    real *restrict ci = c + i * ldc;
    const real *restrict ti = t + i * NN_NR;
    if (nr == NN_NR)
      for (int j = 0; j < NN_NR; j++)
        ci[j] = ti[j];
    else
      for (int j = 0; j < nr; j++)
        ci[j] = ti[j];
  }
}

/* Threads: forward() and gradients() open one parallel region of at most
 * `most` threads (--threads: the per-thread slots of scratch every workspace
 * holds), and a kernel indexes its slot by thread. */
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
