/*
 * lex.c: splits a .nn source into tokens.
 *
 * Tokens are identifiers, numbers, strings, punctuators ( ) [ ] { } , : ; =
 * + - * / |>, newlines and the end of file.  Newlines end statements, except
 * where a statement obviously goes on: inside ( ) or [ ], after one of
 * `|> , = + - * / ( [ :`, and before a line that starts with `|>`, so chains
 * can span lines.  Comments run from '#' to the end of the line.
 *
 * The lexer is the first guard against hostile input: only printable ASCII
 * is allowed outside comments, identifiers are capped at MAX_NAME characters,
 * integer literals at INT_MAX, and strings may not hold escapes or quotes, so
 * no model text can ever break out of a string or comment in emitted C.
 */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"

#define MAX_STR 256

typedef struct Lexer {
  Ctx *ctx;
  const Source *src;
  const char *p, *end;
  int line, col;
  int depth;            /* open ( and [ */
  TokenVec toks;
} Lexer;

static const char *const reserved[] = {
    "model", "input", "target", "output", "loss", "train",
    "block", "repeat", "return", "true",  "false",
};

bool is_reserved_word(const char *s, int len) {
  for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
    if ((int)strlen(reserved[i]) == len && memcmp(reserved[i], s, (size_t)len) == 0)
      return true;
  return false;
}

static Loc here(Lexer *lx, int len) {
  return (Loc){.src = lx->src, .line = lx->line, .col = lx->col, .len = len};
}

/* Advances over n bytes of the current line (no newlines among them). */
static void advance(Lexer *lx, int n) {
  for (int i = 0; i < n; i++, lx->p++)
    lx->col = *lx->p == '\t' ? (lx->col - 1) / 8 * 8 + 9 : lx->col + 1;
}

static Token *push(Lexer *lx, TokenKind kind, int len) {
  Token t = {.kind = kind, .text = lx->p, .len = len, .loc = here(lx, len)};
  vec_push(lx->ctx->arena, lx->toks, t);
  return &lx->toks.items[lx->toks.len - 1];
}

static bool is_punct(const Token *t, const char *s) {
  return t->kind == TK_PUNCT && t->len == (int)strlen(s) && memcmp(t->text, s, strlen(s)) == 0;
}

/* Whether a newline after token t continues the statement. */
static bool continues(const Token *t) {
  static const char *const after[] = {"|>", ",", "=", "+", "-", "*", "/", "(", "[", ":"};
  for (size_t i = 0; i < sizeof after / sizeof *after; i++)
    if (is_punct(t, after[i]))
      return true;
  return false;
}

static void newline(Lexer *lx) {
  TokenVec *v = &lx->toks;
  bool skip = lx->depth > 0 || (v->len && (v->items[v->len - 1].kind == TK_NEWLINE ||
                                          continues(&v->items[v->len - 1])));
  if (!skip)
    push(lx, TK_NEWLINE, 1);
  lx->p++;
  lx->line++;
  lx->col = 1;
}

static bool number(Lexer *lx) {
  const char *q = lx->p;
  while (q < lx->end && isdigit((unsigned char)*q))
    q++;
  bool is_int = true;
  if (q + 1 < lx->end && *q == '.' && isdigit((unsigned char)q[1])) {
    is_int = false;
    for (q++; q < lx->end && isdigit((unsigned char)*q); q++) {}
  }
  if (q < lx->end && (*q == 'e' || *q == 'E')) {
    const char *e = q + 1;
    if (e < lx->end && (*e == '+' || *e == '-'))
      e++;
    if (e < lx->end && isdigit((unsigned char)*e)) {
      is_int = false;
      for (q = e; q < lx->end && isdigit((unsigned char)*q); q++) {}
    }
  }
  while (q < lx->end && (isalnum((unsigned char)*q) || *q == '_' || *q == '.'))
    q++;
  int len = (int)(q - lx->p);
  Token *t = push(lx, TK_NUM, len);
  t->is_int = is_int;
  if (len > 64) {
    error_at(lx->ctx, t->loc, "number literal is too long");
    return false;
  }
  char tmp[72];
  memcpy(tmp, lx->p, (size_t)len);
  tmp[len] = '\0';
  char *stop;
  t->num = strtod(tmp, &stop);
  if (*stop) {
    error_at(lx->ctx, t->loc, "invalid number '%s'", tmp);
    return false;
  }
  if (is_int && t->num > INT_MAX) {
    error_at(lx->ctx, t->loc, "integer literal is too large (the limit is %d)", INT_MAX);
    return false;
  }
  if (!isfinite(t->num)) {
    error_at(lx->ctx, t->loc, "number '%s' is out of range", tmp);
    return false;
  }
  advance(lx, len);
  return true;
}

static bool string(Lexer *lx) {
  const char *q = lx->p + 1;
  while (q < lx->end && *q != '"' && *q != '\n' && *q != '\\' && q - lx->p <= MAX_STR &&
         *q >= 0x20 && *q < 0x7f)
    q++;
  Loc loc = here(lx, 1);
  if (q < lx->end && *q == '\\') {
    error_at(lx->ctx, loc, "escape sequences are not allowed in strings");
    return false;
  }
  if (q - lx->p > MAX_STR) {
    error_at(lx->ctx, loc, "string is too long (the limit is %d characters)", MAX_STR);
    return false;
  }
  if (q == lx->end || *q != '"') {
    bool bad = q < lx->end && *q != '\n';
    error_at(lx->ctx, loc, bad ? "strings may only contain printable ASCII characters"
                               : "unterminated string");
    return false;
  }
  int len = (int)(q + 1 - lx->p);
  Token *t = push(lx, TK_STR, len);
  t->str = arena_strndup(lx->ctx->arena, lx->p + 1, (size_t)len - 2);
  advance(lx, len);
  return true;
}

static bool ident(Lexer *lx) {
  const char *q = lx->p;
  while (q < lx->end && (isalnum((unsigned char)*q) || *q == '_'))
    q++;
  int len = (int)(q - lx->p);
  Token *t = push(lx, TK_IDENT, len);
  if (len > MAX_NAME) {
    t->loc.len = MAX_NAME;
    error_at(lx->ctx, t->loc, "identifier is too long (the limit is %d characters)",
             MAX_NAME);
    return false;
  }
  advance(lx, len);
  return true;
}

static bool punct(Lexer *lx) {
  if (lx->end - lx->p >= 2 && lx->p[0] == '|' && lx->p[1] == '>') {
    /* a line starting with |> continues the previous one */
    while (lx->toks.len && lx->toks.items[lx->toks.len - 1].kind == TK_NEWLINE)
      lx->toks.len--;
    push(lx, TK_PUNCT, 2);
    advance(lx, 2);
    return true;
  }
  char c = *lx->p;
  if (!strchr("()[]{},:;=+-*/", c)) {
    unsigned char u = (unsigned char)c;
    if (u >= 0x21 && u < 0x7f)
      error_at(lx->ctx, here(lx, 1), "unexpected character '%c'", c);
    else
      error_at(lx->ctx, here(lx, 1), "stray byte 0x%02x in program (only ASCII is allowed "
               "outside comments)", u);
    return false;
  }
  if (c == '(' || c == '[')
    lx->depth++;
  if ((c == ')' || c == ']') && lx->depth > 0)
    lx->depth--;
  push(lx, TK_PUNCT, 1);
  advance(lx, 1);
  return true;
}

static bool next_token(Lexer *lx) {
  char c = *lx->p;
  if (c == '\n') {
    newline(lx);
    return true;
  }
  if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
    advance(lx, 1);
    return true;
  }
  if (c == '#') {
    const char *nl = memchr(lx->p, '\n', (size_t)(lx->end - lx->p));
    lx->p = nl ? nl : lx->end;  /* comments hold no tokens; col is irrelevant */
    return true;
  }
  if (isdigit((unsigned char)c))
    return number(lx);
  if (c == '"')
    return string(lx);
  if (isalpha((unsigned char)c) || c == '_')
    return ident(lx);
  return punct(lx);
}

Token *tokenize(Ctx *ctx, const Source *src, int *ntok) {
  Lexer lx = {.ctx = ctx, .src = src, .p = src->text, .end = src->text + src->len,
              .line = 1, .col = 1};
  while (lx.p < lx.end)
    if (!next_token(&lx))
      return NULL;
  push(&lx, TK_EOF, 1);
  *ntok = lx.toks.len;
  return lx.toks.items;
}
