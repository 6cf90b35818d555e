/*
 * nn_gemm.c: register tiles of matrix products, the inner loops of conv2d
 * and dense.
 *
 * A kernel walks its output in tiles and calls one of these for each; the
 * tile comes back in a small array that the compiler keeps in vector
 * registers, and the kernel stores it with whatever epilogue it fuses (bias,
 * folded batchnorm, activation), so a fused output is written once.
 *
 *   nn_tile_nn: t(i, j) = sum_p A(i, p) B(p, j), B's rows contiguous: A's
 *               element is broadcast and a row of B is one or two vectors.
 *   nn_tile_nt: t(i, j) = sum_p A(i, p) B(j, p), both along p contiguous:
 *               NN_VL partial sums per element, one per vector lane.
 *
 * Plain C that gcc and clang vectorize at -O3, keeping a tile's sums in
 * vector registers (one AVX-512 core here, f32: 60-185 GFLOP/s for nn at
 * 6 x 32, 25-100 for nt; with 4 x 32 the 8 accumulators could not hide the
 * FMA latency and nn ran at 40-60).  Summation order is
 * fixed by the code alone (p ascending; for nt lane by lane, lanes added
 * in order, then the tail), never by the tile position or the thread, so
 * results do not depend on the thread count.
 */

/* The tile sizes NN_MR x NN_NR (nn) and NN_TM x NN_TN (nt), and NN_VL, are
 * #defined by the prelude from codegen/codegen.h, where the kernels'
 * emitters read them too. */

/* A full nn tile: A(i, p) = a[i * ars + p * acs] for i < mr (rows from mr
 * on repeat row 0 and are not meant to be stored), B(p, j) = b[p * ldb + j]
 * for j < NN_NR. */
static NN_UNUSED inline void nn_tile_nn(real t[NN_MR][NN_NR], int mr, long k,
                                        const real *restrict a, long ars, long acs,
                                        const real *restrict b, long ldb) {
  real s[NN_MR][NN_NR] = {{0}};
  long row[NN_MR];
  for (int i = 0; i < NN_MR; i++)
    row[i] = (i < mr ? i : 0) * ars;
  for (long p = 0; p < k; p++) {
    const real *restrict bp = b + p * ldb;
    for (int i = 0; i < NN_MR; i++) {
      const real ai = a[row[i] + p * acs];
      for (int j = 0; j < NN_NR; j++)
        s[i][j] += ai * bp[j];
    }
  }
  for (int i = 0; i < NN_MR; i++)
    for (int j = 0; j < NN_NR; j++)
      t[i][j] = s[i][j];
}

/* The last, narrower nn tile of a row of tiles: only j < nr < NN_NR. */
static NN_UNUSED void nn_tile_nn_edge(real t[NN_MR][NN_NR], int mr, int nr, long k,
                                      const real *restrict a, long ars, long acs,
                                      const real *restrict b, long ldb) {
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++)
      t[i][j] = 0;
  for (long p = 0; p < k; p++) {
    const real *restrict bp = b + p * ldb;
    for (int i = 0; i < mr; i++) {
      const real ai = a[i * ars + p * acs];
      for (int j = 0; j < nr; j++)
        t[i][j] += ai * bp[j];
    }
  }
}

/* An nt tile: A(i, p) = a[i * lda + p] for i < mr, B(j, p) = b[j * ldb + p]
 * for j < nr; rows and columns past mr and nr repeat the first and are not
 * meant to be stored. */
static NN_UNUSED inline void nn_tile_nt(real t[NN_TM][NN_TN], int mr, int nr, long k,
                                        const real *restrict a, long lda,
                                        const real *restrict b, long ldb) {
  long ra[NN_TM], rb[NN_TN];
  for (int i = 0; i < NN_TM; i++)
    ra[i] = (i < mr ? i : 0) * lda;
  for (int j = 0; j < NN_TN; j++)
    rb[j] = (j < nr ? j : 0) * ldb;
  real s[NN_TM][NN_TN][NN_VL] = {{{0}}};
  const long kv = k - k % NN_VL;
  for (long p = 0; p < kv; p += NN_VL)
    for (int i = 0; i < NN_TM; i++)
      for (int j = 0; j < NN_TN; j++)
        for (int l = 0; l < NN_VL; l++)
          s[i][j][l] += a[ra[i] + p + l] * b[rb[j] + p + l];
  for (int i = 0; i < NN_TM; i++)
    for (int j = 0; j < NN_TN; j++) {
      real sum = 0;
      for (int l = 0; l < NN_VL; l++)
        sum += s[i][j][l];
      for (long q = kv; q < k; q++)
        sum += a[ra[i] + q] * b[rb[j] + q];
      t[i][j] = sum;
    }
}
