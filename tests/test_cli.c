/*
 * test_cli.c: the nncc command line, end to end through the real binary.
 *
 * Every case runs NNCC_BIN in a fresh scratch directory holding the model
 * m.nn and an empty output directory out/; stdout and stderr go to files
 * beside out/.  A failed compile must exit 1 with the exact first line
 * `m.nn:LINE:COL: error: ...` (or `nncc: error: ...` where no location
 * applies), the source line and a caret, and leave out/ empty: no .c, no
 * .h, no temporary.  Usage errors exit 2.  Model names that could reach the
 * emitted C (keywords, reserved identifiers, API clashes, names colliding
 * after sanitizing) are either rejected with a located error or give C that
 * compiles with -Werror and passes --verify.
 *
 * Parser-level error tests live in test_frontend.c; these check what a user
 * of the binary sees.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define GOOD_MODEL "model m\ninput x: f32[4]\noutput o = dense(x, 2)\n"

typedef struct Case {
  char dir[512];     /* scratch directory; the child's working directory */
  int status;        /* exit status, -1 if killed by a signal */
  char *out, *err;   /* captured stdout and stderr */
} Case;

/* Captured output lives until the test ends: each suite's .fini frees it
 * (LeakSanitizer checks the test processes too). */
static char *captures[256];
static int ncaptures;

static char *keep(char *s) {
  if (s && ncaptures < (int)(sizeof captures / sizeof *captures))
    captures[ncaptures++] = s;
  return s;
}

static void free_captures(void) {
  while (ncaptures > 0)
    free(captures[--ncaptures]);
}

TestSuite(malformed, .fini = free_captures);
TestSuite(cli, .fini = free_captures);
TestSuite(output, .fini = free_captures);
TestSuite(usage, .fini = free_captures);
TestSuite(help, .fini = free_captures);
TestSuite(names, .fini = free_captures);
TestSuite(examples, .fini = free_captures);
TestSuite(listings, .fini = free_captures);

static void new_case(Case *c, const char *tag) {
  memset(c, 0, sizeof *c);
  scratch_dir(c->dir, sizeof c->dir, tag);
  char out[600];
  snprintf(out, sizeof out, "%s/out", c->dir);
  cr_assert(mkdir(out, 0777) == 0);
}

static void case_path(const Case *c, char *path, size_t cap, const char *name) {
  snprintf(path, cap, "%s/%s", c->dir, name);
}

static void put_file(const Case *c, const char *name, const void *data, size_t len) {
  char path[700];
  case_path(c, path, sizeof path, name);
  FILE *f = fopen(path, "wb");
  cr_assert(f, "cannot write %s", path);
  cr_assert(fwrite(data, 1, len, f) == len);
  fclose(f);
}

/* Runs nncc with args (NULL-terminated) in c->dir, stdin from /dev/null. */
static void run_nncc(Case *c, const char *const *args) {
  char *argv[32] = {(char *)NNCC_BIN};
  int argc = 1;
  for (; args[argc - 1]; argc++) {
    cr_assert(argc < 31);
    argv[argc] = (char *)args[argc - 1];
  }
  argv[argc] = NULL;
  char out_path[700], err_path[700];
  case_path(c, out_path, sizeof out_path, "stdout.txt");
  case_path(c, err_path, sizeof err_path, "stderr.txt");
  fflush(NULL);
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    int in = open("/dev/null", O_RDONLY);
    int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (in < 0 || o < 0 || e < 0 || chdir(c->dir) != 0)
      _exit(127);
    dup2(in, 0);
    dup2(o, 1);
    dup2(e, 2);
    execv(NNCC_BIN, argv);
    _exit(127);
  }
  int st;
  cr_assert(waitpid(pid, &st, 0) == pid);
  c->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  c->out = keep(read_text(out_path));
  c->err = keep(read_text(err_path));
  cr_assert(c->out && c->err);
}

/* Compiles m.nn to out/m.c with extra options (up to 4, NULL-terminated). */
static void compile(Case *c, const char *opt1, const char *opt2) {
  const char *args[] = {"m.nn", "-o", "out/m.c", opt1, opt2, NULL};
  run_nncc(c, args);
}

static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      n++;
  closedir(d);
  return n;
}

static void assert_no_output(const Case *c) {
  char out[600];
  case_path(c, out, sizeof out, "out");
  cr_assert_eq(count_entries(out), 0, "a failed run left files in %s", out);
}

/* Line k (0-based) of s, without its newline, in a static buffer. */
static const char *line_of(const char *s, int k) {
  static char buf[4096];
  for (; k > 0 && s; k--) {
    s = strchr(s, '\n');
    if (s)
      s++;
  }
  if (!s)
    return "";
  size_t n = strcspn(s, "\n");
  if (n >= sizeof buf)
    n = sizeof buf - 1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  return buf;
}

/* Exit 1, stderr = first line, source line, caret line; out/ stays empty. */
static void expect_error(Case *c, const char *first, const char *source, const char *caret) {
  cr_assert_eq(c->status, 1, "exit status %d, stderr:\n%s", c->status, c->err);
  cr_assert_str_eq(line_of(c->err, 0), first, "stderr:\n%s", c->err);
  if (source) {
    cr_assert_str_eq(line_of(c->err, 1), source, "stderr:\n%s", c->err);
    cr_assert_str_eq(line_of(c->err, 2), caret, "stderr:\n%s", c->err);
  }
  assert_no_output(c);
}

/* The whole malformed-model case: write src as m.nn, compile, check. */
static void bad_model(const char *src, const char *first, const char *source, const char *caret) {
  Case c;
  new_case(&c, "bad");
  put_file(&c, "m.nn", src, strlen(src));
  compile(&c, NULL, NULL);
  expect_error(&c, first, source, caret);
}


/* A 32-bit target: Debian's ARM cross compiler (scripts/install-deps), which,
 * unlike gcc-multilib's -m32, can be installed beside the aarch64 one. */
#define CC32 "arm-linux-gnueabihf-gcc"
/* ---- malformed models ------------------------------------------------------- */

Test(malformed, syntax_error) {
  bad_model("model m\ninput x: f32[4]\nh = dense(x, 8\noutput o = h\n",
            "m.nn:4:1: error: expected ',' before 'output'", "output o = h", "^~~~~~");
}

Test(malformed, unknown_op) {
  bad_model("model m\ninput x: f32[4]\noutput o = frobnicate(x)\n",
            "m.nn:3:12: error: unknown op or block 'frobnicate'", "output o = frobnicate(x)",
            "           ^~~~~~~~~~");
}

Test(malformed, unknown_named_argument) {
  bad_model("model m\ninput x: f32[4]\noutput o = dense(x, 8, colour=3)\n",
            "m.nn:3:24: error: dense has no argument 'colour'",
            "output o = dense(x, 8, colour=3)", "                       ^~~~~~");
}

Test(malformed, missing_argument) {
  bad_model("model m\ninput x: f32[4]\noutput o = dense(x)\n",
            "m.nn:3:12: error: dense: missing argument 'units'", "output o = dense(x)",
            "           ^~~~~");
}

Test(malformed, wrong_argument_type) {
  bad_model("model m\ninput x: f32[4]\noutput o = dense(x, \"eight\")\n",
            "m.nn:3:21: error: dense: argument 'units' must be an integer, not a string",
            "output o = dense(x, \"eight\")", "                    ^~~~~~~");
}

Test(malformed, add_of_different_shapes) {
  bad_model("model m\ninput x: f32[4]\ninput z: f32[5]\noutput o = x + z\n",
            "m.nn:4:14: error: add: operand 2 has shape [5], operand 1 has [4]",
            "output o = x + z", "             ^");
}

Test(malformed, dense_on_nothing) {
  bad_model("model m\ninput x: f32[4]\noutput o = dense(8)\n",
            "m.nn:3:12: error: dense takes 1 tensor input, got 0", "output o = dense(8)",
            "           ^~~~~");
}

Test(malformed, duplicate_input) {
  bad_model("model m\ninput x: f32[4]\ninput x: f32[4]\noutput o = dense(x, 2)\n",
            "m.nn:3:7: error: 'x' is already defined", "input x: f32[4]", "      ^");
}

Test(malformed, undefined_name) {
  bad_model("model m\ninput x: f32[4]\noutput o = dense(q, 2)\n",
            "m.nn:3:18: error: undefined name 'q'", "output o = dense(q, 2)",
            "                 ^");
}

Test(malformed, zero_dim) {
  bad_model("model m\ninput x: f32[0]\noutput o = dense(x, 2)\n",
            "m.nn:2:14: error: dimensions must be positive", "input x: f32[0]",
            "             ^");
}

Test(malformed, negative_dim) {
  bad_model("model m\ninput x: f32[-3]\noutput o = dense(x, 2)\n",
            "m.nn:2:14: error: dimensions must be positive", "input x: f32[-3]",
            "             ^");
}

Test(malformed, overflowing_dims) {
  bad_model("model m\ninput x: f32[100000, 100000, 100000]\noutput o = dense(x, 2)\n",
            "m.nn:2:13: error: 'x' is too large (over 2147483648 elements per sample)",
            "input x: f32[100000, 100000, 100000]", "            ^");
}

Test(malformed, dense_too_large) {
  bad_model("model m\ninput x: f32[65536]\noutput o = dense(x, 65536)\n",
            "m.nn:3:12: error: dense: tensor [65536, 65536] is too large (over 2147483648 elements)",
            "output o = dense(x, 65536)", "           ^~~~~");
}

Test(malformed, output_of_undefined) {
  bad_model("model m\ninput x: f32[4]\noutput o = y\n",
            "m.nn:3:12: error: undefined name 'y'", "output o = y", "           ^");
}

/* A megabyte-long identifier: located error, not a crash or a hang. */
Test(malformed, one_megabyte_line) {
  Case c;
  new_case(&c, "long");
  size_t n = 1 << 20;
  const char *head = "model m\ninput x: f32[4]\nh = ";
  char *src = malloc(strlen(head) + n + 64);
  strcpy(src, head);
  memset(src + strlen(head), 'x', n);
  strcpy(src + strlen(head) + n, "\noutput o = dense(x, 2)\n");
  put_file(&c, "m.nn", src, strlen(src));
  free(src);
  compile(&c, NULL, NULL);
  cr_assert_eq(c.status, 1, "stderr:\n%.300s", c.err);
  cr_assert_str_eq(line_of(c.err, 0),
                   "m.nn:3:5: error: identifier is too long (the limit is 64 characters)");
  cr_assert_eq(strncmp(line_of(c.err, 2), "    ^~~~", 8), 0);
  assert_no_output(&c);
}

/* A 1 MB comment line is fine: the model compiles. */
Test(cli, one_megabyte_comment_compiles) {
  Case c;
  new_case(&c, "longc");
  size_t n = 1 << 20;
  char *src = malloc(n + 128);
  strcpy(src, "model m\ninput x: f32[4]\n# ");
  size_t len = strlen(src);
  memset(src + len, 'c', n);
  strcpy(src + len + n, "\noutput o = dense(x, 2)\n");
  put_file(&c, "m.nn", src, strlen(src));
  free(src);
  compile(&c, NULL, NULL);
  cr_assert_eq(c.status, 0, "stderr:\n%.300s", c.err);
}

/* Deterministic random bytes with NULs in them. */
Test(malformed, binary_garbage) {
  Case c;
  new_case(&c, "garbage");
  unsigned char bytes[4096];
  uint64_t s = 0x9e3779b97f4a7c15u;
  for (size_t i = 0; i < sizeof bytes; i++) {
    s = s * 6364136223846793005u + 1442695040888963407u;
    bytes[i] = (unsigned char)(s >> 56);
  }
  bytes[3] = 0;   /* a NUL on the first line */
  memset(bytes, 'M', 3);
  for (int i = 0; i < 3; i++)
    cr_assert(bytes[i] != '\n');
  put_file(&c, "m.nn", bytes, sizeof bytes);
  compile(&c, NULL, NULL);
  cr_assert_eq(c.status, 1, "stderr:\n%.300s", c.err);
  cr_assert_str_eq(line_of(c.err, 0),
                   "m.nn:1:4: error: source file contains a NUL byte (is it a binary file?)");
  assert_no_output(&c);
}

Test(malformed, empty_file) {
  Case c;
  new_case(&c, "empty");
  put_file(&c, "m.nn", "", 0);
  compile(&c, NULL, NULL);
  expect_error(&c, "m.nn:1:1: error: expected 'model' before end of file", "", "^");
}

Test(malformed, missing_file) {
  Case c;
  new_case(&c, "missing");
  compile(&c, NULL, NULL);
  expect_error(&c, "nncc: error: cannot open 'm.nn': No such file or directory", NULL, NULL);
}

/* ---- output files ------------------------------------------------------------ */

static void bad_output(const char *out_path, const char *first) {
  Case c;
  new_case(&c, "badout");
  put_file(&c, "m.nn", GOOD_MODEL, strlen(GOOD_MODEL));
  put_file(&c, "plain", "x", 1);
  const char *args[] = {"m.nn", "-o", out_path, NULL};
  run_nncc(&c, args);
  expect_error(&c, first, NULL, NULL);
  char plain[600];
  case_path(&c, plain, sizeof plain, "plain");
  char *text = read_text(plain);
  cr_assert_str_eq(text, "x");
  free(text);
}

Test(output, directory_does_not_exist) {
  bad_output("out/nope/m.c", "nncc: error: cannot write 'out/nope/m.c': No such file or directory");
}

/* Tests run as root, which writes into read-only directories: a path under
 * a plain file is unwritable for everyone. */
Test(output, path_under_a_file) {
  bad_output("plain/m.c", "nncc: error: cannot write 'plain/m.c': Not a directory");
}

Test(output, output_is_a_directory) {
  Case c;
  new_case(&c, "outdir");
  put_file(&c, "m.nn", GOOD_MODEL, strlen(GOOD_MODEL));
  char d[600];
  case_path(&c, d, sizeof d, "out/m.c");
  cr_assert(mkdir(d, 0777) == 0);
  compile(&c, NULL, NULL);
  cr_assert_eq(c.status, 1);
  cr_assert_str_eq(line_of(c.err, 0), "nncc: error: cannot write 'out/m.c': Is a directory");
  char out[600];
  case_path(&c, out, sizeof out, "out");
  cr_assert_eq(count_entries(out), 1, "only the directory out/m.c may be there");
  cr_assert_eq(count_entries(d), 0);
}

static char *slurp(const Case *c, const char *name, size_t *len) {
  char path[700];
  case_path(c, path, sizeof path, name);
  FILE *f = fopen(path, "rb");
  cr_assert(f, "missing %s", path);
  fseek(f, 0, SEEK_END);
  *len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc(*len + 1);
  cr_assert(fread(s, 1, *len, f) == *len);
  s[*len] = '\0';
  fclose(f);
  return s;
}

Test(output, failed_compile_keeps_old_output) {
  Case c;
  new_case(&c, "keep");
  put_file(&c, "m.nn", GOOD_MODEL, strlen(GOOD_MODEL));
  compile(&c, NULL, NULL);
  cr_assert_eq(c.status, 0, "stderr:\n%s", c.err);
  size_t c_len, h_len;
  char *c_before = slurp(&c, "out/m.c", &c_len), *h_before = slurp(&c, "out/m.h", &h_len);
  const char *bad = "model m\ninput x: f32[4]\noutput o = dense(x, 2, colour=1)\n";
  put_file(&c, "m.nn", bad, strlen(bad));
  compile(&c, NULL, NULL);
  cr_assert_eq(c.status, 1);
  size_t c_len2, h_len2;
  char *c_after = slurp(&c, "out/m.c", &c_len2), *h_after = slurp(&c, "out/m.h", &h_len2);
  cr_assert(c_len == c_len2 && memcmp(c_before, c_after, c_len) == 0, "m.c changed");
  cr_assert(h_len == h_len2 && memcmp(h_before, h_after, h_len) == 0, "m.h changed");
  char out[600];
  case_path(&c, out, sizeof out, "out");
  cr_assert_eq(count_entries(out), 2, "temporary files left in out/");
  free(c_before), free(h_before), free(c_after), free(h_after);
}

/* ---- usage errors ------------------------------------------------------------ */

static void usage_case(const char *opt, const char *first) {
  Case c;
  new_case(&c, "usage");
  put_file(&c, "m.nn", GOOD_MODEL, strlen(GOOD_MODEL));
  compile(&c, opt, NULL);
  cr_assert_eq(c.status, 2, "%s: exit %d, stderr:\n%s", opt, c.status, c.err);
  cr_assert_str_eq(line_of(c.err, 0), first);
  assert_no_output(&c);
}

Test(usage, unknown_option) {
  usage_case("--frobnicate", "nncc: error: unknown option '--frobnicate'");
}

/* Options with a separate value: "--batch 0", "--dtype f16". */
static void usage_value(const char *opt, const char *value, const char *first) {
  Case c;
  new_case(&c, "usage");
  put_file(&c, "m.nn", GOOD_MODEL, strlen(GOOD_MODEL));
  compile(&c, opt, value);
  cr_assert_eq(c.status, 2, "%s %s: exit %d, stderr:\n%s", opt, value, c.status, c.err);
  cr_assert_str_eq(line_of(c.err, 0), first);
  assert_no_output(&c);
}

Test(usage, batch_zero) {
  usage_value("--batch", "0", "nncc: error: --batch takes a whole number from 1 to 1048576, not '0'");
}

Test(usage, dtype_f16) {
  usage_value("--dtype", "f16", "nncc: error: --dtype takes f32 or f64, not 'f16'");
}

Test(usage, fuse_bogus) {
  Case c;
  new_case(&c, "usage");
  put_file(&c, "m.nn", GOOD_MODEL, strlen(GOOD_MODEL));
  compile(&c, "--fuse=bogus", NULL);
  cr_assert_eq(c.status, 2);
  const char *want = "nncc: error: unknown fusion in '--fuse=bogus' (try none, all";
  cr_assert_eq(strncmp(line_of(c.err, 0), want, strlen(want)), 0, "stderr:\n%s", c.err);
  assert_no_output(&c);
}

Test(usage, distributed_other_than_mpi) {
  usage_case("--distributed=nccl", "nncc: error: --distributed takes mpi: --distributed=mpi");
  usage_case("--distributed", "nncc: error: --distributed takes mpi: --distributed=mpi");
}

Test(usage, sync_batchnorm_without_distributed) {
  usage_case("--sync-batchnorm", "nncc: error: --sync-batchnorm sums batchnorm statistics over MPI "
                                 "ranks: it needs --distributed=mpi");
}

Test(usage, distributed_with_infer) {
  Case c;
  new_case(&c, "usage");
  put_file(&c, "m.nn", GOOD_MODEL, strlen(GOOD_MODEL));
  compile(&c, "--distributed=mpi", "--infer");
  cr_assert_eq(c.status, 2);
  cr_assert_str_eq(line_of(c.err, 0), "nncc: error: --distributed=mpi is for training from C: drop --infer and --main");
  assert_no_output(&c);
}

Test(usage, emit_ir_after_unknown_pass) {
  usage_case("--emit-ir=after:nope", "nncc: error: bad pass in '--emit-ir=after:nope' (see --help)");
}

Test(usage, output_not_c) {
  Case c;
  new_case(&c, "usage");
  put_file(&c, "m.nn", GOOD_MODEL, strlen(GOOD_MODEL));
  const char *args[] = {"m.nn", "-o", "out/m.txt", NULL};
  run_nncc(&c, args);
  cr_assert_eq(c.status, 2);
  cr_assert_str_eq(line_of(c.err, 0),
                   "nncc: error: the output file must end in .c, not 'out/m.txt'");
  assert_no_output(&c);
}

/* ---- --help ------------------------------------------------------------------ */

/* Every option literal driver/options.c compares against ("--batch",
 * "--fuse=", "-o", ...) must appear in --help. */
Test(help, mentions_every_option) {
  Case c;
  new_case(&c, "help");
  const char *args[] = {"--help", NULL};
  run_nncc(&c, args);
  cr_assert_eq(c.status, 0);
  char *src = read_text(NNCC_SOURCE_DIR "/driver/options.c");
  cr_assert(src);
  int found = 0;
  for (const char *p = src; (p = strstr(p, "cmp(a, \"-")); p++) {
    const char *start = p + strlen("cmp(a, \"");
    size_t n = strspn(start, "-abcdefghijklmnopqrstuvwxyz");
    char opt[64];
    cr_assert(n > 1 && n < sizeof opt);
    memcpy(opt, start, n);
    opt[n] = '\0';
    cr_expect(strstr(c.out, opt), "--help does not mention %s", opt);
    found++;
  }
  cr_assert_gt(found, 10, "found only %d options in main.c", found);
  free(src);
}

/* README.md quotes --help: every option line must be there verbatim. */
Test(help, readme_quotes_help) {
  Case c;
  new_case(&c, "help");
  const char *args[] = {"--help", NULL};
  run_nncc(&c, args);
  char *readme = read_text(NNCC_SOURCE_DIR "/README.md");
  cr_assert(readme);
  for (int k = 0; *line_of(c.out, k) || *line_of(c.out, k + 1); k++) {
    const char *l = line_of(c.out, k);
    if (strncmp(l, "  ", 2) == 0)
      cr_expect(strstr(readme, l), "README.md lacks the --help line '%s'", l);
  }
  free(readme);
}

/* ---- names that reach the emitted C ----------------------------------------- */

/* Comments and code of a C file: `code` gets the text outside comments and
 * literals; returns false if a comment holds "?\?/" or a backslash-newline
 * (either would splice the next line into the comment). */
static bool split_c(const char *s, char *code) {
  size_t k = 0;
  bool ok = true;
  while (*s) {
    if (s[0] == '/' && s[1] == '*') {
      const char *end = strstr(s + 2, "*/");
      cr_assert(end, "unterminated comment");
      for (const char *q = s; q < end; q++)
        ok &= !(q[0] == '?' && q[1] == '?' && q[2] == '/') && !(q[0] == '\\' && q[1] == '\n');
      s = end + 2;
      code[k++] = ' ';
    } else if (s[0] == '/' && s[1] == '/') {
      for (; *s && *s != '\n'; s++)
        ok &= !(s[0] == '?' && s[1] == '?' && s[2] == '/') && !(s[0] == '\\' && s[1] == '\n');
    } else if (*s == '"' || *s == '\'') {
      char q = *s++;
      for (; *s && *s != q; s++)
        if (*s == '\\' && s[1])
          s++;
      if (*s)
        s++;
      code[k++] = '0';
    } else {
      code[k++] = *s++;
    }
  }
  code[k] = '\0';
  return ok;
}

/* src either fails with a located error and no output, or compiles, passes
 * --verify, builds with gcc -Werror and has no text outside comments and
 * literals containing `marker`. */
static void name_case(const char *src, const char *marker) {
  Case c;
  new_case(&c, "names");
  put_file(&c, "m.nn", src, strlen(src));
  compile(&c, "--verify", NULL);
  if (c.status == 1) {
    const char *first = line_of(c.err, 0);
    int line, col;
    char rest[32];
    cr_assert(sscanf(first, "m.nn:%d:%d: error: %31s", &line, &col, rest) == 3,
              "not a located error: %s", c.err);
    cr_assert(strchr(line_of(c.err, 2), '^'), "no caret: %s", c.err);
    assert_no_output(&c);
    return;
  }
  cr_assert_eq(c.status, 0, "nncc exit %d:\n%s", c.status, c.err);
  char log[8192];
  int st = run_capture(log, sizeof log,
                       "cd %s/out && gcc -std=c11 -Wall -Wextra -Werror -pedantic -fopenmp "
                       "-c m.c -o m.o && gcc -std=c11 -Wall -Wextra -Werror -pedantic -c m.c "
                       "-o m0.o",
                       c.dir);
  cr_assert_eq(st, 0, "gcc rejects the emitted C:\n%s", log);
  const char *files[] = {"out/m.c", "out/m.h"};
  for (int i = 0; i < 2; i++) {
    size_t len;
    char *text = slurp(&c, files[i], &len);
    char *code = malloc(len + 1);
    cr_expect(split_c(text, code), "%s: a comment splices the next line", files[i]);
    cr_expect(!strstr(text, "?\?/"), "%s holds a trigraph", files[i]);
    if (marker)
      cr_expect(!strstr(code, marker), "%s: '%s' escaped into code", files[i], marker);
    free(text);
    free(code);
  }
}

Test(names, c_keywords_as_layer_names) {
  name_case("model m\ninput x: f32[4]\n"
            "h = dense(x, 8, name=\"return\") |> relu(name=\"int\")\n"
            "output o = dense(h, 2, name=\"while\")\n", NULL);
}

Test(names, c_keyword_as_input) {
  name_case("model m\ninput int: f32[4]\noutput o = dense(int, 2)\n", NULL);
}

Test(names, c_keyword_as_output) {
  name_case("model m\ninput x: f32[4]\noutput return = dense(x, 2)\n", NULL);
}

Test(names, reserved_identifiers_as_layer_names) {
  name_case("model m\ninput x: f32[4]\nh = dense(x, 3, name=\"_Foo\")\n"
            "output o = dense(h, 2, name=\"a__b\")\n", NULL);
}

Test(names, reserved_identifiers_as_input_and_output) {
  name_case("model m\ninput _Foo: f32[4]\noutput o = dense(_Foo, 2)\n", NULL);
  name_case("model m\ninput x: f32[4]\noutput a__b = dense(x, 2)\n", NULL);
}

Test(names, clash_with_generated_api) {
  name_case("model m\ninput m_forward: f32[4]\nh = dense(m_forward, 3, name=\"forward\")\n"
            "h = dense(h, 3, name=\"create\")\n"
            "output m_create = dense(h, 2, name=\"m_tensor\")\n", NULL);
}

Test(names, clash_with_generated_locals) {
  name_case("model m\ninput x: f32[4]\ntarget loss: class[2]\nh = dense(x, 2, name=\"m\")\n"
            "output fail = h\nloss cross_entropy(h, loss)\n", NULL);
  name_case("model m\ninput n: f32[4]\noutput o = dense(n, 2)\n", NULL);
}

Test(names, dotted_names_collide_after_sanitizing) {
  name_case("model m\ninput x: f32[4]\nh = dense(x, 3, name=\"a.b\")\n"
            "output o = dense(h, 2, name=\"a_b\")\n", NULL);
}

Test(names, model_named_like_the_runtime) {
  name_case("model nn_x\ninput x: f32[4]\noutput o = dense(x, 2)\n", NULL);
  name_case("model int\ninput x: f32[4]\noutput o = dense(x, 2)\n", NULL);
}

Test(names, comment_and_trigraph_injection) {
  name_case("model m\ninput x: f32[4]\n"
            "output o = dense(x, 2, name=\"x*/ int injected_code; /*\")\n", "injected_code");
  name_case("model m\ninput x: f32[4]\noutput o = dense(x, 2, name=\"x?\?/\")\n", NULL);
  name_case("model m\ninput x: f32[4]\noutput o = dense(x, 2, name=\"x\\\\\")\n", NULL);
}

/* ---- listings and --verify ---------------------------------------------------- */

Test(examples, verify_every_example) {
  glob_t g;
  int rc = glob(NNCC_SOURCE_DIR "/examples/*.nn", 0, NULL, &g);
  cr_assert_eq(rc, 0, "no examples/*.nn");
  for (size_t i = 0; i < g.gl_pathc; i++) {
    Case c;
    new_case(&c, "example");
    const char *base = strrchr(g.gl_pathv[i], '/') + 1;
    char out[600];
    snprintf(out, sizeof out, "out/%.*s.c", (int)(strlen(base) - 3), base);
    const char *args[] = {g.gl_pathv[i], "-o", out, "--verify", NULL};
    run_nncc(&c, args);
    cr_expect_eq(c.status, 0, "%s: exit %d\n%s", base, c.status, c.err);
  }
  globfree(&g);
}

/* A listing option without -o prints and writes no C file. */
static void listing(const char *opt, const char *must_contain, Case *c) {
  new_case(c, "listing");
  put_file(c, "m.nn", GOOD_MODEL, strlen(GOOD_MODEL));
  const char *args[] = {"m.nn", opt, NULL};
  run_nncc(c, args);
  cr_assert_eq(c->status, 0, "%s: stderr:\n%s", opt, c->err);
  cr_assert(strstr(c->out, must_contain), "%s output lacks '%s':\n%s", opt, must_contain,
            c->out);
  char path[700];
  case_path(c, path, sizeof path, "m.c");
  cr_assert(access(path, F_OK) != 0, "%s without -o wrote m.c", opt);
  case_path(c, path, sizeof path, "m.h");
  cr_assert(access(path, F_OK) != 0, "%s without -o wrote m.h", opt);
}

Test(listings, emit_ir) {
  Case c;
  listing("--emit-ir", "dense", &c);
}

Test(listings, emit_ir_after_fuse) {
  Case c;
  listing("--emit-ir=after:fuse", "dense", &c);
}

Test(listings, report) {
  Case c;
  listing("--report", "arena", &c);
  cr_assert(strstr(c.out, "lower bound"));
}

Test(listings, emit_dot_parses) {
  Case c;
  listing("--emit-dot", "digraph", &c);
  if (run("command -v dot >/dev/null") != 0) {
    cr_log_warn("graphviz not installed: dot output not parsed");
    return;
  }
  char log[4096];
  int st = run_capture(log, sizeof log, "dot -Tsvg %s/stdout.txt -o %s/m.svg", c.dir, c.dir);
  cr_assert_eq(st, 0, "dot rejects --emit-dot output:\n%s", log);
}

Test(listings, listing_with_output_writes_both) {
  Case c;
  new_case(&c, "listing");
  put_file(&c, "m.nn", GOOD_MODEL, strlen(GOOD_MODEL));
  compile(&c, "--report", NULL);
  cr_assert_eq(c.status, 0, "stderr:\n%s", c.err);
  char out[600];
  case_path(&c, out, sizeof out, "out");
  cr_assert_eq(count_entries(out), 2);
}

/* ---- sizes: checked 64-bit arithmetic ------------------------------------- */

TestSuite(sizes, .fini = free_captures);

/* n tensors of 2^31 - 1 elements per sample, all live until a chain of adds
 * reads them: at --batch 1048576 each is 2^51 elements. */
static void put_wide_model(Case *c, int n) {
  size_t cap = (size_t)n * 40 + 256, len = 0;
  char *text = malloc(cap);
  len += (size_t)snprintf(text + len, cap - len, "model m\ninput x: f32[2147483647]\n");
  for (int i = 0; i < n; i++)
    len += (size_t)snprintf(text + len, cap - len, "a%d = relu(x)\n", i);
  len += (size_t)snprintf(text + len, cap - len, "s = a0 + a1\n");
  for (int i = 2; i < n; i++)
    len += (size_t)snprintf(text + len, cap - len, "s = s + a%d\n", i);
  len += (size_t)snprintf(text + len, cap - len, "output s\n");
  put_file(c, "m.nn", text, len);
  free(text);
}

/* ~4,100 live tensors used to overflow the planner's sums: a wrapped arena
 * size in the emitted code and negative bytes in --report.  Now an error
 * that names the tensor, and nothing is written. */
Test(sizes, many_live_tensors_are_an_error_not_a_wrap, .timeout = 120) {
  const int counts[] = {4100, 1100};
  for (int k = 0; k < 2; k++) {
    Case c;
    new_case(&c, "wide");
    put_wide_model(&c, counts[k]);
    const char *args[] = {"m.nn", "-o", "out/m.c", "--dtype", "f64", "--batch", "1048576",
                          "--fuse=none", "--report", NULL};
    run_nncc(&c, args);
    cr_expect_eq(c.status, 1, "%d tensors: status %d\n%s", counts[k], c.status, c.err);
    cr_expect(strstr(c.err, "error: tensor 'relu") && strstr(c.err, "2^58 elements at batch 1048576"),
              "%d tensors: %s", counts[k], c.err);
    cr_expect(!strstr(c.out, "-"), "negative numbers in --report:\n%s", c.out);
    char out[600];
    case_path(&c, out, sizeof out, "out");
    cr_expect_eq(count_entries(out), 0);
  }
}

/* The largest sizes that fit come out right: --report's bytes are the
 * emitted NN_ARENA_SIZE times 8, and memory_size() is that and a little. */
Test(sizes, huge_but_valid_model_has_exact_sizes, .timeout = 120) {
  Case c;
  new_case(&c, "huge");
  put_wide_model(&c, 100);
  const char *args[] = {"m.nn", "-o", "out/m.c", "--dtype", "f64", "--batch", "1048576",
                        "--fuse=none", "--report", NULL};
  run_nncc(&c, args);
  cr_assert_eq(c.status, 0, "%s", c.err);
  char path[700];
  case_path(&c, path, sizeof path, "out/m.c");
  char *src = keep(read_text(path));
  const char *def = strstr(src, "#define NN_ARENA_SIZE ");
  cr_assert(def);
  long long arena = strtoll(def + 22, NULL, 10);
  /* 100 tensors of (2^31 - 1) * 2^20 reals, 16-aligned, two live at a time
   * at least: the exact plan is the planner's, the bytes must agree. */
  cr_assert_gt(arena, 2LL * 2147483647LL * 1048576LL);
  char line[128];
  snprintf(line, sizeof line, "%lld bytes (planned)", arena * 8);
  cr_expect(strstr(c.out, line), "--report does not say %s:\n%s", line, c.out);
  cr_expect(!strstr(c.out, " -"), "negative numbers in --report:\n%s", c.out);

  /* memory_size() on this 64-bit host: the blocks' bytes, not a wrapped value */
  char so[700], log[8192];
  case_path(&c, so, sizeof so, "out/m.so");
  int st = run_capture(log, sizeof log, "cd %s/out && %s -std=c11 -Wall -Wextra -Werror -shared -fPIC m.c -o m.so",
                       c.dir, NNCC_CC);
  cr_assert_eq(st, 0, "%s", log);
  void *lib = dlopen(so, RTLD_NOW);
  cr_assert(lib, "%s", dlerror());
  size_t (*memory_size)(void) = (size_t (*)(void))dlsym(lib, "m_memory_size");
  cr_assert(memory_size);
  unsigned long long got = memory_size(), blocks = (unsigned long long)arena * 8;
  cr_expect(got >= blocks && got < blocks + (1 << 20), "memory_size() = %llu, arena %llu bytes",
            got, blocks);
  dlclose(lib);

  /* on a 32-bit target the same file must not compile */
  st = run_capture(log, sizeof log, "cd %s/out && %s -std=c11 -fsyntax-only m.c", c.dir, CC32);
  cr_expect_neq(st, 0, "a model of %llu bytes compiles for a 32-bit target", blocks);
  cr_expect(strstr(log, "does not fit size_t on this target"), "%s", log);
}

/* A model that fits compiles for a 32-bit target: the checks are not
 * always false. */
Test(sizes, small_model_compiles_for_32_bit) {
  Case c;
  new_case(&c, "m32");
  put_file(&c, "m.nn", GOOD_MODEL, strlen(GOOD_MODEL));
  compile(&c, NULL, NULL);
  cr_assert_eq(c.status, 0, "%s", c.err);
  char log[8192];
  int st = run_capture(log, sizeof log, "cd %s/out && %s -std=c11 -Wall -Wextra -Werror -fsyntax-only m.c",
                       c.dir, CC32);
  cr_expect_eq(st, 0, "%s", log);
}

/* ---- output files: unique temporaries, never through a link ---------------- */

/* "out/m.c.tmp<pid>" was the temporary: a link planted at that guessable
 * name made nncc write through it.  Links at every such name for the next
 * 3000 pids, and at the new names' prefixes, must all be left alone. */
Test(output, planted_symlinks_are_not_followed, .timeout = 60) {
  Case c;
  new_case(&c, "symlink");
  put_file(&c, "m.nn", GOOD_MODEL, strlen(GOOD_MODEL));
  put_file(&c, "victim", "precious", 8);
  char victim[700], link[700];
  case_path(&c, victim, sizeof victim, "victim");
  int links = 0;
  for (int pid = (int)getpid() + 1; pid <= (int)getpid() + 3000; pid++)
    for (int h = 0; h < 2; h++) {
      snprintf(link, sizeof link, "%s/out/m.%s.tmp%d", c.dir, h ? "h" : "c", pid);
      cr_assert_eq(symlink(victim, link), 0);
      links++;
    }
  const char *names[] = {"out/.m.c.tmp", "out/.m.h.tmp"};
  for (int i = 0; i < 2; i++, links++) {
    case_path(&c, link, sizeof link, names[i]);
    cr_assert_eq(symlink(victim, link), 0);
  }
  compile(&c, NULL, NULL);
  cr_assert_eq(c.status, 0, "%s", c.err);
  char *v = keep(read_text(victim));
  cr_assert_str_eq(v, "precious", "nncc wrote through a symlink");
  char out[700];
  case_path(&c, out, sizeof out, "out");
  cr_assert_eq(count_entries(out), links + 2, "m.c, m.h and the links, nothing else");
}

/* Eight nncc processes write the same outputs at once: each file is whole,
 * byte for byte one run's, and no temporary is left.  (m.c and m.h may come
 * from different runs: two files cannot be replaced in one step.) */
Test(output, concurrent_runs_never_mix_outputs, .timeout = 120) {
  Case c;
  new_case(&c, "concurrent");
  put_file(&c, "m.nn", GOOD_MODEL, strlen(GOOD_MODEL));
  char log[8192];
  int st = run_capture(log, sizeof log,
                       "cd '%s' && for i in 1 2 3 4 5 6 7 8; do mkdir ref$i && "
                       "'%s' m.nn -o ref$i/m.c --batch $i || exit 1; done; "
                       "for i in 1 2 3 4 5 6 7 8; do '%s' m.nn -o out/m.c --batch $i & done; "
                       "fail=0; for i in 1 2 3 4 5 6 7 8; do wait %%$i || fail=1; done; exit $fail",
                       c.dir, NNCC_BIN, NNCC_BIN);
  cr_assert_eq(st, 0, "%s", log);
  char out[700];
  case_path(&c, out, sizeof out, "out");
  cr_assert_eq(count_entries(out), 2, "temporaries left behind");
  const char *files[] = {"m.c", "m.h"};
  for (int f = 0; f < 2; f++) {
    char path[700];
    snprintf(path, sizeof path, "%s/out/%s", c.dir, files[f]);
    char *got = keep(read_text(path));
    int same = 0;
    for (int i = 1; i <= 8 && !same; i++) {
      snprintf(path, sizeof path, "%s/ref%d/%s", c.dir, i, files[f]);
      char *want = keep(read_text(path));
      same = want && strcmp(got, want) == 0;
    }
    cr_expect(same, "out/%s is not any one run's output", files[f]);
  }
}

/* A model with no params, buffers or arena: NN_BLOCKS_BYTES is 0, and its
 * size check must not be a -Wtype-limits warning (0ULL <= x was). */
Test(sizes, model_without_memory_compiles_clean) {
  static const char model[] = "model m\ninput x: f32[4]\noutput o = relu(x)\n";
  Case c;
  new_case(&c, "nomem");
  put_file(&c, "m.nn", model, strlen(model));
  compile(&c, "--infer", NULL);
  cr_assert_eq(c.status, 0, "%s", c.err);
  char path[700];
  case_path(&c, path, sizeof path, "out/m.c");
  char *src = keep(read_text(path));
  cr_assert(strstr(src, "#define NN_BLOCKS_BYTES 0ULL"), "the model has memory after all");
  const char *ccs[] = {"gcc", "clang"};
  for (int i = 0; i < 2; i++) {
    if (run("command -v %s >/dev/null 2>&1", ccs[i]) != 0)
      continue;
    char log[8192];
    int st = run_capture(log, sizeof log,
                         "cd %s/out && %s -std=c11 -Wall -Wextra -Werror -pedantic -c m.c -o m.o",
                         c.dir, ccs[i]);
    cr_expect_eq(st, 0, "%s:\n%s", ccs[i], log);
  }
}
