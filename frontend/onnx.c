/*
 * onnx.c: ONNX import.  Reads a ModelProto with protobuf-c (the reader that
 * CMake generates from onnx.proto at build time), checks the graph, and
 * translates it into the text of a .nn program, one statement per ONNX
 * node, plus the initializers as that program's parameters (onnx.h).
 *
 * The translation is a table of ONNX ops (`importers` below), each mapped
 * to the language's op that computes the same function: Conv to conv2d,
 * Gemm to dense, MatMul + Add to one dense, and so on.  An attribute value
 * the language cannot express (ceil_mode, a pool's dilations, a shared PReLU
 * slope) is an error naming the node, never silently dropped.  The
 * importer tracks every value's shape itself, so a weight that does not fit
 * its layer is reported here, naming the node and the initializer, before
 * the program is compiled.
 *
 * Layer names follow PyTorch: a layer whose weight initializer is
 * "features.0.weight" is named "features.0" (its parameters are then
 * "features.0.weight" and "features.0.bias", the state_dict names);
 * failing that the module path of the node name ("/features/features.0/Conv"
 * gives "features.0"); failing that "<op prefix>_<k>".
 *
 * The file is untrusted: every count, dim and byte length is checked
 * before use, names reach the .nn text only sanitised, and errors quote
 * names with non-printable bytes replaced.
 */
#define _POSIX_C_SOURCE 200809L  /* strcasecmp, fileno, open, fdopen */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ast.h"
#include "onnx.h"
#include "onnx.pb-c.h"

#define MAX_FILE (1L << 30)       /* 1 GiB: protobuf itself stops at 2 GiB */
#define MAX_DIMS (MAX_RANK + 1)   /* the batch and the language's 4 */
#define BATCH_DIM INT64_MIN       /* the batch in folded shape arithmetic */

/* One ONNX value: an activation (bound to a .nn name) or a constant
 * (an initializer or a Constant node's output). */
typedef struct Val {
  const char *name;       /* the ONNX name */
  int rank;
  int64_t dim[MAX_DIMS];  /* activations: dim[0] is the batch */
  bool is_const;
  int32_t type;           /* constants: ONNX element type */
  const float *f;         /* FLOAT constant data */
  const int64_t *i;       /* INT64 constant data */
  long numel;
  const char *var;        /* activations: the .nn binding */
  int producer;           /* node index, -1 for inputs and initializers */
  int uses;               /* reads by live nodes */
  bool output;            /* a graph output */
} Val;

typedef VEC(const char *) Names;

typedef struct Imp {
  Ctx *ctx;
  const char *path;
  Onnx__GraphProto *g;
  VEC(Val) vals;
  int *index;             /* open-addressing hash of vals by name */
  int index_cap;
  bool *live, *done;      /* per node */
  const Onnx__NodeProto *node;   /* being translated, for errors */
  Buf nn;
  VEC(OnnxWeight) weights;
  Names layers, idents;         /* layer names; .nn identifiers */
  int nprefix, nvars;            /* counters for fallback names, h1 h2 ... */
  int opset;
  const OnnxImport *imp;         /* `import` in a .nn file; NULL for a .onnx input */
  Names inputs, outputs;         /* the default names of the graph's inputs and outputs */
} Imp;

/* ---- errors ------------------------------------------------------------------ */

/* An untrusted name fit for a message: printable ASCII, at most 80 bytes. */
static const char *shown(Imp *m, const char *s) {
  if (!s || !*s)
    return "(unnamed)";
  size_t n = strlen(s) > 80 ? 80 : strlen(s);
  char *t = arena_strndup(m->ctx->arena, s, n);
  for (char *p = t; *p; p++)
    if (*p < 0x20 || *p > 0x7e)
      *p = '?';
  return strlen(s) > 80 ? arena_printf(m->ctx->arena, "%s...", t) : t;
}

static const char *str(const char *s) { return s ? s : ""; }

/* "file: error: node 'n' (Op): msg"; returns false for `return fail(...)`. */
__attribute__((format(printf, 2, 3))) static bool fail(Imp *m, const char *fmt, ...) {
  if (m->ctx->nerrors++ > 0)
    return false;
  Buf *d = &m->ctx->diag;
  buf_printf(d, "%s: error: ", m->path);
  if (m->node)
    buf_printf(d, "node '%s' (%s): ", shown(m, m->node->name), shown(m, m->node->op_type));
  va_list ap;
  va_start(ap, fmt);
  buf_vprintf(d, fmt, ap);
  va_end(ap);
  buf_puts(d, "\n");
  return false;
}

/* ---- values by name ------------------------------------------------------------ */

static unsigned hash_str(const char *s) {
  unsigned h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

static Val *find(Imp *m, const char *name) {
  if (!name || !*name)
    return NULL;
  for (unsigned h = hash_str(name);; h++) {
    int k = m->index[h & (m->index_cap - 1)];
    if (k < 0)
      return NULL;
    if (!strcmp(m->vals.items[k].name, name))
      return &m->vals.items[k];
  }
}

/* A new value; NULL (after an error) when the name is taken. */
static Val *add_val(Imp *m, const char *name) {
  if (find(m, name)) {
    fail(m, "'%s' is defined twice", shown(m, name));
    return NULL;
  }
  unsigned h = hash_str(name);
  while (m->index[h & (m->index_cap - 1)] >= 0)
    h++;
  m->index[h & (m->index_cap - 1)] = m->vals.len;
  Val v = {.name = arena_strdup(m->ctx->arena, name), .producer = -1};
  vec_push(m->ctx->arena, m->vals, v);
  return &m->vals.items[m->vals.len - 1];
}

/* Whether s is taken as a layer name or identifier; case-insensitively,
 * since API names must differ when upper-cased. */
static bool name_taken(const Names *set, const char *s) {
  for (int i = 0; i < set->len; i++)
    if (!strcasecmp(set->items[i], s))
      return true;
  return false;
}

static const char *take_name(Imp *m, Names *set, const char *s) {
  s = arena_strdup(m->ctx->arena, s);
  vec_push(m->ctx->arena, *set, s);
  return s;
}

/* Words an API name must not be: C keywords and names the generated code
 * uses (a short list; frontend/parse.c has the full one and reports the
 * rest), and the language's reserved words. */
static bool is_avoided(const char *s) {
  static const char *const avoid[] = {"m", "n", "int", "char", "float", "double", "void",
      "long", "short", "auto", "case", "const", "default", "do", "else", "enum", "extern",
      "for", "goto", "if", "inline", "register", "restrict", "return", "signed", "sizeof",
      "static", "struct", "switch", "typedef", "union", "unsigned", "volatile", "while",
      "class", "new", "delete", "main", "real", "exp", "log", "malloc", "free", "size_t",
      "this", "template", "f32", NULL};
  for (int k = 0; avoid[k]; k++)
    if (!strcmp(s, avoid[k]))
      return true;
  return is_reserved_word(s, (int)strlen(s)) || !strncmp(s, "nn_", 3) || strstr(s, "__");
}

/* ---- constants ------------------------------------------------------------------ */

static bool tensor_dims(Imp *m, const Onnx__TensorProto *t, Val *v) {
  if (t->n_dims > MAX_DIMS)
    return fail(m, "tensor '%s' has rank %zu (at most %d is supported)", shown(m, t->name),
                t->n_dims, MAX_DIMS);
  v->rank = (int)t->n_dims;
  v->numel = 1;
  for (int d = 0; d < v->rank; d++) {
    v->dim[d] = t->dims[d];
    if (t->dims[d] < 0 || t->dims[d] >= MAX_ELEMS ||   /* every dim fits an int */
        __builtin_mul_overflow(v->numel, (long)t->dims[d], &v->numel) || v->numel > MAX_ELEMS)
      return fail(m, "tensor '%s' has a bad shape (a dim of %lld)", shown(m, t->name),
                  (long long)t->dims[d]);
  }
  return true;
}

/* Little-endian bytes into host values, whatever the host. */
static uint64_t le_bytes(const uint8_t *p, int n) {
  uint64_t x = 0;
  for (int k = n - 1; k >= 0; k--)
    x = x << 8 | p[k];
  return x;
}

/* Fills v from a TensorProto: FLOAT data, or INT64 and BOOL (as int64),
 * raw or typed. */
static bool load_const(Imp *m, const Onnx__TensorProto *t, Val *v) {
  const char *name = t->name && *t->name ? t->name : v->name;
  if (!tensor_dims(m, t, v))
    return false;
  if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return fail(m, "tensor '%s' keeps its data in an external file, which is not supported "
                "(export with the weights inside the model)", shown(m, name));
  v->is_const = true;
  v->type = t->has_data_type ? t->data_type : 0;
  bool f32 = v->type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  bool i64 = v->type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
  bool b8 = v->type == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
  if (!f32 && !i64 && !b8)
    return fail(m, "tensor '%s' has element type %d; only float32 (1), int64 (7) and bool (9) "
                "constants are supported", shown(m, name), v->type);
  int esize = f32 ? 4 : i64 ? 8 : 1;
  size_t have = t->has_raw_data ? t->raw_data.len / (size_t)esize
                : f32 ? t->n_float_data : i64 ? t->n_int64_data : t->n_int32_data;
  if ((t->has_raw_data && t->raw_data.len % (size_t)esize) || have != (size_t)v->numel)
    return fail(m, "tensor '%s' of shape with %ld elements holds %zu values", shown(m, name),
                v->numel, have);
  void *data = arena_alloc(m->ctx->arena, (size_t)(v->numel ? v->numel : 1) * 8);
  for (long k = 0; k < v->numel; k++) {
    if (f32 && t->has_raw_data) {
      uint32_t bits = (uint32_t)le_bytes(t->raw_data.data + 4 * k, 4);
      memcpy((float *)data + k, &bits, 4);
    } else if (f32) {
      ((float *)data)[k] = t->float_data[k];
    } else if (t->has_raw_data) {
      ((int64_t *)data)[k] = (int64_t)le_bytes(t->raw_data.data + esize * k, esize);
    } else {
      ((int64_t *)data)[k] = i64 ? t->int64_data[k] : t->int32_data[k];
    }
    if (f32 && !isfinite(((float *)data)[k]))
      return fail(m, "tensor '%s' holds a NaN or infinite value", shown(m, name));
  }
  if (f32)
    v->f = data;
  else
    v->i = data;
  return true;
}

/* ---- graph checks: inputs, order, liveness ------------------------------------ */

static bool add_input(Imp *m, const Onnx__ValueInfoProto *vi) {
  const char *name = str(vi->name);
  if (!*name)
    return fail(m, "a graph input has no name");
  const Onnx__TypeProto *tp = vi->type;
  if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type ||
      tp->tensor_type->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
    return fail(m, "input '%s' must be a float32 tensor", shown(m, name));
  const Onnx__TensorShapeProto *sh = tp->tensor_type->shape;
  if (!sh || sh->n_dim < 2 || sh->n_dim > MAX_DIMS)
    return fail(m, "input '%s' must have a known shape (N, d1, ...) of rank 2 to %d",
                shown(m, name), MAX_DIMS);
  Val *v = add_val(m, name);
  if (!v)
    return false;
  v->rank = (int)sh->n_dim;
  v->dim[0] = 1;   /* the batch: fixed or symbolic, nncc makes it dynamic */
  v->numel = 1;
  for (int d = 1; d < v->rank; d++) {
    const Onnx__TensorShapeProto__Dimension *dd = sh->dim[d];
    if (dd->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ||
        dd->dim_value <= 0 || dd->dim_value >= MAX_ELEMS)
      return fail(m, "input '%s': dim %d must be a positive number (only the batch, dim 0, "
                  "may be symbolic)", shown(m, name), d);
    v->dim[d] = dd->dim_value;
    v->numel *= dd->dim_value;
    if (v->numel > MAX_ELEMS)
      return fail(m, "input '%s' has more than 2^31 elements per sample", shown(m, name));
  }
  return true;
}

/* Every input of every node must be defined before it: ONNX graphs are
 * topologically sorted, so a read of a later node's output is a cycle (or
 * a graph out of order). */
static bool check_order(Imp *m) {
  Onnx__GraphProto *g = m->g;
  for (size_t k = 0; k < g->n_node; k++) {
    const Onnx__NodeProto *n = g->node[k];
    m->node = n;
    for (size_t j = 0; j < n->n_input; j++) {
      const char *in = str(n->input[j]);
      if (!*in || find(m, in))
        continue;
      for (size_t l = k; l < g->n_node; l++)
        for (size_t o = 0; o < g->node[l]->n_output; o++)
          if (!strcmp(str(g->node[l]->output[o]), in))
            return fail(m, "reads '%s' before node '%s' computes it: the graph has a cycle "
                        "or is not in topological order", shown(m, in),
                        shown(m, g->node[l]->name));
      return fail(m, "reads '%s', which is not a graph input, an initializer or the output "
                  "of a node (a missing initializer?)", shown(m, in));
    }
    for (size_t o = 0; o < n->n_output; o++) {
      const char *out = str(n->output[o]);
      Val *v = *out ? add_val(m, out) : NULL;
      if (*out && !v)
        return false;
      if (v)
        v->producer = (int)k;
    }
  }
  m->node = NULL;
  return true;
}

/* Marks the nodes the graph outputs depend on; counts their reads. */
static bool mark_live(Imp *m) {
  Onnx__GraphProto *g = m->g;
  if (g->n_output == 0)
    return fail(m, "the graph has no outputs");
  for (size_t k = 0; k < g->n_output; k++) {
    Val *v = find(m, str(g->output[k]->name));
    if (!v)
      return fail(m, "graph output '%s' is not computed by any node",
                  shown(m, str(g->output[k]->name)));
    if (v->producer < 0)
      return fail(m, "graph output '%s' is an input or an initializer, not computed by a node",
                  shown(m, v->name));
    v->output = true;
    m->live[v->producer] = true;
  }
  for (size_t k = g->n_node; k-- > 0;) {
    if (!m->live[k])
      continue;
    const Onnx__NodeProto *n = g->node[k];
    for (size_t j = 0; j < n->n_input; j++) {
      Val *v = find(m, str(n->input[j]));
      if (v && v->producer >= 0)
        m->live[v->producer] = true;
      if (v)
        v->uses++;
    }
  }
  return true;
}

/* ---- attributes and operands --------------------------------------------------- */

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name) {
  for (size_t k = 0; k < n->n_attribute; k++)
    if (!strcmp(str(n->attribute[k]->name), name))
      return n->attribute[k];
  return NULL;
}

static int64_t attr_i(const Onnx__NodeProto *n, const char *name, int64_t def) {
  const Onnx__AttributeProto *a = attr(n, name);
  return a && a->has_i ? a->i : def;
}

static double attr_f(const Onnx__NodeProto *n, const char *name, double def) {
  const Onnx__AttributeProto *a = attr(n, name);
  return a && a->has_f ? a->f : def;
}

/* An INTS attribute of `want` values (0: any), or the default `def` for
 * all of them; false after an error. */
static bool attr_ints(Imp *m, const char *name, int want, int64_t def, int64_t *out) {
  const Onnx__AttributeProto *a = attr(m->node, name);
  for (int k = 0; k < want; k++)
    out[k] = def;
  if (!a)
    return true;
  if ((int)a->n_ints != want)
    return fail(m, "attribute '%s' has %zu values, expected %d", name, a->n_ints, want);
  for (int k = 0; k < want; k++)
    out[k] = a->ints[k];
  return true;
}

/* The node's j-th input as a value; NULL if absent (empty name). */
static Val *in_val(Imp *m, int j) {
  return j < (int)m->node->n_input ? find(m, str(m->node->input[j])) : NULL;
}

/* The j-th input, which must be an activation of rank lo..hi. */
static Val *act(Imp *m, int j, int lo, int hi) {
  Val *v = in_val(m, j);
  if (!v) {
    fail(m, "input %d is missing", j + 1);
    return NULL;
  }
  if (v->is_const) {
    fail(m, "input %d ('%s') is a constant; the language takes only computed tensors here",
         j + 1, shown(m, v->name));
    return NULL;
  }
  if (v->rank < lo || v->rank > hi) {
    fail(m, "input '%s' has rank %d (with the batch); this op supports %d to %d",
         shown(m, v->name), v->rank, lo, hi);
    return NULL;
  }
  return v;
}

/* The j-th input, which must be a float32 constant of `numel` elements
 * (numel < 0: any); optional ones may be absent (NULL, no error). */
static bool weight(Imp *m, int j, long numel, bool optional, Val **out) {
  Val *v = *out = in_val(m, j);
  if (!v)
    return optional || fail(m, "input %d (a weight) is missing", j + 1);
  if (!v->is_const || !v->f)
    return fail(m, "input '%s' must be a float32 initializer or constant", shown(m, v->name));
  if (numel >= 0 && v->numel != numel)
    return fail(m, "initializer '%s' has %ld elements, expected %ld", shown(m, v->name),
                v->numel, numel);
  return true;
}

/* A scalar constant input (Clip's min, Dropout's ratio); def when absent. */
static bool scalar_in(Imp *m, int j, double def, double *out) {
  Val *v = in_val(m, j);
  *out = def;
  if (!v)
    return true;
  if (!v->is_const || !v->f || v->numel != 1)
    return fail(m, "input %d ('%s') must be a float32 constant scalar", j + 1,
                shown(m, v->name));
  *out = v->f[0];
  return true;
}

/* ---- names and text -------------------------------------------------------------- */

static bool is_layer_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '.';
}

static bool is_layer_name(const char *s, size_t n) {
  if (n == 0 || n > MAX_NAME)
    return false;
  for (size_t k = 0; k < n; k++)
    if (!is_layer_char(s[k]))
      return false;
  return true;
}

/* The layer name of the current node (see the top of the file), taken. */
static const char *layer_name(Imp *m, const Val *w, const char *prefix) {
  Arena *a = m->ctx->arena;
  const char *cand = NULL;
  size_t wl = w ? strlen(w->name) : 0;
  if (wl > 7 && !strcmp(w->name + wl - 7, ".weight") && is_layer_name(w->name, wl - 7))
    cand = arena_strndup(a, w->name, wl - 7);
  const char *nn = str(m->node->name), *last = strrchr(nn, '/');
  if (!cand && last && last > nn) {
    const char *first = last - 1;
    while (first > nn && first[-1] != '/')
      first--;
    if (is_layer_name(first, (size_t)(last - first)))
      cand = arena_strndup(a, first, (size_t)(last - first));
  }
  if (cand && !name_taken(&m->layers, cand))
    return take_name(m, &m->layers, cand);
  for (;;) {
    cand = arena_printf(a, "%s_%d", prefix, ++m->nprefix);
    if (!name_taken(&m->layers, cand))
      return take_name(m, &m->layers, cand);
  }
}

/* A .nn identifier made from s (a layer or ONNX name), unique and not a
 * reserved word; `fallback` when nothing usable is left of s.  Input and
 * output names must also differ from layer names. */
static const char *ident_of(Imp *m, const char *s, const char *fallback, bool output) {
  char buf[MAX_NAME + 1];
  int n = 0;
  for (; *s && n < 40; s++) {
    char c = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (ok)
      buf[n++] = c;
    else if (n && buf[n - 1] != '_')
      buf[n++] = '_';
  }
  while (n && buf[n - 1] == '_')
    n--;
  buf[n] = '\0';
  bool bad = n == 0 || !(buf[0] >= 'a' && buf[0] <= 'z') || is_avoided(buf);
  const char *base = bad ? fallback : buf;
  const char *cand = base;
  for (int k = 2; name_taken(&m->idents, cand) || (output && name_taken(&m->layers, cand));
       k++)
    cand = arena_printf(m->ctx->arena, "%s%s%d", base,
                        base[strlen(base) - 1] <= '9' ? "_" : "", k);   /* h3_2, not h32 */
  return take_name(m, &m->idents, cand);
}

static const char *ident(Imp *m, const char *s, const char *fallback) {
  return ident_of(m, s, fallback, false);
}

/* The name of a graph input or output: its default name `def` (recorded,
 * so that `import` can check the names it is asked to rename) or the
 * import's new name for it. */
static const char *io_name(Imp *m, Names *set, const char *def) {
  vec_push(m->ctx->arena, *set, def);
  for (int k = 0; m->imp && k < m->imp->nrename; k++)
    if (!strcmp(m->imp->rename_from[k], def))
      return m->imp->rename_to[k];
  return def;
}

/* Whether `import (freeze=...)` freezes the layer: all of them, or the one
 * named by the prefix and those under it ("features" takes "features.0"). */
static bool frozen(const Imp *m, const char *layer) {
  const char *f = m->imp ? m->imp->freeze : NULL;
  size_t n = f ? strlen(f) : 0;
  return f && (!n || (!strncmp(layer, f, n) && (!layer[n] || layer[n] == '.')));
}

/* The end of a layer's call: its name, freeze=true if the import freezes it. */
static void end_layer(Imp *m, const char *layer) {
  buf_printf(&m->nn, ", name=\"%s\"%s)\n", layer, frozen(m, layer) ? ", freeze=true" : "");
}

/* The shortest decimal that reads back as the same float. */
static const char *num(Imp *m, double x) {
  for (int prec = 6; prec < 17; prec++) {
    const char *s = arena_printf(m->ctx->arena, "%.*g", prec, x);
    if ((float)strtod(s, NULL) == (float)x)
      return s;
  }
  return arena_printf(m->ctx->arena, "%.17g", x);
}

/* Adds the weight "<layer>.<suffix>" of the given shape, data copied from
 * `data` (or zeros when data is NULL). */
static void add_weight(Imp *m, const char *layer, const char *suffix, Shape s,
                       const float *data) {
  long n = shape_numel(&s);
  float *copy = arena_alloc(m->ctx->arena, (size_t)n * sizeof *copy);
  if (data)
    memcpy(copy, data, (size_t)n * sizeof *copy);
  OnnxWeight w = {arena_printf(m->ctx->arena, "%s.%s", layer, suffix), s, copy};
  vec_push(m->ctx->arena, m->weights, w);
}

/* The node's output 0 as a new activation of the given shape, bound to a
 * fresh .nn name; writes "name = " or "output name = " into the text. */
static Val *result(Imp *m, const char *layer, int rank, const int64_t *dim) {
  Val *v = find(m, str(m->node->output[0]));
  v->rank = rank;
  v->numel = 1;
  for (int d = 0; d < rank; d++) {
    v->dim[d] = dim[d];
    v->numel *= d ? dim[d] : 1;
  }
  Arena *a = m->ctx->arena;
  if (layer)   /* nn.Sequential's layer "0" is bound to layer0 */
    v->var = ident(m, *layer <= '9' ? arena_printf(a, "layer%s", layer) : layer, "h");
  else
    v->var = ident(m, arena_printf(a, "h%d", ++m->nvars), "h");
  buf_printf(&m->nn, "%s = ", v->var);
  return v;
}

/* dst becomes the tensor src is (same binding or constant), keeping its
 * own name and reads. */
static void rebind(Val *dst, const Val *src) {
  const char *name = dst->name;
  bool output = dst->output;
  int uses = dst->uses;
  *dst = *src;
  dst->name = name, dst->output = output, dst->uses = uses;
}

/* Output 0 is input `from` under another name (Identity, Reshape to the
 * same shape). */
static bool alias(Imp *m, const Val *from) {
  rebind(find(m, str(m->node->output[0])), from);
  return true;
}

static const char *shape_text(Imp *m, const Val *v) {
  Buf b = {0};
  buf_puts(&b, "[");
  for (int d = 1; d < v->rank; d++)
    buf_printf(&b, "%s%lld", d > 1 ? ", " : "", (long long)v->dim[d]);
  buf_puts(&b, "]");
  const char *s = arena_strdup(m->ctx->arena, b.data);
  buf_free(&b);
  return s;
}

/* ---- the ops ------------------------------------------------------------------- */

/* The window of a Conv or pool node, as conv2d and the pools take it:
 * kernel, strides, dilations, pads per side (ONNX's [top, left, bottom,
 * right] order becomes the language's (top, bottom, left, right)), and
 * auto_pad: SAME_UPPER is TensorFlow's 'same' (padding=same), SAME_LOWER
 * puts the larger half before (explicit pads). */
typedef struct Win {
  int64_t k[2], s[2], d[2];
  int64_t pad[4];         /* top, bottom, left, right */
  bool same;              /* SAME_UPPER: written padding=same */
  int64_t out[2];         /* the output plane */
} Win;

static bool auto_pad_is(const Onnx__AttributeProto *ap, const char *s) {
  return ap->s.len == strlen(s) && !memcmp(ap->s.data, s, ap->s.len);
}

/* ONNX's SAME_*: out = ceil(in / s) and the total pad to get there. */
static void same_pads(int64_t in, int64_t k, int64_t s, int64_t d, bool upper, int64_t *before,
                      int64_t *after) {
  int64_t out = (in + s - 1) / s, total = (out - 1) * s + (k - 1) * d + 1 - in;
  if (total < 0)
    total = 0;
  *before = upper ? total / 2 : total - total / 2;
  *after = total - *before;
}

/* k is the kernel from the weight (conv) or kernel_shape (pools); `pool`:
 * no dilation, and every pad at most half its kernel. */
static bool window(Imp *m, const Val *x, int64_t kh, int64_t kw, bool pool, Win *w) {
  int64_t ks[2], pads[4];
  const Onnx__AttributeProto *ap = attr(m->node, "auto_pad");
  bool upper = ap && ap->has_s && auto_pad_is(ap, "SAME_UPPER");
  bool lower = ap && ap->has_s && auto_pad_is(ap, "SAME_LOWER");
  if (ap && ap->has_s && !upper && !lower && !auto_pad_is(ap, "NOTSET") &&
      !auto_pad_is(ap, "VALID"))
    return fail(m, "auto_pad '%s' is not NOTSET, VALID, SAME_UPPER or SAME_LOWER",
                shown(m, arena_strndup(m->ctx->arena, (const char *)ap->s.data, ap->s.len)));
  if (!attr_ints(m, "kernel_shape", 2, kh, ks) || !attr_ints(m, "strides", 2, 1, w->s) ||
      !attr_ints(m, "pads", 4, 0, pads) || !attr_ints(m, "dilations", 2, 1, w->d))
    return false;
  if (ks[0] != kh || ks[1] != kw)
    return fail(m, "kernel_shape [%lld, %lld] does not match the weight's [%lld, %lld]",
                (long long)ks[0], (long long)ks[1], (long long)kh, (long long)kw);
  w->k[0] = kh, w->k[1] = kw;
  for (int a = 0; a < 2; a++)
    if (w->k[a] < 1 || w->k[a] > 65536 || w->s[a] < 1 || w->s[a] > 65536 || w->d[a] < 1 ||
        w->d[a] > 65536 || pads[a] < 0 || pads[a] > 65536 || pads[a + 2] < 0 ||
        pads[a + 2] > 65536)
      return fail(m, "kernel [%lld, %lld], strides [%lld, %lld], dilations [%lld, %lld] or "
                  "pads [%lld, %lld, %lld, %lld] out of range", (long long)kh, (long long)kw,
                  (long long)w->s[0], (long long)w->s[1], (long long)w->d[0],
                  (long long)w->d[1], (long long)pads[0], (long long)pads[1],
                  (long long)pads[2], (long long)pads[3]);
  if (pool && (w->d[0] != 1 || w->d[1] != 1))
    return fail(m, "dilations [%lld, %lld]: pools take no dilation", (long long)w->d[0],
                (long long)w->d[1]);
  if ((upper || lower) && (pads[0] || pads[1] || pads[2] || pads[3]))
    return fail(m, "auto_pad %s with pads: give one or the other", upper ? "SAME_UPPER"
                                                                        : "SAME_LOWER");
  w->same = upper;
  w->pad[0] = pads[0], w->pad[1] = pads[2], w->pad[2] = pads[1], w->pad[3] = pads[3];
  for (int a = 0; a < 2 && (upper || lower); a++)
    same_pads(x->dim[2 + a], w->k[a], w->s[a], w->d[a], upper, &w->pad[2 * a],
              &w->pad[2 * a + 1]);
  for (int a = 0; a < 2; a++) {
    int64_t padded = x->dim[2 + a] + w->pad[2 * a] + w->pad[2 * a + 1];
    int64_t reach = (w->k[a] - 1) * w->d[a] + 1;
    if (reach > padded)
      return fail(m, "kernel [%lld, %lld] (dilations [%lld, %lld]) is larger than the padded "
                  "input", (long long)kh, (long long)kw, (long long)w->d[0],
                  (long long)w->d[1]);
    if (pool && (2 * w->pad[2 * a] > w->k[a] || 2 * w->pad[2 * a + 1] > w->k[a]))
      return fail(m, "pads [%lld, %lld, %lld, %lld]: a pool's pad may be at most half its "
                  "kernel", (long long)pads[0], (long long)pads[1], (long long)pads[2],
                  (long long)pads[3]);
    w->out[a] = (padded - reach) / w->s[a] + 1;
  }
  return true;
}

/* `key=v` or `key=(a, b)` for a pair, nothing when both are `skip`. */
static void pair_arg(Imp *m, const char *key, const int64_t *v, int64_t skip) {
  if (v[0] == skip && v[1] == skip)
    return;
  if (v[0] == v[1])
    buf_printf(&m->nn, ", %s=%lld", key, (long long)v[0]);
  else
    buf_printf(&m->nn, ", %s=(%lld, %lld)", key, (long long)v[0], (long long)v[1]);
}

/* The window's arguments after the kernel, in the shortest form that says it. */
static void window_args(Imp *m, const Win *w, bool pool) {
  pair_arg(m, "stride", w->s, pool ? -1 : 1);   /* a pool's default stride is its kernel */
  pair_arg(m, "dilation", w->d, 1);
  const int64_t *p = w->pad;
  if (w->same)
    buf_puts(&m->nn, ", padding=same");
  else if (p[0] == p[1] && p[2] == p[3])
    pair_arg(m, "pad", (int64_t[]){p[0], p[2]}, 0);
  else
    buf_printf(&m->nn, ", pad=(%lld, %lld, %lld, %lld)", (long long)p[0], (long long)p[1],
               (long long)p[2], (long long)p[3]);
}

static const char *kernel_arg(Imp *m, const Win *w) {
  if (w->k[0] == w->k[1])
    return arena_printf(m->ctx->arena, "%lld", (long long)w->k[0]);
  return arena_printf(m->ctx->arena, "(%lld, %lld)", (long long)w->k[0], (long long)w->k[1]);
}

static bool im_conv(Imp *m) {
  Val *x = act(m, 0, 4, 4), *w, *b;
  if (!x || !weight(m, 1, -1, false, &w))
    return false;
  if (w->rank != 4)
    return fail(m, "weight '%s' must be (O, C/groups, kH, kW); only 2-D convolutions are "
                "supported", shown(m, w->name));
  int64_t groups = attr_i(m->node, "group", 1), o = w->dim[0];
  if (groups < 1 || groups > x->dim[1] || x->dim[1] % groups || o % groups ||
      w->dim[1] * groups != x->dim[1])
    return fail(m, "weight '%s' is %s for an input of %lld channels in %lld groups",
                shown(m, w->name), shape_text(m, &(Val){.rank = 5, .dim = {0, w->dim[0],
                w->dim[1], w->dim[2], w->dim[3]}}), (long long)x->dim[1], (long long)groups);
  if (!weight(m, 2, o, true, &b))
    return false;
  Win win;
  if (!window(m, x, w->dim[2], w->dim[3], false, &win))
    return false;
  const char *layer = layer_name(m, w, "conv");
  int64_t d[4] = {1, o, win.out[0], win.out[1]};
  const char *xv = x->var;
  result(m, layer, 4, d);
  buf_printf(&m->nn, "conv2d(%s, %lld, kernel=%s", xv, (long long)o, kernel_arg(m, &win));
  window_args(m, &win, false);
  if (!b)
    buf_puts(&m->nn, ", bias=false");
  if (groups != 1)
    buf_printf(&m->nn, ", groups=%lld", (long long)groups);
  end_layer(m, layer);
  add_weight(m, layer, "weight", shape_of(4, (int)o, (int)w->dim[1], (int)win.k[0],
                                          (int)win.k[1]), w->f);
  if (b)
    add_weight(m, layer, "bias", shape_of(1, (int)o), b->f);
  return true;
}

static bool im_batchnorm(Imp *m) {
  Val *x = act(m, 0, 2, MAX_DIMS), *w[4];
  if (!x)
    return false;
  int c = (int)x->dim[1];
  for (int j = 0; j < 4; j++)
    if (!weight(m, j + 1, c, false, &w[j]))
      return false;
  /* ONNX keeps 1 - PyTorch's momentum, as a float: 0.9f gives 0.100000024 */
  double eps = attr_f(m->node, "epsilon", 1e-5), mom = 1 - attr_f(m->node, "momentum", 0.9);
  if (!(eps > 0) || !(mom >= 0 && mom <= 1))
    return fail(m, "epsilon %g or momentum %g out of range", eps, 1 - mom);
  for (long k = 0; k < c; k++)
    if (w[3]->f[k] < 0)
      return fail(m, "running variance '%s' is negative", shown(m, w[3]->name));
  const char *layer = layer_name(m, w[0], "bn");
  const char *xv = x->var;
  result(m, layer, x->rank, x->dim);
  buf_printf(&m->nn, "batchnorm(%s, momentum=%.6g, eps=%s", xv, mom, num(m, eps));
  end_layer(m, layer);
  static const char *const suffix[] = {"weight", "bias", "running_mean", "running_var"};
  for (int j = 0; j < 4; j++)
    add_weight(m, layer, suffix[j], shape_of(1, c), w[j]->f);
  return true;
}

/* Ops that keep the shape: `op(x)` or `op(x, args)`. */
static bool same_shape(Imp *m, const char *op, const char *args) {
  Val *x = act(m, 0, 2, MAX_DIMS);
  if (!x)
    return false;
  const char *xv = x->var;
  result(m, NULL, x->rank, x->dim);
  buf_printf(&m->nn, "%s(%s%s%s)\n", op, xv, args ? ", " : "", args ? args : "");
  return true;
}

static bool im_relu(Imp *m) { return same_shape(m, "relu", NULL); }
static bool im_sigmoid(Imp *m) { return same_shape(m, "sigmoid", NULL); }
static bool im_tanh(Imp *m) { return same_shape(m, "tanh", NULL); }
static bool im_softplus(Imp *m) { return same_shape(m, "softplus", NULL); }

static bool alpha_op(Imp *m, const char *op, double def) {
  double alpha = attr_f(m->node, "alpha", def);
  if (!(alpha >= 0))
    return fail(m, "alpha %g: only alpha >= 0 is supported", alpha);
  return same_shape(m, op, arena_printf(m->ctx->arena, "alpha=%s", num(m, alpha)));
}

static bool im_leaky_relu(Imp *m) { return alpha_op(m, "leaky_relu", 0.01); }
static bool im_elu(Imp *m) { return alpha_op(m, "elu", 1.0); }

static bool im_prelu(Imp *m) {
  Val *x = act(m, 0, 2, MAX_DIMS), *w;
  if (!x || !weight(m, 1, -1, false, &w))
    return false;
  int c = (int)x->dim[1];
  bool shared = w->numel == 1 && c > 1;   /* nn.PReLU(): one slope, (1) or (1, 1, 1) */
  if (w->numel != c && !shared)
    return fail(m, "slope '%s' has %ld values for %d channels: one per channel or one for "
                "all is supported", shown(m, w->name), w->numel, c);
  for (int d = 0; d < w->rank; d++)   /* (C), (C, 1, 1), (1, C, 1, 1): channel-wise */
    if (w->dim[d] != 1 && w->dim[d] != c)
      return fail(m, "slope '%s' is not one value per channel", shown(m, w->name));
  const char *layer = layer_name(m, w, "prelu");
  const char *xv = x->var;
  result(m, layer, x->rank, x->dim);
  buf_printf(&m->nn, "prelu(%s%s", xv, shared ? ", shared=true" : "");
  end_layer(m, layer);
  add_weight(m, layer, "weight", shape_of(1, shared ? 1 : c), w->f);
  return true;
}

static bool im_clip(Imp *m) {
  double lo, hi;
  if (m->opset < 11) {
    lo = attr_f(m->node, "min", -INFINITY);
    hi = attr_f(m->node, "max", INFINITY);
  } else if (!scalar_in(m, 1, -INFINITY, &lo) || !scalar_in(m, 2, INFINITY, &hi)) {
    return false;
  }
  if (lo == 0 && hi == INFINITY)
    return same_shape(m, "relu", NULL);
  if (!isfinite(lo) || !isfinite(hi) || !(lo < hi))
    return fail(m, "bounds [%g, %g]: both must be given and min < max", lo, hi);
  return same_shape(m, "clip", arena_printf(m->ctx->arena, "min=%s, max=%s", num(m, lo),
                                            num(m, hi)));
}

static bool pool(Imp *m, const char *op) {
  Val *x = act(m, 0, 4, 4);
  if (!x)
    return false;
  int64_t ks[2];
  if (!attr_ints(m, "kernel_shape", 2, 0, ks))
    return false;
  if (attr_i(m->node, "ceil_mode", 0) || attr_i(m->node, "storage_order", 0))
    return fail(m, "ceil_mode=1 and storage_order=1 are not supported");
  Win win;
  if (!window(m, x, ks[0], ks[1], true, &win))
    return false;
  bool padded = win.pad[0] || win.pad[1] || win.pad[2] || win.pad[3];
  if (padded && !strcmp(op, "avgpool") && attr_i(m->node, "count_include_pad", 0))
    return fail(m, "count_include_pad=1 with padding is not supported: avgpool averages over "
                "the real cells only (PyTorch's count_include_pad=False)");
  int64_t d[4] = {1, x->dim[1], win.out[0], win.out[1]};
  const char *xv = x->var;
  result(m, NULL, 4, d);
  buf_printf(&m->nn, "%s(%s, %s", op, xv, kernel_arg(m, &win));
  window_args(m, &win, true);
  buf_puts(&m->nn, ")\n");
  return true;
}

static bool im_maxpool(Imp *m) { return pool(m, "maxpool"); }

static bool im_avgpool(Imp *m) { return pool(m, "avgpool"); }

static bool im_gap(Imp *m) {
  Val *x = act(m, 0, 4, 4);
  if (!x)
    return false;
  int64_t d[4] = {1, x->dim[1], 1, 1};
  const char *xv = x->var;
  result(m, NULL, 4, d);
  buf_printf(&m->nn, "global_avgpool(%s)\n", xv);
  return true;
}

/* dense(x, units): w is (units, K) in PyTorch's layout, or (K, units) when
 * `transposed`; b holds `units` values or is NULL. */
static bool dense(Imp *m, Val *x, const Val *w, bool transposed, double alpha, const Val *b,
                  double beta) {
  int64_t units = transposed ? w->dim[1] : w->dim[0], k = transposed ? w->dim[0] : w->dim[1];
  if (w->rank != 2 || k != x->numel)
    return fail(m, "input '%s' has %ld features per sample but the weight '%s' is %s",
                shown(m, x->name), x->numel, shown(m, w->name),
                shape_text(m, &(Val){.rank = 3, .dim = {0, w->dim[0], w->dim[1]}}));
  if (b && b->numel != units && b->numel != 1)
    return fail(m, "bias '%s' has %ld values for %lld units", shown(m, b->name), b->numel,
                (long long)units);
  const char *layer = layer_name(m, w, "fc");
  const char *xv = x->var;
  int64_t d[2] = {1, units};
  result(m, layer, 2, d);
  buf_printf(&m->nn, "dense(%s, %lld%s", xv, (long long)units, b ? "" : ", bias=false");
  end_layer(m, layer);
  float *wt = arena_alloc(m->ctx->arena, (size_t)(units * k) * sizeof *wt);
  for (int64_t u = 0; u < units; u++)
    for (int64_t i = 0; i < k; i++)
      wt[u * k + i] = (float)(alpha * (transposed ? w->f[i * units + u] : w->f[u * k + i]));
  add_weight(m, layer, "weight", shape_of(2, (int)units, (int)k), wt);
  if (b) {
    float *bt = arena_alloc(m->ctx->arena, (size_t)units * sizeof *bt);
    for (int64_t u = 0; u < units; u++)
      bt[u] = (float)(beta * b->f[b->numel == 1 ? 0 : u]);
    add_weight(m, layer, "bias", shape_of(1, (int)units), bt);
  }
  return true;
}

static bool im_gemm(Imp *m) {
  Val *x = act(m, 0, 2, 2), *w, *b;
  if (!x || !weight(m, 1, -1, false, &w) || !weight(m, 2, -1, true, &b))
    return false;
  if (attr_i(m->node, "transA", 0))
    return fail(m, "transA=1 is not supported");
  if (w->rank != 2)
    return fail(m, "weight '%s' must be a matrix", shown(m, w->name));
  return dense(m, x, w, !attr_i(m->node, "transB", 0), attr_f(m->node, "alpha", 1.0), b,
               attr_f(m->node, "beta", 1.0));
}

/* MatMul(x, W) whose only reader is Add(., b) with a constant b is one
 * dense layer; the Add is then done. */
static bool im_matmul(Imp *m) {
  Val *x = act(m, 0, 2, 2), *w;
  if (!x || !weight(m, 1, -1, false, &w))
    return false;
  if (w->rank != 2)
    return fail(m, "weight '%s' must be a matrix (only x @ W with x of shape (N, K))",
                shown(m, w->name));
  Val *y = find(m, str(m->node->output[0]));
  const Onnx__NodeProto *add = NULL;
  size_t add_at = 0;
  for (size_t k = 0; y->uses == 1 && !y->output && k < m->g->n_node && !add; k++) {
    const Onnx__NodeProto *n = m->g->node[k];
    if (m->live[k] && !strcmp(str(n->op_type), "Add") && n->n_input == 2 && !m->done[k])
      for (int j = 0; j < 2; j++) {
        Val *o = find(m, str(n->input[1 - j]));
        if (!strcmp(str(n->input[j]), y->name) && o && o->is_const && o->f)
          add = n, add_at = k;
      }
  }
  Val *b = add ? find(m, str(add->input[!strcmp(str(add->input[0]), y->name)])) : NULL;
  if (!dense(m, x, w, true, 1.0, b, 1.0))
    return false;
  if (add) {   /* the Add's output is the dense layer's */
    m->done[add_at] = true;
    Val *sum = find(m, str(add->output[0]));
    if (sum)
      rebind(sum, find(m, str(m->node->output[0])));
  }
  return true;
}

static bool im_flatten(Imp *m) {
  Val *x = act(m, 0, 2, MAX_DIMS);
  if (!x)
    return false;
  int64_t axis = attr_i(m->node, "axis", 1);
  if (axis != 1 && axis != 1 - x->rank)
    return fail(m, "axis %lld: only axis=1 (keep the batch, flatten the rest) is supported",
                (long long)axis);
  int64_t d[2] = {1, x->numel};
  const char *xv = x->var;
  result(m, NULL, 2, d);
  buf_printf(&m->nn, "flatten(%s)\n", xv);
  return true;
}

/* Reshape to a constant shape: (N, -1) or (N, numel) is flatten, the
 * input's own shape is the identity; anything else needs a reshape op. */
/* Reshape to a constant shape (ONNX's allowzero 0: a 0 copies the input's
 * dimension): the identity is an alias, (N, -1) a flatten, anything else
 * reshape(x, shape=[...]) with the per-sample part of the shape.  Its first
 * entry must be the batch: 0, -1, the folded batch or 1 (a batch-1 export). */
static bool im_reshape(Imp *m) {
  Val *x = act(m, 0, 2, MAX_DIMS), *s = in_val(m, 1);
  if (!x)
    return false;
  if (!s || !s->is_const || !s->i || s->rank != 1)
    return fail(m, "the target shape must be a constant int64 vector");
  bool batch = s->numel >= 2 && (s->i[0] == -1 || s->i[0] == 0 || s->i[0] == 1 ||
                                 s->i[0] == BATCH_DIM);
  bool flat = batch && s->numel == 2 && (s->i[1] == -1 || s->i[1] == x->numel);
  bool same = s->numel == x->rank;
  for (int d = 1; same && d < x->rank; d++)
    same = s->i[d] == x->dim[d] || s->i[d] == 0;
  if (same)
    return alias(m, x);
  int64_t d[MAX_DIMS] = {1};
  int infer = s->i[0] == -1 ? 0 : -1;
  long known = 1;
  bool ok = batch && s->numel <= MAX_DIMS;
  for (long k = 1; ok && k < s->numel; k++) {
    int64_t v = s->i[k] == 0 && k < x->rank ? x->dim[k] : s->i[k];
    if (v == -1 && infer <= 0)
      infer = (int)k;   /* a -1 here makes the batch's -1 ambiguous: refused below */
    else
      ok = v >= 1 && v <= INT32_MAX && !__builtin_mul_overflow(known, (long)v, &known);
    d[k] = v;
  }
  ok = ok && (infer > 0 ? s->i[0] != -1 && x->numel % known == 0 : known == x->numel);
  if (!ok) {
    Buf b = {0};
    for (long k = 0; k < s->numel && k < 8; k++)
      buf_printf(&b, "%s%lld", k ? ", " : "", (long long)s->i[k]);
    fail(m, "reshape of %s to [%s]: the first dimension must be the batch (0, -1 or the "
         "batch), the rest at most %d positive sizes (0 copies one, one -1 is inferred) "
         "holding the same %ld elements per sample", shape_text(m, x), b.data ? b.data : "",
         MAX_RANK, x->numel);
    buf_free(&b);
    return false;
  }
  const char *xv = x->var;
  if (flat) {
    int64_t f[2] = {1, x->numel};
    result(m, NULL, 2, f);
    buf_printf(&m->nn, "flatten(%s)\n", xv);
    return true;
  }
  if (infer > 0)
    d[infer] = x->numel / known;
  result(m, NULL, (int)s->numel, d);
  buf_printf(&m->nn, "reshape(%s, shape=[", xv);
  for (long k = 1; k < s->numel; k++)
    buf_printf(&m->nn, "%s%lld", k > 1 ? ", " : "", (long long)d[k]);
  buf_puts(&m->nn, "])\n");
  return true;
}

static bool same_dims(const Val *a, const Val *b, int skip) {
  if (a->rank != b->rank)
    return false;
  for (int d = 1; d < a->rank; d++)
    if (d != skip && a->dim[d] != b->dim[d])
      return false;
  return true;
}

static bool im_add(Imp *m) {
  Val *a = act(m, 0, 2, MAX_DIMS), *b = a ? act(m, 1, 2, MAX_DIMS) : NULL;
  if (!b)
    return false;
  if (!same_dims(a, b, 0))
    return fail(m, "operands of shapes %s and %s: only tensors of the same shape can be "
                "added (no broadcasting)", shape_text(m, a), shape_text(m, b));
  const char *av = a->var, *bv = b->var;
  result(m, NULL, a->rank, a->dim);
  buf_printf(&m->nn, "%s + %s\n", av, bv);
  return true;
}

static bool im_concat(Imp *m) {
  int n = (int)m->node->n_input;
  if (n < 1 || n > MAX_IN)
    return fail(m, "%d inputs: 1 to %d are supported", n, MAX_IN);
  Val *x[MAX_IN] = {0};
  int64_t d[MAX_DIMS], c = 0;
  for (int j = 0; j < n; j++) {
    if (!(x[j] = act(m, j, 2, MAX_DIMS)))
      return false;
    int64_t axis = attr_i(m->node, "axis", 1);
    if (axis != 1 && axis != 1 - x[j]->rank)
      return fail(m, "axis %lld: only axis=1 (channels) is supported", (long long)axis);
    if (!same_dims(x[0], x[j], 1))
      return fail(m, "operand %d has shape %s, operand 1 has %s (all dims but the channels "
                  "must match)", j + 1, shape_text(m, x[j]), shape_text(m, x[0]));
    c += x[j]->dim[1];
  }
  if (n == 1)
    return alias(m, x[0]);
  for (int k = 0; k < x[0]->rank; k++)
    d[k] = k == 1 ? c : x[0]->dim[k];
  const char *vars[MAX_IN];
  for (int j = 0; j < n; j++)
    vars[j] = x[j]->var;
  result(m, NULL, x[0]->rank, d);
  buf_puts(&m->nn, "concat(");
  for (int j = 0; j < n; j++)
    buf_printf(&m->nn, "%s%s", j ? ", " : "", vars[j]);
  buf_puts(&m->nn, ")\n");
  return true;
}

static bool im_dropout(Imp *m) {
  double p;
  if (!scalar_in(m, 1, m->opset < 12 ? attr_f(m->node, "ratio", 0.5) : 0.5, &p))
    return false;
  if (!(p >= 0 && p < 1))
    return fail(m, "ratio %g: must be in [0, 1)", p);
  return same_shape(m, "dropout", arena_printf(m->ctx->arena, "p=%s", num(m, p)));
}

static bool im_softmax(Imp *m) {
  Val *x = act(m, 0, 2, MAX_DIMS);
  if (!x)
    return false;
  int64_t axis = attr_i(m->node, "axis", m->opset < 13 ? 1 : -1);
  if (axis != 1 && axis != 1 - x->rank)
    return fail(m, "axis %lld on an input of rank %d: only the channel axis (1) is supported",
                (long long)axis, x->rank);
  if (m->opset < 13 && x->rank > 2)
    return fail(m, "before opset 13 Softmax flattens its input; only rank 2 is supported");
  return same_shape(m, "softmax", NULL);
}

static bool im_layernorm(Imp *m) {
  Val *x = act(m, 0, 2, MAX_DIMS), *w, *b;
  if (!x || !weight(m, 1, x->numel, false, &w) || !weight(m, 2, x->numel, true, &b))
    return false;
  int64_t axis = attr_i(m->node, "axis", -1);
  if (axis != 1 && axis != 1 - x->rank)
    return fail(m, "axis %lld on an input of rank %d: only normalizing over all of a "
                "sample (axis=1) is supported", (long long)axis, x->rank);
  double eps = attr_f(m->node, "epsilon", 1e-5);
  if (!(eps > 0))
    return fail(m, "epsilon %g: must be positive", eps);
  const char *layer = layer_name(m, w, "ln");
  const char *xv = x->var;
  result(m, layer, x->rank, x->dim);
  buf_printf(&m->nn, "layernorm(%s, eps=%s", xv, num(m, eps));
  end_layer(m, layer);
  Shape s = {x->rank - 1, {0}};
  for (int d = 1; d < x->rank; d++)
    s.dim[d - 1] = (int)x->dim[d];
  add_weight(m, layer, "weight", s, w->f);
  add_weight(m, layer, "bias", s, b ? b->f : NULL);
  return true;
}

static bool im_identity(Imp *m) {
  Val *x = in_val(m, 0);
  if (!x)
    return fail(m, "input 1 is missing");
  return alias(m, x);
}

/* Constant nodes hold a tensor in attribute `value`. */
static bool im_constant(Imp *m) {
  const Onnx__AttributeProto *a = attr(m->node, "value");
  if (!a || !a->t)
    return fail(m, "only the 'value' attribute (a tensor) is supported");
  Val *v = find(m, str(m->node->output[0]));
  return load_const(m, a->t, v);
}

/* ---- shape arithmetic: Shape, Gather, Unsqueeze, Concat on int64 constants ----
 * torch writes x.reshape(x.shape[0], -1) as such a chain; it is folded here
 * into the constant that Reshape reads.  The batch, unknown until run time,
 * is BATCH_DIM. */

static bool is_ints(const Val *v) { return v && v->is_const && v->i; }

static Val *int_result(Imp *m, long numel) {
  Val *v = find(m, str(m->node->output[0]));
  v->is_const = true;
  v->type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
  v->rank = 1;
  v->dim[0] = v->numel = numel;
  v->i = arena_alloc(m->ctx->arena, (size_t)(numel ? numel : 1) * sizeof *v->i);
  return v;
}

static bool fold_shape(Imp *m) {
  Val *x = in_val(m, 0);
  if (!x)
    return fail(m, "input 1 is missing");
  if (attr(m->node, "start") || attr(m->node, "end"))
    return fail(m, "the start and end attributes are not supported");
  int64_t *d = (int64_t *)int_result(m, x->rank)->i;
  for (int k = 0; k < x->rank; k++)
    d[k] = k == 0 && !x->is_const ? BATCH_DIM : x->dim[k];
  return true;
}

static bool fold_gather(Imp *m) {
  Val *x = in_val(m, 0), *idx = in_val(m, 1);
  if (!is_ints(x) || !is_ints(idx) || x->rank != 1 || idx->rank > 1 ||
      attr_i(m->node, "axis", 0) != 0)
    return fail(m, "only Gather of int64 constants along axis 0 (shape arithmetic) is "
                "supported");
  Val *v = int_result(m, idx->numel);
  v->rank = idx->rank;
  for (long k = 0; k < idx->numel; k++) {
    int64_t j = idx->i[k] < 0 ? idx->i[k] + x->numel : idx->i[k];
    if (j < 0 || j >= x->numel)
      return fail(m, "index %lld is out of range", (long long)idx->i[k]);
    ((int64_t *)v->i)[k] = x->i[j];
  }
  return true;
}

static bool fold_unsqueeze(Imp *m) {
  Val *x = in_val(m, 0);
  if (!is_ints(x) || x->rank > 0)
    return fail(m, "only Unsqueeze of an int64 scalar (shape arithmetic) is supported");
  ((int64_t *)int_result(m, 1)->i)[0] = x->i[0];
  return true;
}

static bool fold_concat(Imp *m) {
  long n = 0;
  for (size_t j = 0; j < m->node->n_input; j++) {
    Val *x = in_val(m, (int)j);
    if (!is_ints(x) || x->rank != 1)
      return fail(m, "input %zu: only int64 vectors can be concatenated along axis 0", j + 1);
    n += x->numel;
  }
  int64_t *d = (int64_t *)int_result(m, n)->i;
  for (size_t j = 0; j < m->node->n_input; j++) {
    const Val *x = in_val(m, (int)j);
    for (long k = 0; k < x->numel; k++)
      *d++ = x->i[k];
  }
  return true;
}

/* Concat of activations along the channels, or of int64 constants. */
static bool im_concat_any(Imp *m) {
  Val *x = in_val(m, 0);
  return is_ints(x) ? fold_concat(m) : im_concat(m);
}

/* Pad by zero on every side is the identity (torch writes one before some
 * pools); real padding belongs in the conv's or pool's pads. */
static bool im_pad(Imp *m) {
  Val *x = act(m, 0, 2, MAX_DIMS), *p = in_val(m, 1);
  if (!x)
    return false;
  const Onnx__AttributeProto *pa = attr(m->node, "pads");
  for (long k = 0; is_ints(p) && k < p->numel; k++)
    if (p->i[k])
      p = NULL;
  for (size_t k = 0; pa && k < pa->n_ints; k++)
    if (pa->ints[k])
      pa = NULL;
  if (!(m->opset < 11 ? pa != NULL : is_ints(p)))
    return fail(m, "only a Pad by zero is supported (padding belongs in Conv's or the pool's "
                "pads)");
  return alias(m, x);
}

typedef struct Importer {
  const char *op;
  bool (*run)(Imp *m);
} Importer;

static const Importer importers[] = {
    {"Conv", im_conv}, {"BatchNormalization", im_batchnorm}, {"Relu", im_relu},
    {"LeakyRelu", im_leaky_relu}, {"PRelu", im_prelu}, {"Elu", im_elu},
    {"Sigmoid", im_sigmoid}, {"Tanh", im_tanh}, {"Softplus", im_softplus}, {"Clip", im_clip},
    {"MaxPool", im_maxpool}, {"AveragePool", im_avgpool}, {"GlobalAveragePool", im_gap},
    {"Gemm", im_gemm}, {"MatMul", im_matmul}, {"Flatten", im_flatten},
    {"Reshape", im_reshape}, {"Add", im_add}, {"Concat", im_concat_any}, {"Dropout", im_dropout},
    {"Softmax", im_softmax}, {"LayerNormalization", im_layernorm},
    {"Identity", im_identity}, {"Constant", im_constant}, {"Pad", im_pad},
    {"Shape", fold_shape}, {"Gather", fold_gather}, {"Unsqueeze", fold_unsqueeze},
};

static bool translate_node(Imp *m, size_t k) {
  const Onnx__NodeProto *n = m->node = m->g->node[k];
  const char *dom = str(n->domain);
  for (size_t j = 0; *dom == '\0' && j < sizeof importers / sizeof *importers; j++)
    if (!strcmp(importers[j].op, str(n->op_type))) {
      if (n->n_output < 1 || !find(m, str(n->output[0])))
        return fail(m, "the node has no output");
      for (size_t o = 1; o < n->n_output; o++) {   /* masks, indices, batch statistics */
        Val *extra = find(m, str(n->output[o]));
        if (extra && extra->uses)
          return fail(m, "output %zu ('%s') is read, which is not supported", o + 1,
                      shown(m, extra->name));
      }
      return importers[j].run(m);
    }
  Buf b = {0};
  for (size_t j = 0; j < sizeof importers / sizeof *importers; j++)
    buf_printf(&b, "%s%s", j ? ", " : "", importers[j].op);
  fail(m, "unsupported op%s%s; supported: %s", *dom ? " in domain " : "",
       *dom ? shown(m, dom) : "", b.data);
  buf_free(&b);
  return false;
}

/* ---- the whole model ------------------------------------------------------------- */

static Onnx__ModelProto *read_model(Imp *m) {
  /* O_NONBLOCK: a FIFO named by an import must not hang the open */
  int fd = open(m->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
  if (!f && fd >= 0)
    close(fd);
  if (!f) {
    error_plain(m->ctx, "cannot open '%s': %s", m->path, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE) {
    fclose(f);
    fail(m, "not a regular file of at most 1 GiB");
    return NULL;
  }
  size_t len = (size_t)st.st_size;
  uint8_t *data = malloc(len ? len : 1);
  bool ok = data && fread(data, 1, len, f) == len;
  fclose(f);
  Onnx__ModelProto *model = ok ? onnx__model_proto__unpack(NULL, len, data) : NULL;
  free(data);
  if (!ok)
    fail(m, "cannot read the file");
  else if (!model)
    fail(m, "not a valid ONNX model (protobuf decoding failed: the file is truncated, "
         "corrupt or not ONNX)");
  return model;
}

static bool check_model(Imp *m, const Onnx__ModelProto *model) {
  m->opset = -1;
  for (size_t k = 0; k < model->n_opset_import; k++) {
    const char *dom = str(model->opset_import[k]->domain);
    if (!*dom || !strcmp(dom, "ai.onnx"))
      m->opset = (int)model->opset_import[k]->version;
  }
  if (!model->graph)
    return fail(m, "the model has no graph");
  if (m->opset < 7 || m->opset > 18)
    return fail(m, "opset %d of the default domain: opsets 7 to 18 are read (13 to 17, as "
                "torch.onnx.export writes them, are tested)", m->opset);
  return true;
}

/* The model name: the file's base name as an identifier. */
static const char *model_name(Imp *m) {
  const char *base = strrchr(m->path, '/');
  base = base ? base + 1 : m->path;
  char buf[MAX_MODEL_NAME + 1];
  int n = 0;
  for (const char *p = base; *p && *p != '.' && n < MAX_MODEL_NAME - 4; p++)
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
        (n && ((*p >= '0' && *p <= '9') || *p == '_')))
      buf[n++] = *p;
  buf[n] = '\0';
  return !n ? "onnx_model" : is_avoided(buf) ? arena_printf(m->ctx->arena, "%s_net", buf)
                           : arena_strdup(m->ctx->arena, buf);
}

static bool translate(Imp *m, const Onnx__ModelProto *model) {
  Onnx__GraphProto *g = m->g = model->graph;
  Arena *a = m->ctx->arena;
  m->index_cap = 16;
  while (m->index_cap < 2 * (int)(g->n_initializer + g->n_input + 4 * g->n_node + 8) &&
         m->index_cap < (1 << 28))
    m->index_cap *= 2;
  m->index = arena_alloc(a, (size_t)m->index_cap * sizeof *m->index);
  memset(m->index, -1, (size_t)m->index_cap * sizeof *m->index);
  m->live = arena_alloc(a, g->n_node + 1);
  m->done = arena_alloc(a, g->n_node + 1);
  for (size_t k = 0; k < g->n_initializer; k++) {
    Val *v = add_val(m, str(g->initializer[k]->name));
    if (!v || !load_const(m, g->initializer[k], v))
      return false;
  }
  if (m->imp)   /* the text goes in place of the import statement */
    buf_printf(&m->nn, "# imported by nncc %s from %s (opset %d)\n", NNCC_VERSION,
               shown(m, m->path), m->opset);
  else
    buf_printf(&m->nn, "# imported by nncc %s from an ONNX model (opset %d)\nmodel %s\n\n",
               NNCC_VERSION, m->opset, model_name(m));
  for (int k = 0; m->imp && k < m->imp->nrename; k++)   /* kept from the graph's names */
    take_name(m, &m->idents, m->imp->rename_to[k]);
  int ninputs = 0;
  for (size_t k = 0; k < g->n_input; k++) {
    if (find(m, str(g->input[k]->name)))   /* an initializer listed as input */
      continue;
    if (!add_input(m, g->input[k]))
      return false;
    Val *v = find(m, str(g->input[k]->name));
    v->var = io_name(m, &m->inputs, ident_of(m, v->name, "x", true));
    buf_printf(&m->nn, "input %s: f32%s\n", v->var, shape_text(m, v));
    ninputs++;
  }
  if (!ninputs)
    return fail(m, "the graph has no input");
  if (!m->imp)
    buf_puts(&m->nn, "\n");
  if (!check_order(m) || !mark_live(m))
    return false;
  for (size_t k = 0; k < g->n_node; k++)
    if (m->live[k] && !m->done[k] && !translate_node(m, k))
      return false;
  m->node = NULL;
  if (!m->imp)
    buf_puts(&m->nn, "\n");
  for (size_t k = 0; k < g->n_output; k++) {
    Val *v = find(m, str(g->output[k]->name));
    if (v->is_const || !v->var || v->rank == 0)
      return fail(m, "graph output '%s' is not computed by a layer", shown(m, v->name));
    for (size_t j = 0; j < k; j++)
      if (!strcmp(str(g->output[j]->name), v->name))
        return fail(m, "graph output '%s' is listed twice", shown(m, v->name));
    /* imported, the outputs are names the .nn file goes on from */
    buf_printf(&m->nn, "%s%s = %s\n", m->imp ? "" : "output ",
               io_name(m, &m->outputs, ident_of(m, v->name, "y", true)), v->var);
  }
  return true;
}

bool is_onnx_path(const char *path) {
  size_t n = strlen(path);
  return n > 5 && !strcmp(path + n - 5, ".onnx");
}

bool onnx_import(Ctx *ctx, const char *path, const OnnxImport *imp, OnnxModel *out) {
  Imp m = {.ctx = ctx, .path = path, .imp = imp};
  Onnx__ModelProto *model = read_model(&m);
  bool ok = model && check_model(&m, model) && translate(&m, model);
  if (model)
    onnx__model_proto__free_unpacked(model, NULL);
  if (ok) {
    out->nn = arena_strdup(ctx->arena, m.nn.data);
    out->weights = m.weights.items;
    out->nweights = m.weights.len;
    out->inputs = m.inputs.items;
    out->ninputs = m.inputs.len;
    out->outputs = m.outputs.items;
    out->noutputs = m.outputs.len;
  }
  buf_free(&m.nn);
  return ok;
}

/* ---- the weights as safetensors ---------------------------------------------------- */

/* The weights w[0..n) as the bytes of a safetensors file of reals of esize
 * bytes: the header padded with spaces to a multiple of 8, then the tensors
 * in order, little-endian.  The caller frees b->data. */
static void safetensors(Buf *b, const OnnxWeight *w, int n, int esize) {
  Buf h = {0};
  buf_puts(&h, "{");
  size_t data = 0;
  for (int k = 0; k < n; k++) {
    size_t bytes = (size_t)shape_numel(&w[k].shape) * (size_t)esize;
    buf_printf(&h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", k ? "," : "", w[k].name,
               esize == 8 ? "F64" : "F32");
    for (int d = 0; d < w[k].shape.rank; d++)
      buf_printf(&h, "%s%d", d ? "," : "", w[k].shape.dim[d]);
    buf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", data, data + bytes);
    data += bytes;
  }
  buf_puts(&h, "}");
  while (h.len % 8)
    buf_puts(&h, " ");
  b->len = b->cap = 8 + h.len + data;
  unsigned char *p = (unsigned char *)(b->data = malloc(b->cap));
  if (!p)
    internal_error(__FILE__, __LINE__, "out of memory");
  for (int k = 0; k < 8; k++)
    *p++ = (unsigned char)((uint64_t)h.len >> (8 * k));
  memcpy(p, h.data, h.len);
  p += h.len;
  buf_free(&h);
  for (int k = 0; k < n; k++)
    for (long i = 0; i < shape_numel(&w[k].shape); i++) {
      uint64_t bits;
      if (esize == 8) {
        double x = w[k].data[i];
        memcpy(&bits, &x, 8);
      } else {
        uint32_t b32;
        memcpy(&b32, &w[k].data[i], 4);
        bits = b32;
      }
      for (int k8 = 0; k8 < esize; k8++)
        *p++ = (unsigned char)(bits >> (8 * k8));
    }
}

/* The anonymous temporary files onnx_weights_file wrote: open until nncc
 * exits, when the system removes them. */
static FILE *weight_files[8];

bool onnx_weights_file(Ctx *ctx, const char *path, const OnnxWeight *w, int n, DType dtype,
                       const char **weights, Buf *save) {
  Buf st = {0};
  safetensors(&st, w, n, real_size(dtype));
  if (!*weights) {
    int slot = 0;
    while (slot < 8 && weight_files[slot])
      slot++;
    FILE *f = slot < 8 ? tmpfile() : NULL;
    if (!f || fwrite(st.data, 1, st.len, f) != st.len || fflush(f) != 0) {
      error_plain(ctx, "cannot write a temporary file for the weights of '%s': %s", path,
                  strerror(errno));
      if (f)
        fclose(f);
      buf_free(&st);
      return false;
    }
    weight_files[slot] = f;
    *weights = arena_printf(ctx->arena, "/dev/fd/%d", fileno(f));
  }
  if (save)
    *save = st;
  else
    buf_free(&st);
  return true;
}

Source *onnx_source(Ctx *ctx, const char *path, DType dtype, const char **weights, Buf *save) {
  OnnxModel m;
  if (!onnx_import(ctx, path, NULL, &m) ||
      !onnx_weights_file(ctx, path, m.weights, m.nweights, dtype, weights, save))
    return NULL;
  return source_from_string(ctx, path, m.nn);
}
