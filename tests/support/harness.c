/*
 * harness.c: see harness.h.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int vrun(char *out, size_t cap, const char *fmt, va_list ap) {
  char cmd[8192];
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  char full[8300];
  snprintf(full, sizeof full, "%s 2>&1", cmd);
  FILE *p = popen(full, "r");
  if (!p)
    return -1;
  size_t len = 0;
  char tmp[4096];
  size_t got;
  while ((got = fread(tmp, 1, sizeof tmp, p)) > 0)
    if (out && len + 1 < cap) {
      size_t room = cap - 1 - len;
      memcpy(out + len, tmp, got < room ? got : room);
      len += got < room ? got : room;
    }
  if (out && cap)
    out[len] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int run(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int st = vrun(NULL, 0, fmt, ap);
  va_end(ap);
  return st;
}

int run_capture(char *out, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int st = vrun(out, cap, fmt, ap);
  va_end(ap);
  return st;
}

void scratch_dir(char *dir, size_t cap, const char *tag) {
  static int counter;
  mkdir(NNCC_TEST_TMP, 0777);
  int st;
  do {   /* a directory of an earlier run whose process had this pid: the next name */
    snprintf(dir, cap, "%s/%s-%d-%d", NNCC_TEST_TMP, tag, (int)getpid(), counter++);
    st = mkdir(dir, 0777);
  } while (st != 0 && errno == EEXIST);
  cr_assert(st == 0, "cannot create %s: %s", dir, strerror(errno));
}

void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  cr_assert(f, "cannot write %s", path);
  fputs(text, f);
  fclose(f);
}

char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  size_t got = fread(s, 1, (size_t)n, f);
  s[got] = '\0';
  fclose(f);
  return s;
}

/* The flags every model of this test is built with, which
 * tests/CMakeLists.txt sets per test: in a sanitized build the sanitizers
 * and a pinned micro-kernel (NN_FORCE_ISA), the one the cpuid dispatch
 * would pick, or each other one in the conv2d and dense reruns. */
static const char *model_flags(void) {
  const char *v = getenv("NNCC_TEST_MODEL_FLAGS");
  return v ? v : "";
}

bool model_files;

void model_cc(char *cmd, size_t cap, const char *cflags) {
  snprintf(cmd, cap, "%s -std=c11 -Wall -Wextra -Werror -shared -fPIC " NNCC_MODEL_PCH " %s %s%s",
           NNCC_CC, cflags ? cflags : MODEL_O1, model_flags(), model_files ? " -UNN_NO_FILES" : "");
}

void compile_model(Compiled *cm, const char *name, const char *model, const char *opts,
                   const char *cflags) {
  memset(cm, 0, sizeof *cm);
  scratch_dir(cm->dir, sizeof cm->dir, name);
  char nn[600];
  snprintf(nn, sizeof nn, "%s/%s.nn", cm->dir, name);
  write_file(nn, model);
  compile_model_file(cm, name, nn, opts, cflags);
}

void compile_model_file(Compiled *cm, const char *name, const char *nn, const char *opts,
                  const char *cflags) {
  snprintf(cm->name, sizeof cm->name, "%s", name);
  if (!cm->dir[0])
    scratch_dir(cm->dir, sizeof cm->dir, name);
  char so[600], weights[700] = "";
  snprintf(cm->c_path, sizeof cm->c_path, "%s/%s.c", cm->dir, name);
  snprintf(so, sizeof so, "%s/%s.so", cm->dir, name);
  static char log[1 << 16];
  int st = run_capture(log, sizeof log, "%s %s -o %s %s", NNCC_BIN, nn, cm->c_path,
                       opts ? opts : "");
  cr_assert(st == 0, "nncc failed (%d) on %s:\n%s", st, name, log);
  snprintf(weights, sizeof weights, "%s/%s_weights.c", cm->dir, name);
  if (access(weights, R_OK) != 0)
    weights[0] = '\0';
  char cc[1024];
  model_cc(cc, sizeof cc, cflags);
  st = run_capture(log, sizeof log, "%s -o %s %s %s -lm", cc, so, cm->c_path, weights);
  cr_assert(st == 0, "cc failed on %s:\n%s", cm->c_path, log);
  /* NODELETE: unmapping a model built with -fopenmp would pull the OpenMP
   * runtime out from under its idle worker threads. */
  cm->lib = dlopen(so, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  cr_assert(cm->lib, "dlopen %s: %s", so, dlerror());
}

long emitted_define(const Compiled *cm, const char *macro) {
  char *src = read_text(cm->c_path), key[64];
  cr_assert(src, "cannot read %s", cm->c_path);
  snprintf(key, sizeof key, "#define %s ", macro);
  const char *at = strstr(src, key);
  cr_assert(at, "no %s in the emitted C", macro);
  long v = strtol(at + strlen(key), NULL, 10);
  free(src);
  return v;
}

void *read_values(const char *path, size_t n, size_t size) {
  void *x = malloc(n * size);
  FILE *f = fopen(path, "rb");
  cr_assert(f && x, "cannot open %s", path);
  size_t got = fread(x, size, n, f);
  fclose(f);
  cr_assert_eq(got, n, "%s holds %zu values, expected %zu", path, got, n);
  return x;
}

void *api(const Compiled *cm, const char *fn) {
  char sym[160];
  snprintf(sym, sizeof sym, "%s_%s", cm->name, fn);
  void *p = dlsym(cm->lib, sym);
  cr_assert(p, "missing symbol %s", sym);
  return p;
}

void *tensor_by_name(const Compiled *cm, void *m, const char *fn, const char *name,
                     size_t *numel) {
  int (*count)(void) = (int (*)(void))api(cm, "tensor_count");
  const char *(*tensor_name)(int) = (const char *(*)(int))api(cm, "tensor_name");
  void *(*get)(void *, int, size_t *) = (void *(*)(void *, int, size_t *))api(cm, fn);
  for (int i = 0; i < count(); i++)
    if (strcmp(tensor_name(i), name) == 0)
      return get(m, i, numel);
  return NULL;
}

void close_model(Compiled *cm) {
  if (cm->lib)
    dlclose(cm->lib);
  cm->lib = NULL;
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void fill_uniform_d(double *x, size_t n, uint64_t seed, double lo, double hi) {
  for (size_t i = 0; i < n; i++)
    x[i] = lo + (hi - lo) * (double)(splitmix(&seed) >> 11) * 0x1.0p-53;
}

void fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi) {
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(lo + (hi - lo) * (double)(splitmix(&seed) >> 11) * 0x1.0p-53);
}

/* Relative to max(|want|, 1e-3 * scale) so near-zero entries compare sanely. */
static double rel(double got, double want, double scale) {
  double denom = fmax(fabs(want), 1e-3 * scale);
  return denom > 0 ? fabs(got - want) / denom : fabs(got - want);
}

double max_rel_err(const float *got, const double *want, size_t n) {
  double scale = 0, worst = 0;
  for (size_t i = 0; i < n; i++)
    scale = fmax(scale, fabs(want[i]));
  for (size_t i = 0; i < n; i++)
    worst = fmax(worst, isfinite(got[i]) ? rel(got[i], want[i], scale) : INFINITY);
  return worst;
}

double max_rel_err_d(const double *got, const double *want, size_t n) {
  double scale = 0, worst = 0;
  for (size_t i = 0; i < n; i++)
    scale = fmax(scale, fabs(want[i]));
  for (size_t i = 0; i < n; i++)
    worst = fmax(worst, isfinite(got[i]) ? rel(got[i], want[i], scale) : INFINITY);
  return worst;
}

/* ---- safetensors scalars ------------------------------------------------ */

/* The file offset of the I64 scalar `name` in the safetensors file at path,
 * read from the header as nncc writes it ("name":{"dtype":"I64","shape":[],
 * "data_offsets":[b,e]}); -1 when it is not there. */
static long st_i64_offset(const char *path, const char *name) {
  char *text = read_text(path);
  cr_assert(text, "cannot read %s", path);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = hlen << 8 | (unsigned char)text[i];
  char key[128];
  snprintf(key, sizeof key, "\"%s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[", name);
  const char *at = strstr(text + 8, key);
  long begin = -1, end = -1;
  if (at && at < text + 8 + hlen)
    sscanf(at + strlen(key), "%ld,%ld", &begin, &end);
  free(text);
  cr_assert(begin < 0 || end - begin == 8, "%s: %ld bytes", name, end - begin);
  return begin < 0 ? -1 : 8 + (long)hlen + begin;
}

int64_t st_read_i64(const char *path, const char *name) {
  long off = st_i64_offset(path, name);
  cr_assert(off >= 0, "%s has no I64 %s", path, name);
  unsigned char b[8];
  FILE *f = fopen(path, "rb");
  cr_assert(f && fseek(f, off, SEEK_SET) == 0 && fread(b, 1, 8, f) == 8);
  fclose(f);
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | b[i];
  return (int64_t)v;
}

void st_write_i64(const char *path, const char *name, int64_t value) {
  long off = st_i64_offset(path, name);
  cr_assert(off >= 0, "%s has no I64 %s", path, name);
  unsigned char b[8];
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)((uint64_t)value >> (8 * i));
  FILE *f = fopen(path, "r+b");
  cr_assert(f && fseek(f, off, SEEK_SET) == 0 && fwrite(b, 1, 8, f) == 8);
  fclose(f);
}

void write_idx_digits(const char *dir, const char *set, int count, const unsigned char labels[10]) {
  write_idx_noisy_digits(dir, set, count, labels, 0);
}

void write_idx_noisy_digits(const char *dir, const char *set, int count,
                            const unsigned char labels[10], uint64_t seed) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, set);
  FILE *f = fopen(path, "wb");
  cr_assert(f);
  unsigned char hdr[16] = {0, 0, 8, 3, 0, 0, (unsigned char)(count >> 8), (unsigned char)count,
                           0, 0, 0, 28, 0, 0, 0, 28};
  fwrite(hdr, 1, 16, f);
  uint64_t rng = seed;
  for (int i = 0; i < count; i++) {
    int shift = seed ? (int)(splitmix(&rng) % 7) - 3 : 0; /* the bar moves along its row */
    for (int p = 0; p < 784; p++) {
      int c = p % 28 - shift, bar = p / 28 == 4 + 2 * (i % 10) && c > 3 && c < 24;
      uint64_t r = seed ? splitmix(&rng) : 0;
      fputc(bar ? 255 - (int)(r % 64) : r % 8 == 0 ? (int)(r >> 8 & 0xff) : 0, f);
    }
  }
  cr_assert_eq(fclose(f), 0);
  snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, set);
  f = fopen(path, "wb");
  hdr[3] = 1;
  fwrite(hdr, 1, 8, f);
  for (int i = 0; i < count; i++)
    fputc(labels[i % 10], f);
  cr_assert_eq(fclose(f), 0);
}
