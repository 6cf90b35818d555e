/*
 * ast.h: tokens and the abstract syntax tree of a .nn program, private to
 * frontend/ (lex.c produces tokens, parse.c the tree, lower.c consumes it).
 *
 * Every token and every node keeps its Loc, so lowering can point at the
 * exact place in the source.  `a |> f(b)` is already desugared by the parser
 * into the call f(a, b); the call's loc is the name `f`.
 */
#ifndef AST_H
#define AST_H

#include "nncc.h"
#include "onnx.h"

#define MAX_NAME 64      /* identifiers, layer names */
#define MAX_MODEL_NAME 40
#define MAX_DEPTH 200    /* nesting of expressions and statement blocks */

/* ---- lex.c ---------------------------------------------------------------- */

typedef enum { TK_IDENT, TK_NUM, TK_STR, TK_PUNCT, TK_NEWLINE, TK_EOF } TokenKind;

typedef struct Token {
  TokenKind kind;
  const char *text;      /* points into the source; not NUL-terminated */
  int len;
  double num;            /* TK_NUM */
  bool is_int;           /* TK_NUM written without '.' or exponent */
  const char *str;       /* TK_STR: contents without quotes (arena) */
  Loc loc;
} Token;

typedef VEC(Token) TokenVec;

/* Splits src into tokens ending with TK_EOF; NULL after reporting an error. */
Token *tokenize(Ctx *ctx, const Source *src, int *ntok);
/* Whether the word is reserved by the language (model, input, ...). */
bool is_reserved_word(const char *s, int len);

/* ---- parse.c: the tree ---------------------------------------------------- */

typedef enum {
  EX_NAME,    /* h */
  EX_NUM,     /* 3, 0.5 */
  EX_BOOL,    /* true */
  EX_STR,     /* "conv_a" */
  EX_LIST,    /* [1, 2], or the tuple (1, 2) */
  EX_CALL,    /* conv2d(x, 6, kernel=5) */
  EX_BINOP,   /* a + b: op is '+', '-', '*' or '/' */
  EX_NEG,     /* -a */
} ExprKind;

typedef struct Expr Expr;

typedef struct Arg {
  const char *key;       /* NULL for a positional argument */
  Loc key_loc;
  Expr *val;
} Arg;

struct Expr {
  ExprKind kind;
  Loc loc;
  const char *name;      /* EX_NAME, EX_CALL callee, EX_STR text */
  double num;            /* EX_NUM, EX_BOOL */
  bool is_int;           /* EX_NUM */
  bool tuple;            /* EX_LIST written (a, b) */
  int op;                /* EX_BINOP */
  Expr *lhs, *rhs;       /* EX_BINOP, EX_NEG (lhs) */
  Arg *args;             /* EX_CALL; EX_LIST uses args[i].val */
  int nargs;
};

typedef enum {
  ST_ASSIGN,  /* [output] name = expr */
  ST_OUTPUT,  /* output name */
  ST_LOSS,    /* loss expr */
  ST_REPEAT,  /* repeat count { body } */
  ST_RETURN,  /* return expr (last statement of a block) */
} StmtKind;

typedef struct Stmt Stmt;
struct Stmt {
  StmtKind kind;
  Loc loc;               /* the keyword or the name */
  const char *name;      /* ST_ASSIGN, ST_OUTPUT */
  bool output;           /* ST_ASSIGN: `output name = expr` */
  Expr *expr;            /* ST_ASSIGN, ST_LOSS, ST_RETURN; ST_REPEAT: count */
  Stmt **body;           /* ST_REPEAT */
  int nbody;
};

typedef enum { DECL_INPUT, DECL_TARGET_CLASS, DECL_TARGET_REAL } DeclKind;

typedef struct Decl {
  DeclKind kind;
  const char *name;
  Loc loc;               /* the name */
  Shape shape;           /* DECL_INPUT, DECL_TARGET_REAL */
  int classes;           /* DECL_TARGET_CLASS */
} Decl;

typedef struct Param {
  const char *name;
  Loc loc;
  Expr *def;             /* NULL: required */
} Param;

typedef struct Block {
  const char *name;
  Loc loc;
  Param *params;
  int nparams;
  Stmt **body;           /* ends with ST_RETURN */
  int nbody;
} Block;

/* One line of the train section: `optimizer adam(lr=1e-3)` has kind
 * "optimizer" and name "adam"; `decay_all = true` has kind "decay_all", no
 * name and the value as its one argument. */
typedef struct TrainItem {
  const char *kind, *name;
  Loc kind_loc, loc;     /* the keyword; the name */
  Arg *args;
  int nargs;
} TrainItem;

/* `import "net.onnx"`: the graph's text is parsed in place of the statement,
 * its inputs and statements becoming items [first, first + count). */
typedef struct Import {
  Loc loc;               /* the file name */
  int end_line;          /* the statement's last line */
  const char *path;      /* resolved against the .nn file's directory */
  int first, count;
} Import;

/* Top-level items in program order: declarations interleave statements. */
typedef struct Item {
  Decl *decl;            /* exactly one of decl and stmt is set */
  Stmt *stmt;
} Item;

struct Program {
  const Source *src;
  const char *name;
  Loc name_loc;
  VEC(Item) items;
  VEC(Block *) blocks;
  bool has_loss, has_train;
  VEC(TrainItem) train_items;
  TrainConfig train;     /* train_items checked, defaults filled in */
  VEC(Import) imports;
  VEC(OnnxWeight) imported;   /* the imports' initializers, their initial weights */
};

/* train.c: checks the train items and fills prog->train; false on error. */
bool build_train_config(Ctx *ctx, Program *prog);

#endif
