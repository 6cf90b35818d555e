/*
 * fuzz_model.c: libFuzzer harness for the compiler core, model text to C.
 *
 * Each input is a model file.  It goes through nncc_compile exactly as the
 * CLI runs it (read, parse, lower, derive_backward, fuse, eliminate_dead,
 * plan_memory, emit_c) with nothing written to disk, and the harness checks
 * what nncc promises for any model, hostile or not:
 *   - no crash, no sanitizer report, no internal error (exit(4) is reported
 *     by libFuzzer as a crash too), no leak;
 *   - a refused model gets one diagnostic: "error:" in its first line and
 *     no control bytes (the source line is echoed with '?' for those);
 *   - emitted model.c and model.h are well-formed C at the lexical level
 *     (check_c below): model text can never leave a string literal or a
 *     comment, since every comment and literal is closed where it should be
 *     (no stray comment end in code), code holds printable ASCII only, no
 *     trigraph appears anywhere nor a line splice outside a #define,
 *     brackets balance, and preprocessor lines are nncc's own.
 *
 * Options: a first line "# fuzz: TOKENS" (a comment to nncc) sets them, so
 * the fuzzer mutates options and model together; the seeds carry a few.
 * Tokens: infer f64 noplan inputgrad report ir ir=PASS dot dot=PASS
 * batch=N fuse=LIST main=KIND verify.  `verify` also parses the emitted C
 * with libclang (nncc --verify) and fails on any warning: slow (~0.1 s),
 * so only inputs that ask for it pay.
 */
#define _GNU_SOURCE
#include "fuzz_file.h"

#include <ctype.h>
#include <string.h>

#include "driver.h"

static void fail(const char *what, const char *detail, size_t len) {
  fprintf(stderr, "fuzz_model: %s\n", what);
  if (detail)
    fprintf(stderr, "%.*s\n", (int)len, detail);
  abort();
}

/* ---- options from the first line ---------------------------------------- */

/* --batch's range, as the CLI checks it; 0 if out of range. */
static int batch_of(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  return *end || v < 1 || v > 1 << 20 ? 0 : (int)v;
}

/* Fills opt from "# fuzz: ..." at the start of data; returns whether to
 * verify with libclang.  Strings point into `store` (static: one at a time). */
static bool fuzz_options(const uint8_t *data, size_t size, Options *opt) {
  static char store[256];
  static const char tag[] = "# fuzz:";
  bool verify = false;
  unsigned mask;
  *opt = OPTIONS_DEFAULT;
  if (size < sizeof tag - 1 || memcmp(data, tag, sizeof tag - 1) != 0)
    return false;
  size_t n = 0;
  for (size_t i = sizeof tag - 1; i < size && data[i] != '\n' && n + 1 < sizeof store; i++)
    store[n++] = (char)data[i];
  store[n] = '\0';
  char *save;
  for (char *tok = strtok_r(store, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
    if (!strcmp(tok, "infer"))
      opt->infer_only = true;
    else if (!strcmp(tok, "f64"))
      opt->dtype = DT_F64;
    else if (!strcmp(tok, "noplan"))
      opt->no_plan = true;
    else if (!strcmp(tok, "inputgrad"))
      opt->input_grad = true;
    else if (!strcmp(tok, "report"))
      opt->report = true;
    else if (!strcmp(tok, "verify"))
      verify = true;
    else if (!strcmp(tok, "ir") || !strcmp(tok, "dot"))
      *(tok[0] == 'i' ? &opt->emit_ir : &opt->emit_dot) = "";
    else if ((!strncmp(tok, "ir=", 3) && is_pass_name(tok + 3)) ||
             (!strncmp(tok, "dot=", 4) && is_pass_name(tok + 4)))
      *(tok[0] == 'i' ? &opt->emit_ir : &opt->emit_dot) = strchr(tok, '=') + 1;
    else if (!strncmp(tok, "batch=", 6) && batch_of(tok + 6))
      opt->max_batch = batch_of(tok + 6);
    else if (!strncmp(tok, "fuse=", 5) && parse_fusions(tok + 5, &mask))
      opt->fuse = mask;
    else if (!strcmp(tok, "main=train") || !strcmp(tok, "main=infer") ||
             !strcmp(tok, "main=bench"))
      opt->main_kind = tok + 5;
  }
  return verify;
}

/* ---- lexical checks of emitted C ----------------------------------------- */

static bool printable(unsigned char c) { return c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f); }

/* A preprocessor line: only the directives nncc writes. */
static bool known_directive(const char *p, const char *end) {
  static const char *const ok[] = {"include", "define", "undef", "if", "ifdef", "ifndef",
                                   "elif", "else", "endif", "pragma", "error", NULL};
  p++;
  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  const char *w = p;
  while (p < end && isalpha((unsigned char)*p))
    p++;
  for (int i = 0; ok[i]; i++)
    if (strlen(ok[i]) == (size_t)(p - w) && !memcmp(ok[i], w, (size_t)(p - w)))
      return true;
  return false;
}

static void check_c(const char *what, const char *text, size_t len) {
  enum { CODE, BLOCK, LINE, STR, CHR } st = CODE;
  const char *p = text, *end = text + len, *why = NULL;
  int depth[3] = {0, 0, 0}; /* () [] {} */
  bool line_start = true, directive = false;
  if (len == 0 || memchr(text, '\0', len))
    fail(what, "empty, or a NUL byte inside", 0);
  for (; p < end; p++) {
    unsigned char c = (unsigned char)*p;
    const char *open = strchr("([{", c), *close = strchr(")]}", c);
    if (!printable(c))
      why = "a byte outside printable ASCII";
    else if (c == '?' && p + 2 < end && p[1] == '?' && strchr("=/'()!<>-", p[2]))
      why = "a trigraph";
    else if (c == '\\' && p + 1 < end && p[1] == '\n' && !(st == CODE && directive))
      why = "a line splice outside a macro definition";
    if (why)
      break;
    if (c == '\\' && p + 1 < end && p[1] == '\n') {
      p++; /* a multi-line #define: the directive goes on */
      continue;
    }
    switch (st) {
    case CODE:
      if (c == '/' && p + 1 < end && (p[1] == '*' || p[1] == '/'))
        st = p[1] == '*' ? BLOCK : LINE, p++;
      else if (c == '*' && p + 2 < end && p[1] == '/' && p[2] != '*')
        why = "a comment end outside a comment"; /* text that closed one early */
      else if (c == '"' || c == '\'')
        st = c == '"' ? STR : CHR;
      else if (c == '#' && line_start && !(directive = known_directive(p, end)))
        why = "an unknown preprocessor directive";
      else if (c && open)
        depth[open - "([{"]++;
      else if (c && close && --depth[close - ")]}"] < 0)
        why = "an unbalanced closing bracket";
      break;
    case BLOCK:
      if (c == '*' && p + 1 < end && p[1] == '/')
        st = CODE, p++;
      break;
    case LINE:
      if (c == '\n')
        st = CODE;
      break;
    case STR:
    case CHR:
      if (c == '\n')
        why = "a newline inside a literal";
      else if (c == '\\')
        p++; /* the escaped byte; a newline there was refused above */
      else if (c == (st == STR ? '"' : '\''))
        st = CODE;
      break;
    }
    if (why)
      break;
    if (c == '\n')
      line_start = true, directive = false;
    else if (c != ' ' && c != '\t')
      line_start = false;
  }
  if (!why && st != CODE)
    why = "an unterminated comment or literal at the end";
  if (!why && (depth[0] || depth[1] || depth[2]))
    why = "unbalanced brackets at the end";
  if (why) {
    const char *bad = p < end ? p : end, *from = bad - text > 300 ? bad - 300 : text;
    fprintf(stderr, "fuzz_model: %s: %s at byte %zu; the text before it:\n", what, why,
            (size_t)(bad - text));
    fail("emitted C is malformed", from, (size_t)(bad - from + (bad < end)));
  }
}

static void check_diag(const Ctx *ctx) {
  const Buf *d = &ctx->diag;
  if (!d->len)
    fail("compilation failed without a diagnostic", NULL, 0);
  const char *nl = memchr(d->data, '\n', d->len);
  size_t first = nl ? (size_t)(nl - d->data) : d->len;
  if (!memmem(d->data, first, "error:", 6))
    fail("first diagnostic line is not an error", d->data, d->len);
  for (size_t i = 0; i < d->len; i++)
    if (!printable((unsigned char)d->data[i]) || d->data[i] == '\t')
      fail("control byte in a diagnostic", d->data, d->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Options opt;
  bool verify = fuzz_options(data, size, &opt);
  opt.input = fuzz_file(data, size);
  Ctx ctx = {.arena = new_arena()};
  Result r = {0};
  if (nncc_compile(&ctx, &opt, &r)) {
    if (ctx.diag.len)
      fail("compilation succeeded with a diagnostic", ctx.diag.data, ctx.diag.len);
    check_c("model.c", r.c.data, r.c.len);
    check_c("model.h", r.h.data, r.h.len);
    if (verify) {
      const char *h = header_name(&ctx, opt.output, r.infer->model);
      const char *c = arena_printf(ctx.arena, "%.*s.c", (int)strlen(h) - 2, h);
      if (!verify_c(&ctx, c, r.c.data, h, r.h.data))
        fail("libclang rejects the emitted C", ctx.diag.data, ctx.diag.len);
    }
  } else {
    check_diag(&ctx);
  }
  buf_free(&ctx.diag);
  free_result(&r);
  free_arena(ctx.arena);
  return 0;
}
