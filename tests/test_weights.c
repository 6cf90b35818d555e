/*
 * test_weights.c: nncc --weights FILE bakes trained weights into
 * model_weights.c.
 *
 * Round trip: a training build of a small conv+BN+dense model trains a few
 * Adam steps (so weights and BN running statistics move away from their
 * initial values) and saves a checkpoint.  Then four programs print their
 * forward outputs bit for bit at batch 1, 3 and 8: the trainer itself, a
 * fresh training build that loads the checkpoint, the baked --infer build
 * and the baked training build; all must agree exactly.  The baked --infer
 * program runs on init_in(static buffer) and is linked with a malloc that
 * aborts, and its memory_size must be smaller by exactly the params and
 * buffers blocks.  Both baked builds compile with -std=c11 -Wall -Wextra
 * -Werror -pedantic under gcc and clang.
 *
 * Refusals use a hand-written safetensors file for a one-layer model with
 * known values (which also checks the baked bytes against a hand-computed
 * output): missing, extra, mis-shaped, mis-typed tensors, a truncated file,
 * a bad header length and a missing file must each give "nncc: error:
 * FILE: ...", exit 1 and leave no output file behind.
 *
 * Fine-tuning: a training build with --weights keeps its frozen params in
 * the baked data: memory_size() is the trained params, buffers, gradients,
 * optimizer state and arena, computed here from the model's shapes; it
 * trains bit-identically to the build without --weights that loads the same
 * file; its checkpoints round-trip, and a file with other frozen values does
 * not load.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const char model[] =
    "model wm\n"
    "input  x: f32[2, 6, 6]\n"
    "target y: class[4]\n"
    "h = conv2d(x, 3, kernel=3, pad=1) |> batchnorm |> relu |> maxpool(2)\n"
    "h = flatten(h) |> dense(5) |> batchnorm |> relu\n"
    "logits = dense(h, 4)\n"
    "output probs = softmax(logits)\n"
    "loss cross_entropy(logits, y)\n"
    "train {\n  optimizer adam(lr=1e-2)\n}\n";

/* One program for every role: TRAIN trains and saves argv[1], LOAD loads
 * argv[1], NO_MALLOC makes malloc abort.  Prints memory_size, then the
 * output bits for batches 1, 3 and 8 of fixed inputs. */
static const char driver[] =
    "#include HEADER\n"
    "#include <stdio.h>\n#include <stdlib.h>\n"
    "#ifdef NO_MALLOC\n"
    "void *__wrap_malloc(size_t n);\n"
    "void *__wrap_malloc(size_t n) { (void)n; abort(); }\n"
    "#endif\n"
    "static _Alignas(64) unsigned char mem[1 << 20];\n"
    "static uint64_t s = 12345;\n"
    "static float next(void) {\n"
    "    s = s * 6364136223846793005u + 1442695040888963407u;\n"
    "    return (float)(s >> 40) / (float)(1 << 24) * 2.0f - 1.0f;\n}\n"
    "int main(int argc, char **argv) {\n"
    "    (void)argc; (void)argv;\n"
    "    static float x[8 * WM_X_SIZE], p[8 * WM_PROBS_SIZE];\n"
    "    printf(\"%zu\\n\", wm_memory_size());\n"
    "    if (wm_memory_size() > sizeof mem)\n        return 3;\n"
    "    wm *m = wm_init_in(mem, 1);\n"
    "#ifdef TRAIN\n"
    "    int32_t y[8];\n"
    "    for (int step = 0; step < 5; step++) {\n"
    "        for (int i = 0; i < 8 * WM_X_SIZE; i++)\n            x[i] = next();\n"
    "        for (int i = 0; i < 8; i++)\n            y[i] = i % 4;\n"
    "        float loss;\n"
    "        if (wm_train_step(m, 8, x, y, &loss))\n            return 4;\n"
    "    }\n"
    "    if (wm_save(m, argv[1]))\n        return 5;\n"
    "    s = 12345;\n"
    "#endif\n"
    "#ifdef LOAD\n"
    "    if (wm_load(m, argv[1])) {\n        fprintf(stderr, \"%s\\n\", wm_last_error(m));\n        return 6;\n    }\n"
    "#endif\n"
    "    const int batches[] = {1, 3, 8};\n"
    "    for (int b = 0; b < 3; b++) {\n"
    "        for (int i = 0; i < batches[b] * WM_X_SIZE; i++)\n            x[i] = next();\n"
    "        if (wm_forward(m, batches[b], x, p))\n            return 7;\n"
    "        for (int i = 0; i < batches[b] * WM_PROBS_SIZE; i++) {\n"
    "            uint32_t bits;\n            memcpy(&bits, &p[i], 4);\n"
    "            printf(\"%08x\\n\", (unsigned)bits);\n        }\n"
    "    }\n"
    "    return 0;\n}\n";

static char dir[512];

/* nncc model.nn opts -o <out>.c in dir; returns the exit status. */
static int nncc(char *msg, size_t cap, const char *opts, const char *out) {
  return run_capture(msg, cap, "cd '%s' && '%s' model.nn %s -o %s.c 2>&1", dir, NNCC_BIN, opts, out);
}

/* Builds dir/<prog> from the driver, with the model's C files `srcs`. */
static void build(const char *prog, const char *header, const char *srcs, const char *defs) {
  char msg[8192];
  int st = run_capture(msg, sizeof msg,
                       "cd '%s' && '%s' -std=c11 -Wall -Wextra -Werror -pedantic -O2 -include "
                       "string.h -DHEADER='\"%s\"' %s -x c driver.txt -x none %s -o %s -lm 2>&1",
                       dir, NNCC_CC, header, defs, srcs, prog);
  cr_assert_eq(st, 0, "cc failed for %s:\n%s", prog, msg);
}

/* Runs dir/<prog> [arg]; its stdout is the memory size then output bits. */
static char *outputs(const char *prog, const char *arg, size_t *mem) {
  static char buf[4][65536];
  static int k;
  char *out = buf[k++ % 4];
  int st = run_capture(out, sizeof buf[0], "cd '%s' && ./%s %s", dir, prog, arg);
  cr_assert_eq(st, 0, "%s failed (%d):\n%s", prog, st, out);
  char *end;
  *mem = strtoul(out, &end, 10);
  cr_assert(end != out && *end == '\n', "%s: no memory size:\n%s", prog, out);
  cr_assert_gt(strlen(end), 9 * (1 + 3 + 8) * 4, "%s printed too little:\n%s", prog, out);
  return end + 1;
}

static void setup_model(void) {
  char path[700];
  scratch_dir(dir, sizeof dir, "weights");
  snprintf(path, sizeof path, "%s/model.nn", dir);
  write_file(path, model);
  snprintf(path, sizeof path, "%s/driver.txt", dir);
  write_file(path, driver);
}

Test(weights, baked_outputs_are_bit_identical_and_need_no_malloc) {
  char msg[8192];
  size_t mem_train, mem_plain, mem_baked, mem_copy;
  setup_model();
  cr_assert_eq(nncc(msg, sizeof msg, "--batch 8", "train"), 0, "%s", msg);
  build("trainer", "train.h", "train.c", "-DTRAIN");
  const char *want = outputs("trainer", "ckpt.safetensors", &mem_train);

  build("loaded", "train.h", "train.c", "-DLOAD");
  cr_assert_str_eq(outputs("loaded", "ckpt.safetensors", &mem_copy), want,
                   "load differs from the trained model");
  /* (an --infer build's load refuses a checkpoint with optimizer state) */
  cr_assert_eq(nncc(msg, sizeof msg, "--batch 8 --infer", "plain"), 0, "%s", msg);
  build("plain", "plain.h", "plain.c", "");
  outputs("plain", "", &mem_plain);

  cr_assert_eq(nncc(msg, sizeof msg, "--batch 8 --infer --weights ckpt.safetensors", "baked"), 0,
               "%s", msg);
  build("baked", "baked.h", "baked.c baked_weights.c", "-DNO_MALLOC -Wl,--wrap=malloc");
  const char *got_baked = outputs("baked", "", &mem_baked);
  cr_assert_str_eq(got_baked, want, "baked --infer differs from the loaded weights");
  /* 237 params and 16 buffer reals (see the model): 64-byte aligned blocks
   * of 960 and 64 bytes are not in memory_size any more, nor are the folded
   * weights in the arena (folded_weights_are_baked_not_in_the_arena). */
  cr_assert_gt(mem_plain - mem_baked, 960 + 64, "memory_size %zu, plain %zu", mem_baked,
               mem_plain);

  cr_assert_eq(nncc(msg, sizeof msg, "--batch 8 --weights ckpt.safetensors", "copy"), 0, "%s",
               msg);
  build("copy", "copy.h", "copy.c copy_weights.c", "-DNO_MALLOC -Wl,--wrap=malloc");
  cr_assert_str_eq(outputs("copy", "", &mem_copy), want, "baked training build differs");
  cr_assert_eq(mem_copy, mem_train, "a training build copies the weights: same memory");
}

/* -DNN_NO_FILES (docs/embedded.md): the baked build computes the same bits
 * with no file I/O in it at all (none of the calls save and load make is
 * left undefined in its objects), its header hides save and load, and a
 * --main program refuses the macro with a message. */
Test(weights, no_files_build_has_no_file_io) {
  char msg[8192];
  size_t mem;
  setup_model();
  cr_assert_eq(nncc(msg, sizeof msg, "--batch 8", "train"), 0, "%s", msg);
  build("trainer", "train.h", "train.c", "-DTRAIN");
  const char *want = outputs("trainer", "ckpt.safetensors", &mem);
  cr_assert_eq(nncc(msg, sizeof msg, "--batch 8 --infer --weights ckpt.safetensors", "baked"), 0,
               "%s", msg);
  build("nofiles", "baked.h", "baked.c baked_weights.c", "-DNN_NO_FILES -DNO_MALLOC -Wl,--wrap=malloc");
  cr_assert_str_eq(outputs("nofiles", "", &mem), want, "the -DNN_NO_FILES build differs");

  /* what the same file calls with and without the macro (the training
   * build: it saves and loads) */
  const char *calls = "open|fopen|fsync|rename|unlink|read|write|fread|fwrite|fstat|fdopen|mkstemp";
  for (int nofiles = 0; nofiles < 2; nofiles++) {
    int st = run_capture(msg, sizeof msg,
                         "cd '%s' && '%s' -std=c11 -Wall -Wextra -Werror -pedantic -O1 %s -c train.c "
                         "-o t%d.o && nm -u t%d.o | grep -wcE '%s'",
                         dir, NNCC_CC, nofiles ? "-DNN_NO_FILES" : "", nofiles, nofiles, calls);
    long n = strtol(msg, NULL, 10);
    if (nofiles)
      cr_expect(n == 0 && st == 1, "-DNN_NO_FILES still calls %ld of %s:\n%s", n, calls, msg);
    else
      cr_expect(n >= 4 && st == 0, "the plain build calls only %ld of %s:\n%s", n, calls, msg);
  }
  char path[700];
  snprintf(path, sizeof path, "%s/save.c", dir);
  write_file(path, "#include \"train.h\"\nint main(void) { return wm_save(wm_create(1), \"x\"); }\n");
  int st = run_capture(msg, sizeof msg, "cd '%s' && '%s' -std=c11 -Werror -DNN_NO_FILES -c save.c",
                       dir, NNCC_CC);
  cr_expect(st != 0 && strstr(msg, "wm_save"), "wm_save is declared under -DNN_NO_FILES:\n%s", msg);
  cr_assert_eq(nncc(msg, sizeof msg, "--batch 8 --main=train", "prog"), 0, "%s", msg);
  st = run_capture(msg, sizeof msg, "cd '%s' && '%s' -std=c11 -DNN_NO_FILES -c prog.c", dir,
                   NNCC_CC);
  cr_expect(st != 0 && strstr(msg, "build without -DNN_NO_FILES"), "--main under -DNN_NO_FILES:\n%s",
            msg);
}

Test(weights, malloc_wrapper_catches_create) {
  /* The no-malloc check can fail: a program that calls create() aborts. */
  char msg[8192], path[700];
  setup_model();
  cr_assert_eq(nncc(msg, sizeof msg, "--batch 8", "train"), 0, "%s", msg);
  snprintf(path, sizeof path, "%s/create.c", dir);
  write_file(path, "#include \"train.h\"\n#include <stddef.h>\n"
                   "void *__wrap_malloc(size_t n);\n"
                   "void *__wrap_malloc(size_t n) { (void)n; return NULL; }\n"
                   "int main(void) { return wm_create(1) != NULL; }\n");
  int st = run_capture(msg, sizeof msg, "cd '%s' && '%s' -std=c11 create.c train.c -Wl,--wrap=malloc "
                       "-o create -lm && ./create", dir, NNCC_CC);
  cr_assert_eq(st, 0, "create() did not go through the wrapped malloc:\n%s", msg);
}

Test(weights, emitted_files_compile_pedantic_with_gcc_and_clang) {
  char msg[8192];
  setup_model();
  cr_assert_eq(nncc(msg, sizeof msg, "--batch 8", "train"), 0, "%s", msg);
  build("trainer", "train.h", "train.c", "-DTRAIN");
  size_t mem;
  outputs("trainer", "ckpt.safetensors", &mem);
  cr_assert_eq(nncc(msg, sizeof msg, "--infer --weights ckpt.safetensors", "ro"), 0, "%s", msg);
  cr_assert_eq(nncc(msg, sizeof msg, "--weights ckpt.safetensors", "rw"), 0, "%s", msg);
  const char *compilers[] = {"gcc", "clang"};
  for (int c = 0; c < 2; c++) {
    int st = run_capture(msg, sizeof msg,
                         "cd '%s' && for f in ro.c ro_weights.c rw.c rw_weights.c; do %s -std=c11 "
                         "-Wall -Wextra -Werror -pedantic -O1 -c $f -o /dev/null || exit 1; done 2>&1",
                         dir, compilers[c]);
    cr_assert_eq(st, 0, "%s:\n%s", compilers[c], msg);
  }
  cr_assert_eq(nncc(msg, sizeof msg, "--infer --weights ckpt.safetensors --verify", "v"), 0,
               "--verify:\n%s", msg);
}

/* ---- a one-layer model and hand-written safetensors files ---------------- */

static const char tiny[] = "model tiny\ninput x: f32[3]\noutput y = dense(x, 2)\n";

/* dir/w.safetensors with the given JSON header (padded to 8) and data. */
static void write_st(const char *json, const void *data, size_t len) {
  char path[700];
  snprintf(path, sizeof path, "%s/w.safetensors", dir);
  FILE *f = fopen(path, "wb");
  cr_assert(f);
  size_t n = strlen(json), padded = (n + 7) / 8 * 8;
  unsigned char len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
  fwrite(len8, 1, 8, f);
  fwrite(json, 1, n, f);
  for (size_t i = n; i < padded; i++)
    fputc(' ', f);
  fwrite(data, 1, len, f);
  cr_assert_eq(fclose(f), 0);
}

static const float tiny_w[8] = {0.5f, -1.25f, 3.0e-8f, 1.0f / 3.0f, 48.0f, -7.0f,  /* weight */
                                0.0625f, 255.5f};                                 /* bias */
#define TINY_W "\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"
#define TINY_B "\"fc1.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]}"

static void setup_tiny(void) {
  char path[700];
  scratch_dir(dir, sizeof dir, "weights_tiny");
  snprintf(path, sizeof path, "%s/model.nn", dir);
  write_file(path, tiny);
}

/* nncc `opts` bakes dir/w.safetensors into the tiny model (real: its C
 * type); its output for a fixed input must be the exact one of tiny_w. */
static void expect_tiny_values(const char *opts, const char *real) {
  char msg[8192], path[700];
  cr_assert_eq(nncc(msg, sizeof msg, opts, "out"), 0, "%s", msg);
  snprintf(path, sizeof path, "%s/main.c", dir);
  write_file(path, "#include \"out.h\"\n#include <stdio.h>\n"
                   "static _Alignas(64) unsigned char mem[1 << 16];\n"
                   "int main(void) {\n    const REAL x[3] = {2.0f, 1.0f, -4.0f};\n    REAL y[2];\n"
                   "    tiny *m = tiny_init_in(mem, 0);\n"
                   "    if (tiny_forward(m, 1, x, y) || tiny_load(m, \"w.safetensors\") == 0)\n"
                   "        return 1;\n"
                   "    printf(\"%.17g %.17g\\n\", (double)y[0], (double)y[1]);\n    return 0;\n}\n");
  int st = run_capture(msg, sizeof msg, "cd '%s' && '%s' -std=c11 -Wall -Wextra -Werror -pedantic "
                       "-DREAL=%s main.c out.c out_weights.c -o main -lm && ./main", dir, NNCC_CC,
                       real);
  cr_assert_eq(st, 0, "%s", msg);
  /* the exact values, in double: any wrong byte would be far off */
  double want[2] = {0.5 * 2 - 1.25 + (double)3.0e-8f * -4 + 0.0625,
                    (double)(1.0f / 3.0f) * 2 + 48 + 28 + 255.5};
  double got[2];
  cr_assert_eq(sscanf(msg, "%lf %lf", &got[0], &got[1]), 2, "%s", msg);
  for (int i = 0; i < 2; i++)
    cr_assert_lt(fabs(got[i] - want[i]), 1e-6 * fabs(want[i]), "y%d = %.9g, want %.9g", i, got[i],
                 want[i]);
}

Test(weights, tiny_model_gets_the_exact_values) {
  setup_tiny();
  write_st("{\"__metadata__\":{\"format\":\"pt\"}," TINY_W "," TINY_B "}", tiny_w, sizeof tiny_w);
  expect_tiny_values("--infer --weights w.safetensors", "float");
}

/* An F64 file bakes into an f32 build (every tiny_w value is a float: the
 * rounding is exact), an F32 file into an f64 build. */
Test(weights, converts_the_file_dtype) {
  setup_tiny();
  double w64[8];
  for (int i = 0; i < 8; i++)
    w64[i] = tiny_w[i];
  write_st("{\"fc1.weight\":{\"dtype\":\"F64\",\"shape\":[2,3],\"data_offsets\":[0,48]},"
           "\"fc1.bias\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[48,64]}}", w64, sizeof w64);
  expect_tiny_values("--infer --weights w.safetensors", "float");
  write_st("{" TINY_W "," TINY_B "}", tiny_w, sizeof tiny_w);
  expect_tiny_values("--infer --dtype f64 --weights w.safetensors", "double");
}

/* No out.c, out.h, out_weights.c or temporary left in dir. */
static void assert_no_outputs(void) {
  DIR *d = opendir(dir);
  cr_assert(d);
  for (struct dirent *e; (e = readdir(d));)
    cr_assert(strncmp(e->d_name, "out", 3) != 0, "left behind: %s", e->d_name);
  closedir(d);
}

static void refused(const char *opts, const char *why) {
  char msg[8192], prefix[700];
  int st = nncc(msg, sizeof msg, opts, "out");
  cr_assert_eq(st, 1, "exit %d, want 1:\n%s", st, msg);
  snprintf(prefix, sizeof prefix, "nncc: error: %s/w.safetensors: ", dir);
  cr_assert(strstr(msg, "nncc: error: ") == msg, "%s", msg);
  cr_assert(strstr(msg, why), "want '%s' in:\n%s", why, msg);
  assert_no_outputs();
}

static void refused_file(const char *why) {
  char opts[700];
  snprintf(opts, sizeof opts, "--infer --weights '%s/w.safetensors'", dir);
  refused(opts, why);
}

Test(weights, refuses_a_missing_tensor) {
  setup_tiny();
  write_st("{" TINY_W "}", tiny_w, 24);
  refused_file("missing tensor \"fc1.bias\"");
}

Test(weights, refuses_an_extra_tensor) {
  setup_tiny();
  float data[9];
  memcpy(data, tiny_w, sizeof tiny_w);
  data[8] = 2.0f;
  write_st("{" TINY_W "," TINY_B ",\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[1],"
           "\"data_offsets\":[32,36]}}", data, sizeof data);
  refused_file("unexpected tensor \"fc2.bias\"");
}

Test(weights, refuses_a_wrong_shape) {
  setup_tiny();
  write_st("{\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]}," TINY_B "}",
           tiny_w, sizeof tiny_w);
  refused_file("fc1.weight: shape [3,2] in file, model expects [2,3]");
}

Test(weights, refuses_a_wrong_dtype) {
  setup_tiny();
  int64_t w64[8] = {0};
  write_st("{\"fc1.weight\":{\"dtype\":\"I64\",\"shape\":[2,3],\"data_offsets\":[0,48]},"
           "\"fc1.bias\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[48,64]}}", w64, sizeof w64);
  refused_file("dtype I64 in file, model expects F32");
}

Test(weights, refuses_an_f64_beyond_the_f32_range) {
  setup_tiny();
  double w64[8] = {0, 0, 1e39};
  write_st("{\"fc1.weight\":{\"dtype\":\"F64\",\"shape\":[2,3],\"data_offsets\":[0,48]},"
           "\"fc1.bias\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[48,64]}}", w64, sizeof w64);
  refused_file("fc1.weight: element 2 is beyond the F32 range");
}

Test(weights, refuses_a_truncated_file) {
  setup_tiny();
  write_st("{" TINY_W "," TINY_B "}", tiny_w, sizeof tiny_w - 1);
  refused_file("data section has 31");
}

Test(weights, refuses_a_huge_header_length) {
  setup_tiny();
  char path[700];
  snprintf(path, sizeof path, "%s/w.safetensors", dir);
  write_file(path, "\xff\xff\xff\xff\xff\xff\xff\x7f{}");
  refused_file("header length");
}

/* NaN and Inf weights used to be baked in without a word. */
Test(weights, refuses_non_finite_weights) {
  const float bad[] = {NAN, INFINITY, -INFINITY};
  for (int i = 0; i < 3; i++) {
    setup_tiny();
    float data[8];
    memcpy(data, tiny_w, sizeof tiny_w);
    data[6 + i % 2] = bad[i]; /* a bias */
    write_st("{" TINY_W "," TINY_B "}", data, sizeof data);
    refused_file("fc1.bias: element");
    refused_file("is not finite (NaN or Inf)");
  }
}

Test(weights, refuses_a_missing_file) {
  setup_tiny();
  refused_file("cannot open");
}

Test(weights, refuses_main_infer_with_baked_read_only_weights) {
  char msg[8192];
  setup_tiny();
  write_st("{" TINY_W "," TINY_B "}", tiny_w, sizeof tiny_w);
  int st = nncc(msg, sizeof msg, "--infer --main=infer --weights w.safetensors", "out");
  cr_assert_eq(st, 2, "exit %d:\n%s", st, msg);
  cr_assert(strstr(msg, "--main=infer loads its weights from a file"), "%s", msg);
  assert_no_outputs();
}

/* Model `name` (text; one input of `in` reals per sample, one output of
 * `out`), emitted --infer at --batch `batch`: the plain build sets every
 * parameter and buffer to values of its own (batchnorm's away from 1 and 0)
 * and saves them; the build with them baked must give the same outputs bit
 * for bit.  The memory_size of both into *plain and *baked. */
static void bake_and_compare(const char *name, const char *text, int in, int out, int batch,
                             size_t *plain, size_t *baked) {
  char msg[8192], path[700], opts[64], drv[4096];
  scratch_dir(dir, sizeof dir, name);
  snprintf(path, sizeof path, "%s/model.nn", dir);
  write_file(path, text);
  snprintf(drv, sizeof drv,
           "#include HEADER\n#include <stdio.h>\n#include <stdlib.h>\n"
           "#ifdef NO_MALLOC\n"
           "void *__wrap_malloc(size_t n);\n"
           "void *__wrap_malloc(size_t n) { (void)n; abort(); }\n"
           "#endif\n"
           "#define M(f) %s_##f\n"
           "static _Alignas(64) unsigned char mem[1 << 22];\n"
           "static float x[%d * %d], y[%d * %d];\n"
           "int main(void) {\n"
           "    printf(\"%%zu\\n\", M(memory_size)());\n"
           "    if (M(memory_size)() > sizeof mem)\n        return 3;\n"
           "    %s *m = M(init_in)(mem, 7);\n"
           "#ifdef SAVE\n"
           "    for (int t = 0; t < M(tensor_count)(); t++) {\n"
           "        size_t n;\n        float *p = M(tensor)(m, t, &n);\n"
           "        for (size_t i = 0; i < n; i++)   /* positive: a variance too */\n"
           "            p[i] = 0.5f + (float)((i * 7 + (size_t)t * 13) %% 17) / 16.0f -\n"
           "                   (n > 256 ? 0.53f : 0);\n    }\n"
           "    if (M(save)(m, \"w.safetensors\"))\n        return 1;\n"
           "#endif\n"
           "    for (int i = 0; i < %d * %d; i++)\n        x[i] = (float)(i %% 11) - 5.0f;\n"
           "    if (M(forward)(m, %d, x, y))\n        return 2;\n"
           "    for (int i = 0; i < %d * %d; i++) {\n"
           "        unsigned u;\n        memcpy(&u, &y[i], 4);\n        printf(\"%%08x\\n\", u);\n    }\n"
           "    return 0;\n}\n",
           name, batch, in, batch, out, name, batch, in, batch, batch, out);
  snprintf(path, sizeof path, "%s/driver.txt", dir);
  write_file(path, drv);
  snprintf(opts, sizeof opts, "--infer --batch %d", batch);
  cr_assert_eq(nncc(msg, sizeof msg, opts, "plain"), 0, "%s", msg);
  build("plain", "plain.h", "plain.c", "-DSAVE");
  const char *want = outputs("plain", "", plain);
  snprintf(opts, sizeof opts, "--infer --batch %d --weights w.safetensors", batch);
  cr_assert_eq(nncc(msg, sizeof msg, opts, "baked"), 0, "%s", msg);
  build("baked", "baked.h", "baked.c baked_weights.c", "-DNO_MALLOC -Wl,--wrap=malloc");
  cr_assert_str_eq(outputs("baked", "", baked), want, "%s: the baked build differs", name);
}

/* A dense layer of 128 x 128 weights folds a batchnorm: the plain --infer
 * build folds into its arena on every call (64 KiB), the baked one has the
 * folded weights baked by nncc and an arena of the two activations.  The
 * outputs agree bit for bit (the fold's arithmetic is the same, its fma
 * explicit). */
Test(weights, folded_weights_are_baked_not_in_the_arena) {
  size_t mem_plain, mem_baked;
  bake_and_compare("fold", "model fold\ninput x: f32[128]\noutput y = dense(x, 128) |> batchnorm\n",
                   128, 128, 1, &mem_plain, &mem_baked);
  cr_assert_gt(mem_plain, 2 * 128 * 128 * 4, "plain memory_size %zu", mem_plain);
  cr_assert_lt(mem_baked, 128 * 128 * 4, "baked memory_size %zu", mem_baked);
}

/* Two Winograd layers (3x3, stride 1, 16 channels; the first folds a
 * batchnorm) and a strided one (a product on packed columns, 10 filters in
 * panels of 6, 2 groups): baked, their transformed filters (computed by nncc
 * with nn_wino_filters' arithmetic) and filter panels (copied as nn_pack_a
 * does, zeros past each group's filters) give the outputs of the plain build,
 * which prepares them in each layer's workspace at every call (36 x 18 x 16
 * reals for the second), bit for bit.  A wrong constant or order in the
 * compile-time transform, a misplaced panel row, or a layer still reading
 * its workspace fails here. */
Test(weights, prepared_filters_are_baked_not_in_the_arena) {
  size_t mem_plain, mem_baked;
  char report[16384];
  bake_and_compare("wino",
                   "model wino\ninput x: f32[16, 12, 12]\n"
                   "h = conv2d(x, 16, kernel=3, pad=1, bias=false) |> batchnorm |> relu\n"
                   "h = conv2d(h, 16, kernel=3, pad=1)\n"
                   "output y = conv2d(h, 10, kernel=3, stride=2, pad=1, groups=2)\n",
                   16 * 144, 10 * 36, 4, &mem_plain, &mem_baked);
  cr_assert_eq(run_capture(report, sizeof report, "cd '%s' && '%s' model.nn --infer --batch 4 "
                           "--weights w.safetensors --report 2>&1", dir, NNCC_BIN), 0, "%s", report);
  const char *first = strstr(report, "filters transformed at compile time");
  cr_assert(first && strstr(first + 1, "filters transformed at compile time") &&
            strstr(report, "filters packed at compile time"),
            "every layer should read baked filters:\n%s", report);
  cr_assert_gt(mem_plain - mem_baked, 36 * 18 * 16 * 4, "memory_size %zu, plain %zu", mem_baked,
               mem_plain);
}

/* The same at batch 1, where small planes run as pixel rows (the filters as
 * the micro-kernel's columns): a Winograd layer (its U^T in panels of 32
 * filters), a 1x1 layer reading x in place and a strided one on packed
 * columns (their filters packed as nn_pack_b does, zeros past the 64th). */
Test(weights, prepared_filters_are_baked_as_columns_at_batch_1) {
  size_t mem_plain, mem_baked;
  char report[16384];
  bake_and_compare("cols",
                   "model cols\ninput x: f32[16, 10, 10]\n"
                   "h = conv2d(x, 32, kernel=3, pad=1) |> relu\n"
                   "h = conv2d(h, 64, kernel=1)\n"
                   "output y = conv2d(h, 32, kernel=3, stride=2, pad=1)\n",
                   16 * 100, 32 * 25, 1, &mem_plain, &mem_baked);
  cr_assert_eq(run_capture(report, sizeof report, "cd '%s' && '%s' model.nn --infer --batch 1 "
                           "--weights w.safetensors --report 2>&1", dir, NNCC_BIN), 0, "%s", report);
  const char *wino = strstr(report, "Winograd F(4x4,3x3) as pixel rows");
  const char *first = strstr(report, "pixel rows at batch 1: 17 tiles");
  cr_assert(wino && strstr(wino, "filters transformed at compile time") && first &&
            strstr(first, "input packed in tiles; filters packed at compile time") &&
            strstr(report, "columns packed in tiles; filters packed at compile time"),
            "every layer should run as pixel rows and read baked filters:\n%s", report);
  cr_assert_gt(mem_plain - mem_baked, 36 * 16 * 32 * 4, "memory_size %zu, plain %zu", mem_baked,
               mem_plain);
}

/* ---- batchnorm's num_batches_tracked ---------------------------------------- */

/* A PyTorch state_dict of `layers` batchnorm layers in a row: per layer four
 * F32 [2] tensors and the I64 counter (shape []) count + its index. */
enum { MAX_BN = 9 };

static void write_bn_st(int layers, int64_t count) {
  char path[700], text[256] = "model tbn\ninput x: f32[2]\noutput y = x";
  char json[MAX_BN * 512] = "{", *j = json + 1;
  typedef struct { float w[2], b[2], mean[2], var[2]; int64_t count; } Bn;
  Bn data[MAX_BN];
  static const char *const names[] = {"weight", "bias", "running_mean", "running_var"};
  for (int k = 0; k < layers; k++) {
    strcat(text, " |> batchnorm");
    data[k] = (Bn){{1.5f, 2}, {0.25f, -1}, {3, 4}, {0.5f, 2}, count + k};
    long at = (long)(k * sizeof data[0]);
    for (int t = 0; t < 4; t++, at += 8)
      j += sprintf(j, "\"bn%d.%s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[%ld,%ld]},",
                   k + 1, names[t], at, at + 8);
    j += sprintf(j, "\"bn%d.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],"
                 "\"data_offsets\":[%ld,%ld]}%s", k + 1, at, at + 8, k + 1 < layers ? "," : "}");
  }
  strcat(text, "\n");
  scratch_dir(dir, sizeof dir, "weights_bn");
  snprintf(path, sizeof path, "%s/model.nn", dir);
  write_file(path, text);
  write_st(json, data, (size_t)layers * sizeof data[0]);
}

/* The baked counters are the file's: a model built with --weights saves
 * them.  Nine layers: the table of counters wraps a line after eight. */
Test(weights, bakes_num_batches_tracked) {
  char msg[8192], path[700], name[64];
  write_bn_st(MAX_BN, 41);
  cr_assert_eq(nncc(msg, sizeof msg, "--infer --weights w.safetensors", "out"), 0, "%s", msg);
  snprintf(path, sizeof path, "%s/main.c", dir);
  write_file(path, "#include \"out.h\"\n"
                   "static _Alignas(64) unsigned char mem[1 << 16];\n"
                   "int main(void) {\n    return tbn_save(tbn_init_in(mem, 0), \"back.safetensors\");\n}\n");
  int st = run_capture(msg, sizeof msg, "cd '%s' && '%s' -std=c11 -Wall -Wextra -Werror -pedantic "
                       "main.c out.c out_weights.c -o main -lm && ./main", dir, NNCC_CC);
  cr_assert_eq(st, 0, "%s", msg);
  snprintf(path, sizeof path, "%s/back.safetensors", dir);
  for (int k = 0; k < MAX_BN; k++) {
    snprintf(name, sizeof name, "bn%d.num_batches_tracked", k + 1);
    cr_expect_eq(st_read_i64(path, name), 41 + k, "%s", name);
  }
}

Test(weights, refuses_a_negative_num_batches_tracked) {
  write_bn_st(1, -3);
  refused_file("bn1.num_batches_tracked: element 0 is not a count >= 0");
}

/* ---- fine-tuning: frozen weights stay where they are baked ------------------ */

/* conv1 frozen, fc1's weight frozen and its bias trained, the batchnorms and
 * fc2 trained.  Trained reals: bn1 3 + 3, fc1.bias 5, bn2 5 + 5, fc2 5*4 + 4
 * = 45; frozen: conv1 3*2*3*3 + 3 and fc1.weight 5*27 = 192; buffers 16. */
static const char fine_tune_model[] =
    "model fz\n"
    "input  x: f32[2, 6, 6]\n"
    "target y: class[4]\n"
    "h = conv2d(x, 3, kernel=3, pad=1, freeze=true) |> batchnorm |> relu |> maxpool(2)\n"
    "h = flatten(h) |> dense(5, freeze=weight) |> batchnorm |> relu\n"
    "logits = dense(h, 4)\n"
    "output probs = softmax(logits)\n"
    "loss cross_entropy(logits, y)\n"
    "train {\n  optimizer adam(lr=1e-2)\n}\n";
enum { FZ_TRAINED = 45, FZ_FROZEN = 192, FZ_BUFFERS = 16 };

/* Includes the generated C (SRC) to see its struct and sizes.  Modes:
 *   save F        writes the weights of init_in(seed 1)
 *   bad F G       loads F, changes conv1.weight[0], saves G
 *   train [F]     (loads F,) prints memory_size and its parts, five steps'
 *                 loss bits, per tensor whether it changed and whether it
 *                 lies in the model's memory, then every tensor's bits
 *   reload F G    trains, saves F, loads F into a fresh model (0), loads G
 *                 (must fail with nothing changed): prints status and error */
static const char fine_tune_driver[] =
    "#include SRC\n"
    "#include <stdio.h>\n"
    "static _Alignas(64) unsigned char mem[1 << 20], mem2[1 << 20];\n"
    "static float x[8 * FZ_X_SIZE];\n"
    "static int32_t y[8];\n"
    "static unsigned bits(float f) { unsigned u; memcpy(&u, &f, 4); return u; }\n"
    "static int steps(fz *m) {\n"
    "    uint64_t s = 12345;\n"
    "    for (int step = 0; step < 5; step++) {\n"
    "        for (int i = 0; i < 8 * FZ_X_SIZE; i++) {\n"
    "            s = s * 6364136223846793005u + 1442695040888963407u;\n"
    "            x[i] = (float)(s >> 40) / (float)(1 << 24) * 2.0f - 1.0f;\n        }\n"
    "        for (int i = 0; i < 8; i++)\n            y[i] = (i + step) % 4;\n"
    "        float loss;\n"
    "        if (fz_train_step(m, 8, x, y, &loss))\n            return 1;\n"
    "        printf(\"loss %08x\\n\", bits(loss));\n    }\n"
    "    return 0;\n}\n"
    "static int same(fz *a, fz *b) {\n"
    "    for (int t = 0; t < fz_tensor_count(); t++) {\n"
    "        size_t n;\n        const float *p = fz_tensor(a, t, &n), *q = fz_tensor(b, t, &n);\n"
    "        if (memcmp(p, q, n * sizeof *p))\n            return 0;\n    }\n"
    "    return 1;\n}\n"
    "int main(int argc, char **argv) {\n"
    "    fz *m = fz_init_in(mem, 1);\n"
    "    if (argc == 3 && !strcmp(argv[1], \"save\"))\n        return fz_save(m, argv[2]) ? 2 : 0;\n"
    "    if (argc == 4 && !strcmp(argv[1], \"bad\")) {\n"
    "        if (fz_load(m, argv[2]))\n            return 3;\n"
    "        ((float *)fz_tensor(m, 0, NULL))[0] += 1.0f;   /* conv1.weight */\n"
    "        return fz_save(m, argv[3]) ? 4 : 0;\n    }\n"
    "    if (argc == 3 && fz_load(m, argv[2])) {\n"
    "        printf(\"%s\\n\", fz_last_error(m));\n        return 5;\n    }\n"
    "    if (argc == 4 && !strcmp(argv[1], \"reload\")) {\n"
    "        if (steps(m) || fz_save(m, argv[2]))\n            return 6;\n"
    "        fz *f = fz_init_in(mem2, 9);\n"
    "        int st = fz_load(f, argv[2]);\n"
    "        printf(\"reload %d same %d\\n\", st, same(m, f));\n"
    "        st = fz_load(f, argv[3]);\n"
    "        printf(\"bad %d same %d: %s\\n\", st, same(m, f), fz_last_error(f));\n"
    "        return 0;\n    }\n"
    "    printf(\"memory_size %zu struct %zu arena %ld buffers %ld\\n\", fz_memory_size(),\n"
    "           sizeof(struct fz), (long)NN_ARENA_SIZE, (long)NN_BUFFERS_SIZE);\n"
    "    static float before[1 << 12];\n"
    "    size_t at = 0;\n"
    "    for (int t = 0; t < fz_tensor_count(); t++) {\n"
    "        size_t n;\n        const float *p = fz_tensor(m, t, &n);\n"
    "        memcpy(before + at, p, n * sizeof *p);\n        at += n;\n    }\n"
    "    if (steps(m))\n        return 7;\n"
    "    at = 0;\n"
    "    printf(\"tensors\\n\");\n"
    "    for (int t = 0; t < fz_tensor_count(); t++) {\n"
    "        size_t n;\n        const float *p = fz_tensor(m, t, &n);\n"
    "        const unsigned char *c = (const unsigned char *)p;\n"
    "        printf(\"%s %s %s\\n\", fz_tensor_name(t), memcmp(before + at, p, n * sizeof *p) ? \"changed\" : \"same\",\n"
    "               c >= mem && c < mem + sizeof mem ? \"ram\" : \"elsewhere\");\n"
    "        at += n;\n    }\n"
    "    printf(\"bits\\n\");\n"
    "    for (int t = 0; t < fz_tensor_count(); t++) {\n"
    "        size_t n;\n        const float *p = fz_tensor(m, t, &n);\n"
    "        for (size_t i = 0; i < n; i++)\n            printf(\"%08x\\n\", bits(p[i]));\n    }\n"
    "    return 0;\n}\n";

/* Builds dir/<prog> from fine_tune_driver on <src>.c (and its weights). */
static void build_fine_tune(const char *prog, const char *src, bool baked) {
  char msg[8192];
  int st = run_capture(msg, sizeof msg,
                       "cd '%s' && '%s' -std=c11 -Wall -Wextra -Werror -O1 -DSRC='\"%s.c\"' -x c "
                       "ftdriver.txt -x none %s%s -o %s -lm 2>&1",
                       dir, NNCC_CC, src, baked ? src : "", baked ? "_weights.c" : "", prog);
  cr_assert_eq(st, 0, "cc failed for %s:\n%s", prog, msg);
}

static size_t align64(size_t n) { return (n + 63) / 64 * 64; }

/* A fine-tune build with --weights: the frozen weights are read where they
 * are baked (not in memory_size, not in the model's memory), it trains
 * exactly as the build without --weights that loads the same file, and its
 * checkpoints round-trip; a file whose frozen values differ from the baked
 * ones does not load (NN_ERR_ARG, naming the tensor, nothing changed). */
Test(weights, fine_tune_keeps_frozen_weights_baked) {
  char msg[1 << 16], path[700];
  scratch_dir(dir, sizeof dir, "weights_ft");
  snprintf(path, sizeof path, "%s/model.nn", dir);
  write_file(path, fine_tune_model);
  snprintf(path, sizeof path, "%s/ftdriver.txt", dir);
  write_file(path, fine_tune_driver);
  cr_assert_eq(nncc(msg, sizeof msg, "--batch 8", "plain"), 0, "%s", msg);
  build_fine_tune("plain", "plain", false);
  cr_assert_eq(run_capture(msg, sizeof msg, "cd '%s' && ./plain save w.safetensors && "
                           "./plain bad w.safetensors bad.safetensors", dir), 0, "%s", msg);
  cr_assert_eq(nncc(msg, sizeof msg, "--batch 8 --weights w.safetensors --verify", "ft"), 0, "%s",
               msg);
  build_fine_tune("ft", "ft", true);
  const char *compilers[] = {"gcc", "clang"};
  for (int c = 0; c < 2; c++)
    cr_assert_eq(run_capture(msg, sizeof msg, "cd '%s' && for f in ft.c ft_weights.c; do %s "
                             "-std=c11 -Wall -Wextra -Werror -pedantic -O1 -c $f -o /dev/null || "
                             "exit 1; done 2>&1", dir, compilers[c]), 0, "%s:\n%s", compilers[c], msg);

  static char want[1 << 16], got[1 << 16];
  cr_assert_eq(run_capture(want, sizeof want, "cd '%s' && ./plain train w.safetensors", dir), 0,
               "%s", want);
  cr_assert_eq(run_capture(got, sizeof got, "cd '%s' && ./ft train", dir), 0, "%s", got);
  /* memory_size: the struct, then 64-byte aligned blocks of the trained
   * params, the buffers, their gradients, Adam's two slots and the arena */
  size_t mem, st_size, plain_mem;
  long arena, buffers;
  cr_assert_eq(sscanf(got, "memory_size %zu struct %zu arena %ld buffers %ld", &mem, &st_size,
                      &arena, &buffers), 4, "%s", got);
  cr_assert_eq(buffers, FZ_BUFFERS);
  size_t want_mem = 63 + align64(st_size) + align64(4 * FZ_TRAINED) + align64(4 * FZ_BUFFERS) +
                    align64(4 * FZ_TRAINED) + align64(2 * 4 * FZ_TRAINED) +
                    align64(4 * (size_t)arena);
  cr_expect_eq(mem, want_mem, "memory_size %zu, want %zu", mem, want_mem);
  cr_assert_eq(sscanf(want, "memory_size %zu", &plain_mem), 1);
  cr_expect_geq(plain_mem, mem + 4 * FZ_FROZEN, "plain %zu, fine-tune %zu", plain_mem, mem);
  /* the same losses and tensors, bit for bit, as the build that loads the file */
  const char *g = strstr(got, "\nloss"), *w = strstr(want, "\nloss");
  cr_assert(g && w);
  const char *frozen[] = {"conv1.weight", "conv1.bias", "fc1.weight"};
  for (int k = 0; k < 3; k++) {
    char line[128];
    snprintf(line, sizeof line, "\n%s same elsewhere\n", frozen[k]);
    cr_expect(strstr(got, line), "%s is not unchanged and baked:\n%s", frozen[k], got);
  }
  cr_expect(strstr(got, "\nfc1.bias changed ram\n") && strstr(got, "\nfc2.weight changed ram\n"),
            "%s", got);
  const char *gt = strstr(got, "\ntensors\n"), *wt = strstr(want, "\ntensors\n");
  cr_assert(gt && wt);
  cr_expect(gt - g == wt - w && strncmp(g, w, (size_t)(gt - g)) == 0,
            "losses differ:\n%.*s\nagainst\n%.*s", (int)(gt - g), g, (int)(wt - w), w);
  cr_expect(strcmp(strstr(got, "\nbits\n"), strstr(want, "\nbits\n")) == 0,
            "tensors differ after training");

  cr_assert_eq(run_capture(msg, sizeof msg, "cd '%s' && ./ft reload out.safetensors "
                           "bad.safetensors", dir), 0, "%s", msg);
  cr_expect(strstr(msg, "reload 0 same 1\n"), "%s", msg);
  cr_expect(strstr(msg, "bad -1 same 1: conv1.weight: element 0 differs from the weights baked "
                        "read-only"), "%s", msg);
}

/* --memory-budget counts what a fine-tune build keeps in RAM: a 256 KB frozen
 * layer baked by --weights is not in it, so 64 KB fit (the generated code
 * asserts memory_size() against the budget: it must compile), and the
 * same build without --weights does not fit. */
Test(weights, memory_budget_leaves_frozen_weights_out) {
  char msg[8192], path[700];
  scratch_dir(dir, sizeof dir, "weights_ftbudget");
  snprintf(path, sizeof path, "%s/model.nn", dir);
  write_file(path, "model bf\ninput x: f32[256]\ntarget y: class[4]\n"
                   "h = dense(x, 256, freeze=true) |> relu\nlogits = dense(h, 4)\n"
                   "output logits\nloss cross_entropy(logits, y)\n");
  enum { W1 = 256 * 256, B1 = 256, W2 = 4 * 256, B2 = 4 };
  static float data[W1 + B1 + W2 + B2];
  for (size_t i = 0; i < sizeof data / sizeof *data; i++)
    data[i] = (float)(i % 7) / 64.0f - 0.05f;
  char json[512];
  snprintf(json, sizeof json,
           "{\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[256,256],\"data_offsets\":[0,%d]},"
           "\"fc1.bias\":{\"dtype\":\"F32\",\"shape\":[256],\"data_offsets\":[%d,%d]},"
           "\"fc2.weight\":{\"dtype\":\"F32\",\"shape\":[4,256],\"data_offsets\":[%d,%d]},"
           "\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[%d,%d]}}",
           4 * W1, 4 * W1, 4 * (W1 + B1), 4 * (W1 + B1), 4 * (W1 + B1 + W2), 4 * (W1 + B1 + W2),
           4 * (W1 + B1 + W2 + B2));
  write_st(json, data, sizeof data);
  cr_assert_eq(nncc(msg, sizeof msg, "--batch 1 --weights w.safetensors --memory-budget 64K", "ft"),
               0, "%s", msg);
  int st = run_capture(msg, sizeof msg, "cd '%s' && '%s' -std=c11 -Wall -Wextra -Werror -c ft.c "
                       "-o /dev/null 2>&1", dir, NNCC_CC);
  cr_assert_eq(st, 0, "%s", msg);
  cr_assert_eq(nncc(msg, sizeof msg, "--batch 1 --memory-budget 64K", "plain"), 1, "%s", msg);
  cr_expect(strstr(msg, "--memory-budget 65536: memory_size() needs about"), "%s", msg);
}
