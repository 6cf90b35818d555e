/*
 * print_nn.c: a parsed program back as .nn text (--emit-nn).
 *
 * The text parses to the same program: the same declarations, statements,
 * blocks and train section in the same order, every number with its kind
 * (an integer stays one, a real keeps a '.'), so it compiles to the same C.
 * Comments and spacing are gone.  Each statement and each call is put on
 * the line of the source it came from (blank lines are added before it, or
 * a line break where the grammar allows one: after `= ( , + - * /` and
 * before `|>`), because the emitted kernels cite their model line.  A call
 * whose first argument is a call prints as a chain, `x |> f(a)`, which is
 * how such calls are usually written and keeps the lines in order (so does
 * a call written on a later line than its first argument).
 */
#include <stdlib.h>
#include <string.h>

#include "ast.h"
#include "print_nn.h"

typedef struct Printer {
  Buf *b;
  int line;        /* the output line being written, 1-based */
  bool bol;        /* nothing written on it yet */
  bool cont;       /* the last token lets the statement go on after a newline */
  bool free;       /* an import's text: one statement a line, wherever it falls */
  int shift;       /* source line + shift = output line, past the imports */
} Printer;

static void put(Printer *p, const char *s, bool cont) {
  buf_puts(p->b, s);
  p->bol = false;
  p->cont = cont;
}

static void newline(Printer *p) {
  buf_puts(p->b, "\n");
  p->line++;
  p->bol = true;
}

/* Moves on to source line `line` where a break is allowed (always when
 * `force`). */
static void sync(Printer *p, int line, bool force) {
  while (!p->free && p->line < line + p->shift && (force || p->cont || p->bol))
    newline(p);
}

static void expr(Printer *p, const Expr *e);

/* Whether call e prints as a chain `a |> f(rest)`: when its first argument
 * is a call, or was written on an earlier line. */
static bool is_chain(const Expr *e) {
  if (e->kind != EX_CALL || !e->nargs || e->args[0].key)
    return false;
  const Expr *a = e->args[0].val;
  return a->kind == EX_CALL || a->loc.line < e->loc.line;
}

/* An operand of + - * / or unary -: parenthesized unless a plain primary. */
static void operand(Printer *p, const Expr *e) {
  bool wrap = e->kind == EX_BINOP || e->kind == EX_NEG || is_chain(e);
  if (wrap)
    put(p, "(", true);
  expr(p, e);
  if (wrap)
    put(p, ")", false);
}

/* The shortest decimal that reads back as the same double; an integer
 * stays an integer, a real keeps a '.' or an exponent. */
static void number(Printer *p, const Expr *e) {
  char s[64];
  snprintf(s, sizeof s, "%.0f", e->num);
  for (int prec = 1; !e->is_int && prec <= 17; prec++) {
    snprintf(s, sizeof s, "%.*g", prec, e->num);
    if (strtod(s, NULL) == e->num)
      break;
  }
  if (!e->is_int && !strpbrk(s, ".e"))
    strcat(s, ".0");   /* a real stays a real: 2.0, not the integer 2 */
  put(p, s, false);
}

static void args(Printer *p, const Arg *a, int n) {
  for (int i = 0; i < n; i++) {
    if (i)
      put(p, ", ", true);
    if (a[i].key) {
      put(p, a[i].key, false);
      put(p, "=", true);
    }
    expr(p, a[i].val);
  }
}

static void call(Printer *p, const Expr *e) {
  bool chain = is_chain(e);
  if (chain) {   /* x |> f(rest): the argument first, then the call */
    expr(p, e->args[0].val);
    sync(p, e->loc.line, true);
    put(p, p->bol ? "  |> " : " |> ", true);
  } else {
    sync(p, e->loc.line, false);
  }
  put(p, e->name, false);
  if (chain && e->nargs == 1)
    return;
  put(p, "(", true);
  args(p, e->args + chain, e->nargs - chain);
  put(p, ")", false);
}

static void expr(Printer *p, const Expr *e) {
  char op[4] = {' ', 0, ' ', 0};
  switch (e->kind) {
  case EX_NAME:
    put(p, e->name, false);
    break;
  case EX_NUM:
    number(p, e);
    break;
  case EX_BOOL:
    put(p, e->num ? "true" : "false", false);
    break;
  case EX_STR:
    put(p, "\"", false);
    put(p, e->name, false);
    put(p, "\"", false);
    break;
  case EX_LIST:
    put(p, e->tuple ? "(" : "[", true);
    for (int i = 0; i < e->nargs; i++) {
      if (i)
        put(p, ", ", true);
      expr(p, e->args[i].val);
    }
    put(p, e->tuple ? ")" : "]", false);
    break;
  case EX_CALL:
    call(p, e);
    break;
  case EX_BINOP:
    operand(p, e->lhs);
    op[1] = (char)e->op;
    put(p, op, true);
    sync(p, e->loc.line, false);
    operand(p, e->rhs);
    break;
  case EX_NEG:
    put(p, "-", false);
    operand(p, e->lhs);
    break;
  }
}

static void stmts(Printer *p, Stmt *const *s, int n);

/* Starts a statement or declaration on `line`: on a new line if it is
 * further down, after "; " if the source had two on one line. */
static void begin(Printer *p, int line) {
  if (p->free && !p->bol)
    newline(p);
  if (p->free)
    return;
  if (!p->bol && p->line >= line + p->shift)
    put(p, "; ", false);
  sync(p, line, true);
  if (!p->bol && p->line < line + p->shift)
    newline(p);
}

static void stmt(Printer *p, const Stmt *s) {
  begin(p, s->loc.line);
  switch (s->kind) {
  case ST_ASSIGN:
    if (s->output)
      put(p, "output ", false);
    put(p, s->name, false);
    put(p, " = ", true);
    expr(p, s->expr);
    break;
  case ST_OUTPUT:
    put(p, "output ", false);
    put(p, s->name, false);
    break;
  case ST_LOSS:
    put(p, "loss ", false);
    expr(p, s->expr);
    break;
  case ST_RETURN:
    put(p, "return ", false);
    expr(p, s->expr);
    break;
  case ST_REPEAT:
    put(p, "repeat ", false);
    expr(p, s->expr);
    put(p, " {", false);
    stmts(p, s->body, s->nbody);
    put(p, p->bol ? "}" : " }", false);
    break;
  }
}

static void stmts(Printer *p, Stmt *const *s, int n) {
  for (int i = 0; i < n; i++) {
    if (i == 0 && !p->bol && p->line >= s[i]->loc.line)
      put(p, " ", false);   /* `{ h = f(h) }` on one line: no ';' after '{' */
    else
      begin(p, s[i]->loc.line);
    p->bol = true;          /* begin() must not add "; " after '{' */
    stmt(p, s[i]);
  }
}

static void shape(Printer *p, const Shape *s) {
  for (int d = 0; d < s->rank; d++)
    buf_printf(p->b, "%s%d", d ? ", " : "[", s->dim[d]);
  put(p, "]", false);
}

static void decl(Printer *p, const Decl *d) {
  begin(p, d->loc.line);
  put(p, d->kind == DECL_INPUT ? "input " : "target ", false);
  put(p, d->name, false);
  if (d->kind == DECL_TARGET_CLASS) {
    buf_printf(p->b, ": class[%d]", d->classes);
  } else {
    put(p, ": f32", false);
    shape(p, &d->shape);
  }
}

static void block(Printer *p, const Block *bl) {
  begin(p, bl->loc.line);
  buf_printf(p->b, "block %s(", bl->name);
  for (int i = 0; i < bl->nparams; i++) {
    put(p, i ? ", " : "", true);
    put(p, bl->params[i].name, false);
    if (bl->params[i].def) {
      put(p, "=", true);
      expr(p, bl->params[i].def);
    }
  }
  put(p, ") {", false);
  stmts(p, bl->body, bl->nbody);
  put(p, p->bol ? "}" : " }", false);
}

static void train(Printer *p, const Program *prog) {
  begin(p, prog->train_items.len ? prog->train_items.items[0].kind_loc.line - 1 : p->line);
  put(p, "train {", false);
  for (int i = 0; i < prog->train_items.len; i++) {
    const TrainItem *t = &prog->train_items.items[i];
    newline(p);
    put(p, "  ", false);
    put(p, t->kind, false);
    if (!strcmp(t->kind, "decay_all")) {
      put(p, " = ", true);
      expr(p, t->args[0].val);
      continue;
    }
    put(p, " ", false);
    put(p, t->name, false);
    put(p, "(", true);
    args(p, t->args, t->nargs);
    put(p, ")", false);
  }
  newline(p);
  put(p, "}", false);
}

/* The import whose text item i is, or NULL. */
static const Import *import_of(const Program *prog, int i) {
  for (int k = 0; k < prog->imports.len; k++)
    if (i >= prog->imports.items[k].first &&
        i < prog->imports.items[k].first + prog->imports.items[k].count)
      return &prog->imports.items[k];
  return NULL;
}

/* An import, expanded: a comment naming the file, then the statements of
 * its text, one a line; the lines of the source after it move down. */
static void expand_import(Printer *p, const Program *prog, const Import *imp) {
  begin(p, imp->loc.line);
  buf_printf(p->b, "# import %s, expanded (nncc %s --emit-weights FILE writes its weights)",
             imp->path, imp->path);
  p->bol = false;
  p->free = true;
  for (int i = imp->first; i < imp->first + imp->count; i++)
    if (prog->items.items[i].decl)
      decl(p, prog->items.items[i].decl);
    else
      stmt(p, prog->items.items[i].stmt);
  p->free = false;
  p->shift = p->line - imp->end_line;
}

void print_program(Buf *b, const Program *prog) {
  Printer p = {b, 1, true, false, false, 0};
  if (prog->name_loc.line > 1)
    put(&p, "# printed by nncc --emit-nn: comments dropped, every line where it was", false);
  sync(&p, prog->name_loc.line, true);
  buf_printf(b, "model %s", prog->name);
  p.bol = false;
  /* items and blocks in source order; the train section where its lines were */
  int bi = 0;
  bool trained = !prog->has_train;
  for (int i = 0; i <= prog->items.len; i++) {
    const Import *imp = i < prog->items.len ? import_of(prog, i) : NULL;
    int line = i == prog->items.len ? 1 << 30
               : imp ? imp->loc.line
               : prog->items.items[i].decl ? prog->items.items[i].decl->loc.line
                                           : prog->items.items[i].stmt->loc.line;
    for (; bi < prog->blocks.len && prog->blocks.items[bi]->loc.line < line; bi++)
      block(&p, prog->blocks.items[bi]);
    if (!trained && (!prog->train_items.len || prog->train_items.items[0].kind_loc.line < line)) {
      train(&p, prog);
      trained = true;
    }
    if (i == prog->items.len)
      break;
    if (imp) {
      expand_import(&p, prog, imp);
      i = imp->first + imp->count - 1;
    } else if (prog->items.items[i].decl)
      decl(&p, prog->items.items[i].decl);
    else
      stmt(&p, prog->items.items[i].stmt);
  }
  newline(&p);
}
