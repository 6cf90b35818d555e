/*
 * onnx.h: ONNX import (frontend/onnx.c).
 *
 * An ONNX file becomes two things: the text of a .nn program (what
 * --emit-nn prints; the normal pipeline compiles it) and the initializers
 * as that program's parameters and buffers, named as the layers' tensors
 * are (`conv1.weight`, `bn1.running_var`), so they can be baked like a
 * --weights file.
 */
#ifndef ONNX_H
#define ONNX_H

#include "nncc.h"

typedef struct OnnxWeight {
  const char *name;      /* the program's tensor name: "conv1.weight" */
  Shape shape;           /* as the program's parameter has it */
  const float *data;     /* row-major, shape_numel(&shape) floats */
} OnnxWeight;

typedef struct OnnxModel {
  const char *nn;        /* the .nn program text */
  OnnxWeight *weights;
  int nweights;
  const char **inputs, **outputs;   /* the .nn names of the graph's inputs and outputs */
  int ninputs, noutputs;            /* (before an import's renames) */
} OnnxModel;

/* What `import "net.onnx" (...)` in a .nn file asks of the import. */
typedef struct OnnxImport {
  const char *freeze;    /* NULL: nothing; "": every layer; else the layer of that
                            name and those under it ("features": features.0, ...) */
  const char **rename_from, **rename_to;   /* input and output names -> new names */
  int nrename;
} OnnxImport;

/* Whether path names an ONNX file (ends in ".onnx"). */
bool is_onnx_path(const char *path);
/* Reads and translates the ONNX file at path.  On failure reports
 * "path: error: ..." into ctx->diag and returns false.  With `imp` (an
 * import into a .nn file) the text has no `model` line and binds the graph's
 * outputs as names instead of declaring them outputs. */
bool onnx_import(Ctx *ctx, const char *path, const OnnxImport *imp, OnnxModel *out);

/* The weights w[0..n) for baking: unless *weights is already set
 * (--weights), they go into an anonymous temporary file, removed when the
 * process exits, and *weights names it (/dev/fd/N) for emit_weights.  With
 * `save`, they also go there as the bytes of a safetensors file
 * (--emit-weights; the caller frees it).  false after reporting an error
 * (path names the model in it). */
bool onnx_weights_file(Ctx *ctx, const char *path, const OnnxWeight *w, int n, DType dtype,
                       const char **weights, Buf *save);

/* For the pipeline: the program of the ONNX file at path as a Source (its
 * path the ONNX file's, so messages name it and line numbers count lines of
 * the --emit-nn text), its initializers baked as onnx_weights_file does.
 * NULL after reporting an error. */
Source *onnx_source(Ctx *ctx, const char *path, DType dtype, const char **weights, Buf *save);

/* parse.c: the weights of the program's `import`s, in order (*n of them). */
const OnnxWeight *program_imported_weights(const Program *prog, int *n);

#endif
