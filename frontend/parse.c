/*
 * parse.c: recursive-descent parser from tokens to the AST of ast.h.
 *
 * Each parse function carries its grammar rule as a comment; docs/language.md
 * has the whole grammar in EBNF.  The parser stops at the first error: it
 * reports it with error_at() and unwinds with longjmp to parse_program(),
 * which returns NULL (everything is in the arena, so nothing leaks).
 * Nesting of expressions and statement blocks is capped at MAX_DEPTH so no
 * input can exhaust the C stack.
 *
 * Names that reach the generated C API are checked here: the model name
 * (a prefix of every API symbol) and the input, target and output names
 * (parameters and macros of the API).
 */
#include <setjmp.h>
#include <string.h>

#include "ast.h"
#include "emit.h"   /* PRELUDE_MATH */

typedef struct Parser {
  Ctx *ctx;
  Program *prog;
  Token *tok;           /* current token; the array ends with TK_EOF */
  int depth;
  bool in_block;
  jmp_buf fail;
} Parser;

/* C and C++ keywords and names the generated file relies on: none of them
 * may name the model, an input, a target or an output.  Inputs, targets and
 * outputs also must not be `m` or `n`, the model and batch-size parameters of
 * the generated functions. */
static const char *const c_reserved[] = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double",
    "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long",
    "register", "restrict", "return", "short", "signed", "sizeof", "static", "struct",
    "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "bool",
    "alignas", "alignof", "asm", "catch", "char16_t", "char32_t", "char8_t", "class",
    "concept", "consteval", "constexpr", "constinit", "const_cast", "co_await",
    "co_return", "co_yield", "decltype", "delete", "dynamic_cast", "explicit", "export",
    "friend", "mutable", "namespace", "new", "noexcept", "nullptr", "operator",
    "private", "protected", "public", "reinterpret_cast", "requires", "static_assert",
    "static_cast", "template", "this", "thread_local", "throw", "try", "typeid",
    "typename", "using", "virtual", "wchar_t", "and", "or", "not", "xor", "compl",
    "bitand", "bitor", "and_eq", "or_eq", "xor_eq", "not_eq", "main", "errno", "assert",
    "real", "size_t", "int32_t", "uint64_t", "NULL", "stdin", "stdout",
    "stderr", "malloc", "calloc", "realloc", "free", "memcpy", "memset", "exp", "log",
    "sqrt", "tanh", "fabs", "fmax", "fmin", "fma", "rmax", "rmin", "rfma",
#define MATH(name, libm) #name,
    PRELUDE_MATH(MATH)
#undef MATH
};

static const char *tok_str(Parser *P, const Token *t) {
  switch (t->kind) {
  case TK_EOF: return "end of file";
  case TK_NEWLINE: return "newline";
  case TK_STR: return "string";
  default:
    return arena_printf(P->ctx->arena, "'%.*s'", t->len > 24 ? 24 : t->len, t->text);
  }
}

static _Noreturn void fail_at(Parser *P, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static _Noreturn void fail_at(Parser *P, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  Buf b = {0};
  buf_vprintf(&b, fmt, ap);
  va_end(ap);
  error_at(P->ctx, loc, "%s", b.data);
  buf_free(&b);
  longjmp(P->fail, 1);
}

static bool is(const Token *t, const char *s) {
  return (t->kind == TK_PUNCT || t->kind == TK_IDENT) && t->len == (int)strlen(s) &&
         memcmp(t->text, s, (size_t)t->len) == 0;
}

static bool consume(Parser *P, const char *s) {
  if (!is(P->tok, s))
    return false;
  P->tok++;
  return true;
}

static void expect(Parser *P, const char *s) {
  if (!consume(P, s))
    fail_at(P, P->tok->loc, "expected '%s' before %s", s, tok_str(P, P->tok));
}

static const char *tok_text(Parser *P, const Token *t) {
  return arena_strndup(P->ctx->arena, t->text, (size_t)t->len);
}

/* A name: an identifier that is not a reserved word. */
static const char *expect_name(Parser *P, const char *what) {
  Token *t = P->tok;
  if (t->kind != TK_IDENT)
    fail_at(P, t->loc, "expected %s before %s", what, tok_str(P, t));
  if (is_reserved_word(t->text, t->len))
    fail_at(P, t->loc, "'%.*s' is a reserved word and cannot be used as %s", t->len,
            t->text, what);
  P->tok++;
  return tok_text(P, t);
}

/* Names of the generated API (model, inputs, targets, outputs). */
static void check_api_name(Parser *P, const char *name, Loc loc, const char *what) {
  for (size_t i = 0; i < sizeof c_reserved / sizeof *c_reserved; i++)
    if (strcmp(name, c_reserved[i]) == 0)
      fail_at(P, loc, "%s name '%s' is reserved in the generated C code", what, name);
  bool tensor = strcmp(what, "model") != 0;
  if (tensor && (strcmp(name, "m") == 0 || strcmp(name, "n") == 0))
    fail_at(P, loc, "%s name '%s' is reserved in the generated C code", what, name);
  if (name[0] == '_' || strstr(name, "__"))
    fail_at(P, loc, "%s name '%s' must not start with '_' or contain '__' (reserved in C)",
            what, name);
  if (strncmp(name, "nn_", 3) == 0 || strncmp(name, "NN_", 3) == 0)
    fail_at(P, loc, "%s name '%s' must not start with 'nn_' (reserved for the runtime)",
            what, name);
}

/* eos = ";" | newline | (before "}" or end of file) */
static void end_of_statement(Parser *P) {
  if (P->tok->kind == TK_NEWLINE || is(P->tok, ";")) {
    P->tok++;
    return;
  }
  if (P->tok->kind == TK_EOF || is(P->tok, "}"))
    return;
  fail_at(P, P->tok->loc, "expected end of statement before %s", tok_str(P, P->tok));
}

static void skip_separators(Parser *P) {
  while (P->tok->kind == TK_NEWLINE || is(P->tok, ";"))
    P->tok++;
}

static void enter(Parser *P, Loc loc) {
  if (++P->depth > MAX_DEPTH)
    fail_at(P, loc, "nesting is too deep (the limit is %d levels)", MAX_DEPTH);
}

static Expr *new_expr(Parser *P, ExprKind kind, Loc loc) {
  Expr *e = arena_alloc(P->ctx->arena, sizeof *e);
  e->kind = kind;
  e->loc = loc;
  return e;
}

static Expr *expr(Parser *P);

/* args = arg ("," arg)*     arg = [IDENT "="] expr
 * Called after "("; consumes ")".  `first` (the left side of |>) becomes the
 * first positional argument. */
static void call_args(Parser *P, Expr *call, Expr *first) {
  VEC(Arg) args = {0};
  if (first)
    vec_push(P->ctx->arena, args, ((Arg){.val = first}));
  bool named = false;
  while (!is(P->tok, ")")) {
    if (args.len > (first != NULL))
      expect(P, ",");
    Arg a = {0};
    if (P->tok->kind == TK_IDENT && is(P->tok + 1, "=")) {
      a.key_loc = P->tok->loc;
      a.key = tok_text(P, P->tok);
      P->tok += 2;
      named = true;
    } else if (named) {
      fail_at(P, P->tok->loc, "positional argument after named arguments");
    }
    a.val = expr(P);
    vec_push(P->ctx->arena, args, a);
  }
  P->tok++;
  call->args = args.items;
  call->nargs = args.len;
}

/* list = "[" [expr ("," expr)*] "]" */
static Expr *list(Parser *P) {
  Expr *e = new_expr(P, EX_LIST, P->tok->loc);
  P->tok++;
  VEC(Arg) items = {0};
  while (!is(P->tok, "]")) {
    if (items.len)
      expect(P, ",");
    vec_push(P->ctx->arena, items, ((Arg){.val = expr(P)}));
  }
  P->tok++;
  e->args = items.items;
  e->nargs = items.len;
  return e;
}

/* The rest of a tuple after "(" first: ("," expr)+ ")". */
static Expr *tuple(Parser *P, Loc loc, Expr *first) {
  Expr *e = new_expr(P, EX_LIST, loc);
  e->tuple = true;
  VEC(Arg) items = {0};
  vec_push(P->ctx->arena, items, ((Arg){.val = first}));
  while (consume(P, ","))
    vec_push(P->ctx->arena, items, ((Arg){.val = expr(P)}));
  expect(P, ")");
  e->args = items.items;
  e->nargs = items.len;
  return e;
}

/* primary = NUM | STR | "true" | "false" | list | "(" expr ")"
 *         | "(" expr "," expr ("," expr)* ")" | IDENT ["(" args ")"]
 * A tuple is a list written in parentheses, kernel=(10, 4); (a) is a. */
static Expr *primary(Parser *P) {
  Token *t = P->tok;
  if (t->kind == TK_NUM || t->kind == TK_STR) {
    Expr *e = new_expr(P, t->kind == TK_NUM ? EX_NUM : EX_STR, t->loc);
    e->num = t->num;
    e->is_int = t->is_int;
    e->name = t->str;
    P->tok++;
    return e;
  }
  if (is(t, "true") || is(t, "false")) {
    Expr *e = new_expr(P, EX_BOOL, t->loc);
    e->num = is(t, "true");
    P->tok++;
    return e;
  }
  if (is(t, "["))
    return list(P);
  if (consume(P, "(")) {
    Expr *e = expr(P);
    if (!is(P->tok, ","))
      expect(P, ")");
    else
      e = tuple(P, t->loc, e);
    return e;
  }
  if (t->kind != TK_IDENT || is_reserved_word(t->text, t->len))
    fail_at(P, t->loc, "expected an expression before %s", tok_str(P, t));
  P->tok++;
  Expr *e = new_expr(P, EX_NAME, t->loc);
  e->name = tok_text(P, t);
  if (consume(P, "(")) {
    e->kind = EX_CALL;
    call_args(P, e, NULL);
  }
  return e;
}

/* unary = "-" unary | primary */
static Expr *unary(Parser *P) {
  if (!is(P->tok, "-"))
    return primary(P);
  enter(P, P->tok->loc);
  Expr *e = new_expr(P, EX_NEG, P->tok->loc);
  P->tok++;
  e->lhs = unary(P);
  P->depth--;
  return e;
}

static Expr *binop(Parser *P, Token *op, Expr *lhs, Expr *rhs) {
  Expr *e = new_expr(P, EX_BINOP, op->loc);
  e->op = op->text[0];
  e->lhs = lhs;
  e->rhs = rhs;
  return e;
}

/* product = unary (("*" | "/") unary)* */
static Expr *product(Parser *P) {
  Expr *e = unary(P);
  while (is(P->tok, "*") || is(P->tok, "/")) {
    Token *op = P->tok++;
    e = binop(P, op, e, unary(P));
  }
  return e;
}

/* sum = product (("+" | "-") product)* */
static Expr *sum(Parser *P) {
  Expr *e = product(P);
  while (is(P->tok, "+") || is(P->tok, "-")) {
    Token *op = P->tok++;
    e = binop(P, op, e, product(P));
  }
  return e;
}

/* expr = sum ("|>" IDENT ["(" args ")"])*      a |> f(b) is f(a, b) */
static Expr *expr(Parser *P) {
  enter(P, P->tok->loc);
  Expr *e = sum(P);
  while (consume(P, "|>")) {
    Token *t = P->tok;
    if (t->kind != TK_IDENT || is_reserved_word(t->text, t->len))
      fail_at(P, t->loc, "expected an op or block name after '|>' before %s",
              tok_str(P, t));
    P->tok++;
    Expr *call = new_expr(P, EX_CALL, t->loc);
    call->name = tok_text(P, t);
    if (consume(P, "(")) {
      call_args(P, call, e);
    } else {
      call->args = arena_alloc(P->ctx->arena, sizeof(Arg));
      call->args[0].val = e;
      call->nargs = 1;
    }
    e = call;
  }
  P->depth--;
  return e;
}

static Stmt *new_stmt(Parser *P, StmtKind kind, Loc loc) {
  Stmt *s = arena_alloc(P->ctx->arena, sizeof *s);
  s->kind = kind;
  s->loc = loc;
  return s;
}

static Stmt *stmt(Parser *P);

/* body = "{" stmt* "}"   (after "{"; consumes "}") */
static void body(Parser *P, Stmt ***out, int *n) {
  VEC(Stmt *) v = {0};
  for (;;) {
    skip_separators(P);
    if (consume(P, "}"))
      break;
    if (P->tok->kind == TK_EOF)
      fail_at(P, P->tok->loc, "expected '}' before end of file");
    vec_push(P->ctx->arena, v, stmt(P));
  }
  *out = v.items;
  *n = v.len;
}

/* repeat = "repeat" expr "{" stmt* "}" */
static Stmt *repeat(Parser *P, Loc loc) {
  Stmt *s = new_stmt(P, ST_REPEAT, loc);
  s->expr = sum(P);
  expect(P, "{");
  enter(P, loc);
  body(P, &s->body, &s->nbody);
  P->depth--;
  for (int i = 0; i < s->nbody; i++)
    if (s->body[i]->kind == ST_RETURN)
      fail_at(P, s->body[i]->loc, "'return' inside 'repeat'");
  return s;
}

/* stmt = "output" NAME ["=" expr] | "loss" expr | repeat | "return" expr
 *      | NAME "=" expr */
static Stmt *stmt(Parser *P) {
  Token *t = P->tok;
  Stmt *s;
  if (consume(P, "output")) {
    if (P->in_block)
      fail_at(P, t->loc, "'output' is not allowed inside a block");
    s = new_stmt(P, ST_OUTPUT, P->tok->loc);
    s->name = expect_name(P, "an output name");
    check_api_name(P, s->name, s->loc, "output");
    if (consume(P, "=")) {
      s->kind = ST_ASSIGN;
      s->output = true;
      s->expr = expr(P);
    }
  } else if (consume(P, "loss")) {
    if (P->in_block)
      fail_at(P, t->loc, "'loss' is not allowed inside a block");
    if (P->prog->has_loss)
      fail_at(P, t->loc, "the model already has a loss");
    P->prog->has_loss = true;
    s = new_stmt(P, ST_LOSS, t->loc);
    s->expr = expr(P);
  } else if (consume(P, "repeat")) {
    return repeat(P, t->loc);
  } else if (consume(P, "return")) {
    if (!P->in_block)
      fail_at(P, t->loc, "'return' outside a block");
    s = new_stmt(P, ST_RETURN, t->loc);
    s->expr = expr(P);
  } else {
    if (is(t, "input") || is(t, "target") || is(t, "block") || is(t, "train") ||
        is(t, "model"))
      fail_at(P, t->loc, "'%.*s' is only allowed at the top level", t->len, t->text);
    if (t->kind == TK_IDENT && !is_reserved_word(t->text, t->len) && !is(t + 1, "="))
      fail_at(P, (t + 1)->loc, "expected '=' after '%.*s' before %s", t->len, t->text,
              tok_str(P, t + 1));
    s = new_stmt(P, ST_ASSIGN, t->loc);
    s->name = expect_name(P, "a statement");
    expect(P, "=");
    s->expr = expr(P);
  }
  end_of_statement(P);
  return s;
}

/* shape = "[" INT ("," INT)* "]" */
static Shape shape(Parser *P, const char *name) {
  Token *open = P->tok;
  expect(P, "[");
  Shape s = {0};
  long numel = 1;
  while (!is(P->tok, "]")) {
    if (s.rank)
      expect(P, ",");
    Token *t = P->tok;
    if (is(t, "-") || (t->kind == TK_NUM && t->is_int && t->num == 0))
      fail_at(P, t->loc, "dimensions must be positive");
    if (t->kind != TK_NUM || !t->is_int)
      fail_at(P, t->loc, "expected a positive integer dimension before %s", tok_str(P, t));
    if (s.rank == MAX_RANK)
      fail_at(P, t->loc, "'%s' has more than %d dimensions", name, MAX_RANK);
    s.dim[s.rank++] = (int)t->num;
    if (__builtin_mul_overflow(numel, (long)t->num, &numel) || numel > MAX_ELEMS)
      fail_at(P, open->loc, "'%s' is too large (over %ld elements per sample)", name,
              (long)MAX_ELEMS);
    P->tok++;
  }
  if (s.rank == 0)
    fail_at(P, P->tok->loc, "'%s' needs at least one dimension", name);
  P->tok++;
  return s;
}

/* input  = "input" NAME ":" "f32" shape
 * target = "target" NAME ":" ("class" "[" INT "]" | "f32" shape) */
static Decl *decl(Parser *P, bool input) {
  Decl *d = arena_alloc(P->ctx->arena, sizeof *d);
  d->loc = P->tok->loc;
  d->name = expect_name(P, input ? "an input name" : "a target name");
  check_api_name(P, d->name, d->loc, input ? "input" : "target");
  expect(P, ":");
  Token *type = P->tok;
  if (!input && consume(P, "class")) {
    d->kind = DECL_TARGET_CLASS;
    expect(P, "[");
    Token *k = P->tok;
    if (k->kind != TK_NUM || !k->is_int || k->num < 2)
      fail_at(P, k->loc, "the number of classes must be an integer of at least 2");
    d->classes = (int)k->num;
    P->tok++;
    expect(P, "]");
  } else if (consume(P, "f32")) {
    d->kind = input ? DECL_INPUT : DECL_TARGET_REAL;
    d->shape = shape(P, d->name);
  } else {
    fail_at(P, type->loc, input ? "expected 'f32' before %s"
                                : "expected 'class' or 'f32' before %s", tok_str(P, type));
  }
  end_of_statement(P);
  return d;
}

/* params = param ("," param)*     param = NAME ["=" expr] */
static void params(Parser *P, Block *b) {
  VEC(Param) v = {0};
  while (!is(P->tok, ")")) {
    if (v.len)
      expect(P, ",");
    Param p = {.loc = P->tok->loc};
    p.name = expect_name(P, "a parameter name");
    for (int i = 0; i < v.len; i++)
      if (strcmp(v.items[i].name, p.name) == 0)
        fail_at(P, p.loc, "duplicate parameter '%s'", p.name);
    if (strcmp(p.name, "name") == 0 || strcmp(p.name, "freeze") == 0)
      fail_at(P, p.loc, "'%s' is a universal argument and cannot be a parameter", p.name);
    if (consume(P, "="))
      p.def = expr(P);
    else if (v.len && v.items[v.len - 1].def)
      fail_at(P, p.loc, "parameter '%s' without a default follows one with a default",
              p.name);
    vec_push(P->ctx->arena, v, p);
  }
  P->tok++;
  b->params = v.items;
  b->nparams = v.len;
}

/* block = "block" NAME "(" [params] ")" "{" stmt* "}"   (ends with return) */
static void block(Parser *P) {
  Block *b = arena_alloc(P->ctx->arena, sizeof *b);
  b->loc = P->tok->loc;
  b->name = expect_name(P, "a block name");
  for (int i = 0; i < P->prog->blocks.len; i++)
    if (strcmp(P->prog->blocks.items[i]->name, b->name) == 0)
      fail_at(P, b->loc, "block '%s' is already defined", b->name);
  if (op_lookup(b->name) >= 0)
    fail_at(P, b->loc, "block '%s' has the name of an op", b->name);
  expect(P, "(");
  params(P, b);
  expect(P, "{");
  P->in_block = true;
  body(P, &b->body, &b->nbody);
  P->in_block = false;
  for (int i = 0; i < b->nbody; i++)
    if (b->body[i]->kind == ST_RETURN && i != b->nbody - 1)
      fail_at(P, b->body[i + 1]->loc, "statement after 'return'");
  if (!b->nbody || b->body[b->nbody - 1]->kind != ST_RETURN)
    fail_at(P, b->loc, "block '%s' has no 'return'", b->name);
  vec_push(P->ctx->arena, P->prog->blocks, b);
  end_of_statement(P);
}

/* train = "train" "{" (train_line eos)* "}"
 * train_line = ("optimizer" | "schedule" | "decay") NAME ["(" args ")"]
 *            | "decay_all" "=" expr */
static void train(Parser *P, Loc loc) {
  if (P->prog->has_train)
    fail_at(P, loc, "the model already has a train section");
  P->prog->has_train = true;
  expect(P, "{");
  for (;;) {
    skip_separators(P);
    if (consume(P, "}"))
      break;
    Token *t = P->tok;
    TrainItem it = {.kind_loc = t->loc};
    if (consume(P, "decay_all")) {
      it.kind = "decay_all";
      expect(P, "=");
      it.args = arena_alloc(P->ctx->arena, sizeof(Arg));
      it.args[0].val = expr(P);
      it.nargs = 1;
    } else if (is(t, "optimizer") || is(t, "schedule") || is(t, "decay")) {
      it.kind = tok_text(P, t);
      P->tok++;
      it.loc = P->tok->loc;
      it.name = expect_name(P, arena_printf(P->ctx->arena, "a %s name", it.kind));
      Expr tmp = {0};
      if (consume(P, "("))
        call_args(P, &tmp, NULL);
      it.args = tmp.args;
      it.nargs = tmp.nargs;
    } else {
      fail_at(P, t->loc, "expected 'optimizer', 'schedule', 'decay' or 'decay_all' "
              "before %s", tok_str(P, t));
    }
    vec_push(P->ctx->arena, P->prog->train_items, it);
    end_of_statement(P);
  }
  end_of_statement(P);
}

/* The import's file name: relative paths count from the .nn file's directory. */
static const char *import_path(Parser *P, const char *name) {
  const char *base = P->prog->src->path, *slash = strrchr(base, '/');
  if (name[0] == '/' || !slash)
    return name;
  return arena_printf(P->ctx->arena, "%.*s%s", (int)(slash - base + 1), base, name);
}

/* The options of an import: freeze=true|false|"layer", and renames
 * old=new of the graph's inputs and outputs. */
static void import_options(Parser *P, const Expr *args, OnnxImport *opt) {
  Arena *a = P->ctx->arena;
  opt->rename_from = arena_alloc(a, sizeof(char *) * (size_t)(args->nargs + 1));
  opt->rename_to = arena_alloc(a, sizeof(char *) * (size_t)(args->nargs + 1));
  for (int i = 0; i < args->nargs; i++) {
    const Arg *g = &args->args[i];
    if (!g->key)
      fail_at(P, g->val->loc, "import takes only named options: freeze= and renames "
              "such as logits=scores");
    for (int j = 0; j < i; j++)
      if (!strcmp(args->args[j].key, g->key))
        fail_at(P, g->key_loc, "option '%s' is given twice", g->key);
    if (!strcmp(g->key, "freeze")) {
      if (g->val->kind == EX_BOOL)
        opt->freeze = g->val->num ? "" : NULL;
      else if (g->val->kind == EX_STR && *g->val->name &&
               strspn(g->val->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789_.") == strlen(g->val->name))
        opt->freeze = g->val->name;
      else
        fail_at(P, g->val->loc, "freeze must be true, false or a layer name such as "
                "\"features\"");
      continue;
    }
    if (g->val->kind != EX_NAME)
      fail_at(P, g->val->loc, "expected the new name for '%s', a bare word", g->key);
    for (int j = 0; j < opt->nrename; j++)
      if (!strcmp(opt->rename_to[j], g->val->name))
        fail_at(P, g->val->loc, "two names are renamed to '%s'", g->val->name);
    opt->rename_from[opt->nrename] = g->key;
    opt->rename_to[opt->nrename++] = g->val->name;
  }
}

/* ", " between the names of a list, for messages. */
static const char *name_list(Parser *P, const char **names, int n) {
  const char *s = n ? names[0] : "none";
  for (int i = 1; i < n; i++)
    s = arena_printf(P->ctx->arena, "%s, %s", s, names[i]);
  return s;
}

/* Every rename names an input or an output of the graph. */
static void check_renames(Parser *P, const Expr *args, const OnnxModel *m, const char *path) {
  for (int i = 0; i < args->nargs; i++) {
    const char *key = args->args[i].key;
    bool found = !strcmp(key, "freeze");
    for (int k = 0; !found && k < m->ninputs; k++)
      found = !strcmp(m->inputs[k], key);
    for (int k = 0; !found && k < m->noutputs; k++)
      found = !strcmp(m->outputs[k], key);
    if (!found)
      fail_at(P, args->args[i].key_loc, "'%s' has no input or output '%s' (inputs: %s; "
              "outputs: %s)", path, key, name_list(P, m->inputs, m->ninputs),
              name_list(P, m->outputs, m->noutputs));
  }
}

/* An import's error ("net.onnx: error: node ..." or "nncc: error: cannot
 * open ...") as the message of an error at the import. */
static const char *import_message(Parser *P, const Buf *diag) {
  const char *s = diag->data ? diag->data : "cannot import the file";
  const char *e = strstr(s, ": error: ");
  const char *nl = strchr(s, '\n');
  size_t n = nl ? (size_t)(nl - s) : strlen(s);
  if (!e || e > s + n)
    return arena_strndup(P->ctx->arena, s, n);
  if (!strncmp(s, "nncc: error: ", 13))
    return arena_strndup(P->ctx->arena, s + 13, n - 13);
  return arena_printf(P->ctx->arena, "%.*s: %.*s", (int)(e - s), s,
                      (int)(n - (size_t)(e + 9 - s)), e + 9);
}

/* import = "import" STRING [ "(" args ")" ] eos
 * The ONNX graph is translated (frontend/onnx.c) and its text parsed here,
 * in place of the statement: its inputs are declared, its layers built, its
 * outputs bound as names. */
static void import(Parser *P) {
  Token *file = P->tok++;
  Expr args = {0};
  if (consume(P, "("))
    call_args(P, &args, NULL);
  int end_line = P->tok[-1].loc.line;
  end_of_statement(P);
  OnnxImport opt = {0};
  import_options(P, &args, &opt);
  const char *path = import_path(P, file->str);
  Ctx sub = {.arena = P->ctx->arena};
  OnnxModel m;
  bool ok = onnx_import(&sub, path, &opt, &m);
  const char *msg = ok ? NULL : import_message(P, &sub.diag);
  buf_free(&sub.diag);
  if (!ok)
    fail_at(P, file->loc, "%s", msg);
  check_renames(P, &args, &m, path);
  Loc *at = arena_alloc(P->ctx->arena, sizeof *at);
  *at = file->loc;
  Source *src = source_from_string(P->ctx, path, m.nn);
  src->imported_at = at;
  int ntok;
  Token *toks = tokenize(P->ctx, src, &ntok);
  if (!toks)
    longjmp(P->fail, 1);
  Import imp = {file->loc, end_line, path, P->prog->items.len, 0};
  Token *resume = P->tok;
  P->tok = toks;
  for (skip_separators(P); P->tok->kind != TK_EOF; skip_separators(P)) {
    Item it = {0};
    if (consume(P, "input"))
      it.decl = decl(P, true);
    else
      it.stmt = stmt(P);
    vec_push(P->ctx->arena, P->prog->items, it);
  }
  P->tok = resume;
  imp.count = P->prog->items.len - imp.first;
  vec_push(P->ctx->arena, P->prog->imports, imp);
  for (int k = 0; k < m.nweights; k++)
    vec_push(P->ctx->arena, P->prog->imported, m.weights[k]);
}

/* model = "model" NAME eos */
static void model(Parser *P) {
  skip_separators(P);
  if (!consume(P, "model"))
    fail_at(P, P->tok->loc, "expected 'model' before %s", tok_str(P, P->tok));
  Token *t = P->tok;
  P->prog->name_loc = t->loc;
  P->prog->name = expect_name(P, "the model name");
  if (!((*t->text >= 'a' && *t->text <= 'z') || (*t->text >= 'A' && *t->text <= 'Z')))
    fail_at(P, t->loc, "model name '%s' must start with a letter", P->prog->name);
  if (t->len > MAX_MODEL_NAME)
    fail_at(P, t->loc, "model name is too long (the limit is %d characters)",
            MAX_MODEL_NAME);
  check_api_name(P, P->prog->name, t->loc, "model");
  end_of_statement(P);
}

/* program = model (input | target | block | train | import | stmt)* EOF */
static void program(Parser *P) {
  model(P);
  for (;;) {
    skip_separators(P);
    Token *t = P->tok;
    if (t->kind == TK_EOF)
      return;
    if (consume(P, "input") || consume(P, "target")) {
      Item it = {.decl = decl(P, is(t, "input"))};
      vec_push(P->ctx->arena, P->prog->items, it);
    } else if (consume(P, "block")) {
      block(P);
    } else if (is(t, "import") && t[1].kind == TK_STR) {
      P->tok++;
      import(P);
    } else if (consume(P, "train")) {
      train(P, t->loc);
    } else if (is(t, "model")) {
      fail_at(P, t->loc, "'model' may appear only once, at the start");
    } else {
      vec_push(P->ctx->arena, P->prog->items, ((Item){.stmt = stmt(P)}));
    }
  }
}

Program *parse_program(Ctx *ctx, const Source *src) {
  int ntok;
  Token *toks = tokenize(ctx, src, &ntok);
  if (!toks)
    return NULL;
  Parser P = {.ctx = ctx, .tok = toks};
  P.prog = arena_alloc(ctx->arena, sizeof *P.prog);
  P.prog->src = src;
  if (setjmp(P.fail))
    return NULL;
  program(&P);
  if (!build_train_config(ctx, P.prog))
    return NULL;
  return P.prog;
}

const char *program_name(const Program *prog) { return prog->name; }

const OnnxWeight *program_imported_weights(const Program *prog, int *n) {
  *n = prog->imported.len;
  return prog->imported.items;
}
bool program_has_loss(const Program *prog) { return prog->has_loss; }
const TrainConfig *program_train_config(const Program *prog) { return &prog->train; }
