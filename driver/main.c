/*
 * main.c: the nncc command.  Parses the options (options.c), runs the
 * pipeline (pipeline.c), prints diagnostics and writes model.c and model.h (and
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

#include "driver.h"

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
static bool write_outputs(Ctx *ctx, const char *c_path, bool weights, const Result *r) {
  Arena *a = ctx->arena;
  const char *path[3] = {c_path, with_ext(a, c_path, ".h"), with_ext(a, c_path, "_weights.c")};
  const Buf *text[3] = {&r->c, &r->h, &r->weights};
  int files = weights ? 3 : 2;
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

/* One file written atomically, as write_outputs writes each (--emit-weights). */
static bool write_one(Ctx *ctx, const char *path, const Buf *b) {
  const char *tmp;
  if (is_directory(ctx, path) || !write_temp(ctx, path, &tmp, b))
    return false;
  if (rename(tmp, path) != 0) {
    error_plain(ctx, "cannot write '%s': %s", path, strerror(errno));
    unlink(tmp);
    return false;
  }
  sync_dir(ctx, path);
  return true;
}

static void put(const Buf *b) {
  if (b->len)
    fwrite(b->data, 1, b->len, stdout);
}

int main(int argc, char **argv) {
  Options opt = OPTIONS_DEFAULT;
  int status = parse_options(argc, argv, &opt);
  if (status)
    return status;
  Ctx ctx = {.arena = new_arena()};
  bool listing = opt.emit_ir || opt.emit_dot || opt.emit_nn || opt.report || opt.emit_weights;
  const char *c_path = opt.output ? opt.output : with_ext(ctx.arena, opt.input, ".c");
  if (strlen(c_path) < 3 || strcmp(c_path + strlen(c_path) - 2, ".c") != 0) {
    free_arena(ctx.arena);
    return usage_error("the output file must end in .c, not '%s'", c_path);
  }
  Result r = {0};
  bool ok = nncc_compile(&ctx, &opt, &r);
  if (ok) {
    put(&r.nn);
    put(&r.ir);
    put(&r.dot);
    if (opt.report)
      put(&r.report);
    if (opt.emit_weights)
      ok = write_one(&ctx, opt.emit_weights, &r.onnx_weights);
    if (ok && (opt.output || !listing))
      ok = write_outputs(&ctx, c_path, r.weights.len > 0, &r);
  }
  if (ctx.diag.len)
    fwrite(ctx.diag.data, 1, ctx.diag.len, stderr);
  buf_free(&ctx.diag);
  free_result(&r);
  free_arena(ctx.arena);
  return ok ? 0 : 1;
}
