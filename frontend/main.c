/*
 * main.c: the nncc command line.  Parses options, runs the pipeline of
 * passes/pipeline.c, prints diagnostics and writes model.c and model.h (and
 * model_weights.c with --weights) atomically, as the generated save does:
 * each into a new temporary file beside it (O_EXCL | O_NOFOLLOW: two runs
 * never share one, a planted link is never followed), synced, then renamed
 * over it, the directory synced last.  A failed run never leaves a partial
 * or stale-mixed output behind.
 *
 * Exit status: 0 success, 1 error in the model or its files, 2 usage error,
 * 4 internal error.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nncc.h"

static const char usage[] =
    "usage: nncc MODEL.nn [-o MODEL.c] [options]\n"
    "\n"
    "Compiles a neural-network description into standalone C: MODEL.c and MODEL.h\n"
    "(the header is written next to the .c file, with the same base name).\n"
    "\n"
    "options:\n"
    "  -o FILE              output C file (default: MODEL.c beside the input)\n"
    "  --batch N            largest batch the generated code accepts (default 64)\n"
    "  --dtype f32|f64      element type (default f32; f64 for gradient checks)\n"
    "  --threads N          most threads a kernel uses (default 8); each has its\n"
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
    "  --input-grad         train graph also computes d(loss)/d(input) (gradient checks)\n"
    "  --main=train|infer|bench  add a main(): ./model train IMAGES LABELS, ./model infer\n"
    "                       WEIGHTS IMAGES [LABELS], ./model bench (IDX files, one\n"
    "                       input, class target); the kind sets what is required\n"
    "  --emit-ir[=after:PASS]   print the IR (after the last pass, or after PASS)\n"
    "  --emit-dot[=after:PASS]  print the IR as GraphViz dot\n"
    "                       PASS: lower derive_backward fuse eliminate_dead plan_memory\n"
    "  --report             print fusion decisions and memory sizes\n"
    "  --verify             parse the emitted C with libclang; fail on any diagnostic\n"
    "  -h, --help           show this help\n"
    "  --version            show the version\n"
    "\n"
    "With --emit-ir, --emit-dot or --report and no -o, no C is written.\n";

static int usage_error(const char *fmt, const char *arg) {
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

static bool valid_fuse(const char *list) {
  if (strcmp(list, "none") == 0 || strcmp(list, "all") == 0)
    return true;
  char tmp[256];
  if (strlen(list) >= sizeof tmp || !*list)
    return false;
  strcpy(tmp, list);
  for (char *tok = strtok(tmp, ","); tok; tok = strtok(NULL, ","))
    if (!is_fusion_name(tok))
      return false;
  return list[strlen(list) - 1] != ',';
}

/* Returns 0 to go on, or an exit status. */
static int parse_args(int argc, char **argv, Options *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(usage, stdout);
      exit(0);
    } else if (!strcmp(a, "--version")) {
      printf("nncc %s\n", NNCC_VERSION);
      exit(0);
    } else if (!strcmp(a, "-o") || !strcmp(a, "--batch") || !strcmp(a, "--dtype") ||
               !strcmp(a, "--weights") || !strcmp(a, "--threads")) {
      if (i + 1 == argc)
        return usage_error("option '%s' needs a value", a);
      const char *v = argv[++i];
      if (!strcmp(a, "-o"))
        o->output = v;
      else if (!strcmp(a, "--weights"))
        o->weights = v;
      else if (!strcmp(a, "--batch") && !parse_int(v, 1, 1 << 20, &o->max_batch))
        return usage_error("--batch takes a whole number from 1 to 1048576, not '%s'", v);
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
      if (!valid_fuse(a + 7))
        return usage_error("unknown fusion in '%s' (try none, all, or a list of bn_fold, epilogue, elementwise, prologue)", a);
      o->fuse = a + 7;
    } else if (!strcmp(a, "--no-fuse")) {
      o->fuse = "none";
    } else if (!strcmp(a, "--no-plan")) {
      o->no_plan = true;
    } else if (!strncmp(a, "--main=", 7)) {
      if (strcmp(a + 7, "train") && strcmp(a + 7, "infer") && strcmp(a + 7, "bench"))
        return usage_error("--main takes train, infer or bench, not '%s'", a + 7);
      o->main_kind = a + 7;
    } else if (!strcmp(a, "--main")) {
      return usage_error("%s", "--main needs a value: --main=train, --main=infer or --main=bench");
    } else if (!strcmp(a, "--input-grad")) {
      o->input_grad = true;
    } else if (!strncmp(a, "--emit-ir", 9) && (a[9] == '\0' || a[9] == '=')) {
      if (!(o->emit_ir = after_pass(a, "--emit-ir")))
        return usage_error("bad pass in '%s' (see --help)", a);
    } else if (!strncmp(a, "--emit-dot", 10) && (a[10] == '\0' || a[10] == '=')) {
      if (!(o->emit_dot = after_pass(a, "--emit-dot")))
        return usage_error("bad pass in '%s' (see --help)", a);
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
  if (o->weights && o->infer_only && o->main_kind && !strcmp(o->main_kind, "infer"))
    return usage_error("%s", "--main=infer loads its weights from a file: drop --weights or --infer");
  return 0;
}

/* path with its extension (if any) replaced by ext. */
static char *with_ext(Arena *a, const char *path, const char *ext) {
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(path, '.');
  size_t len = dot && (!slash || dot > slash) ? (size_t)(dot - path) : strlen(path);
  return arena_printf(a, "%.*s%s", (int)len, path, ext);
}

/* A new file "<dir>/.<base>.<pid>.<n>.tmp" beside path, opened exclusively;
 * its name into *tmp.  -1 with errno set on failure. */
static int create_temp(Arena *a, const char *path, const char **tmp) {
  static unsigned counter;
  const char *slash = strrchr(path, '/');
  int dir = slash ? (int)(slash - path) + 1 : 0;
  for (int attempt = 0; attempt < 100; attempt++) {
    *tmp = arena_printf(a, "%.*s.%.64s.%d.%u.tmp", dir, path, path + dir, (int)getpid(),
                        counter++);
    int fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST)
      return fd;
  }
  return -1;
}

/* Writes b into a new temporary beside path, synced; errors name the file
 * the user asked for, not the temporary. */
static bool write_temp(Ctx *ctx, const char *path, const char **tmp, const Buf *b) {
  int fd = create_temp(ctx->arena, path, tmp);
  if (fd < 0) {
    error_plain(ctx, "cannot write '%s': %s", path, strerror(errno));
    return false;
  }
  bool ok = true;
  for (size_t done = 0; ok && done < b->len;) {
    ssize_t k = write(fd, b->data + done, b->len - done);
    ok = k > 0 || (k < 0 && errno == EINTR);
    done += k > 0 ? (size_t)k : 0;
  }
  ok = ok && fsync(fd) == 0;
  int errnum = errno;
  ok = close(fd) == 0 && ok;
  if (!ok) {
    error_plain(ctx, "cannot write '%s': %s", path, strerror(errnum ? errnum : errno));
    unlink(*tmp);
  }
  return ok;
}

/* fsync of path's directory, so that the renames survive a crash. */
static void sync_dir(Ctx *ctx, const char *path) {
  const char *slash = strrchr(path, '/');
  const char *dir = !slash ? "." : slash == path ? "/" :
                    arena_printf(ctx->arena, "%.*s", (int)(slash - path), path);
  int fd = open(dir, O_RDONLY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

/* rename() onto a directory fails only after the other file may have been
 * replaced: refuse before writing anything. */
static bool is_directory(Ctx *ctx, const char *path) {
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
    return false;
  error_plain(ctx, "cannot write '%s': Is a directory", path);
  return true;
}

/* Writes all files (model.c, model.h, model_weights.c with --weights) or
 * none: every temporary is written before the first rename, and model.c,
 * which names the others, is renamed last. */
static bool write_outputs(Ctx *ctx, const char *c_path, const Result *r) {
  Arena *a = ctx->arena;
  const char *path[3] = {c_path, with_ext(a, c_path, ".h"), with_ext(a, c_path, "_weights.c")};
  const Buf *text[3] = {&r->c, &r->h, &r->weights};
  int files = ctx->opt->weights ? 3 : 2;
  const char *tmp[3];
  for (int i = 0; i < files; i++)
    if (is_directory(ctx, path[i]))
      return false;
  int written = 0;
  while (written < files && write_temp(ctx, path[written], &tmp[written], text[written]))
    written++;
  bool ok = written == files;
  for (int k = 1; ok && k <= files; k++) {
    int i = k % files;   /* the header, the weights, then model.c */
    if (rename(tmp[i], path[i]) != 0) {
      error_plain(ctx, "cannot write '%s': %s", path[i], strerror(errno));
      ok = false;
    }
  }
  for (int i = 0; !ok && i < written; i++)
    unlink(tmp[i]);   /* those already renamed are gone: ENOENT */
  if (ok)
    sync_dir(ctx, c_path);
  return ok;
}

static void put(const Buf *b) {
  if (b->len)
    fwrite(b->data, 1, b->len, stdout);
}

int main(int argc, char **argv) {
  Options opt = {.max_batch = 64, .max_threads = 8, .dtype = DT_F32};
  int status = parse_args(argc, argv, &opt);
  if (status)
    return status;
  Ctx ctx = {.arena = new_arena(), .opt = &opt};
  bool listing = opt.emit_ir || opt.emit_dot || opt.report;
  const char *c_path = opt.output ? opt.output : with_ext(ctx.arena, opt.input, ".c");
  if (strlen(c_path) < 3 || strcmp(c_path + strlen(c_path) - 2, ".c") != 0) {
    free_arena(ctx.arena);
    return usage_error("the output file must end in .c, not '%s'", c_path);
  }
  Result r = {0};
  bool ok = nncc_compile(&ctx, &r);
  if (ok) {
    put(&r.ir);
    put(&r.dot);
    if (opt.report)
      put(&r.report);
    if (opt.output || !listing)
      ok = write_outputs(&ctx, c_path, &r);
  }
  if (ctx.diag.len)
    fwrite(ctx.diag.data, 1, ctx.diag.len, stderr);
  buf_free(&ctx.diag);
  free_result(&r);
  free_arena(ctx.arena);
  return ok ? 0 : 1;
}
