/*
 * fuzz_onnx.c: libFuzzer harness for the ONNX import (frontend/onnx.c).
 *
 * Each input is an ONNX file.  It is imported as `nncc X.onnx` does
 * (protobuf-c decoding, graph checks, translation into .nn text), and the
 * harness checks what the import promises for any file:
 *   - no crash, no sanitizer report, no leak;
 *   - a refused file gets one diagnostic line, "<path>: error: ..." (or
 *     "nncc: error: ..."), with no control bytes: ONNX names are untrusted;
 *   - an accepted file gives a program that parses: the importer writes
 *     only text the language accepts, whatever names the file holds.
 * The program is then lowered, which may refuse it (with a diagnostic).
 * Seeds: the fixtures of tests/onnx/.
 */
#define _GNU_SOURCE
#include "fuzz_file.h"

#include <string.h>

#include "onnx.h"

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "fuzz_onnx: %s\n%s\n", what, detail ? detail : "");
  abort();
}

static void check_diagnostic(const Buf *diag) {
  if (!diag->len || !strstr(diag->data, "error: "))
    fail("refused without a diagnostic", diag->data);
  for (size_t i = 0; i < diag->len; i++) {
    unsigned char c = (unsigned char)diag->data[i];
    if ((c < 0x20 && c != '\n') || c > 0x7e)
      fail("control or non-ASCII byte in a diagnostic", diag->data);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Ctx ctx = {.arena = new_arena()};
  const char *weights = "given";   /* set: no temporary weights file */
  Source *src = onnx_source(&ctx, fuzz_file(data, size), DT_F32, &weights, NULL);
  if (!src) {
    check_diagnostic(&ctx.diag);
    if (strchr(ctx.diag.data, '\n') != ctx.diag.data + ctx.diag.len - 1)
      fail("more than one line of diagnostic", ctx.diag.data);
  } else {
    Program *prog = parse_program(&ctx, src);
    if (!prog)
      fail("an imported program does not parse", ctx.diag.data);
    if (!lower_program(&ctx, prog, MODE_INFER, DT_F32, 4, 1, false, false))
      check_diagnostic(&ctx.diag);
  }
  buf_free(&ctx.diag);
  free_arena(ctx.arena);
  return 0;
}
