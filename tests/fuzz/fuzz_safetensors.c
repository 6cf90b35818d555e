/*
 * fuzz_safetensors.c: libFuzzer harness for the safetensors reader
 * (runtime/nn_safetensors.c, nn_st_load).
 *
 * The runtime is compiled straight into the harness after the prelude every
 * generated file starts with, as tests/test_runtime.c does.  Each input is
 * loaded against three tensor tables (a conv layer; a mix of dtypes with an
 * optional tensor and an ignore pattern, as an inference build loading a
 * training checkpoint uses; an empty model), each twice, into memory filled
 * with two different sentinels.  Besides "no crash" the reader's promises
 * are checked:
 *   - a refused load leaves every tensor untouched and says why;
 *   - both loads return the same status and message;
 *   - an accepted load overwrites every required tensor completely (the two
 *     sentinels give the same bytes) with bytes taken from the data section;
 *   - the message is NUL-terminated at any capacity: one load gets a buffer
 *     of exactly 8 bytes (AddressSanitizer sees any overrun), one none.
 */
#define _GNU_SOURCE
#include "fuzz_file.h"

/* The prelude of every generated file (codegen.c, emit_prelude). */
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
#define NN_UNUSED __attribute__((unused))

#include "../../runtime/nn_errors.c"
#include "../../runtime/nn_safetensors.c"

#define CHECK(cond)                                                                         \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      fprintf(stderr, "fuzz_safetensors: property failed at %s:%d: %s\n", __FILE__,       \
              __LINE__, #cond);                                                             \
      abort();                                                                              \
    }                                                                                       \
  } while (0)

#define NT 4
typedef struct {
  const char *what;
  int count;
  nn_tensor t[NT];
} Table;

/* Data pointers are filled in per load (NULL stays NULL: an ignore pattern). */
#define T(n, dt, r, ...) {.name = n, .dtype = dt, .rank = r, .shape = {__VA_ARGS__}, .data = (void *)1}
static const Table tables[] = {
    {"conv", 2, {T("conv1.weight", "F32", 4, 2, 1, 3, 3), T("conv1.bias", "F32", 1, 2)}},
    {"mixed", 4,
     {T("attn.0", "F32", 3, 1, 2, 3), T("bn1.running_var", "F64", 1, 2),
      {.name = "bn1.num_batches_tracked", .dtype = "I64", .data = (void *)1, .optional = 1,
       .check = NN_CHECK_COUNT},
      {.name = "optimizer.*", .dtype = "F32", .optional = 1}}},
    {"empty", 0, {{0}}},
};

static size_t tensor_bytes(const nn_tensor *t) {
  size_t n = nn_st_dtype_size(t->dtype, strlen(t->dtype));
  for (int d = 0; d < t->rank; d++)
    n *= (size_t)t->shape[d];
  return n;
}

typedef struct {
  int rc;
  char err[256];
  unsigned char *buf[NT];
} Load;

/* Loads path against tb into fresh buffers filled with `fill`. */
static void load(Load *l, const char *path, const Table *tb, unsigned char fill) {
  nn_tensor t[NT];
  memcpy(t, tb->t, sizeof t);
  for (int i = 0; i < tb->count; i++) {
    l->buf[i] = NULL;
    if (t[i].data) {
      l->buf[i] = malloc(tensor_bytes(&t[i]));
      memset(l->buf[i], fill, tensor_bytes(&t[i]));
      t[i].data = l->buf[i];
    }
  }
  l->rc = nn_st_load(path, t, tb->count, l->err, sizeof l->err);
  CHECK(memchr(l->err, '\0', sizeof l->err));
}

static int all_bytes(const unsigned char *p, size_t n, unsigned char v) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != v)
      return 0;
  return 1;
}

static void check_table(const char *path, const uint8_t *file, size_t size, const Table *tb) {
  Load a, b;
  load(&a, path, tb, 0xAB);
  load(&b, path, tb, 0x5C);
  CHECK(a.rc == b.rc && strcmp(a.err, b.err) == 0);
  if (a.rc != NN_OK) {
    CHECK(a.rc == NN_ERR_FORMAT || a.rc == NN_ERR_MISMATCH || a.rc == NN_ERR_NOMEM ||
          a.rc == NN_ERR_IO || a.rc == NN_ERR_DATA);
    CHECK(a.err[0] != '\0');
    for (int i = 0; i < tb->count; i++)
      CHECK(!a.buf[i] || all_bytes(a.buf[i], tensor_bytes(&tb->t[i]), 0xAB));
  } else {
    CHECK(size >= 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
      hlen = hlen << 8 | file[i];
    CHECK(hlen <= size - 8);
    const uint8_t *section = file + 8 + hlen;
    size_t datasize = size - 8 - (size_t)hlen;
    for (int i = 0; i < tb->count; i++) {
      size_t n = tensor_bytes(&tb->t[i]);
      if (!a.buf[i] || (tb->t[i].optional && all_bytes(a.buf[i], n, 0xAB) &&
                        all_bytes(b.buf[i], n, 0x5C)))
        continue; /* a pattern, or an optional tensor the file lacks */
      CHECK(memcmp(a.buf[i], b.buf[i], n) == 0);
      CHECK(memmem(section, datasize, a.buf[i], n) != NULL);
    }
  }
  for (int i = 0; i < tb->count; i++) {
    free(a.buf[i]);
    free(b.buf[i]);
  }
}

/* The message at a tiny capacity, and with no buffer at all. */
static void check_small_buffers(const char *path) {
  float w[18], bias[2];
  nn_tensor t[2];
  memcpy(t, tables[0].t, sizeof t);
  t[0].data = w;
  t[1].data = bias;
  char *err = malloc(8);
  nn_st_load(path, t, 2, err, 8);
  CHECK(memchr(err, '\0', 8));
  free(err);
  nn_st_load(path, t, 2, NULL, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size);
  for (size_t i = 0; i < sizeof tables / sizeof *tables; i++)
    check_table(path, data, size, &tables[i]);
  check_small_buffers(path);
  return 0;
}
