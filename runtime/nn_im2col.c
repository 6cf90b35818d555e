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
 * input that stride-1 convolutions read in place.  All of them copy along
 * output rows: a tap's stretch of a row is one strided copy between zeros.
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

/* A hint to fetch the cache line at p; nothing where the compiler has none. */
#if defined(__GNUC__) || defined(__clang__)
#define NN_PREFETCH(p) __builtin_prefetch(p)
#else
#define NN_PREFETCH(p) ((void)(p))
#endif

/* dst[j] = src[j] for j < n, in copies of fixed sizes: gcc turns a plain
 * loop into a call of memcpy, which on runs of 10 to 28 values (LeNet-5's
 * rows) cost 6.5% of the training step in the call itself.  Runs of 8 or
 * more end with an 8-value copy that overlaps the one before. */
static NN_UNUSED inline void nn_copy_run(real *restrict dst, const real *restrict src, int n) {
  if (n >= 8) {
    int j = 0;
    for (; j + 8 <= n; j += 8)
      for (int v = 0; v < 8; v++)
        dst[j + v] = src[j + v];
    if (j < n)
      for (int v = 0; v < 8; v++)
        dst[n - 8 + v] = src[n - 8 + v];
    return;
  }
  int j = 0;
  if (n & 4) {
    for (int v = 0; v < 4; v++)
      dst[v] = src[v];
    j = 4;
  }
  if (n & 2) {
    for (int v = 0; v < 2; v++)
      dst[j + v] = src[j + v];
    j += 2;
  }
  if (n & 1)
    dst[j] = src[j];
}

/* dst[j] = src[j * s] for j < n.  Strides 1 and 2 are loops of a constant
 * stride, which compilers vectorize (stride 2 as two loads and a permute);
 * a stride known only at run time they copy one value at a time.  Stride
 * 2 in blocks of 8 like nn_copy_run, the last overlapping the one before:
 * a plain loop left up to 7 values (15-value runs of resnet20's stride-2
 * layers: 7) to scalar code. */
static NN_UNUSED void nn_copy_strided(real *restrict dst, const real *restrict src, int s, int n) {
  if (s == 1)
    nn_copy_run(dst, src, n);
  else if (s == 2 && n >= 8) {
    int j = 0;
    for (; j + 8 <= n; j += 8)
      for (int v = 0; v < 8; v++)
        dst[j + v] = src[2 * (j + v)];
    if (j < n)
      for (int v = 0; v < 8; v++)
        dst[n - 8 + v] = src[2 * (n - 8 + v)];
  } else if (s == 2)
    for (int j = 0; j < n; j++)
      dst[j] = src[2 * j];
  else
    for (int j = 0; j < n; j++)
      dst[j] = src[(long)j * s];
}

/* len pixels of one tap along an output row: dst[j] = x[base + j * s] for
 * lo <= j < hi (lo <= hi), zeros before and after (the padding).  base may
 * be outside x; base + lo * s is not when lo < hi. */
static NN_UNUSED void nn_tap_row(real *restrict dst, const real *restrict x, long base, int s,
                                 int lo, int hi, int len) {
  for (int j = 0; j < lo; j++)
    dst[j] = 0;
  if (lo < hi)
    nn_copy_strided(dst + lo, x + base + (long)lo * s, s, hi - lo);
  for (int j = hi; j < len; j++)
    dst[j] = 0;
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
        const int ih = oh * q->sh - q->pt + kh * q->dh;
        const int in = ih >= 0 && ih < h;   /* else the whole row is padding */
        nn_tap_row(row + (long)oh * wo, x, (long)ih * w + off, q->sw, in ? lo : 0, in ? hi : 0,
                   wo);
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

/* nn_pack_cols for at most NN_NR pixels [p0, p0 + np): their runs along
 * output rows are found once (not once per tap), the columns each kw
 * reads once per block of NN_KB kws (not per channel and kh); then each
 * tap of each channel is, per run, one strided copy between zeros.
 * Channel by channel, so the few input rows a panel reads are reused from
 * L1 by all its taps, the next channel's rows fetched meanwhile. */
enum { NN_KB = 8 };
static NN_UNUSED void nn_pack_piece(real *restrict bp, int width, const real *restrict x, int c,
                                    int h, int w, const nn_window *q, int wo, long p0, int np) {
  int nrun = 0, rj[NN_NR], rlen[NN_NR], row[NN_NR], rih[NN_NR];
  for (int i = 0; i < np; nrun++) {   /* run r: columns [rj, rj + rlen) of output row oh */
    const long oh = (p0 + i) / wo;
    const int ow = (int)((p0 + i) % wo), len = wo - ow < np - i ? wo - ow : np - i;
    rj[nrun] = i, rlen[nrun] = len, row[nrun] = ow, rih[nrun] = (int)oh * q->sh - q->pt;
    i += len;
  }
  const int s = q->sw;
  int ih0 = rih[0], ih1 = rih[nrun - 1] + (q->kh - 1) * q->dh + 1;   /* rows read */
  ih0 = ih0 < 0 ? 0 : ih0, ih1 = ih1 > h ? h : ih1;
  for (int kw0 = 0; kw0 < q->kw; kw0 += NN_KB) {
    const int nkw = q->kw - kw0 < NN_KB ? q->kw - kw0 : NN_KB;
    int tlo[NN_KB], thi[NN_KB];   /* the output columns kw0 + k reads inside the row */
    for (int k = 0; k < nkw; k++)
      nn_tap_range((kw0 + k) * q->dw - q->pl, s, w, wo, &tlo[k], &thi[k]);
    for (int ci = 0; ci < c; ci++) {
      const real *restrict xc = x + (long)ci * h * w;
      if (ci + 1 < c && ih0 < ih1)
        for (long k = 0; k < (long)(ih1 - ih0) * w; k += 64 / (long)sizeof(real))
          NN_PREFETCH(xc + (long)h * w + (long)ih0 * w + k);
      for (int kh = 0; kh < q->kh; kh++) {
        real *restrict d = bp + ((long)(ci * q->kh + kh) * q->kw + kw0) * width;
        for (int r = 0; r < nrun; r++) {
          const int ih = rih[r] + kh * q->dh, len = rlen[r], ow = row[r];
          const long base = (long)ih * w + (long)ow * s + (long)kw0 * q->dw - q->pl;
          for (int k = 0; k < nkw; k++) {
            int lo = 0, hi = 0;   /* of the run; none if the row is padding */
            if (ih >= 0 && ih < h) {
              lo = tlo[k] < ow ? 0 : tlo[k] - ow > len ? len : tlo[k] - ow;
              hi = thi[k] < ow ? 0 : thi[k] - ow > len ? len : thi[k] - ow;
            }
            nn_tap_row(d + (long)k * width + rj[r], xc, base + (long)k * q->dw, s, lo, hi, len);
          }
        }
      }
    }
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
  for (int j = 0; j < np; j += NN_NR)
    nn_pack_piece(bp + j, width, x, c, h, w, q, wo, p0 + j, np - j < NN_NR ? np - j : NN_NR);
  if (np < width)
    for (long r = 0; r < (long)c * q->kh * q->kw; r++)
      for (int j = np; j < width; j++)
        bp[r * width + j] = 0;
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
