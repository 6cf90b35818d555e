/*
 * graph.c: building the IR graph.
 *
 * Values and nodes live in two arrays of the graph and refer to each other by
 * index, so passes can append nodes (autodiff) while others hold ids.  Nodes
 * are in topological order by construction: a node is created after all the
 * values it reads.
 */
#include <string.h>

#include "nncc.h"

Graph *new_graph(Ctx *ctx, Mode mode, DType dtype, int max_batch, int max_threads,
                 const char *model) {
  Graph *g = arena_alloc(ctx->arena, sizeof *g);
  g->ctx = ctx;
  g->mode = mode;
  g->dtype = dtype;
  g->max_batch = max_batch;
  g->max_threads = max_threads;
  g->model = model;
  g->loss = -1;
  return g;
}

Value *val(const Graph *g, int id) {
  if (id < 0 || id >= g->values.len)
    internal_error(__FILE__, __LINE__, "bad value id %d", id);
  return &g->values.items[id];
}

Node *node_at(const Graph *g, int id) {
  if (id < 0 || id >= g->nodes.len)
    internal_error(__FILE__, __LINE__, "bad node id %d", id);
  return &g->nodes.items[id];
}

bool in_arena(const Graph *g, const Value *v) {
  return v->kind == V_ACT || v->kind == V_LOSS || (v->kind == V_PGRAD && g->eager_update);
}

int new_value(Graph *g, ValueKind kind, const char *name, Shape shape, bool batched,
              DType dtype) {
  Value v = {0};
  v.id = g->values.len;
  v.name = name;
  v.kind = kind;
  v.dtype = dtype;
  v.batched = batched;
  v.shape = shape;
  v.producer = -1;
  v.grad = -1;
  v.param = -1;
  v.alias = -1;
  vec_push(g->ctx->arena, g->values, v);
  return v.id;
}

Node *new_node(Graph *g, OpKind op, const char *name, Loc loc) {
  Node n = {0};
  n.id = g->nodes.len;
  n.op = op;
  n.name = name;
  n.loc = loc;
  n.fused_into = -1;
  n.prologue = -1;
  vec_push(g->ctx->arena, g->nodes, n);
  return &g->nodes.items[n.id];
}

void node_input(Graph *g, Node *node, int v) {
  (void)val(g, v);
  if (node->nin == MAX_IN)
    internal_error(__FILE__, __LINE__, "too many inputs on %s", node->name);
  node->in[node->nin++] = v;
}

int node_output(Graph *g, Node *node, Shape shape, bool batched, DType dtype) {
  if (node->nout == MAX_OUT)
    internal_error(__FILE__, __LINE__, "too many outputs on %s", node->name);
  const char *name = node->nout == 0 ? node->name
                                     : arena_printf(g->ctx->arena, "%s.%d", node->name,
                                                    node->nout);
  int node_id = node->id;
  int v = new_value(g, V_ACT, name, shape, batched, dtype);
  node = node_at(g, node_id); /* new_value may not move nodes, but be explicit */
  val(g, v)->producer = node_id;
  node->out[node->nout++] = v;
  return v;
}

int node_workspace(Graph *g, Node *node, long reals) {
  int v = node_output(g, node, shape_of(1, (int)reals), false, g->dtype);
  val(g, v)->name = arena_printf(g->ctx->arena, "%s.ws", node->name);
  val(g, v)->scratch = true;
  return v;
}

static int persistent(Graph *g, Node *node, ValueKind kind, const char *suffix,
                      Shape shape) {
  const char *name = arena_printf(g->ctx->arena, "%s.%s", node->name, suffix);
  int v = new_value(g, kind, name, shape, false, g->dtype);
  node_input(g, node, v);
  return v;
}

int node_param(Graph *g, Node *node, const char *suffix, Shape shape, Init init,
               bool decay) {
  int v = persistent(g, node, V_PARAM, suffix, shape);
  val(g, v)->init = init;
  val(g, v)->decay = decay;
  return v;
}

int node_buffer(Graph *g, Node *node, const char *suffix, Shape shape, double fill) {
  int v = persistent(g, node, V_BUFFER, suffix, shape);
  val(g, v)->init = (Init){.kind = INIT_CONST, .value = fill};
  return v;
}

int node_counter(Graph *g, Node *node, const char *suffix) {
  const char *name = arena_printf(g->ctx->arena, "%s.%s", node->name, suffix);
  return new_value(g, V_COUNTER, name, shape_of(0), false, g->dtype);
}

Shape shape_of(int rank, ...) {
  Shape s = {0};
  if (rank < 0 || rank > MAX_RANK)
    internal_error(__FILE__, __LINE__, "rank %d", rank);
  s.rank = rank;
  va_list ap;
  va_start(ap, rank);
  for (int i = 0; i < rank; i++)
    s.dim[i] = va_arg(ap, int);
  va_end(ap);
  return s;
}

long shape_numel(const Shape *s) {
  long n = 1;
  for (int i = 0; i < s->rank; i++)
    n *= s->dim[i];
  return n;
}

const char *shape_str(Arena *a, const Shape *s) {
  char tmp[128];
  size_t len = 0;
  tmp[len++] = '[';
  for (int i = 0; i < s->rank; i++)
    len += (size_t)snprintf(tmp + len, sizeof tmp - len, i ? ", %d" : "%d", s->dim[i]);
  tmp[len++] = ']';
  return arena_strndup(a, tmp, len);
}

bool check_shape(Graph *g, const Node *node, Shape s) {
  long n = 1;
  for (int i = 0; i < s.rank; i++) {
    if (s.dim[i] <= 0) {
      error_at(g->ctx, node->loc, "%s: output dimension %d is %d; it must be positive",
               op_def(node->op)->name, i, s.dim[i]);
      return false;
    }
    if (__builtin_mul_overflow(n, (long)s.dim[i], &n) || n > MAX_ELEMS) {
      error_at(g->ctx, node->loc, "%s: tensor %s is too large (over %ld elements)",
               op_def(node->op)->name, shape_str(g->ctx->arena, &s), (long)MAX_ELEMS);
      return false;
    }
  }
  return true;
}

int derived_node(Graph *g, OpKind op, int like, const int *in, int nin, Shape shape,
                 bool batched) {
  Node *src = node_at(g, like);
  const char *name = src->name;
  Loc loc = src->loc;
  AttrVal attr[MAX_ATTR];
  memcpy(attr, src->attr, sizeof attr);
  Node *node = new_node(g, op, name, loc);
  memcpy(node->attr, attr, sizeof attr);
  for (int i = 0; i < nin; i++)
    node_input(g, node, in[i]);
  return node_output(g, node, shape, batched, g->dtype);
}

/* Node and value references to node ids at or after `from` move up by one. */
static void shift_node_refs(Graph *g, int from) {
  for (int i = 0; i < g->values.len; i++)
    if (g->values.items[i].producer >= from)
      g->values.items[i].producer++;
  for (int i = 0; i < g->nodes.len; i++) {
    Node *n = &g->nodes.items[i];
    n->id = i;
    if (n->fused_into >= from)
      n->fused_into++;
    if (n->prologue >= from)
      n->prologue++;
    for (int k = 0; k < n->nepilogue; k++)
      if (n->epilogue[k] >= from)
        n->epilogue[k]++;
  }
}

/* Node id i after node `from` moved to `to` < from. */
static int moved(int i, int from, int to) {
  return i == from ? to : i >= to && i < from ? i + 1 : i;
}

void move_node(Graph *g, int from, int to) {
  Node *items = g->nodes.items, keep = items[from];
  memmove(&items[to + 1], &items[to], sizeof(Node) * (size_t)(from - to));
  items[to] = keep;
  for (int i = 0; i < g->values.len; i++)
    if (g->values.items[i].producer >= 0)
      g->values.items[i].producer = moved(g->values.items[i].producer, from, to);
  for (int i = 0; i < g->nodes.len; i++) {
    Node *n = &items[i];
    n->id = i;
    if (n->fused_into >= 0)
      n->fused_into = moved(n->fused_into, from, to);
    if (n->prologue >= 0)
      n->prologue = moved(n->prologue, from, to);
    for (int k = 0; k < n->nepilogue; k++)
      n->epilogue[k] = moved(n->epilogue[k], from, to);
  }
}

Node *insert_node(Graph *g, int before, OpKind op, const char *name, Loc loc) {
  Node fresh = *new_node(g, op, name, loc);
  Node *items = g->nodes.items;
  int last = g->nodes.len - 1;
  memmove(&items[before + 1], &items[before], sizeof(Node) * (size_t)(last - before));
  items[before] = fresh;
  shift_node_refs(g, before);
  items[before].fused_into = -1;
  return &items[before];
}

int kernel_reads(const Graph *g, const Node *node, int *vals) {
  int n = 0;
  for (int j = 0; j < node->nin; j++) {
    if (j == 0 && node->prologue >= 0) {
      const Node *p = node_at(g, node->prologue);
      for (int k = 0; k < p->nin; k++)
        vals[n++] = p->in[k];
    } else {
      vals[n++] = node->in[j];
    }
  }
  for (int k = 0; k < node->nepilogue; k++) {
    const Node *ep = node_at(g, node->epilogue[k]);
    for (int j = 1; j < ep->nin; j++)
      vals[n++] = ep->in[j];
  }
  return n;
}
