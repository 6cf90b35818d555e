/*
 * train.c: the `train { }` section, checked against a table of optimizers,
 * schedules and decays, into a TrainConfig with defaults filled in.
 *
 * One table row per choice: its keys in positional order, the TrainConfig
 * field each key sets and the default (NAN = required); the range of each
 * field is TRAIN_RANGES (nncc.h), which the generated set() applies too.
 * docs/language.md lists the same table for users.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "ast.h"

typedef enum {
  KEY_NUM,   /* a number into field */
  KEY_BOOL,  /* true or false, as 1 or 0 into field */
  KEY_PAIR,  /* two numbers, (a, b) or [a, b], into field and field2: the same
              * fields as two other keys of the row (adam's betas = beta1, beta2) */
} KeyKind;

typedef struct TrainKey {
  const char *key;
  size_t field;          /* offsetof(TrainConfig, ...) */
  double def;            /* NAN: required (KEY_PAIR: the two keys' defaults apply) */
  KeyKind kind;
  size_t field2;         /* KEY_PAIR */
} TrainKey;

enum { MAX_KEYS = 6 };

typedef struct TrainChoice {
  const char *kind, *name;
  TrainKey keys[MAX_KEYS];
} TrainChoice;

/* torch.optim's spellings: SGD's positional order (lr, momentum, dampening,
 * weight_decay, nesterov); Adam's betas=(b1, b2); weight_decay everywhere. */
#define F(x) offsetof(TrainConfig, x)
#define K(key, field, def) {key, F(field), def, KEY_NUM, 0}
#define WD K("weight_decay", weight_decay, 0)
static const TrainChoice choices[] = {
    {"optimizer", "sgd",
     {K("lr", lr, 0.01), K("momentum", momentum, 0), K("dampening", dampening, 0), WD,
      {"nesterov", F(nesterov), 0, KEY_BOOL, 0}}},
    {"optimizer", "momentum",
     {K("lr", lr, 0.01), K("momentum", momentum, 0.9), K("dampening", dampening, 0), WD}},
    {"optimizer", "nesterov", {K("lr", lr, 0.01), K("momentum", momentum, 0.9), WD}},
    {"optimizer", "adagrad", {K("lr", lr, 0.01), K("eps", eps, 1e-10), WD}},
    {"optimizer", "rmsprop",
     {K("lr", lr, 0.01), K("rho", rho, 0.99), K("eps", eps, 1e-8), WD}},
    {"optimizer", "adam",
     {K("lr", lr, 1e-3), K("beta1", beta1, 0.9), K("beta2", beta2, 0.999),
      K("eps", eps, 1e-8), {"betas", F(beta1), NAN, KEY_PAIR, F(beta2)}, WD}},
    {"schedule", "constant", {{0}}},
    {"schedule", "step",
     {K("every", sched_steps, NAN), K("gamma", sched_gamma, 0.1)}},
    {"schedule", "exp", {K("gamma", sched_gamma, NAN)}},
    {"schedule", "inv",
     {K("gamma", sched_gamma, NAN), K("power", sched_power, 1)}},
    {"schedule", "cosine",
     {K("steps", sched_steps, NAN), K("lr_min", lr_min, 0)}},
    {"decay", "l2", {K("lambda", l2, NAN)}},
    {"decay", "l1", {K("lambda", l1, NAN)}},
    {"decay", "elastic", {K("l1", l1, NAN), K("l2", l2, NAN)}},
    {"decay", "maxnorm", {K("c", max_norm, NAN)}},
};
#undef WD
#undef K
#undef F

static int nkeys(const TrainChoice *c) {
  int n = 0;
  while (n < MAX_KEYS && c->keys[n].key)
    n++;
  return n;
}

/* A constant number: literals, unary minus and + - * / on them. */
static bool const_num(Ctx *ctx, const Expr *e, double *out) {
  double a, b;
  switch (e->kind) {
  case EX_NUM:
    *out = e->num;
    return true;
  case EX_NEG:
    if (!const_num(ctx, e->lhs, &a))
      return false;
    *out = -a;
    return true;
  case EX_BINOP:
    if (!const_num(ctx, e->lhs, &a) || !const_num(ctx, e->rhs, &b))
      return false;
    *out = e->op == '+' ? a + b : e->op == '-' ? a - b : e->op == '*' ? a * b : a / b;
    if (isfinite(*out))
      return true;
    error_at(ctx, e->loc, "arithmetic result is not a finite number");
    return false;
  default:
    error_at(ctx, e->loc, "expected a number");
    return false;
  }
}

/* A number into field `field` of tc, checked against its range. */
static bool set_num(Ctx *ctx, TrainConfig *tc, const TrainChoice *c, const char *key,
                    size_t field, const Expr *e) {
  double v;
  if (!const_num(ctx, e, &v))
    return false;
  const ValueRange *r = train_value_range(field);
  if (!r)
    internal_error(__FILE__, __LINE__, "%s has no row in TRAIN_RANGES", key);
  if (!in_value_range(r, v)) {
    error_at(ctx, e->loc, "%s: '%s' must be %s", c->name, key, r->text);
    return false;
  }
  *(double *)((char *)tc + field) = v;
  return true;
}

/* Key k of choice c from argument a; seen[j] is 1 + the key that set key
 * j's field (a pair sets the fields of two keys), 0 while none has. */
static bool set_key(Ctx *ctx, TrainConfig *tc, const TrainChoice *c, int k, const Arg *a,
                    int *seen) {
  const TrainKey *key = &c->keys[k];
  Loc loc = a->key ? a->key_loc : a->val->loc;
  for (int j = 0; j < nkeys(c); j++) {
    const TrainKey *o = &c->keys[j];
    bool same = j == k || (key->kind == KEY_PAIR && (o->field == key->field || o->field == key->field2)) ||
                (o->kind == KEY_PAIR && (key->field == o->field || key->field == o->field2));
    if (same && seen[j]) {
      if (seen[j] == k + 1)
        error_at(ctx, loc, "'%s' is given twice", key->key);
      else
        error_at(ctx, loc, "'%s' and '%s' set the same option", c->keys[seen[j] - 1].key, key->key);
      return false;
    }
  }
  for (int j = 0; j < nkeys(c); j++) {
    const TrainKey *o = &c->keys[j];
    if (j == k || (key->kind == KEY_PAIR && (o->field == key->field || o->field == key->field2)))
      seen[j] = k + 1;
  }
  const Expr *e = a->val;
  if (key->kind == KEY_BOOL) {
    if (e->kind != EX_BOOL) {
      error_at(ctx, e->loc, "%s: '%s' must be true or false", c->name, key->key);
      return false;
    }
    *(double *)((char *)tc + key->field) = e->num;
    return true;
  }
  if (key->kind == KEY_PAIR) {
    if (e->kind != EX_LIST || e->nargs != 2) {
      error_at(ctx, e->loc, "%s: '%s' must be two numbers, as (0.9, 0.999)", c->name, key->key);
      return false;
    }
    return set_num(ctx, tc, c, key->key, key->field, e->args[0].val) &&
           set_num(ctx, tc, c, key->key, key->field2, e->args[1].val);
  }
  return set_num(ctx, tc, c, key->key, key->field, e);
}

/* Applies one `optimizer|schedule|decay NAME(args)` line. */
static bool apply_choice(Ctx *ctx, TrainConfig *tc, const TrainChoice *c,
                         const TrainItem *it) {
  int seen[MAX_KEYS] = {0};
  int n = nkeys(c);
  for (int i = 0; i < it->nargs; i++) {
    const Arg *a = &it->args[i];
    int k = a->key ? -1 : i;
    for (int j = 0; a->key && j < n; j++)
      if (strcmp(c->keys[j].key, a->key) == 0)
        k = j;
    if (k < 0 || k >= n) {
      if (a->key)
        error_at(ctx, a->key_loc, "%s %s has no option '%s'", c->kind, c->name, a->key);
      else
        error_at(ctx, a->val->loc, "too many arguments to %s %s (it takes %d)", c->kind,
                 c->name, n);
      return false;
    }
    if (!set_key(ctx, tc, c, k, a, seen))
      return false;
  }
  for (int k = 0; k < n; k++) {
    if (seen[k] || c->keys[k].kind == KEY_PAIR)
      continue;
    if (isnan(c->keys[k].def)) {
      error_at(ctx, it->loc, "%s %s needs '%s'", c->kind, c->name, c->keys[k].key);
      return false;
    }
    *(double *)((char *)tc + c->keys[k].field) = c->keys[k].def;
  }
  return true;
}

static bool apply_item(Ctx *ctx, TrainConfig *tc, const TrainItem *it) {
  if (strcmp(it->kind, "decay_all") == 0) {
    if (it->args[0].val->kind != EX_BOOL) {
      error_at(ctx, it->args[0].val->loc, "decay_all must be true or false");
      return false;
    }
    tc->decay_all = it->args[0].val->num != 0;
    return true;
  }
  for (size_t i = 0; i < sizeof choices / sizeof *choices; i++) {
    const TrainChoice *c = &choices[i];
    if (strcmp(c->kind, it->kind) == 0 && strcmp(c->name, it->name) == 0) {
      if (strcmp(c->kind, "optimizer") == 0 && !optimizer_def(c->name))
        internal_error(__FILE__, __LINE__, "optimizer %s has no row in OPTIMIZERS", c->name);
      if (strcmp(c->kind, "optimizer") == 0)
        tc->optimizer = c->name;
      if (strcmp(c->kind, "schedule") == 0)
        tc->schedule = c->name;
      return apply_choice(ctx, tc, c, it);
    }
  }
  error_at(ctx, it->loc, "unknown %s '%s'", it->kind, it->name);
  return false;
}

/* Where option `key` is given by name on line it (else the line's name). */
static Loc key_loc(const TrainItem *it, const char *key) {
  for (int i = 0; i < it->nargs; i++)
    if (it->args[i].key && !strcmp(it->args[i].key, key))
      return it->args[i].key_loc;
  return it->loc;
}

/* torch.optim's SGD spelled out, and weight_decay, into nncc's rules: sgd
 * with momentum > 0 runs the momentum (or nesterov) rule; weight_decay is
 * `decay l2` on every trained tensor (decay_all), so the two cannot be
 * combined.  `opt` is the optimizer line (NULL when there is none). */
static bool finish_optimizer(Ctx *ctx, TrainConfig *tc, const TrainItem *opt, bool decayed) {
  if (!opt)
    return true;
  if (tc->nesterov && !(tc->momentum > 0 && tc->dampening == 0)) {
    error_at(ctx, key_loc(opt, "nesterov"), "sgd: nesterov=true needs momentum > 0 and dampening=0 "
                            "(as torch.optim.SGD)");
    return false;
  }
  if (!strcmp(tc->optimizer, "sgd") && tc->momentum > 0)
    tc->optimizer = tc->nesterov ? "nesterov" : "momentum";
  if (tc->weight_decay > 0 && decayed) {
    error_at(ctx, key_loc(opt, "weight_decay"), "weight_decay is torch.optim's L2 on every tensor: use it or "
                            "'decay' lines with decay_all, not both");
    return false;
  }
  if (tc->weight_decay > 0) {
    tc->l2 = tc->weight_decay;
    tc->decay_all = true;
  }
  return true;
}

bool build_train_config(Ctx *ctx, Program *prog) {
  TrainConfig *tc = &prog->train;
  *tc = (TrainConfig){.optimizer = "sgd", .lr = 0.01, .momentum = 0.9, .beta1 = 0.9,
                      .beta2 = 0.999, .eps = 1e-8, .rho = 0.99, .schedule = "constant",
                      .sched_gamma = 0.1, .sched_power = 1};
  bool seen_opt = false, seen_sched = false, decayed = false;
  const TrainItem *opt = NULL;
  for (int i = 0; i < prog->train_items.len; i++) {
    const TrainItem *it = &prog->train_items.items[i];
    if (!strcmp(it->kind, "optimizer"))
      opt = it;
    decayed |= !strcmp(it->kind, "decay_all") ||
               (!strcmp(it->kind, "decay") && strcmp(it->name, "maxnorm") != 0);
    bool *seen = strcmp(it->kind, "optimizer") == 0  ? &seen_opt
                 : strcmp(it->kind, "schedule") == 0 ? &seen_sched
                                                     : NULL;
    if (seen && *seen) {
      error_at(ctx, it->kind_loc, "the train section already has a %s", it->kind);
      return false;
    }
    if (seen)
      *seen = true;
    if (!apply_item(ctx, tc, it))
      return false;
  }
  return finish_optimizer(ctx, tc, opt, decayed);
}
