/*
 * nn_im2col.c: the column matrix of a convolution, and its adjoint.
 *
 * For one input channel x (h, w) and a window (nn_window: a kernel KH x KW,
 * strides, dilations, zero padding pt above and pl left), the columns are
 * KH*KW rows of ho*wo: row (kh, kw) holds, for every output pixel (oh, ow),
 * the input pixel its window sees through that tap,
 *
 *   col[kh*KW + kw][oh*wo + ow] = x[oh*sh - pt + kh*dh][ow*sw - pl + kw*dw]  (0 outside),
 *
 * so a convolution is a matrix product of its filters with the columns of
 * all the channels of a group.  Padding is written as zeros here, once,
 * rather than tested in the product's inner loop.  nn_col2im sums columns
 * back into the channel (the gradient of im2col), tap by tap in a fixed
 * order, so it is deterministic.  nn_pack_cols writes the columns of a few
 * output pixels straight into a packed panel, nn_pad_planes the padded
 * input that stride-1 convolutions read in place.
 */

/* The window of a convolution: kernel kh x kw, stride sh x sw, dilation dh
 * x dw, and the zero padding above (pt) and left of (pl) the input; the
 * padding below and right is implied by the output size. */
typedef struct nn_window {
  int kh, kw, sh, sw, dh, dw, pt, pl;
} nn_window;

/* The output columns [lo, hi) whose tap at offset `off` (kw * dw - pl)
 * lands in [0, size): 0 <= ow*s + off < size. */
static NN_UNUSED void nn_tap_range(int off, int s, int size, int out, int *lo, int *hi) {
  *lo = off >= 0 ? 0 : (-off + s - 1) / s;
  *hi = off >= size ? 0 : (size - 1 - off) / s + 1;
  if (*hi > out)
    *hi = out;
  if (*lo > *hi)
    *lo = *hi;
}

static NN_UNUSED void nn_im2col(real *restrict col, const real *restrict x, int h, int w,
                                const nn_window *q, int ho, int wo) {
  for (int kh = 0; kh < q->kh; kh++)
    for (int kw = 0; kw < q->kw; kw++) {
      real *restrict row = col + (long)(kh * q->kw + kw) * ho * wo;
      const int off = kw * q->dw - q->pl;
      int lo, hi;
      nn_tap_range(off, q->sw, w, wo, &lo, &hi);
      for (int oh = 0; oh < ho; oh++) {
        real *restrict dst = row + (long)oh * wo;
        const int ih = oh * q->sh - q->pt + kh * q->dh;
        if (ih < 0 || ih >= h) {
          for (int ow = 0; ow < wo; ow++)
            dst[ow] = 0;
          continue;
        }
        const long base = (long)ih * w + off;   /* may be < 0: ow >= lo is not */
        for (int ow = 0; ow < lo; ow++)
          dst[ow] = 0;
        for (int ow = lo; ow < hi; ow++)
          dst[ow] = x[base + (long)ow * q->sw];
        for (int ow = hi; ow < wo; ow++)
          dst[ow] = 0;
      }
    }
}

/* x (h, w) = the sum of col's taps over the pixels they came from. */
static NN_UNUSED void nn_col2im(real *restrict x, const real *restrict col, int h, int w,
                                const nn_window *q, int ho, int wo) {
  for (long i = 0; i < (long)h * w; i++)
    x[i] = 0;
  for (int kh = 0; kh < q->kh; kh++)
    for (int kw = 0; kw < q->kw; kw++) {
      const real *restrict row = col + (long)(kh * q->kw + kw) * ho * wo;
      const int off = kw * q->dw - q->pl;
      int lo, hi;
      nn_tap_range(off, q->sw, w, wo, &lo, &hi);
      for (int oh = 0; oh < ho; oh++) {
        const int ih = oh * q->sh - q->pt + kh * q->dh;
        if (ih < 0 || ih >= h)
          continue;
        const real *restrict src = row + (long)oh * wo;
        const long base = (long)ih * w + off;
        for (int ow = lo; ow < hi; ow++)
          x[base + (long)ow * q->sw] += src[ow];
      }
    }
}

/* One tap's row of the column matrix, for the output pixels [p0, p0 + np):
 * dst[i * ds] = col[(kh, kw)][p0 + i] of channel x (h, w).  The pixels are
 * cut into runs along output rows; within a run the tap reads a strided
 * (for stride 1, contiguous) stretch of one input row, zeros outside. */
static NN_UNUSED void nn_tap_pixels(real *restrict dst, long ds, const real *restrict x, int h,
                                    int w, int kh, int kw, const nn_window *q, int wo, long p0,
                                    long np) {
  const int s = q->sw, off = kw * q->dw - q->pl;
  long i = 0;
  while (i < np) {
    const int oh = (int)((p0 + i) / wo), ow0 = (int)((p0 + i) % wo);
    const int len = wo - ow0 < np - i ? wo - ow0 : (int)(np - i);
    real *restrict d = dst + i * ds;
    const int ih = oh * q->sh - q->pt + kh * q->dh;
    int lo = 0, hi = 0;
    if (ih >= 0 && ih < h) {
      nn_tap_range(off, s, w, wo, &lo, &hi);
      lo = lo < ow0 ? 0 : lo - ow0 > len ? len : lo - ow0;
      hi = hi < ow0 ? 0 : hi - ow0 > len ? len : hi - ow0;
      if (lo > hi)
        lo = hi;
    }
    const long base = (long)ih * w + (long)ow0 * s + off;   /* x[base + j * s] */
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
    i += len;
  }
}

/* A panel of `width` output pixels of the columns of a convolution's
 * forward product: those of the pixels [p0, p0 + np), np <= width, for the
 * c channels of x (c, h, w): bp[r * width + j] = col[r][p0 + j], r = (ci,
 * kh, kw); zeros for j >= np.  This is im2col straight into the packed
 * layout, the matrix never stored whole: width NN_NR for the B panel of y =
 * w . col, NN_MR for the A panel of pixel rows, y^T = col^T . w^T. */
static NN_UNUSED void nn_pack_cols(real *restrict bp, int width, const real *restrict x, int c,
                                   int h, int w, const nn_window *q, int wo, long p0, int np) {
  for (int ci = 0; ci < c; ci++)
    for (int kh = 0; kh < q->kh; kh++)
      for (int kw = 0; kw < q->kw; kw++) {
        real *restrict d = bp + ((long)(ci * q->kh + kh) * q->kw + kw) * width;
        nn_tap_pixels(d, 1, x + (long)ci * h * w, h, w, kh, kw, q, wo, p0, np);
        for (int j = np; j < width; j++)
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
