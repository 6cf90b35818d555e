/*
 * nn_init.c: parameter initializers.
 *
 * Each fills n values of a parameter tensor, drawing from the caller's rng
 * in index order, so a tensor's initial values depend only on its seed and
 * stream.  The code generator turns Xavier/He/LeCun rules into the std or
 * limit passed here (it knows fan_in and fan_out); these stay rule-agnostic.
 * Weight matrices are (units, fan_in) row-major, as PyTorch stores them.
 */

/* Runtime files are pasted in file-name order and nn_rng.c comes after this
 * one: declare the part of it used here. */
typedef struct nn_rng nn_rng;
static double nn_rng_uniform(nn_rng *r);
static double nn_rng_normal(nn_rng *r);

static NN_UNUSED void nn_init_fill(real *p, size_t n, double v) {
  for (size_t i = 0; i < n; i++)
    p[i] = (real)v;
}

/* N(0, std^2) */
static NN_UNUSED void nn_init_normal(real *p, size_t n, double std, nn_rng *r) {
  for (size_t i = 0; i < n; i++)
    p[i] = (real)(std * nn_rng_normal(r));
}

/* U(-limit, limit) */
static NN_UNUSED void nn_init_uniform(real *p, size_t n, double limit, nn_rng *r) {
  for (size_t i = 0; i < n; i++)
    p[i] = (real)(limit * (2.0 * nn_rng_uniform(r) - 1.0));
}

/*
 * Sparse init (Martens 2010): p is (units, fan_in); each row gets exactly
 * min(k, fan_in) nonzero N(0, std^2) entries at distinct random positions,
 * the rest 0.  Positions come from selection sampling (Knuth's Algorithm S):
 * walking the row, take position j with probability need / (fan_in - j).
 * That picks exactly `need` positions, uniformly, with no scratch memory.
 * A value that rounds to exactly 0 is redrawn, so the count holds whenever
 * std is not 0 or so tiny that real underflows.
 */
static NN_UNUSED void nn_init_sparse(real *p, size_t units, size_t fan_in, int k,
                                     double std, nn_rng *r) {
  size_t want = k <= 0 ? 0 : (size_t)k < fan_in ? (size_t)k : fan_in;
  for (size_t u = 0; u < units; u++) {
    real *row = p + u * fan_in;
    size_t need = want;
    for (size_t j = 0; j < fan_in; j++) {
      row[j] = 0;
      if (need == 0 || nn_rng_uniform(r) * (double)(fan_in - j) >= (double)need)
        continue;
      for (int tries = 0; row[j] == 0 && tries < 16; tries++)
        row[j] = (real)(std * nn_rng_normal(r));
      need--;
    }
  }
}
