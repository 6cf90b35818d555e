/*
 * harness.h: end-to-end test helpers.  A test writes a model, runs the real
 * nncc binary on it, compiles the emitted C with the system compiler into a
 * shared object, loads it and calls the generated API through dlsym.
 */
#ifndef HARNESS_H
#define HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Compiled {
  void *lib;          /* dlopen handle */
  char dir[512];      /* per-test scratch directory */
  char c_path[600];   /* the emitted model.c */
  char name[64];      /* model name = API prefix */
} Compiled;

/* Runs a shell command; returns its exit status (-1 if it did not exit). */
int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Runs a command capturing stdout+stderr into out (NUL-terminated). */
int run_capture(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A fresh scratch directory under the build tree, unique per call. */
void scratch_dir(char *dir, size_t cap, const char *tag);
/* Writes text to dir/file; returns the path (static storage per call site is
 * not assumed: the caller passes path). */
void write_file(const char *path, const char *text);
char *read_text(const char *path);   /* malloc'd, NULL if missing */
/* n raw values of `size` bytes from path, malloc'd; fails the test unless
 * the file holds at least that many. */
void *read_values(const char *path, size_t n, size_t size);

/* The suite's ordinary optimization level for models: -O1, or -Og in a
 * sanitized build (a third less compile time there, 2.2 -> 1.5 s for a
 * small conv2d model, and the sanitizers' checks the same).  Tests that
 * need -O2 or -O3 (speed, or code those levels give) ask for them. */
#define MODEL_O1 NNCC_MODEL_O1

/* The compiler command, without sources and output, that compile_model
 * builds a model with: NNCC_CC, the test's `cflags` (NULL: MODEL_O1), the
 * flags tests/CMakeLists.txt gives the test (sanitizers, a pinned
 * micro-kernel, NN_NO_FILES), -UNN_NO_FILES with model_files, and -include
 * of the precompiled system headers where the compiler is gcc. */
void model_cc(char *cmd, size_t cap, const char *cflags);
/* Most tests build their models with -DNN_NO_FILES (tests/CMakeLists.txt):
 * a test that saves or loads sets this first, and model_cc undoes it. */
extern bool model_files;
/* Emits `model` (source text, model name `name`) with nncc `opts`, compiles
 * it with `cflags` into a shared object and loads it (model_cc: in a
 * sanitized build, with ASan and UBSan too, but for test_examples and
 * test_fusion).  Fails the current
 * Criterion test on any error, printing the diagnostics. */
void compile_model(Compiled *cm, const char *name, const char *model, const char *opts,
                   const char *cflags);
/* The same for the model file at path `nn` (model name `name`), compiled
 * into cm->dir (a new scratch directory unless the caller set one), with
 * <name>_weights.c when nncc wrote one. */
void compile_model_file(Compiled *cm, const char *name, const char *nn, const char *opts,
                  const char *cflags);
/* N of `#define macro N` in the emitted C of cm; fails the test if there is none. */
long emitted_define(const Compiled *cm, const char *macro);
/* The generated function <name>_<fn>; fails the test if missing. */
void *api(const Compiled *cm, const char *fn);
/* Through the model's API function `fn` ("tensor" or "grad"), the tensor
 * named `name` of model m, or NULL when there is none; *numel (if not NULL)
 * gets its size.  The element type is the model's real. */
void *tensor_by_name(const Compiled *cm, void *m, const char *fn, const char *name,
                     size_t *numel);
void close_model(Compiled *cm);

/* dir/<set>-images-idx3-ubyte and -labels-idx1-ubyte (MNIST's IDX files):
 * count 28x28 digits, a bar in row 4 + 2*(i % 10) for digit i, labelled
 * labels[i % 10]. */
void write_idx_digits(const char *dir, const char *set, int count, const unsigned char labels[10]);
/* The same with noise drawn from seed (0: none, as write_idx_digits): each
 * bar moved by -3..3 columns and dimmed by up to 63, and one pixel in eight
 * elsewhere set to a random value. */
void write_idx_noisy_digits(const char *dir, const char *set, int count,
                            const unsigned char labels[10], uint64_t seed);

/* Deterministic test data. */
void fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);
void fill_uniform_d(double *x, size_t n, uint64_t seed, double lo, double hi);
double max_rel_err(const float *got, const double *want, size_t n);
double max_rel_err_d(const double *got, const double *want, size_t n);

/* The I64 scalar `name` (shape []) of the safetensors file at path, as nncc
 * writes it: read, or overwritten in place.  Fail the test if it is not there. */
int64_t st_read_i64(const char *path, const char *name);
void st_write_i64(const char *path, const char *name, int64_t value);

#endif
