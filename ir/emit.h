/*
 * emit.h: the emit kit, what the op files (ir/ops/) need to write kernels.
 *
 * It sits beside the IR so that the ops never include codegen: codegen
 * calls the ops' emitters, the ops call only this kit: ir/emit.c, and
 * ir/product.c for the loops of a packed product.
 *
 * Kernel conventions.  codegen writes, for every live node, a function
 *
 *   // conv1: x (N,1,28,28) -> y (N,6,28,28), w (6,1,5,5)    model.nn:7
 *   static void conv1_forward(real *restrict y, const real *restrict x,
 *                             const real *restrict w, const real *restrict b, int n)
 *   {
 *       <body written by OpDef.emit>
 *   }
 *
 * Outputs come first, then inputs, named by OpDef.out_names / in_names ("x0",
 * "x1", ... when those are NULL), then (ROLE_RNG only) `uint64_t seed`, then
 * the runtime batch size `n` (1..max batch).  Every other size is a
 * constant: emit it with %d from the shapes.
 * Batched tensors are dense (n, per-sample shape...) in row-major order.
 * The element type is `real` (float or double, per --dtype); labels are
 * int32_t.  Use the helpers rexp/rexpm1/rlog/rlog1p/rsquare_root/rtanh/rfabs/
 * rmax/rmin (static inline in the prelude) and lit() for constants so one
 * body serves f32 and f64.  Parallelize the outer loop with emit_omp_for(); the body must give
 * bit-identical results for any thread count (no float reductions across
 * threads).
 */
#ifndef EMIT_H
#define EMIT_H

#include <string.h>

#include "nncc.h"

/* The micro-kernel's tile of runtime/nn_gemm.c is NN_MR x NN_NR (12
 * accumulators of two 512-bit vectors of f32 per row, enough to hide the FMA
 * latency), the dot-product kernel's NN_DR x NN_DR; NN_VL lanes of partial
 * sums in portable reductions.  The prelude #defines these names in the
 * generated C. */
enum { NN_MR = 6, NN_NR = 32, NN_DR = 4, NN_VL = 16 };

struct Emit {
  Ctx *ctx;
  Buf *b;
  int indent;
  const Graph *g;
  double work;   /* of the kernel being emitted, per sample: FLOPs, or 4 per output value */
  bool shared;   /* the kernel has work-shared loops (emit_omp_for, emit_omp) */
  bool engine;   /* its products run on the micro-kernels (emit_engine) */
};

/* Threads.  forward() and gradients() open one parallel region of at most
 * --threads threads around their kernel calls (codegen emit_calls); a
 * kernel's loops are work-shared among that team ("omp for", static splits,
 * each ending in the implicit barrier), and code outside them runs on every
 * thread, so it only computes locals.  A kernel whose work at the largest
 * batch is below NN_SHARE_WORK (about 10-20 us on one core: less than
 * splitting it saves) emits no OpenMP at all, and the call runs it on one
 * thread ("omp single"), next to the other small kernels around it. */
#define NN_SHARE_WORK 1e6

/* "const nn_ukr_fn ukr = nn_ukr_pick();", or with `dot` the dot-product
 * kernel's "const nn_ukr_nt_fn dot = nn_ukr_nt_pick();": the kernel's
 * products run on the micro-kernels of runtime/nn_gemm.c, which pick their
 * vector code by cpuid themselves, so codegen does not clone the kernel
 * (NN_CLONES) as it does every other. */
void emit_engine(Emit *e, bool dot);
/* Appends one line at the current indentation.  A line ending in '{' indents
 * the following lines; a line starting with '}' dedents itself. */
void emitln(Emit *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "#ifdef _OPENMP / #pragma omp for <clauses> / #endif" before a kernel's
 * loop: work-shared in the caller's region; clauses may be "". */
void emit_omp_for(Emit *e, const char *clauses);
/* "#ifdef _OPENMP / #pragma omp <directive> / #endif" in a kernel: "for
 * collapse(2)", "single", ...: a kernel never opens a region of its own. */
void emit_omp(Emit *e, const char *directive);
/* "#pragma omp parallel for <clauses>" outside the kernels (the optimizer's
 * update(), which is a region of its own). */
void emit_omp_parallel_for(Emit *e, const char *clauses);
/* The one-argument math helpers of the prelude, one row each: the name op
 * bodies use and the libm function it calls (with an f suffix in f32).
 * rmax and rmin take two.  Model names must not shadow any of them
 * (frontend/parse.c reserves them from this table). */
#define PRELUDE_MATH(X)                                                           \
  X(rexp, exp) X(rlog, log) X(rsquare_root, sqrt) X(rtanh, tanh) X(rfabs, fabs) \
  X(rlog1p, log1p) X(rexpm1, expm1)

/* A real literal: "0.5f" in f32, "0.5" in f64 (arena string). */
const char *lit(Emit *e, double v);
/* The value lit()'s literal has in the generated code (for OpDef.eval). */
double lit_value(DType dtype, double v);
/* Applies the fused epilogue of `node` (elementwise nodes absorbed into it)
 * to the expression `acc` at channel index expression `c`, flat index `i`:
 * returns the final expression (arena string).  Without epilogue: acc.  For
 * chains it first emits one `const real fusedK = ...;` line per step, so call
 * it once per block, right before the store that uses its result. */
const char *epilogue_expr(Emit *e, const Node *node, const char *acc, const char *c,
                          const char *i);
/* Whether node's epilogue reads a batched tensor (a residual add): then it
 * needs the flat index i of each value, not just its channel. */
bool epilogue_reads_batched(const Graph *g, const Node *node);
/* The expression reading input j of node at flat index i (channel c):
 * "dy[i]", or for a ROLE_PROLOGUE kernel with a fused prologue, that
 * elementwise op recomputed from its own inputs ("(y[i] > 0 ? dy[i] : 0)",
 * its extra operands arriving as arguments "pro_<k>"). */
const char *input_expr(Emit *e, const Node *node, int j, const char *i, const char *c);
/* The name of kernel argument k of node: outputs first, then inputs
 * (OpDef.out_names / in_names are NULL-terminated; beyond them "y<k>"/"x<k>").
 * Extra inputs j >= 1 of epilogue node k arrive as arguments "ep<k>_<j>". */
const char *arg_name(Emit *e, const Node *node, int k);

/* product.c: the loops of a packed product C (M x N) = A (M x K) . B (K x N)
 * into the node's workspace `ws`; A(i, k) = a[i * ars + k * acs], B(k, j) =
 * b[k * brs + j * bcs].  m and k are C expressions (the batch "n" may be
 * one), at most max_m and max_k; n is constant.  Emit the store of tile t
 * (rows r0 + i < r0 + mr, columns c0 + j < c0 + nr, value t[i * NN_NR + j])
 * between emit_product() and emit_product_end(). */
typedef struct Product {
  const char *m, *k;
  long max_m, max_k, n;
  const char *a, *ars, *acs;
  const char *b, *brs, *bcs;
} Product;
long product_reals(const Product *p);   /* the workspace, in reals */
void emit_product(Emit *e, const Product *p);
void emit_product_end(Emit *e);

/* The whole kernel of a ROLE_ELEMENTWISE op, from its scalar() rule. */
void emit_elementwise(Emit *e, const Graph *g, const Node *node);
/* Whether the planner put node's output over its first input (in place):
 * the kernel then has no parameter for that input. */
bool writes_over_input(const Graph *g, const Node *node);

/* ir/ops/flatten.c, for every ROLE_VIEW op (flatten, reshape): the copy
 * kernel, run only where the view is impossible (the output is a model
 * output), and the gradient, the same op back to the input's shape. */
void emit_view_copy(Emit *e, const Graph *g, const Node *node);
void view_backward(Graph *g, Node *node, const int *dout, const bool *need, int *din);

/* `type sums[q]` for q < count: the sum over channel c of a (N, C, s)
 * tensor of exprs[q] (k indexes the element), in a fixed order that
 * vectorizes (SUM_LANES partial sums of that type; see emit.c).  `fill`, if
 * not NULL, runs over each sample's block first; `reads` (NULL-terminated,
 * or NULL) names the arrays to prefetch a sample ahead. */
void emit_channel_sums(Emit *e, const char *type, int c, long s, int count,
                       const char *const *sums, const char *const *exprs, const char *fill,
                       const char *const *reads);

/* The kernels without workspace (matrix-vector dense, pointwise conv2d
 * read in place): at --batch 1 they are also the fastest, and under
 * --memory-budget they are what fits. */
static inline bool workspace_free(const Graph *g) { return g->max_batch == 1 || g->memory_first; }

#endif
