/*
 * test_tables.c: the tables that several places are generated from (status
 * codes, fusions, optimizers and their state slots, the names of the
 * generated API) against what nncc and the emitted code really do.  Each
 * test fails if a table and one of its uses drift apart.
 */
#include <criterion/criterion.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen.h"
#include "driver.h"
#include "harness.h"

#define NN_UNUSED __attribute__((unused))
#include "../runtime/nn_errors.c"
#undef NN_UNUSED

/* Compiles model text in process with the default options (and --infer if
 * mode is 1, --distributed=mpi if 2); returns the result, failing the test
 * on an error. */
static Result compile_text(const char *name, const char *text, int mode, Ctx *ctx) {
  char dir[512], path[600];
  scratch_dir(dir, sizeof dir, "tables");
  snprintf(path, sizeof path, "%s/%s.nn", dir, name);
  write_file(path, text);
  Options o = OPTIONS_DEFAULT;
  o.input = path, o.infer_only = mode == 1, o.distributed = mode == 2;
  *ctx = (Ctx){.arena = new_arena()};
  Result r = {0};
  cr_assert(nncc_compile(ctx, &o, &r), "%s: %s", name, ctx->diag.data);
  return r;
}

/* The diagnostic of parsing text, "" if none. */
static const char *first_error(const char *text) {
  static char out[512];
  Ctx ctx = {.arena = new_arena()};
  parse_program(&ctx, source_from_string(&ctx, "t.nn", text));
  snprintf(out, sizeof out, "%s", ctx.diag.len ? ctx.diag.data : "");
  buf_free(&ctx.diag);
  free_arena(ctx.arena);
  return out;
}

static void done(Ctx *ctx, Result *r) {
  free_result(r);
  buf_free(&ctx->diag);
  free_arena(ctx->arena);
}

static const char model[] =
    "model net\n"
    "input x: f32[1, 8, 8]\n"
    "target y: class[4]\n"
    "h = conv2d(x, channels=4, kernel=3, pad=1)\n"
    "h = relu(batchnorm(h))\n"
    "logits = dense(flatten(h), units=4)\n"
    "output p = softmax(logits)\n"
    "loss cross_entropy(logits, y)\n";

/* ---- status codes: runtime/nn_errors.c's NN_STATUSES ---------------------- */

Test(tables, every_status_has_its_own_message) {
  static const struct {
    const char *name;
    int value;
  } rows[] = {
#define ROW(name, value, message, what) {#name, value},
      NN_STATUSES(ROW)
#undef ROW
  };
  int n = sizeof rows / sizeof *rows;
  for (int i = 0; i < n; i++) {
    cr_expect(rows[i].value <= 0, "%s is positive", rows[i].name);
    cr_expect_eq(rows[i].value == 0, i == 0 && strcmp(rows[i].name, "OK") == 0, "%s",
                 rows[i].name);
    const char *msg = nn_strerror(rows[i].value);
    cr_expect(*msg && strcmp(msg, "unknown error") != 0, "%s has no message", rows[i].name);
    for (int j = 0; j < i; j++) {
      cr_expect_neq(rows[i].value, rows[j].value, "%s and %s", rows[i].name, rows[j].name);
      cr_expect_str_neq(msg, nn_strerror(rows[j].value), "%s and %s", rows[i].name,
                        rows[j].name);
    }
  }
  cr_expect_str_eq(nn_strerror(-(n + 10)), "unknown error");
}

/* model.h defines every failure status with the runtime's value, and model.c
 * checks it.  Success stays a plain 0: no NET_OK, which for a model named
 * `x` would be POSIX's X_OK (codegen skips the table's first row, OK). */
Test(tables, header_defines_every_failure_status) {
  Ctx ctx;
  Result r = compile_text("net", model, 0, &ctx);
  char line[160];
#define ROW(name, value, message, what)                                              \
  snprintf(line, sizeof line, "#define NET_%s (%d)", #name, value);                  \
  cr_expect((strstr(r.h.data, line) == NULL) == (value == 0), "model.h and '%s'", line);      \
  snprintf(line, sizeof line, "_Static_assert(NET_%s == NN_%s,", #name, #name);      \
  cr_expect((strstr(r.c.data, line) == NULL) == (value == 0), "model.c and '%s'", line);
  NN_STATUSES(ROW)
#undef ROW
  cr_expect(!strstr(r.h.data, "NET_OK"), "model.h defines NET_OK");
  done(&ctx, &r);
}

/* ---- fusions: FUSIONS in ir/nncc.h, parsed by the driver ----------------- */

Test(tables, every_fusion_name_parses_alone_and_in_lists) {
  unsigned mask, all = 0;
  for (int k = 0; k < NUM_FUSIONS; k++) {
    cr_assert(parse_fusions(fusion_names[k], &mask), "%s", fusion_names[k]);
    cr_expect_eq(mask, 1u << k, "%s", fusion_names[k]);
    all |= mask;
  }
  cr_expect_eq(FUSE_ALL & ~all, 0u);
  cr_expect_eq(FUSE_ALL & FUSE_PROLOGUE, 0u, "prologue is opt-in");
  cr_assert(parse_fusions("epilogue,prologue", &mask));
  cr_expect_eq(mask, (unsigned)(FUSE_EPILOGUE | FUSE_PROLOGUE));
  const char *bad[] = {"", ",", "epilogue,", ",epilogue", "epilogue,,elementwise", "fold",
                       "all,prologue"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    cr_expect_not(parse_fusions(bad[i], &mask), "'%s' accepted", bad[i]);
}

/* The header comment of model.c records the options that shape the code,
 * the fusions by the names the table gives them. */
Test(tables, header_records_the_options) {
  Options o = OPTIONS_DEFAULT;
  Arena *a = new_arena();
  cr_expect_str_eq(options_line(a, &o), "--batch 64 --threads 8 --dtype f32 --fuse=all");
  o.max_batch = 16, o.max_threads = 2, o.dtype = DT_F64, o.fuse = FUSE_EPILOGUE | FUSE_PROLOGUE;
  o.infer_only = o.no_plan = o.input_grad = true;
  o.main_kind = "infer", o.weights = "w/*?/\\x.safetensors";
  cr_expect_str_eq(options_line(a, &o),
                   "--batch 16 --threads 2 --dtype f64 --fuse=epilogue,prologue --infer "
                   "--no-plan --input-grad --main=infer --weights w/__/_x.safetensors");
  o.fuse = FUSE_NONE;
  cr_expect(strstr(options_line(a, &o), " --fuse=none "));
  free_arena(a);

  Ctx ctx;
  Result r = compile_text("net", model, 1, &ctx);
  cr_expect(strstr(r.c.data, "\n * model net, --batch 64 --threads 8 --dtype f32 --fuse=all --infer\n"),
            "%.200s", r.c.data);
  done(&ctx, &r);
}

/* ---- optimizers: OPTIMIZERS in ir/nncc.h ---------------------------------- */

/* Every optimizer of the table is accepted by the train section, and the
 * emitted checkpoint names its state slots, as many as the table says. */
Test(tables, every_optimizer_compiles_with_its_state_slots) {
  for (int i = 0; i < NUM_OPTIMIZERS; i++) {
    const OptimizerDef *od = &optimizer_defs[i];
    cr_assert_eq(optimizer_def(od->name), od);
    char text[1024];
    snprintf(text, sizeof text, "%strain {\n  optimizer %s\n}\n", model, od->name);
    Ctx ctx;
    Result r = compile_text("net", text, 0, &ctx);
    cr_assert_str_eq(r.train->train_config.optimizer, od->name);
    for (int s = 0; s < MAX_SLOTS; s++) {
      char name[128];
      snprintf(name, sizeof name, "optimizer.conv1.weight.%s", od->slot[s] ? od->slot[s] : "");
      bool found = od->slot[s] && strstr(r.c.data, name);
      cr_expect_eq(found, s < od->slots, "%s: slot %d (%s)", od->name, s, name);
    }
    done(&ctx, &r);
  }
  cr_expect_null(optimizer_def("lbfgs"));
}

/* ---- the generated API: API_NAMES in codegen/codegen.h -------------------- */

/* Adds to found[] every API_NAMES index whose <model>_<name> model.h
 * declares; fails on a <model>_<name>( or <model>_<name>; outside the table. */
static void scan_api(const char *h, const char *model_name, bool *found) {
  static const char *const names[] = {
#define NAME(x) #x,
      API_NAMES(NAME)
#undef NAME
  };
  size_t pre = strlen(model_name);
  for (const char *p = h; (p = strstr(p, model_name)); p += pre) {
    if (p > h && (p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z')) ) continue;
    if (p[pre] != '_')
      continue;
    const char *id = p + pre + 1;
    size_t len = strspn(id, "abcdefghijklmnopqrstuvwxyz_0123456789");
    if (id[len] != '(' && id[len] != ';')
      continue;   /* a type (net_tensor_info...) or a macro argument */
    size_t k = 0;
    while (k < sizeof names / sizeof *names && (strlen(names[k]) != len || strncmp(id, names[k], len)))
      k++;
    cr_expect(k < sizeof names / sizeof *names, "model.h declares %s_%.*s, not in API_NAMES",
              model_name, (int)len, id);
    if (k < sizeof names / sizeof *names)
      found[k] = true;
  }
}

Test(tables, api_names_are_what_the_header_declares) {
  static const char *const names[] = {
#define NAME(x) #x,
      API_NAMES(NAME)
#undef NAME
  };
  bool found[sizeof names / sizeof *names] = {false};
  for (int mode = 0; mode < 3; mode++) {   /* training, --infer, --distributed=mpi */
    Ctx ctx;
    Result r = compile_text("net", model, mode, &ctx);
    scan_api(r.h.data, "net", found);
    done(&ctx, &r);
  }
  for (size_t k = 0; k < sizeof names / sizeof *names; k++)
    if (strncmp(names[k], "baked_", 6) != 0)   /* only with --weights (test_weights.c) */
      cr_expect(found[k], "API_NAMES has %s, which no header declares", names[k]);
}

/* ---- the prelude's math helpers: PRELUDE_MATH in ir/emit.h --------------- */

/* Each helper is in the emitted prelude, and no model name may shadow it. */
Test(tables, prelude_helpers_are_emitted_and_reserved) {
  Ctx ctx;
  Result r = compile_text("net", model, 1, &ctx);
  char want[160], text[256];
#define MATH(name, libm)                                                          \
  snprintf(want, sizeof want, "static NN_UNUSED inline real %s(real x)", #name);  \
  cr_expect(strstr(r.c.data, want), "model.c lacks '%s'", want);                  \
  snprintf(text, sizeof text, "model t\ninput %s: f32[2]\n", #name);             \
  cr_expect(strstr(first_error(text), "input name '" #name "' is reserved in the generated C code"), \
            "%s: %s", #name, first_error(text));
  PRELUDE_MATH(MATH)
#undef MATH
  done(&ctx, &r);
}

/* ---- the floors: every include arrow points down (docs/design.md) ------- */

/* The floor of a directory or of one of its headers; -1 for others (system
 * and generated headers). */
static int floor_of(const char *name) {
  static const struct {
    const char *dir, *headers[4];
  } floors[] = {
      {"ir", {"nncc.h", "emit.h", "ops.def"}},
      {"codegen", {"codegen.h"}},
      {"passes", {NULL}},
      {"frontend", {"ast.h", "onnx.h", "print_nn.h"}},
      {"driver", {"driver.h"}},
  };
  for (int f = 0; f < (int)(sizeof floors / sizeof *floors); f++) {
    if (!strcmp(name, floors[f].dir) || (!strncmp(name, "ir/", 3) && f == 0))
      return f;
    for (int k = 0; floors[f].headers[k]; k++)
      if (!strcmp(name, floors[f].headers[k]))
        return f;
  }
  return -1;
}

Test(tables, every_include_points_down) {
  static const char *const dirs[] = {"ir", "ir/ops", "codegen", "passes", "frontend", "driver"};
  for (size_t d = 0; d < sizeof dirs / sizeof *dirs; d++) {
    char pattern[600];
    snprintf(pattern, sizeof pattern, "%s/%s/*.[ch]", NNCC_SOURCE_DIR, dirs[d]);
    glob_t g;
    cr_assert_eq(glob(pattern, 0, NULL, &g), 0, "%s", pattern);
    int here = floor_of(dirs[d]);
    for (size_t i = 0; i < g.gl_pathc; i++) {
      char *text = read_text(g.gl_pathv[i]);
      for (const char *p = text; (p = strstr(p, "#include \"")); p++) {
        const char *name = p + strlen("#include \"");
        char header[64];
        snprintf(header, sizeof header, "%.*s", (int)strcspn(name, "\""), name);
        int there = floor_of(header);
        cr_expect(there <= here, "%s includes %s, a floor above it", g.gl_pathv[i], header);
      }
      free(text);
    }
    globfree(&g);
  }
}
