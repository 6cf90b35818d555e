/*
 * fuse.c: merges nodes so data is written once instead of twice.
 *
 * Fusions, one bit each of the mask FUSE_* (the FUSIONS table of nncc.h;
 * the driver parses --fuse=none|all|LIST into it):
 *   bn_fold    inference: a batchnorm right after a conv/dense layer is
 *              folded into that layer's weights and bias (a small kernel
 *              scales them once per forward call; see ir/ops/batchnorm.c).
 *   epilogue   an elementwise op (relu, ...) whose only input is the sole
 *              use of an anchor's output (conv, dense, training batchnorm,
 *              max/min pool backward: the relu_dx of a relu before the
 *              pool) runs inside that kernel, on the accumulator, before
 *              the single store.  Chains fuse in order;
 *              other operands may be per-channel constants or tensors of
 *              the same shape (a residual add).
 *   elementwise  a chain of elementwise ops (add then relu, ...) runs as
 *              one loop: later links are epilogues of the first.
 *   prologue   (opt-in, not part of "all") an elementwise op whose every
 *              reader can compute it itself (ROLE_PROLOGUE: the batchnorm
 *              backward kernel) is not a kernel of its own: the activation
 *              gradient before a batchnorm is computed in batchnorm's
 *              backward, as the activation is in its forward.  Same bits,
 *              but no gain on a CPU: the fused kernel must store the masked
 *              gradient before summing it (ir/ops/batchnorm.c says why),
 *              which costs what the in-place relu_dx pass it removes costs
 *              (LeNet-5 training step 0.98-1.00x), and the activation's
 *              output stays alive next to its gradient, so it is off by
 *              default (docs/performance.md).
 * A fused node is marked dead with fused_into = the anchor; the anchor takes
 * over its output value, so consumers are unchanged.  Every decision, and
 * every candidate refused with the reason, goes to the --report log.
 */
#include <string.h>

#include "nncc.h"

const char *const fusion_names[NUM_FUSIONS] = {
#define X(id, name, in_all) name,
    FUSIONS(X)
#undef X
};

/* The nodes that read each value (in[] holds it), in graph order, dead ones
 * included: readers of v are node[start[v]] .. node[start[v + 1] - 1], a
 * node once per input slot.  The prologue and epilogue fusions look readers
 * up here instead of scanning the graph for every candidate, which made
 * fusion quadratic (a chain of 20,000 layers took 8 s).  They only mark
 * nodes dead and move outputs, never change which values a node reads, so
 * one index serves both; bn_fold inserts nodes and scans instead. */
typedef struct Readers {
  int *start, *node;
} Readers;

static Readers index_readers(const Graph *g) {
  Arena *a = g->ctx->arena;
  int nv = g->values.len, total = 0;
  Readers r = {arena_alloc(a, sizeof(int) * (size_t)(nv + 2)), NULL};
  for (int i = 0; i < g->nodes.len; i++)
    for (int j = 0; j < g->nodes.items[i].nin; j++, total++)
      r.start[g->nodes.items[i].in[j] + 2]++;
  for (int v = 0; v < nv; v++)
    r.start[v + 2] += r.start[v + 1];
  r.node = arena_alloc(a, sizeof(int) * (size_t)(total + 1));
  for (int i = 0; i < g->nodes.len; i++)   /* start[v + 1] is v's next free slot */
    for (int j = 0; j < g->nodes.items[i].nin; j++)
      r.node[r.start[g->nodes.items[i].in[j] + 1]++] = i;
  return r;
}

/* The single live consumer of value v, or -1.  Without an index (r NULL)
 * it scans the nodes after v's producer. */
static int sole_consumer(const Graph *g, const Readers *r, int v) {
  int found = -1, from = r ? r->start[v] : val(g, v)->producer + 1;
  int to = r ? r->start[v + 1] : g->nodes.len;
  for (int k = from; k < to; k++) {
    int i = r ? r->node[k] : k;
    const Node *node = &g->nodes.items[i];
    if (node->dead)
      continue;
    for (int j = 0; j < node->nin; j++)
      if (node->in[j] == v) {
        if (found >= 0 && found != i)
          return -1;
        found = i;
      }
  }
  return found;
}

/* Anchor a's output goes to consumer e only; a now writes e's output. */
static void absorb(Graph *g, Node *a, Node *e) {
  val(g, a->out[0])->producer = -1;
  a->out[0] = e->out[0];
  val(g, e->out[0])->producer = a->id;
  e->dead = true;
  e->fused_into = a->id;
}

/* Whether two tensors are read at the same flat index: same batching, type
 * and number of elements. */
static bool same_layout(const Value *a, const Value *b) {
  return a->batched == b->batched && a->dtype == b->dtype &&
         shape_numel(&a->shape) == shape_numel(&b->shape);
}

/* Why elementwise node e cannot be an epilogue of node a; NULL if it can.
 * Its other operands must be per-channel constants or tensors of a's output
 * layout computed before a runs (they are read at the same flat index). */
static const char *epilogue_refusal(const Graph *g, const Node *a, const Node *e) {
  const Value *y = val(g, a->out[0]);
  if (y->kind != V_ACT)
    return "the output is a model output";
  if (e->in[0] != a->out[0])
    return "the output is not the first operand";
  for (int j = 1; j < e->nin; j++) {
    const Value *x = val(g, e->in[j]);
    if (e->in[j] == a->out[0])
      return "it reads the output twice";
    if (x->batched && !same_layout(x, y))
      return "another operand has a different shape";
    if (x->producer > a->id)
      return "another operand is computed after the layer";
  }
  if (a->nepilogue == (int)(sizeof a->epilogue / sizeof a->epilogue[0]))
    return "the epilogue is full";
  return NULL;
}

static void fuse_epilogues(Graph *g, const Readers *r, Buf *log, int anchor) {
  for (;;) {
    Node *a = node_at(g, anchor);
    int c = sole_consumer(g, r, a->out[0]);
    if (c < 0)
      return;
    Node *e = node_at(g, c);
    if (!(op_def(e->op)->roles & ROLE_ELEMENTWISE))
      return;
    /* A commutative op takes the anchor's output first (two operands only,
     * so the rounding of the sum is unchanged). */
    if ((op_def(e->op)->roles & ROLE_COMMUTATIVE) && e->nin == 2 && e->in[1] == a->out[0]) {
      e->in[1] = e->in[0];
      e->in[0] = a->out[0];
    }
    const char *why = epilogue_refusal(g, a, e);
    if (why) {
      buf_printf(log, "  not fused: %s (%s) into %s: %s\n", e->name, op_def(e->op)->name,
                 a->name, why);
      return;
    }
    buf_printf(log, "  fused: %s (%s) into %s (%s)\n", e->name, op_def(e->op)->name, a->name,
               op_def(a->op)->name);
    a->epilogue[a->nepilogue++] = e->id;
    absorb(g, a, e);
  }
}

/* A ROLE_FOLDABLE node (batchnorm in inference) that alone reads the
 * output of `anchor` is folded into the anchor's weight and bias by a node
 * of its fold_op, scheduled just before the anchor. */
static void fold_into_anchor(Graph *g, Buf *log, int anchor) {
  Node *a = node_at(g, anchor);
  const OpDef *ad = op_def(a->op);
  int wi = ad->fold_weight_in, bi = ad->fold_bias_in;
  int c = sole_consumer(g, NULL, a->out[0]);
  if (c < 0 || !(op_def(node_at(g, c)->op)->roles & ROLE_FOLDABLE))
    return;
  if (val(g, a->out[0])->kind != V_ACT || a->nepilogue > 0 || node_at(g, c)->in[0] != a->out[0]) {
    buf_printf(log, "  not folded: %s into %s: the layer's output is used otherwise\n",
               node_at(g, c)->name, a->name);
    return;
  }
  Node *f = node_at(g, c);
  const OpDef *fd = op_def(f->op);
  Node *fold = insert_node(g, anchor, fd->fold_op, f->name, f->loc);
  a = node_at(g, anchor + 1);
  f = node_at(g, c + 1);
  memcpy(fold->attr, f->attr, sizeof fold->attr);
  int w = a->in[wi];
  node_input(g, fold, w);
  for (int j = 1; j < f->nin; j++)
    node_input(g, fold, f->in[j]);
  if (a->nin > bi)
    node_input(g, fold, a->in[bi]);
  int o = val(g, w)->shape.dim[0];
  int wf = node_output(g, fold, val(g, w)->shape, false, g->dtype);
  int bf = node_output(g, fold, shape_of(1, o), false, g->dtype);
  a = node_at(g, anchor + 1);
  f = node_at(g, c + 1);
  a->in[wi] = wf;
  if (a->nin > bi)
    a->in[bi] = bf;
  else
    node_input(g, a, bf);
  absorb(g, a, f);
  buf_printf(log, "  folded: %s (%s) into the weights and bias of %s (%s)\n", f->name,
             fd->shown_as ? fd->shown_as : fd->name, a->name, ad->name);
}

/* Why elementwise node p cannot be recomputed by its readers; NULL if it
 * can.  Stores the readers in readers[] (count in *n). */
static const char *prologue_refusal(const Graph *g, const Readers *r, const Node *p,
                                    int *readers, int *n) {
  *n = 0;
  if (val(g, p->out[0])->kind != V_ACT || p->nepilogue > 0)
    return "its output is stored for other reasons";
  for (int k = r->start[p->out[0]]; k < r->start[p->out[0] + 1]; k++) {
    int i = r->node[k];
    const Node *c = &g->nodes.items[i];
    if (c->dead || (k > r->start[p->out[0]] && r->node[k - 1] == i))
      continue; /* a node reading it twice is listed twice: check it once */
    for (int j = 0; j < c->nin; j++) {
      if (c->in[j] != p->out[0])
        continue;
      if (j != 0 || !(op_def(c->op)->roles & ROLE_PROLOGUE) || c->prologue >= 0)
        return "a reader cannot recompute it";
      if (*n == MAX_IN)
        return "too many readers";
      readers[(*n)++] = i;
    }
  }
  return *n ? NULL : "it has no reader";
}

static void fuse_prologue(Graph *g, const Readers *r, Buf *log, int id) {
  Node *p = node_at(g, id);
  int readers[MAX_IN], n;
  if (prologue_refusal(g, r, p, readers, &n))
    return;
  for (int k = 0; k < n; k++) {
    Node *c = node_at(g, readers[k]);
    c->prologue = id;
    buf_printf(log, "  fused: %s (%s) recomputed in %s (%s)\n", p->name, op_def(p->op)->name,
               c->name, op_def(c->op)->name);
  }
  p->dead = true;
  p->fused_into = readers[0];
}

void fuse(Graph *g, unsigned which, Buf *log) {
  buf_printf(log, "fusion (%s graph):\n", g->mode == MODE_TRAIN ? "training" : "inference");
  if ((which & FUSE_BN_FOLD) && g->mode == MODE_INFER)
    for (int i = 0; i < g->nodes.len; i++) {
      const Node *node = &g->nodes.items[i];
      if (!node->dead && (op_def(node->op)->roles & ROLE_ANCHOR) &&
          op_def(node->op)->fold_weight_in)
        fold_into_anchor(g, log, i);
    }
  Readers r = index_readers(g);
  if (which & FUSE_PROLOGUE)
    for (int i = 0; i < g->nodes.len; i++) {
      const Node *node = &g->nodes.items[i];
      if (!node->dead && (op_def(node->op)->roles & ROLE_ELEMENTWISE))
        fuse_prologue(g, &r, log, i);
    }
  unsigned anchors = (which & FUSE_EPILOGUE ? ROLE_ANCHOR : 0) |
                     (which & FUSE_ELEMENTWISE ? ROLE_ELEMENTWISE : 0);
  for (int i = 0; i < g->nodes.len; i++) {
    const Node *node = &g->nodes.items[i];
    if (!node->dead && (op_def(node->op)->roles & anchors))
      fuse_epilogues(g, &r, log, i);
  }
}
