/*
 * test_plan.c: memory planning on every example model, checked by the
 * independent validator, and the validator itself on a corrupted plan.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <string.h>

#include "harness.h"
#include "driver.h"

typedef struct Compilation {
  Ctx ctx;
  Options opt;
  Result r;
} Compilation;

static bool compile_batch(Compilation *c, const char *path, bool plan, unsigned fuse,
                          int batch) {
  memset(c, 0, sizeof *c);
  c->opt = OPTIONS_DEFAULT;
  c->opt.input = path, c->opt.max_batch = batch, c->opt.no_plan = !plan, c->opt.fuse = fuse;
  c->ctx = (Ctx){.arena = new_arena()};
  return nncc_compile(&c->ctx, &c->opt, &c->r);
}

static bool compile_file(Compilation *c, const char *path, bool plan, unsigned fuse) {
  return compile_batch(c, path, plan, fuse, 16);
}

static void release(Compilation *c) {
  free_result(&c->r);
  buf_free(&c->ctx.diag);
  free_arena(c->ctx.arena);
}

static int example_models(char paths[][512], int max) {
  DIR *d = opendir(NNCC_SOURCE_DIR "/examples");
  cr_assert(d, "no examples directory");
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < max) {
    size_t len = strlen(e->d_name);
    if (len > 3 && strcmp(e->d_name + len - 3, ".nn") == 0)
      snprintf(paths[n++], 512, "%s/examples/%s", NNCC_SOURCE_DIR, e->d_name);
  }
  closedir(d);
  return n;
}

static void check_graph_plan(const Graph *g, const char *path) {
  Buf why = {0};
  bool ok = validate_plan(g, &why);
  cr_expect(ok, "%s (%s graph): %s", path, g->mode == MODE_TRAIN ? "train" : "infer",
            why.data ? why.data : "");
  buf_free(&why);
}

Test(plan, examples_valid_and_near_lower_bound) {
  char paths[64][512];
  int n = example_models(paths, 64);
  cr_assert(n >= 1, "no example models");
  for (int i = 0; i < n; i++) {
    /* batch 16 and 64: workspaces sized by the batch (dense's packed x^T)
     * fragmented greedy-by-size placement at one and not the other */
    for (int run = 0; run < 4; run++) {
      int fused = run % 2, batch = run < 2 ? 16 : 64;
      Compilation c;
      cr_assert(compile_batch(&c, paths[i], true, fused ? FUSE_ALL : FUSE_NONE, batch), "%s: %s",
                paths[i], c.ctx.diag.data);
      const Graph *graphs[] = {c.r.infer, c.r.train};
      for (int k = 0; k < 2; k++) {
        const Graph *g = graphs[k];
        if (!g)
          continue;
        check_graph_plan(g, paths[i]);
        cr_expect(g->arena_size <= g->lower_bound + g->lower_bound / 10,
                  "%s (batch %d): arena %ld reals is more than 10%% above the lower bound %ld",
                  paths[i], batch, g->arena_size, g->lower_bound);
        cr_expect(g->arena_size <= g->naive_size);
      }
      release(&c);
    }
  }
}

Test(plan, unplanned_is_naive_and_valid) {
  char paths[64][512];
  int n = example_models(paths, 64);
  for (int i = 0; i < n; i++) {
    Compilation c;
    cr_assert(compile_file(&c, paths[i], false, FUSE_ALL));
    check_graph_plan(c.r.infer, paths[i]);
    if (c.r.train)
      check_graph_plan(c.r.train, paths[i]);
    release(&c);
  }
}

/* Put two tensors that are alive together at one offset: the validator
 * must notice. */
Test(plan, validator_catches_overlap) {
  char path[512];
  snprintf(path, sizeof path, "%s/plan-overlap.nn", NNCC_TEST_TMP);
  write_file(path, "model p\ninput x: f32[8]\ntarget t: f32[8]\n"
                   "a = dense(x, 8) |> relu\nb = dense(a, 8)\nc = dense(b, 8) + a\n"
                   "output c\nloss mse(c, t)\n");
  Compilation c;
  cr_assert(compile_file(&c, path, true, FUSE_ALL), "%s", c.ctx.diag.data);
  Graph *g = c.r.train;
  Buf why = {0};
  cr_assert(validate_plan(g, &why));
  /* a (relu output) lives until the add; move b onto it. */
  int a = -1, b = -1;
  for (int i = 0; i < g->values.len; i++) {
    Value *v = &g->values.items[i];
    bool forward = v->kind == V_ACT && v->producer >= 0 && !node_at(g, v->producer)->backward;
    if (forward && a < 0 && !strcmp(v->name, "relu1"))
      a = i;
    if (forward && b < 0 && !strcmp(v->name, "fc2"))
      b = i;
  }
  cr_assert(a >= 0 && b >= 0, "tensors not found");
  g->values.items[b].offset = g->values.items[a].offset;
  cr_expect(!validate_plan(g, &why), "validator accepted overlapping tensors");
  buf_free(&why);
  release(&c);
}

/* --eager-update on every example, fused and not: the plan with the
 * gradients in the arena passes the validator, and the schedule, checked
 * here on the final graph, has one param_update per trained parameter,
 * after the kernel that completes its gradient and after every kernel that
 * reads the parameter; the gradient dies there. */
Test(plan, eager_updates_follow_the_last_read) {
  char paths[64][512];
  int n = example_models(paths, 64);
  for (int i = 0; i < n; i++)
    for (int fused = 0; fused < 2; fused++) {
      Compilation c;
      memset(&c, 0, sizeof c);
      c.opt = OPTIONS_DEFAULT;
      c.opt.input = paths[i], c.opt.max_batch = 16, c.opt.eager_update = true;
      c.opt.fuse = fused ? FUSE_ALL | FUSE_PROLOGUE : FUSE_NONE;
      c.ctx = (Ctx){.arena = new_arena()};
      cr_assert(nncc_compile(&c.ctx, &c.opt, &c.r), "%s: %s", paths[i], c.ctx.diag.data);
      const Graph *g = c.r.train;
      if (!g) {
        release(&c);
        continue;
      }
      check_graph_plan(g, paths[i]);
      int updates = 0, trained = 0;
      for (int v = 0; v < g->values.len; v++)
        trained += g->values.items[v].kind == V_PARAM && !g->values.items[v].frozen &&
                   g->values.items[v].grad >= 0;
      for (int u = 0; u < g->nodes.len; u++) {
        const Node *up = &g->nodes.items[u];
        if (up->dead || up->op != OP_PARAM_UPDATE)
          continue;
        updates++;
        int p = up->in[0], dp = up->in[1];
        cr_expect(val(g, dp)->kind == V_PGRAD && val(g, dp)->param == p && val(g, p)->grad == dp);
        cr_expect(val(g, dp)->producer < u, "%s: %s updated before its gradient is complete",
                  paths[i], val(g, p)->name);
        for (int k = u + 1; k < g->nodes.len; k++) {
          const Node *node = &g->nodes.items[k];
          if (node->dead)
            continue;
          int reads[MAX_READS];
          int nreads = kernel_reads(g, node, reads);
          for (int j = 0; j < nreads; j++) {
            cr_expect(reads[j] != p, "%s: %s read by %s (%s) after its update", paths[i],
                      val(g, p)->name, node->name, op_def(node->op)->name);
            cr_expect(reads[j] != dp, "%s: the gradient of %s read after its update", paths[i],
                      val(g, p)->name);
          }
        }
      }
      cr_expect_eq(updates, trained, "%s: %d updates for %d trained tensors", paths[i], updates,
                   trained);
      release(&c);
    }
}
