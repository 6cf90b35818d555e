/*
 * hoist_constants.c: with every weight baked read-only (--infer --weights),
 * a node that reads only parameters, buffers and other constants computes
 * the same values on every call.  nncc computes such a node once, at
 * compile time (its OpDef.eval), and bakes the result into model_weights.c
 * beside the weights: its outputs become V_CONST (the consts block, flash on
 * a microcontroller) and the node is dead, so the forward pass never runs it
 * and the arena never holds its outputs.  Today that is batchnorm_fold (the
 * folded weights and biases of conv and dense layers) and conv2d_wino_u /
 * conv2d_panels (a convolution's Winograd-transformed or packed filters),
 * which a conv2d splits off when its weights are constant
 * (OpDef.split_constant).
 *
 * Only then: a build whose weights can change (load, tensor(), training)
 * folds on every forward call, into the arena.
 */
#include "nncc.h"

bool is_constant(const Value *v) {
  return v->kind == V_PARAM || v->kind == V_BUFFER || v->kind == V_CONST;
}

void hoist_constants(Graph *g) {
  for (int i = 0; i < g->nodes.len; i++) {
    Node *node = &g->nodes.items[i];
    if (node->dead || node->fused_into >= 0)
      continue;
    const OpDef *def = op_def(node->op);
    if (def->split_constant && def->split_constant(g, i)) {
      i--;   /* the part split off is node i now: hoist it first */
      continue;
    }
    if (!def->eval)
      continue;
    bool all = true;
    for (int j = 0; j < node->nin; j++)
      all &= is_constant(val(g, node->in[j]));
    if (!all)
      continue;
    node->dead = true;
    for (int k = 0; k < node->nout; k++)
      val(g, node->out[k])->kind = V_CONST;
  }
}
