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
 * order, so it is deterministic.  nn_im2row writes the same values
 * transposed, row[oh*wo + ow][kh*k + kw] with rows `ld` apart, for products
 * that run along the taps.
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

static NN_UNUSED void nn_im2row(real *restrict row, long ld, const real *restrict x, int h,
                                int w, int k, int s, int p, int ho, int wo) {
  for (int kh = 0; kh < k; kh++)
    for (int kw = 0; kw < k; kw++) {
      real *restrict tap = row + kh * k + kw;
      int lo, hi;
      nn_tap_range(kw - p, s, w, wo, &lo, &hi);
      for (int oh = 0; oh < ho; oh++) {
        real *restrict dst = tap + (long)oh * wo * ld;
        const int ih = oh * s - p + kh;
        if (ih < 0 || ih >= h) {
          for (int ow = 0; ow < wo; ow++)
            dst[ow * ld] = 0;
          continue;
        }
        const long base = (long)ih * w + kw - p;
        for (int ow = 0; ow < lo; ow++)
          dst[ow * ld] = 0;
        for (int ow = lo; ow < hi; ow++)
          dst[ow * ld] = x[base + (long)ow * s];
        for (int ow = hi; ow < wo; ow++)
          dst[ow * ld] = 0;
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
