/*
 * diag.c: source files and diagnostics.
 *
 * A diagnostic looks like gcc's:
 *
 *   model.nn:7:5: error: unknown op or block 'conv3d'
 *   h = conv3d(x, 6)
 *       ^~~~~~
 *
 * (the line and caret without a gutter, as gcc -fno-diagnostics-show-line-
 * numbers prints them).  Columns are 1-based and count tabs to the next
 * multiple of 8; the echoed line has tabs expanded so the caret lines up,
 * non-printable bytes replaced by '?', and very long lines cut to a window
 * around the column.  Each `from` link of a location (a block expansion) adds
 * a "note: in block expanded here" with its own line and caret; a place in
 * the text of an `import` adds "note: in the graph imported here".
 *
 * Only the first error of a compilation is formatted: the frontend stops at
 * it, and later errors would be consequences.  Ctx.nerrors still counts all.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nncc.h"

#define MAX_SOURCE_BYTES (64L << 20)
#define WINDOW 200 /* visible columns of a long source line */

/* Start of line `line` (1-based) in src, or NULL past the end. */
static const char *line_start(const Source *src, int line) {
  const char *p = src->text, *end = src->text + src->len;
  for (int l = 1; l < line; l++) {
    p = memchr(p, '\n', (size_t)(end - p));
    if (!p)
      return NULL;
    p++;
  }
  return p;
}

static int next_col(int col, char c) { return c == '\t' ? (col - 1) / 8 * 8 + 9 : col + 1; }

/* Echoes the visual columns [first, last) of the line at p, tabs expanded,
 * non-printables as '?'. */
static void echo_window(Buf *b, const char *p, const char *end, int first, int last) {
  char chunk[256];
  int n = 0;
  for (int col = 1; p < end && *p != '\n' && col < last; p++) {
    if (*p == '\r' && (p + 1 == end || p[1] == '\n'))
      break;
    int next = next_col(col, *p);
    for (int c = col; c < next && c < last; c++) {
      if (c < first)
        continue;
      chunk[n++] = *p == '\t' ? ' ' : (*p >= 0x20 && *p < 0x7f) ? *p : '?';
      if (n == (int)sizeof chunk - 1) {
        chunk[n] = '\0';
        buf_puts(b, chunk);
        n = 0;
      }
    }
    col = next;
  }
  chunk[n] = '\0';
  buf_puts(b, chunk);
}

/* Visual width of the line at p. */
static int line_width(const char *p, const char *end) {
  int col = 1;
  for (; p < end && *p != '\n'; p++)
    col = next_col(col, *p);
  return col - 1;
}

/* The source line of loc and a caret line under loc.col .. col+len-1. */
static void show_line(Buf *b, Loc loc) {
  const char *p = line_start(loc.src, loc.line);
  if (!p)
    return;
  const char *end = loc.src->text + loc.src->len;
  int width = line_width(p, end), first = 1, last = width + 2;
  bool cut_left = false, cut_right = false;
  if (width > WINDOW) {
    first = loc.col > WINDOW / 2 ? loc.col - WINDOW / 2 : 1;
    last = first + WINDOW;
    cut_left = first > 1;
    cut_right = last <= width;
  }
  const char *dots = "...";
  buf_puts(b, cut_left ? dots : "");
  echo_window(b, p, end, first, last);
  buf_puts(b, cut_right ? "...\n" : "\n");
  int pad = (cut_left ? 3 : 0) + loc.col - first;
  for (int i = 0; i < pad; i++)
    buf_puts(b, " ");
  buf_puts(b, "^");
  int len = loc.len;
  if (loc.col + len > last)
    len = last - loc.col;
  for (int i = 1; i < len; i++)
    buf_puts(b, "~");
  buf_puts(b, "\n");
}

void error_at(Ctx *ctx, Loc loc, const char *fmt, ...) {
  if (ctx->nerrors++ > 0)
    return;
  if (!loc.src) {
    va_list ap;
    va_start(ap, fmt);
    buf_puts(&ctx->diag, "nncc: error: ");
    buf_vprintf(&ctx->diag, fmt, ap);
    buf_puts(&ctx->diag, "\n");
    va_end(ap);
    return;
  }
  buf_printf(&ctx->diag, "%s:%d:%d: error: ", loc.src->path, loc.line, loc.col);
  va_list ap;
  va_start(ap, fmt);
  buf_vprintf(&ctx->diag, fmt, ap);
  va_end(ap);
  buf_puts(&ctx->diag, "\n");
  show_line(&ctx->diag, loc);
  for (const Loc *f = loc.from; f; f = f->from) {
    buf_printf(&ctx->diag, "%s:%d:%d: note: in block expanded here\n", f->src->path,
               f->line, f->col);
    show_line(&ctx->diag, *f);
  }
  if (loc.src->imported_at) {
    const Loc *at = loc.src->imported_at;
    buf_printf(&ctx->diag, "%s:%d:%d: note: in the graph imported here\n", at->src->path,
               at->line, at->col);
    show_line(&ctx->diag, *at);
  }
}

void error_plain(Ctx *ctx, const char *fmt, ...) {
  if (ctx->nerrors++ > 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  buf_puts(&ctx->diag, "nncc: error: ");
  buf_vprintf(&ctx->diag, fmt, ap);
  buf_puts(&ctx->diag, "\n");
  va_end(ap);
}

Source *source_from_string(Ctx *ctx, const char *path, const char *text) {
  Source *src = arena_alloc(ctx->arena, sizeof *src);
  src->path = arena_strdup(ctx->arena, path);
  src->len = strlen(text);
  src->text = arena_strndup(ctx->arena, text, src->len);
  return src;
}

/* Location of byte offset `at` in src (a one-byte token). */
static Loc loc_of_offset(const Source *src, size_t at) {
  Loc loc = {.src = src, .line = 1, .col = 1, .len = 1};
  for (size_t i = 0; i < at; i++) {
    if (src->text[i] == '\n') {
      loc.line++;
      loc.col = 1;
    } else {
      loc.col = next_col(loc.col, src->text[i]);
    }
  }
  return loc;
}

/* Reads all of f (at most MAX_SOURCE_BYTES + 1 bytes) into a malloc'd buffer. */
static char *slurp(FILE *f, size_t *len, int *err) {
  size_t cap = 1 << 16, n = 0;
  char *data = malloc(cap);
  while (data) {
    if (n == cap) {
      char *p = cap > (size_t)MAX_SOURCE_BYTES ? NULL : realloc(data, cap * 2);
      if (!p)
        break;
      data = p;
      cap *= 2;
    }
    size_t got = fread(data + n, 1, cap - n, f);
    n += got;
    if (got == 0 || n > (size_t)MAX_SOURCE_BYTES) {
      *err = ferror(f) ? errno : 0;
      *len = n;
      return data;
    }
  }
  *err = ENOMEM;
  *len = n;
  return data;
}

Source *read_source(Ctx *ctx, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    error_plain(ctx, "cannot open '%s': %s", path, strerror(errno));
    return NULL;
  }
  size_t len = 0;
  int err = 0;
  char *data = slurp(f, &len, &err);
  fclose(f);
  if (err || !data) {
    free(data);
    error_plain(ctx, "cannot read '%s': %s", path, strerror(err ? err : ENOMEM));
    return NULL;
  }
  if (len > (size_t)MAX_SOURCE_BYTES) {
    free(data);
    error_plain(ctx, "'%s' is too large (the limit is 64 MiB)", path);
    return NULL;
  }
  Source *src = arena_alloc(ctx->arena, sizeof *src);
  src->path = arena_strdup(ctx->arena, path);
  src->text = arena_strndup(ctx->arena, data, len);
  src->len = len;
  free(data);
  const char *nul = memchr(src->text, '\0', len);
  if (nul) {
    error_at(ctx, loc_of_offset(src, (size_t)(nul - src->text)),
             "source file contains a NUL byte (is it a binary file?)");
    return NULL;
  }
  return src;
}
