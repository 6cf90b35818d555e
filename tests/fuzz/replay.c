/*
 * replay.c: runs a fuzz harness over files, without libFuzzer.
 *
 * The ordinary test build (any compiler, with the sanitizers under
 * scripts/test) links each harness with this main() and ctest replays
 * tests/fuzz/regressions/HARNESS/ and the seeds through it: every input that
 * once crashed stays a test.  Arguments are files or directories (their
 * files, in name order, dotfiles skipped).  A failed property aborts, as it
 * does under libFuzzer.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return 1;
  }
  size_t cap = 1 << 16, len = 0, n;
  uint8_t *buf = malloc(cap);
  while ((n = fread(buf + len, 1, cap - len, f)) > 0)
    if ((len += n) == cap)
      buf = realloc(buf, cap *= 2);
  fclose(f);
  fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
  LLVMFuzzerTestOneInput(buf, len);
  free(buf);
  return 0;
}

static int skip_dots(const struct dirent *e) { return e->d_name[0] != '.'; }

int main(int argc, char **argv) {
  int failed = 0, count = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      failed |= run_file(argv[i]);
      count++;
      continue;
    }
    struct dirent **names;
    int n = scandir(argv[i], &names, skip_dots, alphasort);
    for (int k = 0; k < n; k++) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[i], names[k]->d_name);
      failed |= run_file(path);
      count++;
      free(names[k]);
    }
    free(names);
  }
  fprintf(stderr, "replay: %d inputs%s\n", count, failed ? ", some unreadable" : ", all passed");
  return failed;
}
