/*
 * fuzz_idx.c: libFuzzer harness for the IDX reader (runtime/nn_idx.c).
 *
 * The runtime is compiled straight into the harness after the prelude every
 * generated file starts with, as tests/test_mnist.c does.  Each input is
 * loaded as a labels, an images and a 2-dim file, and the reader's promises
 * are checked besides "no crash": on success the dims multiply to the data
 * size and the data are the file's bytes after the header; on failure
 * *data is NULL and the message names the file.  One of the loads gets an
 * error buffer of exactly 8 bytes, so AddressSanitizer sees any overrun.
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
#include "../../runtime/nn_idx.c"

#define CHECK(cond)                                                                         \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      fprintf(stderr, "fuzz_idx: property failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                              \
    }                                                                                       \
  } while (0)

static void load(const char *path, const uint8_t *file, size_t size, int ndims, size_t errcap) {
  int32_t dims[3] = {-1, -1, -1};
  unsigned char *data = (unsigned char *)&dims; /* must become NULL or a fresh block */
  char *err = malloc(errcap);
  int st = nn_idx_load_u8(path, ndims, dims, &data, err, errcap);
  CHECK(memchr(err, '\0', errcap)); /* always terminated */
  if (st == NN_OK) {
    size_t header = 4 + 4 * (size_t)ndims, n = 1;
    for (int i = 0; i < 3; i++) {
      CHECK(dims[i] > 0);
      CHECK(i < ndims || dims[i] == 1);
      n *= (size_t)dims[i];
    }
    CHECK(data && header + n == size);
    CHECK(memcmp(data, file + header, n) == 0);
    CHECK(file[2] == 0x08 && file[3] == ndims);
  } else {
    CHECK(st == NN_ERR_DATA || st == NN_ERR_NOMEM || st == NN_ERR_IO);
    CHECK(data == NULL);
    CHECK(errcap < 64 || (err[0] && strstr(err, path) == err));
  }
  free(data);
  free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size);
  load(path, data, size, 1, 256);
  load(path, data, size, 2, 256);
  load(path, data, size, 3, 256);
  load(path, data, size, size > 3 && data[3] >= 1 && data[3] <= 3 ? data[3] : 1, 8);
  return 0;
}
