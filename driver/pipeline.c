/*
 * pipeline.c: the compiler as a flat list of passes, the one place that
 * reads the options: each stage gets what it needs as arguments.
 *
 *   read (a .nn file, or an ONNX file translated by frontend/onnx.c)
 *   (the initializers of an ONNX file or of a .nn file's imports are baked)
 *   parse -> lower (infer) -> fuse [-> hoist_constants] -> eliminate_dead -> plan_memory
 *         -> lower (train) -> derive_backward -> fuse [-> schedule_updates] -> eliminate_dead
 *         -> plan_memory
 *   -> emit_weights (--weights) -> emit_c -> verify_c (--verify)
 *
 * The inference graph gives <model>_forward, the training graph (when the
 * model has a loss and --infer is not given) <model>_train_step.  After each
 * pass the graph checker runs (debug builds) and --emit-ir=after:PASS /
 * --emit-dot=after:PASS can print it.  hoist_constants runs when every
 * weight is baked read-only (--infer --weights), schedule_updates with
 * --eager-update.
 */
#include <string.h>

#include "driver.h"
#include "onnx.h"
#include "print_nn.h"

static const char *const pass_names[] = {"lower", "derive_backward", "fuse", "hoist_constants",
                                         "schedule_updates", "eliminate_dead", "plan_memory",
                                         NULL};

bool is_pass_name(const char *name) {
  for (int i = 0; pass_names[i]; i++)
    if (strcmp(pass_names[i], name) == 0)
      return true;
  return false;
}

/* Prints the graph if --emit-ir/--emit-dot asked for it after `pass`
 * ("" means after the last pass). */
static void after(const Options *o, const Graph *g, const char *pass, Result *out) {
  const char *want_ir = o->emit_ir, *want_dot = o->emit_dot;
  if (want_ir && strcmp(want_ir, pass) == 0)
    print_ir(&out->ir, g);
  if (want_dot && strcmp(want_dot, pass) == 0)
    print_dot(&out->dot, g);
#ifndef NDEBUG
  if (!check_graph(g))
    internal_error(__FILE__, __LINE__, "graph check failed after %s", pass);
#endif
}

static Graph *build(Ctx *ctx, const Options *o, const Program *prog, Mode mode, bool hoist,
                    bool memory_first, Result *out) {
  Graph *g = lower_program(ctx, prog, mode, o->dtype, o->max_batch, o->max_threads,
                           o->no_winograd, memory_first);
  if (!g)
    return NULL;
  g->sync_bn = mode == MODE_TRAIN && o->sync_bn;
  g->eager_update = mode == MODE_TRAIN && o->eager_update;
  after(o, g, "lower", out);
  if (mode == MODE_TRAIN) {
    if (!derive_backward(g, o->input_grad))
      return NULL;
    after(o, g, "derive_backward", out);
  }
  /* Under --memory-budget a fold nncc cannot bake would write the folded
   * weights into the arena at every call: batchnorm runs as the epilogue of
   * its layer instead, which needs no memory. */
  unsigned fusions = o->fuse;
  if (memory_first && !hoist && (fusions & FUSE_EPILOGUE))
    fusions &= ~(unsigned)FUSE_BN_FOLD;
  fuse(g, fusions, &out->report);
  after(o, g, "fuse", out);
  if (hoist) {
    hoist_constants(g);
    after(o, g, "hoist_constants", out);
  }
  if (g->eager_update) {
    schedule_updates(g);
    after(o, g, "schedule_updates", out);
  }
  eliminate_dead(g);
  after(o, g, "eliminate_dead", out);
  plan_memory(g, !o->no_plan);
  after(o, g, "plan_memory", out);
  after(o, g, "", out);
  return g;
}

/* The model struct's bytes, generously: pointers, counters and the error
 * text, and in a training build the saved buffers and per-tensor figures.
 * The generated code asserts the exact memory_size() (_Static_assert). */
static long long struct_bytes(const Graph *infer, const Graph *train) {
  const Graph *g = train ? train : infer;
  long long bytes = 1024 + 16LL * g->counters;
  if (train)
    bytes += 4096 + real_size(g->dtype) * g->buffers_size + 8LL * g->values.len;
  return bytes;
}

/* Whether memory_size() stays within --memory-budget; if not and the
 * kernels were already those without workspace, an error saying by how
 * much and what is live at the arena's peak. */
static bool fits_budget(Ctx *ctx, const Options *o, Graph *infer, Graph *train, bool baked,
                        bool memory_first) {
  long long need = (long long)blocks_bytes(infer, train, baked) + struct_bytes(infer, train);
  if (need <= o->memory_budget || !memory_first)
    return need <= o->memory_budget;
  Graph *g = train && train->arena_size > infer->arena_size ? train : infer;
  Buf live = {0};
  describe_peak(g, &live);
  long long esize = real_size(g->dtype);
  error_plain(ctx, "--memory-budget %lld: memory_size() needs about %lld bytes even with kernels "
              "without workspace, %lld over (the %s arena %lld, the rest parameters, buffers, "
              "gradients, optimizer state and the model struct); live at the arena's peak: %s",
              o->memory_budget, need, need - o->memory_budget,
              g->mode == MODE_TRAIN ? "training" : "inference", esize * g->arena_size,
              live.len ? live.data : "nothing");
  buf_free(&live);
  return false;
}

bool nncc_compile(Ctx *ctx, const Options *o, Result *out) {
  const char *weights = o->weights;   /* an ONNX model brings its own */
  bool onnx = is_onnx_path(o->input);
  Source *src = onnx ? onnx_source(ctx, o->input, o->dtype, &weights,
                                   o->emit_weights ? &out->onnx_weights : NULL)
                     : read_source(ctx, o->input);
  if (!src)
    return false;
  Program *prog = parse_program(ctx, src);
  if (!prog)
    return false;
  /* a .nn file's imports start from their initializers, unless --weights */
  int nimported;
  const OnnxWeight *imported = program_imported_weights(prog, &nimported);
  const char **only = NULL;
  if (nimported && !weights) {
    only = arena_alloc(ctx->arena, sizeof *only * (size_t)nimported);
    for (int k = 0; k < nimported; k++)
      only[k] = imported[k].name;
    if (!onnx_weights_file(ctx, o->input, imported, nimported, o->dtype, &weights, NULL))
      return false;
  }
  if (o->emit_nn && onnx)
    buf_puts(&out->nn, src->text);
  else if (o->emit_nn)
    print_program(&out->nn, prog);
  bool baked_readonly = o->infer_only && weights && !only;
  Graph *infer, *train;
  /* --memory-budget: the fastest kernels, else those without workspace */
  for (bool memory_first = false;; memory_first = true) {
    infer = out->infer = build(ctx, o, prog, MODE_INFER, baked_readonly, memory_first, out);
    if (!infer)
      return false;
    train = out->train = NULL;
    if (!o->infer_only && program_has_loss(prog)) {
      train = out->train = build(ctx, o, prog, MODE_TRAIN, false, memory_first, out);
      if (!train)
        return false;
    }
    /* baked weights are read in place where nothing writes them (blocks_bytes) */
    if (!o->memory_budget || fits_budget(ctx, o, infer, train, weights && !only, memory_first))
      break;
    if (memory_first)
      return false;
    out->report.len = out->ir.len = out->dot.len = 0;   /* printed again */
  }
  if (o->report)
    report(&out->report, infer, train);
  if (o->distributed && !train) {
    error_plain(ctx, "--distributed=mpi trains a model: %s has no loss", infer->model);
    return false;
  }
  if (o->eager_update && !train) {
    error_plain(ctx, "--eager-update is for a training build: %s has no loss", infer->model);
    return false;
  }
  EmitConfig cfg = {.output = o->output, .main_kind = o->main_kind, .weights = weights,
                    .memory_budget = o->memory_budget,
                    .options = options_line(ctx->arena, o), .weights_only = only,
                    .nweights_only = only ? nimported : 0, .distributed = o->distributed};
  if (weights && !emit_weights(ctx, &cfg, train ? train : infer, infer, &out->weights))
    return false;
  if (!emit_c(ctx, &cfg, infer, train, &out->c, &out->h))
    return false;
  if (o->verify) {
    const char *h_name = header_name(ctx, o->output, infer->model);
    const char *c_name = arena_printf(ctx->arena, "%.*s.c", (int)strlen(h_name) - 2, h_name);
    if (!verify_c(ctx, c_name, out->c.data, h_name, out->h.data))
      return false;
    const char *w_name = arena_printf(ctx->arena, "%.*s_weights.c", (int)strlen(h_name) - 2, h_name);
    if (weights && !verify_c(ctx, w_name, out->weights.data, h_name, out->h.data))
      return false;
  }
  return true;
}

void free_result(Result *r) {
  buf_free(&r->c);
  buf_free(&r->h);
  buf_free(&r->ir);
  buf_free(&r->dot);
  buf_free(&r->report);
  buf_free(&r->nn);
  buf_free(&r->onnx_weights);
  buf_free(&r->weights);
}
