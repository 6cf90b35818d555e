/*
 * codegen.h: the code generator's own declarations, shared by the files of
 * codegen/.  The kernel conventions and the emit kit the ops use are in
 * ir/emit.h.
 */
#ifndef CODEGEN_H
#define CODEGEN_H

#include <string.h>

#include "emit.h"

/* names.c: safe C identifiers and string literals from untrusted names. */
typedef struct Idents {
  VEC(const char *) names;
  int *slots, cap;   /* hash index: 1 + position in names, 0 for empty */
} Idents;
bool is_c_keyword(const char *s);
void ident_reserve(Arena *a, Idents *t, const char *s);
int ident_find(const Idents *t, const char *s);   /* position in t->names, -1 */
/* A fresh identifier from `name` + `suffix`: sanitized, never a keyword,
 * never reserved, unique in t. */
const char *ident_new(Arena *a, Idents *t, const char *name, const char *suffix);
/* A C string literal for s, with octal escapes for anything but plain
 * printable ASCII and for '"', '\\' and '?' (trigraphs). */
const char *c_string(Arena *a, const char *s);

/* The functions and objects of the generated API, <model>_<name>, reserved
 * before any identifier is made from the model.  tests/test_tables.c checks
 * that the emitted headers declare these and no others. */
#define API_NAMES(X)                                                                  \
  X(memory_size) X(init_in) X(create) X(destroy) X(forward) X(train_step) X(gradients) \
  X(update) X(update_ratio) X(save) X(load) X(strerror) X(last_error) X(tensor_count)  \
  X(tensor_name) X(tensor) X(grad) X(set) X(get) X(lr) X(step) X(baked_params)        \
  X(baked_buffers) X(set_comm) X(sync)

/* ---- internal to codegen/: shared by codegen.c and train.c ---- */

#define MAX_IO 64   /* inputs, targets, outputs of a model, each */

typedef struct Kernel {
  const char *key;  /* signature + body without the name: identical kernels are shared */
  const char *name;
  const char *layer; /* the node name: a layer's kernels are printed together */
  const char *text;  /* shape comment and definition */
  bool shared;       /* its loops are work-shared: every thread of the region calls it */
} Kernel;

typedef struct CG {
  Ctx *ctx;
  Arena *a;
  Buf *c, *h;
  const EmitConfig *cfg;                /* output name, --main, --weights, options */
  const Graph *infer, *train, *layout;  /* layout: the graph whose params are laid out */
  const char *m;                        /* model prefix, lower case */
  const char *M;                        /* upper case, for macros */
  Idents idents;                        /* file-scope identifiers */
  VEC(Kernel) kernels;
  const char **kernel_of;               /* kernel name per node of the graph being emitted */
  const char **tensor_of;               /* local pointer name per value of that graph,
                                           set by emit_calls */
  Idents layers[2];                     /* layers with a forward kernel: inference graph,
                                           training graph */
  const char *io[4][MAX_IO];            /* API argument names: inputs, targets, outputs,
                                           input gradients */
  struct DistPlan *dist;                /* --distributed=mpi: gradient buckets (distributed.c) */
  bool eager_checked;                   /* --eager-update: train_step's checks are emitted */
  int eager_done;                       /* --eager-update: update calls emitted so far */
} CG;

/* A training build with --eager-update (train.c emits its train_step). */
static inline bool eager_build(const CG *cg) { return cg->train && cg->train->eager_update; }

const char *real_name(const Graph *g);
const char *io_name(const CG *cg, const Value *v);
const char *value_ptr(const CG *cg, const Graph *g, const Value *v);   /* "m->arena + 128" */
/* Declares a local pointer per tensor the calls pass ("conv1_y"), then one
 * kernel call per live node; sets cg->tensor_of. */
void emit_calls(CG *cg, const Graph *g);
/* Value id as emit_calls passes it: its local pointer, or the API argument. */
const char *tensor_ref(const CG *cg, const Graph *g, int id);
const char *upper(Arena *a, const char *s);
/* Values of `kind` in API order; returns the count. */
int io_values(const Graph *g, ValueKind kind, int *ids);
int io_count(const Graph *g, ValueKind kind);
/* ", const float *in_x, const int32_t *tgt_y" for the values of `kind`. */
const char *io_params(CG *cg, const Graph *g, ValueKind kind, bool out);
void emit_io_checks(CG *cg, const Graph *g, ValueKind kind);   /* NULL checks */

/* The values a call passes, in order (kernel arguments, fused operands);
 * returns the count.  Whether a node is called at all. */
int call_args(const Graph *g, const Node *node, int *ids);
bool is_emitted(const Graph *g, const Node *node);

/* train.c: the training half of the API. */
int optimizer_slots(const TrainConfig *tc);
void emit_train_defs(CG *cg);     /* hyper-parameter table, before the struct */
void emit_train_fields(Buf *c);
void emit_train_decls(CG *cg);
void emit_train(CG *cg);
void emit_eager_checks(CG *cg);   /* emit_calls, before the first backward kernel */
void emit_eager_update(CG *cg, const Node *node);   /* emit_calls, at a param_update node */

/* distributed.c: --distributed=mpi, data-parallel training over MPI. */
void dist_reserve(CG *cg, Idents *local);   /* its file-scope names */
void emit_dist_defs(CG *cg);       /* model hash, bucket table: before the struct */
void emit_dist_fields(Buf *c);     /* struct members */
void emit_dist_helpers(CG *cg);    /* agreement, buckets, <m>_sync, <m>_set_comm */
void emit_dist_decls(CG *cg);      /* into model.h */
void emit_dist_backward(CG *cg);   /* emit_calls, before the first backward kernel */
bool dist_starts_after(const CG *cg, int node);   /* a bucket completes at node */
void emit_dist_after(CG *cg, int node);   /* emit_calls, after node's call: buckets it completes */
void emit_dist_rest(CG *cg);       /* after the calls: what no call completed */
void emit_dist_io(CG *cg);         /* <m>_save on rank 0, <m>_load on rank 0 + broadcast */

/* main_emit.c: --main=train|infer|bench, a main() after the API. */
void main_reserve(CG *cg);   /* before any kernel is named */
bool emit_main(CG *cg);      /* false (with an error) if the model does not fit */

/* weights.c: --weights.  baked: the model's weights come from
 * model_weights.c; readonly: inference build, params and buffers point at
 * them (const, no copy); else init_in copies them. */
bool baked(const CG *cg);
bool baked_readonly(const CG *cg);
/* Training build, every weight baked, some params frozen: the frozen ones
 * (the params block after NN_TRAINED_SIZE) are read where they are baked,
 * through m->frozen. */
bool frozen_readonly(const CG *cg);
void emit_baked_decls(CG *cg);   /* into model.h */
void emit_baked_init(CG *cg);    /* the body of nn_init_tensors */

#endif
