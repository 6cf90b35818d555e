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
} OnnxModel;

/* Whether path names an ONNX file (ends in ".onnx"). */
bool is_onnx_path(const char *path);
/* Reads and translates the ONNX file at path.  On failure reports
 * "path: error: ..." into ctx->diag and returns false. */
bool onnx_import(Ctx *ctx, const char *path, OnnxModel *out);

/* For the pipeline: the program of the ONNX file at path as a Source (its
 * path the ONNX file's, so messages name it and line numbers count lines of
 * the --emit-nn text).  Unless *weights is already set (--weights), the
 * initializers go into an anonymous temporary file, removed when the
 * process exits, and *weights names it (/dev/fd/N) for emit_weights.
 * With `save`, the initializers also go there as the bytes of a safetensors
 * file (--emit-weights; the caller frees it).  NULL after reporting an
 * error. */
Source *onnx_source(Ctx *ctx, const char *path, DType dtype, const char **weights, Buf *save);

#endif
