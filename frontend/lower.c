/*
 * lower.c: the AST to an IR graph.
 *
 * Statements run in program order over a scope of names.  A name is bound to
 * an LVal: a tensor (a value of the graph), a number, a bool, a string, a
 * list of numbers, or an identifier (a bare word such as `he_normal` passed
 * on to an identifier argument).  Op calls become nodes through the op
 * registry: arguments are checked against OpDef.attrs, defaults filled in,
 * and OpDef.build adds the params and the output.  Block calls run the
 * block's body in a fresh scope that sees only its parameters; the nodes
 * they create carry Loc.from -> the call site, and their layer names are
 * prefixed with the instance name ("basic1.conv1").
 *
 * Lowering stops at the first error (longjmp to lower_program, which
 * returns NULL).  After the last statement one small pass gives He-normal
 * initialization to weights feeding a relu (directly or through a
 * batchnorm), unless `init=` chose one.
 */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"

#define MAX_NODES 20000         /* layers after expanding blocks and repeats */
#define MAX_STEPS 10000000L     /* statements executed, repeats included */
#define MAX_EXPANSION 32        /* nested block calls */
#define MAX_REPEAT 10000
#define MAX_LIST 64

typedef enum { LV_TENSOR, LV_NUM, LV_BOOL, LV_STR, LV_LIST, LV_IDENT } LKind;

typedef struct LVal {
  LKind kind;
  Loc loc;
  int v;                 /* LV_TENSOR: value id; -1 for a target in MODE_INFER */
  bool target;           /* LV_TENSOR declared by `target` */
  double num;            /* LV_NUM, LV_BOOL */
  bool is_int;           /* LV_NUM; LV_LIST: every item is an integer */
  const char *s;         /* LV_STR, LV_IDENT */
  const double *list;    /* LV_LIST */
  int n;
} LVal;

typedef struct Binding {
  const char *name;
  LVal val;
} Binding;

typedef VEC(Binding) Scope;

/* Open-addressing string -> int map in the arena. */
typedef struct StrMap {
  const char **keys;
  int *vals;
  int cap, len;
} StrMap;

typedef struct ApiName {
  const char *name;
  Loc loc;
} ApiName;

typedef struct Lower {
  Ctx *ctx;
  const Program *prog;
  Graph *g;
  Scope *scope;
  const Loc *from;       /* innermost block call site, NULL at top level */
  const char *prefix;    /* "" or "basic1." inside a block instance */
  const Block *active[MAX_EXPANSION];
  int nactive;
  int depth;
  long steps;
  StrMap counters;       /* "<prefix><op prefix>" -> last number used */
  StrMap used;           /* layer and API names taken */
  VEC(ApiName) api;      /* inputs, targets, outputs */
  VEC(int) explicit_init;
  VEC(int) outputs;
  jmp_buf fail;
} Lower;

static LVal eval(Lower *L, const Expr *e, bool allow_target);
static LVal eval_arg(Lower *L, const Expr *e, bool allow_target);

/* ---- errors and small helpers ---------------------------------------------- */

/* loc inside the current block expansion. */
static Loc at(Lower *L, Loc loc) {
  if (!loc.from)
    loc.from = L->from;
  return loc;
}

static _Noreturn void fail(Lower *L, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static _Noreturn void fail(Lower *L, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  Buf b = {0};
  buf_vprintf(&b, fmt, ap);
  va_end(ap);
  error_at(L->ctx, at(L, loc), "%s", b.data);
  buf_free(&b);
  longjmp(L->fail, 1);
}

static const char *kind_text(const LVal *v) {
  switch (v->kind) {
  case LV_TENSOR: return "a tensor";
  case LV_NUM: return v->is_int ? "an integer" : "a number";
  case LV_BOOL: return v->num ? "'true'" : "'false'";
  case LV_STR: return "a string";
  case LV_LIST: return "a list";
  case LV_IDENT: return "an identifier";
  }
  return "?";
}

static unsigned hash(const char *s) {
  unsigned h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/* The slot of key in m, inserted with value 0 when `insert`; NULL if absent. */
static int *strmap(Lower *L, StrMap *m, const char *key, bool insert) {
  if (insert && 2 * (m->len + 1) > m->cap) {
    StrMap old = *m;
    m->cap = old.cap ? 2 * old.cap : 64;
    m->keys = arena_alloc(L->ctx->arena, (size_t)m->cap * sizeof *m->keys);
    m->vals = arena_alloc(L->ctx->arena, (size_t)m->cap * sizeof *m->vals);
    m->len = 0;
    for (int i = 0; i < old.cap; i++)
      if (old.keys[i])
        *strmap(L, m, old.keys[i], true) = old.vals[i];
  }
  if (!m->cap)
    return NULL;
  for (unsigned i = hash(key) & (unsigned)(m->cap - 1);; i = (i + 1) & (unsigned)(m->cap - 1)) {
    if (!m->keys[i]) {
      if (!insert)
        return NULL;
      m->keys[i] = key;
      m->len++;
      return &m->vals[i];
    }
    if (strcmp(m->keys[i], key) == 0)
      return &m->vals[i];
  }
}

static Binding *lookup(Lower *L, const char *name) {
  for (int i = L->scope->len - 1; i >= 0; i--)
    if (strcmp(L->scope->items[i].name, name) == 0)
      return &L->scope->items[i];
  return NULL;
}

static void bind(Lower *L, const char *name, LVal v) {
  Binding *b = lookup(L, name);
  if (b)
    b->val = v;
  else
    vec_push(L->ctx->arena, *L->scope, ((Binding){name, v}));
}

static int need_tensor(Lower *L, const LVal *v, const char *what) {
  if (v->kind == LV_IDENT)
    fail(L, v->loc, "undefined name '%s'", v->s);
  if (v->kind != LV_TENSOR)
    fail(L, v->loc, "%s must be a tensor, not %s", what, kind_text(v));
  return v->v;
}

/* ---- names ------------------------------------------------------------------ */

static void use_name(Lower *L, const char *name, Loc loc) {
  int *slot = strmap(L, &L->used, name, false);
  if (slot)
    fail(L, loc, "layer name '%s' is already used", name);
  *strmap(L, &L->used, name, true) = 1;
}

static bool is_layer_name(const char *s) {
  if (!*s || strlen(s) > MAX_NAME)
    return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_' || *s == '.'))
      return false;
  return true;
}

/* The layer name of a new node or block instance: "<prefix><name>" for an
 * explicit name=, else "<prefix><base><k>" with k counting per base. */
static const char *layer_name(Lower *L, const char *base, const LVal *explicit_name) {
  Arena *a = L->ctx->arena;
  if (explicit_name) {
    if (!is_layer_name(explicit_name->s))
      fail(L, explicit_name->loc, "layer name \"%s\" must be 1 to %d characters from "
           "[A-Za-z0-9_.]", explicit_name->s, MAX_NAME);
    const char *name = arena_printf(a, "%s%s", L->prefix, explicit_name->s);
    use_name(L, name, explicit_name->loc);
    return name;
  }
  const char *key = arena_printf(a, "%s%s", L->prefix, base);
  int *k = strmap(L, &L->counters, key, true);
  const char *name;
  do
    name = arena_printf(a, "%s%d", key, ++*k);
  while (strmap(L, &L->used, name, false));
  *strmap(L, &L->used, name, true) = 1;
  return name;
}

/* Inputs, targets and outputs name the generated API: unique, also when
 * upper-cased for the size macros. */
static void api_name(Lower *L, const char *name, Loc loc, const char *what) {
  if (strcmp(name, L->prog->name) == 0)
    fail(L, loc, "%s name '%s' is the model name (the type of the generated API)", what,
         name);
  for (int i = 0; i < L->api.len; i++) {
    const ApiName *o = &L->api.items[i];
    if (strcmp(o->name, name) == 0)
      fail(L, loc, "duplicate %s name '%s' (first declared at line %d)", what, name,
           o->loc.line);
    bool same = strlen(o->name) == strlen(name);
    for (size_t j = 0; same && name[j]; j++)
      same = (name[j] | 0x20) == (o->name[j] | 0x20);
    if (same)
      fail(L, loc, "%s name '%s' clashes with '%s' (line %d) in the upper-case size macros",
           what, name, o->name, o->loc.line);
  }
  vec_push(L->ctx->arena, L->api, ((ApiName){name, loc}));
}

/* ---- numbers ---------------------------------------------------------------- */

static LVal num_val(double x, bool is_int, Loc loc) {
  return (LVal){.kind = LV_NUM, .num = x, .is_int = is_int, .loc = loc};
}

static LVal arith(Lower *L, const Expr *e, LVal a, LVal b) {
  if (a.kind == LV_IDENT || b.kind == LV_IDENT)
    need_tensor(L, a.kind == LV_IDENT ? &a : &b, "");
  if (a.kind != LV_NUM || b.kind != LV_NUM)
    fail(L, e->loc, "'%c' needs two numbers or (for '+') two tensors; got %s and %s",
         e->op, kind_text(&a), kind_text(&b));
  if (e->op == '/' && b.num == 0)
    fail(L, e->loc, "division by zero");
  double r = e->op == '+' ? a.num + b.num : e->op == '-' ? a.num - b.num
           : e->op == '*' ? a.num * b.num : a.num / b.num;
  bool is_int = a.is_int && b.is_int && r == floor(r);
  if (!isfinite(r) || (is_int && fabs(r) > INT_MAX))
    fail(L, e->loc, "arithmetic overflow");
  return num_val(r, is_int, e->loc);
}

/* ---- op calls ------------------------------------------------------------------ */

/* Universal arguments of every call. */
typedef struct Extras {
  const LVal *name;      /* name="..." */
  enum { FREEZE_NONE, FREEZE_ALL, FREEZE_WEIGHT } freeze;   /* freeze=false|true|weight */
  const char *init;      /* init=IDENT */
  Loc init_loc;
  const LVal *init_scale;
} Extras;

static Node *new_layer(Lower *L, OpKind op, const char *name, Loc loc) {
  if (L->g->nodes.len >= MAX_NODES)
    fail(L, loc, "the model is too large (over %d layers after expanding blocks and "
         "repeats)", MAX_NODES);
  return new_node(L->g, op, name, at(L, loc));
}

static AttrVal default_attr(Lower *L, const AttrSpec *spec, Loc loc) {
  AttrVal a = {.set = true, .loc = at(L, loc)};
  const char *d = spec->def;
  if (spec->type == ATTR_BOOL) {
    a.num = strcmp(d, "true") == 0;
  } else if (spec->type == ATTR_IDENT) {
    a.ident = d;
  } else if (spec->type == ATTR_LIST) {
    double *list = arena_alloc(L->ctx->arena, MAX_LIST * sizeof *list);
    for (char *p = (char *)d + 1, *q; a.nlist < MAX_LIST; p = q + (*q == ',')) {
      list[a.nlist] = strtod(p, &q);
      if (q == p)
        break;
      a.nlist++;
    }
    a.list = list;
  } else {
    a.num = strtod(d, NULL);
  }
  return a;
}

static const char *attr_type_text[] = {
    [ATTR_INT] = "an integer", [ATTR_FLOAT] = "a number", [ATTR_BOOL] = "true or false",
    [ATTR_IDENT] = "an identifier", [ATTR_LIST] = "a list of numbers",
    [ATTR_INTS] = "an integer or a tuple of integers"};

/* Checks value v (written as expression e) against spec. */
static AttrVal to_attr(Lower *L, const OpDef *def, const AttrSpec *spec, const LVal *v,
                       const Expr *e) {
  AttrVal a = {.set = true, .given = true, .loc = at(L, e->loc)};
  bool ok = false;
  switch (spec->type) {
  case ATTR_INT:
    ok = v->kind == LV_NUM && v->is_int && fabs(v->num) <= INT_MAX;
    break;
  case ATTR_FLOAT:
    ok = v->kind == LV_NUM;
    break;
  case ATTR_BOOL:
    ok = v->kind == LV_BOOL;
    break;
  case ATTR_IDENT:
    ok = e->kind == EX_NAME;
    a.ident = v->kind == LV_IDENT ? v->s : e->name;
    break;
  case ATTR_LIST:
    ok = v->kind == LV_LIST;
    a.list = v->list;
    a.nlist = v->n;
    break;
  case ATTR_INTS:   /* a tuple's integers are in range: the lexer and arith() bound them */
    ok = v->kind == LV_NUM ? v->is_int && fabs(v->num) <= INT_MAX
                           : v->kind == LV_LIST && v->is_int && v->n > 0;
    a.list = v->kind == LV_LIST ? v->list : NULL;
    a.nlist = v->kind == LV_LIST ? v->n : 0;
    break;
  }
  a.num = v->num;
  if (ok)
    return a;
  if (v->kind == LV_IDENT)
    fail(L, e->loc, "%s: argument '%s' must be %s; '%s' is not defined", def->name,
         spec->name, attr_type_text[spec->type], v->s);
  if (v->kind == LV_NUM && (spec->type == ATTR_INT || spec->type == ATTR_INTS) && v->is_int)
    fail(L, e->loc, "%s: argument '%s' is out of range", def->name, spec->name);
  if (v->kind == LV_LIST && spec->type == ATTR_INTS)
    fail(L, e->loc, "%s: argument '%s' must be %s, not a tuple with %s", def->name, spec->name,
         attr_type_text[spec->type], v->n ? "a number that is not an integer" : "no values");
  fail(L, e->loc, "%s: argument '%s' must be %s, not %s", def->name, spec->name,
       attr_type_text[spec->type], kind_text(v));
}

/* Whether freeze= holds parameter v still: all of them, or with
 * freeze=weight those named "<layer>.weight" (TinyEngine's sparse update
 * trains a layer's bias and not its weight). */
static bool freezes(const Extras *x, const Value *v) {
  if (v->kind != V_PARAM || x->freeze == FREEZE_NONE)
    return false;
  size_t len = strlen(v->name);
  return x->freeze == FREEZE_ALL || (len >= 7 && !strcmp(v->name + len - 7, ".weight"));
}

/* Takes name=, freeze=, init=, init_scale= out of a call; true if a is one. */
static bool extra_arg(Lower *L, Extras *x, const Arg *a, const LVal *v) {
  const char *k = a->key;
  if (strcmp(k, "name") == 0) {
    if (v->kind != LV_STR)
      fail(L, a->val->loc, "name must be a string such as name=\"conv_a\"");
    x->name = v;
  } else if (strcmp(k, "freeze") == 0) {
    bool weight = v->kind == LV_IDENT && !strcmp(v->s, "weight");
    if (v->kind != LV_BOOL && !weight)
      fail(L, a->val->loc, "freeze must be true, false or weight (the weights frozen, the "
                           "biases and other parameters trained)");
    x->freeze = weight ? FREEZE_WEIGHT : v->num != 0 ? FREEZE_ALL : FREEZE_NONE;
  } else if (strcmp(k, "init") == 0) {
    if (a->val->kind != EX_NAME)
      fail(L, a->val->loc, "init must be an initializer name such as he_normal");
    x->init = v->kind == LV_IDENT ? v->s : a->val->name;
    x->init_loc = a->val->loc;
  } else if (strcmp(k, "init_scale") == 0) {
    if (v->kind != LV_NUM || !(v->num > 0))
      fail(L, a->val->loc, "init_scale must be a positive number");
    x->init_scale = v;
  } else {
    return false;
  }
  return true;
}

static const struct { const char *name; InitKind kind; } inits[] = {
    {"zeros", INIT_ZEROS}, {"ones", INIT_ONES}, {"normal", INIT_NORMAL},
    {"xavier_normal", INIT_XAVIER_NORMAL}, {"xavier_uniform", INIT_XAVIER_UNIFORM},
    {"he_normal", INIT_HE_NORMAL}, {"he_uniform", INIT_HE_UNIFORM}, {"sparse", INIT_SPARSE},
};

/* Applies init= / init_scale= to the ".weight" param of node nid. */
static void apply_init(Lower *L, int nid, const Extras *x, Loc call) {
  if (!x->init) {
    if (x->init_scale)
      fail(L, x->init_scale->loc, "init_scale needs init=normal or init=sparse");
    return;
  }
  int kind = -1;
  for (size_t i = 0; i < sizeof inits / sizeof *inits; i++)
    if (strcmp(inits[i].name, x->init) == 0)
      kind = (int)inits[i].kind;
  if (kind < 0)
    fail(L, x->init_loc, "unknown initializer '%s' (zeros, ones, normal, xavier_normal, "
         "xavier_uniform, he_normal, he_uniform, sparse)", x->init);
  if (x->init_scale && kind != INIT_NORMAL && kind != INIT_SPARSE)
    fail(L, x->init_scale->loc, "init_scale needs init=normal or init=sparse");
  if (x->init_scale && kind == INIT_SPARSE && !x->init_scale->is_int)
    fail(L, x->init_scale->loc, "init_scale of init=sparse is a whole number of weights");
  Node *n = node_at(L->g, nid);
  for (int i = 0; i < n->nin; i++) {
    Value *w = val(L->g, n->in[i]);
    size_t len = strlen(w->name);
    if (w->kind != V_PARAM || len < 7 || strcmp(w->name + len - 7, ".weight") != 0)
      continue;
    w->init.kind = (InitKind)kind;
    w->init.value = x->init_scale ? x->init_scale->num : kind == INIT_SPARSE ? 15 : 0.01;
    vec_push(L->ctx->arena, L->explicit_init, w->id);
    return;
  }
  fail(L, x->init_loc, "init: '%s' has no weights", op_def(n->op)->name);
}

/* Creates the node of op with tensor inputs ins and attributes attrs (all
 * set), runs its shape rule and the universal arguments; returns out[0]. */
static int build_node(Lower *L, OpKind op, const int *ins, int nin, const AttrVal *attrs,
                      const Extras *x, Loc loc) {
  const OpDef *def = op_def(op);
  const char *name = layer_name(L, def->prefix ? def->prefix : def->name, x->name);
  Node *n = new_layer(L, op, name, loc);
  int nid = n->id;
  for (int i = 0; i < def->nattr; i++)
    n->attr[i] = attrs[i];
  for (int i = 0; i < nin; i++)
    node_input(L->g, n, ins[i]);
  if (!def->build(L->g, n)) {
    if (!L->ctx->nerrors)
      error_at(L->ctx, n->loc, "%s: invalid arguments", def->name);
    longjmp(L->fail, 1);
  }
  n = node_at(L->g, nid);
  if (n->nout < 1)
    internal_error(__FILE__, __LINE__, "op %s made no output", def->name);
  for (int i = 0; i < n->nin; i++)
    if (freezes(x, val(L->g, n->in[i])))
      val(L->g, n->in[i])->frozen = true;
  apply_init(L, nid, x, loc);
  return node_at(L->g, nid)->out[0];
}

/* Binds the non-tensor arguments of a call to op's attributes. */
static void bind_attrs(Lower *L, const OpDef *def, const Expr *call, const LVal *vals,
                       int first, AttrVal *attrs, Extras *x) {
  int npos = 0;
  for (int i = first; i < call->nargs; i++) {
    const Arg *a = &call->args[i];
    int k = a->key ? attr_index(def, a->key) : npos++;
    if (a->key && k < 0) {
      if (extra_arg(L, x, a, &vals[i]))
        continue;
      fail(L, a->key_loc, "%s has no argument '%s'", def->name, a->key);
    }
    if (k >= def->nattr)
      fail(L, a->val->loc, "too many arguments to %s (it takes %d after its tensor "
           "input%s)", def->name, def->nattr, def->max_in == 1 ? "" : "s");
    if (attrs[k].set)
      fail(L, a->key ? a->key_loc : a->val->loc, "%s: argument '%s' is given twice",
           def->name, def->attrs[k].name);
    attrs[k] = to_attr(L, def, &def->attrs[k], &vals[i], a->val);
  }
  for (int k = 0; k < def->nattr; k++) {
    if (attrs[k].set)
      continue;
    if (!def->attrs[k].def)
      fail(L, call->loc, "%s: missing argument '%s'", def->name, def->attrs[k].name);
    attrs[k] = default_attr(L, &def->attrs[k], call->loc);
  }
}

static LVal call_op(Lower *L, int op, const Expr *call, bool in_loss) {
  const OpDef *def = op_def((OpKind)op);
  if ((def->roles & ROLE_LOSS) && !in_loss)
    fail(L, call->loc, "'%s' is a loss function; use it in a 'loss' statement", def->name);
  LVal *vals = arena_alloc(L->ctx->arena, (size_t)(call->nargs + 1) * sizeof *vals);
  int nt = 0;
  for (int i = 0; i < call->nargs; i++) {
    vals[i] = eval_arg(L, call->args[i].val, in_loss);
    if (vals[i].kind == LV_TENSOR && !call->args[i].key && nt == i)
      nt++;
  }
  if (nt < def->min_in && nt < call->nargs && !call->args[nt].key &&
      vals[nt].kind == LV_IDENT)
    need_tensor(L, &vals[nt], "");
  if (nt < def->min_in || nt > def->max_in) {
    int want = nt < def->min_in ? def->min_in : def->max_in;
    fail(L, call->loc, "%s takes %s%d tensor input%s, got %d", def->name,
         def->min_in == def->max_in ? "" : nt < def->min_in ? "at least " : "at most ",
         want, want == 1 ? "" : "s", nt);
  }
  int ins[MAX_IN];
  for (int i = 0; i < nt; i++)
    ins[i] = vals[i].v;
  AttrVal attrs[MAX_ATTR] = {0};
  Extras x = {0};
  bind_attrs(L, def, call, vals, nt, attrs, &x);
  int v = build_node(L, (OpKind)op, ins, nt, attrs, &x, call->loc);
  return (LVal){.kind = LV_TENSOR, .v = v, .loc = call->loc};
}

/* ---- blocks --------------------------------------------------------------------- */

static const Block *find_block(const Program *prog, const char *name) {
  for (int i = 0; i < prog->blocks.len; i++)
    if (strcmp(prog->blocks.items[i]->name, name) == 0)
      return prog->blocks.items[i];
  return NULL;
}

static LVal run_stmts(Lower *L, Stmt **body, int n);

/* Binds the call's arguments to b's parameters in scope, in the caller's
 * context (args were evaluated there). */
static void bind_params(Lower *L, const Block *b, const Expr *call, const LVal *vals,
                        Scope *scope, Extras *x) {
  const LVal **got = arena_alloc(L->ctx->arena, (size_t)(b->nparams + 1) * sizeof *got);
  int npos = 0;
  for (int i = 0; i < call->nargs; i++) {
    const Arg *a = &call->args[i];
    int k = a->key ? -1 : npos++;
    for (int j = 0; a->key && j < b->nparams; j++)
      if (strcmp(b->params[j].name, a->key) == 0)
        k = j;
    if (a->key && k < 0 && extra_arg(L, x, a, &vals[i]))
      continue;
    if (a->key && k < 0)
      fail(L, a->key_loc, "block '%s' has no parameter '%s'", b->name, a->key);
    if (k >= b->nparams)
      fail(L, a->val->loc, "block '%s' takes %d argument%s, got %d", b->name, b->nparams,
           b->nparams == 1 ? "" : "s", call->nargs);
    if (got[k])
      fail(L, a->key ? a->key_loc : a->val->loc, "argument '%s' is given twice",
           b->params[k].name);
    got[k] = &vals[i];
  }
  if (x->init || x->init_scale)
    fail(L, x->init_loc, "init applies to op calls, not to block '%s'", b->name);
  for (int k = 0; k < b->nparams; k++) {
    if (!got[k] && !b->params[k].def)
      fail(L, call->loc, "block '%s': missing argument '%s'", b->name, b->params[k].name);
    LVal v = got[k] ? *got[k] : (LVal){0};
    if (!got[k]) {
      Scope *saved = L->scope, empty = {0};
      L->scope = &empty;
      v = eval_arg(L, b->params[k].def, false);
      L->scope = saved;
    }
    vec_push(L->ctx->arena, *scope, ((Binding){b->params[k].name, v}));
  }
}

static LVal call_block(Lower *L, const Block *b, const Expr *call) {
  for (int i = 0; i < L->nactive; i++)
    if (L->active[i] == b)
      fail(L, call->loc, "block '%s' calls itself (recursion is not allowed)", b->name);
  if (L->nactive == MAX_EXPANSION)
    fail(L, call->loc, "blocks are nested too deeply (the limit is %d)", MAX_EXPANSION);
  LVal *vals = arena_alloc(L->ctx->arena, (size_t)(call->nargs + 1) * sizeof *vals);
  for (int i = 0; i < call->nargs; i++)
    vals[i] = eval_arg(L, call->args[i].val, false);
  Scope *scope = arena_alloc(L->ctx->arena, sizeof *scope);
  Extras x = {0};
  bind_params(L, b, call, vals, scope, &x);
  const char *inst = layer_name(L, b->name, x.name);
  Loc *site = arena_alloc(L->ctx->arena, sizeof *site);
  *site = at(L, call->loc);
  Scope *saved_scope = L->scope;
  const Loc *saved_from = L->from;
  const char *saved_prefix = L->prefix;
  int first_value = L->g->values.len;
  L->scope = scope;
  L->from = site;
  L->prefix = arena_printf(L->ctx->arena, "%s.", inst);
  L->active[L->nactive++] = b;
  LVal ret = run_stmts(L, b->body, b->nbody);
  L->nactive--;
  L->scope = saved_scope;
  L->from = saved_from;
  L->prefix = saved_prefix;
  for (int i = first_value; i < L->g->values.len; i++)
    if (freezes(&x, val(L->g, i)))
      val(L->g, i)->frozen = true;
  return ret;
}

static LVal call(Lower *L, const Expr *e, bool in_loss) {
  const Block *b = find_block(L->prog, e->name);
  if (b)
    return call_block(L, b, e);
  int op = op_lookup(e->name);
  if (op < 0)
    fail(L, e->loc, "unknown op or block '%s'", e->name);
  return call_op(L, op, e, in_loss);
}

/* ---- expressions ---------------------------------------------------------------- */

static LVal add_tensors(Lower *L, const Expr *e, LVal a, LVal b) {
  int op = op_lookup("add");
  if (op < 0)
    fail(L, e->loc, "'+' on tensors needs the add op");
  const OpDef *def = op_def((OpKind)op);
  AttrVal attrs[MAX_ATTR] = {0};
  for (int k = 0; k < def->nattr; k++)
    attrs[k] = default_attr(L, &def->attrs[k], e->loc);
  int ins[2] = {a.v, b.v};
  Extras x = {0};
  int v = build_node(L, (OpKind)op, ins, 2, attrs, &x, e->loc);
  return (LVal){.kind = LV_TENSOR, .v = v, .loc = e->loc};
}

static LVal list_val(Lower *L, const Expr *e) {
  if (e->nargs > MAX_LIST)
    fail(L, e->loc, "list is too long (the limit is %d numbers)", MAX_LIST);
  double *items = arena_alloc(L->ctx->arena, (size_t)(e->nargs + 1) * sizeof *items);
  bool ints = true;
  for (int i = 0; i < e->nargs; i++) {
    LVal v = eval(L, e->args[i].val, false);
    if (v.kind != LV_NUM)
      fail(L, e->args[i].val->loc, "%s items must be numbers, not %s",
           e->tuple ? "tuple" : "list", kind_text(&v));
    items[i] = v.num;
    ints = ints && v.is_int;
  }
  return (LVal){.kind = LV_LIST, .list = items, .n = e->nargs, .is_int = ints, .loc = e->loc};
}

/* An argument: like eval, but an undefined bare name is an identifier. */
static LVal eval_arg(Lower *L, const Expr *e, bool allow_target) {
  if (e->kind == EX_NAME && !lookup(L, e->name))
    return (LVal){.kind = LV_IDENT, .s = e->name, .loc = at(L, e->loc)};
  return eval(L, e, allow_target);
}

static LVal eval_inner(Lower *L, const Expr *e, bool allow_target) {
  switch (e->kind) {
  case EX_NAME: {
    Binding *b = lookup(L, e->name);
    if (!b)
      fail(L, e->loc, "undefined name '%s'", e->name);
    if (b->val.target && !allow_target)
      fail(L, e->loc, "target '%s' can only be used in the 'loss' statement", e->name);
    return b->val;
  }
  case EX_NUM: return num_val(e->num, e->is_int, e->loc);
  case EX_BOOL: return (LVal){.kind = LV_BOOL, .num = e->num, .loc = e->loc};
  case EX_STR: return (LVal){.kind = LV_STR, .s = e->name, .loc = e->loc};
  case EX_LIST: return list_val(L, e);
  case EX_CALL: return call(L, e, allow_target);
  case EX_NEG: {
    LVal a = eval(L, e->lhs, allow_target);
    if (a.kind != LV_NUM)
      fail(L, e->loc, "unary '-' needs a number, not %s", kind_text(&a));
    return num_val(-a.num, a.is_int, e->loc);
  }
  case EX_BINOP: {
    LVal a = eval(L, e->lhs, allow_target), b = eval(L, e->rhs, allow_target);
    if (e->op == '+' && a.kind == LV_TENSOR && b.kind == LV_TENSOR)
      return add_tensors(L, e, a, b);
    return arith(L, e, a, b);
  }
  }
  unreachable();
}

static LVal eval(Lower *L, const Expr *e, bool allow_target) {
  if (++L->depth > MAX_DEPTH * 4)
    fail(L, e->loc, "expression nesting is too deep after expanding blocks");
  LVal v = eval_inner(L, e, allow_target);
  L->depth--;
  return v;
}

/* ---- statements ----------------------------------------------------------------- */

static void mark_output(Lower *L, const char *name, const LVal *v, Loc loc) {
  if (v->kind == LV_IDENT)
    need_tensor(L, v, "");   /* undefined name */
  if (v->kind != LV_TENSOR)
    fail(L, loc, "output '%s' must be a tensor, not %s", name, kind_text(v));
  if (v->target)
    fail(L, loc, "target '%s' cannot be an output", name);
  Value *out = val(L->g, v->v);
  if (out->producer < 0)
    fail(L, loc, "output '%s' is an input; outputs must be computed by a layer", name);
  for (int i = 0; i < L->outputs.len; i++)
    if (L->outputs.items[i] == v->v)
      fail(L, loc, "this tensor is already the output '%s'", out->name);
  api_name(L, name, loc, "output");
  const char *producer = node_at(L->g, out->producer)->name;
  if (strcmp(producer, name) != 0)
    use_name(L, name, loc);
  out = val(L->g, v->v);
  out->name = name;
  out->index = L->outputs.len;
  if (L->g->mode == MODE_INFER)
    out->kind = V_OUTPUT;
  vec_push(L->ctx->arena, L->outputs, v->v);
}

/* In MODE_INFER the loss is only checked: a loss op, and defined names. */
static void check_loss_names(Lower *L, const Expr *e) {
  if (e->kind == EX_NAME && !lookup(L, e->name))
    fail(L, e->loc, "undefined name '%s'", e->name);
  if (e->kind == EX_BINOP || e->kind == EX_NEG) {
    check_loss_names(L, e->lhs);
    if (e->rhs)
      check_loss_names(L, e->rhs);
  }
  for (int i = 0; e->kind == EX_CALL && i < e->nargs; i++)
    if (!e->args[i].key)
      check_loss_names(L, e->args[i].val);
}

static void lower_loss(Lower *L, const Stmt *s) {
  const Expr *e = s->expr;
  int op = e->kind == EX_CALL ? op_lookup(e->name) : -1;
  if (e->kind != EX_CALL)
    fail(L, e->loc, "loss needs a call of a loss function, such as "
         "cross_entropy(logits, y)");
  if (op < 0 || !(op_def((OpKind)op)->roles & ROLE_LOSS))
    fail(L, e->loc, "'%s' is not a loss function", e->name);
  if (L->g->mode == MODE_INFER) {
    check_loss_names(L, e);
    return;
  }
  LVal v = call_op(L, op, e, true);
  val(L->g, v.v)->kind = V_LOSS;
  L->g->loss = v.v;
}

static void repeat(Lower *L, const Stmt *s) {
  LVal n = eval(L, s->expr, false);
  if (n.kind != LV_NUM || !n.is_int || n.num < 1 || n.num > MAX_REPEAT)
    fail(L, s->expr->loc, "repeat count must be an integer from 1 to %d", MAX_REPEAT);
  for (int i = 0; i < (int)n.num; i++)
    run_stmts(L, s->body, s->nbody);
}

static LVal run_stmt(Lower *L, const Stmt *s) {
  if (++L->steps > MAX_STEPS)
    fail(L, s->loc, "too many statements after expanding repeats (the limit is %ld)",
         MAX_STEPS);
  LVal v = {0};
  switch (s->kind) {
  case ST_ASSIGN:   /* `recipe = weight` names an identifier, as an argument may */
    v = eval_arg(L, s->expr, false);
    bind(L, s->name, v);
    if (s->output)
      mark_output(L, s->name, &v, s->loc);
    break;
  case ST_OUTPUT: {
    Binding *b = lookup(L, s->name);
    if (!b)
      fail(L, s->loc, "undefined name '%s'", s->name);
    mark_output(L, s->name, &b->val, s->loc);
    break;
  }
  case ST_LOSS: lower_loss(L, s); break;
  case ST_REPEAT: repeat(L, s); break;
  case ST_RETURN: v = eval(L, s->expr, false); break;
  }
  return v;
}

/* Runs statements; the value of a final `return` (blocks), else nothing. */
static LVal run_stmts(Lower *L, Stmt **body, int n) {
  LVal v = {0};
  for (int i = 0; i < n; i++)
    v = run_stmt(L, body[i]);
  return v;
}

/* ---- declarations and the program --------------------------------------------- */

static void declare(Lower *L, const Decl *d, int *ninputs, int *ntargets) {
  const Binding *b = lookup(L, d->name);
  const Loc *imported = b && b->val.loc.src ? b->val.loc.src->imported_at : NULL;
  if (imported)
    fail(L, d->loc, "'%s' is already defined by the import at line %d (rename it there: "
         "(%s=new_name))", d->name, imported->line, d->name);
  if (b)
    fail(L, d->loc, "'%s' is already defined", d->name);
  api_name(L, d->name, d->loc, d->kind == DECL_INPUT ? "input" : "target");
  use_name(L, d->name, d->loc);
  Graph *g = L->g;
  LVal v = {.kind = LV_TENSOR, .v = -1, .loc = d->loc, .target = d->kind != DECL_INPUT};
  if (d->kind == DECL_INPUT) {
    v.v = new_value(g, V_INPUT, d->name, d->shape, true, g->dtype);
    val(g, v.v)->index = (*ninputs)++;
  } else if (g->mode == MODE_TRAIN) {
    bool cls = d->kind == DECL_TARGET_CLASS;
    v.v = new_value(g, V_TARGET, d->name, cls ? shape_of(1, 1) : d->shape, true,
                    cls ? DT_I32 : g->dtype);
    val(g, v.v)->classes = d->classes;
    val(g, v.v)->index = (*ntargets)++;
  }
  bind(L, d->name, v);
}

/* The initializer defaults the ops declare: He-normal for the weights of a
 * layer that feeds a ROLE_RECTIFIER op (relu and kin), directly or through
 * ROLE_INIT_THROUGH ops (batchnorm, in either graph: both must choose the
 * same inits); explicit init= is kept. */
static void default_inits(Lower *L) {
  Graph *g = L->g;
  bool *relu_fed = arena_alloc(L->ctx->arena, (size_t)g->values.len + 1);
  bool *keep = arena_alloc(L->ctx->arena, (size_t)g->values.len + 1);
  for (int i = 0; i < L->explicit_init.len; i++)
    keep[L->explicit_init.items[i]] = true;
  for (int i = g->nodes.len - 1; i >= 0; i--) {
    Node *n = node_at(g, i);
    unsigned roles = op_def(n->op)->roles;
    if ((roles & ROLE_RECTIFIER) && n->nin)
      relu_fed[n->in[0]] = true;
    bool through = roles & ROLE_INIT_THROUGH;
    if (through && n->nin && relu_fed[n->out[0]])
      relu_fed[n->in[0]] = true;
    if (!relu_fed[n->out[0]] || through)
      continue;
    for (int j = 0; j < n->nin; j++) {
      Value *w = val(g, n->in[j]);
      size_t len = strlen(w->name);
      if (w->kind == V_PARAM && !keep[w->id] && len >= 7 &&
          strcmp(w->name + len - 7, ".weight") == 0)
        w->init.kind = INIT_HE_NORMAL;
    }
  }
}

static void lower_items(Lower *L) {
  int ninputs = 0, ntargets = 0;
  for (int i = 0; i < L->prog->items.len; i++) {
    const Item *it = &L->prog->items.items[i];
    if (it->decl)
      declare(L, it->decl, &ninputs, &ntargets);
    else
      run_stmt(L, it->stmt);
  }
  if (!L->outputs.len)
    fail(L, L->prog->name_loc, "model has no output");
  if (L->g->mode == MODE_TRAIN && !L->prog->has_loss)
    fail(L, L->prog->name_loc,
         "model has no loss; add e.g. 'loss cross_entropy(logits, y)'");
}

Graph *lower_program(Ctx *ctx, const Program *prog, Mode mode, DType dtype, int max_batch,
                     int max_threads, bool no_winograd, bool memory_first) {
  Lower *L = arena_alloc(ctx->arena, sizeof *L);
  L->ctx = ctx;
  L->prog = prog;
  L->g = new_graph(ctx, mode, dtype, max_batch, max_threads, prog->name);
  L->g->no_winograd = no_winograd;   /* before any node is built: they size workspaces */
  L->g->memory_first = memory_first;
  if (mode == MODE_TRAIN)
    L->g->train_config = prog->train;
  L->scope = arena_alloc(ctx->arena, sizeof *L->scope);
  L->prefix = "";
  if (setjmp(L->fail))
    return NULL;
  lower_items(L);
  default_inits(L);
  return L->g;
}
