/*
 * verify.c: parses emitted C with libclang (--verify and the test suite).
 * Any warning or error in generated code is an nncc bug, reported as
 * "model.c:LINE:COL: warning: ..." with the offending line and a caret.
 * -fopenmp is always passed: without it clang skips the pragmas' clauses.
 */
#include <clang-c/Index.h>
#include <string.h>

#include "nncc.h"

/* The text of line `line` (1-based) of `text`. */
static void append_line(Buf *b, const char *text, unsigned line, unsigned col) {
  const char *p = text;
  for (unsigned i = 1; i < line && p; i++) {
    p = strchr(p, '\n');
    if (p)
      p++;
  }
  if (!p)
    return;
  const char *end = strchr(p, '\n');
  size_t len = end ? (size_t)(end - p) : strlen(p);
  buf_printf(b, "%.*s\n%*s^\n", (int)len, p, (int)(col > 0 ? col - 1 : 0), "");
}

bool verify_c(Ctx *ctx, const char *c_name, const char *c_text, const char *h_name,
              const char *h_text) {
  const char *args[] = {"-xc", "-std=c11", "-Wall", "-Wextra", "-pedantic", "-fopenmp"};
  /* libclang finds `#include "m.h"` among the unsaved files only under the
   * path it looks for, "./m.h" beside a bare "m.c". */
  if (!strchr(h_name, '/'))
    h_name = arena_printf(ctx->arena, "./%s", h_name);
  struct CXUnsavedFile files[2] = {
      {c_name, c_text, (unsigned long)strlen(c_text)},
      {h_name, h_text, (unsigned long)strlen(h_text)},
  };
  CXIndex index = clang_createIndex(0, 0);
  CXTranslationUnit tu = NULL;
  enum CXErrorCode rc = clang_parseTranslationUnit2(
      index, c_name, args, (int)(sizeof args / sizeof *args), files, 2,
      CXTranslationUnit_KeepGoing, &tu);
  bool ok = rc == CXError_Success && tu;
  if (!ok)
    error_plain(ctx, "libclang could not parse %s (error %d)", c_name, (int)rc);
  unsigned ndiag = tu ? clang_getNumDiagnostics(tu) : 0;
  for (unsigned i = 0; i < ndiag; i++) {
    CXDiagnostic d = clang_getDiagnostic(tu, i);
    enum CXDiagnosticSeverity sev = clang_getDiagnosticSeverity(d);
    if (sev >= CXDiagnostic_Warning) {
      CXString s = clang_formatDiagnostic(d, CXDiagnostic_DisplaySourceLocation |
                                                 CXDiagnostic_DisplayColumn |
                                                 CXDiagnostic_DisplayOption);
      buf_printf(&ctx->diag, "%s\n", clang_getCString(s));
      clang_disposeString(s);
      CXFile file;
      unsigned line, col;
      clang_getSpellingLocation(clang_getDiagnosticLocation(d), &file, &line, &col, NULL);
      CXString fname = clang_getFileName(file);
      const char *fn = clang_getCString(fname);
      if (fn && strcmp(fn, c_name) == 0)
        append_line(&ctx->diag, c_text, line, col);
      else if (fn && strcmp(fn, h_name) == 0)
        append_line(&ctx->diag, h_text, line, col);
      clang_disposeString(fname);
      ctx->nerrors++;
      ok = false;
    }
    clang_disposeDiagnostic(d);
  }
  if (tu)
    clang_disposeTranslationUnit(tu);
  clang_disposeIndex(index);
  return ok;
}
