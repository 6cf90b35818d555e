/*
 * nn_safetensors.c: save and load a model's tensors as a safetensors file.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON, then the
 * data section, every tensor row-major and little-endian:
 *   {"__metadata__":{"k":"v"},"fc.weight":{"dtype":"F32","shape":[10,84],
 *    "data_offsets":[0,3360]},...}
 * Offsets are relative to the data section and must tile it exactly.
 *
 * The model describes its tensors with a table of nn_tensor.  Saving writes
 * them in table order to a temporary file beside path and renames it over
 * path (see "saving: the file"), so a failed save leaves the old file as it
 * was.  It needs POSIX (open, fsync, O_NOFOLLOW): the prelude defines
 * _POSIX_C_SOURCE and includes <fcntl.h>, <sys/stat.h> and <unistd.h>.
 *
 * Loading is all-or-nothing: the header is parsed by the small strict JSON
 * parser below and checked against the table, the data section is read into
 * a staging buffer, and only then are the model's tensors overwritten.
 * Files written by other tools (PyTorch's safetensors) keep their own tensor
 * order: names are matched, and offsets only have to cover the data section
 * without holes or overlaps.  A real tensor (F32, F64 in the table) loads
 * from any of F16, BF16, F32 and F64 in the file, converted to the table's
 * dtype: exactly, except F64 to F32, which rounds to nearest even (a value
 * beyond the F32 range is refused, as NaN and Inf are).  I64 only loads from
 * I64.
 *
 * The file is untrusted: every size is checked before it is used, and names
 * from it are escaped before they go into an error message.
 *
 * -DNN_NO_FILES leaves all of it out, with the model's save and load: for a
 * libc without files, and a third less compile time for a small model.
 */
#ifndef NN_NO_FILES

typedef struct nn_tensor {
  const char *name;  /* e.g. "conv1.weight" */
  const char *dtype; /* "F32", "F64" or "I64" (a file's F16, BF16 load into F32, F64) */
  int rank;          /* 0..4 */
  int64_t shape[4];
  void *data;   /* host byte order; converted to/from little-endian */
  int optional; /* may be absent from a file being loaded (then left untouched) */
  int check;    /* what load requires of the values: NN_CHECK_* */
} nn_tensor;

/* Values load accepts (the model is not touched unless all pass). */
enum {
  NN_CHECK_NONE = 0,
  NN_CHECK_FINITE = 1, /* weights, first moments: no NaN or Inf */
  NN_CHECK_NONNEG = 2, /* variances, second moments (exp_avg_sq, ...): finite, >= 0 */
  NN_CHECK_STEP = 3,   /* the I64 step count: 0 <= step < INT64_MAX (it is incremented) */
  NN_CHECK_COUNT = 4,  /* an I64 counter (num_batches_tracked): >= 0 */
  NN_CHECK_SAME = 5    /* read-only data (baked weights): the file must hold these very
                          values, bit for bit (NN_ERR_ARG if not); nothing is written */
};

#define NN_ST_MAX_HEADER 100000000u /* largest header accepted, as in safetensors */
#define NN_ST_MAX_RANK   8          /* largest rank parsed from a file */

/* ---- error messages ------------------------------------------------------
 * A bounded writer into the caller's buffer: output beyond errcap is
 * dropped, the buffer stays NUL-terminated, and nothing is allocated, so it
 * works on the out-of-memory paths too. */

typedef struct {
  char *buf;
  size_t cap, len;
} nn_msg;

static NN_UNUSED nn_msg nn_msg_init(char *buf, size_t cap) {
  nn_msg m = {buf, buf ? cap : 0, 0};
  if (m.cap)
    buf[0] = '\0';
  return m;
}

static NN_UNUSED void nn_msg_put(nn_msg *m, const char *s, size_t n) {
  for (size_t i = 0; i < n && m->len + 1 < m->cap; i++)
    m->buf[m->len++] = s[i];
  if (m->cap)
    m->buf[m->len] = '\0';
}

static NN_UNUSED void nn_msg_str(nn_msg *m, const char *s) { nn_msg_put(m, s, strlen(s)); }

/* Untrusted text: printable ASCII as is, anything else as \xNN, capped. */
static NN_UNUSED void nn_msg_name(nn_msg *m, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i == 160) {
      nn_msg_str(m, "...");
      return;
    }
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
      nn_msg_put(m, (const char *)&c, 1);
    } else {
      char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
      nn_msg_put(m, e, 4);
    }
  }
}

static NN_UNUSED void nn_msg_quoted(nn_msg *m, const char *s, size_t n) {
  nn_msg_str(m, "\"");
  nn_msg_name(m, s, n);
  nn_msg_str(m, "\"");
}

static NN_UNUSED void nn_msg_u64(nn_msg *m, uint64_t v) {
  char b[24];
  snprintf(b, sizeof b, "%llu", (unsigned long long)v);
  nn_msg_str(m, b);
}

static NN_UNUSED void nn_msg_shape(nn_msg *m, int rank, const int64_t *shape) {
  nn_msg_str(m, "[");
  for (int i = 0; i < rank; i++) {
    if (i)
      nn_msg_str(m, ",");
    nn_msg_u64(m, (uint64_t)shape[i]);
  }
  nn_msg_str(m, "]");
}

/* "<what> \"path\": <strerror(errno)>" */
static NN_UNUSED int nn_msg_io(nn_msg *m, const char *what, const char *path, int errnum) {
  nn_msg_str(m, what);
  nn_msg_str(m, " ");
  nn_msg_quoted(m, path, strlen(path));
  if (errnum) {
    nn_msg_str(m, ": ");
    nn_msg_str(m, strerror(errnum));
  }
  return NN_ERR_IO;
}

/* ---- sizes and byte order ------------------------------------------------ */

/* The dtypes read and written; a file's F16 and BF16 load by conversion. */
enum { NN_ST_BAD, NN_ST_F16, NN_ST_BF16, NN_ST_F32, NN_ST_F64, NN_ST_I64 };

static NN_UNUSED int nn_st_dtype_code(const char *dtype, size_t len) {
  static const char *const names[] = {"", "F16", "BF16", "F32", "F64", "I64"};
  for (int c = NN_ST_F16; c <= NN_ST_I64; c++)
    if (len == strlen(names[c]) && memcmp(dtype, names[c], len) == 0)
      return c;
  return NN_ST_BAD;
}

static NN_UNUSED size_t nn_st_code_size(int code) {
  static const size_t size[] = {0, 2, 2, 4, 8, 8};
  return size[code];
}

static NN_UNUSED size_t nn_st_dtype_size(const char *dtype, size_t len) {
  return nn_st_code_size(nn_st_dtype_code(dtype, len));
}

/* Product of the dims times esize into *bytes; 0 if a dim is negative or
 * the product does not fit in size_t. */
static NN_UNUSED int nn_st_nbytes(int rank, const int64_t *shape, size_t esize,
                                  uint64_t *bytes) {
  uint64_t n = esize;
  for (int i = 0; i < rank; i++) {
    if (shape[i] < 0)
      return 0;
    if (shape[i] != 0 && n > SIZE_MAX / (uint64_t)shape[i])
      return 0;
    n *= (uint64_t)shape[i];
  }
  *bytes = n;
  return 1;
}

static NN_UNUSED int nn_st_host_is_le(void) {
  const uint32_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}

/* Reverse the bytes of each esize-byte element: host <-> little-endian on a
 * big-endian host. */
static NN_UNUSED void nn_st_swap(unsigned char *p, size_t nbytes, size_t esize) {
  for (size_t i = 0; i + esize <= nbytes; i += esize)
    for (size_t a = i, b = i + esize - 1; a < b; a++, b--) {
      unsigned char c = p[a];
      p[a] = p[b];
      p[b] = c;
    }
}

/* Check one table entry the caller passed; the table is trusted, so this
 * only catches programming errors. */
static NN_UNUSED int nn_st_check_table(const nn_tensor *t, size_t *esize, uint64_t *bytes,
                                       nn_msg *m) {
  if (!t->name || !t->dtype || !t->data || t->rank < 0 || t->rank > 4 ||
      strcmp(t->name, "__metadata__") == 0) {
    nn_msg_str(m, "bad tensor table entry ");
    nn_msg_quoted(m, t->name ? t->name : "(null)", t->name ? strlen(t->name) : 6);
    return NN_ERR_ARG;
  }
  int code = nn_st_dtype_code(t->dtype, strlen(t->dtype)); /* the model's: F16, BF16 only load */
  *esize = code == NN_ST_F32 || code == NN_ST_F64 || code == NN_ST_I64 ? nn_st_code_size(code) : 0;
  if (*esize == 0 || !nn_st_nbytes(t->rank, t->shape, *esize, bytes)) {
    nn_msg_name(m, t->name, strlen(t->name));
    nn_msg_str(m, ": unsupported dtype or bad shape in tensor table");
    return NN_ERR_ARG;
  }
  return NN_OK;
}

/* ---- saving -------------------------------------------------------------- */

/* Growable header text; oom is sticky so appends need no checks. */
typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} nn_sbuf;

static NN_UNUSED void nn_sb_put(nn_sbuf *b, const char *s, size_t n) {
  if (b->oom)
    return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static NN_UNUSED void nn_sb_str(nn_sbuf *b, const char *s) { nn_sb_put(b, s, strlen(s)); }

static NN_UNUSED void nn_sb_u64(nn_sbuf *b, uint64_t v) {
  char d[24];
  snprintf(d, sizeof d, "%llu", (unsigned long long)v);
  nn_sb_str(b, d);
}

/* A JSON string: quote and backslash escaped, control characters as \u00XX;
 * other bytes (UTF-8) as they are. */
static NN_UNUSED void nn_sb_json(nn_sbuf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  nn_sb_str(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      nn_sb_put(b, e, 2);
    } else if (c < 0x20) {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      nn_sb_put(b, e, 6);
    } else {
      nn_sb_put(b, s, 1);
    }
  }
  nn_sb_str(b, "\"");
}

/* The header JSON, in table order, padded with spaces to a multiple of 8. */
static NN_UNUSED int nn_st_header(nn_sbuf *h, const nn_tensor *t, int count,
                                  const char *const *meta, nn_msg *m) {
  int first = 1;
  nn_sb_str(h, "{");
  if (meta && meta[0]) {
    nn_sb_str(h, "\"__metadata__\":{");
    for (int i = 0; meta[i]; i += 2) {
      if (!meta[i + 1]) {
        nn_msg_str(m, "metadata key without a value");
        return NN_ERR_ARG;
      }
      nn_sb_str(h, i ? "," : "");
      nn_sb_json(h, meta[i]);
      nn_sb_str(h, ":");
      nn_sb_json(h, meta[i + 1]);
    }
    nn_sb_str(h, "}");
    first = 0;
  }
  uint64_t off = 0;
  for (int i = 0; i < count; i++) {
    size_t esize;
    uint64_t bytes;
    int rc = nn_st_check_table(&t[i], &esize, &bytes, m);
    for (int j = 0; rc == NN_OK && j < i; j++)
      if (strcmp(t[i].name, t[j].name) == 0) {
        nn_msg_str(m, "duplicate tensor name ");
        nn_msg_quoted(m, t[i].name, strlen(t[i].name));
        rc = NN_ERR_ARG;
      }
    if (rc != NN_OK)
      return rc;
    nn_sb_str(h, first ? "" : ",");
    first = 0;
    nn_sb_json(h, t[i].name);
    nn_sb_str(h, ":{\"dtype\":");
    nn_sb_json(h, t[i].dtype);
    nn_sb_str(h, ",\"shape\":[");
    for (int d = 0; d < t[i].rank; d++) {
      nn_sb_str(h, d ? "," : "");
      nn_sb_u64(h, (uint64_t)t[i].shape[d]);
    }
    nn_sb_str(h, "],\"data_offsets\":[");
    nn_sb_u64(h, off);
    nn_sb_str(h, ",");
    off += bytes; /* cannot wrap: each tensor is in memory */
    nn_sb_u64(h, off);
    nn_sb_str(h, "]}");
  }
  nn_sb_str(h, "}");
  while (!h->oom && h->len % 8)
    nn_sb_str(h, " ");
  if (h->oom) {
    nn_msg_str(m, "out of memory building the header");
    return NN_ERR_NOMEM;
  }
  if (h->len > NN_ST_MAX_HEADER) {
    nn_msg_str(m, "header longer than readers accept (100000000 bytes)");
    return NN_ERR_ARG;
  }
  return NN_OK;
}

/* write() all n bytes of p, through short writes and EINTR. */
static NN_UNUSED int nn_st_write_all(int fd, const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  while (n > 0) {
    ssize_t k = write(fd, b, n < ((size_t)1 << 30) ? n : (size_t)1 << 30);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return 0;
    b += k;
    n -= (size_t)k;
  }
  return 1;
}

/* nbytes of host-order elements as little-endian. */
static NN_UNUSED int nn_st_write_le(int fd, const void *data, size_t nbytes, size_t esize) {
  if (nn_st_host_is_le())
    return nn_st_write_all(fd, data, nbytes);
  unsigned char chunk[4096]; /* a multiple of every esize */
  for (size_t done = 0; done < nbytes;) {
    size_t n = nbytes - done < sizeof chunk ? nbytes - done : sizeof chunk;
    memcpy(chunk, (const unsigned char *)data + done, n);
    nn_st_swap(chunk, n, esize);
    if (!nn_st_write_all(fd, chunk, n))
      return 0;
    done += n;
  }
  return 1;
}

/* ---- saving: the file ------------------------------------------------------
 * What is at path stays intact until a complete new file is on disk: the data
 * goes to a fresh temporary file beside path, created with O_CREAT | O_EXCL |
 * O_NOFOLLOW under an unpredictable name (so concurrent savers never share a
 * file and a planted symlink is never followed), synced with fsync, renamed
 * over path (atomic on POSIX: readers see the old file or the new one) and
 * the directory synced so that the rename survives a crash.  Of two
 * concurrent saves to one path, the later rename wins; neither file is
 * mixed or truncated.  Only calls declared whatever feature macros the
 * including file set (open, write, fsync: a unity build may include system
 * headers before the prelude's _POSIX_C_SOURCE); O_EXCL alone already never
 * follows a link, O_NOFOLLOW and O_CLOEXEC are added where declared. */

#ifndef O_NOFOLLOW
#define O_NOFOLLOW 0
#endif
#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif
#ifndef O_DIRECTORY
#define O_DIRECTORY 0
#endif

static NN_UNUSED uint64_t nn_st_mix(uint64_t x) { /* splitmix64's finalizer */
  x += UINT64_C(0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/* The directory of path ("." when it has none) into a malloc'd string. */
static NN_UNUSED char *nn_st_dirname(const char *path) {
  const char *slash = strrchr(path, '/');
  size_t len = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
  char *d = malloc(len + 1);
  if (d) {
    memcpy(d, slash ? path : ".", len);
    d[len] = '\0';
  }
  return d;
}

/* Creates "<dir>/.<base>.<16 hex>.tmp" (base cut to 64 bytes to stay
 * within NAME_MAX) exclusively; returns its descriptor, the name in *tmp,
 * or a status (negative, like every NN_ERR_*). */
static NN_UNUSED int nn_st_create_temp(const char *path, char **tmp, nn_msg *m) {
  static const char hex[] = "0123456789abcdef";
  const char *slash = strrchr(path, '/');
  size_t dlen = slash ? (size_t)(slash - path) + 1 : 0, blen = strlen(path + dlen);
  blen = blen > 64 ? 64 : blen;
  *tmp = malloc(dlen + blen + 23);
  if (!*tmp) {
    nn_msg_str(m, "out of memory");
    return NN_ERR_NOMEM;
  }
  int local = 0;
  uint64_t seed = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL) ^ (uint64_t)clock() << 16 ^
                  (uint64_t)(uintptr_t)&local;
  for (int attempt = 0; attempt < 100; attempt++) {
    uint64_t r = nn_st_mix(seed + (uint64_t)attempt);
    char *p = *tmp;
    memcpy(p, path, dlen);
    p += dlen;
    *p++ = '.';
    memcpy(p, path + dlen, blen);
    p += blen;
    *p++ = '.';
    for (int i = 0; i < 16; i++)
      *p++ = hex[r >> (4 * i) & 15];
    memcpy(p, ".tmp", 5);
    int fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) {
      if (fd < 0)
        nn_msg_io(m, "cannot create a temporary file for", path, errno);
      return fd < 0 ? NN_ERR_IO : fd;
    }
  }
  nn_msg_io(m, "cannot create a temporary file for", path, EEXIST);
  return NN_ERR_IO;
}

/* Header length, header, data into the open temporary file; synced. */
static NN_UNUSED int nn_st_write_data(int fd, const nn_sbuf *h, const nn_tensor *t, int count) {
  unsigned char len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (unsigned char)((uint64_t)h->len >> (8 * i));
  int ok = nn_st_write_all(fd, len8, 8) && nn_st_write_all(fd, h->p, h->len);
  for (int i = 0; ok && i < count; i++) {
    size_t esize = nn_st_dtype_size(t[i].dtype, strlen(t[i].dtype));
    uint64_t bytes = 0;
    nn_st_nbytes(t[i].rank, t[i].shape, esize, &bytes); /* checked by nn_st_header */
    ok = nn_st_write_le(fd, t[i].data, (size_t)bytes, esize);
  }
  return ok && fsync(fd) == 0;
}

/* fsync of the directory that holds the renamed file.  As SQLite does, a
 * directory that cannot be opened (no read permission) is not an error:
 * the file is in place, only its durability across a crash is not known. */
static NN_UNUSED int nn_st_sync_dir(const char *path) {
  char *dir = nn_st_dirname(path);
  int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
  int ok = fd < 0 || fsync(fd) == 0 || errno == EINVAL; /* EINVAL: cannot sync dirs */
  int errnum = errno;
  if (fd >= 0)
    close(fd);
  free(dir);
  errno = errnum;
  return ok;
}

static NN_UNUSED int nn_st_write_file(const char *path, const nn_sbuf *h, const nn_tensor *t,
                                      int count, nn_msg *m) {
  char *tmp = NULL;
  int fd = nn_st_create_temp(path, &tmp, m);
  if (fd < 0) {
    free(tmp);
    return fd;
  }
  errno = 0; /* so a failure below reports its own cause, if any */
  int ok = nn_st_write_data(fd, h, t, count);
  int errnum = errno;
  if (close(fd) != 0 && ok) {
    ok = 0;
    errnum = errno;
  }
  int rc = NN_OK, renamed = 0;
  if (!ok)
    rc = nn_msg_io(m, "cannot write", path, errnum);
  else if (!(renamed = rename(tmp, path) == 0))
    rc = nn_msg_io(m, "cannot rename a temporary file over", path, errno);
  else if (!nn_st_sync_dir(path))
    rc = nn_msg_io(m, "saved, but cannot sync the directory of", path, errno);
  if (!renamed)
    unlink(tmp);
  free(tmp);
  return rc;
}

/* A path save can replace: not empty, not a directory (rename would fail
 * only after the data were written, or replace an empty directory). */
static NN_UNUSED int nn_st_check_path(const char *path, nn_msg *m) {
  struct stat st;
  size_t len = strlen(path);
  if (len == 0) {
    nn_msg_str(m, "empty path");
    return NN_ERR_ARG;
  }
  if (path[len - 1] == '/' || (stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
    nn_msg_quoted(m, path, len);
    nn_msg_str(m, " is a directory, not a file");
    return NN_ERR_ARG;
  }
  return NN_OK;
}

/*
 * Write tensors t[0..count) to path.  meta is NULL or a NULL-terminated list
 * of key, value strings stored in "__metadata__".  Returns NN_OK, NN_ERR_ARG
 * (also for an empty path or a directory), NN_ERR_IO or NN_ERR_NOMEM; on
 * failure err (errcap bytes, may be NULL) says why and any previous file at
 * path is unchanged.
 */
static NN_UNUSED int nn_st_save(const char *path, const nn_tensor *t, int count,
                                const char *const *meta, char *err, size_t errcap) {
  nn_msg m = nn_msg_init(err, errcap);
  if (!path || count < 0 || (count > 0 && !t)) {
    nn_msg_str(&m, "nn_st_save: NULL path or tensor table");
    return NN_ERR_ARG;
  }
  int rc = nn_st_check_path(path, &m);
  if (rc != NN_OK)
    return rc;
  nn_sbuf h = {NULL, 0, 0, 0};
  rc = nn_st_header(&h, t, count, meta, &m);
  if (rc == NN_OK)
    rc = nn_st_write_file(path, &h, t, count, &m);
  free(h.p);
  return rc;
}

/* ---- header parser --------------------------------------------------------
 * Strict JSON for exactly the safetensors header: one object whose values
 * are tensor objects {"dtype": string, "shape": [uint...], "data_offsets":
 * [uint, uint]} plus an optional "__metadata__" object of strings.  Strings
 * are decoded in place (decoding only shrinks them) and NUL-terminated. */

typedef struct {
  const char *name, *dtype; /* decoded, inside the header buffer */
  size_t namelen, dtypelen;
  int rank;
  int64_t shape[NN_ST_MAX_RANK];
  uint64_t begin, end;
  int table; /* index of the matching model tensor, or -1 */
} nn_st_entry;

typedef struct {
  char *p;
  size_t pos, len;
  nn_st_entry *e; /* tensors in file order */
  size_t n, cap;
  nn_st_entry *cur; /* the tensor entry being parsed, named in messages */
  nn_msg *m;
} nn_st_parser;

static NN_UNUSED int nn_st_syntax(nn_st_parser *ps, const char *what) {
  if (ps->cur) {
    nn_msg_name(ps->m, ps->cur->name, ps->cur->namelen);
    nn_msg_str(ps->m, ": ");
  }
  nn_msg_str(ps->m, "malformed header: ");
  nn_msg_str(ps->m, what);
  nn_msg_str(ps->m, " at byte ");
  nn_msg_u64(ps->m, ps->pos);
  return 0;
}

/* Next non-whitespace byte, or -1 at the end of the header. */
static NN_UNUSED int nn_st_peek(nn_st_parser *ps) {
  while (ps->pos < ps->len && (ps->p[ps->pos] == ' ' || ps->p[ps->pos] == '\t' ||
                               ps->p[ps->pos] == '\n' || ps->p[ps->pos] == '\r'))
    ps->pos++;
  return ps->pos < ps->len ? (unsigned char)ps->p[ps->pos] : -1;
}

static NN_UNUSED int nn_st_expect(nn_st_parser *ps, char c) {
  char what[] = "expected 'x'";
  if (nn_st_peek(ps) == (unsigned char)c) {
    ps->pos++;
    return 1;
  }
  what[10] = c;
  return nn_st_syntax(ps, what);
}

/* After a value inside {...} or [...]: 1 if another follows, 0 at the
 * closing bracket, -1 on error. */
static NN_UNUSED int nn_st_more(nn_st_parser *ps, char close) {
  int c = nn_st_peek(ps);
  if (c == ',' || c == close) {
    ps->pos++;
    return c == ',';
  }
  nn_st_syntax(ps, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
  return -1;
}

static NN_UNUSED int nn_st_hex4(const char *s, unsigned *v) {
  *v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                 : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                 : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                        : 16u;
    if (d == 16)
      return 0;
    *v = *v * 16 + d;
  }
  return 1;
}

/* \uXXXX (and a following low surrogate) at s + *i, as UTF-8 into out. */
static NN_UNUSED int nn_st_unicode(nn_st_parser *ps, size_t *i, char *out, size_t *o) {
  unsigned cp, lo;
  if (*i + 6 > ps->len || !nn_st_hex4(ps->p + *i + 2, &cp))
    return 0;
  *i += 6;
  if (cp >= 0xDC00 && cp <= 0xDFFF)
    return 0;
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    if (*i + 6 > ps->len || ps->p[*i] != '\\' || ps->p[*i + 1] != 'u' ||
        !nn_st_hex4(ps->p + *i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
      return 0;
    *i += 6;
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
  }
  if (cp < 0x80) {
    out[(*o)++] = (char)cp;
  } else if (cp < 0x800) {
    out[(*o)++] = (char)(0xC0 | cp >> 6);
    out[(*o)++] = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out[(*o)++] = (char)(0xE0 | cp >> 12);
    out[(*o)++] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[(*o)++] = (char)(0x80 | (cp & 0x3F));
  } else {
    out[(*o)++] = (char)(0xF0 | cp >> 18);
    out[(*o)++] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[(*o)++] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[(*o)++] = (char)(0x80 | (cp & 0x3F));
  }
  return 1;
}

static NN_UNUSED int nn_st_string(nn_st_parser *ps, const char **s, size_t *n) {
  if (!nn_st_expect(ps, '"'))
    return 0;
  char *out = ps->p + ps->pos;
  size_t i = ps->pos, o = 0;
  for (;;) {
    if (i >= ps->len)
      return nn_st_syntax(ps, "unterminated string");
    unsigned char c = (unsigned char)ps->p[i];
    if (c == '"')
      break;
    if (c < 0x20) {
      ps->pos = i;
      return nn_st_syntax(ps, "control character in string");
    }
    if (c != '\\') {
      out[o++] = ps->p[i++];
      continue;
    }
    const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
    const char *k = i + 1 < ps->len && ps->p[i + 1] ? strchr(from, ps->p[i + 1]) : NULL;
    if (k) {
      out[o++] = to[k - from];
      i += 2;
    } else if (i + 1 < ps->len && ps->p[i + 1] == 'u') {
      if (!nn_st_unicode(ps, &i, out, &o)) {
        ps->pos = i;
        return nn_st_syntax(ps, "bad \\u escape");
      }
    } else {
      ps->pos = i;
      return nn_st_syntax(ps, "bad escape in string");
    }
  }
  ps->pos = i + 1;
  out[o] = '\0'; /* o <= i - start: at worst overwrites the closing quote */
  *s = out;
  *n = o;
  return 1;
}

/* A non-negative JSON integer up to INT64_MAX: no sign, fraction, exponent
 * or leading zeros. */
static NN_UNUSED int nn_st_digit(const nn_st_parser *ps, size_t i) {
  return i < ps->len && ps->p[i] >= '0' && ps->p[i] <= '9';
}

static NN_UNUSED int nn_st_uint(nn_st_parser *ps, uint64_t *v) {
  nn_st_peek(ps);
  if (!nn_st_digit(ps, ps->pos))
    return nn_st_syntax(ps, "expected a non-negative integer");
  if (ps->p[ps->pos] == '0' && nn_st_digit(ps, ps->pos + 1))
    return nn_st_syntax(ps, "leading zero");
  for (*v = 0; nn_st_digit(ps, ps->pos); ps->pos++) {
    unsigned d = (unsigned)(ps->p[ps->pos] - '0');
    if (*v > ((uint64_t)INT64_MAX - d) / 10)
      return nn_st_syntax(ps, "integer too large");
    *v = *v * 10 + d;
  }
  if (ps->pos < ps->len &&
      (ps->p[ps->pos] == '.' || ps->p[ps->pos] == 'e' || ps->p[ps->pos] == 'E'))
    return nn_st_syntax(ps, "expected an integer");
  return 1;
}

/* [uint, ...] with at most max elements. */
static NN_UNUSED int nn_st_uints(nn_st_parser *ps, uint64_t *v, int max, int *n) {
  if (!nn_st_expect(ps, '['))
    return 0;
  *n = 0;
  if (nn_st_peek(ps) == ']') {
    ps->pos++;
    return 1;
  }
  for (;;) {
    if (*n == max)
      return nn_st_syntax(ps, "too many array elements");
    if (!nn_st_uint(ps, &v[(*n)++]))
      return 0;
    int more = nn_st_more(ps, ']');
    if (more <= 0)
      return more == 0;
  }
}

/* {"key": "value", ...}: checked for syntax only; the content is ignored. */
static NN_UNUSED int nn_st_metadata(nn_st_parser *ps) {
  const char *s;
  size_t n;
  if (!nn_st_expect(ps, '{'))
    return 0;
  if (nn_st_peek(ps) == '}') {
    ps->pos++;
    return 1;
  }
  for (;;) {
    if (!nn_st_string(ps, &s, &n) || !nn_st_expect(ps, ':') || !nn_st_string(ps, &s, &n))
      return 0;
    int more = nn_st_more(ps, '}');
    if (more <= 0)
      return more == 0;
  }
}

/* {"dtype": ..., "shape": [...], "data_offsets": [b, e]}, any order, each
 * exactly once, nothing else. */
static NN_UNUSED int nn_st_tensor(nn_st_parser *ps, nn_st_entry *e) {
  int seen[3] = {0, 0, 0}, more;
  if (!nn_st_expect(ps, '{'))
    return 0;
  do {
    const char *key;
    size_t klen;
    uint64_t v[NN_ST_MAX_RANK];
    int n, field;
    if (!nn_st_string(ps, &key, &klen) || !nn_st_expect(ps, ':'))
      return 0;
    field = klen == 5 && memcmp(key, "dtype", 5) == 0            ? 0
            : klen == 5 && memcmp(key, "shape", 5) == 0          ? 1
            : klen == 12 && memcmp(key, "data_offsets", 12) == 0 ? 2
                                                                 : -1;
    if (field < 0)
      return nn_st_syntax(ps, "unknown field in tensor entry");
    if (seen[field]++)
      return nn_st_syntax(ps, "duplicate field in tensor entry");
    if (field == 0 && !nn_st_string(ps, &e->dtype, &e->dtypelen))
      return 0;
    if (field == 1) {
      if (!nn_st_uints(ps, v, NN_ST_MAX_RANK, &n))
        return 0;
      e->rank = n;
      for (int i = 0; i < n; i++)
        e->shape[i] = (int64_t)v[i];
    }
    if (field == 2) {
      if (!nn_st_uints(ps, v, 2, &n))
        return 0;
      if (n != 2 || v[0] > v[1])
        return nn_st_syntax(ps, "data_offsets must be [begin, end] with begin <= end");
      e->begin = v[0];
      e->end = v[1];
    }
    more = nn_st_more(ps, '}');
  } while (more == 1);
  if (more < 0)
    return 0;
  if (!seen[0] || !seen[1] || !seen[2])
    return nn_st_syntax(ps, "tensor entry needs dtype, shape and data_offsets");
  return 1;
}

static NN_UNUSED int nn_st_push(nn_st_parser *ps) {
  if (ps->n == ps->cap) {
    size_t cap = ps->cap ? 2 * ps->cap : 16;
    nn_st_entry *e = realloc(ps->e, cap * sizeof *e);
    if (!e)
      return 0;
    ps->e = e;
    ps->cap = cap;
  }
  memset(&ps->e[ps->n++], 0, sizeof *ps->e);
  ps->e[ps->n - 1].table = -1;
  return 1;
}

/* The whole header: one object, then nothing but whitespace. */
static NN_UNUSED int nn_st_parse(nn_st_parser *ps) {
  int have_meta = 0;
  if (!nn_st_expect(ps, '{'))
    return NN_ERR_FORMAT;
  if (nn_st_peek(ps) == '}') {
    ps->pos++;
  } else {
    int more;
    do {
      const char *key;
      size_t klen;
      if (!nn_st_string(ps, &key, &klen) || !nn_st_expect(ps, ':'))
        return NN_ERR_FORMAT;
      if (klen == 12 && memcmp(key, "__metadata__", 12) == 0) {
        if (have_meta++ && !nn_st_syntax(ps, "duplicate __metadata__"))
          return NN_ERR_FORMAT;
        if (!nn_st_metadata(ps))
          return NN_ERR_FORMAT;
      } else {
        if (!nn_st_push(ps)) {
          nn_msg_str(ps->m, "out of memory parsing the header");
          return NN_ERR_NOMEM;
        }
        ps->cur = &ps->e[ps->n - 1];
        ps->cur->name = key;
        ps->cur->namelen = klen;
        if (!nn_st_tensor(ps, ps->cur))
          return NN_ERR_FORMAT;
        ps->cur = NULL;
      }
      more = nn_st_more(ps, '}');
    } while (more == 1);
    if (more < 0)
      return NN_ERR_FORMAT;
  }
  if (nn_st_peek(ps) != -1 && !nn_st_syntax(ps, "trailing characters after the header"))
    return NN_ERR_FORMAT;
  return NN_OK;
}

/* ---- checking the header against the model --------------------------------
 * Entries are sorted (through a pointer array) by name to find duplicates and
 * to look names up, then by offset to check that they tile the data. */

static NN_UNUSED int nn_st_by_name(const void *a, const void *b) {
  const nn_st_entry *x = *(const nn_st_entry *const *)a, *y = *(const nn_st_entry *const *)b;
  size_t n = x->namelen < y->namelen ? x->namelen : y->namelen;
  int c = memcmp(x->name, y->name, n);
  return c ? c : (x->namelen > y->namelen) - (x->namelen < y->namelen);
}

static NN_UNUSED int nn_st_by_offset(const void *a, const void *b) {
  const nn_st_entry *x = *(const nn_st_entry *const *)a, *y = *(const nn_st_entry *const *)b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return (x->end > y->end) - (x->end < y->end);
}

/* Model tensor t against its file entry e. */
static NN_UNUSED int nn_st_match_one(const nn_tensor *t, const nn_st_entry *e, nn_msg *m) {
  size_t esize = nn_st_dtype_size(t->dtype, strlen(t->dtype));
  int same = e->rank == t->rank;
  for (int d = 0; same && d < t->rank; d++)
    same = e->shape[d] == t->shape[d];
  int from = nn_st_dtype_code(e->dtype, e->dtypelen), to = nn_st_dtype_code(t->dtype, strlen(t->dtype));
  if (from != to && to != NN_ST_I64 && from != NN_ST_I64 && from != NN_ST_BAD)
    esize = nn_st_dtype_size(e->dtype, e->dtypelen); /* a real: converted on load */
  else if (from != to) {
    nn_msg_name(m, t->name, strlen(t->name));
    nn_msg_str(m, ": dtype ");
    nn_msg_name(m, e->dtype, e->dtypelen);
    nn_msg_str(m, " in file, model expects ");
    nn_msg_str(m, t->dtype);
    return NN_ERR_MISMATCH;
  }
  if (!same) {
    nn_msg_name(m, t->name, strlen(t->name));
    nn_msg_str(m, ": shape ");
    nn_msg_shape(m, e->rank, e->shape);
    nn_msg_str(m, " in file, model expects ");
    nn_msg_shape(m, t->rank, t->shape);
    return NN_ERR_MISMATCH;
  }
  uint64_t bytes = 0;
  nn_st_nbytes(t->rank, t->shape, esize, &bytes); /* no larger than the table's F64 bytes */
  if (e->end - e->begin != bytes) {
    nn_msg_name(m, t->name, strlen(t->name));
    nn_msg_str(m, ": data_offsets span ");
    nn_msg_u64(m, e->end - e->begin);
    nn_msg_str(m, " bytes, dtype and shape need ");
    nn_msg_u64(m, bytes);
    return NN_ERR_FORMAT;
  }
  return NN_OK;
}

/* Whether file entry e falls under an ignore pattern of the table: an
 * entry with no data whose name ends in '*' ("optimizer.*" lets an inference
 * build load a training checkpoint and skip its optimizer state). */
static NN_UNUSED int nn_st_is_pattern(const nn_tensor *t) {
  size_t len = t->name ? strlen(t->name) : 0;
  return !t->data && t->optional && len > 0 && t->name[len - 1] == '*';
}

static NN_UNUSED int nn_st_ignored(const nn_tensor *t, int count, const nn_st_entry *e) {
  for (int i = 0; i < count; i++) {
    size_t len = nn_st_is_pattern(&t[i]) ? strlen(t[i].name) - 1 : 0;
    if (len && e->namelen >= len && memcmp(e->name, t[i].name, len) == 0)
      return 1;
  }
  return 0;
}

/* Match every model tensor to a file entry and check that the entries tile
 * the data section [0, datasize).  idx is scratch for n pointers. */
static NN_UNUSED int nn_st_match(nn_st_entry *e, size_t n, nn_st_entry **idx,
                                 const nn_tensor *t, int count, uint64_t datasize, nn_msg *m) {
  for (size_t i = 0; i < n; i++)
    idx[i] = &e[i];
  if (n > 1) /* qsort's base may not be NULL, even for n == 0 */
    qsort(idx, n, sizeof *idx, nn_st_by_name);
  for (size_t i = 1; i < n; i++)
    if (nn_st_by_name(&idx[i - 1], &idx[i]) == 0) {
      nn_msg_str(m, "duplicate tensor ");
      nn_msg_quoted(m, idx[i]->name, idx[i]->namelen);
      return NN_ERR_FORMAT;
    }
  for (int i = 0; i < count; i++) {
    nn_st_entry key, *kp = &key, **hit;
    key.name = t[i].name;
    key.namelen = strlen(t[i].name);
    hit = n ? bsearch(&kp, idx, n, sizeof *idx, nn_st_by_name) : NULL;
    if (!hit && t[i].optional)
      continue;
    if (!hit) {
      nn_msg_str(m, "missing tensor ");
      nn_msg_quoted(m, key.name, key.namelen);
      return NN_ERR_MISMATCH;
    }
    if ((*hit)->table >= 0) {
      nn_msg_str(m, "duplicate tensor name in the model's table");
      return NN_ERR_ARG;
    }
    int rc = nn_st_match_one(&t[i], *hit, m);
    if (rc != NN_OK)
      return rc;
    (*hit)->table = i;
  }
  for (size_t i = 0; i < n; i++)
    if (e[i].table < 0 && !nn_st_ignored(t, count, &e[i])) {
      nn_msg_str(m, "unexpected tensor ");
      nn_msg_quoted(m, e[i].name, e[i].namelen);
      return NN_ERR_MISMATCH;
    }
  if (n > 1)
    qsort(idx, n, sizeof *idx, nn_st_by_offset);
  uint64_t pos = 0;
  for (size_t i = 0; i < n; i++) {
    if (idx[i]->begin != pos) {
      nn_msg_name(m, idx[i]->name, idx[i]->namelen);
      nn_msg_str(m, idx[i]->begin < pos ? ": data_offsets overlap another tensor"
                                        : ": data_offsets leave a gap before it");
      return NN_ERR_FORMAT;
    }
    pos = idx[i]->end;
  }
  if (pos != datasize) {
    nn_msg_str(m, "tensors cover ");
    nn_msg_u64(m, pos);
    nn_msg_str(m, " bytes but the data section has ");
    nn_msg_u64(m, datasize);
    return NN_ERR_FORMAT;
  }
  return NN_OK;
}

/* ---- loading ------------------------------------------------------------- */

/* Element i of the host-order data p of dtype `code` as a double (exact for
 * every real dtype), and as an int64 for I64. */
static NN_UNUSED double nn_st_value(const unsigned char *p, int code, size_t i, int64_t *iv) {
  uint16_t h;
  float f;
  double d;
  switch (code) {
  case NN_ST_I64:
    memcpy(iv, p + i * 8, 8);
    return (double)*iv;
  case NN_ST_F16: { /* 1 sign, 5 exponent (bias 15), 10 fraction bits */
    memcpy(&h, p + i * 2, 2);
    int ex = h >> 10 & 31, fr = h & 1023;
    d = ex == 31 ? (fr ? NAN : INFINITY) : ex ? ldexp(1024 + fr, ex - 25) : ldexp(fr, -24);
    return h >> 15 ? -d : d;
  }
  case NN_ST_BF16: { /* the high half of an F32 */
    memcpy(&h, p + i * 2, 2);
    uint32_t bits = (uint32_t)h << 16;
    memcpy(&f, &bits, 4);
    return f;
  }
  case NN_ST_F32:
    memcpy(&f, p + i * 4, 4);
    return f;
  default:
    memcpy(&d, p + i * 8, 8);
    return d;
  }
}

/* Whether value v, in t's dtype (esize bytes), is element i of t->data bit
 * for bit. */
static NN_UNUSED int nn_st_same(const nn_tensor *t, size_t esize, size_t i, double v) {
  if (esize == 4) {
    float f = (float)v;
    return memcmp((const unsigned char *)t->data + i * 4, &f, 4) == 0;
  }
  return memcmp((const unsigned char *)t->data + i * 8, &v, 8) == 0;
}

/* Tensor t's staged values (host order, dtype `code` of the file) against
 * t->check; a real that does not fit t's dtype (an F64 beyond the F32
 * range) is refused too. */
static NN_UNUSED int nn_st_check_values(const nn_tensor *t, int code, const unsigned char *p,
                                        size_t nbytes, nn_msg *m) {
  size_t esize = nn_st_dtype_size(t->dtype, strlen(t->dtype));
  int to_f32 = esize == 4, is_int = code == NN_ST_I64;
  size_t n = nbytes / nn_st_code_size(code);
  for (size_t i = 0; (t->check != NN_CHECK_NONE || to_f32) && i < n; i++) {
    int64_t iv = 0;
    double v = nn_st_value(p, code, i, &iv);
    const char *bad = NULL;
    if (t->check == NN_CHECK_SAME && !nn_st_same(t, esize, i, v)) {
      nn_msg_name(m, t->name, strlen(t->name));
      nn_msg_str(m, ": element ");
      nn_msg_u64(m, i);
      nn_msg_str(m, " differs from the weights baked read-only into this build (a frozen "
                    "tensor): load only a file with the same values, or build without "
                    "--weights");
      return NN_ERR_ARG;
    }
    if (t->check == NN_CHECK_STEP)
      bad = is_int && iv >= 0 && iv < INT64_MAX ? NULL : "is not a step count in 0..2^63-2";
    else if (t->check == NN_CHECK_COUNT)
      bad = is_int && iv >= 0 ? NULL : "is not a count >= 0";
    else if (t->check != NN_CHECK_NONE && !isfinite(v))
      bad = "is not finite (NaN or Inf)";
    else if (t->check == NN_CHECK_NONNEG && v < 0)
      bad = "is negative (a variance or second moment must be >= 0)";
    else if (to_f32 && isfinite(v) && !isfinite((float)v))
      bad = "is beyond the F32 range (the file's F64 does not round to a finite F32)";
    if (bad) {
      nn_msg_name(m, t->name, strlen(t->name));
      nn_msg_str(m, ": element ");
      nn_msg_u64(m, i);
      nn_msg_str(m, " ");
      nn_msg_str(m, bad);
      return NN_ERR_DATA;
    }
  }
  return NN_OK;
}

/* The staged values of t (file dtype `code`, host order) into t->data: as
 * they are when the dtypes match, else each converted (exactly, or F64 to
 * F32 rounded to nearest even by the cast). */
static NN_UNUSED void nn_st_store(const nn_tensor *t, int code, const unsigned char *p,
                                 size_t nbytes) {
  int to = nn_st_dtype_code(t->dtype, strlen(t->dtype));
  if (code == to) {
    memcpy(t->data, p, nbytes);
    return;
  }
  size_t n = nbytes / nn_st_code_size(code);
  for (size_t i = 0; i < n; i++) {
    int64_t iv;
    double v = nn_st_value(p, code, i, &iv);
    if (to == NN_ST_F32) {
      float f = (float)v;
      memcpy((unsigned char *)t->data + i * 4, &f, 4);
    } else {
      memcpy((unsigned char *)t->data + i * 8, &v, 8);
    }
  }
}

/* Read the header length and header; check sizes before allocating. */
static NN_UNUSED int nn_st_read_header(FILE *f, const char *path, char **hdr, uint64_t *hlen,
                                       uint64_t *datasize, nn_msg *m) {
  long size;
  unsigned char len8[8];
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
    return nn_msg_io(m, "cannot seek in", path, errno);
  if (size < 8) {
    nn_msg_str(m, "file too short for header length");
    return NN_ERR_FORMAT;
  }
  if (fread(len8, 1, 8, f) != 8)
    return nn_msg_io(m, "cannot read", path, errno);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = n << 8 | len8[i];
  if (n > NN_ST_MAX_HEADER) {
    nn_msg_str(m, "header length ");
    nn_msg_u64(m, n);
    nn_msg_str(m, " exceeds 100000000");
    return NN_ERR_FORMAT;
  }
  if (n + 8 > (uint64_t)size) {
    nn_msg_str(m, "file too short for header (");
    nn_msg_u64(m, n);
    nn_msg_str(m, " bytes)");
    return NN_ERR_FORMAT;
  }
  *hdr = malloc((size_t)n + 1);
  if (!*hdr) {
    nn_msg_str(m, "out of memory");
    return NN_ERR_NOMEM;
  }
  if (fread(*hdr, 1, (size_t)n, f) != (size_t)n)
    return nn_msg_io(m, "cannot read", path, errno);
  (*hdr)[n] = '\0';
  *hlen = n;
  *datasize = (uint64_t)size - 8 - n;
  return NN_OK;
}

/*
 * Load path into the tensors t[0..count): every non-optional tensor must be
 * in the file with the same shape and dtype (or a real dtype, converted; see
 * the top of the file), and the file must hold nothing
 * else; every value must pass its tensor's check (NN_ERR_DATA if one does
 * not).  Returns NN_OK, NN_ERR_ARG, NN_ERR_IO, NN_ERR_FORMAT,
 * NN_ERR_MISMATCH, NN_ERR_DATA or NN_ERR_NOMEM; on failure no tensor has been
 * touched and err (errcap bytes, may be NULL) names the first problem found.
 */
static NN_UNUSED int nn_st_load(const char *path, const nn_tensor *t, int count, char *err,
                                size_t errcap) {
  nn_msg m = nn_msg_init(err, errcap);
  nn_st_parser ps = {NULL, 0, 0, NULL, 0, 0, NULL, &m};
  nn_st_entry **idx = NULL;
  unsigned char *stage = NULL;
  uint64_t hlen = 0, datasize = 0;
  size_t esize;
  uint64_t bytes;
  FILE *f = NULL;
  int rc = NN_OK;

  if (!path || count < 0 || (count > 0 && !t)) {
    nn_msg_str(&m, "nn_st_load: NULL path or tensor table");
    return NN_ERR_ARG;
  }
  for (int i = 0; i < count; i++)
    if (!nn_st_is_pattern(&t[i]) && (rc = nn_st_check_table(&t[i], &esize, &bytes, &m)) != NN_OK)
      return rc;
  if (!(f = fopen(path, "rb")))
    return nn_msg_io(&m, "cannot open", path, errno);
  errno = 0; /* a short read at end of file sets none */
  rc = nn_st_read_header(f, path, &ps.p, &hlen, &datasize, &m);
  ps.len = (size_t)hlen;
  if (rc == NN_OK)
    rc = nn_st_parse(&ps);
  if (rc == NN_OK && ps.n && !(idx = malloc(ps.n * sizeof *idx))) {
    nn_msg_str(&m, "out of memory");
    rc = NN_ERR_NOMEM;
  }
  if (rc == NN_OK)
    rc = nn_st_match(ps.e, ps.n, idx, t, count, datasize, &m);
  /* datasize now equals the bytes the file holds after its header: safe to stage */
  if (rc == NN_OK && !(stage = malloc(datasize ? (size_t)datasize : 1))) {
    nn_msg_str(&m, "out of memory");
    rc = NN_ERR_NOMEM;
  }
  if (rc == NN_OK && fread(stage, 1, (size_t)datasize, f) != (size_t)datasize)
    rc = nn_msg_io(&m, "cannot read", path, errno);
  /* every value checked before the first tensor is written */
  for (size_t i = 0; rc == NN_OK && i < ps.n; i++) {
    const nn_st_entry *e = &ps.e[i];
    size_t n = (size_t)(e->end - e->begin);
    if (n && e->table >= 0) {
      if (!nn_st_host_is_le())
        nn_st_swap(stage + e->begin, n, nn_st_dtype_size(e->dtype, e->dtypelen));
      rc = nn_st_check_values(&t[e->table], nn_st_dtype_code(e->dtype, e->dtypelen),
                              stage + e->begin, n, &m);
    }
  }
  for (size_t i = 0; rc == NN_OK && i < ps.n; i++) {
    const nn_st_entry *e = &ps.e[i];
    if (e->end > e->begin && e->table >= 0 && t[e->table].check != NN_CHECK_SAME)
      nn_st_store(&t[e->table], nn_st_dtype_code(e->dtype, e->dtypelen), stage + e->begin,
                  (size_t)(e->end - e->begin));
  }
  fclose(f);
  free(stage);
  free(idx);
  free(ps.e);
  free(ps.p);
  return rc;
}
#endif /* NN_NO_FILES */
