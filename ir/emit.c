/*
 * emit.c: small helpers for writing readable C: indented lines, OpenMP
 * pragmas that vanish without -fopenmp, literals valid in f32 and f64, and
 * fused epilogue expressions.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "emit.h"

void emitln(Emit *e, const char *fmt, ...) {
  const char *first = fmt + strspn(fmt, " ");
  if (*first == '}' && e->indent > 0)
    e->indent--;
  if (fmt[0] != '\0' && fmt[0] != '#')
    for (int i = 0; i < e->indent; i++)
      buf_puts(e->b, "    ");
  va_list ap;
  va_start(ap, fmt);
  buf_vprintf(e->b, fmt, ap);
  va_end(ap);
  buf_puts(e->b, "\n");
  size_t len = strlen(fmt);
  if (len > 0 && fmt[len - 1] == '{')
    e->indent++;
}

/* Whether the kernel's work at the largest batch is worth sharing among
 * threads (NN_SHARE_WORK); unknown work (0) is. */
static bool worth_sharing(const Emit *e) {
  return e->work <= 0 || e->work * e->g->max_batch >= NN_SHARE_WORK;
}

static void emit_pragma(Emit *e, const char *directive, const char *clauses) {
  emitln(e, "#ifdef _OPENMP");
  emitln(e, "#pragma omp %s%s%s", directive, clauses[0] ? " " : "", clauses);
  emitln(e, "#endif");
}

void emit_engine(Emit *e, bool dot) {
  emitln(e, "%s", dot ? "const nn_ukr_nt_fn dot = nn_ukr_nt_pick();"
                      : "const nn_ukr_fn ukr = nn_ukr_pick();");
  e->engine = true;
}

void emit_omp_for(Emit *e, const char *clauses) {
  if (!worth_sharing(e))
    return;
  emit_pragma(e, "for", clauses);
  e->shared = true;
}

void emit_omp(Emit *e, const char *directive) {
  if (!worth_sharing(e))
    return;
  emit_pragma(e, directive, "");
  e->shared = true;
}

void emit_omp_parallel_for(Emit *e, const char *clauses) {
  emit_pragma(e, "parallel for", clauses);
}

/* The shortest decimal that reads back to the same double. */
static void shortest(char *tmp, size_t cap, double v) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, cap, "%.*g", prec, v);
    if (strtod(tmp, NULL) == v)
      break;
  }
}

const char *lit(Emit *e, double v) {
  if (isinf(v))
    return v > 0 ? "(real)INFINITY" : "(real)-INFINITY";
  char tmp[64];
  shortest(tmp, sizeof tmp, v);
  bool has_point = strpbrk(tmp, ".en") != NULL;
  bool f32 = e->g->dtype == DT_F32;
  return arena_printf(e->ctx->arena, "%s%s%s", tmp, has_point ? "" : ".0", f32 ? "f" : "");
}

double lit_value(DType dtype, double v) {
  if (dtype != DT_F32 || isinf(v))
    return v;
  char tmp[64];
  shortest(tmp, sizeof tmp, v);
  return strtof(tmp, NULL);   /* "1e-05f": the decimal rounded once, to float */
}

static int count_names(const char *const *names) {
  int n = 0;
  while (names && names[n])
    n++;
  return n;
}

const char *arg_name(Emit *e, const Node *node, int k) {
  const OpDef *def = op_def(node->op);
  if (k < node->nout)
    return k < count_names(def->out_names) ? def->out_names[k]
                                           : arena_printf(e->ctx->arena, "y%d", k);
  int i = k - node->nout;
  return i < count_names(def->in_names) ? def->in_names[i]
                                        : arena_printf(e->ctx->arena, "x%d", i);
}

const char *epilogue_expr(Emit *e, const Node *node, const char *acc, const char *c,
                          const char *i) {
  const Graph *g = e->g;
  const char *expr = acc;
  for (int k = 0; k < node->nepilogue; k++) {
    const Node *ep = node_at(g, node->epilogue[k]);
    const OpDef *def = op_def(ep->op);
    const char *args[MAX_IN + 1];
    args[0] = expr;
    args[ep->nin] = c;
    for (int j = 1; j < ep->nin; j++) {
      const Value *v = val(g, ep->in[j]);
      const char *name = arena_printf(e->ctx->arena, "ep%d_%d", k, j);
      args[j] = arena_printf(e->ctx->arena, "%s[%s]", name,
                             v->batched ? i : shape_numel(&v->shape) == 1 ? "0" : c);
    }
    Buf b = {0};
    def->scalar(&b, g, ep, args);
    /* One local per step: nested rules that read their operand twice
     * would otherwise grow the expression exponentially along a chain. */
    if (k + 1 < node->nepilogue) {
      emitln(e, "const real fused%d = %s;", k, b.data);
      expr = arena_printf(e->ctx->arena, "fused%d", k);
    } else {
      expr = arena_strdup(e->ctx->arena, b.data);
    }
    buf_free(&b);
  }
  return expr;
}

bool epilogue_reads_batched(const Graph *g, const Node *node) {
  for (int k = 0; k < node->nepilogue; k++) {
    const Node *ep = node_at(g, node->epilogue[k]);
    for (int j = 1; j < ep->nin; j++)
      if (val(g, ep->in[j])->batched)
        return true;
  }
  return false;
}

/* The kernel of every ROLE_ELEMENTWISE op: y[i] = scalar(inputs).  Inputs are
 * batched tensors of the output's shape (indexed by i), or unbatched
 * per-channel vectors of length dim[0] (indexed by c), or scalars [1]. */
/* Whether node's scalar inputs (or those of its epilogue) need a channel. */
static bool needs_channel(const Graph *g, const Node *node) {
  if (op_def(node->op)->roles & ROLE_CHANNEL)
    return true;
  for (int j = 0; j < node->nin; j++) {
    const Value *x = val(g, node->in[j]);
    if (!x->batched && shape_numel(&x->shape) > 1)
      return true;
  }
  for (int k = 0; k < node->nepilogue; k++)
    if (needs_channel(g, node_at(g, node->epilogue[k])))
      return true;
  return false;
}

bool writes_over_input(const Graph *g, const Node *node) {
  if (!(op_def(node->op)->roles & ROLE_INPLACE) || node->nin == 0)
    return false;
  int x = node->in[0];
  while (val(g, x)->alias >= 0)
    x = val(g, x)->alias;
  return val(g, node->out[0])->alias == x;
}

void emit_elementwise(Emit *e, const Graph *g, const Node *node) {
  const Value *y = val(g, node->out[0]);
  long numel = shape_numel(&y->shape);
  int channels = y->shape.dim[0];
  const char *args[MAX_IN + 1];
  args[node->nin] = "c";
  /* In place, the first input is read through the output's pointer, and
   * codegen leaves it out of the parameters: two pointers to one array make
   * clang test them for overlap at run time and fall back to a scalar loop
   * when they do. */
  bool over = writes_over_input(g, node);
  for (int j = 0; j < node->nin; j++) {
    const Value *x = val(g, node->in[j]);
    const char *name = arg_name(e, node, over && j == 0 ? 0 : node->nout + j);
    const char *index = x->batched ? "i" : shape_numel(&x->shape) == 1 ? "0" : "c";
    args[j] = arena_printf(e->ctx->arena, "%s[%s]", name, index);
  }
  Buf b = {0};
  op_def(node->op)->scalar(&b, g, node, args);
  const char *out = arg_name(e, node, 0);
  if (!needs_channel(g, node)) {
    emit_omp_for(e, "");
    emitln(e, "for (long i = 0; i < (long)n * %ld; i++) {", numel);
    emitln(e, "%s[i] = %s;", out, epilogue_expr(e, node, b.data, "c", "i"));
    emitln(e, "}");
  } else {
    long inner = numel / channels;
    emit_omp_for(e, "");
    emitln(e, "for (long nc = 0; nc < (long)n * %d; nc++) {", channels);
    emitln(e, "const int c = (int)(nc %% %d);", channels);
    emitln(e, "(void)c;");
    emitln(e, "for (long s = 0; s < %ld; s++) {", inner);
    emitln(e, "const long i = nc * %ld + s;", inner);
    emitln(e, "%s[i] = %s;", out, epilogue_expr(e, node, b.data, "c", "i"));
    emitln(e, "}");
    emitln(e, "}");
  }
  buf_free(&b);
}

const char *input_expr(Emit *e, const Node *node, int j, const char *i, const char *c) {
  Arena *a = e->ctx->arena;
  const char *name = arg_name(e, node, node->nout + j);
  if (j != 0 || node->prologue < 0)
    return arena_printf(a, "%s[%s]", name, i);
  const Graph *g = e->g;
  const Node *p = node_at(g, node->prologue);
  const char *args[MAX_IN + 1];
  args[0] = arena_printf(a, "%s[%s]", name, i);
  args[p->nin] = c;
  for (int k = 1; k < p->nin; k++) {
    const Value *v = val(g, p->in[k]);
    args[k] = arena_printf(a, "pro_%d[%s]", k, v->batched ? i : shape_numel(&v->shape) == 1 ? "0" : c);
  }
  Buf b = {0};
  op_def(p->op)->scalar(&b, g, p, args);
  const char *expr = arena_printf(a, "(%s)", b.data);
  buf_free(&b);
  return expr;
}

/* Partial sums per quantity in emit_channel_sums: four 512-bit vectors of
 * doubles (two of floats), so their additions overlap.  More than 16 also
 * keeps gcc from unrolling the lane loop completely, which would leave 16
 * scalar sums. */
enum { SUM_LANES = 32 };

/* Emits `type sums[q] = ...;` for q < count: the sum over channel c (n
 * samples of s positions; k indexes the element) of exprs[q].  The order
 * is fixed for any thread count and vectorizes without reassociation: lane
 * j of SUM_LANES partial sums takes positions i = j (mod SUM_LANES) of every
 * sample in turn; the lanes are added in order at the end.  `fill`, if
 * not NULL, is a statement run over each sample's block (index k) before it
 * is summed.  `reads` (NULL-terminated, or NULL): the arrays the sums read
 * at k, whose next sample's block is prefetched while this one is summed:
 * the blocks are a channel's plane, C planes apart, and the hardware
 * prefetchers start again at every one (resnet20's batchnorm_dx 1.2x). */
void emit_channel_sums(Emit *e, const char *type, int c, long s, int count,
                       const char *const *sums, const char *const *exprs, const char *fill,
                       const char *const *reads) {
  long main_part = s / SUM_LANES * SUM_LANES, tail = s - main_part;
  for (int q = 0; q < count; q++)
    emitln(e, "%s %s = 0;", type, sums[q]);
  emitln(e, "/* lane j sums positions j mod %d: a fixed order that vectorizes */", SUM_LANES);
  emitln(e, "{");
  for (int q = 0; q < count; q++)
    emitln(e, "%s lane_%s[%d] = {0};", type, sums[q], SUM_LANES);
  emitln(e, "for (int b = 0; b < n; b++) {");
  emitln(e, "const long base = ((long)b * %d + c) * %ld;", c, s);
  bool prefetch = reads && reads[0] && main_part > 0;
  if (prefetch)
    emitln(e, "const long next = b + 1 < n ? base + %ld : base;", (long)c * s);
  if (fill) {
    emitln(e, "for (long i = 0; i < %ld; i++) {", s);
    emitln(e, "const long k = base + i;");
    emitln(e, "%s", fill);
    emitln(e, "}");
  }
  if (main_part > 0) {
    emitln(e, "for (long i = 0; i < %ld; i += %d) {", main_part, SUM_LANES);
    if (prefetch) {
      emitln(e, "for (int p = 0; p < %d; p += 64 / (int)sizeof(real)) {", SUM_LANES);
      for (int q = 0; reads[q]; q++)
        emitln(e, "NN_PREFETCH(%s + next + i + p);", reads[q]);
      emitln(e, "}");
    }
    emitln(e, "for (int j = 0; j < %d; j++) {", SUM_LANES);
    emitln(e, "const long k = base + i + j;");
    for (int q = 0; q < count; q++)
      emitln(e, "lane_%s[j] += %s;", sums[q], exprs[q]);
    emitln(e, "}");
    emitln(e, "}");
  }
  if (tail > 0) {
    emitln(e, "for (int j = 0; j < %ld; j++) {", tail);
    emitln(e, "const long k = base + %ld + j;", main_part);
    for (int q = 0; q < count; q++)
      emitln(e, "lane_%s[j] += %s;", sums[q], exprs[q]);
    emitln(e, "}");
  }
  emitln(e, "}");
  emitln(e, "for (int j = 0; j < %d; j++) {", SUM_LANES);
  for (int q = 0; q < count; q++)
    emitln(e, "%s += lane_%s[j];", sums[q], sums[q]);
  emitln(e, "}");
  emitln(e, "}");
}
