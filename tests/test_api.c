/*
 * test_api.c: the contract of the generated C API, on a small classifier
 *   x (2, 3) -> flatten -> fc1 (8) -> relu -> fc2 (4) = logits, class[4].
 *
 * Caller-owned memory (also misaligned), create/destroy, argument checks and
 * last_error, strerror, the tensor table, safetensors save/load (format,
 * round trip, refusal of other architectures, missing and truncated files)
 * and the all-or-nothing promise of train_step on bad labels and NaN input.
 * Every refused call is checked to leave all tensors bit-identical.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MAXB 8
#define XS 6
#define YS 4

#define MODEL(hidden)                                                          \
  "model api\ninput x: f32[2, 3]\ntarget y: class[4]\n"                        \
  "h = flatten(x) |> dense(" hidden ") |> relu\nlogits = dense(h, 4)\n"       \
  "output logits\nloss cross_entropy(logits, y)\ntrain {\n  optimizer adam(lr=1e-2)\n}\n"

enum { NN_OK = 0, NN_ERR_ARG = -1, NN_ERR_IO = -2, NN_ERR_FORMAT = -3, NN_ERR_MISMATCH = -4,
       NN_ERR_NONFINITE = -5, NN_ERR_NOMEM = -6, NN_ERR_DATA = -7 };

typedef struct Api {
  Compiled cm;
  size_t (*memory_size)(void);
  void *(*init_in)(void *, uint64_t);
  void *(*create)(uint64_t);
  void (*destroy)(void *);
  int (*forward)(void *, int, const float *, float *);
  int (*train_step)(void *, int, const float *, const int32_t *, float *);
  int (*save)(void *, const char *);
  int (*load)(void *, const char *);
  const char *(*strerror)(int);
  const char *(*last_error)(const void *);
  int (*tensor_count)(void);
  const char *(*tensor_name)(int);
  float *(*tensor)(void *, int, size_t *);
} Api;

static void load_api(Api *a, const char *model) {
  compile_model(&a->cm, "api", model, "--batch 8", MODEL_O1);
  a->memory_size = (size_t(*)(void))api(&a->cm, "memory_size");
  a->init_in = (void *(*)(void *, uint64_t))api(&a->cm, "init_in");
  a->create = (void *(*)(uint64_t))api(&a->cm, "create");
  a->destroy = (void (*)(void *))api(&a->cm, "destroy");
  a->forward = (int (*)(void *, int, const float *, float *))api(&a->cm, "forward");
  a->train_step =
      (int (*)(void *, int, const float *, const int32_t *, float *))api(&a->cm, "train_step");
  a->save = (int (*)(void *, const char *))api(&a->cm, "save");
  a->load = (int (*)(void *, const char *))api(&a->cm, "load");
  a->strerror = (const char *(*)(int))api(&a->cm, "strerror");
  a->last_error = (const char *(*)(const void *))api(&a->cm, "last_error");
  a->tensor_count = (int (*)(void))api(&a->cm, "tensor_count");
  a->tensor_name = (const char *(*)(int))api(&a->cm, "tensor_name");
  a->tensor = (float *(*)(void *, int, size_t *))api(&a->cm, "tensor");
}

static float X[MAXB * XS];

/* Forward of X at n samples into y (n * YS floats). */
static void fwd(Api *a, void *m, int n, float *y) {
  cr_assert_eq(a->forward(m, n, X, y), NN_OK, "forward: %s", a->last_error(m));
}

/* All tensors concatenated, to compare bitwise before and after a call. */
static float *snapshot(Api *a, void *m, size_t *len) {
  size_t total = 0, numel;
  for (int i = 0; i < a->tensor_count(); i++) {
    a->tensor(m, i, &numel);
    total += numel;
  }
  float *s = malloc(total * sizeof *s), *p = s;
  for (int i = 0; i < a->tensor_count(); i++) {
    const float *t = a->tensor(m, i, &numel);
    memcpy(p, t, numel * sizeof *t);
    p += numel;
  }
  *len = total;
  return s;
}

static void expect_unchanged(Api *a, void *m, const float *before, size_t len, const char *what) {
  size_t now_len;
  float *now = snapshot(a, m, &now_len);
  cr_expect(now_len == len && memcmp(now, before, len * sizeof *now) == 0,
            "%s changed the weights", what);
  free(now);
}

static void setup(Api *a) {
  fill_uniform(X, MAXB * XS, 3, -1, 1);
  load_api(a, MODEL("8"));
}

Test(api, caller_memory_aligned_and_misaligned) {
  Api a;
  setup(&a);
  size_t size = a.memory_size();
  cr_assert(size > 0);
  cr_expect_null(a.init_in(NULL, 1));
  unsigned char *mem = malloc(size + 1);
  void *ref = a.create(5);
  float want[MAXB * YS], got[MAXB * YS];
  fwd(&a, ref, MAXB, want);
  for (int off = 0; off <= 1; off++) {
    memset(mem, 0xA5, size + 1);
    void *m = a.init_in(mem + off, 5);
    cr_assert(m, "init_in(mem + %d) failed", off);
    cr_assert((unsigned char *)m >= mem + off && (unsigned char *)m < mem + off + size);
    fwd(&a, m, MAXB, got);
    cr_expect(memcmp(got, want, sizeof got) == 0, "init_in(mem + %d) differs from create", off);
    cr_expect_eq(a.train_step(m, 2, X, (const int32_t[]){1, 2}, NULL), NN_OK);
    a.destroy(m); /* not owned: must not free mem */
  }
  a.destroy(ref);
  a.destroy(NULL);
  free(mem);
}

Test(api, forward_argument_checks) {
  Api a;
  setup(&a);
  void *m = a.create(1);
  float y[(MAXB + 1) * YS];
  struct { int n; const float *x; float *y; const char *what; } bad[] = {
      {0, X, y, "n = 0"}, {-1, X, y, "n = -1"}, {MAXB + 1, X, y, "n = max + 1"},
      {1, NULL, y, "NULL input"}, {1, X, NULL, "NULL output"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    snprintf((char *)a.last_error(m), 1, "%s", ""); /* clear the message */
    cr_expect_eq(a.forward(m, bad[i].n, bad[i].x, bad[i].y), NN_ERR_ARG, "%s", bad[i].what);
    cr_expect(strlen(a.last_error(m)) > 0, "%s: no last_error message", bad[i].what);
  }
  cr_expect_eq(a.forward(NULL, 1, X, y), NN_ERR_ARG);
  cr_expect_eq(a.forward(m, MAXB, X, y), NN_OK);
  a.destroy(m);
}

Test(api, strerror_distinct) {
  Api a;
  setup(&a);
  const char *msg[8];
  for (int c = 0; c < 8; c++) {
    msg[c] = a.strerror(-c);
    cr_assert(msg[c] && msg[c][0], "strerror(%d) empty", -c);
    for (int d = 0; d < c; d++)
      cr_expect(strcmp(msg[c], msg[d]) != 0, "strerror(%d) == strerror(%d)", -c, -d);
  }
  cr_expect(a.strerror(-99) && a.strerror(-99)[0], "unknown code gives no text");
}

/* The header names the failure codes (API_ERR_ARG ...) with the documented
 * values, and a program using them sees them returned. */
Test(api, status_codes_in_header) {
  Api a;
  setup(&a);
  char prog[700], out[4096];
  snprintf(prog, sizeof prog, "%s/status.c", a.cm.dir);
  write_file(prog,
             "#include \"api.h\"\n"
             "int main(void) {\n"
             "  float x[6] = {0}, y[4];\n"
             "  if (API_ERR_ARG != -1 || API_ERR_IO != -2 || API_ERR_FORMAT != -3 ||\n"
             "      API_ERR_MISMATCH != -4 || API_ERR_NONFINITE != -5 || API_ERR_NOMEM != -6 ||\n"
             "      API_ERR_DATA != -7)\n"
             "    return 1;\n"
             "  api *m = api_create(1);\n"
             "  int st = api_forward(m, 0, x, y);\n"
             "  api_destroy(m);\n"
             "  return st == API_ERR_ARG ? 0 : 2;\n"
             "}\n");
  int st = run_capture(out, sizeof out,
                       "cd %s && %s -std=c11 -Wall -Wextra -Werror -pedantic status.c api.c "
                       "-o status -lm && ./status",
                       a.cm.dir, NNCC_CC);
  cr_expect(st == 0, "exit %d:\n%s", st, out);
  close_model(&a.cm);
}

Test(api, tensor_table) {
  Api a;
  setup(&a);
  void *m = a.create(1);
  const char *names[] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
  size_t numels[] = {8 * 6, 8, 4 * 8, 4};
  cr_assert_eq(a.tensor_count(), 4);
  float *prev_end = NULL;
  for (int i = 0; i < 4; i++) {
    cr_expect_str_eq(a.tensor_name(i), names[i]);
    size_t numel = 0;
    float *p = a.tensor(m, i, &numel);
    cr_assert(p);
    cr_expect_eq(numel, numels[i], "%s: numel %zu", names[i], numel);
    cr_expect(a.tensor(m, i, NULL) == p, "numel may be NULL");
    cr_expect(!prev_end || p >= prev_end, "%s overlaps the previous tensor", names[i]);
    prev_end = p + numel;
  }
  cr_expect_null(a.tensor_name(-1));
  cr_expect_null(a.tensor_name(4));
  cr_expect_null(a.tensor(m, -1, NULL));
  cr_expect_null(a.tensor(m, 4, NULL));
  cr_expect_null(a.tensor(NULL, 0, NULL));
  /* Writes through tensor() are what forward uses. */
  float y0[YS], y1[YS];
  fwd(&a, m, 1, y0);
  a.tensor(m, 3, NULL)[2] += 1.0f;
  fwd(&a, m, 1, y1);
  cr_expect(y1[2] == y0[2] + 1.0f || fabsf(y1[2] - y0[2] - 1.0f) < 1e-6f, "fc2.bias[2] ignored");
  a.destroy(m);
}

Test(api, save_load_round_trip) {
  Api a;
  setup(&a);
  char path[700];
  snprintf(path, sizeof path, "%s/w.safetensors", a.cm.dir);
  void *src = a.create(1), *dst = a.create(2);
  cr_assert_eq(a.train_step(src, 3, X, (const int32_t[]){0, 1, 3}, NULL), NN_OK);
  float ys[MAXB * YS], yd[MAXB * YS];
  fwd(&a, src, MAXB, ys);
  fwd(&a, dst, MAXB, yd);
  cr_assert(memcmp(ys, yd, sizeof ys) != 0, "seeds 1 and 2 give the same outputs");
  cr_assert_eq(a.save(src, path), NN_OK, "save: %s", a.last_error(src));
  cr_assert_eq(a.load(dst, path), NN_OK, "load: %s", a.last_error(dst));
  fwd(&a, dst, MAXB, yd);
  cr_expect(memcmp(ys, yd, sizeof ys) == 0, "outputs differ after load");
  size_t ls, ld;
  float *ws = snapshot(&a, src, &ls), *wd = snapshot(&a, dst, &ld);
  cr_expect(ls == ld && memcmp(ws, wd, ls * sizeof *ws) == 0, "weights differ after load");
  free(ws);
  free(wd);
  a.destroy(src);
  a.destroy(dst);
}

/* ---- safetensors format ---- */

static unsigned char *read_bytes(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)n + 1);
  cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return b;
}

/* Reads "[a, b, ...]" at s into v (at most cap); returns the count. */
static int int_list(const char *s, long long *v, int cap) {
  s = strchr(s, '[');
  cr_assert(s);
  int k = 0;
  for (s++; *s && *s != ']';) {
    char *end;
    long long x = strtoll(s, &end, 10);
    if (end == s) {
      s++;
      continue;
    }
    cr_assert(k < cap);
    v[k++] = x;
    s = end;
  }
  return k;
}

/* The value text after "key": inside the object that starts at obj. */
static const char *field(const char *obj, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\"", key);
  const char *end = strchr(obj, '}');
  const char *p = strstr(obj, pat);
  cr_assert(p && p < end, "no %s in %.80s", key, obj);
  p = strchr(p + strlen(pat), ':');
  cr_assert(p);
  return p + 1;
}

/* save(m, "") used to write "./.tmp" and then remove it; a directory as the
 * path failed only after the data were written. */
Test(api, save_refuses_an_empty_or_directory_path) {
  Api a;
  setup(&a);
  void *m = a.create(9);
  cr_expect_eq(a.save(m, ""), NN_ERR_ARG);
  cr_expect(strstr(a.last_error(m), "empty path"), "%s", a.last_error(m));
  cr_expect_eq(a.save(m, a.cm.dir), NN_ERR_ARG);
  cr_expect(strstr(a.last_error(m), "is a directory"), "%s", a.last_error(m));
  a.destroy(m);
  close_model(&a.cm);
}

Test(api, saved_file_is_safetensors) {
  Api a;
  setup(&a);
  char path[700];
  snprintf(path, sizeof path, "%s/w.safetensors", a.cm.dir);
  void *m = a.create(9);
  cr_assert_eq(a.save(m, path), NN_OK);
  size_t len;
  unsigned char *f = read_bytes(path, &len);
  cr_assert(len >= 8);
  uint64_t hn = 0;
  for (int i = 7; i >= 0; i--)
    hn = hn << 8 | f[i];
  cr_assert(hn > 0 && 8 + hn <= len, "header length %llu, file %zu", (unsigned long long)hn, len);
  char *json = malloc(hn + 1);
  memcpy(json, f + 8, hn);
  json[hn] = '\0';
  cr_expect(json[0] == '{', "header does not start with {: %.40s", json);
  /* The data section ends where the last data_offsets ends. */
  long long data_end = 0, off[2];
  for (const char *p = json; (p = strstr(p, "\"data_offsets\"")); p++) {
    cr_assert_eq(int_list(p, off, 2), 2);
    data_end = off[1] > data_end ? off[1] : data_end;
  }
  cr_expect_eq(len, 8 + hn + (size_t)data_end, "file size %zu != 8 + %llu + %lld", len,
               (unsigned long long)hn, data_end);
  long long shapes[4][2] = {{8, 6}, {8, 0}, {4, 8}, {4, 0}};
  for (int i = 0; i < a.tensor_count(); i++) {
    char key[80];
    snprintf(key, sizeof key, "\"%s\"", a.tensor_name(i));
    const char *obj = strstr(json, key);
    cr_assert(obj, "%s missing from the header", key);
    obj = strchr(obj + strlen(key), '{');
    const char *dt = field(obj, "dtype");
    cr_expect(strncmp(dt + strspn(dt, " "), "\"F32\"", 5) == 0, "%s: dtype %.8s", key, dt);
    long long shape[8];
    int rank = int_list(field(obj, "shape"), shape, 8);
    int want_rank = shapes[i][1] ? 2 : 1;
    cr_expect_eq(rank, want_rank, "%s: rank %d", key, rank);
    for (int d = 0; d < rank && d < want_rank; d++)
      cr_expect_eq(shape[d], shapes[i][d], "%s: dim %d is %lld", key, d, shape[d]);
    cr_assert_eq(int_list(field(obj, "data_offsets"), off, 2), 2);
    size_t numel;
    const float *t = a.tensor(m, i, &numel);
    cr_expect_eq(off[1] - off[0], (long long)(numel * 4), "%s: data_offsets span", key);
    cr_expect(off[1] <= data_end && memcmp(f + 8 + hn + off[0], t, numel * 4) == 0,
              "%s: stored data differs from the tensor (little-endian host)", key);
  }
  free(json);
  free(f);
  a.destroy(m);
}

/* ---- refused loads leave the model as it was ---- */

static void expect_load_refused(Api *a, void *m, const char *path, int want, const char *what) {
  float before[MAXB * YS], after[MAXB * YS];
  fwd(a, m, MAXB, before);
  size_t len;
  float *w = snapshot(a, m, &len);
  int st = a->load(m, path);
  cr_expect_eq(st, want, "%s: load returned %d (%s), expected %d", what, st, a->last_error(m), want);
  cr_expect(strlen(a->last_error(m)) > 0, "%s: no last_error", what);
  expect_unchanged(a, m, w, len, what);
  fwd(a, m, MAXB, after);
  cr_expect(memcmp(before, after, sizeof before) == 0, "%s: outputs changed", what);
  free(w);
}

Test(api, load_other_architecture_refused) {
  Api small, big;
  setup(&small);
  load_api(&big, MODEL("16"));
  char path[700];
  snprintf(path, sizeof path, "%s/big.safetensors", big.cm.dir);
  void *mb = big.create(1), *ms = small.create(2);
  cr_assert_eq(big.save(mb, path), NN_OK);
  expect_load_refused(&small, ms, path, NN_ERR_MISMATCH, "dense(16) file into dense(8)");
  cr_expect(strstr(small.last_error(ms), "fc1.weight"), "last_error does not name fc1.weight: %s",
            small.last_error(ms));
  big.destroy(mb);
  small.destroy(ms);
}

Test(api, load_missing_file) {
  Api a;
  setup(&a);
  void *m = a.create(1);
  char path[700];
  snprintf(path, sizeof path, "%s/does-not-exist.safetensors", a.cm.dir);
  expect_load_refused(&a, m, path, NN_ERR_IO, "missing file");
  a.destroy(m);
}

Test(api, load_truncated_file) {
  Api a;
  setup(&a);
  char path[700], cut[720];
  snprintf(path, sizeof path, "%s/w.safetensors", a.cm.dir);
  snprintf(cut, sizeof cut, "%s/cut.safetensors", a.cm.dir);
  void *src = a.create(1), *m = a.create(2);
  cr_assert_eq(a.save(src, path), NN_OK);
  size_t len;
  unsigned char *f = read_bytes(path, &len);
  uint64_t hn = 0;
  for (int i = 7; i >= 0; i--)
    hn = hn << 8 | f[i];
  size_t cuts[] = {0, 4, 8, 8 + hn / 2, 8 + hn, 8 + hn + 10, len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
    FILE *o = fopen(cut, "wb");
    fwrite(f, 1, cuts[i], o);
    fclose(o);
    char what[64];
    snprintf(what, sizeof what, "file cut to %zu of %zu bytes", cuts[i], len);
    expect_load_refused(&a, m, cut, NN_ERR_FORMAT, what);
  }
  free(f);
  a.destroy(src);
  a.destroy(m);
}

/* ---- train_step refuses bad data without touching the weights ---- */

static void expect_step_refused(Api *a, const float *x, const int32_t *y, int want,
                                const char *what) {
  void *m = a->create(4);
  cr_assert_eq(a->train_step(m, 2, X, (const int32_t[]){0, 1}, NULL), NN_OK); /* Adam state */
  size_t len;
  float *w = snapshot(a, m, &len);
  float loss = 0;
  int st = a->train_step(m, 3, x, y, &loss);
  cr_expect_eq(st, want, "%s: train_step returned %d (%s), expected %d", what, st,
               a->last_error(m), want);
  cr_expect(strlen(a->last_error(m)) > 0, "%s: no last_error", what);
  expect_unchanged(a, m, w, len, what);
  /* The model still trains afterwards. */
  cr_expect_eq(a->train_step(m, 2, X, (const int32_t[]){0, 1}, NULL), NN_OK, "%s", what);
  free(w);
  a->destroy(m);
}

Test(api, train_step_label_out_of_range) {
  Api a;
  setup(&a);
  expect_step_refused(&a, X, (const int32_t[]){0, 4, 1}, NN_ERR_DATA, "label 4 of class[4]");
  expect_step_refused(&a, X, (const int32_t[]){0, 1, -1}, NN_ERR_DATA, "label -1");
}

Test(api, train_step_nan_input) {
  Api a;
  setup(&a);
  float x[3 * XS];
  memcpy(x, X, sizeof x);
  x[XS + 2] = NAN;
  expect_step_refused(&a, x, (const int32_t[]){0, 1, 2}, NN_ERR_NONFINITE, "NaN input");
  x[XS + 2] = INFINITY;
  expect_step_refused(&a, x, (const int32_t[]){0, 1, 2}, NN_ERR_NONFINITE, "Inf input");
}

Test(api, train_step_argument_checks) {
  Api a;
  setup(&a);
  void *m = a.create(1);
  const int32_t y[MAXB + 1] = {0};
  size_t len;
  float *w = snapshot(&a, m, &len);
  cr_expect_eq(a.train_step(m, 0, X, y, NULL), NN_ERR_ARG);
  cr_expect_eq(a.train_step(m, MAXB + 1, X, y, NULL), NN_ERR_ARG);
  cr_expect_eq(a.train_step(m, 1, NULL, y, NULL), NN_ERR_ARG);
  cr_expect_eq(a.train_step(m, 1, X, NULL, NULL), NN_ERR_ARG);
  cr_expect_eq(a.train_step(NULL, 1, X, y, NULL), NN_ERR_ARG);
  cr_expect(strlen(a.last_error(m)) > 0);
  expect_unchanged(&a, m, w, len, "refused train_step");
  free(w);
  a.destroy(m);
}
