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

typedef struct TrainKey {
  const char *key;
  size_t field;          /* offsetof(TrainConfig, ...) */
  double def;            /* NAN: required */
} TrainKey;

typedef struct TrainChoice {
  const char *kind, *name;
  TrainKey keys[4];
} TrainChoice;

#define F(x) offsetof(TrainConfig, x)
static const TrainChoice choices[] = {
    {"optimizer", "sgd", {{"lr", F(lr), 0.01}}},
    {"optimizer", "momentum", {{"lr", F(lr), 0.01}, {"momentum", F(momentum), 0.9}}},
    {"optimizer", "nesterov", {{"lr", F(lr), 0.01}, {"momentum", F(momentum), 0.9}}},
    {"optimizer", "adagrad", {{"lr", F(lr), 0.01}, {"eps", F(eps), 1e-10}}},
    {"optimizer", "rmsprop",
     {{"lr", F(lr), 0.01}, {"rho", F(rho), 0.99}, {"eps", F(eps), 1e-8}}},
    {"optimizer", "adam",
     {{"lr", F(lr), 1e-3}, {"beta1", F(beta1), 0.9},
      {"beta2", F(beta2), 0.999}, {"eps", F(eps), 1e-8}}},
    {"schedule", "constant", {{0}}},
    {"schedule", "step",
     {{"every", F(sched_steps), NAN}, {"gamma", F(sched_gamma), 0.1}}},
    {"schedule", "exp", {{"gamma", F(sched_gamma), NAN}}},
    {"schedule", "inv",
     {{"gamma", F(sched_gamma), NAN}, {"power", F(sched_power), 1}}},
    {"schedule", "cosine",
     {{"steps", F(sched_steps), NAN}, {"lr_min", F(lr_min), 0}}},
    {"decay", "l2", {{"lambda", F(l2), NAN}}},
    {"decay", "l1", {{"lambda", F(l1), NAN}}},
    {"decay", "elastic", {{"l1", F(l1), NAN}, {"l2", F(l2), NAN}}},
    {"decay", "maxnorm", {{"c", F(max_norm), NAN}}},
};
#undef F

static int nkeys(const TrainChoice *c) {
  int n = 0;
  while (n < 4 && c->keys[n].key)
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

static bool set_key(Ctx *ctx, TrainConfig *tc, const TrainChoice *c, int k, const Arg *a,
                    bool *seen) {
  const TrainKey *key = &c->keys[k];
  Loc loc = a->key ? a->key_loc : a->val->loc;
  if (seen[k]) {
    error_at(ctx, loc, "'%s' is given twice", key->key);
    return false;
  }
  seen[k] = true;
  double v;
  if (!const_num(ctx, a->val, &v))
    return false;
  const ValueRange *r = train_value_range(key->field);
  if (!r)
    internal_error(__FILE__, __LINE__, "%s has no row in TRAIN_RANGES", key->key);
  if (!in_value_range(r, v)) {
    error_at(ctx, a->val->loc, "%s: '%s' must be %s", c->name, key->key, r->text);
    return false;
  }
  *(double *)((char *)tc + key->field) = v;
  return true;
}

/* Applies one `optimizer|schedule|decay NAME(args)` line. */
static bool apply_choice(Ctx *ctx, TrainConfig *tc, const TrainChoice *c,
                         const TrainItem *it) {
  bool seen[4] = {0};
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
    if (seen[k])
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

bool build_train_config(Ctx *ctx, Program *prog) {
  TrainConfig *tc = &prog->train;
  *tc = (TrainConfig){.optimizer = "sgd", .lr = 0.01, .momentum = 0.9, .beta1 = 0.9,
                      .beta2 = 0.999, .eps = 1e-8, .rho = 0.99, .schedule = "constant",
                      .sched_gamma = 0.1, .sched_power = 1};
  bool seen_opt = false, seen_sched = false;
  for (int i = 0; i < prog->train_items.len; i++) {
    const TrainItem *it = &prog->train_items.items[i];
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
  return true;
}
