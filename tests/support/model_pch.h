/*
 * model_pch.h: the system headers every emitted model includes, in the
 * prelude's order (codegen/codegen.c, runtime/nn_gemm.c), precompiled by
 * tests/CMakeLists.txt for the models the tests build with gcc.  Parsing
 * them (<immintrin.h> above all) was about a quarter of each sanitized
 * model's compile, and compiling models is most of the suite's time.
 * test_codegen.pch_headers_are_the_models checks that this file includes
 * nothing a model does not.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_XOPEN_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if !defined(NN_PORTABLE) && defined(__x86_64__)
#include <immintrin.h>
#endif
