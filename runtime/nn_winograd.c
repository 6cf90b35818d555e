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

/* The 36 transformed values u[xi * su] of one 3x3 filter g (row-major; with
 * `flip` read rotated by 180 degrees, as the dx of a convolution needs). */
static NN_UNUSED void nn_wino_filter(real *restrict u, long su, const real *restrict g,
                                     int flip) {
  real f[3][3], t[6][3];
  for (int i = 0; i < 9; i++)
    f[i / 3][i % 3] = flip ? g[8 - i] : g[i];
  for (int j = 0; j < 3; j++) {   /* t = G f */
    const real f0 = f[0][j], f1 = f[1][j], f2 = f[2][j];
    t[0][j] = f0 / 4;
    t[1][j] = -(f0 + f1 + f2) / 6;
    t[2][j] = -(f0 - f1 + f2) / 6;
    t[3][j] = f0 / 24 + f1 / 12 + f2 / 6;
    t[4][j] = f0 / 24 - f1 / 12 + f2 / 6;
    t[5][j] = f2;
  }
  for (int i = 0; i < 6; i++) {   /* u = t G^T */
    const real t0 = t[i][0], t1 = t[i][1], t2 = t[i][2];
    real *restrict r = u + (long)i * 6 * su;
    r[0 * su] = t0 / 4;
    r[1 * su] = -(t0 + t1 + t2) / 6;
    r[2 * su] = -(t0 - t1 + t2) / 6;
    r[3 * su] = t0 / 24 + t1 / 12 + t2 / 6;
    r[4 * su] = t0 / 24 - t1 / 12 + t2 / 6;
    r[5 * su] = t2;
  }
}

/* B^T applied to six rows of NN_NR lanes, d[i * ds + j], into o[i * os + j]. */
static NN_UNUSED inline void nn_wino_bt(real *restrict o, long os, const real *restrict d,
                                        long ds) {
  for (int j = 0; j < NN_NR; j++) {
    const real d0 = d[j], d1 = d[ds + j], d2 = d[2 * ds + j], d3 = d[3 * ds + j],
               d4 = d[4 * ds + j], d5 = d[5 * ds + j];
    o[j] = 4 * d0 - 5 * d2 + d4;
    o[os + j] = -4 * (d1 + d2) + d3 + d4;
    o[2 * os + j] = 4 * (d1 - d2) - d3 + d4;
    o[3 * os + j] = 2 * (d3 - d1) - d2 + d4;
    o[4 * os + j] = 2 * (d1 - d3) - d2 + d4;
    o[5 * os + j] = 4 * d1 - 5 * d3 + d5;
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

/* Copies plane src (h x w) into pad (rows of wp) at row r0, column c0;
 * the rest of pad is left as it is (zero: see nn_wino_input). */
static NN_UNUSED void nn_wino_pad(real *restrict pad, long wp, const real *restrict src, int h,
                                  int w, int r0, int c0) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      pad[(y + r0) * wp + c0 + x] = src[(long)y * w + x];
}

/* For the tiles tile0 + j of a panel (tile = (sample * th + ty) * tw + tx;
 * lanes from nt on repeat tile0): the sample, and the first pixel of the
 * window in a plane of rows wp (row 4 ty, column 4 tx). */
static NN_UNUSED void nn_wino_tiles(long *at, long *sample, long wp, int th, int tw, long tile0,
                                    int nt) {
  const long per = (long)th * tw;
  for (int j = 0; j < NN_NR; j++) {
    const long tile = tile0 + (j < nt ? j : 0);
    const int r = (int)(tile % per);
    sample[j] = tile / per;
    at[j] = r / tw * 4 * wp + r % tw * 4;
  }
}

/* The k x k windows of a panel's tiles, d[(a * k + b) * NN_NR + j]: each
 * sample's plane (base + sample * xs, h x w) copied into pad at row and
 * column off (pad's other cells stay zero), then read at at[j]; lanes from
 * nt on are zero. */
static NN_UNUSED inline void nn_wino_gather(real *restrict d, int k, real *restrict pad, long wp,
                                            const real *restrict base, long xs, int h, int w,
                                            int off, const long *at, const long *sample, int nt) {
  for (int j = 0; j < NN_NR; j++) {
    if (j >= nt) {
      for (int e = 0; e < k * k; e++)
        d[e * NN_NR + j] = 0;
      continue;
    }
    if (j == 0 || sample[j] != sample[j - 1])
      nn_wino_pad(pad, wp, base + sample[j] * xs, h, w, off, off);
    const real *restrict src = pad + at[j];
    for (int a = 0; a < k; a++)
      for (int b = 0; b < k; b++)
        d[(a * k + b) * NN_NR + j] = src[a * wp + b];
  }
}

/* The input transform of one panel: for the tiles tile0 .. tile0 + nt - 1
 * of a batch (tile = (sample * th + ty) * tw + tx; its 6x6 window starts
 * at row 4 ty - p, column 4 tx - p, zeros outside the image), and every
 * channel c < nc of x (samples xs apart, planes h x w),
 * v[(xi * nc + c) * ld + j] = (B^T d B)[xi] of tile tile0 + j; lanes from
 * nt on are zero.  pad holds (4 th + 2) x (4 tw + 2) reals: each plane is
 * copied into it with p zeros before, so that every window lies inside. */
NN_CLONES static NN_UNUSED void nn_wino_input(real *restrict v, long ld, const real *restrict x, long xs,
                                    int nc, int h, int w, int p, int th, int tw, long tile0,
                                    int nt, real *restrict pad) {
  real d[36 * NN_NR], t[36 * NN_NR], u[36 * NN_NR];
  const long hp = 4L * th + 2, wp = 4L * tw + 2;
  long at[NN_NR], sample[NN_NR];
  nn_wino_tiles(at, sample, wp, th, tw, tile0, nt);
  for (long i = 0; i < hp * wp; i++)
    pad[i] = 0;
  for (int c = 0; c < nc; c++) {
    nn_wino_gather(d, 6, pad, wp, x + (long)c * h * w, xs, h, w, p, at, sample, nt);
    for (int b = 0; b < 6; b++)   /* t = B^T d, column by column */
      nn_wino_bt(t + b * NN_NR, 6 * NN_NR, d + b * NN_NR, 6 * NN_NR);
    for (int a = 0; a < 6; a++)   /* (t B)[a][b] = (B^T t^T)[b][a] */
      nn_wino_bt(u + a * 6 * NN_NR, NN_NR, t + a * 6 * NN_NR, NN_NR);
    for (int xi = 0; xi < 36; xi++)   /* (constant strides above: vectorized) */
      for (int j = 0; j < NN_NR; j++)
        v[((long)xi * nc + c) * ld + j] = u[xi * NN_NR + j];
  }
}

/* The output transform of one row of the micro-kernel's tiles: m[xi * NN_MR
 * * NN_NR + j] for the 36 positions xi and NN_NR tiles j, into y[e * NN_NR +
 * j], e = 4 row + column of the tile's 4x4 outputs. */
NN_CLONES static NN_UNUSED void nn_wino_output(real *restrict y, const real *restrict m) {
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
 * A applied to four rows of NN_NR lanes, d[i * ds + j], into six rows
 * o[i * os + j]. */
static NN_UNUSED inline void nn_wino_a(real *restrict o, long os, const real *restrict d,
                                       long ds) {
  for (int j = 0; j < NN_NR; j++) {
    const real d0 = d[j], d1 = d[ds + j], d2 = d[2 * ds + j], d3 = d[3 * ds + j];
    const real e = d0 + d2, f = d1 + d3, g = d0 + 4 * d2, h = 2 * d1 + 8 * d3;
    o[j] = d0;
    o[os + j] = e + f;
    o[2 * os + j] = e - f;
    o[3 * os + j] = g + h;
    o[4 * os + j] = g - h;
    o[5 * os + j] = d3;
  }
}

/* The dy transform of one panel, tile-major: for every channel o < no of dy
 * (samples ys apart, planes ho x wo; a tile's 4x4 pixels start at row 4 ty,
 * column 4 tx, zeros past the edge), w[(xi * ld + j) * no + o] = (A dY
 * A^T)[xi] of tile tile0 + j (so that each tile's channels are a row of
 * the micro-kernel's B); tiles from nt on are zero. */
NN_CLONES static NN_UNUSED void nn_wino_dy(real *restrict w, long ld, const real *restrict dy, long ys,
                                 int no, int ho, int wo, int th, int tw, long tile0, int nt,
                                 real *restrict pad) {
  real m[36 * NN_NR];
  real d[16 * NN_NR], t[24 * NN_NR];
  const long wp = 4L * tw;
  long at[NN_NR], sample[NN_NR];
  nn_wino_tiles(at, sample, wp, th, tw, tile0, nt);
  for (long i = 0; i < 4L * th * wp; i++)
    pad[i] = 0;
  for (int o = 0; o < no; o++) {
    nn_wino_gather(d, 4, pad, wp, dy + (long)o * ho * wo, ys, ho, wo, 0, at, sample, nt);
    for (int b = 0; b < 4; b++)   /* t = A dY, column by column: t[a * 4 + b] */
      nn_wino_a(t + b * NN_NR, 4 * NN_NR, d + b * NN_NR, 4 * NN_NR);
    for (int a = 0; a < 6; a++)   /* (t A^T)[a][b] = (A t^T)[b][a] */
      nn_wino_a(m + a * 6 * NN_NR, NN_NR, t + a * 4 * NN_NR, NN_NR);
    for (int xi = 0; xi < 36; xi++)
      for (int j = 0; j < NN_NR; j++)
        w[((long)xi * ld + j) * no + o] = m[xi * NN_NR + j];
  }
}

/* dw (3x3, row-major) = G^T dU G for the 36 values du[xi * su]. */
static NN_UNUSED void nn_wino_filter_grad(real *restrict dw, const real *restrict du, long su) {
  real t[3][6];
  for (int b = 0; b < 6; b++) {   /* t = G^T du */
    real u[6];
    for (int a = 0; a < 6; a++)
      u[a] = du[(a * 6 + b) * su];
    t[0][b] = u[0] / 4 - (u[1] + u[2]) / 6 + (u[3] + u[4]) / 24;
    t[1][b] = (u[2] - u[1]) / 6 + (u[3] - u[4]) / 12;
    t[2][b] = -(u[1] + u[2]) / 6 + (u[3] + u[4]) / 6 + u[5];
  }
  for (int i = 0; i < 3; i++) {   /* dw = t G */
    const real *u = t[i];
    const real r[3] = {u[0] / 4 - (u[1] + u[2]) / 6 + (u[3] + u[4]) / 24,
                       (u[2] - u[1]) / 6 + (u[3] - u[4]) / 12,
                       -(u[1] + u[2]) / 6 + (u[3] + u[4]) / 6 + u[5]};
    for (int k = 0; k < 3; k++)
      dw[i * 3 + k] = r[k];
  }
}
