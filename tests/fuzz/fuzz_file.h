/*
 * fuzz_file.h: the fuzz input as a file name, for code that reads files.
 *
 * nncc_compile and the runtime readers take a path.  Each harness writes
 * its input into one memfd (created once, in RAM) and passes
 * "/proc/self/fd/N": fopen() on that path opens the same file afresh, at
 * offset 0, and nothing touches the disk.  Linux only, like libFuzzer here.
 */
#ifndef FUZZ_FILE_H
#define FUZZ_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Replaces the file's contents with data[0..size) and returns its path. */
static const char *fuzz_file(const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("nncc-fuzz", 0);
    if (fd < 0) {
      perror("memfd_create");
      abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
    perror("fuzz_file");
    abort();
  }
  return path;
}

#endif
