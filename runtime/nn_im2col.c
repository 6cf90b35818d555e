/*
 * nn_im2col.c: the column matrix of a convolution, and its adjoint.
 *
 * For one input channel x (h, w), a kernel k x k, stride s and zero padding
 * p, the columns are k*k rows of ho*wo: row (kh, kw) holds, for every output
 * pixel (oh, ow), the input pixel its window sees through that tap,
 *
 *   col[kh*k + kw][oh*wo + ow] = x[oh*s - p + kh][ow*s - p + kw]  (0 outside),
 *
 * so a convolution is a matrix product of its filters with the columns of
 * all the channels of a group.  Padding is written as zeros here, once,
 * rather than tested in the product's inner loop.  nn_col2im sums columns
 * back into the channel (the gradient of im2col), tap by tap in a fixed
 * order, so it is deterministic.  nn_pack_cols writes the columns of a few
 * output pixels straight into a packed panel, nn_pad_planes the padded
 * input that stride-1 convolutions read in place.
 */

/* The output columns [lo, hi) whose tap at offset `off` (kw - p) lands in
 * [0, size): 0 <= ow*s + off < size. */
static NN_UNUSED void nn_tap_range(int off, int s, int size, int out, int *lo, int *hi) {
  *lo = off >= 0 ? 0 : (-off + s - 1) / s;
  *hi = off >= size ? 0 : (size - 1 - off) / s + 1;
  if (*hi > out)
    *hi = out;
  if (*lo > *hi)
    *lo = *hi;
}

static NN_UNUSED void nn_im2col(real *restrict col, const real *restrict x, int h, int w,
                                int k, int s, int p, int ho, int wo) {
  for (int kh = 0; kh < k; kh++)
    for (int kw = 0; kw < k; kw++) {
      real *restrict row = col + (long)(kh * k + kw) * ho * wo;
      int lo, hi;
      nn_tap_range(kw - p, s, w, wo, &lo, &hi);
      for (int oh = 0; oh < ho; oh++) {
        real *restrict dst = row + (long)oh * wo;
        const int ih = oh * s - p + kh;
        if (ih < 0 || ih >= h) {
          for (int ow = 0; ow < wo; ow++)
            dst[ow] = 0;
          continue;
        }
        const long base = (long)ih * w + kw - p;   /* may be < 0: ow >= lo is not */
        for (int ow = 0; ow < lo; ow++)
          dst[ow] = 0;
        for (int ow = lo; ow < hi; ow++)
          dst[ow] = x[base + (long)ow * s];
        for (int ow = hi; ow < wo; ow++)
          dst[ow] = 0;
      }
    }
}

/* x (h, w) = the sum of col's taps over the pixels they came from. */
static NN_UNUSED void nn_col2im(real *restrict x, const real *restrict col, int h, int w,
                                int k, int s, int p, int ho, int wo) {
  for (long i = 0; i < (long)h * w; i++)
    x[i] = 0;
  for (int kh = 0; kh < k; kh++)
    for (int kw = 0; kw < k; kw++) {
      const real *restrict row = col + (long)(kh * k + kw) * ho * wo;
      int lo, hi;
      nn_tap_range(kw - p, s, w, wo, &lo, &hi);
      for (int oh = 0; oh < ho; oh++) {
        const int ih = oh * s - p + kh;
        if (ih < 0 || ih >= h)
          continue;
        const real *restrict src = row + (long)oh * wo;
        const long base = (long)ih * w + kw - p;
        for (int ow = lo; ow < hi; ow++)
          x[base + (long)ow * s] += src[ow];
      }
    }
}

/* One tap's row of the column matrix, for the output pixels [p0, p0 + np):
 * dst[q * ds] = col[(kh, kw)][p0 + q] of channel x (h, w).  The pixels are
 * cut into runs along output rows; within a run the tap reads a strided
 * (for stride 1, contiguous) stretch of one input row, zeros outside. */
static NN_UNUSED void nn_tap_pixels(real *restrict dst, long ds, const real *restrict x, int h,
                                    int w, int kh, int kw, int s, int p, int wo, long p0,
                                    long np) {
  long q = 0;
  while (q < np) {
    const int oh = (int)((p0 + q) / wo), ow0 = (int)((p0 + q) % wo);
    const int len = wo - ow0 < np - q ? wo - ow0 : (int)(np - q);
    real *restrict d = dst + q * ds;
    const int ih = oh * s - p + kh;
    int lo = 0, hi = 0;
    if (ih >= 0 && ih < h) {
      nn_tap_range(kw - p, s, w, wo, &lo, &hi);
      lo = lo < ow0 ? 0 : lo - ow0 > len ? len : lo - ow0;
      hi = hi < ow0 ? 0 : hi - ow0 > len ? len : hi - ow0;
      if (lo > hi)
        lo = hi;
    }
    const long base = (long)ih * w + (long)ow0 * s + kw - p;   /* x[base + j * s] */
    for (int j = 0; j < lo; j++)
      d[j * ds] = 0;
    if (s == 1 && ds == 1) {
      if (hi > lo)
        memcpy(d + lo, x + base + lo, (size_t)(hi - lo) * sizeof(real));
    } else {
      for (int j = lo; j < hi; j++)
        d[j * ds] = x[base + (long)j * s];
    }
    for (int j = hi; j < len; j++)
      d[j * ds] = 0;
    q += len;
  }
}

/* The B panel of a convolution's forward product y = w . col: the columns
 * of the output pixels [p0, p0 + np), np <= NN_NR, for the c channels of x
 * (c, h, w): bp[r * NN_NR + j] = col[r][p0 + j], r = (ci, kh, kw); zeros for
 * j >= np.  This is im2col straight into the packed layout: the column
 * matrix is never stored whole. */
static NN_UNUSED void nn_pack_cols(real *restrict bp, const real *restrict x, int c, int h,
                                   int w, int k, int s, int p, int wo, long p0, int np) {
  for (int ci = 0; ci < c; ci++)
    for (int kh = 0; kh < k; kh++)
      for (int kw = 0; kw < k; kw++) {
        real *restrict d = bp + ((long)(ci * k + kh) * k + kw) * NN_NR;
        nn_tap_pixels(d, 1, x + (long)ci * h * w, h, w, kh, kw, s, p, wo, p0, np);
        for (int j = np; j < NN_NR; j++)
          d[j] = 0;
      }
}

/* The flattened, padded planes a stride-1 convolution reads in place (see
 * nn_gemm.c): channel ci of x (c, h, w) goes to dst + ci * plane with its
 * row i at row pt + i, column pl, rows wp apart; everything else of the c
 * planes, and `tail` values after them, is zero. */
static NN_UNUSED void nn_pad_planes(real *restrict dst, const real *restrict x, int c, int h,
                                    int w, int pt, int pl, int wp, long plane, long tail) {
  memset(dst, 0, (size_t)(c * plane + tail) * sizeof(real));
  for (int ci = 0; ci < c; ci++)
    for (int i = 0; i < h; i++)
      memcpy(dst + ci * plane + (long)(pt + i) * wp + pl, x + ((long)ci * h + i) * w,
             (size_t)w * sizeof(real));
}
