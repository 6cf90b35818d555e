/*
 * derive_backward.c: reverse-mode automatic differentiation on the IR.
 *
 * Walks the forward nodes backwards from the loss.  Each op's backward rule
 * (its vector-Jacobian product, registered next to its forward rule) adds
 * nodes computing the gradients of the inputs that need one: inputs that
 * depend on a trainable (not frozen) parameter, and the model inputs when
 * --input-grad asks for them.  Where a tensor feeds several consumers its
 * gradient contributions are summed by add nodes.  A parameter's final
 * gradient becomes a V_PGRAD value, which lives in the grads block (with
 * --eager-update in the arena, until passes/schedule_updates.c's update).
 */
#include "nncc.h"

/* requires[v]: v depends on something we differentiate with respect to. */
static bool *requires_grad(Graph *g, bool input_grad) {
  bool *req = arena_alloc(g->ctx->arena, (size_t)g->values.len + 1);
  for (int i = 0; i < g->values.len; i++) {
    const Value *v = &g->values.items[i];
    req[i] = (v->kind == V_PARAM && !v->frozen) ||
             (v->kind == V_INPUT && input_grad);
  }
  for (int i = 0; i < g->nodes.len; i++) {
    const Node *node = &g->nodes.items[i];
    bool any = false;
    for (int j = 0; j < node->nin; j++)
      any |= req[node->in[j]];
    for (int k = 0; k < node->nout; k++)
      req[node->out[k]] = any;
  }
  return req;
}

static void accumulate(Graph *g, int *grad, int v, int d, int like) {
  if (grad[v] < 0) {
    grad[v] = d;
    return;
  }
  int in[2] = {grad[v], d};
  const Value *x = val(g, v);
  grad[v] = derived_node(g, OP_ADD, like, in, 2, x->shape, x->batched);
}

static bool differentiate(Graph *g, int id, const bool *req, int *grad) {
  Node *node = node_at(g, id);
  const OpDef *def = op_def(node->op);
  bool is_loss = node->nout > 0 && node->out[0] == g->loss;
  int dout[MAX_OUT];
  bool any_out = is_loss;
  for (int k = 0; k < node->nout; k++) {
    dout[k] = grad[node->out[k]];
    any_out |= dout[k] >= 0;
  }
  bool need[MAX_IN], any_in = false;
  for (int j = 0; j < node->nin; j++) {
    need[j] = req[node->in[j]] && val(g, node->in[j])->kind != V_TARGET;
    any_in |= need[j];
  }
  if (node->dead || !any_out || !any_in)
    return true;
  if (!def->backward) {
    error_at(g->ctx, node->loc, "%s: this op has no gradient; freeze the layers before it",
             def->name);
    return false;
  }
  int din[MAX_IN];
  for (int j = 0; j < MAX_IN; j++)
    din[j] = -1;
  def->backward(g, node, dout, need, din);
  node = node_at(g, id);
  for (int j = 0; j < node->nin; j++)
    if (need[j] && din[j] >= 0)
      accumulate(g, grad, node->in[j], din[j], id);
  return true;
}

bool derive_backward(Graph *g, bool input_grad) {
  if (g->loss < 0)
    internal_error(__FILE__, __LINE__, "derive_backward without a loss");
  int nforward = g->nodes.len;
  const bool *req = requires_grad(g, input_grad);
  /* Gradient value ids per value; values created below need no entry. */
  int nvalues = g->values.len;
  int *grad = arena_alloc(g->ctx->arena, sizeof(int) * (size_t)nvalues);
  for (int i = 0; i < nvalues; i++)
    grad[i] = -1;
  for (int i = nforward - 1; i >= 0; i--)
    if (!differentiate(g, i, req, grad))
      return false;
  for (int i = nforward; i < g->nodes.len; i++) {
    Node *node = node_at(g, i);
    node->backward = true;
    if (op_def(node->op)->roles & ROLE_SAVED) {   /* into the forward pass */
      node->backward = false;
      move_node(g, i, val(g, node->in[0])->producer + 1);
    }
  }
  for (int i = 0; i < nvalues; i++) {
    Value *v = val(g, i);
    if (grad[i] < 0)
      continue;
    Value *d = val(g, grad[i]);
    if (v->kind == V_PARAM) {
      d->kind = V_PGRAD;
      d->param = i;
      v->grad = grad[i];
    } else if (v->kind == V_INPUT) {
      d->kind = V_INGRAD;
      d->index = v->index;
      d->name = v->name;
    }
  }
  return true;
}
