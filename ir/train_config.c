/*
 * train_config.c: the tables of the train section as data: the optimizers
 * (OPTIMIZERS in nncc.h: the train section, the generated update and
 * checkpoints, --weights) and the range of every number (TRAIN_RANGES: the
 * train section and the generated set()).
 */
#include <math.h>
#include <string.h>

#include "nncc.h"

const OptimizerDef optimizer_defs[NUM_OPTIMIZERS] = {
#define X(id, name, slots, slot0, slot1, second0, second1) \
  {name, slots, {slot0, slot1}, {second0, second1}},
    OPTIMIZERS(X)
#undef X
};

const OptimizerDef *optimizer_def(const char *name) {
  for (int i = 0; i < NUM_OPTIMIZERS; i++)
    if (strcmp(optimizer_defs[i].name, name) == 0)
      return &optimizer_defs[i];
  return NULL;
}

enum { R_POS, R_NONNEG, R_FRAC, R_UNIT, R_COUNT };
static const ValueRange ranges[] = {
    [R_POS] = {0, INFINITY, false, false, false, "a positive number"},
    [R_NONNEG] = {0, INFINITY, true, false, false, "a non-negative number"},
    [R_FRAC] = {0, 1, true, false, false, "a number in [0, 1)"},
    [R_UNIT] = {0, 1, true, true, false, "a number in [0, 1]"},
    [R_COUNT] = {1, 1e15, true, true, true, "a positive integer"},
};

bool in_value_range(const ValueRange *r, double v) {
  return isfinite(v) && (r->lo_closed ? v >= r->lo : v > r->lo) &&
         (r->hi_closed ? v <= r->hi : v < r->hi) && (!r->whole || v == floor(v));
}

const ValueRange *train_value_range(size_t field) {
  static const struct {
    size_t field;
    int range;
  } rows[] = {
#define X(f, kind) {offsetof(TrainConfig, f), R_##kind},
      TRAIN_RANGES(X)
#undef X
  };
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
    if (rows[i].field == field)
      return &ranges[rows[i].range];
  return NULL;
}
