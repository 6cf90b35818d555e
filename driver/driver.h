/*
 * driver.h: the top floor.  The command line (main.c), its options
 * (options.c) and the pipeline (pipeline.c), which calls the floors below
 * with explicit arguments:
 *
 *   driver -> frontend -> passes -> codegen -> ir (+ runtime, pasted)
 *
 * Nothing below includes this header: no stage reads the options, each
 * gets what it needs (the element type, the fusion mask, the output name).
 */
#ifndef DRIVER_H
#define DRIVER_H

#include "nncc.h"

/* ---- options.c: the command line ------------------------------------------ */

typedef struct Options {
  const char *input;         /* model path */
  const char *output;        /* model.c; the header is the same with .h */
  int max_batch;             /* --batch, default 64 */
  int max_threads;           /* --threads, default 8 */
  DType dtype;               /* --dtype */
  bool infer_only;           /* --infer */
  bool no_plan;              /* --no-plan */
  unsigned fuse;             /* --fuse: FUSE_* mask, default FUSE_ALL */
  const char *emit_ir;       /* --emit-ir[=after:PASS]: "" = final */
  const char *emit_dot;
  bool report, verify;
  const char *main_kind;     /* --main=train|infer|bench, NULL */
  bool input_grad;           /* also compute d(input) in train (grad checks) */
  bool no_winograd;          /* --no-winograd: 3x3 convolutions as direct products */
  bool distributed;          /* --distributed=mpi */
  bool sync_bn;              /* --sync-batchnorm: batch statistics over all ranks */
  const char *weights;       /* --weights FILE.safetensors: bake into model_weights.c */
  bool emit_nn;              /* --emit-nn: print the model as .nn text */
  const char *emit_weights;  /* --emit-weights FILE: an ONNX model's weights */
  long long memory_budget;   /* --memory-budget BYTES: a bound on memory_size(), 0 none */
  bool eager_update;         /* --eager-update: each tensor's update once its gradient is done */
} Options;

/* The defaults of the command line. */
#define OPTIONS_DEFAULT \
  ((Options){.max_batch = 64, .max_threads = 8, .dtype = DT_F32, .fuse = FUSE_ALL})

/* Parses argv into *o (which holds the defaults); 0 to go on, or an exit
 * status after printing --help, --version or a usage error. */
int parse_options(int argc, char **argv, Options *o);
/* Prints "nncc: error: " fmt (with arg) and a hint to stderr; returns 2. */
int usage_error(const char *fmt, const char *arg);
/* "none", "all" or a comma list of fusion names -> a FUSE_* mask; false if
 * the text is not one of these.  The one parser of --fuse. */
bool parse_fusions(const char *text, unsigned *mask);
/* The options that shape the emitted code, as a command line that gives the
 * same code ("--batch 64 --threads 8 --dtype f32 --fuse=all"): the header
 * comment of model.c records it (arena string). */
const char *options_line(Arena *a, const Options *o);

/* ---- pipeline.c: the whole compilation ----------------------------------- */

typedef struct Result {
  Buf c, h;               /* model.c, model.h */
  Buf ir, dot, report;    /* --emit-ir, --emit-dot, --report */
  Buf nn;                 /* --emit-nn */
  Buf onnx_weights;       /* --emit-weights: safetensors bytes */
  Buf weights;            /* model_weights.c (--weights), else empty */
  Graph *infer, *train;   /* the final graphs (train is NULL without a loss) */
} Result;
bool is_pass_name(const char *name);
bool nncc_compile(Ctx *ctx, const Options *opt, Result *out);
void free_result(Result *r);

#endif
