/*
 * ops.c: the op registry, expanded from ops.def, and attribute access.
 * Each op's definition lives in ir/ops/<file>.c.
 */
#include <string.h>

#include "nncc.h"

#define OP(id, sym, file) extern const OpDef op_##sym;
#include "ops.def"
#undef OP

const OpDef *const op_defs[NUM_OPS] = {
#define OP(id, sym, file) [OP_##id] = &op_##sym,
#include "ops.def"
#undef OP
};

const OpDef *op_def(OpKind op) {
  if ((int)op < 0 || op >= NUM_OPS)
    internal_error(__FILE__, __LINE__, "bad op %d", (int)op);
  return op_defs[op];
}

int op_lookup(const char *name) {
  for (int i = 0; i < NUM_OPS; i++)
    if (!(op_defs[i]->roles & ROLE_INTERNAL) && strcmp(op_defs[i]->name, name) == 0)
      return i;
  return -1;
}

int attr_index(const OpDef *def, const char *name) {
  for (int i = 0; i < def->nattr; i++)
    if (strcmp(def->attrs[i].name, name) == 0)
      return i;
  return -1;
}

int attr_int(const Node *node, int i) { return (int)node->attr[i].num; }
double attr_num(const Node *node, int i) { return node->attr[i].num; }
bool attr_bool(const Node *node, int i) { return node->attr[i].num != 0; }
