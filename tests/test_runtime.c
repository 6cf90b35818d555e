/*
 * test_runtime.c: the runtime C that every generated model.c carries.
 *
 * The runtime files are compiled straight into this test after the same
 * prelude the code generator writes (with real = float), so the tests see
 * exactly the code users get.  The last tests paste the files after the
 * prelude for float and double and compile them with the system compilers
 * under -Werror -pedantic, as the generated code will be.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The prelude of every generated file. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
typedef float real;
#define NN_REAL_DTYPE "F32"
#if defined(__GNUC__) || defined(__clang__)
#define NN_UNUSED __attribute__((unused))
#else
#define NN_UNUSED
#endif

#include "emit.h" /* NN_MR, NN_NR, ...: the tile sizes the prelude #defines */

#include "../runtime/nn_errors.c"
#include "../runtime/nn_im2col.c"
#include "../runtime/nn_init.c"
#include "../runtime/nn_rng.c"
#include "../runtime/nn_safetensors.c"

/* ---- helpers ------------------------------------------------------------- */

/* A per-process file name in the test scratch directory (tests run in
 * parallel processes). */
static char *tmp_path(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/rt_%ld_%s", NNCC_TEST_TMP, (long)getpid(), name);
  return buf;
}

static void write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert(f, "cannot create %s", path);
  cr_assert_eq(fwrite(p, 1, n, f), n);
  cr_assert_eq(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  cr_assert(f, "cannot open %s", path);
  unsigned char *p = malloc(1 << 20);
  *n = fread(p, 1, 1 << 20, f);
  fclose(f);
  return p;
}

/* Save's temporaries beside path (".<base>.<hex>.tmp") still there. */
static int temps_left(const char *path) {
  char dir[600];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  const char *base = slash ? path + (slash - dir) + 1 : path;
  if (slash)
    *slash = '\0';
  DIR *d = opendir(slash ? dir : ".");
  cr_assert(d);
  int n = 0;
  size_t blen = strlen(base) > 64 ? 64 : strlen(base);
  for (struct dirent *e; (e = readdir(d));)
    n += e->d_name[0] == '.' && strncmp(e->d_name + 1, base, blen) == 0 &&
         strlen(e->d_name) > 4 && strcmp(e->d_name + strlen(e->d_name) - 4, ".tmp") == 0;
  closedir(d);
  return n;
}

/* A safetensors file from a header length, header text and data bytes. */
static void write_st_raw(const char *path, uint64_t hlen, const char *hdr, size_t hdrbytes,
                         const void *data, size_t dlen) {
  unsigned char *buf = malloc(8 + hdrbytes + dlen + 1);
  for (int i = 0; i < 8; i++)
    buf[i] = (unsigned char)(hlen >> (8 * i));
  memcpy(buf + 8, hdr, hdrbytes);
  if (dlen)
    memcpy(buf + 8 + hdrbytes, data, dlen);
  write_bytes(path, buf, 8 + hdrbytes + dlen);
  free(buf);
}

static void write_st(const char *path, const char *hdr, const void *data, size_t dlen) {
  write_st_raw(path, strlen(hdr), hdr, strlen(hdr), data, dlen);
}

/* The model used by the refusal tests: a conv layer's weight and bias. */
static float g_w[18], g_b[2];
static nn_tensor g_table[2] = {
    {"conv1.weight", "F32", 4, {2, 1, 3, 3}, g_w, 0, 0},
    {"conv1.bias", "F32", 1, {2}, g_b, 0, 0},
};
static unsigned char g_data[256]; /* file data: bytes 0, 1, 2, ... */

#define GOOD_W                                                                                 \
  "\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],\"data_offsets\":[0,72]}"
#define GOOD_B "\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[72,80]}"
#define GOOD "{" GOOD_W "," GOOD_B "}"

static void fill_sentinel(void) {
  memset(g_w, 0xAB, sizeof g_w);
  memset(g_b, 0xAB, sizeof g_b);
  for (size_t i = 0; i < sizeof g_data; i++)
    g_data[i] = (unsigned char)i;
}

static int untouched(void) {
  unsigned char s[sizeof g_w];
  memset(s, 0xAB, sizeof s);
  return memcmp(g_w, s, sizeof g_w) == 0 && memcmp(g_b, s, sizeof g_b) == 0;
}

/* Load path into g_table; expect rc, the model untouched, and msg in err. */
static void expect_refusal(const char *path, int rc, const char *msg) {
  char err[256];
  int got = nn_st_load(path, g_table, 2, err, sizeof err);
  cr_assert_eq(got, rc, "rc %d (%s), expected %d", got, err, rc);
  cr_assert(untouched(), "model memory changed on a refused load");
  cr_assert(strlen(err) > 0);
  if (msg)
    cr_assert(strstr(err, msg), "message \"%s\" lacks \"%s\"", err, msg);
}

static void refuse_header(const char *hdr, size_t dlen, int rc, const char *msg) {
  char path[512];
  fill_sentinel();
  write_st(tmp_path(path, sizeof path, "refuse.safetensors"), hdr, g_data, dlen);
  expect_refusal(path, rc, msg);
  remove(path);
}

/* ---- im2col and column panels ------------------------------------------- */

/* col[(kh, kw)][(oh, ow)] of one channel straight from the definition, one
 * value at a time: x[oh*sh - pt + kh*dh][ow*sw - pl + kw*dw], 0 outside. */
static float col_ref(const float *x, int h, int w, const nn_window *q, int wo, int kh, int kw,
                     long p) {
  const int ih = (int)(p / wo) * q->sh - q->pt + kh * q->dh;
  const int iw = (int)(p % wo) * q->sw - q->pl + kw * q->dw;
  return ih >= 0 && ih < h && iw >= 0 && iw < w ? x[ih * w + iw] : 0.0f;
}

/* nn_im2col and nn_pack_cols (panels of NN_NR and NN_MR, whole and cut
 * short, starting anywhere in a row) against col_ref, value for value. */
static void check_columns(int c, int h, int w, const nn_window *q, int pb, int pr) {
  const int ho = (h + q->pt + pb - q->dh * (q->kh - 1) - 1) / q->sh + 1;
  const int wo = (w + q->pl + pr - q->dw * (q->kw - 1) - 1) / q->sw + 1;
  if (ho < 1 || wo < 1)
    return;
  const long P = (long)ho * wo, R = (long)c * q->kh * q->kw;
  float *x = malloc(sizeof(float) * (size_t)(c * h * w)), *col = malloc(sizeof(float) * (size_t)(R * P));
  float *bp = malloc(sizeof(float) * (size_t)(R * NN_NR));
  for (int i = 0; i < c * h * w; i++)
    x[i] = (float)(i + 1);   /* every value distinct and nonzero */
  char geo[160];
  snprintf(geo, sizeof geo, "c %d, %dx%d, kernel %dx%d, stride %d,%d, dilation %d,%d, pad %d,%d,%d,%d",
           c, h, w, q->kh, q->kw, q->sh, q->sw, q->dh, q->dw, q->pt, pb, q->pl, pr);
  for (int ci = 0; ci < c; ci++) {
    const float *xc = x + ci * h * w;
    nn_im2col(col, xc, h, w, q, ho, wo);
    for (int kh = 0; kh < q->kh; kh++)
      for (int kw = 0; kw < q->kw; kw++)
        for (long p = 0; p < P; p++)
          cr_assert_eq(col[(kh * q->kw + kw) * P + p], col_ref(xc, h, w, q, wo, kh, kw, p),
                       "im2col, %s: tap (%d, %d), pixel %ld", geo, kh, kw, p);
  }
  const int widths[2] = {NN_NR, NN_MR};
  for (int wi = 0; wi < 2; wi++) {
    const int width = widths[wi];
    const int nps[] = {1, 2, 3, width / 3, width / 2, width - 2, width - 1, width};
    for (long p0 = 0; p0 < P; p0 += width / 2 + 1)   /* panels overlapping, cut at any pixel */
      for (int k = 0; k < 8 && p0 + nps[k] <= P; k++) {
        const int np = nps[k];
        for (long i = 0; i < R * width; i++)
          bp[i] = -1.0f;
        nn_pack_cols(bp, width, x, c, h, w, q, wo, p0, np);
        for (long r = 0; r < R; r++)
          for (int j = 0; j < width; j++) {
            const int ci = (int)(r / (q->kh * q->kw)), kh = (int)(r / q->kw % q->kh), kw = (int)(r % q->kw);
            const float want = j < np ? col_ref(x + ci * h * w, h, w, q, wo, kh, kw, p0 + j) : 0.0f;
            cr_assert_eq(bp[r * width + j], want, "pack_cols width %d, %s: pixels [%ld, +%d), row %ld, column %d",
                         width, geo, p0, np, r, j);
          }
      }
  }
  free(x);
  free(col);
  free(bp);
}

Test(im2col, columns_match_the_definition) {
  const int sizes[][2] = {{1, 1}, {4, 7}, {7, 5}, {9, 9}};
  for (int si = 0; si < 4; si++)
    for (int kh = 1; kh <= 3; kh++)
      for (int kw = 1; kw <= 4; kw += kw == 1 ? 2 : 1)
        for (int s = 1; s <= 3; s++)
          for (int d = 1; d <= 2; d++)
            for (int pt = 0; pt <= 3; pt += 1 + (pt == 1))
              for (int pl = 0; pl <= 3; pl++) {
                const nn_window q = {kh, kw, s, 4 - s, d, 3 - d, pt, pl};
                check_columns(2, sizes[si][0], sizes[si][1], &q, (pt + 1) % 3, pl * 2 % 5);
              }
  /* 32 one-pixel rows in a panel (a run per pixel), and a panel wider than a row */
  check_columns(1, 40, 1, &(const nn_window){3, 1, 1, 1, 1, 1, 1, 0}, 1, 0);
  check_columns(3, 3, 70, &(const nn_window){1, 7, 1, 2, 1, 1, 0, 3}, 0, 3);
}

/* ---- status codes -------------------------------------------------------- */

Test(errors, codes_and_messages) {
  cr_assert_eq(NN_OK, 0);
  cr_assert_eq(NN_ERR_ARG, -1);
  cr_assert_eq(NN_ERR_IO, -2);
  cr_assert_eq(NN_ERR_FORMAT, -3);
  cr_assert_eq(NN_ERR_MISMATCH, -4);
  cr_assert_eq(NN_ERR_NONFINITE, -5);
  cr_assert_eq(NN_ERR_NOMEM, -6);
  cr_assert_eq(NN_ERR_DATA, -7);
  for (int c = 0; c >= -7; c--) {
    cr_assert_str_neq(nn_strerror(c), "unknown error");
    for (int d = 0; d > c; d--)
      cr_assert_str_neq(nn_strerror(c), nn_strerror(d));
  }
  cr_assert_str_eq(nn_strerror(1), "unknown error");
  cr_assert_str_eq(nn_strerror(-8), "unknown error");
}

/* ---- RNG ----------------------------------------------------------------- */

Test(rng, same_seed_same_sequence) {
  nn_rng a, b;
  nn_rng_seed(&a, 42, 7);
  nn_rng_seed(&b, 42, 7);
  for (int i = 0; i < 1000; i++)
    cr_assert_eq(nn_rng_u64(&a), nn_rng_u64(&b));
  for (int i = 0; i < 100; i++)
    cr_assert_eq(nn_rng_normal(&a), nn_rng_normal(&b));
}

Test(rng, streams_and_seeds_differ) {
  nn_rng r[4];
  nn_rng_seed(&r[0], 42, 0);
  nn_rng_seed(&r[1], 42, 1);
  nn_rng_seed(&r[2], 43, 0);
  nn_rng_seed(&r[3], 0, 42);
  uint64_t first[4][64];
  for (int s = 0; s < 4; s++)
    for (int i = 0; i < 64; i++)
      first[s][i] = nn_rng_u64(&r[s]);
  /* no output of one stream appears among the first outputs of another */
  for (int s = 0; s < 4; s++)
    for (int t = s + 1; t < 4; t++)
      for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++)
          cr_assert_neq(first[s][i], first[t][j], "streams %d and %d share an output", s, t);
}

Test(rng, uniform_moments) {
  nn_rng r;
  nn_rng_seed(&r, 1, 0);
  const int n = 100000;
  double sum = 0, sq = 0;
  for (int i = 0; i < n; i++) {
    double u = nn_rng_uniform(&r);
    cr_assert(u >= 0.0 && u < 1.0);
    sum += u;
    sq += u * u;
  }
  double mean = sum / n, var = sq / n - mean * mean;
  /* 5 standard errors: se(mean) = 0.0009, se(var) ~ 0.0002 */
  cr_assert(fabs(mean - 0.5) < 0.0046, "mean %g", mean);
  cr_assert(fabs(var - 1.0 / 12) < 0.0012, "variance %g", var);
}

Test(rng, normal_moments) {
  nn_rng r;
  nn_rng_seed(&r, 2, 3);
  const int n = 100000;
  double sum = 0, sq = 0, quad = 0;
  for (int i = 0; i < n; i++) {
    double z = nn_rng_normal(&r);
    cr_assert(isfinite(z));
    sum += z;
    sq += z * z;
    quad += z * z * z * z;
  }
  double mean = sum / n, sd = sqrt(sq / n - mean * mean);
  /* 5 standard errors: se(mean) = 0.0032, se(sd) = 0.0022 */
  cr_assert(fabs(mean) < 0.016, "mean %g", mean);
  cr_assert(fabs(sd - 1.0) < 0.011, "std %g", sd);
  cr_assert(fabs(quad / n - 3.0) < 0.1, "fourth moment %g", quad / n); /* tails are Gaussian */
}

Test(rng, hash_uniform_is_stateless_and_uniform) {
  cr_assert_eq(nn_hash_uniform(5, 17), nn_hash_uniform(5, 17));
  cr_assert_neq(nn_hash_uniform(5, 17), nn_hash_uniform(5, 18));
  cr_assert_neq(nn_hash_uniform(5, 17), nn_hash_uniform(6, 17));
  cr_assert_neq(nn_hash64(1), nn_hash64(2));
  const int n = 100000;
  double sum = 0;
  int kept = 0;
  for (int i = 0; i < n; i++) {
    double u = nn_hash_uniform(99, (uint64_t)i);
    cr_assert(u >= 0.0 && u < 1.0);
    sum += u;
    kept += u >= 0.3; /* a dropout mask with p = 0.3 */
  }
  cr_assert(fabs(sum / n - 0.5) < 0.0046, "mean %g", sum / n);
  cr_assert(abs(kept - 70000) < 725, "kept %d of 100000 at p = 0.3", kept); /* 5 se */
}

/* ---- initializers -------------------------------------------------------- */

Test(init, fill_normal_uniform) {
  enum { N = 100000 };
  static real p[N];
  nn_rng r;
  nn_init_fill(p, N, 0.25);
  for (int i = 0; i < N; i++)
    cr_assert_eq(p[i], 0.25f);

  nn_rng_seed(&r, 7, 1);
  nn_init_normal(p, N, 0.5, &r);
  double sum = 0, sq = 0;
  for (int i = 0; i < N; i++)
    sum += p[i], sq += (double)p[i] * p[i];
  cr_assert(fabs(sum / N) < 0.008, "mean %g", sum / N);
  cr_assert(fabs(sqrt(sq / N) - 0.5) < 0.0055, "std %g", sqrt(sq / N));

  nn_init_uniform(p, N, 2.0, &r);
  sum = sq = 0;
  for (int i = 0; i < N; i++) {
    cr_assert(p[i] >= -2.0f && p[i] <= 2.0f);
    sum += p[i], sq += (double)p[i] * p[i];
  }
  cr_assert(fabs(sum / N) < 0.019, "mean %g", sum / N);
  cr_assert(fabs(sq / N - 4.0 / 3) < 0.019, "variance %g", sq / N); /* limit^2 / 3 */
}

Test(init, same_seed_same_values) {
  real a[100], b[100];
  nn_rng r;
  nn_rng_seed(&r, 3, 9);
  nn_init_normal(a, 100, 1.0, &r);
  nn_rng_seed(&r, 3, 9);
  nn_init_normal(b, 100, 1.0, &r);
  cr_assert(memcmp(a, b, sizeof a) == 0);
}

static void check_sparse(size_t units, size_t fan_in, int k, size_t want) {
  real *p = malloc(units * fan_in * sizeof *p);
  size_t *col = calloc(fan_in, sizeof *col);
  nn_rng r;
  nn_rng_seed(&r, 11, 0);
  nn_init_fill(p, units * fan_in, 9.0); /* every entry must be overwritten */
  nn_init_sparse(p, units, fan_in, k, 0.1, &r);
  for (size_t u = 0; u < units; u++) {
    size_t nz = 0;
    for (size_t j = 0; j < fan_in; j++) {
      cr_assert(p[u * fan_in + j] != 9.0f);
      if (p[u * fan_in + j] != 0)
        nz++, col[j]++;
    }
    cr_assert_eq(nz, want, "row %zu has %zu nonzeros, expected %zu", u, nz, want);
  }
  if (want && want < fan_in && units >= 1000) /* positions are spread uniformly */
    for (size_t j = 0; j < fan_in; j++) {
      double expect = (double)units * (double)want / (double)fan_in;
      cr_assert(fabs((double)col[j] - expect) < 6 * sqrt(expect), "column %zu: %zu", j, col[j]);
    }
  free(col);
  free(p);
}

Test(init, sparse_has_exactly_k_per_row) {
  check_sparse(2000, 100, 15, 15);
  check_sparse(10, 5, 15, 5); /* k > fan_in: every entry */
  check_sparse(10, 50, 0, 0);
  check_sparse(10, 50, -3, 0);
  check_sparse(7, 1, 1, 1);
}

/* ---- safetensors: writing ------------------------------------------------ */

Test(safetensors, byte_exact_vector) {
  static const char hdr[] =
      "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
  float v[6] = {1, 2, 3, 4, 5, -0.5f};
  nn_tensor t = {"attn.0", "F32", 3, {1, 2, 3}, v, 0, 0};
  char path[512], err[256];
  size_t n;
  tmp_path(path, sizeof path, "attn.safetensors");
  cr_assert_eq(nn_st_save(path, &t, 1, NULL, err, sizeof err), NN_OK, "%s", err);
  unsigned char *f = read_bytes(path, &n);
  cr_assert_eq(sizeof hdr - 1, 64);
  cr_assert_eq(n, 8 + 64 + 24);
  static const unsigned char len8[8] = {64, 0, 0, 0, 0, 0, 0, 0};
  cr_assert(memcmp(f, len8, 8) == 0);
  cr_assert(memcmp(f + 8, hdr, 64) == 0, "header %.64s", (const char *)f + 8);
  for (int i = 0; i < 6; i++) { /* little-endian IEEE bits, whatever the host */
    uint32_t bits;
    memcpy(&bits, &v[i], 4);
    for (int k = 0; k < 4; k++)
      cr_assert_eq(f[72 + 4 * i + k], (bits >> (8 * k)) & 0xff);
  }
  free(f);
  cr_assert_eq(temps_left(path), 0, "temporary file left behind");
  remove(path);
}

Test(safetensors, header_padding_and_escaping) {
  float x = 1;
  nn_tensor t = {"a\"b\\c\nd", "F32", 1, {1}, &x, 0, 0};
  const char *meta[] = {"format", "pt", "note", "tab\there\x01", NULL};
  char path[512], err[256];
  size_t n;
  tmp_path(path, sizeof path, "escape.safetensors");
  cr_assert_eq(nn_st_save(path, &t, 1, meta, err, sizeof err), NN_OK, "%s", err);
  unsigned char *f = read_bytes(path, &n);
  static const char want[] =
      "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"tab\\u0009here\\u0001\"},"
      "\"a\\\"b\\\\c\\u000ad\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = hlen << 8 | f[i];
  cr_assert_eq(hlen % 8, 0);
  cr_assert_eq(hlen, (sizeof want - 1 + 7) / 8 * 8);
  cr_assert(memcmp(f + 8, want, sizeof want - 1) == 0, "header %.*s", (int)hlen, f + 8);
  for (size_t i = sizeof want - 1; i < hlen; i++)
    cr_assert_eq(f[8 + i], ' ');
  cr_assert_eq(n, 8 + hlen + 4);
  free(f);

  float y = 0; /* and the escaped name reads back */
  nn_tensor u = t;
  u.data = &y;
  cr_assert_eq(nn_st_load(path, &u, 1, err, sizeof err), NN_OK, "%s", err);
  cr_assert_eq(y, 1.0f);
  remove(path);
}

Test(safetensors, round_trip_is_bit_exact) {
  uint32_t fbits[6] = {0x7fc01234u, 0x80000000u, 0x7f800000u,
                       0xff800000u, 0x00000001u, 0x3eaaaaabu};
  float f[6], f2[6];
  double d[4] = {3.141592653589793, -1e-300, 1e300, 0.1}, d2[4];
  int64_t cnt = 123456789012345LL, cnt2 = 0;
  memcpy(f, fbits, sizeof f);
  nn_tensor t[3] = {
      {"layer.weight", "F32", 2, {2, 3}, f, 0, 0},
      {"bn.running_var", "F64", 1, {4}, d, 0, 0},
      {"bn.num_batches_tracked", "I64", 0, {0}, &cnt, 0, 0},
  };
  nn_tensor u[3] = {
      {"bn.num_batches_tracked", "I64", 0, {0}, &cnt2, 0, 0}, /* any table order */
      {"layer.weight", "F32", 2, {2, 3}, f2, 0, 0},
      {"bn.running_var", "F64", 1, {4}, d2, 0, 0},
  };
  const char *meta[] = {"format", "pt", NULL};
  char path[512], err[256];
  tmp_path(path, sizeof path, "round.safetensors");
  cr_assert_eq(nn_st_save(path, t, 3, meta, err, sizeof err), NN_OK, "%s", err);
  cr_assert_eq(nn_st_load(path, u, 3, err, sizeof err), NN_OK, "%s", err);
  cr_assert(memcmp(f, f2, sizeof f) == 0);
  cr_assert(memcmp(d, d2, sizeof d) == 0);
  cr_assert_eq(cnt, cnt2);
  /* saving again over the file works (rename replaces it) */
  f[0] = 2.5f;
  cr_assert_eq(nn_st_save(path, t, 3, NULL, err, sizeof err), NN_OK, "%s", err);
  cr_assert_eq(nn_st_load(path, u, 3, err, sizeof err), NN_OK, "%s", err);
  cr_assert_eq(f2[0], 2.5f);
  remove(path);
}

Test(safetensors, empty_table) {
  char path[512], err[256];
  size_t n;
  tmp_path(path, sizeof path, "empty.safetensors");
  cr_assert_eq(nn_st_save(path, NULL, 0, NULL, err, sizeof err), NN_OK, "%s", err);
  unsigned char *f = read_bytes(path, &n);
  cr_assert_eq(n, 16);
  cr_assert(memcmp(f + 8, "{}      ", 8) == 0);
  free(f);
  cr_assert_eq(nn_st_load(path, NULL, 0, err, sizeof err), NN_OK, "%s", err);
  remove(path);
}

/* Load checks every value before it writes any: NaN and Inf weights, a
 * negative second moment, a step count that is negative or cannot be
 * incremented are NN_ERR_DATA, naming the tensor, and change nothing. */
Test(safetensors, load_checks_values_before_writing) {
  char path[512], err[256];
  tmp_path(path, sizeof path, "values.safetensors");
  float w[3] = {1, 2, 3}, v[3] = {0, 0.5f, 1};
  int64_t step = 5;
  nn_tensor good[3] = {{"w", "F32", 1, {3}, w, 0, NN_CHECK_FINITE},
                       {"v", "F32", 1, {3}, v, 0, NN_CHECK_NONNEG},
                       {"step", "I64", 0, {0}, &step, 0, NN_CHECK_STEP}};
  struct { int tensor; double value; const char *what; } bad[] = {
      {0, NAN, "w: element 1 is not finite"},       {0, INFINITY, "w: element 1 is not finite"},
      {0, -INFINITY, "w: element 1 is not finite"}, {1, -0.25, "v: element 1 is negative"},
      {1, NAN, "v: element 1 is not finite"},       {2, -1, "step: element 0 is not a step"},
      {2, (double)INT64_MAX, "step: element 0 is not a step"}};
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    float w1[3] = {1, 2, 3}, v1[3] = {0, 0.5f, 1};
    int64_t step1 = 5;
    if (bad[k].tensor == 0)
      w1[1] = (float)bad[k].value;
    else if (bad[k].tensor == 1)
      v1[1] = (float)bad[k].value;
    else
      step1 = bad[k].value < 0 ? -1 : INT64_MAX;
    nn_tensor file[3] = {{"w", "F32", 1, {3}, w1, 0, 0}, {"v", "F32", 1, {3}, v1, 0, 0},
                         {"step", "I64", 0, {0}, &step1, 0, 0}};
    cr_assert_eq(nn_st_save(path, file, 3, NULL, err, sizeof err), NN_OK, "%s", err);
    float w2[3] = {7, 7, 7}, v2[3] = {7, 7, 7};
    int64_t step2 = 7;
    nn_tensor into[3] = {good[0], good[1], good[2]};
    into[0].data = w2, into[1].data = v2, into[2].data = &step2;
    cr_expect_eq(nn_st_load(path, into, 3, err, sizeof err), NN_ERR_DATA, "case %zu", k);
    cr_expect(strstr(err, bad[k].what), "case %zu: %s", k, err);
    cr_expect(w2[0] == 7 && w2[2] == 7 && v2[0] == 7 && step2 == 7, "case %zu: model changed", k);
  }
  /* the edges that are fine: 0 moments, step 0 and 2^63 - 2 */
  v[0] = 0;
  step = INT64_MAX - 1;
  cr_assert_eq(nn_st_save(path, good, 3, NULL, err, sizeof err), NN_OK, "%s", err);
  cr_expect_eq(nn_st_load(path, good, 3, err, sizeof err), NN_OK, "%s", err);
  remove(path);
}

Test(safetensors, save_rejects_bad_arguments) {
  float x[2] = {0, 0};
  char path[512], err[256];
  tmp_path(path, sizeof path, "badarg.safetensors");
  nn_tensor dup[2] = {{"a", "F32", 1, {1}, x, 0, 0}, {"a", "F32", 1, {1}, x + 1, 0, 0}};
  cr_assert_eq(nn_st_save(path, dup, 2, NULL, err, sizeof err), NN_ERR_ARG);
  cr_assert(strstr(err, "\"a\""), "%s", err);
  nn_tensor f16 = {"h", "F16", 1, {1}, x, 0, 0};
  cr_assert_eq(nn_st_save(path, &f16, 1, NULL, err, sizeof err), NN_ERR_ARG);
  cr_assert(strstr(err, "h"), "%s", err);
  nn_tensor neg = {"n", "F32", 1, {-1}, x, 0, 0};
  cr_assert_eq(nn_st_save(path, &neg, 1, NULL, err, sizeof err), NN_ERR_ARG);
  const char *odd[] = {"key", NULL};
  cr_assert_eq(nn_st_save(path, dup, 1, odd, err, sizeof err), NN_ERR_ARG);
  cr_assert(strstr(err, "metadata"), "%s", err);
  cr_assert_eq(nn_st_save(NULL, dup, 1, NULL, err, sizeof err), NN_ERR_ARG);
  cr_assert_eq(nn_st_save(path, NULL, 1, NULL, NULL, 0), NN_ERR_ARG); /* err may be NULL */
  cr_assert_eq(nn_st_load(NULL, dup, 1, err, sizeof err), NN_ERR_ARG);
  remove(path);
}

/* ---- safetensors: atomic save -------------------------------------------- */

Test(safetensors, save_to_directory_or_empty_path_is_arg) {
  float x = 1;
  nn_tensor t = {"x", "F32", 1, {1}, &x, 0, 0};
  char dir[512], slash[600], err[256];
  tmp_path(dir, sizeof dir, "isdir");
  cr_assert_eq(mkdir(dir, 0755), 0);
  cr_assert_eq(nn_st_save(dir, &t, 1, NULL, err, sizeof err), NN_ERR_ARG);
  cr_assert(strstr(err, "isdir\" is a directory"), "%s", err);
  struct stat st;
  cr_assert(stat(dir, &st) == 0 && S_ISDIR(st.st_mode));
  cr_assert_eq(temps_left(dir), 0, "temporary file left behind");
  snprintf(slash, sizeof slash, "%s/", dir);
  cr_assert_eq(nn_st_save(slash, &t, 1, NULL, err, sizeof err), NN_ERR_ARG);
  rmdir(dir);

  /* "" used to write "./.tmp" and then remove it: a user's file of that name */
  char here[512], old_cwd[1024];
  tmp_path(here, sizeof here, "cwd");
  cr_assert_eq(mkdir(here, 0755), 0);
  cr_assert(getcwd(old_cwd, sizeof old_cwd));
  cr_assert_eq(chdir(here), 0);
  write_bytes(".tmp", "mine", 4);
  cr_assert_eq(nn_st_save("", &t, 1, NULL, err, sizeof err), NN_ERR_ARG);
  cr_assert(strstr(err, "empty path"), "%s", err);
  size_t n;
  unsigned char *mine = read_bytes(".tmp", &n);
  cr_assert(n == 4 && memcmp(mine, "mine", 4) == 0, "save(\"\") touched ./.tmp");
  free(mine);
  DIR *d = opendir(".");
  int entries = 0;
  for (struct dirent *e; (e = readdir(d));)
    entries++;
  closedir(d);
  cr_assert_eq(entries, 3, "save(\"\") created a file"); /* . .. .tmp */
  remove(".tmp");
  cr_assert_eq(chdir(old_cwd), 0);
  rmdir(here);

  /* a directory that does not exist: an error, and no descriptor touched
   * (a status once went on as if it were one: the data went to stderr) */
  snprintf(dir, sizeof dir, "%s/no/such/dir/x.safetensors", NNCC_TEST_TMP);
  int keep = dup(2), null = open("/dev/null", O_WRONLY);
  cr_assert(keep >= 0 && null >= 0 && dup2(null, 2) == 2);
  off_t before = lseek(2, 0, SEEK_CUR);
  int rc = nn_st_save(dir, &t, 1, NULL, err, sizeof err);
  int open2 = fcntl(2, F_GETFD) != -1;
  off_t after = open2 ? lseek(2, 0, SEEK_CUR) : -1;
  dup2(keep, 2);
  close(keep);
  close(null);
  cr_assert_eq(rc, NN_ERR_IO);
  cr_assert(strstr(err, "cannot create"), "%s", err);
  cr_assert(open2 && after == before, "save wrote to or closed descriptor 2");
}

/* "<path>.tmp" was the fixed temporary: a symlink there made save write
 * through it.  Nothing at a name another user can guess is opened now. */
Test(safetensors, save_never_follows_a_planted_symlink) {
  float x = 7;
  nn_tensor t = {"x", "F32", 1, {1}, &x, 0, 0};
  char path[512], link[600], victim[512], err[256];
  tmp_path(path, sizeof path, "sym.safetensors");
  tmp_path(victim, sizeof victim, "victim");
  snprintf(link, sizeof link, "%s.tmp", path);
  write_bytes(victim, "precious", 8);
  cr_assert_eq(symlink(victim, link), 0);
  cr_assert_eq(nn_st_save(path, &t, 1, NULL, err, sizeof err), NN_OK, "%s", err);
  size_t n;
  unsigned char *v = read_bytes(victim, &n);
  cr_assert(n == 8 && memcmp(v, "precious", 8) == 0, "save wrote through the symlink");
  free(v);
  struct stat st;
  cr_assert(lstat(link, &st) == 0 && S_ISLNK(st.st_mode), "save removed the symlink");
  float y = 0;
  nn_tensor u = {"x", "F32", 1, {1}, &y, 0, 0};
  cr_assert_eq(nn_st_load(path, &u, 1, err, sizeof err), NN_OK, "%s", err);
  cr_assert_eq(y, 7.0f);
  /* a "<path>.tmp" directory, which used to make save fail, is left alone */
  remove(link);
  cr_assert_eq(mkdir(link, 0755), 0);
  x = 8;
  cr_assert_eq(nn_st_save(path, &t, 1, NULL, err, sizeof err), NN_OK, "%s", err);
  cr_assert(stat(link, &st) == 0 && S_ISDIR(st.st_mode));
  rmdir(link);
  remove(victim);
  remove(path);
}

/* A file of 16384 floats, every one equal to the generation g. */
#define GEN_N 16384
static int save_generation(const char *path, float g) {
  static float v[GEN_N];
  for (int i = 0; i < GEN_N; i++)
    v[i] = g;
  nn_tensor t = {"w", "F32", 1, {GEN_N}, v, 0, 0};
  char err[256];
  return nn_st_save(path, &t, 1, NULL, err, sizeof err);
}

/* The generation a complete file holds, -1 if it is mixed or broken. */
static float load_generation(const char *path) {
  static float v[GEN_N];
  nn_tensor t = {"w", "F32", 1, {GEN_N}, v, 0, 0};
  char err[256];
  if (nn_st_load(path, &t, 1, err, sizeof err) != NN_OK)
    return -1;
  for (int i = 1; i < GEN_N; i++)
    if (v[i] != v[0])
      return -1;
  return v[0];
}

/* Two processes save over one path as fast as they can while a third reads
 * it: every save succeeds and every read sees one whole generation. */
Test(safetensors, concurrent_saves_never_mix_or_lose_the_file, .timeout = 60) {
  char path[512];
  tmp_path(path, sizeof path, "race.safetensors");
  cr_assert_eq(save_generation(path, 1), NN_OK);
  pid_t kid[2];
  for (int k = 0; k < 2; k++) {
    kid[k] = fork();
    cr_assert(kid[k] >= 0);
    if (kid[k] == 0) {
      int bad = 0;
      for (int i = 0; i < 300; i++)
        bad += save_generation(path, (float)(2 + k * 1000 + i)) != NN_OK;
      _exit(bad ? 1 : 0);
    }
  }
  int reads = 0, broken = 0, running = 2, failed = 0;
  while (running) {
    broken += load_generation(path) < 0;
    reads++;
    for (int k = 0; k < 2; k++) {
      int st;
      if (kid[k] > 0 && waitpid(kid[k], &st, WNOHANG) == kid[k]) {
        running--;
        kid[k] = -kid[k];
        failed += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
      }
    }
  }
  cr_assert_eq(broken, 0, "%d of %d reads saw a mixed or missing file", broken, reads);
  cr_assert_eq(failed, 0, "a saver failed");
  float last = load_generation(path);
  cr_assert(last == 301 || last == 1301, "final file holds generation %g", last);
  cr_assert_eq(temps_left(path), 0);
  remove(path);
}

/* The save that fails for want of space keeps the old file and leaves no
 * temporary behind.  Returns what went wrong, NULL if nothing (no
 * cr_assert: it also runs in a forked child). */
static const char *full_disk_save(const char *path) {
  if (save_generation(path, 1) != NN_OK) /* 64 KiB + header */
    return "first save failed";
  size_t n0, n1;
  unsigned char *before = read_bytes(path, &n0);
  static float big[4 * GEN_N];
  nn_tensor t = {"w", "F32", 1, {4 * GEN_N}, big, 0, 0};
  char err[256];
  const char *why = NULL;
  if (nn_st_save(path, &t, 1, NULL, err, sizeof err) != NN_ERR_IO || !strstr(err, "cannot write"))
    why = "the save that cannot fit did not return NN_ERR_IO \"cannot write\"";
  unsigned char *after = read_bytes(path, &n1);
  if (!why && (n0 != n1 || memcmp(before, after, n0) != 0 || load_generation(path) != 1))
    why = "the old file changed";
  if (!why && temps_left(path))
    why = "a temporary file was left behind";
  free(before);
  free(after);
  return why;
}

/* full_disk_save in a child whose writes past 100 KiB fail with EFBIG
 * (RLIMIT_FSIZE, SIGXFSZ ignored): the limit dies with the child. */
static void file_size_limited_save(const char *path) {
  pid_t kid = fork();
  cr_assert(kid >= 0);
  if (kid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {100 << 10, 100 << 10};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
      _exit(2);
    const char *why = full_disk_save(path);
    if (why)
      fprintf(stderr, "%s\n", why);
    _exit(why ? 1 : 0);
  }
  int st;
  cr_assert_eq(waitpid(kid, &st, 0), kid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
  remove(path);
}

/* A 160 KiB tmpfs: room for the old file but not for the old and the new.
 * Where mounting is not allowed (not root), the write fails through a file
 * size limit instead. */
Test(faults, disk_full_during_save_keeps_old_file, .timeout = 30) {
  char dir[512], path[600], cmd[700];
  tmp_path(dir, sizeof dir, "tmpfs");
  cr_assert_eq(mkdir(dir, 0755), 0);
  snprintf(path, sizeof path, "%s/m.safetensors", dir);
  snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=160k tmpfs '%s' 2>/dev/null", dir);
  if (system(cmd) != 0) {
    cr_log_warn("cannot mount a tmpfs: the disk fills through RLIMIT_FSIZE instead");
    file_size_limited_save(path);
    rmdir(dir);
    return;
  }
  const char *why = full_disk_save(path);
  snprintf(cmd, sizeof cmd, "umount '%s'", dir);
  cr_assert_eq(system(cmd), 0);
  rmdir(dir);
  cr_assert(!why, "%s", why);
}

Test(faults, file_size_limit_during_save_keeps_old_file, .timeout = 30) {
  char path[512];
  tmp_path(path, sizeof path, "fsize.safetensors");
  file_size_limited_save(path);
}

/* ---- safetensors: loading ------------------------------------------------ */

Test(safetensors, load_in_file_order_other_than_table) {
  /* PyTorch's writer orders data by its own rules: bias data first here */
  char path[512], err[256];
  fill_sentinel();
  tmp_path(path, sizeof path, "order.safetensors");
  write_st(
      path,
      "{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],\"data_offsets\":[8,80]},\n"
      " \"__metadata__\" : {\"format\":\"pt\"},\n"
      " \"conv1.bias\":{\"data_offsets\":[0,8],\"shape\":[2],\"dtype\":\"F32\"}}   ",
      g_data, 80);
  cr_assert_eq(nn_st_load(path, g_table, 2, err, sizeof err), NN_OK, "%s", err);
  cr_assert(memcmp(g_b, g_data, 8) == 0);
  cr_assert(memcmp(g_w, g_data + 8, 72) == 0);
  remove(path);
}

Test(safetensors, load_optional_tensor_may_be_absent) {
  char path[512], err[256];
  fill_sentinel();
  nn_tensor t[2] = {g_table[0], g_table[1]};
  t[1].optional = 1;
  tmp_path(path, sizeof path, "optional.safetensors");
  write_st(path, "{" GOOD_W "}", g_data, 72);
  cr_assert_eq(nn_st_load(path, t, 2, err, sizeof err), NN_OK, "%s", err);
  cr_assert(memcmp(g_w, g_data, 72) == 0);
  unsigned char s[8];
  memset(s, 0xAB, 8);
  cr_assert(memcmp(g_b, s, 8) == 0, "absent optional tensor was written");
  remove(path);
}

Test(safetensors, load_unicode_escapes_in_names) {
  /* U+00E9 as \u00e9 and U+1F600 as a surrogate pair */
  char path[512], err[256];
  float a = 0, b = 0, data[2] = {1.5f, -2.5f};
  nn_tensor t[2] = {{"caf\xc3\xa9", "F32", 0, {0}, &a, 0, 0},
                    {"smile\xf0\x9f\x98\x80", "F32", 0, {0}, &b, 0, 0}};
  tmp_path(path, sizeof path, "unicode.safetensors");
  write_st(path,
           "{\"caf\\u00e9\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
           "\"smile\\ud83d\\ude00\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}",
           data, 8);
  cr_assert_eq(nn_st_load(path, t, 2, err, sizeof err), NN_OK, "%s", err);
  cr_assert_eq(a, 1.5f);
  cr_assert_eq(b, -2.5f);
  remove(path);
}

Test(safetensors, refuse_missing_file) {
  char path[512], err[256];
  fill_sentinel();
  tmp_path(path, sizeof path, "does-not-exist.safetensors");
  cr_assert_eq(nn_st_load(path, g_table, 2, err, sizeof err), NN_ERR_IO);
  cr_assert(strstr(err, "does-not-exist"), "%s", err);
  cr_assert(untouched());
}

Test(safetensors, refuse_truncated_file) {
  char path[512], err[256];
  size_t n;
  fill_sentinel();
  tmp_path(path, sizeof path, "trunc.safetensors");
  write_st(path, GOOD, g_data, 80);
  unsigned char *f = read_bytes(path, &n);
  /* at every length short of the whole file */
  for (size_t len = 0; len < n; len++) {
    write_bytes(path, f, len);
    int rc = nn_st_load(path, g_table, 2, err, sizeof err);
    cr_assert_eq(rc, NN_ERR_FORMAT, "length %zu: rc %d %s", len, rc, err);
    cr_assert(untouched(), "length %zu", len);
    if (len < 8)
      cr_assert(strstr(err, "too short for header length"), "%s", err);
    else if (len < 8 + strlen(GOOD))
      cr_assert(strstr(err, "file too short for header"), "%s", err);
  }
  free(f);
  remove(path);
}

Test(safetensors, refuse_header_length_too_large) {
  char path[512];
  fill_sentinel();
  tmp_path(path, sizeof path, "bign.safetensors");
  write_st_raw(path, 100000001, GOOD, strlen(GOOD), g_data, 80);
  expect_refusal(path, NN_ERR_FORMAT, "exceeds");
  write_st_raw(path, UINT64_MAX, GOOD, strlen(GOOD), g_data, 80);
  expect_refusal(path, NN_ERR_FORMAT, "exceeds");
  write_st_raw(path, strlen(GOOD) + 81, GOOD, strlen(GOOD), g_data, 80); /* N + 8 > size */
  expect_refusal(path, NN_ERR_FORMAT, "file too short for header");
  remove(path);
}

Test(safetensors, refuse_nul_in_header) {
  char path[512];
  fill_sentinel();
  tmp_path(path, sizeof path, "nul.safetensors");
  char hdr[sizeof GOOD + 1];
  memcpy(hdr, GOOD, sizeof GOOD); /* GOOD, NUL, then nothing */
  write_st_raw(path, sizeof GOOD, hdr, sizeof GOOD, g_data, 80);
  expect_refusal(path, NN_ERR_FORMAT, "trailing");
  remove(path);
}

/* Parameters are copied into the test's process, so they hold no pointers. */
typedef struct {
  char hdr[320], why[40], msg[48]; /* expected in err, if set */
} bad_json;

ParameterizedTestParameters(safetensors, refuse_bad_json) {
  static bad_json cases[] = {
      {"", "empty header", "malformed header"},
      {"{", "unterminated object", "malformed header"},
      {"[]", "not an object", "malformed header"},
      {"{}{}", "two objects", "malformed header"},
      {GOOD "x", "trailing garbage", "malformed header"},
      {"{" GOOD_W "," GOOD_B ",}", "trailing comma", "malformed header"},
      {"{" GOOD_W " " GOOD_B "}", "missing comma", "malformed header"},
      {"{\"conv1.bias\" {}}", "missing colon", "malformed header"},
      {"{'conv1.bias':{}}", "single quotes", "malformed header"},
      {"{\"conv1.bias", "unterminated string", "malformed header"},
      {"{\"conv1\\q.bias\":{}}", "bad escape", "malformed header"},
      {"{\"conv1\\ud800.bias\":{}}", "lone surrogate", "malformed header"},
      {"{\"conv1\\u12g4\":{}}", "bad hex", "malformed header"},
      {"{\"a\x01\":{}}", "raw control character", "malformed header"},
      {"{\"conv1.bias\":true}", "literal instead of object", "conv1.bias: malformed header"},
      {"{\"conv1.bias\":{}}", "empty tensor entry", "conv1.bias: malformed header"},
      {"{" GOOD_W
       ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[72,80]}}",
       "leading zero", "conv1.bias: malformed header"},
      {"{" GOOD_W
       ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[72,80]}}",
       "negative", "conv1.bias: malformed header"},
      {"{" GOOD_W
       ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[72,80]}}",
       "fraction", "conv1.bias: malformed header"},
      {"{" GOOD_W
       ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2e0],\"data_offsets\":[72,80]}}",
       "exponent", "conv1.bias: malformed header"},
      {"{" GOOD_W
       ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[[2]],\"data_offsets\":[72,80]}}",
       "nested array", "conv1.bias: malformed header"},
      {"{" GOOD_W
       ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2,],\"data_offsets\":[72,80]}}",
       "trailing comma in array", "conv1.bias: malformed header"},
      {"{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2],"
       "\"data_offsets\":[72,99999999999999999999]}}",
       "integer too large", "conv1.bias: malformed header"},
      {"{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[80,72]}}",
       "begin > end", "conv1.bias: malformed header"},
      {"{" GOOD_W
       ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[72,76,80]}}",
       "three offsets", "conv1.bias: malformed header"},
      {"{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2]}}", "no data_offsets",
       "conv1.bias: malformed header"},
      {"{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],"
       "\"data_offsets\":[72,80]}}",
       "duplicate field", "conv1.bias: malformed header"},
      {"{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[72,80],"
       "\"foo\":1}}",
       "unknown field", "conv1.bias: malformed header"},
      {"{" GOOD_W ",\"conv1.bias\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[72,80]}}",
       "dtype not a string", "conv1.bias: malformed header"},
      {"{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],"
       "\"data_offsets\":[72,80]}}",
       "rank above 8", "conv1.bias: malformed header"},
      {"{\"__metadata__\":{\"a\":1}," GOOD_W "," GOOD_B "}", "metadata value not a string",
       "malformed header"},
      {"{\"__metadata__\":{}, \"__metadata__\":{}," GOOD_W "," GOOD_B "}", "two metadata",
       "malformed header"},
      {"{" GOOD_W "," GOOD_B "," GOOD_B "}", "duplicate tensor",
       "duplicate tensor \"conv1.bias\""},
  };

  return cr_make_param_array(bad_json, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(bad_json *c, safetensors, refuse_bad_json) {
  char path[512], err[256];
  fill_sentinel();
  tmp_path(path, sizeof path, "badjson.safetensors");
  write_st(path, c->hdr, g_data, 80);
  int rc = nn_st_load(path, g_table, 2, err, sizeof err);
  cr_assert_eq(rc, NN_ERR_FORMAT, "%s: rc %d (%s)", c->why, rc, err);
  cr_assert(untouched(), "%s: model memory changed", c->why);
  cr_assert(strlen(err) > 0, "%s: no message", c->why);
  cr_assert(strstr(err, c->msg), "%s: message \"%s\" lacks \"%s\"", c->why, err, c->msg);
  remove(path);
}

Test(safetensors, refuse_wrong_dtype) {
  refuse_header("{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"I64\",\"shape\":[2],"
                "\"data_offsets\":[72,88]}}",
                88, NN_ERR_MISMATCH, "conv1.bias: dtype I64 in file, model expects F32");
  refuse_header("{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"U16\",\"shape\":[2],"
                "\"data_offsets\":[72,76]}}",
                76, NN_ERR_MISMATCH, "conv1.bias: dtype U16 in file, model expects F32");
  /* an F16 file's data_offsets span 2 bytes per element */
  refuse_header("{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"F16\",\"shape\":[2],"
                "\"data_offsets\":[72,80]}}",
                80, NN_ERR_FORMAT, "conv1.bias: data_offsets span 8 bytes, dtype and shape need 4");
}

/* ---- dtype conversion on load ---------------------------------------------
 * F16, BF16, F32 and F64 load into F32 and F64 tensors.  The expected values
 * are worked out by hand from the formats (IEEE 754 binary16: 1 sign, 5
 * exponent bits biased by 15, 10 fraction bits; bfloat16: the top half of a
 * binary32), not by the code under test. */

static uint32_t f32_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return b;
}

Test(safetensors, load_converts_real_dtypes) {
  const uint16_t f16[8] = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x3555, 0x8000, 0x0400, 0x03FF};
  const double want16[8] = {1, -2, 0x1p-24, 65504, 0.333251953125, -0.0, 0x1p-14,
                            1023 * 0x1p-24};
  const uint16_t bf16[4] = {0x3F80, 0xC0A0, 0x3EAB, 0x0001};
  const uint32_t want_bf16[4] = {0x3F800000u, 0xC0A00000u, 0x3EAB0000u, 0x00010000u};
  /* F64 -> F32 rounds to nearest, ties to even: 1 + 2^-24 is halfway
   * between 1 and 1 + 2^-23 (even: 1), 1 + 3 * 2^-24 halfway between
   * 1 + 2^-23 and 1 + 2^-22 (even: 1 + 2^-22); 3.4028235e38 rounds to FLT_MAX,
   * -1e-46 underflows to -0 */
  const double f64[6] = {0.1, 1 + 0x1p-24, 1 + 3 * 0x1p-24, 3.4028235e38, -1e-46, 0.5};
  const uint32_t want64[6] = {0x3DCCCCCDu, 0x3F800000u, 0x3F800002u, 0x7F7FFFFFu, 0x80000000u,
                              0x3F000000u};
  const float f32[3] = {0.1f, -3.5f, 1e-30f};
  unsigned char data[16 + 8 + 48 + 12];
  memcpy(data, f16, 16);
  memcpy(data + 16, bf16, 8);
  memcpy(data + 24, f64, 48);
  memcpy(data + 72, f32, 12);
  if (!nn_st_host_is_le()) { /* the file is little-endian */
    nn_st_swap(data, 24, 2);
    nn_st_swap(data + 24, 48, 8);
    nn_st_swap(data + 72, 12, 4);
  }
  float a[8], b[4], c[6];
  double d[3], a64[8];
  nn_tensor t[5] = {
      {"a", "F32", 1, {8}, a, 0, NN_CHECK_FINITE},  {"b", "F32", 1, {4}, b, 0, NN_CHECK_FINITE},
      {"c", "F32", 1, {6}, c, 0, NN_CHECK_FINITE},  {"d", "F64", 1, {3}, d, 0, NN_CHECK_FINITE},
      {"a64", "F64", 1, {8}, a64, 0, NN_CHECK_FINITE},
  };
  char path[512], err[256];
  write_st(tmp_path(path, sizeof path, "convert.safetensors"),
           "{\"a\":{\"dtype\":\"F16\",\"shape\":[8],\"data_offsets\":[0,16]},"
           "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[16,24]},"
           "\"c\":{\"dtype\":\"F64\",\"shape\":[6],\"data_offsets\":[24,72]},"
           "\"d\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[72,84]}}",
           data, sizeof data);
  cr_assert_eq(nn_st_load(path, t, 4, err, sizeof err), NN_OK, "%s", err);
  for (int i = 0; i < 8; i++)
    cr_expect(f32_bits(a[i]) == f32_bits((float)want16[i]), "F16 %04x: got %a, want %a", f16[i],
              (double)a[i], want16[i]);
  for (int i = 0; i < 4; i++)
    cr_expect_eq(f32_bits(b[i]), want_bf16[i], "BF16 %04x: got %08x", bf16[i], f32_bits(b[i]));
  for (int i = 0; i < 6; i++)
    cr_expect_eq(f32_bits(c[i]), want64[i], "F64 %a: got %08x, want %08x", f64[i],
                 f32_bits(c[i]), want64[i]);
  for (int i = 0; i < 3; i++)
    cr_expect_eq(d[i], (double)f32[i], "F32 %a into F64: got %a", (double)f32[i], d[i]);
  /* F16 into an F64 tensor: exact too */
  t[4].name = "a";
  nn_tensor u[4] = {t[4], t[1], t[2], t[3]};
  cr_assert_eq(nn_st_load(path, u, 4, err, sizeof err), NN_OK, "%s", err);
  for (int i = 0; i < 8; i++)
    cr_expect(a64[i] == want16[i] && signbit(a64[i]) == signbit(want16[i]), "F16 %04x into F64: %a",
              f16[i], a64[i]);
  remove(path);
}

/* Non-finite values are refused whatever the file's dtype, and so is an F64
 * that rounds to Inf in F32; nothing is written. */
Test(safetensors, load_conversion_refusals) {
  static const struct {
    const char *dtype;
    unsigned char bytes[8];
    size_t n;
    const char *msg;
  } cases[] = {
      {"F16", {0x00, 0x7C}, 2, "w: element 0 is not finite (NaN or Inf)"},   /* +Inf */
      {"F16", {0x00, 0x7E}, 2, "w: element 0 is not finite (NaN or Inf)"},   /* NaN */
      {"BF16", {0x80, 0xFF}, 2, "w: element 0 is not finite (NaN or Inf)"},  /* -Inf */
      /* FLT_MAX + half an ulp (0x47EFFFFFF0000000): the tie goes to even, Inf */
      {"F64", {0x00, 0x00, 0x00, 0xF0, 0xFF, 0xFF, 0xEF, 0x47}, 8,
       "w: element 0 is beyond the F32 range"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    float w = 42;
    nn_tensor t = {"w", "F32", 0, {0}, &w, 0, NN_CHECK_FINITE};
    char path[512], err[256], hdr[128];
    snprintf(hdr, sizeof hdr, "{\"w\":{\"dtype\":\"%s\",\"shape\":[],\"data_offsets\":[0,%zu]}}",
             cases[k].dtype, cases[k].n);
    write_st(tmp_path(path, sizeof path, "conv_refuse.safetensors"), hdr, cases[k].bytes,
             cases[k].n);
    cr_expect_eq(nn_st_load(path, &t, 1, err, sizeof err), NN_ERR_DATA, "%s: %s", cases[k].dtype,
                 err);
    cr_expect(strstr(err, cases[k].msg), "%s: message \"%s\" lacks \"%s\"", cases[k].dtype, err,
              cases[k].msg);
    cr_expect_eq(w, 42.0f, "%s: the tensor was written", cases[k].dtype);
    remove(path);
  }
  /* I64 loads only from I64 */
  int64_t step = 5;
  nn_tensor st = {"optimizer.step", "I64", 0, {0}, &step, 0, NN_CHECK_STEP};
  char path[512], err[256];
  const float one = 1;
  write_st(tmp_path(path, sizeof path, "conv_step.safetensors"),
           "{\"optimizer.step\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", &one, 4);
  cr_expect_eq(nn_st_load(path, &st, 1, err, sizeof err), NN_ERR_MISMATCH, "%s", err);
  cr_expect(strstr(err, "optimizer.step: dtype F32 in file, model expects I64"), "%s", err);
  cr_expect_eq(step, 5);
  remove(path);
}

Test(safetensors, refuse_wrong_shape) {
  refuse_header("{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,5,5],"
                "\"data_offsets\":[0,200]}," GOOD_B "}",
                80, NN_ERR_MISMATCH,
                "conv1.weight: shape [2,1,5,5] in file, model expects [2,1,3,3]");
  refuse_header("{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[18],"
                "\"data_offsets\":[0,72]}," GOOD_B "}",
                80, NN_ERR_MISMATCH,
                "conv1.weight: shape [18] in file, model expects [2,1,3,3]");
}

Test(safetensors, refuse_missing_tensor) {
  refuse_header("{" GOOD_W "}", 72, NN_ERR_MISMATCH, "missing tensor \"conv1.bias\"");
}

Test(safetensors, refuse_unexpected_tensor) {
  refuse_header("{" GOOD_W "," GOOD_B ",\"foo\":{\"dtype\":\"F32\",\"shape\":[1],"
                "\"data_offsets\":[80,84]}}",
                84, NN_ERR_MISMATCH, "unexpected tensor \"foo\"");
  /* names from the file are escaped in the message */
  refuse_header("{" GOOD_W "," GOOD_B ",\"\\u001b[2J\":{\"dtype\":\"F32\",\"shape\":[1],"
                "\"data_offsets\":[80,84]}}",
                84, NN_ERR_MISMATCH, "unexpected tensor \"\\x1b[2J\"");
}

Test(safetensors, refuse_bad_offsets) {
  /* overlap */
  refuse_header("{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2],"
                "\"data_offsets\":[64,72]}}",
                72, NN_ERR_FORMAT, "conv1.bias: data_offsets overlap");
  /* gap between tensors */
  refuse_header("{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2],"
                "\"data_offsets\":[76,84]}}",
                84, NN_ERR_FORMAT, "conv1.bias: data_offsets leave a gap");
  /* not starting at 0 */
  refuse_header("{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],"
                "\"data_offsets\":[4,76]},\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2],"
                "\"data_offsets\":[76,84]}}",
                84, NN_ERR_FORMAT, "conv1.weight: data_offsets leave a gap");
  /* span disagrees with dtype and shape */
  refuse_header("{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2],"
                "\"data_offsets\":[72,76]}}",
                76, NN_ERR_FORMAT, "conv1.bias: data_offsets span 4 bytes");
  /* offsets beyond the data */
  refuse_header("{" GOOD_W ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[2],"
                "\"data_offsets\":[72,80]}}",
                76, NN_ERR_FORMAT, "cover 80 bytes but the data section has 76");
}

Test(safetensors, refuse_data_size_mismatch) {
  refuse_header(GOOD, 88, NN_ERR_FORMAT, "cover 80 bytes but the data section has 88");
  refuse_header(GOOD, 0, NN_ERR_FORMAT, "cover 80 bytes but the data section has 0");
}

/* ---- the runtime compiles cleanly as generated code ------------------------ */

static int by_strcmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The prelude, then every runtime file in sorted order, as codegen pastes them. */
static void write_runtime_unit(const char *path, const char *real_type) {
  char *names[64];
  int n = 0;
  DIR *d = opendir(NNCC_SOURCE_DIR "/runtime");
  cr_assert(d);
  for (struct dirent *e; (e = readdir(d));) {
    size_t len = strlen(e->d_name);
    if (len > 2 && strcmp(e->d_name + len - 2, ".c") == 0 && n < 64)
      names[n++] = strdup(e->d_name);
  }
  closedir(d);
  cr_assert(n >= 4, "runtime/ has %d files", n);
  qsort(names, (size_t)n, sizeof *names, by_strcmp);
  FILE *out = fopen(path, "w");
  cr_assert(out);
  fprintf(out,
          "#define _POSIX_C_SOURCE 200809L\n"
          "#include <math.h>\n#include <stdint.h>\n#include <stddef.h>\n#include <stdio.h>\n"
          "#include <stdlib.h>\n#include <string.h>\n#include <errno.h>\n#include <fcntl.h>\n"
          "#include <limits.h>\n#include <sys/stat.h>\n#include <time.h>\n#include <unistd.h>\n"
          "typedef %s real;\n#define NN_REAL_DTYPE \"%s\"\n#define NN_REAL_F64 %d\n"
          "#if defined(__GNUC__) || defined(__clang__)\n"
          "#define NN_UNUSED __attribute__((unused))\n#define NN_PREFETCH(p) __builtin_prefetch(p)\n"
          "#else\n#define NN_UNUSED\n#define NN_PREFETCH(p) ((void)(p))\n#endif\n"
          "#define NN_MR %d\n#define NN_NR %d\n#define NN_DR %d\n#define NN_VL %d\n",
          real_type, strcmp(real_type, "float") == 0 ? "F32" : "F64",
          strcmp(real_type, "double") == 0, NN_MR, NN_NR, NN_DR, NN_VL);
  for (int i = 0; i < n; i++) {
    char src[1024];
    size_t len;
    snprintf(src, sizeof src, "%s/runtime/%s", NNCC_SOURCE_DIR, names[i]);
    unsigned char *text = read_bytes(src, &len);
    fwrite(text, 1, len, out);
    free(text);
    free(names[i]);
  }
  cr_assert_eq(fclose(out), 0);
}

static void compile_runtime(const char *cc, const char *real_type) {
  char src[512], log[600], cmd[2048];
  snprintf(src, sizeof src, "%s/rt_%ld_%s_%s.c", NNCC_TEST_TMP, (long)getpid(),
           strrchr(cc, '/') ? strrchr(cc, '/') + 1 : cc, real_type);
  snprintf(log, sizeof log, "%s.log", src);
  write_runtime_unit(src, real_type);
  snprintf(cmd, sizeof cmd,
           "'%s' -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only '%s' > '%s' 2>&1", cc,
           src, log);
  int st = system(cmd);
  size_t n = 0;
  unsigned char *text = read_bytes(log, &n);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s with real = %s:\n%.*s", cc, real_type,
            (int)n, (const char *)text);
  free(text);
  remove(src);
  remove(log);
}

Test(compile, runtime_with_system_cc, .timeout = 60) {
  compile_runtime(NNCC_CC, "float");
  compile_runtime(NNCC_CC, "double");
}

/* gcc and clang both, whichever NNCC_CC is */
Test(compile, runtime_with_gcc_and_clang, .timeout = 60) {
  const char *ccs[] = {"gcc", "clang"};
  int found = 0;
  for (int i = 0; i < 2; i++) {
    char probe[128];
    snprintf(probe, sizeof probe, "command -v %s > /dev/null 2>&1", ccs[i]);
    if (system(probe) != 0)
      continue;
    found++;
    compile_runtime(ccs[i], "float");
    compile_runtime(ccs[i], "double");
  }
  if (!found)
    cr_skip_test("neither gcc nor clang on PATH");
}
