/*
 * test_embed.c: the installed package works for a separate project.
 * cmake --install into a scratch prefix, then configure, build and run
 * examples/embed, which uses find_package(nncc) and nncc_add_model().
 */
#include <criterion/criterion.h>
#include <string.h>

#include "harness.h"

Test(embed, install_and_build_a_separate_project, .timeout = 300) {
  char dir[512], log[1 << 15];
  scratch_dir(dir, sizeof dir, "embed");
  int st = run_capture(log, sizeof log, "cmake --install %s --prefix %s/prefix", NNCC_BUILD_DIR,
                       dir);
  cr_assert_eq(st, 0, "cmake --install failed:\n%s", log);
  st = run_capture(log, sizeof log,
                   "cmake -S %s/examples/embed -B %s/build -DCMAKE_PREFIX_PATH=%s/prefix "
                   "-DCMAKE_C_COMPILER=%s && cmake --build %s/build",
                   NNCC_SOURCE_DIR, dir, dir, NNCC_CC, dir);
  cr_assert_eq(st, 0, "building examples/embed failed:\n%s", log);
  st = run_capture(log, sizeof log, "%s/build/embed_demo", dir);
  cr_assert_eq(st, 0, "embed_demo failed:\n%s", log);
  cr_expect(strstr(log, "class ") != NULL, "unexpected output: %s", log);
  cr_expect(strstr(log, "sum of p = 1.000") != NULL, "probabilities do not sum to 1: %s", log);
}
