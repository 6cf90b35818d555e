/*
 * nn_errors.c: status codes shared by all generated code.
 *
 * Every generated function that can fail returns one of these (0 or
 * negative); it never prints and never exits.  Functions that can say more
 * (file I/O) also write a one-line message into a caller-supplied buffer.
 * NN_ERR_DATA: a label out of range, or a NaN weight or a negative second
 * moment in a file being loaded.
 * The numeric values are part of the generated API: never renumber them.
 */
/* One row per status: name, value, nn_strerror's message, and the comment
 * on <MODEL>_<name> in model.h.  nncc reads this table too (codegen/
 * codegen.c includes this file), so the runtime, the header's #defines and
 * their _Static_asserts cannot drift apart. */
#define NN_STATUSES(X)                                                                  \
  X(OK, 0, "success", "success")                                                        \
  X(ERR_ARG, -1, "bad argument", "bad argument")                                        \
  X(ERR_IO, -2, "input/output error", "cannot open, read, write or rename a file")      \
  X(ERR_FORMAT, -3, "not a valid safetensors file", "not a valid safetensors file")     \
  X(ERR_MISMATCH, -4, "tensors do not match the model", "tensors do not match the model") \
  X(ERR_NONFINITE, -5, "loss or gradient is not finite; weights left unchanged",        \
    "loss or gradient not finite; weights unchanged")                                   \
  X(ERR_NOMEM, -6, "out of memory", "out of memory")                                    \
  X(ERR_DATA, -7, "bad input data or out-of-range values in a file",                    \
    "bad input data, e.g. a label out of range")

enum nn_status {
#define NN_STATUS_ENUM(name, value, message, what) NN_##name = value,
  NN_STATUSES(NN_STATUS_ENUM)
#undef NN_STATUS_ENUM
};

static NN_UNUSED const char *nn_strerror(int code) {
  switch (code) {
#define NN_STATUS_CASE(name, value, message, what) \
  case NN_##name:                                  \
    return message;
  NN_STATUSES(NN_STATUS_CASE)
#undef NN_STATUS_CASE
  default: return "unknown error";
  }
}
