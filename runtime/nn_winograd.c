/*
 * nn_winograd.c: the transforms of Winograd's minimal filtering F(4x4, 3x3)
 * (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
 * 2016), for 3x3 convolutions of stride 1.
 *
 * A 4x4 tile of output is  Y = A^T [ (G g G^T) . (B^T d B) ] A  for the
 * 3x3 filter g and the 6x6 input tile d it sees (. elementwise), with
 * interpolation points 0, 1, -1, 2, -2 and infinity:
 *
 *   B^T = | 4  0 -5  0  1  0 |   G = | 1/4     0     0 |   A^T = | 1  1  1  1  1  0 |
 *         | 0 -4 -4  1  1  0 |       |-1/6  -1/6  -1/6 |         | 0  1 -1  2 -2  0 |
 *         | 0  4 -4 -1  1  0 |       |-1/6   1/6  -1/6 |         | 0  1  1  4  4  0 |
 *         | 0 -2 -1  2  1  0 |       | 1/24  1/12  1/6 |         | 0  1 -1  8 -8  1 |
 *         | 0  2 -1 -2  1  0 |       | 1/24 -1/12  1/6 |
 *         | 0  4  0 -5  0  1 |       |   0     0     1 |
 *
 * Summed over the input channels, the elementwise products become 36
 * independent matrix products, one per position xi of the 6x6 tile:
 * M_xi (O, tiles) = U_xi (O, C) . V_xi (C, tiles), run on the micro-kernel
 * of nn_gemm.c with U packed as its A panels and V laid out as its packed
 * B panels (NN_NR tiles per panel).  That is 36 multiply-adds per 16
 * outputs and channel instead of 144: 4x fewer.  The price is rounding: the
 * transforms' constants (up to 8 and 1/24) grow the error of f32 results by
 * about an order of magnitude over a direct sum (measured in
 * docs/performance.md), which is why nncc lets a user turn it off.
 *
 * The tiles of a panel run in the vector lanes: the transforms below are
 * loops over NN_NR lanes that compilers vectorize.  The order of every sum
 * is fixed by the code, so a result does not depend on the thread count or
 * on which panel a tile falls in.
 */

/* The transforms of a panel are loops over NN_NR lanes that compilers
 * vectorize for the target they are given; NN_CLONES (nn_gemm.c) builds
 * them for AVX-512 and AVX2 too. */

/* The 36 transformed values of each of n <= NN_NR 3x3 filters g[k]
 * (row-major; with `flip` read rotated by 180 degrees, as the dx of a
 * convolution needs) into u[xi * su + k], zeros for a null g[k].  The
 * filters run in the lanes, so that each of the 36 rows of U (a plane
 * apart) gets n values at once: a filter at a time, one value per row,
 * the stores missed L1 and L2 (planes 256 KB apart on ResNet-50's layer3
 * fall in one set of both) and took 15% of its batch-1 forward. */
NN_CLONES static NN_UNUSED void nn_wino_filters(real *restrict u, long su,
                                                const real *const *g, int n, int flip) {
  real f[9][NN_NR], t[6][3][NN_NR], r[36][NN_NR];
  for (int k = 0; k < NN_NR; k++)
    for (int i = 0; i < 9; i++)
      f[i][k] = k < n && g[k] ? g[k][flip ? 8 - i : i] : 0;
  for (int j = 0; j < 3; j++)
    for (int k = 0; k < NN_NR; k++) {   /* t = G f */
      const real f0 = f[j][k], f1 = f[3 + j][k], f2 = f[6 + j][k];
      t[0][j][k] = f0 / 4;
      t[1][j][k] = -(f0 + f1 + f2) / 6;
      t[2][j][k] = -(f0 - f1 + f2) / 6;
      t[3][j][k] = f0 / 24 + f1 / 12 + f2 / 6;
      t[4][j][k] = f0 / 24 - f1 / 12 + f2 / 6;
      t[5][j][k] = f2;
    }
  for (int i = 0; i < 6; i++)
    for (int k = 0; k < NN_NR; k++) {   /* u = t G^T */
      const real t0 = t[i][0][k], t1 = t[i][1][k], t2 = t[i][2][k];
      r[i * 6 + 0][k] = t0 / 4;
      r[i * 6 + 1][k] = -(t0 + t1 + t2) / 6;
      r[i * 6 + 2][k] = -(t0 - t1 + t2) / 6;
      r[i * 6 + 3][k] = t0 / 24 + t1 / 12 + t2 / 6;
      r[i * 6 + 4][k] = t0 / 24 - t1 / 12 + t2 / 6;
      r[i * 6 + 5][k] = t2;
    }
  for (int xi = 0; xi < 36; xi++)
    for (int k = 0; k < n; k++)
      u[xi * su + k] = g[k] ? r[xi][k] : 0;
}

/* B^T applied to the six values d0 .. d5 of one column, into o[i * os].
 * The lane pass and the row pass of nn_wino_input share it, so that every
 * value comes from the same expression (contracted the same way). */
static NN_UNUSED inline void nn_wino_bt1(real *restrict o, long os, real d0, real d1, real d2,
                                         real d3, real d4, real d5) {
  o[0] = 4 * d0 - 5 * d2 + d4;
  o[os] = -4 * (d1 + d2) + d3 + d4;
  o[2 * os] = 4 * (d1 - d2) - d3 + d4;
  o[3 * os] = 2 * (d3 - d1) - d2 + d4;
  o[4 * os] = 2 * (d1 - d3) - d2 + d4;
  o[5 * os] = 4 * d1 - 5 * d3 + d5;
}

/* B^T applied to six rows of NN_NR lanes, d[i * ds + j], into o[i * os + j]. */
static NN_UNUSED inline void nn_wino_bt(real *restrict o, long os, const real *restrict d,
                                        long ds) {
  for (int j = 0; j < NN_NR; j++) {
    const real d0 = d[j], d1 = d[ds + j], d2 = d[2 * ds + j], d3 = d[3 * ds + j],
               d4 = d[4 * ds + j], d5 = d[5 * ds + j];
    nn_wino_bt1(o + j, os, d0, d1, d2, d3, d4, d5);
  }
}

/* A^T applied to six rows of NN_NR lanes, m[i * ms + j], into o[i * os + j]
 * (four rows). */
static NN_UNUSED inline void nn_wino_at(real *restrict o, long os, const real *restrict m,
                                        long ms) {
  for (int j = 0; j < NN_NR; j++) {
    const real m0 = m[j], m1 = m[ms + j], m2 = m[2 * ms + j], m3 = m[3 * ms + j],
               m4 = m[4 * ms + j], m5 = m[5 * ms + j];
    const real a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
    o[j] = m0 + a + c;
    o[os + j] = b + 2 * d;
    o[2 * os + j] = a + 4 * c;
    o[3 * os + j] = b + 8 * d + m5;
  }
}

/* A run of a panel's lanes that share a row of tiles: lanes j0 .. j0 + len
 * - 1 are the tiles tx0 .. tx0 + len - 1 of one row of one sample. */
typedef struct nn_wino_run {
  int tx0, len, j0;
} nn_wino_run;

/* The runs of the tiles tile0 .. tile0 + nt - 1 (tile = (sample * th + ty)
 * * tw + tx), in lane order, and where each reads a plane (h x w, samples
 * xs apart): k rows from row 4 ty - p and, from column 4 tx0 - p, the 4 len
 * columns of its tiles (the first 4 of each window).  Those in the plane
 * are columns lo[r] .. lo[r] + cnt[r] - 1 of the run; roff[r][a] is the
 * offset of the first of them in row a, -1 for a row above or below the
 * plane (zeros).  Returns the number of runs. */
static NN_UNUSED int nn_wino_plan(nn_wino_run *run, long (*roff)[6], int *lo, int *cnt, int th,
                                  int tw, long tile0, int nt, int k, int p, int h, int w, long xs) {
  int nr = 0;
  for (int j = 0; j < nt; nr++) {
    const long tile = tile0 + j, row = tile / tw;
    const int tx = (int)(tile % tw), len = tw - tx < nt - j ? tw - tx : nt - j;
    const long x0 = 4L * tx - p, y0 = 4L * (row % th) - p;
    const long x1 = x0 + 4 * len < w ? x0 + 4 * len : w;
    run[nr] = (nn_wino_run){tx, len, j};
    lo[nr] = x0 < 0 ? (int)-x0 : 0;
    cnt[nr] = (int)(x1 - x0) - lo[nr];
    for (int a = 0; a < k; a++)
      roff[nr][a] = y0 + a >= 0 && y0 + a < h ? row / th * xs + (y0 + a) * w + x0 + lo[nr] : -1;
    j += len;
  }
  return nr;
}

/* The k rows of a run in the channel at `plane`: roff as nn_wino_plan's,
 * `zero` for those outside it. */
static NN_UNUSED void nn_wino_rows(const real **rows, const long *roff, int k, const real *plane,
                                   const real *zero) {
  for (int a = 0; a < k; a++)
    rows[a] = roff[a] >= 0 ? plane + roff[a] : zero;
}

/* Asks for the k rows of a run in the next channel's plane (roff as
 * nn_wino_rows', n values each) while this one is transformed.  Planes are
 * 1 KB to 12 KB apart and a panel reads a few rows of each: the hardware
 * prefetchers, which follow streams inside a page, did not get ahead of
 * the jumps, and the loads of the input (from L3 in a network) took half
 * of nn_wino_input's time (resnet20's training step 1.011x faster for
 * nn_wino_cols_avx512 alone, 1.047-1.058x with this; one more prefetch,
 * of each row's last value, mostly a line already asked for, cost 4-5%). */
static NN_UNUSED inline void nn_wino_prefetch(const long *roff, int k, const real *next, int n) {
  for (int a = 0; a < k; a++)
    if (roff[a] >= 0)
      for (int q = 0; q < n; q += 64 / (int)sizeof(real))
        NN_PREFETCH(next + roff[a] + q);
}

/* Columns 4 j + b of a row s of t, b < 4, into q[b * NN_NR + j]: the four
 * phases in one loop, which compilers vectorize as one interleaved load
 * (4 vectors in, 4 permutes) rather than a value at a time. */
static NN_UNUSED inline void nn_wino_phases(real *restrict q, const real *restrict s) {
  for (int j = 0; j < NN_NR; j++) {
    q[j] = s[4 * j];
    q[NN_NR + j] = s[4 * j + 1];
    q[2 * NN_NR + j] = s[4 * j + 2];
    q[3 * NN_NR + j] = s[4 * j + 3];
  }
}

/* The same for b < 6: the windows of nn_wino_input overlap, columns 4 and
 * 5 of lane j being 0 and 1 of lane j + 1 (and, for the last lane, the two
 * columns of s past 4 NN_NR).  Taken as phases 0 and 1 of s + 4, read from
 * s, its phases 2 and 3 going to q[6 NN_NR ..], scratch the caller's next
 * row overwrites (q has room for 8 NN_NR).  A loop over columns 4 j + 4
 * and 4 j + 5 alone, a group with gaps, compiled to scalar code (a load
 * and a store a value); a copy from q a lane on loads a vector one value
 * off the stores just made to q, which no store forwards, and stalled
 * until they reached L1. */
static NN_UNUSED inline void nn_wino_phases6(real *restrict q, const real *restrict s) {
  nn_wino_phases(q + 4 * NN_NR, s + 4);
  nn_wino_phases(q, s);
}

/* The row pass of nn_wino_input over columns k0 .. k0 + n - 1 of a run,
 * n = 16, 8 or 4: a whole number of vectors where a loop over a run's 4
 * len - 1 or 4 len columns (p = 1 or 0) would leave up to 15 of them to
 * scalar code.  Kept a loop (not unrolled first): gcc contracts the
 * unrolled copies into FMAs differently (fusing the other product of 4 d0
 * - 5 d2), which would change the results. */
#if defined(__GNUC__)
#define NN_WINO_NO_UNROLL _Pragma("GCC unroll 1")
#else
#define NN_WINO_NO_UNROLL
#endif
#define NN_WINO_BT_COLS(k0, n)                                                                  \
  do {                                                                                          \
    NN_WINO_NO_UNROLL                                                                           \
    for (int q = (k0); q < (k0) + (n); q++)                                                     \
      nn_wino_bt1(o + q, NN_WINO_TS, r0[q], r1[q], r2[q], r3[q], r4[q], r5[q]);                 \
  } while (0)

/* Rows of t: 4 columns per lane, and 16 past the last lane (the vertical
 * pass of nn_wino_input writes a run's two last columns there, the
 * horizontal ones read a vector), so that rows start 64 bytes apart. */
#define NN_WINO_TS (4 * NN_NR + 16)

/* The horizontal pass of nn_wino_input for one channel: o[(6 i + b) *
 * os + j] = B^T applied to columns 4 j .. 4 j + 5 of row i of t (t[i *
 * NN_WINO_TS + 4 j + b]), except that the lanes j in `ends` (the last tile
 * of a run) take their columns 4 and 5 from e[i * NN_NR + j] and e[(6 +
 * i) * NN_NR + j]. */
typedef void (*nn_wino_cols_fn)(real *restrict o, long os, const real *restrict t,
                                const real *restrict e, unsigned long ends);

NN_CLONES static NN_UNUSED void nn_wino_cols_c(real *restrict o, long os, const real *restrict t,
                                               const real *restrict e, unsigned long ends) {
  real d[38 * NN_NR];   /* d[i][b][j] = t[i][4 j + b]; room for nn_wino_phases6 */
  for (int i = 0; i < 6; i++)
    nn_wino_phases6(d + i * 6 * NN_NR, t + i * NN_WINO_TS);
  for (int j = 0; j < NN_NR; j++)
    if (ends >> j & 1)
      for (int i = 0; i < 6; i++) {
        d[(6 * i + 4) * NN_NR + j] = e[i * NN_NR + j];
        d[(6 * i + 5) * NN_NR + j] = e[(6 + i) * NN_NR + j];
      }
  for (int i = 0; i < 6; i++)   /* (t B)[i][b] = (B^T t^T)[b][i] */
    nn_wino_bt(o + i * 6 * os, os, d + i * 6 * NN_NR, NN_NR);
}

#if defined(NN_X86) && !NN_REAL_F64
/* The same in AVX-512 registers, 16 lanes at a time: the columns of the
 * 16 tiles' windows are five vectors of t (64 columns, and the 4 past
 * them), taken apart by phase with two-source permutes (columns 4 and 5
 * of lane j being 0 and 1 of lane j + 1, those of the last lane the first
 * two past), and B^T applied in registers.  In C the phases went through
 * memory, 38 vector stores and loads per channel that the compilers did
 * not keep in registers (nn_wino_input 1.3x faster). */
__attribute__((target("avx512f"))) static NN_UNUSED void
nn_wino_cols_avx512(real *restrict o, long os, const real *restrict t, const real *restrict e,
                    unsigned long ends) {
  const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i up4 = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
  const __m512i up5 = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17);
  const __m512 two = _mm512_set1_ps(2), four = _mm512_set1_ps(4), five = _mm512_set1_ps(5);
  for (int i = 0; i < 6; i++)
    for (int h = 0; h < NN_NR; h += 16) {
      const real *s = t + i * NN_WINO_TS + 4 * h;
      const __m512 a0 = _mm512_loadu_ps(s), a1 = _mm512_loadu_ps(s + 16),
                   a2 = _mm512_loadu_ps(s + 32), a3 = _mm512_loadu_ps(s + 48),
                   a4 = _mm512_loadu_ps(s + 64);
      const __m512 e01 = _mm512_permutex2var_ps(a0, ev, a1), o01 = _mm512_permutex2var_ps(a0, od, a1);
      const __m512 e23 = _mm512_permutex2var_ps(a2, ev, a3), o23 = _mm512_permutex2var_ps(a2, od, a3);
      const __m512 d0 = _mm512_permutex2var_ps(e01, ev, e23), d2 = _mm512_permutex2var_ps(e01, od, e23);
      const __m512 d1 = _mm512_permutex2var_ps(o01, ev, o23), d3 = _mm512_permutex2var_ps(o01, od, o23);
      const __mmask16 m = (__mmask16)(ends >> h);
      const real *ei = e + i * NN_NR + h;
      const __m512 d4 = _mm512_mask_loadu_ps(_mm512_permutex2var_ps(d0, up4, a4), m, ei);
      const __m512 d5 = _mm512_mask_loadu_ps(_mm512_permutex2var_ps(d1, up5, a4), m, ei + 6 * NN_NR);
      const __m512 p = _mm512_fnmadd_ps(four, d2, d4), q = _mm512_fnmadd_ps(four, d1, d3);
      const __m512 u = _mm512_sub_ps(d4, d2), w = _mm512_sub_ps(d3, d1);
      real *r = o + 6 * i * os + h;
      _mm512_storeu_ps(r, _mm512_fmadd_ps(four, d0, _mm512_fnmadd_ps(five, d2, d4)));
      _mm512_storeu_ps(r + os, _mm512_add_ps(p, q));
      _mm512_storeu_ps(r + 2 * os, _mm512_sub_ps(p, q));
      _mm512_storeu_ps(r + 3 * os, _mm512_fmadd_ps(two, w, u));
      _mm512_storeu_ps(r + 4 * os, _mm512_fnmadd_ps(two, w, u));
      _mm512_storeu_ps(r + 5 * os, _mm512_fmadd_ps(four, d1, _mm512_fnmadd_ps(five, d3, d5)));
    }
}
#endif

/* Whether the transforms take their AVX-512 paths: f32 on x86, chosen as
 * nn_ukr_pick (nn_gemm.c) chooses (cpuid, or NN_FORCE_ISA). */
static NN_UNUSED inline int nn_wino_avx512(void) {
#if defined(NN_X86) && !NN_REAL_F64 && defined(NN_FORCE_ISA)
  return NN_FORCE_ISA == 2;
#elif defined(NN_X86) && !NN_REAL_F64
  return __builtin_cpu_supports("avx512f");
#else
  return 0;
#endif
}

static NN_UNUSED nn_wino_cols_fn nn_wino_cols_pick(void) {
#if defined(NN_X86) && !NN_REAL_F64
  if (nn_wino_avx512())
    return nn_wino_cols_avx512;
#endif
  return nn_wino_cols_c;
}

/* The input transform of one panel: for the tiles tile0 .. tile0 + nt - 1
 * of a batch (tile = (sample * th + ty) * tw + tx; its 6x6 window starts
 * at row 4 ty - p, column 4 tx - p, zeros outside the image), and every
 * channel c < nc of x (samples xs apart, planes h x w),
 * v[xi * vx + c * vc + j] = (B^T d B)[xi] of tile tile0 + j; lanes from nt
 * on are zero.  pad: w reals of scratch (the zeros above and below).
 *
 * Consecutive tiles of a row share their windows' rows, and their windows
 * start 4 columns apart: the vertical pass t = B^T d runs along the rows
 * of the plane, a run of tiles at a time (4 len columns, contiguous, into
 * t[i][4 j0 ..]), and the horizontal pass t B across the NN_NR lanes
 * (nn_wino_cols_fn), on t's columns taken apart by phase (column b of lane
 * j's window is t[i][4 j + b]; for b = 4, 5 that is the next lane's 0, 1,
 * except at the end of a run: the vertical pass goes on over its two last
 * columns where they are in the plane, and they are moved from t to e).
 * Every value is the same expression of the same window values as on the
 * 6x6 window alone (on a given path: the AVX-512 horizontal pass
 * contracts into FMAs where the C one may not). */
NN_CLONES static NN_UNUSED void nn_wino_input(real *restrict v, long vx, long vc,
                                              const real *restrict x, long xs, int nc, int h,
                                              int w, int p, int th, int tw, long tile0, int nt,
                                              real *restrict pad) {
  const nn_wino_cols_fn cols = nn_wino_cols_pick();
  _Alignas(64) real t[6 * NN_WINO_TS], e[12 * NN_NR];
  nn_wino_run run[NN_NR];
  long roff[NN_NR][6];
  int lo[NN_NR], cnt[NN_NR], ne[NN_NR];
  unsigned long ends = 0;
  const int nr = nn_wino_plan(run, roff, lo, cnt, th, tw, tile0, nt, 6, p, h, w, xs);
  for (int r = 0; r < nr; r++) {   /* the run's last two columns in the plane: 0, 1 or 2 */
    const long x2 = 4L * (run[r].tx0 + run[r].len) - p;
    ne[r] = (x2 < w) + (x2 + 1 < w);
    ends |= 1UL << (run[r].j0 + run[r].len - 1);
  }
  for (int i = 0; i < w; i++)
    pad[i] = 0;
  for (int i = 0; i < 6 * NN_WINO_TS; i++)   /* columns outside the image and past nt */
    t[i] = 0;
  for (int i = 0; i < 12 * NN_NR; i++)   /* last columns outside the image */
    e[i] = 0;
  for (int c = 0; c < nc; c++) {
    const real *restrict xc = x + (long)c * h * w;
    const real *rows[6];
    for (int r = 0; r < nr; r++) {   /* t = B^T d along the rows */
      nn_wino_rows(rows, roff[r], 6, xc, pad);
      const real *r0 = rows[0], *r1 = rows[1], *r2 = rows[2], *r3 = rows[3], *r4 = rows[4],
                 *r5 = rows[5];
      real *restrict o = t + 4 * run[r].j0 + lo[r];
      const int n = cnt[r] + ne[r];
      if (c + 1 < nc)
        nn_wino_prefetch(roff[r], 6, xc + (long)h * w, n);
      /* whole vectors, the last over columns already done (the same values
       * again) */
      if (n >= 16) {
        int k = 0;
        for (; k + 16 <= n; k += 16)
          NN_WINO_BT_COLS(k, 16);
        if (k < n)
          NN_WINO_BT_COLS(n - 16, 16);
      } else if (n >= 8) {
        NN_WINO_BT_COLS(0, 8);
        NN_WINO_BT_COLS(n - 8, 8);
      } else if (n >= 4) {
        NN_WINO_BT_COLS(0, 4);
        NN_WINO_BT_COLS(n - 4, 4);
      } else {   /* (a plane narrower than 4) */
        for (int k = 0; k < n; k++)
          nn_wino_bt1(o + k, NN_WINO_TS, r0[k], r1[k], r2[k], r3[k], r4[k], r5[k]);
      }
      /* the last two columns, from where the next lane's first two go (a
       * later run's, or zeros) */
      const int j = run[r].j0 + run[r].len - 1;
      for (int b = 0; b < ne[r]; b++)
        for (int i = 0; i < 6; i++) {
          real *const q = o + cnt[r] + b + i * NN_WINO_TS;
          e[(6 * b + i) * NN_NR + j] = *q;
          *q = 0;
        }
    }
    cols(v + c * vc, vx, t, e, ends);
  }
}

/* The output transform of one row of the micro-kernel's tiles: m[xi * NN_MR
 * * NN_NR + j] for the 36 positions xi and NN_NR tiles j, into y[e * NN_NR +
 * j], e = 4 row + column of the tile's 4x4 outputs. */
#if defined(NN_X86) && !NN_REAL_F64
/* It in AVX-512 registers, 16 lanes at a time: the 24 vectors of t = A^T
 * m stay in registers (of 32): 36 loads and 16 stores, where the C loops
 * below store t and load it again (r20.s1's forward 1.04x, vgg_small's
 * inference pair 1.03). */
__attribute__((target("avx512f"))) static NN_UNUSED void
nn_wino_output_avx512(real *restrict y, const real *restrict m) {
  const long ms = NN_MR * NN_NR;
  const __m512 two = _mm512_set1_ps(2), four = _mm512_set1_ps(4), eight = _mm512_set1_ps(8);
  for (int h = 0; h < NN_NR; h += 16) {
    __m512 t[4][6];
    for (int b = 0; b < 6; b++) {   /* t = A^T m, column by column */
      const __m512 m0 = _mm512_loadu_ps(m + b * ms + h), m1 = _mm512_loadu_ps(m + (6 + b) * ms + h),
                   m2 = _mm512_loadu_ps(m + (12 + b) * ms + h),
                   m3 = _mm512_loadu_ps(m + (18 + b) * ms + h),
                   m4 = _mm512_loadu_ps(m + (24 + b) * ms + h),
                   m5 = _mm512_loadu_ps(m + (30 + b) * ms + h);
      const __m512 a = _mm512_add_ps(m1, m2), c = _mm512_sub_ps(m1, m2);
      const __m512 d = _mm512_add_ps(m3, m4), e = _mm512_sub_ps(m3, m4);
      t[0][b] = _mm512_add_ps(_mm512_add_ps(m0, a), d);
      t[1][b] = _mm512_fmadd_ps(two, e, c);
      t[2][b] = _mm512_fmadd_ps(four, d, a);
      t[3][b] = _mm512_add_ps(_mm512_fmadd_ps(eight, e, c), m5);
    }
    for (int r = 0; r < 4; r++) {   /* y[r][.] = A^T applied to row r of t */
      const __m512 a = _mm512_add_ps(t[r][1], t[r][2]), c = _mm512_sub_ps(t[r][1], t[r][2]);
      const __m512 d = _mm512_add_ps(t[r][3], t[r][4]), e = _mm512_sub_ps(t[r][3], t[r][4]);
      real *o = y + r * 4 * NN_NR + h;
      _mm512_storeu_ps(o, _mm512_add_ps(_mm512_add_ps(t[r][0], a), d));
      _mm512_storeu_ps(o + NN_NR, _mm512_fmadd_ps(two, e, c));
      _mm512_storeu_ps(o + 2 * NN_NR, _mm512_fmadd_ps(four, d, a));
      _mm512_storeu_ps(o + 3 * NN_NR, _mm512_add_ps(_mm512_fmadd_ps(eight, e, c), t[r][5]));
    }
  }
}
#endif

NN_CLONES static NN_UNUSED void nn_wino_output(real *restrict y, const real *restrict m) {
#if defined(NN_X86) && !NN_REAL_F64
  if (nn_wino_avx512()) {
    nn_wino_output_avx512(y, m);
    return;
  }
#endif
  const long ms = NN_MR * NN_NR;
  real t[24 * NN_NR];
  for (int b = 0; b < 6; b++)   /* t = A^T m, column by column: t[a * 6 + b] */
    nn_wino_at(t + b * NN_NR, 6 * NN_NR, m + b * ms, 6 * ms);
  for (int a = 0; a < 4; a++)   /* y[a][.] = A^T applied to row a of t */
    nn_wino_at(y + a * 4 * NN_NR, NN_NR, t + a * 6 * NN_NR, NN_NR);
}

/* For dw.  The gradient of the products M of a tile is A dY A^T (6x6) for
 * the gradient dY (4x4) of its outputs; that of the transformed filter U is
 * the sum over tiles of (A dY A^T) . V, and that of the filter G^T dU G.
 *
 *   A = | 1  0  0  0 |
 *       | 1  1  1  1 |
 *       | 1 -1  1 -1 |
 *       | 1  2  4  8 |
 *       | 1 -2  4 -8 |
 *       | 0  0  0  1 |
 *
 * A applied to the four values d0 .. d3 of one column, into o[i * os] (six
 * rows); shared by the row and lane passes of nn_wino_dy. */
static NN_UNUSED inline void nn_wino_a1(real *restrict o, long os, real d0, real d1, real d2,
                                        real d3) {
  const real e = d0 + d2, f = d1 + d3, g = d0 + 4 * d2, h = 2 * d1 + 8 * d3;
  o[0] = d0;
  o[os] = e + f;
  o[2 * os] = e - f;
  o[3 * os] = g + h;
  o[4 * os] = g - h;
  o[5 * os] = d3;
}

/* A applied to four rows of NN_NR lanes, d[i * ds + j], into six rows
 * o[i * os + j]. */
static NN_UNUSED inline void nn_wino_a(real *restrict o, long os, const real *restrict d,
                                       long ds) {
  for (int j = 0; j < NN_NR; j++)
    nn_wino_a1(o + j, os, d[j], d[ds + j], d[2 * ds + j], d[3 * ds + j]);
}

/* Channels of dy that nn_wino_dy transforms before it stores them: 32
 * bytes of each tile's row of w at a time rather than one value. */
#define NN_WINO_OB ((int)(32 / sizeof(real)))

/* The block of NN_WINO_OB x NN_WINO_OB values s[k * ss + r] into d[r * ds +
 * k]: nn_wino_dy's channels of a tile, one vector per channel in, one per
 * tile out.  Compilers build the loop of the portable version below a value
 * at a time (a load and an insert each: half of nn_wino_dy's time on Zen
 * 3); gcc 12 and clang have __builtin_shufflevector, in which this is the
 * usual transpose by unpacks, shuffles and 128-bit permutes. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define NN_WINO_TRANSPOSE 1
typedef real nn_wino_vec __attribute__((vector_size(32)));
#define NN_SHUF __builtin_shufflevector
static NN_UNUSED inline void nn_wino_transpose(real *restrict d, long ds, const real *restrict s,
                                               long ss) {
  nn_wino_vec r[NN_WINO_OB], t[NN_WINO_OB];
  for (int k = 0; k < NN_WINO_OB; k++)
    memcpy(&r[k], s + k * ss, sizeof r[k]);
#if NN_REAL_F64
  for (int k = 0; k < 4; k += 2) {   /* pairs interleaved */
    t[k] = NN_SHUF(r[k], r[k + 1], 0, 4, 2, 6);
    t[k + 1] = NN_SHUF(r[k], r[k + 1], 1, 5, 3, 7);
  }
  for (int h = 0; h < 2; h++) {   /* halves joined */
    r[h] = NN_SHUF(t[h], t[h + 2], 0, 1, 4, 5);
    r[h + 2] = NN_SHUF(t[h], t[h + 2], 2, 3, 6, 7);
  }
#else
  for (int k = 0; k < 8; k += 2) {   /* pairs interleaved */
    t[k] = NN_SHUF(r[k], r[k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[k + 1] = NN_SHUF(r[k], r[k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int k = 0; k < 8; k += 4)   /* quads: r[k + q] = rows k .. k + 3 at column q, q + 4 */
    for (int h = 0; h < 2; h++) {
      r[k + 2 * h] = NN_SHUF(t[k + h], t[k + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      r[k + 2 * h + 1] = NN_SHUF(t[k + h], t[k + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int q = 0; q < 4; q++) {   /* halves joined */
    t[q] = NN_SHUF(r[q], r[q + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    t[q + 4] = NN_SHUF(r[q], r[q + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
  for (int q = 0; q < 8; q++)
    r[q] = t[q];
#endif
  for (int q = 0; q < NN_WINO_OB; q++)
    memcpy(d + q * ds, &r[q], sizeof r[q]);
}
#undef NN_SHUF
#endif

/* The dy transform of one channel of a panel (plane: its ho x wo values of
 * the first sample; a tile's 4x4 pixels start at row 4 ty, column 4 tx,
 * zeros past the edge), as nn_wino_plan planned the panel's runs:
 * o[xi * os + j] = (A dY A^T)[xi] of its tile j.  As in nn_wino_input, t =
 * A dY runs along the plane's rows, a run of tiles at a time (4 len
 * columns, no overlap), and t A^T across the lanes.  t (6 NN_WINO_TS
 * reals, zero past the runs' columns) and d (24 NN_NR): scratch.  next:
 * the plane of the channel after, or null. */
static NN_UNUSED inline void nn_wino_dy1(real *restrict o, long os, const real *plane,
                                         const real *next, const nn_wino_run *run,
                                         long (*roff)[6], const int *cnt, int nr,
                                         const real *pad, real *restrict t, real *restrict d) {
  const real *rows[4];
  for (int r = 0; r < nr; r++) {   /* t = A dY along the rows */
    if (next)
      nn_wino_prefetch(roff[r], 4, next, cnt[r]);
    nn_wino_rows(rows, roff[r], 4, plane, pad);
    const real *r0 = rows[0], *r1 = rows[1], *r2 = rows[2], *r3 = rows[3];
    real *restrict to = t + 4 * run[r].j0;
    for (int x = 0; x < cnt[r]; x++)
      nn_wino_a1(to + x, NN_WINO_TS, r0[x], r1[x], r2[x], r3[x]);
  }
  for (int a = 0; a < 6; a++)   /* d[a][b][j] = t[a][4 j + b] */
    nn_wino_phases(d + a * 4 * NN_NR, t + a * NN_WINO_TS);
  for (int a = 0; a < 6; a++)   /* (t A^T)[a][b] = (A t^T)[b][a] */
    nn_wino_a(o + a * 6 * os, os, d + a * 4 * NN_NR, NN_NR);
}

/* The opening of both: the runs of the panel's tiles, the zero row pad
 * (wo reals) and t zero (the columns past the edge and past nt stay so). */
static NN_UNUSED inline int nn_wino_dy_open(nn_wino_run *run, long (*roff)[6], int *cnt,
                                            real *restrict t, real *restrict pad, int th, int tw,
                                            long tile0, int nt, int ho, int wo, long ys) {
  int lo[NN_NR];
  const int nr = nn_wino_plan(run, roff, lo, cnt, th, tw, tile0, nt, 4, 0, ho, wo, ys);
  for (int i = 0; i < wo; i++)
    pad[i] = 0;
  for (int i = 0; i < 6 * NN_WINO_TS; i++)
    t[i] = 0;
  return nr;
}

/* The dy transform of one panel, tile-major: for every channel o < no of dy
 * (samples ys apart, planes ho x wo), w[(xi * ld + j) * no + o] = (A dY
 * A^T)[xi] of tile tile0 + j (so that each tile's channels are a row of
 * the micro-kernel's B); tiles from nt on are zero.  pad: wo reals of
 * scratch. */
NN_CLONES static NN_UNUSED void nn_wino_dy(real *restrict w, long ld, const real *restrict dy, long ys,
                                 int no, int ho, int wo, int th, int tw, long tile0, int nt,
                                 real *restrict pad) {
  real t[6 * NN_WINO_TS], d[24 * NN_NR], m[NN_WINO_OB][36 * NN_NR];
  nn_wino_run run[NN_NR];
  long roff[NN_NR][6];
  int cnt[NN_NR];
  const int nr = nn_wino_dy_open(run, roff, cnt, t, pad, th, tw, tile0, nt, ho, wo, ys);
  for (int o0 = 0; o0 < no; o0 += NN_WINO_OB) {
    const int ob = no - o0 < NN_WINO_OB ? no - o0 : NN_WINO_OB;
    for (int k = 0; k < ob; k++)
      nn_wino_dy1(m[k], NN_NR, dy + (long)(o0 + k) * ho * wo,
                  o0 + k + 1 < no ? dy + (long)(o0 + k + 1) * ho * wo : NULL, run, roff, cnt, nr,
                  pad, t, d);
#ifdef NN_WINO_TRANSPOSE
    if (ob == NN_WINO_OB) {
      for (int xi = 0; xi < 36; xi++)
        for (int j = 0; j < NN_NR; j += NN_WINO_OB)
          nn_wino_transpose(w + ((long)xi * ld + j) * no + o0, no, &m[0][xi * NN_NR + j],
                            36 * NN_NR);
      continue;
    }
#endif
    for (int xi = 0; xi < 36; xi++)
      for (int j = 0; j < NN_NR; j++)
        for (int k = 0; k < ob; k++)
          w[((long)xi * ld + j) * no + o0 + k] = m[k][xi * NN_NR + j];
  }
}

/* The same transform a channel at a time, for dot products along the
 * tiles: w[xi * wx + o * wc + j] = (A dY A^T)[xi] of tile tile0 + j,
 * written where it goes (no transpose); tiles from nt on are zero. */
NN_CLONES static NN_UNUSED void nn_wino_dy_rows(real *restrict w, long wx, long wc,
                                                const real *restrict dy, long ys, int no, int ho,
                                                int wo, int th, int tw, long tile0, int nt,
                                                real *restrict pad) {
  real t[6 * NN_WINO_TS], d[24 * NN_NR];
  nn_wino_run run[NN_NR];
  long roff[NN_NR][6];
  int cnt[NN_NR];
  const int nr = nn_wino_dy_open(run, roff, cnt, t, pad, th, tw, tile0, nt, ho, wo, ys);
  for (int o = 0; o < no; o++)
    nn_wino_dy1(w + o * wc, wx, dy + (long)o * ho * wo,
                o + 1 < no ? dy + (long)(o + 1) * ho * wo : NULL, run, roff, cnt, nr, pad, t, d);
}

/* dw[k] (3x3, row-major) = G^T dU G for the 36 values du[xi * su + k] of
 * each of the NN_NR lanes k whose dw[k] is not null: like nn_wino_filters,
 * the lanes read together, a run of NN_NR from each row of dU. */
NN_CLONES static NN_UNUSED void nn_wino_filter_grads(real *const *dw, const real *restrict du,
                                                     long su) {
  real u[36][NN_NR], t[3][6][NN_NR], r[9][NN_NR];
  for (int xi = 0; xi < 36; xi++)
    for (int k = 0; k < NN_NR; k++)
      u[xi][k] = du[xi * su + k];
  for (int b = 0; b < 6; b++)
    for (int k = 0; k < NN_NR; k++) {   /* t = G^T du */
      const real u0 = u[b][k], u1 = u[6 + b][k], u2 = u[12 + b][k], u3 = u[18 + b][k],
                 u4 = u[24 + b][k], u5 = u[30 + b][k];
      t[0][b][k] = u0 / 4 - (u1 + u2) / 6 + (u3 + u4) / 24;
      t[1][b][k] = (u2 - u1) / 6 + (u3 - u4) / 12;
      t[2][b][k] = -(u1 + u2) / 6 + (u3 + u4) / 6 + u5;
    }
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < NN_NR; k++) {   /* dw = t G */
      const real u0 = t[i][0][k], u1 = t[i][1][k], u2 = t[i][2][k], u3 = t[i][3][k],
                 u4 = t[i][4][k], u5 = t[i][5][k];
      r[i * 3 + 0][k] = u0 / 4 - (u1 + u2) / 6 + (u3 + u4) / 24;
      r[i * 3 + 1][k] = (u2 - u1) / 6 + (u3 - u4) / 12;
      r[i * 3 + 2][k] = -(u1 + u2) / 6 + (u3 + u4) / 6 + u5;
    }
  for (int k = 0; k < NN_NR; k++)
    if (dw[k])
      for (int i = 0; i < 9; i++)
        dw[k][i] = r[i][k];
}
