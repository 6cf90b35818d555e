/*
 * nn_idx.c: read the IDX files of MNIST-style data sets (unsigned bytes).
 *
 * Layout: magic 00 00 08 <ndims> (0x08 = unsigned byte), ndims big-endian
 * uint32 dims, then prod(dims) bytes in C order and nothing after them.
 * Images are 0x00000803 (n, rows, cols), labels 0x00000801 (n).
 *
 * The file is untrusted: the magic, the number of dims, every dim (> 0, at
 * most 2^31 - 1), the product (overflow-checked, at most NN_IDX_MAX_BYTES)
 * and the exact file size are checked before anything is allocated, so a
 * truncated, padded or foreign file is refused with a message that names the
 * file and the problem.  Used by the --main drivers and by test programs;
 * left out by -DNN_NO_FILES.
 */
#ifndef NN_NO_FILES

#define NN_IDX_MAX_BYTES ((uint64_t)1 << 32) /* 4 GiB: far above any IDX data set */

static NN_UNUSED int nn_idx_fail(char *err, size_t errcap, int status, const char *path,
                                 const char *what) {
  if (err && errcap)
    snprintf(err, errcap, "%s: %s", path, what);
  return status;
}

/* Reads the 4-byte magic and the dims; fills dims[0..2] (unused ones = 1)
 * and the expected data size in *bytes. */
static NN_UNUSED int nn_idx_header(FILE *f, const char *path, int expect_ndims, int32_t dims[3],
                                   uint64_t *bytes, char *err, size_t errcap) {
  unsigned char h[16];
  char msg[160];
  if (fread(h, 1, 4, f) != 4)
    return nn_idx_fail(err, errcap, NN_ERR_DATA, path, "too short for an IDX header");
  if (h[0] != 0 || h[1] != 0 || h[2] != 0x08 || h[3] < 1 || h[3] > 3) {
    snprintf(msg, sizeof msg, "not an IDX file of bytes (magic %02x%02x%02x%02x)", h[0], h[1],
             h[2], h[3]);
    return nn_idx_fail(err, errcap, NN_ERR_DATA, path, msg);
  }
  if (h[3] != expect_ndims) {
    snprintf(msg, sizeof msg, "has %d dimensions, expected %d (%s)", h[3], expect_ndims,
             expect_ndims == 1 ? "a labels file" : "an images file");
    return nn_idx_fail(err, errcap, NN_ERR_DATA, path, msg);
  }
  if (fread(h + 4, 4, (size_t)expect_ndims, f) != (size_t)expect_ndims)
    return nn_idx_fail(err, errcap, NN_ERR_DATA, path, "truncated in its header");
  uint64_t total = 1;
  for (int i = 0; i < 3; i++) {
    const unsigned char *p = h + 4 + 4 * i;
    uint32_t d = i < expect_ndims ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                                        (uint32_t)p[2] << 8 | (uint32_t)p[3]
                                  : 1;
    if (d == 0 || d > INT32_MAX) {
      snprintf(msg, sizeof msg, "dimension %d is %lu (must be 1..2147483647)", i,
               (unsigned long)d);
      return nn_idx_fail(err, errcap, NN_ERR_DATA, path, msg);
    }
    total *= d; /* no overflow: total <= 2^32 before, d < 2^31 */
    if (total > NN_IDX_MAX_BYTES || (uint64_t)(size_t)total != total)
      return nn_idx_fail(err, errcap, NN_ERR_DATA, path, "dimensions too large (over 4 GiB)");
    dims[i] = (int32_t)d;
  }
  *bytes = total;
  return NN_OK;
}

/* Loads an IDX file of expect_ndims (1..3) dims into a malloc'd *data (the
 * caller frees it).  On failure *data is NULL and err holds one line. */
static NN_UNUSED int nn_idx_load_u8(const char *path, int expect_ndims, int32_t dims[3],
                                    unsigned char **data, char *err, size_t errcap) {
  if (err && errcap)
    err[0] = '\0';
  if (!path || !dims || !data || expect_ndims < 1 || expect_ndims > 3)
    return nn_idx_fail(err, errcap, NN_ERR_ARG, path ? path : "(null)", "bad argument");
  *data = NULL;
  FILE *f = fopen(path, "rb");
  if (!f)
    return nn_idx_fail(err, errcap, NN_ERR_IO, path, strerror(errno));
  uint64_t bytes = 0;
  int status = nn_idx_header(f, path, expect_ndims, dims, &bytes, err, errcap);
  long start = ftell(f), end = -1;
  if (status == NN_OK && start >= 0 && fseek(f, 0, SEEK_END) == 0)
    end = ftell(f);
  if (status == NN_OK && (end < 0 || fseek(f, start, SEEK_SET) != 0))
    status = nn_idx_fail(err, errcap, NN_ERR_IO, path, "cannot determine the file size");
  if (status == NN_OK && (uint64_t)(end - start) != bytes) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: the dimensions need %llu data bytes, the file has %llu",
             (uint64_t)(end - start) < bytes ? "truncated" : "trailing bytes",
             (unsigned long long)bytes, (unsigned long long)(end - start));
    status = nn_idx_fail(err, errcap, NN_ERR_DATA, path, msg);
  }
  if (status == NN_OK && !(*data = malloc((size_t)bytes)))
    status = nn_idx_fail(err, errcap, NN_ERR_NOMEM, path, "out of memory");
  if (status == NN_OK && fread(*data, 1, (size_t)bytes, f) != (size_t)bytes)
    status = nn_idx_fail(err, errcap, NN_ERR_IO, path, "read error");
  fclose(f);
  if (status != NN_OK) {
    free(*data);
    *data = NULL;
  }
  return status;
}
#endif /* NN_NO_FILES */
