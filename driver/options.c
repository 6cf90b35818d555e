/*
 * options.c: the nncc command line, parsed into an Options, and the line
 * that records the options in the emitted header.  --help's text is here;
 * tests/test_cli.c checks that README.md quotes it exactly.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "onnx.h"

static const char usage[] =
    "usage: nncc MODEL.nn|MODEL.onnx [-o MODEL.c] [options]\n"
    "\n"
    "Compiles a neural-network description into standalone C: MODEL.c and MODEL.h\n"
    "(the header is written next to the .c file, with the same base name).\n"
    "An ONNX model (torch.onnx.export, opsets 13-17) is translated into a .nn\n"
    "program and compiled with its weights baked into MODEL_weights.c.\n"
    "\n"
    "options:\n"
    "  -o FILE              output C file (default: MODEL.c beside the input)\n"
    "  --batch N            largest batch the generated code accepts (default 64)\n"
    "  --dtype f32|f64      element type (default f32; f64 for gradient checks)\n"
    "  --threads N          most threads a call uses (default 8); each has its\n"
    "                       own scratch, so 1 gives the smallest memory_size()\n"
    "  --infer              inference only: no training code, smaller arena\n"
    "  --weights FILE       bake trained weights (safetensors, as MODEL_save writes)\n"
    "                       into MODEL_weights.c: no file I/O, no malloc needed;\n"
    "                       with --infer they stay read-only (no copy in memory)\n"
    "  --fuse=none|all|LIST fusions to apply (default all); LIST is comma-separated\n"
    "                       from: bn_fold epilogue elementwise prologue (all = every\n"
    "                       one but prologue, which is opt-in)\n"
    "  --no-fuse            same as --fuse=none\n"
    "  --no-plan            give every tensor its own buffer (no memory reuse)\n"
    "  --no-winograd        3x3 stride-1 convolutions as direct products, not\n"
    "                       Winograd F(4x4,3x3): slower, ~8x smaller f32 error\n"
    "  --memory-budget BYTES  bound memory_size() (K, M: KiB, MiB): kernels without\n"
    "                       workspace if the fastest do not fit, else an error\n"
    "                       naming the tensors live at the peak\n"
    "  --eager-update       training: each tensor's optimizer step as soon as its\n"
    "                       gradient is complete, which frees that gradient's memory\n"
    "                       (no gradients(), update() or grad(); docs/api.md)\n"
    "  --input-grad         train graph also computes d(loss)/d(input) (gradient checks)\n"
    "  --distributed=mpi    data-parallel training over MPI: gradients averaged\n"
    "                       over the ranks (build with mpicc; docs/distributed.md)\n"
    "  --sync-batchnorm     with --distributed: batchnorm statistics over all ranks'\n"
    "                       samples, not each rank's own (costs allreduces)\n"
    "  --main=train|infer|bench  add a main(): ./model train IMAGES LABELS, ./model infer\n"
    "                       WEIGHTS IMAGES [LABELS], ./model bench (IDX files, one\n"
    "                       input, class target); the kind sets what is required\n"
    "  --emit-ir[=after:PASS]   print the IR (after the last pass, or after PASS)\n"
    "  --emit-dot[=after:PASS]  print the IR as GraphViz dot\n"
    "                       PASS: lower derive_backward fuse hoist_constants\n"
    "                       schedule_updates eliminate_dead plan_memory\n"
    "  --emit-nn            print the model as .nn text (an ONNX model as imported)\n"
    "  --emit-weights FILE  write an ONNX model's weights as safetensors (no -o)\n"
    "  --report             print fusion decisions and memory sizes\n"
    "  --verify             parse the emitted C with libclang; fail on any diagnostic\n"
    "  -h, --help           show this help\n"
    "  --version            show the version\n"
    "\n"
    "With --emit-ir, --emit-dot, --emit-nn or --report and no -o, no C is written.\n";

int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "nncc: error: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'nncc --help'.\n");
  return 2;
}

static bool parse_int(const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return false;
  *out = (int)v;
  return true;
}

/* "--emit-ir" -> "", "--emit-ir=after:fuse" -> "fuse"; NULL on a bad pass. */
static const char *after_pass(const char *arg, const char *opt) {
  const char *rest = arg + strlen(opt);
  if (*rest == '\0')
    return "";
  if (strncmp(rest, "=after:", 7) != 0 || !is_pass_name(rest + 7))
    return NULL;
  return rest + 7;
}

bool parse_fusions(const char *text, unsigned *mask) {
  if (strcmp(text, "none") == 0 || strcmp(text, "all") == 0) {
    *mask = text[0] == 'a' ? FUSE_ALL : FUSE_NONE;
    return true;
  }
  *mask = FUSE_NONE;
  for (const char *p = text;; p++) {
    size_t len = strcspn(p, ",");
    int k = 0;
    while (k < NUM_FUSIONS && (strlen(fusion_names[k]) != len || strncmp(p, fusion_names[k], len)))
      k++;
    if (k == NUM_FUSIONS)
      return false;   /* also an empty name: "", "a,,b", a trailing comma */
    *mask |= 1u << k;
    p += len;
    if (!*p)
      return true;
  }
}

/* The --fuse value that gives `mask`. */
static const char *fusions_text(Arena *a, unsigned mask) {
  if (mask == FUSE_NONE || mask == FUSE_ALL)
    return mask ? "all" : "none";
  const char *s = "";
  for (int k = 0; k < NUM_FUSIONS; k++)
    if (mask & (1u << k))
      s = arena_printf(a, "%s%s%s", s, *s ? "," : "", fusion_names[k]);
  return s;
}

/* A file name in a C comment: printable ASCII but for '*' (a comment's
 * end), '?' (trigraphs) and '\\' (a line splice), which become '_'. */
static const char *comment_safe(Arena *a, const char *s) {
  char *t = arena_strdup(a, s);
  for (char *p = t; *p; p++)
    if (*p < 32 || *p > 126 || *p == '*' || *p == '?' || *p == '\\')
      *p = '_';
  return t;
}

/* "65536", "64K" or "1M" (KiB, MiB): true with *out in 1..2^50. */
static bool parse_bytes(const char *v, long long *out) {
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  long long unit = *end == 'K' ? 1024 : *end == 'M' ? 1024 * 1024 : 1;
  if (unit > 1)
    end++;
  if (errno || end == v || *end || v[0] == '-' || v[0] == '+' || n < 1 ||
      n > (1LL << 50) / unit)
    return false;
  *out = n * unit;
  return true;
}

const char *options_line(Arena *a, const Options *o) {
  const char *s = arena_printf(a, "--batch %d --threads %d --dtype %s --fuse=%s", o->max_batch,
                               o->max_threads, o->dtype == DT_F64 ? "f64" : "f32",
                               fusions_text(a, o->fuse));
  if (o->infer_only)
    s = arena_printf(a, "%s --infer", s);
  if (o->no_plan)
    s = arena_printf(a, "%s --no-plan", s);
  if (o->input_grad)
    s = arena_printf(a, "%s --input-grad", s);
  if (o->no_winograd)
    s = arena_printf(a, "%s --no-winograd", s);
  if (o->main_kind)
    s = arena_printf(a, "%s --main=%s", s, o->main_kind);
  if (o->distributed)
    s = arena_printf(a, "%s --distributed=mpi", s);
  if (o->sync_bn)
    s = arena_printf(a, "%s --sync-batchnorm", s);
  if (o->weights)
    s = arena_printf(a, "%s --weights %s", s, comment_safe(a, o->weights));
  if (o->memory_budget)
    s = arena_printf(a, "%s --memory-budget %lld", s, o->memory_budget);
  if (o->eager_update)
    s = arena_printf(a, "%s --eager-update", s);
  return s;
}

int parse_options(int argc, char **argv, Options *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(usage, stdout);
      exit(0);
    } else if (!strcmp(a, "--version")) {
      printf("nncc %s\n", NNCC_VERSION);
      exit(0);
    } else if (!strcmp(a, "-o") || !strcmp(a, "--batch") || !strcmp(a, "--dtype") ||
               !strcmp(a, "--weights") || !strcmp(a, "--threads") ||
               !strcmp(a, "--emit-weights") || !strcmp(a, "--memory-budget")) {
      if (i + 1 == argc)
        return usage_error("option '%s' needs a value", a);
      const char *v = argv[++i];
      if (!strcmp(a, "-o"))
        o->output = v;
      else if (!strcmp(a, "--weights"))
        o->weights = v;
      else if (!strcmp(a, "--emit-weights"))
        o->emit_weights = v;
      else if (!strcmp(a, "--batch") && !parse_int(v, 1, 1 << 20, &o->max_batch))
        return usage_error("--batch takes a whole number from 1 to 1048576, not '%s'", v);
      else if (!strcmp(a, "--memory-budget") && !parse_bytes(v, &o->memory_budget))
        return usage_error("--memory-budget takes a size in bytes from 1 to 2^50, with K or M for "
                           "KiB or MiB (256K), not '%s'", v);
      else if (!strcmp(a, "--threads") && !parse_int(v, 1, 1024, &o->max_threads))
        return usage_error("--threads takes a whole number from 1 to 1024, not '%s'", v);
      else if (!strcmp(a, "--dtype")) {
        if (strcmp(v, "f32") && strcmp(v, "f64"))
          return usage_error("--dtype takes f32 or f64, not '%s'", v);
        o->dtype = strcmp(v, "f64") ? DT_F32 : DT_F64;
      }
    } else if (!strcmp(a, "--infer")) {
      o->infer_only = true;
    } else if (!strncmp(a, "--fuse=", 7)) {
      if (!parse_fusions(a + 7, &o->fuse))
        return usage_error("unknown fusion in '%s' (try none, all, or a list of bn_fold, epilogue, elementwise, prologue)", a);
    } else if (!strcmp(a, "--no-fuse")) {
      o->fuse = FUSE_NONE;
    } else if (!strcmp(a, "--no-plan")) {
      o->no_plan = true;
    } else if (!strncmp(a, "--main=", 7)) {
      if (strcmp(a + 7, "train") && strcmp(a + 7, "infer") && strcmp(a + 7, "bench"))
        return usage_error("--main takes train, infer or bench, not '%s'", a + 7);
      o->main_kind = a + 7;
    } else if (!strcmp(a, "--main")) {
      return usage_error("%s", "--main needs a value: --main=train, --main=infer or --main=bench");
    } else if (!strncmp(a, "--distributed", 13) && (a[13] == '\0' || a[13] == '=')) {
      if (strcmp(a, "--distributed=mpi"))
        return usage_error("%s", "--distributed takes mpi: --distributed=mpi");
      o->distributed = true;
    } else if (!strcmp(a, "--sync-batchnorm")) {
      o->sync_bn = true;
    } else if (!strcmp(a, "--input-grad")) {
      o->input_grad = true;
    } else if (!strcmp(a, "--eager-update")) {
      o->eager_update = true;
    } else if (!strcmp(a, "--no-winograd")) {
      o->no_winograd = true;
    } else if (!strncmp(a, "--emit-ir", 9) && (a[9] == '\0' || a[9] == '=')) {
      if (!(o->emit_ir = after_pass(a, "--emit-ir")))
        return usage_error("bad pass in '%s' (see --help)", a);
    } else if (!strncmp(a, "--emit-dot", 10) && (a[10] == '\0' || a[10] == '=')) {
      if (!(o->emit_dot = after_pass(a, "--emit-dot")))
        return usage_error("bad pass in '%s' (see --help)", a);
    } else if (!strcmp(a, "--emit-nn")) {
      o->emit_nn = true;
    } else if (!strcmp(a, "--report")) {
      o->report = true;
    } else if (!strcmp(a, "--verify")) {
      o->verify = true;
    } else if (a[0] == '-' && a[1] != '\0') {
      return usage_error("unknown option '%s'", a);
    } else if (o->input) {
      return usage_error("more than one model file ('%s')", a);
    } else {
      o->input = a;
    }
  }
  if (!o->input)
    return usage_error("%s", "no model file given");
  if (o->emit_weights && (!is_onnx_path(o->input) || o->output))
    return usage_error("%s", "--emit-weights writes the weights of an ONNX model and no C: "
                             "give a .onnx model and no -o");
  if (o->distributed && (o->infer_only || o->main_kind))
    return usage_error("%s", "--distributed=mpi is for training from C: drop --infer and --main");
  if (o->sync_bn && !o->distributed)
    return usage_error("%s", "--sync-batchnorm sums batchnorm statistics over MPI ranks: it needs "
                             "--distributed=mpi");
  if (o->distributed && o->verify)
    return usage_error("%s", "--verify cannot check --distributed=mpi code (its mpi.h is the MPI "
                             "compiler's): compile it with mpicc -Wall -Werror instead");
  if (o->eager_update && o->infer_only)
    return usage_error("%s", "--eager-update is for a training build: drop --infer or "
                             "--eager-update");
  if (o->eager_update && o->distributed)
    return usage_error("%s", "--eager-update cannot be used with --distributed=mpi: the gradients "
                             "are averaged over the ranks once the backward pass is done");
  if (o->eager_update && o->input_grad)
    return usage_error("%s", "--input-grad gives gradients() the input's gradient, and an "
                             "--eager-update build has no gradients(): drop one of them");
  if (o->weights && o->infer_only && o->main_kind && !strcmp(o->main_kind, "infer"))
    return usage_error("%s", "--main=infer loads its weights from a file: drop --weights or --infer");
  return 0;
}

