/*
 * product.c: the loops of a packed matrix product C (M x N) = A (M x K) .
 * B (K x N) on the engine of runtime/nn_gemm.c, for kernels whose operands
 * are plain strided matrices (dense dx and dw).
 *
 * Both operands are packed whole into the node's workspace (one parallel
 * pass each), then each NN_MR x NN_NR tile is one micro-kernel call over
 * the full depth; tiles are dealt to the threads column panel by column
 * panel, so consecutive tiles of a thread share their B panel in the
 * caches.  The caller emits the store of the tile `t` between
 * emit_product() and emit_product_end(), with r0, c0 (the tile's first row
 * and column) and mr, nr (its rows and columns in C) in scope.
 */
#include "emit.h"

long product_reals(const Product *p) {
  long mt = (p->max_m + NN_MR - 1) / NN_MR, nt = (p->n + NN_NR - 1) / NN_NR;
  return (mt * NN_MR + nt * NN_NR) * p->max_k;
}

void emit_product(Emit *e, const Product *p) {
  long mt = (p->max_m + NN_MR - 1) / NN_MR, nt = (p->n + NN_NR - 1) / NN_NR;
  emit_engine(e, false);
  emitln(e, "const int mtiles = ((%s) + NN_MR - 1) / NN_MR;", p->m);
  emitln(e, "real *const ap = ws, *const bp = ws + %ldL * (%s);", mt * NN_MR, p->k);
  emitln(e, "{");
  emit_omp(e, "for");
  emitln(e, "for (int mt = 0; mt < mtiles; mt++) {");
  emitln(e, "const int mr = (%s) - mt * NN_MR < NN_MR ? (%s) - mt * NN_MR : NN_MR;", p->m, p->m);
  emitln(e, "nn_pack_a(ap + (long)mt * NN_MR * (%s), %s + (long)mt * NN_MR * %s, %s, %s, mr, %s);",
         p->k, p->a, p->ars, p->ars, p->acs, p->k);
  emitln(e, "}");
  emit_omp(e, "for");
  emitln(e, "for (int nt = 0; nt < %ld; nt++) {", nt);
  emitln(e, "const int nr = %ld - nt * NN_NR < NN_NR ? %ld - nt * NN_NR : NN_NR;", p->n, p->n);
  emitln(e, "nn_pack_b(bp + (long)nt * NN_NR * (%s), %s + (long)nt * NN_NR * %s, %s, %s, nr, %s);",
         p->k, p->b, p->bcs, p->brs, p->bcs, p->k);
  emitln(e, "}");
  emit_omp(e, "for collapse(2) schedule(static)");
  emitln(e, "for (int nt = 0; nt < %ld; nt++) {", nt);
  emitln(e, "for (int mt = 0; mt < mtiles; mt++) {");
  emitln(e, "const int r0 = mt * NN_MR, c0 = nt * NN_NR;");
  emitln(e, "const int mr = (%s) - r0 < NN_MR ? (%s) - r0 : NN_MR;", p->m, p->m);
  emitln(e, "const int nr = %ld - c0 < NN_NR ? %ld - c0 : NN_NR;", p->n, p->n);
  emitln(e, "real t[NN_MR * NN_NR];");
  emitln(e, "ukr(t, ap + (long)mt * NN_MR * (%s), 1, NN_MR, bp + (long)nt * NN_NR * (%s), "
            "(int)(%s), 1, NN_NR, 0, 0);",
         p->k, p->k, p->k);
}

void emit_product_end(Emit *e) {
  emitln(e, "}");
  emitln(e, "}");
  emitln(e, "}");
}
