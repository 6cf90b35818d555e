/*
 * mnist_data.h: the digits that scripts/get-mnist writes (IDX files) as
 * floats in [0, 1], and the seeded shuffles, shared by the examples that
 * train on them (train_mnist.c, transfer/transfer.c).  Static functions in
 * a header, so that each example stays one .c file plus its generated model.
 * The includer defines MNIST_PROG, the program name its messages start with.
 */
#ifndef MNIST_DATA_H
#define MNIST_DATA_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SIDE 28
#define PIXELS (SIDE * SIDE)

typedef struct {
  int n;
  float *x;   /* n x 784, [0, 1] */
  int32_t *y; /* n labels 0..9 */
} Set;

/* ---- data -------------------------------------------------------------- */

/* A big-endian IDX file of unsigned bytes: magic 00 00 08 <ndims>, the
 * dims, then exactly prod(dims) bytes.  Returns the malloc'd data and the
 * first dim (the count) in *count, or NULL after printing why. */
static unsigned char *load_idx(const char *path, int ndims, const int *want, int *count) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, MNIST_PROG ": cannot open %s (run scripts/get-mnist)\n", path);
    return NULL;
  }
  unsigned char h[16];
  long n = 1, size = -1;
  int ok = fread(h, 1, 4 + 4 * (size_t)ndims, f) == 4 + 4 * (size_t)ndims && h[0] == 0 &&
           h[1] == 0 && h[2] == 8 && h[3] == ndims;
  for (int i = 0; ok && i < ndims; i++) {
    long d = (long)h[4 + 4 * i] << 24 | h[5 + 4 * i] << 16 | h[6 + 4 * i] << 8 | h[7 + 4 * i];
    ok = d > 0 && d <= 100000 && (i == 0 || d == want[i]);
    n *= d;
    if (i == 0)
      *count = (int)d;
  }
  if (ok && fseek(f, 0, SEEK_END) == 0)
    size = ftell(f);
  ok = ok && size == 4 + 4 * ndims + n && fseek(f, 4 + 4 * ndims, SEEK_SET) == 0;
  unsigned char *data = ok ? malloc((size_t)n) : NULL;
  if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
    free(data);
    data = NULL;
  }
  fclose(f);
  if (!data)
    fprintf(stderr, MNIST_PROG ": %s is not a valid IDX file of the expected shape "
                    "(delete data/ and run scripts/get-mnist)\n", path);
  return data;
}

static void free_set(Set *s) {
  free(s->x);
  free(s->y);
  *s = (Set){0, NULL, NULL};
}

/* data/<name>-images-idx3-ubyte and -labels-idx1-ubyte into a Set; on
 * failure it prints why and leaves *s empty. */
static int load_set(const char *dir, const char *name, Set *s) {
  char ip[1024], lp[1024];
  snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte", dir, name);
  snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte", dir, name);
  const int img_dims[3] = {0, SIDE, SIDE}, lab_dims[1] = {0};
  int ni = 0, nl = 0;
  unsigned char *img = load_idx(ip, 3, img_dims, &ni);
  unsigned char *lab = img ? load_idx(lp, 1, lab_dims, &nl) : NULL;
  int ok = lab && ni == nl;
  if (lab && !ok)
    fprintf(stderr, MNIST_PROG ": %s has %d images but %s has %d labels\n", ip, ni, lp, nl);
  for (int i = 0; ok && i < nl; i++)
    if (lab[i] > 9) {
      fprintf(stderr, MNIST_PROG ": %s: label %d of digit %d is out of range 0..9\n", lp, lab[i], i);
      ok = 0;
    }
  s->n = ni;
  s->x = ok ? malloc(sizeof *s->x * (size_t)ni * PIXELS) : NULL;
  s->y = ok ? malloc(sizeof *s->y * (size_t)ni) : NULL;
  if (ok && (!s->x || !s->y)) {
    fprintf(stderr, MNIST_PROG ": out of memory for %d digits\n", ni);
    ok = 0;
  }
  for (long i = 0; ok && i < (long)ni * PIXELS; i++)
    s->x[i] = img[i] / 255.0f;
  for (int i = 0; ok && i < ni; i++)
    s->y[i] = lab[i];
  free(img);
  free(lab);
  if (!ok)
    free_set(s);
  return ok;
}

/* ---- random numbers: splitmix64, deterministic for (seed, epoch) --------- */

static uint64_t next_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static int below(uint64_t *s, int n) { return (int)(next_u64(s) % (uint64_t)n); }

static void shuffle(int *idx, int n, uint64_t *rng) {
  for (int i = n - 1; i > 0; i--) {
    int j = below(rng, i + 1), t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
}

#endif
