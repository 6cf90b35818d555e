/*
 * optimizers.c: the optimizer table (OPTIMIZERS in nncc.h) as data, for the
 * train section, the generated update and checkpoints, and --weights.
 */
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
