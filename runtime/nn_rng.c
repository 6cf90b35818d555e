/*
 * nn_rng.c: deterministic random numbers for initialization and dropout.
 *
 * The generator is splitmix64 (Steele, Lea & Flood, "Fast splittable
 * pseudorandom number generators", OOPSLA 2014): a 64-bit Weyl counter
 * advanced by the golden-ratio gamma and passed through a strong bit mixer.
 * One word of state, period 2^64, passes BigCrush; plenty for drawing initial
 * weights.  All arithmetic is on uint64_t, so the sequence is the same on
 * every platform and compiler.
 *
 * Streams: nn_rng_seed(r, seed, stream) hashes (seed, stream) into a starting
 * point of the cycle.  Two streams only overlap if their starting points lie
 * within the number of draws of each other, probability ~ draws / 2^64, so
 * each parameter tensor gets its own stream and adding a layer does not shift
 * the numbers of the others.
 *
 * nn_hash_uniform(seed, counter) is the counter-based form of the same
 * generator (the counter-th output of the stream starting at hash(seed)): a
 * dropout mask element depends only on (step seed, element index), not on
 * how the loops are ordered or split across threads.
 */
#define NN_RNG_GAMMA UINT64_C(0x9e3779b97f4a7c15)

typedef struct nn_rng { uint64_t s; } nn_rng;

/* The splitmix64 output mixer: a bijection on 64-bit words with good
 * avalanche (each input bit flips each output bit with probability ~1/2). */
static NN_UNUSED uint64_t nn_hash64(uint64_t x) {
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/* For a fixed seed, distinct streams give distinct states (hash64 and +
 * are bijections); distinct seeds collide only by 2^-64 chance. */
static NN_UNUSED void nn_rng_seed(nn_rng *r, uint64_t seed, uint64_t stream) {
  r->s = nn_hash64(nn_hash64(seed ^ UINT64_C(0x6a09e667f3bcc909)) + stream);
}

static NN_UNUSED uint64_t nn_rng_u64(nn_rng *r) {
  r->s += NN_RNG_GAMMA;
  return nn_hash64(r->s);
}

/* The top 53 bits as a double: uniform on the grid k / 2^53, in [0, 1). */
static NN_UNUSED double nn_rng_uniform(nn_rng *r) {
  return (double)(nn_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal by Box-Muller, using the cosine branch only: no cached
 * spare, so the state after k calls is a pure function of (seed, k). */
static NN_UNUSED double nn_rng_normal(nn_rng *r) {
  double u1 = 1.0 - nn_rng_uniform(r); /* in (0, 1]: log() stays finite */
  double u2 = nn_rng_uniform(r);
  return sqrt(-2.0 * log(u1)) * cos(6.28318530717958647692 * u2);
}

/* Stateless uniform in [0, 1) for (seed, counter); see the top of the file. */
static NN_UNUSED double nn_hash_uniform(uint64_t seed, uint64_t counter) {
  uint64_t x = nn_hash64(nn_hash64(seed) + (counter + 1) * NN_RNG_GAMMA);
  return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}
