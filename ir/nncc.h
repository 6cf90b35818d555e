/*
 * nncc.h: the one internal header of the compiler core.
 *
 * The pipeline is  source -> tokens -> AST -> IR graph -> passes -> C text.
 * Everything a compilation allocates lives in one arena (Ctx.arena) that is
 * freed when the compilation ends.  Errors in the user's model are reported
 * through error_at(), which records one formatted diagnostic in the Ctx and
 * makes the caller unwind; only the CLI prints and exits.
 *
 * Sections below follow the source files; each lists that file's public
 * functions only.
 */
#ifndef NNCC_H
#define NNCC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NNCC_VERSION "0.1.0"

#define MAX_RANK 4     /* per-sample rank; the batch dimension comes on top */
#define MAX_IN 8       /* tensor inputs of one node */
#define MAX_OUT 4      /* tensor outputs of one node */
#define MAX_ATTR 12    /* attributes of one op */
#define MAX_ELEMS (1L << 31)  /* elements per tensor per sample, and per param */

#define unreachable() internal_error(__FILE__, __LINE__, "unreachable")

/* ---- util.c: arena, strings, growable buffers --------------------------- */

typedef struct Arena Arena;
typedef struct Buf {
  char *data;
  size_t len, cap;
} Buf;

Arena *new_arena(void);
void free_arena(Arena *a);
void *arena_alloc(Arena *a, size_t size);            /* zeroed */
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(Buf *b, const char *fmt, va_list ap);
void buf_puts(Buf *b, const char *s);
void buf_free(Buf *b);
_Noreturn void internal_error(const char *file, int line, const char *fmt, ...);

/* Arena-backed growable array of T: vec_push(a, v, x) appends x to v. */
#define VEC(T) struct { T *items; int len, cap; }
#define vec_push(arena, v, x)                                                  \
  do {                                                                         \
    if ((v).len == (v).cap) {                                                  \
      int ncap_ = (v).cap ? 2 * (v).cap : 8;                                   \
      void *nitems_ = arena_alloc((arena), (size_t)ncap_ * sizeof *(v).items); \
      if ((v).len)                                                             \
        memcpy(nitems_, (v).items, (size_t)(v).len * sizeof *(v).items);       \
      (v).items = nitems_;                                                     \
      (v).cap = ncap_;                                                         \
    }                                                                          \
    (v).items[(v).len++] = (x);                                                \
  } while (0)

/* ---- diag.c: source files, locations, diagnostics ------------------------ */

typedef struct Source {
  const char *path;     /* as given on the command line */
  const char *text;     /* NUL-terminated copy of the file */
  size_t len;
  const struct Loc *imported_at;   /* the text of an `import`: the statement */
} Source;

/* A place in a source file.  `from` chains block expansions: a layer created
 * inside `block basic` called at line 20 has loc in the block body and
 * from -> the call at line 20. */
typedef struct Loc {
  const Source *src;
  int line, col;        /* 1-based; col counts tabs to 8 columns */
  int len;              /* length of the token, for the caret */
  const struct Loc *from;
} Loc;

typedef struct Ctx {
  Arena *arena;
  Buf diag;             /* formatted diagnostics, ready to print */
  int nerrors;
} Ctx;

/* Formats "file:line:col: error: msg", the source line and a caret (and a
 * "note: in block expansion" line per `from`) into ctx->diag. */
void error_at(Ctx *ctx, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "nncc: error: msg" for errors without a location. */
void error_plain(Ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads a whole file; on failure reports a plain error and returns NULL.
 * Rejects files with NUL bytes or over 64 MiB. */
Source *read_source(Ctx *ctx, const char *path);
Source *source_from_string(Ctx *ctx, const char *path, const char *text);

/* ---- ir types ------------------------------------------------------------ */

typedef enum { DT_F32, DT_F64, DT_I32 } DType;

/* Bytes of one real of a graph of dtype t (f32 or f64). */
static inline int real_size(DType t) { return t == DT_F64 ? 8 : 4; }

typedef struct Shape {
  int rank;
  int dim[MAX_RANK];
} Shape;

typedef enum {
  V_INPUT,   /* model input, caller memory, per-sample shape, batched */
  V_TARGET,  /* training target (labels), caller memory, batched */
  V_PARAM,   /* trainable parameter, lives in the params block */
  V_BUFFER,  /* persistent non-trainable state (running stats), buffers block */
  V_ACT,     /* activation or temporary, lives in the planned arena */
  V_PGRAD,   /* gradient of a V_PARAM, lives in the grads block (same offset); with
              * Graph.eager_update an arena value, freed after its OP_PARAM_UPDATE */
  V_OUTPUT,  /* model output in inference: caller memory */
  V_LOSS,    /* scalar loss: arena, reported through train_step */
  V_INGRAD,  /* gradient of a V_INPUT (--input-grad): caller memory */
  V_COUNTER, /* persistent int64 scalar no kernel reads (batchnorm's num_batches_tracked):
              * counted up by each training forward, kept in checkpoints; offset = its
              * index among the counters */
  V_CONST,   /* read-only, computed by nncc from baked params and buffers alone (a
              * batchnorm-folded weight): the consts block of model_weights.c, never
              * the arena (passes/hoist_constants.c) */
} ValueKind;

typedef enum {
  INIT_ZEROS, INIT_ONES, INIT_CONST, INIT_NORMAL, INIT_XAVIER_NORMAL,
  INIT_XAVIER_UNIFORM, INIT_HE_NORMAL, INIT_HE_UNIFORM, INIT_SPARSE,
} InitKind;

typedef struct Init {
  InitKind kind;
  double value;     /* INIT_CONST: the value; INIT_NORMAL: std; INIT_SPARSE: k */
  int fan_in, fan_out;
} Init;

/* The `train { }` section, with defaults filled in: lowering copies it
 * onto the training graph, where codegen reads it. */
typedef struct TrainConfig {
  const char *optimizer;     /* sgd momentum nesterov adagrad rmsprop adam */
  double lr, momentum, beta1, beta2, eps, rho;
  double dampening;          /* momentum, nesterov: from the second step (torch.optim.SGD) */
  double nesterov;           /* sgd's nesterov=true|false as 1 or 0 (then the nesterov rule) */
  double weight_decay;       /* torch.optim's: l2 on every trained tensor (decay_all) */
  const char *schedule;      /* constant step exp inv cosine */
  double sched_steps, sched_gamma, sched_power, lr_min;
  double l2, l1, max_norm;
  bool decay_all;            /* decay biases and norm params too */
} TrainConfig;

/* The optimizers, one row each: id, name in the train section, state slots
 * per parameter (their checkpoint names are PyTorch's, NULL past the last),
 * and which slots are second moments (>= 0: their square root divides the
 * step, so load checks them).  frontend/train.c has the keys each takes,
 * codegen/train.c the update rules. */
#define OPTIMIZERS(X)                                                    \
  X(SGD, "sgd", 0, NULL, NULL, false, false)                             \
  X(MOMENTUM, "momentum", 1, "momentum_buffer", NULL, false, false)      \
  X(NESTEROV, "nesterov", 1, "momentum_buffer", NULL, false, false)      \
  X(ADAGRAD, "adagrad", 1, "sum", NULL, true, false)                     \
  X(RMSPROP, "rmsprop", 1, "square_avg", NULL, true, false)              \
  X(ADAM, "adam", 2, "exp_avg", "exp_avg_sq", false, true)
enum {
#define X(id, name, slots, slot0, slot1, second0, second1) OPTIMIZER_##id,
  OPTIMIZERS(X)
#undef X
  NUM_OPTIMIZERS
};
#define MAX_SLOTS 2   /* optimizer state slots per parameter */
typedef struct OptimizerDef {
  const char *name;
  int slots;
  const char *slot[MAX_SLOTS];
  bool second_moment[MAX_SLOTS];
} OptimizerDef;
extern const OptimizerDef optimizer_defs[NUM_OPTIMIZERS];
/* train_config.c: the row of optimizer `name`; NULL if there is none. */
const OptimizerDef *optimizer_def(const char *name);

/* The values each TrainConfig number may take, one row per field: the train
 * section refuses, and the generated set() refuses, what the row's kind of
 * range excludes (POS > 0, NONNEG >= 0, FRAC in [0, 1), UNIT in [0, 1], COUNT
 * a whole number >= 1). */
#define TRAIN_RANGES(X)                                                               \
  X(lr, POS) X(momentum, FRAC) X(beta1, FRAC) X(beta2, FRAC) X(eps, POS) X(rho, FRAC) \
  X(dampening, UNIT) X(weight_decay, NONNEG)                                          \
  X(sched_steps, COUNT) X(sched_gamma, POS) X(sched_power, POS) X(lr_min, NONNEG)     \
  X(l2, NONNEG) X(l1, NONNEG) X(max_norm, POS)
typedef struct ValueRange {
  double lo, hi;
  bool lo_closed, hi_closed, whole;
  const char *text;          /* "a number in [0, 1)" */
} ValueRange;
/* The range of the TrainConfig number at offsetof(TrainConfig, f); NULL for
 * a field not in TRAIN_RANGES. */
const ValueRange *train_value_range(size_t field);
bool in_value_range(const ValueRange *r, double v);

typedef struct Value {
  int id;
  const char *name;      /* "conv1.weight", "h", "t12": for IR text, tensor names */
  ValueKind kind;
  DType dtype;
  bool batched;          /* leading dynamic batch dim of up to max_batch */
  Shape shape;           /* per-sample shape when batched */
  int producer;          /* node id, -1 for inputs, params, buffers */
  int index;             /* V_INPUT/V_TARGET/V_OUTPUT: position in the API */
  int classes;           /* V_TARGET of `class[K]`: K (labels 0..K-1); else 0 */
  /* params and buffers */
  Init init;
  bool decay;            /* weight decay applies (weights, not biases/norm) */
  bool frozen;           /* `freeze`: never updated, no gradient */
  int unit_size;         /* elements per output unit (max-norm), 0 if n/a */
  int grad;              /* V_PARAM: its V_PGRAD value, -1 when none */
  int param;             /* V_PGRAD: the V_PARAM it belongs to */
  /* memory planning */
  long offset;           /* elements: into arena, params, grads or buffers */
  int alias;             /* value whose storage this one reuses in place, -1 */
  bool scratch;          /* a kernel's workspace (node_workspace) */
} Value;

typedef enum {
#define OP(id, name, file) OP_##id,
#include "ops.def"
#undef OP
  NUM_OPS
} OpKind;

/* ATTR_INTS: an integer, or a tuple of integers such as kernel=(10, 4); the op
 * checks how many it takes. */
typedef enum { ATTR_INT, ATTR_FLOAT, ATTR_BOOL, ATTR_IDENT, ATTR_LIST, ATTR_INTS } AttrType;

typedef struct AttrVal {
  bool set;              /* given by the user, or filled from the default */
  bool given;            /* given by the user */
  double num;            /* ATTR_INT, ATTR_FLOAT, ATTR_BOOL; ATTR_INTS written as one */
  const char *ident;     /* ATTR_IDENT */
  int nlist;             /* ATTR_LIST; ATTR_INTS written as a tuple (else 0) */
  const double *list;
  Loc loc;               /* where the user wrote it, for errors */
} AttrVal;

typedef struct Node {
  int id;
  OpKind op;
  const char *name;      /* layer name: "conv1"; tensor names use it */
  int in[MAX_IN], nin;
  int out[MAX_OUT], nout;
  AttrVal attr[MAX_ATTR];
  Loc loc;
  bool dead;             /* removed by a pass; kept in the array for ids.  A node
                          * hoisted to compile time is dead with V_CONST outputs. */
  bool backward;         /* part of the backward graph */
  /* fusion: an elementwise chain or epilogue folded into this node */
  int epilogue[8], nepilogue;  /* node ids applied to the output, in order */
  int fused_into;        /* node id that absorbed this one, -1 */
  /* fusion: an elementwise node whose output is in[0], recomputed on read
   * instead of stored (its id; -1: none).  The kernel reads that node's
   * inputs instead of in[0]. */
  int prologue;
} Node;

typedef enum { MODE_INFER, MODE_TRAIN } Mode;

typedef struct Graph {
  Ctx *ctx;
  Mode mode;
  DType dtype;           /* real type of the whole graph */
  int max_batch;
  int max_threads;           /* most threads a kernel uses: its per-thread scratch slots */
  bool no_winograd;      /* --no-winograd: 3x3 convolutions as direct products only */
  bool sync_bn;          /* --sync-batchnorm (train graph): ROLE_SYNC kernels use MPI */
  bool memory_first;     /* --memory-budget needs it: kernels without workspace (direct
                          * convolutions, matrix-vector dense) where they exist */
  bool eager_update;     /* --eager-update (train graph): each trained tensor's optimizer step
                          * right after its gradient is complete (schedule_updates), the
                          * gradients planned in the arena, no grads block */
  const char *model;     /* model name, already a safe C identifier */
  VEC(Value) values;
  VEC(Node) nodes;       /* topological order */
  int loss;              /* V_LOSS value or -1 */
  TrainConfig train_config;  /* MODE_TRAIN: the model's train section */
  /* memory plan results, in elements of the real type */
  long arena_size, params_size, buffers_size, consts_size;
  long consts_total;         /* consts_size and the V_CONST values only nncc's evaluation
                              * reads (after consts_size, not emitted) */
  long trained_size;         /* the params block's prefix of trained (not frozen) params:
                              * what grads and optimizer state cover */
  int counters;              /* V_COUNTER values */
  long naive_size, lower_bound;
  long tensors_bound;        /* lower_bound without kernel workspaces: the graph's own tensors */
  long scratch_size;         /* the largest kernel workspace */
  long grads_at_peak;        /* eager_update: reals of gradients live where lower_bound is */
} Graph;

/* ---- graph.c: constructors and queries -----------------------------------
 * new_node and node_output may grow the arrays: re-fetch Node and Value
 * pointers (node_at, val) after creating nodes or values. */

Graph *new_graph(Ctx *ctx, Mode mode, DType dtype, int max_batch, int max_threads,
                 const char *model);
Node *new_node(Graph *g, OpKind op, const char *name, Loc loc);
/* A new node at position `before` of the topological order: later nodes
 * move up one id (for passes that must schedule work before a node). */
Node *insert_node(Graph *g, int before, OpKind op, const char *name, Loc loc);
/* Moves node `from` to position `to` < from; the nodes in between move up by one. */
void move_node(Graph *g, int from, int to);
/* Adds value v as the next input of node. */
void node_input(Graph *g, Node *node, int v);
/* Creates a V_ACT output of node with the given per-sample shape. */
int node_output(Graph *g, Node *node, Shape shape, bool batched, DType dtype);
/* Creates the scratch output "<node name>.ws" of `reals` elements: arena
 * memory the kernel may use while it runs (im2col columns, say).  Nothing
 * reads it, so the planner frees it right after the node. */
int node_workspace(Graph *g, Node *node, long reals);
/* Creates a parameter "<node name>.<suffix>" and adds it as the next input. */
int node_param(Graph *g, Node *node, const char *suffix, Shape shape, Init init,
               bool decay);
/* Creates a buffer "<node name>.<suffix>" (filled with `fill`) as next input. */
int node_buffer(Graph *g, Node *node, const char *suffix, Shape shape, double fill);
/* Creates the counter "<node name>.<suffix>" (V_COUNTER, starts at 0); not an
 * input of the node: the generated code counts it up once per training
 * forward, as PyTorch counts num_batches_tracked. */
int node_counter(Graph *g, Node *node, const char *suffix);
/* For backward rules: a node of op `op` with the name, location and
 * attributes of node `like`, reading in[0..nin-1], with one output of the
 * given shape; returns that output value. */
int derived_node(Graph *g, OpKind op, int like, const int *in, int nin, Shape shape,
                 bool batched);
int new_value(Graph *g, ValueKind kind, const char *name, Shape shape, bool batched,
              DType dtype);
Shape shape_of(int rank, ...);              /* shape_of(3, c, h, w) */
long shape_numel(const Shape *s);           /* product; checked by the shape rules */
/* Reports an error at node unless every dim is positive and the product fits
 * MAX_ELEMS.  Shape rules call it on every shape they create. */
bool check_shape(Graph *g, const Node *node, Shape s);
const char *shape_str(Arena *a, const Shape *s);  /* "[6, 28, 28]" */
Value *val(const Graph *g, int id);
Node *node_at(const Graph *g, int id);
/* Whether v lives in the planned arena: activations, the loss, and with
 * eager_update the parameter gradients. */
bool in_arena(const Graph *g, const Value *v);
/* Every value the kernel of `node` reads: its inputs (with a prologue's
 * inputs in place of in[0]) and the operands of its fused epilogue.
 * Returns the count; vals must hold MAX_READS. */
#define MAX_READS (MAX_IN * 10)
int kernel_reads(const Graph *g, const Node *node, int *vals);

/* ---- ops.c: the op registry ------------------------------------------------ */

typedef struct Emit Emit;

typedef struct AttrSpec {
  const char *name;
  AttrType type;
  const char *def;        /* default as source text; NULL = required */
} AttrSpec;

/* Fusion roles an op can take. */
enum {
  ROLE_ELEMENTWISE = 1 << 0,  /* y[i] = f(x[i], per-channel params): has scalar() */
  ROLE_ANCHOR = 1 << 1,       /* conv/dense/...: can take an elementwise epilogue */
  ROLE_FOLDABLE = 1 << 2,     /* batchnorm in inference: folds into an anchor's weight
                                 and bias (OpDef.fold_op; the anchor's fold_weight_in) */
  ROLE_INPLACE = 1 << 3,      /* out[0] may share storage with in[0] */
  ROLE_INTERNAL = 1 << 4,     /* not callable from the language (backward ops) */
  ROLE_LOSS = 1 << 5,         /* callable only in the `loss` statement */
  ROLE_VIEW = 1 << 6,         /* out[0] is in[0] reshaped: shares its storage */
  ROLE_WRITES_BUFFERS = 1 << 7, /* the kernel updates its V_BUFFER inputs (running stats) */
  ROLE_CHANNEL = 1 << 8,      /* scalar() uses the channel index args[nin] */
  ROLE_PROLOGUE = 1 << 10,    /* the kernel reads in[0] through input_expr(): it can
                                 recompute an elementwise producer (a prologue) */
  ROLE_RNG = 1 << 9,          /* the kernel also takes `uint64_t seed` (model seed mixed
                                 with the training step) just before n: dropout */
  ROLE_COMMUTATIVE = 1 << 11, /* two operands may swap (add): an epilogue takes the
                                 anchor's output as its first */
  /* Default initializers, which lowering applies to weights without init=: */
  ROLE_RECTIFIER = 1 << 12,   /* relu and kin: the layer feeding it gets He-normal
                                 weights (its params named "weight") */
  ROLE_INIT_THROUGH = 1 << 13, /* batchnorm: passes a rectifier's request on to the
                                  layer feeding it; its own weight stays as built */
  ROLE_PRODUCT = 1 << 14,     /* the kernel's work is on the micro-kernels, which pick their
                                 ISA at run time; the others are built per ISA (NN_CLONES) */
  ROLE_SYNC = 1 << 15,        /* batchnorm: with g->sync_bn the kernel also takes `MPI_Comm
                                 comm, double share` and sums its statistics over the ranks */
  ROLE_SAVED = 1 << 16,       /* made by a backward rule but run in the forward pass, right
                                 after in[0] is computed, so that in[0] need not wait for the
                                 backward pass (relu_mask: the sign bits of y) */
  ROLE_UPDATE = 1 << 17,      /* param_update: no outputs; the optimizer step of its in[0] (a
                                 parameter) from in[1] (its gradient), written in place; a root
                                 of eliminate_dead; called by codegen/train.c, not a kernel */
};

typedef struct OpDef {
  const char *name;           /* language name: "conv2d" */
  const char *prefix;         /* auto layer name prefix: "conv" -> conv1, conv2 */
  int min_in, max_in;         /* tensor inputs from the language */
  const AttrSpec *attrs;      /* positional order after the tensor inputs */
  int nattr;
  const char *const *in_names;   /* kernel argument names, NULL-terminated */
  const char *const *out_names;
  unsigned roles;
  /* Shape rule: checks the inputs (already in node->in), adds params and
   * buffers, creates outputs.  Reports errors at node->loc and returns false. */
  bool (*build)(Graph *g, Node *node);
  /* Writes the body of the kernel; see ir/emit.h for the conventions. */
  void (*emit)(Emit *e, const Graph *g, const Node *node);
  /* ROLE_ELEMENTWISE: the scalar expression of output 0 given the input
   * expressions args[0..nin-1] (already indexed) and, in args[nin], the
   * expression of the channel index (dim 0 of the per-sample shape), valid
   * when the op has ROLE_CHANNEL or a per-channel input. */
  void (*scalar)(Buf *b, const Graph *g, const Node *node, const char *const *args);
  /* Vector-Jacobian product: given dout[i] (gradient value of out[i], -1 if
   * none) and need[j] (whether in[j] needs a gradient), adds nodes and
   * stores gradient values in din[j].  NULL: the op is not differentiable. */
  void (*backward)(Graph *g, Node *node, const int *dout, const bool *need, int *din);
  /* FLOPs per sample, for --report. */
  double (*flops)(const Graph *g, const Node *node);
  /* For --report: which kernel the node got and why (arena string); NULL
   * for ops with one way of computing. */
  const char *(*kernel)(const Graph *g, const Node *node);
  /* bn_fold: a ROLE_ANCHOR op that a ROLE_FOLDABLE op can fold into gives the
   * input positions of its weight (output units along dim 0) and its bias
   * (appended when the layer has none); 0 for none (in[0] is the data).  A
   * ROLE_FOLDABLE op names the op that folds it: that op reads the weight,
   * the foldable op's inputs after the first, then the bias if any, and
   * outputs the folded weight and bias. */
  int fold_weight_in, fold_bias_in;
  OpKind fold_op;
  /* Compile-time evaluation (passes/hoist_constants.c): the outputs from the
   * inputs, arrays of the graph's real type in host memory, with exactly the
   * arithmetic of the emitted kernel, so that baked values equal computed
   * ones bit for bit.  NULL: never hoisted. */
  void (*eval)(const Graph *g, const Node *node, const void *const *in, void *const *out);
  /* passes/hoist_constants.c, before the node itself is considered: splits
   * off work that depends on constant inputs only as a node of its own (with
   * an eval), inserted just before node `id`.  Returns whether it did. */
  bool (*split_constant)(Graph *g, int id);
  /* An internal form of a language op (batchnorm_infer): that op's name,
   * for messages the user reads; NULL: name. */
  const char *shown_as;
} OpDef;

extern const OpDef *const op_defs[NUM_OPS];
const OpDef *op_def(OpKind op);
/* Language-visible op by name; -1 if none. */
int op_lookup(const char *name);
/* Attribute index of `name` in op's spec, -1 if none. */
int attr_index(const OpDef *def, const char *name);
int attr_int(const Node *node, int i);
double attr_num(const Node *node, int i);
bool attr_bool(const Node *node, int i);

/* ---- window.c: the sliding window of conv2d and the pools ------------------
 * kernel=k | (kh, kw), stride=s | (sh, sw), dilation=d | (dh, dw),
 * pad=p | (ph, pw) | (top, bottom, left, right), padding=same | valid. */

typedef struct Window {
  int kh, kw, sh, sw, dh, dw;   /* kernel, stride, dilation */
  int pt, pb, pl, pr;           /* zero padding: top, bottom, left, right */
} Window;

/* Where an op keeps its window attributes (-1: it has none, so 1, or 0 for
 * pads); stride 0 (the pools' default) means the kernel's size. */
typedef struct WindowAttrs {
  int kernel, stride, dilation, pad, padding;
  bool pad_le_half;       /* pools: each pad at most half the kernel, as PyTorch */
} WindowAttrs;

/* Checks the attributes against each other and the input plane h x w and
 * reports the first problem; then *q is the window and *ho, *wo the output
 * plane. */
bool window_check(Graph *g, const Node *node, const WindowAttrs *wa, int h, int w, Window *q,
                  long *ho, long *wo);
/* The window of a node whose attributes passed window_check. */
Window window_of(const Node *node, const WindowAttrs *wa, int h, int w);
/* The rows (or columns) of output from `in` rows: kernel k, stride s,
 * dilation d and pads a + b; < 1 when the kernel does not fit. */
long window_out(long in, int k, int s, int d, int a, int b);
/* "kernel 10x4, stride 2x2, pad (4, 5, 1, 2)" (pads as pad= takes them: one
 * count, (rows, columns) or (top, bottom, left, right); the dilation when
 * not 1) for the kernels' comments and --report. */
const char *window_str(Arena *a, const Window *q);

/* ---- frontend: lex.c, parse.c, lower.c ----------------------------------- */

typedef struct Program Program;            /* the AST, see frontend/ast.h */
Program *parse_program(Ctx *ctx, const Source *src);
/* Lowers the AST to an IR graph for the given mode, element type, largest
 * batch and thread count.  In MODE_TRAIN the graph also holds the loss node
 * and a copy of the train section. */
Graph *lower_program(Ctx *ctx, const Program *prog, Mode mode, DType dtype, int max_batch,
                     int max_threads, bool no_winograd, bool memory_first);

const TrainConfig *program_train_config(const Program *prog);
const char *program_name(const Program *prog);
/* Whether the model has a `loss` statement (MODE_TRAIN lowering needs one). */
bool program_has_loss(const Program *prog);

/* ---- passes ---------------------------------------------------------------- */

/* One file per pass, named by the function. */
bool check_graph(const Graph *g);           /* invariants, between passes in debug builds */
/* Autodiff; input_grad: also the gradients of the model inputs. */
bool derive_backward(Graph *g, bool input_grad);

/* The fusions of fuse.c, one row each: name, whether "all" includes it. */
#define FUSIONS(X)                   \
  X(BN_FOLD, "bn_fold", true)        \
  X(EPILOGUE, "epilogue", true)      \
  X(ELEMENTWISE, "elementwise", true) \
  X(PROLOGUE, "prologue", false)
enum {
#define X(id, name, in_all) FUSE_BIT_##id,
  FUSIONS(X)
#undef X
  NUM_FUSIONS
};
enum {
  FUSE_NONE = 0,
#define X(id, name, in_all) FUSE_##id = 1 << FUSE_BIT_##id,
  FUSIONS(X)
#undef X
#define X(id, name, in_all) | (in_all ? FUSE_##id : 0)
  FUSE_ALL = 0 FUSIONS(X),
#undef X
};
extern const char *const fusion_names[NUM_FUSIONS];
/* Applies the fusions in the mask `which` (FUSE_*); decisions and missed
 * candidates are written to `log` for --report. */
void fuse(Graph *g, unsigned which, Buf *log);
/* --eager-update: an OP_PARAM_UPDATE node per trained parameter, right after
 * both the node that completes its gradient and the last node reading it. */
void schedule_updates(Graph *g);
void eliminate_dead(Graph *g);
/* With every weight baked read-only: nodes of constants only are computed
 * by nncc (V_CONST), not per call. */
void hoist_constants(Graph *g);
bool is_constant(const Value *v);   /* a param, buffer or V_CONST: baked under hoist_constants */
void plan_memory(Graph *g, bool plan);      /* plan=false: one buffer per tensor */
bool validate_plan(const Graph *g, Buf *why);
/* For errors: the step of g's plan where the most arena bytes are live, and
 * those tensors, largest first ("conv2 (f32[64, 25, 5]) 32000 bytes, ..."). */
void describe_peak(Graph *g, Buf *b);
/* --report: sizes and fusion decisions of both graphs (train may be NULL). */
void report(Buf *b, const Graph *infer, const Graph *train);

/* ---- codegen ------------------------------------------------------------------ */

/* What the code generator needs from the command line. */
typedef struct EmitConfig {
  const char *output;        /* -o path (names the header), NULL: <model>.c */
  const char *main_kind;     /* --main=train|infer|bench, NULL */
  const char *weights;       /* --weights FILE.safetensors, NULL */
  const char *options;       /* the compile options, for the header comment */
  /* weights from an `import`: the tensors the file holds (the others keep
   * their initializers); NULL: every param and buffer */
  const char *const *weights_only;
  int nweights_only;
  bool distributed;          /* --distributed=mpi: gradients averaged over MPI ranks */
  long long memory_budget;   /* --memory-budget: memory_size()'s bound, asserted; 0 none */
} EmitConfig;

/* memory_size() of the generated code but for the model struct: the params
 * (with every weight baked: none in inference, the trained ones in
 * training), buffers (unless baked into an inference build), grads,
 * optimizer state and arena blocks, each 64-byte aligned (plan_memory
 * bounds each: the sum fits). */
unsigned long long blocks_bytes(const Graph *infer, const Graph *train, bool baked);

/* The header's file name as model.c includes it: the -o path's base name
 * with .h, or <model>.h without -o. */
const char *header_name(Ctx *ctx, const char *output, const char *model);
/* Writes model.c and model.h text for the given graphs (infer may be NULL
 * when training only is impossible; train is NULL with --infer). */
bool emit_c(Ctx *ctx, const EmitConfig *cfg, const Graph *infer, const Graph *train,
            Buf *c_out, Buf *h_out);

/* weights.c: reads cfg->weights (strictly: every param and buffer of g, or
 * those of cfg->weights_only, its dtype and shape, nothing else) and writes
 * model_weights.c text, with the V_CONST values of `infer` computed. */
bool emit_weights(Ctx *ctx, const EmitConfig *cfg, const Graph *g, const Graph *infer,
                  Buf *out);
/* Whether the weights file holds v (a param or buffer). */
bool is_baked_value(const EmitConfig *cfg, const Value *v);

/* ---- print.c: IR text and GraphViz ---------------------------------------- */

void print_ir(Buf *b, const Graph *g);
void print_dot(Buf *b, const Graph *g);

/* ---- verify.c: libclang check of emitted C ------------------------------- */

/* Parses `c_text` (with `h_text` as its header) with libclang; appends each
 * diagnostic to ctx->diag and returns false on any warning or error. */
bool verify_c(Ctx *ctx, const char *c_name, const char *c_text, const char *h_name,
              const char *h_text);

#endif
