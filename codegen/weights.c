/*
 * weights.c: --weights FILE.safetensors, trained weights baked into the
 * emitted code as model_weights.c.
 *
 * nncc reads the file at compile time with the same strict loader the
 * generated <model>_load uses (runtime/nn_safetensors.c, compiled into this
 * translation unit): every parameter and buffer of the model must be there
 * with the model's dtype (per --dtype) and shape, nothing else may be, and
 * the data offsets must tile the file exactly.  A checkpoint saved by the
 * training build is accepted; its optimizer state is read and dropped.
 *
 * The params and buffers blocks (same layout as in the model struct,
 * NN_PARAMS_SIZE and NN_BUFFERS_SIZE reals, gaps zero) become two const
 * unions in model_weights.c (and the batchnorm counters, num_batches_tracked,
 * an int64_t array, 0 where the file has none):
 *
 *   const union lenet5_baked_params { unsigned char bytes[N * 4 + 1]; float r[N]; }
 *       lenet5_baked_params = {"\376\350\203=Yl..."};
 *
 * The string literal holds the little-endian bytes: printable ASCII as is,
 * octal escapes for the rest.  That is about 11 source bytes per f32 and, the
 * point of it, cheap for the C compiler: for 10M parameters gcc -O2 needs
 * 0.55 GB and 14 s, clang 0.35 GB and 5 s, where the same data as uint32_t
 * words needs 2.2 GB and 75 s in gcc (docs/embedded.md).  The union gives
 * the bytes the alignment of `real`, and reading r after initializing bytes
 * is C11 type punning through a union.  The declarations go into model.h, so
 * the compiler checks that model_weights.c matches the model.c it came with.
 *
 * Inference builds point m->params and m->buffers at these unions (const
 * pointers, no copy, a smaller memory_size).  Training builds copy the
 * trained params (the params block's prefix, passes/plan_memory.c) and the
 * buffers into RAM in init_in and read the frozen params where they are
 * baked, through m->frozen (codegen.c calls emit_baked_*).
 */
#define _POSIX_C_SOURCE 200809L /* the runtime's saving code, as in the emitted prelude */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codegen.h"

#define NN_UNUSED __attribute__((unused))
#include "../runtime/nn_errors.c"
#include "../runtime/nn_safetensors.c"
#undef NN_UNUSED

/* The state slot names of every optimizer (OPTIMIZERS), each once: a
 * checkpoint of any of them may be baked.  Returns the count. */
static int state_slots(const char **names) {
  int n = 0;
  for (int i = 0; i < NUM_OPTIMIZERS; i++)
    for (int s = 0; s < optimizer_defs[i].slots; s++) {
      int k = 0;
      while (k < n && strcmp(names[k], optimizer_defs[i].slot[s]) != 0)
        k++;
      if (k == n)
        names[n++] = optimizer_defs[i].slot[s];
    }
  return n;
}

typedef struct Baked {
  unsigned char *params, *buffers;   /* little-endian bytes of the two blocks */
  unsigned char *consts;             /* and of V_CONST values (passes/hoist_constants.c) */
  size_t params_bytes, buffers_bytes, consts_bytes;
  size_t esize;                      /* bytes per real */
  int64_t *counters;                 /* g->counters of them (num_batches_tracked) */
} Baked;

static bool is_weight(const Value *v) { return v->kind == V_PARAM || v->kind == V_BUFFER; }

/* At least one element: C has no zero-length arrays. */
static long block_reals(long size) { return size > 0 ? size : 1; }

/* The table nn_st_load fills: the model's tensors point into the blocks,
 * optional optimizer state into one scratch area (read, then dropped). */
static nn_tensor *weight_table(Ctx *ctx, const EmitConfig *cfg, const Graph *g, Baked *bk,
                               unsigned char *scratch, int *count) {
  const char *slots[NUM_OPTIMIZERS * MAX_SLOTS];
  int nslots = state_slots(slots), cap = 1;
  for (int i = 0; i < g->values.len; i++)
    cap += is_weight(&g->values.items[i]) ? 1 + nslots : g->values.items[i].kind == V_COUNTER;
  nn_tensor *t = arena_alloc(ctx->arena, sizeof *t * (size_t)cap);
  const char *dtype = g->dtype == DT_F64 ? "F64" : "F32";
  int n = 0;
  for (int i = 0; i < g->values.len; i++) {
    const Value *v = &g->values.items[i];
    if (v->kind == V_COUNTER) /* optional, as in the generated load */
      t[n++] = (nn_tensor){v->name, "I64", 0, {0, 0, 0, 0}, &bk->counters[v->offset], 1,
                           NN_CHECK_COUNT};
    if (!is_weight(v) || !is_baked_value(cfg, v))
      continue;
    /* finite, and a variance >= 0: as the generated load checks */
    size_t len = strlen(v->name);
    bool var = v->kind == V_BUFFER && len >= 12 && !strcmp(v->name + len - 12, ".running_var");
    nn_tensor e = {v->name, dtype, v->shape.rank, {0, 0, 0, 0}, NULL, 0,
                   var ? NN_CHECK_NONNEG : NN_CHECK_FINITE};
    for (int d = 0; d < v->shape.rank; d++)
      e.shape[d] = v->shape.dim[d];
    e.data = (v->kind == V_PARAM ? bk->params : bk->buffers) + (size_t)v->offset * bk->esize;
    t[n++] = e;
    for (int s = 0; v->kind == V_PARAM && s < nslots; s++) {
      e.name = arena_printf(ctx->arena, "optimizer.%s.%s", v->name, slots[s]);
      e.data = scratch;
      e.optional = 1;
      e.check = NN_CHECK_NONE;   /* read and dropped */
      t[n++] = e;
    }
  }
  t[n++] = (nn_tensor){"optimizer.step", "I64", 0, {0, 0, 0, 0}, scratch, 1, NN_CHECK_NONE};
  *count = n;
  return t;
}

/* Reads the file `path` into bk; reports "nncc: error: FILE: why" on failure. */
static bool read_weights(Ctx *ctx, const EmitConfig *cfg, const Graph *g, Baked *bk) {
  const char *path = cfg->weights;
  bk->esize = real_size(g->dtype);
  /* checked: a product that does not fit size_t is out of memory */
  bool fits = !__builtin_mul_overflow((size_t)block_reals(g->params_size), bk->esize,
                                      &bk->params_bytes) &&
              !__builtin_mul_overflow((size_t)block_reals(g->buffers_size), bk->esize,
                                      &bk->buffers_bytes);
  size_t largest = 8;
  for (int i = 0; i < g->values.len; i++)
    if (is_weight(&g->values.items[i])) {
      size_t b;
      fits &= !__builtin_mul_overflow((size_t)shape_numel(&g->values.items[i].shape), bk->esize, &b);
      largest = fits && b > largest ? b : largest;
    }
  bk->params = fits ? calloc(1, bk->params_bytes) : NULL;
  bk->buffers = fits ? calloc(1, bk->buffers_bytes) : NULL;
  unsigned char *scratch = fits ? malloc(largest) : NULL;
  bk->counters = calloc((size_t)g->counters + 1, sizeof *bk->counters);
  bool ok = bk->params && bk->buffers && scratch && bk->counters;
  if (!ok)
    error_plain(ctx, "%s: out of memory", path);
  char err[512] = "";
  int count = 0;
  nn_tensor *t = ok ? weight_table(ctx, cfg, g, bk, scratch, &count) : NULL;
  if (ok && nn_st_load(path, t, count, err, sizeof err) != NN_OK) {
    error_plain(ctx, "%s: %s", path, err);
    ok = false;
  }
  free(scratch);
  return ok;
}

/* Where value v's elements are in bk (host order). */
static void *baked_data(const Baked *bk, const Value *v) {
  unsigned char *block = v->kind == V_PARAM    ? bk->params
                         : v->kind == V_BUFFER ? bk->buffers
                                               : bk->consts;
  return block + (size_t)v->offset * bk->esize;
}

/* Computes the V_CONST values: the hoisted nodes, in order, on the baked
 * weights.  Their sizes fit: plan_memory bounded the consts block. */
static bool compute_consts(Ctx *ctx, const Graph *g, Baked *bk) {
  bk->consts_bytes = (size_t)block_reals(g->consts_size) * bk->esize;   /* what is emitted */
  bk->consts = calloc(1, (size_t)block_reals(g->consts_total) * bk->esize);
  if (!bk->consts) {
    error_plain(ctx, "out of memory");
    return false;
  }
  for (int i = 0; i < g->nodes.len; i++) {
    const Node *node = &g->nodes.items[i];
    if (!node->dead || val(g, node->out[0])->kind != V_CONST)
      continue;
    const void *in[MAX_IN];
    void *out[MAX_OUT];
    for (int j = 0; j < node->nin; j++)
      in[j] = baked_data(bk, val(g, node->in[j]));
    for (int k = 0; k < node->nout; k++)
      out[k] = baked_data(bk, val(g, node->out[k]));
    op_def(node->op)->eval(g, node, in, out);
  }
  return true;
}

/* Bytes as concatenated string literals of about 76 columns.  An octal
 * escape takes all three digits when a raw digit 0-7 follows it. */
static void put_bytes(Buf *b, const unsigned char *p, size_t n) {
  char line[128];
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned c = p[i];
    bool raw = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '?';
    if (raw) {
      line[len++] = (char)c;
    } else {
      bool digit_next = i + 1 < n && p[i + 1] >= '0' && p[i + 1] <= '7';
      line[len++] = '\\';
      if (c >= 64 || digit_next)
        line[len++] = (char)('0' + (c >> 6));
      if (c >= 8 || digit_next)
        line[len++] = (char)('0' + (c >> 3 & 7));
      line[len++] = (char)('0' + (c & 7));
    }
    if (len >= 72 || i + 1 == n) {
      buf_printf(b, "    \"%.*s\"\n", (int)len, line);
      len = 0;
    }
  }
}

/* "union lenet5_baked_params { unsigned char bytes[N]; float r[M]; }" */
static const char *union_type(Arena *a, const Graph *g, const char *block, long size) {
  long reals = block_reals(size);
  return arena_printf(a, "union %s_baked_%s { unsigned char bytes[%ld]; %s r[%ld]; }", g->model,
                      block, reals * real_size(g->dtype) + 1, real_name(g), reals);
}

/* The union type comes from model.h: a stale model_weights.c does not compile. */
static void emit_block(const Graph *g, Buf *b, const char *block, const unsigned char *bytes,
                       size_t nbytes) {
  buf_printf(b, "const union %s_baked_%s %s_baked_%s = {\n", g->model, block, g->model, block);
  put_bytes(b, bytes, nbytes);
  buf_puts(b, "};\n\n");
}

bool emit_weights(Ctx *ctx, const EmitConfig *cfg, const Graph *g, const Graph *infer,
                  Buf *out) {
  Baked bk = {0};
  bool ok = read_weights(ctx, cfg, g, &bk) && compute_consts(ctx, infer, &bk);
  /* the emitted bytes are little-endian whatever the host */
  if (ok && !nn_st_host_is_le()) {
    nn_st_swap(bk.params, bk.params_bytes, bk.esize);
    nn_st_swap(bk.buffers, bk.buffers_bytes, bk.esize);
    nn_st_swap(bk.consts, bk.consts_bytes, bk.esize);
  }
  if (ok) {
    const char *h = header_name(ctx, cfg->output, g->model);
    /* names are display text here: the -o path is the user's, not the model's */
    buf_printf(out, "/* %.*s_weights.c: trained parameters and buffers of model %s, baked in\n"
                    " * by nncc %s --weights; do not edit.  Link it with %.*s.c; %s declares\n"
                    " * the blocks below (%ld + %ld %ss",
               (int)strlen(h) - 2, h, g->model, NNCC_VERSION, (int)strlen(h) - 2, h, h,
               g->params_size, g->buffers_size, real_name(g));
    if (infer->consts_size)
      buf_printf(out, ", and %ld computed from them:\n * folded batchnorm, prepared filters", infer->consts_size);
    buf_puts(out, "). */\n");
    buf_printf(out, "#include %s\n\n", c_string(ctx->arena, h));
    buf_puts(out, "#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && "
                  "__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__\n"
                  "#error \"the baked weights are little-endian IEEE 754 bytes\"\n#endif\n\n");
    buf_puts(out, "/* One long literal per block: ISO C only promises 4095 characters. */\n"
                  "#if defined(__GNUC__) || defined(__clang__)\n"
                  "#pragma GCC diagnostic ignored \"-Woverlength-strings\"\n#endif\n\n");
    emit_block(g, out, "params", bk.params, bk.params_bytes);
    emit_block(g, out, "buffers", bk.buffers, bk.buffers_bytes);
    if (infer->consts_size)
      emit_block(g, out, "consts", bk.consts, bk.consts_bytes);
    buf_printf(out, "const int64_t %s_baked_counters[%d] = {", g->model, g->counters + 1);
    for (int i = 0; i < g->counters; i++)
      buf_printf(out, "%s%lld", i == 0 ? "\n    " : i % 8 ? ", " : ",\n    ",
                 (long long)bk.counters[i]);
    buf_puts(out, g->counters ? ", 0\n};\n" : "0};\n");
  }
  free(bk.params);
  free(bk.buffers);
  free(bk.consts);
  free(bk.counters);
  return ok;
}

/* ---- hooks for codegen.c ---------------------------------------------------- */

bool baked(const CG *cg) { return cg->cfg->weights; }

bool is_baked_value(const EmitConfig *cfg, const Value *v) {
  for (int i = 0; cfg->weights_only && i < cfg->nweights_only; i++)
    if (!strcmp(cfg->weights_only[i], v->name))
      return true;
  return cfg->weights && !cfg->weights_only;
}

/* Whether every param and buffer comes from the file. */
static bool all_baked(const CG *cg) {
  const Graph *g = cg->layout;
  for (int i = 0; i < g->values.len; i++)
    if (is_weight(&g->values.items[i]) && !is_baked_value(cg->cfg, &g->values.items[i]))
      return false;
  return true;
}

bool baked_readonly(const CG *cg) { return baked(cg) && !cg->train && all_baked(cg); }

bool frozen_readonly(const CG *cg) {
  const Graph *g = cg->layout;
  return baked(cg) && cg->train && all_baked(cg) && g->trained_size < g->params_size;
}

void emit_baked_decls(CG *cg) {
  const Graph *g = cg->layout;
  const char *h = header_name(cg->ctx, cg->cfg->output, cg->m);
  buf_printf(cg->h, "\n/* Trained weights baked in by nncc --weights: defined in %.*s_weights.c. */\n"
                    "#define %s_BAKED_WEIGHTS 1\n",
             (int)strlen(h) - 2, h, cg->M);
  buf_printf(cg->h, "extern const %s %s_baked_params;\n",
             union_type(cg->a, g, "params", g->params_size), cg->m);
  buf_printf(cg->h, "extern const %s %s_baked_buffers;\n",
             union_type(cg->a, g, "buffers", g->buffers_size), cg->m);
  buf_printf(cg->h, "extern const int64_t %s_baked_counters[%d];   /* num_batches_tracked */\n",
             cg->m, g->counters + 1);
  if (cg->infer->consts_size)
    buf_printf(cg->h, "extern const %s %s_baked_consts;   /* computed by nncc from the weights */\n",
               union_type(cg->a, g, "consts", cg->infer->consts_size), cg->m);
}

/* The body of nn_init_tensors: a training build starts from a copy. */
void emit_baked_init(CG *cg) {
  buf_printf(cg->c, "    memcpy(m->counters, %s_baked_counters, sizeof m->counters);\n", cg->m);
  if (baked_readonly(cg)) {
    buf_puts(cg->c, "    /* params and buffers point at the read-only baked weights */\n");
    return;
  }
  buf_printf(cg->c, "    memcpy(m->params, %s_baked_params.r, (size_t)NN_PARAMS_RAM_SIZE * sizeof(real));\n"
                    "    memcpy(m->buffers, %s_baked_buffers.r, (size_t)NN_BUFFERS_SIZE * sizeof(real));\n",
             cg->m, cg->m);
}
