/*
 * distributed.c: --distributed=mpi, data-parallel training over MPI, in the
 * manner of PyTorch's DistributedDataParallel and Horovod.
 *
 * Every rank holds the whole model and runs gradients() on its own n samples.
 * The gradients block is cut into buckets (whole parameters, about
 * BUCKET_BYTES each, from the end of the block, since the backward pass
 * writes the last layers first); as soon as the backward pass has made its
 * last write into a bucket, the bucket is scaled by this rank's share of the
 * step's samples (n here / n over all ranks) and summed over the ranks in
 * place with a non-blocking MPI_Iallreduce.  The rest of the backward pass
 * overlaps the reductions; gradients() waits for all of them, so every rank
 * leaves it with the same gradient, the one of a single process on the
 * combined batch, and update() then runs identically everywhere.
 *
 * Agreement: every rank runs the same collectives in the same order whether
 * its own step fails or not, so a failure on one rank (a bad label, a NaN
 * loss) is returned by all, with no hang: the argument checks are agreed on
 * (nn_dist_agree, which also sums n) before any work, and the outcome of the
 * forward pass (nn_dist_finish, which also averages the loss) before
 * returning.  The first gradients() (or <m>_sync) checks that all ranks run
 * the same model (a hash of names, shapes, dtype, optimizer and buckets) and
 * --batch, then copies rank 0's weights, buffers and optimizer state to all.
 *
 * Batchnorm's running statistics, computed on each rank's own samples, are
 * averaged over the ranks with the same weights (started after the forward
 * pass, waited for with the buckets), so that ranks never diverge.  With
 * --sync-batchnorm the batchnorm kernels (ROLE_SYNC, ir/ops/batchnorm.c) sum
 * their statistics over the ranks themselves, and the running statistics
 * come out the same everywhere.
 */
#include <stdlib.h>
#include <string.h>

#include "codegen.h"

enum {
  BUCKET_BYTES = 1 << 19,    /* per bucket, about: DDP's buckets are 1 to 25 MB, Horovod
                                fuses up to 64 MB; small ones start sooner in a small model */
  BUCKET_MAX = 1 << 28,      /* elements: an MPI count is an int */
};

typedef struct Bucket {
  long begin, end;   /* grads [begin, end) */
  int ready;         /* the last node that writes into it */
  bool started;      /* emitted: started in gradients() */
  const char *names; /* the parameters, for the comment */
} Bucket;

typedef struct DistPlan {
  VEC(Bucket) buckets;
  unsigned long long hash;
  bool buffers_started;
} DistPlan;

static const char *const names[] = {"nn_dist_init", "nn_dist_agree", "nn_dist_finish",
                                    "nn_dist_start", "nn_dist_bucket", "nn_dist_bcast",
                                    "nn_check_args", "stats_ok", "nn_save_here", "nn_load_here",
                                    "nn_buckets", "nn_bucket", NULL};

void dist_reserve(CG *cg, Idents *local) {
  for (int i = 0; names[i]; i++) {
    ident_reserve(cg->a, &cg->idents, names[i]);
    ident_reserve(cg->a, local, names[i]);
  }
}

/* The value whose storage v is, through in-place aliases. */
static const Value *root_of(const Graph *g, const Value *v) {
  while (v->alias >= 0)
    v = val(g, v->alias);
  return v;
}

/* last[p]: the last emitted node of g that reads or writes the gradient of
 * param value p (-1: none does; the block is zeroed and stays so). */
static int *last_writers(CG *cg, const Graph *g) {
  int *last = arena_alloc(cg->a, sizeof(int) * (size_t)(g->values.len + 1));
  for (int i = 0; i < g->values.len; i++)
    last[i] = -1;
  for (int i = 0; i < g->nodes.len; i++) {
    const Node *node = &g->nodes.items[i];
    if (!is_emitted(g, node))
      continue;
    int args[MAX_OUT + 10 * MAX_IN];
    int nargs = call_args(g, node, args);
    for (int k = 0; k < nargs; k++) {
      const Value *r = root_of(g, val(g, args[k]));
      if (r->kind == V_PGRAD)
        last[r->param] = i;
    }
  }
  return last;
}

static void hash_bytes(unsigned long long *h, const void *p, size_t len) {
  const unsigned char *b = p;
  for (size_t i = 0; i < len; i++)
    *h = (*h ^ b[i]) * 0x100000001b3ULL;   /* FNV-1a */
}

static void hash_str(unsigned long long *h, const char *s) { hash_bytes(h, s, strlen(s) + 1); }

static void close_bucket(CG *cg, DistPlan *p, Bucket *b) {
  if (b->end <= b->begin)
    return;
  for (long o = b->begin; o < b->end; o += BUCKET_MAX) {   /* an MPI count is an int */
    Bucket piece = *b;
    piece.begin = o;
    piece.end = b->end - o > BUCKET_MAX ? o + BUCKET_MAX : b->end;
    vec_push(cg->a, p->buckets, piece);
  }
  *b = (Bucket){.ready = -1, .names = ""};
}

static const Graph *sort_graph;
static int by_offset_down(const void *pa, const void *pb) {
  long a = val(sort_graph, *(const int *)pa)->offset, b = val(sort_graph, *(const int *)pb)->offset;
  return (a < b) - (a > b);
}

/* Buckets of whole trained parameters, from the end of the grads block; the
 * hash of what every rank must have alike. */
static DistPlan *plan(CG *cg) {
  const Graph *g = cg->train;
  DistPlan *p = arena_alloc(cg->a, sizeof *p);
  memset(p, 0, sizeof *p);
  int *last = last_writers(cg, g);
  int *trained = arena_alloc(cg->a, sizeof(int) * (size_t)(g->values.len + 1)), count = 0;
  unsigned long long h = 0xcbf29ce484222325ULL;
  hash_str(&h, g->model);
  hash_str(&h, real_name(g));
  hash_str(&h, g->train_config.optimizer);
  hash_str(&h, g->sync_bn ? "sync-batchnorm" : "");
  for (int i = 0; i < g->values.len; i++) {
    const Value *v = &g->values.items[i];
    if (v->kind != V_PARAM && v->kind != V_BUFFER)
      continue;
    hash_str(&h, v->name);
    hash_bytes(&h, v->shape.dim, sizeof(int) * (size_t)v->shape.rank);
    if (v->kind == V_PARAM && !v->frozen && v->grad >= 0)
      trained[count++] = i;
  }
  sort_graph = g;
  qsort(trained, (size_t)count, sizeof *trained, by_offset_down);
  long esize = real_size(g->dtype);
  Bucket b = {.ready = -1, .names = ""};
  for (int k = 0; k < count; k++) {
    const Value *v = val(g, trained[k]);
    if (b.end > b.begin && (b.end - v->offset) * esize > BUCKET_BYTES)
      close_bucket(cg, p, &b);
    if (b.end <= b.begin)
      b.end = v->offset + shape_numel(&v->shape);
    b.begin = v->offset;
    int ready = last[v->id];   /* -1: emit_dist_rest starts it */
    b.ready = ready > b.ready ? ready : b.ready;
    b.names = arena_printf(cg->a, "%s%s%s", v->name, *b.names ? " " : "", b.names);
  }
  close_bucket(cg, p, &b);
  for (int k = 0; k < p->buckets.len; k++)
    hash_bytes(&h, &p->buckets.items[k].begin, 2 * sizeof(long));
  p->hash = h >> 2;   /* 62 bits: -hash is a long long too */
  return p;
}

void emit_dist_defs(CG *cg) {
  Buf *c = cg->c;
  cg->dist = plan(cg);
  const DistPlan *p = cg->dist;
  buf_puts(c, "/* --distributed=mpi: gradients summed over the ranks in buckets [begin, end)\n"
              " * of grads, each started as soon as the backward pass has written it. */\n");
  buf_printf(c, "#define NN_MPI_REAL %s\n", cg->layout->dtype == DT_F64 ? "MPI_DOUBLE" : "MPI_FLOAT");
  buf_printf(c, "#define NN_MODEL_HASH 0x%016llxLL   /* names, shapes, dtype, optimizer, buckets */\n",
             p->hash);
  buf_printf(c, "#define NN_NUM_BUCKETS %d\n", p->buckets.len);
  buf_puts(c, "static const struct nn_bucket {\n    long begin, end;\n} nn_buckets[] = {\n");
  for (int k = 0; k < p->buckets.len; k++) {
    const Bucket *b = &p->buckets.items[k];
    buf_printf(c, "    {%ldL, %ldL},   /* %s */\n", b->begin, b->end, b->names);
  }
  if (!p->buckets.len)
    buf_puts(c, "    {0L, 0L},\n");
  buf_puts(c, "};\n\n");
}

void emit_dist_fields(Buf *c) {
  buf_puts(c, "    MPI_Comm comm;   /* the ranks that train together: MPI_COMM_WORLD, or set_comm */\n");
  buf_puts(c, "    int synced;      /* sync() has run on comm */\n");
  buf_puts(c, "    double share;    /* n here / n over all ranks, this step */\n");
  buf_puts(c, "    MPI_Request reqs[NN_NUM_BUCKETS + 1];   /* buckets in flight, then the buffers */\n");
}

void emit_dist_decls(CG *cg) {
  const char *m = cg->m;
  buf_puts(cg->h,
           "/* --distributed=mpi (docs/distributed.md): gradients averaged over the ranks\n"
             " * of a communicator, weighted by each rank's n.  Collective: every rank calls\n"
             " * gradients, train_step, sync, save and load together (after MPI_Init).  The\n"
             " * first step calls sync.  save writes on rank 0; load reads on rank 0 and\n"
             " * copies to all.  Hyper-parameters are each rank's: set them alike. */\n");
  buf_printf(cg->h, "int %s_set_comm(%s *m, MPI_Comm comm);   /* default MPI_COMM_WORLD */\n", m, m);
  buf_printf(cg->h, "/* Checks that every rank has the same model and --batch (%s_ERR_MISMATCH\n"
                    " * on all if not), then copies rank 0's weights, buffers, optimizer state\n"
                    " * and step to all. */\n", cg->M);
  buf_printf(cg->h, "int %s_sync(%s *m);\n", m, m);
}

/* The runtime of the distributed step: agreement, buckets, sync. */
void emit_dist_helpers(CG *cg) {
  Buf *c = cg->c;
  const char *m = cg->m;
  buf_printf(c, "static void nn_dist_init(%s *m)\n{\n", m);
  buf_puts(c, "    m->comm = MPI_COMM_WORLD;\n"
              "    for (int b = 0; b <= NN_NUM_BUCKETS; b++)\n"
              "        m->reqs[b] = MPI_REQUEST_NULL;\n}\n\n");
  buf_printf(c, "int %s_set_comm(%s *m, MPI_Comm comm)\n{\n", m, m);
  buf_puts(c, "    if (!m)\n        return NN_ERR_ARG;\n"
              "    m->comm = comm;\n    m->synced = 0;\n    return NN_OK;\n}\n\n");
  /* agree */
  buf_puts(c, "/* The ranks' verdicts on their arguments (status here: 0 or a failure), and\n"
              " * the step's samples over all ranks.  A failure anywhere fails the step\n"
              " * everywhere: a rank that failed returns its own status, the others the\n"
              " * lowest-numbered failure among the ranks. */\n");
  buf_printf(c, "static int nn_dist_agree(%s *m, int status, int n)\n{\n", m);
  buf_puts(c, "    long long mine[8] = {0}, all[8];   /* n of the ranks that passed; ranks failing per code */\n"
              "    if (status < 0 && status >= -7)\n        mine[-status] = 1;\n"
              "    else\n        mine[0] = n;\n"
              "    MPI_Allreduce(mine, all, 8, MPI_LONG_LONG, MPI_SUM, m->comm);\n"
              "    if (status)\n        return status;\n"
              "    for (int k = 1; k < 8; k++)\n"
              "        if (all[k] > 0) {\n"
              "            snprintf(m->error, sizeof m->error, \"%lld other rank%s failed: %s\", all[k],\n"
              "                     all[k] > 1 ? \"s\" : \"\", nn_strerror(-k));\n"
              "            return -k;\n        }\n"
              "    m->share = (double)n / (double)all[0];\n"
              "    return NN_OK;\n}\n\n");
  /* start */
  buf_puts(c, "/* x[0..len) weighted by this rank's share, then summed over the ranks in\n"
              " * place, without waiting.  The test lets MPI progress the ones in flight. */\n");
  buf_printf(c, "static void nn_dist_start(%s *m, real *x, long len, MPI_Request *req)\n{\n", m);
  buf_puts(c, "    const real w = (real)m->share;\n"
              "    for (long i = 0; i < len; i++)\n        x[i] *= w;\n"
              "    MPI_Iallreduce(MPI_IN_PLACE, x, (int)len, NN_MPI_REAL, MPI_SUM, m->comm, req);\n"
              "    int done;\n"
              "    MPI_Testall(NN_NUM_BUCKETS + 1, m->reqs, &done, MPI_STATUSES_IGNORE);\n}\n\n");
  buf_printf(c, "static void nn_dist_bucket(%s *m, int b)\n{\n", m);
  buf_puts(c, "    nn_dist_start(m, m->grads + nn_buckets[b].begin, nn_buckets[b].end - nn_buckets[b].begin,\n"
              "                  &m->reqs[b]);\n}\n\n");
  /* finish */
  buf_puts(c, "/* After the backward pass: waits for the buckets and the running statistics,\n"
              " * agrees on the outcome (bad: this rank's failure, or NULL), and gives the\n"
              " * mean loss over all the ranks' samples. */\n");
  buf_printf(c, "static int nn_dist_finish(%s *m, const char *bad, real l, real *loss)\n{\n", m);
  buf_puts(c, "    MPI_Waitall(NN_NUM_BUCKETS + 1, m->reqs, MPI_STATUSES_IGNORE);\n"

              "    double mine[2] = {bad ? 0 : m->share * (double)l, bad != NULL}, all[2];\n"
              "    MPI_Allreduce(mine, all, 2, MPI_DOUBLE, MPI_SUM, m->comm);\n"
              "    if (loss)\n        *loss = bad ? l : (real)all[0];\n"
              "    if (bad)\n        return nn_fail(m, NN_ERR_NONFINITE, bad);\n"
              "    if (all[1] > 0) {\n"
              "        snprintf(m->error, sizeof m->error, \"%.0f other rank%s failed: loss or running statistics not finite\",\n"
              "                 all[1], all[1] > 1 ? \"s\" : \"\");\n"
              "        return NN_ERR_NONFINITE;\n    }\n"
              "    if (!nn_all_finite(m->buffers, NN_BUFFERS_SIZE))   /* the same on every rank */\n"
              "        return nn_fail(m, NN_ERR_NONFINITE, \"the average of the running statistics is not finite\");\n"
              "    return NN_OK;\n}\n\n");
  /* sync */
  buf_puts(c, "static void nn_dist_bcast(void *x, long len, MPI_Datatype type, MPI_Comm comm)\n{\n"
              "    int size;\n    MPI_Type_size(type, &size);\n"
              "    for (long o = 0; o < len; o += 1L << 28)\n"
              "        MPI_Bcast((char *)x + o * size, (int)(len - o < 1L << 28 ? len - o : 1L << 28), type, 0, comm);\n}\n\n");
  buf_printf(c, "int %s_sync(%s *m)\n{\n", m, m);
  buf_printf(c, "    if (!m)\n        return NN_ERR_ARG;\n"
                "    long long mine[4] = {NN_MODEL_HASH, -NN_MODEL_HASH, %d, -%d}, all[4];\n"
                "    MPI_Allreduce(mine, all, 4, MPI_LONG_LONG, MPI_MAX, m->comm);\n",
             cg->layout->max_batch, cg->layout->max_batch);
  buf_puts(c, "    if (all[0] != -all[1])\n"
              "        return nn_fail(m, NN_ERR_MISMATCH, \"the ranks run different models (tensor names, shapes, dtype \"\n"
              "                       \"or optimizer differ): compile every rank from the same .nn file and options\");\n"
              "    if (all[2] != -all[3]) {\n"
              "        snprintf(m->error, sizeof m->error, \"the ranks were compiled with different --batch: %lld here, \"\n"
              "                 \"%lld to %lld over the ranks\", mine[2], -all[3], all[2]);\n"
              "        return NN_ERR_MISMATCH;\n    }\n"
              "    nn_dist_bcast(m->params, NN_PARAMS_RAM_SIZE, NN_MPI_REAL, m->comm);\n"
              "    nn_dist_bcast(m->buffers, NN_BUFFERS_SIZE, NN_MPI_REAL, m->comm);\n"
              "    nn_dist_bcast(m->state, NN_STATE_SIZE, NN_MPI_REAL, m->comm);\n"
              "    nn_dist_bcast(m->counters, NN_NUM_COUNTERS, MPI_INT64_T, m->comm);\n"
              "    nn_dist_bcast(&m->step, 1, MPI_INT64_T, m->comm);\n"
              "    m->synced = 1;\n    return NN_OK;\n}\n\n");
}

/* The running statistics, averaged like the gradients (ranks never diverge). */
void emit_dist_backward(CG *cg) {
  buf_puts(cg->c, "    const int stats_ok = nn_all_finite(m->buffers, NN_BUFFERS_SIZE);   /* before averaging */\n");
  if (cg->layout->buffers_size > 0 && !cg->train->sync_bn)   /* else the same everywhere */
    buf_puts(cg->c, "    nn_dist_start(m, m->buffers, NN_BUFFERS_SIZE, &m->reqs[NN_NUM_BUCKETS]);   "
                    "/* running statistics */\n");
  cg->dist->buffers_started = true;
}

static void start_bucket(CG *cg, int k) {
  Bucket *b = &cg->dist->buckets.items[k];
  buf_printf(cg->c, "    nn_dist_bucket(m, %d);   /* %s */\n", k, b->names);
  b->started = true;
}

bool dist_starts_after(const CG *cg, int node) {
  for (int k = 0; k < cg->dist->buckets.len; k++)
    if (cg->dist->buckets.items[k].ready == node)
      return true;
  return false;
}

void emit_dist_after(CG *cg, int node) {
  for (int k = 0; k < cg->dist->buckets.len; k++)
    if (cg->dist->buckets.items[k].ready == node)
      start_bucket(cg, k);
}

void emit_dist_rest(CG *cg) {
  if (!cg->dist->buffers_started)
    emit_dist_backward(cg);
  for (int k = 0; k < cg->dist->buckets.len; k++)
    if (!cg->dist->buckets.items[k].started)
      start_bucket(cg, k);
}

void emit_dist_io(CG *cg) {
  Buf *c = cg->c;
  const char *m = cg->m;
  buf_puts(c, "\n/* Rank 0 saves; every rank returns its status. */\n");
  buf_printf(c, "int %s_save(%s *m, const char *path)\n{\n", m, m);
  buf_puts(c, "    if (!m)\n        return NN_ERR_ARG;\n"
              "    int rank;\n    MPI_Comm_rank(m->comm, &rank);\n"
              "    int status = rank == 0 ? nn_save_here(m, path) : NN_OK;\n"
              "    MPI_Bcast(&status, 1, MPI_INT, 0, m->comm);\n"
              "    if (status && rank != 0)\n"
              "        snprintf(m->error, sizeof m->error, \"rank 0 could not save: %s\", nn_strerror(status));\n"
              "    return status;\n}\n\n");
  buf_puts(c, "/* Rank 0 loads (all or nothing), then every rank gets its state: the ranks\n"
              " * stay identical, and a failure leaves every model as it was. */\n");
  buf_printf(c, "int %s_load(%s *m, const char *path)\n{\n", m, m);
  buf_printf(c, "    if (!m)\n        return NN_ERR_ARG;\n"
                "    int rank;\n    MPI_Comm_rank(m->comm, &rank);\n"
                "    int status = rank == 0 ? nn_load_here(m, path) : NN_OK;\n"
                "    MPI_Bcast(&status, 1, MPI_INT, 0, m->comm);\n"
                "    if (status && rank != 0)\n"
                "        snprintf(m->error, sizeof m->error, \"rank 0 could not load: %%s\", nn_strerror(status));\n"
                "    return status ? status : %s_sync(m);\n}\n", m);
}
