/*
 * print.c: the IR as text (--emit-ir) and as GraphViz (--emit-dot).
 *
 *   %12 = conv2d[conv1](%0 x, %1 conv1.weight, %2 conv1.bias) kernel=5 pad=2
 *         : f32[N, 6, 28, 28] @arena+0      # line 7
 */
#include <string.h>

#include "nncc.h"

static const char *const kind_names[] = {
    [V_INPUT] = "input", [V_TARGET] = "target", [V_PARAM] = "param", [V_BUFFER] = "buffer",
    [V_ACT] = "act", [V_PGRAD] = "grad", [V_OUTPUT] = "output", [V_LOSS] = "loss",
    [V_INGRAD] = "input_grad", [V_COUNTER] = "counter", [V_CONST] = "const"};

static void print_type(Buf *b, const Graph *g, const Value *v) {
  buf_puts(b, v->kind == V_COUNTER    ? "i64["
              : v->dtype == DT_I32    ? "i32["
              : g->dtype == DT_F64    ? "f64["
                                      : "f32[");
  if (v->batched)
    buf_puts(b, v->shape.rank ? "N, " : "N");
  for (int i = 0; i < v->shape.rank; i++)
    buf_printf(b, i ? ", %d" : "%d", v->shape.dim[i]);
  buf_puts(b, "]");
}

static void print_attrs(Buf *b, const Node *node) {
  const OpDef *def = op_def(node->op);
  for (int i = 0; i < def->nattr; i++) {
    const AttrVal *a = &node->attr[i];
    buf_printf(b, " %s=", def->attrs[i].name);
    switch (def->attrs[i].type) {
    case ATTR_INT:
      buf_printf(b, "%d", (int)a->num);
      break;
    case ATTR_FLOAT:
      buf_printf(b, "%g", a->num);
      break;
    case ATTR_BOOL:
      buf_puts(b, a->num != 0 ? "true" : "false");
      break;
    case ATTR_IDENT:
      buf_puts(b, a->ident ? a->ident : "?");
      break;
    case ATTR_INTS:
      if (!a->nlist) {
        buf_printf(b, "%d", (int)a->num);
        break;
      }
      for (int k = 0; k < a->nlist; k++)
        buf_printf(b, k ? ", %d" : "(%d", (int)a->list[k]);
      buf_puts(b, ")");
      break;
    case ATTR_LIST:
      buf_puts(b, "[");
      for (int k = 0; k < a->nlist; k++)
        buf_printf(b, k ? ", %g" : "%g", a->list[k]);
      buf_puts(b, "]");
      break;
    }
  }
}

void print_ir(Buf *b, const Graph *g) {
  buf_printf(b, "graph %s (%s, max batch %d)\n", g->model,
             g->mode == MODE_TRAIN ? "train" : "infer", g->max_batch);
  for (int i = 0; i < g->values.len; i++) {
    const Value *v = &g->values.items[i];
    if (v->producer >= 0 || v->kind == V_PGRAD)
      continue;
    buf_printf(b, "  %%%d %s %s : ", i, kind_names[v->kind], v->name);
    print_type(b, g, v);
    if (v->frozen)
      buf_puts(b, " frozen");
    buf_puts(b, "\n");
  }
  for (int i = 0; i < g->nodes.len; i++) {
    const Node *node = &g->nodes.items[i];
    if (node->dead)
      continue;
    buf_puts(b, node->backward ? "  bwd " : "  ");
    for (int k = 0; k < node->nout; k++)
      buf_printf(b, "%s%%%d", k ? ", " : "", node->out[k]);
    buf_printf(b, "%s%s[%s](", node->nout ? " = " : "", op_def(node->op)->name, node->name);
    for (int j = 0; j < node->nin; j++)
      buf_printf(b, "%s%%%d", j ? ", " : "", node->in[j]);
    buf_puts(b, ")");
    print_attrs(b, node);
    if (node->fused_into >= 0)
      buf_printf(b, " fused into %s", node_at(g, node->fused_into)->name);
    for (int k = 0; k < node->nepilogue; k++)
      buf_printf(b, k ? ", %s" : " epilogue: %s", op_def(node_at(g, node->epilogue[k])->op)->name);
    buf_puts(b, " : ");
    for (int k = 0; k < node->nout; k++) {
      const Value *v = val(g, node->out[k]);
      buf_puts(b, k ? ", " : "");
      print_type(b, g, v);
      buf_printf(b, " %s", kind_names[v->kind]);
    }
    buf_printf(b, "   # line %d\n", node->loc.line);
  }
}

static void dot_value(Buf *b, const Graph *g, const Value *v) {
  const char *color = v->kind == V_PARAM ? "lightyellow" : v->kind == V_INPUT ? "lightblue"
                      : v->kind == V_PGRAD ? "mistyrose" : "white";
  buf_printf(b, "  v%d [shape=note, style=filled, fillcolor=%s, label=\"%s\\n", v->id, color,
             v->name);
  print_type(b, g, v);
  buf_puts(b, "\"];\n");
}

void print_dot(Buf *b, const Graph *g) {
  buf_printf(b, "digraph %s {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n",
             g->model);
  for (int i = 0; i < g->values.len; i++) {
    const Value *v = &g->values.items[i];
    if (v->producer < 0 || !node_at(g, v->producer)->dead)
      if (v->kind != V_ACT || v->producer < 0 || node_at(g, v->producer)->fused_into < 0)
        dot_value(b, g, v);
  }
  for (int i = 0; i < g->nodes.len; i++) {
    const Node *node = &g->nodes.items[i];
    if (node->dead || node->fused_into >= 0)
      continue;
    buf_printf(b, "  n%d [shape=box, style=\"rounded,filled\", fillcolor=%s, label=\"%s\\n%s",
               i, node->backward ? "lightpink" : "palegreen", node->name, op_def(node->op)->name);
    for (int k = 0; k < node->nepilogue; k++)
      buf_printf(b, "+%s", op_def(node_at(g, node->epilogue[k])->op)->name);
    buf_puts(b, "\"];\n");
    for (int j = 0; j < node->nin; j++)
      buf_printf(b, "  v%d -> n%d;\n", node->in[j], i);
    for (int k = 0; k < node->nout; k++)
      buf_printf(b, "  n%d -> v%d;\n", i, node->out[k]);
  }
  buf_puts(b, "}\n");
}
