/*
 * dropout.c: inverted dropout, y = mask * x / (1 - p) with mask[i] = 0 with
 * probability p, any per-sample shape.
 *
 * Training only.  In an inference graph the shape rule turns the node into
 * `identity`, a ROLE_VIEW op: the planner gives its output the input's
 * storage and codegen emits no kernel for it, so the forward function has
 * no trace of dropout (only when the result is itself a model output does
 * the identity's copy kernel run).  This keeps the op's whole story here,
 * with no dropout case in any pass.
 *
 * No mask is stored.  The kernels are ROLE_RNG: they receive the model seed
 * mixed with the training step, XOR it with a hash of the layer name and
 * draw element i's keep decision as nn_hash_uniform(seed, i) (runtime/
 * nn_rng.c), i the flat index in the batch.  So the mask is a pure function
 * of (seed, step, layer, element): the same for any thread count, the same
 * between a forward pass and dropout_dx (which recomputes it), fresh at
 * every step, and different for two dropout layers.
 */
#include "emit.h"

enum { A_P };

static const AttrSpec dropout_attrs[] = {{"p", ATTR_FLOAT, "0.5"}};

static const char *const x_names[] = {"x", NULL};
static const char *const y_names[] = {"y", NULL};
static const char *const dy_names[] = {"dy", NULL};
static const char *const dx_names[] = {"dx", NULL};

static bool dropout_build(Graph *g, Node *node) {
  double p = attr_num(node, A_P);
  if (!(p >= 0 && p < 1)) {
    error_at(g->ctx, node->attr[A_P].set ? node->attr[A_P].loc : node->loc,
             "dropout: p must be in [0, 1), got %g", p);
    return false;
  }
  if (g->mode == MODE_INFER)
    node->op = OP_IDENTITY;
  const Value *x = val(g, node->in[0]);
  node_output(g, node, x->shape, x->batched, x->dtype);
  return true;
}

/* FNV-1a of the layer name: the forward node and its dropout_dx share the
 * name, hence the mask; other layers get other masks. */
static uint64_t layer_hash(const char *name) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (const unsigned char *s = (const unsigned char *)name; *s; s++)
    h = (h ^ *s) * UINT64_C(0x100000001b3);
  return h;
}

/* out[i] = in[i] / (1 - p) where element i is kept, else 0. */
static void emit_masked(Emit *e, const Graph *g, const Node *node, const char *out,
                        const char *in) {
  long numel = shape_numel(&val(g, node->out[0])->shape);
  double p = attr_num(node, A_P);
  emitln(e, "const uint64_t s = seed ^ UINT64_C(0x%016llx);   /* layer */",
         (unsigned long long)layer_hash(node->name));
  emit_omp_for(e, "");
  emitln(e, "for (long i = 0; i < (long)n * %ld; i++)", numel);
  emitln(e, "    %s[i] = nn_hash_uniform(s, (uint64_t)i) < %.17g ? 0 : %s[i] * %s;", out, p, in,
         lit(e, 1 / (1 - p)));
}

static void dropout_emit(Emit *e, const Graph *g, const Node *node) {
  emit_masked(e, g, node, "y", "x");
}

static void dropout_dx_emit(Emit *e, const Graph *g, const Node *node) {
  emit_masked(e, g, node, "dx", "dy");
}

static void dropout_backward(Graph *g, Node *node, const int *dout, const bool *need,
                             int *din) {
  const Value *x = val(g, node->in[0]);
  din[0] = derived_node(g, OP_DROPOUT_DX, node->id, dout, 1, x->shape, x->batched);
}

const OpDef op_dropout = {
    .name = "dropout", .prefix = "dropout", .min_in = 1, .max_in = 1,
    .attrs = dropout_attrs, .nattr = 1, .in_names = x_names, .out_names = y_names,
    .roles = ROLE_INPLACE | ROLE_RNG,
    .build = dropout_build, .emit = dropout_emit, .backward = dropout_backward,
};

const OpDef op_dropout_dx = {
    .name = "dropout_dx", .min_in = 1, .max_in = 1,
    .attrs = dropout_attrs, .nattr = 1, .in_names = dy_names, .out_names = dx_names,
    .roles = ROLE_INPLACE | ROLE_RNG | ROLE_INTERNAL, .emit = dropout_dx_emit,
};

/* ---- identity: dropout in an inference graph.  A view; the copy runs only
 * when the output cannot share the input's storage (a model output). ---- */

static void identity_emit(Emit *e, const Graph *g, const Node *node) {
  long numel = shape_numel(&val(g, node->out[0])->shape);
  emitln(e, "memcpy(y, x, sizeof(real) * (size_t)n * %ld);", numel);
}

static void identity_backward(Graph *g, Node *node, const int *dout, const bool *need,
                              int *din) {
  din[0] = dout[0];
}

const OpDef op_identity = {
    .name = "identity", .min_in = 1, .max_in = 1,
    .attrs = dropout_attrs, .nattr = 1, .in_names = x_names, .out_names = y_names,
    .roles = ROLE_VIEW | ROLE_INTERNAL,
    .emit = identity_emit, .backward = identity_backward,
};
